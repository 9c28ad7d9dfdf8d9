/* Front TLS: one SSL_CTX per certificate; the client-hello callback reads SNI and ALPN from the
 * raw hello, refuses clients that cannot speak h2 with no_application_protocol (HTTP/1.1 is taken
 * for zones that take gRPC-Web), switches to the
 * context whose certificate names the requested host, and asks for a client certificate when the
 * zone of that host routes to an origin whose access policy is mtls. */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "access/policy.h"
#include "log.h"
#include "transport.h"

typedef struct cert_entry {
    SSL_CTX *ctx;
    char **names; /* lower-case DNS names and patterns from SAN (CN when no SAN) */
    size_t nnames;
} cert_entry;

/* Client certificates for one origin with access.grpc: mtls. */
typedef struct mtls_origin {
    X509_STORE *store;           /* NULL: the origin does not use mtls */
    STACK_OF(X509_NAME) * names; /* sent in the CertificateRequest so clients pick the right certificate */
    unsigned char sid_ctx[32];   /* a session only resumes for the origin (and CA) it was verified for */
} mtls_origin;

struct pc_tls_server {
    cert_entry *certs;
    size_t ncerts;
    const pc_config *cfg; /* zones by SNI; outlives the server (both belong to one runtime) */
    mtls_origin *mtls;    /* one per origin; NULL when no origin uses mtls */
};

static const unsigned char alpn_h2[] = {2, 'h', '2'};

int pc__tls_name_match(const char *pattern, const char *name)
{
    if (strcasecmp(pattern, name) == 0) return 1;
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = strchr(name, '.');
        return dot && dot != name && strcasecmp(pattern + 1, dot) == 0;
    }
    return 0;
}

/* HTTP/1.1 is for gRPC-Web only: offered when the zone the SNI names takes gRPC-Web, or, without SNI,
 * when any zone does. */
static bool h1_allowed(const pc_config *cfg, SSL *ssl)
{
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (sni) {
        const pc_zone_conf *z = pc__zone_find(cfg, sni, strlen(sni));
        return z && z->grpc_web;
    }
    for (size_t i = 0; i < cfg->nzones; i++)
        if (cfg->zones[i].grpc_web) return true;
    return false;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    const pc_tls_server *s = arg;
    unsigned char *sel;
    static const unsigned char alpn_h1[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    if (SSL_select_next_proto(&sel, outlen, alpn_h2, sizeof alpn_h2, in, inlen) != OPENSSL_NPN_NEGOTIATED &&
        s && h1_allowed(s->cfg, ssl) &&
        SSL_select_next_proto(&sel, outlen, alpn_h1, sizeof alpn_h1, in, inlen) == OPENSSL_NPN_NEGOTIATED &&
        *outlen == 8) {
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
    }
    if (SSL_select_next_proto(&sel, outlen, alpn_h2, sizeof alpn_h2, in, inlen) != OPENSSL_NPN_NEGOTIATED ||
        *outlen != 2 || memcmp(sel, "h2", 2) != 0) {
        pc_transport *t = SSL_get_app_data(ssl);
        pc_log_info("tls: client %s offered no h2 in ALPN: refused with no_application_protocol",
                    t ? t->peer : "?");
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* server_name extension: list length, then entries of type(1) length(2) name. */
static int hello_sni(SSL *ssl, char *out, size_t outlen)
{
    const unsigned char *p;
    size_t len;
    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) || len < 5) return 0;
    size_t list = ((size_t)p[0] << 8) | p[1];
    if (list + 2 > len || p[2] != TLSEXT_NAMETYPE_host_name) return 0;
    size_t n = ((size_t)p[3] << 8) | p[4];
    if (n + 5 > len || n == 0 || n >= outlen) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[5 + i];
        if (c <= 0x20 || c >= 0x7f) return 0;
        out[i] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
    }
    out[n] = '\0';
    return 1;
}

/* The verdict on the certificate belongs to the access policy: completing the handshake lets a
 * client without a valid certificate get UNAUTHENTICATED with a reason, not an opaque TLS alert.
 * A failed chain leaves SSL_get_verify_result() other than X509_V_OK, so it never counts. */
static int verify_later(int ok, X509_STORE_CTX *x)
{
    (void)ok;
    (void)x;
    return 1;
}

/* HTTP/2 forbids renegotiation, so the certificate request is decided here, from the SNI. */
static int request_client_cert(pc_tls_server *s, SSL *ssl, const char *sni)
{
    const pc_zone_conf *z = pc__zone_find(s->cfg, sni, strlen(sni));
    const mtls_origin *m = z ? &s->mtls[z->origin_index] : NULL;
    if (!m || !m->store) return 0;
    STACK_OF(X509_NAME) *names = SSL_dup_CA_list(m->names);
    if (!names || SSL_set1_verify_cert_store(ssl, m->store) != 1 ||
        SSL_set_session_id_context(ssl, m->sid_ctx, sizeof m->sid_ctx) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        return -1;
    }
    SSL_set_client_CA_list(ssl, names);
    SSL_set_verify(ssl, SSL_VERIFY_PEER, verify_later);
    return 0;
}

static int client_hello(SSL *ssl, int *al, void *arg)
{
    pc_tls_server *s = arg;
    const unsigned char *p;
    size_t len;
    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation, &p, &len)) {
        pc_transport *t = SSL_get_app_data(ssl);
        pc_log_info("tls: client %s sent no ALPN (h2 required): refused with no_application_protocol",
                    t ? t->peer : "?");
        *al = SSL_AD_NO_APPLICATION_PROTOCOL;
        return SSL_CLIENT_HELLO_ERROR;
    }
    char sni[256];
    if ((s->ncerts < 2 && !s->mtls) || !hello_sni(ssl, sni, sizeof sni)) return SSL_CLIENT_HELLO_SUCCESS;
    size_t pick = s->ncerts;
    for (size_t i = 0; s->ncerts > 1 && pick == s->ncerts && i < s->ncerts; i++)
        for (size_t j = 0; j < s->certs[i].nnames; j++)
            if (pc__tls_name_match(s->certs[i].names[j], sni)) {
                pick = i;
                break;
            }
    if (pick != 0 && pick < s->ncerts) SSL_set_SSL_CTX(ssl, s->certs[pick].ctx);
    /* After the context switch, which replaces the per-connection verify store. */
    if (s->mtls && request_client_cert(s, ssl, sni) < 0) {
        *al = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

static void add_name(cert_entry *e, const char *n, size_t len)
{
    char **v = realloc(e->names, (e->nnames + 1) * sizeof *v);
    if (!v) return;
    e->names = v;
    char *s = strndup(n, len);
    if (!s) return;
    for (char *c = s; *c; c++)
        if (*c >= 'A' && *c <= 'Z') *c = (char)(*c + 32);
    e->names[e->nnames++] = s;
}

static void collect_names(cert_entry *e, X509 *x)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (sans) {
        for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
            GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
            if (g->type == GEN_DNS)
                add_name(e, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                         (size_t)ASN1_STRING_length(g->d.dNSName));
        }
        GENERAL_NAMES_free(sans);
    }
    if (e->nnames == 0) {
        char cn[256];
        if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) > 0)
            add_name(e, cn, strlen(cn));
    }
}

static void ssl_err(char *err, size_t errlen, const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "%s %s: %s", what, path, r ? r : "failed");
    ERR_clear_error();
}

static SSL_CTX *server_ctx(pc_tls_server *s, const pc_cert_conf *c, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* RFC 9113 9.2: TLS 1.2 for h2 needs ephemeral key exchange and AEAD; no renegotiation. */
    SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
    SSL_CTX_set_options(ctx,
                        SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) {
        ssl_err(err, errlen, "cannot load certificate", c->cert);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1) {
        ssl_err(err, errlen, "cannot load private key", c->key);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "private key %s does not match certificate %s", c->key, c->cert);
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, s);
    SSL_CTX_set_client_hello_cb(ctx, client_hello, s);
    return ctx;
}

/* The session id context binds a session to the origin name and the exact CA file content. */
static int mtls_load(mtls_origin *m, const char *origin, const char *ca, char *err, size_t errlen)
{
    m->store = X509_STORE_new();
    if (!m->store || X509_STORE_load_file(m->store, ca) != 1 || !(m->names = SSL_load_client_CA_file(ca))) {
        ssl_err(err, errlen, "access.mtls.ca: cannot load", ca);
        return -1;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    FILE *f = fopen(ca, "rb");
    int ok = md && f && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(md, origin, strlen(origin) + 1) == 1;
    unsigned char buf[4096];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0)
        ok = EVP_DigestUpdate(md, buf, n) == 1;
    unsigned int len = 0;
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(md, m->sid_ctx, &len) == 1 && len == sizeof m->sid_ctx;
    if (f) fclose(f);
    EVP_MD_CTX_free(md);
    if (!ok) snprintf(err, errlen, "access.mtls.ca %s: cannot read", ca);
    return ok ? 0 : -1;
}

static int mtls_setup(pc_tls_server *s, const pc_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->norigins; i++) {
        const char *ca = pc__access_mtls_ca(cfg->origins[i].access);
        if (!ca) continue;
        if (!s->mtls && !(s->mtls = calloc(cfg->norigins, sizeof *s->mtls))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        char e[512];
        if (mtls_load(&s->mtls[i], cfg->origins[i].name, ca, e, sizeof e) < 0) {
            snprintf(err, errlen, "origin %s: %s", cfg->origins[i].name, e);
            return -1;
        }
    }
    return 0;
}

pc_tls_server *pc__tls_server_new(const pc_listen_conf *l, const pc_config *cfg, char *err, size_t errlen)
{
    pc_tls_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->cfg = cfg;
    s->certs = calloc(l->ncerts, sizeof *s->certs);
    if (!s->certs) {
        free(s);
        return NULL;
    }
    if (mtls_setup(s, cfg, err, errlen) < 0) {
        pc__tls_server_free(s);
        return NULL;
    }
    for (size_t i = 0; i < l->ncerts; i++) {
        cert_entry *e = &s->certs[i];
        e->ctx = server_ctx(s, &l->certs[i], err, errlen);
        if (!e->ctx) {
            pc__tls_server_free(s);
            return NULL;
        }
        s->ncerts++;
        collect_names(e, SSL_CTX_get0_certificate(e->ctx));
    }
    return s;
}

SSL_CTX *pc__tls_server_ctx(pc_tls_server *s)
{
    return s->certs[0].ctx;
}

void pc__tls_server_free(pc_tls_server *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->ncerts; i++) {
        SSL_CTX_free(s->certs[i].ctx);
        for (size_t j = 0; j < s->certs[i].nnames; j++)
            free(s->certs[i].names[j]);
        free(s->certs[i].names);
    }
    free(s->certs);
    for (size_t i = 0; s->mtls && i < s->cfg->norigins; i++) {
        X509_STORE_free(s->mtls[i].store);
        sk_X509_NAME_pop_free(s->mtls[i].names, X509_NAME_free);
    }
    free(s->mtls);
    free(s);
}

SSL_CTX *pc__tls_client_new(const pc_origin_conf *o, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_alpn_protos(ctx, alpn_h2, sizeof alpn_h2);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (o->tls_verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = o->tls_ca ? SSL_CTX_load_verify_locations(ctx, o->tls_ca, NULL)
                           : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            ssl_err(err, errlen, "cannot load CA", o->tls_ca ? o->tls_ca : "(system store)");
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    return ctx;
}

const char *pc__tls_sni(SSL *ssl)
{
    return SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
}

int pc__tls_client_subject(SSL *ssl, char *out, size_t outlen)
{
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (!peer || SSL_get_verify_result(ssl) != X509_V_OK || outlen == 0) return 0;
    BIO *b = BIO_new(BIO_s_mem());
    int ok = b && X509_NAME_print_ex(b, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0;
    int n = ok ? BIO_read(b, out, (int)outlen) : -1;
    BIO_free(b);
    /* A subject that does not fit is not passed on cut: a prefix could name someone else. */
    if (n <= 0 || (size_t)n >= outlen) return 0;
    out[n] = '\0';
    return 1;
}
