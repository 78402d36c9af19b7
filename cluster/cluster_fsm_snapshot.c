/* cluster_fsm_snapshot.c - the FSM's snapshot and restore: the whole
 * state (messages, tombstones, admin rules, settings, nodes, the shard map,
 * throttle windows) into chunks through cluster_msg, and back.
 * Deterministic: no clock, no I/O, no raft runtime. */
#include "base/km.h"
#include "base/km_map.h"
#include "cluster_core.h"
#include "cluster_int.h"
#include "cluster_shard.h"
#include <stdlib.h>
#include <string.h>

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
    size_t n_thr = 0;
    const struct cluster_throttle_win **thr =
        km_calloc(km_map_count(f->throttles) + 1, sizeof(*thr));
    km_map_iter_init(&it, f->throttles);
    while (km_map_iter_next(&it, NULL, &v)) {
        thr[n_thr++] = v;
    }
    struct cluster_snap_cluster cl = {
        .settings = f->has_settings ? &f->settings : NULL,
        .cluster_id = f->cluster_id,
        .nodes = f->nodes,
        .n_nodes = f->n_nodes,
        .shards = f->map_shards,
        .r = f->map_r,
        .n_replicas = f->map_n,
        .replicas = f->map_replicas,
        .epochs = f->epochs,
        .throttles = (const struct cluster_throttle_win *const *)thr,
        .n_throttles = n_thr,
    };
    int rv = cluster_msg_encode_snapshot(
        f->time_ms, (const struct cluster_fsm_msg *const *)msgs, n_msgs,
        (const struct cluster_tomb *const *)tombs, n_tombs,
        (const struct cluster_fsm_admin *const *)rules, n_rules, &cl,
        chunk_records, alloc, release, out, n);
    free(thr);
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

static int
cluster_fsm_on_snap_settings(void *ctx, const struct cluster_rec *rec)
{
    cluster_fsm_apply_settings(ctx, rec);
    return 0;
}

static int
cluster_fsm_on_snap_node(void *ctx, const struct cluster_rec *rec)
{
    struct cluster_fsm *f = ctx;

    if (cluster_fsm_find_node(f, rec->node) != NULL ||
        f->n_nodes >= CLUSTER_MAX_NODES) {
        return KM_ECORRUPT;
    }
    struct cluster_fsm_node *n = cluster_fsm_get_node(f, rec->node);
    n->state = rec->node_state;
    n->weight = rec->weight != 0 ? rec->weight : 1;
    n->raft_addr = rec->raft_addr != NULL ? km_strdup(rec->raft_addr) : NULL;
    n->link_url = rec->link_url != NULL ? km_strdup(rec->link_url) : NULL;
    return 0;
}

/* Shards come in order 0..S-1, S = the settings' shard count. */
static int
cluster_fsm_on_snap_shard(void *ctx, uint32_t shard, uint64_t epoch,
                          const uint64_t *replicas, size_t n)
{
    struct cluster_fsm *f = ctx;

    if (!f->has_settings || shard != f->map_shards ||
        shard >= f->settings.shards || n > f->settings.replication_factor) {
        return KM_ECORRUPT;
    }
    if (f->epochs == NULL) {
        f->map_r = f->settings.replication_factor;
        f->map_n = km_calloc(f->settings.shards, sizeof(*f->map_n));
        f->map_replicas = km_calloc((size_t)f->settings.shards * f->map_r,
                                    sizeof(*f->map_replicas));
        f->epochs = km_calloc(f->settings.shards, sizeof(*f->epochs));
    }
    f->map_n[shard] = (uint32_t)n;
    if (n > 0) {
        memcpy(&f->map_replicas[(size_t)shard * f->map_r], replicas,
               n * sizeof(*replicas));
    }
    f->epochs[shard] = epoch;
    f->map_shards = shard + 1;
    return 0;
}

static int
cluster_fsm_on_snap_throttle(void *ctx, const struct cluster_throttle_win *w)
{
    struct cluster_fsm *f = ctx;

    if (km_map_has(f->throttles, w->key) ||
        km_map_count(f->throttles) >= CLUSTER_MAX_THROTTLES) {
        return KM_ECORRUPT;
    }
    struct cluster_throttle_win *c = cluster_throttle_win_dup(w);
    km_map_put(f->throttles, c->key, c, NULL);
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
        .on_settings = cluster_fsm_on_snap_settings,
        .on_node = cluster_fsm_on_snap_node,
        .on_shard = cluster_fsm_on_snap_shard,
        .on_throttle = cluster_fsm_on_snap_throttle,
    };
    int rv = cluster_msg_decode_snapshot(data, len, &sink);

    if (rv == 0 && tmp->map_shards != 0 &&
        tmp->map_shards != tmp->settings.shards) {
        rv = KM_ECORRUPT; /* a partial map */
    }
    if (rv != 0) {
        cluster_fsm_free(tmp);
        return rv;
    }
    cluster_fsm_clear(f);
    km_map_free(f->msgs);
    km_map_free(f->tombs);
    km_map_free(f->rules);
    km_map_free(f->throttles);
    f->msgs = tmp->msgs;
    f->throttles = tmp->throttles;
    f->tombs = tmp->tombs;
    f->rules = tmp->rules;
    f->tomb_head = tmp->tomb_head;
    f->tomb_tail = tmp->tomb_head != NULL ? tmp->tomb_tail : &f->tomb_head;
    f->time_ms = tmp->time_ms;
    /* cluster_fsm_clear released f's cluster state above: move tmp's. */
    f->has_settings = tmp->has_settings;
    f->settings = tmp->settings;
    f->cluster_id = tmp->cluster_id;
    f->nodes = tmp->nodes;
    f->n_nodes = tmp->n_nodes;
    f->map_shards = tmp->map_shards;
    f->map_r = tmp->map_r;
    f->map_n = tmp->map_n;
    f->map_replicas = tmp->map_replicas;
    f->epochs = tmp->epochs;
    free(tmp);
    if (f->node_cb != NULL) {
        for (size_t i = 0; i < f->n_nodes; i++) {
            f->node_cb(f->node_ctx, &f->nodes[i]);
        }
    }
    return 0;
}
