/* Header lists: a request's, a response's, trailers, the headers plugins add. Names and values live
 * in a few arena blocks freed together, so a header block costs a handful of allocations, not two
 * per field. Fields are nghttp2_nv, so a list is handed to nghttp2 as it is. */
#ifndef PC_HEADERS_H
#define PC_HEADERS_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mempool.h"

typedef struct pc_hblock pc_hblock;

typedef struct pc_headers {
    nghttp2_nv *nv;
    size_t n, cap;
    size_t bytes; /* name + value + 32 per field, as RFC 9113 counts */
    pc_hblock *blocks;
    pc_mempool *mem; /* the worker's block cache (NULL: malloc) */
} pc_headers;

/* Append a copy of the field (name and value are NUL-terminated in the copy). 0, or -1 out of memory. */
int pc__headers_add(pc_headers *h, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen);
int pc__headers_add_str(pc_headers *h, const char *name, const char *value);
/* The first field named `name` (any case), or NULL. */
const nghttp2_nv *pc__headers_find(const pc_headers *h, const char *name);
/* Its value, or NULL. */
const char *pc__headers_get(const pc_headers *h, const char *name);
/* Drop every field named `name` (exactly, as HTTP/2 sends names: lower case). Their bytes stay in the
 * arena until the list is freed, so pointers to them stay valid. */
void pc__headers_remove(pc_headers *h, const char *name);
/* A name plugins may give a field: lower case, printable, not a pseudo-header. */
bool pc__headers_name_ok(const char *name);
/* Free the fields; the list is empty again and keeps its block cache. */
void pc__headers_free(pc_headers *h);
/* Hand the fields of *from to the caller (the returned list); *from is left empty. */
pc_headers pc__headers_take(pc_headers *from);

#endif
