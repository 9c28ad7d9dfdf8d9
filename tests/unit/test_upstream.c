/* The origin side (core/upstream.c) and the whole pipe in memory, no socket anywhere: a test client
 * session, a server session wired to the stream's events as h2_server wires them, the stream and its
 * chain, the origin pool with a connection whose client session is upstream.c's own, and a test origin
 * session. Checked: which request headers go to the origin (hop-by-hop ones dropped, x-forwarded-*,
 * the remaining grpc-timeout), a call queued until the origin's SETTINGS arrive, its request and
 * response passing both ways with 1xx dropped and trailers kept, a response message a plugin holds
 * while the origin finishes, and an origin reset passed on after the data it sent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"
#include "h2_server.h"
#include "stream.h"

#include "../../core/upstream.c"

#define HOST (&pc__host_api)

static const char *conf = "listen: [{address: \"127.0.0.1:8080\"}]\n"
                          "origins: [{name: o, servers: [\"127.0.0.1:1\"]}]\n"
                          "zones: [{name: api, hosts: [api.example], origin: o}]\n";

static void test_hop_by_hop(void **state)
{
    (void)state;
    static const char *const dropped[] = {
        ":path", "connection",   "keep-alive", "proxy-connection", "upgrade",           "transfer-encoding",
        "host",  "grpc-timeout", "te",         "x-forwarded-for",  "x-forwarded-proto", "http2-settings"};
    for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++) {
        nghttp2_nv nv = {(uint8_t *)dropped[i], (uint8_t *)"v", strlen(dropped[i]), 1, 0};
        if (classify_request_header(&nv) == FIELD_KEEP)
            fail_msg("%s should not be passed on as it is", dropped[i]);
    }
    /* the two rewritten ones are told apart from the dropped */
    nghttp2_nv te = {(uint8_t *)"te", (uint8_t *)"trailers", 2, 8, 0};
    assert_int_equal(classify_request_header(&te), FIELD_TE);
    nghttp2_nv xff = {(uint8_t *)"x-forwarded-for", (uint8_t *)"10.0.0.1", 15, 8, 0};
    assert_int_equal(classify_request_header(&xff), FIELD_XFF);
    nghttp2_nv keep = {(uint8_t *)"x-request-id", (uint8_t *)"1", 12, 1, 0};
    assert_int_equal(classify_request_header(&keep), FIELD_KEEP);
    nghttp2_nv prefix = {(uint8_t *)"hostname", (uint8_t *)"1", 8, 1, 0};
    assert_int_equal(classify_request_header(&prefix), FIELD_KEEP);
}

/* ---- a plugin: holds response messages when asked ---- */

typedef struct watch_ctx {
    int logs, resp_msgs;
    pc_req_state req_at_end; /* the pipe's states when the call was logged */
    pc_resp_state resp_at_end;
} watch_ctx;

static int watch_resp_message(pc_request *r, void *ctx, void *state, const pc_message *m)
{
    (void)state;
    (void)m;
    ((watch_ctx *)ctx)->resp_msgs++;
    return HOST->header_get(r, "x-hold-response") ? PC_PAUSE : PC_CONTINUE;
}

static void watch_log(pc_request *r, void *ctx, void *state)
{
    (void)state;
    watch_ctx *w = ctx;
    w->logs++;
    const pc_stream *st = r->owner; /* the pipe that carries the request */
    w->req_at_end = st->req_state;
    w->resp_at_end = st->resp_state;
}

static const pc_plugin watch = {.abi_version = PC_PLUGIN_ABI_VERSION,
                                .struct_size = sizeof(pc_plugin),
                                .name = "watch",
                                .on_response_message = watch_resp_message,
                                .on_log = watch_log};

/* ---- the test origin ---- */

enum { ORIGIN_ANSWER, ORIGIN_DATA_THEN_WAIT };

typedef struct origin {
    nghttp2_session *s;
    int mode;
    char headers[2048]; /* "name: value\n" as received */
    uint8_t body[512];
    size_t body_len;
    bool request_ended;
    int32_t id;
    uint8_t out[64]; /* the response body */
    size_t out_len, out_at;
} origin;

static ssize_t origin_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                           nghttp2_data_source *src, void *ud)
{
    (void)src;
    origin *o = ud;
    size_t n = o->out_len - o->out_at < len ? o->out_len - o->out_at : len;
    memcpy(buf, o->out + o->out_at, n);
    o->out_at += n;
    if (o->out_at == o->out_len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (o->mode == ORIGIN_ANSWER) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            nghttp2_nv tr[] = {{(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, 0}};
            nghttp2_submit_trailer(s, id, tr, 1);
        } else {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM; /* and nothing more: the test resets it */
        }
    }
    return (ssize_t)n;
}

static void origin_respond(origin *o, int32_t id)
{
    nghttp2_nv info[] = {{(uint8_t *)":status", (uint8_t *)"100", 7, 3, 0}};
    nghttp2_submit_headers(o->s, NGHTTP2_FLAG_NONE, id, NULL, info, 1, NULL);
    nghttp2_nv nva[] = {{(uint8_t *)":status", (uint8_t *)"200", 7, 3, 0},
                        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, 0}};
    o->out_len = harness_grpc_frame(o->out, "pong", 4);
    o->out_at = 0;
    nghttp2_data_provider prd = {.read_callback = origin_read};
    nghttp2_submit_response(o->s, id, nva, 2, &prd);
}

static int o_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                    const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)s;
    (void)f;
    (void)flags;
    origin *o = ud;
    size_t at = strlen(o->headers);
    snprintf(o->headers + at, sizeof o->headers - at, "%.*s: %.*s\n", (int)nlen, name, (int)vlen, value);
    return 0;
}

static int o_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    (void)s;
    (void)flags;
    (void)id;
    origin *o = ud;
    assert_true(o->body_len + len <= sizeof o->body);
    memcpy(o->body + o->body_len, data, len);
    o->body_len += len;
    return 0;
}

static int o_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    origin *o = ud;
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        o->request_ended = true;
        o->id = f->hd.stream_id;
        origin_respond(o, f->hd.stream_id);
    }
    return 0;
}

/* ---- the client side: a test client, and a server session wired to the stream as h2_server does ---- */

typedef struct fixture fixture;

typedef struct reply {
    char status[8], grpc_status[8], grpc_message[128];
    uint8_t body[256];
    size_t body_len;
    bool closed;
    uint32_t close_code;
} reply;

struct fixture {
    harness h;
    watch_ctx watch;
    pc_h2conn *c;        /* the client connection (its session: srv) */
    nghttp2_session *cl; /* the test client */
    reply reply;
    pc_upconn *u; /* the origin connection, upstream.c's */
    origin o;
};

static int s_begin(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    fixture *fx = ud;
    pc_stream *st = pc__stream_new(fx->c, f->hd.stream_id);
    assert_non_null(st);
    st->cnext = fx->c->streams;
    fx->c->streams = st;
    fx->c->nstreams++;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
    return 0;
}

static int s_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                    const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)flags;
    (void)ud;
    pc_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    return pc__headers_add(&st->req_headers, name, nlen, value, vlen);
}

static int s_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    pc_stream *st = f->hd.stream_id ? nghttp2_session_get_stream_user_data(s, f->hd.stream_id) : NULL;
    if (!st) return 0;
    if (f->hd.type == NGHTTP2_HEADERS) pc__stream_request_ready(st);
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) pc__stream_req_end(st);
    return 0;
}

static int s_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    (void)flags;
    (void)ud;
    pc__stream_req_data(nghttp2_session_get_stream_user_data(s, id), data, len);
    return 0;
}

static int s_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    (void)ud;
    pc_stream *st = nghttp2_session_get_stream_user_data(s, id);
    if (!st) return 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    pc__stream_client_closed(st, code);
    return 0;
}

static int s_sent(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if (!(f->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
    pc_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (st) pc__stream_client_sent_end(st);
    return 0;
}

static int c_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                    const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)s;
    (void)f;
    (void)flags;
    reply *r = &((fixture *)ud)->reply;
    if (nlen == 7 && !memcmp(name, ":status", 7))
        snprintf(r->status, sizeof r->status, "%.*s", (int)vlen, value);
    if (nlen == 11 && !memcmp(name, "grpc-status", 11))
        snprintf(r->grpc_status, sizeof r->grpc_status, "%.*s", (int)vlen, value);
    return 0;
}

static int c_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    (void)s;
    (void)flags;
    (void)id;
    reply *r = &((fixture *)ud)->reply;
    assert_true(r->body_len + len <= sizeof r->body);
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    return 0;
}

static int c_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    (void)s;
    (void)id;
    reply *r = &((fixture *)ud)->reply;
    r->closed = true;
    r->close_code = code;
    return 0;
}

static nghttp2_session *
session(bool server, void *ud, nghttp2_on_header_callback on_header, nghttp2_on_frame_recv_callback on_frame,
        nghttp2_on_data_chunk_recv_callback on_data, nghttp2_on_stream_close_callback on_close,
        nghttp2_on_begin_headers_callback on_begin, nghttp2_on_frame_send_callback on_sent)
{
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    if (on_frame) nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    if (on_close) nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    if (on_begin) nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin);
    if (on_sent) nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_sent);
    nghttp2_session *s;
    if (server) {
        /* The proxy acknowledges bytes itself, as h2_server's session does. */
        nghttp2_option *opt;
        nghttp2_option_new(&opt);
        nghttp2_option_set_no_auto_window_update(opt, on_begin != NULL);
        assert_int_equal(nghttp2_session_server_new2(&s, cb, ud, opt), 0);
        nghttp2_option_del(opt);
    } else {
        assert_int_equal(nghttp2_session_client_new(&s, cb, ud), 0);
    }
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, NULL, 0);
    return s;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    const pc_plugin *plugins[] = {&watch};
    harness_open(&fx->h, conf, plugins, 1);
    fx->h.ctx[0] = &fx->watch;
    pc_worker *w = fx->h.w;
    pc_pool *p = fx->h.gen->pools[0] = pc__pool_new(w, fx->h.gen, 0);
    /* The client connection. */
    fx->c = calloc(1, sizeof *fx->c);
    fx->c->worker = w;
    fx->c->gen = fx->h.gen;
    fx->c->conn_info = harness_conn();
    fx->c->t.ready = true;
    uv_timer_init(&w->loop, &fx->c->t.timer);
    fx->c->sess = session(true, fx, s_header, s_frame, s_data, s_close, s_begin, s_sent);
    fx->cl = session(false, fx, c_header, NULL, c_data, c_close, NULL, NULL);
    /* The origin connection, as connect_server leaves it once TCP is up; upstream's on_ready makes its
     * session. */
    pc_upconn *u = fx->u = calloc(1, sizeof *u);
    u->t.worker = w;
    uv_timer_init(&w->loop, &u->t.timer);
    snprintf(u->t.peer, sizeof u->t.peer, "127.0.0.1:1");
    u->srv = &p->servers[0];
    u->fl.flush = up_flush;
    u->srv->conns = u;
    u->srv->nconns = 1;
    t_ready(&u->t);
    assert_non_null(u->sess);
    fx->o.s = session(true, &fx->o, o_header, o_frame, o_data, NULL, NULL, NULL);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    assert_null(fx->c->streams);
    nghttp2_session_del(fx->cl);
    nghttp2_session_del(fx->c->sess);
    nghttp2_session_del(fx->o.s);
    uv_close((uv_handle_t *)&fx->c->t.timer, NULL);
    uv_close((uv_handle_t *)&fx->u->t.timer, NULL);
    uv_run(&fx->h.w->loop, UV_RUN_NOWAIT);
    /* The origin connection goes as its transport's on_closed would take it. */
    nghttp2_session_del(fx->u->sess);
    fx->u->sess = NULL;
    fx->u->srv->conns = NULL;
    fx->u->srv->nconns = 0;
    free(fx->u);
    pc__pool_free(fx->h.gen->pools[0]);
    pc__conn_shared_release(fx->c->conn_info);
    free(fx->c);
    harness_close(&fx->h);
    free(fx);
    return 0;
}

static bool move(nghttp2_session *from, void (*to)(void *, const uint8_t *, size_t), void *ud)
{
    bool moved = false;
    const uint8_t *data;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(from, &data)) > 0) {
        to(ud, data, (size_t)n);
        moved = true;
    }
    return moved;
}

static void into(void *s, const uint8_t *data, size_t len)
{
    assert_true(nghttp2_session_mem_recv(s, data, len) == (ssize_t)len);
}

static void into_upconn(void *u, const uint8_t *data, size_t len)
{
    assert_int_equal(t_read(&((pc_upconn *)u)->t, data, len), 0);
}

/* Bytes every way until all four sessions are quiet; what the connections' flushes do first, too. */
static void pump(fixture *fx)
{
    for (int round = 0; round < 200; round++) {
        bool moved = move(fx->cl, into, fx->c->sess);
        if (fx->c->pending_resets) {
            fx->c->pending_resets = 0;
            for (pc_stream *st = fx->c->streams; st; st = st->cnext)
                pc__stream_client_reset_due(st);
        }
        moved |= move(fx->c->sess, into, fx->cl);
        if (fx->u->pending_resets) up_flush(&fx->u->fl); /* writes nothing: the session is not sent here */
        moved |= move(fx->u->sess, into, fx->o.s);
        moved |= move(fx->o.s, into_upconn, fx->u);
        if (!moved) return;
    }
    fail_msg("the sessions kept talking");
}

static int32_t send_call(fixture *fx, const char *extra_name, const char *extra_value,
                         nghttp2_data_provider *body)
{
    nghttp2_nv nva[] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
        {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0},
        {(uint8_t *)":path", (uint8_t *)"/pkg.Svc/Ping", 5, 13, 0},
        {(uint8_t *)":authority", (uint8_t *)"api.example", 10, 11, 0},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, 0},
        {(uint8_t *)"te", (uint8_t *)"trailers", 2, 8, 0},
        {(uint8_t *)"grpc-timeout", (uint8_t *)"5S", 12, 2, 0},
        {(uint8_t *)"x-forwarded-for", (uint8_t *)"10.0.0.1", 15, 8, 0},
        {(uint8_t *)extra_name, (uint8_t *)extra_value, strlen(extra_name), strlen(extra_value), 0},
    };
    int32_t id = nghttp2_submit_request(fx->cl, NULL, nva, 9, body, NULL);
    assert_true(id > 0);
    return id;
}

static uint8_t ping[16];
static size_t ping_len, ping_at;

static ssize_t ping_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)id;
    (void)src;
    (void)ud;
    size_t n = ping_len - ping_at < len ? ping_len - ping_at : len;
    memcpy(buf, ping + ping_at, n);
    ping_at += n;
    if (ping_at == ping_len) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static nghttp2_data_provider ping_body(void)
{
    ping_len = harness_grpc_frame(ping, "ping", 4);
    ping_at = 0;
    return (nghttp2_data_provider){.read_callback = ping_read};
}

static void test_call_through_the_pipe(void **state)
{
    fixture *fx = *state;
    nghttp2_data_provider body = ping_body();
    send_call(fx, "x-request-id", "r1", &body);
    /* Before the origin's SETTINGS arrive, the call waits in the pool's queue. */
    move(fx->cl, into, fx->c->sess);
    pc_stream *st = fx->c->streams;
    assert_non_null(st);
    assert_true(st->queued);
    assert_int_equal(pc__request_origin_stage(&st->rq), PC_ORIGIN_QUEUED);
    assert_int_equal(HOST->route(&st->rq, "o"), -1); /* too late to route */
    pump(fx);

    /* What the origin was sent. */
    const char *h = fx->o.headers;
    assert_non_null(strstr(h, ":method: POST\n"));
    assert_non_null(strstr(h, ":scheme: http\n")); /* the origin connection's own scheme */
    assert_non_null(strstr(h, ":authority: api.example\n"));
    assert_non_null(strstr(h, ":path: /pkg.Svc/Ping\n"));
    assert_non_null(strstr(h, "te: trailers\n"));
    assert_non_null(strstr(h, "x-request-id: r1\n"));
    assert_non_null(strstr(h, "x-forwarded-for: 10.0.0.1, 192.0.2.1\n"));
    assert_non_null(strstr(h, "x-forwarded-proto: http\n"));
    assert_null(strstr(h, "grpc-timeout: 5S")); /* replaced by what is left of it */
    const char *tmo = strstr(h, "grpc-timeout: ");
    assert_non_null(tmo);
    long left = strtol(tmo + 14, NULL, 10);
    assert_true(left > 0 && left <= 5000);
    assert_true(fx->o.request_ended);
    assert_int_equal(fx->o.body_len, ping_len);
    assert_memory_equal(fx->o.body, ping, ping_len);

    /* What the client got: the final headers (the 1xx dropped), the message, the trailers. */
    reply *r = &fx->reply;
    assert_true(r->closed);
    assert_int_equal(r->close_code, NGHTTP2_NO_ERROR);
    assert_string_equal(r->status, "200");
    assert_string_equal(r->grpc_status, "0");
    assert_int_equal(r->body_len, 9);
    assert_memory_equal(r->body + 5, "pong", 4);
    assert_int_equal(fx->watch.logs, 1); /* the stream ended and was freed */
    assert_int_equal(fx->watch.req_at_end, PC_REQ_ENDED);
    assert_int_equal(fx->watch.resp_at_end, PC_RESP_ENDED);
    assert_int_equal(fx->u->nstreams, 0);
}

static void test_response_message_held(void **state)
{
    fixture *fx = *state;
    nghttp2_data_provider body = ping_body();
    send_call(fx, "x-hold-response", "1", &body);
    pump(fx);
    pc_stream *st = fx->c->streams;
    assert_non_null(st);
    /* The origin finished while the plugin holds its message: the client has the headers only. */
    assert_int_equal(fx->watch.resp_msgs, 1);
    assert_int_equal(st->resp_state, PC_RESP_PAUSED);
    assert_true(st->resp_end_pending);
    assert_string_equal(fx->reply.status, "200");
    assert_int_equal(fx->reply.body_len, 0);
    assert_false(fx->reply.closed);
    HOST->resume_response(&st->rq, PC_CONTINUE);
    pump(fx);
    assert_true(fx->reply.closed);
    assert_int_equal(fx->reply.body_len, 9);
    assert_memory_equal(fx->reply.body + 5, "pong", 4);
    assert_string_equal(fx->reply.grpc_status, "0");
    assert_int_equal(fx->watch.logs, 1);
    assert_int_equal(fx->watch.resp_at_end, PC_RESP_ENDED);
}

static void test_origin_reset_after_data(void **state)
{
    fixture *fx = *state;
    fx->o.mode = ORIGIN_DATA_THEN_WAIT;
    nghttp2_data_provider body = ping_body();
    send_call(fx, "x-request-id", "r2", &body);
    /* Everything but the client's reading: the origin's message waits in the stream's queue. */
    for (int i = 0; i < 20; i++) {
        move(fx->cl, into, fx->c->sess);
        move(fx->u->sess, into, fx->o.s);
        move(fx->o.s, into_upconn, fx->u);
    }
    pc_stream *st = fx->c->streams;
    assert_int_equal(st->resp_state, PC_RESP_BODY);
    assert_int_equal(st->resp_q.size, 9);
    /* The origin resets: the client gets the same reset, after the data. */
    nghttp2_submit_rst_stream(fx->o.s, NGHTTP2_FLAG_NONE, fx->o.id, NGHTTP2_INTERNAL_ERROR);
    move(fx->o.s, into_upconn, fx->u);
    assert_true(st->client_rst_after);
    pump(fx);
    assert_true(fx->reply.closed);
    assert_int_equal(fx->reply.close_code, NGHTTP2_INTERNAL_ERROR);
    assert_int_equal(fx->reply.body_len, 9);
    assert_memory_equal(fx->reply.body + 5, "pong", 4);
    assert_int_equal(fx->watch.logs, 1);
    assert_int_equal(fx->watch.req_at_end, PC_REQ_ENDED);
    assert_int_equal(fx->watch.resp_at_end, PC_RESP_RESET);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test_setup_teardown(test_call_through_the_pipe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_message_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_origin_reset_after_data, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
