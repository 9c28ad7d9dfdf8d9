/* JSON Web Tokens for the access policy: base64url, the JWKS an origin's policy trusts (RSA and EC
 * P-256 public keys), verification of RS256/ES256 compact JWS with the claim checks, and signing of
 * the tokens the edge mints (with its own key, jwks.h). Immutable after load; read by every worker. */
#ifndef PC_ACCESS_JWT_H
#define PC_ACCESS_JWT_H

#include <openssl/evp.h>
#include <stddef.h>
#include <time.h>

struct json_object;

/* Bytes of a compact JWS the verifier looks at; real ones are far smaller. */
#define PC_ACCESS_MAX_TOKEN 16384

/* ---- base64url (RFC 4648 section 5, no padding, as JWS uses it) ---- */

/* Decodes into a malloc'd buffer (NUL-terminated for convenience). -1 on any character outside the
 * alphabet, on padding, on stray bits in the last character, or on an impossible length. */
int pc__b64url_decode(const char *in, size_t len, unsigned char **out, size_t *outlen);
/* malloc'd, NUL-terminated; NULL when out of memory. */
char *pc__b64url_encode(const unsigned char *in, size_t len);

/* ---- keys ---- */

typedef enum { PC_ACCESS_RS256 = 1, PC_ACCESS_ES256 = 2 } pc_access_alg;

typedef struct pc_access_jwk {
    char *kid;         /* NULL when the JWK has none */
    pc_access_alg alg; /* RSA keys verify RS256, P-256 keys ES256: the key decides, never the token */
    EVP_PKEY *pkey;    /* public */
} pc_access_jwk;

typedef struct pc_access_jwks {
    pc_access_jwk *keys;
    size_t n;
} pc_access_jwks;

/* A JWKS file ({"keys": [...]}) with RSA (2048 bits or more) and EC P-256 public keys. 0, or -1 with
 * "path: what is wrong" in err. */
int pc__access_jwks_load(const char *path, pc_access_jwks *out, char *err, size_t errlen);
void pc__access_jwks_free(pc_access_jwks *ks);

/* ---- tokens ---- */

/* Checks a compact JWS: alg from the key set (RS256/ES256, never none), kid lookup, signature, then
 * exp (required), nbf, iat, iss and aud with `leeway_s` of clock skew. On success returns 0 and
 * *claims (caller puts it). On failure -1 and *why: a short reason that never quotes the token. */
int pc__access_jwt_verify(const pc_access_jwks *ks, const char *token, const char *issuer,
                          const char *audience, long leeway_s, time_t now, struct json_object **claims,
                          const char **why);

/* A compact JWS of `claims` signed with the edge's key (header alg and kid from it); malloc'd, NULL on
 * failure. */
typedef struct pc_access_signer pc_access_signer;
char *pc__access_jwt_sign(const pc_access_signer *s, struct json_object *claims);

#endif
