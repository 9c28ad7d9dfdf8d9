/* TLS contexts: the front (certificates chosen by SNI, ALPN must pick h2) and origin clients
 * (ALPN h2, verification against a CA file or the system store). Built once, then shared
 * read-only by every worker: OpenSSL contexts are safe to use from many threads. */
#ifndef PC_TLS_H
#define PC_TLS_H

#include <openssl/ssl.h>

#include "config.h"

typedef struct pc_tls_server pc_tls_server;

/* Contexts for one listener; NULL with err on failure (bad cert/key, key mismatch, unreadable client
 * CA). `cfg` (zones by SNI, origins' access policies) must outlive the server. */
pc_tls_server *pc__tls_server_new(const pc_listen_conf *l, const pc_config *cfg, char *err, size_t errlen);
SSL_CTX *pc__tls_server_ctx(pc_tls_server *s); /* the default context new connections start on */
void pc__tls_server_free(pc_tls_server *s);

/* Client context for an origin; NULL with err on failure (unreadable CA). */
SSL_CTX *pc__tls_client_new(const pc_origin_conf *o, char *err, size_t errlen);

/* After the handshake: the SNI the client sent (or NULL) and the ALPN chosen. */
const char *pc__tls_sni(SSL *ssl);
/* After the handshake: 1 and the client certificate's subject (RFC 2253) when the client presented
 * one and it verified against the CA of the origin its SNI routes to; 0 otherwise. */
int pc__tls_client_subject(SSL *ssl, char *out, size_t outlen);

/* Matches a DNS name against a certificate name pattern ("*.example.com" covers one label). */
int pc__tls_name_match(const char *pattern, const char *name);

#endif
