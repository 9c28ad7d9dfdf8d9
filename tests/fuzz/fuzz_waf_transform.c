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
                 waf_transform_name(t));
        rules[t] = msc_create_rules_set();
        if (msc_rules_add(rules[t], conf, &err) < 0) {
            fprintf(stderr, "t:%s rejected: %s\n", waf_transform_name(t), err ? err : "?");
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
            fprintf(stderr, "t:%s differs from libmodsecurity (%zu bytes in, %zu out)\n",
                    waf_transform_name(t), len, n);
            abort();
        }
        if (waf_transform_identity(t, in, len) && (n != len || memcmp(out, in, len) != 0)) {
            fprintf(stderr, "t:%s identity claimed wrongly\n", waf_transform_name(t));
            abort();
        }
    }
    free(out);
    return 0;
}
