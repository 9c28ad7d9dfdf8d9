/* The request (core/request.c): built by its one constructor from a header list, its facts, zone
 * selection, header changes that keep the facts right, published values, the verdict, request_info,
 * and what it asks of its owner (a fake pipe here; none at all for a request on its own). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

static const char *conf = "listen: [{address: \"127.0.0.1:8080\"}]\n"
                          "origins:\n"
                          "  - {name: o, servers: [\"127.0.0.1:1\"]}\n"
                          "  - {name: p, servers: [\"127.0.0.1:2\"]}\n"
                          "zones:\n"
                          "  - {name: api, hosts: [api.example], origin: o}\n"
                          "  - {name: web, hosts: [web.example], origin: p}\n";

static int setup(void **state)
{
    harness *h = calloc(1, sizeof *h);
    harness_open(h, conf, NULL, 0);
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    harness *h = *state;
    harness_close(h);
    free(h);
    return 0;
}

static void test_constructor_facts(void **state)
{
    harness *h = *state;
    pc_headers hd = {0};
    const char *kv[] = {
        ":method",          "POST",       ":scheme",          "https",        ":path",
        "/pkg.v1.Svc/Call", ":authority", "api.example:8443", "content-type", "application/grpc+json",
        "grpc-timeout",     "5S",         "grpc-encoding",    "gzip",         "host",
        "other.example",    NULL};
    harness_headers(&hd, kv);
    pc_conn_shared *cs = harness_conn();
    pc_request r;
    pc__request_init(&r, &hd, h->gen, cs, NULL, NULL);
    assert_int_equal(hd.n, 0); /* taken over */
    assert_int_equal(r.headers.n, 8);
    assert_int_equal(cs->refs, 2); /* the request holds its own reference */
    assert_string_equal(r.method, "POST");
    assert_string_equal(r.scheme, "https");
    assert_string_equal(r.path, "/pkg.v1.Svc/Call");
    assert_string_equal(r.authority, "api.example:8443");
    assert_string_equal(r.host_header, "other.example");
    assert_string_equal(r.content_type, "application/grpc+json");
    assert_true(r.is_grpc);
    assert_string_equal(r.grpc_timeout, "5S");
    assert_string_equal(r.grpc_encoding, "gzip");
    /* The facts point into the list itself. */
    assert_ptr_equal(r.method, pc__headers_get(&r.headers, ":method"));
    assert_null(r.zone); /* admission selects it */
    char host[256];
    assert_non_null(pc__request_select_zone(&r, host, sizeof host));
    assert_string_equal(r.zone->name, "api"); /* :authority wins over Host */
    assert_string_equal(host, "api.example");
    pc__request_free(&r);
    assert_int_equal(cs->refs, 1);
    assert_null(r.method);
    pc__conn_shared_release(cs);
}

static void test_plain_http_and_host(void **state)
{
    harness *h = *state;
    const char *kv[] = {
        ":method",          "GET", ":path", "/index.html", "host", "web.example:80", "content-type",
        "application/json", NULL};
    pc_request *r = harness_request(h, kv);
    assert_false(r->is_grpc);
    assert_null(r->authority);
    assert_non_null(r->zone);
    assert_string_equal(r->zone->name, "web"); /* from Host, without :authority */
    assert_string_equal(pc__request_info(r, "authority"), "web.example:80");
    assert_string_equal(pc__request_info(r, "grpc"), "0");
    assert_null(pc__request_info(r, "grpc.service"));
    harness_request_free(r);

    const char *none[] = {":method", "GET", ":path", "/", ":authority", "nowhere.example", NULL};
    r = harness_request(h, none);
    assert_null(r->zone);
    harness_request_free(r);

    /* Without a configuration there is no zone to find. */
    r = harness_request(NULL, kv);
    assert_null(r->zone);
    assert_null(pc__request_info(r, "origin"));
    harness_request_free(r);
}

static void test_header_changes(void **state)
{
    harness *h = *state;
    const char *kv[] = {":method", "POST", ":path", "/", "host",         "web.example",
                        "x-tag",   "1",    "x-tag", "2", "content-type", "application/grpc",
                        NULL};
    pc_request *r = harness_request(h, kv);
    assert_int_equal(pc__request_header_set(r, "x-tag", "3"), 0);
    assert_string_equal(pc__headers_get(&r->headers, "x-tag"), "3");
    size_t tags = 0;
    for (size_t i = 0; i < r->headers.n; i++)
        tags += !strcmp((const char *)r->headers.nv[i].name, "x-tag");
    assert_int_equal(tags, 1); /* set replaces every field of that name */
    assert_int_equal(pc__request_header_set(r, "X-Tag", "4"), -1);
    assert_int_equal(pc__request_header_set(r, ":path", "/admin"), -1);
    assert_int_equal(pc__request_header_set(r, "x-tag", NULL), -1);
    assert_string_equal(r->path, "/");
    /* Removing a field a fact points at removes the fact. */
    assert_int_equal(pc__request_header_remove(r, "host"), 0);
    assert_null(r->host_header);
    assert_int_equal(pc__request_header_remove(r, "content-type"), 0);
    assert_null(r->content_type);
    assert_int_equal(pc__request_header_remove(r, ""), -1);
    harness_request_free(r);
}

static void test_published(void **state)
{
    harness *h = *state;
    const char *kv[] = {":method", "POST", ":path", "/", ":authority", "api.example", NULL};
    pc_request *r = harness_request(h, kv);
    assert_int_equal(pc__request_publish(r, "bot.score", PC_VALUE_INT, "42", 42, 42), 0);
    assert_int_equal(pc__request_publish(r, "waf.clean", PC_VALUE_BOOL, "true", 1, 1), 0);
    const pc_published *p = pc__request_published(r, "bot.score");
    assert_non_null(p);
    assert_int_equal(p->type, PC_VALUE_INT);
    assert_int_equal(p->i, 42);
    assert_string_equal(p->text, "42");
    /* Publishing again replaces: keys stay unique. */
    assert_int_equal(pc__request_publish(r, "bot.score", PC_VALUE_NUMBER, "7.5", 0, 7.5), 0);
    assert_int_equal(r->npub, 2);
    p = pc__request_published(r, "bot.score");
    assert_int_equal(p->type, PC_VALUE_NUMBER);
    assert_true(p->d == 7.5);
    assert_null(pc__request_published(r, "nope"));
    assert_null(pc__request_published(r, NULL));
    assert_int_equal(pc__request_publish(r, "", PC_VALUE_STRING, "x", 0, 0), -1);
    assert_int_equal(pc__request_publish(r, "k", PC_VALUE_STRING, NULL, 0, 0), -1);
    /* Bounded: at most 128 keys. */
    char key[16];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "k%d", i);
        pc__request_publish(r, key, PC_VALUE_STRING, "v", 0, 0);
    }
    assert_int_equal(r->npub, 128);
    harness_request_free(r);
}

static void test_deny(void **state)
{
    harness *h = *state;
    const char *kv[] = {":method", "POST", ":path", "/", ":authority", "api.example", NULL};
    pc_request *r = harness_request(h, kv);
    assert_int_equal(r->deny_status, 0);
    pc__request_deny(r, PC_GRPC_UNAUTHENTICATED, "who are you");
    assert_int_equal(r->deny_status, PC_GRPC_UNAUTHENTICATED);
    assert_string_equal(r->deny_msg, "who are you");
    /* Out of range: PERMISSION_DENIED; no message: "denied". */
    pc__request_deny(r, 0, NULL);
    assert_int_equal(r->deny_status, PC_GRPC_PERMISSION_DENIED);
    assert_string_equal(r->deny_msg, "denied");
    pc__request_deny(r, 99, "");
    assert_int_equal(r->deny_status, PC_GRPC_PERMISSION_DENIED);
    harness_request_free(r);
}

static void test_request_info(void **state)
{
    harness *h = *state;
    const char *kv[] = {":method",
                        "POST",
                        ":scheme",
                        "https",
                        ":path",
                        "/shop.v1.Orders/Refund?x=1",
                        ":authority",
                        "api.example",
                        "content-type",
                        "application/grpc",
                        NULL};
    pc_request *r = harness_request(h, kv);
    assert_string_equal(pc__request_info(r, "method"), "POST");
    assert_string_equal(pc__request_info(r, "scheme"), "https");
    assert_string_equal(pc__request_info(r, "zone"), "api");
    assert_string_equal(pc__request_info(r, "origin"), "o");
    r->route_origin = 2; /* host->route("p") */
    assert_string_equal(pc__request_info(r, "origin"), "p");
    assert_string_equal(pc__request_info(r, "grpc"), "1");
    const char *svc = pc__request_info(r, "grpc.service");
    assert_string_equal(svc, "shop.v1.Orders");
    assert_string_equal(pc__request_info(r, "grpc.method"), "Refund");
    assert_ptr_equal(pc__request_info(r, "grpc.service"), svc); /* made once, kept until the end */
    assert_string_equal(pc__request_info(r, "grpc.subtype"), "proto");
    assert_string_equal(pc__request_info(r, "client.ip"), "192.0.2.1");
    assert_string_equal(pc__request_info(r, "client.port"), "40000");
    assert_string_equal(pc__request_info(r, "tls.sni"), "api.example");
    assert_string_equal(pc__request_info(r, "tls.ja4"), "t13d1516h2_8daaf6152771_02713d6af862");
    assert_null(pc__request_info(r, "tls.ja3")); /* none taken */
    assert_null(pc__request_info(r, "status"));  /* no pipe, no response */
    assert_null(pc__request_info(r, "no.such.key"));
    unsigned long long seq = h->w->request_seq;
    char want[32];
    snprintf(want, sizeof want, "3-%llx", seq + 1); /* worker 3, its next request */
    const char *id = pc__request_info(r, "request_id");
    assert_string_equal(id, want);
    assert_ptr_equal(pc__request_id(r), id); /* made once */
    pc_request *r2 = harness_request(h, kv);
    snprintf(want, sizeof want, "3-%llx", seq + 2);
    assert_string_equal(pc__request_id(r2), want);
    harness_request_free(r2);
    harness_request_free(r);
}

/* ---- the owner ---- */

typedef struct fake_pipe {
    int resumed, resumed_response, verdict, retained;
    size_t hold;
    pc_origin_stage stage;
    bool started;
    pc_headers resp;
} fake_pipe;

static void f_resume(void *o, int v)
{
    ((fake_pipe *)o)->resumed++;
    ((fake_pipe *)o)->verdict = v;
}
static void f_resume_response(void *o, int v)
{
    ((fake_pipe *)o)->resumed_response++;
    ((fake_pipe *)o)->verdict = v;
}
static int f_hold_body(void *o, size_t max)
{
    ((fake_pipe *)o)->hold = max;
    return 0;
}
static pc_origin_stage f_stage(void *o)
{
    return ((fake_pipe *)o)->stage;
}
static bool f_started(void *o)
{
    return ((fake_pipe *)o)->started;
}
static const pc_headers *f_headers(void *o, bool trailers)
{
    return trailers ? NULL : &((fake_pipe *)o)->resp;
}
static const char *f_info(void *o, const char *key)
{
    (void)o;
    return !strcmp(key, "status") ? "200" : "0";
}
static void f_retain(void *o)
{
    ((fake_pipe *)o)->retained++;
}
static void f_release(void *o)
{
    ((fake_pipe *)o)->retained--;
}

static const pc_request_ops fake_ops = {
    f_resume, f_resume_response, f_hold_body, f_stage, f_started, f_headers, f_info, f_retain, f_release};

static void test_owner(void **state)
{
    harness *h = *state;
    const char *kv[] = {":method", "POST", ":path", "/", ":authority", "api.example", NULL};
    /* On its own: nothing to resume, no body to hold, not sent, no response. */
    pc_request *alone = harness_request(h, kv);
    pc__request_resume(alone, PC_CONTINUE);
    assert_int_equal(pc__request_hold_body(alone, 100), -1);
    assert_int_equal(pc__request_origin_stage(alone), PC_ORIGIN_NOT_YET);
    assert_false(pc__request_response_started(alone));
    assert_null(pc__request_response_headers(alone, false));
    harness_request_free(alone);

    fake_pipe pipe = {.stage = PC_ORIGIN_QUEUED, .started = true};
    pc__headers_add_str(&pipe.resp, ":status", "200");
    pc_headers hd = {0};
    harness_headers(&hd, kv);
    pc_request r;
    pc__request_init(&r, &hd, h->gen, NULL, &fake_ops, &pipe);
    pc__request_resume(&r, PC_DENY);
    assert_int_equal(pipe.resumed, 1);
    assert_int_equal(pipe.verdict, PC_DENY);
    pc__request_resume_response(&r, PC_CONTINUE);
    assert_int_equal(pipe.resumed_response, 1);
    assert_int_equal(pc__request_hold_body(&r, 1234), 0);
    assert_int_equal(pipe.hold, 1234);
    assert_int_equal(pc__request_origin_stage(&r), PC_ORIGIN_QUEUED);
    assert_true(pc__request_response_started(&r));
    assert_ptr_equal(pc__request_response_headers(&r, false), &pipe.resp);
    assert_string_equal(pc__request_info(&r, "status"), "200");
    assert_string_equal(pc__request_info(&r, "grpc_status"), "0");
    pc__request_retain(&r);
    assert_int_equal(pipe.retained, 1);
    pc__request_release(&r);
    assert_int_equal(pipe.retained, 0);
    assert_null(pc__request_info(&r, "client.ip")); /* no connection facts given */
    pc__request_free(&r);
    pc__headers_free(&pipe.resp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constructor_facts),
        cmocka_unit_test(test_plain_http_and_host),
        cmocka_unit_test(test_header_changes),
        cmocka_unit_test(test_published),
        cmocka_unit_test(test_deny),
        cmocka_unit_test(test_request_info),
        cmocka_unit_test(test_owner),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
