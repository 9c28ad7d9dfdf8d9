/* Service tokens of the access policy: the tokens file (a YAML list of id + salted hash of the
 * secret) and the check of a presented secret. Immutable after load; read by every worker. */
#ifndef PC_ACCESS_TOKENS_H
#define PC_ACCESS_TOKENS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { PC_ACCESS_KDF_PBKDF2_SHA256 = 1, PC_ACCESS_KDF_SCRYPT = 2 } pc_access_kdf;

typedef struct pc_access_token {
    char *id;
    char *name; /* optional label for logs; NULL when none */
    unsigned char salt[64];
    size_t saltlen;
    pc_access_kdf kdf;
    uint64_t iterations; /* PBKDF2 */
    uint64_t n, r, p;    /* scrypt */
    unsigned char hash[32];
} pc_access_token;

typedef struct pc_access_tokens {
    pc_access_token *t;
    size_t n;
} pc_access_tokens;

/* The tokens file: a YAML list of {id, salt (hex), hash, name (optional)} where hash is
 * "pbkdf2-sha256:ITERATIONS:HEX" or "scrypt:N:R:P:HEX" (32-byte digests). 0, or -1 with
 * "path:line:col: what is wrong" in err. */
int pc__access_tokens_load(const char *path, pc_access_tokens *out, char *err, size_t errlen);
void pc__access_tokens_free(pc_access_tokens *ts);
const pc_access_token *pc__access_tokens_find(const pc_access_tokens *ts, const char *id);
/* Runs the entry's KDF on `secret` and compares in constant time: 1 match, 0 not. Slow on purpose:
 * call it off the event loop. */
int pc__access_token_matches(const pc_access_token *t, const char *secret, size_t len);

#endif
