/* The JWKS of the edge's vouch keys. Key ids are RFC 7638 thumbprints, as the access plugin puts in
 * the tokens it signs, so an origin finds the key by kid. Built on the main thread at start and on
 * reload; the admin listener reads it on the main thread too, the lock only keeps that a rule. */
#include "jwks.h"

#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access_check.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct json_object *current, *previous; /* arrays of JWKs */

static char *b64url(const unsigned char *in, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *o = malloc(len * 4 / 3 + 4);
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    if (!o) return NULL;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            o[n++] = abc[(acc >> bits) & 63];
        }
    }
    if (bits) o[n++] = abc[(acc << (6 - bits)) & 63];
    o[n] = '\0';
    return o;
}

static char *bn_b64(EVP_PKEY *pkey, const char *param, int pad)
{
    BIGNUM *bn = NULL;
    char *s = NULL;
    if (EVP_PKEY_get_bn_param(pkey, param, &bn) == 1) {
        int len = pad ? pad : BN_num_bytes(bn);
        unsigned char *buf = malloc((size_t)len + 1);
        if (buf && BN_bn2binpad(bn, buf, len) == len) s = b64url(buf, (size_t)len);
        free(buf);
    }
    BN_free(bn);
    return s;
}

/* The public JWK of a private key, with its thumbprint as kid; NULL when the key is not usable. */
static struct json_object *public_jwk(EVP_PKEY *pkey)
{
    bool rsa = EVP_PKEY_is_a(pkey, "RSA");
    char *a = bn_b64(pkey, rsa ? OSSL_PKEY_PARAM_RSA_E : OSSL_PKEY_PARAM_EC_PUB_X, rsa ? 0 : 32);
    char *b = bn_b64(pkey, rsa ? OSSL_PKEY_PARAM_RSA_N : OSSL_PKEY_PARAM_EC_PUB_Y, rsa ? 0 : 32);
    char *canon = NULL, *kid = NULL;
    struct json_object *jwk = NULL;
    /* RFC 7638: the required members, in lexical order, no whitespace. */
    if (a && b &&
        (rsa ? asprintf(&canon, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", a, b)
             : asprintf(&canon, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", a, b)) > 0) {
        unsigned char md[32];
        unsigned int mdlen = 0;
        if (EVP_Digest(canon, strlen(canon), md, &mdlen, EVP_sha256(), NULL) == 1) kid = b64url(md, mdlen);
    } else {
        canon = NULL;
    }
    if (kid && (jwk = json_object_new_object())) {
        json_object_object_add(jwk, "kty", json_object_new_string(rsa ? "RSA" : "EC"));
        if (rsa) {
            json_object_object_add(jwk, "n", json_object_new_string(b));
            json_object_object_add(jwk, "e", json_object_new_string(a));
        } else {
            json_object_object_add(jwk, "crv", json_object_new_string("P-256"));
            json_object_object_add(jwk, "x", json_object_new_string(a));
            json_object_object_add(jwk, "y", json_object_new_string(b));
        }
        json_object_object_add(jwk, "kid", json_object_new_string(kid));
        json_object_object_add(jwk, "use", json_object_new_string("sig"));
        json_object_object_add(jwk, "alg", json_object_new_string(rsa ? "RS256" : "ES256"));
    }
    free(a);
    free(b);
    free(canon);
    free(kid);
    return jwk;
}

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

int pc__jwks_update(const pc_config *cfg, char *err, size_t errlen)
{
    struct json_object *keys = json_object_new_array();
    if (!keys) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->norigins; i++) {
        const pc_origin_conf *o = &cfg->origins[i];
        char *path = o->access ? pc__access_vouch_key(cfg, o) : NULL;
        if (!path) continue;
        FILE *f = fopen(path, "r");
        EVP_PKEY *pkey = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
        if (f) fclose(f);
        ERR_clear_error();
        struct json_object *jwk = pkey ? public_jwk(pkey) : NULL;
        EVP_PKEY_free(pkey);
        if (!jwk) {
            snprintf(err, errlen, "origin %s: access.vouch.key %s: cannot read the key", o->name, path);
            free(path);
            json_object_put(keys);
            return -1;
        }
        free(path);
        if (has_kid(keys, kid_of(jwk)))
            json_object_put(jwk); /* one key vouching for several origins is listed once */
        else
            json_object_array_add(keys, jwk);
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

char *pc__jwks_render(void)
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
