/* Access policies at config load (core/access_check.c and the access part of config.c) and the edge's
 * JWKS (core/jwks.c): material checks, errors with their positions, the warnings, and key ids that
 * match what the access plugin puts in the tokens it signs (plugins/access/jwt.c, included). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../plugins/access/jwt.c"
#include "access_check.h"
#include "config.h"
#include "jwks.h"

typedef struct fixture {
    char dir[256];
} fixture;

static void path_in(const fixture *fx, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", fx->dir, name);
}

static void write_file(const fixture *fx, const char *name, const char *text)
{
    char path[512];
    path_in(fx, name, path, sizeof path);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void write_key(const fixture *fx, const char *name, EVP_PKEY *k)
{
    char path[512];
    path_in(fx, name, path, sizeof path);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
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
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/pc_acccheck_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fx->dir)) return -1;
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
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    int rc = system(cmd);
    free(fx);
    return rc;
}

static void test_material(void **state)
{
    fixture *fx = *state;
    char path[512], err[768];
    path_in(fx, "ca.pem", path, sizeof path);
    assert_int_equal(pc__access_check_ca(path, err, sizeof err), 0);
    path_in(fx, "leaf.pem", path, sizeof path);
    assert_int_equal(pc__access_check_ca(path, err, sizeof err), -1);
    assert_non_null(strstr(err, "certificate 1 (/CN=leaf.pem) is not a CA certificate"));
    path_in(fx, "jwks.json", path, sizeof path);
    assert_int_equal(pc__access_check_ca(path, err, sizeof err), -1);
    assert_non_null(strstr(err, "no PEM certificate found"));
    assert_int_equal(pc__access_check_jwks(path, err, sizeof err), 0);
    path_in(fx, "tokens.yaml", path, sizeof path);
    assert_int_equal(pc__access_check_tokens(path, err, sizeof err), 0);
    assert_int_equal(pc__access_check_jwks(path, err, sizeof err), -1);
    assert_non_null(strstr(err, "expected a JSON Web Key Set"));
    path_in(fx, "vouch-ec.pem", path, sizeof path);
    assert_int_equal(pc__access_check_signing_key(path, err, sizeof err), 0);
    assert_int_equal(pc__access_check_tokens(path, err, sizeof err), -1);
    path_in(fx, "weak.pem", path, sizeof path);
    assert_int_equal(pc__access_check_signing_key(path, err, sizeof err), -1);
    assert_non_null(strstr(err, "expected an RSA key of 2048 bits or more"));
    path_in(fx, "missing.pem", path, sizeof path);
    assert_int_equal(pc__access_check_signing_key(path, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open"));

    write_file(fx, "t2.yaml",
               "- {id: a, salt: \"0011223344556677\", hash: \"scrypt:1024:8:1:00\"}\n"
               "- {id: b, name: [x]}\n");
    path_in(fx, "t2.yaml", path, sizeof path);
    assert_int_equal(pc__access_check_tokens(path, err, sizeof err), -1);
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
    char *ca = pc__access_mtls_ca(cfg, &cfg->origins[0]), expect[600];
    snprintf(expect, sizeof expect, "%s/ca.pem", cfg->dir);
    assert_string_equal(ca, expect);
    free(ca);
    pc__config_free(cfg);

    /* The risky combination: gRPC on, protected, access.grpc never chosen. */
    cfg = load(fx, "  - { name: o, servers: [\"127.0.0.1:1\"], access: { protected: yes } }\n", zone, err,
               sizeof err);
    assert_non_null(cfg);
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

static void test_jwks_rotation(void **state)
{
    fixture *fx = *state;
    char err[1024], path[512];
    acc_signer ec, rsa;
    path_in(fx, "vouch-ec.pem", path, sizeof path);
    assert_int_equal(acc_signer_load(path, &ec, err, sizeof err), 0);
    path_in(fx, "vouch-rsa.pem", path, sizeof path);
    assert_int_equal(acc_signer_load(path, &rsa, err, sizeof err), 0);

    /* Two origins share the EC key: listed once, with the kid the plugin signs with. */
    const char *zones =
        "  - { name: z, hosts: [a.example], origin: o }\n  - { name: y, hosts: [b.example], origin: p }\n";
    pc_config *cfg = load(
        fx,
        "  - { name: o, servers: [\"127.0.0.1:1\"], access: { grpc: deny, vouch: { key: vouch-ec.pem } } }\n"
        "  - { name: p, servers: [\"127.0.0.1:1\"], access: { grpc: deny, vouch: { key: vouch-ec.pem } } }\n",
        zones, err, sizeof err);
    assert_non_null(cfg);
    assert_int_equal(pc__jwks_update(cfg, err, sizeof err), 0);
    char *doc = pc__jwks_render();
    struct json_object *o = json_tokener_parse(doc), *keys = json_object_object_get(o, "keys");
    assert_int_equal(json_object_array_length(keys), 1);
    struct json_object *k = json_object_array_get_idx(keys, 0);
    assert_string_equal(json_object_get_string(json_object_object_get(k, "kid")), ec.kid);
    assert_string_equal(json_object_get_string(json_object_object_get(k, "alg")), "ES256");
    assert_null(json_object_object_get(k, "d"));
    json_object_put(o);
    free(doc);
    /* The same set again (check, or a reload without key changes) keeps nothing else around. */
    assert_int_equal(pc__jwks_update(cfg, err, sizeof err), 0);
    pc__config_free(cfg);

    /* A reload to the RSA key: the EC key stays published for tokens already out there. */
    cfg = load(
        fx,
        "  - { name: o, servers: [\"127.0.0.1:1\"], access: { grpc: deny, vouch: { key: vouch-rsa.pem } } }\n"
        "  - { name: p, servers: [\"127.0.0.1:1\"] }\n",
        zones, err, sizeof err);
    assert_non_null(cfg);
    assert_int_equal(pc__jwks_update(cfg, err, sizeof err), 0);
    doc = pc__jwks_render();
    o = json_tokener_parse(doc);
    keys = json_object_object_get(o, "keys");
    assert_int_equal(json_object_array_length(keys), 2);
    assert_string_equal(
        json_object_get_string(json_object_object_get(json_object_array_get_idx(keys, 0), "kid")), rsa.kid);
    assert_string_equal(
        json_object_get_string(json_object_object_get(json_object_array_get_idx(keys, 1), "kid")), ec.kid);
    json_object_put(o);
    free(doc);
    pc__config_free(cfg);
    acc_signer_free(&ec);
    acc_signer_free(&rsa);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_material),
        cmocka_unit_test(test_config_access),
        cmocka_unit_test(test_jwks_rotation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
