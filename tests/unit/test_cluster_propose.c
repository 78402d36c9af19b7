/* test_cluster_propose.c - the Propose and ProposeAck codecs a follower
 * and the leader exchange (cluster_msg.c): records survive the round trip
 * field for field, and malformed, oversized or invalid input is refused
 * rather than asserted on. The forwarding itself runs in the e2e tests
 * with real kumod processes (test_cluster_group.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/km.h"
#include "cluster_int.h"

/* Helpers */

static void
propose_test_enqueue(struct cluster_rec *r, int n)
{
    memset(r, 0, sizeof(*r));
    r->kind = CLUSTER_REC_ENQUEUE;
    snprintf(r->id, sizeof(r->id), "%032x", n);
    r->queue = km_strdup("campaign:tenant@example.test");
    r->tenant = km_strdup("tenant");
    r->shard = 17;
    r->shard_epoch = 3;
    r->created_ms = 1000 + n;
    r->due_ms = 2000 + n;
    r->size = 4096;
    r->digest[0] = 0x5a;
    r->digest[31] = (uint8_t)n;
    r->accepted_by = 2;
    r->n_replicas = 2;
    r->replicas = km_calloc(2, sizeof(uint64_t));
    r->replicas[0] = 2;
    r->replicas[1] = 3;
}

static void
propose_test_done(struct cluster_rec *r, int n)
{
    memset(r, 0, sizeof(*r));
    r->kind = CLUSTER_REC_DONE;
    snprintf(r->id, sizeof(r->id), "%032x", n);
    r->outcome = CLUSTER_DELIVERED;
    r->at_ms = 5000;
    r->response = km_strdup("250 2.0.0 ok");
}

/* Tests */

static void
propose_round_trips_every_record(void **state)
{
    struct cluster_rec recs[3];
    struct cluster_batch b = {.batch_seq = 42, .recs = recs, .n = 3};
    struct cluster_batch out;
    void *p = NULL;
    size_t len = 0;

    (void)state;
    propose_test_enqueue(&recs[0], 1);
    propose_test_enqueue(&recs[1], 2);
    propose_test_done(&recs[2], 1);
    assert_int_equal(cluster_msg_encode_propose(&b, &p, &len), 0);
    assert_int_equal(cluster_msg_decode_propose(p, len, &out), 0);
    assert_int_equal(out.n, 3);
    assert_int_equal(out.batch_seq, 42);
    assert_int_equal(out.recs[0].kind, CLUSTER_REC_ENQUEUE);
    assert_string_equal(out.recs[0].id, recs[0].id);
    assert_string_equal(out.recs[0].queue, "campaign:tenant@example.test");
    assert_int_equal(out.recs[0].shard, 17);
    assert_int_equal(out.recs[0].shard_epoch, 3);
    assert_int_equal(out.recs[0].n_replicas, 2);
    assert_int_equal(out.recs[0].replicas[1], 3);
    assert_int_equal(out.recs[0].accepted_by, 2);
    assert_memory_equal(out.recs[0].digest, recs[0].digest, 32);
    assert_string_equal(out.recs[1].id, recs[1].id);
    assert_int_equal(out.recs[2].kind, CLUSTER_REC_DONE);
    assert_int_equal(out.recs[2].outcome, CLUSTER_DELIVERED);
    assert_string_equal(out.recs[2].response, "250 2.0.0 ok");
    cluster_batch_fini(&out);
    for (size_t i = 0; i < 3; i++) {
        cluster_rec_fini(&recs[i]);
    }
    free(p);
}

static void
propose_with_an_invalid_record_is_refused_when_encoding(void **state)
{
    struct cluster_rec rec;
    struct cluster_batch b = {.recs = &rec, .n = 1};
    void *p = NULL;
    size_t len = 0;

    (void)state;
    propose_test_enqueue(&rec, 1);
    memcpy(rec.id, "not-hex-not-hex-not-hex-not-hex!", 32);
    assert_int_equal(cluster_msg_encode_propose(&b, &p, &len), KM_EINVAL);
    assert_null(p);
    cluster_rec_fini(&rec);
}

static void
garbage_and_oversize_proposals_are_refused(void **state)
{
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01};
    struct cluster_batch out;

    (void)state;
    assert_int_equal(cluster_msg_decode_propose(junk, sizeof(junk), &out),
                     KM_ECORRUPT);
    assert_null(out.recs);
    assert_int_equal(
        cluster_msg_decode_propose(junk, CLUSTER_MAX_ENTRY_BYTES + 1, &out),
        KM_E2BIG);
}

static void
ack_round_trips_and_garbage_is_refused(void **state)
{
    struct cluster_propose_ack a = {.status = CLUSTER_ST_NOT_LEADER,
                                    .raft_index = 123456789,
                                    .leader_id = 3};
    struct cluster_propose_ack out;
    static const uint8_t junk[] = {0x08, 0xff};
    void *p = NULL;
    size_t len = 0;

    (void)state;
    assert_int_equal(cluster_msg_encode_propose_ack(&a, &p, &len), 0);
    assert_int_equal(cluster_msg_decode_propose_ack(p, len, &out), 0);
    assert_int_equal(out.status, CLUSTER_ST_NOT_LEADER);
    assert_int_equal(out.raft_index, 123456789);
    assert_int_equal(out.leader_id, 3);
    free(p);
    assert_int_equal(cluster_msg_decode_propose_ack(junk, sizeof(junk), &out),
                     KM_ECORRUPT);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(propose_round_trips_every_record),
        cmocka_unit_test(
            propose_with_an_invalid_record_is_refused_when_encoding),
        cmocka_unit_test(garbage_and_oversize_proposals_are_refused),
        cmocka_unit_test(ack_round_trips_and_garbage_is_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
