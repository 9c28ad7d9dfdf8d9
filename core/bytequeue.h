/* A FIFO of bytes in fixed-size chunks: what one side of a stream has received and the other
 * side has not yet taken. Its size is bounded by the caller through HTTP/2 flow control. */
#ifndef PC_BYTEQUEUE_H
#define PC_BYTEQUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "mempool.h"

typedef struct pc_bq_chunk pc_bq_chunk;

typedef struct pc_bytequeue {
    pc_bq_chunk *head, *tail;
    size_t size;     /* bytes held */
    pc_mempool *mem; /* the worker's block cache for small chunks (NULL: malloc) */
} pc_bytequeue;

void pc__bq_init(pc_bytequeue *q, pc_mempool *mem);
void pc__bq_free(pc_bytequeue *q);
/* Append a copy; returns -1 only on allocation failure. */
int pc__bq_append(pc_bytequeue *q, const uint8_t *data, size_t len);
/* Copy up to `len` bytes out of the front and drop them; returns the count. */
size_t pc__bq_read(pc_bytequeue *q, uint8_t *out, size_t len);

#endif
