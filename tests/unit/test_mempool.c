/* Tests for the per-worker block cache: every size class and the large path keep their bytes and
 * alignment, freed blocks are reused (outside sanitizer builds), realloc keeps contents across
 * classes, the cache per class holds a burst and is bounded, and nghttp2 runs a real session on it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mempool.h"

#if defined(__SANITIZE_ADDRESS__)
#define CACHING 0
#else
#define CACHING 1
#endif

static void test_sizes_and_alignment(void **state)
{
    (void)state;
    pc_mempool p;
    pc__mempool_init(&p);
    static const size_t sizes[] = {0, 1, 15, 16, 17, 100, 1023, 1024, 1025, 1312, 4095, 4096, 4097, 100000};
    void *ptrs[sizeof sizes / sizeof sizes[0]];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        ptrs[i] = pc__mem_malloc(&p, sizes[i]);
        assert_non_null(ptrs[i]);
        assert_int_equal((uintptr_t)ptrs[i] % 16, 0);
        memset(ptrs[i], (int)i + 1, sizes[i]);
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (size_t k = 0; k < sizes[i]; k++)
            if (((unsigned char *)ptrs[i])[k] != (unsigned char)(i + 1))
                fail_msg("block of %zu bytes overwritten at %zu", sizes[i], k);
        pc__mem_free(&p, ptrs[i]);
    }
    pc__mem_free(&p, NULL);
    pc__mempool_destroy(&p);
}

static void test_reuse_and_calloc(void **state)
{
    (void)state;
    pc_mempool p;
    pc__mempool_init(&p);
    unsigned char *a = pc__mem_malloc(&p, 200);
    memset(a, 0xab, 200);
    pc__mem_free(&p, a);
    unsigned char *b = pc__mem_calloc(&p, 10, 20); /* same class: the block comes back, zeroed */
    if (CACHING) assert_ptr_equal(a, b);
    for (int i = 0; i < 200; i++)
        assert_int_equal(b[i], 0);
    pc__mem_free(&p, b);
    assert_null(pc__mem_calloc(&p, SIZE_MAX / 2, 4)); /* overflow */
    pc__mempool_destroy(&p);
}

static void test_realloc_keeps_contents(void **state)
{
    (void)state;
    pc_mempool p;
    pc__mempool_init(&p);
    unsigned char *b = pc__mem_realloc(&p, NULL, 10);
    assert_non_null(b);
    for (int i = 0; i < 10; i++)
        b[i] = (unsigned char)i;
    size_t sizes[] = {12, 40, 900, 5000, 300000, 64};
    size_t have = 10;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        b = pc__mem_realloc(&p, b, sizes[s]);
        assert_non_null(b);
        size_t keep = have < sizes[s] ? have : sizes[s];
        for (size_t i = 0; i < keep; i++)
            if (b[i] != (unsigned char)i) fail_msg("byte %zu lost growing to %zu", i, sizes[s]);
        for (size_t i = keep; i < sizes[s]; i++)
            b[i] = (unsigned char)i;
        have = sizes[s];
    }
    assert_null(pc__mem_realloc(&p, b, 0)); /* frees */
    pc__mempool_destroy(&p);
}

/* Without a pool the same calls are malloc and free (rules test and other offline users). */
static void test_no_pool(void **state)
{
    (void)state;
    unsigned char *b = pc__mem_malloc(NULL, 100);
    assert_non_null(b);
    memset(b, 7, 100);
    b = pc__mem_realloc(NULL, b, 5000);
    assert_non_null(b);
    assert_int_equal(b[99], 7);
    pc__mem_free(NULL, b);
    unsigned char *z = pc__mem_calloc(NULL, 4, 8);
    assert_non_null(z);
    assert_int_equal(z[31], 0);
    pc__mem_free(NULL, z);
}

static void test_cache_is_bounded(void **state)
{
    (void)state;
    pc_mempool p;
    pc__mempool_init(&p);
    enum { N = 6000 };
    void **v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++)
        v[i] = pc__mem_malloc(&p, 1000);
    for (int i = 0; i < N; i++)
        pc__mem_free(&p, v[i]);
    unsigned c = (1000 - 1) / 16;
    /* 6000 blocks of 1008 bytes freed: at most 4 MiB of them stay cached, and a burst of 2,000
     * (the blocks of a few hundred calls) is all kept. */
    assert_true(p.nfree[c] * 1008u <= (4u << 20));
    if (CACHING) assert_true(p.nfree[c] >= 2000);
    /* The same for a class of the larger steps: 1312 bytes round up to 1536. */
    for (int i = 0; i < N; i++)
        v[i] = pc__mem_malloc(&p, 1312);
    for (int i = 0; i < N; i++)
        pc__mem_free(&p, v[i]);
    unsigned big = PC_MEMPOOL_SMALL + (1312 - 1024 - 1) / 256;
    assert_true(p.nfree[big] * 1536u <= (4u << 20));
    if (CACHING) assert_true(p.nfree[big] >= 2000);
    free(v);
    pc__mempool_destroy(&p);
    assert_int_equal(p.nfree[c], 0);
    assert_int_equal(p.nfree[big], 0);
}

/* A client and a server session allocating from one pool exchange a request and a response. */
static uint8_t wire[65536];
static size_t wire_len;

static ssize_t to_wire(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)s;
    (void)flags;
    (void)ud;
    assert_true(wire_len + len <= sizeof wire);
    memcpy(wire + wire_len, data, len);
    wire_len += len;
    return (ssize_t)len;
}

static int got_headers;

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if (f->hd.type == NGHTTP2_HEADERS && nghttp2_session_get_stream_user_data(s, f->hd.stream_id) == NULL) {
        got_headers++;
        if (!nghttp2_session_check_server_session(s)) return 0;
        nghttp2_nv nv[] = {{(uint8_t *)":status", (uint8_t *)"200", 7, 3, 0}};
        assert_int_equal(nghttp2_submit_response(s, f->hd.stream_id, nv, 1, NULL), 0);
    }
    return 0;
}

static void pump(nghttp2_session *from, nghttp2_session *to)
{
    wire_len = 0;
    assert_int_equal(nghttp2_session_send(from), 0);
    assert_int_equal(nghttp2_session_mem_recv(to, wire, wire_len), (ssize_t)wire_len);
}

static void test_nghttp2_sessions(void **state)
{
    (void)state;
    pc_mempool p;
    pc__mempool_init(&p);
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, to_wire);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session *client, *server;
    assert_int_equal(nghttp2_session_client_new3(&client, cb, NULL, NULL, &p.nghttp2), 0);
    assert_int_equal(nghttp2_session_server_new3(&server, cb, NULL, NULL, &p.nghttp2), 0);
    nghttp2_session_callbacks_del(cb);
    assert_int_equal(nghttp2_submit_settings(client, 0, NULL, 0), 0);
    assert_int_equal(nghttp2_submit_settings(server, 0, NULL, 0), 0);
    for (int i = 0; i < 50; i++) {
        nghttp2_nv nv[] = {{(uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0},
                           {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
                           {(uint8_t *)":path", (uint8_t *)"/x", 5, 2, 0},
                           {(uint8_t *)":authority", (uint8_t *)"example.com", 10, 11, 0}};
        assert_true(nghttp2_submit_request(client, NULL, nv, 4, NULL, NULL) > 0);
        pump(client, server);
        pump(server, client);
    }
    assert_int_equal(got_headers, 100); /* 50 requests seen by the server, 50 responses by the client */
    nghttp2_session_del(client);
    nghttp2_session_del(server);
    pc__mempool_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_and_alignment),    cmocka_unit_test(test_reuse_and_calloc),
        cmocka_unit_test(test_realloc_keeps_contents), cmocka_unit_test(test_no_pool),
        cmocka_unit_test(test_cache_is_bounded),       cmocka_unit_test(test_nghttp2_sessions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
