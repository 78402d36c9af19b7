/* test_cluster_lease.c - three kumod cluster nodes with NNG links in one
 * process on one loop: the first leader commits the settings and every
 * voter UP, each shard then has exactly one owner that may deliver (its
 * lease comes from Ping/Pong), a closed node is marked DOWN by the leader
 * and its shards fail over to the next replica, and a node that comes back
 * pings its way to JOINING and then UP. Short timers (100 ms pings). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "test_util.h"
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "base/km.h"
#include "base/log.h"
#include "cluster.h"
#include "cluster_core.h"
#include "cluster_link.h"
#include "cluster_link_int.h"

#define LEASE_N      3
#define LEASE_SHARDS 16
#define LEASE_WAIT   20000

/* Fixture */

struct lease_test;

struct lease_node {
    struct lease_test *t;
    struct cluster *c;
    char dir[300];
    char raft_addr[32];
    char link_url[48];
    int ready;
    bool closed;
    int owner_changes, failovers;
};

struct lease_test {
    uv_loop_t loop;
    char base[256];
    struct cluster_peer peers[LEASE_N];
    struct lease_node nodes[LEASE_N];
};

static int
lease_test_setup(void **state)
{
    struct lease_test *t = calloc(1, sizeof(*t));
    const char *base = getenv("KUMO_TEST_TMP");

    if (base == NULL) {
        base = "/tmp";
    }
    snprintf(t->base, sizeof(t->base), "%s/lease-XXXXXX", base);
    if (mkdtemp(t->base) == NULL) {
        free(t);
        return -1;
    }
    uv_loop_init(&t->loop);
    for (int i = 0; i < LEASE_N; i++) {
        struct lease_node *n = &t->nodes[i];
        int rport = test_free_port();
        int lport = test_free_port();
        if (rport < 0 || lport < 0) {
            return -1;
        }
        n->t = t;
        n->closed = true;
        snprintf(n->dir, sizeof(n->dir), "%s/n%d/raft", t->base, i + 1);
        snprintf(n->raft_addr, sizeof(n->raft_addr), "127.0.0.1:%d", rport);
        snprintf(n->link_url, sizeof(n->link_url), "tcp://127.0.0.1:%d", lport);
        t->peers[i].id = (uint64_t)i + 1;
        t->peers[i].raft_addr = n->raft_addr;
        t->peers[i].link_url = n->link_url;
    }
    log_set_level(LOG_LVL_WARN);
    *state = t;
    return 0;
}

static void
lease_test_on_closed(void *arg)
{
    struct lease_node *n = arg;

    n->closed = true;
}

static void
lease_test_close(struct lease_node *n)
{
    n->closed = false;
    cluster_close(n->c, lease_test_on_closed, n);
    n->c = NULL;
    while (!n->closed) {
        uv_run(&n->t->loop, UV_RUN_ONCE);
    }
}

static int
lease_test_teardown(void **state)
{
    struct lease_test *t = *state;

    for (int i = 0; i < LEASE_N; i++) {
        if (t->nodes[i].c != NULL) {
            lease_test_close(&t->nodes[i]);
        }
    }
    int rv = uv_loop_close(&t->loop);
    if (test_rm_rf(t->base) != 0) {
        rv = -1;
    }
    free(t);
    return rv == 0 ? 0 : -1;
}

/* Helpers */

static void
lease_test_on_ready(void *ctx)
{
    struct lease_node *n = ctx;

    n->ready++;
}

static void
lease_test_on_shard_owner(void *ctx, uint32_t shard, uint64_t old_owner,
                          uint64_t new_owner, bool failover)
{
    struct lease_node *n = ctx;

    (void)shard;
    (void)old_owner;
    (void)new_owner;
    n->owner_changes++;
    n->failovers += failover ? 1 : 0;
}

static void
lease_test_open(struct lease_node *n)
{
    struct lease_test *t = n->t;
    struct cluster_config cfg = {
        .node_id = (uint64_t)(n - t->nodes) + 1,
        .raft_dir = n->dir,
        .raft_addr = n->raft_addr,
        .election_timeout_ms = 300,
        .heartbeat_ms = 50,
        .peers = t->peers,
        .n_peers = LEASE_N,
        .bootstrap = true,
        .link_listen = n->link_url,
        .cluster_id = "lease-test",
        .settings =
            {
                .shards = LEASE_SHARDS,
                .replication_factor = 2,
                .ping_ms = 100,
                .self_fence_after_ms = 500,
                .node_down_after_ms = 1500,
                .rebalance_after_ms = 1000,
            },
    };
    struct cluster_host host = {.ctx = n,
                                .on_ready = lease_test_on_ready,
                                .on_shard_owner = lease_test_on_shard_owner};

    assert_int_equal(cluster_open(&t->loop, &cfg, &host, &n->c), 0);
    n->closed = false;
}

/* Whether node `id` is in the replica list of any shard on `n`. */
static bool
lease_test_lists_node(const struct lease_node *n, uint64_t id)
{
    for (uint32_t s = 0; s < LEASE_SHARDS; s++) {
        uint64_t list[4];
        size_t k = cluster_shard_replicas(n->c, s, list, 4, NULL);
        for (size_t i = 0; i < k; i++) {
            if (list[i] == id) {
                return true;
            }
        }
    }
    return false;
}

/* Every open node has the full map with `r` replicas per shard, every
 * shard has exactly one open node that may deliver it, and the nodes
 * agree on every list and epoch. */
static bool
lease_test_settled(struct lease_test *t, size_t r)
{
    const struct lease_node *first = NULL;

    for (int i = 0; i < LEASE_N; i++) {
        if (t->nodes[i].c != NULL && first == NULL) {
            first = &t->nodes[i];
        }
    }
    for (uint32_t s = 0; s < LEASE_SHARDS; s++) {
        uint64_t want[4], want_epoch = 0;
        size_t k = cluster_shard_replicas(first->c, s, want, 4, &want_epoch);
        int deliverers = 0;
        if (k != r) {
            return false;
        }
        for (int i = 0; i < LEASE_N; i++) {
            const struct lease_node *n = &t->nodes[i];
            uint64_t got[4], epoch = 0;
            if (n->c == NULL) {
                continue;
            }
            if (cluster_shard_replicas(n->c, s, got, 4, &epoch) != k ||
                epoch != want_epoch ||
                memcmp(got, want, k * sizeof(*got)) != 0) {
                return false;
            }
            if (cluster_may_deliver(n->c, s)) {
                deliverers++;
                if (want[0] != (uint64_t)i + 1) {
                    return false;
                }
            }
        }
        if (deliverers != 1) {
            return false;
        }
    }
    return true;
}

static void
lease_test_wait_settled(struct lease_test *t, size_t r)
{
    uint64_t deadline = km_now_mono_ms() + LEASE_WAIT;
    bool ok = false;

    while (!(ok = lease_test_settled(t, r)) && km_now_mono_ms() < deadline) {
        uv_run(&t->loop, UV_RUN_ONCE);
    }
    assert_true(ok);
}

static void
lease_test_open_all(struct lease_test *t)
{
    for (int i = 0; i < LEASE_N; i++) {
        lease_test_open(&t->nodes[i]);
    }
    lease_test_wait_settled(t, 2);
    /* A follower is ready once it has applied both raft's commit index and
     * the one of its last lease Pong: that can be a loop turn after the map
     * settled here. */
    uint64_t deadline = km_now_mono_ms() + LEASE_WAIT;
    bool ready = false;
    while (!ready && km_now_mono_ms() < deadline) {
        ready = true;
        for (int i = 0; i < LEASE_N; i++) {
            ready = ready && t->nodes[i].ready > 0;
        }
        if (!ready) {
            uv_run(&t->loop, UV_RUN_ONCE);
        }
    }
    assert_true(ready);
}

/* A node other than the leader, which owns at least one shard. */
static struct lease_node *
lease_test_follower_owner(struct lease_test *t)
{
    for (int i = 0; i < LEASE_N; i++) {
        struct lease_node *n = &t->nodes[i];
        if (cluster_is_leader(n->c)) {
            continue;
        }
        for (uint32_t s = 0; s < LEASE_SHARDS; s++) {
            if (cluster_owns(n->c, s)) {
                return n;
            }
        }
    }
    return NULL;
}

/* Tests */

static void
lease_first_leader_commits_settings_and_one_owner_per_shard(void **state)
{
    struct lease_test *t = *state;
    struct cluster_settings st;

    lease_test_open_all(t);
    for (int i = 0; i < LEASE_N; i++) {
        struct lease_node *n = &t->nodes[i];
        assert_int_equal(n->ready, 1);
        assert_true(cluster_has_lease(n->c));
        cluster_get_settings(n->c, &st);
        assert_int_equal(st.shards, LEASE_SHARDS);
        assert_int_equal(st.ping_ms, 100);
        assert_int_equal(st.node_down_after_ms, 1500);
        assert_int_equal(cluster_shard_for(n->c, "example.com", "x"),
                         cluster_shard_for(t->nodes[0].c, "example.com", "x"));
        assert_true(cluster_shard_for(n->c, "example.com", "x") < LEASE_SHARDS);
    }
    /* Three UP nodes in HRW order for any shard. */
    uint64_t live[4];
    assert_int_equal(cluster_live_nodes(t->nodes[0].c, 3, live, 4), 3);
}

static void
lease_closed_node_goes_down_and_its_shards_fail_over(void **state)
{
    struct lease_test *t = *state;

    lease_test_open_all(t);
    struct lease_node *gone = lease_test_follower_owner(t);
    assert_non_null(gone);
    uint64_t gone_id = (uint64_t)(gone - t->nodes) + 1;
    lease_test_close(gone);

    uint64_t deadline = km_now_mono_ms() + LEASE_WAIT;
    bool moved = false;
    while (!moved && km_now_mono_ms() < deadline) {
        uv_run(&t->loop, UV_RUN_ONCE);
        moved = true;
        for (int i = 0; i < LEASE_N; i++) {
            if (t->nodes[i].c != NULL &&
                lease_test_lists_node(&t->nodes[i], gone_id)) {
                moved = false;
            }
        }
    }
    assert_true(moved);
    /* The two left own every shard between them, as a failover. */
    lease_test_wait_settled(t, 2);
    for (int i = 0; i < LEASE_N; i++) {
        struct lease_node *n = &t->nodes[i];
        if (n->c == NULL) {
            continue;
        }
        assert_true(n->failovers > 0);
        uint64_t live[4];
        assert_int_equal(cluster_live_nodes(n->c, 0, live, 4), 2);
    }
}

static void
lease_returning_node_joins_then_owns_shards_again(void **state)
{
    struct lease_test *t = *state;

    lease_test_open_all(t);
    struct lease_node *back = lease_test_follower_owner(t);
    assert_non_null(back);
    uint64_t back_id = (uint64_t)(back - t->nodes) + 1;
    lease_test_close(back);

    struct lease_node *other = &t->nodes[back_id == 1 ? 1 : 0];
    uint64_t deadline = km_now_mono_ms() + LEASE_WAIT;
    while (lease_test_lists_node(other, back_id) &&
           km_now_mono_ms() < deadline) {
        uv_run(&t->loop, UV_RUN_ONCE);
    }
    assert_false(lease_test_lists_node(other, back_id));

    /* Pings make it JOINING, rebalance_after (1 s) later UP. */
    lease_test_open(back);
    deadline = km_now_mono_ms() + LEASE_WAIT;
    while (!lease_test_lists_node(other, back_id) &&
           km_now_mono_ms() < deadline) {
        uv_run(&t->loop, UV_RUN_ONCE);
    }
    assert_true(lease_test_lists_node(other, back_id));
    lease_test_wait_settled(t, 2);
}

static void
lease_test_on_commit(void *arg, int status)
{
    int *st = arg;

    *st = status;
}

static void
lease_drained_node_hands_its_shards_over_without_failover(void **state)
{
    struct lease_test *t = *state;
    struct lease_node *leader = NULL;
    int status = 1;

    lease_test_open_all(t);
    struct lease_node *drain = lease_test_follower_owner(t);
    assert_non_null(drain);
    uint64_t drain_id = (uint64_t)(drain - t->nodes) + 1;
    for (int i = 0; i < LEASE_N; i++) {
        if (cluster_is_leader(t->nodes[i].c)) {
            leader = &t->nodes[i];
        }
        t->nodes[i].owner_changes = 0;
    }
    assert_non_null(leader);
    assert_int_equal(cluster_lease_set_node_state(drain->c, drain_id,
                                                  CLUSTER_NODE_DRAINING, NULL,
                                                  NULL, NULL, NULL),
                     KM_ENOTLEADER);
    assert_int_equal(
        cluster_lease_set_node_state(leader->c, drain_id, CLUSTER_NODE_DRAINING,
                                     NULL, NULL, lease_test_on_commit, &status),
        0);
    uint64_t deadline = km_now_mono_ms() + LEASE_WAIT;
    bool moved = false;
    while (!moved && km_now_mono_ms() < deadline) {
        uv_run(&t->loop, UV_RUN_ONCE);
        moved = status == 0;
        for (int i = 0; i < LEASE_N; i++) {
            moved = moved && !lease_test_lists_node(&t->nodes[i], drain_id);
        }
    }
    assert_int_equal(status, 0);
    assert_true(moved);
    /* Still pinging: it stays DRAINING, owns nothing, and nobody treats
     * the move as a failover. */
    for (uint32_t s = 0; s < LEASE_SHARDS; s++) {
        assert_false(cluster_may_deliver(drain->c, s));
    }
    for (int i = 0; i < LEASE_N; i++) {
        assert_true(t->nodes[i].owner_changes > 0);
        assert_int_equal(t->nodes[i].failovers, 0);
    }
}

/* The leader's count of messages without an able owner (issue 17): a
 * message of a shard whose owner went silent counts once that owner's
 * lease must have lapsed, and stops counting when down detection moves
 * the shard, within node_down_after. */
static void
lease_unowned_counts_a_silent_owner_until_its_shard_moves(void **state)
{
    struct lease_test *t = *state;
    struct lease_node *leader = NULL;
    struct cluster_msg m;
    int committed = 1;

    lease_test_open_all(t);
    struct lease_node *gone = lease_test_follower_owner(t);
    assert_non_null(gone);
    for (int i = 0; i < LEASE_N; i++) {
        if (cluster_is_leader(t->nodes[i].c)) {
            leader = &t->nodes[i];
        }
    }
    assert_non_null(leader);
    memset(&m, 0, sizeof(m));
    snprintf(m.id, sizeof(m.id), "%032x", 17);
    m.queue = "example.com";
    while (!cluster_owns(gone->c, m.shard)) {
        m.shard++;
    }
    m.accepted_by = (uint64_t)(leader - t->nodes) + 1;
    m.replicas[0] = m.accepted_by;
    m.n_replicas = 1;
    assert_int_equal(
        cluster_enqueue(leader->c, &m, lease_test_on_commit, &committed), 0);
    uint64_t deadline = km_now_mono_ms() + LEASE_WAIT;
    while (committed == 1 && km_now_mono_ms() < deadline) {
        uv_run(&t->loop, UV_RUN_ONCE);
    }
    assert_int_equal(committed, 0);
    assert_int_equal(cluster_unowned(leader->c), 0);

    lease_test_close(gone);
    uint64_t t0 = km_now_mono_ms();
    uint64_t seen_at = 0, cleared_at = 0;
    deadline = t0 + LEASE_WAIT;
    while (cleared_at == 0 && km_now_mono_ms() < deadline) {
        uv_run(&t->loop, UV_RUN_NOWAIT);
        size_t n = cluster_unowned(leader->c);
        if (n == 1 && seen_at == 0) {
            seen_at = km_now_mono_ms();
        } else if (n == 0 && seen_at != 0) {
            cleared_at = km_now_mono_ms();
        }
        uv_sleep(5);
    }
    /* Counted once its last ping is self_fence_after (500 ms) old,
     * cleared by the DOWN that node_down_after (1500 ms) brings, with
     * slack for a loaded machine. */
    assert_true(seen_at != 0);
    assert_true(cleared_at != 0);
    assert_true(cleared_at - t0 <= 1500 + 3000);
}

static void
ping_link_url_survives_the_codec(void **state)
{
    struct cluster_link_env in = {.version = CLUSTER_LINK_VERSION,
                                  .from_node = 4};
    struct cluster_link_env out;
    uint8_t *buf = NULL;
    size_t n = 0;

    (void)state;
    in.msg.kind = CLUSTER_LINK_PING;
    in.msg.u.ping.seq = 9;
    in.msg.u.ping.applied_index = 77;
    in.msg.u.ping.link_url = "tcp://127.0.0.1:7420";
    assert_int_equal(cluster_msg_link_encode(&in, 4096, &buf, &n), 0);
    assert_int_equal(cluster_msg_link_decode(buf, n, 4096, &out), 0);
    free(buf);
    assert_int_equal(out.msg.kind, CLUSTER_LINK_PING);
    assert_int_equal(out.msg.u.ping.seq, 9);
    assert_int_equal(out.msg.u.ping.applied_index, 77);
    assert_string_equal(out.msg.u.ping.link_url, "tcp://127.0.0.1:7420");
    cluster_msg_link_env_fini(&out);

    in.msg.u.ping.link_url = NULL;
    assert_int_equal(cluster_msg_link_encode(&in, 4096, &buf, &n), 0);
    assert_int_equal(cluster_msg_link_decode(buf, n, 4096, &out), 0);
    free(buf);
    assert_null(out.msg.u.ping.link_url);
    cluster_msg_link_env_fini(&out);
}

int
main(void)
{
    /* As kumod's main does: a peer closing under a write is an error
     * code, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
#define T(f)                                                                   \
    cmocka_unit_test_setup_teardown(f, lease_test_setup, lease_test_teardown)
        T(lease_first_leader_commits_settings_and_one_owner_per_shard),
        T(lease_closed_node_goes_down_and_its_shards_fail_over),
        T(lease_returning_node_joins_then_owns_shards_again),
        T(lease_drained_node_hands_its_shards_over_without_failover),
        T(lease_unowned_counts_a_silent_owner_until_its_shard_moves),
#undef T
        cmocka_unit_test(ping_link_url_survives_the_codec),
    };
    int rv = cmocka_run_group_tests(tests, NULL, NULL);

    cluster_link_global_fini();
    return rv;
}
