/* The access policy of an origin, from its `access` map: the only parser and validator of that map.
 * It reads with config.c's own primitives (config_reader.h), so its errors and warnings are the
 * config's, and it loads every file the map names here, once: a broken policy fails `check` (exit
 * 2, with its position) instead of refusing calls later, and what `check` accepted is exactly what
 * the TLS setup, the admin JWKS and the request path then use. */
#include "policy.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const mode_names[] = {"none", "deny", "mtls", "service_token", "jwt"};

const char *pc__access_mode_name(pc_access_mode m)
{
    return m <= PC_ACCESS_JWT ? mode_names[m] : "?";
}

int pc__access_ca_check(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return -1;
    }
    size_t n = 0;
    int rc = 0;
    X509 *x;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL))) {
        n++;
        /* A leaf here would never anchor a chain: every client would fail, so say so now. */
        if (X509_check_ca(x) < 1) {
            char name[256] = "";
            X509_NAME_oneline(X509_get_subject_name(x), name, sizeof name);
            snprintf(err, errlen, "%s: certificate %zu (%s) is not a CA certificate", path, n, name);
            rc = -1;
        }
        X509_free(x);
        if (rc) break;
    }
    fclose(f);
    ERR_clear_error();
    if (!rc && n == 0) {
        snprintf(err, errlen, "%s: no PEM certificate found", path);
        rc = -1;
    }
    return rc;
}

const char *pc__access_mtls_ca(const pc_access_policy *p)
{
    return p && p->grpc == PC_ACCESS_MTLS ? p->mtls_ca : NULL;
}

void pc__access_policy_free(pc_access_policy *p)
{
    if (!p) return;
    free(p->origin);
    free(p->mtls_ca);
    pc__access_jwks_free(&p->jwks);
    free(p->issuer);
    free(p->audience);
    free(p->jwt_header);
    pc__access_tokens_free(&p->tokens);
    pc__access_signer_free(&p->signer);
    free(p->vouch_header);
    free(p);
}

/* ---- parsing ---- */

/* Headers the edge sets for the origin: lower case (HTTP/2), and none the protocol or a credential owns. */
static bool edge_header_ok(const char *s)
{
    static const char *const reserved[] = {
        "host",    "te",         "content-type",     "connection",       "transfer-encoding",
        "upgrade", "keep-alive", "proxy-connection", "access-client-id", "access-client-secret",
        NULL};
    size_t len = strlen(s);
    if (len == 0 || len > 64 || !strncmp(s, "grpc-", 5)) return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
            return false;
    for (size_t i = 0; reserved[i]; i++)
        if (!strcmp(s, reserved[i])) return false;
    return true;
}

/* acc.key as a map with these keys; *out NULL when absent. */
static int sub_map(pc_config_reader *rd, const pc_yaml_node *acc, const char *path, const char *key,
                   const char *const *keys, char *sub, const pc_yaml_node **out)
{
    *out = pc__yaml_get(acc, key);
    pc__cfg_join(sub, path, key);
    if (*out && (pc__cfg_want(rd, *out, PC_YAML_MAP, sub) < 0 || pc__cfg_check_keys(rd, *out, sub, keys) < 0))
        return -1;
    return 0;
}

/* map.key names a readable file, which `load` accepts (into `into`); its resolved path to *resolved
 * when that is wanted. */
static int material(pc_config_reader *rd, const pc_yaml_node *map, const char *path, const char *key,
                    int (*load)(const char *, void *, char *, size_t), void *into, char **resolved)
{
    char kp[PC_CFG_PATHLEN], e[768];
    const pc_yaml_node *n = pc__cfg_required(rd, map, path, key);
    char *file = NULL;
    pc__cfg_join(kp, path, key);
    if (!n || pc__cfg_file(rd, n, kp, &file) < 0) {
        free(file);
        return -1;
    }
    int rc = load(file, into, e, sizeof e);
    if (resolved)
        *resolved = file;
    else
        free(file);
    return rc < 0 ? pc__cfg_fail(rd, n, "%s: %s", kp, e) : 0;
}

static int load_ca(const char *path, void *into, char *err, size_t errlen)
{
    (void)into;
    return pc__access_ca_check(path, err, errlen);
}

static int load_jwks(const char *path, void *into, char *err, size_t errlen)
{
    return pc__access_jwks_load(path, into, err, errlen);
}

static int load_tokens(const char *path, void *into, char *err, size_t errlen)
{
    return pc__access_tokens_load(path, into, err, errlen);
}

static int load_signer(const char *path, void *into, char *err, size_t errlen)
{
    return pc__access_signer_load(path, into, err, errlen);
}

/* Optional map.key: a header name the edge may set; *out (a copy) keeps `def` when absent. */
static int header(pc_config_reader *rd, const pc_yaml_node *map, const char *path, const char *key,
                  const char *def, char **out)
{
    const pc_yaml_node *n = pc__yaml_get(map, key);
    char kp[PC_CFG_PATHLEN], d[128];
    const char *s = def;
    pc__cfg_join(kp, path, key);
    if (n) {
        if (pc__cfg_str(rd, n, kp, &s) < 0) return -1;
        if (!edge_header_ok(s))
            return pc__cfg_fail(
                rd, n,
                "%s: expected a lower-case header name (not a pseudo, grpc-* or connection header), got %s",
                kp, pc__yaml_quote(d, sizeof d, s, strlen(s)));
    }
    return (*out = strdup(s)) ? 0 : pc__cfg_fail(rd, n ? n : map, "out of memory");
}

static int mode_of(pc_config_reader *rd, const pc_yaml_node *acc, const char *path, pc_access_policy *p)
{
    const pc_yaml_node *n;
    const char *s;
    char kp[PC_CFG_PATHLEN], d[128];
    p->grpc = p->is_protected ? PC_ACCESS_DENY : PC_ACCESS_NONE;
    if ((n = pc__yaml_get(acc, "grpc"))) {
        pc__cfg_join(kp, path, "grpc");
        if (pc__cfg_str(rd, n, kp, &s) < 0) return -1;
        pc_access_mode m = PC_ACCESS_DENY;
        while (m <= PC_ACCESS_JWT && strcmp(mode_names[m], s))
            m++;
        if (m > PC_ACCESS_JWT)
            return pc__cfg_fail(rd, n, "%s: expected deny, mtls, service_token or jwt, got %s", kp,
                                pc__yaml_quote(d, sizeof d, s, strlen(s)));
        p->grpc = m;
        p->grpc_set = true;
    }
    if ((n = pc__yaml_get(acc, "http"))) {
        pc__cfg_join(kp, path, "http");
        if (pc__cfg_str(rd, n, kp, &s) < 0) return -1;
        if (strcmp(s, "jwt"))
            return pc__cfg_fail(
                rd, n, "%s: expected jwt (without it plain HTTP is left to the origin's login), got %s", kp,
                pc__yaml_quote(d, sizeof d, s, strlen(s)));
        p->http_jwt = true;
    }
    return 0;
}

static int warnings(pc_config_reader *rd, const pc_access_policy *p, const char *label)
{
    const char *mode = p->grpc_set ? mode_names[p->grpc] : "not set";
    bool use_jwt = p->grpc == PC_ACCESS_JWT || p->http_jwt;
    if (p->mtls_ca && p->grpc != PC_ACCESS_MTLS &&
        pc__cfg_warn(rd, "%s: access.mtls is set but not used (access.grpc is %s)", label, mode) < 0)
        return -1;
    if (p->has_tokens && p->grpc != PC_ACCESS_TOKEN &&
        pc__cfg_warn(rd, "%s: access.service_token is set but not used (access.grpc is %s)", label, mode) < 0)
        return -1;
    if (p->has_jwt && !use_jwt &&
        pc__cfg_warn(rd, "%s: access.jwt is set but not used (neither access.grpc nor access.http is jwt)",
                     label) < 0)
        return -1;
    if (!p->strip && (p->grpc == PC_ACCESS_TOKEN || use_jwt) &&
        pc__cfg_warn(
            rd, "%s: access.strip_credentials is false: the credentials the edge checks reach the origin",
            label) < 0)
        return -1;
    if (p->grpc == PC_ACCESS_MTLS) {
        const pc_config *cfg = pc__cfg_config(rd);
        size_t l = 0;
        while (l < cfg->nlisten && !cfg->listen[l].tls)
            l++;
        if (l == cfg->nlisten &&
            pc__cfg_warn(rd,
                         "%s: access.grpc is mtls but no listener has tls: every gRPC call to this origin is "
                         "refused",
                         label) < 0)
            return -1;
    }
    if (!p->is_protected && !p->grpc_set && !p->http_jwt &&
        pc__cfg_warn(
            rd,
            "%s: access.protected is false and neither access.grpc nor access.http is set: it checks nothing",
            label) < 0)
        return -1;
    return 0;
}

int pc__access_policy_load(pc_config_reader *rd, const pc_yaml_node *acc, const char *path, const char *label,
                           const char *origin, pc_access_policy **out)
{
    static const char *const keys[] = {"protected",         "grpc",  "http", "mtls", "service_token", "jwt",
                                       "strip_credentials", "vouch", NULL};
    static const char *const mtls_keys[] = {"ca", NULL};
    static const char *const token_keys[] = {"tokens_file", NULL};
    static const char *const jwt_keys[] = {"jwks", "issuer", "audience", "header", "leeway_s", NULL};
    static const char *const vouch_keys[] = {"key", "header", "ttl_s", NULL};
    char kp[PC_CFG_PATHLEN], mp[PC_CFG_PATHLEN], sp[PC_CFG_PATHLEN], jp[PC_CFG_PATHLEN], vp[PC_CFG_PATHLEN];
    const pc_yaml_node *n, *mt, *st, *jw, *vo;
    pc_access_policy *p = *out = calloc(1, sizeof *p);
    if (!p || !(p->origin = strdup(origin))) return pc__cfg_fail(rd, acc, "out of memory");
    p->is_protected = p->strip = true;
    p->leeway_s = 60;
    p->vouch_ttl_s = 60;
    if (pc__cfg_want(rd, acc, PC_YAML_MAP, path) < 0 || pc__cfg_check_keys(rd, acc, path, keys) < 0 ||
        pc__cfg_bool(rd, acc, path, "protected", &p->is_protected) < 0 ||
        pc__cfg_bool(rd, acc, path, "strip_credentials", &p->strip) < 0 || mode_of(rd, acc, path, p) < 0)
        return -1;
    if (sub_map(rd, acc, path, "mtls", mtls_keys, mp, &mt) < 0 ||
        sub_map(rd, acc, path, "service_token", token_keys, sp, &st) < 0 ||
        sub_map(rd, acc, path, "jwt", jwt_keys, jp, &jw) < 0 ||
        sub_map(rd, acc, path, "vouch", vouch_keys, vp, &vo) < 0)
        return -1;
    bool use_jwt = p->grpc == PC_ACCESS_JWT || p->http_jwt;
    n = pc__yaml_get(acc, p->grpc_set ? "grpc" : "http");
    if (p->grpc == PC_ACCESS_MTLS && !mt)
        return pc__cfg_fail(rd, n, "%s: grpc is mtls, so give mtls: {ca: FILE} (the client CA)", path);
    if (p->grpc == PC_ACCESS_TOKEN && !st)
        return pc__cfg_fail(rd, n, "%s: grpc is service_token, so give service_token: {tokens_file: FILE}",
                            path);
    if (use_jwt && !jw)
        return pc__cfg_fail(rd, n, "%s: %s is jwt, so give jwt: {jwks: FILE, issuer: ..., audience: ...}",
                            path, p->grpc == PC_ACCESS_JWT ? "grpc" : "http");
    /* Material is loaded even when unused: a file left in the config is one someone will switch to. */
    if (mt && material(rd, mt, mp, "ca", load_ca, NULL, &p->mtls_ca) < 0) return -1;
    if (st && material(rd, st, sp, "tokens_file", load_tokens, &p->tokens, NULL) < 0) return -1;
    p->has_tokens = st != NULL;
    if (jw) {
        if (material(rd, jw, jp, "jwks", load_jwks, &p->jwks, NULL) < 0) return -1;
        char **vals[] = {&p->issuer, &p->audience};
        for (size_t k = 0; k < 2; k++) {
            const char *key = k ? "audience" : "issuer", *s;
            if (!(n = pc__cfg_required(rd, jw, jp, key))) return -1;
            pc__cfg_join(kp, jp, key);
            if (pc__cfg_str(rd, n, kp, &s) < 0) return -1;
            if (!(*vals[k] = strdup(s))) return pc__cfg_fail(rd, n, "out of memory");
        }
        if (header(rd, jw, jp, "header", "authorization", &p->jwt_header) < 0 ||
            pc__cfg_u32(rd, jw, jp, "leeway_s", " of seconds", 0, 3600, &p->leeway_s) < 0)
            return -1;
        p->has_jwt = true;
    }
    if (vo) {
        if (material(rd, vo, vp, "key", load_signer, &p->signer, NULL) < 0 ||
            header(rd, vo, vp, "header", PC_ACCESS_VOUCH_HEADER, &p->vouch_header) < 0 ||
            pc__cfg_u32(rd, vo, vp, "ttl_s", " of seconds", 1, 3600, &p->vouch_ttl_s) < 0)
            return -1;
        if ((n = pc__yaml_get(vo, "header")) && jw && !strcmp(p->vouch_header, p->jwt_header))
            return pc__cfg_fail(rd, n, "%s.header: must differ from %s.header (%s)", vp, jp, p->jwt_header);
        p->vouch = true;
    }
    return warnings(rd, p, label);
}

int pc__access_zone_warning(pc_config_reader *rd, const pc_access_policy *p, const char *zone_label)
{
    if (!p->is_protected || p->grpc_set) return 0;
    return pc__cfg_warn(
        rd,
        "%s: grpc is on, but origin %s is access-protected and its access.grpc is not set: "
        "gRPC calls to it are denied; set access.grpc on the origin (deny, mtls, service_token or "
        "jwt) or grpc: false on the zone",
        zone_label, p->origin);
}
