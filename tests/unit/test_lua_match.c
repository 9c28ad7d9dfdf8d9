/* Tests for the Lua page-rule patterns (plugins/lua/match.c): wildcards, captures, host case, the
 * query string, IPv6 hosts, and the patterns refused at load. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../plugins/lua/match.c"

/* Matches `authority` + `path` against `pattern`; the captures joined with '|' into out. */
static bool try_match(const char *pattern, const char *authority, const char *path, char *out, size_t outlen)
{
    lr_pattern p;
    char err[256];
    assert_int_equal(lr_pattern_compile(pattern, &p, err, sizeof err), 0);
    lr_span caps[LR_MAX_CAPTURES];
    bool ok = lr_pattern_match(&p, authority, lr_host_len(authority), path, strlen(path), caps);
    out[0] = '\0';
    for (unsigned i = 0; ok && i < p.ncaptures; i++)
        snprintf(out + strlen(out), outlen - strlen(out), "%s%.*s", i ? "|" : "", (int)caps[i].len,
                 caps[i].s);
    lr_pattern_free(&p);
    return ok;
}

static void expect(const char *pattern, const char *authority, const char *path, const char *captures)
{
    char got[512];
    bool ok = try_match(pattern, authority, path, got, sizeof got);
    if (!captures) {
        if (ok) fail_msg("%s should not match %s%s", pattern, authority, path);
        return;
    }
    if (!ok) fail_msg("%s should match %s%s", pattern, authority, path);
    assert_string_equal(got, captures);
}

static void test_literals_and_wildcards(void **state)
{
    (void)state;
    expect("api.example.com/admin.v1.AdminService/*", "api.example.com", "/admin.v1.AdminService/List",
           "List");
    expect("api.example.com/admin.v1.AdminService/*", "api.example.com", "/admin.v1.AdminService/", "");
    expect("api.example.com/admin.v1.AdminService/*", "www.example.com", "/admin.v1.AdminService/List", NULL);
    expect("api.example.com/admin.v1.AdminService/*", "api.example.com", "/admin.v1.Other/List", NULL);
    expect("*/shop.v1.Orders/Refund", "shop.example.com", "/shop.v1.Orders/Refund", "shop.example.com");
    expect("*/shop.v1.Orders/Refund", "shop.example.com", "/shop.v1.Orders/RefundAll", NULL);
    expect("*", "anything.test", "/x/y", "anything.test");
    expect("*.example.com/*", "a.b.example.com", "/p", "a.b|p");
    expect("*.example.com/*", "example.com", "/p", NULL);
    /* The path wildcard spans '/', the host wildcard stays in the host. */
    expect("*/a/*/z", "h", "/a/b/c/z", "h|b/c");
    expect("*/a/*/z", "h", "/a/z", NULL);
    /* Earlier wildcards take as little as they can. */
    expect("h/*-*", "h", "/a-b-c", "a|b-c");
    expect("h/*x*x*", "h", "/axbxcx", "a|b|cx");
    expect("h/**", "h", "/abc", "|abc");
}

static void test_host_case_port_ipv6(void **state)
{
    (void)state;
    expect("API.Example.com/*", "api.example.COM:8443", "/x", "x");
    expect("[::1]/*", "[::1]:443", "/x", "x");
    expect("*/x", "[::1]", "/x", "[::1]");
    assert_int_equal(lr_host_len("example.com:8443"), 11);
    assert_int_equal(lr_host_len("[2001:db8::1]:443"), 13);
    assert_int_equal(lr_host_len("[2001:db8::1"), 12);
}

static void test_query(void **state)
{
    (void)state;
    expect("h/search", "h", "/search?q=1", "");
    expect("h/search*", "h", "/search?q=1", "");
    expect("h/search?q=*", "h", "/search?q=1", "1");
    expect("h/search?q=*", "h", "/search", NULL);
    /* A host-only pattern matches every path. */
    expect("h", "h", "/anything?x", "");
    expect("h", "other", "/anything", NULL);
}

static void refused(const char *pattern, const char *why)
{
    lr_pattern p;
    char err[256];
    assert_int_equal(lr_pattern_compile(pattern, &p, err, sizeof err), -1);
    if (!strstr(err, why)) fail_msg("%s: \"%s\" lacks \"%s\"", pattern, err, why);
}

static void test_refused(void **state)
{
    (void)state;
    refused("", "empty pattern");
    refused("https://api.example.com/*", "no scheme");
    refused("/admin/*", "starts with the host");
    refused("api.example.com:443/*", "no port");
    refused("api.example.com/a b", "spaces");
    refused("h/*****************", "at most 16 wildcards");
    lr_pattern p;
    char err[256];
    assert_int_equal(lr_pattern_compile("h/****************", &p, err, sizeof err), 0);
    assert_int_equal(p.ncaptures, 16);
    lr_pattern_free(&p);
}

/* Long subjects stay cheap: the matcher is O(pattern * subject), never exponential. */
static void test_no_blowup(void **state)
{
    (void)state;
    static char path[65536];
    path[0] = '/';
    memset(path + 1, 'a', sizeof path - 2);
    path[sizeof path - 1] = '\0';
    expect("h/*a*a*a*a*a*a*a*a*b", "h", path, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literals_and_wildcards),
        cmocka_unit_test(test_host_case_port_ipv6),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_no_blowup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
