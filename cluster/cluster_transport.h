/* cluster_transport.h - raft's TCP transport with dead-peer detection
 * (TCP_USER_TIMEOUT, TCP_SYNCNT), wire-compatible with raft_uv_tcp, whose
 * listener relays each connection through cluster_transport_check so that
 * libraft sees only validated bytes. See cluster_transport.c. */
#ifndef KUMO_CLUSTER_TRANSPORT_H
#define KUMO_CLUSTER_TRANSPORT_H

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "cluster_transport_check.h"

struct cluster_tls;

/* Who may talk to us, and the maxima of what they send. Copied. */
struct cluster_transport_policy {
    void *ctx;
    cluster_tcheck_member_cb is_member; /* NULL: anyone (tests) */
    struct cluster_tcheck_limits limits;
    /* Borrowed, outlives the transport. NULL: plaintext. With it, every
     * raft connection in and out is mutual TLS, and a peer's certificate
     * must name the node id it claims (accepted) or was dialed as. */
    struct cluster_tls *tls;
};

/* One relayed raft connection, for cluster status. */
struct cluster_transport_conn {
    uint64_t id;         /* claimed (accepted) or dialed; 0 before */
    bool outbound;       /* dialed by us */
    bool tls;            /* TLS and handshake done */
    int64_t cert_expiry; /* the peer certificate's notAfter, or 0 */
};

/* Visit the relayed connections (TLS dials and every accepted one). */
void cluster_transport_foreach_conn(
    const struct raft_uv_transport *t,
    void (*fn)(void *arg, const struct cluster_transport_conn *c), void *arg);

/* Like raft_uv_tcp_init: fill *t for raft_uv_init. 0 or a RAFT_* code. */
int cluster_transport_init_tcp(struct raft_uv_transport *t, uv_loop_t *loop);

/* Set the policy for connections accepted from now on. */
void cluster_transport_set_policy(struct raft_uv_transport *t,
                                  const struct cluster_transport_policy *p);

/* Connections dropped by the checks since init. */
uint64_t cluster_transport_refused(const struct raft_uv_transport *t);

/* Like raft_uv_tcp_close: free it, once its close callback has run (or it
 * was never given to raft). */
void cluster_transport_release(struct raft_uv_transport *t);

#endif /* KUMO_CLUSTER_TRANSPORT_H */
