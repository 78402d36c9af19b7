/* kumod_body.c - message bodies in a multi-node group (CLUSTER.md
 * §4.3-4.6): copies stored for other nodes (StoreBody), bodies served to
 * them (FetchBody), messages queued by their shard owner (fetching a body it
 * lacks from the message's replicas), inherited shards held for
 * failover_grace, and local bodies removed when Done is applied. A
 * one-node kumod never gets here. Loop thread only. */
#include "kumod_body.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "base/buf.h"
#include "base/km.h"
#include "base/km_map.h"
#include "base/log.h"
#include "cluster.h"
#include "kumod.h"
#include "message.h"
#include "metrics.h"
#include "queue.h"
#include "spool.h"

/* Pause before asking every node again for a body none could provide. */
#define KUMOD_BODY_FETCH_RETRY_MS 5000u

/* A StoreBody being written: two synced puts, then the answer. Counted in
 * inflight_body_ops so that shutdown waits for the answer (the cluster and
 * its link close only after that). */
struct kumod_body_store {
    struct kumod *kd;
    struct cluster_body_reply *r;
    size_t pending;
    int status;
};

static void
kumod_body_on_body_spooled(void *arg, int status)
{
    struct kumod_body_store *st = arg;

    if (status != 0 && st->status == 0) {
        st->status = status;
    }
    KM_ASSERT(st->pending > 0);
    if (--st->pending > 0) {
        return;
    }
    if (st->status != 0) {
        LOG_WARN("kumod: StoreBody: spool write failed: %s",
                 km_strerror(st->status));
    }
    cluster_body_reply(
        st->r, st->status == KM_ENOSPC || st->status == 0 ? st->status : KM_EIO,
        NULL);
    KM_ASSERT(st->kd->inflight_body_ops > 0);
    st->kd->inflight_body_ops--;
    free(st);
}

/* Store b in both spools (synced); st->pending counts the callbacks. */
static void
kumod_body_put_body(struct kumod *kd, const struct cluster_body *b,
                    spool_done_cb cb, void *arg, int *status)
{
    int rv;

    rv = spool_put(kd->data_spool, b->id, b->data, b->data_len, cb, arg);
    if (rv != 0) {
        *status = rv;
        cb(arg, rv);
    }
    rv = spool_put(kd->meta_spool, b->id, b->meta, b->meta_len, cb, arg);
    if (rv != 0) {
        *status = rv;
        cb(arg, rv);
    }
}

void
kumod_body_on_store_body(void *ctx, uint64_t from, const struct cluster_body *b,
                         struct cluster_body_reply *r)
{
    struct kumod *kd = ctx;
    struct kumod_body_store *st;

    (void)from;
    if (kumod_is_stopping(kd) || kd->data_spool == NULL) {
        cluster_body_reply(r, KM_EAGAIN, NULL);
        return;
    }
    if (disk_guard_is_low(kd->guard)) {
        /* Below the free-space soft mark: the sender picks another. */
        cluster_body_reply(r, KM_ENOSPC, NULL);
        return;
    }
    st = km_calloc(1, sizeof(*st));
    st->kd = kd;
    st->r = r;
    st->pending = 2;
    kd->inflight_body_ops++;
    kumod_body_put_body(kd, b, kumod_body_on_body_spooled, st, &st->status);
}

void
kumod_body_on_fetch_body(void *ctx, uint64_t from, const char *id,
                         struct cluster_body_reply *r)
{
    struct kumod *kd = ctx;
    struct buf meta = BUF_INIT, data = BUF_INIT;
    struct cluster_body b;
    int rv;

    (void)from;
    rv = spool_get(kd->meta_spool, id, &meta);
    if (rv == 0) {
        rv = spool_get(kd->data_spool, id, &data);
    }
    if (rv != 0) {
        cluster_body_reply(r, rv == KM_ENOENT ? KM_ENOENT : KM_EIO, NULL);
        goto out;
    }
    memset(&b, 0, sizeof(b));
    snprintf(b.id, sizeof(b.id), "%s", id);
    b.meta = meta.data;
    b.meta_len = meta.len;
    b.data = data.data;
    b.data_len = data.len;
    SHA256((const unsigned char *)buf_cstr(&data), data.len, b.digest);
    cluster_body_reply(r, 0, &b);
out:
    buf_fini(&meta);
    buf_fini(&data);
}

bool
kumod_body_has_local_body(struct kumod *kd, const char *id)
{
    struct buf meta = BUF_INIT, data = BUF_INIT;
    bool ok = spool_get(kd->meta_spool, id, &meta) == 0 &&
              spool_get(kd->data_spool, id, &data) == 0;

    buf_fini(&meta);
    buf_fini(&data);
    return ok;
}

/* Queue message cm from the local spool, due no earlier than min_due_ms.
 * KM_ENOENT when this node has no copy. */
static int
kumod_body_queue_local(struct kumod *kd, const struct cluster_msg *cm,
                       int64_t min_due_ms, const char *reason)
{
    struct buf meta = BUF_INIT, data = BUF_INIT;
    struct message *m = NULL;
    int rv;

    rv = spool_get(kd->meta_spool, cm->id, &meta);
    if (rv == 0) {
        /* Only its presence matters: egress reads it again. */
        rv = spool_get(kd->data_spool, cm->id, &data);
    }
    if (rv == 0) {
        rv = message_from_spool(cm->id, meta.data, meta.len, NULL, 0, &m);
    }
    buf_fini(&meta);
    buf_fini(&data);
    if (rv != 0) {
        return rv;
    }
    message_set_size(m, (size_t)cm->size);
    message_set_num_attempts(m, cm->attempts);
    message_set_due_ms(m, cm->due_ms > min_due_ms ? cm->due_ms : min_due_ms);
    queue_insert(kd->queues, m, reason);
    message_unref(m);
    return 0;
}

/* A body this node lacks, fetched from the message's replicas (then from
 * every configured peer), stored locally (synced), then queued. */
struct kumod_body_fetch {
    struct kumod *kd;
    char id[KM_ID_HEX_LEN + 1];
    int64_t min_due_ms;
    uint64_t nodes[CLUSTER_MAX_MSG_REPLICAS + 16];
    size_t n_nodes, next;
    size_t pending;
    int status;
    uv_timer_t retry; /* a round after every node failed */
    bool retry_open;
    unsigned rounds;
};

static void kumod_body_fetch_next(struct kumod_body_fetch *f);
static void kumod_body_fetch_on_retry(uv_timer_t *t);

static void
kumod_body_fetch_on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void
kumod_body_fetch_end(struct kumod_body_fetch *f)
{
    struct kumod *kd = f->kd;

    KM_ASSERT(kd->inflight_body_ops > 0);
    kd->inflight_body_ops--;
    if (kd->body_fetching != NULL &&
        km_map_get(kd->body_fetching, f->id) == f) {
        km_map_remove(kd->body_fetching, f->id, NULL);
        if (km_map_count(kd->body_fetching) == 0) {
            km_map_free(kd->body_fetching);
            kd->body_fetching = NULL;
        }
    }
    if (f->retry_open) {
        uv_close((uv_handle_t *)&f->retry, kumod_body_fetch_on_closed);
    } else {
        free(f);
    }
}

static void
kumod_body_on_fetched_spooled(void *arg, int status)
{
    struct kumod_body_fetch *f = arg;
    struct kumod *kd = f->kd;
    const struct cluster_msg *cm;

    if (status != 0 && f->status == 0) {
        f->status = status;
    }
    KM_ASSERT(f->pending > 0);
    if (--f->pending > 0) {
        return;
    }
    if (f->status != 0) {
        LOG_ERROR("kumod: %s: storing the fetched body: %s", f->id,
                  km_strerror(f->status));
        kumod_body_fetch_end(f);
        return;
    }
    /* Still queued in the FSM and still ours? Done may have come. */
    cm = kd->cluster != NULL && !kumod_is_stopping(kd)
             ? cluster_lookup(kd->cluster, f->id)
             : NULL;
    if (cm != NULL && cluster_owns(kd->cluster, cm->shard) &&
        queue_find(kd->queues, f->id) == NULL) {
        (void)kumod_body_queue_local(kd, cm, f->min_due_ms, "Fetched");
    } else if (cm == NULL && kd->data_spool != NULL) {
        (void)spool_delete(kd->data_spool, f->id, NULL, NULL);
        (void)spool_delete(kd->meta_spool, f->id, NULL, NULL);
    }
    kumod_body_fetch_end(f);
}

static void
kumod_body_on_fetched(void *arg, int status, const struct cluster_body *b)
{
    struct kumod_body_fetch *f = arg;

    if (status != 0) {
        LOG_DEBUG("kumod: %s: FetchBody from node %llu: %s", f->id,
                  (unsigned long long)f->nodes[f->next - 1],
                  km_strerror(status));
        f->status = status;
        kumod_body_fetch_next(f);
        return;
    }
    if (kumod_is_stopping(f->kd) || f->kd->data_spool == NULL) {
        kumod_body_fetch_end(f);
        return;
    }
    f->pending = 2;
    f->status = 0;
    kumod_body_put_body(f->kd, b, kumod_body_on_fetched_spooled, f, &f->status);
}

static void
kumod_body_fetch_next(struct kumod_body_fetch *f)
{
    struct kumod *kd = f->kd;
    const struct cluster_msg *cm;

    while (f->next < f->n_nodes && !kumod_is_stopping(kd) &&
           kd->cluster != NULL) {
        uint64_t node = f->nodes[f->next++];
        if (cluster_fetch_body(kd->cluster, node, f->id, kumod_body_on_fetched,
                               f) == 0) {
            return;
        }
    }
    /* Every node failed: try again later while the message is still
     * queued in the FSM and this node still owns it. */
    cm = kd->cluster != NULL && !kumod_is_stopping(kd)
             ? cluster_lookup(kd->cluster, f->id)
             : NULL;
    if (cm == NULL || !cluster_owns(kd->cluster, cm->shard)) {
        kumod_body_fetch_end(f);
        return;
    }
    if (f->rounds++ == 0) {
        LOG_WARN("kumod: %s: no node could provide the body (%s): retrying "
                 "every %u ms",
                 f->id, km_strerror(f->status), KUMOD_BODY_FETCH_RETRY_MS);
    }
    if (!f->retry_open) {
        uv_timer_init(kd->loop, &f->retry);
        f->retry.data = f;
        f->retry_open = true;
    }
    uv_timer_start(&f->retry, kumod_body_fetch_on_retry,
                   KUMOD_BODY_FETCH_RETRY_MS, 0);
}

static void
kumod_body_fetch_add(struct kumod_body_fetch *f, uint64_t self, uint64_t node)
{
    if (node == 0 || node == self ||
        f->n_nodes == sizeof(f->nodes) / sizeof(f->nodes[0])) {
        return;
    }
    for (size_t i = 0; i < f->n_nodes; i++) {
        if (f->nodes[i] == node) {
            return;
        }
    }
    f->nodes[f->n_nodes++] = node;
}

/* Collect the nodes to ask: the message's replicas, then every peer. */
static void
kumod_body_fetch_plan(struct kumod_body_fetch *f, const struct cluster_msg *cm)
{
    struct kumod *kd = f->kd;
    uint64_t self = cluster_self_id(kd->cluster);

    f->n_nodes = f->next = 0;
    for (size_t i = 0; i < cm->n_replicas; i++) {
        kumod_body_fetch_add(f, self, cm->replicas[i]);
    }
    for (size_t i = 0; i < kd->cfg.n_cluster_peers; i++) {
        kumod_body_fetch_add(f, self, kd->cfg.cluster_peers[i].id);
    }
}

static void
kumod_body_fetch_on_retry(uv_timer_t *t)
{
    struct kumod_body_fetch *f = t->data;
    const struct cluster_msg *cm;

    cm = f->kd->cluster != NULL && !kumod_is_stopping(f->kd)
             ? cluster_lookup(f->kd->cluster, f->id)
             : NULL;
    if (cm == NULL) {
        kumod_body_fetch_end(f);
        return;
    }
    kumod_body_fetch_plan(f, cm);
    kumod_body_fetch_next(f);
}

void
kumod_body_fetch_start(struct kumod *kd, const struct cluster_msg *cm,
                       int64_t min_due_ms)
{
    struct kumod_body_fetch *f;

    if (kd->body_fetching != NULL && km_map_has(kd->body_fetching, cm->id)) {
        return; /* one fetch per id: it queues the message when done */
    }
    f = km_calloc(1, sizeof(*f));
    f->kd = kd;
    memcpy(f->id, cm->id, sizeof(f->id));
    f->min_due_ms = min_due_ms;
    f->status = KM_ENOENT;
    kumod_body_fetch_plan(f, cm);
    kd->inflight_body_ops++;
    if (kd->body_fetching == NULL) {
        kd->body_fetching = km_map_new();
    }
    km_map_put(kd->body_fetching, f->id, f, NULL);
    kumod_body_fetch_next(f);
}

/* Queue cm here (this node owns its shard): from the local spool, or
 * after fetching its body. */
static void
kumod_body_take_message(struct kumod *kd, const struct cluster_msg *cm,
                        int64_t min_due_ms, const char *reason)
{
    int rv;

    if (queue_find(kd->queues, cm->id) != NULL) {
        return;
    }
    rv = kumod_body_queue_local(kd, cm, min_due_ms, reason);
    if (rv == KM_ENOENT) {
        kumod_body_fetch_start(kd, cm, min_due_ms);
    } else if (rv != 0) {
        LOG_ERROR("kumod: %s: cannot queue: %s", cm->id, km_strerror(rv));
    }
}

void
kumod_body_on_cluster_enqueue(void *ctx, const struct cluster_msg *cm)
{
    struct kumod *kd = ctx;

    if (!cluster_is_group(kd->cluster) || kd->state != KUMOD_RUNNING ||
        !cluster_owns(kd->cluster, cm->shard)) {
        return;
    }
    kumod_body_take_message(kd, cm, 0, "Received");
}

struct kumod_body_sweep {
    struct kumod *kd;
    size_t taken;
};

static bool
kumod_body_reconcile_one(void *arg, const struct cluster_msg *cm)
{
    struct kumod_body_sweep *sw = arg;
    struct kumod *kd = sw->kd;

    if (!cluster_owns(kd->cluster, cm->shard) ||
        queue_find(kd->queues, cm->id) != NULL ||
        (kd->body_fetching != NULL && km_map_has(kd->body_fetching, cm->id))) {
        return true;
    }
    LOG_WARN("kumod: %s: queued in the group in shard %u, which this node "
             "owns, but not in its queue: queuing it",
             cm->id, (unsigned)cm->shard);
    sw->taken++;
    kumod_body_take_message(kd, cm, 0, "Reconciled");
    return true;
}

size_t
kumod_body_reconcile(struct kumod *kd)
{
    struct kumod_body_sweep sw = {.kd = kd};

    if (!cluster_is_group(kd->cluster) || kd->state != KUMOD_RUNNING ||
        kumod_is_stopping(kd)) {
        return 0;
    }
    cluster_foreach(kd->cluster, kumod_body_reconcile_one, &sw);
    if (sw.taken > 0 && kd->metrics != NULL) {
        metrics_inc(kd->metrics, "kumod_cluster_reconciled_messages",
                    "owned messages the owner's sweep found missing from its "
                    "queue and queued",
                    NULL, NULL, sw.taken);
    }
    return sw.taken;
}

struct kumod_body_inherit {
    struct kumod *kd;
    uint32_t shard;
    int64_t min_due_ms;
};

static bool
kumod_body_inherit_one(void *arg, const struct cluster_msg *cm)
{
    struct kumod_body_inherit *ih = arg;

    if (cm->shard == ih->shard) {
        kumod_body_take_message(ih->kd, cm, ih->min_due_ms, "Inherited");
    }
    return true;
}

void
kumod_body_on_shard_owner(void *ctx, uint32_t shard, uint64_t old_owner,
                          uint64_t new_owner, bool failover)
{
    struct kumod *kd = ctx;
    struct kumod_body_inherit ih = {.kd = kd, .shard = shard};
    struct cluster_settings st;

    (void)old_owner;
    if (!cluster_is_group(kd->cluster) || kd->state != KUMOD_RUNNING ||
        new_owner != cluster_self_id(kd->cluster)) {
        return;
    }
    if (failover) {
        /* CLUSTER.md §4.6: the old owner may still be finishing an
         * attempt it started before its lease ran out. */
        cluster_get_settings(kd->cluster, &st);
        ih.min_due_ms = km_now_wall_ms() + st.failover_grace_ms;
    }
    cluster_foreach(kd->cluster, kumod_body_inherit_one, &ih);
    kumod_repl_kick(kd);
}

void
kumod_body_on_cluster_done(void *ctx, const char *id, int outcome)
{
    struct kumod *kd = ctx;

    (void)outcome;
    if (!cluster_is_group(kd->cluster)) {
        return; /* one node: queue.c deletes after its own Done */
    }
    if (kd->queues != NULL) { /* NULL before the pipeline opens */
        (void)queue_forget(kd->queues, id);
    }
    (void)spool_delete(kd->data_spool, id, NULL, NULL);
    (void)spool_delete(kd->meta_spool, id, NULL, NULL);
}
