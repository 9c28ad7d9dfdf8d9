/* Open connections per client address, counted across all workers. */
#ifndef PC_CLIENT_LIMIT_H
#define PC_CLIENT_LIMIT_H

#include <stdint.h>
#include <sys/socket.h>

/* Count one more connection from addr; -1 (nothing counted) when it would exceed limit (0: no limit). */
int pc__client_acquire(const struct sockaddr *addr, uint32_t limit);
void pc__client_release(const struct sockaddr *addr);
/* Response bytes held for a client that is not reading (its windows shut): add delta (may be
 * negative) and return the new total for the address. */
int64_t pc__client_held(const struct sockaddr *addr, int64_t delta);

#endif
