/* Tests for client fingerprinting: JA3 and JA4 against the published test vectors (ClientHellos built here
 * to carry exactly the vectors' fields, with GREASE added where clients put it), every split of the records,
 * malformed and truncated input, the SSL ex_data glue, and the Akamai HTTP/2 fingerprint of frames built
 * with nghttp2's own HPACK encoder (the vectors of nghttp and curl). Ends with a timing of both parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "fingerprint.h"

/* ---- building ClientHellos ---- */

typedef struct buf {
    uint8_t b[8192];
    size_t n;
} buf;

static void put8(buf *b, unsigned v)
{
    b->b[b->n++] = (uint8_t)v;
}
static void put16(buf *b, unsigned v)
{
    put8(b, v >> 8);
    put8(b, v & 0xff);
}
static void putn(buf *b, const void *p, size_t n)
{
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void patch16(buf *b, size_t at, size_t v)
{
    b->b[at] = (uint8_t)(v >> 8);
    b->b[at + 1] = (uint8_t)v;
}

typedef struct ext {
    unsigned type;
    uint8_t data[256];
    size_t len;
} ext;

static ext ext_u16list(unsigned type, const unsigned *v, size_t n, int len_bytes)
{
    ext e = {.type = type};
    size_t body = 2 * n;
    if (len_bytes == 2) {
        e.data[e.len++] = (uint8_t)(body >> 8);
        e.data[e.len++] = (uint8_t)body;
    } else {
        e.data[e.len++] = (uint8_t)body;
    }
    for (size_t i = 0; i < n; i++) {
        e.data[e.len++] = (uint8_t)(v[i] >> 8);
        e.data[e.len++] = (uint8_t)v[i];
    }
    return e;
}

static ext ext_alpn(const char *const *protos, size_t n)
{
    ext e = {.type = 0x0010};
    e.len = 2;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(protos[i]);
        e.data[e.len++] = (uint8_t)l;
        memcpy(e.data + e.len, protos[i], l);
        e.len += l;
    }
    e.data[0] = (uint8_t)((e.len - 2) >> 8);
    e.data[1] = (uint8_t)(e.len - 2);
    return e;
}

static ext ext_sni(const char *host)
{
    ext e = {.type = 0x0000};
    size_t l = strlen(host);
    uint8_t *d = e.data;
    d[0] = 0, d[1] = (uint8_t)(l + 3), d[2] = 0, d[3] = 0, d[4] = (uint8_t)l;
    memcpy(d + 5, host, l);
    e.len = l + 5;
    return e;
}

static ext ext_raw(unsigned type, const void *data, size_t len)
{
    ext e = {.type = type, .len = len};
    memcpy(e.data, data, len);
    return e;
}

/* A ClientHello body (no handshake header). */
static buf hello_body(unsigned version, const unsigned *ciphers, size_t nc, const ext *exts, size_t ne)
{
    buf b = {.n = 0};
    put16(&b, version);
    for (int i = 0; i < 32; i++)
        put8(&b, (unsigned)i * 7);
    put8(&b, 32);
    for (int i = 0; i < 32; i++)
        put8(&b, 0xab);
    put16(&b, 2 * nc);
    for (size_t i = 0; i < nc; i++)
        put16(&b, ciphers[i]);
    put8(&b, 1);
    put8(&b, 0);
    size_t at = b.n;
    put16(&b, 0);
    for (size_t i = 0; i < ne; i++) {
        put16(&b, exts[i].type);
        put16(&b, exts[i].len);
        putn(&b, exts[i].data, exts[i].len);
    }
    patch16(&b, at, b.n - at - 2);
    return b;
}

/* The body as handshake message in TLS records of at most `frag` bytes each. */
static buf records_of(const buf *body, size_t frag)
{
    buf hs = {.n = 0};
    put8(&hs, 1);
    put8(&hs, (unsigned)(body->n >> 16));
    put16(&hs, body->n & 0xffff);
    putn(&hs, body->b, body->n);
    buf r = {.n = 0};
    for (size_t off = 0; off < hs.n; off += frag) {
        size_t n = hs.n - off < frag ? hs.n - off : frag;
        put8(&r, 22);
        put16(&r, 0x0301);
        put16(&r, n);
        putn(&r, hs.b + off, n);
    }
    return r;
}

/* ---- the vectors ---- */

/* JA3's reference vector: 769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0. */
static buf ja3_vector_hello(void)
{
    static const unsigned ciphers[] = {0x0a0a, 47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4};
    static const unsigned groups[] = {0x2a2a, 23, 24, 25};
    static const uint8_t formats[] = {1, 0};
    ext exts[] = {ext_raw(0x1a1a, "", 0), ext_sni("example.com"), ext_u16list(0x000a, groups, 4, 2),
                  ext_raw(0x000b, formats, 2)};
    return hello_body(0x0301, ciphers, 13, exts, 4);
}

static void test_ja3_vector(void **state)
{
    (void)state;
    buf b = ja3_vector_hello();
    pc_fp_tls fp;
    assert_int_equal(pc__fp_client_hello(b.b, b.n, &fp), 0);
    assert_string_equal(fp.ja3, "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0");
    assert_string_equal(fp.ja3_hash, "ada70206e40642a3e4461f35503241d5");
}

/* The JA4 specification's example: ciphers and extensions in the original order given there, plus GREASE. */
static buf ja4_spec_hello(bool with_sigalgs, bool sigalgs_empty)
{
    static const unsigned ciphers[] = {0x3a3a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030,
                                       0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035};
    static const unsigned versions[] = {0x7a7a, 0x0304, 0x0303};
    static const unsigned sigalgs[] = {0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601};
    static const unsigned groups[] = {0x8a8a, 0x001d, 0x0017, 0x0018};
    static const char *const alpn[] = {"h2", "http/1.1"};
    static const uint8_t formats[] = {1, 0};
    ext exts[20];
    size_t n = 0;
    exts[n++] = ext_raw(0xcaca, "", 0);
    exts[n++] = ext_raw(0x001b, "\x02\x00\x02", 3);
    exts[n++] = ext_sni("example.com");
    exts[n++] = ext_raw(0x0033, "\x00\x00", 2);
    exts[n++] = ext_alpn(alpn, 2);
    exts[n++] = ext_raw(0x4469, "\x00\x03\x02h2", 5);
    exts[n++] = ext_raw(0x0017, "", 0);
    exts[n++] = ext_raw(0x002d, "\x01\x01", 2);
    if (with_sigalgs)
        exts[n++] = sigalgs_empty ? ext_u16list(0x000d, sigalgs, 0, 2) : ext_u16list(0x000d, sigalgs, 8, 2);
    exts[n++] = ext_raw(0x0005, "\x01\x00\x00\x00\x00", 5);
    exts[n++] = ext_raw(0x0023, "", 0);
    exts[n++] = ext_raw(0x0012, "", 0);
    exts[n++] = ext_u16list(0x002b, versions, 3, 1);
    exts[n++] = ext_raw(0xff01, "\x00", 1);
    exts[n++] = ext_raw(0x000b, formats, 2);
    exts[n++] = ext_u16list(0x000a, groups, 4, 2);
    exts[n++] = ext_raw(0x0015, "\x00\x00\x00", 3);
    exts[n++] = ext_raw(0xdada, "\x00", 1);
    return hello_body(0x0303, ciphers, 16, exts, n);
}

static void test_ja4_spec_vector(void **state)
{
    (void)state;
    buf b = ja4_spec_hello(true, false);
    pc_fp_tls fp;
    assert_int_equal(pc__fp_client_hello(b.b, b.n, &fp), 0);
    /* 15 ciphers and 16 extensions without GREASE; the hashes are the spec's two vectors. */
    assert_string_equal(fp.ja4, "t13d1516h2_8daaf6152771_e5627efa2ab1");
    /* JA3 keeps the wire order and decimal values, also without GREASE. */
    assert_string_equal(fp.ja3,
                        "771,4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,"
                        "27-0-51-16-17513-23-45-13-5-35-18-43-65281-11-10-21,29-23-24,0");
}

static void test_ja4_without_signature_algorithms(void **state)
{
    (void)state;
    /* The spec's third vector: the extension list alone, no "_", hashes to 6d807ffa2a79. */
    buf b = ja4_spec_hello(true, true);
    pc_fp_tls fp;
    assert_int_equal(pc__fp_client_hello(b.b, b.n, &fp), 0);
    assert_string_equal(fp.ja4, "t13d1516h2_8daaf6152771_6d807ffa2a79");
}

static void test_ja4_fields(void **state)
{
    (void)state;
    static const unsigned ciphers[] = {0xc02f, 0x002f};
    pc_fp_tls fp;
    /* TLS 1.2 without supported_versions, no SNI, no ALPN: "t12i0200", ALPN "00". */
    buf b = hello_body(0x0303, ciphers, 2, NULL, 0);
    assert_int_equal(pc__fp_client_hello(b.b, b.n, &fp), 0);
    assert_memory_equal(fp.ja4, "t12i020000_", 11);
    /* Nothing to hash in the extension part: twelve zeros. */
    assert_string_equal(fp.ja4 + 24, "000000000000");
    assert_string_equal(fp.ja3, "771,49199-47,,,");

    /* ALPN http/1.1 -> "h1"; a binary ALPN value -> its first and last hex digits. */
    static const char *const h1[] = {"http/1.1"};
    ext e1[] = {ext_alpn(h1, 1)};
    b = hello_body(0x0303, ciphers, 2, e1, 1);
    assert_int_equal(pc__fp_client_hello(b.b, b.n, &fp), 0);
    assert_memory_equal(fp.ja4, "t12i0201h1_", 11);
    static const char *const bin[] = {"\xab\x01\xcd"};
    ext e2[] = {ext_alpn(bin, 1)};
    b = hello_body(0x0303, ciphers, 2, e2, 1);
    assert_int_equal(pc__fp_client_hello(b.b, b.n, &fp), 0);
    assert_memory_equal(fp.ja4, "t12i0201ad_", 11);
    /* An empty ALPN list counts the extension but gives "00". */
    ext e3[] = {ext_alpn(NULL, 0)};
    b = hello_body(0x0303, ciphers, 2, e3, 1);
    assert_int_equal(pc__fp_client_hello(b.b, b.n, &fp), 0);
    assert_memory_equal(fp.ja4, "t12i020100_", 11);
    /* Only GREASE in supported_versions: the legacy version stands. */
    static const unsigned gv[] = {0x1a1a};
    ext e4[] = {ext_u16list(0x002b, gv, 1, 1)};
    b = hello_body(0x0301, ciphers, 2, e4, 1);
    assert_int_equal(pc__fp_client_hello(b.b, b.n, &fp), 0);
    assert_memory_equal(fp.ja4, "t10i0201", 8);
}

static void test_counts_cap_at_99(void **state)
{
    (void)state;
    unsigned ciphers[300];
    for (unsigned i = 0; i < 300; i++)
        ciphers[i] = 0x1000 + i;
    buf b = hello_body(0x0303, ciphers, 300, NULL, 0);
    pc_fp_tls fp;
    assert_int_equal(pc__fp_client_hello(b.b, b.n, &fp), 0);
    assert_memory_equal(fp.ja4, "t12i9900", 8);
    /* The JA3 string does not fit the field: left empty, while its hash covers all of it. */
    assert_string_equal(fp.ja3, "");
    assert_int_equal(strlen(fp.ja3_hash), 32);
}

static void test_malformed_hellos(void **state)
{
    (void)state;
    buf b = ja4_spec_hello(true, false);
    pc_fp_tls fp;
    /* Every truncation is refused and never read past (each copy is exactly as long, for ASan), except the
     * one that ends right before the extensions: a ClientHello without extensions is well-formed. */
    const size_t no_ext = 2 + 32 + 1 + 32 + 2 + 2 * 16 + 2;
    for (size_t n = 0; n < b.n; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, b.b, n);
        int rv = pc__fp_client_hello(copy, n, &fp);
        free(copy);
        if (n == no_ext) {
            assert_int_equal(rv, 0);
            assert_memory_equal(fp.ja4, "t12i150000_", 11);
            continue;
        }
        assert_int_equal(rv, -1);
        assert_string_equal(fp.ja4, "");
    }
    /* Bytes after the extensions. */
    buf t = b;
    put8(&t, 0);
    assert_int_equal(pc__fp_client_hello(t.b, t.n, &fp), -1);
    /* A session id longer than 32. */
    buf s = b;
    s.b[34] = 33;
    assert_int_equal(pc__fp_client_hello(s.b, s.n, &fp), -1);
    /* An odd cipher list length. */
    static const uint8_t odd[] = {
        3, 3, [34] = 0, [35] = 0, [36] = 3, [37] = 0, [38] = 0x2f, [39] = 0, [40] = 1, [41] = 0};
    assert_int_equal(pc__fp_client_hello(odd, sizeof odd, &fp), -1);
}

static void test_records_any_split(void **state)
{
    (void)state;
    buf body = ja4_spec_hello(true, false);
    size_t frags[] = {16384, 100, 7, 1};
    for (size_t f = 0; f < sizeof frags / sizeof frags[0]; f++) {
        buf rec = records_of(&body, frags[f]);
        for (size_t step = 1; step <= rec.n; step = step * 2 + 1) {
            pc_fp_hello *h = pc__fp_hello_new();
            int rv = PC_FP_MORE;
            for (size_t off = 0; off < rec.n; off += step)
                rv = pc__fp_hello_feed(h, rec.b + off, rec.n - off < step ? rec.n - off : step);
            assert_int_equal(rv, PC_FP_DONE);
            assert_string_equal(pc__fp_hello_result(h)->ja4, "t13d1516h2_8daaf6152771_e5627efa2ab1");
            /* The rest of the handshake is ignored. */
            assert_int_equal(pc__fp_hello_feed(h, (const uint8_t *)"\x14\x03\x03\x00\x01\x01", 6),
                             PC_FP_DONE);
            pc__fp_hello_free(h);
        }
    }
}

static void test_records_refused(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        uint8_t bytes[12];
        size_t n;
    } cases[] = {
        {"application data record", {23, 3, 3, 0, 5, 1, 0, 0, 1, 0}, 10},
        {"SSLv2 hello", {0x80, 0x2e, 1, 3, 1}, 5},
        {"empty record", {22, 3, 1, 0, 0}, 5},
        {"record over 2^14", {22, 3, 1, 0x40, 1}, 5},
        {"not a ClientHello", {22, 3, 1, 0, 4, 2, 0, 0, 40}, 9},
        {"ClientHello over the cap", {22, 3, 1, 0, 4, 1, 1, 0, 0}, 9},
        {"ClientHello too short to be one", {22, 3, 1, 0, 4, 1, 0, 0, 10}, 9},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pc_fp_hello *h = pc__fp_hello_new();
        int rv = pc__fp_hello_feed(h, cases[i].bytes, cases[i].n);
        if (rv != PC_FP_FAIL) fail_msg("%s: %d", cases[i].what, rv);
        assert_null(pc__fp_hello_result(h));
        pc__fp_hello_free(h);
    }
    /* A well-formed record holding a malformed ClientHello. */
    buf body = ja4_spec_hello(true, false);
    body.b[34] = 200;
    buf rec = records_of(&body, 16384);
    pc_fp_hello *h = pc__fp_hello_new();
    assert_int_equal(pc__fp_hello_feed(h, rec.b, rec.n), PC_FP_FAIL);
    pc__fp_hello_free(h);
    /* Freed half way. */
    h = pc__fp_hello_new();
    assert_int_equal(pc__fp_hello_feed(h, rec.b, rec.n / 2), PC_FP_MORE);
    pc__fp_hello_free(h);
}

static void test_ssl_glue(void **state)
{
    (void)state;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    buf body = ja3_vector_hello();
    buf rec = records_of(&body, 50);
    pc_fp_tls fp;

    SSL *ssl = SSL_new(ctx);
    assert_int_equal(pc__fp_ssl_take(ssl, &fp), -1); /* nothing fed */
    pc__fp_ssl_feed(ssl, rec.b, 20);
    pc__fp_ssl_feed(ssl, rec.b + 20, rec.n - 20);
    assert_int_equal(pc__fp_ssl_take(ssl, &fp), 0);
    assert_string_equal(fp.ja3_hash, "ada70206e40642a3e4461f35503241d5");
    assert_int_equal(pc__fp_ssl_take(ssl, &fp), -1); /* taken: freed */
    SSL_free(ssl);

    /* A handshake that never completes: the capture goes with the SSL object (checked by LeakSanitizer). */
    ssl = SSL_new(ctx);
    pc__fp_ssl_feed(ssl, rec.b, rec.n / 2);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

/* ---- HTTP/2 ---- */

static void frame(buf *b, unsigned type, unsigned flags, uint32_t sid, const void *p, size_t n)
{
    put8(b, (unsigned)(n >> 16));
    put16(b, n & 0xffff);
    put8(b, type);
    put8(b, flags);
    put16(b, sid >> 16);
    put16(b, sid & 0xffff);
    if (n) putn(b, p, n);
}

static size_t hpack(const char *const *names, size_t n, uint8_t *out, size_t cap)
{
    nghttp2_hd_deflater *d;
    assert_int_equal(nghttp2_hd_deflate_new(&d, 4096), 0);
    nghttp2_nv nv[16];
    for (size_t i = 0; i < n; i++) {
        const char *v = names[i][1] == 'm'   ? "GET"
                        : names[i][1] == 's' ? "https"
                        : names[i][1] == 'p' ? "/"
                                             : "a.test";
        nv[i] = (nghttp2_nv){(uint8_t *)names[i], (uint8_t *)v, strlen(names[i]), strlen(v),
                             NGHTTP2_NV_FLAG_NONE};
    }
    nv[n] = (nghttp2_nv){(uint8_t *)"user-agent", (uint8_t *)"t", 10, 1, NGHTTP2_NV_FLAG_NONE};
    ssize_t len = nghttp2_hd_deflate_hd(d, out, cap, nv, n + 1);
    assert_true(len > 0);
    nghttp2_hd_deflate_del(d);
    return (size_t)len;
}

static void settings(buf *b, const unsigned (*iv)[2], size_t n)
{
    uint8_t p[64];
    for (size_t i = 0; i < n; i++) {
        p[6 * i] = (uint8_t)(iv[i][0] >> 8), p[6 * i + 1] = (uint8_t)iv[i][0];
        for (int k = 0; k < 4; k++)
            p[6 * i + 2 + k] = (uint8_t)(iv[i][1] >> (24 - 8 * k));
    }
    frame(b, 4, 0, 0, p, 6 * n);
}

static void u32be(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (uint8_t)(v >> (24 - 8 * k));
}

static void priority(buf *b, uint32_t sid, int excl, uint32_t dep, unsigned weight)
{
    uint8_t p[5];
    u32be(p, dep | (excl ? 0x80000000u : 0));
    p[4] = (uint8_t)(weight - 1);
    frame(b, 2, 0, sid, p, 5);
}

/* What nghttp 1.52 sends: SETTINGS, its five PRIORITY frames (a dependency tree), no WINDOW_UPDATE. */
static buf nghttp_preface(void)
{
    buf b = {.n = 0};
    putn(&b, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    static const unsigned iv[][2] = {{3, 100}, {4, 65535}};
    settings(&b, iv, 2);
    priority(&b, 3, 0, 0, 201);
    priority(&b, 5, 0, 0, 101);
    priority(&b, 7, 0, 0, 1);
    priority(&b, 9, 0, 7, 1);
    priority(&b, 11, 0, 3, 1);
    static const char *const order[] = {":method", ":path", ":scheme", ":authority"};
    uint8_t hb[256];
    size_t hl = hpack(order, 4, hb, sizeof hb);
    /* HEADERS with the PRIORITY flag: its 5 bytes are not part of the block. */
    uint8_t pay[300];
    u32be(pay, 11);
    pay[4] = 15;
    memcpy(pay + 5, hb, hl);
    frame(&b, 1, 0x4 | 0x1 | 0x20, 13, pay, hl + 5);
    return b;
}

static char *h2_feed_all(const buf *b, size_t step, int *rv)
{
    pc_fp_h2 *p = pc__fp_h2_new();
    *rv = PC_FP_MORE;
    for (size_t off = 0; off < b->n; off += step)
        *rv = pc__fp_h2_feed(p, b->b + off, b->n - off < step ? b->n - off : step);
    const char *r = pc__fp_h2_result(p);
    char *out = r ? strdup(r) : NULL;
    pc__fp_h2_free(p);
    return out;
}

static void test_h2_nghttp_vector(void **state)
{
    (void)state;
    buf b = nghttp_preface();
    for (size_t step = 1; step <= b.n; step = step * 2 + 1) {
        int rv;
        char *r = h2_feed_all(&b, step, &rv);
        assert_int_equal(rv, PC_FP_DONE);
        assert_string_equal(r, "3:100;4:65535|00|3:0:0:201,5:0:0:101,7:0:0:1,9:0:7:1,11:0:3:1|m,p,s,a");
        free(r);
    }
}

/* curl 7.88.1: SETTINGS, a connection WINDOW_UPDATE, then HEADERS split into CONTINUATION, padded. */
static void test_h2_curl_vector_with_continuation_and_padding(void **state)
{
    (void)state;
    buf b = {.n = 0};
    putn(&b, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    static const unsigned iv[][2] = {{3, 100}, {4, 33554432}, {2, 0}};
    settings(&b, iv, 3);
    uint8_t wu[4];
    u32be(wu, 33488897);
    frame(&b, 8, 0, 0, wu, 4);
    u32be(wu, 1000); /* a stream-level one and a second connection-level one are not part of the format */
    frame(&b, 8, 0, 0, wu, 4);
    frame(&b, 4, 1, 0, NULL, 0);       /* SETTINGS ACK */
    frame(&b, 6, 0, 0, "12345678", 8); /* PING: skipped */
    static const char *const order[] = {":method", ":path", ":scheme", ":authority"};
    uint8_t hb[256];
    size_t hl = hpack(order, 4, hb, sizeof hb);
    uint8_t pay[300];
    pay[0] = 3; /* pad length */
    memcpy(pay + 1, hb, 4);
    memset(pay + 5, 0, 3);
    frame(&b, 1, 0x1 | 0x8, 1, pay, 8);
    frame(&b, 9, 0, 1, hb + 4, 3);
    frame(&b, 9, 0x4, 1, hb + 7, hl - 7);
    for (size_t step = 1; step <= b.n; step = step * 3 + 1) {
        int rv;
        char *r = h2_feed_all(&b, step, &rv);
        assert_int_equal(rv, PC_FP_DONE);
        assert_string_equal(r, "3:100;4:33554432;2:0|33488897|0|m,p,s,a");
        free(r);
    }
}

static void test_h2_refused(void **state)
{
    (void)state;
    int rv;
    /* Not the preface. */
    buf b = {.n = 0};
    putn(&b, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27);
    assert_null(h2_feed_all(&b, 5, &rv));
    assert_int_equal(rv, PC_FP_FAIL);
    /* Too many frames before HEADERS. */
    b.n = 0;
    putn(&b, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    for (int i = 0; i < 100; i++)
        frame(&b, 6, 0, 0, "12345678", 8);
    assert_null(h2_feed_all(&b, 100, &rv));
    assert_int_equal(rv, PC_FP_FAIL);
    /* A frame larger than the initial SETTINGS_MAX_FRAME_SIZE. */
    b.n = 0;
    putn(&b, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x40\x01\x00\x00\x00\x00\x00\x01", 33);
    assert_null(h2_feed_all(&b, 1, &rv));
    assert_int_equal(rv, PC_FP_FAIL);
    /* A frame between HEADERS and its CONTINUATION. */
    b.n = 0;
    putn(&b, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    frame(&b, 1, 0, 1, "\x82", 1);
    frame(&b, 6, 0, 0, "12345678", 8);
    assert_null(h2_feed_all(&b, 1, &rv));
    assert_int_equal(rv, PC_FP_FAIL);
    /* Padding longer than the frame. */
    b.n = 0;
    putn(&b, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    frame(&b, 1, 0x4 | 0x8, 1, "\x09\x82", 2);
    assert_null(h2_feed_all(&b, 1, &rv));
    assert_int_equal(rv, PC_FP_FAIL);
    /* A header block that is not HPACK. */
    b.n = 0;
    putn(&b, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    frame(&b, 1, 0x4, 1, "\xff\xff\xff\xff\xff\xff", 6);
    assert_null(h2_feed_all(&b, 1, &rv));
    assert_int_equal(rv, PC_FP_FAIL);
    /* A SETTINGS frame whose length is not a multiple of 6. */
    b.n = 0;
    putn(&b, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
    frame(&b, 4, 0, 0, "\x00\x03\x00\x00\x00", 5);
    assert_null(h2_feed_all(&b, 1, &rv));
    assert_int_equal(rv, PC_FP_FAIL);
    /* Incomplete: more is wanted, nothing is produced. */
    buf full = nghttp_preface();
    full.n -= 3;
    assert_null(h2_feed_all(&full, 7, &rv));
    assert_int_equal(rv, PC_FP_MORE);
}

/* ---- cost ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_cost(void **state)
{
    (void)state;
    buf body = ja4_spec_hello(true, false);
    buf rec = records_of(&body, 16384);
    buf pre = nghttp_preface();
    enum { N = 20000 };
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        pc_fp_hello *h = pc__fp_hello_new();
        assert_int_equal(pc__fp_hello_feed(h, rec.b, rec.n), PC_FP_DONE);
        pc__fp_hello_free(h);
    }
    double t1 = now_s();
    for (int i = 0; i < N; i++) {
        pc_fp_h2 *p = pc__fp_h2_new();
        assert_int_equal(pc__fp_h2_feed(p, pre.b, pre.n), PC_FP_DONE);
        pc__fp_h2_free(p);
    }
    double t2 = now_s();
    printf("# cost per connection: ClientHello %.2f us (JA3 + JA4), HTTP/2 preface %.2f us\n",
           (t1 - t0) * 1e6 / N, (t2 - t1) * 1e6 / N);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ja3_vector),
        cmocka_unit_test(test_ja4_spec_vector),
        cmocka_unit_test(test_ja4_without_signature_algorithms),
        cmocka_unit_test(test_ja4_fields),
        cmocka_unit_test(test_counts_cap_at_99),
        cmocka_unit_test(test_malformed_hellos),
        cmocka_unit_test(test_records_any_split),
        cmocka_unit_test(test_records_refused),
        cmocka_unit_test(test_ssl_glue),
        cmocka_unit_test(test_h2_nghttp_vector),
        cmocka_unit_test(test_h2_curl_vector_with_continuation_and_padding),
        cmocka_unit_test(test_h2_refused),
        cmocka_unit_test(test_cost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
