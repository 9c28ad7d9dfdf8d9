/* The admin listener: a small HTTP/1.1 server on the main thread's loop serving /metrics
 * (Prometheus text) and /healthz. Meant for loopback or a management network. */
#ifndef PC_ADMIN_H
#define PC_ADMIN_H

#include <uv.h>

#include "metrics.h"

typedef struct pc_admin pc_admin;

pc_admin *pc__admin_start(uv_loop_t *loop, const char *host, unsigned port, pc_metrics *const *metrics,
                          size_t n, char *err, size_t errlen);
void pc__admin_stop(pc_admin *a);

#endif
