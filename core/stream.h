/* One proxied request: the client's HTTP/2 stream, the origin's, and what sits between them.
 * Each direction holds at most a bounded queue: bytes are acknowledged (WINDOW_UPDATE) to the
 * sender only as the other side takes them, so a slow reader slows the writer end to end. */
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

typedef struct pc_h2conn pc_h2conn;
typedef struct pc_upconn pc_upconn;
typedef struct pc_pool pc_pool;
typedef struct pc_worker pc_worker;

enum { PC_PHASE_HEADERS = 1, PC_PHASE_MESSAGE = 2, PC_PHASE_END = 3 };

typedef struct pc_hblock pc_hblock;

/* A header list: names and values live in a few arena blocks freed together, so a request's
 * headers cost a handful of allocations, not two per field. */
typedef struct pc_headers {
    nghttp2_nv *nv;
    size_t n, cap;
    size_t bytes; /* name + value + 32 per field, as RFC 9113 counts */
    pc_hblock *blocks;
    pc_mempool *mem; /* the worker's block cache (NULL: malloc) */
} pc_headers;

/* Messages a plugin holds in one direction: the one it paused on, and those that arrived behind
 * it, in order. Bounded by flow control: their bytes are not acknowledged to the sender. */
typedef struct pc_held_list {
    struct pc_held_msg *cur, *head, *tail;
    size_t bytes; /* of head..tail */
} pc_held_list;

/* A published value (host->publish*). */
typedef struct pc_published {
    char *key, *text;
    pc_value_type type;
    int64_t i;
    double d;
} pc_published;

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

    /* request */
    pc_headers req;
    const char *method, *scheme, *authority, *path, *host_header; /* point into req */
    const char *grpc_timeout, *grpc_encoding, *content_type;
    const pc_zone_conf *zone;
    bool is_grpc;
    bool headers_too_large;
    bool in_headers; /* HEADERS block still arriving */
    pc_grpc_framer framer;
    pc_bytequeue req_q;
    size_t req_deferred; /* received but not yet acknowledged to the client */
    bool req_eof;
    uint64_t start_ms;
    uint64_t start_ns;   /* uv_hrtime: durations for logs and metrics */
    int64_t deadline_ms; /* loop time; 0 = none */
    /* host->hold_body(): a plain HTTP body collected whole and judged before the origin sees it */
    size_t body_limit; /* 0: the body streams through */
    uint8_t *body;
    size_t body_len, body_cap;
    size_t body_acct; /* counted against the client's held bytes */
    bool body_passed; /* the collected body went through the chain */
    int body_error;   /* collecting failed (BODY_* in stream.c): answered once the headers hooks ran */
    bool origin_submitted;
    uv_timer_t *deadline_timer;

    /* response */
    pc_headers resp;
    pc_headers trailers;
    bool resp_in_trailers; /* next header block from origin is trailers */
    pc_bytequeue resp_q;
    size_t resp_deferred; /* received from origin but not yet acknowledged to it */
    bool resp_eof;
    bool resp_submitted; /* response HEADERS handed to the client session */
    bool resp_done;      /* our side of the client stream is finished or being finished */

    /* plugin chain */
    const struct pc_chain *chain;
    pc_conn_shared *conn;
    void *plugin_state;
    pc_published *pub; /* published values */
    size_t npub;
    int deny_status; /* set by host->deny */
    int deny_http;   /* HTTP status for plain HTTP (0: 403) */
    char *deny_msg;
    const pc_message *cur_msg; /* message whose decoding is cached below */
    void *pb;                  /* pc_pb_result of cur_msg */
    pc_field *fields;
    long nfields;
    char *json;
    pc_grpc_framer resp_framer;
    bool resp_framer_on;
    bool chain_started;
    bool chain_logged;
    char *info_service, *info_method, *info_subtype; /* request_info strings, made on first use */
    char info_status[12];
    bool skip_chain_log;
    bool *skipped;         /* per loaded plugin: host->skip() was called for it */
    size_t route_origin;   /* host->route(): origin index + 1; 0 = the zone's origin */
    pc_headers extra_resp; /* host->set_response_header() */
    char request_id[32];
    int paused;            /* PC_PHASE_* while a plugin holds the request */
    size_t pause_pos;      /* chain position of the plugin that paused */
    pc_held_list req_hold; /* the paused request message; those behind it */
    /* the same for a response message a plugin holds (host->resume_response) */
    bool resp_paused;
    size_t resp_pause_pos;
    pc_held_list resp_hold;
    bool resp_end_pending; /* the origin finished while a response message was held */
    int works;             /* queue_work jobs in flight: the stream stays allocated */
    bool client_eof;       /* the client sent END_STREAM */
    bool end_done;         /* the end-of-request hooks have run */
    uint32_t req_msgs, resp_msgs;

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
};

/* h2_server -> proxy */
pc_stream *pc__stream_new(pc_h2conn *c, int32_t sid);
int pc__stream_add_header(pc_headers *h, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen);
void pc__stream_request_ready(pc_stream *st);
void pc__stream_req_data(pc_stream *st, const uint8_t *data, size_t len);
void pc__stream_req_end(pc_stream *st);
void pc__stream_client_closed(pc_stream *st, uint32_t error_code);
void pc__stream_client_sent_end(pc_stream *st);
/* host->hold_body(): 0, or -1 when the request can no longer be held. */
int pc__stream_hold_body(pc_stream *st, size_t max_bytes);
void pc__stream_resume_response(pc_stream *st, int verdict);

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

void pc__headers_free(pc_headers *h);
/* The first field named `name` (any case), or NULL. */
const nghttp2_nv *pc__headers_find(const pc_headers *h, const char *name);
/* gRPC status of the finished call: the edge's, the origin's trailers, or -1. */
int pc__stream_grpc_status(const pc_stream *st);
/* A unique id for the request ("<worker>-<n>"), made on first use. */
const char *pc__stream_request_id(pc_stream *st);
/* Called by the client connection before it writes: resets whose data has gone out. */
void pc__stream_client_reset_due(pc_stream *st);
/* host->resume(): continue or end a paused request. */
void pc__stream_resume(pc_stream *st, int verdict);
/* Free the stream if neither side holds it any more. */
void pc__stream_release(pc_stream *st);

#endif
