/* The access plugin's token code (plugins/access/jwt.c, tokens.c), included directly: base64url edge
 * cases, JWKS loading, JWT verification (every refusal reason) against tokens signed here with fresh
 * keys, the ES256 signature format, and the tokens file (hash formats, errors with positions, KDF). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../plugins/access/jwt.c"
#include "../../plugins/access/tokens.c"

typedef struct fixture {
    char dir[256];
    acc_signer rsa, ec;
    acc_jwks jwks;
} fixture;

static void path_in(const fixture *fx, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", fx->dir, name);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void write_key(const fixture *fx, const char *name, EVP_PKEY *k)
{
    char path[512];
    path_in(fx, name, path, sizeof path);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

/* The public JWK of a signer, with its kid, as JSON text (malloc'd). */
static char *jwk_json(const acc_signer *s, const char *kid)
{
    char *out = NULL, *a, *b;
    if (s->alg == ACC_RS256) {
        a = bn_b64(s->pkey, OSSL_PKEY_PARAM_RSA_N, 0);
        b = bn_b64(s->pkey, OSSL_PKEY_PARAM_RSA_E, 0);
        assert_true(asprintf(&out, "{\"kty\":\"RSA\",\"kid\":\"%s\",\"n\":\"%s\",\"e\":\"%s\"}", kid, a, b) >
                    0);
    } else {
        a = bn_b64(s->pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32);
        b = bn_b64(s->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
        assert_true(asprintf(&out,
                             "{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}",
                             kid, a, b) > 0);
    }
    free(a);
    free(b);
    return out;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/pc_access_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fx->dir)) return -1;
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!rsa || !ec) return -1;
    write_key(fx, "rsa.pem", rsa);
    write_key(fx, "ec.pem", ec);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    char path[512], err[512];
    path_in(fx, "rsa.pem", path, sizeof path);
    if (acc_signer_load(path, &fx->rsa, err, sizeof err) < 0) return -1;
    path_in(fx, "ec.pem", path, sizeof path);
    if (acc_signer_load(path, &fx->ec, err, sizeof err) < 0) return -1;
    /* The JWKS names the keys by their thumbprints, as the edge does for its own. */
    char *a = jwk_json(&fx->rsa, fx->rsa.kid), *b = jwk_json(&fx->ec, fx->ec.kid), *doc;
    if (asprintf(&doc, "{\"keys\":[%s,%s]}", a, b) < 0) return -1;
    path_in(fx, "jwks.json", path, sizeof path);
    write_file(path, doc);
    free(a);
    free(b);
    free(doc);
    if (acc_jwks_load(path, &fx->jwks, err, sizeof err) < 0) return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    acc_signer_free(&fx->rsa);
    acc_signer_free(&fx->ec);
    acc_jwks_free(&fx->jwks);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    int rc = system(cmd);
    free(fx);
    return rc;
}

static void test_b64url(void **state)
{
    (void)state;
    unsigned char *out;
    size_t len;
    assert_int_equal(acc_b64url_decode("aGk", 3, &out, &len), 0);
    assert_int_equal(len, 2);
    assert_memory_equal(out, "hi", 2);
    free(out);
    assert_int_equal(acc_b64url_decode("", 0, &out, &len), 0);
    assert_int_equal(len, 0);
    free(out);
    assert_int_equal(acc_b64url_decode("aGk=", 4, &out, &len), -1);  /* padding */
    assert_int_equal(acc_b64url_decode("a+k", 3, &out, &len), -1);   /* base64, not base64url */
    assert_int_equal(acc_b64url_decode("aGkhx", 5, &out, &len), -1); /* impossible length */
    assert_int_equal(acc_b64url_decode("aGl", 3, &out, &len), -1);   /* stray bits set */
    const unsigned char bin[] = {0xfb, 0xff, 0x00, 0x10};
    char *enc = acc_b64url_encode(bin, sizeof bin);
    assert_string_equal(enc, "-_8AEA");
    assert_int_equal(acc_b64url_decode(enc, strlen(enc), &out, &len), 0);
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
    if (acc_jwt_verify(&fx->jwks, token, "https://issuer", "api", 60, now, &out, &why) == 0) {
        assert_string_equal(json_object_get_string(json_object_object_get(out, "sub")), "svc");
        json_object_put(out);
        return "ok";
    }
    return why;
}

static char *signed_token(const acc_signer *s, struct json_object *c)
{
    char *t = acc_jwt_sign(s, c);
    json_object_put(c);
    assert_non_null(t);
    return t;
}

static void test_jwt_verify(void **state)
{
    fixture *fx = *state;
    time_t now = time(NULL);
    const acc_signer *signers[] = {&fx->rsa, &fx->ec};
    for (size_t i = 0; i < 2; i++) {
        const acc_signer *s = signers[i];
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
    assert_int_equal(acc_b64url_decode(dot + 1, strlen(dot + 1), &raw, &rawlen), 0);
    assert_int_equal(rawlen, 64);
    size_t derlen;
    unsigned char *der = es256_der(raw, rawlen, &derlen);
    char *der64 = acc_b64url_encode(der, derlen), *bad;
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
    char *h = acc_b64url_encode((const unsigned char *)header, strlen(header));
    char *b = acc_b64url_encode((const unsigned char *)body, strlen(body)), *t;
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
    char *huge = malloc(MAX_TOKEN + 2);
    memset(huge, 'a', MAX_TOKEN + 1);
    huge[MAX_TOKEN + 1] = '\0';
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
        acc_jwks ks;
        write_file(path, cases[i].doc);
        assert_int_equal(acc_jwks_load(path, &ks, err, sizeof err), -1);
        if (!strstr(err, cases[i].why)) fail_msg("%s: %s", cases[i].doc, err);
    }
}

static void test_tokens(void **state)
{
    fixture *fx = *state;
    char path[512], err[512], text[1024], hex[65];
    unsigned char salt[16], hash[32];
    const char *secret = "s3cret";
    RAND_bytes(salt, sizeof salt);
    assert_int_equal(PKCS5_PBKDF2_HMAC(secret, 6, salt, sizeof salt, 1000, EVP_sha256(), 32, hash), 1);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", hash[i]);
    char salthex[33];
    for (int i = 0; i < 16; i++)
        snprintf(salthex + 2 * i, 3, "%02x", salt[i]);
    snprintf(text, sizeof text,
             "# tokens\n- id: svc-a\n  name: reports\n  salt: \"%s\"\n  hash: \"pbkdf2-sha256:1000:%s\"\n"
             "- {id: svc-b, salt: \"00112233445566778899aabbccddeeff\", hash: \"scrypt:1024:8:1:%s\"}\n",
             salthex, hex, hex);
    path_in(fx, "tokens.yaml", path, sizeof path);
    write_file(path, text);
    acc_tokens ts;
    assert_int_equal(acc_tokens_load(path, &ts, err, sizeof err), 0);
    assert_int_equal(ts.n, 2);
    const acc_token *a = acc_tokens_find(&ts, "svc-a");
    assert_non_null(a);
    assert_string_equal(a->name, "reports");
    assert_true(acc_token_matches(a, secret, 6));
    assert_false(acc_token_matches(a, "s3creT", 6));
    assert_false(acc_token_matches(a, secret, 5));
    const acc_token *b = acc_tokens_find(&ts, "svc-b");
    assert_int_equal(b->kdf, ACC_KDF_SCRYPT);
    assert_false(acc_token_matches(b, secret, 6));
    assert_null(acc_tokens_find(&ts, "svc-c"));
    acc_tokens_free(&ts);

    static const struct {
        const char *text, *why;
    } bad[] = {
        {"id: x\n", ":1:1: expected a list of tokens"},
        {"[]\n", "no tokens listed"},
        {"- {id: a, salt: \"0011223344556677\"}\n", ":1:3: each token needs id, salt and hash"},
        {"- {id: a, salt: \"00\", hash: x}\n", ":1:11: salt: expected 16 to 128 hex digits"},
        {"- id: a\n  salt: \"0011223344556677\"\n  hash: \"md5:00\"\n", ":3:3: hash: hash must start with"},
        {"- {id: a, salt: \"0011223344556677\", hash: \"pbkdf2-sha256:10:00\"}\n", "iterations must be 1000"},
        {"- {id: a, salt: \"0011223344556677\", hash: \"scrypt:1000:8:1:00\"}\n", "a power of two"},
        {"- {id: a, salt: \"0011223344556677\", hash: \"pbkdf2-sha256:1000:0011\"}\n", "64 hex digits"},
        {"- {id: a, secret: y, salt: \"0011223344556677\"}\n", ":1:11: unknown key \"secret\""},
        {"- [a]\n", ":1:3: expected one map per token"},
        {"- {id: [a]}\n", "id: expected a non-empty string"},
        {"- {id: a\n", "YAML"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(path, bad[i].text);
        assert_int_equal(acc_tokens_load(path, &ts, err, sizeof err), -1);
        if (!strstr(err, bad[i].why) && !(strstr(bad[i].why, "YAML") && strstr(err, path)))
            fail_msg("%s -> %s (want %s)", bad[i].text, err, bad[i].why);
    }
    snprintf(text, sizeof text,
             "- {id: a, salt: \"0011223344556677\", hash: \"pbkdf2-sha256:1000:%s\"}\n"
             "- {id: a, salt: \"0011223344556677\", hash: \"pbkdf2-sha256:1000:%s\"}\n",
             hex, hex);
    write_file(path, text);
    assert_int_equal(acc_tokens_load(path, &ts, err, sizeof err), -1);
    assert_non_null(strstr(err, ":2:3: id is listed twice"));
}

static void test_signer_kinds(void **state)
{
    fixture *fx = *state;
    char path[512], err[512];
    acc_signer s;
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    write_key(fx, "p384.pem", k);
    EVP_PKEY_free(k);
    path_in(fx, "p384.pem", path, sizeof path);
    assert_int_equal(acc_signer_load(path, &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "expected an RSA key of 2048 bits or more, or an EC P-256 key"));
    path_in(fx, "jwks.json", path, sizeof path);
    assert_int_equal(acc_signer_load(path, &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a PEM private key"));
    /* kid: RFC 7638 thumbprint, 43 base64url characters */
    assert_int_equal(strlen(fx->rsa.kid), 43);
    assert_int_equal(strlen(fx->ec.kid), 43);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url),       cmocka_unit_test(test_jwt_verify),
        cmocka_unit_test(test_jwt_refusals), cmocka_unit_test(test_jwks_errors),
        cmocka_unit_test(test_tokens),       cmocka_unit_test(test_signer_kinds),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
