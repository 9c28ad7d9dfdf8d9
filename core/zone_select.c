/* Zone selection: from an authority to its host part, and from that to the zone that serves it. */
#include "zone_select.h"

#include <string.h>

size_t pc__zone_host(const char *authority, char *host, size_t hostlen)
{
    if (!hostlen) return 0;
    host[0] = '\0';
    if (!authority) return 0;
    const char *end = authority + strlen(authority);
    if (authority[0] == '[') {
        const char *rb = strchr(authority, ']');
        end = rb ? rb + 1 : end;
    } else {
        const char *colon = strrchr(authority, ':');
        if (colon) end = colon;
    }
    size_t len = (size_t)(end - authority);
    if (len >= hostlen) len = hostlen - 1;
    memcpy(host, authority, len);
    host[len] = '\0';
    return len;
}

const pc_zone_conf *pc__zone_select(const pc_config *cfg, const char *authority, char *host, size_t hostlen)
{
    size_t len = pc__zone_host(authority, host, hostlen);
    return pc__zone_find(cfg, host, len);
}
