/* Error log: leveled lines to stderr. The level is set once at start-up (and on reload) before
 * workers run, then only read. */
#ifndef PC_LOG_H
#define PC_LOG_H

#include "config.h"

void pc__log_set_level(int level);
int pc__log_level(void);
void pc__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Format an error into a caller's buffer (nothing when err is NULL or errlen 0). */
void pc__errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define pc_log_error(...) pc__log(PC_LOG_ERROR, __VA_ARGS__)
#define pc_log_warn(...) pc__log(PC_LOG_WARN, __VA_ARGS__)
#define pc_log_info(...) pc__log(PC_LOG_INFO, __VA_ARGS__)
#define pc_log_debug(...)                                                                                    \
    do {                                                                                                     \
        if (pc__log_level() >= PC_LOG_DEBUG) pc__log(PC_LOG_DEBUG, __VA_ARGS__);                             \
    } while (0)

#endif
