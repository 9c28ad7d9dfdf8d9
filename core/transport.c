/* TCP + optional TLS over libuv. TLS runs over memory BIOs so libuv owns all socket I/O and
 * OpenSSL only transforms bytes; reads are paused while the peer leaves our output unread. */
#include "transport.h"

#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

#include "fingerprint.h"
#include "log.h"
#include "worker.h"

#define LINGER_MS 3000

static void resume_read(pc_transport *t);

typedef struct write_req {
    uv_write_t req;
    pc_transport *t;
    size_t len;
    uint8_t *base;
} write_req;

static void handle_closed(uv_handle_t *h)
{
    pc_transport *t = h->data;
    if (--t->open_handles > 0) return;
    if (t->ssl) {
        SSL_free(t->ssl);
        t->ssl = NULL;
    }
    t->cbs->on_closed(t);
}

static void close_now(pc_transport *t)
{
    if (uv_is_closing((uv_handle_t *)&t->tcp)) return;
    t->closing = true;
    uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->tcp, handle_closed);
    uv_close((uv_handle_t *)&t->timer, handle_closed);
}

static void write_done(uv_write_t *req, int status)
{
    write_req *wr = (write_req *)req;
    pc_transport *t = wr->t;
    t->write_pending -= wr->len;
    t->last_write_done = uv_now(t->tcp.loop);
    free(wr->base);
    free(wr);
    if (status < 0) {
        if (status != UV_ECANCELED && !t->closing) {
            t->failed = true;
            t->cbs->on_error(t, uv_strerror(status));
            close_now(t);
        }
        return;
    }
    if (t->closing) return;
    if (t->close_when_flushed) {
        if (t->write_pending == 0) close_now(t);
        return;
    }
    if (t->write_pending < PC_TRANSPORT_HIGH_WATER / 2) {
        if (t->read_paused && t->reading) {
            t->read_paused = false;
            if (!t->input_held) resume_read(t);
        }
        t->cbs->on_drain(t);
    }
}

static int raw_write(pc_transport *t, uint8_t *buf, size_t len)
{
    write_req *wr = malloc(sizeof *wr);
    if (!wr) {
        free(buf);
        return -1;
    }
    wr->t = t;
    wr->len = len;
    wr->base = buf;
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    int rv = uv_write(&wr->req, (uv_stream_t *)&t->tcp, &b, 1, write_done);
    if (rv < 0) {
        free(wr);
        free(buf);
        return -1;
    }
    /* libuv keeps a pointer to the payload until completion: it is freed in write_done. */
    if (t->write_pending == 0) t->last_write_done = uv_now(t->tcp.loop);
    t->write_pending += len;
    return 0;
}

/* Send bytes the caller keeps. With nothing queued the socket takes them straight away
 * (uv_try_write: no copy, no write request, and no change to the epoll set, which a completed
 * uv_write costs); what it does not take now is copied and queued behind, in order. An error is
 * left to the queued write, which reports it through write_done like any other. */
static int send_bytes(pc_transport *t, const uint8_t *data, size_t len)
{
    size_t off = 0;
    if (t->write_pending == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&t->tcp, &b, 1);
        if (n > 0) off = (size_t)n;
        if (off == len) {
            t->last_write_done = uv_now(t->tcp.loop);
            return 0;
        }
    }
    uint8_t *copy = malloc(len - off);
    if (!copy) return -1;
    memcpy(copy, data + off, len - off);
    return raw_write(t, copy, len - off);
}

/* Move whatever OpenSSL produced into the socket, through the worker's scratch buffer. */
static int flush_tls(pc_transport *t)
{
    BIO *wbio = SSL_get_wbio(t->ssl);
    uint8_t *buf = t->worker->tlsout;
    for (;;) {
        size_t pending = BIO_ctrl_pending(wbio);
        if (pending == 0) return 0;
        int n = BIO_read(wbio, buf,
                         (int)(pending < sizeof t->worker->tlsout ? pending : sizeof t->worker->tlsout));
        if (n <= 0) return 0;
        if (send_bytes(t, buf, (size_t)n) < 0) return -1;
    }
}

const char *pc__transport_tls_error(pc_transport *t, char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (t->ssl && !t->server) {
        long vr = SSL_get_verify_result(t->ssl);
        if (vr != X509_V_OK) {
            snprintf(buf, len, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
            return buf;
        }
    }
    if (e) {
        const char *r = ERR_reason_error_string(e);
        snprintf(buf, len, "%s", r ? r : "TLS error");
    } else {
        snprintf(buf, len, "TLS error");
    }
    return buf;
}

static void fail(pc_transport *t, const char *why)
{
    if (t->closing) return;
    t->failed = true;
    t->cbs->on_error(t, why);
    pc__transport_close(t, true);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    pc_transport *t = h->data;
    buf->base = (char *)t->worker->readbuf;
    buf->len = sizeof t->worker->readbuf;
}

static void handle_tls_input(pc_transport *t)
{
    if (!t->ready) {
        ERR_clear_error();
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            flush_tls(t); /* handshake messages or the alert */
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
            char why[256];
            pc__transport_tls_error(t, why, sizeof why);
            fail(t, why);
            return;
        }
        t->ready = true;
        flush_tls(t);
        t->cbs->on_ready(t);
        if (t->closing) return;
    }
    for (;;) {
        ERR_clear_error();
        int n = SSL_read(t->ssl, t->worker->tlsbuf, sizeof t->worker->tlsbuf);
        if (n > 0) {
            if (t->cbs->on_read(t, t->worker->tlsbuf, (size_t)n) < 0) {
                pc__transport_close(t, true);
                return;
            }
            if (t->closing || t->close_when_flushed) return;
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            fail(t, "peer closed the TLS session");
            return;
        }
        char why[256];
        fail(t, pc__transport_tls_error(t, why, sizeof why));
        return;
    }
    flush_tls(t);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    pc_transport *t = s->data;
    if (t->closing) return;
    if (nread < 0) {
        fail(t, nread == UV_EOF ? "peer closed the connection" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0) return;
    if (t->close_when_flushed) return; /* going away: input is no longer interesting */
    if (!t->ssl) {
        if (t->cbs->on_read(t, (const uint8_t *)buf->base, (size_t)nread) < 0) pc__transport_close(t, true);
        return;
    }
    /* The raw ClientHello for JA3/JA4: OpenSSL's own view of it has lost GREASE and unknown extensions. */
    if (t->server && !t->ready) pc__fp_ssl_feed(t->ssl, (const uint8_t *)buf->base, (size_t)nread);
    BIO_write(SSL_get_rbio(t->ssl), buf->base, (int)nread);
    handle_tls_input(t);
}

static void resume_read(pc_transport *t)
{
    if (!t->closing && !t->close_when_flushed) uv_read_start((uv_stream_t *)&t->tcp, on_alloc, on_read);
}

static void on_timer(uv_timer_t *h)
{
    pc_transport *t = h->data;
    if (t->close_when_flushed) {
        close_now(t); /* the peer would not take our last bytes */
        return;
    }
    t->cbs->on_timeout(t);
}

void pc__transport_init(pc_worker *w, pc_transport *t, const pc_transport_cbs *cbs)
{
    memset(t, 0, sizeof *t);
    t->worker = w;
    t->cbs = cbs;
    uv_tcp_init(&w->loop, &t->tcp);
    uv_timer_init(&w->loop, &t->timer);
    t->tcp.data = t;
    t->timer.data = t;
    t->open_handles = 2;
}

static int setup_ssl(pc_transport *t, SSL_CTX *ctx)
{
    t->ssl = SSL_new(ctx);
    if (!t->ssl) return -1;
    BIO *rbio = BIO_new(BIO_s_mem());
    BIO *wbio = BIO_new(BIO_s_mem());
    if (!rbio || !wbio) {
        BIO_free(rbio);
        BIO_free(wbio);
        return -1;
    }
    BIO_set_mem_eof_return(rbio, -1);
    SSL_set_bio(t->ssl, rbio, wbio);
    SSL_set_app_data(t->ssl, t);
    return 0;
}

static void fill_peer(pc_transport *t)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&t->tcp, (struct sockaddr *)&ss, &len) != 0) return;
    char ip[48] = "?";
    int port = 0;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof ip);
        port = ntohs(a->sin_port);
        snprintf(t->peer, sizeof t->peer, "%s:%d", ip, port);
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof ip);
        port = ntohs(a->sin6_port);
        snprintf(t->peer, sizeof t->peer, "[%s]:%d", ip, port);
    }
}

int pc__transport_accept(pc_transport *t, SSL_CTX *ctx)
{
    t->server = true;
    fill_peer(t);
    uv_tcp_nodelay(&t->tcp, 1);
    if (ctx) {
        if (setup_ssl(t, ctx) < 0) return -1;
        SSL_set_accept_state(t->ssl);
    }
    t->reading = true;
    if (uv_read_start((uv_stream_t *)&t->tcp, on_alloc, on_read) < 0) return -1;
    if (!ctx) {
        t->ready = true;
        t->cbs->on_ready(t);
    }
    return 0;
}

typedef struct connect_req {
    uv_connect_t req;
    pc_transport *t;
} connect_req;

static void on_connected(uv_connect_t *req, int status)
{
    pc_transport *t = ((connect_req *)req)->t;
    free(req);
    if (t->closing) return;
    if (status < 0) {
        t->failed = true;
        t->cbs->on_connect(t, status);
        close_now(t);
        return;
    }
    fill_peer(t);
    t->cbs->on_connect(t, 0);
    if (t->closing) return;
    uv_tcp_nodelay(&t->tcp, 1);
    t->reading = true;
    uv_read_start((uv_stream_t *)&t->tcp, on_alloc, on_read);
    if (!t->ssl) {
        t->ready = true;
        t->cbs->on_ready(t);
        return;
    }
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    int e = SSL_get_error(t->ssl, r);
    flush_tls(t);
    if (r != 1 && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        char why[256];
        fail(t, pc__transport_tls_error(t, why, sizeof why));
    }
}

int pc__transport_connect(pc_transport *t, const struct sockaddr *addr, SSL_CTX *ctx, const char *sni,
                          bool verify_host)
{
    t->server = false;
    if (ctx) {
        if (setup_ssl(t, ctx) < 0) return -1;
        SSL_set_connect_state(t->ssl);
        if (sni && *sni) {
            SSL_set_tlsext_host_name(t->ssl, sni);
            if (verify_host) SSL_set1_host(t->ssl, sni);
        }
    }
    connect_req *cr = malloc(sizeof *cr);
    if (!cr) return -1;
    cr->t = t;
    int rv = uv_tcp_connect(&cr->req, &t->tcp, addr, on_connected);
    if (rv < 0) {
        free(cr);
        return rv;
    }
    return 0;
}

static void after_write(pc_transport *t, int rv)
{
    /* A peer that does not read our output must not make us buffer without bound. */
    if (rv == 0 && t->write_pending >= PC_TRANSPORT_HIGH_WATER && t->reading && !t->read_paused) {
        t->read_paused = true;
        uv_read_stop((uv_stream_t *)&t->tcp);
    }
}

void pc__transport_hold_input(pc_transport *t, bool hold)
{
    if (hold == t->input_held) return;
    t->input_held = hold;
    if (!t->reading || t->read_paused || t->closing || t->close_when_flushed) return;
    if (hold)
        uv_read_stop((uv_stream_t *)&t->tcp);
    else
        resume_read(t);
}

int pc__transport_write_copy(pc_transport *t, const uint8_t *data, size_t len)
{
    if (t->closing || t->close_when_flushed) return -1;
    int rv;
    if (t->ssl) {
        ERR_clear_error();
        if (SSL_write(t->ssl, data, (int)len) <= 0) return -1;
        rv = flush_tls(t);
    } else {
        rv = send_bytes(t, data, len);
    }
    after_write(t, rv);
    return rv;
}

int pc__transport_write(pc_transport *t, uint8_t *buf, size_t len)
{
    if (t->closing || t->close_when_flushed) {
        free(buf);
        return -1;
    }
    int rv;
    if (t->ssl) {
        ERR_clear_error();
        int n = SSL_write(t->ssl, buf, (int)len);
        free(buf);
        if (n <= 0) return -1;
        rv = flush_tls(t);
    } else {
        rv = send_bytes(t, buf, len);
        free(buf);
    }
    after_write(t, rv);
    return rv;
}

void pc__transport_close(pc_transport *t, bool graceful)
{
    if (t->closing || uv_is_closing((uv_handle_t *)&t->tcp)) return;
    if (graceful && t->ssl && t->ready && !t->failed) {
        SSL_shutdown(t->ssl);
        flush_tls(t);
    }
    if (!graceful || t->write_pending == 0) {
        close_now(t);
        return;
    }
    t->close_when_flushed = true;
    uv_read_stop((uv_stream_t *)&t->tcp);
    uv_timer_start(&t->timer, on_timer, LINGER_MS, 0);
}

void pc__transport_timer(pc_transport *t, uint64_t ms)
{
    if (t->closing || t->close_when_flushed) return;
    if (ms == 0)
        uv_timer_stop(&t->timer);
    else
        uv_timer_start(&t->timer, on_timer, ms, 0);
}
