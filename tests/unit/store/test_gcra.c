/* GCRA and the token bucket of the rate limits (plugins/store/gcra.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "gcra.h"

#define S 1000000000ull

static void burst_then_rate(void **state)
{
    (void)state;
    rl_gcra g;
    rl_gcra_init(&g, 10, 10); /* 10 calls per 10 s: a burst of 10, then one a second */
    assert_int_equal(g.t_ns, S);
    uint64_t tat = 0, retry = 0, t0 = 1000 * S;
    for (int i = 0; i < 10; i++)
        assert_int_equal(rl_gcra_take(&g, &tat, t0, 1, &retry), 1);
    assert_int_equal(rl_gcra_take(&g, &tat, t0, 1, &retry), 0);
    assert_int_equal(retry, S); /* the next call in one emission interval */
    assert_int_equal(rl_gcra_take(&g, &tat, t0 + S - 1, 1, &retry), 0);
    assert_int_equal(retry, 1);
    assert_int_equal(rl_gcra_take(&g, &tat, t0 + S, 1, &retry), 1);
    assert_int_equal(rl_gcra_take(&g, &tat, t0 + S, 1, &retry), 0);
}

static void takes_several_at_once(void **state)
{
    (void)state;
    rl_gcra g;
    rl_gcra_init(&g, 100, 10);
    uint64_t tat = 0, retry = 0, t0 = 5 * S;
    assert_int_equal(rl_gcra_take(&g, &tat, t0, 64, &retry), 64);
    assert_int_equal(rl_gcra_take(&g, &tat, t0, 64, &retry), 36); /* only what is left */
    assert_int_equal(rl_gcra_take(&g, &tat, t0, 64, &retry), 0);
    assert_int_equal(retry, g.t_ns);
}

/* Over every window of random arrivals, admissions never exceed 2 calls - 1 (a full burst after an
 * idle window, then the sustained rate), and over the whole run calls + length / T. */
static void bound_over_any_window(void **state)
{
    (void)state;
    rl_gcra g;
    rl_gcra_init(&g, 50, 5);
    uint64_t tat = 0, t = 100 * S;
    enum { N = 20000 };
    static uint64_t admitted[N];
    size_t na = 0;
    srand(7);
    for (int i = 0; i < N; i++) {
        t += (uint64_t)(rand() % 40) * 1000000ull; /* 0-40 ms apart: about 2x the limit */
        if (rl_gcra_take(&g, &tat, t, 1, NULL)) admitted[na++] = t;
    }
    assert_true(na > 1000);
    for (size_t a = 0, b = 0; a < na; a++) {
        while (b < na && admitted[b] < admitted[a] + g.window_ns)
            b++;
        assert_true(b - a <= 2 * 50 - 1);
    }
    assert_true(na <= 50 + (admitted[na - 1] - admitted[0]) / g.t_ns + 1);
}

static void bucket_shapes(void **state)
{
    (void)state;
    rl_bucket b = {0};
    uint64_t t0 = 7 * S;
    for (int i = 0; i < 100; i++)
        assert_int_equal(rl_bucket_take(&b, 100, 100, t0), 0);
    uint64_t wait = rl_bucket_take(&b, 100, 100, t0);
    assert_true(wait > 9900000 && wait <= 10000001); /* 10 ms for the next token */
    assert_int_equal(rl_bucket_take(&b, 100, 100, t0 + wait), 0);
    /* idle a long time: back to the burst, not more */
    int n = 0;
    while (rl_bucket_take(&b, 100, 100, t0 + 3600 * S) == 0)
        n++;
    assert_int_equal(n, 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(burst_then_rate),
        cmocka_unit_test(takes_several_at_once),
        cmocka_unit_test(bound_over_any_window),
        cmocka_unit_test(bucket_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
