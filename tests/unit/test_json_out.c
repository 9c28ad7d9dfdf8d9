/* Tests for the access log's JSON writer: every byte value and random strings come out exactly as
 * yajl's generator writes them (the log's lines mean what they meant), whole objects with nested
 * maps, numbers, booleans and nulls match yajl's, json-c parses them back, durations are rounded
 * to the microsecond, and writing past the buffer is reported, never done. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <yajl/yajl_gen.h>

#include "json_out.h"

static yajl_gen new_gen(void)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    yajl_gen_config(g, yajl_gen_beautify, 0);
    return g;
}

static void assert_same(pc_json *j, yajl_gen g)
{
    const unsigned char *y;
    size_t ylen;
    assert_int_equal(yajl_gen_get_buf(g, &y, &ylen), yajl_gen_status_ok);
    assert_false(j->overflow);
    if (j->len != ylen || memcmp(j->buf, y, ylen) != 0)
        fail_msg("ours: %.*s\nyajl: %.*s", (int)j->len, j->buf, (int)ylen, (const char *)y);
}

static void test_every_byte(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        char s[3] = {'a', (char)c, 'z'};
        char buf[64];
        pc_json j;
        pc__json_init(&j, buf, sizeof buf);
        pc__json_str(&j, s, sizeof s);
        yajl_gen g = new_gen();
        yajl_gen_string(g, (const unsigned char *)s, sizeof s);
        assert_same(&j, g);
        yajl_gen_free(g);
    }
}

static void test_random_strings(void **state)
{
    (void)state;
    srand(16);
    static const char alphabet[] = "ab\"\\/\n\r\t\b\f\x01\x1f\x7f\xc3\xa9 {}:,";
    for (int round = 0; round < 2000; round++) {
        char s[64];
        size_t n = (size_t)(rand() % (int)sizeof s);
        for (size_t i = 0; i < n; i++)
            s[i] = alphabet[rand() % (int)(sizeof alphabet - 1)];
        char buf[512];
        pc_json j;
        pc__json_init(&j, buf, sizeof buf);
        pc__json_str(&j, s, n);
        yajl_gen g = new_gen();
        yajl_gen_string(g, (const unsigned char *)s, n);
        assert_same(&j, g);
        yajl_gen_free(g);
    }
}

static void test_object_like_yajl(void **state)
{
    (void)state;
    char buf[1024];
    pc_json j;
    pc__json_init(&j, buf, sizeof buf);
    yajl_gen g = new_gen();

    pc__json_open(&j);
    yajl_gen_map_open(g);
    PC_JSON_KEY(&j, "time");
    yajl_gen_string(g, (const unsigned char *)"time", 4);
    pc__json_str(&j, "2026-12-05T10:00:00.123Z", 24);
    yajl_gen_string(g, (const unsigned char *)"2026-12-05T10:00:00.123Z", 24);
    pc__json_key(&j, "status", 6);
    yajl_gen_string(g, (const unsigned char *)"status", 6);
    pc__json_uint(&j, 200);
    yajl_gen_number(g, "200", 3);
    pc__json_key(&j, "zero", 4);
    yajl_gen_string(g, (const unsigned char *)"zero", 4);
    pc__json_uint(&j, 0);
    yajl_gen_number(g, "0", 1);
    pc__json_key(&j, "big", 3);
    yajl_gen_string(g, (const unsigned char *)"big", 3);
    pc__json_uint(&j, UINT64_MAX);
    yajl_gen_number(g, "18446744073709551615", 20);
    pc__json_key(&j, "reason", 6);
    yajl_gen_string(g, (const unsigned char *)"reason", 6);
    pc__json_null(&j);
    yajl_gen_null(g);
    pc__json_key(&j, "plugins", 7);
    yajl_gen_string(g, (const unsigned char *)"plugins", 7);
    pc__json_open(&j);
    yajl_gen_map_open(g);
    pc__json_key(&j, "bot.score", 9);
    yajl_gen_string(g, (const unsigned char *)"bot.score", 9);
    pc__json_number(&j, "0.25", 4);
    yajl_gen_number(g, "0.25", 4);
    pc__json_key(&j, "k\"ey", 4);
    yajl_gen_string(g, (const unsigned char *)"k\"ey", 4);
    pc__json_bool(&j, true);
    yajl_gen_bool(g, 1);
    pc__json_key(&j, "off", 3);
    yajl_gen_string(g, (const unsigned char *)"off", 3);
    pc__json_bool(&j, false);
    yajl_gen_bool(g, 0);
    pc__json_close(&j);
    yajl_gen_map_close(g);
    PC_JSON_KEY(&j, "after");
    yajl_gen_string(g, (const unsigned char *)"after", 5);
    pc__json_str(&j, "x", 1);
    yajl_gen_string(g, (const unsigned char *)"x", 1);
    pc__json_close(&j);
    yajl_gen_map_close(g);
    assert_same(&j, g);
    yajl_gen_free(g);

    /* and it parses back */
    char *text = strndup(buf, j.len);
    json_object *o = json_tokener_parse(text);
    assert_non_null(o);
    json_object *v;
    assert_true(json_object_object_get_ex(o, "status", &v));
    assert_int_equal(json_object_get_int(v), 200);
    assert_true(json_object_object_get_ex(o, "plugins", &v));
    json_object *k;
    assert_true(json_object_object_get_ex(v, "k\"ey", &k));
    assert_true(json_object_get_boolean(k));
    json_object_put(o);
    free(text);
}

static void test_milliseconds(void **state)
{
    (void)state;
    static const struct {
        uint64_t ns;
        const char *text;
    } cases[] = {{0, "0.000"},
                 {499, "0.000"},
                 {500, "0.001"},
                 {1234567, "1.235"},
                 {999999499, "999.999"},
                 {999999500, "1000.000"},
                 {12000000000, "12000.000"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        pc_json j;
        pc__json_init(&j, buf, sizeof buf);
        pc__json_ms(&j, cases[i].ns);
        assert_int_equal(j.len, strlen(cases[i].text));
        assert_memory_equal(buf, cases[i].text, j.len);
    }
}

static void test_overflow(void **state)
{
    (void)state;
    char buf[16];
    memset(buf, 'X', sizeof buf);
    pc_json j;
    pc__json_init(&j, buf, 10);
    pc__json_open(&j);
    pc__json_key(&j, "key", 3);
    assert_false(j.overflow);
    pc__json_str(&j, "a long value", 12);
    assert_true(j.overflow);
    assert_true(j.len <= 10);
    pc__json_close(&j);
    assert_true(j.overflow);
    for (size_t i = 10; i < sizeof buf; i++)
        assert_int_equal(buf[i], 'X'); /* nothing written past the given size */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_byte),       cmocka_unit_test(test_random_strings),
        cmocka_unit_test(test_object_like_yajl), cmocka_unit_test(test_milliseconds),
        cmocka_unit_test(test_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
