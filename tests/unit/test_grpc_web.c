/* gRPC-Web request decoding (core/grpc_web.c): the content types, and -text bodies decoded the same
 * however they are cut into chunks, with padding at the end of any chunk; bad base64 refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_web.h"

static void test_content_types(void **state)
{
    (void)state;
    bool text = true;
    assert_int_equal(pc__grpc_web_content_type("application/grpc-web", &text), 1);
    assert_false(text);
    assert_int_equal(pc__grpc_web_content_type("application/grpc-web+proto", &text), 1);
    assert_false(text);
    assert_int_equal(pc__grpc_web_content_type("Application/GRPC-Web-Text+proto", &text), 1);
    assert_true(text);
    assert_int_equal(pc__grpc_web_content_type("application/grpc-web-text; charset=utf-8", &text), 1);
    assert_true(text);
    assert_int_equal(pc__grpc_web_content_type("application/grpc", &text), 0);
    assert_int_equal(pc__grpc_web_content_type("application/grpc-webx", &text), 0);
    assert_int_equal(pc__grpc_web_content_type(NULL, &text), 0);
}

/* Feed `in` cut at the given offsets; the decoded bytes, appended to out. -1 on a refusal. */
static int feed(pc_grpc_web *w, const uint8_t *in, size_t len, const size_t *cuts, size_t ncuts, uint8_t *out,
                size_t *outlen)
{
    char err[128];
    size_t from = 0;
    *outlen = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        const uint8_t *d = in + from;
        size_t n = to - from;
        if (pc__grpc_web_request_data(w, &d, &n, err, sizeof err) < 0) return -1;
        memcpy(out + *outlen, d, n);
        *outlen += n;
        from = to;
    }
    return pc__grpc_web_request_end(w, err, sizeof err);
}

static void test_text_any_cut(void **state)
{
    (void)state;
    /* Two writes of a client, each base64'd on its own: padding in the middle of the body. */
    const uint8_t a[] = {0, 0, 0, 0, 11, 'h', 'e', 'l', 'l'}; /* 9 bytes: no padding */
    const uint8_t b[] = {'o', ' ', 'w', 'o', 'r', 'l', 'd'};  /* 7 bytes: "==" */
    const uint8_t c[] = {0, 0, 0, 0, 1, '!'};                 /* 6 bytes: none */
    const uint8_t d[] = {0, 0, 0, 0, 0};                      /* 5 bytes: "=" */
    const uint8_t *parts[] = {a, b, c, d};
    size_t sizes[] = {sizeof a, sizeof b, sizeof c, sizeof d};
    uint8_t body[128], want[64];
    size_t blen = 0, wlen = 0;
    for (size_t i = 0; i < 4; i++) {
        blen += (size_t)EVP_EncodeBlock(body + blen, parts[i], (int)sizes[i]);
        memcpy(want + wlen, parts[i], sizes[i]);
        wlen += sizes[i];
    }
    assert_non_null(memchr(body, '=', blen - 1)); /* padding before the end */
    uint8_t out[128];
    size_t olen;
    for (size_t i = 0; i <= blen; i++)
        for (size_t j = i; j <= blen; j++) {
            pc_grpc_web *w = pc__grpc_web_new(true);
            size_t cuts[] = {i, j};
            assert_int_equal(feed(w, body, blen, cuts, 2, out, &olen), 0);
            assert_int_equal(olen, wlen);
            assert_memory_equal(out, want, wlen);
            pc__grpc_web_free(w);
        }
}

static void test_text_refused(void **state)
{
    (void)state;
    const char *bad[] = {"AAA$", "A=AA", "AA=A", "====", "AAAAA===", "AA\nA"};
    uint8_t out[64];
    size_t olen;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pc_grpc_web *w = pc__grpc_web_new(true);
        assert_int_equal(feed(w, (const uint8_t *)bad[i], strlen(bad[i]), NULL, 0, out, &olen), -1);
        pc__grpc_web_free(w);
    }
    /* Cut short: the request end says so. */
    pc_grpc_web *w = pc__grpc_web_new(true);
    assert_int_equal(feed(w, (const uint8_t *)"AAAAAA", 6, NULL, 0, out, &olen), -1);
    assert_int_equal(olen, 3);
    pc__grpc_web_free(w);
}

static void test_binary_passes(void **state)
{
    (void)state;
    pc_grpc_web *w = pc__grpc_web_new(false);
    const uint8_t in[] = {0, 0, 0, 0, 2, 'h', 'i'};
    uint8_t out[16];
    size_t olen;
    assert_int_equal(feed(w, in, sizeof in, NULL, 0, out, &olen), 0);
    assert_int_equal(olen, sizeof in);
    assert_memory_equal(out, in, sizeof in);
    pc__grpc_web_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_types),
        cmocka_unit_test(test_text_any_cut),
        cmocka_unit_test(test_text_refused),
        cmocka_unit_test(test_binary_passes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
