/* The edge's public signing keys (every origin's access.vouch key) as a JSON Web Key Set, which the
 * admin listener serves at /jwks.json so origins can verify the identity tokens the edge mints. */
#ifndef PC_JWKS_H
#define PC_JWKS_H

#include <stddef.h>

#include "config.h"

/* Builds the key set of `cfg` and publishes it; the previous set's keys stay published next to it
 * (one generation), so tokens minted just before a reload keep verifying. 0, or -1 with err. */
int pc__jwks_update(const pc_config *cfg, char *err, size_t errlen);

/* The published document, malloc'd ({"keys": []} when no origin vouches); NULL when out of memory. */
char *pc__jwks_render(void);

#endif
