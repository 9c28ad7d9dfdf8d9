/* Rate arithmetic shared by the plugins that limit: GCRA for "calls per window" and a token bucket
 * for shaping a stream. Pure functions on caller-held state, in nanoseconds, no clock of their own.
 *
 * GCRA (the generic cell rate algorithm, as in ATM and Redis-cell): a limit of `calls` per `window`
 * admits a burst of up to `calls` at once, then one call per emission interval T = window / calls.
 * State is one number, the theoretical arrival time (TAT). A call at `now` is admitted when
 * TAT - now <= window - T; TAT then moves to max(TAT, now) + T. Exact in integer nanoseconds: over
 * any interval of length L it admits at most `calls` + L / T calls, so at most 2 calls - 1 within
 * one window (a full burst after an idle window, then the sustained rate) and `calls` per window
 * sustained. */
#ifndef PC_STORE_GCRA_H
#define PC_STORE_GCRA_H

#include <stdint.h>

typedef struct rl_gcra {
    uint64_t t_ns;      /* emission interval: window / calls */
    uint64_t window_ns; /* window */
} rl_gcra;

/* calls per window_s (both > 0). */
void rl_gcra_init(rl_gcra *g, uint64_t calls, uint64_t window_s);

/* Takes up to `want` (>= 1) calls at `now` from the bucket whose TAT is *tat (0: never used).
 * Returns how many were taken (0 when refused; then *retry_ns, when not NULL, is how long until
 * one call would be admitted). */
uint32_t rl_gcra_take(const rl_gcra *g, uint64_t *tat, uint64_t now, uint32_t want, uint64_t *retry_ns);

/* A token bucket: `rate` tokens per second up to `burst`, starting full. */
typedef struct rl_bucket {
    double tokens;
    uint64_t last_ns; /* 0: never used (full) */
} rl_bucket;

/* 0 when a token was taken at `now`; else the nanoseconds until one is there (nothing taken). */
uint64_t rl_bucket_take(rl_bucket *b, double rate, double burst, uint64_t now);

#endif
