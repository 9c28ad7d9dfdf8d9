/* `portcullis rules test -c FILE CASES.yaml`: Lua page rules run offline, on requests described in a
 * YAML case file, through the same plugin chain code and host functions as live traffic. Also the
 * offline request environment the Lua bridge fuzz target drives. */
#ifndef PC_RULES_TEST_H
#define PC_RULES_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The command: prints one line per case; 0 when every expectation holds, 1 when one does not, 2 when
 * the config or the case file cannot be used. */
int pc__rules_test(const char *config_path, const char *cases_path);

/* A config's plugins loaded for one offline worker. Only the lua plugin's hooks run: every other plugin
 * is loaded and initialised (so the config is checked as `run` would) but its hooks are left out, since
 * what they would decide needs live traffic; a case supplies their published values instead. */
typedef struct pc_rules_env pc_rules_env;

pc_rules_env *pc__rules_env_open(const char *config_path, char *err, size_t errlen);
void pc__rules_env_close(pc_rules_env *env);

typedef struct pc_rules_msg {
    const uint8_t *data;
    size_t len;
} pc_rules_msg;

/* One request. Strings may be NULL (defaults: method POST, client 192.0.2.1:40000, TLS 1.3 with the host
 * as SNI unless `cleartext`). Pairs are name, value, name, value ... */
typedef struct pc_rules_request {
    const char *host, *path, *method;
    bool grpc;
    bool cleartext;
    const char *const *headers;
    size_t nheaders; /* pairs */
    const char *client_ip;
    unsigned client_port;
    const char *sni, *tls_version, *ja3, *ja4, *h2_fingerprint;
    const char *const *published; /* as if earlier plugins had published them */
    size_t npublished;            /* pairs */
    const pc_rules_msg *messages;
    size_t nmessages;
} pc_rules_request;

typedef struct pc_rules_result {
    bool denied;
    int status;             /* gRPC status when denied */
    const char *message;    /* deny message */
    long message_index;     /* the request message that was denied; -1: the headers (or none) */
    struct pc_request *req; /* after the chain: headers, published values, route, skips */
} pc_rules_result;

/* Run the chain's request-headers hooks, then each message's. 0, or -1 with err (no zone for the host,
 * out of memory). Free the result with pc__rules_result_free (which also runs the log hooks). */
int pc__rules_env_run(pc_rules_env *env, const pc_rules_request *rq, pc_rules_result *res, char *err,
                      size_t errlen);
void pc__rules_result_free(pc_rules_env *env, pc_rules_result *res);

#endif
