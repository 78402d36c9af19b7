/* test_cluster_fsm.c - the deterministic FSM and its protobuf encoding,
 * driven through cluster_int.h without raft: every record kind, the FSM
 * clock, tombstones, snapshot/restore round trips, host callbacks only
 * when ready, and rejection of malformed bytes. */
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
#include "cluster_shard.h"
#include "test_fsm_util.h"

/* Fixture */

#define FSM_TEST_SHARDS 32

struct fsm_test {
    struct cluster_fsm *fsm;
    int enqueued, deferred, done;
    char last_done[33];
    int last_outcome;
    /* on_shard_owner calls: count, and the last per shard */
    int owner_changes, failovers;
    uint64_t old_owner[FSM_TEST_SHARDS], new_owner[FSM_TEST_SHARDS];
    bool failover[FSM_TEST_SHARDS];
    /* node notifier calls */
    int notified;
    uint64_t notified_id;
    char notified_url[64];
};

static int
fsm_test_setup(void **state)
{
    struct fsm_test *t = calloc(1, sizeof(*t));

    t->fsm = cluster_fsm_new();
    *state = t;
    return 0;
}

static int
fsm_test_teardown(void **state)
{
    struct fsm_test *t = *state;

    cluster_fsm_free(t->fsm);
    free(t);
    return 0;
}

/* Helpers */

static void
fsm_test_rec_enqueue(struct cluster_rec *r, int n)
{
    memset(r, 0, sizeof(*r));
    r->kind = CLUSTER_REC_ENQUEUE;
    test_fsm_id(r->id, n);
    r->queue = km_strdup("campaign:tenant@example.com");
    r->tenant = km_strdup("tenant");
    r->shard = (uint32_t)n % 64;
    r->created_ms = 1000 + n;
    r->due_ms = 2000 + n;
    r->size = 100u + (uint64_t)n;
    r->digest[0] = (uint8_t)n;
    r->digest[31] = 0xab;
    r->accepted_by = 1;
    r->n_replicas = 2;
    r->replicas = km_calloc(2, sizeof(uint64_t));
    r->replicas[0] = 1;
    r->replicas[1] = 2;
}

/* Encode one batch with malloc and apply it through the byte path. */
static void
fsm_test_apply(struct fsm_test *t, int64_t time_ms, struct cluster_rec *recs,
               size_t n)
{
    test_fsm_apply(t->fsm, time_ms, recs, n);
}

static void
fsm_test_enqueue(struct fsm_test *t, int64_t time_ms, int n)
{
    struct cluster_rec r;

    fsm_test_rec_enqueue(&r, n);
    fsm_test_apply(t, time_ms, &r, 1);
}

static void
fsm_test_done(struct fsm_test *t, int64_t time_ms, int n)
{
    struct cluster_rec r = {.kind = CLUSTER_REC_DONE,
                            .outcome = CLUSTER_DELIVERED,
                            .at_ms = time_ms};

    test_fsm_id(r.id, n);
    r.response = km_strdup("250 ok");
    fsm_test_apply(t, time_ms, &r, 1);
}

static void
fsm_test_on_enqueue(void *ctx, const struct cluster_msg *m)
{
    struct fsm_test *t = ctx;

    (void)m;
    t->enqueued++;
}

static void
fsm_test_on_deferred(void *ctx, const struct cluster_msg *m)
{
    struct fsm_test *t = ctx;

    (void)m;
    t->deferred++;
}

static void
fsm_test_on_done(void *ctx, const char *id, int outcome)
{
    struct fsm_test *t = ctx;

    t->done++;
    snprintf(t->last_done, sizeof(t->last_done), "%s", id);
    t->last_outcome = outcome;
}

static void
fsm_test_ready(struct fsm_test *t)
{
    struct cluster_host host = {.ctx = t,
                                .on_enqueue = fsm_test_on_enqueue,
                                .on_deferred = fsm_test_on_deferred,
                                .on_done = fsm_test_on_done};

    cluster_fsm_set_host(t->fsm, &host);
    cluster_fsm_set_ready(t->fsm, true);
}

/* Frame raw protobuf bytes as cluster_msg_encode_batch does. */
static size_t
fsm_test_frame(uint8_t *out, const uint8_t *pb, size_t n)
{
    static const uint8_t magic[4] = {'K', 'R', 1, 0};

    memcpy(out, magic, 4);
    out[4] = 0;
    out[5] = 0;
    out[6] = (uint8_t)(n >> 8);
    out[7] = (uint8_t)n;
    memcpy(out + 8, pb, n);
    return 8 + n;
}

static void
fsm_test_free_blobs(struct cluster_blob *blobs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(blobs[i].base);
    }
    free(blobs);
}

/* Concatenate blobs into one buffer, as raft hands restore(). */
static void *
fsm_test_join(const struct cluster_blob *blobs, size_t n, size_t *len)
{
    size_t total = 0, off = 0;

    for (size_t i = 0; i < n; i++) {
        total += blobs[i].len;
    }
    char *p = malloc(total);
    for (size_t i = 0; i < n; i++) {
        memcpy(p + off, blobs[i].base, blobs[i].len);
        off += blobs[i].len;
    }
    *len = total;
    return p;
}

static void
fsm_test_assert_same_msg(const struct cluster_fsm_msg *a,
                         const struct cluster_fsm_msg *b)
{
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a->pub.id, b->pub.id);
    assert_string_equal(a->pub.queue, b->pub.queue);
    assert_true((a->pub.tenant == NULL) == (b->pub.tenant == NULL));
    if (a->pub.tenant != NULL) {
        assert_string_equal(a->pub.tenant, b->pub.tenant);
    }
    assert_null(b->pub.campaign);
    assert_int_equal(a->pub.shard, b->pub.shard);
    assert_int_equal(a->pub.created_ms, b->pub.created_ms);
    assert_int_equal(a->pub.due_ms, b->pub.due_ms);
    assert_int_equal(a->pub.attempts, b->pub.attempts);
    assert_int_equal(a->pub.size, b->pub.size);
    assert_memory_equal(a->pub.digest, b->pub.digest, 32);
    assert_int_equal(a->n_replicas, b->n_replicas);
    assert_memory_equal(a->replicas, b->replicas,
                        a->n_replicas * sizeof(uint64_t));
    assert_true((a->last_response == NULL) == (b->last_response == NULL));
    if (a->last_response != NULL) {
        assert_string_equal(a->last_response, b->last_response);
    }
}

static void
fsm_test_on_shard_owner(void *ctx, uint32_t shard, uint64_t old_owner,
                        uint64_t new_owner, bool failover)
{
    struct fsm_test *t = ctx;

    assert_true(shard < FSM_TEST_SHARDS);
    t->owner_changes++;
    t->failovers += failover ? 1 : 0;
    t->old_owner[shard] = old_owner;
    t->new_owner[shard] = new_owner;
    t->failover[shard] = failover;
}

static void
fsm_test_ready_owners(struct fsm_test *t)
{
    struct cluster_host host = {.ctx = t,
                                .on_shard_owner = fsm_test_on_shard_owner};

    cluster_fsm_set_host(t->fsm, &host);
    cluster_fsm_set_ready(t->fsm, true);
}

static void
fsm_test_rec_settings(struct cluster_rec *r, uint32_t shards, uint32_t rf)
{
    memset(r, 0, sizeof(*r));
    r->kind = CLUSTER_REC_SETTINGS;
    r->settings.shards = shards;
    r->settings.replication_factor = rf;
    r->settings.min_replicas = rf;
    r->settings.ping_ms = 1000;
    r->settings.node_down_after_ms = 10000;
    r->settings.rebalance_after_ms = 600000;
    r->cluster_id = km_strdup("test-cluster");
}

static void
fsm_test_rec_node(struct cluster_rec *r, uint64_t id, int state)
{
    char url[64];

    memset(r, 0, sizeof(*r));
    r->kind = CLUSTER_REC_NODE_STATE;
    r->node = id;
    r->node_state = state;
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", 7000 + (int)id);
    r->link_url = km_strdup(url);
    r->raft_addr = km_strdup("127.0.0.1:1");
}

static void
fsm_test_node(struct fsm_test *t, int64_t time_ms, uint64_t id, int state)
{
    struct cluster_rec r;

    fsm_test_rec_node(&r, id, state);
    fsm_test_apply(t, time_ms, &r, 1);
}

/* Settings with FSM_TEST_SHARDS shards, replication 2, and nodes 1..3 UP,
 * in one entry as the first leader proposes them. */
static void
fsm_test_bootstrap(struct fsm_test *t)
{
    struct cluster_rec recs[4];

    fsm_test_rec_settings(&recs[0], FSM_TEST_SHARDS, 2);
    for (int i = 0; i < 3; i++) {
        fsm_test_rec_node(&recs[i + 1], (uint64_t)i + 1, CLUSTER_NODE_UP);
    }
    fsm_test_apply(t, 1000, recs, 4);
}

/* The owner of `shard` in f's map, 0 if none. */
static uint64_t
fsm_test_owner(const struct cluster_fsm *f, uint32_t shard, uint64_t *epoch)
{
    const uint64_t *list = NULL;
    size_t n = cluster_fsm_shard(f, shard, &list, epoch);

    return n > 0 ? list[0] : 0;
}

static bool
fsm_test_lists_contain(const struct cluster_fsm *f, uint32_t shard,
                       uint64_t node)
{
    const uint64_t *list = NULL;
    size_t n = cluster_fsm_shard(f, shard, &list, NULL);

    for (size_t i = 0; i < n; i++) {
        if (list[i] == node) {
            return true;
        }
    }
    return false;
}

/* Same settings, nodes, lists and epochs. */
static void
fsm_test_assert_same_cluster(const struct cluster_fsm *a,
                             const struct cluster_fsm *b)
{
    struct cluster_settings sa, sb;
    const struct cluster_fsm_node *na, *nb;

    assert_int_equal(cluster_fsm_settings(a, &sa),
                     cluster_fsm_settings(b, &sb));
    assert_memory_equal(&sa, &sb, sizeof(sa));
    size_t n = cluster_fsm_nodes(a, &na);
    assert_int_equal(cluster_fsm_nodes(b, &nb), n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(na[i].id, nb[i].id);
        assert_int_equal(na[i].state, nb[i].state);
        assert_int_equal(na[i].weight, nb[i].weight);
        assert_string_equal(na[i].link_url, nb[i].link_url);
        assert_string_equal(na[i].raft_addr, nb[i].raft_addr);
    }
    for (uint32_t s = 0; s < sa.shards; s++) {
        const uint64_t *la, *lb;
        uint64_t ea, eb;
        size_t k = cluster_fsm_shard(a, s, &la, &ea);
        assert_int_equal(cluster_fsm_shard(b, s, &lb, &eb), k);
        assert_int_equal(ea, eb);
        assert_memory_equal(la, lb, k * sizeof(*la));
    }
}

static void
fsm_test_on_node(void *ctx, const struct cluster_fsm_node *n)
{
    struct fsm_test *t = ctx;

    t->notified++;
    t->notified_id = n->id;
    snprintf(t->notified_url, sizeof(t->notified_url), "%s",
             n->link_url != NULL ? n->link_url : "");
}

/* Tests */

static void
fsm_enqueue_inserts_message_with_all_fields(void **state)
{
    struct fsm_test *t = *state;
    char id[33];

    fsm_test_enqueue(t, 5000, 7);
    test_fsm_id(id, 7);
    const struct cluster_fsm_msg *m = cluster_fsm_lookup(t->fsm, id);
    assert_non_null(m);
    assert_string_equal(m->pub.queue, "campaign:tenant@example.com");
    assert_string_equal(m->pub.tenant, "tenant");
    assert_null(m->pub.campaign);
    assert_null(m->pub.egress_pool);
    assert_int_equal(m->pub.shard, 7);
    assert_int_equal(m->pub.created_ms, 1007);
    assert_int_equal(m->pub.due_ms, 2007);
    assert_int_equal(m->pub.size, 107);
    assert_int_equal(m->pub.digest[0], 7);
    assert_int_equal(m->pub.digest[31], 0xab);
    assert_int_equal(m->n_replicas, 2);
    assert_int_equal(m->replicas[1], 2);
    assert_int_equal(cluster_fsm_count(t->fsm), 1);
}

static void
fsm_duplicate_enqueue_is_ignored(void **state)
{
    struct fsm_test *t = *state;
    struct cluster_rec r;
    char id[33];

    fsm_test_ready(t);
    fsm_test_enqueue(t, 5000, 1);
    fsm_test_rec_enqueue(&r, 1);
    r.size = 999;
    fsm_test_apply(t, 5001, &r, 1);
    test_fsm_id(id, 1);
    assert_int_equal(cluster_fsm_lookup(t->fsm, id)->pub.size, 101);
    assert_int_equal(cluster_fsm_count(t->fsm), 1);
    assert_int_equal(t->enqueued, 1);
}

static void
fsm_enqueue_after_done_is_ignored(void **state)
{
    struct fsm_test *t = *state;
    char id[33];

    fsm_test_enqueue(t, 5000, 3);
    fsm_test_done(t, 6000, 3);
    fsm_test_enqueue(t, 7000, 3);
    test_fsm_id(id, 3);
    assert_null(cluster_fsm_lookup(t->fsm, id));
    assert_true(cluster_fsm_is_tombstoned(t->fsm, id));
    assert_int_equal(cluster_fsm_count(t->fsm), 0);
}

static void
fsm_deferred_updates_due_attempts_and_response(void **state)
{
    struct fsm_test *t = *state;
    struct cluster_rec r = {
        .kind = CLUSTER_REC_DEFERRED, .attempts = 3, .due_ms = 99000};
    char id[33];

    fsm_test_ready(t);
    fsm_test_enqueue(t, 5000, 4);
    test_fsm_id(r.id, 4);
    r.response = km_strdup("451 try later \xff");
    fsm_test_apply(t, 6000, &r, 1);
    test_fsm_id(id, 4);
    const struct cluster_fsm_msg *m = cluster_fsm_lookup(t->fsm, id);
    assert_int_equal(m->pub.attempts, 3);
    assert_int_equal(m->pub.due_ms, 99000);
    /* Non-ASCII bytes are replaced so the field stays valid UTF-8. */
    assert_string_equal(m->last_response, "451 try later ?");
    assert_int_equal(t->deferred, 1);
}

static void
fsm_deferred_of_unknown_id_changes_nothing(void **state)
{
    struct fsm_test *t = *state;
    struct cluster_rec r = {.kind = CLUSTER_REC_DEFERRED, .attempts = 1};

    fsm_test_ready(t);
    test_fsm_id(r.id, 77);
    fsm_test_apply(t, 6000, &r, 1);
    assert_int_equal(cluster_fsm_count(t->fsm), 0);
    assert_int_equal(t->deferred, 0);
}

static void
fsm_done_removes_message_and_reports_outcome(void **state)
{
    struct fsm_test *t = *state;
    char id[33];

    fsm_test_ready(t);
    fsm_test_enqueue(t, 5000, 5);
    fsm_test_enqueue(t, 5000, 6);
    fsm_test_done(t, 6000, 5);
    test_fsm_id(id, 5);
    assert_null(cluster_fsm_lookup(t->fsm, id));
    assert_int_equal(cluster_fsm_count(t->fsm), 1);
    assert_int_equal(t->done, 1);
    assert_string_equal(t->last_done, id);
    assert_int_equal(t->last_outcome, CLUSTER_DELIVERED);
    assert_int_equal(cluster_fsm_tombstone_count(t->fsm), 1);
}

static void
fsm_callbacks_are_silent_until_ready(void **state)
{
    struct fsm_test *t = *state;
    struct cluster_host host = {.ctx = t,
                                .on_enqueue = fsm_test_on_enqueue,
                                .on_done = fsm_test_on_done};

    cluster_fsm_set_host(t->fsm, &host);
    fsm_test_enqueue(t, 5000, 1);
    fsm_test_done(t, 5000, 1);
    assert_int_equal(t->enqueued, 0);
    assert_int_equal(t->done, 0);
    cluster_fsm_set_ready(t->fsm, true);
    fsm_test_enqueue(t, 5000, 2);
    assert_int_equal(t->enqueued, 1);
}

static void
fsm_clock_never_goes_backwards(void **state)
{
    struct fsm_test *t = *state;

    fsm_test_enqueue(t, 10000, 1);
    assert_int_equal(cluster_fsm_time_ms(t->fsm), 10000);
    fsm_test_enqueue(t, 4000, 2); /* a new leader with a slower clock */
    assert_int_equal(cluster_fsm_time_ms(t->fsm), 10000);
    fsm_test_enqueue(t, 12000, 3);
    assert_int_equal(cluster_fsm_time_ms(t->fsm), 12000);
}

static void
fsm_tombstones_expire_after_a_day_of_fsm_time(void **state)
{
    struct fsm_test *t = *state;
    char id[33];
    const int64_t day = CLUSTER_TOMBSTONE_TTL_MS;

    fsm_test_enqueue(t, 1000, 1);
    fsm_test_done(t, 1000, 1);
    fsm_test_enqueue(t, 1000 + day, 2); /* exactly at the edge: kept */
    test_fsm_id(id, 1);
    assert_true(cluster_fsm_is_tombstoned(t->fsm, id));
    fsm_test_done(t, 2000 + day, 2); /* prunes id 1 */
    assert_false(cluster_fsm_is_tombstoned(t->fsm, id));
    assert_int_equal(cluster_fsm_tombstone_count(t->fsm), 1);
    fsm_test_enqueue(t, 2000 + day, 1); /* accepted again */
    assert_non_null(cluster_fsm_lookup(t->fsm, id));
}

static void
fsm_snapshot_restore_round_trip_gives_same_state(void **state)
{
    struct fsm_test *t = *state;
    struct cluster_fsm *copy = cluster_fsm_new();
    struct cluster_blob *blobs = NULL;
    size_t n = 0, len = 0;
    char id[33];

    for (int i = 0; i < 50; i++) {
        fsm_test_enqueue(t, 5000 + i, i);
    }
    struct cluster_rec r = {
        .kind = CLUSTER_REC_DEFERRED, .attempts = 2, .due_ms = 77};
    test_fsm_id(r.id, 10);
    r.response = km_strdup("421 busy");
    fsm_test_apply(t, 6000, &r, 1);
    for (int i = 40; i < 50; i++) {
        fsm_test_done(t, 7000, i);
    }
    /* Small chunks: the image spans several buffers. */
    assert_int_equal(cluster_fsm_snapshot(t->fsm, 7, malloc, free, &blobs, &n),
                     0);
    assert_true(n > 1);
    void *img = fsm_test_join(blobs, n, &len);
    fsm_test_free_blobs(blobs, n);
    assert_int_equal(cluster_fsm_restore(copy, img, len), 0);
    free(img);

    assert_int_equal(cluster_fsm_count(copy), 40);
    assert_int_equal(cluster_fsm_tombstone_count(copy), 10);
    assert_int_equal(cluster_fsm_time_ms(copy), 7000);
    for (int i = 0; i < 50; i++) {
        test_fsm_id(id, i);
        if (i < 40) {
            fsm_test_assert_same_msg(cluster_fsm_lookup(t->fsm, id),
                                     cluster_fsm_lookup(copy, id));
        } else {
            assert_true(cluster_fsm_is_tombstoned(copy, id));
        }
    }
    cluster_fsm_free(copy);
}

static void
fsm_restore_of_empty_snapshot_clears_state(void **state)
{
    struct fsm_test *t = *state;
    struct cluster_fsm *empty = cluster_fsm_new();
    struct cluster_blob *blobs = NULL;
    size_t n = 0, len = 0;

    assert_int_equal(cluster_fsm_snapshot(empty, 100, malloc, free, &blobs, &n),
                     0);
    assert_int_equal(n, 1);
    void *img = fsm_test_join(blobs, n, &len);
    fsm_test_free_blobs(blobs, n);
    fsm_test_enqueue(t, 5000, 1);
    fsm_test_done(t, 5000, 2);
    assert_int_equal(cluster_fsm_restore(t->fsm, img, len), 0);
    assert_int_equal(cluster_fsm_count(t->fsm), 0);
    assert_int_equal(cluster_fsm_tombstone_count(t->fsm), 0);
    assert_int_equal(cluster_fsm_time_ms(t->fsm), 0);
    free(img);
    cluster_fsm_free(empty);
}

static void
fsm_malformed_entry_is_rejected_without_change(void **state)
{
    struct fsm_test *t = *state;
    struct cluster_rec r;
    struct cluster_batch b = {.batch_time_ms = 9000, .n = 1, .recs = &r};
    void *p = NULL;
    size_t len = 0;
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x22};
    /* RaftBatch{cmds: Command{done: Done{id: 3 bytes}}}. */
    static const uint8_t short_id[] = {0x22, 0x07, 0x1a, 0x05, 0x0a,
                                       0x03, 0x01, 0x02, 0x03};
    /* A Command with no record set. */
    static const uint8_t empty_cmd[] = {0x22, 0x00};

    uint8_t framed[64];
    size_t n;

    fsm_test_enqueue(t, 5000, 1);
    assert_int_equal(cluster_fsm_apply(t->fsm, junk, sizeof(junk)),
                     KM_ECORRUPT);
    n = fsm_test_frame(framed, junk, sizeof(junk));
    assert_int_equal(cluster_fsm_apply(t->fsm, framed, n), KM_ECORRUPT);
    n = fsm_test_frame(framed, short_id, sizeof(short_id));
    assert_int_equal(cluster_fsm_apply(t->fsm, framed, n), KM_ECORRUPT);
    n = fsm_test_frame(framed, empty_cmd, sizeof(empty_cmd));
    assert_int_equal(cluster_fsm_apply(t->fsm, framed, n), KM_ECORRUPT);
    /* A length field pointing past the end. */
    n = fsm_test_frame(framed, empty_cmd, sizeof(empty_cmd));
    framed[7] = 60;
    assert_int_equal(cluster_fsm_apply(t->fsm, framed, n), KM_ECORRUPT);
    assert_int_equal(
        cluster_fsm_apply(t->fsm, junk, CLUSTER_MAX_ENTRY_BYTES + 1), KM_E2BIG);

    /* Every truncation of a valid entry either fails cleanly or decodes
     * to a well-formed prefix; none crashes. */
    fsm_test_rec_enqueue(&r, 2);
    assert_int_equal(cluster_msg_encode_batch(&b, malloc, &p, &len), 0);
    cluster_rec_fini(&r);
    for (size_t cut = 0; cut < len; cut++) {
        struct cluster_batch out;
        int rv = cluster_msg_decode_batch(p, cut, &out);
        if (rv == 0) {
            cluster_batch_fini(&out);
        } else {
            assert_int_equal(rv, KM_ECORRUPT);
        }
    }
    free(p);
    assert_int_equal(cluster_fsm_count(t->fsm), 1);
    assert_int_equal(cluster_fsm_time_ms(t->fsm), 5000);
}

static void
fsm_malformed_snapshot_keeps_old_state(void **state)
{
    struct fsm_test *t = *state;
    static const uint8_t bad_len[] = {0x00, 0x00, 0x10, 0x00, 0x10};
    static const uint8_t bad_pb[] = {0x00, 0x00, 0x00, 0x02, 0xff, 0xff};

    fsm_test_enqueue(t, 5000, 1);
    assert_int_equal(cluster_fsm_restore(t->fsm, bad_len, sizeof(bad_len)),
                     KM_ECORRUPT);
    assert_int_equal(cluster_fsm_restore(t->fsm, bad_pb, sizeof(bad_pb)),
                     KM_ECORRUPT);
    assert_int_equal(cluster_fsm_restore(t->fsm, bad_pb, 0), KM_ECORRUPT);
    assert_int_equal(cluster_fsm_count(t->fsm), 1);
}

static void
fsm_encoded_entries_are_multiples_of_8_bytes(void **state)
{
    struct cluster_rec r;
    struct cluster_batch b = {.n = 1, .recs = &r};

    (void)state;
    /* libraft 0.15 corrupts its segments with other lengths. */
    for (int i = 0; i < 16; i++) {
        void *p = NULL;
        size_t len = 0;
        memset(&r, 0, sizeof(r));
        r.kind = CLUSTER_REC_DEFERRED;
        test_fsm_id(r.id, i);
        r.response = km_strndup("4444444444444444", (size_t)i);
        assert_int_equal(cluster_msg_encode_batch(&b, malloc, &p, &len), 0);
        assert_int_equal(len % 8, 0);
        struct cluster_batch out;
        assert_int_equal(cluster_msg_decode_batch(p, len, &out), 0);
        assert_int_equal(out.n, 1);
        cluster_batch_fini(&out);
        free(p);
        cluster_rec_fini(&r);
    }
}

static void
fsm_encode_rejects_bad_records(void **state)
{
    struct cluster_rec r;
    struct cluster_batch b = {.n = 1, .recs = &r};
    void *p = NULL;
    size_t len = 0;

    (void)state;
    fsm_test_rec_enqueue(&r, 1);
    memcpy(r.id, "not-hex", 8);
    assert_int_equal(cluster_msg_encode_batch(&b, malloc, &p, &len), KM_EINVAL);
    cluster_rec_fini(&r);
    fsm_test_rec_enqueue(&r, 1);
    free(r.queue);
    r.queue = NULL;
    assert_int_equal(cluster_msg_encode_batch(&b, malloc, &p, &len), KM_EINVAL);
    cluster_rec_fini(&r);
    memset(&r, 0, sizeof(r));
    r.kind = CLUSTER_REC_DONE;
    test_fsm_id(r.id, 1);
    r.outcome = 42;
    assert_int_equal(cluster_msg_encode_batch(&b, malloc, &p, &len), KM_EINVAL);
}

static void
fsm_test_admin(struct fsm_test *t, int64_t time_ms, const char *id,
               int64_t expires_ms, bool cancel)
{
    struct cluster_rec r = {.kind = CLUSTER_REC_ADMIN,
                            .admin_kind = 1,
                            .expires_ms = expires_ms,
                            .admin_cancel = cancel};

    snprintf(r.admin_id, sizeof(r.admin_id), "%s", id);
    r.admin_json = km_strdup("{\"domain\":\"example.test\",\"reason\":\"r\"}");
    fsm_test_apply(t, time_ms, &r, 1);
}

static bool
fsm_test_find_admin(void *arg, const struct cluster_admin_rule *r)
{
    const struct cluster_admin_rule **out = arg;

    *out = r;
    return false;
}

static void
admin_rule_is_kept_until_cancelled(void **state)
{
    struct fsm_test *t = *state;
    const struct cluster_admin_rule *r = NULL;

    fsm_test_admin(t, 1000, "11111111-2222-4333-8444-555555555555", 100000,
                   false);
    assert_int_equal(cluster_fsm_admin_count(t->fsm), 1);
    cluster_fsm_foreach_admin(t->fsm, fsm_test_find_admin, &r);
    assert_non_null(r);
    assert_string_equal(r->id, "11111111-2222-4333-8444-555555555555");
    assert_int_equal(r->kind, 1);
    assert_int_equal(r->expires_ms, 100000);
    assert_non_null(strstr(r->json, "example.test"));
    fsm_test_admin(t, 2000, "11111111-2222-4333-8444-555555555555", 100000,
                   true);
    assert_int_equal(cluster_fsm_admin_count(t->fsm), 0);
}

static void
admin_rule_expires_in_fsm_time_not_wall_time(void **state)
{
    struct fsm_test *t = *state;

    fsm_test_admin(t, 1000, "a-rule", 5000, false);
    assert_int_equal(cluster_fsm_admin_count(t->fsm), 1);
    /* Any batch stamped at or after the expiry drops it on every node. */
    fsm_test_enqueue(t, 5000, 1);
    assert_int_equal(cluster_fsm_admin_count(t->fsm), 0);
    /* A rule already expired when applied is never added. */
    fsm_test_admin(t, 6000, "late-rule", 5500, false);
    assert_int_equal(cluster_fsm_admin_count(t->fsm), 0);
}

static void
admin_rule_survives_snapshot_and_restore(void **state)
{
    struct fsm_test *t = *state;
    struct cluster_blob *blobs = NULL;
    const struct cluster_admin_rule *r = NULL;
    size_t n = 0, len = 0;

    fsm_test_admin(t, 1000, "snap-rule", 900000, false);
    fsm_test_enqueue(t, 1000, 7);
    assert_int_equal(cluster_fsm_snapshot(t->fsm, 4, malloc, free, &blobs, &n),
                     0);
    void *img = fsm_test_join(blobs, n, &len);
    fsm_test_free_blobs(blobs, n);
    struct cluster_fsm *back = cluster_fsm_new();
    assert_int_equal(cluster_fsm_restore(back, img, len), 0);
    free(img);
    assert_int_equal(cluster_fsm_admin_count(back), 1);
    cluster_fsm_foreach_admin(back, fsm_test_find_admin, &r);
    assert_string_equal(r->id, "snap-rule");
    assert_int_equal(r->expires_ms, 900000);
    assert_int_equal(cluster_fsm_count(back), 1);
    cluster_fsm_free(back);
}

static void
shard_map_is_empty_until_settings_are_committed(void **state)
{
    struct fsm_test *t = *state;
    struct cluster_settings st;
    const uint64_t *list = NULL;

    fsm_test_node(t, 1000, 1, CLUSTER_NODE_UP);
    assert_false(cluster_fsm_settings(t->fsm, &st));
    assert_int_equal(cluster_fsm_shard(t->fsm, 0, &list, NULL), 0);
}

static void
shard_map_ranks_up_nodes_by_weighted_hrw(void **state)
{
    struct fsm_test *t = *state;
    struct cluster_shard_node nodes[3] = {
        {.id = 1, .weight = 1, .eligible = true},
        {.id = 2, .weight = 1, .eligible = true},
        {.id = 3, .weight = 1, .eligible = true},
    };
    struct cluster_settings st;

    fsm_test_bootstrap(t);
    assert_true(cluster_fsm_settings(t->fsm, &st));
    assert_int_equal(st.shards, FSM_TEST_SHARDS);
    assert_int_equal(st.replication_factor, 2);
    assert_int_equal(st.rebalance_after_ms, 600000);
    int owned[4] = {0};
    for (uint32_t s = 0; s < FSM_TEST_SHARDS; s++) {
        uint64_t want[2], epoch = 0;
        const uint64_t *list = NULL;
        assert_int_equal(cluster_shard_rank(s, nodes, 3, want, 2), 2);
        assert_int_equal(cluster_fsm_shard(t->fsm, s, &list, &epoch), 2);
        assert_memory_equal(list, want, sizeof(want));
        assert_int_equal(epoch, 1);
        owned[list[0]]++;
    }
    /* Every node owns some of 32 shards. */
    assert_true(owned[1] > 0 && owned[2] > 0 && owned[3] > 0);
}

static void
shard_owner_callbacks_are_silent_until_ready(void **state)
{
    struct fsm_test *t = *state;
    struct cluster_host host = {.ctx = t,
                                .on_shard_owner = fsm_test_on_shard_owner};

    cluster_fsm_set_host(t->fsm, &host);
    fsm_test_bootstrap(t);
    assert_int_equal(t->owner_changes, 0);
    cluster_fsm_set_ready(t->fsm, true);
    fsm_test_node(t, 2000, 4, CLUSTER_NODE_UP);
    assert_true(t->owner_changes > 0);
}

static void
node_down_moves_its_shards_to_the_next_replica_as_failover(void **state)
{
    struct fsm_test *t = *state;
    uint64_t before[FSM_TEST_SHARDS], second[FSM_TEST_SHARDS];
    bool had2[FSM_TEST_SHARDS];
    int owned_by_2 = 0;

    fsm_test_bootstrap(t);
    for (uint32_t s = 0; s < FSM_TEST_SHARDS; s++) {
        const uint64_t *list = NULL;
        cluster_fsm_shard(t->fsm, s, &list, NULL);
        before[s] = list[0];
        second[s] = list[1];
        had2[s] = fsm_test_lists_contain(t->fsm, s, 2);
        owned_by_2 += list[0] == 2 ? 1 : 0;
    }
    assert_true(owned_by_2 > 0);
    fsm_test_ready_owners(t);
    fsm_test_node(t, 2000, 2, CLUSTER_NODE_DOWN);

    assert_int_equal(t->owner_changes, owned_by_2);
    assert_int_equal(t->failovers, owned_by_2);
    for (uint32_t s = 0; s < FSM_TEST_SHARDS; s++) {
        uint64_t epoch = 0;
        uint64_t owner = fsm_test_owner(t->fsm, s, &epoch);
        assert_int_not_equal(owner, 2);
        assert_false(fsm_test_lists_contain(t->fsm, s, 2));
        /* A list that held node 2 changed: new epoch; others kept. */
        assert_int_equal(epoch, had2[s] ? 2 : 1);
        if (before[s] == 2) {
            assert_int_equal(owner, second[s]);
            assert_int_equal(t->old_owner[s], 2);
            assert_int_equal(t->new_owner[s], owner);
            assert_true(t->failover[s]);
        } else {
            assert_int_equal(owner, before[s]);
        }
    }
}

static void
joining_node_owns_nothing_until_up_and_takes_shards_without_failover(
    void **state)
{
    struct fsm_test *t = *state;

    fsm_test_bootstrap(t);
    fsm_test_ready_owners(t);
    fsm_test_node(t, 2000, 4, CLUSTER_NODE_JOINING);
    assert_int_equal(t->owner_changes, 0);
    for (uint32_t s = 0; s < FSM_TEST_SHARDS; s++) {
        uint64_t epoch = 0;
        fsm_test_owner(t->fsm, s, &epoch);
        assert_false(fsm_test_lists_contain(t->fsm, s, 4));
        assert_int_equal(epoch, 1);
    }
    fsm_test_node(t, 3000, 4, CLUSTER_NODE_UP);
    assert_true(t->owner_changes > 0);
    assert_int_equal(t->failovers, 0);
    for (uint32_t s = 0; s < FSM_TEST_SHARDS; s++) {
        if (t->new_owner[s] != 0) {
            assert_int_equal(t->new_owner[s], 4);
            assert_int_equal(fsm_test_owner(t->fsm, s, NULL), 4);
        }
    }
    /* Draining: node 4 gives its shards back, not as a failover. */
    int before = t->owner_changes;
    fsm_test_node(t, 4000, 4, CLUSTER_NODE_DRAINING);
    assert_true(t->owner_changes > before);
    assert_int_equal(t->failovers, 0);
    for (uint32_t s = 0; s < FSM_TEST_SHARDS; s++) {
        assert_false(fsm_test_lists_contain(t->fsm, s, 4));
    }
}

static void
two_fsms_fed_the_same_entries_agree(void **state)
{
    struct fsm_test *t = *state;
    struct fsm_test other = {.fsm = cluster_fsm_new()};

    for (int round = 0; round < 2; round++) {
        struct fsm_test *x = round == 0 ? t : &other;
        fsm_test_bootstrap(x);
        fsm_test_node(x, 2000, 5, CLUSTER_NODE_UP);
        fsm_test_node(x, 3000, 1, CLUSTER_NODE_DOWN);
        fsm_test_node(x, 4000, 1, CLUSTER_NODE_JOINING);
        fsm_test_node(x, 5000, 3, CLUSTER_NODE_REMOVED);
        fsm_test_node(x, 6000, 1, CLUSTER_NODE_UP);
    }
    fsm_test_assert_same_cluster(t->fsm, other.fsm);
    cluster_fsm_free(other.fsm);
}

static void
snapshot_round_trip_keeps_settings_nodes_and_map(void **state)
{
    struct fsm_test *t = *state;
    struct cluster_fsm *copy = cluster_fsm_new();
    struct cluster_blob *blobs = NULL;
    size_t n = 0, len = 0;

    fsm_test_bootstrap(t);
    fsm_test_node(t, 2000, 2, CLUSTER_NODE_DOWN);
    fsm_test_enqueue(t, 2500, 1);
    assert_int_equal(cluster_fsm_snapshot(t->fsm, 4, malloc, free, &blobs, &n),
                     0);
    void *img = fsm_test_join(blobs, n, &len);
    fsm_test_free_blobs(blobs, n);
    cluster_fsm_set_node_notify(copy, fsm_test_on_node, t);
    assert_int_equal(cluster_fsm_restore(copy, img, len), 0);
    free(img);
    fsm_test_assert_same_cluster(t->fsm, copy);
    assert_int_equal(cluster_fsm_count(copy), 1);
    /* The restored node learns every node's link url. */
    assert_int_equal(t->notified, 3);

    /* Both continue alike: epochs keep counting from the image. */
    struct fsm_test other = {.fsm = copy};
    fsm_test_node(t, 3000, 2, CLUSTER_NODE_UP);
    fsm_test_node(&other, 3000, 2, CLUSTER_NODE_UP);
    fsm_test_assert_same_cluster(t->fsm, copy);
    uint64_t epoch = 0;
    for (uint32_t s = 0; s < FSM_TEST_SHARDS; s++) {
        if (fsm_test_lists_contain(copy, s, 2)) {
            fsm_test_owner(copy, s, &epoch);
            assert_int_equal(epoch, 3);
        }
    }
    cluster_fsm_free(copy);
}

static void
node_state_tells_the_notifier_its_link_url(void **state)
{
    struct fsm_test *t = *state;

    cluster_fsm_set_node_notify(t->fsm, fsm_test_on_node, t);
    fsm_test_node(t, 1000, 7, CLUSTER_NODE_JOINING);
    assert_int_equal(t->notified, 1);
    assert_int_equal(t->notified_id, 7);
    assert_string_equal(t->notified_url, "tcp://127.0.0.1:7007");

    /* A NodeState without addresses keeps the known ones. */
    struct cluster_rec r = {.kind = CLUSTER_REC_NODE_STATE,
                            .node = 7,
                            .node_state = CLUSTER_NODE_UP};
    fsm_test_apply(t, 2000, &r, 1);
    const struct cluster_fsm_node *n = cluster_fsm_node(t->fsm, 7);
    assert_non_null(n);
    assert_int_equal(n->state, CLUSTER_NODE_UP);
    assert_int_equal(n->weight, 1);
    assert_string_equal(n->link_url, "tcp://127.0.0.1:7007");
    assert_string_equal(t->notified_url, "tcp://127.0.0.1:7007");
}

static void
enqueue_keeps_shard_epoch_and_replicas_in_the_public_view(void **state)
{
    struct fsm_test *t = *state;
    struct cluster_rec r;
    char id[33];

    fsm_test_rec_enqueue(&r, 3);
    r.shard_epoch = 9;
    fsm_test_apply(t, 1000, &r, 1);
    test_fsm_id(id, 3);
    const struct cluster_fsm_msg *m = cluster_fsm_lookup(t->fsm, id);
    assert_non_null(m);
    assert_int_equal(m->pub.shard_epoch, 9);
    assert_int_equal(m->pub.n_replicas, 2);
    assert_int_equal(m->pub.replicas[0], 1);
    assert_int_equal(m->pub.replicas[1], 2);
}

static void
deferred_from_an_older_shard_epoch_is_ignored(void **state)
{
    struct fsm_test *t = *state;
    char id[33];

    fsm_test_bootstrap(t);
    fsm_test_enqueue(t, 1500, 4); /* shard 4 */
    fsm_test_node(t, 2000, fsm_test_owner(t->fsm, 4, NULL), CLUSTER_NODE_DOWN);
    uint64_t epoch = 0;
    fsm_test_owner(t->fsm, 4, &epoch);
    assert_int_equal(epoch, 2);

    struct cluster_rec r = {.kind = CLUSTER_REC_DEFERRED,
                            .attempts = 1,
                            .due_ms = 99,
                            .shard_epoch = 1};
    test_fsm_id(r.id, 4);
    fsm_test_apply(t, 3000, &r, 1);
    test_fsm_id(id, 4);
    assert_int_equal(cluster_fsm_lookup(t->fsm, id)->pub.attempts, 0);

    struct cluster_rec cur = {.kind = CLUSTER_REC_DEFERRED,
                              .attempts = 1,
                              .due_ms = 99,
                              .shard_epoch = 2};
    test_fsm_id(cur.id, 4);
    fsm_test_apply(t, 3000, &cur, 1);
    assert_int_equal(cluster_fsm_lookup(t->fsm, id)->pub.attempts, 1);
}

static void
encode_rejects_bad_settings_and_node_states(void **state)
{
    struct cluster_rec r;

    (void)state;
    fsm_test_rec_node(&r, 0, CLUSTER_NODE_UP);
    assert_int_equal(cluster_msg_check_rec(&r), KM_EINVAL);
    cluster_rec_fini(&r);
    fsm_test_rec_node(&r, 1, 99);
    assert_int_equal(cluster_msg_check_rec(&r), KM_EINVAL);
    cluster_rec_fini(&r);
    fsm_test_rec_settings(&r, CLUSTER_MAX_SHARDS + 1, 2);
    assert_int_equal(cluster_msg_check_rec(&r), KM_EINVAL);
    cluster_rec_fini(&r);
    fsm_test_rec_settings(&r, 64, 2);
    assert_int_equal(cluster_msg_check_rec(&r), 0);
    cluster_rec_fini(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f)                                                                   \
    cmocka_unit_test_setup_teardown(f, fsm_test_setup, fsm_test_teardown)
        T(admin_rule_is_kept_until_cancelled),
        T(admin_rule_expires_in_fsm_time_not_wall_time),
        T(admin_rule_survives_snapshot_and_restore),
        T(fsm_enqueue_inserts_message_with_all_fields),
        T(fsm_duplicate_enqueue_is_ignored),
        T(fsm_enqueue_after_done_is_ignored),
        T(fsm_deferred_updates_due_attempts_and_response),
        T(fsm_deferred_of_unknown_id_changes_nothing),
        T(fsm_done_removes_message_and_reports_outcome),
        T(fsm_callbacks_are_silent_until_ready),
        T(fsm_clock_never_goes_backwards),
        T(fsm_tombstones_expire_after_a_day_of_fsm_time),
        T(fsm_snapshot_restore_round_trip_gives_same_state),
        T(fsm_restore_of_empty_snapshot_clears_state),
        T(fsm_malformed_entry_is_rejected_without_change),
        T(fsm_malformed_snapshot_keeps_old_state),
        T(fsm_encoded_entries_are_multiples_of_8_bytes),
        T(fsm_encode_rejects_bad_records),
        T(shard_map_is_empty_until_settings_are_committed),
        T(shard_map_ranks_up_nodes_by_weighted_hrw),
        T(shard_owner_callbacks_are_silent_until_ready),
        T(node_down_moves_its_shards_to_the_next_replica_as_failover),
        T(joining_node_owns_nothing_until_up_and_takes_shards_without_failover),
        T(two_fsms_fed_the_same_entries_agree),
        T(snapshot_round_trip_keeps_settings_nodes_and_map),
        T(node_state_tells_the_notifier_its_link_url),
        T(enqueue_keeps_shard_epoch_and_replicas_in_the_public_view),
        T(deferred_from_an_older_shard_epoch_is_ignored),
        T(encode_rejects_bad_settings_and_node_states),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
