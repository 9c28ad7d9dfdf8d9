/* A plugin's config checked against the keys its descriptor declares (pc_plugin.config), the same
 * way for every plugin: unknown keys, wrong types and out-of-range values are file:line:col errors
 * before the plugin's init runs, and absent keys with a default are filled in. Also what
 * `portcullis plugins describe` prints. */
#ifndef PC_PLUGIN_CONFIG_H
#define PC_PLUGIN_CONFIG_H

#include <portcullis/plugin.h>
#include <stdio.h>

#include "yaml_tree.h"

/* Checks `in` (the plugin's `config:` subtree, NULL when absent) for plugin `label` with descriptor
 * `d`; `file` names the config file and `at` the plugin's entry (for positions when in is NULL).
 * On success *out is the map init gets (a copy with defaults, the caller frees it with
 * pc__yaml_node_free; NULL when there is nothing to give) and 0 is returned; -1 with err. */
int pc__plugin_config_check(const char *file, const char *label, const pc_plugin *d, const pc_yaml_node *in,
                            const pc_yaml_node *at, pc_yaml_node **out, char *err, size_t errlen);

/* The plugin's summary and keys, one per line with type, default, bounds and doc. */
void pc__plugin_config_describe(FILE *f, const pc_plugin *d, const char *path);

#endif
