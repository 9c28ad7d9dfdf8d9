/* Shared declarations of the access plugin's parts: JSON Web Tokens and keys (jwt.c) and service
 * tokens (tokens.c). Everything here is immutable after init and read by every worker. */
#ifndef PC_ACCESS_H
#define PC_ACCESS_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct json_object;

/* ---- base64url (RFC 4648 section 5, no padding, as JWS uses it) ---- */

/* Decodes into a malloc'd buffer (NUL-terminated for convenience). -1 on any character outside the
 * alphabet, on padding, or on an impossible length. */
int acc_b64url_decode(const char *in, size_t len, unsigned char **out, size_t *outlen);
/* malloc'd, NUL-terminated; NULL when out of memory. */
char *acc_b64url_encode(const unsigned char *in, size_t len);

/* ---- keys ---- */

typedef enum { ACC_RS256 = 1, ACC_ES256 = 2 } acc_alg;

typedef struct acc_jwk {
    char *kid;      /* NULL when the JWK has none */
    acc_alg alg;    /* RSA keys verify RS256, P-256 keys ES256: the key decides, never the token */
    EVP_PKEY *pkey; /* public */
} acc_jwk;

typedef struct acc_jwks {
    acc_jwk *keys;
    size_t n;
} acc_jwks;

/* A JWKS file ({"keys": [...]}) with RSA (2048 bits or more) and EC P-256 public keys. */
int acc_jwks_load(const char *path, acc_jwks *out, char *err, size_t errlen);
void acc_jwks_free(acc_jwks *ks);

/* The edge's own signing key (vouch tokens): PEM RSA or EC P-256 private key. */
typedef struct acc_signer {
    EVP_PKEY *pkey;
    acc_alg alg;
    char kid[48]; /* RFC 7638 thumbprint of the public key: the JWKS on the admin listener uses the same */
} acc_signer;

int acc_signer_load(const char *path, acc_signer *s, char *err, size_t errlen);
void acc_signer_free(acc_signer *s);

/* ---- tokens ---- */

/* Checks a compact JWS: alg from the key set (RS256/ES256, never none), kid lookup, signature, then
 * exp (required), nbf, iat, iss and aud with `leeway_s` of clock skew. On success returns 0 and
 * *claims (caller puts it). On failure -1 and *why: a short reason that never quotes the token. */
int acc_jwt_verify(const acc_jwks *ks, const char *token, const char *issuer, const char *audience,
                   long leeway_s, time_t now, struct json_object **claims, const char **why);

/* A compact JWS of `claims` signed with s; malloc'd, NULL on failure. */
char *acc_jwt_sign(const acc_signer *s, struct json_object *claims);

/* ---- service tokens ---- */

typedef enum { ACC_KDF_PBKDF2_SHA256 = 1, ACC_KDF_SCRYPT = 2 } acc_kdf;

typedef struct acc_token {
    char *id;
    char *name; /* optional label for logs; NULL when none */
    unsigned char salt[64];
    size_t saltlen;
    acc_kdf kdf;
    uint64_t iterations; /* PBKDF2 */
    uint64_t n, r, p;    /* scrypt */
    unsigned char hash[32];
} acc_token;

typedef struct acc_tokens {
    acc_token *t;
    size_t n;
} acc_tokens;

/* The tokens file: a YAML list of {id, salt (hex), hash, name (optional)} where hash is
 * "pbkdf2-sha256:ITERATIONS:HEX" or "scrypt:N:R:P:HEX" (32-byte digests). */
int acc_tokens_load(const char *path, acc_tokens *out, char *err, size_t errlen);
void acc_tokens_free(acc_tokens *ts);
const acc_token *acc_tokens_find(const acc_tokens *ts, const char *id);
/* Runs the entry's KDF on `secret` and compares in constant time: 1 match, 0 not. Slow on purpose:
 * call it off the event loop. */
int acc_token_matches(const acc_token *t, const char *secret, size_t len);

#endif
