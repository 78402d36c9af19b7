/* test_cluster_membership.c - drill D12's interleaving replayed through
 * the FSM and the shard map (docs/drills.md, issue 17): nodes 1-3 UP,
 * node 4 added (JOINING, UP), drained and removed, the leader (node 1)
 * killed right after and declared DOWN by the new leader, node 1 back
 * (JOINING), an Enqueue accepted by node 2 while node 2 owns the shard,
 * then node 1 UP again so the shard moves back to it. Three replicas of
 * the FSM, one per node, each with a model of the node side that decides
 * who queues a message: the Enqueue and shard-owner edges, and the owner's
 * sweep (kumod_body_reconcile) that takes whatever an edge missed. Also
 * the follower readiness rule that node 1 broke on its restart ("applied
 * 1"). Deterministic: no raft, no clock. */
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

#define MB_SHARDS 64
#define MB_NODES  3
#define MB_MAXQ   16
/* The lost message of the evidence: d2.drill.test hashes to shard 1. */
#define MB_SHARD 1u
#define MB_MSG   114

/* What one node holds in its queue, and whether its host callbacks act
 * (a node that is not running ignores them, as kumod_body.c does). */
struct mb_node {
    uint64_t self;
    struct cluster_fsm *fsm;
    bool running;
    bool drop_owner_edge; /* lose the next on_shard_owner taking a shard */
    char queued[MB_MAXQ][33];
    size_t n_queued;
    int owner_edges; /* on_shard_owner calls that made it the owner */
};

struct mb {
    struct mb_node nodes[MB_NODES];
    int64_t now;
};

static bool
mb_queued(const struct mb_node *n, const char *id)
{
    for (size_t i = 0; i < n->n_queued; i++) {
        if (strcmp(n->queued[i], id) == 0) {
            return true;
        }
    }
    return false;
}

static void
mb_take(struct mb_node *n, const char *id)
{
    if (!mb_queued(n, id)) {
        assert_true(n->n_queued < MB_MAXQ);
        snprintf(n->queued[n->n_queued++], 33, "%s", id);
    }
}

static uint64_t
mb_owner(const struct cluster_fsm *f, uint32_t shard, uint64_t *epoch)
{
    const uint64_t *list = NULL;

    return cluster_fsm_shard(f, shard, &list, epoch) > 0 ? list[0] : 0;
}

static void
mb_on_enqueue(void *ctx, const struct cluster_msg *m)
{
    struct mb_node *n = ctx;

    if (n->running && mb_owner(n->fsm, m->shard, NULL) == n->self) {
        mb_take(n, m->id);
    }
}

static void
mb_on_done(void *ctx, const char *id, int outcome)
{
    struct mb_node *n = ctx;

    (void)outcome;
    for (size_t i = 0; i < n->n_queued; i++) {
        if (strcmp(n->queued[i], id) == 0) {
            memmove(n->queued[i], n->queued[i + 1],
                    (n->n_queued - i - 1) * sizeof(n->queued[0]));
            n->n_queued--;
            return;
        }
    }
}

struct mb_inherit {
    struct mb_node *n;
    uint32_t shard;
};

static bool
mb_inherit_one(void *arg, const struct cluster_msg *m)
{
    struct mb_inherit *ih = arg;

    if (m->shard == ih->shard) {
        mb_take(ih->n, m->id);
    }
    return true;
}

static void
mb_on_shard_owner(void *ctx, uint32_t shard, uint64_t old_owner,
                  uint64_t new_owner, bool failover)
{
    struct mb_node *n = ctx;
    struct mb_inherit ih = {.n = n, .shard = shard};

    (void)old_owner;
    (void)failover;
    if (!n->running || new_owner != n->self) {
        return;
    }
    n->owner_edges++;
    if (n->drop_owner_edge) {
        n->drop_owner_edge = false;
        return;
    }
    cluster_fsm_foreach(n->fsm, mb_inherit_one, &ih);
}

/* The owner's sweep, as kumod_body_reconcile does it. */
static bool
mb_sweep_one(void *arg, const struct cluster_msg *m)
{
    struct mb_node *n = arg;

    if (mb_owner(n->fsm, m->shard, NULL) == n->self && !mb_queued(n, m->id)) {
        mb_take(n, m->id);
    }
    return true;
}

static void
mb_sweep(struct mb *t)
{
    for (size_t i = 0; i < MB_NODES; i++) {
        if (t->nodes[i].running) {
            cluster_fsm_foreach(t->nodes[i].fsm, mb_sweep_one, &t->nodes[i]);
        }
    }
}

static int
mb_setup(void **state)
{
    struct mb *t = calloc(1, sizeof(*t));

    for (size_t i = 0; i < MB_NODES; i++) {
        struct mb_node *n = &t->nodes[i];
        struct cluster_host host = {.ctx = n,
                                    .on_enqueue = mb_on_enqueue,
                                    .on_done = mb_on_done,
                                    .on_shard_owner = mb_on_shard_owner};
        n->self = i + 1;
        n->running = true;
        n->fsm = cluster_fsm_new();
        cluster_fsm_set_host(n->fsm, &host);
        cluster_fsm_set_ready(n->fsm, true);
    }
    t->now = 1796698510962; /* the evidence's first entry */
    *state = t;
    return 0;
}

static int
mb_teardown(void **state)
{
    struct mb *t = *state;

    for (size_t i = 0; i < MB_NODES; i++) {
        cluster_fsm_free(t->nodes[i].fsm);
    }
    free(t);
    return 0;
}

/* Records, as the evidence's leaders proposed them */

static void
mb_rec_node(struct cluster_rec *r, uint64_t id, int state)
{
    char url[64];

    memset(r, 0, sizeof(*r));
    r->kind = CLUSTER_REC_NODE_STATE;
    r->node = id;
    r->node_state = state;
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", 7000 + (int)id);
    r->link_url = km_strdup(url);
}

/* Apply one entry (copies of recs for every node) at t->now + dt_ms. */
static void
mb_apply(struct mb *t, int64_t dt_ms,
         void (*make)(struct cluster_rec *, void *), void *arg, size_t n)
{
    t->now += dt_ms;
    for (size_t i = 0; i < MB_NODES; i++) {
        struct cluster_rec recs[4];
        assert_true(n <= 4);
        memset(recs, 0, sizeof(recs));
        make(recs, arg);
        test_fsm_apply(t->nodes[i].fsm, t->now, recs, n);
    }
}

static void
mb_make_bootstrap(struct cluster_rec *r, void *arg)
{
    (void)arg;
    r[0].kind = CLUSTER_REC_SETTINGS;
    r[0].settings.shards = MB_SHARDS;
    r[0].settings.replication_factor = 2;
    r[0].settings.min_replicas = 2;
    r[0].settings.ping_ms = 500;
    r[0].settings.node_down_after_ms = 4000;
    r[0].settings.failover_grace_ms = 3000;
    r[0].settings.rebalance_after_ms = 10000;
    r[0].cluster_id = km_strdup("drill");
    for (uint64_t id = 1; id <= 3; id++) {
        mb_rec_node(&r[id], id, CLUSTER_NODE_UP);
    }
}

struct mb_ns {
    uint64_t node;
    int state;
};

static void
mb_make_node(struct cluster_rec *r, void *arg)
{
    const struct mb_ns *ns = arg;

    mb_rec_node(r, ns->node, ns->state);
}

static void
mb_node_state(struct mb *t, int64_t dt_ms, uint64_t node, int state)
{
    struct mb_ns ns = {.node = node, .state = state};

    mb_apply(t, dt_ms, mb_make_node, &ns, 1);
}

/* The Enqueue of the lost message: accepted by node 2, bodies on 2 and
 * 3, stamped with shard 1's epoch at the time. */
static void
mb_make_enqueue(struct cluster_rec *r, void *arg)
{
    const uint64_t *epoch = arg;

    r->kind = CLUSTER_REC_ENQUEUE;
    test_fsm_id(r->id, MB_MSG);
    r->queue = km_strdup("d2.drill.test");
    r->shard = MB_SHARD;
    r->shard_epoch = *epoch;
    r->created_ms = 1796698538681;
    r->size = 1005;
    r->accepted_by = 2;
    r->n_replicas = 2;
    r->replicas = km_calloc(2, sizeof(uint64_t));
    r->replicas[0] = 2;
    r->replicas[1] = 3;
}

static void
mb_assert_shard(const struct mb *t, uint64_t owner, uint64_t second,
                uint64_t epoch)
{
    for (size_t i = 0; i < MB_NODES; i++) {
        const uint64_t *list = NULL;
        uint64_t e = 0;
        size_t n = cluster_fsm_shard(t->nodes[i].fsm, MB_SHARD, &list, &e);
        assert_int_equal(n, 2);
        assert_int_equal(list[0], owner);
        assert_int_equal(list[1], second);
        assert_int_equal(e, epoch);
    }
}

/* Which nodes hold the message in their queue (bit i-1 for node i). */
static unsigned
mb_holders(const struct mb *t, const char *id)
{
    unsigned bits = 0;

    for (size_t i = 0; i < MB_NODES; i++) {
        bits |= mb_queued(&t->nodes[i], id) ? 1u << i : 0;
    }
    return bits;
}

/* Everything up to node 1 UP again: the evidence's entries 3 to 1474. */
static void
mb_replay_d12(struct mb *t, char id[33], bool lose_last_edge)
{
    uint64_t epoch = 0;

    test_fsm_id(id, MB_MSG);
    mb_apply(t, 0, mb_make_bootstrap, NULL, 4);
    mb_assert_shard(t, 1, 2, 1);
    mb_node_state(t, 4313, 4, CLUSTER_NODE_JOINING);  /* add-node 4 */
    mb_node_state(t, 10482, 4, CLUSTER_NODE_UP);      /* promoted */
    mb_node_state(t, 3791, 4, CLUSTER_NODE_DRAINING); /* remove-node 4 */
    mb_node_state(t, 3, 4, CLUSTER_NODE_REMOVED);
    mb_assert_shard(t, 1, 2, 1); /* node 4 never held shard 1 */
    /* n1 killed 0.7 s later; n3 leads term 3 and declares it down. */
    mb_node_state(t, 6206, 1, CLUSTER_NODE_DOWN);
    t->nodes[0].running = false;
    mb_assert_shard(t, 2, 3, 2);
    /* n1 restarts and pings: JOINING (owns nothing yet). */
    t->nodes[0].running = true;
    mb_node_state(t, 1093, 1, CLUSTER_NODE_JOINING);
    mb_assert_shard(t, 2, 3, 2);
    /* The Enqueue, accepted by n2, the owner. */
    assert_int_equal(mb_owner(t->nodes[1].fsm, MB_SHARD, &epoch), 2);
    mb_apply(t, 1838, mb_make_enqueue, &epoch, 1);
    assert_int_equal(mb_holders(t, id), 1u << 1);
    /* n1 UP after rebalance_after: the shard goes back to it. */
    t->nodes[0].drop_owner_edge = lose_last_edge;
    mb_node_state(t, 8571, 1, CLUSTER_NODE_UP);
    mb_assert_shard(t, 1, 2, 3);
    for (size_t i = 0; i < MB_NODES; i++) {
        assert_non_null(cluster_fsm_lookup(t->nodes[i].fsm, id));
    }
}

/* Tests */

static void
d12_replay_moves_the_shard_back_to_the_returning_node(void **state)
{
    struct mb *t = *state;
    char id[33];

    mb_replay_d12(t, id, false);
    /* Node 1 got one edge for shard 1 (plus its other shards) and took
     * the message; node 2 still lists it until its queue forgets it (it is
     * no longer the owner: queue_promote drops it). */
    assert_true(t->nodes[0].owner_edges > 0);
    assert_true(mb_queued(&t->nodes[0], id));
    mb_sweep(t);
    assert_true(mb_queued(&t->nodes[0], id));
}

static void
d12_owner_that_missed_its_edge_is_healed_by_the_sweep(void **state)
{
    struct mb *t = *state;
    char id[33];

    /* The state the evidence ends in: the shard's owner (node 1) is UP
     * and listed, the Enqueue is committed, and the only thing that would
     * make node 1 queue the message is the single on_shard_owner edge of
     * the remap. Lose that edge and, without a level check, nothing ever
     * queues it again: no Delivery, no TransientFailure, for ever. */
    mb_replay_d12(t, id, true);
    assert_false(mb_queued(&t->nodes[0], id));
    /* The owner's sweep takes it, on the owner only. */
    mb_sweep(t);
    assert_true(mb_queued(&t->nodes[0], id));
    assert_false(mb_queued(&t->nodes[2], id));
    /* Once Done is committed nobody holds it. */
    struct cluster_rec done;
    for (size_t i = 0; i < MB_NODES; i++) {
        memset(&done, 0, sizeof(done));
        done.kind = CLUSTER_REC_DONE;
        done.outcome = CLUSTER_DELIVERED;
        snprintf(done.id, sizeof(done.id), "%s", id);
        done.response = km_strdup("250 ok");
        test_fsm_apply(t->nodes[i].fsm, t->now + 100, &done, 1);
    }
    assert_int_equal(mb_holders(t, id), 0);
    mb_sweep(t);
    assert_int_equal(mb_holders(t, id), 0);
}

static void
d12_restarted_follower_is_not_ready_on_its_own_commit_index(void **state)
{
    (void)state;
    /* n1 after its restart: raft's commit index was its own (the
     * bootstrap configuration, 1), applied 1, a leader known. It must wait
     * for the leader's commit index (a lease Pong, 1174 here). */
    assert_false(cluster_follower_caught_up(1, 1, true, 0));
    assert_false(cluster_follower_caught_up(1, 1, true, 1174));
    assert_false(cluster_follower_caught_up(1173, 1173, true, 1174));
    assert_true(cluster_follower_caught_up(1174, 1174, true, 1174));
    assert_true(cluster_follower_caught_up(1100, 1180, true, 1174));
    /* Not past its own commit index either. */
    assert_false(cluster_follower_caught_up(1200, 1180, true, 1174));
    assert_false(cluster_follower_caught_up(0, 0, true, 0));
    /* Without a link (no Pongs) raft's commit index is all there is. */
    assert_true(cluster_follower_caught_up(1, 1, false, 0));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            d12_replay_moves_the_shard_back_to_the_returning_node, mb_setup,
            mb_teardown),
        cmocka_unit_test_setup_teardown(
            d12_owner_that_missed_its_edge_is_healed_by_the_sweep, mb_setup,
            mb_teardown),
        cmocka_unit_test(
            d12_restarted_follower_is_not_ready_on_its_own_commit_index),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
