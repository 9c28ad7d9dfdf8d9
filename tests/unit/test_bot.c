/* Tests for the bot plugin's parts, compiled in from its sources: the client table stays at its size with
 * 100,000 distinct addresses and evicts the least recently seen, the process-wide behaviour table counts
 * every thread's requests (and stays bounded), a worker's fleet cache keeps its counts until answered and
 * falls back when Redis does not answer, sliding windows, the rules format (and the shipped rules/bots
 * files), and the scoring rules one by one. The plugin's glue (bot.c) and its Redis I/O (fleet.c) are
 * tested by tests/integration/test_bot.py and test_bot_store.py. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../plugins/bot/clients.c"
#include "../../plugins/bot/fleet_cache.c"
#include "../../plugins/bot/rules.c"
#include "../../plugins/bot/score.c"
#include "../../plugins/bot/stacks.c"
#include "../../plugins/bot/table.c"

static void v4(uint32_t a, uint8_t out[16])
{
    char s[32];
    snprintf(s, sizeof s, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
    assert_int_equal(bot_parse_ip(s, out), 0);
}

/* ---- the client table ---- */

static bot_client *client(bot_clients *t, const uint8_t key[16], bool create)
{
    return bot_clients_get(t, key, create);
}

static void test_table_bounded_with_100000_addresses(void **state)
{
    (void)state;
    enum { CAP = 65536, N = 100000 };
    bot_clients *t = bot_clients_new(CAP, sizeof(bot_client));
    assert_non_null(t);
    size_t bytes = bot_clients_bytes(t);
    assert_true(bytes < CAP * 100u); /* about 80 bytes an entry plus the bucket array */
    uint8_t addr[16], key[16];
    for (uint32_t i = 0; i < N; i++) {
        v4(0x0a000000u + i, addr);
        bot_client_key(addr, key);
        bot_client *c = bot_clients_get(t, key, true);
        assert_non_null(c);
        bot_window_add(&c->rate, 1000, 10000, 1);
        assert_true(bot_clients_count(t) <= CAP);
    }
    assert_int_equal(bot_clients_count(t), CAP);
    assert_int_equal(bot_clients_bytes(t), bytes); /* nothing allocated after creation */
    /* The oldest N - CAP went, the newest CAP are there with their counts. */
    for (uint32_t i = 0; i < N; i++) {
        v4(0x0a000000u + i, addr);
        bot_client_key(addr, key);
        bot_client *c = bot_clients_get(t, key, false);
        if (i < N - CAP) {
            assert_null(c);
        } else {
            assert_non_null(c);
            assert_int_equal(c->rate.cur, 1);
        }
    }
    bot_clients_free(t);
}

static void test_table_evicts_least_recently_seen(void **state)
{
    (void)state;
    bot_clients *t = bot_clients_new(4, sizeof(bot_client));
    uint8_t k[6][16];
    for (int i = 0; i < 6; i++) {
        uint8_t a[16] = {0};
        v4(0xc0000200u + (uint32_t)i, a);
        bot_client_key(a, k[i]);
    }
    for (int i = 0; i < 4; i++)
        client(t, k[i], true)->rate.cur = (uint32_t)i + 10;
    assert_non_null(bot_clients_get(t, k[0], false)); /* 0 is now the most recent: 1 is the oldest */
    bot_clients_get(t, k[4], true);
    assert_null(bot_clients_get(t, k[1], false));
    assert_int_equal(client(t, k[0], false)->rate.cur, 10);
    bot_clients_get(t, k[5], true); /* evicts 2 */
    assert_null(bot_clients_get(t, k[2], false));
    assert_non_null(bot_clients_get(t, k[3], false));
    /* A returning client starts from zero. */
    assert_int_equal(client(t, k[1], true)->rate.cur, 0);
    assert_int_equal(bot_clients_count(t), 4);
    bot_clients_free(t);
    assert_null(bot_clients_new(0, sizeof(bot_client)));
    assert_null(bot_clients_new(4, sizeof(bot_slot) - 1));
}

/* ---- the process-wide table ---- */

enum { THREADS = 4, PER_THREAD = 5000 };

typedef struct job {
    bot_table *t;
    int id;
} job;

/* As a worker: every request of client 1 and of a client of its own, all at the same instant. */
static void *worker(void *arg)
{
    job *j = arg;
    uint8_t a[16] = {0}, k1[16], mine[16];
    v4(0x0a000001u, a);
    bot_client_key(a, k1);
    v4(0x0b000000u + (uint32_t)j->id, a);
    bot_client_key(a, mine);
    bot_estimate e;
    for (int i = 0; i < PER_THREAD; i++) {
        bot_table_started(j->t, k1, 5000, &e);
        bot_table_finished(j->t, k1, 5000, i % 4 == 0);
        bot_table_started(j->t, mine, 5000, &e);
    }
    return NULL;
}

/* Four threads (as four workers) count one client's requests in one place: the estimate is all of them,
 * not a quarter, and nothing is lost to a race. */
static void test_process_table_counts_every_thread(void **state)
{
    (void)state;
    bot_table *t = bot_table_new(65536, 10000, 60000);
    assert_non_null(t);
    assert_int_equal(bot_table_shards(t), 64);
    job jobs[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (job){t, i};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &jobs[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    uint8_t a[16] = {0}, k[16];
    v4(0x0a000001u, a);
    bot_client_key(a, k);
    bot_estimate e;
    bot_table_started(t, k, 5000, &e);
    assert_true(e.rate == THREADS * PER_THREAD + 1);
    assert_true(e.done == THREADS * PER_THREAD);
    assert_true(e.errors == THREADS * PER_THREAD / 4);
    for (int i = 0; i < THREADS; i++) {
        v4(0x0b000000u + (uint32_t)i, a);
        bot_client_key(a, k);
        bot_table_started(t, k, 5000, &e);
        assert_true(e.rate == PER_THREAD + 1);
    }
    assert_int_equal(bot_table_count(t), 1 + THREADS);
    bot_table_free(t);
}

/* At most max_clients in all, whatever the addresses; a small table is one shard, an exact LRU (the least
 * recently seen client goes first, as with the per-worker tables before it). */
static void test_process_table_bounded(void **state)
{
    (void)state;
    bot_table *t = bot_table_new(5000, 10000, 60000);
    assert_non_null(t);
    assert_int_equal(bot_table_shards(t), 4);
    size_t bytes = bot_table_bytes(t);
    uint8_t a[16] = {0}, k[16];
    bot_estimate e;
    for (uint32_t i = 0; i < 100000; i++) {
        v4(0x0a000000u + i, a);
        bot_client_key(a, k);
        bot_table_started(t, k, 1000, &e);
    }
    assert_int_equal(bot_table_count(t), 5000);
    assert_int_equal(bot_table_bytes(t), bytes);
    bot_table_free(t);

    t = bot_table_new(16, 10000, 60000);
    assert_int_equal(bot_table_shards(t), 1);
    uint8_t first[16];
    v4(0xc0000201u, a);
    bot_client_key(a, first);
    for (int i = 0; i < 30; i++)
        bot_table_started(t, first, 1000, &e);
    assert_true(e.rate == 30);
    for (uint32_t i = 0; i < 16; i++) {
        v4(0xc0000300u + i, a);
        bot_client_key(a, k);
        bot_table_started(t, k, 1000, &e);
    }
    /* Forgotten: a finished request is not counted for it, and it starts again from one. */
    bot_table_finished(t, first, 1000, true);
    bot_table_started(t, first, 1000, &e);
    assert_true(e.rate == 1 && e.done == 0 && e.errors == 0);
    bot_table_free(t);
    assert_null(bot_table_new(0, 10000, 60000));
}

/* ---- a worker's fleet cache ---- */

static void key_n(uint32_t n, uint8_t key[16])
{
    uint8_t a[16] = {0};
    v4(0x0a000000u + n, a);
    bot_client_key(a, key);
}

static const uint32_t one_started[3] = {1, 0, 0};

/* Counts wait for a flush; what is out and what came since both count on top of the last answer; the
 * answer replaces the estimate; a failed request drops what it carried and the answer before it. */
static void test_fleet_cache_flush_and_answer(void **state)
{
    (void)state;
    bot_fleet_cache *c = bot_fleet_cache_new(8);
    assert_non_null(c);
    uint8_t k[16];
    key_n(1, k);
    double v[3];
    bot_fleet_entry *e = NULL;
    for (int i = 0; i < 3; i++)
        e = bot_fleet_cache_add(c, k, one_started, true);
    const uint32_t fin[3] = {0, 1, 1};
    bot_fleet_cache_add(c, k, fin, false);
    assert_false(bot_fleet_cache_view(c, e, 1000, 1000, v)); /* no answer yet: the process's counts */
    assert_int_equal(bot_fleet_cache_queued(c), 1);          /* once, however many counts */
    assert_ptr_equal(bot_fleet_cache_pop(c), e);
    uint32_t seq = bot_fleet_cache_send(c, e);
    assert_int_equal(e->sent[BOT_N_RATE], 3);
    assert_int_equal(e->sent[BOT_N_ERRORS], 1);
    assert_int_equal(e->pending[BOT_N_RATE], 0);
    /* Counted while the request is out: queued, but not sent before the answer. */
    bot_fleet_cache_add(c, k, one_started, true);
    assert_int_equal(bot_fleet_cache_queued(c), 1);
    assert_null(bot_fleet_cache_pop(c));
    assert_int_equal(bot_fleet_cache_queued(c), 1);
    /* The fleet's totals include the 3 sent: 40 started, 10 finished, 2 failed. */
    const uint32_t totals[3] = {40, 10, 2};
    bot_fleet_cache_answer(c, k, seq + 1, totals, 1000); /* not this request's: ignored */
    assert_false(bot_fleet_cache_view(c, e, 1000, 1000, v));
    bot_fleet_cache_answer(c, k, seq, totals, 1000);
    assert_true(bot_fleet_cache_view(c, e, 1500, 1000, v));
    assert_true(v[BOT_N_RATE] == 41 && v[BOT_N_DONE] == 10 && v[BOT_N_ERRORS] == 2);
    assert_false(bot_fleet_cache_view(c, e, 2000, 1000, v)); /* too old */
    /* The next flush sends the one counted meanwhile; its request fails. */
    assert_ptr_equal(bot_fleet_cache_pop(c), e);
    seq = bot_fleet_cache_send(c, e);
    bot_fleet_cache_answer(c, k, seq, NULL, 1100);
    assert_false(bot_fleet_cache_view(c, e, 1100, 1000, v));
    assert_int_equal(e->sent[BOT_N_RATE], 0);
    assert_int_equal(e->seq, 0);
    assert_int_equal(bot_fleet_cache_queued(c), 0);
    bot_fleet_cache_free(c);
}

/* Redis unavailable: pending counts are dropped, and an answer from before does not count again. */
static void test_fleet_cache_drop(void **state)
{
    (void)state;
    bot_fleet_cache *c = bot_fleet_cache_new(8);
    uint8_t k[16];
    key_n(1, k);
    double v[3];
    bot_fleet_entry *e = bot_fleet_cache_add(c, k, one_started, true);
    bot_fleet_cache_pop(c);
    const uint32_t totals[3] = {5, 0, 0};
    bot_fleet_cache_answer(c, k, bot_fleet_cache_send(c, e), totals, 100);
    bot_fleet_cache_add(c, k, one_started, true);
    assert_true(bot_fleet_cache_view(c, e, 100, 1000, v) && v[BOT_N_RATE] == 6);
    bot_fleet_cache_drop(c);
    assert_int_equal(bot_fleet_cache_queued(c), 0);
    assert_int_equal(e->pending[BOT_N_RATE], 0);
    assert_false(bot_fleet_cache_view(c, e, 100, 1000, v));
    bot_fleet_cache_free(c);
}

/* Bounded by its size: a new client evicts the least recently seen, whose queued counts go with it (its
 * position is sent for whoever holds it now), and an answer for an evicted client changes nothing. */
static void test_fleet_cache_bounded(void **state)
{
    (void)state;
    bot_fleet_cache *c = bot_fleet_cache_new(4);
    size_t bytes = bot_fleet_cache_bytes(c);
    uint8_t k[16];
    key_n(0, k);
    bot_fleet_entry *e0 = bot_fleet_cache_add(c, k, one_started, true);
    assert_ptr_equal(bot_fleet_cache_pop(c), e0);
    uint32_t seq0 = bot_fleet_cache_send(c, e0);
    for (uint32_t i = 1; i < 1000; i++) {
        key_n(i, k);
        bot_fleet_cache_add(c, k, one_started, true);
        assert_true(bot_fleet_cache_queued(c) <= 4);
    }
    assert_int_equal(bot_fleet_cache_bytes(c), bytes);
    size_t sends = 0, n = bot_fleet_cache_queued(c);
    for (size_t i = 0; i < n; i++) {
        bot_fleet_entry *e = bot_fleet_cache_pop(c);
        if (e) {
            assert_int_equal(e->pending[BOT_N_RATE], 1);
            bot_fleet_cache_send(c, e);
            sends++;
        }
    }
    assert_int_equal(sends, 4);
    key_n(0, k);
    const uint32_t totals[3] = {9, 9, 9};
    bot_fleet_cache_answer(c, k, seq0, totals, 100); /* client 0 was evicted */
    assert_null(bot_clients_get(c->t, k, false));
    bot_fleet_cache_free(c);
}

/* The score reads the larger rate, and the error ratio of whichever saw more finished requests. */
static void test_estimate_merge(void **state)
{
    (void)state;
    bot_estimate local = {.rate = 12, .done = 20, .errors = 2};
    const double fleet[3] = {30, 10, 9};
    bot_estimate_merge(&local, fleet);
    assert_true(local.rate == 30 && local.done == 20 && local.errors == 2);
    const double more[3] = {5, 40, 30};
    bot_estimate_merge(&local, more);
    assert_true(local.rate == 30 && local.done == 40 && local.errors == 30);
}

static void test_ipv6_counted_per_64(void **state)
{
    (void)state;
    uint8_t a[16] = {0}, b[16] = {0}, c[16] = {0}, ka[16], kb[16], kc[16];
    assert_int_equal(bot_parse_ip("2001:db8:1:2::1", a), 0);
    assert_int_equal(bot_parse_ip("2001:db8:1:2:ffff::9", b), 0);
    assert_int_equal(bot_parse_ip("2001:db8:1:3::1", c), 0);
    bot_client_key(a, ka);
    bot_client_key(b, kb);
    bot_client_key(c, kc);
    assert_memory_equal(ka, kb, 16);
    assert_memory_not_equal(ka, kc, 16);
    /* IPv4 keeps its whole address, also when it arrives IPv4-mapped. */
    uint8_t d[16] = {0}, e[16] = {0}, kd[16], ke[16];
    assert_int_equal(bot_parse_ip("198.51.100.7", d), 0);
    assert_int_equal(bot_parse_ip("::ffff:198.51.100.7", e), 0);
    bot_client_key(d, kd);
    bot_client_key(e, ke);
    assert_memory_equal(kd, ke, 16);
    assert_int_equal(bot_parse_ip("not an address", d), -1);
}

static void test_sliding_window(void **state)
{
    (void)state;
    bot_window w = {0};
    const uint64_t len = 10000;
    for (int i = 0; i < 20; i++)
        bot_window_add(&w, 100000 + (uint64_t)i, len, 1);
    assert_true(bot_window_estimate(&w, 100050, len) == 20);
    /* Half way through the next window, half of the previous one still counts. */
    assert_true(bot_window_estimate(&w, 115000, len) == 10);
    bot_window_add(&w, 115000, len, 3);
    assert_true(bot_window_estimate(&w, 115000, len) == 13);
    /* Two windows later nothing is left. */
    assert_true(bot_window_estimate(&w, 130001, len) == 0);
    bot_window_add(&w, 130001, len, 1);
    assert_int_equal(w.prev, 0);
    assert_int_equal(w.cur, 1);
}

/* ---- rules ---- */

static const char sample[] = "# a comment\n"
                             "\n"
                             "fingerprint ja4 t13d0812gp_48922242edce_b14c9c0b5032 grpc_library 60 grpcio\n"
                             "fingerprint ja3 0149f47eabf9a20d0893e2a44e5a6323 http_library 20 curl\n"
                             "fingerprint h2 3:100;4:33554432;2:0|33488897|0|m,p,s,a http_library 20 curl\n"
                             "fingerprint ja4 t13d1516h2_8daaf6152771_e5627efa2ab1 browser 70 chrome\n"
                             "fingerprint ja4 t13d9999h2_000000000000_000000000000 automated 1 evil\n"
                             "useragent automated crawler bot/\n"
                             "useragent grpc_library grpc-python ^grpc-python\n"
                             "useragent http_library curl ^curl/\n"
                             "useragent browser browser ^Mozilla/5.0\n"
                             "verified examplebot 192.0.2.0/24,2001:db8::/32 ExampleBot\n";

static bot_rules sample_rules(void)
{
    bot_rules r = {0};
    char err[256];
    if (bot_rules_load_text(&r, "sample.rules", sample, sizeof sample - 1, err, sizeof err) < 0)
        fail_msg("%s", err);
    bot_rules_finish(&r);
    return r;
}

static void test_rules_lookup(void **state)
{
    (void)state;
    bot_rules r = sample_rules();
    assert_int_equal(r.nfps, 5);
    const bot_fp *f = bot_rules_fp(&r, BOT_FP_H2, "3:100;4:33554432;2:0|33488897|0|m,p,s,a");
    assert_non_null(f);
    assert_string_equal(f->label, "curl");
    assert_null(bot_rules_fp(&r, BOT_FP_JA4, "3:100;4:33554432;2:0|33488897|0|m,p,s,a")); /* types apart */
    assert_null(bot_rules_fp(&r, BOT_FP_JA4, NULL));
    assert_string_equal(bot_rules_ua(&r, "grpc-python/1.51.1 grpc-c/29.0.0 (linux; chttp2)")->label,
                        "grpc-python");
    /* Anchored patterns only match at the start; case does not matter; the first rule wins. */
    assert_null(bot_rules_ua(&r, "my curl/7.0"));
    assert_string_equal(bot_rules_ua(&r, "MOZILLA/5.0 (X11)")->label, "browser");
    assert_string_equal(bot_rules_ua(&r, "Mozilla/5.0 (compatible; Somebot/2.1)")->label, "crawler");
    const bot_verified *v = bot_rules_verified(&r, "Mozilla/5.0 (compatible; ExampleBot/1.0)");
    assert_non_null(v);
    uint8_t in[16], out[16], in6[16];
    bot_parse_ip("192.0.2.77", in);
    bot_parse_ip("192.0.3.1", out);
    bot_parse_ip("2001:db8:ff::1", in6);
    assert_true(bot_net_match(v->nets, v->nnets, in));
    assert_false(bot_net_match(v->nets, v->nnets, out));
    assert_true(bot_net_match(v->nets, v->nnets, in6));
    bot_rules_free(&r);
}

static void test_rules_later_entry_wins(void **state)
{
    (void)state;
    bot_rules r = {0};
    char err[256];
    const char a[] = "fingerprint ja3 0149f47eabf9a20d0893e2a44e5a6323 http_library 20 curl\n";
    const char b[] = "fingerprint ja3 0149f47eabf9a20d0893e2a44e5a6323 automated 1 blocked-curl\n";
    assert_int_equal(bot_rules_load_text(&r, "a.rules", a, sizeof a - 1, err, sizeof err), 0);
    assert_int_equal(bot_rules_load_text(&r, "b.rules", b, sizeof b - 1, err, sizeof err), 0);
    bot_rules_finish(&r);
    assert_int_equal(r.nfps, 1);
    assert_string_equal(bot_rules_fp(&r, BOT_FP_JA3, "0149f47eabf9a20d0893e2a44e5a6323")->label,
                        "blocked-curl");
    bot_rules_free(&r);
}

/* Rules text that must fail to load, and the start of the error it must give. */
typedef struct bad_rules {
    const char *text, *want;
} bad_rules;

static void expect_rule_errors(const bad_rules *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bot_rules r = {0};
        char err[256] = "";
        int rv = bot_rules_load_text(&r, "x.rules", cases[i].text, strlen(cases[i].text), err, sizeof err);
        if (rv != -1 || strncmp(err, cases[i].want, strlen(cases[i].want)) != 0)
            fail_msg("case %zu: rv %d, err \"%s\", want \"%s\"", i, rv, err, cases[i].want);
        bot_rules_free(&r);
    }
}

static void test_rules_errors_name_the_line(void **state)
{
    (void)state;
    static const bad_rules cases[] = {
        {"\n\nfingerprint ja5 x browser 50 y\n", "x.rules:3: fingerprint type must be ja4, ja3 or h2"},
        {"fingerprint ja3 abc browser 50 y\n", "x.rules:1: malformed ja3 fingerprint"},
        {"fingerprint ja4 t13d_x_y robot 50 y\n", "x.rules:1: unknown kind \"robot\""},
        {"fingerprint ja4 t13d_x_y browser 0 y\n", "x.rules:1: score must be a number from 1 to 99"},
        {"fingerprint ja4 t13d_x_y browser 100 y\n", "x.rules:1: score must be a number from 1 to 99"},
        {"fingerprint ja4 t13d_x_y browser 50 two words\n", "x.rules:1: expected one label"},
        {"useragent browser\n", "x.rules:1: expected a label"},
        {"useragent browser b ^\n", "x.rules:1: missing user-agent pattern"},
        {"verified g 10.0.0.0/33 G\n", "x.rules:1: bad address range \"10.0.0.0/33\""},
        {"verified g 10.0.0.0/8, G\n", "x.rules:1: bad address range \"\""},
        {"verified g 10.0.0.0/8\n", "x.rules:1: missing user-agent pattern"},
        {"block everything\n", "x.rules:1: unknown rule \"block\""},
    };
    expect_rule_errors(cases, sizeof cases / sizeof cases[0]);
    /* An overlong line and a NUL byte. */
    char *big = malloc(BOT_RULES_MAX_LINE + 10);
    memset(big, 'a', BOT_RULES_MAX_LINE + 9);
    big[BOT_RULES_MAX_LINE + 9] = '\n';
    bot_rules r = {0};
    char err[256];
    assert_int_equal(bot_rules_load_text(&r, "x.rules", big, BOT_RULES_MAX_LINE + 10, err, sizeof err), -1);
    free(big);
    assert_int_equal(bot_rules_load_text(&r, "x.rules", "useragent browser b a\0b\n", 24, err, sizeof err),
                     -1);
    bot_rules_free(&r);
}

static void test_shipped_rules_load(void **state)
{
    (void)state;
    const char *src = getenv("PC_SOURCE_DIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/rules/bots", src ? src : "../..");
    bot_rules r = {0};
    char err[512];
    if (bot_rules_load_dir(&r, dir, err, sizeof err) < 0) fail_msg("%s", err);
    assert_true(r.nfps > 0 && r.nuas > 0 && r.nver > 0);
    /* The shipped order puts crawlers before browsers and knows gRPC libraries. */
    assert_int_equal(
        bot_rules_ua(&r, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")->kind,
        BOT_KIND_AUTOMATED);
    assert_int_equal(bot_rules_ua(&r, "grpc-go/1.60.1")->kind, BOT_KIND_GRPC);
    assert_int_equal(bot_rules_ua(&r, "curl/7.88.1")->kind, BOT_KIND_LIBRARY);
    /* grpcio over h2c (no JA4) is known by either form of its HTTP/2 fingerprint: its connection
     * WINDOW_UPDATE may come before or after the first HEADERS. */
    const char *grpcio[] = {"2:0;3:0;4:4194303;5:4194303;6:8192;65027:1|4128768|0|p,a,m,s",
                            "2:0;3:0;4:4194303;5:4194303;6:8192;65027:1|00|0|p,a,m,s"};
    for (size_t i = 0; i < 2; i++) {
        const bot_fp *f = bot_rules_fp(&r, BOT_FP_H2, grpcio[i]);
        assert_non_null(f);
        assert_string_equal(f->label, "grpc-core");
        assert_int_equal(f->kind, BOT_KIND_GRPC);
    }
    bot_rules_free(&r);
    assert_int_equal(bot_rules_load_dir(&r, "/nonexistent/rules", err, sizeof err), -1);
}

/* Without `rules` the plugin reads the installed rules/bots, else the source tree's; with neither it fails
 * naming both paths (never an empty rule set scoring everyone 50). */
static void test_shipped_rules_dir_fallback(void **state)
{
    (void)state;
    char base[] = "/tmp/pc-test-bot-XXXXXX", inst[64], src[64], out[4096], err[1024];
    assert_non_null(mkdtemp(base));
    snprintf(inst, sizeof inst, "%s/share/rules/bots", base);
    snprintf(src, sizeof src, "%s/src", base);

    assert_int_equal(bot_rules_shipped_dir(inst, src, out, sizeof out, err, sizeof err), -1);
    assert_non_null(strstr(err, inst));
    assert_non_null(strstr(err, src));
    assert_int_equal(bot_rules_shipped_dir(inst, "", out, sizeof out, err, sizeof err), -1);
    assert_non_null(strstr(err, inst));
    assert_null(strstr(err, " or /")); /* no second path */

    assert_int_equal(mkdir(src, 0700), 0);
    assert_int_equal(bot_rules_shipped_dir(inst, src, out, sizeof out, err, sizeof err), 0);
    assert_string_equal(out, src);

    /* A file where the installed directory should be is not it. */
    char share[64], file[128];
    snprintf(share, sizeof share, "%s/share", base);
    snprintf(file, sizeof file, "%s/rules", share);
    assert_int_equal(mkdir(share, 0700), 0);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(bot_rules_shipped_dir(file, src, out, sizeof out, err, sizeof err), 0);
    assert_string_equal(out, src);
    assert_int_equal(unlink(file), 0);

    /* Installed wins over the source tree. */
    assert_int_equal(mkdir(file, 0700), 0);
    assert_int_equal(mkdir(inst, 0700), 0);
    assert_int_equal(bot_rules_shipped_dir(inst, src, out, sizeof out, err, sizeof err), 0);
    assert_string_equal(out, inst);
    char small[8];
    assert_int_equal(bot_rules_shipped_dir(inst, src, small, sizeof small, err, sizeof err), -1);
    assert_non_null(strstr(err, "too long"));

    assert_int_equal(rmdir(inst), 0);
    assert_int_equal(rmdir(file), 0);
    assert_int_equal(rmdir(share), 0);
    assert_int_equal(rmdir(src), 0);
    assert_int_equal(rmdir(base), 0);
}

/* ---- scoring ---- */

static const bot_params params = {.rate_limit = 20, .error_min = 10, .error_ratio = 0.5};

static bot_verdict eval(const bot_rules *r, bot_input in)
{
    bot_verdict v;
    if (in.rate == 0) in.rate = 1;
    bot_evaluate(r, &params, &in, &v);
    return v;
}

static void test_score_grpc_library_is_not_penalised(void **state)
{
    (void)state;
    bot_rules r = sample_rules();
    bot_verdict v = eval(&r, (bot_input){.ja4 = "t13d0812gp_48922242edce_b14c9c0b5032",
                                         .user_agent = "grpc-python/1.51.1 grpc-c/29.0.0 (linux; chttp2)"});
    assert_int_equal(v.score, 60);
    assert_string_equal(v.class, "likely_human");
    assert_string_equal(v.signals, "fp:grpcio,ua:grpc-python");
    bot_rules_free(&r);
}

static void test_score_browser_ua_over_library(void **state)
{
    (void)state;
    bot_rules r = sample_rules();
    const char *chrome =
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
    bot_verdict v =
        eval(&r, (bot_input){.ja4 = "t13d0812gp_48922242edce_b14c9c0b5032", .user_agent = chrome});
    assert_true(v.score <= 10);
    assert_string_equal(v.class, "likely_automated");
    assert_non_null(strstr(v.signals, "ua_fp_mismatch"));
    /* JA3 and the HTTP/2 fingerprint count when JA4 is unknown. */
    v = eval(&r, (bot_input){.ja4 = "t13d0000h2_aaaaaaaaaaaa_bbbbbbbbbbbb",
                             .h2fp = "3:100;4:33554432;2:0|33488897|0|m,p,s,a",
                             .user_agent = chrome});
    assert_true(v.score <= 10);
    assert_string_equal(v.signals, "fp:curl,ua:browser,ua_fp_mismatch");
    /* The real browser: untouched. */
    v = eval(&r, (bot_input){.ja4 = "t13d1516h2_8daaf6152771_e5627efa2ab1", .user_agent = chrome});
    assert_int_equal(v.score, 70);
    /* A library UA over a browser's fingerprint is the same lie the other way round. */
    v = eval(&r, (bot_input){.ja4 = "t13d1516h2_8daaf6152771_e5627efa2ab1", .user_agent = "curl/8.0"});
    assert_true(v.score <= 10);
    /* Browser TLS with a library's HTTP/2 stack. */
    v = eval(&r, (bot_input){.ja4 = "t13d1516h2_8daaf6152771_e5627efa2ab1",
                             .h2fp = "3:100;4:33554432;2:0|33488897|0|m,p,s,a",
                             .user_agent = chrome});
    assert_non_null(strstr(v.signals, "tls_h2_mismatch"));
    assert_true(v.score <= 15);
    bot_rules_free(&r);
}

static void test_score_unknown_and_missing(void **state)
{
    (void)state;
    bot_rules r = sample_rules();
    bot_verdict v = eval(&r, (bot_input){.user_agent = "something/1.0"});
    assert_int_equal(v.score, 50);
    assert_string_equal(v.signals, "fp:none,ua:unknown");
    v = eval(&r, (bot_input){.ja4 = "t13d0000h2_aaaaaaaaaaaa_bbbbbbbbbbbb"});
    assert_int_equal(v.score, 40);
    assert_string_equal(v.signals, "fp:unknown,ua:none");
    v = eval(&r, (bot_input){.ja3_hash = "0149f47eabf9a20d0893e2a44e5a6323", .user_agent = "curl/7.88.1"});
    assert_int_equal(v.score, 20);
    assert_string_equal(v.class, "likely_automated");
    bot_rules_free(&r);
}

static void test_score_known_bad_is_1(void **state)
{
    (void)state;
    bot_rules r = sample_rules();
    bot_verdict v = eval(&r, (bot_input){.ja4 = "t13d9999h2_000000000000_000000000000",
                                         .user_agent = "Mozilla/5.0 (X11) Chrome/120.0"});
    assert_int_equal(v.score, 1);
    assert_string_equal(v.class, "automated");
    assert_string_equal(v.signals, "fp:evil,known_bad");
    bot_rules_free(&r);
}

static void test_score_verified_bot(void **state)
{
    (void)state;
    bot_rules r = sample_rules();
    uint8_t in[16], out[16];
    bot_parse_ip("192.0.2.10", in);
    bot_parse_ip("203.0.113.10", out);
    const char *ua = "Mozilla/5.0 (compatible; ExampleBot/1.0)";
    bot_verdict v = eval(&r, (bot_input){.user_agent = ua, .addr = in});
    assert_true(v.verified);
    assert_string_equal(v.class, "verified_bot");
    assert_non_null(strstr(v.signals, "verified:examplebot"));
    v = eval(&r, (bot_input){.user_agent = ua, .addr = out});
    assert_false(v.verified);
    assert_true(v.score <= 5);
    assert_non_null(strstr(v.signals, "bot_ua_unverified:examplebot"));
    bot_rules_free(&r);
}

static void test_score_behaviour(void **state)
{
    (void)state;
    bot_rules r = sample_rules();
    bot_input base = {.ja4 = "t13d0812gp_48922242edce_b14c9c0b5032", .user_agent = "grpc-python/1.51.1"};
    bot_input in = base;
    in.rate = 20;
    assert_int_equal(eval(&r, in).score, 60); /* at the limit: nothing */
    in.rate = 30;
    bot_verdict v = eval(&r, in);
    assert_int_equal(v.score, 29 - 10);
    assert_string_equal(v.signals, "fp:grpcio,ua:grpc-python,rate:30");
    in.rate = 1000;
    assert_int_equal(eval(&r, in).score, 29 - 20); /* the penalty stops at twice the limit */
    /* Errors: counted once enough requests finished. */
    in = base;
    in.done = 9;
    in.errors = 9;
    assert_int_equal(eval(&r, in).score, 60);
    in.done = 12;
    in.errors = 6;
    v = eval(&r, in);
    assert_int_equal(v.score, 19);
    assert_non_null(strstr(v.signals, "errors:50%"));
    in.errors = 5;
    assert_int_equal(eval(&r, in).score, 60);
    /* Never below 2 unless known bad. */
    in = base;
    in.user_agent = NULL;
    in.rate = 1000;
    in.done = 100;
    in.errors = 100;
    assert_int_equal(eval(&r, in).score, 2);
    bot_rules_free(&r);
}

/* ---- client stacks ---- */

static const char stacks_sample[] =
    "stack grpc-core grpc-c grpc-c++ grpc-python\n"
    "stack grpc-go grpc-go\n"
    "stack grpc-java grpc-java-okhttp grpc-java-netty\n"
    "stack chromium Chrome HeadlessChrome\n"
    "stack firefox Firefox\n"
    "stack go-http Go-http-client\n"
    "fingerprint ja4 t13d0812gp_48922242edce_b14c9c0b5032 grpc_library 60 grpc-core\n"
    "fingerprint h2 2:0;3:0;4:4194303;5:4194303;6:8192;65027:1|00|0|p,a,m,s grpc_library 60 grpc-core\n"
    "fingerprint ja4 t13d1910h2_9dc949149365_97f8aa674fd9 grpc_library 60 grpc-go+go-http\n"
    "fingerprint h2 |00|0|m,s,p,a grpc_library 60 grpc-go\n"
    "fingerprint ja4 t13d1517h2_8daaf6152771_cb7bf5808d99 browser 70 chromium\n"
    "fingerprint ja4 t13d3111h2_e8f1e7e78f70_1f22a2ca17c4 http_library 15 s_client\n"
    "useragent grpc_library grpc-go ^grpc-go/\n"
    "useragent grpc_library grpc-python ^grpc-python\n"
    "useragent browser browser ^Mozilla/5.0\n";

static bot_rules stack_rules(void)
{
    bot_rules r = {0};
    char err[256];
    if (bot_rules_load_text(&r, "stacks.rules", stacks_sample, sizeof stacks_sample - 1, err, sizeof err) < 0)
        fail_msg("%s", err);
    bot_rules_finish(&r);
    return r;
}

static void products_are(const char *ua, const char *want)
{
    bot_product p[BOT_UA_MAX_PRODUCTS];
    size_t n = bot_ua_products(ua, p, BOT_UA_MAX_PRODUCTS);
    char got[512] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%.*s", i ? "," : "", (int)p[i].n, p[i].p);
    if (strcmp(got, want)) fail_msg("%s: products \"%s\", want \"%s\"", ua, got, want);
}

static void test_ua_products_in_order(void **state)
{
    (void)state;
    products_are("grpc-python/1.51.1 grpc-c/29.0.0 (linux; chttp2)", "grpc-python,grpc-c");
    /* grpcio and grpc-c++ put the application's product among their own: read as written. */
    products_are("grpc-go/1.60.1 grpc-python/1.51.1 grpc-c/29.0.0 (linux; chttp2)",
                 "grpc-go,grpc-python,grpc-c");
    products_are("grpc-c++/1.51.1 myapp/2 grpc-c/29.0.0 (linux; chttp2)", "grpc-c++,myapp,grpc-c");
    products_are("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 "
                 "Safari/537.36",
                 "Mozilla,AppleWebKit,Chrome,Safari");
    products_are("h2load nghttp2/1.52.0", "h2load,nghttp2");
    products_are("grpc-dotnet/2.57.0 (.NET 8.0.0; CLR 8.0.0; net8.0; linux; x64)", "grpc-dotnet");
    /* Nested and unbalanced comments, separators only, empty names. */
    products_are("a/1 (x (y) z) b/2 ) c", "a,b,c");
    products_are("a/1 (never closed b/2", "a");
    products_are("  //  / ", "");
    products_are("", "");
    bot_product p[BOT_UA_MAX_PRODUCTS];
    assert_int_equal(bot_ua_products(NULL, p, BOT_UA_MAX_PRODUCTS), 0);
    /* Bounded: at most max products, and only the first 512 bytes are read. */
    char many[2048] = "";
    for (int i = 0; i < 100; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "p%d/1 ", i);
    assert_int_equal(bot_ua_products(many, p, BOT_UA_MAX_PRODUCTS), BOT_UA_MAX_PRODUCTS);
    char late[1024];
    memset(late, ' ', sizeof late);
    memcpy(late + 600, "grpc-go/1", 9);
    late[sizeof late - 1] = '\0';
    assert_int_equal(bot_ua_products(late, p, BOT_UA_MAX_PRODUCTS), 0);
}

static void test_ua_stacks(void **state)
{
    (void)state;
    bot_rules r = stack_rules();
    assert_int_equal(r.nstacks, 6);
    int s[BOT_UA_MAX_STACKS];
    /* grpc-python and grpc-c are one stack: named once. Case does not matter. */
    assert_int_equal(bot_ua_stacks(&r, "GRPC-Python/1.51.1 grpc-c/29.0.0 (linux; chttp2)", s, 8), 1);
    assert_string_equal(r.stacks[s[0]].name, "grpc-core");
    assert_int_equal(bot_ua_stacks(&r, "grpc-go/1.60.1 myapp/1 grpc-python/1.51.1 grpc-c/29.0.0", s, 8), 2);
    assert_string_equal(r.stacks[s[0]].name, "grpc-go");
    assert_string_equal(r.stacks[s[1]].name, "grpc-core");
    assert_int_equal(bot_ua_stacks(&r, "myapp/1.0 (grpc-go/1.0)", s, 8), 0); /* in a comment */
    assert_int_equal(bot_ua_stacks(&r, NULL, s, 8), 0);
    assert_int_equal(bot_rules_stack(&r, "grpc-java", 9), 2);
    assert_int_equal(bot_rules_stack(&r, "grpc-jav", 8), -1);
    const bot_fp *go = bot_rules_fp(&r, BOT_FP_JA4, "t13d1910h2_9dc949149365_97f8aa674fd9");
    assert_true(bot_fp_is_stack(&r, go));
    assert_true(bot_fp_in_stack(go, "grpc-go") && bot_fp_in_stack(go, "go-http"));
    assert_false(bot_fp_in_stack(go, "grpc") || bot_fp_in_stack(go, "go") || bot_fp_in_stack(go, "grpc-go+"));
    assert_false(bot_fp_is_stack(&r, bot_rules_fp(&r, BOT_FP_JA4, "t13d3111h2_e8f1e7e78f70_1f22a2ca17c4")));
    bot_rules_free(&r);
}

static void test_stack_rule_errors(void **state)
{
    (void)state;
    static const bad_rules cases[] = {
        {"stack\n", "x.rules:1: expected a stack name"},
        {"stack a+b x\n", "x.rules:1: expected a stack name"},
        {"stack a x/1\n", "x.rules:1: bad product \"x/1\""},
        {"stack a x(\n", "x.rules:1: bad product \"x(\""},
        {"stack a grpc-go\nstack b GRPC-GO\n", "x.rules:2: product \"GRPC-GO\" already belongs to stack a"},
        {"fingerprint ja4 t13d_x_y browser 50 a++b\n", "x.rules:1: expected one label"},
        {"fingerprint ja4 t13d_x_y browser 50 +a\n", "x.rules:1: expected one label"},
        {"fingerprint ja4 t13d_x_y browser 50 a+\n", "x.rules:1: expected one label"},
    };
    expect_rule_errors(cases, sizeof cases / sizeof cases[0]);
    /* A later line for a stack adds products; repeating one is harmless. */
    bot_rules r = {0};
    char err[256];
    const char t[] = "stack a p1\nstack a p2 p1\n";
    assert_int_equal(bot_rules_load_text(&r, "x.rules", t, sizeof t - 1, err, sizeof err), 0);
    assert_int_equal(r.nstacks, 1);
    assert_int_equal(r.stacks[0].nproducts, 2);
    assert_int_equal(bot_rules_product_stack(&r, "P2", 2), 0);
    bot_rules_free(&r);
}

static void test_score_ua_stack_mismatch(void **state)
{
    (void)state;
    bot_rules r = stack_rules();
    const char *core = "t13d0812gp_48922242edce_b14c9c0b5032", *go = "t13d1910h2_9dc949149365_97f8aa674fd9";
    /* Honest: grpcio as itself, with an application's product in front, and grpc-go as itself. */
    bot_verdict v =
        eval(&r, (bot_input){.ja4 = core, .user_agent = "grpc-python/1.51.1 grpc-c/29.0.0 (linux)"});
    assert_int_equal(v.score, 60);
    assert_null(strstr(v.signals, "mismatch"));
    v = eval(&r,
             (bot_input){.ja4 = core, .user_agent = "myapp/2.0 grpc-python/1.51.1 grpc-c/29.0.0 (linux)"});
    assert_int_equal(v.score, 60);
    v = eval(&r, (bot_input){.ja4 = go, .h2fp = "|00|0|m,s,p,a", .user_agent = "grpc-go/1.33.3"});
    assert_int_equal(v.score, 60);
    assert_string_equal(v.signals, "fp:grpc-go+go-http,ua:grpc-go");
    /* grpcio claiming grpc-go (it appends its own products): the first stack that does not fit is named. */
    v = eval(&r, (bot_input){.ja4 = core,
                             .user_agent = "grpc-go/1.60.1 grpc-python/1.51.1 grpc-c/29.0.0 (linux)"});
    assert_true(v.score < 30);
    assert_string_equal(v.class, "likely_automated");
    assert_string_equal(v.signals, "fp:grpc-core,ua:grpc-go,ua_stack_mismatch:grpc-go/grpc-core");
    /* Only the HTTP/2 fingerprint known: it decides. */
    v = eval(&r, (bot_input){.h2fp = "2:0;3:0;4:4194303;5:4194303;6:8192;65027:1|00|0|p,a,m,s",
                             .user_agent = "grpc-java-okhttp/1.58.0"});
    assert_true(v.score < 30);
    assert_non_null(strstr(v.signals, "ua_stack_mismatch:grpc-java/grpc-core"));
    /* Go's TLS over grpc-core's HTTP/2 frames, claiming grpc-go: the HTTP/2 fingerprint gives it away. */
    v = eval(&r, (bot_input){.ja4 = go,
                             .h2fp = "2:0;3:0;4:4194303;5:4194303;6:8192;65027:1|00|0|p,a,m,s",
                             .user_agent = "grpc-go/1.60.1"});
    assert_non_null(strstr(v.signals, "ua_stack_mismatch:grpc-go/grpc-core"));
    /* A fingerprint shared by two stacks fits both. */
    v = eval(&r, (bot_input){.ja4 = go, .user_agent = "Go-http-client/2.0"});
    assert_null(strstr(v.signals, "ua_stack_mismatch"));
    /* Firefox's User-Agent over Chromium's TLS. */
    v = eval(&r, (bot_input){.ja4 = "t13d1517h2_8daaf6152771_cb7bf5808d99",
                             .user_agent =
                                 "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"});
    assert_true(v.score < 30);
    assert_non_null(strstr(v.signals, "ua_stack_mismatch:firefox/chromium"));
    /* Nothing to compare: an unknown fingerprint, a label that names no stack, a UA naming no stack. */
    const char *none[][2] = {{"t13d0000h2_aaaaaaaaaaaa_bbbbbbbbbbbb", "grpc-go/1.60.1"},
                             {"t13d3111h2_e8f1e7e78f70_1f22a2ca17c4", "grpc-go/1.60.1"},
                             {core, "myapp/1.0"}};
    for (size_t i = 0; i < 3; i++) {
        v = eval(&r, (bot_input){.ja4 = none[i][0], .user_agent = none[i][1]});
        if (strstr(v.signals, "stack")) fail_msg("case %zu: %s", i, v.signals);
    }
    bot_rules_free(&r);
}

static void test_score_expect_clients(void **state)
{
    (void)state;
    bot_rules r = stack_rules();
    const char *const expect[] = {"grpc-go", "grpc-java"};
    bot_input in = {.ja4 = "t13d1910h2_9dc949149365_97f8aa674fd9",
                    .h2fp = "|00|0|m,s,p,a",
                    .user_agent = "grpc-go/1.33.3",
                    .expect = expect,
                    .nexpect = 2};
    assert_int_equal(eval(&r, in).score, 60); /* expected */
    /* Another known stack, honest about itself: lowered. */
    in.ja4 = "t13d0812gp_48922242edce_b14c9c0b5032";
    in.h2fp = NULL;
    in.user_agent = "grpc-python/1.51.1 grpc-c/29.0.0";
    bot_verdict v = eval(&r, in);
    assert_true(v.score < 30);
    assert_string_equal(v.signals, "fp:grpc-core,ua:grpc-python,unexpected_client:grpc-core");
    /* Expected TLS, another stack's HTTP/2 frames: lowered too. */
    in.ja4 = "t13d1910h2_9dc949149365_97f8aa674fd9";
    in.h2fp = "2:0;3:0;4:4194303;5:4194303;6:8192;65027:1|00|0|p,a,m,s";
    in.user_agent = NULL;
    assert_non_null(strstr(eval(&r, in).signals, "unexpected_client:grpc-core"));
    /* Unknown fingerprints keep the neutral score; so does a fingerprint that names no stack. */
    in.ja4 = "t13d0000h2_aaaaaaaaaaaa_bbbbbbbbbbbb";
    in.h2fp = "1:1|00|0|m,s,p,a";
    in.user_agent = "myapp/1.0";
    v = eval(&r, in);
    assert_int_equal(v.score, 50);
    assert_null(strstr(v.signals, "unexpected"));
    in.ja4 = "t13d3111h2_e8f1e7e78f70_1f22a2ca17c4";
    assert_null(strstr(eval(&r, in).signals, "unexpected"));
    /* No list: any client. */
    in.ja4 = "t13d0812gp_48922242edce_b14c9c0b5032";
    in.nexpect = 0;
    assert_int_equal(eval(&r, in).score, 60);
    bot_rules_free(&r);
}

static void test_signals_never_overflow(void **state)
{
    (void)state;
    bot_rules r = {0};
    char err[256], text[512];
    /* Labels at their longest make every signal long. */
    char label[65];
    memset(label, 'x', 64);
    label[64] = '\0';
    int n = snprintf(text, sizeof text,
                     "fingerprint ja4 t13d0812gp_48922242edce_b14c9c0b5032 grpc_library 60 %s\n"
                     "useragent browser %s ^M\nverified %s 10.0.0.0/8 M\n",
                     label, label, label);
    assert_int_equal(bot_rules_load_text(&r, "long.rules", text, (size_t)n, err, sizeof err), 0);
    bot_rules_finish(&r);
    uint8_t a[16];
    bot_parse_ip("11.0.0.1", a);
    bot_verdict v = eval(&r, (bot_input){.ja4 = "t13d0812gp_48922242edce_b14c9c0b5032",
                                         .user_agent = "Mozilla",
                                         .addr = a,
                                         .rate = 1e9,
                                         .done = 1e9,
                                         .errors = 1e9});
    assert_true(strlen(v.signals) < sizeof v.signals);
    assert_int_equal(v.score, 2);
    bot_rules_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_bounded_with_100000_addresses),
        cmocka_unit_test(test_table_evicts_least_recently_seen),
        cmocka_unit_test(test_process_table_counts_every_thread),
        cmocka_unit_test(test_process_table_bounded),
        cmocka_unit_test(test_fleet_cache_flush_and_answer),
        cmocka_unit_test(test_fleet_cache_drop),
        cmocka_unit_test(test_fleet_cache_bounded),
        cmocka_unit_test(test_estimate_merge),
        cmocka_unit_test(test_ipv6_counted_per_64),
        cmocka_unit_test(test_sliding_window),
        cmocka_unit_test(test_rules_lookup),
        cmocka_unit_test(test_rules_later_entry_wins),
        cmocka_unit_test(test_rules_errors_name_the_line),
        cmocka_unit_test(test_shipped_rules_load),
        cmocka_unit_test(test_shipped_rules_dir_fallback),
        cmocka_unit_test(test_score_grpc_library_is_not_penalised),
        cmocka_unit_test(test_score_browser_ua_over_library),
        cmocka_unit_test(test_score_unknown_and_missing),
        cmocka_unit_test(test_score_known_bad_is_1),
        cmocka_unit_test(test_score_verified_bot),
        cmocka_unit_test(test_score_behaviour),
        cmocka_unit_test(test_ua_products_in_order),
        cmocka_unit_test(test_ua_stacks),
        cmocka_unit_test(test_stack_rule_errors),
        cmocka_unit_test(test_score_ua_stack_mismatch),
        cmocka_unit_test(test_score_expect_clients),
        cmocka_unit_test(test_signals_never_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
