/* cluster_place.c - shard of a message, committed replica lists and
 * delivery ownership (CLUSTER.md §4.4, §4.6), read from the shard map the
 * FSM derives from the committed settings and NodeState records. A group
 * without a link (one node) owns every shard and always may deliver; a
 * multi-voter group without a link delivers only on its leader. Computes
 * nothing that must agree across nodes beyond what the FSM committed.
 * Loop thread only. */
#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "cluster_core.h"
#include "cluster_shard.h"

/* A group whose nodes cannot talk to each other outside raft. */
static bool
cluster_place_linkless(const struct cluster *c)
{
    return c->link == NULL;
}

uint32_t
cluster_shard_for(const struct cluster *c, const char *routing_domain,
                  const char *id)
{
    struct cluster_settings st;
    char key[1100];

    cluster_get_settings(c, &st);
    if (routing_domain == NULL || id == NULL ||
        cluster_shard_key(routing_domain, id, NULL, key, sizeof(key)) != 0) {
        return 0;
    }
    return cluster_shard_of(key, st.shards);
}

size_t
cluster_shard_replicas(const struct cluster *c, uint32_t shard, uint64_t *out,
                       size_t max, uint64_t *epoch)
{
    const uint64_t *list = NULL;
    uint64_t e = 0;
    size_t n = cluster_fsm_shard(c->fsm, shard, &list, &e);

    if (n == 0 && cluster_place_linkless(c)) {
        /* No committed map: this node stores every body itself. */
        if (epoch != NULL) {
            *epoch = 1;
        }
        if (max == 0) {
            return 0;
        }
        out[0] = c->cfg.node_id;
        return 1;
    }
    if (epoch != NULL) {
        *epoch = e;
    }
    if (n > max) {
        n = max;
    }
    if (n > 0) {
        memcpy(out, list, n * sizeof(*out));
    }
    return n;
}

size_t
cluster_live_nodes(const struct cluster *c, uint32_t shard, uint64_t *out,
                   size_t max)
{
    const struct cluster_fsm_node *nodes = NULL;
    size_t n = cluster_fsm_nodes(c->fsm, &nodes);
    struct cluster_shard_node *cand;
    uint64_t *ids;
    int ranked;

    if (n == 0) {
        return cluster_shard_replicas(c, shard, out, max, NULL);
    }
    cand = km_calloc(n, sizeof(*cand));
    ids = km_calloc(n, sizeof(*ids));
    for (size_t i = 0; i < n; i++) {
        cand[i].id = nodes[i].id;
        cand[i].weight = nodes[i].weight;
        cand[i].eligible = nodes[i].state == CLUSTER_NODE_UP;
    }
    ranked = cluster_shard_rank(shard, cand, n, ids, n);
    if (ranked < 0) {
        ranked = 0;
    }
    size_t k = (size_t)ranked < max ? (size_t)ranked : max;
    if (k > 0) {
        memcpy(out, ids, k * sizeof(*out));
    }
    free(ids);
    free(cand);
    return k;
}

bool
cluster_owns(const struct cluster *c, uint32_t shard)
{
    const uint64_t *list = NULL;

    if (cluster_place_linkless(c)) {
        return c->cfg.n_peers <= 1 || cluster_is_leader(c);
    }
    return cluster_fsm_shard(c->fsm, shard, &list, NULL) > 0 &&
           list[0] == c->cfg.node_id;
}

bool
cluster_may_deliver(const struct cluster *c, uint32_t shard)
{
    if (cluster_place_linkless(c)) {
        return c->cfg.n_peers <= 1 || cluster_is_leader(c);
    }
    return !c->closing && cluster_owns(c, shard) && cluster_has_lease(c) &&
           cluster_lease_caught_up(c);
}

struct cluster_place_unowned {
    const bool *able; /* per shard */
    uint32_t shards;
    size_t n;
};

static bool
cluster_place_count_unowned(void *arg, const struct cluster_msg *m)
{
    struct cluster_place_unowned *u = arg;

    if (m->shard >= u->shards || !u->able[m->shard]) {
        u->n++;
    }
    return true;
}

size_t
cluster_unowned(const struct cluster *c)
{
    struct cluster_settings st;
    struct cluster_place_unowned u = {0};
    bool *able;

    if (cluster_place_linkless(c) || !cluster_fsm_settings(c->fsm, &st) ||
        cluster_fsm_count(c->fsm) == 0) {
        return 0;
    }
    able = km_calloc(st.shards, sizeof(*able));
    for (uint32_t s = 0; s < st.shards; s++) {
        const uint64_t *list = NULL;
        able[s] = cluster_fsm_shard(c->fsm, s, &list, NULL) > 0 &&
                  cluster_lease_owner_able(c, list[0]);
    }
    u.able = able;
    u.shards = st.shards;
    cluster_fsm_foreach(c->fsm, cluster_place_count_unowned, &u);
    free(able);
    return u.n;
}
