/* The access policy's service tokens (core/access/tokens.c): the tokens file (hash formats, errors with
 * their positions) and the check of a secret (PBKDF2 and scrypt). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tmpdir.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access/tokens.h"

typedef struct fixture {
    char dir[256];
} fixture;

static void path_in(const fixture *fx, const char *name, char *out, size_t len)
{
    tmpdir_path(fx->dir, name, out, len);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (tmpdir_make(fx->dir, sizeof fx->dir, "tokens") < 0) return -1;
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

static void test_tokens(void **state)
{
    fixture *fx = *state;
    char path[512], err[512], text[1024], hex[65];
    unsigned char salt[16], hash[32];
    const char *secret = "s3cret";
    RAND_bytes(salt, sizeof salt);
    assert_int_equal(PKCS5_PBKDF2_HMAC(secret, 6, salt, sizeof salt, 1000, EVP_sha256(), 32, hash), 1);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", hash[i]);
    char salthex[33];
    for (int i = 0; i < 16; i++)
        snprintf(salthex + 2 * i, 3, "%02x", salt[i]);
    snprintf(text, sizeof text,
             "# tokens\n- id: svc-a\n  name: reports\n  salt: \"%s\"\n  hash: \"pbkdf2-sha256:1000:%s\"\n"
             "- {id: svc-b, salt: \"00112233445566778899aabbccddeeff\", hash: \"scrypt:1024:8:1:%s\"}\n",
             salthex, hex, hex);
    path_in(fx, "tokens.yaml", path, sizeof path);
    write_text(path, text);
    pc_access_tokens ts;
    assert_int_equal(pc__access_tokens_load(path, &ts, err, sizeof err), 0);
    assert_int_equal(ts.n, 2);
    const pc_access_token *a = pc__access_tokens_find(&ts, "svc-a");
    assert_non_null(a);
    assert_string_equal(a->name, "reports");
    assert_true(pc__access_token_matches(a, secret, 6));
    assert_false(pc__access_token_matches(a, "s3creT", 6));
    assert_false(pc__access_token_matches(a, secret, 5));
    const pc_access_token *b = pc__access_tokens_find(&ts, "svc-b");
    assert_int_equal(b->kdf, PC_ACCESS_KDF_SCRYPT);
    assert_false(pc__access_token_matches(b, secret, 6));
    assert_null(pc__access_tokens_find(&ts, "svc-c"));
    pc__access_tokens_free(&ts);

    static const struct {
        const char *text, *why;
    } bad[] = {
        {"id: x\n", ":1:1: expected a list of tokens"},
        {"[]\n", "no tokens listed"},
        {"- {id: a, salt: \"0011223344556677\"}\n", ":1:3: each token needs id, salt and hash"},
        {"- {id: a, salt: \"00\", hash: x}\n", ":1:11: salt: expected 16 to 128 hex digits"},
        {"- id: a\n  salt: \"0011223344556677\"\n  hash: \"md5:00\"\n", ":3:3: hash: hash must start with"},
        {"- {id: a, salt: \"0011223344556677\", hash: \"pbkdf2-sha256:10:00\"}\n", "iterations must be 1000"},
        {"- {id: a, salt: \"0011223344556677\", hash: \"scrypt:1000:8:1:00\"}\n", "a power of two"},
        {"- {id: a, salt: \"0011223344556677\", hash: \"pbkdf2-sha256:1000:0011\"}\n", "64 hex digits"},
        {"- {id: a, secret: y, salt: \"0011223344556677\"}\n", ":1:11: unknown key \"secret\""},
        {"- [a]\n", ":1:3: expected one map per token"},
        {"- {id: [a]}\n", "id: expected a non-empty string"},
        {"- {id: a\n", "YAML"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(path, bad[i].text);
        assert_int_equal(pc__access_tokens_load(path, &ts, err, sizeof err), -1);
        if (!strstr(err, bad[i].why) && !(strstr(bad[i].why, "YAML") && strstr(err, path)))
            fail_msg("%s -> %s (want %s)", bad[i].text, err, bad[i].why);
    }
    snprintf(text, sizeof text,
             "- {id: a, salt: \"0011223344556677\", hash: \"pbkdf2-sha256:1000:%s\"}\n"
             "- {id: a, salt: \"0011223344556677\", hash: \"pbkdf2-sha256:1000:%s\"}\n",
             hex, hex);
    write_text(path, text);
    assert_int_equal(pc__access_tokens_load(path, &ts, err, sizeof err), -1);
    assert_non_null(strstr(err, ":2:3: id is listed twice"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
