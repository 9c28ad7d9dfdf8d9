/* The ratelimit plugin's configuration: its rules (which calls, keyed by what, limited how) and its
 * store (local, or Redis shared by a fleet of edges), read from the plugin's `config:` map. */
#ifndef PC_RATELIMIT_RL_CONFIG_H
#define PC_RATELIMIT_RL_CONFIG_H

#include <portcullis/plugin.h>
#include <stddef.h>
#include <stdint.h>

#include "gcra.h"
#include "local_store.h"
#include "store_config.h"

#define RL_MAX_RULES 32
#define RL_MAX_KEYS 4

enum { RL_CALLS, RL_MESSAGES, RL_CONCURRENT };

typedef struct rl_rule {
    char *name;
    int kind;
    char **zones; /* NULL: every zone */
    size_t nzones;
    char **methods; /* globs on the gRPC path (or HTTP path); NULL: every call */
    size_t nmethods;
    char *keys[RL_MAX_KEYS]; /* request facts, "header:<name>", or published values */
    size_t nkeys;
    /* RL_CALLS */
    uint64_t calls, window_s;
    rl_gcra gcra;
    uint32_t lease_max; /* Redis: calls one request for tokens may take at most */
    uint64_t lease_ns;  /* Redis: how long leased calls stay usable */
    /* RL_MESSAGES */
    double rate, burst;
    uint64_t max_delay_ms;
    /* RL_CONCURRENT */
    uint32_t limit;
    /* metric labels, made once */
    char lbl_allowed[128], lbl_refused[128], lbl_shaped[128], lbl_store_error[128];
} rl_rule;

typedef struct rl_conf {
    const pc_host *host;
    const void *handle;
    rl_rule rules[RL_MAX_RULES];
    size_t nrules;
    rl_store_conf store; /* local or redis; keys are hashed with its secret before they reach Redis */
    uint64_t seed;       /* of the in-process key digests */
    uint64_t concurrency_retry_ms;
    rl_local *local; /* process-wide counters: the store, or Redis's fallback */
} rl_conf;

extern const pc_conf_key rl_config_keys[];

/* 0, or -1 with err (file:line:col of the node at fault). */
int rl_conf_load(const pc_host *host, const void *handle, const pc_config_node *config, rl_conf **out,
                 char *err, size_t errlen);
void rl_conf_free(rl_conf *c);

#endif
