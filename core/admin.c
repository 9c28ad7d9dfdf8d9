/* Admin HTTP: one request per connection (Connection: close), request head capped at 8 KiB,
 * answered from the main thread so workers never serve it. */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access/jwks.h"
#include "log.h"

#define HEAD_MAX 8192

struct pc_admin {
    uv_tcp_t server;
    pc_metrics *const *metrics;
    size_t nmetrics;
};

typedef struct admin_conn {
    uv_tcp_t tcp;
    pc_admin *admin;
    char buf[HEAD_MAX];
    size_t have;
    bool answered;
} admin_conn;

typedef struct admin_write {
    uv_write_t req;
    char *body;
} admin_write;

static void conn_closed(uv_handle_t *h)
{
    free(h->data);
}

static void written(uv_write_t *req, int status)
{
    (void)status;
    admin_write *w = (admin_write *)req;
    uv_close((uv_handle_t *)req->handle, conn_closed);
    free(w->body);
    free(w);
}

static void respond(admin_conn *c, int code, const char *reason, const char *type, char *body)
{
    c->answered = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    size_t blen = body ? strlen(body) : 0;
    char head[256];
    int hl =
        snprintf(head, sizeof head,
                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                 code, reason, type, blen);
    admin_write *w = calloc(1, sizeof *w);
    char *all = malloc((size_t)hl + blen + 1);
    if (!w || !all) {
        free(w);
        free(all);
        free(body);
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
        return;
    }
    memcpy(all, head, (size_t)hl);
    if (blen) memcpy(all + hl, body, blen);
    free(body);
    w->body = all;
    uv_buf_t b = uv_buf_init(all, (unsigned)((size_t)hl + blen));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, written) != 0) {
        free(all);
        free(w);
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
    }
}

static void handle(admin_conn *c)
{
    char method[16], target[256];
    if (sscanf(c->buf, "%15s %255s", method, target) != 2) {
        respond(c, 400, "Bad Request", "text/plain", strdup("bad request\n"));
        return;
    }
    if (strcmp(method, "GET") != 0) {
        respond(c, 405, "Method Not Allowed", "text/plain", strdup("only GET\n"));
        return;
    }
    if (!strcmp(target, "/metrics")) {
        char *body = pc__metrics_render(c->admin->metrics, c->admin->nmetrics);
        respond(c, body ? 200 : 500, body ? "OK" : "Internal Server Error", "text/plain; version=0.0.4",
                body);
    } else if (!strcmp(target, "/healthz")) {
        respond(c, 200, "OK", "text/plain", strdup("ok\n"));
    } else if (!strcmp(target, "/jwks.json")) {
        /* The keys origins verify the edge's identity tokens with (access.vouch). */
        char *body = pc__access_jwks_render();
        respond(c, body ? 200 : 500, body ? "OK" : "Internal Server Error", "application/json", body);
    } else {
        respond(c, 404, "Not Found", "text/plain", strdup("not found: try /metrics or /healthz\n"));
    }
}

static void on_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)s;
    admin_conn *c = h->data;
    b->base = c->buf + c->have;
    b->len = HEAD_MAX - 1 - c->have;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    admin_conn *c = s->data;
    if (c->answered) return;
    if (n < 0) {
        uv_close((uv_handle_t *)s, conn_closed);
        return;
    }
    c->have += (size_t)n;
    c->buf[c->have] = '\0';
    if (strstr(c->buf, "\r\n\r\n") || strstr(c->buf, "\n\n"))
        handle(c);
    else if (c->have >= HEAD_MAX - 1)
        respond(c, 431, "Request Header Fields Too Large", "text/plain", strdup("request too large\n"));
}

static void on_conn(uv_stream_t *server, int status)
{
    if (status < 0) return;
    admin_conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->admin = server->data;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

pc_admin *pc__admin_start(uv_loop_t *loop, const char *host, unsigned port, pc_metrics *const *metrics,
                          size_t n, char *err, size_t errlen)
{
    pc_admin *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->metrics = metrics;
    a->nmetrics = n;
    struct sockaddr_storage ss;
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&ss) != 0) {
        snprintf(err, errlen, "admin: bad address %s", host);
        free(a);
        return NULL;
    }
    uv_tcp_init(loop, &a->server);
    a->server.data = a;
    int rv = uv_tcp_bind(&a->server, (struct sockaddr *)&ss, 0);
    if (rv == 0) rv = uv_listen((uv_stream_t *)&a->server, 64, on_conn);
    if (rv != 0) {
        snprintf(err, errlen, "admin: cannot listen on %s:%u: %s", host, port, uv_strerror(rv));
        uv_close((uv_handle_t *)&a->server, conn_closed);
        return NULL;
    }
    return a;
}

void pc__admin_stop(pc_admin *a)
{
    if (a) uv_close((uv_handle_t *)&a->server, conn_closed);
}
