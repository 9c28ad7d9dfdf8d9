/* The lua plugin: page rules written in Lua. Every `*.lua` file of `dir` returns a list of rules
 * ({name, match, on_request, on_message, bot_score}); they run in file-name order, then list order, on
 * the requests their `match` pattern selects. The first rule that denies ends the evaluation.
 *
 *   - name: lua
 *     config:
 *       dir: rules/lua             # relative to the config file's directory
 *       max_memory: 33554432       # bytes per worker's Lua state (default 32 MiB)
 *       max_instructions: 1000000  # Lua VM instructions per hook call (default 1,000,000)
 *
 * Files are read and compiled at init (start and every SIGHUP): a file that does not compile fails init,
 * so the core refuses the reload and the previous rules keep running. Each worker then compiles the same
 * text into its own state. A rule that raises an error or runs over a limit is logged with file:line and
 * the hook returns PC_ERROR, so the request follows the plugin's on_error (deny by default). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lua_rules.h"

#define MAX_FILES 1000
#define MAX_FILE_BYTES (4u << 20)

/* ---- config ---- */

static void conf_free(lr_conf *c)
{
    for (size_t i = 0; i < c->nfiles; i++) {
        free(c->files[i].path);
        free(c->files[i].src);
    }
    free(c->files);
    free(c->dir);
    free(c);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_rule_file(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 4 && strcmp(name + n - 4, ".lua") == 0;
}

static int read_file(const char *path, char **src, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)MAX_FILE_BYTES) {
        snprintf(err, errlen, "%s: not a regular file of at most %u bytes", path, MAX_FILE_BYTES);
        fclose(f);
        return -1;
    }
    *src = malloc((size_t)st.st_size + 1);
    *len = *src ? fread(*src, 1, (size_t)st.st_size, f) : 0;
    bool bad = !*src || ferror(f);
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: cannot read", path);
        return -1;
    }
    (*src)[*len] = '\0';
    return 0;
}

/* Every *.lua of the dir, by name (byte order, so "10-" runs before "20-"). */
static int read_rules(lr_conf *c, const char *shown_dir, char *err, size_t errlen)
{
    DIR *d = opendir(c->dir);
    if (!d) {
        snprintf(err, errlen, "dir %s: %s", c->dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    int rv = 0;
    while ((e = readdir(d))) {
        if (!is_rule_file(e->d_name)) continue;
        char **nn = n < MAX_FILES ? realloc(names, (n + 1) * sizeof *names) : NULL;
        if (!nn || !(nn[n] = strdup(e->d_name))) {
            snprintf(err, errlen, "dir %s: more than %d rule files, or out of memory", c->dir, MAX_FILES);
            names = nn ? nn : names;
            rv = -1;
            break;
        }
        names = nn;
        n++;
    }
    closedir(d);
    if (rv == 0 && n) qsort(names, n, sizeof *names, by_name);
    if (rv == 0 && n && !(c->files = calloc(n, sizeof *c->files))) {
        snprintf(err, errlen, "out of memory");
        rv = -1;
    }
    size_t dl = strlen(shown_dir);
    bool sep = dl && shown_dir[dl - 1] != '/';
    for (size_t i = 0; rv == 0 && i < n; i++) {
        lr_file *f = &c->files[c->nfiles++];
        char *full = NULL;
        if (asprintf(&full, "%s/%s", c->dir, names[i]) < 0 ||
            asprintf(&f->path, "%s%s%s", shown_dir, sep ? "/" : "", names[i]) < 0) {
            free(full);
            f->path = NULL;
            snprintf(err, errlen, "out of memory");
            rv = -1;
            break;
        }
        rv = read_file(full, &f->src, &f->len, err, errlen);
        free(full);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rv;
}

static const pc_conf_key config_keys[] = {
    {.key = "dir", .type = PC_CONF_PATH, .required = 1, .doc = "the directory of *.lua rule files"},
    {.key = "max_memory",
     .type = PC_CONF_INT,
     .def = "33554432",
     .min = 262144,
     .max = 1099511627776.0,
     .doc = "bytes of Lua memory per worker"},
    {.key = "max_instructions",
     .type = PC_CONF_INT,
     .def = "1000000",
     .min = 1000,
     .max = 2000000000,
     .doc = "Lua VM instructions per hook call before the rule is stopped"},
    {0},
};

/* A whole number the core has checked against its key's bounds. */
static unsigned long long config_number(const pc_host *h, const pc_config_node *config, const char *key)
{
    const char *v = h->config_string(h->config_get(config, key));
    return v ? strtoull(v, NULL, 10) : 0;
}

static int init(const pc_host *host, const void *handle, const pc_config_node *config, void **out, char *err,
                size_t errlen)
{
    /* The core checked the keys (dir is there, the numbers within their bounds). */
    char where[512];
    lr_conf *c = calloc(1, sizeof *c);
    if (!c) return -1;
    c->host = host;
    c->handle = handle;
    c->max_memory = (size_t)config_number(host, config, "max_memory");
    c->max_instructions = (int)config_number(host, config, "max_instructions");
    const pc_config_node *dn = host->config_get(config, "dir");
    const char *dir = host->config_string(dn);
    char dirbuf[PATH_MAX];
    /* Relative to the config file, as the core's own paths. */
    const char *resolved = host->config_path(dn, dirbuf, sizeof dirbuf);
    c->dir = resolved ? strdup(resolved) : NULL;
    char e[1024];
    if (!c->dir || read_rules(c, dir, e, sizeof e) < 0) {
        snprintf(err, errlen, "config (%s): %s", host->config_where(dn, where, sizeof where),
                 c->dir     ? e
                 : resolved ? "out of memory"
                            : "dir: path too long");
        conf_free(c);
        return -1;
    }
    /* Compile (and run the files' top level) once here, so a broken file refuses the config, and with it
     * a reload, instead of failing in the workers. */
    lr_state check = {0};
    if (lr_state_open(&check, c, e, sizeof e) < 0) {
        snprintf(err, errlen, "%s", e);
        conf_free(c);
        return -1;
    }
    host->log(handle, PC_PLUGIN_LOG_INFO, "%zu rules from %zu files in %s", check.nrules, c->nfiles, c->dir);
    lr_state_close(&check);
    *out = c;
    return 0;
}

static void destroy(void *ctx)
{
    conf_free(ctx);
}

static int worker_init(void *ctx, unsigned worker_id, void **out, char *err, size_t errlen)
{
    (void)worker_id;
    lr_state *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (lr_state_open(s, ctx, err, errlen) < 0) {
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

static void worker_destroy(void *ctx)
{
    lr_state *s = ctx;
    lr_state_close(s);
    free(s);
}

/* ---- running rules ---- */

enum { PHASE_REQUEST, PHASE_MESSAGE };

typedef struct run {
    lr_state *s;
    int phase;
    lr_reqstate *rs;
    const char *host, *path;
    size_t hostlen, pathlen;
    size_t first; /* the first rule that matches (found before entering Lua) */
    int verdict;
    int status;          /* Lua status of the failure, LUA_OK when none */
    const lr_rule *rule; /* the rule that denied or failed */
    char err[768];
} run;

static int hook_of(const lr_rule *ru, int phase)
{
    return phase == PHASE_REQUEST ? ru->on_request : ru->on_message;
}

static bool matches(const lr_rule *ru, const run *rn, lr_span *caps, unsigned *ncaps)
{
    *ncaps = 0;
    if (ru->npats == 0) return true;
    for (size_t k = 0; k < ru->npats; k++)
        if (lr_pattern_match(&ru->pats[k], rn->host, rn->hostlen, rn->path, rn->pathlen, caps)) {
            *ncaps = ru->pats[k].ncaptures;
            return true;
        }
    return false;
}

/* Call one rule's hook with req (and `extra`, when not 0). 1 when the evaluation ends here. */
static int call_rule(lua_State *L, run *rn, const lr_rule *ru, int fn, int req, int extra,
                     const lr_span *caps, unsigned ncaps, int nresults)
{
    lr_state *s = rn->s;
    lr_set_rule_fields(s, req, ru, caps, ncaps);
    s->rule = ru;
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn);
    lua_pushvalue(L, req);
    if (extra) lua_pushvalue(L, extra);
    int rc = lr_call(s, extra ? 2 : 1, nresults);
    if (rc != LUA_OK) {
        lr_error_text(s, rc, rn->err, sizeof rn->err);
        lua_pop(L, 1);
        rn->status = rc;
        rn->rule = ru;
        /* A rule that denied and then failed still denied: fail closed either way. */
        rn->verdict = s->denied ? PC_DENY : PC_ERROR;
        return 1;
    }
    if (s->denied) {
        lua_pop(L, nresults);
        rn->rule = ru;
        rn->verdict = PC_DENY;
        return 1;
    }
    return 0;
}

static void push_req_once(run *rn, int *req, int *msg)
{
    if (*req) return;
    lr_push_req(rn->s, rn->rs);
    *req = lua_gettop(rn->s->L);
    if (rn->phase == PHASE_MESSAGE) {
        lr_push_msg(rn->s);
        *msg = lua_gettop(rn->s->L);
    }
}

/* bot_score hooks, in rule order: each may return a new score (1-99); the result is published as
 * "bot.score" for the rules after it, later plugins and the access log. 1 when the evaluation ends. */
static int adjust_bot_score(lua_State *L, run *rn, int *req, int *msg)
{
    lr_state *s = rn->s;
    const pc_host *h = s->conf->host;
    const char *v = h->lookup(s->r, "bot.score");
    if (!v || lua_stringtonumber(L, v) == 0) lua_pushnil(L);
    int score = lua_gettop(L);
    bool changed = false;
    for (size_t i = 0; i < s->nrules; i++) {
        const lr_rule *ru = &s->rules[i];
        lr_span caps[LR_MAX_CAPTURES];
        unsigned ncaps;
        if (ru->bot_score == LUA_NOREF || !matches(ru, rn, caps, &ncaps)) continue;
        push_req_once(rn, req, msg);
        if (call_rule(L, rn, ru, ru->bot_score, *req, score, caps, ncaps, 1)) return 1;
        if (lua_type(L, -1) == LUA_TNUMBER) {
            lua_Number x = lua_tonumber(L, -1);
            lua_pushinteger(L, x != x ? 1 : x < 1 ? 1 : x > 99 ? 99 : (lua_Integer)(x + 0.5));
            lua_replace(L, score);
            changed = true;
        }
        lua_pop(L, 1);
    }
    if (changed) {
        int64_t x = (int64_t)lua_tointeger(L, score);
        h->publish_int(s->r, "bot.score", x);
        /* The bot plugin's flat access-log key says the same. */
        if (h->lookup(s->r, "bot_score")) h->publish_int(s->r, "bot_score", x);
    }
    return 0;
}

/* Runs protected: making req/msg tables may run out of memory, which must not abort the worker. */
static int run_rules(lua_State *L)
{
    run *rn = lua_touserdata(L, 1);
    lr_state *s = rn->s;
    int req = 0, msg = 0;
    if (rn->phase == PHASE_REQUEST && s->n_bot && adjust_bot_score(L, rn, &req, &msg)) return 0;
    for (size_t i = rn->first; i < s->nrules; i++) {
        const lr_rule *ru = &s->rules[i];
        int fn = hook_of(ru, rn->phase);
        lr_span caps[LR_MAX_CAPTURES];
        unsigned ncaps;
        if (fn == LUA_NOREF || !matches(ru, rn, caps, &ncaps)) continue;
        push_req_once(rn, &req, &msg);
        if (call_rule(L, rn, ru, fn, req, msg, caps, ncaps, 0)) return 0;
    }
    return 0;
}

/* After running out of memory: collect, and when the rules still hold most of the cap (data piling up in
 * globals), start over with a fresh state so the worker's rules work again. */
static void recover(lr_state *s)
{
    lua_gc(s->L, LUA_GCCOLLECT, 0);
    if (s->used <= s->conf->max_memory / 4 * 3) return;
    const lr_conf *c = s->conf;
    c->host->log(c->handle, PC_PLUGIN_LOG_WARN,
                 "Lua state holds %zu of %zu bytes after a full collection (rules keeping data in globals?): "
                 "starting a fresh state",
                 s->used, c->max_memory);
    lr_state_close(s);
    char err[1024];
    if (lr_state_open(s, c, err, sizeof err) < 0)
        c->host->log(c->handle, PC_PLUGIN_LOG_ERROR, "cannot rebuild the Lua state: %s", err);
}

static void report(lr_state *s, pc_request *r, const run *rn)
{
    const pc_host *h = s->conf->host;
    if (rn->err[0]) {
        const char *path = h->request_info(r, "path");
        h->log(s->conf->handle, PC_PLUGIN_LOG_ERROR, "rule \"%s\" (%s:%d) failed on %s (request %s): %s",
               rn->rule ? rn->rule->name : "-", rn->rule ? rn->rule->file : "-",
               rn->rule ? rn->rule->line : 0, path ? path : "-", h->request_info(r, "request_id"), rn->err);
        h->publish(r, "lua.error", rn->err);
    }
    if (rn->verdict != PC_CONTINUE && rn->rule) h->publish(r, "lua.rule", rn->rule->name);
}

static int evaluate(lr_state *s, pc_request *r, lr_reqstate *rs, const pc_message *m, int phase)
{
    const pc_host *h = s->conf->host;
    if (!s->L) {
        char err[1024];
        if (lr_state_open(s, s->conf, err, sizeof err) < 0) {
            h->log(s->conf->handle, PC_PLUGIN_LOG_ERROR, "no Lua state: %s", err);
            return PC_ERROR;
        }
    }
    run rn = {.s = s, .phase = phase, .verdict = PC_CONTINUE, .status = LUA_OK};
    rn.host = h->request_info(r, "authority");
    rn.path = h->request_info(r, "path");
    rn.host = rn.host ? rn.host : "";
    rn.path = rn.path ? rn.path : "";
    rn.hostlen = lr_host_len(rn.host);
    /* Captures of the host part come out lower-case, like req.host. */
    char host[256];
    if (rn.hostlen < sizeof host) {
        for (size_t i = 0; i < rn.hostlen; i++)
            host[i] = (rn.host[i] >= 'A' && rn.host[i] <= 'Z') ? (char)(rn.host[i] - 'A' + 'a') : rn.host[i];
        rn.host = host;
    }
    rn.pathlen = strlen(rn.path);
    /* Most requests match no rule: find that out in C, without touching the Lua state. */
    bool bot = phase == PHASE_REQUEST && s->n_bot;
    lr_span caps[LR_MAX_CAPTURES];
    unsigned ncaps;
    for (rn.first = 0; rn.first < s->nrules; rn.first++) {
        const lr_rule *ru = &s->rules[rn.first];
        if ((hook_of(ru, phase) != LUA_NOREF || (bot && ru->bot_score != LUA_NOREF)) &&
            matches(ru, &rn, caps, &ncaps))
            break;
    }
    if (rn.first == s->nrules) return PC_CONTINUE;
    if (bot) rn.first = 0; /* the loop over on_* hooks simply starts at the first match it finds */
    rn.rs = rs;
    s->r = r;
    s->m = m;
    s->denied = false;
    s->rule = NULL;
    s->mem_refused = false;
    lua_State *L = s->L;
    int top = lua_gettop(L);
    lua_pushcfunction(L, run_rules);
    lua_pushlightuserdata(L, &rn);
    int rc = lua_pcall(L, 1, 0, 0);
    if (rc != LUA_OK) {
        /* Outside any rule: building req or msg ran out of memory. */
        lr_error_text(s, rc, rn.err, sizeof rn.err);
        rn.status = rc;
        rn.verdict = s->denied ? PC_DENY : PC_ERROR;
        if (!rn.rule) rn.rule = s->rule;
    }
    lua_settop(L, top);
    lua_pushboolean(L, 0);
    lua_rawseti(L, LUA_REGISTRYINDEX, s->slot_req);
    lua_pushboolean(L, 0);
    lua_rawseti(L, LUA_REGISTRYINDEX, s->slot_msg);
    s->r = NULL;
    s->m = NULL;
    s->rule = NULL;
    report(s, r, &rn);
    if (rn.status == LUA_ERRMEM || s->mem_refused) recover(s);
    return rn.verdict;
}

static int on_request_headers(pc_request *r, void *ctx, void *state)
{
    lr_state *s = ctx;
    if (s->L && !s->n_request && !s->n_bot) return PC_CONTINUE; /* no state: evaluate() fails closed */
    return evaluate(s, r, state, NULL, PHASE_REQUEST);
}

static int on_request_message(pc_request *r, void *ctx, void *state, const pc_message *m)
{
    lr_state *s = ctx;
    if (s->L && !s->n_message) return PC_CONTINUE;
    return evaluate(s, r, state, m, PHASE_MESSAGE);
}

static void on_log(pc_request *r, void *ctx, void *state)
{
    (void)r;
    lr_state *s = ctx;
    lr_reqstate *rs = state;
    if (rs && rs->ref && s->L && rs->epoch == s->epoch) luaL_unref(s->L, LUA_REGISTRYINDEX, rs->ref);
    if (rs) rs->ref = 0;
}

PC_PLUGIN_EXPORT const pc_plugin pc_plugin_v2 = {
    .abi_version = PC_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pc_plugin),
    .name = "lua",
    .version = "2.0",
    .summary = "Lua page rules: match requests and messages, deny, route, adjust the bot score",
    .config = config_keys,
    .request_state_size = sizeof(lr_reqstate),
    .init = init,
    .destroy = destroy,
    .worker_init = worker_init,
    .worker_destroy = worker_destroy,
    .on_request_headers = on_request_headers,
    .on_request_message = on_request_message,
    .on_log = on_log,
};
