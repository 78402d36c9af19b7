/* cluster_fsm.c - the replicated state machine: queued messages by id,
 * tombstones of done ids (so a re-proposed Enqueue is ignored) and the FSM
 * clock, max(previous, batch_time_ms). Deterministic: no clock, no
 * randomness, no I/O; the same entries give the same state on every node.
 * Host callbacks fire only once the node is ready (replay is silent).
 * Knows nothing of raft; cluster_raft.c drives it. Loop thread only. */
#include "cluster_int.h"

#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "base/km_map.h"

struct cluster_fsm {
    struct km_map *msgs;  /* id -> struct cluster_fsm_msg */
    struct km_map *tombs; /* id -> struct cluster_tomb */
    struct km_map *rules; /* admin rule id -> struct cluster_fsm_admin */
    /* Tombstones in FSM-time order, oldest first, for O(1) pruning. */
    struct cluster_tomb *tomb_head;
    struct cluster_tomb **tomb_tail;
    int64_t time_ms;
    struct cluster_host host;
    bool ready;
};

void
cluster_fsm_msg_free(struct cluster_fsm_msg *m)
{
    if (m == NULL) {
        return;
    }
    free(m->queue);
    free(m->tenant);
    free(m->campaign);
    free(m->egress_pool);
    free(m->last_response);
    free(m->replicas);
    free(m);
}

static void
cluster_fsm_admin_free(struct cluster_fsm_admin *a)
{
    if (a != NULL) {
        free(a->json);
        free(a);
    }
}

static void
cluster_fsm_clear(struct cluster_fsm *f)
{
    struct km_map_iter it;
    void *v;

    km_map_iter_init(&it, f->msgs);
    while (km_map_iter_next(&it, NULL, &v)) {
        cluster_fsm_msg_free(v);
    }
    km_map_clear(f->msgs);
    while (f->tomb_head != NULL) {
        struct cluster_tomb *t = f->tomb_head;
        f->tomb_head = t->next;
        free(t);
    }
    f->tomb_tail = &f->tomb_head;
    km_map_clear(f->tombs);
    km_map_iter_init(&it, f->rules);
    while (km_map_iter_next(&it, NULL, &v)) {
        cluster_fsm_admin_free(v);
    }
    km_map_clear(f->rules);
    f->time_ms = 0;
}

struct cluster_fsm *
cluster_fsm_new(void)
{
    struct cluster_fsm *f = km_calloc(1, sizeof(*f));

    f->msgs = km_map_new();
    f->tombs = km_map_new();
    f->rules = km_map_new();
    f->tomb_tail = &f->tomb_head;
    return f;
}

void
cluster_fsm_free(struct cluster_fsm *f)
{
    if (f == NULL) {
        return;
    }
    cluster_fsm_clear(f);
    km_map_free(f->msgs);
    km_map_free(f->tombs);
    km_map_free(f->rules);
    free(f);
}

void
cluster_fsm_set_host(struct cluster_fsm *f, const struct cluster_host *host)
{
    f->host = *host;
}

void
cluster_fsm_set_ready(struct cluster_fsm *f, bool ready)
{
    f->ready = ready;
}

/* Build an FSM entry from an Enqueue record (borrowed). */
static struct cluster_fsm_msg *
cluster_fsm_msg_from_rec(const struct cluster_rec *r)
{
    struct cluster_fsm_msg *m = km_calloc(1, sizeof(*m));

    memcpy(m->pub.id, r->id, sizeof(m->pub.id));
    m->queue = km_strdup(r->queue != NULL ? r->queue : "");
    m->tenant = r->tenant != NULL ? km_strdup(r->tenant) : NULL;
    m->campaign = r->campaign != NULL ? km_strdup(r->campaign) : NULL;
    m->egress_pool = r->egress_pool != NULL ? km_strdup(r->egress_pool) : NULL;
    m->last_response = r->response != NULL ? km_strdup(r->response) : NULL;
    m->shard_epoch = r->shard_epoch;
    if (r->n_replicas > 0) {
        m->replicas =
            km_memdup(r->replicas, r->n_replicas * sizeof(*r->replicas));
        m->n_replicas = r->n_replicas;
    }
    m->pub.queue = m->queue;
    m->pub.tenant = m->tenant;
    m->pub.campaign = m->campaign;
    m->pub.egress_pool = m->egress_pool;
    m->pub.shard = r->shard;
    m->pub.created_ms = r->created_ms;
    m->pub.due_ms = r->due_ms;
    m->pub.expires_ms = r->expires_ms;
    m->pub.attempts = r->attempts;
    m->pub.size = r->size;
    memcpy(m->pub.digest, r->digest, sizeof(m->pub.digest));
    m->pub.accepted_by = r->accepted_by;
    return m;
}

bool
cluster_fsm_is_tombstoned(const struct cluster_fsm *f, const char *id)
{
    const struct cluster_tomb *t = km_map_get(f->tombs, id);

    /* An expired tombstone counts as absent whether or not it has been
     * pruned yet, so pruning time never changes the outcome. */
    return t != NULL && t->done_at_ms + CLUSTER_TOMBSTONE_TTL_MS >= f->time_ms;
}

static void
cluster_fsm_prune(struct cluster_fsm *f)
{
    while (f->tomb_head != NULL &&
           f->tomb_head->done_at_ms + CLUSTER_TOMBSTONE_TTL_MS < f->time_ms) {
        struct cluster_tomb *t = f->tomb_head;
        void *v = NULL;
        f->tomb_head = t->next;
        if (f->tomb_head == NULL) {
            f->tomb_tail = &f->tomb_head;
        }
        /* The map may hold a newer tombstone for the same id. */
        if (km_map_get(f->tombs, t->id) == t) {
            km_map_remove(f->tombs, t->id, &v);
        }
        free(t);
    }
}

static void
cluster_fsm_add_tomb(struct cluster_fsm *f, const char *id, int64_t at_ms)
{
    struct cluster_tomb *t = km_calloc(1, sizeof(*t));

    memcpy(t->id, id, sizeof(t->id));
    t->id[32] = '\0';
    t->done_at_ms = at_ms;
    /* A re-added id replaces the map entry; the old one stays in the list
     * (not in the map) until pruned. */
    km_map_put(f->tombs, t->id, t, NULL);
    *f->tomb_tail = t;
    f->tomb_tail = &t->next;
}

static void
cluster_fsm_enqueue(struct cluster_fsm *f, const struct cluster_rec *r)
{
    if (km_map_has(f->msgs, r->id) || cluster_fsm_is_tombstoned(f, r->id)) {
        return; /* a re-proposal after an unknown outcome: idempotent */
    }
    struct cluster_fsm_msg *m = cluster_fsm_msg_from_rec(r);
    km_map_put(f->msgs, m->pub.id, m, NULL);
    if (f->ready && f->host.on_enqueue != NULL) {
        f->host.on_enqueue(f->host.ctx, &m->pub);
    }
}

static void
cluster_fsm_deferred(struct cluster_fsm *f, const struct cluster_rec *r)
{
    struct cluster_fsm_msg *m = km_map_get(f->msgs, r->id);

    if (m == NULL) {
        return;
    }
    /* TODO(cluster): drop when r->shard_epoch is older than the shard's
     * current epoch, once the FSM holds the shard map. */
    m->pub.attempts = r->attempts;
    m->pub.due_ms = r->due_ms;
    free(m->last_response);
    m->last_response = r->response != NULL ? km_strdup(r->response) : NULL;
    if (f->ready && f->host.on_deferred != NULL) {
        f->host.on_deferred(f->host.ctx, &m->pub);
    }
}

static void
cluster_fsm_done(struct cluster_fsm *f, const struct cluster_rec *r)
{
    void *v = NULL;

    /* Done is a true fact: it applies whatever the epoch, and tombstones
     * the id even if the message is unknown here. */
    bool was_live = km_map_remove(f->msgs, r->id, &v);
    cluster_fsm_msg_free(v);
    if (!cluster_fsm_is_tombstoned(f, r->id)) {
        cluster_fsm_add_tomb(f, r->id, f->time_ms);
    }
    cluster_fsm_prune(f);
    if (was_live && f->ready && f->host.on_done != NULL) {
        f->host.on_done(f->host.ctx, r->id, r->outcome);
    }
}

/* Drop rules whose expiry has passed in FSM time (on every node alike). */
static void
cluster_fsm_expire_rules(struct cluster_fsm *f)
{
    struct km_map_iter it;
    const char *key;
    void *v;

    km_map_iter_init(&it, f->rules);
    while (km_map_iter_next(&it, &key, &v)) {
        struct cluster_fsm_admin *a = v;
        if (a->pub.expires_ms != 0 && a->pub.expires_ms <= f->time_ms) {
            km_map_remove(f->rules, key, NULL);
            cluster_fsm_admin_free(a);
        }
    }
}

static struct cluster_fsm_admin *
cluster_fsm_admin_from_rec(const struct cluster_rec *r)
{
    struct cluster_fsm_admin *a = km_calloc(1, sizeof(*a));

    snprintf(a->id, sizeof(a->id), "%s", r->admin_id);
    a->json = km_strdup(r->admin_json != NULL ? r->admin_json : "");
    a->pub.id = a->id;
    a->pub.kind = r->admin_kind;
    a->pub.json = a->json;
    a->pub.expires_ms = r->expires_ms;
    return a;
}

static void
cluster_fsm_admin(struct cluster_fsm *f, const struct cluster_rec *r)
{
    void *old = NULL;

    if (r->admin_cancel) {
        if (km_map_remove(f->rules, r->admin_id, &old)) {
            if (f->ready && f->host.on_admin != NULL) {
                f->host.on_admin(f->host.ctx, old, true);
            }
            cluster_fsm_admin_free(old);
        }
        return;
    }
    if (r->expires_ms != 0 && r->expires_ms <= f->time_ms) {
        return; /* already expired in FSM time */
    }
    struct cluster_fsm_admin *a = cluster_fsm_admin_from_rec(r);
    km_map_put(f->rules, a->id, a, &old);
    cluster_fsm_admin_free(old);
    if (f->ready && f->host.on_admin != NULL) {
        f->host.on_admin(f->host.ctx, &a->pub, false);
    }
}

void
cluster_fsm_apply_batch(struct cluster_fsm *f, const struct cluster_batch *b)
{
    if (b->batch_time_ms > f->time_ms) {
        f->time_ms = b->batch_time_ms;
    }
    for (size_t i = 0; i < b->n; i++) {
        const struct cluster_rec *r = &b->recs[i];
        switch (r->kind) {
        case CLUSTER_REC_ENQUEUE:
            cluster_fsm_enqueue(f, r);
            break;
        case CLUSTER_REC_DEFERRED:
            cluster_fsm_deferred(f, r);
            break;
        case CLUSTER_REC_DONE:
            cluster_fsm_done(f, r);
            break;
        case CLUSTER_REC_ADMIN:
            cluster_fsm_admin(f, r);
            break;
        case CLUSTER_REC_OTHER:
            break;
        }
    }
    cluster_fsm_expire_rules(f);
}

int
cluster_fsm_apply(struct cluster_fsm *f, const void *data, size_t len)
{
    struct cluster_batch b;
    int rv = cluster_msg_decode_batch(data, len, &b);

    if (rv != 0) {
        return rv;
    }
    cluster_fsm_apply_batch(f, &b);
    cluster_batch_fini(&b);
    return 0;
}

int
cluster_fsm_snapshot(const struct cluster_fsm *f, size_t chunk_records,
                     cluster_alloc_fn alloc, cluster_free_fn release,
                     struct cluster_blob **out, size_t *n)
{
    size_t n_msgs = km_map_count(f->msgs);
    size_t n_tombs = 0, i = 0;
    const struct cluster_fsm_msg **msgs;
    const struct cluster_tomb **tombs;
    struct km_map_iter it;
    void *v;

    msgs = km_calloc(n_msgs + 1, sizeof(*msgs));
    km_map_iter_init(&it, f->msgs);
    while (km_map_iter_next(&it, NULL, &v)) {
        msgs[i++] = v;
    }
    /* Live tombstones in FIFO order, so the restored list stays sorted. */
    tombs = km_calloc(km_map_count(f->tombs) + 1, sizeof(*tombs));
    for (const struct cluster_tomb *t = f->tomb_head; t != NULL; t = t->next) {
        if (km_map_get(f->tombs, t->id) == t &&
            cluster_fsm_is_tombstoned(f, t->id)) {
            tombs[n_tombs++] = t;
        }
    }
    size_t n_rules = 0;
    const struct cluster_fsm_admin **rules =
        km_calloc(km_map_count(f->rules) + 1, sizeof(*rules));
    km_map_iter_init(&it, f->rules);
    while (km_map_iter_next(&it, NULL, &v)) {
        rules[n_rules++] = v;
    }
    int rv = cluster_msg_encode_snapshot(
        f->time_ms, (const struct cluster_fsm_msg *const *)msgs, n_msgs,
        (const struct cluster_tomb *const *)tombs, n_tombs,
        (const struct cluster_fsm_admin *const *)rules, n_rules, chunk_records,
        alloc, release, out, n);
    free(rules);
    free(tombs);
    free(msgs);
    return rv;
}

static void
cluster_fsm_on_snap_time(void *ctx, int64_t fsm_time_ms)
{
    struct cluster_fsm *f = ctx;

    f->time_ms = fsm_time_ms;
}

static int
cluster_fsm_on_snap_msg(void *ctx, const struct cluster_rec *rec)
{
    struct cluster_fsm *f = ctx;

    if (km_map_has(f->msgs, rec->id)) {
        return KM_ECORRUPT;
    }
    struct cluster_fsm_msg *m = cluster_fsm_msg_from_rec(rec);
    km_map_put(f->msgs, m->pub.id, m, NULL);
    return 0;
}

static int
cluster_fsm_on_snap_tomb(void *ctx, const char *id, int64_t done_at_ms)
{
    struct cluster_fsm *f = ctx;

    cluster_fsm_add_tomb(f, id, done_at_ms);
    return 0;
}

static int
cluster_fsm_on_snap_admin(void *ctx, const struct cluster_rec *rec)
{
    struct cluster_fsm *f = ctx;
    struct cluster_fsm_admin *a = cluster_fsm_admin_from_rec(rec);
    void *old = NULL;

    km_map_put(f->rules, a->id, a, &old);
    cluster_fsm_admin_free(old);
    return 0;
}

int
cluster_fsm_restore(struct cluster_fsm *f, const void *data, size_t len)
{
    /* Decode into a fresh FSM so that a bad image keeps the old state. */
    struct cluster_fsm *tmp = cluster_fsm_new();
    struct cluster_snap_sink sink = {
        .ctx = tmp,
        .on_time = cluster_fsm_on_snap_time,
        .on_msg = cluster_fsm_on_snap_msg,
        .on_tomb = cluster_fsm_on_snap_tomb,
        .on_admin = cluster_fsm_on_snap_admin,
    };
    int rv = cluster_msg_decode_snapshot(data, len, &sink);

    if (rv != 0) {
        cluster_fsm_free(tmp);
        return rv;
    }
    cluster_fsm_clear(f);
    km_map_free(f->msgs);
    km_map_free(f->tombs);
    km_map_free(f->rules);
    f->msgs = tmp->msgs;
    f->tombs = tmp->tombs;
    f->rules = tmp->rules;
    f->tomb_head = tmp->tomb_head;
    f->tomb_tail = tmp->tomb_head != NULL ? tmp->tomb_tail : &f->tomb_head;
    f->time_ms = tmp->time_ms;
    free(tmp);
    return 0;
}

int64_t
cluster_fsm_time_ms(const struct cluster_fsm *f)
{
    return f->time_ms;
}

size_t
cluster_fsm_count(const struct cluster_fsm *f)
{
    return km_map_count(f->msgs);
}

size_t
cluster_fsm_tombstone_count(const struct cluster_fsm *f)
{
    return km_map_count(f->tombs);
}

const struct cluster_fsm_msg *
cluster_fsm_lookup(const struct cluster_fsm *f, const char *id)
{
    return km_map_get(f->msgs, id);
}

void
cluster_fsm_foreach(const struct cluster_fsm *f,
                    bool (*fn)(void *arg, const struct cluster_msg *m),
                    void *arg)
{
    struct km_map_iter it;
    void *v;

    km_map_iter_init(&it, f->msgs);
    while (km_map_iter_next(&it, NULL, &v)) {
        const struct cluster_fsm_msg *m = v;
        if (!fn(arg, &m->pub)) {
            break;
        }
    }
}

void
cluster_fsm_foreach_admin(const struct cluster_fsm *f,
                          bool (*fn)(void *arg,
                                     const struct cluster_admin_rule *r),
                          void *arg)
{
    struct km_map_iter it;
    void *v;

    km_map_iter_init(&it, f->rules);
    while (km_map_iter_next(&it, NULL, &v)) {
        const struct cluster_fsm_admin *a = v;
        if (!fn(arg, &a->pub)) {
            break;
        }
    }
}

size_t
cluster_fsm_admin_count(const struct cluster_fsm *f)
{
    return km_map_count(f->rules);
}
