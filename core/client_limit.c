/* One table for the whole process, behind a mutex: a client's connections land on any worker
 * (SO_REUSEPORT), so a per-worker count could be fooled by spreading. The lock is held for a
 * hash lookup at accept and close only. Entries exist only while a client has connections. */
#include "client_limit.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 4096

typedef struct entry {
    struct entry *next;
    uint8_t key[16];
    uint8_t keylen;
    uint32_t count;
    int64_t held; /* response bytes held for its shut windows */
} entry;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static entry *table[BUCKETS];

static int key_of(const struct sockaddr *a, uint8_t key[16])
{
    if (a->sa_family == AF_INET) {
        memcpy(key, &((const struct sockaddr_in *)a)->sin_addr, 4);
        return 4;
    }
    if (a->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)a)->sin6_addr, 16);
        return 16;
    }
    return 0;
}

static uint32_t hash(const uint8_t *k, int n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (int i = 0; i < n; i++)
        h = (h ^ k[i]) * 16777619u;
    return h % BUCKETS;
}

static entry **find(const uint8_t *key, int n)
{
    entry **pp = &table[hash(key, n)];
    while (*pp && ((*pp)->keylen != n || memcmp((*pp)->key, key, (size_t)n) != 0))
        pp = &(*pp)->next;
    return pp;
}

int pc__client_acquire(const struct sockaddr *addr, uint32_t limit)
{
    uint8_t key[16];
    int n = key_of(addr, key);
    if (n == 0 || limit == 0) return 0;
    int rv = 0;
    pthread_mutex_lock(&lock);
    entry **pp = find(key, n);
    if (!*pp) {
        entry *e = calloc(1, sizeof *e);
        if (e) {
            memcpy(e->key, key, (size_t)n);
            e->keylen = (uint8_t)n;
            *pp = e;
        }
    }
    if (*pp && (*pp)->count >= limit)
        rv = -1;
    else if (*pp)
        (*pp)->count++;
    pthread_mutex_unlock(&lock);
    return rv;
}

int64_t pc__client_held(const struct sockaddr *addr, int64_t delta)
{
    uint8_t key[16];
    int n = key_of(addr, key);
    if (n == 0) return 0;
    int64_t total = 0;
    pthread_mutex_lock(&lock);
    entry **pp = find(key, n);
    if (*pp) {
        (*pp)->held += delta;
        if ((*pp)->held < 0) (*pp)->held = 0;
        total = (*pp)->held;
    }
    pthread_mutex_unlock(&lock);
    return total;
}

void pc__client_release(const struct sockaddr *addr)
{
    uint8_t key[16];
    int n = key_of(addr, key);
    if (n == 0) return;
    pthread_mutex_lock(&lock);
    entry **pp = find(key, n);
    if (*pp && (*pp)->count > 0 && --(*pp)->count == 0) {
        entry *e = *pp;
        *pp = e->next;
        free(e);
    }
    pthread_mutex_unlock(&lock);
}
