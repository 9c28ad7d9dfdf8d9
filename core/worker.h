/* A worker: one thread, one libuv loop, owning its listeners' accepted connections, its origin
 * pools and its plugin instances. Nothing in here is touched by another thread except the async
 * handles used to ask it to stop or reload, and the reload slot guarded by its mutex. */
#ifndef PC_WORKER_H
#define PC_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "mempool.h"
#include "tls.h"

typedef struct pc_pool pc_pool;
typedef struct pc_h2conn pc_h2conn;

/* Read-only state built once by the main thread and shared by all workers. */
typedef struct pc_runtime {
    pc_config *cfg;
    pc_tls_server **front_tls;              /* per listener; NULL for cleartext */
    SSL_CTX **origin_tls;                   /* per origin; NULL for h2c */
    struct sockaddr_storage **origin_addrs; /* per origin, per server: resolved at start */
    struct pc_plugins *plugins;             /* loaded plugins and chains */
    atomic_int refs; /* workers' generations using it, +1 while it is the main thread's current one */
} pc_runtime;

typedef struct pc_worker pc_worker;

/* A worker's view of one loaded configuration. New streams take the current generation; a reload
 * makes a new one while streams in flight finish on theirs. Worker thread only. */
typedef struct pc_gen {
    int refs; /* streams and connections using it, +1 while current */
    pc_worker *worker;
    pc_runtime *rt;
    const pc_config *cfg;
    struct pc_pool **pools; /* per origin */
    void **plugin_ctx;      /* per loaded plugin: this worker's instance */
} pc_gen;

pc_gen *pc__gen_acquire(pc_worker *w); /* the current generation, with a reference */
void pc__gen_release(pc_gen *g);

/* A connection with HTTP/2 output to produce: queued once, flushed after this loop turn's I/O. */
typedef struct pc_flushable pc_flushable;
struct pc_flushable {
    pc_flushable *next;
    bool queued;
    void (*flush)(pc_flushable *f);
};

struct pc_worker {
    uv_loop_t loop;
    int id;
    pc_gen *gen; /* current: every setting is read through it (a reload replaces it) */
    uv_thread_t thread;
    uv_tcp_t *listeners;
    size_t nlisteners;
    uv_idle_t idle;   /* keeps the loop from blocking while output is pending */
    uv_check_t check; /* flushes after the poll phase */
    uv_async_t stop_async;
    uv_async_t reload_async;
    uv_mutex_t reload_lock;
    pc_runtime *reload_rt; /* handed over by the main thread, taken by the worker */
    uv_timer_t drain_timer;
    uv_timer_t stall_timer;
    pc_flushable *dirty;
    struct pc_metrics *metrics;
    pc_h2conn *conns; /* client connections, for drain */
    bool draining;
    _Atomic bool done; /* set by the worker thread when its loop has ended */
    uint64_t nconns;
    uint64_t request_seq;
    pc_mempool mem; /* small blocks for this worker's HTTP/2 sessions and requests */
    uint8_t readbuf[65536];
    uint8_t tlsbuf[65536];
    uint8_t outbuf[65536]; /* HTTP/2 output gathered before a write */
    uint8_t tlsout[67584]; /* TLS records of one gathered write (64 KiB and the records' overhead) */
    char logbuf[65536];    /* access log lines not yet written */
    size_t loglen;
    long long log_sec;  /* the second log_stamp shows, -1 before the first line */
    char log_stamp[24]; /* "YYYY-MM-DDTHH:MM:SS" */
};

int pc__worker_init(pc_worker *w, int id, pc_runtime *rt, char *err, size_t errlen);
/* Thread-safe: switch new streams to rt (the worker takes a reference). */
void pc__worker_reload(pc_worker *w, pc_runtime *rt);
int pc__worker_start(pc_worker *w); /* runs the loop in its own thread */
void pc__worker_stop(pc_worker *w); /* thread-safe: begin graceful drain */
void pc__worker_join(pc_worker *w);
void pc__worker_schedule(pc_worker *w, pc_flushable *f);
/* Make the loop run its check phase soon (buffered access-log lines), even from a close callback. */
void pc__worker_wake(pc_worker *w);

/* Called by h2_server when a connection ends, so a draining worker can finish. */
void pc__worker_conn_closed(pc_worker *w);

#endif
