/* A scratch directory for unit tests that load files (keys, token lists, JWKS): made under $TMPDIR,
 * filled with text or PEM keys, removed with everything in it. Header-only (static inline), included
 * after cmocka.h. */
#ifndef PC_TEST_TMPDIR_H
#define PC_TEST_TMPDIR_H

#include <ftw.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* dir (at least 256 bytes) becomes a new directory named after prefix; 0, or -1. */
static inline int tmpdir_make(char *dir, size_t len, const char *prefix)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, len, "%s/pc_%s_XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
    return mkdtemp(dir) ? 0 : -1;
}

static inline int tmpdir__remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The directory and everything in it; 0, or -1. */
static inline int tmpdir_remove(const char *dir)
{
    return nftw(dir, tmpdir__remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void tmpdir_path(const char *dir, const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", dir, name);
}

/* A file of the given text, at a path. */
static inline void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* dir/name holding text. */
static inline void tmpdir_write(const char *dir, const char *name, const char *text)
{
    char path[512];
    tmpdir_path(dir, name, path, sizeof path);
    write_text(path, text);
}

/* dir/name holding the private key k in PEM. */
static inline void tmpdir_write_key(const char *dir, const char *name, EVP_PKEY *k)
{
    char path[512];
    tmpdir_path(dir, name, path, sizeof path);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    assert_int_equal(fclose(f), 0);
}

#endif
