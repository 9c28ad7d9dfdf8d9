/* The plugin chain (core/chain.c) on requests built by the request constructor, with plugins given as
 * static descriptors: hooks in order with their request state, typed values published by one plugin
 * and looked up by the next, deny and the hooks it stops, skip, route, pause and the resumed verdict,
 * hook errors and on_error, message hooks with decoded fields, on_log exactly once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#define HOST (&pc__host_api)

static const char *conf = "listen: [{address: \"127.0.0.1:8080\"}]\n"
                          "origins:\n"
                          "  - {name: o, servers: [\"127.0.0.1:1\"]}\n"
                          "  - {name: p, servers: [\"127.0.0.1:2\"]}\n"
                          "zones: [{name: api, hosts: [api.example], origin: o}]\n";

/* tagger: publishes one value of each type, counts its calls in its request state, changes the request. */
static int tagger_headers(pc_request *r, void *ctx, void *state)
{
    (void)ctx;
    ++*(int *)state;
    HOST->publish_int(r, "t.count", 3);
    HOST->publish_bool(r, "t.flag", 1);
    HOST->publish_number(r, "t.ratio", 0.25);
    HOST->publish(r, "t.path", HOST->request_info(r, "path"));
    if (HOST->header_get(r, "x-skip")) (HOST->skip)(r, "denier");
    const char *route = HOST->header_get(r, "x-route");
    if (route) HOST->publish_int(r, "t.routed", HOST->route(r, route));
    HOST->header_set(r, "x-seen-by", "tagger");
    HOST->set_response_header(r, "x-edge", "1");
    return PC_CONTINUE;
}

static const pc_plugin tagger = {.abi_version = PC_PLUGIN_ABI_VERSION,
                                 .struct_size = sizeof(pc_plugin),
                                 .name = "tagger",
                                 .request_state_size = sizeof(int),
                                 .on_request_headers = tagger_headers};

/* reader: what tagger published, typed; pauses when asked to. */
static int reader_headers(pc_request *r, void *ctx, void *state)
{
    (void)ctx;
    (void)state;
    pc_value v;
    if (HOST->lookup_value(r, "t.count", &v) == 0 && v.type == PC_VALUE_INT)
        HOST->publish_int(r, "r.double", 2 * v.i);
    if (HOST->lookup_value(r, "t.flag", &v) == 0 && v.type == PC_VALUE_BOOL)
        HOST->publish(r, "r.flag", v.text);
    return HOST->header_get(r, "x-pause") ? PC_PAUSE : PC_CONTINUE;
}

static const pc_plugin reader = {.abi_version = PC_PLUGIN_ABI_VERSION,
                                 .struct_size = sizeof(pc_plugin),
                                 .name = "reader",
                                 .on_request_headers = reader_headers};

/* denier: denies on a header, fails on another; judges messages by their field 1. */
static int denier_headers(pc_request *r, void *ctx, void *state)
{
    (void)ctx;
    (void)state;
    if (HOST->header_get(r, "x-deny")) return HOST->deny(r, PC_GRPC_UNAUTHENTICATED, "no token");
    if (HOST->header_get(r, "x-fail")) return PC_ERROR;
    return PC_CONTINUE;
}

static int denier_message(pc_request *r, void *ctx, void *state, const pc_message *m)
{
    (void)ctx;
    (void)state;
    const pc_field *f;
    char err[128];
    long n = HOST->message_fields(r, m, &f, err, sizeof err);
    if (n < 0) return PC_ERROR;
    HOST->publish_int(r, "d.fields", n);
    HOST->publish(r, "d.json", HOST->message_json(r, m));
    for (long i = 0; i < n; i++)
        if (!strcmp(f[i].path, "1") && f[i].u64 == 13)
            return HOST->deny(r, PC_GRPC_INVALID_ARGUMENT, "unlucky");
    return PC_CONTINUE;
}

static const pc_plugin denier = {.abi_version = PC_PLUGIN_ABI_VERSION,
                                 .struct_size = sizeof(pc_plugin),
                                 .name = "denier",
                                 .request_state_size = 24,
                                 .on_request_headers = denier_headers,
                                 .on_request_message = denier_message};

/* after: runs last; logs every request once (its worker context counts). */
static int after_headers(pc_request *r, void *ctx, void *state)
{
    (void)ctx;
    (void)state;
    HOST->publish(r, "after.ran", "yes");
    return PC_CONTINUE;
}

static void after_log(pc_request *r, void *ctx, void *state)
{
    (void)r;
    (void)state;
    ++*(int *)ctx;
}

static const pc_plugin after = {.abi_version = PC_PLUGIN_ABI_VERSION,
                                .struct_size = sizeof(pc_plugin),
                                .name = "after",
                                .on_request_headers = after_headers,
                                .on_log = after_log};

enum { TAGGER, READER, DENIER, AFTER };

typedef struct fixture {
    harness h;
    int logged;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    const pc_plugin *plugins[] = {&tagger, &reader, &denier, &after};
    harness_open(&fx->h, conf, plugins, 4);
    fx->h.ctx[AFTER] = &fx->logged;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    harness_close(&fx->h);
    free(fx);
    return 0;
}

/* A gRPC request to api.example with extra headers (name, value, ..., NULL). */
static pc_request *request(fixture *fx, const char *const *extra)
{
    const char *kv[32] = {":method",    "POST",       ":scheme",     "https",        ":path",
                          "/pkg.Svc/M", ":authority", "api.example", "content-type", "application/grpc"};
    size_t n = 10;
    for (size_t i = 0; extra && extra[i]; i++)
        kv[n++] = extra[i];
    kv[n] = NULL;
    return harness_request(&fx->h, kv);
}

static const char *published(pc_request *r, const char *key)
{
    const pc_published *p = pc__request_published(r, key);
    return p ? p->text : NULL;
}

static void test_publish_and_lookup(void **state)
{
    fixture *fx = *state;
    pc_request *r = request(fx, NULL);
    assert_int_equal(pc__chain_request_headers(r, 0), PC_CHAIN_GO);
    assert_true(r->chain_started);
    assert_string_equal(published(r, "t.count"), "3");
    assert_string_equal(published(r, "t.ratio"), "0.25");
    assert_string_equal(published(r, "t.path"), "/pkg.Svc/M");
    assert_string_equal(published(r, "r.double"), "6"); /* reader saw tagger's typed value */
    assert_string_equal(published(r, "r.flag"), "true");
    assert_string_equal(published(r, "after.ran"), "yes");
    assert_int_equal(pc__request_published(r, "r.double")->type, PC_VALUE_INT);
    /* tagger's request state is its own slice of the block, zeroed at the start. */
    int *count = (int *)((char *)r->plugin_state + fx->h.lp[TAGGER].state_offset);
    assert_int_equal(*count, 1);
    assert_string_equal(pc__headers_get(&r->headers, "x-seen-by"), "tagger");
    assert_string_equal(pc__headers_get(&r->extra_resp, "x-edge"), "1");
    assert_int_equal(pc__chain_request_ready(r), PC_CHAIN_GO);
    harness_request_free(r);
}

static void test_deny_stops_the_chain(void **state)
{
    fixture *fx = *state;
    const char *extra[] = {"x-deny", "1", NULL};
    pc_request *r = request(fx, extra);
    assert_int_equal(pc__chain_request_headers(r, 0), PC_CHAIN_DENY);
    assert_int_equal(r->deny_status, PC_GRPC_UNAUTHENTICATED);
    assert_string_equal(r->deny_msg, "no token");
    assert_string_equal(published(r, "r.double"), "6");
    assert_null(published(r, "after.ran")); /* the first deny ends the chain */
    harness_request_free(r);
}

static void test_skip(void **state)
{
    fixture *fx = *state;
    const char *extra[] = {"x-deny", "1", "x-skip", "1", NULL};
    pc_request *r = request(fx, extra);
    assert_int_equal(pc__chain_request_headers(r, 0), PC_CHAIN_GO);
    assert_non_null(r->skipped);
    assert_true(r->skipped[DENIER]);
    assert_false(r->skipped[READER]);
    assert_string_equal(published(r, "after.ran"), "yes");
    /* A skipped plugin's message hook is skipped too. */
    const uint8_t unlucky[] = {0x08, 13};
    pc_message m = {unlucky, sizeof unlucky, 0, 0, 0};
    assert_int_equal(pc__chain_request_message(r, &m, 0), PC_CHAIN_GO);
    assert_int_equal((HOST->skip)(r, "no-such-plugin"), -1);
    harness_request_free(r);
}

static void test_route(void **state)
{
    fixture *fx = *state;
    const char *extra[] = {"x-route", "p", NULL};
    pc_request *r = request(fx, extra);
    assert_int_equal(pc__chain_request_headers(r, 0), PC_CHAIN_GO);
    assert_string_equal(published(r, "t.routed"), "0");
    assert_int_equal(r->route_origin, 2);
    assert_string_equal(HOST->request_info(r, "origin"), "p");
    harness_request_free(r);
    const char *bad[] = {"x-route", "nowhere", NULL};
    r = request(fx, bad);
    assert_int_equal(pc__chain_request_headers(r, 0), PC_CHAIN_GO);
    assert_string_equal(published(r, "t.routed"), "-1");
    assert_int_equal(r->route_origin, 0);
    harness_request_free(r);
}

static void test_pause_and_resume(void **state)
{
    fixture *fx = *state;
    const char *extra[] = {"x-pause", "1", "x-deny", "1", NULL};
    pc_request *r = request(fx, extra);
    assert_int_equal(pc__chain_request_headers(r, 0), PC_CHAIN_PAUSE);
    assert_int_equal(r->pause_pos, READER);
    assert_int_equal(r->deny_status, 0); /* denier has not run */
    /* The pausing plugin lets it go on: the rest of the chain runs from the next plugin. */
    assert_int_equal(pc__chain_resumed(r, r->pause_pos, PC_CONTINUE), 0);
    assert_int_equal(pc__chain_request_headers(r, r->pause_pos + 1), PC_CHAIN_DENY);
    assert_string_equal(r->deny_msg, "no token");
    int *count = (int *)((char *)r->plugin_state + fx->h.lp[TAGGER].state_offset);
    assert_int_equal(*count, 1); /* tagger ran once, before the pause */
    harness_request_free(r);

    /* Resumed with a deny: the plugin's name in the default message. */
    r = request(fx, extra);
    assert_int_equal(pc__chain_request_headers(r, 0), PC_CHAIN_PAUSE);
    assert_int_equal(pc__chain_resumed(r, r->pause_pos, PC_DENY), 1);
    assert_int_equal(r->deny_status, PC_GRPC_PERMISSION_DENIED);
    assert_string_equal(r->deny_msg, "denied by plugin reader");
    harness_request_free(r);

    /* Resumed with PC_PAUSE again: a failed hook (fail closed). */
    r = request(fx, extra);
    assert_int_equal(pc__chain_request_headers(r, 0), PC_CHAIN_PAUSE);
    assert_int_equal(pc__chain_resumed(r, r->pause_pos, PC_PAUSE), 1);
    assert_int_equal(r->deny_status, PC_GRPC_UNAVAILABLE);
    assert_string_equal(r->deny_msg, "refused: plugin reader failed");
    harness_request_free(r);
}

static void test_hook_error_and_on_error(void **state)
{
    fixture *fx = *state;
    const char *extra[] = {"x-fail", "1", NULL};
    pc_request *r = request(fx, extra);
    assert_int_equal(pc__chain_request_headers(r, 0), PC_CHAIN_DENY);
    assert_int_equal(r->deny_status, PC_GRPC_UNAVAILABLE);
    assert_string_equal(r->deny_msg, "refused: plugin denier failed");
    harness_request_free(r);
    fx->h.lp[DENIER].on_error_continue = true;
    r = request(fx, extra);
    assert_int_equal(pc__chain_request_headers(r, 0), PC_CHAIN_GO);
    assert_string_equal(published(r, "after.ran"), "yes");
    fx->h.lp[DENIER].on_error_continue = false;
    harness_request_free(r);
}

static void test_messages(void **state)
{
    fixture *fx = *state;
    pc_request *r = request(fx, NULL);
    assert_int_equal(pc__chain_request_headers(r, 0), PC_CHAIN_GO);
    const uint8_t fine[] = {0x08, 0x96, 0x01, 0x12, 0x02, 'h', 'i'}; /* 1: 150, 2: "hi" */
    pc_message m = {fine, sizeof fine, 0, 0, 0};
    assert_int_equal(pc__chain_request_message(r, &m, 0), PC_CHAIN_GO);
    assert_string_equal(published(r, "d.fields"), "2");
    assert_non_null(strstr(published(r, "d.json"), "150"));
    assert_null(r->pb); /* the decoded message lives as long as its hooks */
    const uint8_t unlucky[] = {0x08, 13};
    pc_message m2 = {unlucky, sizeof unlucky, 1, 0, 0};
    assert_int_equal(pc__chain_request_message(r, &m2, 0), PC_CHAIN_DENY);
    assert_int_equal(r->deny_status, PC_GRPC_INVALID_ARGUMENT);
    /* Not a message: the hook fails and the plugin's on_error (deny) decides. */
    free(r->deny_msg);
    r->deny_msg = NULL;
    r->deny_status = 0;
    const uint8_t junk[] = {0x0f};
    pc_message m3 = {junk, sizeof junk, 2, 0, 0};
    assert_int_equal(pc__chain_request_message(r, &m3, 0), PC_CHAIN_DENY);
    assert_int_equal(r->deny_status, PC_GRPC_UNAVAILABLE);
    harness_request_free(r);
}

static void test_on_log_once(void **state)
{
    fixture *fx = *state;
    fx->logged = 0;
    pc_request *r = request(fx, NULL);
    assert_int_equal(pc__chain_request_headers(r, 0), PC_CHAIN_GO);
    pc__chain_log(r);
    pc__chain_log(r);
    assert_int_equal(fx->logged, 1);
    harness_request_free(r);
    /* Refused before the chain ran: its plugins log it all the same, with request state of their own. */
    r = request(fx, NULL);
    assert_false(r->chain_started);
    pc__chain_log(r);
    assert_int_equal(fx->logged, 2);
    assert_non_null(r->plugin_state);
    harness_request_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_and_lookup),
        cmocka_unit_test(test_deny_stops_the_chain),
        cmocka_unit_test(test_skip),
        cmocka_unit_test(test_route),
        cmocka_unit_test(test_pause_and_resume),
        cmocka_unit_test(test_hook_error_and_on_error),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_on_log_once),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
