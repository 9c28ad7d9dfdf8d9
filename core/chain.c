/* The plugin chain at run time. Hooks run in chain order on the worker thread; the first deny
 * ends the chain. A hook error follows its plugin's on_error (deny by default: fail closed).
 * Decoded protobuf for a message is computed at most once, when a plugin first asks for it. */
#include "chain.h"

#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "grpc_status.h"
#include "h2_server.h"
#include "log.h"
#include "metrics.h"
#include "plugin_loader.h"
#include "protobuf.h"
#include "stream.h"
#include "worker.h"

#define REQ(st) ((pc_request *)(st))
#define ST(r) ((pc_stream *)(r))

void pc__conn_shared_release(pc_conn_shared *cs)
{
    if (cs && --cs->refs == 0) free(cs);
}

int pc__grpc_split_path(const char *path, const char **svc, size_t *svclen, const char **meth,
                        size_t *methlen)
{
    if (!path || path[0] != '/') return -1;
    const char *slash = strchr(path + 1, '/');
    if (!slash || slash == path + 1 || !slash[1] || strchr(slash + 1, '/')) return -1;
    *svc = path + 1;
    *svclen = (size_t)(slash - path - 1);
    *meth = slash + 1;
    const char *q = strchr(*meth, '?');
    *methlen = q ? (size_t)(q - *meth) : strlen(*meth);
    return 0;
}

/* ---- host functions ---- */

static void host_log(const void *handle, int level, const char *fmt, ...)
{
    const pc_loaded_plugin *lp = handle;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pc__log(level < 0 ? 0 : level > 3 ? 3 : level, "plugin %s: %s", lp ? lp->name : "?", msg);
}

static const pc_config_node *cfg_get(const pc_config_node *map, const char *key)
{
    return (const pc_config_node *)pc__yaml_get((const pc_yaml_node *)map, key);
}

static const char *cfg_string(const pc_config_node *n)
{
    const pc_yaml_node *y = (const pc_yaml_node *)n;
    return y && y->kind == PC_YAML_SCALAR ? y->scalar : NULL;
}

static size_t cfg_len(const pc_config_node *n)
{
    const pc_yaml_node *y = (const pc_yaml_node *)n;
    return y && y->kind != PC_YAML_SCALAR ? y->n : 0;
}

static const pc_config_node *cfg_at(const pc_config_node *n, size_t i)
{
    const pc_yaml_node *y = (const pc_yaml_node *)n;
    return y && y->kind != PC_YAML_SCALAR && i < y->n ? (const pc_config_node *)y->items[i] : NULL;
}

static const char *cfg_key(const pc_config_node *n, size_t i)
{
    const pc_yaml_node *y = (const pc_yaml_node *)n;
    return y && y->kind == PC_YAML_MAP && i < y->n ? y->keys[i]->scalar : NULL;
}

/* Plugins are initialised on the main thread, one config at a time. */
static const pc_config *init_cfg;

void pc__chain_set_config(const pc_config *cfg)
{
    init_cfg = cfg;
}

static const char *cfg_where(const pc_config_node *n, char *buf, size_t len)
{
    const pc_yaml_node *y = (const pc_yaml_node *)n;
    snprintf(buf, len, "%s:%u:%u", init_cfg ? init_cfg->path : "", y ? y->line : 0, y ? y->col : 0);
    return buf;
}

static const char *cfg_path(const pc_config_node *n, char *buf, size_t len)
{
    const char *s = cfg_string(n);
    if (!s || !*s || !buf || !len || !init_cfg) return NULL;
    char *path = pc__config_path(init_cfg, s);
    int w = path ? snprintf(buf, len, "%s", path) : -1;
    free(path);
    return w < 0 || (size_t)w >= len ? NULL : buf;
}

static const char *find_nv(const pc_headers *h, const char *name)
{
    const nghttp2_nv *nv = pc__headers_find(h, name);
    return nv ? (const char *)nv->value : NULL;
}

/* A string for request_info that lives as long as the request: in *slot, made once. */
static const char *keep(char **slot, const char *s, size_t n)
{
    if (!*slot) *slot = strndup(s, n);
    return *slot;
}

static const char *req_info(pc_request *r, const char *key)
{
    pc_stream *st = ST(r);
    const char *svc, *meth;
    size_t sl, ml;
    if (!strcmp(key, "method")) return st->method;
    if (!strcmp(key, "path")) return st->path;
    if (!strcmp(key, "authority")) return st->authority ? st->authority : st->host_header;
    if (!strcmp(key, "scheme")) return st->scheme;
    if (!strcmp(key, "zone")) return st->zone ? st->zone->name : NULL;
    if (!strcmp(key, "origin")) {
        if (st->route_origin) return st->gen->cfg->origins[st->route_origin - 1].name;
        return st->zone ? st->gen->cfg->origins[st->zone->origin_index].name : NULL;
    }
    if (!strcmp(key, "grpc")) return st->is_grpc ? "1" : "0";
    if (!strcmp(key, "grpc.service") || !strcmp(key, "grpc.method")) {
        if (!st->is_grpc || pc__grpc_split_path(st->path, &svc, &sl, &meth, &ml) < 0) return NULL;
        return key[5] == 's' ? keep(&st->info_service, svc, sl) : keep(&st->info_method, meth, ml);
    }
    if (!strcmp(key, "grpc.subtype")) {
        if (!st->is_grpc || !st->content_type) return NULL;
        const char *plus = strchr(st->content_type, '+');
        if (!plus) return "proto";
        return keep(&st->info_subtype, plus + 1, strcspn(plus + 1, ";"));
    }
    if (!strcmp(key, "status")) return st->remote_status[0] ? st->remote_status : NULL;
    if (!strcmp(key, "request_id")) return pc__stream_request_id(st);
    if (!strcmp(key, "grpc_status")) {
        if (st->edge_status >= 0) {
            snprintf(st->info_status, sizeof st->info_status, "%d", st->edge_status);
            return st->info_status;
        }
        const char *v = find_nv(&st->trailers, "grpc-status");
        return v ? v : find_nv(&st->resp, "grpc-status");
    }
    if (st->conn) {
        const pc_conn_info *ci = &st->conn->info;
        if (!strcmp(key, "client.ip")) return ci->client_ip;
        if (!strcmp(key, "client.port")) return st->conn->port;
        if (!strcmp(key, "tls.sni")) return ci->sni;
        if (!strcmp(key, "tls.alpn")) return ci->alpn;
        if (!strcmp(key, "tls.version")) return ci->tls_version;
        if (!strcmp(key, "tls.cipher")) return ci->tls_cipher;
        if (!strcmp(key, "tls.client_subject")) return ci->client_subject;
        if (!strcmp(key, "tls.ja3")) return st->conn->ja3[0] ? st->conn->ja3 : NULL;
        if (!strcmp(key, "tls.ja3_hash")) return st->conn->ja3_hash[0] ? st->conn->ja3_hash : NULL;
        if (!strcmp(key, "tls.ja4")) return st->conn->ja4[0] ? st->conn->ja4 : NULL;
        if (!strcmp(key, "h2.fingerprint")) return st->conn->h2fp[0] ? st->conn->h2fp : NULL;
    }
    return NULL;
}

static const pc_conn_info *req_conn(pc_request *r)
{
    return ST(r)->conn ? &ST(r)->conn->info : NULL;
}

static const char *hdr_get(pc_request *r, const char *name)
{
    return find_nv(&ST(r)->req, name);
}

static size_t hdr_count(pc_request *r)
{
    return ST(r)->req.n;
}

static int hdr_at(pc_request *r, size_t i, const char **name, const char **value)
{
    pc_stream *st = ST(r);
    if (i >= st->req.n) return -1;
    *name = (const char *)st->req.nv[i].name;
    *value = (const char *)st->req.nv[i].value;
    return 0;
}

static bool header_name_ok(const char *name)
{
    if (!name[0] || name[0] == ':') return false;
    for (const char *c = name; *c; c++)
        if ((*c >= 'A' && *c <= 'Z') || *c <= 0x20 || *c >= 0x7f) return false;
    return true;
}

static void remove_all(pc_stream *st, const char *name)
{
    size_t n = strlen(name), k = 0;
    for (size_t i = 0; i < st->req.n; i++) {
        nghttp2_nv *nv = &st->req.nv[i];
        if (nv->namelen == n && memcmp(nv->name, name, n) == 0) {
            st->req.bytes -= nv->namelen + nv->valuelen + 32;
            if ((const char *)nv->value == st->host_header) st->host_header = NULL;
            if ((const char *)nv->value == st->content_type) st->content_type = NULL;
            continue; /* its bytes stay in the header arena until the request ends */
        }
        st->req.nv[k++] = *nv;
    }
    st->req.n = k;
}

static int hdr_set(pc_request *r, const char *name, const char *value)
{
    pc_stream *st = ST(r);
    if (!header_name_ok(name) || !value || st->up_started) return -1;
    remove_all(st, name);
    return pc__stream_add_header(&st->req, (const uint8_t *)name, strlen(name), (const uint8_t *)value,
                                 strlen(value));
}

static int hdr_remove(pc_request *r, const char *name)
{
    pc_stream *st = ST(r);
    if (!header_name_ok(name) || st->up_started) return -1;
    remove_all(st, name);
    return 0;
}

static const char *resp_get(pc_request *r, const char *name)
{
    return find_nv(&ST(r)->resp, name);
}

static const char *trailer_get(pc_request *r, const char *name)
{
    pc_stream *st = ST(r);
    const char *v = find_nv(&st->trailers, name);
    return v ? v : find_nv(&st->resp, name); /* Trailers-Only: the one header block holds them */
}

static int host_deny(pc_request *r, int status, const char *message)
{
    pc_stream *st = ST(r);
    st->deny_status = (status >= 1 && status <= 16) ? status : PC_GRPC_PERMISSION_DENIED;
    free(st->deny_msg);
    st->deny_msg = strdup(message && *message ? message : "denied");
    return PC_DENY;
}

static int host_deny_http(pc_request *r, int http_status, int grpc_status, const char *message)
{
    ST(r)->deny_http = http_status >= 400 && http_status <= 599 ? http_status : 403;
    return host_deny(r, grpc_status, message);
}

const struct pc_published *pc__published_find(const pc_stream *st, const char *key)
{
    for (size_t i = 0; key && i < st->npub; i++)
        if (!strcmp(st->pub[i].key, key)) return &st->pub[i];
    return NULL;
}

/* Sets key to a value whose text is `text` (copied). */
static int publish(pc_stream *st, const char *key, pc_value_type type, const char *text, int64_t i, double d)
{
    if (!key || !*key || !text) return -1;
    char *t = strdup(text);
    if (!t) return -1;
    pc_published *p = (pc_published *)pc__published_find(st, key);
    if (p) {
        free(p->text);
    } else {
        if (st->npub >= 128) { /* bounded: a plugin cannot grow a request without limit */
            free(t);
            return -1;
        }
        pc_published *np = realloc(st->pub, (st->npub + 1) * sizeof *np);
        if (!np) {
            free(t);
            return -1;
        }
        st->pub = np;
        p = &st->pub[st->npub];
        if (!(p->key = strdup(key))) {
            free(t);
            return -1;
        }
        st->npub++;
    }
    p->text = t;
    p->type = type;
    p->i = i;
    p->d = d;
    return 0;
}

static int host_publish(pc_request *r, const char *key, const char *value)
{
    return publish(ST(r), key, PC_VALUE_STRING, value, 0, 0);
}

static int host_publish_int(pc_request *r, const char *key, int64_t value)
{
    char text[24];
    snprintf(text, sizeof text, "%lld", (long long)value);
    return publish(ST(r), key, PC_VALUE_INT, text, value, (double)value);
}

static int host_publish_number(pc_request *r, const char *key, double value)
{
    if (!isfinite(value)) return -1; /* JSON has no NaN or infinity */
    char text[32];
    snprintf(text, sizeof text, "%.15g", value);
    return publish(ST(r), key, PC_VALUE_NUMBER, text, 0, value);
}

static int host_publish_bool(pc_request *r, const char *key, int value)
{
    return publish(ST(r), key, PC_VALUE_BOOL, value ? "true" : "false", value != 0, value != 0);
}

static const char *host_lookup(pc_request *r, const char *key)
{
    const pc_published *p = pc__published_find(ST(r), key);
    return p ? p->text : NULL;
}

static int host_lookup_value(pc_request *r, const char *key, pc_value *out)
{
    const pc_published *p = pc__published_find(ST(r), key);
    if (!p || !out) return -1;
    *out = (pc_value){.type = p->type, .text = p->text, .i = p->i, .d = p->d};
    return 0;
}

static void clear_msg_cache(pc_stream *st)
{
    if (st->pb) pc__pb_result_free(st->pb);
    free(st->fields);
    free(st->json);
    st->pb = NULL;
    st->fields = NULL;
    st->json = NULL;
    st->nfields = 0;
    st->cur_msg = NULL;
}

static const pc_pb_msgdesc *message_type(pc_stream *st, bool response)
{
    const pc_plugins *ps = st->gen->rt->plugins;
    for (size_t i = 0; i < ps->ndescs; i++) {
        const char *in, *out;
        if (pc__pb_descset_method(ps->descs[i], st->path, &in, &out) == 0) {
            const char *name = response ? out : in;
            for (size_t k = 0; k < ps->ndescs; k++) {
                const pc_pb_msgdesc *d = pc__pb_descset_message(ps->descs[k], name);
                if (d) return d;
            }
        }
    }
    return NULL;
}

static int decode(pc_stream *st, const pc_message *m, char *err, size_t errlen)
{
    if (st->cur_msg == m && st->pb) return 0;
    clear_msg_cache(st);
    pc_pb_limits lim;
    pc__pb_limits_default(&lim);
    if (lim.max_input < m->len) lim.max_input = m->len;
    pc_pb_result *res = NULL;
    if (pc__pb_decode(message_type(st, m->response), m->data, m->len, &lim, &res, err, errlen) != 0)
        return -1;
    st->pb = res;
    st->cur_msg = m;
    return 0;
}

static pc_field_kind field_kind(const pc_pb_field *f)
{
    switch (f->kind) {
    case PC_PB_UINT:
        return PC_FIELD_UINT;
    case PC_PB_INT:
        return PC_FIELD_INT;
    case PC_PB_BOOL:
        return PC_FIELD_BOOL;
    case PC_PB_FLOAT:
        return PC_FIELD_FLOAT;
    case PC_PB_DOUBLE:
        return PC_FIELD_DOUBLE;
    case PC_PB_STRING:
        return PC_FIELD_STRING;
    case PC_PB_MESSAGE:
        return PC_FIELD_MESSAGE;
    default:
        return PC_FIELD_BYTES;
    }
}

static long host_fields(pc_request *r, const pc_message *m, const pc_field **out, char *err, size_t errlen)
{
    pc_stream *st = ST(r);
    char e[256];
    if (!err) {
        err = e;
        errlen = sizeof e;
    }
    if (decode(st, m, err, errlen) < 0) return -1;
    if (!st->fields) {
        const pc_pb_result *res = st->pb;
        st->fields = calloc(res->nfields ? res->nfields : 1, sizeof *st->fields);
        if (!st->fields) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < res->nfields; i++) {
            const pc_pb_field *f = &res->fields[i];
            pc_field *o = &st->fields[i];
            o->path = f->path;
            o->kind = field_kind(f);
            if (f->kind == PC_PB_INT)
                o->i64 = f->v.i;
            else if (f->kind == PC_PB_FLOAT || f->kind == PC_PB_DOUBLE)
                o->f64 = f->v.d;
            else
                o->u64 = f->v.u;
            o->str = (const char *)f->data;
            o->str_len = f->len;
        }
        st->nfields = (long)res->nfields;
    }
    *out = st->fields;
    return st->nfields;
}

static const char *host_json(pc_request *r, const pc_message *m)
{
    pc_stream *st = ST(r);
    char err[256];
    if (decode(st, m, err, sizeof err) < 0) return NULL;
    if (!st->json) {
        struct json_object *o = pc__pb_to_json(st->pb);
        if (!o) return NULL;
        st->json = strdup(
            json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
    }
    return st->json;
}

typedef struct plugin_work {
    uv_work_t req;
    pc_stream *st;
    void (*work)(void *);
    void (*done)(void *, pc_request *);
    void *arg;
} plugin_work;

static void work_run(uv_work_t *req)
{
    plugin_work *pw = (plugin_work *)req;
    pw->work(pw->arg);
}

static void work_done(uv_work_t *req, int status)
{
    (void)status;
    plugin_work *pw = (plugin_work *)req;
    pc_stream *st = pw->st;
    /* Still counted during done(), so a resume() there cannot free the request under us. */
    pw->done(pw->arg, REQ(st));
    st->works--;
    free(pw);
    pc__stream_release(st);
}

static int host_queue_work(pc_request *r, void (*work)(void *), void (*done)(void *, pc_request *), void *arg)
{
    pc_stream *st = ST(r);
    plugin_work *pw = calloc(1, sizeof *pw);
    if (!pw || !work || !done) {
        free(pw);
        return -1;
    }
    *pw = (plugin_work){.st = st, .work = work, .done = done, .arg = arg};
    if (uv_queue_work(&st->worker->loop, &pw->req, work_run, work_done) != 0) {
        free(pw);
        return -1;
    }
    st->works++;
    return 0;
}

static void host_resume(pc_request *r, int verdict)
{
    pc__stream_resume(ST(r), verdict);
}

static void host_resume_response(pc_request *r, int verdict)
{
    pc__stream_resume_response(ST(r), verdict);
}

static int host_skip(pc_request *r, const char *name)
{
    pc_stream *st = ST(r);
    const pc_plugins *ps = st->gen->rt->plugins;
    if (!ps || !st->chain || !name) return -1;
    for (size_t i = 0; i < st->chain->n; i++) {
        size_t idx = st->chain->idx[i];
        if (strcmp(ps->p[idx].name, name) != 0) continue;
        if (ps->has_access && idx == 0) return -1; /* the access policy is never skipped */
        if (!st->skipped && !(st->skipped = calloc(ps->n, sizeof *st->skipped))) return -1;
        st->skipped[idx] = true;
        return 0;
    }
    return -1;
}

static int host_route(pc_request *r, const char *origin)
{
    pc_stream *st = ST(r);
    const pc_config *cfg = st->gen->cfg;
    if (!origin || st->queued || st->up_started || !st->zone) return -1;
    for (size_t i = 0; i < cfg->norigins; i++) {
        if (strcmp(cfg->origins[i].name, origin) != 0) continue;
        /* A rule must not route a call around an origin's access policy, which already ran. */
        if (cfg->origins[i].access && i != st->zone->origin_index) return -1;
        st->route_origin = i + 1;
        return 0;
    }
    return -1;
}

static int host_set_response_header(pc_request *r, const char *name, const char *value)
{
    pc_stream *st = ST(r);
    if (!name || !value || !header_name_ok(name) || st->resp_submitted || st->extra_resp.n >= 32) return -1;
    return pc__stream_add_header(&st->extra_resp, (const uint8_t *)name, strlen(name), (const uint8_t *)value,
                                 strlen(value));
}

static bool metric_name_ok(const char *n)
{
    size_t len = n ? strlen(n) : 0;
    if (len == 0 || len > 48) return false;
    for (; *n; n++)
        if (!((*n >= 'a' && *n <= 'z') || (*n >= '0' && *n <= '9') || *n == '_')) return false;
    return true;
}

static void host_metric_count(pc_request *r, const char *name, const char *label, uint64_t n)
{
    pc_stream *st = ST(r);
    if (metric_name_ok(name))
        pc__metrics_plugin_count(st->worker->metrics, name, st->zone ? st->zone->name : "", label, n);
}

static void host_metric_observe(pc_request *r, const char *name, double value)
{
    pc_stream *st = ST(r);
    if (metric_name_ok(name))
        pc__metrics_plugin_observe(st->worker->metrics, name, st->zone ? st->zone->name : "", value);
}

static int host_hold_body(pc_request *r, size_t max_bytes)
{
    return pc__stream_hold_body(ST(r), max_bytes);
}

const pc_host pc__host_api = {
    .struct_size = sizeof(pc_host),
    .abi_version = PC_PLUGIN_ABI_VERSION,
    .log = host_log,
    .config_get = cfg_get,
    .config_string = cfg_string,
    .config_len = cfg_len,
    .config_at = cfg_at,
    .config_key = cfg_key,
    .config_where = cfg_where,
    .request_info = req_info,
    .connection = req_conn,
    .header_get = hdr_get,
    .header_count = hdr_count,
    .header_at = hdr_at,
    .header_set = hdr_set,
    .header_remove = hdr_remove,
    .response_header_get = resp_get,
    .trailer_get = trailer_get,
    .deny = host_deny,
    .publish = host_publish,
    .publish_int = host_publish_int,
    .publish_number = host_publish_number,
    .publish_bool = host_publish_bool,
    .lookup = host_lookup,
    .lookup_value = host_lookup_value,
    .message_fields = host_fields,
    .message_json = host_json,
    .queue_work = host_queue_work,
    .resume = host_resume,
    .skip = host_skip,
    .route = host_route,
    .set_response_header = host_set_response_header,
    .metric_count = host_metric_count,
    .metric_observe = host_metric_observe,
    .deny_http = host_deny_http,
    .hold_body = host_hold_body,
    .resume_response = host_resume_response,
    .config_path = cfg_path,
};

/* ---- running hooks ---- */

static int verdict(pc_stream *st, const pc_loaded_plugin *lp, int rv)
{
    if (rv == PC_CONTINUE) return 0;
    if (rv == PC_DENY) {
        if (!st->deny_status) {
            char msg[256];
            snprintf(msg, sizeof msg, "denied by plugin %s", lp->name);
            host_deny(REQ(st), PC_GRPC_PERMISSION_DENIED, msg);
        }
        return 1;
    }
    pc_log_warn("plugin %s: hook failed on %s (on_error: %s)", lp->name, st->path ? st->path : "-",
                lp->on_error_continue ? "continue" : "deny");
    if (lp->on_error_continue) return 0;
    char msg[256];
    snprintf(msg, sizeof msg, "refused: plugin %s failed", lp->name);
    host_deny(REQ(st), PC_GRPC_UNAVAILABLE, msg);
    return 1;
}

/* A plugin's request state: its slice of the request's block, NULL when it asked for none. */
static void *state_of(pc_stream *st, size_t idx)
{
    const pc_loaded_plugin *lp = &st->gen->rt->plugins->p[idx];
    if (!st->plugin_state || lp->desc->request_state_size == 0) return NULL;
    return (char *)st->plugin_state + lp->state_offset;
}

/* pause_at: where the position of a plugin that pauses goes (NULL: the hooks may not pause). */
static int run(pc_stream *st, size_t offset, const pc_message *m, size_t from, size_t *pause_at)
{
    const pc_chain *ch = st->chain;
    if (!ch || ch->n == 0) return PC_CHAIN_GO;
    const pc_plugins *ps = st->gen->rt->plugins;
    for (size_t i = from; i < ch->n; i++) {
        const pc_loaded_plugin *lp = &ps->p[ch->idx[i]];
        const void *fn = pc__plugin_hook(lp, offset);
        if (!fn || (st->skipped && st->skipped[ch->idx[i]])) continue;
        void *ctx = st->gen->plugin_ctx[ch->idx[i]], *state = state_of(st, ch->idx[i]);
        int rv =
            m ? ((pc_message_hook)fn)(REQ(st), ctx, state, m) : ((pc_request_hook)fn)(REQ(st), ctx, state);
        if (rv == PC_PAUSE && pause_at) {
            *pause_at = i;
            return PC_CHAIN_PAUSE;
        }
        if (verdict(st, lp, rv)) return PC_CHAIN_DENY;
    }
    return PC_CHAIN_GO;
}

int pc__chain_resumed(pc_stream *st, size_t pos, int rv)
{
    const pc_plugins *ps = st->gen->rt->plugins;
    const pc_loaded_plugin *lp = &ps->p[st->chain->idx[pos]];
    return verdict(st, lp, rv == PC_PAUSE ? PC_ERROR : rv);
}

int pc__chain_connection(pc_gen *g, const pc_conn_info *ci)
{
    const pc_plugins *ps = g->rt->plugins;
    if (!ps) return 0;
    for (size_t i = 0; i < ps->global.n; i++) {
        const pc_loaded_plugin *lp = &ps->p[ps->global.idx[i]];
        int (*fn)(void *, const pc_conn_info *) =
            (int (*)(void *, const pc_conn_info *))pc__plugin_hook(lp, offsetof(pc_plugin, on_connection));
        if (fn && fn(g->plugin_ctx[ps->global.idx[i]], ci) != PC_CONTINUE) {
            pc_log_info("plugin %s refused connection from %s", lp->name, ci->client_ip);
            return 1;
        }
    }
    return 0;
}

int pc__chain_request_headers(pc_stream *st, size_t from)
{
    const pc_plugins *ps = st->gen->rt->plugins;
    if (!ps || ps->n == 0) return PC_CHAIN_GO;
    if (from == 0) {
        st->chain = pc__plugins_chain(ps, st->gen->cfg, st->zone);
        if (st->chain->n == 0) return PC_CHAIN_GO;
        if (ps->state_size && !(st->plugin_state = calloc(1, ps->state_size))) {
            host_deny(REQ(st), PC_GRPC_RESOURCE_EXHAUSTED, "out of memory");
            return PC_CHAIN_DENY;
        }
        st->chain_started = true;
    }
    return run(st, offsetof(pc_plugin, on_request_headers), NULL, from, &st->pause_pos);
}

int pc__chain_request_message(pc_stream *st, const pc_message *m, size_t from)
{
    if (!st->chain || !st->chain->request_messages) return PC_CHAIN_GO;
    int rv = run(st, offsetof(pc_plugin, on_request_message), m, from, &st->pause_pos);
    clear_msg_cache(st);
    return rv;
}

int pc__chain_request_end(pc_stream *st, size_t from)
{
    return run(st, offsetof(pc_plugin, on_request_end), NULL, from, &st->pause_pos);
}

int pc__chain_response_headers(pc_stream *st)
{
    return run(st, offsetof(pc_plugin, on_response_headers), NULL, 0, NULL);
}

int pc__chain_response_message(pc_stream *st, const pc_message *m, size_t from)
{
    if (!st->chain || !st->chain->response_messages) return PC_CHAIN_GO;
    int rv = run(st, offsetof(pc_plugin, on_response_message), m, from, &st->resp_pause_pos);
    clear_msg_cache(st);
    return rv;
}

int pc__chain_request_ready(pc_stream *st)
{
    return run(st, offsetof(pc_plugin, on_request_ready), NULL, 0, NULL);
}

int pc__chain_response_trailers(pc_stream *st)
{
    return run(st, offsetof(pc_plugin, on_response_trailers), NULL, 0, NULL);
}

void pc__chain_log(pc_stream *st)
{
    const pc_plugins *ps = st->gen->rt->plugins;
    if (st->chain_logged || !ps || ps->n == 0) return;
    st->chain_logged = true;
    if (!st->chain_started) {
        /* refused before the chain ran (routing, limits, the core's checks): the zone's plugins
         * still log it, with request state of their own */
        st->chain = pc__plugins_chain(ps, st->gen->cfg, st->zone);
        if (ps->state_size && !st->plugin_state && !(st->plugin_state = calloc(1, ps->state_size))) return;
    }
    const pc_chain *ch = st->chain;
    for (size_t i = 0; i < ch->n; i++) {
        const pc_loaded_plugin *lp = &ps->p[ch->idx[i]];
        void (*fn)(pc_request *, void *, void *) =
            (void (*)(pc_request *, void *, void *))pc__plugin_hook(lp, offsetof(pc_plugin, on_log));
        if (fn) fn(REQ(st), st->gen->plugin_ctx[ch->idx[i]], state_of(st, ch->idx[i]));
    }
}

void pc__chain_free(pc_stream *st)
{
    clear_msg_cache(st);
    for (size_t i = 0; i < st->npub; i++) {
        free(st->pub[i].key);
        free(st->pub[i].text);
    }
    free(st->pub);
    free(st->deny_msg);
    free(st->info_service);
    free(st->info_method);
    free(st->info_subtype);
    free(st->plugin_state);
    free(st->skipped);
    if (st->resp_framer_on) pc__grpc_framer_free(&st->resp_framer);
    pc__conn_shared_release(st->conn);
}
