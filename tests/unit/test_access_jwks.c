/* The edge's signing keys and the JWKS the admin listener serves (core/access/jwks.c): which keys are
 * accepted, their key ids (RFC 7638 thumbprints, the ones the edge puts in the tokens it signs), and
 * the published set across reloads (one key listed once, the previous generation kept). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tmpdir.h"

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access/policy.h"
#include "config.h"

typedef struct fixture {
    char dir[256];
} fixture;

static void path_in(const fixture *fx, const char *name, char *out, size_t len)
{
    tmpdir_path(fx->dir, name, out, len);
}

static void write_key(const fixture *fx, const char *name, EVP_PKEY *k)
{
    tmpdir_write_key(fx->dir, name, k);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (tmpdir_make(fx->dir, sizeof fx->dir, "jwks") < 0) return -1;
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    write_key(fx, "vouch-ec.pem", k);
    EVP_PKEY_free(k);
    k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    write_key(fx, "vouch-rsa.pem", k);
    EVP_PKEY_free(k);
    char path[512];
    path_in(fx, "jwks.json", path, sizeof path);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs("{\"keys\": []}\n", f);
    fclose(f);
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

static void test_signer_kinds(void **state)
{
    fixture *fx = *state;
    char path[512], err[512];
    pc_access_signer s;
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    write_key(fx, "p384.pem", k);
    EVP_PKEY_free(k);
    path_in(fx, "p384.pem", path, sizeof path);
    assert_int_equal(pc__access_signer_load(path, &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "expected an RSA key of 2048 bits or more, or an EC P-256 key"));
    path_in(fx, "jwks.json", path, sizeof path);
    assert_int_equal(pc__access_signer_load(path, &s, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a PEM private key"));
    /* kid: RFC 7638 thumbprint, 43 base64url characters */
    const char *const good[] = {"vouch-rsa.pem", "vouch-ec.pem"};
    for (size_t i = 0; i < 2; i++) {
        path_in(fx, good[i], path, sizeof path);
        assert_int_equal(pc__access_signer_load(path, &s, err, sizeof err), 0);
        assert_int_equal(strlen(s.kid), 43);
        assert_int_equal(s.alg, i ? PC_ACCESS_ES256 : PC_ACCESS_RS256);
        pc__access_signer_free(&s);
    }
}

/* The keys the published set holds now, by kid, in order; the first one's alg. */
static void expect_kids(const char *a, const char *alg, const char *b)
{
    char *doc = pc__access_jwks_render();
    struct json_object *o = json_tokener_parse(doc), *keys = json_object_object_get(o, "keys");
    assert_int_equal(json_object_array_length(keys), b ? 2 : 1);
    for (size_t i = 0; i < (b ? 2u : 1u); i++) {
        struct json_object *k = json_object_array_get_idx(keys, i);
        assert_string_equal(json_object_get_string(json_object_object_get(k, "kid")), i ? b : a);
        assert_string_equal(json_object_get_string(json_object_object_get(k, "use")), "sig");
        if (i == 0) assert_string_equal(json_object_get_string(json_object_object_get(k, "alg")), alg);
        assert_null(json_object_object_get(k, "d"));
    }
    json_object_put(o);
    free(doc);
}

static void test_jwks_rotation(void **state)
{
    fixture *fx = *state;
    char err[1024], path[512];
    struct pc_access_policy o = {.vouch = true}, p = {.vouch = true};
    pc_origin_conf origins[] = {{.name = "o", .access = &o}, {.name = "p", .access = &p}};
    pc_config cfg = {.origins = origins, .norigins = 2};
    path_in(fx, "vouch-ec.pem", path, sizeof path);
    assert_int_equal(pc__access_signer_load(path, &o.signer, err, sizeof err), 0);
    assert_int_equal(pc__access_signer_load(path, &p.signer, err, sizeof err), 0);

    /* Two origins share the EC key: listed once, with the kid the edge signs with. */
    assert_int_equal(pc__access_jwks_update(&cfg, err, sizeof err), 0);
    expect_kids(o.signer.kid, "ES256", NULL);
    /* The same set again (check, or a reload without key changes) keeps nothing else around. */
    assert_int_equal(pc__access_jwks_update(&cfg, err, sizeof err), 0);
    expect_kids(o.signer.kid, "ES256", NULL);

    /* A reload to the RSA key: the EC key stays published for tokens already out there. */
    char ec_kid[sizeof o.signer.kid];
    memcpy(ec_kid, o.signer.kid, sizeof ec_kid);
    pc__access_signer_free(&o.signer);
    pc__access_signer_free(&p.signer);
    path_in(fx, "vouch-rsa.pem", path, sizeof path);
    assert_int_equal(pc__access_signer_load(path, &o.signer, err, sizeof err), 0);
    origins[1].access = NULL;
    assert_int_equal(pc__access_jwks_update(&cfg, err, sizeof err), 0);
    expect_kids(o.signer.kid, "RS256", ec_kid);
    pc__access_signer_free(&o.signer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signer_kinds),
        cmocka_unit_test(test_jwks_rotation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
