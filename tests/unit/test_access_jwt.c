/* The access policy's JSON Web Tokens (core/access/jwt.c): base64url edge cases, JWKS loading, JWT
 * verification (every refusal reason) against tokens signed here with fresh keys (the edge's signer,
 * core/access/jwks.c), and the ES256 signature format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tmpdir.h"

#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access/jwks.h"
#include "access/jwt.h"

typedef struct fixture {
    char dir[256];
    pc_access_signer rsa, ec;
    pc_access_jwks jwks;
} fixture;

static void path_in(const fixture *fx, const char *name, char *out, size_t len)
{
    tmpdir_path(fx->dir, name, out, len);
}

static void write_key(const fixture *fx, const char *name, EVP_PKEY *k)
{
    tmpdir_write_key(fx->dir, name, k);
}

/* The public JWK of a signer, with its kid, as JSON text (malloc'd). */
static char *jwk_json(const pc_access_signer *s)
{
    struct json_object *jwk = pc__access_public_jwk(s);
    assert_non_null(jwk);
    char *out = strdup(json_object_to_json_string_ext(jwk, JSON_C_TO_STRING_PLAIN));
    json_object_put(jwk);
    return out;
}

/* An ES256 signature (r || s) as DER, which JWS never uses. */
static unsigned char *es256_der(const unsigned char *sig, size_t len, size_t *derlen)
{
    assert_int_equal(len, 64);
    ECDSA_SIG *es = ECDSA_SIG_new();
    assert_int_equal(ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL)), 1);
    unsigned char *der = NULL;
    int n = i2d_ECDSA_SIG(es, &der);
    assert_true(n > 0);
    *derlen = (size_t)n;
    ECDSA_SIG_free(es);
    return der;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (tmpdir_make(fx->dir, sizeof fx->dir, "access") < 0) return -1;
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!rsa || !ec) return -1;
    write_key(fx, "rsa.pem", rsa);
    write_key(fx, "ec.pem", ec);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    char path[512], err[512];
    path_in(fx, "rsa.pem", path, sizeof path);
    if (pc__access_signer_load(path, &fx->rsa, err, sizeof err) < 0) return -1;
    path_in(fx, "ec.pem", path, sizeof path);
    if (pc__access_signer_load(path, &fx->ec, err, sizeof err) < 0) return -1;
    /* The JWKS names the keys by their thumbprints, as the edge does for its own. */
    char *a = jwk_json(&fx->rsa), *b = jwk_json(&fx->ec), *doc;
    if (asprintf(&doc, "{\"keys\":[%s,%s]}", a, b) < 0) return -1;
    path_in(fx, "jwks.json", path, sizeof path);
    write_text(path, doc);
    free(a);
    free(b);
    free(doc);
    if (pc__access_jwks_load(path, &fx->jwks, err, sizeof err) < 0) return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    pc__access_signer_free(&fx->rsa);
    pc__access_signer_free(&fx->ec);
    pc__access_jwks_free(&fx->jwks);
    int rc = tmpdir_remove(fx->dir);
    free(fx);
    return rc;
}

static void test_b64url(void **state)
{
    (void)state;
    unsigned char *out;
    size_t len;
    assert_int_equal(pc__b64url_decode("aGk", 3, &out, &len), 0);
    assert_int_equal(len, 2);
    assert_memory_equal(out, "hi", 2);
    free(out);
    assert_int_equal(pc__b64url_decode("", 0, &out, &len), 0);
    assert_int_equal(len, 0);
    free(out);
    assert_int_equal(pc__b64url_decode("aGk=", 4, &out, &len), -1);  /* padding */
    assert_int_equal(pc__b64url_decode("a+k", 3, &out, &len), -1);   /* base64, not base64url */
    assert_int_equal(pc__b64url_decode("aGkhx", 5, &out, &len), -1); /* impossible length */
    assert_int_equal(pc__b64url_decode("aGl", 3, &out, &len), -1);   /* stray bits set */
    const unsigned char bin[] = {0xfb, 0xff, 0x00, 0x10};
    char *enc = pc__b64url_encode(bin, sizeof bin);
    assert_string_equal(enc, "-_8AEA");
    assert_int_equal(pc__b64url_decode(enc, strlen(enc), &out, &len), 0);
    assert_int_equal(len, sizeof bin);
    assert_memory_equal(out, bin, sizeof bin);
    free(out);
    free(enc);
}

static struct json_object *claims(time_t now, const char *aud, long exp_in)
{
    struct json_object *c = json_object_new_object();
    json_object_object_add(c, "iss", json_object_new_string("https://issuer"));
    if (aud) json_object_object_add(c, "aud", json_object_new_string(aud));
    json_object_object_add(c, "sub", json_object_new_string("svc"));
    json_object_object_add(c, "exp", json_object_new_int64((int64_t)now + exp_in));
    return c;
}

static const char *verify(const fixture *fx, const char *token, time_t now)
{
    struct json_object *out;
    const char *why;
    if (pc__access_jwt_verify(&fx->jwks, token, "https://issuer", "api", 60, now, &out, &why) == 0) {
        assert_string_equal(json_object_get_string(json_object_object_get(out, "sub")), "svc");
        json_object_put(out);
        return "ok";
    }
    return why;
}

static char *signed_token(const pc_access_signer *s, struct json_object *c)
{
    char *t = pc__access_jwt_sign(s, c);
    json_object_put(c);
    assert_non_null(t);
    return t;
}

static void test_jwt_verify(void **state)
{
    fixture *fx = *state;
    time_t now = time(NULL);
    const pc_access_signer *signers[] = {&fx->rsa, &fx->ec};
    for (size_t i = 0; i < 2; i++) {
        const pc_access_signer *s = signers[i];
        char *t = signed_token(s, claims(now, "api", 300));
        assert_string_equal(verify(fx, t, now), "ok");
        /* exp within the leeway, then beyond it */
        assert_string_equal(verify(fx, t, now + 330), "ok");
        assert_string_equal(verify(fx, t, now + 400), "token expired");
        /* one changed byte of the signature */
        size_t len = strlen(t);
        t[len - 2] = t[len - 2] == 'A' ? 'B' : 'A';
        assert_string_equal(verify(fx, t, now), "bad signature");
        free(t);
        t = signed_token(s, claims(now, "other", 300));
        assert_string_equal(verify(fx, t, now), "wrong audience");
        free(t);
        t = signed_token(s, claims(now, NULL, 300));
        assert_string_equal(verify(fx, t, now), "wrong audience");
        free(t);
    }
    /* An exp at the very end of int64 (found by fuzzing: adding the leeway overflowed) never expires;
     * an nbf there is never reached. */
    struct json_object *c = claims(now, "api", 300);
    json_object_object_add(c, "exp", json_object_new_int64(INT64_MAX));
    char *far = signed_token(&fx->ec, c);
    assert_string_equal(verify(fx, far, now), "ok");
    free(far);
    c = claims(now, "api", 300);
    json_object_object_add(c, "nbf", json_object_new_int64(INT64_MAX));
    far = signed_token(&fx->ec, c);
    assert_string_equal(verify(fx, far, now), "token not yet valid (nbf)");
    free(far);
    /* ES256 signatures are 64 raw bytes, never DER. */
    char *t = signed_token(&fx->ec, claims(now, "api", 300));
    char *dot = strrchr(t, '.');
    unsigned char *raw;
    size_t rawlen;
    assert_int_equal(pc__b64url_decode(dot + 1, strlen(dot + 1), &raw, &rawlen), 0);
    assert_int_equal(rawlen, 64);
    size_t derlen;
    unsigned char *der = es256_der(raw, rawlen, &derlen);
    char *der64 = pc__b64url_encode(der, derlen), *bad;
    assert_true(asprintf(&bad, "%.*s.%s", (int)(dot - t), t, der64) > 0);
    assert_string_equal(verify(fx, bad, now), "bad signature");
    OPENSSL_free(der);
    free(der64);
    free(bad);
    free(raw);
    free(t);
}

/* A token with a hand-made header and claims and a signature of junk. */
static char *forged(const char *header, const char *body)
{
    char *h = pc__b64url_encode((const unsigned char *)header, strlen(header));
    char *b = pc__b64url_encode((const unsigned char *)body, strlen(body)), *t;
    assert_true(asprintf(&t, "%s.%s.c2ln", h, b) > 0);
    free(h);
    free(b);
    return t;
}

static void test_jwt_refusals(void **state)
{
    fixture *fx = *state;
    time_t now = time(NULL);
    char hdr[256];
    static const struct {
        const char *header, *reason;
    } cases[] = {
        {"{\"alg\":\"none\"}", "alg none is not accepted"},
        {"{\"alg\":\"NoNe\",\"kid\":\"x\"}", "alg none is not accepted"},
        {"{\"alg\":\"HS256\",\"kid\":\"%s\"}", "unsupported alg (RS256 and ES256 are accepted)"},
        {"{\"alg\":\"RS256\",\"kid\":\"nope\"}", "unknown key id"},
        {"{\"alg\":\"ES256\",\"kid\":\"%s\"}", "alg does not match the key"},
        {"{\"alg\":\"RS256\",\"kid\":\"%s\",\"crit\":[\"x\"]}", "unsupported critical header"},
        {"{\"alg\":\"RS256\",\"kid\":7}", "malformed token"},
        {"[\"alg\"]", "malformed token"},
        {"{\"alg\":\"RS256\",\"kid\":\"%s\"} x", "malformed token"},
        {"{\"alg\":\"RS256\",\"kid\":\"%s\"}", "bad signature"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(hdr, sizeof hdr, cases[i].header, fx->rsa.kid);
        char *t =
            forged(hdr, "{\"iss\":\"https://issuer\",\"aud\":\"api\",\"sub\":\"svc\",\"exp\":9999999999}");
        const char *why = verify(fx, t, now);
        if (strcmp(why, cases[i].reason)) fail_msg("header %s: %s (want %s)", hdr, why, cases[i].reason);
        free(t);
    }
    static const char *const malformed[] = {"",          "abc",       "a.b",      "a.b.c.d",
                                            ".e30.c2ln", "e30..c2ln", "e30.e30.", "e30.e30.!!"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++)
        assert_string_equal(verify(fx, malformed[i], now), "malformed token");
    char *huge = malloc(PC_ACCESS_MAX_TOKEN + 2);
    memset(huge, 'a', PC_ACCESS_MAX_TOKEN + 1);
    huge[PC_ACCESS_MAX_TOKEN + 1] = '\0';
    assert_string_equal(verify(fx, huge, now), "token too long");
    free(huge);

    /* Claim checks, on properly signed tokens. */
    static const struct {
        const char *extra, *reason;
    } claim_cases[] = {
        {"\"nbf\": %lld", "token not yet valid (nbf)"},
        {"\"iat\": %lld", "token issued in the future (iat)"},
        {"\"nbf\": \"soon\"", "nbf is not a number"},
    };
    for (size_t i = 0; i < sizeof claim_cases / sizeof claim_cases[0]; i++) {
        char extra[128], body[256];
        snprintf(extra, sizeof extra, claim_cases[i].extra, (long long)now + 600);
        snprintf(body, sizeof body,
                 "{\"iss\":\"https://issuer\",\"aud\":[\"x\",\"api\"],\"sub\":\"svc\",\"exp\":%lld,%s}",
                 (long long)now + 900, extra);
        char *t = signed_token(&fx->ec, json_tokener_parse(body));
        assert_string_equal(verify(fx, t, now), claim_cases[i].reason);
        free(t);
    }
    struct json_object *c = claims(now, "api", 300);
    json_object_object_del(c, "exp");
    char *t = signed_token(&fx->rsa, c);
    assert_string_equal(verify(fx, t, now), "token has no exp");
    free(t);
    c = claims(now, "api", 300);
    json_object_object_add(c, "iss", json_object_new_string("https://evil"));
    t = signed_token(&fx->rsa, c);
    assert_string_equal(verify(fx, t, now), "wrong issuer");
    free(t);
}

static void test_jwks_errors(void **state)
{
    fixture *fx = *state;
    char path[512], err[512];
    path_in(fx, "bad.json", path, sizeof path);
    static const struct {
        const char *doc, *why;
    } cases[] = {
        {"[]", "expected a JSON Web Key Set"},
        {"{\"keys\": []}", "expected 1 to 64 keys, found 0"},
        {"{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}]}", "keys[0]: kty must be RSA or EC"},
        {"{\"keys\": [{\"kty\": \"RSA\", \"n\": \"AQAB\", \"e\": \"AQAB\"}]}",
         "keys[0]: RSA key is shorter than 2048"},
        {"{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-384\", \"x\": \"AA\", \"y\": \"AA\"}]}",
         "keys[0]: EC key must be"},
        {"{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": "
         "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\", "
         "\"y\": \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}]}",
         "keys[0]: EC key is not a point on P-256"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pc_access_jwks ks;
        write_text(path, cases[i].doc);
        assert_int_equal(pc__access_jwks_load(path, &ks, err, sizeof err), -1);
        if (!strstr(err, cases[i].why)) fail_msg("%s: %s", cases[i].doc, err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url),
        cmocka_unit_test(test_jwt_verify),
        cmocka_unit_test(test_jwt_refusals),
        cmocka_unit_test(test_jwks_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
