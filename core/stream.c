/* The proxy between a client stream and an origin stream: zone selection, the gRPC switch,
 * deadlines, the gRPC message decoder on requests, bounded queues in both directions and the
 * edge's own gRPC answers. Every byte is acknowledged to its sender (WINDOW_UPDATE) only when
 * the queue it entered is short, so memory per stream stays bounded by the windows. */
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "grpc_status.h"
#include "h2_server.h"
#include "access_log.h"
#include "client_limit.h"
#include "log.h"
#include "metrics.h"
#include "plugin_loader.h"
#include "upstream.h"
#include "worker.h"

/* Below this many queued bytes, received data is acknowledged at once. */
#define QUEUE_LOW_WATER 65536

static void maybe_free(pc_stream *st);
static bool client_writable(pc_stream *st);

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
    if (want == st->held_acct || !st->conn) return;
    int64_t total =
        pc__client_held((struct sockaddr *)&st->conn->addr, (int64_t)want - (int64_t)st->held_acct);
    st->held_acct = want;
    uint32_t limit = st->gen->cfg->limits.max_held_bytes_per_client;
    if (!limit || total <= (int64_t)limit || !client_writable(st)) return;
    nghttp2_session *s = st->client->sess;
    pc_log_info("conn: client %s holds %lld bytes of unread responses (max_held_bytes_per_client %u): stream "
                "%d reset",
                st->client->t.peer, (long long)total, limit, st->sid);
    st->edge_reason = "client_not_reading";
    st->resp_done = true;
    nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_CANCEL);
    pc__h2conn_schedule(st->client);
}

const nghttp2_nv *pc__headers_find(const pc_headers *h, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < h->n; i++)
        if (h->nv[i].namelen == n && strncasecmp((const char *)h->nv[i].name, name, n) == 0) return &h->nv[i];
    return NULL;
}

static int status_of(const pc_headers *h)
{
    const nghttp2_nv *nv = pc__headers_find(h, "grpc-status");
    return nv ? atoi((const char *)nv->value) : -1;
}

int pc__stream_grpc_status(const pc_stream *st)
{
    if (st->edge_status >= 0) return st->edge_status;
    if (!st->is_grpc) return -1;
    int s = status_of(&st->trailers);
    return s >= 0 ? s : status_of(&st->resp);
}

void pc__stream_release(pc_stream *st)
{
    maybe_free(st);
}

const char *pc__stream_request_id(pc_stream *st)
{
    if (!st->request_id[0])
        snprintf(st->request_id, sizeof st->request_id, "%d-%llx", st->worker->id,
                 (unsigned long long)++st->worker->request_seq);
    return st->request_id;
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
    st->conn = c->conn_info;
    if (st->conn) st->conn->refs++;
    pc_mempool *mem = &c->worker->mem;
    pc__bq_init(&st->req_q, mem);
    pc__bq_init(&st->resp_q, mem);
    st->req.mem = st->resp.mem = st->trailers.mem = st->extra_resp.mem = mem;
    return st;
}

struct pc_hblock {
    pc_hblock *next;
    size_t used, cap;
    uint8_t data[];
};

/* Block and header together fit the worker's block cache. */
#define HBLOCK_SIZE (1024 - sizeof(pc_hblock))

int pc__stream_add_header(pc_headers *h, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        nghttp2_nv *nv = pc__mem_realloc(h->mem, h->nv, cap * sizeof *nv);
        if (!nv) return -1;
        h->nv = nv;
        h->cap = cap;
    }
    size_t need = nlen + vlen + 2;
    pc_hblock *b = h->blocks;
    if (!b || b->cap - b->used < need) {
        size_t cap = need > HBLOCK_SIZE ? need : HBLOCK_SIZE;
        if (!(b = pc__mem_malloc(h->mem, sizeof *b + cap))) return -1;
        b->used = 0;
        b->cap = cap;
        b->next = h->blocks;
        h->blocks = b;
    }
    uint8_t *mem = b->data + b->used;
    b->used += need;
    memcpy(mem, name, nlen);
    mem[nlen] = '\0';
    memcpy(mem + nlen + 1, value, vlen);
    mem[nlen + 1 + vlen] = '\0';
    h->nv[h->n++] = (nghttp2_nv){mem, mem + nlen + 1, nlen, vlen, NGHTTP2_NV_FLAG_NONE};
    h->bytes += nlen + vlen + 32;
    return 0;
}

void pc__headers_free(pc_headers *h)
{
    for (pc_hblock *b = h->blocks, *next; b; b = next) {
        next = b->next;
        pc__mem_free(h->mem, b);
    }
    pc__mem_free(h->mem, h->nv);
    *h = (pc_headers){.mem = h->mem};
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

static void drop_held(pc_stream *st);
static void body_free(pc_stream *st);

static void maybe_free(pc_stream *st)
{
    if (!st->client_closed || st->queued || st->up || st->paused || st->resp_paused || st->works) return;
    drop_held(st);
    body_free(st);
    stop_deadline(st);
    if (st->held_acct && st->conn)
        pc__client_held((struct sockaddr *)&st->conn->addr, -(int64_t)st->held_acct);
    if (st->method) {
        pc__chain_log(st);
        pc__access_log_write(st);
        const char *method = st->is_grpc && st->path ? st->path : st->method;
        double secs = (double)(uv_hrtime() - st->start_ns) / 1e9;
        pc__metrics_request(st->worker->metrics, st->zone ? st->zone->name : "", method,
                            pc__stream_grpc_status(st), st->edge_reason, secs);
    }
    if (st->counted) pc__metrics_stream(st->worker->metrics, -1);
    pc__chain_free(st);
    pc__headers_free(&st->req);
    pc__headers_free(&st->resp);
    pc__headers_free(&st->trailers);
    pc__headers_free(&st->extra_resp);
    pc__gen_release(st->gen);
    pc__bq_free(&st->req_q);
    pc__bq_free(&st->resp_q);
    if (st->is_grpc) pc__grpc_framer_free(&st->framer);
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

static void cancel_origin(pc_stream *st, bool flush_first)
{
    if (st->queued || st->up) pc__pool_cancel(st, flush_first || st->rst_after_flush);
}

/* Headers plugins added for the client go on the edge's own answers too (at most 32). */
static size_t with_extra(const pc_stream *st, nghttp2_nv *nva, size_t n)
{
    for (size_t i = 0; i < st->extra_resp.n && i < 32; i++)
        nva[n++] = st->extra_resp.nv[i];
    return n;
}

void pc__stream_fail(pc_stream *st, int grpc_status, int http_status, const char *reason, const char *msg)
{
    /* Messages the chain let through before a denied one still reach the origin, then it is reset. */
    cancel_origin(st, !strcmp(reason, "plugin_deny"));
    stop_deadline(st);
    if (st->resp_done || !client_writable(st)) return;
    st->resp_done = true;
    st->edge_reason = reason;
    if (st->is_grpc) st->edge_status = grpc_status;
    if (!st->resp_submitted) st->http_status = st->is_grpc ? 200 : http_status;
    nghttp2_session *s = st->client->sess;
    char enc[512];
    pc__grpc_message_encode(msg, enc, sizeof enc);
    char code[8];
    snprintf(code, sizeof code, "%d", grpc_status);
    pc_log_debug("stream %s %s: edge answered %s: %s", st->client->t.peer, st->path ? st->path : "-",
                 pc__grpc_status_name(grpc_status), msg);
    /* Whatever the origin sent and the client has not taken is dropped with this answer. */
    if (st->resp_q.size) {
        uint8_t sink[4096];
        while (st->resp_q.size)
            pc__bq_read(&st->resp_q, sink, sizeof sink);
    }
    if (st->is_grpc) {
        if (!st->resp_submitted) {
            /* Trailers-Only: one HEADERS frame carrying the status. */
            nghttp2_nv nva[4 + 32] = {NV(":status", "200", 3), NV("content-type", "application/grpc", 16),
                                      NV("grpc-status", code, strlen(code)),
                                      NV("grpc-message", enc, strlen(enc))};
            size_t n = with_extra(st, nva, 4);
            st->resp_submitted = true;
            nghttp2_submit_response(s, st->sid, nva, n, NULL);
        } else {
            /* Response already started: end it with trailers after what was sent. */
            pc__headers_free(&st->trailers);
            pc__stream_add_header(&st->trailers, (const uint8_t *)"grpc-status", 11, (const uint8_t *)code,
                                  strlen(code));
            pc__stream_add_header(&st->trailers, (const uint8_t *)"grpc-message", 12, (const uint8_t *)enc,
                                  strlen(enc));
            st->resp_eof = true;
            nghttp2_session_resume_data(s, st->sid);
        }
    } else if (!st->resp_submitted) {
        char status[8];
        snprintf(status, sizeof status, "%d", http_status);
        pc__bq_append(&st->resp_q, (const uint8_t *)msg, strlen(msg));
        pc__bq_append(&st->resp_q, (const uint8_t *)"\n", 1);
        st->resp_eof = true;
        nghttp2_nv nva[2 + 32] = {NV(":status", status, strlen(status)),
                                  NV("content-type", "text/plain", 10)};
        size_t n = with_extra(st, nva, 2);
        nghttp2_data_provider prd = {.source.ptr = st, .read_callback = pc__stream_read_response};
        st->resp_submitted = true;
        nghttp2_submit_response(s, st->sid, nva, n, &prd);
    } else {
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_INTERNAL_ERROR);
    }
    pc__h2conn_schedule(st->client);
}

static void on_deadline(uv_timer_t *t)
{
    pc_stream *st = t->data;
    pc__stream_fail(st, PC_GRPC_DEADLINE_EXCEEDED, 504, "deadline", "deadline exceeded at the edge");
    maybe_free(st);
}

/* ---- request path ---- */

static const char *hdr(const nghttp2_nv *nv, const char *name, size_t nlen)
{
    return (nv->namelen == nlen && memcmp(nv->name, name, nlen) == 0) ? (const char *)nv->value : NULL;
}

#define FRAME_OOM -100
#define FRAME_DENIED -101

static void denied(pc_stream *st)
{
    pc__stream_fail(st, st->deny_status, st->deny_http ? st->deny_http : 403, "plugin_deny",
                    st->deny_msg ? st->deny_msg : "denied");
}

/* A message kept while a plugin holds the request: copies, since the framer's buffers are
 * transient. Bounded by flow control: held bytes are not acknowledged to the client. */
typedef struct pc_held_msg {
    struct pc_held_msg *next;
    pc_message m;
    uint8_t *frame;
    size_t frame_len;
} pc_held_msg;

static pc_held_msg *hold(const pc_grpc_message *gm, bool response)
{
    pc_held_msg *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    size_t extra = gm->compressed ? gm->len : 0;
    h->frame = malloc(gm->frame_len + extra + 1);
    if (!h->frame) {
        free(h);
        return NULL;
    }
    memcpy(h->frame, gm->frame, gm->frame_len);
    if (extra) memcpy(h->frame + gm->frame_len, gm->data, gm->len);
    h->frame_len = gm->frame_len;
    h->m = (pc_message){extra ? h->frame + gm->frame_len : h->frame + 5, gm->len, gm->index, gm->compressed,
                        response};
    return h;
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
    return response ? st->resp_paused : st->paused != 0;
}

static int chain_message(pc_stream *st, const pc_message *m, bool response)
{
    return response ? pc__chain_response_message(st, m, 0) : pc__chain_request_message(st, m, 0);
}

/* A plugin paused on h: it is its direction's current held message until resumed. */
static void held_pause(pc_stream *st, pc_held_msg *h, bool response)
{
    held_list(st, response)->cur = h;
    if (response)
        st->resp_paused = true;
    else
        st->paused = PC_PHASE_MESSAGE;
}

static void held_push(pc_held_list *l, pc_held_msg *h)
{
    if (l->tail)
        l->tail->next = h;
    else
        l->head = h;
    l->tail = h;
    l->bytes += h->frame_len;
}

static pc_held_msg *held_pop(pc_held_list *l)
{
    pc_held_msg *h = l->head;
    l->head = h->next;
    if (!l->head) l->tail = NULL;
    l->bytes -= h->frame_len;
    h->next = NULL;
    return h;
}

static size_t held_size(const pc_held_list *l)
{
    return l->bytes + (l->cur ? l->cur->frame_len : 0);
}

static void held_drop(pc_held_list *l)
{
    if (l->cur) l->cur->next = l->head;
    for (pc_held_msg *h = l->cur ? l->cur : l->head, *n; h; h = n) {
        n = h->next;
        free(h->frame);
        free(h);
    }
    *l = (pc_held_list){0};
}

static void drop_held(pc_stream *st)
{
    held_drop(&st->req_hold);
    held_drop(&st->resp_hold);
}

/* A held message the chain has decided on: queued for the other side if it passed, then freed.
 * False when that ended the stream (denied, or out of memory). */
static bool held_decided(pc_stream *st, pc_held_msg *h, int rv, bool response)
{
    bool oom = rv == PC_CHAIN_GO && pc__bq_append(out_queue(st, response), h->frame, h->frame_len) < 0;
    free(h->frame);
    free(h);
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
        pc_held_msg *h = held_pop(l);
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
        pc_held_msg *h = hold(gm, response);
        if (!h) return FRAME_OOM;
        held_push(l, h);
        return 0;
    }
    pc_message m = {gm->data, gm->len, gm->index, gm->compressed, response};
    int rv = chain_message(st, &m, response);
    if (rv == PC_CHAIN_DENY) return FRAME_DENIED;
    if (rv == PC_CHAIN_PAUSE) {
        pc_held_msg *h = hold(gm, response);
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
    return st->req_q.size + held_size(&st->req_hold);
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
    size_t o = st->route_origin ? st->route_origin - 1 : st->zone->origin_index;
    pc__pool_submit(st->gen->pools[o], st);
}

/* ---- held plain HTTP bodies (host->hold_body) ---- */

static void body_free(pc_stream *st)
{
    free(st->body);
    st->body = NULL;
    st->body_len = st->body_cap = 0;
    if (st->body_acct && st->conn)
        pc__client_held((struct sockaddr *)&st->conn->addr, -(int64_t)st->body_acct);
    st->body_acct = 0;
}

enum { BODY_OK = 0, BODY_TOO_LARGE = -1, BODY_CLIENT_BUDGET = -2, BODY_OOM = -3 };

static int body_append(pc_stream *st, const uint8_t *data, size_t len)
{
    if (len > st->body_limit - st->body_len) return BODY_TOO_LARGE;
    if (st->conn) {
        int64_t total = pc__client_held((struct sockaddr *)&st->conn->addr, (int64_t)len);
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

int pc__stream_hold_body(pc_stream *st, size_t max_bytes)
{
    if (st->is_grpc || !max_bytes || st->origin_submitted || st->end_done || st->body_passed) return -1;
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
    st->body_passed = true;
    if (!st->body_len) {
        body_free(st);
        return true;
    }
    pc_held_msg *h = calloc(1, sizeof *h);
    if (!h) {
        body_failed(st, BODY_OOM);
        return false;
    }
    h->frame = st->body;
    h->frame_len = st->body_len;
    h->m = (pc_message){h->frame, h->frame_len, 0, 0, 0};
    st->body = NULL;
    st->body_len = st->body_cap = 0;
    int rv = pc__chain_request_message(st, &h->m, 0);
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
    if (pc__chain_request_ready(st) == PC_CHAIN_DENY) {
        denied(st);
        return;
    }
    if (st->body_limit && !st->body_passed) {
        const nghttp2_nv *cl = pc__headers_find(&st->req, "content-length");
        if (cl && strtoull((const char *)cl->value, NULL, 10) > st->body_limit)
            st->body_error = BODY_TOO_LARGE;
        if (st->body_error) body_failed(st, st->body_error);
        return;
    }
    submit_origin(st);
}

void pc__stream_request_ready(pc_stream *st)
{
    for (size_t i = 0; i < st->req.n; i++) {
        const nghttp2_nv *nv = &st->req.nv[i];
        const char *v;
        if (nv->name[0] == ':') {
            if ((v = hdr(nv, ":method", 7)))
                st->method = v;
            else if ((v = hdr(nv, ":scheme", 7)))
                st->scheme = v;
            else if ((v = hdr(nv, ":authority", 10)))
                st->authority = v;
            else if ((v = hdr(nv, ":path", 5)))
                st->path = v;
        } else if ((v = hdr(nv, "content-type", 12))) {
            st->content_type = v;
            st->is_grpc = pc__grpc_is_content_type(v, nv->valuelen);
        } else if ((v = hdr(nv, "host", 4))) {
            st->host_header = v;
        } else if ((v = hdr(nv, "grpc-timeout", 12))) {
            st->grpc_timeout = v;
        } else if ((v = hdr(nv, "grpc-encoding", 13))) {
            st->grpc_encoding = v;
        }
    }
    if (st->headers_too_large) {
        pc__stream_fail(st, PC_GRPC_RESOURCE_EXHAUSTED, 431, "headers_too_large",
                        "request headers too large");
        return;
    }
    if (!st->method || !st->path) {
        pc__stream_fail(st, PC_GRPC_INTERNAL, 400, "bad_request", "request without :method or :path");
        return;
    }
    /* The zone comes from the host part of :authority (or Host). */
    const char *auth = st->authority ? st->authority : st->host_header;
    char host[256] = "";
    if (auth) {
        size_t len = strlen(auth);
        const char *end = auth + len;
        if (auth[0] == '[') {
            const char *rb = strchr(auth, ']');
            end = rb ? rb + 1 : end;
        } else {
            const char *colon = strrchr(auth, ':');
            if (colon) end = colon;
        }
        len = (size_t)(end - auth);
        if (len >= sizeof host) len = sizeof host - 1;
        memcpy(host, auth, len);
        host[len] = '\0';
    }
    st->zone = pc__zone_find(st->gen->cfg, host, strlen(host));
    if (!st->zone) {
        char msg[320];
        snprintf(msg, sizeof msg, "no zone serves host \"%s\"", host);
        pc__stream_fail(st, PC_GRPC_NOT_FOUND, 421, "no_zone", msg);
        return;
    }
    if (st->is_grpc && !st->zone->grpc) {
        char msg[320];
        snprintf(msg, sizeof msg, "gRPC is disabled for zone %s", st->zone->name);
        pc__stream_fail(st, PC_GRPC_UNIMPLEMENTED, 403, "grpc_disabled", msg);
        return;
    }
    if (st->is_grpc) {
        pc_grpc_encoding enc = PC_GRPC_ENC_IDENTITY;
        if (st->grpc_encoding) enc = pc__grpc_encoding_parse(st->grpc_encoding, strlen(st->grpc_encoding));
        pc__grpc_framer_init(&st->framer, enc, st->zone->max_message_bytes);
        if (st->grpc_timeout) {
            int64_t ms = pc__grpc_timeout_parse(st->grpc_timeout, strlen(st->grpc_timeout));
            if (ms < 0) {
                pc__stream_fail(st, PC_GRPC_INTERNAL, 400, "bad_timeout", "malformed grpc-timeout header");
                return;
            }
            st->deadline_ms = (int64_t)uv_now(&st->worker->loop) + ms;
            st->deadline_timer = malloc(sizeof *st->deadline_timer);
            if (st->deadline_timer) {
                uv_timer_init(&st->worker->loop, st->deadline_timer);
                st->deadline_timer->data = st;
                uv_timer_start(st->deadline_timer, on_deadline, (uint64_t)ms, 0);
            }
        }
    }
    int rv = pc__chain_request_headers(st, 0);
    if (rv == PC_CHAIN_DENY) {
        denied(st);
        return;
    }
    if (rv == PC_CHAIN_PAUSE) {
        st->paused = PC_PHASE_HEADERS;
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
    st->req_eof = true;
    /* A held body: the origin sees the request only now that every hook passed it. */
    if (st->body_limit && !st->origin_submitted) submit_origin(st);
    wake_origin(st);
}

/* The client ended its side and every message went through the chain: end-of-request hooks. */
static void request_end(pc_stream *st)
{
    if (!st->client_eof || st->end_done || st->paused || st->req_hold.head || st->resp_done || st->up_closed)
        return;
    if (st->body_limit && !st->body_passed && !pass_body(st)) return;
    st->end_done = true;
    if (st->is_grpc) {
        char err[256];
        int rv = pc__grpc_framer_finish(&st->framer, err, sizeof err);
        if (rv != 0) {
            framer_failed(st, rv, err);
            return;
        }
    }
    int rv = pc__chain_request_end(st, 0);
    if (rv == PC_CHAIN_DENY)
        denied(st);
    else if (rv == PC_CHAIN_PAUSE)
        st->paused = PC_PHASE_END;
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

void pc__stream_resume(pc_stream *st, int verdict)
{
    int phase = st->paused;
    if (!phase) return;
    st->paused = 0;
    if (st->resp_done || st->client_closed) {
        /* Answered or abandoned while the plugin worked. */
        drop_held(st);
        maybe_free(st);
        return;
    }
    size_t from = st->pause_pos + 1;
    int rv = pc__chain_resumed(st, st->pause_pos, verdict) ? PC_CHAIN_DENY : PC_CHAIN_GO;
    if (rv == PC_CHAIN_GO) {
        if (phase == PC_PHASE_HEADERS)
            rv = pc__chain_request_headers(st, from);
        else if (phase == PC_PHASE_MESSAGE)
            rv = pc__chain_request_message(st, &st->req_hold.cur->m, from);
        else
            rv = pc__chain_request_end(st, from);
    }
    if (rv == PC_CHAIN_PAUSE) {
        st->paused = phase;
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
    st->req_bytes += len;
    if (st->resp_done || st->up_closed || !st->zone) {
        ack_client(st, len); /* answered already: drain and drop */
        return;
    }
    if (st->is_grpc) {
        char err[256];
        int rv = pc__grpc_framer_feed(&st->framer, data, len, on_request_message, st, err, sizeof err);
        if (rv != 0) {
            ack_client(st, len);
            framer_failed(st, rv, err);
            return;
        }
    } else if (st->body_limit && !st->body_passed) {
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
    if (st->resp_done || st->up_closed || !st->zone) return;
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
    if (st->req_q.size == 0 && st->req_eof && !st->resp_done)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    else if (n == 0)
        return NGHTTP2_ERR_DEFERRED;
    return (ssize_t)n;
}

void pc__stream_client_sent_end(pc_stream *st)
{
    st->resp_done = true;
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
    /* Bytes we held unacknowledged: give the connection window back. */
    st->req_deferred = 0; /* the connection window was given back as the bytes came */
    if (c) pc__h2conn_unlink_stream(c, st);
    /* A client reset (or a finished call) ends the origin stream too. */
    cancel_origin(st, false);
    maybe_free(st);
}

/* ---- response path ---- */

void pc__stream_up_attached(pc_stream *st)
{
    if (st->req_q.size || st->req_eof) nghttp2_session_resume_data(st->up->sess, st->up_sid);
}

static bool is_hop_by_hop(const nghttp2_nv *nv)
{
    static const char *const drop[] = {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                                       "upgrade"};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
        if (nv->namelen == strlen(drop[i]) && memcmp(nv->name, drop[i], nv->namelen) == 0) return true;
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
    nghttp2_nv *nva = forwardable(&st->resp, &st->extra_resp, buf, 32, &n);
    if (!nva) {
        pc__stream_fail(st, PC_GRPC_INTERNAL, 502, "out_of_memory", "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (nva[i].namelen == 7 && memcmp(nva[i].name, ":status", 7) == 0) {
            snprintf(st->remote_status, sizeof st->remote_status, "%.*s", (int)nva[i].valuelen, nva[i].value);
            st->http_status = atoi(st->remote_status);
        }
    if (pc__chain_response_headers(st) || (end_stream && pc__chain_response_trailers(st))) {
        release_nva(nva, buf);
        denied(st);
        return;
    }
    if (st->is_grpc && !end_stream && st->chain && st->chain->response_messages) {
        const char *enc = NULL;
        for (size_t i = 0; i < st->resp.n; i++)
            if (st->resp.nv[i].namelen == 13 && memcmp(st->resp.nv[i].name, "grpc-encoding", 13) == 0)
                enc = (const char *)st->resp.nv[i].value;
        pc__grpc_framer_init(&st->resp_framer,
                             enc ? pc__grpc_encoding_parse(enc, strlen(enc)) : PC_GRPC_ENC_IDENTITY,
                             st->zone->max_message_bytes);
        st->resp_framer_on = true;
    }
    st->resp_submitted = true;
    if (end_stream) {
        /* Trailers-Only from the origin: passed on as one HEADERS frame, unchanged. */
        st->resp_eof = true;
        nghttp2_submit_response(st->client->sess, st->sid, nva, n, NULL);
        stop_deadline(st);
    } else {
        nghttp2_data_provider prd = {.source.ptr = st, .read_callback = pc__stream_read_response};
        nghttp2_submit_response(st->client->sess, st->sid, nva, n, &prd);
    }
    release_nva(nva, buf);
    pc__h2conn_schedule(st->client);
}

/* Response messages are counted from their 5-byte prefixes as bytes pass, without buffering. */
static void count_messages(pc_stream *st, const uint8_t *p, size_t len)
{
    if (!st->is_grpc) return;
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
    return st->resp_q.size + held_size(&st->resp_hold);
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
    if (!st->resp_paused && !st->resp_hold.head && st->resp_end_pending) {
        st->resp_end_pending = false;
        pc__stream_resp_end(st);
    }
}

void pc__stream_resume_response(pc_stream *st, int verdict)
{
    if (!st->resp_paused) return;
    st->resp_paused = false;
    if (st->resp_done || !client_writable(st)) {
        held_drop(&st->resp_hold); /* the request direction may still hold its own */
        maybe_free(st);
        return;
    }
    int rv = pc__chain_resumed(st, st->resp_pause_pos, verdict) ? PC_CHAIN_DENY : PC_CHAIN_GO;
    if (rv == PC_CHAIN_GO) rv = pc__chain_response_message(st, &st->resp_hold.cur->m, st->resp_pause_pos + 1);
    if (rv == PC_CHAIN_PAUSE) {
        st->resp_paused = true;
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
    if (!st->resp_done && client_writable(st) && (st->resp_paused || st->resp_hold.head)) {
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
    if (st->trailers.n && pc__chain_response_trailers(st)) {
        denied(st);
        return;
    }
    st->resp_eof = true;
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
    if (st->resp_q.size == 0 && st->resp_eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->trailers.n > 0) {
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
        !st->resp_submitted && !st->resp_done && client_writable(st)) {
        st->retries++;
        st->up_started = false;
        pc__pool_submit(st->pool, st);
        return;
    }
    st->up_closed = true;
    /* An origin that finished while a plugin holds a response message has finished all the same. */
    bool ended = st->resp_eof || st->resp_end_pending;
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
        if (st->resp_submitted && st->resp_q.size > 0 && !st->resp_paused && !st->resp_hold.head) {
            st->client_rst_code = code;
            st->client_rst_after = true;
            nghttp2_session_resume_data(st->client->sess, st->sid);
        } else {
            st->resp_done = true;
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
    st->resp_done = true;
    if (client_writable(st))
        nghttp2_submit_rst_stream(st->client->sess, NGHTTP2_FLAG_NONE, st->sid, st->client_rst_code);
}

void pc__stream_up_failed(pc_stream *st, int grpc_status, int http_status, const char *msg)
{
    st->up_closed = true;
    pc__stream_fail(st, grpc_status, http_status, "origin_unavailable", msg);
    maybe_free(st);
}
