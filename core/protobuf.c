/* Protobuf wire-format decoder, FileDescriptorSet loader and JSON rendering. One bounds-checked wire
 * reader serves both the decoder and the loader; results live in a few flat buffers so that one
 * free releases everything and a failed speculative parse is undone by truncation. */
#include "protobuf.h"
#include "log.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELD_NUMBER 536870911u /* 2^29 - 1 */
#define MAX_DEPTH 1000              /* whatever the limits say: the decoder recurses per level */
#define DESC_MAX_INPUT (64u << 20)
#define DESC_MAX_DEPTH 32

/* ---- wire reader ---------------------------------------------------------------------------- */

typedef struct wfield {
    uint32_t number;
    int wire;
    uint64_t v;          /* VARINT, I64, I32 */
    const uint8_t *data; /* LEN */
    size_t len;
    size_t off; /* of the tag, from the start of the whole input */
} wfield;

typedef struct reader {
    const uint8_t *p, *end;
    const uint8_t *base; /* start of the whole input, for offsets in messages */
    char *err;
    size_t errlen;
} reader;

/* At most 10 bytes, and the 10th may only carry the top bit of a 64-bit value. */
static int read_varint(const uint8_t **pp, const uint8_t *end, uint64_t *v, const char **why)
{
    const uint8_t *p = *pp;
    uint64_t x = 0;
    for (int i = 0; i < 10; i++) {
        if (p == end) {
            *why = "truncated varint";
            return -1;
        }
        uint8_t b = *p++;
        if (i == 9 && b > 1) {
            *why = "varint longer than 64 bits";
            return -1;
        }
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *pp = p;
            *v = x;
            return 0;
        }
    }
    return -1; /* not reached: the 10th byte either ends the varint or fails above */
}

static uint64_t load_le(const uint8_t *p, int n)
{
    uint64_t x = 0;
    for (int i = n - 1; i >= 0; i--)
        x = (x << 8) | p[i];
    return x;
}

/* 1: a field; 0: end of the message; PC_PB_ERR_*: error, described in r->err. */
static int next_field(reader *r, wfield *f)
{
    f->data = NULL;
    f->len = 0;
    f->v = 0;
    if (r->p == r->end) return 0;
    const char *why = NULL;
    size_t off = (size_t)(r->p - r->base);
    uint64_t tag;
    f->off = off;
    if (read_varint(&r->p, r->end, &tag, &why) < 0) goto bad;
    if (tag > UINT32_MAX) {
        why = "field tag out of range";
        goto bad;
    }
    f->number = (uint32_t)(tag >> 3);
    f->wire = (int)(tag & 7);
    if (f->number == 0) {
        why = "field number 0";
        goto bad;
    }
    switch (f->wire) {
    case PC_PB_WIRE_VARINT:
        if (read_varint(&r->p, r->end, &f->v, &why) < 0) goto bad;
        return 1;
    case PC_PB_WIRE_I64:
    case PC_PB_WIRE_I32: {
        size_t n = f->wire == PC_PB_WIRE_I64 ? 8 : 4;
        if ((size_t)(r->end - r->p) < n) {
            why = "truncated fixed-width value";
            goto bad;
        }
        f->v = load_le(r->p, (int)n);
        r->p += n;
        return 1;
    }
    case PC_PB_WIRE_LEN: {
        uint64_t n;
        if (read_varint(&r->p, r->end, &n, &why) < 0) goto bad;
        if (n > (uint64_t)(r->end - r->p)) {
            why = "length beyond end of message";
            goto bad;
        }
        f->data = r->p;
        f->len = (size_t)n;
        r->p += n;
        return 1;
    }
    case PC_PB_WIRE_SGROUP:
    case PC_PB_WIRE_EGROUP:
        pc__errf(r->err, r->errlen, "field %u at offset %zu: groups are not supported", f->number, off);
        return PC_PB_ERR_UNSUPPORTED;
    default:
        why = "invalid wire type";
        goto bad;
    }
bad:
    pc__errf(r->err, r->errlen, "%s at offset %zu", why, off);
    return PC_PB_ERR_MALFORMED;
}

/* ---- value helpers -------------------------------------------------------------------------- */

static int64_t as_s64(uint64_t x)
{
    return x <= INT64_MAX ? (int64_t)x : -(int64_t)~x - 1;
}
static int64_t as_s32(uint32_t x)
{
    return x <= INT32_MAX ? (int64_t)x : -(int64_t)(uint32_t)~x - 1;
}

/* Whether the 8 bytes at s are all printable ASCII (0x20 to 0x7e): no high bit, no byte below
 * 0x20, none equal to 0x7f (the word tricks for "a byte less than n" and "a zero byte"). */
static bool printable8(const uint8_t *s)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t x, del;
    memcpy(&x, s, 8);
    del = x ^ (0x7f * ones);
    return !(x & highs) && !((x - 0x20 * ones) & ~x & highs) && !((del - ones) & ~del & highs);
}

/* Strict UTF-8 (no overlongs, surrogates or values past U+10FFFF). *text tells whether it is also
 * free of control characters other than tab, LF and CR, i.e. reads as plain text. */
static bool utf8_check(const uint8_t *s, size_t n, bool *text)
{
    bool t = true;
    size_t i = 0;
    while (i < n) {
        if (n - i >= 8 && printable8(s + i)) { /* most strings are plain ASCII text */
            i += 8;
            continue;
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) t = false;
            i++;
            continue;
        }
        size_t k;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            k = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else
            return false;
        if (n - i - 1 < k) return false;
        if (s[i + 1] < lo || s[i + 1] > hi) return false;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xc0) != 0x80) return false;
        i += k + 1;
    }
    if (text) *text = t;
    return true;
}

static int expected_wire(pc_pb_type t)
{
    switch (t) {
    case PC_PB_TYPE_DOUBLE:
    case PC_PB_TYPE_FIXED64:
    case PC_PB_TYPE_SFIXED64:
        return PC_PB_WIRE_I64;
    case PC_PB_TYPE_FLOAT:
    case PC_PB_TYPE_FIXED32:
    case PC_PB_TYPE_SFIXED32:
        return PC_PB_WIRE_I32;
    case PC_PB_TYPE_STRING:
    case PC_PB_TYPE_BYTES:
    case PC_PB_TYPE_MESSAGE:
        return PC_PB_WIRE_LEN;
    case PC_PB_TYPE_GROUP:
        return PC_PB_WIRE_SGROUP;
    default:
        return PC_PB_WIRE_VARINT;
    }
}

static bool is_packable(pc_pb_type t)
{
    int w = expected_wire(t);
    return w == PC_PB_WIRE_VARINT || w == PC_PB_WIRE_I64 || w == PC_PB_WIRE_I32;
}

static void set_scalar(pc_pb_field *f, pc_pb_type t, uint64_t raw)
{
    switch (t) {
    case PC_PB_TYPE_INT32:
    case PC_PB_TYPE_ENUM:
    case PC_PB_TYPE_SFIXED32:
        f->kind = PC_PB_INT;
        f->v.i = as_s32((uint32_t)raw);
        break;
    case PC_PB_TYPE_INT64:
    case PC_PB_TYPE_SFIXED64:
        f->kind = PC_PB_INT;
        f->v.i = as_s64(raw);
        break;
    case PC_PB_TYPE_SINT32: {
        uint32_t x = (uint32_t)raw;
        f->kind = PC_PB_INT;
        f->v.i = (x & 1) ? -(int64_t)(x >> 1) - 1 : (int64_t)(x >> 1);
        break;
    }
    case PC_PB_TYPE_SINT64:
        f->kind = PC_PB_INT;
        f->v.i = (raw & 1) ? -(int64_t)(raw >> 1) - 1 : (int64_t)(raw >> 1);
        break;
    case PC_PB_TYPE_UINT32:
    case PC_PB_TYPE_FIXED32:
        f->kind = PC_PB_UINT;
        f->v.u = (uint32_t)raw;
        break;
    case PC_PB_TYPE_BOOL:
        f->kind = PC_PB_BOOL;
        f->v.u = raw != 0;
        break;
    case PC_PB_TYPE_FLOAT: {
        uint32_t bits = (uint32_t)raw;
        float x;
        memcpy(&x, &bits, sizeof x);
        f->kind = PC_PB_FLOAT;
        f->v.d = x;
        break;
    }
    case PC_PB_TYPE_DOUBLE:
        f->kind = PC_PB_DOUBLE;
        memcpy(&f->v.d, &raw, sizeof f->v.d);
        break;
    default:
        f->kind = PC_PB_UINT;
        f->v.u = raw;
        break;
    }
}

/* ---- decoder -------------------------------------------------------------------------------- */

typedef struct result_impl {
    pc_pb_result pub; /* first, so the public pointer converts back */
    uint8_t *input;
    pc_pb_field *fields;
    char *paths;
} result_impl;

typedef struct dctx {
    pc_pb_limits lim;
    const uint8_t *base;
    pc_pb_field *fields;
    size_t *path_off; /* paths move while growing, so fields keep offsets until the end */
    size_t n, cap;
    char *paths;
    size_t plen, pcap;
    char *err;
    size_t errlen;
} dctx;

/* The array `p` with room for `need` elements (NULL on failure, `p` left as it was). */
static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return p;
    size_t nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void *np = realloc(p, nc * elem);
    if (np) *cap = nc;
    return np;
}

/* Append "<parent>.<comp>" (or just comp at the top) to the path buffer. */
static int path_add(dctx *c, size_t poff, size_t plen, const char *comp, size_t clen, size_t *off,
                    size_t *len)
{
    size_t need = plen + 1 + clen + 1;
    size_t pcap = c->pcap;
    if (c->plen + need > pcap) {
        size_t nc = pcap ? pcap : 1024;
        while (nc < c->plen + need)
            nc *= 2;
        char *np = realloc(c->paths, nc);
        if (!np) return PC_PB_ERR_NOMEM;
        c->paths = np;
        c->pcap = nc;
    }
    char *d = c->paths + c->plen;
    size_t o = 0;
    if (plen) {
        memcpy(d, c->paths + poff, plen);
        d[plen] = '.';
        o = plen + 1;
    }
    memcpy(d + o, comp, clen);
    d[o + clen] = '\0';
    *off = c->plen;
    *len = o + clen;
    c->plen += o + clen + 1;
    return 0;
}

/* Reserve the next entry; its index goes to *idx. */
static int emit(dctx *c, const wfield *w, uint16_t depth, size_t path_off, const pc_pb_fielddesc *fd,
                size_t *idx)
{
    if (c->n >= c->lim.max_fields) {
        pc__errf(c->err, c->errlen, "more than %u fields (offset %zu)", c->lim.max_fields, w->off);
        return PC_PB_ERR_LIMIT;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap, cap2 = c->cap;
        pc_pb_field *nf = grow(c->fields, &cap, c->n + 1, sizeof *c->fields);
        if (nf) c->fields = nf;
        size_t *np = nf ? grow(c->path_off, &cap2, cap, sizeof *c->path_off) : NULL;
        if (!np) return PC_PB_ERR_NOMEM;
        c->path_off = np;
        c->cap = cap;
    }
    pc_pb_field *f = &c->fields[c->n];
    memset(f, 0, sizeof *f);
    f->number = w->number;
    f->wire = (uint8_t)w->wire;
    f->depth = depth;
    f->desc = fd;
    f->data = w->data;
    f->len = w->len;
    c->path_off[c->n] = path_off;
    *idx = c->n++;
    f->end = (uint32_t)c->n;
    return 0;
}

/* n in decimal into buf (at least 11 bytes), NUL-terminated; its length. Field numbers of unknown
 * fields name their paths ("1.3"): printf would cost more than the rest of a small message. */
static size_t u32_dec(char *buf, uint32_t n)
{
    char tmp[10];
    size_t k = 0;
    do {
        tmp[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    for (size_t i = 0; i < k; i++)
        buf[i] = tmp[k - 1 - i];
    buf[k] = '\0';
    return k;
}

static int decode_msg(dctx *c, const pc_pb_msgdesc *md, const uint8_t *p, const uint8_t *end, unsigned depth,
                      size_t poff, size_t plen);

/* Whether the bytes parse as a message at their first level, without recursing or emitting. */
static bool looks_like_message(const uint8_t *p, size_t len)
{
    reader r = {p, p + len, p, NULL, 0};
    wfield w;
    int rc;
    while ((rc = next_field(&r, &w)) == 1)
        ;
    return rc == 0;
}

/* A length-delimited value with no type to follow: message, text, string or bytes. */
static int decode_len_guess(dctx *c, size_t idx, const wfield *w, unsigned depth, size_t poff, size_t plen)
{
    bool text = false;
    bool utf8 = utf8_check(w->data, w->len, &text);
    if (w->len > 0 && !(utf8 && text)) {
        if (depth + 1 > c->lim.max_depth) {
            /* Too deep to decode: an error only if it really is a message, not merely binary data. */
            if (looks_like_message(w->data, w->len)) {
                pc__errf(c->err, c->errlen, "messages nested deeper than %u (offset %zu)", c->lim.max_depth,
                         w->off);
                return PC_PB_ERR_LIMIT;
            }
        } else {
            size_t mark = c->n, pmark = c->plen;
            int rc = decode_msg(c, NULL, w->data, w->data + w->len, depth + 1, poff, plen);
            if (rc == 0) {
                c->fields[idx].kind = PC_PB_MESSAGE;
                c->fields[idx].end = (uint32_t)c->n;
                return 0;
            }
            if (rc != PC_PB_ERR_MALFORMED && rc != PC_PB_ERR_UNSUPPORTED) return rc;
            c->n = mark; /* not a message after all: drop what the attempt added */
            c->plen = pmark;
        }
    }
    c->fields[idx].kind = utf8 ? PC_PB_STRING : PC_PB_BYTES;
    return 0;
}

static int decode_packed(dctx *c, const wfield *w, const pc_pb_fielddesc *fd, unsigned depth, size_t path_off)
{
    int ew = expected_wire(fd->type);
    const uint8_t *p = w->data, *end = w->data + w->len;
    while (p < end) {
        wfield e = *w;
        e.wire = ew;
        e.data = NULL;
        e.len = 0;
        e.off = (size_t)(p - c->base);
        const char *why = NULL;
        if (ew == PC_PB_WIRE_VARINT) {
            if (read_varint(&p, end, &e.v, &why) < 0) {
                pc__errf(c->err, c->errlen, "packed field %u: %s at offset %zu", w->number, why, e.off);
                return PC_PB_ERR_MALFORMED;
            }
        } else {
            size_t n = ew == PC_PB_WIRE_I64 ? 8 : 4;
            if ((size_t)(end - p) < n) {
                pc__errf(c->err, c->errlen, "packed field %u: truncated element at offset %zu", w->number,
                         e.off);
                return PC_PB_ERR_MALFORMED;
            }
            e.v = load_le(p, (int)n);
            p += n;
        }
        size_t idx;
        int rc = emit(c, &e, (uint16_t)depth, path_off, fd, &idx);
        if (rc) return rc;
        c->fields[idx].packed = true;
        set_scalar(&c->fields[idx], fd->type, e.v);
    }
    return 0;
}

static const pc_pb_fielddesc *find_field(const pc_pb_msgdesc *md, uint32_t number)
{
    size_t lo = 0, hi = md->nfields;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (md->fields[mid].number == number) return &md->fields[mid];
        if (md->fields[mid].number < number)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int decode_msg(dctx *c, const pc_pb_msgdesc *md, const uint8_t *p, const uint8_t *end, unsigned depth,
                      size_t poff, size_t plen)
{
    reader r = {p, end, c->base, c->err, c->errlen};
    wfield w;
    int rc;
    while ((rc = next_field(&r, &w)) == 1) {
        const pc_pb_fielddesc *fd = md ? find_field(md, w.number) : NULL;
        bool packed = false;
        if (fd && w.wire != expected_wire(fd->type)) {
            if (fd->repeated && w.wire == PC_PB_WIRE_LEN && is_packable(fd->type))
                packed = true;
            else
                fd = NULL; /* a parser keeps such a field as unknown; so do we */
        }
        char num[16];
        const char *comp = fd ? fd->name : num;
        size_t clen = fd ? strlen(comp) : u32_dec(num, w.number);
        size_t off, len, idx;
        if ((rc = path_add(c, poff, plen, comp, clen, &off, &len))) return rc;
        if (packed) {
            if ((rc = decode_packed(c, &w, fd, depth, off))) return rc;
            continue;
        }
        if ((rc = emit(c, &w, (uint16_t)depth, off, fd, &idx))) return rc;
        if (w.wire != PC_PB_WIRE_LEN) {
            set_scalar(&c->fields[idx], fd ? fd->type : PC_PB_TYPE_UINT64, w.v);
            continue;
        }
        if (!fd || (fd->type == PC_PB_TYPE_MESSAGE && !fd->message)) {
            if ((rc = decode_len_guess(c, idx, &w, depth, off, len))) return rc;
        } else if (fd->type == PC_PB_TYPE_MESSAGE) {
            if (depth + 1 > c->lim.max_depth) {
                pc__errf(c->err, c->errlen, "messages nested deeper than %u (offset %zu)", c->lim.max_depth,
                         w.off);
                return PC_PB_ERR_LIMIT;
            }
            c->fields[idx].kind = PC_PB_MESSAGE;
            if ((rc = decode_msg(c, fd->message, w.data, w.data + w.len, depth + 1, off, len))) return rc;
            c->fields[idx].end = (uint32_t)c->n;
        } else if (fd->type == PC_PB_TYPE_STRING) {
            c->fields[idx].kind = utf8_check(w.data, w.len, NULL) ? PC_PB_STRING : PC_PB_BYTES;
        } else {
            c->fields[idx].kind = PC_PB_BYTES;
        }
    }
    return rc;
}

void pc__pb_limits_default(pc_pb_limits *l)
{
    l->max_depth = 32;
    l->max_fields = 10000;
    l->max_input = 4u << 20;
}

int pc__pb_decode(const pc_pb_msgdesc *type, const uint8_t *data, size_t len, const pc_pb_limits *lim,
                  pc_pb_result **out, char *err, size_t errlen)
{
    dctx c = {0};
    if (lim)
        c.lim = *lim;
    else
        pc__pb_limits_default(&c.lim);
    if (c.lim.max_depth > MAX_DEPTH) c.lim.max_depth = MAX_DEPTH;
    c.err = err;
    c.errlen = errlen;
    *out = NULL;
    if (len > c.lim.max_input) {
        pc__errf(err, errlen, "message of %zu bytes over the limit of %zu", len, c.lim.max_input);
        return PC_PB_ERR_LIMIT;
    }
    result_impl *ri = calloc(1, sizeof *ri);
    uint8_t *copy = malloc(len ? len : 1);
    if (!ri || !copy) {
        free(ri);
        free(copy);
        pc__errf(err, errlen, "out of memory");
        return PC_PB_ERR_NOMEM;
    }
    if (len) memcpy(copy, data, len);
    c.base = copy;
    int rc = decode_msg(&c, type, copy, copy + len, 0, 0, 0);
    if (rc == 0 && !c.paths && !(c.paths = malloc(1))) rc = PC_PB_ERR_NOMEM;
    if (rc) {
        if (rc == PC_PB_ERR_NOMEM) pc__errf(err, errlen, "out of memory");
        free(c.fields);
        free(c.path_off);
        free(c.paths);
        free(copy);
        free(ri);
        return rc;
    }
    for (size_t i = 0; i < c.n; i++)
        c.fields[i].path = c.paths + c.path_off[i];
    free(c.path_off);
    ri->input = copy;
    ri->fields = c.fields;
    ri->paths = c.paths;
    ri->pub.fields = c.fields;
    ri->pub.nfields = c.n;
    ri->pub.type = type;
    *out = &ri->pub;
    if (err && errlen) err[0] = '\0'; /* drop what failed speculative parses left there */
    return PC_PB_OK;
}

void pc__pb_result_free(pc_pb_result *r)
{
    if (!r) return;
    result_impl *ri = (result_impl *)r;
    free(ri->input);
    free(ri->fields);
    free(ri->paths);
    free(ri);
}

/* ---- JSON ----------------------------------------------------------------------------------- */

/* Shortest "%.*g" that reads back to the same value, so 0.1 prints as 0.1. */
static void format_real(char *buf, size_t n, double d, bool single)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, d);
        if (single ? strtof(buf, NULL) == (float)d : strtod(buf, NULL) == d) return;
    }
}

static json_object *base64_json(const uint8_t *s, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t olen = (n + 2) / 3 * 4;
    char *o = malloc(olen + 1);
    if (!o) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n) v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n) v |= s[i + 2];
        o[j++] = tab[(v >> 18) & 63];
        o[j++] = tab[(v >> 12) & 63];
        o[j++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        o[j++] = i + 2 < n ? tab[v & 63] : '=';
    }
    json_object *jo = json_object_new_string_len(o, (int)olen);
    free(o);
    return jo;
}

static json_object *scalar_json(const pc_pb_field *f)
{
    switch (f->kind) {
    case PC_PB_UINT:
        return json_object_new_uint64(f->v.u);
    case PC_PB_INT:
        return json_object_new_int64(f->v.i);
    case PC_PB_BOOL:
        return json_object_new_boolean(f->v.u != 0);
    case PC_PB_FLOAT:
    case PC_PB_DOUBLE: {
        if (isnan(f->v.d)) return json_object_new_string("NaN");
        if (isinf(f->v.d)) return json_object_new_string(f->v.d > 0 ? "Infinity" : "-Infinity");
        char buf[40];
        format_real(buf, sizeof buf, f->v.d, f->kind == PC_PB_FLOAT);
        return json_object_new_double_s(f->v.d, buf);
    }
    case PC_PB_STRING:
        if (f->len > INT32_MAX) return NULL;
        return json_object_new_string_len((const char *)f->data, (int)f->len);
    default:
        if (f->len > (size_t)INT32_MAX / 4 * 3) return NULL;
        return base64_json(f->data, f->len);
    }
}

static int render(json_object *obj, const pc_pb_field *fs, size_t from, size_t to)
{
    for (size_t i = from; i < to; i = fs[i].end) {
        const pc_pb_field *f = &fs[i];
        const pc_pb_fielddesc *fd = f->desc;
        char num[16];
        const char *key = fd ? fd->name : num;
        if (!fd) snprintf(num, sizeof num, "%u", f->number);
        json_object *existing = NULL;
        json_object_object_get_ex(obj, key, &existing);
        json_object *val;
        if (f->kind == PC_PB_MESSAGE) {
            /* A singular message given twice is merged, as a parser merges it. */
            if (fd && !fd->repeated && json_object_is_type(existing, json_type_object)) {
                if (render(existing, fs, i + 1, f->end) < 0) return -1;
                continue;
            }
            val = json_object_new_object();
            if (val && render(val, fs, i + 1, f->end) < 0) {
                json_object_put(val);
                return -1;
            }
        } else {
            val = scalar_json(f);
        }
        if (!val) return -1;
        bool array = fd ? fd->repeated : existing != NULL;
        if (!array) {
            if (json_object_object_add(obj, key, val) < 0) /* replaces: the last singular value wins */
                goto fail;
            continue;
        }
        if (!json_object_is_type(existing, json_type_array)) {
            json_object *arr = json_object_new_array();
            if (!arr) goto fail;
            if (existing && json_object_array_add(arr, json_object_get(existing)) < 0) {
                json_object_put(existing);
                json_object_put(arr);
                goto fail;
            }
            if (json_object_object_add(obj, key, arr) < 0) {
                json_object_put(arr);
                goto fail;
            }
            existing = arr;
        }
        if (json_object_array_add(existing, val) < 0) goto fail;
        continue;
    fail:
        json_object_put(val);
        return -1;
    }
    return 0;
}

json_object *pc__pb_to_json(const pc_pb_result *r)
{
    json_object *obj = json_object_new_object();
    if (obj && render(obj, r->fields, 0, r->nfields) < 0) {
        json_object_put(obj);
        return NULL;
    }
    return obj;
}

/* ---- descriptor sets ------------------------------------------------------------------------ */

typedef struct method_desc {
    char *name, *input, *output;
} method_desc;

typedef struct service_desc {
    char *full_name;
    method_desc *methods;
    size_t nmethods;
} service_desc;

struct pc_pb_descset {
    pc_pb_msgdesc *msgs;
    size_t nmsgs, capmsgs;
    service_desc *svcs;
    size_t nsvcs, capsvcs;
    char **files; /* names already loaded: a file listed twice is read once */
    size_t nfiles, capfiles;
};

typedef struct lctx {
    pc_pb_descset *ds;
    reader r; /* base, err for next_field */
} lctx;

static char *dupn(const uint8_t *s, size_t n)
{
    return strndup((const char *)s, n);
}

static char *join(const char *scope, const char *name)
{
    size_t a = scope ? strlen(scope) : 0, b = strlen(name);
    char *s = malloc(a + 1 + b + 1);
    if (!s) return NULL;
    if (a) {
        memcpy(s, scope, a);
        s[a] = '.';
        a++;
    }
    memcpy(s + a, name, b + 1);
    return s;
}

/* Runs `body` for each field of the bytes [data, data+len) as `w`; `rc` holds the reader's result. */
#define FOR_FIELDS(lc, data, len, w, rc)                                                                     \
    for (reader rd_ = {(data), (data) + (len), (lc)->r.base, (lc)->r.err, (lc)->r.errlen};                   \
         ((rc) = next_field(&rd_, &(w))) == 1;)

static int desc_err(lctx *lc, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int desc_err(lctx *lc, int rc, const char *fmt, ...)
{
    if (lc->r.err && lc->r.errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(lc->r.err, lc->r.errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static void free_fields(pc_pb_fielddesc *fs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((void *)fs[i].name);
        free((void *)fs[i].type_name);
    }
    free(fs);
}

static int parse_field(lctx *lc, const uint8_t *data, size_t len, bool proto3, pc_pb_fielddesc *fd)
{
    wfield w;
    int rc;
    uint64_t label = 0, type = 0, number = 0;
    int packed_opt = -1;
    memset(fd, 0, sizeof *fd);
    FOR_FIELDS(lc, data, len, w, rc)
    {
        if (w.number == 1 && w.wire == PC_PB_WIRE_LEN) {
            free((void *)fd->name);
            if (!(fd->name = dupn(w.data, w.len))) return PC_PB_ERR_NOMEM;
        } else if (w.number == 3 && w.wire == PC_PB_WIRE_VARINT)
            number = w.v;
        else if (w.number == 4 && w.wire == PC_PB_WIRE_VARINT)
            label = w.v;
        else if (w.number == 5 && w.wire == PC_PB_WIRE_VARINT)
            type = w.v;
        else if (w.number == 6 && w.wire == PC_PB_WIRE_LEN) {
            free((void *)fd->type_name);
            if (!(fd->type_name = dupn(w.data, w.len))) return PC_PB_ERR_NOMEM;
        } else if (w.number == 8 && w.wire == PC_PB_WIRE_LEN) {
            wfield o;
            int orc;
            FOR_FIELDS(lc, w.data, w.len, o, orc)
            {
                if (o.number == 2 && o.wire == PC_PB_WIRE_VARINT) packed_opt = o.v != 0;
            }
            if (orc < 0) return orc;
        }
    }
    if (rc < 0) return rc;
    if (!fd->name || !*fd->name)
        return desc_err(lc, PC_PB_ERR_MALFORMED, "descriptor set: field without a name");
    if (number == 0 || number > MAX_FIELD_NUMBER)
        return desc_err(lc, PC_PB_ERR_MALFORMED, "descriptor set: field %s has an invalid number", fd->name);
    if (type < PC_PB_TYPE_DOUBLE || type > PC_PB_TYPE_SINT64)
        return desc_err(lc, PC_PB_ERR_MALFORMED, "descriptor set: field %s has an invalid type", fd->name);
    if ((type == PC_PB_TYPE_MESSAGE || type == PC_PB_TYPE_GROUP || type == PC_PB_TYPE_ENUM) && !fd->type_name)
        return desc_err(lc, PC_PB_ERR_MALFORMED, "descriptor set: field %s has no type name", fd->name);
    fd->number = (uint32_t)number;
    fd->type = (pc_pb_type)type;
    fd->repeated = label == 3;
    fd->packed = fd->repeated && is_packable(fd->type) && (packed_opt >= 0 ? packed_opt : proto3);
    return 0;
}

static int cmp_field(const void *a, const void *b)
{
    uint32_t x = ((const pc_pb_fielddesc *)a)->number, y = ((const pc_pb_fielddesc *)b)->number;
    return x < y ? -1 : x > y;
}

static int parse_message(lctx *lc, const uint8_t *data, size_t len, const char *scope, bool proto3, int depth)
{
    pc_pb_descset *ds = lc->ds;
    wfield w;
    int rc;
    char *name = NULL;
    if (depth > DESC_MAX_DEPTH)
        return desc_err(lc, PC_PB_ERR_LIMIT, "descriptor set: message types nested too deep under %s",
                        scope ? scope : "");
    FOR_FIELDS(lc, data, len, w, rc)
    {
        if (w.number == 1 && w.wire == PC_PB_WIRE_LEN) {
            free(name);
            if (!(name = dupn(w.data, w.len))) return PC_PB_ERR_NOMEM;
        }
    }
    if (rc < 0 || !name || !*name) {
        free(name);
        return rc < 0 ? rc
                      : desc_err(lc, PC_PB_ERR_MALFORMED, "descriptor set: message without a name in %s",
                                 scope ? scope : "(top)");
    }
    char *full = join(scope, name);
    free(name);
    if (!full) return PC_PB_ERR_NOMEM;
    pc_pb_msgdesc *nm = grow(ds->msgs, &ds->capmsgs, ds->nmsgs + 1, sizeof *ds->msgs);
    if (!nm) {
        free(full);
        return PC_PB_ERR_NOMEM;
    }
    ds->msgs = nm;
    size_t mi = ds->nmsgs++;
    memset(&ds->msgs[mi], 0, sizeof ds->msgs[mi]);
    ds->msgs[mi].full_name = full;

    pc_pb_fielddesc *fs = NULL;
    size_t nf = 0, cap = 0;
    FOR_FIELDS(lc, data, len, w, rc)
    {
        if (w.number == 2 && w.wire == PC_PB_WIRE_LEN) {
            pc_pb_fielddesc *nfs = grow(fs, &cap, nf + 1, sizeof *fs);
            if (!nfs) {
                rc = PC_PB_ERR_NOMEM;
                break;
            }
            fs = nfs;
            rc = parse_field(lc, w.data, w.len, proto3, &fs[nf]);
            nf++; /* counted even on failure, so its strings are freed */
            if (rc < 0) break;
        } else if (w.number == 3 && w.wire == PC_PB_WIRE_LEN) {
            if ((rc = parse_message(lc, w.data, w.len, full, proto3, depth + 1)) < 0) break;
        }
    }
    if (rc == 0 && nf > 1) {
        qsort(fs, nf, sizeof *fs, cmp_field);
        for (size_t i = 1; i < nf; i++)
            if (fs[i].number == fs[i - 1].number) {
                rc = desc_err(lc, PC_PB_ERR_MALFORMED, "descriptor set: duplicate field number in %s", full);
                break;
            }
    }
    /* Attach even on failure: the set's free releases it. */
    ds->msgs[mi].fields = fs;
    ds->msgs[mi].nfields = nf;
    return rc;
}

static int parse_service(lctx *lc, const uint8_t *data, size_t len, const char *package)
{
    pc_pb_descset *ds = lc->ds;
    wfield w;
    int rc;
    service_desc *ns = grow(ds->svcs, &ds->capsvcs, ds->nsvcs + 1, sizeof *ds->svcs);
    if (!ns) return PC_PB_ERR_NOMEM;
    ds->svcs = ns;
    service_desc *sv = &ds->svcs[ds->nsvcs++];
    memset(sv, 0, sizeof *sv);
    size_t cap = 0;
    FOR_FIELDS(lc, data, len, w, rc)
    {
        if (w.number == 1 && w.wire == PC_PB_WIRE_LEN) {
            char *name = dupn(w.data, w.len);
            free(sv->full_name);
            if (!name || !(sv->full_name = join(package, name))) {
                free(name);
                return PC_PB_ERR_NOMEM;
            }
            free(name);
        } else if (w.number == 2 && w.wire == PC_PB_WIRE_LEN) {
            method_desc *nmd = grow(sv->methods, &cap, sv->nmethods + 1, sizeof *sv->methods);
            if (!nmd) return PC_PB_ERR_NOMEM;
            sv->methods = nmd;
            method_desc *m = &sv->methods[sv->nmethods++];
            memset(m, 0, sizeof *m);
            wfield mw;
            int mrc;
            FOR_FIELDS(lc, w.data, w.len, mw, mrc)
            {
                char **dst = mw.number == 1   ? &m->name
                             : mw.number == 2 ? &m->input
                             : mw.number == 3 ? &m->output
                                              : NULL;
                if (!dst || mw.wire != PC_PB_WIRE_LEN) continue;
                free(*dst);
                if (!(*dst = dupn(mw.data, mw.len))) return PC_PB_ERR_NOMEM;
            }
            if (mrc < 0) return mrc;
            if (!m->name || !m->input || !m->output)
                return desc_err(lc, PC_PB_ERR_MALFORMED, "descriptor set: incomplete method in service %s",
                                sv->full_name);
        }
    }
    if (rc == 0 && (!sv->full_name || !*sv->full_name))
        return desc_err(lc, PC_PB_ERR_MALFORMED, "descriptor set: service without a name");
    return rc;
}

static int parse_file(lctx *lc, const uint8_t *data, size_t len)
{
    pc_pb_descset *ds = lc->ds;
    wfield w;
    int rc;
    char *fname = NULL, *package = NULL;
    bool proto3 = false;
    /* Package and syntax first: they qualify everything else whatever the field order. */
    FOR_FIELDS(lc, data, len, w, rc)
    {
        char **dst = w.number == 1 ? &fname : w.number == 2 ? &package : NULL;
        if (w.wire != PC_PB_WIRE_LEN) continue;
        if (w.number == 12) proto3 = w.len == 6 && memcmp(w.data, "proto3", 6) == 0;
        if (!dst) continue;
        free(*dst);
        if (!(*dst = dupn(w.data, w.len))) {
            rc = PC_PB_ERR_NOMEM;
            break;
        }
    }
    if (rc == 0 && fname) {
        for (size_t i = 0; i < ds->nfiles; i++)
            if (strcmp(ds->files[i], fname) == 0) goto out; /* already loaded */
        char **nfl = grow(ds->files, &ds->capfiles, ds->nfiles + 1, sizeof *ds->files);
        if (!nfl) {
            rc = PC_PB_ERR_NOMEM;
            goto out;
        }
        ds->files = nfl;
        ds->files[ds->nfiles++] = fname;
        fname = NULL;
    }
    if (rc < 0) goto out;
    const char *scope = package && *package ? package : NULL;
    FOR_FIELDS(lc, data, len, w, rc)
    {
        if (w.number == 4 && w.wire == PC_PB_WIRE_LEN)
            rc = parse_message(lc, w.data, w.len, scope, proto3, 0);
        else if (w.number == 6 && w.wire == PC_PB_WIRE_LEN)
            rc = parse_service(lc, w.data, w.len, scope);
        if (rc < 0) break;
    }
out:
    free(fname);
    free(package);
    return rc;
}

static int cmp_msg(const void *a, const void *b)
{
    return strcmp(((const pc_pb_msgdesc *)a)->full_name, ((const pc_pb_msgdesc *)b)->full_name);
}

const pc_pb_msgdesc *pc__pb_descset_message(const pc_pb_descset *ds, const char *full_name)
{
    if (!ds || !full_name) return NULL;
    if (*full_name == '.') full_name++;
    pc_pb_msgdesc key = {.full_name = full_name};
    return ds->msgs ? bsearch(&key, ds->msgs, ds->nmsgs, sizeof *ds->msgs, cmp_msg) : NULL;
}

/* A type name as protoc writes it is absolute (".pkg.Msg"); a relative one is looked up from the
 * innermost enclosing scope outwards. Returns the message or NULL; *resolved gets a new string. */
static const pc_pb_msgdesc *resolve(const pc_pb_descset *ds, const char *scope, const char *name,
                                    char **resolved)
{
    *resolved = NULL;
    if (*name == '.') {
        *resolved = strdup(name + 1);
        return pc__pb_descset_message(ds, name + 1);
    }
    size_t sl = scope ? strlen(scope) : 0;
    for (;;) {
        char *cand = malloc(sl + 1 + strlen(name) + 1);
        if (!cand) return NULL;
        if (sl)
            snprintf(cand, sl + 1 + strlen(name) + 1, "%.*s.%s", (int)sl, scope, name);
        else
            strcpy(cand, name);
        const pc_pb_msgdesc *m = pc__pb_descset_message(ds, cand);
        if (m) {
            *resolved = cand;
            return m;
        }
        free(cand);
        if (sl == 0) break;
        while (sl > 0 && scope[sl - 1] != '.')
            sl--;
        if (sl > 0) sl--;
    }
    *resolved = strdup(name);
    return NULL;
}

static int link_types(lctx *lc)
{
    pc_pb_descset *ds = lc->ds;
    if (ds->nmsgs > 1) qsort(ds->msgs, ds->nmsgs, sizeof *ds->msgs, cmp_msg);
    for (size_t i = 1; i < ds->nmsgs; i++)
        if (strcmp(ds->msgs[i].full_name, ds->msgs[i - 1].full_name) == 0)
            return desc_err(lc, PC_PB_ERR_MALFORMED, "descriptor set: message %s defined twice",
                            ds->msgs[i].full_name);
    for (size_t i = 0; i < ds->nmsgs; i++) {
        pc_pb_msgdesc *m = &ds->msgs[i];
        for (size_t j = 0; j < m->nfields; j++) {
            pc_pb_fielddesc *fd = (pc_pb_fielddesc *)&m->fields[j];
            if (!fd->type_name) continue;
            char *full;
            const pc_pb_msgdesc *t = resolve(ds, m->full_name, fd->type_name, &full);
            if (!full) return PC_PB_ERR_NOMEM;
            free((void *)fd->type_name);
            fd->type_name = full;
            if (fd->type == PC_PB_TYPE_MESSAGE || fd->type == PC_PB_TYPE_GROUP) fd->message = t;
        }
    }
    for (size_t i = 0; i < ds->nsvcs; i++) {
        service_desc *sv = &ds->svcs[i];
        const char *pkg_end = strrchr(sv->full_name, '.');
        char *pkg = pkg_end ? strndup(sv->full_name, (size_t)(pkg_end - sv->full_name)) : NULL;
        if (pkg_end && !pkg) return PC_PB_ERR_NOMEM;
        for (size_t j = 0; j < sv->nmethods; j++) {
            char **names[2] = {&sv->methods[j].input, &sv->methods[j].output};
            for (int k = 0; k < 2; k++) {
                char *full;
                resolve(ds, pkg, *names[k], &full);
                if (!full) {
                    free(pkg);
                    return PC_PB_ERR_NOMEM;
                }
                free(*names[k]);
                *names[k] = full;
            }
        }
        free(pkg);
    }
    return 0;
}

void pc__pb_descset_free(pc_pb_descset *ds)
{
    if (!ds) return;
    for (size_t i = 0; i < ds->nmsgs; i++) {
        free((void *)ds->msgs[i].full_name);
        free_fields((pc_pb_fielddesc *)ds->msgs[i].fields, ds->msgs[i].nfields);
    }
    free(ds->msgs);
    for (size_t i = 0; i < ds->nsvcs; i++) {
        for (size_t j = 0; j < ds->svcs[i].nmethods; j++) {
            free(ds->svcs[i].methods[j].name);
            free(ds->svcs[i].methods[j].input);
            free(ds->svcs[i].methods[j].output);
        }
        free(ds->svcs[i].methods);
        free(ds->svcs[i].full_name);
    }
    free(ds->svcs);
    for (size_t i = 0; i < ds->nfiles; i++)
        free(ds->files[i]);
    free(ds->files);
    free(ds);
}

int pc__pb_descset_load(const uint8_t *data, size_t len, pc_pb_descset **out, char *err, size_t errlen)
{
    *out = NULL;
    if (len > DESC_MAX_INPUT) {
        pc__errf(err, errlen, "descriptor set of %zu bytes is too large", len);
        return PC_PB_ERR_LIMIT;
    }
    pc_pb_descset *ds = calloc(1, sizeof *ds);
    if (!ds) {
        pc__errf(err, errlen, "out of memory");
        return PC_PB_ERR_NOMEM;
    }
    lctx lc = {ds, {data, data + len, data, err, errlen}};
    wfield w;
    int rc;
    FOR_FIELDS(&lc, data, len, w, rc)
    {
        if (w.number == 1 && w.wire == PC_PB_WIRE_LEN && (rc = parse_file(&lc, w.data, w.len)) < 0) break;
    }
    if (rc == 0) rc = link_types(&lc);
    if (rc < 0) {
        if (rc == PC_PB_ERR_NOMEM) pc__errf(err, errlen, "out of memory");
        pc__pb_descset_free(ds);
        return rc;
    }
    *out = ds;
    return PC_PB_OK;
}

int pc__pb_descset_load_file(const char *path, pc_pb_descset **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        pc__errf(err, errlen, "%s: %s", path, strerror(errno));
        return PC_PB_ERR_MALFORMED;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, n;
    int rc = 0;
    do {
        if (len == cap) {
            uint8_t *nb = len > DESC_MAX_INPUT ? NULL : grow(buf, &cap, len + 65536, 1);
            if (!nb) {
                rc = len > DESC_MAX_INPUT ? PC_PB_ERR_LIMIT : PC_PB_ERR_NOMEM;
                pc__errf(err, errlen, "%s: %s", path, rc == PC_PB_ERR_LIMIT ? "too large" : "out of memory");
                break;
            }
            buf = nb;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    if (rc == 0 && ferror(f)) {
        pc__errf(err, errlen, "%s: read error", path);
        rc = PC_PB_ERR_MALFORMED;
    }
    fclose(f);
    if (rc == 0) {
        rc = pc__pb_descset_load(buf ? buf : (const uint8_t *)"", len, out, err, errlen);
    }
    free(buf);
    return rc;
}

int pc__pb_descset_method(const pc_pb_descset *ds, const char *path, const char **input, const char **output)
{
    if (!ds || !path || path[0] != '/') return -1;
    const char *svc = path + 1, *slash = strrchr(svc, '/');
    if (!slash || slash == svc || !slash[1]) return -1;
    size_t sl = (size_t)(slash - svc);
    for (size_t i = 0; i < ds->nsvcs; i++) {
        const service_desc *sv = &ds->svcs[i];
        if (strlen(sv->full_name) != sl || memcmp(sv->full_name, svc, sl) != 0) continue;
        for (size_t j = 0; j < sv->nmethods; j++) {
            if (strcmp(sv->methods[j].name, slash + 1) != 0) continue;
            if (input) *input = sv->methods[j].input;
            if (output) *output = sv->methods[j].output;
            return 0;
        }
    }
    return -1;
}
