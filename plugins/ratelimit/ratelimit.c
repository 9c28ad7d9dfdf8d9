/* The ratelimit plugin: limits that speak gRPC. Rules limit calls per window (GCRA), calls in flight,
 * or shape the request messages of a stream (a token bucket per stream, held back through HTTP/2
 * flow control while it waits). Counters live in the process (shared by every worker) or in Redis
 * (shared by every edge of a fleet), where each worker leases a few calls at a time so that most
 * calls cost no round trip. A refused call gets RESOURCE_EXHAUSTED naming the rule, with
 * grpc-retry-pushback-ms (gRFC A6); plain HTTP gets 429 with Retry-After. See docs/ratelimit.md. */
#include <fnmatch.h>
#include <openssl/evp.h>
#include <portcullis/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>
#include <xxhash.h>

#include "local_store.h"
#include "redis_store.h"
#include "rl_config.h"

#define LEASES 4096 /* per worker, direct-mapped by key digest */

/* GCRA on Redis, with the server's clock (every edge agrees on it): takes up to ARGV[3] calls, returns
 * {taken, retry_us}. KEYS[1]: the bucket's TAT in microseconds, expiring once the bucket is full. */
static const char gcra_script[] =
    "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000000 + tonumber(t[2]) "
    "local T = tonumber(ARGV[1]) local W = tonumber(ARGV[2]) local want = tonumber(ARGV[3]) "
    "local tat = tonumber(redis.call('GET', KEYS[1]) or '0') if tat < now then tat = now end "
    "local ahead = tat - now local room = 0 if ahead <= W then room = math.floor((W - ahead) / T) end "
    "local n = math.min(room, want) if n <= 0 then return {0, ahead + T - W} end "
    "tat = tat + n * T "
    "redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000) "
    "return {n, 0}";
/* Calls in flight: one more unless at ARGV[1]; the count expires ARGV[2] ms after its last change,
 * so the slots of an edge that died are given back. */
static const char acquire_script[] =
    "local n = redis.call('INCR', KEYS[1]) redis.call('PEXPIRE', KEYS[1], ARGV[2]) "
    "if n > tonumber(ARGV[1]) then redis.call('DECR', KEYS[1]) return 0 end "
    "return 1";
static const char release_script[] =
    "local n = redis.call('DECR', KEYS[1]) if n <= 0 then redis.call('DEL', KEYS[1]) end return n";
#define INFLIGHT_TTL_MS "600000"

typedef struct lease {
    uint8_t key[16];
    uint32_t have;       /* calls leased and not used yet */
    uint32_t size;       /* calls the next request asks for */
    uint64_t expires_ns; /* leased calls are usable until then */
    int refilling;       /* a request for the next lease is out (sent before this one runs out) */
    int asking;          /* a call found the lease empty and asked for a whole lease */
    struct pending *waiters, *waiters_tail; /* calls that found it empty meanwhile: served by the answer */
} lease;

/* Adds calls leased at `now`: what is left of an expired lease is dropped, never revived. */
static void lease_add(lease *l, uint32_t calls, uint64_t now, uint64_t lease_ns)
{
    if (l->expires_ns <= now) l->have = 0;
    l->have += calls;
    l->expires_ns = now + lease_ns;
}

typedef struct rl_worker {
    const rl_conf *c;
    rl_redis *redis; /* made on the first request, on this worker's loop */
    lease *leases;
} rl_worker;

/* Per request: the digests of the matching rules, the shaping buckets, the slots held. */
typedef struct rl_req {
    uint32_t match; /* rules that apply to this call */
    uint32_t held;  /* concurrent_calls rules holding a slot */
    uint32_t held_redis;
    int matched;
    uint8_t digest[RL_MAX_RULES][16];
    rl_bucket bucket[RL_MAX_RULES];
} rl_req;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- which rules, which key ---- */

static int rule_applies(const rl_rule *ru, const char *zone, const char *path)
{
    if (ru->nzones) {
        size_t i = 0;
        while (i < ru->nzones && (!zone || strcmp(ru->zones[i], zone)))
            i++;
        if (i == ru->nzones) return 0;
    }
    if (ru->nmethods) {
        size_t i = 0;
        while (i < ru->nmethods && (!path || fnmatch(ru->methods[i], path, 0) != 0))
            i++;
        if (i == ru->nmethods) return 0;
    }
    return 1;
}

/* The rule's key for this request: its name and the values of its key facts, as text. A fact the
 * request lacks counts as empty, so such calls share one counter rather than escape the limit. */
static size_t key_text(const pc_host *h, pc_request *r, const rl_rule *ru, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "%s", ru->name) + 1;
    for (size_t i = 0; i < ru->nkeys && n < len; i++) {
        const char *k = ru->keys[i], *v;
        if (!strncmp(k, "header:", 7))
            v = h->header_get(r, k + 7);
        else if (!(v = h->request_info(r, k)))
            v = h->lookup(r, k);
        int w = snprintf(buf + n, len - n, "%s\x1f", v ? v : "");
        if (w < 0) break;
        n += (size_t)w < len - n ? (size_t)w : len - n - 1;
    }
    return n < len ? n : len;
}

static void match_rules(const rl_conf *c, pc_request *r, rl_req *st)
{
    if (st->matched) return;
    st->matched = 1;
    const pc_host *h = c->host;
    const char *zone = h->request_info(r, "zone"), *path = h->request_info(r, "path");
    for (size_t i = 0; i < c->nrules; i++) {
        if (!rule_applies(&c->rules[i], zone, path)) continue;
        st->match |= 1u << i;
        char text[1024];
        size_t n = key_text(h, r, &c->rules[i], text, sizeof text);
        XXH128_hash_t d = XXH3_128bits_withSeed(text, n, c->seed);
        memcpy(st->digest[i], &d.low64, 8);
        memcpy(st->digest[i] + 8, &d.high64, 8);
    }
}

/* The Redis key of a rule's counter: a keyed digest (HMAC-SHA-256 with the deployment's secret) of
 * the same text, so that Redis never holds a client address or an API key. */
static int redis_key(const rl_conf *c, pc_request *r, const rl_rule *ru, const char *suffix, char *out,
                     size_t len)
{
    char text[1024];
    size_t n = key_text(c->host, r, ru, text, sizeof text);
    unsigned char mac[32];
    size_t maclen = 0;
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, c->store.secret, c->store.secret_len,
                   (const unsigned char *)text, n, mac, sizeof mac, &maclen))
        return -1;
    int w = snprintf(out, len, "%s", c->store.prefix);
    for (size_t i = 0; i < 16 && (size_t)w + 2 < len; i++)
        w += snprintf(out + w, len - (size_t)w, "%02x", mac[i]);
    snprintf(out + w, len - (size_t)w, "%s", suffix);
    return 0;
}

/* ---- verdicts ---- */

static int refuse(const rl_conf *c, pc_request *r, const rl_rule *ru, uint64_t retry_ms, const char *why)
{
    const pc_host *h = c->host;
    char msg[192], v[24];
    snprintf(msg, sizeof msg, "rate limit %s: %s", ru->name, why);
    const char *grpc = h->request_info(r, "grpc");
    if (grpc && !strcmp(grpc, "1")) {
        snprintf(v, sizeof v, "%llu", (unsigned long long)(retry_ms ? retry_ms : 1));
        h->set_response_header(r, "grpc-retry-pushback-ms", v);
    } else {
        snprintf(v, sizeof v, "%llu",
                 (unsigned long long)((retry_ms + 999) / 1000 ? (retry_ms + 999) / 1000 : 1));
        h->set_response_header(r, "retry-after", v);
    }
    h->publish(r, "ratelimit.rule", ru->name);
    h->publish(r, "ratelimit.result", "refused");
    h->metric_count(r, "ratelimit", ru->lbl_refused, 1);
    return h->deny_http(r, 429, PC_GRPC_RESOURCE_EXHAUSTED, msg);
}

static uint64_t ms_up(uint64_t ns)
{
    return (ns + 999999) / 1000000;
}

/* ---- calls per window, calls in flight ---- */

typedef struct pending {
    rl_worker *w;
    pc_request *r;
    rl_req *st;
    size_t rule;
    struct pending *next; /* in a lease's waiters */
} pending;

static int run_rules(rl_worker *w, pc_request *r, rl_req *st, size_t from);

/* The store failed: what on_error says, for this call. 0 admitted (go on), else the hook's verdict. */
static int store_failed(rl_worker *w, pc_request *r, rl_req *st, size_t i, int *admitted)
{
    const rl_conf *c = w->c;
    const rl_rule *ru = &c->rules[i];
    c->host->metric_count(r, "ratelimit", ru->lbl_store_error, 1);
    *admitted = 1;
    switch (c->store.on_error) {
    case RL_ERR_ALLOW:
        return PC_CONTINUE;
    case RL_ERR_DENY:
        *admitted = 0;
        return refuse(c, r, ru, 1000, "the rate limit store is unavailable");
    default:
        break;
    }
    /* local: this process's own counters, as with type: local */
    if (ru->kind == RL_CALLS) {
        uint64_t retry = 0;
        if (!rl_local_take(c->local, st->digest[i], &ru->gcra, now_ns(), 1, &retry)) {
            *admitted = 0;
            return refuse(c, r, ru, ms_up(retry), "too many calls");
        }
    } else if (ru->kind == RL_CONCURRENT) {
        if (!rl_local_acquire(c->local, st->digest[i], ru->limit)) {
            *admitted = 0;
            return refuse(c, r, ru, c->concurrency_retry_ms, "too many calls in flight");
        }
        st->held |= 1u << i;
    }
    return PC_CONTINUE;
}

static lease *lease_of(rl_worker *w, const uint8_t key[16])
{
    uint64_t h;
    memcpy(&h, key, sizeof h);
    lease *l = &w->leases[h % LEASES];
    if (memcmp(l->key, key, 16)) {
        /* a slot with calls waiting on it is not given to another key: that key goes without */
        if (l->asking || l->refilling || l->waiters) return NULL;
        memset(l, 0, sizeof *l);
        memcpy(l->key, key, 16);
        l->size = 1;
    }
    return l;
}

static void send_ask(rl_worker *w, pending *p, lease *l);

/* The calls that waited for a lease, once its answer is in: each takes a leased call while there
 * are any (the rest wait for a new request, sent for the first of them); refused with the same
 * pushback when the bucket was empty (retry_ns); through on_error when the store failed (err). */
static void serve_waiters(rl_worker *w, lease *l, int err, int refused, uint64_t retry_ns)
{
    const rl_conf *c = w->c;
    pending *q = l->waiters, *tail = l->waiters_tail;
    l->waiters = l->waiters_tail = NULL;
    while (q) {
        pending *next = q->next;
        const rl_rule *ru = &c->rules[q->rule];
        int v;
        if (err) {
            int admitted;
            v = store_failed(w, q->r, q->st, q->rule, &admitted);
            if (admitted) v = run_rules(w, q->r, q->st, q->rule + 1);
        } else if (refused) {
            v = refuse(c, q->r, ru, ms_up(retry_ns), "too many calls");
        } else if (l->have && l->expires_ns > now_ns()) {
            l->have--;
            c->host->metric_count(q->r, "ratelimit", ru->lbl_allowed, 1);
            v = run_rules(w, q->r, q->st, q->rule + 1);
        } else {
            /* none left: the first of the rest asks, the others wait for its answer */
            q->next = NULL;
            l->waiters = next;
            l->waiters_tail = next ? tail : NULL;
            send_ask(w, q, l);
            return;
        }
        pc_request *r = q->r;
        free(q);
        if (v != PC_PAUSE) c->host->resume(r, v);
        q = next;
    }
}

/* The lease of a key, or NULL when its slot now holds another key's. */
static lease *lease_find(rl_worker *w, const uint8_t key[16])
{
    uint64_t h;
    memcpy(&h, key, sizeof h);
    lease *l = &w->leases[h % LEASES];
    return memcmp(l->key, key, 16) ? NULL : l;
}

typedef struct refill {
    rl_worker *w;
    size_t rule;
    uint8_t key[16];
} refill;

/* The answer to a lease asked for ahead of need: its calls join what is left. */
static void on_refill(void *arg, int ok, const long long *ints, size_t n)
{
    refill *f = arg;
    lease *l = lease_find(f->w, f->key);
    if (l) {
        l->refilling = 0;
        if (ok == 0 && n >= 1 && ints[0] > 0)
            lease_add(l, (uint32_t)ints[0], now_ns(), f->w->c->rules[f->rule].lease_ns);
        /* calls that found the lease empty while this was out: served now, or one of them asks */
        if (l->waiters && !l->asking) serve_waiters(f->w, l, 0, 0, 0);
    }
    free(f);
}

/* Asks for the next lease while calls are left, so that a busy key's calls do not wait for Redis. */
/* busy: half the lease went before half its time did (then the next one is larger). */
static void refill_ahead(rl_worker *w, pc_request *r, size_t i, const uint8_t digest[16], lease *l, int busy)
{
    const rl_conf *c = w->c;
    const rl_rule *ru = &c->rules[i];
    char key[160];
    if (l->refilling || !w->redis || !rl_redis_connected(w->redis)) return;
    refill *f = malloc(sizeof *f);
    if (!f || redis_key(c, r, ru, ":c", key, sizeof key) < 0) {
        free(f);
        return;
    }
    *f = (refill){.w = w, .rule = i};
    memcpy(f->key, digest, 16);
    if (busy && l->size < ru->lease_max) l->size *= 2;
    if (l->size > ru->lease_max) l->size = ru->lease_max;
    char t_us[24], w_us[24], want[16];
    snprintf(t_us, sizeof t_us, "%llu",
             (unsigned long long)(ru->gcra.t_ns / 1000 ? ru->gcra.t_ns / 1000 : 1));
    snprintf(w_us, sizeof w_us, "%llu", (unsigned long long)(ru->gcra.window_ns / 1000));
    snprintf(want, sizeof want, "%u", l->size);
    const char *args[] = {t_us, w_us, want};
    l->refilling = 1;
    rl_redis_eval(w->redis, gcra_script, key, args, 3, on_refill, f);
}

static void on_gcra(void *arg, int ok, const long long *ints, size_t n)
{
    pending *p = arg;
    rl_worker *w = p->w;
    const rl_conf *c = w->c;
    const rl_rule *ru = &c->rules[p->rule];
    int verdict;
    lease *l = lease_find(w, p->st->digest[p->rule]);
    if (l) l->asking = 0;
    int err = !(ok == 0 && n >= 2), refused = !err && ints[0] <= 0;
    uint64_t retry_ns = refused ? (uint64_t)ints[1] * 1000 : 0;
    if (!err && !refused) {
        uint64_t now = now_ns();
        if (l) {
            /* a lease used up quickly asks for more next time */
            if (l->have == 0 && l->expires_ns > now && l->size < ru->lease_max) l->size *= 2;
            if (l->size > ru->lease_max) l->size = ru->lease_max;
            /* one of the calls is this one; the rest join what this worker holds */
            lease_add(l, (uint32_t)ints[0] - 1, now, ru->lease_ns);
        }
        c->host->metric_count(p->r, "ratelimit", ru->lbl_allowed, 1);
        verdict = run_rules(w, p->r, p->st, p->rule + 1);
    } else if (refused) {
        verdict = refuse(c, p->r, ru, ms_up(retry_ns), "too many calls");
    } else {
        int admitted;
        verdict = store_failed(w, p->r, p->st, p->rule, &admitted);
        if (admitted) verdict = run_rules(w, p->r, p->st, p->rule + 1);
    }
    pc_request *r = p->r;
    free(p);
    if (verdict != PC_PAUSE) c->host->resume(r, verdict);
    if (l && l->waiters && !l->asking) serve_waiters(w, l, err, refused, retry_ns);
}

static void on_acquire(void *arg, int ok, const long long *ints, size_t n)
{
    pending *p = arg;
    rl_worker *w = p->w;
    const rl_conf *c = w->c;
    const rl_rule *ru = &c->rules[p->rule];
    int verdict;
    if (ok == 0 && n >= 1 && ints[0] == 1) {
        p->st->held |= 1u << p->rule;
        p->st->held_redis |= 1u << p->rule;
        c->host->metric_count(p->r, "ratelimit", ru->lbl_allowed, 1);
        verdict = run_rules(w, p->r, p->st, p->rule + 1);
    } else if (ok == 0) {
        verdict = refuse(c, p->r, ru, c->concurrency_retry_ms, "too many calls in flight");
    } else {
        int admitted;
        verdict = store_failed(w, p->r, p->st, p->rule, &admitted);
        if (admitted) verdict = run_rules(w, p->r, p->st, p->rule + 1);
    }
    pc_request *r = p->r;
    free(p);
    if (verdict != PC_PAUSE) c->host->resume(r, verdict);
}

static void ignore_reply(void *arg, int ok, const long long *ints, size_t n)
{
    (void)arg;
    (void)ok;
    (void)ints;
    (void)n;
}

/* Asks Redis for a lease (a whole one; one call when the key has no lease slot) for the waiting
 * call p; its answer (on_gcra) resumes p and serves the calls that queued behind it. */
static void send_ask(rl_worker *w, pending *p, lease *l)
{
    const rl_rule *ru = &w->c->rules[p->rule];
    char key[160], t_us[24], w_us[24], want[16];
    if (redis_key(w->c, p->r, ru, ":c", key, sizeof key) < 0) {
        on_gcra(p, -1, NULL, 0); /* as a store error */
        return;
    }
    snprintf(t_us, sizeof t_us, "%llu",
             (unsigned long long)(ru->gcra.t_ns / 1000 ? ru->gcra.t_ns / 1000 : 1));
    snprintf(w_us, sizeof w_us, "%llu", (unsigned long long)(ru->gcra.window_ns / 1000));
    snprintf(want, sizeof want, "%u", l ? l->size : 1);
    if (l) l->asking = 1;
    const char *args[] = {t_us, w_us, want};
    rl_redis_eval(w->redis, gcra_script, key, args, 3, on_gcra, p);
}

/* Sends rule i's Redis request; PC_PAUSE, or the verdict when it could not be sent. */
static int ask_redis(rl_worker *w, pc_request *r, rl_req *st, size_t i)
{
    const rl_conf *c = w->c;
    const rl_rule *ru = &c->rules[i];
    char key[160];
    pending *p = calloc(1, sizeof *p);
    if (!p || redis_key(c, r, ru, ru->kind == RL_CALLS ? ":c" : ":n", key, sizeof key) < 0) {
        free(p);
        int admitted;
        int v = store_failed(w, r, st, i, &admitted);
        return admitted ? run_rules(w, r, st, i + 1) : v;
    }
    *p = (pending){.w = w, .r = r, .st = st, .rule = i};
    if (ru->kind == RL_CALLS) {
        send_ask(w, p, lease_of(w, st->digest[i]));
    } else {
        char lim[16];
        snprintf(lim, sizeof lim, "%u", ru->limit);
        const char *args[] = {lim, INFLIGHT_TTL_MS};
        rl_redis_eval(w->redis, acquire_script, key, args, 2, on_acquire, p);
    }
    return PC_PAUSE;
}

/* The calls and concurrent_calls rules from `from` on: PC_CONTINUE, PC_DENY, or PC_PAUSE while Redis
 * answers (then the reply's callback goes on and resumes the request). */
static int run_rules(rl_worker *w, pc_request *r, rl_req *st, size_t from)
{
    const rl_conf *c = w->c;
    const pc_host *h = c->host;
    for (size_t i = from; i < c->nrules; i++) {
        const rl_rule *ru = &c->rules[i];
        if (!(st->match & (1u << i)) || ru->kind == RL_MESSAGES) continue;
        if (c->store.type == RL_STORE_REDIS) {
            if (ru->kind == RL_CALLS) {
                lease *l = lease_of(w, st->digest[i]);
                uint64_t now = now_ns();
                if (l && l->have && l->expires_ns <= now) l->have = 0; /* expired: dropped, never revived */
                if (l && l->have) {
                    l->have--;
                    /* the next lease before this one runs out, of calls or of time */
                    int busy = l->have <= l->size / 2;
                    if (busy || l->expires_ns - now < ru->lease_ns / 2)
                        refill_ahead(w, r, i, st->digest[i], l, busy);
                    h->metric_count(r, "ratelimit", ru->lbl_allowed, 1);
                    continue;
                }
                if (l && (l->asking || l->refilling)) {
                    /* a request for this key's lease is out: wait for its answer, not for one of our own */
                    pending *q = calloc(1, sizeof *q);
                    if (q) {
                        *q = (pending){.w = w, .r = r, .st = st, .rule = i};
                        if (l->waiters_tail)
                            l->waiters_tail->next = q;
                        else
                            l->waiters = q;
                        l->waiters_tail = q;
                        return PC_PAUSE;
                    }
                }
            }
            if (!w->redis && !(w->redis = rl_redis_new(h->event_loop(r), c->store.ip, c->store.port,
                                                       c->store.timeout_ms))) {
                int admitted;
                int v = store_failed(w, r, st, i, &admitted);
                if (!admitted) return v;
                continue;
            }
            return ask_redis(w, r, st, i);
        }
        if (ru->kind == RL_CALLS) {
            uint64_t retry = 0;
            if (!rl_local_take(c->local, st->digest[i], &ru->gcra, now_ns(), 1, &retry))
                return refuse(c, r, ru, ms_up(retry), "too many calls");
        } else {
            if (!rl_local_acquire(c->local, st->digest[i], ru->limit))
                return refuse(c, r, ru, c->concurrency_retry_ms, "too many calls in flight");
            st->held |= 1u << i;
        }
        h->metric_count(r, "ratelimit", ru->lbl_allowed, 1);
    }
    return PC_CONTINUE;
}

static int on_request_headers(pc_request *r, void *wctx, void *state)
{
    rl_worker *w = wctx;
    rl_req *st = state;
    match_rules(w->c, r, st);
    if (!st->match) return PC_CONTINUE;
    return run_rules(w, r, st, 0);
}

/* ---- shaping a stream's messages ---- */

typedef struct shaper {
    uv_timer_t timer;
    rl_worker *w;
    pc_request *r;
    rl_req *st;
    size_t rule;
} shaper;

static int shape(rl_worker *w, pc_request *r, rl_req *st, size_t from);

static void shaper_closed(uv_handle_t *h)
{
    free(h->data);
}

static void shaper_fired(uv_timer_t *t)
{
    shaper *s = t->data;
    int v = shape(s->w, s->r, s->st, s->rule);
    pc_request *r = s->r;
    const pc_host *h = s->w->c->host;
    uv_close((uv_handle_t *)&s->timer, shaper_closed);
    if (v != PC_PAUSE) h->resume(r, v);
}

/* The messages_per_s rules from `from` on, for the message at hand. */
static int shape(rl_worker *w, pc_request *r, rl_req *st, size_t from)
{
    const rl_conf *c = w->c;
    const pc_host *h = c->host;
    for (size_t i = from; i < c->nrules; i++) {
        const rl_rule *ru = &c->rules[i];
        if (!(st->match & (1u << i)) || ru->kind != RL_MESSAGES) continue;
        uint64_t wait = rl_bucket_take(&st->bucket[i], ru->rate, ru->burst, now_ns());
        if (wait == 0) continue;
        if (wait / 1000000 >= ru->max_delay_ms)
            return refuse(c, r, ru, ms_up(wait), "a message waited too long");
        shaper *s = calloc(1, sizeof *s);
        uv_loop_t *loop = h->event_loop(r);
        if (!s || !loop) {
            free(s);
            return PC_ERROR;
        }
        *s = (shaper){.w = w, .r = r, .st = st, .rule = i};
        uv_timer_init(loop, &s->timer);
        s->timer.data = s;
        uv_timer_start(&s->timer, shaper_fired, ms_up(wait), 0);
        /* The message waits, held by the core: the client's stream window is not given back meanwhile,
         * so HTTP/2 flow control slows the client down and nothing piles up at the edge. */
        h->metric_count(r, "ratelimit", ru->lbl_shaped, 1);
        return PC_PAUSE;
    }
    return PC_CONTINUE;
}

static int on_request_message(pc_request *r, void *wctx, void *state, const pc_message *m)
{
    (void)m;
    rl_worker *w = wctx;
    rl_req *st = state;
    match_rules(w->c, r, st);
    if (!st->match) return PC_CONTINUE;
    return shape(w, r, st, 0);
}

/* ---- the end of a call ---- */

static void on_log(pc_request *r, void *wctx, void *state)
{
    rl_worker *w = wctx;
    rl_req *st = state;
    const rl_conf *c = w->c;
    for (size_t i = 0; st->held && i < c->nrules; i++) {
        if (!(st->held & (1u << i))) continue;
        if (!(st->held_redis & (1u << i))) {
            rl_local_release(c->local, st->digest[i]);
            continue;
        }
        char key[160];
        if (w->redis && redis_key(c, r, &c->rules[i], ":n", key, sizeof key) == 0)
            rl_redis_eval(w->redis, release_script, key, NULL, 0, ignore_reply, NULL);
    }
    st->held = 0;
}

/* ---- lifecycle ---- */

static int init(const pc_host *host, const void *handle, const pc_config_node *config, void **out, char *err,
                size_t errlen)
{
    rl_conf *c;
    if (rl_conf_load(host, handle, config, &c, err, errlen) < 0) return -1;
    *out = c;
    return 0;
}

static void destroy(void *ctx)
{
    rl_conf_free(ctx);
}

static int worker_init(void *ctx, unsigned worker_id, void **out, char *err, size_t errlen)
{
    (void)worker_id;
    rl_worker *w = calloc(1, sizeof *w);
    if (w && !(w->leases = calloc(LEASES, sizeof *w->leases))) {
        free(w);
        w = NULL;
    }
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    w->c = ctx;
    *out = w;
    return 0;
}

static void worker_destroy(void *wctx)
{
    rl_worker *w = wctx;
    if (!w) return;
    rl_redis_free(w->redis);
    free(w->leases);
    free(w);
}

PC_PLUGIN_EXPORT const pc_plugin pc_plugin_v2 = {
    .abi_version = PC_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pc_plugin),
    .name = "ratelimit",
    .version = "1.0",
    .summary =
        "rate limits that speak gRPC: calls per window, calls in flight, shaped streams; local or Redis",
    .config = rl_config_keys,
    .request_state_size = sizeof(rl_req),
    .init = init,
    .destroy = destroy,
    .worker_init = worker_init,
    .worker_destroy = worker_destroy,
    .on_request_headers = on_request_headers,
    .on_request_message = on_request_message,
    .on_log = on_log,
};
