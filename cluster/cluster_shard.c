/* cluster_shard.c - shard hash, shard keys, weighted rendezvous ranking,
 * shard map and diff, lease and down arithmetic (CLUSTER.md §4.4, §4.6).
 * Owns nothing beyond the arrays of the maps and diffs it fills. The
 * natural logarithm is computed here from basic IEEE 754 operations so that
 * placement never depends on a platform's libm. No clock, no I/O: safe to
 * call from the Raft FSM. Any thread. */
#include "cluster_shard.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "base/km.h"
#include "base/log.h"

/* Clang contracts a * b + c into an FMA by default even in ISO C mode;
 * GCC does not in ISO C mode (-std=c17) and ignores this pragma. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* Placement scores must be the same bits on every node: intermediate
 * results in wider registers (x87) would break that. */
#if FLT_EVAL_METHOD != 0
#error "cluster_shard needs binary64 evaluation of double (FLT_EVAL_METHOD 0)"
#endif

/* ln 2 and sqrt 2 rounded to binary64. */
#define CLUSTER_SHARD_LN2   0x1.62e42fefa39efp-1
#define CLUSTER_SHARD_SQRT2 0x1.6a09e667f3bcdp+0

uint64_t
cluster_shard_hash(const void *p, size_t n)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    uint64_t h = 0;

    if (SHA256(p, n, md) == NULL) {
        km_panic("cluster_shard: SHA-256 unavailable");
    }
    for (size_t i = 0; i < 8; i++) {
        h = (h << 8) | md[i];
    }
    return h;
}

static char
cluster_shard_lower(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return (char)(c - 'A' + 'a');
    }
    return c;
}

int
cluster_shard_key(const char *routing_domain, const char *id,
                  const struct cluster_lanes *lanes, char *out, size_t outlen)
{
    size_t len = routing_domain != NULL ? strlen(routing_domain) : 0;
    uint32_t n_lanes = 0;

    if (len == 0) {
        return KM_EINVAL;
    }
    if (len >= outlen) {
        return KM_E2BIG;
    }
    for (size_t i = 0; i < len; i++) {
        out[i] = cluster_shard_lower(routing_domain[i]);
    }
    out[len] = '\0';
    if (lanes != NULL) {
        for (size_t i = 0; i < lanes->n; i++) {
            if (km_ascii_ieq(out, len, lanes->v[i].domain)) {
                n_lanes = lanes->v[i].n;
                break;
            }
        }
    }
    if (n_lanes > 1) {
        uint64_t k = cluster_shard_hash(id, strlen(id)) % n_lanes;
        int w = snprintf(out + len, outlen - len, "#%u", (unsigned)k);

        if (w < 0 || (size_t)w >= outlen - len) {
            out[len] = '\0';
            return KM_E2BIG;
        }
    }
    return 0;
}

uint32_t
cluster_shard_of(const char *key, uint32_t shards)
{
    KM_ASSERT(shards > 0);
    return (uint32_t)(cluster_shard_hash(key, strlen(key)) % shards);
}

/* ln(U) for U = (floor(h / 2^12) + 0.5) / 2^52 = q / 2^53 with q odd in
 * [1, 2^53). q = m * 2^k, m reduced to [sqrt(1/2), sqrt(2)], and
 * ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716, by its series to
 * s^23 (the next term is below 2^-60 of the sum). Only +, -, *, / in a fixed
 * order: bit-identical wherever binary64 is evaluated as binary64. */
static double
cluster_shard_ln_u(uint64_t h)
{
    uint64_t q = ((h >> 12) << 1) | 1;
    int k = 63 - __builtin_clzll(q);
    double m = (double)q / (double)(UINT64_C(1) << k);
    double s;
    double s2;
    double p;

    if (m > CLUSTER_SHARD_SQRT2) {
        m = m * 0.5;
        k++;
    }
    s = (m - 1.0) / (m + 1.0);
    s2 = s * s;
    p = 1.0 / 23.0;
    p = 1.0 / 21.0 + s2 * p;
    p = 1.0 / 19.0 + s2 * p;
    p = 1.0 / 17.0 + s2 * p;
    p = 1.0 / 15.0 + s2 * p;
    p = 1.0 / 13.0 + s2 * p;
    p = 1.0 / 11.0 + s2 * p;
    p = 1.0 / 9.0 + s2 * p;
    p = 1.0 / 7.0 + s2 * p;
    p = 1.0 / 5.0 + s2 * p;
    p = 1.0 / 3.0 + s2 * p;
    p = 1.0 + s2 * p;
    return (double)(k - 53) * CLUSTER_SHARD_LN2 + 2.0 * s * p;
}

static double
cluster_shard_score(uint64_t node_id, uint32_t shard, uint32_t weight)
{
    unsigned char in[12];
    double ln_u;

    for (int i = 0; i < 8; i++) {
        in[i] = (unsigned char)(node_id >> (56 - 8 * i));
    }
    for (int i = 0; i < 4; i++) {
        in[8 + i] = (unsigned char)(shard >> (24 - 8 * i));
    }
    ln_u = cluster_shard_ln_u(cluster_shard_hash(in, sizeof(in)));
    /* U < 1 makes ln_u strictly negative (see cluster_shard_ln_u). */
    KM_ASSERT(ln_u < 0.0);
    return -(double)weight / ln_u;
}

static bool
cluster_shard_has_dup_ids(const struct cluster_shard_node *nodes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            if (nodes[i].id == nodes[j].id) {
                return true;
            }
        }
    }
    return false;
}

/* cluster_shard_rank() without the duplicate check; `scores` has room for
 * n entries. */
static size_t
cluster_shard_rank_into(uint32_t shard, const struct cluster_shard_node *nodes,
                        size_t n, double *scores, uint64_t *out_ids, size_t r)
{
    size_t got = 0;

    /* Candidates score > 0; others and already taken nodes score -1. */
    for (size_t i = 0; i < n; i++) {
        if (nodes[i].eligible && nodes[i].weight > 0) {
            scores[i] =
                cluster_shard_score(nodes[i].id, shard, nodes[i].weight);
        } else {
            scores[i] = -1.0;
        }
    }
    while (got < r) {
        size_t best = n;

        for (size_t i = 0; i < n; i++) {
            if (scores[i] < 0.0) {
                continue;
            }
            if (best == n || scores[i] > scores[best] ||
                (scores[i] == scores[best] && nodes[i].id < nodes[best].id)) {
                best = i;
            }
        }
        if (best == n) {
            break;
        }
        out_ids[got++] = nodes[best].id;
        scores[best] = -1.0;
    }
    return got;
}

int
cluster_shard_rank(uint32_t shard, const struct cluster_shard_node *nodes,
                   size_t n, uint64_t *out_ids, size_t r)
{
    double *scores;
    size_t got;

    if (cluster_shard_has_dup_ids(nodes, n)) {
        return KM_EINVAL;
    }
    if (n == 0 || r == 0) {
        return 0;
    }
    scores = km_malloc(n * sizeof(*scores));
    got = cluster_shard_rank_into(shard, nodes, n, scores, out_ids, r);
    free(scores);
    return (int)got;
}

int
cluster_shard_map_compute(uint32_t shards, uint32_t r,
                          const struct cluster_shard_node *nodes, size_t n,
                          struct cluster_shard_map *out)
{
    double *scores;

    if (shards == 0 || r == 0 || cluster_shard_has_dup_ids(nodes, n)) {
        return KM_EINVAL;
    }
    out->shards = shards;
    out->r = r;
    out->n_replicas = km_calloc(shards, sizeof(*out->n_replicas));
    out->replicas = km_calloc((size_t)shards * r, sizeof(*out->replicas));
    scores = km_malloc((n > 0 ? n : 1) * sizeof(*scores));
    for (uint32_t s = 0; s < shards; s++) {
        out->n_replicas[s] = (uint32_t)cluster_shard_rank_into(
            s, nodes, n, scores, out->replicas + (size_t)s * r, r);
    }
    free(scores);
    return 0;
}

const uint64_t *
cluster_shard_map_replicas(const struct cluster_shard_map *map, uint32_t shard,
                           size_t *n)
{
    KM_ASSERT(shard < map->shards);
    *n = map->n_replicas[shard];
    return map->replicas + (size_t)shard * map->r;
}

void
cluster_shard_map_fini(struct cluster_shard_map *map)
{
    free(map->n_replicas);
    free(map->replicas);
    memset(map, 0, sizeof(*map));
}

int
cluster_shard_map_diff(const struct cluster_shard_map *prev,
                       const struct cluster_shard_map *next,
                       struct cluster_shard_diff *out)
{
    if (prev->shards != next->shards) {
        return KM_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    out->owner_changed = km_calloc(prev->shards + 1u, sizeof(uint32_t));
    out->backups_changed = km_calloc(prev->shards + 1u, sizeof(uint32_t));
    for (uint32_t s = 0; s < prev->shards; s++) {
        size_t na;
        size_t nb;
        const uint64_t *a = cluster_shard_map_replicas(prev, s, &na);
        const uint64_t *b = cluster_shard_map_replicas(next, s, &nb);

        if (na == 0 && nb == 0) {
            continue;
        }
        if (na == 0 || nb == 0 || a[0] != b[0]) {
            out->owner_changed[out->n_owner_changed++] = s;
        } else if (na != nb || memcmp(a, b, na * sizeof(*a)) != 0) {
            out->backups_changed[out->n_backups_changed++] = s;
        }
    }
    return 0;
}

void
cluster_shard_diff_fini(struct cluster_shard_diff *diff)
{
    free(diff->owner_changed);
    free(diff->backups_changed);
    memset(diff, 0, sizeof(*diff));
}

bool
cluster_lease_valid(uint64_t ping_sent_mono_ms, uint64_t self_fence_after_ms,
                    uint64_t now_mono_ms)
{
    if (now_mono_ms < ping_sent_mono_ms) {
        return true;
    }
    return now_mono_ms - ping_sent_mono_ms < self_fence_after_ms;
}

bool
cluster_node_is_down(uint64_t last_ping_mono_ms, uint64_t node_down_after_ms,
                     uint64_t now_mono_ms)
{
    if (now_mono_ms < last_ping_mono_ms) {
        return false;
    }
    return now_mono_ms - last_ping_mono_ms >= node_down_after_ms;
}

bool
cluster_follower_caught_up(uint64_t raft_commit, uint64_t applied,
                           bool have_link, uint64_t leader_commit)
{
    if (raft_commit == 0 || applied < raft_commit) {
        return false;
    }
    return !have_link || (leader_commit != 0 && applied >= leader_commit);
}

int
cluster_settings_check(uint64_t node_down_after_ms,
                       uint64_t self_fence_after_ms,
                       uint64_t election_timeout_ms, uint64_t margin_ms)
{
    uint64_t two_elections;
    uint64_t need;

    if (self_fence_after_ms == 0 || election_timeout_ms == 0) {
        return KM_ECONFIG;
    }
    if (__builtin_mul_overflow(election_timeout_ms, 2, &two_elections) ||
        __builtin_add_overflow(self_fence_after_ms, two_elections, &need) ||
        __builtin_add_overflow(need, margin_ms, &need)) {
        return KM_ECONFIG;
    }
    return node_down_after_ms >= need ? 0 : KM_ECONFIG;
}
