#include "mempool.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Every block starts with a 16-byte header naming its size class (keeping the payload 16-byte
 * aligned, as malloc's is); LARGE marks a block from malloc that goes back to free. */
#define HDR 16
#define GRAIN 16
#define BIG_GRAIN 256
#define LARGE 0xffu
/* At most this many bytes are cached per size class. A busy worker frees the blocks of hundreds of
 * finished calls in one loop turn and allocates as many for new ones in the next: the cache has to
 * hold such a burst (640 calls in flight use about 2,500 blocks of 1 KiB), or the rest goes back
 * through malloc. Beyond it blocks drain back to the system. */
#if defined(__SANITIZE_ADDRESS__)
#define CLASS_CACHE_BYTES 0u /* every block goes back at once, so the sanitizer sees reuse */
#else
#define CLASS_CACHE_BYTES (4u << 20)
#endif

typedef union block {
    union block *next; /* while on a free list */
    unsigned char pad[HDR];
} block;

#define SMALL_MAX ((size_t)PC_MEMPOOL_SMALL * GRAIN)

static inline unsigned class_of(size_t size)
{
    if (size <= SMALL_MAX) return size ? (unsigned)((size - 1) / GRAIN) : 0;
    return PC_MEMPOOL_SMALL + (unsigned)((size - SMALL_MAX - 1) / BIG_GRAIN);
}

static inline size_t class_size(unsigned c)
{
    if (c < PC_MEMPOOL_SMALL) return (size_t)(c + 1) * GRAIN;
    return SMALL_MAX + (size_t)(c - PC_MEMPOOL_SMALL + 1) * BIG_GRAIN;
}

static inline uint32_t *hdr_of(void *ptr)
{
    return (uint32_t *)((unsigned char *)ptr - HDR);
}

void *pc__mem_malloc(pc_mempool *p, size_t size)
{
    if (!p) return malloc(size);
    if (size > class_size(PC_MEMPOOL_CLASSES - 1)) {
        if (size > SIZE_MAX - HDR) return NULL;
        unsigned char *b = malloc(HDR + size);
        if (!b) return NULL;
        *(uint32_t *)b = LARGE;
        return b + HDR;
    }
    unsigned c = class_of(size);
    block *b = p->free[c];
    if (b) {
        /* Blocks of a burst of finished calls are out of the cache by the time new calls take
         * them: the next one is fetched now, while this one is in use. */
        block *next = b->next;
        if (next) __builtin_prefetch(next, 1);
        p->free[c] = next;
        p->nfree[c]--;
    } else if (!(b = malloc(HDR + class_size(c)))) {
        return NULL;
    }
    *(uint32_t *)b = c;
    return (unsigned char *)b + HDR;
}

void *pc__mem_calloc(pc_mempool *p, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) return NULL;
    void *ptr = pc__mem_malloc(p, n * size);
    if (ptr) memset(ptr, 0, n * size);
    return ptr;
}

void pc__mem_free(pc_mempool *p, void *ptr)
{
    if (!p) {
        free(ptr);
        return;
    }
    if (!ptr) return;
    uint32_t c = *hdr_of(ptr);
    block *b = (block *)hdr_of(ptr);
    if (c == LARGE || (p->nfree[c] + 1) * class_size(c) > CLASS_CACHE_BYTES) {
        free(b);
        return;
    }
    b->next = p->free[c];
    p->free[c] = b;
    p->nfree[c]++;
}

void *pc__mem_realloc(pc_mempool *p, void *ptr, size_t size)
{
    if (!p) return realloc(ptr, size);
    if (!ptr) return pc__mem_malloc(p, size);
    if (size == 0) {
        pc__mem_free(p, ptr);
        return NULL;
    }
    uint32_t c = *hdr_of(ptr);
    if (c == LARGE) {
        if (size > SIZE_MAX - HDR) return NULL;
        unsigned char *b = realloc(hdr_of(ptr), HDR + size);
        return b ? b + HDR : NULL;
    }
    size_t have = class_size(c);
    if (size <= have) return ptr;
    void *n = pc__mem_malloc(p, size);
    if (!n) return NULL;
    memcpy(n, ptr, have);
    pc__mem_free(p, ptr);
    return n;
}

static void *ng_malloc(size_t size, void *ud)
{
    return pc__mem_malloc(ud, size);
}
static void ng_free(void *ptr, void *ud)
{
    pc__mem_free(ud, ptr);
}
static void *ng_calloc(size_t n, size_t size, void *ud)
{
    return pc__mem_calloc(ud, n, size);
}
static void *ng_realloc(void *ptr, size_t size, void *ud)
{
    return pc__mem_realloc(ud, ptr, size);
}

void pc__mempool_init(pc_mempool *p)
{
    memset(p, 0, sizeof *p);
    p->nghttp2 = (nghttp2_mem){p, ng_malloc, ng_free, ng_calloc, ng_realloc};
}

void pc__mempool_destroy(pc_mempool *p)
{
    for (unsigned c = 0; c < PC_MEMPOOL_CLASSES; c++)
        for (block *b = p->free[c], *n; b; b = n) {
            n = b->next;
            free(b);
        }
    memset(p->free, 0, sizeof p->free);
    memset(p->nfree, 0, sizeof p->nfree);
}
