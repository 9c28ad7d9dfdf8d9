/* What ModSecurity is given as a request body: a gRPC message rendered as one flat JSON object
 * whose keys are field paths, so that the JSON body processor turns each field into an argument
 * named json.<path>. Bounded: rendering stops at a size limit. */
#ifndef PC_WAF_BODY_H
#define PC_WAF_BODY_H

#include <portcullis/plugin.h>
#include <stddef.h>
#include <stdint.h>

#include "waf_tx.h"

typedef struct waf_buf {
    char *p;
    size_t len, cap;
    size_t limit; /* the rendering may not grow past this many bytes */
    int over;     /* 1 once something did not fit under `limit` */
    int oom;
} waf_buf;

void waf_buf_init(waf_buf *b, size_t limit);
void waf_buf_free(waf_buf *b);
/* Hands the bytes to the caller (NUL-terminated); the buffer is empty afterwards. */
char *waf_buf_take(waf_buf *b, size_t *len);

/* The arguments one message gives libmodsecurity's JSON body processor, in order: name
 * "json.<path>", value as the rules see it. The JSON body is rendered from this list, and the fast
 * path reads the same list as ARGS, so both paths see one set of arguments. */
typedef struct waf_args {
    waf_kv *kv;
    unsigned char *number; /* per argument: a number or boolean (unquoted in JSON) */
    size_t n, cap;
    int oom;
    char **owned; /* names and number texts this list allocated */
    size_t nowned, capowned;
} waf_args;

void waf_args_init(waf_args *a);
void waf_args_free(waf_args *a);

/* 1 when s is strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF): stricter
 * than libmodsecurity's JSON parser, so a body of such strings parses there. */
int waf_is_utf8(const uint8_t *s, size_t n);

/* 1 when s is valid UTF-8 without control characters other than tab, CR and LF. */
int waf_is_text(const uint8_t *s, size_t n);

/* The arguments of decoded fields (see waf_render_fields for which) and of a message that is not
 * protobuf (see waf_render_raw). Values point into the fields or the message. 0, or -1 when out of
 * memory. */
int waf_args_from_fields(waf_args *a, const pc_field *fields, long n, int numbers);
int waf_args_from_raw(waf_args *a, const uint8_t *data, size_t len);
/* {"<path>":<value>,...} from the list. 0, or -1 when over the limit or out of memory. */
int waf_render_args(waf_buf *b, const waf_args *a);

/* Decoded fields -> {"order.note":"...","order.qty":3,...}. Text whole; binary data (bytes that
 * are not text) only as its printable runs, not shown to text rules as noise; numbers and
 * booleans only with `numbers` (they cannot carry an injection, and each argument costs every
 * CRS rule that reads ARGS); nested messages contribute their fields, not themselves.
 * Returns 0, or -1 when over the limit or out of memory. */
int waf_render_fields(waf_buf *b, const pc_field *fields, long n, int numbers);

/* A message that is not protobuf: {"message":"<text>"} when it is text; otherwise its printable
 * runs of at least 4 characters, {"raw":"...","raw":"..."}, so that text hidden in binary or in a
 * message the decoder refused (too deep, too many fields) is still inspected. */
int waf_render_raw(waf_buf *b, const uint8_t *data, size_t len);

#endif
