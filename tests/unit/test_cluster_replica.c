/* test_cluster_replica.c - ReplicaUpdate records (CLUSTER.md §4.6, §5)
 * driven through cluster_int.h without raft: adding and removing a node
 * in the replica lists of live messages (idempotent, unknown ids and other
 * shards ignored, the last copy kept), lists surviving a snapshot, the
 * under-replicated count against min(R, UP nodes), and the codec's limits
 * on encode and decode. */
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

#define REPL_TEST_SHARD 5

struct repl_test {
    struct cluster_fsm *fsm;
};

static int
repl_test_setup(void **state)
{
    struct repl_test *t = calloc(1, sizeof(*t));

    t->fsm = cluster_fsm_new();
    *state = t;
    return 0;
}

static int
repl_test_teardown(void **state)
{
    struct repl_test *t = *state;

    cluster_fsm_free(t->fsm);
    free(t);
    return 0;
}

/* Helpers */

/* Encode one batch and apply it through the byte path; releases recs. */
static void
repl_test_apply(struct repl_test *t, struct cluster_rec *recs, size_t n)
{
    test_fsm_apply(t->fsm, 1000, recs, n);
}

/* Message n in REPL_TEST_SHARD, held by nodes a and b. */
static void
repl_test_enqueue(struct repl_test *t, int n, uint64_t a, uint64_t b)
{
    struct cluster_rec r;

    memset(&r, 0, sizeof(r));
    r.kind = CLUSTER_REC_ENQUEUE;
    test_fsm_id(r.id, n);
    r.queue = km_strdup("dest.test");
    r.shard = REPL_TEST_SHARD;
    r.n_replicas = 2;
    r.replicas = km_calloc(2, sizeof(uint64_t));
    r.replicas[0] = a;
    r.replicas[1] = b;
    repl_test_apply(t, &r, 1);
}

/* A ReplicaUpdate of ids first..first+n-1 (in `shard`). */
static void
repl_test_rec_update(struct cluster_rec *r, uint32_t shard, int first, size_t n,
                     uint64_t add, uint64_t remove)
{
    memset(r, 0, sizeof(*r));
    r->kind = CLUSTER_REC_REPLICA_UPDATE;
    r->shard = shard;
    r->add_node = add;
    r->remove_node = remove;
    r->ids = km_calloc(n + 1, sizeof(*r->ids));
    r->n_ids = n;
    for (size_t i = 0; i < n; i++) {
        test_fsm_id(r->ids[i], first + (int)i);
    }
}

static void
repl_test_update(struct repl_test *t, int first, size_t n, uint64_t add,
                 uint64_t remove)
{
    struct cluster_rec r;

    repl_test_rec_update(&r, REPL_TEST_SHARD, first, n, add, remove);
    repl_test_apply(t, &r, 1);
}

/* Message n's replica list as "1,2,3" in out. */
static const char *
repl_test_list(struct repl_test *t, int n, char *out, size_t len)
{
    char id[33];
    const struct cluster_fsm_msg *m;
    size_t off = 0;

    test_fsm_id(id, n);
    m = cluster_fsm_lookup(t->fsm, id);
    assert_non_null(m);
    /* The public view mirrors the owned list. */
    assert_int_equal(m->pub.n_replicas, m->n_replicas);
    out[0] = '\0';
    for (size_t i = 0; i < m->n_replicas; i++) {
        assert_int_equal(m->pub.replicas[i], m->replicas[i]);
        off += (size_t)snprintf(out + off, len - off, "%s%llu", i ? "," : "",
                                (unsigned long long)m->replicas[i]);
    }
    return out;
}

/* Settings (R = 2) and nodes 1..3 with the given states. */
static void
repl_test_cluster(struct repl_test *t, int s1, int s2, int s3)
{
    struct cluster_rec recs[4];
    int states[3] = {s1, s2, s3};

    memset(recs, 0, sizeof(recs));
    recs[0].kind = CLUSTER_REC_SETTINGS;
    recs[0].settings.shards = 8;
    recs[0].settings.replication_factor = 2;
    recs[0].settings.min_replicas = 2;
    recs[0].cluster_id = km_strdup("test");
    for (int i = 0; i < 3; i++) {
        recs[i + 1].kind = CLUSTER_REC_NODE_STATE;
        recs[i + 1].node = (uint64_t)i + 1;
        recs[i + 1].node_state = states[i];
    }
    repl_test_apply(t, recs, 4);
}

static void
repl_test_node(struct repl_test *t, uint64_t id, int state)
{
    struct cluster_rec r;

    memset(&r, 0, sizeof(r));
    r.kind = CLUSTER_REC_NODE_STATE;
    r.node = id;
    r.node_state = state;
    repl_test_apply(t, &r, 1);
}

/* Append a protobuf varint. */
static size_t
repl_test_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;

    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* A framed Raft entry holding one Command whose ReplicaUpdate has n_ids
 * ids of 16 bytes, shard 5 and the given nodes: built by hand, so that
 * the decoder sees what the encoder refuses to write. *len is set; the
 * caller frees the result. */
static uint8_t *
repl_test_raw_entry(size_t n_ids, uint64_t add, uint64_t remove, size_t *len)
{
    size_t ru_max = 32 + n_ids * 18;
    uint8_t *ru = calloc(1, ru_max);
    uint8_t *cmd = calloc(1, ru_max + 16);
    uint8_t *out = calloc(1, ru_max + 64);
    size_t r = 0, c = 0, o = 8;

    ru[r++] = 0x08; /* shard */
    r += repl_test_varint(ru + r, REPL_TEST_SHARD);
    for (size_t i = 0; i < n_ids; i++) {
        ru[r++] = 0x12; /* ids, 16 bytes */
        ru[r++] = 16;
        memset(ru + r, (int)(i & 0xff), 16);
        ru[r + 15] = 1;
        r += 16;
    }
    if (add != 0) {
        ru[r++] = 0x18;
        r += repl_test_varint(ru + r, add);
    }
    if (remove != 0) {
        ru[r++] = 0x20;
        r += repl_test_varint(ru + r, remove);
    }
    cmd[c++] = 0x6a; /* Command.replica_update = 13 */
    c += repl_test_varint(cmd + c, r);
    memcpy(cmd + c, ru, r);
    c += r;
    out[o++] = 0x22; /* RaftBatch.cmds = 4 */
    o += repl_test_varint(out + o, c);
    memcpy(out + o, cmd, c);
    o += c;
    size_t n = o - 8;
    memcpy(out, "KR\x01\x00", 4);
    out[4] = (uint8_t)(n >> 24);
    out[5] = (uint8_t)(n >> 16);
    out[6] = (uint8_t)(n >> 8);
    out[7] = (uint8_t)n;
    *len = (o + 7) & ~(size_t)7;
    free(cmd);
    free(ru);
    return out;
}

/* Tests */

static void
replica_update_adds_the_node_once(void **state)
{
    struct repl_test *t = *state;
    char list[64];

    repl_test_enqueue(t, 1, 1, 2);
    repl_test_enqueue(t, 2, 1, 2);
    repl_test_update(t, 1, 2, 3, 0);
    assert_string_equal(repl_test_list(t, 1, list, sizeof(list)), "1,2,3");
    assert_string_equal(repl_test_list(t, 2, list, sizeof(list)), "1,2,3");
    /* Applied again (a re-proposal): nothing changes. */
    repl_test_update(t, 1, 2, 3, 0);
    assert_string_equal(repl_test_list(t, 1, list, sizeof(list)), "1,2,3");
    repl_test_update(t, 1, 1, 2, 0);
    assert_string_equal(repl_test_list(t, 1, list, sizeof(list)), "1,2,3");
}

static void
replica_update_removes_a_node_but_never_the_last_copy(void **state)
{
    struct repl_test *t = *state;
    char list[64];

    repl_test_enqueue(t, 1, 1, 2);
    repl_test_update(t, 1, 1, 0, 1);
    assert_string_equal(repl_test_list(t, 1, list, sizeof(list)), "2");
    repl_test_update(t, 1, 1, 0, 1); /* not listed: no change */
    assert_string_equal(repl_test_list(t, 1, list, sizeof(list)), "2");
    repl_test_update(t, 1, 1, 0, 2);
    assert_string_equal(repl_test_list(t, 1, list, sizeof(list)), "2");
    /* Add and remove in one record: a replacement. */
    repl_test_update(t, 1, 1, 3, 2);
    assert_string_equal(repl_test_list(t, 1, list, sizeof(list)), "3");
}

static void
replica_update_ignores_unknown_ids_and_other_shards(void **state)
{
    struct repl_test *t = *state;
    struct cluster_rec r;
    char list[64], id[33];

    repl_test_enqueue(t, 1, 1, 2);
    repl_test_enqueue(t, 2, 1, 2);
    /* ids 0..9: only 1 and 2 are live; 1 is then done. */
    struct cluster_rec done = {.kind = CLUSTER_REC_DONE,
                               .outcome = CLUSTER_DELIVERED};
    test_fsm_id(done.id, 1);
    repl_test_apply(t, &done, 1);
    repl_test_update(t, 0, 10, 3, 0);
    test_fsm_id(id, 1);
    assert_null(cluster_fsm_lookup(t->fsm, id));
    assert_int_equal(cluster_fsm_count(t->fsm), 1);
    assert_string_equal(repl_test_list(t, 2, list, sizeof(list)), "1,2,3");
    /* The shard must match. */
    repl_test_rec_update(&r, REPL_TEST_SHARD + 1, 2, 1, 0, 1);
    repl_test_apply(t, &r, 1);
    assert_string_equal(repl_test_list(t, 2, list, sizeof(list)), "1,2,3");
}

static void
snapshot_keeps_updated_replica_lists(void **state)
{
    struct repl_test *t = *state;
    struct cluster_fsm *copy = cluster_fsm_new();
    struct cluster_blob *blobs = NULL;
    size_t n = 0, len = 0, off = 0;
    char id[33];

    repl_test_enqueue(t, 1, 1, 2);
    repl_test_update(t, 1, 1, 3, 1);
    assert_int_equal(
        cluster_fsm_snapshot(t->fsm, 100, malloc, free, &blobs, &n), 0);
    for (size_t i = 0; i < n; i++) {
        len += blobs[i].len;
    }
    char *img = malloc(len);
    for (size_t i = 0; i < n; i++) {
        memcpy(img + off, blobs[i].base, blobs[i].len);
        off += blobs[i].len;
        free(blobs[i].base);
    }
    free(blobs);
    assert_int_equal(cluster_fsm_restore(copy, img, len), 0);
    free(img);
    test_fsm_id(id, 1);
    const struct cluster_fsm_msg *m = cluster_fsm_lookup(copy, id);
    assert_non_null(m);
    assert_int_equal(m->n_replicas, 2);
    assert_int_equal(m->replicas[0], 2);
    assert_int_equal(m->replicas[1], 3);
    assert_int_equal(m->pub.n_replicas, 2);
    assert_int_equal(m->pub.replicas[1], 3);
    cluster_fsm_free(copy);
}

static void
under_replicated_counts_messages_short_of_up_copies(void **state)
{
    struct repl_test *t = *state;

    /* No settings yet: nothing is counted. */
    repl_test_enqueue(t, 1, 1, 2);
    assert_int_equal(cluster_replica_count(t->fsm), 0);
    repl_test_cluster(t, CLUSTER_NODE_UP, CLUSTER_NODE_UP, CLUSTER_NODE_UP);
    repl_test_enqueue(t, 2, 2, 3);
    assert_int_equal(cluster_replica_want(t->fsm), 2);
    assert_int_equal(cluster_replica_count(t->fsm), 0);

    /* Node 1 dies: message 1 has one UP copy left, message 2 two. */
    repl_test_node(t, 1, CLUSTER_NODE_DOWN);
    assert_int_equal(cluster_replica_count(t->fsm), 1);
    repl_test_update(t, 1, 1, 3, 0);
    assert_int_equal(cluster_replica_count(t->fsm), 0);

    /* Node 3 dies too: one UP node, so one copy is all there can be. */
    repl_test_node(t, 3, CLUSTER_NODE_DOWN);
    assert_int_equal(cluster_replica_want(t->fsm), 1);
    assert_int_equal(cluster_replica_count(t->fsm), 0);
    /* A JOINING node does not count as a copy: message 2 (on 2 and 3)
     * has none while node 1 is the only UP node. */
    repl_test_node(t, 2, CLUSTER_NODE_JOINING);
    repl_test_node(t, 1, CLUSTER_NODE_UP);
    assert_int_equal(cluster_replica_want(t->fsm), 1);
    assert_int_equal(cluster_replica_count(t->fsm), 1);
}

static void
encode_rejects_bad_replica_updates(void **state)
{
    struct cluster_rec r;

    (void)state;
    repl_test_rec_update(&r, 1, 0, 0, 3, 0); /* no ids */
    assert_int_equal(cluster_msg_check_rec(&r), KM_EINVAL);
    cluster_rec_fini(&r);
    repl_test_rec_update(&r, 1, 0, CLUSTER_MAX_REPLICA_IDS + 1, 3, 0);
    assert_int_equal(cluster_msg_check_rec(&r), KM_EINVAL);
    cluster_rec_fini(&r);
    repl_test_rec_update(&r, 1, 0, 1, 0, 0); /* no node */
    assert_int_equal(cluster_msg_check_rec(&r), KM_EINVAL);
    cluster_rec_fini(&r);
    repl_test_rec_update(&r, 1, 0, 1, 3, 3); /* add and remove the same */
    assert_int_equal(cluster_msg_check_rec(&r), KM_EINVAL);
    cluster_rec_fini(&r);
    repl_test_rec_update(&r, 1, 0, 2, 3, 0);
    snprintf(r.ids[1], sizeof(r.ids[1]), "not-an-id");
    assert_int_equal(cluster_msg_check_rec(&r), KM_EINVAL);
    cluster_rec_fini(&r);
    repl_test_rec_update(&r, 1, 0, CLUSTER_MAX_REPLICA_IDS, 3, 1);
    assert_int_equal(cluster_msg_check_rec(&r), 0);
    cluster_rec_fini(&r);
}

static void
decode_rejects_bad_replica_updates(void **state)
{
    struct repl_test *t = *state;
    struct cluster_batch b;
    uint8_t *p;
    size_t len;

    /* The hand-built form is right: a good record decodes. */
    p = repl_test_raw_entry(3, 2, 0, &len);
    assert_int_equal(cluster_msg_decode_batch(p, len, &b), 0);
    assert_int_equal(b.n, 1);
    assert_int_equal(b.recs[0].kind, CLUSTER_REC_REPLICA_UPDATE);
    assert_int_equal(b.recs[0].n_ids, 3);
    assert_int_equal(b.recs[0].shard, REPL_TEST_SHARD);
    assert_int_equal(b.recs[0].add_node, 2);
    cluster_batch_fini(&b);
    free(p);

    p = repl_test_raw_entry(0, 2, 0, &len);
    assert_int_equal(cluster_msg_decode_batch(p, len, &b), KM_ECORRUPT);
    assert_int_equal(cluster_fsm_apply(t->fsm, p, len), KM_ECORRUPT);
    free(p);
    p = repl_test_raw_entry(CLUSTER_MAX_REPLICA_IDS + 1, 2, 0, &len);
    assert_int_equal(cluster_msg_decode_batch(p, len, &b), KM_ECORRUPT);
    free(p);
    p = repl_test_raw_entry(1, 0, 0, &len);
    assert_int_equal(cluster_msg_decode_batch(p, len, &b), KM_ECORRUPT);
    free(p);
    p = repl_test_raw_entry(1, 4, 4, &len);
    assert_int_equal(cluster_msg_decode_batch(p, len, &b), KM_ECORRUPT);
    free(p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f)                                                                   \
    cmocka_unit_test_setup_teardown(f, repl_test_setup, repl_test_teardown)
        T(replica_update_adds_the_node_once),
        T(replica_update_removes_a_node_but_never_the_last_copy),
        T(replica_update_ignores_unknown_ids_and_other_shards),
        T(snapshot_keeps_updated_replica_lists),
        T(under_replicated_counts_messages_short_of_up_copies),
        T(encode_rejects_bad_replica_updates),
        T(decode_rejects_bad_replica_updates),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
