/* SecLang reader: the whole of Debian's OWASP CRS with the project's settings files (no error, every
 * rule id and marker found by an independent scan of the files, nothing unsupported), specific CRS
 * rules field by field, and small texts for each construct and each corner where libmodsecurity
 * 3.0.9's scanner decides something unusual (default phase 1, quoted keys, escapes, ranges compared
 * as text, ...). Errors carry "file:line:" and leave the ruleset as it was. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "seclang.h"

#define CRS_RULES "/usr/share/modsecurity-crs/rules"
#define CRS_SETUP "/etc/modsecurity/crs/crs-setup.conf"

/* ---- helpers ---------------------------------------------------------------------------------- */

static const sl_rule *find_id(const sl_ruleset *rs, uint32_t id)
{
    for (size_t i = 0; i < rs->nrules; i++)
        if (rs->rules[i]->kind != SL_MARKER && rs->rules[i]->id == id) return rs->rules[i];
    return NULL;
}

static const sl_rule *find_marker(const sl_ruleset *rs, const char *name)
{
    for (size_t i = 0; i < rs->nrules; i++)
        if (rs->rules[i]->kind == SL_MARKER && strcmp(rs->rules[i]->marker, name) == 0) return rs->rules[i];
    return NULL;
}

static const char *value_of(const sl_rule *r, const char *name)
{
    const sl_action *a = sl_rule_action(r, name);
    assert_non_null(a);
    return a->value;
}

static size_t count_actions(const sl_rule *r, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nactions; i++)
        n += strcmp(r->actions[i].name, name) == 0;
    return n;
}

static int ends_with(const char *s, const char *tail)
{
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && strcmp(s + a - b, tail) == 0;
}

/* Parses text into a fresh ruleset that must load. */
static sl_ruleset *load(const char *text)
{
    char err[512];
    sl_ruleset *rs = sl_new();
    assert_non_null(rs);
    int rc = sl_add_text(rs, text, "t.conf", err, sizeof err);
    if (rc != 0) fail_msg("unexpected error: %s", err);
    return rs;
}

/* Text that must be refused; the message must start with "t.conf:<line>: " and contain `what`. */
static void refused(const char *text, int line, const char *what)
{
    char err[512], prefix[32];
    sl_ruleset *rs = sl_new();
    assert_int_equal(sl_add_text(rs, text, "t.conf", err, sizeof err), -1);
    snprintf(prefix, sizeof prefix, "t.conf:%d: ", line);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, what))
        fail_msg("text <<%s>> gave '%s', expected '%s...%s'", text, err, prefix, what);
    assert_int_equal(rs->nrules, 0);
    sl_free(rs);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* ---- the whole CRS ---------------------------------------------------------------------------- */

typedef struct {
    char *paths[128];
    size_t n;
} file_list;

/* The project's load order: settings, CRS setup, project overrides, the CRS rules, local rules. */
static int crs_files(file_list *fl)
{
    const char *src = getenv("PC_SOURCE_DIR");
    char buf[1024];
    glob_t g;
    struct stat st;
    if (!src || stat(CRS_SETUP, &st) != 0 || glob(CRS_RULES "/*.conf", 0, NULL, &g) != 0) return -1;
    fl->n = 0;
    snprintf(buf, sizeof buf, "%s/rules/waf/modsecurity.conf", src);
    fl->paths[fl->n++] = strdup(buf);
    fl->paths[fl->n++] = strdup(CRS_SETUP);
    snprintf(buf, sizeof buf, "%s/rules/waf/crs-overrides.conf", src);
    fl->paths[fl->n++] = strdup(buf);
    for (size_t i = 0; i < g.gl_pathc && fl->n < 127; i++) /* glob sorts */
        fl->paths[fl->n++] = strdup(g.gl_pathv[i]);
    snprintf(buf, sizeof buf, "%s/rules/waf/local.conf", src);
    fl->paths[fl->n++] = strdup(buf);
    globfree(&g);
    return 0;
}

static void free_files(file_list *fl)
{
    for (size_t i = 0; i < fl->n; i++)
        free(fl->paths[i]);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Independently of the reader: every `id:N` that starts or follows a separator in a line that is not
 * a comment (chain links carry none in these files), and every SecMarker line. */
static void scan_ids(const char *text, uint32_t *ids, size_t *nids, size_t cap, size_t *markers)
{
    const char *line = text;
    while (*line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        const char *p = line;
        while (p < line + len && (*p == ' ' || *p == '\t'))
            p++;
        if (p < line + len && *p != '#') {
            if (strncmp(p, "SecMarker", 9) == 0) (*markers)++;
            for (const char *q = p; q + 3 < line + len; q++) {
                if (strncmp(q, "id:", 3) != 0 || (q > line && !strchr("\" ,", q[-1]))) continue;
                char *end;
                unsigned long v = strtoul(q + 3, &end, 10);
                if (end > q + 3 && (*end == ',' || *end == '"' || *end == '\\') && *nids < cap)
                    ids[(*nids)++] = (uint32_t)v;
            }
        }
        if (!eol) break;
        line = eol + 1;
    }
}

static void test_crs_whole(void **state)
{
    (void)state;
    file_list fl;
    if (crs_files(&fl) != 0) {
        fail_msg("the CRS (Debian modsecurity-crs) or PC_SOURCE_DIR is missing");
        return;
    }
    sl_ruleset *rs = sl_new();
    char err[512];
    static uint32_t ids[8192];
    size_t nids = 0, markers = 0;
    for (size_t i = 0; i < fl.n; i++) {
        if (sl_add_file(rs, fl.paths[i], err, sizeof err) != 0) fail_msg("%s: %s", fl.paths[i], err);
        char *text = slurp(fl.paths[i]);
        scan_ids(text, ids, &nids, 8192, &markers);
        free(text);
    }
    assert_true(fl.n > 20);
    assert_int_equal(rs->nunsupported, 0);
    assert_int_equal(rs->rule_engine, 1);
    assert_int_equal(rs->request_body_access, 1);
    assert_int_equal(rs->argument_separator, '&');

    /* the ids at chain heads (SecRule and SecAction) are exactly the ids written in the files */
    qsort(ids, nids, sizeof ids[0], cmp_u32);
    size_t distinct = 0;
    for (size_t i = 0; i < nids; i++)
        if (i == 0 || ids[i] != ids[i - 1]) ids[distinct++] = ids[i];
    static uint32_t got[8192];
    size_t ngot = 0, nmarkers = 0, nlinks = 0, nsecrules = 0;
    for (size_t i = 0; i < rs->nrules; i++) {
        const sl_rule *r = rs->rules[i];
        if (r->kind == SL_MARKER) {
            nmarkers++;
            continue;
        }
        assert_true(r->id != 0);
        assert_true(r->phase >= 1 && r->phase <= 5);
        assert_true(ngot < 8192);
        got[ngot++] = r->id;
        nsecrules += r->kind == SL_RULE;
        for (const sl_rule *l = r->chain; l; l = l->chain) {
            assert_int_equal(l->id, 0);
            assert_int_equal(l->phase, r->phase);
            nlinks++;
        }
    }
    qsort(got, ngot, sizeof got[0], cmp_u32);
    assert_true(distinct > 500);
    assert_int_equal(ngot, distinct);
    for (size_t i = 0; i < ngot; i++)
        assert_int_equal(got[i], ids[i]);
    assert_int_equal(nmarkers, markers);
    assert_true(nmarkers > 20);
    assert_true(nlinks > 50);
    assert_true(nsecrules > 400);

    /* crs-overrides.conf: SecRuleRemoveById 901318 901321 */
    int seen = 0;
    for (size_t i = 0; i < rs->nremove; i++)
        seen += (rs->remove_lo[i] == 901318 && rs->remove_hi[i] == 901318) ||
                (rs->remove_lo[i] == 901321 && rs->remove_hi[i] == 901321);
    assert_int_equal(seen, 2);
    /* crs-setup.conf: SecDefaultAction "phase:1,log,auditlog,pass" and the same for phase 2 */
    for (int p = 1; p <= 2; p++) {
        assert_int_equal(rs->ndefault_actions[p], 3);
        assert_string_equal(rs->default_actions[p][2].name, "pass");
    }
    assert_int_equal(rs->ndefault_actions[3], 0);

    sl_free(rs);
    free_files(&fl);
}

static void test_crs_rules(void **state)
{
    (void)state;
    file_list fl;
    if (crs_files(&fl) != 0) {
        fail_msg("the CRS (Debian modsecurity-crs) or PC_SOURCE_DIR is missing");
        return;
    }
    sl_ruleset *rs = sl_new();
    char err[512];
    for (size_t i = 0; i < fl.n; i++)
        if (sl_add_file(rs, fl.paths[i], err, sizeof err) != 0) fail_msg("%s", err);

    /* 920420: a chain; capture and setvar in the head, a negated @within in the link */
    const sl_rule *r = find_id(rs, 920420);
    assert_non_null(r);
    assert_int_equal(r->kind, SL_RULE);
    assert_true(ends_with(r->file, "REQUEST-920-PROTOCOL-ENFORCEMENT.conf"));
    assert_int_equal(r->line, 938);
    assert_int_equal(r->phase, 2);
    assert_int_equal(r->nvars, 1);
    assert_string_equal(r->vars[0].collection, "REQUEST_HEADERS");
    assert_string_equal(r->vars[0].key, "Content-Type");
    assert_string_equal(r->op, "rx");
    assert_string_equal(r->op_param, "^[^;\\s]+");
    assert_false(r->op_negated);
    assert_non_null(sl_rule_action(r, "capture"));
    assert_null(value_of(r, "capture"));
    assert_non_null(sl_rule_action(r, "chain"));
    assert_string_equal(value_of(r, "setvar"), "tx.content_type=|%{tx.0}|");
    assert_string_equal(value_of(r, "msg"), "Request content type is not allowed by policy");
    assert_string_equal(value_of(r, "severity"), "CRITICAL");
    assert_int_equal(count_actions(r, "tag"), 8);
    assert_null(sl_rule_action(r, "t"));
    assert_int_equal(r->ntransforms, 1);
    assert_string_equal(r->transforms[0], "none");
    const sl_rule *l = r->chain;
    assert_non_null(l);
    assert_null(l->chain);
    assert_int_equal(l->id, 0);
    assert_int_equal(l->phase, 2);
    assert_int_equal(l->line, 958);
    assert_string_equal(l->vars[0].collection, "TX");
    assert_string_equal(l->vars[0].key, "content_type");
    assert_string_equal(l->op, "within");
    assert_true(l->op_negated);
    assert_string_equal(l->op_param, "%{tx.allowed_request_content_type}");
    assert_int_equal(l->ntransforms, 1);
    assert_string_equal(l->transforms[0], "lowercase");
    assert_int_equal(l->nactions, 1);
    assert_string_equal(l->actions[0].name, "setvar");
    assert_string_equal(l->actions[0].value, "tx.anomaly_score_pl1=+%{tx.critical_anomaly_score}");

    /* 942100: @detectSQLi over eight targets, four transformations */
    r = find_id(rs, 942100);
    assert_non_null(r);
    assert_string_equal(r->op, "detectsqli");
    assert_string_equal(r->op_param, "");
    assert_int_equal(r->nvars, 8);
    assert_true(r->vars[1].exclude);
    assert_string_equal(r->vars[1].collection, "REQUEST_COOKIES");
    assert_string_equal(r->vars[1].key, "/__utm/");
    assert_true(r->vars[1].key_regex);
    assert_string_equal(r->vars[3].key, "User-Agent");
    assert_false(r->vars[3].key_quoted);
    assert_string_equal(r->vars[7].collection, "XML");
    assert_string_equal(r->vars[7].key, "/*");
    assert_false(r->vars[7].key_regex);
    assert_int_equal(r->ntransforms, 4);
    assert_string_equal(r->transforms[0], "none");
    assert_string_equal(r->transforms[1], "utf8toUnicode");
    assert_string_equal(r->transforms[2], "urlDecodeUni");
    assert_string_equal(r->transforms[3], "removeNulls");
    assert_non_null(sl_rule_action(r, "multimatch"));
    assert_int_equal(count_actions(r, "setvar"), 2);

    /* 911100: !@within with a macro */
    r = find_id(rs, 911100);
    assert_non_null(r);
    assert_string_equal(r->vars[0].collection, "REQUEST_METHOD");
    assert_null(r->vars[0].key);
    assert_string_equal(r->op, "within");
    assert_true(r->op_negated);
    assert_string_equal(r->op_param, "%{tx.allowed_methods}");
    assert_non_null(sl_rule_action(r, "block"));

    /* 901001: &TX:crs_setup_version "@eq 0" ... deny,status:500 */
    r = find_id(rs, 901001);
    assert_non_null(r);
    assert_int_equal(r->phase, 1);
    assert_true(r->vars[0].count);
    assert_string_equal(r->vars[0].collection, "TX");
    assert_string_equal(r->vars[0].key, "crs_setup_version");
    assert_string_equal(r->op, "eq");
    assert_string_equal(r->op_param, "0");
    assert_non_null(sl_rule_action(r, "deny"));
    assert_string_equal(value_of(r, "status"), "500");

    /* a skipAfter rule and its marker, later in the same file */
    r = find_id(rs, 920280);
    assert_non_null(r);
    assert_string_equal(value_of(r, "skipafter"), "END-HOST-CHECK");
    const sl_rule *m = find_marker(rs, "END-HOST-CHECK");
    assert_non_null(m);
    assert_int_equal(m->line, 570);
    size_t ir = 0, im = 0;
    for (size_t i = 0; i < rs->nrules; i++) {
        if (rs->rules[i] == r) ir = i;
        if (rs->rules[i] == m) im = i;
    }
    assert_true(im > ir);
    r = find_id(rs, 920011);
    assert_non_null(r);
    assert_string_equal(value_of(r, "skipafter"), "END-REQUEST-920-PROTOCOL-ENFORCEMENT");
    assert_non_null(find_marker(rs, "END-REQUEST-920-PROTOCOL-ENFORCEMENT"));

    /* the project's own settings: a ctl action and the multi-line message kept as written */
    r = find_id(rs, 200000);
    assert_non_null(r);
    assert_string_equal(value_of(r, "ctl"), "requestBodyProcessor=XML");
    r = find_id(rs, 200003);
    assert_non_null(r);
    assert_true(strstr(value_of(r, "msg"), "validation: \\\n    PE %{REQBODY_PROCESSOR_ERROR}, \\\n") !=
                NULL);
    r = find_id(rs, 10000);
    assert_non_null(r);
    assert_int_equal(r->kind, SL_ACTION);
    assert_true(strncmp(value_of(r, "setvar"), "tx.allowed_request_content_type=|application/x-www", 50) ==
                0);

    sl_free(rs);
    free_files(&fl);
}

/* ---- small texts ------------------------------------------------------------------------------ */

static void test_continuation_and_lines(void **state)
{
    (void)state;
    sl_ruleset *rs = load("# a comment\n"
                          "SecRule ARGS \"@rx a\" \\\n"
                          "    \"id:1,\\\n"
                          "    phase:2,\\\n"
                          "    deny\"\n"
                          "\n"
                          "SecAction \"id:2,nolog,pass\"  SecMarker END\n"
                          "SecRule ARGS \"@rx b\"\n"
                          "    \"id:3\"\n");
    assert_int_equal(rs->nrules, 4);
    assert_int_equal(rs->rules[0]->line, 2);
    assert_int_equal(rs->rules[0]->phase, 2);
    assert_int_equal(rs->rules[0]->nactions, 3);
    assert_string_equal(rs->rules[0]->actions[2].name, "deny");
    assert_string_equal(rs->rules[0]->file, "t.conf");
    assert_int_equal(rs->rules[1]->kind, SL_ACTION);
    assert_int_equal(rs->rules[1]->line, 7);
    assert_int_equal(rs->rules[2]->kind, SL_MARKER);
    assert_string_equal(rs->rules[2]->marker, "END");
    assert_int_equal(rs->rules[2]->line, 7);
    /* a newline (no backslash) between the operator and quoted actions is accepted */
    assert_int_equal(rs->rules[3]->id, 3);
    assert_int_equal(rs->rules[3]->line, 8);
    sl_free(rs);

    /* a commented-out rule ending with a backslash comments out its continuation lines */
    rs = load("# SecRule ARGS \"@rx a\" \\\n"
              "    \"id:1,deny\"\n"
              "# other comment \\\n"
              "SecAction \"id:2,pass\"\n");
    assert_int_equal(rs->nrules, 1);
    assert_int_equal(rs->rules[0]->id, 2);
    assert_int_equal(rs->rules[0]->line, 4);
    sl_free(rs);

    /* inside a quoted operator a backslash-newline is kept as written */
    rs = load("SecRule ARGS \"@rx a\\\nb\" \"id:1\"\n"
              "SecRule ARGS \"@rx c\" \"id:2\"\n");
    assert_string_equal(rs->rules[0]->op_param, "a\\\nb");
    assert_int_equal(rs->rules[1]->line, 3);
    sl_free(rs);
}

static void test_quoting(void **state)
{
    (void)state;
    sl_ruleset *rs = load("SecRule ARGS \"@rx a\\\"b\\\\\" \"id:1,msg:'x, y',tag:'it\\'s',logdata:plain text,"
                          "setvar:'tx.score=+%{tx.critical_anomaly_score}',setvar:!tx.foo,"
                          "ctl:ruleRemoveTargetById=942100;ARGS:foo,id:'7',skipAfter:'END',phase:'2'\"\n"
                          "SecRule ARGS \"@rx 100%\\\"\" \"id:2\"\n");
    const sl_rule *r = rs->rules[0];
    assert_string_equal(r->op_param, "a\\\"b\\\\");
    assert_int_equal(r->id, 7); /* the last id given */
    assert_int_equal(r->phase, 2);
    assert_string_equal(value_of(r, "msg"), "x, y");
    assert_string_equal(value_of(r, "tag"), "it\\'s");
    assert_string_equal(value_of(r, "logdata"), "plain text");
    assert_string_equal(r->actions[4].value, "tx.score=+%{tx.critical_anomaly_score}");
    assert_string_equal(r->actions[5].value, "!tx.foo");
    assert_string_equal(value_of(r, "ctl"), "ruleRemoveTargetById=942100;ARGS:foo");
    assert_string_equal(value_of(r, "skipafter"), "END");
    /* `%"` does not end the operator (the scanner takes the character after % with it) */
    assert_string_equal(rs->rules[1]->op_param, "100%\\\"");
    sl_free(rs);

    /* `phase:'request'` is scanned as allow:request; unquoted it is phase 2 */
    rs = load(
        "SecRule ARGS \"@rx a\" \"id:1,phase:'request'\"\nSecRule ARGS \"@rx a\" \"id:2,phase:request\"\n");
    assert_int_equal(rs->rules[0]->phase, 1);
    assert_string_equal(value_of(rs->rules[0], "allow"), "request");
    assert_null(sl_rule_action(rs->rules[0], "phase"));
    assert_int_equal(rs->rules[1]->phase, 2);
    assert_null(sl_rule_action(rs->rules[1], "nosuch"));
    sl_free(rs);
}

static void test_variables(void **state)
{
    (void)state;
    sl_ruleset *rs = load("SecRule &TX:foo|!REQUEST_COOKIES:/__utm/|XML:/*|REQUEST_HEADERS:'User-Agent'|"
                          "ARGS:'/^a|b$/'|tx.bar|args_names,REQUEST_URI \"@eq 0\" \"id:1\"\n"
                          "SecRule \"ARGS|ARGS_NAMES\" \"@rx x\" \"id:2\"\n"
                          "SecRule ARGS:/a/b \"@rx x\" \"id:3\"\n");
    const sl_rule *r = rs->rules[0];
    assert_int_equal(r->nvars, 8);
    assert_true(r->vars[0].count && !r->vars[0].exclude);
    assert_string_equal(r->vars[0].collection, "TX");
    assert_string_equal(r->vars[0].key, "foo");
    assert_true(r->vars[1].exclude && !r->vars[1].count);
    assert_string_equal(r->vars[1].key, "/__utm/");
    assert_true(r->vars[1].key_regex);
    assert_string_equal(r->vars[2].collection, "XML");
    assert_string_equal(r->vars[2].key, "/*");
    assert_false(r->vars[2].key_regex);
    assert_string_equal(r->vars[3].key, "User-Agent");
    assert_true(r->vars[3].key_quoted);
    assert_false(r->vars[3].key_regex);
    assert_string_equal(r->vars[4].key, "/^a|b$/");
    assert_true(r->vars[4].key_regex);
    assert_string_equal(r->vars[5].collection, "TX");
    assert_string_equal(r->vars[5].key, "bar");
    assert_string_equal(r->vars[6].collection, "ARGS_NAMES");
    assert_null(r->vars[6].key);
    assert_string_equal(r->vars[7].collection, "REQUEST_URI");
    assert_int_equal(rs->rules[1]->nvars, 2);
    assert_string_equal(rs->rules[1]->vars[1].collection, "ARGS_NAMES");
    /* `/a/b` is longer as a plain key than as a regex */
    assert_string_equal(rs->rules[2]->vars[0].key, "/a/b");
    assert_false(rs->rules[2]->vars[0].key_regex);
    sl_free(rs);

    refused("SecRule !&ARGS \"@rx x\" \"id:1\"", 1, "variable");
    refused("SecRule REQUEST_URI:x \"@rx x\" \"id:1\"", 1, "variable");
    refused("SecRule NOSUCH \"@rx x\" \"id:1\"", 1, "NOSUCH");
}

static void test_operators(void **state)
{
    (void)state;
    sl_ruleset *rs = load("SecRule ARGS \"^foo$\" \"id:1\"\n"
                          "SecRule ARGS \"!^foo$\" \"id:2\"\n"
                          "SecRule ARGS \"@example\\.com\" \"id:3\"\n"
                          "SecRule ARGS \"@PM a b  c\" \"id:4\"\n"
                          "SecRule ARGS \"@detectSQLi foo\" \"id:5\"\n"
                          "SecRule ARGS \"  @streq x\" \"id:6\"\n"
                          "SecRule ARGS \" @streq x\" \"id:7\"\n"
                          "SecRule ARGS \"@unconditionalMatch\" \"id:8\"\n"
                          "SecRule ARGS @rx ^a  id:9\n");
    const char *const op[] = {"rx", "rx", "rx", "pm", "rx", "streq", "rx", "unconditionalmatch", "rx"};
    const char *const param[] = {
        "^foo$", "^foo$", "@example\\.com", "a b  c", "@detectSQLi foo", "x", " @streq x", "", "^a"};
    assert_int_equal(rs->nrules, 9);
    for (size_t i = 0; i < 9; i++) {
        assert_string_equal(rs->rules[i]->op, op[i]);
        assert_string_equal(rs->rules[i]->op_param, param[i]);
        assert_int_equal(rs->rules[i]->op_negated, i == 1);
    }
    /* no phase: 1, as libmodsecurity 3 (its request-headers phase) */
    assert_int_equal(rs->rules[0]->phase, 1);
    assert_string_equal(rs->rules[8]->actions[0].name, "id");
    sl_free(rs);

    refused("SecRule ARGS \"@streq \" \"id:1\"", 1, "parameter");
    refused("SecRule ARGS \"@rx\" \"id:1\"", 1, "parameter");
    refused("SecRule ARGS \"@rx a", 1, "unterminated");
    /* unquoted: one blank after the operator does not start an unquoted action, two do */
    refused("SecRule ARGS @rx ^a id:9", 1, "actions");
}

static void test_chains(void **state)
{
    (void)state;
    sl_ruleset *rs = load("SecRule ARGS \"@rx a\" \"id:1,phase:3,deny,chain\"\n"
                          "SecAction \"id:2,pass\"\n"
                          "SecMarker M\n"
                          "  SecRule ARGS_NAMES \"@rx b\" \"phase:1,chain,t:lowercase\"\n"
                          "    SecRule REQUEST_URI \"@rx c\"\n"
                          "\n"
                          "SecRule ARGS \"@rx d\" \"id:4\"\n");
    assert_int_equal(rs->nrules, 4);
    const sl_rule *r = rs->rules[0];
    assert_int_equal(r->id, 1);
    assert_non_null(r->chain);
    assert_int_equal(r->chain->phase, 3); /* the head's, not its own phase:1 */
    assert_int_equal(r->chain->id, 0);
    assert_int_equal(r->chain->line, 4);
    assert_non_null(r->chain->chain);
    assert_string_equal(r->chain->chain->vars[0].collection, "REQUEST_URI");
    assert_int_equal(r->chain->chain->nactions, 0);
    assert_int_equal(r->chain->chain->phase, 3);
    assert_null(r->chain->chain->chain);
    assert_int_equal(rs->rules[1]->kind, SL_ACTION);
    assert_int_equal(rs->rules[2]->kind, SL_MARKER);
    assert_int_equal(rs->rules[3]->id, 4);
    assert_null(rs->rules[3]->chain);
    sl_free(rs);

    refused("SecRule ARGS \"@rx a\" \"id:1,chain\"\nSecRule ARGS \"@rx b\" \"deny\"", 2, "Disruptive");
    refused("SecRule ARGS \"@rx a\" \"phase:2\"", 1, "must have an ID");
    refused("SecRule ARGS \"@rx a\" \"id:5\"\n\nSecRule ARGS \"@rx a\" \"id:5\"", 3, "duplicated");
    /* a rule without actions followed by another line: the next line is read as its action */
    refused("SecRule ARGS \"@rx a\" \"id:1,chain\"\nSecRule ARGS \"@rx b\"\nSecRule ARGS \"@rx c\" \"id:2\"",
            3, "action");
}

static void test_exclusions(void **state)
{
    (void)state;
    sl_ruleset *rs = load("SecRuleRemoveById 1 2-5  7\n"
                          "SecRuleRemoveByTag attack-sqli\n"
                          "SecRuleRemoveByMsg \"SQL Injection\"\n"
                          "SecRuleUpdateTargetById 942100 \"!ARGS:foo|!REQUEST_COOKIES:/^bar/\"\n"
                          "SecRuleUpdateTargetByTag 'attack-xss' !ARGS:pwd\n"
                          "SecRuleUpdateTargetByMsg \"Some message\" ARGS_NAMES\n"
                          "SecRuleUpdateActionById 920420 \"pass,t:lowercase,id:9,nolog\"\n"
                          "SecRuleUpdateActionById 920421 deny\n");
    assert_int_equal(rs->nremove, 3);
    assert_int_equal(rs->remove_lo[0], 1);
    assert_int_equal(rs->remove_hi[0], 1);
    assert_int_equal(rs->remove_lo[1], 2);
    assert_int_equal(rs->remove_hi[1], 5);
    assert_int_equal(rs->remove_lo[2], 7);
    assert_int_equal(rs->nremove_tags, 1);
    assert_string_equal(rs->remove_tags[0], "attack-sqli");
    assert_string_equal(rs->remove_msgs[0], "SQL Injection");
    assert_int_equal(rs->ntarget_updates, 3);
    const sl_target_update *u = &rs->target_updates[0];
    assert_int_equal(u->by, 0);
    assert_int_equal(u->id_lo, 942100);
    assert_int_equal(u->id_hi, 942100);
    assert_null(u->match);
    assert_int_equal(u->nvars, 2);
    assert_true(u->vars[0].exclude);
    assert_string_equal(u->vars[0].key, "foo");
    assert_true(u->vars[1].key_regex);
    assert_int_equal(rs->target_updates[1].by, 1);
    assert_string_equal(rs->target_updates[1].match, "attack-xss");
    assert_int_equal(rs->target_updates[2].by, 2);
    assert_string_equal(rs->target_updates[2].match, "Some message");
    assert_false(rs->target_updates[2].vars[0].exclude);
    assert_int_equal(rs->naction_updates, 2);
    const sl_action_update *a = &rs->action_updates[0];
    assert_int_equal(a->id, 920420);
    assert_int_equal(a->nactions, 2); /* id:9 is dropped, as libmodsecurity does */
    assert_string_equal(a->actions[0].name, "pass");
    assert_string_equal(a->actions[1].name, "nolog");
    assert_int_equal(a->ntransforms, 1);
    assert_string_equal(a->transforms[0], "lowercase");
    assert_int_equal(rs->action_updates[1].nactions, 1);
    assert_int_equal(rs->nunsupported, 0);
    sl_free(rs);

    /* a replacement target is recorded as unsupported */
    rs = load("\nSecRuleUpdateTargetById 1 ARGS:foo \"ARGS:bar\"\n");
    assert_int_equal(rs->ntarget_updates, 1);
    assert_int_equal(rs->nunsupported, 1);
    assert_string_equal(rs->unsupported[0], "t.conf:2: SecRuleUpdateTargetById replacement target");
    sl_free(rs);

    /* the ends of a range are compared as text by libmodsecurity: 9-10 is refused */
    refused("\nSecRuleRemoveById 9-10", 2, "Invalid range");
    refused("SecRuleRemoveById 1 x", 1, "Not a number");
    refused("SecRuleRemoveById \"1\"", 1, "SecRuleRemoveById");
    refused("SecRuleUpdateTargetById abc !ARGS:foo", 1, "valid rule id");
}

static void test_defaults_and_settings(void **state)
{
    (void)state;
    char err[512];
    sl_ruleset *rs = load("SecDefaultAction \"phase:2,log,auditlog,deny,status:403,t:lowercase\"\n"
                          "SecDefaultAction \"log,pass\"\n"
                          "SecRuleEngine DetectionOnly\n"
                          "SecRuleEngine On\n"
                          "SecRequestBodyAccess Off\n"
                          "SecArgumentSeparator ;\n"
                          "SecAuditEngine RelevantOnly\n"
                          "SecRequestBodyLimit 13107200\n"
                          "SecRuleScript /x.lua \"id:5\"\n"
                          "SecConnEngine Off\n");
    assert_int_equal(rs->ndefault_actions[2], 4);
    assert_string_equal(rs->default_actions[2][0].name, "log");
    assert_string_equal(rs->default_actions[2][3].name, "status");
    assert_string_equal(rs->default_actions[2][3].value, "403");
    assert_int_equal(rs->ndefault_transforms[2], 1);
    assert_int_equal(rs->ndefault_actions[1], 2); /* no phase: 1 */
    assert_int_equal(rs->rule_engine, 1);         /* the last of the call */
    assert_int_equal(rs->request_body_access, 0);
    assert_int_equal(rs->argument_separator, ';');
    assert_int_equal(rs->nunsupported, 1);
    assert_string_equal(rs->unsupported[0], "t.conf:9: SecRuleScript");
    assert_int_equal(rs->nrules, 0);
    /* a later call does not change what an earlier one set */
    assert_int_equal(
        sl_add_text(rs, "SecRuleEngine Off\nSecArgumentSeparator &\n", "u.conf", err, sizeof err), 0);
    assert_int_equal(rs->rule_engine, 1);
    assert_int_equal(rs->argument_separator, ';');
    /* directives that change what rules see are recorded, so that the fast path refuses the set */
    assert_int_equal(sl_add_text(rs, "SecArgumentsLimit 100\nSecUnicodeMapFile unicode.mapping 20127\n",
                                 "v.conf", err, sizeof err),
                     0);
    assert_int_equal(rs->nunsupported, 3);
    assert_string_equal(rs->unsupported[1], "v.conf:1: SecArgumentsLimit");
    assert_string_equal(rs->unsupported[2], "v.conf:2: SecUnicodeMapFile");
    sl_free(rs);

    refused("SecDefaultAction \"phase:2,deny\"\nSecDefaultAction \"phase:2,pass\"", 2, "once per phase");
    refused("SecDefaultAction \"phase:2,log\"", 1, "disruptive");
    refused("SecDefaultAction \"phase:2,deny,id:3\"", 1, "not suitable");
    refused("SecArgumentSeparator ;;", 1, "single character");
    refused("SecRuleEngine Maybe", 1, "SecRuleEngine");
    refused("SecConnEngine On", 1, "not supported");
}

static void test_errors(void **state)
{
    (void)state;
    refused("SecRule ARGS \"@rx a\" \"id:1\"\n\n  SecFooBar on\n", 3, "SecFooBar");
    refused("SecRule ARGS \"@rx a\" \"id:1,deny \"", 1, "action");
    refused("SecRule ARGS \"@rx a\" \"id:1,t:nonesuch\"", 1, "action");
    refused("SecRule ARGS \"@rx a\" \"id:1,nosuch\"", 1, "action");
    refused("SecRule ARGS \"@rx a\" \"id:1,sanitiseArg:x\"", 1, "not supported");
    refused("SecRule ARGS \"@rx a\" \"id:1,phase:6\"", 1, "Unknown phase");
    refused("SecRule ARGS \"@rx a\" \"id:01\"", 1, "valid rule id");
    refused("SecRule ARGS \"@rx a\" \"id:1,\\\n  status:'403'\"", 2, "number");
    refused("SecRule ARGS \"@rx a\" \"id:1,\n  deny\"", 1, "unterminated");
    refused("SecRule ARGS \"@rx a\" \"id:1,ctl:nosuch=1\"", 1, "ctl");
    refused("SecRule ARGS \"@rx a\" \"id:1,ver:3\"", 1, "quotes");
    refused("SecAction id:1", 1, "quotes");
    refused("SecServerSignature \"x\"", 1, "not supported");
    refused("SecRule ARGS \"@rx a\" \"id:1,setvar:'t/.a=1'\"", 1, "variable");
    refused("SecRule ARGS \"@rx a\" \"id:1,msg:'%{nosuch}'\"", 1, "macro");
    refused("SecRule ARGS \"@rx %{tx.a\" \"id:1\"", 1, "unterminated");
    refused("SecRule ARGS \"@rx %{}\" \"id:1\"", 1, "macro");
    refused("SecRule ARGS\"@rx a\" \"id:1\"", 1, "blank");
    refused("SecRule ARGS \"@rx a\" \"id:1,ctl:ruleRemoveById=%\"", 1, "ctl");
    refused("\"id:1\"", 1, "Invalid input");

    /* a failing call leaves the ruleset as it was */
    char err[512];
    sl_ruleset *rs = load("SecRule ARGS \"@rx a\" \"id:1,chain\"\nSecRule ARGS \"@rx b\" \"t:none\"\n");
    assert_int_equal(sl_add_text(rs,
                                 "SecRule ARGS \"@rx c\" \"id:2\"\nSecRuleRemoveById 3\nSecRuleEngine Off\n"
                                 "SecDefaultAction \"phase:3,deny\"\nSecRule ARGS \"@rx d\" \"id:1\"\n",
                                 "u.conf", err, sizeof err),
                     -1);
    assert_string_equal(err, "u.conf:5: Rule id: 1 is duplicated");
    assert_int_equal(rs->nrules, 1);
    assert_int_equal(rs->nremove, 0);
    assert_int_equal(rs->rule_engine, -1);
    assert_int_equal(rs->ndefault_actions[3], 0);
    /* a chain does not go on into the next call */
    assert_int_equal(sl_add_text(rs, "SecRule ARGS \"@rx e\" \"id:2\"\n", "v.conf", err, sizeof err), 0);
    assert_int_equal(rs->nrules, 2);
    assert_null(rs->rules[0]->chain->chain);
    sl_free(rs);

    rs = sl_new();
    assert_int_equal(sl_add_file(rs, "/nonexistent/x.conf", err, sizeof err), -1);
    assert_true(strncmp(err, "/nonexistent/x.conf:0: ", 23) == 0);
    sl_free(rs);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void test_include(void **state)
{
    (void)state;
    char dir[] = "/tmp/seclang-test-XXXXXX", p[512], err[512];
    assert_non_null(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/sub", dir);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/sub/b.conf", dir);
    write_file(p, "SecRule ARGS \"@rx b\" \"id:20\"\n");
    snprintf(p, sizeof p, "%s/sub/a.conf", dir);
    write_file(p, "SecRule ARGS \"@rx a\" \"id:10,chain\"\n");
    snprintf(p, sizeof p, "%s/loop.conf", dir);
    write_file(p, "SecAction \"id:40,pass\"\nInclude loop.conf\n");
    snprintf(p, sizeof p, "%s/missing.conf", dir);
    write_file(p, "\nInclude nosuch/*.conf\n");

    sl_ruleset *rs;
    snprintf(p, sizeof p, "%s/main.conf", dir);
    write_file(p, "Include sub/b.conf\n"
                  "Include \"sub/a*.conf\"\n"
                  "SecRule ARGS \"@rx link\" \"t:none\"\n"
                  "SecAction \"id:30,pass\"\n");
    rs = sl_new();
    if (sl_add_file(rs, p, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(rs->nrules, 3);
    assert_int_equal(rs->rules[0]->id, 20);
    assert_true(ends_with(rs->rules[0]->file, "/sub/b.conf"));
    assert_int_equal(rs->rules[1]->id, 10);
    assert_non_null(rs->rules[1]->chain); /* the chain goes on after the Include */
    assert_true(ends_with(rs->rules[1]->chain->file, "/main.conf"));
    assert_int_equal(rs->rules[1]->chain->line, 3);
    assert_int_equal(rs->rules[2]->id, 30);
    sl_free(rs);

    /* a glob over several files, in sorted order */
    snprintf(p, sizeof p, "%s/sub/a.conf", dir);
    write_file(p, "SecRule ARGS \"@rx a\" \"id:10\"\n");
    snprintf(p, sizeof p, "%s/main.conf", dir);
    write_file(p, "Include sub/*.conf\n");
    rs = sl_new();
    if (sl_add_file(rs, p, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(rs->nrules, 2);
    assert_int_equal(rs->rules[0]->id, 10);
    assert_int_equal(rs->rules[1]->id, 20);
    sl_free(rs);

    /* an Include loop ends at the depth limit with an error (and nothing kept) */
    rs = sl_new();
    snprintf(p, sizeof p, "%s/loop.conf", dir);
    assert_int_equal(sl_add_file(rs, p, err, sizeof err), -1);
    assert_non_null(strstr(err, "loop.conf:2: "));
    assert_non_null(strstr(err, "too deep"));
    assert_int_equal(rs->nrules, 0);
    snprintf(p, sizeof p, "%s/missing.conf", dir);
    assert_int_equal(sl_add_file(rs, p, err, sizeof err), -1);
    assert_non_null(strstr(err, "missing.conf:2: nosuch/*.conf: Not able to open file"));
    sl_free(rs);

    const char *names[] = {"sub/a.conf", "sub/b.conf", "sub", "main.conf", "loop.conf", "missing.conf"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        assert_int_equal(remove(p), 0);
    }
    assert_int_equal(rmdir(dir), 0);
}

/* Damaged copies of real rules (cut anywhere, bytes changed) must load or fail cleanly. */
static void test_hostile(void **state)
{
    (void)state;
    const char *base = "SecRule REQUEST_COOKIES|!REQUEST_COOKIES:/__utm/|XML:/* \"!@rx a\\\"%{tx.x}b\" \\\n"
                       "  \"id:1,phase:2,t:none,msg:'m, \\'q\\'',setvar:'tx.a=+%{tx.b}',chain\"\n"
                       "  SecRule &TX:y \"@eq 0\" \"t:lowercase\"\n"
                       "SecMarker \"END\"\nSecRuleRemoveById 1 2-3\n# SecRule x \\\n  y\n";
    size_t n = strlen(base);
    char *buf = malloc(n + 1), err[512];
    assert_non_null(buf);
    static const char subst[] = "\"'\\\n,|:%{}!&@ #x";
    unsigned seed = 12345;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(buf, base, n + 1);
        seed = seed * 1103515245u + 12345u;
        size_t cut = (seed >> 8) % (n + 1);
        buf[cut] = '\0';
        for (int k = 0; k < 3; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % (n + 1);
            if (at < cut) buf[at] = subst[(seed >> 20) % (sizeof subst - 1)];
        }
        sl_ruleset *rs = sl_new();
        int rc = sl_add_text(rs, buf, "h.conf", err, sizeof err);
        if (rc != 0) assert_true(strncmp(err, "h.conf:", 7) == 0);
        sl_free(rs);
    }
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crs_whole),
        cmocka_unit_test(test_crs_rules),
        cmocka_unit_test(test_continuation_and_lines),
        cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_variables),
        cmocka_unit_test(test_operators),
        cmocka_unit_test(test_chains),
        cmocka_unit_test(test_exclusions),
        cmocka_unit_test(test_defaults_and_settings),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_include),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
