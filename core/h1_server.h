/* HTTP/1.1 over TLS, for gRPC-Web only (browsers and fetch may use it). A connection that
 * negotiated ALPN http/1.1 keeps its HTTP/2 server session: each HTTP/1.1 request is handed to that
 * session through an in-process HTTP/2 client session, and its answer written back as HTTP/1.1 with
 * a chunked body. So the streams, the plugin chain, limits and flow control are those of HTTP/2,
 * unchanged; this file only speaks HTTP/1.1 (parsed by http-parser). */
#ifndef PC_H1_SERVER_H
#define PC_H1_SERVER_H

#include <stddef.h>
#include <stdint.h>

typedef struct pc_h2conn pc_h2conn;
typedef struct pc_h1 pc_h1;

/* The TLS handshake chose http/1.1 and c->sess exists: 0, or -1 (close the connection). */
int pc__h1_start(pc_h2conn *c);
/* Bytes from the client: 0, or -1 (close). */
int pc__h1_read(pc_h2conn *c, const uint8_t *data, size_t len);
/* Move frames between the two sessions and HTTP/1.1 to the client (the connection's flush). */
void pc__h1_flush(pc_h2conn *c);
void pc__h1_free(pc_h1 *h);

#endif
