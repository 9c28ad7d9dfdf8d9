/* The fleet's behaviour counts in Redis (see fleet.h). Counters are fixed sub-windows: each window (rate, and
 * error) is cut in SLOTS slots, one Redis key per client, signal and slot, `<prefix><digest>:<r|d|e>:<slot>`,
 * expiring when the slot has left the window. A script adds a flush's counts to the current slots and answers
 * the sliding totals (the oldest slot weighed by how much of it still overlaps the window, as bot_window
 * does), with Redis's clock, so edges need not agree on the time. The digest is an HMAC of the client's key
 * with the deployment's secret: Redis never holds a client address. */
#include "fleet.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bot.h"
#include "redis_store.h"

#define SLOTS 10
#define FLUSH_MS 100
#define FLUSH_MAX 4096 /* Redis requests per flush: the clients after that go in the next one */
#define FRESH_MIN_MS 1000

/* KEYS[1]: the client's key prefix. ARGV: slot length of the rate window and of the error window (ms),
 * then the counts to add: requests started, finished, failed. Answers the three totals. A key lives for
 * SLOTS + 1 slots: the oldest slot still counts, in part, one slot after the window. */
static const char count_script[] =
    "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local out = {} "
    "for i, k in ipairs({'r', 'd', 'e'}) do "
    "  local len = tonumber(ARGV[i == 1 and 1 or 2]) local add = tonumber(ARGV[2 + i]) "
    "  local slot = math.floor(now / len) local base = KEYS[1] .. ':' .. k .. ':' "
    "  if add > 0 then redis.call('INCRBY', base .. slot, add) "
    "    redis.call('PEXPIRE', base .. slot, len * 11) end "
    "  local keys = {} for s = slot - 10, slot do keys[#keys + 1] = base .. s end "
    "  local v = redis.call('MGET', unpack(keys)) "
    "  local sum = (tonumber(v[1]) or 0) * (1 - (now % len) / len) "
    "  for j = 2, 11 do sum = sum + (tonumber(v[j]) or 0) end "
    "  out[i] = math.floor(sum + 0.5) "
    "end "
    "return out";

struct bot_fleet {
    rl_store_conf store;
    uint64_t rate_slot_ms, error_slot_ms;
    uint64_t fresh_ms; /* totals older than this are not used */
    bot_fleet_cache *cache;
    uv_loop_t *loop; /* the worker's, from its first request */
    rl_redis *redis;
    uv_timer_t *flush; /* allocated: it outlives the worker context until the loop closes it */
};

/* One script out: which client and request it answers. */
typedef struct sent {
    bot_fleet *f;
    uint8_t key[16];
    uint32_t seq;
} sent;

bot_fleet *bot_fleet_new(const rl_store_conf *store, size_t max_clients, uint64_t rate_window_ms,
                         uint64_t error_window_ms)
{
    bot_fleet *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->store = *store;
    f->rate_slot_ms = rate_window_ms / SLOTS;
    f->error_slot_ms = error_window_ms / SLOTS;
    /* A tenth of the shorter window: by then a client's totals may have moved by a slot. */
    uint64_t shorter = rate_window_ms < error_window_ms ? rate_window_ms : error_window_ms;
    f->fresh_ms = shorter / SLOTS > FRESH_MIN_MS ? shorter / SLOTS : FRESH_MIN_MS;
    if (!(f->cache = bot_fleet_cache_new(max_clients))) {
        free(f);
        return NULL;
    }
    return f;
}

static void flush_closed(uv_handle_t *h)
{
    free(h);
}

void bot_fleet_free(bot_fleet *f)
{
    if (!f) return;
    rl_redis_free(f->redis); /* answers what is out (failed) now, while the cache is still there */
    if (f->flush) uv_close((uv_handle_t *)f->flush, flush_closed);
    bot_fleet_cache_free(f->cache);
    free(f);
}

/* The client's Redis key prefix: HMAC-SHA-256 of its key, first 128 bits in hex. */
static int redis_key(const bot_fleet *f, const uint8_t key[16], char *out, size_t len)
{
    unsigned char mac[32];
    size_t maclen = 0;
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, f->store.secret, f->store.secret_len, key, 16, mac,
                   sizeof mac, &maclen))
        return -1;
    int w = snprintf(out, len, "%s", f->store.prefix);
    for (size_t i = 0; i < 16 && w > 0 && (size_t)w + 2 < len; i++)
        w += snprintf(out + w, len - (size_t)w, "%02x", mac[i]);
    return 0;
}

static void on_answer(void *arg, int ok, const long long *ints, size_t n)
{
    sent *s = arg;
    bot_fleet *f = s->f;
    uint32_t totals[3];
    for (size_t k = 0; k < 3 && k < n; k++)
        totals[k] = ints[k] < 0 ? 0 : ints[k] > (long long)UINT32_MAX ? UINT32_MAX : (uint32_t)ints[k];
    bot_fleet_cache_answer(f->cache, s->key, s->seq, ok == 0 && n >= 3 ? totals : NULL, uv_now(f->loop));
    free(s);
}

static void send_counts(bot_fleet *f, bot_fleet_entry *e)
{
    char key[160];
    sent *s = malloc(sizeof *s);
    if (!s || redis_key(f, e->slot.key, key, sizeof key) < 0) {
        free(s);
        memset(e->pending, 0, sizeof e->pending); /* the process-wide table has them */
        return;
    }
    s->f = f;
    memcpy(s->key, e->slot.key, 16);
    char a[5][24];
    snprintf(a[0], sizeof a[0], "%llu", (unsigned long long)f->rate_slot_ms);
    snprintf(a[1], sizeof a[1], "%llu", (unsigned long long)f->error_slot_ms);
    for (int k = 0; k < 3; k++)
        snprintf(a[2 + k], sizeof a[2 + k], "%u", e->pending[k]);
    s->seq = bot_fleet_cache_send(f->cache, e);
    const char *args[] = {a[0], a[1], a[2], a[3], a[4]};
    rl_redis_eval(f->redis, count_script, key, args, 5, on_answer, s);
}

static void on_flush(uv_timer_t *t)
{
    bot_fleet *f = t->data;
    if (!f->redis || !rl_redis_usable(f->redis)) {
        /* Down: sending would fail at once. Counts kept for later would land in a later slot than the
         * requests they count, so they are dropped; the process-wide table scores meanwhile. */
        bot_fleet_cache_drop(f->cache);
        return;
    }
    size_t n = bot_fleet_cache_queued(f->cache), out = 0;
    for (size_t i = 0; i < n && out < FLUSH_MAX; i++) {
        bot_fleet_entry *e = bot_fleet_cache_pop(f->cache);
        if (!e) continue;
        send_counts(f, e);
        out++;
    }
}

/* The Redis client and the flush timer, on the worker's loop at its first request. */
static void start(bot_fleet *f, void *loop)
{
    if (f->redis || !loop) return;
    if (!f->flush) {
        if (!(f->flush = malloc(sizeof *f->flush))) return;
        f->loop = loop;
        uv_timer_init(f->loop, f->flush);
        f->flush->data = f;
        uv_timer_start(f->flush, on_flush, FLUSH_MS, FLUSH_MS);
        uv_unref((uv_handle_t *)f->flush); /* never keeps a stopping worker alive */
    }
    /* NULL (no memory): the flushes drop the counts, and the next request tries again */
    f->redis = rl_redis_new(f->loop, f->store.ip, f->store.port, f->store.timeout_ms);
}

bool bot_fleet_started(bot_fleet *f, void *loop, const uint8_t key[16], double fleet[3])
{
    start(f, loop);
    static const uint32_t one[3] = {1, 0, 0};
    bot_fleet_entry *e = bot_fleet_cache_add(f->cache, key, one, true);
    return e && f->redis && rl_redis_connected(f->redis) &&
           bot_fleet_cache_view(f->cache, e, uv_now(f->loop), f->fresh_ms, fleet);
}

void bot_fleet_finished(bot_fleet *f, const uint8_t key[16], bool error)
{
    const uint32_t n[3] = {0, 1, error ? 1 : 0};
    bot_fleet_cache_add(f->cache, key, n, false);
}
