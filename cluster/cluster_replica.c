/* cluster_replica.c - the node side of replica lists after failover
 * (CLUSTER.md §4.4, §4.6 "Bodies after failover", §5 ReplicaUpdate):
 * visiting the under-replicated messages of the shards this node owns with
 * the node that should receive the next copy, and proposing ReplicaUpdate
 * records. Applying them and counting is cluster_fsm_replica.c; copying
 * bodies is the daemon's business (node/kumod_repl.c). Loop thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "cluster_core.h"

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
