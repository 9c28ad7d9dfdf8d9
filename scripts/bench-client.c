/* A gRPC load generator for scripts/bench-waf: single-threaded, epoll, OpenSSL (TLS, ALPN h2) and
 * libnghttp2. Unlike h2load, which sends one fixed body, every call carries different field values,
 * drawn from a seeded PRNG over a benign vocabulary (names, e-mail addresses, streets, products,
 * sentences, numbers as text), so that nothing can be fast merely because it saw a value before.
 *
 *   bench-client [options] PORT
 *     -h HOST      address to connect to (127.0.0.1)
 *     -c N         connections (20)
 *     -m N         concurrent calls per connection (10)
 *     -n N         calls in all (1000)
 *     -d SECONDS   bound on the run: no call is started after it, and the run stops there (60)
 *     -M MODE      unary   POST /bench.Bench/Unary, one message, 2 string fields (about 56 bytes)
 *                  stream  POST /bench.Bench/Chat, -k messages of 5 string fields each, responses
 *                          read while sending
 *                  chat    as stream, but one message in flight per call: each is sent when the
 *                          answer to the one before has arrived (a conversation)
 *                  attack  as unary, but field 2 is an SQL injection (varied per call too)
 *     -k N         messages per stream call (1000)
 *     -s SEED      PRNG seed (1)
 *     -x N         print N generated messages (as text) and exit, without connecting
 *
 * A call that was refused with REFUSED_STREAM (never processed, e.g. after a GOAWAY) is made
 * again; a connection that closes is opened again while calls remain. Prints a summary, the last
 * line of which is machine-readable:
 *   summary calls=... ok=... nonzero=... gs7=... gs8=... resets=... nostatus=... unfinished=...
 *           msgs_sent=... msgs_recv=... wall_s=... p50_ms=... p99_ms=... statuses=0:N,7:N,...
 * (ok: grpc-status 0; nonzero: any other grpc-status; resets: streams reset or lost with their
 * connection, without a grpc-status; nostatus: ended without grpc-status, e.g. an HTTP 403.)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MODE_UNARY, MODE_STREAM, MODE_ATTACK, MODE_CHAT };
enum { ST_CONNECTING, ST_HANDSHAKE, ST_READY, ST_DEAD };
#define MAX_STATUS 17 /* grpc-status 0-16; 17 counts anything else */
#define MSG_CAP 1024

struct conn;

typedef struct call {
    struct conn *conn;
    struct call *prev, *next; /* the connection's calls in flight */
    double t0;
    int http_status, grpc_status;
    uint32_t msgs_left;       /* stream: messages still to generate */
    uint32_t nsent, nrecv;    /* chat: messages sent, answers received */
    size_t off, len;          /* unsent part of buf */
    uint8_t rhdr[5], rhave;   /* response message prefix being read */
    uint32_t rneed;           /* response message bytes still to skip */
    uint8_t buf[MSG_CAP + 5]; /* the current request message, with its 5-byte prefix */
} call;

typedef struct conn {
    int fd, state, goaway, want_out;
    SSL *ssl;
    nghttp2_session *s;
    call *calls;
    int active;
    uint8_t *out;
    size_t out_len, out_off, out_cap;
} conn;

/* options */
static const char *host = "127.0.0.1";
static const char *sni = "127.0.0.1"; /* SNI: -a NAME, else the address */
static int port, nconns = 20, per_conn = 10, mode = MODE_UNARY;
static long ncalls = 1000, msgs_per_call = 1000;
static double duration = 60;
static uint64_t rng;

/* state and results */
static int epfd;
static SSL_CTX *ctx;
static nghttp2_session_callbacks *cbs;
static struct sockaddr_storage addr;
static socklen_t addrlen;
static char authority[300];
static long started, finished, retried, reconnects, conn_errors;
static long status_count[MAX_STATUS + 1], resets, nostatus, http_non200;
static long long msgs_sent, msgs_recv, msg_bytes;
static double *lat;
static long nlat;
static double t_start, t_last;
static int stop_starting;
static volatile sig_atomic_t interrupted;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- values ----------------------------------------------------------------------------------------- */

static uint64_t next(void) /* splitmix64 */
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static unsigned below(unsigned n)
{
    return (unsigned)(next() % n);
}
#define PICK(a) (a[below(sizeof a / sizeof a[0])])

static const char *const FIRST[] = {
    "maria", "james", "aiko",  "olivia", "noah",  "fatima", "lucas", "emma", "mateo", "sofia", "liam",
    "chloe", "arjun", "hana",  "david",  "elena", "omar",   "grace", "ivan", "julia", "kenji", "laura",
    "nadia", "nina",  "pedro", "rosa",   "sam",   "tara",   "vic",   "yara", "ben",   "clara", "diego",
    "eva",   "felix", "gina",  "hugo",   "iris",  "jonas",  "kira",  "leo",  "mila",  "nora",  "oscar"};
static const char *const LAST[] = {
    "lopez",     "smith",    "tanaka",  "nguyen",   "garcia", "muller",  "rossi",  "kim",
    "silva",     "brown",    "ivanova", "khan",     "dubois", "jensen",  "novak",  "costa",
    "santos",    "wilson",   "moreau",  "fischer",  "ward",   "patel",   "okafor", "berg",
    "lindqvist", "romano",   "haddad",  "kowalski", "reyes",  "schmidt", "meyer",  "larsen",
    "da costa",  "fontaine", "yamada",  "cohen",    "murphy", "walsh",   "horvat", "petrov"};
static const char *const DOMAIN[] = {"example.com",  "example.org",  "example.net",
                                     "shop.example", "mail.example", "example.de"};
static const char *const ADJ[] = {"blue",  "large",   "small",  "organic", "wireless",   "vintage",
                                  "red",   "compact", "green",  "premium", "classic",    "light",
                                  "heavy", "soft",    "bright", "folding", "waterproof", "recycled"};
static const char *const MATERIAL[] = {"ceramic", "cotton", "steel", "wooden", "leather",
                                       "glass",   "bamboo", "wool",  "linen",  "copper"};
static const char *const NOUN[] = {"mug",    "backpack",   "lamp",     "notebook",     "kettle",    "chair",
                                   "scarf",  "headphones", "bottle",   "desk",         "blanket",   "jacket",
                                   "pillow", "teapot",     "umbrella", "bicycle bell", "plant pot", "rug"};
static const char *const UNIT[] = {"ml", "cm", "g", "kg", "pack", "litre"};
static const char *const CITY[] = {"porto",  "lyon",  "osaka",  "denver", "leeds", "graz",
                                   "austin", "malmo", "bergen", "turin",  "ghent", "cork"};
static const char *const STREET[] = {"oak street",  "maple avenue", "river road",    "station lane",
                                     "park drive",  "hill street",  "market square", "church lane",
                                     "harbour way", "mill road"};
static const char *const DAY[] = {"monday", "tuesday",  "wednesday", "thursday",
                                  "friday", "saturday", "sunday"};
static const char *const THANKS[] = {"thanks a lot", "many thanks", "thank you", "cheers", "kind regards"};
static const char *const SQLI[] = {"%u' OR '%u'='%u' --",
                                   "x' UNION SELECT password FROM users WHERE id=%u --",
                                   "%u; DROP TABLE orders --",
                                   "%u' or 1=1 --",
                                   "admin' OR 1=1 -- %u",
                                   "%u' AND SLEEP(5) --",
                                   "' OR 'x%u'='x%u",
                                   "%u' UNION ALL SELECT NULL,NULL --",
                                   "%u) OR (1=1",
                                   "%u' AND 1=CONVERT(int, @@version) --"};

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n > 0) b->len += (size_t)n < b->cap - b->len ? (size_t)n : b->cap - b->len - 1;
}

static void v_name(sbuf *b)
{
    put(b, "%s %s", PICK(FIRST), PICK(LAST));
}
static void v_email(sbuf *b)
{
    const char *l = PICK(LAST);
    put(b, "%s.%s%u@%s", PICK(FIRST), strchr(l, ' ') ? "costa" : l, below(10000), PICK(DOMAIN));
}
static void v_address(sbuf *b)
{
    put(b, "%u %s, %s", 1 + below(400), PICK(STREET), PICK(CITY));
}
static void v_product(sbuf *b)
{
    put(b, "%s %s %s, %u %s", PICK(ADJ), PICK(MATERIAL), PICK(NOUN), 1 + below(900), PICK(UNIT));
}
static void v_number(sbuf *b)
{
    switch (below(4)) {
    case 0:
        put(b, "%u.%02u", below(500), below(100));
        break;
    case 1:
        put(b, "+44 20 %04u %04u", below(10000), below(10000));
        break;
    case 2:
        put(b, "%u", below(1000000));
        break;
    default:
        put(b, "%u-%02u-%02u", 2020 + below(6), 1 + below(12), 1 + below(28));
        break;
    }
}
static void v_sentence(sbuf *b)
{
    switch (below(8)) {
    case 0:
        put(b, "%s for the quick delivery", PICK(THANKS));
        break;
    case 1:
        put(b, "please call me back after %u pm on %s", 1 + below(8), PICK(DAY));
        break;
    case 2:
        put(b, "the %s %s arrived with a small scratch", PICK(ADJ), PICK(NOUN));
        break;
    case 3:
        put(b, "please send invoice %u", 10000 + below(90000));
        break;
    case 4:
        put(b, "my new address is %u %s in %s", 1 + below(400), PICK(STREET), PICK(CITY));
        break;
    case 5:
        put(b, "parcel waiting in %s since %s", PICK(CITY), PICK(DAY));
        break;
    case 6:
        put(b, "is the %s %s available in size %u", PICK(MATERIAL), PICK(NOUN), 30 + below(20));
        break;
    default:
        put(b, "meeting at %u:%02u in room %u", 8 + below(10), 5 * below(12), below(500));
    }
}
static void v_short(sbuf *b) /* field 1 of a unary call */
{
    switch (below(3)) {
    case 0:
        v_email(b);
        break;
    case 1:
        v_address(b);
        break;
    default:
        put(b, "%s %s %u", PICK(FIRST), PICK(LAST), below(100000));
        break;
    }
}
static void v_attack(sbuf *b)
{
    unsigned n = below(100000);
    put(b, PICK(SQLI), n, n, n);
}

/* One protobuf string field into m at *len (values are short: their length fits one varint byte). */
static void field(uint8_t *m, size_t *len, unsigned num, void (*gen)(sbuf *))
{
    char v[128];
    sbuf b = {v, 0, sizeof v};
    v[0] = 0;
    gen(&b);
    m[(*len)++] = (uint8_t)(num << 3 | 2);
    m[(*len)++] = (uint8_t)b.len;
    memcpy(m + *len, v, b.len);
    *len += b.len;
}

/* The next request message, with its gRPC prefix, into buf; returns its length. */
static size_t make_message(uint8_t *buf)
{
    uint8_t *m = buf + 5;
    size_t len = 0;
    switch (mode) {
    case MODE_UNARY:
        field(m, &len, 1, v_short);
        field(m, &len, 2, below(2) ? v_sentence : v_product);
        break;
    case MODE_ATTACK:
        field(m, &len, 1, v_short);
        field(m, &len, 2, v_attack);
        break;
    default:
        field(m, &len, 1, v_name);
        field(m, &len, 2, v_email);
        field(m, &len, 3, v_product);
        field(m, &len, 4, v_sentence);
        field(m, &len, 5, v_number);
    }
    buf[0] = 0;
    buf[1] = (uint8_t)(len >> 24);
    buf[2] = (uint8_t)(len >> 16);
    buf[3] = (uint8_t)(len >> 8);
    buf[4] = (uint8_t)len;
    msgs_sent++;
    msg_bytes += (long long)len;
    return len + 5;
}

/* --- calls ------------------------------------------------------------------------------------------ */

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *out, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *user)
{
    (void)s;
    (void)id;
    (void)user;
    call *k = src->ptr;
    size_t n = 0;
    while (n < len) {
        if (k->off == k->len) {
            if (k->msgs_left == 0) break;
            if (mode == MODE_CHAT && k->nsent > k->nrecv) { /* wait for the answer */
                if (n == 0) return NGHTTP2_ERR_DEFERRED;
                break;
            }
            k->nsent++;
            k->msgs_left--;
            k->off = 0;
            k->len = make_message(k->buf);
        }
        size_t c = k->len - k->off < len - n ? k->len - k->off : len - n;
        memcpy(out + n, k->buf + k->off, c);
        k->off += c;
        n += c;
    }
    if (k->off == k->len && k->msgs_left == 0) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

#define NV(n, v, vl)                                                                                         \
    {                                                                                                        \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NO_COPY_NAME                    \
    }

static int start_call(conn *c)
{
    call *k = calloc(1, sizeof *k);
    if (!k) return -1;
    k->conn = c;
    k->grpc_status = -1;
    k->msgs_left = mode == MODE_STREAM || mode == MODE_CHAT ? (uint32_t)msgs_per_call : 1;
    const char *path = mode == MODE_STREAM || mode == MODE_CHAT ? "/bench.Bench/Chat" : "/bench.Bench/Unary";
    static const char ua[] = "grpc-python/1.62.1 grpc-c/39.0.0 (linux; chttp2)";
    nghttp2_nv nva[] = {
        NV(":method", "POST", 4),
        NV(":scheme", "https", 5),
        NV(":path", path, strlen(path)),
        NV(":authority", authority, strlen(authority)),
        NV("te", "trailers", 8),
        NV("content-type", "application/grpc", 16),
        NV("user-agent", ua, sizeof ua - 1),
        NV("grpc-accept-encoding", "identity,deflate,gzip", 21),
    };
    nghttp2_data_provider prd = {.source = {.ptr = k}, .read_callback = read_body};
    k->t0 = now();
    int32_t id = nghttp2_submit_request(c->s, NULL, nva, sizeof nva / sizeof nva[0], &prd, k);
    if (id < 0) {
        free(k);
        return -1;
    }
    k->next = c->calls;
    if (c->calls) c->calls->prev = k;
    c->calls = k;
    c->active++;
    started++;
    return 0;
}

static void unlink_call(call *k)
{
    conn *c = k->conn;
    if (k->prev)
        k->prev->next = k->next;
    else
        c->calls = k->next;
    if (k->next) k->next->prev = k->prev;
    c->active--;
}

static void refill(conn *c)
{
    while (c->state == ST_READY && !c->goaway && !stop_starting && c->active < per_conn && started < ncalls)
        if (start_call(c) != 0) break;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
    (void)flags;
    (void)user;
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    call *k = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!k) return 0;
    char v[16];
    size_t n = valuelen < sizeof v - 1 ? valuelen : sizeof v - 1;
    memcpy(v, value, n);
    v[n] = 0;
    if (namelen == 7 && !memcmp(name, ":status", 7))
        k->http_status = atoi(v);
    else if (namelen == 11 && !memcmp(name, "grpc-status", 11))
        k->grpc_status = atoi(v);
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *user)
{
    (void)flags;
    (void)user;
    call *k = nghttp2_session_get_stream_user_data(s, id);
    if (!k) return 0;
    while (len > 0) { /* count response messages by their 5-byte prefixes */
        if (k->rneed > 0) {
            size_t c = len < k->rneed ? len : k->rneed;
            k->rneed -= (uint32_t)c;
            data += c;
            len -= c;
            continue;
        }
        k->rhdr[k->rhave++] = *data++;
        len--;
        if (k->rhave == 5) {
            k->rhave = 0;
            k->rneed = (uint32_t)k->rhdr[1] << 24 | (uint32_t)k->rhdr[2] << 16 | (uint32_t)k->rhdr[3] << 8 |
                       k->rhdr[4];
            msgs_recv++;
            k->nrecv++;
            if (mode == MODE_CHAT) nghttp2_session_resume_data(s, id);
        }
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *user)
{
    (void)user;
    call *k = nghttp2_session_get_stream_user_data(s, id);
    if (!k) return 0;
    double t = now();
    if (k->grpc_status >= 0) {
        status_count[k->grpc_status < MAX_STATUS ? k->grpc_status : MAX_STATUS]++;
        lat[nlat++] = t - k->t0;
    } else if (error_code == NGHTTP2_REFUSED_STREAM) {
        retried++; /* never processed: made again */
        started--;
    } else if (error_code != NGHTTP2_NO_ERROR) {
        resets++;
    } else {
        nostatus++;
        lat[nlat++] = t - k->t0;
    }
    if (k->grpc_status < 0 && error_code != NGHTTP2_REFUSED_STREAM) {
        if (k->http_status != 200) http_non200++;
    }
    if (error_code != NGHTTP2_REFUSED_STREAM || k->grpc_status >= 0) {
        finished++;
        t_last = t;
    }
    nghttp2_session_set_stream_user_data(s, id, NULL);
    unlink_call(k);
    free(k);
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
    (void)s;
    conn *c = user;
    if (f->hd.type == NGHTTP2_GOAWAY) c->goaway = 1;
    return 0;
}

/* --- connections ------------------------------------------------------------------------------------ */

static void conn_events(conn *c, int want_out)
{
    if (want_out == c->want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want_out;
}

static int conn_open(conn *c)
{
    memset(c, 0, sizeof *c);
    c->state = ST_CONNECTING;
    c->fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&addr, addrlen) != 0 && errno != EINPROGRESS) {
        close(c->fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    c->want_out = 1;
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    return 0;
}

static void conn_close(conn *c)
{
    while (c->calls) { /* lost with the connection */
        call *k = c->calls;
        unlink_call(k);
        free(k);
        resets++;
        finished++;
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl) SSL_free(c->ssl);
    if (c->s) nghttp2_session_del(c->s);
    close(c->fd);
    free(c->out);
    c->ssl = NULL;
    c->s = NULL;
    c->out = NULL;
    c->state = ST_DEAD;
}

static int conn_ready(conn *c)
{
    const unsigned char *alpn = NULL;
    unsigned alpnlen = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpnlen);
    if (alpnlen != 2 || memcmp(alpn, "h2", 2) != 0) {
        fprintf(stderr, "bench-client: the server did not select h2 by ALPN\n");
        return -1;
    }
    if (nghttp2_session_client_new(&c->s, cbs, c) != 0) return -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
    };
    nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, iv, 2);
    nghttp2_session_set_local_window_size(c->s, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    c->state = ST_READY;
    refill(c);
    return 0;
}

/* Serialize pending frames and write them; -1 when the connection should close. */
static int conn_flush(conn *c)
{
    for (;;) {
        if (c->out_off == c->out_len) {
            c->out_off = c->out_len = 0;
            for (;;) {
                const uint8_t *data;
                ssize_t n = nghttp2_session_mem_send(c->s, &data);
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
        ERR_clear_error();
        int w = SSL_write(c->ssl, c->out + c->out_off, (int)(c->out_len - c->out_off));
        if (w <= 0) {
            int e = SSL_get_error(c->ssl, w);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
            return -1;
        }
        c->out_off += (size_t)w;
    }
    conn_events(c, c->out_off < c->out_len);
    if (c->out_off == c->out_len && !nghttp2_session_want_read(c->s) && !nghttp2_session_want_write(c->s))
        return -1;
    return 0;
}

static int conn_read(conn *c)
{
    uint8_t buf[65536];
    for (;;) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, buf, sizeof buf);
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
            return -1;
        }
        if (nghttp2_session_mem_recv(c->s, buf, (size_t)n) < 0) return -1;
    }
}

static void conn_io(conn *c, unsigned events)
{
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            if (conn_errors++ < 3) fprintf(stderr, "bench-client: connect: %s\n", strerror(err));
            conn_close(c);
            return;
        }
        if (!(events & (EPOLLOUT | EPOLLIN))) return;
        c->ssl = SSL_new(ctx);
        SSL_set_fd(c->ssl, c->fd);
        struct in6_addr tmp;
        if (inet_pton(AF_INET, host, &tmp) != 1 && inet_pton(AF_INET6, host, &tmp) != 1)
            SSL_set_tlsext_host_name(c->ssl, sni);
        SSL_set_connect_state(c->ssl);
        c->state = ST_HANDSHAKE;
    }
    if (c->state == ST_HANDSHAKE) {
        ERR_clear_error();
        int r = SSL_do_handshake(c->ssl);
        if (r == 1) {
            if (conn_ready(c) != 0) {
                conn_errors++;
                conn_close(c);
                return;
            }
        } else {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                conn_events(c, e == SSL_ERROR_WANT_WRITE);
                return;
            }
            char msg[256];
            ERR_error_string_n(ERR_get_error(), msg, sizeof msg);
            if (conn_errors++ < 3) fprintf(stderr, "bench-client: TLS handshake failed: %s\n", msg);
            conn_close(c);
            return;
        }
    }
    (void)events;
    int bad = conn_read(c) != 0;
    if (!bad) refill(c);
    if (!bad) bad = conn_flush(c) != 0;
    if (!bad && c->goaway && c->active == 0) bad = 1; /* drained: replaced by a new connection */
    if (bad) {
        if (!c->goaway || c->active > 0) conn_errors++;
        conn_close(c);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double p)
{
    if (nlat == 0) return 0;
    long i = (long)(p * (double)nlat);
    if (i >= nlat) i = nlat - 1;
    return lat[i] * 1e3;
}

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: bench-client [-h HOST] [-a AUTHORITY_NAME] [-c CONNS] [-m STREAMS] [-n CALLS] [-d SECONDS]\n"
        "                    [-M unary|stream|chat|attack] [-k MESSAGES] [-s SEED] [-x N] PORT\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long examples = 0;
    unsigned long long seed = 1;
    int opt;
    const char *name = NULL; /* -a: the :authority and SNI, when not the address connected to */
    while ((opt = getopt(argc, argv, "a:h:c:m:n:d:M:k:s:x:")) != -1) {
        switch (opt) {
        case 'a':
            name = optarg;
            break;
        case 'h':
            host = sni = optarg;
            break;
        case 'c':
            nconns = atoi(optarg);
            break;
        case 'm':
            per_conn = atoi(optarg);
            break;
        case 'n':
            ncalls = atol(optarg);
            break;
        case 'd':
            duration = atof(optarg);
            break;
        case 'k':
            msgs_per_call = atol(optarg);
            break;
        case 's':
            seed = strtoull(optarg, NULL, 10);
            break;
        case 'x':
            examples = atol(optarg);
            break;
        case 'M':
            if (!strcmp(optarg, "unary"))
                mode = MODE_UNARY;
            else if (!strcmp(optarg, "stream"))
                mode = MODE_STREAM;
            else if (!strcmp(optarg, "attack"))
                mode = MODE_ATTACK;
            else if (!strcmp(optarg, "chat"))
                mode = MODE_CHAT;
            else
                usage();
            break;
        default:
            usage();
        }
    }
    rng = seed * 0x2545f4914f6cdd1dULL + 1;
    if (examples > 0) { /* the values, for reading: one message per line, fields separated by " | " */
        uint8_t buf[MSG_CAP + 5];
        for (long i = 0; i < examples; i++) {
            size_t len = make_message(buf), p = 5;
            while (p < len) {
                unsigned num = buf[p] >> 3, l = buf[p + 1];
                printf("%s%u=%.*s", p > 5 ? " | " : "", num, (int)l, (const char *)buf + p + 2);
                p += 2 + l;
            }
            printf("  (%zu bytes)\n", len - 5);
        }
        return 0;
    }
    if (optind != argc - 1 || nconns < 1 || per_conn < 1 || ncalls < 1 || duration <= 0 ||
        msgs_per_call < 1 || msgs_per_call > 100000000)
        usage();
    port = atoi(argv[optind]);
    if (port <= 0 || port > 65535) usage();

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    if (getaddrinfo(host, portstr, &hints, &ai) != 0) {
        fprintf(stderr, "bench-client: cannot resolve %s\n", host);
        return 1;
    }
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    snprintf(authority, sizeof authority, "%s:%d", name ? name : host, port);
    if (name) sni = name;

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) return 1;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2", 3);

    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);

    lat = malloc(sizeof *lat * (size_t)ncalls);
    conn *conns = calloc((size_t)nconns, sizeof *conns);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!lat || !conns || epfd < 0) return 1;

    t_start = t_last = now();
    double deadline = t_start + duration;
    for (int i = 0; i < nconns; i++)
        if (conn_open(&conns[i]) != 0) {
            perror("bench-client: connect");
            return 1;
        }
    struct epoll_event evs[256];
    while (!interrupted) {
        int n = epoll_wait(epfd, evs, 256, 50);
        for (int i = 0; i < n; i++)
            if (((conn *)evs[i].data.ptr)->state != ST_DEAD) conn_io(evs[i].data.ptr, evs[i].events);
        if (now() >= deadline) {
            stop_starting = 1;
            break;
        }
        int live = 0;
        for (int i = 0; i < nconns; i++) {
            conn *c = &conns[i];
            if (c->state == ST_DEAD && started < ncalls && !stop_starting) {
                if (conn_errors > 10L * nconns) {
                    stop_starting = 1; /* the server keeps failing: give up */
                } else if (conn_open(c) == 0) {
                    reconnects++;
                }
            }
            if (c->state != ST_DEAD) live++;
        }
        if (finished >= ncalls || (live == 0 && (stop_starting || started >= ncalls)) ||
            (stop_starting && finished >= started))
            break;
    }
    long unfinished = 0;
    for (int i = 0; i < nconns; i++) {
        for (call *k = conns[i].calls; k; k = k->next)
            unfinished++;
        if (conns[i].state != ST_DEAD) {
            long r = resets, f = finished;
            conn_close(&conns[i]);
            resets = r; /* those calls are unfinished, not reset */
            finished = f;
        }
    }

    double wall = (finished > 0 ? t_last : now()) - t_start;
    qsort(lat, (size_t)nlat, sizeof *lat, cmp_double);
    long nonzero = 0;
    char statuses[512] = "";
    size_t sl = 0;
    for (int i = 0; i <= MAX_STATUS; i++) {
        if (i > 0) nonzero += status_count[i];
        if (status_count[i] && sl < sizeof statuses)
            sl += (size_t)snprintf(statuses + sl, sizeof statuses - sl, "%s%s%d:%ld", sl ? "," : "",
                                   i == MAX_STATUS ? ">" : "", i == MAX_STATUS ? 16 : i, status_count[i]);
    }
    const char *mname = mode == MODE_STREAM   ? "stream"
                        : mode == MODE_CHAT   ? "chat"
                        : mode == MODE_ATTACK ? "attack"
                                              : "unary";
    printf("mode %s, %d connections x %d streams, %s:%d\n", mname, nconns, per_conn, host, port);
    printf("calls completed:    %ld of %ld (grpc-status 0: %ld, other grpc-status: %ld, resets: %ld, "
           "no grpc-status: %ld, unfinished: %ld)\n",
           finished, ncalls, status_count[0], nonzero, resets, nostatus, unfinished);
    printf("grpc-status counts: %s\n", sl ? statuses : "-");
    printf("made again:         %ld (REFUSED_STREAM), %ld reconnections, %ld connection errors\n", retried,
           reconnects, conn_errors);
    printf("messages:           %lld sent (%.1f bytes each on average), %lld received\n", msgs_sent,
           msgs_sent ? (double)msg_bytes / (double)msgs_sent : 0.0, msgs_recv);
    printf("wall time:          %.3f s, %.0f calls/s, %.0f messages/s\n", wall,
           wall > 0 ? finished / wall : 0.0, wall > 0 ? (double)msgs_sent / wall : 0.0);
    printf("latency:            p50 %.2f ms, p99 %.2f ms\n", pct(0.50), pct(0.99));
    printf("summary calls=%ld ok=%ld nonzero=%ld gs7=%ld gs8=%ld resets=%ld nostatus=%ld unfinished=%ld "
           "http_non200=%ld retried=%ld msgs_sent=%lld msgs_recv=%lld wall_s=%.3f p50_ms=%.3f p99_ms=%.3f "
           "statuses=%s\n",
           finished, status_count[0], nonzero, status_count[7], status_count[8], resets, nostatus, unfinished,
           http_non200, retried, msgs_sent, msgs_recv, wall, pct(0.50), pct(0.99), sl ? statuses : "-");
    nghttp2_session_callbacks_del(cbs);
    SSL_CTX_free(ctx);
    free(conns);
    free(lat);
    close(epfd);
    return finished == 0 && conn_errors > 0 ? 1 : 0;
}
