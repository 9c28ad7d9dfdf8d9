/* Configuration of the modsecurity plugin and loading of its rule sets.
 * Load order per rules set: generated engine settings, base settings, crs-setup.conf, local overrides,
 * generated CRS settings, REQUEST-900-..., the CRS rule files, RESPONSE-999-..., the user's `rules`,
 * then exclusions and the score reporter. Everything here runs on the main thread. */
#include "waf_config.h"

#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PC_WAF_RULES_DIR
#define PC_WAF_RULES_DIR "/usr/local/share/portcullis/rules/waf"
#endif
#ifndef PC_WAF_SOURCE_RULES_DIR
#define PC_WAF_SOURCE_RULES_DIR ""
#endif

#define DEFAULT_CRS "/usr/share/modsecurity-crs"
#define DEBIAN_CRS_ETC "/etc/modsecurity/crs"

/* libmodsecurity's engine initialises and tears down process-wide libraries (libxml2, curl) in
 * its constructor and destructor. During a reload two plugin contexts live side by side, and
 * destroying the old one must not clean up libxml2 under the new one: one engine serves every
 * context, counted. init and destroy run on the main thread only, so the count needs no lock. */
static ModSecurity *engine;
static unsigned engine_refs;

static ModSecurity *engine_acquire(ModSecLogCb cb)
{
    if (!engine) {
        engine = msc_init();
        if (!engine) return NULL;
        msc_set_connector_info(engine, "Portcullis modsecurity plugin");
        /* Without a callback libmodsecurity prints rule messages to stderr; the plugin
         * reports them itself (access log, metrics) and the audit log keeps the details. */
        msc_set_log_cb(engine, cb);
    }
    engine_refs++;
    return engine;
}

static void engine_release(void)
{
    if (engine_refs && --engine_refs == 0) {
        msc_cleanup(engine);
        engine = NULL;
    }
}

/* ---- config helpers ---- */

typedef struct cfg {
    const pc_host *h;
    const void *handle;
    waf_fast_dbs *dbs;
    const pc_config_node *root;
    char *err;
    size_t errlen;
} cfg;

static const char *where(cfg *c, const pc_config_node *n, char *buf, size_t len)
{
    return c->h->config_where(n ? n : c->root, buf, len);
}

static int fail(cfg *c, const pc_config_node *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(cfg *c, const pc_config_node *n, const char *fmt, ...)
{
    char w[PATH_MAX + 64], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "config (%s): %s", where(c, n, w, sizeof w), msg);
    return -1;
}

/* dir + "/" + name into out; -1 when it does not fit. */
static int joinp(char *out, size_t len, const char *dir, const char *name)
{
    int n = snprintf(out, len, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* The path written at n, relative to the config file as the core's own paths are, or dflt when
 * n is NULL; -1 when it does not fit. */
static int resolve(cfg *c, const pc_config_node *n, const char *dflt, char *out, size_t len)
{
    if (n) return c->h->config_path(n, out, len) ? 0 : -1;
    if (!dflt) return -1; /* callers without a default pass a node */
    int w = snprintf(out, len, "%s", dflt);
    return w < 0 || (size_t)w >= len ? -1 : 0;
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static const char *scalar(cfg *c, const pc_config_node *map, const char *key)
{
    return map ? c->h->config_string(c->h->config_get(map, key)) : NULL;
}

static int get_int(cfg *c, const pc_config_node *map, const char *key, long min, long max, long *out)
{
    const pc_config_node *n = map ? c->h->config_get(map, key) : NULL;
    if (!n) return 0;
    const char *s = c->h->config_string(n);
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < min || v > max)
        return fail(c, n, "%s: expected an integer from %ld to %ld, not \"%s\"", key, min, max,
                    s ? s : "(not a scalar)");
    *out = v;
    return 0;
}

static int get_bool(cfg *c, const pc_config_node *map, const char *key, int *out)
{
    const pc_config_node *n = map ? c->h->config_get(map, key) : NULL;
    if (!n) return 0;
    const char *s = c->h->config_string(n);
    if (s && (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")))
        *out = 1;
    else if (s && (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")))
        *out = 0;
    else
        return fail(c, n, "%s: expected true or false", key);
    return 0;
}

static int get_mode(cfg *c, const pc_config_node *map, int *out)
{
    const pc_config_node *n = map ? c->h->config_get(map, "mode") : NULL;
    if (!n) return 0;
    const char *s = c->h->config_string(n);
    if (s && !strcmp(s, "block"))
        *out = WAF_BLOCK;
    else if (s && !strcmp(s, "detect"))
        *out = WAF_DETECT;
    else if (s && !strcmp(s, "off"))
        *out = WAF_OFF;
    else
        return fail(c, n, "mode: expected block, detect or off, not \"%s\"", s ? s : "(not a scalar)");
    return 0;
}

static int check_keys(cfg *c, const pc_config_node *map, const char *const *known, size_t nknown)
{
    const pc_host *h = c->h;
    for (size_t i = 0; map && i < h->config_len(map); i++) {
        const char *k = h->config_key(map, i);
        size_t j = 0;
        while (k && j < nknown && strcmp(k, known[j]))
            j++;
        if (!k || j == nknown) {
            char list[512] = "";
            for (size_t q = 0; q < nknown; q++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", q ? ", " : "", known[q]);
            return fail(c, h->config_at(map, i), "unknown key \"%s\" (valid keys: %s)", k ? k : "?", list);
        }
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* `exclude: [942100, 920350]`: rule ids, sorted and unique so that equal lists compare equal. */
static int get_ids(cfg *c, const pc_config_node *map, const char *key, uint32_t **out, size_t *nout)
{
    const pc_host *h = c->h;
    const pc_config_node *n = map ? h->config_get(map, key) : NULL;
    *out = NULL;
    *nout = 0;
    if (!n) return 0;
    size_t len = h->config_len(n);
    if (h->config_string(n) || (len && h->config_key(n, 0)))
        return fail(c, n, "%s: expected a list of rule ids", key);
    uint32_t *ids = calloc(len ? len : 1, sizeof *ids);
    if (!ids) return fail(c, n, "out of memory");
    for (size_t i = 0; i < len; i++) {
        const char *s = h->config_string(h->config_at(n, i));
        char *end;
        errno = 0;
        unsigned long v = s ? strtoul(s, &end, 10) : 0;
        if (!s || !*s || *end || errno || v == 0 || v > UINT32_MAX) {
            free(ids);
            return fail(c, h->config_at(n, i), "%s[%zu]: expected a rule id (a positive integer), not \"%s\"",
                        key, i, s ? s : "(not a scalar)");
        }
        ids[i] = (uint32_t)v;
    }
    qsort(ids, len, sizeof *ids, cmp_u32);
    size_t k = 0;
    for (size_t i = 0; i < len; i++)
        if (k == 0 || ids[k - 1] != ids[i]) ids[k++] = ids[i];
    *out = ids;
    *nout = k;
    return 0;
}

/* ---- loading ---- */

typedef struct settings {
    int mode, paranoia, threshold;
    int fast_path;
    int inspect_response; /* response phases on, responses judged */
    uint32_t *exclude;
    size_t nexclude;
} settings;

typedef struct sources {
    char base_conf[PATH_MAX];      /* rules/waf/modsecurity.conf */
    char overrides_conf[PATH_MAX]; /* rules/waf/crs-overrides.conf */
    char crs_setup[PATH_MAX];
    char before_crs[PATH_MAX]; /* REQUEST-900-..., "" when absent */
    char after_crs[PATH_MAX];  /* RESPONSE-999-..., "" when absent */
    char **crs_rules;          /* every .conf in <crs>/rules, sorted */
    size_t ncrs_rules;
    char **user_rules;
    const pc_config_node **user_nodes;
    size_t nuser_rules;
    char audit_log[PATH_MAX]; /* "" when none */
    size_t body_limit;
} sources;

static void sources_free(sources *s)
{
    for (size_t i = 0; i < s->ncrs_rules; i++)
        free(s->crs_rules[i]);
    free(s->crs_rules);
    for (size_t i = 0; i < s->nuser_rules; i++)
        free(s->user_rules[i]);
    free(s->user_rules);
    free(s->user_nodes);
}

/* Every source a rules set loads is also kept, in order, for the fast path to read the same. */
static int keep_source(cfg *c, waf_profile *p, int is_file, const char *text)
{
    waf_source *src = realloc(p->src, (p->nsrc + 1) * sizeof *src);
    if (!src || !(src[p->nsrc].text = strdup(text))) {
        if (src) p->src = src;
        return fail(c, NULL, "out of memory");
    }
    src[p->nsrc].is_file = is_file;
    p->src = src;
    p->nsrc++;
    return 0;
}

static int add_file(cfg *c, waf_profile *p, const char *file, const pc_config_node *n)
{
    const char *error = NULL;
    if (msc_rules_add_file(p->rules, file, &error) < 0) {
        fail(c, n, "%s: %s", file, error ? error : "cannot load");
        free((void *)error);
        return -1;
    }
    free((void *)error);
    return keep_source(c, p, 1, file);
}

static int add_text(cfg *c, waf_profile *p, const char *text, const pc_config_node *n)
{
    const char *error = NULL;
    if (msc_rules_add(p->rules, text, &error) < 0) {
        fail(c, n, "generated settings refused: %s", error ? error : "?");
        free((void *)error);
        return -1;
    }
    free((void *)error);
    return keep_source(c, p, 0, text);
}

/* A path for a SecLang directive: quoted, so that spaces survive; quotes cannot be escaped. */
static int seclang_path(cfg *c, const char *p, const char *key)
{
    if (strpbrk(p, "\"\n\r"))
        return fail(c, c->h->config_get(c->root, key), "%s: the path may not contain quotes or newlines",
                    key);
    return 0;
}

static void profile_free(waf_profile *p)
{
    if (!p) return;
    if (p->rules) msc_rules_cleanup(p->rules);
    waf_fast_free(p->fast);
    free(p->fast_error);
    for (size_t i = 0; i < p->nsrc; i++)
        free(p->src[i].text);
    free(p->src);
    free(p->exclude);
    free(p);
}

static waf_profile *build_profile(cfg *c, const sources *s, const settings *st)
{
    waf_profile *p = calloc(1, sizeof *p);
    if (!p || !(p->rules = msc_create_rules_set())) {
        free(p);
        fail(c, NULL, "out of memory");
        return NULL;
    }
    p->mode = st->mode;
    p->paranoia = st->paranoia;
    p->threshold = st->threshold;
    p->inspect_response = st->inspect_response;
    if (st->nexclude) {
        p->exclude = malloc(st->nexclude * sizeof *p->exclude);
        if (!p->exclude) goto oom;
        memcpy(p->exclude, st->exclude, st->nexclude * sizeof *p->exclude);
        p->nexclude = st->nexclude;
    }
    char text[PATH_MAX + 1024];
    const pc_config_node *crs_node = c->h->config_get(c->root, "crs");
    /* Engine settings that follow the plugin's keys. First, because libmodsecurity keeps the
     * first value given for each engine setting (SecRuleEngine, limits, body access) across the
     * files of a rules set: these win over the base settings, which provide the rest.
     * The limit is the plugin's own body_limit plus room for the JSON punctuation, so ModSecurity
     * never truncates what it is given. */
    snprintf(text, sizeof text,
             "SecRuleEngine %s\n"
             "SecRequestBodyAccess On\n"
             "SecRequestBodyLimit %zu\n"
             "SecRequestBodyNoFilesLimit %zu\n"
             "SecResponseBodyAccess %s\n",
             st->mode == WAF_BLOCK ? "On" : "DetectionOnly", s->body_limit + 64, s->body_limit + 64,
             st->inspect_response ? "On" : "Off");
    if (add_text(c, p, text, NULL) < 0) goto error;
    if (add_file(c, p, s->base_conf, c->h->config_get(c->root, "base")) < 0) goto error;
    /* The audit log settings merge the other way (the last one given wins): after the base. */
    if (s->audit_log[0]) {
        snprintf(text, sizeof text, "SecAuditEngine RelevantOnly\nSecAuditLog \"%s\"\n", s->audit_log);
        if (add_text(c, p, text, c->h->config_get(c->root, "audit_log")) < 0) goto error;
    }
    if (add_file(c, p, s->crs_setup, crs_node) < 0 ||
        add_file(c, p, s->overrides_conf, c->h->config_get(c->root, "base")) < 0)
        goto error;
    /* After crs-setup.conf, so that these win over a paranoia level set there; before
     * REQUEST-901, whose defaults apply only to what is still unset. Rule 10001: the plugin hands
     * ModSecurity each gRPC message rendered as JSON, so the JSON body processor must read it
     * (rule 200001 does the same for application/json); the headers stay as the client sent them. */
    snprintf(text, sizeof text,
             "SecAction \"id:%d,phase:1,pass,nolog,t:none,"
             "setvar:tx.paranoia_level=%d,setvar:tx.inbound_anomaly_score_threshold=%d\"\n"
             "SecRule REQUEST_HEADERS:Content-Type \"@rx ^application/grpc(?:$|[+;])\" "
             "\"id:%d,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON\"\n",
             WAF_RULE_SETTINGS, st->paranoia, st->threshold, WAF_RULE_GRPC_JSON);
    if (add_text(c, p, text, NULL) < 0) goto error;
    if (s->before_crs[0] && add_file(c, p, s->before_crs, crs_node) < 0) goto error;
    for (size_t i = 0; i < s->ncrs_rules; i++)
        if (add_file(c, p, s->crs_rules[i], crs_node) < 0) goto error;
    if (s->after_crs[0] && add_file(c, p, s->after_crs, crs_node) < 0) goto error;
    for (size_t i = 0; i < s->nuser_rules; i++)
        if (add_file(c, p, s->user_rules[i], s->user_nodes[i]) < 0) goto error;
    /* Last: exclusions, then the reporters. They log (to the plugin's callback, not the audit log)
     * the anomaly score after CRS and user rules added to it, so the access log can show it. */
    size_t off = 0;
    char *tail = malloc(st->nexclude * 12 + 1024);
    if (!tail) goto oom;
    tail[0] = '\0';
    if (st->nexclude) {
        off += (size_t)sprintf(tail + off, "SecRuleRemoveById");
        for (size_t i = 0; i < st->nexclude; i++)
            off += (size_t)sprintf(tail + off, " %u", st->exclude[i]);
        off += (size_t)sprintf(tail + off, "\n");
    }
    off += (size_t)sprintf(tail + off,
                           "SecRule TX:ANOMALY_SCORE \"@gt 0\" \"id:%d,phase:2,pass,log,noauditlog,t:none,"
                           "msg:'inbound anomaly score %%{tx.anomaly_score}'\"\n",
                           WAF_RULE_SCORE);
    if (st->inspect_response)
        sprintf(tail + off,
                "SecRule TX:OUTBOUND_ANOMALY_SCORE \"@gt 0\" \"id:%d,phase:4,pass,log,noauditlog,t:none,"
                "msg:'outbound anomaly score %%{tx.outbound_anomaly_score}'\"\n",
                WAF_RULE_RESP_SCORE);
    int rv = add_text(c, p, tail, NULL);
    free(tail);
    if (rv < 0) goto error;
    if (st->fast_path != WAF_FAST_OFF) {
        /* A rules set the fast path cannot read still runs, without it: said once, at load. */
        char ferr[512];
        if (!(p->fast = waf_fast_build(p->src, p->nsrc, st->paranoia, c->dbs, ferr, sizeof ferr))) {
            c->h->log(c->handle, PC_PLUGIN_LOG_WARN, "the WAF fast path is off for this rules set: %s", ferr);
            p->fast_error = strdup(ferr);
        } else {
            /* Rules it cannot replay are named: a request that reaches one goes to libmodsecurity. */
            char list[2048];
            size_t n = waf_fast_uncovered(p->fast, list, sizeof list);
            if (n) {
                for (char *q = list; (q = strchr(q, '\n'));)
                    *q = ';';
                c->h->log(
                    c->handle, PC_PLUGIN_LOG_INFO,
                    "WAF fast path (paranoia %d): %zu rules fall back to libmodsecurity when reached: %s",
                    st->paranoia, n, list);
            }
        }
    }
    return p;
oom:
    fail(c, NULL, "out of memory");
error:
    profile_free(p);
    return NULL;
}

static int same_settings(const waf_profile *p, const settings *s)
{
    return p->mode == s->mode && p->paranoia == s->paranoia && p->threshold == s->threshold &&
           p->inspect_response == s->inspect_response && p->nexclude == s->nexclude &&
           (!s->nexclude || !memcmp(p->exclude, s->exclude, s->nexclude * sizeof *s->exclude));
}

/* The rules set for these settings: an equal one is shared, so zones cost a load only when they
 * differ (each rules set with the CRS costs about 0.1 s to load and some megabytes). */
static const waf_profile *profile_for(cfg *c, waf_conf *wc, const sources *s, const settings *st)
{
    if (st->mode == WAF_OFF) return NULL;
    for (size_t i = 0; i < wc->nprofiles; i++)
        if (same_settings(wc->profiles[i], st)) return wc->profiles[i];
    waf_profile **ps = realloc(wc->profiles, (wc->nprofiles + 1) * sizeof *ps);
    if (!ps) {
        fail(c, NULL, "out of memory");
        return NULL;
    }
    wc->profiles = ps;
    waf_profile *p = build_profile(c, s, st);
    if (p) ps[wc->nprofiles++] = p;
    return p;
}

static int find_sources(cfg *c, sources *s)
{
    const pc_host *h = c->h;
    char path[PATH_MAX];
    /* Base settings: `base`, else the installed rules/waf, else the source tree's. */
    const char *base = scalar(c, c->root, "base");
    if (base) {
        if (resolve(c, h->config_get(c->root, "base"), NULL, path, sizeof path) < 0 || !is_dir(path))
            return fail(c, h->config_get(c->root, "base"), "base: %s is not a directory", base);
    } else if (is_dir(PC_WAF_RULES_DIR)) {
        snprintf(path, sizeof path, "%s", PC_WAF_RULES_DIR);
    } else {
        snprintf(path, sizeof path, "%s", PC_WAF_SOURCE_RULES_DIR);
    }
    if (snprintf(s->base_conf, sizeof s->base_conf, "%s/modsecurity.conf", path) >=
            (int)sizeof s->base_conf ||
        snprintf(s->overrides_conf, sizeof s->overrides_conf, "%s/crs-overrides.conf", path) >=
            (int)sizeof s->overrides_conf)
        return fail(c, NULL, "base: path too long");
    if (!is_file(s->base_conf) || !is_file(s->overrides_conf))
        return fail(
            c, h->config_get(c->root, "base"),
            "base: no modsecurity.conf and crs-overrides.conf in %s (set `base` to the rules/waf directory)",
            path[0] ? path : "(not found)");

    const char *crs = scalar(c, c->root, "crs");
    char crsdir[PATH_MAX];
    if (resolve(c, crs ? h->config_get(c->root, "crs") : NULL, DEFAULT_CRS, crsdir, sizeof crsdir) < 0)
        return fail(c, h->config_get(c->root, "crs"), "crs: path too long");
    if (joinp(path, sizeof path, crsdir, "rules") < 0 || !is_dir(path))
        return fail(c, h->config_get(c->root, "crs"),
                    "crs: %s has no rules/ directory (is modsecurity-crs installed?)", crsdir);
    /* crs-setup.conf: `crs_setup`, else next to the rules (upstream layout), else Debian's. */
    const char *setup = scalar(c, c->root, "crs_setup");
    if (setup) {
        if (resolve(c, h->config_get(c->root, "crs_setup"), NULL, s->crs_setup, sizeof s->crs_setup) < 0 ||
            !is_file(s->crs_setup))
            return fail(c, h->config_get(c->root, "crs_setup"), "crs_setup: %s is not a file", setup);
    } else {
        if (joinp(s->crs_setup, sizeof s->crs_setup, crsdir, "crs-setup.conf") < 0 || !is_file(s->crs_setup))
            joinp(s->crs_setup, sizeof s->crs_setup, DEBIAN_CRS_ETC, "crs-setup.conf");
        if (!is_file(s->crs_setup))
            return fail(c, h->config_get(c->root, "crs"),
                        "crs: no crs-setup.conf in %s or %s (set crs_setup to its path)", crsdir,
                        DEBIAN_CRS_ETC);
    }
    /* The exclusion files sit next to crs-setup.conf (Debian); in the upstream layout they are
     * in rules/ and the glob below picks them up in their place. */
    char setupdir[PATH_MAX];
    snprintf(setupdir, sizeof setupdir, "%s", s->crs_setup);
    char *slash = strrchr(setupdir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(setupdir, sizeof setupdir, ".");
    int same = strcmp(setupdir, path) == 0;
    if (same ||
        joinp(s->before_crs, sizeof s->before_crs, setupdir, "REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf") <
            0 ||
        !is_file(s->before_crs))
        s->before_crs[0] = '\0';
    if (same ||
        joinp(s->after_crs, sizeof s->after_crs, setupdir, "RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf") <
            0 ||
        !is_file(s->after_crs))
        s->after_crs[0] = '\0';

    char pattern[PATH_MAX + 8];
    if (joinp(pattern, sizeof pattern, path, "*.conf") < 0)
        return fail(c, h->config_get(c->root, "crs"), "crs: path too long");
    glob_t g;
    int grv = glob(pattern, 0, NULL, &g);
    if (grv != 0 || g.gl_pathc == 0) {
        if (grv == 0) globfree(&g);
        return fail(c, h->config_get(c->root, "crs"), "crs: no rule files in %s", path);
    }
    s->crs_rules = calloc(g.gl_pathc, sizeof *s->crs_rules);
    for (size_t i = 0; s->crs_rules && i < g.gl_pathc; i++)
        if ((s->crs_rules[s->ncrs_rules] = strdup(g.gl_pathv[i]))) s->ncrs_rules++;
    globfree(&g);
    if (!s->crs_rules) return fail(c, NULL, "out of memory");

    /* The user's files; a glob pattern stands for its matches, in order. */
    const pc_config_node *rn = h->config_get(c->root, "rules");
    size_t nr = rn ? h->config_len(rn) : 0;
    if (rn && (h->config_string(rn) || (nr && h->config_key(rn, 0))))
        return fail(c, rn, "rules: expected a list of SecLang files");
    for (size_t i = 0; i < nr; i++) {
        const pc_config_node *item = h->config_at(rn, i);
        const char *f = h->config_string(item);
        if (!f || !*f) return fail(c, item, "rules[%zu]: expected a file path", i);
        if (resolve(c, item, NULL, path, sizeof path) < 0)
            return fail(c, item, "rules[%zu]: path too long", i);
        grv = glob(path, GLOB_NOCHECK, NULL, &g);
        if (grv != 0) return fail(c, item, "rules[%zu]: %s: no such file", i, f);
        for (size_t k = 0; k < g.gl_pathc; k++) {
            if (!is_file(g.gl_pathv[k])) {
                fail(c, item, "rules[%zu]: %s: no such file", i, g.gl_pathv[k]);
                globfree(&g);
                return -1;
            }
            char **ur = realloc(s->user_rules, (s->nuser_rules + 1) * sizeof *ur);
            if (ur) s->user_rules = ur;
            const pc_config_node **un = realloc(s->user_nodes, (s->nuser_rules + 1) * sizeof *un);
            if (un) s->user_nodes = un;
            if (!ur || !un || !(s->user_rules[s->nuser_rules] = strdup(g.gl_pathv[k]))) {
                globfree(&g);
                return fail(c, NULL, "out of memory");
            }
            s->user_nodes[s->nuser_rules++] = item;
        }
        globfree(&g);
    }

    const char *audit = scalar(c, c->root, "audit_log");
    if (audit &&
        (resolve(c, h->config_get(c->root, "audit_log"), NULL, s->audit_log, sizeof s->audit_log) < 0 ||
         seclang_path(c, s->audit_log, "audit_log") < 0))
        return -1;
    return 0;
}

/* Adds the ids of the rules in `file` ("id:942100", "id:'942100'", "id: 942100") to the list. A
 * comment that mentions an id adds a harmless extra entry. */
static int scan_ids(waf_conf *wc, const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f) return 0;
    char line[8192];
    size_t cap = wc->nknown_ids;
    while (fgets(line, sizeof line, f)) {
        for (char *p = line; (p = strstr(p, "id:")); p += 3) {
            if (p > line && (p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z')))
                continue; /* "phase:1,ctl:ruleRemoveById:..." and the like are not a rule's own id */
            const char *q = p + 3;
            while (*q == ' ' || *q == '\'' || *q == '"')
                q++;
            if (*q < '0' || *q > '9') continue;
            unsigned long v = strtoul(q, NULL, 10);
            if (v == 0 || v > UINT32_MAX) continue;
            if (wc->nknown_ids == cap) {
                cap = cap ? cap * 2 : 1024;
                uint32_t *ids = realloc(wc->known_ids, cap * sizeof *ids);
                if (!ids) {
                    fclose(f);
                    return -1;
                }
                wc->known_ids = ids;
            }
            wc->known_ids[wc->nknown_ids++] = (uint32_t)v;
        }
    }
    fclose(f);
    return 0;
}

static int collect_ids(waf_conf *wc, const sources *s)
{
    static const uint32_t own[] = {WAF_RULE_GRPC_JSON, WAF_RULE_SETTINGS};
    const char *fixed[] = {s->base_conf, s->crs_setup, s->overrides_conf, s->before_crs, s->after_crs};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        if (fixed[i][0] && scan_ids(wc, fixed[i]) < 0) return -1;
    for (size_t i = 0; i < s->ncrs_rules; i++)
        if (scan_ids(wc, s->crs_rules[i]) < 0) return -1;
    for (size_t i = 0; i < s->nuser_rules; i++)
        if (scan_ids(wc, s->user_rules[i]) < 0) return -1;
    uint32_t *ids = realloc(wc->known_ids, (wc->nknown_ids + 2) * sizeof *ids);
    if (!ids) return -1;
    wc->known_ids = ids;
    for (size_t i = 0; i < 2; i++)
        ids[wc->nknown_ids++] = own[i];
    qsort(ids, wc->nknown_ids, sizeof *ids, cmp_u32);
    size_t k = 0;
    for (size_t i = 0; i < wc->nknown_ids; i++)
        if (k == 0 || ids[k - 1] != ids[i]) ids[k++] = ids[i];
    wc->nknown_ids = k;
    return 0;
}

int waf_conf_known_id(const waf_conf *c, uint32_t id)
{
    return bsearch(&id, c->known_ids, c->nknown_ids, sizeof id, cmp_u32) != NULL;
}

/* The plugin's keys: the core checks a config against them before init (see plugin.h). */
const pc_conf_key waf_config_keys[] = {
    {.key = "crs",
     .type = PC_CONF_PATH,
     .doc = "the Core Rule Set directory (default: Debian's modsecurity-crs)"},
    {.key = "crs_setup",
     .type = PC_CONF_PATH,
     .doc = "the CRS setup file (default: the one next to the CRS)"},
    {.key = "base", .type = PC_CONF_PATH, .doc = "the ModSecurity base settings (default: the shipped ones)"},
    {.key = "paranoia", .type = PC_CONF_INT, .min = 1, .max = 4, .doc = "CRS paranoia level (default 1)"},
    {.key = "anomaly_threshold",
     .type = PC_CONF_INT,
     .min = 1,
     .max = 10000,
     .doc = "inbound anomaly score that blocks (default 5)"},
    {.key = "mode", .type = PC_CONF_STRING, .choices = "block|detect|off", .doc = "default block"},
    {.key = "rules", .type = PC_CONF_LIST, .doc = "your SecLang rule files, loaded after the CRS"},
    {.key = "exclude", .type = PC_CONF_LIST, .doc = "rule ids not to run"},
    {.key = "audit_log", .type = PC_CONF_PATH, .doc = "ModSecurity audit log file (default: none)"},
    {.key = "zones", .type = PC_CONF_MAP, .doc = "per zone: mode, paranoia, anomaly_threshold, exclude, ..."},
    {.key = "max_queue",
     .type = PC_CONF_INT,
     .min = 1,
     .max = 1000000,
     .doc = "transactions waiting for the thread pool per worker (default 256)"},
    {.key = "on_queue_full", .type = PC_CONF_STRING, .choices = "deny|open", .doc = "default deny"},
    {.key = "body_limit",
     .type = PC_CONF_INT,
     .min = 1024,
     .max = 1073741824,
     .doc = "largest message inspected, in bytes (default 1048576)"},
    {.key = "inspect_response", .type = PC_CONF_BOOL, .doc = "run the response phases too (default false)"},
    {.key = "inspect_numbers",
     .type = PC_CONF_BOOL,
     .doc = "numeric fields as arguments too (default false)"},
    {.key = "headers_first", .type = PC_CONF_BOOL, .doc = "judge the headers before the first message"},
    {.key = "fast_path", .type = PC_CONF_STRING, .choices = "on|off|verify", .doc = "default on"},
    {.key = "fast_path_cache", .type = PC_CONF_PATH, .doc = "where compiled pattern databases are kept"},
    {0},
};
static const char *const zone_keys[] = {"mode",    "paranoia",      "anomaly_threshold",
                                        "exclude", "headers_first", "inspect_response"};

static int zone_settings(cfg *c, const pc_config_node *zn, const settings *deflt, settings *out,
                         int *headers_first)
{
    long v;
    *out = *deflt;
    out->exclude = NULL;
    out->nexclude = 0;
    if (c->h->config_string(zn) || (c->h->config_len(zn) && !c->h->config_key(zn, 0)))
        return fail(c, zn,
                    "zones: each zone maps to {mode, paranoia, anomaly_threshold, exclude, headers_first, "
                    "inspect_response}");
    if (check_keys(c, zn, zone_keys, sizeof zone_keys / sizeof *zone_keys) < 0 ||
        get_mode(c, zn, &out->mode) < 0 || get_bool(c, zn, "headers_first", headers_first) < 0 ||
        get_bool(c, zn, "inspect_response", &out->inspect_response) < 0)
        return -1;
    v = out->paranoia;
    if (get_int(c, zn, "paranoia", 1, 4, &v) < 0) return -1;
    out->paranoia = (int)v;
    v = out->threshold;
    if (get_int(c, zn, "anomaly_threshold", 1, 10000, &v) < 0) return -1;
    out->threshold = (int)v;
    uint32_t *ids;
    size_t nids;
    if (get_ids(c, zn, "exclude", &ids, &nids) < 0) return -1;
    /* A zone's exclusions add to the top-level ones. */
    out->exclude = malloc((deflt->nexclude + nids + 1) * sizeof *out->exclude);
    if (!out->exclude) {
        free(ids);
        return fail(c, zn, "out of memory");
    }
    if (deflt->nexclude) memcpy(out->exclude, deflt->exclude, deflt->nexclude * sizeof *out->exclude);
    if (nids) memcpy(out->exclude + deflt->nexclude, ids, nids * sizeof *ids);
    free(ids);
    size_t n = deflt->nexclude + nids, k = 0;
    qsort(out->exclude, n, sizeof *out->exclude, cmp_u32);
    for (size_t i = 0; i < n; i++)
        if (k == 0 || out->exclude[k - 1] != out->exclude[i]) out->exclude[k++] = out->exclude[i];
    out->nexclude = k;
    return 0;
}

int waf_conf_load(const pc_host *host, const void *handle, const pc_config_node *config, ModSecLogCb log_cb,
                  waf_conf **out, char *err, size_t errlen)
{
    cfg c = {.h = host, .handle = handle, .root = config, .err = err, .errlen = errlen};
    sources s = {0};
    settings deflt = {.mode = WAF_BLOCK, .paranoia = 1, .threshold = 5};
    long v;
    if (!PC_HOST_HAS(host, config_path)) {
        snprintf(err, errlen, "this plugin needs a newer Portcullis core (host->config_path)");
        return -1;
    }
    waf_conf *wc = calloc(1, sizeof *wc);
    if (!wc) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    wc->host = host;
    wc->handle = handle;
    wc->max_queue = 256;
    wc->body_limit = 1 << 20;
    if (config &&
        (host->config_string(config) || (host->config_len(config) && !host->config_key(config, 0)))) {
        fail(&c, config, "expected a map of settings");
        goto error;
    }
    /* The core checked the top-level keys against waf_config_keys; zones are checked here. */
    if (get_mode(&c, config, &deflt.mode) < 0) goto error;
    v = 1;
    if (get_int(&c, config, "paranoia", 1, 4, &v) < 0) goto error;
    deflt.paranoia = (int)v;
    v = 5;
    if (get_int(&c, config, "anomaly_threshold", 1, 10000, &v) < 0) goto error;
    deflt.threshold = (int)v;
    v = 256;
    if (get_int(&c, config, "max_queue", 1, 1000000, &v) < 0) goto error;
    wc->max_queue = (size_t)v;
    v = 1 << 20;
    if (get_int(&c, config, "body_limit", 1024, 1L << 30, &v) < 0) goto error;
    wc->body_limit = (size_t)v;
    if (get_bool(&c, config, "inspect_response", &deflt.inspect_response) < 0 ||
        get_bool(&c, config, "inspect_numbers", &wc->inspect_numbers) < 0 ||
        get_bool(&c, config, "headers_first", &wc->deflt.headers_first) < 0)
        goto error;
    const char *fp = scalar(&c, config, "fast_path");
    if (fp && !strcmp(fp, "off"))
        deflt.fast_path = WAF_FAST_OFF;
    else if (fp && !strcmp(fp, "verify"))
        deflt.fast_path = WAF_FAST_VERIFY;
    else if (fp && strcmp(fp, "on")) {
        fail(&c, host->config_get(config, "fast_path"), "fast_path: expected on, off or verify, not \"%s\"",
             fp);
        goto error;
    } else if (config && host->config_get(config, "fast_path") && !fp) {
        fail(&c, host->config_get(config, "fast_path"), "fast_path: expected on, off or verify");
        goto error;
    }
    wc->fast_path = deflt.fast_path;
    if (deflt.fast_path != WAF_FAST_OFF) {
        /* Where compiled patterns are kept: the key, else systemd's CacheDirectory, else the
         * user's cache directory. */
        char dir[PATH_MAX] = "";
        const pc_config_node *cn = host->config_get(config, "fast_path_cache");
        const char *env;
        if (cn) {
            if (!host->config_path(cn, dir, sizeof dir)) {
                fail(&c, cn, "fast_path_cache: expected a directory");
                goto error;
            }
        } else if ((env = getenv("CACHE_DIRECTORY")) && *env) {
            snprintf(dir, sizeof dir, "%.*s", (int)strcspn(env, ":"), env);
        } else if ((env = getenv("XDG_CACHE_HOME")) && *env) {
            snprintf(dir, sizeof dir, "%.*s/portcullis", (int)(sizeof dir - 16), env);
        } else if ((env = getenv("HOME")) && *env) {
            char parent[PATH_MAX - 16];
            snprintf(parent, sizeof parent, "%.*s/.cache", (int)(sizeof parent - 8), env);
            if (mkdir(parent, 0700) == 0 || errno == EEXIST)
                snprintf(dir, sizeof dir, "%s/portcullis", parent);
        }
        if (!(wc->dbs = c.dbs = waf_fast_dbs_new(dir[0] ? dir : NULL))) {
            fail(&c, config, "out of memory");
            goto error;
        }
    }
    const char *qf = scalar(&c, config, "on_queue_full");
    if (qf && strcmp(qf, "deny") && strcmp(qf, "open")) {
        fail(&c, host->config_get(config, "on_queue_full"),
             "on_queue_full: expected deny or open, not \"%s\"", qf);
        goto error;
    }
    wc->queue_full_open = qf && !strcmp(qf, "open");
    if (get_ids(&c, config, "exclude", &deflt.exclude, &deflt.nexclude) < 0) goto error;
    s.body_limit = wc->body_limit;
    if (find_sources(&c, &s) < 0) goto error;

    if (!(wc->msc = engine_acquire(log_cb))) {
        fail(&c, config, "cannot start the ModSecurity engine");
        goto error;
    }
    if (deflt.mode != WAF_OFF && !(wc->deflt.profile = profile_for(&c, wc, &s, &deflt))) goto error;

    const pc_config_node *zn = config ? host->config_get(config, "zones") : NULL;
    size_t nz = zn ? host->config_len(zn) : 0;
    if (zn && (host->config_string(zn) || (nz && !host->config_key(zn, 0)))) {
        fail(&c, zn, "zones: expected a map of zone name to settings");
        goto error;
    }
    if (nz && !(wc->zones = calloc(nz, sizeof *wc->zones))) {
        fail(&c, zn, "out of memory");
        goto error;
    }
    for (size_t i = 0; i < nz; i++) {
        settings zs;
        int headers_first = wc->deflt.headers_first;
        const pc_config_node *z = host->config_at(zn, i);
        if (zone_settings(&c, z, &deflt, &zs, &headers_first) < 0) goto error;
        const waf_profile *p = zs.mode == WAF_OFF ? NULL : profile_for(&c, wc, &s, &zs);
        free(zs.exclude);
        if (zs.mode != WAF_OFF && !p) goto error;
        waf_zone *wz = &wc->zones[wc->nzones++];
        wz->name = strdup(host->config_key(zn, i));
        wz->profile = p;
        wz->headers_first = headers_first;
    }
    if (collect_ids(wc, &s) < 0) {
        fail(&c, NULL, "out of memory");
        goto error;
    }
    free(deflt.exclude);
    sources_free(&s);
    *out = wc;
    return 0;
error:
    free(deflt.exclude);
    sources_free(&s);
    waf_conf_free(wc);
    return -1;
}

void waf_conf_free(waf_conf *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->nprofiles; i++)
        profile_free(c->profiles[i]);
    free(c->profiles);
    for (size_t i = 0; i < c->nzones; i++)
        free(c->zones[i].name);
    free(c->zones);
    free(c->known_ids);
    waf_fast_dbs_free(c->dbs); /* after the profiles, whose fast paths use its databases */
    if (c->msc) engine_release();
    free(c);
}

const waf_zone *waf_conf_zone(const waf_conf *c, const char *zone)
{
    for (size_t i = 0; zone && i < c->nzones; i++)
        if (c->zones[i].name && !strcmp(c->zones[i].name, zone)) return &c->zones[i];
    return &c->deflt;
}
