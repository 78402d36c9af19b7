/* cluster_propose.c - records proposed on a follower (CLUSTER.md §4.5
 * step 3): the batch goes to the leader in a Propose over the link; the
 * leader queues the records in its own batcher and answers with the raft
 * index of the entry once it is committed; the follower resolves its
 * waiters when its own FSM has applied that index, so a 250 is never sent
 * before the message is in this node's FSM. A batch whose outcome is
 * unknown (timeout, dropped connection, leader change) is sent again to
 * the leader of the moment: every record is idempotent (Enqueue by id,
 * Done by id, Deferred by attempt), so a duplicate entry changes nothing.
 * Gives up after accept_timeout. Loop thread only. */
#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "base/log.h"
#include "cluster_core.h"

/* Pause before sending a batch again after a failure. */
#define CLUSTER_PROPOSE_RETRY_MS 100
/* Per-attempt deadline of one Propose request. */
#define CLUSTER_PROPOSE_REQUEST_MS 3000

/* One batch forwarded by this node, from send to resolution. */
struct cluster_propose_batch {
    struct cluster_propose_batch *prev, *next;
    struct cluster *c;
    struct cluster_rec *recs; /* owned, for resending */
    struct cluster_raft_waiter *waiters;
    size_t n;
    uint64_t seq;
    uint64_t deadline_ms; /* monotonic: give up after this */
    uint64_t retry_at_ms; /* monotonic: next send, when not in flight */
    uint64_t wait_index;  /* committed at this index: wait to apply it */
    bool in_flight;
    /* Finished while its request was in flight (the cluster is closing):
     * only the link's callback, still to come, may free it. */
    bool orphan;
    int last_error;
};

struct cluster_fwd {
    struct cluster_propose_batch *head;
    uint64_t seq;
};

/* A Propose received by the leader, answered when every record is in. */
struct cluster_propose_serve {
    struct cluster *c;
    struct cluster_link_reply *reply;
    size_t pending;
    int status;
    uint64_t index;
};

/* Follower side */

static void
cluster_propose_unlink(struct cluster_fwd *f, struct cluster_propose_batch *b)
{
    if (b->prev != NULL) {
        b->prev->next = b->next;
    } else {
        f->head = b->next;
    }
    if (b->next != NULL) {
        b->next->prev = b->prev;
    }
    b->prev = b->next = NULL;
}

static void
cluster_propose_finish(struct cluster_propose_batch *b, int status)
{
    struct cluster *c = b->c;

    cluster_propose_unlink(c->fwd, b);
    for (size_t i = 0; i < b->n; i++) {
        cluster_rec_fini(&b->recs[i]);
    }
    free(b->recs);
    /* A leader that lost its leadership may have forwarded records it was
     * itself serving for a follower: that follower waits for this index. */
    c->resolving_index = b->wait_index;
    cluster_raft_resolve(b->waiters, b->n, status);
    c->resolving_index = 0;
    if (b->in_flight) {
        /* cluster_link_close() will still call cluster_propose_on_reply
         * for its request. */
        b->orphan = true;
        return;
    }
    free(b);
}

static void
cluster_propose_retry_later(struct cluster_propose_batch *b, int err)
{
    b->in_flight = false;
    b->last_error = err;
    b->retry_at_ms = km_now_mono_ms() + CLUSTER_PROPOSE_RETRY_MS;
}

static void
cluster_propose_on_reply(void *arg, int status,
                         const struct cluster_link_msg *reply)
{
    struct cluster_propose_batch *b = arg;
    struct cluster_propose_ack ack;

    if (b->orphan) {
        free(b);
        return;
    }
    b->in_flight = false; /* the request is over, whatever its outcome */
    if (status == KM_ECLOSING) {
        b->in_flight = false; /* cluster_propose_fini resolves it */
        return;
    }
    if (status != 0) {
        /* Timeout or dropped connection: the outcome is unknown, and a
         * resend is safe. */
        cluster_propose_retry_later(b, status);
        return;
    }
    if (reply->kind != CLUSTER_LINK_RAW ||
        reply->u.raw.type != CLUSTER_LINK_T_PROPOSE_ACK ||
        cluster_msg_decode_propose_ack(reply->u.raw.data, reply->u.raw.len,
                                       &ack) != 0) {
        cluster_propose_retry_later(b, KM_EPROTO);
        return;
    }
    switch (ack.status) {
    case CLUSTER_ST_OK:
        b->in_flight = false;
        b->wait_index = ack.raft_index;
        return;
    case CLUSTER_ST_NOT_LEADER:
    case CLUSTER_ST_NO_QUORUM:
    case CLUSTER_ST_BUSY:
        cluster_propose_retry_later(b, KM_ENOTLEADER);
        return;
    default:
        /* The leader refused the records themselves. */
        cluster_propose_finish(b, KM_EINVAL);
        return;
    }
}

/* This node leads now: propose the batch's records itself, each with its
 * waiter, instead of waiting out accept_timeout for a remote leader. A
 * copy the old leader may already have committed makes the record apply
 * twice, which Enqueue, Deferred and Done tolerate and a second slot grant
 * only delays (cluster_conn_reconcile gives it back). */
static void
cluster_propose_adopt(struct cluster_propose_batch *b)
{
    struct cluster *c = b->c;

    cluster_propose_unlink(c->fwd, b);
    for (size_t i = 0; i < b->n; i++) {
        struct cluster_raft_waiter w = b->waiters[i];
        int rv = cluster_raft_submit_rec(c, &b->recs[i], w.cb, w.arg);
        if (rv != 0 && w.cb != NULL) {
            w.cb(w.arg, rv);
        }
    }
    free(b->recs);
    free(b->waiters);
    free(b);
}

static void
cluster_propose_transmit(struct cluster_propose_batch *b)
{
    struct cluster *c = b->c;
    struct cluster_batch cb = {
        .proposer_node = c->cfg.node_id,
        .batch_seq = b->seq,
        .recs = b->recs,
        .n = b->n,
    };
    struct cluster_link_msg m = {.kind = CLUSTER_LINK_RAW};
    uint64_t leader = 0;
    void *p = NULL;
    size_t len = 0;
    int rv;

    if (c->leader_ready) { /* we lead now */
        cluster_propose_adopt(b);
        return;
    }
    if (!cluster_raft_leader(c, &leader) || leader == c->cfg.node_id) {
        /* No leader known, or we are a leader not yet ready. */
        cluster_propose_retry_later(b, KM_ENOTLEADER);
        return;
    }
    rv = cluster_msg_encode_propose(&cb, &p, &len);
    if (rv != 0) {
        cluster_propose_finish(b, rv);
        return;
    }
    m.u.raw.type = CLUSTER_LINK_T_PROPOSE;
    m.u.raw.data = p;
    m.u.raw.len = len;
    rv = cluster_link_request(c->link, leader, &m, cluster_propose_on_reply, b);
    free(p);
    if (rv != 0) {
        cluster_propose_retry_later(b, rv);
        return;
    }
    b->in_flight = true;
    c->records_forwarded += b->n;
}

void
cluster_propose_send(struct cluster *c, struct cluster_rec *recs,
                     struct cluster_raft_waiter *waiters, size_t n)
{
    struct cluster_propose_batch *b = km_calloc(1, sizeof(*b));
    struct cluster_settings st;

    cluster_get_settings(c, &st);
    b->c = c;
    b->recs = recs;
    b->waiters = waiters;
    b->n = n;
    b->seq = ++c->fwd->seq;
    b->deadline_ms = km_now_mono_ms() + st.accept_timeout_ms;
    b->next = c->fwd->head;
    if (b->next != NULL) {
        b->next->prev = b;
    }
    c->fwd->head = b;
    cluster_propose_transmit(b);
}

void
cluster_propose_check(struct cluster *c)
{
    struct cluster_propose_batch *b, *next;
    uint64_t applied;
    uint64_t now;

    if (c->fwd == NULL || c->fwd->head == NULL) {
        return;
    }
    applied = raft_last_applied(&c->raft);
    now = km_now_mono_ms();
    for (b = c->fwd->head; b != NULL; b = next) {
        next = b->next;
        if (b->wait_index != 0) {
            if (applied >= b->wait_index) {
                cluster_propose_finish(b, 0);
            }
            continue;
        }
        if (b->in_flight) {
            continue;
        }
        if (now >= b->deadline_ms) {
            LOG_WARN("cluster: %zu forwarded record(s) not committed in time: "
                     "%s",
                     b->n, km_strerror(b->last_error));
            cluster_propose_finish(b, KM_ENOQUORUM);
            continue;
        }
        if (now >= b->retry_at_ms) {
            cluster_propose_transmit(b);
        }
    }
}

void
cluster_propose_init(struct cluster *c)
{
    c->fwd = km_calloc(1, sizeof(*c->fwd));
}

void
cluster_propose_fini(struct cluster *c, int status)
{
    if (c->fwd == NULL) {
        return;
    }
    while (c->fwd->head != NULL) {
        cluster_propose_finish(c->fwd->head, status);
    }
    free(c->fwd);
    c->fwd = NULL;
}

/* Leader side */

static void
cluster_propose_answer(struct cluster_propose_serve *s)
{
    struct cluster_propose_ack ack = {.status = CLUSTER_ST_OK};
    struct cluster_link_msg m = {.kind = CLUSTER_LINK_RAW};
    uint64_t leader = 0;
    void *p = NULL;
    size_t len = 0;

    switch (s->status) {
    case 0:
        ack.raft_index = s->index;
        break;
    case KM_EINVAL:
        ack.status = CLUSTER_ST_INTERNAL;
        break;
    default:
        ack.status = CLUSTER_ST_NOT_LEADER;
        break;
    }
    (void)cluster_raft_leader(s->c, &leader);
    ack.leader_id = leader;
    (void)cluster_msg_encode_propose_ack(&ack, &p, &len);
    m.u.raw.type = CLUSTER_LINK_T_PROPOSE_ACK;
    m.u.raw.data = p;
    m.u.raw.len = len;
    (void)cluster_link_reply_send(s->reply, &m);
    free(p);
    free(s);
}

static void
cluster_propose_on_committed(void *arg, int status)
{
    struct cluster_propose_serve *s = arg;

    if (status != 0 && s->status == 0) {
        s->status = status;
    }
    if (status == 0 && s->c->resolving_index > s->index) {
        s->index = s->c->resolving_index;
    }
    KM_ASSERT(s->pending > 0);
    if (--s->pending == 0) {
        cluster_propose_answer(s);
    }
}

void
cluster_propose_on_request(struct cluster *c, uint64_t from,
                           const struct cluster_link_raw *raw,
                           struct cluster_link_reply *r)
{
    struct cluster_propose_serve *s = km_calloc(1, sizeof(*s));
    struct cluster_batch b;
    int rv;

    (void)from;
    s->c = c;
    s->reply = r;
    if (!c->leader_ready) {
        s->status = KM_ENOTLEADER;
        cluster_propose_answer(s);
        return;
    }
    rv = cluster_msg_decode_propose(raw->data, raw->len, &b);
    if (rv != 0) {
        s->status = KM_EINVAL;
        cluster_propose_answer(s);
        return;
    }
    /* One extra count so that no answer goes out while records are still
     * being queued. */
    s->pending = b.n + 1;
    for (size_t i = 0; i < b.n; i++) {
        rv = cluster_raft_submit_rec(c, &b.recs[i],
                                     cluster_propose_on_committed, s);
        memset(&b.recs[i], 0, sizeof(b.recs[i])); /* moved or released */
        if (rv != 0) {
            cluster_propose_on_committed(s, rv);
        }
    }
    free(b.recs);
    cluster_propose_on_committed(s, 0);
}
