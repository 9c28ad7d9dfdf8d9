/* The transformations of SecLang rules (t:lowercase, t:urlDecodeUni, ...), byte for byte as
 * libmodsecurity 3.0.9 computes them, for the WAF fast path. A transformation the fast path cannot
 * reproduce exactly for a given value says so, and the value is judged by libmodsecurity instead. */
#ifndef PC_WAF_TRANSFORM_H
#define PC_WAF_TRANSFORM_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    WT_UNKNOWN = -1, /* not a transformation this file knows: rules using it cannot be covered */
    WT_NONE = 0,
    WT_LOWERCASE,
    WT_UPPERCASE,
    WT_URLDECODE,
    WT_URLDECODEUNI, /* as without SecUnicodeMapFile (%uHHHH keeps its low byte, full-width ASCII
                      * U+FF01..U+FF5E mapped to ASCII): with a unicode map the result differs */
    WT_HTMLENTITYDECODE,
    WT_JSDECODE,
    WT_CSSDECODE,
    WT_REMOVENULLS,
    WT_REPLACENULLS,
    WT_REMOVEWHITESPACE,
    WT_COMPRESSWHITESPACE,
    WT_CMDLINE,
    WT_REPLACECOMMENTS,
    WT_REMOVECOMMENTS,
    WT_REMOVECOMMENTSCHAR,
    WT_NORMALISEPATH,
    WT_NORMALISEPATHWIN,
    WT_UTF8TOUNICODE,
    WT_BASE64DECODE,
    WT_BASE64DECODEEXT,
    WT_BASE64ENCODE,
    WT_HEXENCODE,
    WT_HEXDECODE,
    WT_SQLHEXDECODE,
    WT_ESCAPESEQDECODE,
    WT_SHA1,
    WT_MD5,
    WT_LENGTH,
    WT_TRIM,
    WT_TRIMLEFT,
    WT_TRIMRIGHT,
    WT_URLENCODE,
    WT_PARITYEVEN7BIT,
    WT_PARITYODD7BIT,
    WT_PARITYZERO7BIT,
    WT_COUNT
} waf_transform_id;

/* The id for a name as written after "t:" (case-insensitive, both spellings libmodsecurity
 * accepts, e.g. normalisePath and normalizePath); WT_UNKNOWN otherwise. */
waf_transform_id waf_transform_lookup(const char *name);

/* The name of a transformation as SecLang spells it ("urlDecodeUni"); NULL for WT_UNKNOWN. */
const char *waf_transform_name(waf_transform_id t);

/* The upper bound of the output length for an input of `len` bytes (for sizing `out`). */
size_t waf_transform_max_out(waf_transform_id t, size_t len);

/* Applies t to in[0..len) into out (at least waf_transform_max_out(t, len) bytes plus one; the
 * output is NUL-terminated but may contain NUL bytes). Returns the output length, or (size_t)-1
 * when this implementation cannot promise libmodsecurity's exact result for this input. */
size_t waf_transform_apply(waf_transform_id t, const char *in, size_t len, char *out);

/* 1 when t leaves every input of `len` bytes at in unchanged, computed cheaply (a byte scan) so
 * the fast path can skip the copy; 0 when it may change it (then use waf_transform_apply). */
int waf_transform_identity(waf_transform_id t, const char *in, size_t len);

/* Per byte value, the transformations (bit 1 << t) for which that byte is a trigger: a value of
 * 1..WAF_TRANSFORM_MAX_LEN bytes none of which triggers t is one waf_transform_identity(t) calls
 * unchanged. ORing the masks of a value's bytes, once, decides every transformation whose triggers
 * it lacks without scanning the value again. A transformation that changes most values (length,
 * md5, base64Decode, ...) has every byte as a trigger. */
void waf_transform_trigger_masks(uint64_t masks[256]);

/* The longest value the trigger rule holds for (waf_transform_identity refuses longer ones). */
#define WAF_TRANSFORM_MAX_LEN ((size_t)INT_MAX / 8)

#endif
