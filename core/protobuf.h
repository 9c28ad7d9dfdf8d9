/* Protobuf wire-format decoding for plugins: a message becomes a flat list of typed fields, named when
 * a descriptor set (FileDescriptorSet, as protoc writes it) says what the message is, and can be
 * rendered as JSON. No generated code; hostile input is bounded by limits and never read past. */
#ifndef PC_PROTOBUF_H
#define PC_PROTOBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_object;

enum {
    PC_PB_OK = 0,
    PC_PB_ERR_MALFORMED = -1,   /* not valid wire format (truncated, bad tag, bad wire type, ...) */
    PC_PB_ERR_LIMIT = -2,       /* over a pc_pb_limits bound */
    PC_PB_ERR_UNSUPPORTED = -3, /* groups (wire types 3 and 4) */
    PC_PB_ERR_NOMEM = -4,
};

/* Wire types as on the wire. */
enum {
    PC_PB_WIRE_VARINT = 0,
    PC_PB_WIRE_I64 = 1,
    PC_PB_WIRE_LEN = 2,
    PC_PB_WIRE_SGROUP = 3,
    PC_PB_WIRE_EGROUP = 4,
    PC_PB_WIRE_I32 = 5,
};

/* Field types, numbered as in google/protobuf/descriptor.proto. */
typedef enum {
    PC_PB_TYPE_DOUBLE = 1,
    PC_PB_TYPE_FLOAT = 2,
    PC_PB_TYPE_INT64 = 3,
    PC_PB_TYPE_UINT64 = 4,
    PC_PB_TYPE_INT32 = 5,
    PC_PB_TYPE_FIXED64 = 6,
    PC_PB_TYPE_FIXED32 = 7,
    PC_PB_TYPE_BOOL = 8,
    PC_PB_TYPE_STRING = 9,
    PC_PB_TYPE_GROUP = 10,
    PC_PB_TYPE_MESSAGE = 11,
    PC_PB_TYPE_BYTES = 12,
    PC_PB_TYPE_UINT32 = 13,
    PC_PB_TYPE_ENUM = 14,
    PC_PB_TYPE_SFIXED32 = 15,
    PC_PB_TYPE_SFIXED64 = 16,
    PC_PB_TYPE_SINT32 = 17,
    PC_PB_TYPE_SINT64 = 18,
} pc_pb_type;

typedef struct pc_pb_msgdesc pc_pb_msgdesc;

typedef struct pc_pb_fielddesc {
    const char *name;
    uint32_t number;
    pc_pb_type type;
    bool repeated;
    bool packed;                  /* declared packed (proto3 default or [packed=true]); both forms decode */
    const char *type_name;        /* message/enum full name without the leading dot, else NULL */
    const pc_pb_msgdesc *message; /* resolved MESSAGE type; NULL if the set lacks it */
} pc_pb_fielddesc;

struct pc_pb_msgdesc {
    const char *full_name; /* "shop.v1.RefundRequest" */
    const pc_pb_fielddesc *fields;
    size_t nfields; /* sorted by number */
};

typedef struct pc_pb_descset pc_pb_descset;

typedef struct pc_pb_limits {
    uint32_t max_depth;  /* nested messages below the top level; default 32, at most 1000 */
    uint32_t max_fields; /* entries in the result, nested-message entries included; default 10000 */
    size_t max_input;    /* bytes of the encoded message; default 4 MiB */
} pc_pb_limits;

/* What a field's value means, from the descriptor or, without one, from the wire alone. */
typedef enum {
    PC_PB_UINT,    /* v.u: varint and fixed values without a descriptor, uint32/uint64/fixed32/fixed64 */
    PC_PB_INT,     /* v.i: int32/int64/sint32/sint64 (zigzag undone)/sfixed32/sfixed64/enum */
    PC_PB_BOOL,    /* v.u is 0 or 1 */
    PC_PB_FLOAT,   /* v.d */
    PC_PB_DOUBLE,  /* v.d */
    PC_PB_STRING,  /* data/len: valid UTF-8 */
    PC_PB_BYTES,   /* data/len: anything else, including a string field that is not valid UTF-8 */
    PC_PB_MESSAGE, /* data/len: the encoded message; its fields follow, up to index `end` */
} pc_pb_kind;

typedef struct pc_pb_field {
    const char *path; /* "3.2" by numbers, or "customer.tags" where the descriptor names the fields */
    uint32_t number;  /* last path component */
    uint8_t wire;     /* wire type of this value (of the element, for packed elements) */
    bool packed;      /* one element of a packed run */
    uint16_t depth;   /* 0 for top-level fields */
    pc_pb_kind kind;
    /* NULL when the field is not described (no descriptor, undeclared number, wrong wire type) */
    const pc_pb_fielddesc *desc;
    union {
        uint64_t u;
        int64_t i;
        double d;
    } v;
    const uint8_t *data; /* STRING, BYTES, MESSAGE: into the result's copy of the input; no NUL */
    size_t len;
    uint32_t end; /* MESSAGE: index one past its last descendant; others: own index + 1 */
} pc_pb_field;

/* Fields in wire order, nested fields right after their message entry (pre-order). A repeated field
 * appears once per value with the same path. Everything is owned by the result. */
typedef struct pc_pb_result {
    const pc_pb_field *fields;
    size_t nfields;
    const pc_pb_msgdesc *type; /* as passed to decode */
} pc_pb_result;

/* Fill `l` with the defaults. */
void pc__pb_limits_default(pc_pb_limits *l);

/* Decode `len` bytes as a message of `type` (NULL: no descriptor). Without a descriptor a
 * length-delimited value is a nested message when it parses fully as one and is not plain text
 * (UTF-8 without control characters but tab, LF, CR), else a string when valid UTF-8, else bytes. With one,
 * described fields follow their declared types exactly (a nested message that does not parse is an error);
 * fields the type does not declare, or that arrive with another wire type, and messages whose type the set
 * lacks, are decoded as without a descriptor. Packed and unpacked repeated scalars are both accepted. Groups
 * are rejected. `lim` NULL: defaults. On success *out is set (free with pc__pb_result_free); on failure a
 * message goes to `err` when given. Returns PC_PB_OK or a PC_PB_ERR_* code. */
int pc__pb_decode(const pc_pb_msgdesc *type, const uint8_t *data, size_t len, const pc_pb_limits *lim,
                  pc_pb_result **out, char *err, size_t errlen);
void pc__pb_result_free(pc_pb_result *r);

/* The decoded message as a new JSON object (release with json_object_put), NULL on allocation
 * failure. Keys are field names when described, else field numbers. Repeated fields are arrays
 * (without a descriptor: a field seen more than once); a singular field seen twice keeps the last
 * scalar or merges the messages, as a protobuf parser would. Bytes are base64, 64-bit integers
 * numbers, non-finite floats the strings "NaN", "Infinity", "-Infinity". */
struct json_object *pc__pb_to_json(const pc_pb_result *r);

/* Load a serialized FileDescriptorSet (include imports for complete types). Returns PC_PB_OK or a
 * PC_PB_ERR_* code with a message in `err`. */
int pc__pb_descset_load(const uint8_t *data, size_t len, pc_pb_descset **out, char *err, size_t errlen);
int pc__pb_descset_load_file(const char *path, pc_pb_descset **out, char *err, size_t errlen);
void pc__pb_descset_free(pc_pb_descset *ds);

/* Message type by full name ("shop.v1.RefundRequest", a leading dot allowed); NULL if absent. */
const pc_pb_msgdesc *pc__pb_descset_message(const pc_pb_descset *ds, const char *full_name);

/* Input and output message full names of a gRPC method given as its request path
 * ("/shop.v1.Orders/Refund"). Either out pointer may be NULL. Returns 0, or -1 if not found. */
int pc__pb_descset_method(const pc_pb_descset *ds, const char *path, const char **input, const char **output);

#endif
