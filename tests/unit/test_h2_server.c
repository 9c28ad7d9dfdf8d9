/* The client side (core/h2_server.c) driven in memory: an nghttp2 client session in the test talks to
 * the connection's server session through the connection's own read path (t_read) and its output, no
 * socket between them. Through h2_server, the pipe and the chain: the edge's answers (no zone, gRPC
 * switched off, header list too large, a plugin's deny as gRPC trailers or an HTTP status, the origin
 * overloaded), a plugin pausing on work done off the loop and resuming, a client gone while a plugin
 * holds its request, and a flood of useless frames ending the connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <unistd.h>

#include "harness.h"
#include "upstream.h"

#include "../../core/h2_server.c"

#define HOST (&pc__host_api)

static const char *conf = "listen: [{address: \"127.0.0.1:8080\"}]\n"
                          "limits: {max_header_list_bytes: 2048, glitch_limit: 8}\n"
                          "origins: [{name: o, servers: [\"127.0.0.1:1\"], max_pending: 0}]\n"
                          "zones:\n"
                          "  - {name: api, hosts: [api.example], origin: o}\n"
                          "  - {name: web, hosts: [web.example], origin: o, grpc: false}\n";

/* ---- a plugin ---- */

typedef struct guard_ctx {
    int works_done;
    int verdict; /* what the queued work resumes with */
    int logs;
    pc_req_state req_at_end; /* the pipe's states when the call was logged */
    pc_resp_state resp_at_end;
} guard_ctx;

static void work(void *arg)
{
    (void)arg;
}

static void work_done(void *arg, pc_request *r)
{
    guard_ctx *g = arg;
    g->works_done++;
    HOST->resume(r, g->verdict);
}

static int guard_headers(pc_request *r, void *ctx, void *state)
{
    (void)state;
    HOST->set_response_header(r, "x-edge", "guard");
    if (HOST->header_get(r, "x-deny")) return HOST->deny(r, PC_GRPC_UNAUTHENTICATED, "no token");
    if (HOST->header_get(r, "x-deny-http"))
        return HOST->deny_http(r, 429, PC_GRPC_RESOURCE_EXHAUSTED, "slow down");
    if (HOST->header_get(r, "x-async"))
        return HOST->queue_work(r, work, work_done, ctx) == 0 ? PC_PAUSE : PC_ERROR;
    return PC_CONTINUE;
}

static void guard_log(pc_request *r, void *ctx, void *state)
{
    (void)state;
    guard_ctx *g = ctx;
    g->logs++;
    const pc_stream *st = r->owner; /* the pipe that carries the request */
    g->req_at_end = st->req_state;
    g->resp_at_end = st->resp_state;
}

static const pc_plugin guard = {.abi_version = PC_PLUGIN_ABI_VERSION,
                                .struct_size = sizeof(pc_plugin),
                                .name = "guard",
                                .on_request_headers = guard_headers,
                                .on_log = guard_log};

/* ---- the client ---- */

typedef struct reply {
    int32_t id;
    char status[8], grpc_status[8], grpc_message[256], content_type[64], edge[32];
    char body[256];
    size_t body_len;
    bool closed;
    uint32_t close_code;
} reply;

typedef struct client {
    nghttp2_session *s;
    reply r[8];
    size_t n;
    bool goaway;
    uint32_t goaway_code;
} client;

static reply *reply_for(client *cl, int32_t id)
{
    for (size_t i = 0; i < cl->n; i++)
        if (cl->r[i].id == id) return &cl->r[i];
    assert_true(cl->n < 8);
    cl->r[cl->n].id = id;
    return &cl->r[cl->n++];
}

#define COPY(field, v, vl) snprintf(field, sizeof field, "%.*s", (int)(vl), (const char *)(v))

static int cl_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)s;
    (void)flags;
    reply *r = reply_for(ud, f->hd.stream_id);
    const char *n = (const char *)name;
    if (nlen == 7 && !memcmp(n, ":status", 7)) COPY(r->status, value, vlen);
    if (nlen == 11 && !memcmp(n, "grpc-status", 11)) COPY(r->grpc_status, value, vlen);
    if (nlen == 12 && !memcmp(n, "grpc-message", 12)) COPY(r->grpc_message, value, vlen);
    if (nlen == 12 && !memcmp(n, "content-type", 12)) COPY(r->content_type, value, vlen);
    if (nlen == 6 && !memcmp(n, "x-edge", 6)) COPY(r->edge, value, vlen);
    return 0;
}

static int cl_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    (void)s;
    (void)flags;
    reply *r = reply_for(ud, id);
    size_t room = sizeof r->body - 1 - r->body_len;
    memcpy(r->body + r->body_len, data, len < room ? len : room);
    r->body_len += len < room ? len : room;
    return 0;
}

static int cl_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    client *cl = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        cl->goaway = true;
        cl->goaway_code = f->goaway.error_code;
    }
    return 0;
}

static int cl_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    (void)s;
    reply *r = reply_for(ud, id);
    r->closed = true;
    r->close_code = code;
    return 0;
}

/* ---- the fixture: a harness, a client connection of h2_server, a client session ---- */

typedef struct fixture {
    harness h;
    guard_ctx guard;
    pc_h2conn *c;
    client cl;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    const pc_plugin *plugins[] = {&guard};
    harness_open(&fx->h, conf, plugins, 1);
    fx->h.ctx[0] = &fx->guard;
    fx->h.gen->pools[0] = pc__pool_new(fx->h.w, fx->h.gen, 0);
    pc_worker *w = fx->h.w;
    /* As pc__h2conn_accept and the transport would leave it for a cleartext client, then on_ready. */
    pc_h2conn *c = fx->c = calloc(1, sizeof *c);
    c->worker = w;
    c->gen = pc__gen_acquire(w);
    c->fl.flush = conn_flush;
    c->timer_mode = -1;
    c->t.worker = w;
    uv_timer_init(&w->loop, &c->t.timer);
    c->t.ready = true;
    snprintf(c->t.peer, sizeof c->t.peer, "192.0.2.7:41000");
    c->next = w->conns;
    w->conns = c;
    w->nconns++;
    t_ready(&c->t);
    assert_non_null(c->sess);
    assert_string_equal(c->conn_info->ip, "192.0.2.7");

    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, cl_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, cl_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, cl_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, cl_close);
    assert_int_equal(nghttp2_session_client_new(&fx->cl.s, cb, &fx->cl), 0);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(fx->cl.s, NGHTTP2_FLAG_NONE, NULL, 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    nghttp2_session_del(fx->cl.s);
    /* The transport's timer closes first, as the transport does before on_closed. */
    uv_close((uv_handle_t *)&fx->c->t.timer, NULL);
    uv_run(&fx->h.w->loop, UV_RUN_NOWAIT);
    t_closed(&fx->c->t);
    assert_null(fx->h.w->conns);
    pc__pool_free(fx->h.gen->pools[0]);
    harness_close(&fx->h);
    free(fx);
    return 0;
}

/* Bytes both ways until neither side has more to say. */
static void pump(fixture *fx)
{
    pc_h2conn *c = fx->c;
    for (int round = 0; round < 100; round++) {
        bool moved = false;
        const uint8_t *data;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(fx->cl.s, &data)) > 0) {
            t_read(&c->t, data, (size_t)n);
            moved = true;
        }
        if (c->pending_resets) { /* what conn_flush does before it writes */
            c->pending_resets = 0;
            for (pc_stream *st = c->streams; st; st = st->cnext)
                pc__stream_client_reset_due(st);
        }
        while ((n = nghttp2_session_mem_send(c->sess, &data)) > 0) {
            assert_true(nghttp2_session_mem_recv(fx->cl.s, data, (size_t)n) == n);
            moved = true;
        }
        if (!moved) return;
    }
    fail_msg("the sessions kept talking");
}

/* A request from name, value, ..., NULL; no body (END_STREAM on the headers). */
static int32_t send_request(fixture *fx, const char *const *kv)
{
    nghttp2_nv nva[16];
    size_t n = 0;
    for (size_t i = 0; kv[i]; i += 2)
        nva[n++] = (nghttp2_nv){(uint8_t *)kv[i], (uint8_t *)kv[i + 1], strlen(kv[i]), strlen(kv[i + 1]),
                                NGHTTP2_NV_FLAG_NONE};
    int32_t id = nghttp2_submit_request(fx->cl.s, NULL, nva, n, NULL, NULL);
    assert_true(id > 0);
    return id;
}

#define GRPC(authority, ...)                                                                                 \
    (const char *[])                                                                                         \
    {                                                                                                        \
        ":method", "POST", ":scheme", "http", ":path", "/pkg.Svc/M", ":authority", authority,                \
            "content-type", "application/grpc", "te", "trailers", __VA_ARGS__                                \
    }

static void test_no_zone(void **state)
{
    fixture *fx = *state;
    int32_t id = send_request(fx, GRPC("nowhere.example:443", NULL));
    pump(fx);
    reply *r = reply_for(&fx->cl, id);
    assert_true(r->closed);
    assert_string_equal(r->status, "200");
    assert_string_equal(r->grpc_status, "5"); /* NOT_FOUND, Trailers-Only */
    assert_non_null(strstr(r->grpc_message, "no zone serves host"));
    assert_non_null(strstr(r->grpc_message, "nowhere.example"));
    assert_int_equal(fx->c->nstreams, 0); /* the stream is gone */
    assert_int_equal(fx->guard.logs, 1);  /* refused before the chain: still logged */
    assert_int_equal(fx->guard.req_at_end, PC_REQ_RESET);
    assert_int_equal(fx->guard.resp_at_end, PC_RESP_ENDED); /* the edge's answer went out whole */
}

static void test_grpc_switched_off(void **state)
{
    fixture *fx = *state;
    int32_t id = send_request(fx, GRPC("web.example", NULL));
    pump(fx);
    reply *r = reply_for(&fx->cl, id);
    assert_string_equal(r->grpc_status, "12"); /* UNIMPLEMENTED */
    assert_non_null(strstr(r->grpc_message, "gRPC is disabled for zone web"));
}

static void test_headers_too_large(void **state)
{
    fixture *fx = *state;
    char big[1500];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    int32_t id = send_request(fx, GRPC("api.example", "x-big", big, "x-big2", big, NULL));
    pump(fx);
    reply *r = reply_for(&fx->cl, id);
    assert_string_equal(r->grpc_status, "8"); /* RESOURCE_EXHAUSTED */
    assert_string_equal(r->grpc_message, "request headers too large");
}

static void test_plugin_denies(void **state)
{
    fixture *fx = *state;
    int32_t id = send_request(fx, GRPC("api.example", "x-deny", "1", NULL));
    pump(fx);
    reply *r = reply_for(&fx->cl, id);
    assert_string_equal(r->status, "200");
    assert_string_equal(r->content_type, "application/grpc");
    assert_string_equal(r->grpc_status, "16"); /* UNAUTHENTICATED */
    assert_string_equal(r->grpc_message, "no token");
    assert_string_equal(r->edge, "guard"); /* a plugin's response header on the edge's own answer */

    /* Plain HTTP: the status the plugin chose, the message as a text body. */
    const char *kv[] = {":method",    "GET",         ":scheme",     "http", ":path", "/",
                        ":authority", "web.example", "x-deny-http", "1",    NULL};
    id = send_request(fx, kv);
    pump(fx);
    r = reply_for(&fx->cl, id);
    assert_string_equal(r->status, "429");
    assert_string_equal(r->content_type, "text/plain");
    assert_string_equal(r->body, "slow down\n");
    assert_string_equal(r->grpc_status, "");
}

static void test_origin_overloaded(void **state)
{
    fixture *fx = *state;
    int32_t id = send_request(fx, GRPC("api.example", NULL));
    pump(fx);
    reply *r = reply_for(&fx->cl, id);
    assert_string_equal(r->grpc_status, "14"); /* UNAVAILABLE */
    assert_non_null(strstr(r->grpc_message, "origin o is overloaded"));
}

/* Run the loop until the plugin's work is done (it runs on libuv's thread pool). */
static void wait_work(fixture *fx, int n)
{
    for (int i = 0; i < 2000 && fx->guard.works_done < n; i++) {
        uv_run(&fx->h.w->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    assert_int_equal(fx->guard.works_done, n);
}

static void test_pause_on_work_then_resume(void **state)
{
    fixture *fx = *state;
    fx->guard.verdict = PC_DENY;
    int32_t id = send_request(fx, GRPC("api.example", "x-async", "1", NULL));
    pump(fx);
    reply *r = reply_for(&fx->cl, id);
    assert_false(r->closed); /* held while the work runs */
    assert_non_null(fx->c->streams);
    assert_int_equal(fx->c->streams->req_state, PC_REQ_PAUSED);
    assert_int_equal(fx->c->streams->works, 1);
    wait_work(fx, 1);
    pump(fx);
    assert_true(r->closed);
    assert_string_equal(r->grpc_status, "7");
    assert_string_equal(r->grpc_message, "denied by plugin guard");
    assert_int_equal(fx->guard.logs, 1);
    assert_int_equal(fx->guard.req_at_end, PC_REQ_RESET);
    assert_int_equal(fx->guard.resp_at_end, PC_RESP_ENDED);
}

static void test_client_gone_while_paused(void **state)
{
    fixture *fx = *state;
    fx->guard.verdict = PC_CONTINUE;
    int32_t id = send_request(fx, GRPC("api.example", "x-async", "1", NULL));
    pump(fx);
    nghttp2_submit_rst_stream(fx->cl.s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    pump(fx);
    assert_null(fx->c->streams); /* gone from the connection, kept for the plugin's resume */
    assert_int_equal(fx->guard.logs, 0);
    wait_work(fx, 1);
    assert_int_equal(fx->guard.logs, 1); /* freed, and logged, after the resume */
    assert_int_equal(fx->guard.req_at_end, PC_REQ_RESET);
    assert_int_equal(fx->guard.resp_at_end, PC_RESP_RESET);
}

static void test_useless_frames_end_the_connection(void **state)
{
    fixture *fx = *state;
    nghttp2_priority_spec pri;
    nghttp2_priority_spec_init(&pri, 0, 16, 0);
    for (int32_t i = 0; i < 12; i++)
        nghttp2_submit_priority(fx->cl.s, NGHTTP2_FLAG_NONE, 101 + 2 * i, &pri);
    pump(fx);
    assert_true(fx->cl.goaway);
    assert_int_equal(fx->cl.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
    assert_true(fx->c->goaway_sent);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_zone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grpc_switched_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_headers_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_denies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_origin_overloaded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_on_work_then_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone_while_paused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_useless_frames_end_the_connection, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
