/* Example plugin: the smallest useful one, and the model for writing your own.
 * It denies calls by gRPC method, requires a header, and refuses request messages whose string
 * fields contain a configured text. Config (every key optional):
 *
 *   - name: example
 *     config:
 *       deny_methods: ["/demo.Echo/Fail", "/admin.v1.Admin/"]   # exact paths, or a prefix ending in "/"
 *       require_header: x-api-key         # missing -> UNAUTHENTICATED
 *       deny_text: "DROP TABLE"           # in any string field of any request message -> PERMISSION_DENIED
 *
 * Build out of tree against an installed Portcullis:
 *   cc -shared -fPIC -fvisibility=hidden $(pkg-config --cflags portcullis-plugin) example.c -o pc-example.so
 */
#include <portcullis/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Immutable after init: shared by every worker without locks. */
typedef struct example_conf {
    const pc_host *host;
    const void *handle;
    char **deny;
    size_t ndeny;
    char *require_header;
    char *deny_text;
} example_conf;

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
    static const char *const known[] = {"deny_methods", "require_header", "deny_text"};
    example_conf *c = calloc(1, sizeof *c);
    if (!c) return -1;
    c->host = host;
    c->handle = handle;
    /* Unknown keys are errors, so a typo is caught by `portcullis check`. */
    for (size_t i = 0; config && i < host->config_len(config); i++) {
        const char *k = host->config_key(config, i);
        if (!k || (strcmp(k, known[0]) && strcmp(k, known[1]) && strcmp(k, known[2]))) {
            char where[512];
            snprintf(err, errlen, "config (%s): unknown key \"%s\" (valid keys: %s, %s, %s)",
                     host->config_where(host->config_at(config, i), where, sizeof where), k ? k : "?",
                     known[0], known[1], known[2]);
            conf_free(c);
            return -1;
        }
    }
    const pc_config_node *n = config ? host->config_get(config, "deny_methods") : NULL;
    if (n) {
        size_t len = host->config_len(n);
        c->deny = calloc(len ? len : 1, sizeof *c->deny);
        for (size_t i = 0; c->deny && i < len; i++) {
            const char *m = host->config_string(host->config_at(n, i));
            char where[512];
            if (!m || m[0] != '/') {
                snprintf(err, errlen,
                         "deny_methods[%zu] (%s): expected a gRPC path like \"/pkg.Service/Method\"", i,
                         host->config_where(host->config_at(n, i), where, sizeof where));
                conf_free(c);
                return -1;
            }
            c->deny[c->ndeny++] = strdup(m);
        }
    }
    const char *s;
    if (config && (s = host->config_string(host->config_get(config, "require_header"))))
        c->require_header = strdup(s);
    if (config && (s = host->config_string(host->config_get(config, "deny_text")))) c->deny_text = strdup(s);
    *out = c;
    return 0;
}

static void destroy(void *ctx)
{
    conf_free(ctx);
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

static int on_request_headers(void *ctx, pc_request *r)
{
    const example_conf *c = ctx;
    const pc_host *h = c->host;
    const char *path = h->request_info(r, "path");
    if (method_denied(c, path))
        return h->deny(r, PC_GRPC_PERMISSION_DENIED, "method blocked by the example plugin");
    if (c->require_header && !h->header_get(r, c->require_header))
        return h->deny(r, PC_GRPC_UNAUTHENTICATED, "missing required header");
    /* Later plugins and the access log can read what this one decided. */
    h->publish(r, "example.checked", "1");
    return PC_CONTINUE;
}

static int on_request_message(void *ctx, pc_request *r, const pc_message *m)
{
    const example_conf *c = ctx;
    const pc_host *h = c->host;
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
                return h->deny(r, PC_GRPC_PERMISSION_DENIED, msg);
            }
    }
    return PC_CONTINUE;
}

PC_PLUGIN_EXPORT const pc_plugin pc_plugin_v1 = {
    .abi_version = PC_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(pc_plugin),
    .name = "example",
    .version = "1.0",
    .init = init,
    .destroy = destroy,
    .on_request_headers = on_request_headers,
    .on_request_message = on_request_message,
};
