/* The request as rules see it: `req` (fields computed on first read and kept, actions as methods) and
 * `msg` (a decoded request message). Both only reach the request while their hook runs: a table kept
 * in a global and used later raises an error instead of touching a request that may be gone. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "lua_rules.h"

static const char *const grpc_names[17] = {
    "OK",        "CANCELLED",       "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS",  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",    "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED",
};

/* HTTP statuses a rule may give map to the gRPC status a gRPC client understands for them. */
static int from_http(lua_Integer http)
{
    switch (http) {
    case 400:
        return PC_GRPC_INVALID_ARGUMENT;
    case 401:
        return PC_GRPC_UNAUTHENTICATED;
    case 403:
        return PC_GRPC_PERMISSION_DENIED;
    case 404:
        return PC_GRPC_NOT_FOUND;
    case 409:
        return PC_GRPC_ABORTED;
    case 429:
        return PC_GRPC_RESOURCE_EXHAUSTED;
    case 501:
        return PC_GRPC_UNIMPLEMENTED;
    case 503:
        return PC_GRPC_UNAVAILABLE;
    case 504:
        return PC_GRPC_DEADLINE_EXCEEDED;
    default:
        return http >= 500 ? PC_GRPC_INTERNAL : PC_GRPC_PERMISSION_DENIED;
    }
}

/* A status given to req:deny: gRPC name, gRPC code or HTTP status; -1 when unknown. */
static int status_code(lua_State *L, int idx)
{
    if (lua_isnoneornil(L, idx)) return PC_GRPC_PERMISSION_DENIED;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        if (!lua_isinteger(L, idx)) return -1;
        lua_Integer n = lua_tointeger(L, idx);
        if (n >= 1 && n <= 16) return (int)n;
        return n >= 400 && n <= 599 ? from_http(n) : -1;
    }
    if (lua_type(L, idx) != LUA_TSTRING) return -1;
    const char *s = lua_tostring(L, idx);
    for (int i = 1; i <= 16; i++)
        if (strcasecmp(s, grpc_names[i]) == 0) return i;
    return -1;
}

/* ---- current request checks ---- */

static bool is_current(lr_state *s, lua_State *L, int slot, int idx)
{
    if (!s->r) return false;
    lua_rawgeti(L, LUA_REGISTRYINDEX, slot);
    bool same = lua_rawequal(L, -1, idx);
    lua_pop(L, 1);
    return same;
}

static lr_state *check_req(lua_State *L, int idx, const char *what)
{
    lr_state *s = lr_state_of(L);
    if (!is_current(s, L, s->slot_req, idx))
        luaL_error(L, "%s: not the req of the hook running now (req tables are only valid during their hook)",
                   what);
    return s;
}

/* ---- fields ---- */

static void push_info(lua_State *L, lr_state *s, const char *key)
{
    const char *v = s->conf->host->request_info(s->r, key);
    if (v)
        lua_pushstring(L, v);
    else
        lua_pushnil(L);
}

static void set_info(lua_State *L, lr_state *s, const char *field, const char *key)
{
    push_info(L, s, key);
    lua_setfield(L, -2, field);
}

static void push_host(lua_State *L, lr_state *s)
{
    const char *a = s->conf->host->request_info(s->r, "authority");
    if (!a) {
        lua_pushnil(L);
        return;
    }
    size_t n = lr_host_len(a);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, n);
    for (size_t i = 0; i < n; i++)
        p[i] = (a[i] >= 'A' && a[i] <= 'Z') ? (char)(a[i] - 'A' + 'a') : a[i];
    luaL_pushresultsize(&b, n);
}

/* req.headers: lower-case names as HTTP/2 sends them; a repeated header joined as HTTP allows ("; " for
 * cookie, ", " otherwise). Filled lazily (most rules read one or two headers of many): __index looks one
 * name up and keeps it, __pairs fills in the rest. set_header and remove_header keep it in step. */
static bool current_headers(lr_state *s, lua_State *L, int idx)
{
    if (!s->r) return false;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->slot_req);
    lua_pushliteral(L, "headers");
    lua_rawget(L, -2);
    bool same = lua_rawequal(L, -1, idx);
    lua_pop(L, 2);
    return same;
}

/* Push the value of header `name` (joined when repeated); false when absent. */
static bool push_header(lua_State *L, lr_state *s, const char *name)
{
    const pc_host *h = s->conf->host;
    size_t n = h->header_count(s->r), found = 0;
    const char *sep = strcmp(name, "cookie") == 0 ? "; " : ", ";
    for (size_t i = 0; i < n; i++) {
        const char *k, *v;
        if (h->header_at(s->r, i, &k, &v) != 0 || strcmp(k, name) != 0) continue;
        if (found++) lua_pushstring(L, sep);
        lua_pushstring(L, v);
    }
    if (found > 1) lua_concat(L, (int)(2 * found - 1));
    return found > 0;
}

static int headers_index(lua_State *L)
{
    lr_state *s = lr_state_of(L);
    size_t len;
    if (lua_type(L, 2) != LUA_TSTRING) return 0;
    const char *k = lua_tolstring(L, 2, &len);
    if (len == 0 || len >= 256) return 0;
    if (!current_headers(s, L, 1)) return luaL_error(L, "req.headers: not the req of the hook running now");
    char name[256];
    for (size_t i = 0; i <= len; i++)
        name[i] = (k[i] >= 'A' && k[i] <= 'Z') ? (char)(k[i] - 'A' + 'a') : k[i];
    if (!push_header(L, s, name)) return 0;
    lua_pushvalue(L, -1);
    lua_setfield(L, 1, name);
    return 1;
}

static int headers_pairs(lua_State *L)
{
    lr_state *s = lr_state_of(L);
    if (!current_headers(s, L, 1)) return luaL_error(L, "req.headers: not the req of the hook running now");
    const pc_host *h = s->conf->host;
    size_t n = h->header_count(s->r);
    for (size_t i = 0; i < n; i++) {
        const char *k, *v;
        if (h->header_at(s->r, i, &k, &v) != 0) continue;
        lua_pushstring(L, k);
        if (lua_rawget(L, 1) == LUA_TNIL && push_header(L, s, k)) lua_setfield(L, 1, k);
        lua_settop(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1)); /* the library's next, whatever a rule did to the global */
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

static void push_number_or_string(lua_State *L, const char *v)
{
    if (!v)
        lua_pushnil(L);
    else if (lua_stringtonumber(L, v) == 0)
        lua_pushstring(L, v);
}

/* A published value with its type: integers and numbers as Lua numbers, booleans as booleans,
 * strings as strings (with `numeric`, a string that reads as a number as a number); nil when
 * unset. Returns whether it was set. */
static int push_value(lua_State *L, lr_state *s, const char *key, int numeric)
{
    pc_value v;
    if (s->conf->host->lookup_value(s->r, key, &v) < 0) return 0;
    switch (v.type) {
    case PC_VALUE_INT:
        lua_pushinteger(L, (lua_Integer)v.i);
        break;
    case PC_VALUE_NUMBER:
        lua_pushnumber(L, v.d);
        break;
    case PC_VALUE_BOOL:
        lua_pushboolean(L, v.i != 0);
        break;
    default:
        if (numeric)
            push_number_or_string(L, v.text);
        else
            lua_pushstring(L, v.text);
    }
    return 1;
}

/* req.bot.<k>: the bot plugin's "bot.<k>" (or "bot_<k>"), numbers as numbers. Read on every access:
 * a bot_score hook may change the score during the request. */
static int bot_index(lua_State *L)
{
    lr_state *s = check_req(L, lua_upvalueindex(1), "req.bot");
    const char *k = luaL_checkstring(L, 2);
    char key[128];
    snprintf(key, sizeof key, "bot.%s", k);
    if (push_value(L, s, key, 1)) return 1;
    snprintf(key, sizeof key, "bot_%s", k);
    if (!push_value(L, s, key, 1)) lua_pushnil(L);
    return 1;
}

/* req.values[key]: what earlier plugins (and rules) published, typed. */
static int values_index(lua_State *L)
{
    lr_state *s = check_req(L, lua_upvalueindex(1), "req.values");
    if (!push_value(L, s, luaL_checkstring(L, 2), 0)) lua_pushnil(L);
    return 1;
}

/* A read-only view whose __index reaches the request through its own req (upvalue). */
static void push_view(lua_State *L, int req, lua_CFunction index)
{
    lua_newtable(L);
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, req);
    lua_pushcclosure(L, index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
}

static int req_index(lua_State *L)
{
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1; /* a method */
    lua_pop(L, 1);
    if (lua_type(L, 2) != LUA_TSTRING) return 0;
    const char *k = lua_tostring(L, 2);
    lr_state *s = lr_state_of(L);
    if (!is_current(s, L, s->slot_req, 1))
        return luaL_error(
            L,
            "req.%s: not the req of the hook running now (req tables are only valid during their "
            "hook)",
            k);
    bool keep = true;
    if (!strcmp(k, "host")) {
        push_host(L, s);
    } else if (!strcmp(k, "path") || !strcmp(k, "method") || !strcmp(k, "scheme") ||
               !strcmp(k, "authority") || !strcmp(k, "zone") || !strcmp(k, "request_id")) {
        push_info(L, s, k);
    } else if (!strcmp(k, "origin")) {
        push_info(L, s, k);
        keep = false; /* req:route() changes it */
    } else if (!strcmp(k, "is_grpc")) {
        const char *g = s->conf->host->request_info(s->r, "grpc");
        lua_pushboolean(L, g && g[0] == '1');
    } else if (!strcmp(k, "grpc")) {
        lua_createtable(L, 0, 3);
        set_info(L, s, "service", "grpc.service");
        set_info(L, s, "method", "grpc.method");
        set_info(L, s, "subtype", "grpc.subtype");
    } else if (!strcmp(k, "client")) {
        lua_createtable(L, 0, 2);
        set_info(L, s, "ip", "client.ip");
        const char *port = s->conf->host->request_info(s->r, "client.port");
        push_number_or_string(L, port);
        lua_setfield(L, -2, "port");
    } else if (!strcmp(k, "tls")) {
        static const char *const keys[] = {"sni", "alpn",     "version", "cipher", "client_subject",
                                           "ja3", "ja3_hash", "ja4"};
        lua_createtable(L, 0, 8);
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            char key[32];
            snprintf(key, sizeof key, "tls.%s", keys[i]);
            set_info(L, s, keys[i], key);
        }
    } else if (!strcmp(k, "h2")) {
        lua_createtable(L, 0, 1);
        set_info(L, s, "fingerprint", "h2.fingerprint");
    } else if (!strcmp(k, "headers")) {
        lua_newtable(L);
        lua_rawgeti(L, LUA_REGISTRYINDEX, s->mt_headers);
        lua_setmetatable(L, -2);
    } else if (!strcmp(k, "bot")) {
        push_view(L, 1, bot_index);
    } else if (!strcmp(k, "values")) {
        push_view(L, 1, values_index);
    } else {
        return 0;
    }
    if (keep) {
        lua_pushvalue(L, 2);
        lua_pushvalue(L, -2);
        lua_rawset(L, 1);
    }
    return 1;
}

/* ---- actions ---- */

/* Header names as HTTP/2 wants them (lower-case); -1 when not a valid name. */
static int header_name(lua_State *L, int idx, char *buf, size_t len)
{
    size_t n;
    const char *s = luaL_checklstring(L, idx, &n);
    if (n == 0 || n >= len) return -1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if ((unsigned char)c <= 0x20 || c == 0x7f || c == ':' || (unsigned char)c >= 0x80) return -1;
        buf[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    buf[n] = '\0';
    return 0;
}

/* A field value HTTP/2 can carry: no NUL, CR or LF. */
static const char *header_value(lua_State *L, int idx)
{
    size_t n;
    const char *v = luaL_checklstring(L, idx, &n);
    for (size_t i = 0; i < n; i++)
        if (v[i] == '\0' || v[i] == '\r' || v[i] == '\n') return NULL;
    return v;
}

/* Keep req.headers (when already read) in step with a change: forget the name, the next read looks
 * it up again. */
static void sync_header(lua_State *L, const char *name)
{
    lua_pushliteral(L, "headers");
    if (lua_rawget(L, 1) == LUA_TTABLE) {
        lua_pushnil(L);
        lua_setfield(L, -2, name);
    }
    lua_pop(L, 1);
}

static int m_deny(lua_State *L)
{
    lr_state *s = check_req(L, 1, "req:deny");
    int code = status_code(L, 2);
    if (code < 0)
        return luaL_error(L,
                          "req:deny: unknown status %s (a gRPC status name or number 1-16, or an HTTP status "
                          "400-599)",
                          lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : luaL_typename(L, 2));
    char msg[512];
    snprintf(msg, sizeof msg, "%s", luaL_optstring(L, 3, "denied"));
    /* An HTTP status is what plain HTTP gets; gRPC calls get its gRPC equivalent. */
    lua_Integer http = lua_type(L, 2) == LUA_TNUMBER && lua_isinteger(L, 2) ? lua_tointeger(L, 2) : 0;
    if (http >= 400 && http <= 599 && PC_HOST_HAS(s->conf->host, deny_http))
        s->conf->host->deny_http(s->r, (int)http, code, msg);
    else
        s->conf->host->deny(s->r, code, msg);
    s->denied = true;
    lua_pushboolean(L, 1);
    return 1;
}

static int m_set_header(lua_State *L)
{
    lr_state *s = check_req(L, 1, "req:set_header");
    char name[256];
    const char *value = header_value(L, 3);
    bool ok = header_name(L, 2, name, sizeof name) == 0 && value &&
              s->conf->host->header_set(s->r, name, value) == 0;
    if (ok) sync_header(L, name);
    lua_pushboolean(L, ok);
    return 1;
}

static int m_remove_header(lua_State *L)
{
    lr_state *s = check_req(L, 1, "req:remove_header");
    char name[256];
    bool ok = header_name(L, 2, name, sizeof name) == 0 && s->conf->host->header_remove(s->r, name) == 0;
    if (ok) sync_header(L, name);
    lua_pushboolean(L, ok);
    return 1;
}

static int m_set_response_header(lua_State *L)
{
    lr_state *s = check_req(L, 1, "req:set_response_header");
    char name[256];
    const char *value = header_value(L, 3);
    lua_pushboolean(L, header_name(L, 2, name, sizeof name) == 0 && value &&
                           s->conf->host->set_response_header(s->r, name, value) == 0);
    return 1;
}

static int m_route(lua_State *L)
{
    lr_state *s = check_req(L, 1, "req:route");
    lua_pushboolean(L, s->conf->host->route(s->r, luaL_checkstring(L, 2)) == 0);
    return 1;
}

static int m_skip(lua_State *L)
{
    lr_state *s = check_req(L, 1, "req:skip");
    lua_pushboolean(L, s->conf->host->skip(s->r, luaL_checkstring(L, 2)) == 0);
    return 1;
}

static int m_log(lua_State *L)
{
    lr_state *s = check_req(L, 1, "req:log");
    const char *text = luaL_checkstring(L, 2);
    s->conf->host->log(s->conf->handle, PC_PLUGIN_LOG_INFO, "rule \"%s\" (%s:%d) request %s: %.900s",
                       s->rule ? s->rule->name : "?", s->rule ? s->rule->file : "?",
                       s->rule ? s->rule->line : 0, s->conf->host->request_info(s->r, "request_id"), text);
    return 0;
}

/* req:publish(key, value): a Lua integer, number or boolean is published with that type. */
static int m_publish(lua_State *L)
{
    lr_state *s = check_req(L, 1, "req:publish");
    const char *key = luaL_checkstring(L, 2);
    const pc_host *h = s->conf->host;
    int rc;
    if (lua_type(L, 3) == LUA_TBOOLEAN)
        rc = h->publish_bool(s->r, key, lua_toboolean(L, 3));
    else if (lua_isinteger(L, 3))
        rc = h->publish_int(s->r, key, (int64_t)lua_tointeger(L, 3));
    else if (lua_type(L, 3) == LUA_TNUMBER)
        rc = h->publish_number(s->r, key, (double)lua_tonumber(L, 3));
    else
        rc = h->publish(s->r, key, luaL_checkstring(L, 3));
    lua_pushboolean(L, rc == 0);
    return 1;
}

static int m_lookup(lua_State *L)
{
    lr_state *s = check_req(L, 1, "req:lookup");
    if (!push_value(L, s, luaL_checkstring(L, 2), 0)) lua_pushnil(L);
    return 1;
}

/* ---- msg ---- */

static void push_field(lua_State *L, const pc_field *f)
{
    switch (f->kind) {
    case PC_FIELD_UINT:
        if (f->u64 <= (uint64_t)LUA_MAXINTEGER)
            lua_pushinteger(L, (lua_Integer)f->u64);
        else
            lua_pushnumber(L, (lua_Number)f->u64);
        break;
    case PC_FIELD_INT:
        lua_pushinteger(L, (lua_Integer)f->i64);
        break;
    case PC_FIELD_BOOL:
        lua_pushboolean(L, f->u64 != 0);
        break;
    case PC_FIELD_FLOAT:
    case PC_FIELD_DOUBLE:
        lua_pushnumber(L, f->f64);
        break;
    case PC_FIELD_MESSAGE:
        lua_pushboolean(L, 1);
        break;
    default:
        lua_pushlstring(L, f->str ? f->str : "", f->str_len);
        break;
    }
}

static int msg_index(lua_State *L)
{
    if (lua_type(L, 2) != LUA_TSTRING) return 0;
    const char *k = lua_tostring(L, 2);
    lr_state *s = lr_state_of(L);
    bool fields = !strcmp(k, "fields"), all = !strcmp(k, "all"), error = !strcmp(k, "error");
    if (!fields && !all && !error && strcmp(k, "json") != 0) return 0;
    if (!is_current(s, L, s->slot_msg, 1) || !s->m)
        return luaL_error(L, "msg.%s: not the msg of the hook running now", k);
    const pc_host *h = s->conf->host;
    if (!fields && !all && !error) {
        const char *json = h->message_json(s->r, s->m);
        if (json)
            lua_pushstring(L, json);
        else
            lua_pushnil(L);
    } else {
        const pc_field *f;
        char err[256] = "";
        long n = h->message_fields(s->r, s->m, &f, err, sizeof err);
        if (error) {
            if (n < 0)
                lua_pushstring(L, err[0] ? err : "not protobuf");
            else
                lua_pushboolean(L, 0); /* kept as false: decoded fine */
        } else {
            lua_createtable(L, 0, n > 0 && n < 256 ? (int)n : 0);
            for (long i = 0; i < n; i++) {
                if (fields) {
                    /* The last value wins, as a protobuf parser keeps for a singular field: a rule sees what
                     * the origin will act on even when a field is sent twice. */
                    push_field(L, &f[i]);
                    lua_setfield(L, -2, f[i].path);
                } else {
                    if (lua_getfield(L, -1, f[i].path) != LUA_TTABLE) {
                        lua_pop(L, 1);
                        lua_newtable(L);
                        lua_pushvalue(L, -1);
                        lua_setfield(L, -3, f[i].path);
                    }
                    push_field(L, &f[i]);
                    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
                    lua_pop(L, 1);
                }
            }
        }
    }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
}

/* ---- setup and per-hook helpers ---- */

static int ref_new(lua_State *L)
{
    lua_pushboolean(L, 0);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

static int no_write(lua_State *L)
{
    return luaL_error(L, "req.captures of a pattern without wildcards is empty");
}

void lr_bridge_setup(lua_State *L, lr_state *s)
{
    s->slot_req = ref_new(L);
    s->slot_msg = ref_new(L);

    static const luaL_Reg methods[] = {
        {"deny", m_deny},
        {"set_header", m_set_header},
        {"remove_header", m_remove_header},
        {"route", m_route},
        {"skip", m_skip},
        {"set_response_header", m_set_response_header},
        {"log", m_log},
        {"publish", m_publish},
        {"lookup", m_lookup},
        {NULL, NULL},
    };
    lua_createtable(L, 0, 3);
    luaL_newlib(L, methods);
    lua_pushcclosure(L, req_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    s->mt_req = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, msg_index);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    s->mt_msg = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, headers_index);
    lua_setfield(L, -2, "__index");
    lua_getglobal(L, "next");
    lua_pushcclosure(L, headers_pairs, 1);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    s->mt_headers = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_newtable(L);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, no_write);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    s->no_captures = luaL_ref(L, LUA_REGISTRYINDEX);
}

void lr_push_req(lr_state *s, lr_reqstate *rs)
{
    lua_State *L = s->L;
    if (rs && rs->ref && rs->epoch == s->epoch) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, rs->ref);
    } else {
        lua_createtable(L, 0, 8);
        lua_rawgeti(L, LUA_REGISTRYINDEX, s->mt_req);
        lua_setmetatable(L, -2);
        /* Kept for the request's message hooks, when there are any. */
        if (rs && s->n_message) {
            lua_pushvalue(L, -1);
            rs->ref = luaL_ref(L, LUA_REGISTRYINDEX);
            rs->epoch = s->epoch;
        }
    }
    lua_pushvalue(L, -1);
    lua_rawseti(L, LUA_REGISTRYINDEX, s->slot_req);
}

void lr_push_msg(lr_state *s)
{
    lua_State *L = s->L;
    lua_createtable(L, 0, 4);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->mt_msg);
    lua_setmetatable(L, -2);
    lua_pushinteger(L, (lua_Integer)s->m->index);
    lua_setfield(L, -2, "index");
    lua_pushinteger(L, (lua_Integer)s->m->len);
    lua_setfield(L, -2, "size");
    lua_pushboolean(L, s->m->compressed);
    lua_setfield(L, -2, "compressed");
    lua_pushvalue(L, -1);
    lua_rawseti(L, LUA_REGISTRYINDEX, s->slot_msg);
}

void lr_set_rule_fields(lr_state *s, int req, const lr_rule *rule, const lr_span *caps, unsigned ncaps)
{
    lua_State *L = s->L;
    if (ncaps == 0) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, s->no_captures);
    } else {
        lua_createtable(L, (int)ncaps, 0);
        for (unsigned i = 0; i < ncaps; i++) {
            lua_pushlstring(L, caps[i].s, caps[i].len);
            lua_rawseti(L, -2, i + 1);
        }
    }
    lua_setfield(L, req, "captures");
    lua_pushstring(L, rule->name);
    lua_setfield(L, req, "rule");
}
