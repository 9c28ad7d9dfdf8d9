/* Client-facing HTTP/2. nghttp2 callbacks turn frames into stream events for the proxy;
 * window updates are manual so the proxy acknowledges bytes only once the origin took them. */
#include "h2_server.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h1_server.h"
#include "h2_output.h"
#include "client_limit.h"
#include "fingerprint.h"
#include "log.h"
#include "metrics.h"

enum { TIMER_NONE, TIMER_HANDSHAKE, TIMER_HEADERS, TIMER_IDLE };

static void update_timer(pc_h2conn *c)
{
    const pc_limits_conf *l = &c->gen->cfg->limits;
    int mode;
    uint64_t ms;
    if (!c->t.ready) {
        mode = TIMER_HANDSHAKE;
        ms = l->handshake_timeout_ms;
    } else if (c->headers_pending > 0) {
        mode = TIMER_HEADERS;
        ms = l->header_timeout_ms;
    } else if (c->nstreams == 0) {
        mode = TIMER_IDLE;
        ms = c->worker->draining ? 1 : l->idle_timeout_ms;
    } else {
        mode = TIMER_NONE;
        ms = 0;
    }
    if (mode == c->timer_mode) return;
    c->timer_mode = mode;
    pc__transport_timer(&c->t, ms);
}

/* The phase timer follows the streams' comings and goings once per loop turn, not per stream: a
 * header block that arrives whole never arms the header timer (each arming and stopping is a
 * timer-heap operation). */
static void timer_due(pc_h2conn *c)
{
    if (c->t.closing) {
        update_timer(c);
        return;
    }
    c->timer_dirty = true;
    if (!c->flushing) pc__h2conn_schedule(c);
}

static void conn_flush(pc_flushable *f)
{
    pc_h2conn *c = (pc_h2conn *)((char *)f - offsetof(pc_h2conn, fl));
    c->flushing = true;
    if (c->pending_resets) {
        c->pending_resets = 0;
        for (pc_stream *st = c->streams; st; st = st->cnext)
            pc__stream_client_reset_due(st);
    }
    if (c->h1)
        pc__h1_flush(c);
    else
        pc__h2_output(&c->t, c->sess);
    c->flushing = false;
    if (c->timer_dirty) {
        c->timer_dirty = false;
        update_timer(c);
    }
}

void pc__h2conn_headers_pending(pc_h2conn *c, int delta)
{
    c->headers_pending += delta;
    update_timer(c);
}

void pc__h2conn_schedule(pc_h2conn *c)
{
    pc__worker_schedule(c->worker, &c->fl);
}

void pc__h2conn_unlink_stream(pc_h2conn *c, pc_stream *st)
{
    if (st->cprev)
        st->cprev->cnext = st->cnext;
    else if (c->streams == st)
        c->streams = st->cnext;
    if (st->cnext) st->cnext->cprev = st->cprev;
    st->cprev = st->cnext = NULL;
    st->client = NULL;
    c->nstreams--;
    timer_due(c);
}

/* ---- nghttp2 callbacks ---- */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    pc_h2conn *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    pc_stream *st = pc__stream_new(c, f->hd.stream_id);
    if (!st) return NGHTTP2_ERR_CALLBACK_FAILURE;
    st->cnext = c->streams;
    if (c->streams) c->streams->cprev = st;
    c->streams = st;
    c->nstreams++;
    st->in_headers = true;
    st->counted = true;
    pc__metrics_stream(c->worker->metrics, 1);
    c->headers_pending++;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
    timer_due(c);
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)flags;
    pc_h2conn *c = ud;
    pc_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st || f->hd.type != NGHTTP2_HEADERS) return 0;
    if (f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0; /* request trailers: gRPC has none; ignored */
    if (st->headers_too_large) return 0;
    if (st->req_headers.bytes + nlen + vlen + 32 > c->gen->cfg->limits.max_header_list_bytes) {
        st->headers_too_large = true;
        return 0;
    }
    if (pc__headers_add(&st->req_headers, name, nlen, value, vlen) < 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}

static void headers_finished(pc_h2conn *c, pc_stream *st)
{
    if (st->in_headers) {
        st->in_headers = false;
        c->headers_pending--;
        timer_due(c);
    }
}

/* Frames that cost us work and give nothing, counted so a flood of them ends the connection (the
 * HTTP/2 "glitch" idea; this nghttp2 has no such limiter of its own). Two budgets:
 *  - glitches: PRIORITY, SETTINGS, empty DATA, invalid frames, PINGs on a connection with no open
 *    stream: a token bucket of glitch_limit that refills over 10 s;
 *  - control frames (PING, WINDOW_UPDATE) while streams are open: gRPC clients send them with
 *    every read (BDP probes, small window updates), so they are bounded relative to useful frames
 *    (HEADERS, DATA): glitch_limit + 10 per useful frame, as Envoy does for WINDOW_UPDATE. */
static void enhance_your_calm(pc_h2conn *c, const char *what)
{
    pc_log_info("h2: client %s: too many %s frames: GOAWAY ENHANCE_YOUR_CALM", c->t.peer, what);
    c->goaway_sent = true;
    nghttp2_session_terminate_session(c->sess, NGHTTP2_ENHANCE_YOUR_CALM);
    pc__h2conn_schedule(c);
}

static void glitch(pc_h2conn *c, const char *what)
{
    uint32_t limit = c->gen->cfg->limits.glitch_limit;
    if (limit == 0 || c->goaway_sent) return;
    uint64_t now = uv_now(&c->worker->loop);
    double refill = (double)(now - c->glitch_window_start) * limit / 10000.0;
    c->glitch_window_start = now;
    c->glitch_tokens = c->glitch_tokens + refill > limit ? limit : c->glitch_tokens + refill;
    if (c->glitch_tokens >= 1) {
        c->glitch_tokens -= 1;
        return;
    }
    enhance_your_calm(c, what);
}

static void count_frame(pc_h2conn *c, const nghttp2_frame *f)
{
    const char *what = NULL;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        c->useful++;
        return;
    case NGHTTP2_DATA:
        if (f->hd.length > 0 || (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            c->useful++;
            return;
        }
        what = "empty DATA";
        break;
    case NGHTTP2_SETTINGS:
        if (f->hd.flags & NGHTTP2_FLAG_ACK) return;
        what = "SETTINGS";
        break;
    case NGHTTP2_PRIORITY:
        what = "PRIORITY";
        break;
    case NGHTTP2_PING:
        if (f->hd.flags & NGHTTP2_FLAG_ACK) return;
        if (c->nstreams == 0) {
            what = "PING";
            break;
        }
        /* fall through */
    case NGHTTP2_WINDOW_UPDATE: {
        uint32_t limit = c->gen->cfg->limits.glitch_limit;
        if (limit && !c->goaway_sent && ++c->control > limit + 10 * c->useful)
            enhance_your_calm(c, f->hd.type == NGHTTP2_PING ? "PING" : "WINDOW_UPDATE");
        return;
    }
    default:
        return;
    }
    glitch(c, what);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    pc_h2conn *c = ud;
    count_frame(c, f);
    if (f->hd.stream_id == 0) return 0;
    pc_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st) return 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        headers_finished(c, st);
        pc__stream_request_ready(st);
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) pc__stream_req_end(st);
        return 0;
    }
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        pc__stream_req_end(st);
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
    pc__stream_req_data(st, data, len);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t sid, uint32_t error_code, void *ud)
{
    pc_h2conn *c = ud;
    pc_stream *st = nghttp2_session_get_stream_user_data(s, sid);
    if (!st) return 0;
    nghttp2_session_set_stream_user_data(s, sid, NULL);
    headers_finished(c, st);
    pc__stream_client_closed(st, error_code);
    return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    pc_h2conn *c = ud;
    if (f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) c->useful++;
    if (f->hd.stream_id == 0 || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
    pc_stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (st) pc__stream_client_sent_end(st);
    return 0;
}

static int on_invalid_frame(nghttp2_session *s, const nghttp2_frame *f, int lib_error, void *ud)
{
    (void)s;
    pc_h2conn *c = ud;
    pc_log_debug("h2: %s: invalid frame type %u on stream %d: %s", c->t.peer, f->hd.type, f->hd.stream_id,
                 nghttp2_strerror(lib_error));
    glitch(c, "invalid frame");
    return 0;
}

static nghttp2_session_callbacks *server_callbacks(void)
{
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
    return cb;
}

/* ---- transport callbacks ---- */

static void t_connect(pc_transport *t, int status)
{
    (void)t;
    (void)status;
}

static int fill_conn_info(pc_h2conn *c)
{
    pc_conn_shared *cs = calloc(1, sizeof *cs);
    if (!cs) return -1;
    cs->refs = 1;
    c->conn_info = cs;
    memcpy(&cs->addr, &c->peer_addr, sizeof cs->addr);
    const char *peer = c->t.peer;
    const char *colon = strrchr(peer, ':');
    size_t iplen = colon ? (size_t)(colon - peer) : strlen(peer);
    if (peer[0] == '[' && iplen >= 2)
        snprintf(cs->ip, sizeof cs->ip, "%.*s", (int)(iplen - 2), peer + 1);
    else
        snprintf(cs->ip, sizeof cs->ip, "%.*s", (int)iplen, peer);
    snprintf(cs->port, sizeof cs->port, "%s", colon ? colon + 1 : "0");
    cs->info.client_ip = cs->ip;
    cs->info.client_port = (uint16_t)atoi(cs->port);
    cs->info.tls = c->tls;
    cs->info.alpn = c->http1 ? "http/1.1" : c->tls ? "h2" : "h2c";
    if (c->tls) {
        const char *sni = pc__tls_sni(c->t.ssl);
        if (sni) {
            snprintf(cs->sni, sizeof cs->sni, "%s", sni);
            cs->info.sni = cs->sni;
        }
        snprintf(cs->version, sizeof cs->version, "%s", SSL_get_version(c->t.ssl));
        snprintf(cs->cipher, sizeof cs->cipher, "%s", SSL_get_cipher_name(c->t.ssl));
        cs->info.tls_version = cs->version;
        cs->info.tls_cipher = cs->cipher;
        /* Only a certificate verified at the handshake (mtls origins) counts. */
        if (pc__tls_client_subject(c->t.ssl, cs->subject, sizeof cs->subject))
            cs->info.client_subject = cs->subject;
    }
    return 0;
}

static void t_ready(pc_transport *t)
{
    pc_h2conn *c = (pc_h2conn *)t;
    const pc_limits_conf *l = &c->gen->cfg->limits;
    if (c->tls) {
        const unsigned char *alpn;
        unsigned alen;
        SSL_get0_alpn_selected(t->ssl, &alpn, &alen);
        /* http/1.1 only where a zone takes gRPC-Web: the TLS layer offered it only then. */
        if (alen == 8 && !memcmp(alpn, "http/1.1", 8)) {
            c->http1 = true;
        } else if (alen != 2 || memcmp(alpn, "h2", 2) != 0) {
            pc_log_info("tls: client %s did not negotiate h2: closed", t->peer);
            pc__transport_close(t, true);
            return;
        }
    }
    if (fill_conn_info(c) < 0 || pc__chain_connection(c->gen, &c->conn_info->info)) {
        pc__transport_close(t, false);
        return;
    }
    nghttp2_session_callbacks *cb = server_callbacks();
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_continuations(opt, 8);
    /* Rapid reset (CVE-2023-44487): a burst of 1000 resets, then 33 per second. */
    nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
    int rv = nghttp2_session_server_new3(&c->sess, cb, c, opt, &c->worker->mem.nghttp2);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) {
        pc__transport_close(t, false);
        return;
    }
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, l->max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, l->stream_window_bytes},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, l->max_header_list_bytes},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    nghttp2_submit_settings(c->sess, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    nghttp2_session_set_local_window_size(c->sess, NGHTTP2_FLAG_NONE, 0, (int32_t)l->connection_window_bytes);
    c->glitch_tokens = l->glitch_limit;
    c->glitch_window_start = uv_now(&c->worker->loop);
    update_timer(c);
    if (c->http1 && pc__h1_start(c) < 0) {
        pc__transport_close(t, false);
        return;
    }
    pc__h2conn_schedule(c);
}

/* ---- client fingerprints (fingerprint.h) ---- */

/* Runs before nghttp2 sees the bytes, so the fingerprints are in conn_info when the first stream's plugins
 * run. The first call takes the TLS fingerprints (the handshake is over by now); then the frames are parsed
 * until the first header block is complete, and the parser is freed. */
static void fingerprint_read(pc_h2conn *c, const uint8_t *data, size_t len)
{
    pc_conn_shared *cs = c->conn_info;
    if (!c->fp_started) {
        c->fp_started = true;
        pc_fp_tls tls;
        if (c->tls && pc__fp_ssl_take(c->t.ssl, &tls) == 0) {
            snprintf(cs->ja3, sizeof cs->ja3, "%s", tls.ja3);
            snprintf(cs->ja3_hash, sizeof cs->ja3_hash, "%s", tls.ja3_hash);
            snprintf(cs->ja4, sizeof cs->ja4, "%s", tls.ja4);
        }
        c->fp_h2 = pc__fp_h2_new();
    }
    if (!c->fp_h2) return;
    int rv = pc__fp_h2_feed(c->fp_h2, data, len);
    if (rv == PC_FP_MORE) return;
    if (rv == PC_FP_DONE) snprintf(cs->h2fp, sizeof cs->h2fp, "%s", pc__fp_h2_result(c->fp_h2));
    pc__fp_h2_free(c->fp_h2);
    c->fp_h2 = NULL;
}

static int t_read(pc_transport *t, const uint8_t *data, size_t len)
{
    pc_h2conn *c = (pc_h2conn *)t;
    if (!c->sess) return 0;
    if (c->h1) {
        fingerprint_read(c, data, 0); /* the TLS fingerprints; there are no HTTP/2 frames to read */
        return pc__h1_read(c, data, len);
    }
    fingerprint_read(c, data, len);
    ssize_t n = nghttp2_session_mem_recv(c->sess, data, len);
    if (n < 0) {
        pc_log_info("h2: client %s: %s: closing", t->peer, nghttp2_strerror((int)n));
        /* Send the GOAWAY nghttp2 queued, then close. */
        c->fl.flush(&c->fl);
        pc__transport_close(t, true);
        return 0;
    }
    pc__h2conn_schedule(c);
    return 0;
}

static void t_error(pc_transport *t, const char *why)
{
    pc_log_debug("conn: client %s: %s", t->peer, why);
}

static void t_drain(pc_transport *t)
{
    pc__h2conn_schedule((pc_h2conn *)t);
}

static void t_timeout(pc_transport *t)
{
    pc_h2conn *c = (pc_h2conn *)t;
    static const char *what[] = {"", "TLS handshake", "request headers", "idle"};
    if (c->timer_mode != TIMER_IDLE || !c->worker->draining)
        pc_log_debug("conn: client %s: %s timeout", t->peer, what[c->timer_mode]);
    c->timer_mode = TIMER_NONE;
    if (c->sess && !c->goaway_sent) {
        c->goaway_sent = true;
        nghttp2_submit_goaway(c->sess, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->sess),
                              NGHTTP2_NO_ERROR, NULL, 0);
        c->fl.flush(&c->fl);
    }
    pc__transport_close(t, true);
}

static void t_closed(pc_transport *t)
{
    pc_h2conn *c = (pc_h2conn *)t;
    /* Streams still open: their client is gone. */
    while (c->streams) {
        pc_stream *st = c->streams;
        pc__stream_client_closed(st, NGHTTP2_CANCEL);
    }
    if (c->sess) nghttp2_session_del(c->sess);
    pc__h1_free(c->h1);
    pc__conn_shared_release(c->conn_info);
    if (c->client_counted) pc__client_release((struct sockaddr *)&c->peer_addr);
    pc__gen_release(c->gen);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->worker->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    pc_worker *w = c->worker;
    pc__metrics_conn(w->metrics, -1);
    pc__fp_h2_free(c->fp_h2);
    free(c);
    pc__worker_conn_closed(w);
}

static const pc_transport_cbs client_cbs = {
    .on_connect = t_connect,
    .on_ready = t_ready,
    .on_read = t_read,
    .on_error = t_error,
    .on_drain = t_drain,
    .on_timeout = t_timeout,
    .on_closed = t_closed,
};

void pc__h2conn_accept(pc_worker *w, uv_stream_t *listener, size_t index)
{
    pc_h2conn *c = calloc(1, sizeof *c);
    if (!c) return;
    pc__transport_init(w, &c->t, &client_cbs);
    c->worker = w;
    c->gen = pc__gen_acquire(w);
    c->listener = index;
    c->fl.flush = conn_flush;
    c->timer_mode = -1;
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    pc__metrics_conn(w->metrics, 1);
    if (uv_accept(listener, (uv_stream_t *)&c->t.tcp) != 0) {
        pc__transport_close(&c->t, false);
        return;
    }
    int alen = sizeof c->peer_addr;
    uv_tcp_getpeername(&c->t.tcp, (struct sockaddr *)&c->peer_addr, &alen);
    if (pc__client_acquire((struct sockaddr *)&c->peer_addr, c->gen->cfg->limits.max_connections_per_client) <
        0) {
        pc_log_debug("conn: refused: client has max_connections_per_client (%u) open",
                     c->gen->cfg->limits.max_connections_per_client);
        pc__transport_close(&c->t, false);
        return;
    }
    c->client_counted = true;
    pc_tls_server *tls = c->gen->rt->front_tls[index];
    c->tls = tls != NULL;
    if (pc__transport_accept(&c->t, tls ? pc__tls_server_ctx(tls) : NULL) != 0) {
        pc__transport_close(&c->t, false);
        return;
    }
    if (!c->t.closing) update_timer(c);
}

void pc__h2conn_check_stall(pc_h2conn *c, uint64_t now)
{
    uint64_t limit = c->gen->cfg->limits.send_timeout_ms;
    if (c->t.closing || !c->sess) return;
    /* The client does not read the socket at all. */
    if (c->t.write_pending > 0 && now - c->t.last_write_done > limit) {
        pc_log_info("conn: client %s took none of our output for %llu ms: closing", c->t.peer,
                    (unsigned long long)limit);
        pc__transport_close(&c->t, false);
        return;
    }
    /* The client reads but keeps a window shut on output that is waiting (slow-read). */
    int32_t conn_window = nghttp2_session_get_remote_window_size(c->sess);
    for (pc_stream *st = c->streams, *next; st; st = next) {
        next = st->cnext;
        bool blocked =
            st->resp_q.size > 0 &&
            (conn_window <= 0 || nghttp2_session_get_stream_remote_window_size(c->sess, st->sid) <= 0);
        if (!blocked) {
            st->blocked_since = 0;
            continue;
        }
        if (!st->blocked_since)
            st->blocked_since = now;
        else if (now - st->blocked_since > limit) {
            pc_log_info("conn: client %s kept its window shut on stream %d for %llu ms: stream reset",
                        c->t.peer, st->sid, (unsigned long long)limit);
            st->blocked_since = 0;
            nghttp2_submit_rst_stream(c->sess, NGHTTP2_FLAG_NONE, st->sid, NGHTTP2_CANCEL);
            pc__h2conn_schedule(c);
        }
    }
}

void pc__h2conn_drain(pc_h2conn *c)
{
    if (c->t.closing) return;
    if (!c->sess) {
        pc__transport_close(&c->t, false);
        return;
    }
    if (!c->goaway_sent) {
        c->goaway_sent = true;
        nghttp2_submit_goaway(c->sess, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->sess),
                              NGHTTP2_NO_ERROR, NULL, 0);
    }
    c->timer_mode = -1;
    update_timer(c);
    pc__h2conn_schedule(c);
}
