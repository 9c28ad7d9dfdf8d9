/* Reading the ratelimit plugin's config (see rl_config.h). The core has checked the top-level keys
 * (store, rules) against rl_config_keys; what is inside them is checked here, with positions (the
 * store map by the reader the plugins that keep counters share, store_config.c). */
#include "rl_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

const pc_conf_key rl_config_keys[] = {
    {.key = "store",
     .type = PC_CONF_MAP,
     .doc = "where counters live: {type: local} (default) or {type: redis, address, timeout_ms, on_error, "
            "secret | secret_file, prefix}"},
    {.key = "rules", .type = PC_CONF_LIST, .required = 1, .min = 1, .max = RL_MAX_RULES, .doc = "the limits"},
    {.key = "max_keys",
     .type = PC_CONF_INT,
     .def = "1000000",
     .min = 1024,
     .max = 100000000,
     .doc = "keys the local store remembers (per process)"},
    {.key = "concurrency_retry_ms",
     .type = PC_CONF_INT,
     .def = "1000",
     .min = 1,
     .max = 3600000,
     .doc = "grpc-retry-pushback-ms of a call refused by concurrent_calls"},
    {0},
};

/* A list of strings (or one string) at key; absent: 0 with *n 0. */
static int get_strings(rl_cfg *c, const pc_config_node *map, const char *what, const char *key, char ***out,
                       size_t *n, size_t max)
{
    const pc_host *h = c->h;
    const pc_config_node *node = h->config_get(map, key);
    *out = NULL;
    *n = 0;
    if (!node) return 0;
    const char *one = h->config_string(node);
    size_t len = one ? 1 : h->config_len(node);
    if ((!one && len && h->config_key(node, 0)) || len == 0 || len > max)
        return rl_cfg_fail(c, node, "%s.%s: expected a string or a list of 1 to %zu strings", what, key, max);
    char **v = calloc(len, sizeof *v);
    if (!v) return rl_cfg_fail(c, node, "out of memory");
    *out = v;
    for (size_t i = 0; i < len; i++) {
        const pc_config_node *it = one ? node : h->config_at(node, i);
        const char *s = h->config_string(it);
        if (!s || !*s) return rl_cfg_fail(c, it, "%s.%s: expected a non-empty string", what, key);
        if (!(v[i] = strdup(s))) return rl_cfg_fail(c, it, "out of memory");
        (*n)++;
    }
    return 0;
}

static int valid_name(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= '0' && s[n] <= '9') ||
              s[n] == '-' || s[n] == '_' || s[n] == '.'))
            return 0;
    return n > 0 && n <= 64;
}

static const char *const rule_keys[] = {
    "name",  "zones",        "methods",          "key", "calls", "window_s", "messages_per_s",
    "burst", "max_delay_ms", "concurrent_calls", NULL};

static int load_rule(rl_cfg *c, rl_conf *rc, const pc_config_node *m, size_t idx)
{
    const pc_host *h = c->h;
    rl_rule *r = &rc->rules[idx];
    char what[32];
    snprintf(what, sizeof what, "rules[%zu]", idx);
    if (rl_cfg_check_keys(c, m, what, rule_keys) < 0) return -1;
    const pc_config_node *nn = h->config_get(m, "name");
    const char *name = h->config_string(nn);
    if (!name || !valid_name(name))
        return rl_cfg_fail(c, nn ? nn : m, "%s.name: required, 1 to 64 letters, digits, '-', '_' or '.'",
                           what);
    for (size_t i = 0; i < idx; i++)
        if (!strcmp(rc->rules[i].name, name))
            return rl_cfg_fail(c, nn, "%s.name: \"%s\" is used twice", what, name);
    if (!(r->name = strdup(name))) return rl_cfg_fail(c, nn, "out of memory");
    snprintf(what, sizeof what, "rules (%s)", name);
    if (get_strings(c, m, what, "zones", &r->zones, &r->nzones, 64) < 0 ||
        get_strings(c, m, what, "methods", &r->methods, &r->nmethods, 64) < 0)
        return -1;
    for (size_t i = 0; i < r->nmethods; i++)
        if (r->methods[i][0] != '/')
            return rl_cfg_fail(c, h->config_get(m, "methods"),
                               "%s.methods: \"%s\": expected a path glob such as \"/shop.Cart/*\"", what,
                               r->methods[i]);
    char **keys;
    size_t nkeys;
    if (get_strings(c, m, what, "key", &keys, &nkeys, RL_MAX_KEYS) < 0) {
        for (size_t i = 0; keys && i < nkeys; i++)
            free(keys[i]);
        free(keys);
        return -1;
    }
    for (size_t i = 0; i < nkeys; i++)
        r->keys[i] = keys[i];
    r->nkeys = nkeys;
    free(keys);
    if (!r->nkeys) {
        /* default: one counter per client address */
        if (!(r->keys[0] = strdup("client.ip"))) return rl_cfg_fail(c, m, "out of memory");
        r->nkeys = 1;
    }
    const pc_config_node *calls = h->config_get(m, "calls"), *msgs = h->config_get(m, "messages_per_s"),
                         *conc = h->config_get(m, "concurrent_calls");
    if (!!calls + !!msgs + !!conc != 1)
        return rl_cfg_fail(
            c, m, "%s: give exactly one of calls (with window_s), messages_per_s or concurrent_calls", what);
    if (calls) {
        r->kind = RL_CALLS;
        r->window_s = 1;
        if (rl_cfg_u64(c, m, what, "calls", 1, 1000000000, &r->calls) < 0 ||
            rl_cfg_u64(c, m, what, "window_s", 1, 86400 * 7, &r->window_s) < 0)
            return -1;
        if (!h->config_get(m, "window_s")) return rl_cfg_fail(c, calls, "%s: calls needs window_s", what);
        rl_gcra_init(&r->gcra, r->calls, r->window_s);
        /* Redis leases: up to a twentieth of the limit per request, usable for one emission interval
         * (at least 10 ms, at most 1 s): see docs/ratelimit.md for the error bound this gives. */
        r->lease_max = (uint32_t)(r->calls / 20 ? r->calls / 20 : 1);
        if (r->lease_max > 1024) r->lease_max = 1024;
        r->lease_ns = r->gcra.t_ns < 10000000ull     ? 10000000ull
                      : r->gcra.t_ns > 1000000000ull ? 1000000000ull
                                                     : r->gcra.t_ns;
    } else if (msgs) {
        r->kind = RL_MESSAGES;
        uint64_t rate = 0, burst = 0, delay = 10000;
        if (rl_cfg_u64(c, m, what, "messages_per_s", 1, 1000000, &rate) < 0 ||
            rl_cfg_u64(c, m, what, "burst", 1, 1000000, &burst) < 0 ||
            rl_cfg_u64(c, m, what, "max_delay_ms", 1, 3600000, &delay) < 0)
            return -1;
        r->rate = (double)rate;
        r->burst = burst ? (double)burst : (double)rate;
        r->max_delay_ms = delay;
    } else {
        r->kind = RL_CONCURRENT;
        uint64_t v = 0;
        if (rl_cfg_u64(c, m, what, "concurrent_calls", 1, 1000000, &v) < 0) return -1;
        r->limit = (uint32_t)v;
    }
    if (r->kind != RL_CALLS && h->config_get(m, "window_s"))
        return rl_cfg_fail(c, h->config_get(m, "window_s"), "%s.window_s: only with calls", what);
    if (r->kind != RL_MESSAGES && (h->config_get(m, "burst") || h->config_get(m, "max_delay_ms")))
        return rl_cfg_fail(
            c, h->config_get(m, "burst") ? h->config_get(m, "burst") : h->config_get(m, "max_delay_ms"),
            "%s: burst and max_delay_ms go with messages_per_s", what);
    snprintf(r->lbl_allowed, sizeof r->lbl_allowed, "rule=%s;result=allowed", r->name);
    snprintf(r->lbl_refused, sizeof r->lbl_refused, "rule=%s;result=refused", r->name);
    snprintf(r->lbl_shaped, sizeof r->lbl_shaped, "rule=%s;result=shaped", r->name);
    snprintf(r->lbl_store_error, sizeof r->lbl_store_error, "rule=%s;result=store_error", r->name);
    return 0;
}

int rl_conf_load(const pc_host *host, const void *handle, const pc_config_node *config, rl_conf **out,
                 char *err, size_t errlen)
{
    rl_cfg c = {host, err, errlen};
    rl_conf *rc = calloc(1, sizeof *rc);
    if (!rc) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rc->host = host;
    rc->handle = handle;
    if (getrandom(&rc->seed, sizeof rc->seed, 0) != (ssize_t)sizeof rc->seed)
        rc->seed = (uint64_t)(uintptr_t)rc;
    if (rl_store_conf_read(host, host->config_get(config, "store"), "pc:rl:", &rc->store, err, errlen) < 0)
        goto fail;
    const pc_config_node *rules = host->config_get(config, "rules");
    size_t n = host->config_len(rules);
    for (size_t i = 0; i < n; i++) {
        rc->nrules = i + 1;
        if (load_rule(&c, rc, host->config_at(rules, i), i) < 0) goto fail;
    }
    uint64_t max_keys = 1000000, retry = 1000;
    const char *s;
    if ((s = host->config_string(host->config_get(config, "max_keys")))) max_keys = strtoull(s, NULL, 10);
    if ((s = host->config_string(host->config_get(config, "concurrency_retry_ms"))))
        retry = strtoull(s, NULL, 10);
    rc->concurrency_retry_ms = retry;
    if (!(rc->local = rl_local_new((size_t)max_keys))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    *out = rc;
    return 0;
fail:
    rl_conf_free(rc);
    return -1;
}

void rl_conf_free(rl_conf *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->nrules; i++) {
        rl_rule *r = &c->rules[i];
        free(r->name);
        for (size_t k = 0; k < r->nzones; k++)
            free(r->zones[k]);
        free(r->zones);
        for (size_t k = 0; k < r->nmethods; k++)
            free(r->methods[k]);
        free(r->methods);
        for (size_t k = 0; k < r->nkeys; k++)
            free(r->keys[k]);
    }
    rl_local_free(c->local);
    free(c);
}
