/* Per-worker cache of small memory blocks, for the allocations every request makes and frees
 * again within a few loop iterations (nghttp2's streams, frames and header buffers; our header
 * lists and queue chunks). A busy worker allocates in bursts of hundreds of same-sized blocks,
 * more than glibc's per-thread cache keeps, so most of them went through the arena's bins; here
 * they come from a free list. Owned by one worker thread: no locks. */
#ifndef PC_MEMPOOL_H
#define PC_MEMPOOL_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>

#define PC_MEMPOOL_CLASSES 64 /* sizes 16, 32, ... 1024 */

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
