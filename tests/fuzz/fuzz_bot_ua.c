/* libFuzzer target for the bot plugin's User-Agent reading and client-stack rules: the input is a rules
 * text (stack, fingerprint and useragent lines) and, after the first NUL byte, a User-Agent. The products
 * read must lie inside the User-Agent's first 512 bytes, be non-empty and hold no separator; the stacks
 * named must be valid and distinct; scoring a request with that User-Agent and the rules' own fingerprints
 * must give a score in range and a terminated signal list. Seeds: the shipped stacks.rules lines and real
 * User-Agents of gRPC libraries and browsers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/bot/rules.c"
#include "../../plugins/bot/score.c"
#include "../../plugins/bot/stacks.c"

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) __builtin_trap();                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t rlen = nul ? (size_t)(nul - data) : size;
    size_t ulen = nul ? size - rlen - 1 : 0;
    char *ua = malloc(ulen + 1);
    CHECK(ua);
    if (ulen) memcpy(ua, nul + 1, ulen);
    ua[ulen] = '\0';

    bot_rules r = {0};
    char err[256];
    if (bot_rules_load_text(&r, "fuzz.rules", (const char *)data, rlen, err, sizeof err) == 0) {
        bot_rules_finish(&r);
    } else {
        CHECK(memchr(err, '\0', sizeof err));
        bot_rules_free(&r);
        memset(&r, 0, sizeof r);
    }

    bot_product p[BOT_UA_MAX_PRODUCTS];
    size_t n = bot_ua_products(ua, p, BOT_UA_MAX_PRODUCTS);
    size_t len = strlen(ua);
    CHECK(n <= BOT_UA_MAX_PRODUCTS);
    for (size_t i = 0; i < n; i++) {
        CHECK(p[i].n > 0 && p[i].p >= ua && p[i].p + p[i].n <= ua + (len < 512 ? len : 512));
        CHECK(!memchr(p[i].p, ' ', p[i].n) && !memchr(p[i].p, '/', p[i].n) && !memchr(p[i].p, '(', p[i].n));
    }
    int s[BOT_UA_MAX_STACKS];
    size_t ns = bot_ua_stacks(&r, ua, s, BOT_UA_MAX_STACKS);
    CHECK(ns <= BOT_UA_MAX_STACKS && ns <= n);
    for (size_t i = 0; i < ns; i++) {
        CHECK(s[i] >= 0 && (size_t)s[i] < r.nstacks);
        for (size_t j = 0; j < i; j++)
            CHECK(s[i] != s[j]);
    }

    /* Score with the first fingerprint of each type the rules hold, and every stack expected. */
    const char *fp[3] = {NULL, NULL, NULL};
    for (size_t i = 0; i < r.nfps; i++)
        if (!fp[r.fps[i].type]) fp[r.fps[i].type] = r.fps[i].value;
    const char *expect[BOT_RULES_MAX_STACKS];
    for (size_t i = 0; i < r.nstacks; i++)
        expect[i] = r.stacks[i].name;
    bot_params params = {.rate_limit = 10, .error_min = 1, .error_ratio = 0.5};
    for (int e = 0; e < 2; e++) {
        bot_input in = {.ja4 = fp[BOT_FP_JA4],
                        .ja3_hash = fp[BOT_FP_JA3],
                        .h2fp = fp[BOT_FP_H2],
                        .user_agent = ua,
                        .rate = 1,
                        .expect = e ? expect : NULL,
                        .nexpect = e ? (r.nstacks ? 1 : 0) : 0};
        bot_verdict v;
        bot_evaluate(&r, &params, &in, &v);
        CHECK(v.score >= 1 && v.score <= 99);
        CHECK(memchr(v.signals, '\0', sizeof v.signals));
    }
    bot_rules_free(&r);
    free(ua);
    return 0;
}
