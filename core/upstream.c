/* Origin connection pools. A stream waits in the pool's bounded queue until a connection with
 * a free slot (the origin's MAX_CONCURRENT_STREAMS) exists; servers are tried round robin and
 * one that failed to connect sits out a cool-down, so a dead server costs one failed attempt. */
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "grpc_status.h"
#include "h2_output.h"
#include "h2_server.h"
#include "log.h"
#include "metrics.h"

#define UPSTREAM_IDLE_MS 60000

struct pc_server {
    pc_pool *pool;
    size_t index;
    const struct sockaddr_storage *addr;
    const pc_hostport *hp;
    char name[80]; /* "host:port", for the access log of each stream */
    uint64_t down_until;
    char last_error[160];
    pc_upconn *conns;
    size_t nconns;
};

struct pc_pool {
    pc_worker *w;
    pc_gen *gen;
    bool dying; /* its generation is gone: freed when the last connection closes */
    const pc_origin_conf *o;
    SSL_CTX *ctx;
    pc_server *servers;
    size_t nservers;
    size_t rr;
    pc_stream *qhead, *qtail;
    size_t qlen;
    char last_error[200];
};

static void pool_dispatch(pc_pool *p);
static bool pool_has_conns(const pc_pool *p);
static void fail_queue(pc_pool *p);

const char *pc__pool_origin_name(pc_pool *p)
{
    return p->o->name;
}

void pc__upconn_schedule(pc_upconn *u)
{
    pc__worker_schedule(u->t.worker, &u->fl);
}

static void up_flush(pc_flushable *f)
{
    pc_upconn *u = (pc_upconn *)((char *)f - offsetof(pc_upconn, fl));
    /* Streams only need a look when one of them has a reset due (rare): flushes stay O(1). */
    if (u->pending_resets) {
        u->pending_resets = 0;
        for (pc_stream *st = u->streams, *next; st; st = next) {
            next = st->unext;
            if (st->rst_pending) {
                pc__pool_cancel(st, false);
                pc__stream_release(st);
            }
        }
    }
    pc__h2_output(&u->t, u->sess);
}

static void unlink_stream(pc_upconn *u, pc_stream *st)
{
    if (st->uprev)
        st->uprev->unext = st->unext;
    else if (u->streams == st)
        u->streams = st->unext;
    if (st->unext) st->unext->uprev = st->uprev;
    st->uprev = st->unext = NULL;
    st->up = NULL;
    u->nstreams--;
    if (u->nstreams == 0 && u->ready) pc__transport_timer(&u->t, UPSTREAM_IDLE_MS);
}

/* ---- nghttp2 client callbacks ---- */

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)flags;
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    pc_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st) return 0;
    pc_headers *h = st->resp_in_trailers ? &st->trailers : &st->resp;
    /* The origin is trusted more than clients, but not to exhaust our memory. */
    if (h->bytes + nlen + vlen + 32 > 262144) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (pc__headers_add(h, name, nlen, value, vlen) < 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    pc_upconn *u = ud;
    if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK) && !u->ready) {
        /* Only now is the origin's MAX_CONCURRENT_STREAMS known: streams may go. */
        u->ready = true;
        u->srv->down_until = 0;
        pc__transport_timer(&u->t, 0);
        pool_dispatch(u->srv->pool);
        return 0;
    }
    if (f->hd.type == NGHTTP2_GOAWAY) {
        u->goaway = true;
        pool_dispatch(u->srv->pool);
        return 0;
    }
    if (f->hd.stream_id == 0) return 0;
    pc_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st) return 0;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (f->hd.type == NGHTTP2_HEADERS) {
        if (!st->resp_in_trailers) {
            if (st->resp.n > 0 && st->resp.nv[0].valuelen == 3 && st->resp.nv[0].value[0] == '1' && !end) {
                pc__headers_free(&st->resp); /* informational (1xx): not forwarded */
                return 0;
            }
            st->resp_in_trailers = true;
            pc__stream_resp_headers_done(st, end);
        } else if (end) {
            pc__stream_resp_end(st);
        }
        return 0;
    }
    if (f->hd.type == NGHTTP2_DATA && end) pc__stream_resp_end(st);
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data, size_t len,
                         void *ud)
{
    (void)flags;
    (void)ud;
    pc_stream *st = nghttp2_session_get_stream_user_data(s, sid);
    if (!st) {
        nghttp2_session_consume(s, sid, len);
        return 0;
    }
    pc__stream_resp_data(st, data, len);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t sid, uint32_t error_code, void *ud)
{
    pc_upconn *u = ud;
    pc_stream *st = nghttp2_session_get_stream_user_data(s, sid);
    if (!st) return 0;
    nghttp2_session_set_stream_user_data(s, sid, NULL);
    unlink_stream(u, st);
    pc__stream_up_closed(st, error_code, NULL);
    pool_dispatch(u->srv->pool);
    return 0;
}

static nghttp2_session_callbacks *client_callbacks(void)
{
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    return cb;
}

/* ---- transport callbacks ---- */

static void server_failed(pc_server *srv, const char *why)
{
    pc_pool *p = srv->pool;
    srv->down_until = uv_now(&p->w->loop) + p->o->cooldown_ms;
    snprintf(srv->last_error, sizeof srv->last_error, "%s", why);
    pc__metrics_upstream_failure(p->w->metrics, p->o->name);
    snprintf(p->last_error, sizeof p->last_error, "%s:%u: %s", srv->hp->host, srv->hp->port, why);
    pc_log_warn("origin %s: server %s:%u failed: %s (skipped for %u ms)", p->o->name, srv->hp->host,
                srv->hp->port, why, p->o->cooldown_ms);
}

static void t_connect(pc_transport *t, int status)
{
    pc_upconn *u = (pc_upconn *)t;
    if (status < 0) server_failed(u->srv, uv_strerror(status));
}

static void t_ready(pc_transport *t)
{
    pc_upconn *u = (pc_upconn *)t;
    if (t->ssl) {
        const unsigned char *alpn;
        unsigned alen;
        SSL_get0_alpn_selected(t->ssl, &alpn, &alen);
        if (alen != 2 || memcmp(alpn, "h2", 2) != 0) {
            server_failed(u->srv, "origin did not negotiate h2 over TLS (ALPN)");
            pc__transport_close(t, true);
            return;
        }
    }
    const pc_limits_conf *l = &u->srv->pool->gen->cfg->limits;
    nghttp2_session_callbacks *cb = client_callbacks();
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_peer_max_concurrent_streams(opt, 100);
    int rv = nghttp2_session_client_new3(&u->sess, cb, u, opt, &u->srv->pool->w->mem.nghttp2);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) {
        pc__transport_close(t, false);
        return;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, l->stream_window_bytes},
    };
    nghttp2_submit_settings(u->sess, NGHTTP2_FLAG_NONE, iv, 2);
    nghttp2_session_set_local_window_size(u->sess, NGHTTP2_FLAG_NONE, 0, (int32_t)l->connection_window_bytes);
    /* Ready for streams when the origin's SETTINGS arrive (on_frame_recv); the connect timer
     * keeps running until then. */
    pc__upconn_schedule(u);
}

static int t_read(pc_transport *t, const uint8_t *data, size_t len)
{
    pc_upconn *u = (pc_upconn *)t;
    if (!u->sess) return 0;
    ssize_t n = nghttp2_session_mem_recv(u->sess, data, len);
    if (n < 0) {
        pc_log_warn("origin %s: %s: %s", u->srv->pool->o->name, t->peer, nghttp2_strerror((int)n));
        return -1;
    }
    pc__upconn_schedule(u);
    return 0;
}

static void t_error(pc_transport *t, const char *why)
{
    pc_upconn *u = (pc_upconn *)t;
    if (!u->ready)
        server_failed(u->srv, why);
    else if (u->nstreams > 0)
        pc_log_warn("origin %s: connection to %s lost with %zu open streams: %s", u->srv->pool->o->name,
                    t->peer, u->nstreams, why);
}

static void t_drain(pc_transport *t)
{
    pc__upconn_schedule((pc_upconn *)t);
}

static void t_timeout(pc_transport *t)
{
    pc_upconn *u = (pc_upconn *)t;
    if (!u->ready) {
        char why[64];
        snprintf(why, sizeof why, "connect timeout after %u ms", u->srv->pool->o->connect_timeout_ms);
        server_failed(u->srv, why);
        t->failed = true;
        pc__transport_close(t, false);
    } else if (u->nstreams == 0) {
        u->goaway = true;
        if (u->sess) {
            nghttp2_session_terminate_session(u->sess, NGHTTP2_NO_ERROR);
            pc__h2_output(t, u->sess);
        }
        pc__transport_close(t, true);
    }
}

static void t_closed(pc_transport *t)
{
    pc_upconn *u = (pc_upconn *)t;
    pc_server *srv = u->srv;
    pc_pool *p = srv->pool;
    char why[200];
    snprintf(why, sizeof why, "connection to origin %s lost", p->o->name);
    while (u->streams) {
        pc_stream *st = u->streams;
        unlink_stream(u, st);
        if (u->sess) nghttp2_session_set_stream_user_data(u->sess, st->up_sid, NULL);
        pc__stream_up_closed(st, NGHTTP2_INTERNAL_ERROR, why);
    }
    if (u->sess) nghttp2_session_del(u->sess);
    if (u->prev)
        u->prev->next = u->next;
    else
        srv->conns = u->next;
    if (u->next) u->next->prev = u->prev;
    srv->nconns--;
    free(u);
    if (p->dying) {
        if (!pool_has_conns(p)) {
            free(p->servers);
            free(p);
        }
        return;
    }
    pool_dispatch(p);
}

static const pc_transport_cbs up_cbs = {
    .on_connect = t_connect,
    .on_ready = t_ready,
    .on_read = t_read,
    .on_error = t_error,
    .on_drain = t_drain,
    .on_timeout = t_timeout,
    .on_closed = t_closed,
};

static pc_upconn *connect_server(pc_server *srv)
{
    pc_pool *p = srv->pool;
    pc_upconn *u = calloc(1, sizeof *u);
    if (!u) return NULL;
    pc__transport_init(p->w, &u->t, &up_cbs);
    u->srv = srv;
    u->fl.flush = up_flush;
    u->next = srv->conns;
    if (srv->conns) srv->conns->prev = u;
    srv->conns = u;
    srv->nconns++;
    const char *sni = p->o->tls_sni ? p->o->tls_sni : srv->hp->host;
    int rv = pc__transport_connect(&u->t, (const struct sockaddr *)srv->addr, p->ctx, sni, p->o->tls_verify);
    if (rv != 0) {
        server_failed(srv, rv < 0 ? uv_strerror(rv) : "cannot start connection");
        u->t.failed = true;
        pc__transport_close(&u->t, false);
        return NULL;
    }
    pc__transport_timer(&u->t, p->o->connect_timeout_ms);
    return u;
}

/* ---- request submission ---- */

/* Fields not passed on as they came: 0 when the field goes on; the ones rewritten below are
 * told apart (te, x-forwarded-for), so the list is walked once. */
enum { FIELD_KEEP = 0, FIELD_DROP, FIELD_TE, FIELD_XFF };

static int classify_request_header(const nghttp2_nv *nv)
{
#define NAME(s, k)                                                                                           \
    {                                                                                                        \
        (s), sizeof(s) - 1, (k)                                                                              \
    } /* a literal and its length, compared without strlen */
    static const struct {
        const char *name;
        size_t len;
        int kind;
    } drop[] = {NAME("connection", FIELD_DROP),
                NAME("keep-alive", FIELD_DROP),
                NAME("proxy-connection", FIELD_DROP),
                NAME("transfer-encoding", FIELD_DROP),
                NAME("upgrade", FIELD_DROP),
                NAME("host", FIELD_DROP),
                NAME("grpc-timeout", FIELD_DROP),
                NAME("x-forwarded-proto", FIELD_DROP),
                NAME("te", FIELD_TE),
                NAME("x-forwarded-for", FIELD_XFF),
                NAME("http2-settings", FIELD_DROP)};
#undef NAME
    if (nv->namelen > 0 && nv->name[0] == ':') return FIELD_DROP;
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
        if (nv->namelen == drop[i].len && memcmp(nv->name, drop[i].name, nv->namelen) == 0)
            return drop[i].kind;
    return FIELD_KEEP;
}

#define NV(n, v, vl) ((nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NONE})

static int submit(pc_upconn *u, pc_stream *st)
{
    pc_pool *p = u->srv->pool;
    const pc_request *r = &st->rq;
    const pc_headers *h = &r->headers;
    nghttp2_nv stack[48]; /* nghttp2 copies the list: no allocation for usual header counts */
    nghttp2_nv *nva = h->n + 8 <= 48 ? stack : malloc((h->n + 8) * sizeof *nva);
    if (!nva) return -1;
    size_t n = 0;
    const char *authority = r->authority ? r->authority : r->host_header;
    nva[n++] = NV(":method", r->method, strlen(r->method));
    nva[n++] = p->ctx ? NV(":scheme", "https", 5) : NV(":scheme", "http", 4);
    if (authority) nva[n++] = NV(":authority", authority, strlen(authority));
    nva[n++] = NV(":path", r->path, strlen(r->path));
    /* te and x-forwarded-for: the first of each, as a lookup by name would find it */
    const nghttp2_nv *te = NULL, *prev = NULL;
    for (size_t i = 0; i < h->n; i++) {
        int kind = classify_request_header(&h->nv[i]);
        if (kind == FIELD_KEEP)
            nva[n++] = h->nv[i];
        else if (kind == FIELD_TE && !te)
            te = &h->nv[i];
        else if (kind == FIELD_XFF && !prev)
            prev = &h->nv[i];
    }
    if (te && te->valuelen == 8 && strncasecmp((const char *)te->value, "trailers", 8) == 0)
        nva[n++] = NV("te", "trailers", 8);
    /* x-forwarded-for: the client's chain, then the address we saw. */
    char xff[1024];
    const char *ip = r->conn ? r->conn->ip : "";
    if (prev) {
        int xl = snprintf(xff, sizeof xff, "%.*s, %s", (int)prev->valuelen, prev->value, ip);
        if (xl >= (int)sizeof xff) xl = (int)sizeof xff - 1;
        nva[n++] = NV("x-forwarded-for", xff, (size_t)xl);
    } else {
        nva[n++] = NV("x-forwarded-for", ip, strlen(ip));
    }
    nva[n++] = st->client && st->client->tls ? NV("x-forwarded-proto", "https", 5)
                                             : NV("x-forwarded-proto", "http", 4);
    char tmo[16];
    if (st->deadline_ms) {
        int64_t left = st->deadline_ms - (int64_t)uv_now(&p->w->loop);
        pc__grpc_timeout_format(left > 0 ? left : 0, tmo);
        nva[n++] = NV("grpc-timeout", tmo, strlen(tmo));
    }
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = pc__stream_read_request};
    bool body = st->req_state != PC_REQ_ENDED || st->req_q.size > 0;
    int32_t id = nghttp2_submit_request(u->sess, NULL, nva, n, body ? &prd : NULL, st);
    if (nva != stack) free(nva);
    if (id < 0) return -1;
    st->up = u;
    st->up_sid = id;
    _Static_assert(sizeof st->upstream_addr == sizeof u->srv->name, "server name and stream copy differ");
    memcpy(st->upstream_addr, u->srv->name, sizeof st->upstream_addr);
    st->up_started = true;
    st->unext = u->streams;
    if (u->streams) u->streams->uprev = st;
    u->streams = st;
    u->nstreams++;
    pc__transport_timer(&u->t, 0);
    pc__upconn_schedule(u);
    pc__stream_up_attached(st);
    return 0;
}

static bool has_room(pc_upconn *u)
{
    if (!u->ready || u->goaway || !u->sess || u->t.closing) return false;
    uint32_t max = nghttp2_session_get_remote_settings(u->sess, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return u->nstreams < max;
}

static pc_stream *queue_pop(pc_pool *p)
{
    pc_stream *st = p->qhead;
    p->qhead = st->qnext;
    if (!p->qhead) p->qtail = NULL;
    p->qlen--;
    st->queued = false;
    st->qnext = NULL;
    return st;
}

static void fail_queue(pc_pool *p)
{
    char msg[300];
    snprintf(msg, sizeof msg, "origin %s is unreachable (%s)", p->o->name,
             p->last_error[0] ? p->last_error : "no server available");
    while (p->qhead)
        pc__stream_up_failed(queue_pop(p), PC_GRPC_UNAVAILABLE, 502, msg);
}

/* Round robin by server: each stream goes to the next server that is not cooling down, on one of
 * its connections with room, or on a new one. A server whose connections are full passes its turn. */
static void pool_dispatch(pc_pool *p)
{
    uint64_t now = uv_now(&p->w->loop);
    while (p->qhead) {
        pc_upconn *found = NULL;
        bool wait = false, any_up = false;
        for (size_t k = 0; k < p->nservers && !found && !wait; k++) {
            pc_server *srv = &p->servers[(p->rr + k) % p->nservers];
            if (srv->down_until > now) continue;
            any_up = true;
            bool connecting = false;
            for (pc_upconn *u = srv->conns; u && !found; u = u->next) {
                if (has_room(u))
                    found = u;
                else if (!u->ready && !u->t.closing)
                    connecting = true;
            }
            if (found) break;
            if (connecting)
                wait = true; /* a connection to this server is being set up: the stream waits for it */
            else if (srv->nconns < p->o->max_connections)
                wait = connect_server(srv) != NULL; /* on failure the server is cooling down: next one */
        }
        if (found) {
            pc_stream *st = queue_pop(p);
            p->rr = (found->srv->index + 1) % p->nservers;
            if (submit(found, st) < 0)
                pc__stream_up_failed(st, PC_GRPC_INTERNAL, 502, "cannot open a stream to the origin");
            continue;
        }
        if (wait) return;
        /* Servers are up but at their connection and stream limits: wait for a slot (a stream
         * ending dispatches again). None up: nothing will come, answer now. */
        if (any_up) return;
        fail_queue(p);
        return;
    }
}

void pc__pool_submit(pc_pool *p, pc_stream *st)
{
    if (p->qlen >= p->o->max_pending) {
        char msg[200];
        snprintf(msg, sizeof msg, "origin %s is overloaded: %u calls already waiting", p->o->name,
                 p->o->max_pending);
        pc__stream_up_failed(st, PC_GRPC_UNAVAILABLE, 503, msg);
        return;
    }
    st->pool = p;
    st->queued = true;
    st->qnext = NULL;
    if (p->qtail)
        p->qtail->qnext = st;
    else
        p->qhead = st;
    p->qtail = st;
    p->qlen++;
    pool_dispatch(p);
}

void pc__pool_cancel(pc_stream *st, bool flush_first)
{
    pc_pool *p = st->pool;
    if (flush_first && !st->up_reset_sent && st->req_q.size > 0) {
        /* Still waiting for a connection, or sending: either way the allowed bytes go first. */
        st->rst_after_flush = true;
        if (st->up && st->up->sess) {
            nghttp2_session_resume_data(st->up->sess, st->up_sid);
            pc__upconn_schedule(st->up);
            return;
        }
        if (st->queued) return;
    }
    if (st->queued && p) {
        pc_stream **pp = &p->qhead;
        pc_stream *prev = NULL;
        while (*pp && *pp != st) {
            prev = *pp;
            pp = &(*pp)->qnext;
        }
        if (*pp) {
            *pp = st->qnext;
            if (p->qtail == st) p->qtail = prev;
            p->qlen--;
        }
        st->queued = false;
        st->qnext = NULL;
        return;
    }
    pc_upconn *u = st->up;
    if (u && !st->up_reset_sent) {
        st->up_reset_sent = true;
        /* Detach: late frames from the origin for this stream are consumed and dropped. */
        if (u->sess) {
            nghttp2_session_set_stream_user_data(u->sess, st->up_sid, NULL);
            nghttp2_submit_rst_stream(u->sess, NGHTTP2_FLAG_NONE, st->up_sid, NGHTTP2_CANCEL);
            st->resp_deferred = 0; /* its connection window was given back as the bytes came */
        }
        unlink_stream(u, st);
        st->up_closed = true;
        pc__upconn_schedule(u);
        pool_dispatch(u->srv->pool);
    }
}

pc_pool *pc__pool_new(pc_worker *w, pc_gen *g, size_t origin_index)
{
    pc_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->w = w;
    p->gen = g;
    p->o = &g->cfg->origins[origin_index];
    p->ctx = g->rt->origin_tls[origin_index];
    p->nservers = p->o->nservers;
    p->servers = calloc(p->nservers, sizeof *p->servers);
    if (!p->servers) {
        free(p);
        return NULL;
    }
    for (size_t i = 0; i < p->nservers; i++) {
        p->servers[i].pool = p;
        p->servers[i].index = i;
        p->servers[i].hp = &p->o->servers[i];
        snprintf(p->servers[i].name, sizeof p->servers[i].name, "%s:%u", p->servers[i].hp->host,
                 p->servers[i].hp->port);
        p->servers[i].addr = &g->rt->origin_addrs[origin_index][i];
    }
    return p;
}

void pc__pool_close(pc_pool *p, bool idle_only)
{
    /* Streams still waiting would open a new connection once these are gone. */
    if (!idle_only)
        while (p->qhead)
            fail_queue(p);
    for (size_t i = 0; i < p->nservers; i++)
        for (pc_upconn *u = p->servers[i].conns; u; u = u->next)
            if (!idle_only || u->nstreams == 0) pc__transport_close(&u->t, false);
}

static bool pool_has_conns(const pc_pool *p)
{
    for (size_t i = 0; i < p->nservers; i++)
        if (p->servers[i].nconns) return true;
    return false;
}

void pc__pool_free(pc_pool *p)
{
    if (!p) return;
    /* No stream uses the pool any more: close its connections; the last one to close frees it. */
    p->dying = true;
    pc__pool_close(p, false);
    if (!pool_has_conns(p)) {
        free(p->servers);
        free(p);
    }
}
