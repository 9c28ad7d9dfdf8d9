/* ModSecurity WAF plugin: runs libmodsecurity v3 with the OWASP Core Rule Set on every request,
 * and on every gRPC message decoded and rendered as JSON, so that rules see each protobuf string
 * field as an argument. All rule evaluation runs on the thread pool (queue_work + PC_PAUSE),
 * never on the event loop; each worker bounds the transactions it has in flight.
 *
 *   - name: modsecurity
 *     config:
 *       crs: /usr/share/modsecurity-crs     # the Core Rule Set (crs-setup.conf found next to it or in /etc)
 *       paranoia: 1                         # CRS paranoia level 1-4
 *       anomaly_threshold: 5                # inbound anomaly score that blocks
 *       mode: block                         # block | detect | off
 *       rules: [rules/waf/local.conf]       # SecLang files loaded after the CRS
 *       exclude: [920350]                   # rule ids removed everywhere
 *       audit_log: /var/log/portcullis/waf-audit.json
 *       zones: { internal.example.com: { mode: detect, paranoia: 2, exclude: [942100] } }
 *       max_queue: 256                      # transactions in flight per worker
 *       on_queue_full: deny                 # deny (RESOURCE_EXHAUSTED) | open (pass uninspected)
 *       body_limit: 1048576                 # largest body (or message as JSON) inspected
 *       inspect_numbers: false              # numeric and boolean fields too (for local rules)
 *       headers_first: false                # judge headers before the origin sees them (also per zone)
 *       inspect_response: false             # response messages too (held in block mode; also per zone)
 *
 * Transactions. Each gRPC message is judged by one transaction: connection, URI, every request
 * header, phase 1, the message as the JSON body, phase 2. libmodsecurity runs body rules once per
 * transaction, so a stream gets one transaction per message, each carrying the headers: a message
 * is judged with its headers exactly as a unary call is, and one that crosses the threshold stops
 * the call before it is forwarded (earlier messages went through). A unary call costs one
 * transaction in one job on one pool thread. The CRS decides in phase 2 (rule 949110), so the
 * headers are judged with the first message: the origin may see the headers of a call that is
 * then blocked, never its message. With headers_first the headers are judged on their own
 * (phases 1 and 2) before the origin sees anything, and every message then gets its own
 * transaction: for streams whose server speaks first, or where handlers act on metadata alone,
 * at about twice the CPU of a unary call. A gRPC call that ends without a message is judged by its
 * headers alone. Plain HTTP/2 requests are judged whole, headers and body in one transaction: the
 * core collects the body (host->hold_body, up to body_limit; larger is a 413) and the origin sees
 * nothing before the verdict.
 *
 * Threads. Rule sets are loaded once, in init, on the main thread (loading is not thread-safe),
 * and are read-only afterwards: libmodsecurity keeps all per-request state in the Transaction,
 * so many transactions may evaluate one rules set at once (as the nginx connector's workers and
 * its thread-pool builds do). A transaction is created, run and freed within one job, on one
 * thread. A request has at most one request job at a time (the call is paused while it runs).
 * The in-memory collections that libmodsecurity 3.0.9 does not lock correctly are not used
 * (rules/waf/crs-overrides.conf removes the rule that opens them). */
#include <modsecurity/intervention.h>
#include <modsecurity/modsecurity.h>
#include <modsecurity/rules_set.h>
#include <modsecurity/transaction.h>
#include <portcullis/plugin.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "waf_body.h"
#include "waf_config.h"
#include "waf_tx.h"

#define MAX_IDS WAF_MAX_IDS
/* The fast path runs on the event loop: a message whose JSON rendering is larger goes to the thread
 * pool (libmodsecurity) instead, so that no call waits long behind another's inspection. */
#define FAST_PATH_MAX_BODY 16384

typedef struct waf_worker {
    const waf_conf *c;
    size_t inflight;           /* jobs queued or running for this worker's requests */
    waf_fast_scratch *scratch; /* the fast path's scanning memory, fitted to every rules set */
} waf_worker;

enum { VERDICT_NONE = 0, VERDICT_DETECTED, VERDICT_BLOCKED };
enum { FAST_NONE = 0, FAST_CLEAN, FAST_FALLBACK };

/* One request, from its headers hook to on_log. Worker thread only, except that running jobs read
 * the request facts, which do not change once copied. */
typedef struct waf_req {
    const waf_profile *profile;
    int headers_first;
    char *id;
    char *method, *uri, *client_ip;
    waf_kv *hv;          /* the headers; one allocation with the strings */
    waf_facts facts;     /* what both paths see of the request besides its body */
    waf_fast_call *fast; /* the fast path's state for this call, made on first use */
    int grpc;
    int json_subtype; /* application/grpc+json: messages are JSON already */
    unsigned ntx;     /* transactions started: the first is "<id>", later ones "<id>-<n>" */
    /* merged results, worker thread only */
    uint32_t ids[MAX_IDS];
    size_t nids;
    int score, out_score;
    int verdict;
    const char *skipped; /* why something went uninspected: "queue_full", "too_large" */
} waf_req;

typedef struct waf_slot {
    waf_req *req;
} waf_slot;

enum {
    JOB_HEADERS,  /* phases 1 and 2 without a body */
    JOB_MESSAGE,  /* phases 1 and 2 with a message as the body */
    JOB_RESPONSE, /* phase 1, then phases 3 and 4 with a response message */
};

/* One transaction, start to end, on a pool thread. */
typedef struct waf_job {
    waf_worker *w;
    waf_req *req;
    int kind;
    char *body;
    size_t body_len;
    int resp_status;
    char txid[96];
    waf_report rep; /* the log callback's data pointer */
    int failed;
    int held; /* a response message waits for this job's verdict */
    int fast; /* verify mode: what the fast path said (FAST_NONE, FAST_CLEAN, FAST_FALLBACK) */
} waf_job;

/* ---- running transactions (thread pool) ---- */

static void job_work(void *arg)
{
    waf_job *j = arg;
    const waf_req *q = j->req;
    const waf_conf *c = j->w->c;
    int rc = j->kind == JOB_RESPONSE ? waf_tx_response(c->msc, q->profile->rules, j->txid, &q->facts,
                                                       j->resp_status, j->body, j->body_len, &j->rep)
                                     : waf_tx_request(c->msc, q->profile->rules, j->txid, &q->facts, j->body,
                                                      j->body_len, &j->rep);
    if (rc < 0) j->failed = 1;
}

/* ---- verdicts (worker thread) ---- */

static void publish_results(const pc_host *h, pc_request *r, const waf_req *q)
{
    if (q->nids) {
        char ids[MAX_IDS * 11 + 1];
        size_t n = 0;
        for (size_t i = 0; i < q->nids; i++)
            n += (size_t)snprintf(ids + n, sizeof ids - n, "%s%u", i ? "," : "", q->ids[i]);
        h->publish(r, "waf.rule_ids", ids);
    }
    char num[16];
    if (q->score >= 0) {
        snprintf(num, sizeof num, "%d", q->score);
        h->publish(r, "waf.score", num);
    }
    if (q->out_score >= 0) {
        snprintf(num, sizeof num, "%d", q->out_score);
        h->publish(r, "waf.response_score", num);
    }
    if (q->verdict) h->publish(r, "waf.verdict", q->verdict == VERDICT_BLOCKED ? "blocked" : "detected");
    if (q->skipped) h->publish(r, "waf.skipped", q->skipped);
}

static void merge(waf_req *q, const waf_report *rep)
{
    for (size_t i = 0; i < rep->nids; i++)
        waf_ids_add(q->ids, &q->nids, rep->ids[i]);
    if (rep->score > q->score) q->score = rep->score;
    if (rep->out_score > q->out_score) q->out_score = rep->out_score;
}

static int has_id(const waf_report *rep, uint32_t id)
{
    return waf_report_has(rep, id);
}

static void job_free(waf_job *j)
{
    free(j->body);
    free(j);
}

static void job_done(void *arg, pc_request *r)
{
    waf_job *j = arg;
    waf_worker *w = j->w;
    waf_req *q = j->req;
    const pc_host *h = w->c->host;
    const waf_report *rep = &j->rep;
    w->inflight--;
    merge(q, rep);
    if (j->fast == FAST_CLEAN && !j->failed && !waf_report_clean(rep)) {
        /* verify: the fast path called clean what the engine reported on */
        char ids[MAX_IDS * 11 + 1] = "";
        size_t n = 0;
        for (size_t i = 0; i < rep->nids; i++)
            n += (size_t)snprintf(ids + n, sizeof ids - n, "%s%u", i ? "," : "", rep->ids[i]);
        h->metric_count(r, "waf_fast_path_mismatch", "result=clean_but_reported", 1);
        h->log(w->c->handle, PC_PLUGIN_LOG_ERROR,
               "fast path mismatch on %s: fast path clean, engine reported status %d score %d rules %s",
               j->txid, rep->status, rep->score, ids[0] ? ids : "-");
    }
    if (j->kind == JOB_RESPONSE) {
        /* Rule 959100 is the CRS's outbound verdict (its threshold is the CRS's own). In block
         * mode the message was held (see on_response_message): it is stopped, or goes on. */
        int matched = rep->status || has_id(rep, 959100), held = j->held, failed_resp = j->failed;
        job_free(j);
        if (failed_resp) h->metric_count(r, "waf", "error", 1);
        if (matched && held) {
            q->verdict = VERDICT_BLOCKED;
            publish_results(h, r, q);
            char msg[160];
            snprintf(msg, sizeof msg, "response to request %s blocked by the WAF", q->id);
            h->deny(r, PC_GRPC_PERMISSION_DENIED, msg);
            h->resume_response(r, PC_DENY);
            return;
        }
        if (matched && q->verdict == VERDICT_NONE) q->verdict = VERDICT_DETECTED;
        publish_results(h, r, q);
        /* A response check that failed lets the message through: the request was already judged. */
        if (held) h->resume_response(r, PC_CONTINUE);
        return;
    }
    /* What the verdict needs from the report, before the job (and the report in it) is freed. */
    int failed = j->failed, status = rep->status, would_block = has_id(rep, 949110);
    job_free(j);
    if (failed) {
        h->metric_count(r, "waf", "error", 1);
        h->resume(r, PC_ERROR);
        return;
    }
    if (status && q->profile->mode == WAF_BLOCK) {
        q->verdict = VERDICT_BLOCKED;
        publish_results(h, r, q);
        char msg[160];
        snprintf(msg, sizeof msg, "request %s blocked by the WAF", q->id);
        /* Plain HTTP gets the intervention's status (403 from the CRS, 400 for a body that does
         * not parse, or what a local rule says); a core without deny_http answers 403. */
        if (!q->grpc && PC_HOST_HAS(h, deny_http))
            h->deny_http(r, status, PC_GRPC_PERMISSION_DENIED, msg);
        else
            h->deny(r, PC_GRPC_PERMISSION_DENIED, msg);
        h->resume(r, PC_DENY);
        return;
    }
    /* Detect mode: DetectionOnly raises no intervention; rule 949110 matching (the score reached
     * the threshold) is a block that was not enforced. */
    if ((status || would_block) && q->verdict == VERDICT_NONE) q->verdict = VERDICT_DETECTED;
    publish_results(h, r, q);
    h->resume(r, PC_CONTINUE);
}

/* ---- hooks ---- */

static waf_req *req_of(void *state)
{
    waf_slot *s = state;
    return s ? s->req : NULL;
}

static char *dup_or(const char *s, const char *dflt)
{
    return strdup(s ? s : dflt);
}

static void req_free(waf_req *q)
{
    if (!q) return;
    free(q->id);
    free(q->method);
    free(q->uri);
    free(q->client_ip);
    free(q->hv);
    waf_fast_call_free(q->fast);
    free(q);
}

/* Copies what the jobs need, since a job must not touch the request. HTTP/2 carries the host in
 * :authority; it is presented as Host, as HTTP/1 connectors do (CRS requires a Host header). */
static waf_req *req_new(const waf_conf *c, pc_request *r, const waf_zone *z)
{
    const pc_host *h = c->host;
    waf_req *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->profile = z->profile;
    q->headers_first = z->headers_first;
    q->score = q->out_score = -1;
    const char *port = h->request_info(r, "client.port");
    q->id = dup_or(h->request_info(r, "request_id"), "-");
    q->method = dup_or(h->request_info(r, "method"), "GET");
    q->uri = dup_or(h->request_info(r, "path"), "/");
    q->client_ip = dup_or(h->request_info(r, "client.ip"), "0.0.0.0");
    const char *grpc = h->request_info(r, "grpc");
    q->grpc = grpc && !strcmp(grpc, "1");
    const char *sub = q->grpc ? h->request_info(r, "grpc.subtype") : NULL;
    q->json_subtype = sub && !strcmp(sub, "json");
    if (!q->id || !q->method || !q->uri || !q->client_ip) goto fail;

    size_t n = h->header_count(r), bytes = 0, k = 0;
    const char *authority = h->request_info(r, "authority");
    int has_host = h->header_get(r, "host") != NULL;
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        if (h->header_at(r, i, &name, &value) == 0 && name[0] != ':')
            bytes += strlen(name) + strlen(value) + 2;
    }
    if (!has_host && authority) bytes += 5 + strlen(authority) + 1;
    q->hv = malloc((n + 1) * sizeof *q->hv + bytes);
    if (!q->hv) goto fail;
    char *s = (char *)(q->hv + n + 1);
    if (!has_host && authority) {
        size_t al = strlen(authority);
        q->hv[k] = (waf_kv){memcpy(s, "host", 5), 4, memcpy(s + 5, authority, al + 1), al};
        s += 5 + al + 1;
        k++;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        if (h->header_at(r, i, &name, &value) != 0 || name[0] == ':')
            continue; /* pseudo-headers are already the URI and method */
        size_t nl = strlen(name), vl = strlen(value);
        q->hv[k] = (waf_kv){memcpy(s, name, nl + 1), nl, memcpy(s + nl + 1, value, vl + 1), vl};
        s += nl + 1 + vl + 1;
        k++;
    }
    q->facts = (waf_facts){.client_ip = q->client_ip,
                           .client_port = port ? atoi(port) : 0,
                           .method = q->method,
                           .uri = q->uri,
                           .headers = q->hv,
                           .nheaders = k};
    return q;
fail:
    req_free(q);
    return NULL;
}

/* Queues one transaction and pauses the call (responses: only queues). Applies the per-worker
 * bound first: a full queue denies with RESOURCE_EXHAUSTED, or lets the call through
 * uninspected with on_queue_full: open. Takes `body`. */
static int start_job(waf_worker *w, pc_request *r, waf_req *q, int kind, char *body, size_t len,
                     int resp_status, int fast)
{
    const waf_conf *c = w->c;
    const pc_host *h = c->host;
    if (w->inflight >= c->max_queue) {
        free(body);
        if (kind == JOB_RESPONSE || c->queue_full_open) {
            h->metric_count(r, "waf", kind == JOB_RESPONSE ? "response_skipped" : "fail_open", 1);
            q->skipped = "queue_full";
            publish_results(h, r, q);
            return PC_CONTINUE;
        }
        h->metric_count(r, "waf", "queue_full", 1);
        char msg[160];
        snprintf(msg, sizeof msg, "request %s refused: the WAF is busy", q->id);
        return h->deny(r, PC_GRPC_RESOURCE_EXHAUSTED, msg);
    }
    waf_job *j = calloc(1, sizeof *j);
    if (!j) {
        free(body);
        return PC_ERROR;
    }
    j->w = w;
    j->req = q;
    j->kind = kind;
    j->body = body;
    j->body_len = len;
    j->resp_status = resp_status;
    j->fast = fast;
    waf_report_reset(&j->rep, c);
    /* Response messages are held for the verdict where it can stop them: block mode, and a core
     * with resume_response. Otherwise they are only reported. */
    j->held = kind == JOB_RESPONSE && q->profile->mode == WAF_BLOCK && PC_HOST_HAS(h, resume_response);
    if (q->ntx == 0)
        snprintf(j->txid, sizeof j->txid, "%s", q->id);
    else
        snprintf(j->txid, sizeof j->txid, "%s-%u", q->id, q->ntx);
    if (h->queue_work(r, job_work, job_done, j) != 0) {
        job_free(j);
        return PC_ERROR;
    }
    q->ntx++;
    w->inflight++;
    return kind == JOB_RESPONSE && !j->held ? PC_CONTINUE : PC_PAUSE;
}

/* The fast path on one request transaction (args and body NULL for one without a message).
 * Returns FAST_CLEAN when libmodsecurity would report nothing, FAST_FALLBACK otherwise, FAST_NONE when
 * the fast path is off; counts which. */
static int fast_judge(waf_worker *w, pc_request *r, waf_req *q, const waf_args *args, const char *body,
                      size_t len)
{
    const waf_conf *c = w->c;
    const pc_host *h = c->host;
    if (c->fast_path == WAF_FAST_OFF || !q->profile->fast || !w->scratch) return FAST_NONE;
    const char *why = NULL;
    if (!q->grpc)
        why = "plain HTTP";
    else if (!args && body)
        why = "message not decoded"; /* application/grpc+json: the rules read its own JSON */
    else if (len > FAST_PATH_MAX_BODY)
        why = "message over the event loop's budget";
    if (!why && !q->fast && !(q->fast = waf_fast_call_new(q->profile->fast, &q->facts, q->id)))
        why = "out of memory";
    if (!why && waf_fast_judge(q->fast, w->scratch, args ? args->kv : NULL, args ? args->n : 0, body, len,
                               &why) == WAF_FAST_CLEAN) {
        h->metric_count(r, "waf_fast_path", "result=clean", 1);
        return FAST_CLEAN;
    }
    char label[96];
    snprintf(label, sizeof label, "reason=%s", why ? why : "?");
    h->log(c->handle, PC_PLUGIN_LOG_DEBUG, "fast path: %s falls back: %s (rule %u)", q->id, why ? why : "?",
           q->fast ? waf_fast_fallback_rule(q->fast) : 0);
    h->metric_count(r, "waf_fast_path", "result=fallback", 1);
    h->metric_count(r, "waf_fast_path_fallback", label, 1);
    return FAST_FALLBACK;
}

/* A transaction judged by the fast path where it can, by libmodsecurity otherwise (or by both, in
 * verify mode). Takes `body`. */
static int judge(waf_worker *w, pc_request *r, waf_req *q, int kind, const waf_args *args, char *body,
                 size_t len)
{
    int fast = fast_judge(w, r, q, args, body, len);
    if (fast == FAST_CLEAN && w->c->fast_path == WAF_FAST_ON) {
        free(body);
        q->ntx++;
        return PC_CONTINUE;
    }
    return start_job(w, r, q, kind, body, len, 0, fast);
}

static int on_request_headers(pc_request *r, void *ctx, void *state)
{
    waf_worker *w = ctx;
    const waf_conf *c = w->c;
    const pc_host *h = c->host;
    const waf_zone *z = waf_conf_zone(c, h->request_info(r, "zone"));
    waf_slot *slot = state;
    if (!z->profile || !slot) return PC_CONTINUE;
    waf_req *q = slot->req = req_new(c, r, z);
    if (!q) return PC_ERROR;
    /* gRPC calls are judged with their first message (see the top of this file). */
    if (q->grpc && !q->headers_first) return PC_CONTINUE;
    /* Plain HTTP: the core collects the body and the request is judged with it (or, without a
     * body, in on_request_end), before the origin sees any of it. */
    if (!q->grpc && PC_HOST_HAS(h, hold_body) && h->hold_body(r, c->body_limit) == 0) return PC_CONTINUE;
    return judge(w, r, q, JOB_HEADERS, NULL, NULL, 0);
}

/* The arguments and the body ModSecurity sees for one message: its fields as flat JSON. `args` is
 * left empty for application/grpc+json, whose JSON the rules read as it came. */
static int render_message(const waf_conf *c, pc_request *r, const waf_req *q, const pc_message *m, waf_buf *b,
                          waf_args *args, int *have_args)
{
    *have_args = 0;
    if (q->json_subtype && waf_is_text(m->data, m->len)) {
        /* application/grpc+json: the message is JSON text already. */
        if (m->len + 1 > c->body_limit) {
            b->over = 1;
            return -1;
        }
        if (!(b->p = malloc(m->len + 1))) {
            b->oom = 1;
            return -1;
        }
        memcpy(b->p, m->data, m->len);
        b->p[m->len] = '\0';
        b->len = m->len;
        b->cap = m->len + 1;
        return 0;
    }
    const pc_field *f;
    long n = q->json_subtype ? -1 : c->host->message_fields(r, m, &f, NULL, 0);
    int rc = n >= 0 ? waf_args_from_fields(args, f, n, c->inspect_numbers)
                    : waf_args_from_raw(args, m->data, m->len);
    if (rc < 0) {
        b->oom = 1;
        return -1;
    }
    *have_args = 1;
    return waf_render_args(b, args);
}

static int on_request_message(pc_request *r, void *ctx, void *state, const pc_message *m)
{
    waf_worker *w = ctx;
    const waf_conf *c = w->c;
    const pc_host *h = c->host;
    waf_req *q = req_of(state);
    if (!q) return PC_CONTINUE;
    if (!q->grpc) {
        /* A plain HTTP body (host->hold_body), as the client sent it: the base settings choose the
         * body processor from its content-type, as a web server connector would. */
        char *body = malloc(m->len ? m->len : 1);
        if (!body) return PC_ERROR;
        memcpy(body, m->data, m->len);
        return start_job(w, r, q, JOB_MESSAGE, body, m->len, 0, FAST_NONE);
    }
    waf_buf b;
    waf_args args;
    int have_args;
    waf_buf_init(&b, c->body_limit);
    waf_args_init(&args);
    if (render_message(c, r, q, m, &b, &args, &have_args) < 0) {
        int over = b.over;
        waf_buf_free(&b);
        waf_args_free(&args);
        if (!over) return PC_ERROR;
        /* Larger than body_limit: inspecting it whole would cost too much, and a part is not a
         * verdict. Refused (RESOURCE_EXHAUSTED) unless the WAF only detects. */
        h->metric_count(r, "waf", "too_large", 1);
        q->skipped = "too_large";
        publish_results(h, r, q);
        if (q->profile->mode != WAF_BLOCK) return PC_CONTINUE;
        char msg[160];
        snprintf(msg, sizeof msg, "request %s refused: message too large for the WAF", q->id);
        return h->deny(r, PC_GRPC_RESOURCE_EXHAUSTED, msg);
    }
    size_t len;
    char *body = waf_buf_take(&b, &len);
    int rv = judge(w, r, q, JOB_MESSAGE, have_args ? &args : NULL, body, len);
    waf_args_free(&args);
    return rv;
}

/* A gRPC call that ended without any message, or a plain HTTP request without a body, still has
 * its headers and URI judged. */
static int on_request_end(pc_request *r, void *ctx, void *state)
{
    waf_worker *w = ctx;
    waf_req *q = req_of(state);
    if (!q || q->ntx) return PC_CONTINUE;
    return judge(w, r, q, JOB_HEADERS, NULL, NULL, 0);
}

static int on_response_message(pc_request *r, void *ctx, void *state, const pc_message *m)
{
    waf_worker *w = ctx;
    const waf_conf *c = w->c;
    waf_req *q = req_of(state);
    if (!q || !q->profile->inspect_response) return PC_CONTINUE;
    waf_buf b;
    waf_args args;
    int have_args;
    waf_buf_init(&b, c->body_limit);
    waf_args_init(&args);
    int rendered = render_message(c, r, q, m, &b, &args, &have_args);
    waf_args_free(&args);
    if (rendered < 0) {
        waf_buf_free(&b);
        return PC_CONTINUE; /* reported only: nothing to stop */
    }
    size_t len;
    char *body = waf_buf_take(&b, &len);
    const char *status = c->host->request_info(r, "status");
    int rv = start_job(w, r, q, JOB_RESPONSE, body, len, status ? atoi(status) : 200, FAST_NONE);
    return rv == PC_ERROR ? PC_CONTINUE : rv;
}

static void on_log(pc_request *r, void *ctx, void *state)
{
    waf_worker *w = ctx;
    const waf_conf *c = w->c;
    const pc_host *h = c->host;
    waf_req *q = req_of(state);
    if (!q) return;
    char id[16];
    for (size_t i = 0; i < q->nids; i++) {
        snprintf(id, sizeof id, "%u", q->ids[i]);
        h->metric_count(r, "waf_rule", id, 1);
    }
    if (q->verdict) h->metric_count(r, "waf", q->verdict == VERDICT_BLOCKED ? "blocked" : "detected", 1);
    req_free(q);
    ((waf_slot *)state)->req = NULL;
}

/* ---- lifecycle ---- */

static int init(const pc_host *host, const void *handle, const pc_config_node *config, void **out, char *err,
                size_t errlen)
{
    waf_conf *c;
    if (waf_conf_load(host, handle, config, waf_tx_log_cb, &c, err, errlen) < 0) return -1;
    *out = c;
    return 0;
}

static void destroy(void *ctx)
{
    waf_conf_free(ctx);
}

static int worker_init(void *plugin_ctx, unsigned worker_id, void **out, char *err, size_t errlen)
{
    (void)worker_id;
    waf_worker *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    w->c = plugin_ctx;
    for (size_t i = 0; i < w->c->nprofiles; i++)
        if (w->c->profiles[i]->fast && waf_fast_scratch_fit(w->c->profiles[i]->fast, &w->scratch) < 0) {
            waf_fast_scratch_free(w->scratch);
            free(w);
            snprintf(err, errlen, "out of memory for the fast path's scratch space");
            return -1;
        }
    *out = w;
    return 0;
}

static void worker_destroy(void *ctx)
{
    waf_worker *w = ctx;
    waf_fast_scratch_free(w->scratch);
    free(w);
}

PC_PLUGIN_EXPORT const pc_plugin pc_plugin_v2 = {
    .abi_version = PC_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pc_plugin),
    .name = "modsecurity",
    .version = "2.0",
    .summary = "the WAF: ModSecurity with the OWASP Core Rule Set on headers and every message field",
    .config = waf_config_keys,
    .request_state_size = sizeof(waf_slot),
    .init = init,
    .destroy = destroy,
    .worker_init = worker_init,
    .worker_destroy = worker_destroy,
    .on_request_headers = on_request_headers,
    .on_request_message = on_request_message,
    .on_request_end = on_request_end,
    .on_response_message = on_response_message,
    .on_log = on_log,
};
