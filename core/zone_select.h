/* Which zone serves a request: the one whose hosts match the host part of its :authority (or of its
 * Host header), without the port; an IPv6 literal keeps its brackets. */
#ifndef PC_ZONE_SELECT_H
#define PC_ZONE_SELECT_H

#include <stddef.h>

#include "config.h"

/* The host part of an authority ("h:443" -> "h", "[::1]:443" -> "[::1]") into host (truncated to
 * fit, NUL-terminated); its length. A NULL authority gives "". */
size_t pc__zone_host(const char *authority, char *host, size_t hostlen);
/* The zone for an authority, NULL when none serves it; host receives the host part looked up. */
const pc_zone_conf *pc__zone_select(const pc_config *cfg, const char *authority, char *host, size_t hostlen);

#endif
