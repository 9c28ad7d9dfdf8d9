/* A client connection: TLS (ALPN h2, or http/1.1 for gRPC-Web) or h2c, an nghttp2 server session, its streams
 * and its phase timers (handshake, headers, idle). */
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
    bool timer_dirty; /* streams came or went: the phase timer is set again after this turn's output */
    bool flushing;    /* inside conn_flush, which sets the timer at its end */
    bool goaway_sent;
    size_t pending_resets; /* streams whose origin reset waits for their data to go out */
    pc_conn_shared *conn_info;
    struct pc_fp_h2 *fp_h2; /* HTTP/2 fingerprint parser, until the first header block is read */
    bool fp_started;
    pc_gen *gen; /* config at accept: limits and certificates */
    struct sockaddr_storage peer_addr;
    bool client_counted;  /* holds a slot in the per-client connection limit */
    double glitch_tokens; /* budget for useless frames (refills over 10 s) */
    uint64_t glitch_window_start;
    uint64_t useful;  /* HEADERS and DATA frames, both ways */
    uint64_t control; /* PING and WINDOW_UPDATE frames received while streams were open */
    bool http1;       /* ALPN chose http/1.1 (gRPC-Web only) */
    struct pc_h1 *h1; /* that HTTP/1.1 carried into sess (h1_server.h); NULL for HTTP/2 */
    pc_h2conn *prev, *next;
};

void pc__h2conn_accept(pc_worker *w, uv_stream_t *listener, size_t index);
void pc__h2conn_schedule(pc_h2conn *c);
/* A request header block started (+1) or ended (-1) outside nghttp2 (HTTP/1.1): the header timeout. */
void pc__h2conn_headers_pending(pc_h2conn *c, int delta);
/* Graceful shutdown: GOAWAY, let open streams finish. */
void pc__h2conn_drain(pc_h2conn *c);
void pc__h2conn_unlink_stream(pc_h2conn *c, pc_stream *st);
/* Periodic check: close a connection whose output the client has not taken for send_timeout_ms. */
void pc__h2conn_check_stall(pc_h2conn *c, uint64_t now);

#endif
