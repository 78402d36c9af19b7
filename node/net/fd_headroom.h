/* fd_headroom.h - how close the process is to its descriptor limit
 * (RLIMIT_NOFILE). Listeners refuse a new client once fewer than
 * fd_headroom_reserve() descriptors are left, so that the spool, Raft,
 * the logs and deliveries can still open theirs: running out there stops
 * the node (probe 2026-12 #14), running out for a client only refuses it.
 * Stateless; any thread. */
#ifndef KUMO_FD_HEADROOM_H
#define KUMO_FD_HEADROOM_H
#include <stdbool.h>
#include <stddef.h>

/* Descriptors kept for the rest of the process: a quarter of the soft
 * limit, at least 32 and at most 1024. */
size_t fd_headroom_reserve(void);

/* True when `fd`, just opened (the lowest free number, as POSIX hands
 * them out), lies within the reserve: at least fd descriptors are open,
 * so fewer than the reserve are left. */
bool fd_headroom_is_low(int fd);

/* As fd_headroom_is_low() for the lowest descriptor free now (probed
 * with a dup); true also when no descriptor is free at all. */
bool fd_headroom_is_low_now(void);
#endif /* KUMO_FD_HEADROOM_H */
