/* Loading plugins: dlopen, ABI checks, init with the plugin's config subtree, one instance per
 * worker, and the chains (global, or a zone's own) as lists of loaded plugins, headed by the access
 * policy's built-in element (core/access/access.h) when an origin has an access map. */
#ifndef PC_PLUGIN_LOADER_H
#define PC_PLUGIN_LOADER_H

#include <portcullis/plugin.h>
#include <stdbool.h>
#include <stdio.h>

#include "config.h"
#include "protobuf.h"

typedef struct pc_loaded_plugin {
    void *dl; /* NULL for the built-in access element */
    const pc_plugin *desc;
    char *name;
    char *path;
    void *ctx;            /* the plugin's own, from init */
    pc_yaml_node *config; /* the config init got: checked against its keys, defaults filled */
    bool on_error_continue;
    size_t state_offset; /* of its request state in the per-request block */
} pc_loaded_plugin;

typedef struct pc_chain {
    size_t *idx; /* indices into pc_plugins.p, in run order */
    size_t n;
    bool request_messages;  /* some plugin has on_request_message */
    bool response_messages; /* some plugin has on_response_message */
} pc_chain;

typedef struct pc_plugins {
    pc_loaded_plugin *p;
    size_t n;
    size_t state_size;
    pc_chain global;
    pc_chain *zones; /* per zone */
    size_t nzones;
    pc_pb_descset **descs;
    size_t ndescs;
    bool has_access; /* p[0] is the access policy (core/access/, built in): it heads every chain */
} pc_plugins;

extern const pc_host pc__host_api;

/* Load every plugin of the config (main thread). exe_dir: where a build-tree plugins/ may be. */
int pc__plugins_load(const pc_config *cfg, const char *exe_dir, pc_plugins **out, char *err, size_t errlen);
void pc__plugins_free(pc_plugins *ps);
/* `portcullis plugins describe NAME`: a plugin by name (as `plugins: - name:` finds it) or by path,
 * its summary and config keys to out. 0, or -1 with err. */
int pc__plugins_describe(const char *name, const char *exe_dir, FILE *out, char *err, size_t errlen);
/* Per-worker instances: an array of n contexts. */
int pc__plugins_worker_init(pc_plugins *ps, unsigned worker_id, void ***out, char *err, size_t errlen);
void pc__plugins_worker_destroy(pc_plugins *ps, void **wctx);
const pc_chain *pc__plugins_chain(const pc_plugins *ps, const pc_config *cfg, const pc_zone_conf *zone);
/* A hook function of a plugin, or NULL when absent (or past the plugin's struct_size). */
const void *pc__plugin_hook(const pc_loaded_plugin *lp, size_t offset);

#endif
