/* cluster_raft_batch.c - the batcher: records proposed on this node (and
 * forwarded by followers) are gathered into one RaftBatch entry per loop
 * turn or timer tick, applied through libraft, and each record's callback
 * gets its commit status; a follower forwards its batch to the leader over
 * the link. Leadership, opening and closing are cluster_raft.c. Loop thread
 * only. */
#include "base/km.h"
#include "base/log.h"
#include "cluster.h"
#include "cluster_core.h"
#include "cluster_int.h"
#include "cluster_shard.h"
#include "cluster_tls.h"
#include "cluster_transport.h"
#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Batcher */

void
cluster_raft_resolve(struct cluster_raft_waiter *w, size_t n, int status)
{
    for (size_t i = 0; i < n; i++) {
        if (w[i].cb != NULL) {
            w[i].cb(w[i].arg, status);
        }
    }
    free(w);
}

/* Fail the batch being filled (not proposed yet). */
void
cluster_raft_fail_fill(struct cluster *c, int status)
{
    struct cluster_raft_waiter *w = c->fill_waiters;
    size_t n = c->fill_n;

    for (size_t i = 0; i < n; i++) {
        cluster_rec_fini(&c->fill_recs[i]);
    }
    free(c->fill_recs);
    c->fill_recs = NULL;
    c->fill_waiters = NULL;
    c->fill_n = c->fill_cap = 0;
    uv_timer_stop(&c->batch_timer);
    cluster_raft_resolve(w, n, status); /* may re-enter: arrays detached */
}

static void
cluster_raft_on_applied(struct raft_apply *req, int status, void *result)
{
    struct cluster_raft_entry *e = req->data;
    struct cluster *c = e->c;
    int rv = cluster_raft_err(status);

    (void)result;
    if (e->prev != NULL) {
        e->prev->next = e->next;
    } else {
        c->inflight = e->next;
    }
    if (e->next != NULL) {
        e->next->prev = e->prev;
    }
    if (status != 0 && c->closing) {
        rv = KM_ECLOSING;
    }
    if (status == RAFT_IOERR || status == RAFT_NOSPACE) {
        cluster_raft_fatal(c, rv);
    }
    c->resolving_index = e->req.index;
    cluster_raft_resolve(e->waiters, e->n, rv);
    c->resolving_index = 0;
    free(e);
}

static void
cluster_raft_flush(struct cluster *c)
{
    struct cluster_batch b = {
        .proposer_node = c->cfg.node_id,
        /* The leader stamps the batch; the FSM never reads a clock. */
        .batch_time_ms = km_now_wall_ms(),
        .batch_seq = ++c->batch_seq,
        .recs = c->fill_recs,
        .n = c->fill_n,
    };
    struct raft_buffer buf;
    void *p = NULL;
    size_t len = 0;

    if (c->fill_n == 0) {
        return;
    }
    uv_timer_stop(&c->batch_timer);
    if (!c->leader_ready) {
        /* A follower: the leader proposes them for us. */
        struct cluster_rec *recs = c->fill_recs;
        struct cluster_raft_waiter *w = c->fill_waiters;
        size_t n = c->fill_n;
        c->fill_recs = NULL;
        c->fill_waiters = NULL;
        c->fill_n = c->fill_cap = 0;
        cluster_propose_send(c, recs, w, n);
        return;
    }
    int rv = cluster_msg_encode_batch(&b, raft_malloc, &p, &len);
    struct cluster_raft_entry *e = km_calloc(1, sizeof(*e));
    e->c = c;
    e->waiters = c->fill_waiters;
    e->n = c->fill_n;
    cluster_batch_fini(&b);
    c->fill_recs = NULL;
    c->fill_waiters = NULL;
    c->fill_n = c->fill_cap = 0;
    if (rv != 0) {
        goto err_after_entry;
    }
    buf.base = p;
    buf.len = len;
    e->req.data = e;
    rv = raft_apply(&c->raft, &e->req, &buf, 1, cluster_raft_on_applied);
    if (rv != 0) {
        raft_free(p); /* ownership passes to raft only on success */
        rv = cluster_raft_err(rv);
        goto err_after_entry;
    }
    e->next = c->inflight;
    if (c->inflight != NULL) {
        c->inflight->prev = e;
    }
    c->inflight = e;
    c->entries_proposed++;
    c->records_proposed += e->n;
    return;

err_after_entry:
    cluster_raft_resolve(e->waiters, e->n, rv);
    free(e);
}

static void
cluster_raft_on_batch_timer(uv_timer_t *t)
{
    struct cluster *c = t->data;

    cluster_raft_flush(c);
}

bool
cluster_raft_leader(const struct cluster *c, uint64_t *id)
{
    raft_id leader = 0;
    const char *addr = NULL;

    raft_leader((struct raft *)(uintptr_t)&c->raft, &leader, &addr);
    *id = leader;
    return leader != 0;
}

/* Whether records may be queued now: the leader proposes them itself; a
 * ready follower with a link forwards them to the leader it knows. */
static bool
cluster_raft_accepting(const struct cluster *c)
{
    uint64_t leader;

    if (c->leader_ready) {
        return true;
    }
    return c->link != NULL && c->ready_fired &&
           raft_state((struct raft *)(uintptr_t)&c->raft) == RAFT_FOLLOWER &&
           cluster_raft_leader(c, &leader);
}

/* Queue rec (moved into the batch on success; released on error). */
static int
cluster_raft_submit(struct cluster *c, struct cluster_rec *rec,
                    cluster_commit_cb cb, void *arg)
{
    int rv = 0;

    if (c->closing) {
        rv = KM_ECLOSING;
    } else if (!cluster_raft_accepting(c)) {
        rv = KM_ENOTLEADER;
    } else {
        rv = cluster_msg_check_rec(rec);
    }
    if (rv != 0) {
        cluster_rec_fini(rec);
        return rv;
    }
    if (c->fill_n == c->fill_cap) {
        c->fill_cap = c->fill_cap ? c->fill_cap * 2 : 16;
        c->fill_recs =
            km_realloc(c->fill_recs, c->fill_cap * sizeof(*c->fill_recs));
        c->fill_waiters =
            km_realloc(c->fill_waiters, c->fill_cap * sizeof(*c->fill_waiters));
    }
    c->fill_recs[c->fill_n] = *rec;
    c->fill_waiters[c->fill_n].cb = cb;
    c->fill_waiters[c->fill_n].arg = arg;
    c->fill_n++;
    if (c->fill_n >= c->cfg.batch_max_records) {
        cluster_raft_flush(c);
    } else if (c->fill_n == 1) {
        uv_timer_start(&c->batch_timer, cluster_raft_on_batch_timer,
                       c->cfg.batch_max_ms, 0);
    }
    return 0;
}

int
cluster_raft_submit_rec(struct cluster *c, struct cluster_rec *rec,
                        cluster_commit_cb cb, void *arg)
{
    return cluster_raft_submit(c, rec, cb, arg);
}

static char *
cluster_raft_strdup_opt(const char *s)
{
    return s != NULL ? km_strdup(s) : NULL;
}

int
cluster_enqueue(struct cluster *c, const struct cluster_msg *m,
                cluster_commit_cb cb, void *arg)
{
    struct cluster_rec rec;

    memset(&rec, 0, sizeof(rec));
    rec.kind = CLUSTER_REC_ENQUEUE;
    memcpy(rec.id, m->id, sizeof(rec.id));
    rec.id[32] = '\0';
    rec.queue = cluster_raft_strdup_opt(m->queue);
    rec.tenant = cluster_raft_strdup_opt(m->tenant);
    rec.campaign = cluster_raft_strdup_opt(m->campaign);
    rec.egress_pool = cluster_raft_strdup_opt(m->egress_pool);
    rec.shard = m->shard;
    rec.created_ms = m->created_ms;
    rec.due_ms = m->due_ms;
    rec.expires_ms = m->expires_ms;
    rec.attempts = m->attempts;
    rec.size = m->size;
    memcpy(rec.digest, m->digest, sizeof(rec.digest));
    rec.accepted_by = m->accepted_by != 0 ? m->accepted_by : c->cfg.node_id;
    rec.shard_epoch = m->shard_epoch;
    if (m->n_replicas > 0 && m->n_replicas <= CLUSTER_MAX_MSG_REPLICAS) {
        rec.replicas = km_calloc(m->n_replicas, sizeof(*rec.replicas));
        memcpy(rec.replicas, m->replicas,
               m->n_replicas * sizeof(*rec.replicas));
        rec.n_replicas = m->n_replicas;
    } else {
        /* A single node stores every body itself. */
        rec.replicas = km_malloc(sizeof(*rec.replicas));
        rec.replicas[0] = c->cfg.node_id;
        rec.n_replicas = 1;
    }
    return cluster_raft_submit(c, &rec, cb, arg);
}

int
cluster_deferred(struct cluster *c, const char *id, uint32_t attempts,
                 int64_t due_ms, const char *last_response,
                 cluster_commit_cb cb, void *arg)
{
    struct cluster_rec rec;

    memset(&rec, 0, sizeof(rec));
    rec.kind = CLUSTER_REC_DEFERRED;
    snprintf(rec.id, sizeof(rec.id), "%s", id);
    rec.attempts = attempts;
    rec.due_ms = due_ms;
    rec.response = cluster_raft_strdup_opt(last_response);
    return cluster_raft_submit(c, &rec, cb, arg);
}

int
cluster_done(struct cluster *c, const char *id, enum cluster_outcome outcome,
             const char *response, cluster_commit_cb cb, void *arg)
{
    struct cluster_rec rec;

    memset(&rec, 0, sizeof(rec));
    rec.kind = CLUSTER_REC_DONE;
    snprintf(rec.id, sizeof(rec.id), "%s", id);
    rec.outcome = (int)outcome;
    rec.at_ms = km_now_wall_ms();
    rec.response = cluster_raft_strdup_opt(response);
    return cluster_raft_submit(c, &rec, cb, arg);
}

int
cluster_admin(struct cluster *c, const char *id, int kind, const char *json,
              int64_t expires_ms, bool cancel, cluster_commit_cb cb, void *arg)
{
    struct cluster_rec rec;

    memset(&rec, 0, sizeof(rec));
    rec.kind = CLUSTER_REC_ADMIN;
    snprintf(rec.admin_id, sizeof(rec.admin_id), "%s", id);
    rec.admin_kind = kind;
    rec.admin_json = cluster_raft_strdup_opt(json);
    rec.expires_ms = expires_ms;
    rec.admin_cancel = cancel;
    return cluster_raft_submit(c, &rec, cb, arg);
}

void
cluster_foreach_admin(const struct cluster *c,
                      bool (*fn)(void *arg, const struct cluster_admin_rule *r),
                      void *arg)
{
    cluster_fsm_foreach_admin(c->fsm, fn, arg);
}
