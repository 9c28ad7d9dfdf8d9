/* The access policy's chain element: the per-request decision for origins with an `access` map. A
 * statically linked element of the core on the public plugin ABI, which the loader puts first in
 * every chain (see plugin_loader.c) and configures from the config's parsed policies, not from YAML. */
#ifndef PC_ACCESS_ACCESS_H
#define PC_ACCESS_ACCESS_H

#include <portcullis/plugin.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Its descriptor: name "access", hooks, worker set-up. Its init is pc__access_init. */
extern const pc_plugin pc__access_plugin;

/* Some origin of cfg has an access policy: the element heads every chain. */
bool pc__access_needed(const pc_config *cfg);

/* The element's context for the policies of `cfg`, which must outlive it (a runtime frees its chain
 * before its config). Main thread. 0, or -1 with err. */
int pc__access_init(const pc_host *host, const void *handle, const pc_config *cfg, void **ctx, char *err,
                    size_t errlen);

#endif
