/* Fuzz target for the YAML tree and the config validator: arbitrary bytes must never crash, leak or
 * read out of bounds, and every tree handed back must keep its invariants. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "yaml_tree.h"

static void check_tree(const pc_yaml_node *n, int depth)
{
    if (depth > 64 || n->line < 1 || n->col < 1) abort();
    if (n->kind == PC_YAML_SCALAR) {
        if (!n->scalar || n->scalar[n->scalar_len] != '\0' || n->n) abort();
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        if (n->kind == PC_YAML_MAP) {
            const pc_yaml_node *k = n->keys[i];
            if (k->kind != PC_YAML_SCALAR || pc__yaml_get(n, k->scalar) == NULL) abort();
        }
        check_tree(n->items[i], depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    pc_yaml_doc *doc = pc__yaml_load_buffer("fuzz.yaml", (const char *)data, size, err, sizeof err);
    if (doc) {
        if (doc->root) check_tree(doc->root, 1);
        pc__yaml_free(doc);
    } else if (strncmp(err, "fuzz.yaml:", 10) != 0) {
        abort();
    }

    /* Relative paths resolve under /dev, so seeds can name files that exist everywhere (zero, null). */
    pc_config *cfg = NULL;
    if (pc__config_load_buffer("fuzz.yaml", (const char *)data, size, "/dev", &cfg, err, sizeof err) == 0) {
        if (!cfg || !cfg->nlisten || !cfg->norigins || !cfg->nzones) abort();
        for (size_t z = 0; z < cfg->nzones; z++) {
            if (cfg->zones[z].origin_index >= cfg->norigins) abort();
            for (size_t h = 0; h < cfg->zones[z].nhosts; h++) {
                const char *host = cfg->zones[z].hosts[h];
                const pc_zone_conf *found = pc__zone_find(cfg, host, strlen(host));
                /* A host listed in a zone is found, and exact names map back to their own zone. */
                if (!found || (host[0] != '*' && found != &cfg->zones[z])) abort();
            }
        }
        pc__zone_find(cfg, (const char *)data, size > 64 ? 64 : size);
        pc__config_free(cfg);
    } else if (cfg || strncmp(err, "fuzz.yaml:", 10) != 0) {
        abort();
    }
    return 0;
}
