/* The modsecurity plugin's configuration and the rule sets it loads at init: one rules set per
 * distinct (mode, paranoia, threshold, exclusions) among the default and the zones, each loading
 * the base settings, the CRS and the user's files in the documented order. */
#ifndef PC_WAF_CONFIG_H
#define PC_WAF_CONFIG_H

#include <modsecurity/modsecurity.h>
#include <modsecurity/rules_set.h>
#include <portcullis/plugin.h>
#include <stddef.h>
#include <stdint.h>

#include "fast_path.h"

enum { WAF_OFF = 0, WAF_BLOCK = 1, WAF_DETECT = 2 };
/* fast_path: on (default) | off | verify (both paths on every transaction, differences counted) */
enum { WAF_FAST_ON = 0, WAF_FAST_OFF = 1, WAF_FAST_VERIFY = 2 };

/* Rule ids the plugin adds itself (CRS leaves ids below 100000 to local use). */
#define WAF_RULE_GRPC_JSON 10001  /* gRPC calls: the body is JSON (the plugin renders messages so) */
#define WAF_RULE_SETTINGS 10002   /* paranoia level and inbound threshold */
#define WAF_RULE_SCORE 10090      /* reports the inbound anomaly score to the log callback */
#define WAF_RULE_RESP_SCORE 10091 /* the same for the outbound score (inspect_response) */

/* Read-only after init, shared by every worker and every thread-pool job. */
typedef struct waf_profile {
    RulesSet *rules;
    int mode; /* WAF_BLOCK or WAF_DETECT */
    int paranoia;
    int threshold;
    int inspect_response; /* response messages are judged too */
    uint32_t *exclude;    /* sorted, unique */
    size_t nexclude;
    waf_source *src; /* what the rules set was loaded from, in order */
    size_t nsrc;
    waf_fast *fast; /* NULL: fast_path off, or the rules set is one it cannot read (fast_error) */
    char *fast_error;
} waf_profile;

/* How requests of one zone (or of every zone not listed) are inspected. */
typedef struct waf_zone {
    char *name;                 /* NULL for the default */
    const waf_profile *profile; /* NULL: the WAF is off in this zone */
    int headers_first;          /* judge headers (phases 1 and 2) before the origin sees them */
} waf_zone;

typedef struct waf_conf {
    const pc_host *host;
    const void *handle;
    ModSecurity *msc; /* the process-wide engine (see waf_engine_acquire) */
    waf_profile **profiles;
    size_t nprofiles;
    waf_zone deflt; /* zones not listed */
    waf_zone *zones;
    size_t nzones;
    size_t max_queue;    /* transactions in flight per worker */
    int queue_full_open; /* on_queue_full: open */
    size_t body_limit;   /* largest body handed to ModSecurity */
    int inspect_numbers; /* numeric and boolean fields are given to ModSecurity too */
    int fast_path;       /* WAF_FAST_ON, _OFF or _VERIFY */
    waf_fast_dbs *dbs;   /* the fast path's compiled patterns, shared by the profiles */
    uint32_t *known_ids; /* every rule id in the loaded files, sorted (see waf_conf_known_id) */
    size_t nknown_ids;
} waf_conf;

/* Parses and validates `config`, loads the rule sets. Main thread only (rule loading is not
 * thread-safe in libmodsecurity). `log_cb` receives every rule message; its data pointer is the
 * one given to msc_new_transaction. Returns 0, or -1 with err naming the key or file. */
int waf_conf_load(const pc_host *host, const void *handle, const pc_config_node *config, ModSecLogCb log_cb,
                  waf_conf **out, char *err, size_t errlen);
void waf_conf_free(waf_conf *c);

/* Whether `id` is the id of a loaded rule. Rule messages reach the plugin as text in which
 * libmodsecurity 3.0.9 quotes matched values verbatim, so a request can make its own message
 * text show more "[id ...]" fields; only ids of real rules are taken from it. */
int waf_conf_known_id(const waf_conf *c, uint32_t id);

/* The settings for a request in `zone` (NULL: not in a listed zone). */
const waf_zone *waf_conf_zone(const waf_conf *c, const char *zone);

/* The plugin's config keys, for its descriptor. */
extern const pc_conf_key waf_config_keys[];

#endif
