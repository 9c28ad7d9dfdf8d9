/* The proxy pipe (core/stream.c) without sockets: the state setters of both directions (every legal
 * transition taken, illegal ones refused with the state kept), and a stream driven through its
 * events with a chain of a static plugin: the pause/hold queue of gRPC messages behind paused headers
 * and a paused message, a plain body held whole (hold_body) through HOLDING, BODY, ENDING and ENDED,
 * and a paused stream that outlives its client until the plugin resumes. The client connection has
 * no session (nothing can be written to it) and the origin's pool takes no calls (max_pending: 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"
#include "h2_server.h"
#include "stream.h"
#include "upstream.h"

#define HOST (&pc__host_api)

/* ---- the state setters ---- */

static void test_request_transitions(void **state)
{
    (void)state;
#define H PC_REQ_HEADERS
#define B PC_REQ_BODY
#define HO PC_REQ_HOLDING
#define P PC_REQ_PAUSED
#define EI PC_REQ_ENDING
#define E PC_REQ_ENDED
#define R PC_REQ_RESET
#define N 7
    /* The legal ones, written out independently of stream.c's table. */
    static const int legal[][2] = {{H, B},  {H, HO}, {H, P}, {H, R},  {B, P}, {B, EI}, {B, R},  {HO, B},
                                   {HO, R}, {P, H},  {P, B}, {P, EI}, {P, R}, {EI, P}, {EI, E}, {EI, R}};
    for (int from = 0; from < N; from++)
        for (int to = 0; to < N; to++) {
            bool want = false;
            for (size_t i = 0; i < sizeof legal / sizeof legal[0]; i++)
                want |= legal[i][0] == from && legal[i][1] == to;
            if (pc__req_state_allowed(from, to) != want)
                fail_msg("request %s -> %s: %s expected", pc__req_state_name(from), pc__req_state_name(to),
                         want ? "allowed" : "refused");
        }
    assert_false(pc__req_state_allowed(N, H));
    assert_false(pc__req_state_allowed(H, N));

    pc_stream *st = calloc(1, sizeof *st);
    assert_int_equal(st->req_state, PC_REQ_HEADERS);
    static const pc_req_state path[] = {P, H, HO, B, P, B, EI, P, EI, E};
    for (size_t i = 0; i < sizeof path / sizeof path[0]; i++) {
        assert_int_equal(pc__stream_set_req_state(st, path[i]), 0);
        assert_int_equal(st->req_state, path[i]);
    }
    /* Illegal: refused, the state kept. */
    assert_int_equal(pc__stream_set_req_state(st, PC_REQ_BODY), -1);
    assert_int_equal(pc__stream_set_req_state(st, PC_REQ_RESET), -1); /* a whole request stays ENDED */
    assert_int_equal(st->req_state, PC_REQ_ENDED);
    st->req_state = PC_REQ_RESET;
    for (int to = 0; to < N; to++)
        assert_int_equal(pc__stream_set_req_state(st, to), -1);
    assert_int_equal(st->req_state, PC_REQ_RESET);
    free(st);
    assert_string_equal(pc__req_state_name(PC_REQ_HOLDING), "HOLDING");
    assert_string_equal(pc__req_state_name(99), "?");
}
#undef H
#undef B
#undef HO
#undef P
#undef EI
#undef E
#undef R
#undef N

static void test_response_transitions(void **state)
{
    (void)state;
#define H PC_RESP_HEADERS
#define B PC_RESP_BODY
#define P PC_RESP_PAUSED
#define E PC_RESP_ENDED
#define R PC_RESP_RESET
#define N 5
    static const int legal[][2] = {{H, B}, {H, E}, {H, R}, {B, P}, {B, E},
                                   {B, R}, {P, B}, {P, E}, {P, R}, {E, R}};
    for (int from = 0; from < N; from++)
        for (int to = 0; to < N; to++) {
            bool want = false;
            for (size_t i = 0; i < sizeof legal / sizeof legal[0]; i++)
                want |= legal[i][0] == from && legal[i][1] == to;
            if (pc__resp_state_allowed(from, to) != want)
                fail_msg("response %s -> %s: %s expected", pc__resp_state_name(from), pc__resp_state_name(to),
                         want ? "allowed" : "refused");
        }
    pc_stream *st = calloc(1, sizeof *st);
    assert_int_equal(pc__stream_set_resp_state(st, PC_RESP_PAUSED), -1); /* nothing to pause yet */
    assert_int_equal(st->resp_state, PC_RESP_HEADERS);
    assert_int_equal(pc__stream_set_resp_state(st, PC_RESP_BODY), 0);
    assert_int_equal(pc__stream_set_resp_state(st, PC_RESP_PAUSED), 0);
    assert_int_equal(pc__stream_set_resp_state(st, PC_RESP_ENDED), 0);
    assert_int_equal(pc__stream_set_resp_state(st, PC_RESP_BODY), -1);
    assert_int_equal(pc__stream_set_resp_state(st, PC_RESP_RESET), 0);
    assert_int_equal(pc__stream_set_resp_state(st, PC_RESP_ENDED), -1);
    assert_int_equal(st->resp_state, PC_RESP_RESET);
    free(st);
    assert_string_equal(pc__resp_state_name(PC_RESP_PAUSED), "PAUSED");
}
#undef H
#undef B
#undef P
#undef E
#undef R
#undef N

/* ---- a stream driven through its events ---- */

static const char *conf = "listen: [{address: \"127.0.0.1:8080\"}]\n"
                          "origins: [{name: o, servers: [\"127.0.0.1:1\"], max_pending: 0}]\n"
                          "zones: [{name: api, hosts: [api.example], origin: o}]\n";

/* gate: pauses the headers on x-pause, a message whose payload starts with 'P', the end on
 * x-pause-end; holds the body on x-hold; writes down the messages it saw, in order. */
typedef struct gate_seen {
    char order[256];
    int ends, logs;
} gate_seen;

static int gate_headers(pc_request *r, void *ctx, void *state)
{
    (void)ctx;
    (void)state;
    if (HOST->header_get(r, "x-hold")) HOST->publish_int(r, "gate.hold", HOST->hold_body(r, 1000));
    return HOST->header_get(r, "x-pause") ? PC_PAUSE : PC_CONTINUE;
}

static int gate_message(pc_request *r, void *ctx, void *state, const pc_message *m)
{
    (void)r;
    (void)state;
    gate_seen *seen = ctx;
    snprintf(seen->order + strlen(seen->order), sizeof seen->order - strlen(seen->order), "%s%.*s",
             seen->order[0] ? "," : "", (int)m->len, (const char *)m->data);
    return m->len && m->data[0] == 'P' ? PC_PAUSE : PC_CONTINUE;
}

static int gate_end(pc_request *r, void *ctx, void *state)
{
    (void)state;
    ((gate_seen *)ctx)->ends++;
    return HOST->header_get(r, "x-pause-end") ? PC_PAUSE : PC_CONTINUE;
}

static void gate_log(pc_request *r, void *ctx, void *state)
{
    (void)r;
    (void)state;
    ((gate_seen *)ctx)->logs++;
}

static const pc_plugin gate = {.abi_version = PC_PLUGIN_ABI_VERSION,
                               .struct_size = sizeof(pc_plugin),
                               .name = "gate",
                               .on_request_headers = gate_headers,
                               .on_request_message = gate_message,
                               .on_request_end = gate_end,
                               .on_log = gate_log};

typedef struct fixture {
    harness h;
    gate_seen seen;
    pc_h2conn *c;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    const pc_plugin *plugins[] = {&gate};
    harness_open(&fx->h, conf, plugins, 1);
    fx->h.ctx[0] = &fx->seen;
    fx->h.gen->pools[0] = pc__pool_new(fx->h.w, fx->h.gen, 0);
    /* A client connection without a session: the stream's answers go nowhere. */
    fx->c = calloc(1, sizeof *fx->c);
    fx->c->worker = fx->h.w;
    fx->c->gen = fx->h.gen;
    fx->c->conn_info = harness_conn();
    uv_timer_init(&fx->h.w->loop, &fx->c->t.timer);
    *state = fx;
    return 0;
}

static void closed(uv_handle_t *h)
{
    (void)h;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    assert_null(fx->c->streams);
    uv_close((uv_handle_t *)&fx->c->t.timer, closed);
    pc__conn_shared_release(fx->c->conn_info);
    free(fx->c);
    pc__pool_free(fx->h.gen->pools[0]);
    harness_close(&fx->h);
    free(fx);
    return 0;
}

static pc_stream *open_stream(fixture *fx, int32_t sid, const char *const *kv)
{
    memset(&fx->seen, 0, sizeof fx->seen);
    pc_stream *st = pc__stream_new(fx->c, sid);
    assert_non_null(st);
    st->cnext = fx->c->streams;
    if (fx->c->streams) fx->c->streams->cprev = st;
    fx->c->streams = st;
    fx->c->nstreams++;
    harness_headers(&st->req_headers, kv);
    return st;
}

static void feed(pc_stream *st, const char *const *payloads)
{
    uint8_t buf[512];
    size_t n = 0;
    for (size_t i = 0; payloads[i]; i++)
        n += harness_grpc_frame(buf + n, payloads[i], strlen(payloads[i]));
    pc__stream_req_data(st, buf, n);
}

/* What the origin would be sent, as text: the payloads of the queued frames, comma-separated. */
static void queued(pc_stream *st, char *out, size_t outlen)
{
    uint8_t buf[512];
    size_t n = pc__bq_read(&st->req_q, buf, sizeof buf), at = 0;
    out[0] = '\0';
    while (at + 5 <= n) {
        size_t len = buf[4 + at];
        snprintf(out + strlen(out), outlen - strlen(out), "%s%.*s", out[0] ? "," : "", (int)len,
                 buf + at + 5);
        at += 5 + len;
    }
}

static const char *grpc_kv[] = {":method",    "POST",       ":scheme",     "https",        ":path",
                                "/pkg.Svc/M", ":authority", "api.example", "content-type", "application/grpc",
                                "x-pause",    "1",          NULL};

static void test_grpc_pause_and_hold_queue(void **state)
{
    fixture *fx = *state;
    pc_stream *st = open_stream(fx, 1, grpc_kv);
    pc__stream_request_ready(st);
    assert_string_equal(st->rq.method, "POST"); /* the request, built from the header block */
    assert_int_equal(st->req_headers.n, 0);
    assert_int_equal(st->req_state, PC_REQ_PAUSED);
    assert_int_equal(st->req_pause, PC_PHASE_HEADERS);
    assert_int_equal(pc__request_hold_body(&st->rq, 100), -1); /* gRPC bodies are messages */

    /* Messages arriving behind the paused headers wait, in order, without running the chain. */
    const char *msgs[] = {"m0", "Pm1", "m2", NULL};
    feed(st, msgs);
    assert_int_equal(st->req_msgs, 3);
    assert_string_equal(fx->seen.order, "");
    assert_null(st->req_hold.cur);
    assert_non_null(st->req_hold.head);
    assert_int_equal(pc__held_size(&st->req_hold), 7 + 8 + 7);
    assert_int_equal(st->req_q.size, 0);

    /* Resumed: the headers pass; the origin refuses the call (its pool takes none), and the waiting
     * messages go through the chain until one pauses. */
    pc__request_resume(&st->rq, PC_CONTINUE);
    assert_true(st->origin_submitted);
    assert_true(st->up_closed);
    assert_string_equal(fx->seen.order, "m0,Pm1");
    assert_int_equal(st->req_state, PC_REQ_PAUSED);
    assert_int_equal(st->req_pause, PC_PHASE_MESSAGE);
    assert_non_null(st->req_hold.cur);
    assert_memory_equal(st->req_hold.cur->m.data, "Pm1", 3);
    assert_memory_equal(st->req_hold.head->m.data, "m2", 2);
    assert_int_equal(st->req_q.size, 7);

    /* The paused message passes, then the one behind it: queued in arrival order. */
    pc__request_resume(&st->rq, PC_CONTINUE);
    assert_int_equal(st->req_state, PC_REQ_BODY);
    assert_int_equal(st->req_pause, PC_PHASE_NONE);
    assert_null(st->req_hold.cur);
    assert_null(st->req_hold.head);
    assert_string_equal(fx->seen.order, "m0,Pm1,m2");
    char q[128];
    queued(st, q, sizeof q);
    assert_string_equal(q, "m0,Pm1,m2");
    /* A second resume is a no-op: nothing is paused. */
    pc__request_resume(&st->rq, PC_DENY);
    assert_int_equal(st->req_state, PC_REQ_BODY);

    pc__stream_client_closed(st, NGHTTP2_NO_ERROR); /* frees it */
    assert_int_equal(fx->seen.logs, 1);
}

static void test_held_message_denied(void **state)
{
    fixture *fx = *state;
    pc_stream *st = open_stream(fx, 3, grpc_kv);
    pc__stream_request_ready(st);
    const char *msgs[] = {"Pa", "b", NULL};
    feed(st, msgs);
    pc__request_resume(&st->rq, PC_CONTINUE); /* headers */
    assert_int_equal(st->req_pause, PC_PHASE_MESSAGE);
    /* The plugin denies the message it held: nothing of it, nor of what waited behind it, goes on. */
    pc__request_resume(&st->rq, PC_DENY);
    assert_int_equal(st->rq.deny_status, PC_GRPC_PERMISSION_DENIED);
    assert_string_equal(st->rq.deny_msg, "denied by plugin gate");
    assert_int_equal(st->req_q.size, 0);
    assert_string_equal(fx->seen.order, "Pa");
    pc__stream_client_closed(st, NGHTTP2_NO_ERROR);
    assert_int_equal(fx->seen.logs, 1);
}

static void test_body_held_whole(void **state)
{
    fixture *fx = *state;
    const char *kv[] = {
        ":method", "POST",   ":path", "/upload",     ":authority", "api.example", "content-length",
        "11",      "x-hold", "1",     "x-pause-end", "1",          NULL};
    pc_stream *st = open_stream(fx, 5, kv);
    pc__stream_request_ready(st);
    const pc_published *hold = pc__request_published(&st->rq, "gate.hold");
    assert_non_null(hold);
    assert_int_equal(hold->i, 0);
    assert_int_equal(st->req_state, PC_REQ_HOLDING);
    assert_false(st->origin_submitted); /* the origin sees nothing before the body passed */
    assert_int_equal(pc__request_hold_body(&st->rq, 500), 0);
    assert_int_equal(st->body_limit, 500);

    pc__stream_req_data(st, (const uint8_t *)"hello ", 6);
    pc__stream_req_data(st, (const uint8_t *)"world", 5);
    assert_int_equal(st->body_len, 11);
    assert_int_equal(st->req_q.size, 0);
    assert_string_equal(fx->seen.order, "");

    /* The client's end: the body goes through the chain as one message, then the end hooks (which pause). */
    pc__stream_req_end(st);
    assert_string_equal(fx->seen.order, "hello world");
    assert_int_equal(fx->seen.ends, 1);
    assert_int_equal(st->req_state, PC_REQ_PAUSED);
    assert_int_equal(st->req_pause, PC_PHASE_END);
    assert_int_equal(st->req_q.size, 11);
    assert_false(st->origin_submitted);
    assert_int_equal(pc__request_hold_body(&st->rq, 100), -1); /* too late */

    pc__request_resume(&st->rq, PC_CONTINUE);
    assert_int_equal(st->req_state, PC_REQ_ENDED);
    assert_true(st->origin_submitted); /* only now */
    pc__stream_client_closed(st, NGHTTP2_NO_ERROR);
    assert_int_equal(fx->seen.logs, 1);
}

static void test_body_held_behind_paused_headers(void **state)
{
    fixture *fx = *state;
    const char *kv[] = {":method", "POST", ":path",   "/upload", ":authority", "api.example",
                        "x-hold",  "1",    "x-pause", "1",       NULL};
    pc_stream *st = open_stream(fx, 9, kv);
    pc__stream_request_ready(st);
    assert_int_equal(st->req_state, PC_REQ_PAUSED);
    assert_int_equal(st->body_limit, 1000);
    /* While a plugin holds the headers the body goes nowhere: it is collected, and may still be held. */
    pc__stream_req_data(st, (const uint8_t *)"abc", 3);
    assert_int_equal(st->body_len, 3);
    assert_int_equal(pc__request_hold_body(&st->rq, 800), 0);
    pc__stream_req_end(st);
    assert_int_equal(st->req_state, PC_REQ_PAUSED); /* the end waits for the headers */
    /* Resumed: back to the headers, then HOLDING, and the whole body through the chain. */
    pc__request_resume(&st->rq, PC_CONTINUE);
    assert_string_equal(fx->seen.order, "abc");
    assert_int_equal(fx->seen.ends, 1);
    assert_int_equal(st->req_state, PC_REQ_ENDED);
    assert_true(st->origin_submitted);
    pc__stream_client_closed(st, NGHTTP2_NO_ERROR);
    assert_int_equal(fx->seen.logs, 1);
}

static void test_paused_stream_outlives_its_client(void **state)
{
    fixture *fx = *state;
    pc_stream *st = open_stream(fx, 7, grpc_kv);
    pc__stream_request_ready(st);
    const char *msgs[] = {"m0", NULL};
    feed(st, msgs);
    /* The client goes away while the plugin works: the request is cut, the stream kept for the resume. */
    pc__stream_client_closed(st, NGHTTP2_CANCEL);
    assert_null(fx->c->streams);
    assert_int_equal(fx->seen.logs, 0);
    assert_int_equal(st->req_state, PC_REQ_RESET);
    assert_int_equal(st->resp_state, PC_RESP_RESET);
    assert_int_equal(st->req_pause, PC_PHASE_HEADERS);
    assert_string_equal(st->edge_reason, "client_reset");
    /* The resume finds it abandoned: the held messages are dropped, the stream freed. */
    pc__request_resume(&st->rq, PC_CONTINUE);
    assert_int_equal(fx->seen.logs, 1);
    assert_string_equal(fx->seen.order, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_transitions),
        cmocka_unit_test(test_response_transitions),
        cmocka_unit_test_setup_teardown(test_grpc_pause_and_hold_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_message_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_held_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_held_behind_paused_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paused_stream_outlives_its_client, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
