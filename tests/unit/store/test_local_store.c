/* The local store of the rate limits (plugins/store/local_store.c): one limit for every worker
 * thread of the process, calls in flight, and a bounded number of keys. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "local_store.h"

#define S 1000000000ull

static void key_of(uint8_t key[16], uint32_t n)
{
    memset(key, 0, 16);
    /* digests are spread over all their bytes; so are these */
    uint64_t x = (uint64_t)n * 0x9e3779b97f4a7c15ull;
    memcpy(key, &x, 8);
    x ^= x >> 29;
    memcpy(key + 8, &x, 8);
}

typedef struct job {
    rl_local *s;
    rl_gcra *g;
    int taken;
} job;

static void *taker(void *arg)
{
    job *j = arg;
    uint8_t key[16];
    key_of(key, 1);
    for (int i = 0; i < 2000; i++)
        j->taken += (int)rl_local_take(j->s, key, j->g, 10 * S, 1, NULL);
    return NULL;
}

/* Four threads (as four workers) share one limit: exactly `calls` admitted, not four times. */
static void one_limit_for_all_threads(void **state)
{
    (void)state;
    rl_local *s = rl_local_new(1024);
    assert_non_null(s);
    rl_gcra g;
    rl_gcra_init(&g, 500, 3600);
    job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){s, &g, 0};
        pthread_create(&th[i], NULL, taker, &jobs[i]);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += jobs[i].taken;
    }
    assert_int_equal(total, 500);
    rl_local_free(s);
}

static void calls_in_flight(void **state)
{
    (void)state;
    rl_local *s = rl_local_new(1024);
    uint8_t a[16], b[16];
    key_of(a, 1);
    key_of(b, 2);
    assert_true(rl_local_acquire(s, a, 2));
    assert_true(rl_local_acquire(s, a, 2));
    assert_false(rl_local_acquire(s, a, 2));
    assert_true(rl_local_acquire(s, b, 2)); /* another key, its own count */
    assert_int_equal(rl_local_inflight(s, a), 2);
    rl_local_release(s, a);
    assert_true(rl_local_acquire(s, a, 2));
    rl_local_release(s, a);
    rl_local_release(s, a);
    rl_local_release(s, a); /* one release too many does not go below zero */
    assert_int_equal(rl_local_inflight(s, a), 0);
    rl_local_free(s);
}

/* Past max_keys, keys whose window is over make room; a key with calls in flight is never dropped. */
static void bounded_keys(void **state)
{
    (void)state;
    rl_local *s = rl_local_new(1024);
    rl_gcra g;
    rl_gcra_init(&g, 1, 1);
    uint8_t held[16], key[16];
    key_of(held, 999999);
    assert_true(rl_local_acquire(s, held, 1));
    for (uint32_t i = 0; i < 100000; i++) {
        key_of(key, i);
        rl_local_take(s, key, &g, (10 + i) * S, 1, NULL); /* each key's window over by the next */
    }
    assert_int_equal(rl_local_inflight(s, held), 1);
    assert_false(rl_local_acquire(s, held, 1));
    /* a key still within its window is remembered: refused again */
    key_of(key, 99999);
    assert_int_equal(rl_local_take(s, key, &g, (10 + 99999) * S, 1, NULL), 0);
    rl_local_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_limit_for_all_threads),
        cmocka_unit_test(calls_in_flight),
        cmocka_unit_test(bounded_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
