/* SecLang transformations, reproducing libmodsecurity 3.0.9 (as shipped by Debian 12) byte for byte,
 * quirks included: the comments below say where its result is not what the name suggests.
 *
 * Character classes: where libmodsecurity calls the C library's <ctype.h> functions, the same
 * functions are called here with the same argument (a plain char, hence negative for bytes >= 0x80,
 * where it passes one), so both follow the process's C locale alike. Where it uses the C++ locale
 * facets (lowercase, uppercase: the classic "C" locale, as nothing sets another), only A-Z / a-z
 * change. */
#include "waf_transform.h"

#include <ctype.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Sizes up to which every int-typed index in libmodsecurity's code stays in range. */
#define WT_MAX_LEN WAF_TRANSFORM_MAX_LEN

static const struct {
    const char *name;
    waf_transform_id id;
} wt_names[] = {
    {"none", WT_NONE},
    {"lowercase", WT_LOWERCASE},
    {"uppercase", WT_UPPERCASE},
    {"urlDecode", WT_URLDECODE},
    {"urlDecodeUni", WT_URLDECODEUNI},
    {"htmlEntityDecode", WT_HTMLENTITYDECODE},
    {"jsDecode", WT_JSDECODE},
    {"cssDecode", WT_CSSDECODE},
    {"removeNulls", WT_REMOVENULLS},
    {"replaceNulls", WT_REPLACENULLS},
    {"removeWhitespace", WT_REMOVEWHITESPACE},
    {"compressWhitespace", WT_COMPRESSWHITESPACE},
    {"cmdLine", WT_CMDLINE},
    {"replaceComments", WT_REPLACECOMMENTS},
    {"removeComments", WT_REMOVECOMMENTS},
    {"removeCommentsChar", WT_REMOVECOMMENTSCHAR},
    {"normalisePath", WT_NORMALISEPATH},
    {"normalizePath", WT_NORMALISEPATH},
    {"normalisePathWin", WT_NORMALISEPATHWIN},
    {"normalizePathWin", WT_NORMALISEPATHWIN},
    {"utf8toUnicode", WT_UTF8TOUNICODE},
    {"base64Decode", WT_BASE64DECODE},
    {"base64DecodeExt", WT_BASE64DECODEEXT},
    {"base64Encode", WT_BASE64ENCODE},
    {"hexEncode", WT_HEXENCODE},
    {"hexDecode", WT_HEXDECODE},
    {"sqlHexDecode", WT_SQLHEXDECODE},
    {"escapeSeqDecode", WT_ESCAPESEQDECODE},
    {"sha1", WT_SHA1},
    {"md5", WT_MD5},
    {"length", WT_LENGTH},
    {"trim", WT_TRIM},
    {"trimLeft", WT_TRIMLEFT},
    {"trimRight", WT_TRIMRIGHT},
    {"urlEncode", WT_URLENCODE},
    {"parityEven7bit", WT_PARITYEVEN7BIT},
    {"parityOdd7bit", WT_PARITYODD7BIT},
    {"parityZero7bit", WT_PARITYZERO7BIT},
};

waf_transform_id waf_transform_lookup(const char *name)
{
    if (!name) return WT_UNKNOWN;
    for (size_t i = 0; i < sizeof wt_names / sizeof wt_names[0]; i++)
        if (strcasecmp(name, wt_names[i].name) == 0) return wt_names[i].id;
    return WT_UNKNOWN;
}

const char *waf_transform_name(waf_transform_id t)
{
    /* the first spelling listed is the one libmodsecurity's documentation uses */
    for (size_t i = 0; i < sizeof wt_names / sizeof wt_names[0]; i++)
        if (wt_names[i].id == t) return wt_names[i].name;
    return NULL;
}

size_t waf_transform_max_out(waf_transform_id t, size_t len)
{
    switch (t) {
    case WT_UTF8TOUNICODE:
        return len * 4 + 8;
    case WT_URLENCODE:
        return len * 3;
    case WT_HEXENCODE:
        return len * 2;
    case WT_BASE64ENCODE:
        return (len + 2) / 3 * 4;
    case WT_SHA1:
        return 20;
    case WT_MD5:
        return 16;
    case WT_LENGTH:
        return 20;
    default:
        return len;
    }
}

/* ---- helpers with libmodsecurity's exact arithmetic ---- */

#define WT_VALID_HEX(c)                                                                                      \
    (((c) >= '0' && (c) <= '9') || ((c) >= 'a' && (c) <= 'f') || ((c) >= 'A' && (c) <= 'F'))
#define WT_ISODIGIT(c) ((c) >= '0' && (c) <= '7')

/* Two characters to a byte, without validation (any byte yields something). */
static unsigned char wt_x2c(const unsigned char *p)
{
    unsigned char d = (unsigned char)(p[0] >= 'A' ? ((p[0] & 0xdf) - 'A') + 10 : (p[0] - '0'));
    d = (unsigned char)(d * 16);
    d = (unsigned char)(d + (p[1] >= 'A' ? ((p[1] & 0xdf) - 'A') + 10 : (p[1] - '0')));
    return d;
}

static unsigned char wt_xsingle2c(const unsigned char *p)
{
    return (unsigned char)(p[0] >= 'A' ? ((p[0] & 0xdf) - 'A') + 10 : (p[0] - '0'));
}

/* The C library's isspace() of a byte passed as a (signed) char, as libmodsecurity does in places. */
static int wt_isspace_char(unsigned char c)
{
    return isspace((int)(signed char)c) != 0;
}

static int wt_isspace_uchar(unsigned char c)
{
    return isspace((int)c) != 0;
}

/* Full-width ASCII (U+FF01..U+FF5E) correction of a %uHHHH / \uHHHH decoding. */
static unsigned char wt_fullwidth(unsigned char d, unsigned char h0, unsigned char h1)
{
    if (d > 0x00 && d < 0x5f && (h0 == 'f' || h0 == 'F') && (h1 == 'f' || h1 == 'F')) d += 0x20;
    return d;
}

/* The byte strtol(digits, NULL, base) yields once cast to unsigned char: saturated at LONG_MAX. */
static unsigned char wt_strtol_byte(const unsigned char *p, size_t n, int base)
{
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(p[i] <= '9' ? p[i] - '0' : (p[i] | 0x20) - 'a' + 10);
        if (v > ((unsigned long)LONG_MAX - d) / (unsigned)base) return 0xff; /* LONG_MAX */
        v = v * (unsigned)base + d;
    }
    return (unsigned char)v;
}

/* ---- the transformations ---- */

static size_t wt_urldecode(const unsigned char *in, size_t len, unsigned char *out)
{
    size_t i = 0, n = 0;
    while (i < len) {
        if (in[i] == '%') {
            if (i + 2 < len && WT_VALID_HEX(in[i + 1]) && WT_VALID_HEX(in[i + 2])) {
                out[n++] = wt_x2c(in + i + 1);
                i += 3;
            } else {
                out[n++] = in[i++];
            }
        } else {
            out[n++] = in[i] == '+' ? ' ' : in[i];
            i++;
        }
    }
    return n;
}

/* Without SecUnicodeMapFile: %uHHHH keeps the lower byte (plus the full-width correction). */
static size_t wt_urldecodeuni(const unsigned char *in, size_t len, unsigned char *out)
{
    size_t i = 0, n = 0;
    while (i < len) {
        if (in[i] == '%') {
            if (i + 1 < len && (in[i + 1] == 'u' || in[i + 1] == 'U')) {
                if (i + 5 < len && WT_VALID_HEX(in[i + 2]) && WT_VALID_HEX(in[i + 3]) &&
                    WT_VALID_HEX(in[i + 4]) && WT_VALID_HEX(in[i + 5])) {
                    out[n++] = wt_fullwidth(wt_x2c(in + i + 4), in[i + 2], in[i + 3]);
                    i += 6;
                } else {
                    /* "%u" copied as is, even when a valid %xx follows the 'u' */
                    out[n++] = in[i++];
                    out[n++] = in[i++];
                }
            } else if (i + 2 < len && WT_VALID_HEX(in[i + 1]) && WT_VALID_HEX(in[i + 2])) {
                out[n++] = wt_x2c(in + i + 1);
                i += 3;
            } else {
                out[n++] = in[i++];
            }
        } else {
            out[n++] = in[i] == '+' ? ' ' : in[i];
            i++;
        }
    }
    return n;
}

static size_t wt_htmlentitydecode(const unsigned char *in, size_t len, unsigned char *out)
{
    size_t i = 0, n = 0;
    while (i < len && n < len) {
        size_t copy = 1;
        if (in[i] == '&' && i + 1 < len) {
            size_t j = i + 1, k;
            if (in[j] == '#') {
                copy++;
                if (!(j + 1 < len)) goto copy_raw;
                j++;
                int base = 10;
                if (in[j] == 'x' || in[j] == 'X') {
                    copy++;
                    if (!(j + 1 < len)) goto copy_raw;
                    j++;
                    base = 16;
                }
                k = j;
                while (j < len && (base == 16 ? isxdigit(in[j]) : isdigit(in[j])))
                    j++;
                if (j == k) goto copy_raw;
                out[n++] = wt_strtol_byte(in + k, j - k, base);
                i = (j < len && in[j] == ';') ? j + 1 : j;
                continue;
            }
            k = j;
            while (j < len && isalnum(in[j]))
                j++;
            if (j > k) {
                size_t nl = j - k;
                const char *name = (const char *)in + k;
                unsigned char c;
                if (nl == 4 && strncasecmp(name, "quot", 4) == 0)
                    c = '"';
                else if (nl == 3 && strncasecmp(name, "amp", 3) == 0)
                    c = '&';
                else if (nl == 2 && strncasecmp(name, "lt", 2) == 0)
                    c = '<';
                else if (nl == 2 && strncasecmp(name, "gt", 2) == 0)
                    c = '>';
                else if (nl == 4 && strncasecmp(name, "nbsp", 4) == 0)
                    c = 0xa0;
                else {
                    copy = nl + 1;
                    goto copy_raw;
                }
                out[n++] = c;
                i = (j < len && in[j] == ';') ? j + 1 : j;
                continue;
            }
        }
    copy_raw:
        for (size_t z = 0; z < copy && n < len; z++)
            out[n++] = in[i++];
    }
    return n;
}

/* The letter escapes of C and JavaScript (\a \b \f \n \r \t \v): the byte, or -1. */
static int wt_c_escape(unsigned char c)
{
    static const char letters[] = "abfnrtv", bytes[] = "\a\b\f\n\r\t\v";
    const char *p = memchr(letters, c, sizeof letters - 1);
    return p ? bytes[p - letters] : -1;
}

static size_t wt_jsdecode(const unsigned char *in, size_t len, unsigned char *out)
{
    size_t i = 0, n = 0;
    while (i < len) {
        if (in[i] != '\\') {
            out[n++] = in[i++];
            continue;
        }
        if (i + 5 < len && in[i + 1] == 'u' && WT_VALID_HEX(in[i + 2]) && WT_VALID_HEX(in[i + 3]) &&
            WT_VALID_HEX(in[i + 4]) && WT_VALID_HEX(in[i + 5])) {
            out[n++] = wt_fullwidth(wt_x2c(in + i + 4), in[i + 2], in[i + 3]);
            i += 6;
        } else if (i + 3 < len && in[i + 1] == 'x' && WT_VALID_HEX(in[i + 2]) && WT_VALID_HEX(in[i + 3])) {
            out[n++] = wt_x2c(in + i + 2);
            i += 4;
        } else if (i + 1 < len && WT_ISODIGIT(in[i + 1])) {
            /* up to three octal digits, only two when the first is above '3' */
            size_t j = 0;
            while (i + 1 + j < len && j < 3) {
                j++;
                if (!(i + 1 + j < len && WT_ISODIGIT(in[i + 1 + j]))) break;
            }
            if (j == 3 && in[i + 1] > '3') j = 2;
            unsigned v = 0;
            for (size_t z = 0; z < j; z++)
                v = v * 8 + (unsigned)(in[i + 1 + z] - '0');
            out[n++] = (unsigned char)v;
            i += 1 + j;
        } else if (i + 1 < len) {
            int c = wt_c_escape(in[i + 1]);
            out[n++] = (unsigned char)(c >= 0 ? c : in[i + 1]);
            i += 2;
        } else {
            out[n++] = in[i++]; /* a lone backslash at the end stays */
        }
    }
    return n;
}

/* The decoded value ends at its first NUL byte (libmodsecurity builds its result from a C string). */
static size_t wt_cssdecode(const unsigned char *in, size_t len, unsigned char *out)
{
    size_t i = 0, n = 0;
    while (i < len) {
        if (in[i] != '\\') {
            out[n++] = in[i++];
            continue;
        }
        if (!(i + 1 < len)) { /* a backslash at the end is dropped */
            i++;
            continue;
        }
        i++;
        size_t j = 0;
        while (j < 6 && i + j < len && WT_VALID_HEX(in[i + j]))
            j++;
        if (j > 0) {
            int fullcheck = 0;
            unsigned char d = 0;
            switch (j) {
            case 1:
                d = wt_xsingle2c(in + i);
                break;
            case 2:
            case 3:
                d = wt_x2c(in + i + j - 2);
                break;
            case 4:
                d = wt_x2c(in + i + j - 2);
                fullcheck = 1;
                break;
            case 5:
                d = wt_x2c(in + i + j - 2);
                fullcheck = in[i] == '0';
                break;
            default:
                d = wt_x2c(in + i + j - 2);
                fullcheck = in[i] == '0' && in[i + 1] == '0';
                break;
            }
            if (fullcheck) d = wt_fullwidth(d, in[i + j - 4], in[i + j - 3]);
            out[n++] = d;
            if (i + j < len && wt_isspace_uchar(in[i + j])) j++;
            i += j;
        } else if (in[i] == '\n') {
            i++;
        } else {
            out[n++] = in[i++];
        }
    }
    void *nul = memchr(out, 0, n);
    return nul ? (size_t)((unsigned char *)nul - out) : n;
}

static size_t wt_cmdline(const unsigned char *in, size_t len, unsigned char *out)
{
    size_t n = 0;
    int space = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char a = in[i];
        switch (a) {
        case '"':
        case '\'':
        case '\\':
        case '^':
            break;
        case ' ':
        case ',':
        case ';':
        case '\t':
        case '\r':
        case '\n':
            if (!space) {
                out[n++] = ' ';
                space = 1;
            }
            break;
        case '/':
        case '(':
            if (space) n--;
            space = 0;
            out[n++] = a;
            break;
        default:
            out[n++] = (unsigned char)tolower((int)(signed char)a);
            space = 0;
            break;
        }
    }
    return n;
}

static size_t wt_removecomments(const unsigned char *in, size_t len, unsigned char *out)
{
    size_t i = 0, j = 0;
    int incomment = 0;
    /* Reading in[len] stands for the C string's terminating NUL, which libmodsecurity copies when
     * a comment closes at the very end. */
#define WT_AT(x) ((x) < len ? in[x] : 0)
    while (i < len) {
        if (!incomment) {
            if (in[i] == '/' && i + 1 < len && in[i + 1] == '*') {
                incomment = 1;
                i += 2;
            } else if (in[i] == '<' && i + 3 < len && in[i + 1] == '!' && in[i + 2] == '-' &&
                       in[i + 3] == '-') {
                incomment = 1;
                i += 4;
            } else if (in[i] == '-' && i + 1 < len && in[i + 1] == '-') {
                break;
            } else if (in[i] == '#') {
                break;
            } else {
                out[j++] = in[i++];
            }
        } else {
            if (in[i] == '*' && i + 1 < len && in[i + 1] == '/') {
                incomment = 0;
                i += 2;
                out[j++] = WT_AT(i); /* the byte after the comment, copied unexamined */
                i++;
            } else if (in[i] == '-' && i + 2 < len && in[i + 1] == '-' && in[i + 2] == '>') {
                incomment = 0;
                i += 3;
                out[j++] = WT_AT(i);
                i++;
            } else {
                i++;
            }
        }
    }
#undef WT_AT
    if (incomment) out[j++] = ' ';
    return j;
}

static size_t wt_replacecomments(const unsigned char *in, size_t len, unsigned char *out)
{
    size_t i = 0, j = 0;
    int incomment = 0;
    while (i < len) {
        if (!incomment) {
            if (in[i] == '/' && i + 1 < len && in[i + 1] == '*') {
                incomment = 1;
                i += 2;
            } else {
                out[j++] = in[i++];
            }
        } else {
            if (in[i] == '*' && i + 1 < len && in[i + 1] == '/') {
                incomment = 0;
                i += 2;
                out[j++] = ' ';
            } else {
                i++;
            }
        }
    }
    if (incomment) out[j++] = ' ';
    return j;
}

static size_t wt_removecommentschar(const unsigned char *in, size_t len, unsigned char *out)
{
    size_t i = 0, n = 0;
    while (i < len) {
        if (in[i] == '/' && i + 1 < len && in[i + 1] == '*')
            i += 2;
        else if (in[i] == '*' && i + 1 < len && in[i + 1] == '/')
            i += 2;
        else if (in[i] == '<' && i + 3 < len && in[i + 1] == '!' && in[i + 2] == '-' && in[i + 3] == '-')
            i += 4;
        else if (in[i] == '-' && i + 2 < len && in[i + 1] == '-' && in[i + 2] == '>')
            i += 3;
        else if (in[i] == '-' && i + 1 < len && in[i + 1] == '-')
            i += 2;
        else if (in[i] == '#')
            i += 1;
        else
            out[n++] = in[i++];
    }
    return n;
}

/* Path normalisation in place on b[0..len), with libmodsecurity's algorithm (indices instead of
 * pointers, so that its transient step before the start of the buffer stays defined). */
static size_t wt_normalize_path(unsigned char *b, size_t len, int win)
{
    if (len == 0) return 0;
    long src = 0, dst = 0, end = (long)len - 1, ldst = 1;
    int hitroot = 0, done = 0;
    int relative = (b[0] == '/' || (win && b[0] == '\\')) ? 0 : 1;
    int trailing = (b[end] == '/' || (win && b[end] == '\\')) ? 1 : 0;

    while (!done && src <= end && dst <= end) {
        if (win) {
            if (b[src] == '\\') b[src] = '/';
            if (src < end && b[src + 1] == '\\') b[src + 1] = '/';
        }
        if (src == end)
            done = 1;
        else if (b[src + 1] != '/')
            goto copy;

        if (src != end && b[src] == '/') {
            goto copy;
        } else if (b[src] == '.') {
            if (dst > 0 && b[dst - 1] == '.') {
                if (relative && (hitroot || dst - 2 <= 0)) {
                    hitroot = 1;
                    goto copy;
                }
                dst -= 3;
                while (dst > 0 && b[dst] != '/')
                    dst--;
                if (dst <= 0) {
                    hitroot = 1;
                    dst = 0;
                    if (!relative && src == end) dst++;
                }
                if (done) goto length;
                src++;
            } else if (dst == 0) {
                if (done) goto length;
                src++;
            } else if (b[dst - 1] == '/') {
                if (done) goto length;
                dst--;
                src++;
            }
        } else if (dst > 0) {
            hitroot = 0;
        }

    copy:
        if (b[src] == '/') {
            while (src < end && (b[src + 1] == '/' || (win && b[src + 1] == '\\')))
                src++;
            if (relative && dst == 0) {
                src++;
                goto length;
            }
        }
        b[dst++] = b[src++];

    length:
        ldst = dst;
    }
    if (!trailing && dst > 0 && b[dst - 1] == '/') ldst--;
    return (size_t)ldst;
}

static size_t wt_put_unicode(unsigned char *out, unsigned d)
{
    char hex[16];
    int l = snprintf(hex, sizeof hex, "%x", d);
    size_t n = 0;
    out[n++] = '%';
    out[n++] = 'u';
    for (int z = l; z < 4; z++)
        out[n++] = '0';
    for (int z = 0; z < l; z++)
        out[n++] = (unsigned char)hex[z];
    return n;
}

/* libmodsecurity walks the value plus its terminating NUL and returns a C string: NUL bytes inside
 * the value vanish; a lead byte whose sequence is cut short or malformed vanishes too (except
 * 0xF5..0xF7, always copied); overlong forms and surrogates get the lead byte appended; the
 * "enough bytes" checks look at the whole length, not at what is left. */
static size_t wt_utf8tounicode(const unsigned char *in, size_t len, unsigned char *out)
{
    size_t total = len + 1, i = 0, n = 0;
#define WT_B(x) ((x) < len ? in[x] : 0)
    while (i < total) {
        unsigned char c = WT_B(i);
        long ulen = 0;
        unsigned d = 0;
        if ((c & 0x80) == 0) {
            if (c != 0) out[n++] = c; /* a NUL is written without advancing: overwritten */
        } else if ((c & 0xE0) == 0xC0) {
            if (total < 2 || (WT_B(i + 1) & 0xC0) != 0x80) {
                ulen = -1;
            } else {
                ulen = 2;
                d = ((unsigned)(c & 0x1F) << 6) | (WT_B(i + 1) & 0x3F);
                n += wt_put_unicode(out + n, d);
            }
        } else if ((c & 0xF0) == 0xE0) {
            if (total < 3 || (WT_B(i + 1) & 0xC0) != 0x80 || (WT_B(i + 2) & 0xC0) != 0x80) {
                ulen = -1;
            } else {
                ulen = 3;
                d = ((unsigned)(c & 0x0F) << 12) | ((unsigned)(WT_B(i + 1) & 0x3F) << 6) |
                    (WT_B(i + 2) & 0x3F);
                n += wt_put_unicode(out + n, d);
            }
        } else if ((c & 0xF8) == 0xF0) {
            if (c >= 0xF5) out[n++] = c;
            if (total < 4 || (WT_B(i + 1) & 0xC0) != 0x80 || (WT_B(i + 2) & 0xC0) != 0x80 ||
                (WT_B(i + 3) & 0xC0) != 0x80) {
                ulen = -1;
            } else {
                ulen = 4;
                d = ((unsigned)(c & 0x07) << 18) | ((unsigned)(WT_B(i + 1) & 0x3F) << 12) |
                    ((unsigned)(WT_B(i + 2) & 0x3F) << 6) | (WT_B(i + 3) & 0x3F);
                n += wt_put_unicode(out + n, d);
            }
        } else {
            out[n++] = c;
        }
        if (d >= 0xD800 && d <= 0xDFFF) out[n++] = c;
        if ((ulen == 4 && d < 0x010000) || (ulen == 3 && d < 0x0800) || (ulen == 2 && d < 0x80)) out[n++] = c;
        i += ulen > 0 ? (size_t)ulen : 1;
    }
#undef WT_B
    return n;
}

static const unsigned char wt_b64_dec[128] = {
    127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127,
    127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127, 127,
    127, 127, 127, 127, 127, 62,  127, 127, 127, 63,  52,  53,  54,  55,  56,  57,  58,  59,  60,
    61,  127, 127, 127, 64,  127, 127, 127, 0,   1,   2,   3,   4,   5,   6,   7,   8,   9,   10,
    11,  12,  13,  14,  15,  16,  17,  18,  19,  20,  21,  22,  23,  24,  25,  127, 127, 127, 127,
    127, 127, 26,  27,  28,  29,  30,  31,  32,  33,  34,  35,  36,  37,  38,  39,  40,  41,  42,
    43,  44,  45,  46,  47,  48,  49,  50,  51,  127, 127, 127, 127, 127};

/* base64Decode: the value up to its first NUL, strictly validated (spaces only before a line end
 * or at the end, at most two '=', nothing after them); invalid gives "". Only complete groups of
 * four characters decode: a trailing partial group is dropped. */
static size_t wt_base64decode(const unsigned char *in, size_t len, unsigned char *out)
{
    const unsigned char *nul = memchr(in, 0, len);
    size_t slen = nul ? (size_t)(nul - in) : len;
    size_t i, eq = 0, cnt = 0;
    for (i = 0; i < slen; i++) {
        size_t sp = 0;
        while (i < slen && in[i] == ' ') {
            i++;
            sp++;
        }
        if (i == slen) break;
        if (slen - i >= 2 && in[i] == '\r' && in[i + 1] == '\n') continue;
        if (in[i] == '\n') continue;
        if (sp) return 0;
        if (in[i] == '=' && ++eq > 2) return 0;
        if (in[i] > 127 || wt_b64_dec[in[i]] == 127) return 0;
        if (wt_b64_dec[in[i]] < 64 && eq) return 0;
        cnt++;
    }
    if (cnt == 0) return 0;
    size_t n = 0, g = 0;
    unsigned pads = 3;
    uint32_t x = 0;
    for (i = 0; i < slen; i++) {
        unsigned char c = in[i];
        if (c == '\r' || c == '\n' || c == ' ') continue;
        pads -= wt_b64_dec[c] == 64;
        x = (x << 6) | (wt_b64_dec[c] & 0x3F);
        if (++g == 4) {
            g = 0;
            if (pads > 0) out[n++] = (unsigned char)(x >> 16);
            if (pads > 1) out[n++] = (unsigned char)(x >> 8);
            if (pads > 2) out[n++] = (unsigned char)x;
        }
    }
    return n;
}

static int wt_b64_forgiving(unsigned char c)
{
    if (c >= 128) return -2;
    unsigned char v = wt_b64_dec[c];
    if (v < 64) return v;
    return c == '\t' || c == '\n' || c == '\r' || c == ' ' ? -1 : -2;
}

/* base64DecodeExt: skips whatever is not base64; "" when a '=' stands where a second character of
 * a group is expected and no '=' follows it, or when the input ends that way after a '=' or a '9'
 * (its value 61 is taken for the '=' character). */
static size_t wt_base64decodeext(const unsigned char *in, size_t len, unsigned char *out)
{
    size_t i, q = 0, n = 0;
    int ch = 0;
    unsigned acc = 0;
    for (i = 0; i < len; i++) {
        ch = in[i];
        if (ch == '=') {
            unsigned char next = i + 1 < len ? in[i + 1] : 0;
            if (next != '=' && q % 4 == 1) return 0;
            continue;
        }
        ch = wt_b64_forgiving(in[i]);
        if (ch < 0) continue;
        switch (q % 4) {
        case 0:
            acc = (unsigned)ch << 2;
            break;
        case 1:
            out[n++] = (unsigned char)(acc | ((unsigned)ch >> 4));
            acc = ((unsigned)ch & 0x0f) << 4;
            break;
        case 2:
            out[n++] = (unsigned char)(acc | ((unsigned)ch >> 2));
            acc = ((unsigned)ch & 0x03) << 6;
            break;
        default:
            out[n++] = (unsigned char)(acc | (unsigned)ch);
            break;
        }
        q++;
    }
    if (ch == '=' && q % 4 == 1) return 0;
    return n;
}

static size_t wt_base64encode(const unsigned char *in, size_t len, unsigned char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0, n = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[n++] = (unsigned char)tab[(v >> 18) & 63];
        out[n++] = (unsigned char)tab[(v >> 12) & 63];
        out[n++] = (unsigned char)tab[(v >> 6) & 63];
        out[n++] = (unsigned char)tab[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
        out[n++] = (unsigned char)tab[(v >> 18) & 63];
        out[n++] = (unsigned char)tab[(v >> 12) & 63];
        out[n++] = i + 1 < len ? (unsigned char)tab[(v >> 6) & 63] : '=';
        out[n++] = '=';
    }
    return n;
}

/* sqlHexDecode: the last byte of the value is never looked at (dropped unless it directly follows
 * a decoded 0x.. run), a NUL ends the value, and the result ends at its first NUL. */
static size_t wt_sqlhexdecode(const unsigned char *in, size_t len, unsigned char *out)
{
    size_t p = 0, n = 0;
#define WT_B(x) ((x) < len ? in[x] : 0)
    if (len == 0) return 0;
    while (p + 1 < len && in[p]) {
        if (in[p] == '0' && (in[p + 1] == 'x' || in[p + 1] == 'X') && WT_VALID_HEX(WT_B(p + 2)) &&
            WT_VALID_HEX(WT_B(p + 3))) {
            size_t q = p + 2;
            while (WT_VALID_HEX(WT_B(q)) && WT_VALID_HEX(WT_B(q + 1))) {
                out[n++] = wt_x2c(in + q);
                q += 2;
            }
            out[n++] = WT_B(q);
            p = q + 1;
        } else {
            out[n++] = in[p++];
        }
    }
#undef WT_B
    void *nul = memchr(out, 0, n);
    return nul ? (size_t)((unsigned char *)nul - out) : n;
}

static size_t wt_escapeseqdecode(const unsigned char *in, size_t len, unsigned char *out)
{
    size_t i = 0, n = 0;
    while (i < len) {
        if (!(in[i] == '\\' && i + 1 < len)) {
            out[n++] = in[i++];
            continue;
        }
        int c = wt_c_escape(in[i + 1]);
        if (in[i + 1] == '\\' || in[i + 1] == '?' || in[i + 1] == '\'' || in[i + 1] == '"') c = in[i + 1];
        if (c != -1) {
            i += 2;
        } else if (in[i + 1] == 'x' || in[i + 1] == 'X') {
            if (i + 3 < len && isxdigit(in[i + 2]) && isxdigit(in[i + 3])) {
                c = wt_x2c(in + i + 2);
                i += 4;
            }
        } else if (WT_ISODIGIT(in[i + 1])) {
            size_t j = 0;
            unsigned v = 0;
            while (i + 1 + j < len && j < 3) {
                v = v * 8 + (unsigned)(in[i + 1 + j] - '0');
                j++;
                if (!(i + 1 + j < len && WT_ISODIGIT(in[i + 1 + j]))) break;
            }
            c = (int)v;
            i += 1 + j;
        }
        if (c == -1) {
            out[n++] = in[i + 1];
            i += 2;
        } else {
            out[n++] = (unsigned char)c;
        }
    }
    return n;
}

/* ---- digests (self-contained: the WAF library links no crypto library) ---- */

static uint32_t wt_rol(uint32_t x, unsigned r)
{
    return (x << r) | (x >> (32 - r));
}

static void wt_sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = wt_rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999u;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1u;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDCu;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6u;
        }
        uint32_t t = wt_rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = wt_rol(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

static const uint32_t wt_md5_k[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};
static const unsigned char wt_md5_r[64] = {7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
                                           5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20, 5, 9,  14, 20,
                                           4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
                                           6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21};

static void wt_md5_block(uint32_t h[4], const unsigned char *p)
{
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
               (uint32_t)p[4 * i + 3] << 24;
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3];
    for (int i = 0; i < 64; i++) {
        uint32_t f;
        int g;
        if (i < 16) {
            f = (b & c) | (~b & d);
            g = i;
        } else if (i < 32) {
            f = (d & b) | (~d & c);
            g = (5 * i + 1) % 16;
        } else if (i < 48) {
            f = b ^ c ^ d;
            g = (3 * i + 5) % 16;
        } else {
            f = c ^ (b | ~d);
            g = (7 * i) % 16;
        }
        uint32_t t = d;
        d = c;
        c = b;
        b = b + wt_rol(a + f + wt_md5_k[i] + m[g], wt_md5_r[i]);
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
}

/* Merkle-Damgard padding shared by both: big-endian length for SHA-1, little-endian for MD5. */
static void wt_digest(const unsigned char *in, size_t len, int md5, void *state)
{
    unsigned char block[64];
    size_t i = 0;
    for (; i + 64 <= len; i += 64) {
        if (md5)
            wt_md5_block(state, in + i);
        else
            wt_sha1_block(state, in + i);
    }
    size_t rest = len - i;
    memset(block, 0, sizeof block);
    memcpy(block, in + i, rest);
    block[rest] = 0x80;
    if (rest >= 56) {
        if (md5)
            wt_md5_block(state, block);
        else
            wt_sha1_block(state, block);
        memset(block, 0, sizeof block);
    }
    uint64_t bits = (uint64_t)len * 8;
    for (int z = 0; z < 8; z++)
        block[md5 ? 56 + z : 63 - z] = (unsigned char)(bits >> (8 * z));
    if (md5)
        wt_md5_block(state, block);
    else
        wt_sha1_block(state, block);
}

static size_t wt_sha1(const unsigned char *in, size_t len, unsigned char *out)
{
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    wt_digest(in, len, 0, h);
    for (int i = 0; i < 20; i++)
        out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
    return 20;
}

static size_t wt_md5(const unsigned char *in, size_t len, unsigned char *out)
{
    uint32_t h[4] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u};
    wt_digest(in, len, 1, h);
    for (int i = 0; i < 16; i++)
        out[i] = (unsigned char)(h[i / 4] >> (8 * (i % 4)));
    return 16;
}

static unsigned char wt_parity(unsigned char x, int even)
{
    unsigned v = (x ^ (x >> 4)) & 0xf;
    int odd_bits = (0x6996 >> v) & 1;
    if (odd_bits == even) return (unsigned char)(x | 0x80);
    return (unsigned char)(x & 0x7f);
}

size_t waf_transform_apply(waf_transform_id t, const char *cin, size_t len, char *cout)
{
    const unsigned char *in = (const unsigned char *)cin;
    unsigned char *out = (unsigned char *)cout;
    size_t n = 0, i;

    if (t <= WT_UNKNOWN || t >= WT_COUNT || (len && !in) || !out) return (size_t)-1;
    if (len > WT_MAX_LEN) return (size_t)-1;

    switch (t) {
    case WT_NONE:
        if (len) memcpy(out, in, len);
        n = len;
        break;
    case WT_LOWERCASE:
        for (i = 0; i < len; i++)
            out[i] = (unsigned char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
        n = len;
        break;
    case WT_UPPERCASE:
        for (i = 0; i < len; i++)
            out[i] = (unsigned char)(in[i] >= 'a' && in[i] <= 'z' ? in[i] - 32 : in[i]);
        n = len;
        break;
    case WT_URLDECODE:
        n = wt_urldecode(in, len, out);
        break;
    case WT_URLDECODEUNI:
        n = wt_urldecodeuni(in, len, out);
        break;
    case WT_HTMLENTITYDECODE:
        n = wt_htmlentitydecode(in, len, out);
        break;
    case WT_JSDECODE:
        n = wt_jsdecode(in, len, out);
        break;
    case WT_CSSDECODE:
        n = wt_cssdecode(in, len, out);
        break;
    case WT_REMOVENULLS:
        for (i = 0; i < len; i++)
            if (in[i]) out[n++] = in[i];
        break;
    case WT_REPLACENULLS:
        for (i = 0; i < len; i++)
            out[i] = in[i] ? in[i] : ' ';
        n = len;
        break;
    case WT_REMOVEWHITESPACE:
        for (i = 0; i < len; i++)
            if (!wt_isspace_uchar(in[i]) && in[i] != 0xa0 && in[i] != 0xc2) out[n++] = in[i];
        break;
    case WT_COMPRESSWHITESPACE: {
        int inws = 0;
        for (i = 0; i < len; i++) {
            if (wt_isspace_char(in[i])) {
                if (!inws) out[n++] = ' ';
                inws = 1;
            } else {
                inws = 0;
                out[n++] = in[i];
            }
        }
        break;
    }
    case WT_CMDLINE:
        n = wt_cmdline(in, len, out);
        break;
    case WT_REPLACECOMMENTS:
        n = wt_replacecomments(in, len, out);
        break;
    case WT_REMOVECOMMENTS:
        n = wt_removecomments(in, len, out);
        break;
    case WT_REMOVECOMMENTSCHAR:
        n = wt_removecommentschar(in, len, out);
        break;
    case WT_NORMALISEPATH:
    case WT_NORMALISEPATHWIN:
        if (len) memcpy(out, in, len);
        n = wt_normalize_path(out, len, t == WT_NORMALISEPATHWIN);
        break;
    case WT_UTF8TOUNICODE:
        n = wt_utf8tounicode(in, len, out);
        break;
    case WT_BASE64DECODE:
        n = wt_base64decode(in, len, out);
        break;
    case WT_BASE64DECODEEXT:
        n = wt_base64decodeext(in, len, out);
        break;
    case WT_BASE64ENCODE:
        n = wt_base64encode(in, len, out);
        break;
    case WT_HEXENCODE: {
        static const char hex[] = "0123456789abcdef";
        for (i = 0; i < len; i++) {
            out[n++] = (unsigned char)hex[in[i] >> 4];
            out[n++] = (unsigned char)hex[in[i] & 15];
        }
        break;
    }
    case WT_HEXDECODE:
        for (i = 0; i + 1 < len; i += 2)
            out[n++] = wt_x2c(in + i);
        break;
    case WT_SQLHEXDECODE:
        n = wt_sqlhexdecode(in, len, out);
        break;
    case WT_ESCAPESEQDECODE:
        n = wt_escapeseqdecode(in, len, out);
        break;
    case WT_SHA1:
        n = wt_sha1(in, len, out);
        break;
    case WT_MD5:
        n = wt_md5(in, len, out);
        break;
    case WT_LENGTH:
        n = (size_t)snprintf(cout, 21, "%zu", len);
        break;
    case WT_TRIM:
    case WT_TRIMLEFT:
    case WT_TRIMRIGHT: {
        size_t b = 0, e = len;
        if (t != WT_TRIMLEFT)
            while (e > 0 && wt_isspace_uchar(in[e - 1]))
                e--;
        if (t != WT_TRIMRIGHT)
            while (b < e && wt_isspace_uchar(in[b]))
                b++;
        n = e - b;
        if (n) memmove(out, in + b, n);
        break;
    }
    case WT_URLENCODE: {
        static const char hex[] = "0123456789abcdef";
        for (i = 0; i < len; i++) {
            unsigned char c = in[i];
            if (c == ' ') {
                out[n++] = '+';
            } else if (c == '*' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
                       (c >= 'a' && c <= 'z')) {
                out[n++] = c;
            } else {
                out[n++] = '%';
                out[n++] = (unsigned char)hex[c >> 4];
                out[n++] = (unsigned char)hex[c & 15];
            }
        }
        break;
    }
    case WT_PARITYEVEN7BIT:
    case WT_PARITYODD7BIT:
        for (i = 0; i < len; i++)
            out[i] = wt_parity(in[i], t == WT_PARITYEVEN7BIT);
        n = len;
        break;
    case WT_PARITYZERO7BIT:
        for (i = 0; i < len; i++)
            out[i] = in[i] & 0x7f;
        n = len;
        break;
    default:
        return (size_t)-1;
    }
    out[n] = '\0';
    return n;
}

/* ---- identity scans: 1 only when the transformation certainly returns its input ---- */

static int wt_no_byte(const unsigned char *in, size_t len, unsigned char a)
{
    return memchr(in, a, len) == NULL;
}

static int wt_no_pair(const unsigned char *in, size_t len, unsigned char a, unsigned char b)
{
    for (size_t i = 0; i + 1 < len; i++)
        if (in[i] == a && in[i + 1] == b) return 0;
    return 1;
}

int waf_transform_identity(waf_transform_id t, const char *cin, size_t len)
{
    const unsigned char *in = (const unsigned char *)cin;
    size_t i;

    if (t <= WT_UNKNOWN || t >= WT_COUNT || len > WT_MAX_LEN) return 0;
    if (len == 0) return t != WT_LENGTH && t != WT_SHA1 && t != WT_MD5;
    if (!in) return 0;

    switch (t) {
    case WT_NONE:
        return 1;
    case WT_LOWERCASE:
        for (i = 0; i < len; i++)
            if (in[i] >= 'A' && in[i] <= 'Z') return 0;
        return 1;
    case WT_UPPERCASE:
        for (i = 0; i < len; i++)
            if (in[i] >= 'a' && in[i] <= 'z') return 0;
        return 1;
    case WT_URLDECODE:
    case WT_URLDECODEUNI:
        return wt_no_byte(in, len, '%') && wt_no_byte(in, len, '+');
    case WT_HTMLENTITYDECODE:
        return wt_no_byte(in, len, '&');
    case WT_JSDECODE:
    case WT_ESCAPESEQDECODE:
        return wt_no_byte(in, len, '\\');
    case WT_CSSDECODE:
        return wt_no_byte(in, len, '\\') && wt_no_byte(in, len, 0);
    case WT_REMOVENULLS:
    case WT_REPLACENULLS:
        return wt_no_byte(in, len, 0);
    case WT_REMOVEWHITESPACE:
        for (i = 0; i < len; i++)
            if (wt_isspace_uchar(in[i]) || in[i] == 0xa0 || in[i] == 0xc2) return 0;
        return 1;
    case WT_COMPRESSWHITESPACE:
        for (i = 0; i < len; i++)
            if (wt_isspace_char(in[i]) && (in[i] != ' ' || (i > 0 && wt_isspace_char(in[i - 1])))) return 0;
        return 1;
    case WT_CMDLINE:
        for (i = 0; i < len; i++) {
            unsigned char c = in[i];
            /* the bytes cmdLine deletes or turns into spaces: " ' \ ^ , ; \t \r \n */
            if (c == '"' || c == '\'' || c == '\\' || c == '^' || c == ',' || c == ';' || c == '\t' ||
                c == '\r' || c == '\n')
                return 0;
            if (c == ' ' && i + 1 < len && (in[i + 1] == ' ' || in[i + 1] == '/' || in[i + 1] == '('))
                return 0;
            if (c != ' ' && c != '/' && c != '(' && (unsigned char)tolower((int)(signed char)c) != c)
                return 0;
        }
        return 1;
    case WT_REPLACECOMMENTS:
        return wt_no_pair(in, len, '/', '*');
    case WT_REMOVECOMMENTS:
        return wt_no_byte(in, len, '#') && wt_no_pair(in, len, '-', '-') && wt_no_pair(in, len, '/', '*');
    case WT_REMOVECOMMENTSCHAR:
        return wt_no_byte(in, len, '#') && wt_no_pair(in, len, '-', '-') && wt_no_pair(in, len, '/', '*') &&
               wt_no_pair(in, len, '*', '/');
    case WT_NORMALISEPATH:
        return wt_no_byte(in, len, '/') && in[len - 1] != '.';
    case WT_NORMALISEPATHWIN:
        return wt_no_byte(in, len, '/') && wt_no_byte(in, len, '\\') && in[len - 1] != '.';
    case WT_UTF8TOUNICODE:
        for (i = 0; i < len; i++)
            if (in[i] == 0 || in[i] >= 0x80) return 0;
        return 1;
    case WT_TRIM:
        return !wt_isspace_uchar(in[0]) && !wt_isspace_uchar(in[len - 1]);
    case WT_TRIMLEFT:
        return !wt_isspace_uchar(in[0]);
    case WT_TRIMRIGHT:
        return !wt_isspace_uchar(in[len - 1]);
    case WT_URLENCODE:
        for (i = 0; i < len; i++) {
            unsigned char c = in[i];
            if (!(c == '*' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
                return 0;
        }
        return 1;
    case WT_PARITYEVEN7BIT:
    case WT_PARITYODD7BIT:
        for (i = 0; i < len; i++)
            if (wt_parity(in[i], t == WT_PARITYEVEN7BIT) != in[i]) return 0;
        return 1;
    case WT_PARITYZERO7BIT:
        for (i = 0; i < len; i++)
            if (in[i] & 0x80) return 0;
        return 1;
    default:
        return 0;
    }
}

/* Whether byte c, wherever it stands in a value, can make waf_transform_identity(t) say "changed":
 * each case lists every byte that function's case tests for (pairs and first/last-byte tests count
 * each byte they look at). */
static int wt_trigger(waf_transform_id t, unsigned char c)
{
    switch (t) {
    case WT_NONE:
        return 0;
    case WT_LOWERCASE:
        return c >= 'A' && c <= 'Z';
    case WT_UPPERCASE:
        return c >= 'a' && c <= 'z';
    case WT_URLDECODE:
    case WT_URLDECODEUNI:
        return c == '%' || c == '+';
    case WT_HTMLENTITYDECODE:
        return c == '&';
    case WT_JSDECODE:
    case WT_ESCAPESEQDECODE:
        return c == '\\';
    case WT_CSSDECODE:
        return c == '\\' || c == 0;
    case WT_REMOVENULLS:
    case WT_REPLACENULLS:
        return c == 0;
    case WT_REMOVEWHITESPACE:
        return wt_isspace_uchar(c) || c == 0xa0 || c == 0xc2;
    case WT_COMPRESSWHITESPACE:
        return wt_isspace_char(c);
    case WT_CMDLINE:
        return c == '"' || c == '\'' || c == '\\' || c == '^' || c == ',' || c == ';' || c == '\t' ||
               c == '\r' || c == '\n' || c == ' ' ||
               (c != '/' && c != '(' && (unsigned char)tolower((int)(signed char)c) != c);
    case WT_REPLACECOMMENTS:
        return c == '/';
    case WT_REMOVECOMMENTS:
        return c == '#' || c == '-' || c == '/';
    case WT_REMOVECOMMENTSCHAR:
        return c == '#' || c == '-' || c == '/' || c == '*';
    case WT_NORMALISEPATH:
        return c == '/' || c == '.';
    case WT_NORMALISEPATHWIN:
        return c == '/' || c == '\\' || c == '.';
    case WT_UTF8TOUNICODE:
        return c == 0 || c >= 0x80;
    case WT_TRIM:
    case WT_TRIMLEFT:
    case WT_TRIMRIGHT:
        return wt_isspace_uchar(c);
    case WT_URLENCODE:
        return !(c == '*' || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'));
    case WT_PARITYEVEN7BIT:
    case WT_PARITYODD7BIT:
        return wt_parity(c, t == WT_PARITYEVEN7BIT) != c;
    case WT_PARITYZERO7BIT:
        return (c & 0x80) != 0;
    default:
        return 1;
    }
}

void waf_transform_trigger_masks(uint64_t masks[256])
{
    for (unsigned c = 0; c < 256; c++) {
        masks[c] = 0;
        for (int t = 0; t < WT_COUNT; t++)
            if (wt_trigger((waf_transform_id)t, (unsigned char)c)) masks[c] |= (uint64_t)1 << t;
    }
}
