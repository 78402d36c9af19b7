/* test_cluster_raft.c - a real one-voter raft group over libuv in a temp
 * dir: readiness after the leader barrier, group commit of concurrent
 * records, replay of the log and of snapshots after restarts, refusal
 * before ready and failure of unflushed records on close. The raft
 * address is 127.0.0.1:0 (an ephemeral port, see cluster_raft.c).
 * Also three nodes of one group in one process on one loop: election,
 * replication to every FSM, refusal on followers, and failover. */
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
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "base/km.h"
#include "base/log.h"
#include "cluster.h"

/* Fixture */

struct raft_test {
    uv_loop_t loop;
    char dir[256];
    struct cluster_config cfg;
    struct cluster *c;
    int ready;
    int fatal;
    int enqueued; /* on_enqueue callbacks */
    int committed;
    int failed;
    int last_status;
    bool closed;
};

static int
raft_test_setup(void **state)
{
    struct raft_test *t = calloc(1, sizeof(*t));
    const char *base = getenv("KUMO_TEST_TMP");

    if (base == NULL) {
        base = "/tmp";
    }
    uv_fs_t req;
    uv_fs_mkdir(NULL, &req, base, 0755, NULL);
    uv_fs_req_cleanup(&req);
    snprintf(t->dir, sizeof(t->dir), "%s/raft-XXXXXX", base);
    if (mkdtemp(t->dir) == NULL) {
        free(t);
        return -1;
    }
    uv_loop_init(&t->loop);
    t->cfg.node_id = 1;
    t->cfg.raft_dir = t->dir;
    t->cfg.raft_addr = "127.0.0.1:0";
    log_set_level(LOG_LVL_WARN);
    *state = t;
    return 0;
}

static void
raft_test_on_closed(void *arg)
{
    struct raft_test *t = arg;

    t->closed = true;
}

static void
raft_test_close(struct raft_test *t)
{
    t->closed = false;
    cluster_close(t->c, raft_test_on_closed, t);
    t->c = NULL;
    test_run_until(&t->loop, &t->closed);
}

static int
raft_test_teardown(void **state)
{
    struct raft_test *t = *state;

    if (t->c != NULL) {
        raft_test_close(t);
    }
    int rv = uv_loop_close(&t->loop);
    if (test_rm_rf(t->dir) != 0) {
        rv = -1;
    }
    free(t);
    return rv == 0 ? 0 : -1;
}

/* Helpers */

static void
raft_test_on_ready(void *ctx)
{
    struct raft_test *t = ctx;

    t->ready++;
}

static void
raft_test_on_fatal(void *ctx, int err)
{
    struct raft_test *t = ctx;

    (void)err;
    t->fatal++;
}

static void
raft_test_on_enqueue(void *ctx, const struct cluster_msg *m)
{
    struct raft_test *t = ctx;

    (void)m;
    t->enqueued++;
}

static void
raft_test_on_commit(void *arg, int status)
{
    struct raft_test *t = arg;

    t->committed++;
    t->last_status = status;
    if (status != 0) {
        t->failed++;
    }
}

static void
raft_test_run_until(struct raft_test *t, const int *counter, int n)
{
    uint64_t deadline = km_now_mono_ms() + 20000;

    while (*counter < n && km_now_mono_ms() < deadline) {
        uv_run(&t->loop, UV_RUN_ONCE);
    }
    assert_int_equal(*counter, n);
}

static void
raft_test_open(struct raft_test *t)
{
    struct cluster_host host = {.ctx = t,
                                .on_ready = raft_test_on_ready,
                                .on_fatal = raft_test_on_fatal,
                                .on_enqueue = raft_test_on_enqueue};

    t->ready = 0;
    assert_int_equal(cluster_open(&t->loop, &t->cfg, &host, &t->c), 0);
    raft_test_run_until(t, &t->ready, 1);
    assert_true(cluster_is_ready(t->c));
    assert_int_equal(t->fatal, 0);
}

static void
raft_test_id(char out[33], int n)
{
    snprintf(out, 33, "%032x", 0xa000 + n);
}

static void
raft_test_msg(struct cluster_msg *m, int n)
{
    memset(m, 0, sizeof(*m));
    raft_test_id(m->id, n);
    m->queue = "example.com";
    m->campaign = n % 2 ? "odd" : NULL;
    m->created_ms = 1700000000000 + n;
    m->size = 1000u + (uint64_t)n;
    m->digest[0] = (uint8_t)n;
}

/* Propose n Enqueue records at once and wait for all commits. */
static void
raft_test_enqueue_many(struct raft_test *t, int first, int n)
{
    struct cluster_msg m;
    int base = t->committed;

    for (int i = first; i < first + n; i++) {
        raft_test_msg(&m, i);
        assert_int_equal(cluster_enqueue(t->c, &m, raft_test_on_commit, t), 0);
    }
    raft_test_run_until(t, &t->committed, base + n);
    assert_int_equal(t->failed, 0);
}

static void
raft_test_assert_msgs(struct raft_test *t, int first, int n, bool present)
{
    char id[33];

    for (int i = first; i < first + n; i++) {
        raft_test_id(id, i);
        const struct cluster_msg *m = cluster_lookup(t->c, id);
        if (!present) {
            assert_null(m);
            continue;
        }
        assert_non_null(m);
        assert_string_equal(m->id, id);
        assert_string_equal(m->queue, "example.com");
        assert_int_equal(m->size, 1000u + (uint64_t)i);
        if (i % 2) {
            assert_string_equal(m->campaign, "odd");
        } else {
            assert_null(m->campaign);
        }
    }
}

static int
raft_test_count_snapshots(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "snapshot-", 9) == 0 &&
            strstr(e->d_name, ".meta") == NULL) {
            n++;
        }
    }
    closedir(d);
    return n;
}

/* Tests */

static void
cluster_concurrent_enqueues_share_few_raft_entries(void **state)
{
    struct raft_test *t = *state;
    struct cluster_stats st;

    raft_test_open(t);
    raft_test_enqueue_many(t, 0, 100);
    cluster_get_stats(t->c, &st);
    assert_string_equal(st.state, "leader");
    assert_int_equal(st.leader_id, 1);
    assert_int_equal(st.records_proposed, 100);
    assert_true(st.entries_proposed >= 1 && st.entries_proposed <= 5);
    assert_true(st.applied_index >= st.entries_proposed);
    assert_int_equal(st.commit_index, st.last_index);
    assert_int_equal(cluster_queued_count(t->c), 100);
    assert_int_equal(t->enqueued, 100);
    raft_test_assert_msgs(t, 0, 100, true);
}

static void
cluster_restart_replays_log_into_fsm(void **state)
{
    struct raft_test *t = *state;
    char id[33];
    int done_base;

    raft_test_open(t);
    raft_test_enqueue_many(t, 0, 100);
    raft_test_close(t);

    raft_test_open(t);
    assert_int_equal(cluster_queued_count(t->c), 100);
    raft_test_assert_msgs(t, 0, 100, true);
    done_base = t->committed;
    for (int i = 0; i < 50; i++) {
        raft_test_id(id, i);
        assert_int_equal(cluster_done(t->c, id, CLUSTER_DELIVERED, "250 ok",
                                      raft_test_on_commit, t),
                         0);
    }
    raft_test_run_until(t, &t->committed, done_base + 50);
    assert_int_equal(t->failed, 0);
    assert_int_equal(cluster_queued_count(t->c), 50);
    raft_test_close(t);

    t->enqueued = 0;
    raft_test_open(t);
    assert_int_equal(cluster_queued_count(t->c), 50);
    raft_test_assert_msgs(t, 0, 50, false);
    raft_test_assert_msgs(t, 50, 50, true);
    assert_int_equal(t->enqueued, 0); /* replay is silent */
    /* A re-proposed Enqueue of a done id stays done (tombstone). */
    raft_test_enqueue_many(t, 0, 1);
    raft_test_assert_msgs(t, 0, 1, false);
}

static void
cluster_restart_after_snapshot_keeps_state(void **state)
{
    struct raft_test *t = *state;
    char id[33];

    t->cfg.snapshot_threshold = 4;
    t->cfg.snapshot_trailing = 2;
    t->cfg.batch_max_records = 8;
    raft_test_open(t);
    for (int round = 0; round < 5; round++) {
        raft_test_enqueue_many(t, round * 20, 20);
    }
    raft_test_id(id, 7);
    int base = t->committed;
    assert_int_equal(cluster_deferred(t->c, id, 3, 1800000000000, "451 later",
                                      raft_test_on_commit, t),
                     0);
    assert_int_equal(cluster_done(t->c, id + 0, CLUSTER_BOUNCED, "550 no",
                                  raft_test_on_commit, t),
                     0);
    raft_test_run_until(t, &t->committed, base + 2);
    raft_test_id(id, 8);
    assert_int_equal(cluster_deferred(t->c, id, 3, 1800000000000, "451 later",
                                      raft_test_on_commit, t),
                     0);
    raft_test_run_until(t, &t->committed, base + 3);
    assert_int_equal(t->failed, 0);
    raft_test_close(t);
    assert_true(raft_test_count_snapshots(t->dir) >= 1);

    raft_test_open(t);
    assert_int_equal(cluster_queued_count(t->c), 99);
    raft_test_assert_msgs(t, 0, 7, true);
    raft_test_assert_msgs(t, 7, 1, false);
    raft_test_assert_msgs(t, 9, 91, true);
    const struct cluster_msg *m = cluster_lookup(t->c, id);
    assert_non_null(m);
    assert_int_equal(m->attempts, 3);
    assert_int_equal(m->due_ms, 1800000000000);
}

static void
cluster_enqueue_before_ready_is_refused(void **state)
{
    struct raft_test *t = *state;
    struct cluster_host host = {.ctx = t, .on_ready = raft_test_on_ready};
    struct cluster_msg m;

    assert_int_equal(cluster_open(&t->loop, &t->cfg, &host, &t->c), 0);
    assert_false(cluster_is_ready(t->c));
    raft_test_msg(&m, 1);
    assert_int_equal(cluster_enqueue(t->c, &m, raft_test_on_commit, t),
                     KM_ENOTLEADER);
    raft_test_run_until(t, &t->ready, 1);
    assert_int_equal(cluster_enqueue(t->c, &m, raft_test_on_commit, t), 0);
    raft_test_run_until(t, &t->committed, 1);
    assert_int_equal(t->last_status, 0);
}

static void
cluster_invalid_record_is_refused_alone(void **state)
{
    struct raft_test *t = *state;
    struct cluster_msg m;

    raft_test_open(t);
    raft_test_msg(&m, 1);
    memcpy(m.id, "zz", 2); /* not hex */
    assert_int_equal(cluster_enqueue(t->c, &m, raft_test_on_commit, t),
                     KM_EINVAL);
    assert_int_equal(cluster_done(t->c, "short", CLUSTER_DELIVERED, NULL,
                                  raft_test_on_commit, t),
                     KM_EINVAL);
    raft_test_enqueue_many(t, 2, 3);
    assert_int_equal(cluster_queued_count(t->c), 3);
}

static void
cluster_close_fails_unflushed_records(void **state)
{
    struct raft_test *t = *state;
    struct cluster_msg m;

    t->cfg.batch_max_ms = 10000; /* keep them in the batcher */
    raft_test_open(t);
    for (int i = 0; i < 5; i++) {
        raft_test_msg(&m, i);
        assert_int_equal(cluster_enqueue(t->c, &m, raft_test_on_commit, t), 0);
    }
    raft_test_close(t);
    assert_int_equal(t->committed, 5);
    assert_int_equal(t->failed, 5);
    assert_int_equal(t->last_status, KM_ECLOSING);
}

static void
cluster_bad_raft_address_fails_open_cleanly(void **state)
{
    struct raft_test *t = *state;
    struct cluster_host host = {.ctx = t};

    t->cfg.raft_addr = "not-an-address:99999";
    assert_int_not_equal(cluster_open(&t->loop, &t->cfg, &host, &t->c), 0);
    t->c = NULL;
    /* Whatever open left behind is released on the loop. */
    uv_run(&t->loop, UV_RUN_DEFAULT);
}

/* Fixture: three nodes of one group on one loop */

#define GROUP_N 3

struct group_test;

struct group_node {
    struct group_test *g;
    struct cluster *c;
    char dir[300];
    char addr[32];
    int ready;
    bool closed;
};

struct group_test {
    uv_loop_t loop;
    char base[256];
    struct cluster_peer peers[GROUP_N];
    struct group_node nodes[GROUP_N];
    int committed, failed;
};

static int
raft_group_setup(void **state)
{
    struct group_test *g = calloc(1, sizeof(*g));
    const char *base = getenv("KUMO_TEST_TMP");

    if (base == NULL) {
        base = "/tmp";
    }
    snprintf(g->base, sizeof(g->base), "%s/raftgroup-XXXXXX", base);
    if (mkdtemp(g->base) == NULL) {
        free(g);
        return -1;
    }
    uv_loop_init(&g->loop);
    for (int i = 0; i < GROUP_N; i++) {
        struct group_node *n = &g->nodes[i];
        int port = test_free_port();
        if (port < 0) {
            return -1;
        }
        n->g = g;
        n->closed = true;
        snprintf(n->dir, sizeof(n->dir), "%s/n%d/raft", g->base, i + 1);
        snprintf(n->addr, sizeof(n->addr), "127.0.0.1:%d", port);
        g->peers[i].id = (uint64_t)i + 1;
        g->peers[i].raft_addr = n->addr;
    }
    log_set_level(LOG_LVL_WARN);
    *state = g;
    return 0;
}

static void
group_test_on_closed(void *arg)
{
    struct group_node *n = arg;

    n->closed = true;
}

static void
group_test_close(struct group_node *n)
{
    n->closed = false;
    cluster_close(n->c, group_test_on_closed, n);
    n->c = NULL;
    while (!n->closed) {
        uv_run(&n->g->loop, UV_RUN_ONCE);
    }
}

static int
raft_group_teardown(void **state)
{
    struct group_test *g = *state;

    for (int i = 0; i < GROUP_N; i++) {
        if (g->nodes[i].c != NULL) {
            group_test_close(&g->nodes[i]);
        }
    }
    int rv = uv_loop_close(&g->loop);
    if (test_rm_rf(g->base) != 0) {
        rv = -1;
    }
    free(g);
    return rv == 0 ? 0 : -1;
}

/* Helpers (group) */

static void
group_test_on_ready(void *ctx)
{
    struct group_node *n = ctx;

    n->ready++;
}

static void
group_test_on_commit(void *arg, int status)
{
    struct group_test *g = arg;

    g->committed++;
    if (status != 0) {
        g->failed++;
    }
}

static void
group_test_open(struct group_node *n)
{
    struct group_test *g = n->g;
    struct cluster_config cfg = {
        .node_id = (uint64_t)(n - g->nodes) + 1,
        .raft_dir = n->dir,
        .raft_addr = n->addr,
        .election_timeout_ms = 300,
        .heartbeat_ms = 50,
        .peers = g->peers,
        .n_peers = GROUP_N,
        .bootstrap = true,
    };
    struct cluster_host host = {.ctx = n, .on_ready = group_test_on_ready};

    assert_int_equal(cluster_open(&g->loop, &cfg, &host, &n->c), 0);
    n->closed = false;
}

/* The one open node that is leader with proposals accepted, once every
 * open node agrees on it and has fired on_ready; else NULL. */
static struct group_node *
group_test_leader(struct group_test *g)
{
    struct group_node *leader = NULL;
    uint64_t leader_id = 0;

    for (int i = 0; i < GROUP_N; i++) {
        struct group_node *n = &g->nodes[i];
        struct cluster_stats st;
        if (n->c == NULL) {
            continue;
        }
        cluster_get_stats(n->c, &st);
        if (n->ready != 1 || st.leader_id == 0 ||
            (leader_id != 0 && st.leader_id != leader_id)) {
            return NULL;
        }
        leader_id = st.leader_id;
        if (strcmp(st.state, "leader") == 0) {
            if (leader != NULL || !cluster_is_ready(n->c)) {
                return NULL;
            }
            leader = n;
        }
    }
    return leader != NULL && leader_id == (uint64_t)(leader - g->nodes) + 1
               ? leader
               : NULL;
}

static struct group_node *
group_test_wait_leader(struct group_test *g)
{
    uint64_t deadline = km_now_mono_ms() + 20000;
    struct group_node *leader = NULL;

    while ((leader = group_test_leader(g)) == NULL &&
           km_now_mono_ms() < deadline) {
        uv_run(&g->loop, UV_RUN_ONCE);
    }
    assert_non_null(leader);
    return leader;
}

/* Run until every open node's FSM holds n messages. */
static void
group_test_wait_count(struct group_test *g, size_t n)
{
    uint64_t deadline = km_now_mono_ms() + 20000;
    bool all = false;

    while (!all && km_now_mono_ms() < deadline) {
        uv_run(&g->loop, UV_RUN_ONCE);
        all = true;
        for (int i = 0; i < GROUP_N; i++) {
            if (g->nodes[i].c != NULL &&
                cluster_queued_count(g->nodes[i].c) != n) {
                all = false;
            }
        }
    }
    assert_true(all);
}

static void
group_test_enqueue(struct group_test *g, struct group_node *leader, int first,
                   int n)
{
    struct cluster_msg m;
    int base = g->committed;

    for (int i = first; i < first + n; i++) {
        raft_test_msg(&m, i);
        assert_int_equal(
            cluster_enqueue(leader->c, &m, group_test_on_commit, g), 0);
    }
    uint64_t deadline = km_now_mono_ms() + 20000;
    while (g->committed < base + n && km_now_mono_ms() < deadline) {
        uv_run(&g->loop, UV_RUN_ONCE);
    }
    assert_int_equal(g->committed, base + n);
    assert_int_equal(g->failed, 0);
}

/* Tests (group) */

static void
cluster_three_nodes_elect_one_leader_and_replicate(void **state)
{
    struct group_test *g = *state;
    struct cluster_msg m;

    for (int i = 0; i < GROUP_N; i++) {
        group_test_open(&g->nodes[i]);
    }
    struct group_node *leader = group_test_wait_leader(g);
    group_test_enqueue(g, leader, 0, 10);
    group_test_wait_count(g, 10);

    /* Followers are ready (on_ready fired) but do not propose. */
    for (int i = 0; i < GROUP_N; i++) {
        struct group_node *n = &g->nodes[i];
        if (n == leader) {
            continue;
        }
        assert_int_equal(n->ready, 1);
        assert_false(cluster_is_ready(n->c));
        raft_test_msg(&m, 100);
        assert_int_equal(cluster_enqueue(n->c, &m, group_test_on_commit, g),
                         KM_ENOTLEADER);
    }

    /* The configuration lists all three voters on every node. */
    for (int i = 0; i < GROUP_N; i++) {
        struct cluster_stats st;
        cluster_get_stats(g->nodes[i].c, &st);
        assert_int_equal(st.leader_id, (uint64_t)(leader - g->nodes) + 1);
    }
}

static bool
group_test_count_member(void *arg, const struct cluster_member *m)
{
    int *n = arg;

    if (m->voter && m->raft_addr != NULL &&
        strncmp(m->raft_addr, "127.0.0.1:", 10) == 0) {
        (*n)++;
    }
    return true;
}

static void
cluster_three_nodes_list_every_voter(void **state)
{
    struct group_test *g = *state;

    for (int i = 0; i < GROUP_N; i++) {
        group_test_open(&g->nodes[i]);
    }
    (void)group_test_wait_leader(g);
    for (int i = 0; i < GROUP_N; i++) {
        int voters = 0;
        cluster_foreach_member(g->nodes[i].c, group_test_count_member, &voters);
        assert_int_equal(voters, GROUP_N);
    }
}

static void
cluster_three_nodes_fail_over_when_leader_closes(void **state)
{
    struct group_test *g = *state;

    for (int i = 0; i < GROUP_N; i++) {
        group_test_open(&g->nodes[i]);
    }
    struct group_node *old = group_test_wait_leader(g);
    group_test_enqueue(g, old, 0, 5);
    group_test_wait_count(g, 5);

    group_test_close(old);
    struct group_node *leader = group_test_wait_leader(g);
    assert_ptr_not_equal(leader, old);
    /* Two of three still commit, and both FSMs apply it. */
    group_test_enqueue(g, leader, 5, 3);
    group_test_wait_count(g, 8);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f)                                                                   \
    cmocka_unit_test_setup_teardown(f, raft_test_setup, raft_test_teardown)
        T(cluster_concurrent_enqueues_share_few_raft_entries),
        T(cluster_restart_replays_log_into_fsm),
        T(cluster_restart_after_snapshot_keeps_state),
        T(cluster_enqueue_before_ready_is_refused),
        T(cluster_invalid_record_is_refused_alone),
        T(cluster_close_fails_unflushed_records),
        T(cluster_bad_raft_address_fails_open_cleanly),
#undef T
#define G(f)                                                                   \
    cmocka_unit_test_setup_teardown(f, raft_group_setup, raft_group_teardown)
        G(cluster_three_nodes_elect_one_leader_and_replicate),
        G(cluster_three_nodes_list_every_voter),
        G(cluster_three_nodes_fail_over_when_leader_closes),
#undef G
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
