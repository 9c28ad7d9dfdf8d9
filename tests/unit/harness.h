/* A worker, a configuration and a plugin chain of static descriptors, for the unit tests that drive
 * requests, the chain and the proxy pipe without sockets: what `run` builds from a config file and
 * dlopen'ed plugins, built by hand. Header-only (static inline), included after cmocka.h. */
#ifndef PC_TEST_HARNESS_H
#define PC_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "config.h"
#include "metrics.h"
#include "plugin_loader.h"
#include "request.h"
#include "worker.h"

#define H_MAX_PLUGINS 8
#define H_MAX_ORIGINS 4

typedef struct harness {
    pc_config *cfg;
    pc_plugins ps;
    pc_loaded_plugin lp[H_MAX_PLUGINS];
    size_t idx[H_MAX_PLUGINS];
    void *ctx[H_MAX_PLUGINS];
    pc_runtime rt;
    SSL_CTX *origin_tls[H_MAX_ORIGINS];
    struct sockaddr_storage *origin_addrs[H_MAX_ORIGINS];
    pc_worker *w;
    pc_gen *gen;
} harness;

/* The config from YAML text (paths relative to the working directory); the plugins run in the given
 * order as the global chain, each with ctx[i] as its worker context. */
static inline void harness_open(harness *h, const char *yaml, const pc_plugin *const *plugins, size_t n)
{
    memset(h, 0, sizeof *h);
    char err[1024];
    if (pc__config_load_buffer("test.yaml", yaml, strlen(yaml), ".", &h->cfg, err, sizeof err) != 0)
        fail_msg("config: %s", err);
    assert_true(n <= H_MAX_PLUGINS && h->cfg->norigins <= H_MAX_ORIGINS);
    pc_chain chain = {.idx = h->idx, .n = n};
    for (size_t i = 0; i < n; i++) {
        h->lp[i] = (pc_loaded_plugin){
            .desc = plugins[i], .name = (char *)plugins[i]->name, .state_offset = h->ps.state_size};
        h->ps.state_size += (plugins[i]->request_state_size + 15) & ~(size_t)15;
        h->idx[i] = i;
        chain.request_messages |= plugins[i]->on_request_message != NULL;
        chain.response_messages |= plugins[i]->on_response_message != NULL;
    }
    h->ps.p = h->lp;
    h->ps.n = n;
    h->ps.global = chain;
    h->ps.nzones = h->cfg->nzones;
    h->ps.zones = calloc(h->cfg->nzones ? h->cfg->nzones : 1, sizeof *h->ps.zones);
    for (size_t i = 0; i < h->cfg->nzones; i++)
        h->ps.zones[i] = chain;
    h->rt.cfg = h->cfg;
    h->rt.plugins = &h->ps;
    h->rt.origin_tls = h->origin_tls;
    h->rt.origin_addrs = h->origin_addrs;
    for (size_t i = 0; i < h->cfg->norigins; i++)
        h->origin_addrs[i] = calloc(h->cfg->origins[i].nservers, sizeof **h->origin_addrs);
    h->w = calloc(1, sizeof *h->w);
    assert_non_null(h->w);
    h->w->id = 3;
    assert_int_equal(uv_loop_init(&h->w->loop), 0);
    uv_idle_init(&h->w->loop, &h->w->idle); /* connections schedule their flushes with it */
    pc__mempool_init(&h->w->mem);
    h->w->metrics = pc__metrics_new();
    h->gen = calloc(1, sizeof *h->gen);
    *h->gen = (pc_gen){.refs = 1, .worker = h->w, .rt = &h->rt, .cfg = h->cfg, .plugin_ctx = h->ctx};
    h->gen->pools = calloc(h->cfg->norigins ? h->cfg->norigins : 1, sizeof *h->gen->pools);
    h->w->gen = h->gen;
}

/* Everything the harness made; the gen's pools are the caller's (pc__pool_free) and must be gone. */
static inline void harness_close(harness *h)
{
    uv_close((uv_handle_t *)&h->w->idle, NULL);
    uv_run(&h->w->loop, UV_RUN_NOWAIT); /* with the handles the test closed */
    assert_int_equal(uv_loop_close(&h->w->loop), 0);
    free(h->gen->pools);
    free(h->gen);
    pc__metrics_free(h->w->metrics);
    pc__mempool_destroy(&h->w->mem);
    free(h->w);
    for (size_t i = 0; i < H_MAX_ORIGINS; i++)
        free(h->origin_addrs[i]);
    free(h->ps.zones);
    pc__config_free(h->cfg);
}

/* Connection facts of a TLS client (one reference). */
static inline pc_conn_shared *harness_conn(void)
{
    pc_conn_shared *cs = calloc(1, sizeof *cs);
    assert_non_null(cs);
    cs->refs = 1;
    snprintf(cs->ip, sizeof cs->ip, "192.0.2.1");
    snprintf(cs->port, sizeof cs->port, "40000");
    snprintf(cs->sni, sizeof cs->sni, "api.example");
    snprintf(cs->version, sizeof cs->version, "TLSv1.3");
    snprintf(cs->ja4, sizeof cs->ja4, "t13d1516h2_8daaf6152771_02713d6af862");
    cs->info = (pc_conn_info){.client_ip = cs->ip,
                              .client_port = 40000,
                              .tls = 1,
                              .alpn = "h2",
                              .sni = cs->sni,
                              .tls_version = cs->version};
    return cs;
}

/* A header list from name, value, ..., NULL. */
static inline void harness_headers(pc_headers *h, const char *const *kv)
{
    for (size_t i = 0; kv[i]; i += 2)
        assert_int_equal(pc__headers_add_str(h, kv[i], kv[i + 1]), 0);
}

/* A request without a pipe, as `rules test` builds one: from name, value, ..., NULL; its zone
 * selected. Free with harness_request_free. */
static inline pc_request *harness_request(harness *h, const char *const *kv)
{
    pc_headers hd = {0};
    harness_headers(&hd, kv);
    pc_request *r = calloc(1, sizeof *r);
    assert_non_null(r);
    pc_conn_shared *cs = harness_conn();
    pc__request_init(r, &hd, h ? h->gen : NULL, cs, NULL, NULL);
    pc__conn_shared_release(cs);
    char host[256];
    pc__request_select_zone(r, host, sizeof host);
    return r;
}

static inline void harness_request_free(pc_request *r)
{
    pc__request_free(r);
    free(r);
}

/* A gRPC message frame (5-byte prefix, payload) into out; its length. */
static inline size_t harness_grpc_frame(uint8_t *out, const void *payload, size_t len)
{
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
    memcpy(out + 5, payload, len);
    return len + 5;
}

#endif
