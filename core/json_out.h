/* A JSON text written straight into a caller's buffer: one object per line for the access log,
 * with no tree, no allocation and no printf. Strings are escaped as yajl's generator escapes
 * them (quote, backslash and control characters; other bytes as they are), so a line means the
 * same as before. Writing past the buffer marks the text as overflowed; the caller then makes
 * room and writes it again. */
#ifndef PC_JSON_OUT_H
#define PC_JSON_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pc_json {
    char *buf;
    size_t len, cap;
    bool overflow;
    bool first; /* no member yet in the innermost object: no comma before the next key */
} pc_json;

void pc__json_init(pc_json *j, char *buf, size_t cap);
void pc__json_open(pc_json *j);  /* { */
void pc__json_close(pc_json *j); /* } */
/* A member's key (escaped), with the comma before it when needed and the colon after it. */
void pc__json_key(pc_json *j, const char *key, size_t len);
/* A key that needs no escaping, given already quoted with its colon (PC_JSON_KEY builds it). */
void pc__json_key_raw(pc_json *j, const char *quoted, size_t len);
#define PC_JSON_KEY(j, k) pc__json_key_raw(j, "\"" k "\":", sizeof(k) + 2)
void pc__json_str(pc_json *j, const char *s, size_t len);
void pc__json_null(pc_json *j);
void pc__json_bool(pc_json *j, bool v);
void pc__json_uint(pc_json *j, uint64_t v);
/* A number given as its text, written as it is. */
void pc__json_number(pc_json *j, const char *text, size_t len);
/* Milliseconds with three decimals from nanoseconds, rounded to the microsecond ("12.345"). */
void pc__json_ms(pc_json *j, uint64_t ns);

#endif
