/* gRPC-Web <-> gRPC translation for one stream, and CORS for the browsers that make those calls.
 * The request is rewritten before the chain runs, so every plugin sees a native gRPC call; the
 * response is re-encoded as the client takes it, through the stream's own data provider, so flow
 * control and the bounded queues work as for any call. */
#include "grpc_web.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "grpc_status.h"
#include "h2_server.h"
#include "log.h"
#include "metrics.h"
#include "stream.h"

struct pc_grpc_web {
    bool text;       /* application/grpc-web-text: base64 both ways */
    char ctype[40];  /* the content type answered with */
    uint8_t quad[4]; /* request base64 carried over a chunk boundary */
    size_t nquad;    /* how many of quad */
    uint8_t *dec;    /* decoded request bytes of the current chunk */
    size_t dec_cap;
    uint8_t *out; /* encoded response bytes the client has not taken yet */
    size_t out_len, out_pos, out_cap;
    bool eof; /* the trailer frame is in out: the end follows it */
};

pc_grpc_web *pc__grpc_web_new(bool text)
{
    pc_grpc_web *w = calloc(1, sizeof *w);
    if (w) w->text = text;
    return w;
}

int pc__grpc_web_content_type(const char *v, bool *text)
{
    static const char p[] = "application/grpc-web";
    size_t pl = sizeof p - 1;
    if (!v || strncasecmp(v, p, pl) != 0) return 0;
    const char *rest = v + pl;
    *text = false;
    if (!strncasecmp(rest, "-text", 5)) {
        *text = true;
        rest += 5;
    }
    return *rest == '\0' || *rest == '+' || *rest == ';';
}

/* ---- CORS ---- */

static bool origin_allowed(const pc_cors_conf *c, const char *origin)
{
    for (size_t i = 0; i < c->norigins; i++)
        if (!strcmp(c->origins[i], "*") || !strcasecmp(c->origins[i], origin)) return true;
    return false;
}

/* The request headers a browser may send on a gRPC-Web call besides the CORS-safe ones. */
static const char web_request_headers[] = "content-type, x-grpc-web, x-user-agent, grpc-timeout, "
                                          "grpc-encoding, grpc-accept-encoding, authorization";

/* The answer headers that tell the browser the page may read the answer; on the edge's own answers
 * too, through the request's extra response headers. */
static int allow_origin(pc_request *r, const pc_cors_conf *c, const char *origin)
{
    char expose[512];
    snprintf(expose, sizeof expose, "grpc-status, grpc-message, grpc-status-details-bin%s%s",
             c->expose_headers ? ", " : "", c->expose_headers ? c->expose_headers : "");
    if (pc__headers_add_str(&r->extra_resp, "access-control-allow-origin", origin) < 0 ||
        pc__headers_add_str(&r->extra_resp, "access-control-expose-headers", expose) < 0 ||
        pc__headers_add_str(&r->extra_resp, "vary", "origin") < 0)
        return -1;
    if (c->allow_credentials &&
        pc__headers_add_str(&r->extra_resp, "access-control-allow-credentials", "true") < 0)
        return -1;
    return 0;
}

static int preflight(pc_stream *st, const pc_cors_conf *c, const char *origin)
{
    pc_request *r = &st->rq;
    if (!origin || !origin_allowed(c, origin)) {
        char msg[320];
        snprintf(msg, sizeof msg, "CORS: origin \"%.256s\" is not allowed for zone %s", origin ? origin : "",
                 r->zone->name);
        pc__stream_fail(st, PC_GRPC_PERMISSION_DENIED, 403, "cors_denied", msg);
        return 1;
    }
    char allow[512], age[16];
    snprintf(allow, sizeof allow, "%s%s%s", web_request_headers, c->allow_headers ? ", " : "",
             c->allow_headers ? c->allow_headers : "");
    snprintf(age, sizeof age, "%u", c->max_age_s);
    if (allow_origin(r, c, origin) < 0 ||
        pc__headers_add_str(&r->extra_resp, "access-control-allow-methods", "POST, OPTIONS") < 0 ||
        pc__headers_add_str(&r->extra_resp, "access-control-allow-headers", allow) < 0 ||
        pc__headers_add_str(&r->extra_resp, "access-control-max-age", age) < 0) {
        pc__stream_fail(st, PC_GRPC_RESOURCE_EXHAUSTED, 503, "out_of_memory", "out of memory");
        return 1;
    }
    pc__stream_fail(st, PC_GRPC_OK, 200, "cors_preflight", "");
    return 1;
}

/* ---- the request ---- */

int pc__grpc_web_detect(pc_stream *st)
{
    pc_request *r = &st->rq;
    bool text;
    if (!pc__grpc_web_content_type(r->content_type, &text)) return 0;
    pc_grpc_web *w = pc__grpc_web_new(text);
    if (!w) {
        pc__stream_fail(st, PC_GRPC_RESOURCE_EXHAUSTED, 503, "out_of_memory", "out of memory");
        return 1;
    }
    const char *sub = r->content_type + strlen("application/grpc-web") + (text ? 5 : 0);
    bool proto = !strncasecmp(sub, "+proto", 6);
    snprintf(w->ctype, sizeof w->ctype, "%s%s", text ? "application/grpc-web-text" : "application/grpc-web",
             proto ? "+proto" : "");
    st->web = w;
    /* Native gRPC towards the origin: the plugins see exactly what a gRPC client would have sent. The
     * body length changes in -text mode, so no content-length goes on. From here on the edge's own
     * answers are gRPC-Web too, whatever refuses the call. */
    if (pc__request_header_set(r, "content-type", proto ? "application/grpc+proto" : "application/grpc") <
            0 ||
        pc__request_header_set(r, "te", "trailers") < 0 ||
        pc__request_header_remove(r, "content-length") < 0) {
        pc__stream_fail(st, PC_GRPC_RESOURCE_EXHAUSTED, 503, "out_of_memory", "out of memory");
        return 1;
    }
    r->content_type = pc__headers_get(&r->headers, "content-type");
    r->is_grpc = true;
    return 0;
}

int pc__grpc_web_admit(pc_stream *st)
{
    pc_request *r = &st->rq;
    const pc_zone_conf *z = r->zone;
    const char *origin = pc__headers_get(&r->headers, "origin");
    if (!st->web) {
        if (z->cors.on && r->method && !strcmp(r->method, "OPTIONS") &&
            pc__headers_find(&r->headers, "access-control-request-method"))
            return preflight(st, &z->cors, origin);
        return 0;
    }
    if (!z->grpc_web) {
        char msg[320];
        snprintf(msg, sizeof msg, "gRPC-Web is disabled for zone %s", z->name);
        pc__stream_fail(st, PC_GRPC_UNIMPLEMENTED, 415, "grpc_web_disabled", msg);
        return 1;
    }
    pc__metrics_grpc_web(st->worker->metrics, z->name);
    if (origin && z->cors.on) {
        if (!origin_allowed(&z->cors, origin)) {
            char msg[320];
            snprintf(msg, sizeof msg, "CORS: origin \"%.256s\" is not allowed for zone %s", origin, z->name);
            pc__stream_fail(st, PC_GRPC_PERMISSION_DENIED, 403, "cors_denied", msg);
            return 1;
        }
        if (allow_origin(r, &z->cors, origin) < 0) {
            pc__stream_fail(st, PC_GRPC_RESOURCE_EXHAUSTED, 503, "out_of_memory", "out of memory");
            return 1;
        }
    }
    return 0;
}

/* One base64 quad; '=' only as the last one or two characters. Returns the bytes decoded, or -1. */
static int decode_quad(const uint8_t q[4], uint8_t *out, bool *padded)
{
    int pad = q[3] == '=' ? (q[2] == '=' ? 2 : 1) : 0;
    if (q[0] == '=' || q[1] == '=' || (q[2] == '=' && q[3] != '=')) return -1;
    unsigned char in[4] = {q[0], q[1], pad == 2 ? 'A' : q[2], pad ? 'A' : q[3]};
    unsigned char tmp[4];
    if (EVP_DecodeBlock(tmp, in, 4) != 3) return -1;
    memcpy(out, tmp, (size_t)(3 - pad));
    *padded = pad > 0;
    return 3 - pad;
}

int pc__grpc_web_request_data(pc_grpc_web *w, const uint8_t **data, size_t *len, char *err, size_t errlen)
{
    if (!w->text) return 0;
    const uint8_t *in = *data;
    size_t n = *len, i = 0, o = 0;
    size_t need = (n + w->nquad) / 4 * 3 + 3;
    if (need > w->dec_cap) {
        uint8_t *d = realloc(w->dec, need);
        if (!d) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        w->dec = d;
        w->dec_cap = need;
    }
    /* Padding may end any chunk the client encoded on its own, so quads are decoded one by one
     * around a '='; runs without one go to OpenSSL whole. */
    while (i < n) {
        if (w->nquad || n - i < 4) {
            w->quad[w->nquad++] = in[i++];
            if (w->nquad < 4) continue;
            w->nquad = 0;
            bool padded = false;
            int d = decode_quad(w->quad, w->dec + o, &padded);
            if (d < 0) goto bad;
            o += (size_t)d;
            continue;
        }
        size_t run = 0;
        while (i + run + 4 <= n && !memchr(in + i + run, '=', 4))
            run += 4;
        if (run) {
            int d = EVP_DecodeBlock(w->dec + o, in + i, (int)run);
            if (d != (int)(run / 4 * 3)) goto bad;
            o += (size_t)d;
            i += run;
            continue;
        }
        bool padded = false;
        int d = decode_quad(in + i, w->dec + o, &padded);
        if (d < 0) goto bad;
        o += (size_t)d;
        i += 4;
    }
    *data = w->dec;
    *len = o;
    return 0;
bad:
    snprintf(err, errlen, "gRPC-Web text request: invalid base64");
    return -1;
}

int pc__grpc_web_request_end(pc_grpc_web *w, char *err, size_t errlen)
{
    if (w->text && w->nquad) {
        snprintf(err, errlen, "gRPC-Web text request: base64 cut short (%zu characters over)", w->nquad);
        return -1;
    }
    return 0;
}

/* ---- the response ---- */

static bool name_is(const nghttp2_nv *nv, const char *name)
{
    return nv->namelen == strlen(name) && !memcmp(nv->name, name, nv->namelen);
}

/* What a Trailers-Only answer carries that belongs in the trailer frame. */
static bool is_trailer_field(const nghttp2_nv *nv)
{
    return nv->namelen > 5 && !memcmp(nv->name, "grpc-", 5) && !name_is(nv, "grpc-encoding") &&
           !name_is(nv, "grpc-accept-encoding");
}

int pc__grpc_web_submit_response(pc_stream *st, const nghttp2_nv *nva, size_t n, bool has_body)
{
    pc_grpc_web *w = st->web;
    nghttp2_nv *out = malloc((n + 1) * sizeof *out);
    if (!out) return NGHTTP2_ERR_NOMEM;
    size_t k = 0;
    bool typed = false;
    if (!has_body) pc__headers_free(&st->trailers);
    for (size_t i = 0; i < n; i++) {
        if (name_is(&nva[i], "content-type")) {
            out[k] = nva[i];
            out[k].value = (uint8_t *)w->ctype;
            out[k++].valuelen = strlen(w->ctype);
            typed = true;
        } else if (name_is(&nva[i], "content-length")) {
            continue; /* the body is re-framed (and in -text mode re-encoded) */
        } else if (!has_body && is_trailer_field(&nva[i])) {
            pc__headers_add(&st->trailers, nva[i].name, nva[i].namelen, nva[i].value, nva[i].valuelen);
        } else {
            out[k++] = nva[i];
        }
    }
    if (!typed)
        out[k++] = (nghttp2_nv){(uint8_t *)"content-type", (uint8_t *)w->ctype, 12, strlen(w->ctype),
                                NGHTTP2_NV_FLAG_NONE};
    /* The body always carries the trailers: browsers read no HTTP trailers. */
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = pc__grpc_web_read_response};
    int rv = nghttp2_submit_response(st->client->sess, st->sid, out, k, &prd);
    free(out);
    return rv;
}

static int out_reserve(pc_grpc_web *w, size_t more)
{
    if (w->out_pos == w->out_len) w->out_pos = w->out_len = 0;
    if (w->out_len + more <= w->out_cap) return 0;
    size_t cap = w->out_cap ? w->out_cap : 1024;
    while (cap < w->out_len + more)
        cap *= 2;
    uint8_t *p = realloc(w->out, cap);
    if (!p) return -1;
    w->out = p;
    w->out_cap = cap;
    return 0;
}

/* Append bytes to the output, base64 in -text mode (each piece padded on its own: the client decodes
 * it as it comes, so a streamed message is never held back for the next one). */
static int out_put(pc_grpc_web *w, const uint8_t *p, size_t len)
{
    if (len == 0) return 0;
    if (out_reserve(w, w->text ? (len + 2) / 3 * 4 + 1 : len) < 0) return -1;
    if (w->text)
        w->out_len += (size_t)EVP_EncodeBlock(w->out + w->out_len, p, (int)len);
    else
        memcpy(w->out + w->out_len, p, len);
    if (!w->text) w->out_len += len;
    return 0;
}

/* The trailers as the last frame: flag 0x80, then "name: value\r\n" lines. */
static int put_trailers(pc_stream *st)
{
    pc_grpc_web *w = st->web;
    const pc_headers *t = &st->trailers;
    size_t len = 0;
    for (size_t i = 0; i < t->n; i++)
        if (t->nv[i].namelen && t->nv[i].name[0] != ':') len += t->nv[i].namelen + t->nv[i].valuelen + 4;
    uint8_t *f = malloc(len + 5);
    if (!f) return -1;
    f[0] = 0x80;
    f[1] = (uint8_t)(len >> 24);
    f[2] = (uint8_t)(len >> 16);
    f[3] = (uint8_t)(len >> 8);
    f[4] = (uint8_t)len;
    size_t o = 5;
    for (size_t i = 0; i < t->n; i++) {
        const nghttp2_nv *nv = &t->nv[i];
        if (!nv->namelen || nv->name[0] == ':') continue;
        memcpy(f + o, nv->name, nv->namelen);
        o += nv->namelen;
        memcpy(f + o, ": ", 2);
        memcpy(f + o + 2, nv->value, nv->valuelen);
        o += 2 + nv->valuelen;
        memcpy(f + o, "\r\n", 2);
        o += 2;
    }
    int rv = out_put(w, f, o);
    free(f);
    return rv;
}

static ssize_t emit(pc_grpc_web *w, uint8_t *buf, size_t len, uint32_t *flags)
{
    size_t n = w->out_len - w->out_pos;
    if (n > len) n = len;
    if (n) memcpy(buf, w->out + w->out_pos, n);
    w->out_pos += n;
    if (w->out_pos == w->out_len && w->eof) *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (n == 0 && !(*flags & NGHTTP2_DATA_FLAG_EOF)) return NGHTTP2_ERR_DEFERRED;
    return (ssize_t)n;
}

ssize_t pc__grpc_web_read_response(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                                   nghttp2_data_source *src, void *ud)
{
    pc_stream *st = src->ptr;
    pc_grpc_web *w = st->web;
    if (w->out_pos < w->out_len || w->eof) return emit(w, buf, len, flags);
    uint32_t f = 0;
    if (!w->text) {
        /* Binary: the bytes as they are, straight into nghttp2's buffer. */
        ssize_t n = pc__stream_read_response(s, sid, buf, len, &f, src, ud);
        if (n < 0 || !(f & NGHTTP2_DATA_FLAG_EOF)) return n;
        if (put_trailers(st) < 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        w->eof = true;
        if (n > 0) return n;
        return emit(w, buf, len, flags);
    }
    uint8_t raw[12288];
    size_t want = len / 4 * 3;
    if (want < 3) want = 3;
    if (want > sizeof raw) want = sizeof raw;
    ssize_t n = pc__stream_read_response(s, sid, raw, want, &f, src, ud);
    if (n < 0) return n;
    if (out_put(w, raw, (size_t)n) < 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (f & NGHTTP2_DATA_FLAG_EOF) {
        if (put_trailers(st) < 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        w->eof = true;
    }
    return emit(w, buf, len, flags);
}

void pc__grpc_web_free(pc_grpc_web *w)
{
    if (!w) return;
    free(w->dec);
    free(w->out);
    free(w);
}
