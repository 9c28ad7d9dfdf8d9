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

/* The `store` map s (NULL: absent, type local) into *out, prefix defaulting to default_prefix. 0, or
 * -1 with "file:line:col: store...: what" in err. */
int rl_store_conf_read(const pc_host *h, const pc_config_node *s, const char *default_prefix,
                       rl_store_conf *out, char *err, size_t errlen);

#endif
