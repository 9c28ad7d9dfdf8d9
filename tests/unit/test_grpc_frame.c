/* Tests for the incremental gRPC message decoder: every split of a mixed stream (plain, empty, large,
 * compressed), size limits on the wire and after decompression, malformed input and stream termination. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "grpc_frame.h"

/* ---- helpers ---- */

/* memcmp first: cmocka's byte-wise comparison is too slow for the split loops; it only reports. */
#define assert_bytes_equal(a, b, n)                                                                          \
    do {                                                                                                     \
        if (memcmp((a), (b), (n)) != 0) assert_memory_equal((a), (b), (n));                                  \
    } while (0)

typedef struct {
    uint8_t *bytes;
    size_t len, cap;
} bytebuf;

static void bb_append(bytebuf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->bytes = realloc(b->bytes, b->cap);
        assert_non_null(b->bytes);
    }
    if (n) memcpy(b->bytes + b->len, p, n);
    b->len += n;
}

/* zlib-wrapped ("deflate"), gzip or raw deflate, chosen by windowBits. */
static bytebuf zcompress(const uint8_t *in, size_t len, int window_bits)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    bytebuf out = {0};
    out.cap = deflateBound(&zs, len) + 32;
    out.bytes = malloc(out.cap);
    assert_non_null(out.bytes);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out.bytes;
    zs.avail_out = (uInt)out.cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    out.len = out.cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

static bytebuf gzip_of(const uint8_t *in, size_t len)
{
    return zcompress(in, len, 16 + MAX_WBITS);
}
static bytebuf zlib_of(const uint8_t *in, size_t len)
{
    return zcompress(in, len, MAX_WBITS);
}

static void fill_pattern(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

static void fill_text(uint8_t *p, size_t n)
{
    static const char words[] = "the quick brown fox jumps over the lazy dog 0123456789 ";
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)words[(i * 7 + i / 13) % (sizeof words - 1)];
}

static void append_frame(bytebuf *b, int compressed, const uint8_t *payload, size_t len)
{
    uint8_t pre[5];
    pc__grpc_prefix(pre, compressed, (uint32_t)len);
    bb_append(b, pre, 5);
    bb_append(b, payload, len);
}

/* ---- a stream of several messages and what each must decode to ---- */

#define MAX_MSGS 8

typedef struct {
    size_t off, frame_len; /* where the frame sits in the stream */
    uint8_t *plain;        /* expected message after decompression */
    size_t plain_len;
    int compressed;
} expect_msg;

typedef struct {
    pc_grpc_encoding enc;
    bytebuf wire;
    expect_msg msgs[MAX_MSGS];
    size_t n;
} test_stream;

static void ts_add(test_stream *ts, const uint8_t *plain, size_t len, int compressed)
{
    assert_true(ts->n < MAX_MSGS);
    expect_msg *e = &ts->msgs[ts->n++];
    e->plain = malloc(len ? len : 1);
    assert_non_null(e->plain);
    if (len) memcpy(e->plain, plain, len);
    e->plain_len = len;
    e->compressed = compressed;
    e->off = ts->wire.len;
    if (compressed) {
        bytebuf z = ts->enc == PC_GRPC_ENC_GZIP ? gzip_of(plain, len) : zlib_of(plain, len);
        append_frame(&ts->wire, 1, z.bytes, z.len);
        free(z.bytes);
    } else {
        append_frame(&ts->wire, 0, plain, len);
    }
    e->frame_len = ts->wire.len - e->off;
}

/* One grpc-encoding per stream, so gzip and deflate messages go in separate streams. The large message is
 * optional: splitting it at every byte costs most of the run and needs doing once, not per encoding. */
static test_stream make_stream(pc_grpc_encoding enc, int with_large)
{
    test_stream ts = {.enc = enc};
    static uint8_t one[1] = {0xab}, k1[1000], k70[70000], text[3000];
    fill_pattern(k1, sizeof k1, 1);
    fill_pattern(k70, sizeof k70, 2);
    fill_text(text, sizeof text);
    ts_add(&ts, NULL, 0, 0);
    ts_add(&ts, one, 1, 0);
    ts_add(&ts, k1, sizeof k1, 0);
    ts_add(&ts, text, sizeof text, 1);
    if (with_large) ts_add(&ts, k70, sizeof k70, 0);
    ts_add(&ts, NULL, 0, 1); /* compressed empty message: a complete but empty stream */
    ts_add(&ts, one, 1, 0);
    return ts;
}

static void free_stream(test_stream *ts)
{
    for (size_t i = 0; i < ts->n; i++)
        free(ts->msgs[i].plain);
    free(ts->wire.bytes);
}

/* Checks each delivered message against the stream. A message that lies wholly inside the chunk being fed
 * must be handed over in place (frame points at its own position in the chunk); others must be an exact
 * contiguous copy. */
typedef struct {
    const test_stream *ts;
    const uint8_t *chunk;
    size_t chunk_off, chunk_len;
    size_t next, in_place, copied;
} check_ctx;

static int check_cb(void *ud, const pc_grpc_message *m)
{
    check_ctx *c = ud;
    assert_true(c->next < c->ts->n);
    assert_int_equal(m->index, c->next);
    const expect_msg *e = &c->ts->msgs[c->next++];
    assert_int_equal(m->frame_len, e->frame_len);
    assert_int_equal(m->compressed, e->compressed);
    int inside = e->off >= c->chunk_off && e->off + e->frame_len <= c->chunk_off + c->chunk_len;
    if (inside) {
        assert_ptr_equal(m->frame, c->chunk + (e->off - c->chunk_off));
        c->in_place++;
    } else {
        assert_true(m->frame < c->chunk || m->frame >= c->chunk + c->chunk_len);
        assert_bytes_equal(m->frame, c->ts->wire.bytes + e->off, e->frame_len);
        c->copied++;
    }
    assert_int_equal(m->len, e->plain_len);
    if (e->compressed) {
        if (e->plain_len) assert_bytes_equal(m->data, e->plain, e->plain_len);
    } else {
        assert_ptr_equal(m->data, m->frame + 5); /* content already verified through frame */
    }
    return 0;
}

/* Bytes the framer should hold after the stream was fed up to `at`, and the frame size of that message. */
static size_t expected_held(const test_stream *ts, size_t at, size_t *frame_len)
{
    for (size_t i = 0; i < ts->n; i++)
        if (at > ts->msgs[i].off && at < ts->msgs[i].off + ts->msgs[i].frame_len) {
            *frame_len = ts->msgs[i].frame_len;
            return at - ts->msgs[i].off;
        }
    *frame_len = 0;
    return 0;
}

static void feed_chunk(pc_grpc_framer *f, check_ctx *c, size_t off, size_t len)
{
    char err[128] = "";
    c->chunk = c->ts->wire.bytes + off;
    c->chunk_off = off;
    c->chunk_len = len;
    int rc = pc__grpc_framer_feed(f, c->chunk, len, check_cb, c, err, sizeof err);
    if (rc != 0) fail_msg("feed at %zu+%zu failed: %d %s", off, len, rc, err);
    size_t frame_len, held = expected_held(c->ts, off + len, &frame_len);
    assert_int_equal(pc__grpc_framer_buffered(f), held);
    assert_true(f->buf_cap <= frame_len); /* never grown past the declared size */
}

static void finish_clean(pc_grpc_framer *f, check_ctx *c)
{
    char err[128] = "";
    assert_int_equal(c->next, c->ts->n);
    assert_int_equal(pc__grpc_framer_buffered(f), 0);
    assert_int_equal(pc__grpc_framer_finish(f, err, sizeof err), 0);
    pc__grpc_framer_free(f);
}

static void every_split(pc_grpc_encoding enc, int with_large)
{
    test_stream ts = make_stream(enc, with_large);
    size_t copied = 0;
    for (size_t cut = 0; cut <= ts.wire.len; cut++) {
        pc_grpc_framer f;
        pc__grpc_framer_init(&f, enc, 4 * 1024 * 1024);
        check_ctx c = {.ts = &ts};
        feed_chunk(&f, &c, 0, cut);
        feed_chunk(&f, &c, cut, ts.wire.len - cut);
        /* a cut strictly inside a message forces exactly that one to be copied */
        size_t fl, held = expected_held(&ts, cut, &fl);
        assert_int_equal(c.copied, held ? 1 : 0);
        assert_int_equal(c.in_place + c.copied, ts.n);
        copied += c.copied;
        finish_clean(&f, &c);
    }
    assert_true(copied > (with_large ? 70000u : 1000u));
    free_stream(&ts);
}

static void test_every_split_gzip(void **state)
{
    (void)state;
    every_split(PC_GRPC_ENC_GZIP, 1);
}

static void test_every_split_deflate(void **state)
{
    (void)state;
    every_split(PC_GRPC_ENC_DEFLATE, 0);
}

static void test_byte_at_a_time(void **state)
{
    (void)state;
    pc_grpc_encoding encs[] = {PC_GRPC_ENC_GZIP, PC_GRPC_ENC_DEFLATE};
    for (size_t k = 0; k < 2; k++) {
        test_stream ts = make_stream(encs[k], 1);
        pc_grpc_framer f;
        pc__grpc_framer_init(&f, encs[k], 4 * 1024 * 1024);
        check_ctx c = {.ts = &ts};
        for (size_t i = 0; i < ts.wire.len; i++)
            feed_chunk(&f, &c, i, 1);
        assert_int_equal(c.copied, ts.n);
        finish_clean(&f, &c);
        free_stream(&ts);
    }
}

/* The whole stream as one chunk: nothing is copied. */
static void test_single_chunk_zero_copy(void **state)
{
    (void)state;
    test_stream ts = make_stream(PC_GRPC_ENC_GZIP, 1);
    pc_grpc_framer f;
    pc__grpc_framer_init(&f, PC_GRPC_ENC_GZIP, 4 * 1024 * 1024);
    check_ctx c = {.ts = &ts};
    feed_chunk(&f, &c, 0, ts.wire.len);
    assert_int_equal(c.in_place, ts.n);
    assert_null(f.buf);
    finish_clean(&f, &c);
    free_stream(&ts);
}

/* ---- limits ---- */

typedef struct {
    int calls;
    size_t last_len;
    int stop_at; /* index at which to return `stop_rc`, -1 never */
    int stop_rc;
} count_ctx;

static int count_cb(void *ud, const pc_grpc_message *m)
{
    count_ctx *c = ud;
    c->calls++;
    c->last_len = m->len;
    return (int)m->index == c->stop_at ? c->stop_rc : 0;
}

static void test_limit_exact_and_over(void **state)
{
    (void)state;
    uint8_t payload[1001];
    fill_pattern(payload, sizeof payload, 3);
    bytebuf w = {0};
    append_frame(&w, 0, payload, 1000);
    append_frame(&w, 0, payload, 1001);
    char err[128] = "";

    /* exactly at the limit passes; one over fails as soon as its prefix is complete */
    pc_grpc_framer f;
    pc__grpc_framer_init(&f, PC_GRPC_ENC_IDENTITY, 1000);
    count_ctx c = {.stop_at = -1};
    assert_int_equal(pc__grpc_framer_feed(&f, w.bytes, 1005 + 5, count_cb, &c, err, sizeof err),
                     PC_GRPC_FRAME_TOO_LARGE);
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.last_len, 1000);
    assert_string_equal(err, "message of 1001 bytes exceeds the limit of 1000");
    assert_null(f.buf);
    pc__grpc_framer_free(&f);

    /* same when the prefix arrives in pieces */
    pc__grpc_framer_init(&f, PC_GRPC_ENC_IDENTITY, 1000);
    c = (count_ctx){.stop_at = -1};
    assert_int_equal(pc__grpc_framer_feed(&f, w.bytes, 1005 + 3, count_cb, &c, err, sizeof err), 0);
    assert_int_equal(pc__grpc_framer_buffered(&f), 3);
    assert_int_equal(pc__grpc_framer_feed(&f, w.bytes + 1008, 2, count_cb, &c, err, sizeof err),
                     PC_GRPC_FRAME_TOO_LARGE);
    assert_int_equal(c.calls, 1);
    pc__grpc_framer_free(&f);
    free(w.bytes);
}

static void test_limit_after_decompression(void **state)
{
    (void)state;
    uint8_t text[2000];
    fill_text(text, sizeof text);
    char err[128] = "";
    for (int over = 0; over <= 1; over++) {
        bytebuf z = gzip_of(text, 1000 + (size_t)over);
        bytebuf w = {0};
        append_frame(&w, 1, z.bytes, z.len);
        pc_grpc_framer f;
        pc__grpc_framer_init(&f, PC_GRPC_ENC_GZIP, 1000);
        count_ctx c = {.stop_at = -1};
        int rc = pc__grpc_framer_feed(&f, w.bytes, w.len, count_cb, &c, err, sizeof err);
        if (over) {
            assert_int_equal(rc, PC_GRPC_FRAME_TOO_LARGE);
            assert_string_equal(err, "message decompresses to more than 1000 bytes");
            assert_int_equal(c.calls, 0);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(c.calls, 1);
            assert_int_equal(c.last_len, 1000);
            assert_true(f.scratch_cap <= 1000);
        }
        pc__grpc_framer_free(&f);
        free(z.bytes);
        free(w.bytes);
    }
}

static void test_4gib_prefix(void **state)
{
    (void)state;
    const uint8_t pre[5] = {0, 0xff, 0xff, 0xff, 0xff};
    char err[128] = "";
    for (size_t step = 1; step <= 5; step += 4) { /* all at once, and byte by byte */
        pc_grpc_framer f;
        pc__grpc_framer_init(&f, PC_GRPC_ENC_IDENTITY, 4 * 1024 * 1024);
        count_ctx c = {.stop_at = -1};
        int rc = 0;
        for (size_t i = 0; i < 5 && rc == 0; i += step)
            rc = pc__grpc_framer_feed(&f, pre + i, step, count_cb, &c, err, sizeof err);
        assert_int_equal(rc, PC_GRPC_FRAME_TOO_LARGE);
        assert_string_equal(err, "message of 4294967295 bytes exceeds the limit of 4194304");
        assert_null(f.buf);
        assert_int_equal(f.buf_cap, 0);
        assert_null(f.scratch);
        assert_int_equal(c.calls, 0);
        pc__grpc_framer_free(&f);
    }
}

static void test_gzip_bomb(void **state)
{
    (void)state;
    size_t n = 10 * 1024 * 1024;
    uint8_t *zeros = calloc(1, n);
    assert_non_null(zeros);
    bytebuf z = gzip_of(zeros, n);
    free(zeros);
    assert_true(z.len < 64 * 1024); /* small on the wire, so only the decompressed size can stop it */
    bytebuf w = {0};
    append_frame(&w, 1, z.bytes, z.len);
    char err[128] = "";
    pc_grpc_framer f;
    pc__grpc_framer_init(&f, PC_GRPC_ENC_GZIP, 1024 * 1024);
    count_ctx c = {.stop_at = -1};
    assert_int_equal(pc__grpc_framer_feed(&f, w.bytes, w.len, count_cb, &c, err, sizeof err),
                     PC_GRPC_FRAME_TOO_LARGE);
    assert_string_equal(err, "message decompresses to more than 1048576 bytes");
    assert_int_equal(c.calls, 0);
    pc__grpc_framer_free(&f);

    uint8_t *out = (uint8_t *)1;
    size_t outlen = 99;
    assert_int_equal(
        pc__grpc_decompress(PC_GRPC_ENC_GZIP, z.bytes, z.len, 1024 * 1024, &out, &outlen, err, sizeof err),
        PC_GRPC_FRAME_TOO_LARGE);
    assert_null(out);
    free(z.bytes);
    free(w.bytes);
}

/* ---- malformed input ---- */

/* Feeds a single frame and expects the given failure and message, with no callback. */
static void expect_failure(pc_grpc_encoding enc, int flag, const uint8_t *payload, size_t len, int want_rc,
                           const char *want_err)
{
    bytebuf w = {0};
    append_frame(&w, 0, payload, len);
    w.bytes[0] = (uint8_t)flag;
    char err[128] = "";
    pc_grpc_framer f;
    pc__grpc_framer_init(&f, enc, 1024 * 1024);
    count_ctx c = {.stop_at = -1};
    assert_int_equal(pc__grpc_framer_feed(&f, w.bytes, w.len, count_cb, &c, err, sizeof err), want_rc);
    assert_string_equal(err, want_err);
    assert_int_equal(c.calls, 0);
    assert_int_equal(f.failed, want_rc);
    pc__grpc_framer_free(&f);
    free(w.bytes);
}

static void test_bad_flag(void **state)
{
    (void)state;
    expect_failure(PC_GRPC_ENC_IDENTITY, 7, (const uint8_t *)"abc", 3, PC_GRPC_FRAME_MALFORMED,
                   "invalid gRPC frame flag 0x07");
    expect_failure(PC_GRPC_ENC_GZIP, 2, (const uint8_t *)"abc", 3, PC_GRPC_FRAME_MALFORMED,
                   "invalid gRPC frame flag 0x02");
    expect_failure(PC_GRPC_ENC_GZIP, 0x80, NULL, 0, PC_GRPC_FRAME_MALFORMED,
                   "invalid gRPC frame flag 0x80 (a gRPC-Web trailer frame, which only answers carry)");
}

static void test_compressed_without_encoding(void **state)
{
    (void)state;
    uint8_t text[100];
    fill_text(text, sizeof text);
    bytebuf z = gzip_of(text, sizeof text);
    expect_failure(PC_GRPC_ENC_IDENTITY, 1, z.bytes, z.len, PC_GRPC_FRAME_MALFORMED,
                   "compressed message without grpc-encoding");
    expect_failure(PC_GRPC_ENC_UNKNOWN, 1, z.bytes, z.len, PC_GRPC_FRAME_UNSUPPORTED,
                   "message compressed with an unsupported grpc-encoding");
    free(z.bytes);

    /* an unknown encoding is harmless while messages are not flagged compressed */
    bytebuf w = {0};
    append_frame(&w, 0, text, sizeof text);
    char err[128] = "";
    pc_grpc_framer f;
    pc__grpc_framer_init(&f, PC_GRPC_ENC_UNKNOWN, 1024);
    count_ctx c = {.stop_at = -1};
    assert_int_equal(pc__grpc_framer_feed(&f, w.bytes, w.len, count_cb, &c, err, sizeof err), 0);
    assert_int_equal(c.calls, 1);
    pc__grpc_framer_free(&f);
    free(w.bytes);
}

static void test_corrupt_compressed(void **state)
{
    (void)state;
    uint8_t text[3000];
    fill_text(text, sizeof text);
    bytebuf g = gzip_of(text, sizeof text);
    bytebuf d = zlib_of(text, sizeof text);
    bytebuf raw = zcompress(text, sizeof text, -MAX_WBITS);
    uint8_t *tmp = malloc(g.len + d.len + 8);
    assert_non_null(tmp);

    /* damaged body */
    memcpy(tmp, g.bytes, g.len);
    for (size_t i = 12; i < 20; i++)
        tmp[i] ^= 0x5a;
    expect_failure(PC_GRPC_ENC_GZIP, 1, tmp, g.len, PC_GRPC_FRAME_MALFORMED, "corrupt compressed message");
    /* bad CRC in the gzip trailer */
    memcpy(tmp, g.bytes, g.len);
    tmp[g.len - 8] ^= 1;
    expect_failure(PC_GRPC_ENC_GZIP, 1, tmp, g.len, PC_GRPC_FRAME_MALFORMED, "corrupt compressed message");
    /* not gzip at all */
    expect_failure(PC_GRPC_ENC_GZIP, 1, text, 100, PC_GRPC_FRAME_MALFORMED, "corrupt compressed message");
    /* truncated: trailer cut, and nothing at all */
    expect_failure(PC_GRPC_ENC_GZIP, 1, g.bytes, g.len - 4, PC_GRPC_FRAME_MALFORMED,
                   "truncated compressed message");
    expect_failure(PC_GRPC_ENC_DEFLATE, 1, d.bytes, d.len / 2, PC_GRPC_FRAME_MALFORMED,
                   "truncated compressed message");
    expect_failure(PC_GRPC_ENC_GZIP, 1, NULL, 0, PC_GRPC_FRAME_MALFORMED, "truncated compressed message");
    /* trailing garbage after a complete zlib stream; for gzip it is read as a bad second member */
    memcpy(tmp, d.bytes, d.len);
    memcpy(tmp + d.len, "junk", 4);
    expect_failure(PC_GRPC_ENC_DEFLATE, 1, tmp, d.len + 4, PC_GRPC_FRAME_MALFORMED,
                   "trailing data after compressed message");
    memcpy(tmp, g.bytes, g.len);
    memcpy(tmp + g.len, "junk", 4);
    expect_failure(PC_GRPC_ENC_GZIP, 1, tmp, g.len + 4, PC_GRPC_FRAME_MALFORMED,
                   "corrupt compressed message");
    /* "deflate" is zlib-wrapped: raw deflate and gzip are refused */
    expect_failure(PC_GRPC_ENC_DEFLATE, 1, raw.bytes, raw.len, PC_GRPC_FRAME_MALFORMED,
                   "corrupt compressed message");
    expect_failure(PC_GRPC_ENC_DEFLATE, 1, g.bytes, g.len, PC_GRPC_FRAME_MALFORMED,
                   "corrupt compressed message");
    expect_failure(PC_GRPC_ENC_GZIP, 1, d.bytes, d.len, PC_GRPC_FRAME_MALFORMED,
                   "corrupt compressed message");

    free(tmp);
    free(g.bytes);
    free(d.bytes);
    free(raw.bytes);
}

/* ---- stream end, callback stop, refusal after failure ---- */

static void test_finish_truncated(void **state)
{
    (void)state;
    uint8_t payload[10] = {0};
    bytebuf w = {0};
    append_frame(&w, 0, payload, 10);
    char err[128] = "";
    count_ctx c = {.stop_at = -1};

    pc_grpc_framer f;
    pc__grpc_framer_init(&f, PC_GRPC_ENC_IDENTITY, 1024);
    assert_int_equal(pc__grpc_framer_feed(&f, w.bytes, 8, count_cb, &c, err, sizeof err), 0);
    assert_int_equal(pc__grpc_framer_buffered(&f), 8);
    assert_int_equal(pc__grpc_framer_finish(&f, err, sizeof err), PC_GRPC_FRAME_MALFORMED);
    assert_string_equal(err, "stream ended inside a message (3 of 10 bytes)");
    pc__grpc_framer_free(&f);

    pc__grpc_framer_init(&f, PC_GRPC_ENC_IDENTITY, 1024);
    assert_int_equal(pc__grpc_framer_feed(&f, w.bytes, 2, count_cb, &c, err, sizeof err), 0);
    assert_int_equal(pc__grpc_framer_finish(&f, err, sizeof err), PC_GRPC_FRAME_MALFORMED);
    assert_string_equal(err, "stream ended inside a message prefix (2 of 5 bytes)");
    pc__grpc_framer_free(&f);

    /* after whole messages, or with nothing fed, the end is clean */
    pc__grpc_framer_init(&f, PC_GRPC_ENC_IDENTITY, 1024);
    assert_int_equal(pc__grpc_framer_finish(&f, err, sizeof err), 0);
    assert_int_equal(pc__grpc_framer_feed(&f, w.bytes, w.len, count_cb, &c, err, sizeof err), 0);
    assert_int_equal(pc__grpc_framer_finish(&f, err, sizeof err), 0);
    assert_int_equal(c.calls, 1);
    pc__grpc_framer_free(&f);
    free(w.bytes);
}

static void test_callback_stop(void **state)
{
    (void)state;
    uint8_t payload[40];
    fill_pattern(payload, sizeof payload, 4);
    bytebuf w = {0};
    for (int i = 0; i < 4; i++)
        append_frame(&w, 0, payload, 10 * (size_t)i);
    char err[128] = "";
    for (int split = 0; split <= 1; split++) { /* stop on an in-place and on a buffered message */
        pc_grpc_framer f;
        pc__grpc_framer_init(&f, PC_GRPC_ENC_IDENTITY, 1024);
        count_ctx c = {.stop_at = 2, .stop_rc = 42};
        size_t first = split ? 5 + 15 + 7 : 0; /* cuts message 2 when split */
        int rc = first ? pc__grpc_framer_feed(&f, w.bytes, first, count_cb, &c, err, sizeof err) : 0;
        assert_int_equal(rc, 0);
        rc = pc__grpc_framer_feed(&f, w.bytes + first, w.len - first, count_cb, &c, err, sizeof err);
        assert_int_equal(rc, 42);
        assert_int_equal(c.calls, 3); /* message 3 was not delivered */
        assert_int_equal(pc__grpc_framer_feed(&f, w.bytes, w.len, count_cb, &c, err, sizeof err), 42);
        assert_int_equal(c.calls, 3);
        pc__grpc_framer_free(&f);
    }
    free(w.bytes);
}

static void test_refused_after_error(void **state)
{
    (void)state;
    const uint8_t bad[] = {9, 0, 0, 0, 0};
    uint8_t good[5];
    pc__grpc_prefix(good, 0, 0);
    char err[128] = "";
    pc_grpc_framer f;
    pc__grpc_framer_init(&f, PC_GRPC_ENC_IDENTITY, 1024);
    count_ctx c = {.stop_at = -1};
    assert_int_equal(pc__grpc_framer_feed(&f, bad, sizeof bad, count_cb, &c, err, sizeof err),
                     PC_GRPC_FRAME_MALFORMED);
    assert_int_equal(pc__grpc_framer_feed(&f, good, sizeof good, count_cb, &c, err, sizeof err),
                     PC_GRPC_FRAME_MALFORMED);
    assert_string_equal(err, "stream already failed");
    assert_int_equal(pc__grpc_framer_finish(&f, err, sizeof err), PC_GRPC_FRAME_MALFORMED);
    assert_int_equal(c.calls, 0);
    pc__grpc_framer_free(&f);
}

/* ---- small helpers ---- */

static void test_encoding_parse(void **state)
{
    (void)state;
    assert_int_equal(pc__grpc_encoding_parse("gzip", 4), PC_GRPC_ENC_GZIP);
    assert_int_equal(pc__grpc_encoding_parse("GZip", 4), PC_GRPC_ENC_GZIP);
    assert_int_equal(pc__grpc_encoding_parse("deflate", 7), PC_GRPC_ENC_DEFLATE);
    assert_int_equal(pc__grpc_encoding_parse("Identity", 8), PC_GRPC_ENC_IDENTITY);
    assert_int_equal(pc__grpc_encoding_parse("gzipx", 4), PC_GRPC_ENC_GZIP); /* only len bytes count */
    assert_int_equal(pc__grpc_encoding_parse("gzi", 3), PC_GRPC_ENC_UNKNOWN);
    assert_int_equal(pc__grpc_encoding_parse("gzip ", 5), PC_GRPC_ENC_UNKNOWN);
    assert_int_equal(pc__grpc_encoding_parse("br", 2), PC_GRPC_ENC_UNKNOWN);
    assert_int_equal(pc__grpc_encoding_parse("snappy", 6), PC_GRPC_ENC_UNKNOWN);
    assert_int_equal(pc__grpc_encoding_parse("", 0), PC_GRPC_ENC_UNKNOWN);
}

static void test_prefix(void **state)
{
    (void)state;
    uint8_t p[5];
    pc__grpc_prefix(p, 1, 0x01020304u);
    assert_memory_equal(p, "\x01\x01\x02\x03\x04", 5);
    pc__grpc_prefix(p, 0, 0xffffffffu);
    assert_memory_equal(p, "\x00\xff\xff\xff\xff", 5);
}

static void test_decompress(void **state)
{
    (void)state;
    uint8_t text[5000];
    fill_text(text, sizeof text);
    char err[128] = "";
    uint8_t *out;
    size_t outlen;

    bytebuf g = gzip_of(text, sizeof text), d = zlib_of(text, sizeof text);
    assert_int_equal(
        pc__grpc_decompress(PC_GRPC_ENC_GZIP, g.bytes, g.len, 5000, &out, &outlen, err, sizeof err), 0);
    assert_int_equal(outlen, 5000);
    assert_memory_equal(out, text, 5000);
    free(out);
    assert_int_equal(
        pc__grpc_decompress(PC_GRPC_ENC_DEFLATE, d.bytes, d.len, 5000, &out, &outlen, err, sizeof err), 0);
    assert_memory_equal(out, text, 5000);
    free(out);
    assert_int_equal(
        pc__grpc_decompress(PC_GRPC_ENC_GZIP, g.bytes, g.len, 4999, &out, &outlen, err, sizeof err),
        PC_GRPC_FRAME_TOO_LARGE);
    assert_null(out);

    /* concatenated gzip members decode as one message */
    bytebuf two = {0};
    bytebuf g1 = gzip_of(text, 1000), g2 = gzip_of(text + 1000, 4000);
    bb_append(&two, g1.bytes, g1.len);
    bb_append(&two, g2.bytes, g2.len);
    assert_int_equal(
        pc__grpc_decompress(PC_GRPC_ENC_GZIP, two.bytes, two.len, 5000, &out, &outlen, err, sizeof err), 0);
    assert_int_equal(outlen, 5000);
    assert_memory_equal(out, text, 5000);
    free(out);
    assert_int_equal(
        pc__grpc_decompress(PC_GRPC_ENC_GZIP, two.bytes, two.len, 4999, &out, &outlen, err, sizeof err),
        PC_GRPC_FRAME_TOO_LARGE);

    /* empty output still gives a buffer to free; identity copies; unknown is refused */
    bytebuf e = gzip_of(NULL, 0);
    assert_int_equal(pc__grpc_decompress(PC_GRPC_ENC_GZIP, e.bytes, e.len, 0, &out, &outlen, err, sizeof err),
                     0);
    assert_non_null(out);
    assert_int_equal(outlen, 0);
    free(out);
    assert_int_equal(pc__grpc_decompress(PC_GRPC_ENC_IDENTITY, text, 10, 10, &out, &outlen, err, sizeof err),
                     0);
    assert_memory_equal(out, text, 10);
    free(out);
    assert_int_equal(pc__grpc_decompress(PC_GRPC_ENC_IDENTITY, text, 11, 10, &out, &outlen, err, sizeof err),
                     PC_GRPC_FRAME_TOO_LARGE);
    assert_int_equal(
        pc__grpc_decompress(PC_GRPC_ENC_UNKNOWN, g.bytes, g.len, 5000, &out, &outlen, err, sizeof err),
        PC_GRPC_FRAME_UNSUPPORTED);
    assert_null(out);

    free(g.bytes);
    free(d.bytes);
    free(g1.bytes);
    free(g2.bytes);
    free(two.bytes);
    free(e.bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_split_gzip),
        cmocka_unit_test(test_every_split_deflate),
        cmocka_unit_test(test_byte_at_a_time),
        cmocka_unit_test(test_single_chunk_zero_copy),
        cmocka_unit_test(test_limit_exact_and_over),
        cmocka_unit_test(test_limit_after_decompression),
        cmocka_unit_test(test_4gib_prefix),
        cmocka_unit_test(test_gzip_bomb),
        cmocka_unit_test(test_bad_flag),
        cmocka_unit_test(test_compressed_without_encoding),
        cmocka_unit_test(test_corrupt_compressed),
        cmocka_unit_test(test_finish_truncated),
        cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_refused_after_error),
        cmocka_unit_test(test_encoding_parse),
        cmocka_unit_test(test_prefix),
        cmocka_unit_test(test_decompress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
