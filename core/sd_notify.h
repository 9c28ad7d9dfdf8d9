/* Readiness and state for a service manager: systemd's notification protocol (sd_notify(3)), one
 * datagram per state change to the socket named by $NOTIFY_SOCKET. Main thread only. */
#ifndef PC_SD_NOTIFY_H
#define PC_SD_NOTIFY_H

/* Send a newline-separated list of VAR=value assignments ("READY=1", "STOPPING=1", ...). Returns 1
 * when sent, 0 when no manager listens ($NOTIFY_SOCKET unset), -1 on error (errno set). */
int pc__sd_notify(const char *state);

/* "RELOADING=1" with the MONOTONIC_USEC stamp systemd expects from a service that reloads. */
int pc__sd_notify_reloading(void);

#endif
