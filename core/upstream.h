/* Origin side: per worker, per origin, a pool of HTTP/2 client connections (h2c or TLS with
 * ALPN h2) to the origin's servers, round robin, with a cool-down for servers that fail to
 * connect and a bounded queue for streams waiting for a connection slot. */
#ifndef PC_UPSTREAM_H
#define PC_UPSTREAM_H

#include <nghttp2/nghttp2.h>

#include "stream.h"
#include "transport.h"
#include "worker.h"

typedef struct pc_server pc_server;

struct pc_upconn {
    pc_transport t; /* first */
    pc_flushable fl;
    pc_server *srv;
    nghttp2_session *sess;
    bool ready;
    bool goaway;           /* no new streams on this connection */
    size_t pending_resets; /* streams whose allowed bytes are out and that wait for their reset */
    pc_stream *streams;
    size_t nstreams;
    pc_upconn *prev, *next; /* in srv->conns */
};

pc_pool *pc__pool_new(pc_worker *w, pc_gen *g, size_t origin_index);
void pc__pool_free(pc_pool *p);
/* Queue a stream for the origin; it is attached to a connection as soon as one has room. */
void pc__pool_submit(pc_pool *p, pc_stream *st);
/* The stream no longer wants the origin: drop it from the queue or reset its origin stream.
 * flush_first: deliver the request bytes already allowed before the reset. */
void pc__pool_cancel(pc_stream *st, bool flush_first);
void pc__upconn_schedule(pc_upconn *u);
/* Close the connections without streams (a reload), or every connection (a worker that has no
 * clients left: a stream still open on the origin side has nobody to answer). */
void pc__pool_close(pc_pool *p, bool idle_only);
const char *pc__pool_origin_name(pc_pool *p);

#endif
