/* Rules files (rules/bots, one rule per line): data users edit and reload with SIGHUP. Three kinds of line:
 *
 *   fingerprint <ja4|ja3|h2> <value> <kind> <score> <label>
 *   useragent   <kind> <label> <pattern...>
 *   verified    <label> <cidr>[,<cidr>...] <pattern...>
 *   stack       <name> <user-agent product>...
 *
 * kind: browser | grpc_library | http_library | automated. Patterns are case-insensitive substrings of the
 * User-Agent, "^" anchors one at the start. Blank lines and lines starting with '#' are ignored. Files are
 * read in name order; a later fingerprint entry replaces an earlier one, user-agent rules match first-first.
 * Also where the shipped rules are found when the config names none.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "bot.h"

static const char *const kinds[] = {"", "browser", "grpc_library", "http_library", "automated"};

const char *bot_kind_name(int kind)
{
    return kind > 0 && kind < 5 ? kinds[kind] : "unknown";
}

static int kind_of(const char *s, size_t n)
{
    for (int k = 1; k < 5; k++)
        if (strlen(kinds[k]) == n && !memcmp(kinds[k], s, n)) return k;
    return 0;
}

typedef struct tok {
    const char *p;
    size_t n;
} tok;

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static tok next_tok(const char **line, const char *end)
{
    const char *p = *line;
    while (p < end && is_blank(*p))
        p++;
    const char *s = p;
    while (p < end && !is_blank(*p))
        p++;
    *line = p;
    return (tok){s, (size_t)(p - s)};
}

static tok rest(const char *p, const char *end)
{
    while (p < end && is_blank(*p))
        p++;
    while (end > p && is_blank(end[-1]))
        end--;
    return (tok){p, (size_t)(end - p)};
}

static bool tok_is(tok t, const char *s)
{
    return t.n == strlen(s) && !memcmp(t.p, s, t.n);
}

static char *tok_dup(tok t)
{
    char *s = malloc(t.n + 1);
    if (s) {
        memcpy(s, t.p, t.n);
        s[t.n] = '\0';
    }
    return s;
}

/* Labels end up in the signal list and metrics labels: keep them to one plain token. A fingerprint's label
 * may join the stacks it belongs to with '+' (plus). */
static bool label_chars_ok(tok t, bool plus)
{
    if (t.n == 0 || t.n > 64) return false;
    for (size_t i = 0; i < t.n; i++) {
        char c = t.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '-' || c == '_' || (plus && c == '+' && i > 0 && i + 1 < t.n && t.p[i - 1] != '+')))
            return false;
    }
    return true;
}

static bool label_ok(tok t)
{
    return label_chars_ok(t, false);
}

static bool value_ok(int type, tok t)
{
    size_t max = type == BOT_FP_H2 ? 511 : type == BOT_FP_JA4 ? 63 : 32;
    if (t.n == 0 || t.n > max || (type == BOT_FP_JA3 && t.n != 32)) return false;
    for (size_t i = 0; i < t.n; i++) {
        unsigned char c = (unsigned char)t.p[i];
        bool ok = type == BOT_FP_JA3   ? (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
                  : type == BOT_FP_JA4 ? (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '_'
                                       : c > 0x20 && c < 0x7f;
        if (!ok) return false;
    }
    return true;
}

static int ua_set(bot_ua *u, int kind, tok label, tok pat)
{
    u->kind = (uint8_t)kind;
    u->anchored = pat.n > 0 && pat.p[0] == '^';
    if (u->anchored) {
        pat.p++;
        pat.n--;
    }
    u->label = tok_dup(label);
    u->pattern = tok_dup(pat);
    u->len = pat.n;
    if (!u->label || !u->pattern) return -1;
    for (size_t i = 0; i < u->len; i++)
        if (u->pattern[i] >= 'A' && u->pattern[i] <= 'Z') u->pattern[i] = (char)(u->pattern[i] + 32);
    return 0;
}

int bot_parse_ip(const char *s, uint8_t out[16])
{
    struct in_addr a4;
    if (inet_pton(AF_INET, s, &a4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        return 0;
    }
    struct in6_addr a6;
    if (inet_pton(AF_INET6, s, &a6) == 1) {
        memcpy(out, &a6, 16);
        return 0;
    }
    return -1;
}

static int parse_net(tok t, bot_net *n)
{
    char buf[64];
    if (t.n == 0 || t.n >= sizeof buf) return -1;
    memcpy(buf, t.p, t.n);
    buf[t.n] = '\0';
    char *slash = strchr(buf, '/');
    long bits = -1;
    if (slash) {
        char *e;
        *slash = '\0';
        errno = 0;
        bits = strtol(slash + 1, &e, 10);
        if (errno || *e || e == slash + 1 || bits < 0) return -1;
    }
    bool v4 = strchr(buf, ':') == NULL;
    if (bot_parse_ip(buf, n->addr) < 0) return -1;
    long max = v4 ? 32 : 128;
    if (bits > max) return -1;
    n->bits = (uint8_t)((bits < 0 ? max : bits) + (v4 ? 96 : 0));
    return 0;
}

bool bot_net_match(const bot_net *nets, size_t n, const uint8_t addr[16])
{
    for (size_t i = 0; i < n; i++) {
        unsigned bits = nets[i].bits, full = bits / 8, part = bits % 8;
        if (memcmp(nets[i].addr, addr, full) != 0) continue;
        if (part && ((nets[i].addr[full] ^ addr[full]) & (0xff00 >> part) & 0xff)) continue;
        return true;
    }
    return false;
}

__attribute__((format(printf, 5, 6))) static int rule_error(char *err, size_t errlen, const char *name,
                                                            unsigned line, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s:%u: %s", name, line, msg);
    return -1;
}

static int grow(void **arr, size_t *cap, size_t n, size_t size, size_t max)
{
    if (n < *cap) return 0;
    if (n >= max) return -1;
    size_t nc = *cap ? *cap * 2 : 16;
    if (nc > max) nc = max;
    void *p = realloc(*arr, nc * size);
    if (!p) return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

static int line_fingerprint(bot_rules *r, const char *p, const char *end, const char *name, unsigned ln,
                            char *err, size_t errlen)
{
    tok type = next_tok(&p, end), value = next_tok(&p, end), kind = next_tok(&p, end),
        score = next_tok(&p, end), label = next_tok(&p, end);
    int t = tok_is(type, "ja4")   ? BOT_FP_JA4
            : tok_is(type, "ja3") ? BOT_FP_JA3
            : tok_is(type, "h2")  ? BOT_FP_H2
                                  : -1;
    if (t < 0) return rule_error(err, errlen, name, ln, "fingerprint type must be ja4, ja3 or h2");
    if (!value_ok(t, value))
        return rule_error(err, errlen, name, ln, "malformed %.*s fingerprint", (int)type.n, type.p);
    int k = kind_of(kind.p, kind.n);
    if (!k)
        return rule_error(err, errlen, name, ln,
                          "unknown kind \"%.*s\" (browser, grpc_library, http_library, automated)",
                          (int)kind.n, kind.p);
    char num[8] = "";
    if (score.n > 0 && score.n < sizeof num) memcpy(num, score.p, score.n);
    char *e;
    long s = strtol(num, &e, 10);
    if (!num[0] || *e || s < 1 || s > 99)
        return rule_error(err, errlen, name, ln, "score must be a number from 1 to 99");
    if (!label_chars_ok(label, true) || rest(p, end).n)
        return rule_error(
            err, errlen, name, ln,
            "expected one label of letters, digits, '.', '-', '_' (stacks joined by '+') at the "
            "end");
    if (grow((void **)&r->fps, &r->capfps, r->nfps, sizeof *r->fps, BOT_RULES_MAX_FPS) < 0)
        return rule_error(err, errlen, name, ln, "more than %u fingerprints", BOT_RULES_MAX_FPS);
    bot_fp *f = &r->fps[r->nfps];
    memset(f, 0, sizeof *f);
    f->type = (uint8_t)t;
    f->kind = (uint8_t)k;
    f->score = (uint8_t)s;
    f->seq = (uint32_t)r->nfps;
    f->value = tok_dup(value);
    f->label = tok_dup(label);
    r->nfps++;
    return f->value && f->label ? 0 : rule_error(err, errlen, name, ln, "out of memory");
}

static int line_useragent(bot_rules *r, const char *p, const char *end, const char *name, unsigned ln,
                          char *err, size_t errlen)
{
    tok kind = next_tok(&p, end), label = next_tok(&p, end), pat = rest(p, end);
    int k = kind_of(kind.p, kind.n);
    if (!k)
        return rule_error(err, errlen, name, ln,
                          "unknown kind \"%.*s\" (browser, grpc_library, http_library, automated)",
                          (int)kind.n, kind.p);
    if (!label_ok(label))
        return rule_error(err, errlen, name, ln,
                          "expected a label of letters, digits, '.', '-', '_' after the kind");
    if (pat.n == 0 || (pat.n == 1 && pat.p[0] == '^'))
        return rule_error(err, errlen, name, ln, "missing user-agent pattern");
    if (grow((void **)&r->uas, &r->capuas, r->nuas, sizeof *r->uas, BOT_RULES_MAX_UAS) < 0)
        return rule_error(err, errlen, name, ln, "more than %u user-agent rules", BOT_RULES_MAX_UAS);
    bot_ua *u = &r->uas[r->nuas];
    memset(u, 0, sizeof *u);
    r->nuas++;
    return ua_set(u, k, label, pat) < 0 ? rule_error(err, errlen, name, ln, "out of memory") : 0;
}

/* stack <name> <product>...: a later line for the same stack adds products; a product belongs to one stack.
 */
static int line_stack(bot_rules *r, const char *p, const char *end, const char *name, unsigned ln, char *err,
                      size_t errlen)
{
    tok sname = next_tok(&p, end);
    if (!label_ok(sname))
        return rule_error(err, errlen, name, ln,
                          "expected a stack name of letters, digits, '.', '-', '_' after \"stack\"");
    int si = bot_rules_stack(r, sname.p, sname.n);
    if (si < 0) {
        if (grow((void **)&r->stacks, &r->capstacks, r->nstacks, sizeof *r->stacks, BOT_RULES_MAX_STACKS) < 0)
            return rule_error(err, errlen, name, ln, "more than %u stacks", BOT_RULES_MAX_STACKS);
        bot_stack *st = &r->stacks[r->nstacks];
        memset(st, 0, sizeof *st);
        if (!(st->name = tok_dup(sname)) ||
            !(st->products = calloc(BOT_RULES_MAX_PRODUCTS, sizeof *st->products))) {
            free(st->name);
            return rule_error(err, errlen, name, ln, "out of memory");
        }
        si = (int)r->nstacks++;
    }
    bot_stack *st = &r->stacks[si];
    for (tok t = next_tok(&p, end); t.n; t = next_tok(&p, end)) {
        if (t.n > 64 || memchr(t.p, '/', t.n) || memchr(t.p, '(', t.n) || memchr(t.p, ')', t.n))
            return rule_error(err, errlen, name, ln,
                              "bad product \"%.*s\" (a User-Agent product name, without '/', '(' or ')')",
                              t.n > 64 ? 64 : (int)t.n, t.p);
        int other = bot_rules_product_stack(r, t.p, t.n);
        if (other == si) continue;
        if (other >= 0)
            return rule_error(err, errlen, name, ln, "product \"%.*s\" already belongs to stack %s", (int)t.n,
                              t.p, r->stacks[other].name);
        if (st->nproducts == BOT_RULES_MAX_PRODUCTS)
            return rule_error(err, errlen, name, ln, "more than %u products in stack %s",
                              BOT_RULES_MAX_PRODUCTS, st->name);
        if (!(st->products[st->nproducts] = tok_dup(t)))
            return rule_error(err, errlen, name, ln, "out of memory");
        st->nproducts++;
    }
    return 0;
}

static int line_verified(bot_rules *r, const char *p, const char *end, const char *name, unsigned ln,
                         char *err, size_t errlen)
{
    tok label = next_tok(&p, end), nets = next_tok(&p, end), pat = rest(p, end);
    if (!label_ok(label))
        return rule_error(err, errlen, name, ln, "expected a label of letters, digits, '.', '-', '_'");
    if (pat.n == 0 || (pat.n == 1 && pat.p[0] == '^'))
        return rule_error(err, errlen, name, ln, "missing user-agent pattern after the address ranges");
    if (grow((void **)&r->ver, &r->capver, r->nver, sizeof *r->ver, BOT_RULES_MAX_VERIFIED) < 0)
        return rule_error(err, errlen, name, ln, "more than %u verified bots", BOT_RULES_MAX_VERIFIED);
    bot_verified *v = &r->ver[r->nver];
    memset(v, 0, sizeof *v);
    r->nver++;
    v->nets = calloc(BOT_RULES_MAX_NETS, sizeof *v->nets);
    if (!v->nets || ua_set(&v->ua, BOT_KIND_AUTOMATED, label, pat) < 0 || !(v->label = tok_dup(label)))
        return rule_error(err, errlen, name, ln, "out of memory");
    const char *q = nets.p, *qend = nets.p + nets.n;
    while (q <= qend) {
        const char *comma = memchr(q, ',', (size_t)(qend - q));
        const char *e = comma ? comma : qend;
        if (v->nnets == BOT_RULES_MAX_NETS)
            return rule_error(err, errlen, name, ln, "more than %u address ranges", BOT_RULES_MAX_NETS);
        if (parse_net((tok){q, (size_t)(e - q)}, &v->nets[v->nnets]) < 0)
            return rule_error(err, errlen, name, ln,
                              "bad address range \"%.*s\" (want 192.0.2.0/24 or 2001:db8::/32)", (int)(e - q),
                              q);
        v->nnets++;
        q = e + 1;
    }
    return 0;
}

int bot_rules_load_text(bot_rules *r, const char *name, const char *text, size_t len, char *err,
                        size_t errlen)
{
    const char *p = text, *end = text + len;
    unsigned ln = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        ln++;
        if ((size_t)(le - p) > BOT_RULES_MAX_LINE)
            return rule_error(err, errlen, name, ln, "line longer than %u bytes", BOT_RULES_MAX_LINE);
        if (memchr(p, '\0', (size_t)(le - p)))
            return rule_error(err, errlen, name, ln, "NUL byte in the line");
        const char *q = p;
        tok what = next_tok(&q, le);
        int rv = 0;
        if (what.n == 0 || what.p[0] == '#')
            rv = 0;
        else if (tok_is(what, "fingerprint"))
            rv = line_fingerprint(r, q, le, name, ln, err, errlen);
        else if (tok_is(what, "useragent"))
            rv = line_useragent(r, q, le, name, ln, err, errlen);
        else if (tok_is(what, "verified"))
            rv = line_verified(r, q, le, name, ln, err, errlen);
        else if (tok_is(what, "stack"))
            rv = line_stack(r, q, le, name, ln, err, errlen);
        else
            rv = rule_error(err, errlen, name, ln,
                            "unknown rule \"%.*s\" (fingerprint, useragent, verified, stack)",
                            what.n > 40 ? 40 : (int)what.n, what.p);
        if (rv < 0) return -1;
        p = nl ? nl + 1 : end;
    }
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_file(bot_rules *r, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(BOT_RULES_MAX_FILE_BYTES + 1);
    size_t n = buf ? fread(buf, 1, BOT_RULES_MAX_FILE_BYTES + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    int rv = -1;
    if (!buf)
        snprintf(err, errlen, "%s: out of memory", path);
    else if (bad)
        snprintf(err, errlen, "%s: read error", path);
    else if (n > BOT_RULES_MAX_FILE_BYTES)
        snprintf(err, errlen, "%s: larger than %u bytes", path, BOT_RULES_MAX_FILE_BYTES);
    else
        rv = bot_rules_load_text(r, path, buf, n, err, errlen);
    free(buf);
    return rv;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return path && *path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Where the shipped rules are when `rules` is not set (see bot.h). */
int bot_rules_shipped_dir(const char *installed, const char *source, char *out, size_t len, char *err,
                          size_t errlen)
{
    const char *dir = is_dir(installed) ? installed : is_dir(source) ? source : NULL;
    if (!dir) {
        if (source && *source)
            snprintf(err, errlen,
                     "not set, and no shipped rules in %s or %s (install them with cmake --install, "
                     "or set `rules` to a directory of .rules files)",
                     installed, source);
        else
            snprintf(err, errlen,
                     "not set, and no shipped rules in %s (install them with cmake --install, or "
                     "set `rules` to a directory of .rules files)",
                     installed);
        return -1;
    }
    if ((size_t)snprintf(out, len, "%s", dir) >= len) {
        snprintf(err, errlen, "not set, and the shipped rules' path is too long: %s", dir);
        return -1;
    }
    return 0;
}

int bot_rules_load_dir(bot_rules *r, const char *dir, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "rules directory %s: %s", dir, strerror(errno));
        return -1;
    }
    char *names[BOT_RULES_MAX_FILES];
    size_t n = 0;
    int rv = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 7 || strcmp(e->d_name + len - 6, ".rules") != 0) continue;
        if (n == BOT_RULES_MAX_FILES) {
            snprintf(err, errlen, "rules directory %s: more than %u .rules files", dir, BOT_RULES_MAX_FILES);
            rv = -1;
            break;
        }
        if (!(names[n] = strdup(e->d_name))) {
            snprintf(err, errlen, "out of memory");
            rv = -1;
            break;
        }
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_name);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        if (rv == 0 && (size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= sizeof path) {
            snprintf(err, errlen, "rules directory %s: path too long", dir);
            rv = -1;
        }
        if (rv == 0) rv = load_file(r, path, err, errlen);
        free(names[i]);
    }
    if (rv == 0) bot_rules_finish(r);
    return rv;
}

static int cmp_fp(const void *a, const void *b)
{
    const bot_fp *x = a, *y = b;
    if (x->type != y->type) return x->type < y->type ? -1 : 1;
    int c = strcmp(x->value, y->value);
    if (c) return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void bot_rules_finish(bot_rules *r)
{
    if (r->nfps == 0) return;
    qsort(r->fps, r->nfps, sizeof *r->fps, cmp_fp);
    /* Keep the last entry of each fingerprint, so a local file sorting after the shipped one overrides it. */
    size_t k = 0;
    for (size_t i = 0; i < r->nfps; i++) {
        if (i + 1 < r->nfps && r->fps[i].type == r->fps[i + 1].type &&
            !strcmp(r->fps[i].value, r->fps[i + 1].value)) {
            free(r->fps[i].value);
            free(r->fps[i].label);
            continue;
        }
        r->fps[k++] = r->fps[i];
    }
    r->nfps = k;
}

void bot_rules_free(bot_rules *r)
{
    for (size_t i = 0; i < r->nfps; i++) {
        free(r->fps[i].value);
        free(r->fps[i].label);
    }
    for (size_t i = 0; i < r->nuas; i++) {
        free(r->uas[i].pattern);
        free(r->uas[i].label);
    }
    for (size_t i = 0; i < r->nver; i++) {
        free(r->ver[i].label);
        free(r->ver[i].ua.pattern);
        free(r->ver[i].ua.label);
        free(r->ver[i].nets);
    }
    for (size_t i = 0; i < r->nstacks; i++) {
        for (size_t j = 0; j < r->stacks[i].nproducts; j++)
            free(r->stacks[i].products[j]);
        free(r->stacks[i].products);
        free(r->stacks[i].name);
    }
    free(r->stacks);
    free(r->fps);
    free(r->uas);
    free(r->ver);
    memset(r, 0, sizeof *r);
}

const bot_fp *bot_rules_fp(const bot_rules *r, int type, const char *value)
{
    if (!value || !*value) return NULL;
    size_t lo = 0, hi = r->nfps;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const bot_fp *f = &r->fps[mid];
        int c = f->type != type ? (f->type < type ? -1 : 1) : strcmp(f->value, value);
        if (c == 0) return f;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static bool ua_match(const bot_ua *u, const char *ua, size_t len)
{
    if (u->len > len) return false;
    if (u->anchored) return strncasecmp(ua, u->pattern, u->len) == 0;
    for (size_t i = 0; i + u->len <= len; i++)
        if (strncasecmp(ua + i, u->pattern, u->len) == 0) return true;
    return false;
}

/* Only the start of a User-Agent is matched: real ones are under 300 bytes, and a 64 KiB one must not cost
 * every pattern a scan of all of it. */
#define UA_SCAN_MAX 512

const bot_ua *bot_rules_ua(const bot_rules *r, const char *ua)
{
    size_t len = ua ? strnlen(ua, UA_SCAN_MAX) : 0;
    for (size_t i = 0; len && i < r->nuas; i++)
        if (ua_match(&r->uas[i], ua, len)) return &r->uas[i];
    return NULL;
}

const bot_verified *bot_rules_verified(const bot_rules *r, const char *ua)
{
    size_t len = ua ? strnlen(ua, UA_SCAN_MAX) : 0;
    for (size_t i = 0; len && i < r->nver; i++)
        if (ua_match(&r->ver[i].ua, ua, len)) return &r->ver[i];
    return NULL;
}
