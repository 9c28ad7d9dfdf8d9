/* Plugins used by the integration tests, one source built several ways (-DVARIANT_*):
 *   publisher  publishes "test.tag" from the request header x-tag
 *   reader     reads "test.tag": "block" -> FAILED_PRECONDITION; otherwise forwards it to the
 *              origin as header x-echo-reader-saw (the test origin echoes x-echo* headers)
 *   failing    every request hook returns PC_ERROR (to test on_error)
 *   initfail   init fails with a message
 *   badabi     claims ABI version 99
 *   abi1       exports its descriptor as pc_plugin_v1, as a plugin built for ABI 1 does
 *   nosym      exports no descriptor at all
 *   counter    denies the request message whose index equals config `deny_index`
 *   async      like counter, but decides every request header block and message on the thread
 *              pool (queue_work + PC_PAUSE + resume), after `delay_ms` (default 20); with
 *              `responses: true` every response message too (resume_response), denying the one
 *              whose index equals `deny_response_index`
 *   botscore   stands in for the bot plugin: publishes "bot.score" from the request header
 *              x-bot-score
 * Every variant with config `log_file` appends a line per request from on_log: "<path> <grpc_status>
 * <grpc.service> <grpc.method>" (request_info strings, all taken before any is printed). */
#include <portcullis/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef VARIANT_NOSYM

typedef struct ctx {
    const pc_host *host;
    long deny_index;
    long delay_ms;
    int responses;
    long deny_response_index;
    char *log_file;
} ctx;

static int init(const pc_host *host, const void *handle, const pc_config_node *config, void **out, char *err,
                size_t errlen)
{
    (void)handle;
#ifdef VARIANT_INITFAIL
    (void)host;
    (void)config;
    (void)out;
    snprintf(err, errlen, "initfail: this plugin always refuses to start");
    return -1;
#else
    (void)err;
    (void)errlen;
    ctx *c = calloc(1, sizeof *c);
    if (!c) return -1;
    c->host = host;
    c->deny_index = -1;
    const char *v = config ? host->config_string(host->config_get(config, "deny_index")) : NULL;
    if (v) c->deny_index = atol(v);
    c->delay_ms = 20;
    v = config ? host->config_string(host->config_get(config, "delay_ms")) : NULL;
    if (v) c->delay_ms = atol(v);
    v = config ? host->config_string(host->config_get(config, "responses")) : NULL;
    c->responses = v && !strcmp(v, "true");
    c->deny_response_index = -1;
    v = config ? host->config_string(host->config_get(config, "deny_response_index")) : NULL;
    if (v) c->deny_response_index = atol(v);
    v = config ? host->config_string(host->config_get(config, "log_file")) : NULL;
    if (v && !(c->log_file = strdup(v))) {
        free(c);
        return -1;
    }
    *out = c;
    return 0;
#endif
}

static void destroy(void *p)
{
    ctx *c = p;
    if (c) free(c->log_file);
    free(c);
}

static void on_log(pc_request *r, void *p, void *state)
{
    (void)state;
    ctx *c = p;
    if (!c->log_file) return;
    const pc_host *h = c->host;
    const char *path = h->request_info(r, "path"), *status = h->request_info(r, "grpc_status");
    const char *svc = h->request_info(r, "grpc.service"), *meth = h->request_info(r, "grpc.method");
    FILE *f = fopen(c->log_file, "a");
    if (!f) return;
    fprintf(f, "%s %s %s %s\n", path ? path : "-", status ? status : "-", svc ? svc : "-", meth ? meth : "-");
    fclose(f);
}

#ifdef VARIANT_ASYNC
typedef struct job {
    ctx *c;
    long index; /* -1 for the header block */
    int response;
    int deny;
} job;

static void job_work(void *arg)
{
    job *j = arg;
    struct timespec ts = {j->c->delay_ms / 1000, (j->c->delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* stands for a slow decision, e.g. a WAF transaction */
    j->deny = j->index >= 0 && j->index == (j->response ? j->c->deny_response_index : j->c->deny_index);
}

static void job_done(void *arg, pc_request *r)
{
    job *j = arg;
    const pc_host *h = j->c->host;
    void (*resume)(pc_request *, int) = j->response ? h->resume_response : h->resume;
    if (j->deny) {
        char msg[64];
        snprintf(msg, sizeof msg, "%s %ld denied after async check", j->response ? "reply" : "message",
                 j->index);
        h->deny(r, 7, msg);
        resume(r, PC_DENY);
    } else {
        resume(r, PC_CONTINUE);
    }
    free(j);
}

static int start_job(ctx *c, pc_request *r, long index, int response)
{
    job *j = calloc(1, sizeof *j);
    if (!j) return PC_ERROR;
    j->c = c;
    j->index = index;
    j->response = response;
    if (c->host->queue_work(r, job_work, job_done, j) != 0) {
        free(j);
        return PC_ERROR;
    }
    return PC_PAUSE;
}
#endif

static int on_headers(pc_request *r, void *p, void *state)
{
    (void)state;
    ctx *c = p;
    const pc_host *h = c->host;
#if defined(VARIANT_PUBLISHER)
    const char *tag = h->header_get(r, "x-tag");
    if (tag) h->publish(r, "test.tag", tag);
    return PC_CONTINUE;
#elif defined(VARIANT_READER)
    const char *tag = h->lookup(r, "test.tag");
    if (tag && !strcmp(tag, "block")) return h->deny(r, 9, "reader saw block");
    if (tag) h->header_set(r, "x-echo-reader-saw", tag);
    return PC_CONTINUE;
#elif defined(VARIANT_BOTSCORE)
    const char *score = h->header_get(r, "x-bot-score");
    if (score) h->publish(r, "bot.score", score);
    return PC_CONTINUE;
#elif defined(VARIANT_FAILING)
    (void)h;
    (void)r;
    return PC_ERROR;
#elif defined(VARIANT_ASYNC)
    (void)h;
    return start_job(c, r, -1, 0);
#else
    (void)h;
    (void)r;
    return PC_CONTINUE;
#endif
}

static int on_message(pc_request *r, void *p, void *state, const pc_message *m)
{
    (void)state;
    ctx *c = p;
#ifdef VARIANT_ASYNC
    return start_job(c, r, (long)m->index, m->response);
#endif
    if (c->deny_index >= 0 && (long)m->index == c->deny_index) {
        char msg[64];
        snprintf(msg, sizeof msg, "message %u denied", m->index);
        return c->host->deny(r, PC_GRPC_PERMISSION_DENIED, msg);
    }
    return PC_CONTINUE;
}

#ifdef VARIANT_ASYNC
static int on_response(pc_request *r, void *p, void *state, const pc_message *m)
{
    ctx *c = p;
    return c->responses ? on_message(r, p, state, m) : PC_CONTINUE;
}
#endif

#if defined(VARIANT_PUBLISHER)
#define NAME "publisher"
#elif defined(VARIANT_READER)
#define NAME "reader"
#elif defined(VARIANT_FAILING)
#define NAME "failing"
#elif defined(VARIANT_INITFAIL)
#define NAME "initfail"
#elif defined(VARIANT_BADABI)
#define NAME "badabi"
#elif defined(VARIANT_ABI1)
#define NAME "abi1"
#elif defined(VARIANT_ASYNC)
#define NAME "async"
#elif defined(VARIANT_BOTSCORE)
#define NAME "botscore"
#else
#define NAME "counter"
#endif

static const pc_conf_key config_keys[] = {
    {.key = "deny_index", .type = PC_CONF_INT, .doc = "deny the request message with this index"},
    {.key = "delay_ms", .type = PC_CONF_INT, .min = 0, .max = 60000, .doc = "async: delay of each decision"},
    {.key = "responses", .type = PC_CONF_BOOL, .doc = "async: decide response messages too"},
    {.key = "deny_response_index",
     .type = PC_CONF_INT,
     .doc = "async: deny the response message with this index"},
    {.key = "log_file", .type = PC_CONF_STRING, .doc = "append a line per request from on_log"},
    {0},
};

#ifdef VARIANT_ABI1
/* What a plugin built against the ABI 1 header exports: its symbol name is all the core needs. */
PC_PLUGIN_EXPORT const pc_plugin pc_plugin_v1 = {
    .abi_version = 1,
#else
PC_PLUGIN_EXPORT const pc_plugin pc_plugin_v2 = {
#ifdef VARIANT_BADABI
    .abi_version = 99,
#else
    .abi_version = PC_PLUGIN_ABI_VERSION,
#endif
#endif
    .struct_size = sizeof(pc_plugin),
    .name = NAME,
    .version = "test",
    .config = config_keys,
    .init = init,
    .destroy = destroy,
    .on_request_headers = on_headers,
    .on_request_message = on_message,
    .on_log = on_log,
#ifdef VARIANT_ASYNC
    .on_response_message = on_response,
#endif
};

#else
/* Not a plugin: a shared object without the descriptor symbol. */
PC_PLUGIN_EXPORT int pc_not_a_plugin = 1;
#endif
