/* The access log's descriptor is process-wide: workers write whole lines with one write(2) on an
 * O_APPEND descriptor so lines never interleave, and reopening swaps the file under the same
 * descriptor number with dup2(), which is atomic for concurrent writers. */
#include "access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
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
    if (fd < 0)
        snprintf(err, errlen, "access log %s: %s", path, strerror(errno));
    return fd;
}

int pc__access_log_open(const char *spec, char *err, size_t errlen)
{
    pc__access_log_close();
    if (!strcmp(spec, "off"))
        return 0;
    if (!strcmp(spec, "stdout") || !strcmp(spec, "stderr")) {
        set_fd(!strcmp(spec, "stdout") ? STDOUT_FILENO : STDERR_FILENO);
        return 0;
    }
    int fd = open_path(spec, err, errlen);
    if (fd < 0)
        return -1;
    log_path = strdup(spec);
    set_fd(fd);
    return 0;
}

int pc__access_log_reopen(char *err, size_t errlen)
{
    int cur = atomic_load(&log_fd);
    if (!log_path || cur < 0)
        return 0;
    int fd = open_path(log_path, err, errlen);
    if (fd < 0)
        return -1;
    dup2(fd, cur);
    close(fd);
    return 0;
}

void pc__access_log_close(void)
{
    int fd = atomic_exchange(&log_fd, -1);
    if (fd > STDERR_FILENO)
        close(fd);
    free(log_path);
    log_path = NULL;
}

/* Keys are literals, each added once: json-c can skip the lookup and the key copy. */
#define ADD(o, k, v) json_object_object_add_ex(o, k, v, JSON_C_OBJECT_ADD_KEY_IS_NEW | JSON_C_OBJECT_KEY_IS_CONSTANT)

static void add_str(json_object *o, const char *k, const char *v)
{
    ADD(o, k, v ? json_object_new_string(v) : NULL);
}

void pc__access_log_write(pc_stream *st)
{
    int fd = atomic_load(&log_fd);
    if (fd < 0)
        return;
    json_object *o = json_object_new_object();
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    char ts[96];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
    add_str(o, "time", ts);
    add_str(o, "request_id", pc__stream_request_id(st));
    const pc_conn_info *ci = st->conn ? &st->conn->info : NULL;
    char client[80] = "";
    if (ci)
        snprintf(client, sizeof client, "%s:%u", ci->client_ip, ci->client_port);
    add_str(o, "client", ci ? client : NULL);
    add_str(o, "sni", ci ? ci->sni : NULL);
    add_str(o, "alpn", ci ? ci->alpn : NULL);
    add_str(o, "tls_version", ci ? ci->tls_version : NULL);
    add_str(o, "zone", st->zone ? st->zone->name : NULL);
    add_str(o, "authority", st->authority ? st->authority : st->host_header);
    add_str(o, "method", st->method);
    add_str(o, "path", st->path);
    const char *svc, *meth;
    size_t sl, ml;
    if (st->is_grpc && pc__grpc_split_path(st->path, &svc, &sl, &meth, &ml) == 0) {
        ADD(o, "grpc_service", json_object_new_string_len(svc, (int)sl));
        ADD(o, "grpc_method", json_object_new_string_len(meth, (int)ml));
    } else {
        add_str(o, "grpc_service", NULL);
        add_str(o, "grpc_method", NULL);
    }
    ADD(o, "status", st->http_status ? json_object_new_int(st->http_status) : NULL);
    int gs = pc__stream_grpc_status(st);
    ADD(o, "grpc_status", gs >= 0 ? json_object_new_int(gs) : NULL);
    ADD(o, "request_bytes", json_object_new_int64((int64_t)st->req_bytes));
    ADD(o, "response_bytes", json_object_new_int64((int64_t)st->resp_bytes));
    ADD(o, "request_messages", json_object_new_int64(st->req_msgs));
    ADD(o, "response_messages", json_object_new_int64(st->resp_msgs));
    double ms = (double)(uv_hrtime() - st->start_ns) / 1e6;
    char msbuf[32];
    snprintf(msbuf, sizeof msbuf, "%.3f", ms); /* microsecond resolution, without float noise */
    ADD(o, "duration_ms", json_object_new_double_s(ms, msbuf));
    add_str(o, "upstream", st->upstream_addr[0] ? st->upstream_addr : NULL);
    add_str(o, "reason", st->edge_reason);
    if (st->nkv) {
        json_object *p = json_object_new_object();
        for (size_t i = 0; i < st->nkv; i += 2)
            json_object_object_add(p, st->kv[i], json_object_new_string(st->kv[i + 1]));
        ADD(o, "plugins", p);
    }
    size_t len;
    const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    pc_worker *w = st->worker;
    if (w->loglen + len + 1 > sizeof w->logbuf)
        pc__access_log_flush(w);
    if (len + 1 <= sizeof w->logbuf) {
        memcpy(w->logbuf + w->loglen, s, len);
        w->loglen += len;
        w->logbuf[w->loglen++] = '\n';
        pc__worker_wake(w);
    }
    json_object_put(o);
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
        if (wr <= 0)
            break;
        off += (size_t)wr;
    }
    w->loglen = 0;
}
