/* test_cluster_throttle.c - the FSM side of cluster-wide throttles
 * (CLUSTER.md §4.7), driven through cluster_int.h without raft:
 * ThrottleDefine and ThrottleGrant records through the byte path, grants
 * never above the limit in a window across nodes, windows aligned on FSM
 * time and reset by a new one, idempotent defines, determinism, snapshot
 * round trips, and rejection of bad records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/km.h"
#include "cluster_core.h"
#include "cluster_int.h"
#include "test_fsm_util.h"

/* Fixture */

#define THR_KEY    "mmr:src->mx.test@smtp_client"
#define THR_PERIOD 60000
#define THR_T0     (1000LL * THR_PERIOD + 1234) /* inside window 1000 */

struct thr_test {
    struct cluster_fsm *fsm;
};

static int
thr_test_setup(void **state)
{
    struct thr_test *t = calloc(1, sizeof(*t));

    t->fsm = cluster_fsm_new();
    *state = t;
    return 0;
}

static int
thr_test_teardown(void **state)
{
    struct thr_test *t = *state;

    cluster_fsm_free(t->fsm);
    free(t);
    return 0;
}

/* Helpers */

/* Encode one batch and apply it to f through the byte path; the records
 * are finalised. */
static void
thr_test_apply(struct cluster_fsm *f, int64_t time_ms, struct cluster_rec *recs,
               size_t n)
{
    test_fsm_apply(f, time_ms, recs, n);
}

static void
thr_test_define(struct cluster_fsm *f, int64_t time_ms, const char *key,
                uint64_t limit, uint64_t period_ms)
{
    struct cluster_rec r = {.kind = CLUSTER_REC_THROTTLE_DEFINE,
                            .limit = limit,
                            .period_ms = period_ms};

    r.throttle_key = km_strdup(key);
    thr_test_apply(f, time_ms, &r, 1);
}

static void
thr_test_grant(struct cluster_fsm *f, int64_t time_ms, const char *key,
               uint64_t node, uint64_t want)
{
    struct cluster_rec r = {
        .kind = CLUSTER_REC_THROTTLE_GRANT, .node = node, .want = want};

    r.throttle_key = km_strdup(key);
    thr_test_apply(f, time_ms, &r, 1);
}

static uint64_t
thr_test_tokens(struct cluster_fsm *f, const char *key, uint64_t node)
{
    const struct cluster_throttle_win *w = cluster_fsm_throttle(f, key);

    assert_non_null(w);
    return cluster_throttle_win_tokens(w, node);
}

/* Snapshot f and restore the image into a new FSM (the caller owns it). */
static struct cluster_fsm *
thr_test_copy(const struct cluster_fsm *f)
{
    struct cluster_blob *blobs = NULL;
    size_t n = 0, total = 0, off = 0;

    assert_int_equal(cluster_fsm_snapshot(f, 3, malloc, free, &blobs, &n), 0);
    for (size_t i = 0; i < n; i++) {
        total += blobs[i].len;
    }
    char *img = malloc(total);
    for (size_t i = 0; i < n; i++) {
        memcpy(img + off, blobs[i].base, blobs[i].len);
        off += blobs[i].len;
        free(blobs[i].base);
    }
    free(blobs);
    struct cluster_fsm *copy = cluster_fsm_new();
    assert_int_equal(cluster_fsm_restore(copy, img, total), 0);
    free(img);
    return copy;
}

static void
thr_test_assert_same_window(const struct cluster_throttle_win *a,
                            const struct cluster_throttle_win *b)
{
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a->key, b->key);
    assert_int_equal(a->limit, b->limit);
    assert_int_equal(a->period_ms, b->period_ms);
    assert_int_equal(a->window_start_ms, b->window_start_ms);
    assert_int_equal(a->granted, b->granted);
    assert_int_equal(a->n_grants, b->n_grants);
    for (size_t i = 0; i < a->n_grants; i++) {
        assert_int_equal(cluster_throttle_win_tokens(b, a->grants[i].node),
                         a->grants[i].tokens);
    }
}

/* Tests */

static void
window_start_is_fsm_time_floored_to_the_period(void **state)
{
    (void)state;
    assert_int_equal(cluster_throttle_window_of(THR_T0, THR_PERIOD),
                     1000LL * THR_PERIOD);
    assert_int_equal(cluster_throttle_window_of(120000, 60000), 120000);
    assert_int_equal(cluster_throttle_window_of(119999, 60000), 60000);
    assert_int_equal(cluster_throttle_window_of(0, 60000), 0);
}

static void
define_creates_a_window_aligned_on_fsm_time(void **state)
{
    struct thr_test *t = *state;

    assert_null(cluster_fsm_throttle(t->fsm, THR_KEY));
    thr_test_define(t->fsm, THR_T0, THR_KEY, 6, THR_PERIOD);
    const struct cluster_throttle_win *w =
        cluster_fsm_throttle(t->fsm, THR_KEY);
    assert_non_null(w);
    assert_int_equal(w->limit, 6);
    assert_int_equal(w->period_ms, THR_PERIOD);
    assert_int_equal(w->window_start_ms, 1000LL * THR_PERIOD);
    assert_int_equal(w->granted, 0);
}

static void
grants_across_nodes_never_exceed_the_limit_in_a_window(void **state)
{
    struct thr_test *t = *state;

    thr_test_define(t->fsm, THR_T0, THR_KEY, 6, THR_PERIOD);
    /* Three nodes asking 4 each, again and again, within one window. */
    for (int round = 0; round < 3; round++) {
        for (uint64_t node = 1; node <= 3; node++) {
            thr_test_grant(t->fsm, THR_T0 + round * 1000 + (int64_t)node,
                           THR_KEY, node, 4);
        }
    }
    assert_int_equal(thr_test_tokens(t->fsm, THR_KEY, 1), 4);
    assert_int_equal(thr_test_tokens(t->fsm, THR_KEY, 2), 2);
    assert_int_equal(thr_test_tokens(t->fsm, THR_KEY, 3), 0);
    assert_int_equal(cluster_fsm_throttle(t->fsm, THR_KEY)->granted, 6);
}

static void
a_new_window_resets_the_grants(void **state)
{
    struct thr_test *t = *state;

    thr_test_define(t->fsm, THR_T0, THR_KEY, 6, THR_PERIOD);
    thr_test_grant(t->fsm, THR_T0, THR_KEY, 1, 6);
    thr_test_grant(t->fsm, THR_T0 + 10, THR_KEY, 2, 6);
    assert_int_equal(thr_test_tokens(t->fsm, THR_KEY, 1), 6);
    assert_int_equal(thr_test_tokens(t->fsm, THR_KEY, 2), 0);

    /* The next window, in FSM time: node 2 gets its share, node 1's old
     * tokens are gone. */
    thr_test_grant(t->fsm, THR_T0 + THR_PERIOD, THR_KEY, 2, 4);
    const struct cluster_throttle_win *w =
        cluster_fsm_throttle(t->fsm, THR_KEY);
    assert_int_equal(w->window_start_ms, 1001LL * THR_PERIOD);
    assert_int_equal(thr_test_tokens(t->fsm, THR_KEY, 1), 0);
    assert_int_equal(thr_test_tokens(t->fsm, THR_KEY, 2), 4);
    assert_int_equal(w->granted, 4);
}

static void
late_batch_time_stays_in_the_current_window(void **state)
{
    struct thr_test *t = *state;

    thr_test_define(t->fsm, THR_T0, THR_KEY, 6, THR_PERIOD);
    thr_test_grant(t->fsm, THR_T0 + THR_PERIOD, THR_KEY, 1, 6);
    /* A batch stamped earlier (another leader's clock) cannot reopen the
     * old window: the FSM clock never goes backwards. */
    thr_test_grant(t->fsm, THR_T0, THR_KEY, 2, 6);
    assert_int_equal(thr_test_tokens(t->fsm, THR_KEY, 2), 0);
    assert_int_equal(cluster_fsm_throttle(t->fsm, THR_KEY)->granted, 6);
}

static void
same_define_changes_nothing_and_new_period_starts_a_window(void **state)
{
    struct thr_test *t = *state;

    thr_test_define(t->fsm, THR_T0, THR_KEY, 6, THR_PERIOD);
    thr_test_grant(t->fsm, THR_T0, THR_KEY, 1, 3);
    thr_test_define(t->fsm, THR_T0 + 5, THR_KEY, 6, THR_PERIOD);
    assert_int_equal(thr_test_tokens(t->fsm, THR_KEY, 1), 3);

    /* A new limit keeps the window and its grants. */
    thr_test_define(t->fsm, THR_T0 + 6, THR_KEY, 4, THR_PERIOD);
    assert_int_equal(cluster_fsm_throttle(t->fsm, THR_KEY)->limit, 4);
    assert_int_equal(thr_test_tokens(t->fsm, THR_KEY, 1), 3);
    thr_test_grant(t->fsm, THR_T0 + 7, THR_KEY, 2, 5);
    assert_int_equal(thr_test_tokens(t->fsm, THR_KEY, 2), 1);

    /* A new period starts a fresh window. */
    thr_test_define(t->fsm, THR_T0 + 8, THR_KEY, 4, 1000);
    const struct cluster_throttle_win *w =
        cluster_fsm_throttle(t->fsm, THR_KEY);
    assert_int_equal(w->period_ms, 1000);
    assert_int_equal(w->granted, 0);
    assert_int_equal(w->window_start_ms, THR_T0 + 8 - (THR_T0 + 8) % 1000);
}

static void
grant_for_an_unknown_key_grants_nothing(void **state)
{
    struct thr_test *t = *state;

    thr_test_grant(t->fsm, THR_T0, THR_KEY, 1, 3);
    assert_null(cluster_fsm_throttle(t->fsm, THR_KEY));
}

static void
two_fsms_fed_the_same_entries_grant_the_same(void **state)
{
    struct thr_test *t = *state;
    struct cluster_fsm *other = cluster_fsm_new();
    struct cluster_fsm *fsms[2] = {t->fsm, other};
    uint64_t seed = 7;

    for (int f = 0; f < 2; f++) {
        seed = 7;
        thr_test_define(fsms[f], THR_T0, THR_KEY, 10, THR_PERIOD);
        thr_test_define(fsms[f], THR_T0, "other", 3, 1000);
        for (int i = 0; i < 200; i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            uint64_t node = 1 + (seed >> 33) % 3;
            uint64_t want = 1 + (seed >> 40) % 4;
            const char *key = (seed >> 50) % 2 ? THR_KEY : "other";
            thr_test_grant(fsms[f], THR_T0 + i * 997, key, node, want);
            const struct cluster_throttle_win *w =
                cluster_fsm_throttle(fsms[f], key);
            assert_true(w->granted <= w->limit);
        }
    }
    thr_test_assert_same_window(cluster_fsm_throttle(t->fsm, THR_KEY),
                                cluster_fsm_throttle(other, THR_KEY));
    thr_test_assert_same_window(cluster_fsm_throttle(t->fsm, "other"),
                                cluster_fsm_throttle(other, "other"));
    cluster_fsm_free(other);
}

static void
snapshot_round_trip_keeps_windows_and_spends_nothing_twice(void **state)
{
    struct thr_test *t = *state;

    thr_test_define(t->fsm, THR_T0, THR_KEY, 6, THR_PERIOD);
    thr_test_define(t->fsm, THR_T0, "k2", 100, 3600000);
    thr_test_grant(t->fsm, THR_T0, THR_KEY, 1, 2);
    thr_test_grant(t->fsm, THR_T0, THR_KEY, 3, 3);
    thr_test_grant(t->fsm, THR_T0, "k2", 2, 40);

    struct cluster_fsm *copy = thr_test_copy(t->fsm);
    thr_test_assert_same_window(cluster_fsm_throttle(t->fsm, THR_KEY),
                                cluster_fsm_throttle(copy, THR_KEY));
    thr_test_assert_same_window(cluster_fsm_throttle(t->fsm, "k2"),
                                cluster_fsm_throttle(copy, "k2"));
    /* The restored node cannot know what it spent of this window: it
     * counts everything as spent. */
    const struct cluster_throttle_win *w = cluster_fsm_throttle(copy, THR_KEY);
    assert_int_equal(w->local_window_ms, w->window_start_ms);
    assert_true(w->local_used >= cluster_throttle_win_tokens(w, 1));
    /* And the restored FSM keeps granting within the same limit. */
    thr_test_grant(copy, THR_T0 + 1, THR_KEY, 2, 5);
    assert_int_equal(thr_test_tokens(copy, THR_KEY, 2), 1);
    cluster_fsm_free(copy);
}

static void
encode_rejects_bad_throttle_records(void **state)
{
    (void)state;
    struct cluster_rec r;
    char long_key[CLUSTER_MAX_THROTTLE_KEY + 2];

    memset(&r, 0, sizeof(r));
    r.kind = CLUSTER_REC_THROTTLE_DEFINE;
    r.limit = 1;
    r.period_ms = 1000;
    assert_int_equal(cluster_msg_check_rec(&r), KM_EINVAL); /* no key */
    r.throttle_key = "";
    assert_int_equal(cluster_msg_check_rec(&r), KM_EINVAL);
    r.throttle_key = "k";
    assert_int_equal(cluster_msg_check_rec(&r), 0);
    r.limit = 0;
    assert_int_equal(cluster_msg_check_rec(&r), KM_EINVAL);
    r.limit = 1;
    r.period_ms = 0;
    assert_int_equal(cluster_msg_check_rec(&r), KM_EINVAL);
    memset(long_key, 'a', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    r.period_ms = 1000;
    r.throttle_key = long_key;
    assert_int_equal(cluster_msg_check_rec(&r), KM_EINVAL);

    memset(&r, 0, sizeof(r));
    r.kind = CLUSTER_REC_THROTTLE_GRANT;
    r.throttle_key = "k";
    r.node = 1;
    r.want = 1;
    assert_int_equal(cluster_msg_check_rec(&r), 0);
    r.want = 0;
    assert_int_equal(cluster_msg_check_rec(&r), KM_EINVAL);
    r.want = 1;
    r.node = 0;
    assert_int_equal(cluster_msg_check_rec(&r), KM_EINVAL);
}

static void
throttle_records_survive_the_byte_path(void **state)
{
    (void)state;
    struct cluster_rec recs[2];
    struct cluster_batch in = {.batch_time_ms = 5, .recs = recs, .n = 2};
    struct cluster_batch out;
    void *p = NULL;
    size_t len = 0;

    memset(recs, 0, sizeof(recs));
    recs[0].kind = CLUSTER_REC_THROTTLE_DEFINE;
    recs[0].throttle_key = THR_KEY;
    recs[0].limit = 100;
    recs[0].period_ms = 3600000;
    recs[1].kind = CLUSTER_REC_THROTTLE_GRANT;
    recs[1].throttle_key = THR_KEY;
    recs[1].node = 3;
    recs[1].want = 8;
    assert_int_equal(cluster_msg_encode_batch(&in, malloc, &p, &len), 0);
    assert_int_equal(cluster_msg_decode_batch(p, len, &out), 0);
    free(p);
    assert_int_equal(out.n, 2);
    assert_int_equal(out.recs[0].kind, CLUSTER_REC_THROTTLE_DEFINE);
    assert_string_equal(out.recs[0].throttle_key, THR_KEY);
    assert_int_equal(out.recs[0].limit, 100);
    assert_int_equal(out.recs[0].period_ms, 3600000);
    assert_int_equal(out.recs[1].kind, CLUSTER_REC_THROTTLE_GRANT);
    assert_string_equal(out.recs[1].throttle_key, THR_KEY);
    assert_int_equal(out.recs[1].node, 3);
    assert_int_equal(out.recs[1].want, 8);
    cluster_batch_fini(&out);
}

/* Connection slots: a key with CLUSTER_CONN_PERIOD_MS is a semaphore. */

#define CONN_KEY "cl:src->mx.test@smtp_client"

static void
thr_test_return(struct cluster_fsm *f, int64_t time_ms, const char *key,
                uint64_t node, uint64_t n)
{
    struct cluster_rec r = {
        .kind = CLUSTER_REC_THROTTLE_RETURN, .node = node, .want = n};

    r.throttle_key = km_strdup(key);
    thr_test_apply(f, time_ms, &r, 1);
}

static void
thr_test_node_state(struct cluster_fsm *f, int64_t time_ms, uint64_t node,
                    int state)
{
    struct cluster_rec r = {
        .kind = CLUSTER_REC_NODE_STATE, .node = node, .node_state = state};

    thr_test_apply(f, time_ms, &r, 1);
}

static void
conn_slots_are_held_until_returned_and_never_exceed_the_limit(void **state)
{
    struct thr_test *t = *state;
    struct cluster_fsm *f = t->fsm;

    thr_test_define(f, THR_T0, CONN_KEY, 2, CLUSTER_CONN_PERIOD_MS);
    thr_test_grant(f, THR_T0, CONN_KEY, 1, 1);
    thr_test_grant(f, THR_T0, CONN_KEY, 2, 1);
    thr_test_grant(f, THR_T0, CONN_KEY, 3, 1); /* the limit is reached */
    assert_int_equal(thr_test_tokens(f, CONN_KEY, 1), 1);
    assert_int_equal(thr_test_tokens(f, CONN_KEY, 2), 1);
    assert_int_equal(thr_test_tokens(f, CONN_KEY, 3), 0);
    /* No window ever ends: a day later the slots are still held. */
    thr_test_grant(f, THR_T0 + 86400000LL, CONN_KEY, 3, 1);
    assert_int_equal(thr_test_tokens(f, CONN_KEY, 3), 0);
    /* A returned slot can be granted again. */
    thr_test_return(f, THR_T0 + 86400000LL, CONN_KEY, 1, 1);
    assert_int_equal(thr_test_tokens(f, CONN_KEY, 1), 0);
    thr_test_grant(f, THR_T0 + 86400001LL, CONN_KEY, 3, 1);
    assert_int_equal(thr_test_tokens(f, CONN_KEY, 3), 1);
    assert_int_equal(cluster_fsm_throttle(f, CONN_KEY)->granted, 2);
    /* Returning more than is held takes back only what is held. */
    thr_test_return(f, THR_T0 + 86400002LL, CONN_KEY, 2, 5);
    assert_int_equal(thr_test_tokens(f, CONN_KEY, 2), 0);
    assert_int_equal(cluster_fsm_throttle(f, CONN_KEY)->granted, 1);
}

static void
a_down_node_loses_its_slots_but_keeps_its_rate_tokens(void **state)
{
    struct thr_test *t = *state;
    struct cluster_fsm *f = t->fsm;

    thr_test_define(f, THR_T0, CONN_KEY, 2, CLUSTER_CONN_PERIOD_MS);
    thr_test_define(f, THR_T0, THR_KEY, 10, THR_PERIOD);
    thr_test_grant(f, THR_T0, CONN_KEY, 2, 2);
    thr_test_grant(f, THR_T0, THR_KEY, 2, 4);
    thr_test_node_state(f, THR_T0, 2, CLUSTER_NODE_DOWN);
    assert_int_equal(thr_test_tokens(f, CONN_KEY, 2), 0);
    assert_int_equal(cluster_fsm_throttle(f, CONN_KEY)->granted, 0);
    /* Message tokens of this window were spent, or may still be: kept. */
    assert_int_equal(thr_test_tokens(f, THR_KEY, 2), 4);
    thr_test_grant(f, THR_T0, CONN_KEY, 1, 2);
    assert_int_equal(thr_test_tokens(f, CONN_KEY, 1), 2);
    /* And the image keeps who holds what. */
    struct cluster_fsm *copy = thr_test_copy(f);
    assert_int_equal(thr_test_tokens(copy, CONN_KEY, 1), 2);
    assert_int_equal(cluster_fsm_throttle(copy, CONN_KEY)->period_ms,
                     CLUSTER_CONN_PERIOD_MS);
    cluster_fsm_free(copy);
}

static void
return_records_survive_the_byte_path_and_bad_ones_are_refused(void **state)
{
    struct cluster_rec r = {
        .kind = CLUSTER_REC_THROTTLE_RETURN, .node = 3, .want = 2};
    struct cluster_batch b = {.proposer_node = 1, .batch_seq = 1, .n = 1};
    struct cluster_batch out;
    void *p = NULL;
    size_t len = 0;

    (void)state;
    r.throttle_key = km_strdup(CONN_KEY);
    b.recs = &r;
    assert_int_equal(cluster_msg_encode_batch(&b, malloc, &p, &len), 0);
    assert_int_equal(cluster_msg_decode_batch(p, len, &out), 0);
    assert_int_equal(out.n, 1);
    assert_int_equal(out.recs[0].kind, CLUSTER_REC_THROTTLE_RETURN);
    assert_string_equal(out.recs[0].throttle_key, CONN_KEY);
    assert_int_equal(out.recs[0].node, 3);
    assert_int_equal(out.recs[0].want, 2);
    cluster_batch_fini(&out);
    free(p);
    /* Nothing to return, or nobody returning: refused. */
    r.want = 0;
    p = NULL;
    assert_int_not_equal(cluster_msg_encode_batch(&b, malloc, &p, &len), 0);
    free(p);
    r.want = 1;
    r.node = 0;
    p = NULL;
    assert_int_not_equal(cluster_msg_encode_batch(&b, malloc, &p, &len), 0);
    free(p);
    cluster_rec_fini(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f)                                                                   \
    cmocka_unit_test_setup_teardown(f, thr_test_setup, thr_test_teardown)
        T(window_start_is_fsm_time_floored_to_the_period),
        T(define_creates_a_window_aligned_on_fsm_time),
        T(grants_across_nodes_never_exceed_the_limit_in_a_window),
        T(a_new_window_resets_the_grants),
        T(late_batch_time_stays_in_the_current_window),
        T(same_define_changes_nothing_and_new_period_starts_a_window),
        T(grant_for_an_unknown_key_grants_nothing),
        T(two_fsms_fed_the_same_entries_grant_the_same),
        T(snapshot_round_trip_keeps_windows_and_spends_nothing_twice),
        T(encode_rejects_bad_throttle_records),
        T(throttle_records_survive_the_byte_path),
        T(conn_slots_are_held_until_returned_and_never_exceed_the_limit),
        T(a_down_node_loses_its_slots_but_keeps_its_rate_tokens),
        T(return_records_survive_the_byte_path_and_bad_ones_are_refused),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
