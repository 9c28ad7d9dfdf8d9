/* The access log's descriptor is process-wide: workers write whole lines with one write(2) on an
 * O_APPEND descriptor so lines never interleave, and reopening swaps the file under the same
 * descriptor number with dup2(), which is atomic for concurrent writers. */
#include "access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "chain.h"
#include "json_out.h"
#include "stream.h"
#include "worker.h"

static atomic_int log_fd = -1; /* -1: off */
static atomic_bool log_pipe;   /* a pipe or socket: writes must stay within PIPE_BUF to stay whole */
static char *log_path;         /* main thread only */

static void set_fd(int fd)
{
    struct stat sb;
    atomic_store(&log_pipe, fstat(fd, &sb) == 0 && (S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode)));
    atomic_store(&log_fd, fd);
}

static int open_path(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) snprintf(err, errlen, "access log %s: %s", path, strerror(errno));
    return fd;
}

int pc__access_log_open(const char *spec, char *err, size_t errlen)
{
    pc__access_log_close();
    if (!strcmp(spec, "off")) return 0;
    if (!strcmp(spec, "stdout") || !strcmp(spec, "stderr")) {
        set_fd(!strcmp(spec, "stdout") ? STDOUT_FILENO : STDERR_FILENO);
        return 0;
    }
    int fd = open_path(spec, err, errlen);
    if (fd < 0) return -1;
    log_path = strdup(spec);
    set_fd(fd);
    return 0;
}

int pc__access_log_reopen(char *err, size_t errlen)
{
    int cur = atomic_load(&log_fd);
    if (!log_path || cur < 0) return 0;
    int fd = open_path(log_path, err, errlen);
    if (fd < 0) return -1; /* lines keep going to the file as it was: none is lost */
    int rv = dup2(fd, cur) < 0 ? -1 : 0;
    if (rv < 0) snprintf(err, errlen, "access log %s: %s", log_path, strerror(errno));
    close(fd);
    return rv;
}

void pc__access_log_close(void)
{
    int fd = atomic_exchange(&log_fd, -1);
    if (fd > STDERR_FILENO) close(fd);
    free(log_path);
    log_path = NULL;
}

/* Each line is written straight into the worker's batch buffer (json_out.h), from the request's
 * fields: no object tree, no allocation, no printf. */
#define KEY(g, k) PC_JSON_KEY(g, k) /* k: a literal that needs no escaping */

static void put_str(pc_json *g, const char *v)
{
    if (v)
        pc__json_str(g, v, strlen(v));
    else
        pc__json_null(g);
}

static void put_strn(pc_json *g, const char *v, size_t len)
{
    pc__json_str(g, v, len);
}

static void put_uint(pc_json *g, uint64_t v)
{
    pc__json_uint(g, v);
}

/* The date part is formatted once a second per worker: glibc's gmtime_r takes a process-wide
 * lock (tzset_lock) that every worker would otherwise contend for on every line. */
static void put_time(pc_json *g, pc_worker *w)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (w->log_sec != (long long)tv.tv_sec) {
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        strftime(w->log_stamp, sizeof w->log_stamp, "%Y-%m-%dT%H:%M:%S", &tm);
        w->log_sec = (long long)tv.tv_sec;
    }
    char ts[sizeof w->log_stamp + 8];
    size_t n = strlen(w->log_stamp);
    memcpy(ts, w->log_stamp, n);
    int ms = (int)(tv.tv_usec / 1000);
    ts[n++] = '.';
    ts[n++] = (char)('0' + ms / 100);
    ts[n++] = (char)('0' + ms / 10 % 10);
    ts[n++] = (char)('0' + ms % 10);
    ts[n++] = 'Z';
    pc__json_str(g, ts, n);
}

/* "ip:port" of the client, as a string. */
static void put_client(pc_json *g, const pc_conn_info *ci)
{
    char buf[80], *p = buf + sizeof buf;
    unsigned port = ci->client_port;
    do
        *--p = (char)('0' + port % 10);
    while ((port /= 10));
    *--p = ':';
    size_t iplen = ci->client_ip ? strlen(ci->client_ip) : 0;
    if (iplen > (size_t)(p - buf)) iplen = (size_t)(p - buf);
    p -= iplen;
    if (iplen) memcpy(p, ci->client_ip, iplen);
    pc__json_str(g, p, (size_t)(buf + sizeof buf - p));
}

/* The record of one call, as one JSON object. */
static void format_record(pc_json *g, pc_stream *st)
{
    pc_worker *w = st->worker;
    pc__json_open(g);
    KEY(g, "time");
    put_time(g, w);
    KEY(g, "request_id");
    put_str(g, pc__request_id(&st->rq));
    const pc_conn_info *ci = st->rq.conn ? &st->rq.conn->info : NULL;
    KEY(g, "client");
    ci ? put_client(g, ci) : pc__json_null(g);
    KEY(g, "sni");
    put_str(g, ci ? ci->sni : NULL);
    KEY(g, "alpn");
    put_str(g, ci ? ci->alpn : NULL);
    KEY(g, "tls_version");
    put_str(g, ci ? ci->tls_version : NULL);
    KEY(g, "zone");
    put_str(g, st->rq.zone ? st->rq.zone->name : NULL);
    KEY(g, "authority");
    put_str(g, st->rq.authority ? st->rq.authority : st->rq.host_header);
    KEY(g, "protocol");
    put_str(g, st->web ? "grpc-web" : st->rq.is_grpc ? "grpc" : "http");
    KEY(g, "method");
    put_str(g, st->rq.method);
    KEY(g, "path");
    put_str(g, st->rq.path);
    KEY(g, "user_agent"); /* so a client claiming another's stack can be followed up */
    put_str(g, pc__headers_get(&st->rq.headers, "user-agent"));
    const char *svc, *meth;
    size_t sl, ml;
    bool split = st->rq.is_grpc && pc__grpc_split_path(st->rq.path, &svc, &sl, &meth, &ml) == 0;
    KEY(g, "grpc_service");
    split ? put_strn(g, svc, sl) : pc__json_null(g);
    KEY(g, "grpc_method");
    split ? put_strn(g, meth, ml) : pc__json_null(g);
    KEY(g, "status");
    st->http_status ? put_uint(g, (uint64_t)st->http_status) : pc__json_null(g);
    int gs = pc__stream_grpc_status(st);
    KEY(g, "grpc_status");
    gs >= 0 ? put_uint(g, (uint64_t)gs) : pc__json_null(g);
    KEY(g, "request_bytes");
    put_uint(g, st->req_bytes);
    KEY(g, "response_bytes");
    put_uint(g, st->resp_bytes);
    KEY(g, "request_messages");
    put_uint(g, st->req_msgs);
    KEY(g, "response_messages");
    put_uint(g, st->resp_msgs);
    KEY(g, "duration_ms"); /* microsecond resolution, without float noise */
    pc__json_ms(g, uv_hrtime() - st->start_ns);
    KEY(g, "upstream");
    put_str(g, st->upstream_addr[0] ? st->upstream_addr : NULL);
    KEY(g, "reason");
    put_str(g, st->edge_reason);
    if (st->rq.npub) {
        KEY(g, "plugins"); /* keys are unique: publishing again replaces the value */
        pc__json_open(g);
        for (size_t i = 0; i < st->rq.npub; i++) {
            const pc_published *p = &st->rq.pub[i];
            pc__json_key(g, p->key, strlen(p->key));
            if (p->type == PC_VALUE_INT || p->type == PC_VALUE_NUMBER)
                pc__json_number(g, p->text, strlen(p->text)); /* typed: a number, not "60" */
            else if (p->type == PC_VALUE_BOOL)
                pc__json_bool(g, p->i != 0);
            else
                put_str(g, p->text);
        }
        pc__json_close(g);
    }
    pc__json_close(g);
}

/* Formatted in place at the end of the worker's batch; a line that does not fit the rest of it
 * is formatted again after the batch went out (one that does not fit an empty batch is dropped). */
void pc__access_log_write(pc_stream *st)
{
    int fd = atomic_load(&log_fd);
    if (fd < 0) return;
    pc_worker *w = st->worker;
    for (int attempt = 0; attempt < 2; attempt++) {
        pc_json g;
        pc__json_init(&g, w->logbuf + w->loglen, sizeof w->logbuf - w->loglen - 1);
        format_record(&g, st);
        if (!g.overflow) {
            w->loglen += g.len;
            w->logbuf[w->loglen++] = '\n';
            pc__worker_wake(w);
            return;
        }
        if (w->loglen == 0) return;
        pc__access_log_flush(w);
    }
}

/* One write per batch of whole lines; to a pipe, batches of at most PIPE_BUF bytes, which the
 * kernel keeps whole even with several workers writing. */
void pc__access_log_flush(pc_worker *w)
{
    int fd = atomic_load(&log_fd);
    size_t off = 0;
    bool pipe = atomic_load(&log_pipe);
    while (fd >= 0 && off < w->loglen) {
        size_t n = w->loglen - off;
        if (pipe && n > PIPE_BUF) {
            size_t cut = PIPE_BUF;
            while (cut > 0 && w->logbuf[off + cut - 1] != '\n')
                cut--;
            n = cut ? cut : PIPE_BUF;
        }
        ssize_t wr = write(fd, w->logbuf + off, n);
        if (wr <= 0) break;
        off += (size_t)wr;
    }
    w->loglen = 0;
}
