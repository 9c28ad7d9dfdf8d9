/* The local store (see local_store.h). */
#include "local_store.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NSHARDS 64
#define PROBES 8

typedef struct entry {
    uint8_t key[16];
    uint64_t tat;      /* GCRA: 0 unused */
    uint32_t inflight; /* concurrency */
    uint8_t used;
} entry;

typedef struct shard {
    pthread_mutex_t lock;
    entry *e;
    size_t n; /* slots, a power of two */
} shard;

struct rl_local {
    shard shards[NSHARDS];
};

static uint64_t key_hash(const uint8_t key[16])
{
    uint64_t h;
    memcpy(&h, key, sizeof h); /* the keys are digests already */
    return h;
}

rl_local *rl_local_new(size_t max_keys)
{
    rl_local *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    size_t per = 16;
    while (per * NSHARDS < max_keys)
        per *= 2;
    for (size_t i = 0; i < NSHARDS; i++) {
        pthread_mutex_init(&s->shards[i].lock, NULL);
        s->shards[i].n = per;
        if (!(s->shards[i].e = calloc(per, sizeof(entry)))) {
            rl_local_free(s);
            return NULL;
        }
    }
    return s;
}

void rl_local_free(rl_local *s)
{
    if (!s) return;
    for (size_t i = 0; i < NSHARDS; i++) {
        pthread_mutex_destroy(&s->shards[i].lock);
        free(s->shards[i].e);
    }
    free(s);
}

/* The key's entry in its locked shard, made when absent (create); NULL when absent and !create. */
static entry *find(shard *sh, const uint8_t key[16], uint64_t now, int create)
{
    uint64_t h = key_hash(key);
    size_t mask = sh->n - 1, at = (size_t)(h >> 6) & mask;
    entry *free_slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < PROBES; i++) {
        entry *e = &sh->e[(at + i) & mask];
        if (e->used && !memcmp(e->key, key, 16)) return e;
        if (!create) continue;
        int idle = !e->used || (e->inflight == 0 && e->tat <= now);
        if (idle && !free_slot) free_slot = e;
        if (e->used && e->inflight == 0 && (!oldest || e->tat < oldest->tat)) oldest = e;
    }
    if (!create) return NULL;
    entry *e = free_slot ? free_slot : oldest;
    if (!e) return NULL; /* every slot near holds calls in flight */
    memset(e, 0, sizeof *e);
    memcpy(e->key, key, 16);
    e->used = 1;
    return e;
}

static shard *shard_of(rl_local *s, const uint8_t key[16])
{
    return &s->shards[key_hash(key) % NSHARDS];
}

uint32_t rl_local_take(rl_local *s, const uint8_t key[16], const rl_gcra *g, uint64_t now, uint32_t want,
                       uint64_t *retry_ns)
{
    shard *sh = shard_of(s, key);
    pthread_mutex_lock(&sh->lock);
    entry *e = find(sh, key, now, 1);
    uint32_t n = 0;
    if (e) {
        n = rl_gcra_take(g, &e->tat, now, want, retry_ns);
    } else if (retry_ns) {
        *retry_ns = g->t_ns; /* no room to remember the key: refuse rather than forget a limit */
    }
    pthread_mutex_unlock(&sh->lock);
    return n;
}

int rl_local_acquire(rl_local *s, const uint8_t key[16], uint32_t limit)
{
    shard *sh = shard_of(s, key);
    pthread_mutex_lock(&sh->lock);
    entry *e = find(sh, key, 0, 1);
    int ok = e && e->inflight < limit;
    if (ok) e->inflight++;
    pthread_mutex_unlock(&sh->lock);
    return ok;
}

void rl_local_release(rl_local *s, const uint8_t key[16])
{
    shard *sh = shard_of(s, key);
    pthread_mutex_lock(&sh->lock);
    entry *e = find(sh, key, 0, 0);
    if (e && e->inflight) e->inflight--;
    pthread_mutex_unlock(&sh->lock);
}

uint32_t rl_local_inflight(rl_local *s, const uint8_t key[16])
{
    shard *sh = shard_of(s, key);
    pthread_mutex_lock(&sh->lock);
    entry *e = find(sh, key, 0, 0);
    uint32_t n = e ? e->inflight : 0;
    pthread_mutex_unlock(&sh->lock);
    return n;
}
