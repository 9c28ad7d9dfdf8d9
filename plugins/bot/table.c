/* The process-wide behaviour table (see bot.h): every worker counts a client's requests in the same place,
 * so two workers do not halve the rate signal. Shards of a bounded client table, each behind its own mutex
 * (a request holds one for a few hundred nanoseconds); a shard per 1024 clients, at most 64, so that a small
 * table is one exact LRU and a large one spreads the locking. The shard is chosen by a seeded hash: clients
 * choose their addresses, they must not be able to crowd one shard. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bot.h"

#define CLIENTS_PER_SHARD 1024
#define MAX_SHARDS 64
#define MAX_CLIENTS (1u << 24)

typedef struct shard {
    pthread_mutex_t lock;
    bot_clients *clients;
} shard;

struct bot_table {
    shard *shards;
    size_t n;
    uint64_t seed[2];
    uint64_t rate_ms, error_ms;
};

bot_table *bot_table_new(size_t max_clients, uint64_t rate_window_ms, uint64_t error_window_ms)
{
    if (max_clients == 0 || max_clients > MAX_CLIENTS || !rate_window_ms || !error_window_ms) return NULL;
    bot_table *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->n = max_clients / CLIENTS_PER_SHARD;
    t->n = t->n < 1 ? 1 : t->n > MAX_SHARDS ? MAX_SHARDS : t->n;
    t->rate_ms = rate_window_ms;
    t->error_ms = error_window_ms;
    bot_random_seed(t->seed);
    if (!(t->shards = calloc(t->n, sizeof *t->shards))) {
        free(t);
        return NULL;
    }
    for (size_t i = 0; i < t->n; i++)
        pthread_mutex_init(&t->shards[i].lock, NULL);
    for (size_t i = 0; i < t->n; i++) {
        /* max_clients in all: the first shards take one more each when it does not divide evenly */
        size_t cap = max_clients / t->n + (i < max_clients % t->n);
        if (!(t->shards[i].clients = bot_clients_new(cap, sizeof(bot_client)))) {
            bot_table_free(t);
            return NULL;
        }
    }
    return t;
}

void bot_table_free(bot_table *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n; i++) {
        pthread_mutex_destroy(&t->shards[i].lock);
        bot_clients_free(t->shards[i].clients);
    }
    free(t->shards);
    free(t);
}

static shard *shard_of(bot_table *t, const uint8_t key[16])
{
    return &t->shards[bot_key_hash(key, t->seed) % t->n];
}

void bot_table_started(bot_table *t, const uint8_t key[16], uint64_t now_ms, bot_estimate *out)
{
    shard *s = shard_of(t, key);
    pthread_mutex_lock(&s->lock);
    bot_client *c = bot_clients_get(s->clients, key, true);
    bot_window_add(&c->rate, now_ms, t->rate_ms, 1);
    out->rate = bot_window_estimate(&c->rate, now_ms, t->rate_ms);
    out->done = bot_window_estimate(&c->done, now_ms, t->error_ms);
    out->errors = bot_window_estimate(&c->errors, now_ms, t->error_ms);
    pthread_mutex_unlock(&s->lock);
}

void bot_table_finished(bot_table *t, const uint8_t key[16], uint64_t now_ms, bool error)
{
    shard *s = shard_of(t, key);
    pthread_mutex_lock(&s->lock);
    bot_client *c = bot_clients_get(s->clients, key, false);
    if (c) {
        bot_window_add(&c->done, now_ms, t->error_ms, 1);
        bot_window_add(&c->errors, now_ms, t->error_ms, error ? 1 : 0);
    }
    pthread_mutex_unlock(&s->lock);
}

size_t bot_table_count(bot_table *t)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        pthread_mutex_lock(&t->shards[i].lock);
        n += bot_clients_count(t->shards[i].clients);
        pthread_mutex_unlock(&t->shards[i].lock);
    }
    return n;
}

size_t bot_table_bytes(const bot_table *t)
{
    size_t n = sizeof *t + t->n * sizeof *t->shards;
    for (size_t i = 0; i < t->n; i++)
        n += bot_clients_bytes(t->shards[i].clients);
    return n;
}

size_t bot_table_shards(const bot_table *t)
{
    return t->n;
}
