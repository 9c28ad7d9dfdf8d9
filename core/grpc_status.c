/* gRPC status names and the two header encodings the edge writes: grpc-message (percent-encoded)
 * and grpc-timeout (at most eight digits and a unit). */
#include "grpc_status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const names[] = {
    "OK",        "CANCELLED",       "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS",  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",    "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED",
};

const char *pc__grpc_status_name(int code)
{
    if (code < 0 || code > 16) return "UNKNOWN";
    return names[code];
}

int pc__grpc_status_parse(const char *s)
{
    if (!s || !*s) return -1;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end == '\0') return (v >= 0 && v <= 16) ? (int)v : -1;
    for (int i = 0; i <= 16; i++)
        if (strcasecmp(s, names[i]) == 0) return i;
    return -1;
}

size_t pc__grpc_message_encode(const char *msg, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (outlen == 0) return 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            if (o + 1 >= outlen) break;
            out[o++] = (char)*p;
        } else {
            if (o + 3 >= outlen) break;
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return o;
}

int64_t pc__grpc_timeout_parse(const char *v, size_t len)
{
    if (len < 2 || len > 9) return -1;
    int64_t n = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        n = n * 10 + (v[i] - '0');
    }
    switch (v[len - 1]) {
    case 'H':
        return n * 3600000;
    case 'M':
        return n * 60000;
    case 'S':
        return n * 1000;
    case 'm':
        return n;
    case 'u':
        return (n + 999) / 1000;
    case 'n':
        return (n + 999999) / 1000000;
    default:
        return -1;
    }
}

void pc__grpc_timeout_format(int64_t ms, char out[16])
{
    if (ms < 0) ms = 0;
    if (ms <= 99999999)
        snprintf(out, 16, "%lldm", (long long)ms);
    else if (ms / 1000 <= 99999999)
        snprintf(out, 16, "%lldS", (long long)(ms / 1000));
    else
        snprintf(out, 16, "%lldM", (long long)(ms / 60000 > 99999999 ? 99999999 : ms / 60000));
}

int pc__grpc_is_content_type(const char *v, size_t len)
{
    static const char prefix[] = "application/grpc";
    size_t pl = sizeof prefix - 1;
    if (len < pl || strncasecmp(v, prefix, pl) != 0) return 0;
    return len == pl || v[pl] == '+' || v[pl] == ';';
}
