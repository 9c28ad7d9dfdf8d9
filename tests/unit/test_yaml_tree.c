/* YAML tree: structure and positions of loaded nodes, and the refusals (anchors, aliases, duplicate and
 * non-scalar keys, several documents, depth and size bounds) with their exact messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "yaml_tree.h"

static pc_yaml_doc *load(const char *text, char *err, size_t errlen)
{
    return pc__yaml_load_buffer("t.yaml", text, strlen(text), err, errlen);
}

static void expect_error(const char *text, const char *want)
{
    char err[512] = "";
    pc_yaml_doc *doc = load(text, err, sizeof err);
    assert_null(doc);
    assert_string_equal(err, want);
}

static void test_structure_and_positions(void **state)
{
    (void)state;
    const char *text = "name: edge\n"
                       "count: 42\n"
                       "flag: \"true\"\n"
                       "single: 'x'\n"
                       "list:\n"
                       "  - a\n"
                       "  - {k: v}\n"
                       "block: |\n"
                       "  text\n";
    char err[256] = "";
    pc_yaml_doc *doc = load(text, err, sizeof err);
    assert_non_null(doc);
    assert_string_equal(doc->file, "t.yaml");
    const pc_yaml_node *root = doc->root;
    assert_non_null(root);
    assert_int_equal(root->kind, PC_YAML_MAP);
    assert_int_equal(root->n, 6);
    assert_int_equal(root->line, 1);
    assert_int_equal(root->col, 1);

    const pc_yaml_node *n = pc__yaml_get(root, "name");
    assert_non_null(n);
    assert_int_equal(n->kind, PC_YAML_SCALAR);
    assert_string_equal(n->scalar, "edge");
    assert_int_equal(n->scalar_len, 4);
    assert_false(n->quoted);
    assert_int_equal(n->line, 1);
    assert_int_equal(n->col, 7);

    n = pc__yaml_get(root, "count");
    assert_string_equal(n->scalar, "42");
    assert_int_equal(n->line, 2);
    assert_int_equal(n->col, 8);
    assert_false(n->quoted);

    n = pc__yaml_get(root, "flag");
    assert_string_equal(n->scalar, "true");
    assert_true(n->quoted);
    n = pc__yaml_get(root, "single");
    assert_string_equal(n->scalar, "x");
    assert_true(n->quoted);
    n = pc__yaml_get(root, "block");
    assert_string_equal(n->scalar, "text\n");
    assert_true(n->quoted);

    const pc_yaml_node *list = pc__yaml_get(root, "list");
    assert_int_equal(list->kind, PC_YAML_SEQ);
    assert_int_equal(list->n, 2);
    assert_null(list->keys);
    assert_int_equal(list->line, 6);
    assert_int_equal(list->col, 3);
    assert_string_equal(list->items[0]->scalar, "a");
    assert_int_equal(list->items[0]->line, 6);
    assert_int_equal(list->items[0]->col, 5);
    const pc_yaml_node *m = list->items[1];
    assert_int_equal(m->kind, PC_YAML_MAP);
    assert_int_equal(m->line, 7);
    assert_int_equal(m->col, 5);
    assert_string_equal(m->keys[0]->scalar, "k");
    assert_int_equal(m->keys[0]->col, 6);
    assert_string_equal(pc__yaml_get(m, "k")->scalar, "v");

    assert_null(pc__yaml_get(root, "missing"));
    assert_null(pc__yaml_get(root, "nam"));
    assert_null(pc__yaml_get(list, "a"));
    assert_null(pc__yaml_get(NULL, "a"));
    pc__yaml_free(doc);
}

static void test_empty_documents(void **state)
{
    (void)state;
    char err[256];
    const char *texts[] = {"", "# only a comment\n", "---\n...\n"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        pc_yaml_doc *doc = load(texts[i], err, sizeof err);
        assert_non_null(doc);
        assert_null(doc->root);
        pc__yaml_free(doc);
    }
    pc__yaml_free(NULL);
}

static void test_embedded_nul_keeps_length(void **state)
{
    (void)state;
    char err[256];
    pc_yaml_doc *doc = load("k: \"a\\0b\"\n", err, sizeof err);
    assert_non_null(doc);
    const pc_yaml_node *n = pc__yaml_get(doc->root, "k");
    assert_int_equal(n->scalar_len, 3);
    assert_memory_equal(n->scalar, "a\0b", 3);
    pc__yaml_free(doc);
}

static void test_anchors_and_aliases(void **state)
{
    (void)state;
    expect_error("a: &x 1\nb: *x\n", "t.yaml:1:4: anchors are not supported (&x)");
    expect_error("a: &m {k: v}\n", "t.yaml:1:4: anchors are not supported (&m)");
    expect_error("a:\n  - &s [1]\n", "t.yaml:2:5: anchors are not supported (&s)");
    expect_error("a: 1\nb: *x\n", "t.yaml:2:4: aliases are not supported (*x)");
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    expect_error("a: 1\nb: 2\na: 3\n", "t.yaml:3:1: duplicate key \"a\" (first defined at 1:1)");
    expect_error("top:\n  x: 1\n  y: 2\n  y: 3\n  x: 4\n",
                 "t.yaml:4:3: duplicate key \"y\" (first defined at 3:3)");
    expect_error("{a: 1, \"a\": 2}\n", "t.yaml:1:8: duplicate key \"a\" (first defined at 1:2)");

    /* A large map goes through the sorted check; the first duplicate in the file is the one named. */
    size_t cap = 1u << 16, o = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (int i = 0; i < 2000; i++)
        o += (size_t)snprintf(text + o, cap - o, "k%d: %d\n", 1999 - i, i);
    o += (size_t)snprintf(text + o, cap - o, "k7: x\nk3: y\n");
    expect_error(text, "t.yaml:2001:1: duplicate key \"k7\" (first defined at 1993:1)");
    free(text);

    /* Same text, different keys: not duplicates. */
    char err[256];
    pc_yaml_doc *doc = load("a: 1\naa: 2\nA: 3\n", err, sizeof err);
    assert_non_null(doc);
    assert_int_equal(doc->root->n, 3);
    pc__yaml_free(doc);
}

static void test_non_scalar_keys(void **state)
{
    (void)state;
    expect_error("? [a, b]\n: 1\n", "t.yaml:1:3: map keys must be plain values, not a list");
    expect_error("{{a: 1}: 2}\n", "t.yaml:1:2: map keys must be plain values, not a map");
}

static void test_multiple_documents(void **state)
{
    (void)state;
    expect_error("a: 1\n---\nb: 2\n", "t.yaml:2:1: only one document is allowed in the file");
    expect_error("---\na: 1\n...\n---\n", "t.yaml:4:1: only one document is allowed in the file");
}

static void test_syntax_errors(void **state)
{
    (void)state;
    expect_error(
        "a: [1, 2\n",
        "t.yaml:2:1: did not find expected ',' or ']' (while parsing a flow sequence that started at 1:4)");
    expect_error("a: 1\n b: 2\n", "t.yaml:2:3: mapping values are not allowed in this context");
    /* Invalid UTF-8 is found by the reader, which only knows a byte offset; it is turned into line:col. */
    expect_error("a: 1\nb: \xff\n", "t.yaml:2:4: invalid leading UTF-8 octet (byte 0xff)");
}

static char *nested(int depth)
{
    char *s = malloc((size_t)depth * 2 + 2);
    assert_non_null(s);
    memset(s, '[', (size_t)depth);
    memset(s + depth, ']', (size_t)depth);
    s[2 * depth] = '\n';
    s[2 * depth + 1] = '\0';
    return s;
}

static void test_depth_limit(void **state)
{
    (void)state;
    char err[256];
    char *ok = nested(64);
    pc_yaml_doc *doc = load(ok, err, sizeof err);
    assert_non_null(doc);
    pc__yaml_free(doc);
    free(ok);

    char *deep = nested(65);
    expect_error(deep, "t.yaml:1:65: nesting is deeper than 64 levels");
    free(deep);

    /* Far deeper input fails at the same point without recursion trouble. */
    char *very = nested(100000);
    expect_error(very, "t.yaml:1:65: nesting is deeper than 64 levels");
    free(very);
}

static void test_node_limit(void **state)
{
    (void)state;
    /* One list and 1,000,000 items: one node over the limit. */
    size_t n = 1000000, len = 2 * n + 3;
    char *text = malloc(len);
    assert_non_null(text);
    text[0] = '[';
    for (size_t i = 0; i < n; i++) {
        text[1 + 2 * i] = '0';
        text[2 + 2 * i] = ',';
    }
    text[2 * n] = ']';
    text[2 * n + 1] = '\n';
    text[2 * n + 2] = '\0';
    char err[256];
    pc_yaml_doc *doc = pc__yaml_load_buffer("t.yaml", text, strlen(text), err, sizeof err);
    assert_null(doc);
    assert_string_equal(err, "t.yaml:1:2000000: too many nodes (the limit is 1000000)");

    /* With one item fewer the document fits exactly. */
    text[2 * n - 2] = ']';
    text[2 * n - 1] = '\0';
    doc = pc__yaml_load_buffer("t.yaml", text, strlen(text), err, sizeof err);
    assert_non_null(doc);
    assert_int_equal(doc->root->n, n - 1);
    pc__yaml_free(doc);
    free(text);
}

static void test_load_file(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/pc_yaml_XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(dir));
    char path[600];
    snprintf(path, sizeof path, "%s/a.yaml", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("x:\n  - 1\n  - 2\ny: 3\ny: 4\n", f);
    fclose(f);

    char err[768], want[768];
    pc_yaml_doc *doc = pc__yaml_load_file(path, err, sizeof err);
    assert_null(doc);
    snprintf(want, sizeof want, "%s:5:1: duplicate key \"y\" (first defined at 4:1)", path);
    assert_string_equal(err, want);

    f = fopen(path, "w");
    assert_non_null(f);
    fputs("x:\n  - 1\n  - 2\n", f);
    fclose(f);
    doc = pc__yaml_load_file(path, err, sizeof err);
    assert_non_null(doc);
    assert_string_equal(doc->file, path);
    assert_int_equal(pc__yaml_get(doc->root, "x")->n, 2);
    pc__yaml_free(doc);

    unlink(path);
    doc = pc__yaml_load_file(path, err, sizeof err);
    assert_null(doc);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
    assert_string_equal(err, want);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_structure_and_positions),
        cmocka_unit_test(test_empty_documents),
        cmocka_unit_test(test_embedded_nul_keeps_length),
        cmocka_unit_test(test_anchors_and_aliases),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_non_scalar_keys),
        cmocka_unit_test(test_multiple_documents),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_node_limit),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
