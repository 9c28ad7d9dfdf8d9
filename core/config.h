/* Typed configuration: the YAML file parsed (libyaml), validated and resolved.
 * Immutable once loaded; workers hold a pointer to it. Errors name file:line:column. */
#ifndef PC_CONFIG_H
#define PC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "yaml_tree.h"

typedef struct pc_cert_conf {
    char *cert; /* resolved path to PEM certificate chain */
    char *key;  /* resolved path to PEM private key */
} pc_cert_conf;

typedef struct pc_listen_conf {
    char *address; /* as written, "host:port" or "[v6]:port" */
    char host[64]; /* numeric address part */
    uint16_t port;
    bool tls;
    pc_cert_conf *certs; /* first is the default; others chosen by SNI */
    size_t ncerts;
} pc_listen_conf;

typedef struct pc_hostport {
    char *host;
    uint16_t port;
} pc_hostport;

/* An origin's access policy, typed: core/access/policy.h (the access module owns it). */
typedef struct pc_access_policy pc_access_policy;

typedef struct pc_origin_conf {
    char *name;
    pc_hostport *servers;
    size_t nservers;
    bool tls;                    /* true when a `tls` map is present */
    bool tls_verify;             /* default true */
    char *tls_ca;                /* NULL: system store */
    char *tls_sni;               /* NULL: server host */
    uint32_t connect_timeout_ms; /* default 2000 */
    uint32_t max_connections;    /* per worker per server, default 4 */
    uint32_t max_pending;        /* streams waiting for a connection slot, default 1024 */
    uint32_t cooldown_ms;        /* a server that failed to connect is skipped this long, default 5000 */
    pc_access_policy *access;    /* the origin's `access` map, parsed; NULL when absent */
} pc_origin_conf;

/* One entry of `plugins:` (the chain, in order). */
typedef struct pc_plugin_conf {
    char *name;                 /* `name:` entry: looked up as <plugin_dir>/pc-<name>.so; NULL for `path:` */
    char *path;                 /* resolved path of the .so (for `name:` entries too) */
    const pc_yaml_node *config; /* the plugin's own subtree, NULL when absent */
    const pc_yaml_node *node;   /* the entry, for error positions */
    bool on_error_continue;     /* on_error: continue (default deny: fail closed) */
} pc_plugin_conf;

/* A zone's `cors` map: which web origins may call it from a browser (gRPC-Web). */
typedef struct pc_cors_conf {
    bool on;        /* the map is present */
    char **origins; /* exact "scheme://host[:port]" values, or "*" */
    size_t norigins;
    uint32_t max_age_s;     /* preflight cache lifetime, default 600 */
    char *expose_headers;   /* the user's listed response headers, comma-joined; NULL none */
    char *allow_headers;    /* request headers allowed beyond the gRPC-Web ones, comma-joined; NULL none */
    bool allow_credentials; /* default false */
} pc_cors_conf;

typedef struct pc_zone_conf {
    char *name;
    char **hosts; /* exact names or "*.suffix" wildcards, lower-case */
    size_t nhosts;
    char *origin;        /* origin name as written */
    size_t origin_index; /* resolved index into pc_config.origins */
    bool grpc;           /* default true */
    bool grpc_web;       /* gRPC-Web calls translated at the edge, default false */
    pc_cors_conf cors;
    uint64_t max_message_bytes; /* default 4194304 */
    bool has_plugins;           /* `plugins:` given: this zone runs only the named plugins, in order */
    char **plugins;
    const pc_yaml_node **plugin_nodes;
    size_t nplugins;
} pc_zone_conf;

typedef struct pc_limits_conf {
    uint32_t max_concurrent_streams;  /* per client connection, default 100 */
    uint32_t max_header_list_bytes;   /* default 65536 */
    uint32_t stream_window_bytes;     /* initial per-stream window we advertise, default 262144 */
    uint32_t connection_window_bytes; /* default 1048576 */
    uint32_t handshake_timeout_ms;    /* TLS handshake must finish within, default 10000 */
    uint32_t header_timeout_ms;       /* a HEADERS block must complete within, default 10000 */
    uint32_t idle_timeout_ms;         /* connection with no open stream, default 300000 */
    uint32_t send_timeout_ms; /* output waiting this long without the client taking any, default 60000 */
    uint32_t glitch_limit;    /* useless frames tolerated per 10 s before GOAWAY, default 1000; 0 off */
    uint32_t max_connections_per_client; /* open connections from one address, default 1024; 0 off */
    /* response bytes held for one address's shut windows, default 64 MiB */
    uint32_t max_held_bytes_per_client;
} pc_limits_conf;

enum { PC_LOG_ERROR = 0, PC_LOG_WARN = 1, PC_LOG_INFO = 2, PC_LOG_DEBUG = 3 };

typedef struct pc_log_conf {
    char *access; /* "stdout", "stderr", "off" or a resolved file path; default "stdout" */
    int level;    /* PC_LOG_*, default PC_LOG_INFO */
} pc_log_conf;

typedef struct pc_config {
    char *path; /* the file loaded */
    char *dir;  /* its directory: relative paths in the file are resolved against it */
    pc_listen_conf *listen;
    size_t nlisten;
    pc_origin_conf *origins;
    size_t norigins;
    pc_zone_conf *zones;
    size_t nzones;
    pc_log_conf log;
    pc_limits_conf limits;
    uint32_t workers;          /* 0: number of cores */
    uint32_t drain_timeout_ms; /* default 30000 */
    char *admin_address;       /* admin listener "host:port" (HTTP/1.1: /metrics, /healthz); NULL none */
    char admin_host[64];
    uint16_t admin_port;
    char *plugin_dir;    /* resolved; default the install directory */
    bool plugin_dir_set; /* given in the file (else the executable's plugins/ is tried too) */
    pc_plugin_conf *plugins;
    size_t nplugins;
    char **descriptors; /* resolved FileDescriptorSet files */
    size_t ndescriptors;
    char **warnings; /* things that are valid but risky, one line each */
    size_t nwarnings;
    pc_yaml_doc *doc; /* the parsed tree, kept so plugins can read their own subtrees */
} pc_config;

/* Load and validate `path`. On failure returns -1 and writes "file:line:col: what is wrong" to err. */
int pc__config_load(const char *path, pc_config **out, char *err, size_t errlen);
void pc__config_free(pc_config *cfg);

/* A path as written in the config: absolute, or relative to the config file's directory. The one
 * rule for the core's own keys and for plugins (host->config_path). Malloc'd; NULL when out of memory. */
char *pc__config_path(const pc_config *cfg, const char *written);

/* The same for a document already in memory (fuzzing, tests): `name` is used in messages and relative
 * paths resolve against `dir` (NULL: the current directory). */
int pc__config_load_buffer(const char *name, const char *buf, size_t len, const char *dir, pc_config **out,
                           char *err, size_t errlen);

/* Zone for a host (the :authority without port, any case). Exact names win over wildcards;
 * among wildcards the longest suffix wins. NULL when no zone matches. */
const pc_zone_conf *pc__zone_find(const pc_config *cfg, const char *host, size_t len);

#endif
