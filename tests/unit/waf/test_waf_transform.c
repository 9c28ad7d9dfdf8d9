/* SecLang transformations: every output of waf_transform_apply is checked against libmodsecurity's
 * own transformation of the same value. For each transformation T a rule set holds
 *     SecRule REQUEST_HEADERS:x-in "!@streq %{REQUEST_HEADERS.x-out}" "...,deny,t:none,t:T"
 * and a transaction carries the input in x-in and our output in x-out (both with explicit lengths,
 * so NUL bytes survive): libmodsecurity denies exactly when its T(x-in) differs from x-out. Negative
 * controls (a deliberately wrong x-out) prove that a difference is caught. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <modsecurity/intervention.h>
#include <modsecurity/modsecurity.h>
#include <modsecurity/rules_set.h>
#include <modsecurity/transaction.h>

#include "waf_transform.h"

/* The transformations the OWASP CRS applies to request arguments: no fallback is tolerated. */
static int crs_used(waf_transform_id t)
{
    switch (t) {
    case WT_NONE:
    case WT_LOWERCASE:
    case WT_URLDECODE:
    case WT_URLDECODEUNI:
    case WT_HTMLENTITYDECODE:
    case WT_JSDECODE:
    case WT_CSSDECODE:
    case WT_REMOVENULLS:
    case WT_REPLACENULLS:
    case WT_REMOVEWHITESPACE:
    case WT_COMPRESSWHITESPACE:
    case WT_CMDLINE:
    case WT_REPLACECOMMENTS:
    case WT_REMOVECOMMENTS:
    case WT_NORMALISEPATH:
    case WT_NORMALISEPATHWIN:
    case WT_UTF8TOUNICODE:
    case WT_LENGTH:
    case WT_HEXENCODE:
    case WT_SHA1:
    case WT_BASE64DECODE:
        return 1;
    default:
        return 0;
    }
}

static ModSecurity *msc;
static RulesSet *rules[WT_COUNT];

static RulesSet *rules_for(const char *spelling)
{
    char conf[512];
    const char *err = NULL;
    snprintf(conf, sizeof conf,
             "SecRuleEngine On\n"
             "SecRule REQUEST_HEADERS:x-in \"!@streq %%{REQUEST_HEADERS.x-out}\" "
             "\"id:1,phase:1,deny,status:403,log,t:none,t:%s\"\n",
             spelling);
    RulesSet *r = msc_create_rules_set();
    if (msc_rules_add(r, conf, &err) < 0) {
        print_error("t:%s rejected: %s\n", spelling, err ? err : "?");
        free((void *)err);
        msc_rules_cleanup(r);
        return NULL;
    }
    return r;
}

static int group_setup(void **state)
{
    (void)state;
    msc = msc_init();
    if (!msc) return -1;
    for (int t = 0; t < WT_COUNT; t++)
        if (!(rules[t] = rules_for(waf_transform_name(t)))) return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int t = 0; t < WT_COUNT; t++)
        if (rules[t]) msc_rules_cleanup(rules[t]);
    msc_cleanup(msc);
    return 0;
}

/* 1 when libmodsecurity's T(in) equals expect, 0 when it denies the request (they differ). */
static int lib_agrees(RulesSet *r, const void *in, size_t len, const void *expect, size_t explen)
{
    Transaction *tx = msc_new_transaction(msc, r, NULL);
    assert_non_null(tx);
    msc_process_connection(tx, "192.0.2.1", 40000, "192.0.2.2", 443);
    msc_process_uri(tx, "/", "GET", "1.1");
    msc_add_n_request_header(tx, (const unsigned char *)"x-in", 4, in, len);
    msc_add_n_request_header(tx, (const unsigned char *)"x-out", 5, expect, explen);
    msc_process_request_headers(tx);
    ModSecurityIntervention it = {200, 0, NULL, NULL, 0};
    int denied = msc_intervention(tx, &it);
    free(it.url);
    free(it.log);
    msc_transaction_cleanup(tx);
    if (denied) assert_int_equal(it.status, 403);
    return !denied;
}

/* ---- inputs ---- */

typedef struct {
    const char *s;
    size_t n;
} bytes;

#define B(lit)                                                                                               \
    {                                                                                                        \
        lit, sizeof(lit) - 1                                                                                 \
    }

static const bytes tricky[] = {
    /* generic */
    B(""),
    B("a"),
    B("ABCxyz"),
    B("MiXeD Case 123"),
    B("\xc0\xc1\xd0\xe9\xff\x80\x7f"),
    B("\xc9\xe9\xdf"),
    B("\0"),
    B("a\0"),
    B("\0a\0b\0"),
    B("\0\0"),
    B("a\0b"),
    B("AB\0cd"),
    /* url encodings */
    B("%"),
    B("%4"),
    B("%41"),
    B("%4g"),
    B("%%41"),
    B("a+b"),
    B("+"),
    B("%u"),
    B("%U"),
    B("%u4"),
    B("%u41"),
    B("%u414"),
    B("%u4142"),
    B("%U4142"),
    B("%uff21"),
    B("%uFF41"),
    B("%uff5f"),
    B("%uff00"),
    B("%uff5e"),
    B("%uFf3f"),
    B("%u00"),
    B("%u0041x"),
    B("%u%41"),
    B("%uzz41"),
    B("%u41%41"),
    B("%00"),
    B("a%00b"),
    B("%2"),
    B("%G1"),
    B("+%2B+"),
    B("100%"),
    B("%u123%41"),
    B("%ff%FE"),
    B("%u12345"),
    B("%u0000"),
    B("%%u0041"),
    B("%u004"),
    B("x%u00410"),
    B("%c3%a9"),
    B("%e2%82%ac%uff0e"),
    /* html entities */
    B("&"),
    B("&amp"),
    B("&amp;"),
    B("&AMP;"),
    B("&AmP;x"),
    B("&lt;&gt;&quot;&nbsp;"),
    B("&nbsp"),
    B("&#"),
    B("&#;"),
    B("&#x"),
    B("&#x;"),
    B("&#X41;"),
    B("&#65"),
    B("&#65;b"),
    B("&#x41"),
    B("&#x4g"),
    B("&#0;"),
    B("&#256;"),
    B("&#99999999999999999999;"),
    B("&#9223372036854775807;"),
    B("&#9223372036854775808;"),
    B("&#xffffffffffffffffff;"),
    B("&#x7fffffffffffff41;"),
    B("&foo;"),
    B("&foo"),
    B("&&amp;"),
    B("a&"),
    B("&#x00"),
    B("&am p;"),
    B("&ampx;"),
    B("&lt"),
    B("&#-1;"),
    B("&#+1;"),
    B("&;"),
    B("& "),
    B("&\xe9;"),
    B("&#x41;&#x42"),
    B("&quot&quot;"),
    B("&#xg"),
    B("&#xX41"),
    B("&#65&#66;"),
    B("&amp;lt;"),
    /* javascript escapes */
    B("\\"),
    B("\\u"),
    B("\\u004"),
    B("\\u0041"),
    B("\\uff21"),
    B("\\uFF5e"),
    B("\\U0041"),
    B("\\x4"),
    B("\\x41"),
    B("\\X41"),
    B("\\0"),
    B("\\7"),
    B("\\8"),
    B("\\12"),
    B("\\123"),
    B("\\477"),
    B("\\400"),
    B("\\1234"),
    B("\\a\\b\\f\\n\\r\\t\\v\\'\\\"\\\\\\?"),
    B("\\z"),
    B("a\\"),
    B("\\\\"),
    B("\\u00410"),
    B("\\x4g"),
    B("\\u12g4"),
    B("\\\0"),
    B("\\377\\378"),
    B("\\0000"),
    /* css escapes */
    B("\\\n"),
    B("\\\na"),
    B("\\41"),
    B("\\41 b"),
    B("\\41\tb"),
    B("\\41  b"),
    B("\\4"),
    B("\\004"),
    B("\\0041"),
    B("\\00041"),
    B("\\000041"),
    B("\\0000041"),
    B("\\ff21"),
    B("\\0ff21"),
    B("\\00ff21"),
    B("\\1ff21"),
    B("\\fffff"),
    B("\\00 x"),
    B("a\\0b"),
    B("\\g"),
    B("\\41\r\nb"),
    B("\\FF3F"),
    B("\\ff5f"),
    B("\\ff00"),
    B("\\0ff00"),
    B("\\41\x0b"),
    B("\\e9\xa0"),
    B("x\\"),
    /* whitespace */
    B(" \t\n\v\f\r"),
    B("  a  b  "),
    B("\xa0\xc2\xa0"),
    B("a\xa0 b"),
    B("\x85"),
    B("\x1c\x1d\x1e\x1f"),
    B(" "),
    B("a \t b"),
    B("\t"),
    B(" a"),
    B("a "),
    B("\xa0"
      "a\xa0"),
    B("\r\n"),
    /* command lines */
    B("C:\\WINDOWS\\system32\\CMD.exe"),
    B("cat  /etc/passwd"),
    B("a , ; b"),
    B("echo (a)"),
    B(" ("),
    B(" /"),
    B("\"'^\\"),
    B("a\t\r\nb"),
    B("ls\x80\xC9"),
    B("  ,  /"),
    B("w\"h\"o'a'm^i"),
    B("a ^ /b"),
    B("( /"),
    /* comments */
    B("/*"),
    B("/**/"),
    B("/*x*/"),
    B("/*x*/y"),
    B("a/*b*/c/*d"),
    B("--"),
    B("a--b"),
    B("#x"),
    B("a#"),
    B("<!--"),
    B("<!-- x -->y"),
    B("-->"),
    B("*/"),
    B("/*/"),
    B("/*x*//*y*/"),
    B("a<!-b"),
    B("-"),
    B("a-"),
    B("/*x-->y"),
    B("<!--x*/z"),
    B("<!--x-->"),
    B("/*x*/"),
    B("x/*"),
    B("1/**/UNION/**/SELECT"),
    B("/*!50000select*/"),
    B("a/*b*/-"),
    B("<!---->-"),
    B("<!-->"),
    /* paths */
    B("/"),
    B("//"),
    B("."),
    B(".."),
    B("./"),
    B("../"),
    B("/.."),
    B("/../"),
    B("/./"),
    B("a/./b"),
    B("a/../b"),
    B("a/b/../../.."),
    B("/a/b/../../../c"),
    B("../../etc/passwd"),
    B("a//b///c"),
    B("a/b/"),
    B("a/b/."),
    B("a/b/.."),
    B("/a/.."),
    B("x/../.."),
    B("\\a\\..\\b"),
    B("c:\\windows\\..\\x"),
    B("..\\..\\"),
    B("a\\\\b"),
    B(".\\a"),
    B("a\\"),
    B("..."),
    B("/.../"),
    B("a/.b/..c"),
    B(".a"),
    B("a."),
    B("/a/b/c/./../../g"),
    B("mid/content=5/../6"),
    B("/./.."),
    B("./.."),
    B("../a/../b"),
    B("a/../../b"),
    B("/a/./"),
    B("a/.."),
    B("./a/./b/."),
    B("//a//../b"),
    B("\\..\\"),
    B("/\\"),
    B("\\/"),
    B(".\\.\\"),
    B("/.\\"),
    /* utf-8 */
    B("\xc3\xa9"),
    B("\xc3"),
    B("\xc3x"),
    B("\xe2\x82\xac"),
    B("\xe2\x82"),
    B("\xe2"),
    B("\xf0\x9f\x98\x80"),
    B("\xf0\x9f\x98"),
    B("\xf0"),
    B("\xc0\xaf"),
    B("\xc1\xbf"),
    B("\xc0\x80"),
    B("\xe0\x80\xaf"),
    B("\xf0\x80\x80\xaf"),
    B("\xed\xa0\x80"),
    B("\xed\xbf\xbf"),
    B("\xf4\x90\x80\x80"),
    B("\xf5\x80\x80\x80"),
    B("\xf7\xbf\xbf\xbf"),
    B("\xf5"),
    B("\xf8\x88\x80\x80\x80"),
    B("\xff\xfe"),
    B("\x80\xbf"),
    B("a\0\xc3\xa9"),
    B("\xc3\0"),
    B("\xf0\x8d\xa0\x80"),
    B("\xef\xbc\xa1"),
    B("\xc2\xa0"),
    B("\xdf\xbf"),
    B("\xe0\xa0\x80"),
    B("\xf0\x90\x80\x80"),
    B("\xf4\x8f\xbf\xbf"),
    B("\0\xc3"),
    B("\xc3\xc3\xa9"),
    /* base64 */
    B("QUJD"),
    B("QUI="),
    B("QQ=="),
    B("QUI"),
    B("Q"),
    B("QQ="),
    B("Q==="),
    B("===="),
    B("="),
    B("QU JD"),
    B("QUJD "),
    B(" QUJD"),
    B("QU\r\nJD"),
    B("QU\nJD"),
    B("QU\rJD"),
    B("QUJD=QUJD"),
    B("QUJ-"),
    B("YWJj ZGVm"),
    B("YW\0Jj"),
    B("9"),
    B("Q9"),
    B("Q=9"),
    B("QQ==QQ=="),
    B("Q=Q"),
    B("QU=\n"),
    B("QUJD\r"),
    B("*QUJD*"),
    B("QUJDRA"),
    B("QUJDRA=="),
    B("QUJDRA=9"),
    B("QUJD \r\n"),
    B("Q\tU\tJ\tD"),
    B("Q=="),
    B("QQ=\n="),
    B("QUJD\xff"),
    B("QUJ9"),
    B("QUJDR9"),
    B("QUJDRQ9"),
    B("QUJDR=Q"),
    B("QUJDRQ=Q"),
    /* hexadecimal */
    B("41"),
    B("414"),
    B("4g"),
    B("zz"),
    B("0x41"),
    B("0X4142z"),
    B("0x4"),
    B("0x"),
    B("x0x41"),
    B("00x41"),
    B("0x41424"),
    B("a0x41b"),
    B("0x00"),
    B("0x4100x42"),
    B("SELECT 0x61646d696e"),
    B("0xgg"),
    B("0x41\0b"),
    B("ab"),
    B("0x410"),
    B("0x4142"),
    B("0x41 "),
    B("00"),
    B("0x0x41"),
    /* ansi c escapes */
    B("\\x4"),
    B("\\X41"),
    B("\\x41"),
    B("\\777"),
    B("\\08"),
    B("\\?"),
    B("\\q"),
    B("\\xg1"),
    B("\\x4 "),
    B("\\18"),
    B("\\4"),
    B("\\\\x41"),
    /* url encoding and parity */
    B("a b*c~-_.!"),
    B("\0\xff"),
    B("\x01\x02\x03\x7e\x7f\x80\x81\xfe"),
};

/* Deterministic generator (xorshift64*) and alphabets rich in what the decoders look for. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static const char *const alphabets[] = {
    "%uUxX0123456789aAfFgG+&#;\\/*-<!>.# \t\r\n\v\f,'\"^()=9lqtmpbsoQ",
    "ABCDEFabcdef0123456789xX+/= \r\n9QUJD",
    "/\\.a ",
    "0xX1f9aG",
    "\\0123u4x7f8 \n",
    "&#xX;0123456789abcdefltgampquotnbsp",
    "/*-<!>#a",
    "%uUfF0123456789+",
};

static size_t random_input(unsigned char *buf, size_t cap, unsigned round)
{
    const char *al = alphabets[rnd() % (sizeof alphabets / sizeof alphabets[0])];
    size_t al_len = strlen(al);
    size_t len = rnd() % (round % 10 == 0 ? 160 : 28);
    if (len > cap) len = cap;
    for (size_t i = 0; i < len; i++) {
        unsigned r = rnd() % 10;
        if (r < 8)
            buf[i] = (unsigned char)al[rnd() % al_len];
        else if (r < 9)
            buf[i] = (unsigned char)(rnd() % 3 == 0 ? 0 : 0x80 + rnd() % 0x80);
        else
            buf[i] = (unsigned char)(rnd() % 256);
    }
    return len;
}

#define RANDOM_ROUNDS 3000

static long total_comparisons, total_controls;

typedef struct {
    long compared, fallback, identity, controls;
} tally;

static void check_one(waf_transform_id t, const unsigned char *in, size_t len, tally *tl)
{
    size_t cap = waf_transform_max_out(t, len);
    unsigned char *out = malloc(cap + 1 + 8);
    assert_non_null(out);
    memset(out, 0xA5, cap + 1 + 8);
    size_t n = waf_transform_apply(t, (const char *)in, len, (char *)out);
    for (size_t z = cap + 1; z < cap + 1 + 8; z++)
        assert_int_equal(out[z], 0xA5);
    if (n == (size_t)-1) {
        tl->fallback++;
        free(out);
        return;
    }
    assert_true(n <= cap);
    assert_int_equal(out[n], 0);
    if (!lib_agrees(rules[t], in, len, out, n)) {
        char shown[512];
        size_t k = 0;
        for (size_t i = 0; i < len && k + 5 < sizeof shown; i++)
            k += (size_t)snprintf(shown + k, sizeof shown - k,
                                  in[i] >= 0x20 && in[i] < 0x7f ? "%c" : "\\x%02x", in[i]);
        fail_msg("t:%s differs from libmodsecurity on \"%s\" (%zu bytes, our output %zu bytes)",
                 waf_transform_name(t), shown, len, n);
    }
    tl->compared++;
    total_comparisons++;

    if (waf_transform_identity(t, (const char *)in, len)) {
        tl->identity++;
        if (n != len || (len && memcmp(out, in, len) != 0))
            fail_msg("t:%s identity claimed wrongly (%zu bytes in)", waf_transform_name(t), len);
    }

    /* Negative control, now and then: a wrong expected value must be caught. */
    if ((tl->compared % 37) == 1) {
        out[n] = 'Z';
        assert_false(lib_agrees(rules[t], in, len, out, n + 1));
        if (n > 0) {
            assert_false(lib_agrees(rules[t], in, len, out, n - 1));
            out[n - 1] ^= 0x01;
            assert_false(lib_agrees(rules[t], in, len, out, n));
        }
        tl->controls++;
        total_controls++;
    }
    free(out);
}

static void test_transformation(void **state)
{
    waf_transform_id t = *(const waf_transform_id *)*state;
    tally tl = {0, 0, 0, 0};
    unsigned char buf[256];

    for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++)
        check_one(t, (const unsigned char *)tricky[i].s, tricky[i].n, &tl);

    /* A few long values: digests over several blocks, decoders far from the start. */
    size_t biglen = 5000;
    unsigned char *big = malloc(biglen);
    assert_non_null(big);
    for (int k = 0; k < 4; k++) {
        for (size_t i = 0; i < biglen; i++)
            big[i] = (unsigned char)alphabets[k][(i * 7 + (size_t)k) % strlen(alphabets[k])];
        check_one(t, big, biglen - (size_t)k * 37, &tl);
    }
    free(big);

    rng_state = 0x9E3779B97F4A7C15ull ^ ((uint64_t)t * 0x100000001B3ull);
    for (unsigned r = 0; r < RANDOM_ROUNDS; r++) {
        size_t len = random_input(buf, sizeof buf, r);
        check_one(t, buf, len, &tl);
    }

    print_message("t:%-20s compared %ld, fell back %ld, identity %ld, wrong values caught %ld\n",
                  waf_transform_name(t), tl.compared, tl.fallback, tl.identity, tl.controls);
    long all = tl.compared + tl.fallback;
    if (crs_used(t))
        assert_int_equal(tl.fallback, 0);
    else
        assert_true(tl.fallback * 20 <= all);
    assert_true(tl.controls > 0);
}

/* The harness itself: NUL bytes reach both sides intact, and any difference is a denial. */
static void test_harness_catches_differences(void **state)
{
    (void)state;
    RulesSet *none = rules[WT_NONE];
    assert_true(lib_agrees(none, "a\0b", 3, "a\0b", 3));
    assert_false(lib_agrees(none, "a\0b", 3, "a\0c", 3));
    assert_false(lib_agrees(none, "a\0b", 3, "a", 1));
    assert_false(lib_agrees(none, "a", 1, "a\0", 2));
    assert_true(lib_agrees(none, "", 0, "", 0));
    assert_false(lib_agrees(none, "", 0, "x", 1));
    assert_false(lib_agrees(none, "x", 1, "", 0));
    assert_true(lib_agrees(rules[WT_LOWERCASE], "AbC", 3, "abc", 3));
    assert_false(lib_agrees(rules[WT_LOWERCASE], "AbC", 3, "AbC", 3));
    assert_true(lib_agrees(rules[WT_REMOVENULLS], "a\0b", 3, "ab", 2));
    assert_true(lib_agrees(rules[WT_REPLACENULLS], "a\0b", 3, "a b", 3));
    assert_true(lib_agrees(rules[WT_URLDECODEUNI], "%u0041%41+", 10, "AA ", 3));
    assert_true(lib_agrees(rules[WT_LENGTH], "a\0b", 3, "3", 1));
}

/* Every spelling SecLang accepts, in any case; nothing else. */
static void test_lookup(void **state)
{
    (void)state;
    for (int t = 0; t < WT_COUNT; t++) {
        char up[64], low[64];
        size_t l = strlen(waf_transform_name(t));
        for (size_t i = 0; i <= l; i++) {
            char c = waf_transform_name(t)[i];
            up[i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
            low[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        assert_int_equal(waf_transform_lookup(waf_transform_name(t)), t);
        assert_int_equal(waf_transform_lookup(up), t);
        assert_int_equal(waf_transform_lookup(low), t);
        /* libmodsecurity takes the mangled spelling too, and applies the same transformation */
        RulesSet *r = rules_for(up);
        assert_non_null(r);
        static const char sample[] = "A%u0041&amp;\\x41 /*c*/ ../b\0\xc3\xa9 0x41";
        char out[512];
        size_t n = waf_transform_apply((waf_transform_id)t, sample, sizeof sample - 1, out);
        assert_true(n != (size_t)-1);
        assert_true(lib_agrees(r, sample, sizeof sample - 1, out, n));
        msc_rules_cleanup(r);
    }
    assert_int_equal(waf_transform_lookup("normalizePath"), WT_NORMALISEPATH);
    assert_int_equal(waf_transform_lookup("NORMALIZEPATHWIN"), WT_NORMALISEPATHWIN);
    assert_int_equal(waf_transform_lookup("normalisepathwin"), WT_NORMALISEPATHWIN);
    RulesSet *r = rules_for("normalizePathWin");
    assert_non_null(r);
    msc_rules_cleanup(r);
    assert_int_equal(waf_transform_lookup(NULL), WT_UNKNOWN);
    assert_int_equal(waf_transform_lookup(""), WT_UNKNOWN);
    assert_int_equal(waf_transform_lookup("t:lowercase"), WT_UNKNOWN);
    assert_int_equal(waf_transform_lookup("lowercas"), WT_UNKNOWN);
    assert_int_equal(waf_transform_lookup("lowercasex"), WT_UNKNOWN);
    assert_int_equal(waf_transform_lookup("urlDecodeUnix"), WT_UNKNOWN);
    assert_int_equal(waf_transform_lookup("normalisationPath"), WT_UNKNOWN);
    assert_int_equal(waf_transform_lookup("removeComment"), WT_UNKNOWN);
    assert_int_equal(waf_transform_lookup("sha256"), WT_UNKNOWN);
}

/* Fixed values from the documentation of each transformation, independent of the comparison. */
static void test_known_values(void **state)
{
    (void)state;
    char out[128];
    size_t n = waf_transform_apply(WT_SHA1, "abc", 3, out);
    assert_int_equal(n, 20);
    assert_memory_equal(
        out, "\xa9\x99\x3e\x36\x47\x06\x81\x6a\xba\x3e\x25\x71\x78\x50\xc2\x6c\x9c\xd0\xd8\x9d", 20);
    n = waf_transform_apply(WT_MD5, "abc", 3, out);
    assert_int_equal(n, 16);
    assert_memory_equal(out, "\x90\x01\x50\x98\x3c\xd2\x4f\xb0\xd6\x96\x3f\x7d\x28\xe1\x7f\x72", 16);
    n = waf_transform_apply(WT_URLDECODEUNI, "%uff21%u0041", 12, out);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "AA", 2); /* U+FF21 is the full-width 'A' */
    n = waf_transform_apply(WT_SQLHEXDECODE, "abc", 3, out);
    assert_int_equal(n, 2); /* libmodsecurity never looks at the last byte */
    n = waf_transform_apply(WT_CSSDECODE, "a\\0 z", 5, out);
    assert_int_equal(n, 1); /* a decoded NUL ends the value */
    n = waf_transform_apply(WT_LENGTH, "a\0b", 3, out);
    assert_string_equal(out, "3");
    assert_int_equal(waf_transform_apply(WT_UNKNOWN, "a", 1, out), (size_t)-1);
    assert_int_equal(waf_transform_apply(WT_COUNT, "a", 1, out), (size_t)-1);
    assert_false(waf_transform_identity(WT_UNKNOWN, "a", 1));
    assert_false(waf_transform_identity(WT_UTF8TOUNICODE, "a\0b", 3));
    assert_true(waf_transform_identity(WT_UTF8TOUNICODE, "plain", 5));
    assert_true(waf_transform_identity(WT_LOWERCASE, "\xc9t\xe9", 3));
    assert_false(waf_transform_identity(WT_LENGTH, "", 0));
}

static waf_transform_id all_ids[WT_COUNT];

int main(void)
{
    struct CMUnitTest tests[WT_COUNT + 3];
    static char names[WT_COUNT][48];
    size_t k = 0;
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_harness_catches_differences);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_lookup);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_known_values);
    for (int t = 0; t < WT_COUNT; t++) {
        all_ids[t] = (waf_transform_id)t;
        snprintf(names[t], sizeof names[t], "t:%s", waf_transform_name(t));
        tests[k++] = (struct CMUnitTest){names[t], test_transformation, NULL, NULL, (void *)&all_ids[t]};
    }
    int rc = _cmocka_run_group_tests("waf_transform", tests, k, group_setup, group_teardown);
    printf("waf_transform: %ld comparisons with libmodsecurity, %ld wrong values caught\n", total_comparisons,
           total_controls);
    return rc;
}
