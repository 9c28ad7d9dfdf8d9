/* Moving an nghttp2 session's output into a transport, in large writes, never past the
 * transport's high-water mark: what stays inside nghttp2 is pulled later (on_drain). */
#ifndef PC_H2_OUTPUT_H
#define PC_H2_OUTPUT_H

#include <nghttp2/nghttp2.h>

#include "transport.h"

/* 0 on success (also when the session is finished and the transport is closing), -1 on a
 * session error (the transport is then closed). */
int pc__h2_output(pc_transport *t, nghttp2_session *sess);

#endif
