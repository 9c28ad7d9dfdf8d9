/* A worker's cache of the fleet's counts (see bot.h): the bookkeeping between the requests a worker counts
 * and the Redis requests fleet.c sends for them. Entries live in a bounded client table; those with counts
 * to send are queued by position in a ring beside it (each position at most once, so the ring never holds
 * more than the table), which a flush walks instead of the whole table. Only the worker's thread. */
#include <stdlib.h>
#include <string.h>

#include "bot.h"

struct bot_fleet_cache {
    bot_clients *t;
    uint32_t *ring;  /* positions of queued entries */
    uint8_t *queued; /* by position: in the ring */
    size_t cap, head, len;
    uint32_t seq;   /* of the last request sent */
    uint32_t epoch; /* answers count only in the epoch they came in: a drop starts a new one */
};

bot_fleet_cache *bot_fleet_cache_new(size_t cap)
{
    bot_fleet_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->cap = cap;
    c->epoch = 1;
    c->t = bot_clients_new(cap, sizeof(bot_fleet_entry));
    c->ring = c->t ? calloc(cap, sizeof *c->ring) : NULL;
    c->queued = c->ring ? calloc(cap, 1) : NULL;
    if (!c->queued) {
        bot_fleet_cache_free(c);
        return NULL;
    }
    return c;
}

void bot_fleet_cache_free(bot_fleet_cache *c)
{
    if (!c) return;
    bot_clients_free(c->t);
    free(c->ring);
    free(c->queued);
    free(c);
}

size_t bot_fleet_cache_bytes(const bot_fleet_cache *c)
{
    return sizeof *c + bot_clients_bytes(c->t) + c->cap * (sizeof *c->ring + 1);
}

static void enqueue(bot_fleet_cache *c, size_t i)
{
    if (c->queued[i]) return;
    c->queued[i] = 1;
    c->ring[(c->head + c->len++) % c->cap] = (uint32_t)i;
}

static size_t dequeue(bot_fleet_cache *c)
{
    size_t i = c->ring[c->head];
    c->head = (c->head + 1) % c->cap;
    c->len--;
    c->queued[i] = 0;
    return i;
}

static bool has_pending(const bot_fleet_entry *e)
{
    return e->pending[0] || e->pending[1] || e->pending[2];
}

bot_fleet_entry *bot_fleet_cache_add(bot_fleet_cache *c, const uint8_t key[16], const uint32_t n[3],
                                     bool create)
{
    bot_fleet_entry *e = bot_clients_get(c->t, key, create);
    if (!e) return NULL;
    for (int k = 0; k < 3; k++)
        e->pending[k] = e->pending[k] > UINT32_MAX - n[k] ? UINT32_MAX : e->pending[k] + n[k];
    if (has_pending(e)) enqueue(c, bot_clients_index(c->t, e));
    return e;
}

bool bot_fleet_cache_view(const bot_fleet_cache *c, const bot_fleet_entry *e, uint64_t now_ms,
                          uint64_t fresh_ms, double out[3])
{
    if (!e->answer_epoch || e->answer_epoch != c->epoch || now_ms < e->answer_ms ||
        now_ms - e->answer_ms >= fresh_ms)
        return false;
    for (int k = 0; k < 3; k++)
        out[k] = (double)e->total[k] + e->sent[k] + e->pending[k];
    return true;
}

size_t bot_fleet_cache_queued(const bot_fleet_cache *c)
{
    return c->len;
}

bot_fleet_entry *bot_fleet_cache_pop(bot_fleet_cache *c)
{
    if (!c->len) return NULL;
    size_t i = dequeue(c);
    /* the position may hold another client since it was queued: whoever is there now has the counts */
    bot_fleet_entry *e = bot_clients_at(c->t, i);
    if (!e || !has_pending(e)) return NULL;
    if (e->seq) {
        enqueue(c, i); /* one request per client at a time: the next flush sends these */
        return NULL;
    }
    return e;
}

uint32_t bot_fleet_cache_send(bot_fleet_cache *c, bot_fleet_entry *e)
{
    memcpy(e->sent, e->pending, sizeof e->sent);
    memset(e->pending, 0, sizeof e->pending);
    if (++c->seq == 0) c->seq = 1;
    e->seq = c->seq;
    return e->seq;
}

void bot_fleet_cache_answer(bot_fleet_cache *c, const uint8_t key[16], uint32_t seq, const uint32_t *totals,
                            uint64_t now_ms)
{
    bot_fleet_entry *e = bot_clients_get(c->t, key, false);
    if (!e || e->seq != seq) return; /* evicted meanwhile (and maybe back, with nothing out) */
    e->seq = 0;
    memset(e->sent, 0, sizeof e->sent);
    if (totals) {
        memcpy(e->total, totals, sizeof e->total);
        e->answer_epoch = c->epoch;
        e->answer_ms = now_ms;
    } else {
        e->answer_epoch = 0;
    }
}

void bot_fleet_cache_drop(bot_fleet_cache *c)
{
    while (c->len) {
        bot_fleet_entry *e = bot_clients_at(c->t, dequeue(c));
        if (e) memset(e->pending, 0, sizeof e->pending);
    }
    if (++c->epoch == 0) c->epoch = 1;
}

void bot_estimate_merge(bot_estimate *local, const double fleet[3])
{
    if (fleet[BOT_N_RATE] > local->rate) local->rate = fleet[BOT_N_RATE];
    if (fleet[BOT_N_DONE] > local->done) {
        local->done = fleet[BOT_N_DONE];
        local->errors = fleet[BOT_N_ERRORS];
    }
}
