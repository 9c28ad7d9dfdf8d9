/* HTTP/1.1 requests carried into the connection's HTTP/2 server session through an in-process HTTP/2
 * client session: one request at a time (pipelined bytes wait), gRPC-Web and CORS preflights only;
 * answers chunked as they stream. The client session's window is given back only as the socket
 * takes the answer, so a slow reader slows the call end to end as over HTTP/2. */
#include "h1_server.h"

#include <http_parser.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "grpc_web.h"
#include "h2_server.h"
#include "log.h"
#include "zone_select.h"

/* Pipelined bytes, and request body bytes buffered ahead of the HTTP/2 side, at most (a body: at
 * least one whole message of its zone, which the stream would hold anyway). */
#define H1_MAX_BUFFERED (1u << 20)
/* Request body bytes waiting for the HTTP/2 side above which the socket is not read: the origin's
 * flow control reaches the client as TCP back-pressure, as it does on HTTP/2. */
#define H1_BODY_HIGH (256u * 1024)

struct pc_h1 {
    pc_h2conn *c;
    http_parser parser;
    nghttp2_session *cli;
    /* the request being read */
    char *url;
    size_t url_len;
    pc_headers fields; /* names lower-cased */
    char *name, *value;
    size_t name_len, value_len;
    bool in_value;
    bool in_headers; /* counted in the connection's pending header blocks (its header timeout) */
    size_t header_bytes;
    int32_t sid;   /* its stream on cli; 0: none */
    bool refused;  /* answered here (415, 400): its body is read and dropped */
    bool answered; /* its answer is complete (maybe before its body: the rest is read and dropped) */
    bool busy;     /* a request is in flight: the parser waits */
    bool body_end; /* the request body is complete */
    size_t body_max;
    uint8_t *body;
    size_t body_len, body_pos, body_cap;
    bool keep_alive;
    /* the answer */
    bool resp_started, resp_chunked;
    char *head; /* the answer's status line and header lines, written at once */
    size_t head_len;
    size_t unacked; /* answer bytes written to the socket and not yet given back as window */
    /* input that arrived while a request was in flight */
    uint8_t *pending;
    size_t pending_len;
    bool resume; /* the answer is complete: read the pending input */
    bool failed;
};

static void write_str(pc_h1 *h, const char *s, size_t len)
{
    if (len) pc__transport_write_copy(&h->c->t, (const uint8_t *)s, len);
}

/* An answer made here, for what the HTTP/2 side must not see. */
static void answer_here(pc_h1 *h, int status, const char *reason, const char *msg, bool close)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %zu\r\n%s\r\n%s\n",
                     status, reason, strlen(msg) + 1, close ? "connection: close\r\n" : "", msg);
    write_str(h, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    if (close) {
        h->failed = true;
        pc__transport_close(&h->c->t, true);
    }
}

/* ---- the request (http-parser callbacks) ---- */

static int grow(char **p, size_t *len, const char *at, size_t n)
{
    char *q = realloc(*p, *len + n + 1);
    if (!q) return -1;
    memcpy(q + *len, at, n);
    *len += n;
    q[*len] = '\0';
    *p = q;
    return 0;
}

static int commit_field(pc_h1 *h)
{
    if (!h->name) return 0;
    for (size_t i = 0; i < h->name_len; i++)
        if (h->name[i] >= 'A' && h->name[i] <= 'Z') h->name[i] = (char)(h->name[i] + 32);
    int rv = pc__headers_add(&h->fields, (const uint8_t *)h->name, h->name_len,
                             (const uint8_t *)(h->value ? h->value : ""), h->value_len);
    free(h->name);
    free(h->value);
    h->name = h->value = NULL;
    h->name_len = h->value_len = 0;
    return rv;
}

static int too_large(pc_h1 *h, size_t n)
{
    h->header_bytes += n;
    return h->header_bytes > h->c->gen->cfg->limits.max_header_list_bytes;
}

static int on_message_begin(http_parser *p)
{
    pc_h1 *h = p->data;
    h->in_headers = true;
    pc__h2conn_headers_pending(h->c, 1);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    pc_h1 *h = p->data;
    return too_large(h, n) || grow(&h->url, &h->url_len, at, n);
}

static int on_field(http_parser *p, const char *at, size_t n)
{
    pc_h1 *h = p->data;
    if (h->in_value && commit_field(h) < 0) return -1;
    h->in_value = false;
    return too_large(h, n) || grow(&h->name, &h->name_len, at, n);
}

static int on_value(http_parser *p, const char *at, size_t n)
{
    pc_h1 *h = p->data;
    h->in_value = true;
    return too_large(h, n) || grow(&h->value, &h->value_len, at, n);
}

static bool hop_by_hop(const nghttp2_nv *nv)
{
    static const char *const drop[] = {
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
        "host",       "expect"};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
        if (nv->namelen == strlen(drop[i]) && !memcmp(nv->name, drop[i], nv->namelen)) return true;
    return false;
}

/* Reads the socket again once the body waiting for the HTTP/2 side is down to half the mark. */
static void body_flow(pc_h1 *h)
{
    size_t waiting = h->body_len - h->body_pos;
    if (waiting >= H1_BODY_HIGH)
        pc__transport_hold_input(&h->c->t, true);
    else if (waiting < H1_BODY_HIGH / 2)
        pc__transport_hold_input(&h->c->t, false);
}

static ssize_t read_body(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)sid;
    (void)src;
    pc_h1 *h = ud;
    size_t n = h->body_len - h->body_pos;
    if (n > len) n = len;
    if (n) memcpy(buf, h->body + h->body_pos, n);
    h->body_pos += n;
    if (h->body_pos == h->body_len) h->body_pos = h->body_len = 0;
    body_flow(h);
    if (h->body_len == 0 && h->body_end)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    else if (n == 0)
        return NGHTTP2_ERR_DEFERRED;
    return (ssize_t)n;
}

static int on_headers_complete(http_parser *p)
{
    pc_h1 *h = p->data;
    if (h->in_headers) {
        h->in_headers = false;
        pc__h2conn_headers_pending(h->c, -1);
    }
    if (h->in_value && commit_field(h) < 0) return -1;
    h->in_value = false;
    h->busy = true;
    h->keep_alive = http_should_keep_alive(p);
    const char *method = http_method_str((enum http_method)p->method);
    const char *ct = pc__headers_get(&h->fields, "content-type");
    bool text;
    if (strcmp(method, "OPTIONS") && !pc__grpc_web_content_type(ct, &text)) {
        /* Native gRPC and the rest of HTTP stay on HTTP/2. */
        h->refused = true;
        return 0;
    }
    const char *expect = pc__headers_get(&h->fields, "expect");
    if (expect && !strcasecmp(expect, "100-continue")) write_str(h, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    const char *host = pc__headers_get(&h->fields, "host");
    char hostname[256];
    const pc_zone_conf *z = host ? pc__zone_select(h->c->gen->cfg, host, hostname, sizeof hostname) : NULL;
    h->body_max = H1_MAX_BUFFERED;
    if (z && z->max_message_bytes + 65536 > h->body_max) h->body_max = z->max_message_bytes + 65536;
    nghttp2_nv *nva = calloc(h->fields.n + 4, sizeof *nva);
    if (!nva) return -1;
    size_t k = 0;
#define PSEUDO(n, v) nva[k++] = (nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), 0}
    PSEUDO(":method", method);
    PSEUDO(":scheme", "https");
    PSEUDO(":path", h->url ? h->url : "/");
    if (host) PSEUDO(":authority", host);
#undef PSEUDO
    for (size_t i = 0; i < h->fields.n; i++)
        if (!hop_by_hop(&h->fields.nv[i])) nva[k++] = h->fields.nv[i];
    nghttp2_data_provider prd = {.read_callback = read_body};
    h->sid = nghttp2_submit_request(h->cli, NULL, nva, k, &prd, NULL);
    free(nva);
    if (h->sid < 0) {
        h->sid = 0;
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    pc_h1 *h = p->data;
    if (h->refused || h->answered) return 0;
    if (h->body_len + n > h->body_max) {
        if (h->body_pos) {
            memmove(h->body, h->body + h->body_pos, h->body_len - h->body_pos);
            h->body_len -= h->body_pos;
            h->body_pos = 0;
        }
        if (h->body_len + n > h->body_max) return -1;
    }
    if (h->body_len + n > h->body_cap) {
        size_t cap = h->body_cap ? h->body_cap : 16384;
        while (cap < h->body_len + n)
            cap *= 2;
        uint8_t *b = realloc(h->body, cap);
        if (!b) return -1;
        h->body = b;
        h->body_cap = cap;
    }
    memcpy(h->body + h->body_len, at, n);
    h->body_len += n;
    body_flow(h);
    if (h->sid) nghttp2_session_resume_data(h->cli, h->sid);
    return 0;
}

/* The exchange is over both ways: ready for the next request. */
static void exchange_done(pc_h1 *h)
{
    h->sid = 0;
    h->busy = h->refused = h->answered = false;
    h->resp_started = h->resp_chunked = false;
    h->body_end = false;
    h->body_len = h->body_pos = 0;
    body_flow(h);
    h->header_bytes = 0;
    pc__headers_free(&h->fields);
    free(h->url);
    h->url = NULL;
    h->url_len = 0;
}

static int on_message_complete(http_parser *p)
{
    pc_h1 *h = p->data;
    h->body_end = true;
    if (h->refused) {
        answer_here(
            h, 415, "Unsupported Media Type",
            "HTTP/1.1 carries gRPC-Web only (application/grpc-web, +proto, -text); use HTTP/2 for the rest",
            !h->keep_alive);
        exchange_done(h);
        return 0;
    }
    if (h->answered) { /* the answer came before the end of the body */
        exchange_done(h);
        return 0;
    }
    if (h->sid) nghttp2_session_resume_data(h->cli, h->sid);
    http_parser_pause(p, 1); /* one request at a time: the next waits for this answer */
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- the answer (client session callbacks) ---- */

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    (void)s;
    (void)flags;
    pc_h1 *h = ud;
    /* Response trailers: gRPC-Web carries them in the body, HTTP/1.1 browsers read none. */
    if (f->headers.cat != NGHTTP2_HCAT_RESPONSE || h->resp_started) return 0;
    int rv = 0;
    if (nlen == 7 && !memcmp(name, ":status", 7)) {
        char line[64];
        int n = snprintf(line, sizeof line, "HTTP/1.1 %.*s %s\r\n", (int)(vlen > 3 ? 3 : vlen), value,
                         vlen == 3 && value[0] == '2' ? "OK" : "Status");
        rv = grow(&h->head, &h->head_len, line, (size_t)n);
    } else if (nlen && name[0] != ':') {
        rv = grow(&h->head, &h->head_len, (const char *)name, nlen) < 0 ||
             grow(&h->head, &h->head_len, ": ", 2) < 0 ||
             grow(&h->head, &h->head_len, (const char *)value, vlen) < 0 ||
             grow(&h->head, &h->head_len, "\r\n", 2) < 0;
    }
    return rv ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    pc_h1 *h = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_RESPONSE || h->resp_started) return 0;
    h->resp_started = true;
    bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
    h->resp_chunked = !end;
    char tail[96];
    int n = snprintf(tail, sizeof tail, "%s%s\r\n",
                     end ? "content-length: 0\r\n" : "transfer-encoding: chunked\r\n",
                     h->keep_alive ? "" : "connection: close\r\n");
    if (grow(&h->head, &h->head_len, tail, (size_t)n) < 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
    pc__transport_write(&h->c->t, (uint8_t *)h->head, h->head_len); /* takes the buffer */
    h->head = NULL;
    h->head_len = 0;
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data, size_t len, void *ud)
{
    (void)s;
    (void)flags;
    (void)sid;
    pc_h1 *h = ud;
    h->unacked += len;
    if (!h->resp_chunked || len == 0) return 0;
    uint8_t *buf = malloc(len + 24);
    if (!buf) return NGHTTP2_ERR_CALLBACK_FAILURE;
    int n = snprintf((char *)buf, 24, "%zx\r\n", len);
    memcpy(buf + n, data, len);
    memcpy(buf + n + len, "\r\n", 2);
    pc__transport_write(&h->c->t, buf, (size_t)n + len + 2);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t sid, uint32_t error_code, void *ud)
{
    (void)s;
    pc_h1 *h = ud;
    if (sid != h->sid) return 0;
    if (!h->resp_started) {
        answer_here(h, 502, "Bad Gateway", "the call ended without an answer", true);
    } else if (error_code != NGHTTP2_NO_ERROR) {
        /* Cut short: HTTP/1.1 has no other way to say so than ending the connection mid-body. */
        h->failed = true;
        pc__transport_close(&h->c->t, false);
    } else if (h->resp_chunked) {
        write_str(h, "0\r\n\r\n", 5);
    }
    if (!h->keep_alive && !h->failed) {
        h->failed = true;
        pc__transport_close(&h->c->t, true);
    }
    if (h->body_end) {
        exchange_done(h);
        h->resume = true; /* the parser waits at the end of the request */
    } else {
        h->answered = true; /* the parser reads the rest of the body and drops it */
        h->sid = 0;
        h->body_len = h->body_pos = 0;
        body_flow(h);
    }
    return 0;
}

/* ---- the connection ---- */

int pc__h1_start(pc_h2conn *c)
{
    pc_h1 *h = calloc(1, sizeof *h);
    if (!h) return -1;
    h->c = c;
    c->h1 = h;
    http_parser_init(&h->parser, HTTP_REQUEST);
    h->parser.data = h;
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0) return -1;
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    int rv = nghttp2_session_client_new2(&h->cli, cb, h, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) return -1;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 256 * 1024}};
    nghttp2_submit_settings(h->cli, NGHTTP2_FLAG_NONE, iv, 2);
    pc__h2conn_schedule(c);
    return 0;
}

static int parse(pc_h1 *h, const uint8_t *data, size_t len)
{
    size_t n = http_parser_execute(&h->parser, &parser_settings, (const char *)data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&h->parser);
    if (e != HPE_OK && e != HPE_PAUSED) {
        pc_log_debug("h1: client %s: %s", h->c->t.peer, http_errno_description(e));
        if (!h->busy || !h->sid)
            answer_here(h, 400, "Bad Request", http_errno_description(e), true);
        else {
            h->failed = true;
            pc__transport_close(&h->c->t, false);
        }
        return -1;
    }
    if (n < len) { /* paused: the rest waits for the answer */
        if (h->pending_len + (len - n) > H1_MAX_BUFFERED) return -1;
        uint8_t *p = realloc(h->pending, h->pending_len + (len - n));
        if (!p) return -1;
        memcpy(p + h->pending_len, data + n, len - n);
        h->pending = p;
        h->pending_len += len - n;
    }
    return 0;
}

int pc__h1_read(pc_h2conn *c, const uint8_t *data, size_t len)
{
    pc_h1 *h = c->h1;
    if (h->failed) return 0;
    if (h->pending_len || HTTP_PARSER_ERRNO(&h->parser) == HPE_PAUSED) {
        if (h->pending_len + len > H1_MAX_BUFFERED) return -1;
        uint8_t *p = realloc(h->pending, h->pending_len + len);
        if (!p) return -1;
        memcpy(p + h->pending_len, data, len);
        h->pending = p;
        h->pending_len += len;
        return 0;
    }
    if (parse(h, data, len) < 0) return h->failed ? 0 : -1;
    pc__h2conn_schedule(c);
    return 0;
}

void pc__h1_flush(pc_h2conn *c)
{
    pc_h1 *h = c->h1;
    if (!h->cli || c->t.closing) return;
    /* The answer went to the socket: its bytes come back as window once the socket keeps up. */
    if (h->unacked && c->t.write_pending < PC_TRANSPORT_HIGH_WATER) {
        nghttp2_session_consume_connection(h->cli, h->unacked);
        if (h->sid) nghttp2_session_consume_stream(h->cli, h->sid, h->unacked);
        h->unacked = 0;
    }
    for (int rounds = 0; rounds < 64; rounds++) {
        bool moved = false;
        const uint8_t *data;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(h->cli, &data)) > 0) {
            moved = true;
            if (nghttp2_session_mem_recv(c->sess, data, (size_t)n) < 0) goto broken;
        }
        if (n < 0) goto broken;
        while (!c->t.closing && (n = nghttp2_session_mem_send(c->sess, &data)) > 0) {
            moved = true;
            if (nghttp2_session_mem_recv(h->cli, data, (size_t)n) < 0) goto broken;
        }
        if (n < 0) goto broken;
        if (h->resume && !h->failed && !c->t.closing) {
            h->resume = false;
            http_parser_pause(&h->parser, 0);
            uint8_t *p = h->pending;
            size_t len = h->pending_len;
            h->pending = NULL;
            h->pending_len = 0;
            int rv = len ? parse(h, p, len) : 0;
            free(p);
            if (rv < 0) {
                if (!h->failed) pc__transport_close(&c->t, false);
                return;
            }
            moved = true;
        }
        if (!moved || c->t.closing) break;
    }
    if (!nghttp2_session_want_read(c->sess) && !nghttp2_session_want_write(c->sess))
        pc__transport_close(&c->t, true);
    return;
broken:
    pc_log_debug("h1: client %s: internal HTTP/2 link failed", c->t.peer);
    pc__transport_close(&c->t, false);
}

void pc__h1_free(pc_h1 *h)
{
    if (!h) return;
    if (h->cli) nghttp2_session_del(h->cli);
    pc__headers_free(&h->fields);
    free(h->url);
    free(h->head);
    free(h->name);
    free(h->value);
    free(h->body);
    free(h->pending);
    free(h);
}
