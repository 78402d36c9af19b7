/* cluster_shard.h - the deterministic placement math of the cluster
 * (CLUSTER.md §4.4, §4.6): the shard hash, shard keys with lanes, weighted
 * rendezvous (HRW) ranking, the shard map and its diff, and the lease and
 * down-detection arithmetic. Pure functions: no I/O, no clock (callers pass
 * monotonic times), no randomness, so the Raft FSM and every node compute
 * the same results on every supported architecture. Any thread. */
#ifndef KUMO_CLUSTER_SHARD_H
#define KUMO_CLUSTER_SHARD_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One entry of ClusterSettings.lanes: traffic for `domain` (matched without
 * regard to ASCII case) is spread over `n` shard keys. Borrowed. */
struct cluster_lane {
    const char *domain;
    uint32_t n;
};

/* The lanes table: `n` entries at `v` (both may be 0/NULL). Borrowed. */
struct cluster_lanes {
    const struct cluster_lane *v;
    size_t n;
};

/* A placement candidate. `eligible` means live and not draining. A node
 * with weight 0 is never placed. */
struct cluster_shard_node {
    uint64_t id;
    uint32_t weight;
    bool eligible;
};

/* The committed placement: for shard s, replicas[s * r + i] for
 * i < n_replicas[s], element 0 the owner. Fewer than `r` entries when fewer
 * nodes are eligible; 0 entries when none is. Filled by
 * cluster_shard_map_compute(), released with cluster_shard_map_fini(). */
struct cluster_shard_map {
    uint32_t shards;
    uint32_t r;
    uint32_t *n_replicas;
    uint64_t *replicas;
};

/* Result of cluster_shard_map_diff(): shard numbers in ascending order.
 * `owner_changed` lists shards whose element 0 differs (including a shard
 * gaining or losing its only owner): their epoch must be bumped.
 * `backups_changed` lists shards with the same owner whose backup list (in
 * order) differs. Released with cluster_shard_diff_fini(). */
struct cluster_shard_diff {
    uint32_t *owner_changed;
    size_t n_owner_changed;
    uint32_t *backups_changed;
    size_t n_backups_changed;
};

/* Return the shard hash of `n` bytes at `p`: the first 8 bytes of their
 * SHA-256 digest read as a big-endian unsigned integer. Part of the on-disk
 * contract (shard numbers and lane keys are committed): never change it.
 * Example: "abc" -> 0xba7816bf8f01cfea. */
uint64_t cluster_shard_hash(const void *p, size_t n);

/* Write the shard key of a message with routing domain `routing_domain`
 * and id `id` (a NUL-terminated string) into `out` (`outlen` bytes,
 * NUL-terminated). The key is the domain lowercased (ASCII); if the
 * domain is listed in `lanes` (may be NULL) with n > 1, it is
 * "domain#k" with k = cluster_shard_hash(id) mod n, in decimal. Entries
 * with n <= 1 leave the key as the plain domain. Returns 0, KM_EINVAL
 * (empty domain) or KM_E2BIG (out too small). */
int cluster_shard_key(const char *routing_domain, const char *id,
                      const struct cluster_lanes *lanes, char *out,
                      size_t outlen);

/* Return the shard of `key` (NUL-terminated): cluster_shard_hash(key)
 * mod `shards`. `shards` must be > 0. */
uint32_t cluster_shard_of(const char *key, uint32_t shards);

/* Rank `nodes` (n entries, ids unique) for `shard` by weighted rendezvous
 * hashing and write the ids of the best min(r, eligible) eligible nodes with
 * weight > 0 into `out_ids` (room for `r`), best first: out_ids[0] is the
 * owner. Returns the number written (>= 0), or KM_EINVAL on duplicate ids.
 *
 * Score of a node: -w / ln(U), with h = cluster_shard_hash(id as 8 bytes
 * big-endian followed by shard as 4 bytes big-endian) and U = (floor(h /
 * 2^12) + 0.5) / 2^52, exact in binary64 and in (0, 1). ln(U) is computed
 * by this module from IEEE 754 +, -, *, / only (no libm), in a fixed order;
 * those operations are correctly rounded, so with binary64 evaluation
 * (FLT_EVAL_METHOD 0, as on x86-64 SSE2 and aarch64) and no FMA
 * contraction (ISO C mode) every node computes the same bits. Higher score
 * ranks first; equal scores rank the lower node id first. */
int cluster_shard_rank(uint32_t shard, const struct cluster_shard_node *nodes,
                       size_t n, uint64_t *out_ids, size_t r);

/* Compute the replica list of each of `shards` shards with replication
 * factor `r` over `nodes` (n entries) with cluster_shard_rank(). On success
 * *out is filled; the caller owns it and releases it with
 * cluster_shard_map_fini(). Returns 0, or KM_EINVAL (shards or r is 0,
 * duplicate node ids). */
int cluster_shard_map_compute(uint32_t shards, uint32_t r,
                              const struct cluster_shard_node *nodes, size_t n,
                              struct cluster_shard_map *out);

/* Return the replica list of `shard` in `map` and its length in *n (0 when
 * the shard has no replica). Borrowed from `map`. `shard` < map->shards. */
const uint64_t *cluster_shard_map_replicas(const struct cluster_shard_map *map,
                                           uint32_t shard, size_t *n);

/* Release the arrays of `map` (which itself is the caller's storage). Safe
 * on a zeroed map and twice. */
void cluster_shard_map_fini(struct cluster_shard_map *map);

/* Compare `prev` and `next` shard by shard and fill *out (the caller owns it,
 * released with cluster_shard_diff_fini()). Returns 0, or KM_EINVAL if the
 * two maps have different shard counts. */
int cluster_shard_map_diff(const struct cluster_shard_map *prev,
                           const struct cluster_shard_map *next,
                           struct cluster_shard_diff *out);

/* Release the arrays of `diff`. Safe on a zeroed diff and twice. */
void cluster_shard_diff_fini(struct cluster_shard_diff *diff);

/* Return whether a lease obtained by the Ping sent at `ping_sent_mono_ms`
 * (answered by the leader) still holds at `now_mono_ms`: it runs until
 * ping_sent + self_fence_after, exclusive (§4.6). Saturates on overflow. */
bool cluster_lease_valid(uint64_t ping_sent_mono_ms,
                         uint64_t self_fence_after_ms, uint64_t now_mono_ms);

/* Return whether a node whose last ping arrived at `last_ping_mono_ms` (the
 * leader's monotonic clock) is down at `now_mono_ms`: true once
 * now >= last_ping + node_down_after. A `now` before the ping is not down. */
bool cluster_node_is_down(uint64_t last_ping_mono_ms,
                          uint64_t node_down_after_ms, uint64_t now_mono_ms);

/* Return whether a follower may call itself ready (its FSM holds what the
 * group committed before it started): it has applied its own raft commit
 * index (non-zero) and, with a link, the commit index the leader reported
 * in a lease Pong (0: none yet). A restarted follower's raft commit index
 * is its own until the leader's first matching AppendEntries (often just
 * the bootstrap configuration, 1), so with a link only the leader's word
 * counts. */
bool cluster_follower_caught_up(uint64_t raft_commit, uint64_t applied,
                                bool have_link, uint64_t leader_commit);

/* Check the safety rule of §4.6: node_down_after >= self_fence_after +
 * 2 * election_timeout + margin, with self_fence_after and election_timeout
 * non-zero. Returns 0 or KM_ECONFIG (also when the sum overflows). */
int cluster_settings_check(uint64_t node_down_after_ms,
                           uint64_t self_fence_after_ms,
                           uint64_t election_timeout_ms, uint64_t margin_ms);
#endif /* KUMO_CLUSTER_SHARD_H */
