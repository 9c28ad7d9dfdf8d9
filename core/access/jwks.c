/* The edge's signing keys and the JWKS of them on the admin listener. A key is read once, with the
 * policy that names it; its kid (RFC 7638 thumbprint) is computed from the same public members the
 * published JWK lists, so an origin finds the key of a token by kid. The set is built on the main
 * thread at start and on reload; the admin listener reads it on the main thread too, the lock only
 * keeps that a rule. */
#include "jwks.h"

#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct json_object *current, *previous; /* arrays of JWKs */

/* ---- the signing key ---- */

static char *bn_b64(const EVP_PKEY *pkey, const char *param, int pad)
{
    BIGNUM *bn = NULL;
    char *s = NULL;
    if (EVP_PKEY_get_bn_param(pkey, param, &bn) == 1) {
        int len = pad ? pad : BN_num_bytes(bn);
        unsigned char *buf = malloc((size_t)len + 1);
        if (buf && BN_bn2binpad(bn, buf, len) == len) s = pc__b64url_encode(buf, (size_t)len);
        free(buf);
    }
    BN_free(bn);
    return s;
}

/* The public members, base64url: e and n of an RSA key, x and y (32 bytes each) of a P-256 key. */
static int members(const EVP_PKEY *pkey, pc_access_alg alg, char **a, char **b)
{
    bool rsa = alg == PC_ACCESS_RS256;
    *a = bn_b64(pkey, rsa ? OSSL_PKEY_PARAM_RSA_E : OSSL_PKEY_PARAM_EC_PUB_X, rsa ? 0 : 32);
    *b = bn_b64(pkey, rsa ? OSSL_PKEY_PARAM_RSA_N : OSSL_PKEY_PARAM_EC_PUB_Y, rsa ? 0 : 32);
    if (*a && *b) return 0;
    free(*a);
    free(*b);
    return -1;
}

/* RFC 7638: SHA-256 over the required members in lexical order, no whitespace. */
static int thumbprint(const EVP_PKEY *pkey, pc_access_alg alg, char *out, size_t outlen)
{
    char *a, *b, *json = NULL;
    int rc = -1;
    if (members(pkey, alg, &a, &b) < 0) return -1;
    if ((alg == PC_ACCESS_RS256
             ? asprintf(&json, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", a, b)
             : asprintf(&json, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", a, b)) > 0) {
        unsigned char md[32];
        unsigned int mdlen = 0;
        char *t;
        if (EVP_Digest(json, strlen(json), md, &mdlen, EVP_sha256(), NULL) == 1 &&
            (t = pc__b64url_encode(md, mdlen))) {
            snprintf(out, outlen, "%s", t);
            free(t);
            rc = 0;
        }
        free(json);
    }
    free(a);
    free(b);
    return rc;
}

int pc__access_signer_load(const char *path, pc_access_signer *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return -1;
    }
    s->pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    ERR_clear_error();
    if (!s->pkey) {
        snprintf(err, errlen, "%s: not a PEM private key (or it is encrypted)", path);
        return -1;
    }
    char group[64] = "";
    if (EVP_PKEY_is_a(s->pkey, "RSA") && EVP_PKEY_get_bits(s->pkey) >= 2048)
        s->alg = PC_ACCESS_RS256;
    else if (EVP_PKEY_is_a(s->pkey, "EC") &&
             EVP_PKEY_get_utf8_string_param(s->pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, NULL) ==
                 1 &&
             (!strcmp(group, "prime256v1") || !strcmp(group, "P-256")))
        s->alg = PC_ACCESS_ES256;
    if (!s->alg || thumbprint(s->pkey, s->alg, s->kid, sizeof s->kid) < 0) {
        snprintf(err, errlen, "%s: expected an RSA key of 2048 bits or more, or an EC P-256 key", path);
        pc__access_signer_free(s);
        return -1;
    }
    return 0;
}

void pc__access_signer_free(pc_access_signer *s)
{
    EVP_PKEY_free(s->pkey);
    s->pkey = NULL;
}

struct json_object *pc__access_public_jwk(const pc_access_signer *s)
{
    bool rsa = s->alg == PC_ACCESS_RS256;
    char *a, *b;
    struct json_object *jwk;
    if (members(s->pkey, s->alg, &a, &b) < 0) return NULL;
    if ((jwk = json_object_new_object())) {
        json_object_object_add(jwk, "kty", json_object_new_string(rsa ? "RSA" : "EC"));
        if (rsa) {
            json_object_object_add(jwk, "n", json_object_new_string(b));
            json_object_object_add(jwk, "e", json_object_new_string(a));
        } else {
            json_object_object_add(jwk, "crv", json_object_new_string("P-256"));
            json_object_object_add(jwk, "x", json_object_new_string(a));
            json_object_object_add(jwk, "y", json_object_new_string(b));
        }
        json_object_object_add(jwk, "kid", json_object_new_string(s->kid));
        json_object_object_add(jwk, "use", json_object_new_string("sig"));
        json_object_object_add(jwk, "alg", json_object_new_string(rsa ? "RS256" : "ES256"));
    }
    free(a);
    free(b);
    return jwk;
}

/* ---- the published set ---- */

static const char *kid_of(struct json_object *jwk)
{
    struct json_object *v;
    return json_object_object_get_ex(jwk, "kid", &v) ? json_object_get_string(v) : "";
}

static bool has_kid(struct json_object *arr, const char *kid)
{
    for (size_t i = 0; arr && i < json_object_array_length(arr); i++)
        if (!strcmp(kid_of(json_object_array_get_idx(arr, i)), kid)) return true;
    return false;
}

int pc__access_jwks_update(const pc_config *cfg, char *err, size_t errlen)
{
    struct json_object *keys = json_object_new_array();
    for (size_t i = 0; keys && i < cfg->norigins; i++) {
        const pc_access_policy *p = cfg->origins[i].access;
        if (!p || !p->vouch) continue;
        /* One key vouching for several origins is listed once. */
        if (has_kid(keys, p->signer.kid)) continue;
        struct json_object *jwk = pc__access_public_jwk(&p->signer);
        if (!jwk) {
            json_object_put(keys);
            keys = NULL;
        } else {
            json_object_array_add(keys, jwk);
        }
    }
    if (!keys) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_lock(&lock);
    /* `check` and a reload with the same keys must not push the previous generation out. */
    const char *now = json_object_to_json_string(keys);
    if (current && !strcmp(now, json_object_to_json_string(current))) {
        json_object_put(keys);
    } else {
        json_object_put(previous);
        previous = current;
        current = keys;
    }
    pthread_mutex_unlock(&lock);
    return 0;
}

char *pc__access_jwks_render(void)
{
    struct json_object *doc = json_object_new_object(), *keys = json_object_new_array();
    char *out = NULL;
    if (doc && keys) {
        pthread_mutex_lock(&lock);
        for (size_t i = 0; current && i < json_object_array_length(current); i++)
            json_object_array_add(keys, json_object_get(json_object_array_get_idx(current, i)));
        for (size_t i = 0; previous && i < json_object_array_length(previous); i++) {
            struct json_object *k = json_object_array_get_idx(previous, i);
            if (!has_kid(keys, kid_of(k))) json_object_array_add(keys, json_object_get(k));
        }
        pthread_mutex_unlock(&lock);
        json_object_object_add(doc, "keys", keys);
        keys = NULL;
        const char *s =
            json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        out = s ? strdup(s) : NULL;
    }
    json_object_put(keys);
    json_object_put(doc);
    return out;
}
