/* kumod_repl.c - restores the replication factor after a failover
 * (CLUSTER.md §4.6 "Bodies after failover"). Every 2 s, and soon after this
 * node takes over a shard, it walks the under-replicated messages of the
 * shards it owns and whose body it holds, copies each body (StoreBody) to
 * the next UP node in the shard's HRW order that lacks one, and records the
 * new copies with one ReplicaUpdate per (shard, node). At most
 * KUMOD_REPL_MAX_COPIES copies per round; a failed copy is retried next
 * round. Bodies it lacks are left to the fetch path of kumod_body.c. Never runs
 * on a one-node kumod. Loop thread only. */
#include "kumod.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "base/buf.h"
#include "base/km.h"
#include "base/log.h"
#include "cluster.h"
#include "kumod_body.h"
#include "metrics.h"
#include "spool.h"

#define KUMOD_REPL_INTERVAL_MS 2000u
/* A round after a shard changed owner, or after a round that hit the cap:
 * soon, but after the burst of records that caused it. */
#define KUMOD_REPL_KICK_MS      300u
#define KUMOD_REPL_MAX_COPIES   32u
#define KUMOD_REPL_COPY_TIMEOUT 10000u

/* The ids whose copy on `node` is durable, for one ReplicaUpdate. */
struct kumod_repl_batch {
    uint32_t shard;
    uint64_t node;
    char **ids; /* owned */
    size_t n, cap;
};

struct kumod_repl {
    struct kumod *kd;
    uv_timer_t timer;
    bool stopping;
    /* The timer handle, copies and commits in flight: freed at 0. */
    size_t refs;
    size_t copies;  /* StoreBody requests of this round in flight */
    size_t commits; /* ReplicaUpdate records in flight */
    size_t started; /* messages taken this round */
    bool full;      /* this round hit KUMOD_REPL_MAX_COPIES */
    struct kumod_repl_batch *batches;
    size_t n_batches;
};

/* One StoreBody in flight. */
struct kumod_repl_copy {
    struct kumod_repl *r;
    char id[KM_ID_HEX_LEN + 1];
    uint32_t shard;
    uint64_t node;
};

static void kumod_repl_on_tick(uv_timer_t *t);

static void
kumod_repl_unref(struct kumod_repl *r)
{
    KM_ASSERT(r->refs > 0);
    if (--r->refs > 0) {
        return;
    }
    for (size_t i = 0; i < r->n_batches; i++) {
        for (size_t k = 0; k < r->batches[i].n; k++) {
            free(r->batches[i].ids[k]);
        }
        free(r->batches[i].ids);
    }
    free(r->batches);
    free(r);
}

static void
kumod_repl_on_closed(uv_handle_t *h)
{
    kumod_repl_unref(h->data);
}

/* Whether rounds may run now. */
static bool
kumod_repl_active(const struct kumod_repl *r)
{
    const struct kumod *kd = r->kd;

    return !r->stopping && kd->state == KUMOD_RUNNING && kd->cluster != NULL &&
           kd->data_spool != NULL && kd->meta_spool != NULL;
}

static void
kumod_repl_gauge(struct kumod_repl *r)
{
    struct kumod *kd = r->kd;

    if (kd->metrics != NULL && kd->cluster != NULL) {
        metrics_set(kd->metrics, "kumod_cluster_under_replicated",
                    "queued messages with fewer UP replicas than "
                    "min(replication_factor, UP nodes)",
                    NULL, NULL, (double)cluster_under_replicated(kd->cluster));
        metrics_set(kd->metrics, "kumod_cluster_unowned_messages",
                    "queued messages whose shard has no owner able to deliver "
                    "them (an owner not up, removed, or without a lease)",
                    NULL, NULL, (double)cluster_unowned(kd->cluster));
    }
}

static void
kumod_repl_batch_add(struct kumod_repl *r, uint32_t shard, uint64_t node,
                     const char *id)
{
    struct kumod_repl_batch *b = NULL;

    for (size_t i = 0; i < r->n_batches && b == NULL; i++) {
        if (r->batches[i].shard == shard && r->batches[i].node == node) {
            b = &r->batches[i];
        }
    }
    if (b == NULL) {
        r->batches =
            km_realloc(r->batches, (r->n_batches + 1) * sizeof(*r->batches));
        b = &r->batches[r->n_batches++];
        memset(b, 0, sizeof(*b));
        b->shard = shard;
        b->node = node;
    }
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 8;
        b->ids = km_realloc(b->ids, b->cap * sizeof(*b->ids));
    }
    b->ids[b->n++] = km_strdup(id);
}

static void
kumod_repl_on_committed(void *arg, int status)
{
    struct kumod_repl *r = arg;

    KM_ASSERT(r->commits > 0);
    r->commits--;
    if (status != 0 && !r->stopping) {
        LOG_WARN("kumod_repl: ReplicaUpdate: %s: retrying next round",
                 km_strerror(status));
    }
    if (r->commits == 0 && kumod_repl_active(r)) {
        kumod_repl_gauge(r);
        if (r->full) {
            uv_timer_start(&r->timer, kumod_repl_on_tick, KUMOD_REPL_KICK_MS,
                           KUMOD_REPL_INTERVAL_MS);
        }
    }
    kumod_repl_unref(r);
}

/* Once the round's copies are all answered: one ReplicaUpdate per
 * (shard, node). */
static void
kumod_repl_flush(struct kumod_repl *r)
{
    struct kumod *kd = r->kd;

    for (size_t i = 0; i < r->n_batches; i++) {
        struct kumod_repl_batch *b = &r->batches[i];
        int rv = KM_ECLOSING;
        if (kumod_repl_active(r)) {
            rv = cluster_replica_update(kd->cluster, b->shard,
                                        (const char *const *)b->ids, b->n,
                                        b->node, 0, kumod_repl_on_committed, r);
        }
        if (rv == 0) {
            r->commits++;
            r->refs++;
            LOG_DEBUG("kumod_repl: shard %u: %zu message(s) now also on node "
                      "%llu",
                      b->shard, b->n, (unsigned long long)b->node);
        } else if (rv != KM_ECLOSING) {
            LOG_WARN("kumod_repl: shard %u: ReplicaUpdate: %s: retrying next "
                     "round",
                     b->shard, km_strerror(rv));
        }
        for (size_t k = 0; k < b->n; k++) {
            free(b->ids[k]);
        }
        free(b->ids);
    }
    free(r->batches);
    r->batches = NULL;
    r->n_batches = 0;
}

static void
kumod_repl_on_copied(void *arg, int status)
{
    struct kumod_repl_copy *cp = arg;
    struct kumod_repl *r = cp->r;

    KM_ASSERT(r->copies > 0 && r->kd->inflight_body_ops > 0);
    r->copies--;
    r->kd->inflight_body_ops--;
    if (status == 0) {
        kumod_repl_batch_add(r, cp->shard, cp->node, cp->id);
    } else if (!r->stopping) {
        LOG_WARN("kumod_repl: %s: StoreBody to node %llu: %s: retrying next "
                 "round",
                 cp->id, (unsigned long long)cp->node, km_strerror(status));
    }
    free(cp);
    if (r->copies == 0) {
        kumod_repl_flush(r);
    }
    kumod_repl_unref(r);
}

/* Read message id from the local spools into b (bufs owned by the
 * caller). KM_ENOENT when this node lacks a copy. */
static int
kumod_repl_read(struct kumod *kd, const char *id, uint32_t shard,
                struct buf *meta, struct buf *data, struct cluster_body *b)
{
    int rv = spool_get(kd->meta_spool, id, meta);

    if (rv == 0) {
        rv = spool_get(kd->data_spool, id, data);
    }
    if (rv != 0) {
        return rv;
    }
    memset(b, 0, sizeof(*b));
    snprintf(b->id, sizeof(b->id), "%s", id);
    b->shard = shard;
    b->meta = meta->data;
    b->meta_len = meta->len;
    b->data = data->data;
    b->data_len = data->len;
    SHA256((const unsigned char *)buf_cstr(data), data->len, b->digest);
    return 0;
}

static bool
kumod_repl_visit(void *arg, const struct cluster_replica_need *need)
{
    struct kumod_repl *r = arg;
    struct kumod *kd = r->kd;
    const struct cluster_msg *m = need->msg;
    struct buf meta = BUF_INIT, data = BUF_INIT;
    struct kumod_repl_copy *cp;
    struct cluster_body b;
    int rv;

    if (r->started >= KUMOD_REPL_MAX_COPIES) {
        r->full = true;
        return false;
    }
    rv = kumod_repl_read(kd, m->id, m->shard, &meta, &data, &b);
    if (rv != 0) {
        goto out; /* not here (yet): kumod.c fetches what it owns */
    }
    r->started++;
    if (need->target == cluster_self_id(kd->cluster)) {
        /* A copy this node fetched but is not listed for. */
        kumod_repl_batch_add(r, m->shard, need->target, m->id);
        goto out;
    }
    cp = km_calloc(1, sizeof(*cp));
    cp->r = r;
    memcpy(cp->id, m->id, sizeof(cp->id));
    cp->shard = m->shard;
    cp->node = need->target;
    rv = cluster_store_body(kd->cluster, need->target, &b,
                            KUMOD_REPL_COPY_TIMEOUT, kumod_repl_on_copied, cp);
    if (rv != 0) {
        LOG_DEBUG("kumod_repl: %s: StoreBody to node %llu: %s", m->id,
                  (unsigned long long)need->target, km_strerror(rv));
        free(cp);
        goto out;
    }
    r->copies++;
    r->refs++;
    kd->inflight_body_ops++; /* shutdown waits for the answer */
out:
    buf_fini(&meta);
    buf_fini(&data);
    return true;
}

static void
kumod_repl_on_tick(uv_timer_t *t)
{
    struct kumod_repl *r = t->data;

    if (!kumod_repl_active(r)) {
        return;
    }
    (void)kumod_body_reconcile(r->kd);
    kumod_repl_gauge(r);
    if (r->copies > 0 || r->commits > 0 || !cluster_has_lease(r->kd->cluster)) {
        return; /* the previous round is still going */
    }
    r->started = 0;
    r->full = false;
    cluster_foreach_under_replicated(r->kd->cluster, kumod_repl_visit, r);
    if (r->copies == 0) {
        kumod_repl_flush(r);
    }
}

void
kumod_repl_start(struct kumod *kd)
{
    struct kumod_repl *r;

    if (kd->repl != NULL || !cluster_is_group(kd->cluster)) {
        return;
    }
    r = km_calloc(1, sizeof(*r));
    r->kd = kd;
    r->refs = 1; /* the timer handle */
    uv_timer_init(kd->loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, kumod_repl_on_tick, KUMOD_REPL_INTERVAL_MS,
                   KUMOD_REPL_INTERVAL_MS);
    kd->repl = r;
}

void
kumod_repl_kick(struct kumod *kd)
{
    struct kumod_repl *r = kd->repl;

    if (r != NULL && !r->stopping) {
        uv_timer_start(&r->timer, kumod_repl_on_tick, KUMOD_REPL_KICK_MS,
                       KUMOD_REPL_INTERVAL_MS);
    }
}

void
kumod_repl_stop(struct kumod *kd)
{
    struct kumod_repl *r = kd->repl;

    if (r == NULL) {
        return;
    }
    kd->repl = NULL;
    r->stopping = true;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, kumod_repl_on_closed);
}
