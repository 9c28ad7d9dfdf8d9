/* A Redis client for one worker's event loop (hiredis, its libuv adapter): scripts evaluated
 * asynchronously, each answered exactly once, by Redis or by a timeout, never blocking the loop.
 * It connects on its own and reconnects after a failure (backoff 100 ms to 2 s). While the
 * connection is down, or after a timeout until Redis answers a probe again, requests fail at once
 * instead of waiting: a Redis that is gone or hangs costs a call at most one timeout. */
#ifndef PC_STORE_REDIS_STORE_H
#define PC_STORE_REDIS_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct rl_redis rl_redis;

/* ip (numeric), port, timeout per request. NULL when out of memory. */
rl_redis *rl_redis_new(uv_loop_t *loop, const char *ip, int port, uint64_t timeout_ms);
/* Fails what is pending (error), closes; the loop must run afterwards for the handles to go. */
void rl_redis_free(rl_redis *c);
int rl_redis_connected(const rl_redis *c);
/* Whether a request made now would go to Redis (connected and answering, or still connecting: then
 * hiredis keeps it until the connection is there) rather than fail at once. */
int rl_redis_usable(const rl_redis *c);

/* The answer to one script: ok 0 with the integers it returned (up to 4), or -1 on any error
 * (not connected, timeout, an error reply). */
typedef void (*rl_redis_cb)(void *arg, int ok, const long long *ints, size_t nints);

/* EVAL script with one key and string arguments; cb exactly once, never before this returns. */
void rl_redis_eval(rl_redis *c, const char *script, const char *key, const char *const *args, size_t nargs,
                   rl_redis_cb cb, void *arg);

#endif
