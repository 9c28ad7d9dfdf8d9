/* Plugin loading. A plugin is refused at start with a message that says what to do: wrong ABI
 * version (rebuild), no descriptor symbol (not a plugin), a config its declared keys refuse
 * (file:line:col), failed init (its own message). */
#include "plugin_loader.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "access/access.h"
#include "chain.h"
#include "log.h"
#include "plugin_config.h"
#include "version.h"

const void *pc__plugin_hook(const pc_loaded_plugin *lp, size_t offset)
{
    if (offset + sizeof(void *) > lp->desc->struct_size) return NULL;
    const void *const *slot = (const void *const *)((const char *)lp->desc + offset);
    return *slot;
}

static void chain_flags(pc_plugins *ps, pc_chain *ch)
{
    for (size_t i = 0; i < ch->n; i++) {
        const pc_loaded_plugin *lp = &ps->p[ch->idx[i]];
        if (pc__plugin_hook(lp, offsetof(pc_plugin, on_request_message))) ch->request_messages = true;
        if (pc__plugin_hook(lp, offsetof(pc_plugin, on_response_message))) ch->response_messages = true;
    }
}

static int find_file(const pc_config *cfg, const char *exe_dir, const char *name, char **out)
{
    char *path;
    if (asprintf(&path, "%s/pc-%s.so", cfg->plugin_dir, name) < 0) return -1;
    if (access(path, R_OK) == 0 || cfg->plugin_dir_set) {
        *out = path;
        return 0;
    }
    free(path);
    /* Not installed: a build tree keeps its plugins next to the binary. */
    if (asprintf(&path, "%s/plugins/pc-%s.so", exe_dir, name) < 0) return -1;
    if (access(path, R_OK) == 0) {
        *out = path;
        return 0;
    }
    free(path);
    return asprintf(out, "%s/pc-%s.so", cfg->plugin_dir, name) < 0 ? -1 : 0;
}

static void where(const pc_config *cfg, const pc_yaml_node *n, char *buf, size_t len)
{
    snprintf(buf, len, "%s:%u:%u", cfg->path, n ? n->line : 0, n ? n->col : 0);
}

/* The descriptor of an open plugin, or NULL with err saying why it is not one this core runs. */
static const pc_plugin *descriptor(pc_loaded_plugin *lp, const char *at, const char *label, char *err,
                                   size_t errlen)
{
    const pc_plugin *d = dlsym(lp->dl, PC_PLUGIN_SYMBOL);
    if (!d) {
        if (dlsym(lp->dl, "pc_plugin_v1"))
            snprintf(
                err, errlen,
                "%s: plugin %s: %s is built for plugin ABI 1; this core speaks ABI %u: rebuild it against "
                "this version's portcullis/plugin.h (hooks now receive the request, the worker context and "
                "the request state; see docs/plugins.md)",
                at, label, lp->path, PC_PLUGIN_ABI_VERSION);
        else
            snprintf(err, errlen, "%s: plugin %s: %s exports no symbol %s: not a Portcullis plugin", at,
                     label, lp->path, PC_PLUGIN_SYMBOL);
        return NULL;
    }
    if (d->abi_version != PC_PLUGIN_ABI_VERSION) {
        snprintf(err, errlen,
                 "%s: plugin %s: built for plugin ABI %u, this core speaks ABI %u: rebuild it against this "
                 "version's portcullis/plugin.h",
                 at, label, d->abi_version, PC_PLUGIN_ABI_VERSION);
        return NULL;
    }
    if (d->struct_size < offsetof(pc_plugin, on_connection) || !d->name || !d->name[0]) {
        snprintf(err, errlen, "%s: plugin %s: descriptor is incomplete (struct_size %u, name %s)", at, label,
                 d->struct_size, d->name ? d->name : "missing");
        return NULL;
    }
    return d;
}

static int load_one(const pc_config *cfg, const char *exe_dir, const pc_plugin_conf *pc, pc_loaded_plugin *lp,
                    char *err, size_t errlen)
{
    char at[512];
    where(cfg, pc->node, at, sizeof at);
    if (pc->path)
        lp->path = strdup(pc->path);
    else if (find_file(cfg, exe_dir, pc->name, &lp->path) < 0)
        lp->path = NULL;
    if (!lp->path) {
        snprintf(err, errlen, "%s: out of memory", at);
        return -1;
    }
    const char *label = pc->name ? pc->name : lp->path;
    lp->dl = dlopen(lp->path, RTLD_NOW | RTLD_LOCAL);
    if (!lp->dl) {
        snprintf(err, errlen, "%s: plugin %s: cannot load: %s", at, label, dlerror());
        return -1;
    }
    const pc_plugin *d = descriptor(lp, at, label, err, errlen);
    if (!d) return -1;
    lp->desc = d;
    lp->name = strdup(pc->name ? pc->name : d->name);
    lp->on_error_continue = pc->on_error_continue;
    if (!lp->name) return -1;
    if (pc__plugin_config_check(cfg->path, lp->name, d, pc->config, pc->node, &lp->config, err, errlen) < 0)
        return -1;
    if (d->init) {
        char perr[512] = "";
        if (d->init(&pc__host_api, lp, (const pc_config_node *)lp->config, &lp->ctx, perr, sizeof perr) !=
            0) {
            snprintf(err, errlen, "%s: plugin %s: init failed: %s", at, lp->name,
                     perr[0] ? perr : "(no reason given)");
            return -1;
        }
    }
    pc_log_info("plugin %s %s loaded from %s", lp->name, d->version ? d->version : "", lp->path);
    return 0;
}

/* The access policy's element: no file to open and no config of its own to check, its policies are
 * the config's (parsed by core/access/policy.c). */
static int load_access(const pc_config *cfg, pc_loaded_plugin *lp, char *err, size_t errlen)
{
    char perr[512] = "";
    lp->desc = &pc__access_plugin;
    if (!(lp->name = strdup(lp->desc->name))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (pc__access_init(&pc__host_api, lp, cfg, &lp->ctx, perr, sizeof perr) < 0) {
        snprintf(err, errlen, "%s: access policies: %s", cfg->path, perr);
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < cfg->norigins; i++)
        n += cfg->origins[i].access != NULL;
    pc_log_info("access policy (built in) heads every chain: %zu origin%s with an access map", n,
                n == 1 ? "" : "s");
    return 0;
}

static int build_chain(pc_plugins *ps, const pc_config *cfg, const pc_zone_conf *z, pc_chain *ch, char *err,
                       size_t errlen)
{
    size_t n = z ? z->nplugins : ps->n - ps->has_access;
    ch->idx = calloc(n + 1, sizeof *ch->idx);
    if (!ch->idx) return -1;
    /* The access policy runs first, whatever the configured order, and no zone can drop it. */
    if (ps->has_access) ch->idx[ch->n++] = 0;
    for (size_t i = 0; i < n; i++) {
        if (!z) {
            ch->idx[ch->n++] = i + ps->has_access;
            continue;
        }
        size_t k = ps->has_access;
        while (k < ps->n && strcmp(ps->p[k].name, z->plugins[i]) != 0)
            k++;
        if (k == ps->n) {
            char at[512];
            where(cfg, z->plugin_nodes[i], at, sizeof at);
            snprintf(err, errlen,
                     "%s: zones (%s).plugins: no plugin named \"%s\" in the top-level plugins list", at,
                     z->name, z->plugins[i]);
            return -1;
        }
        ch->idx[ch->n++] = k;
    }
    chain_flags(ps, ch);
    return 0;
}

int pc__plugins_load(const pc_config *cfg, const char *exe_dir, pc_plugins **out, char *err, size_t errlen)
{
    pc_plugins *ps = calloc(1, sizeof *ps);
    if (!ps) return -1;
    *out = ps;
    ps->p = calloc(cfg->nplugins ? cfg->nplugins : 1, sizeof *ps->p);
    ps->zones = calloc(cfg->nzones ? cfg->nzones : 1, sizeof *ps->zones);
    ps->nzones = cfg->nzones;
    ps->descs = calloc(cfg->ndescriptors ? cfg->ndescriptors : 1, sizeof *ps->descs);
    pc__chain_set_config(cfg);
    if (!ps->p || !ps->zones || !ps->descs) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->ndescriptors; i++) {
        char e[512];
        if (pc__pb_descset_load_file(cfg->descriptors[i], &ps->descs[i], e, sizeof e) != 0) {
            snprintf(err, errlen, "descriptors[%zu]: %s: %s", i, cfg->descriptors[i], e);
            return -1;
        }
        ps->ndescs++;
    }
    /* Origins with an `access` policy: the access module heads every chain as p[0], built in and
     * configured from the parsed policies. */
    if (pc__access_needed(cfg)) {
        pc_loaded_plugin *np = realloc(ps->p, (cfg->nplugins + 1) * sizeof *ps->p);
        if (!np) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        ps->p = np;
        memset(ps->p, 0, (cfg->nplugins + 1) * sizeof *ps->p);
        ps->has_access = true;
        ps->n = 1;
        if (load_access(cfg, &ps->p[0], err, errlen) < 0) return -1;
    }
    for (size_t i = ps->has_access; i < cfg->nplugins + ps->has_access; i++) {
        const pc_plugin_conf *pc = &cfg->plugins[i - ps->has_access];
        if (pc->name && !strcmp(pc->name, "access")) {
            char at[512];
            where(cfg, pc->node, at, sizeof at);
            snprintf(
                err, errlen,
                "%s: plugin access is built into the core: it runs first for every origin with an access "
                "map (docs/access.md) and is not listed in plugins",
                at);
            return -1;
        }
        if (load_one(cfg, exe_dir, pc, &ps->p[i], err, errlen) < 0) {
            ps->n = i + 1;
            return -1;
        }
        ps->n = i + 1;
        for (size_t k = 0; k < i; k++)
            if (!strcmp(ps->p[k].name, ps->p[i].name)) {
                char at[512];
                where(cfg, pc->node, at, sizeof at);
                snprintf(err, errlen, "%s: plugin %s is listed twice", at, ps->p[i].name);
                return -1;
            }
    }
    for (size_t i = 0; i < ps->n; i++) {
        /* Each plugin's request state at an aligned offset of one block per request. */
        ps->p[i].state_offset = ps->state_size;
        ps->state_size += (ps->p[i].desc->request_state_size + 15) & ~(size_t)15;
    }
    if (build_chain(ps, cfg, NULL, &ps->global, err, errlen) < 0) return -1;
    for (size_t z = 0; z < cfg->nzones; z++)
        if (cfg->zones[z].has_plugins && build_chain(ps, cfg, &cfg->zones[z], &ps->zones[z], err, errlen) < 0)
            return -1;
    return 0;
}

int pc__plugins_describe(const char *name, const char *exe_dir, FILE *out, char *err, size_t errlen)
{
    pc_loaded_plugin lp = {0};
    if (!strcmp(name, pc__access_plugin.name)) {
        pc__plugin_config_describe(out, &pc__access_plugin, "built into the core");
        return 0;
    }
    if (strchr(name, '/')) {
        lp.path = strdup(name);
    } else {
        pc_config cfg = {.plugin_dir = (char *)PC_PLUGIN_DIR};
        if (find_file(&cfg, exe_dir, name, &lp.path) < 0) lp.path = NULL;
    }
    if (!lp.path) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = -1;
    if (!(lp.dl = dlopen(lp.path, RTLD_NOW | RTLD_LOCAL))) {
        snprintf(err, errlen, "plugin %s: cannot load: %s", name, dlerror());
    } else {
        const pc_plugin *d = descriptor(&lp, lp.path, name, err, errlen);
        if (d) {
            pc__plugin_config_describe(out, d, lp.path);
            rc = 0;
        }
        dlclose(lp.dl);
    }
    free(lp.path);
    return rc;
}

const pc_chain *pc__plugins_chain(const pc_plugins *ps, const pc_config *cfg, const pc_zone_conf *zone)
{
    if (zone && zone->has_plugins) return &ps->zones[zone - cfg->zones];
    return &ps->global;
}

int pc__plugins_worker_init(pc_plugins *ps, unsigned worker_id, void ***out, char *err, size_t errlen)
{
    void **w = calloc(ps->n ? ps->n : 1, sizeof *w);
    if (!w) return -1;
    *out = w;
    for (size_t i = 0; i < ps->n; i++) {
        pc_loaded_plugin *lp = &ps->p[i];
        w[i] = lp->ctx;
        if (!lp->desc->worker_init) continue;
        char perr[512] = "";
        if (lp->desc->worker_init(lp->ctx, worker_id, &w[i], perr, sizeof perr) != 0) {
            snprintf(err, errlen, "plugin %s: worker init failed: %s", lp->name,
                     perr[0] ? perr : "(no reason)");
            for (size_t k = 0; k < i; k++)
                if (ps->p[k].desc->worker_destroy) ps->p[k].desc->worker_destroy(w[k]);
            free(w);
            *out = NULL;
            return -1;
        }
    }
    return 0;
}

void pc__plugins_worker_destroy(pc_plugins *ps, void **wctx)
{
    if (!wctx) return;
    for (size_t i = 0; i < ps->n; i++)
        if (ps->p[i].desc && ps->p[i].desc->worker_destroy && ps->p[i].desc->worker_init)
            ps->p[i].desc->worker_destroy(wctx[i]);
    free(wctx);
}

void pc__plugins_free(pc_plugins *ps)
{
    if (!ps) return;
    for (size_t i = 0; i < ps->n; i++) {
        pc_loaded_plugin *lp = &ps->p[i];
        if (lp->desc && lp->desc->destroy && lp->ctx) lp->desc->destroy(lp->ctx);
#ifndef __SANITIZE_ADDRESS__
        /* Not in sanitizer builds: they keep the code mapped so leak reports can name plugin frames. */
        if (lp->dl) dlclose(lp->dl);
#endif
        free(lp->name);
        free(lp->path);
        pc__yaml_node_free(lp->config);
    }
    free(ps->p);
    free(ps->global.idx);
    for (size_t z = 0; ps->zones && z < ps->nzones; z++)
        free(ps->zones[z].idx);
    free(ps->zones);
    for (size_t i = 0; i < ps->ndescs; i++)
        pc__pb_descset_free(ps->descs[i]);
    free(ps->descs);
    free(ps);
}
