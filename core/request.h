/* A request as the plugin chain sees it (the opaque pc_request of the plugin ABI), free of any
 * protocol: its header list and the facts read from it, the configuration and zone it runs in, the
 * chain's state, the values plugins published, the verdict, the strings request_info handed out.
 * The HTTP/2 proxy (stream.c) embeds one per stream; `rules test`, the fuzz targets and the unit tests
 * build their own with the same constructor. What plugins ask beyond the request itself (resume a
 * pause, hold the body, the response so far) goes to its owner, the pipe that carries it, through an
 * explicit table of operations; a request without an owner has no pipe. */
#ifndef PC_REQUEST_H
#define PC_REQUEST_H

#include <portcullis/plugin.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "headers.h"

typedef struct pc_conn_shared pc_conn_shared; /* chain.h: the connection's facts */
struct pc_gen;
struct pc_chain;

/* A published value (host->publish*). */
typedef struct pc_published {
    char *key, *text;
    pc_value_type type;
    int64_t i;
    double d;
} pc_published;

/* How far the call went towards the origin: its headers and route are fixed from QUEUED (route) and
 * STARTED (headers) on. */
typedef enum { PC_ORIGIN_NOT_YET = 0, PC_ORIGIN_QUEUED, PC_ORIGIN_STARTED } pc_origin_stage;

/* What a request asks of the pipe that carries it. Each takes the owner given to pc__request_init. */
typedef struct pc_request_ops {
    void (*resume)(void *owner, int verdict);          /* host->resume */
    void (*resume_response)(void *owner, int verdict); /* host->resume_response */
    int (*hold_body)(void *owner, size_t max_bytes);   /* host->hold_body: 0, or -1 */
    pc_origin_stage (*origin_stage)(void *owner);
    bool (*response_started)(void *owner); /* the response headers went out: none can be added */
    /* The origin's response header block, or its trailers; NULL when none came. */
    const pc_headers *(*response_headers)(void *owner, bool trailers);
    /* request_info keys about the response ("status", "grpc_status"); NULL when unknown. */
    const char *(*response_info)(void *owner, const char *key);
    /* host->queue_work: the owner stays allocated from retain to release. */
    void (*retain)(void *owner);
    void (*release)(void *owner);
} pc_request_ops;

struct pc_request {
    pc_headers headers; /* as the client sent them; header_set/remove change them until they go out */
    /* Facts, pointing into headers */
    const char *method, *scheme, *authority, *path, *host_header;
    const char *content_type, *grpc_timeout, *grpc_encoding;
    bool is_grpc;
    pc_conn_shared *conn; /* the connection's facts: one reference, released with the request */

    struct pc_gen *gen;       /* the configuration it runs on (the owner holds the reference) */
    const pc_zone_conf *zone; /* pc__request_select_zone; NULL before, or when none serves the host */
    size_t route_origin;      /* host->route(): origin index + 1; 0 = the zone's origin */

    /* The plugin chain (chain.c) */
    const struct pc_chain *chain;
    bool chain_started;
    bool chain_logged;
    bool *skipped;             /* per loaded plugin: host->skip() was called for it */
    void *plugin_state;        /* the plugins' request-state block */
    size_t pause_pos;          /* chain position of the request hook that paused */
    size_t resp_pause_pos;     /* ... of the on_response_message hook that paused */
    const pc_message *cur_msg; /* message whose decoding is cached below */
    void *pb;                  /* pc_pb_result of cur_msg */
    pc_field *fields;
    long nfields;
    char *json;

    pc_published *pub; /* published values */
    size_t npub;

    /* The verdict (host->deny, host->deny_http) */
    int deny_status; /* gRPC status; 0: not denied */
    int deny_http;   /* HTTP status for plain HTTP (0: 403) */
    char *deny_msg;

    pc_headers extra_resp;                           /* host->set_response_header() */
    char *info_service, *info_method, *info_subtype; /* request_info strings, made on first use */
    char request_id[32];

    const pc_request_ops *ops; /* NULL: no pipe */
    void *owner;
};

/* The one constructor: a request from its header list, which it takes over (*headers is left empty).
 * Reads the facts and takes a reference on conn (may be NULL). gen: the configuration it runs on (may
 * be NULL: no plugins, no zone). ops/owner: the pipe that carries it, or NULL. */
void pc__request_init(pc_request *r, pc_headers *headers, struct pc_gen *gen, pc_conn_shared *conn,
                      const pc_request_ops *ops, void *owner);
/* Admission: the zone of gen's config that serves the request's host (:authority, else Host), set in
 * r->zone; NULL when none does. host receives the host part looked up. */
const pc_zone_conf *pc__request_select_zone(pc_request *r, char *host, size_t hostlen);
/* Free what the request holds (a zeroed request too); it is zeroed. */
void pc__request_free(pc_request *r);

/* header_set / header_remove: names as HTTP/2 sends them. 0, or -1 (bad name, out of memory). */
int pc__request_header_set(pc_request *r, const char *name, const char *value);
int pc__request_header_remove(pc_request *r, const char *name);

/* Published values: keys unique (publishing again replaces), at most 128. */
int pc__request_publish(pc_request *r, const char *key, pc_value_type type, const char *text, int64_t i,
                        double d);
const pc_published *pc__request_published(const pc_request *r, const char *key);

/* The verdict: grpc_status outside 1..16 becomes PERMISSION_DENIED, an empty message "denied". */
void pc__request_deny(pc_request *r, int grpc_status, const char *message);

/* host->request_info */
const char *pc__request_info(pc_request *r, const char *key);
/* A unique id for the request ("<worker>-<n>"), made on first use. */
const char *pc__request_id(pc_request *r);
/* The origin the call goes to: the routed one, else the zone's; NULL without a zone. */
const char *pc__request_origin(const pc_request *r);

/* Drop the decoded form of the current message (the chain calls it after each message). */
void pc__request_forget_message(pc_request *r);

/* The owner's operations; without an owner: nothing to resume, no body to hold (-1), not sent, no
 * response. */
void pc__request_resume(pc_request *r, int verdict);
void pc__request_resume_response(pc_request *r, int verdict);
int pc__request_hold_body(pc_request *r, size_t max_bytes);
pc_origin_stage pc__request_origin_stage(pc_request *r);
bool pc__request_response_started(pc_request *r);
const pc_headers *pc__request_response_headers(pc_request *r, bool trailers);
void pc__request_retain(pc_request *r);
void pc__request_release(pc_request *r);

#endif
