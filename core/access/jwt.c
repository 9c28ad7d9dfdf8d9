/* JSON Web Tokens of the access policy: base64url, the JWKS files policies trust (RSA, EC P-256
 * public keys), verification of RS256/ES256 compact JWS with the claim checks, and signing of the
 * tokens the edge mints. The algorithm always comes from the key that matched, so a token cannot
 * pick a weaker one. */
#include "jwt.h"

#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jwks.h"

#define MAX_JWKS (1 << 20) /* bytes of a JWKS file */
#define MAX_KEYS 64

/* ---- base64url ---- */

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

int pc__b64url_decode(const char *in, size_t len, unsigned char **out, size_t *outlen)
{
    if (len % 4 == 1) return -1;
    unsigned char *o = malloc(len * 3 / 4 + 2);
    if (!o) return -1;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64val((unsigned char)in[i]);
        if (v < 0) {
            free(o);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[n++] = (unsigned char)(acc >> bits);
        }
    }
    /* Leftover bits must be zero: otherwise two encodings decode to the same bytes. */
    if (bits && (acc & ((1u << bits) - 1))) {
        free(o);
        return -1;
    }
    o[n] = 0;
    *out = o;
    *outlen = n;
    return 0;
}

char *pc__b64url_encode(const unsigned char *in, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *o = malloc(len * 4 / 3 + 4);
    if (!o) return NULL;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
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

/* ---- keys ---- */

static const char *jstr(struct json_object *o, const char *key)
{
    struct json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string)) return NULL;
    return json_object_get_string(v);
}

/* A base64url member decoded; NULL (and *len 0) when absent or invalid. */
static unsigned char *jbytes(struct json_object *o, const char *key, size_t *len)
{
    const char *s = jstr(o, key);
    unsigned char *b;
    *len = 0;
    if (!s || pc__b64url_decode(s, strlen(s), &b, len) < 0) return NULL;
    return b;
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

static EVP_PKEY *rsa_key(struct json_object *k, const char **why)
{
    size_t nl, el;
    unsigned char *n = jbytes(k, "n", &nl), *e = jbytes(k, "e", &el);
    EVP_PKEY *pkey = NULL;
    *why = "RSA key needs base64url members n and e";
    if (n && e && nl > 0 && el > 0 && el <= 8) {
        BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (bn && be && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
            pkey = from_params("RSA", bld);
        *why = pkey ? NULL : "RSA key is not valid";
        /* 2048 bits is the floor of every current recommendation for RS256. */
        if (pkey && EVP_PKEY_get_bits(pkey) < 2048) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
            *why = "RSA key is shorter than 2048 bits";
        }
        OSSL_PARAM_BLD_free(bld);
        BN_free(bn);
        BN_free(be);
    }
    free(n);
    free(e);
    return pkey;
}

static EVP_PKEY *ec_key(struct json_object *k, const char **why)
{
    const char *crv = jstr(k, "crv");
    if (!crv || strcmp(crv, "P-256") != 0) {
        *why = "EC key must be on curve P-256 (ES256)";
        return NULL;
    }
    size_t xl, yl;
    unsigned char *x = jbytes(k, "x", &xl), *y = jbytes(k, "y", &yl);
    EVP_PKEY *pkey = NULL;
    *why = "EC key needs 32-byte base64url members x and y";
    if (x && y && xl == 32 && yl == 32) {
        unsigned char pt[65];
        pt[0] = 4; /* uncompressed point */
        memcpy(pt + 1, x, 32);
        memcpy(pt + 33, y, 32);
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt))
            pkey = from_params("EC", bld);
        *why = pkey ? NULL : "EC key is not a point on P-256";
        OSSL_PARAM_BLD_free(bld);
    }
    free(x);
    free(y);
    return pkey;
}

static char *read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return NULL;
    }
    char *buf = malloc(max + 1);
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad || n > max) {
        snprintf(err, errlen, "%s: %s", path, !buf ? "out of memory" : bad ? "read error" : "file too large");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int pc__access_jwks_load(const char *path, pc_access_jwks *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    size_t len;
    char *text = read_file(path, MAX_JWKS, &len, err, errlen);
    if (!text) return -1;
    struct json_object *doc = json_tokener_parse(text), *keys;
    free(text);
    int rc = -1;
    if (!doc || !json_object_object_get_ex(doc, "keys", &keys) ||
        !json_object_is_type(keys, json_type_array)) {
        snprintf(err, errlen, "%s: expected a JSON Web Key Set: {\"keys\": [...]}", path);
        goto done;
    }
    size_t n = json_object_array_length(keys);
    if (n == 0 || n > MAX_KEYS) {
        snprintf(err, errlen, "%s: expected 1 to %d keys, found %zu", path, MAX_KEYS, n);
        goto done;
    }
    if (!(out->keys = calloc(n, sizeof *out->keys))) goto done;
    for (size_t i = 0; i < n; i++) {
        struct json_object *k = json_object_array_get_idx(keys, i);
        const char *kty = json_object_is_type(k, json_type_object) ? jstr(k, "kty") : NULL;
        const char *use = k ? jstr(k, "use") : NULL, *alg = k ? jstr(k, "alg") : NULL, *why = "missing kty";
        pc_access_jwk *jk = &out->keys[out->n];
        if (kty && !strcmp(kty, "RSA")) {
            jk->alg = PC_ACCESS_RS256;
            jk->pkey = rsa_key(k, &why);
        } else if (kty && !strcmp(kty, "EC")) {
            jk->alg = PC_ACCESS_ES256;
            jk->pkey = ec_key(k, &why);
        } else if (kty) {
            why = "kty must be RSA or EC";
        }
        if (jk->pkey) {
            if (use && strcmp(use, "sig"))
                why = "use is not \"sig\"";
            else if (alg && strcmp(alg, jk->alg == PC_ACCESS_RS256 ? "RS256" : "ES256"))
                why = "alg does not fit the key (RSA keys are RS256, P-256 keys ES256)";
            else
                why = NULL;
        }
        if (why) {
            snprintf(err, errlen, "%s: keys[%zu]: %s", path, i, why);
            EVP_PKEY_free(jk->pkey);
            jk->pkey = NULL;
            goto done;
        }
        const char *kid = jstr(k, "kid");
        if (kid && !(jk->kid = strdup(kid))) goto done;
        out->n++;
    }
    rc = 0;
done:
    json_object_put(doc);
    if (rc < 0) pc__access_jwks_free(out);
    return rc;
}

void pc__access_jwks_free(pc_access_jwks *ks)
{
    for (size_t i = 0; i < ks->n; i++) {
        EVP_PKEY_free(ks->keys[i].pkey);
        free(ks->keys[i].kid);
    }
    free(ks->keys);
    memset(ks, 0, sizeof *ks);
}

/* ---- verification ---- */

static struct json_object *decode_json(const char *p, size_t len)
{
    unsigned char *raw;
    size_t rawlen;
    if (pc__b64url_decode(p, len, &raw, &rawlen) < 0) return NULL;
    struct json_tokener *tok = json_tokener_new();
    struct json_object *o = tok ? json_tokener_parse_ex(tok, (const char *)raw, (int)rawlen) : NULL;
    /* The whole input must be one object: no trailing bytes, no other JSON type. */
    if (o && (json_tokener_get_error(tok) != json_tokener_success ||
              json_tokener_get_parse_end(tok) != rawlen || !json_object_is_type(o, json_type_object))) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    free(raw);
    return o;
}

/* A NumericDate claim: 1 when present and a number, 0 absent, -1 present but not a number. */
#define NUMERIC_DATE_MAX ((int64_t)9000000000000000) /* about 285 million years */

static int numeric_claim(struct json_object *claims, const char *key, int64_t *out)
{
    struct json_object *v;
    if (!json_object_object_get_ex(claims, key, &v)) return 0;
    if (json_object_is_type(v, json_type_int)) {
        /* Clamped far beyond any date (json-c saturates at INT64_MAX), so that adding the leeway
         * cannot overflow: a token with exp 2^63-1 simply never expires. */
        int64_t i = json_object_get_int64(v);
        *out = i > NUMERIC_DATE_MAX ? NUMERIC_DATE_MAX : i < -NUMERIC_DATE_MAX ? -NUMERIC_DATE_MAX : i;
        return 1;
    }
    if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (d != d || d > 9e15 || d < -9e15) return -1;
        *out = (int64_t)d;
        return 1;
    }
    return -1;
}

static int audience_ok(struct json_object *claims, const char *audience)
{
    struct json_object *v;
    if (!json_object_object_get_ex(claims, "aud", &v)) return 0;
    if (json_object_is_type(v, json_type_string)) return strcmp(json_object_get_string(v), audience) == 0;
    if (!json_object_is_type(v, json_type_array)) return 0;
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        struct json_object *a = json_object_array_get_idx(v, i);
        if (json_object_is_type(a, json_type_string) && !strcmp(json_object_get_string(a), audience))
            return 1;
    }
    return 0;
}

/* JWS ES256 signatures are r || s (32 bytes each); OpenSSL verifies DER. */
static unsigned char *es256_der(const unsigned char *sig, size_t len, size_t *derlen)
{
    if (len != 64) return NULL;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    unsigned char *der = NULL;
    if (es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL;
        int n = i2d_ECDSA_SIG(es, &der);
        if (n <= 0) der = NULL;
        *derlen = n > 0 ? (size_t)n : 0;
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return der;
}

static int signature_ok(const pc_access_jwk *k, const char *signed_part, size_t signed_len,
                        const unsigned char *sig, size_t siglen)
{
    unsigned char *der = NULL;
    size_t derlen = 0;
    if (k->alg == PC_ACCESS_ES256) {
        if (!(der = es256_der(sig, siglen, &derlen))) return 0;
        sig = der;
        siglen = derlen;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k->pkey) == 1 &&
             EVP_DigestVerify(md, sig, siglen, (const unsigned char *)signed_part, signed_len) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ERR_clear_error();
    return ok;
}

static const pc_access_jwk *pick_key(const pc_access_jwks *ks, const char *kid, pc_access_alg alg,
                                     const char **why)
{
    const pc_access_jwk *found = NULL;
    size_t fitting = 0;
    for (size_t i = 0; i < ks->n; i++) {
        const pc_access_jwk *k = &ks->keys[i];
        if (kid) {
            if (k->kid && !strcmp(k->kid, kid)) {
                found = k;
                break;
            }
        } else if (k->alg == alg) {
            found = k;
            fitting++;
        }
    }
    if (!found) {
        *why = kid ? "unknown key id" : "no key for its alg";
        return NULL;
    }
    if (!kid && fitting > 1) {
        *why = "no kid and more than one key fits";
        return NULL;
    }
    /* An RSA key never verifies an ES256 token and the other way round (algorithm confusion). */
    if (found->alg != alg) {
        *why = "alg does not match the key";
        return NULL;
    }
    return found;
}

int pc__access_jwt_verify(const pc_access_jwks *ks, const char *token, const char *issuer,
                          const char *audience, long leeway_s, time_t now, struct json_object **claims,
                          const char **why)
{
    *claims = NULL;
    size_t len = strnlen(token, PC_ACCESS_MAX_TOKEN + 1);
    const char *d1 = memchr(token, '.', len),
               *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (len > PC_ACCESS_MAX_TOKEN) {
        *why = "token too long";
        return -1;
    }
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) || d1 == token || d2 == d1 + 1) {
        *why = "malformed token";
        return -1;
    }
    struct json_object *hdr = decode_json(token, (size_t)(d1 - token)), *body = NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    int rc = -1;
    *why = "malformed token";
    if (!hdr) goto done;
    const char *alg = jstr(hdr, "alg"), *kid;
    struct json_object *v;
    pc_access_alg a;
    if (!alg) goto done;
    if (!strcasecmp(alg, "none")) {
        *why = "alg none is not accepted";
        goto done;
    }
    if (!strcmp(alg, "RS256")) {
        a = PC_ACCESS_RS256;
    } else if (!strcmp(alg, "ES256")) {
        a = PC_ACCESS_ES256;
    } else {
        *why = "unsupported alg (RS256 and ES256 are accepted)";
        goto done;
    }
    /* Extensions we do not implement must make the token invalid (RFC 7515 4.1.11). */
    if (json_object_object_get_ex(hdr, "crit", &v)) {
        *why = "unsupported critical header";
        goto done;
    }
    if (json_object_object_get_ex(hdr, "kid", &v) && !json_object_is_type(v, json_type_string)) goto done;
    kid = jstr(hdr, "kid");
    const pc_access_jwk *k = pick_key(ks, kid, a, why);
    if (!k) goto done;
    if (pc__b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - token), &sig, &siglen) < 0 || siglen == 0) {
        *why = "malformed token";
        goto done;
    }
    if (!signature_ok(k, token, (size_t)(d2 - token), sig, siglen)) {
        *why = "bad signature";
        goto done;
    }
    /* Claims only mean something once the signature holds. */
    if (!(body = decode_json(d1 + 1, (size_t)(d2 - d1 - 1)))) {
        *why = "malformed claims";
        goto done;
    }
    int64_t exp, nbf, iat;
    int has = numeric_claim(body, "exp", &exp);
    if (has <= 0) {
        *why = has < 0 ? "exp is not a number" : "token has no exp";
        goto done;
    }
    if ((int64_t)now > exp + leeway_s) {
        *why = "token expired";
        goto done;
    }
    if ((has = numeric_claim(body, "nbf", &nbf)) < 0 || (has && (int64_t)now + leeway_s < nbf)) {
        *why = has < 0 ? "nbf is not a number" : "token not yet valid (nbf)";
        goto done;
    }
    if ((has = numeric_claim(body, "iat", &iat)) < 0 || (has && (int64_t)now + leeway_s < iat)) {
        *why = has < 0 ? "iat is not a number" : "token issued in the future (iat)";
        goto done;
    }
    const char *iss = jstr(body, "iss");
    if (!iss || strcmp(iss, issuer) != 0) {
        *why = "wrong issuer";
        goto done;
    }
    if (!audience_ok(body, audience)) {
        *why = "wrong audience";
        goto done;
    }
    *claims = body;
    body = NULL;
    *why = NULL;
    rc = 0;
done:
    json_object_put(hdr);
    json_object_put(body);
    free(sig);
    return rc;
}

/* ---- signing ---- */

static char *json_b64(struct json_object *o)
{
    const char *s =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    return s ? pc__b64url_encode((const unsigned char *)s, strlen(s)) : NULL;
}

/* DER ECDSA signature -> r || s, 32 bytes each. */
static int es256_raw(const unsigned char *der, size_t len, unsigned char out[64])
{
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)len);
    int ok = 0;
    if (es) {
        const BIGNUM *r, *s;
        ECDSA_SIG_get0(es, &r, &s);
        ok = BN_bn2binpad(r, out, 32) == 32 && BN_bn2binpad(s, out + 32, 32) == 32;
        ECDSA_SIG_free(es);
    }
    return ok;
}

char *pc__access_jwt_sign(const pc_access_signer *s, struct json_object *claims)
{
    struct json_object *hdr = json_object_new_object();
    if (!hdr) return NULL;
    json_object_object_add(hdr, "alg", json_object_new_string(s->alg == PC_ACCESS_RS256 ? "RS256" : "ES256"));
    json_object_object_add(hdr, "kid", json_object_new_string(s->kid));
    json_object_object_add(hdr, "typ", json_object_new_string("JWT"));
    char *h = json_b64(hdr), *b = json_b64(claims), *input = NULL, *out = NULL, *sig64 = NULL;
    unsigned char *sig = NULL;
    size_t siglen = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    json_object_put(hdr);
    if (!h || !b || !md || asprintf(&input, "%s.%s", h, b) < 0) {
        input = NULL;
        goto done;
    }
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, s->pkey) != 1 ||
        EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)input, strlen(input)) != 1 ||
        !(sig = malloc(siglen)) ||
        EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input, strlen(input)) != 1)
        goto done;
    if (s->alg == PC_ACCESS_ES256) {
        unsigned char raw[64];
        if (!es256_raw(sig, siglen, raw)) goto done;
        sig64 = pc__b64url_encode(raw, sizeof raw);
    } else {
        sig64 = pc__b64url_encode(sig, siglen);
    }
    if (sig64 && asprintf(&out, "%s.%s", input, sig64) < 0) out = NULL;
done:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    free(h);
    free(b);
    free(input);
    free(sig);
    free(sig64);
    return out;
}
