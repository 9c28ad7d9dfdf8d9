/* Reading a plugin's `store:` map (see store_config.h). The core only knows that `store` is a map;
 * its keys and values are checked here, with the position of the node at fault. */
#include "store_config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rl_cfg_fail(rl_cfg *c, const pc_config_node *n, const char *fmt, ...)
{
    char where[512], msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s: %s", c->h->config_where(n, where, sizeof where), msg);
    return -1;
}

int rl_cfg_check_keys(rl_cfg *c, const pc_config_node *map, const char *what, const char *const *known)
{
    const pc_host *h = c->h;
    if (h->config_string(map) || (h->config_len(map) && !h->config_key(map, 0)))
        return rl_cfg_fail(c, map, "%s: expected a map", what);
    for (size_t i = 0; i < h->config_len(map); i++) {
        const char *k = h->config_key(map, i);
        size_t j = 0;
        while (known[j] && strcmp(known[j], k))
            j++;
        if (!known[j]) {
            char list[256] = "";
            for (size_t q = 0; known[q]; q++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", q ? ", " : "", known[q]);
            return rl_cfg_fail(c, h->config_at(map, i), "%s: unknown key \"%s\" (valid keys: %s)", what, k,
                               list);
        }
    }
    return 0;
}

int rl_cfg_u64(rl_cfg *c, const pc_config_node *map, const char *what, const char *key, uint64_t lo,
               uint64_t hi, uint64_t *out)
{
    const pc_config_node *n = c->h->config_get(map, key);
    if (!n) return 0;
    const char *s = c->h->config_string(n);
    char *end = NULL;
    errno = 0;
    unsigned long long v = s && *s >= '0' && *s <= '9' ? strtoull(s, &end, 10) : 0;
    if (!s || !end || *end || errno || v < lo || v > hi)
        return rl_cfg_fail(c, n, "%s.%s: expected a whole number from %llu to %llu", what, key,
                           (unsigned long long)lo, (unsigned long long)hi);
    *out = v;
    return 0;
}

static const char *const store_keys[] = {"type",   "address",     "timeout_ms", "on_error",
                                         "secret", "secret_file", "prefix",     NULL};

/* `address`: "<ip>:<port>" or "[<ipv6>]:<port>", numeric. */
static int read_address(rl_cfg *c, const pc_config_node *s, rl_store_conf *out)
{
    const pc_config_node *an = c->h->config_get(s, "address");
    const char *addr = c->h->config_string(an);
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    char ip[64];
    unsigned char bin[16];
    long port = colon ? strtol(colon + 1, NULL, 10) : 0;
    if (!addr || !colon || (size_t)(colon - addr) >= sizeof ip || port < 1 || port > 65535)
        return rl_cfg_fail(c, an ? an : s,
                           "store.address: expected \"<ip>:<port>\", e.g. \"127.0.0.1:6379\"");
    snprintf(ip, sizeof ip, "%.*s", (int)(colon - addr), addr);
    if (ip[0] == '[' && ip[strlen(ip) - 1] == ']') {
        memmove(ip, ip + 1, strlen(ip));
        ip[strlen(ip) - 1] = '\0';
    }
    if (inet_pton(AF_INET, ip, bin) != 1 && inet_pton(AF_INET6, ip, bin) != 1)
        return rl_cfg_fail(
            c, an, "store.address: \"%s\" is not a numeric address (a name would block the event loop)", ip);
    snprintf(out->ip, sizeof out->ip, "%s", ip);
    out->port = (int)port;
    return 0;
}

/* The secret every edge of the deployment shares: client addresses and API keys are personal data,
 * so Redis only ever sees keyed digests of them. */
static int read_secret(rl_cfg *c, const pc_config_node *s, rl_store_conf *out)
{
    const pc_host *h = c->h;
    const pc_config_node *sn = h->config_get(s, "secret"), *sf = h->config_get(s, "secret_file");
    if (!!sn == !!sf)
        return rl_cfg_fail(c, s, "store: a redis store needs exactly one of secret or secret_file");
    if (sn) {
        const char *v = h->config_string(sn);
        if (!v || strlen(v) < 16) return rl_cfg_fail(c, sn, "store.secret: at least 16 characters");
        out->secret_len = strlen(v) < sizeof out->secret ? strlen(v) : sizeof out->secret;
        memcpy(out->secret, v, out->secret_len);
        return 0;
    }
    char path[PATH_MAX];
    if (!h->config_path(sf, path, sizeof path))
        return rl_cfg_fail(c, sf, "store.secret_file: expected a path");
    FILE *f = fopen(path, "rb");
    if (!f) return rl_cfg_fail(c, sf, "store.secret_file: %s: %s", path, strerror(errno));
    size_t n = fread(out->secret, 1, sizeof out->secret, f);
    fclose(f);
    while (n && (out->secret[n - 1] == '\n' || out->secret[n - 1] == '\r'))
        n--;
    if (n < 16) return rl_cfg_fail(c, sf, "store.secret_file: %s: at least 16 bytes of secret", path);
    out->secret_len = n;
    return 0;
}

int rl_store_conf_read(const pc_host *h, const pc_config_node *s, const char *default_prefix,
                       rl_store_conf *out, char *err, size_t errlen)
{
    rl_cfg c = {h, err, errlen};
    memset(out, 0, sizeof *out);
    out->type = RL_STORE_LOCAL;
    out->timeout_ms = 50;
    out->on_error = RL_ERR_LOCAL;
    snprintf(out->prefix, sizeof out->prefix, "%s", default_prefix);
    if (!s) return 0;
    if (rl_cfg_check_keys(&c, s, "store", store_keys) < 0) return -1;
    const pc_config_node *tn = h->config_get(s, "type");
    const char *type = tn ? h->config_string(tn) : "local";
    if (!type || (strcmp(type, "local") && strcmp(type, "redis")))
        return rl_cfg_fail(&c, tn, "store.type: expected local or redis");
    if (!strcmp(type, "local")) {
        for (size_t i = 1; store_keys[i]; i++)
            if (h->config_get(s, store_keys[i]))
                return rl_cfg_fail(&c, h->config_get(s, store_keys[i]), "store.%s: only with type: redis",
                                   store_keys[i]);
        return 0;
    }
    out->type = RL_STORE_REDIS;
    if (read_address(&c, s, out) < 0 ||
        rl_cfg_u64(&c, s, "store", "timeout_ms", 1, 60000, &out->timeout_ms) < 0)
        return -1;
    const pc_config_node *en = h->config_get(s, "on_error");
    const char *oe = en ? h->config_string(en) : "local";
    if (!oe || (strcmp(oe, "local") && strcmp(oe, "allow") && strcmp(oe, "deny")))
        return rl_cfg_fail(&c, en, "store.on_error: expected local, allow or deny");
    out->on_error = !strcmp(oe, "local") ? RL_ERR_LOCAL : !strcmp(oe, "allow") ? RL_ERR_ALLOW : RL_ERR_DENY;
    const pc_config_node *pn = h->config_get(s, "prefix");
    const char *prefix = pn ? h->config_string(pn) : default_prefix;
    if (!prefix || strlen(prefix) >= sizeof out->prefix)
        return rl_cfg_fail(&c, pn, "store.prefix: at most 63 bytes");
    snprintf(out->prefix, sizeof out->prefix, "%s", prefix);
    return read_secret(&c, s, out);
}
