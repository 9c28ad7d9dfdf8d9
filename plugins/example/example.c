/* Example plugin: the smallest useful one, and the model for writing your own. It shows every
 * part of the ABI a plugin usually needs:
 *   - config keys declared in the descriptor (the core checks them and fills defaults);
 *   - a plugin context (immutable after init), a worker context (one per worker thread, no locks)
 *     and request state (zeroed per request, handed to every hook);
 *   - a hook that pauses while slow work runs on the thread pool (queue_work, then resume);
 *   - typed published values, a metric, and on_log, which runs once for every request.
 * It denies calls by gRPC method, requires a header, and refuses request messages whose string
 * fields contain a configured text. Config (every key optional):
 *
 *   - name: example
 *     config:
 *       deny_methods: ["/demo.Echo/Fail", "/admin.v1.Admin/"]   # exact paths, or a prefix ending in "/"
 *       require_header: x-api-key         # missing -> UNAUTHENTICATED
 *       deny_text: "DROP TABLE"           # in any string field of any request message -> PERMISSION_DENIED
 *       lookup_delay_ms: 0                # > 0: check require_header's value off the event loop after
 *                                         # this delay, as a call to a slow service would
 *
 * `portcullis plugins describe example` prints the keys. Build out of tree against an installed
 * Portcullis:
 *   cc -std=c11 -shared -fPIC -fvisibility=hidden $(pkg-config --cflags portcullis-plugin) example.c -o
 * pc-example.so
 */
#define _POSIX_C_SOURCE 200809L
#include <portcullis/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const pc_conf_key config_keys[] = {
    {.key = "deny_methods",
     .type = PC_CONF_LIST,
     .doc = "gRPC paths to refuse: \"/pkg.Service/Method\", or \"/pkg.Service/\" for a whole service"},
    {.key = "require_header", .type = PC_CONF_STRING, .doc = "a request header every call must carry"},
    {.key = "deny_text",
     .type = PC_CONF_STRING,
     .doc = "refuse request messages with this text in a string field"},
    {.key = "lookup_delay_ms",
     .type = PC_CONF_INT,
     .def = "0",
     .min = 0,
     .max = 10000,
     .doc = "check require_header's value on the thread pool after this delay (0: inline)"},
    {0},
};

/* The plugin context: made by init, immutable afterwards, shared by every worker. */
typedef struct example_conf {
    const pc_host *host;
    const void *handle;
    char **deny;
    size_t ndeny;
    char *require_header;
    char *deny_text;
    long delay_ms;
} example_conf;

/* A worker context: only ever touched by its worker's thread. */
typedef struct example_worker {
    const example_conf *c;
    unsigned id;
    unsigned long calls;
} example_worker;

/* Request state: request_state_size zeroed bytes per request, freed by the core after on_log. */
typedef struct example_req {
    unsigned messages;
    int denied;
} example_req;

static void conf_free(example_conf *c)
{
    for (size_t i = 0; i < c->ndeny; i++)
        free(c->deny[i]);
    free(c->deny);
    free(c->require_header);
    free(c->deny_text);
    free(c);
}

static int init(const pc_host *host, const void *handle, const pc_config_node *config, void **out, char *err,
                size_t errlen)
{
    example_conf *c = calloc(1, sizeof *c);
    if (!c) return -1;
    c->host = host;
    c->handle = handle;
    /* The core checked the keys and their types: only what a type cannot say is left here. */
    const pc_config_node *n = config ? host->config_get(config, "deny_methods") : NULL;
    size_t len = n ? host->config_len(n) : 0;
    c->deny = calloc(len ? len : 1, sizeof *c->deny);
    for (size_t i = 0; c->deny && i < len; i++) {
        const char *m = host->config_string(host->config_at(n, i));
        char where[512];
        if (!m || m[0] != '/') {
            snprintf(err, errlen, "deny_methods[%zu] (%s): expected a gRPC path like \"/pkg.Service/Method\"",
                     i, host->config_where(host->config_at(n, i), where, sizeof where));
            conf_free(c);
            return -1;
        }
        c->deny[c->ndeny++] = strdup(m);
    }
    const char *s;
    if (config && (s = host->config_string(host->config_get(config, "require_header"))))
        c->require_header = strdup(s);
    if (config && (s = host->config_string(host->config_get(config, "deny_text")))) c->deny_text = strdup(s);
    if (config && (s = host->config_string(host->config_get(config, "lookup_delay_ms"))))
        c->delay_ms = atol(s);
    *out = c;
    return 0;
}

static void destroy(void *ctx)
{
    conf_free(ctx);
}

static int worker_init(void *ctx, unsigned worker_id, void **out, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    example_worker *w = calloc(1, sizeof *w);
    if (!w) return -1;
    w->c = ctx;
    w->id = worker_id;
    *out = w;
    return 0;
}

static void worker_destroy(void *w)
{
    free(w);
}

static int method_denied(const example_conf *c, const char *path)
{
    for (size_t i = 0; path && i < c->ndeny; i++) {
        size_t n = strlen(c->deny[i]);
        /* "/pkg.Service/" covers every method of the service. */
        if (c->deny[i][n - 1] == '/' ? strncmp(path, c->deny[i], n) == 0 : strcmp(path, c->deny[i]) == 0)
            return 1;
    }
    return 0;
}

/* Slow work: the argument carries everything it needs, because work() runs on another thread and
 * must not touch the request or call host functions. */
typedef struct lookup_job {
    const example_conf *c;
    example_req *st;
    char *value; /* copied from the request on the worker thread */
    int ok;
} lookup_job;

static void lookup_work(void *arg)
{
    lookup_job *j = arg;
    struct timespec ts = {.tv_sec = j->c->delay_ms / 1000, .tv_nsec = (j->c->delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* stands for a call to a slow service */
    j->ok = j->value[0] != '\0';
}

static void lookup_done(void *arg, pc_request *r)
{
    lookup_job *j = arg;
    const pc_host *h = j->c->host;
    int verdict = PC_CONTINUE;
    if (!j->ok) {
        j->st->denied = 1;
        verdict = h->deny(r, PC_GRPC_UNAUTHENTICATED, "empty required header");
    }
    free(j->value);
    free(j);
    h->resume(r, verdict); /* exactly once per pause */
}

static int on_request_headers(pc_request *r, void *wctx, void *state)
{
    example_worker *w = wctx;
    example_req *st = state;
    const example_conf *c = w->c;
    const pc_host *h = c->host;
    w->calls++;
    if (method_denied(c, h->request_info(r, "path"))) {
        st->denied = 1;
        return h->deny(r, PC_GRPC_PERMISSION_DENIED, "method blocked by the example plugin");
    }
    const char *v = c->require_header ? h->header_get(r, c->require_header) : NULL;
    if (c->require_header && !v) {
        st->denied = 1;
        return h->deny(r, PC_GRPC_UNAUTHENTICATED, "missing required header");
    }
    /* Later plugins, Lua rules and the access log read what this one decided, typed. */
    h->publish_bool(r, "example.checked", 1);
    h->publish_int(r, "example.worker_calls", (int64_t)w->calls);
    if (!v || c->delay_ms <= 0) return PC_CONTINUE;
    lookup_job *j = calloc(1, sizeof *j);
    if (!j || !(j->value = strdup(v))) {
        free(j);
        return PC_ERROR; /* the plugin's on_error decides: deny (default) or continue */
    }
    j->c = c;
    j->st = st; /* request state lives until the request ends, which is after done() has run */
    if (h->queue_work(r, lookup_work, lookup_done, j) != 0) {
        free(j->value);
        free(j);
        return PC_ERROR;
    }
    return PC_PAUSE; /* the request waits, bounded by flow control, until lookup_done resumes it */
}

static int on_request_message(pc_request *r, void *wctx, void *state, const pc_message *m)
{
    const example_conf *c = ((example_worker *)wctx)->c;
    example_req *st = state;
    const pc_host *h = c->host;
    st->messages++;
    if (!c->deny_text) return PC_CONTINUE;
    const pc_field *f;
    long n = h->message_fields(r, m, &f, NULL, 0);
    if (n < 0) return PC_CONTINUE; /* not protobuf: nothing to look at */
    size_t tl = strlen(c->deny_text);
    for (long i = 0; i < n; i++) {
        if (f[i].kind != PC_FIELD_STRING || f[i].str_len < tl) continue;
        for (size_t k = 0; k + tl <= f[i].str_len; k++)
            if (memcmp(f[i].str + k, c->deny_text, tl) == 0) {
                char msg[128];
                snprintf(msg, sizeof msg, "message %u refused: field %s", m->index, f[i].path);
                st->denied = 1;
                return h->deny(r, PC_GRPC_PERMISSION_DENIED, msg);
            }
    }
    return PC_CONTINUE;
}

/* Once for every request, also those refused before the chain ran (then the other hooks did not). */
static void on_log(pc_request *r, void *wctx, void *state)
{
    const example_conf *c = ((example_worker *)wctx)->c;
    const example_req *st = state;
    c->host->metric_count(r, "example_requests", st->denied ? "result=denied" : "result=passed", 1);
}

PC_PLUGIN_EXPORT const pc_plugin pc_plugin_v2 = {
    .abi_version = PC_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pc_plugin),
    .name = "example",
    .version = "2.0",
    .summary = "denies calls by method, missing header or text in a message field (the model plugin)",
    .config = config_keys,
    .request_state_size = sizeof(example_req),
    .init = init,
    .destroy = destroy,
    .worker_init = worker_init,
    .worker_destroy = worker_destroy,
    .on_request_headers = on_request_headers,
    .on_request_message = on_request_message,
    .on_log = on_log,
};
