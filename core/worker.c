/* Worker threads. Each binds its own listening sockets with SO_REUSEPORT so the kernel spreads
 * connections across workers, and runs every connection it accepts to the end on its own loop. */
#include "worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "h2_server.h"
#include "access_log.h"
#include "log.h"
#include "metrics.h"
#include "plugin_loader.h"
#include "upstream.h"

/* Only there so the loop polls without blocking while output waits for the check phase. */
static void on_idle(uv_idle_t *h)
{
    (void)h;
}

void pc__worker_wake(pc_worker *w)
{
    if (!uv_is_active((uv_handle_t *)&w->idle) && !uv_is_closing((uv_handle_t *)&w->idle))
        uv_idle_start(&w->idle, on_idle);
}

void pc__worker_schedule(pc_worker *w, pc_flushable *f)
{
    if (f->queued) return;
    f->queued = true;
    f->next = w->dirty;
    w->dirty = f;
    if (!uv_is_active((uv_handle_t *)&w->idle)) uv_idle_start(&w->idle, on_idle);
}

static void on_check(uv_check_t *h)
{
    pc_worker *w = h->data;
    /* Flushing one connection can make another dirty (a proxied frame); loop until quiet. */
    while (w->dirty) {
        pc_flushable *list = w->dirty;
        w->dirty = NULL;
        while (list) {
            pc_flushable *f = list;
            list = f->next;
            f->queued = false;
            f->flush(f);
        }
    }
    uv_idle_stop(&w->idle);
    if (w->loglen) pc__access_log_flush(w);
}

static void on_accept(uv_stream_t *server, int status)
{
    pc_worker *w = server->loop->data;
    if (status < 0) {
        pc_log_warn("accept: %s", uv_strerror(status));
        return;
    }
    size_t index = (size_t)(uintptr_t)server->data;
    pc__h2conn_accept(w, server, index);
}

static int bind_listener(pc_worker *w, const pc_config *cfg, size_t i, char *err, size_t errlen)
{
    const pc_listen_conf *l = &cfg->listen[i];
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    int family;
    if (uv_ip4_addr(l->host, l->port, (struct sockaddr_in *)&ss) == 0) {
        family = AF_INET;
    } else if (uv_ip6_addr(l->host, l->port, (struct sockaddr_in6 *)&ss) == 0) {
        family = AF_INET6;
    } else {
        snprintf(err, errlen, "listen %s: not a numeric address", l->address);
        return -1;
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "listen %s: %s", l->address, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    socklen_t slen = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (bind(fd, (struct sockaddr *)&ss, slen) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "listen %s: %s", l->address, strerror(errno));
        close(fd);
        return -1;
    }
    uv_tcp_t *t = &w->listeners[i];
    uv_tcp_init(&w->loop, t);
    t->data = (void *)(uintptr_t)i;
    if (uv_tcp_open(t, fd) != 0 || uv_listen((uv_stream_t *)t, 1024, on_accept) != 0) {
        snprintf(err, errlen, "listen %s: cannot start listening", l->address);
        return -1;
    }
    return 0;
}

static void handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void gen_free(pc_gen *g)
{
    for (size_t i = 0; i < g->cfg->norigins; i++)
        pc__pool_free(g->pools[i]);
    free(g->pools);
    if (g->rt->plugins) pc__plugins_worker_destroy(g->rt->plugins, g->plugin_ctx);
    atomic_fetch_sub(&g->rt->refs, 1);
    free(g);
}

pc_gen *pc__gen_acquire(pc_worker *w)
{
    w->gen->refs++;
    return w->gen;
}

void pc__gen_release(pc_gen *g)
{
    if (g && --g->refs == 0) gen_free(g);
}

static pc_gen *gen_new(pc_worker *w, pc_runtime *rt, char *err, size_t errlen)
{
    pc_gen *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    g->refs = 1;
    g->worker = w;
    g->rt = rt;
    g->cfg = rt->cfg;
    atomic_fetch_add(&rt->refs, 1);
    g->pools = calloc(g->cfg->norigins ? g->cfg->norigins : 1, sizeof *g->pools);
    if (!g->pools) {
        snprintf(err, errlen, "out of memory");
        gen_free(g);
        return NULL;
    }
    for (size_t i = 0; i < g->cfg->norigins; i++)
        if (!(g->pools[i] = pc__pool_new(w, g, i))) {
            snprintf(err, errlen, "out of memory");
            gen_free(g);
            return NULL;
        }
    if (rt->plugins &&
        pc__plugins_worker_init(rt->plugins, (unsigned)w->id, &g->plugin_ctx, err, errlen) < 0) {
        gen_free(g);
        return NULL;
    }
    return g;
}

static void on_reload(uv_async_t *a)
{
    pc_worker *w = a->data;
    uv_mutex_lock(&w->reload_lock);
    pc_runtime *rt = w->reload_rt;
    w->reload_rt = NULL;
    uv_mutex_unlock(&w->reload_lock);
    if (!rt || w->draining) {
        if (rt) atomic_fetch_sub(&rt->refs, 1);
        return;
    }
    char err[512];
    pc_gen *g = gen_new(w, rt, err, sizeof err);
    atomic_fetch_sub(&rt->refs, 1); /* the hand-over reference; the generation holds its own */
    if (!g) {
        pc_log_error("worker %d: reload failed, keeping the previous config: %s", w->id, err);
        return;
    }
    pc_gen *old = w->gen;
    w->gen = g;
    /* Streams in flight keep the old generation until they end. */
    for (size_t i = 0; i < old->cfg->norigins; i++)
        pc__pool_close(old->pools[i], true);
    pc__gen_release(old);
}

void pc__worker_reload(pc_worker *w, pc_runtime *rt)
{
    atomic_fetch_add(&rt->refs, 1);
    uv_mutex_lock(&w->reload_lock);
    pc_runtime *prev = w->reload_rt;
    w->reload_rt = rt;
    uv_mutex_unlock(&w->reload_lock);
    if (prev) atomic_fetch_sub(&prev->refs, 1);
    uv_async_send(&w->reload_async);
}

static void finish(pc_worker *w)
{
    for (size_t i = 0; i < w->gen->cfg->norigins; i++)
        pc__pool_close(w->gen->pools[i], false);
    if (!uv_is_closing((uv_handle_t *)&w->idle)) {
        uv_close((uv_handle_t *)&w->idle, handle_closed);
        uv_close((uv_handle_t *)&w->check, handle_closed);
        uv_close((uv_handle_t *)&w->stop_async, handle_closed);
        uv_close((uv_handle_t *)&w->reload_async, handle_closed);
        uv_close((uv_handle_t *)&w->drain_timer, handle_closed);
        uv_close((uv_handle_t *)&w->stall_timer, handle_closed);
    }
}

void pc__worker_conn_closed(pc_worker *w)
{
    w->nconns--;
    if (w->draining && w->conns == NULL) finish(w);
}

/* Once a second: connections whose output the client will not take (see send_timeout_ms). */
static void on_stall_check(uv_timer_t *t)
{
    pc_worker *w = t->data;
    uint64_t now = uv_now(&w->loop);
    for (pc_h2conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        pc__h2conn_check_stall(c, now);
    }
}

static void on_drain_timeout(uv_timer_t *t)
{
    pc_worker *w = t->data;
    pc_log_warn("worker %d: drain timeout: closing %llu connections", w->id, (unsigned long long)w->nconns);
    for (pc_h2conn *c = w->conns; c; c = c->next) {
        unsigned shown = 0;
        for (pc_stream *st = c->streams; st && shown < 8; st = st->cnext, shown++) {
            char what[512];
            pc__stream_describe(st, what, sizeof what);
            pc_log_warn("worker %d: drain timeout: client %s: %s", w->id, c->t.peer, what);
        }
        pc__transport_close(&c->t, false);
    }
}

static void on_stop(uv_async_t *a)
{
    pc_worker *w = a->data;
    if (w->draining) return;
    w->draining = true;
    for (size_t i = 0; i < w->nlisteners; i++)
        if (!uv_is_closing((uv_handle_t *)&w->listeners[i]))
            uv_close((uv_handle_t *)&w->listeners[i], handle_closed);
    if (!w->conns) {
        finish(w);
        return;
    }
    for (pc_h2conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        pc__h2conn_drain(c);
    }
    uv_timer_start(&w->drain_timer, on_drain_timeout, w->gen->cfg->drain_timeout_ms, 0);
}

int pc__worker_init(pc_worker *w, int id, pc_runtime *rt, char *err, size_t errlen)
{
    memset(w, 0, offsetof(pc_worker, readbuf));
    w->id = id;
    w->log_sec = -1;
    pc__mempool_init(&w->mem);
    if (uv_loop_init(&w->loop) != 0) {
        snprintf(err, errlen, "cannot create event loop");
        return -1;
    }
    w->loop.data = w;
    uv_idle_init(&w->loop, &w->idle);
    uv_check_init(&w->loop, &w->check);
    w->check.data = w;
    uv_check_start(&w->check, on_check);
    uv_unref((uv_handle_t *)&w->check);
    uv_async_init(&w->loop, &w->stop_async, on_stop);
    w->stop_async.data = w;
    uv_async_init(&w->loop, &w->reload_async, on_reload);
    w->reload_async.data = w;
    uv_mutex_init(&w->reload_lock);
    uv_timer_init(&w->loop, &w->drain_timer);
    w->drain_timer.data = w;
    uv_unref((uv_handle_t *)&w->drain_timer);
    uv_timer_init(&w->loop, &w->stall_timer);
    w->stall_timer.data = w;
    uv_timer_start(&w->stall_timer, on_stall_check, 1000, 1000);
    uv_unref((uv_handle_t *)&w->stall_timer);
    w->metrics = pc__metrics_new();
    w->listeners = calloc(rt->cfg->nlisten, sizeof *w->listeners);
    if (!w->listeners || !w->metrics) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (!(w->gen = gen_new(w, rt, err, errlen))) return -1;
    for (size_t i = 0; i < rt->cfg->nlisten; i++) {
        if (bind_listener(w, rt->cfg, i, err, errlen) < 0) return -1;
        w->nlisteners++;
    }
    return 0;
}

static void run(void *arg)
{
    pc_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    atomic_store(&w->done, true);
}

int pc__worker_start(pc_worker *w)
{
    return uv_thread_create(&w->thread, run, w);
}

void pc__worker_stop(pc_worker *w)
{
    uv_async_send(&w->stop_async);
}

void pc__worker_join(pc_worker *w)
{
    uv_thread_join(&w->thread);
    pc__access_log_flush(w);
    pc__gen_release(w->gen);
    w->gen = NULL;
    uv_run(&w->loop, UV_RUN_NOWAIT);
    free(w->listeners);
    pc__metrics_free(w->metrics);
    if (w->reload_rt) atomic_fetch_sub(&w->reload_rt->refs, 1);
    uv_mutex_destroy(&w->reload_lock);
    uv_loop_close(&w->loop);
    pc__mempool_destroy(&w->mem); /* last: sessions freed above return their blocks to it */
}
