/* Differential test of the WAF fast path: every case is judged by libmodsecurity (the engine of
 * record) and by the fast path, with the facts, arguments and JSON body the plugin would give them.
 * A mismatch is a case the fast path calls clean while the engine reports something (a rule
 * message, a score or an intervention); a fallback while the engine is clean is allowed (it only
 * costs time).
 *
 *   waf_diff [options] CASES...        (files of cases, "-" for standard input)
 *     --config FILE     the plugin config (a YAML map of the modsecurity plugin's keys)
 *     --crs DIR         without --config: the CRS to load (default /usr/share/modsecurity-crs)
 *     --paranoia N      without --config: the paranoia level (default 1)
 *     --rules FILE      without --config: user rules loaded after the CRS (default: the project's
 *                       rules/waf/local.conf); --rules none for none
 *     --quiet           print mismatches and totals only, not every case
 *     --reasons         print how often each fallback reason occurred (all cases, and cases the
 *                       engine found clean)
 *     --min-cases N     fail when fewer than N cases were read (a broken case source)
 *     --uncovered       list the rules the fast path cannot evaluate (a request reaching one falls
 *                       back), and why
 *     --shrink          shrink every mismatching case to a minimal one (fewer headers, fields
 *                       and bytes) and print it as a case
 *     --engine-only     run even when the fast path could not be built (engine verdicts only)
 *     --second-message  judge every case as a later message of its call (as in a stream): two
 *                       benign messages with the same fields go first, so the case is judged by the
 *                       trace the first left and the field names the second remembered; a case the
 *                       trace calls clean is also judged in a call of its own, and a different
 *                       verdict is a failure ("trace differs")
 *     --min-traced N    with --second-message: fail when fewer than N cases were decided by the
 *                       trace (the path under test was not exercised)
 *
 * Cases: one JSON object per line (blank lines and lines starting with # are ignored):
 *   {"name": "942100-1", "source": "crs", "method": "POST", "uri": "/pkg.Svc/Method",
 *    "authority": "grpc.example.com", "client_ip": "192.0.2.10", "client_port": 50000,
 *    "headers": [["user-agent", "grpc-python/1.51.1"], ...],
 *    "args": [["a", "1 OR 1=1"], ["customer.email", {"hex": "6140622e6300"}]],
 *    "no_body": false, "expect": [942100]}
 * Everything but "name" is optional. Header names are lower-cased and a host header is made from
 * "authority" when none is given, as the plugin does with :authority. Each argument is a string
 * field of the message at that path ([path, value, "bytes"]: a bytes field); its value is a JSON
 * string, or {"hex": "..."} for bytes that are not UTF-8. "no_body": a transaction without a message (headers
 * only). "expect": rule ids the case is known to trigger, informational: counted, never a failure.
 *
 * Exit status: 0 when no case mismatched, 1 on a mismatch, 2 on a usage, config or input error
 * (including a rules set the fast path could not be built for). */
#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "waf_body.h"
#include "waf_pair.h"

#ifndef PC_WAF_DIFF_RULES
#define PC_WAF_DIFF_RULES ""
#endif
#define DEFAULT_CRS "/usr/share/modsecurity-crs"

#define MAX_SOURCES 32
#define MAX_REASONS 256

typedef struct totals {
    char name[64];
    unsigned long cases, engine_clean, engine_reported, both_clean, fallback, fallback_clean, mismatches,
        skipped, no_fast, engine_failed, expected, expected_seen, traced, trace_differs;
    unsigned long long engine_ns, fast_ns;
} totals;

typedef struct reason_count {
    const char *text;
    unsigned long all, clean;
} reason_count;

static totals sources[MAX_SOURCES];
static size_t nsources;
static totals all = {.name = "all"};
static reason_count reasons[MAX_REASONS];
static size_t nreasons;
static int quiet, show_reasons, engine_only, shrink_mismatches, show_uncovered;

static totals *source_totals(const char *name)
{
    for (size_t i = 0; i < nsources; i++)
        if (!strcmp(sources[i].name, name)) return &sources[i];
    if (nsources == MAX_SOURCES) return &sources[MAX_SOURCES - 1];
    totals *t = &sources[nsources++];
    snprintf(t->name, sizeof t->name, "%s", name);
    return t;
}

static void count_reason(const char *why, int engine_clean)
{
    size_t i = 0;
    while (i < nreasons && strcmp(reasons[i].text, why))
        i++;
    if (i == nreasons) {
        if (nreasons == MAX_REASONS)
            i = MAX_REASONS - 1;
        else
            reasons[nreasons++].text = why;
    }
    reasons[i].all++;
    if (engine_clean) reasons[i].clean++;
}

static int cmp_reason(const void *a, const void *b)
{
    const reason_count *x = a, *y = b;
    return x->all < y->all ? 1 : x->all > y->all ? -1 : strcmp(x->text, y->text);
}

/* A case's bytes: a JSON string, or {"hex": "..."}. Returns a malloc'd copy (NUL-terminated). */
static char *value_of(json_object *v, size_t *len, const char **err)
{
    if (json_object_is_type(v, json_type_string)) {
        *len = (size_t)json_object_get_string_len(v);
        char *p = malloc(*len + 1);
        if (!p) return NULL;
        memcpy(p, json_object_get_string(v), *len);
        p[*len] = '\0';
        return p;
    }
    json_object *hx;
    if (json_object_is_type(v, json_type_object) && json_object_object_get_ex(v, "hex", &hx) &&
        json_object_is_type(hx, json_type_string)) {
        const char *h = json_object_get_string(hx);
        size_t hl = strlen(h);
        if (hl % 2) {
            *err = "odd number of hex digits";
            return NULL;
        }
        char *p = malloc(hl / 2 + 1);
        if (!p) return NULL;
        for (size_t i = 0; i < hl / 2; i++) {
            char d[3] = {h[2 * i], h[2 * i + 1], 0}, *end;
            p[i] = (char)strtoul(d, &end, 16);
            if (*end || !isxdigit((unsigned char)d[0])) {
                free(p);
                *err = "not a hex digit";
                return NULL;
            }
        }
        p[hl / 2] = '\0';
        *len = hl / 2;
        return p;
    }
    *err = "a value must be a string or {\"hex\": \"...\"}";
    return NULL;
}

/* Strings a case owns until it has run. */
typedef struct strings {
    char **p;
    size_t n, cap;
} strings;

static char *keep(strings *s, char *p)
{
    if (!p) return NULL;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        char **q = realloc(s->p, cap * sizeof *q);
        if (!q) {
            free(p);
            return NULL;
        }
        s->p = q;
        s->cap = cap;
    }
    return s->p[s->n++] = p;
}

static void strings_free(strings *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->p[i]);
    free(s->p);
}

static const char *opt_str(json_object *o, const char *key, const char *dflt)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : dflt;
}

/* A list of [name, value] pairs (or [name, value, "bytes"] when `bytes` is given: a bytes field).
 * Returns the count, or -1 with err. */
static long pairs(json_object *o, const char *key, strings *own, waf_kv **out, unsigned char **bytes,
                  int lower, const char **err)
{
    json_object *list;
    *out = NULL;
    if (!json_object_object_get_ex(o, key, &list) || json_object_is_type(list, json_type_null)) return 0;
    if (!json_object_is_type(list, json_type_array)) {
        *err = "expected a list of [name, value] pairs";
        return -1;
    }
    size_t n = json_object_array_length(list);
    waf_kv *kv = calloc(n + 1, sizeof *kv);
    unsigned char *b = bytes ? calloc(n + 1, 1) : NULL;
    if (!kv || (bytes && !b)) {
        *err = "out of memory";
        free(kv);
        free(b);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *pair = json_object_array_get_idx(list, i);
        size_t np = json_object_is_type(pair, json_type_array) ? json_object_array_length(pair) : 0;
        json_object *k3 = np == 3 ? json_object_array_get_idx(pair, 2) : NULL;
        const char *kind =
            k3 && bytes && json_object_is_type(k3, json_type_string) ? json_object_get_string(k3) : NULL;
        if ((np != 2 && !(np == 3 && kind && (!strcmp(kind, "bytes") || !strcmp(kind, "string")))) ||
            !json_object_is_type(json_object_array_get_idx(pair, 0), json_type_string)) {
            *err = bytes ? "expected a list of [path, value] or [path, value, \"bytes\"]"
                         : "expected a list of [name, value] pairs";
            free(kv);
            free(b);
            return -1;
        }
        if (b) b[i] = kind && !strcmp(kind, "bytes");
        char *name = keep(own, strdup(json_object_get_string(json_object_array_get_idx(pair, 0))));
        size_t vl = 0;
        char *value = keep(own, value_of(json_object_array_get_idx(pair, 1), &vl, err));
        if (!name || !value) {
            if (!*err) *err = "out of memory";
            free(kv);
            free(b);
            return -1;
        }
        if (lower)
            for (char *c = name; *c; c++)
                *c = (char)tolower((unsigned char)*c);
        kv[i] = (waf_kv){name, strlen(name), value, vl};
    }
    *out = kv;
    if (bytes) *bytes = b;
    return (long)n;
}

static void print_report(const waf_report *rep, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "status=%d score=%d ids=", rep->status, rep->score);
    for (size_t i = 0; i < rep->nids && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%u", i ? "," : "", rep->ids[i]);
    if (!rep->nids && n < len) snprintf(buf + n, len - n, "-");
}

/* ---- shrinking a mismatch to a minimal case ---- */

#define SHRINK_RUNS 3000 /* transactions one case may spend on shrinking */

typedef struct shrink {
    waf_pair_env *e;
    waf_facts f;
    waf_kv *hv; /* headers, values in owned buffers */
    size_t nh;
    pc_field *fields; /* values in owned buffers */
    long nf;
    int no_body;
    unsigned runs;
    waf_pair_result last;
    waf_report ids; /* the rules the engine reported on the whole case */
    int have_ids;
} shrink;

static int still(shrink *s)
{
    if (s->runs >= SHRINK_RUNS) return 0;
    s->runs++;
    s->f.headers = s->hv;
    s->f.nheaders = s->nh;
    waf_pair_result r;
    if (waf_pair_run(s->e, &s->f, s->fields, s->nf, s->no_body, "diff-shrink", &r) < 0 || !r.mismatch)
        return 0;
    /* the same finding: the engine reports the same rules (not others that a removed header brings) */
    if (s->have_ids) {
        if (r.rep.nids != s->ids.nids) return 0;
        for (size_t i = 0; i < r.rep.nids; i++)
            if (!waf_report_has(&s->ids, r.rep.ids[i])) return 0;
    } else {
        s->ids = r.rep;
        s->have_ids = 1;
    }
    s->last = r;
    return 1;
}

/* Deletes chunks of a value (halving their size) while the mismatch stays. */
static void shrink_value(shrink *s, char *v, size_t *len)
{
    for (size_t chunk = *len / 2 ? *len / 2 : 1; chunk >= 1; chunk /= 2) {
        for (size_t at = 0; at + chunk <= *len;) {
            char saved[4096];
            if (chunk > sizeof saved) break;
            memcpy(saved, v + at, chunk);
            size_t old = *len;
            memmove(v + at, v + at + chunk, old - at - chunk);
            *len = old - chunk;
            if (still(s)) continue;
            memmove(v + at + chunk, v + at, old - at - chunk);
            memcpy(v + at, saved, chunk);
            *len = old;
            at++;
        }
        if (chunk == 1) break;
    }
}

static json_object *json_bytes(const char *v, size_t len)
{
    if (waf_is_text((const uint8_t *)v, len)) return json_object_new_string_len(v, (int)len);
    static const char hex[] = "0123456789abcdef";
    char *h = malloc(2 * len + 1);
    if (!h) return NULL;
    for (size_t i = 0; i < len; i++) {
        h[2 * i] = hex[(unsigned char)v[i] >> 4];
        h[2 * i + 1] = hex[(unsigned char)v[i] & 15];
    }
    h[2 * len] = '\0';
    json_object *o = json_object_new_object();
    json_object_object_add(o, "hex", json_object_new_string(h));
    free(h);
    return o;
}

/* Shrinks a mismatching case: drops headers and fields, then bytes of values, as long as the
 * fast path still calls it clean and the engine still reports the same rules; prints the result
 * as a case. */
static void shrink_case(waf_pair_env *e, const waf_facts *f, const pc_field *fields, long nf, int no_body,
                        const char *name)
{
    shrink s = {.e = e, .f = *f, .nf = nf, .nh = f->nheaders, .no_body = no_body};
    s.hv = calloc(f->nheaders + 1, sizeof *s.hv);
    s.fields = calloc((size_t)nf + 1, sizeof *s.fields);
    char **bufs = calloc(f->nheaders + (size_t)nf + 1, sizeof *bufs);
    size_t nb = 0;
    if (!s.hv || !s.fields || !bufs) goto out;
    for (size_t i = 0; i < f->nheaders; i++) {
        s.hv[i] = f->headers[i];
        if (!(bufs[nb] = malloc(f->headers[i].value_len + 1))) goto out;
        memcpy(bufs[nb], f->headers[i].value, f->headers[i].value_len);
        s.hv[i].value = bufs[nb++];
    }
    for (long i = 0; i < nf; i++) {
        s.fields[i] = fields[i];
        if (!(bufs[nb] = malloc(fields[i].str_len + 1))) goto out;
        memcpy(bufs[nb], fields[i].str, fields[i].str_len);
        s.fields[i].str = bufs[nb++];
    }
    if (!still(&s)) goto out;
    /* drop whole headers and fields */
    for (size_t i = s.nh; i-- > 0;) {
        waf_kv h = s.hv[i];
        memmove(s.hv + i, s.hv + i + 1, (s.nh - i - 1) * sizeof *s.hv);
        s.nh--;
        if (still(&s)) continue;
        memmove(s.hv + i + 1, s.hv + i, (s.nh - i) * sizeof *s.hv);
        s.hv[i] = h;
        s.nh++;
    }
    for (long i = s.nf; i-- > 0;) {
        pc_field fl = s.fields[i];
        memmove(s.fields + i, s.fields + i + 1, (size_t)(s.nf - i - 1) * sizeof *s.fields);
        s.nf--;
        if (still(&s)) continue;
        memmove(s.fields + i + 1, s.fields + i, (size_t)(s.nf - i) * sizeof *s.fields);
        s.fields[i] = fl;
        s.nf++;
    }
    /* then bytes of what is left */
    for (size_t i = 0; i < s.nh; i++)
        shrink_value(&s, (char *)s.hv[i].value, &s.hv[i].value_len);
    for (long i = 0; i < s.nf; i++)
        shrink_value(&s, (char *)s.fields[i].str, &s.fields[i].str_len);
    if (!still(&s)) goto out; /* the final state must still mismatch (and fills s.last) */

    json_object *o = json_object_new_object(), *h = json_object_new_array(), *a = json_object_new_array();
    char nm[256];
    snprintf(nm, sizeof nm, "%s-min", name);
    json_object_object_add(o, "name", json_object_new_string(nm));
    json_object_object_add(o, "uri", json_object_new_string(f->uri));
    for (size_t i = 0; i < s.nh; i++) {
        json_object *pair = json_object_new_array();
        json_object_array_add(pair, json_object_new_string(s.hv[i].name));
        json_object_array_add(pair, json_bytes(s.hv[i].value, s.hv[i].value_len));
        json_object_array_add(h, pair);
    }
    for (long i = 0; i < s.nf; i++) {
        json_object *pair = json_object_new_array();
        json_object_array_add(pair, json_object_new_string(s.fields[i].path));
        json_object_array_add(pair, json_bytes(s.fields[i].str, s.fields[i].str_len));
        if (s.fields[i].kind == PC_FIELD_BYTES) json_object_array_add(pair, json_object_new_string("bytes"));
        json_object_array_add(a, pair);
    }
    json_object_object_add(o, "headers", h);
    json_object_object_add(o, "args", a);
    if (no_body) json_object_object_add(o, "no_body", json_object_new_boolean(1));
    char rep[WAF_MAX_IDS * 11 + 64];
    print_report(&s.last.rep, rep, sizeof rep);
    printf("  minimal (%u runs): engine: %s\n  minimal case: %s\n", s.runs, rep,
           json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
out:
    for (size_t i = 0; i < nb; i++)
        free(bufs[i]);
    free(bufs);
    free(s.hv);
    free(s.fields);
}

/* Runs one case. 0, or -1 with err (the input is wrong). */
static int run_case(waf_pair_env *e, json_object *o, unsigned long lineno, const char **err)
{
    strings own = {0};
    waf_kv *hdr = NULL, *args = NULL, *hv = NULL;
    unsigned char *is_bytes = NULL;
    pc_field *fields = NULL;
    int rc = -1;
    char fallback_name[64];
    snprintf(fallback_name, sizeof fallback_name, "line-%lu", lineno);
    const char *name = opt_str(o, "name", fallback_name);
    const char *source = opt_str(o, "source", "cases");
    const char *authority = opt_str(o, "authority", "grpc.example.com");
    json_object *v;
    int port = json_object_object_get_ex(o, "client_port", &v) ? json_object_get_int(v) : 50000;
    int no_body = json_object_object_get_ex(o, "no_body", &v) && json_object_get_boolean(v);

    long nh = pairs(o, "headers", &own, &hdr, NULL, 1, err);
    if (nh < 0) goto out;
    long na = pairs(o, "args", &own, &args, &is_bytes, 0, err);
    if (na < 0) goto out;
    int has_host = 0;
    for (long i = 0; i < nh; i++)
        if (!strcmp(hdr[i].name, "host")) has_host = 1;
    hv = calloc((size_t)nh + 1, sizeof *hv);
    fields = calloc((size_t)na + 1, sizeof *fields);
    if (!hv || !fields) {
        *err = "out of memory";
        goto out;
    }
    size_t k = 0;
    if (!has_host) hv[k++] = (waf_kv){"host", 4, authority, strlen(authority)};
    for (long i = 0; i < nh; i++)
        hv[k++] = hdr[i];
    for (long i = 0; i < na; i++)
        fields[i] = (pc_field){.path = args[i].name,
                               .kind = is_bytes[i] ? PC_FIELD_BYTES : PC_FIELD_STRING,
                               .str = args[i].value,
                               .str_len = args[i].value_len};
    waf_facts f = {.client_ip = opt_str(o, "client_ip", "192.0.2.10"),
                   .client_port = port,
                   .method = opt_str(o, "method", "POST"),
                   .uri = opt_str(o, "uri", "/portcullis.test.Diff/Call"),
                   .headers = hv,
                   .nheaders = k};
    char txid[64];
    snprintf(txid, sizeof txid, "diff-%lu", lineno);
    waf_pair_result r;
    if (waf_pair_run(e, &f, fields, na, no_body, txid, &r) < 0) {
        *err = "out of memory";
        goto out;
    }

    totals *t[2] = {&all, source_totals(source)};
    int engine_clean = waf_report_clean(&r.rep) && !r.engine_failed;
    int expected = 0, seen = 0;
    json_object *ex;
    if (json_object_object_get_ex(o, "expect", &ex) && json_object_is_type(ex, json_type_array) &&
        json_object_array_length(ex)) {
        expected = 1;
        for (size_t i = 0; i < json_object_array_length(ex); i++)
            if (waf_report_has(&r.rep, (uint32_t)json_object_get_int64(json_object_array_get_idx(ex, i))))
                seen = 1;
    }
    for (int i = 0; i < 2; i++) {
        t[i]->cases++;
        t[i]->engine_ns += r.engine_ns;
        t[i]->fast_ns += r.fast_ns;
        if (r.engine_failed) t[i]->engine_failed++;
        if (engine_clean)
            t[i]->engine_clean++;
        else
            t[i]->engine_reported++;
        if (r.fast == WAF_PAIR_SKIPPED) t[i]->skipped++;
        if (r.fast == WAF_PAIR_NO_FAST) t[i]->no_fast++;
        if (r.fast == WAF_PAIR_CLEAN && engine_clean) t[i]->both_clean++;
        if (r.fast == WAF_PAIR_FALLBACK) t[i]->fallback++;
        if (r.fast == WAF_PAIR_FALLBACK && engine_clean) t[i]->fallback_clean++;
        if (r.mismatch) t[i]->mismatches++;
        t[i]->traced += (unsigned long)r.traced;
        t[i]->trace_differs += (unsigned long)r.trace_differs;
        t[i]->expected += (unsigned long)expected;
        t[i]->expected_seen += (unsigned long)seen;
    }
    if (r.fast == WAF_PAIR_FALLBACK) count_reason(r.reason, engine_clean);

    if (!quiet || r.mismatch || r.engine_failed || r.trace_differs) {
        char rep[WAF_MAX_IDS * 11 + 64];
        print_report(&r.rep, rep, sizeof rep);
        printf("%s%s%s [%s]\tengine: %s%s\tfast: %s%s%s%s\n", r.mismatch ? "MISMATCH " : "",
               r.trace_differs ? "TRACE DIFFERS " : "", name, source, rep,
               r.engine_failed ? " (no transaction)" : "",
               r.fast == WAF_PAIR_CLEAN      ? "clean"
               : r.fast == WAF_PAIR_FALLBACK ? "fallback"
               : r.fast == WAF_PAIR_SKIPPED  ? "skipped"
                                             : "none",
               r.reason ? " (" : "", r.reason ? r.reason : "", r.reason ? ")" : "");
        if (r.mismatch || r.trace_differs) {
            /* the whole case, so that it can be replayed on its own */
            printf("  case: %s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
            if (shrink_mismatches) shrink_case(e, &f, fields, na, no_body, name);
        }
    }
    rc = 0;
out:
    free(hdr);
    free(args);
    free(is_bytes);
    free(hv);
    free(fields);
    strings_free(&own);
    return rc;
}

static int run_file(waf_pair_env *e, const char *path, unsigned long *lineno)
{
    FILE *in = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!in) {
        fprintf(stderr, "waf_diff: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned long fileline = 0;
    int rc = 0;
    while ((n = getline(&line, &cap, in)) >= 0) {
        fileline++;
        (*lineno)++;
        size_t i = 0;
        while (i < (size_t)n && isspace((unsigned char)line[i]))
            i++;
        if (i == (size_t)n || line[i] == '#') continue;
        enum json_tokener_error jerr;
        json_object *o = json_tokener_parse_verbose(line + i, &jerr);
        const char *err = NULL;
        if (!o || !json_object_is_type(o, json_type_object))
            err = o ? "expected a JSON object" : json_tokener_error_desc(jerr);
        else if (run_case(e, o, *lineno, &err) < 0 && !err)
            err = "cannot run the case";
        json_object_put(o);
        if (err) {
            fprintf(stderr, "waf_diff: %s:%lu: %s\n", path, fileline, err);
            rc = -1;
            break;
        }
        fflush(stdout);
    }
    free(line);
    if (in != stdin) fclose(in);
    return rc;
}

static void print_totals(const totals *t)
{
    double ms_e = t->cases ? (double)t->engine_ns / 1e6 / (double)t->cases : 0;
    double ms_f = t->cases ? (double)t->fast_ns / 1e6 / (double)t->cases : 0;
    printf(
        "%-12s cases %6lu | engine clean %6lu reported %6lu | both clean %6lu | fallback %6lu "
        "(engine clean %6lu, %5.1f%% of engine-clean) | mismatches %lu",
        t->name, t->cases, t->engine_clean, t->engine_reported, t->both_clean, t->fallback, t->fallback_clean,
        t->engine_clean ? 100.0 * (double)t->fallback_clean / (double)t->engine_clean : 0.0, t->mismatches);
    if (t->skipped) printf(" | skipped (too large) %lu", t->skipped);
    if (t->no_fast) printf(" | no fast path %lu", t->no_fast);
    if (t->engine_failed) printf(" | engine failed %lu", t->engine_failed);
    if (t->traced || t->trace_differs)
        printf(" | decided by the trace %lu (differs %lu)", t->traced, t->trace_differs);
    if (t->expected) printf(" | expected id reported %lu/%lu", t->expected_seen, t->expected);
    printf(" | ms/case engine %.3f fast %.3f\n", ms_e, ms_f);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0, r;
    do {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
        }
        r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
    } while (r > 0);
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void usage(void)
{
    fprintf(stderr, "usage: waf_diff [--config FILE | --crs DIR --paranoia N --rules FILE|none] [--quiet] "
                    "[--reasons] [--uncovered] [--shrink] [--min-cases N] [--engine-only] [--second-message "
                    "[--min-traced N]] "
                    "CASES...\n");
}

int main(int argc, char **argv)
{
    const char *config = NULL, *crs = DEFAULT_CRS, *rules = PC_WAF_DIFF_RULES;
    int paranoia = 1;
    unsigned long min_cases = 0, min_traced = 0;
    int second_message = 0;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--config") && more)
            config = argv[++i];
        else if (!strcmp(a, "--crs") && more)
            crs = argv[++i];
        else if (!strcmp(a, "--paranoia") && more)
            paranoia = atoi(argv[++i]);
        else if (!strcmp(a, "--rules") && more)
            rules = argv[++i];
        else if (!strcmp(a, "--min-cases") && more)
            min_cases = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q"))
            quiet = 1;
        else if (!strcmp(a, "--uncovered"))
            show_uncovered = 1;
        else if (!strcmp(a, "--shrink"))
            shrink_mismatches = 1;
        else if (!strcmp(a, "--second-message"))
            second_message = 1;
        else if (!strcmp(a, "--min-traced") && more)
            min_traced = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--engine-only"))
            engine_only = 1;
        else if (!strcmp(a, "--reasons"))
            show_reasons = 1;
        else if (!strcmp(a, "--")) {
            i++;
            break;
        } else {
            usage();
            return 2;
        }
    }
    if (i >= argc || paranoia < 1 || paranoia > 4) {
        usage();
        return 2;
    }

    char err[2048], dir[PATH_MAX] = "/";
    char *yaml;
    size_t len;
    const char *name;
    if (config) {
        if (!(yaml = read_all(config, &len))) {
            fprintf(stderr, "waf_diff: %s: %s\n", config, strerror(errno));
            return 2;
        }
        char real[PATH_MAX];
        if (realpath(config, real)) {
            char *slash = strrchr(real, '/');
            if (slash && slash != real) *slash = '\0';
            snprintf(dir, sizeof dir, "%s", slash == real ? "/" : real);
        }
        name = config;
    } else {
        yaml = waf_pair_default_config(crs, paranoia, rules[0] && strcmp(rules, "none") ? rules : NULL);
        if (!yaml) return 2;
        len = strlen(yaml);
        name = "(generated config)";
        if (!getcwd(dir, sizeof dir)) snprintf(dir, sizeof dir, "/");
    }
    waf_pair_env e;
    int rc = waf_pair_load(&e, name, yaml, len, dir, err, sizeof err);
    free(yaml);
    if (rc < 0) {
        fprintf(stderr, "waf_diff: cannot load the WAF config: %s\n", err);
        return 2;
    }
    e.second_message = second_message;
    printf("config: %s (paranoia %d, threshold %d)\n", name, e.profile->paranoia, e.profile->threshold);
    if (!e.profile->fast) {
        fprintf(stderr, "waf_diff: the fast path was not built for this rules set: %s\n",
                e.profile->fast_error ? e.profile->fast_error : "(no reason given)");
        if (!engine_only) {
            waf_pair_free(&e);
            return 2;
        }
    }

    if (show_uncovered && e.profile->fast) {
        size_t cap = 1 << 20;
        char *buf = malloc(cap);
        if (buf) {
            size_t n = waf_fast_uncovered(e.profile->fast, buf, cap);
            printf("=== %zu rules the fast path does not evaluate (requests reaching them fall back) "
                   "===\n%s%s\n",
                   n, buf, n && buf[0] && buf[strlen(buf) - 1] != '\n' ? "\n" : "");
            free(buf);
        }
    }
    unsigned long lineno = 0;
    int input_error = 0;
    for (; i < argc && !input_error; i++)
        if (run_file(&e, argv[i], &lineno) < 0) input_error = 1;

    printf("\n=== totals ===\n");
    for (size_t s = 0; s < nsources; s++)
        print_totals(&sources[s]);
    if (nsources != 1) print_totals(&all);
    if (show_reasons && nreasons) {
        qsort(reasons, nreasons, sizeof *reasons, cmp_reason);
        printf("\n=== fallback reasons (all fallbacks | while the engine was clean) ===\n");
        for (size_t r = 0; r < nreasons; r++)
            printf("%8lu %8lu  %s\n", reasons[r].all, reasons[r].clean, reasons[r].text);
    }
    waf_pair_free(&e);
    if (input_error) return 2;
    if (all.cases < min_cases) {
        fprintf(stderr, "waf_diff: only %lu cases, expected at least %lu\n", all.cases, min_cases);
        return 2;
    }
    if (all.engine_failed) {
        fprintf(stderr, "waf_diff: the engine could not run %lu cases\n", all.engine_failed);
        return 2;
    }
    if (all.trace_differs) {
        printf(
            "\nFAIL: %lu cases the trace of a first message called clean and a call of their own did not\n",
            all.trace_differs);
        return 1;
    }
    if (second_message && all.traced < min_traced) {
        fprintf(stderr, "waf_diff: only %lu cases decided by the trace, expected at least %lu\n", all.traced,
                min_traced);
        return 2;
    }
    if (all.mismatches) {
        printf("\nFAIL: %lu mismatches (the fast path called clean what libmodsecurity reported on)\n",
               all.mismatches);
        return 1;
    }
    printf("\nOK: no mismatches\n");
    return 0;
}
