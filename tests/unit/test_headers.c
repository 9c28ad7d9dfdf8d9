/* Header lists (core/headers.c): fields copied into arena blocks, looked up in any case, removed by
 * exact name, sizes counted as RFC 9113 does, handed over, freed; with and without the worker's block
 * cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headers.h"

static void test_add_find_get(void **state)
{
    (void)state;
    pc_headers h = {0};
    char name[] = "content-type", value[] = "application/grpc";
    assert_int_equal(pc__headers_add(&h, (const uint8_t *)name, strlen(name), (const uint8_t *)value, 16), 0);
    /* The list holds copies: the caller's buffers may change. */
    memset(name, 'x', strlen(name));
    memset(value, 'y', strlen(value));
    assert_int_equal(pc__headers_add_str(&h, ":path", "/pkg.Svc/Call"), 0);
    assert_int_equal(h.n, 2);
    assert_string_equal(pc__headers_get(&h, "content-type"), "application/grpc");
    /* Lookups ignore case; the value is NUL-terminated for C callers. */
    const nghttp2_nv *nv = pc__headers_find(&h, "Content-Type");
    assert_non_null(nv);
    assert_int_equal(nv->valuelen, 16);
    assert_int_equal(nv->value[16], '\0');
    assert_null(pc__headers_find(&h, "content"));
    assert_null(pc__headers_get(&h, "te"));
    assert_int_equal(h.bytes, (12 + 16 + 32) + (5 + 13 + 32));
    pc__headers_free(&h);
    assert_int_equal(h.n, 0);
    assert_int_equal(h.bytes, 0);
    assert_null(h.nv);
}

static void test_many_and_large(void **state)
{
    (void)state;
    pc_mempool mem;
    pc__mempool_init(&mem);
    pc_headers h = {.mem = &mem};
    /* More fields than the first array holds, and a value larger than an arena block. */
    char name[16], value[32];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "x-h%d", i);
        snprintf(value, sizeof value, "v%d", i);
        assert_int_equal(pc__headers_add_str(&h, name, value), 0);
    }
    size_t big = 5000;
    char *large = malloc(big + 1);
    memset(large, 'a', big);
    large[big] = '\0';
    assert_int_equal(pc__headers_add_str(&h, "x-large", large), 0);
    assert_int_equal(h.n, 101);
    assert_string_equal(pc__headers_get(&h, "x-h0"), "v0");
    assert_string_equal(pc__headers_get(&h, "x-h99"), "v99");
    assert_int_equal(strlen(pc__headers_get(&h, "x-large")), big);
    /* Earlier values stay where they were as the list grows. */
    const char *v42 = pc__headers_get(&h, "x-h42");
    assert_int_equal(pc__headers_add_str(&h, "x-more", "m"), 0);
    assert_ptr_equal(pc__headers_get(&h, "x-h42"), v42);
    free(large);
    pc__headers_free(&h);
    assert_ptr_equal(h.mem, &mem); /* the list keeps its block cache */
    pc__mempool_destroy(&mem);
}

static void test_remove(void **state)
{
    (void)state;
    pc_headers h = {0};
    pc__headers_add_str(&h, "a", "1");
    pc__headers_add_str(&h, "x-tag", "first");
    pc__headers_add_str(&h, "b", "2");
    pc__headers_add_str(&h, "x-tag", "second");
    const char *b = pc__headers_get(&h, "b");
    size_t before = h.bytes;
    pc__headers_remove(&h, "x-tag");
    assert_int_equal(h.n, 2);
    assert_null(pc__headers_get(&h, "x-tag"));
    assert_int_equal(h.bytes, before - 2 * (5 + 32) - 5 - 6);
    /* The others keep their order and their storage. */
    assert_string_equal((const char *)h.nv[0].name, "a");
    assert_string_equal((const char *)h.nv[1].name, "b");
    assert_ptr_equal(pc__headers_get(&h, "b"), b);
    /* Removal matches names exactly, as HTTP/2 sends them. */
    pc__headers_remove(&h, "A");
    assert_int_equal(h.n, 2);
    pc__headers_free(&h);
}

static void test_take(void **state)
{
    (void)state;
    pc_mempool mem;
    pc__mempool_init(&mem);
    pc_headers from = {.mem = &mem};
    pc__headers_add_str(&from, ":method", "GET");
    const char *v = pc__headers_get(&from, ":method");
    pc_headers to = pc__headers_take(&from);
    assert_int_equal(from.n, 0);
    assert_null(from.nv);
    assert_ptr_equal(from.mem, &mem);
    assert_int_equal(to.n, 1);
    assert_ptr_equal(pc__headers_get(&to, ":method"), v); /* moved, not copied */
    pc__headers_free(&from);
    pc__headers_free(&to);
    pc__mempool_destroy(&mem);
}

static void test_name_ok(void **state)
{
    (void)state;
    assert_true(pc__headers_name_ok("x-request-id"));
    assert_false(pc__headers_name_ok("X-Request-Id"));
    assert_false(pc__headers_name_ok(":path"));
    assert_false(pc__headers_name_ok(""));
    assert_false(pc__headers_name_ok("a b"));
    assert_false(pc__headers_name_ok("a\x7f"));
    assert_false(pc__headers_name_ok(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_find_get), cmocka_unit_test(test_many_and_large),
        cmocka_unit_test(test_remove),       cmocka_unit_test(test_take),
        cmocka_unit_test(test_name_ok),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
