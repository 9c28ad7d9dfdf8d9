/* The material an origin's access policy names (client CA, JWKS, tokens file, signing key): checked
 * when the config loads, so `portcullis check` and start-up refuse what the access plugin could not
 * use, and looked up by the TLS layer (client CA per origin) and the admin JWKS. */
#ifndef PC_ACCESS_CHECK_H
#define PC_ACCESS_CHECK_H

#include <stddef.h>

#include "config.h"

/* Each returns 0, or -1 with what is wrong in err (the caller adds file:line:col). */
int pc__access_check_ca(const char *path, char *err, size_t errlen);
int pc__access_check_jwks(const char *path, char *err, size_t errlen);
int pc__access_check_tokens(const char *path, char *err, size_t errlen);
int pc__access_check_signing_key(const char *path, char *err, size_t errlen);

/* The resolved path of the client CA when the origin's access.grpc is mtls, else NULL. malloc'd. */
char *pc__access_mtls_ca(const pc_config *cfg, const pc_origin_conf *o);
/* The resolved path of the origin's access.vouch.key, else NULL. malloc'd. */
char *pc__access_vouch_key(const pc_config *cfg, const pc_origin_conf *o);

#endif
