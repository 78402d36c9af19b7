/* test_fsm_util.h - helpers shared by the FSM unit tests (include after
 * cmocka.h and cluster_int.h): apply records through the byte path, and
 * make message ids. */
#ifndef KUMO_TEST_FSM_UTIL_H
#define KUMO_TEST_FSM_UTIL_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Encode recs[n] as one batch stamped time_ms, apply it to f as raft
 * would (it must succeed), then finalise the records. */
static inline void
test_fsm_apply(struct cluster_fsm *f, int64_t time_ms, struct cluster_rec *recs,
               size_t n)
{
    struct cluster_batch b = {.proposer_node = 1,
                              .batch_time_ms = time_ms,
                              .batch_seq = 1,
                              .recs = recs,
                              .n = n};
    void *p = NULL;
    size_t len = 0;

    assert_int_equal(cluster_msg_encode_batch(&b, malloc, &p, &len), 0);
    assert_int_equal(cluster_fsm_apply(f, p, len), 0);
    free(p);
    for (size_t i = 0; i < n; i++) {
        cluster_rec_fini(&recs[i]);
    }
}

/* Message id number n: 32 hex digits. */
static inline void
test_fsm_id(char out[33], int n)
{
    snprintf(out, 33, "%032x", n);
}
#endif /* KUMO_TEST_FSM_UTIL_H */
