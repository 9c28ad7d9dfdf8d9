/* The bounded client table: a fixed-size hash table of clients with an LRU list through it, allocated once;
 * a new client takes the least recently seen one's slot, so 100,000 addresses (or an IPv6 scan) cost exactly
 * as much memory as 100. Entries are of the caller's type, each starting with a bot_slot (the process-wide
 * behaviour table's shards hold bot_client, a worker's fleet cache bot_fleet_entry). Indexes instead of
 * pointers keep the table's part of an entry at 28 bytes. Not locked: its owner does that. Also the sliding
 * windows behaviour is counted in, and the key a client is counted under. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "bot.h"

#define BOT_CLIENTS_MAX (1u << 24)

struct bot_clients {
    unsigned char *e; /* cap entries of size bytes */
    size_t size, cap, n;
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

uint64_t bot_key_hash(const uint8_t key[16], const uint64_t seed[2])
{
    uint64_t a, b;
    memcpy(&a, key, 8);
    memcpy(&b, key + 8, 8);
    return mix(a ^ seed[0]) ^ mix(b + seed[1]);
}

void bot_random_seed(uint64_t seed[2])
{
    if (getrandom(seed, 2 * sizeof *seed, GRND_NONBLOCK) == (ssize_t)(2 * sizeof *seed)) return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    seed[0] = mix((uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)seed);
    seed[1] = mix((uint64_t)ts.tv_sec ^ seed[0]);
}

static bot_slot *at(const bot_clients *t, size_t i)
{
    return (bot_slot *)(t->e + i * t->size);
}

static size_t bucket_of(const bot_clients *t, const uint8_t key[16])
{
    return (size_t)bot_key_hash(key, t->seed) & t->mask;
}

bot_clients *bot_clients_new(size_t cap, size_t entry_size)
{
    if (cap == 0 || cap > BOT_CLIENTS_MAX || entry_size < sizeof(bot_slot)) return NULL;
    bot_clients *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    size_t nb = 1;
    while (nb < cap)
        nb <<= 1;
    t->size = entry_size;
    t->cap = cap;
    t->mask = nb - 1;
    t->e = calloc(cap, entry_size);
    t->buckets = calloc(nb, sizeof *t->buckets);
    if (!t->e || !t->buckets) {
        bot_clients_free(t);
        return NULL;
    }
    bot_random_seed(t->seed);
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
    return sizeof *t + t->cap * t->size + (t->mask + 1) * sizeof *t->buckets;
}

size_t bot_clients_index(const bot_clients *t, const void *entry)
{
    return (size_t)((const unsigned char *)entry - t->e) / t->size;
}

void *bot_clients_at(bot_clients *t, size_t i)
{
    return i < t->n ? at(t, i) : NULL;
}

static void lru_unlink(bot_clients *t, uint32_t i)
{
    bot_slot *c = at(t, i);
    if (c->newer)
        at(t, c->newer - 1)->older = c->older;
    else
        t->newest = c->older;
    if (c->older)
        at(t, c->older - 1)->newer = c->newer;
    else
        t->oldest = c->newer;
    c->newer = c->older = 0;
}

static void lru_push(bot_clients *t, uint32_t i)
{
    bot_slot *c = at(t, i);
    c->newer = 0;
    c->older = t->newest;
    if (t->newest) at(t, t->newest - 1)->newer = i + 1;
    t->newest = i + 1;
    if (!t->oldest) t->oldest = i + 1;
}

static void bucket_remove(bot_clients *t, uint32_t i)
{
    uint32_t *link = &t->buckets[bucket_of(t, at(t, i)->key)];
    while (*link && *link != i + 1)
        link = &at(t, *link - 1)->hnext;
    if (*link) *link = at(t, i)->hnext;
}

void *bot_clients_get(bot_clients *t, const uint8_t key[16], bool create)
{
    size_t b = bucket_of(t, key);
    for (uint32_t j = t->buckets[b]; j; j = at(t, j - 1)->hnext) {
        if (memcmp(at(t, j - 1)->key, key, 16) == 0) {
            if (t->newest != j) {
                lru_unlink(t, j - 1);
                lru_push(t, j - 1);
            }
            return at(t, j - 1);
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
    bot_slot *c = at(t, i);
    memset(c, 0, t->size);
    memcpy(c->key, key, 16);
    c->hnext = t->buckets[b];
    t->buckets[b] = i + 1;
    lru_push(t, i);
    return c;
}
