/* Chunked byte FIFO. Chunks are up to 16 KiB, the HTTP/2 default frame size, so a DATA frame
 * usually lands in one chunk and is read back out in one copy; the first chunk of an empty queue
 * is sized to what arrives (at least 1 KiB), since most gRPC messages are small. */
#include "bytequeue.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_SIZE 16384

/* A small first chunk, header included, fits the worker's block cache. */
#define SMALL_CHUNK (1024 - sizeof(pc_bq_chunk))

struct pc_bq_chunk {
    pc_bq_chunk *next;
    size_t start, end, cap;
    uint8_t data[];
};

void pc__bq_init(pc_bytequeue *q, pc_mempool *mem)
{
    memset(q, 0, sizeof *q);
    q->mem = mem;
}

void pc__bq_free(pc_bytequeue *q)
{
    pc_bq_chunk *c = q->head;
    while (c) {
        pc_bq_chunk *n = c->next;
        pc__mem_free(q->mem, c);
        c = n;
    }
    pc__bq_init(q, q->mem);
}

int pc__bq_append(pc_bytequeue *q, const uint8_t *data, size_t len)
{
    while (len > 0) {
        pc_bq_chunk *t = q->tail;
        if (!t || t->end == t->cap) {
            size_t cap = CHUNK_SIZE;
            if (!q->head) cap = len < SMALL_CHUNK ? SMALL_CHUNK : len < CHUNK_SIZE ? len : CHUNK_SIZE;
            t = pc__mem_malloc(q->mem, sizeof *t + cap);
            if (!t) return -1;
            t->next = NULL;
            t->start = t->end = 0;
            t->cap = cap;
            if (q->tail)
                q->tail->next = t;
            else
                q->head = t;
            q->tail = t;
        }
        size_t n = t->cap - t->end;
        if (n > len) n = len;
        memcpy(t->data + t->end, data, n);
        t->end += n;
        data += n;
        len -= n;
        q->size += n;
    }
    return 0;
}

size_t pc__bq_read(pc_bytequeue *q, uint8_t *out, size_t len)
{
    size_t done = 0;
    while (done < len && q->head) {
        pc_bq_chunk *c = q->head;
        size_t n = c->end - c->start;
        if (n > len - done) n = len - done;
        memcpy(out + done, c->data + c->start, n);
        c->start += n;
        done += n;
        if (c->start == c->end) {
            q->head = c->next;
            if (!q->head) q->tail = NULL;
            pc__mem_free(q->mem, c);
        }
    }
    q->size -= done;
    return done;
}
