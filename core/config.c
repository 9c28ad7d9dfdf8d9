/* The typed configuration: walks the YAML tree, checks every key and value against the schema, resolves
 * relative paths and origin references, and answers which zone serves a host. Every error names
 * file:line:col and the key path, because the operator has to find and fix it. An origin's `access`
 * map is the access module's section (core/access/policy.c), read with these same primitives
 * (config_reader.h). */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/policy.h"
#include "config_reader.h"
#include "version.h"

#define PATHLEN PC_CFG_PATHLEN
#define MAX_MS 86400000u /* a day: anything longer is a typo */

typedef struct pc_config_reader {
    pc_config *cfg;
    const char *file;
    char *err;
    size_t errlen;
    bool origins_keyed; /* origins written as a map keyed by name rather than a list */
    bool zones_keyed;
    const pc_yaml_node *root;
} ctx;

static int fail(ctx *c, const pc_yaml_node *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int warn(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The key a value belongs to, if any. Only used on the error path, so a walk of the tree is fine. */
static const pc_yaml_node *key_of(const pc_yaml_node *tree, const pc_yaml_node *value)
{
    if (!tree || tree->kind == PC_YAML_SCALAR) return NULL;
    for (size_t i = 0; i < tree->n; i++) {
        if (tree->kind == PC_YAML_MAP && tree->items[i] == value) return tree->keys[i];
        const pc_yaml_node *k = key_of(tree->items[i], value);
        if (k) return k;
    }
    return NULL;
}

/* Errors about a map value point at its key: the value may be empty, or a list or map spanning many
 * lines, and "key: ..." is what the operator searches for. */
static int vfail(ctx *c, const pc_yaml_node *at, const char *fmt, va_list ap)
{
    if (!c->err || !c->errlen) return -1;
    const pc_yaml_node *key = at ? key_of(c->root, at) : NULL;
    if (key) at = key;
    int n = snprintf(c->err, c->errlen, "%s:%u:%u: ", c->file, at ? at->line : 1, at ? at->col : 1);
    if (n < 0 || (size_t)n >= c->errlen) return -1;
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    return -1;
}

static int fail(ctx *c, const pc_yaml_node *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(c, at, fmt, ap);
    va_end(ap);
    return -1;
}

static int oom(ctx *c, const pc_yaml_node *at)
{
    return fail(c, at, "out of memory");
}

static int vwarn(ctx *c, const char *fmt, va_list ap)
{
    pc_config *cfg = c->cfg;
    char **w = realloc(cfg->warnings, (cfg->nwarnings + 1) * sizeof *w);
    if (!w) return oom(c, NULL);
    cfg->warnings = w;
    if (vasprintf(&w[cfg->nwarnings], fmt, ap) < 0) return oom(c, NULL);
    cfg->nwarnings++;
    return 0;
}

static int warn(ctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vwarn(c, fmt, ap);
    va_end(ap);
    return rc;
}

static const char *show(char *out, size_t outlen, const char *s, size_t len)
{
    return pc__yaml_quote(out, outlen, s, len);
}

/* A key as part of a path: bare when it is a simple word, quoted otherwise. */
static const char *keyname(char *out, size_t outlen, const char *s, size_t len)
{
    if (len == 0 || len > 64) return show(out, outlen, s, len);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '-' || ch == '.'))
            return show(out, outlen, s, len);
    }
    snprintf(out, outlen, "%.*s", (int)len, s);
    return out;
}

static bool is_null(const pc_yaml_node *n)
{
    return n->kind == PC_YAML_SCALAR && !n->quoted &&
           (n->scalar_len == 0 || !strcmp(n->scalar, "~") || !strcmp(n->scalar, "null") ||
            !strcmp(n->scalar, "Null") || !strcmp(n->scalar, "NULL"));
}

static const char *describe(char *out, size_t outlen, const pc_yaml_node *n)
{
    if (n->kind == PC_YAML_MAP) return "a map";
    if (n->kind == PC_YAML_SEQ) return "a list";
    if (is_null(n)) return "nothing";
    return show(out, outlen, n->scalar, n->scalar_len);
}

/* Key paths only appear in messages, so one cut at PATHLEN is acceptable; mark it so it shows. */
static void cut(char *out, int n)
{
    if (n >= PATHLEN) memcpy(out + PATHLEN - 4, "...", 4);
}

static void join(char *out, const char *base, const char *key)
{
    cut(out, snprintf(out, PATHLEN, "%s%s%s", base, *base ? "." : "", key));
}

static void joini(char *out, const char *base, size_t i)
{
    cut(out, snprintf(out, PATHLEN, "%s[%zu]", base, i));
}

static int want(ctx *c, const pc_yaml_node *n, pc_yaml_kind kind, const char *path)
{
    if (n->kind == kind) return 0;
    char d[128];
    return fail(c, n, "%s: expected %s, got %s", path,
                kind == PC_YAML_MAP   ? "a map"
                : kind == PC_YAML_SEQ ? "a list"
                                      : "a single value",
                describe(d, sizeof d, n));
}

/* Unknown keys are errors: a misspelt key silently ignored is a setting the operator thinks is on. */
static int check_keys(ctx *c, const pc_yaml_node *map, const char *path, const char *const *valid)
{
    for (size_t i = 0; i < map->n; i++) {
        const pc_yaml_node *k = map->keys[i];
        size_t v = 0;
        while (valid[v] && (strlen(valid[v]) != k->scalar_len || memcmp(valid[v], k->scalar, k->scalar_len)))
            v++;
        if (valid[v]) continue;
        char list[512] = "", kp[PATHLEN], kn[128];
        size_t o = 0;
        for (v = 0; valid[v] && o < sizeof list; v++)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", v ? ", " : "", valid[v]);
        join(kp, path, keyname(kn, sizeof kn, k->scalar, k->scalar_len));
        return fail(c, k, "%s: unknown key (valid keys: %s)", kp, list);
    }
    return 0;
}

static const pc_yaml_node *required(ctx *c, const pc_yaml_node *map, const char *path, const char *key)
{
    const pc_yaml_node *n = pc__yaml_get(map, key);
    if (!n) {
        if (*path)
            fail(c, map, "%s: missing required key \"%s\"", path, key);
        else
            fail(c, map, "missing required key \"%s\"", key);
    }
    return n;
}

/* A non-empty string without control characters (they only ever come from mistakes or attacks). */
static int get_str(ctx *c, const pc_yaml_node *n, const char *path, const char **out)
{
    char d[128];
    if (n->kind != PC_YAML_SCALAR || is_null(n))
        return fail(c, n, "%s: expected a string, got %s", path, describe(d, sizeof d, n));
    if (n->scalar_len == 0) return fail(c, n, "%s: expected a non-empty string", path);
    for (size_t i = 0; i < n->scalar_len; i++) {
        unsigned char ch = (unsigned char)n->scalar[i];
        if (ch < 0x20 || ch == 0x7f)
            return fail(c, n, "%s: control characters are not allowed, got %s", path,
                        show(d, sizeof d, n->scalar, n->scalar_len));
    }
    *out = n->scalar;
    return 0;
}

static int dup_str(ctx *c, const pc_yaml_node *n, const char *path, char **out)
{
    const char *s;
    if (get_str(c, n, path, &s) < 0) return -1;
    if (!(*out = strdup(s))) return oom(c, n);
    return 0;
}

/* Plain decimal only: YAML 1.1 would read 010 as octal and 0x10 as hex, so neither is accepted. */
static int get_uint(ctx *c, const pc_yaml_node *n, const char *path, const char *unit, uint64_t min,
                    uint64_t max, uint64_t *out)
{
    char d[128];
    bool digits = n->kind == PC_YAML_SCALAR && n->scalar_len > 0 && n->scalar_len <= 20 &&
                  (n->scalar[0] != '0' || n->scalar_len == 1);
    for (size_t i = 0; digits && i < n->scalar_len; i++)
        digits = n->scalar[i] >= '0' && n->scalar[i] <= '9';
    if (!digits || n->quoted)
        return fail(c, n, "%s: expected a whole number%s, got %s%s", path, unit, describe(d, sizeof d, n),
                    digits ? " (remove the quotes)" : "");
    uint64_t v = 0;
    bool over = false;
    for (size_t i = 0; i < n->scalar_len; i++) {
        unsigned dig = (unsigned)(n->scalar[i] - '0');
        if (v > (UINT64_MAX - dig) / 10) over = true;
        v = v * 10 + dig;
    }
    if (over || v < min || v > max)
        return fail(c, n, "%s: must be between %llu and %llu, got %s", path, (unsigned long long)min,
                    (unsigned long long)max, n->scalar);
    *out = v;
    return 0;
}

static int opt_u32(ctx *c, const pc_yaml_node *map, const char *path, const char *key, const char *unit,
                   uint32_t min, uint32_t max, uint32_t *out)
{
    const pc_yaml_node *n = pc__yaml_get(map, key);
    if (!n) return 0;
    char kp[PATHLEN];
    uint64_t v;
    join(kp, path, key);
    if (get_uint(c, n, kp, unit, min, max, &v) < 0) return -1;
    *out = (uint32_t)v;
    return 0;
}

static bool word_is(const pc_yaml_node *n, const char *w)
{
    return strlen(w) == n->scalar_len && strncasecmp(n->scalar, w, n->scalar_len) == 0;
}

static int opt_bool(ctx *c, const pc_yaml_node *map, const char *path, const char *key, bool *out)
{
    const pc_yaml_node *n = pc__yaml_get(map, key);
    if (!n) return 0;
    if (n->kind == PC_YAML_SCALAR && !n->quoted) {
        if (word_is(n, "true") || word_is(n, "yes") || word_is(n, "on")) {
            *out = true;
            return 0;
        }
        if (word_is(n, "false") || word_is(n, "no") || word_is(n, "off")) {
            *out = false;
            return 0;
        }
    }
    char kp[PATHLEN], d[128];
    join(kp, path, key);
    return fail(c, n, "%s: expected true or false, got %s", kp, describe(d, sizeof d, n));
}

char *pc__config_path(const pc_config *cfg, const char *written)
{
    char *out;
    if (written[0] == '/') return strdup(written);
    return asprintf(&out, "%s/%s", cfg->dir, written) < 0 ? NULL : out;
}

static int resolve(ctx *c, const pc_yaml_node *n, const char *written, char **out)
{
    *out = pc__config_path(c->cfg, written);
    return *out ? 0 : oom(c, n);
}

/* A path to a file that must exist and be readable now, so a typo fails `check`, not the first handshake. */
static int get_file(ctx *c, const pc_yaml_node *n, const char *path, char **out)
{
    const char *written;
    if (get_str(c, n, path, &written) < 0 || resolve(c, n, written, out) < 0) return -1;
    const char *why = NULL;
    struct stat st;
    if (stat(*out, &st) != 0 || access(*out, R_OK) != 0)
        why = strerror(errno);
    else if (S_ISDIR(st.st_mode))
        why = "it is a directory";
    if (!why) return 0;
    char d[128];
    show(d, sizeof d, written, strlen(written));
    if (written[0] == '/') return fail(c, n, "%s: cannot read %s: %s", path, d, why);
    return fail(c, n, "%s: cannot read %s (%s): %s", path, d, *out, why);
}

/* ---- the same primitives for the modules that own a section (config_reader.h) ---- */

const pc_config *pc__cfg_config(const pc_config_reader *rd)
{
    return rd->cfg;
}

int pc__cfg_fail(pc_config_reader *rd, const pc_yaml_node *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(rd, at, fmt, ap);
    va_end(ap);
    return -1;
}

int pc__cfg_warn(pc_config_reader *rd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vwarn(rd, fmt, ap);
    va_end(ap);
    return rc;
}

void pc__cfg_join(char *out, const char *base, const char *key)
{
    join(out, base, key);
}

int pc__cfg_want(pc_config_reader *rd, const pc_yaml_node *n, pc_yaml_kind kind, const char *path)
{
    return want(rd, n, kind, path);
}

int pc__cfg_check_keys(pc_config_reader *rd, const pc_yaml_node *map, const char *path,
                       const char *const *valid)
{
    return check_keys(rd, map, path, valid);
}

const pc_yaml_node *pc__cfg_required(pc_config_reader *rd, const pc_yaml_node *map, const char *path,
                                     const char *key)
{
    return required(rd, map, path, key);
}

int pc__cfg_str(pc_config_reader *rd, const pc_yaml_node *n, const char *path, const char **out)
{
    return get_str(rd, n, path, out);
}

int pc__cfg_bool(pc_config_reader *rd, const pc_yaml_node *map, const char *path, const char *key, bool *out)
{
    return opt_bool(rd, map, path, key, out);
}

int pc__cfg_u32(pc_config_reader *rd, const pc_yaml_node *map, const char *path, const char *key,
                const char *unit, uint32_t min, uint32_t max, uint32_t *out)
{
    return opt_u32(rd, map, path, key, unit, min, max, out);
}

int pc__cfg_file(pc_config_reader *rd, const pc_yaml_node *n, const char *path, char **out)
{
    return get_file(rd, n, path, out);
}

static int parse_port(const char *s, uint16_t *port)
{
    size_t len = strlen(s);
    if (len == 0 || len > 5 || s[0] == '0') return -1;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v < 1 || v > 65535) return -1;
    *port = (uint16_t)v;
    return 0;
}

/* Letters, digits, '-', '_' and dots between non-empty labels; no trailing dot, since hosts are matched
 * exactly as clients send them. */
static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || len > 253) return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '.') {
            if (label == 0) return false;
            label = 0;
            continue;
        }
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
              ch == '_'))
            return false;
        if (++label > 63) return false;
    }
    return label > 0;
}

static bool valid_v6(const char *s, size_t len)
{
    char tmp[64];
    struct in6_addr a6;
    if (len == 0 || len >= sizeof tmp) return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    return inet_pton(AF_INET6, tmp, &a6) == 1;
}

/* Splits "host:port" or "[v6]:port". Returns the host span, or -1 when the shape is wrong. */
static int split_hostport(const char *s, const char **host, size_t *hlen, const char **port, bool *v6)
{
    *v6 = s[0] == '[';
    if (*v6) {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return -1;
        *host = s + 1;
        *hlen = (size_t)(close - s - 1);
        *port = close + 2;
        return valid_v6(*host, *hlen) ? 0 : -1;
    }
    const char *colon = strrchr(s, ':');
    if (!colon || memchr(s, ':', (size_t)(colon - s))) return -1;
    *host = s;
    *hlen = (size_t)(colon - s);
    *port = colon + 1;
    return *hlen ? 0 : -1;
}

static bool is_loopback(const char *host)
{
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    return strcmp(host, "::1") == 0;
}

/* l->address -> numeric l->host and l->port. */
static int parse_listen_address(ctx *c, const pc_yaml_node *an, const char *kp, pc_listen_conf *l)
{
    const char *host, *port;
    size_t hlen;
    bool v6;
    unsigned char bin[16];
    char tmp[64], d[128];
    int ok = split_hostport(l->address, &host, &hlen, &port, &v6) == 0 && hlen < sizeof tmp;
    if (ok) {
        memcpy(tmp, host, hlen);
        tmp[hlen] = '\0';
        ok = inet_pton(v6 ? AF_INET6 : AF_INET, tmp, bin) == 1;
    }
    if (!ok)
        return fail(c, an, "%s: expected \"a.b.c.d:port\" or \"[ipv6]:port\", got %s", kp,
                    show(d, sizeof d, l->address, strlen(l->address)));
    if (parse_port(port, &l->port) < 0)
        return fail(c, an, "%s: the port must be a number from 1 to 65535, got %s", kp,
                    show(d, sizeof d, l->address, strlen(l->address)));
    inet_ntop(v6 ? AF_INET6 : AF_INET, bin, l->host, sizeof l->host);
    return 0;
}

static int load_listener(ctx *c, pc_listen_conf *l, size_t i, const pc_yaml_node *item)
{
    static const char *const keys[] = {"address", "tls", NULL};
    static const char *const tls_keys[] = {"certificates", NULL};
    static const char *const cert_keys[] = {"cert", "key", NULL};
    char path[PATHLEN], kp[PATHLEN], d[128];
    joini(path, "listen", i);
    if (want(c, item, PC_YAML_MAP, path) < 0 || check_keys(c, item, path, keys) < 0) return -1;
    const pc_yaml_node *an = required(c, item, path, "address");
    join(kp, path, "address");
    if (!an || dup_str(c, an, kp, &l->address) < 0) return -1;

    if (parse_listen_address(c, an, kp, l) < 0) return -1;
    for (size_t j = 0; j < i; j++) {
        const pc_listen_conf *o = &c->cfg->listen[j];
        if (o->port == l->port && !strcmp(o->host, l->host))
            return fail(c, an, "%s: %s is already used by listen[%zu]", kp,
                        show(d, sizeof d, l->address, strlen(l->address)), j);
    }

    const pc_yaml_node *tls = pc__yaml_get(item, "tls");
    if (tls) {
        char tp[PATHLEN];
        join(tp, path, "tls");
        if (want(c, tls, PC_YAML_MAP, tp) < 0 || check_keys(c, tls, tp, tls_keys) < 0) return -1;
        const pc_yaml_node *certs = required(c, tls, tp, "certificates");
        join(kp, tp, "certificates");
        if (!certs || want(c, certs, PC_YAML_SEQ, kp) < 0) return -1;
        if (certs->n == 0) return fail(c, certs, "%s: expected at least one certificate", kp);
        if (!(l->certs = calloc(certs->n, sizeof *l->certs))) return oom(c, certs);
        l->ncerts = certs->n;
        l->tls = true;
        for (size_t k = 0; k < certs->n; k++) {
            const pc_yaml_node *e = certs->items[k], *cn, *kn;
            char ep[PATHLEN], fp[PATHLEN];
            joini(ep, kp, k);
            if (want(c, e, PC_YAML_MAP, ep) < 0 || check_keys(c, e, ep, cert_keys) < 0) return -1;
            if (!(cn = required(c, e, ep, "cert")) || !(kn = required(c, e, ep, "key"))) return -1;
            join(fp, ep, "cert");
            if (get_file(c, cn, fp, &l->certs[k].cert) < 0) return -1;
            join(fp, ep, "key");
            if (get_file(c, kn, fp, &l->certs[k].key) < 0) return -1;
        }
    } else if (!is_loopback(l->host)) {
        return warn(c, "%s (%s): no tls: cleartext HTTP/2 on a non-loopback address", path, l->address);
    }
    return 0;
}

static int load_listen(ctx *c, const pc_yaml_node *seq)
{
    if (want(c, seq, PC_YAML_SEQ, "listen") < 0) return -1;
    if (seq->n == 0) return fail(c, seq, "listen: expected at least one listener");
    if (!(c->cfg->listen = calloc(seq->n, sizeof *c->cfg->listen))) return oom(c, seq);
    c->cfg->nlisten = seq->n;
    for (size_t i = 0; i < seq->n; i++)
        if (load_listener(c, &c->cfg->listen[i], i, seq->items[i]) < 0) return -1;
    return 0;
}

/* Origins and zones may be written as a list of maps with a `name`, or as a map keyed by name. */
typedef struct entry {
    const pc_yaml_node *map;  /* the entry's settings */
    const pc_yaml_node *name; /* where the name was written */
    char path[PATHLEN];       /* "origins[1]" or "origins.billing" */
} entry;

static void entry_path(char *out, const char *section, bool keyed, size_t i, const char *name)
{
    char kn[128];
    if (keyed)
        join(out, section, keyname(kn, sizeof kn, name, strlen(name)));
    else
        joini(out, section, i);
}

/* Where warnings point: the index alone does not tell the operator which entry it is. */
static void entry_label(char *out, const char *section, bool keyed, size_t i, const char *name)
{
    char kn[128];
    if (keyed)
        join(out, section, keyname(kn, sizeof kn, name, strlen(name)));
    else
        snprintf(out, PATHLEN, "%s[%zu] (%s)", section, i, name);
}

static int section(ctx *c, const pc_yaml_node *n, const char *name, const char *what, bool *keyed)
{
    char d[128];
    if (n->kind == PC_YAML_SCALAR)
        return fail(c, n, "%s: expected a list, got %s", name, describe(d, sizeof d, n));
    if (n->n == 0) return fail(c, n, "%s: expected at least one %s", name, what);
    *keyed = n->kind == PC_YAML_MAP;
    return 0;
}

/* keys[0] is "name", valid only in the list form. Fills e and *name (a copy). */
static int get_entry(ctx *c, const pc_yaml_node *sec, const char *secname, bool keyed, size_t i,
                     const char *const *keys, entry *e, char **name)
{
    char kp[PATHLEN];
    if (keyed) {
        e->name = sec->keys[i];
        e->map = sec->items[i];
        if (dup_str(c, e->name, secname, name) < 0) return -1;
        entry_path(e->path, secname, true, i, *name);
        return want(c, e->map, PC_YAML_MAP, e->path) < 0 || check_keys(c, e->map, e->path, keys + 1) < 0 ? -1
                                                                                                         : 0;
    }
    e->map = sec->items[i];
    joini(e->path, secname, i);
    if (want(c, e->map, PC_YAML_MAP, e->path) < 0 || check_keys(c, e->map, e->path, keys) < 0) return -1;
    if (!(e->name = required(c, e->map, e->path, "name"))) return -1;
    join(kp, e->path, "name");
    return dup_str(c, e->name, kp, name);
}

/* Every zone that lets gRPC reach an access-protected origin: the access module says whether that is
 * risky for the origin's policy, with this zone's label. */
static int access_zone_warnings(ctx *c)
{
    const pc_config *cfg = c->cfg;
    for (size_t z = 0; z < cfg->nzones; z++) {
        const pc_zone_conf *zone = &cfg->zones[z];
        const pc_origin_conf *o = &cfg->origins[zone->origin_index];
        if (!zone->grpc || !o->access) continue;
        char label[PATHLEN];
        entry_label(label, "zones", c->zones_keyed, z, zone->name);
        if (pc__access_zone_warning(c, o->access, label) < 0) return -1;
    }
    return 0;
}

static int load_origin(ctx *c, pc_origin_conf *o, size_t i, const pc_yaml_node *sec)
{
    static const char *const keys[] = {
        "name",        "servers", "tls", "connect_timeout_ms", "max_connections", "max_pending",
        "cooldown_ms", "access",  NULL};
    static const char *const tls_keys[] = {"verify", "ca", "sni", NULL};
    entry e;
    char kp[PATHLEN], d[128];
    if (get_entry(c, sec, "origins", c->origins_keyed, i, keys, &e, &o->name) < 0) return -1;
    for (size_t j = 0; !c->origins_keyed && j < i; j++)
        if (!strcmp(c->cfg->origins[j].name, o->name))
            return fail(c, e.name, "%s.name: %s is already used by origins[%zu]", e.path,
                        show(d, sizeof d, o->name, strlen(o->name)), j);

    const pc_yaml_node *sv = required(c, e.map, e.path, "servers");
    join(kp, e.path, "servers");
    if (!sv || want(c, sv, PC_YAML_SEQ, kp) < 0) return -1;
    if (sv->n == 0) return fail(c, sv, "%s: expected at least one server", kp);
    if (!(o->servers = calloc(sv->n, sizeof *o->servers))) return oom(c, sv);
    o->nservers = sv->n;
    for (size_t k = 0; k < sv->n; k++) {
        char ip[PATHLEN];
        const char *s, *host, *port;
        size_t hlen;
        bool v6;
        joini(ip, kp, k);
        if (get_str(c, sv->items[k], ip, &s) < 0) return -1;
        if (split_hostport(s, &host, &hlen, &port, &v6) < 0 || (!v6 && !valid_name(host, hlen)))
            return fail(c, sv->items[k], "%s: expected \"host:port\", got %s", ip,
                        show(d, sizeof d, s, strlen(s)));
        if (parse_port(port, &o->servers[k].port) < 0)
            return fail(c, sv->items[k], "%s: the port must be a number from 1 to 65535, got %s", ip,
                        show(d, sizeof d, s, strlen(s)));
        if (!(o->servers[k].host = strndup(host, hlen))) return oom(c, sv->items[k]);
    }

    o->tls_verify = true;
    o->connect_timeout_ms = 2000;
    o->max_connections = 4;
    o->max_pending = 1024;
    o->cooldown_ms = 5000;
    const pc_yaml_node *tls = pc__yaml_get(e.map, "tls");
    if (tls) {
        join(kp, e.path, "tls");
        if (want(c, tls, PC_YAML_MAP, kp) < 0 || check_keys(c, tls, kp, tls_keys) < 0) return -1;
        o->tls = true;
        if (opt_bool(c, tls, kp, "verify", &o->tls_verify) < 0) return -1;
        const pc_yaml_node *n;
        char fp[PATHLEN];
        if ((n = pc__yaml_get(tls, "ca"))) {
            join(fp, kp, "ca");
            if (get_file(c, n, fp, &o->tls_ca) < 0) return -1;
        }
        if ((n = pc__yaml_get(tls, "sni"))) {
            join(fp, kp, "sni");
            if (dup_str(c, n, fp, &o->tls_sni) < 0) return -1;
            if (!valid_name(o->tls_sni, strlen(o->tls_sni)))
                return fail(c, n, "%s: expected a host name, got %s", fp,
                            show(d, sizeof d, o->tls_sni, strlen(o->tls_sni)));
        }
    }
    if (opt_u32(c, e.map, e.path, "connect_timeout_ms", " of milliseconds", 1, MAX_MS,
                &o->connect_timeout_ms) < 0 ||
        opt_u32(c, e.map, e.path, "max_connections", "", 1, 1024, &o->max_connections) < 0 ||
        opt_u32(c, e.map, e.path, "max_pending", "", 0, 1u << 20, &o->max_pending) < 0 ||
        opt_u32(c, e.map, e.path, "cooldown_ms", " of milliseconds", 0, MAX_MS, &o->cooldown_ms) < 0)
        return -1;
    /* The access policy is the access module's section: it parses and checks the map (material
     * included) once, and the typed result serves check, the TLS setup and the request path. */
    const pc_yaml_node *acc = pc__yaml_get(e.map, "access");
    if (acc) {
        char label[PATHLEN];
        join(kp, e.path, "access");
        entry_label(label, "origins", c->origins_keyed, i, o->name);
        if (pc__access_policy_load(c, acc, kp, label, o->name, &o->access) < 0) return -1;
    }
    if (o->tls && !o->tls_verify) {
        char label[PATHLEN];
        entry_label(label, "origins", c->origins_keyed, i, o->name);
        return warn(c, "%s: tls.verify is false: the origin's certificate is not checked", label);
    }
    return 0;
}

static int load_origins(ctx *c, const pc_yaml_node *sec)
{
    if (section(c, sec, "origins", "origin", &c->origins_keyed) < 0) return -1;
    if (!(c->cfg->origins = calloc(sec->n, sizeof *c->cfg->origins))) return oom(c, sec);
    c->cfg->norigins = sec->n;
    for (size_t i = 0; i < sec->n; i++)
        if (load_origin(c, &c->cfg->origins[i], i, sec) < 0) return -1;
    return 0;
}

/* Lower-cases in place and checks the shape: a name, a bracketed IPv6 literal, or "*." and a name. */
static const char *check_host(char *h)
{
    size_t len = strlen(h);
    for (size_t i = 0; i < len; i++)
        if (h[i] >= 'A' && h[i] <= 'Z') h[i] = (char)(h[i] - 'A' + 'a');
    if (h[0] == '[')
        return len > 2 && h[len - 1] == ']' && valid_v6(h + 1, len - 2) ? NULL : "expected a host name";
    const char *name = h;
    if (h[0] == '*' && h[1] == '.') name += 2;
    if (strchr(name, '*')) return "\"*\" is only allowed as a leading \"*.\" label";
    return valid_name(name, strlen(name)) ? NULL : "expected a host name";
}

/* A web origin as browsers send it in `Origin`: scheme "://" host [":" port], nothing after. */
static bool valid_web_origin(const char *o)
{
    const char *h = !strncmp(o, "https://", 8) ? o + 8 : !strncmp(o, "http://", 7) ? o + 7 : NULL;
    if (!h || !*h) return false;
    for (; *h; h++)
        if (!((*h >= 'a' && *h <= 'z') || (*h >= '0' && *h <= '9') || strchr(".-:[]", *h))) return false;
    return true;
}

/* A list of header names, joined with ", " for the CORS answers. */
static int header_list(ctx *c, const pc_yaml_node *map, const char *path, const char *key, char **out)
{
    const pc_yaml_node *n = pc__yaml_get(map, key);
    if (!n) return 0;
    char kp[PATHLEN], hp[PATHLEN], d[128];
    join(kp, path, key);
    if (want(c, n, PC_YAML_SEQ, kp) < 0) return -1;
    size_t len = 1;
    for (size_t k = 0; k < n->n; k++) {
        const char *v;
        joini(hp, kp, k);
        if (get_str(c, n->items[k], hp, &v) < 0) return -1;
        for (const char *p = v; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                  strchr("-_.", *p)))
                return fail(c, n->items[k], "%s: expected a header name, got %s", hp,
                            show(d, sizeof d, v, strlen(v)));
        len += strlen(v) + 2;
    }
    if (n->n == 0) return 0;
    if (!(*out = calloc(1, len))) return oom(c, n);
    char *o = *out;
    for (size_t k = 0; k < n->n; k++) {
        if (k) {
            *o++ = ',';
            *o++ = ' ';
        }
        for (const char *p = n->items[k]->scalar; *p; p++) /* lower case, as HTTP/2 sends names */
            *o++ = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
    }
    *o = '\0';
    return 0;
}

static int load_cors(ctx *c, pc_cors_conf *cors, const pc_yaml_node *map, const char *path)
{
    static const char *const keys[] = {"origins",       "max_age_s",         "expose_headers",
                                       "allow_headers", "allow_credentials", NULL};
    char kp[PATHLEN], hp[PATHLEN], d[128];
    if (want(c, map, PC_YAML_MAP, path) < 0 || check_keys(c, map, path, keys) < 0) return -1;
    cors->on = true;
    cors->max_age_s = 600;
    const pc_yaml_node *os = required(c, map, path, "origins");
    join(kp, path, "origins");
    if (!os || want(c, os, PC_YAML_SEQ, kp) < 0) return -1;
    if (os->n == 0) return fail(c, os, "%s: expected at least one origin (or \"*\")", kp);
    if (!(cors->origins = calloc(os->n, sizeof *cors->origins))) return oom(c, os);
    for (size_t k = 0; k < os->n; k++) {
        joini(hp, kp, k);
        if (dup_str(c, os->items[k], hp, &cors->origins[k]) < 0) return -1;
        cors->norigins++;
        char *o = cors->origins[k];
        for (char *p = o; *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p = (char)(*p + 32);
        size_t ol = strlen(o);
        if (ol > 8 && o[ol - 1] == '/') o[--ol] = '\0'; /* "https://app.example/" as often written */
        if (strcmp(o, "*") && !valid_web_origin(o))
            return fail(c, os->items[k],
                        "%s: expected \"*\" or an origin like https://app.example.com, got %s", hp,
                        show(d, sizeof d, o, ol));
    }
    if (opt_u32(c, map, path, "max_age_s", " of seconds", 0, 86400, &cors->max_age_s) < 0 ||
        header_list(c, map, path, "expose_headers", &cors->expose_headers) < 0 ||
        header_list(c, map, path, "allow_headers", &cors->allow_headers) < 0 ||
        opt_bool(c, map, path, "allow_credentials", &cors->allow_credentials) < 0)
        return -1;
    if (cors->allow_credentials)
        for (size_t k = 0; k < cors->norigins; k++)
            if (!strcmp(cors->origins[k], "*"))
                return fail(c, os->items[k],
                            "%s[%zu]: \"*\" cannot be used with allow_credentials: true "
                            "(browsers refuse it); list the origins",
                            kp, k);
    return 0;
}

static int load_zone(ctx *c, pc_zone_conf *z, size_t i, const pc_yaml_node *sec)
{
    static const char *const keys[] = {
        "name", "hosts", "origin", "grpc", "grpc_web", "cors", "max_message_bytes", "plugins", NULL};
    entry e;
    char kp[PATHLEN], d[128];
    if (get_entry(c, sec, "zones", c->zones_keyed, i, keys, &e, &z->name) < 0) return -1;
    for (size_t j = 0; !c->zones_keyed && j < i; j++)
        if (!strcmp(c->cfg->zones[j].name, z->name))
            return fail(c, e.name, "%s.name: %s is already used by zones[%zu]", e.path,
                        show(d, sizeof d, z->name, strlen(z->name)), j);

    const pc_yaml_node *hs = required(c, e.map, e.path, "hosts");
    join(kp, e.path, "hosts");
    if (!hs || want(c, hs, PC_YAML_SEQ, kp) < 0) return -1;
    if (hs->n == 0) return fail(c, hs, "%s: expected at least one host", kp);
    if (!(z->hosts = calloc(hs->n, sizeof *z->hosts))) return oom(c, hs);
    z->nhosts = hs->n;
    for (size_t k = 0; k < hs->n; k++) {
        char hp[PATHLEN];
        joini(hp, kp, k);
        if (dup_str(c, hs->items[k], hp, &z->hosts[k]) < 0) return -1;
        const char *why = check_host(z->hosts[k]);
        if (why)
            return fail(c, hs->items[k], "%s: %s, got %s", hp, why,
                        show(d, sizeof d, hs->items[k]->scalar, hs->items[k]->scalar_len));
    }

    const pc_yaml_node *on = required(c, e.map, e.path, "origin");
    join(kp, e.path, "origin");
    if (!on || dup_str(c, on, kp, &z->origin) < 0) return -1;
    size_t oi = 0;
    while (oi < c->cfg->norigins && strcmp(c->cfg->origins[oi].name, z->origin))
        oi++;
    if (oi == c->cfg->norigins) {
        char list[256] = "";
        size_t o = 0;
        for (size_t j = 0; j < c->cfg->norigins && o < sizeof list; j++)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", j ? ", " : "", c->cfg->origins[j].name);
        return fail(c, on, "%s: no origin is named %s (origins: %s)", kp,
                    show(d, sizeof d, z->origin, strlen(z->origin)), list);
    }
    z->origin_index = oi;

    z->grpc = true;
    z->max_message_bytes = 4194304;
    const pc_yaml_node *n = pc__yaml_get(e.map, "max_message_bytes");
    if (n) {
        join(kp, e.path, "max_message_bytes");
        if (get_uint(c, n, kp, " of bytes", 1, 1u << 30, &z->max_message_bytes) < 0) return -1;
    }
    if (opt_bool(c, e.map, e.path, "grpc", &z->grpc) < 0) return -1;
    if (opt_bool(c, e.map, e.path, "grpc_web", &z->grpc_web) < 0) return -1;
    if ((n = pc__yaml_get(e.map, "cors"))) {
        join(kp, e.path, "cors");
        if (load_cors(c, &z->cors, n, kp) < 0) return -1;
    }
    /* The zone's own chain: names of plugins from the top-level list, checked when they load. */
    if ((n = pc__yaml_get(e.map, "plugins"))) {
        join(kp, e.path, "plugins");
        if (want(c, n, PC_YAML_SEQ, kp) < 0) return -1;
        z->has_plugins = true;
        if (n->n && (!(z->plugins = calloc(n->n, sizeof *z->plugins)) ||
                     !(z->plugin_nodes = calloc(n->n, sizeof *z->plugin_nodes))))
            return oom(c, n);
        for (size_t k = 0; k < n->n; k++) {
            char hp[PATHLEN];
            joini(hp, kp, k);
            if (dup_str(c, n->items[k], hp, &z->plugins[k]) < 0) return -1;
            z->plugin_nodes[k] = n->items[k];
            z->nplugins++;
        }
    }
    return 0;
}

typedef struct host_ref {
    const char *host;
    size_t zone, idx;
} host_ref;

static int host_ref_cmp(const void *a, const void *b)
{
    const host_ref *x = a, *y = b;
    int r = strcmp(x->host, y->host);
    if (r) return r;
    if (x->zone != y->zone) return x->zone < y->zone ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* A host in two zones would make routing depend on file order, so it is refused. Sorting keeps this
 * O(n log n) for configs with many hosts; the duplicate reported is the first one in the file. */
static int check_host_overlap(ctx *c, const pc_yaml_node *sec)
{
    const pc_config *cfg = c->cfg;
    size_t total = 0;
    for (size_t z = 0; z < cfg->nzones; z++)
        total += cfg->zones[z].nhosts;
    host_ref *refs = malloc(total * sizeof *refs);
    if (!refs) return oom(c, sec);
    size_t n = 0;
    for (size_t z = 0; z < cfg->nzones; z++)
        for (size_t k = 0; k < cfg->zones[z].nhosts; k++)
            refs[n++] = (host_ref){cfg->zones[z].hosts[k], z, k};
    qsort(refs, n, sizeof *refs, host_ref_cmp);
    const host_ref *dup = NULL, *first = NULL;
    size_t run = 0;
    for (size_t i = 1; i < n; i++) {
        if (strcmp(refs[i - 1].host, refs[i].host)) {
            run = i;
            continue;
        }
        if (!dup || refs[i].zone < dup->zone || (refs[i].zone == dup->zone && refs[i].idx < dup->idx)) {
            dup = &refs[i];
            first = &refs[run];
        }
    }
    int rc = 0;
    if (dup) {
        const pc_zone_conf *zd = &cfg->zones[dup->zone], *zf = &cfg->zones[first->zone];
        /* Both forms keep each zone's settings map in items[]. */
        const pc_yaml_node *hn = pc__yaml_get(sec->items[dup->zone], "hosts")->items[dup->idx];
        char path[PATHLEN], d[128], a[128], b[128];
        entry_path(path, "zones", c->zones_keyed, dup->zone, zd->name);
        show(d, sizeof d, dup->host, strlen(dup->host));
        if (first->zone == dup->zone)
            rc = fail(c, hn, "%s.hosts[%zu]: %s is listed twice in zone %s", path, dup->idx, d,
                      show(a, sizeof a, zd->name, strlen(zd->name)));
        else
            rc = fail(c, hn, "%s.hosts[%zu]: %s is in both zone %s and zone %s", path, dup->idx, d,
                      show(a, sizeof a, zf->name, strlen(zf->name)),
                      show(b, sizeof b, zd->name, strlen(zd->name)));
    }
    free(refs);
    return rc;
}

static int load_zones(ctx *c, const pc_yaml_node *sec)
{
    if (section(c, sec, "zones", "zone", &c->zones_keyed) < 0) return -1;
    if (!(c->cfg->zones = calloc(sec->n, sizeof *c->cfg->zones))) return oom(c, sec);
    c->cfg->nzones = sec->n;
    for (size_t i = 0; i < sec->n; i++)
        if (load_zone(c, &c->cfg->zones[i], i, sec) < 0) return -1;
    return check_host_overlap(c, sec);
}

static int load_log(ctx *c, const pc_yaml_node *map)
{
    static const char *const keys[] = {"access", "level", NULL};
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    if (want(c, map, PC_YAML_MAP, "log") < 0 || check_keys(c, map, "log", keys) < 0) return -1;
    const pc_yaml_node *n;
    const char *s;
    char d[128];
    if ((n = pc__yaml_get(map, "access"))) {
        if (get_str(c, n, "log.access", &s) < 0) return -1;
        char *v;
        if (!strcmp(s, "stdout") || !strcmp(s, "stderr") || !strcmp(s, "off")) {
            if (!(v = strdup(s))) return oom(c, n);
        } else if (resolve(c, n, s, &v) < 0) {
            return -1;
        }
        free(c->cfg->log.access);
        c->cfg->log.access = v;
    }
    if ((n = pc__yaml_get(map, "level"))) {
        if (get_str(c, n, "log.level", &s) < 0) return -1;
        int lv = 0;
        while (lv < 4 && strcmp(s, levels[lv]))
            lv++;
        if (lv == 4)
            return fail(c, n, "log.level: expected one of error, warn, info, debug, got %s",
                        show(d, sizeof d, s, strlen(s)));
        c->cfg->log.level = lv;
    }
    return 0;
}

static int load_limits(ctx *c, const pc_yaml_node *map)
{
    static const char *const keys[] = {"max_concurrent_streams",
                                       "max_header_list_bytes",
                                       "stream_window_bytes",
                                       "connection_window_bytes",
                                       "handshake_timeout_ms",
                                       "header_timeout_ms",
                                       "idle_timeout_ms",
                                       "send_timeout_ms",
                                       "glitch_limit",
                                       "max_connections_per_client",
                                       "max_held_bytes_per_client",
                                       NULL};
    pc_limits_conf *l = &c->cfg->limits;
    const char *p = "limits", *ms = " of milliseconds", *by = " of bytes";
    if (want(c, map, PC_YAML_MAP, p) < 0 || check_keys(c, map, p, keys) < 0) return -1;
    if (opt_u32(c, map, p, "max_concurrent_streams", "", 1, 1000000, &l->max_concurrent_streams) < 0 ||
        opt_u32(c, map, p, "max_header_list_bytes", by, 1024, 16u << 20, &l->max_header_list_bytes) < 0 ||
        opt_u32(c, map, p, "stream_window_bytes", by, 65535, INT32_MAX, &l->stream_window_bytes) < 0 ||
        opt_u32(c, map, p, "connection_window_bytes", by, 65535, INT32_MAX, &l->connection_window_bytes) <
            0 ||
        opt_u32(c, map, p, "handshake_timeout_ms", ms, 1, MAX_MS, &l->handshake_timeout_ms) < 0 ||
        opt_u32(c, map, p, "header_timeout_ms", ms, 1, MAX_MS, &l->header_timeout_ms) < 0 ||
        opt_u32(c, map, p, "idle_timeout_ms", ms, 1, MAX_MS, &l->idle_timeout_ms) < 0 ||
        opt_u32(c, map, p, "send_timeout_ms", ms, 1, MAX_MS, &l->send_timeout_ms) < 0 ||
        opt_u32(c, map, p, "glitch_limit", "", 0, 1000000, &l->glitch_limit) < 0 ||
        opt_u32(c, map, p, "max_connections_per_client", "", 0, 1000000, &l->max_connections_per_client) <
            0 ||
        opt_u32(c, map, p, "max_held_bytes_per_client", by, 0, UINT32_MAX, &l->max_held_bytes_per_client) < 0)
        return -1;
    return 0;
}

static int load_plugins(ctx *c, const pc_yaml_node *sec)
{
    static const char *const keys[] = {"name", "path", "config", "on_error", NULL};
    pc_config *cfg = c->cfg;
    if (want(c, sec, PC_YAML_SEQ, "plugins") < 0) return -1;
    if (sec->n && !(cfg->plugins = calloc(sec->n, sizeof *cfg->plugins))) return oom(c, sec);
    for (size_t i = 0; i < sec->n; i++) {
        const pc_yaml_node *m = sec->items[i];
        pc_plugin_conf *p = &cfg->plugins[i];
        char path[PATHLEN], kp[PATHLEN];
        joini(path, "plugins", i);
        cfg->nplugins++;
        p->node = m;
        if (want(c, m, PC_YAML_MAP, path) < 0 || check_keys(c, m, path, keys) < 0) return -1;
        const pc_yaml_node *nn = pc__yaml_get(m, "name"), *pn = pc__yaml_get(m, "path");
        if (!!nn == !!pn)
            return fail(c, m, "%s: give exactly one of name (a plugin in plugin_dir) or path", path);
        if (nn) {
            join(kp, path, "name");
            if (dup_str(c, nn, kp, &p->name) < 0) return -1;
            for (const char *ch = p->name; *ch; ch++)
                if (!((*ch >= 'a' && *ch <= 'z') || (*ch >= '0' && *ch <= '9') || *ch == '_' || *ch == '-'))
                    return fail(c, nn, "%s: plugin names are lower-case letters, digits, '-' and '_'", kp);
        } else {
            join(kp, path, "path");
            if (get_file(c, pn, kp, &p->path) < 0) return -1;
        }
        p->config = pc__yaml_get(m, "config");
        const pc_yaml_node *oe = pc__yaml_get(m, "on_error");
        if (oe) {
            join(kp, path, "on_error");
            const char *v;
            if (get_str(c, oe, kp, &v) < 0) return -1;
            if (!strcmp(v, "continue"))
                p->on_error_continue = true;
            else if (strcmp(v, "deny"))
                return fail(c, oe, "%s: expected deny or continue, got \"%s\"", kp, v);
        }
    }
    return 0;
}

static int load_descriptors(ctx *c, const pc_yaml_node *sec)
{
    pc_config *cfg = c->cfg;
    if (want(c, sec, PC_YAML_SEQ, "descriptors") < 0) return -1;
    if (sec->n && !(cfg->descriptors = calloc(sec->n, sizeof *cfg->descriptors))) return oom(c, sec);
    for (size_t i = 0; i < sec->n; i++) {
        char kp[PATHLEN];
        joini(kp, "descriptors", i);
        if (get_file(c, sec->items[i], kp, &cfg->descriptors[i]) < 0) return -1;
        cfg->ndescriptors++;
    }
    return 0;
}

static int load_admin(ctx *c, const pc_yaml_node *map)
{
    static const char *const keys[] = {"address", NULL};
    if (want(c, map, PC_YAML_MAP, "admin") < 0 || check_keys(c, map, "admin", keys) < 0) return -1;
    const pc_yaml_node *n = required(c, map, "admin", "address");
    if (!n || dup_str(c, n, "admin.address", &c->cfg->admin_address) < 0) return -1;
    pc_listen_conf tmp = {.address = c->cfg->admin_address};
    if (parse_listen_address(c, n, "admin.address", &tmp) < 0) return -1;
    memcpy(c->cfg->admin_host, tmp.host, sizeof tmp.host);
    c->cfg->admin_port = tmp.port;
    return 0;
}

static int load_root(ctx *c, const pc_yaml_node *root)
{
    static const char *const keys[] = {"workers", "listen",           "origins",     "zones",
                                       "log",     "limits",           "plugin_dir",  "plugins",
                                       "admin",   "drain_timeout_ms", "descriptors", NULL};
    pc_config *cfg = c->cfg;
    char d[128];
    if (!root) return fail(c, NULL, "the configuration is empty");
    if (root->kind != PC_YAML_MAP)
        return fail(c, root, "expected a map at the top level, got %s", describe(d, sizeof d, root));
    if (check_keys(c, root, "", keys) < 0) return -1;
    if (opt_u32(c, root, "", "workers", "", 0, 1024, &cfg->workers) < 0) return -1;
    const pc_yaml_node *n;
    if (!(n = required(c, root, "", "listen")) || load_listen(c, n) < 0) return -1;
    if (!(n = required(c, root, "", "origins")) || load_origins(c, n) < 0) return -1;
    if (!(n = required(c, root, "", "zones")) || load_zones(c, n) < 0) return -1;
    if ((n = pc__yaml_get(root, "log")) && load_log(c, n) < 0) return -1;
    if ((n = pc__yaml_get(root, "limits")) && load_limits(c, n) < 0) return -1;
    if ((n = pc__yaml_get(root, "plugin_dir"))) {
        const char *s;
        free(cfg->plugin_dir);
        cfg->plugin_dir = NULL;
        if (get_str(c, n, "plugin_dir", &s) < 0 || resolve(c, n, s, &cfg->plugin_dir) < 0) return -1;
        cfg->plugin_dir_set = true;
    }
    if ((n = pc__yaml_get(root, "plugins")) && load_plugins(c, n) < 0) return -1;
    if ((n = pc__yaml_get(root, "descriptors")) && load_descriptors(c, n) < 0) return -1;
    /* Reserved for features not built yet: the shape is checked, the contents are theirs. */
    if ((n = pc__yaml_get(root, "admin")) && load_admin(c, n) < 0) return -1;
    if (opt_u32(c, root, "", "drain_timeout_ms", " of milliseconds", 0, MAX_MS, &cfg->drain_timeout_ms) < 0)
        return -1;

    for (size_t i = 0; i < cfg->norigins; i++) {
        size_t z = 0;
        while (z < cfg->nzones && cfg->zones[z].origin_index != i)
            z++;
        if (z < cfg->nzones) continue;
        char label[PATHLEN];
        entry_label(label, "origins", c->origins_keyed, i, cfg->origins[i].name);
        if (warn(c, "%s: no zone uses this origin", label) < 0) return -1;
    }
    if (access_zone_warnings(c) < 0) return -1;
    return 0;
}

static pc_config *config_new(const char *path, const char *dir)
{
    pc_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) return NULL;
    cfg->path = strdup(path);
    /* Absolute, so paths stay right if the process later changes directory. */
    cfg->dir = realpath(dir, NULL);
    if (!cfg->dir) cfg->dir = strdup(dir);
    cfg->log.access = strdup("stdout");
    cfg->log.level = PC_LOG_INFO;
    cfg->drain_timeout_ms = 30000;
    cfg->plugin_dir = strdup(PC_PLUGIN_DIR);
    cfg->limits = (pc_limits_conf){
        .max_concurrent_streams = 100,
        .max_header_list_bytes = 65536,
        .stream_window_bytes = 262144,
        .connection_window_bytes = 1048576,
        .handshake_timeout_ms = 10000,
        .header_timeout_ms = 10000,
        .idle_timeout_ms = 300000,
        .send_timeout_ms = 60000,
        .glitch_limit = 1000,
        .max_connections_per_client = 1024,
        .max_held_bytes_per_client = 64u << 20,
    };
    if (!cfg->path || !cfg->dir || !cfg->log.access || !cfg->plugin_dir) {
        pc__config_free(cfg);
        return NULL;
    }
    return cfg;
}

static int finish(pc_config *cfg, pc_yaml_doc *doc, pc_config **out, char *err, size_t errlen)
{
    ctx c = {.cfg = cfg, .file = doc->file, .err = err, .errlen = errlen, .root = doc->root};
    cfg->doc = doc;
    if (load_root(&c, doc->root) < 0) {
        pc__config_free(cfg);
        return -1;
    }
    *out = cfg;
    return 0;
}

int pc__config_load_buffer(const char *name, const char *buf, size_t len, const char *dir, pc_config **out,
                           char *err, size_t errlen)
{
    *out = NULL;
    if (!name) name = "<config>";
    pc_yaml_doc *doc = pc__yaml_load_buffer(name, buf, len, err, errlen);
    if (!doc) return -1;
    pc_config *cfg = config_new(name, dir ? dir : ".");
    if (!cfg) {
        pc__yaml_free(doc);
        if (err && errlen) snprintf(err, errlen, "%s: out of memory", name);
        return -1;
    }
    return finish(cfg, doc, out, err, errlen);
}

int pc__config_load(const char *path, pc_config **out, char *err, size_t errlen)
{
    *out = NULL;
    pc_yaml_doc *doc = pc__yaml_load_file(path, err, errlen);
    if (!doc) return -1;
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    pc_config *cfg = dir ? config_new(path, dir) : NULL;
    free(dir);
    if (!cfg) {
        pc__yaml_free(doc);
        if (err && errlen) snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    return finish(cfg, doc, out, err, errlen);
}

void pc__config_free(pc_config *cfg)
{
    if (!cfg) return;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        pc_listen_conf *l = &cfg->listen[i];
        for (size_t k = 0; k < l->ncerts; k++) {
            free(l->certs[k].cert);
            free(l->certs[k].key);
        }
        free(l->certs);
        free(l->address);
    }
    free(cfg->listen);
    for (size_t i = 0; i < cfg->norigins; i++) {
        pc_origin_conf *o = &cfg->origins[i];
        for (size_t k = 0; k < o->nservers; k++)
            free(o->servers[k].host);
        free(o->servers);
        free(o->name);
        free(o->tls_ca);
        free(o->tls_sni);
        pc__access_policy_free(o->access);
    }
    free(cfg->origins);
    for (size_t i = 0; i < cfg->nzones; i++) {
        pc_zone_conf *z = &cfg->zones[i];
        for (size_t k = 0; k < z->nhosts; k++)
            free(z->hosts[k]);
        free(z->hosts);
        for (size_t k = 0; k < z->nplugins; k++)
            free(z->plugins[k]);
        free(z->plugins);
        free(z->plugin_nodes);
        for (size_t k = 0; k < z->cors.norigins; k++)
            free(z->cors.origins[k]);
        free(z->cors.origins);
        free(z->cors.expose_headers);
        free(z->cors.allow_headers);
        free(z->name);
        free(z->origin);
    }
    free(cfg->zones);
    for (size_t i = 0; i < cfg->nwarnings; i++)
        free(cfg->warnings[i]);
    free(cfg->warnings);
    free(cfg->log.access);
    free(cfg->admin_address);
    for (size_t i = 0; i < cfg->nplugins; i++) {
        free(cfg->plugins[i].name);
        free(cfg->plugins[i].path);
    }
    free(cfg->plugins);
    free(cfg->plugin_dir);
    for (size_t i = 0; i < cfg->ndescriptors; i++)
        free(cfg->descriptors[i]);
    free(cfg->descriptors);
    free(cfg->path);
    free(cfg->dir);
    pc__yaml_free(cfg->doc);
    free(cfg);
}

static bool ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z') x = (unsigned char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = (unsigned char)(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

const pc_zone_conf *pc__zone_find(const pc_config *cfg, const char *host, size_t len)
{
    if (!cfg || !host || len == 0) return NULL;
    const pc_zone_conf *best = NULL;
    size_t best_len = 0;
    for (size_t z = 0; z < cfg->nzones; z++) {
        const pc_zone_conf *zone = &cfg->zones[z];
        for (size_t k = 0; k < zone->nhosts; k++) {
            const char *h = zone->hosts[k];
            size_t hlen = strlen(h);
            if (h[0] == '*') {
                /* "*.example.com" needs at least one label before ".example.com". */
                const char *suffix = h + 1;
                size_t slen = hlen - 1;
                if (len > slen && slen > best_len && ieq(host + len - slen, suffix, slen)) {
                    best = zone;
                    best_len = slen;
                }
            } else if (hlen == len && ieq(h, host, len)) {
                return zone;
            }
        }
    }
    return best;
}
