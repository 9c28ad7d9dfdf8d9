/* Checks of access-policy material at config load: the same rules the access plugin applies when it
 * loads them, so a broken file fails `portcullis check` with the config position of its key. */
#include "access_check.h"

#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yaml_tree.h"

#define MAX_JWKS (1 << 20)
#define MAX_KEYS 64

int pc__access_check_ca(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return -1;
    }
    size_t n = 0;
    int rc = 0;
    X509 *x;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL))) {
        n++;
        /* A leaf here would never anchor a chain: every client would fail, so say so now. */
        if (X509_check_ca(x) < 1) {
            char name[256] = "";
            X509_NAME_oneline(X509_get_subject_name(x), name, sizeof name);
            snprintf(err, errlen, "%s: certificate %zu (%s) is not a CA certificate", path, n, name);
            rc = -1;
        }
        X509_free(x);
        if (rc) break;
    }
    fclose(f);
    ERR_clear_error();
    if (!rc && n == 0) {
        snprintf(err, errlen, "%s: no PEM certificate found", path);
        rc = -1;
    }
    return rc;
}

/* ---- JWKS ---- */

static const char *jstr(struct json_object *o, const char *key)
{
    struct json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string)) return NULL;
    return json_object_get_string(v);
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* base64url without padding into buf; the decoded length, or -1. */
static long b64url(const char *s, unsigned char *buf, size_t max)
{
    size_t n = 0, len = s ? strlen(s) : 0;
    uint32_t acc = 0;
    int bits = 0;
    if (!s || len % 4 == 1) return -1;
    for (size_t i = 0; i < len; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == max) return -1;
            buf[n++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)n;
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static const char *check_rsa(struct json_object *k)
{
    unsigned char n[1024], e[8];
    long nl = b64url(jstr(k, "n"), n, sizeof n), el = b64url(jstr(k, "e"), e, sizeof e);
    if (nl <= 0 || el <= 0) return "RSA key needs base64url members n and e";
    BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        pkey = from_params("RSA", bld);
    const char *why = !pkey                            ? "RSA key is not valid"
                      : EVP_PKEY_get_bits(pkey) < 2048 ? "RSA key is shorter than 2048 bits"
                                                       : NULL;
    EVP_PKEY_free(pkey);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return why;
}

static const char *check_ec(struct json_object *k)
{
    const char *crv = jstr(k, "crv");
    if (!crv || strcmp(crv, "P-256")) return "EC key must be on curve P-256 (ES256)";
    unsigned char pt[65];
    pt[0] = 4;
    if (b64url(jstr(k, "x"), pt + 1, 33) != 32 || b64url(jstr(k, "y"), pt + 33, 33) != 32)
        return "EC key needs 32-byte base64url members x and y";
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;
    if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt))
        pkey = from_params("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_free(pkey);
    return pkey ? NULL : "EC key is not a point on P-256";
}

int pc__access_check_jwks(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return -1;
    }
    char *text = malloc(MAX_JWKS + 1);
    size_t len = text ? fread(text, 1, MAX_JWKS + 1, f) : 0;
    fclose(f);
    if (!text || len > MAX_JWKS) {
        snprintf(err, errlen, "%s: %s", path, text ? "file too large" : "out of memory");
        free(text);
        return -1;
    }
    text[len] = '\0';
    struct json_object *doc = json_tokener_parse(text), *keys;
    free(text);
    int rc = -1;
    size_t n = 0;
    if (!doc || !json_object_object_get_ex(doc, "keys", &keys) || !json_object_is_type(keys, json_type_array))
        snprintf(err, errlen, "%s: expected a JSON Web Key Set: {\"keys\": [...]}", path);
    else if ((n = json_object_array_length(keys)) == 0 || n > MAX_KEYS)
        snprintf(err, errlen, "%s: expected 1 to %d keys, found %zu", path, MAX_KEYS, n);
    else
        rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct json_object *k = json_object_array_get_idx(keys, i);
        const char *kty = json_object_is_type(k, json_type_object) ? jstr(k, "kty") : NULL;
        const char *use = kty ? jstr(k, "use") : NULL, *alg = kty ? jstr(k, "alg") : NULL;
        bool rsa = kty && !strcmp(kty, "RSA");
        const char *why = !kty                 ? "missing kty"
                          : rsa                ? check_rsa(k)
                          : !strcmp(kty, "EC") ? check_ec(k)
                                               : "kty must be RSA or EC";
        if (!why && use && strcmp(use, "sig")) why = "use is not \"sig\"";
        if (!why && alg && strcmp(alg, rsa ? "RS256" : "ES256"))
            why = "alg does not fit the key (RSA keys are RS256, P-256 keys ES256)";
        if (why) {
            snprintf(err, errlen, "%s: keys[%zu]: %s", path, i, why);
            rc = -1;
        }
    }
    json_object_put(doc);
    ERR_clear_error();
    return rc;
}

/* ---- tokens file ---- */

static bool hex(const char *s, size_t len, size_t min_bytes, size_t max_bytes)
{
    if (len % 2 || len / 2 < min_bytes || len / 2 > max_bytes) return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F')))
            return false;
    return true;
}

static bool number(const char **p, uint64_t min, uint64_t max, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9' && n < 12)
        v = v * 10 + (uint64_t)(s[n++] - '0');
    if (n == 0 || s[n] != ':' || v < min || v > max) return false;
    *out = v;
    *p = s + n + 1;
    return true;
}

static const char *check_hash(const char *s)
{
    const char *p;
    uint64_t it, n, r, pp;
    if (!strncmp(s, "pbkdf2-sha256:", 14)) {
        p = s + 14;
        if (!number(&p, 1000, 10000000, &it)) return "pbkdf2-sha256 iterations must be 1000 to 10000000";
    } else if (!strncmp(s, "scrypt:", 7)) {
        p = s + 7;
        if (!number(&p, 1024, 1 << 20, &n) || (n & (n - 1)) || !number(&p, 1, 32, &r) ||
            !number(&p, 1, 16, &pp) || 128 * n * r > (64u << 20))
            return "scrypt needs N (a power of two, 1024 to 1048576), r (1-32), p (1-16), at most 64 MiB";
    } else {
        return "hash must start with pbkdf2-sha256: or scrypt:";
    }
    return hex(p, strlen(p), 32, 32) ? NULL : "the digest must be 64 hex digits (32 bytes)";
}

static int tok_fail(char *err, size_t errlen, const char *path, const pc_yaml_node *n, const char *what)
{
    snprintf(err, errlen, "%s:%u:%u: %s", path, n ? n->line : 1, n ? n->col : 1, what);
    return -1;
}

int pc__access_check_tokens(const char *path, char *err, size_t errlen)
{
    pc_yaml_doc *doc = pc__yaml_load_file(path, err, errlen);
    if (!doc) return -1;
    const pc_yaml_node *root = doc->root;
    int rc = 0;
    if (!root || root->kind != PC_YAML_SEQ || root->n == 0)
        rc = tok_fail(err, errlen, path, root, "expected a list of tokens ({id, salt, hash})");
    for (size_t i = 0; rc == 0 && i < root->n; i++) {
        const pc_yaml_node *e = root->items[i];
        if (e->kind != PC_YAML_MAP) {
            rc = tok_fail(err, errlen, path, e, "expected one map per token");
            break;
        }
        for (size_t k = 0; rc == 0 && k < e->n; k++) {
            const char *key = e->keys[k]->scalar;
            const pc_yaml_node *v = e->items[k];
            char what[160];
            if (strcmp(key, "id") && strcmp(key, "salt") && strcmp(key, "hash") && strcmp(key, "name")) {
                snprintf(what, sizeof what, "unknown key \"%.40s\" (valid keys: id, salt, hash, name)", key);
                rc = tok_fail(err, errlen, path, e->keys[k], what);
            } else if (v->kind != PC_YAML_SCALAR || v->scalar_len == 0 ||
                       strlen(v->scalar) != v->scalar_len) {
                snprintf(what, sizeof what, "%s: expected a non-empty string", key);
                rc = tok_fail(err, errlen, path, e->keys[k], what);
            } else if (!strcmp(key, "id") && v->scalar_len > 256) {
                rc = tok_fail(err, errlen, path, e->keys[k], "id: at most 256 characters");
            } else if (!strcmp(key, "salt") && !hex(v->scalar, v->scalar_len, 8, 64)) {
                rc = tok_fail(err, errlen, path, e->keys[k], "salt: expected 16 to 128 hex digits");
            } else if (!strcmp(key, "hash")) {
                const char *why = check_hash(v->scalar);
                if (why) {
                    snprintf(what, sizeof what, "hash: %s", why);
                    rc = tok_fail(err, errlen, path, e->keys[k], what);
                }
            }
        }
        const pc_yaml_node *id = pc__yaml_get(e, "id");
        if (rc == 0 && (!id || !pc__yaml_get(e, "salt") || !pc__yaml_get(e, "hash")))
            rc = tok_fail(err, errlen, path, e, "each token needs id, salt and hash");
        for (size_t j = 0; rc == 0 && j < i; j++) {
            const pc_yaml_node *o = pc__yaml_get(root->items[j], "id");
            if (o && !strcmp(o->scalar, id->scalar))
                rc = tok_fail(err, errlen, path, id, "id is listed twice");
        }
    }
    pc__yaml_free(doc);
    return rc;
}

/* ---- signing key ---- */

int pc__access_check_signing_key(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return -1;
    }
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    ERR_clear_error();
    char group[64] = "";
    int ok =
        k &&
        ((EVP_PKEY_is_a(k, "RSA") && EVP_PKEY_get_bits(k) >= 2048) ||
         (EVP_PKEY_is_a(k, "EC") &&
          EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, NULL) == 1 &&
          (!strcmp(group, "prime256v1") || !strcmp(group, "P-256"))));
    if (!ok)
        snprintf(err, errlen, "%s: %s", path,
                 k ? "expected an RSA key of 2048 bits or more, or an EC P-256 key"
                   : "not a PEM private key (or it is encrypted)");
    EVP_PKEY_free(k);
    return ok ? 0 : -1;
}

/* ---- lookups ---- */

static char *resolved(const pc_config *cfg, const pc_yaml_node *n)
{
    if (!n || n->kind != PC_YAML_SCALAR || !n->scalar_len) return NULL;
    return pc__config_path(cfg, n->scalar);
}

char *pc__access_mtls_ca(const pc_config *cfg, const pc_origin_conf *o)
{
    const pc_yaml_node *g = pc__yaml_get(o->access, "grpc");
    if (!g || g->kind != PC_YAML_SCALAR || strcmp(g->scalar, "mtls")) return NULL;
    return resolved(cfg, pc__yaml_get(pc__yaml_get(o->access, "mtls"), "ca"));
}

char *pc__access_vouch_key(const pc_config *cfg, const pc_origin_conf *o)
{
    return resolved(cfg, pc__yaml_get(pc__yaml_get(o->access, "vouch"), "key"));
}
