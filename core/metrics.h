/* Per-worker counters and the Prometheus text rendering of all workers together. Each worker
 * writes only its own pc_metrics; the admin endpoint (main thread) reads them under each
 * worker's mutex, which is otherwise uncontended. */
#ifndef PC_METRICS_H
#define PC_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct pc_metrics pc_metrics;

pc_metrics *pc__metrics_new(void);
void pc__metrics_free(pc_metrics *m);

void pc__metrics_conn(pc_metrics *m, int delta);   /* +1 accepted, -1 closed */
void pc__metrics_stream(pc_metrics *m, int delta); /* +1 opened, -1 finished */
void pc__metrics_upstream_failure(pc_metrics *m, const char *origin);
/* One finished request. method: "/pkg.Svc/Method" for gRPC, the HTTP method otherwise. grpc_status < 0:
 * none. reason: why the edge ended it, or NULL. */
void pc__metrics_request(pc_metrics *m, const char *zone, const char *method, int grpc_status,
                         const char *reason, double seconds);

/* A gRPC-Web call admitted in zone (grpc_web.c). */
void pc__metrics_grpc_web(pc_metrics *m, const char *zone);
/* Plugin metrics: a counter by (name, zone, label) and a 0-100 histogram by (name, zone). */
void pc__metrics_plugin_count(pc_metrics *m, const char *name, const char *zone, const char *label,
                              uint64_t n);
void pc__metrics_plugin_observe(pc_metrics *m, const char *name, const char *zone, double value);

/* The Prometheus text exposition of all workers; malloc'd, NUL-terminated. */
char *pc__metrics_render(pc_metrics *const *ms, size_t n);

#endif
