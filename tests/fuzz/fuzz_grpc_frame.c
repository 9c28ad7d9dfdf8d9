/* libFuzzer target for the gRPC message decoder. The first byte picks the grpc-encoding and how the rest is
 * split into chunks; the outcome (messages, their bytes, the error) must match feeding it all at once. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_frame.h"

#define LIMIT (64 * 1024)

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) __builtin_trap();                                                                          \
    } while (0)

typedef struct {
    uint32_t count;
    uint64_t hash; /* over every delivered frame and message, so a difference in any byte shows */
} outcome;

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static int on_message(void *ud, const pc_grpc_message *m)
{
    outcome *o = ud;
    CHECK(m->index == o->count);
    CHECK(m->frame_len >= 5 && m->frame_len - 5 <= LIMIT);
    CHECK(m->len <= LIMIT);
    CHECK(m->frame[0] == (m->compressed ? 1 : 0));
    uint32_t declared =
        (uint32_t)m->frame[1] << 24 | (uint32_t)m->frame[2] << 16 | (uint32_t)m->frame[3] << 8 | m->frame[4];
    CHECK(declared == m->frame_len - 5);
    if (!m->compressed) CHECK(m->data == m->frame + 5 && m->len == m->frame_len - 5);
    o->count++;
    o->hash = fnv(o->hash, m->frame, m->frame_len);
    o->hash = fnv(o->hash, m->data, m->len);
    return 0;
}

/* Feeds `data` in chunks whose sizes come from `pattern`; returns the first failure or the finish result. */
static int run(pc_grpc_encoding enc, unsigned pattern, const uint8_t *data, size_t len, outcome *o)
{
    pc_grpc_framer f;
    char err[128];
    pc__grpc_framer_init(&f, enc, LIMIT);
    memset(o, 0, sizeof *o);
    uint32_t rng = pattern * 2654435761u + 1;
    size_t off = 0;
    int rc = 0;
    while (off < len && rc == 0) {
        size_t n;
        if (pattern == 0)
            n = len;
        else if (pattern == 1)
            n = 1;
        else {
            rng = rng * 1103515245u + 12345u;
            n = (rng >> 16) % (pattern * 4) + 1; /* small and large chunks, some splitting prefixes */
        }
        if (n > len - off) n = len - off;
        rc = pc__grpc_framer_feed(&f, data + off, n, on_message, o, err, sizeof err);
        off += n;
        CHECK(pc__grpc_framer_buffered(&f) <= 5 + LIMIT);
        CHECK(f.buf_cap <= 5 + LIMIT);
    }
    if (rc == 0) rc = pc__grpc_framer_finish(&f, err, sizeof err);
    if (rc != 0) { /* refused from then on */
        uint32_t before = o->count;
        CHECK(pc__grpc_framer_feed(&f, data, len, on_message, o, err, sizeof err) == rc);
        CHECK(o->count == before);
    }
    CHECK(rc == 0 || rc == PC_GRPC_FRAME_TOO_LARGE || rc == PC_GRPC_FRAME_MALFORMED ||
          rc == PC_GRPC_FRAME_UNSUPPORTED);
    pc__grpc_framer_free(&f);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    pc_grpc_encoding enc = (pc_grpc_encoding)(data[0] & 3);
    unsigned pattern = data[0] >> 2;
    outcome split, whole;
    int rc_split = run(enc, pattern, data + 1, size - 1, &split);
    int rc_whole = run(enc, 0, data + 1, size - 1, &whole);
    CHECK(rc_split == rc_whole);
    CHECK(split.count == whole.count && split.hash == whole.hash);
    return 0;
}
