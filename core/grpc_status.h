/* gRPC status codes, grpc-message encoding and grpc-timeout parsing: the vocabulary the edge
 * uses when it answers a call itself. */
#ifndef PC_GRPC_STATUS_H
#define PC_GRPC_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include <portcullis/plugin.h> /* the PC_GRPC_* codes */

const char *pc__grpc_status_name(int code);
/* "PERMISSION_DENIED" (any case) or "7" -> 7; -1 when unknown. */
int pc__grpc_status_parse(const char *s);
/* Percent-encode for the grpc-message header (RFC: bytes outside 0x20-0x7E and '%'). Returns length
 * written (truncated to fit, always NUL-terminated). */
size_t pc__grpc_message_encode(const char *msg, char *out, size_t outlen);
/* grpc-timeout "<1-8 digits><H|M|S|m|u|n>" -> milliseconds (rounded up); -1 when malformed. */
int64_t pc__grpc_timeout_parse(const char *v, size_t len);
/* Milliseconds -> grpc-timeout value; writes at most 10 bytes + NUL. */
void pc__grpc_timeout_format(int64_t ms, char out[16]);
/* content-type is application/grpc or application/grpc+<subtype> (or ;params). */
int pc__grpc_is_content_type(const char *v, size_t len);

#endif
