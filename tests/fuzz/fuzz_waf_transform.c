/* libFuzzer target for the SecLang transformations: the first byte picks the transformation, the
 * rest is the value. Our result must equal libmodsecurity's own (a rule that denies when its T(x-in)
 * differs from x-out, our output), and an identity claim must hold; any difference aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <modsecurity/intervention.h>
#include <modsecurity/modsecurity.h>
#include <modsecurity/rules_set.h>
#include <modsecurity/transaction.h>

#include "waf_transform.h"

static const char *const names[WT_COUNT] = {
    [WT_NONE] = "none",
    [WT_LOWERCASE] = "lowercase",
    [WT_UPPERCASE] = "uppercase",
    [WT_URLDECODE] = "urlDecode",
    [WT_URLDECODEUNI] = "urlDecodeUni",
    [WT_HTMLENTITYDECODE] = "htmlEntityDecode",
    [WT_JSDECODE] = "jsDecode",
    [WT_CSSDECODE] = "cssDecode",
    [WT_REMOVENULLS] = "removeNulls",
    [WT_REPLACENULLS] = "replaceNulls",
    [WT_REMOVEWHITESPACE] = "removeWhitespace",
    [WT_COMPRESSWHITESPACE] = "compressWhitespace",
    [WT_CMDLINE] = "cmdLine",
    [WT_REPLACECOMMENTS] = "replaceComments",
    [WT_REMOVECOMMENTS] = "removeComments",
    [WT_REMOVECOMMENTSCHAR] = "removeCommentsChar",
    [WT_NORMALISEPATH] = "normalisePath",
    [WT_NORMALISEPATHWIN] = "normalisePathWin",
    [WT_UTF8TOUNICODE] = "utf8toUnicode",
    [WT_BASE64DECODE] = "base64Decode",
    [WT_BASE64DECODEEXT] = "base64DecodeExt",
    [WT_BASE64ENCODE] = "base64Encode",
    [WT_HEXENCODE] = "hexEncode",
    [WT_HEXDECODE] = "hexDecode",
    [WT_SQLHEXDECODE] = "sqlHexDecode",
    [WT_ESCAPESEQDECODE] = "escapeSeqDecode",
    [WT_SHA1] = "sha1",
    [WT_MD5] = "md5",
    [WT_LENGTH] = "length",
    [WT_TRIM] = "trim",
    [WT_TRIMLEFT] = "trimLeft",
    [WT_TRIMRIGHT] = "trimRight",
    [WT_URLENCODE] = "urlEncode",
    [WT_PARITYEVEN7BIT] = "parityEven7bit",
    [WT_PARITYODD7BIT] = "parityOdd7bit",
    [WT_PARITYZERO7BIT] = "parityZero7bit",
};

static ModSecurity *msc;
static RulesSet *rules[WT_COUNT];

static int lib_agrees(RulesSet *r, const void *in, size_t len, const void *expect, size_t explen)
{
    Transaction *tx = msc_new_transaction(msc, r, NULL);
    if (!tx) abort();
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
    return !denied;
}

static void setup(void)
{
    msc = msc_init();
    if (!msc) abort();
    for (int t = 0; t < WT_COUNT; t++) {
        char conf[512];
        const char *err = NULL;
        snprintf(conf, sizeof conf,
                 "SecRuleEngine On\n"
                 "SecRule REQUEST_HEADERS:x-in \"!@streq %%{REQUEST_HEADERS.x-out}\" "
                 "\"id:1,phase:1,deny,status:403,t:none,t:%s\"\n",
                 names[t]);
        rules[t] = msc_create_rules_set();
        if (msc_rules_add(rules[t], conf, &err) < 0) {
            fprintf(stderr, "t:%s rejected: %s\n", names[t], err ? err : "?");
            abort();
        }
    }
    /* The comparison must be able to fail: a wrong value (NUL bytes included) is denied. */
    if (!lib_agrees(rules[WT_NONE], "a\0b", 3, "a\0b", 3) ||
        lib_agrees(rules[WT_NONE], "a\0b", 3, "a\0c", 3) || lib_agrees(rules[WT_LOWERCASE], "A", 1, "A", 1))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!msc) setup();
    if (size < 1) return 0;
    waf_transform_id t = (waf_transform_id)(data[0] % WT_COUNT);
    const char *in = (const char *)data + 1;
    size_t len = size - 1;

    size_t cap = waf_transform_max_out(t, len);
    char *out = malloc(cap + 1);
    if (!out) abort();
    size_t n = waf_transform_apply(t, in, len, out);
    if (n != (size_t)-1) {
        if (n > cap || out[n] != '\0') abort();
        if (!lib_agrees(rules[t], in, len, out, n)) {
            fprintf(stderr, "t:%s differs from libmodsecurity (%zu bytes in, %zu out)\n", names[t], len, n);
            abort();
        }
        if (waf_transform_identity(t, in, len) && (n != len || memcmp(out, in, len) != 0)) {
            fprintf(stderr, "t:%s identity claimed wrongly\n", names[t]);
            abort();
        }
    }
    free(out);
    return 0;
}
