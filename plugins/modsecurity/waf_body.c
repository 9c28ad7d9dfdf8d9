/* Renders decoded gRPC messages as the JSON bodies ModSecurity inspects. Flat keys ("a.b.c")
 * give the same argument names as nested objects would (json.a.b.c), and repeated fields become
 * repeated keys rather than arrays, so their values are not renamed "array_N". */
#include "waf_body.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void waf_buf_init(waf_buf *b, size_t limit)
{
    memset(b, 0, sizeof *b);
    b->limit = limit;
}

void waf_buf_free(waf_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

char *waf_buf_take(waf_buf *b, size_t *len)
{
    char *p = b->p;
    *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

static int put(waf_buf *b, const char *s, size_t n)
{
    if (b->over || b->oom) return -1;
    if (b->len + n + 1 > b->limit) {
        b->over = 1;
        return -1;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > b->limit + 1) cap = b->limit + 1;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int puts_(waf_buf *b, const char *s)
{
    return put(b, s, strlen(s));
}

/* Length of the UTF-8 sequence at s (1-4), or 0 when it is not valid UTF-8. */
static size_t utf8_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t k;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        k = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
        k = 2;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 3;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (n - 1 < k || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i <= k; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return k + 1;
}

static int is_control(uint8_t c)
{
    return (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f;
}

int waf_is_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint64_t w;
        if (i + 8 <= n && (memcpy(&w, s + i, 8), !(w & 0x8080808080808080ULL))) {
            i += 8; /* most text is ASCII: eight bytes at a time, without the decoder */
            continue;
        }
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_len(s + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

/* No byte of the word at s is a control character or outside ASCII: 0x20 to 0x7e only. */
static int printable_word(const uint8_t *s)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t w, del;
    memcpy(&w, s, sizeof w);
    del = w ^ (0x7f * ones); /* a zero byte where w holds DEL */
    return !(w & high) && !((w - 0x20 * ones) & ~w & high) && !((del - ones) & ~del & high);
}

int waf_is_text(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (n - i >= 8 && printable_word(s + i)) {
            i += 8;
            continue;
        }
        if (s[i] < 0x80) {
            if (is_control(s[i])) return 0;
            i++;
            continue;
        }
        size_t k = utf8_len(s + i, n - i);
        if (!k || (k == 1 && is_control(s[i]))) return 0;
        i += k;
    }
    return 1;
}

/* A JSON string. Input is valid UTF-8 (checked by the caller), so only quotes, backslashes and
 * control characters need escaping. */
static int put_string(waf_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (put(b, "\"", 1) < 0) return -1;
    size_t run = 0; /* bytes not yet copied that need no escape */
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) {
            run++;
            continue;
        }
        if (put(b, s + i - run, run) < 0) return -1;
        run = 0;
        char esc[7] = {'\\', (char)c, 0};
        size_t elen = 2;
        if (c == '\n')
            esc[1] = 'n';
        else if (c == '\r')
            esc[1] = 'r';
        else if (c == '\t')
            esc[1] = 't';
        else if (c < 0x20 || c == 0x7f) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        if (put(b, esc, elen) < 0) return -1;
    }
    if (put(b, s + n - run, run) < 0) return -1;
    return put(b, "\"", 1);
}

static int put_key(waf_buf *b, int *first, const char *key)
{
    if (!*first && put(b, ",", 1) < 0) return -1;
    *first = 0;
    if (put_string(b, key, strlen(key)) < 0) return -1;
    return put(b, ":", 1);
}

void waf_args_init(waf_args *a)
{
    memset(a, 0, sizeof *a);
}

void waf_args_free(waf_args *a)
{
    for (size_t i = 0; i < a->nowned; i++)
        free(a->owned[i]);
    free(a->owned);
    free(a->kv);
    free(a->number);
    memset(a, 0, sizeof *a);
}

static char *own(waf_args *a, size_t n)
{
    if (a->nowned == a->capowned) {
        size_t cap = a->capowned ? a->capowned * 2 : 16;
        char **o = realloc(a->owned, cap * sizeof *o);
        if (!o) return NULL;
        a->owned = o;
        a->capowned = cap;
    }
    char *p = malloc(n);
    if (p) a->owned[a->nowned++] = p;
    return p;
}

/* Adds json.<path> = value; `number` values are copied (they are formatted on the stack). */
static int add_arg(waf_args *a, const char *path, const char *v, size_t vlen, int number)
{
    if (a->oom) return -1;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        waf_kv *kv = realloc(a->kv, cap * sizeof *kv);
        if (kv) a->kv = kv;
        unsigned char *nb = realloc(a->number, cap);
        if (nb) a->number = nb;
        if (!kv || !nb) goto oom;
        a->cap = cap;
    }
    size_t pl = strlen(path);
    char *name = own(a, pl + 6);
    if (!name) goto oom;
    memcpy(name, "json.", 5);
    memcpy(name + 5, path, pl + 1);
    if (number) {
        char *c = own(a, vlen + 1);
        if (!c) goto oom;
        memcpy(c, v, vlen);
        c[vlen] = '\0';
        v = c;
    }
    a->kv[a->n] = (waf_kv){name, pl + 5, v, vlen};
    a->number[a->n] = (unsigned char)number;
    a->n++;
    return 0;
oom:
    a->oom = 1;
    return -1;
}

/* Printable runs of at least 4 characters, as `strings` finds them (UTF-8 text between control
 * bytes and invalid sequences), each as a value under `key`. Shorter runs are mostly chance bytes
 * of binary data; longer ones are text someone put there. */
static int add_runs(waf_args *a, const char *key, const uint8_t *d, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t start = i, chars = 0;
        while (i < n) {
            size_t k = utf8_len(d + i, n - i);
            if (!k || (k == 1 && is_control(d[i]))) break;
            i += k;
            chars++;
        }
        if (chars >= 4 && add_arg(a, key, (const char *)d + start, i - start, 0) < 0) return -1;
        if (i == start) i++;
    }
    return 0;
}

/* Whether a field path ends in a name ("customer.email") rather than a number ("3.1"): only a
 * descriptor gives names, so the field is declared a string, not guessed to be one. */
static int declared(const char *path)
{
    const char *last = strrchr(path, '.');
    last = last ? last + 1 : path;
    if (!*last) return 0;
    for (; *last; last++)
        if (*last < '0' || *last > '9') return 1;
    return 0;
}

int waf_args_from_fields(waf_args *a, const pc_field *f, long n, int numbers)
{
    for (long i = 0; i < n; i++) {
        char num[48];
        const char *path = f[i].path ? f[i].path : "";
        switch (f[i].kind) {
        case PC_FIELD_MESSAGE:
            continue; /* its fields follow in the list, with their full paths */
        case PC_FIELD_BYTES:
        case PC_FIELD_STRING: {
            /* A declared string is given whole, control characters included (CRS flags NUL
             * bytes in arguments). Bytes, and strings only guessed from valid UTF-8 without a
             * descriptor, are given whole when they read as text; otherwise binary data is not
             * shown as text, but its printable runs are, so that a NUL byte added to an attack
             * does not hide it. */
            const uint8_t *d = (const uint8_t *)f[i].str;
            int whole = waf_is_text(d, f[i].str_len) || (f[i].kind == PC_FIELD_STRING && declared(path));
            if (whole ? add_arg(a, path, f[i].str, f[i].str_len, 0) < 0
                      : add_runs(a, path, d, f[i].str_len) < 0)
                return -1;
            continue;
        }
        default:
            if (!numbers) continue;
            break;
        }
        switch (f[i].kind) {
        case PC_FIELD_UINT:
            snprintf(num, sizeof num, "%" PRIu64, f[i].u64);
            break;
        case PC_FIELD_INT:
            snprintf(num, sizeof num, "%" PRId64, f[i].i64);
            break;
        case PC_FIELD_BOOL:
            snprintf(num, sizeof num, "%s", f[i].u64 ? "true" : "false");
            break;
        case PC_FIELD_FLOAT:
        case PC_FIELD_DOUBLE:
            /* JSON has no NaN or infinity; such values cannot carry an attack anyway. */
            if (!isfinite(f[i].f64)) continue;
            snprintf(num, sizeof num, "%.17g", f[i].f64);
            break;
        default:
            continue;
        }
        /* Local rules may constrain numbers (ARGS:json.amount "@lt 0"): inspect_numbers. */
        if (add_arg(a, path, num, strlen(num), 1) < 0) return -1;
    }
    return 0;
}

int waf_args_from_raw(waf_args *a, const uint8_t *d, size_t n)
{
    if (waf_is_text(d, n)) return add_arg(a, "message", (const char *)d, n, 0);
    return add_runs(a, "raw", d, n);
}

int waf_render_args(waf_buf *b, const waf_args *a)
{
    int first = 1;
    if (puts_(b, "{") < 0) return -1;
    for (size_t i = 0; i < a->n; i++) {
        if (put_key(b, &first, a->kv[i].name + 5) < 0) return -1;
        if (a->number[i] ? put(b, a->kv[i].value, a->kv[i].value_len) < 0
                         : put_string(b, a->kv[i].value, a->kv[i].value_len) < 0)
            return -1;
    }
    return puts_(b, "}");
}

int waf_render_fields(waf_buf *b, const pc_field *f, long n, int numbers)
{
    waf_args a;
    waf_args_init(&a);
    int rc = waf_args_from_fields(&a, f, n, numbers);
    if (rc < 0) b->oom = 1;
    if (rc == 0) rc = waf_render_args(b, &a);
    waf_args_free(&a);
    return rc;
}

int waf_render_raw(waf_buf *b, const uint8_t *d, size_t n)
{
    waf_args a;
    waf_args_init(&a);
    int rc = waf_args_from_raw(&a, d, n);
    if (rc < 0) b->oom = 1;
    if (rc == 0) rc = waf_render_args(b, &a);
    waf_args_free(&a);
    return rc;
}
