/* Turns libyaml's event stream into pc_yaml_node trees with 1-based positions. Only the plain subset a
 * config needs is accepted: one document, no anchors or aliases, scalar and unique map keys, and a
 * bounded depth and size so a hostile file cannot exhaust the stack or memory. */
#include "yaml_tree.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_DEPTH 64
#define MAX_NODES 1000000
#define MAX_FILE_BYTES (64u << 20)

typedef struct frame {
    pc_yaml_node *node; /* open sequence or map */
    pc_yaml_node *key;  /* map: key read, value not yet */
    size_t cap;
} frame;

typedef struct loader {
    const char *name;
    const char *buf;
    size_t len;
    char *err;
    size_t errlen;
    frame stack[MAX_DEPTH];
    size_t depth;
    size_t nodes;
    pc_yaml_node *root;
    int ndocs;
} loader;

static void set_err(loader *l, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_err(loader *l, unsigned line, unsigned col, const char *fmt, ...)
{
    if (!l->err || !l->errlen) return;
    int n = snprintf(l->err, l->errlen, "%s:%u:%u: ", l->name, line, col);
    if (n < 0 || (size_t)n >= l->errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->err + n, l->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

const char *pc__yaml_quote(char *out, size_t outlen, const char *s, size_t len)
{
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < len && o + 8 < outlen; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (i == 60) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

static void node_free(pc_yaml_node *n)
{
    if (!n) return;
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys) node_free(n->keys[i]);
        if (n->items) node_free(n->items[i]);
    }
    free(n->keys);
    free(n->items);
    free(n->scalar);
    free(n);
}

void pc__yaml_free(pc_yaml_doc *doc)
{
    if (!doc) return;
    node_free(doc->root);
    free(doc->file);
    free(doc);
}

void pc__yaml_node_free(pc_yaml_node *n)
{
    node_free(n);
}

pc_yaml_node *pc__yaml_scalar_new(const char *text, unsigned line, unsigned col)
{
    pc_yaml_node *n = calloc(1, sizeof *n);
    if (!n || !(n->scalar = strdup(text))) {
        free(n);
        return NULL;
    }
    n->kind = PC_YAML_SCALAR;
    n->scalar_len = strlen(text);
    n->line = line;
    n->col = col;
    return n;
}

pc_yaml_node *pc__yaml_map_new(unsigned line, unsigned col)
{
    pc_yaml_node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->kind = PC_YAML_MAP;
    n->line = line;
    n->col = col;
    return n;
}

int pc__yaml_map_add(pc_yaml_node *map, const char *key, pc_yaml_node *value)
{
    pc_yaml_node *k = pc__yaml_scalar_new(key, value->line, value->col);
    pc_yaml_node **keys = k ? realloc(map->keys, (map->n + 1) * sizeof *keys) : NULL;
    if (keys) map->keys = keys;
    pc_yaml_node **items = keys ? realloc(map->items, (map->n + 1) * sizeof *items) : NULL;
    if (!items) {
        node_free(k);
        return -1;
    }
    map->items = items;
    map->keys[map->n] = k;
    map->items[map->n] = value;
    map->n++;
    return 0;
}

pc_yaml_node *pc__yaml_copy(const pc_yaml_node *n)
{
    if (!n) return NULL;
    pc_yaml_node *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    *c = (pc_yaml_node){.kind = n->kind, .line = n->line, .col = n->col, .quoted = n->quoted};
    if (n->scalar) {
        if (!(c->scalar = malloc(n->scalar_len + 1))) goto fail;
        memcpy(c->scalar, n->scalar, n->scalar_len + 1);
        c->scalar_len = n->scalar_len;
    }
    if (n->n) {
        if (!(c->items = calloc(n->n, sizeof *c->items))) goto fail;
        if (n->keys && !(c->keys = calloc(n->n, sizeof *c->keys))) goto fail;
        for (size_t i = 0; i < n->n; i++) {
            c->n = i + 1;
            if (!(c->items[i] = pc__yaml_copy(n->items[i]))) goto fail;
            if (n->keys && !(c->keys[i] = pc__yaml_copy(n->keys[i]))) goto fail;
        }
    }
    return c;
fail:
    node_free(c);
    return NULL;
}

const pc_yaml_node *pc__yaml_get(const pc_yaml_node *map, const char *key)
{
    if (!map || map->kind != PC_YAML_MAP || !key) return NULL;
    size_t klen = strlen(key);
    for (size_t i = 0; i < map->n; i++) {
        const pc_yaml_node *k = map->keys[i];
        if (k->scalar_len == klen && memcmp(k->scalar, key, klen) == 0) return map->items[i];
    }
    return NULL;
}

static pc_yaml_node *node_new(loader *l, pc_yaml_kind kind, const yaml_mark_t *mark)
{
    unsigned line = (unsigned)mark->line + 1, col = (unsigned)mark->column + 1;
    if (l->nodes >= MAX_NODES) {
        set_err(l, line, col, "too many nodes (the limit is %d)", MAX_NODES);
        return NULL;
    }
    pc_yaml_node *n = calloc(1, sizeof *n);
    if (!n) {
        set_err(l, line, col, "out of memory");
        return NULL;
    }
    l->nodes++;
    n->kind = kind;
    n->line = line;
    n->col = col;
    return n;
}

static int append(loader *l, frame *f, pc_yaml_node *key, pc_yaml_node *item)
{
    pc_yaml_node *p = f->node;
    if (p->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 4;
        pc_yaml_node **items = realloc(p->items, cap * sizeof *items);
        if (!items) goto oom;
        p->items = items;
        if (p->kind == PC_YAML_MAP) {
            pc_yaml_node **keys = realloc(p->keys, cap * sizeof *keys);
            if (!keys) goto oom;
            p->keys = keys;
        }
        f->cap = cap;
    }
    if (p->kind == PC_YAML_MAP) p->keys[p->n] = key;
    p->items[p->n++] = item;
    return 0;
oom:
    set_err(l, item->line, item->col, "out of memory");
    return -1;
}

/* Hands a new node to its parent (or makes it the root). On failure the node is freed here. */
static int attach(loader *l, pc_yaml_node *n)
{
    if (l->depth == 0) {
        l->root = n;
        return 0;
    }
    frame *f = &l->stack[l->depth - 1];
    if (f->node->kind == PC_YAML_SEQ) {
        if (append(l, f, NULL, n) < 0) goto fail;
        return 0;
    }
    if (!f->key) {
        if (n->kind != PC_YAML_SCALAR) {
            set_err(l, n->line, n->col, "map keys must be plain values, not a %s",
                    n->kind == PC_YAML_MAP ? "map" : "list");
            goto fail;
        }
        f->key = n;
        return 0;
    }
    if (append(l, f, f->key, n) < 0) goto fail;
    f->key = NULL;
    return 0;
fail:
    node_free(n);
    return -1;
}

static int key_cmp(const void *a, const void *b)
{
    const pc_yaml_node *x = *(pc_yaml_node *const *)a, *y = *(pc_yaml_node *const *)b;
    size_t len = x->scalar_len < y->scalar_len ? x->scalar_len : y->scalar_len;
    int c = memcmp(x->scalar, y->scalar, len);
    if (c) return c;
    if (x->scalar_len != y->scalar_len) return x->scalar_len < y->scalar_len ? -1 : 1;
    if (x->line != y->line) return x->line < y->line ? -1 : 1;
    return x->col < y->col ? -1 : x->col > y->col;
}

static int before(const pc_yaml_node *a, const pc_yaml_node *b)
{
    return a->line < b->line || (a->line == b->line && a->col < b->col);
}

/* Sorting keeps large maps O(n log n); the duplicate reported is the first one in the file. */
static int check_duplicates(loader *l, const pc_yaml_node *map)
{
    if (map->n < 2) return 0;
    pc_yaml_node **sorted = malloc(map->n * sizeof *sorted);
    if (!sorted) {
        set_err(l, map->line, map->col, "out of memory");
        return -1;
    }
    memcpy(sorted, map->keys, map->n * sizeof *sorted);
    qsort(sorted, map->n, sizeof *sorted, key_cmp);
    const pc_yaml_node *dup = NULL, *first = NULL;
    size_t run = 0;
    for (size_t i = 1; i < map->n; i++) {
        const pc_yaml_node *a = sorted[i - 1], *b = sorted[i];
        if (a->scalar_len != b->scalar_len || memcmp(a->scalar, b->scalar, a->scalar_len) != 0) {
            run = i;
            continue;
        }
        if (!dup || before(b, dup)) {
            dup = b;
            first = sorted[run];
        }
    }
    free(sorted);
    if (!dup) return 0;
    char shown[128];
    pc__yaml_quote(shown, sizeof shown, dup->scalar, dup->scalar_len);
    set_err(l, dup->line, dup->col, "duplicate key %s (first defined at %u:%u)", shown, first->line,
            first->col);
    return -1;
}

static int push(loader *l, pc_yaml_node *n)
{
    if (l->depth == MAX_DEPTH) {
        set_err(l, n->line, n->col, "nesting is deeper than %d levels", MAX_DEPTH);
        node_free(n);
        return -1;
    }
    if (attach(l, n) < 0) return -1;
    l->stack[l->depth++] = (frame){.node = n};
    return 0;
}

static int no_anchor(loader *l, const yaml_event_t *ev, const yaml_char_t *anchor)
{
    if (!anchor) return 0;
    set_err(l, (unsigned)ev->start_mark.line + 1, (unsigned)ev->start_mark.column + 1,
            "anchors are not supported (&%s)", (const char *)anchor);
    return -1;
}

static int on_event(loader *l, const yaml_event_t *ev)
{
    unsigned line = (unsigned)ev->start_mark.line + 1, col = (unsigned)ev->start_mark.column + 1;
    pc_yaml_node *n;
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++l->ndocs > 1) {
            set_err(l, line, col, "only one document is allowed in the file");
            return -1;
        }
        return 0;
    case YAML_ALIAS_EVENT:
        set_err(l, line, col, "aliases are not supported (*%s)", (const char *)ev->data.alias.anchor);
        return -1;
    case YAML_SCALAR_EVENT:
        if (no_anchor(l, ev, ev->data.scalar.anchor) < 0) return -1;
        if (!(n = node_new(l, PC_YAML_SCALAR, &ev->start_mark))) return -1;
        n->scalar_len = ev->data.scalar.length;
        n->scalar = malloc(n->scalar_len + 1);
        if (!n->scalar) {
            node_free(n);
            set_err(l, line, col, "out of memory");
            return -1;
        }
        memcpy(n->scalar, ev->data.scalar.value, n->scalar_len);
        n->scalar[n->scalar_len] = '\0';
        /* Any non-plain style (quotes, block literals) makes the value a string, never true/123. */
        n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        return attach(l, n);
    case YAML_SEQUENCE_START_EVENT:
        if (no_anchor(l, ev, ev->data.sequence_start.anchor) < 0) return -1;
        if (!(n = node_new(l, PC_YAML_SEQ, &ev->start_mark))) return -1;
        return push(l, n);
    case YAML_MAPPING_START_EVENT:
        if (no_anchor(l, ev, ev->data.mapping_start.anchor) < 0) return -1;
        if (!(n = node_new(l, PC_YAML_MAP, &ev->start_mark))) return -1;
        return push(l, n);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (l->depth == 0) return 0;
        l->depth--;
        if (l->stack[l->depth].node->kind == PC_YAML_MAP) return check_duplicates(l, l->stack[l->depth].node);
        return 0;
    default:
        return 0;
    }
}

/* libyaml reports reader errors (bad encoding) by byte offset only. */
static void offset_to_mark(const char *buf, size_t len, size_t off, unsigned *line, unsigned *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (ch == '\n') {
            (*line)++;
            *col = 1;
        } else if ((ch & 0xc0) != 0x80) {
            (*col)++;
        }
    }
}

static void parser_error(loader *l, const yaml_parser_t *p)
{
    unsigned line, col;
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        set_err(l, 1, 1, "out of memory");
        return;
    case YAML_READER_ERROR:
        offset_to_mark(l->buf, l->len, p->problem_offset, &line, &col);
        if (p->problem_value != -1)
            set_err(l, line, col, "%s (byte 0x%02x)", p->problem ? p->problem : "invalid input",
                    (unsigned)p->problem_value & 0xff);
        else
            set_err(l, line, col, "%s", p->problem ? p->problem : "invalid input");
        return;
    default:
        line = (unsigned)p->problem_mark.line + 1;
        col = (unsigned)p->problem_mark.column + 1;
        if (p->context)
            set_err(l, line, col, "%s (%s that started at %u:%u)", p->problem ? p->problem : "syntax error",
                    p->context, (unsigned)p->context_mark.line + 1, (unsigned)p->context_mark.column + 1);
        else
            set_err(l, line, col, "%s", p->problem ? p->problem : "syntax error");
        return;
    }
}

pc_yaml_doc *pc__yaml_load_buffer(const char *name, const char *buf, size_t len, char *err, size_t errlen)
{
    loader l = {.name = name ? name : "<buffer>", .buf = buf, .len = len, .err = err, .errlen = errlen};
    if (err && errlen) err[0] = '\0';
    pc_yaml_doc *doc = calloc(1, sizeof *doc);
    if (!doc || !(doc->file = strdup(l.name))) {
        free(doc);
        set_err(&l, 1, 1, "out of memory");
        return NULL;
    }
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        pc__yaml_free(doc);
        set_err(&l, 1, 1, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)(buf ? buf : ""), buf ? len : 0);
    int ok = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            parser_error(&l, &parser);
            break;
        }
        int rc = on_event(&l, &ev);
        int done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (rc < 0) break;
        if (done) {
            ok = 1;
            break;
        }
    }
    yaml_parser_delete(&parser);
    /* Keys whose value never arrived are owned by the stack, not yet by the tree. */
    for (size_t i = 0; i < l.depth; i++)
        node_free(l.stack[i].key);
    if (!ok) {
        node_free(l.root);
        pc__yaml_free(doc);
        return NULL;
    }
    /* "---" with nothing after it is an empty plain scalar to libyaml; to a reader it is an empty file. */
    if (l.root && l.root->kind == PC_YAML_SCALAR && !l.root->quoted && l.root->scalar_len == 0) {
        node_free(l.root);
        l.root = NULL;
    }
    doc->root = l.root;
    return doc;
}

pc_yaml_doc *pc__yaml_load_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (err && errlen) snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= MAX_FILE_BYTES) {
                if (err && errlen)
                    snprintf(err, errlen, "%s: file is larger than %u bytes", path, MAX_FILE_BYTES);
                goto fail;
            }
            cap = cap ? cap * 2 : 16384;
            char *nb = realloc(buf, cap);
            if (!nb) {
                if (err && errlen) snprintf(err, errlen, "%s: out of memory", path);
                goto fail;
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) {
                if (err && errlen) snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
                goto fail;
            }
            break;
        }
    }
    fclose(f);
    pc_yaml_doc *doc = pc__yaml_load_buffer(path, buf, len, err, errlen);
    free(buf);
    return doc;
fail:
    fclose(f);
    free(buf);
    return NULL;
}
