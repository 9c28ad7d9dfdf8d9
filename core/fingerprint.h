/* Client fingerprints from the first bytes a client sends: JA3 and JA4 from its TLS ClientHello, taken
 * from the raw records before OpenSSL sees them (OpenSSL's accessors drop GREASE and extensions it does not
 * know), and the Akamai HTTP/2 fingerprint from the frames before the first HEADERS, as they were on the wire
 * (nghttp2 merges SETTINGS and drops PRIORITY frames before any callback). Both parsers read hostile input:
 * they are incremental, bounded in memory and never read past what they were given. */
#ifndef PC_FINGERPRINT_H
#define PC_FINGERPRINT_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdint.h>

#define PC_FP_JA3_MAX 1024
#define PC_FP_JA4_MAX 64
#define PC_FP_H2_MAX 512
/* The largest ClientHello captured. Real ones are under 2 KiB (a post-quantum key share adds about 1.2 KiB);
 * a bigger one is not fingerprinted, and OpenSSL decides on its own whether to accept it. */
#define PC_FP_HELLO_MAX (16 * 1024)

/* What a ClientHello yields. ja3 is "" when the string would not fit (the hash still covers all of it). */
typedef struct pc_fp_tls {
    char ja3[PC_FP_JA3_MAX];
    char ja3_hash[33];
    char ja4[PC_FP_JA4_MAX];
} pc_fp_tls;

/* Results of the incremental parsers. */
enum { PC_FP_FAIL = -1, PC_FP_MORE = 0, PC_FP_DONE = 1 };

/* Fingerprints of one ClientHello message body (after the 4-byte handshake header). 0, or -1 when it is not
 * a well-formed ClientHello. */
int pc__fp_client_hello(const uint8_t *body, size_t len, pc_fp_tls *out);

/* Incremental capture of the first ClientHello from raw TLS records, across any split of the input. */
typedef struct pc_fp_hello pc_fp_hello;
pc_fp_hello *pc__fp_hello_new(void);
/* PC_FP_MORE until the ClientHello is complete (PC_FP_DONE) or cannot be one (PC_FP_FAIL); after either,
 * further input is ignored and the same result returned. The record buffer is freed at DONE or FAIL. */
int pc__fp_hello_feed(pc_fp_hello *h, const uint8_t *data, size_t len);
const pc_fp_tls *pc__fp_hello_result(const pc_fp_hello *h); /* NULL unless DONE */
void pc__fp_hello_free(pc_fp_hello *h);

/* The capture riding on a server-side SSL object (ex_data), so the transport needs no field for it: feed
 * every raw read while the handshake runs; take the fingerprints once it is done. The capture is freed by
 * take, or with the SSL object when the handshake never completes. */
void pc__fp_ssl_feed(SSL *ssl, const uint8_t *data, size_t len);
/* 0 and *out filled when the ClientHello was fingerprinted; -1 otherwise. Frees the capture either way. */
int pc__fp_ssl_take(SSL *ssl, pc_fp_tls *out);

/* Incremental parser of a client's HTTP/2 connection preface and frames up to the end of its first header
 * block, producing "SETTINGS|WINDOW_UPDATE|PRIORITY|pseudo-header order", e.g.
 * "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p" ("00" when no WINDOW_UPDATE, "0" when no PRIORITY). */
typedef struct pc_fp_h2 pc_fp_h2;
pc_fp_h2 *pc__fp_h2_new(void);
/* Same contract as pc__fp_hello_feed. Input before the first HEADERS is bounded (frame count and bytes). */
int pc__fp_h2_feed(pc_fp_h2 *p, const uint8_t *data, size_t len);
const char *pc__fp_h2_result(const pc_fp_h2 *p); /* NULL unless DONE */
void pc__fp_h2_free(pc_fp_h2 *p);

#endif
