/* Per-worker behaviour table: a fixed-size hash table of clients with an LRU list through it. Allocated once
 * at worker start; a new client takes the least recently seen one's slot, so 100,000 addresses (or an
 * IPv6 scan) cost exactly as much memory as 100. Indexes instead of pointers keep an entry at 80 bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "bot.h"

#define BOT_CLIENTS_MAX (1u << 24)

struct bot_clients {
    bot_client *e;
    size_t cap, n;
    uint32_t *buckets; /* index + 1 of the first entry, 0 = empty */
    size_t mask;
    uint32_t newest, oldest; /* index + 1 */
    uint64_t seed[2]; /* random per table: addresses are chosen by clients, bucket collisions must not be */
};

void bot_window_add(bot_window *w, uint64_t now_ms, uint64_t len_ms, uint32_t n)
{
    uint64_t idx = now_ms / len_ms;
    if (idx != w->index) {
        w->prev = idx == w->index + 1 ? w->cur : 0;
        w->cur = 0;
        w->index = idx;
    }
    w->cur = w->cur > UINT32_MAX - n ? UINT32_MAX : w->cur + n;
}

double bot_window_estimate(const bot_window *w, uint64_t now_ms, uint64_t len_ms)
{
    uint64_t idx = now_ms / len_ms;
    double cur = w->cur, prev = w->prev;
    if (idx == w->index + 1) {
        prev = cur;
        cur = 0;
    } else if (idx != w->index) {
        return 0;
    }
    double into = (double)(now_ms % len_ms) / (double)len_ms;
    return prev * (1.0 - into) + cur;
}

void bot_client_key(const uint8_t addr[16], uint8_t key[16])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memcpy(key, addr, 16);
    if (memcmp(addr, mapped, 12) != 0) memset(key + 8, 0, 8);
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static size_t bucket_of(const bot_clients *t, const uint8_t key[16])
{
    uint64_t a, b;
    memcpy(&a, key, 8);
    memcpy(&b, key + 8, 8);
    return (size_t)(mix(a ^ t->seed[0]) ^ mix(b + t->seed[1])) & t->mask;
}

bot_clients *bot_clients_new(size_t cap)
{
    if (cap == 0 || cap > BOT_CLIENTS_MAX) return NULL;
    bot_clients *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    size_t nb = 1;
    while (nb < cap)
        nb <<= 1;
    t->cap = cap;
    t->mask = nb - 1;
    t->e = calloc(cap, sizeof *t->e);
    t->buckets = calloc(nb, sizeof *t->buckets);
    if (!t->e || !t->buckets) {
        bot_clients_free(t);
        return NULL;
    }
    if (getrandom(t->seed, sizeof t->seed, GRND_NONBLOCK) != (ssize_t)sizeof t->seed) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        t->seed[0] = mix((uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)t);
        t->seed[1] = mix((uint64_t)ts.tv_sec ^ t->seed[0]);
    }
    return t;
}

void bot_clients_free(bot_clients *t)
{
    if (!t) return;
    free(t->e);
    free(t->buckets);
    free(t);
}

size_t bot_clients_count(const bot_clients *t)
{
    return t->n;
}

size_t bot_clients_bytes(const bot_clients *t)
{
    return sizeof *t + t->cap * sizeof *t->e + (t->mask + 1) * sizeof *t->buckets;
}

static void lru_unlink(bot_clients *t, uint32_t i)
{
    bot_client *c = &t->e[i];
    if (c->newer)
        t->e[c->newer - 1].older = c->older;
    else
        t->newest = c->older;
    if (c->older)
        t->e[c->older - 1].newer = c->newer;
    else
        t->oldest = c->newer;
    c->newer = c->older = 0;
}

static void lru_push(bot_clients *t, uint32_t i)
{
    bot_client *c = &t->e[i];
    c->newer = 0;
    c->older = t->newest;
    if (t->newest) t->e[t->newest - 1].newer = i + 1;
    t->newest = i + 1;
    if (!t->oldest) t->oldest = i + 1;
}

static void bucket_remove(bot_clients *t, uint32_t i)
{
    uint32_t *link = &t->buckets[bucket_of(t, t->e[i].key)];
    while (*link && *link != i + 1)
        link = &t->e[*link - 1].hnext;
    if (*link) *link = t->e[i].hnext;
}

bot_client *bot_clients_get(bot_clients *t, const uint8_t key[16], bool create)
{
    size_t b = bucket_of(t, key);
    for (uint32_t j = t->buckets[b]; j; j = t->e[j - 1].hnext) {
        if (memcmp(t->e[j - 1].key, key, 16) == 0) {
            if (t->newest != j) {
                lru_unlink(t, j - 1);
                lru_push(t, j - 1);
            }
            return &t->e[j - 1];
        }
    }
    if (!create) return NULL;
    uint32_t i;
    if (t->n < t->cap) {
        i = (uint32_t)t->n++;
    } else {
        i = t->oldest - 1; /* full: the least recently seen client makes room */
        lru_unlink(t, i);
        bucket_remove(t, i);
    }
    bot_client *c = &t->e[i];
    memset(c, 0, sizeof *c);
    memcpy(c->key, key, 16);
    c->hnext = t->buckets[b];
    t->buckets[b] = i + 1;
    lru_push(t, i);
    return c;
}
