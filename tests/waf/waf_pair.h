/* One request judged by both WAF paths: libmodsecurity (the engine of record) and the fast path,
 * with exactly the facts, arguments and JSON body the plugin would give them. Shared by the
 * differential driver (waf_diff) and the fast path's fuzz target. */
#ifndef PC_WAF_PAIR_H
#define PC_WAF_PAIR_H

#include <portcullis/plugin.h>
#include <stddef.h>
#include <stdint.h>

#include "fast_path.h"
#include "waf_config.h"
#include "waf_tx.h"

typedef struct waf_pair_env {
    waf_conf *conf;
    const waf_profile *profile; /* the default zone's */
    waf_fast_scratch *scratch;
    /* Judge each request as a later message of its call, as in a stream: two messages with the
     * same field paths and benign values go first, and when they are clean the fast path judges
     * the request through the trace the first left and what the second remembered of the call's
     * field names (see fast_path.h). The request is then judged again in a call of its own, and
     * the two fast verdicts compared (trace_differs). */
    int second_message;
} waf_pair_env;

/* The plugin config (a YAML map with the plugin's keys: crs, paranoia, rules, ...) for the CRS at
 * `crs`, paranoia level `paranoia` and the user rules file `rules` (NULL: none). malloc'd. */
char *waf_pair_default_config(const char *crs, int paranoia, const char *rules);

/* Loads the plugin config `yaml` (named `name` in messages; relative paths resolve against `dir`)
 * as the plugin does. The default zone must have the WAF on. 0, or -1 with err. */
int waf_pair_load(waf_pair_env *e, const char *name, const char *yaml, size_t len, const char *dir, char *err,
                  size_t errlen);
void waf_pair_free(waf_pair_env *e);

enum { WAF_PAIR_CLEAN = 0, WAF_PAIR_FALLBACK = 1, WAF_PAIR_NO_FAST = 2, WAF_PAIR_SKIPPED = 3 };

typedef struct waf_pair_result {
    waf_report rep;     /* what libmodsecurity reported */
    int engine_failed;  /* no transaction could be started */
    int fast;           /* WAF_PAIR_CLEAN, _FALLBACK, _NO_FAST (no fast path), _SKIPPED (body too large) */
    const char *reason; /* why the fast path fell back */
    int mismatch;       /* the fast path said clean and the engine reported something */
    int traced;         /* second_message: the trace decided (clean) */
    int trace_differs;  /* ... and a call of its own did not say clean: the trace is wrong */
    uint64_t engine_ns, fast_ns; /* time each path took */
} waf_pair_result;

/* Judges one transaction with both paths. `fields` are the message's decoded fields (rendered with
 * the plugin's own functions); with `no_body` the transaction has no message (headers only). */
int waf_pair_run(waf_pair_env *e, const waf_facts *f, const pc_field *fields, long nfields, int no_body,
                 const char *txid, waf_pair_result *out);

#endif
