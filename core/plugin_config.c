/* Plugin config against the descriptor's declared keys (see plugin_config.h). */
#include "plugin_config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *type_name(pc_conf_type t)
{
    switch (t) {
    case PC_CONF_STRING:
        return "string";
    case PC_CONF_INT:
        return "integer";
    case PC_CONF_NUMBER:
        return "number";
    case PC_CONF_BOOL:
        return "boolean";
    case PC_CONF_PATH:
        return "path";
    case PC_CONF_LIST:
        return "list";
    case PC_CONF_MAP:
        return "map";
    }
    return "?";
}

static int fail(char *err, size_t errlen, const char *file, const pc_yaml_node *n, const char *label,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int fail(char *err, size_t errlen, const char *file, const pc_yaml_node *n, const char *label,
                const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s:%u:%u: plugin %s: %s", file, n ? n->line : 0, n ? n->col : 0, label, msg);
    return -1;
}

static const pc_conf_key *find_key(const pc_plugin *d, const char *key)
{
    for (const pc_conf_key *k = d->config; k && k->key; k++)
        if (!strcmp(k->key, key)) return k;
    return NULL;
}

static void key_list(const pc_plugin *d, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (const pc_conf_key *k = d->config; k && k->key && used < len; k++) {
        int w = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", k->key);
        if (w < 0) break;
        used += (size_t)w;
    }
}

static int is_word(const pc_yaml_node *n, const char *w)
{
    return n->scalar_len == strlen(w) && strncasecmp(n->scalar, w, n->scalar_len) == 0;
}

static int in_choices(const char *choices, const char *v, size_t len)
{
    for (const char *p = choices; *p;) {
        size_t n = strcspn(p, "|");
        if (n == len && !memcmp(p, v, len)) return 1;
        p += n;
        if (*p) p++;
    }
    return 0;
}

static int bounded(const pc_conf_key *k)
{
    return k->min < k->max;
}

static int check_value(const char *file, const char *label, const pc_conf_key *k, const pc_yaml_node *v,
                       char *err, size_t errlen)
{
    const char *want = type_name(k->type);
    if ((k->type == PC_CONF_LIST && v->kind != PC_YAML_SEQ) ||
        (k->type == PC_CONF_MAP && v->kind != PC_YAML_MAP) ||
        (k->type != PC_CONF_LIST && k->type != PC_CONF_MAP && v->kind != PC_YAML_SCALAR))
        return fail(err, errlen, file, v, label, "%s: expected a %s (%s)", k->key, want,
                    k->doc ? k->doc : "");
    switch (k->type) {
    case PC_CONF_STRING:
        if (k->choices && !in_choices(k->choices, v->scalar, v->scalar_len))
            return fail(err, errlen, file, v, label, "%s: expected one of %s, got \"%.64s\"", k->key,
                        k->choices, v->scalar);
        return 0;
    case PC_CONF_PATH:
        if (!v->scalar_len) return fail(err, errlen, file, v, label, "%s: expected a path, got \"\"", k->key);
        return 0;
    case PC_CONF_BOOL:
        if (!v->quoted && (is_word(v, "true") || is_word(v, "false") || is_word(v, "yes") ||
                           is_word(v, "no") || is_word(v, "on") || is_word(v, "off")))
            return 0;
        return fail(err, errlen, file, v, label, "%s: expected true or false, got \"%.64s\"", k->key,
                    v->scalar);
    case PC_CONF_INT:
    case PC_CONF_NUMBER: {
        char *end = NULL;
        errno = 0;
        double x;
        if (k->type == PC_CONF_INT) {
            long long i = strtoll(v->scalar, &end, 10);
            x = (double)i;
        } else {
            x = strtod(v->scalar, &end);
        }
        const char *what = k->type == PC_CONF_INT ? "a whole number" : "a number";
        if (v->scalar_len && !errno && end && !*end && isfinite(x) &&
            (!bounded(k) || (x >= k->min && x <= k->max)))
            return 0;
        if (bounded(k))
            return fail(err, errlen, file, v, label, "%s: expected %s from %.17g to %.17g, got \"%.64s\"",
                        k->key, what, k->min, k->max, v->scalar);
        return fail(err, errlen, file, v, label, "%s: expected %s, got \"%.64s\"", k->key, what, v->scalar);
    }
    case PC_CONF_LIST:
        if (bounded(k) && ((double)v->n < k->min || (double)v->n > k->max))
            return fail(err, errlen, file, v, label, "%s: expected %g to %g items, got %zu", k->key, k->min,
                        k->max, v->n);
        return 0;
    case PC_CONF_MAP:
        return 0;
    }
    return 0;
}

int pc__plugin_config_check(const char *file, const char *label, const pc_plugin *d, const pc_yaml_node *in,
                            const pc_yaml_node *at, pc_yaml_node **out, char *err, size_t errlen)
{
    *out = NULL;
    /* `config:` written empty is the same as absent */
    if (in && in->kind == PC_YAML_SCALAR && in->scalar_len == 0 && !in->quoted) in = NULL;
    if (in && in->kind != PC_YAML_MAP)
        return fail(err, errlen, file, in, label, "config: expected a map of the plugin's keys");
    if (!d->config) {
        if (in && in->n) return fail(err, errlen, file, in->keys[0], label, "takes no config keys");
        return 0;
    }
    for (size_t i = 0; in && i < in->n; i++) {
        const pc_conf_key *k = find_key(d, in->keys[i]->scalar);
        if (!k) {
            char list[512];
            key_list(d, list, sizeof list);
            return fail(err, errlen, file, in->keys[i], label, "unknown key \"%.64s\" (valid keys: %s)",
                        in->keys[i]->scalar, list);
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(in->keys[j]->scalar, k->key))
                return fail(err, errlen, file, in->keys[i], label, "%s given twice", k->key);
        if (check_value(file, label, k, in->items[i], err, errlen) < 0) return -1;
    }
    int defaults = 0;
    for (const pc_conf_key *k = d->config; k->key; k++) {
        if (k->required && !pc__yaml_get(in, k->key))
            return fail(err, errlen, file, in ? in : at, label, "%s is required (%s)", k->key,
                        k->doc ? k->doc : "");
        if (k->def && !pc__yaml_get(in, k->key)) defaults = 1;
    }
    if (!in && !defaults) return 0;
    pc_yaml_node *c = in ? pc__yaml_copy(in) : pc__yaml_map_new(at ? at->line : 0, at ? at->col : 0);
    if (!c) return fail(err, errlen, file, at, label, "out of memory");
    for (const pc_conf_key *k = d->config; k->key; k++) {
        if (!k->def || pc__yaml_get(c, k->key)) continue;
        pc_yaml_node *v = pc__yaml_scalar_new(k->def, c->line, c->col);
        if (!v || pc__yaml_map_add(c, k->key, v) < 0) {
            pc__yaml_node_free(v);
            pc__yaml_node_free(c);
            return fail(err, errlen, file, at, label, "out of memory");
        }
    }
    *out = c;
    return 0;
}

void pc__plugin_config_describe(FILE *f, const pc_plugin *d, const char *path)
{
    fprintf(f, "%s %s (%s)\n", d->name, d->version ? d->version : "", path);
    if (d->summary) fprintf(f, "  %s\n", d->summary);
    if (!d->config || !d->config->key) {
        fprintf(f, "\n  (no config keys)\n");
        return;
    }
    fprintf(f, "\nconfig keys:\n");
    for (const pc_conf_key *k = d->config; k->key; k++) {
        char extra[256] = "";
        size_t used = 0;
        if (k->required) used += (size_t)snprintf(extra + used, sizeof extra - used, ", required");
        if (k->def && used < sizeof extra)
            used += (size_t)snprintf(extra + used, sizeof extra - used, ", default %s", k->def);
        if (bounded(k) && used < sizeof extra)
            used += (size_t)snprintf(extra + used, sizeof extra - used, ", %.17g to %.17g%s", k->min, k->max,
                                     k->type == PC_CONF_LIST ? " items" : "");
        if (k->choices && used < sizeof extra)
            snprintf(extra + used, sizeof extra - used, ", one of %s", k->choices);
        fprintf(f, "  %-22s %s%s\n", k->key, type_name(k->type), extra);
        if (k->doc) fprintf(f, "  %-22s   %s\n", "", k->doc);
    }
}
