/* A plugin's `store:` map, the same for every plugin that keeps counters in a store (ratelimit, bot):
 * where the counters live (this process, or a Redis shared by a fleet of edges), how long a Redis
 * request may take, what happens when Redis fails, and the secret that keys are hashed with before
 * Redis sees them. Read with the host's config functions, errors with file:line:col. */
#ifndef PC_STORE_STORE_CONFIG_H
#define PC_STORE_STORE_CONFIG_H

#include <portcullis/plugin.h>
#include <stddef.h>
#include <stdint.h>

enum { RL_STORE_LOCAL = 0, RL_STORE_REDIS = 1 };
/* store.on_error: what a plugin does with a call when Redis fails; each plugin says what they mean
 * for it (the bot plugin treats them all as RL_ERR_LOCAL). */
enum { RL_ERR_LOCAL, RL_ERR_ALLOW, RL_ERR_DENY };

typedef struct rl_store_conf {
    int type;    /* RL_STORE_LOCAL or RL_STORE_REDIS; the rest is for redis only */
    char ip[64]; /* numeric: resolving a name would block the event loop */
    int port;
    uint64_t timeout_ms; /* per Redis request; default 50 */
    int on_error;        /* RL_ERR_*; default RL_ERR_LOCAL */
    unsigned char secret[64];
    size_t secret_len;
    char prefix[64]; /* of every Redis key */
} rl_store_conf;

/* Reading a map nested in a plugin's config (the core checks only the top-level keys): errors
 * "file:line:col: msg" into err. Shared by the store map and the plugins that take one. */
typedef struct rl_cfg {
    const pc_host *h;
    char *err;
    size_t errlen;
} rl_cfg;

/* Writes the error for node n; returns -1. */
int rl_cfg_fail(rl_cfg *c, const pc_config_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* map is a map whose keys are all in `known` (NULL-ended): "<what>: unknown key ...". 0 or -1. */
int rl_cfg_check_keys(rl_cfg *c, const pc_config_node *map, const char *what, const char *const *known);
/* A whole number in [lo, hi] at key ("<what>.<key>: expected a whole number from lo to hi"); absent:
 * 0 with *out unchanged. */
int rl_cfg_u64(rl_cfg *c, const pc_config_node *map, const char *what, const char *key, uint64_t lo,
               uint64_t hi, uint64_t *out);

/* The `store` map s (NULL: absent, type local) into *out, prefix defaulting to default_prefix. 0, or
 * -1 with "file:line:col: store...: what" in err. */
int rl_store_conf_read(const pc_host *h, const pc_config_node *s, const char *default_prefix,
                       rl_store_conf *out, char *err, size_t errlen);

#endif
