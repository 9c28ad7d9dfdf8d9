/* Client stacks: which gRPC / HTTP/2 implementation a User-Agent names, and whether the connection's
 * fingerprints belong to it. A `stack` rule lists the User-Agent products a stack writes
 * (`stack grpc-core grpc-c grpc-c++ grpc-python ...`); a fingerprint belongs to the stacks its label names
 * (`grpc-core`, or `grpc-go+go-http` for one shared by two). The User-Agent is read as the client wrote it:
 * every product in it, in order, outside comments, so "grpc-go/1.60.1 grpc-python/1.51.1 grpc-c/29.0.0"
 * (grpcio appends its own products to the one the application set) names grpc-go and grpc-core. The
 * parser reads hostile input: bounded by UA_PRODUCTS_SCAN bytes and BOT_UA_MAX_STACKS results. */
#include <string.h>
#include <strings.h>

#include "bot.h"

/* Real User-Agents name their products in the first few hundred bytes. */
#define UA_PRODUCTS_SCAN 512

size_t bot_ua_products(const char *ua, bot_product *out, size_t max)
{
    size_t len = ua ? strnlen(ua, UA_PRODUCTS_SCAN) : 0, n = 0, i = 0;
    unsigned depth = 0; /* inside "(...)": a comment, not a product (RFC 9110 10.1.5) */
    while (i < len && n < max) {
        char c = ua[i];
        if (c == '(') {
            depth++;
            i++;
            continue;
        }
        if (c == ')') {
            if (depth) depth--;
            i++;
            continue;
        }
        if (c == ' ' || c == '\t' || depth) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < len && ua[i] != ' ' && ua[i] != '\t' && ua[i] != '/' && ua[i] != '(' && ua[i] != ')')
            i++;
        if (i > start) out[n++] = (bot_product){ua + start, i - start};
        /* The version: up to the next blank or comment; it may itself contain no product. */
        while (i < len && ua[i] != ' ' && ua[i] != '\t' && ua[i] != '(')
            i++;
    }
    return n;
}

int bot_rules_product_stack(const bot_rules *r, const char *p, size_t n)
{
    for (size_t i = 0; n && i < r->nstacks; i++)
        for (size_t j = 0; j < r->stacks[i].nproducts; j++)
            if (strlen(r->stacks[i].products[j]) == n && !strncasecmp(r->stacks[i].products[j], p, n))
                return (int)i;
    return -1;
}

int bot_rules_stack(const bot_rules *r, const char *name, size_t n)
{
    for (size_t i = 0; i < r->nstacks; i++)
        if (strlen(r->stacks[i].name) == n && !memcmp(r->stacks[i].name, name, n)) return (int)i;
    return -1;
}

size_t bot_ua_stacks(const bot_rules *r, const char *ua, int *out, size_t max)
{
    bot_product prods[BOT_UA_MAX_PRODUCTS];
    size_t np = bot_ua_products(ua, prods, BOT_UA_MAX_PRODUCTS), n = 0;
    for (size_t i = 0; i < np && n < max; i++) {
        int s = bot_rules_product_stack(r, prods[i].p, prods[i].n);
        bool dup = s < 0;
        for (size_t j = 0; !dup && j < n; j++)
            dup = out[j] == s;
        if (!dup) out[n++] = s;
    }
    return n;
}

/* Calls fn for each '+'-separated part of a fingerprint's label until it returns true. */
static bool label_parts(const char *label, bool (*fn)(const char *p, size_t n, const void *arg),
                        const void *arg)
{
    const char *p = label;
    while (p && *p) {
        const char *e = strchr(p, '+');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n && fn(p, n, arg)) return true;
        p = e ? e + 1 : NULL;
    }
    return false;
}

typedef struct part_arg {
    const bot_rules *r;
    const char *name;
} part_arg;

static bool part_is_stack(const char *p, size_t n, const void *arg)
{
    const part_arg *a = arg;
    return bot_rules_stack(a->r, p, n) >= 0;
}

static bool part_is(const char *p, size_t n, const void *arg)
{
    const part_arg *a = arg;
    return strlen(a->name) == n && !memcmp(a->name, p, n);
}

bool bot_fp_is_stack(const bot_rules *r, const bot_fp *f)
{
    part_arg a = {r, NULL};
    return f && label_parts(f->label, part_is_stack, &a);
}

bool bot_fp_in_stack(const bot_fp *f, const char *stack)
{
    part_arg a = {NULL, stack};
    return f && stack && label_parts(f->label, part_is, &a);
}
