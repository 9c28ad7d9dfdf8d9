/* A minimal h2c (prior knowledge) origin for scripts/bench: single-threaded, epoll, libnghttp2.
 *
 *   bench-origin PORT
 *
 * Listens on 127.0.0.1:PORT. Every request, whatever its :path or method, is answered once the
 * request has ended with 200, content-type application/grpc, one gRPC message (5-byte prefix +
 * 16 bytes) and the trailers grpc-status: 0. The request body is read and discarded. Prints
 * "listening" on stdout once the socket accepts connections. Stops on SIGTERM or SIGINT.
 *
 * Except for :path /bench.Bench/Chat, a bidirectional stream: its response headers go out with
 * the request's, then one such message for each gRPC message of the request as it arrives, and the
 * trailers grpc-status: 0 once the request has ended and every reply is out.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* Field 1 (bytes) holding "bench-response", as a protobuf message: 0x0a, length 14, text. */
static const uint8_t BODY[] = {0,   0,   0,   0,   16,  0x0a, 14,  'b', 'e', 'n', 'c',
                               'h', '-', 'r', 'e', 's', 'p',  'o', 'n', 's', 'e'};

typedef struct conn {
    int fd;
    int want_out; /* EPOLLOUT registered */
    nghttp2_session *session;
    uint8_t *out;
    size_t out_len, out_off, out_cap;
} conn;

static int epfd;
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

#define NV(n, v)                                                                                             \
    {                                                                                                        \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1,                                        \
            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE                                     \
    }

/* A /bench.Bench/Chat stream. */
typedef struct chat {
    uint8_t hdr[5], have; /* prefix of the request message being read */
    uint32_t skip;        /* request message bytes still to skip */
    size_t replies;       /* replies owed */
    size_t part;          /* bytes of the next reply already written */
    int ended, deferred;
} chat;

static const char CHAT_PATH[] = "/bench.Bench/Chat";

static ssize_t read_chat(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *user)
{
    (void)user;
    chat *ch = src->ptr;
    size_t n = 0;
    while (ch->replies > 0 && n < len) {
        size_t c = sizeof BODY - ch->part < len - n ? sizeof BODY - ch->part : len - n;
        memcpy(buf + n, BODY + ch->part, c);
        n += c;
        ch->part += c;
        if (ch->part == sizeof BODY) {
            ch->part = 0;
            ch->replies--;
        }
    }
    if (ch->replies == 0 && ch->ended) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        static const nghttp2_nv trailers[] = {{(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, 0}};
        if (nghttp2_submit_trailer(s, stream_id, trailers, 1) != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
        return (ssize_t)n;
    }
    if (n == 0) {
        ch->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static void chat_wake(nghttp2_session *s, int32_t stream_id, chat *ch)
{
    if (ch->deferred && (ch->replies > 0 || ch->ended)) {
        ch->deferred = 0;
        nghttp2_session_resume_data(s, stream_id);
    }
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
    (void)flags;
    (void)user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    if (namelen == 5 && !memcmp(name, ":path", 5) && valuelen == sizeof CHAT_PATH - 1 &&
        !memcmp(value, CHAT_PATH, valuelen) && !nghttp2_session_get_stream_user_data(s, f->hd.stream_id)) {
        chat *ch = calloc(1, sizeof *ch);
        if (!ch) return NGHTTP2_ERR_CALLBACK_FAILURE;
        nghttp2_session_set_stream_user_data(s, f->hd.stream_id, ch);
    }
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
                   void *user)
{
    (void)flags;
    (void)user;
    chat *ch = nghttp2_session_get_stream_user_data(s, stream_id);
    if (!ch) return 0;
    while (len > 0) {
        if (ch->skip > 0) {
            size_t c = len < ch->skip ? len : ch->skip;
            ch->skip -= (uint32_t)c;
            data += c;
            len -= c;
            if (ch->skip == 0) ch->replies++;
            continue;
        }
        ch->hdr[ch->have++] = *data++;
        len--;
        if (ch->have == 5) {
            ch->have = 0;
            ch->skip = (uint32_t)ch->hdr[1] << 24 | (uint32_t)ch->hdr[2] << 16 | (uint32_t)ch->hdr[3] << 8 |
                       ch->hdr[4];
            if (ch->skip == 0) ch->replies++;
        }
    }
    chat_wake(s, stream_id, ch);
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *user)
{
    (void)error_code;
    (void)user;
    free(nghttp2_session_get_stream_user_data(s, stream_id));
    return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *user)
{
    (void)src;
    (void)user;
    if (len < sizeof BODY) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* never with 16 KiB */
    memcpy(buf, BODY, sizeof BODY);
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    static const nghttp2_nv trailers[] = {NV("grpc-status", "0")};
    if (nghttp2_submit_trailer(s, stream_id, trailers, 1) != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
    return sizeof BODY;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    (void)user;
    static const nghttp2_nv headers[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
    chat *ch = f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA
                   ? nghttp2_session_get_stream_user_data(s, f->hd.stream_id)
                   : NULL;
    if (ch) {
        if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
            nghttp2_data_provider prd = {.source = {.ptr = ch}, .read_callback = read_chat};
            if (nghttp2_submit_response(s, f->hd.stream_id, headers, 2, &prd) != 0)
                nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_INTERNAL_ERROR);
        }
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            ch->ended = 1;
            chat_wake(s, f->hd.stream_id, ch);
        }
        return 0;
    }
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    nghttp2_data_provider prd = {.source = {.ptr = NULL}, .read_callback = read_body};
    if (nghttp2_submit_response(s, f->hd.stream_id, headers, 2, &prd) != 0)
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_INTERNAL_ERROR);
    return 0;
}

static void conn_close(conn *c)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    nghttp2_session_del(c->session);
    free(c->out);
    free(c);
}

/* Serialize pending frames and write them; returns -1 when the connection should close. */
static int conn_flush(conn *c)
{
    for (;;) {
        if (c->out_off == c->out_len) {
            c->out_off = c->out_len = 0;
            for (;;) { /* gather up to ~64 KiB of frames into one write */
                const uint8_t *data;
                ssize_t n = nghttp2_session_mem_send(c->session, &data);
                if (n < 0) return -1;
                if (n == 0) break;
                if (c->out_len + (size_t)n > c->out_cap) {
                    size_t cap = c->out_cap ? c->out_cap : 65536;
                    while (cap < c->out_len + (size_t)n)
                        cap *= 2;
                    uint8_t *p = realloc(c->out, cap);
                    if (!p) return -1;
                    c->out = p;
                    c->out_cap = cap;
                }
                memcpy(c->out + c->out_len, data, (size_t)n);
                c->out_len += (size_t)n;
                if (c->out_len >= 65536) break;
            }
            if (c->out_len == 0) break;
        }
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            return -1;
        }
        c->out_off += (size_t)w;
    }
    int want = c->out_off < c->out_len;
    if (want != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want;
    }
    if (!want && !nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)) return -1;
    return 0;
}

static int conn_read(conn *c)
{
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n == 0) return -1;
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return 0;
            return -1;
        }
        if (nghttp2_session_mem_recv(c->session, buf, (size_t)n) < 0) return -1;
        if ((size_t)n < sizeof buf) return 0;
    }
}

static nghttp2_session_callbacks *callbacks;

static void accept_all(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn *c = calloc(1, sizeof *c);
        if (!c || nghttp2_session_server_new(&c->session, callbacks, c) != 0) {
            free(c);
            close(fd);
            continue;
        }
        c->fd = fd;
        nghttp2_settings_entry iv[] = {
            {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 10000},
            {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
        };
        nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 2);
        nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, 16 << 20);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0 || conn_flush(c) != 0) conn_close(c);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2 || atoi(argv[1]) <= 0 || atoi(argv[1]) > 65535) {
        fprintf(stderr, "usage: bench-origin PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)atoi(argv[1])),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 1024) != 0) {
        perror("bench-origin: listen");
        return 1;
    }

    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
    printf("listening\n");
    fflush(stdout);

    struct epoll_event evs[256];
    while (!stop) {
        int n = epoll_wait(epfd, evs, 256, 1000);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (!c) {
                accept_all(lfd);
                continue;
            }
            int bad = (evs[i].events & (EPOLLERR | EPOLLHUP)) && !(evs[i].events & EPOLLIN);
            if (!bad && (evs[i].events & EPOLLIN)) bad = conn_read(c) != 0;
            if (!bad) bad = conn_flush(c) != 0;
            if (bad) conn_close(c);
        }
    }
    close(lfd);
    close(epfd);
    nghttp2_session_callbacks_del(callbacks);
    return 0;
}
