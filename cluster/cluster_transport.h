/* cluster_transport.h - raft's TCP transport with dead-peer detection
 * (TCP_USER_TIMEOUT, TCP_SYNCNT), wire-compatible with raft_uv_tcp. See
 * cluster_transport.c. */
#ifndef KUMO_CLUSTER_TRANSPORT_H
#define KUMO_CLUSTER_TRANSPORT_H

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

/* Like raft_uv_tcp_init: fill *t for raft_uv_init. 0 or a RAFT_* code. */
int cluster_transport_init_tcp(struct raft_uv_transport *t, uv_loop_t *loop);

/* Like raft_uv_tcp_close: free it, once its close callback has run (or it
 * was never given to raft). */
void cluster_transport_release(struct raft_uv_transport *t);

#endif /* KUMO_CLUSTER_TRANSPORT_H */
