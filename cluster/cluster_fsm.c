/* cluster_fsm.c - the replicated state machine: queued messages by id,
 * tombstones of done ids (so a re-proposed Enqueue is ignored), admin
 * rules, the cluster settings, the NodeState table and the shard map that
 * is derived from them (weighted HRW over the UP nodes, an epoch per shard
 * bumped when its list changes), and the FSM clock, max(previous,
 * batch_time_ms), and the cluster-wide throttle windows (cluster_throttle.c
 * computes their grants). Deterministic: no clock, no
 * randomness, no I/O; the same entries give the same state on every node.
 * Host callbacks fire only once the node is ready (replay is silent).
 * Knows nothing of raft; cluster_raft.c drives it. Loop thread only. */
#include "cluster_int.h"

#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "base/km_map.h"
#include "cluster_core.h"
#include "cluster_shard.h"

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

void
cluster_fsm_admin_free(struct cluster_fsm_admin *a)
{
    if (a != NULL) {
        free(a->json);
        free(a);
    }
}

static void
cluster_fsm_clear_cluster(struct cluster_fsm *f)
{
    for (size_t i = 0; i < f->n_nodes; i++) {
        free(f->nodes[i].raft_addr);
        free(f->nodes[i].link_url);
    }
    free(f->nodes);
    f->nodes = NULL;
    f->n_nodes = 0;
    free(f->cluster_id);
    f->cluster_id = NULL;
    f->has_settings = false;
    memset(&f->settings, 0, sizeof(f->settings));
    free(f->map_n);
    free(f->map_replicas);
    free(f->epochs);
    f->map_n = NULL;
    f->map_replicas = NULL;
    f->epochs = NULL;
    f->map_shards = 0;
    f->map_r = 0;
}

void
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
    km_map_iter_init(&it, f->throttles);
    while (km_map_iter_next(&it, NULL, &v)) {
        cluster_throttle_win_free(v);
    }
    km_map_clear(f->throttles);
    f->time_ms = 0;
    cluster_fsm_clear_cluster(f);
}

struct cluster_fsm *
cluster_fsm_new(void)
{
    struct cluster_fsm *f = km_calloc(1, sizeof(*f));

    f->msgs = km_map_new();
    f->tombs = km_map_new();
    f->rules = km_map_new();
    f->throttles = km_map_new();
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
    km_map_free(f->throttles);
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

void
cluster_fsm_set_node_notify(struct cluster_fsm *f, cluster_fsm_node_cb cb,
                            void *ctx)
{
    f->node_cb = cb;
    f->node_ctx = ctx;
}

/* Build an FSM entry from an Enqueue record (borrowed). */
struct cluster_fsm_msg *
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
    m->pub.shard_epoch = r->shard_epoch;
    m->pub.n_replicas = r->n_replicas < CLUSTER_MAX_MSG_REPLICAS
                            ? r->n_replicas
                            : CLUSTER_MAX_MSG_REPLICAS;
    if (m->pub.n_replicas > 0) {
        memcpy(m->pub.replicas, r->replicas,
               m->pub.n_replicas * sizeof(*m->pub.replicas));
    }
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

void
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
    /* A report from an owner that lost the shard since (its epoch is
     * older) is stale: the new owner decides. 0: the proposer did not
     * say. */
    if (r->shard_epoch != 0 && m->pub.shard < f->map_shards &&
        r->shard_epoch < f->epochs[m->pub.shard]) {
        return;
    }
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

struct cluster_fsm_admin *
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

void
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

/* Cluster state */

struct cluster_fsm_node *
cluster_fsm_find_node(const struct cluster_fsm *f, uint64_t id)
{
    size_t lo = 0, hi = f->n_nodes;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->nodes[mid].id == id) {
            return &f->nodes[mid];
        }
        if (f->nodes[mid].id < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

/* The node `id`, added in id order (state 0) if missing. */
struct cluster_fsm_node *
cluster_fsm_get_node(struct cluster_fsm *f, uint64_t id)
{
    struct cluster_fsm_node *n = cluster_fsm_find_node(f, id);
    size_t at = 0;

    if (n != NULL) {
        return n;
    }
    while (at < f->n_nodes && f->nodes[at].id < id) {
        at++;
    }
    f->nodes = km_realloc(f->nodes, (f->n_nodes + 1) * sizeof(*f->nodes));
    memmove(&f->nodes[at + 1], &f->nodes[at],
            (f->n_nodes - at) * sizeof(*f->nodes));
    f->n_nodes++;
    n = &f->nodes[at];
    memset(n, 0, sizeof(*n));
    n->id = id;
    n->weight = 1;
    return n;
}

static bool
cluster_fsm_node_gone(const struct cluster_fsm *f, uint64_t id)
{
    const struct cluster_fsm_node *n = cluster_fsm_find_node(f, id);

    return n != NULL &&
           (n->state == CLUSTER_NODE_DOWN || n->state == CLUSTER_NODE_REMOVED);
}

/* Recompute the shard map from the settings and the UP nodes; bump the
 * epoch of every shard whose list changed and report owner changes. */
static void
cluster_fsm_remap(struct cluster_fsm *f)
{
    struct cluster_shard_node *cand;
    struct cluster_shard_map next;
    uint64_t max_epoch = 0;

    if (!f->has_settings) {
        return;
    }
    cand = km_calloc(f->n_nodes + 1, sizeof(*cand));
    for (size_t i = 0; i < f->n_nodes; i++) {
        cand[i].id = f->nodes[i].id;
        cand[i].weight = f->nodes[i].weight;
        /* JOINING, DRAINING, DOWN and REMOVED nodes own nothing. */
        cand[i].eligible = f->nodes[i].state == CLUSTER_NODE_UP;
    }
    int rv = cluster_shard_map_compute(f->settings.shards,
                                       f->settings.replication_factor, cand,
                                       f->n_nodes, &next);
    free(cand);
    KM_ASSERT(rv == 0); /* ids are unique, shards and r are not 0 */

    /* A new shard count renumbers every shard: its epochs all start above
     * the old ones, so no (shard, epoch) pair is ever reused. */
    bool reshaped = f->map_shards != next.shards;
    uint64_t *epochs = km_calloc(next.shards, sizeof(*epochs));
    if (reshaped) {
        for (uint32_t s = 0; s < f->map_shards; s++) {
            max_epoch = f->epochs[s] > max_epoch ? f->epochs[s] : max_epoch;
        }
    }
    for (uint32_t s = 0; s < next.shards; s++) {
        size_t nn = 0, on = 0;
        const uint64_t *nl = cluster_shard_map_replicas(&next, s, &nn);
        const uint64_t *ol = NULL;
        if (s < f->map_shards) {
            on = f->map_n[s];
            ol = &f->map_replicas[(size_t)s * f->map_r];
        }
        bool same = !reshaped && on == nn &&
                    (nn == 0 || memcmp(ol, nl, nn * sizeof(*nl)) == 0);
        epochs[s] = reshaped ? max_epoch : f->epochs[s];
        if (!same && (nn > 0 || on > 0)) {
            epochs[s]++;
        }
        uint64_t old_owner = on > 0 ? ol[0] : 0;
        uint64_t new_owner = nn > 0 ? nl[0] : 0;
        if (old_owner != new_owner && f->ready &&
            f->host.on_shard_owner != NULL) {
            f->host.on_shard_owner(f->host.ctx, s, old_owner, new_owner,
                                   old_owner != 0 &&
                                       cluster_fsm_node_gone(f, old_owner));
        }
    }
    free(f->map_n);
    free(f->map_replicas);
    free(f->epochs);
    f->map_shards = next.shards;
    f->map_r = next.r;
    f->map_n = next.n_replicas;
    f->map_replicas = next.replicas;
    f->epochs = epochs;
}

/* Fill the fields the map cannot do without. */
static void
cluster_fsm_settings_norm(struct cluster_settings *st)
{
    if (st->shards == 0) {
        st->shards = 64;
    }
    if (st->replication_factor == 0) {
        st->replication_factor = 1;
    }
}

void
cluster_fsm_apply_settings(struct cluster_fsm *f, const struct cluster_rec *r)
{
    f->settings = r->settings;
    cluster_fsm_settings_norm(&f->settings);
    f->has_settings = true;
    free(f->cluster_id);
    f->cluster_id = r->cluster_id != NULL ? km_strdup(r->cluster_id) : NULL;
}

/* Update the table from a NodeState record and tell the notifier. */
static void
cluster_fsm_apply_node(struct cluster_fsm *f, const struct cluster_rec *r)
{
    struct cluster_fsm_node *n;

    if (cluster_fsm_find_node(f, r->node) == NULL &&
        f->n_nodes >= CLUSTER_MAX_NODES) {
        return;
    }
    n = cluster_fsm_get_node(f, r->node);
    n->state = r->node_state;
    if (n->state == CLUSTER_NODE_DOWN || n->state == CLUSTER_NODE_REMOVED) {
        /* Its connections are gone with it: free its slots. */
        struct km_map_iter it;
        const char *k;
        void *v;
        km_map_iter_init(&it, f->throttles);
        while (km_map_iter_next(&it, &k, &v)) {
            cluster_throttle_forget_node(v, r->node);
        }
    }
    n->weight = r->weight != 0 ? r->weight : 1;
    if (r->raft_addr != NULL) {
        free(n->raft_addr);
        n->raft_addr = km_strdup(r->raft_addr);
    }
    if (r->link_url != NULL) {
        free(n->link_url);
        n->link_url = km_strdup(r->link_url);
    }
    if (f->node_cb != NULL) {
        f->node_cb(f->node_ctx, n);
    }
}

/* ThrottleDefine: a new key (up to CLUSTER_MAX_THROTTLES) or a changed
 * definition. */
static void
cluster_fsm_throttle_define(struct cluster_fsm *f, const struct cluster_rec *r)
{
    struct cluster_throttle_win *w = km_map_get(f->throttles, r->throttle_key);

    if (w == NULL && km_map_count(f->throttles) >= CLUSTER_MAX_THROTTLES) {
        return;
    }
    bool added = w == NULL;
    cluster_throttle_apply_define(&w, r, f->time_ms);
    if (added) {
        km_map_put(f->throttles, w->key, w, NULL);
    }
}

/* ThrottleGrant: tokens for an unknown key are never granted. */
static void
cluster_fsm_throttle_grant(struct cluster_fsm *f, const struct cluster_rec *r)
{
    struct cluster_throttle_win *w = km_map_get(f->throttles, r->throttle_key);

    if (w != NULL) {
        cluster_throttle_apply_grant(w, r, f->time_ms);
    }
}

/* ReplicaUpdate: ids not live, or of another shard, are ignored. */
static void
cluster_fsm_replica_update(struct cluster_fsm *f, const struct cluster_rec *r)
{
    for (size_t i = 0; i < r->n_ids; i++) {
        struct cluster_fsm_msg *m = km_map_get(f->msgs, r->ids[i]);
        if (m != NULL && m->pub.shard == r->shard) {
            (void)cluster_replica_apply_msg(m, r);
        }
    }
}

void
cluster_fsm_apply_batch(struct cluster_fsm *f, const struct cluster_batch *b)
{
    bool remap = false;

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
        case CLUSTER_REC_SETTINGS:
            cluster_fsm_apply_settings(f, r);
            remap = true;
            break;
        case CLUSTER_REC_NODE_STATE:
            cluster_fsm_apply_node(f, r);
            remap = true;
            break;
        case CLUSTER_REC_THROTTLE_DEFINE:
            cluster_fsm_throttle_define(f, r);
            break;
        case CLUSTER_REC_THROTTLE_GRANT:
            cluster_fsm_throttle_grant(f, r);
            break;
        case CLUSTER_REC_THROTTLE_RETURN: {
            struct cluster_throttle_win *w =
                km_map_get(f->throttles, r->throttle_key);
            if (w != NULL) {
                cluster_throttle_apply_return(w, r);
            }
            break;
        }
        case CLUSTER_REC_REPLICA_UPDATE:
            cluster_fsm_replica_update(f, r);
            break;
        case CLUSTER_REC_OTHER:
            break;
        }
    }
    /* Once per entry: the bootstrap's records give one map, not one per
     * record. */
    if (remap) {
        cluster_fsm_remap(f);
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

bool
cluster_fsm_settings(const struct cluster_fsm *f, struct cluster_settings *out)
{
    if (!f->has_settings) {
        return false;
    }
    *out = f->settings;
    return true;
}

const char *
cluster_fsm_cluster_id(const struct cluster_fsm *f)
{
    return f->cluster_id;
}

size_t
cluster_fsm_nodes(const struct cluster_fsm *f,
                  const struct cluster_fsm_node **out)
{
    *out = f->nodes;
    return f->n_nodes;
}

const struct cluster_fsm_node *
cluster_fsm_node(const struct cluster_fsm *f, uint64_t id)
{
    return cluster_fsm_find_node(f, id);
}

size_t
cluster_fsm_shard(const struct cluster_fsm *f, uint32_t shard,
                  const uint64_t **out, uint64_t *epoch)
{
    if (shard >= f->map_shards) {
        *out = NULL;
        if (epoch != NULL) {
            *epoch = 0;
        }
        return 0;
    }
    *out = &f->map_replicas[(size_t)shard * f->map_r];
    if (epoch != NULL) {
        *epoch = f->epochs[shard];
    }
    return f->map_n[shard];
}

const struct km_map *
cluster_fsm_throttle_map(const struct cluster_fsm *f)
{
    return f->throttles;
}

struct cluster_throttle_win *
cluster_fsm_throttle(struct cluster_fsm *f, const char *key)
{
    return km_map_get(f->throttles, key);
}

size_t
cluster_fsm_up_count(const struct cluster_fsm *f)
{
    size_t n = 0;

    for (size_t i = 0; i < f->n_nodes; i++) {
        if (f->nodes[i].state == CLUSTER_NODE_UP) {
            n++;
        }
    }
    return n;
}
