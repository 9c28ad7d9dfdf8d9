/* gRPC-Web at the edge: a call that arrives as gRPC-Web (application/grpc-web, +proto, -text) is
 * turned into a native gRPC call before the plugin chain sees it, and its answer back into
 * gRPC-Web: the same headers and messages, the trailers as a last length-prefixed frame with flag
 * 0x80, everything base64 in -text mode. CORS for browsers (preflight, exposed headers) belongs
 * here too. The stream (stream.c) calls in at a few points; everything else about the protocol
 * lives in this file. */
#ifndef PC_GRPC_WEB_H
#define PC_GRPC_WEB_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pc_stream pc_stream;
typedef struct pc_grpc_web pc_grpc_web;

/* A call's translation state; text: application/grpc-web-text. NULL when out of memory. */
pc_grpc_web *pc__grpc_web_new(bool text);

/* 1 when the content-type names gRPC-Web; *text tells the base64 form. */
int pc__grpc_web_content_type(const char *v, bool *text);

/* The request is built: a gRPC-Web request is rewritten into a native gRPC one (st->web set), so
 * that every answer from here on, the edge's own included, is gRPC-Web. 1: answered, stop; 0: go on. */
int pc__grpc_web_detect(pc_stream *st);
/* The zone is chosen: answers a CORS preflight, refuses gRPC-Web where the zone does not take it or
 * a browser origin CORS does not allow. 1: answered, stop; 0: go on. */
int pc__grpc_web_admit(pc_stream *st);

/* Request body bytes of a gRPC-Web stream: *data and *len become the native bytes (decoded from base64 in
 * -text mode, valid until the next call). 0, or -1 with err. */
int pc__grpc_web_request_data(pc_grpc_web *w, const uint8_t **data, size_t *len, char *err, size_t errlen);
/* The client ended the request: 0, or -1 with err (base64 cut short). */
int pc__grpc_web_request_end(pc_grpc_web *w, char *err, size_t errlen);

/* Stands in for nghttp2_submit_response on a gRPC-Web stream: the content type and CORS headers of
 * gRPC-Web; a Trailers-Only answer (no body) becomes headers plus a body holding the trailer frame. */
int pc__grpc_web_submit_response(pc_stream *st, const nghttp2_nv *nva, size_t n, bool has_body);

/* The response data provider of a gRPC-Web stream: the stream's own provider, re-encoded, and the
 * trailers as the last frame. */
ssize_t pc__grpc_web_read_response(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                                   nghttp2_data_source *src, void *ud);

void pc__grpc_web_free(pc_grpc_web *w);

#endif
