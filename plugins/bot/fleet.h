/* A worker's share of a fleet's behaviour counts in Redis (store type redis): the worker counts its clients'
 * requests in its fleet cache (bot.h), sends them every 100 ms, one script per client that adds them to the
 * fleet's counters and answers the fleet's totals, and scores on the last totals plus what it counted since.
 * No request waits for Redis. The plugin's only file that does I/O. */
#ifndef PC_BOT_FLEET_H
#define PC_BOT_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store_config.h"

typedef struct bot_fleet bot_fleet;

/* One per worker: Redis as store says, at most max_clients clients cached. Nothing connects or runs until the
 * first request. NULL without memory. */
bot_fleet *bot_fleet_new(const rl_store_conf *store, size_t max_clients, uint64_t rate_window_ms,
                         uint64_t error_window_ms);
/* On the worker's thread, before its worker context goes: closes what it opened on the loop. */
void bot_fleet_free(bot_fleet *f);
/* A request the client started, on the worker's thread; loop (a uv_loop_t *) is the worker's, where the Redis
 * client and the flush timer start on the first call. true with the fleet's counts (by BOT_N_*: requests
 * started in the rate window, this one included; finished, and failed, in the error window) when this worker
 * has fresh ones; false: Redis is unavailable or has not answered for the client yet. */
bool bot_fleet_started(bot_fleet *f, void *loop, const uint8_t key[16], double fleet[3]);
/* A request of the client finished (error: with an error status). */
void bot_fleet_finished(bot_fleet *f, const uint8_t key[16], bool error);

#endif
