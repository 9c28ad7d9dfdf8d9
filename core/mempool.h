/* Per-worker cache of small memory blocks, for the allocations every request makes and frees
 * again within a few loop iterations (nghttp2's streams, frames and header buffers; our header
 * lists and queue chunks). A busy worker allocates in bursts of hundreds of same-sized blocks,
 * more than glibc's per-thread cache keeps, so most of them went through the arena's bins; here
 * they come from a free list. Owned by one worker thread: no locks. */
#ifndef PC_MEMPOOL_H
#define PC_MEMPOOL_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>

/* Sizes 16, 32, ... 1024 (16-byte steps), then 1280, 1536, ... 4096 (256-byte steps): a request's
 * stream state (about 1.3 KiB) and nghttp2's larger per-stream blocks come from the cache too. */
#define PC_MEMPOOL_SMALL 64
#define PC_MEMPOOL_CLASSES (PC_MEMPOOL_SMALL + 12)

typedef struct pc_mempool {
    void *free[PC_MEMPOOL_CLASSES];
    unsigned nfree[PC_MEMPOOL_CLASSES];
    nghttp2_mem nghttp2; /* for nghttp2_session_*_new3 */
} pc_mempool;

void pc__mempool_init(pc_mempool *p);
/* Gives the cached blocks back to the system. */
void pc__mempool_destroy(pc_mempool *p);

/* With p NULL these are plain malloc, calloc, realloc and free (a block goes back to the pool
 * it came from, or to free when it came from malloc). */
void *pc__mem_malloc(pc_mempool *p, size_t size);
void *pc__mem_calloc(pc_mempool *p, size_t n, size_t size);
void *pc__mem_realloc(pc_mempool *p, void *ptr, size_t size);
void pc__mem_free(pc_mempool *p, void *ptr);

#endif
