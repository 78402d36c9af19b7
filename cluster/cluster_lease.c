/* cluster_lease.c - delivery leases and node liveness (CLUSTER.md §4.6).
 * PLACEHOLDER until the lease work lands: the leader answers pings, every
 * node's lease counts as valid. Loop thread only. */
#include "base/km.h"
#include "cluster_core.h"

void
cluster_lease_init(struct cluster *c)
{
    (void)c;
}

void
cluster_lease_check(struct cluster *c)
{
    (void)c;
}

void
cluster_lease_on_ping(struct cluster *c, uint64_t from,
                      const struct cluster_link_ping *ping,
                      struct cluster_link_reply *r)
{
    struct cluster_link_msg m = {.kind = CLUSTER_LINK_PONG};

    (void)from;
    m.u.pong.seq = ping->seq;
    m.u.pong.term = c->raft.current_term;
    m.u.pong.commit_index = c->raft.commit_index;
    m.u.pong.lease_ok = c->leader_ready;
    (void)cluster_link_reply_send(r, &m);
}

void
cluster_lease_close(struct cluster *c)
{
    (void)c;
}

bool
cluster_has_lease(const struct cluster *c)
{
    (void)c;
    return true;
}

int
cluster_lease_set_node_state(struct cluster *c, uint64_t node,
                             enum cluster_node_state state,
                             const char *raft_addr, const char *link_url,
                             cluster_commit_cb cb, void *arg)
{
    (void)c;
    (void)node;
    (void)state;
    (void)raft_addr;
    (void)link_url;
    (void)cb;
    (void)arg;
    return KM_EINVAL;
}
