/* cluster_place.c - shard of a message, committed replica lists and
 * delivery ownership (CLUSTER.md §4.4, §4.6). PLACEHOLDER until the shard
 * map lands: every shard belongs to this node; delivery follows raft
 * leadership. Loop thread only. */
#include <string.h>

#include "base/km.h"
#include "cluster_core.h"
#include "cluster_shard.h"

uint32_t
cluster_shard_for(const struct cluster *c, const char *routing_domain,
                  const char *id)
{
    struct cluster_settings st;
    char key[1100];

    cluster_get_settings(c, &st);
    if (routing_domain == NULL ||
        cluster_shard_key(routing_domain, id, NULL, key, sizeof(key)) != 0) {
        return 0;
    }
    return cluster_shard_of(key, st.shards);
}

size_t
cluster_shard_replicas(const struct cluster *c, uint32_t shard, uint64_t *out,
                       size_t max, uint64_t *epoch)
{
    (void)shard;
    if (epoch != NULL) {
        *epoch = 1;
    }
    if (max == 0) {
        return 0;
    }
    out[0] = c->cfg.node_id;
    return 1;
}

size_t
cluster_live_nodes(const struct cluster *c, uint32_t shard, uint64_t *out,
                   size_t max)
{
    return cluster_shard_replicas(c, shard, out, max, NULL);
}

bool
cluster_owns(const struct cluster *c, uint32_t shard)
{
    (void)c;
    (void)shard;
    return true;
}

bool
cluster_may_deliver(const struct cluster *c, uint32_t shard)
{
    (void)shard;
    return c->cfg.n_peers <= 1 || cluster_is_leader(c);
}
