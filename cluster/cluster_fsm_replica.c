/* cluster_fsm_replica.c - the FSM side of per-message replica lists
 * (CLUSTER.md §4.6 "Bodies after failover", §5 ReplicaUpdate),
 * deterministic: applying a ReplicaUpdate to one FSM message and counting
 * the live messages that have fewer UP replicas than min(R, UP nodes). No
 * clock, no I/O, no raft runtime. The node side is cluster_replica.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "cluster_core.h"

bool
cluster_replica_apply_msg(struct cluster_fsm_msg *m,
                          const struct cluster_rec *r)
{
    bool changed = false;
    size_t at = m->n_replicas;

    for (size_t i = 0; i < m->n_replicas; i++) {
        if (m->replicas[i] == r->add_node) {
            at = i;
        }
    }
    if (r->add_node != 0 && at == m->n_replicas &&
        m->n_replicas < CLUSTER_MAX_REPLICAS) {
        m->replicas =
            km_realloc(m->replicas, (m->n_replicas + 1) * sizeof(*m->replicas));
        m->replicas[m->n_replicas++] = r->add_node;
        changed = true;
    }
    /* The last copy is never dropped from the list: it may be the only
     * place the body is known to be. */
    for (size_t i = 0;
         r->remove_node != 0 && m->n_replicas > 1 && i < m->n_replicas; i++) {
        if (m->replicas[i] == r->remove_node) {
            memmove(&m->replicas[i], &m->replicas[i + 1],
                    (m->n_replicas - i - 1) * sizeof(*m->replicas));
            m->n_replicas--;
            changed = true;
            break;
        }
    }
    if (changed) {
        m->pub.n_replicas = m->n_replicas < CLUSTER_MAX_MSG_REPLICAS
                                ? m->n_replicas
                                : CLUSTER_MAX_MSG_REPLICAS;
        memcpy(m->pub.replicas, m->replicas,
               m->pub.n_replicas * sizeof(*m->pub.replicas));
    }
    return changed;
}

static bool
cluster_replica_node_up(const struct cluster_fsm *f, uint64_t id)
{
    const struct cluster_fsm_node *n = cluster_fsm_node(f, id);

    return n != NULL && n->state == CLUSTER_NODE_UP;
}

size_t
cluster_replica_want(const struct cluster_fsm *f)
{
    const struct cluster_fsm_node *nodes = NULL;
    struct cluster_settings st;
    size_t n = cluster_fsm_nodes(f, &nodes);
    size_t up = 0;

    if (!cluster_fsm_settings(f, &st)) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        up += nodes[i].state == CLUSTER_NODE_UP ? 1 : 0;
    }
    return up < st.replication_factor ? up : st.replication_factor;
}

size_t
cluster_replica_up_copies(const struct cluster_fsm *f,
                          const struct cluster_msg *m)
{
    size_t up = 0;

    for (size_t i = 0; i < m->n_replicas; i++) {
        up += cluster_replica_node_up(f, m->replicas[i]) ? 1 : 0;
    }
    return up;
}

struct cluster_replica_counter {
    const struct cluster_fsm *f;
    size_t want;
    size_t n;
};

static bool
cluster_replica_count_one(void *arg, const struct cluster_msg *m)
{
    struct cluster_replica_counter *k = arg;

    k->n += cluster_replica_up_copies(k->f, m) < k->want ? 1 : 0;
    return true;
}

size_t
cluster_replica_count(const struct cluster_fsm *f)
{
    struct cluster_replica_counter k = {f, cluster_replica_want(f), 0};

    if (k.want == 0) {
        return 0;
    }
    cluster_fsm_foreach(f, cluster_replica_count_one, &k);
    return k.n;
}
