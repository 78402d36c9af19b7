/* cluster_replica.c - per-message replica lists after failover (CLUSTER.md
 * §4.4, §4.6 "Bodies after failover", §5 ReplicaUpdate): applying a
 * ReplicaUpdate to one FSM message, counting the live messages that have
 * fewer UP replicas than min(R, UP nodes), visiting those of the shards
 * this node owns with the node that should receive the next copy, and
 * proposing ReplicaUpdate records. Copying bodies is the daemon's business
 * (node/kumod_repl.c). Loop thread only; the apply part is deterministic. */
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

size_t
cluster_under_replicated(const struct cluster *c)
{
    return cluster_replica_count(c->fsm);
}

struct cluster_replica_walk {
    const struct cluster *c;
    size_t want;
    cluster_replica_visit_cb fn;
    void *arg;
    /* cluster_live_nodes of the shard of the previous message. */
    uint32_t shard;
    bool have_shard;
    uint64_t live[CLUSTER_MAX_REPLICAS];
    size_t n_live;
};

static bool
cluster_replica_walk_one(void *arg, const struct cluster_msg *m)
{
    struct cluster_replica_walk *w = arg;
    struct cluster_replica_need need;

    need.up_copies = cluster_replica_up_copies(w->c->fsm, m);
    if (need.up_copies >= w->want || !cluster_owns(w->c, m->shard)) {
        return true;
    }
    if (!w->have_shard || w->shard != m->shard) {
        w->n_live =
            cluster_live_nodes(w->c, m->shard, w->live, CLUSTER_MAX_REPLICAS);
        w->shard = m->shard;
        w->have_shard = true;
    }
    need.msg = m;
    need.want = w->want;
    need.target = 0;
    for (size_t i = 0; i < w->n_live && need.target == 0; i++) {
        bool listed = false;
        for (size_t k = 0; k < m->n_replicas; k++) {
            listed = listed || m->replicas[k] == w->live[i];
        }
        if (!listed) {
            need.target = w->live[i];
        }
    }
    if (need.target == 0) {
        return true; /* every UP node is listed already */
    }
    return w->fn(w->arg, &need);
}

void
cluster_foreach_under_replicated(const struct cluster *c,
                                 cluster_replica_visit_cb fn, void *arg)
{
    struct cluster_replica_walk w;

    memset(&w, 0, sizeof(w));
    w.c = c;
    w.want = cluster_replica_want(c->fsm);
    w.fn = fn;
    w.arg = arg;
    if (w.want == 0 || c->link == NULL) {
        return; /* one node, or no committed settings yet */
    }
    cluster_fsm_foreach(c->fsm, cluster_replica_walk_one, &w);
}

int
cluster_replica_update(struct cluster *c, uint32_t shard,
                       const char *const *ids, size_t n, uint64_t add_node,
                       uint64_t remove_node, cluster_commit_cb cb, void *arg)
{
    struct cluster_rec rec;

    if (n == 0 || n > CLUSTER_MAX_REPLICA_IDS) {
        return KM_EINVAL;
    }
    memset(&rec, 0, sizeof(rec));
    rec.kind = CLUSTER_REC_REPLICA_UPDATE;
    rec.shard = shard;
    rec.add_node = add_node;
    rec.remove_node = remove_node;
    rec.ids = km_calloc(n, sizeof(*rec.ids));
    rec.n_ids = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(rec.ids[i], sizeof(rec.ids[i]), "%s", ids[i]);
    }
    return cluster_raft_submit_rec(c, &rec, cb, arg);
}
