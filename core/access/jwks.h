/* The edge's own signing keys (each origin's access.vouch.key) and the JSON Web Key Set of their
 * public halves that the admin listener serves at /jwks.json, so origins can verify the identity
 * tokens the edge mints. Key ids are RFC 7638 thumbprints, in the tokens and in the set alike. */
#ifndef PC_ACCESS_JWKS_H
#define PC_ACCESS_JWKS_H

#include <openssl/evp.h>
#include <stddef.h>

#include "config.h"
#include "jwt.h"

struct json_object;

/* The edge's signing key (vouch tokens): a PEM RSA (2048 bits or more) or EC P-256 private key. */
struct pc_access_signer {
    EVP_PKEY *pkey;
    pc_access_alg alg;
    char kid[48]; /* RFC 7638 thumbprint of the public key */
};

/* 0, or -1 with "path: what is wrong" in err. */
int pc__access_signer_load(const char *path, pc_access_signer *s, char *err, size_t errlen);
void pc__access_signer_free(pc_access_signer *s);

/* The public JWK of a signer: kty and its members, kid, use "sig", alg. NULL when out of memory. */
struct json_object *pc__access_public_jwk(const pc_access_signer *s);

/* Publishes the key set of `cfg`'s vouch keys; the previous set's keys stay published next to it
 * (one generation), so tokens minted just before a reload keep verifying. 0, or -1 with err. */
int pc__access_jwks_update(const pc_config *cfg, char *err, size_t errlen);

/* The published document, malloc'd ({"keys": []} when no origin vouches); NULL when out of memory. */
char *pc__access_jwks_render(void);

#endif
