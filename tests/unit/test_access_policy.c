/* Access policies at config load (core/access/policy.c, called by config.c for each origin's access
 * map): the material each part names, errors with their positions, the warnings, and the typed
 * policy the TLS setup and the request path read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tmpdir.h"

#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access/policy.h"
#include "config.h"

typedef struct fixture {
    char dir[256];
} fixture;

static void path_in(const fixture *fx, const char *name, char *out, size_t len)
{
    tmpdir_path(fx->dir, name, out, len);
}

static void write_file(const fixture *fx, const char *name, const char *text)
{
    tmpdir_write(fx->dir, name, text);
}

static void write_key(const fixture *fx, const char *name, EVP_PKEY *k)
{
    tmpdir_write_key(fx->dir, name, k);
}

/* A self-signed certificate, a CA or not. */
static void write_cert(const fixture *fx, const char *name, bool ca)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)name, -1,
                               -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, k);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext =
        X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    char path[512];
    path_in(fx, name, path, sizeof path);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (tmpdir_make(fx->dir, sizeof fx->dir, "acccheck") < 0) return -1;
    write_cert(fx, "ca.pem", true);
    write_cert(fx, "leaf.pem", false);
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    write_key(fx, "vouch-ec.pem", k);
    EVP_PKEY_free(k);
    k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    write_key(fx, "vouch-rsa.pem", k);
    EVP_PKEY_free(k);
    k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    write_key(fx, "weak.pem", k);
    EVP_PKEY_free(k);
    write_file(fx, "jwks.json",
               "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"a\","
               "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
               "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]}");
    write_file(
        fx, "tokens.yaml",
        "- id: a\n  salt: \"0011223344556677\"\n"
        "  hash: \"pbkdf2-sha256:1000:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"\n");
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    int rc = tmpdir_remove(fx->dir);
    free(fx);
    return rc;
}

/* The loaders of each kind of material, as the policy calls them: 0, or -1 with err. */
static int check_jwks(const char *path, char *err, size_t errlen)
{
    pc_access_jwks ks;
    int rc = pc__access_jwks_load(path, &ks, err, errlen);
    if (rc == 0) pc__access_jwks_free(&ks);
    return rc;
}

static int check_tokens(const char *path, char *err, size_t errlen)
{
    pc_access_tokens ts;
    int rc = pc__access_tokens_load(path, &ts, err, errlen);
    if (rc == 0) pc__access_tokens_free(&ts);
    return rc;
}

static int check_signing_key(const char *path, char *err, size_t errlen)
{
    pc_access_signer s;
    int rc = pc__access_signer_load(path, &s, err, errlen);
    if (rc == 0) pc__access_signer_free(&s);
    return rc;
}

static void test_material(void **state)
{
    fixture *fx = *state;
    char path[512], err[768];
    path_in(fx, "ca.pem", path, sizeof path);
    assert_int_equal(pc__access_ca_check(path, err, sizeof err), 0);
    path_in(fx, "leaf.pem", path, sizeof path);
    assert_int_equal(pc__access_ca_check(path, err, sizeof err), -1);
    assert_non_null(strstr(err, "certificate 1 (/CN=leaf.pem) is not a CA certificate"));
    path_in(fx, "jwks.json", path, sizeof path);
    assert_int_equal(pc__access_ca_check(path, err, sizeof err), -1);
    assert_non_null(strstr(err, "no PEM certificate found"));
    assert_int_equal(check_jwks(path, err, sizeof err), 0);
    path_in(fx, "tokens.yaml", path, sizeof path);
    assert_int_equal(check_tokens(path, err, sizeof err), 0);
    assert_int_equal(check_jwks(path, err, sizeof err), -1);
    assert_non_null(strstr(err, "expected a JSON Web Key Set"));
    path_in(fx, "vouch-ec.pem", path, sizeof path);
    assert_int_equal(check_signing_key(path, err, sizeof err), 0);
    assert_int_equal(check_tokens(path, err, sizeof err), -1);
    path_in(fx, "weak.pem", path, sizeof path);
    assert_int_equal(check_signing_key(path, err, sizeof err), -1);
    assert_non_null(strstr(err, "expected an RSA key of 2048 bits or more"));
    path_in(fx, "missing.pem", path, sizeof path);
    assert_int_equal(check_signing_key(path, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open"));

    write_file(fx, "t2.yaml",
               "- {id: a, salt: \"0011223344556677\", hash: \"scrypt:1024:8:1:00\"}\n"
               "- {id: b, name: [x]}\n");
    path_in(fx, "t2.yaml", path, sizeof path);
    assert_int_equal(check_tokens(path, err, sizeof err), -1);
    assert_non_null(strstr(err, "t2.yaml:1:37: hash: the digest must be 64 hex digits"));
}

static const char *head = "listen:\n"
                          "  - address: \"127.0.0.1:8443\"\n"
                          "    tls: { certificates: [{ cert: ca.pem, key: vouch-ec.pem }] }\n"
                          "origins:\n";

static pc_config *load(const fixture *fx, const char *origins, const char *zones, char *err, size_t errlen)
{
    char *text;
    assert_true(asprintf(&text, "%s%szones:\n%s", head, origins, zones) > 0);
    pc_config *cfg = NULL;
    int rc = pc__config_load_buffer("conf.yaml", text, strlen(text), fx->dir, &cfg, err, errlen);
    free(text);
    return rc == 0 ? cfg : NULL;
}

static void test_config_access(void **state)
{
    fixture *fx = *state;
    char err[1024];
    const char *zone = "  - { name: z, hosts: [a.example], origin: o }\n";
    pc_config *cfg = load(fx,
                          "  - name: o\n"
                          "    servers: [\"127.0.0.1:1\"]\n"
                          "    access:\n"
                          "      grpc: mtls\n"
                          "      mtls: { ca: ca.pem }\n"
                          "      jwt: { jwks: jwks.json, issuer: i, audience: a }\n"
                          "      vouch: { key: vouch-rsa.pem, header: x-caller, ttl_s: 30 }\n",
                          zone, err, sizeof err);
    assert_non_null(cfg);
    assert_int_equal(cfg->nwarnings, 1);
    assert_string_equal(
        cfg->warnings[0],
        "origins[0] (o): access.jwt is set but not used (neither access.grpc nor access.http is jwt)");
    char expect[600];
    snprintf(expect, sizeof expect, "%s/ca.pem", cfg->dir);
    assert_string_equal(pc__access_mtls_ca(cfg->origins[0].access), expect);
    /* The typed policy: what the request path and the admin JWKS read. */
    const pc_access_policy *p = cfg->origins[0].access;
    assert_string_equal(p->origin, "o");
    assert_true(p->is_protected && p->grpc_set && p->strip);
    assert_int_equal(p->grpc, PC_ACCESS_MTLS);
    assert_true(p->has_jwt && !p->http_jwt && !p->has_tokens);
    assert_string_equal(p->jwt_header, "authorization");
    assert_int_equal(p->leeway_s, 60);
    assert_true(p->vouch && p->signer.alg == PC_ACCESS_RS256);
    assert_string_equal(p->vouch_header, "x-caller");
    assert_int_equal(p->vouch_ttl_s, 30);
    pc__config_free(cfg);

    /* The risky combination: gRPC on, protected, access.grpc never chosen. */
    cfg = load(fx, "  - { name: o, servers: [\"127.0.0.1:1\"], access: { protected: yes } }\n", zone, err,
               sizeof err);
    assert_non_null(cfg);
    assert_null(pc__access_mtls_ca(cfg->origins[0].access));
    assert_int_equal(cfg->origins[0].access->grpc, PC_ACCESS_DENY);
    assert_false(cfg->origins[0].access->grpc_set);
    assert_int_equal(cfg->nwarnings, 1);
    assert_string_equal(
        cfg->warnings[0],
        "zones[0] (z): grpc is on, but origin o is access-protected and its access.grpc is not set: "
        "gRPC calls to it are denied; set access.grpc on the origin (deny, mtls, service_token or "
        "jwt) or grpc: false on the zone");
    pc__config_free(cfg);
    cfg = load(fx, "  - { name: o, servers: [\"127.0.0.1:1\"], access: { protected: yes } }\n",
               "  - { name: z, hosts: [a.example], origin: o, grpc: false }\n", err, sizeof err);
    assert_non_null(cfg);
    assert_int_equal(cfg->nwarnings, 0);
    pc__config_free(cfg);

    static const struct {
        const char *access, *error;
    } bad[] = {
        {"{ grpc: mtls }", "conf.yaml:7:15: origins[0].access: grpc is mtls, so give mtls: {ca: FILE}"},
        {"{ grpc: mtls, mtls: {} }", "conf.yaml:7:27: origins[0].access.mtls: missing required key \"ca\""},
        {"{ grpc: mtls, mtls: { ca: nope.pem } }",
         "conf.yaml:7:35: origins[0].access.mtls.ca: cannot read \"nope.pem\""},
        {"{ grpc: mtls, mtls: { ca: leaf.pem } }", "origins[0].access.mtls.ca: "},
        {"{ grpc: allow }",
         "conf.yaml:7:15: origins[0].access.grpc: expected deny, mtls, service_token or jwt, got "
         "\"allow\""},
        {"{ http: login }", "origins[0].access.http: expected jwt"},
        {"{ http: jwt }", "origins[0].access: http is jwt, so give jwt:"},
        {"{ grpc: jwt, jwt: { jwks: jwks.json, audience: a } }",
         "origins[0].access.jwt: missing required key \"issuer\""},
        {"{ grpc: jwt, jwt: { jwks: tokens.yaml, issuer: i, audience: a } }", "origins[0].access.jwt.jwks: "},
        {"{ grpc: jwt, jwt: { jwks: jwks.json, issuer: i, audience: a, leeway_s: 7200 } }",
         "origins[0].access.jwt.leeway_s: must be between 0 and 3600"},
        {"{ grpc: service_token, service_token: { tokens_file: jwks.json } }",
         "origins[0].access.service_token.tokens_file: "},
        {"{ vouch: { key: weak.pem } }", "origins[0].access.vouch.key: "},
        {"{ vouch: { key: vouch-ec.pem, header: Te } }",
         "origins[0].access.vouch.header: expected a lower-case"},
        {"{ vouch: { key: vouch-ec.pem, header: grpc-x } }",
         "origins[0].access.vouch.header: expected a lower-case"},
        {"{ grpc: jwt, jwt: { jwks: jwks.json, issuer: i, audience: a, header: x-t }, vouch: { key: "
         "vouch-ec.pem, "
         "header: x-t } }",
         "origins[0].access.vouch.header: must differ from origins[0].access.jwt.header (x-t)"},
        {"{ protected: maybe }", "origins[0].access.protected: expected true or false"},
        {"{ allow: [a] }", "origins[0].access.allow: unknown key"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char origins[512];
        snprintf(origins, sizeof origins, "  - name: o\n    servers: [\"127.0.0.1:1\"]\n    access: %s\n",
                 bad[i].access);
        cfg = load(fx, origins, zone, err, sizeof err);
        if (cfg || !strstr(err, bad[i].error))
            fail_msg("%s: got %s, want %s", bad[i].access, err, bad[i].error);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_material),
        cmocka_unit_test(test_config_access),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
