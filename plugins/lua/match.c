/* Page-rule patterns. A `*` matches any run of characters (also none, also '/' in the path part) and
 * captures it; the host and the path are matched separately so that a host wildcard never reaches
 * into the path. Matching is the classic linear-backtracking glob: when a literal fails, only the most
 * recent `*` grows, so earlier captures stay as short as possible and the cost is O(pattern * subject). */
#include "match.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

void lr_pattern_free(lr_pattern *p)
{
    free(p->host);
    free(p->path);
    memset(p, 0, sizeof *p);
}

int lr_pattern_compile(const char *text, lr_pattern *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    if (!text[0]) {
        snprintf(err, errlen, "empty pattern (use \"*\" for every request)");
        return -1;
    }
    if (strstr(text, "://")) {
        snprintf(err, errlen, "no scheme in a pattern: write host/path, e.g. \"api.example.com/pkg.Svc/*\"");
        return -1;
    }
    for (const char *c = text; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
            snprintf(err, errlen, "spaces and control characters cannot appear in a pattern");
            return -1;
        }
    const char *slash = strchr(text, '/');
    size_t hlen = slash ? (size_t)(slash - text) : strlen(text);
    if (hlen == 0) {
        snprintf(err, errlen, "the pattern starts with the host (use \"*/path\" for any host)");
        return -1;
    }
    const char *close = memchr(text, ']', hlen);
    const char *colon = memchr(close ? close : text, ':', hlen - (size_t)(close ? close - text : 0));
    if (colon) {
        snprintf(err, errlen,
                 "no port in the host part: a request's host is its :authority without the port");
        return -1;
    }
    unsigned stars = 0;
    for (const char *c = text; *c; c++)
        stars += *c == '*';
    if (stars > LR_MAX_CAPTURES) {
        snprintf(err, errlen, "at most %d wildcards in a pattern", LR_MAX_CAPTURES);
        return -1;
    }
    p->host = strndup(text, hlen);
    p->path = slash ? strdup(slash) : NULL;
    if (!p->host || (slash && !p->path)) {
        lr_pattern_free(p);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (char *c = p->host; *c; c++)
        *c = lower(*c);
    p->query = slash && strchr(slash, '?') != NULL;
    p->ncaptures = stars;
    return 0;
}

size_t lr_host_len(const char *authority)
{
    if (authority[0] == '[') {
        const char *close = strchr(authority, ']');
        return close ? (size_t)(close - authority) + 1 : strlen(authority);
    }
    return strcspn(authority, ":");
}

/* Captures are numbered from *k; on success *k is one past the last capture this glob set. */
static bool glob(const char *pat, const char *s, size_t slen, bool nocase, lr_span *caps, unsigned *k)
{
    size_t plen = strlen(pat), p = 0, i = 0, star = (size_t)-1, mark = 0;
    unsigned next = *k, star_k = 0;
    while (i < slen) {
        if (p < plen && pat[p] == '*') {
            star = p++;
            mark = i;
            star_k = next++;
            caps[star_k] = (lr_span){s + i, 0};
        } else if (p < plen && pat[p] == (nocase ? lower(s[i]) : s[i])) {
            p++;
            i++;
        } else if (star != (size_t)-1) {
            /* Let the latest `*` take one more character and retry what follows it. */
            p = star + 1;
            i = ++mark;
            next = star_k + 1;
            caps[star_k].len = mark - (size_t)(caps[star_k].s - s);
        } else {
            return false;
        }
    }
    while (p < plen && pat[p] == '*') {
        caps[next++] = (lr_span){s + i, 0};
        p++;
    }
    if (p != plen) return false;
    *k = next;
    return true;
}

bool lr_pattern_match(const lr_pattern *p, const char *host, size_t hostlen, const char *path, size_t pathlen,
                      lr_span caps[LR_MAX_CAPTURES])
{
    unsigned k = 0;
    if (!glob(p->host, host, hostlen, true, caps, &k)) return false;
    if (!p->path) return true;
    if (!p->query) {
        const char *q = memchr(path, '?', pathlen);
        if (q) pathlen = (size_t)(q - path);
    }
    return glob(p->path, path, pathlen, false, caps, &k);
}
