/* JA3 / JA4 from a client's raw ClientHello records, and the Akamai HTTP/2 fingerprint from its raw frames.
 * Every length read from the wire is checked against what is left before it is used; what is buffered is
 * capped (PC_FP_HELLO_MAX, one header block, a small SETTINGS frame) and freed as soon as the result is
 * known. */
#include "fingerprint.h"

#include <nghttp2/nghttp2.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- bounded reader ---- */

typedef struct rd {
    const uint8_t *p;
    size_t n;
} rd;

static bool rd_u8(rd *r, unsigned *v)
{
    if (r->n < 1) return false;
    *v = r->p[0];
    r->p++;
    r->n--;
    return true;
}

static bool rd_u16(rd *r, unsigned *v)
{
    if (r->n < 2) return false;
    *v = (unsigned)r->p[0] << 8 | r->p[1];
    r->p += 2;
    r->n -= 2;
    return true;
}

static bool rd_take(rd *r, size_t len, rd *sub)
{
    if (r->n < len) return false;
    sub->p = r->p;
    sub->n = len;
    r->p += len;
    r->n -= len;
    return true;
}

/* A u8- or u16-length-prefixed vector. */
static bool rd_vec8(rd *r, rd *sub)
{
    unsigned n;
    return rd_u8(r, &n) && rd_take(r, n, sub);
}

static bool rd_vec16(rd *r, rd *sub)
{
    unsigned n;
    return rd_u16(r, &n) && rd_take(r, n, sub);
}

static unsigned be16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* RFC 8701: 0x0a0a, 0x1a1a, ... 0xfafa. Clients insert them at random, so every fingerprint drops them. */
static bool is_grease(unsigned v)
{
    return (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff);
}

/* ---- string building into a fixed buffer ---- */

typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool full; /* something did not fit: the result must not be used */
} sbuf;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->full) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len) {
        b->full = true;
        b->s[b->len] = '\0';
        return;
    }
    b->len += (size_t)n;
}

static void hex_of(const unsigned char *md, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---- ClientHello ---- */

typedef struct hello {
    unsigned legacy_version;
    uint16_t *ciphers; /* non-GREASE, wire order */
    size_t nciphers;
    uint16_t *exts; /* non-GREASE extension types, wire order */
    size_t nexts;
    rd groups;  /* supported_groups list (u16 each) */
    rd formats; /* ec_point_formats list (u8 each) */
    rd sigalgs; /* signature_algorithms list (u16 each) */
    unsigned best_version;
    bool sni;
    bool alpn;
    rd alpn_first; /* first protocol name of ALPN, possibly empty */
} hello;

/* Extension bodies are read leniently: a malformed one only loses its contribution (OpenSSL rejects such
 * a hello anyway), while the outer structure must be exact or nothing is fingerprinted. */
static void hello_ext(hello *h, unsigned type, rd body, uint32_t *seen)
{
    rd v;
    unsigned x;
    switch (type) {
    case 0x0000:
        h->sni = true;
        break;
    case 0x0010: /* only the first occurrence of each counts: duplicates are a protocol error */
        if (*seen & 1) break;
        *seen |= 1;
        h->alpn = true;
        if (rd_vec16(&body, &v)) rd_vec8(&v, &h->alpn_first);
        break;
    case 0x000a:
        if (!(*seen & 2) && rd_vec16(&body, &h->groups)) h->groups.n &= ~(size_t)1;
        *seen |= 2;
        break;
    case 0x000b:
        if (!(*seen & 4)) rd_vec8(&body, &h->formats);
        *seen |= 4;
        break;
    case 0x000d:
        if (!(*seen & 8) && rd_vec16(&body, &h->sigalgs)) h->sigalgs.n &= ~(size_t)1;
        *seen |= 8;
        break;
    case 0x002b:
        if (*seen & 16) break;
        *seen |= 16;
        if (rd_vec8(&body, &v))
            while (rd_u16(&v, &x))
                if (!is_grease(x) && x > h->best_version) h->best_version = x;
        break;
    default:
        break;
    }
}

static int hello_parse(const uint8_t *body, size_t len, hello *h)
{
    memset(h, 0, sizeof *h);
    rd r = {body, len}, skip, cs, exts;
    unsigned x;
    if (!rd_u16(&r, &h->legacy_version) || !rd_take(&r, 32, &skip) || !rd_vec8(&r, &skip) || skip.n > 32 ||
        !rd_vec16(&r, &cs) || (cs.n & 1) || !rd_vec8(&r, &skip))
        return -1;
    exts.n = 0;
    if (r.n > 0 && (!rd_vec16(&r, &exts) || r.n != 0))
        return -1; /* extensions are optional, but nothing may follow them */
    h->ciphers = malloc((cs.n / 2 + 1) * sizeof *h->ciphers);
    h->exts = malloc((exts.n / 4 + 1) * sizeof *h->exts);
    if (!h->ciphers || !h->exts) return -1;
    while (rd_u16(&cs, &x))
        if (!is_grease(x)) h->ciphers[h->nciphers++] = (uint16_t)x;
    uint32_t seen = 0;
    while (exts.n > 0) {
        rd eb;
        if (!rd_u16(&exts, &x) || !rd_vec16(&exts, &eb)) return -1;
        if (is_grease(x)) continue;
        h->exts[h->nexts++] = (uint16_t)x;
        hello_ext(h, x, eb, &seen);
    }
    return 0;
}

static int cmp_u16(const void *a, const void *b)
{
    return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

/* Fetched once for the process: EVP_md5()/EVP_sha256() would look the algorithm up again on every digest,
 * which costs more than the rest of the fingerprint. NULL when a provider refuses (MD5 under FIPS). */
static EVP_MD *md_md5, *md_sha256;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void md_init(void)
{
    md_md5 = EVP_MD_fetch(NULL, "MD5", NULL);
    md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static int digest(const EVP_MD *md, const char *s, size_t len, unsigned char *out)
{
    unsigned olen = 0;
    return md && EVP_Digest(s, len, out, &olen, md, NULL) == 1 ? (int)olen : -1;
}

/* "t13d1516h2": transport, version, SNI or not, counts, ALPN's first and last character. */
static void ja4_a(const hello *h, char out[11])
{
    unsigned v = h->best_version ? h->best_version : h->legacy_version;
    const char *ver = "00";
    switch (v) {
    case 0x0304:
        ver = "13";
        break;
    case 0x0303:
        ver = "12";
        break;
    case 0x0302:
        ver = "11";
        break;
    case 0x0301:
        ver = "10";
        break;
    case 0x0300:
        ver = "s3";
        break;
    case 0x0200: /* fall through: both spellings of SSL 2.0 appear in the spec's history */
    case 0x0002:
        ver = "s2";
        break;
    case 0x0100:
        ver = "s1";
        break;
    case 0xfeff:
        ver = "d1";
        break;
    case 0xfefd:
        ver = "d2";
        break;
    case 0xfefc:
        ver = "d3";
        break;
    default:
        break;
    }
    char alpn[3] = "00";
    const rd *a = &h->alpn_first;
    if (h->alpn && a->n > 0) {
        unsigned char f = a->p[0], l = a->p[a->n - 1];
#define ALNUM(c) (((c) >= '0' && (c) <= '9') || ((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
        if (ALNUM(f) && ALNUM(l)) {
            alpn[0] = (char)f;
            alpn[1] = (char)l;
        } else { /* the spec's rule for binary ALPN values: first hex digit of the first byte, last of the
                    last */
            static const char digits[] = "0123456789abcdef";
            alpn[0] = digits[f >> 4];
            alpn[1] = digits[l & 15];
        }
#undef ALNUM
    }
    snprintf(out, 11, "t%s%c%02zu%02zu%s", ver, h->sni ? 'd' : 'i',
             h->nciphers > 99 ? (size_t)99 : h->nciphers, h->nexts > 99 ? (size_t)99 : h->nexts, alpn);
}

/* First 12 hex digits of SHA-256 of the text, or twelve zeros when there is no text (the spec's rule). */
static int trunc_sha256(const char *s, size_t len, char out[13])
{
    if (len == 0) {
        memcpy(out, "000000000000", 13);
        return 0;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    if (digest(md_sha256, s, len, md) != 32) return -1;
    hex_of(md, 6, hex);
    memcpy(out, hex, 13);
    return 0;
}

static int fp_compute(const hello *h, pc_fp_tls *out)
{
    size_t ngroups = h->groups.n / 2, nsig = h->sigalgs.n / 2;
    /* Each u16 prints as at most 5 digits (JA3) or 4 hex digits (JA4), plus a separator. */
    size_t cap = 6 * (h->nciphers + h->nexts + ngroups + nsig) + 4 * h->formats.n + 32;
    pthread_once(&md_once, md_init);
    char *s = malloc(cap);
    uint16_t *sorted = malloc((h->nciphers + h->nexts + 1) * sizeof *sorted);
    int rv = -1;
    if (!s || !sorted) goto out;

    /* JA3: SSLVersion,Ciphers,Extensions,EllipticCurves,PointFormats in decimal, wire order. */
    sbuf b = {s, 0, cap, false};
    s[0] = '\0';
    sb_printf(&b, "%u,", h->legacy_version);
    for (size_t i = 0; i < h->nciphers; i++)
        sb_printf(&b, "%s%u", i ? "-" : "", h->ciphers[i]);
    sb_printf(&b, ",");
    for (size_t i = 0; i < h->nexts; i++)
        sb_printf(&b, "%s%u", i ? "-" : "", h->exts[i]);
    sb_printf(&b, ",");
    bool first = true;
    for (size_t i = 0; i < ngroups; i++) {
        unsigned g = be16(h->groups.p + 2 * i);
        if (!is_grease(g)) {
            sb_printf(&b, "%s%u", first ? "" : "-", g);
            first = false;
        }
    }
    sb_printf(&b, ",");
    for (size_t i = 0; i < h->formats.n; i++)
        sb_printf(&b, "%s%u", i ? "-" : "", h->formats.p[i]);
    if (b.full) goto out;
    unsigned char md[EVP_MAX_MD_SIZE];
    /* MD5 is unavailable under a FIPS-only provider: then the JA3 hash is simply absent. */
    if (digest(md_md5, s, b.len, md) == 16)
        hex_of(md, 16, out->ja3_hash);
    else
        out->ja3_hash[0] = '\0';
    if (b.len < sizeof out->ja3)
        memcpy(out->ja3, s, b.len + 1);
    else
        out->ja3[0] = '\0';

    /* JA4_b: ciphers as 4-digit hex, sorted. Sorting the numbers sorts their fixed-width hex forms. */
    char a[11], hb[13], hc[13];
    ja4_a(h, a);
    memcpy(sorted, h->ciphers, h->nciphers * sizeof *sorted);
    qsort(sorted, h->nciphers, sizeof *sorted, cmp_u16);
    b = (sbuf){s, 0, cap, false};
    s[0] = '\0';
    for (size_t i = 0; i < h->nciphers; i++)
        sb_printf(&b, "%s%04x", i ? "," : "", sorted[i]);
    if (b.full || trunc_sha256(s, b.len, hb) < 0) goto out;

    /* JA4_c: extensions sorted without SNI and ALPN (already in JA4_a), then "_" and the signature
     * algorithms in wire order; no "_" when there are none. */
    size_t n = 0;
    for (size_t i = 0; i < h->nexts; i++)
        if (h->exts[i] != 0x0000 && h->exts[i] != 0x0010) sorted[n++] = h->exts[i];
    qsort(sorted, n, sizeof *sorted, cmp_u16);
    b = (sbuf){s, 0, cap, false};
    s[0] = '\0';
    for (size_t i = 0; i < n; i++)
        sb_printf(&b, "%s%04x", i ? "," : "", sorted[i]);
    if (n > 0) {
        first = true;
        for (size_t i = 0; i < nsig; i++) {
            unsigned sa = be16(h->sigalgs.p + 2 * i);
            if (is_grease(sa)) continue;
            sb_printf(&b, "%s%04x", first ? "_" : ",", sa);
            first = false;
        }
    }
    if (b.full || trunc_sha256(s, b.len, hc) < 0) goto out;
    snprintf(out->ja4, sizeof out->ja4, "%s_%s_%s", a, hb, hc);
    rv = 0;
out:
    free(s);
    free(sorted);
    return rv;
}

int pc__fp_client_hello(const uint8_t *body, size_t len, pc_fp_tls *out)
{
    hello h;
    int rv = hello_parse(body, len, &h);
    if (rv == 0) rv = fp_compute(&h, out);
    free(h.ciphers);
    free(h.exts);
    if (rv < 0) memset(out, 0, sizeof *out);
    return rv;
}

/* ---- ClientHello capture from raw records ---- */

struct pc_fp_hello {
    int state;
    uint8_t rhdr[5]; /* record header being read */
    size_t rhave;
    size_t rleft;    /* payload bytes left in the current record */
    uint8_t hhdr[4]; /* handshake message header */
    size_t hhave;
    uint8_t *msg; /* ClientHello body, allocated once its length is known */
    size_t need, have;
    pc_fp_tls result;
};

pc_fp_hello *pc__fp_hello_new(void)
{
    return calloc(1, sizeof(pc_fp_hello));
}

void pc__fp_hello_free(pc_fp_hello *h)
{
    if (!h) return;
    free(h->msg);
    free(h);
}

static int hello_end(pc_fp_hello *h, int state)
{
    h->state = state;
    free(h->msg);
    h->msg = NULL;
    return state;
}

/* Handshake bytes from inside records; a ClientHello may span several records. */
static int hello_bytes(pc_fp_hello *h, const uint8_t *p, size_t n)
{
    while (n > 0 && h->hhave < 4) {
        h->hhdr[h->hhave++] = *p++;
        n--;
        if (h->hhave < 4) continue;
        h->need = (size_t)h->hhdr[1] << 16 | (size_t)h->hhdr[2] << 8 | h->hhdr[3];
        /* 38: version, random and the three length bytes of the shortest possible ClientHello. */
        if (h->hhdr[0] != 1 || h->need < 38 || h->need > PC_FP_HELLO_MAX) return hello_end(h, PC_FP_FAIL);
        h->msg = malloc(h->need);
        if (!h->msg) return hello_end(h, PC_FP_FAIL);
    }
    size_t take = h->need - h->have < n ? h->need - h->have : n;
    if (take) {
        memcpy(h->msg + h->have, p, take);
        h->have += take;
    }
    if (h->hhave < 4 || h->have < h->need) return PC_FP_MORE;
    int rv = pc__fp_client_hello(h->msg, h->need, &h->result);
    return hello_end(h, rv == 0 ? PC_FP_DONE : PC_FP_FAIL);
}

int pc__fp_hello_feed(pc_fp_hello *h, const uint8_t *data, size_t len)
{
    while (len > 0 && h->state == PC_FP_MORE) {
        if (h->rleft == 0) {
            h->rhdr[h->rhave++] = *data++;
            len--;
            if (h->rhave < 5) continue;
            h->rhave = 0;
            h->rleft = be16(h->rhdr + 3);
            /* Only handshake records (22) of TLS (major 3), at most 2^14 plaintext bytes and never empty. */
            if (h->rhdr[0] != 22 || h->rhdr[1] != 3 || h->rleft == 0 || h->rleft > 16384)
                return hello_end(h, PC_FP_FAIL);
            continue;
        }
        size_t n = h->rleft < len ? h->rleft : len;
        h->rleft -= n;
        int rv = hello_bytes(h, data, n);
        data += n;
        len -= n;
        if (rv != PC_FP_MORE) return rv;
    }
    return h->state;
}

const pc_fp_tls *pc__fp_hello_result(const pc_fp_hello *h)
{
    return h && h->state == PC_FP_DONE ? &h->result : NULL;
}

/* ---- the capture on an SSL object ---- */

/* One ex_data slot for the process, registered on first use; it is never written again afterwards. */
static int ssl_index = -1;
static pthread_once_t ssl_index_once = PTHREAD_ONCE_INIT;

static void ssl_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    pc__fp_hello_free(ptr);
}

static void ssl_index_init(void)
{
    ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, ssl_ex_free);
}

void pc__fp_ssl_feed(SSL *ssl, const uint8_t *data, size_t len)
{
    pthread_once(&ssl_index_once, ssl_index_init);
    if (!ssl || ssl_index < 0) return;
    pc_fp_hello *h = SSL_get_ex_data(ssl, ssl_index);
    if (!h) {
        h = pc__fp_hello_new();
        if (!h || !SSL_set_ex_data(ssl, ssl_index, h)) {
            pc__fp_hello_free(h);
            return;
        }
    }
    pc__fp_hello_feed(h, data, len);
}

int pc__fp_ssl_take(SSL *ssl, pc_fp_tls *out)
{
    pthread_once(&ssl_index_once, ssl_index_init);
    if (!ssl || ssl_index < 0) return -1;
    pc_fp_hello *h = SSL_get_ex_data(ssl, ssl_index);
    const pc_fp_tls *res = pc__fp_hello_result(h);
    int rv = -1;
    if (res) {
        *out = *res;
        rv = 0;
    }
    if (h) {
        SSL_set_ex_data(ssl, ssl_index, NULL);
        pc__fp_hello_free(h);
    }
    return rv;
}

/* ---- HTTP/2 preface and first frames ---- */

#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24
/* Real clients send one to eight frames before their first HEADERS; more is not a client worth a fingerprint.
 */
#define H2_MAX_FRAMES 64
/* SETTINGS_MAX_FRAME_SIZE's initial value: the client cannot know a larger one yet. */
#define H2_MAX_FRAME 16384
/* The compressed first header block, HEADERS plus CONTINUATION. */
#define H2_MAX_BLOCK (16 * 1024)
/* A SETTINGS frame of up to 100 entries; real ones have two to ten. */
#define H2_MAX_SETTINGS 600
/* Pseudo-headers listed; a request has four, five with :protocol. */
#define H2_MAX_PSEUDO 8

enum { F_DATA = 0, F_HEADERS = 1, F_PRIORITY = 2, F_SETTINGS = 4, F_WINDOW_UPDATE = 8, F_CONTINUATION = 9 };
enum { FL_ACK = 0x1, FL_END_HEADERS = 0x4, FL_PADDED = 0x8, FL_PRIORITY = 0x20 };

struct pc_fp_h2 {
    int state;
    size_t preface_have;
    uint8_t fh[9]; /* frame header being read */
    size_t fh_have;
    bool in_frame;
    unsigned type, flags;
    uint32_t sid;
    size_t flen, fhave;
    size_t frames;
    uint8_t small[H2_MAX_SETTINGS]; /* payload of SETTINGS, WINDOW_UPDATE or PRIORITY */
    uint8_t *block;                 /* header block: HEADERS payload, then CONTINUATION payloads */
    size_t block_len;
    uint32_t block_sid;
    bool in_block; /* HEADERS seen without END_HEADERS */
    bool settings_seen, wu_seen;
    char settings[PC_FP_H2_MAX];
    size_t settings_len;
    char wu[16];
    char prio[PC_FP_H2_MAX];
    size_t prio_len;
    char result[PC_FP_H2_MAX];
};

pc_fp_h2 *pc__fp_h2_new(void)
{
    return calloc(1, sizeof(pc_fp_h2));
}

void pc__fp_h2_free(pc_fp_h2 *p)
{
    if (!p) return;
    free(p->block);
    free(p);
}

static int h2_end(pc_fp_h2 *p, int state)
{
    p->state = state;
    free(p->block);
    p->block = NULL;
    return state;
}

static int h2_settings(pc_fp_h2 *p)
{
    if (p->flen % 6) return PC_FP_FAIL;
    /* Only the first SETTINGS counts: it is the one in the preface, sent before the peer's could matter. */
    if (p->settings_seen) return PC_FP_MORE;
    p->settings_seen = true;
    sbuf b = {p->settings, 0, sizeof p->settings, false};
    p->settings[0] = '\0';
    for (size_t i = 0; i < p->flen; i += 6) {
        const uint8_t *e = p->small + i;
        unsigned long v =
            (unsigned long)e[2] << 24 | (unsigned long)e[3] << 16 | (unsigned long)e[4] << 8 | e[5];
        sb_printf(&b, "%s%u:%lu", i ? ";" : "", be16(e), v);
    }
    p->settings_len = b.len;
    return b.full ? PC_FP_FAIL : PC_FP_MORE;
}

static int h2_priority(pc_fp_h2 *p)
{
    if (p->flen != 5) return PC_FP_FAIL;
    const uint8_t *e = p->small;
    unsigned long dep =
        (unsigned long)(e[0] & 0x7f) << 24 | (unsigned long)e[1] << 16 | (unsigned long)e[2] << 8 | e[3];
    sbuf b = {p->prio, p->prio_len, sizeof p->prio, false};
    /* The weight on the wire is one less than the weight (RFC 9113 5.3.2); the format shows the weight. */
    sb_printf(&b, "%s%lu:%u:%lu:%u", p->prio_len ? "," : "", (unsigned long)p->sid, e[0] >> 7, dep,
              e[4] + 1u);
    p->prio_len = b.len;
    return b.full ? PC_FP_FAIL : PC_FP_MORE;
}

/* HPACK-decode the first header block with a private inflater (the session's own table is not touched) and
 * note the order of the pseudo-headers; they come first, so decoding stops at the first regular field. */
static int h2_headers_done(pc_fp_h2 *p)
{
    nghttp2_hd_inflater *inf;
    if (nghttp2_hd_inflate_new(&inf) != 0) return h2_end(p, PC_FP_FAIL);
    char order[2 * H2_MAX_PSEUDO + 1] = "";
    size_t olen = 0, npseudo = 0;
    const uint8_t *in = p->block;
    size_t left = p->block_len;
    bool ok = true;
    for (;;) {
        nghttp2_nv nv;
        int flags = 0;
        ssize_t n = nghttp2_hd_inflate_hd2(inf, &nv, &flags, in, left, 1);
        if (n < 0) {
            ok = false;
            break;
        }
        in += n;
        left -= (size_t)n;
        if (flags & NGHTTP2_HD_INFLATE_EMIT) {
            if (nv.namelen == 0 || nv.name[0] != ':') break;
            unsigned char c = nv.namelen > 1 ? nv.name[1] : 0;
            if (c < 'a' || c > 'z' || npseudo == H2_MAX_PSEUDO) {
                ok = false; /* not a request a fingerprint should describe */
                break;
            }
            if (npseudo++) order[olen++] = ',';
            order[olen++] = (char)c;
            order[olen] = '\0';
        }
        if (flags & NGHTTP2_HD_INFLATE_FINAL) break;
        if (!(flags & NGHTTP2_HD_INFLATE_EMIT) && left == 0) break;
    }
    nghttp2_hd_inflate_del(inf);
    if (!ok || npseudo == 0) return h2_end(p, PC_FP_FAIL);
    int n = snprintf(p->result, sizeof p->result, "%s|%s|%s|%s", p->settings, p->wu_seen ? p->wu : "00",
                     p->prio_len ? p->prio : "0", order);
    if (n < 0 || (size_t)n >= sizeof p->result) return h2_end(p, PC_FP_FAIL);
    return h2_end(p, PC_FP_DONE);
}

/* A whole HEADERS payload is in the block: cut its pad length, priority fields and padding off. */
static int h2_headers_frame(pc_fp_h2 *p)
{
    size_t off = 0, pad = 0, len = p->flen;
    const uint8_t *f = p->block;
    if (p->flags & FL_PADDED) {
        if (len < 1) return h2_end(p, PC_FP_FAIL);
        pad = f[0];
        off = 1;
    }
    if (p->flags & FL_PRIORITY) off += 5;
    if (off + pad > len) return h2_end(p, PC_FP_FAIL);
    memmove(p->block, p->block + off, len - off - pad);
    p->block_len = len - off - pad;
    if (p->flags & FL_END_HEADERS) return h2_headers_done(p);
    p->in_block = true;
    return PC_FP_MORE;
}

/* A frame header is complete: check it and decide where its payload goes. */
static int h2_frame_start(pc_fp_h2 *p)
{
    p->flen = (size_t)p->fh[0] << 16 | (size_t)p->fh[1] << 8 | p->fh[2];
    p->type = p->fh[3];
    p->flags = p->fh[4];
    p->sid =
        (uint32_t)(p->fh[5] & 0x7f) << 24 | (uint32_t)p->fh[6] << 16 | (uint32_t)p->fh[7] << 8 | p->fh[8];
    p->fhave = 0;
    if (++p->frames > H2_MAX_FRAMES || p->flen > H2_MAX_FRAME) return h2_end(p, PC_FP_FAIL);
    /* A header block is HEADERS then CONTINUATION frames of the same stream, nothing in between. */
    if (p->in_block != (p->type == F_CONTINUATION) || (p->in_block && p->sid != p->block_sid))
        return h2_end(p, PC_FP_FAIL);
    switch (p->type) {
    case F_SETTINGS:
        if (p->sid != 0 || (!(p->flags & FL_ACK) && p->flen > H2_MAX_SETTINGS)) return h2_end(p, PC_FP_FAIL);
        break;
    case F_WINDOW_UPDATE:
    case F_PRIORITY:
        if (p->flen > 5) return h2_end(p, PC_FP_FAIL);
        break;
    case F_HEADERS:
        if (p->sid == 0) return h2_end(p, PC_FP_FAIL);
        p->block_sid = p->sid;
        /* fall through */
    case F_CONTINUATION:
        if (p->block_len + p->flen > H2_MAX_BLOCK) return h2_end(p, PC_FP_FAIL);
        if (!p->block && !(p->block = malloc(H2_MAX_BLOCK))) return h2_end(p, PC_FP_FAIL);
        break;
    default:
        break;
    }
    p->in_frame = true;
    return PC_FP_MORE;
}

static int h2_frame_end(pc_fp_h2 *p)
{
    p->in_frame = false;
    p->fh_have = 0;
    switch (p->type) {
    case F_SETTINGS:
        if (p->flags & FL_ACK) return PC_FP_MORE;
        return h2_settings(p) == PC_FP_FAIL ? h2_end(p, PC_FP_FAIL) : PC_FP_MORE;
    case F_WINDOW_UPDATE:
        if (p->flen != 4) return h2_end(p, PC_FP_FAIL);
        /* The connection-level one: stream windows are not part of the format. */
        if (p->sid == 0 && !p->wu_seen) {
            const uint8_t *e = p->small;
            unsigned long inc = (unsigned long)(e[0] & 0x7f) << 24 | (unsigned long)e[1] << 16 |
                                (unsigned long)e[2] << 8 | e[3];
            snprintf(p->wu, sizeof p->wu, "%lu", inc);
            p->wu_seen = true;
        }
        return PC_FP_MORE;
    case F_PRIORITY:
        return h2_priority(p) == PC_FP_FAIL ? h2_end(p, PC_FP_FAIL) : PC_FP_MORE;
    case F_HEADERS:
        return h2_headers_frame(p);
    case F_CONTINUATION:
        p->block_len += p->flen;
        if (!(p->flags & FL_END_HEADERS)) return PC_FP_MORE;
        p->in_block = false;
        return h2_headers_done(p);
    default:
        return PC_FP_MORE;
    }
}

int pc__fp_h2_feed(pc_fp_h2 *p, const uint8_t *data, size_t len)
{
    while (len > 0 && p->state == PC_FP_MORE) {
        if (p->preface_have < H2_PREFACE_LEN) {
            if (*data != (uint8_t)H2_PREFACE[p->preface_have]) return h2_end(p, PC_FP_FAIL);
            p->preface_have++;
            data++;
            len--;
            continue;
        }
        if (!p->in_frame) {
            p->fh[p->fh_have++] = *data++;
            len--;
            if (p->fh_have == 9 && h2_frame_start(p) != PC_FP_MORE) return p->state;
            if (!p->in_frame || p->flen > 0) continue;
            if (h2_frame_end(p) != PC_FP_MORE) return p->state;
            continue;
        }
        size_t n = p->flen - p->fhave < len ? p->flen - p->fhave : len;
        if (p->type == F_SETTINGS || p->type == F_WINDOW_UPDATE || p->type == F_PRIORITY) {
            if (p->fhave + n <= sizeof p->small) /* a SETTINGS ACK may be larger: it is only skipped */
                memcpy(p->small + p->fhave, data, n);
        } else if (p->type == F_HEADERS || p->type == F_CONTINUATION) {
            memcpy(p->block + p->block_len + p->fhave, data, n);
        }
        p->fhave += n;
        data += n;
        len -= n;
        if (p->fhave == p->flen && h2_frame_end(p) != PC_FP_MORE) return p->state;
    }
    return p->state;
}

const char *pc__fp_h2_result(const pc_fp_h2 *p)
{
    return p && p->state == PC_FP_DONE ? p->result : NULL;
}
