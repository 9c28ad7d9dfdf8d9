/* libFuzzer target for the client fingerprint parsers: the input goes, as TLS records and as an HTTP/2
 * preface, through the incremental ClientHello capture and the HTTP/2 parser, whole and split at the points
 * the first two bytes pick; both splits must give the same outcome. The ClientHello body parser also gets
 * the input directly. Seeds are real first flights of curl, openssl s_client, grpcio, h2load and nghttp. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fingerprint.h"

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) __builtin_trap();                                                                          \
    } while (0)

/* Feeds data in pieces of `step` bytes (0: at once); returns the final state and copies the result. */
static int hello_run(const uint8_t *data, size_t size, size_t step, pc_fp_tls *out)
{
    pc_fp_hello *h = pc__fp_hello_new();
    CHECK(h);
    int rv = PC_FP_MORE;
    if (!step) step = size ? size : 1;
    for (size_t off = 0; off < size; off += step)
        rv = pc__fp_hello_feed(h, data + off, size - off < step ? size - off : step);
    const pc_fp_tls *r = pc__fp_hello_result(h);
    CHECK((rv == PC_FP_DONE) == (r != NULL));
    if (r) {
        *out = *r;
        CHECK(memchr(r->ja4, '\0', sizeof r->ja4) && memchr(r->ja3, '\0', sizeof r->ja3));
        CHECK(strlen(r->ja4) == 36 && strlen(r->ja3_hash) == 32);
    }
    pc__fp_hello_free(h);
    return rv;
}

static int h2_run(const uint8_t *data, size_t size, size_t step, char *out, size_t outlen)
{
    pc_fp_h2 *p = pc__fp_h2_new();
    CHECK(p);
    int rv = PC_FP_MORE;
    if (!step) step = size ? size : 1;
    for (size_t off = 0; off < size; off += step)
        rv = pc__fp_h2_feed(p, data + off, size - off < step ? size - off : step);
    const char *r = pc__fp_h2_result(p);
    CHECK((rv == PC_FP_DONE) == (r != NULL));
    out[0] = '\0';
    if (r) {
        CHECK(strlen(r) < PC_FP_H2_MAX && strlen(r) < outlen);
        strcpy(out, r);
    }
    pc__fp_h2_free(p);
    return rv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t step = (size_t)data[0] % 64 + 1;
    int h2_preface = data[1] & 1;
    data += 2;
    size -= 2;

    pc_fp_tls a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    int ra = hello_run(data, size, 0, &a);
    int rb = hello_run(data, size, step, &b);
    CHECK(ra == rb);
    if (ra == PC_FP_DONE)
        CHECK(!strcmp(a.ja4, b.ja4) && !strcmp(a.ja3, b.ja3) && !strcmp(a.ja3_hash, b.ja3_hash));

    pc_fp_tls direct;
    if (pc__fp_client_hello(data, size, &direct) == 0) CHECK(strlen(direct.ja4) == 36);

    /* Without the preface the parser stops at once; prepending it lets the frames be explored. */
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    uint8_t *buf = malloc(size + 24);
    CHECK(buf);
    size_t n = 0;
    if (h2_preface) {
        memcpy(buf, preface, 24);
        n = 24;
    }
    if (size) memcpy(buf + n, data, size);
    n += size;
    char x[PC_FP_H2_MAX], y[PC_FP_H2_MAX];
    int hx = h2_run(buf, n, 0, x, sizeof x);
    int hy = h2_run(buf, n, step, y, sizeof y);
    CHECK(hx == hy && !strcmp(x, y));
    free(buf);
    return 0;
}
