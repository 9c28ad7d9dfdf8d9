/* One request's bot score from its fingerprints, User-Agent, address and recent behaviour. The bands follow
 * what users know from CDN bot management: 1 = known-bad client, 2-29 likely automated, 30-99 likely human;
 * verified bots are a class of their own. Each rule can only lower the score from the fingerprint's base,
 * so the signals that fired explain it. A gRPC library with a matching UA is what gRPC traffic is: nothing
 * here lowers the score for that alone. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bot.h"

#define BASE_UNKNOWN 50          /* no fingerprint known: no opinion */
#define PENALTY_NO_UA 10         /* every real client library sends one */
#define CAP_UA_FP_MISMATCH 10    /* a browser UA over a library's TLS/HTTP2 stack, or the reverse */
#define CAP_UA_STACK_MISMATCH 10 /* a UA naming one stack over another stack's fingerprint */
#define CAP_UNEXPECTED 20        /* a known stack the zone does not expect (expect_clients) */
#define CAP_TLS_H2_MISMATCH 15
#define CAP_TOOL 29          /* curl, python-requests ...: honest automation */
#define CAP_AUTOMATED_UA 15  /* crawlers, headless browsers, scanners that say so */
#define CAP_UNVERIFIED_BOT 5 /* claims a verified bot's UA from elsewhere */
#define CAP_VERIFIED 29      /* verified bots are automated; allow_verified lets them through anyway */
#define CAP_BEHAVIOUR 29
#define PENALTY_RATE_MAX 20 /* on top of the cap, growing with the overshoot up to twice the limit */
#define PENALTY_ERRORS 10

typedef struct sig {
    char *s;
    size_t len, cap;
} sig;

__attribute__((format(printf, 2, 3))) static void add(sig *g, const char *fmt, ...)
{
    size_t at = g->len ? g->len + 1 : 0; /* after a comma unless first */
    if (at + 1 >= g->cap) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g->s + at, g->cap - at, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= g->cap - at) {
        g->s[g->len] = '\0'; /* a signal that does not fit whole is left out */
        return;
    }
    if (at) g->s[g->len] = ',';
    g->len = at + (size_t)n;
}

static int cap(int score, int c)
{
    return score < c ? score : c;
}

static bool library(int kind)
{
    return kind == BOT_KIND_GRPC || kind == BOT_KIND_LIBRARY || kind == BOT_KIND_AUTOMATED;
}

/* The stacks the User-Agent names against the stacks the fingerprints belong to, and against the zone's
 * expected clients. Only fingerprints whose label names a declared stack take part: an unknown fingerprint
 * says nothing about the client's stack. */
static void stack_checks(const bot_rules *r, const bot_input *in, const bot_fp *tls, const bot_fp *h2, sig *g,
                         int *score)
{
    const bot_fp *fps[2] = {bot_fp_is_stack(r, tls) ? tls : NULL, bot_fp_is_stack(r, h2) ? h2 : NULL};
    int uas[BOT_UA_MAX_STACKS];
    size_t nua = bot_ua_stacks(r, in->user_agent, uas, BOT_UA_MAX_STACKS);
    /* Every stack the UA names must be one the fingerprints belong to; one signal, for the first that is
     * not (the TLS fingerprint's before the HTTP/2 one's). */
    bool mismatch = false;
    for (size_t f = 0; f < 2 && !mismatch; f++)
        for (size_t i = 0; fps[f] && i < nua && !mismatch; i++)
            if (!bot_fp_in_stack(fps[f], r->stacks[uas[i]].name)) {
                add(g, "ua_stack_mismatch:%s/%s", r->stacks[uas[i]].name, fps[f]->label);
                *score = cap(*score, CAP_UA_STACK_MISMATCH);
                mismatch = true;
            }
    if (!in->nexpect) return;
    for (size_t f = 0; f < 2; f++) {
        bool expected = !fps[f];
        for (size_t i = 0; !expected && i < in->nexpect; i++)
            expected = bot_fp_in_stack(fps[f], in->expect[i]);
        if (!expected) {
            add(g, "unexpected_client:%s", fps[f]->label);
            *score = cap(*score, CAP_UNEXPECTED);
            return;
        }
    }
}

void bot_evaluate(const bot_rules *r, const bot_params *p, const bot_input *in, bot_verdict *out)
{
    sig g = {out->signals, 0, sizeof out->signals};
    out->signals[0] = '\0';
    out->verified = false;

    /* The TLS fingerprint says more than the HTTP/2 one (more fields, more entries); JA4 before JA3 because
     * it survives extension-order randomisation. */
    const bot_fp *tls = bot_rules_fp(r, BOT_FP_JA4, in->ja4);
    if (!tls) tls = bot_rules_fp(r, BOT_FP_JA3, in->ja3_hash);
    const bot_fp *h2 = bot_rules_fp(r, BOT_FP_H2, in->h2fp);
    const bot_fp *fp = tls ? tls : h2;
    int score = fp ? fp->score : BASE_UNKNOWN;
    int fpkind = fp ? fp->kind : BOT_KIND_NONE;
    if (fp)
        add(&g, "fp:%s", fp->label);
    else
        add(&g, (in->ja4 || in->ja3_hash || in->h2fp) ? "fp:unknown" : "fp:none");
    if (fp && fp->score == 1) {
        add(&g, "known_bad");
        out->score = 1;
        out->class = "automated";
        return;
    }
    if (tls && h2 && tls->kind != h2->kind &&
        (tls->kind == BOT_KIND_BROWSER || h2->kind == BOT_KIND_BROWSER)) {
        add(&g, "tls_h2_mismatch");
        score = cap(score, CAP_TLS_H2_MISMATCH);
    }

    const char *ua = in->user_agent && *in->user_agent ? in->user_agent : NULL;
    const bot_ua *u = bot_rules_ua(r, ua);
    if (!ua) {
        add(&g, "ua:none");
        score -= PENALTY_NO_UA;
    } else if (!u) {
        add(&g, "ua:unknown");
    } else {
        add(&g, "ua:%s", u->label);
        if ((u->kind == BOT_KIND_BROWSER && library(fpkind)) ||
            ((u->kind == BOT_KIND_GRPC || u->kind == BOT_KIND_LIBRARY) && fpkind == BOT_KIND_BROWSER)) {
            add(&g, "ua_fp_mismatch");
            score = cap(score, CAP_UA_FP_MISMATCH);
        }
        if (u->kind == BOT_KIND_LIBRARY) score = cap(score, CAP_TOOL);
        if (u->kind == BOT_KIND_AUTOMATED) score = cap(score, CAP_AUTOMATED_UA);
    }

    stack_checks(r, in, tls, h2, &g, &score);

    const bot_verified *v = bot_rules_verified(r, ua);
    if (v && in->addr && bot_net_match(v->nets, v->nnets, in->addr)) {
        add(&g, "verified:%s", v->label);
        out->verified = true;
        score = cap(score, CAP_VERIFIED);
    } else if (v) {
        add(&g, "bot_ua_unverified:%s", v->label);
        score = cap(score, CAP_UNVERIFIED_BOT);
    }

    if (p->rate_limit && in->rate > p->rate_limit) {
        double over = (in->rate - p->rate_limit) / p->rate_limit;
        add(&g, "rate:%.0f", in->rate);
        score = cap(score, CAP_BEHAVIOUR) - (int)(PENALTY_RATE_MAX * (over > 1 ? 1 : over));
    }
    if (in->done >= p->error_min && in->done > 0 && in->errors / in->done >= p->error_ratio) {
        add(&g, "errors:%.0f%%", 100 * in->errors / in->done);
        score = cap(score, CAP_BEHAVIOUR) - PENALTY_ERRORS;
    }

    /* 1 stays reserved for known-bad fingerprints: nothing else is that certain. */
    out->score = score < 2 ? 2 : score > 99 ? 99 : score;
    out->class = out->verified ? "verified_bot" : out->score < 30 ? "likely_automated" : "likely_human";
}
