/* Lua page rules tested offline. The config is loaded and its plugins initialised exactly as `run`
 * would, for one worker; each case becomes a request, built by the request constructor as the proxy
 * builds it (without a pipe: nothing to resume, no response), that goes through the real chain code:
 * request-headers hooks, then each message. So a case tests the rules as they run in production, host
 * functions included, without traffic. */
#include "rules_test.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "chain.h"
#include "config.h"
#include "grpc_status.h"
#include "log.h"
#include "metrics.h"
#include "plugin_loader.h"
#include "protobuf.h"
#include "request.h"
#include "worker.h"
#include "yaml_tree.h"

struct pc_rules_env {
    pc_config *cfg;
    pc_runtime rt;
    pc_worker *w;
    pc_gen gen;
    void **wctx;
    const pc_plugin **saved; /* each plugin's own descriptor, while the offline one stands in */
};

/* Stands in for every plugin but lua: same name in the chain (so req:skip() works), no hooks. */
static const pc_plugin offline = {
    .abi_version = PC_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pc_plugin),
    .name = "offline",
};

static bool is_lua(const pc_loaded_plugin *lp)
{
    return lp->desc && lp->desc->name && !strcmp(lp->desc->name, "lua");
}

void pc__rules_env_close(pc_rules_env *env)
{
    if (!env) return;
    pc_plugins *ps = env->rt.plugins;
    if (ps && env->saved)
        for (size_t i = 0; i < ps->n; i++)
            if (env->saved[i]) ps->p[i].desc = env->saved[i];
    if (ps && env->wctx) pc__plugins_worker_destroy(ps, env->wctx);
    pc__plugins_free(ps);
    free(env->saved);
    if (env->w) pc__metrics_free(env->w->metrics);
    free(env->w);
    pc__config_free(env->cfg);
    free(env);
}

pc_rules_env *pc__rules_env_open(const char *config_path, char *err, size_t errlen)
{
    pc_rules_env *env = calloc(1, sizeof *env);
    if (!env) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (pc__config_load(config_path, &env->cfg, err, errlen) != 0) {
        free(env);
        return NULL;
    }
    env->rt.cfg = env->cfg;
    /* Like `run`: a build tree keeps its plugins next to the binary. */
    char exe[4096];
    size_t exelen = sizeof exe;
    if (uv_exepath(exe, &exelen) != 0) snprintf(exe, sizeof exe, ".");
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    if (pc__plugins_load(env->cfg, exe, &env->rt.plugins, err, errlen) < 0) goto fail;
    pc_plugins *ps = env->rt.plugins;
    size_t nlua = 0;
    for (size_t i = 0; i < ps->n; i++)
        nlua += is_lua(&ps->p[i]);
    if (!nlua) {
        snprintf(err, errlen,
                 "%s: no lua plugin in the plugins list (add `- name: lua` with `config: {dir: ...}`)",
                 config_path);
        goto fail;
    }
    if (!(env->w = calloc(1, sizeof *env->w)) || !(env->w->metrics = pc__metrics_new())) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (pc__plugins_worker_init(ps, 0, &env->wctx, err, errlen) < 0) goto fail;
    if (!(env->saved = calloc(ps->n ? ps->n : 1, sizeof *env->saved))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < ps->n; i++)
        if (!is_lua(&ps->p[i])) {
            env->saved[i] = ps->p[i].desc;
            ps->p[i].desc = &offline;
        }
    env->gen =
        (pc_gen){.refs = 1, .worker = env->w, .rt = &env->rt, .cfg = env->cfg, .plugin_ctx = env->wctx};
    return env;
fail:
    pc__rules_env_close(env);
    return NULL;
}

/* ---- one request ---- */

static int add(pc_headers *h, const char *name, const char *value)
{
    return pc__headers_add_str(h, name, value);
}

/* A case's own header, named as an HTTP/2 client sends it: in lower case (RFC 9113 8.2.1). */
static int add_lower(pc_headers *h, const char *name, const char *value)
{
    char *low = strdup(name);
    if (!low) return -1;
    for (char *c = low; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    int rv = add(h, low, value);
    free(low);
    return rv;
}

/* After the log hooks, as the proxy ends a request. */
static void free_request(pc_request *r)
{
    pc__chain_log(r);
    pc__request_free(r);
    free(r);
}

void pc__rules_result_free(pc_rules_env *env, pc_rules_result *res)
{
    (void)env;
    if (res->req) free_request(res->req);
    memset(res, 0, sizeof *res);
}

static pc_conn_shared *make_conn(const pc_rules_request *rq)
{
    pc_conn_shared *cs = calloc(1, sizeof *cs);
    if (!cs) return NULL;
    cs->refs = 1;
    snprintf(cs->ip, sizeof cs->ip, "%s", rq->client_ip ? rq->client_ip : "192.0.2.1");
    snprintf(cs->port, sizeof cs->port, "%u",
             (unsigned)(uint16_t)(rq->client_port ? rq->client_port : 40000));
    cs->info.client_ip = cs->ip;
    cs->info.client_port = (uint16_t)(rq->client_port ? rq->client_port : 40000);
    cs->info.tls = !rq->cleartext;
    cs->info.alpn = rq->cleartext ? "h2c" : "h2";
    if (!rq->cleartext) {
        snprintf(cs->sni, sizeof cs->sni, "%s", rq->sni ? rq->sni : rq->host);
        snprintf(cs->version, sizeof cs->version, "%s", rq->tls_version ? rq->tls_version : "TLSv1.3");
        snprintf(cs->cipher, sizeof cs->cipher, "TLS_AES_128_GCM_SHA256");
        cs->info.sni = cs->sni[0] ? cs->sni : NULL;
        cs->info.tls_version = cs->version;
        cs->info.tls_cipher = cs->cipher;
        snprintf(cs->ja3, sizeof cs->ja3, "%s", rq->ja3 ? rq->ja3 : "");
        snprintf(cs->ja4, sizeof cs->ja4, "%s", rq->ja4 ? rq->ja4 : "");
    }
    snprintf(cs->h2fp, sizeof cs->h2fp, "%s", rq->h2_fingerprint ? rq->h2_fingerprint : "");
    return cs;
}

int pc__rules_env_run(pc_rules_env *env, const pc_rules_request *rq, pc_rules_result *res, char *err,
                      size_t errlen)
{
    memset(res, 0, sizeof *res);
    res->message_index = -1;
    const char *host = rq->host ? rq->host : "";
    /* The header block an HTTP/2 client would send. */
    pc_headers h = {0};
    int bad = add(&h, ":method", rq->method ? rq->method : "POST") |
              add(&h, ":scheme", rq->cleartext ? "http" : "https") | add(&h, ":authority", host) |
              add(&h, ":path", rq->path ? rq->path : "/");
    if (rq->grpc) bad |= add(&h, "content-type", "application/grpc") | add(&h, "te", "trailers");
    for (size_t i = 0; i < rq->nheaders; i++)
        bad |= add_lower(&h, rq->headers[2 * i], rq->headers[2 * i + 1]);
    pc_conn_shared *conn = make_conn(rq);
    pc_request *r = calloc(1, sizeof *r);
    if (bad || !conn || !r) {
        pc__headers_free(&h);
        free(conn);
        free(r);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pc__request_init(r, &h, &env->gen, conn, NULL, NULL);
    pc__conn_shared_release(conn); /* the request holds its own reference */
    char hostpart[256];
    if (!pc__request_select_zone(r, hostpart, sizeof hostpart)) {
        snprintf(err, errlen,
                 "no zone of the config serves host \"%s\" (the edge answers NOT_FOUND before any rule)",
                 host);
        pc__request_free(r);
        free(r);
        return -1;
    }
    if (r->is_grpc && !r->zone->grpc) {
        snprintf(err, errlen, "gRPC is disabled for zone %s (the edge answers UNIMPLEMENTED before any rule)",
                 r->zone->name);
        free_request(r);
        return -1;
    }
    res->req = r;
    for (size_t i = 0; i < rq->npublished; i++)
        pc__host_api.publish(r, rq->published[2 * i], rq->published[2 * i + 1]);

    int rv = pc__chain_request_headers(r, 0);
    if (rv == PC_CHAIN_GO) rv = pc__chain_request_ready(r);
    for (size_t i = 0; rv == PC_CHAIN_GO && r->is_grpc && i < rq->nmessages; i++) {
        pc_message m = {rq->messages[i].data, rq->messages[i].len, (uint32_t)i, 0, 0};
        rv = pc__chain_request_message(r, &m, 0);
        if (rv == PC_CHAIN_DENY) res->message_index = (long)i;
    }
    if (rv == PC_CHAIN_PAUSE) {
        /* Only plugins that pause could: none runs offline. Treat it as the failure it would be. */
        snprintf(err, errlen, "a plugin paused the request");
        return -1;
    }
    res->denied = rv == PC_CHAIN_DENY;
    res->status = r->deny_status;
    res->message = r->deny_msg;
    return 0;
}

/* ---- the case file ---- */

static const char *where(const char *file, const pc_yaml_node *n, char *buf, size_t len)
{
    snprintf(buf, len, "%s:%u:%u", file, n ? n->line : 1, n ? n->col : 1);
    return buf;
}

static bool is_null(const pc_yaml_node *n)
{
    return !n || (n->kind == PC_YAML_SCALAR && !n->quoted &&
                  (!n->scalar[0] || !strcmp(n->scalar, "null") || !strcmp(n->scalar, "~")));
}

typedef struct bytes {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} bytes;

static void put(bytes *b, const void *p, size_t n)
{
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2 + 64;
        uint8_t *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void put_varint(bytes *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put(b, tmp, n);
}

static void put_tag(bytes *b, uint32_t number, int wire)
{
    put_varint(b, ((uint64_t)number << 3) | (uint64_t)wire);
}

static void put_fixed(bytes *b, uint64_t v, size_t n)
{
    uint8_t tmp[8];
    for (size_t i = 0; i < n; i++)
        tmp[i] = (uint8_t)(v >> (8 * i));
    put(b, tmp, n);
}

typedef struct enc {
    const char *file;
    char *err;
    size_t errlen;
} enc;

static int enc_fail(enc *e, const pc_yaml_node *n, const char *msg, const char *field)
{
    char at[512];
    snprintf(e->err, e->errlen, "%s: field %s: %s", where(e->file, n, at, sizeof at), field, msg);
    return -1;
}

static bool parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    *out = v;
    return s[0] && !*end && !errno;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (s[0] == '-') return false;
    unsigned long long v = strtoull(s, &end, 0);
    *out = v;
    return s[0] && !*end && !errno;
}

static bool parse_f64(const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    return s[0] && !*end;
}

static int enc_map(enc *e, bytes *b, const pc_pb_msgdesc *type, const pc_yaml_node *map);

/* One value of field `number` (desc fd, NULL when not described) from a YAML node. */
static int enc_value(enc *e, bytes *b, const pc_pb_fielddesc *fd, uint32_t number, const pc_yaml_node *v,
                     const char *field)
{
    if (v->kind == PC_YAML_SEQ) {
        for (size_t i = 0; i < v->n; i++)
            if (enc_value(e, b, fd, number, v->items[i], field) < 0) return -1;
        return 0;
    }
    if (v->kind == PC_YAML_MAP) {
        if (fd && fd->type != PC_PB_TYPE_MESSAGE)
            return enc_fail(e, v, "is not a message, give it a value", field);
        bytes sub = {0};
        int rv = enc_map(e, &sub, fd ? fd->message : NULL, v);
        if (rv == 0) {
            put_tag(b, number, PC_PB_WIRE_LEN);
            put_varint(b, sub.n);
            put(b, sub.p, sub.n);
        }
        free(sub.p);
        return rv;
    }
    const char *s = v->scalar;
    int64_t i;
    uint64_t u;
    double d;
    if (!fd) {
        /* Not described: the value's own look decides, as the wire format would carry it. */
        if (!v->quoted && (!strcmp(s, "true") || !strcmp(s, "false"))) {
            put_tag(b, number, PC_PB_WIRE_VARINT);
            put_varint(b, s[0] == 't');
        } else if (!v->quoted && parse_i64(s, &i)) {
            put_tag(b, number, PC_PB_WIRE_VARINT);
            put_varint(b, (uint64_t)i);
        } else if (!v->quoted && parse_u64(s, &u)) {
            put_tag(b, number, PC_PB_WIRE_VARINT);
            put_varint(b, u);
        } else if (!v->quoted && parse_f64(s, &d)) {
            memcpy(&u, &d, 8);
            put_tag(b, number, PC_PB_WIRE_I64);
            put_fixed(b, u, 8);
        } else {
            put_tag(b, number, PC_PB_WIRE_LEN);
            put_varint(b, v->scalar_len);
            put(b, s, v->scalar_len);
        }
        return 0;
    }
    switch (fd->type) {
    case PC_PB_TYPE_DOUBLE:
    case PC_PB_TYPE_FLOAT:
        if (!parse_f64(s, &d)) return enc_fail(e, v, "expected a number", field);
        if (fd->type == PC_PB_TYPE_DOUBLE) {
            memcpy(&u, &d, 8);
            put_tag(b, number, PC_PB_WIRE_I64);
            put_fixed(b, u, 8);
        } else {
            float f = (float)d;
            uint32_t w;
            memcpy(&w, &f, 4);
            put_tag(b, number, PC_PB_WIRE_I32);
            put_fixed(b, w, 4);
        }
        return 0;
    case PC_PB_TYPE_INT64:
    case PC_PB_TYPE_INT32:
    case PC_PB_TYPE_ENUM:
    case PC_PB_TYPE_SINT32:
    case PC_PB_TYPE_SINT64:
    case PC_PB_TYPE_SFIXED32:
    case PC_PB_TYPE_SFIXED64:
        if (!parse_i64(s, &i))
            return enc_fail(
                e, v, fd->type == PC_PB_TYPE_ENUM ? "expected the enum's number" : "expected an integer",
                field);
        if (fd->type == PC_PB_TYPE_SFIXED32 || fd->type == PC_PB_TYPE_SFIXED64) {
            put_tag(b, number, fd->type == PC_PB_TYPE_SFIXED32 ? PC_PB_WIRE_I32 : PC_PB_WIRE_I64);
            put_fixed(b, (uint64_t)i, fd->type == PC_PB_TYPE_SFIXED32 ? 4 : 8);
        } else {
            bool zigzag = fd->type == PC_PB_TYPE_SINT32 || fd->type == PC_PB_TYPE_SINT64;
            put_tag(b, number, PC_PB_WIRE_VARINT);
            put_varint(b, zigzag ? ((uint64_t)i << 1) ^ (uint64_t)(i >> 63) : (uint64_t)i);
        }
        return 0;
    case PC_PB_TYPE_UINT64:
    case PC_PB_TYPE_UINT32:
    case PC_PB_TYPE_FIXED32:
    case PC_PB_TYPE_FIXED64:
        if (!parse_u64(s, &u)) return enc_fail(e, v, "expected a non-negative integer", field);
        if (fd->type == PC_PB_TYPE_FIXED32 || fd->type == PC_PB_TYPE_FIXED64) {
            put_tag(b, number, fd->type == PC_PB_TYPE_FIXED32 ? PC_PB_WIRE_I32 : PC_PB_WIRE_I64);
            put_fixed(b, u, fd->type == PC_PB_TYPE_FIXED32 ? 4 : 8);
        } else {
            put_tag(b, number, PC_PB_WIRE_VARINT);
            put_varint(b, u);
        }
        return 0;
    case PC_PB_TYPE_BOOL:
        if (strcmp(s, "true") && strcmp(s, "false")) return enc_fail(e, v, "expected true or false", field);
        put_tag(b, number, PC_PB_WIRE_VARINT);
        put_varint(b, s[0] == 't');
        return 0;
    case PC_PB_TYPE_STRING:
    case PC_PB_TYPE_BYTES:
        put_tag(b, number, PC_PB_WIRE_LEN);
        put_varint(b, v->scalar_len);
        put(b, s, v->scalar_len);
        return 0;
    default:
        return enc_fail(e, v, "is a message: give its fields as a map", field);
    }
}

/* "customer.email": the path walked through the descriptor, each step a nested message. */
static int enc_path(enc *e, bytes *b, const pc_pb_msgdesc *type, const char *path, const pc_yaml_node *v,
                    const char *field)
{
    size_t n = strcspn(path, ".");
    const pc_pb_fielddesc *fd = NULL;
    for (size_t i = 0; type && i < type->nfields; i++)
        if (strlen(type->fields[i].name) == n && !strncmp(type->fields[i].name, path, n))
            fd = &type->fields[i];
    uint32_t number = 0;
    if (fd) {
        number = fd->number;
    } else {
        char num[16];
        snprintf(num, sizeof num, "%.*s", (int)(n < 15 ? n : 15), path);
        uint64_t u;
        if (n >= 15 || !parse_u64(num, &u) || u == 0 || u > 536870911)
            return enc_fail(
                e, v,
                type ? "no such field in the message's descriptor"
                     : "no descriptor names it (add `descriptors` to the config, or use field numbers)",
                field);
        number = (uint32_t)u;
        for (size_t i = 0; type && i < type->nfields; i++)
            if (type->fields[i].number == number) fd = &type->fields[i];
    }
    if (!path[n]) return enc_value(e, b, fd, number, v, field);
    if (fd && fd->type != PC_PB_TYPE_MESSAGE)
        return enc_fail(e, v, "a path goes through a field that is not a message", field);
    bytes sub = {0};
    int rv = enc_path(e, &sub, fd ? fd->message : NULL, path + n + 1, v, field);
    if (rv == 0) {
        put_tag(b, number, PC_PB_WIRE_LEN);
        put_varint(b, sub.n);
        put(b, sub.p, sub.n);
    }
    free(sub.p);
    return rv;
}

static int enc_map(enc *e, bytes *b, const pc_pb_msgdesc *type, const pc_yaml_node *map)
{
    for (size_t i = 0; i < map->n; i++)
        if (enc_path(e, b, type, map->keys[i]->scalar, map->items[i], map->keys[i]->scalar) < 0) return -1;
    return 0;
}

static const pc_pb_msgdesc *input_type(const pc_plugins *ps, const char *path)
{
    for (size_t i = 0; i < ps->ndescs; i++) {
        const char *in;
        if (pc__pb_descset_method(ps->descs[i], path, &in, NULL) == 0)
            for (size_t k = 0; k < ps->ndescs; k++) {
                const pc_pb_msgdesc *d = pc__pb_descset_message(ps->descs[k], in);
                if (d) return d;
            }
    }
    return NULL;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* ---- cases ---- */

typedef struct tcase {
    const pc_yaml_node *node;
    char name[256];
    pc_rules_request rq;
    char **strs; /* header and published pairs */
    size_t nstrs;
    pc_rules_msg *msgs;
    char bot_score[32];
    const pc_yaml_node *expect;
} tcase;

static void case_free(tcase *c)
{
    for (size_t i = 0; i < c->rq.nmessages; i++)
        free((void *)c->msgs[i].data);
    free(c->msgs);
    free(c->strs);
}

static const char *const case_keys[] = {"name",     "host",           "path",      "method",
                                        "grpc",     "headers",        "client_ip", "client_port",
                                        "tls",      "h2_fingerprint", "bot_score", "published",
                                        "messages", "raw_messages",   "expect"};
static const char *const tls_keys[] = {"sni", "version", "ja3", "ja4"};
static const char *const expect_keys[] = {"verdict",          "status",    "message", "rule",   "headers",
                                          "response_headers", "published", "route",   "skipped"};

static int check_keys(const char *file, const pc_yaml_node *map, const char *const *keys, size_t n,
                      const char *what, char *err, size_t errlen)
{
    char at[512];
    if (!map || map->kind != PC_YAML_MAP) {
        snprintf(err, errlen, "%s: %s must be a map", where(file, map, at, sizeof at), what);
        return -1;
    }
    for (size_t i = 0; i < map->n; i++) {
        bool ok = false;
        for (size_t k = 0; k < n; k++)
            ok |= !strcmp(map->keys[i]->scalar, keys[k]);
        if (!ok) {
            snprintf(err, errlen, "%s: %s: unknown key \"%s\"", where(file, map->keys[i], at, sizeof at),
                     what, map->keys[i]->scalar);
            return -1;
        }
    }
    return 0;
}

static const char *scalar(const pc_yaml_node *map, const char *key)
{
    const pc_yaml_node *n = pc__yaml_get(map, key);
    return n && n->kind == PC_YAML_SCALAR && !is_null(n) ? n->scalar : NULL;
}

/* name: value pairs of a map of scalars, appended to c->strs. */
static int pairs(tcase *c, const char *file, const pc_yaml_node *map, const char *what, bool lower, char *err,
                 size_t errlen)
{
    char at[512];
    if (!map || (map->kind == PC_YAML_MAP && map->n == 0)) return 0;
    if (map->kind != PC_YAML_MAP) {
        snprintf(err, errlen, "%s: %s must be a map", where(file, map, at, sizeof at), what);
        return -1;
    }
    char **s = realloc(c->strs, (c->nstrs + 2 * map->n) * sizeof *s);
    if (!s) return -1;
    c->strs = s;
    for (size_t i = 0; i < map->n; i++) {
        if (map->items[i]->kind != PC_YAML_SCALAR) {
            snprintf(err, errlen, "%s: %s.%s must be a text", where(file, map->items[i], at, sizeof at), what,
                     map->keys[i]->scalar);
            return -1;
        }
        if (lower)
            for (char *p = map->keys[i]->scalar; *p; p++)
                *p = (char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p);
        s[c->nstrs++] = map->keys[i]->scalar;
        s[c->nstrs++] = map->items[i]->scalar;
    }
    return 0;
}

static int parse_case(pc_rules_env *env, const char *file, const pc_yaml_node *n, size_t idx, tcase *c,
                      char *err, size_t errlen)
{
    char at[512];
    c->node = n;
    if (check_keys(file, n, case_keys, sizeof case_keys / sizeof *case_keys, "case", err, errlen) < 0)
        return -1;
    const char *name = scalar(n, "name");
    snprintf(c->name, sizeof c->name, "%s", name ? name : "");
    if (!name) snprintf(c->name, sizeof c->name, "case %zu", idx + 1);
    c->rq.host = scalar(n, "host");
    c->rq.path = scalar(n, "path");
    if (!c->rq.host || !c->rq.path) {
        snprintf(err, errlen, "%s: a case needs host and path", where(file, n, at, sizeof at));
        return -1;
    }
    c->rq.method = scalar(n, "method");
    const char *g = scalar(n, "grpc");
    c->rq.grpc = !g || !strcmp(g, "true");
    c->rq.client_ip = scalar(n, "client_ip");
    const char *port = scalar(n, "client_port");
    c->rq.client_port = port ? (unsigned)strtoul(port, NULL, 10) : 0;
    c->rq.h2_fingerprint = scalar(n, "h2_fingerprint");
    const pc_yaml_node *tls = pc__yaml_get(n, "tls");
    if (tls && tls->kind == PC_YAML_SCALAR && !strcmp(tls->scalar, "false")) {
        c->rq.cleartext = true;
    } else if (tls) {
        if (check_keys(file, tls, tls_keys, sizeof tls_keys / sizeof *tls_keys, "tls", err, errlen) < 0)
            return -1;
        c->rq.sni = scalar(tls, "sni");
        c->rq.tls_version = scalar(tls, "version");
        c->rq.ja3 = scalar(tls, "ja3");
        c->rq.ja4 = scalar(tls, "ja4");
    }
    if (pairs(c, file, pc__yaml_get(n, "headers"), "headers", true, err, errlen) < 0) return -1;
    size_t nhdr = c->nstrs / 2;
    const char *bot = scalar(n, "bot_score");
    if (pairs(c, file, pc__yaml_get(n, "published"), "published", false, err, errlen) < 0) return -1;
    if (bot) {
        char **s = realloc(c->strs, (c->nstrs + 2) * sizeof *s);
        if (!s) return -1;
        c->strs = s;
        snprintf(c->bot_score, sizeof c->bot_score, "%s", bot);
        s[c->nstrs++] = "bot.score";
        s[c->nstrs++] = c->bot_score;
    }
    c->rq.headers = (const char *const *)c->strs;
    c->rq.nheaders = nhdr;
    c->rq.published = c->strs ? (const char *const *)c->strs + 2 * nhdr : NULL;
    c->rq.npublished = c->nstrs / 2 - nhdr;

    const pc_yaml_node *msgs = pc__yaml_get(n, "messages"), *raw = pc__yaml_get(n, "raw_messages");
    size_t total = (msgs ? msgs->n : 0) + (raw ? raw->n : 0);
    if ((msgs && msgs->kind != PC_YAML_SEQ) || (raw && raw->kind != PC_YAML_SEQ)) {
        snprintf(err, errlen, "%s: messages and raw_messages are lists",
                 where(file, msgs ? msgs : raw, at, sizeof at));
        return -1;
    }
    c->msgs = calloc(total ? total : 1, sizeof *c->msgs);
    if (!c->msgs) return -1;
    const pc_pb_msgdesc *type = input_type(env->rt.plugins, c->rq.path);
    enc e = {file, err, errlen};
    for (size_t i = 0; msgs && i < msgs->n; i++) {
        if (msgs->items[i]->kind != PC_YAML_MAP) {
            snprintf(err, errlen, "%s: a message is a map of fields (field: value)",
                     where(file, msgs->items[i], at, sizeof at));
            return -1;
        }
        bytes b = {0};
        int rv = enc_map(&e, &b, type, msgs->items[i]);
        c->msgs[c->rq.nmessages++] = (pc_rules_msg){b.p, b.n};
        if (rv < 0 || b.oom) return -1;
    }
    for (size_t i = 0; raw && i < raw->n; i++) {
        const pc_yaml_node *h = raw->items[i];
        size_t len = h->kind == PC_YAML_SCALAR ? h->scalar_len : 1;
        uint8_t *p = malloc(len / 2 + 1);
        if (!p) return -1;
        c->msgs[c->rq.nmessages++] = (pc_rules_msg){p, len / 2};
        bool ok = len % 2 == 0;
        for (size_t k = 0; ok && k < len; k += 2) {
            int hi = hex_value(h->scalar[k]), lo = hex_value(h->scalar[k + 1]);
            ok = hi >= 0 && lo >= 0;
            p[k / 2] = (uint8_t)(hi << 4 | lo);
        }
        if (!ok) {
            snprintf(err, errlen, "%s: raw_messages: expected hex digits", where(file, h, at, sizeof at));
            return -1;
        }
    }
    c->rq.messages = c->msgs;
    c->expect = pc__yaml_get(n, "expect");
    if (c->expect && check_keys(file, c->expect, expect_keys, sizeof expect_keys / sizeof *expect_keys,
                                "expect", err, errlen) < 0)
        return -1;
    if (c->expect) {
        const char *v = scalar(c->expect, "verdict");
        if (v && strcmp(v, "allow") && strcmp(v, "deny") && strcmp(v, "error")) {
            snprintf(err, errlen, "%s: expect.verdict: allow, deny or error",
                     where(file, pc__yaml_get(c->expect, "verdict"), at, sizeof at));
            return -1;
        }
    }
    return 0;
}

/* ---- checking expectations ---- */

typedef struct outcome {
    const char *verdict; /* allow | deny | error */
    const pc_rules_result *res;
    const char *rule;
    const char *error;
} outcome;

static const char *kv_get(const pc_request *r, const char *key)
{
    const pc_published *p = pc__request_published(r, key);
    return p ? p->text : NULL;
}

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static int mismatch(FILE *out, int *n, const char *what, const char *want, const char *got)
{
    fprintf(out, "        expected %s %s%s%s, got %s%s%s\n", what, want ? "\"" : "", want ? want : "(none)",
            want ? "\"" : "", got ? "\"" : "", got ? got : "(none)", got ? "\"" : "");
    (*n)++;
    return 0;
}

/* Header names match in any case, as everywhere in the core. */
static const char *req_header(const pc_request *r, const char *name)
{
    return pc__headers_get(&r->headers, name);
}
static const char *resp_header(const pc_request *r, const char *name)
{
    return pc__headers_get(&r->extra_resp, name);
}

/* Each entry of the expectation map x[key] (name: value, or null for "absent") against what
 * get() finds on the request. */
static void check_map(FILE *out, int *n, const pc_yaml_node *x, const char *key, const char *label,
                      const char *(*get)(const pc_request *, const char *), const pc_request *r)
{
    const pc_yaml_node *m = pc__yaml_get(x, key);
    if (!m || m->kind != PC_YAML_MAP) return;
    for (size_t i = 0; i < m->n; i++) {
        char what[300];
        snprintf(what, sizeof what, "%s %s", label, m->keys[i]->scalar);
        const char *want = is_null(m->items[i]) ? NULL : m->items[i]->scalar;
        const char *got = get(r, m->keys[i]->scalar);
        if (!same(want, got)) mismatch(out, n, what, want, got);
    }
}

static int check(FILE *out, const pc_rules_env *env, const tcase *c, const outcome *o)
{
    const pc_yaml_node *x = c->expect;
    const pc_request *r = o->res->req;
    int n = 0;
    if (!x) return 0;
    const char *v;
    if ((v = scalar(x, "verdict")) && strcmp(v, o->verdict)) mismatch(out, &n, "verdict", v, o->verdict);
    if ((v = scalar(x, "status")) && (!o->res->denied || pc__grpc_status_parse(v) != o->res->status))
        mismatch(out, &n, "status", v, o->res->denied ? pc__grpc_status_name(o->res->status) : NULL);
    if (pc__yaml_get(x, "message") && !same(scalar(x, "message"), o->res->denied ? o->res->message : NULL))
        mismatch(out, &n, "message", scalar(x, "message"), o->res->denied ? o->res->message : NULL);
    if (pc__yaml_get(x, "rule") && !same(scalar(x, "rule"), o->rule))
        mismatch(out, &n, "rule", scalar(x, "rule"), o->rule);
    check_map(out, &n, x, "headers", "request header", req_header, r);
    check_map(out, &n, x, "response_headers", "response header", resp_header, r);
    check_map(out, &n, x, "published", "published", kv_get, r);
    const pc_yaml_node *m;
    const char *route = r->route_origin ? env->cfg->origins[r->route_origin - 1].name : NULL;
    if (pc__yaml_get(x, "route") && !same(scalar(x, "route"), route))
        mismatch(out, &n, "route", scalar(x, "route"), route);
    if ((m = pc__yaml_get(x, "skipped"))) {
        const pc_plugins *ps = env->rt.plugins;
        char want[512] = "", got[512] = "";
        size_t nwant = 0, ngot = 0, hit = 0;
        for (size_t i = 0; m->kind == PC_YAML_SEQ && i < m->n; i++) {
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", nwant++ ? ", " : "",
                     m->items[i]->scalar);
            for (size_t k = 0; r->skipped && k < ps->n; k++)
                hit += r->skipped[k] && !strcmp(ps->p[k].name, m->items[i]->scalar);
        }
        for (size_t k = 0; r->skipped && k < ps->n; k++)
            if (r->skipped[k])
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", ngot++ ? ", " : "",
                         ps->p[k].name);
        if (hit != nwant || ngot != nwant) mismatch(out, &n, "skipped", want, got);
    }
    return n;
}

static void describe(FILE *out, const pc_rules_env *env, const outcome *o)
{
    const pc_rules_result *res = o->res;
    if (res->denied)
        fprintf(out, "deny %s \"%s\"", pc__grpc_status_name(res->status), res->message ? res->message : "");
    else
        fprintf(out, "%s", o->error ? "error, continued (on_error: continue)" : "allow");
    if (res->denied && res->message_index >= 0) fprintf(out, " at message %ld", res->message_index);
    if (o->rule) fprintf(out, " by rule \"%s\"", o->rule);
    const pc_request *r = res->req;
    if (r->route_origin) fprintf(out, "; route %s", env->cfg->origins[r->route_origin - 1].name);
    for (size_t k = 0; r->skipped && k < env->rt.plugins->n; k++)
        if (r->skipped[k]) fprintf(out, "; skip %s", env->rt.plugins->p[k].name);
    fputc('\n', out);
    if (o->error) fprintf(out, "        rule error: %s\n", o->error);
}

int pc__rules_test(const char *config_path, const char *cases_path)
{
    char err[2048];
    /* Only problems reach stderr: the results are the output. */
    pc__log_set_level(PC_LOG_WARN);
    pc_rules_env *env = pc__rules_env_open(config_path, err, sizeof err);
    if (!env) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    pc_yaml_doc *doc = pc__yaml_load_file(cases_path, err, sizeof err);
    if (!doc) {
        fprintf(stderr, "%s\n", err);
        pc__rules_env_close(env);
        return 2;
    }
    const pc_yaml_node *list = doc->root;
    if (list && list->kind == PC_YAML_MAP) list = pc__yaml_get(list, "cases");
    int rv = 0;
    tcase *cases = NULL;
    size_t ncases = 0;
    if (!list || list->kind != PC_YAML_SEQ || list->n == 0) {
        char at[512];
        fprintf(stderr, "%s: expected a list of cases (or `cases:` with one)\n",
                where(cases_path, doc->root, at, sizeof at));
        rv = 2;
    } else if (!(cases = calloc(list->n, sizeof *cases))) {
        rv = 2;
    }
    /* Every case is read before any runs: a mistake in the file is not a failing rule. */
    for (size_t i = 0; rv == 0 && i < list->n; i++, ncases++)
        if (parse_case(env, cases_path, list->items[i], i, &cases[i], err, sizeof err) < 0) {
            fprintf(stderr, "%s\n", err[0] ? err : "out of memory");
            rv = 2;
        }
    size_t failed = 0;
    for (size_t i = 0; rv == 0 && i < ncases; i++) {
        tcase *c = &cases[i];
        pc_rules_result res;
        char rerr[512];
        if (pc__rules_env_run(env, &c->rq, &res, rerr, sizeof rerr) < 0) {
            fprintf(stdout, "FAIL %3zu  %s: %s\n", i + 1, c->name, rerr);
            failed++;
            pc__rules_result_free(env, &res);
            continue;
        }
        outcome o = {.res = &res, .rule = kv_get(res.req, "lua.rule"), .error = kv_get(res.req, "lua.error")};
        o.verdict = o.error ? "error" : res.denied ? "deny" : "allow";
        char detail[4096] = "";
        FILE *mem = fmemopen(detail, sizeof detail - 1, "w");
        int bad = mem ? check(mem, env, c, &o) : 0;
        if (mem) fclose(mem);
        fprintf(stdout, "%s %3zu  %s: ", bad ? "FAIL" : "ok  ", i + 1, c->name);
        describe(stdout, env, &o);
        fputs(detail, stdout);
        failed += bad > 0;
        pc__rules_result_free(env, &res);
    }
    if (rv == 0) {
        fprintf(stdout, "%zu cases, %zu passed, %zu failed\n", ncases, ncases - failed, failed);
        rv = failed ? 1 : 0;
    }
    for (size_t i = 0; i < ncases; i++)
        case_free(&cases[i]);
    free(cases);
    pc__yaml_free(doc);
    pc__rules_env_close(env);
    return rv;
}
