/* In-process driver for scripts/bench-lua: the config's lua rules on the benchmark's request, N times
 * per round through the real plugin chain (the offline environment of `portcullis rules test`), timed
 * with this thread's CPU clock, so other work on the machine barely moves the number.
 *
 *   bench-lua-driver CONFIG N ROUNDS    prints the median nanoseconds per request
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "rules_test.h"

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: bench-lua-driver CONFIG N ROUNDS\n");
        return 2;
    }
    long n = atol(argv[2]), rounds = atol(argv[3]);
    if (n < 1 || rounds < 1 || rounds > 100) return 2;
    char err[2048];
    pc__log_set_level(PC_LOG_WARN);
    pc_rules_env *env = pc__rules_env_open(argv[1], err, sizeof err);
    if (!env) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    /* What h2load sends in scripts/bench: one 16-byte message, field 1 = "bench-requests". */
    static const unsigned char body[] = "\x0a\x0e"
                                        "bench-requests";
    const char *headers[] = {"user-agent", "h2load nghttp2/1.52.0", "accept", "*/*"};
    pc_rules_msg msg = {body, sizeof body - 1};
    pc_rules_request rq = {.host = "127.0.0.1",
                           .path = "/bench.Bench/Unary",
                           .grpc = true,
                           .cleartext = true,
                           .headers = headers,
                           .nheaders = 2,
                           .client_ip = "127.0.0.1",
                           .messages = &msg,
                           .nmessages = 1};
    double per[100];
    for (long r = 0; r < rounds; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
        for (long i = 0; i < n; i++) {
            pc_rules_result res;
            if (pc__rules_env_run(env, &rq, &res, err, sizeof err) < 0) {
                fprintf(stderr, "%s\n", err);
                return 1;
            }
            if (res.denied) {
                fprintf(stderr, "the benchmark request was denied: %s\n", res.message);
                return 1;
            }
            pc__rules_result_free(env, &res);
        }
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
        per[r] = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / (double)n;
    }
    qsort(per, (size_t)rounds, sizeof per[0], cmp);
    printf("%.0f\n", rounds % 2 ? per[rounds / 2] : (per[rounds / 2 - 1] + per[rounds / 2]) / 2);
    pc__rules_env_close(env);
    return 0;
}
