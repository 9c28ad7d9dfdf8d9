/* The local store: rate-limit state for one process, shared by all its workers (the "explicit store"
 * worker threads share instead of global state). Keys are 16-byte digests. Sharded, one mutex per
 * shard, bounded: at most max_keys keys; a new key takes the slot of an idle one (its window over,
 * no call in flight) and, when there is none near, of the one whose window ends first. */
#ifndef PC_STORE_LOCAL_STORE_H
#define PC_STORE_LOCAL_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "gcra.h"

typedef struct rl_local rl_local;

rl_local *rl_local_new(size_t max_keys);
void rl_local_free(rl_local *s);

/* GCRA on the key's bucket (see gcra.h): calls taken, 0 refused with *retry_ns. */
uint32_t rl_local_take(rl_local *s, const uint8_t key[16], const rl_gcra *g, uint64_t now, uint32_t want,
                       uint64_t *retry_ns);

/* Concurrency: 1 when the key had fewer than `limit` calls in flight (now one more), 0 refused. */
int rl_local_acquire(rl_local *s, const uint8_t key[16], uint32_t limit);
void rl_local_release(rl_local *s, const uint8_t key[16]);

/* Calls in flight for the key (tests, metrics). */
uint32_t rl_local_inflight(rl_local *s, const uint8_t key[16]);

#endif
