/* A YAML document loaded with libyaml into a small tree of nodes that remember where they
 * were written, so every later validation error can name file:line:column. */
#ifndef PC_YAML_TREE_H
#define PC_YAML_TREE_H

#include <stddef.h>

typedef enum { PC_YAML_SCALAR, PC_YAML_SEQ, PC_YAML_MAP } pc_yaml_kind;

typedef struct pc_yaml_node pc_yaml_node;
struct pc_yaml_node {
    pc_yaml_kind kind;
    unsigned line, col; /* 1-based */
    char *scalar;       /* PC_YAML_SCALAR: the value, NUL-terminated */
    size_t scalar_len;
    int quoted; /* scalar was quoted (so "true" stays a string) */
    /* PC_YAML_SEQ: items; PC_YAML_MAP: keys[i] -> items[i] (keys are scalars) */
    pc_yaml_node **keys;
    pc_yaml_node **items;
    size_t n;
};

typedef struct pc_yaml_doc {
    char *file;
    pc_yaml_node *root; /* NULL for an empty document */
} pc_yaml_doc;

/* Parse a file (or an in-memory buffer, `name` used in messages). -1 with "file:line:col: msg" on error. */
pc_yaml_doc *pc__yaml_load_file(const char *path, char *err, size_t errlen);
pc_yaml_doc *pc__yaml_load_buffer(const char *name, const char *buf, size_t len, char *err, size_t errlen);
void pc__yaml_free(pc_yaml_doc *doc);

/* A scalar for an error message: quoted, control characters escaped, long ones cut. Returns out. */
const char *pc__yaml_quote(char *out, size_t outlen, const char *s, size_t len);

/* Map lookup by key; NULL when absent or node is not a map. */
const pc_yaml_node *pc__yaml_get(const pc_yaml_node *map, const char *key);

/* Building trees (for configs made from others): a deep copy; a new scalar at line:col; a key
 * appended to a map (it takes `value`). NULL / -1 when out of memory. */
pc_yaml_node *pc__yaml_copy(const pc_yaml_node *n);
pc_yaml_node *pc__yaml_scalar_new(const char *text, unsigned line, unsigned col);
pc_yaml_node *pc__yaml_map_new(unsigned line, unsigned col);
int pc__yaml_map_add(pc_yaml_node *map, const char *key, pc_yaml_node *value);
void pc__yaml_node_free(pc_yaml_node *n);

#endif
