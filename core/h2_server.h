/* A client connection: TLS (ALPN h2) or h2c, an nghttp2 server session, its streams and its
 * phase timers (handshake, headers, idle). */
#ifndef PC_H2_SERVER_H
#define PC_H2_SERVER_H

#include <nghttp2/nghttp2.h>
#include <uv.h>

#include "stream.h"
#include "transport.h"
#include "worker.h"

struct pc_h2conn {
    pc_transport t; /* first: callbacks get the transport and cast back */
    pc_flushable fl;
    pc_worker *worker;
    size_t listener;
    bool tls;
    nghttp2_session *sess;
    pc_stream *streams;
    size_t nstreams;
    int headers_pending;
    int timer_mode;
    bool goaway_sent;
    pc_conn_shared *conn_info;
    pc_gen *gen; /* config at accept: limits and certificates */
    pc_h2conn *prev, *next;
};

void pc__h2conn_accept(pc_worker *w, uv_stream_t *listener, size_t index);
void pc__h2conn_schedule(pc_h2conn *c);
/* Graceful shutdown: GOAWAY, let open streams finish. */
void pc__h2conn_drain(pc_h2conn *c);
void pc__h2conn_unlink_stream(pc_h2conn *c, pc_stream *st);

#endif
