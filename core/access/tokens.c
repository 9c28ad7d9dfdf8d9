/* Service tokens: the tokens file (a YAML list of id + salted hash of the secret) and the check of
 * a presented secret. Secrets are never stored; a match is a KDF run plus a constant-time compare.
 * The file is read with the core's YAML tree, so its errors name file:line:col as the config's do. */
#include "tokens.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "yaml_tree.h"

#define MAX_TOKENS 10000
#define MAX_ID 256

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Exactly `want` bytes of hex (or, with want 0, 8 to max bytes). */
static int hex_decode(const char *s, size_t len, unsigned char *out, size_t max, size_t want, size_t *outlen)
{
    if (len % 2 || len / 2 > max || (want && len / 2 != want) || (!want && len / 2 < 8)) return -1;
    for (size_t i = 0; i < len / 2; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    *outlen = len / 2;
    return 0;
}

/* A decimal number in [min, max] followed by ':'; advances *p past the colon. */
static int number(const char **p, uint64_t min, uint64_t max, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    size_t n = 0;
    while (s[n] >= '0' && s[n] <= '9' && n < 12)
        v = v * 10 + (uint64_t)(s[n++] - '0');
    if (n == 0 || s[n] != ':' || v < min || v > max) return -1;
    *out = v;
    *p = s + n + 1;
    return 0;
}

/* "pbkdf2-sha256:ITERATIONS:HEX" or "scrypt:N:R:P:HEX"; bounds keep one check under about a second
 * and scrypt under 64 MiB. */
static const char *parse_hash(pc_access_token *t, const char *s)
{
    const char *p;
    size_t len;
    if (!strncmp(s, "pbkdf2-sha256:", 14)) {
        p = s + 14;
        t->kdf = PC_ACCESS_KDF_PBKDF2_SHA256;
        if (number(&p, 1000, 10000000, &t->iterations) < 0)
            return "pbkdf2-sha256 iterations must be 1000 to 10000000";
    } else if (!strncmp(s, "scrypt:", 7)) {
        p = s + 7;
        t->kdf = PC_ACCESS_KDF_SCRYPT;
        if (number(&p, 1024, 1 << 20, &t->n) < 0 || (t->n & (t->n - 1)) || number(&p, 1, 32, &t->r) < 0 ||
            number(&p, 1, 16, &t->p) < 0 || 128 * t->n * t->r > (64u << 20))
            return "scrypt needs N (a power of two, 1024 to 1048576), r (1-32), p (1-16), at most 64 MiB";
    } else {
        return "hash must start with pbkdf2-sha256: or scrypt:";
    }
    if (hex_decode(p, strlen(p), t->hash, sizeof t->hash, sizeof t->hash, &len) < 0)
        return "the digest must be 64 hex digits (32 bytes)";
    return NULL;
}

static int fail_at(char *err, size_t errlen, const char *path, const pc_yaml_node *n, const char *what)
{
    snprintf(err, errlen, "%s:%u:%u: %s", path, n ? n->line : 1, n ? n->col : 1, what);
    return -1;
}

/* One {id, salt, hash, name} map. Errors point at the key whose value is wrong. */
static int load_entry(char *err, size_t errlen, const char *path, const pc_yaml_node *e, pc_access_token *t)
{
    bool have_salt = false, have_hash = false;
    if (e->kind != PC_YAML_MAP) return fail_at(err, errlen, path, e, "expected one map per token");
    for (size_t k = 0; k < e->n; k++) {
        const char *key = e->keys[k]->scalar, *why = NULL;
        const pc_yaml_node *v = e->items[k];
        char buf[160];
        if (strcmp(key, "id") && strcmp(key, "salt") && strcmp(key, "hash") && strcmp(key, "name")) {
            snprintf(buf, sizeof buf, "unknown key \"%.40s\" (valid keys: id, salt, hash, name)", key);
            why = buf;
        } else if (v->kind != PC_YAML_SCALAR || v->scalar_len == 0 || strlen(v->scalar) != v->scalar_len) {
            snprintf(buf, sizeof buf, "%s: expected a non-empty string", key);
            why = buf;
        } else if (!strcmp(key, "id")) {
            if (v->scalar_len > MAX_ID)
                why = "id: at most 256 characters";
            else if (!(t->id = strdup(v->scalar)))
                why = "out of memory";
        } else if (!strcmp(key, "name")) {
            if (!(t->name = strdup(v->scalar))) why = "out of memory";
        } else if (!strcmp(key, "salt")) {
            if (hex_decode(v->scalar, v->scalar_len, t->salt, sizeof t->salt, 0, &t->saltlen) < 0)
                why = "salt: expected 16 to 128 hex digits";
            have_salt = true;
        } else if ((why = parse_hash(t, v->scalar))) {
            snprintf(buf, sizeof buf, "hash: %s", why);
            why = buf;
        } else {
            have_hash = true;
        }
        if (why) return fail_at(err, errlen, path, e->keys[k], why);
    }
    if (!t->id || !have_salt || !have_hash)
        return fail_at(err, errlen, path, e, "each token needs id, salt and hash");
    return 0;
}

int pc__access_tokens_load(const char *path, pc_access_tokens *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    pc_yaml_doc *doc = pc__yaml_load_file(path, err, errlen);
    if (!doc) return -1;
    const pc_yaml_node *root = doc->root;
    int rc = 0;
    if (!root || root->kind != PC_YAML_SEQ)
        rc = fail_at(err, errlen, path, root, "expected a list of tokens");
    else if (root->n == 0)
        rc = fail_at(err, errlen, path, root, "no tokens listed");
    else if (root->n > MAX_TOKENS)
        rc = fail_at(err, errlen, path, root->items[MAX_TOKENS], "too many tokens (at most 10000)");
    else if (!(out->t = calloc(root->n, sizeof *out->t)))
        rc = fail_at(err, errlen, path, root, "out of memory");
    for (size_t i = 0; rc == 0 && i < root->n; i++) {
        out->n++;
        rc = load_entry(err, errlen, path, root->items[i], &out->t[i]);
        for (size_t j = 0; rc == 0 && j < i; j++)
            if (!strcmp(out->t[j].id, out->t[i].id))
                rc = fail_at(err, errlen, path, root->items[i], "id is listed twice");
    }
    pc__yaml_free(doc);
    if (rc < 0) pc__access_tokens_free(out);
    return rc;
}

void pc__access_tokens_free(pc_access_tokens *ts)
{
    for (size_t i = 0; i < ts->n; i++) {
        free(ts->t[i].id);
        free(ts->t[i].name);
        OPENSSL_cleanse(ts->t[i].hash, sizeof ts->t[i].hash);
    }
    free(ts->t);
    memset(ts, 0, sizeof *ts);
}

const pc_access_token *pc__access_tokens_find(const pc_access_tokens *ts, const char *id)
{
    for (size_t i = 0; i < ts->n; i++)
        if (!strcmp(ts->t[i].id, id)) return &ts->t[i];
    return NULL;
}

int pc__access_token_matches(const pc_access_token *t, const char *secret, size_t len)
{
    unsigned char out[32];
    int ok;
    if (t->kdf == PC_ACCESS_KDF_PBKDF2_SHA256)
        ok = PKCS5_PBKDF2_HMAC(secret, (int)len, t->salt, (int)t->saltlen, (int)t->iterations, EVP_sha256(),
                               sizeof out, out) == 1;
    else
        ok = EVP_PBE_scrypt(secret, len, t->salt, t->saltlen, t->n, t->r, t->p,
                            128 * t->n * t->r * t->p + (1 << 20), out, sizeof out) == 1;
    ok = ok && CRYPTO_memcmp(out, t->hash, sizeof out) == 0;
    OPENSSL_cleanse(out, sizeof out);
    return ok;
}
