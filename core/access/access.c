/* The access policy on the request path: the first element of every chain whenever an origin has an
 * `access` map. It is built into the core, not a plugin: the policies are the config's own (parsed
 * once by policy.c), it must run first and cannot be skipped or left out of a zone's chain, and its
 * key material already serves the TLS setup and the admin listener. It still speaks the public
 * plugin ABI (a pc_plugin descriptor, the host table), so the chain runs it like any other element.
 *
 * A protected origin sits behind an interactive login that gRPC clients cannot do, so gRPC to it is
 * refused (deny) or must authenticate another way: a client certificate checked at the TLS handshake
 * (mtls), a service token (id + secret, stored hashed), or a JWT verified against a JWKS. After a
 * successful check the credentials are removed and the edge can vouch for the caller with a
 * short-lived JWT of its own; headers the edge sets are stripped from every incoming request. */
#include "access.h"

#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "policy.h"

#define CACHE_SLOTS 256 /* per worker: service tokens verified recently */
#define CACHE_TTL_S 60  /* a revoked token (after a reload) stops working at once: new cache */
#define MAX_CLAIMS 32   /* published per request */
#define MAX_CLAIM_VALUE 512

/* Immutable after init: shared by every worker. The policies are the config's, which outlives the
 * chain built from it. */
typedef struct acc_conf {
    const pc_host *host;
    const void *handle;
    const pc_config *cfg;
    char **edge_headers; /* identity headers the edge sets: never accepted from a client */
    size_t nedge;
} acc_conf;

typedef struct cache_slot {
    unsigned char key[32]; /* SHA-256 of id, NUL, secret */
    const pc_access_token *token;
    time_t expires;
} cache_slot;

/* One per worker thread, never shared. */
typedef struct acc_worker {
    const acc_conf *conf;
    cache_slot cache[CACHE_SLOTS];
} acc_worker;

typedef struct ident {
    pc_access_mode method;
    const char *sub;
    const char *common_name;
} ident;

/* ---- set-up ---- */

static void conf_free(acc_conf *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->nedge; i++)
        free(c->edge_headers[i]);
    free(c->edge_headers);
    free(c);
}

static int add_edge_header(acc_conf *c, const char *name)
{
    for (size_t i = 0; i < c->nedge; i++)
        if (!strcmp(c->edge_headers[i], name)) return 0;
    char **v = realloc(c->edge_headers, (c->nedge + 1) * sizeof *v);
    if (!v) return -1;
    c->edge_headers = v;
    if (!(v[c->nedge] = strdup(name))) return -1;
    c->nedge++;
    return 0;
}

bool pc__access_needed(const pc_config *cfg)
{
    for (size_t i = 0; i < cfg->norigins; i++)
        if (cfg->origins[i].access) return true;
    return false;
}

int pc__access_init(const pc_host *host, const void *handle, const pc_config *cfg, void **out, char *err,
                    size_t errlen)
{
    acc_conf *c = calloc(1, sizeof *c);
    bool ok = c && add_edge_header(c, PC_ACCESS_VOUCH_HEADER) == 0;
    for (size_t i = 0; ok && i < cfg->norigins; i++) {
        const pc_access_policy *p = cfg->origins[i].access;
        if (p && p->vouch) ok = add_edge_header(c, p->vouch_header) == 0;
    }
    if (!ok) {
        snprintf(err, errlen, "out of memory");
        conf_free(c);
        return -1;
    }
    c->host = host;
    c->handle = handle;
    c->cfg = cfg;
    *out = c;
    return 0;
}

static void destroy(void *ctx)
{
    conf_free(ctx);
}

static int worker_init(void *plugin_ctx, unsigned worker_id, void **out, char *err, size_t errlen)
{
    (void)worker_id;
    acc_worker *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    w->conf = plugin_ctx;
    *out = w;
    return 0;
}

static void worker_destroy(void *ctx)
{
    if (ctx) OPENSSL_cleanse(ctx, sizeof(acc_worker));
    free(ctx);
}

/* ---- checks ---- */

static const pc_access_policy *policy_for(const acc_conf *c, const char *origin)
{
    for (size_t i = 0; origin && i < c->cfg->norigins; i++)
        if (c->cfg->origins[i].access && !strcmp(c->cfg->origins[i].name, origin))
            return c->cfg->origins[i].access;
    return NULL;
}

/* 1 when the header appears more than once: which copy would the origin believe? */
static int repeated(const pc_host *h, pc_request *r, const char *name)
{
    size_t seen = 0, n = h->header_count(r);
    for (size_t i = 0; i < n; i++) {
        const char *k, *v;
        if (h->header_at(r, i, &k, &v) == 0 && !strcmp(k, name)) seen++;
    }
    return seen > 1;
}

static int refuse(const acc_conf *c, pc_request *r, pc_access_mode mode, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(const acc_conf *c, pc_request *r, pc_access_mode mode, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->host->metric_count(r, "access", mode == PC_ACCESS_DENY ? "denied" : "unauthenticated", 1);
    c->host->publish(r, "access.result", mode == PC_ACCESS_DENY ? "denied" : "unauthenticated");
    c->host->publish(r, "access.reason", msg); /* never holds a credential: see the callers */
    return c->host->deny(r, mode == PC_ACCESS_DENY ? PC_GRPC_PERMISSION_DENIED : PC_GRPC_UNAUTHENTICATED,
                         msg);
}

/* Claim names become published keys: plain words only, so a claim cannot forge another key. */
static bool claim_name_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 64) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-'))
            return false;
    return true;
}

static void publish_claims(const pc_host *h, pc_request *r, struct json_object *claims)
{
    size_t n = 0;
    json_object_object_foreach(claims, key, val)
    {
        if (n >= MAX_CLAIMS || !claim_name_ok(key)) continue;
        const char *s = NULL;
        if (json_object_is_type(val, json_type_string) || json_object_is_type(val, json_type_int) ||
            json_object_is_type(val, json_type_double) || json_object_is_type(val, json_type_boolean))
            s = json_object_get_string(val);
        if (!s || strlen(s) > MAX_CLAIM_VALUE) continue;
        char name[96];
        snprintf(name, sizeof name, "access.claim.%s", key);
        h->publish(r, name, s);
        n++;
    }
}

/* The common name of an RFC 2253 subject: its first CN= attribute, unescaped. */
static void subject_cn(const char *subject, char *out, size_t outlen)
{
    out[0] = '\0';
    for (const char *p = subject; p && *p;) {
        if (!strncmp(p, "CN=", 3)) {
            size_t o = 0;
            for (p += 3; *p && *p != ',' && o + 1 < outlen; p++) {
                if (*p == '\\' && p[1]) p++;
                out[o++] = *p;
            }
            out[o] = '\0';
            return;
        }
        /* Skip to the next unescaped comma. */
        while (*p && *p != ',')
            p += (*p == '\\' && p[1]) ? 2 : 1;
        if (*p) p++;
    }
}

static int vouch(const acc_conf *c, pc_request *r, const pc_access_policy *p, const ident *id)
{
    const pc_host *h = c->host;
    struct json_object *claims = json_object_new_object();
    unsigned char rnd[16];
    char jti[33];
    time_t now = time(NULL);
    if (!claims || RAND_bytes(rnd, sizeof rnd) != 1) {
        json_object_put(claims);
        return -1;
    }
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(jti + 2 * i, 3, "%02x", rnd[i]);
    json_object_object_add(claims, "iss", json_object_new_string("portcullis"));
    json_object_object_add(claims, "aud", json_object_new_string(p->origin));
    json_object_object_add(claims, "sub", json_object_new_string(id->sub ? id->sub : ""));
    json_object_object_add(claims, "common_name",
                           json_object_new_string(id->common_name ? id->common_name : ""));
    json_object_object_add(claims, "auth_method", json_object_new_string(pc__access_mode_name(id->method)));
    json_object_object_add(claims, "iat", json_object_new_int64((int64_t)now));
    json_object_object_add(claims, "nbf", json_object_new_int64((int64_t)now));
    json_object_object_add(claims, "exp", json_object_new_int64((int64_t)now + p->vouch_ttl_s));
    json_object_object_add(claims, "jti", json_object_new_string(jti));
    char *token = pc__access_jwt_sign(&p->signer, claims);
    json_object_put(claims);
    int rc = token && h->header_set(r, p->vouch_header, token) == 0 ? 0 : -1;
    free(token);
    return rc;
}

/* The caller proved who it is: publish that, remove its credentials, vouch for it to the origin. */
static int allow(const acc_conf *c, pc_request *r, const pc_access_policy *p, const ident *id)
{
    const pc_host *h = c->host;
    h->publish(r, "access.result", "allowed");
    h->publish(r, "access.method", pc__access_mode_name(id->method));
    if (id->sub) h->publish(r, "access.sub", id->sub);
    if (id->common_name) h->publish(r, "access.common_name", id->common_name);
    if (p->strip) {
        if (id->method == PC_ACCESS_TOKEN) {
            h->header_remove(r, "access-client-id");
            h->header_remove(r, "access-client-secret");
        } else if (id->method == PC_ACCESS_JWT) {
            h->header_remove(r, p->jwt_header);
        }
    }
    if (p->vouch && vouch(c, r, p, id) < 0) {
        h->log(c->handle, PC_PLUGIN_LOG_ERROR, "origin %s: could not sign the vouch token", p->origin);
        return h->deny(r, PC_GRPC_INTERNAL, "access: the edge could not sign its identity token");
    }
    h->metric_count(r, "access", "allowed", 1);
    return PC_CONTINUE;
}

/* The host of :authority, without a port. */
static void authority_host(const char *auth, char *out, size_t outlen)
{
    size_t len = auth ? strlen(auth) : 0;
    if (auth && auth[0] != '[') {
        const char *colon = strrchr(auth, ':');
        if (colon) len = (size_t)(colon - auth);
    }
    snprintf(out, outlen, "%.*s", (int)len, auth ? auth : "");
}

static int check_mtls(const acc_conf *c, pc_request *r, const pc_access_policy *p)
{
    const pc_host *h = c->host;
    const char *subject = h->request_info(r, "tls.client_subject");
    if (!subject)
        return refuse(
            c, r, PC_ACCESS_MTLS,
            "origin %s requires a client certificate issued by its CA: none was presented or it did not "
            "verify",
            p->origin);
    /* The handshake checked the certificate against the CA of the origin that its server name (SNI)
     * routes to. A connection opened for one host must not carry calls to another, or a certificate
     * from one origin's CA would open a different origin. */
    char host[256], sni[256];
    authority_host(h->request_info(r, "authority"), host, sizeof host);
    const char *s = h->request_info(r, "tls.sni");
    snprintf(sni, sizeof sni, "%s", s ? s : "");
    if (!s || strcasecmp(sni, host) != 0)
        return refuse(
            c, r, PC_ACCESS_MTLS,
            "the client certificate was checked for TLS server name \"%.100s\", not for this host: open a "
            "connection to this host",
            sni);
    char cn[256];
    subject_cn(subject, cn, sizeof cn);
    h->publish(r, "access.subject", subject);
    ident id = {PC_ACCESS_MTLS, subject, cn[0] ? cn : subject};
    return allow(c, r, p, &id);
}

static int check_jwt(const acc_conf *c, pc_request *r, const pc_access_policy *p)
{
    const pc_host *h = c->host;
    const char *v = h->header_get(r, p->jwt_header);
    if (!v)
        return refuse(c, r, PC_ACCESS_JWT, "origin %s requires a bearer token in the %s header", p->origin,
                      p->jwt_header);
    if (repeated(h, r, p->jwt_header))
        return refuse(c, r, PC_ACCESS_JWT, "invalid token: the %s header is repeated", p->jwt_header);
    if (!strncasecmp(v, "Bearer ", 7)) {
        v += 7;
        while (*v == ' ')
            v++;
    } else if (!strcmp(p->jwt_header, "authorization")) {
        return refuse(c, r, PC_ACCESS_JWT, "invalid token: authorization must use the Bearer scheme");
    }
    struct json_object *claims;
    const char *why;
    if (pc__access_jwt_verify(&p->jwks, v, p->issuer, p->audience, p->leeway_s, time(NULL), &claims, &why) <
        0)
        return refuse(c, r, PC_ACCESS_JWT, "invalid token: %s", why);
    struct json_object *sub_o;
    const char *sub =
        json_object_object_get_ex(claims, "sub", &sub_o) && json_object_is_type(sub_o, json_type_string)
            ? json_object_get_string(sub_o)
            : NULL;
    publish_claims(h, r, claims);
    ident id = {PC_ACCESS_JWT, sub, sub};
    int rc = allow(c, r, p, &id);
    json_object_put(claims);
    return rc;
}

/* ---- service tokens: the KDF runs on the thread pool, not on the event loop ---- */

typedef struct token_work {
    acc_worker *w;
    const pc_access_policy *p;
    const pc_access_token *token; /* NULL: unknown id (the KDF still runs, so timing says nothing) */
    pc_access_token dummy;
    char *id;
    char *secret;
    size_t secret_len;
    unsigned char key[32];
    int match;
} token_work;

static void cache_key(const char *id, const char *secret, size_t len, unsigned char out[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int n = 0;
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(md, id, strlen(id) + 1) != 1 || EVP_DigestUpdate(md, secret, len) != 1 ||
        EVP_DigestFinal_ex(md, out, &n) != 1)
        memset(out, 0, 32);
    EVP_MD_CTX_free(md);
}

static bool cache_hit(acc_worker *w, const unsigned char key[32], const pc_access_token *t)
{
    cache_slot *s = &w->cache[key[0]];
    return t && s->token == t && s->expires > time(NULL) && CRYPTO_memcmp(s->key, key, 32) == 0;
}

static void token_work_free(token_work *tw)
{
    if (tw->secret) OPENSSL_cleanse(tw->secret, tw->secret_len);
    free(tw->secret);
    free(tw->id);
    OPENSSL_cleanse(tw->key, sizeof tw->key);
    free(tw);
}

static void token_kdf(void *arg)
{
    token_work *tw = arg;
    const pc_access_token *t = tw->token ? tw->token : &tw->dummy;
    tw->match = pc__access_token_matches(t, tw->secret, tw->secret_len) && tw->token != NULL;
}

static int token_verdict(token_work *tw, pc_request *r)
{
    const acc_conf *c = tw->w->conf;
    if (!tw->match) return refuse(c, r, PC_ACCESS_TOKEN, "invalid service token");
    cache_slot *s = &tw->w->cache[tw->key[0]];
    memcpy(s->key, tw->key, sizeof s->key);
    s->token = tw->token;
    s->expires = time(NULL) + CACHE_TTL_S;
    if (tw->token->name) c->host->publish(r, "access.token_name", tw->token->name);
    ident id = {PC_ACCESS_TOKEN, tw->token->id, tw->token->id};
    c->host->publish(r, "access.client_id", tw->token->id);
    return allow(c, r, tw->p, &id);
}

static void token_done(void *arg, pc_request *r)
{
    token_work *tw = arg;
    const pc_host *h = tw->w->conf->host;
    int rv = token_verdict(tw, r);
    token_work_free(tw);
    h->resume(r, rv);
}

static int check_token(acc_worker *w, pc_request *r, const pc_access_policy *p)
{
    const acc_conf *c = w->conf;
    const pc_host *h = c->host;
    const char *id = h->header_get(r, "access-client-id"), *secret = h->header_get(r, "access-client-secret");
    if (!id || !secret || !*id || !*secret)
        return refuse(c, r, PC_ACCESS_TOKEN,
                      "origin %s requires a service token: headers access-client-id and access-client-secret",
                      p->origin);
    if (repeated(h, r, "access-client-id") || repeated(h, r, "access-client-secret"))
        return refuse(c, r, PC_ACCESS_TOKEN, "invalid service token: a token header is repeated");
    size_t slen = strlen(secret);
    if (strlen(id) > 256 || slen > 512) return refuse(c, r, PC_ACCESS_TOKEN, "invalid service token");
    token_work *tw = calloc(1, sizeof *tw);
    if (!tw) return PC_ERROR;
    tw->w = w;
    tw->p = p;
    tw->token = pc__access_tokens_find(&p->tokens, id);
    tw->secret_len = slen;
    cache_key(id, secret, slen, tw->key);
    if (cache_hit(w, tw->key, tw->token)) {
        tw->match = 1;
        int rv = token_verdict(tw, r);
        token_work_free(tw);
        return rv;
    }
    /* Unknown ids cost the same KDF as known ones (the first entry's parameters, a zero salt). */
    tw->dummy = p->tokens.t[0];
    memset(tw->dummy.salt, 0, sizeof tw->dummy.salt);
    if (!(tw->secret = malloc(slen + 1)) || !(tw->id = strdup(id))) {
        token_work_free(tw);
        return PC_ERROR;
    }
    memcpy(tw->secret, secret, slen + 1);
    if (h->queue_work(r, token_kdf, token_done, tw) < 0) {
        /* No thread pool slot: do it here rather than fail the call. */
        token_kdf(tw);
        int rv = token_verdict(tw, r);
        token_work_free(tw);
        return rv;
    }
    return PC_PAUSE;
}

/* ---- hooks ---- */

static int on_request_headers(pc_request *r, void *ctx, void *state)
{
    (void)state;
    acc_worker *w = ctx;
    const acc_conf *c = w->conf;
    const pc_host *h = c->host;
    /* Identity the edge asserts can only come from the edge, whatever the origin or protocol. */
    for (size_t i = 0; i < c->nedge; i++)
        h->header_remove(r, c->edge_headers[i]);
    const pc_access_policy *p = policy_for(c, h->request_info(r, "origin"));
    if (!p) return PC_CONTINUE;
    const char *grpc = h->request_info(r, "grpc");
    pc_access_mode mode = grpc && !strcmp(grpc, "1") ? p->grpc : p->http_jwt ? PC_ACCESS_JWT : PC_ACCESS_NONE;
    switch (mode) {
    case PC_ACCESS_NONE:
        return PC_CONTINUE;
    case PC_ACCESS_DENY:
        return refuse(
            c, r, PC_ACCESS_DENY,
            "gRPC is disabled for protected origin %s: it is behind an interactive login (access.grpc: "
            "deny)",
            p->origin);
    case PC_ACCESS_MTLS:
        return check_mtls(c, r, p);
    case PC_ACCESS_TOKEN:
        return check_token(w, r, p);
    case PC_ACCESS_JWT:
        return check_jwt(c, r, p);
    }
    return PC_ERROR;
}

/* No init: the loader configures it with pc__access_init, from the config's parsed policies. */
const pc_plugin pc__access_plugin = {
    .abi_version = PC_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pc_plugin),
    .name = "access",
    .version = "1.0",
    .summary = "refuses gRPC to origins behind an interactive login, or demands mTLS, a service token or a "
               "JWT; configured by each origin's access map",
    .destroy = destroy,
    .worker_init = worker_init,
    .worker_destroy = worker_destroy,
    .on_request_headers = on_request_headers,
};
