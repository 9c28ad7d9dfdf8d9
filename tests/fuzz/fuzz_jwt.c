/* libFuzzer target for the access policy's JWT verification (core/access/jwt.c, included).
 * First byte even: the rest is a token exactly as a client would send it (splitting, base64url,
 * header JSON, key choice). First byte odd: the rest is split at the first NUL into a header and a
 * claims part, raw bytes (JSON or not), which are encoded and signed here with the key the
 * verifier trusts, so that the fuzzer reaches the claim checks behind the signature. Checks: a
 * token is accepted only with the configured issuer, and then has claims; a refused one has a
 * reason and no claims. Seeds: valid tokens, near misses, alg none, a wrong kid. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/access/jwt.c"

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) __builtin_trap();                                                                          \
    } while (0)

#define ISSUER "https://issuer.example"
#define AUDIENCE "api.example.com"
#define NOW ((time_t)1900000000)

static pc_access_jwks keys;
static pc_access_jwk key;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    key.kid = strdup("k1");
    key.alg = PC_ACCESS_ES256;
    key.pkey = EVP_EC_gen("P-256");
    CHECK(key.kid && key.pkey);
    keys.keys = &key;
    keys.n = 1;
    return 0;
}

/* b64(header).b64(claims).b64(ES256 signature), signed with the trusted key. */
static char *signed_token(const uint8_t *h, size_t hl, const uint8_t *c, size_t cl)
{
    char *h64 = pc__b64url_encode(h, hl), *c64 = pc__b64url_encode(c, cl), *input = NULL, *out = NULL;
    char *sig64 = NULL;
    unsigned char *der = NULL, raw[64];
    size_t derlen = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    CHECK(h64 && c64 && md && asprintf(&input, "%s.%s", h64, c64) >= 0);
    CHECK(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key.pkey) == 1 &&
          EVP_DigestSign(md, NULL, &derlen, (const unsigned char *)input, strlen(input)) == 1 &&
          (der = malloc(derlen)) &&
          EVP_DigestSign(md, der, &derlen, (const unsigned char *)input, strlen(input)) == 1);
    CHECK(es256_raw(der, derlen, raw) && (sig64 = pc__b64url_encode(raw, sizeof raw)));
    CHECK(asprintf(&out, "%s.%s", input, sig64) >= 0);
    EVP_MD_CTX_free(md);
    free(h64);
    free(c64);
    free(input);
    free(der);
    free(sig64);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192) return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    char *token;
    if (data[0] & 1) {
        const uint8_t *nul = memchr(p, 0, n);
        size_t hl = nul ? (size_t)(nul - p) : n;
        token = signed_token(p, hl, nul ? nul + 1 : p + n, nul ? n - hl - 1 : 0);
    } else {
        CHECK((token = malloc(n + 1)));
        memcpy(token, p, n);
        token[n] = '\0';
    }
    struct json_object *claims = (struct json_object *)1;
    const char *why = NULL;
    int rv = pc__access_jwt_verify(&keys, token, ISSUER, AUDIENCE, 30, NOW, &claims, &why);
    if (rv == 0) {
        CHECK(claims && !why);
        const char *iss = jstr(claims, "iss");
        CHECK(iss && !strcmp(iss, ISSUER));
        json_object_put(claims);
    } else {
        CHECK(rv == -1 && !claims && why && *why);
    }
    free(token);
    return 0;
}
