/* GCRA and the token bucket (see gcra.h). */
#include "gcra.h"

void rl_gcra_init(rl_gcra *g, uint64_t calls, uint64_t window_s)
{
    g->window_ns = window_s * 1000000000ull;
    g->t_ns = g->window_ns / (calls ? calls : 1);
    if (g->t_ns == 0) g->t_ns = 1;
}

uint32_t rl_gcra_take(const rl_gcra *g, uint64_t *tat, uint64_t now, uint32_t want, uint64_t *retry_ns)
{
    uint64_t t = *tat > now ? *tat : now;
    /* calls that fit: k with (t + (k - 1) T) - now <= window - T, i.e. k <= (window - (t - now)) / T */
    uint64_t ahead = t - now;
    uint64_t room = ahead <= g->window_ns ? (g->window_ns - ahead) / g->t_ns : 0;
    uint32_t n = room < want ? (uint32_t)room : want;
    if (n == 0) {
        /* admitted again once TAT - now <= window - T */
        if (retry_ns) *retry_ns = ahead + g->t_ns - g->window_ns;
        return 0;
    }
    *tat = t + (uint64_t)n * g->t_ns;
    return n;
}

uint64_t rl_bucket_take(rl_bucket *b, double rate, double burst, uint64_t now)
{
    if (b->last_ns == 0) {
        b->tokens = burst;
        b->last_ns = now;
    } else if (now > b->last_ns) {
        b->tokens += (double)(now - b->last_ns) * rate / 1e9;
        if (b->tokens > burst) b->tokens = burst;
        b->last_ns = now;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 0;
    }
    uint64_t wait = (uint64_t)((1.0 - b->tokens) * 1e9 / rate) + 1;
    return wait;
}
