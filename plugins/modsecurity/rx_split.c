/* Splitting a long regular expression at its alternations.
 *
 * Hyperscan refuses some of the CRS's longest expressions outright, or accepts them only as a
 * prefilter so loose that it flags nearly every value, and PCRE then runs on each. Split into the
 * branches of its largest alternation, each piece is small enough to compile exactly.
 *
 * Why the pieces match exactly where the whole does: in X(?:A|B)Y the group matches where A or B
 * does, so a string holds a match of the whole if and only if it holds one of X(?:A)Y or X(?:B)Y.
 * That holds as long as
 *  - nothing repeats the group, directly or through a group around it ((?:A|B)* also matches ABA,
 *    which neither piece does; an optional group is fine);
 *  - no negative lookaround holds it ((?!A|B) is not "not A, or not B");
 *  - no branch sets an option for the ones after it ((?:a(?i)b|c) also matches "C");
 *  - nothing refers to a group by number or name, or recurses (pieces lose the groups of the
 *    other branches): then the pattern is not split at all.
 * Positive lookarounds around the group keep it: an assertion holds where its pattern matches.
 * Atomic groups and possessive quantifiers commit to a first match, so nothing in or under them is
 * split, and neither is a pattern in extended mode ((?x): its comments are not parsed here). */

#include "rx_split.h"

#include <stdlib.h>
#include <string.h>

typedef struct group {
    size_t open;  /* the '(' (the whole pattern: 0) */
    size_t body;  /* the first byte after the opener */
    size_t close; /* the ')' (the whole pattern: its length) */
    size_t *bars; /* the '|' at the group's own level */
    size_t nbars, capbars;
    int splittable;  /* (?:, (, (?<name>, (?flags:, (?> ... */
    int repeated;    /* followed by *, + or {...} */
    int opaque;      /* (?! or (?<!, or atomic (?>: what holds inside does not distribute */
    int sets_option; /* holds a bare (?flags) at its own level or deeper */
} group;

typedef struct parse {
    group *g;
    size_t n, cap;
} parse;

static void parse_free(parse *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->g[i].bars);
    free(p->g);
}

static int add_bar(group *g, size_t at)
{
    if (g->nbars == g->capbars) {
        size_t cap = g->capbars ? 2 * g->capbars : 8;
        size_t *b = realloc(g->bars, cap * sizeof *b);
        if (!b) return -1;
        g->bars = b;
        g->capbars = cap;
    }
    g->bars[g->nbars++] = at;
    return 0;
}

static int push(parse *p, group g)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 16;
        group *ng = realloc(p->g, cap * sizeof *ng);
        if (!ng) return -1;
        p->g = ng;
        p->cap = cap;
    }
    p->g[p->n++] = g;
    return 0;
}

static int is_flag(char c)
{
    return c == 'i' || c == 'm' || c == 's' || c == 'x' || c == 'n' || c == 'U' || c == 'J' || c == '-' ||
           c == '^';
}

/* The end of a character class that starts at s[i] == '[': the index of its ']'. */
static size_t class_end(const char *s, size_t len, size_t i)
{
    i++;
    if (i < len && s[i] == '^') i++;
    if (i < len && s[i] == ']') i++; /* a leading ] is a literal */
    while (i < len && s[i] != ']') {
        if (s[i] == '\\' && i + 1 < len) {
            i += 2;
        } else if (s[i] == '[' && i + 1 < len && (s[i + 1] == ':' || s[i + 1] == '.' || s[i + 1] == '=')) {
            const char *e = strstr(s + i + 2, s[i + 1] == ':' ? ":]" : s[i + 1] == '.' ? ".]" : "=]");
            i = e ? (size_t)(e - s) + 2 : len;
        } else {
            i++;
        }
    }
    return i;
}

/* Every group of s with its alternation bars; the whole pattern is group 0. 1 parsed, 0 a
 * construct that forbids splitting (or unbalanced), -1 out of memory. */
static int parse_groups(const char *s, size_t len, parse *p)
{
    size_t stack[256], depth = 0;
    if (push(p, (group){.open = 0, .body = 0, .close = len, .splittable = 1}) < 0) return -1;
    stack[depth++] = 0;
    for (size_t i = 0; i < len;) {
        char c = s[i];
        if (c == '\\') {
            char d = i + 1 < len ? s[i + 1] : '\0';
            if ((d >= '1' && d <= '9') || d == 'g' || d == 'k' || d == 'Q' || d == 'E') return 0;
            i += d == 'c' ? 3 : 2; /* \cX: X is the escaped byte, whatever it is */
            continue;
        }
        if (c == '[') {
            i = class_end(s, len, i) + 1;
            continue;
        }
        if (c == '|') {
            if (add_bar(&p->g[stack[depth - 1]], i) < 0) return -1;
            i++;
            continue;
        }
        if (c == ')') {
            if (depth < 2) return 0;
            group *g = &p->g[stack[--depth]];
            g->close = i;
            char q = i + 1 < len ? s[i + 1] : '\0';
            /* a possessive ?+ commits like a repeat */
            g->repeated = q == '*' || q == '+' || q == '{' || (q == '?' && i + 2 < len && s[i + 2] == '+');
            if (g->sets_option) p->g[stack[depth - 1]].sets_option = 1;
            i++;
            continue;
        }
        if (c != '(') {
            i++;
            continue;
        }
        /* an opener */
        group g = {.open = i, .splittable = 1};
        const char *o = s + i + 1;
        size_t left = len - i - 1;
        if (left && *o == '*') return 0; /* (*VERB) */
        if (!left || *o != '?') {
            g.body = i + 1; /* capturing */
        } else if (left >= 2 && o[1] == ':') {
            g.body = i + 3;
        } else if (left >= 2 && (o[1] == '=' || o[1] == '!' || o[1] == '>')) {
            /* an atomic group commits to its first match: (?>ab|a)b fails on "ab", (?>a)b does not */
            g.body = i + 3;
            g.splittable = 0;
            g.opaque = o[1] != '=';
        } else if (left >= 3 && o[1] == '<' && (o[2] == '=' || o[2] == '!')) {
            g.body = i + 4;
            g.splittable = 0;
            g.opaque = o[2] == '!';
        } else if (left >= 3 && (o[1] == '<' || (o[1] == 'P' && o[2] == '<') || o[1] == '\'')) {
            /* a named capture: its name ends with > or ' */
            const char *e = memchr(o + 2, o[1] == '\'' ? '\'' : '>', left - 2);
            if (!e) return 0;
            g.body = (size_t)(e - s) + 1;
        } else {
            size_t k = 1;
            while (k < left && is_flag(o[k]))
                k++;
            if (k == 1 || k >= left || (o[k] != ':' && o[k] != ')')) return 0; /* (?|, (?(, (?R), (?#, ... */
            if (memchr(o + 1, 'x', k - 1)) return 0; /* extended: # comments and spaces, not parsed here */
            if (o[k] == ')') {
                /* a bare option setting: it lasts to the end of the group it is in, branches after
                 * it included */
                p->g[stack[depth - 1]].sets_option = 1;
                i += k + 2;
                continue;
            }
            g.body = i + 1 + k + 1;
        }
        if (depth == sizeof stack / sizeof *stack) return 0;
        if (push(p, g) < 0) return -1;
        stack[depth++] = p->n - 1;
        i = g.body;
    }
    return depth == 1 ? 1 : 0;
}

/* The largest group whose branches may become pieces, or -1. */
static long best_group(const parse *p)
{
    long best = -1;
    size_t best_span = 0;
    for (size_t k = 0; k < p->n; k++) {
        const group *g = &p->g[k];
        if (!g->nbars || !g->splittable || g->repeated || g->sets_option) continue;
        int ok = 1;
        for (size_t a = 0; a < p->n && ok; a++) {
            const group *h = &p->g[a];
            if (a != k && h->open <= g->open && g->close <= h->close) ok = !h->repeated && !h->opaque;
        }
        if (ok && g->close - g->open >= best_span) {
            best = (long)k;
            best_span = g->close - g->open;
        }
    }
    return best;
}

typedef struct out {
    char **v;
    size_t n, max;
} out;

static int emit(out *o, const char *s, size_t len)
{
    if (o->n == o->max) return 0;
    char *c = malloc(len + 1);
    if (!c) return -1;
    memcpy(c, s, len);
    c[len] = '\0';
    o->v[o->n++] = c;
    return 1;
}

/* Splits s into o: 1 done, 0 too many pieces, -1 out of memory. */
static int split(const char *s, size_t len, size_t limit, out *o)
{
    if (len <= limit) return emit(o, s, len);
    parse p = {0};
    int rc = parse_groups(s, len, &p);
    long k = rc > 0 ? best_group(&p) : -1;
    if (rc < 0 || k < 0) {
        parse_free(&p);
        return rc < 0 ? -1 : emit(o, s, len);
    }
    const group *g = &p.g[k];
    size_t head = g->body, tail = len - g->close;
    char *buf = malloc(len + 1);
    rc = buf ? 1 : -1;
    for (size_t b = 0; rc > 0 && b <= g->nbars; b++) {
        size_t from = b ? g->bars[b - 1] + 1 : g->body, to = b < g->nbars ? g->bars[b] : g->close;
        memcpy(buf, s, head);
        memcpy(buf + head, s + from, to - from);
        memcpy(buf + head + (to - from), s + g->close, tail);
        rc = split(buf, head + (to - from) + tail, limit, o);
    }
    free(buf);
    parse_free(&p);
    return rc;
}

void waf_rx_split_free(char **pieces, int n)
{
    for (int i = 0; i < n; i++)
        free(pieces[i]);
    free(pieces);
}

int waf_rx_split(const char *pat, size_t limit, size_t max, char ***pieces)
{
    *pieces = NULL;
    size_t len = strlen(pat);
    if (len <= limit || max < 2) return 0;
    out o = {.v = malloc(max * sizeof *o.v), .max = max};
    if (!o.v) return -1;
    int rc = split(pat, len, limit, &o);
    if (rc <= 0 || o.n < 2) {
        waf_rx_split_free(o.v, (int)o.n);
        return rc < 0 ? -1 : 0;
    }
    *pieces = o.v;
    return (int)o.n;
}
