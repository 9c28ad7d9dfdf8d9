/* An origin's access policy: its `access` map parsed and checked once, at config load, into the
 * typed policy that `portcullis check`, the TLS setup (client CA), the admin listener (vouch keys)
 * and the request path (access.c) all read. The one validator of that map. */
#ifndef PC_ACCESS_POLICY_H
#define PC_ACCESS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "config_reader.h"
#include "jwks.h"
#include "jwt.h"
#include "tokens.h"
#include "yaml_tree.h"

/* What a call needs. The values index the names in pc__access_mode_name. */
typedef enum {
    PC_ACCESS_NONE = 0, /* not protected and nothing asked for */
    PC_ACCESS_DENY,
    PC_ACCESS_MTLS,
    PC_ACCESS_TOKEN,
    PC_ACCESS_JWT,
} pc_access_mode;

/* The header the edge's identity token goes in unless vouch.header says otherwise. */
#define PC_ACCESS_VOUCH_HEADER "portcullis-jwt-assertion"

struct pc_access_policy {
    char *origin;
    bool is_protected;   /* access.protected, default true */
    bool grpc_set;       /* access.grpc was written */
    pc_access_mode grpc; /* what a gRPC call needs: deny when protected and grpc is not set */
    bool http_jwt;       /* access.http: jwt */
    bool strip;          /* strip_credentials, default true */
    char *mtls_ca;       /* mtls.ca resolved, when an mtls map is given */
    bool has_jwt;        /* a jwt map is given: */
    pc_access_jwks jwks;
    char *issuer, *audience;
    char *jwt_header; /* default "authorization" */
    uint32_t leeway_s;
    bool has_tokens; /* a service_token map is given */
    pc_access_tokens tokens;
    bool vouch; /* a vouch map is given: */
    pc_access_signer signer;
    char *vouch_header;
    uint32_t vouch_ttl_s;
};

/* Parses and checks origin `origin`'s access map `acc` (key path `path`, `label` for warnings):
 * keys, modes, the material each part names (files read and loaded now: a broken one fails `check`
 * with its position), and warnings for what is valid but risky. *out is set even on failure (the
 * origin frees it). 0, or -1 with the error in the reader. */
int pc__access_policy_load(pc_config_reader *rd, const pc_yaml_node *acc, const char *path, const char *label,
                           const char *origin, pc_access_policy **out);
void pc__access_policy_free(pc_access_policy *p);

/* A zone (`zone_label`) with gRPC on that routes to the origin of policy p: warns when p is
 * protected and its gRPC mode was never chosen (calls are denied by default, which is safe but
 * probably not what whoever enabled gRPC on the zone meant). 0, or -1. */
int pc__access_zone_warning(pc_config_reader *rd, const pc_access_policy *p, const char *zone_label);

/* The client CA the TLS layer asks for certificates with: mtls.ca when access.grpc is mtls, else
 * NULL (p may be NULL). */
const char *pc__access_mtls_ca(const pc_access_policy *p);

/* A client CA file: PEM CA certificates only (a leaf would never anchor a chain). 0, or -1 with
 * "path: what is wrong" in err. */
int pc__access_ca_check(const char *path, char *err, size_t errlen);

/* "deny", "mtls", "service_token", "jwt" ("none" for PC_ACCESS_NONE): the words of the config, the
 * published access.method and the vouch token's auth_method. */
const char *pc__access_mode_name(pc_access_mode m);

#endif
