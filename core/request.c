/* The request: built once from a header list, then read and changed by the chain's host functions,
 * freed with everything plugins attached to it. */
#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "grpc_status.h"
#include "protobuf.h"
#include "worker.h"
#include "zone_select.h"

static const char *hdr(const nghttp2_nv *nv, const char *name, size_t nlen)
{
    return (nv->namelen == nlen && memcmp(nv->name, name, nlen) == 0) ? (const char *)nv->value : NULL;
}

/* The facts point into the header list: names compared exactly, as HTTP/2 sends them; the last of
 * a repeated field wins. */
static void read_facts(pc_request *r)
{
    for (size_t i = 0; i < r->headers.n; i++) {
        const nghttp2_nv *nv = &r->headers.nv[i];
        const char *v;
        if (nv->name[0] == ':') {
            if ((v = hdr(nv, ":method", 7)))
                r->method = v;
            else if ((v = hdr(nv, ":scheme", 7)))
                r->scheme = v;
            else if ((v = hdr(nv, ":authority", 10)))
                r->authority = v;
            else if ((v = hdr(nv, ":path", 5)))
                r->path = v;
        } else if ((v = hdr(nv, "content-type", 12))) {
            r->content_type = v;
            r->is_grpc = pc__grpc_is_content_type(v, nv->valuelen);
        } else if ((v = hdr(nv, "host", 4))) {
            r->host_header = v;
        } else if ((v = hdr(nv, "grpc-timeout", 12))) {
            r->grpc_timeout = v;
        } else if ((v = hdr(nv, "grpc-encoding", 13))) {
            r->grpc_encoding = v;
        }
    }
}

void pc__request_init(pc_request *r, pc_headers *headers, struct pc_gen *gen, pc_conn_shared *conn,
                      const pc_request_ops *ops, void *owner)
{
    *r = (pc_request){.gen = gen, .conn = conn, .ops = ops, .owner = owner};
    r->headers = pc__headers_take(headers);
    r->extra_resp.mem = r->headers.mem;
    if (conn) conn->refs++;
    read_facts(r);
}

const pc_zone_conf *pc__request_select_zone(pc_request *r, char *host, size_t hostlen)
{
    const char *authority = r->authority ? r->authority : r->host_header;
    if (!r->gen || !r->gen->cfg) {
        pc__zone_host(authority, host, hostlen);
        return r->zone = NULL;
    }
    return r->zone = pc__zone_select(r->gen->cfg, authority, host, hostlen);
}

void pc__request_forget_message(pc_request *r)
{
    if (r->pb) pc__pb_result_free(r->pb);
    free(r->fields);
    free(r->json);
    r->pb = NULL;
    r->fields = NULL;
    r->json = NULL;
    r->nfields = 0;
    r->cur_msg = NULL;
}

void pc__request_free(pc_request *r)
{
    pc__request_forget_message(r);
    for (size_t i = 0; i < r->npub; i++) {
        free(r->pub[i].key);
        free(r->pub[i].text);
    }
    free(r->pub);
    free(r->deny_msg);
    free(r->info_service);
    free(r->info_method);
    free(r->info_subtype);
    free(r->plugin_state);
    free(r->skipped);
    pc__headers_free(&r->headers);
    pc__headers_free(&r->extra_resp);
    pc__conn_shared_release(r->conn);
    *r = (pc_request){0};
}

/* ---- headers ---- */

/* The facts that point at a removed field are gone with it. */
static void remove_field(pc_request *r, const char *name)
{
    if (r->host_header && !strcmp(name, "host")) r->host_header = NULL;
    if (r->content_type && !strcmp(name, "content-type")) r->content_type = NULL;
    pc__headers_remove(&r->headers, name);
}

int pc__request_header_set(pc_request *r, const char *name, const char *value)
{
    if (!pc__headers_name_ok(name) || !value) return -1;
    remove_field(r, name);
    return pc__headers_add_str(&r->headers, name, value);
}

int pc__request_header_remove(pc_request *r, const char *name)
{
    if (!pc__headers_name_ok(name)) return -1;
    remove_field(r, name);
    return 0;
}

/* ---- published values and the verdict ---- */

const pc_published *pc__request_published(const pc_request *r, const char *key)
{
    for (size_t i = 0; key && i < r->npub; i++)
        if (!strcmp(r->pub[i].key, key)) return &r->pub[i];
    return NULL;
}

int pc__request_publish(pc_request *r, const char *key, pc_value_type type, const char *text, int64_t i,
                        double d)
{
    if (!key || !*key || !text) return -1;
    char *t = strdup(text);
    if (!t) return -1;
    pc_published *p = (pc_published *)pc__request_published(r, key);
    if (p) {
        free(p->text);
    } else {
        if (r->npub >= 128) { /* bounded: a plugin cannot grow a request without limit */
            free(t);
            return -1;
        }
        pc_published *np = realloc(r->pub, (r->npub + 1) * sizeof *np);
        if (!np) {
            free(t);
            return -1;
        }
        r->pub = np;
        p = &r->pub[r->npub];
        if (!(p->key = strdup(key))) {
            free(t);
            return -1;
        }
        r->npub++;
    }
    p->text = t;
    p->type = type;
    p->i = i;
    p->d = d;
    return 0;
}

void pc__request_deny(pc_request *r, int grpc_status, const char *message)
{
    r->deny_status = (grpc_status >= 1 && grpc_status <= 16) ? grpc_status : PC_GRPC_PERMISSION_DENIED;
    free(r->deny_msg);
    r->deny_msg = strdup(message && *message ? message : "denied");
}

/* ---- request_info ---- */

/* A string for request_info that lives as long as the request: in *slot, made once. */
static const char *keep(char **slot, const char *s, size_t n)
{
    if (!*slot) *slot = strndup(s, n);
    return *slot;
}

const char *pc__request_origin(const pc_request *r)
{
    if (!r->gen || !r->gen->cfg) return NULL;
    if (r->route_origin) return r->gen->cfg->origins[r->route_origin - 1].name;
    return r->zone ? r->gen->cfg->origins[r->zone->origin_index].name : NULL;
}

static const char *conn_info(const pc_request *r, const char *key)
{
    const pc_conn_shared *cs = r->conn;
    const pc_conn_info *ci = &cs->info;
    if (!strcmp(key, "client.ip")) return ci->client_ip;
    if (!strcmp(key, "client.port")) return cs->port;
    if (!strcmp(key, "tls.sni")) return ci->sni;
    if (!strcmp(key, "tls.alpn")) return ci->alpn;
    if (!strcmp(key, "tls.version")) return ci->tls_version;
    if (!strcmp(key, "tls.cipher")) return ci->tls_cipher;
    if (!strcmp(key, "tls.client_subject")) return ci->client_subject;
    if (!strcmp(key, "tls.ja3")) return cs->ja3[0] ? cs->ja3 : NULL;
    if (!strcmp(key, "tls.ja3_hash")) return cs->ja3_hash[0] ? cs->ja3_hash : NULL;
    if (!strcmp(key, "tls.ja4")) return cs->ja4[0] ? cs->ja4 : NULL;
    if (!strcmp(key, "h2.fingerprint")) return cs->h2fp[0] ? cs->h2fp : NULL;
    return NULL;
}

const char *pc__request_info(pc_request *r, const char *key)
{
    const char *svc, *meth;
    size_t sl, ml;
    if (!strcmp(key, "method")) return r->method;
    if (!strcmp(key, "path")) return r->path;
    if (!strcmp(key, "authority")) return r->authority ? r->authority : r->host_header;
    if (!strcmp(key, "scheme")) return r->scheme;
    if (!strcmp(key, "zone")) return r->zone ? r->zone->name : NULL;
    if (!strcmp(key, "origin")) return pc__request_origin(r);
    if (!strcmp(key, "grpc")) return r->is_grpc ? "1" : "0";
    if (!strcmp(key, "grpc.service") || !strcmp(key, "grpc.method")) {
        if (!r->is_grpc || pc__grpc_split_path(r->path, &svc, &sl, &meth, &ml) < 0) return NULL;
        return key[5] == 's' ? keep(&r->info_service, svc, sl) : keep(&r->info_method, meth, ml);
    }
    if (!strcmp(key, "grpc.subtype")) {
        if (!r->is_grpc || !r->content_type) return NULL;
        const char *plus = strchr(r->content_type, '+');
        if (!plus) return "proto";
        return keep(&r->info_subtype, plus + 1, strcspn(plus + 1, ";"));
    }
    if (!strcmp(key, "status") || !strcmp(key, "grpc_status"))
        return r->ops && r->ops->response_info ? r->ops->response_info(r->owner, key) : NULL;
    if (!strcmp(key, "request_id")) return pc__request_id(r);
    return r->conn ? conn_info(r, key) : NULL;
}

const char *pc__request_id(pc_request *r)
{
    static uint64_t seq; /* requests without a worker (tests) */
    if (!r->request_id[0]) {
        pc_worker *w = r->gen ? r->gen->worker : NULL;
        snprintf(r->request_id, sizeof r->request_id, "%d-%llx", w ? w->id : 0,
                 (unsigned long long)(w ? ++w->request_seq : ++seq));
    }
    return r->request_id;
}

/* ---- the owner ---- */

void pc__request_resume(pc_request *r, int verdict)
{
    if (r->ops && r->ops->resume) r->ops->resume(r->owner, verdict);
}

void pc__request_resume_response(pc_request *r, int verdict)
{
    if (r->ops && r->ops->resume_response) r->ops->resume_response(r->owner, verdict);
}

int pc__request_hold_body(pc_request *r, size_t max_bytes)
{
    return r->ops && r->ops->hold_body ? r->ops->hold_body(r->owner, max_bytes) : -1;
}

pc_origin_stage pc__request_origin_stage(pc_request *r)
{
    return r->ops && r->ops->origin_stage ? r->ops->origin_stage(r->owner) : PC_ORIGIN_NOT_YET;
}

bool pc__request_response_started(pc_request *r)
{
    return r->ops && r->ops->response_started && r->ops->response_started(r->owner);
}

const pc_headers *pc__request_response_headers(pc_request *r, bool trailers)
{
    return r->ops && r->ops->response_headers ? r->ops->response_headers(r->owner, trailers) : NULL;
}

void pc__request_retain(pc_request *r)
{
    if (r->ops && r->ops->retain) r->ops->retain(r->owner);
}

void pc__request_release(pc_request *r)
{
    if (r->ops && r->ops->release) r->ops->release(r->owner);
}
