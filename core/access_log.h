/* Access log: one JSON object per line per request (json_out.h), to stdout, stderr or a file.
 * The file is reopened on SIGUSR1 for rotation. */
#ifndef PC_ACCESS_LOG_H
#define PC_ACCESS_LOG_H

#include <stddef.h>

typedef struct pc_stream pc_stream;

/* "stdout", "stderr", "off" or a path. */
int pc__access_log_open(const char *spec, char *err, size_t errlen);
int pc__access_log_reopen(char *err, size_t errlen);
void pc__access_log_close(void);
void pc__access_log_write(pc_stream *st);
/* Lines are gathered per worker and written after each loop turn (and when the buffer fills). */
struct pc_worker;
void pc__access_log_flush(struct pc_worker *w);

#endif
