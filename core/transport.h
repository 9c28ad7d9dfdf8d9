/* One TCP connection, optionally wrapped in TLS through memory BIOs, driven by libuv.
 * Owners (client sessions, origin connections) embed it and get plaintext in, plaintext out,
 * write-completion (for back-pressure) and one timer for their phase timeouts. */
#ifndef PC_TRANSPORT_H
#define PC_TRANSPORT_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct pc_worker pc_worker;
typedef struct pc_transport pc_transport;

typedef struct pc_transport_cbs {
    /* TCP connect finished (client side); status < 0 is a libuv error, the transport then closes. */
    void (*on_connect)(pc_transport *t, int status);
    /* Handshake done (TLS) or connection usable (cleartext). */
    void (*on_ready)(pc_transport *t);
    /* Plaintext arrived; return < 0 to close the connection. */
    int (*on_read)(pc_transport *t, const uint8_t *data, size_t len);
    /* The connection failed or the peer closed it; the transport is closing. `why` is for logs. */
    void (*on_error)(pc_transport *t, const char *why);
    /* Queued writes dropped under the low-water mark: the owner may produce more output. */
    void (*on_drain)(pc_transport *t);
    /* The owner's timer fired. */
    void (*on_timeout)(pc_transport *t);
    /* Both handles are closed: the owner frees itself here, and only here. */
    void (*on_closed)(pc_transport *t);
} pc_transport_cbs;

struct pc_transport {
    uv_tcp_t tcp;
    uv_timer_t timer;
    pc_worker *worker;
    const pc_transport_cbs *cbs;
    SSL *ssl;
    size_t write_pending;     /* bytes handed to uv_write and not yet completed */
    uint64_t last_write_done; /* loop time of the last completed write (or of the first queued one) */
    int open_handles;
    bool server;
    bool ready;
    bool closing;
    bool close_when_flushed;
    bool reading;
    bool read_paused; /* stopped reading because the peer is not reading our output */
    bool input_held;  /* stopped reading because the owner cannot pass more input on yet */
    bool failed;
    char peer[64]; /* "ip:port" for logs */
};

/* Output above this is not produced: the owner stops pulling from its HTTP/2 session. */
#define PC_TRANSPORT_HIGH_WATER (256 * 1024)

void pc__transport_init(pc_worker *w, pc_transport *t, const pc_transport_cbs *cbs);
/* Server side, after uv_accept into t->tcp: start TLS (ctx != NULL) or cleartext and read. */
int pc__transport_accept(pc_transport *t, SSL_CTX *ctx);
/* Client side: connect to addr; TLS when ctx != NULL with SNI and certificate host check `host`. */
int pc__transport_connect(pc_transport *t, const struct sockaddr *addr, SSL_CTX *ctx, const char *sni,
                          bool verify_host);
/* Send plaintext; takes ownership of the malloc'd buffer. */
int pc__transport_write(pc_transport *t, uint8_t *buf, size_t len);
/* Send plaintext from a buffer the caller keeps (TLS encrypts straight from it). */
int pc__transport_write_copy(pc_transport *t, const uint8_t *data, size_t len);
/* Close: graceful sends what is queued first (bounded by a short linger). Safe to call twice. */
void pc__transport_close(pc_transport *t, bool graceful);
/* (Re)arm the owner's timer; 0 stops it. */
void pc__transport_timer(pc_transport *t, uint64_t ms);
/* The owner stops (hold) or restarts reading the peer's input: back-pressure for input it cannot
 * pass on yet. Independent of the pause for unread output. */
void pc__transport_hold_input(pc_transport *t, bool hold);
/* Last TLS/verification error text for logs and client-facing messages. */
const char *pc__transport_tls_error(pc_transport *t, char *buf, size_t len);

#endif
