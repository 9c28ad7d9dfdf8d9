/* The schema primitives config.c validates with, for the modules that own a section of an entry
 * (core/access/policy.c owns an origin's `access` map). They are config.c's own, so a section read
 * elsewhere reports exactly as the rest of the file does: file:line:col (of the key, for a map
 * value), the key path, the same wording for the same mistake; and its warnings join the config's. */
#ifndef PC_CONFIG_READER_H
#define PC_CONFIG_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "yaml_tree.h"

/* Key paths ("origins[1].access.jwt") are cut at this length, in messages only. */
#define PC_CFG_PATHLEN 256

/* The config being loaded: its file, the partly built pc_config, where errors go. */
typedef struct pc_config_reader pc_config_reader;

/* The config as loaded so far (sections before this one are complete: listeners before origins). */
const pc_config *pc__cfg_config(const pc_config_reader *rd);

/* An error at node `at`: returns -1 so callers can `return pc__cfg_fail(...)`. */
int pc__cfg_fail(pc_config_reader *rd, const pc_yaml_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A valid but risky setting: one line for `portcullis check` and the start-up log. 0, or -1. */
int pc__cfg_warn(pc_config_reader *rd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* out (PC_CFG_PATHLEN bytes) = base.key */
void pc__cfg_join(char *out, const char *base, const char *key);
/* n is a node of this kind; -1 (with "path: expected a map, got ...") otherwise. */
int pc__cfg_want(pc_config_reader *rd, const pc_yaml_node *n, pc_yaml_kind kind, const char *path);
/* Every key of `map` is in the NULL-terminated `valid`: a misspelt key is an error, not ignored. */
int pc__cfg_check_keys(pc_config_reader *rd, const pc_yaml_node *map, const char *path,
                       const char *const *valid);
/* map.key, or NULL after a "missing required key" error. */
const pc_yaml_node *pc__cfg_required(pc_config_reader *rd, const pc_yaml_node *map, const char *path,
                                     const char *key);
/* A non-empty string without control characters. */
int pc__cfg_str(pc_config_reader *rd, const pc_yaml_node *n, const char *path, const char **out);
/* Optional map.key: true/yes/on or false/no/off; *out untouched when absent. */
int pc__cfg_bool(pc_config_reader *rd, const pc_yaml_node *map, const char *path, const char *key, bool *out);
/* Optional map.key: a plain decimal in [min, max]; `unit` (" of seconds") goes into the message. */
int pc__cfg_u32(pc_config_reader *rd, const pc_yaml_node *map, const char *path, const char *key,
                const char *unit, uint32_t min, uint32_t max, uint32_t *out);
/* A file that exists and is readable now, resolved against the config's directory (malloc'd). */
int pc__cfg_file(pc_config_reader *rd, const pc_yaml_node *n, const char *path, char **out);

#endif
