/* The WAF fast path: decides, exactly and without libmodsecurity, that no rule of a loaded rules set
 * can report anything for a request, and otherwise says "fall back" so that libmodsecurity judges it.
 *
 * Built at load time from the same SecLang sources, in the same order, as the rules set; it replays
 * phases 1 and 2 rule by rule as libmodsecurity 3.0.9 does (markers, skipAfter, chains, setvar on
 * TX, captures, the ctl exclusions), but evaluates operators cheaply: every @rx and @pm of the set is
 * in one Hyperscan database (prefilter mode: it may match more than PCRE, never less) scanned once per
 * distinct transformed value, and only a hit runs the rule's own PCRE2 pattern with libmodsecurity's
 * options; @detectSQLi/@detectXSS call the libinjection inside libmodsecurity. A rule that would log,
 * score or disrupt, or anything the replay cannot reproduce exactly, ends the replay with a reason:
 * the request then goes to libmodsecurity, the engine of record for every verdict.
 *
 * Threads: a waf_fast is read-only after build and shared. A waf_fast_call and its scratch belong to
 * one thread at a time. */
#ifndef PC_WAF_FAST_PATH_H
#define PC_WAF_FAST_PATH_H

#include <stddef.h>
#include <stdint.h>

#include "waf_tx.h"

typedef struct waf_fast waf_fast;
typedef struct waf_fast_call waf_fast_call;

/* One SecLang input of a rules set, in load order: a file, or text the plugin generates. */
typedef struct waf_source {
    int is_file;
    char *text; /* the path, or the SecLang text */
} waf_source;

/* A decoded message argument as libmodsecurity's JSON body processor names it ("json.<path>"). */
typedef waf_kv waf_arg;

enum { WAF_FAST_CLEAN = 0, WAF_FAST_FALLBACK = 1 };

/* Compiled multi-pattern databases, shared by the rules sets of one configuration (zones with other
 * paranoia levels or exclusions have the same patterns) and kept in `cache_dir` across starts and
 * reloads: compiling the CRS's patterns takes seconds, loading them milliseconds. cache_dir NULL:
 * no disk cache. The directory must belong to the running user and not be writable by others (a
 * tampered database could hide matches); otherwise it is not used. Main thread only. */
typedef struct waf_fast_dbs waf_fast_dbs;
waf_fast_dbs *waf_fast_dbs_new(const char *cache_dir);
void waf_fast_dbs_free(waf_fast_dbs *dbs);

/* Builds the fast path for the rules set loaded from `src` (dbs must outlive it). `paranoia`, the
 * CRS paranoia level the set runs at (0: unknown), only keeps the patterns of rules tagged for
 * higher levels out of the databases: it changes the cost, never a verdict. Returns NULL with err
 * on failure (a source libmodsecurity accepted but this reader refuses: the plugin then runs without
 * a fast path and says why). */
waf_fast *waf_fast_build(const waf_source *src, size_t nsrc, int paranoia, waf_fast_dbs *dbs, char *err,
                         size_t errlen);
void waf_fast_free(waf_fast *f);

/* Rules (at every paranoia level) whose evaluation the fast path cannot reproduce, and why, one per
 * line ("942100 operator @foo"), into buf; returns their count. A request that reaches one of them
 * falls back. */
size_t waf_fast_uncovered(const waf_fast *f, char *buf, size_t len);

/* Per-thread scanning memory, grown to fit every waf_fast it is used with. */
typedef struct waf_fast_scratch waf_fast_scratch;
int waf_fast_scratch_fit(const waf_fast *f, waf_fast_scratch **s);
void waf_fast_scratch_free(waf_fast_scratch *s);

/* One call: the facts must stay valid (and unchanged) while the call object lives. Phase 1 and the
 * scans of headers, path and connection facts are done once, on the first judge; phase 2 in full
 * until a message is clean, then only its steps that read the message's own values. */
waf_fast_call *waf_fast_call_new(const waf_fast *f, const waf_facts *facts, const char *txid);
void waf_fast_call_free(waf_fast_call *c);

/* Judges one transaction of the call: phase 1, then phase 2 with `args` and `body` (the JSON text
 * libmodsecurity is given as REQUEST_BODY; NULL/0 for a transaction without a body). Returns
 * WAF_FAST_CLEAN when libmodsecurity would report nothing at all (no rule message, no score, no
 * intervention), or WAF_FAST_FALLBACK with *reason set (a static string). */
int waf_fast_judge(waf_fast_call *c, waf_fast_scratch *s, const waf_arg *args, size_t nargs, const char *body,
                   size_t body_len, const char **reason);

/* How many judges of the call were decided by the trace of an earlier clean message (phase 2
 * replayed only where the message's own values are read); the others were replayed in full. */
unsigned long waf_fast_call_traced(const waf_fast_call *c);

/* The id of the rule whose evaluation or match made the last judge fall back (0: none, or a chain
 * link, or a reason that is not a rule's). */
uint32_t waf_fast_fallback_rule(const waf_fast_call *c);

#endif
