/* SecLang reader: reads ModSecurity v3 rule files the way libmodsecurity 3.0.9's scanner and parser
 * do (seclang-scanner.ll / seclang-parser.yy), into the plain model of seclang.h.
 *
 * The scanner is followed where it decides what a rule means, including its odd corners:
 *  - a rule without phase runs in phase 1 (libmodsecurity's default is its request-headers phase);
 *  - `\` + newline joins lines between tokens only; inside a quoted operator or a quoted action value
 *    it is kept as written (the scanner's free-text patterns swallow it);
 *  - inside a quoted operator or an unquoted action value, `"` preceded by an odd run of backslashes
 *    does not end it and the backslashes are kept; `%` followed by anything but `{` takes that
 *    character with it (so `%"` does not end the operator);
 *  - in an operator, one leading blank makes the whole string an implicit @rx (blank included); two
 *    or more are skipped;
 *  - a key in single quotes (`REQUEST_HEADERS:'User-Agent'`) keeps its quotes in libmodsecurity;
 *  - `phase:'request'` (quoted) is scanned as `allow:request`;
 *  - SecRuleRemoveById compares the two ends of a range as strings ("9-10" is refused);
 *  - SecRuleUpdateTargetById / SecRuleUpdateActionById take one id (the leading number);
 *  - settings given several times: the last one of a file (and what it includes) counts, and across
 *    sl_add_file / sl_add_text calls the first one set wins, as libmodsecurity merges rule sets;
 *  - a chain goes on with the next SecRule even across SecAction / SecMarker / Include.
 * A call that fails leaves the ruleset as it was before the call. */
#include "seclang.h"

#include <ctype.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define SL_MAX_INCLUDE_DEPTH 16
#define SL_MAX_FILES 4096
#define SL_MAX_FILE_SIZE (64L * 1024 * 1024)

/* ---- tables ---------------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int keyed; /* takes `:key` / `.key` */
} var_def;

static const var_def var_defs[] = {
    {"ARGS", 1},
    {"ARGS_COMBINED_SIZE", 0},
    {"ARGS_GET", 1},
    {"ARGS_GET_NAMES", 1},
    {"ARGS_NAMES", 1},
    {"ARGS_POST", 1},
    {"ARGS_POST_NAMES", 1},
    {"AUTH_TYPE", 0},
    {"DURATION", 0},
    {"ENV", 1},
    {"FILES", 1},
    {"FILES_COMBINED_SIZE", 0},
    {"FILES_NAMES", 1},
    {"FILES_SIZES", 1},
    {"FILES_TMPNAMES", 1},
    {"FILES_TMP_CONTENT", 1},
    {"FULL_REQUEST", 0},
    {"FULL_REQUEST_LENGTH", 0},
    {"GEO", 1},
    {"GLOBAL", 1},
    {"HIGHEST_SEVERITY", 0},
    {"INBOUND_DATA_ERROR", 0},
    {"IP", 1},
    {"MATCHED_VAR", 0},
    {"MATCHED_VARS", 1},
    {"MATCHED_VARS_NAMES", 1},
    {"MATCHED_VAR_NAME", 0},
    {"MODSEC_BUILD", 0},
    {"MULTIPART_BOUNDARY_QUOTED", 0},
    {"MULTIPART_BOUNDARY_WHITESPACE", 0},
    {"MULTIPART_CRLF_LF_LINES", 0},
    {"MULTIPART_DATA_AFTER", 0},
    {"MULTIPART_DATA_BEFORE", 0},
    {"MULTIPART_FILENAME", 1},
    {"MULTIPART_FILE_LIMIT_EXCEEDED", 0},
    {"MULTIPART_HEADER_FOLDING", 0},
    {"MULTIPART_INVALID_HEADER_FOLDING", 0},
    {"MULTIPART_INVALID_PART", 0},
    {"MULTIPART_INVALID_QUOTING", 0},
    {"MULTIPART_LF_LINE", 0},
    {"MULTIPART_MISSING_SEMICOLON", 0},
    {"MULTIPART_NAME", 1},
    {"MULTIPART_PART_HEADERS", 1},
    {"MULTIPART_SEMICOLON_MISSING", 0},
    {"MULTIPART_STRICT_ERROR", 0},
    {"MULTIPART_UNMATCHED_BOUNDARY", 0},
    {"OUTBOUND_DATA_ERROR", 0},
    {"PATH_INFO", 0},
    {"QUERY_STRING", 0},
    {"REMOTE_ADDR", 0},
    {"REMOTE_HOST", 0},
    {"REMOTE_PORT", 0},
    {"REMOTE_USER", 0},
    {"REQBODY_ERROR", 0},
    {"REQBODY_ERROR_MSG", 0},
    {"REQBODY_PROCESSOR", 0},
    {"REQBODY_PROCESSOR_ERROR", 0},
    {"REQBODY_PROCESSOR_ERROR_MSG", 0},
    {"REQUEST_BASENAME", 0},
    {"REQUEST_BODY", 0},
    {"REQUEST_BODY_LENGTH", 0},
    {"REQUEST_COOKIES", 1},
    {"REQUEST_COOKIES_NAMES", 1},
    {"REQUEST_FILENAME", 0},
    {"REQUEST_HEADERS", 1},
    {"REQUEST_HEADERS_NAMES", 1},
    {"REQUEST_LINE", 0},
    {"REQUEST_METHOD", 0},
    {"REQUEST_PROTOCOL", 0},
    {"REQUEST_URI", 0},
    {"REQUEST_URI_RAW", 0},
    {"RESOURCE", 1},
    {"RESPONSE_BODY", 0},
    {"RESPONSE_CONTENT_LENGTH", 0},
    {"RESPONSE_CONTENT_TYPE", 0},
    {"RESPONSE_HEADERS", 1},
    {"RESPONSE_HEADERS_NAMES", 1},
    {"RESPONSE_PROTOCOL", 0},
    {"RESPONSE_STATUS", 0},
    {"RULE", 1},
    {"SERVER_ADDR", 0},
    {"SERVER_NAME", 0},
    {"SERVER_PORT", 0},
    {"SESSION", 1},
    {"SESSIONID", 0},
    {"STATUS", 0},
    {"STATUS_LINE", 0},
    {"TIME", 0},
    {"TIME_DAY", 0},
    {"TIME_EPOCH", 0},
    {"TIME_HOUR", 0},
    {"TIME_MIN", 0},
    {"TIME_MON", 0},
    {"TIME_SEC", 0},
    {"TIME_WDAY", 0},
    {"TIME_YEAR", 0},
    {"TX", 1},
    {"UNIQUE_ID", 0},
    {"URLENCODED_ERROR", 0},
    {"USER", 1},
    {"USERID", 0},
    {"WEBAPPID", 0},
    {"XML", 1},
};

typedef struct {
    const char *name; /* lower-case */
    int noparam;
} op_def;

static const op_def op_defs[] = {
    {"beginswith", 0},
    {"contains", 0},
    {"containsword", 0},
    {"detectsqli", 1},
    {"detectxss", 1},
    {"endswith", 0},
    {"eq", 0},
    {"fuzzyhash", 0},
    {"ge", 0},
    {"geolookup", 1},
    {"gsblookup", 0},
    {"gt", 0},
    {"inspectfile", 0},
    {"ipmatch", 0},
    {"ipmatchf", 0},
    {"ipmatchfromfile", 0},
    {"le", 0},
    {"lt", 0},
    {"pm", 0},
    {"pmf", 0},
    {"pmfromfile", 0},
    {"rbl", 0},
    {"rsub", 0},
    {"rx", 0},
    {"rxglobal", 0},
    {"streq", 0},
    {"strmatch", 0},
    {"unconditionalmatch", 1},
    {"validatebyterange", 0},
    {"validatedtd", 0},
    {"validatehash", 0},
    {"validateschema", 0},
    {"validateurlencoding", 1},
    {"validateutf8encoding", 1},
    {"verifycc", 0},
    {"verifycpf", 0},
    {"verifyssn", 0},
    {"verifysvnr", 0},
    {"within", 0},
};

static const char *const transform_names[] = {
    "base64Decode",
    "base64DecodeExt",
    "base64Encode",
    "cmdLine",
    "compressWhitespace",
    "cssDecode",
    "escapeSeqDecode",
    "hexDecode",
    "hexEncode",
    "htmlEntityDecode",
    "jsDecode",
    "length",
    "lowercase",
    "md5",
    "none",
    "normalisePath",
    "normalizePath",
    "normalisePathWin",
    "normalizePathWin",
    "parityEven7bit",
    "parityOdd7bit",
    "parityZero7bit",
    "removeComments",
    "removeCommentsChar",
    "removeNulls",
    "removeWhitespace",
    "replaceComments",
    "replaceNulls",
    "sha1",
    "sqlHexDecode",
    "trim",
    "trimLeft",
    "trimRight",
    "uppercase",
    "urlDecode",
    "urlDecodeUni",
    "urlEncode",
    "utf8toUnicode",
};

enum {
    A_FLAG,  /* no value */
    A_TOKEN, /* value up to , blank " or newline; may be in single quotes */
    A_TEXT,  /* value up to , or "; may be in single quotes */
    A_PRED,  /* as A_TEXT, and may be in double quotes */
    A_UNSUP, /* refused by libmodsecurity ("not supported") */
};

typedef struct {
    const char *name; /* lower-case */
    int kind;
    int config;     /* a configuration action: not usable in SecDefaultAction, dropped by UpdateAction */
    int disruptive; /* allow, deny, drop, pass, redirect (block is not) */
} act_def;

static const act_def act_defs[] = {
    {"accuracy", A_TEXT, 1, 0},
    {"allow", A_FLAG, 0, 1},
    {"append", A_UNSUP, 0, 0},
    {"auditlog", A_FLAG, 0, 0},
    {"block", A_FLAG, 0, 0},
    {"capture", A_FLAG, 0, 0},
    {"chain", A_FLAG, 1, 0},
    {"ctl", A_TOKEN, 0, 0},
    {"deny", A_FLAG, 0, 1},
    {"deprecatevar", A_UNSUP, 0, 0},
    {"drop", A_FLAG, 0, 1},
    {"exec", A_TEXT, 0, 0},
    {"expirevar", A_TEXT, 0, 0},
    {"id", A_TOKEN, 1, 0},
    {"initcol", A_PRED, 0, 0},
    {"log", A_FLAG, 0, 0},
    {"logdata", A_PRED, 0, 0},
    {"maturity", A_TEXT, 1, 0},
    {"msg", A_PRED, 0, 0},
    {"multimatch", A_FLAG, 0, 0},
    {"noauditlog", A_FLAG, 0, 0},
    {"nolog", A_FLAG, 0, 0},
    {"pass", A_FLAG, 0, 1},
    {"pause", A_UNSUP, 0, 0},
    {"phase", A_TOKEN, 1, 0},
    {"prepend", A_UNSUP, 0, 0},
    {"proxy", A_UNSUP, 0, 0},
    {"redirect", A_PRED, 0, 1},
    {"rev", A_TEXT, 1, 0},
    {"sanitisearg", A_UNSUP, 0, 0},
    {"sanitisematched", A_UNSUP, 0, 0},
    {"sanitisematchedbytes", A_UNSUP, 0, 0},
    {"sanitiserequestheader", A_UNSUP, 0, 0},
    {"sanitiseresponseheader", A_UNSUP, 0, 0},
    {"setenv", A_PRED, 0, 0},
    {"setrsc", A_PRED, 0, 0},
    {"setsid", A_PRED, 0, 0},
    {"setuid", A_PRED, 0, 0},
    {"setvar", A_TEXT, 0, 0},
    {"severity", A_TOKEN, 0, 0},
    {"skip", A_TOKEN, 0, 0},
    {"skipafter", A_TOKEN, 0, 0},
    {"status", A_TOKEN, 0, 0},
    {"tag", A_PRED, 0, 0},
    {"ver", A_TEXT, 1, 0},
    {"xmlns", A_TOKEN, 0, 0},
};

static const char *const ctl_names[] = {
    "auditengine=",           "auditlogparts=",        "forcerequestbodyvariable=",
    "requestbodyaccess=",     "requestbodyprocessor=", "ruleengine=",
    "ruleremovebyid=",        "ruleremovebytag=",      "ruleremovetargetbyid=",
    "ruleremovetargetbytag=",
};

static const char *const severity_names[] = {"emergency", "alert",  "critical", "error",
                                             "warning",   "notice", "info",     "debug"};

/* Directives accepted and ignored: they do not change what the model represents. */
static const char *const ignored_directives[] = {
    "secauditengine",
    "secauditlog",
    "secauditlog2",
    "secauditlogdirmode",
    "secauditlogfilemode",
    "secauditlogformat",
    "secauditlogparts",
    "secauditlogrelevantstatus",
    "secauditlogstoragedir",
    "secauditlogtype",
    "seccollectiontimeout",
    "seccomponentsignature",
    "secdatadir",
    "secdebuglog",
    "secdebugloglevel",
    "secgeolookupdb",
    "secpcrematchlimit",
    "secpcrematchlimitrecursion",
    "secremoterulesfailaction",
    "secrequestbodyinmemorylimit",
    "secrequestbodyjsondepthlimit",
    "secrequestbodylimit",
    "secrequestbodylimitaction",
    "secrequestbodynofileslimit",
    "secresponsebodyaccess",
    "secresponsebodylimit",
    "secresponsebodylimitaction",
    "secresponsebodymimetype",
    "secresponsebodymimetypesclear",
    "secstatusengine",
    "sectmpdir",
    "sectmpsaveuploadedfiles",
    "secuploaddir",
    "secuploadfilelimit",
    "secuploadfilemode",
    "secuploadkeepfiles",
    "secxmlexternalentity",
};

/* Directives libmodsecurity accepts only with Off (On is "not supported"). */
static const char *const off_only_directives[] = {
    "secconnengine", "seccontentinjection", "secdisablebackendcompression",
    "sechashengine", "secinterceptonerror", "secruleinheritance",
};

/* Directives libmodsecurity always refuses. */
static const char *const refused_directives[] = {
    "seccachetransformations",
    "secchrootdir",
    "secconnreadstatelimit",
    "secconnwritestatelimit",
    "seccookiev0separator",
    "secgsblookupdb",
    "secguardianlog",
    "sechashkey",
    "sechashmethodpm",
    "sechashmethodrx",
    "sechashparam",
    "secruleperftime",
    "secsensorid",
    "secserversignature",
    "secstreaminbodyinspection",
    "secstreamoutbodyinspection",
};

/* Directives whose effect the model cannot represent: recorded in `unsupported`. Among them two that
 * change what rules see: SecArgumentsLimit drops arguments past the limit (and stops the body
 * parser), SecUnicodeMapFile changes how urlDecodeUni decodes %uXXXX. */
static const char *const unsupported_directives[] = {
    "secargumentslimit", "sechttpblkey",      "secremoterules",
    "secrulescript",     "secunicodemapfile", "secwebappid",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int in_list(const char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0) return 1;
    return 0;
}

/* ---- small helpers --------------------------------------------------------------------------- */

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

static void upper(char *s)
{
    for (; *s; s++)
        *s = (char)toupper((unsigned char)*s);
}

/* Makes room for element n (arrays grow to powers of two; capacity is implied by the count). */
static void *reserve(void *arr, size_t n, size_t elt, int *ok)
{
    if (n != 0 && (n & (n - 1)) != 0) return arr;
    size_t cap = n ? 2 * n : 4;
    if (cap > ((size_t)-1) / elt) {
        *ok = 0;
        return arr;
    }
    void *p = realloc(arr, cap * elt);
    if (!p) {
        *ok = 0;
        return arr;
    }
    return p;
}

static void free_strs(char **s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

static void free_vars(sl_var *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].collection);
        free(v[i].key);
    }
    free(v);
}

static void free_actions(sl_action *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i].name);
        free(a[i].value);
    }
    free(a);
}

static void free_rule_one(sl_rule *r)
{
    free(r->marker);
    free_vars(r->vars, r->nvars);
    free(r->op);
    free(r->op_param);
    free_strs(r->transforms, r->ntransforms);
    free_actions(r->actions, r->nactions);
    free(r->file);
    free(r);
}

/* A rule and its chain links (iteratively: chains may be long). */
static void free_rule(sl_rule *r)
{
    while (r) {
        sl_rule *next = r->chain;
        free_rule_one(r);
        r = next;
    }
}

/* ---- reading state --------------------------------------------------------------------------- */

typedef struct {
    const char *file; /* name used in messages and for relative includes */
    const char *s;
    size_t n, i;
    int line;
} cur_t;

typedef struct {
    uint32_t *slots;
    size_t cap, n;
} idset;

typedef struct {
    sl_ruleset *rs;
    char *err;
    size_t errlen;
    int failed;
    int depth;
    size_t nfiles;
    sl_rule *last; /* the last SecRule read by this call (head or link) */
    int engine, body_access;
    int argsep_set;
    char argsep;
    int default_seen[6];
    idset ids;
} ctx_t;

static int pk(const cur_t *c, size_t k)
{
    return c->i + k < c->n ? (unsigned char)c->s[c->i + k] : -1;
}

static void adv(cur_t *c)
{
    if (c->i < c->n) {
        if (c->s[c->i] == '\n') c->line++;
        c->i++;
    }
}

static void advn(cur_t *c, size_t k)
{
    while (k--)
        adv(c);
}

static int is_blank(int ch)
{
    return ch == ' ' || ch == '\t';
}

static void skip_blanks(cur_t *c)
{
    while (is_blank(pk(c, 0)))
        adv(c);
}

/* Length of a backslash-newline at offset k, or 0. */
static size_t cont_at(const cur_t *c, size_t k)
{
    if (pk(c, k) != '\\') return 0;
    if (pk(c, k + 1) == '\n') return 2;
    if (pk(c, k + 1) == '\r' && pk(c, k + 2) == '\n') return 3;
    return 0;
}

/* Length of a newline (\n or \r\n) at offset k, or 0. */
static size_t nl_at(const cur_t *c, size_t k)
{
    if (pk(c, k) == '\n') return 1;
    if (pk(c, k) == '\r' && pk(c, k + 1) == '\n') return 2;
    return 0;
}

static int fail(ctx_t *x, const char *file, int line, const char *fmt, ...)
{
    if (x->failed) return -1;
    x->failed = 1;
    if (x->err && x->errlen) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(x->err, x->errlen, "%s:%d: %s", file, line, msg);
    }
    return -1;
}

static int oom(ctx_t *x, const cur_t *c)
{
    return fail(x, c->file, c->line, "out of memory");
}

/* The rest of the current line (at most 40 bytes), for messages. */
static const char *snippet(const cur_t *c, char *buf, size_t len)
{
    size_t k = 0;
    while (c->i + k < c->n && k + 1 < len && k < 40 && c->s[c->i + k] != '\n' && c->s[c->i + k] != '\r') {
        buf[k] = c->s[c->i + k];
        k++;
    }
    buf[k] = '\0';
    return buf;
}

static int bad_input(ctx_t *x, const cur_t *c, const char *what)
{
    char buf[48];
    return fail(x, c->file, c->line, "%s: '%s'", what, snippet(c, buf, sizeof buf));
}

/* ---- id set (duplicate rule ids) ------------------------------------------------------------- */

static int idset_has(const idset *s, uint32_t id)
{
    if (!s->cap) return 0;
    size_t m = s->cap - 1, h = (id * 2654435761u) & m;
    while (s->slots[h]) {
        if (s->slots[h] == id) return 1;
        h = (h + 1) & m;
    }
    return 0;
}

static int idset_add(idset *s, uint32_t id)
{
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        uint32_t *slots = calloc(cap, sizeof *slots);
        if (!slots) return -1;
        for (size_t i = 0; i < s->cap; i++) {
            uint32_t v = s->slots[i];
            if (!v) continue;
            size_t h = (v * 2654435761u) & (cap - 1);
            while (slots[h])
                h = (h + 1) & (cap - 1);
            slots[h] = v;
        }
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    size_t m = s->cap - 1, h = (id * 2654435761u) & m;
    while (s->slots[h]) {
        if (s->slots[h] == id) return 0;
        h = (h + 1) & m;
    }
    s->slots[h] = id;
    s->n++;
    return 0;
}

/* ---- pieces of text -------------------------------------------------------------------------- */

/* Is the quote at c->i escaped: an odd run of backslashes right before it that does not start the
 * text begun at `start` (the scanner wants a non-backslash before the run). */
static int escaped_quote(const cur_t *c, size_t start)
{
    size_t k = c->i, bs = 0;
    while (k > start && c->s[k - 1] == '\\') {
        k--;
        bs++;
    }
    return (bs & 1) && k > start;
}

/* Text up to a closing double quote (consumed), as in a quoted operator: escaped quotes and `%x` are
 * kept, `%{...}` macros must close. Returns -1 when the text does not end. */
static int read_dq_text(cur_t *c, size_t *b, size_t *e)
{
    size_t start = c->i;
    for (;;) {
        int ch = pk(c, 0);
        if (ch < 0) return -1;
        if (ch == '"') {
            if (escaped_quote(c, start)) {
                adv(c);
                continue;
            }
            *b = start;
            *e = c->i;
            adv(c);
            return 0;
        }
        if (ch == '%') {
            if (pk(c, 1) < 0) return -1;
            if (pk(c, 1) == '{' && !escaped_quote(c, start)) {
                advn(c, 2);
                while (pk(c, 0) >= 0 && pk(c, 0) != '}' && pk(c, 0) != '"' && pk(c, 0) != '\n')
                    adv(c);
                if (pk(c, 0) != '}') return -1;
                adv(c);
                continue;
            }
            advn(c, 2);
            continue;
        }
        adv(c);
    }
}

/* Text up to a blank (not consumed) or the end, as an unquoted operator. */
static void read_space_text(cur_t *c, size_t *b, size_t *e)
{
    *b = c->i;
    while (pk(c, 0) >= 0 && pk(c, 0) != ' ' && pk(c, 0) != '\n')
        adv(c);
    *e = c->i;
}

/* ---- variables ------------------------------------------------------------------------------- */

static const var_def *find_var(const char *name)
{
    for (size_t i = 0; i < COUNT(var_defs); i++)
        if (strcmp(var_defs[i].name, name) == 0) return &var_defs[i];
    return NULL;
}

/* `%{VAR}` / `%{COLL.key}` macros in a text: each must name a variable, as the scanner reads them. */
static int macros_ok(const char *s)
{
    for (const char *p = strstr(s, "%{"); p; p = strstr(p, "%{")) {
        p += 2;
        const char *b = p;
        while (isalnum((unsigned char)*p) || *p == '_')
            p++;
        if (p == b || p - b > 40) return 0;
        char name[48];
        memcpy(name, b, (size_t)(p - b));
        name[p - b] = '\0';
        upper(name);
        const var_def *d = find_var(name);
        if (!d) return 0;
        if (*p == '.' || *p == ':') {
            if (!d->keyed) return 0;
            const char *k = ++p;
            while (*p && !strchr("}\"|,\n \t", *p))
                p++;
            if (p == k) return 0;
        }
        if (*p != '}') return 0;
    }
    return 1;
}

static int is_plain_key_char(const cur_t *c, size_t k, size_t start)
{
    int ch = pk(c, k);
    if (ch < 0 || ch == '|' || ch == ',' || ch == '\n' || ch == ' ' || ch == '\t' || ch == '}') return 0;
    if (ch == '"') {
        /* `x\"` continues the key */
        size_t at = c->i + k;
        return at >= start + 2 && c->s[at - 1] == '\\' && c->s[at - 2] != '\\';
    }
    return 1;
}

/* The key after `COLL:`; the scanner's longest match between /regex/, '/regex/' and a plain key. */
static int read_key(ctx_t *x, cur_t *c, sl_var *v, int xml)
{
    size_t st = c->i, lplain = 0, lre = 0, lqre = 0;
    while (is_plain_key_char(c, lplain, st))
        lplain++;
    if (pk(c, 0) == '/') {
        for (size_t k = 1;; k++) {
            int ch = pk(c, k);
            if (ch < 0 || ch == ' ' || ch == '=' || ch == '|' || ch == '\t' || ch == '"') break;
            if (ch == '/' && k >= 2) lre = k + 1;
        }
    }
    if (pk(c, 0) == '\'' && pk(c, 1) == '/') {
        for (size_t k = 2;; k++) {
            int ch = pk(c, k);
            if (ch < 0 || ch == ' ' || ch == '=' || ch == '\t' || ch == '"') break;
            if (ch == '\'' && k >= 4 && pk(c, k - 1) == '/') lqre = k + 1;
        }
    }
    const char *s = c->s + st;
    if (lre && lre >= lplain) {
        v->key = xml ? dupn(s + 1, lre - 2) : dupn(s, lre);
        v->key_regex = !xml;
        advn(c, lre);
    } else if (lqre && lqre >= lplain) {
        v->key = xml ? dupn(s + 2, lqre - 4) : dupn(s + 1, lqre - 2);
        v->key_regex = !xml;
        advn(c, lqre);
    } else if (lplain) {
        if (lplain >= 2 && s[0] == '\'' && s[lplain - 1] == '\'') {
            v->key = dupn(s + 1, lplain - 2);
            v->key_quoted = 1;
        } else {
            v->key = dupn(s, lplain);
        }
        advn(c, lplain);
    } else {
        return bad_input(x, c, "Expecting a variable key");
    }
    return v->key ? 0 : oom(x, c);
}

/* A list of targets: `A|!B:k|&C`, optionally in double quotes. Stops after the list. */
static int read_vars(ctx_t *x, cur_t *c, sl_var **vars, size_t *nvars)
{
    int quoted = 0;
    if (pk(c, 0) == '"') {
        quoted = 1;
        adv(c);
    }
    for (;;) {
        sl_var v;
        memset(&v, 0, sizeof v);
        if (pk(c, 0) == '!') {
            v.exclude = 1;
            adv(c);
        } else if (pk(c, 0) == '&') {
            v.count = 1;
            adv(c);
        }
        size_t b = c->i;
        while (pk(c, 0) >= 0 && (isalnum(pk(c, 0)) || pk(c, 0) == '_'))
            adv(c);
        if (c->i == b) return bad_input(x, c, "Expecting a variable");
        char *name = dupn(c->s + b, c->i - b);
        if (!name) return oom(x, c);
        upper(name);
        const var_def *d = find_var(name);
        if (!d) {
            int r = fail(x, c->file, c->line, "Expecting a variable, got: '%s'", name);
            free(name);
            return r;
        }
        v.collection = name;
        if ((pk(c, 0) == ':' || pk(c, 0) == '.') && d->keyed) {
            adv(c);
            if (read_key(x, c, &v, strcmp(name, "XML") == 0) < 0) {
                free(name);
                free(v.key);
                return -1;
            }
        } else if (pk(c, 0) == ':' || pk(c, 0) == '.') {
            free(name);
            return bad_input(x, c, "Expecting a variable");
        }
        int ok = 1;
        *vars = reserve(*vars, *nvars, sizeof **vars, &ok);
        if (!ok) {
            free(v.collection);
            free(v.key);
            return oom(x, c);
        }
        (*vars)[(*nvars)++] = v;
        if (pk(c, 0) == '|' || pk(c, 0) == ',') {
            adv(c);
            continue;
        }
        break;
    }
    if (quoted) {
        if (pk(c, 0) != '"') return bad_input(x, c, "Expecting a variable");
        adv(c);
    }
    return 0;
}

/* ---- actions --------------------------------------------------------------------------------- */

typedef struct {
    sl_action *a;
    size_t na;
    char **t;
    size_t nt;
} alist;

static void alist_free(alist *l)
{
    free_actions(l->a, l->na);
    free_strs(l->t, l->nt);
    memset(l, 0, sizeof *l);
}

static const act_def *find_act(const char *name)
{
    for (size_t i = 0; i < COUNT(act_defs); i++)
        if (strcmp(act_defs[i].name, name) == 0) return &act_defs[i];
    return NULL;
}

static int push_action(ctx_t *x, cur_t *c, alist *l, const char *name, char *value)
{
    int ok = 1;
    char *n = dupn(name, strlen(name));
    l->a = reserve(l->a, l->na, sizeof *l->a, &ok);
    if (!ok || !n) {
        free(n);
        free(value);
        return oom(x, c);
    }
    l->a[l->na].name = n;
    l->a[l->na].value = value;
    l->na++;
    return 0;
}

static int all_digits(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s)) return 0;
    return 1;
}

/* Is the action ending here followed by what may follow an action. */
static int action_end_ok(const cur_t *c, int quoted)
{
    int ch = pk(c, 0);
    if (quoted) return ch == ',' || ch == '"' || is_blank(ch) || cont_at(c, 0);
    return ch < 0 || is_blank(ch) || ch == '\n' || ch == '\r';
}

/* The value after `name:`. */
static int read_action_value(ctx_t *x, cur_t *c, int kind, int quoted, char **out, int *was_quoted)
{
    size_t b, e;
    *was_quoted = 0;
    if (pk(c, 0) == '\'') {
        adv(c);
        b = c->i;
        for (;;) {
            int ch = pk(c, 0);
            if (ch < 0) return fail(x, c->file, c->line, "unterminated quoted action value");
            if (ch == '\'' && !escaped_quote(c, b)) break;
            adv(c);
        }
        e = c->i;
        adv(c);
        *was_quoted = 1;
    } else if (pk(c, 0) == '"' && kind == A_PRED) {
        adv(c);
        if (read_dq_text(c, &b, &e) < 0) return fail(x, c->file, c->line, "unterminated quoted action value");
    } else {
        b = c->i;
        for (;;) {
            int ch = pk(c, 0);
            if (ch < 0 || ch == ',') break;
            if (ch == '"' && (kind == A_TOKEN || !escaped_quote(c, b))) break;
            if ((kind == A_TOKEN || !quoted) && (is_blank(ch) || ch == '\n' || ch == '\r')) break;
            if (ch == '%' && kind != A_TOKEN && pk(c, 1) >= 0 && pk(c, 1) != '{') {
                advn(c, 2);
                continue;
            }
            adv(c);
        }
        e = c->i;
    }
    if (e == b) return bad_input(x, c, "Expecting an action value");
    if (!action_end_ok(c, quoted)) return bad_input(x, c, "Expecting an action");
    *out = dupn(c->s + b, e - b);
    return *out ? 0 : oom(x, c);
}

/* One action at the cursor. */
static int read_action(ctx_t *x, cur_t *c, alist *l, int quoted)
{
    size_t b = c->i;
    while (pk(c, 0) >= 0 && isalpha(pk(c, 0)))
        adv(c);
    if (c->i == b || c->i - b > 40) return bad_input(x, c, "Expecting an action");
    char name[48];
    memcpy(name, c->s + b, c->i - b);
    name[c->i - b] = '\0';
    lower(name);

    if (strcmp(name, "t") == 0) {
        if (pk(c, 0) != ':') return bad_input(x, c, "Expecting an action");
        adv(c);
        size_t tb = c->i;
        while (pk(c, 0) >= 0 && isalnum(pk(c, 0)))
            adv(c);
        size_t tl = c->i - tb;
        int known = 0;
        for (size_t i = 0; i < COUNT(transform_names) && !known; i++)
            known = strlen(transform_names[i]) == tl && strncasecmp(transform_names[i], c->s + tb, tl) == 0;
        if (!known || !action_end_ok(c, quoted)) {
            c->i = b; /* the message shows the whole action; b is on the same line */
            return bad_input(x, c, "Expecting an action");
        }
        int ok = 1;
        char *t = dupn(c->s + tb, tl);
        l->t = reserve(l->t, l->nt, sizeof *l->t, &ok);
        if (!ok || !t) {
            free(t);
            return oom(x, c);
        }
        l->t[l->nt++] = t;
        return 0;
    }

    const act_def *d = find_act(name);
    if (!d) {
        c->i = b;
        return bad_input(x, c, "Expecting an action");
    }
    if (d->kind == A_UNSUP) return fail(x, c->file, c->line, "Action %s is not supported", name);
    if (d->kind == A_FLAG) {
        char *value = NULL;
        if (pk(c, 0) == ':' && strcmp(name, "allow") == 0) {
            adv(c);
            size_t vb = c->i;
            while (pk(c, 0) >= 0 && isalpha(pk(c, 0)))
                adv(c);
            value = dupn(c->s + vb, c->i - vb);
            if (!value) return oom(x, c);
            if (strcasecmp(value, "request") != 0 && strcasecmp(value, "phase") != 0) {
                free(value);
                c->i = b;
                return bad_input(x, c, "Expecting an action");
            }
        }
        if (!action_end_ok(c, quoted)) {
            free(value);
            c->i = b;
            return bad_input(x, c, "Expecting an action");
        }
        return push_action(x, c, l, name, value);
    }
    if (pk(c, 0) != ':') return bad_input(x, c, "Expecting an action value");
    adv(c);
    int line = c->line, was_quoted;
    char *value = NULL;
    if (read_action_value(x, c, d->kind, quoted, &value, &was_quoted) < 0) return -1;

    const char *bad = NULL;
    if ((d->kind == A_PRED || strcmp(name, "setvar") == 0 || strcmp(name, "expirevar") == 0 ||
         strcmp(name, "exec") == 0) &&
        !macros_ok(value))
        bad = "has an invalid macro";
    if (!bad && strcmp(name, "setvar") == 0) {
        /* the target is a variable of a writable collection */
        static const char *const colls[] = {"tx", "ip", "session", "user", "global", "resource"};
        const char *v = value + (value[0] == '!');
        int known = 0;
        for (size_t i = 0; i < COUNT(colls) && !known; i++) {
            size_t ln = strlen(colls[i]);
            known = strncasecmp(v, colls[i], ln) == 0 && (v[ln] == '.' || v[ln] == ':') && v[ln + 1] &&
                    v[ln + 1] != '=';
        }
        if (!known) bad = "does not set a variable of TX, IP, SESSION, USER, GLOBAL or RESOURCE";
    }
    if (bad) {
        /* reported below */
    } else if (strcmp(name, "id") == 0) {
        /* digits as libmodsecurity prints them back: no sign, no leading zero */
        if (!all_digits(value) || (value[0] == '0' && value[1]) || strlen(value) > 10 ||
            strtoull(value, NULL, 10) > UINT32_MAX)
            bad = "does not seem to be a valid rule id";
    } else if (strcmp(name, "phase") == 0) {
        if (was_quoted && (strcasecmp(value, "request") == 0 || strcasecmp(value, "phase") == 0)) {
            /* the scanner reads `phase:'request'` as `allow:request` */
            return push_action(x, c, l, "allow", value);
        }
        if (all_digits(value)) {
            if (strlen(value) > 9 || atoi(value) > 5) bad = "Unknown phase";
        } else if (strcasecmp(value, "request") && strcasecmp(value, "response") &&
                   strcasecmp(value, "logging")) {
            bad = "Unknown phase";
        }
    } else if (strcmp(name, "status") == 0 || strcmp(name, "skip") == 0) {
        if (was_quoted || !all_digits(value) || strlen(value) > 9) bad = "is not a number";
    } else if (strcmp(name, "severity") == 0) {
        int known = all_digits(value);
        for (size_t i = 0; i < COUNT(severity_names) && !known; i++)
            known = strcasecmp(severity_names[i], value) == 0;
        if (!known) bad = "is not a severity";
    } else if (strcmp(name, "ver") == 0) {
        if (!was_quoted) bad = "must be in single quotes";
    } else if (strcmp(name, "ctl") == 0) {
        int known = 0;
        for (size_t i = 0; i < COUNT(ctl_names) && !known; i++)
            known = strncasecmp(value, ctl_names[i], strlen(ctl_names[i])) == 0;
        if (!known) {
            bad = "unknown ctl";
        } else if (strncasecmp(value, "ruleremove", 10) == 0) {
            /* the scanner's [0-9A-Za-z_/.-*:;[]$]+ after the '=' */
            const char *v = strchr(value, '=') + 1;
            if (!*v) bad = "needs a value";
            for (; *v && !bad; v++)
                if (!isalnum((unsigned char)*v) && !strchr("_/.-*:;[]$", *v))
                    bad = "has a character the scanner refuses";
        }
    }
    if (bad) {
        int r = fail(x, c->file, line, "%s:%s %s", name, value, bad);
        free(value);
        return r;
    }
    return push_action(x, c, l, name, value);
}

/* A double-quoted action list; the cursor is after the opening quote. */
static int read_actions_quoted(ctx_t *x, cur_t *c, alist *l)
{
    skip_blanks(c);
    for (;;) {
        for (size_t k;;) {
            for (k = 0; is_blank(pk(c, k)); k++)
                ;
            size_t cl = cont_at(c, k);
            if (!cl) break;
            advn(c, k + cl);
            skip_blanks(c);
        }
        if (pk(c, 0) < 0 || nl_at(c, 0)) return fail(x, c->file, c->line, "unterminated action list");
        if (read_action(x, c, l, 1) < 0) return -1;
        for (;;) {
            size_t k = 0;
            while (is_blank(pk(c, k)))
                k++;
            if (pk(c, k) == ',') {
                advn(c, k + 1);
                skip_blanks(c);
                break;
            }
            if (k == 0 && pk(c, 0) == '"') {
                adv(c);
                skip_blanks(c);
                return 0;
            }
            size_t cl = cont_at(c, k);
            if (cl) {
                advn(c, k + cl);
                skip_blanks(c);
                continue;
            }
            advn(c, k);
            if (pk(c, 0) < 0 || nl_at(c, 0)) return fail(x, c->file, c->line, "unterminated action list");
            return bad_input(x, c, "Expecting an action");
        }
    }
}

/* After SecAction / SecDefaultAction: optional blanks (and a continuation), then quoted actions. */
static int read_directive_actions(ctx_t *x, cur_t *c, alist *l)
{
    skip_blanks(c);
    size_t cl = cont_at(c, 0);
    if (cl) {
        advn(c, cl);
        skip_blanks(c);
    }
    if (pk(c, 0) != '"') return bad_input(x, c, "Expecting actions in double quotes");
    adv(c);
    return read_actions_quoted(x, c, l);
}

/* What follows an operator: quoted actions, one unquoted action, or nothing (at the end). */
static int read_actions_after_operator(ctx_t *x, cur_t *c, alist *l, int *none)
{
    size_t k = 0, cl;
    *none = 0;
    while (is_blank(pk(c, k)))
        k++;
    if (pk(c, k) == '"') {
        advn(c, k + 1);
        return read_actions_quoted(x, c, l);
    }
    if ((cl = cont_at(c, k)) != 0 || (cl = nl_at(c, k)) != 0) {
        advn(c, k + cl);
        skip_blanks(c);
        if (pk(c, 0) == '"') {
            adv(c);
            return read_actions_quoted(x, c, l);
        }
        if (pk(c, 0) < 0 || nl_at(c, 0)) {
            *none = 1;
            return 0;
        }
    } else if (pk(c, k) < 0) {
        advn(c, k);
        *none = 1;
        return 0;
    } else if (k > 0 && pk(c, 0) == ' ') {
        advn(c, k);
    } else {
        return bad_input(x, c, "Expecting actions");
    }
    if (read_action(x, c, l, 0) < 0) return -1;
    return 0;
}

/* ---- operators ------------------------------------------------------------------------------- */

static int set_op(ctx_t *x, cur_t *c, sl_rule *r, const char *op, size_t b, size_t e)
{
    r->op = dupn(op, strlen(op));
    r->op_param = dupn(c->s + b, e - b);
    if (!r->op || !r->op_param) return oom(x, c);
    if (!macros_ok(r->op_param)) return fail(x, c->file, c->line, "invalid macro in operator @%s", op);
    return 0;
}

/* The operator: `"[!]@name param"`, `"[!]regex"`, or the same unquoted up to a blank. */
static int read_operator(ctx_t *x, cur_t *c, sl_rule *r, int quoted)
{
    int line = c->line;
    for (int round = 0; round < 2; round++) {
        size_t k = 0;
        while (is_blank(pk(c, k)))
            k++;
        if (k >= 2) advn(c, k); /* one blank alone starts an implicit @rx */
        if (round == 0 && pk(c, 0) == '!') {
            r->op_negated = 1;
            adv(c);
        } else {
            break;
        }
    }
    size_t start = c->i, b, e;
    if (pk(c, 0) == '@') {
        size_t nb = c->i + 1, ne = nb;
        while (ne < c->n && isalnum((unsigned char)c->s[ne]))
            ne++;
        /* the longest operator name the text starts with, as the scanner picks */
        const op_def *best = NULL;
        for (size_t i = 0; i < COUNT(op_defs); i++) {
            size_t ln = strlen(op_defs[i].name);
            if (ln <= ne - nb && strncasecmp(c->s + nb, op_defs[i].name, ln) == 0 &&
                (!best || ln > strlen(best->name)))
                best = &op_defs[i];
        }
        if (best && strlen(best->name) == ne - nb) {
            advn(c, ne - c->i);
            if (best->noparam) {
                size_t k = 0;
                if (quoted) {
                    while (pk(c, k) == ' ')
                        k++;
                    if (pk(c, k) == '"') {
                        advn(c, k + 1);
                        return set_op(x, c, r, best->name, c->i, c->i);
                    }
                } else if (pk(c, 0) == ' ' || pk(c, 0) < 0) {
                    adv(c);
                    return set_op(x, c, r, best->name, c->i, c->i);
                }
                /* anything else after it: the whole text is an implicit @rx */
                c->i = start;
            } else {
                if (pk(c, 0) != ' ')
                    return fail(x, c->file, line, "operator @%s needs a parameter after one space",
                                best->name);
                adv(c);
                if (quoted) {
                    if (read_dq_text(c, &b, &e) < 0) return fail(x, c->file, line, "unterminated operator");
                } else {
                    read_space_text(c, &b, &e);
                    if (pk(c, 0) == ' ') adv(c);
                }
                if (e == b) return fail(x, c->file, line, "operator @%s needs a parameter", best->name);
                return set_op(x, c, r, best->name, b, e);
            }
        } else if (best) {
            return fail(x, c->file, line, "unknown operator");
        }
    }
    /* implicit @rx: the text as written */
    if (quoted) {
        if (read_dq_text(c, &b, &e) < 0) return fail(x, c->file, line, "unterminated operator");
    } else {
        read_space_text(c, &b, &e);
        if (pk(c, 0) == ' ') adv(c);
    }
    if (e == b) return fail(x, c->file, line, "empty operator");
    return set_op(x, c, r, "rx", b, e);
}

/* ---- rules ----------------------------------------------------------------------------------- */

static int phase_of(const char *v)
{
    if (all_digits(v)) return atoi(v);
    if (strcasecmp(v, "request") == 0) return 2;
    if (strcasecmp(v, "response") == 0) return 4;
    return 5; /* logging */
}

static sl_rule *new_rule(ctx_t *x, cur_t *c, sl_kind kind, int line)
{
    sl_rule *r = calloc(1, sizeof *r);
    if (r) {
        r->kind = kind;
        r->line = line;
        r->phase = 1;
        r->file = dupn(c->file, strlen(c->file));
        if (!r->file) {
            free(r);
            r = NULL;
        }
    }
    if (!r) oom(x, c);
    return r;
}

/* id and phase from the actions, the last of each as libmodsecurity applies them in order */
static void apply_config(sl_rule *r)
{
    for (size_t i = 0; i < r->nactions; i++) {
        const sl_action *a = &r->actions[i];
        if (strcmp(a->name, "id") == 0)
            r->id = (uint32_t)strtoul(a->value, NULL, 10);
        else if (strcmp(a->name, "phase") == 0)
            r->phase = phase_of(a->value);
    }
}

static int has_disruptive(const sl_rule *r)
{
    for (size_t i = 0; i < r->nactions; i++) {
        const act_def *d = find_act(r->actions[i].name);
        if (d && d->disruptive) return 1;
    }
    return 0;
}

static int push_rule(ctx_t *x, cur_t *c, sl_rule *r)
{
    int ok = 1;
    x->rs->rules = reserve(x->rs->rules, x->rs->nrules, sizeof *x->rs->rules, &ok);
    if (!ok) {
        free_rule(r);
        return oom(x, c);
    }
    x->rs->rules[x->rs->nrules++] = r;
    return 0;
}

static void take_actions(sl_rule *r, alist *l)
{
    r->actions = l->a;
    r->nactions = l->na;
    r->transforms = l->t;
    r->ntransforms = l->nt;
    memset(l, 0, sizeof *l);
}

static int dir_secrule(ctx_t *x, cur_t *c, int line)
{
    sl_rule *r = new_rule(x, c, SL_RULE, line);
    if (!r) return -1;
    alist l = {0};
    skip_blanks(c);
    if (read_vars(x, c, &r->vars, &r->nvars) < 0) goto bad;
    /* end of the targets: blanks, backslashes and newlines, then a quote or not */
    size_t b = c->i;
    skip_blanks(c);
    while (pk(c, 0) == '\\' || pk(c, 0) == '\n' || pk(c, 0) == '\r')
        adv(c);
    skip_blanks(c);
    int quoted = pk(c, 0) == '"';
    if (c->i == b) { /* a quote right after the targets is not the operator's */
        bad_input(x, c, "Expecting a blank before the operator");
        goto bad;
    }
    if (quoted)
        adv(c);
    else if (pk(c, 0) < 0) {
        bad_input(x, c, "Expecting an operator");
        goto bad;
    }
    if (read_operator(x, c, r, quoted) < 0) goto bad;
    int none;
    if (read_actions_after_operator(x, c, &l, &none) < 0) goto bad;
    take_actions(r, &l);
    apply_config(r);

    sl_rule *head = x->last;
    if (head && sl_rule_action(head, "chain")) {
        if (has_disruptive(r)) {
            fail(x, c->file, line, "Disruptive actions can only be specified by chain starter rules.");
            goto bad;
        }
        r->id = 0;
        r->phase = head->phase;
        head->chain = r;
        x->last = r;
        return 0;
    }
    if (r->id == 0) {
        fail(x, c->file, line, "Rules must have an ID.");
        goto bad;
    }
    if (idset_has(&x->ids, r->id)) {
        fail(x, c->file, line, "Rule id: %u is duplicated", (unsigned)r->id);
        goto bad;
    }
    if (idset_add(&x->ids, r->id) < 0) {
        oom(x, c);
        goto bad;
    }
    x->last = r;
    return push_rule(x, c, r);
bad:
    alist_free(&l);
    free_rule(r);
    return -1;
}

static int dir_secaction(ctx_t *x, cur_t *c, int line)
{
    sl_rule *r = new_rule(x, c, SL_ACTION, line);
    if (!r) return -1;
    alist l = {0};
    if (read_directive_actions(x, c, &l) < 0) {
        alist_free(&l);
        free_rule(r);
        return -1;
    }
    take_actions(r, &l);
    apply_config(r);
    return push_rule(x, c, r);
}

static int dir_default_action(ctx_t *x, cur_t *c, int line)
{
    alist l = {0};
    if (read_directive_actions(x, c, &l) < 0) goto bad;
    int phase = 1, disruptive = 0;
    for (size_t i = 0; i < l.na; i++) {
        const act_def *d = find_act(l.a[i].name);
        if (strcmp(l.a[i].name, "phase") == 0)
            phase = phase_of(l.a[i].value);
        else if (d && d->config) {
            fail(x, c->file, line, "The action '%s' is not suitable to be part of the SecDefaultActions",
                 l.a[i].name);
            goto bad;
        }
        if (d && d->disruptive) disruptive = 1;
    }
    for (size_t i = 0; i < l.nt; i++)
        if (strcasecmp(l.t[i], "none") == 0) {
            fail(x, c->file, line,
                 "The transformation none is not suitable to be part of the SecDefaultActions");
            goto bad;
        }
    if (!disruptive) {
        fail(x, c->file, line, "SecDefaultAction must specify a disruptive action.");
        goto bad;
    }
    if (x->default_seen[phase]) {
        fail(x, c->file, line,
             "SecDefaultActions can only be placed once per phase and configuration context. Phase %d was "
             "informed already.",
             phase);
        goto bad;
    }
    x->default_seen[phase] = 1;
    sl_ruleset *rs = x->rs;
    for (size_t i = 0; i < l.na; i++) {
        if (strcmp(l.a[i].name, "phase") == 0) continue;
        int ok = 1;
        rs->default_actions[phase] =
            reserve(rs->default_actions[phase], rs->ndefault_actions[phase], sizeof(sl_action), &ok);
        if (!ok) {
            oom(x, c);
            goto bad;
        }
        rs->default_actions[phase][rs->ndefault_actions[phase]++] = l.a[i];
        l.a[i].name = l.a[i].value = NULL;
    }
    for (size_t i = 0; i < l.nt; i++) {
        int ok = 1;
        rs->default_transforms[phase] =
            reserve(rs->default_transforms[phase], rs->ndefault_transforms[phase], sizeof(char *), &ok);
        if (!ok) {
            oom(x, c);
            goto bad;
        }
        rs->default_transforms[phase][rs->ndefault_transforms[phase]++] = l.t[i];
        l.t[i] = NULL;
    }
    alist_free(&l);
    return 0;
bad:
    alist_free(&l);
    return -1;
}

static int dir_marker(ctx_t *x, cur_t *c, int line)
{
    if (!is_blank(pk(c, 0))) return bad_input(x, c, "SecMarker needs a name");
    skip_blanks(c);
    int quoted = pk(c, 0) == '"';
    if (quoted) adv(c);
    size_t b = c->i;
    while (pk(c, 0) >= 0 && !strchr(", \t\"\n\r", pk(c, 0)))
        adv(c);
    size_t e = c->i;
    if (e == b || (quoted && pk(c, 0) != '"')) return bad_input(x, c, "SecMarker needs a name");
    if (quoted)
        adv(c);
    else if (e - b >= 2 && c->s[b] == '\'' && c->s[e - 1] == '\'') {
        b++;
        e--;
    }
    sl_rule *r = new_rule(x, c, SL_MARKER, line);
    if (!r) return -1;
    r->phase = 0; /* markers stand in every phase */
    r->marker = dupn(c->s + b, e - b);
    if (!r->marker) {
        free_rule(r);
        return oom(x, c);
    }
    return push_rule(x, c, r);
}

/* The scanner's "word after the directive" value: skips blanks and newlines as its initial state. */
static int read_value_word(ctx_t *x, cur_t *c, char *buf, size_t len)
{
    for (;;) {
        int ch = pk(c, 0);
        size_t cl;
        if (is_blank(ch) || ch == '\r' || ch == '\n')
            adv(c);
        else if ((cl = cont_at(c, 0)) != 0)
            advn(c, cl);
        else
            break;
    }
    size_t b = c->i;
    while (pk(c, 0) >= 0 && isalnum(pk(c, 0)))
        adv(c);
    if (c->i == b || c->i - b >= len) return bad_input(x, c, "Expecting a value");
    memcpy(buf, c->s + b, c->i - b);
    buf[c->i - b] = '\0';
    lower(buf);
    return 0;
}

static int on_off(ctx_t *x, cur_t *c, const char *dir, int *out)
{
    char v[32];
    if (read_value_word(x, c, v, sizeof v) < 0) return -1;
    if (strcmp(v, "on") == 0)
        *out = 1;
    else if (strcmp(v, "off") == 0)
        *out = 0;
    else
        return fail(x, c->file, c->line, "%s: expecting On or Off, got '%s'", dir, v);
    return 0;
}

/* Text up to a double quote, a pipe or a newline (the scanner's FREE_TEXT_NEW_LINE). */
static void free_text_new_line(cur_t *c, size_t *b, size_t *e)
{
    *b = c->i;
    while (pk(c, 0) >= 0 && pk(c, 0) != '"' && pk(c, 0) != '|' && pk(c, 0) != '\n')
        adv(c);
    *e = c->i;
}

/* libmodsecurity's parserSanitizer: blanks (spaces) around, then "..." or '...' removed. */
static char *sanitize(const char *s, size_t n)
{
    while (n > 1 && *s == ' ') {
        s++;
        n--;
    }
    while (n > 1 && s[n - 1] == ' ')
        n--;
    if (n > 1 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    if (n > 1 && s[0] == '\'' && s[n - 1] == '\'') {
        s++;
        n -= 2;
    }
    return dupn(s, n);
}

/* A directive's text argument: `"text"` (up to the next quote) or text up to " | or newline. */
static int text_arg(ctx_t *x, cur_t *c, const char *dir, char **out)
{
    if (!is_blank(pk(c, 0))) return bad_input(x, c, dir);
    skip_blanks(c);
    size_t b, e;
    if (pk(c, 0) == '"') {
        adv(c);
        free_text_new_line(c, &b, &e);
        if (pk(c, 0) != '"' || e == b) return bad_input(x, c, dir);
        adv(c);
    } else {
        free_text_new_line(c, &b, &e);
        if (e == b || pk(c, 0) == '"' || pk(c, 0) == '|') return bad_input(x, c, dir);
    }
    *out = sanitize(c->s + b, e - b);
    return *out ? 0 : oom(x, c);
}

static int push_remove(ctx_t *x, cur_t *c, uint32_t lo, uint32_t hi)
{
    sl_ruleset *rs = x->rs;
    int ok = 1;
    rs->remove_lo = reserve(rs->remove_lo, rs->nremove, sizeof *rs->remove_lo, &ok);
    if (ok) rs->remove_hi = reserve(rs->remove_hi, rs->nremove, sizeof *rs->remove_hi, &ok);
    if (!ok) return oom(x, c);
    rs->remove_lo[rs->nremove] = lo;
    rs->remove_hi[rs->nremove] = hi;
    rs->nremove++;
    return 0;
}

/* std::stoi: leading white space, a sign, digits; the value must fit an int. */
static int stoi_like(const char *s, long *out)
{
    char *end;
    while (isspace((unsigned char)*s))
        s++;
    if (!(isdigit((unsigned char)*s) || ((*s == '+' || *s == '-') && isdigit((unsigned char)s[1]))))
        return -1;
    long v = strtol(s, &end, 10);
    if (v > 2147483647L || v < -2147483647L - 1) return -1;
    *out = v;
    return 0;
}

static uint32_t clamp_id(long v)
{
    return v < 0 ? 0 : (uint32_t)v;
}

static int dir_remove_by_id(ctx_t *x, cur_t *c, int line)
{
    if (!is_blank(pk(c, 0))) return bad_input(x, c, "SecRuleRemoveById");
    skip_blanks(c);
    size_t b, e;
    free_text_new_line(c, &b, &e);
    if (e == b || pk(c, 0) == '"' || pk(c, 0) == '|') return bad_input(x, c, "SecRuleRemoveById");
    char *all = sanitize(c->s + b, e - b);
    if (!all) return oom(x, c);
    int added = 0, rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(all, " ", &save); tok && rc == 0; tok = strtok_r(NULL, " ", &save)) {
        char *t = sanitize(tok, strlen(tok));
        if (!t) {
            rc = oom(x, c);
            break;
        }
        char *dash = strchr(t, '-');
        long lo, hi;
        if (!*t) {
        } else if (dash) {
            *dash = '\0';
            const char *n1 = t, *n2 = dash + 1;
            if (stoi_like(n1, &lo) < 0)
                rc = fail(x, c->file, line, "SecRuleRemoveById: failed to load. Not a number: %s", n1);
            else if (stoi_like(n2, &hi) < 0)
                rc = fail(x, c->file, line, "SecRuleRemoveById: failed to load. Not a number: %s", n2);
            else if (strcmp(n1, n2) > 0) /* as libmodsecurity: the texts are compared */
                rc =
                    fail(x, c->file, line, "SecRuleRemoveById: failed to load. Invalid range: %s-%s", n1, n2);
            else if ((rc = push_remove(x, c, clamp_id(lo), clamp_id(hi))) == 0)
                added = 1;
        } else if (stoi_like(t, &lo) < 0) {
            rc = fail(x, c->file, line, "SecRuleRemoveById: failed to load. Not a number or range: %s", t);
        } else if ((rc = push_remove(x, c, clamp_id(lo), clamp_id(lo))) == 0) {
            added = 1;
        }
        free(t);
    }
    if (rc == 0 && !added)
        rc = fail(x, c->file, line, "SecRuleRemoveById: failed to load. Not a number or range");
    free(all);
    return rc;
}

static int push_str(ctx_t *x, cur_t *c, char ***arr, size_t *n, char *s)
{
    int ok = 1;
    *arr = reserve(*arr, *n, sizeof **arr, &ok);
    if (!ok) {
        free(s);
        return oom(x, c);
    }
    (*arr)[(*n)++] = s;
    return 0;
}

static int push_unsupported(ctx_t *x, cur_t *c, int line, const char *what)
{
    size_t len = strlen(c->file) + strlen(what) + 24;
    char *s = malloc(len);
    if (!s) return oom(x, c);
    snprintf(s, len, "%s:%d: %s", c->file, line, what);
    return push_str(x, c, &x->rs->unsupported, &x->rs->nunsupported, s);
}

/* std::stod on an id: the leading number; ids that no rule can have become 0. */
static int rule_id_arg(const char *s, uint32_t *out)
{
    char *end;
    double d = strtod(s, &end);
    if (end == s) return -1;
    *out = (d >= 1 && d <= 4294967295.0 && d == (double)(uint32_t)d) ? (uint32_t)d : 0;
    return 0;
}

/* The id / tag / msg argument of the Update directives. */
static int update_arg(ctx_t *x, cur_t *c, const char *dir, char **out)
{
    if (!is_blank(pk(c, 0))) return bad_input(x, c, dir);
    skip_blanks(c);
    size_t b, e;
    if (pk(c, 0) == '"') {
        adv(c);
        free_text_new_line(c, &b, &e);
        if (pk(c, 0) != '"' || e == b) return bad_input(x, c, dir);
        adv(c);
    } else {
        b = c->i;
        while (pk(c, 0) >= 0 && !strchr(", \t\"\n\r", pk(c, 0)))
            adv(c);
        e = c->i;
        if (e == b) return bad_input(x, c, dir);
    }
    *out = sanitize(c->s + b, e - b);
    return *out ? 0 : oom(x, c);
}

static int dir_update_target(ctx_t *x, cur_t *c, int line, int by, const char *dir)
{
    sl_target_update u;
    memset(&u, 0, sizeof u);
    u.by = by;
    char *arg = NULL;
    if (update_arg(x, c, dir, &arg) < 0) return -1;
    if (by == 0) {
        if (rule_id_arg(arg, &u.id_lo) < 0) {
            int r =
                fail(x, c->file, line,
                     "%s: failed to load: The input \"%s\" does not seem to be a valid rule id.", dir, arg);
            free(arg);
            return r;
        }
        u.id_hi = u.id_lo;
        free(arg);
    } else {
        u.match = arg;
    }
    skip_blanks(c);
    if (read_vars(x, c, &u.vars, &u.nvars) < 0) goto bad;
    /* a replacement target (v2 syntax): not taken by libmodsecurity 3, not modelled */
    skip_blanks(c);
    if (pk(c, 0) >= 0 && pk(c, 0) != '\n' && pk(c, 0) != '\r' && pk(c, 0) != '#' && !cont_at(c, 0)) {
        char what[96];
        snprintf(what, sizeof what, "%s replacement target", dir);
        if (push_unsupported(x, c, line, what) < 0) goto bad;
        size_t b, e;
        if (pk(c, 0) == '"') {
            adv(c);
            if (read_dq_text(c, &b, &e) < 0) {
                fail(x, c->file, line, "%s: unterminated replacement target", dir);
                goto bad;
            }
        } else {
            while (pk(c, 0) >= 0 && !isspace(pk(c, 0)))
                adv(c);
        }
    }
    int ok = 1;
    sl_ruleset *rs = x->rs;
    rs->target_updates = reserve(rs->target_updates, rs->ntarget_updates, sizeof *rs->target_updates, &ok);
    if (!ok) {
        oom(x, c);
        goto bad;
    }
    rs->target_updates[rs->ntarget_updates++] = u;
    return 0;
bad:
    free(u.match);
    free_vars(u.vars, u.nvars);
    return -1;
}

static int dir_update_action(ctx_t *x, cur_t *c, int line)
{
    char *arg = NULL;
    if (update_arg(x, c, "SecRuleUpdateActionById", &arg) < 0) return -1;
    sl_action_update u;
    memset(&u, 0, sizeof u);
    if (rule_id_arg(arg, &u.id) < 0) {
        int r = fail(
            x, c->file, line,
            "SecRuleUpdateActionById: failed to load: The input \"%s\" does not seem to be a valid rule id.",
            arg);
        free(arg);
        return r;
    }
    free(arg);
    alist l = {0};
    int none;
    if (read_actions_after_operator(x, c, &l, &none) < 0) goto bad;
    if (none) {
        fail(x, c->file, line, "SecRuleUpdateActionById: expecting actions");
        goto bad;
    }
    /* configuration actions (id, phase, chain, ...) are dropped by libmodsecurity here */
    size_t keep = 0;
    for (size_t i = 0; i < l.na; i++) {
        const act_def *d = find_act(l.a[i].name);
        if (d && d->config) {
            free(l.a[i].name);
            free(l.a[i].value);
        } else {
            l.a[keep++] = l.a[i];
        }
    }
    l.na = keep;
    u.actions = l.a;
    u.nactions = l.na;
    u.transforms = l.t;
    u.ntransforms = l.nt;
    memset(&l, 0, sizeof l);
    int ok = 1;
    sl_ruleset *rs = x->rs;
    rs->action_updates = reserve(rs->action_updates, rs->naction_updates, sizeof *rs->action_updates, &ok);
    if (!ok) {
        free_actions(u.actions, u.nactions);
        free_strs(u.transforms, u.ntransforms);
        return oom(x, c);
    }
    rs->action_updates[rs->naction_updates++] = u;
    return 0;
bad:
    alist_free(&l);
    return -1;
}

static int dir_argument_separator(ctx_t *x, cur_t *c, int line)
{
    if (!is_blank(pk(c, 0))) return bad_input(x, c, "SecArgumentSeparator");
    size_t k = 0;
    while (is_blank(pk(c, k)))
        k++;
    /* the two scanner patterns: `"tok"` / `tok` (tok without , blank " or newline) and the rest of
     * the line; the longer match wins, and the second one sets nothing */
    size_t tb = c->i + k, te = tb, tlen;
    if (pk(c, k) == '"') {
        te++;
        while (te < c->n && !strchr(", \t\"\n\r", c->s[te]))
            te++;
        tlen = (te < c->n && c->s[te] == '"' && te > tb + 1) ? te + 1 - tb : 0;
    } else {
        while (te < c->n && !strchr(", \t\"\n\r", c->s[te]))
            te++;
        tlen = te - tb;
    }
    size_t rest = 0;
    while (tb + rest < c->n && !strchr("\"|\n", c->s[tb + rest]))
        rest++;
    if (tlen == 0 && rest == 0) return bad_input(x, c, "SecArgumentSeparator");
    if (rest > tlen) {
        advn(c, k + rest);
        return 0;
    }
    advn(c, k + tlen);
    char *v = sanitize(c->s + tb, tlen);
    if (!v) return oom(x, c);
    if (strlen(v) != 1) {
        free(v);
        return fail(x, c->file, line, "Argument separator should be set to a single character.");
    }
    x->argsep = v[0];
    x->argsep_set = 1;
    free(v);
    return 0;
}

static void skip_line(cur_t *c)
{
    while (pk(c, 0) >= 0 && pk(c, 0) != '\n')
        adv(c);
}

/* To the end of the line, following continuations. */
static void skip_logical_line(cur_t *c)
{
    for (;;) {
        int ch = pk(c, 0);
        if (ch < 0 || ch == '\n') return;
        size_t cl = cont_at(c, 0);
        if (cl)
            advn(c, cl);
        else
            adv(c);
    }
}

static int parse_text(ctx_t *x, const char *file, const char *text, size_t n);

static char *read_file(const char *path, size_t *len, const char **why)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *why = "Not able to open file";
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        *why = "Not a regular file";
        return NULL;
    }
    if (st.st_size > SL_MAX_FILE_SIZE) {
        fclose(f);
        *why = "File too large";
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        *why = "out of memory";
        return NULL;
    }
    size_t got;
    while (n + 1 < cap && (got = fread(buf + n, 1, cap - 1 - n, f)) > 0)
        n += got;
    fclose(f);
    buf[n] = '\0';
    *len = strlen(buf); /* as the scanner reads a string: it ends at a NUL byte */
    return buf;
}

static int regular_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int glob_files(const char *pattern, glob_t *g)
{
    memset(g, 0, sizeof *g);
    if (glob(pattern, 0, NULL, g) != 0) return 0;
    size_t keep = 0;
    for (size_t i = 0; i < g->gl_pathc; i++)
        if (regular_file(g->gl_pathv[i])) keep++;
    return keep > 0;
}

static int dir_include(ctx_t *x, cur_t *c, int line)
{
    if (!is_blank(pk(c, 0))) return bad_input(x, c, "Include");
    skip_blanks(c);
    int quoted = pk(c, 0) == '"';
    if (quoted) adv(c);
    size_t b = c->i;
    while (pk(c, 0) >= 0 && (isalnum(pk(c, 0)) || strchr("_/.-*:", pk(c, 0))))
        adv(c);
    size_t e = c->i;
    if (e == b || (quoted && pk(c, 0) != '"')) return bad_input(x, c, "Include: expecting a path");
    if (quoted) adv(c);
    if (x->depth + 1 > SL_MAX_INCLUDE_DEPTH)
        return fail(x, c->file, line, "Include nested too deep (more than %d levels)", SL_MAX_INCLUDE_DEPTH);
    char *rel = dupn(c->s + b, e - b);
    if (!rel) return oom(x, c);
    /* as libmodsecurity: as written (absolute or from the current directory), then next to the
     * including file */
    glob_t g;
    int found = glob_files(rel, &g);
    if (!found && rel[0] != '/') {
        globfree(&g);
        const char *slash = strrchr(c->file, '/');
        if (slash) {
            size_t dl = (size_t)(slash - c->file);
            char *p = malloc(dl + 1 + strlen(rel) + 1);
            if (!p) {
                free(rel);
                return oom(x, c);
            }
            memcpy(p, c->file, dl);
            p[dl] = '/';
            strcpy(p + dl + 1, rel);
            found = glob_files(p, &g);
            free(p);
        } else {
            memset(&g, 0, sizeof g);
        }
    }
    if (!found) {
        globfree(&g);
        int r = fail(x, c->file, line, "%s: Not able to open file.", rel);
        free(rel);
        return r;
    }
    free(rel);
    int rc = 0;
    for (size_t i = 0; i < g.gl_pathc && rc == 0; i++) {
        const char *p = g.gl_pathv[i];
        if (!regular_file(p)) continue;
        if (++x->nfiles > SL_MAX_FILES) {
            rc = fail(x, c->file, line, "Include: more than %d files", SL_MAX_FILES);
            break;
        }
        size_t n;
        const char *why = NULL;
        char *text = read_file(p, &n, &why);
        if (!text) {
            rc = fail(x, c->file, line, "%s: %s.", p, why);
            break;
        }
        x->depth++;
        rc = parse_text(x, p, text, n);
        x->depth--;
        free(text);
    }
    globfree(&g);
    return rc;
}

/* A `#` comment. A commented-out SecRule / SecAction whose line ends with a backslash comments out
 * its continuation lines too, as the scanner does. */
static void skip_comment(cur_t *c)
{
    size_t k = 1;
    while (is_blank(pk(c, k)))
        k++;
    int rule = 0;
    if (c->i + k + 7 <= c->n && strncmp(c->s + c->i + k, "SecRule", 7) == 0)
        rule = 7;
    else if (c->i + k + 9 <= c->n && strncmp(c->s + c->i + k, "SecAction", 9) == 0)
        rule = 9;
    if (rule && (pk(c, k + rule) < 0 || pk(c, k + rule) == '\\' || pk(c, k + rule) == '\n')) rule = 0;
    size_t eol = c->i;
    while (eol < c->n && c->s[eol] != '\n')
        eol++;
    size_t t = eol;
    while (t > c->i && (c->s[t - 1] == ' ' || c->s[t - 1] == '\t' || c->s[t - 1] == '\r'))
        t--;
    int continued = rule && t > c->i && c->s[t - 1] == '\\';
    advn(c, eol - c->i);
    if (!continued) return;
    while (pk(c, 0) == '\n' || pk(c, 0) == '\r')
        adv(c);
    for (;;) {
        if (pk(c, 0) < 0) return;
        size_t e = c->i;
        while (e < c->n && c->s[e] != '\n')
            e++;
        size_t ll = e - c->i;
        int more = e < c->n && ((ll >= 1 && c->s[e - 1] == '\\') ||
                                (ll >= 2 && c->s[e - 1] == '\r' && c->s[e - 2] == '\\'));
        if (!more) {
            if (ll == 0)
                adv(c);
            else
                advn(c, ll);
            return;
        }
        advn(c, ll + 1);
        skip_blanks(c);
    }
}

static int directive(ctx_t *x, cur_t *c)
{
    int line = c->line;
    size_t b = c->i;
    while (pk(c, 0) >= 0 && (isalnum(pk(c, 0)) || pk(c, 0) == '_'))
        adv(c);
    char name[64];
    if (c->i - b >= sizeof name) {
        c->i = b;
        return bad_input(x, c, "Invalid input");
    }
    memcpy(name, c->s + b, c->i - b);
    name[c->i - b] = '\0';
    lower(name);

    if (strcmp(name, "secrule") == 0) return dir_secrule(x, c, line);
    if (strcmp(name, "secaction") == 0) return dir_secaction(x, c, line);
    if (strcmp(name, "secdefaultaction") == 0) return dir_default_action(x, c, line);
    if (strcmp(name, "secmarker") == 0) return dir_marker(x, c, line);
    if (strcmp(name, "include") == 0) return dir_include(x, c, line);
    if (strcmp(name, "secruleremovebyid") == 0) return dir_remove_by_id(x, c, line);
    if (strcmp(name, "secruleremovebytag") == 0 || strcmp(name, "secruleremovebymsg") == 0) {
        int tag = name[15] == 't';
        char *v = NULL;
        if (text_arg(x, c, tag ? "SecRuleRemoveByTag" : "SecRuleRemoveByMsg", &v) < 0) return -1;
        if (tag) return push_str(x, c, &x->rs->remove_tags, &x->rs->nremove_tags, v);
        return push_str(x, c, &x->rs->remove_msgs, &x->rs->nremove_msgs, v);
    }
    if (strcmp(name, "secruleupdatetargetbyid") == 0)
        return dir_update_target(x, c, line, 0, "SecRuleUpdateTargetById");
    if (strcmp(name, "secruleupdatetargetbytag") == 0)
        return dir_update_target(x, c, line, 1, "SecRuleUpdateTargetByTag");
    if (strcmp(name, "secruleupdatetargetbymsg") == 0)
        return dir_update_target(x, c, line, 2, "SecRuleUpdateTargetByMsg");
    if (strcmp(name, "secruleupdateactionbyid") == 0) return dir_update_action(x, c, line);
    if (strcmp(name, "secruleengine") == 0) {
        char v[32];
        if (read_value_word(x, c, v, sizeof v) < 0) return -1;
        if (strcmp(v, "on") == 0)
            x->engine = 1;
        else if (strcmp(v, "off") == 0)
            x->engine = 0;
        else if (strcmp(v, "detectiononly") == 0)
            x->engine = 2;
        else
            return fail(x, c->file, line, "SecRuleEngine: expecting On, Off or DetectionOnly, got '%s'", v);
        return 0;
    }
    if (strcmp(name, "secrequestbodyaccess") == 0)
        return on_off(x, c, "SecRequestBodyAccess", &x->body_access);
    if (strcmp(name, "secargumentseparator") == 0) return dir_argument_separator(x, c, line);
    if (strcmp(name, "seccookieformat") == 0) {
        char v[32];
        if (read_value_word(x, c, v, sizeof v) < 0) return -1;
        if (atoi(v) == 1) return fail(x, c->file, line, "SecCookieFormat 1 is not yet supported.");
        return 0;
    }
    if (in_list(ignored_directives, COUNT(ignored_directives), name)) {
        skip_line(c);
        return 0;
    }
    if (in_list(off_only_directives, COUNT(off_only_directives), name)) {
        int on = 0;
        if (on_off(x, c, name, &on) < 0) return -1;
        if (on) return fail(x, c->file, line, "%.*s On is not supported.", (int)(c->i - b), c->s + b);
        return 0;
    }
    if (in_list(refused_directives, COUNT(refused_directives), name)) {
        c->i = b;
        return bad_input(x, c, "Directive not supported by libmodsecurity");
    }
    if (in_list(unsupported_directives, COUNT(unsupported_directives), name)) {
        char what[64];
        snprintf(what, sizeof what, "%.*s", (int)(c->i - b), c->s + b); /* as written */
        skip_logical_line(c);
        return push_unsupported(x, c, line, what);
    }
    c->i = b;
    return bad_input(x, c, "Invalid input");
}

static int parse_text(ctx_t *x, const char *file, const char *text, size_t n)
{
    cur_t c = {file, text, n, 0, 1};
    for (;;) {
        int ch = pk(&c, 0);
        size_t cl;
        if (ch < 0) return 0;
        if (is_blank(ch) || ch == '\r' || ch == '\n') {
            adv(&c);
        } else if ((cl = cont_at(&c, 0)) != 0) {
            advn(&c, cl);
        } else if (ch == '#') {
            skip_comment(&c);
        } else if (isalpha(ch)) {
            if (directive(x, &c) < 0) return -1;
        } else {
            return bad_input(x, &c, "Invalid input");
        }
    }
}

/* ---- public ---------------------------------------------------------------------------------- */

sl_ruleset *sl_new(void)
{
    sl_ruleset *rs = calloc(1, sizeof *rs);
    if (rs) {
        rs->rule_engine = -1;
        rs->request_body_access = -1;
        rs->argument_separator = '&';
    }
    return rs;
}

static void free_target_updates(sl_target_update *u, size_t from, size_t n)
{
    for (size_t i = from; i < n; i++) {
        free(u[i].match);
        free_vars(u[i].vars, u[i].nvars);
    }
}

static void free_action_updates(sl_action_update *u, size_t from, size_t n)
{
    for (size_t i = from; i < n; i++) {
        free_actions(u[i].actions, u[i].nactions);
        free_strs(u[i].transforms, u[i].ntransforms);
    }
}

void sl_free(sl_ruleset *rs)
{
    if (!rs) return;
    for (size_t i = 0; i < rs->nrules; i++)
        free_rule(rs->rules[i]);
    free(rs->rules);
    for (int p = 0; p < 6; p++) {
        free_actions(rs->default_actions[p], rs->ndefault_actions[p]);
        free_strs(rs->default_transforms[p], rs->ndefault_transforms[p]);
    }
    free(rs->remove_lo);
    free(rs->remove_hi);
    free_strs(rs->remove_tags, rs->nremove_tags);
    free_strs(rs->remove_msgs, rs->nremove_msgs);
    free_target_updates(rs->target_updates, 0, rs->ntarget_updates);
    free(rs->target_updates);
    free_action_updates(rs->action_updates, 0, rs->naction_updates);
    free(rs->action_updates);
    free_strs(rs->unsupported, rs->nunsupported);
    free(rs);
}

/* What the ruleset held before a call, to put it back when the call fails. */
typedef struct {
    size_t nrules, nremove, ntags, nmsgs, ntu, nau, nuns;
    size_t nda[6], ndt[6];
} mark_t;

static void mark(const sl_ruleset *rs, mark_t *m)
{
    m->nrules = rs->nrules;
    m->nremove = rs->nremove;
    m->ntags = rs->nremove_tags;
    m->nmsgs = rs->nremove_msgs;
    m->ntu = rs->ntarget_updates;
    m->nau = rs->naction_updates;
    m->nuns = rs->nunsupported;
    for (int p = 0; p < 6; p++) {
        m->nda[p] = rs->ndefault_actions[p];
        m->ndt[p] = rs->ndefault_transforms[p];
    }
}

static void rollback(sl_ruleset *rs, const mark_t *m)
{
    for (size_t i = m->nrules; i < rs->nrules; i++)
        free_rule(rs->rules[i]);
    rs->nrules = m->nrules;
    rs->nremove = m->nremove;
    for (size_t i = m->ntags; i < rs->nremove_tags; i++)
        free(rs->remove_tags[i]);
    rs->nremove_tags = m->ntags;
    for (size_t i = m->nmsgs; i < rs->nremove_msgs; i++)
        free(rs->remove_msgs[i]);
    rs->nremove_msgs = m->nmsgs;
    free_target_updates(rs->target_updates, m->ntu, rs->ntarget_updates);
    rs->ntarget_updates = m->ntu;
    free_action_updates(rs->action_updates, m->nau, rs->naction_updates);
    rs->naction_updates = m->nau;
    for (size_t i = m->nuns; i < rs->nunsupported; i++)
        free(rs->unsupported[i]);
    rs->nunsupported = m->nuns;
    for (int p = 0; p < 6; p++) {
        for (size_t i = m->nda[p]; i < rs->ndefault_actions[p]; i++) {
            free(rs->default_actions[p][i].name);
            free(rs->default_actions[p][i].value);
        }
        rs->ndefault_actions[p] = m->nda[p];
        for (size_t i = m->ndt[p]; i < rs->ndefault_transforms[p]; i++)
            free(rs->default_transforms[p][i]);
        rs->ndefault_transforms[p] = m->ndt[p];
    }
}

static int begin(ctx_t *x, sl_ruleset *rs, char *err, size_t errlen)
{
    memset(x, 0, sizeof *x);
    x->rs = rs;
    x->err = err;
    x->errlen = errlen;
    x->engine = -1;
    x->body_access = -1;
    if (err && errlen) err[0] = '\0';
    for (size_t i = 0; i < rs->nrules; i++)
        if (rs->rules[i]->kind == SL_RULE && idset_add(&x->ids, rs->rules[i]->id) < 0) return -1;
    return 0;
}

static int finish(ctx_t *x, const mark_t *m, int rc)
{
    sl_ruleset *rs = x->rs;
    if (rc < 0) {
        rollback(rs, m);
    } else {
        /* merged as libmodsecurity merges rule sets: the first value set wins */
        if (rs->rule_engine == -1) rs->rule_engine = x->engine;
        if (rs->request_body_access == -1) rs->request_body_access = x->body_access;
        if (!rs->argument_separator_set && x->argsep_set) {
            rs->argument_separator = x->argsep;
            rs->argument_separator_set = 1;
        }
    }
    free(x->ids.slots);
    return rc < 0 ? -1 : 0;
}

int sl_add_text(sl_ruleset *rs, const char *text, const char *name, char *err, size_t errlen)
{
    ctx_t x;
    mark_t m;
    if (!rs || !text) {
        if (err && errlen) snprintf(err, errlen, "%s:0: no text", name ? name : "(text)");
        return -1;
    }
    if (!name) name = "(text)";
    mark(rs, &m);
    if (begin(&x, rs, err, errlen) < 0) {
        if (err && errlen) snprintf(err, errlen, "%s:0: out of memory", name);
        free(x.ids.slots);
        return -1;
    }
    x.nfiles = 1;
    int rc = parse_text(&x, name, text, strlen(text));
    return finish(&x, &m, rc);
}

int sl_add_file(sl_ruleset *rs, const char *path, char *err, size_t errlen)
{
    ctx_t x;
    mark_t m;
    if (!rs || !path) {
        if (err && errlen) snprintf(err, errlen, "(file):0: no file");
        return -1;
    }
    size_t n;
    const char *why = NULL;
    char *text = read_file(path, &n, &why);
    if (!text) {
        if (err && errlen) snprintf(err, errlen, "%s:0: %s", path, why);
        return -1;
    }
    mark(rs, &m);
    if (begin(&x, rs, err, errlen) < 0) {
        if (err && errlen) snprintf(err, errlen, "%s:0: out of memory", path);
        free(x.ids.slots);
        free(text);
        return -1;
    }
    x.nfiles = 1;
    int rc = parse_text(&x, path, text, n);
    free(text);
    return finish(&x, &m, rc);
}

const sl_action *sl_rule_action(const sl_rule *r, const char *name)
{
    if (!r || !name) return NULL;
    for (size_t i = 0; i < r->nactions; i++)
        if (strcmp(r->actions[i].name, name) == 0) return &r->actions[i];
    return NULL;
}
