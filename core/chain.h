/* Running the plugin chain for one request, and the host functions plugins call on it.
 * A request is the pc_stream itself, seen by plugins as the opaque pc_request. */
#ifndef PC_CHAIN_H
#define PC_CHAIN_H

#include <portcullis/plugin.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "config.h"
#include "grpc_frame.h"

typedef struct pc_stream pc_stream;
typedef struct pc_worker pc_worker;
struct pc_gen;

/* Connection facts shared by the connection and its streams (a stream may outlive it). */
typedef struct pc_conn_shared {
    int refs;
    pc_conn_info info;
    char ip[48];
    char port[8];
    char sni[256];
    char version[16];
    char cipher[64];
    char subject[256];
    struct sockaddr_storage addr; /* the client's address, for per-client accounting */
    /* Client fingerprints, filled from the raw ClientHello and the first HTTP/2 frames */
    char ja3[1024];
    char ja3_hash[33];
    char ja4[64];
    char h2fp[512];
} pc_conn_shared;

void pc__conn_shared_release(pc_conn_shared *cs);

/* Each returns 0 to go on, 1 when the request was denied (the stream's deny fields are set), and
 * the request hooks 2 when a plugin paused (its position in the chain is kept in the stream).
 * `from` is the chain position to start at: 0, or one past the plugin that paused. */
enum { PC_CHAIN_GO = 0, PC_CHAIN_DENY = 1, PC_CHAIN_PAUSE = 2 };
int pc__chain_connection(struct pc_gen *g, const pc_conn_info *ci);
int pc__chain_request_headers(pc_stream *st, size_t from);
int pc__chain_request_message(pc_stream *st, const pc_message *m, size_t from);
int pc__chain_request_end(pc_stream *st, size_t from);
/* After the headers hooks passed the request: on_request_ready (no pause). */
int pc__chain_request_ready(pc_stream *st);
/* A resumed verdict from the plugin that paused at chain position `pos`: 0 go on, 1 denied. */
int pc__chain_resumed(pc_stream *st, size_t pos, int verdict);
int pc__chain_response_headers(pc_stream *st);
/* May pause too (its position goes to the stream's resp_pause_pos). */
int pc__chain_response_message(pc_stream *st, const pc_message *m, size_t from);
int pc__chain_response_trailers(pc_stream *st);
void pc__chain_log(pc_stream *st);
void pc__chain_free(pc_stream *st);
/* A value plugins published on the request, NULL when unset. */
const struct pc_published *pc__published_find(const pc_stream *st, const char *key);
/* The config whose file config_where() names, and against whose directory config_path() resolves,
 * while plugins initialise (main thread). */
void pc__chain_set_config(const pc_config *cfg);

/* "/pkg.Service/Method" -> service and method parts (pointers into path, lengths). */
int pc__grpc_split_path(const char *path, const char **svc, size_t *svclen, const char **meth,
                        size_t *methlen);

#endif
