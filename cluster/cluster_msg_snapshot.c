/* cluster_msg_snapshot.c - FSM snapshot images as length-prefixed
 * FsmSnapshot chunks: the cluster part (settings, nodes, shard map,
 * throttle windows, admin rules) in the first chunk, then the messages,
 * packed and unpacked with the same size and field checks as records.
 * Knows nothing of raft or of FSM semantics. Any thread; no state. */
#include "base/km.h"
#include "base/km_id.h"
#include "cluster_int.h"
#include "cluster_msg_int.h"
#include "link.pb-c.h"
#include "raft_log.pb-c.h"
#include <stdlib.h>
#include <string.h>

/* Pack one chunk (with its length prefix) into a blob from alloc. */
static int
cluster_msg_pack_chunk(const Kumo__Cluster__FsmSnapshot *pb,
                       cluster_alloc_fn alloc, struct cluster_blob *out)
{
    size_t n = kumo__cluster__fsm_snapshot__get_packed_size(pb);

    if (n > CLUSTER_MAX_SNAPSHOT_CHUNK) {
        return KM_E2BIG;
    }
    uint8_t *p = alloc(n + CLUSTER_MSG_CHUNK_PREFIX);
    KM_ASSERT(p != NULL);
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
    kumo__cluster__fsm_snapshot__pack(pb, p + CLUSTER_MSG_CHUNK_PREFIX);
    out->base = p;
    out->len = n + CLUSTER_MSG_CHUNK_PREFIX;
    return 0;
}

/* Scratch for one MessageMeta of a chunk. */
struct cluster_msg_meta_scratch {
    Kumo__Cluster__MessageMeta meta;
    Kumo__Cluster__Enqueue enq;
    uint8_t id[KM_ID_BYTES];
};

struct cluster_msg_tomb_scratch {
    Kumo__Cluster__Tombstone tomb;
    uint8_t id[KM_ID_BYTES];
};

static int
cluster_msg_meta_out(const struct cluster_fsm_msg *m,
                     struct cluster_msg_meta_scratch *s)
{
    const struct cluster_msg *pub = &m->pub;
    int rv = cluster_msg_enqueue_out(&s->enq, s->id, pub->id, m->queue,
                                     m->tenant, m->campaign, m->egress_pool,
                                     m->replicas, m->n_replicas, pub->digest);

    kumo__cluster__message_meta__init(&s->meta);
    s->enq.shard = pub->shard;
    s->enq.shard_epoch = m->shard_epoch;
    s->enq.created_ms = pub->created_ms;
    s->enq.expires_ms = pub->expires_ms;
    s->enq.size = pub->size;
    s->enq.accepted_by = pub->accepted_by;
    s->meta.enqueue = &s->enq;
    s->meta.attempts = pub->attempts;
    s->meta.due_ms = pub->due_ms;
    /* Stored responses were sanitised when they were decoded. */
    s->meta.last_response = m->last_response != NULL
                                ? m->last_response
                                : cluster_msg_unconst(protobuf_c_empty_string);
    return rv;
}

/* The cluster part of a snapshot's first chunk, and what it borrows. */
struct cluster_msg_cl_scratch {
    struct cluster_rec settings_rec;
    Kumo__Cluster__ClusterSettings settings;
    Kumo__Cluster__ClusterSettings *settings_p;
    Kumo__Cluster__NodeState *nodes;
    Kumo__Cluster__NodeState **node_p;
    size_t n_nodes;
    Kumo__Cluster__ShardMap map;
    Kumo__Cluster__ShardMap *map_p;
    Kumo__Cluster__ShardAssignment *asg;
    Kumo__Cluster__ShardAssignment **asg_p;
    Kumo__Cluster__ThrottleWindow *tw;
    Kumo__Cluster__ThrottleWindow **tw_p;
    Kumo__Cluster__ThrottleDefine *td;
    Kumo__Cluster__ThrottleWindow__GrantedEntry **ge_p; /* per window */
    size_t n_tw;
};

/* The throttle windows of a snapshot's first chunk. */
static int
cluster_msg_tw_out(const struct cluster_snap_cluster *cl,
                   struct cluster_msg_cl_scratch *s)
{
    int rv = 0;

    s->tw = km_calloc(cl->n_throttles + 1, sizeof(*s->tw));
    s->tw_p = km_calloc(cl->n_throttles + 1, sizeof(*s->tw_p));
    s->td = km_calloc(cl->n_throttles + 1, sizeof(*s->td));
    s->ge_p = km_calloc(cl->n_throttles + 1, sizeof(*s->ge_p));
    for (size_t i = 0; i < cl->n_throttles && rv == 0; i++) {
        const struct cluster_throttle_win *w = cl->throttles[i];
        Kumo__Cluster__ThrottleWindow *tw = &s->tw[i];
        kumo__cluster__throttle_window__init(tw);
        s->n_tw++;
        rv = cluster_msg_tdef_out(w->key, w->limit, w->period_ms, &s->td[i]);
        tw->def = &s->td[i];
        tw->window_start_ms = w->window_start_ms;
        /* One allocation: n entries, then n pointers to them. */
        size_t n = w->n_grants;
        Kumo__Cluster__ThrottleWindow__GrantedEntry *ge =
            km_calloc(n + 1, sizeof(*ge) + sizeof(ge));
        Kumo__Cluster__ThrottleWindow__GrantedEntry **gp =
            (Kumo__Cluster__ThrottleWindow__GrantedEntry **)(ge + n + 1);
        s->ge_p[i] = ge;
        for (size_t j = 0; j < n; j++) {
            kumo__cluster__throttle_window__granted_entry__init(&ge[j]);
            ge[j].key = w->grants[j].node;
            ge[j].value = w->grants[j].tokens;
            gp[j] = &ge[j];
        }
        tw->n_granted = n;
        tw->granted = gp;
        s->tw_p[i] = tw;
    }
    return rv;
}

static int
cluster_msg_cl_out(const struct cluster_snap_cluster *cl,
                   struct cluster_msg_cl_scratch *s)
{
    int rv = 0;

    memset(s, 0, sizeof(*s));
    if (cl == NULL) {
        return 0;
    }
    if (cl->settings != NULL) {
        s->settings_rec.kind = CLUSTER_REC_SETTINGS;
        s->settings_rec.settings = *cl->settings;
        /* Borrowed: settings_rec is never finalised. */
        s->settings_rec.cluster_id = cluster_msg_unconst(cl->cluster_id);
        rv = cluster_msg_settings_out(&s->settings_rec, &s->settings);
        s->settings_p = &s->settings;
    }
    s->nodes = km_calloc(cl->n_nodes + 1, sizeof(*s->nodes));
    s->node_p = km_calloc(cl->n_nodes + 1, sizeof(*s->node_p));
    for (size_t i = 0; i < cl->n_nodes && rv == 0; i++) {
        const struct cluster_fsm_node *fn = &cl->nodes[i];
        struct cluster_rec tmp;
        memset(&tmp, 0, sizeof(tmp));
        tmp.node = fn->id;
        tmp.node_state = fn->state;
        tmp.raft_addr = fn->raft_addr;
        tmp.link_url = fn->link_url;
        tmp.weight = fn->weight;
        rv = cluster_msg_node_out(&tmp, &s->nodes[i]);
        s->node_p[i] = &s->nodes[i];
        s->n_nodes++;
    }
    if (rv == 0) {
        rv = cluster_msg_tw_out(cl, s);
    }
    if (cl->shards == 0 || rv != 0) {
        return rv;
    }
    kumo__cluster__shard_map__init(&s->map);
    s->asg = km_calloc(cl->shards, sizeof(*s->asg));
    s->asg_p = km_calloc(cl->shards, sizeof(*s->asg_p));
    for (uint32_t i = 0; i < cl->shards; i++) {
        kumo__cluster__shard_assignment__init(&s->asg[i]);
        s->asg[i].shard = i;
        s->asg[i].epoch = cl->epochs[i];
        s->asg[i].n_replicas = cl->n_replicas[i];
        s->asg[i].replicas =
            cluster_msg_unconst(&cl->replicas[(size_t)i * cl->r]);
        s->asg_p[i] = &s->asg[i];
    }
    s->map.map_version = cl->r; /* the replication factor of the lists */
    s->map.n_shards = cl->shards;
    s->map.shards = s->asg_p;
    s->map_p = &s->map;
    return 0;
}

static void
cluster_msg_cl_fini(struct cluster_msg_cl_scratch *s)
{
    free(s->nodes);
    free(s->node_p);
    free(s->asg);
    free(s->asg_p);
    for (size_t i = 0; i < s->n_tw; i++) {
        free(s->ge_p[i]);
    }
    free(s->ge_p);
    free(s->td);
    free(s->tw);
    free(s->tw_p);
}

int
cluster_msg_encode_snapshot(
    int64_t fsm_time_ms, const struct cluster_fsm_msg *const *msgs,
    size_t n_msgs, const struct cluster_tomb *const *tombs, size_t n_tombs,
    const struct cluster_fsm_admin *const *rules, size_t n_rules,
    const struct cluster_snap_cluster *cl, size_t chunk_records,
    cluster_alloc_fn alloc, cluster_free_fn release, struct cluster_blob **out,
    size_t *n)
{
    struct cluster_msg_cl_scratch cs;
    Kumo__Cluster__AdminRule *ra = km_calloc(n_rules + 1, sizeof(*ra));
    Kumo__Cluster__AdminRule **rp = km_calloc(n_rules + 1, sizeof(*rp));
    size_t total = n_msgs + n_tombs;
    size_t n_chunks, mi = 0, ti = 0;
    struct cluster_blob *blobs;
    struct cluster_msg_meta_scratch *ms;
    struct cluster_msg_tomb_scratch *ts;
    Kumo__Cluster__MessageMeta **mp;
    Kumo__Cluster__Tombstone **tp;
    int rv = 0;

    if (chunk_records == 0) {
        chunk_records = 1;
    }
    rv = cluster_msg_cl_out(cl, &cs);
    n_chunks = total == 0 ? 1 : (total + chunk_records - 1) / chunk_records;
    blobs = km_calloc(n_chunks, sizeof(*blobs));
    ms = km_calloc(chunk_records, sizeof(*ms));
    ts = km_calloc(chunk_records, sizeof(*ts));
    mp = km_calloc(chunk_records, sizeof(*mp));
    tp = km_calloc(chunk_records, sizeof(*tp));
    for (size_t c = 0; c < n_chunks; c++) {
        Kumo__Cluster__FsmSnapshot pb = KUMO__CLUSTER__FSM_SNAPSHOT__INIT;
        size_t room = chunk_records;
        pb.fsm_time_ms = fsm_time_ms;
        pb.messages = mp;
        pb.tombstones = tp;
        if (c == 0) {
            /* Admin rules are few: they all go in the first chunk. */
            for (size_t r = 0; r < n_rules && rv == 0; r++) {
                struct cluster_rec tmp;
                memset(&tmp, 0, sizeof(tmp));
                snprintf(tmp.admin_id, sizeof(tmp.admin_id), "%s",
                         rules[r]->id);
                tmp.admin_kind = rules[r]->pub.kind;
                tmp.admin_json = rules[r]->json;
                tmp.expires_ms = rules[r]->pub.expires_ms;
                rv = cluster_msg_admin_out(&tmp, &ra[r], NULL);
                /* uuid must outlive tmp: point it at the FSM's copy. */
                ra[r].uuid = cluster_msg_unconst(rules[r]->id);
                rp[r] = &ra[r];
            }
            pb.n_rules = n_rules;
            pb.rules = rp;
            pb.settings = cs.settings_p;
            pb.n_nodes = cs.n_nodes;
            pb.nodes = cs.node_p;
            pb.shard_map = cs.map_p;
            pb.n_throttles = cs.n_tw;
            pb.throttles = cs.tw_p;
        }
        while (room > 0 && mi < n_msgs && rv == 0) {
            rv = cluster_msg_meta_out(msgs[mi++], &ms[pb.n_messages]);
            mp[pb.n_messages] = &ms[pb.n_messages].meta;
            pb.n_messages++;
            room--;
        }
        while (room > 0 && ti < n_tombs && rv == 0) {
            struct cluster_msg_tomb_scratch *t = &ts[pb.n_tombstones];
            kumo__cluster__tombstone__init(&t->tomb);
            rv = cluster_msg_id_out(tombs[ti]->id, t->id, &t->tomb.id);
            t->tomb.done_at_ms = tombs[ti]->done_at_ms;
            tp[pb.n_tombstones++] = &t->tomb;
            ti++;
            room--;
        }
        if (rv == 0) {
            rv = cluster_msg_pack_chunk(&pb, alloc, &blobs[c]);
        }
        if (rv != 0) {
            /* Only reachable on a broken FSM entry: give nothing back. */
            for (size_t i = 0; i < c; i++) {
                release(blobs[i].base);
            }
            break;
        }
    }
    free(tp);
    free(mp);
    free(ts);
    free(ms);
    free(rp);
    free(ra);
    cluster_msg_cl_fini(&cs);
    if (rv != 0) {
        free(blobs);
        return rv;
    }
    *out = blobs;
    *n = n_chunks;
    return 0;
}

/* One ThrottleWindow of a snapshot, handed to the sink. */
static int
cluster_msg_tw_in(const Kumo__Cluster__ThrottleWindow *tw,
                  const struct cluster_snap_sink *sink)
{
    struct cluster_throttle_win w;
    struct cluster_rec rec;
    int rv;

    if (tw->def == NULL || tw->n_granted > CLUSTER_MAX_NODES) {
        return KM_ECORRUPT;
    }
    memset(&rec, 0, sizeof(rec));
    rv = cluster_msg_tdef_in(tw->def, &rec);
    if (rv != 0 || sink->on_throttle == NULL) {
        cluster_rec_fini(&rec);
        return rv;
    }
    memset(&w, 0, sizeof(w));
    w.key = rec.throttle_key;
    w.limit = rec.limit;
    w.period_ms = rec.period_ms;
    w.window_start_ms = tw->window_start_ms;
    w.grants = km_calloc(tw->n_granted + 1, sizeof(*w.grants));
    for (size_t j = 0; j < tw->n_granted; j++) {
        w.grants[j].node = tw->granted[j]->key;
        w.grants[j].tokens = tw->granted[j]->value;
        if (w.grants[j].tokens > w.limit - w.granted ||
            cluster_throttle_win_tokens(&w, w.grants[j].node) != 0) {
            rv = KM_ECORRUPT; /* over the limit, or a node twice */
            break;
        }
        w.granted += w.grants[j].tokens;
        w.n_grants++;
    }
    if (rv == 0) {
        rv = sink->on_throttle(sink->ctx, &w);
    }
    free(w.grants);
    cluster_rec_fini(&rec);
    return rv;
}

/* The cluster part of the first chunk: settings, nodes, shard map. */
static int
cluster_msg_cl_in(const Kumo__Cluster__FsmSnapshot *pb,
                  const struct cluster_snap_sink *sink)
{
    struct cluster_rec rec;
    int rv = 0;

    if (pb->settings != NULL && sink->on_settings != NULL) {
        memset(&rec, 0, sizeof(rec));
        rv = cluster_msg_settings_in(pb->settings, &rec);
        if (rv == 0) {
            rv = sink->on_settings(sink->ctx, &rec);
        }
        cluster_rec_fini(&rec);
    }
    if (pb->n_nodes > CLUSTER_MAX_NODES) {
        return KM_ECORRUPT;
    }
    for (size_t i = 0; i < pb->n_nodes && rv == 0; i++) {
        memset(&rec, 0, sizeof(rec));
        rv = cluster_msg_node_in(pb->nodes[i], &rec);
        if (rv == 0 && sink->on_node != NULL) {
            rv = sink->on_node(sink->ctx, &rec);
        }
        cluster_rec_fini(&rec);
    }
    if (pb->n_throttles > CLUSTER_MAX_THROTTLES) {
        return KM_ECORRUPT;
    }
    for (size_t i = 0; i < pb->n_throttles && rv == 0; i++) {
        rv = cluster_msg_tw_in(pb->throttles[i], sink);
    }
    if (rv != 0 || pb->shard_map == NULL) {
        return rv;
    }
    if (pb->shard_map->n_shards > CLUSTER_MAX_SHARDS) {
        return KM_ECORRUPT;
    }
    for (size_t i = 0; i < pb->shard_map->n_shards && rv == 0; i++) {
        const Kumo__Cluster__ShardAssignment *a = pb->shard_map->shards[i];
        if (a->n_replicas > CLUSTER_MAX_REPLICAS) {
            return KM_ECORRUPT;
        }
        if (sink->on_shard != NULL) {
            rv = sink->on_shard(sink->ctx, a->shard, a->epoch, a->replicas,
                                a->n_replicas);
        }
    }
    return rv;
}

static int
cluster_msg_chunk_in(const Kumo__Cluster__FsmSnapshot *pb, bool first,
                     const struct cluster_snap_sink *sink)
{
    int rv = 0;

    if (first && sink->on_time != NULL) {
        sink->on_time(sink->ctx, pb->fsm_time_ms);
    }
    if (first) {
        rv = cluster_msg_cl_in(pb, sink);
    }
    for (size_t i = 0; i < pb->n_messages && rv == 0; i++) {
        const Kumo__Cluster__MessageMeta *mm = pb->messages[i];
        struct cluster_rec rec;
        memset(&rec, 0, sizeof(rec));
        if (mm->enqueue == NULL) {
            return KM_ECORRUPT;
        }
        rv = cluster_msg_enqueue_in(mm->enqueue, &rec);
        if (rv == 0) {
            rec.attempts = mm->attempts;
            rec.due_ms = mm->due_ms;
            rec.response = cluster_msg_response_in(mm->last_response);
            rv = sink->on_msg(sink->ctx, &rec);
        }
        cluster_rec_fini(&rec);
    }
    for (size_t i = 0; i < pb->n_tombstones && rv == 0; i++) {
        char id[33];
        rv = cluster_msg_id_in(&pb->tombstones[i]->id, id);
        if (rv == 0) {
            rv = sink->on_tomb(sink->ctx, id, pb->tombstones[i]->done_at_ms);
        }
    }
    for (size_t i = 0; i < pb->n_rules && rv == 0; i++) {
        struct cluster_rec rec;
        memset(&rec, 0, sizeof(rec));
        rv = cluster_msg_admin_in(pb->rules[i], &rec);
        if (rv == 0 && sink->on_admin != NULL) {
            rv = sink->on_admin(sink->ctx, &rec);
        }
        cluster_rec_fini(&rec);
    }
    return rv;
}

int
cluster_msg_decode_snapshot(const void *data, size_t len,
                            const struct cluster_snap_sink *sink)
{
    const uint8_t *p = data;
    size_t off = 0;
    bool first = true;

    if (len == 0) {
        return KM_ECORRUPT;
    }
    while (off < len) {
        if (len - off < CLUSTER_MSG_CHUNK_PREFIX) {
            return KM_ECORRUPT;
        }
        size_t n = ((size_t)p[off] << 24) | ((size_t)p[off + 1] << 16) |
                   ((size_t)p[off + 2] << 8) | p[off + 3];
        off += CLUSTER_MSG_CHUNK_PREFIX;
        if (n > CLUSTER_MAX_SNAPSHOT_CHUNK || n > len - off) {
            return KM_ECORRUPT;
        }
        Kumo__Cluster__FsmSnapshot *pb =
            kumo__cluster__fsm_snapshot__unpack(NULL, n, p + off);
        if (pb == NULL) {
            return KM_ECORRUPT;
        }
        int rv = cluster_msg_chunk_in(pb, first, sink);
        kumo__cluster__fsm_snapshot__free_unpacked(pb, NULL);
        if (rv != 0) {
            return rv;
        }
        first = false;
        off += n;
    }
    return 0;
}
