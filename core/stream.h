/* One proxied call: the client's HTTP/2 stream, the origin's, and the pipe between them, which
 * carries the request (request.h) the chain judges. Each direction of the pipe is in one state
 * (pc_req_state, pc_resp_state), changed only through its setter, which refuses (and logs) a
 * transition the pipe does not make. Each direction holds at most a bounded queue: bytes are
 * acknowledged (WINDOW_UPDATE) to the sender only as the other side takes them, so a slow reader
 * slows the writer end to end. */
#ifndef PC_STREAM_H
#define PC_STREAM_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "bytequeue.h"
#include "chain.h"
#include "config.h"
#include "grpc_frame.h"
#include "headers.h"
#include "held.h"
#include "request.h"

typedef struct pc_h2conn pc_h2conn;
typedef struct pc_upconn pc_upconn;
typedef struct pc_pool pc_pool;
typedef struct pc_worker pc_worker;

/* The request direction: from the client through the chain to the origin.
 *   HEADERS -> BODY | HOLDING | PAUSED | RESET
 *   BODY    -> PAUSED | ENDING | RESET
 *   HOLDING -> BODY (the collected body goes through the chain) | RESET
 *   PAUSED  -> HEADERS | BODY | ENDING (resumed: back where it paused) | RESET
 *   ENDING  -> PAUSED | ENDED | RESET
 * ENDED and RESET are final: once the request is whole, a later stop concerns the response. */
typedef enum pc_req_state {
    PC_REQ_HEADERS = 0, /* the header block and its hooks: nothing goes to the origin yet */
    PC_REQ_BODY,        /* the headers passed: messages (or body bytes) go through the chain to the origin */
    PC_REQ_HOLDING, /* the headers passed; a plugin has the whole plain body collected first (hold_body) */
    PC_REQ_PAUSED,  /* a plugin holds the request (req_pause: at which hook); later messages wait */
    PC_REQ_ENDING,  /* the client ended and every message passed: the end-of-request hooks run */
    PC_REQ_ENDED,   /* every hook passed the whole request: the origin gets END_STREAM after the queue */
    PC_REQ_RESET,   /* cut short: the edge answered, or the client went away */
} pc_req_state;

/* The response direction: from the origin (or the edge) to the client.
 *   HEADERS -> BODY | ENDED | RESET
 *   BODY    -> PAUSED | ENDED | RESET
 *   PAUSED  -> BODY (resumed) | ENDED (the edge ends the call meanwhile) | RESET
 *   ENDED   -> RESET (the client stopped reading, or reset the stream before the end went out) */
typedef enum pc_resp_state {
    PC_RESP_HEADERS = 0, /* nothing handed to the client yet */
    PC_RESP_BODY,        /* the response headers are handed to the client: the body flows */
    PC_RESP_PAUSED,      /* a plugin holds a response message; later ones wait behind it */
    PC_RESP_ENDED,       /* the rest is queued: the queue, then END_STREAM (with the trailers) */
    PC_RESP_RESET,       /* the client stream is reset, or the client went away */
} pc_resp_state;

/* The request hook a plugin paused at. */
enum { PC_PHASE_NONE = 0, PC_PHASE_HEADERS = 1, PC_PHASE_MESSAGE = 2, PC_PHASE_END = 3 };

typedef struct pc_stream pc_stream;
struct pc_stream {
    pc_worker *worker;
    struct pc_gen *gen; /* the configuration this stream runs on, held until it ends */
    pc_h2conn *client;
    int32_t sid;
    pc_stream *cprev, *cnext; /* in client->streams */

    pc_upconn *up;
    int32_t up_sid;
    pc_stream *uprev, *unext; /* in up->streams */
    pc_pool *pool;
    pc_stream *qnext; /* in pool's pending queue */
    bool queued;

    pc_request rq;          /* what the chain judges: built once the header block is complete */
    pc_headers req_headers; /* the header block while it arrives (then the request's) */

    /* request direction */
    pc_req_state req_state;
    int req_pause; /* PC_PHASE_* of the hook a plugin paused at, until it resumes (even if the call was
                    * cut meanwhile: the stream stays allocated for that resume) */
    bool headers_too_large;
    bool in_headers; /* HEADERS block still arriving */
    pc_grpc_framer framer;
    pc_bytequeue req_q;
    size_t req_deferred;   /* received but not yet acknowledged to the client */
    pc_held_list req_hold; /* the message a plugin paused on; those behind it */
    bool client_eof;       /* the client sent END_STREAM */
    uint64_t start_ms;
    uint64_t start_ns;   /* uv_hrtime: durations for logs and metrics */
    int64_t deadline_ms; /* loop time; 0 = none */
    uv_timer_t *deadline_timer;
    /* host->hold_body(): a plain HTTP body collected whole and judged before the origin sees it */
    size_t body_limit; /* 0: the body streams through */
    uint8_t *body;
    size_t body_len, body_cap;
    size_t body_acct; /* counted against the client's held bytes */
    int body_error;   /* collecting failed (BODY_* in stream.c): answered once the headers hooks ran */
    bool origin_submitted;
    uint32_t req_msgs;

    /* response direction */
    pc_resp_state resp_state;
    bool resp_pause; /* a plugin paused on a response message, until it resumes (as req_pause) */
    pc_headers resp;
    pc_headers trailers;
    bool resp_in_trailers; /* next header block from origin is trailers */
    pc_bytequeue resp_q;
    size_t resp_deferred;   /* received from origin but not yet acknowledged to it */
    bool resp_done;         /* our side of the client stream is finished or being finished */
    bool resp_end_pending;  /* the origin finished while a response message was held */
    pc_held_list resp_hold; /* the response message a plugin paused on; those behind it */
    pc_grpc_framer resp_framer;
    bool resp_framer_on;
    uint32_t resp_msgs;

    int works; /* queue_work jobs in flight: the stream stays allocated */

    /* accounting for the access log and metrics */
    int http_status;
    uint64_t req_bytes, resp_bytes;
    uint64_t req_sent; /* request bytes handed to the origin connection */
    uint8_t retries;   /* re-sent after the origin refused the stream unprocessed */
    char upstream_addr[80];
    uint8_t resp_pfx[5]; /* counting response messages without buffering them */
    uint8_t resp_pfx_have;
    uint32_t resp_skip;
    bool counted;           /* included in the active-streams gauge */
    uint64_t blocked_since; /* loop time since which the client's window held back queued output */
    size_t held_acct;       /* resp_q bytes above the low-water mark counted against the client */

    bool client_closed;
    bool up_started; /* a stream was opened on the origin connection */
    bool up_closed;
    bool up_reset_sent;
    bool rst_after_flush;     /* send what the chain allowed, then reset the origin stream */
    bool rst_pending;         /* allowed bytes are out: reset at the next flush */
    uint32_t client_rst_code; /* the origin reset after sending data: pass that data on, then reset */
    bool client_rst_after;
    bool client_rst_now;
    int edge_status; /* gRPC status the edge answered with, -1 none */
    const char *edge_reason;
    char remote_status[4];
    char info_status[12]; /* request_info "grpc_status" of the edge's answer */

    struct pc_grpc_web *web; /* a gRPC-Web call, translated at the edge (grpc_web.h); NULL otherwise */
};

/* Where a call stands, in one line (logged when a drain cuts it). */
void pc__stream_describe(const pc_stream *st, char *buf, size_t len);
/* The state setters: 0, or -1 (logged, state unchanged) for a transition the pipe does not make. */
int pc__stream_set_req_state(pc_stream *st, pc_req_state to);
int pc__stream_set_resp_state(pc_stream *st, pc_resp_state to);
bool pc__req_state_allowed(pc_req_state from, pc_req_state to);
bool pc__resp_state_allowed(pc_resp_state from, pc_resp_state to);
const char *pc__req_state_name(pc_req_state s);
const char *pc__resp_state_name(pc_resp_state s);

/* h2_server -> proxy */
pc_stream *pc__stream_new(pc_h2conn *c, int32_t sid);
/* The header block is complete: the request is built from it and admitted (zone, limits, chain). */
void pc__stream_request_ready(pc_stream *st);
void pc__stream_req_data(pc_stream *st, const uint8_t *data, size_t len);
void pc__stream_req_end(pc_stream *st);
void pc__stream_client_closed(pc_stream *st, uint32_t error_code);
void pc__stream_client_sent_end(pc_stream *st);

/* upstream -> proxy */
void pc__stream_up_attached(pc_stream *st);
void pc__stream_resp_headers_done(pc_stream *st, bool end_stream);
void pc__stream_resp_data(pc_stream *st, const uint8_t *data, size_t len);
void pc__stream_resp_end(pc_stream *st);
void pc__stream_up_closed(pc_stream *st, uint32_t error_code, const char *why);
/* The origin could not be reached (connect/TLS failure, pool full): answer the client. */
void pc__stream_up_failed(pc_stream *st, int grpc_status, int http_status, const char *msg);

/* Answer the client from the edge and cancel the origin side. */
void pc__stream_fail(pc_stream *st, int grpc_status, int http_status, const char *reason, const char *msg);

/* Data providers (nghttp2 read callbacks) */
ssize_t pc__stream_read_request(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                                nghttp2_data_source *src, void *ud);
ssize_t pc__stream_read_response(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                                 nghttp2_data_source *src, void *ud);

/* gRPC status of the finished call: the edge's, the origin's trailers, or -1. */
int pc__stream_grpc_status(const pc_stream *st);
/* Called by the client connection before it writes: resets whose data has gone out. */
void pc__stream_client_reset_due(pc_stream *st);
/* Free the stream if neither side holds it any more. */
void pc__stream_release(pc_stream *st);

#endif
