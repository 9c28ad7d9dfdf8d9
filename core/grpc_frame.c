/* gRPC length-prefixed message decoding: splits a DATA byte stream into messages, passing whole messages
 * that sit inside one chunk by pointer and buffering only those that span chunks, and inflates
 * compressed messages (gzip, zlib "deflate") into a reusable scratch buffer bounded by the size limit. */
#include "grpc_frame.h"
#include "log.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define PREFIX_LEN 5
/* A scratch buffer grown past this is released after use, so an idle stream does not pin up to the limit. */
#define SCRATCH_KEEP (64 * 1024)
#define FIRST_ALLOC 4096

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

pc_grpc_encoding pc__grpc_encoding_parse(const char *s, size_t len)
{
    static const struct {
        const char *name;
        size_t len;
        pc_grpc_encoding enc;
    } names[] = {
        {"identity", 8, PC_GRPC_ENC_IDENTITY},
        {"gzip", 4, PC_GRPC_ENC_GZIP},
        {"deflate", 7, PC_GRPC_ENC_DEFLATE},
    };
    if (!s) return PC_GRPC_ENC_UNKNOWN;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (len == names[i].len && strncasecmp(s, names[i].name, len) == 0) return names[i].enc;
    return PC_GRPC_ENC_UNKNOWN;
}

void pc__grpc_prefix(uint8_t out[5], int compressed, uint32_t len)
{
    out[0] = compressed ? 1 : 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

/* Inflates into *buf (capacity *cap, grown geometrically and never past max_out). The buffer is kept by
 * the caller on both success and failure. */
static int inflate_into(pc_grpc_encoding enc, const uint8_t *in, size_t inlen, size_t max_out, uint8_t **buf,
                        size_t *cap, size_t *outlen, char *err, size_t errlen)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, enc == PC_GRPC_ENC_GZIP ? 16 + MAX_WBITS : MAX_WBITS) != Z_OK) {
        pc__errf(err, errlen, "out of memory decompressing message");
        return PC_GRPC_FRAME_TOO_LARGE;
    }
    size_t in_left = inlen, have = 0;
    int rc = PC_GRPC_FRAME_OK;
    zs.next_in = (Bytef *)(uintptr_t)in;
    for (;;) {
        /* avail_in/avail_out are 32-bit; hand over large buffers in slices. */
        if (zs.avail_in == 0 && in_left > 0) {
            zs.avail_in = (uInt)min_size(in_left, UINT_MAX);
            in_left -= zs.avail_in;
        }
        size_t lim = min_size(*cap, max_out);
        if (have == lim && lim < max_out) {
            size_t ncap = *cap ? *cap * 2 : (inlen > max_out / 4 ? max_out : inlen * 4);
            if (ncap < FIRST_ALLOC) ncap = FIRST_ALLOC;
            if (ncap > max_out || ncap < *cap) ncap = max_out;
            uint8_t *nb = realloc(*buf, ncap);
            if (!nb) {
                pc__errf(err, errlen, "out of memory decompressing message");
                rc = PC_GRPC_FRAME_TOO_LARGE;
                break;
            }
            *buf = nb;
            *cap = ncap;
            lim = ncap;
        }
        /* At the limit, inflate into a one-byte probe: any output there means the message is too big. */
        uint8_t probe;
        int probing = have == lim;
        zs.next_out = probing ? &probe : *buf + have;
        zs.avail_out = probing ? 1 : (uInt)min_size(lim - have, UINT_MAX);
        uInt out_before = zs.avail_out;
        int z = inflate(&zs, Z_NO_FLUSH);
        if (probing && zs.avail_out == 0) {
            pc__errf(err, errlen, "message decompresses to more than %zu bytes", max_out);
            rc = PC_GRPC_FRAME_TOO_LARGE;
            break;
        }
        if (!probing) have += out_before - zs.avail_out;
        if (z == Z_STREAM_END) {
            if (zs.avail_in == 0 && in_left == 0) break;
            /* gzip allows concatenated members (gzip readers in gRPC libraries accept them). */
            if (enc == PC_GRPC_ENC_GZIP && inflateReset(&zs) == Z_OK) continue;
            pc__errf(err, errlen, "trailing data after compressed message");
            rc = PC_GRPC_FRAME_MALFORMED;
            break;
        }
        if (z == Z_OK || (z == Z_BUF_ERROR && zs.avail_out == 0)) continue;
        if (z == Z_BUF_ERROR) { /* room for output but no progress: the input ran out mid-stream */
            pc__errf(err, errlen, "truncated compressed message");
            rc = PC_GRPC_FRAME_MALFORMED;
        } else if (z == Z_MEM_ERROR) {
            pc__errf(err, errlen, "out of memory decompressing message");
            rc = PC_GRPC_FRAME_TOO_LARGE;
        } else {
            pc__errf(err, errlen, "corrupt compressed message");
            rc = PC_GRPC_FRAME_MALFORMED;
        }
        break;
    }
    inflateEnd(&zs);
    *outlen = have;
    return rc;
}

int pc__grpc_decompress(pc_grpc_encoding enc, const uint8_t *in, size_t inlen, size_t max_out, uint8_t **out,
                        size_t *outlen, char *err, size_t errlen)
{
    *out = NULL;
    *outlen = 0;
    if (enc == PC_GRPC_ENC_UNKNOWN) {
        pc__errf(err, errlen, "unsupported grpc-encoding");
        return PC_GRPC_FRAME_UNSUPPORTED;
    }
    if (enc == PC_GRPC_ENC_IDENTITY) {
        if (inlen > max_out) {
            pc__errf(err, errlen, "message of %zu bytes exceeds the limit of %zu", inlen, max_out);
            return PC_GRPC_FRAME_TOO_LARGE;
        }
        uint8_t *b = malloc(inlen ? inlen : 1);
        if (!b) {
            pc__errf(err, errlen, "out of memory decompressing message");
            return PC_GRPC_FRAME_TOO_LARGE;
        }
        if (inlen) memcpy(b, in, inlen);
        *out = b;
        *outlen = inlen;
        return PC_GRPC_FRAME_OK;
    }
    uint8_t *b = NULL;
    size_t cap = 0, n = 0;
    int rc = inflate_into(enc, in, inlen, max_out, &b, &cap, &n, err, errlen);
    if (rc == PC_GRPC_FRAME_OK && !b && !(b = malloc(1))) { /* callers always get something to free */
        pc__errf(err, errlen, "out of memory decompressing message");
        rc = PC_GRPC_FRAME_TOO_LARGE;
    }
    if (rc != PC_GRPC_FRAME_OK) {
        free(b);
        return rc;
    }
    *out = b;
    *outlen = n;
    return PC_GRPC_FRAME_OK;
}

void pc__grpc_framer_init(pc_grpc_framer *f, pc_grpc_encoding enc, size_t max_message_bytes)
{
    memset(f, 0, sizeof *f);
    f->encoding = enc;
    /* Keeps prefix + payload sizes from overflowing where size_t is 32 bits. */
    f->max_message_bytes =
        max_message_bytes > SIZE_MAX - PREFIX_LEN ? SIZE_MAX - PREFIX_LEN : max_message_bytes;
}

void pc__grpc_framer_free(pc_grpc_framer *f)
{
    free(f->buf);
    free(f->scratch);
    pc__grpc_framer_init(f, f->encoding, f->max_message_bytes);
}

/* While buffering, buf holds the prefix followed by the payload so far, so buf_have counts both. */
size_t pc__grpc_framer_buffered(const pc_grpc_framer *f)
{
    return f->prefix_have < PREFIX_LEN ? f->prefix_have : f->buf_have;
}

static int fail(pc_grpc_framer *f, int rc)
{
    f->failed = rc;
    return rc;
}

/* Validates a complete prefix as soon as it is known, before any payload is buffered. */
static int check_prefix(pc_grpc_framer *f, const uint8_t *p, char *err, size_t errlen)
{
    if (p[0] > 1) {
        pc__errf(err, errlen, "invalid gRPC frame flag 0x%02x%s", p[0],
                 p[0] == 0x80 ? " (a gRPC-Web trailer frame, which only answers carry)" : "");
        return PC_GRPC_FRAME_MALFORMED;
    }
    if (p[0] == 1 && f->encoding == PC_GRPC_ENC_IDENTITY) {
        pc__errf(err, errlen, "compressed message without grpc-encoding");
        return PC_GRPC_FRAME_MALFORMED;
    }
    if (p[0] == 1 && f->encoding != PC_GRPC_ENC_GZIP && f->encoding != PC_GRPC_ENC_DEFLATE) {
        pc__errf(err, errlen, "message compressed with an unsupported grpc-encoding");
        return PC_GRPC_FRAME_UNSUPPORTED;
    }
    uint32_t len = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
    if (len > f->max_message_bytes) {
        pc__errf(err, errlen, "message of %lu bytes exceeds the limit of %zu", (unsigned long)len,
                 f->max_message_bytes);
        return PC_GRPC_FRAME_TOO_LARGE;
    }
    f->need = len;
    return PC_GRPC_FRAME_OK;
}

static int deliver(pc_grpc_framer *f, const uint8_t *frame, size_t frame_len, pc_grpc_message_cb cb, void *ud,
                   char *err, size_t errlen)
{
    pc_grpc_message m = {
        .frame = frame,
        .frame_len = frame_len,
        .data = frame + PREFIX_LEN,
        .len = frame_len - PREFIX_LEN,
        .compressed = frame[0] == 1,
        .index = f->index++,
    };
    int rc = PC_GRPC_FRAME_OK;
    if (m.compressed) {
        rc = inflate_into(f->encoding, m.data, m.len, f->max_message_bytes, &f->scratch, &f->scratch_cap,
                          &m.len, err, errlen);
        if (f->scratch) /* NULL only when the output is empty */
            m.data = f->scratch;
    }
    if (rc == PC_GRPC_FRAME_OK && (rc = cb(ud, &m)) != 0)
        pc__errf(err, errlen, "message handler stopped the stream");
    if (f->scratch_cap > SCRATCH_KEEP) {
        free(f->scratch);
        f->scratch = NULL;
        f->scratch_cap = 0;
    }
    return rc;
}

/* Appends up to n payload bytes to the partial message (placing the prefix first), growing buf
 * geometrically but never past the frame size. Returns the bytes taken. */
static size_t buffer_payload(pc_grpc_framer *f, const uint8_t *p, size_t n, char *err, size_t errlen, int *rc)
{
    size_t total = PREFIX_LEN + f->need;
    size_t base = f->buf_have ? f->buf_have : PREFIX_LEN;
    size_t take = min_size(total - base, n);
    size_t want = base + take;
    if (want > f->buf_cap) {
        size_t ncap = f->buf_cap * 2;
        if (ncap < want) ncap = want;
        if (ncap < FIRST_ALLOC) ncap = FIRST_ALLOC;
        if (ncap > total) ncap = total;
        uint8_t *nb = realloc(f->buf, ncap);
        if (!nb) {
            pc__errf(err, errlen, "out of memory buffering message");
            *rc = PC_GRPC_FRAME_TOO_LARGE;
            return 0;
        }
        f->buf = nb;
        f->buf_cap = ncap;
    }
    if (f->buf_have == 0) memcpy(f->buf, f->prefix, PREFIX_LEN);
    memcpy(f->buf + base, p, take);
    f->buf_have = want;
    *rc = PC_GRPC_FRAME_OK;
    return take;
}

static void reset_partial(pc_grpc_framer *f)
{
    free(f->buf);
    f->buf = NULL;
    f->buf_have = f->buf_cap = 0;
    f->prefix_have = 0;
    f->need = 0;
}

int pc__grpc_framer_feed(pc_grpc_framer *f, const uint8_t *data, size_t len, pc_grpc_message_cb cb, void *ud,
                         char *err, size_t errlen)
{
    if (f->failed) {
        pc__errf(err, errlen, "stream already failed");
        return f->failed;
    }
    if (len == 0) return PC_GRPC_FRAME_OK;
    const uint8_t *p = data, *end = data + len;
    int rc;
    while (p < end) {
        size_t avail = (size_t)(end - p);
        if (f->prefix_have == 0 && avail >= PREFIX_LEN) {
            if ((rc = check_prefix(f, p, err, errlen)) != PC_GRPC_FRAME_OK) return fail(f, rc);
            size_t total = PREFIX_LEN + f->need;
            if (avail >= total) { /* whole message in this chunk: hand it over in place */
                if ((rc = deliver(f, p, total, cb, ud, err, errlen)) != 0) return fail(f, rc);
                p += total;
                continue;
            }
            memcpy(f->prefix, p, PREFIX_LEN);
            f->prefix_have = PREFIX_LEN;
            p += PREFIX_LEN;
        } else if (f->prefix_have < PREFIX_LEN) {
            size_t n = min_size(PREFIX_LEN - f->prefix_have, avail);
            memcpy(f->prefix + f->prefix_have, p, n);
            f->prefix_have += n;
            p += n;
            if (f->prefix_have < PREFIX_LEN) break;
            if ((rc = check_prefix(f, f->prefix, err, errlen)) != PC_GRPC_FRAME_OK) return fail(f, rc);
            if (f->need == 0) { /* an empty message completes with its prefix */
                rc = deliver(f, f->prefix, PREFIX_LEN, cb, ud, err, errlen);
                reset_partial(f);
                if (rc != 0) return fail(f, rc);
                continue;
            }
        }
        p += buffer_payload(f, p, (size_t)(end - p), err, errlen, &rc);
        if (rc != PC_GRPC_FRAME_OK) return fail(f, rc);
        if (f->buf_have == PREFIX_LEN + f->need) {
            rc = deliver(f, f->buf, f->buf_have, cb, ud, err, errlen);
            reset_partial(f);
            if (rc != 0) return fail(f, rc);
        }
    }
    return PC_GRPC_FRAME_OK;
}

int pc__grpc_framer_finish(pc_grpc_framer *f, char *err, size_t errlen)
{
    if (f->failed) {
        pc__errf(err, errlen, "stream already failed");
        return f->failed;
    }
    if (f->prefix_have == 0) return PC_GRPC_FRAME_OK;
    if (f->prefix_have < PREFIX_LEN)
        pc__errf(err, errlen, "stream ended inside a message prefix (%zu of 5 bytes)", f->prefix_have);
    else
        pc__errf(err, errlen, "stream ended inside a message (%zu of %zu bytes)", f->buf_have - PREFIX_LEN,
                 f->need);
    return fail(f, PC_GRPC_FRAME_MALFORMED);
}
