/* Running the plugin chain for one request (request.h), and the host functions plugins call on it. */
#ifndef PC_CHAIN_H
#define PC_CHAIN_H

#include <portcullis/plugin.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "config.h"
#include "grpc_frame.h"
#include "request.h"

typedef struct pc_worker pc_worker;
struct pc_gen;

/* Connection facts shared by the connection and its streams (a stream may outlive it). */
struct pc_conn_shared {
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
};

void pc__conn_shared_release(pc_conn_shared *cs);

/* Each returns 0 to go on, 1 when the request was denied (its deny fields are set), and the request
 * hooks 2 when a plugin paused (its position in the chain is kept in the request: pause_pos).
 * `from` is the chain position to start at: 0, or one past the plugin that paused. */
enum { PC_CHAIN_GO = 0, PC_CHAIN_DENY = 1, PC_CHAIN_PAUSE = 2 };
int pc__chain_connection(struct pc_gen *g, const pc_conn_info *ci);
int pc__chain_request_headers(pc_request *r, size_t from);
int pc__chain_request_message(pc_request *r, const pc_message *m, size_t from);
int pc__chain_request_end(pc_request *r, size_t from);
/* After the headers hooks passed the request: on_request_ready (no pause). */
int pc__chain_request_ready(pc_request *r);
/* A resumed verdict from the plugin that paused at chain position `pos`: 0 go on, 1 denied. */
int pc__chain_resumed(pc_request *r, size_t pos, int verdict);
int pc__chain_response_headers(pc_request *r);
/* May pause too (its position goes to the request's resp_pause_pos). */
int pc__chain_response_message(pc_request *r, const pc_message *m, size_t from);
int pc__chain_response_trailers(pc_request *r);
/* on_log, once per request: also for one refused before the chain ran (its zone's plugins log it). */
void pc__chain_log(pc_request *r);
/* The config whose file config_where() names, and against whose directory config_path() resolves,
 * while plugins initialise (main thread). */
void pc__chain_set_config(const pc_config *cfg);

/* "/pkg.Service/Method" -> service and method parts (pointers into path, lengths). */
int pc__grpc_split_path(const char *path, const char **svc, size_t *svclen, const char **meth,
                        size_t *methlen);

#endif
