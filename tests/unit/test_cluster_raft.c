/* test_cluster_raft.c - a real one-voter raft group over libuv in a temp
 * dir: readiness after the leader barrier, group commit of concurrent
 * records, replay of the log and of snapshots after restarts, refusal
 * before ready and failure of unflushed records on close. The raft
 * address is 127.0.0.1:0 (an ephemeral port, see cluster_raft.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
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
    while (!t->closed) {
        uv_run(&t->loop, UV_RUN_ONCE);
    }
}

static int
raft_test_teardown(void **state)
{
    struct raft_test *t = *state;
    char cmd[300];

    if (t->c != NULL) {
        raft_test_close(t);
    }
    int rv = uv_loop_close(&t->loop);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
    if (system(cmd) != 0) {
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
