/* test_cluster_shard.c - unit tests of the cluster placement math: the
 * shard hash vector, lane keys, shard distribution, weighted rendezvous
 * ranking (determinism, eligibility, minimal disruption, weights), the
 * shard map diff, and the lease, down-detection and settings arithmetic.
 * Pure functions: no fixture state beyond stack arrays. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/km.h"
#include "cluster_shard.h"

/* Fixture */

static const struct cluster_lane cluster_shard_test_lane_v[] = {
    {"gmail.com", 4},
    {"Yahoo.COM", 3},
    {"single.example", 1},
};

static const struct cluster_lanes cluster_shard_test_lanes = {
    cluster_shard_test_lane_v,
    sizeof(cluster_shard_test_lane_v) / sizeof(cluster_shard_test_lane_v[0]),
};

/* Helpers */

static void
cluster_shard_test_nodes(struct cluster_shard_node *nodes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        nodes[i].id = 1000 + 7 * i;
        nodes[i].weight = 1;
        nodes[i].eligible = true;
    }
}

static bool
cluster_shard_test_contains(const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == id) {
            return true;
        }
    }
    return false;
}

/* Tests */

static void
hash_is_first_eight_bytes_of_sha256_big_endian(void **state)
{
    (void)state;
    assert_true(cluster_shard_hash("abc", 3) == UINT64_C(0xba7816bf8f01cfea));
    assert_true(cluster_shard_hash("", 0) == UINT64_C(0xe3b0c44298fc1c14));
}

static void
key_is_lowercased_domain_when_not_laned(void **state)
{
    char out[64];

    (void)state;
    assert_int_equal(cluster_shard_key("Example.ORG", "id1",
                                       &cluster_shard_test_lanes, out,
                                       sizeof(out)),
                     0);
    assert_string_equal(out, "example.org");
    assert_int_equal(cluster_shard_key("A.b", "id1", NULL, out, sizeof(out)),
                     0);
    assert_string_equal(out, "a.b");
}

static void
key_of_laned_domain_appends_id_hash_mod_lanes(void **state)
{
    const char *ids[] = {"id1", "0193a5b2-xyz", "m", "another-message-id"};
    char out[64];
    char want[64];

    (void)state;
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        uint64_t h = cluster_shard_hash(ids[i], strlen(ids[i]));

        assert_int_equal(cluster_shard_key("GMail.com", ids[i],
                                           &cluster_shard_test_lanes, out,
                                           sizeof(out)),
                         0);
        snprintf(want, sizeof(want), "gmail.com#%u", (unsigned)(h % 4));
        assert_string_equal(out, want);
        /* The lanes table itself may be written in any case. */
        assert_int_equal(cluster_shard_key("yahoo.com", ids[i],
                                           &cluster_shard_test_lanes, out,
                                           sizeof(out)),
                         0);
        snprintf(want, sizeof(want), "yahoo.com#%u", (unsigned)(h % 3));
        assert_string_equal(out, want);
    }
}

static void
key_of_laned_domain_uses_every_lane(void **state)
{
    bool seen[4] = {false, false, false, false};
    char id[32];
    char out[64];

    (void)state;
    for (int i = 0; i < 64; i++) {
        snprintf(id, sizeof(id), "msg-%d", i);
        assert_int_equal(cluster_shard_key("gmail.com", id,
                                           &cluster_shard_test_lanes, out,
                                           sizeof(out)),
                         0);
        assert_int_equal(strncmp(out, "gmail.com#", 10), 0);
        assert_true(out[10] >= '0' && out[10] <= '3' && out[11] == '\0');
        seen[out[10] - '0'] = true;
    }
    for (int k = 0; k < 4; k++) {
        assert_true(seen[k]);
    }
}

static void
key_with_one_lane_is_plain_domain(void **state)
{
    char out[64];

    (void)state;
    assert_int_equal(cluster_shard_key("single.example", "id1",
                                       &cluster_shard_test_lanes, out,
                                       sizeof(out)),
                     0);
    assert_string_equal(out, "single.example");
}

static void
key_rejects_empty_domain_and_short_buffer(void **state)
{
    char out[12];

    (void)state;
    assert_int_equal(cluster_shard_key("", "id", NULL, out, sizeof(out)),
                     KM_EINVAL);
    assert_int_equal(cluster_shard_key(NULL, "id", NULL, out, sizeof(out)),
                     KM_EINVAL);
    assert_int_equal(cluster_shard_key("example.org", "id", NULL, out, 11),
                     KM_E2BIG);
    assert_int_equal(cluster_shard_key("example.org", "id", NULL, out, 12), 0);
    /* "gmail.com#k" needs 12 bytes: 11 is too short for the lane suffix. */
    assert_int_equal(cluster_shard_key("gmail.com", "id",
                                       &cluster_shard_test_lanes, out, 11),
                     KM_E2BIG);
    assert_int_equal(cluster_shard_key("gmail.com", "id",
                                       &cluster_shard_test_lanes, out, 12),
                     0);
}

static void
shard_of_is_hash_mod_shards(void **state)
{
    (void)state;
    assert_int_equal(cluster_shard_of("abc", 64),
                     (uint32_t)(UINT64_C(0xba7816bf8f01cfea) % 64));
    assert_int_equal(cluster_shard_of("abc", 1), 0);
}

static void
shard_of_spreads_keys_uniformly(void **state)
{
    uint32_t counts[64] = {0};
    const int keys = 10000;
    const double expect = keys / 64.0;
    double chi2 = 0.0;
    char key[64];

    (void)state;
    for (int i = 0; i < keys; i++) {
        snprintf(key, sizeof(key), "domain-%d.example", i);
        counts[cluster_shard_of(key, 64)]++;
    }
    for (int s = 0; s < 64; s++) {
        double d = counts[s] - expect;

        chi2 += d * d / expect;
    }
    /* 63 degrees of freedom: mean 63, sd 11.2; 130 is six sd out. */
    assert_true(chi2 < 130.0);
}

static void
rank_is_deterministic_and_ignores_node_order(void **state)
{
    struct cluster_shard_node nodes[5];
    struct cluster_shard_node rev[5];
    uint64_t a[3];
    uint64_t b[3];
    uint64_t c[3];

    (void)state;
    cluster_shard_test_nodes(nodes, 5);
    for (size_t i = 0; i < 5; i++) {
        rev[i] = nodes[4 - i];
    }
    for (uint32_t s = 0; s < 64; s++) {
        assert_int_equal(cluster_shard_rank(s, nodes, 5, a, 3), 3);
        assert_int_equal(cluster_shard_rank(s, nodes, 5, b, 3), 3);
        assert_int_equal(cluster_shard_rank(s, rev, 5, c, 3), 3);
        assert_memory_equal(a, b, sizeof(a));
        assert_memory_equal(a, c, sizeof(a));
        assert_true(a[0] != a[1] && a[1] != a[2] && a[0] != a[2]);
    }
}

static void
rank_prefix_is_the_same_for_any_r(void **state)
{
    struct cluster_shard_node nodes[5];
    uint64_t one[1];
    uint64_t all[5];

    (void)state;
    cluster_shard_test_nodes(nodes, 5);
    for (uint32_t s = 0; s < 64; s++) {
        assert_int_equal(cluster_shard_rank(s, nodes, 5, one, 1), 1);
        assert_int_equal(cluster_shard_rank(s, nodes, 5, all, 5), 5);
        assert_true(one[0] == all[0]);
    }
}

static void
rank_places_only_eligible_weighted_nodes(void **state)
{
    struct cluster_shard_node nodes[5];
    uint64_t out[5];

    (void)state;
    cluster_shard_test_nodes(nodes, 5);
    nodes[1].eligible = false;
    nodes[3].weight = 0;
    for (uint32_t s = 0; s < 256; s++) {
        int got = cluster_shard_rank(s, nodes, 5, out, 5);

        assert_int_equal(got, 3);
        assert_false(cluster_shard_test_contains(out, 3, nodes[1].id));
        assert_false(cluster_shard_test_contains(out, 3, nodes[3].id));
    }
}

static void
rank_with_r_above_eligible_returns_all_eligible(void **state)
{
    struct cluster_shard_node nodes[3];
    uint64_t out[8];

    (void)state;
    cluster_shard_test_nodes(nodes, 3);
    assert_int_equal(cluster_shard_rank(7, nodes, 3, out, 8), 3);
    for (size_t i = 0; i < 3; i++) {
        assert_true(cluster_shard_test_contains(out, 3, nodes[i].id));
    }
    nodes[0].eligible = false;
    nodes[1].eligible = false;
    nodes[2].eligible = false;
    assert_int_equal(cluster_shard_rank(7, nodes, 3, out, 8), 0);
    assert_int_equal(cluster_shard_rank(7, nodes, 0, out, 8), 0);
}

static void
rank_rejects_duplicate_node_ids(void **state)
{
    struct cluster_shard_node nodes[3];
    struct cluster_shard_map map;
    uint64_t out[3];

    (void)state;
    cluster_shard_test_nodes(nodes, 3);
    nodes[2].id = nodes[0].id;
    assert_int_equal(cluster_shard_rank(0, nodes, 3, out, 3), KM_EINVAL);
    assert_int_equal(cluster_shard_map_compute(64, 2, nodes, 3, &map),
                     KM_EINVAL);
}

static void
map_matches_pinned_placement(void **state)
{
    /* Placement is committed and must never change across versions or
     * architectures: owners and backups of shards 0..7 over nodes 1, 2, 3,
     * checked against an independent computation (Python hashlib and
     * math.log; no near ties among these scores). */
    static const uint64_t want[8][2] = {
        {3, 2}, {1, 2}, {2, 1}, {3, 1}, {3, 2}, {1, 2}, {1, 2}, {3, 1},
    };
    struct cluster_shard_node nodes[3] = {
        {1, 1, true}, {2, 1, true}, {3, 1, true}};
    struct cluster_shard_map map;

    (void)state;
    assert_int_equal(cluster_shard_map_compute(8, 2, nodes, 3, &map), 0);
    for (uint32_t s = 0; s < 8; s++) {
        size_t n;
        const uint64_t *ids = cluster_shard_map_replicas(&map, s, &n);

        assert_int_equal(n, 2);
        assert_true(ids[0] == want[s][0]);
        assert_true(ids[1] == want[s][1]);
    }
    cluster_shard_map_fini(&map);
}

static void
map_removing_a_node_moves_only_its_shards(void **state)
{
    struct cluster_shard_node nodes[5];
    struct cluster_shard_map before;
    struct cluster_shard_map after;
    const uint64_t gone = 1000 + 7 * 2;
    size_t held = 0;

    (void)state;
    cluster_shard_test_nodes(nodes, 5);
    assert_int_equal(cluster_shard_map_compute(256, 2, nodes, 5, &before), 0);
    nodes[2].eligible = false;
    assert_int_equal(cluster_shard_map_compute(256, 2, nodes, 5, &after), 0);
    for (uint32_t s = 0; s < 256; s++) {
        size_t na;
        size_t nb;
        const uint64_t *a = cluster_shard_map_replicas(&before, s, &na);
        const uint64_t *b = cluster_shard_map_replicas(&after, s, &nb);

        assert_int_equal(na, 2);
        assert_int_equal(nb, 2);
        assert_false(cluster_shard_test_contains(b, nb, gone));
        if (!cluster_shard_test_contains(a, na, gone)) {
            assert_memory_equal(a, b, na * sizeof(*a));
            continue;
        }
        held++;
        /* The survivor keeps its place in order; the next one fills in. */
        if (a[0] == gone) {
            assert_true(b[0] == a[1]);
        } else {
            assert_true(b[0] == a[0]);
        }
    }
    assert_true(held > 0);
    cluster_shard_map_fini(&before);
    cluster_shard_map_fini(&after);
}

static void
map_node_of_weight_two_owns_twice_the_shards(void **state)
{
    struct cluster_shard_node nodes[3];
    struct cluster_shard_map map;
    size_t owned[3] = {0, 0, 0};
    double ratio;

    (void)state;
    cluster_shard_test_nodes(nodes, 3);
    nodes[2].weight = 2;
    assert_int_equal(cluster_shard_map_compute(4096, 1, nodes, 3, &map), 0);
    for (uint32_t s = 0; s < 4096; s++) {
        size_t n;
        const uint64_t *ids = cluster_shard_map_replicas(&map, s, &n);

        assert_int_equal(n, 1);
        for (size_t i = 0; i < 3; i++) {
            if (ids[0] == nodes[i].id) {
                owned[i]++;
            }
        }
    }
    assert_int_equal(owned[0] + owned[1] + owned[2], 4096);
    ratio = (double)owned[2] / ((owned[0] + owned[1]) / 2.0);
    assert_true(ratio > 2.0 * 0.85 && ratio < 2.0 * 1.15);
    cluster_shard_map_fini(&map);
}

static void
map_diff_separates_owner_and_backup_changes(void **state)
{
    struct cluster_shard_node nodes[4];
    struct cluster_shard_map before;
    struct cluster_shard_map after;
    struct cluster_shard_diff diff;
    size_t io = 0;
    size_t ib = 0;

    (void)state;
    cluster_shard_test_nodes(nodes, 4);
    assert_int_equal(cluster_shard_map_compute(64, 2, nodes, 4, &before), 0);
    nodes[1].eligible = false;
    assert_int_equal(cluster_shard_map_compute(64, 2, nodes, 4, &after), 0);
    assert_int_equal(cluster_shard_map_diff(&before, &after, &diff), 0);
    assert_true(diff.n_owner_changed > 0);
    assert_true(diff.n_backups_changed > 0);
    for (uint32_t s = 0; s < 64; s++) {
        size_t na;
        size_t nb;
        const uint64_t *a = cluster_shard_map_replicas(&before, s, &na);
        const uint64_t *b = cluster_shard_map_replicas(&after, s, &nb);

        if (a[0] != b[0]) {
            assert_true(io < diff.n_owner_changed);
            assert_int_equal(diff.owner_changed[io++], s);
            assert_true(a[0] == nodes[1].id);
        } else if (a[1] != b[1]) {
            assert_true(ib < diff.n_backups_changed);
            assert_int_equal(diff.backups_changed[ib++], s);
            assert_true(a[1] == nodes[1].id);
        }
    }
    assert_int_equal(io, diff.n_owner_changed);
    assert_int_equal(ib, diff.n_backups_changed);
    cluster_shard_diff_fini(&diff);
    cluster_shard_diff_fini(&diff);

    /* Identical maps: nothing changed. */
    assert_int_equal(cluster_shard_map_diff(&after, &after, &diff), 0);
    assert_int_equal(diff.n_owner_changed, 0);
    assert_int_equal(diff.n_backups_changed, 0);
    cluster_shard_diff_fini(&diff);
    cluster_shard_map_fini(&before);
    cluster_shard_map_fini(&after);
    cluster_shard_map_fini(&after);
}

static void
map_diff_counts_losing_the_last_owner_as_owner_change(void **state)
{
    struct cluster_shard_node nodes[1];
    struct cluster_shard_map before;
    struct cluster_shard_map after;
    struct cluster_shard_map other;
    struct cluster_shard_diff diff;

    (void)state;
    cluster_shard_test_nodes(nodes, 1);
    assert_int_equal(cluster_shard_map_compute(4, 2, nodes, 1, &before), 0);
    nodes[0].eligible = false;
    assert_int_equal(cluster_shard_map_compute(4, 2, nodes, 1, &after), 0);
    assert_int_equal(cluster_shard_map_diff(&before, &after, &diff), 0);
    assert_int_equal(diff.n_owner_changed, 4);
    assert_int_equal(diff.n_backups_changed, 0);
    cluster_shard_diff_fini(&diff);
    assert_int_equal(cluster_shard_map_compute(8, 2, nodes, 1, &other), 0);
    assert_int_equal(cluster_shard_map_diff(&before, &other, &diff), KM_EINVAL);
    cluster_shard_map_fini(&before);
    cluster_shard_map_fini(&after);
    cluster_shard_map_fini(&other);
}

static void
lease_holds_until_self_fence_deadline_exclusive(void **state)
{
    (void)state;
    assert_true(cluster_lease_valid(1000, 5000, 1000));
    assert_true(cluster_lease_valid(1000, 5000, 5999));
    assert_false(cluster_lease_valid(1000, 5000, 6000));
    assert_false(cluster_lease_valid(1000, 5000, UINT64_MAX));
    assert_true(cluster_lease_valid(UINT64_MAX - 10, 5000, UINT64_MAX));
    assert_false(cluster_lease_valid(1000, 0, 1000));
}

static void
node_is_down_from_node_down_deadline_on(void **state)
{
    (void)state;
    assert_false(cluster_node_is_down(2000, 10000, 2000));
    assert_false(cluster_node_is_down(2000, 10000, 11999));
    assert_true(cluster_node_is_down(2000, 10000, 12000));
    assert_false(cluster_node_is_down(2000, 10000, 1000));
    assert_false(cluster_node_is_down(UINT64_MAX - 5, 10000, UINT64_MAX));
}

static void
settings_check_enforces_fence_and_election_margin(void **state)
{
    (void)state;
    /* Defaults (§4.11): 10 s >= 5 s + 2 x 1 s + margin, up to 3 s. */
    assert_int_equal(cluster_settings_check(10000, 5000, 1000, 3000), 0);
    assert_int_equal(cluster_settings_check(10000, 5000, 1000, 3001),
                     KM_ECONFIG);
    assert_int_equal(cluster_settings_check(10000, 5000, 2000, 1000), 0);
    assert_int_equal(cluster_settings_check(9999, 5000, 2000, 1000),
                     KM_ECONFIG);
    assert_int_equal(cluster_settings_check(10000, 0, 1000, 0), KM_ECONFIG);
    assert_int_equal(cluster_settings_check(10000, 5000, 0, 0), KM_ECONFIG);
    assert_int_equal(
        cluster_settings_check(UINT64_MAX, 5000, UINT64_MAX / 2 + 1, 0),
        KM_ECONFIG);
    assert_int_equal(cluster_settings_check(UINT64_MAX, UINT64_MAX, 1, 0),
                     KM_ECONFIG);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hash_is_first_eight_bytes_of_sha256_big_endian),
        cmocka_unit_test(key_is_lowercased_domain_when_not_laned),
        cmocka_unit_test(key_of_laned_domain_appends_id_hash_mod_lanes),
        cmocka_unit_test(key_of_laned_domain_uses_every_lane),
        cmocka_unit_test(key_with_one_lane_is_plain_domain),
        cmocka_unit_test(key_rejects_empty_domain_and_short_buffer),
        cmocka_unit_test(shard_of_is_hash_mod_shards),
        cmocka_unit_test(shard_of_spreads_keys_uniformly),
        cmocka_unit_test(rank_is_deterministic_and_ignores_node_order),
        cmocka_unit_test(rank_prefix_is_the_same_for_any_r),
        cmocka_unit_test(rank_places_only_eligible_weighted_nodes),
        cmocka_unit_test(rank_with_r_above_eligible_returns_all_eligible),
        cmocka_unit_test(rank_rejects_duplicate_node_ids),
        cmocka_unit_test(map_matches_pinned_placement),
        cmocka_unit_test(map_removing_a_node_moves_only_its_shards),
        cmocka_unit_test(map_node_of_weight_two_owns_twice_the_shards),
        cmocka_unit_test(map_diff_separates_owner_and_backup_changes),
        cmocka_unit_test(map_diff_counts_losing_the_last_owner_as_owner_change),
        cmocka_unit_test(lease_holds_until_self_fence_deadline_exclusive),
        cmocka_unit_test(node_is_down_from_node_down_deadline_on),
        cmocka_unit_test(settings_check_enforces_fence_and_election_margin),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
