/* Page-rule patterns: "host/path" with `*` wildcards, each `*` a capture ($1, $2, ...). Plain C, no Lua,
 * so the matcher can be unit-tested and fuzzed on its own. */
#ifndef PC_LUA_MATCH_H
#define PC_LUA_MATCH_H

#include <stdbool.h>
#include <stddef.h>

/* A pattern holds at most this many `*`: enough for any sensible page rule, and it bounds the capture
 * array the caller keeps on its stack. */
#define LR_MAX_CAPTURES 16

typedef struct lr_pattern {
    char *host;         /* lower-case glob for the host (the :authority without port) */
    char *path;         /* glob for the path, starting with '/'; NULL: any path (no capture) */
    bool query;         /* the path glob has a '?': match the query string too */
    unsigned ncaptures; /* number of `*` in host and path */
} lr_pattern;

typedef struct lr_span {
    const char *s;
    size_t len;
} lr_span;

/* Parse "host/path". 0, or -1 with a message in err (the text is not repeated there). */
int lr_pattern_compile(const char *text, lr_pattern *p, char *err, size_t errlen);
void lr_pattern_free(lr_pattern *p);

/* The host part of an authority: without the port, brackets kept for IPv6 ("[::1]:8443" -> "[::1]"). */
size_t lr_host_len(const char *authority);

/* Match a request; on success fill caps[0..ncaptures) (pointers into host and path). The host is
 * compared without case; a path glob without '?' stops at the query string. */
bool lr_pattern_match(const lr_pattern *p, const char *host, size_t hostlen, const char *path, size_t pathlen,
                      lr_span caps[LR_MAX_CAPTURES]);

#endif
