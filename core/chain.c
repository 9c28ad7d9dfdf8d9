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
#include "log.h"
#include "metrics.h"
#include "plugin_loader.h"
#include "protobuf.h"
#include "worker.h"

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

static const char *req_info(pc_request *r, const char *key)
{
    return pc__request_info(r, key);
}

static const pc_conn_info *req_conn(pc_request *r)
{
    return r->conn ? &r->conn->info : NULL;
}

static const char *hdr_get(pc_request *r, const char *name)
{
    return pc__headers_get(&r->headers, name);
}

static size_t hdr_count(pc_request *r)
{
    return r->headers.n;
}

static int hdr_at(pc_request *r, size_t i, const char **name, const char **value)
{
    if (i >= r->headers.n) return -1;
    *name = (const char *)r->headers.nv[i].name;
    *value = (const char *)r->headers.nv[i].value;
    return 0;
}

/* The request headers can change until they went to the origin. */
static int hdr_set(pc_request *r, const char *name, const char *value)
{
    if (pc__request_origin_stage(r) == PC_ORIGIN_STARTED) return -1;
    return pc__request_header_set(r, name, value);
}

static int hdr_remove(pc_request *r, const char *name)
{
    if (pc__request_origin_stage(r) == PC_ORIGIN_STARTED) return -1;
    return pc__request_header_remove(r, name);
}

static const char *resp_get(pc_request *r, const char *name)
{
    const pc_headers *h = pc__request_response_headers(r, false);
    return h ? pc__headers_get(h, name) : NULL;
}

static const char *trailer_get(pc_request *r, const char *name)
{
    const pc_headers *t = pc__request_response_headers(r, true);
    const char *v = t ? pc__headers_get(t, name) : NULL;
    return v ? v : resp_get(r, name); /* Trailers-Only: the one header block holds them */
}

static int host_deny(pc_request *r, int status, const char *message)
{
    pc__request_deny(r, status, message);
    return PC_DENY;
}

static int host_deny_http(pc_request *r, int http_status, int grpc_status, const char *message)
{
    r->deny_http = http_status >= 400 && http_status <= 599 ? http_status : 403;
    return host_deny(r, grpc_status, message);
}

static int host_publish(pc_request *r, const char *key, const char *value)
{
    return pc__request_publish(r, key, PC_VALUE_STRING, value, 0, 0);
}

static int host_publish_int(pc_request *r, const char *key, int64_t value)
{
    char text[24];
    snprintf(text, sizeof text, "%lld", (long long)value);
    return pc__request_publish(r, key, PC_VALUE_INT, text, value, (double)value);
}

static int host_publish_number(pc_request *r, const char *key, double value)
{
    if (!isfinite(value)) return -1; /* JSON has no NaN or infinity */
    char text[32];
    snprintf(text, sizeof text, "%.15g", value);
    return pc__request_publish(r, key, PC_VALUE_NUMBER, text, 0, value);
}

static int host_publish_bool(pc_request *r, const char *key, int value)
{
    return pc__request_publish(r, key, PC_VALUE_BOOL, value ? "true" : "false", value != 0, value != 0);
}

static const char *host_lookup(pc_request *r, const char *key)
{
    const pc_published *p = pc__request_published(r, key);
    return p ? p->text : NULL;
}

static int host_lookup_value(pc_request *r, const char *key, pc_value *out)
{
    const pc_published *p = pc__request_published(r, key);
    if (!p || !out) return -1;
    *out = (pc_value){.type = p->type, .text = p->text, .i = p->i, .d = p->d};
    return 0;
}

static const pc_pb_msgdesc *message_type(pc_request *r, bool response)
{
    const pc_plugins *ps = r->gen->rt->plugins;
    for (size_t i = 0; i < ps->ndescs; i++) {
        const char *in, *out;
        if (pc__pb_descset_method(ps->descs[i], r->path, &in, &out) == 0) {
            const char *name = response ? out : in;
            for (size_t k = 0; k < ps->ndescs; k++) {
                const pc_pb_msgdesc *d = pc__pb_descset_message(ps->descs[k], name);
                if (d) return d;
            }
        }
    }
    return NULL;
}

static int decode(pc_request *r, const pc_message *m, char *err, size_t errlen)
{
    if (r->cur_msg == m && r->pb) return 0;
    pc__request_forget_message(r);
    pc_pb_limits lim;
    pc__pb_limits_default(&lim);
    if (lim.max_input < m->len) lim.max_input = m->len;
    pc_pb_result *res = NULL;
    if (pc__pb_decode(message_type(r, m->response), m->data, m->len, &lim, &res, err, errlen) != 0) return -1;
    r->pb = res;
    r->cur_msg = m;
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
    char e[256];
    if (!err) {
        err = e;
        errlen = sizeof e;
    }
    if (decode(r, m, err, errlen) < 0) return -1;
    if (!r->fields) {
        const pc_pb_result *res = r->pb;
        r->fields = calloc(res->nfields ? res->nfields : 1, sizeof *r->fields);
        if (!r->fields) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        for (size_t i = 0; i < res->nfields; i++) {
            const pc_pb_field *f = &res->fields[i];
            pc_field *o = &r->fields[i];
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
        r->nfields = (long)res->nfields;
    }
    *out = r->fields;
    return r->nfields;
}

static const char *host_json(pc_request *r, const pc_message *m)
{
    char err[256];
    if (decode(r, m, err, sizeof err) < 0) return NULL;
    if (!r->json) {
        struct json_object *o = pc__pb_to_json(r->pb);
        if (!o) return NULL;
        r->json = strdup(
            json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
    }
    return r->json;
}

typedef struct plugin_work {
    uv_work_t req;
    pc_request *r;
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
    pc_request *r = pw->r;
    /* Still retained during done(), so a resume() there cannot free the request under us. */
    pw->done(pw->arg, r);
    free(pw);
    pc__request_release(r);
}

static int host_queue_work(pc_request *r, void (*work)(void *), void (*done)(void *, pc_request *), void *arg)
{
    plugin_work *pw = calloc(1, sizeof *pw);
    if (!pw || !work || !done) {
        free(pw);
        return -1;
    }
    *pw = (plugin_work){.r = r, .work = work, .done = done, .arg = arg};
    if (uv_queue_work(&r->gen->worker->loop, &pw->req, work_run, work_done) != 0) {
        free(pw);
        return -1;
    }
    pc__request_retain(r);
    return 0;
}

static void host_resume(pc_request *r, int verdict)
{
    pc__request_resume(r, verdict);
}

static void host_resume_response(pc_request *r, int verdict)
{
    pc__request_resume_response(r, verdict);
}

static int host_skip(pc_request *r, const char *name)
{
    pc_request *st = r;
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
    if (!origin || pc__request_origin_stage(r) != PC_ORIGIN_NOT_YET || !r->zone) return -1;
    const pc_config *cfg = r->gen->cfg;
    for (size_t i = 0; i < cfg->norigins; i++) {
        if (strcmp(cfg->origins[i].name, origin) != 0) continue;
        /* A rule must not route a call around an origin's access policy, which already ran. */
        if (cfg->origins[i].access && i != r->zone->origin_index) return -1;
        r->route_origin = i + 1;
        return 0;
    }
    return -1;
}

static int host_set_response_header(pc_request *r, const char *name, const char *value)
{
    if (!name || !value || !pc__headers_name_ok(name) || pc__request_response_started(r) ||
        r->extra_resp.n >= 32)
        return -1;
    return pc__headers_add_str(&r->extra_resp, name, value);
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
    if (metric_name_ok(name))
        pc__metrics_plugin_count(r->gen->worker->metrics, name, r->zone ? r->zone->name : "", label, n);
}

static void host_metric_observe(pc_request *r, const char *name, double value)
{
    if (metric_name_ok(name))
        pc__metrics_plugin_observe(r->gen->worker->metrics, name, r->zone ? r->zone->name : "", value);
}

static void *host_event_loop(pc_request *r)
{
    return &r->gen->worker->loop;
}

static int host_hold_body(pc_request *r, size_t max_bytes)
{
    return pc__request_hold_body(r, max_bytes);
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
    .event_loop = host_event_loop,
};

/* ---- running hooks ---- */

static int verdict(pc_request *r, const pc_loaded_plugin *lp, int rv)
{
    if (rv == PC_CONTINUE) return 0;
    if (rv == PC_DENY) {
        if (!r->deny_status) {
            char msg[256];
            snprintf(msg, sizeof msg, "denied by plugin %s", lp->name);
            host_deny(r, PC_GRPC_PERMISSION_DENIED, msg);
        }
        return 1;
    }
    pc_log_warn("plugin %s: hook failed on %s (on_error: %s)", lp->name, r->path ? r->path : "-",
                lp->on_error_continue ? "continue" : "deny");
    if (lp->on_error_continue) return 0;
    char msg[256];
    snprintf(msg, sizeof msg, "refused: plugin %s failed", lp->name);
    host_deny(r, PC_GRPC_UNAVAILABLE, msg);
    return 1;
}

/* A plugin's request state: its slice of the request's block, NULL when it asked for none. */
static void *state_of(pc_request *r, size_t idx)
{
    const pc_loaded_plugin *lp = &r->gen->rt->plugins->p[idx];
    if (!r->plugin_state || lp->desc->request_state_size == 0) return NULL;
    return (char *)r->plugin_state + lp->state_offset;
}

/* pause_at: where the position of a plugin that pauses goes (NULL: the hooks may not pause). */
static int run(pc_request *r, size_t offset, const pc_message *m, size_t from, size_t *pause_at)
{
    const pc_chain *ch = r->chain;
    if (!ch || ch->n == 0) return PC_CHAIN_GO;
    const pc_plugins *ps = r->gen->rt->plugins;
    for (size_t i = from; i < ch->n; i++) {
        const pc_loaded_plugin *lp = &ps->p[ch->idx[i]];
        const void *fn = pc__plugin_hook(lp, offset);
        if (!fn || (r->skipped && r->skipped[ch->idx[i]])) continue;
        void *ctx = r->gen->plugin_ctx[ch->idx[i]], *state = state_of(r, ch->idx[i]);
        int rv = m ? ((pc_message_hook)fn)(r, ctx, state, m) : ((pc_request_hook)fn)(r, ctx, state);
        if (rv == PC_PAUSE && pause_at) {
            *pause_at = i;
            return PC_CHAIN_PAUSE;
        }
        if (verdict(r, lp, rv)) return PC_CHAIN_DENY;
    }
    return PC_CHAIN_GO;
}

int pc__chain_resumed(pc_request *r, size_t pos, int rv)
{
    const pc_plugins *ps = r->gen->rt->plugins;
    const pc_loaded_plugin *lp = &ps->p[r->chain->idx[pos]];
    return verdict(r, lp, rv == PC_PAUSE ? PC_ERROR : rv);
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

int pc__chain_request_headers(pc_request *r, size_t from)
{
    const pc_plugins *ps = r->gen->rt->plugins;
    if (!ps || ps->n == 0) return PC_CHAIN_GO;
    if (from == 0) {
        r->chain = pc__plugins_chain(ps, r->gen->cfg, r->zone);
        if (r->chain->n == 0) return PC_CHAIN_GO;
        if (ps->state_size && !(r->plugin_state = calloc(1, ps->state_size))) {
            host_deny(r, PC_GRPC_RESOURCE_EXHAUSTED, "out of memory");
            return PC_CHAIN_DENY;
        }
        r->chain_started = true;
    }
    return run(r, offsetof(pc_plugin, on_request_headers), NULL, from, &r->pause_pos);
}

int pc__chain_request_message(pc_request *r, const pc_message *m, size_t from)
{
    if (!r->chain || !r->chain->request_messages) return PC_CHAIN_GO;
    int rv = run(r, offsetof(pc_plugin, on_request_message), m, from, &r->pause_pos);
    pc__request_forget_message(r);
    return rv;
}

int pc__chain_request_end(pc_request *r, size_t from)
{
    return run(r, offsetof(pc_plugin, on_request_end), NULL, from, &r->pause_pos);
}

int pc__chain_response_headers(pc_request *r)
{
    return run(r, offsetof(pc_plugin, on_response_headers), NULL, 0, NULL);
}

int pc__chain_response_message(pc_request *r, const pc_message *m, size_t from)
{
    if (!r->chain || !r->chain->response_messages) return PC_CHAIN_GO;
    int rv = run(r, offsetof(pc_plugin, on_response_message), m, from, &r->resp_pause_pos);
    pc__request_forget_message(r);
    return rv;
}

int pc__chain_request_ready(pc_request *r)
{
    return run(r, offsetof(pc_plugin, on_request_ready), NULL, 0, NULL);
}

int pc__chain_response_trailers(pc_request *r)
{
    return run(r, offsetof(pc_plugin, on_response_trailers), NULL, 0, NULL);
}

void pc__chain_log(pc_request *r)
{
    const pc_plugins *ps = r->gen->rt->plugins;
    if (r->chain_logged || !ps || ps->n == 0) return;
    r->chain_logged = true;
    if (!r->chain_started) {
        /* refused before the chain ran (routing, limits, the core's checks): the zone's plugins
         * still log it, with request state of their own */
        r->chain = pc__plugins_chain(ps, r->gen->cfg, r->zone);
        if (ps->state_size && !r->plugin_state && !(r->plugin_state = calloc(1, ps->state_size))) return;
    }
    const pc_chain *ch = r->chain;
    for (size_t i = 0; i < ch->n; i++) {
        const pc_loaded_plugin *lp = &ps->p[ch->idx[i]];
        void (*fn)(pc_request *, void *, void *) =
            (void (*)(pc_request *, void *, void *))pc__plugin_hook(lp, offsetof(pc_plugin, on_log));
        if (fn) fn(r, r->gen->plugin_ctx[ch->idx[i]], state_of(r, ch->idx[i]));
    }
}
