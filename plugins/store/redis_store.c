/* The per-worker Redis client (see redis_store.h). */
#include "redis_store.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define PROBE_MS 200
#define STALL_MS 1000 /* a connect or a probe that long without an answer: drop the connection */

typedef struct op {
    rl_redis *c;
    rl_redis_cb cb;
    void *arg;
    uv_timer_t timer;
    int refs;     /* the reply callback and the timer each hold one */
    int answered; /* cb ran */
    struct op *prev, *next;
} op;

struct rl_redis {
    uv_loop_t *loop;
    char ip[64];
    int port;
    uint64_t timeout_ms;
    redisAsyncContext *ac; /* NULL: not connected */
    int up;                /* connected, and the last request did not time out */
    int connecting;        /* connect in progress: requests are buffered by hiredis meanwhile */
    int probing;           /* a PING is out while !up */
    uint64_t since_ms;     /* when the connect or the probe started */
    uint64_t backoff_ms;
    uv_timer_t retry; /* reconnects, and probes a hung server */
    int freeing;
    op *ops; /* waiting for their answer */
};

static void connect_now(rl_redis *c);

static void op_unref(op *o)
{
    if (--o->refs > 0) return;
    free(o);
}

static void on_timer_closed(uv_handle_t *h)
{
    op_unref(h->data);
}

static void answer(op *o, int ok, const long long *ints, size_t n)
{
    if (o->answered) return;
    o->answered = 1;
    if (o->prev)
        o->prev->next = o->next;
    else
        o->c->ops = o->next;
    if (o->next) o->next->prev = o->prev;
    uv_timer_stop(&o->timer);
    uv_close((uv_handle_t *)&o->timer, on_timer_closed);
    o->cb(o->arg, ok, ints, n);
}

static void on_reply(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    op *o = priv;
    redisReply *reply = r;
    if (reply && reply->type != REDIS_REPLY_ERROR) {
        long long ints[4] = {0};
        size_t n = 0;
        if (reply->type == REDIS_REPLY_INTEGER) {
            ints[n++] = reply->integer;
        } else if (reply->type == REDIS_REPLY_ARRAY) {
            for (size_t i = 0; i < reply->elements && n < 4; i++)
                if (reply->element[i]->type == REDIS_REPLY_INTEGER) ints[n++] = reply->element[i]->integer;
        }
        if (!o->answered) o->c->up = 1; /* an answer in time: the server works */
        answer(o, 0, ints, n);
    } else {
        answer(o, -1, NULL, 0);
    }
    op_unref(o);
}

static void on_timeout(uv_timer_t *t)
{
    op *o = t->data;
    /* Redis may hang (or a connect never completes): later requests fail at once until a probe is
     * answered. */
    o->c->up = 0;
    o->c->connecting = 0;
    answer(o, -1, NULL, 0);
}

static void on_probe(redisAsyncContext *ac, void *r, void *priv)
{
    (void)ac;
    rl_redis *c = priv;
    c->probing = 0;
    if (r && !c->freeing) c->up = 1;
}

static void fail_all(rl_redis *c)
{
    while (c->ops)
        answer(c->ops, -1, NULL, 0);
}

static void on_retry(uv_timer_t *t)
{
    rl_redis *c = t->data;
    if (!c->ac) {
        connect_now(c);
    } else if ((c->connecting || c->probing) && uv_now(c->loop) - c->since_ms >= STALL_MS) {
        /* A connect that never completes (libuv may stop polling a socket whose connect failed,
         * without hiredis hearing of it) or a server that does not answer: start over. */
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        c->up = c->connecting = c->probing = 0;
        redisAsyncFree(ac); /* answers what is pending with NULL replies */
        fail_all(c);
        uv_timer_start(&c->retry, on_retry, BACKOFF_MIN_MS, 0);
    } else if (!c->up && !c->probing) {
        c->probing = 1;
        c->since_ms = uv_now(c->loop);
        if (redisAsyncCommand(c->ac, on_probe, c, "PING") != REDIS_OK) c->probing = 0;
    }
}

static void schedule(rl_redis *c, uint64_t ms)
{
    if (!c->freeing) uv_timer_start(&c->retry, on_retry, ms, c->ac ? PROBE_MS : 0);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    rl_redis *c = ac->data;
    if (c->ac != ac) return; /* dropped meanwhile */
    c->connecting = 0;
    if (status != REDIS_OK) {
        c->ac = NULL; /* hiredis frees it */
        c->up = 0;
        fail_all(c);
        c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (c->backoff_ms > BACKOFF_MAX_MS) c->backoff_ms = BACKOFF_MAX_MS;
        schedule(c, c->backoff_ms);
        return;
    }
    c->up = 1;
    c->backoff_ms = 0;
    uv_timer_start(&c->retry, on_retry, PROBE_MS, PROBE_MS); /* probes while !up */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    rl_redis *c = ac->data;
    if (c->ac != ac) return; /* dropped by on_retry, which goes on by itself */
    c->ac = NULL;
    c->up = 0;
    c->connecting = 0;
    c->probing = 0;
    fail_all(c);
    if (c->freeing) return;
    c->backoff_ms = c->backoff_ms ? c->backoff_ms : BACKOFF_MIN_MS;
    uv_timer_start(&c->retry, on_retry, c->backoff_ms, 0);
}

static void connect_now(rl_redis *c)
{
    redisAsyncContext *ac = redisAsyncConnect(c->ip, c->port);
    if (!ac || ac->err) {
        if (ac) redisAsyncFree(ac);
        c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (c->backoff_ms > BACKOFF_MAX_MS) c->backoff_ms = BACKOFF_MAX_MS;
        uv_timer_start(&c->retry, on_retry, c->backoff_ms, 0);
        return;
    }
    ac->data = c;
    redisLibuvAttach(ac, c->loop);
    /* The connection never keeps a stopping worker alive (requests waiting on it have timers). */
    redisLibuvEvents *ev = ac->ev.data;
    if (ev) uv_unref((uv_handle_t *)&ev->handle);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    c->ac = ac;
    c->connecting = 1;
    c->since_ms = uv_now(c->loop);
    uv_timer_start(&c->retry, on_retry, PROBE_MS, PROBE_MS); /* watches the connect */
    /* hiredis learns that a connect completed (or failed) when it first writes: a probe now makes
     * that happen whether or not a call comes. */
    c->probing = 1;
    if (redisAsyncCommand(ac, on_probe, c, "PING") != REDIS_OK) c->probing = 0;
}

rl_redis *rl_redis_new(uv_loop_t *loop, const char *ip, int port, uint64_t timeout_ms)
{
    rl_redis *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->loop = loop;
    snprintf(c->ip, sizeof c->ip, "%s", ip);
    c->port = port;
    c->timeout_ms = timeout_ms ? timeout_ms : 1;
    uv_timer_init(loop, &c->retry);
    c->retry.data = c;
    uv_unref((uv_handle_t *)&c->retry); /* never keeps a stopping worker alive */
    connect_now(c);
    return c;
}

static void on_retry_closed(uv_handle_t *h)
{
    free(h->data);
}

void rl_redis_free(rl_redis *c)
{
    if (!c) return;
    c->freeing = 1;
    if (c->ac) redisAsyncFree(c->ac); /* answers what is pending with NULL replies */
    c->ac = NULL;
    fail_all(c);
    uv_close((uv_handle_t *)&c->retry, on_retry_closed);
}

int rl_redis_connected(const rl_redis *c)
{
    return c->ac && c->up;
}

int rl_redis_usable(const rl_redis *c)
{
    return c->ac && (c->up || c->connecting);
}

void rl_redis_eval(rl_redis *c, const char *script, const char *key, const char *const *args, size_t nargs,
                   rl_redis_cb cb, void *arg)
{
    op *o = calloc(1, sizeof *o);
    if (!o) {
        cb(arg, -1, NULL, 0);
        return;
    }
    o->c = c;
    o->cb = cb;
    o->arg = arg;
    uv_timer_init(c->loop, &o->timer);
    o->timer.data = o;
    o->refs = 1; /* the timer */
    o->next = c->ops;
    if (c->ops) c->ops->prev = o;
    c->ops = o;
    const char *argv[16];
    size_t argl[16], n = 0;
    argv[n++] = "EVAL";
    argv[n++] = script;
    argv[n++] = "1";
    argv[n++] = key;
    for (size_t i = 0; i < nargs && n < 16; i++)
        argv[n++] = args[i];
    for (size_t i = 0; i < n; i++)
        argl[i] = strlen(argv[i]);
    /* Down or hung: fail now (after this returns), not after a timeout. While connecting, hiredis
     * keeps the request until the connection is there (within the timeout). */
    int sent = c->ac && (c->up || c->connecting) &&
               redisAsyncCommandArgv(c->ac, on_reply, o, (int)n, argv, argl) == REDIS_OK;
    if (sent) o->refs++;
    uv_timer_start(&o->timer, on_timeout, sent ? c->timeout_ms : 0, 0);
}
