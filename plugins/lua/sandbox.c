/* The sandbox: a Lua state with a capped allocator, an instruction budget per call, only the base,
 * string, table, math and utf8 libraries (plus os.time and os.clock), text-only `load`, and no way to
 * reach files, processes, C modules, bytecode, the debug library, the collector's controls or
 * finalizers. Also compiles the rule files into the state's list of rules. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua_rules.h"

lr_state *lr_state_of(lua_State *L)
{
    return *(lr_state **)lua_getextraspace(L);
}

/* Every byte the state holds goes through here, so max_memory is a hard cap: Lua turns a refused
 * allocation into a "not enough memory" error that the rule's call returns. */
static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    lr_state *s = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        s->used -= old;
        return NULL;
    }
    if (nsize > old && s->used + (nsize - old) > s->conf->max_memory) {
        s->mem_refused = true;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p) return NULL;
    s->used = s->used - old + nsize;
    return p;
}

static int on_panic(lua_State *L)
{
    lr_state *s = lr_state_of(L);
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(no message)";
    s->conf->host->log(s->conf->handle, PC_PLUGIN_LOG_ERROR, "Lua panic (unprotected error): %s", msg);
    return 0; /* Lua aborts */
}

/* Count hook: the budget is spent. From now on every instruction raises again, so a rule cannot swallow
 * the error with pcall and go on looping. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lr_state *s = lr_state_of(L);
    if (!s->over_budget) {
        s->over_budget = true;
        lua_Debug where;
        if (lua_getstack(L, 0, &where) && lua_getinfo(L, "Sl", &where) && where.currentline > 0)
            snprintf(s->budget_where, sizeof s->budget_where, "%s:%d", where.short_src, where.currentline);
        else
            snprintf(s->budget_where, sizeof s->budget_where, "?");
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    }
    luaL_error(L, "%s: instruction budget of %d exceeded", s->budget_where, s->conf->max_instructions);
}

int lr_call(lr_state *s, int nargs, int nresults)
{
    s->over_budget = false;
    lua_sethook(s->L, budget_hook, LUA_MASKCOUNT, s->conf->max_instructions);
    int rc = lua_pcall(s->L, nargs, nresults, 0);
    lua_sethook(s->L, NULL, 0, 0);
    if (s->over_budget && rc == LUA_OK) {
        /* Cannot normally happen (see budget_hook), but never let an over-budget call count as done. */
        lua_settop(s->L, lua_gettop(s->L) - nresults);
        lua_pushfstring(s->L, "%s: instruction budget of %d exceeded", s->budget_where,
                        s->conf->max_instructions);
        rc = LUA_ERRRUN;
    }
    return rc;
}

const char *lr_error_text(lr_state *s, int status, char *buf, size_t len)
{
    if (status == LUA_ERRMEM) {
        snprintf(buf, len, "memory limit of %zu bytes reached (max_memory)", s->conf->max_memory);
        return buf;
    }
    if (s->over_budget) {
        snprintf(buf, len, "%s: instruction budget of %d exceeded (max_instructions)", s->budget_where,
                 s->conf->max_instructions);
        return buf;
    }
    int t = lua_type(s->L, -1);
    if (t == LUA_TSTRING)
        snprintf(buf, len, "%s", lua_tostring(s->L, -1));
    else
        snprintf(buf, len, "(error object is a %s value)", lua_typename(s->L, t));
    return buf;
}

/* ---- the sandboxed library ---- */

/* load(chunk [, chunkname [, mode [, env]]]): text chunks given as strings only; `mode` is ignored
 * because binary chunks (bytecode, which can break the VM) are never accepted. */
static int safe_load(lua_State *L)
{
    size_t len;
    const char *chunk = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, "=(load)");
    int status = luaL_loadbufferx(L, chunk, len, name, "t");
    if (status != LUA_OK) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    if (!lua_isnoneornil(L, 4)) {
        lua_pushvalue(L, 4);
        if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
    }
    return 1;
}

/* collectgarbage("count") only: the collector's controls belong to the edge. */
static int safe_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") != 0)
        return luaL_error(L, "collectgarbage(\"%s\") is not available to rules (only \"count\")", opt);
    lua_pushnumber(L,
                   (lua_Number)lua_gc(L, LUA_GCCOUNT, 0) + (lua_Number)lua_gc(L, LUA_GCCOUNTB, 0) / 1024.0);
    return 1;
}

/* setmetatable without __gc: a finalizer would run at a time no budget covers. */
static int safe_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc (finalizers) is not available to rules");
        lua_pop(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* print goes to the edge's error log (stdout may be the access log). */
static int safe_print(lua_State *L)
{
    lr_state *s = lr_state_of(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        int t = lua_type(L, i);
        if (i > 1) luaL_addchar(&b, '\t');
        if (t == LUA_TSTRING || t == LUA_TNUMBER) {
            lua_pushvalue(L, i);
            luaL_addvalue(&b); /* numbers convert in place of the copy */
        } else if (t == LUA_TBOOLEAN) {
            luaL_addstring(&b, lua_toboolean(L, i) ? "true" : "false");
        } else {
            luaL_addstring(&b, luaL_typename(L, i));
        }
    }
    luaL_pushresult(&b);
    s->conf->host->log(s->conf->handle, PC_PLUGIN_LOG_INFO, "print: %s", lua_tostring(L, -1));
    return 0;
}

static void open_lib(lua_State *L, const char *name, lua_CFunction open)
{
    luaL_requiref(L, name, open, 1);
    lua_pop(L, 1);
}

static void build_sandbox(lua_State *L)
{
    open_lib(L, LUA_GNAME, luaopen_base);
    open_lib(L, LUA_STRLIBNAME, luaopen_string);
    open_lib(L, LUA_TABLIBNAME, luaopen_table);
    open_lib(L, LUA_MATHLIBNAME, luaopen_math);
    open_lib(L, LUA_UTF8LIBNAME, luaopen_utf8);

    /* os: the clock functions only. */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    lua_createtable(L, 0, 2);
    lua_getfield(L, -2, "time");
    lua_setfield(L, -2, "time");
    lua_getfield(L, -2, "clock");
    lua_setfield(L, -2, "clock");
    lua_setglobal(L, LUA_OSLIBNAME);
    lua_pop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushnil(L);
    lua_setfield(L, -2, LUA_OSLIBNAME);
    lua_pop(L, 1);

    static const char *const removed[] = {"dofile", "loadfile", "require", "warn"};
    for (size_t i = 0; i < sizeof removed / sizeof removed[0]; i++) {
        lua_pushnil(L);
        lua_setglobal(L, removed[i]);
    }
    lua_pushcfunction(L, safe_load);
    lua_setglobal(L, "load");
    lua_pushcfunction(L, safe_collectgarbage);
    lua_setglobal(L, "collectgarbage");
    lua_pushcfunction(L, safe_print);
    lua_setglobal(L, "print");
    lua_getglobal(L, "setmetatable");
    lua_pushcclosure(L, safe_setmetatable, 1);
    lua_setglobal(L, "setmetatable");

    lua_getglobal(L, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);
    /* Hide the string metatable: rules share it, so none may change how strings behave for the others. */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);
}

/* ---- compiling the rule files ---- */

/* A table key for a message, without running any metamethod (no budget covers init's messages). */
static const char *key_text(lua_State *L, int idx, char *buf, size_t len)
{
    if (lua_type(L, idx) == LUA_TSTRING)
        snprintf(buf, len, "\"%s\"", lua_tostring(L, idx));
    else if (lua_isinteger(L, idx))
        snprintf(buf, len, "%lld", (long long)lua_tointeger(L, idx));
    else
        snprintf(buf, len, "(a %s)", luaL_typename(L, idx));
    return buf;
}

static const char *const rule_keys[] = {"name", "match", "on_request", "on_message", "bot_score"};

static lr_rule *new_rule(lua_State *L, lr_state *s)
{
    lr_rule *r = realloc(s->rules, (s->nrules + 1) * sizeof *r);
    if (!r) luaL_error(L, "out of memory");
    s->rules = r;
    r = &s->rules[s->nrules++];
    memset(r, 0, sizeof *r);
    r->on_request = r->on_message = r->bot_score = LUA_NOREF;
    return r;
}

static void add_pattern(lua_State *L, lr_rule *r, const char *at, int index, const char *text)
{
    lr_pattern *p = realloc(r->pats, (r->npats + 1) * sizeof *p);
    if (!p) luaL_error(L, "out of memory");
    r->pats = p;
    char err[256];
    if (lr_pattern_compile(text, &r->pats[r->npats], err, sizeof err) < 0)
        luaL_error(L, "%s: rule %d (%s): match \"%s\": %s", at, index, r->name, text, err);
    r->npats++;
}

/* The rule table at the top of the stack, item `index` of file f. */
static void compile_rule(lua_State *L, lr_state *s, const lr_file *f, int index)
{
    if (!lua_istable(L, -1))
        luaL_error(L, "%s: rule %d: expected a table, got %s", f->path, index, luaL_typename(L, -1));
    lr_rule *r = new_rule(L, s);
    r->file = f->path;
    /* The line of the rule's first function, so every later message can point into the file. */
    const char *bad_key = NULL;
    char kb[128];
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (!r->line && lua_isfunction(L, -1)) {
            lua_Debug ar;
            lua_pushvalue(L, -1);
            lua_getinfo(L, ">S", &ar);
            r->line = ar.linedefined;
        }
        bool known = false;
        if (lua_type(L, -2) == LUA_TSTRING)
            for (size_t k = 0; k < sizeof rule_keys / sizeof rule_keys[0]; k++)
                known |= strcmp(lua_tostring(L, -2), rule_keys[k]) == 0;
        if (!known && !bad_key) bad_key = key_text(L, -2, kb, sizeof kb);
        lua_pop(L, 1);
    }
    char at[4200];
    if (r->line)
        snprintf(at, sizeof at, "%s:%d", f->path, r->line);
    else
        snprintf(at, sizeof at, "%s", f->path);
    if (lua_getfield(L, -1, "name") == LUA_TSTRING) {
        r->name = strdup(lua_tostring(L, -1));
    } else if (lua_isnil(L, -1)) {
        const char *base = strrchr(f->path, '/');
        char buf[512];
        snprintf(buf, sizeof buf, "%s#%d", base ? base + 1 : f->path, index);
        r->name = strdup(buf);
    } else {
        luaL_error(L, "%s: rule %d: name must be a string", at, index);
    }
    lua_pop(L, 1);
    if (!r->name) luaL_error(L, "out of memory");
    /* Unknown keys are mistakes (say "on_requests"): refuse them rather than silently never run. */
    if (bad_key)
        luaL_error(L,
                   "%s: rule %d (%s): unknown key %s (valid: name, match, on_request, on_message, bot_score)",
                   at, index, r->name, bad_key);

    int t = lua_getfield(L, -1, "match");
    if (t == LUA_TSTRING) {
        add_pattern(L, r, at, index, lua_tostring(L, -1));
    } else if (t == LUA_TTABLE) {
        lua_Integer n = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_geti(L, -1, i) != LUA_TSTRING)
                luaL_error(L, "%s: rule %d (%s): match[%d] must be a string", at, index, r->name, (int)i);
            add_pattern(L, r, at, index, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        if (n == 0) luaL_error(L, "%s: rule %d (%s): match is an empty list", at, index, r->name);
    } else if (t != LUA_TNIL) {
        luaL_error(L, "%s: rule %d (%s): match must be a pattern string or a list of them", at, index,
                   r->name);
    }
    lua_pop(L, 1);

    int *slots[] = {&r->on_request, &r->on_message, &r->bot_score};
    for (size_t k = 0; k < 3; k++) {
        t = lua_getfield(L, -1, rule_keys[k + 2]);
        if (t == LUA_TFUNCTION) {
            *slots[k] = luaL_ref(L, LUA_REGISTRYINDEX);
            continue;
        }
        if (t != LUA_TNIL)
            luaL_error(L, "%s: rule %d (%s): %s must be a function", at, index, r->name, rule_keys[k + 2]);
        lua_pop(L, 1);
    }
    if (r->on_request == LUA_NOREF && r->on_message == LUA_NOREF && r->bot_score == LUA_NOREF)
        luaL_error(L, "%s: rule %d (%s): no hook (on_request, on_message or bot_score)", at, index, r->name);
}

static void compile_file(lua_State *L, lr_state *s, const lr_file *f)
{
    char chunkname[4096];
    snprintf(chunkname, sizeof chunkname, "@%s", f->path);
    if (luaL_loadbufferx(L, f->src, f->len, chunkname, "t") != LUA_OK)
        lua_error(L); /* "file:line: syntax error ..." */
    /* Each file gets its own globals, reading through to the shared sandbox: a global one file sets
     * never changes another file. */
    lua_newtable(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->mt_env);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setupvalue(L, -3, 1);
    lua_insert(L, -2); /* env, chunk */
    int rc = lr_call(s, 0, 1);
    if (rc != LUA_OK) {
        char buf[1024];
        lr_error_text(s, rc, buf, sizeof buf);
        s->over_budget = false; /* the message says it; the outer call's error is this one */
        if (rc == LUA_ERRMEM) luaL_error(L, "%s: %s", f->path, buf);
        lua_pushstring(L, buf);
        lua_error(L);
    }
    if (!lua_istable(L, -1))
        luaL_error(L, "%s: must return a list of rules, got %s", f->path, luaL_typename(L, -1));
    lua_Integer n = luaL_len(L, -1);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n) {
            char kb[128];
            luaL_error(L, "%s: the returned table must be a list of rules (found key %s)", f->path,
                       key_text(L, -1, kb, sizeof kb));
        }
    }
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, -1, i);
        compile_rule(L, s, f, (int)i);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    /* A file may also define a global bot_score(req, score): it adjusts the score of every request. */
    lua_pushliteral(L, "bot_score");
    if (lua_rawget(L, -2) == LUA_TFUNCTION) {
        lr_rule *r = new_rule(L, s);
        r->file = f->path;
        lua_Debug ar;
        lua_pushvalue(L, -1);
        lua_getinfo(L, ">S", &ar);
        r->line = ar.linedefined;
        char buf[512];
        const char *base = strrchr(f->path, '/');
        snprintf(buf, sizeof buf, "%s:bot_score", base ? base + 1 : f->path);
        if (!(r->name = strdup(buf))) luaL_error(L, "out of memory");
        r->bot_score = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* env */
}

static int open_protected(lua_State *L)
{
    lr_state *s = lua_touserdata(L, 1);
    lua_settop(L, 0);
    build_sandbox(L);
    /* Files' globals read through to the sandbox. */
    lua_createtable(L, 0, 1);
    lua_pushglobaltable(L);
    lua_setfield(L, -2, "__index");
    s->mt_env = luaL_ref(L, LUA_REGISTRYINDEX);
    lr_bridge_setup(L, s);
    for (size_t i = 0; i < s->conf->nfiles; i++)
        compile_file(L, s, &s->conf->files[i]);
    for (size_t i = 0; i < s->nrules; i++) {
        s->n_request += s->rules[i].on_request != LUA_NOREF;
        s->n_message += s->rules[i].on_message != LUA_NOREF;
        s->n_bot += s->rules[i].bot_score != LUA_NOREF;
    }
    return 0;
}

static void free_rules(lr_state *s)
{
    for (size_t i = 0; i < s->nrules; i++) {
        for (size_t k = 0; k < s->rules[i].npats; k++)
            lr_pattern_free(&s->rules[i].pats[k]);
        free(s->rules[i].pats);
        free(s->rules[i].name);
    }
    free(s->rules);
    s->rules = NULL;
    s->nrules = s->n_request = s->n_message = s->n_bot = 0;
}

void lr_state_close(lr_state *s)
{
    if (s->L) lua_close(s->L);
    s->L = NULL;
    free_rules(s);
}

int lr_state_open(lr_state *s, const lr_conf *conf, char *err, size_t errlen)
{
    s->conf = conf;
    s->used = 0;
    s->epoch++;
    s->L = lua_newstate(capped_alloc, s);
    if (!s->L) {
        snprintf(err, errlen, "cannot create a Lua state within max_memory (%zu bytes)", conf->max_memory);
        return -1;
    }
    *(lr_state **)lua_getextraspace(s->L) = s;
    lua_atpanic(s->L, on_panic);
    lua_pushcfunction(s->L, open_protected);
    lua_pushlightuserdata(s->L, s);
    int rc = lua_pcall(s->L, 1, 0, 0);
    if (rc != LUA_OK) {
        char buf[1024];
        snprintf(err, errlen, "%s", lr_error_text(s, rc, buf, sizeof buf));
        lr_state_close(s);
        return -1;
    }
    return 0;
}
