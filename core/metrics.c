/* Metrics tables are bounded: past the limit new label sets are counted under method="other",
 * so a client spraying random method names cannot grow memory. */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_status.h"

#define MAX_SERIES 1024
#define MAX_NAMED 64
#define NBUCKETS 14

static const double bucket_le[NBUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                           0.25,  0.5,    1,     2.5,  5,     10,   60};

typedef struct series {
    char *zone, *method;
    int grpc_status;
    unsigned long long count;
} series;

typedef struct named {
    char *name;
    unsigned long long count;
} named;

#define MAX_PLUGIN_SERIES 512
#define PLUGIN_BUCKETS 10

typedef struct pseries {
    char *name, *zone, *label; /* label NULL: a histogram */
    unsigned long long count;
    unsigned long long buckets[PLUGIN_BUCKETS + 1];
    double sum;
} pseries;

struct pc_metrics {
    pseries *ps;
    size_t nps;
    pthread_mutex_t lock;
    long long conns_active, streams_active;
    unsigned long long conns_total;
    series *s;
    size_t ns;
    named reasons[MAX_NAMED], upstream[MAX_NAMED], web[MAX_NAMED];
    size_t nreasons, nupstream, nweb;
    unsigned long long buckets[NBUCKETS + 1];
    double sum;
    unsigned long long hist_count;
};

pc_metrics *pc__metrics_new(void)
{
    pc_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void pc__metrics_free(pc_metrics *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->ns; i++) {
        free(m->s[i].zone);
        free(m->s[i].method);
    }
    free(m->s);
    for (size_t i = 0; i < m->nreasons; i++)
        free(m->reasons[i].name);
    for (size_t i = 0; i < m->nupstream; i++)
        free(m->upstream[i].name);
    for (size_t i = 0; i < m->nweb; i++)
        free(m->web[i].name);
    for (size_t i = 0; i < m->nps; i++) {
        free(m->ps[i].name);
        free(m->ps[i].zone);
        free(m->ps[i].label);
    }
    free(m->ps);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static int nullcmp(const char *a, const char *b)
{
    return (!a || !b) ? (a != b) : strcmp(a, b);
}

/* Bounded like the request series: past the limit new label sets are dropped. */
static pseries *pseries_get(pc_metrics *m, const char *name, const char *zone, const char *label)
{
    for (size_t i = 0; i < m->nps; i++)
        if (!strcmp(m->ps[i].name, name) && !strcmp(m->ps[i].zone, zone) && !nullcmp(m->ps[i].label, label))
            return &m->ps[i];
    if (m->nps >= MAX_PLUGIN_SERIES) return NULL;
    pseries *n = realloc(m->ps, (m->nps + 1) * sizeof *n);
    if (!n) return NULL;
    m->ps = n;
    pseries *p = &n[m->nps];
    memset(p, 0, sizeof *p);
    p->name = strdup(name);
    p->zone = strdup(zone);
    p->label = label ? strdup(label) : NULL;
    if (!p->name || !p->zone || (label && !p->label)) {
        free(p->name);
        free(p->zone);
        free(p->label);
        return NULL;
    }
    m->nps++;
    return p;
}

void pc__metrics_plugin_count(pc_metrics *m, const char *name, const char *zone, const char *label,
                              uint64_t n)
{
    pthread_mutex_lock(&m->lock);
    pseries *p = pseries_get(m, name, zone ? zone : "", label ? label : "");
    if (p) p->count += n;
    pthread_mutex_unlock(&m->lock);
}

void pc__metrics_plugin_observe(pc_metrics *m, const char *name, const char *zone, double value)
{
    pthread_mutex_lock(&m->lock);
    pseries *p = pseries_get(m, name, zone ? zone : "", NULL);
    if (p) {
        int b = value <= 0 ? 0 : value >= 100 ? PLUGIN_BUCKETS : (int)((value - 0.000001) / 10);
        if (b > PLUGIN_BUCKETS) b = PLUGIN_BUCKETS;
        p->buckets[b]++;
        p->sum += value;
        p->count++;
    }
    pthread_mutex_unlock(&m->lock);
}

void pc__metrics_conn(pc_metrics *m, int delta)
{
    pthread_mutex_lock(&m->lock);
    m->conns_active += delta;
    if (delta > 0) m->conns_total++;
    pthread_mutex_unlock(&m->lock);
}

void pc__metrics_stream(pc_metrics *m, int delta)
{
    pthread_mutex_lock(&m->lock);
    m->streams_active += delta;
    pthread_mutex_unlock(&m->lock);
}

static void bump_named(named *t, size_t *n, const char *name, unsigned long long by)
{
    for (size_t i = 0; i < *n; i++)
        if (!strcmp(t[i].name, name)) {
            t[i].count += by;
            return;
        }
    /* The last slot is kept for "other". */
    if (*n >= MAX_NAMED - 1 && strcmp(name, "other") != 0) {
        bump_named(t, n, "other", by);
        return;
    }
    if (*n >= MAX_NAMED) return;
    char *copy = strdup(name);
    if (!copy) return;
    t[*n].name = copy;
    t[*n].count = by;
    (*n)++;
}

void pc__metrics_upstream_failure(pc_metrics *m, const char *origin)
{
    pthread_mutex_lock(&m->lock);
    bump_named(m->upstream, &m->nupstream, origin, 1);
    pthread_mutex_unlock(&m->lock);
}

static void add_series(pc_metrics *m, const char *zone, const char *method, int grpc_status,
                       unsigned long long by)
{
    for (size_t i = 0; i < m->ns; i++) {
        series *x = &m->s[i];
        if (x->grpc_status == grpc_status && !strcmp(x->method, method) && !strcmp(x->zone, zone)) {
            x->count += by;
            return;
        }
    }
    if (m->ns >= MAX_SERIES && strcmp(method, "other") != 0) {
        add_series(m, zone, "other", grpc_status, by);
        return;
    }
    series *s = realloc(m->s, (m->ns + 1) * sizeof *s);
    if (!s) return;
    m->s = s;
    s[m->ns] = (series){strdup(zone), strdup(method), grpc_status, by};
    if (!s[m->ns].zone || !s[m->ns].method) {
        free(s[m->ns].zone);
        free(s[m->ns].method);
        return;
    }
    m->ns++;
}

void pc__metrics_request(pc_metrics *m, const char *zone, const char *method, int grpc_status,
                         const char *reason, double seconds)
{
    pthread_mutex_lock(&m->lock);
    add_series(m, zone ? zone : "", method ? method : "", grpc_status, 1);
    if (reason) bump_named(m->reasons, &m->nreasons, reason, 1);
    size_t b = 0;
    while (b < NBUCKETS && seconds > bucket_le[b])
        b++;
    m->buckets[b]++;
    m->sum += seconds;
    m->hist_count++;
    pthread_mutex_unlock(&m->lock);
}

void pc__metrics_grpc_web(pc_metrics *m, const char *zone)
{
    pthread_mutex_lock(&m->lock);
    bump_named(m->web, &m->nweb, zone ? zone : "", 1);
    pthread_mutex_unlock(&m->lock);
}

typedef struct out {
    char *buf;
    size_t len, cap;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(out *o, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (o->len + (size_t)n < o->cap) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n + 1;
        char *b = realloc(o->buf, cap);
        if (!b) return;
        o->buf = b;
        o->cap = cap;
    }
}

/* Label values are escaped per the text format: backslash, quote, newline. */
static const char *esc(const char *s, char *buf, size_t len);

/* A plugin label written "name=value" (name in [a-z_], not "zone"), or several joined by ';'
 * ("rule=cart;result=refused"), is exported as those labels. Into out as `name="value",...`;
 * 0 when the label is not of that form (then it is exported as label="..."). */
static int own_labels(const char *label, char *out, size_t len)
{
    size_t used = 0;
    const char *names[8];
    size_t nlen[8], n = 0;
    for (const char *p = label;;) {
        size_t kl = strspn(p, "abcdefghijklmnopqrstuvwxyz_");
        if (!kl || kl >= 32 || p[kl] != '=' || (kl == 4 && !strncmp(p, "zone", 4)) || n == 8) return 0;
        for (size_t i = 0; i < n; i++)
            if (nlen[i] == kl && !strncmp(names[i], p, kl)) return 0; /* a name twice */
        names[n] = p;
        nlen[n++] = kl;
        const char *v = p + kl + 1, *end = strchr(v, ';');
        size_t vl = end ? (size_t)(end - v) : strlen(v);
        char val[256], e[512];
        snprintf(val, sizeof val, "%.*s", (int)vl, v);
        int w = snprintf(out + used, len - used, "%s%.*s=\"%s\"", used ? "," : "", (int)kl, p,
                         esc(val, e, sizeof e));
        if (w < 0 || (size_t)w >= len - used) return 0;
        used += (size_t)w;
        if (!end) return 1;
        p = end + 1;
    }
}

static const char *esc(const char *s, char *buf, size_t len)
{
    size_t o = 0;
    for (; *s && o + 3 < len; s++) {
        if (*s == '\\' || *s == '"') {
            buf[o++] = '\\';
            buf[o++] = *s;
        } else if (*s == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else {
            buf[o++] = *s;
        }
    }
    buf[o] = '\0';
    return buf;
}

char *pc__metrics_render(pc_metrics *const *ms, size_t n)
{
    out o = {malloc(4096), 0, 4096};
    if (!o.buf) return NULL;
    o.buf[0] = '\0';
    pc_metrics agg;
    memset(&agg, 0, sizeof agg);
    char e1[256], e2[512];

    put(&o, "# HELP pc_connections_total Client connections accepted, by worker.\n"
            "# TYPE pc_connections_total counter\n");
    for (size_t w = 0; w < n; w++) {
        pthread_mutex_lock(&ms[w]->lock);
        put(&o, "pc_connections_total{worker=\"%zu\"} %llu\n", w, ms[w]->conns_total);
        agg.conns_active += ms[w]->conns_active;
        agg.streams_active += ms[w]->streams_active;
        for (size_t i = 0; i < ms[w]->ns; i++)
            add_series(&agg, ms[w]->s[i].zone, ms[w]->s[i].method, ms[w]->s[i].grpc_status,
                       ms[w]->s[i].count);
        for (size_t i = 0; i < ms[w]->nreasons; i++)
            bump_named(agg.reasons, &agg.nreasons, ms[w]->reasons[i].name, ms[w]->reasons[i].count);
        for (size_t i = 0; i < ms[w]->nupstream; i++)
            bump_named(agg.upstream, &agg.nupstream, ms[w]->upstream[i].name, ms[w]->upstream[i].count);
        for (size_t i = 0; i < ms[w]->nweb; i++)
            bump_named(agg.web, &agg.nweb, ms[w]->web[i].name, ms[w]->web[i].count);
        for (size_t b = 0; b <= NBUCKETS; b++)
            agg.buckets[b] += ms[w]->buckets[b];
        for (size_t i = 0; i < ms[w]->nps; i++) {
            const pseries *x = &ms[w]->ps[i];
            pseries *p = pseries_get(&agg, x->name, x->zone, x->label);
            if (!p) continue;
            p->count += x->count;
            p->sum += x->sum;
            for (size_t b = 0; b <= PLUGIN_BUCKETS; b++)
                p->buckets[b] += x->buckets[b];
        }
        agg.sum += ms[w]->sum;
        agg.hist_count += ms[w]->hist_count;
        pthread_mutex_unlock(&ms[w]->lock);
    }
    put(&o,
        "# HELP pc_connections_active Open client connections.\n# TYPE pc_connections_active gauge\n"
        "pc_connections_active %lld\n",
        agg.conns_active);
    put(&o,
        "# HELP pc_streams_active Open client streams.\n# TYPE pc_streams_active gauge\npc_streams_active "
        "%lld\n",
        agg.streams_active);
    put(&o, "# HELP pc_requests_total Finished requests by zone, method and gRPC status.\n"
            "# TYPE pc_requests_total counter\n");
    for (size_t i = 0; i < agg.ns; i++)
        put(&o, "pc_requests_total{zone=\"%s\",method=\"%s\",grpc_status=\"%s\"} %llu\n",
            esc(agg.s[i].zone, e1, sizeof e1), esc(agg.s[i].method, e2, sizeof e2),
            agg.s[i].grpc_status < 0 ? "" : pc__grpc_status_name(agg.s[i].grpc_status), agg.s[i].count);
    put(&o, "# HELP pc_edge_errors_total Requests the edge itself ended, by reason.\n"
            "# TYPE pc_edge_errors_total counter\n");
    for (size_t i = 0; i < agg.nreasons; i++)
        put(&o, "pc_edge_errors_total{reason=\"%s\"} %llu\n", esc(agg.reasons[i].name, e1, sizeof e1),
            agg.reasons[i].count);
    put(&o, "# HELP pc_grpc_web_requests_total gRPC-Web calls translated at the edge, by zone (also counted "
            "in pc_requests_total).\n# TYPE pc_grpc_web_requests_total counter\n");
    for (size_t i = 0; i < agg.nweb; i++)
        put(&o, "pc_grpc_web_requests_total{zone=\"%s\"} %llu\n", esc(agg.web[i].name, e1, sizeof e1),
            agg.web[i].count);
    put(&o, "# HELP pc_upstream_connect_failures_total Failed connection attempts to origin servers.\n"
            "# TYPE pc_upstream_connect_failures_total counter\n");
    for (size_t i = 0; i < agg.nupstream; i++)
        put(&o, "pc_upstream_connect_failures_total{origin=\"%s\"} %llu\n",
            esc(agg.upstream[i].name, e1, sizeof e1), agg.upstream[i].count);
    put(&o, "# HELP pc_request_duration_seconds Time from request headers to the end of the call.\n"
            "# TYPE pc_request_duration_seconds histogram\n");
    unsigned long long cum = 0;
    for (size_t b = 0; b < NBUCKETS; b++) {
        cum += agg.buckets[b];
        put(&o, "pc_request_duration_seconds_bucket{le=\"%g\"} %llu\n", bucket_le[b], cum);
    }
    cum += agg.buckets[NBUCKETS];
    put(&o, "pc_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    put(&o, "pc_request_duration_seconds_sum %.6f\npc_request_duration_seconds_count %llu\n", agg.sum,
        agg.hist_count);
    char e3[256];
    for (size_t i = 0; i < agg.nps; i++) {
        const pseries *p = &agg.ps[i];
        if (p->label) {
            char lbl[512];
            if (own_labels(p->label, lbl, sizeof lbl)) {
                put(&o, "pc_%s_total{zone=\"%s\",%s} %llu\n", p->name, esc(p->zone, e1, sizeof e1), lbl,
                    p->count);
                continue;
            }
            put(&o, "pc_%s_total{zone=\"%s\",label=\"%s\"} %llu\n", p->name, esc(p->zone, e1, sizeof e1),
                esc(p->label, e3, sizeof e3), p->count);
            continue;
        }
        unsigned long long c = 0;
        for (size_t b = 0; b < PLUGIN_BUCKETS; b++) {
            c += p->buckets[b];
            put(&o, "pc_%s_bucket{zone=\"%s\",le=\"%zu\"} %llu\n", p->name, esc(p->zone, e1, sizeof e1),
                (b + 1) * 10, c);
        }
        c += p->buckets[PLUGIN_BUCKETS];
        put(&o,
            "pc_%s_bucket{zone=\"%s\",le=\"+Inf\"} %llu\npc_%s_sum{zone=\"%s\"} %g\npc_%s_count{zone=\"%s\"} "
            "%llu\n",
            p->name, e1, c, p->name, e1, p->sum, p->name, e1, p->count);
    }
    for (size_t i = 0; i < agg.nps; i++) {
        free(agg.ps[i].name);
        free(agg.ps[i].zone);
        free(agg.ps[i].label);
    }
    free(agg.ps);
    for (size_t i = 0; i < agg.ns; i++) {
        free(agg.s[i].zone);
        free(agg.s[i].method);
    }
    free(agg.s);
    for (size_t i = 0; i < agg.nreasons; i++)
        free(agg.reasons[i].name);
    for (size_t i = 0; i < agg.nupstream; i++)
        free(agg.upstream[i].name);
    for (size_t i = 0; i < agg.nweb; i++)
        free(agg.web[i].name);
    return o.buf;
}
