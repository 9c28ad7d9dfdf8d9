/* Bot scoring plugin: every request gets a score from 1 (surely automated) to 99 (surely a human-driven
 * client), a class and the signals behind it, from the client's TLS and HTTP/2 fingerprints (computed by the
 * core from the raw ClientHello and frames), its User-Agent, its address and its recent behaviour. Later
 * plugins, Lua and the access log read what it publishes; a zone can deny calls below a threshold,
 * applied once every plugin saw the headers (on_request_ready), to the score as Lua left it.
 *
 * The User-Agent's client stacks are checked against the stacks the fingerprints belong to (stacks.c), and a
 * zone may name the stacks it expects (expect_clients).
 *
 * Behaviour (request rate, error ratio) is counted per client in a table the process's workers share
 * (table.c); with `store: {type: redis}` also in Redis, for every edge of a fleet (fleet.c), each worker
 * sending its counts every 100 ms so that no request waits for Redis.
 *
 *   - name: bot
 *     config:                           # every key optional
 *       rules: ../rules/bots            # *.rules files; relative to this config file (default: the
 *                                       # installed rules/bots, else the source tree's)
 *       header: x-bot-score             # also send the score to the origin
 *       max_clients: 65536              # behaviour table per process (about 80 bytes each)
 *       rate_window_s: 10
 *       rate_limit: 100                 # requests per client per rate window before the score drops
 *       error_window_s: 60
 *       error_min: 20                   # finished requests in the window before the error ratio counts
 *       error_ratio: 0.5
 *       error_codes: [5, 7, 16]         # gRPC statuses counted as errors (plain HTTP: 401, 403, 404)
 *       store: { type: redis, address: "127.0.0.1:6379", secret_file: bot.secret }   # default local
 *       zones:
 *         example.com: { block_below: 30, allow_verified: true, expect_clients: [grpc-go, grpc-java] }
 */
#include <errno.h>
#include <portcullis/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bot.h"
#include "fleet.h"
#include "store_config.h"

/* The shipped rules when `rules` is not set: the installed rules/bots, else the source tree's (a build
 * tree's binary), as the modsecurity plugin finds its rules/waf. Set by plugins/CMakeLists.txt. */
#ifndef PC_BOT_RULES_DIR
#define PC_BOT_RULES_DIR "/usr/local/share/portcullis/rules/bots"
#endif
#ifndef PC_BOT_SOURCE_RULES_DIR
#define PC_BOT_SOURCE_RULES_DIR ""
#endif

typedef struct zone_conf {
    char *name;
    int block_below; /* 0: never block */
    bool allow_verified;
    char **expect; /* expect_clients: stack names, NULL: any client */
    size_t nexpect;
} zone_conf;

/* Immutable after init: read by every worker without locks. */
typedef struct bot_conf {
    const pc_host *host;
    const void *handle;
    bot_rules rules;
    bot_params params;
    char *header;
    size_t max_clients;
    uint64_t rate_window_ms, error_window_ms;
    uint32_t error_codes; /* bit per gRPC status 1-16 */
    zone_conf *zones;
    size_t nzones;
    rl_store_conf store;
    bot_table *table; /* the process's counts: the store with type local, Redis's fallback with redis */
} bot_conf;

typedef struct bot_worker {
    const bot_conf *conf;
    bot_fleet *fleet; /* store type redis */
} bot_worker;

typedef struct bot_req {
    bool scored;
    bool verified;
    bool blocked;
} bot_req;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- config ---- */

static void conf_free(bot_conf *c)
{
    if (!c) return;
    bot_rules_free(&c->rules);
    bot_table_free(c->table);
    free(c->header);
    for (size_t i = 0; i < c->nzones; i++) {
        free(c->zones[i].name);
        for (size_t j = 0; j < c->zones[i].nexpect; j++)
            free(c->zones[i].expect[j]);
        free(c->zones[i].expect);
    }
    free(c->zones);
    free(c);
}

typedef struct cfg {
    const pc_host *h;
    char *err;
    size_t errlen;
} cfg;

static const char *where(const cfg *k, const pc_config_node *n, char *buf, size_t len)
{
    return k->h->config_where(n, buf, len);
}

static int bad(const cfg *k, const pc_config_node *n, const char *key, const char *what)
{
    char at[512];
    snprintf(k->err, k->errlen, "%s: %s: %s", where(k, n, at, sizeof at), key, what);
    return -1;
}

static int check_keys(const cfg *k, const pc_config_node *map, const char *const *known, const char *what)
{
    for (size_t i = 0; map && i < k->h->config_len(map); i++) {
        const char *key = k->h->config_key(map, i);
        bool ok = false;
        for (size_t j = 0; key && known[j]; j++)
            ok = ok || !strcmp(key, known[j]);
        if (ok) continue;
        char list[256] = "";
        for (size_t j = 0; known[j]; j++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", j ? ", " : "", known[j]);
        char at[512], msg[600];
        snprintf(msg, sizeof msg, "unknown key \"%s\" in %s (valid keys: %s)", key ? key : "?", what, list);
        snprintf(k->err, k->errlen, "%s: %s", where(k, k->h->config_at(map, i), at, sizeof at), msg);
        return -1;
    }
    return 0;
}

static int get_uint(const cfg *k, const pc_config_node *map, const char *key, unsigned long lo,
                    unsigned long hi, unsigned long *out)
{
    const pc_config_node *n = k->h->config_get(map, key);
    if (!n) return 0;
    const char *s = k->h->config_string(n);
    char *e;
    errno = 0;
    unsigned long v = s && *s != '-' ? strtoul(s, &e, 10) : 0;
    if (!s || !*s || *s == '-' || errno || *e || v < lo || v > hi) {
        char what[96];
        snprintf(what, sizeof what, "expected a whole number from %lu to %lu", lo, hi);
        return bad(k, n, key, what);
    }
    *out = v;
    return 0;
}

static int get_bool(const cfg *k, const pc_config_node *map, const char *key, bool *out)
{
    const pc_config_node *n = k->h->config_get(map, key);
    if (!n) return 0;
    const char *s = k->h->config_string(n);
    if (s && !strcmp(s, "true"))
        *out = true;
    else if (s && !strcmp(s, "false"))
        *out = false;
    else
        return bad(k, n, key, "expected true or false");
    return 0;
}

/* `rules`, or the shipped rules when it is not set; dir gets the directory read. */
static int load_rules(const cfg *k, bot_conf *c, const pc_config_node *config, char *dir, size_t dirlen)
{
    const pc_config_node *n = config ? k->h->config_get(config, "rules") : NULL;
    char msg[1024];
    if (!n) {
        if (bot_rules_shipped_dir(PC_BOT_RULES_DIR, PC_BOT_SOURCE_RULES_DIR, dir, dirlen, msg, sizeof msg) <
            0) {
            snprintf(k->err, k->errlen, "rules: %s", msg);
            return -1;
        }
        if (bot_rules_load_dir(&c->rules, dir, msg, sizeof msg) < 0) {
            snprintf(k->err, k->errlen, "rules (not set: the shipped rules): %s", msg);
            return -1;
        }
        if (!c->rules.nfps && !c->rules.nuas && !c->rules.nver) {
            snprintf(k->err, k->errlen, "rules: not set, and the shipped rules directory %s holds no rules",
                     dir);
            return -1;
        }
        return 0;
    }
    const char *s = k->h->config_string(n);
    if (!s || !*s) return bad(k, n, "rules", "expected the path of a directory of .rules files");
    if (!k->h->config_path(n, dir, dirlen)) return bad(k, n, "rules", "path too long");
    if (bot_rules_load_dir(&c->rules, dir, msg, sizeof msg) < 0) return bad(k, n, "rules", msg);
    return 0;
}

/* expect_clients: [grpc-go, grpc-java]: names of stacks the rules declare. */
static int load_expect(const cfg *k, const bot_conf *c, zone_conf *zc, const pc_config_node *m)
{
    const pc_host *h = k->h;
    const pc_config_node *n = h->config_get(m, "expect_clients");
    if (!n) return 0;
    size_t len = h->config_len(n);
    if (h->config_string(n) || (len > 0 && h->config_key(n, 0)))
        return bad(k, n, "expect_clients", "expected a list of client stacks, e.g. [grpc-go, grpc-java]");
    if (!len) return 0;
    if (!(zc->expect = calloc(len, sizeof *zc->expect))) return bad(k, n, "expect_clients", "out of memory");
    for (size_t i = 0; i < len; i++) {
        const pc_config_node *it = h->config_at(n, i);
        const char *s = h->config_string(it);
        if (!s || bot_rules_stack(&c->rules, s, strlen(s)) < 0) {
            char what[1024];
            int at = snprintf(what, sizeof what,
                              "unknown client stack \"%s\" (the rules declare:", s ? s : "(not a name)");
            for (size_t j = 0; j < c->rules.nstacks && at > 0 && (size_t)at < sizeof what; j++)
                at += snprintf(what + at, sizeof what - (size_t)at, " %s", c->rules.stacks[j].name);
            if (at > 0 && (size_t)at < sizeof what) snprintf(what + at, sizeof what - (size_t)at, ")");
            return bad(k, it, "expect_clients", what);
        }
        if (!(zc->expect[zc->nexpect] = strdup(s))) return bad(k, it, "expect_clients", "out of memory");
        zc->nexpect++;
    }
    return 0;
}

static int load_zones(const cfg *k, bot_conf *c, const pc_config_node *config)
{
    static const char *const zkeys[] = {"block_below", "allow_verified", "expect_clients", NULL};
    const pc_config_node *z = k->h->config_get(config, "zones");
    if (!z) return 0;
    size_t n = k->h->config_len(z);
    if (n > 0 && !k->h->config_key(z, 0))
        return bad(k, z, "zones",
                   "expected a map of zone name to { block_below, allow_verified, expect_clients }");
    c->zones = calloc(n ? n : 1, sizeof *c->zones);
    if (!c->zones) return bad(k, z, "zones", "out of memory");
    for (size_t i = 0; i < n; i++) {
        const pc_config_node *m = k->h->config_at(z, i);
        zone_conf *zc = &c->zones[c->nzones++];
        zc->name = strdup(k->h->config_key(z, i));
        zc->allow_verified = true;
        unsigned long v = 0;
        if (!zc->name || check_keys(k, m, zkeys, "a bot zone") < 0 ||
            get_uint(k, m, "block_below", 0, 99, &v) < 0 ||
            get_bool(k, m, "allow_verified", &zc->allow_verified) < 0 || load_expect(k, c, zc, m) < 0)
            return -1;
        zc->block_below = (int)v;
    }
    return 0;
}

static int load_params(const cfg *k, bot_conf *c, const pc_config_node *config)
{
    const pc_host *h = k->h;
    unsigned long max_clients = 65536, rate_s = 10, rate_limit = 100, error_s = 60, error_min = 20;
    c->params.error_ratio = 0.5;
    c->error_codes = 1u << 5 | 1u << 7 | 1u << 16; /* NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED */
    if (config && (get_uint(k, config, "max_clients", 1, 1u << 24, &max_clients) < 0 ||
                   get_uint(k, config, "rate_window_s", 1, 3600, &rate_s) < 0 ||
                   get_uint(k, config, "rate_limit", 1, 1000000000, &rate_limit) < 0 ||
                   get_uint(k, config, "error_window_s", 1, 86400, &error_s) < 0 ||
                   get_uint(k, config, "error_min", 1, 1000000000, &error_min) < 0))
        return -1;
    c->max_clients = max_clients;
    c->rate_window_ms = rate_s * 1000;
    c->error_window_ms = error_s * 1000;
    c->params.rate_limit = (uint32_t)rate_limit;
    c->params.error_min = (uint32_t)error_min;
    if (!config) return 0;
    const pc_config_node *n = h->config_get(config, "error_ratio");
    if (n) {
        const char *s = h->config_string(n);
        char *e;
        double d = s ? strtod(s, &e) : 0;
        if (!s || !*s || *e || !(d > 0 && d <= 1))
            return bad(k, n, "error_ratio", "expected a number above 0 and at most 1");
        c->params.error_ratio = d;
    }
    if ((n = h->config_get(config, "error_codes"))) {
        size_t len = h->config_len(n);
        if (h->config_string(n))
            return bad(k, n, "error_codes", "expected a list of gRPC status codes, e.g. [5, 7, 16]");
        c->error_codes = 0;
        for (size_t i = 0; i < len; i++) {
            const pc_config_node *it = h->config_at(n, i);
            const char *s = h->config_string(it);
            char *e;
            long code = s ? strtol(s, &e, 10) : -1;
            if (!s || !*s || *e || code < 1 || code > 16)
                return bad(k, it, "error_codes", "expected gRPC status codes from 1 to 16");
            c->error_codes |= 1u << code;
        }
    }
    if ((n = h->config_get(config, "header"))) {
        const char *s = h->config_string(n);
        bool ok = s && *s;
        for (const char *q = s; ok && *q; q++)
            ok = (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '-' || *q == '_';
        if (!ok) return bad(k, n, "header", "expected a lower-case header name such as x-bot-score");
        if (!(c->header = strdup(s))) return bad(k, n, "header", "out of memory");
    }
    return 0;
}

/* The plugin's keys: the core checks a config against them before init (see plugin.h). */
static const pc_conf_key config_keys[] = {
    {.key = "rules",
     .type = PC_CONF_PATH,
     .doc = "bot rules file or directory (default: the shipped rules/bots)"},
    {.key = "header", .type = PC_CONF_STRING, .doc = "request header that carries the score to the origin"},
    {.key = "max_clients",
     .type = PC_CONF_INT,
     .min = 1,
     .max = 16777216,
     .doc = "clients tracked per process, and per worker with a redis store (default 65536)"},
    {.key = "rate_window_s",
     .type = PC_CONF_INT,
     .min = 1,
     .max = 3600,
     .doc = "request rate window (default 10)"},
    {.key = "rate_limit",
     .type = PC_CONF_INT,
     .min = 1,
     .max = 1000000000,
     .doc = "requests per window above which a client looks automated (default 100)"},
    {.key = "error_window_s",
     .type = PC_CONF_INT,
     .min = 1,
     .max = 86400,
     .doc = "error ratio window (default 60)"},
    {.key = "error_min",
     .type = PC_CONF_INT,
     .min = 1,
     .max = 1000000000,
     .doc = "finished calls before the error ratio counts (default 20)"},
    {.key = "error_ratio",
     .type = PC_CONF_NUMBER,
     .doc = "error share above which a client looks automated (default 0.5)"},
    {.key = "error_codes",
     .type = PC_CONF_LIST,
     .doc = "gRPC status codes that count as errors (default [5, 7, 16])"},
    {.key = "zones", .type = PC_CONF_MAP, .doc = "per zone: block_below, allow_verified, expect_clients"},
    {.key = "store",
     .type = PC_CONF_MAP,
     .doc = "where behaviour is counted: {type: local} (default, per process) or {type: redis, address, "
            "timeout_ms, on_error, secret | secret_file, prefix} (per fleet)"},
    {0},
};

static int init(const pc_host *host, const void *handle, const pc_config_node *config, void **out, char *err,
                size_t errlen)
{
    cfg k = {host, err, errlen};
    bot_conf *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->host = host;
    c->handle = handle;
    if (!PC_HOST_HAS(host, config_path)) {
        snprintf(err, errlen, "this plugin needs a newer Portcullis core (host->config_path)");
        free(c);
        return -1;
    }
    char dir[4096];
    /* The core checked the top-level keys against config_keys; zones and store are checked here. */
    if (load_params(&k, c, config) < 0 || load_rules(&k, c, config, dir, sizeof dir) < 0 ||
        (config && load_zones(&k, c, config) < 0) ||
        rl_store_conf_read(host, config ? host->config_get(config, "store") : NULL, "pc:bot:", &c->store, err,
                           errlen) < 0) {
        conf_free(c);
        return -1;
    }
    if (c->store.type == RL_STORE_REDIS && !PC_HOST_HAS(host, event_loop)) {
        snprintf(err, errlen, "store: type redis needs a newer Portcullis core (host->event_loop)");
        conf_free(c);
        return -1;
    }
    if (!(c->table = bot_table_new(c->max_clients, c->rate_window_ms, c->error_window_ms))) {
        snprintf(err, errlen, "no memory for a table of %zu clients", c->max_clients);
        conf_free(c);
        return -1;
    }
    host->log(handle, PC_PLUGIN_LOG_INFO,
              "rules %s%s: %zu fingerprints, %zu user-agent rules, %zu verified bots, %zu client stacks", dir,
              config && host->config_get(config, "rules") ? "" : " (shipped)", c->rules.nfps, c->rules.nuas,
              c->rules.nver, c->rules.nstacks);
    if (c->store.type == RL_STORE_REDIS)
        /* Whatever on_error says: a client's score only ever falls back to this process's counts. */
        host->log(
            handle, PC_PLUGIN_LOG_INFO,
            "behaviour counted in Redis at %s:%d (prefix %s), this process's counts while it is unavailable",
            c->store.ip, c->store.port, c->store.prefix);
    *out = c;
    return 0;
}

static void destroy(void *ctx)
{
    conf_free(ctx);
}

static int worker_init(void *plugin_ctx, unsigned worker_id, void **worker_ctx, char *err, size_t errlen)
{
    (void)worker_id;
    const bot_conf *c = plugin_ctx;
    bot_worker *w = calloc(1, sizeof *w);
    if (w && c->store.type == RL_STORE_REDIS &&
        !(w->fleet = bot_fleet_new(&c->store, c->max_clients, c->rate_window_ms, c->error_window_ms))) {
        free(w);
        w = NULL;
    }
    if (!w) {
        snprintf(err, errlen, "no memory for a cache of %zu clients", c->max_clients);
        return -1;
    }
    w->conf = c;
    *worker_ctx = w;
    return 0;
}

static void worker_destroy(void *ctx)
{
    bot_worker *w = ctx;
    bot_fleet_free(w->fleet);
    free(w);
}

/* ---- hooks ---- */

static const zone_conf *zone_of(const bot_conf *c, const char *zone)
{
    for (size_t i = 0; zone && i < c->nzones; i++)
        if (!strcmp(c->zones[i].name, zone)) return &c->zones[i];
    return NULL;
}

static void publish_if(const pc_host *h, pc_request *r, const char *key, const char *value)
{
    if (value && *value) h->publish(r, key, value);
}

static int on_request_headers(pc_request *r, void *ctx, void *state)
{
    bot_worker *w = ctx;
    const bot_conf *c = w->conf;
    const pc_host *h = c->host;
    bot_input in = {0};
    /* These request_info values live as long as the connection: no copies needed. */
    in.ja4 = h->request_info(r, "tls.ja4");
    in.ja3_hash = h->request_info(r, "tls.ja3_hash");
    in.h2fp = h->request_info(r, "h2.fingerprint");
    in.user_agent = h->header_get(r, "user-agent");
    const zone_conf *z = zone_of(c, h->request_info(r, "zone"));
    if (z) {
        in.expect = (const char *const *)z->expect;
        in.nexpect = z->nexpect;
    }
    uint8_t addr[16], key[16];
    const char *ip = h->request_info(r, "client.ip");
    if (ip && bot_parse_ip(ip, addr) == 0) {
        in.addr = addr;
        bot_client_key(addr, key);
        /* The process's counts always: they are the store with type local, and what a fleet falls back on
         * (already filled) when Redis goes away. */
        bot_estimate est;
        bot_table_started(c->table, key, now_ms(), &est);
        double fleet[3];
        if (w->fleet && bot_fleet_started(w->fleet, h->event_loop(r), key, fleet))
            bot_estimate_merge(&est, fleet);
        in.rate = est.rate;
        in.done = est.done;
        in.errors = est.errors;
    }
    bot_verdict v;
    bot_evaluate(&c->rules, &c->params, &in, &v);

    char score[8];
    snprintf(score, sizeof score, "%d", v.score);
    h->publish_int(r, "bot.score", v.score);
    h->publish(r, "bot.class", v.class);
    h->publish(r, "bot.signals", v.signals);
    /* Flat names for the access log. */
    h->publish_int(r, "bot_score", v.score);
    h->publish(r, "bot_class", v.class);
    publish_if(h, r, "ja4", in.ja4);
    publish_if(h, r, "ja3", in.ja3_hash);
    publish_if(h, r, "h2_fingerprint", in.h2fp);
    h->metric_observe(r, "bot_score", v.score);
    h->metric_count(r, "bot_class", v.class, 1);
    if (c->header) h->header_set(r, c->header, score);

    bot_req *st = state;
    if (st) {
        st->scored = true;
        st->verified = v.verified;
    }
    return PC_CONTINUE;
}

/* The zone's threshold is applied once every plugin's headers hook ran, to the score as it then
 * stands ("bot.score"): a Lua bot_score rule after this plugin may have raised or lowered it. */
static int on_request_ready(pc_request *r, void *ctx, void *state)
{
    bot_worker *w = ctx;
    const bot_conf *c = w->conf;
    const pc_host *h = c->host;
    bot_req *st = state;
    if (!st || !st->scored) return PC_CONTINUE;
    const zone_conf *z = zone_of(c, h->request_info(r, "zone"));
    const char *score = h->lookup(r, "bot.score");
    if (!z || !score || atoi(score) >= z->block_below || (st->verified && z->allow_verified))
        return PC_CONTINUE;
    st->blocked = true;
    h->publish_bool(r, "bot.blocked", 1);
    const char *class = h->lookup(r, "bot.class");
    h->metric_count(r, "bot_blocked", class ? class : "unknown", 1);
    /* No score or signal in the message: it would tell a bot what to change. The log has them. */
    return h->deny(r, PC_GRPC_PERMISSION_DENIED, "refused by bot management");
}

static bool is_error(const bot_conf *c, pc_request *r)
{
    const pc_host *h = c->host;
    const char *grpc = h->request_info(r, "grpc");
    if (grpc && !strcmp(grpc, "1")) {
        const char *gs = h->request_info(r, "grpc_status");
        long code = gs ? strtol(gs, NULL, 10) : 0;
        return code >= 1 && code <= 16 && (c->error_codes & (1u << code));
    }
    const char *st = h->request_info(r, "status");
    return st && (!strcmp(st, "401") || !strcmp(st, "403") || !strcmp(st, "404"));
}

/* Finished requests feed the error ratio. Our own denials are left out: counting them would keep a client
 * blocked for being blocked. */
static void on_log(pc_request *r, void *ctx, void *state)
{
    bot_worker *w = ctx;
    const bot_conf *c = w->conf;
    const pc_host *h = c->host;
    const bot_req *st = state;
    if (!st || !st->scored || st->blocked) return;
    uint8_t addr[16], key[16];
    const char *ip = h->request_info(r, "client.ip");
    if (!ip || bot_parse_ip(ip, addr) < 0) return;
    bot_client_key(addr, key);
    bool error = is_error(c, r);
    bot_table_finished(c->table, key, now_ms(), error);
    if (w->fleet) bot_fleet_finished(w->fleet, key, error);
}

PC_PLUGIN_EXPORT const pc_plugin pc_plugin_v2 = {
    .abi_version = PC_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pc_plugin),
    .name = "bot",
    .version = "2.0",
    .summary = "bot scoring from TLS and HTTP/2 fingerprints, user agents and behaviour",
    .config = config_keys,
    .request_state_size = sizeof(bot_req),
    .init = init,
    .destroy = destroy,
    .worker_init = worker_init,
    .worker_destroy = worker_destroy,
    .on_request_headers = on_request_headers,
    .on_request_ready = on_request_ready,
    .on_log = on_log,
};
