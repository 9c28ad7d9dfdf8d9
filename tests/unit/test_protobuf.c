/* Protobuf decoder: golden decodings of messages encoded by the Python runtime (fixtures written by
 * tests/fixtures/gen_protobuf.py), descriptor-set loading and lookups, and hostile inputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protobuf.h"

typedef struct buf {
    uint8_t *data;
    size_t len;
} buf;

static const char *source_dir(void)
{
    const char *d = getenv("PC_SOURCE_DIR");
#ifdef PC_SOURCE_DIR
    if (!d || !*d) d = PC_SOURCE_DIR;
#endif
    return d && *d ? d : ".";
}

static buf fixture(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/protobuf/%s", source_dir(), name);
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    buf b = {NULL, 0};
    size_t cap = 0, n;
    do {
        if (b.len == cap) {
            cap = cap ? cap * 2 : 4096;
            b.data = realloc(b.data, cap + 1);
            assert_non_null(b.data);
        }
        n = fread(b.data + b.len, 1, cap - b.len, f);
        b.len += n;
    } while (n > 0);
    fclose(f);
    b.data[b.len] = '\0';
    return b;
}

/* ---- a tiny encoder for hand-made messages ---- */

static void put_byte(buf *b, uint8_t c)
{
    if (b->len == 0 || (b->len >= 16 && (b->len & (b->len - 1)) == 0)) {
        b->data = realloc(b->data, b->len ? b->len * 2 : 16);
        assert_non_null(b->data);
    }
    b->data[b->len++] = c;
}

static void put_bytes(buf *b, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put_byte(b, ((const uint8_t *)p)[i]);
}

static void put_varint(buf *b, uint64_t v)
{
    do {
        put_byte(b, (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)));
        v >>= 7;
    } while (v);
}

static void put_len(buf *b, uint32_t number, const void *p, size_t n)
{
    put_varint(b, (uint64_t)number << 3 | 2);
    put_varint(b, n);
    put_bytes(b, p, n);
}

static void put_str(buf *b, uint32_t number, const char *s)
{
    put_len(b, number, s, strlen(s));
}

static void put_int(buf *b, uint32_t number, uint64_t v)
{
    put_varint(b, (uint64_t)number << 3);
    put_varint(b, v);
}

/* ---- shared state: the fixture descriptor set ---- */

static pc_pb_descset *shop;

static int setup(void **state)
{
    (void)state;
    buf b = fixture("shop.pb");
    char err[256];
    int rc = pc__pb_descset_load(b.data, b.len, &shop, err, sizeof err);
    free(b.data);
    if (rc != PC_PB_OK) {
        fprintf(stderr, "load shop.pb: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pc__pb_descset_free(shop);
    return 0;
}

static const pc_pb_msgdesc *type(const char *name)
{
    const pc_pb_msgdesc *m = pc__pb_descset_message(shop, name);
    assert_non_null(m);
    return m;
}

/* ---- golden comparisons ---- */

static void format_real(char *out, size_t n, double d, bool single)
{
    for (int p = 1; p <= 17; p++) {
        snprintf(out, n, "%.*g", p, d);
        if (single ? strtof(out, NULL) == (float)d : strtod(out, NULL) == d) return;
    }
}

/* One field in the fixtures' line format: path, wire type, kind, value. */
static void format_field(const pc_pb_field *f, char *out, size_t n)
{
    static const char *kinds[] = {"uint", "int", "bool", "float", "double", "string", "bytes", "message"};
    char val[1024] = "";
    switch (f->kind) {
    case PC_PB_UINT:
        snprintf(val, sizeof val, "%llu", (unsigned long long)f->v.u);
        break;
    case PC_PB_INT:
        snprintf(val, sizeof val, "%lld", (long long)f->v.i);
        break;
    case PC_PB_BOOL:
        snprintf(val, sizeof val, "%s", f->v.u ? "true" : "false");
        break;
    case PC_PB_FLOAT:
    case PC_PB_DOUBLE:
        format_real(val, sizeof val, f->v.d, f->kind == PC_PB_FLOAT);
        break;
    case PC_PB_STRING: {
        json_object *s = json_object_new_string_len((const char *)f->data, (int)f->len);
        snprintf(val, sizeof val, "%s", json_object_to_json_string_ext(s, JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(s);
        break;
    }
    case PC_PB_BYTES:
        for (size_t i = 0; i < f->len && 2 * i + 2 < sizeof val; i++)
            snprintf(val + 2 * i, 3, "%02x", f->data[i]);
        break;
    case PC_PB_MESSAGE:
        snprintf(val, sizeof val, "%zu", f->len);
        break;
    }
    snprintf(out, n, "%s\t%u\t%s\t%s", f->path, f->wire, kinds[f->kind], val);
}

static char *json_text(const pc_pb_result *r)
{
    json_object *j = pc__pb_to_json(r);
    assert_non_null(j);
    char *s =
        strdup(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(j);
    return s;
}

static void check_golden(const char *name, const char *type_name, const char *variant)
{
    char fn[256], err[256];
    snprintf(fn, sizeof fn, "%s.bin", name);
    buf in = fixture(fn);
    const pc_pb_msgdesc *t = type_name ? type(type_name) : NULL;
    pc_pb_result *r;
    int rc = pc__pb_decode(t, in.data, in.len, NULL, &r, err, sizeof err);
    if (rc != PC_PB_OK) fail_msg("%s: %s", name, err);

    snprintf(fn, sizeof fn, "%s.%s.txt", name, variant);
    buf want = fixture(fn);
    char *line = strtok((char *)want.data, "\n");
    for (size_t i = 0; i < r->nfields; i++) {
        char got[2048];
        format_field(&r->fields[i], got, sizeof got);
        if (!line) fail_msg("%s: extra field %s", fn, got);
        assert_string_equal(got, line);
        /* Structure: depth follows the path, a message's range covers its children. */
        size_t dots = 0;
        for (const char *p = r->fields[i].path; *p; p++)
            dots += *p == '.';
        assert_int_equal(r->fields[i].depth, dots);
        assert_true(r->fields[i].end > i && r->fields[i].end <= r->nfields);
        if (r->fields[i].kind != PC_PB_MESSAGE) assert_int_equal(r->fields[i].end, i + 1);
        line = strtok(NULL, "\n");
    }
    if (line) fail_msg("%s: missing field %s", fn, line);

    snprintf(fn, sizeof fn, "%s.%s.json", name, variant);
    buf wantj = fixture(fn);
    wantj.data[strcspn((char *)wantj.data, "\n")] = '\0';
    char *got = json_text(r);
    assert_string_equal(got, (char *)wantj.data);
    free(got);
    free(wantj.data);
    free(want.data);
    free(in.data);
    pc__pb_result_free(r);
}

static void test_refund_raw(void **state)
{
    (void)state;
    check_golden("refund", NULL, "raw");
}

static void test_refund_desc(void **state)
{
    (void)state;
    check_golden("refund", "shop.v1.RefundRequest", "desc");
}

static void test_alltypes_raw(void **state)
{
    (void)state;
    check_golden("alltypes", NULL, "raw");
}

static void test_alltypes_desc(void **state)
{
    (void)state;
    check_golden("alltypes", "shop.v1.AllTypes", "desc");
}

/* Two encodings concatenated: JSON as the Python runtime merges them (last scalar, merged message). */
static void test_merge_json(void **state)
{
    (void)state;
    buf in = fixture("merge.bin"), want = fixture("merge.desc.json");
    want.data[strcspn((char *)want.data, "\n")] = '\0';
    pc_pb_result *r;
    assert_int_equal(pc__pb_decode(type("shop.v1.RefundRequest"), in.data, in.len, NULL, &r, NULL, 0),
                     PC_PB_OK);
    char *got = json_text(r);
    assert_string_equal(got, (char *)want.data);
    free(got);
    pc__pb_result_free(r);
    free(in.data);
    free(want.data);
}

/* Signed and float values through the accessors, not only through text. */
static void test_typed_values(void **state)
{
    (void)state;
    buf in = fixture("refund.bin");
    pc_pb_result *r;
    assert_int_equal(pc__pb_decode(type("shop.v1.RefundRequest"), in.data, in.len, NULL, &r, NULL, 0),
                     PC_PB_OK);
    int64_t deltas[4];
    size_t nd = 0;
    for (size_t i = 0; i < r->nfields; i++) {
        const pc_pb_field *f = &r->fields[i];
        if (strcmp(f->path, "amount") == 0) {
            assert_int_equal(f->kind, PC_PB_INT);
            assert_true(f->v.i == -250);
            assert_string_equal(f->desc->name, "amount");
        } else if (strcmp(f->path, "deltas") == 0) {
            assert_true(f->packed);
            assert_int_equal(f->desc->type, PC_PB_TYPE_SINT32);
            assert_true(nd < 4);
            deltas[nd++] = f->v.i;
        } else if (strcmp(f->path, "ratio") == 0) {
            assert_int_equal(f->kind, PC_PB_DOUBLE);
            assert_true(f->v.d == 0.25);
        } else if (strcmp(f->path, "customer") == 0) {
            assert_int_equal(f->kind, PC_PB_MESSAGE);
            assert_int_equal(f->end, i + 4); /* email + two tags */
        }
    }
    assert_int_equal(nd, 4);
    assert_true(deltas[0] == -3 && deltas[1] == 5 && deltas[2] == 0 && deltas[3] == -100);
    pc__pb_result_free(r);
    free(in.data);
}

static void test_descset_lookup(void **state)
{
    (void)state;
    const pc_pb_msgdesc *req = type("shop.v1.RefundRequest");
    assert_ptr_equal(pc__pb_descset_message(shop, ".shop.v1.RefundRequest"), req);
    assert_null(pc__pb_descset_message(shop, "shop.v1.Nope"));
    assert_null(pc__pb_descset_message(shop, "RefundRequest"));
    assert_non_null(type("shop.v1.AllTypes.Inner"));
    assert_int_equal(req->nfields, 6);
    assert_string_equal(req->fields[2].name, "customer");
    assert_ptr_equal(req->fields[2].message, type("shop.v1.Customer")); /* relative name resolved */
    assert_string_equal(req->fields[2].type_name, "shop.v1.Customer");
    assert_true(req->fields[3].repeated && req->fields[3].packed);
    assert_false(req->fields[0].repeated);
    const pc_pb_msgdesc *at = type("shop.v1.AllTypes");
    assert_ptr_equal(at->fields[16].message, type("shop.v1.AllTypes.Inner"));
    assert_false(at->fields[18].packed); /* proto2 repeated int32: unpacked */
    assert_true(at->fields[19].packed);
    assert_string_equal(at->fields[15].type_name, "shop.v1.Color");
    assert_null(at->fields[15].message);

    const char *in = NULL, *out = NULL;
    assert_int_equal(pc__pb_descset_method(shop, "/shop.v1.Orders/Refund", &in, &out), 0);
    assert_string_equal(in, "shop.v1.RefundRequest");
    assert_string_equal(out, "shop.v1.RefundReply");
    assert_int_equal(pc__pb_descset_method(shop, "/shop.v1.Admin/Inspect", &in, NULL), 0);
    assert_string_equal(in, "shop.v1.AllTypes");
    const char *bad[] = {"shop.v1.Orders/Refund",
                         "/shop.v1.Orders/",
                         "/shop.v1.Orders/Nope",
                         "/Orders/Refund",
                         "//Refund",
                         "/shop.v1.Orders/Refund/x",
                         "/",
                         "",
                         "/shop.v1.Orders"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(pc__pb_descset_method(shop, bad[i], &in, &out), -1);
}

static void test_descset_file(void **state)
{
    (void)state;
    char path[4096], err[256];
    pc_pb_descset *ds;
    snprintf(path, sizeof path, "%s/tests/fixtures/protobuf/shop.pb", source_dir());
    assert_int_equal(pc__pb_descset_load_file(path, &ds, err, sizeof err), PC_PB_OK);
    assert_non_null(pc__pb_descset_message(ds, "shop.v1.Customer"));
    pc__pb_descset_free(ds);
    assert_int_not_equal(pc__pb_descset_load_file("/nonexistent/x.pb", &ds, err, sizeof err), PC_PB_OK);
    assert_null(ds);
    assert_non_null(strstr(err, "/nonexistent/x.pb"));
}

/* The same file twice (as concatenated sets give) loads once; an empty set is valid. */
static void test_descset_twice(void **state)
{
    (void)state;
    buf b = fixture("shop.pb");
    buf two = {NULL, 0};
    put_bytes(&two, b.data, b.len);
    put_bytes(&two, b.data, b.len);
    pc_pb_descset *ds;
    char err[256];
    assert_int_equal(pc__pb_descset_load(two.data, two.len, &ds, err, sizeof err), PC_PB_OK);
    assert_non_null(pc__pb_descset_message(ds, "shop.v1.RefundReply"));
    pc__pb_descset_free(ds);
    assert_int_equal(pc__pb_descset_load((const uint8_t *)"", 0, &ds, err, sizeof err), PC_PB_OK);
    assert_null(pc__pb_descset_message(ds, "shop.v1.RefundReply"));
    assert_int_equal(pc__pb_descset_method(ds, "/shop.v1.Orders/Refund", NULL, NULL), -1);
    pc__pb_descset_free(ds);
    free(b.data);
    free(two.data);
}

/* A FileDescriptorSet holding one message with one field. */
static buf one_field_set(const char *msg_name, const char *field_name, uint64_t number, uint64_t type)
{
    buf fld = {NULL, 0}, msg = {NULL, 0}, file = {NULL, 0}, set = {NULL, 0};
    if (field_name) put_str(&fld, 1, field_name);
    put_int(&fld, 3, number);
    put_int(&fld, 5, type);
    if (msg_name) put_str(&msg, 1, msg_name);
    put_len(&msg, 2, fld.data, fld.len);
    put_str(&file, 1, "t.proto");
    put_len(&file, 4, msg.data, msg.len);
    put_len(&set, 1, file.data, file.len);
    free(fld.data);
    free(msg.data);
    free(file.data);
    return set;
}

static void test_descset_invalid(void **state)
{
    (void)state;
    char err[256];
    pc_pb_descset *ds;
    struct {
        const char *msg, *field;
        uint64_t number, type;
        int ok;
    } cases[] = {
        {"M", "x", 1, PC_PB_TYPE_STRING, 1},
        {"M", "x", 0, PC_PB_TYPE_STRING, 0},
        {"M", "x", 1u << 29, PC_PB_TYPE_STRING, 0},
        {"M", "x", 1, 0, 0},
        {"M", "x", 1, 19, 0},
        {"M", NULL, 1, PC_PB_TYPE_STRING, 0},
        {NULL, "x", 1, PC_PB_TYPE_STRING, 0},
        {"M", "x", 1, PC_PB_TYPE_MESSAGE, 0}, /* no type name */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        buf s = one_field_set(cases[i].msg, cases[i].field, cases[i].number, cases[i].type);
        int rc = pc__pb_descset_load(s.data, s.len, &ds, err, sizeof err);
        if (cases[i].ok) {
            assert_int_equal(rc, PC_PB_OK);
            assert_non_null(pc__pb_descset_message(ds, "M"));
            pc__pb_descset_free(ds);
        } else {
            assert_int_equal(rc, PC_PB_ERR_MALFORMED);
            assert_null(ds);
            assert_true(strlen(err) > 0);
        }
        free(s.data);
    }
    /* Two fields with the same number. */
    buf fld = {NULL, 0}, msg = {NULL, 0}, file = {NULL, 0}, set = {NULL, 0};
    put_str(&fld, 1, "x");
    put_int(&fld, 3, 1);
    put_int(&fld, 5, PC_PB_TYPE_INT32);
    put_str(&msg, 1, "M");
    put_len(&msg, 2, fld.data, fld.len);
    put_len(&msg, 2, fld.data, fld.len);
    put_len(&file, 4, msg.data, msg.len);
    put_len(&set, 1, file.data, file.len);
    assert_int_equal(pc__pb_descset_load(set.data, set.len, &ds, err, sizeof err), PC_PB_ERR_MALFORMED);
    assert_non_null(strstr(err, "duplicate"));
    free(fld.data);
    free(msg.data);
    free(file.data);
    free(set.data);
    /* Garbage. */
    const uint8_t junk[] = {0x0a, 0x05, 0xff, 0xff, 0xff};
    assert_int_equal(pc__pb_descset_load(junk, sizeof junk, &ds, err, sizeof err), PC_PB_ERR_MALFORMED);
}

/* Nested types deeper than the loader allows. */
static void test_descset_deep(void **state)
{
    (void)state;
    buf msg = {NULL, 0};
    put_str(&msg, 1, "M");
    for (int i = 0; i < 40; i++) {
        buf outer = {NULL, 0};
        put_str(&outer, 1, "M");
        put_len(&outer, 3, msg.data, msg.len);
        free(msg.data);
        msg = outer;
    }
    buf file = {NULL, 0}, set = {NULL, 0};
    put_len(&file, 4, msg.data, msg.len);
    put_len(&set, 1, file.data, file.len);
    pc_pb_descset *ds;
    char err[256];
    assert_int_equal(pc__pb_descset_load(set.data, set.len, &ds, err, sizeof err), PC_PB_ERR_LIMIT);
    free(msg.data);
    free(file.data);
    free(set.data);
}

/* Every prefix of the fixtures: decoding or loading must fail cleanly or succeed, never misbehave. */
static void test_truncations(void **state)
{
    (void)state;
    const char *names[] = {"refund.bin", "alltypes.bin", "shop.pb"};
    const char *types[] = {"shop.v1.RefundRequest", "shop.v1.AllTypes", NULL};
    for (int k = 0; k < 3; k++) {
        buf b = fixture(names[k]);
        for (size_t n = 0; n < b.len; n++) {
            uint8_t *copy = malloc(n + 1); /* exact size, so ASan sees any overread */
            memcpy(copy, b.data, n);
            pc_pb_result *r;
            pc_pb_descset *ds;
            char err[256];
            if (types[k]) {
                if (pc__pb_decode(type(types[k]), copy, n, NULL, &r, err, sizeof err) == PC_PB_OK)
                    pc__pb_result_free(r);
            } else if (pc__pb_descset_load(copy, n, &ds, err, sizeof err) == PC_PB_OK) {
                pc__pb_descset_free(ds);
            }
            if (pc__pb_decode(NULL, copy, n, NULL, &r, err, sizeof err) == PC_PB_OK) {
                json_object_put(pc__pb_to_json(r));
                pc__pb_result_free(r);
            }
            free(copy);
        }
        free(b.data);
    }
}

/* ---- hostile inputs ---- */

static int decode_rc(const pc_pb_msgdesc *t, const uint8_t *p, size_t n, const pc_pb_limits *lim, char *err)
{
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, p, n);
    pc_pb_result *r = (pc_pb_result *)1;
    int rc = pc__pb_decode(t, copy, n, lim, &r, err, 256);
    if (rc == PC_PB_OK) {
        assert_non_null(r);
        pc__pb_result_free(r);
    } else {
        assert_null(r);
        assert_true(strlen(err) > 0);
    }
    free(copy);
    return rc;
}

static void test_hostile(void **state)
{
    (void)state;
    static const struct {
        const char *what;
        uint8_t data[16];
        size_t len;
        int rc;
        const char *msg;
    } cases[] = {
        {"truncated varint", {0x08, 0x80}, 2, PC_PB_ERR_MALFORMED, "truncated varint"},
        {"truncated tag", {0x80}, 1, PC_PB_ERR_MALFORMED, "truncated varint"},
        {"length beyond end", {0x0a, 0x05, 'a'}, 3, PC_PB_ERR_MALFORMED, "beyond end"},
        {"huge length",
         {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
         11,
         PC_PB_ERR_MALFORMED,
         "beyond end"},
        {"11-byte varint",
         {0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
         12,
         PC_PB_ERR_MALFORMED,
         "64 bits"},
        {"10th byte overflow",
         {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},
         11,
         PC_PB_ERR_MALFORMED,
         "64 bits"},
        {"field number 0", {0x00, 0x01}, 2, PC_PB_ERR_MALFORMED, "field number 0"},
        {"field number 0 LEN", {0x02, 0x00}, 2, PC_PB_ERR_MALFORMED, "field number 0"},
        {"tag over 32 bits", {0x80, 0x80, 0x80, 0x80, 0x10, 0x00}, 6, PC_PB_ERR_MALFORMED, "tag"},
        {"wire type 6", {0x0e, 0x00}, 2, PC_PB_ERR_MALFORMED, "wire type"},
        {"wire type 7", {0x0f, 0x00}, 2, PC_PB_ERR_MALFORMED, "wire type"},
        {"truncated fixed64", {0x09, 1, 2, 3, 4, 5, 6, 7}, 8, PC_PB_ERR_MALFORMED, "truncated"},
        {"truncated fixed32", {0x0d, 1, 2, 3}, 4, PC_PB_ERR_MALFORMED, "truncated"},
        {"start group", {0x0b, 0x08, 0x01, 0x0c}, 4, PC_PB_ERR_UNSUPPORTED, "group"},
        {"end group", {0x0c}, 1, PC_PB_ERR_UNSUPPORTED, "group"},
        {"valid then truncated", {0x08, 0x01, 0x12}, 3, PC_PB_ERR_MALFORMED, "offset 2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        for (int d = 0; d < 3; d++) {
            const pc_pb_msgdesc *t = d == 0   ? NULL
                                     : d == 1 ? type("shop.v1.RefundRequest")
                                              : type("shop.v1.AllTypes");
            char err[256] = "";
            int rc = decode_rc(t, cases[i].data, cases[i].len, NULL, err);
            if (rc != cases[i].rc || !strstr(err, cases[i].msg))
                fail_msg("%s (descriptor %d): rc %d, \"%s\"", cases[i].what, d, rc, err);
        }
    }
}

/* `levels` messages each holding the next in field `number`, the innermost holding {1: 1}. */
static buf nest(int levels, uint32_t number)
{
    buf b = {NULL, 0};
    put_int(&b, 3, 1);
    for (int i = 0; i < levels; i++) {
        buf o = {NULL, 0};
        put_len(&o, number, b.data, b.len);
        free(b.data);
        b = o;
    }
    return b;
}

static void test_depth(void **state)
{
    (void)state;
    char err[256];
    const pc_pb_msgdesc *inner = type("shop.v1.AllTypes.Inner");
    for (int d = 0; d < 2; d++) {
        const pc_pb_msgdesc *t = d ? inner : NULL;
        buf ok = nest(32, 2), bomb = nest(33, 2), big = nest(1000, 2);
        assert_int_equal(decode_rc(t, ok.data, ok.len, NULL, err), PC_PB_OK);
        assert_int_equal(decode_rc(t, bomb.data, bomb.len, NULL, err), PC_PB_ERR_LIMIT);
        assert_non_null(strstr(err, "deeper than 32"));
        assert_int_equal(decode_rc(t, big.data, big.len, NULL, err), PC_PB_ERR_LIMIT);
        pc_pb_limits lim;
        pc__pb_limits_default(&lim);
        lim.max_depth = 3;
        buf three = nest(3, 2), four = nest(4, 2);
        assert_int_equal(decode_rc(t, three.data, three.len, &lim, err), PC_PB_OK);
        assert_int_equal(decode_rc(t, four.data, four.len, &lim, err), PC_PB_ERR_LIMIT);
        free(ok.data);
        free(bomb.data);
        free(big.data);
        free(three.data);
        free(four.data);
    }
    /* Binary data at the depth limit that is not a message is just bytes. */
    pc_pb_limits lim;
    pc__pb_limits_default(&lim);
    lim.max_depth = 0;
    const uint8_t blob[] = {0x0a, 0x03, 0x00, 0xff, 0x01};
    pc_pb_result *r;
    assert_int_equal(pc__pb_decode(NULL, blob, sizeof blob, &lim, &r, err, sizeof err), PC_PB_OK);
    assert_int_equal(r->nfields, 1);
    assert_int_equal(r->fields[0].kind, PC_PB_BYTES);
    pc__pb_result_free(r);
}

static void test_limits(void **state)
{
    (void)state;
    char err[256];
    pc_pb_limits lim;
    pc__pb_limits_default(&lim);
    assert_int_equal(lim.max_depth, 32);
    assert_int_equal(lim.max_fields, 10000);
    buf many = {NULL, 0};
    for (int i = 0; i < 10001; i++)
        put_int(&many, 1, (uint64_t)i);
    assert_int_equal(decode_rc(NULL, many.data, many.len - 3, NULL, err), PC_PB_OK); /* 10000 fields */
    assert_int_equal(decode_rc(NULL, many.data, many.len, NULL, err), PC_PB_ERR_LIMIT);
    assert_non_null(strstr(err, "more than 10000 fields"));
    lim.max_fields = 3;
    assert_int_equal(decode_rc(NULL, many.data, 6, &lim, err), PC_PB_OK);
    assert_int_equal(decode_rc(NULL, many.data, 8, &lim, err), PC_PB_ERR_LIMIT);
    /* Packed elements count too. */
    buf packed = {NULL, 0};
    put_len(&packed, 4, "\x01\x02\x03\x04", 4);
    assert_int_equal(decode_rc(type("shop.v1.RefundRequest"), packed.data, packed.len, &lim, err),
                     PC_PB_ERR_LIMIT);
    pc__pb_limits_default(&lim);
    lim.max_input = 5;
    assert_int_equal(decode_rc(NULL, many.data, 6, &lim, err), PC_PB_ERR_LIMIT);
    assert_int_equal(decode_rc(NULL, many.data, 4, &lim, err), PC_PB_OK);
    free(many.data);
    free(packed.data);
}

/* Described fields that do not match their declaration. */
static void test_descriptor_mismatch(void **state)
{
    (void)state;
    const pc_pb_msgdesc *req = type("shop.v1.RefundRequest");
    char err[256];
    pc_pb_result *r;
    buf b = {NULL, 0};
    put_str(&b, 1, "id");
    put_str(&b, 2, "x");       /* amount as LEN: kept as an unknown field */
    put_int(&b, 9, 7);         /* undeclared */
    put_len(&b, 1, "\xff", 1); /* string field, not UTF-8 */
    assert_int_equal(pc__pb_decode(req, b.data, b.len, NULL, &r, err, sizeof err), PC_PB_OK);
    assert_int_equal(r->nfields, 4);
    assert_string_equal(r->fields[1].path, "2");
    assert_null(r->fields[1].desc);
    assert_int_equal(r->fields[1].kind, PC_PB_STRING);
    assert_string_equal(r->fields[2].path, "9");
    assert_string_equal(r->fields[3].path, "order_id");
    assert_int_equal(r->fields[3].kind, PC_PB_BYTES);
    char *j = json_text(r);
    assert_string_equal(j, "{\"order_id\":\"/w==\",\"2\":\"x\",\"9\":7}");
    free(j);
    pc__pb_result_free(r);
    free(b.data);

    /* A declared message that does not parse is an error, not a guess. */
    buf bad = {NULL, 0};
    put_len(&bad, 3, "\x00\x01", 2);
    assert_int_equal(decode_rc(req, bad.data, bad.len, NULL, err), PC_PB_ERR_MALFORMED);
    assert_int_equal(decode_rc(NULL, bad.data, bad.len, NULL, err), PC_PB_OK);
    free(bad.data);

    /* Truncated packed run. */
    buf pk = {NULL, 0};
    put_len(&pk, 4, "\x02\x80", 2);
    assert_int_equal(decode_rc(req, pk.data, pk.len, NULL, err), PC_PB_ERR_MALFORMED);
    assert_non_null(strstr(err, "packed"));
    free(pk.data);
    buf pk64 = {NULL, 0};
    put_len(&pk64, 20, "\x01\x02\x03", 3);
    assert_int_equal(decode_rc(type("shop.v1.AllTypes"), pk64.data, pk64.len, NULL, err),
                     PC_PB_ERR_MALFORMED);
    free(pk64.data);

    /* Packed sent unpacked, and unpacked sent packed: both decode, as parsers accept both. */
    buf both = {NULL, 0};
    put_int(&both, 4, 3);              /* sint32 -2 */
    put_len(&both, 19, "\x05\x06", 2); /* nums 5, 6 */
    assert_int_equal(pc__pb_decode(type("shop.v1.AllTypes"), both.data, both.len, NULL, &r, err, sizeof err),
                     PC_PB_OK);
    j = json_text(r);
    assert_string_equal(j, "{\"u64\":3,\"nums\":[5,6]}");
    free(j);
    pc__pb_result_free(r);
    assert_int_equal(pc__pb_decode(req, both.data, both.len, NULL, &r, err, sizeof err), PC_PB_OK);
    j = json_text(r);
    assert_string_equal(j, "{\"deltas\":[-2],\"19\":\"\\u0005\\u0006\"}");
    free(j);
    pc__pb_result_free(r);
    free(both.data);
}

/* Without a descriptor: what a length-delimited value is taken for. */
static void test_heuristics(void **state)
{
    (void)state;
    pc_pb_result *r;
    char err[256];
    buf b = {NULL, 0};
    put_str(&b, 1, "hi");              /* parses as {13: 105} but reads as text */
    put_len(&b, 2, "\x08\x96\x01", 3); /* {1: 150} */
    put_len(&b, 3, "", 0);
    put_len(&b, 4, "\x0b\x0c", 2);     /* a group inside: not a message, but UTF-8 */
    put_len(&b, 5, "\xc3\xa9\x01", 3); /* UTF-8 with a control character, not a message */
    put_len(&b, 6, "\xed\xa0\x80", 3); /* a surrogate: not UTF-8 */
    put_len(&b, 7, "\x0a\x02\x08", 3); /* nested length beyond its end: UTF-8 again */
    assert_int_equal(pc__pb_decode(NULL, b.data, b.len, NULL, &r, err, sizeof err), PC_PB_OK);
    pc_pb_kind want[] = {PC_PB_STRING, PC_PB_MESSAGE, PC_PB_UINT,  PC_PB_STRING,
                         PC_PB_STRING, PC_PB_STRING,  PC_PB_BYTES, PC_PB_STRING};
    const char *paths[] = {"1", "2", "2.1", "3", "4", "5", "6", "7"};
    assert_int_equal(r->nfields, 8);
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(r->fields[i].kind, want[i]);
        assert_string_equal(r->fields[i].path, paths[i]);
    }
    assert_int_equal(r->fields[1].end, 3);
    assert_int_equal(r->fields[2].v.u, 150);
    assert_int_equal(r->fields[2].depth, 1);
    char *j = json_text(r);
    assert_string_equal(j, "{\"1\":\"hi\",\"2\":{\"1\":150},\"3\":\"\",\"4\":\"\\u000b\\f\","
                           "\"5\":\"é\\u0001\",\"6\":\"7aCA\",\"7\":\"\\n\\u0002\\b\"}");
    free(j);
    pc__pb_result_free(r);
    free(b.data);

    /* Empty message. */
    assert_int_equal(pc__pb_decode(NULL, NULL, 0, NULL, &r, err, sizeof err), PC_PB_OK);
    assert_int_equal(r->nfields, 0);
    j = json_text(r);
    assert_string_equal(j, "{}");
    free(j);
    pc__pb_result_free(r);
}

/* Text is told from a message byte by byte, eight at a time where they are plain ASCII: a value
 * that parses as a message (field 13, varints) is a string when it reads as text, a message when
 * one byte is a control character or DEL, wherever that byte sits. */
static void test_text_at_every_position(void **state)
{
    (void)state;
    char err[256];
    for (size_t at = 1; at < 24; at += 2) {
        for (unsigned c = 0; c < 0x80; c++) {
            char v[24];
            for (size_t i = 0; i < sizeof v; i += 2)
                memcpy(v + i, "hi", 2); /* {13: 105} twelve times */
            v[at] = (char)c;            /* the varint's value: still a message */
            buf b = {NULL, 0};
            put_len(&b, 1, v, sizeof v);
            pc_pb_result *r;
            assert_int_equal(pc__pb_decode(NULL, b.data, b.len, NULL, &r, err, sizeof err), PC_PB_OK);
            int control = (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f;
            if (r->fields[0].kind != (control ? PC_PB_MESSAGE : PC_PB_STRING))
                fail_msg("byte 0x%02x at %zu: kind %d", c, at, (int)r->fields[0].kind);
            pc__pb_result_free(r);
            free(b.data);
        }
    }
}

/* Non-finite floats become strings; the result outlives the caller's buffer. */
static void test_json_special(void **state)
{
    (void)state;
    pc_pb_result *r;
    uint8_t *b = malloc(32);
    size_t n = 0;
    double vals[] = {NAN, -INFINITY, 1e-300};
    for (int i = 0; i < 3; i++) {
        uint64_t bits;
        memcpy(&bits, &vals[i], 8);
        b[n++] = 0x31; /* field 6 (ratio), I64 */
        for (int k = 0; k < 8; k++)
            b[n++] = (uint8_t)(bits >> (8 * k));
    }
    assert_int_equal(pc__pb_decode(type("shop.v1.RefundRequest"), b, n, NULL, &r, NULL, 0), PC_PB_OK);
    memset(b, 0, n);
    free(b);
    char *j = json_text(r);
    assert_string_equal(j, "{\"ratio\":1e-300}");
    free(j);
    const char *want[] = {"NaN", "-Infinity"};
    for (int i = 0; i < 2; i++) {
        pc_pb_result one = *r;
        one.fields = &r->fields[i];
        one.nfields = 1;
        json_object *o = pc__pb_to_json(&one), *v;
        assert_true(json_object_object_get_ex(o, "ratio", &v));
        assert_string_equal(json_object_get_string(v), want[i]);
        json_object_put(o);
    }
    pc__pb_result_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refund_raw),     cmocka_unit_test(test_refund_desc),
        cmocka_unit_test(test_alltypes_raw),   cmocka_unit_test(test_alltypes_desc),
        cmocka_unit_test(test_merge_json),     cmocka_unit_test(test_typed_values),
        cmocka_unit_test(test_descset_lookup), cmocka_unit_test(test_descset_file),
        cmocka_unit_test(test_descset_twice),  cmocka_unit_test(test_descset_invalid),
        cmocka_unit_test(test_descset_deep),   cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_hostile),        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_limits),         cmocka_unit_test(test_descriptor_mismatch),
        cmocka_unit_test(test_heuristics),     cmocka_unit_test(test_text_at_every_position),
        cmocka_unit_test(test_json_special),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
