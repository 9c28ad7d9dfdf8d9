/* Zone selection (core/zone_select.c): the host part of an authority (port dropped, IPv6 brackets
 * kept, truncated to the buffer) and the zone that serves it, wildcards and no match included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "zone_select.h"

static void expect_host(const char *authority, const char *want)
{
    char host[256];
    size_t n = pc__zone_host(authority, host, sizeof host);
    assert_string_equal(host, want);
    assert_int_equal(n, strlen(want));
}

static void test_host_part(void **state)
{
    (void)state;
    expect_host("api.example", "api.example");
    expect_host("api.example:8443", "api.example");
    expect_host("[2001:db8::1]:443", "[2001:db8::1]");
    expect_host("[::1]", "[::1]");
    expect_host("[::1", "[::1"); /* unclosed: taken whole */
    expect_host("", "");
    expect_host(NULL, "");
    char small[5];
    assert_int_equal(pc__zone_host("abcdefgh:1", small, sizeof small), 4);
    assert_string_equal(small, "abcd");
}

static const char *conf = "listen: [{address: \"127.0.0.1:8080\"}]\n"
                          "origins: [{name: o, servers: [\"127.0.0.1:1\"]}]\n"
                          "zones:\n"
                          "  - {name: api, hosts: [api.example, \"*.svc.example\"], origin: o}\n"
                          "  - {name: v6, hosts: [\"[2001:db8::1]\"], origin: o}\n";

static void test_select(void **state)
{
    (void)state;
    pc_config *cfg = NULL;
    char err[512], host[256];
    assert_int_equal(pc__config_load_buffer("t.yaml", conf, strlen(conf), ".", &cfg, err, sizeof err), 0);
    const pc_zone_conf *z = pc__zone_select(cfg, "api.example:443", host, sizeof host);
    assert_non_null(z);
    assert_string_equal(z->name, "api");
    assert_string_equal(host, "api.example");
    z = pc__zone_select(cfg, "a.b.svc.example", host, sizeof host);
    assert_non_null(z);
    assert_string_equal(z->name, "api");
    z = pc__zone_select(cfg, "[2001:db8::1]:8443", host, sizeof host);
    assert_non_null(z);
    assert_string_equal(z->name, "v6");
    /* No zone: the host looked up is there for the answer's message. */
    assert_null(pc__zone_select(cfg, "other.example:80", host, sizeof host));
    assert_string_equal(host, "other.example");
    assert_null(pc__zone_select(cfg, NULL, host, sizeof host));
    pc__config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_part),
        cmocka_unit_test(test_select),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
