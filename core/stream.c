/* The proxy between a client stream and an origin stream: admission (zone, the gRPC switch,
 * deadlines), the gRPC message decoder on requests, the state of each direction, bounded queues in
 * both directions and the edge's own gRPC answers. Every byte is acknowledged to its sender
 * (WINDOW_UPDATE) only when the queue it entered is short, so memory per stream stays bounded by the
 * windows. */
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "grpc_status.h"
#include "grpc_web.h"
#include "h2_server.h"
#include "access_log.h"
#include "client_limit.h"
#include "log.h"
#include "metrics.h"
#include "plugin_loader.h"
#include "upstream.h"
#include "worker.h"
#include "zone_select.h"

/* Below this many queued bytes, received data is acknowledged at once. */
#define QUEUE_LOW_WATER 65536
/* How long the messages a chain allowed before refusing one may wait for the origin to take them
 * once the client is gone (then the origin stream is reset all the same). */
#define ORIGIN_FLUSH_MS 5000

static void maybe_free(pc_stream *st);
static bool client_writable(pc_stream *st);

/* ---- the state of each direction ---- */

#define BIT(s) (1u << (s))

/* Per state, the states it may go to (stream.h draws them). */
static const unsigned req_next[] = {
    [PC_REQ_HEADERS] = BIT(PC_REQ_BODY) | BIT(PC_REQ_HOLDING) | BIT(PC_REQ_PAUSED) | BIT(PC_REQ_RESET),
    [PC_REQ_BODY] = BIT(PC_REQ_PAUSED) | BIT(PC_REQ_ENDING) | BIT(PC_REQ_RESET),
    [PC_REQ_HOLDING] = BIT(PC_REQ_BODY) | BIT(PC_REQ_RESET),
    [PC_REQ_PAUSED] = BIT(PC_REQ_HEADERS) | BIT(PC_REQ_BODY) | BIT(PC_REQ_ENDING) | BIT(PC_REQ_RESET),
    [PC_REQ_ENDING] = BIT(PC_REQ_PAUSED) | BIT(PC_REQ_ENDED) | BIT(PC_REQ_RESET),
    [PC_REQ_ENDED] = 0,
    [PC_REQ_RESET] = 0,
};

static const unsigned resp_next[] = {
    [PC_RESP_HEADERS] = BIT(PC_RESP_BODY) | BIT(PC_RESP_ENDED) | BIT(PC_RESP_RESET),
    [PC_RESP_BODY] = BIT(PC_RESP_PAUSED) | BIT(PC_RESP_ENDED) | BIT(PC_RESP_RESET),
    [PC_RESP_PAUSED] = BIT(PC_RESP_BODY) | BIT(PC_RESP_ENDED) | BIT(PC_RESP_RESET),
    [PC_RESP_ENDED] = BIT(PC_RESP_RESET),
    [PC_RESP_RESET] = 0,
};

static const char *const req_names[] = {"HEADERS", "BODY", "HOLDING", "PAUSED", "ENDING", "ENDED", "RESET"};
static const char *const resp_names[] = {"HEADERS", "BODY", "PAUSED", "ENDED", "RESET"};

#define NSTATES(a) (sizeof(a) / sizeof(a)[0])

const char *pc__req_state_name(pc_req_state s)
{
    return (unsigned)s < NSTATES(req_names) ? req_names[s] : "?";
}

const char *pc__resp_state_name(pc_resp_state s)
{
    return (unsigned)s < NSTATES(resp_names) ? resp_names[s] : "?";
}

bool pc__req_state_allowed(pc_req_state from, pc_req_state to)
{
    return (unsigned)from < NSTATES(req_next) && (unsigned)to < NSTATES(req_names) &&
           (req_next[from] & BIT(to));
}

bool pc__resp_state_allowed(pc_resp_state from, pc_resp_state to)
{
    return (unsigned)from < NSTATES(resp_next) && (unsigned)to < NSTATES(resp_names) &&
           (resp_next[from] & BIT(to));
}

/* A refused transition is a bug in the pipe: logged loudly, the state kept. */
int pc__stream_set_req_state(pc_stream *st, pc_req_state to)
{
    if (!pc__req_state_allowed(st->req_state, to)) {
        pc_log_error("stream %d: request state %s -> %s refused", st->sid, pc__req_state_name(st->req_state),
                     pc__req_state_name(to));
        return -1;
    }
    st->req_state = to;
    return 0;
}

int pc__stream_set_resp_state(pc_stream *st, pc_resp_state to)
{
    if (!pc__resp_state_allowed(st->resp_state, to)) {
        pc_log_error("stream %d: response state %s -> %s refused", st->sid,
                     pc__resp_state_name(st->resp_state), pc__resp_state_name(to));
        return -1;
    }
    st->resp_state = to;
    return 0;
}

/* The request is cut short (the edge answered, the client went away): nothing more of it goes on.
 * A request that was whole stays ENDED. */
static void reset_request(pc_stream *st)
{
    if (st->req_state != PC_REQ_ENDED && st->req_state != PC_REQ_RESET)
        pc__stream_set_req_state(st, PC_REQ_RESET);
}

static void reset_response(pc_stream *st)
{
    if (st->resp_state != PC_RESP_RESET) pc__stream_set_resp_state(st, PC_RESP_RESET);
}

/* Our side of the client stream is finished or being finished: nothing more is taken from the origin,
 * and the request stops where it is. */
static void response_done(pc_stream *st)
{
    st->resp_done = true;
    reset_request(st);
}

/* The response headers went to the client (or the stream was reset): none can be added. */
static bool response_started(const pc_stream *st)
{
    return st->resp_state != PC_RESP_HEADERS;
}

/* A plugin paused the request at `phase`. */
static void pause_request(pc_stream *st, int phase)
{
    st->req_pause = phase;
    pc__stream_set_req_state(st, PC_REQ_PAUSED);
}

/* The body went nowhere yet (neither to the origin nor through the chain): while the headers hooks
 * run or a plugin holds them, and while it is collected (HOLDING). */
static bool body_open(const pc_stream *st)
{
    return st->req_state == PC_REQ_HEADERS || st->req_state == PC_REQ_HOLDING ||
           (st->req_state == PC_REQ_PAUSED && st->req_pause == PC_PHASE_HEADERS);
}

/* Response bytes held beyond the low-water mark count against the client's address: a client
 * that opens many streams and shuts their windows cannot make the edge hold more than
 * max_held_bytes_per_client; past it, its window-blocked streams are reset. */
static bool window_shut(pc_stream *st)
{
    nghttp2_session *s = st->client->sess;
    return nghttp2_session_get_stream_remote_window_size(s, st->sid) <= 0 ||
           nghttp2_session_get_remote_window_size(s) <= 0;
}

static void account_held(pc_stream *st)
{
    /* Only streams whose window is shut are counted (and hold their whole queue): streams that
     * flow take no lock here. */
    size_t want = client_writable(st) && window_shut(st) ? st->resp_q.size : 0;
    if (want == st->held_acct || !st->rq.conn) return;
    int64_t total =
        pc__client_held((struct sockaddr *)&st->rq.conn->addr, (int64_t)want - (int64_t)st->held_acct);
    st->held_acct = want;
    uint32_t limit = st->gen->cfg->limits.max_held_bytes_per_client;
    if (!limit || total <= (int64_t)limit || !client_writable(st)) return;
    nghttp2_session *s = st->client->sess;
    pc_log_info("conn: client %s holds %lld bytes of unread responses (max_held_bytes_per_client %u): stream "
                "%d reset",
                st->client->t.peer, (long long)total, limit, st->sid);
    st->edge_reason = "client_not_reading";
    response_done(st);
    reset_response(st);
    nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_CANCEL);
    pc__h2conn_schedule(st->client);
}

/* atoi's reading of the value (leading blanks, a sign, digits), without going through strtol. */
static int status_of(const pc_headers *h)
{
    const nghttp2_nv *nv = pc__headers_find(h, "grpc-status");
    if (!nv) return -1;
    const char *p = (const char *)nv->value;
    while (*p == ' ' || (*p >= '\t' && *p <= '\r'))
        p++;
    bool neg = *p == '-';
    if (*p == '-' || *p == '+') p++;
    int v = 0;
    for (; *p >= '0' && *p <= '9' && v < 100000000; p++)
        v = v * 10 + (*p - '0');
    return neg ? -v : v;
}

int pc__stream_grpc_status(const pc_stream *st)
{
    if (st->edge_status >= 0) return st->edge_status;
    if (!st->rq.is_grpc) return -1;
    int s = status_of(&st->trailers);
    return s >= 0 ? s : status_of(&st->resp);
}

/* One line on where a call stands, for the log when a drain has to cut it. */
void pc__stream_describe(const pc_stream *st, char *buf, size_t len)
{
    snprintf(buf, len,
             "stream %d %s: request %s, response %s%s%s%s%s%s%s, %zu bytes for the origin, "
             "origin %s",
             (int)st->sid, st->rq.path ? st->rq.path : "-", pc__req_state_name(st->req_state),
             pc__resp_state_name(st->resp_state), st->client_eof ? ", client ended" : "",
             st->resp_done ? ", answered" : "", st->req_pause ? ", request paused" : "",
             st->resp_pause ? ", response paused" : "", st->works ? ", plugin work running" : "",
             st->rst_after_flush ? ", origin reset after flush" : "", st->req_q.size,
             st->queued      ? "queued"
             : st->up        ? "attached"
             : st->up_closed ? "closed"
                             : "none");
}

void pc__stream_release(pc_stream *st)
{
    maybe_free(st);
}

pc_stream *pc__stream_new(pc_h2conn *c, int32_t sid)
{
    pc_stream *st = pc__mem_calloc(&c->worker->mem, 1, sizeof *st);
    if (!st) return NULL;
    st->worker = c->worker;
    st->gen = pc__gen_acquire(c->worker);
    st->client = c;
    st->sid = sid;
    st->edge_status = -1;
    st->start_ms = uv_now(&c->worker->loop);
    st->start_ns = uv_hrtime();
    pc_mempool *mem = &c->worker->mem;
    pc__bq_init(&st->req_q, mem);
    pc__bq_init(&st->resp_q, mem);
    st->req_headers.mem = st->resp.mem = st->trailers.mem = mem;
    return st;
}

static void timer_closed(uv_handle_t *h)
{
    free(h);
}

static void stop_deadline(pc_stream *st)
{
    if (st->deadline_timer) {
        uv_close((uv_handle_t *)st->deadline_timer, timer_closed);
        st->deadline_timer = NULL;
    }
}

/* The stream's one timer (its deadline, or the flush limit once the client is gone); without
 * memory for it, the stream goes without. */
static void start_timer(pc_stream *st, uv_timer_cb cb, uint64_t ms)
{
    if (st->deadline_timer || !(st->deadline_timer = malloc(sizeof *st->deadline_timer))) return;
    uv_timer_init(&st->worker->loop, st->deadline_timer);
    st->deadline_timer->data = st;
    uv_timer_start(st->deadline_timer, cb, ms, 0);
}

static void drop_held(pc_stream *st);
static void body_free(pc_stream *st);

static void maybe_free(pc_stream *st)
{
    if (!st->client_closed || st->queued || st->up || st->req_pause || st->resp_pause || st->works) return;
    drop_held(st);
    body_free(st);
    stop_deadline(st);
    pc_request *r = &st->rq;
    if (st->held_acct && r->conn) pc__client_held((struct sockaddr *)&r->conn->addr, -(int64_t)st->held_acct);
    if (r->method) {
        pc__chain_log(r);
        pc__access_log_write(st);
        const char *method = r->is_grpc && r->path ? r->path : r->method;
        double secs = (double)(uv_hrtime() - st->start_ns) / 1e9;
        pc__metrics_request(st->worker->metrics, r->zone ? r->zone->name : "", method,
                            pc__stream_grpc_status(st), st->edge_reason, secs);
    }
    if (st->counted) pc__metrics_stream(st->worker->metrics, -1);
    if (r->is_grpc) pc__grpc_framer_free(&st->framer);
    if (st->resp_framer_on) pc__grpc_framer_free(&st->resp_framer);
    pc__request_free(r);
    pc__grpc_web_free(st->web);
    pc__headers_free(&st->req_headers);
    pc__headers_free(&st->resp);
    pc__headers_free(&st->trailers);
    pc__gen_release(st->gen);
    pc__bq_free(&st->req_q);
    pc__bq_free(&st->resp_q);
    pc__mem_free(&st->worker->mem, st);
}

/* ---- acknowledging bytes (flow control) ----
 * Bytes held for a slow side are held back from the sender's STREAM window only: the connection
 * window is given back at once, so one stalled stream never stalls the others sharing its
 * connection (memory stays bounded by the stream windows and stream counts). */

static void ack_client(pc_stream *st, size_t n)
{
    if (n == 0 || !st->client || !st->client->sess) return;
    nghttp2_session_consume(st->client->sess, st->sid, n);
    pc__h2conn_schedule(st->client);
}

static void defer_client(pc_stream *st, size_t n)
{
    if (n && st->client && st->client->sess) {
        nghttp2_session_consume_connection(st->client->sess, n);
        pc__h2conn_schedule(st->client);
    }
    st->req_deferred += n;
}

static void release_client(pc_stream *st)
{
    if (st->req_deferred && st->client && st->client->sess) {
        nghttp2_session_consume_stream(st->client->sess, st->sid, st->req_deferred);
        pc__h2conn_schedule(st->client);
    }
    st->req_deferred = 0;
}

static void ack_origin(pc_stream *st, size_t n)
{
    if (n == 0 || !st->up || !st->up->sess) return;
    nghttp2_session_consume(st->up->sess, st->up_sid, n);
    pc__upconn_schedule(st->up);
}

static void defer_origin(pc_stream *st, size_t n)
{
    if (n && st->up && st->up->sess) {
        nghttp2_session_consume_connection(st->up->sess, n);
        pc__upconn_schedule(st->up);
    }
    st->resp_deferred += n;
}

static void release_origin(pc_stream *st)
{
    if (st->resp_deferred && st->up && st->up->sess) {
        nghttp2_session_consume_stream(st->up->sess, st->up_sid, st->resp_deferred);
        pc__upconn_schedule(st->up);
    }
    st->resp_deferred = 0;
}

/* ---- answering the client ---- */

#define NV(n, v, vl) ((nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NONE})

static bool client_writable(pc_stream *st)
{
    return st->client && !st->client_closed && st->client->sess;
}

/* A gRPC-Web call answers in its own form (grpc_web.h). */
static int submit_response(pc_stream *st, const nghttp2_nv *nva, size_t n, const nghttp2_data_provider *prd)
{
    if (st->web) return pc__grpc_web_submit_response(st, nva, n, prd != NULL);
    return nghttp2_submit_response(st->client->sess, st->sid, nva, n, prd);
}

static void cancel_origin(pc_stream *st, bool flush_first)
{
    if (st->queued || st->up) pc__pool_cancel(st, flush_first || st->rst_after_flush);
}

/* Headers plugins added for the client go on the edge's own answers too (at most 32). */
static size_t with_extra(const pc_stream *st, nghttp2_nv *nva, size_t n)
{
    for (size_t i = 0; i < st->rq.extra_resp.n && i < 32; i++)
        nva[n++] = st->rq.extra_resp.nv[i];
    return n;
}

void pc__stream_fail(pc_stream *st, int grpc_status, int http_status, const char *reason, const char *msg)
{
    /* Messages the chain let through before a denied one still reach the origin, then it is reset. */
    cancel_origin(st, !strcmp(reason, "plugin_deny"));
    stop_deadline(st);
    if (st->resp_done || !client_writable(st)) return;
    response_done(st);
    st->edge_reason = reason;
    bool grpc = st->rq.is_grpc;
    if (grpc) st->edge_status = grpc_status;
    if (!response_started(st)) st->http_status = grpc ? 200 : http_status;
    nghttp2_session *s = st->client->sess;
    char enc[512];
    pc__grpc_message_encode(msg, enc, sizeof enc);
    char code[8];
    snprintf(code, sizeof code, "%d", grpc_status);
    pc_log_debug("stream %s %s: edge answered %s: %s", st->client->t.peer, st->rq.path ? st->rq.path : "-",
                 pc__grpc_status_name(grpc_status), msg);
    /* Whatever the origin sent and the client has not taken is dropped with this answer. */
    if (st->resp_q.size) {
        uint8_t sink[4096];
        while (st->resp_q.size)
            pc__bq_read(&st->resp_q, sink, sizeof sink);
    }
    if (grpc) {
        if (!response_started(st)) {
            /* Trailers-Only: one HEADERS frame carrying the status. */
            nghttp2_nv nva[4 + 32] = {NV(":status", "200", 3), NV("content-type", "application/grpc", 16),
                                      NV("grpc-status", code, strlen(code)),
                                      NV("grpc-message", enc, strlen(enc))};
            size_t n = with_extra(st, nva, 4);
            pc__stream_set_resp_state(st, PC_RESP_ENDED);
            submit_response(st, nva, n, NULL);
        } else {
            /* Response already started: end it with trailers after what was sent. */
            pc__headers_free(&st->trailers);
            pc__headers_add_str(&st->trailers, "grpc-status", code);
            pc__headers_add_str(&st->trailers, "grpc-message", enc);
            if (st->resp_state != PC_RESP_ENDED) pc__stream_set_resp_state(st, PC_RESP_ENDED);
            nghttp2_session_resume_data(s, st->sid);
        }
    } else if (!response_started(st)) {
        char status[8];
        snprintf(status, sizeof status, "%d", http_status);
        pc__bq_append(&st->resp_q, (const uint8_t *)msg, strlen(msg));
        pc__bq_append(&st->resp_q, (const uint8_t *)"\n", 1);
        nghttp2_nv nva[2 + 32] = {NV(":status", status, strlen(status)),
                                  NV("content-type", "text/plain", 10)};
        size_t n = with_extra(st, nva, 2);
        nghttp2_data_provider prd = {.source.ptr = st, .read_callback = pc__stream_read_response};
        pc__stream_set_resp_state(st, PC_RESP_ENDED);
        nghttp2_submit_response(s, st->sid, nva, n, &prd);
    } else {
        reset_response(st);
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_INTERNAL_ERROR);
    }
    pc__h2conn_schedule(st->client);
}

/* The client is gone and the origin has not taken the allowed messages in time: reset it now. */
static void on_flush_limit(uv_timer_t *t)
{
    pc_stream *st = t->data;
    stop_deadline(st);
    pc__pool_cancel(st, false);
    maybe_free(st);
}

static void on_deadline(uv_timer_t *t)
{
    pc_stream *st = t->data;
    pc__stream_fail(st, PC_GRPC_DEADLINE_EXCEEDED, 504, "deadline", "deadline exceeded at the edge");
    maybe_free(st);
}

/* ---- request path ---- */

#define FRAME_OOM -100
#define FRAME_DENIED -101

static void denied(pc_stream *st)
{
    const pc_request *r = &st->rq;
    pc__stream_fail(st, r->deny_status, r->deny_http ? r->deny_http : 403, "plugin_deny",
                    r->deny_msg ? r->deny_msg : "denied");
}

/* The two directions of a call run their messages through the chain alike; these name each
 * direction's state. */
static pc_held_list *held_list(pc_stream *st, bool response)
{
    return response ? &st->resp_hold : &st->req_hold;
}

static pc_bytequeue *out_queue(pc_stream *st, bool response)
{
    return response ? &st->resp_q : &st->req_q;
}

static bool dir_paused(const pc_stream *st, bool response)
{
    return response ? st->resp_state == PC_RESP_PAUSED : st->req_state == PC_REQ_PAUSED;
}

static int chain_message(pc_stream *st, const pc_message *m, bool response)
{
    return response ? pc__chain_response_message(&st->rq, m, 0) : pc__chain_request_message(&st->rq, m, 0);
}

/* A plugin paused on h: it is its direction's current held message until resumed. */
static void held_pause(pc_stream *st, pc_held_msg *h, bool response)
{
    held_list(st, response)->cur = h;
    if (response) {
        st->resp_pause = true;
        pc__stream_set_resp_state(st, PC_RESP_PAUSED);
    } else {
        pause_request(st, PC_PHASE_MESSAGE);
    }
}

static void drop_held(pc_stream *st)
{
    pc__held_drop(&st->req_hold);
    pc__held_drop(&st->resp_hold);
}

/* A held message the chain has decided on: queued for the other side if it passed, then freed.
 * False when that ended the stream (denied, or out of memory). */
static bool held_decided(pc_stream *st, pc_held_msg *h, int rv, bool response)
{
    bool oom = rv == PC_CHAIN_GO && pc__bq_append(out_queue(st, response), h->frame, h->frame_len) < 0;
    pc__held_free(h);
    if (rv == PC_CHAIN_DENY) {
        denied(st);
        return false;
    }
    if (oom) {
        pc__stream_fail(st, PC_GRPC_RESOURCE_EXHAUSTED, 503, "out_of_memory", "out of memory");
        return false;
    }
    return true;
}

/* Runs the messages that waited behind a held one (request or response direction) through the
 * chain, until one pauses. False when the stream ended. */
static bool held_drain(pc_stream *st, bool response)
{
    pc_held_list *l = held_list(st, response);
    while (l->head && !dir_paused(st, response) && !st->resp_done) {
        pc_held_msg *h = pc__held_pop(l);
        int rv = chain_message(st, &h->m, response);
        if (rv == PC_CHAIN_PAUSE) {
            held_pause(st, h, response);
            break;
        }
        if (!held_decided(st, h, rv, response)) return false;
    }
    return true;
}

/* Each whole message passes the chain before its bytes are queued for the other side: a denied
 * message never goes on. While a plugin holds one, later messages wait behind it (bounded: the
 * sender's window is not given back meanwhile). */
static int message_in(pc_stream *st, const pc_grpc_message *gm, bool response)
{
    pc_held_list *l = held_list(st, response);
    if (dir_paused(st, response) || l->head) {
        pc_held_msg *h = pc__held_copy(gm, response);
        if (!h) return FRAME_OOM;
        pc__held_push(l, h);
        return 0;
    }
    pc_message m = {gm->data, gm->len, gm->index, gm->compressed, response};
    int rv = chain_message(st, &m, response);
    if (rv == PC_CHAIN_DENY) return FRAME_DENIED;
    if (rv == PC_CHAIN_PAUSE) {
        pc_held_msg *h = pc__held_copy(gm, response);
        if (!h) return FRAME_OOM;
        held_pause(st, h, response);
        return 0;
    }
    return pc__bq_append(out_queue(st, response), gm->frame, gm->frame_len) < 0 ? FRAME_OOM : 0;
}

/* Whole messages received from the client that the origin has not taken yet. A message still
 * arriving is not counted: it must be acknowledged to complete (it is bounded by
 * max_message_bytes instead). */
static size_t held_bytes(const pc_stream *st)
{
    return st->req_q.size + pc__held_size(&st->req_hold);
}

static int on_request_message(void *ud, const pc_grpc_message *gm)
{
    pc_stream *st = ud;
    st->req_msgs++;
    return message_in(st, gm, false);
}

static void framer_failed(pc_stream *st, int rv, const char *err)
{
    if (rv == PC_GRPC_FRAME_TOO_LARGE)
        pc__stream_fail(st, PC_GRPC_RESOURCE_EXHAUSTED, 413, "message_too_large", err);
    else if (rv == PC_GRPC_FRAME_UNSUPPORTED)
        pc__stream_fail(st, PC_GRPC_UNIMPLEMENTED, 415, "unsupported_encoding", err);
    else if (rv == FRAME_OOM)
        pc__stream_fail(st, PC_GRPC_RESOURCE_EXHAUSTED, 503, "out_of_memory", "out of memory");
    else if (rv == FRAME_DENIED)
        denied(st);
    else
        pc__stream_fail(st, PC_GRPC_INTERNAL, 400, "malformed_grpc", err);
}

static void submit_origin(pc_stream *st)
{
    st->origin_submitted = true;
    size_t o = st->rq.route_origin ? st->rq.route_origin - 1 : st->rq.zone->origin_index;
    pc__pool_submit(st->gen->pools[o], st);
}

/* ---- held plain HTTP bodies (host->hold_body) ---- */

static void body_free(pc_stream *st)
{
    free(st->body);
    st->body = NULL;
    st->body_len = st->body_cap = 0;
    if (st->body_acct && st->rq.conn)
        pc__client_held((struct sockaddr *)&st->rq.conn->addr, -(int64_t)st->body_acct);
    st->body_acct = 0;
}

enum { BODY_OK = 0, BODY_TOO_LARGE = -1, BODY_CLIENT_BUDGET = -2, BODY_OOM = -3 };

static int body_append(pc_stream *st, const uint8_t *data, size_t len)
{
    if (len > st->body_limit - st->body_len) return BODY_TOO_LARGE;
    if (st->rq.conn) {
        int64_t total = pc__client_held((struct sockaddr *)&st->rq.conn->addr, (int64_t)len);
        st->body_acct += len;
        uint32_t limit = st->gen->cfg->limits.max_held_bytes_per_client;
        if (limit && total > (int64_t)limit) return BODY_CLIENT_BUDGET;
    }
    if (st->body_len + len > st->body_cap) {
        size_t cap = st->body_cap ? st->body_cap : 16384;
        while (cap < st->body_len + len)
            cap *= 2;
        if (cap > st->body_limit) cap = st->body_limit;
        uint8_t *b = realloc(st->body, cap);
        if (!b) return BODY_OOM;
        st->body = b;
        st->body_cap = cap;
    }
    memcpy(st->body + st->body_len, data, len);
    st->body_len += len;
    return BODY_OK;
}

static void body_failed(pc_stream *st, int rv)
{
    body_free(st);
    if (rv == BODY_TOO_LARGE) {
        char msg[128];
        snprintf(msg, sizeof msg, "request body larger than %zu bytes", st->body_limit);
        pc__stream_fail(st, PC_GRPC_RESOURCE_EXHAUSTED, 413, "body_too_large", msg);
    } else if (rv == BODY_CLIENT_BUDGET) {
        pc__stream_fail(st, PC_GRPC_RESOURCE_EXHAUSTED, 503, "client_held_bytes",
                        "this client has too many request bodies in flight");
    } else {
        pc__stream_fail(st, PC_GRPC_RESOURCE_EXHAUSTED, 503, "out_of_memory", "out of memory");
    }
}

/* host->hold_body(): only while the body went nowhere yet. */
static int hold_body(pc_stream *st, size_t max_bytes)
{
    if (st->rq.is_grpc || !max_bytes || !body_open(st)) return -1;
    if (!st->body_limit || max_bytes < st->body_limit) st->body_limit = max_bytes;
    /* Body bytes that arrived while an earlier plugin held the headers join the collection. A
     * failure is answered once the headers hooks are done (headers_passed), not from inside one. */
    uint8_t chunk[4096];
    while (st->req_q.size && !st->body_error) {
        size_t n = pc__bq_read(&st->req_q, chunk, sizeof chunk);
        st->body_error = body_append(st, chunk, n);
    }
    release_client(st);
    return 0;
}

/* The client sent the whole body: it goes through the chain as one message, then to the origin
 * with the headers. False when the chain paused or denied it. */
static bool pass_body(pc_stream *st)
{
    pc__stream_set_req_state(st, PC_REQ_BODY);
    if (!st->body_len) {
        body_free(st);
        return true;
    }
    pc_held_msg *h = pc__held_wrap(st->body, st->body_len);
    if (!h) {
        body_failed(st, BODY_OOM);
        return false;
    }
    st->body = NULL;
    st->body_len = st->body_cap = 0;
    int rv = pc__chain_request_message(&st->rq, &h->m, 0);
    if (rv == PC_CHAIN_PAUSE) {
        held_pause(st, h, false);
        return false;
    }
    return held_decided(st, h, rv, false);
}

/* The request headers passed the chain: on to the origin, unless a plugin holds the body. A body
 * declared larger than the holder accepts is refused at once, not after it was sent. */
static void headers_passed(pc_stream *st)
{
    if (pc__chain_request_ready(&st->rq) == PC_CHAIN_DENY) {
        denied(st);
        return;
    }
    if (st->body_limit) {
        pc__stream_set_req_state(st, PC_REQ_HOLDING);
        const nghttp2_nv *cl = pc__headers_find(&st->rq.headers, "content-length");
        if (cl && strtoull((const char *)cl->value, NULL, 10) > st->body_limit)
            st->body_error = BODY_TOO_LARGE;
        if (st->body_error) body_failed(st, st->body_error);
        return;
    }
    pc__stream_set_req_state(st, PC_REQ_BODY);
    submit_origin(st);
}

static const pc_request_ops stream_ops;

void pc__stream_request_ready(pc_stream *st)
{
    pc__request_init(&st->rq, &st->req_headers, st->gen, st->client ? st->client->conn_info : NULL,
                     &stream_ops, st);
    pc_request *r = &st->rq;
    if (pc__grpc_web_detect(st)) return;
    if (st->headers_too_large) {
        pc__stream_fail(st, PC_GRPC_RESOURCE_EXHAUSTED, 431, "headers_too_large",
                        "request headers too large");
        return;
    }
    if (!r->method || !r->path) {
        pc__stream_fail(st, PC_GRPC_INTERNAL, 400, "bad_request", "request without :method or :path");
        return;
    }
    char host[256];
    if (!pc__request_select_zone(r, host, sizeof host)) {
        char msg[320];
        snprintf(msg, sizeof msg, "no zone serves host \"%s\"", host);
        pc__stream_fail(st, PC_GRPC_NOT_FOUND, 421, "no_zone", msg);
        return;
    }
    if (pc__grpc_web_admit(st)) return;
    if (r->is_grpc && !r->zone->grpc) {
        char msg[320];
        snprintf(msg, sizeof msg, "gRPC is disabled for zone %s", r->zone->name);
        pc__stream_fail(st, PC_GRPC_UNIMPLEMENTED, 403, "grpc_disabled", msg);
        return;
    }
    if (r->is_grpc) {
        pc_grpc_encoding enc = PC_GRPC_ENC_IDENTITY;
        if (r->grpc_encoding) enc = pc__grpc_encoding_parse(r->grpc_encoding, strlen(r->grpc_encoding));
        pc__grpc_framer_init(&st->framer, enc, r->zone->max_message_bytes);
        if (r->grpc_timeout) {
            int64_t ms = pc__grpc_timeout_parse(r->grpc_timeout, strlen(r->grpc_timeout));
            if (ms < 0) {
                pc__stream_fail(st, PC_GRPC_INTERNAL, 400, "bad_timeout", "malformed grpc-timeout header");
                return;
            }
            st->deadline_ms = (int64_t)uv_now(&st->worker->loop) + ms;
            start_timer(st, on_deadline, (uint64_t)ms);
        }
    }
    int rv = pc__chain_request_headers(r, 0);
    if (rv == PC_CHAIN_DENY) {
        denied(st);
        return;
    }
    if (rv == PC_CHAIN_PAUSE) {
        pause_request(st, PC_PHASE_HEADERS);
        return;
    }
    headers_passed(st);
}

static void wake_origin(pc_stream *st)
{
    if (st->up && st->up->sess) {
        nghttp2_session_resume_data(st->up->sess, st->up_sid);
        pc__upconn_schedule(st->up);
    }
}

/* Acknowledge what was held back once little is waiting for the origin. */
static void release_acks(pc_stream *st)
{
    if (st->req_deferred && held_bytes(st) < QUEUE_LOW_WATER) release_client(st);
}

static void finish_request(pc_stream *st)
{
    pc__stream_set_req_state(st, PC_REQ_ENDED);
    /* A held body: the origin sees the request only now that every hook passed it. */
    if (st->body_limit && !st->origin_submitted) submit_origin(st);
    wake_origin(st);
}

/* The client ended its side and every message went through the chain: end-of-request hooks. */
static void request_end(pc_stream *st)
{
    bool flowing = st->req_state == PC_REQ_BODY || st->req_state == PC_REQ_HOLDING;
    if (!st->client_eof || !flowing || st->req_hold.head || st->resp_done || st->up_closed) return;
    if (st->req_state == PC_REQ_HOLDING && !pass_body(st)) return;
    pc__stream_set_req_state(st, PC_REQ_ENDING);
    if (st->rq.is_grpc) {
        char err[256];
        int rv = pc__grpc_framer_finish(&st->framer, err, sizeof err);
        if (rv != 0) {
            framer_failed(st, rv, err);
            return;
        }
    }
    int rv = pc__chain_request_end(&st->rq, 0);
    if (rv == PC_CHAIN_DENY)
        denied(st);
    else if (rv == PC_CHAIN_PAUSE)
        pause_request(st, PC_PHASE_END);
    else
        finish_request(st);
}

/* Run the messages that waited behind a paused one, until the next pause. */
static void drain_held(pc_stream *st)
{
    if (!held_drain(st, false)) return;
    if (st->resp_done) return;
    wake_origin(st);
    release_acks(st);
    request_end(st);
}

/* host->resume(): continue or end a paused request. */
static void resume(pc_stream *st, int verdict)
{
    int phase = st->req_pause;
    if (!phase) return;
    st->req_pause = PC_PHASE_NONE;
    if (st->resp_done || st->client_closed) {
        /* Answered or abandoned while the plugin worked. */
        reset_request(st);
        drop_held(st);
        maybe_free(st);
        return;
    }
    /* Back where it paused, for the rest of the chain. */
    pc__stream_set_req_state(st, phase == PC_PHASE_HEADERS   ? PC_REQ_HEADERS
                                 : phase == PC_PHASE_MESSAGE ? PC_REQ_BODY
                                                             : PC_REQ_ENDING);
    pc_request *r = &st->rq;
    size_t from = r->pause_pos + 1;
    int rv = pc__chain_resumed(r, r->pause_pos, verdict) ? PC_CHAIN_DENY : PC_CHAIN_GO;
    if (rv == PC_CHAIN_GO) {
        if (phase == PC_PHASE_HEADERS)
            rv = pc__chain_request_headers(r, from);
        else if (phase == PC_PHASE_MESSAGE)
            rv = pc__chain_request_message(r, &st->req_hold.cur->m, from);
        else
            rv = pc__chain_request_end(r, from);
    }
    if (rv == PC_CHAIN_PAUSE) {
        pause_request(st, phase);
        return;
    }
    if (rv == PC_CHAIN_DENY) {
        denied(st);
        maybe_free(st);
        return;
    }
    if (phase == PC_PHASE_HEADERS) {
        headers_passed(st);
    } else if (phase == PC_PHASE_MESSAGE) {
        pc_held_msg *h = st->req_hold.cur;
        st->req_hold.cur = NULL;
        if (!held_decided(st, h, PC_CHAIN_GO, false)) return;
    } else {
        finish_request(st);
        return;
    }
    if (!st->resp_done) drain_held(st);
}

void pc__stream_req_data(pc_stream *st, const uint8_t *data, size_t len)
{
    if (st->web && !st->resp_done && !st->up_closed) {
        /* The chain and the origin see the native bytes; base64's overhead is acknowledged at once. */
        size_t wire = len;
        char err[256];
        if (pc__grpc_web_request_data(st->web, &data, &len, err, sizeof err) < 0) {
            st->req_bytes += wire;
            ack_client(st, wire);
            pc__stream_fail(st, PC_GRPC_INTERNAL, 400, "malformed_grpc_web", err);
            return;
        }
        st->req_bytes += wire - len;
        ack_client(st, wire - len);
    }
    st->req_bytes += len;
    if (st->resp_done || st->up_closed || !st->rq.zone) {
        ack_client(st, len); /* answered already: drain and drop */
        return;
    }
    if (st->rq.is_grpc) {
        char err[256];
        int rv = pc__grpc_framer_feed(&st->framer, data, len, on_request_message, st, err, sizeof err);
        if (rv != 0) {
            ack_client(st, len);
            framer_failed(st, rv, err);
            return;
        }
    } else if (st->body_limit && body_open(st)) {
        int rv = st->body_error ? st->body_error : body_append(st, data, len);
        ack_client(st, len); /* bounded by body_limit, not by the window */
        if (rv != BODY_OK) body_failed(st, rv);
        return;
    } else if (pc__bq_append(&st->req_q, data, len) < 0) {
        ack_client(st, len);
        pc__stream_fail(st, PC_GRPC_RESOURCE_EXHAUSTED, 503, "out_of_memory", "out of memory");
        return;
    }
    if (held_bytes(st) < QUEUE_LOW_WATER)
        ack_client(st, len);
    else
        defer_client(st, len);
    wake_origin(st);
}

void pc__stream_req_end(pc_stream *st)
{
    st->client_eof = true;
    if (st->resp_done || st->up_closed || !st->rq.zone) return;
    char err[256];
    if (st->web && pc__grpc_web_request_end(st->web, err, sizeof err) < 0) {
        pc__stream_fail(st, PC_GRPC_INTERNAL, 400, "malformed_grpc_web", err);
        return;
    }
    request_end(st);
}

ssize_t pc__stream_read_request(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                                nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)sid;
    (void)ud;
    pc_stream *st = src->ptr;
    size_t n = pc__bq_read(&st->req_q, buf, len);
    st->req_sent += n;
    release_acks(st);
    if (st->rst_after_flush) {
        if (st->req_q.size == 0 && st->up && !st->rst_pending) {
            st->rst_pending = true;
            st->up->pending_resets++;
            pc__upconn_schedule(st->up);
        }
        return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
    }
    if (st->req_q.size == 0 && st->req_state == PC_REQ_ENDED && !st->resp_done)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    else if (n == 0)
        return NGHTTP2_ERR_DEFERRED;
    return (ssize_t)n;
}

void pc__stream_client_sent_end(pc_stream *st)
{
    response_done(st);
    /* The answer is complete while the client is still sending: tell it to stop (RFC 9113 8.1). */
    if (!st->client_eof && client_writable(st)) {
        nghttp2_submit_rst_stream(st->client->sess, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_NO_ERROR);
        pc__h2conn_schedule(st->client);
    }
}

void pc__stream_client_closed(pc_stream *st, uint32_t error_code)
{
    pc_h2conn *c = st->client;
    if (!st->resp_done && error_code != NGHTTP2_NO_ERROR && st->edge_status < 0)
        st->edge_reason = "client_reset";
    st->client_closed = true;
    reset_request(st);
    if (st->resp_state != PC_RESP_ENDED) reset_response(st);
    /* Bytes we held unacknowledged: give the connection window back. */
    st->req_deferred = 0; /* the connection window was given back as the bytes came */
    if (c) pc__h2conn_unlink_stream(c, st);
    /* A client reset (or a finished call) ends the origin stream too. */
    cancel_origin(st, false);
    /* Messages allowed before a refused one still go to the origin first, but an origin that takes
     * none of them does not keep the stream (and its connection) for ever. */
    if ((st->queued || st->up) && st->rst_after_flush) start_timer(st, on_flush_limit, ORIGIN_FLUSH_MS);
    maybe_free(st);
}

/* ---- response path ---- */

void pc__stream_up_attached(pc_stream *st)
{
    if (st->req_q.size || st->req_state == PC_REQ_ENDED)
        nghttp2_session_resume_data(st->up->sess, st->up_sid);
}

static bool is_hop_by_hop(const nghttp2_nv *nv)
{
#define NAME(s)                                                                                              \
    {                                                                                                        \
        (s), sizeof(s) - 1                                                                                   \
    } /* a literal and its length: no strlen per field */
    static const struct {
        const char *name;
        size_t len;
    } drop[] = {NAME("connection"), NAME("keep-alive"), NAME("proxy-connection"), NAME("transfer-encoding"),
                NAME("upgrade")};
#undef NAME
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
        if (nv->namelen == drop[i].len && memcmp(nv->name, drop[i].name, nv->namelen) == 0) return true;
    return false;
}

/* The headers to pass on, hop-by-hop ones removed, into buf when they fit (else allocated: free
 * with release_nva). */
static nghttp2_nv *forwardable(const pc_headers *h, const pc_headers *extra, nghttp2_nv *buf, size_t bufn,
                               size_t *n)
{
    size_t ne = extra ? extra->n : 0;
    nghttp2_nv *nva = h->n + ne <= bufn ? buf : malloc((h->n + ne + 1) * sizeof *nva);
    if (!nva) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < h->n; i++)
        if (!is_hop_by_hop(&h->nv[i])) nva[k++] = h->nv[i];
    for (size_t i = 0; i < ne; i++)
        nva[k++] = extra->nv[i];
    *n = k;
    return nva;
}

static void release_nva(nghttp2_nv *nva, const nghttp2_nv *buf)
{
    if (nva != buf) free(nva);
}

void pc__stream_resp_headers_done(pc_stream *st, bool end_stream)
{
    if (st->resp_done || !client_writable(st)) return;
    size_t n;
    nghttp2_nv buf[32];
    nghttp2_nv *nva = forwardable(&st->resp, &st->rq.extra_resp, buf, 32, &n);
    if (!nva) {
        pc__stream_fail(st, PC_GRPC_INTERNAL, 502, "out_of_memory", "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (nva[i].namelen == 7 && memcmp(nva[i].name, ":status", 7) == 0) {
            /* nghttp2 let only a 3-digit :status through; copied and read without printf */
            size_t vl =
                nva[i].valuelen < sizeof st->remote_status ? nva[i].valuelen : sizeof st->remote_status - 1;
            memcpy(st->remote_status, nva[i].value, vl);
            st->remote_status[vl] = '\0';
            int code = 0;
            for (size_t k = 0; k < vl && nva[i].value[k] >= '0' && nva[i].value[k] <= '9'; k++)
                code = code * 10 + (nva[i].value[k] - '0');
            st->http_status = code;
        }
    if (pc__chain_response_headers(&st->rq) || (end_stream && pc__chain_response_trailers(&st->rq))) {
        release_nva(nva, buf);
        denied(st);
        return;
    }
    if (st->rq.is_grpc && !end_stream && st->rq.chain && st->rq.chain->response_messages) {
        const char *enc = NULL;
        for (size_t i = 0; i < st->resp.n; i++)
            if (st->resp.nv[i].namelen == 13 && memcmp(st->resp.nv[i].name, "grpc-encoding", 13) == 0)
                enc = (const char *)st->resp.nv[i].value;
        pc__grpc_framer_init(&st->resp_framer,
                             enc ? pc__grpc_encoding_parse(enc, strlen(enc)) : PC_GRPC_ENC_IDENTITY,
                             st->rq.zone->max_message_bytes);
        st->resp_framer_on = true;
    }
    if (end_stream) {
        /* Trailers-Only from the origin: passed on as one HEADERS frame, unchanged. */
        pc__stream_set_resp_state(st, PC_RESP_ENDED);
        submit_response(st, nva, n, NULL);
        stop_deadline(st);
    } else {
        pc__stream_set_resp_state(st, PC_RESP_BODY);
        nghttp2_data_provider prd = {.source.ptr = st, .read_callback = pc__stream_read_response};
        submit_response(st, nva, n, &prd);
    }
    release_nva(nva, buf);
    pc__h2conn_schedule(st->client);
}

/* Response messages are counted from their 5-byte prefixes as bytes pass, without buffering. */
static void count_messages(pc_stream *st, const uint8_t *p, size_t len)
{
    if (!st->rq.is_grpc) return;
    while (len > 0) {
        if (st->resp_skip) {
            size_t n = len < st->resp_skip ? len : st->resp_skip;
            st->resp_skip -= (uint32_t)n;
            p += n;
            len -= n;
            continue;
        }
        st->resp_pfx[st->resp_pfx_have++] = *p++;
        len--;
        if (st->resp_pfx_have == 5) {
            st->resp_pfx_have = 0;
            st->resp_msgs++;
            st->resp_skip = ((uint32_t)st->resp_pfx[1] << 24) | ((uint32_t)st->resp_pfx[2] << 16) |
                            ((uint32_t)st->resp_pfx[3] << 8) | st->resp_pfx[4];
        }
    }
}

/* Response bytes the client has not taken: queued, and held for a plugin. */
static size_t resp_held_bytes(const pc_stream *st)
{
    return st->resp_q.size + pc__held_size(&st->resp_hold);
}

static int on_response_message(void *ud, const pc_grpc_message *gm)
{
    pc_stream *st = ud;
    st->resp_msgs++;
    return message_in(st, gm, true);
}

/* Hand what the chain passed to the client, and take more from the origin once little waits. */
static void resp_flow(pc_stream *st)
{
    if (st->resp_deferred && resp_held_bytes(st) < QUEUE_LOW_WATER) release_origin(st);
    nghttp2_session_resume_data(st->client->sess, st->sid);
    pc__h2conn_schedule(st->client);
}

/* Run the response messages that waited behind a held one, until the next pause; then the end
 * of the response if the origin finished meanwhile. */
static void drain_resp_held(pc_stream *st)
{
    if (!held_drain(st, true)) return;
    if (st->resp_done || !client_writable(st)) return;
    resp_flow(st);
    if (st->resp_state != PC_RESP_PAUSED && !st->resp_hold.head && st->resp_end_pending) {
        st->resp_end_pending = false;
        pc__stream_resp_end(st);
    }
}

/* host->resume_response(): continue or end a paused response message. */
static void resume_response(pc_stream *st, int verdict)
{
    if (!st->resp_pause) return;
    st->resp_pause = false;
    if (st->resp_done || !client_writable(st)) {
        pc__held_drop(&st->resp_hold); /* the request direction may still hold its own */
        maybe_free(st);
        return;
    }
    pc__stream_set_resp_state(st, PC_RESP_BODY);
    pc_request *r = &st->rq;
    int rv = pc__chain_resumed(r, r->resp_pause_pos, verdict) ? PC_CHAIN_DENY : PC_CHAIN_GO;
    if (rv == PC_CHAIN_GO) rv = pc__chain_response_message(r, &st->resp_hold.cur->m, r->resp_pause_pos + 1);
    if (rv == PC_CHAIN_PAUSE) {
        st->resp_pause = true;
        pc__stream_set_resp_state(st, PC_RESP_PAUSED);
        return;
    }
    pc_held_msg *h = st->resp_hold.cur;
    st->resp_hold.cur = NULL;
    if (!held_decided(st, h, rv, true)) {
        maybe_free(st);
        return;
    }
    drain_resp_held(st);
}

void pc__stream_resp_data(pc_stream *st, const uint8_t *data, size_t len)
{
    if (st->resp_done || !client_writable(st)) {
        ack_origin(st, len);
        return;
    }
    if (st->resp_framer_on) {
        char err[256];
        int rv = pc__grpc_framer_feed(&st->resp_framer, data, len, on_response_message, st, err, sizeof err);
        if (rv != 0) {
            ack_origin(st, len);
            if (rv == FRAME_DENIED)
                denied(st);
            else
                pc__stream_fail(st, PC_GRPC_INTERNAL, 502, "bad_origin_response", err);
            return;
        }
    } else if (count_messages(st, data, len), pc__bq_append(&st->resp_q, data, len) < 0) {
        ack_origin(st, len);
        pc__stream_fail(st, PC_GRPC_RESOURCE_EXHAUSTED, 503, "out_of_memory", "out of memory");
        return;
    }
    if (resp_held_bytes(st) < QUEUE_LOW_WATER)
        ack_origin(st, len);
    else
        defer_origin(st, len);
    account_held(st);
    if (st->resp_done) return;
    nghttp2_session_resume_data(st->client->sess, st->sid);
    pc__h2conn_schedule(st->client);
}

void pc__stream_resp_end(pc_stream *st)
{
    if (!st->resp_done && client_writable(st) && (st->resp_state == PC_RESP_PAUSED || st->resp_hold.head)) {
        st->resp_end_pending = true; /* after the held messages (the deadline still runs) */
        return;
    }
    stop_deadline(st);
    if (st->resp_done || !client_writable(st)) return;
    if (st->resp_framer_on) {
        char err[256];
        if (pc__grpc_framer_finish(&st->resp_framer, err, sizeof err) != 0) {
            pc__stream_fail(st, PC_GRPC_INTERNAL, 502, "bad_origin_response", err);
            return;
        }
    }
    if (st->trailers.n && pc__chain_response_trailers(&st->rq)) {
        denied(st);
        return;
    }
    pc__stream_set_resp_state(st, PC_RESP_ENDED);
    nghttp2_session_resume_data(st->client->sess, st->sid);
    pc__h2conn_schedule(st->client);
}

ssize_t pc__stream_read_response(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                                 nghttp2_data_source *src, void *ud)
{
    (void)ud;
    pc_stream *st = src->ptr;
    size_t n = pc__bq_read(&st->resp_q, buf, len);
    st->resp_bytes += n;
    if (st->held_acct) account_held(st);
    if (st->client_rst_after) {
        if (st->resp_q.size == 0 && !st->client_rst_now) {
            st->client_rst_now = true;
            st->client->pending_resets++;
            pc__h2conn_schedule(st->client);
        }
        return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
    }
    if (st->resp_deferred && resp_held_bytes(st) < QUEUE_LOW_WATER) release_origin(st);
    if (st->resp_q.size == 0 && st->resp_state == PC_RESP_ENDED) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->trailers.n > 0 && !st->web) { /* gRPC-Web: the trailers go in the body */
            size_t tn;
            nghttp2_nv buf[16];
            nghttp2_nv *nva = forwardable(&st->trailers, NULL, buf, 16, &tn);
            if (nva) {
                *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
                nghttp2_submit_trailer(s, sid, nva, tn);
                release_nva(nva, buf);
            }
        }
    } else if (n == 0) {
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

void pc__stream_up_closed(pc_stream *st, uint32_t error_code, const char *why)
{
    st->up = NULL;
    st->resp_deferred = 0;
    /* REFUSED_STREAM means the origin did not process it (RFC 9113 8.7): send it again, as long
     * as none of its body is gone. */
    if (error_code == NGHTTP2_REFUSED_STREAM && !why && st->req_sent == 0 && st->retries < 2 && st->pool &&
        !response_started(st) && !st->resp_done && client_writable(st)) {
        st->retries++;
        st->up_started = false;
        pc__pool_submit(st->pool, st);
        return;
    }
    st->up_closed = true;
    /* An origin that finished while a plugin holds a response message has finished all the same. */
    bool ended = st->resp_state == PC_RESP_ENDED || st->resp_end_pending;
    if (st->resp_done || !client_writable(st) || (ended && error_code == NGHTTP2_NO_ERROR)) {
        maybe_free(st);
        return;
    }
    if (why) {
        /* The connection died under the stream. */
        pc__stream_fail(st, PC_GRPC_UNAVAILABLE, 502, "origin_lost", why);
    } else if (ended) {
        maybe_free(st);
        return;
    } else {
        /* The origin reset the stream: the client sees the same reset, after the data the origin
         * sent before it. */
        uint32_t code = error_code == NGHTTP2_NO_ERROR ? NGHTTP2_INTERNAL_ERROR : error_code;
        st->edge_reason = "origin_reset";
        stop_deadline(st);
        if (st->resp_state == PC_RESP_BODY && st->resp_q.size > 0 && !st->resp_hold.head) {
            st->client_rst_code = code;
            st->client_rst_after = true;
            nghttp2_session_resume_data(st->client->sess, st->sid);
        } else {
            response_done(st);
            reset_response(st);
            nghttp2_submit_rst_stream(st->client->sess, NGHTTP2_FLAG_NONE, st->sid, code);
        }
        pc__h2conn_schedule(st->client);
    }
    maybe_free(st);
}

void pc__stream_client_reset_due(pc_stream *st)
{
    if (!st->client_rst_now) return;
    st->client_rst_now = false;
    st->client_rst_after = false;
    response_done(st);
    reset_response(st);
    if (client_writable(st))
        nghttp2_submit_rst_stream(st->client->sess, NGHTTP2_FLAG_NONE, st->sid, st->client_rst_code);
}

void pc__stream_up_failed(pc_stream *st, int grpc_status, int http_status, const char *msg)
{
    st->up_closed = true;
    pc__stream_fail(st, grpc_status, http_status, "origin_unavailable", msg);
    maybe_free(st);
}

/* ---- what the request asks of this pipe (request.h) ---- */

static void op_resume(void *owner, int verdict)
{
    resume(owner, verdict);
}

static void op_resume_response(void *owner, int verdict)
{
    resume_response(owner, verdict);
}

static int op_hold_body(void *owner, size_t max_bytes)
{
    return hold_body(owner, max_bytes);
}

static pc_origin_stage op_origin_stage(void *owner)
{
    const pc_stream *st = owner;
    return st->up_started ? PC_ORIGIN_STARTED : st->queued ? PC_ORIGIN_QUEUED : PC_ORIGIN_NOT_YET;
}

static bool op_response_started(void *owner)
{
    return response_started(owner);
}

static const pc_headers *op_response_headers(void *owner, bool trailers)
{
    pc_stream *st = owner;
    return trailers ? &st->trailers : &st->resp;
}

static const char *op_response_info(void *owner, const char *key)
{
    pc_stream *st = owner;
    if (!strcmp(key, "status")) return st->remote_status[0] ? st->remote_status : NULL;
    if (st->edge_status >= 0) {
        snprintf(st->info_status, sizeof st->info_status, "%d", st->edge_status);
        return st->info_status;
    }
    const char *v = pc__headers_get(&st->trailers, "grpc-status");
    return v ? v : pc__headers_get(&st->resp, "grpc-status");
}

static void op_retain(void *owner)
{
    ((pc_stream *)owner)->works++;
}

static void op_release(void *owner)
{
    pc_stream *st = owner;
    st->works--;
    maybe_free(st);
}

static const pc_request_ops stream_ops = {
    .resume = op_resume,
    .resume_response = op_resume_response,
    .hold_body = op_hold_body,
    .origin_stage = op_origin_stage,
    .response_started = op_response_started,
    .response_headers = op_response_headers,
    .response_info = op_response_info,
    .retain = op_retain,
    .release = op_release,
};
