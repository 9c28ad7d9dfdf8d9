/* Typed configuration: a complete file with every key, the defaults, each kind of error with its exact
 * "file:line:col: path: message" text, warnings, and which zone serves a host. Fixtures are written to
 * a fresh temporary directory that each test runs in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

typedef struct fixture {
    char dir[512];       /* as created */
    char real[PATH_MAX]; /* canonical, as resolved paths in the config use it */
    int oldcwd;
} fixture;

static const char *const fixture_files[] = {
    "conf.yaml",       "certs/edge.pem",  "certs/edge.key",
    "certs/other.pem", "certs/other.key", "certs/origin-ca.pem",
};

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/pc_config_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fx->dir) || !realpath(fx->dir, fx->real)) return -1;
    fx->oldcwd = open(".", O_RDONLY | O_DIRECTORY);
    if (fx->oldcwd < 0 || chdir(fx->dir) != 0 || mkdir("certs", 0700) != 0) return -1;
    /* Only existence and readability are checked at load time, so placeholder contents do. */
    for (size_t i = 1; i < sizeof fixture_files / sizeof fixture_files[0]; i++)
        write_file(fixture_files[i], "placeholder\n");
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    for (size_t i = 0; i < sizeof fixture_files / sizeof fixture_files[0]; i++)
        unlink(fixture_files[i]);
    int rc = rmdir("certs");
    if (fchdir(fx->oldcwd) != 0) rc = -1;
    close(fx->oldcwd);
    if (rmdir(fx->dir) != 0) rc = -1;
    free(fx);
    return rc;
}

static pc_config *load_ok(const char *text)
{
    char err[1024] = "";
    pc_config *cfg = NULL;
    write_file("conf.yaml", text);
    int rc = pc__config_load("conf.yaml", &cfg, err, sizeof err);
    if (rc != 0) fail_msg("unexpected error: %s", err);
    assert_non_null(cfg);
    return cfg;
}

static void expect_error(const char *text, const char *want)
{
    char err[1024] = "";
    pc_config *cfg = (pc_config *)1;
    write_file("conf.yaml", text);
    assert_int_equal(pc__config_load("conf.yaml", &cfg, err, sizeof err), -1);
    assert_null(cfg);
    assert_string_equal(err, want);
}

static const char *full_fmt =
    "workers: 2\n"
    "listen:\n"
    "  - address: \"0.0.0.0:443\"\n"
    "    tls:\n"
    "      certificates:\n"
    "        - { cert: certs/edge.pem, key: certs/edge.key }\n"
    "        - cert: %s/certs/other.pem\n"
    "          key: certs/other.key\n"
    "  - address: \"[::1]:8080\"\n"
    "origins:\n"
    "  - name: orders\n"
    "    servers: [\"127.0.0.1:50051\", \"Origin.internal:50052\", \"[fd00::1]:443\"]\n"
    "    tls: { verify: yes, ca: certs/origin-ca.pem, sni: orders.internal }\n"
    "    connect_timeout_ms: 1500\n"
    "    max_connections: 8\n"
    "    max_pending: 0\n"
    "    cooldown_ms: 0\n"
    "    access: { protected: true, grpc: deny }\n"
    "  - name: billing\n"
    "    servers: [\"billing:9000\"]\n"
    "    tls: { verify: off }\n"
    "  - name: spare\n"
    "    servers: [\"spare:1\"]\n"
    "zones:\n"
    "  - name: example.com\n"
    "    hosts: [\"Example.COM\", \"*.example.com\"]\n"
    "    origin: orders\n"
    "    grpc: false\n"
    "    max_message_bytes: 1073741824\n"
    "    plugins: [x]\n"
    "  - name: billing\n"
    "    hosts: [billing.example.com]\n"
    "    origin: billing\n"
    "log: { access: logs/access.log, level: debug }\n"
    "limits:\n"
    "  max_concurrent_streams: 50\n"
    "  max_header_list_bytes: 32768\n"
    "  stream_window_bytes: 65535\n"
    "  connection_window_bytes: 2147483647\n"
    "  handshake_timeout_ms: 5000\n"
    "  header_timeout_ms: 6000\n"
    "  idle_timeout_ms: 7000\n"
    "  send_timeout_ms: 8000\n"
    "  glitch_limit: 0\n"
    "  max_connections_per_client: 7\n"
    "plugin_dir: plugins\n"
    "plugins: [{ name: x, config: { any: [thing] }, on_error: continue }]\n"
    "admin: { address: \"127.0.0.1:9901\" }\n"
    "drain_timeout_ms: 30000\n";

static void assert_path(const fixture *fx, const char *got, const char *rel)
{
    char want[PATH_MAX + 64];
    snprintf(want, sizeof want, "%s/%s", fx->real, rel);
    assert_non_null(got);
    assert_string_equal(got, want);
}

static void test_full_config(void **state)
{
    fixture *fx = *state;
    char text[8192];
    assert_true(snprintf(text, sizeof text, full_fmt, fx->real) < (int)sizeof text);
    pc_config *cfg = load_ok(text);

    assert_string_equal(cfg->path, "conf.yaml");
    assert_string_equal(cfg->dir, fx->real);
    assert_int_equal(cfg->workers, 2);

    assert_int_equal(cfg->nlisten, 2);
    pc_listen_conf *l = &cfg->listen[0];
    assert_string_equal(l->address, "0.0.0.0:443");
    assert_string_equal(l->host, "0.0.0.0");
    assert_int_equal(l->port, 443);
    assert_true(l->tls);
    assert_int_equal(l->ncerts, 2);
    assert_path(fx, l->certs[0].cert, "certs/edge.pem");
    assert_path(fx, l->certs[0].key, "certs/edge.key");
    assert_path(fx, l->certs[1].cert, "certs/other.pem"); /* absolute in the file, kept as is */
    assert_path(fx, l->certs[1].key, "certs/other.key");
    l = &cfg->listen[1];
    assert_string_equal(l->host, "::1");
    assert_int_equal(l->port, 8080);
    assert_false(l->tls);
    assert_int_equal(l->ncerts, 0);

    assert_int_equal(cfg->norigins, 3);
    pc_origin_conf *o = &cfg->origins[0];
    assert_string_equal(o->name, "orders");
    assert_int_equal(o->nservers, 3);
    assert_string_equal(o->servers[0].host, "127.0.0.1");
    assert_int_equal(o->servers[0].port, 50051);
    assert_string_equal(o->servers[1].host, "Origin.internal");
    assert_int_equal(o->servers[1].port, 50052);
    assert_string_equal(o->servers[2].host, "fd00::1");
    assert_int_equal(o->servers[2].port, 443);
    assert_true(o->tls);
    assert_true(o->tls_verify);
    assert_path(fx, o->tls_ca, "certs/origin-ca.pem");
    assert_string_equal(o->tls_sni, "orders.internal");
    assert_int_equal(o->connect_timeout_ms, 1500);
    assert_int_equal(o->max_connections, 8);
    assert_int_equal(o->max_pending, 0);
    assert_int_equal(o->cooldown_ms, 0);
    o = &cfg->origins[1];
    assert_string_equal(o->name, "billing");
    assert_true(o->tls);
    assert_false(o->tls_verify);
    assert_null(o->tls_ca);
    assert_null(o->tls_sni);
    assert_int_equal(o->connect_timeout_ms, 2000);
    assert_int_equal(o->max_connections, 4);
    assert_int_equal(o->max_pending, 1024);
    assert_int_equal(o->cooldown_ms, 5000);
    assert_false(cfg->origins[2].tls);

    assert_int_equal(cfg->nzones, 2);
    pc_zone_conf *z = &cfg->zones[0];
    assert_string_equal(z->name, "example.com");
    assert_int_equal(z->nhosts, 2);
    assert_string_equal(z->hosts[0], "example.com");
    assert_string_equal(z->hosts[1], "*.example.com");
    assert_string_equal(z->origin, "orders");
    assert_int_equal(z->origin_index, 0);
    assert_false(z->grpc);
    assert_int_equal(z->max_message_bytes, 1073741824);
    z = &cfg->zones[1];
    assert_int_equal(z->origin_index, 1);
    assert_true(z->grpc);
    assert_int_equal(z->max_message_bytes, 4194304);

    assert_path(fx, cfg->log.access, "logs/access.log");
    assert_int_equal(cfg->log.level, PC_LOG_DEBUG);
    assert_int_equal(cfg->limits.max_concurrent_streams, 50);
    assert_int_equal(cfg->limits.max_header_list_bytes, 32768);
    assert_int_equal(cfg->limits.stream_window_bytes, 65535);
    assert_int_equal(cfg->limits.connection_window_bytes, 2147483647);
    assert_int_equal(cfg->limits.handshake_timeout_ms, 5000);
    assert_int_equal(cfg->limits.header_timeout_ms, 6000);
    assert_int_equal(cfg->limits.idle_timeout_ms, 7000);
    assert_int_equal(cfg->limits.send_timeout_ms, 8000);
    assert_int_equal(cfg->limits.glitch_limit, 0);
    assert_int_equal(cfg->limits.max_connections_per_client, 7);

    assert_int_equal(cfg->nwarnings, 2);
    assert_string_equal(cfg->warnings[0],
                        "origins[1] (billing): tls.verify is false: the origin's certificate is not checked");
    assert_string_equal(cfg->warnings[1], "origins[2] (spare): no zone uses this origin");

    /* The tree stays available for subtrees read later (plugins, access rules). */
    assert_non_null(cfg->doc);
    const pc_yaml_node *admin = pc__yaml_get(cfg->doc->root, "admin");
    assert_non_null(admin);
    assert_string_equal(pc__yaml_get(admin, "address")->scalar, "127.0.0.1:9901");
    assert_string_equal(cfg->admin_host, "127.0.0.1");
    assert_int_equal(cfg->admin_port, 9901);
    assert_int_equal(cfg->nplugins, 1);
    assert_string_equal(cfg->plugins[0].name, "x");
    assert_true(cfg->plugins[0].on_error_continue);
    assert_non_null(cfg->plugins[0].config);
    assert_true(cfg->plugin_dir_set);
    assert_path(fx, cfg->plugin_dir, "plugins");
    assert_true(cfg->zones[0].has_plugins);
    assert_int_equal(cfg->zones[0].nplugins, 1);
    assert_string_equal(cfg->zones[0].plugins[0], "x");
    assert_false(cfg->zones[1].has_plugins);
    pc__config_free(cfg);
}

static const char *minimal = "listen:\n"
                             "  - address: \"127.0.0.1:8080\"\n"
                             "origins:\n"
                             "  - name: o\n"
                             "    servers: [\"127.0.0.1:1\"]\n"
                             "zones:\n"
                             "  - name: z\n"
                             "    hosts: [a.example]\n"
                             "    origin: o\n";

static void test_defaults(void **state)
{
    (void)state;
    pc_config *cfg = load_ok(minimal);
    assert_int_equal(cfg->workers, 0);
    assert_string_equal(cfg->log.access, "stdout");
    assert_int_equal(cfg->log.level, PC_LOG_INFO);
    assert_int_equal(cfg->limits.max_concurrent_streams, 100);
    assert_int_equal(cfg->limits.max_header_list_bytes, 65536);
    assert_int_equal(cfg->limits.stream_window_bytes, 262144);
    assert_int_equal(cfg->limits.connection_window_bytes, 1048576);
    assert_int_equal(cfg->limits.handshake_timeout_ms, 10000);
    assert_int_equal(cfg->limits.header_timeout_ms, 10000);
    assert_int_equal(cfg->limits.idle_timeout_ms, 300000);
    assert_false(cfg->listen[0].tls);
    assert_false(cfg->origins[0].tls);
    assert_true(cfg->origins[0].tls_verify);
    assert_true(cfg->zones[0].grpc);
    assert_int_equal(cfg->zones[0].max_message_bytes, 4194304);
    assert_int_equal(cfg->nwarnings, 0);
    pc__config_free(cfg);
}

/* Origins and zones may also be maps keyed by name, as in the shipped example file. */
static void test_keyed_form(void **state)
{
    (void)state;
    pc_config *cfg = load_ok("listen:\n"
                             "  - address: \"127.0.0.1:8080\"\n"
                             "origins:\n"
                             "  echo:\n"
                             "    servers: [\"127.0.0.1:50051\"]\n"
                             "    tls: { verify: false }\n"
                             "zones:\n"
                             "  example.com:\n"
                             "    hosts: [example.com]\n"
                             "    origin: echo\n"
                             "log: { access: stderr, level: warn }\n");
    assert_int_equal(cfg->norigins, 1);
    assert_string_equal(cfg->origins[0].name, "echo");
    assert_string_equal(cfg->zones[0].name, "example.com");
    assert_int_equal(cfg->zones[0].origin_index, 0);
    assert_string_equal(cfg->log.access, "stderr");
    assert_int_equal(cfg->log.level, PC_LOG_WARN);
    assert_int_equal(cfg->nwarnings, 1);
    assert_string_equal(cfg->warnings[0],
                        "origins.echo: tls.verify is false: the origin's certificate is not checked");
    pc__config_free(cfg);

    expect_error(
        "listen:\n"
        "  - address: \"127.0.0.1:8080\"\n"
        "origins:\n"
        "  echo:\n"
        "    name: echo\n"
        "    servers: [\"127.0.0.1:50051\"]\n"
        "zones: []\n",
        "conf.yaml:5:5: origins.echo.name: unknown key (valid keys: servers, tls, connect_timeout_ms, "
        "max_connections, max_pending, cooldown_ms, access)");
}

static void test_unknown_keys(void **state)
{
    (void)state;
    char text[1024];
    snprintf(text, sizeof text, "%sfrobnicate: 1\n", minimal);
    expect_error(text,
                 "conf.yaml:10:1: frobnicate: unknown key (valid keys: workers, listen, origins, zones, log, "
                 "limits, plugin_dir, plugins, admin, drain_timeout_ms, descriptors)");
    expect_error("listen:\n"
                 "  - address: \"127.0.0.1:8080\"\n"
                 "origins:\n"
                 "  - name: o\n"
                 "    servers: [\"127.0.0.1:1\"]\n"
                 "    conect_timeout_ms: 5\n",
                 "conf.yaml:6:5: origins[0].conect_timeout_ms: unknown key (valid keys: name, servers, tls, "
                 "connect_timeout_ms, max_connections, max_pending, cooldown_ms, access)");
    expect_error("listen:\n"
                 "  - address: \"127.0.0.1:8080\"\n"
                 "    tls:\n"
                 "      certificates: [{ cert: certs/edge.pem, key: certs/edge.key }]\n"
                 "      ciphers: strong\n",
                 "conf.yaml:5:7: listen[0].tls.ciphers: unknown key (valid keys: certificates)");
    snprintf(text, sizeof text, "%slimits: { max_streams: 5 }\n", minimal);
    expect_error(text,
                 "conf.yaml:10:11: limits.max_streams: unknown key (valid keys: max_concurrent_streams, "
                 "max_header_list_bytes, stream_window_bytes, connection_window_bytes, handshake_timeout_ms, "
                 "header_timeout_ms, idle_timeout_ms, send_timeout_ms, glitch_limit, "
                 "max_connections_per_client, max_held_bytes_per_client)");
    snprintf(text, sizeof text, "%s    \"bad key\": 1\n", minimal);
    expect_error(text,
                 "conf.yaml:10:5: zones[0].\"bad key\": unknown key (valid keys: name, hosts, origin, grpc, "
                 "grpc_web, cors, max_message_bytes, plugins)");
}

static void test_duplicate_key(void **state)
{
    (void)state;
    char text[1024];
    snprintf(text, sizeof text, "%s    origin: o\n", minimal);
    expect_error(text, "conf.yaml:10:5: duplicate key \"origin\" (first defined at 9:5)");
}

static void test_wrong_types(void **state)
{
    (void)state;
    char text[1024];
    expect_error("listen:\n"
                 "  - address: \"127.0.0.1:8080\"\n"
                 "origins:\n"
                 "  - name: o\n"
                 "    servers: [\"127.0.0.1:1\"]\n"
                 "    connect_timeout_ms: fast\n",
                 "conf.yaml:6:5: origins[0].connect_timeout_ms: expected a whole number of milliseconds, got "
                 "\"fast\"");
    snprintf(text, sizeof text, "workers: \"2\"\n%s", minimal);
    expect_error(text, "conf.yaml:1:1: workers: expected a whole number, got \"2\" (remove the quotes)");
    snprintf(text, sizeof text, "workers: 0x10\n%s", minimal);
    expect_error(text, "conf.yaml:1:1: workers: expected a whole number, got \"0x10\"");
    snprintf(text, sizeof text, "workers: -1\n%s", minimal);
    expect_error(text, "conf.yaml:1:1: workers: expected a whole number, got \"-1\"");
    snprintf(text, sizeof text, "workers: 99999999999999999999999\n%s", minimal);
    expect_error(text, "conf.yaml:1:1: workers: expected a whole number, got \"99999999999999999999999\"");
    snprintf(text, sizeof text, "workers: 18446744073709551616\n%s", minimal);
    expect_error(text, "conf.yaml:1:1: workers: must be between 0 and 1024, got 18446744073709551616");
    snprintf(text, sizeof text, "%slimits:\n  stream_window_bytes: 1000\n", minimal);
    expect_error(
        text, "conf.yaml:11:3: limits.stream_window_bytes: must be between 65535 and 2147483647, got 1000");
    snprintf(text, sizeof text, "%s    max_message_bytes: 1073741825\n", minimal);
    expect_error(
        text, "conf.yaml:10:5: zones[0].max_message_bytes: must be between 1 and 1073741824, got 1073741825");
    snprintf(text, sizeof text, "%s    grpc: maybe\n", minimal);
    expect_error(text, "conf.yaml:10:5: zones[0].grpc: expected true or false, got \"maybe\"");
    snprintf(text, sizeof text, "%s    grpc: \"true\"\n", minimal);
    expect_error(text, "conf.yaml:10:5: zones[0].grpc: expected true or false, got \"true\"");
    snprintf(text, sizeof text, "%s    plugins: {}\n", minimal);
    expect_error(text, "conf.yaml:10:5: zones[0].plugins: expected a list, got a map");
    expect_error("listen:\n  address: \"127.0.0.1:8080\"\n",
                 "conf.yaml:1:1: listen: expected a list, got a map");
    expect_error("listen:\n", "conf.yaml:1:1: listen: expected a list, got nothing");
    expect_error("listen: []\n", "conf.yaml:1:1: listen: expected at least one listener");
    snprintf(text, sizeof text, "%slog: { level: verbose }\n", minimal);
    expect_error(text,
                 "conf.yaml:10:8: log.level: expected one of error, warn, info, debug, got \"verbose\"");
    snprintf(text, sizeof text, "%sadmin: [1]\n", minimal);
    expect_error(text, "conf.yaml:10:1: admin: expected a map, got a list");
    expect_error("listen:\n"
                 "  - address: \"127.0.0.1:8080\"\n"
                 "origins:\n"
                 "  - name: o\n"
                 "    servers: [\"127.0.0.1:1\"]\n"
                 "    access: [deny]\n",
                 "conf.yaml:6:5: origins[0].access: expected a map, got a list");
    expect_error("- a\n", "conf.yaml:1:1: expected a map at the top level, got a list");
    expect_error("# nothing here\n", "conf.yaml:1:1: the configuration is empty");
}

static void test_missing_keys(void **state)
{
    (void)state;
    expect_error("workers: 1\n", "conf.yaml:1:1: missing required key \"listen\"");
    expect_error("listen:\n"
                 "  - address: \"127.0.0.1:8080\"\n"
                 "origins:\n"
                 "  - name: o\n"
                 "    servers: [\"127.0.0.1:1\"]\n",
                 "conf.yaml:1:1: missing required key \"zones\"");
    expect_error("listen:\n"
                 "  - address: \"127.0.0.1:8080\"\n"
                 "origins:\n"
                 "  - name: o\n"
                 "    servers: [\"127.0.0.1:1\"]\n"
                 "zones:\n"
                 "  - name: z\n"
                 "    origin: o\n",
                 "conf.yaml:7:5: zones[0]: missing required key \"hosts\"");
    expect_error("listen:\n"
                 "  - address: \"127.0.0.1:8080\"\n"
                 "    tls: {}\n",
                 "conf.yaml:3:5: listen[0].tls: missing required key \"certificates\"");
    expect_error("listen:\n"
                 "  - address: \"127.0.0.1:8080\"\n"
                 "    tls:\n"
                 "      certificates:\n"
                 "        - cert: certs/edge.pem\n",
                 "conf.yaml:5:11: listen[0].tls.certificates[0]: missing required key \"key\"");
    expect_error("listen:\n"
                 "  - address: \"127.0.0.1:8080\"\n"
                 "origins:\n"
                 "  - name: o\n"
                 "    servers: []\n",
                 "conf.yaml:5:5: origins[0].servers: expected at least one server");
}

static void test_bad_addresses(void **state)
{
    (void)state;
    static const struct {
        const char *addr, *why;
    } cases[] = {
        {"localhost:443", "expected \"a.b.c.d:port\" or \"[ipv6]:port\""},
        {"1.2.3:443", "expected \"a.b.c.d:port\" or \"[ipv6]:port\""},
        {"::1:443", "expected \"a.b.c.d:port\" or \"[ipv6]:port\""},
        {"[::1]443", "expected \"a.b.c.d:port\" or \"[ipv6]:port\""},
        {"[::g]:443", "expected \"a.b.c.d:port\" or \"[ipv6]:port\""},
        {"0.0.0.0", "expected \"a.b.c.d:port\" or \"[ipv6]:port\""},
        {"0.0.0.0:0", "the port must be a number from 1 to 65535"},
        {"0.0.0.0:65536", "the port must be a number from 1 to 65535"},
        {"0.0.0.0:http", "the port must be a number from 1 to 65535"},
        {"[::]:", "the port must be a number from 1 to 65535"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[256], want[512];
        snprintf(text, sizeof text, "listen:\n  - address: \"%s\"\n", cases[i].addr);
        snprintf(want, sizeof want, "conf.yaml:2:5: listen[0].address: %s, got \"%s\"", cases[i].why,
                 cases[i].addr);
        expect_error(text, want);
    }
    expect_error("listen:\n  - address: \"127.0.0.1:80\"\n  - address: \"127.0.0.1:80\"\n",
                 "conf.yaml:3:5: listen[1].address: \"127.0.0.1:80\" is already used by listen[0]");
    expect_error("listen:\n  - address: \"[::1]:80\"\n  - address: \"[0::1]:80\"\n",
                 "conf.yaml:3:5: listen[1].address: \"[0::1]:80\" is already used by listen[0]");

    expect_error("listen:\n"
                 "  - address: \"127.0.0.1:8080\"\n"
                 "origins:\n"
                 "  - name: o\n"
                 "    servers: [\"a:1\", \"noport\"]\n",
                 "conf.yaml:5:22: origins[0].servers[1]: expected \"host:port\", got \"noport\"");
    expect_error("listen:\n"
                 "  - address: \"127.0.0.1:8080\"\n"
                 "origins:\n"
                 "  - name: o\n"
                 "    servers:\n"
                 "      - \"bad host:1\"\n",
                 "conf.yaml:6:9: origins[0].servers[0]: expected \"host:port\", got \"bad host:1\"");
    expect_error(
        "listen:\n"
        "  - address: \"127.0.0.1:8080\"\n"
        "origins:\n"
        "  - name: o\n"
        "    servers: [\"a:99999\"]\n",
        "conf.yaml:5:15: origins[0].servers[0]: the port must be a number from 1 to 65535, got \"a:99999\"");
}

static void test_origin_reference(void **state)
{
    (void)state;
    expect_error("listen:\n"
                 "  - address: \"127.0.0.1:8080\"\n"
                 "origins:\n"
                 "  - name: orders\n"
                 "    servers: [\"127.0.0.1:1\"]\n"
                 "  - name: billing\n"
                 "    servers: [\"127.0.0.1:2\"]\n"
                 "zones:\n"
                 "  - name: z\n"
                 "    hosts: [a.example]\n"
                 "    origin: ordrs\n",
                 "conf.yaml:11:5: zones[0].origin: no origin is named \"ordrs\" (origins: orders, billing)");
    expect_error("listen:\n"
                 "  - address: \"127.0.0.1:8080\"\n"
                 "origins:\n"
                 "  - name: orders\n"
                 "    servers: [\"127.0.0.1:1\"]\n"
                 "  - name: orders\n"
                 "    servers: [\"127.0.0.1:2\"]\n",
                 "conf.yaml:6:5: origins[1].name: \"orders\" is already used by origins[0]");
}

static void test_missing_files(void **state)
{
    fixture *fx = *state;
    char want[PATH_MAX + 256];
    snprintf(want, sizeof want,
             "conf.yaml:5:11: listen[0].tls.certificates[0].cert: cannot read \"certs/nope.pem\" "
             "(%s/certs/nope.pem): No such file or directory",
             fx->real);
    expect_error("listen:\n"
                 "  - address: \"0.0.0.0:443\"\n"
                 "    tls:\n"
                 "      certificates:\n"
                 "        - cert: certs/nope.pem\n"
                 "          key: certs/edge.key\n",
                 want);
    expect_error(
        "listen:\n"
        "  - address: \"0.0.0.0:443\"\n"
        "    tls:\n"
        "      certificates:\n"
        "        - { cert: certs/edge.pem, key: /nonexistent/edge.key }\n",
        "conf.yaml:5:35: listen[0].tls.certificates[0].key: cannot read \"/nonexistent/edge.key\": No such "
        "file or directory");
    snprintf(want, sizeof want,
             "conf.yaml:6:12: origins[0].tls.ca: cannot read \"certs\" (%s/certs): it is a directory",
             fx->real);
    expect_error("listen:\n"
                 "  - address: \"127.0.0.1:8080\"\n"
                 "origins:\n"
                 "  - name: o\n"
                 "    servers: [\"127.0.0.1:1\"]\n"
                 "    tls: { ca: certs }\n",
                 want);
}

static void test_zone_hosts(void **state)
{
    (void)state;
    const char *head = "listen:\n"
                       "  - address: \"127.0.0.1:8080\"\n"
                       "origins:\n"
                       "  - name: o\n"
                       "    servers: [\"127.0.0.1:1\"]\n"
                       "zones:\n"
                       "  - name: first\n"
                       "    hosts: [a.example, \"*.b.example\"]\n"
                       "    origin: o\n";
    char text[1024];
    snprintf(text, sizeof text, "%s  - name: second\n    hosts: [c.example, A.Example]\n    origin: o\n",
             head);
    expect_error(
        text,
        "conf.yaml:11:24: zones[1].hosts[1]: \"a.example\" is in both zone \"first\" and zone \"second\"");
    snprintf(text, sizeof text, "%s  - name: second\n    hosts: [\"*.B.example\"]\n    origin: o\n", head);
    expect_error(
        text,
        "conf.yaml:11:13: zones[1].hosts[0]: \"*.b.example\" is in both zone \"first\" and zone \"second\"");
    snprintf(text, sizeof text,
             "%s  - name: second\n    hosts: [x.example, y.example, x.example]\n    origin: o\n", head);
    expect_error(text,
                 "conf.yaml:11:35: zones[1].hosts[2]: \"x.example\" is listed twice in zone \"second\"");
    snprintf(text, sizeof text, "%s  - name: first\n    hosts: [d.example]\n    origin: o\n", head);
    expect_error(text, "conf.yaml:10:5: zones[1].name: \"first\" is already used by zones[0]");

    static const struct {
        const char *host, *why;
    } bad[] = {
        {"a.*.example", "\"*\" is only allowed as a leading \"*.\" label"},
        {"*example.com", "\"*\" is only allowed as a leading \"*.\" label"},
        {"*", "\"*\" is only allowed as a leading \"*.\" label"},
        {"*.", "expected a host name"},
        {"a..example", "expected a host name"},
        {"a.example.", "expected a host name"},
        {"a b", "expected a host name"},
        {"a.example:443", "expected a host name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char want[512];
        snprintf(text, sizeof text,
                 "listen:\n  - address: \"127.0.0.1:8080\"\norigins:\n  - name: o\n    servers: "
                 "[\"127.0.0.1:1\"]\n"
                 "zones:\n  - name: z\n    hosts:\n      - \"%s\"\n    origin: o\n",
                 bad[i].host);
        snprintf(want, sizeof want, "conf.yaml:9:9: zones[0].hosts[0]: %s, got \"%s\"", bad[i].why,
                 bad[i].host);
        expect_error(text, want);
    }
}

static void test_warnings(void **state)
{
    (void)state;
    pc_config *cfg = load_ok("listen:\n"
                             "  - address: \"0.0.0.0:8080\"\n"
                             "  - address: \"127.0.0.2:8081\"\n"
                             "origins:\n"
                             "  - name: used\n"
                             "    servers: [\"127.0.0.1:1\"]\n"
                             "  - name: billing\n"
                             "    servers: [\"127.0.0.1:2\"]\n"
                             "    tls: { verify: no }\n"
                             "zones:\n"
                             "  - name: z\n"
                             "    hosts: [a.example]\n"
                             "    origin: used\n");
    assert_int_equal(cfg->nwarnings, 3);
    assert_string_equal(cfg->warnings[0],
                        "listen[0] (0.0.0.0:8080): no tls: cleartext HTTP/2 on a non-loopback address");
    assert_string_equal(cfg->warnings[1],
                        "origins[1] (billing): tls.verify is false: the origin's certificate is not checked");
    assert_string_equal(cfg->warnings[2], "origins[1] (billing): no zone uses this origin");
    pc__config_free(cfg);
}

static void test_zone_find(void **state)
{
    (void)state;
    pc_config *cfg = load_ok("listen:\n"
                             "  - address: \"127.0.0.1:8080\"\n"
                             "origins:\n"
                             "  - name: o\n"
                             "    servers: [\"127.0.0.1:1\"]\n"
                             "zones:\n"
                             "  - name: wide\n"
                             "    hosts: [\"*.example.com\"]\n"
                             "    origin: o\n"
                             "  - name: narrow\n"
                             "    hosts: [\"*.api.example.com\"]\n"
                             "    origin: o\n"
                             "  - name: exact\n"
                             "    hosts: [\"special.api.example.com\", \"Example.com\"]\n"
                             "    origin: o\n");
#define FIND(h) pc__zone_find(cfg, h, strlen(h))
    const pc_zone_conf *wide = &cfg->zones[0], *narrow = &cfg->zones[1], *exact = &cfg->zones[2];
    assert_ptr_equal(FIND("a.example.com"), wide);
    assert_ptr_equal(FIND("a.b.example.com"), wide);
    assert_ptr_equal(FIND("x.api.example.com"), narrow); /* longest wildcard wins */
    assert_ptr_equal(FIND("y.x.api.example.com"), narrow);
    assert_ptr_equal(FIND("api.example.com"), wide);          /* "*.api" needs a label before it */
    assert_ptr_equal(FIND("special.api.example.com"), exact); /* exact beats wildcard */
    assert_ptr_equal(FIND("SPECIAL.Api.Example.COM"), exact);
    assert_ptr_equal(FIND("example.com"), exact);
    assert_ptr_equal(FIND("A.EXAMPLE.COM"), wide);
    assert_null(FIND("example.org"));
    assert_null(FIND("xexample.com"));
    assert_null(FIND(".example.com"));
    assert_null(FIND("com"));
    assert_null(FIND(""));
    /* The length bounds the host: no terminator needed, trailing bytes ignored. */
    assert_ptr_equal(pc__zone_find(cfg, "example.com:443", 11), exact);
    assert_null(pc__zone_find(cfg, "example.co", 10));
    assert_null(pc__zone_find(NULL, "example.com", 11));
#undef FIND
    pc__config_free(cfg);
}

static void test_load_buffer(void **state)
{
    fixture *fx = *state;
    char err[512];
    pc_config *cfg = NULL;
    const char *text = "listen:\n"
                       "  - address: \"127.0.0.1:8443\"\n"
                       "    tls: { certificates: [{ cert: edge.pem, key: edge.key }] }\n"
                       "origins: [{ name: o, servers: [\"h:1\"] }]\n"
                       "zones: [{ name: z, hosts: [h], origin: o }]\n";
    assert_int_equal(pc__config_load_buffer("mem.yaml", text, strlen(text), "certs", &cfg, err, sizeof err),
                     0);
    assert_string_equal(cfg->path, "mem.yaml");
    assert_path(fx, cfg->listen[0].certs[0].cert, "certs/edge.pem");
    pc__config_free(cfg);

    assert_int_equal(pc__config_load_buffer("mem.yaml", text, strlen(text), ".", &cfg, err, sizeof err), -1);
    assert_null(cfg);
    char want[PATH_MAX + 256];
    snprintf(want, sizeof want,
             "mem.yaml:3:29: listen[0].tls.certificates[0].cert: cannot read \"edge.pem\" (%s/edge.pem): No "
             "such file "
             "or directory",
             fx->real);
    assert_string_equal(err, want);

    /* Only `len` bytes are parsed: the broken tail is never seen. */
    assert_int_equal(
        pc__config_load_buffer("mem.yaml", "workers: 1\nlisten: [", 11, NULL, &cfg, err, sizeof err), -1);
    assert_string_equal(err, "mem.yaml:1:1: missing required key \"listen\"");
    assert_int_equal(pc__config_load_buffer("mem.yaml", "workers: [", 10, NULL, &cfg, err, sizeof err), -1);
    assert_string_equal(err,
                        "mem.yaml:2:1: did not find expected node content (while parsing a flow node that "
                        "started at 2:1)");
}

static void test_missing_file(void **state)
{
    (void)state;
    char err[512];
    pc_config *cfg = (pc_config *)1;
    assert_int_equal(pc__config_load("nope/conf.yaml", &cfg, err, sizeof err), -1);
    assert_null(cfg);
    assert_string_equal(err, "nope/conf.yaml: cannot open: No such file or directory");
    pc__config_free(NULL);
}

static void test_grpc_web_cors(void **state)
{
    (void)state;
    char text[1024];
    pc_config *cfg = load_ok(minimal);
    assert_false(cfg->zones[0].grpc_web);
    assert_false(cfg->zones[0].cors.on);
    pc__config_free(cfg);
    snprintf(text, sizeof text,
             "%s    grpc_web: true\n"
             "    cors:\n"
             "      origins: [\"https://App.Example/\", \"http://127.0.0.1:8000\"]\n"
             "      expose_headers: [X-Cost, x-trace]\n"
             "      allow_headers: [x-tenant]\n"
             "      allow_credentials: true\n",
             minimal);
    cfg = load_ok(text);
    const pc_cors_conf *c = &cfg->zones[0].cors;
    assert_true(cfg->zones[0].grpc_web);
    assert_true(c->on);
    assert_int_equal(c->norigins, 2);
    assert_string_equal(c->origins[0], "https://app.example"); /* lower case, no trailing slash */
    assert_string_equal(c->origins[1], "http://127.0.0.1:8000");
    assert_int_equal(c->max_age_s, 600);
    assert_string_equal(c->expose_headers, "x-cost, x-trace");
    assert_string_equal(c->allow_headers, "x-tenant");
    assert_true(c->allow_credentials);
    pc__config_free(cfg);

    snprintf(text, sizeof text, "%s    cors: { origins: [\"app.example\"] }\n", minimal);
    expect_error(text, "conf.yaml:10:23: zones[0].cors.origins[0]: expected \"*\" or an origin like "
                       "https://app.example.com, got \"app.example\"");
    snprintf(text, sizeof text, "%s    cors: { max_age_s: 5 }\n", minimal);
    expect_error(text, "conf.yaml:10:5: zones[0].cors: missing required key \"origins\"");
    snprintf(text, sizeof text, "%s    cors: { origins: [\"*\"], allow_credentials: true }\n", minimal);
    expect_error(text,
                 "conf.yaml:10:23: zones[0].cors.origins[0]: \"*\" cannot be used with allow_credentials: "
                 "true (browsers refuse it); list the origins");
    snprintf(text, sizeof text, "%s    cors: { origins: [\"*\"], expose_headers: [\"x y\"] }\n", minimal);
    expect_error(text,
                 "conf.yaml:10:46: zones[0].cors.expose_headers[0]: expected a header name, got \"x y\"");
    snprintf(text, sizeof text, "%s    grpc_web: maybe\n", minimal);
    cfg = (pc_config *)1;
    char err[1024] = "";
    write_file("conf.yaml", text);
    assert_int_equal(pc__config_load("conf.yaml", &cfg, err, sizeof err), -1);
    assert_non_null(strstr(err, "zones[0].grpc_web"));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_full_config),      T(test_defaults),      T(test_keyed_form),   T(test_unknown_keys),
        T(test_duplicate_key),    T(test_wrong_types),   T(test_missing_keys), T(test_bad_addresses),
        T(test_origin_reference), T(test_missing_files), T(test_zone_hosts),   T(test_warnings),
        T(test_zone_find),        T(test_load_buffer),   T(test_missing_file), T(test_grpc_web_cors),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
