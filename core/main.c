/* The portcullis command: run, check, --version, --help. The main thread loads the config,
 * builds the shared read-only state (TLS contexts, resolved origins), starts the workers and
 * then only waits for signals. */
#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "access/jwks.h"
#include "access_log.h"
#include "admin.h"
#include "config.h"
#include "log.h"
#include "plugin_loader.h"
#include "rules_test.h"
#include "sd_notify.h"
#include "tls.h"
#include "version.h"
#include "worker.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: portcullis run -c FILE      serve in the foreground\n"
            "       portcullis check -c FILE    validate the config, print warnings (exit 0 valid, 2 not)\n"
            "       portcullis plugins describe NAME|PATH\n"
            "                                   a plugin's config keys, with types, defaults and docs\n"
            "       portcullis rules test -c FILE CASES.yaml\n"
            "                                   run the Lua rules on the cases (exit 0 pass, 1 fail, 2 bad "
            "input)\n"
            "       portcullis --version\n"
            "       portcullis --help\n");
}

/* Plugins look for a build tree's plugins/ next to the binary when not installed. */
static void exe_dir(char *exe, size_t len)
{
    size_t exelen = len;
    if (uv_exepath(exe, &exelen) != 0) snprintf(exe, len, ".");
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
}

static pc_config *load(const char *path)
{
    char err[1024];
    pc_config *cfg = NULL;
    if (pc__config_load(path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    return cfg;
}

static void runtime_free(pc_runtime *rt)
{
    if (rt->front_tls)
        for (size_t i = 0; i < rt->cfg->nlisten; i++)
            pc__tls_server_free(rt->front_tls[i]);
    if (rt->origin_tls)
        for (size_t i = 0; i < rt->cfg->norigins; i++)
            SSL_CTX_free(rt->origin_tls[i]);
    if (rt->origin_addrs)
        for (size_t i = 0; i < rt->cfg->norigins; i++)
            free(rt->origin_addrs[i]);
    pc__plugins_free(rt->plugins);
    free(rt->front_tls);
    free(rt->origin_tls);
    free(rt->origin_addrs);
}

static int resolve(const pc_hostport *hp, struct sockaddr_storage *out, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    char port[8];
    snprintf(port, sizeof port, "%u", hp->port);
    int rv = getaddrinfo(hp->host, port, &hints, &res);
    if (rv != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", hp->host, gai_strerror(rv));
        return -1;
    }
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static int runtime_build(pc_runtime *rt, pc_config *cfg, char *err, size_t errlen)
{
    memset(rt, 0, sizeof *rt);
    rt->cfg = cfg;
    rt->front_tls = calloc(cfg->nlisten, sizeof *rt->front_tls);
    rt->origin_tls = calloc(cfg->norigins, sizeof *rt->origin_tls);
    rt->origin_addrs = calloc(cfg->norigins, sizeof *rt->origin_addrs);
    if (!rt->front_tls || !rt->origin_tls || !rt->origin_addrs) return -1;
    /* The vouch keys' JWKS (admin /jwks.json), before anything that can mint tokens with them. */
    if (pc__access_jwks_update(cfg, err, errlen) < 0) return -1;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        if (!cfg->listen[i].tls) continue;
        char e[512];
        rt->front_tls[i] = pc__tls_server_new(&cfg->listen[i], cfg, e, sizeof e);
        if (!rt->front_tls[i]) {
            snprintf(err, errlen, "%s: listen %s: %s", cfg->path, cfg->listen[i].address, e);
            return -1;
        }
    }
    for (size_t i = 0; i < cfg->norigins; i++) {
        const pc_origin_conf *o = &cfg->origins[i];
        char e[512];
        if (o->tls && !(rt->origin_tls[i] = pc__tls_client_new(o, e, sizeof e))) {
            snprintf(err, errlen, "%s: origin %s: %s", cfg->path, o->name, e);
            return -1;
        }
        rt->origin_addrs[i] = calloc(o->nservers, sizeof(struct sockaddr_storage));
        if (!rt->origin_addrs[i]) return -1;
        for (size_t j = 0; j < o->nservers; j++)
            if (resolve(&o->servers[j], &rt->origin_addrs[i][j], e, sizeof e) < 0) {
                snprintf(err, errlen, "%s: origin %s: %s", cfg->path, o->name, e);
                return -1;
            }
    }
    char exe[4096];
    exe_dir(exe, sizeof exe);
    if (pc__plugins_load(cfg, exe, &rt->plugins, err, errlen) < 0) return -1;
    return 0;
}

/* A runtime owns its config. Main holds one reference while it is current. */
static pc_runtime *runtime_new(pc_config *cfg, char *err, size_t errlen)
{
    pc_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) {
        pc__config_free(cfg);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (runtime_build(rt, cfg, err, errlen) < 0) {
        runtime_free(rt);
        pc__config_free(cfg);
        free(rt);
        return NULL;
    }
    atomic_init(&rt->refs, 1);
    return rt;
}

static void runtime_destroy(pc_runtime *rt)
{
    pc_config *cfg = rt->cfg;
    runtime_free(rt);
    pc__config_free(cfg);
    free(rt);
}

static void runtime_release(pc_runtime *rt)
{
    if (rt && atomic_fetch_sub(&rt->refs, 1) == 1) runtime_destroy(rt);
}

static int cmd_check(const char *path)
{
    pc_config *cfg = load(path);
    if (!cfg) return 2;
    pc_runtime rt;
    char err[1024];
    int rv = 0;
    if (runtime_build(&rt, cfg, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        rv = 2;
    } else {
        for (size_t i = 0; i < cfg->nwarnings; i++)
            fprintf(stdout, "warning: %s\n", cfg->warnings[i]);
        fprintf(stdout, "%s: ok (%zu listeners, %zu origins, %zu zones%s%zu warnings)\n", path, cfg->nlisten,
                cfg->norigins, cfg->nzones, ", ", cfg->nwarnings);
    }
    runtime_free(&rt);
    pc__config_free(cfg);
    return rv;
}

typedef struct run_state {
    pc_worker *workers;
    size_t nworkers;
    int signals;
    int exit_code;
    pc_admin *admin;
    uv_signal_t sigusr1;
    uv_signal_t sighup;
    uv_timer_t wait;
    const char *path;
    pc_runtime *current;
    pc_runtime *retired[64]; /* replaced by a reload, freed once no worker uses them */
    size_t nretired;
} run_state;

/* Free retired runtimes no worker uses any more (main thread: plugin destroy runs here). */
static void collect(run_state *rs)
{
    size_t k = 0;
    for (size_t i = 0; i < rs->nretired; i++) {
        if (atomic_load(&rs->retired[i]->refs) == 0)
            runtime_destroy(rs->retired[i]);
        else
            rs->retired[k++] = rs->retired[i];
    }
    rs->nretired = k;
}

static bool same_listeners(const pc_config *a, const pc_config *b)
{
    if (a->nlisten != b->nlisten) return false;
    for (size_t i = 0; i < a->nlisten; i++)
        if (strcmp(a->listen[i].host, b->listen[i].host) || a->listen[i].port != b->listen[i].port ||
            a->listen[i].tls != b->listen[i].tls)
            return false;
    return true;
}

static void reload(run_state *rs)
{
    collect(rs);
    char err[1024];
    pc_config *cfg = NULL;
    if (pc__config_load(rs->path, &cfg, err, sizeof err) != 0) {
        pc_log_error("SIGHUP: reload refused, still serving the previous config: %s", err);
        return;
    }
    if (!same_listeners(cfg, rs->current->cfg)) {
        pc_log_error(
            "SIGHUP: reload refused, still serving the previous config: %s: listen addresses changed "
            "(that needs a restart)",
            rs->path);
        pc__config_free(cfg);
        return;
    }
    if (rs->nretired == sizeof rs->retired / sizeof rs->retired[0]) {
        pc_log_error("SIGHUP: reload refused: too many earlier configs still have calls in flight");
        pc__config_free(cfg);
        return;
    }
    pc_runtime *rt = runtime_new(cfg, err, sizeof err);
    if (!rt) {
        pc_log_error("SIGHUP: reload refused, still serving the previous config: %s", err);
        return;
    }
    for (size_t i = 0; i < cfg->nwarnings; i++)
        pc_log_warn("config: %s", cfg->warnings[i]);
    if ((cfg->workers ? cfg->workers : (uint32_t)uv_available_parallelism()) != rs->nworkers)
        pc_log_warn("SIGHUP: workers changed: takes effect at the next restart");
    if (strcmp(cfg->log.access, rs->current->cfg->log.access) != 0)
        pc_log_warn("SIGHUP: log.access changed: takes effect at the next restart");
    const char *admin_was = rs->current->cfg->admin_address;
    if ((cfg->admin_address != NULL) != (admin_was != NULL) ||
        (admin_was && strcmp(cfg->admin_address, admin_was) != 0))
        pc_log_warn("SIGHUP: admin.address changed: takes effect at the next restart");
    pc__log_set_level(cfg->log.level);
    for (size_t i = 0; i < rs->nworkers; i++)
        pc__worker_reload(&rs->workers[i], rt);
    rs->retired[rs->nretired++] = rs->current;
    atomic_fetch_sub(&rs->current->refs, 1);
    rs->current = rt;
    pc_log_info("SIGHUP: configuration reloaded from %s; calls in flight finish on the previous one",
                rs->path);
}

/* The service manager sees the reload begin and end, refused or not: either way the edge serves. */
static void on_sighup(uv_signal_t *h, int signum)
{
    (void)signum;
    pc__sd_notify_reloading();
    reload(h->data);
    pc__sd_notify("READY=1");
}

static void on_sigusr1(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    char err[512];
    if (pc__access_log_reopen(err, sizeof err) < 0)
        pc_log_error("SIGUSR1: %s", err);
    else
        pc_log_info("SIGUSR1: access log reopened");
}

static void wait_workers(uv_timer_t *t)
{
    run_state *rs = t->data;
    for (size_t i = 0; i < rs->nworkers; i++)
        if (!atomic_load(&rs->workers[i].done)) return;
    uv_stop(t->loop);
}

/* Stop accepting, let every worker finish its calls, then leave the loop (and exit with code). */
static void begin_drain(run_state *rs, int code)
{
    rs->exit_code = code;
    pc__sd_notify("STOPPING=1");
    pc__admin_stop(rs->admin);
    rs->admin = NULL;
    uv_close((uv_handle_t *)&rs->sighup, NULL);
    uv_close((uv_handle_t *)&rs->sigusr1, NULL);
    for (size_t i = 0; i < rs->nworkers; i++)
        pc__worker_stop(&rs->workers[i]);
    /* Keep this loop running so a second signal is still heard; stop once every worker is done. */
    uv_timer_start(&rs->wait, wait_workers, 20, 20);
}

static void on_signal(uv_signal_t *h, int signum)
{
    run_state *rs = h->data;
    if (++rs->signals > 1) {
        pc_log_warn("second signal: exiting now");
        _exit(1);
    }
    pc_log_info("%s: draining connections", signum == SIGINT ? "SIGINT" : "SIGTERM");
    begin_drain(rs, 0);
}

/* Plugins' slow work (host->queue_work: WAF transactions, token hashing) runs on libuv's thread
 * pool, one pool for the process, 4 threads unless told otherwise: with more workers than that,
 * their jobs would queue behind too few threads. One thread per worker (at least libuv's 4),
 * unless UV_THREADPOOL_SIZE is set. Before any thread starts and before the pool's first use. */
static void size_thread_pool(size_t nworkers)
{
    if (getenv("UV_THREADPOOL_SIZE")) return;
    char v[16];
    snprintf(v, sizeof v, "%zu", nworkers < 4 ? 4 : nworkers > 1024 ? 1024 : nworkers);
    setenv("UV_THREADPOOL_SIZE", v, 1);
}

static int cmd_run(const char *path)
{
    pc_config *cfg = load(path);
    if (!cfg) return 2;
    pc__log_set_level(cfg->log.level);
    for (size_t i = 0; i < cfg->nwarnings; i++)
        pc_log_warn("config: %s", cfg->warnings[i]);
    size_t n = cfg->workers ? cfg->workers : (size_t)uv_available_parallelism();
    size_thread_pool(n);
    char err[1024];
    pc_runtime *rt = runtime_new(cfg, err, sizeof err);
    if (!rt) {
        pc_log_error("%s", err);
        return 2;
    }
    if (pc__access_log_open(cfg->log.access, err, sizeof err) < 0) {
        pc_log_error("%s", err);
        runtime_release(rt);
        return 2;
    }
    pc_worker *workers = calloc(n, sizeof *workers);
    if (!workers) return 1;
    /* Handlers go in before the first listener binds: a client (or a supervisor) that sees the
     * port open may signal at once, and SIGHUP's default action would kill the process. A signal
     * that comes early waits in libuv's pipe until the loop runs, when rs is complete. */
    uv_loop_t *loop = uv_default_loop();
    run_state rs = {.workers = workers, .nworkers = n, .path = path, .current = rt};
    uv_timer_init(loop, &rs.wait);
    rs.wait.data = &rs;
    uv_signal_init(loop, &rs.sighup);
    rs.sighup.data = &rs;
    uv_signal_start(&rs.sighup, on_sighup, SIGHUP);
    uv_signal_init(loop, &rs.sigusr1);
    rs.sigusr1.data = &rs;
    uv_signal_start(&rs.sigusr1, on_sigusr1, SIGUSR1);
    uv_signal_t sigterm, sigint;
    uv_signal_init(loop, &sigterm);
    uv_signal_init(loop, &sigint);
    sigterm.data = sigint.data = &rs;
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);
    for (size_t i = 0; i < n; i++) {
        if (pc__worker_init(&workers[i], (int)i, rt, err, sizeof err) < 0) {
            pc_log_error("%s", err);
            return 1;
        }
    }
    for (size_t i = 0; i < cfg->nlisten; i++)
        pc_log_info("listening on %s (%s)", cfg->listen[i].address, cfg->listen[i].tls ? "tls" : "h2c");
    pc_metrics **metrics = calloc(n, sizeof *metrics);
    for (size_t i = 0; metrics && i < n; i++)
        metrics[i] = workers[i].metrics;
    /* Bound before the workers serve: an edge whose health checks and metrics cannot be reached
     * has not started, as one whose listener cannot bind has not. */
    bool admin_failed = false;
    if (cfg->admin_address && metrics) {
        rs.admin = pc__admin_start(loop, cfg->admin_host, cfg->admin_port, metrics, n, err, sizeof err);
        admin_failed = !rs.admin;
        if (admin_failed) pc_log_error("%s: not starting", err);
    }
    for (size_t i = 0; i < n; i++)
        pc__worker_start(&workers[i]);
    if (admin_failed) {
        begin_drain(&rs, 1); /* the workers only close their listeners and stop */
    } else {
        pc_log_info("portcullis %s started with %zu workers", PC_VERSION, n);
        if (rs.admin) pc_log_info("admin listening on %s (/metrics, /healthz)", cfg->admin_address);
        /* Every listener is bound and listening (connections queue until the workers accept them). */
        if (pc__sd_notify("READY=1") < 0) pc_log_warn("NOTIFY_SOCKET: %s", strerror(errno));
    }
    uv_run(loop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < n; i++)
        pc__worker_join(&workers[i]);
    pc_log_info("stopped");
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&rs.wait, NULL);
    if (!uv_is_closing((uv_handle_t *)&rs.sighup)) uv_close((uv_handle_t *)&rs.sighup, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    uv_loop_close(loop);
    free(metrics);
    pc__access_log_close();
    free(workers);
    runtime_release(rs.current);
    collect(&rs);
    return rs.exit_code;
}

/* Each worker thread allocates from its own glibc arena. With the default trim threshold, a
 * worker whose requests free the top of its heap hands the pages back (madvise) and faults them
 * in again on the next request: measured at a fifth of the CPU of a busy worker. Freed memory is
 * kept for reuse instead, up to 64 MiB per arena; allocations from 1 MiB up are mapped on their
 * own and returned whole. */
static void tune_malloc(void)
{
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 1 << 20);
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    tune_malloc();
    if (argc >= 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)) {
        printf("portcullis %s\n", PC_VERSION);
        return 0;
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc == 6 && !strcmp(argv[1], "rules") && !strcmp(argv[2], "test") && !strcmp(argv[3], "-c"))
        return pc__rules_test(argv[4], argv[5]);
    if (argc == 4 && !strcmp(argv[1], "plugins") && !strcmp(argv[2], "describe")) {
        char exe[4096], err[1024];
        exe_dir(exe, sizeof exe);
        if (pc__plugins_describe(argv[3], exe, stdout, err, sizeof err) == 0) return 0;
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    if (argc == 4 && strcmp(argv[2], "-c") == 0) {
        if (strcmp(argv[1], "run") == 0) return cmd_run(argv[3]);
        if (strcmp(argv[1], "check") == 0) return cmd_check(argv[3]);
    }
    usage(stderr);
    return 2;
}
