/* The fast path's shortcuts that decide without running the real thing, checked against the real
 * thing:
 *   - the trigger bytes of each transformation (waf_transform_trigger_masks): a value none of whose
 *     bytes triggers t is one waf_transform_identity(t) calls unchanged;
 *   - libinjection's XSS detector finds nothing in a value without '<' and '=' (the fast path then
 *     skips the call), asked of the library itself on adversarial values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "waf_body.h"
#include "waf_transform.h"

int libinjection_xss(const char *s, size_t slen);

static uint64_t masks[256];

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int triggers(waf_transform_id t, const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (masks[s[i]] & ((uint64_t)1 << t)) return 1;
    return 0;
}

/* The claim, on one value: no trigger byte, so identity must say unchanged. */
static void check(waf_transform_id t, const unsigned char *s, size_t len, long *decided)
{
    if (len == 0 || triggers(t, s, len)) return;
    (*decided)++;
    if (!waf_transform_identity(t, (const char *)s, len))
        fail_msg("t:%s: %zu-byte value without trigger bytes is changed (first byte 0x%02x)",
                 waf_transform_name(t), len, s[0]);
}

static void test_trigger_masks(void **state)
{
    (void)state;
    waf_transform_trigger_masks(masks);
    for (int ti = 0; ti < WT_COUNT; ti++) {
        waf_transform_id t = (waf_transform_id)ti;
        long decided = 0;
        unsigned char s[64];
        /* every value of one and two bytes */
        for (unsigned a = 0; a < 256; a++) {
            s[0] = (unsigned char)a;
            check(t, s, 1, &decided);
            for (unsigned b = 0; b < 256; b++) {
                s[1] = (unsigned char)b;
                check(t, s, 2, &decided);
            }
        }
        /* longer values drawn from this transformation's non-trigger bytes (where context, such as
         * pairs or the first and last byte, could matter) */
        unsigned char quiet[256];
        size_t nq = 0;
        for (unsigned c = 0; c < 256; c++)
            if (!(masks[c] & ((uint64_t)1 << t))) quiet[nq++] = (unsigned char)c;
        for (int i = 0; nq && i < 20000; i++) {
            size_t len = 3 + rng() % 60;
            for (size_t k = 0; k < len; k++)
                s[k] = quiet[rng() % nq];
            check(t, s, len, &decided);
        }
        print_message("t:%-20s %3zu non-trigger bytes, %ld values decided by them\n", waf_transform_name(t),
                      nq, decided);
    }
    /* the masks decide what they should for plain text (the shortcut is only worth it then) */
    const char *plain = "please call me back after 2 pm on monday";
    uint64_t may = 0;
    for (const char *p = plain; *p; p++)
        may |= masks[(unsigned char)*p];
    waf_transform_id unchanged[] = {WT_NONE,          WT_LOWERCASE,    WT_URLDECODEUNI, WT_HTMLENTITYDECODE,
                                    WT_JSDECODE,      WT_CSSDECODE,    WT_REMOVENULLS,  WT_REPLACECOMMENTS,
                                    WT_NORMALISEPATH, WT_UTF8TOUNICODE};
    for (size_t i = 0; i < sizeof unchanged / sizeof *unchanged; i++)
        assert_false(may & ((uint64_t)1 << unchanged[i]));
    waf_transform_id changed[] = {WT_UPPERCASE, WT_REMOVEWHITESPACE, WT_LENGTH, WT_MD5, WT_BASE64DECODE};
    for (size_t i = 0; i < sizeof changed / sizeof *changed; i++)
        assert_true(may & ((uint64_t)1 << changed[i]));
}

static void test_xss_shortcut(void **state)
{
    (void)state;
    /* Positive controls: the library is there and finds these, each needing '<' or '='. */
    const char *attacks[] = {"<script>alert(1)</script>",        "x onerror=alert(1)",
                             "\" onmouseover=alert(1) x=\"",     "<img src=x onerror=alert(1)>",
                             "' style=x:expression(alert(1)) '", "<!DOCTYPE html>",
                             "x href=javascript:alert(1)"};
    for (size_t i = 0; i < sizeof attacks / sizeof *attacks; i++)
        assert_true(libinjection_xss(attacks[i], strlen(attacks[i])));
    /* The same, and near misses, without '<' and '=': nothing. */
    const char *quiet[] = {"x onerror alert(1)",
                           "\" onmouseover alert(1) x \"",
                           "javascript:alert(1)",
                           "' onfocus autofocus '",
                           "`onerror`",
                           "src javascript:alert(1)",
                           "style expression(alert(1))",
                           "/ onload / > onerror",
                           "!DOCTYPE html>",
                           "?import namespace>",
                           "\"> onerror \"",
                           "onclick"};
    for (size_t i = 0; i < sizeof quiet / sizeof *quiet; i++)
        assert_false(libinjection_xss(quiet[i], strlen(quiet[i])));
    assert_false(libinjection_xss("x\0onerror alert(1)", 18));
    /* Random values over the bytes the tokenizer reacts to, and words of dangerous attributes,
     * tags and URLs, '<' and '=' excepted. */
    static const char *const words[] = {
        "on",    "onerror",   "onload", "style",  "src",        "href",     "script",     "javascript:",
        "data:", "vbscript:", "xmlns",  "action", "formaction", "!DOCTYPE", "!--",        "[if",
        "xml",   "IMPORT",    "ENTITY", "svg",    "iframe",     "alert(1)", "expression("};
    static const char bytes[] = " \t\n\v\f\r\"'`>/!?%&#;:()[]{}\\xyzAB09";
    char s[128];
    long n = 0;
    for (int i = 0; i < 300000; i++) {
        size_t len = 0, target = rng() % 96;
        while (len < target) {
            if (rng() % 3 == 0) {
                const char *w = words[rng() % (sizeof words / sizeof *words)];
                size_t wl = strlen(w);
                if (len + wl > sizeof s) break;
                memcpy(s + len, w, wl);
                len += wl;
            } else {
                s[len++] = (rng() % 16 == 0) ? '\0' : bytes[rng() % (sizeof bytes - 1)];
            }
        }
        if (memchr(s, '<', len) || memchr(s, '=', len)) continue;
        n++;
        if (libinjection_xss(s, len))
            fail_msg("libinjection_xss found XSS without '<' or '=': %.*s", (int)len, s);
    }
    assert_true(n > 200000);
}

/* waf_is_text and waf_is_utf8 pass plain ASCII eight bytes at a time: one byte of every value, at
 * every position of both words, against the byte-by-byte answer. */
static void test_text_words(void **state)
{
    (void)state;
    for (size_t at = 0; at < 19; at++) {
        for (unsigned c = 0; c < 256; c++) {
            uint8_t v[19];
            memset(v, 'a', sizeof v);
            v[at] = (uint8_t)c;
            int control = (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f;
            /* a lone byte from 0x80 is never UTF-8 */
            if (waf_is_text(v, sizeof v) != (c < 0x80 && !control))
                fail_msg("waf_is_text: byte 0x%02x at %zu", c, at);
            if (waf_is_utf8(v, sizeof v) != (c < 0x80)) fail_msg("waf_is_utf8: byte 0x%02x at %zu", c, at);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trigger_masks),
        cmocka_unit_test(test_xss_shortcut),
        cmocka_unit_test(test_text_words),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
