/* JSON text into a fixed buffer: runs of plain bytes copied at once, escapes from a table. */
#include "json_out.h"

#include <string.h>

void pc__json_init(pc_json *j, char *buf, size_t cap)
{
    *j = (pc_json){.buf = buf, .cap = cap, .first = true};
}

static inline void put(pc_json *j, const char *s, size_t n)
{
    if (j->overflow || n > j->cap - j->len) {
        j->overflow = true;
        return;
    }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
}

static inline void put_c(pc_json *j, char c)
{
    if (j->overflow || j->len == j->cap) {
        j->overflow = true;
        return;
    }
    j->buf[j->len++] = c;
}

/* 1: the byte needs an escape (a control character, the quote or the backslash). */
static const unsigned char needs_escape[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,         1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, ['"'] = 1, ['\\'] = 1,
};

static void escape(pc_json *j, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF"; /* as yajl writes them */
    char e[6] = {'\\', 0, 0, 0, 0, 0};
    size_t n = 2;
    switch (c) {
    case '"':
        e[1] = '"';
        break;
    case '\\':
        e[1] = '\\';
        break;
    case '\b':
        e[1] = 'b';
        break;
    case '\f':
        e[1] = 'f';
        break;
    case '\n':
        e[1] = 'n';
        break;
    case '\r':
        e[1] = 'r';
        break;
    case '\t':
        e[1] = 't';
        break;
    default:
        e[1] = 'u';
        e[2] = '0';
        e[3] = '0';
        e[4] = hex[c >> 4];
        e[5] = hex[c & 15];
        n = 6;
    }
    put(j, e, n);
}

static void string(pc_json *j, const char *s, size_t len)
{
    put_c(j, '"');
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!needs_escape[c]) continue;
        put(j, s + run, i - run);
        escape(j, c);
        run = i + 1;
    }
    put(j, s + run, len - run);
    put_c(j, '"');
}

static void value_start(pc_json *j)
{
    j->first = false;
}

void pc__json_open(pc_json *j)
{
    put_c(j, '{');
    j->first = true;
}

void pc__json_close(pc_json *j)
{
    put_c(j, '}');
    j->first = false;
}

void pc__json_key(pc_json *j, const char *key, size_t len)
{
    if (!j->first) put_c(j, ',');
    string(j, key, len);
    put_c(j, ':');
    j->first = true; /* the value follows without a comma */
}

void pc__json_key_raw(pc_json *j, const char *quoted, size_t len)
{
    if (!j->first) put_c(j, ',');
    put(j, quoted, len);
    j->first = true;
}

void pc__json_str(pc_json *j, const char *s, size_t len)
{
    string(j, s, len);
    value_start(j);
}

void pc__json_null(pc_json *j)
{
    put(j, "null", 4);
    value_start(j);
}

void pc__json_bool(pc_json *j, bool v)
{
    if (v)
        put(j, "true", 4);
    else
        put(j, "false", 5);
    value_start(j);
}

void pc__json_number(pc_json *j, const char *text, size_t len)
{
    put(j, text, len);
    value_start(j);
}

void pc__json_uint(pc_json *j, uint64_t v)
{
    char buf[24], *p = buf + sizeof buf;
    do
        *--p = (char)('0' + v % 10);
    while ((v /= 10));
    pc__json_number(j, p, (size_t)(buf + sizeof buf - p));
}

void pc__json_ms(pc_json *j, uint64_t ns)
{
    uint64_t us = (ns + 500) / 1000;
    char buf[32], *p = buf + sizeof buf;
    unsigned frac = (unsigned)(us % 1000);
    *--p = (char)('0' + frac % 10);
    *--p = (char)('0' + frac / 10 % 10);
    *--p = (char)('0' + frac / 100);
    *--p = '.';
    uint64_t whole = us / 1000;
    do
        *--p = (char)('0' + whole % 10);
    while ((whole /= 10));
    pc__json_number(j, p, (size_t)(buf + sizeof buf - p));
}
