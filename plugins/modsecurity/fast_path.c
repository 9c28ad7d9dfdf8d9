/* The WAF fast path (see fast_path.h): a compiled copy of the rules set's phases 1 and 2 and a
 * replay of them over one request. Exactness rules every choice here: where this file is not sure
 * to compute what libmodsecurity 3.0.9 computes, it stops and says why, and the request falls back.
 *
 * What the replay models, as the engine does it (rule_with_operator.cc, rules_set.cc):
 *  - rules of a phase in load order; SecMarker in every phase; skipAfter and skip; SecRuleRemoveById,
 *    ByTag and ByMsg, and the ctl exclusions (ruleRemoveById, ruleRemoveByTag, ruleRemoveTargetById,
 *    ruleRemoveTargetByTag) executed by matching rules;
 *  - per target value: the rule's transformations (waf_transform.c), then its operator; each match
 *    runs the rule's setvars at once (even when a later chain link fails) and records MATCHED_VAR(S);
 *  - a full match of a rule (with its chain) that would log or disrupt ends the replay: fallback.
 *    Silent rules (nolog, pass) run their effects: TX, skipAfter, skip, ctl.
 * Values: the request line, path, headers and connection facts of the call; the message's fields
 * as ARGS; the JSON text as REQUEST_BODY; TX as set so far. Cookies, query strings and encoded
 * paths are not modelled: such requests fall back. */
#include "fast_path.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <hs/hs.h>
#include <arpa/inet.h>
#include <libgen.h>
#include <limits.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "rx_split.h"
#include "seclang.h"
#include "waf_body.h"
#include "waf_transform.h"

/* libinjection, as exported by libmodsecurity (no header is shipped): the same code the
 * @detectSQLi and @detectXSS operators call. */
int libinjection_sqli(const char *s, size_t slen, char fingerprint[]);
int libinjection_xss(const char *s, size_t slen);

#define MAX_TX 256      /* TX variables a replay may hold; more: fallback */
#define MAX_MATCHED 256 /* MATCHED_VARS kept (they accumulate until a rule does not match) */
#define MAX_REMOVALS 64 /* ctl exclusions per transaction */
#define MAX_VALUE (1 << 20)
/* Expressions longer than RX_SPLIT_FROM are split for Hyperscan into pieces of at most
 * RX_PIECE_LEN, at most RX_MAX_PIECES of them (see compile_op). Measured on the CRS: its Unix
 * command list (932150, 5.9k) is too large for Hyperscan, and its prefilter flags plain text, so
 * PCRE ran on every argument; split (about 20 pieces), it flags none. The other long ones (932100
 * to 932115, 5.2k to 5.5k) have prefilters that already pass plain text: their pieces only cost
 * scanning time. */
#define RX_SPLIT_FROM 5800
#define RX_PIECE_LEN 3000
#define RX_MAX_PIECES 64

/* ---- variables ---- */

enum vkind {
    /* collections */
    V_ARGS,
    V_ARGS_NAMES,
    V_EMPTY, /* ARGS_GET(_NAMES), ARGS_POST(_NAMES), FILES(_NAMES), REQUEST_COOKIES(_NAMES), XML, ...:
                always empty for the requests the fast path covers */
    V_REQUEST_HEADERS,
    V_REQUEST_HEADERS_NAMES,
    V_TX,
    V_MATCHED_VARS,
    V_MATCHED_VARS_NAMES,
    /* single values ("" when unset, as libmodsecurity's anchored variables) */
    V_REQUEST_METHOD,
    V_REQUEST_URI,
    V_REQUEST_URI_RAW,
    V_REQUEST_FILENAME,
    V_REQUEST_BASENAME,
    V_REQUEST_LINE,
    V_REQUEST_PROTOCOL,
    V_QUERY_STRING,
    V_REMOTE_ADDR,
    V_REQUEST_BODY,
    V_REQUEST_BODY_LENGTH,
    V_REQBODY_PROCESSOR,
    V_REQBODY_ERROR,
    V_ARGS_COMBINED_SIZE,
    V_MATCHED_VAR,
    V_MATCHED_VAR_NAME,
    V_UNIQUE_ID,
    V_UNSET,      /* single values never set for these requests: MULTIPART_*, FILES_COMBINED_SIZE, ... */
    V_PERSISTENT, /* IP, GLOBAL, SESSION, USER, RESOURCE: kept by libmodsecurity across transactions,
                     unknown here (see fork_rule) */
    V_UNSUPPORTED
};

/* Values are scanned with the patterns of the rules that can inspect them: one database per class
 * of values, so that a header or the body is not run through every argument rule's pattern. */
enum { C_ARGS, C_HEADERS, C_BODY, C_URI, C_OTHER, NCLASSES };

static int class_of(int kind, int count)
{
    if (count) return C_OTHER;
    switch (kind) {
    case V_ARGS:
    case V_ARGS_NAMES:
    case V_EMPTY:
        return C_ARGS;
    case V_REQUEST_HEADERS:
    case V_REQUEST_HEADERS_NAMES:
        return C_HEADERS;
    case V_REQUEST_BODY:
        return C_BODY;
    case V_REQUEST_METHOD:
    case V_REQUEST_URI:
    case V_REQUEST_URI_RAW:
    case V_REQUEST_FILENAME:
    case V_REQUEST_BASENAME:
    case V_REQUEST_LINE:
    case V_REQUEST_PROTOCOL:
    case V_QUERY_STRING:
    case V_REMOTE_ADDR:
    case V_REQBODY_PROCESSOR:
    case V_REQBODY_ERROR:
    case V_UNIQUE_ID:
    case V_UNSET:
        return C_URI;
    default:
        return C_OTHER;
    }
}

/* The values that change from message to message of one call; everything else a phase 2 replay
 * reads is the same for every message (the call's facts, phase 1's outcome, the state the replay
 * itself builds from them). */
static int message_kind(int kind)
{
    switch (kind) {
    case V_ARGS:
    case V_ARGS_NAMES:
    case V_REQUEST_BODY:
    case V_REQUEST_BODY_LENGTH:
    case V_ARGS_COMBINED_SIZE:
        return 1;
    default:
        return 0;
    }
}

static const struct {
    const char *name;
    int kind;
} var_names[] = {
    {"ARGS", V_ARGS},
    {"ARGS_NAMES", V_ARGS_NAMES},
    {"ARGS_GET", V_EMPTY},
    {"ARGS_GET_NAMES", V_EMPTY},
    {"ARGS_POST", V_EMPTY},
    {"ARGS_POST_NAMES", V_EMPTY},
    {"FILES", V_EMPTY},
    {"FILES_NAMES", V_EMPTY},
    {"FILES_SIZES", V_EMPTY},
    {"FILES_TMPNAMES", V_EMPTY},
    {"REQUEST_COOKIES", V_EMPTY},
    {"REQUEST_COOKIES_NAMES", V_EMPTY},
    {"XML", V_EMPTY},
    {"MULTIPART_PART_HEADERS", V_EMPTY},
    {"REQUEST_HEADERS", V_REQUEST_HEADERS},
    {"REQUEST_HEADERS_NAMES", V_REQUEST_HEADERS_NAMES},
    {"TX", V_TX},
    {"MATCHED_VARS", V_MATCHED_VARS},
    {"MATCHED_VARS_NAMES", V_MATCHED_VARS_NAMES},
    {"REQUEST_METHOD", V_REQUEST_METHOD},
    {"REQUEST_URI", V_REQUEST_URI},
    {"REQUEST_URI_RAW", V_REQUEST_URI_RAW},
    {"REQUEST_FILENAME", V_REQUEST_FILENAME},
    {"PATH_INFO", V_REQUEST_FILENAME},
    {"REQUEST_BASENAME", V_REQUEST_BASENAME},
    {"REQUEST_LINE", V_REQUEST_LINE},
    {"REQUEST_PROTOCOL", V_REQUEST_PROTOCOL},
    {"QUERY_STRING", V_QUERY_STRING},
    {"REMOTE_ADDR", V_REMOTE_ADDR},
    {"REQUEST_BODY", V_REQUEST_BODY},
    {"REQUEST_BODY_LENGTH", V_REQUEST_BODY_LENGTH},
    {"REQBODY_PROCESSOR", V_REQBODY_PROCESSOR},
    {"REQBODY_ERROR", V_REQBODY_ERROR},
    {"REQBODY_PROCESSOR_ERROR", V_REQBODY_ERROR},
    {"INBOUND_DATA_ERROR", V_REQBODY_ERROR},
    {"ARGS_COMBINED_SIZE", V_ARGS_COMBINED_SIZE},
    {"MATCHED_VAR", V_MATCHED_VAR},
    {"MATCHED_VAR_NAME", V_MATCHED_VAR_NAME},
    {"UNIQUE_ID", V_UNIQUE_ID},
    {"IP", V_PERSISTENT},
    {"GLOBAL", V_PERSISTENT},
    {"SESSION", V_PERSISTENT},
    {"USER", V_PERSISTENT},
    {"RESOURCE", V_PERSISTENT},
    {"MULTIPART_STRICT_ERROR", V_UNSET},
    {"MULTIPART_UNMATCHED_BOUNDARY", V_UNSET},
    {"MULTIPART_BOUNDARY_QUOTED", V_UNSET},
    {"MULTIPART_BOUNDARY_WHITESPACE", V_UNSET},
    {"MULTIPART_DATA_BEFORE", V_UNSET},
    {"MULTIPART_DATA_AFTER", V_UNSET},
    {"MULTIPART_HEADER_FOLDING", V_UNSET},
    {"MULTIPART_LF_LINE", V_UNSET},
    {"MULTIPART_MISSING_SEMICOLON", V_UNSET},
    {"MULTIPART_INVALID_QUOTING", V_UNSET},
    {"MULTIPART_INVALID_PART", V_UNSET},
    {"MULTIPART_INVALID_HEADER_FOLDING", V_UNSET},
    {"MULTIPART_FILE_LIMIT_EXCEEDED", V_UNSET},
    {"MULTIPART_CRLF_LF_LINES", V_UNSET},
    {"FILES_COMBINED_SIZE", V_UNSET},
    {"REQBODY_ERROR_MSG", V_UNSET},
    {"REQBODY_PROCESSOR_ERROR_MSG", V_UNSET},
};

typedef struct fp_var {
    int kind;
    char *key; /* NULL: the whole collection */
    size_t key_len;
    pcre2_code *key_re; /* /regex/ keys */
    char *key_prefix;   /* a /^literal.../ key's literal: names without it cannot match */
    size_t key_prefix_len;
    int key_prefix_only; /* the regex is /^literal/ and nothing else: the prefix decides */
    int kre;             /* key_re: its index among the distinct key regexes (memo of key_matches_v) */
    int count;
    int exclude;
    char *full; /* "COLL:key" as libmodsecurity compares exclusions */
} fp_var;

/* ---- operators ---- */

enum {
    OP_RX,
    OP_PM,
    OP_STREQ,
    OP_EQ,
    OP_GT,
    OP_LT,
    OP_GE,
    OP_LE,
    OP_WITHIN,
    OP_BEGINSWITH,
    OP_ENDSWITH,
    OP_CONTAINS,
    OP_VALIDATEBYTERANGE,
    OP_DETECTSQLI,
    OP_DETECTXSS,
    OP_UNCONDITIONAL,
    OP_NOMATCH,
    OP_IPMATCH,
    OP_UNSUPPORTED
};

/* One @ipMatch entry: an address and a prefix length. */
typedef struct ip_net {
    int v6;
    unsigned char a[16];
    int bits;
} ip_net;

/* A piece of a %{...} template. */
typedef struct tmpl_part {
    int macro; /* 0: literal text; 1: TX.key; 2: MATCHED_VAR; 3: MATCHED_VAR_NAME; 4: RULE.id */
    char *text;
    size_t len;
} tmpl_part;

typedef struct tmpl {
    tmpl_part *parts;
    size_t nparts;
    int has_macro;
    int unsupported; /* a macro the replay cannot expand */
} tmpl;

typedef struct fp_op {
    int kind;
    int negated;
    tmpl param;
    int pat;           /* Hyperscan id (rx, pm), -1 when none */
    int always;        /* no prefilter: every value is a candidate */
    pcre2_code *re;    /* rx without macros */
    uint8_t table[32]; /* validateByteRange */
    ip_net *nets;      /* ipMatch */
    size_t nnets;
} fp_op;

typedef struct fp_setvar {
    int op; /* '=', '+', '-', '1' (set to one), '!' (unset) */
    tmpl name, value;
} fp_setvar;

typedef struct fp_ctl {
    int kind; /* 0 ruleRemoveById, 1 ruleRemoveByTag, 2 ruleRemoveTargetById, 3 ruleRemoveTargetByTag,
                 4 requestBodyProcessor, 5 no effect on a clean result */
    uint32_t lo, hi;
    char *tag;
    char *target; /* "ARGS:foo" */
    char *processor;
} fp_ctl;

typedef struct fp_rule {
    uint32_t id;
    int phase;
    int marker; /* SecMarker */
    char *marker_name;
    int unconditional; /* SecAction */
    fp_var *vars;
    size_t nvars;
    fp_op op;
    int chain_id; /* transformation chain */
    int multimatch;
    int capture;
    int loud;                      /* a full match would log or disrupt: fallback */
    const char *unsupported;       /* why this rule cannot be evaluated; NULL when it can */
    const char *unsupported_match; /* why a match of this rule cannot be replayed (its actions) */
    fp_setvar *setvars;
    size_t nsetvars;
    fp_ctl *ctls;
    size_t nctls;
    char *skip_after;
    int skip;
    char **tags;
    size_t ntags;
    char *msg;
    int removed;          /* SecRuleRemoveById/ByTag/ByMsg */
    int reads_persistent; /* a target is a persistent collection: its value is unknown here */
    unsigned agg_classes; /* nonzero: a plain @rx/@pm on values of these classes only (see no_candidate) */
    int reads_message;    /* a target is a value of the message (see message_kind): traced (see trace) */
    int forkable;         /* ... and the only thing that depends on it is whether the rule matches */
    struct fp_rule *chain;
} fp_rule;

typedef struct fp_chain {
    waf_transform_id *t;
    size_t n;
    uint64_t mask; /* bit 1 << t of each of its transformations */
} fp_chain;

_Static_assert(WT_COUNT <= 64, "a value's transformation memo is one 64-bit word");

struct waf_fast {
    fp_rule **phase[3]; /* phases 0 (connection), 1 and 2 */
    size_t nphase[3];
    void *all; /* fp_rule *[]: every rule and link, for freeing */
    size_t nall, capall;
    fp_chain *chains;
    size_t nchains;
    size_t npats;                /* Hyperscan ids */
    hs_database_t *db[NCLASSES]; /* NULL: no pattern for that class */
    /* [class * nchains + chain]: the class's patterns of the rules that read values after that
     * chain, for variants other than the value itself (most rules read those through no other
     * chain); NULL where that is the class's whole database or empty */
    hs_database_t **chain_db;
    /* The arguments' patterns split for scanning a message's values in one buffer (see
     * scan_args_together): without anchors (values separated by NUL bytes), with ^ or $ (separated
     * by newlines), and the rest (scanned value by value) */
    hs_database_t *together_db, *lines_db, *apart_db;
    int *pat_chain_lo, *pat_chain_hi; /* per Hyperscan id: the chains its rule reads values after */
    int db_owned;                     /* built without a waf_fast_dbs: this fast path frees them */
    int *always;                      /* ids that are candidates for every value */
    size_t nalways;
    uint64_t *always_bits; /* the same as a bitset over the Hyperscan ids, made at the end of the build */
    uint64_t trigger_masks[256]; /* per byte (see waf_transform_trigger_masks) */
    char **kre_pats;             /* the distinct key regexes, by their text */
    size_t nkre;
    char **names; /* marker names, interned: markers and skipAfter compare by pointer */
    size_t nnames;
    uint32_t max_groups; /* largest capture count of the rx patterns */
    char *uncovered;     /* "id why\n" lines */
    size_t nuncovered;
};

/* Scan results of values that repeat from call to call (header names and values, the path, field
 * names), per worker: each is scanned once, not once per call. Message field values and the body
 * are never cached. Bounded: a direct-mapped table, a colliding value replaces the one before. */
#define SCAN_CACHE_SLOTS 2048
#define SCAN_CACHE_MAX_LEN 512

typedef struct scan_slot {
    const hs_database_t *db;
    uint64_t hash;
    size_t len;
    char *s;
    uint64_t *hits;
} scan_slot;

struct waf_fast_scratch {
    scan_slot *cache; /* SCAN_CACHE_SLOTS, made on first use */
    hs_scratch_t *hs;
};

/* ---- small helpers ---- */

/* The first chain whose output a rule's operator sees: its own, or for multiMatch the empty
 * prefix of it (the chains of every prefix are interned just before the full one). */
static int first_chain(const waf_fast *f, const fp_rule *r)
{
    return r->multimatch ? r->chain_id - (int)f->chains[r->chain_id].n : r->chain_id;
}

static void errf(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

static int ieq(const char *a, size_t al, const char *b, size_t bl)
{
    if (al != bl) return 0;
    for (size_t i = 0; i < al; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i])) return 0;
    return 1;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* std::stoi as libmodsecurity calls it: 0 when there are no digits or the value does not fit. */
static long stoi_(const char *s, size_t len)
{
    char buf[64];
    if (len >= sizeof buf) len = sizeof buf - 1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (end == buf || errno || v > INT32_MAX || v < INT32_MIN) return 0;
    return v;
}

/* atoll on the value's C string (stops at a NUL byte). */
static long long atoll_(const char *s, size_t len)
{
    char buf[64];
    size_t n = strnlen(s, len);
    if (n >= sizeof buf) n = sizeof buf - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return atoll(buf);
}

/* ---- templates (RunTimeString) ---- */

static void tmpl_free(tmpl *t)
{
    for (size_t i = 0; i < t->nparts; i++)
        free(t->parts[i].text);
    free(t->parts);
    memset(t, 0, sizeof *t);
}

static int tmpl_add(tmpl *t, int macro, const char *s, size_t n)
{
    tmpl_part *p = realloc(t->parts, (t->nparts + 1) * sizeof *p);
    if (!p) return -1;
    t->parts = p;
    p[t->nparts].macro = macro;
    p[t->nparts].text = xstrndup(s, n);
    p[t->nparts].len = n;
    if (!p[t->nparts].text) return -1;
    t->nparts++;
    return 0;
}

/* "%{tx.foo}" and friends: what libmodsecurity's RunTimeString expands. */
static int tmpl_parse(tmpl *t, const char *s)
{
    memset(t, 0, sizeof *t);
    const char *p = s;
    while (*p) {
        const char *m = strstr(p, "%{");
        const char *e = m ? strchr(m, '}') : NULL;
        if (!m || !e) return tmpl_add(t, 0, p, strlen(p));
        if (m > p && tmpl_add(t, 0, p, (size_t)(m - p)) < 0) return -1;
        const char *v = m + 2;
        size_t vl = (size_t)(e - v);
        t->has_macro = 1;
        if (vl > 3 && (v[2] == '.' || v[2] == ':') && ieq(v, 2, "tx", 2)) {
            if (tmpl_add(t, 1, v + 3, vl - 3) < 0) return -1;
        } else if (ieq(v, vl, "matched_var", 11)) {
            if (tmpl_add(t, 2, "", 0) < 0) return -1;
        } else if (ieq(v, vl, "matched_var_name", 16)) {
            if (tmpl_add(t, 3, "", 0) < 0) return -1;
        } else if (ieq(v, vl, "rule.id", 7)) {
            if (tmpl_add(t, 4, "", 0) < 0) return -1;
        } else {
            t->unsupported = 1;
            if (tmpl_add(t, 0, "", 0) < 0) return -1;
        }
        p = e + 1;
    }
    return 0;
}

/* ---- the per-request replay ---- */

/* A bump allocator for one call or one transaction. */
typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    char data[];
} arena_chunk;

typedef struct arena {
    arena_chunk *head;
} arena;

static void *arena_alloc(arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > 16384 ? n : 16384;
        arena_chunk *c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    return p;
}

static void arena_reset(arena *a)
{
    arena_chunk *c = a->head;
    while (c) {
        arena_chunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
}

/* One transformed form of a value, scanned once. */
typedef struct variant {
    const char *s;
    size_t len;
    uint64_t *hits;   /* bit per Hyperscan id; NULL until scanned */
    int8_t sqli, xss; /* libinjection's answers, -1 until asked (variants of call values are reused) */
    int8_t full;      /* scanned with the class's whole database */
    uint8_t nscanned; /* ... or with the chain databases of these chains (hits valid for their ids) */
    int16_t scanned[8];
} variant;

/* A value as rules see it, with its transformed forms cached by chain. */
typedef struct value {
    const char *key;  /* "ARGS:json.a", "REQUEST_HEADERS:user-agent", "REQUEST_URI" */
    const char *name; /* the member's own key ("json.a"); "" for single values */
    size_t name_len;
    const char *s;
    size_t len;
    int16_t *by_chain; /* variant index per chain, -1 not computed, -2 transformation not exact */
    int call_level;    /* a value of the call (headers, path): its variants live as long as the call */
    int repeats;       /* a value that repeats across calls (names, headers, path): scans are cached */
    int cls;           /* C_ARGS, ...: which database scans it */
    uint64_t id_known, id_same; /* per transformation: whether it leaves the value as it is (memo) */
    int id_bytes;               /* id_known holds what the value's byte set decides (see variant_of) */
    struct call_name *cn;       /* ARGS and ARGS_NAMES values: the call's entry for the name, or NULL */
    int orig;                   /* the index of the variant that is the value itself; -1 none yet */
    variant *variants;
    size_t nvariants, capvariants;
    struct applied *applied; /* transformations applied to its forms, reused by every chain */
    size_t napplied;
} value;

/* A transformation applied to one form of a value (the value itself, or an earlier output, known
 * by its address): chains share most of their steps, each is made once per value. */
#define MAX_APPLIED 24

typedef struct applied {
    const char *in;
    int t;
    const char *out; /* `in` when the transformation leaves it as it is; NULL: not exact */
    size_t out_len;
} applied;

typedef struct txvar {
    char *key; /* "TX:<name>", the name in lower case (name = key + 3) */
    char *name;
    size_t nlen;
    char *val;
    size_t len;
} txvar;

typedef struct removal {
    int kind; /* 0 id range, 1 tag, 2 target by id, 3 target by tag */
    uint32_t lo, hi;
    const char *tag, *target;
} removal;

/* One evaluation, in a clean phase 2 replay, of a rule (or chain link) that reads message values, and
 * the ctl exclusions in force then: nrm of them at rm_at in the trace's pool. */
typedef struct trace_step {
    const fp_rule *rule;
    size_t rm_at, nrm;
} trace_step;

typedef struct trace {
    trace_step *steps;
    size_t n, cap;
    removal *rm; /* the exclusions of the steps, a copy each time they change */
    size_t nrm, caprm;
    size_t last_at, last_n; /* the last copy */
} trace;

/* A field name of the call's messages. Messages of one call carry the same names (the schema's), so
 * each is judged once per call: its ARGS_NAMES value (variants, scans, libinjection answers) lives
 * with the call, and which key regexes select it is remembered. Bounded: names beyond the first
 * MAX_CALL_NAMES, or longer than MAX_CALL_NAME_LEN, are values of their message as before. */
#define MAX_CALL_NAMES 64
#define MAX_CALL_NAME_LEN 256

typedef struct call_name {
    value v;             /* the ARGS_NAMES value */
    const char *arg_key; /* "ARGS:<name>" */
    uint64_t hash;
    uint64_t *kre;      /* 2 x words bits: per key regex, whether known, then whether it matches */
    uint64_t *clean_at; /* per step of the call's trace: tested there without a match (trace_check) */
} call_name;

struct waf_fast_call {
    const waf_fast *f;
    const waf_facts *facts;
    const char *txid;
    arena mem; /* lives with the call: header values and their scans */
    int prepared;
    const char *unfit; /* the call cannot be covered: why */
    value *headers, *header_names;
    size_t nheaders;
    value single[V_UNSUPPORTED]; /* call-wide single values */
    char *line, *basename;
    /* phase 1's outcome, replayed once per call */
    int phase1_done;
    const char *phase1_reason;
    uint32_t phase1_rule;
    uint32_t last_rule; /* the rule of the last fallback */
    txvar *tx1;
    size_t ntx1;
    removal rm1[MAX_REMOVALS];
    size_t nrm1;
    int json1;           /* the body processor is JSON after phase 1 */
    const char *marker1; /* a skipAfter marker not found in phase 1 */
    int skip1;
    /* phase 2's trace from a clean message (see trace_check) */
    int have_trace;
    trace trace;
    /* the trace's pattern steps gathered by class and chain (see plan_candidates): built once */
    int plan_built;
    struct plan_pair *plan;
    size_t nplan;
    int trace_never; /* a traced rule expands a macro: judge every message in full */
    trace rec;       /* the trace being recorded (of every state of a forked replay) */
    int rec_bad, rec_matched;
    unsigned long traced; /* messages judged by the trace */
    pcre2_match_data *md;
    call_name *names[MAX_CALL_NAMES];
    size_t nnames;
    /* The names of the last message, when all are the call's: per chain, the OR of their hits
     * after it (name_agg_ok[ch]), made once while the messages keep the same names. */
    call_name *agg_names[MAX_CALL_NAMES];
    size_t nagg_names;
    uint64_t **name_agg;
    unsigned char *name_agg_ok;
};

typedef struct replay {
    uint32_t cur_rule, reason_rule; /* the rule being evaluated, and the one that caused a fallback */
    waf_fast_call *c;
    const waf_fast *f;
    waf_fast_scratch *scratch;
    arena *mem; /* the transaction's */
    int phase;
    const char *reason;
    int recording; /* phase 2: append to the call's trace being recorded */
    txvar tx[MAX_TX];
    size_t ntx;
    removal rm[MAX_REMOVALS];
    size_t nrm;
    int json;
    const char *marker;
    int skip;
    /* MATCHED_VAR(S) */
    int mv_unknown; /* MATCHED_VAR(S) hold a value the replay does not know (a forked match) */
    const value *mv[MAX_MATCHED];
    const char *mv_s[MAX_MATCHED];
    size_t mv_len[MAX_MATCHED];
    size_t nmv;
    /* the transaction's values */
    value *args, **arg_names; /* arg_names[i]: the ARGS_NAMES value of args[i] (maybe the call's) */
    size_t nargs;
    long step;    /* in trace_check: the trace step being checked; -1 otherwise */
    int name_agg; /* the message's names are the call's agg_names (see no_candidate) */
    int together; /* the message's argument values were scanned together (scan_args_together) */
    value body, body_len, combined;
    uint64_t *
        *agg; /* [class * nchains + chain]: the OR of the hits of the class's values; NULL until needed */
    char numbuf[2][32];
} replay;

static int fallback(replay *r, const char *why)
{
    if (!r->reason) {
        r->reason = why;
        r->reason_rule = r->cur_rule;
    }
    return -1;
}

/* ---- values and variants ---- */

static int value_init(replay *r, arena *a, value *v, const char *key, const char *name, size_t name_len,
                      const char *s, size_t len)
{
    (void)r;
    v->key = key;
    v->name = name;
    v->name_len = name_len;
    v->s = s;
    v->len = len;
    v->by_chain = NULL;
    v->call_level = 0;
    v->repeats = 0;
    v->cls = C_OTHER;
    v->id_known = v->id_same = 0;
    v->id_bytes = 0;
    v->cn = NULL;
    v->orig = -1;
    v->variants = NULL;
    v->nvariants = v->capvariants = 0;
    v->applied = NULL;
    v->napplied = 0;
    (void)a;
    return 0;
}

static int scan_cb(unsigned int id, unsigned long long from, unsigned long long to, unsigned int flags,
                   void *ctx)
{
    (void)from;
    (void)to;
    (void)flags;
    uint64_t *bits = ctx;
    bits[id >> 6] |= (uint64_t)1 << (id & 63);
    return 0;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
    return h;
}

/* Scans a variant with db, ORing into var->hits (which holds the always-candidates), through the
 * worker's cache when the value repeats across calls. 0, or -1 when Hyperscan fails. */
static int scan_cached(replay *r, const value *v, variant *var, size_t words, const hs_database_t *db)
{
    /* an empty variant (base64Decode of plain text, say) is the same value whatever it came from */
    int repeats = v->repeats || var->len == 0;
    waf_fast_scratch *sc = r->scratch;
    scan_slot *slot = NULL;
    uint64_t h = 0;
    if (repeats && var->len <= SCAN_CACHE_MAX_LEN) {
        if (!sc->cache) sc->cache = calloc(SCAN_CACHE_SLOTS, sizeof *sc->cache);
        if (sc->cache) {
            h = hash_bytes(var->s, var->len);
            slot = &sc->cache[h & (SCAN_CACHE_SLOTS - 1)];
            if (slot->db == db && slot->hash == h && slot->len == var->len &&
                !memcmp(slot->s, var->s, var->len)) {
                /* the always-candidates of this rules set are set already: OR, not copy */
                for (size_t i = 0; i < words; i++)
                    var->hits[i] |= slot->hits[i];
                return 0;
            }
        }
    }
    if (hs_scan(db, var->s, (unsigned)var->len, 0, sc->hs, scan_cb, var->hits) != HS_SUCCESS) return -1;
    if (slot) {
        char *str = malloc(var->len + 1);
        uint64_t *hits = malloc(words * sizeof *hits);
        if (str && hits) {
            free(slot->s);
            free(slot->hits);
            memcpy(str, var->s, var->len);
            memcpy(hits, var->hits, words * sizeof *hits);
            *slot = (scan_slot){db, h, var->len, str, hits};
        } else {
            free(str);
            free(hits);
        }
    }
    return 0;
}

static inline variant *variant_of(replay *r, arena *a, value *v, int ch, int need_scan);

/* The message's argument values (each as it is, not transformed) scanned in one buffer: a scan
 * costs mostly its start, whatever the length. Every value gets the hits of the whole buffer, a
 * superset of its own: a bit only makes PCRE look at the value. No hit is lost: each pattern in
 * these databases matches inside a value only where it matches inside the buffer.
 *  - together_db: no ^, $, \A, \z, \Z, \G, lookaround or option change, so nothing in them sees
 *    past a value's ends but \b and \B, for which the separating NUL byte is the non-word
 *    character a value's end is;
 *  - lines_db: the same with ^ or $, compiled MULTILINE: separated by newlines, a value's ends are
 *    where ^ and $ hold;
 *  - SINGLEMATCH still reports a pattern that matches anywhere.
 * The rest (apart_db) is scanned value by value. A separator inside a match only adds hits. 0, or
 * -1 with a fallback reason. */
static int scan_args_together(replay *r)
{
    const waf_fast *f = r->f;
    size_t words = (f->npats + 63) / 64, total = 0, n = 0;
    r->together = 1;
    variant **vars = arena_alloc(r->mem, (r->nargs + 1) * sizeof *vars);
    uint64_t *u = arena_alloc(r->mem, words * sizeof *u);
    if (!vars || !u) return fallback(r, "out of memory");
    memset(u, 0, words * sizeof *u);
    for (size_t i = 0; i < r->nargs; i++) {
        value *v = &r->args[i];
        if (!v->len) continue;
        variant *var = variant_of(r, r->mem, v, 0, 0); /* chain 0 is the empty chain: the value */
        if (!var) return -1;
        if (var->full || var->s != v->s) continue;
        vars[n++] = var;
        total += var->len + 1;
    }
    if (!n) return 0;
    char *buf = arena_alloc(r->mem, total);
    if (!buf) return fallback(r, "out of memory");
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(buf + at, vars[i]->s, vars[i]->len);
        at += vars[i]->len;
        buf[at++] = '\0';
    }
    if (hs_scan(f->together_db, buf, (unsigned)(total - 1), 0, r->scratch->hs, scan_cb, u) != HS_SUCCESS)
        return fallback(r, "scan failed");
    if (f->lines_db) {
        for (size_t i = 0, at2 = 0; i + 1 < n; i++) {
            at2 += vars[i]->len;
            buf[at2++] = '\n';
        }
        if (hs_scan(f->lines_db, buf, (unsigned)(total - 1), 0, r->scratch->hs, scan_cb, u) != HS_SUCCESS)
            return fallback(r, "scan failed");
    }
    for (size_t i = 0; i < n; i++) {
        variant *var = vars[i];
        if (!var->hits) {
            if (!(var->hits = arena_alloc(r->mem, words * sizeof *var->hits)))
                return fallback(r, "out of memory");
            memcpy(var->hits, f->always_bits, words * sizeof *var->hits);
        }
        for (size_t w = 0; w < words; w++)
            var->hits[w] |= u[w];
        if (f->apart_db && hs_scan(f->apart_db, var->s, (unsigned)var->len, 0, r->scratch->hs, scan_cb,
                                   var->hits) != HS_SUCCESS)
            return fallback(r, "scan failed");
        var->full = 1;
    }
    return 0;
}

/* The variant of v after chain `ch` (arena memory), scanned; NULL with r->reason on fallback. */
static variant *variant_make(replay *r, arena *a, value *v, int ch, int need_scan)
{
    const waf_fast *f = r->f;
    if (!v->by_chain) {
        v->by_chain = arena_alloc(a, f->nchains * sizeof *v->by_chain);
        if (!v->by_chain) return fallback(r, "out of memory"), NULL;
        memset(v->by_chain, 0xff, f->nchains * sizeof *v->by_chain); /* every index -1: not computed */
    }
    int idx = v->by_chain[ch];
    if (idx == -2) return fallback(r, "transformation not exact for this value"), NULL;
    if (idx < 0) {
        /* apply the chain */
        const fp_chain *c = &f->chains[ch];
        const char *cur = v->s;
        size_t len = v->len;
        if (!v->id_bytes) {
            /* one pass over the value's bytes decides every transformation whose trigger bytes
             * it lacks (most, for most values); the rest are checked one by one below */
            v->id_bytes = 1;
            if (v->len > 0 && v->len <= WAF_TRANSFORM_MAX_LEN) {
                uint64_t may_change = 0;
                for (size_t i = 0; i < v->len; i++)
                    may_change |= f->trigger_masks[(unsigned char)v->s[i]];
                v->id_known |= ~may_change;
                v->id_same |= ~may_change;
            }
        }
        /* every transformation of the chain known to leave the value as it is: the original */
        size_t from = (c->mask & v->id_known & v->id_same) == c->mask ? c->n : 0;
        for (size_t i = from; i < c->n; i++) {
            /* while the value is still the original, whether a transformation changes it is
             * remembered across chains: most chains leave most values as they are */
            if (cur == v->s) {
                uint64_t bit = (uint64_t)1 << (c->t[i] & 63);
                if (!(v->id_known & bit)) {
                    v->id_known |= bit;
                    if (waf_transform_identity(c->t[i], cur, len)) v->id_same |= bit;
                }
                if (v->id_same & bit) continue;
            }
            applied made, *ap = NULL;
            for (size_t k = 0; k < v->napplied && !ap; k++)
                if (v->applied[k].in == cur && v->applied[k].t == (int)c->t[i]) ap = &v->applied[k];
            if (!ap) {
                made = (applied){cur, (int)c->t[i], cur, len};
                /* the value itself is known to change (its memo above); a later form may not */
                if (cur == v->s || !waf_transform_identity(c->t[i], cur, len)) {
                    size_t cap = waf_transform_max_out(c->t[i], len) + 1;
                    char *out = arena_alloc(a, cap);
                    if (!out) return fallback(r, "out of memory"), NULL;
                    size_t n = waf_transform_apply(c->t[i], cur, len, out);
                    made.out = n == (size_t)-1 ? NULL : out;
                    made.out_len = n;
                }
                ap = &made;
                if (!v->applied) v->applied = arena_alloc(a, MAX_APPLIED * sizeof *v->applied);
                if (v->applied && v->napplied < MAX_APPLIED) {
                    v->applied[v->napplied] = made;
                    ap = &v->applied[v->napplied++];
                }
            }
            if (!ap->out) {
                v->by_chain[ch] = -2;
                return fallback(r, "transformation not exact for this value"), NULL;
            }
            cur = ap->out;
            len = ap->out_len;
        }
        /* the same bytes as an earlier variant share it (and its scan, made below if not yet) */
        if (cur == v->s) idx = v->orig;
        for (size_t i = 0; cur != v->s && i < v->nvariants && idx < 0; i++)
            if (v->variants[i].len == len && (v->variants[i].s == cur || !memcmp(v->variants[i].s, cur, len)))
                idx = (int)i;
        if (idx < 0) {
            if (v->nvariants == v->capvariants) {
                size_t cap = v->capvariants ? v->capvariants * 2 : 4;
                variant *nv = arena_alloc(a, cap * sizeof *nv);
                if (!nv) return fallback(r, "out of memory"), NULL;
                if (v->nvariants) memcpy(nv, v->variants, v->nvariants * sizeof *nv);
                v->variants = nv;
                v->capvariants = cap;
            }
            variant *n = &v->variants[v->nvariants];
            n->s = cur;
            n->len = len;
            n->hits = NULL;
            n->sqli = n->xss = -1;
            n->full = 0;
            n->nscanned = 0;
            idx = (int)v->nvariants++;
            if (cur == v->s) v->orig = idx;
        }
        v->by_chain[ch] = (int16_t)idx;
    }
    variant *var = &v->variants[idx];
    if (need_scan && !var->full && f->db[v->cls]) {
        size_t words = (f->npats + 63) / 64;
        if (!var->hits) {
            if (!(var->hits = arena_alloc(a, words * sizeof *var->hits)))
                return fallback(r, "out of memory"), NULL;
            memcpy(var->hits, f->always_bits, words * sizeof *var->hits);
        }
        if (var->s == v->s && v->cls == C_ARGS && f->together_db && !r->together && v >= r->args &&
            v < r->args + r->nargs && v->len) {
            if (scan_args_together(r) < 0) return NULL;
            if (var->full) return var;
        }
        /* A transformed variant is read through few chains: each scans it with its own small
         * database (hits valid for that chain's ids), until a ninth asks for the whole one. The
         * value itself, read through most chains, is scanned with the whole database. */
        const hs_database_t *cdb =
            var->s != v->s ? f->chain_db[(size_t)v->cls * f->nchains + (size_t)ch] : NULL;
        int done = 0;
        for (size_t i = 0; cdb && i < var->nscanned; i++)
            done |= var->scanned[i] == ch;
        if (done) return var;
        if (cdb && var->nscanned < sizeof var->scanned / sizeof *var->scanned) {
            if (scan_cached(r, v, var, words, cdb) < 0) return fallback(r, "scan failed"), NULL;
            var->scanned[var->nscanned++] = (int16_t)ch;
        } else {
            if (scan_cached(r, v, var, words, f->db[v->cls]) < 0) return fallback(r, "scan failed"), NULL;
            var->full = 1;
        }
    }
    return var;
}

/* variant_make for a variant made (and scanned, when asked) already, the common case: inline. */
static inline variant *variant_of(replay *r, arena *a, value *v, int ch, int need_scan)
{
    int idx = v->by_chain ? v->by_chain[ch] : -1;
    if (idx >= 0) {
        variant *var = &v->variants[idx];
        if (!need_scan || var->full || !r->f->db[v->cls]) return var;
    }
    return variant_make(r, a, v, ch, need_scan);
}

/* The value itself, scanned in full, when chain ch is known to leave it as it is (every one of the
 * chain's transformations, by the value's memo): most chains, for most values. NULL otherwise. */
static inline variant *as_is(const waf_fast *f, value *v, int ch)
{
    const fp_chain *c = &f->chains[ch];
    if (v->orig < 0 || (c->mask & v->id_known & v->id_same) != c->mask) return NULL;
    variant *var = &v->variants[v->orig];
    return var->full ? var : NULL;
}

/* ---- TX ---- */

static txvar *tx_find(replay *r, const char *name, size_t len)
{
    for (size_t i = 0; i < r->ntx; i++)
        if (r->tx[i].nlen == len && ieq(r->tx[i].name, len, name, len)) return &r->tx[i];
    return NULL;
}

static int tx_set(replay *r, const char *name, size_t nlen, const char *val, size_t vlen)
{
    txvar *t = tx_find(r, name, nlen);
    if (!t) {
        if (r->ntx == MAX_TX) return fallback(r, "too many TX variables");
        t = &r->tx[r->ntx++];
        t->key = arena_alloc(r->mem, nlen + 4);
        if (!t->key) return fallback(r, "out of memory");
        memcpy(t->key, "TX:", 3);
        t->name = t->key + 3;
        t->nlen = nlen;
        for (size_t i = 0; i < nlen; i++)
            t->name[i] = (char)tolower((unsigned char)name[i]);
        t->name[nlen] = '\0';
    }
    t->val = arena_alloc(r->mem, vlen + 1);
    if (!t->val) return fallback(r, "out of memory");
    memcpy(t->val, val, vlen);
    t->val[vlen] = '\0';
    t->len = vlen;
    return 0;
}

static void tx_del(replay *r, const char *name, size_t nlen)
{
    txvar *t = tx_find(r, name, nlen);
    if (!t) return;
    *t = r->tx[--r->ntx];
}

/* Expands a template; the result lives in the transaction's arena. NULL: fallback. */
static char *expand(replay *r, const fp_rule *rule, const tmpl *t, size_t *outlen)
{
    if (t->unsupported) return fallback(r, "macro not modelled"), NULL;
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        char *out = NULL;
        if (pass == 1 && !(out = arena_alloc(r->mem, n + 1))) return fallback(r, "out of memory"), NULL;
        size_t k = 0;
        for (size_t i = 0; i < t->nparts; i++) {
            const tmpl_part *p = &t->parts[i];
            const char *s = p->text;
            size_t l = p->len;
            char idbuf[16];
            if (p->macro == 1) {
                txvar *v = tx_find(r, p->text, p->len);
                s = v ? v->val : "";
                l = v ? v->len : 0;
            } else if ((p->macro == 2 || p->macro == 3) && r->mv_unknown) {
                return fallback(r, "matched value unknown"), NULL;
            } else if (p->macro == 2) {
                s = r->nmv ? r->mv_s[r->nmv - 1] : "";
                l = r->nmv ? r->mv_len[r->nmv - 1] : 0;
            } else if (p->macro == 3) {
                s = r->nmv ? r->mv[r->nmv - 1]->key : "";
                l = strlen(s);
            } else if (p->macro == 4) {
                snprintf(idbuf, sizeof idbuf, "%u", rule ? rule->id : 0);
                s = idbuf;
                l = strlen(s);
            }
            if (pass == 1) memcpy(out + k, s, l);
            k += l;
        }
        if (pass == 0)
            n = k;
        else {
            out[k] = '\0';
            *outlen = k;
            return out;
        }
    }
    return NULL;
}

/* ---- operators ---- */

/* "127.0.0.1,::1,10.0.0.0/8": entries as libmodsecurity's tree takes them (an entry it would
 * refuse makes the rule uncovered). */
static int ip_nets(fp_op *op, const char *param)
{
    const char *p = param;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char part[80];
        if (n == 0 || n >= sizeof part) return -1;
        memcpy(part, p, n);
        part[n] = '\0';
        ip_net net = {0};
        char *slash = strchr(part, '/');
        if (slash) *slash = '\0';
        net.v6 = strchr(part, ':') != NULL;
        if (inet_pton(net.v6 ? AF_INET6 : AF_INET, part, net.a) != 1) return -1;
        net.bits = net.v6 ? 128 : 32;
        if (slash) {
            char *end;
            long b = strtol(slash + 1, &end, 10);
            if (end == slash + 1 || *end || b < 0 || b > net.bits) return -1;
            net.bits = (int)b;
        }
        ip_net *nn = realloc(op->nets, (op->nnets + 1) * sizeof *nn);
        if (!nn) return -1;
        op->nets = nn;
        nn[op->nnets++] = net;
        p = e ? e + 1 : p + n;
    }
    return op->nnets ? 0 : -1;
}

static int ip_match(const fp_op *op, const char *s, size_t len)
{
    char buf[64];
    unsigned char a[16];
    if (len >= sizeof buf || memchr(s, 0, len)) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    int v6 = strchr(buf, ':') != NULL;
    if (inet_pton(v6 ? AF_INET6 : AF_INET, buf, a) != 1) return 0;
    for (size_t i = 0; i < op->nnets; i++) {
        const ip_net *n = &op->nets[i];
        if (n->v6 != v6) continue;
        int full = n->bits / 8, rest = n->bits % 8;
        if (memcmp(a, n->a, (size_t)full)) continue;
        if (rest && ((a[full] ^ n->a[full]) & (0xff << (8 - rest)))) continue;
        return 1;
    }
    return 0;
}

/* 1 match, 0 no match, -1 fallback. `var` is the scanned variant for rx/pm (may be NULL for others). */
static int op_eval(replay *r, const fp_rule *rule, const variant *var, const char *s, size_t len)
{
    const fp_op *op = &rule->op;
    const char *p = NULL;
    size_t pl = 0;
    if (op->param.has_macro || (op->kind != OP_RX && op->kind != OP_PM)) {
        if (op->param.has_macro) {
            if (!(p = expand(r, rule, &op->param, &pl))) return -1;
        } else {
            p = op->param.nparts ? op->param.parts[0].text : "";
            pl = op->param.nparts ? op->param.parts[0].len : 0;
        }
    }
    int m = 0;
    switch (op->kind) {
    case OP_RX: {
        if (op->param.has_macro) return fallback(r, "regex with a macro");
        if (!op->re) return 1 ^ op->negated; /* empty pattern: libmodsecurity matches everything */
        if (op->pat >= 0 && var && var->hits &&
            !(var->hits[op->pat >> 6] & ((uint64_t)1 << (op->pat & 63)))) {
            m = 0;
            break;
        }
        pcre2_match_data *md = r->c->md;
        int rc = pcre2_jit_match(op->re, (PCRE2_SPTR)s, len, 0, 0, md, NULL);
        if (rc == PCRE2_ERROR_JIT_BADOPTION || rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(op->re, (PCRE2_SPTR)s, len, 0, PCRE2_NO_JIT, md, NULL);
        if (rc < -1) return fallback(r, "regex error");
        m = rc > 0;
        if (m && rule->capture) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            for (int i = 0; i < rc; i++) {
                if (ov[2 * i + 1] > len) continue;
                char name[16];
                snprintf(name, sizeof name, "%d", i);
                if (tx_set(r, name, strlen(name), s + ov[2 * i], ov[2 * i + 1] - ov[2 * i]) < 0) return -1;
            }
        }
        break;
    }
    case OP_PM:
        if (op->param.has_macro) return fallback(r, "pm with a macro");
        /* The literal scan is a superset: a hit is not a verdict. */
        if (!var || !var->hits || (var->hits[op->pat >> 6] & ((uint64_t)1 << (op->pat & 63)))) {
            return fallback(r, "pm candidate");
        }
        m = 0;
        break;
    case OP_STREQ:
        m = pl == len && !memcmp(p, s, len);
        break;
    case OP_EQ:
        m = stoi_(p, pl) == stoi_(s, len);
        break;
    case OP_GT:
        m = atoll_(s, len) > atoll_(p, pl);
        break;
    case OP_LT:
        m = atoll_(s, len) < atoll_(p, pl);
        break;
    case OP_GE:
        m = atoll_(s, len) >= atoll_(p, pl);
        break;
    case OP_LE:
        m = atoll_(s, len) <= atoll_(p, pl);
        break;
    case OP_WITHIN:
        m = len == 0 || memmem(p, pl, s, len) != NULL;
        break;
    case OP_BEGINSWITH:
        m = len >= pl && !memcmp(s, p, pl);
        break;
    case OP_ENDSWITH:
        m = len >= pl && !memcmp(s + len - pl, p, pl);
        break;
    case OP_CONTAINS:
        m = pl == 0 || memmem(s, len, p, pl) != NULL;
        break;
    case OP_VALIDATEBYTERANGE:
        for (size_t i = 0; i < len && !m; i++) {
            uint8_t x = (uint8_t)s[i];
            if (!(op->table[x >> 3] & (1 << (x & 7)))) m = 1;
        }
        break;
    case OP_DETECTSQLI: {
        char fp[8];
        if (var && var->s == s && var->sqli >= 0) {
            m = var->sqli;
        } else {
            m = libinjection_sqli(s, len, fp) != 0;
            if (var && var->s == s) ((variant *)var)->sqli = (int8_t)m;
        }
        if (m && rule->capture) return fallback(r, "capture of a libinjection fingerprint");
        break;
    }
    case OP_DETECTXSS:
        if (var && var->s == s && var->xss >= 0) {
            m = var->xss;
        } else if (!memchr(s, '<', len) && !memchr(s, '=', len)) {
            /* libinjection's HTML5 tokenizer makes a tag, comment or doctype only after a '<', and
             * an attribute value that follows an attribute name only after a '=': without either
             * byte no token can be found dangerous (test_waf_shortcuts checks this on the
             * library itself) */
            m = 0;
        } else {
            m = libinjection_xss(s, len) != 0;
            if (var && var->s == s) ((variant *)var)->xss = (int8_t)m;
        }
        if (m && rule->capture) return fallback(r, "capture of a libinjection match");
        break;
    case OP_UNCONDITIONAL:
        m = 1;
        break;
    case OP_NOMATCH:
        m = 0;
        break;
    case OP_IPMATCH:
        m = ip_match(op, s, len);
        break;
    default:
        return fallback(r, "operator not modelled");
    }
    return m ^ op->negated;
}

/* ---- targets ---- */

typedef int (*value_fn)(replay *r, const fp_rule *rule, value *v);

static int key_matches(replay *r, const fp_var *fv, const char *name, size_t len)
{
    if (!fv->key && !fv->key_re) return 1;
    if (fv->key_re) {
        if (fv->key_prefix && !memchr(name, '\n', len)) {
            if (len < fv->key_prefix_len ||
                !ieq(name, fv->key_prefix_len, fv->key_prefix, fv->key_prefix_len))
                return 0;
            if (fv->key_prefix_only) return 1;
        }
        int rc = pcre2_jit_match(fv->key_re, (PCRE2_SPTR)name, len, 0, 0, r->c->md, NULL);
        if (rc == PCRE2_ERROR_JIT_BADOPTION || rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(fv->key_re, (PCRE2_SPTR)name, len, 0, PCRE2_NO_JIT, r->c->md, NULL);
        return rc > 0;
    }
    return ieq(fv->key, fv->key_len, name, len);
}

/* key_matches on a value's name, remembered for the call's names (see call_name). */
static int key_matches_v(replay *r, const fp_var *fv, const value *v)
{
    call_name *cn = v->cn;
    if (!fv->key_re || !cn || !cn->kre) return key_matches(r, fv, v->name, v->name_len);
    size_t words = (r->f->nkre + 63) / 64, w = (size_t)fv->kre >> 6;
    uint64_t bit = (uint64_t)1 << (fv->kre & 63);
    if (cn->kre[w] & bit) return (cn->kre[words + w] & bit) != 0;
    int m = key_matches(r, fv, v->name, v->name_len);
    cn->kre[w] |= bit;
    if (m) cn->kre[words + w] |= bit;
    return m;
}

static int excluded(replay *r, const fp_rule *rule, const value *v)
{
    for (size_t i = 0; i < rule->nvars; i++) {
        const fp_var *e = &rule->vars[i];
        if (!e->exclude) continue;
        if (e->key_re) {
            if (key_matches_v(r, e, v)) return 1;
        } else if (!strcmp(e->full, v->key)) {
            return 1;
        }
    }
    for (size_t i = 0; i < r->nrm; i++) {
        const removal *m = &r->rm[i];
        if (m->kind == 2 && rule->id >= m->lo && rule->id <= m->hi && !strcmp(m->target, v->key)) return 1;
        if (m->kind == 3 && !strcmp(m->target, v->key))
            for (size_t t = 0; t < rule->ntags; t++)
                if (!strcmp(rule->tags[t], m->tag)) return 1;
    }
    return 0;
}

static value *single(replay *r, int kind)
{
    waf_fast_call *c = r->c;
    switch (kind) {
    case V_REQUEST_BODY:
        return &r->body;
    case V_REQUEST_BODY_LENGTH:
        return &r->body_len;
    case V_ARGS_COMBINED_SIZE:
        return &r->combined;
    case V_REQBODY_PROCESSOR:
        return r->json ? &c->single[V_REQBODY_PROCESSOR] : &c->single[V_UNSET];
    case V_REQBODY_ERROR:
        return r->phase >= 2 ? &c->single[V_REQBODY_ERROR] : &c->single[V_UNSET];
    default:
        return &c->single[kind];
    }
}

static int run_setvars(replay *r, const fp_rule *rule)
{
    for (size_t i = 0; i < rule->nsetvars; i++) {
        const fp_setvar *sv = &rule->setvars[i];
        size_t nl, vl = 0;
        char *name = expand(r, rule, &sv->name, &nl);
        if (!name) return -1;
        char *val = NULL;
        if (sv->op != '!' && sv->op != '1' && !(val = expand(r, rule, &sv->value, &vl))) return -1;
        if (sv->op == '!') {
            tx_del(r, name, nl);
        } else if (sv->op == '1') {
            if (tx_set(r, name, nl, "1", 1) < 0) return -1;
        } else if (sv->op == '=') {
            if (tx_set(r, name, nl, val, vl) < 0) return -1;
        } else {
            txvar *cur = tx_find(r, name, nl);
            long long a = cur ? stoi_(cur->val, cur->len) : 0, b = stoi_(val, vl);
            char num[32];
            snprintf(num, sizeof num, "%lld", sv->op == '+' ? a + b : a - b);
            if (tx_set(r, name, nl, num, strlen(num)) < 0) return -1;
        }
    }
    return 0;
}

/* Applies the rule's operator to one value (its transformations first). */
static int test_value(replay *r, const fp_rule *rule, value *v, int *matched)
{
    if (excluded(r, rule, v)) return 0;
    const waf_fast *f = r->f;
    /* multiMatch: the value before any transformation, then after each that changed it; chains
     * for every prefix are interned next to the full one (see compile). */
    int first = first_chain(f, rule);
    const char *prev = NULL;
    size_t prevlen = 0;
    for (int ch = first; ch <= rule->chain_id; ch++) {
        variant *var = variant_of(r, v->call_level ? &r->c->mem : r->mem, v, ch, rule->op.pat >= 0);
        if (!var) return -1;
        if (rule->multimatch && ch > first && var->len == prevlen && !memcmp(var->s, prev, prevlen)) continue;
        prev = var->s;
        prevlen = var->len;
        int m = op_eval(r, rule, var, var->s, var->len);
        if (m < 0) return -1;
        if (!m) continue;
        *matched = 1;
        if (r->nmv < MAX_MATCHED) {
            r->mv[r->nmv] = v;
            r->mv_s[r->nmv] = var->s;
            r->mv_len[r->nmv] = var->len;
            r->nmv++;
        } else {
            return fallback(r, "too many matched values");
        }
        /* setvar runs on every match, whatever the rest of the chain does */
        if (rule->unsupported_match && rule->nsetvars) return fallback(r, rule->unsupported_match);
        if (run_setvars(r, rule) < 0) return -1;
    }
    return 0;
}

static int each_value(replay *r, const fp_rule *rule, const fp_var *fv, int *matched)
{
    waf_fast_call *c = r->c;
    char num[32];
    if (fv->count) {
        size_t n = 0;
        switch (fv->kind) {
        case V_ARGS:
        case V_ARGS_NAMES:
            for (size_t i = 0; i < r->nargs; i++)
                n += key_matches_v(r, fv, &r->args[i]);
            break;
        case V_REQUEST_HEADERS:
        case V_REQUEST_HEADERS_NAMES:
            for (size_t i = 0; i < c->nheaders; i++)
                n += key_matches(r, fv, c->headers[i].name, c->headers[i].name_len);
            break;
        case V_TX:
            if (fv->key && !fv->key_re)
                n = tx_find(r, fv->key, fv->key_len) != NULL;
            else
                for (size_t i = 0; i < r->ntx; i++)
                    n += key_matches(r, fv, r->tx[i].name, r->tx[i].nlen);
            break;
        case V_EMPTY:
            break;
        default:
            return fallback(r, "count of a variable not modelled");
        }
        snprintf(num, sizeof num, "%zu", n);
        char *s = arena_alloc(r->mem, strlen(num) + 1);
        value *v = arena_alloc(r->mem, sizeof *v);
        if (!s || !v) return fallback(r, "out of memory");
        strcpy(s, num);
        value_init(r, r->mem, v, "", "", 0, s, strlen(s));
        return test_value(r, rule, v, matched);
    }
    switch (fv->kind) {
    case V_EMPTY:
        return 0;
    default:
        break;
    }
    switch (fv->kind) {
    case V_ARGS:
    case V_ARGS_NAMES:
        for (size_t i = 0; i < r->nargs; i++) {
            value *v = fv->kind == V_ARGS ? &r->args[i] : r->arg_names[i];
            if (!key_matches_v(r, fv, v)) continue;
            /* a name of the call tested clean at this trace step in an earlier message: the same
             * bytes under the same rule and exclusions, so clean again */
            uint64_t *memo = fv->kind == V_ARGS_NAMES && r->step >= 0 && v->cn ? v->cn->clean_at : NULL;
            if (memo && (memo[r->step >> 6] & ((uint64_t)1 << (r->step & 63)))) continue;
            int m = 0;
            if (test_value(r, rule, v, &m) < 0) return -1;
            if (m)
                *matched = 1;
            else if (memo)
                memo[r->step >> 6] |= (uint64_t)1 << (r->step & 63);
        }
        return 0;
    case V_REQUEST_HEADERS:
    case V_REQUEST_HEADERS_NAMES: {
        value *set = fv->kind == V_REQUEST_HEADERS ? c->headers : c->header_names;
        for (size_t i = 0; i < c->nheaders; i++)
            if (key_matches(r, fv, set[i].name, set[i].name_len) && test_value(r, rule, &set[i], matched) < 0)
                return -1;
        return 0;
    }
    case V_TX: {
        if (fv->key && !fv->key_re) {
            /* one variable by name */
            txvar *t = tx_find(r, fv->key, fv->key_len);
            if (!t) return 0;
            value *v = arena_alloc(r->mem, sizeof *v);
            if (!v) return fallback(r, "out of memory");
            value_init(r, r->mem, v, t->key, t->name, t->nlen, t->val, t->len);
            return test_value(r, rule, v, matched);
        }
        /* TX changes while a rule runs (captures, setvar): take the values first. */
        size_t n = 0;
        value *vals = arena_alloc(r->mem, (r->ntx + 1) * sizeof *vals);
        if (!vals) return fallback(r, "out of memory");
        for (size_t i = 0; i < r->ntx; i++) {
            const txvar *t = &r->tx[i];
            if (key_matches(r, fv, t->name, t->nlen))
                value_init(r, r->mem, &vals[n++], t->key, t->name, t->nlen, t->val, t->len);
        }
        for (size_t i = 0; i < n; i++)
            if (test_value(r, rule, &vals[i], matched) < 0) return -1;
        return 0;
    }
    case V_MATCHED_VARS:
    case V_MATCHED_VARS_NAMES:
    case V_MATCHED_VAR:
    case V_MATCHED_VAR_NAME:
        if (r->mv_unknown) return fallback(r, "matched value unknown");
        break;
    default:
        break;
    }
    switch (fv->kind) {
    case V_MATCHED_VARS:
    case V_MATCHED_VARS_NAMES: {
        /* the values the previous link matched, fixed before this link adds its own */
        size_t n = r->nmv;
        value *vals = arena_alloc(r->mem, (n + 1) * sizeof *vals);
        if (!vals) return fallback(r, "out of memory");
        for (size_t i = 0; i < n; i++) {
            const value *src = r->mv[i];
            if (fv->kind == V_MATCHED_VARS)
                value_init(r, r->mem, &vals[i], src->key, src->name, src->name_len, r->mv_s[i], r->mv_len[i]);
            else
                value_init(r, r->mem, &vals[i], src->key, src->name, src->name_len, src->key,
                           strlen(src->key));
        }
        if (fv->key) return fallback(r, "MATCHED_VARS with a key");
        for (size_t i = 0; i < n; i++)
            if (test_value(r, rule, &vals[i], matched) < 0) return -1;
        return 0;
    }
    case V_MATCHED_VAR:
    case V_MATCHED_VAR_NAME: {
        value *v = arena_alloc(r->mem, sizeof *v);
        if (!v) return fallback(r, "out of memory");
        if (!r->nmv)
            value_init(r, r->mem, v, fv->kind == V_MATCHED_VAR ? "MATCHED_VAR" : "MATCHED_VAR_NAME", "", 0,
                       "", 0);
        else if (fv->kind == V_MATCHED_VAR)
            value_init(r, r->mem, v, "MATCHED_VAR", "", 0, r->mv_s[r->nmv - 1], r->mv_len[r->nmv - 1]);
        else
            value_init(r, r->mem, v, "MATCHED_VAR_NAME", "", 0, r->mv[r->nmv - 1]->key,
                       strlen(r->mv[r->nmv - 1]->key));
        return test_value(r, rule, v, matched);
    }
    case V_PERSISTENT:
        return fallback(r, "persistent collection");
    case V_UNSUPPORTED:
        return fallback(r, "variable not modelled");
    default:
        if (fv->key) return fallback(r, "single value with a key");
        return test_value(r, rule, single(r, fv->kind), matched);
    }
}

/* ---- rules ---- */

static int removed_at_runtime(const replay *r, const fp_rule *rule)
{
    for (size_t i = 0; i < r->nrm; i++) {
        const removal *m = &r->rm[i];
        if (m->kind == 0 && rule->id >= m->lo && rule->id <= m->hi) return 1;
        if (m->kind == 1)
            for (size_t t = 0; t < rule->ntags; t++)
                if (!strcmp(rule->tags[t], m->tag)) return 1;
    }
    return 0;
}

static int run_ctls(replay *r, const fp_rule *rule)
{
    for (size_t i = 0; i < rule->nctls; i++) {
        const fp_ctl *c = &rule->ctls[i];
        if (c->kind == 5) continue;
        if (c->kind == 4) {
            if (strcmp(c->processor, "JSON")) return fallback(r, "ctl: another body processor");
            r->json = 1;
            continue;
        }
        if (r->nrm == MAX_REMOVALS) return fallback(r, "too many ctl exclusions");
        removal *m = &r->rm[r->nrm++];
        m->kind = c->kind;
        m->lo = c->lo;
        m->hi = c->hi;
        m->tag = c->tag;
        m->target = c->target;
    }
    return 0;
}

/* The values of a class that rules with a plain operator read, for the aggregated hits below. */
/* Room for the values class_values lists for class cls. */
static size_t class_capacity(const replay *r, int cls)
{
    return (cls == C_ARGS ? 2 * r->nargs : cls == C_HEADERS ? 2 * r->c->nheaders : 16) + 1;
}

static int class_values(replay *r, int cls, value **list, size_t *n)
{
    waf_fast_call *c = r->c;
    static const int uri_kinds[] = {V_REQUEST_METHOD,   V_REQUEST_URI,      V_REQUEST_URI_RAW,
                                    V_REQUEST_FILENAME, V_REQUEST_BASENAME, V_REQUEST_LINE,
                                    V_REQUEST_PROTOCOL, V_QUERY_STRING,     V_UNSET};
    size_t k = 0;
    switch (cls) {
    case C_ARGS:
        for (size_t i = 0; i < r->nargs; i++) {
            list[k++] = &r->args[i];
            if (!r->name_agg) list[k++] = r->arg_names[i];
        }
        break;
    case C_HEADERS:
        for (size_t i = 0; i < c->nheaders; i++) {
            list[k++] = &c->headers[i];
            list[k++] = &c->header_names[i];
        }
        break;
    case C_BODY:
        list[k++] = &r->body;
        break;
    case C_URI:
        for (size_t i = 0; i < sizeof uri_kinds / sizeof *uri_kinds; i++)
            list[k++] = &c->single[uri_kinds[i]];
        break;
    }
    *n = k;
    return 0;
}

/* ORs into agg the hits of the message's names (the call's agg_names) after chain ch, made once
 * per chain while messages keep the same names. 0, 1 when a name has no hits (no database: every
 * value is a candidate), -1 fallback. */
static int names_agg(replay *r, int ch, uint64_t *agg, size_t words)
{
    waf_fast_call *c = r->c;
    if (!c->name_agg_ok[ch]) {
        uint64_t *na = c->name_agg[ch];
        if (!na && !(na = c->name_agg[ch] = arena_alloc(&c->mem, words * sizeof *na)))
            return fallback(r, "out of memory");
        memset(na, 0, words * sizeof *na);
        for (size_t i = 0; i < c->nagg_names; i++) {
            variant *var = variant_of(r, &c->mem, &c->agg_names[i]->v, ch, 1);
            if (!var) return -1;
            if (!var->hits) return 1;
            for (size_t w = 0; w < words; w++)
                na[w] |= var->hits[w];
        }
        c->name_agg_ok[ch] = 1;
    }
    for (size_t w = 0; agg && w < words; w++)
        agg[w] |= c->name_agg[ch][w];
    return 0;
}

/* The OR of the hits of every value of class cls after chain ch, made once per transaction (NULL
 * and *rc 0 when a value has no hits: no database for the class, every value is a candidate; NULL
 * and *rc -1 on fallback). */
static const uint64_t *class_hits(replay *r, int cls, int ch, int *rc)
{
    const waf_fast *f = r->f;
    size_t words = (f->npats + 63) / 64;
    *rc = 0;
    uint64_t **slot = &r->agg[(size_t)cls * f->nchains + (size_t)ch];
    if (*slot) return *slot;
    size_t n;
    value **list = arena_alloc(r->mem, class_capacity(r, cls) * sizeof *list);
    uint64_t *agg = arena_alloc(r->mem, words * sizeof *agg);
    if (!list || !agg) return *rc = fallback(r, "out of memory"), NULL;
    memset(agg, 0, words * sizeof *agg);
    class_values(r, cls, list, &n);
    if (cls == C_ARGS && r->name_agg) {
        int none = names_agg(r, ch, agg, words);
        if (none) return *rc = none < 0 ? -1 : 0, NULL;
    }
    for (size_t i = 0; i < n; i++) {
        value *v = list[i];
        variant *var = variant_of(r, v->call_level ? &r->c->mem : r->mem, v, ch, 1);
        if (!var) return *rc = -1, NULL;
        if (!var->hits) return NULL;
        for (size_t w = 0; w < words; w++)
            agg[w] |= var->hits[w];
    }
    return *slot = agg;
}

/* Whether no value a rule can read holds a candidate for its pattern: then the rule cannot match
 * and need not look at its values one by one. The hits of every value of a class after the rule's
 * transformations (multiMatch: after each prefix of them, every form the operator sees) are ORed
 * once per transaction; a superset of the rule's own targets (key filters and exclusions only
 * remove values), so a missing bit is proof. 1 no candidate, 0 maybe, -1 fallback. */
static int no_candidate(replay *r, const fp_rule *rule, unsigned classes)
{
    const waf_fast *f = r->f;
    int pat = rule->op.pat;
    int first = first_chain(f, rule);
    if (!r->agg) {
        r->agg = arena_alloc(r->mem, NCLASSES * f->nchains * sizeof *r->agg);
        if (!r->agg) return fallback(r, "out of memory");
        memset(r->agg, 0, NCLASSES * f->nchains * sizeof *r->agg);
    }
    for (int cls = 0; cls < NCLASSES; cls++) {
        if (!(classes & (1u << cls))) continue;
        for (int ch = first; ch <= rule->chain_id; ch++) {
            int rc;
            const uint64_t *hits = class_hits(r, cls, ch, &rc);
            if (!hits) return rc;
            if (hits[pat >> 6] & ((uint64_t)1 << (pat & 63))) return 0;
        }
    }
    return 1;
}
/* ---- the trace of phase 2 ----
 *
 * Within one call only the message's own values change from message to message (message_kind);
 * phase 1's outcome, the headers and every other input are the call's. So a clean phase 2 replay
 * of one message is, rule by rule, the replay of any other message of the call up to the first
 * rule evaluation where a message value matches: until then every operator sees the same values
 * in the same state and decides the same way. The trace records, in order, the evaluations in which
 * a message value was tested (none of which matched, or the trace is not kept). A later message is
 * clean if none of its values matches in any of them: then its replay is the traced one, step for
 * step. Otherwise, or on any doubt, it is replayed in full. Not traced: a phase 2 that forks on a
 * persistent collection, and a traced operator whose parameter expands a macro (its value is the
 * state at that point, which the trace does not keep). */

static void trace_free(trace *t)
{
    free(t->steps);
    free(t->rm);
    memset(t, 0, sizeof *t);
}

static int record(replay *r, const fp_rule *rule)
{
    trace *t = &r->c->rec;
    if (rule->op.param.has_macro) r->c->rec_bad = 1;
    if (r->c->rec_bad) return 0;
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        trace_step *p = realloc(t->steps, cap * sizeof *p);
        if (!p) return fallback(r, "out of memory");
        t->steps = p;
        t->cap = cap;
    }
    /* forked states have exclusions of their own: a copy whenever they differ from the last */
    if (r->nrm != t->last_n || (r->nrm && memcmp(t->rm + t->last_at, r->rm, r->nrm * sizeof *r->rm))) {
        if (t->nrm + r->nrm > t->caprm) {
            size_t cap = t->caprm ? 2 * t->caprm : 64;
            while (cap < t->nrm + r->nrm)
                cap *= 2;
            removal *p = realloc(t->rm, cap * sizeof *p);
            if (!p) return fallback(r, "out of memory");
            t->rm = p;
            t->caprm = cap;
        }
        if (r->nrm) memcpy(t->rm + t->nrm, r->rm, r->nrm * sizeof *r->rm);
        t->last_at = t->nrm;
        t->last_n = r->nrm;
        t->nrm += r->nrm;
    }
    t->steps[t->n++] = (trace_step){.rule = rule, .rm_at = t->last_at, .nrm = t->last_n};
    return 0;
}

#define MESSAGE_CLASSES ((1u << C_ARGS) | (1u << C_BODY))

/* The patterns the trace's pattern steps look for in one class of message values after one chain,
 * as the words of the Hyperscan id bitset they fall in. */
typedef struct plan_pair {
    int cls, ch;
    size_t nw;
    uint32_t *w;    /* word indices */
    uint64_t *mask; /* the pattern bits in each */
} plan_pair;

/* Gathers the trace's pattern steps (those no_candidate can rule out) by class and chain. A call
 * without a plan (out of memory) checks step by step. */
static void plan_build(waf_fast_call *c)
{
    const waf_fast *f = c->f;
    const trace *t = &c->trace;
    size_t words = (f->npats + 63) / 64, nslots = (size_t)NCLASSES * f->nchains;
    c->plan_built = 1;
    uint64_t *m = calloc(nslots * words + 1, sizeof *m);
    if (!m) return;
    for (size_t i = 0; i < t->n; i++) {
        const fp_rule *rule = t->steps[i].rule;
        unsigned classes = rule->agg_classes & MESSAGE_CLASSES;
        if (!classes) continue;
        int first = first_chain(f, rule);
        for (int cls = 0; cls < NCLASSES; cls++)
            for (int ch = first; (classes & (1u << cls)) && ch <= rule->chain_id; ch++)
                m[((size_t)cls * f->nchains + (size_t)ch) * words + (size_t)(rule->op.pat >> 6)] |=
                    (uint64_t)1 << (rule->op.pat & 63);
    }
    size_t npairs = 0;
    for (size_t k = 0; k < nslots; k++)
        for (size_t w = 0; w < words; w++)
            if (m[k * words + w]) {
                npairs++;
                break;
            }
    plan_pair *pl = arena_alloc(&c->mem, (npairs + 1) * sizeof *pl);
    for (size_t k = 0, n = 0; pl && k < nslots; k++) {
        const uint64_t *row = m + k * words;
        size_t nw = 0;
        for (size_t w = 0; w < words; w++)
            nw += row[w] != 0;
        if (!nw) continue;
        plan_pair *p = &pl[n++];
        p->cls = (int)(k / f->nchains);
        p->ch = (int)(k % f->nchains);
        p->nw = 0;
        p->w = arena_alloc(&c->mem, nw * sizeof *p->w);
        p->mask = arena_alloc(&c->mem, nw * sizeof *p->mask);
        if (!p->w || !p->mask) {
            pl = NULL;
            break;
        }
        for (size_t w = 0; w < words; w++)
            if (row[w]) {
                p->w[p->nw] = (uint32_t)w;
                p->mask[p->nw++] = row[w];
            }
    }
    free(m);
    c->plan = pl;
    c->nplan = pl ? npairs : 0;
}

/* Whether some message value holds a candidate for a pattern step of the trace: the check
 * no_candidate makes step by step, made once for all of them. 0 none (every pattern step is
 * ruled out), 1 maybe (or no plan), -1 fallback. */
static int plan_candidates(replay *r)
{
    waf_fast_call *c = r->c;
    const waf_fast *f = r->f;
    if (!c->plan_built) plan_build(c);
    if (!c->plan) return 1;
    size_t words = (f->npats + 63) / 64;
    value **lists[NCLASSES] = {0};
    size_t nlist[NCLASSES] = {0};
    for (size_t k = 0; k < c->nplan; k++) {
        const plan_pair *p = &c->plan[k];
        if (!lists[p->cls]) {
            if (!(lists[p->cls] = arena_alloc(r->mem, class_capacity(r, p->cls) * sizeof **lists)))
                return fallback(r, "out of memory");
            class_values(r, p->cls, lists[p->cls], &nlist[p->cls]);
        }
        value **list = lists[p->cls];
        size_t n = nlist[p->cls];
        if (p->cls == C_ARGS && r->name_agg) {
            int rc = names_agg(r, p->ch, NULL, words);
            if (rc) return rc;
            for (size_t j = 0; j < p->nw; j++)
                if (c->name_agg[p->ch][p->w[j]] & p->mask[j]) return 1;
        }
        for (size_t i = 0; i < n; i++) {
            value *v = list[i];
            variant *var = as_is(f, v, p->ch);
            if (!var && !(var = variant_of(r, v->call_level ? &c->mem : r->mem, v, p->ch, 1))) return -1;
            if (!var->hits) return 1; /* no database for the class: every value is a candidate */
            for (size_t j = 0; j < p->nw; j++)
                if (var->hits[p->w[j]] & p->mask[j]) return 1;
        }
    }
    return 0;
}

/* The message values of r against the call's trace: 0 none matched (the message is clean), 1 one
 * matched, -1 a fallback reason; for 1 and -1, the message is replayed in full. */
static int trace_check(replay *r)
{
    waf_fast_call *c = r->c;
    const trace *t = &c->trace;
    r->phase = 2;
    size_t words = (t->n + 63) / 64;
    for (size_t i = 0; i < r->nargs; i++) {
        call_name *cn = r->arg_names[i]->cn;
        if (cn && !cn->clean_at && (cn->clean_at = arena_alloc(&c->mem, words * sizeof *cn->clean_at)))
            memset(cn->clean_at, 0, words * sizeof *cn->clean_at);
    }
    int candidates = plan_candidates(r);
    if (candidates < 0) return -1;
    for (size_t i = 0; i < t->n; i++) {
        const trace_step *st = &t->steps[i];
        r->step = (long)i;
        const fp_rule *rule = st->rule;
        if (st->nrm) memcpy(r->rm, t->rm + st->rm_at, st->nrm * sizeof *r->rm);
        r->nrm = st->nrm;
        r->cur_rule = rule->id;
        /* a plain pattern: its message values (all of these classes) hold no candidate */
        if (rule->agg_classes & MESSAGE_CLASSES) {
            if (!candidates) continue;
            int none = no_candidate(r, rule, rule->agg_classes & MESSAGE_CLASSES);
            if (none < 0) return -1;
            if (none) continue;
        }
        int matched = 0;
        for (size_t k = 0; k < rule->nvars; k++) {
            const fp_var *fv = &rule->vars[k];
            if (fv->exclude || !message_kind(fv->kind)) continue;
            if (each_value(r, rule, fv, &matched) < 0) return -1;
            if (matched) return 1;
        }
    }
    return 0;
}

/* Evaluates a rule (and its chain): 1 full match, 0 none, -1 fallback. */
static int eval_rule(replay *r, const fp_rule *rule, int head)
{
    if (rule->unsupported) return fallback(r, rule->unsupported);
    /* ruleRemoveById from a ctl applies to every link whose id it names (links have id 0) */
    if (rule->id && removed_at_runtime(r, rule)) return 0;
    int matched = 0;
    if (rule->unconditional) {
        /* SecAction: its setvars, no matched variables */
        matched = 1;
        if (rule->unsupported_match) return fallback(r, rule->unsupported_match);
        if (run_setvars(r, rule) < 0) return -1;
    } else {
        if (r->recording && rule->reads_message && record(r, rule) < 0) return -1;
        int none = rule->agg_classes ? no_candidate(r, rule, rule->agg_classes) : 0;
        if (none < 0) return -1;
        for (size_t i = 0; !none && i < rule->nvars; i++) {
            const fp_var *fv = &rule->vars[i];
            if (fv->exclude) continue;
            int m = 0;
            if (each_value(r, rule, fv, &m) < 0) return -1;
            if (m && r->recording && message_kind(fv->kind)) r->c->rec_matched = 1;
            matched |= m;
        }
    }
    if (!matched) {
        r->nmv = 0;
        r->mv_unknown = 0;
        return 0;
    }
    if (rule->chain) {
        int c = eval_rule(r, rule->chain, 0);
        if (c <= 0) return c;
    }
    /* a full match: this link's after-match actions */
    if (rule->loud) return fallback(r, "a rule matched");
    if (rule->unsupported_match) return fallback(r, rule->unsupported_match);
    if (run_ctls(r, rule) < 0) return -1;
    if (head) {
        if (rule->skip_after) r->marker = rule->skip_after;
        if (rule->skip) r->skip = rule->skip;
    }
    return 1;
}

/* One rule of the phase in one state: 0 done, -1 fallback, 1 it reads a persistent collection and
 * must be followed both ways (see run_phase). */
static int step(replay *r, const fp_rule *rule)
{
    if (r->marker && !rule->marker) return 0;
    if (rule->marker) {
        if (r->marker == rule->marker_name) r->marker = NULL; /* interned: same name, same pointer */
        return 0;
    }
    if (r->skip > 0) {
        r->skip--;
        return 0;
    }
    if (rule->removed) return 0;
    r->cur_rule = rule->id;
    /* ruleRemoveByTag is checked before the rule runs, ruleRemoveById inside it: both skip it */
    if (removed_at_runtime(r, rule)) return 0;
    if (rule->reads_persistent) {
        if (!rule->forkable || r->phase != 2) return fallback(r, "persistent collection");
        return 1;
    }
    return eval_rule(r, rule, 1) < 0 ? -1 : 0;
}

/* The two outcomes of a rule whose only target is a persistent collection (libmodsecurity keeps IP,
 * GLOBAL, ... across transactions, written by rules of other transactions): it did not match (the
 * matched variables are cleaned), or it matched some value unknown here (then its chain is followed,
 * and a full match runs its after-match actions, or falls back when it would log). */
static int forked_outcome(replay *r, const fp_rule *rule, int matched)
{
    if (!matched) {
        r->nmv = 0;
        r->mv_unknown = 0;
        return 0;
    }
    r->mv_unknown = 1;
    if (rule->chain) {
        int c = eval_rule(r, rule->chain, 0);
        if (c <= 0) return c;
    }
    if (rule->loud) return fallback(r, "a rule matched");
    if (run_ctls(r, rule) < 0) return -1;
    if (rule->skip_after) r->marker = rule->skip_after;
    if (rule->skip) r->skip = rule->skip;
    return 0;
}

static int same_state(const replay *a, const replay *b)
{
    if (a->ntx != b->ntx || a->nrm != b->nrm || a->json != b->json || a->skip != b->skip ||
        a->nmv != b->nmv || a->mv_unknown != b->mv_unknown || (!a->marker != !b->marker) ||
        (a->marker && strcmp(a->marker, b->marker)))
        return 0;
    for (size_t i = 0; i < a->ntx; i++)
        if (strcmp(a->tx[i].name, b->tx[i].name) || a->tx[i].len != b->tx[i].len ||
            memcmp(a->tx[i].val, b->tx[i].val, a->tx[i].len))
            return 0;
    return !memcmp(a->rm, b->rm, a->nrm * sizeof *a->rm) && !memcmp(a->mv, b->mv, a->nmv * sizeof *a->mv) &&
           !memcmp(a->mv_s, b->mv_s, a->nmv * sizeof *a->mv_s);
}

#define MAX_STATES 4

/* Replays a phase. A rule that reads a persistent collection forks the replay (phase 2 only): every
 * state goes on in lockstep, and states that have become equal (at markers, where the CRS's
 * alternatives meet) are merged. Clean only if every state is. On -1, st[0] holds the reason. */
static int run_phase_states(replay **st, size_t *n, int phase)
{
    const waf_fast *f = st[0]->f;
    for (size_t k = 0; k < *n; k++)
        st[k]->phase = phase;
    for (size_t i = 0; i < f->nphase[phase]; i++) {
        const fp_rule *rule = f->phase[phase][i];
        size_t before = *n;
        for (size_t k = 0; k < before; k++) {
            int rc = step(st[k], rule);
            if (rc == 1 && *n == MAX_STATES) rc = fallback(st[k], "persistent collection read too often");
            if (rc == 1) {
                replay *b = malloc(sizeof *b);
                if (!b)
                    rc = fallback(st[k], "out of memory");
                else {
                    *b = *st[k];
                    st[(*n)++] = b;
                    if (forked_outcome(st[k], rule, 0) < 0 || forked_outcome(b, rule, 1) < 0) rc = -1;
                }
            }
            if (rc < 0) {
                if (k) {
                    st[0]->reason = st[k]->reason;
                    st[0]->reason_rule = st[k]->reason_rule;
                }
                return -1;
            }
        }
        if (*n > 1 && rule->marker) {
            for (size_t a = 0; a < *n; a++) {
                for (size_t b = a + 1; b < *n;) {
                    if (same_state(st[a], st[b])) {
                        free(st[b]);
                        st[b] = st[--*n];
                    } else {
                        b++;
                    }
                }
            }
        }
    }
    return 0;
}

static int run_phase(replay *r, int phase)
{
    replay *st[MAX_STATES] = {r};
    size_t n = 1;
    int rc = run_phase_states(st, &n, phase);
    for (size_t k = 1; k < n; k++)
        free(st[k]);
    return rc;
}

/* ---- the call ---- */

static const char *dupz(arena *a, const char *s, size_t n)
{
    char *p = arena_alloc(a, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static void call_prepare(waf_fast_call *c)
{
    const waf_facts *fa = c->facts;
    arena *a = &c->mem;
    c->prepared = 1;
    const char *uri = fa->uri;
    if (!uri || uri[0] != '/' || strpbrk(uri, "?#%+\\")) {
        c->unfit = "path with a query string or encoding";
        return;
    }
    c->nheaders = fa->nheaders;
    c->headers = arena_alloc(a, (fa->nheaders + 1) * sizeof *c->headers);
    c->header_names = arena_alloc(a, (fa->nheaders + 1) * sizeof *c->header_names);
    if (!c->headers || !c->header_names) {
        c->unfit = "out of memory";
        return;
    }
    for (size_t i = 0; i < fa->nheaders; i++) {
        const waf_kv *h = &fa->headers[i];
        if (ieq(h->name, h->name_len, "cookie", 6)) {
            c->unfit = "cookies";
            return;
        }
        if (ieq(h->name, h->name_len, "content-type", 12)) {
            /* multipart and urlencoded types choose another body processor in libmodsecurity */
            if ((h->value_len >= 9 && !strncasecmp(h->value, "multipart", 9)) ||
                (h->value_len >= 33 && !strncasecmp(h->value, "application/x-www-form-urlencoded", 33))) {
                c->unfit = "form body";
                return;
            }
        }
        size_t kl = 16 + h->name_len + 1;
        char *key = arena_alloc(a, kl);
        char *nkey = arena_alloc(a, 22 + h->name_len + 1);
        const char *name = dupz(a, h->name, h->name_len);
        if (!key || !nkey || !name) {
            c->unfit = "out of memory";
            return;
        }
        snprintf(key, kl, "REQUEST_HEADERS:%s", name);
        snprintf(nkey, 22 + h->name_len + 1, "REQUEST_HEADERS_NAMES:%s", name);
        value_init(NULL, a, &c->headers[i], key, key + 16, h->name_len, h->value, h->value_len);
        value_init(NULL, a, &c->header_names[i], nkey, nkey + 22, h->name_len, name, h->name_len);
        c->headers[i].call_level = c->header_names[i].call_level = 1;
        c->headers[i].repeats = c->header_names[i].repeats = 1;
        c->headers[i].cls = c->header_names[i].cls = C_HEADERS;
    }
    size_t ul = strlen(uri);
    const char *base = "";
    size_t bl = 0;
    const char *slash = NULL;
    for (const char *p = uri; *p; p++)
        if (*p == '/' || *p == '\\') slash = p;
    if (slash && slash[1]) {
        base = slash + 1;
        bl = strlen(base);
    }
    size_t ll = strlen(fa->method) + 1 + ul + 9;
    char *line = arena_alloc(a, ll + 1);
    if (!line) {
        c->unfit = "out of memory";
        return;
    }
    snprintf(line, ll + 1, "%s %s HTTP/2.0", fa->method, uri);
    static const char *const names[V_UNSUPPORTED] = {
        [V_REQUEST_METHOD] = "REQUEST_METHOD",
        [V_REQUEST_URI] = "REQUEST_URI",
        [V_REQUEST_URI_RAW] = "REQUEST_URI_RAW",
        [V_REQUEST_FILENAME] = "REQUEST_FILENAME",
        [V_REQUEST_BASENAME] = "REQUEST_BASENAME",
        [V_REQUEST_LINE] = "REQUEST_LINE",
        [V_REQUEST_PROTOCOL] = "REQUEST_PROTOCOL",
        [V_QUERY_STRING] = "QUERY_STRING",
        [V_REMOTE_ADDR] = "REMOTE_ADDR",
        [V_REQBODY_PROCESSOR] = "REQBODY_PROCESSOR",
        [V_REQBODY_ERROR] = "REQBODY_ERROR",
        [V_UNIQUE_ID] = "UNIQUE_ID",
        [V_UNSET] = "",
    };
    for (int k = 0; k < V_UNSUPPORTED; k++) {
        /* a single value's key is its variable's name (what regex exclusions and MATCHED_VAR_NAME see) */
        value_init(NULL, a, &c->single[k], names[k] ? names[k] : "", names[k] ? names[k] : "",
                   names[k] ? strlen(names[k]) : 0, "", 0);
        c->single[k].call_level = 1;
        c->single[k].repeats = k != V_UNIQUE_ID;
        c->single[k].cls = C_URI;
    }
    c->single[V_REQUEST_METHOD].s = fa->method;
    c->single[V_REQUEST_METHOD].len = strlen(fa->method);
    value *u[] = {&c->single[V_REQUEST_URI], &c->single[V_REQUEST_URI_RAW], &c->single[V_REQUEST_FILENAME]};
    for (size_t i = 0; i < 3; i++) {
        u[i]->s = uri;
        u[i]->len = ul;
    }
    c->single[V_REQUEST_BASENAME].s = base;
    c->single[V_REQUEST_BASENAME].len = bl;
    c->single[V_REQUEST_LINE].s = line;
    c->single[V_REQUEST_LINE].len = strlen(line);
    c->single[V_REQUEST_PROTOCOL].s = "HTTP/2.0";
    c->single[V_REQUEST_PROTOCOL].len = 8;
    c->single[V_REMOTE_ADDR].s = fa->client_ip;
    c->single[V_REMOTE_ADDR].len = strlen(fa->client_ip);
    c->single[V_REQBODY_PROCESSOR].s = "JSON";
    c->single[V_REQBODY_PROCESSOR].len = 4;
    c->single[V_REQBODY_ERROR].s = "0";
    c->single[V_REQBODY_ERROR].len = 1;
    c->single[V_UNIQUE_ID].s = c->txid;
    c->single[V_UNIQUE_ID].len = strlen(c->txid);
}

waf_fast_call *waf_fast_call_new(const waf_fast *f, const waf_facts *facts, const char *txid)
{
    waf_fast_call *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->f = f;
    c->facts = facts;
    c->txid = txid ? txid : "";
    c->md = pcre2_match_data_create(f->max_groups + 1, NULL);
    if (!c->md) {
        free(c);
        return NULL;
    }
    return c;
}

void waf_fast_call_free(waf_fast_call *c)
{
    if (!c) return;
    arena_reset(&c->mem);
    pcre2_match_data_free(c->md);
    free(c->tx1);
    trace_free(&c->trace);
    trace_free(&c->rec);
    free(c);
}

/* "ARGS:<name>" into key (name_len + 6 bytes) and "ARGS_NAMES:<name>" into nkey (name_len + 12). */
static void names_key(char *key, char *nkey, const char *name, size_t len)
{
    memcpy(key, "ARGS:", 5);
    memcpy(key + 5, name, len);
    key[5 + len] = '\0';
    memcpy(nkey, "ARGS_NAMES:", 11);
    memcpy(nkey + 11, name, len);
    nkey[11 + len] = '\0';
}

/* The call's entry for a field name, made on first sight; NULL when the call keeps no more names
 * (or no memory): the name is then a value of its message. */
static call_name *call_name_of(waf_fast_call *c, const char *name, size_t len)
{
    uint64_t h = hash_bytes(name, len);
    for (size_t i = 0; i < c->nnames; i++) {
        call_name *cn = c->names[i];
        if (cn->hash == h && cn->v.name_len == len && !memcmp(cn->v.name, name, len)) return cn;
    }
    if (c->nnames == MAX_CALL_NAMES || len > MAX_CALL_NAME_LEN) return NULL;
    size_t words = (c->f->nkre + 63) / 64;
    call_name *cn = arena_alloc(&c->mem, sizeof *cn);
    char *key = arena_alloc(&c->mem, len + 6), *nkey = arena_alloc(&c->mem, len + 12);
    uint64_t *kre = words ? arena_alloc(&c->mem, 2 * words * sizeof *kre) : NULL;
    if (!cn || !key || !nkey || (words && !kre)) return NULL;
    names_key(key, nkey, name, len);
    value_init(NULL, &c->mem, &cn->v, nkey, nkey + 11, len, key + 5, len);
    cn->v.repeats = 1;
    cn->v.call_level = 1;
    cn->v.cls = C_ARGS;
    cn->v.cn = cn;
    cn->arg_key = key;
    cn->hash = h;
    if (kre) memset(kre, 0, 2 * words * sizeof *kre);
    cn->kre = kre;
    cn->clean_at = NULL;
    c->names[c->nnames++] = cn;
    return cn;
}

/* n in decimal into buf (at least 21 bytes), as "%zu" writes it: twice per message, without stdio. */
static void decimal(char *buf, size_t n)
{
    char tmp[24];
    size_t k = 0;
    do {
        tmp[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    for (size_t i = 0; i < k; i++)
        buf[i] = tmp[k - 1 - i];
    buf[k] = '\0';
}

static void replay_init(replay *r, waf_fast_call *c, waf_fast_scratch *scratch, arena *mem)
{
    memset(r, 0, offsetof(replay, tx));
    r->c = c;
    r->f = c->f;
    r->scratch = scratch;
    r->mem = mem;
    r->ntx = r->nrm = r->nmv = 0;
    r->json = 0;
    r->marker = NULL;
    r->skip = 0;
    r->args = NULL;
    r->arg_names = NULL;
    r->nargs = 0;
    r->step = -1;
    r->name_agg = 0;
    r->together = 0;
    r->mv_unknown = 0;
    r->numbuf[0][0] = r->numbuf[1][0] = '\0';
    /* phase 1: no body yet (REQUEST_BODY and the sizes are unset, as in libmodsecurity) */
    value_init(r, mem, &r->body, "REQUEST_BODY", "REQUEST_BODY", 12, "", 0);
    r->body.cls = C_BODY;
    value_init(r, mem, &r->body_len, "REQUEST_BODY_LENGTH", "REQUEST_BODY_LENGTH", 19, "", 0);
    value_init(r, mem, &r->combined, "ARGS_COMBINED_SIZE", "ARGS_COMBINED_SIZE", 18, "", 0);
    r->agg = NULL;
}

int waf_fast_judge(waf_fast_call *c, waf_fast_scratch *s, const waf_arg *args, size_t nargs, const char *body,
                   size_t body_len, const char **reason)
{
    const waf_fast *f = c->f;
    replay *r = malloc(sizeof *r);
    arena mem = {0};
    int rv = WAF_FAST_FALLBACK;
    *reason = NULL;
    c->last_rule = 0;
    if (!r) {
        *reason = "out of memory";
        return WAF_FAST_FALLBACK;
    }
    if (!c->prepared) call_prepare(c);
    if (c->unfit) {
        *reason = c->unfit;
        goto out;
    }
    /* phase 1: once per call; its TX, exclusions and body processor carry into every phase 2 */
    if (!c->phase1_done) {
        replay_init(r, c, s, &c->mem);
        r->reason = NULL;
        c->phase1_done = 1;
        if (run_phase(r, 0) < 0 || run_phase(r, 1) < 0) {
            c->phase1_reason = r->reason ? r->reason : "fallback";
            c->phase1_rule = r->reason_rule;
        } else {
            c->tx1 = malloc((r->ntx + 1) * sizeof *c->tx1);
            if (!c->tx1) {
                c->phase1_reason = "out of memory";
            } else {
                memcpy(c->tx1, r->tx, r->ntx * sizeof *c->tx1); /* strings stay in the call's arena */
                c->ntx1 = r->ntx;
                memcpy(c->rm1, r->rm, r->nrm * sizeof *r->rm);
                c->nrm1 = r->nrm;
                c->json1 = r->json;
                c->marker1 = r->marker; /* interned, lives with the fast path */
                c->skip1 = r->skip;
            }
        }
    }
    if (c->phase1_reason) {
        *reason = c->phase1_reason;
        c->last_rule = c->phase1_rule;
        goto out;
    }
    if (!c->json1) {
        *reason = "body processor not JSON";
        goto out;
    }
    replay_init(r, c, s, &mem);
    r->reason = NULL;
    /* the transaction's values */
    r->nargs = nargs;
    r->args = arena_alloc(&mem, (nargs + 1) * sizeof *r->args);
    r->arg_names = arena_alloc(&mem, (nargs + 1) * sizeof *r->arg_names);
    value *own_names = arena_alloc(&mem, (nargs + 1) * sizeof *own_names);
    if (!r->args || !r->arg_names || !own_names) {
        *reason = "out of memory";
        goto out;
    }
    size_t combined = 0;
    for (size_t i = 0; i < nargs; i++) {
        const waf_arg *a = &args[i];
        /* libmodsecurity's JSON parser refuses a body with bytes that are not UTF-8 (REQBODY_ERROR,
         * rule 200002): not modelled, such a message falls back */
        if (!waf_is_utf8((const uint8_t *)a->value, a->value_len) ||
            !waf_is_utf8((const uint8_t *)a->name, a->name_len)) {
            *reason = "argument not UTF-8";
            goto out;
        }
        call_name *cn = call_name_of(c, a->name, a->name_len);
        const char *key;
        if (cn) {
            key = cn->arg_key;
            r->arg_names[i] = &cn->v;
        } else {
            char *k = arena_alloc(&mem, a->name_len + 6);
            char *nkey = arena_alloc(&mem, a->name_len + 12);
            if (!k || !nkey) {
                *reason = "out of memory";
                goto out;
            }
            names_key(k, nkey, a->name, a->name_len);
            value_init(r, &mem, &own_names[i], nkey, nkey + 11, a->name_len, k + 5, a->name_len);
            own_names[i].repeats = 1; /* field names come from the schema */
            own_names[i].cls = C_ARGS;
            r->arg_names[i] = &own_names[i];
            key = k;
        }
        value_init(r, &mem, &r->args[i], key, key + 5, a->name_len, a->value, a->value_len);
        r->args[i].cls = C_ARGS;
        r->args[i].cn = cn;
        combined += a->name_len + a->value_len;
    }
    /* the messages of a call mostly carry the same names: their aggregated hits are kept */
    if (nargs && nargs <= MAX_CALL_NAMES && f->nchains) {
        int all_call = 1;
        for (size_t i = 0; i < nargs && all_call; i++)
            all_call = r->arg_names[i]->cn != NULL;
        if (all_call && !c->name_agg) {
            c->name_agg = arena_alloc(&c->mem, f->nchains * sizeof *c->name_agg);
            c->name_agg_ok = arena_alloc(&c->mem, f->nchains);
            if (c->name_agg && c->name_agg_ok) {
                memset(c->name_agg, 0, f->nchains * sizeof *c->name_agg);
                memset(c->name_agg_ok, 0, f->nchains);
            } else {
                c->name_agg = NULL;
                all_call = 0;
            }
        }
        if (all_call) {
            int same = c->nagg_names == nargs;
            for (size_t i = 0; i < nargs && same; i++)
                same = c->agg_names[i] == r->arg_names[i]->cn;
            if (!same) {
                for (size_t i = 0; i < nargs; i++)
                    c->agg_names[i] = r->arg_names[i]->cn;
                c->nagg_names = nargs;
                memset(c->name_agg_ok, 0, f->nchains);
            }
            r->name_agg = 1;
        }
    }
    value_init(r, &mem, &r->body, "REQUEST_BODY", "REQUEST_BODY", 12, body ? body : "", body ? body_len : 0);
    r->body.cls = C_BODY;
    if (body_len) decimal(r->numbuf[0], body_len);
    value_init(r, &mem, &r->body_len, "REQUEST_BODY_LENGTH", "REQUEST_BODY_LENGTH", 19, r->numbuf[0],
               strlen(r->numbuf[0]));
    if (nargs) decimal(r->numbuf[1], combined);
    value_init(r, &mem, &r->combined, "ARGS_COMBINED_SIZE", "ARGS_COMBINED_SIZE", 18, r->numbuf[1],
               strlen(r->numbuf[1]));
    if (c->have_trace) {
        int traced = trace_check(r);
        r->step = -1;
        if (traced == 0) {
            c->traced++;
            rv = WAF_FAST_CLEAN;
            goto out;
        }
        /* replayed in full, on the values and variants the check made */
        r->reason = NULL;
        r->reason_rule = r->cur_rule = 0;
        r->nmv = 0;
        r->mv_unknown = 0;
    }
    memcpy(r->tx, c->tx1, c->ntx1 * sizeof *c->tx1);
    r->ntx = c->ntx1;
    memcpy(r->rm, c->rm1, c->nrm1 * sizeof *r->rm);
    r->nrm = c->nrm1;
    r->json = c->json1;
    r->marker = c->marker1;
    r->skip = c->skip1;
    int rec = !c->have_trace && !c->trace_never;
    if (rec) {
        trace_free(&c->rec);
        c->rec_bad = c->rec_matched = 0;
        r->recording = 1;
    }
    if (run_phase(r, 2) < 0) {
        *reason = r->reason ? r->reason : "fallback";
        c->last_rule = r->reason_rule;
        goto out;
    }
    /* a trace is kept from a clean replay in which no message value matched */
    if (rec && !c->rec_matched) {
        if (c->rec_bad) {
            c->trace_never = 1;
        } else {
            c->trace = c->rec;
            c->have_trace = 1;
            memset(&c->rec, 0, sizeof c->rec);
        }
    }
    rv = WAF_FAST_CLEAN;
out:
    (void)f;
    arena_reset(&mem);
    free(r);
    return rv;
}

/* ---- building ---- */

static fp_rule *new_rule(waf_fast *f)
{
    /* rules are linked by pointer: allocate each separately, keep a list for freeing */
    fp_rule *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    if (f->nall == f->capall) {
        size_t cap = f->capall ? f->capall * 2 : 512;
        void *n = realloc(f->all, cap * sizeof(fp_rule *));
        if (!n) {
            free(r);
            return NULL;
        }
        f->all = n;
        f->capall = cap;
    }
    ((fp_rule **)f->all)[f->nall++] = r;
    return r;
}

static int chain_intern(waf_fast *f, const waf_transform_id *t, size_t n)
{
    for (size_t i = 0; i < f->nchains; i++)
        if (f->chains[i].n == n && (!n || !memcmp(f->chains[i].t, t, n * sizeof *t))) return (int)i;
    fp_chain *c = realloc(f->chains, (f->nchains + 1) * sizeof *c);
    if (!c) return -1;
    f->chains = c;
    c[f->nchains].n = n;
    c[f->nchains].t = malloc((n + 1) * sizeof *t);
    if (!c[f->nchains].t) return -1;
    if (n) memcpy(c[f->nchains].t, t, n * sizeof *t);
    c[f->nchains].mask = 0;
    for (size_t i = 0; i < n; i++)
        c[f->nchains].mask |= (uint64_t)1 << (t[i] & 63);
    return (int)f->nchains++;
}

/* For multiMatch every prefix of the chain must be interned consecutively, ending with the full
 * one: chains [id-n .. id] are the prefixes of length 0..n. */
static int chain_intern_prefixes(waf_fast *f, const waf_transform_id *t, size_t n)
{
    int first = -1;
    fp_chain *c = realloc(f->chains, (f->nchains + n + 1) * sizeof *c);
    if (!c) return -1;
    f->chains = c;
    for (size_t k = 0; k <= n; k++) {
        c[f->nchains].n = k;
        c[f->nchains].t = malloc((k + 1) * sizeof *t);
        if (!c[f->nchains].t) return -1;
        if (k) memcpy(c[f->nchains].t, t, k * sizeof *t);
        if (first < 0) first = (int)f->nchains;
        f->nchains++;
    }
    return first + (int)n;
}

typedef struct builder {
    waf_fast *f;
    const sl_ruleset *rs;
    /* Hyperscan patterns */
    char **pats;
    unsigned *flags, *ids, *classes; /* classes: bit per value class whose database needs it */
    size_t npats, cap;
    unsigned cur_classes; /* of the rule being compiled */
    int paranoia;         /* the level the rules set runs at (a hint; 0: unknown) */
    int cur_level;        /* the paranoia-level/N tag of the rule being compiled; 0: none */
    char *err;
    size_t errlen;
} builder;

static int add_pat(builder *b, char *expr, unsigned flags, unsigned id)
{
    if (b->npats == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        char **p = realloc(b->pats, cap * sizeof *p);
        if (p) b->pats = p;
        unsigned *fl = realloc(b->flags, cap * sizeof *fl);
        if (fl) b->flags = fl;
        unsigned *id_ = realloc(b->ids, cap * sizeof *id_);
        if (id_) b->ids = id_;
        unsigned *cl = realloc(b->classes, cap * sizeof *cl);
        if (cl) b->classes = cl;
        if (!p || !fl || !id_ || !cl) {
            free(expr);
            return -1;
        }
        b->cap = cap;
    }
    b->pats[b->npats] = expr;
    b->flags[b->npats] = flags;
    b->ids[b->npats] = id;
    b->classes[b->npats] = b->cur_classes;
    b->npats++;
    return 0;
}

static int add_always(waf_fast *f, int id)
{
    int *a = realloc(f->always, (f->nalways + 1) * sizeof *a);
    if (!a) return -1;
    f->always = a;
    a[f->nalways++] = id;
    return 0;
}

/* A literal as a Hyperscan expression: every byte escaped. */
static char *literal_expr(const char *s, size_t n)
{
    char *e = malloc(n * 4 + 1);
    if (!e) return NULL;
    for (size_t i = 0; i < n; i++)
        sprintf(e + 4 * i, "\\x%02x", (unsigned char)s[i]);
    e[n * 4] = '\0';
    return e;
}

static char *intern(waf_fast *f, const char *name)
{
    for (size_t i = 0; i < f->nnames; i++)
        if (!strcmp(f->names[i], name)) return f->names[i];
    char **n = realloc(f->names, (f->nnames + 1) * sizeof *n);
    if (!n) return NULL;
    f->names = n;
    return (n[f->nnames] = strdup(name)) ? n[f->nnames++] : NULL;
}

static void uncovered(waf_fast *f, uint32_t id, const char *why, const char *detail)
{
    char line[256];
    int n = snprintf(line, sizeof line, "%u %s%s%s\n", id, why, detail ? " " : "", detail ? detail : "");
    if (n <= 0) return;
    size_t cur = f->uncovered ? strlen(f->uncovered) : 0;
    char *u = realloc(f->uncovered, cur + (size_t)n + 1);
    if (!u) return;
    memcpy(u + cur, line, (size_t)n + 1);
    f->uncovered = u;
    f->nuncovered++;
}

static int parse_pm_words(builder *b, const char *param, int id)
{
    /* whitespace-separated phrases; quotes, hex (|..|) and escapes are not modelled */
    if (strpbrk(param, "|\"\\")) return add_always(b->f, id);
    const char *p = param;
    int any = 0;
    while (*p) {
        while (*p && isspace((unsigned char)*p))
            p++;
        const char *s = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (p > s) {
            char *e = literal_expr(s, (size_t)(p - s));
            if (!e || add_pat(b, e, HS_FLAG_CASELESS | HS_FLAG_SINGLEMATCH, (unsigned)id) < 0) return -1;
            any = 1;
        }
    }
    return any ? 0 : add_always(b->f, id);
}

static int parse_pm_file(builder *b, const char *files, const char *rule_file, int id)
{
    char dirbuf[PATH_MAX];
    snprintf(dirbuf, sizeof dirbuf, "%s", rule_file ? rule_file : ".");
    const char *dir = dirname(dirbuf);
    const char *p = files;
    while (*p) {
        while (*p && isspace((unsigned char)*p))
            p++;
        const char *s = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (p == s) break;
        char path[PATH_MAX];
        if (*s == '/')
            snprintf(path, sizeof path, "%.*s", (int)(p - s), s);
        else
            snprintf(path, sizeof path, "%s/%.*s", dir, (int)(p - s), s);
        FILE *fp = fopen(path, "r");
        if (!fp) return add_always(b->f, id);
        char line[8192];
        while (fgets(line, sizeof line, fp)) {
            size_t n = strlen(line);
            /* trailing whitespace trimmed: a shorter literal matches whenever the longer one does */
            while (n && isspace((unsigned char)line[n - 1]))
                n--;
            size_t st = 0;
            while (st < n && isspace((unsigned char)line[st]))
                st++;
            if (st == n || line[st] == '#') continue;
            /* leading whitespace is part of libmodsecurity's phrase: keeping the rest is a superset */
            char *e = literal_expr(line + st, n - st);
            if (!e || add_pat(b, e, HS_FLAG_CASELESS | HS_FLAG_SINGLEMATCH, (unsigned)id) < 0) {
                fclose(fp);
                return -1;
            }
        }
        fclose(fp);
    }
    return 0;
}

static const struct {
    const char *name;
    int kind;
} op_names[] = {
    {"rx", OP_RX},
    {"pm", OP_PM},
    {"pmf", OP_PM},
    {"pmfromfile", OP_PM},
    {"streq", OP_STREQ},
    {"eq", OP_EQ},
    {"gt", OP_GT},
    {"lt", OP_LT},
    {"ge", OP_GE},
    {"le", OP_LE},
    {"within", OP_WITHIN},
    {"beginswith", OP_BEGINSWITH},
    {"endswith", OP_ENDSWITH},
    {"contains", OP_CONTAINS},
    {"validatebyterange", OP_VALIDATEBYTERANGE},
    {"detectsqli", OP_DETECTSQLI},
    {"detectxss", OP_DETECTXSS},
    {"unconditionalmatch", OP_UNCONDITIONAL},
    {"nomatch", OP_NOMATCH},
    {"ipmatch", OP_IPMATCH},
};

static int byte_ranges(fp_op *op, const char *param)
{
    memset(op->table, 0, sizeof op->table);
    const char *p = param;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char part[64];
        if (n >= sizeof part) return -1;
        memcpy(part, p, n);
        part[n] = '\0';
        char *dash = strchr(part, '-');
        long lo, hi;
        char *end;
        lo = strtol(part, &end, 10);
        if (end == part) return -1;
        hi = lo;
        if (dash) {
            hi = strtol(dash + 1, &end, 10);
            if (end == dash + 1) return -1;
        }
        if (lo < 0 || hi > 255 || lo > hi) return -1;
        for (long x = lo; x <= hi; x++)
            op->table[x >> 3] |= (uint8_t)(1 << (x & 7));
        p = e ? e + 1 : p + n;
    }
    return 0;
}

static pcre2_code *compile_re(const char *pat, int caseless)
{
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                      PCRE2_DOTALL | PCRE2_MULTILINE | (caseless ? PCRE2_CASELESS : 0), &ec, &eo, NULL);
    if (re) pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

/* A new Hyperscan id for rule r's pattern, with the chains r reads values after (multiMatch: every
 * prefix of its chain, interned just before it). -1 out of memory. */
static int new_pat(waf_fast *f, const fp_rule *r)
{
    int *lo = realloc(f->pat_chain_lo, (f->npats + 1) * sizeof *lo);
    if (lo) f->pat_chain_lo = lo;
    int *hi = realloc(f->pat_chain_hi, (f->npats + 1) * sizeof *hi);
    if (hi) f->pat_chain_hi = hi;
    if (!lo || !hi) return -1;
    lo[f->npats] = first_chain(f, r);
    hi[f->npats] = r->chain_id;
    return (int)f->npats++;
}

static int compile_op(builder *b, fp_rule *r, const sl_rule *sr)
{
    waf_fast *f = b->f;
    fp_op *op = &r->op;
    op->pat = -1;
    op->negated = sr->op_negated;
    op->kind = OP_UNSUPPORTED;
    for (size_t i = 0; i < sizeof op_names / sizeof *op_names; i++)
        if (!strcmp(sr->op ? sr->op : "rx", op_names[i].name)) op->kind = op_names[i].kind;
    const char *param = sr->op_param ? sr->op_param : "";
    if (op->kind == OP_UNSUPPORTED) {
        r->unsupported = "operator not modelled";
        uncovered(f, r->id, "operator", sr->op);
        return 0;
    }
    int from_file = sr->op && strcmp(sr->op, "pm") != 0 && op->kind == OP_PM;
    if (tmpl_parse(&op->param, from_file ? "" : param) < 0) return -1;
    if (op->param.has_macro && (op->kind == OP_RX || op->kind == OP_PM || op->kind == OP_VALIDATEBYTERANGE)) {
        r->unsupported = "operator parameter with a macro";
        uncovered(f, r->id, "macro in the parameter of", sr->op);
        return 0;
    }
    if (op->param.has_macro && op->param.unsupported) {
        r->unsupported = "macro not modelled";
        uncovered(f, r->id, "macro in", param);
        return 0;
    }
    switch (op->kind) {
    case OP_RX: {
        if (!*param) break; /* matches everything (op->re NULL) */
        op->re = compile_re(param, 0);
        if (!op->re) {
            r->unsupported = "regex PCRE2 refuses";
            uncovered(f, r->id, "regex", "does not compile");
            return 0;
        }
        uint32_t groups = 0;
        pcre2_pattern_info(op->re, PCRE2_INFO_CAPTURECOUNT, &groups);
        if (groups > f->max_groups) f->max_groups = groups;
        if ((op->pat = new_pat(f, r)) < 0) return -1;
        char *e = strdup(param);
        if (!e) return -1;
        /* A rule tagged for a paranoia level above the set's is skipped by the CRS's own level
         * checks: its pattern stays out of the databases (smaller, faster to scan), and should the
         * rule run after all, every value is a candidate and PCRE decides: exact either way. */
        if (b->paranoia && b->cur_level > b->paranoia) {
            free(e);
            return add_always(f, op->pat);
        }
        /* prefilter: may match more than PCRE, never less */
        unsigned flags = HS_FLAG_DOTALL | HS_FLAG_MULTILINE | HS_FLAG_SINGLEMATCH | HS_FLAG_PREFILTER;
        /* A long expression is too large for Hyperscan, or a prefilter that flags nearly every
         * value: its alternation's branches, as pieces under one id, are neither (rx_split.c). */
        char **pieces;
        int n = strlen(param) > RX_SPLIT_FROM ? waf_rx_split(param, RX_PIECE_LEN, RX_MAX_PIECES, &pieces) : 0;
        if (n < 0) {
            free(e);
            return -1;
        }
        if (n == 0) return add_pat(b, e, flags, (unsigned)op->pat);
        free(e);
        int rc = 0;
        for (int i = 0; i < n; i++) {
            if (rc == 0) {
                rc = add_pat(b, pieces[i], flags, (unsigned)op->pat);
            } else {
                free(pieces[i]);
            }
        }
        free(pieces);
        return rc;
    }
    case OP_PM:
        if ((op->pat = new_pat(f, r)) < 0) return -1;
        if (b->paranoia && b->cur_level > b->paranoia) return add_always(f, op->pat); /* as for @rx */
        return from_file ? parse_pm_file(b, param, sr->file, op->pat) : parse_pm_words(b, param, op->pat);
    case OP_IPMATCH:
        if (ip_nets(op, param) < 0) {
            r->unsupported = "ipMatch list not understood";
            uncovered(f, r->id, "ipMatch", param);
        }
        break;
    case OP_VALIDATEBYTERANGE:
        if (byte_ranges(op, param) < 0) {
            r->unsupported = "byte range not understood";
            uncovered(f, r->id, "validateByteRange", param);
        }
        break;
    default:
        break;
    }
    return 0;
}

/* The index of a key regex among the distinct ones (by text: the same regex selects the same names). */
static int kre_intern(waf_fast *f, const char *pat)
{
    for (size_t i = 0; i < f->nkre; i++)
        if (!strcmp(f->kre_pats[i], pat)) return (int)i;
    char **p = realloc(f->kre_pats, (f->nkre + 1) * sizeof *p);
    if (!p) return -1;
    f->kre_pats = p;
    if (!(p[f->nkre] = strdup(pat))) return -1;
    return (int)f->nkre++;
}

static int compile_var(builder *b, fp_rule *r, fp_var *v, const sl_var *sv)
{
    v->kind = V_UNSUPPORTED;
    for (size_t i = 0; i < sizeof var_names / sizeof *var_names; i++)
        if (!strcmp(sv->collection, var_names[i].name)) v->kind = var_names[i].kind;
    v->count = sv->count;
    v->exclude = sv->exclude;
    size_t fl = strlen(sv->collection) + (sv->key ? strlen(sv->key) + 1 : 0) + 1;
    v->full = malloc(fl);
    if (!v->full) return -1;
    snprintf(v->full, fl, "%s%s%s", sv->collection, sv->key ? ":" : "", sv->key ? sv->key : "");
    if (v->kind == V_UNSUPPORTED && !sv->exclude) {
        uncovered(b->f, r->id, "variable", sv->collection);
        r->unsupported = "variable not modelled";
    }
    if (sv->key) {
        if (sv->key_regex) {
            size_t kl = strlen(sv->key);
            char *pat = xstrndup(sv->key + 1, kl >= 2 ? kl - 2 : 0);
            if (!pat) return -1;
            v->key_re = compile_re(pat, 1); /* libmodsecurity's variable regexes ignore case */
            if ((v->kre = kre_intern(b->f, pat)) < 0) {
                free(pat);
                return -1;
            }
            /* "^header_name_": letters, digits, '_' and '-' after the anchor are a literal prefix
             * (caseless, as the regex) every matching name starts with; MULTILINE's ^ could also
             * match after a newline, so names with one always go to PCRE (see key_matches) */
            size_t n = 0;
            if (pat[0] == '^' && !strchr(pat, '|'))
                while (pat[1 + n] &&
                       (isalnum((unsigned char)pat[1 + n]) || pat[1 + n] == '_' || pat[1 + n] == '-'))
                    n++;
            if (n && strchr("?*+{", pat[1 + n]) && pat[1 + n]) n--; /* "^abc?": only "ab" is required */
            if (n) {
                v->key_prefix = xstrndup(pat + 1, n);
                v->key_prefix_len = n;
                v->key_prefix_only = pat[1 + n] == '\0';
            }
            free(pat);
            if (!v->key_re) {
                r->unsupported = "regex key";
                uncovered(b->f, r->id, "regex key", sv->key);
            }
        } else {
            /* libmodsecurity keeps the quotes of 'User-Agent' in the key, which then names nothing */
            size_t kl = strlen(sv->key) + 3;
            if (!(v->key = malloc(kl))) return -1;
            snprintf(v->key, kl, sv->key_quoted ? "'%s'" : "%s", sv->key);
            v->key_len = strlen(v->key);
        }
    }
    return 0;
}

static int parse_setvar(fp_rule *r, const char *s, waf_fast *f)
{
    fp_setvar *n = realloc(r->setvars, (r->nsetvars + 1) * sizeof *n);
    if (!n) return -1;
    r->setvars = n;
    fp_setvar *sv = &n[r->nsetvars];
    memset(sv, 0, sizeof *sv);
    const char *p = s;
    int unset = 0;
    if (*p == '!') {
        unset = 1;
        p++;
    }
    if (strncasecmp(p, "tx.", 3) != 0) {
        r->unsupported_match = "setvar outside TX";
        uncovered(f, r->id, "setvar on", s);
        return 0;
    }
    p += 3;
    const char *eq = strchr(p, '=');
    char *name = xstrndup(p, eq ? (size_t)(eq - p) : strlen(p));
    if (!name) return -1;
    int rc = tmpl_parse(&sv->name, name);
    free(name);
    if (rc < 0) return -1;
    if (unset)
        sv->op = '!';
    else if (!eq)
        sv->op = '1';
    else if (eq[1] == '+' || eq[1] == '-') {
        sv->op = eq[1];
        if (tmpl_parse(&sv->value, eq + 2) < 0) return -1;
    } else {
        sv->op = '=';
        if (tmpl_parse(&sv->value, eq + 1) < 0) return -1;
    }
    r->nsetvars++;
    return 0;
}

static int parse_ctl(fp_rule *r, const char *s, waf_fast *f)
{
    fp_ctl c = {0};
    const char *eq = strchr(s, '=');
    if (!eq) {
        r->unsupported_match = "ctl not understood";
        uncovered(f, r->id, "ctl", s);
        return 0;
    }
    size_t nl = (size_t)(eq - s);
    const char *v = eq + 1;
    if (ieq(s, nl, "ruleRemoveById", 14) || ieq(s, nl, "ruleRemoveTargetById", 20)) {
        int target = nl == 20;
        char *end;
        c.lo = c.hi = (uint32_t)strtoul(v, &end, 10);
        if (*end == '-') c.hi = (uint32_t)strtoul(end + 1, &end, 10);
        if (target) {
            if (*end != ';') goto bad;
            c.kind = 2;
            c.target = strdup(end + 1);
            if (!c.target) return -1;
        } else {
            if (*end) goto bad;
            c.kind = 0;
        }
    } else if (ieq(s, nl, "ruleRemoveByTag", 15)) {
        c.kind = 1;
        c.tag = strdup(v);
        if (!c.tag) return -1;
    } else if (ieq(s, nl, "ruleRemoveTargetByTag", 21)) {
        const char *semi = strchr(v, ';');
        if (!semi) goto bad;
        c.kind = 3;
        c.tag = xstrndup(v, (size_t)(semi - v));
        c.target = strdup(semi + 1);
        if (!c.tag || !c.target) return -1;
    } else if (ieq(s, nl, "requestBodyProcessor", 20)) {
        c.kind = 4;
        c.processor = strdup(v);
        if (!c.processor) return -1;
        for (char *p = c.processor; *p; p++)
            *p = (char)toupper((unsigned char)*p);
    } else if (ieq(s, nl, "auditLogParts", 13)) {
        c.kind = 5; /* only shapes an audit entry, which a clean transaction does not write */
    } else {
        goto bad;
    }
    fp_ctl *n = realloc(r->ctls, (r->nctls + 1) * sizeof *n);
    if (!n) return -1;
    r->ctls = n;
    n[r->nctls++] = c;
    return 0;
bad:
    free(c.tag);
    free(c.target);
    r->unsupported_match = "ctl not modelled";
    uncovered(f, r->id, "ctl", s);
    return 0;
}

/* Actions a replay can carry out, or that change nothing for a transaction with a clean result. */
static const char *const quiet_actions[] = {
    "id",          "phase",       "msg",        "logdata", "tag",     "severity",        "rev",
    "ver",         "maturity",    "accuracy",   "chain",   "capture", "setvar",          "ctl",
    "skipafter",   "skip",        "multimatch", "nolog",   "log",     "auditlog",        "noauditlog",
    "pass",        "block",       "deny",       "drop",    "status",  "redirect",        "t",
    "expirevar",   "initcol",     "setenv",     "allow",   "exec",    "sanitisematched", "sanitizematched",
    "sanitisearg", "sanitizearg", "setuid",     "setsid",  "setrsc",  "append",          "prepend",
    "proxy",       "pause",       "xmlns"};

/* Whether SecDefaultAction of the phase makes `pass` the disruptive action. */
static int default_pass(const sl_ruleset *rs, int phase)
{
    if (phase < 1 || phase > 5) return 0;
    for (size_t i = 0; i < rs->ndefault_actions[phase]; i++)
        if (!strcmp(rs->default_actions[phase][i].name, "pass")) return 1;
    /* without SecDefaultAction, libmodsecurity's default is pass as well */
    return rs->ndefault_actions[phase] == 0;
}

static int compile_actions(builder *b, fp_rule *r, const sl_rule *sr, int head)
{
    waf_fast *f = b->f;
    int nolog = 0, log = -1, disruptive_loud = 0, pass = 0;
    for (size_t i = 0; i < sr->nactions; i++) {
        const sl_action *a = &sr->actions[i];
        const char *v = a->value ? a->value : "";
        if (!strcmp(a->name, "setvar")) {
            if (parse_setvar(r, v, f) < 0) return -1;
        } else if (!strcmp(a->name, "ctl")) {
            if (parse_ctl(r, v, f) < 0) return -1;
        } else if (!strcmp(a->name, "skipafter")) {
            r->skip_after = intern(f, v);
            if (!r->skip_after) return -1;
        } else if (!strcmp(a->name, "skip")) {
            r->skip = atoi(v);
        } else if (!strcmp(a->name, "capture")) {
            r->capture = 1;
        } else if (!strcmp(a->name, "multimatch")) {
            r->multimatch = 1;
        } else if (!strcmp(a->name, "nolog")) {
            nolog = 1;
        } else if (!strcmp(a->name, "log")) {
            log = 1;
        } else if (!strcmp(a->name, "pass")) {
            pass = 1;
        } else if (!strcmp(a->name, "block") || !strcmp(a->name, "deny") || !strcmp(a->name, "drop") ||
                   !strcmp(a->name, "redirect") || !strcmp(a->name, "allow") || !strcmp(a->name, "proxy") ||
                   !strcmp(a->name, "auditlog")) {
            disruptive_loud = 1;
        } else if (!strcmp(a->name, "tag")) {
            char **t = realloc(r->tags, (r->ntags + 1) * sizeof *t);
            if (!t) return -1;
            r->tags = t;
            if (!(t[r->ntags++] = strdup(v))) return -1;
        } else if (!strcmp(a->name, "msg")) {
            free(r->msg);
            if (!(r->msg = strdup(v))) return -1;
        } else if (!strcmp(a->name, "expirevar") || !strcmp(a->name, "initcol") ||
                   !strcmp(a->name, "setenv") || !strcmp(a->name, "exec") || !strcmp(a->name, "setuid") ||
                   !strcmp(a->name, "setsid") || !strcmp(a->name, "setrsc") || !strcmp(a->name, "append") ||
                   !strcmp(a->name, "prepend") || !strcmp(a->name, "pause") ||
                   !strcmp(a->name, "sanitisematched") || !strcmp(a->name, "sanitizematched") ||
                   !strcmp(a->name, "sanitisearg") || !strcmp(a->name, "sanitizearg")) {
            /* effects outside TX: a match cannot be replayed */
            disruptive_loud = 1;
        } else {
            size_t k = 0;
            while (k < sizeof quiet_actions / sizeof *quiet_actions && strcmp(a->name, quiet_actions[k]))
                k++;
            if (k == sizeof quiet_actions / sizeof *quiet_actions) {
                r->unsupported_match = "action not modelled";
                uncovered(f, r->id, "action", a->name);
            }
        }
    }
    if (head) {
        /* Whether a full match leaves a trace: a rule message (log, which SecDefaultAction's `log`
         * gives every rule without `nolog`), or a disruptive action other than pass. */
        (void)log;
        r->loud = !nolog || disruptive_loud || (!pass && !default_pass(b->rs, r->phase));
    } else {
        r->loud = disruptive_loud;
    }
    return 0;
}

/* The effective transformations: after the last t:none, or SecDefaultAction's followed by the
 * rule's own when there is none (RuleWithActions::executeTransformations). */
static int compile_chain(builder *b, fp_rule *r, const sl_rule *sr)
{
    const sl_ruleset *rs = b->rs;
    size_t last_none = (size_t)-1;
    for (size_t i = 0; i < sr->ntransforms; i++)
        if (!strcasecmp(sr->transforms[i], "none")) last_none = i;
    waf_transform_id t[64];
    size_t n = 0;
    if (last_none == (size_t)-1 && r->phase >= 1 && r->phase <= 5)
        for (size_t i = 0; i < rs->ndefault_transforms[r->phase] && n < 64; i++) {
            waf_transform_id id = waf_transform_lookup(rs->default_transforms[r->phase][i]);
            if (id == WT_UNKNOWN) goto unknown;
            if (id != WT_NONE) t[n++] = id;
        }
    for (size_t i = last_none == (size_t)-1 ? 0 : last_none + 1; i < sr->ntransforms; i++) {
        waf_transform_id id = waf_transform_lookup(sr->transforms[i]);
        if (id == WT_UNKNOWN) goto unknown;
        if (id == WT_NONE) continue;
        if (n == 64) goto unknown;
        t[n++] = id;
    }
    r->chain_id = r->multimatch ? chain_intern_prefixes(b->f, t, n) : chain_intern(b->f, t, n);
    return r->chain_id < 0 ? -1 : 0;
unknown:
    r->chain_id = chain_intern(b->f, NULL, 0);
    r->unsupported = "transformation not modelled";
    uncovered(b->f, r->id, "transformation", "not modelled");
    return r->chain_id < 0 ? -1 : 0;
}

static int target_update_applies(const sl_target_update *u, const sl_rule *sr)
{
    if (u->by == 0) return sr->id >= u->id_lo && sr->id <= u->id_hi;
    for (size_t i = 0; i < sr->nactions; i++) {
        const sl_action *a = &sr->actions[i];
        if (a->value && !strcmp(a->name, u->by == 1 ? "tag" : "msg") && !strcmp(a->value, u->match)) return 1;
    }
    return 0;
}

/* The N of a rule's tag 'paranoia-level/N' (the CRS tags every rule so); 0 when it has none. */
static int tagged_level(const sl_rule *sr)
{
    for (size_t i = 0; i < sr->nactions; i++)
        if (!strcmp(sr->actions[i].name, "tag") && sr->actions[i].value &&
            !strncmp(sr->actions[i].value, "paranoia-level/", 15))
            return atoi(sr->actions[i].value + 15);
    return 0;
}

static fp_rule *compile_rule(builder *b, const sl_rule *sr, const sl_rule *head_sr, int phase, int head)
{
    if (head) b->cur_level = tagged_level(sr);
    waf_fast *f = b->f;
    const sl_ruleset *rs = b->rs;
    fp_rule *r = new_rule(f);
    if (!r) return NULL;
    r->id = head ? sr->id : 0;
    r->phase = phase;
    r->op.pat = -1;
    if (sr->kind == SL_ACTION) r->unconditional = 1;
    if (compile_actions(b, r, sr, head) < 0) return NULL;
    if (compile_chain(b, r, sr) < 0) return NULL;
    if (!r->unconditional) {
        /* the rule's targets, then those SecRuleUpdateTarget* added (to the head only) */
        size_t extra = 0;
        for (size_t i = 0; head && i < rs->ntarget_updates; i++)
            if (target_update_applies(&rs->target_updates[i], head_sr)) extra += rs->target_updates[i].nvars;
        r->vars = calloc(sr->nvars + extra + 1, sizeof *r->vars);
        if (!r->vars) return NULL;
        for (size_t i = 0; i < sr->nvars; i++)
            if (compile_var(b, r, &r->vars[r->nvars++], &sr->vars[i]) < 0) return NULL;
        for (size_t i = 0; head && i < rs->ntarget_updates; i++)
            if (target_update_applies(&rs->target_updates[i], head_sr))
                for (size_t k = 0; k < rs->target_updates[i].nvars; k++)
                    if (compile_var(b, r, &r->vars[r->nvars++], &rs->target_updates[i].vars[k]) < 0)
                        return NULL;
        b->cur_classes = 0;
        for (size_t i = 0; i < r->nvars; i++)
            if (!r->vars[i].exclude) b->cur_classes |= 1u << class_of(r->vars[i].kind, r->vars[i].count);
        if (compile_op(b, r, sr) < 0) return NULL;
        size_t targets = 0;
        for (size_t i = 0; i < r->nvars; i++) {
            if (r->vars[i].exclude) continue;
            targets++;
            if (r->vars[i].kind == V_PERSISTENT) r->reads_persistent = 1;
            if (message_kind(r->vars[i].kind)) r->reads_message = 1;
            if (r->vars[i].kind == V_PERSISTENT && r->vars[i].count) r->forkable = -1;
        }
        /* a plain pattern operator on values whose class is known: no_candidate can rule it out */
        int plain = (r->op.kind == OP_RX || r->op.kind == OP_PM) && r->op.pat >= 0 && !r->op.negated &&
                    !r->op.param.has_macro && r->op.re != NULL;
        if (r->op.kind == OP_PM) plain = r->op.pat >= 0 && !r->op.negated;
        for (size_t i = 0; plain && i < r->nvars; i++) {
            const fp_var *v = &r->vars[i];
            if (v->exclude) continue;
            switch (v->count ? -1 : v->kind) {
            case V_ARGS:
            case V_ARGS_NAMES:
            case V_EMPTY:
            case V_REQUEST_HEADERS:
            case V_REQUEST_HEADERS_NAMES:
            case V_REQUEST_BODY:
            case V_REQUEST_METHOD:
            case V_REQUEST_URI:
            case V_REQUEST_URI_RAW:
            case V_REQUEST_FILENAME:
            case V_REQUEST_BASENAME:
            case V_REQUEST_LINE:
            case V_REQUEST_PROTOCOL:
            case V_QUERY_STRING:
            case V_UNSET:
                r->agg_classes |= 1u << class_of(v->kind, 0);
                break;
            default:
                plain = 0;
            }
        }
        if (!plain) r->agg_classes = 0;
        r->forkable = r->reads_persistent && r->forkable == 0 && targets == 1 && head && !r->capture &&
                      !r->multimatch && !r->nsetvars && !r->unsupported_match && !r->unsupported;
    } else {
        r->op.kind = OP_UNCONDITIONAL;
    }
    if (head) {
        for (size_t i = 0; i < rs->nremove; i++)
            if (r->id >= rs->remove_lo[i] && r->id <= rs->remove_hi[i]) r->removed = 1;
        for (size_t i = 0; i < rs->nremove_tags; i++)
            for (size_t t = 0; t < r->ntags; t++)
                if (!strcmp(r->tags[t], rs->remove_tags[i])) r->removed = 1;
        for (size_t i = 0; i < rs->nremove_msgs; i++)
            if (r->msg && !strcmp(r->msg, rs->remove_msgs[i])) r->removed = 1;
        for (size_t i = 0; i < rs->naction_updates; i++)
            if (rs->action_updates[i].id == r->id && !r->removed) {
                r->unsupported_match = "SecRuleUpdateActionById";
                uncovered(f, r->id, "actions updated by", "SecRuleUpdateActionById");
            }
    }
    if (sr->chain) {
        if (!(r->chain = compile_rule(b, sr->chain, head_sr, phase, 0))) return NULL;
        /* a link the replay cannot run makes the whole chain unsupported once it is reached */
    }
    return r;
}

static int phase_add(waf_fast *f, int phase, fp_rule *r)
{
    fp_rule **p = realloc(f->phase[phase], (f->nphase[phase] + 1) * sizeof *p);
    if (!p) return -1;
    f->phase[phase] = p;
    p[f->nphase[phase]++] = r;
    return 0;
}

static void rule_free(fp_rule *r)
{
    for (size_t i = 0; i < r->nvars; i++) {
        free(r->vars[i].key);
        free(r->vars[i].key_prefix);
        free(r->vars[i].full);
        pcre2_code_free(r->vars[i].key_re);
    }
    free(r->vars);
    tmpl_free(&r->op.param);
    free(r->op.nets);
    pcre2_code_free(r->op.re);
    for (size_t i = 0; i < r->nsetvars; i++) {
        tmpl_free(&r->setvars[i].name);
        tmpl_free(&r->setvars[i].value);
    }
    free(r->setvars);
    for (size_t i = 0; i < r->nctls; i++) {
        free(r->ctls[i].tag);
        free(r->ctls[i].target);
        free(r->ctls[i].processor);
    }
    free(r->ctls);
    for (size_t i = 0; i < r->ntags; i++)
        free(r->tags[i]);
    free(r->tags);
    free(r->msg);
    free(r);
}

void waf_fast_free(waf_fast *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->nall; i++)
        rule_free(((fp_rule **)f->all)[i]);
    free(f->all);
    for (int p = 0; p < 3; p++)
        free(f->phase[p]);
    for (size_t i = 0; i < f->nchains; i++)
        free(f->chains[i].t);
    free(f->chains);
    for (int c = 0; c < NCLASSES && f->db_owned; c++)
        if (f->db[c]) hs_free_database(f->db[c]);
    for (size_t i = 0; f->chain_db && f->db_owned && i < NCLASSES * f->nchains; i++)
        if (f->chain_db[i]) hs_free_database(f->chain_db[i]);
    free(f->chain_db);
    if (f->db_owned && f->together_db) hs_free_database(f->together_db);
    if (f->db_owned && f->apart_db) hs_free_database(f->apart_db);
    if (f->db_owned && f->lines_db) hs_free_database(f->lines_db);
    free(f->pat_chain_lo);
    free(f->pat_chain_hi);
    free(f->always);
    free(f->always_bits);
    for (size_t i = 0; i < f->nnames; i++)
        free(f->names[i]);
    free(f->names);
    for (size_t i = 0; i < f->nkre; i++)
        free(f->kre_pats[i]);
    free(f->kre_pats);
    free(f->uncovered);
    free(f);
}

/* ---- compiled databases: shared per configuration, cached on disk ---- */

typedef struct db_entry {
    unsigned char key[32];
    hs_database_t *db;
    uint32_t *refused; /* pattern ids Hyperscan refused */
    size_t nrefused;
    struct db_entry *next;
} db_entry;

struct waf_fast_dbs {
    char *dir; /* NULL: no disk cache */
    db_entry *list;
};

/* A cache directory is trusted only when it is this user's and nobody else may write to it. Missing
 * directories on the way are made (XDG_CACHE_HOME may not exist yet). */
static int trusted_dir(const char *dir)
{
    struct stat st;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) return 0;
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, 0700) < 0 && errno != EEXIST) return 0;
            *p = '/';
        }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) return 0;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() && !(st.st_mode & 022);
}

waf_fast_dbs *waf_fast_dbs_new(const char *cache_dir)
{
    waf_fast_dbs *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    if (cache_dir && *cache_dir && trusted_dir(cache_dir)) d->dir = strdup(cache_dir);
    return d;
}

void waf_fast_dbs_free(waf_fast_dbs *d)
{
    if (!d) return;
    for (db_entry *e = d->list, *n; e; e = n) {
        n = e->next;
        hs_free_database(e->db);
        free(e->refused);
        free(e);
    }
    free(d->dir);
    free(d);
}

static int pattern_key(const builder *b, unsigned char key[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned len = 0;
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    const char *v = hs_version();
    ok = ok && EVP_DigestUpdate(md, v, strlen(v) + 1) &&
         EVP_DigestUpdate(md, &b->cur_classes, sizeof b->cur_classes);
    for (size_t i = 0; ok && i < b->npats; i++)
        ok = EVP_DigestUpdate(md, b->pats[i], strlen(b->pats[i]) + 1) &&
             EVP_DigestUpdate(md, &b->flags[i], sizeof b->flags[i]) &&
             EVP_DigestUpdate(md, &b->ids[i], sizeof b->ids[i]);
    ok = ok && EVP_DigestFinal_ex(md, key, &len) && len == 32;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

/* A cached database file: "PCWAFDB1", the count of refused pattern ids and the ids (uint32 each),
 * then Hyperscan's serialized database. */
static const char db_magic[8] = "PCWAFDB1";

static hs_database_t *db_load(const char *path, uint32_t **refused, size_t *nrefused)
{
    struct stat st;
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    hs_database_t *db = NULL;
    char *buf = NULL;
    if (fstat(fileno(fp), &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && !(st.st_mode & 022) &&
        st.st_size > 16 && st.st_size < (256 << 20) && (buf = malloc((size_t)st.st_size)) &&
        fread(buf, 1, (size_t)st.st_size, fp) == (size_t)st.st_size && !memcmp(buf, db_magic, 8)) {
        uint32_t n;
        memcpy(&n, buf + 8, 4);
        size_t off = 12 + (size_t)n * 4;
        if (off < (size_t)st.st_size && (*refused = malloc((n + 1) * sizeof **refused))) {
            memcpy(*refused, buf + 12, (size_t)n * 4);
            *nrefused = n;
            if (hs_deserialize_database(buf + off, (size_t)st.st_size - off, &db) != HS_SUCCESS) {
                db = NULL;
                free(*refused);
                *refused = NULL;
                *nrefused = 0;
            }
        }
    }
    free(buf);
    fclose(fp);
    return db;
}

static void db_store(const char *path, const hs_database_t *db, const uint32_t *refused, size_t nrefused)
{
    char *bytes = NULL;
    size_t len = 0;
    if (hs_serialize_database(db, &bytes, &len) != HS_SUCCESS) return;
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (fp) {
        uint32_t n = (uint32_t)nrefused;
        int ok = fwrite(db_magic, 1, 8, fp) == 8 && fwrite(&n, 4, 1, fp) == 1 &&
                 (!n || fwrite(refused, 4, n, fp) == n) && fwrite(bytes, 1, len, fp) == len;
        ok = fclose(fp) == 0 && ok;
        if (!ok || rename(tmp, path) < 0) unlink(tmp);
    } else if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    free(bytes);
}

/* Compiles the builder's patterns. Those Hyperscan refuses even as a prefilter are left out and
 * listed in *refused (their rules are then candidates for every value, and PCRE decides). */
static hs_database_t *db_compile(builder *b, uint32_t **refused, size_t *nrefused, char *err, size_t errlen)
{
    hs_database_t *db = NULL;
    hs_compile_error_t *ce = NULL;
    const char **pats = malloc((b->npats + 1) * sizeof *pats);
    unsigned *flags = malloc((b->npats + 1) * sizeof *flags), *ids = malloc((b->npats + 1) * sizeof *ids);
    size_t k = b->npats;
    *refused = malloc((b->npats + 1) * sizeof **refused);
    *nrefused = 0;
    if (!pats || !flags || !ids || !*refused) goto out;
    memcpy(pats, b->pats, k * sizeof *pats);
    memcpy(flags, b->flags, k * sizeof *flags);
    memcpy(ids, b->ids, k * sizeof *ids);
    /* Hyperscan names the expression it refuses (it parses them all before compiling): that one is
     * left out and the rest tried again. */
    while (k &&
           hs_compile_multi(pats, flags, ids, (unsigned)k, HS_MODE_BLOCK, NULL, &db, &ce) != HS_SUCCESS) {
        int bad = ce ? ce->expression : -1;
        if (bad < 0 || (size_t)bad >= k) {
            errf(err, errlen, "multi-pattern database: %s", ce && ce->message ? ce->message : "?");
            hs_free_compile_error(ce);
            db = NULL;
            goto out;
        }
        hs_free_compile_error(ce);
        (*refused)[(*nrefused)++] = ids[bad];
        k--;
        memmove(pats + bad, pats + bad + 1, (k - (size_t)bad) * sizeof *pats);
        memmove(flags + bad, flags + bad + 1, (k - (size_t)bad) * sizeof *flags);
        memmove(ids + bad, ids + bad + 1, (k - (size_t)bad) * sizeof *ids);
        db = NULL;
    }
    if (!k) errf(err, errlen, "multi-pattern database: Hyperscan accepts none of the patterns");
out:
    free(pats);
    free(flags);
    free(ids);
    if (!db) {
        free(*refused);
        *refused = NULL;
        *nrefused = 0;
        if (!err[0]) errf(err, errlen, "multi-pattern database: out of memory");
    }
    return db;
}

/* The database for the builder's patterns: from this configuration, from the disk cache, or
 * compiled (and then cached). The lock file keeps processes starting together from compiling the
 * same patterns at once. */
static hs_database_t *db_get(waf_fast_dbs *d, builder *b, char *err, size_t errlen)
{
    unsigned char key[32];
    uint32_t *refused = NULL;
    size_t nrefused = 0;
    if (pattern_key(b, key) < 0) {
        errf(err, errlen, "cannot hash the patterns");
        return NULL;
    }
    db_entry *e = NULL;
    for (e = d ? d->list : NULL; e; e = e->next)
        if (!memcmp(e->key, key, 32)) break;
    hs_database_t *db = e ? e->db : NULL;
    if (e) {
        refused = e->refused;
        nrefused = e->nrefused;
    }
    char hex[65], path[PATH_MAX] = "", lock[PATH_MAX];
    int lockfd = -1;
    if (!db && d && d->dir) {
        for (int i = 0; i < 32; i++)
            sprintf(hex + 2 * i, "%02x", key[i]);
        snprintf(path, sizeof path, "%s/waf-patterns-%s.hsdb", d->dir, hex);
        snprintf(lock, sizeof lock, "%s/waf-patterns-%s.lock", d->dir, hex);
        if ((lockfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) >= 0) flock(lockfd, LOCK_EX);
        db = db_load(path, &refused, &nrefused);
    }
    if (!db && (db = db_compile(b, &refused, &nrefused, err, errlen)) && path[0])
        db_store(path, db, refused, nrefused);
    if (lockfd >= 0) close(lockfd); /* releases the lock */
    if (!db) return NULL;
    for (size_t i = 0; i < nrefused; i++)
        if (add_always(b->f, (int)refused[i]) < 0) {
            if (!e) hs_free_database(db);
            if (!e) free(refused);
            errf(err, errlen, "out of memory");
            return NULL;
        }
    if (e) return db;
    if (d && (e = calloc(1, sizeof *e))) {
        memcpy(e->key, key, 32);
        e->db = db;
        e->refused = refused;
        e->nrefused = nrefused;
        e->next = d->list;
        d->list = e;
        return db;
    }
    free(refused);
    if (d) {
        hs_free_database(db);
        errf(err, errlen, "out of memory");
        return NULL;
    }
    return db; /* no shared set: the fast path owns it */
}

/* A builder for a selection of b's patterns (none yet), whose database is cached under `key`:
 * 0, or -1 out of memory (sub_free it either way). The patterns stay b's. */
static int sub_new(builder *sub, const builder *b, unsigned key)
{
    *sub = *b;
    sub->pats = malloc((b->npats + 1) * sizeof *sub->pats);
    sub->flags = malloc((b->npats + 1) * sizeof *sub->flags);
    sub->ids = malloc((b->npats + 1) * sizeof *sub->ids);
    sub->npats = 0;
    sub->cur_classes = key;
    return sub->pats && sub->flags && sub->ids ? 0 : -1;
}

static void sub_add(builder *sub, const builder *b, size_t i)
{
    sub->pats[sub->npats] = b->pats[i];
    sub->flags[sub->npats] = b->flags[i];
    sub->ids[sub->npats++] = b->ids[i];
}

static void sub_free(builder *sub)
{
    free(sub->pats);
    free(sub->flags);
    free(sub->ids);
}

/* Whether a pattern may be scanned in a buffer of several values (see scan_args_together):
 * compiled MULTILINE (or a literal, which has no assertion), no \A \z \Z \G, and no group but
 * (?:...), (?i) and (?i:...) (lookarounds, option changes and the rest are left to apart_db). */
static int together_safe(const char *pat, unsigned flags)
{
    int literal = !(flags & ~(unsigned)(HS_FLAG_CASELESS | HS_FLAG_SINGLEMATCH));
    if (!literal && !(flags & HS_FLAG_MULTILINE)) return 0;
    for (const char *p = pat; *p; p++) {
        if (p[0] == '\\' && p[1]) {
            if (strchr("AzZG", p[1])) return 0;
            p++;
            continue;
        }
        if (p[0] == '(' && p[1] == '?' && !(p[2] == ':' || (p[2] == 'i' && (p[3] == ':' || p[3] == ')'))))
            return 0;
    }
    return 1;
}

/* Whether a together_safe pattern has an anchor: any $, and any ^ but one right after an unescaped
 * [ (a negated class). Erring on "anchored" only moves a pattern to lines_db, which is right for
 * both kinds. */
static int anchored(const char *pat)
{
    int after_open = 0;
    for (const char *p = pat; *p; p++) {
        if (p[0] == '\\' && p[1]) {
            p++;
            after_open = 0;
            continue;
        }
        if (*p == '$' || (*p == '^' && !after_open)) return 1;
        after_open = *p == '[';
    }
    return 0;
}

/* The databases scan_args_together uses, for the arguments' class. 0, or -1 with err. */
static int build_together_dbs(waf_fast *f, const builder *b, waf_fast_dbs *dbs, char *err, size_t errlen)
{
    builder sub[3];
    int ok = 1;
    for (int k = 0; k < 3; k++) /* their own cache keys */
        ok = sub_new(&sub[k], b, (unsigned)C_ARGS | (0x100u << k)) == 0 && ok;
    for (size_t i = 0; ok && i < b->npats; i++)
        if (b->classes[i] & (1u << C_ARGS))
            sub_add(&sub[!together_safe(b->pats[i], b->flags[i]) ? 2 : anchored(b->pats[i]) ? 1 : 0], b, i);
    /* together_db is the mark that the split exists: without it, values are scanned one by one */
    if (ok && sub[0].npats) ok = (f->together_db = db_get(dbs, &sub[0], err, errlen)) != NULL;
    if (ok && sub[0].npats && sub[1].npats) ok = (f->lines_db = db_get(dbs, &sub[1], err, errlen)) != NULL;
    if (ok && sub[0].npats && sub[2].npats) ok = (f->apart_db = db_get(dbs, &sub[2], err, errlen)) != NULL;
    for (int k = 0; k < 3; k++)
        sub_free(&sub[k]);
    if (!ok && !err[0]) errf(err, errlen, "out of memory");
    return ok ? 0 : -1;
}

/* The chain databases (see waf_fast.chain_db), after the class databases. 0, or -1 with err. */
static int build_chain_dbs(waf_fast *f, const builder *b, waf_fast_dbs *dbs, char *err, size_t errlen)
{
    if (!(f->chain_db = calloc(NCLASSES * f->nchains + 1, sizeof *f->chain_db))) {
        errf(err, errlen, "out of memory");
        return -1;
    }
    builder sub;
    int ok = sub_new(&sub, b, 0) == 0;
    for (int c = 0; ok && c < NCLASSES; c++) {
        size_t in_class = 0;
        for (size_t i = 0; i < b->npats; i++)
            in_class += (b->classes[i] & (1u << c)) != 0;
        for (size_t ch = 0; ok && in_class && ch < f->nchains; ch++) {
            sub.npats = 0;
            sub.cur_classes = (unsigned)c;
            for (size_t i = 0; i < b->npats; i++) {
                unsigned id = b->ids[i];
                if ((b->classes[i] & (1u << c)) && f->pat_chain_lo[id] <= (int)ch &&
                    (int)ch <= f->pat_chain_hi[id])
                    sub_add(&sub, b, i);
            }
            if (sub.npats && sub.npats < in_class)
                ok = (f->chain_db[(size_t)c * f->nchains + ch] = db_get(dbs, &sub, err, errlen)) != NULL;
        }
    }
    sub_free(&sub);
    if (!ok && !err[0]) errf(err, errlen, "out of memory");
    return ok ? 0 : -1;
}

waf_fast *waf_fast_build(const waf_source *src, size_t nsrc, int paranoia, waf_fast_dbs *dbs, char *err,
                         size_t errlen)
{
    if (errlen) err[0] = '\0';
    sl_ruleset *rs = sl_new();
    waf_fast *f = calloc(1, sizeof *f);
    builder b = {.f = f, .rs = rs, .err = err, .errlen = errlen, .paranoia = paranoia};
    if (!rs || !f) {
        errf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < nsrc; i++) {
        int rc = src[i].is_file ? sl_add_file(rs, src[i].text, err, errlen)
                                : sl_add_text(rs, src[i].text, "(generated settings)", err, errlen);
        if (rc < 0) goto fail;
    }
    if (rs->nunsupported) {
        errf(err, errlen, "%s: not modelled by the fast path", rs->unsupported[0]);
        goto fail;
    }
    if (chain_intern(f, NULL, 0) < 0) goto oom;
    for (size_t i = 0; i < rs->nrules; i++) {
        const sl_rule *sr = rs->rules[i];
        if (sr->kind == SL_MARKER) {
            for (int p = 0; p <= 2; p++) {
                fp_rule *m = new_rule(f);
                if (!m || !(m->marker_name = intern(f, sr->marker ? sr->marker : "")) ||
                    phase_add(f, p, m) < 0)
                    goto oom;
                m->marker = 1;
                m->phase = p;
            }
            continue;
        }
        if (sr->phase > 2) continue; /* responses and logging: not replayed */
        fp_rule *r = compile_rule(&b, sr, sr, sr->phase, 1);
        if (!r || phase_add(f, sr->phase, r) < 0) goto oom;
    }
    f->db_owned = dbs == NULL;
    for (int c = 0; c < NCLASSES; c++) {
        builder sub;
        int ok = sub_new(&sub, &b, (unsigned)c) == 0;
        for (size_t i = 0; ok && i < b.npats; i++)
            if (b.classes[i] & (1u << c)) sub_add(&sub, &b, i);
        if (ok && sub.npats) ok = (f->db[c] = db_get(dbs, &sub, err, errlen)) != NULL;
        sub_free(&sub);
        if (!ok) {
            if (!err[0]) errf(err, errlen, "out of memory");
            goto fail;
        }
    }
    if (build_chain_dbs(f, &b, dbs, err, errlen) < 0 || build_together_dbs(f, &b, dbs, err, errlen) < 0)
        goto fail;
    f->always_bits = calloc((f->npats + 63) / 64 + 1, sizeof *f->always_bits);
    if (!f->always_bits) goto oom;
    for (size_t i = 0; i < f->nalways; i++)
        f->always_bits[f->always[i] >> 6] |= (uint64_t)1 << (f->always[i] & 63);
    waf_transform_trigger_masks(f->trigger_masks);
    for (size_t i = 0; i < b.npats; i++)
        free(b.pats[i]);
    free(b.pats);
    free(b.flags);
    free(b.ids);
    free(b.classes);
    sl_free(rs);
    return f;
oom:
    errf(err, errlen, "out of memory");
fail:
    for (size_t i = 0; i < b.npats; i++)
        free(b.pats[i]);
    free(b.pats);
    free(b.flags);
    free(b.ids);
    free(b.classes);
    if (rs) sl_free(rs);
    waf_fast_free(f);
    return NULL;
}

size_t waf_fast_uncovered(const waf_fast *f, char *buf, size_t len)
{
    if (len) snprintf(buf, len, "%s", f->uncovered ? f->uncovered : "");
    return f->nuncovered;
}

int waf_fast_scratch_fit(const waf_fast *f, waf_fast_scratch **s)
{
    if (!*s && !(*s = calloc(1, sizeof **s))) return -1;
    for (int c = 0; c < NCLASSES; c++)
        if (f->db[c] && hs_alloc_scratch(f->db[c], &(*s)->hs) != HS_SUCCESS) return -1;
    for (size_t i = 0; f->chain_db && i < NCLASSES * f->nchains; i++)
        if (f->chain_db[i] && hs_alloc_scratch(f->chain_db[i], &(*s)->hs) != HS_SUCCESS) return -1;
    if (f->together_db && hs_alloc_scratch(f->together_db, &(*s)->hs) != HS_SUCCESS) return -1;
    if (f->apart_db && hs_alloc_scratch(f->apart_db, &(*s)->hs) != HS_SUCCESS) return -1;
    if (f->lines_db && hs_alloc_scratch(f->lines_db, &(*s)->hs) != HS_SUCCESS) return -1;
    return 0;
}

void waf_fast_scratch_free(waf_fast_scratch *s)
{
    if (!s) return;
    if (s->hs) hs_free_scratch(s->hs);
    for (size_t i = 0; s->cache && i < SCAN_CACHE_SLOTS; i++) {
        free(s->cache[i].s);
        free(s->cache[i].hits);
    }
    free(s->cache);
    free(s);
}

unsigned long waf_fast_call_traced(const waf_fast_call *c)
{
    return c->traced;
}

uint32_t waf_fast_fallback_rule(const waf_fast_call *c)
{
    return c->last_rule;
}
