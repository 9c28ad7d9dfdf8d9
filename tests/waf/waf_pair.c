/* Both WAF paths on one request, as the plugin runs them (see waf_pair.h). */
#include "waf_pair.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chain.h"
#include "config.h"
#include "plugin_loader.h"
#include "waf_body.h"
#include "yaml_tree.h"

char *waf_pair_default_config(const char *crs, int paranoia, const char *rules)
{
    char *out = NULL;
    int n = rules ? asprintf(&out, "crs: \"%s\"\nparanoia: %d\nrules: [\"%s\"]\nfast_path: verify\n", crs,
                             paranoia, rules)
                  : asprintf(&out, "crs: \"%s\"\nparanoia: %d\nfast_path: verify\n", crs, paranoia);
    return n < 0 ? NULL : out;
}

int waf_pair_load(waf_pair_env *e, const char *name, const char *yaml, size_t len, const char *dir, char *err,
                  size_t errlen)
{
    memset(e, 0, sizeof *e);
    pc_yaml_doc *doc = pc__yaml_load_buffer(name, yaml, len, err, errlen);
    if (!doc) return -1;
    /* The host resolves relative paths against the directory of the config being loaded. */
    pc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.path = (char *)name;
    cfg.dir = (char *)dir;
    pc__chain_set_config(&cfg);
    int rc = waf_conf_load(&pc__host_api, NULL, (const pc_config_node *)doc->root, waf_tx_log_cb, &e->conf,
                           err, errlen);
    pc__chain_set_config(NULL);
    pc__yaml_free(doc);
    if (rc < 0) return -1;
    e->profile = e->conf->deflt.profile;
    if (!e->profile) {
        snprintf(err, errlen, "the WAF is off (mode: off) in the default zone");
        waf_pair_free(e);
        return -1;
    }
    if (e->profile->fast && waf_fast_scratch_fit(e->profile->fast, &e->scratch) != 0) {
        snprintf(err, errlen, "cannot allocate the fast path's scratch");
        waf_pair_free(e);
        return -1;
    }
    return 0;
}

void waf_pair_free(waf_pair_env *e)
{
    waf_fast_scratch_free(e->scratch);
    waf_conf_free(e->conf);
    memset(e, 0, sizeof *e);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A message of a call in second_message mode before the request: its field paths, benign values
 * (`round` picks which). */
static int warm_up_one(waf_pair_env *e, waf_fast_call *call, const pc_field *fields, long nfields, int round)
{
    static const char *const words[] = {"alpha", "hello world", "42", "order 7", "blue"};
    waf_args a;
    waf_args_init(&a);
    waf_buf b;
    waf_buf_init(&b, e->conf->body_limit);
    int rc = -1;
    pc_field *warm = calloc((size_t)nfields + 1, sizeof *warm);
    if (!warm) goto out;
    for (long i = 0; i < nfields; i++) {
        warm[i] = fields[i];
        if (warm[i].kind == PC_FIELD_STRING || warm[i].kind == PC_FIELD_BYTES) {
            warm[i].str = words[(i + round) % (long)(sizeof words / sizeof *words)];
            warm[i].str_len = strlen(warm[i].str);
        }
    }
    if (waf_args_from_fields(&a, warm, nfields, e->conf->inspect_numbers) < 0) goto out;
    if (waf_render_args(&b, &a) < 0) {
        rc = b.oom ? -1 : 0;
        goto out;
    }
    size_t len = 0;
    char *body = waf_buf_take(&b, &len);
    if (!body) goto out;
    const char *why = NULL;
    waf_fast_judge(call, e->scratch, a.kv, a.n, body, len, &why);
    free(body);
    rc = 0;
out:
    free(warm);
    waf_buf_free(&b);
    waf_args_free(&a);
    return rc;
}

/* Two benign messages go first: the first leaves the trace, the second is judged by it (and leaves
 * what the trace remembers of the call's field names), so the request, third, meets both. */
static int warm_up(waf_pair_env *e, waf_fast_call *call, const pc_field *fields, long nfields)
{
    return warm_up_one(e, call, fields, nfields, 0) < 0 ? -1 : warm_up_one(e, call, fields, nfields, 1);
}

int waf_pair_run(waf_pair_env *e, const waf_facts *f, const pc_field *fields, long nfields, int no_body,
                 const char *txid, waf_pair_result *out)
{
    memset(out, 0, sizeof *out);
    waf_report_reset(&out->rep, e->conf);
    waf_args args;
    waf_args_init(&args);
    waf_buf b;
    waf_buf_init(&b, e->conf->body_limit);
    char *body = NULL;
    size_t len = 0;
    if (!no_body) {
        if (waf_args_from_fields(&args, fields, nfields, e->conf->inspect_numbers) < 0) goto oom;
        if (waf_render_args(&b, &args) < 0) {
            if (b.oom) goto oom;
            /* over body_limit: the plugin does not inspect such a message */
            out->fast = WAF_PAIR_SKIPPED;
            out->reason = "message over body_limit";
            waf_buf_free(&b);
            waf_args_free(&args);
            return 0;
        }
        body = waf_buf_take(&b, &len);
    }

    uint64_t t0 = now_ns();
    if (waf_tx_request(e->conf->msc, e->profile->rules, txid, f, body, len, &out->rep) < 0)
        out->engine_failed = 1;
    out->engine_ns = now_ns() - t0;

    if (!e->profile->fast || !e->scratch) {
        out->fast = WAF_PAIR_NO_FAST;
        out->reason = "no fast path";
    } else {
        t0 = now_ns();
        waf_fast_call *call = waf_fast_call_new(e->profile->fast, f, txid);
        if (!call) goto oom;
        const char *why = NULL;
        if (e->second_message && !no_body && warm_up(e, call, fields, nfields) < 0) {
            waf_fast_call_free(call);
            goto oom;
        }
        unsigned long traced = waf_fast_call_traced(call);
        int r =
            waf_fast_judge(call, e->scratch, no_body ? NULL : args.kv, no_body ? 0 : args.n, body, len, &why);
        out->traced = waf_fast_call_traced(call) > traced;
        waf_fast_call_free(call);
        out->fast_ns = now_ns() - t0;
        if (out->traced) {
            /* the same request in a call of its own: phase 2 in full */
            waf_fast_call *alone = waf_fast_call_new(e->profile->fast, f, txid);
            if (!alone) goto oom;
            const char *why2 = NULL;
            out->trace_differs = waf_fast_judge(alone, e->scratch, args.kv, args.n, body, len, &why2) != r;
            waf_fast_call_free(alone);
        }
        out->fast = r == WAF_FAST_CLEAN ? WAF_PAIR_CLEAN : WAF_PAIR_FALLBACK;
        out->reason = r == WAF_FAST_CLEAN ? NULL : why ? why : "(no reason)";
        out->mismatch = r == WAF_FAST_CLEAN && !out->engine_failed && !waf_report_clean(&out->rep);
    }
    free(body);
    waf_buf_free(&b);
    waf_args_free(&args);
    return 0;
oom:
    free(body);
    waf_buf_free(&b);
    waf_args_free(&args);
    return -1;
}
