/* nghttp2's mem_send returns one frame at a time into its own buffer; frames are gathered
 * into 64 KiB writes so a busy connection costs few syscalls and TLS records. */
#include "h2_output.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "worker.h"

int pc__h2_output(pc_transport *t, nghttp2_session *sess)
{
    if (!sess || t->closing) return 0;
    /* Frames are gathered in the worker's scratch buffer (used by one thread, only during this
     * call), then handed to the transport as one write. */
    uint8_t *buf = t->worker->outbuf;
    size_t have = 0, cap = sizeof t->worker->outbuf;
    while (t->write_pending + have < PC_TRANSPORT_HIGH_WATER) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(sess, &data);
        if (n < 0) {
            pc_log_debug("h2: %s: send failed: %s", t->peer, nghttp2_strerror((int)n));
            pc__transport_close(t, false);
            return -1;
        }
        if (n == 0) break;
        if (have + (size_t)n > cap) {
            if (have) pc__transport_write_copy(t, buf, have);
            have = 0;
            if ((size_t)n > cap) {
                pc__transport_write_copy(t, data, (size_t)n);
                continue;
            }
        }
        memcpy(buf + have, data, (size_t)n);
        have += (size_t)n;
    }
    if (have) pc__transport_write_copy(t, buf, have);
    if (!nghttp2_session_want_read(sess) && !nghttp2_session_want_write(sess)) pc__transport_close(t, true);
    return 0;
}
