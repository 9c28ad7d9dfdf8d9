/* Portcullis plugin ABI, version 2.
 *
 * The one header a plugin includes. A plugin is a shared object exporting one symbol,
 * `pc_plugin_v2`, a `pc_plugin` descriptor. The core hands the plugin a table of host functions
 * (`pc_host`) at init; a plugin never links against core symbols, so a .so built against this
 * header keeps loading into any core with the same ABI major version.
 *
 * Compatibility: PC_PLUGIN_ABI_VERSION changes only when something existing changes; then the
 * loader refuses older plugins with a clear message. New descriptor fields and host functions
 * are only ever appended; `struct_size` tells each side how much of the other it may read.
 *
 * Threads and lifetimes:
 *  - init/destroy run on the main thread, once per loaded config. The plugin context they
 *    create is immutable afterwards and may be read from every worker.
 *  - worker_init/worker_destroy run once per worker (before it starts, after it stops). The
 *    worker context is only ever touched by that worker's thread: no locks needed.
 *  - every hook runs on the worker thread that owns the request.
 *  - every request hook receives the request, the plugin's worker context and its request state
 *    (`request_state_size` zeroed bytes, or NULL when 0; freed by the core after on_log).
 *  - config: the descriptor lists the plugin's keys (`config`); the core refuses unknown keys,
 *    wrong types and out-of-range values with file:line:col before init runs, and fills in
 *    defaults, so init reads a map that is already valid.
 *  - strings the host returns stay valid until the hook returns unless said otherwise.
 *
 * ABI 1 plugins (symbol `pc_plugin_v1`) are refused with a message saying to rebuild.
 */
#ifndef PORTCULLIS_PLUGIN_H
#define PORTCULLIS_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PC_PLUGIN_ABI_VERSION 2u
#define PC_PLUGIN_SYMBOL "pc_plugin_v2"

/* Put before the descriptor so it is exported even with -fvisibility=hidden:
 *   PC_PLUGIN_EXPORT const pc_plugin pc_plugin_v2 = { ... }; */
#define PC_PLUGIN_EXPORT __attribute__((visibility("default")))

/* What a hook returns. */
enum {
    PC_CONTINUE = 0, /* go on to the next plugin */
    PC_DENY = 1,     /* stop: answer with the status given to host->deny() */
    PC_ERROR = -1,   /* the hook failed: the plugin's `on_error` (deny | continue) decides */
    PC_PAUSE = 2,    /* request hooks and on_response_message: that direction of the call waits (its
                      * data is held, bounded by flow control) until the plugin calls host->resume()
                      * (request hooks) or host->resume_response(); used with host->queue_work() */
};

/* gRPC status codes (grpc/doc/statuscodes.md), for host->deny() and the published "grpc_status". */
enum {
    PC_GRPC_OK = 0,
    PC_GRPC_CANCELLED = 1,
    PC_GRPC_UNKNOWN = 2,
    PC_GRPC_INVALID_ARGUMENT = 3,
    PC_GRPC_DEADLINE_EXCEEDED = 4,
    PC_GRPC_NOT_FOUND = 5,
    PC_GRPC_ALREADY_EXISTS = 6,
    PC_GRPC_PERMISSION_DENIED = 7,
    PC_GRPC_RESOURCE_EXHAUSTED = 8,
    PC_GRPC_FAILED_PRECONDITION = 9,
    PC_GRPC_ABORTED = 10,
    PC_GRPC_OUT_OF_RANGE = 11,
    PC_GRPC_UNIMPLEMENTED = 12,
    PC_GRPC_INTERNAL = 13,
    PC_GRPC_UNAVAILABLE = 14,
    PC_GRPC_DATA_LOSS = 15,
    PC_GRPC_UNAUTHENTICATED = 16,
};

/* Log levels for host->log. */
enum { PC_PLUGIN_LOG_ERROR = 0, PC_PLUGIN_LOG_WARN = 1, PC_PLUGIN_LOG_INFO = 2, PC_PLUGIN_LOG_DEBUG = 3 };

typedef struct pc_request pc_request;         /* opaque: one proxied call */
typedef struct pc_config_node pc_config_node; /* opaque: a node of the plugin's YAML config */

/* The client connection, for on_connection and host->connection(). */
typedef struct pc_conn_info {
    const char *client_ip;
    uint16_t client_port;
    int tls;                    /* 1 when the connection is TLS */
    const char *sni;            /* NULL when none */
    const char *alpn;           /* "h2" over TLS; "h2c" cleartext */
    const char *tls_version;    /* e.g. "TLSv1.3"; NULL cleartext */
    const char *tls_cipher;     /* NULL cleartext */
    const char *client_subject; /* verified client certificate subject, NULL when none */
} pc_conn_info;

/* One decoded gRPC message (after decompression). */
typedef struct pc_message {
    const uint8_t *data;
    size_t len;
    uint32_t index; /* 0-based position in its direction of the call */
    int compressed; /* was compressed on the wire */
    int response;   /* 0 request (client -> origin), 1 response */
} pc_message;

/* One protobuf field of a message, from host->message_fields(). */
typedef enum {
    PC_FIELD_UINT = 0, /* u64: varint/fixed without a descriptor, or an unsigned type */
    PC_FIELD_INT,      /* i64: signed types (zigzag undone), enums */
    PC_FIELD_BOOL,     /* u64 is 0 or 1 */
    PC_FIELD_FLOAT,    /* f64 */
    PC_FIELD_DOUBLE,   /* f64 */
    PC_FIELD_STRING,   /* valid UTF-8: str, str_len (not NUL-terminated) */
    PC_FIELD_BYTES,    /* str, str_len */
    PC_FIELD_MESSAGE,  /* nested message; its fields follow in the list */
} pc_field_kind;

typedef struct pc_field {
    const char *path; /* "1.3.2", or "order.customer.email" with descriptors */
    pc_field_kind kind;
    uint64_t u64;
    int64_t i64;
    double f64;
    const char *str;
    size_t str_len;
} pc_field;

/* Whether the core offers host function `fn` (one appended after the first ABI 2 core): check
 * before calling it, e.g. `if (PC_HOST_HAS(host, fn)) host->fn(...);`. */
#define PC_HOST_HAS(host, fn) ((host)->struct_size >= offsetof(pc_host, fn) + sizeof((host)->fn))

/* Published values are typed: the access log writes numbers and booleans as JSON numbers and
 * booleans, Lua sees Lua numbers and booleans. */
typedef enum { PC_VALUE_STRING = 0, PC_VALUE_INT, PC_VALUE_NUMBER, PC_VALUE_BOOL } pc_value_type;

typedef struct pc_value {
    pc_value_type type;
    const char *text; /* always: the value as text ("60", "0.25", "true"), valid until the request ends */
    int64_t i;        /* PC_VALUE_INT, PC_VALUE_BOOL (0 or 1) */
    double d;         /* PC_VALUE_NUMBER, and PC_VALUE_INT as a double */
} pc_value;

/* A plugin's config keys, in its descriptor: a list ended by an entry with key NULL. */
typedef enum {
    PC_CONF_STRING = 1, /* a scalar; with `choices` one of them */
    PC_CONF_INT,        /* an integer; bounds min..max when min < max */
    PC_CONF_NUMBER,     /* a number; bounds as for INT */
    PC_CONF_BOOL,       /* true or false */
    PC_CONF_PATH,       /* a file or directory: read it with host->config_path() */
    PC_CONF_LIST,       /* a sequence (the plugin checks its items); item count bounds as for INT */
    PC_CONF_MAP,        /* a map (the plugin checks its keys) */
} pc_conf_type;

typedef struct pc_conf_key {
    const char *key;
    pc_conf_type type;
    const char *def;     /* default as YAML text, filled in when the key is absent; NULL: none */
    double min, max;     /* see pc_conf_type */
    const char *choices; /* PC_CONF_STRING: the allowed values, "a|b|c"; NULL: any */
    const char *doc;     /* one line, for `portcullis plugins describe` and error messages */
    int required;        /* absent is an error */
} pc_conf_key;

/* Functions the core offers, by topic. Every pointer here is non-NULL in ABI 2. */
typedef struct pc_host {
    uint32_t struct_size; /* sizeof(pc_host) in the core: later cores append functions */
    uint32_t abi_version;

    /* -- logging: to the edge's error log, prefixed with the plugin name. Any thread. */
    void (*log)(const void *plugin_handle, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /* -- config (init only): the map the core validated against the descriptor's keys, defaults
     * filled in. NULL/defaults when absent or of another kind. */
    const pc_config_node *(*config_get)(const pc_config_node *map, const char *key);
    const char *(*config_string)(const pc_config_node *n); /* scalar text or NULL */
    size_t (*config_len)(const pc_config_node *n);         /* items of a sequence or entries of a map */
    const pc_config_node *(*config_at)(const pc_config_node *n, size_t i); /* i-th item (or map value) */
    const char *(*config_key)(const pc_config_node *map, size_t i);        /* i-th key of a map */
    /* "file:line:col" of a node, for error messages. */
    const char *(*config_where)(const pc_config_node *n, char *buf, size_t len);
    /* A scalar that names a file or directory, resolved as the core resolves its own paths:
     * relative to the directory of the config file it was written in; absolute paths unchanged.
     * Into buf; NULL when n is not a scalar or buf is too small. */
    const char *(*config_path)(const pc_config_node *n, char *buf, size_t len);

    /* -- request facts by name: "method", "path", "authority", "scheme", "zone", "origin",
     * "grpc" ("1"/"0"), "grpc.service", "grpc.method", "grpc.subtype" (e.g. "proto"),
     * "client.ip", "client.port", "tls.sni", "tls.alpn", "tls.version", "tls.cipher",
     * "tls.client_subject", "tls.ja3" (JA3 string), "tls.ja3_hash" (its MD5), "tls.ja4",
     * "h2.fingerprint" (Akamai format), "status" (HTTP status of the response), "grpc_status",
     * "request_id" (unique per request, for messages and logs). NULL when unknown. The string
     * stays valid until the request ends (a later call does not overwrite it). */
    const char *(*request_info)(pc_request *r, const char *key);
    const pc_conn_info *(*connection)(pc_request *r);

    /* -- headers. Request headers (lower-case names): changes apply to what the origin receives;
     * only in on_request_headers. Pseudo-headers cannot be changed. 0 on success, -1 otherwise. */
    const char *(*header_get)(pc_request *r, const char *name);
    size_t (*header_count)(pc_request *r);
    int (*header_at)(pc_request *r, size_t i, const char **name, const char **value);
    int (*header_set)(pc_request *r, const char *name, const char *value);
    int (*header_remove)(pc_request *r, const char *name);
    /* Response headers and trailers from the origin (response hooks only). */
    const char *(*response_header_get)(pc_request *r, const char *name);
    const char *(*trailer_get)(pc_request *r, const char *name);
    /* Add a header to the response the client gets (also to the edge's own answers). 0 or -1. */
    int (*set_response_header)(pc_request *r, const char *name, const char *value);

    /* -- messages. Decoded protobuf fields of a message, in wire order (decoded once, cached for
     * the chain). Returns the count, or -1 when the message is not valid protobuf (err filled). */
    long (*message_fields)(pc_request *r, const pc_message *m, const pc_field **fields, char *err,
                           size_t errlen);
    /* The same message as JSON (names with descriptors, field numbers without); NULL on error. */
    const char *(*message_json)(pc_request *r, const pc_message *m);
    /* Plain HTTP requests (not gRPC), in on_request_headers: collect the whole request body, at most
     * max_bytes, and hand it to on_request_message once (index 0) when the client has sent all of
     * it. The origin sees nothing of the request, headers included, until the chain passed the body.
     * A larger body is answered 413 (with several holders the smallest max_bytes applies); an empty
     * body skips on_request_message. Collected bytes also count against the client's
     * max_held_bytes_per_client. 0, or -1 (a gRPC call, or the request already went on). */
    int (*hold_body)(pc_request *r, size_t max_bytes);

    /* -- verdicts. Stop the call: the client gets this gRPC status (PC_GRPC_*; plain HTTP: a 403)
     * and the origin stream is reset. Returns PC_DENY: `return host->deny(r, PC_GRPC_..., "no");`. */
    int (*deny)(pc_request *r, int grpc_status, const char *message);
    /* Like deny(), with the HTTP status plain-HTTP requests get (gRPC calls get grpc_status). */
    int (*deny_http)(pc_request *r, int http_status, int grpc_status, const char *message);
    /* Do not run the named plugin's hooks for the rest of this request (e.g. a trusted path skips the
     * WAF). 0, or -1 when no such plugin is in the chain. */
    int (*skip)(pc_request *r, const char *plugin_name);
    /* Send this request to another origin (by name). Request headers hook only. 0 or -1. */
    int (*route)(pc_request *r, const char *origin_name);

    /* -- published values: shared along the chain and written to the access log (e.g.
     * "bot.score"). The core copies strings. A key published again takes the new value. */
    int (*publish)(pc_request *r, const char *key, const char *value); /* a string */
    int (*publish_int)(pc_request *r, const char *key, int64_t value);
    int (*publish_number)(pc_request *r, const char *key, double value);
    int (*publish_bool)(pc_request *r, const char *key, int value);
    /* Any published value as text (numbers as the access log writes them); NULL when unset. */
    const char *(*lookup)(pc_request *r, const char *key);
    /* The typed value: 0, or -1 when unset. */
    int (*lookup_value)(pc_request *r, const char *key, pc_value *out);

    /* -- slow work off the event loop: work(arg) runs on the shared thread pool (it must not touch
     * r or call host functions), then done(arg, r) runs on the request's worker thread, where the
     * plugin calls resume() or resume_response(). The request stays valid until done has run. 0, or
     * -1 when refused. */
    int (*queue_work)(pc_request *r, void (*work)(void *arg), void (*done)(void *arg, pc_request *r),
                      void *arg);
    /* End a PC_PAUSE of a request hook: PC_CONTINUE goes on with the next plugin, PC_DENY (after
     * deny()) ends the call, PC_ERROR follows on_error. Worker thread only; exactly once per pause.
     * If the call ended meanwhile (client gone, deadline), resume only releases it. */
    void (*resume)(pc_request *r, int verdict);
    /* End a PC_PAUSE returned by on_response_message: the held response message (and those behind
     * it) go on to the client, or PC_DENY ends the call (after what the client already got, with
     * trailers carrying the deny status). The request direction is independent. */
    void (*resume_response)(pc_request *r, int verdict);

    /* -- metrics, exposed on /metrics per zone: a counter `pc_<name>_total{zone,label}` and a
     * histogram of values 0-100 `pc_<name>{zone}` (e.g. bot scores). name: [a-z0-9_], at most 48.
     * A label written "key=value" (key in [a-z_], not "zone") is exported as key="value" instead,
     * and several joined by ';' as several: "rule=cart;result=refused". */
    void (*metric_count)(pc_request *r, const char *name, const char *label, uint64_t n);
    void (*metric_observe)(pc_request *r, const char *name, double value);

    /* -- the event loop of the worker that owns r (a libuv `uv_loop_t *`), for a plugin that does
     * its own network I/O or timers (a store client, a shaping delay). Only on that worker's
     * thread; a plugin closes the handles it added before its worker_destroy returns. */
    void *(*event_loop)(pc_request *r);
} pc_host;

/* Request hooks: the request, the plugin's worker context (from worker_init; the plugin context
 * when it has none) and its request state (NULL when request_state_size is 0). */
typedef int (*pc_request_hook)(pc_request *r, void *worker_ctx, void *request_state);
typedef int (*pc_message_hook)(pc_request *r, void *worker_ctx, void *request_state, const pc_message *m);

/* The descriptor a plugin exports as `pc_plugin_v2`. */
typedef struct pc_plugin {
    uint32_t abi_version; /* PC_PLUGIN_ABI_VERSION */
    uint32_t struct_size; /* sizeof(pc_plugin) the plugin was built with */
    const char *name;
    const char *version;
    const char *summary;       /* one line, for `portcullis plugins describe` */
    const pc_conf_key *config; /* the config keys; NULL: the plugin takes no config */
    size_t request_state_size;

    /* Read `config` (valid and with defaults, or NULL when the plugin was given none); set
     * *plugin_ctx. Return 0, or -1 with a message in err (use host->config_where to name a node). */
    int (*init)(const pc_host *host, const void *plugin_handle, const pc_config_node *config,
                void **plugin_ctx, char *err, size_t errlen);
    void (*destroy)(void *plugin_ctx);
    int (*worker_init)(void *plugin_ctx, unsigned worker_id, void **worker_ctx, char *err, size_t errlen);
    void (*worker_destroy)(void *worker_ctx);

    /* Hooks; any may be NULL. */
    int (*on_connection)(void *worker_ctx, const pc_conn_info *conn); /* PC_DENY closes the connection */
    pc_request_hook on_request_headers;
    pc_message_hook on_request_message;
    pc_request_hook on_request_end;
    /* After every plugin's on_request_headers passed the request, before the origin sees any of
     * it: the last word on what the chain decided (e.g. blocking on a score that plugins after
     * this one adjusted). May deny; may not pause. */
    pc_request_hook on_request_ready;
    pc_request_hook on_response_headers;
    pc_message_hook on_response_message;
    pc_request_hook on_response_trailers;
    /* Always, once, after the call ended: also for a call refused before the chain ran (by the
     * core's limits, routing or access checks), whose other hooks never ran. */
    void (*on_log)(pc_request *r, void *worker_ctx, void *request_state);
} pc_plugin;

#ifdef __cplusplus
}
#endif

#endif
