/* Incremental gRPC length-prefixed message decoder. Fed DATA chunks as they arrive (any split),
 * it yields each whole message, decompressed when flagged, with size limits applied while
 * decompressing so a small compressed bomb cannot allocate more than the limit. */
#ifndef PC_GRPC_FRAME_H
#define PC_GRPC_FRAME_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    PC_GRPC_ENC_IDENTITY = 0,
    PC_GRPC_ENC_GZIP,
    PC_GRPC_ENC_DEFLATE,
    PC_GRPC_ENC_UNKNOWN,
} pc_grpc_encoding;

enum {
    PC_GRPC_FRAME_OK = 0,
    PC_GRPC_FRAME_TOO_LARGE =
        -1, /* message (or its decompressed form) over the limit -> RESOURCE_EXHAUSTED */
    PC_GRPC_FRAME_MALFORMED = -2,   /* bad flag byte, truncated stream, corrupt compressed data -> INTERNAL */
    PC_GRPC_FRAME_UNSUPPORTED = -3, /* compressed with an encoding we cannot decode -> UNIMPLEMENTED */
};

/* One decoded message. `frame` is the 5-byte prefix plus payload exactly as received (for forwarding
 * unchanged); `data` is the message after decompression (== payload when not compressed).
 * Pointers are valid only during the callback. */
typedef struct pc_grpc_message {
    const uint8_t *frame;
    size_t frame_len;
    const uint8_t *data;
    size_t len;
    int compressed;
    uint32_t index; /* 0-based position in the stream */
} pc_grpc_message;

/* Return 0 to go on; any other value stops feeding and is returned by pc__grpc_framer_feed. */
typedef int (*pc_grpc_message_cb)(void *ud, const pc_grpc_message *msg);

typedef struct pc_grpc_framer {
    pc_grpc_encoding encoding;
    size_t max_message_bytes;
    uint8_t prefix[5];
    size_t prefix_have;
    uint8_t *buf; /* partial message payload, only when a message spans chunks */
    size_t buf_have, buf_cap;
    size_t need; /* payload length of the current message */
    uint32_t index;
    uint8_t *scratch; /* decompression output, grown up to the limit and reused */
    size_t scratch_cap;
    int failed;
} pc_grpc_framer;

void pc__grpc_framer_init(pc_grpc_framer *f, pc_grpc_encoding enc, size_t max_message_bytes);
/* Feed bytes; calls cb for each complete message. On error returns PC_GRPC_FRAME_* (< 0) and writes
 * a client-safe message to err; after an error the framer refuses further input. */
int pc__grpc_framer_feed(pc_grpc_framer *f, const uint8_t *data, size_t len, pc_grpc_message_cb cb, void *ud,
                         char *err, size_t errlen);
/* End of stream: PC_GRPC_FRAME_MALFORMED when a message is cut short, else 0. */
int pc__grpc_framer_finish(pc_grpc_framer *f, char *err, size_t errlen);
/* Bytes held for an incomplete message (for memory accounting). */
size_t pc__grpc_framer_buffered(const pc_grpc_framer *f);
void pc__grpc_framer_free(pc_grpc_framer *f);

/* "gzip", "deflate", "identity" (case-insensitive) -> encoding; anything else PC_GRPC_ENC_UNKNOWN. */
pc_grpc_encoding pc__grpc_encoding_parse(const char *s, size_t len);

/* Decompress a whole buffer into *out (malloc'd), failing with TOO_LARGE past max_out bytes. */
int pc__grpc_decompress(pc_grpc_encoding enc, const uint8_t *in, size_t inlen, size_t max_out, uint8_t **out,
                        size_t *outlen, char *err, size_t errlen);

/* Encode a 5-byte message prefix. */
void pc__grpc_prefix(uint8_t out[5], int compressed, uint32_t len);

#endif
