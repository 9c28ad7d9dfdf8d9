/* Service tokens: the tokens file (a YAML list of id + salted hash of the secret) and the check of
 * a presented secret. Secrets are never stored; a match is a KDF run plus a constant-time compare. */
#include "access.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

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
static const char *parse_hash(acc_token *t, const char *s)
{
    const char *p;
    size_t len;
    if (!strncmp(s, "pbkdf2-sha256:", 14)) {
        p = s + 14;
        t->kdf = ACC_KDF_PBKDF2_SHA256;
        if (number(&p, 1000, 10000000, &t->iterations) < 0)
            return "pbkdf2-sha256 iterations must be 1000 to 10000000";
    } else if (!strncmp(s, "scrypt:", 7)) {
        p = s + 7;
        t->kdf = ACC_KDF_SCRYPT;
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

typedef struct loader {
    yaml_parser_t parser;
    const char *path;
    char *err;
    size_t errlen;
} loader;

static int fail_at(loader *l, const yaml_event_t *ev, const char *what)
{
    snprintf(l->err, l->errlen, "%s:%zu:%zu: %s", l->path, ev ? ev->start_mark.line + 1 : 0,
             ev ? ev->start_mark.column + 1 : 0, what);
    return -1;
}

static int next(loader *l, yaml_event_t *ev)
{
    if (yaml_parser_parse(&l->parser, ev)) return 0;
    snprintf(l->err, l->errlen, "%s:%zu:%zu: %s", l->path, l->parser.problem_mark.line + 1,
             l->parser.problem_mark.column + 1, l->parser.problem ? l->parser.problem : "YAML syntax error");
    return -1;
}

/* One {id, salt, hash, name} map; the MAPPING_START event was read. */
static int load_entry(loader *l, acc_token *t, const yaml_event_t *start)
{
    bool have_salt = false, have_hash = false;
    for (;;) {
        yaml_event_t k, v;
        if (next(l, &k) < 0) return -1;
        if (k.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&k);
            break;
        }
        if (k.type != YAML_SCALAR_EVENT) {
            int rc = fail_at(l, &k, "expected keys id, salt, hash and name");
            yaml_event_delete(&k);
            return rc;
        }
        if (next(l, &v) < 0) {
            yaml_event_delete(&k);
            return -1;
        }
        const char *key = (const char *)k.data.scalar.value, *val = (const char *)v.data.scalar.value;
        const char *why = NULL;
        size_t vlen = v.type == YAML_SCALAR_EVENT ? v.data.scalar.length : 0;
        char buf[160];
        if (v.type != YAML_SCALAR_EVENT || vlen == 0 || strlen(val) != vlen) {
            snprintf(buf, sizeof buf, "%s: expected a non-empty string", key);
            why = buf;
        } else if (!strcmp(key, "id")) {
            if (vlen > MAX_ID)
                why = "id: at most 256 characters";
            else if (!t->id && !(t->id = strdup(val)))
                why = "out of memory";
        } else if (!strcmp(key, "name")) {
            if (!t->name && !(t->name = strdup(val))) why = "out of memory";
        } else if (!strcmp(key, "salt")) {
            if (hex_decode(val, vlen, t->salt, sizeof t->salt, 0, &t->saltlen) < 0)
                why = "salt: expected 16 to 128 hex digits";
            have_salt = true;
        } else if (!strcmp(key, "hash")) {
            if ((why = parse_hash(t, val))) {
                snprintf(buf, sizeof buf, "hash: %s", why);
                why = buf;
            }
            have_hash = true;
        } else {
            snprintf(buf, sizeof buf, "unknown key \"%.40s\" (valid keys: id, salt, hash, name)", key);
            why = buf;
        }
        int rc = why ? fail_at(l, &k, why) : 0;
        yaml_event_delete(&k);
        yaml_event_delete(&v);
        if (rc < 0) return -1;
    }
    if (!t->id || !have_salt || !have_hash) return fail_at(l, start, "each token needs id, salt and hash");
    return 0;
}

int acc_tokens_load(const char *path, acc_tokens *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return -1;
    }
    loader l = {.path = path, .err = err, .errlen = errlen};
    yaml_parser_initialize(&l.parser);
    yaml_parser_set_input_file(&l.parser, f);
    yaml_event_t ev;
    int rc = -1, state = 0; /* 0 before the list, 1 in it, 2 after it */
    while (next(&l, &ev) == 0) {
        yaml_event_type_t type = ev.type;
        if (type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            if (state == 2)
                rc = 0;
            else if (state == 0)
                fail_at(&l, NULL, "expected a list of tokens");
            break;
        }
        int bad = 0;
        if (type == YAML_SEQUENCE_START_EVENT && state == 0) {
            state = 1;
        } else if (type == YAML_SEQUENCE_END_EVENT && state == 1) {
            state = 2;
        } else if (type == YAML_MAPPING_START_EVENT && state == 1) {
            acc_token *t = out->n < MAX_TOKENS ? realloc(out->t, (out->n + 1) * sizeof *t) : NULL;
            if (!t) {
                bad = fail_at(&l, &ev, "too many tokens (at most 10000)");
            } else {
                out->t = t;
                memset(&t[out->n], 0, sizeof *t);
                out->n++;
                bad = load_entry(&l, &t[out->n - 1], &ev);
                for (size_t i = 0; !bad && i + 1 < out->n; i++)
                    if (!strcmp(t[i].id, t[out->n - 1].id)) bad = fail_at(&l, &ev, "id is listed twice");
            }
        } else if (type != YAML_STREAM_START_EVENT && type != YAML_DOCUMENT_START_EVENT &&
                   type != YAML_DOCUMENT_END_EVENT) {
            bad = fail_at(&l, &ev, state == 0 ? "expected a list of tokens" : "expected one map per token");
        }
        yaml_event_delete(&ev);
        if (bad) break;
    }
    yaml_parser_delete(&l.parser);
    fclose(f);
    if (rc == 0 && out->n == 0) rc = fail_at(&l, NULL, "no tokens listed");
    if (rc < 0) acc_tokens_free(out);
    return rc;
}

void acc_tokens_free(acc_tokens *ts)
{
    for (size_t i = 0; i < ts->n; i++) {
        free(ts->t[i].id);
        free(ts->t[i].name);
        OPENSSL_cleanse(ts->t[i].hash, sizeof ts->t[i].hash);
    }
    free(ts->t);
    memset(ts, 0, sizeof *ts);
}

const acc_token *acc_tokens_find(const acc_tokens *ts, const char *id)
{
    for (size_t i = 0; i < ts->n; i++)
        if (!strcmp(ts->t[i].id, id)) return &ts->t[i];
    return NULL;
}

int acc_token_matches(const acc_token *t, const char *secret, size_t len)
{
    unsigned char out[32];
    int ok;
    if (t->kdf == ACC_KDF_PBKDF2_SHA256)
        ok = PKCS5_PBKDF2_HMAC(secret, (int)len, t->salt, (int)t->saltlen, (int)t->iterations, EVP_sha256(),
                               sizeof out, out) == 1;
    else
        ok = EVP_PBE_scrypt(secret, len, t->salt, t->saltlen, t->n, t->r, t->p,
                            128 * t->n * t->r * t->p + (1 << 20), out, sizeof out) == 1;
    ok = ok && CRYPTO_memcmp(out, t->hash, sizeof out) == 0;
    OPENSSL_cleanse(out, sizeof out);
    return ok;
}
