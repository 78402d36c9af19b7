/* cluster_msg.c - converts between the plain C records of cluster_int.h
 * and the protobuf-c types generated from proto/raft_log.proto: Raft
 * entries (RaftBatch) and FSM snapshot images (length-prefixed FsmSnapshot
 * chunks). The only file of the module that includes generated headers
 * (STYLE §12). Checks sizes and fields of everything it decodes; knows
 * nothing of raft or of FSM semantics. Any thread; no state. */
#include "cluster_int.h"
#include "cluster_msg_int.h"

#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "base/km_id.h"
#include "link.pb-c.h"
#include "raft_log.pb-c.h"

void
cluster_rec_fini(struct cluster_rec *rec)
{
    free(rec->queue);
    free(rec->tenant);
    free(rec->campaign);
    free(rec->egress_pool);
    free(rec->replicas);
    free(rec->response);
    free(rec->admin_json);
    free(rec->cluster_id);
    free(rec->raft_addr);
    free(rec->link_url);
    free(rec->throttle_key);
    free(rec->ids);
    memset(rec, 0, sizeof(*rec));
}

void
cluster_batch_fini(struct cluster_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        cluster_rec_fini(&b->recs[i]);
    }
    free(b->recs);
    b->recs = NULL;
    b->n = 0;
}

/* protobuf-c's message structs have non-const pointers even for what
 * pack only reads; this drops the qualifier in one visible place. */
void *
cluster_msg_unconst(const void *p)
{
    return (void *)(uintptr_t)p;
}

/* Strict UTF-8 check: protobuf string fields must hold valid UTF-8. */
static bool
cluster_msg_utf8_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p != 0) {
        size_t n;
        uint32_t cp;
        if (*p < 0x80) {
            p++;
            continue;
        } else if ((*p & 0xe0) == 0xc0) {
            n = 1;
            cp = *p & 0x1f;
        } else if ((*p & 0xf0) == 0xe0) {
            n = 2;
            cp = *p & 0x0f;
        } else if ((*p & 0xf8) == 0xf0) {
            n = 3;
            cp = *p & 0x07;
        } else {
            return false;
        }
        p++;
        for (size_t i = 0; i < n; i++, p++) {
            if ((*p & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (*p & 0x3f);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
    }
    return true;
}

/* A name for the wire: NULL becomes "", must be UTF-8 and short. */
static int
cluster_msg_name_out(const char *s, char **out)
{
    if (s == NULL) {
        *out = cluster_msg_unconst(protobuf_c_empty_string);
        return 0;
    }
    if (strlen(s) > CLUSTER_MAX_NAME_LEN || !cluster_msg_utf8_ok(s)) {
        return KM_EINVAL;
    }
    *out = cluster_msg_unconst(s);
    return 0;
}

/* A response for the wire: truncated, and bytes outside ASCII replaced so
 * the field is valid UTF-8 whatever a remote server sent. The caller owns
 * the result. */
static char *
cluster_msg_response_out(const char *s)
{
    if (s == NULL) {
        return km_strdup("");
    }
    size_t n = strnlen(s, CLUSTER_MAX_RESPONSE_LEN);
    char *r = km_strndup(s, n);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)r[i] >= 0x80) {
            r[i] = '?';
        }
    }
    return r;
}

/* A name from the wire: "" becomes NULL unless required. */
static int
cluster_msg_name_in(const char *s, bool required, char **out)
{
    if (s == NULL || s[0] == '\0') {
        *out = NULL;
        return required ? KM_ECORRUPT : 0;
    }
    if (strlen(s) > CLUSTER_MAX_NAME_LEN) {
        return KM_ECORRUPT;
    }
    *out = km_strdup(s);
    return 0;
}

int
cluster_msg_id_out(const char *hex, uint8_t bytes[KM_ID_BYTES],
                   ProtobufCBinaryData *out)
{
    if (!km_id_parse(hex, strnlen(hex, KM_ID_HEX_LEN + 1), bytes)) {
        return KM_EINVAL;
    }
    out->data = bytes;
    out->len = KM_ID_BYTES;
    return 0;
}

int
cluster_msg_id_in(const ProtobufCBinaryData *in, char out[33])
{
    if (in->len != KM_ID_BYTES) {
        return KM_ECORRUPT;
    }
    km_id_format(in->data, out);
    return 0;
}

/* Everything a packed Command borrows, freed after packing. */
struct cluster_msg_scratch {
    uint8_t id[KM_ID_BYTES];
    char *response;
    void *ids; /* ReplicaUpdate: the ids' wire form (one allocation) */

    union {
        Kumo__Cluster__Enqueue enq;
        Kumo__Cluster__Deferred def;
        Kumo__Cluster__Done done;
        Kumo__Cluster__AdminRule admin;
        Kumo__Cluster__ClusterSettings settings;
        Kumo__Cluster__NodeState node;
        Kumo__Cluster__ThrottleDefine tdef;
        Kumo__Cluster__ThrottleGrant tgrant;
        Kumo__Cluster__ThrottleReturn tret;
        Kumo__Cluster__ReplicaUpdate replica;
    } u;
};

/* Fill e from an Enqueue-shaped view (a record or an FSM entry). */
int
cluster_msg_enqueue_out(Kumo__Cluster__Enqueue *e, uint8_t id[KM_ID_BYTES],
                        const char *hex, const char *queue, const char *tenant,
                        const char *campaign, const char *egress_pool,
                        const uint64_t *replicas, size_t n_replicas,
                        const uint8_t digest[32])
{
    int rv;

    kumo__cluster__enqueue__init(e);
    if (queue == NULL || queue[0] == '\0' ||
        n_replicas > CLUSTER_MAX_REPLICAS) {
        return KM_EINVAL;
    }
    rv = cluster_msg_id_out(hex, id, &e->id);
    if (rv == 0) {
        rv = cluster_msg_name_out(queue, &e->queue);
    }
    if (rv == 0) {
        rv = cluster_msg_name_out(tenant, &e->tenant);
    }
    if (rv == 0) {
        rv = cluster_msg_name_out(campaign, &e->campaign);
    }
    if (rv == 0) {
        rv = cluster_msg_name_out(egress_pool, &e->egress_pool);
    }
    e->n_replicas = n_replicas;
    e->replicas = cluster_msg_unconst(replicas);
    e->digest.data = cluster_msg_unconst(digest);
    e->digest.len = 32;
    return rv;
}

/* An admin rule's id is a UUID; its JSON is bounded like a response. */
#define CLUSTER_MAX_ADMIN_JSON (64u * 1024u)

static int
cluster_msg_admin_check(const char *id, const char *json)
{
    size_t n = strlen(id);

    if (n == 0 || n > 36 || !cluster_msg_utf8_ok(id)) {
        return KM_EINVAL;
    }
    if (json != NULL &&
        (strlen(json) > CLUSTER_MAX_ADMIN_JSON || !cluster_msg_utf8_ok(json))) {
        return KM_EINVAL;
    }
    return 0;
}

/* Fill a (and cmd, if not NULL) from an admin rule record (borrowed). */
int
cluster_msg_admin_out(const struct cluster_rec *r, Kumo__Cluster__AdminRule *a,
                      Kumo__Cluster__Command *cmd)
{
    int rv = cluster_msg_admin_check(r->admin_id, r->admin_json);

    kumo__cluster__admin_rule__init(a);
    a->uuid = cluster_msg_unconst(r->admin_id);
    a->kind = (Kumo__Cluster__AdminRuleKind)r->admin_kind;
    a->until_ms = r->expires_ms;
    a->rule_json = r->admin_json != NULL
                       ? cluster_msg_unconst(r->admin_json)
                       : cluster_msg_unconst(protobuf_c_empty_string);
    a->cancel = r->admin_cancel;
    if (cmd != NULL) {
        cmd->cmd_case = KUMO__CLUSTER__COMMAND__CMD_ADMIN_RULE;
        cmd->admin_rule = a;
    }
    return rv;
}

int
cluster_msg_admin_in(const Kumo__Cluster__AdminRule *a, struct cluster_rec *rec)
{
    rec->kind = CLUSTER_REC_ADMIN;
    if (a->uuid == NULL ||
        cluster_msg_admin_check(a->uuid, a->rule_json) != 0 || a->kind < 0) {
        return KM_ECORRUPT;
    }
    snprintf(rec->admin_id, sizeof(rec->admin_id), "%s", a->uuid);
    rec->admin_kind = (int)a->kind;
    rec->expires_ms = a->until_ms;
    rec->admin_json = km_strdup(a->rule_json != NULL ? a->rule_json : "");
    rec->admin_cancel = a->cancel;
    return 0;
}

/* An optional short string for the wire (NULL becomes ""). */
static int
cluster_msg_addr_out(const char *s, size_t max, char **out)
{
    if (s == NULL) {
        *out = cluster_msg_unconst(protobuf_c_empty_string);
        return 0;
    }
    if (strlen(s) > max || !cluster_msg_utf8_ok(s)) {
        return KM_EINVAL;
    }
    *out = cluster_msg_unconst(s);
    return 0;
}

/* An optional short string from the wire ("" becomes NULL). */
static int
cluster_msg_addr_in(const char *s, size_t max, char **out)
{
    *out = NULL;
    if (s == NULL || s[0] == '\0') {
        return 0;
    }
    if (strlen(s) > max) {
        return KM_ECORRUPT;
    }
    *out = km_strdup(s);
    return 0;
}

/* Fill a ClusterSettings from a SETTINGS record (borrowed). */
int
cluster_msg_settings_out(const struct cluster_rec *r,
                         Kumo__Cluster__ClusterSettings *pb)
{
    const struct cluster_settings *st = &r->settings;

    kumo__cluster__cluster_settings__init(pb);
    if (st->shards > CLUSTER_MAX_SHARDS ||
        st->replication_factor > CLUSTER_MAX_REPLICAS ||
        (r->cluster_id != NULL &&
         strlen(r->cluster_id) > CLUSTER_MAX_CLUSTER_ID)) {
        return KM_EINVAL;
    }
    if (r->cluster_id != NULL) {
        pb->cluster_id.data = cluster_msg_unconst(r->cluster_id);
        pb->cluster_id.len = strlen(r->cluster_id);
    }
    pb->shards = st->shards;
    pb->replication_factor = st->replication_factor;
    pb->min_replicas = st->min_replicas;
    pb->ping_ms = st->ping_ms;
    pb->self_fence_after_ms = st->self_fence_after_ms;
    pb->node_down_after_ms = st->node_down_after_ms;
    pb->failover_grace_ms = st->failover_grace_ms;
    pb->accept_timeout_ms = st->accept_timeout_ms;
    pb->rebalance_after_ms = st->rebalance_after_ms;
    return 0;
}

int
cluster_msg_settings_in(const Kumo__Cluster__ClusterSettings *pb,
                        struct cluster_rec *rec)
{
    struct cluster_settings *st = &rec->settings;

    rec->kind = CLUSTER_REC_SETTINGS;
    if (pb->shards > CLUSTER_MAX_SHARDS ||
        pb->replication_factor > CLUSTER_MAX_REPLICAS ||
        pb->cluster_id.len > CLUSTER_MAX_CLUSTER_ID) {
        return KM_ECORRUPT;
    }
    if (pb->cluster_id.len > 0) {
        rec->cluster_id =
            km_strndup((const char *)pb->cluster_id.data, pb->cluster_id.len);
    }
    st->shards = pb->shards;
    st->replication_factor = pb->replication_factor;
    st->min_replicas = pb->min_replicas;
    st->ping_ms = pb->ping_ms;
    st->self_fence_after_ms = pb->self_fence_after_ms;
    st->node_down_after_ms = pb->node_down_after_ms;
    st->failover_grace_ms = pb->failover_grace_ms;
    st->accept_timeout_ms = pb->accept_timeout_ms;
    st->rebalance_after_ms = pb->rebalance_after_ms;
    return 0;
}

/* Fill a NodeState from a NODE_STATE record (borrowed). */
int
cluster_msg_node_out(const struct cluster_rec *r, Kumo__Cluster__NodeState *pb)
{
    int rv;

    kumo__cluster__node_state__init(pb);
    if (r->node == 0 ||
        r->node_state < KUMO__CLUSTER__NODE_STATE_KIND__JOINING ||
        r->node_state > KUMO__CLUSTER__NODE_STATE_KIND__REMOVED) {
        return KM_EINVAL;
    }
    pb->node = r->node;
    pb->state = (Kumo__Cluster__NodeStateKind)r->node_state;
    pb->weight = r->weight;
    rv = cluster_msg_addr_out(r->raft_addr, CLUSTER_MAX_ADDR_LEN,
                              &pb->raft_addr);
    if (rv == 0) {
        rv = cluster_msg_addr_out(r->link_url, CLUSTER_MAX_ADDR_LEN,
                                  &pb->link_url);
    }
    return rv;
}

int
cluster_msg_node_in(const Kumo__Cluster__NodeState *pb, struct cluster_rec *rec)
{
    int rv;

    rec->kind = CLUSTER_REC_NODE_STATE;
    if (pb->node == 0 || pb->state < KUMO__CLUSTER__NODE_STATE_KIND__JOINING ||
        pb->state > KUMO__CLUSTER__NODE_STATE_KIND__REMOVED) {
        return KM_ECORRUPT;
    }
    rec->node = pb->node;
    rec->node_state = (int)pb->state;
    rec->weight = pb->weight;
    rv = cluster_msg_addr_in(pb->raft_addr, CLUSTER_MAX_ADDR_LEN,
                             &rec->raft_addr);
    if (rv == 0) {
        rv = cluster_msg_addr_in(pb->link_url, CLUSTER_MAX_ADDR_LEN,
                                 &rec->link_url);
    }
    return rv;
}

/* A throttle key: 1..CLUSTER_MAX_THROTTLE_KEY bytes of UTF-8. */
static bool
cluster_msg_throttle_key_ok(const char *key)
{
    return key != NULL && key[0] != '\0' &&
           strnlen(key, CLUSTER_MAX_THROTTLE_KEY + 1) <=
               CLUSTER_MAX_THROTTLE_KEY &&
           cluster_msg_utf8_ok(key);
}

/* Fill a ThrottleDefine from a THROTTLE_DEFINE-shaped view (borrowed). */
int
cluster_msg_tdef_out(const char *key, uint64_t limit, uint64_t period_ms,
                     Kumo__Cluster__ThrottleDefine *pb)
{
    kumo__cluster__throttle_define__init(pb);
    if (!cluster_msg_throttle_key_ok(key) || limit == 0 || period_ms == 0 ||
        period_ms > INT64_MAX / 2) {
        return KM_EINVAL;
    }
    pb->key = cluster_msg_unconst(key);
    pb->limit = limit;
    pb->period_ms = period_ms;
    return 0;
}

/* Fill pb from a REPLICA_UPDATE record (borrowed); the ids' wire form
 * goes into one allocation left in *owned for the caller to free. */
static int
cluster_msg_replica_out(const struct cluster_rec *r,
                        Kumo__Cluster__ReplicaUpdate *pb, void **owned)
{
    ProtobufCBinaryData *ids;
    uint8_t *raw;

    kumo__cluster__replica_update__init(pb);
    if (r->n_ids == 0 || r->n_ids > CLUSTER_MAX_REPLICA_IDS ||
        (r->add_node == 0 && r->remove_node == 0) ||
        r->add_node == r->remove_node) {
        return KM_EINVAL;
    }
    ids = km_calloc(1, r->n_ids * (sizeof(*ids) + KM_ID_BYTES));
    raw = (uint8_t *)(ids + r->n_ids);
    *owned = ids;
    for (size_t i = 0; i < r->n_ids; i++) {
        int rv = cluster_msg_id_out(r->ids[i], raw + i * KM_ID_BYTES, &ids[i]);
        if (rv != 0) {
            return rv;
        }
    }
    pb->shard = r->shard;
    pb->n_ids = r->n_ids;
    pb->ids = ids;
    pb->add_node = r->add_node;
    pb->remove_node = r->remove_node;
    return 0;
}

int
cluster_msg_tdef_in(const Kumo__Cluster__ThrottleDefine *pb,
                    struct cluster_rec *rec)
{
    rec->kind = CLUSTER_REC_THROTTLE_DEFINE;
    if (!cluster_msg_throttle_key_ok(pb->key) || pb->limit == 0 ||
        pb->period_ms == 0 || pb->period_ms > INT64_MAX / 2) {
        return KM_ECORRUPT;
    }
    rec->throttle_key = km_strdup(pb->key);
    rec->limit = pb->limit;
    rec->period_ms = pb->period_ms;
    return 0;
}

static int
cluster_msg_replica_in(const Kumo__Cluster__ReplicaUpdate *pb,
                       struct cluster_rec *rec)
{
    rec->kind = CLUSTER_REC_REPLICA_UPDATE;
    if (pb->n_ids == 0 || pb->n_ids > CLUSTER_MAX_REPLICA_IDS ||
        (pb->add_node == 0 && pb->remove_node == 0) ||
        pb->add_node == pb->remove_node) {
        return KM_ECORRUPT;
    }
    rec->ids = km_calloc(pb->n_ids, sizeof(*rec->ids));
    rec->n_ids = pb->n_ids;
    for (size_t i = 0; i < pb->n_ids; i++) {
        int rv = cluster_msg_id_in(&pb->ids[i], rec->ids[i]);
        if (rv != 0) {
            return rv;
        }
    }
    rec->shard = pb->shard;
    rec->add_node = pb->add_node;
    rec->remove_node = pb->remove_node;
    return 0;
}

static int
cluster_msg_cmd_out(const struct cluster_rec *r, Kumo__Cluster__Command *cmd,
                    struct cluster_msg_scratch *s)
{
    int rv;

    kumo__cluster__command__init(cmd);
    switch (r->kind) {
    case CLUSTER_REC_ENQUEUE:
        rv = cluster_msg_enqueue_out(&s->u.enq, s->id, r->id, r->queue,
                                     r->tenant, r->campaign, r->egress_pool,
                                     r->replicas, r->n_replicas, r->digest);
        s->u.enq.shard = r->shard;
        s->u.enq.shard_epoch = r->shard_epoch;
        s->u.enq.created_ms = r->created_ms;
        s->u.enq.due_ms = r->due_ms;
        s->u.enq.expires_ms = r->expires_ms;
        s->u.enq.attempts = r->attempts;
        s->u.enq.size = r->size;
        s->u.enq.accepted_by = r->accepted_by;
        cmd->cmd_case = KUMO__CLUSTER__COMMAND__CMD_ENQUEUE;
        cmd->enqueue = &s->u.enq;
        return rv;
    case CLUSTER_REC_DEFERRED:
        kumo__cluster__deferred__init(&s->u.def);
        s->response = cluster_msg_response_out(r->response);
        s->u.def.shard_epoch = r->shard_epoch;
        s->u.def.attempts = r->attempts;
        s->u.def.due_ms = r->due_ms;
        s->u.def.last_response = s->response;
        s->u.def.crash_attempt = r->crash_attempt;
        cmd->cmd_case = KUMO__CLUSTER__COMMAND__CMD_DEFERRED;
        cmd->deferred = &s->u.def;
        return cluster_msg_id_out(r->id, s->id, &s->u.def.id);
    case CLUSTER_REC_DONE:
        kumo__cluster__done__init(&s->u.done);
        if (r->outcome < CLUSTER_DELIVERED ||
            r->outcome > CLUSTER_ADMIN_BOUNCED) {
            return KM_EINVAL;
        }
        s->response = cluster_msg_response_out(r->response);
        s->u.done.shard_epoch = r->shard_epoch;
        s->u.done.outcome = (Kumo__Cluster__Outcome)r->outcome;
        s->u.done.at_ms = r->at_ms;
        s->u.done.response = s->response;
        cmd->cmd_case = KUMO__CLUSTER__COMMAND__CMD_DONE;
        cmd->done = &s->u.done;
        return cluster_msg_id_out(r->id, s->id, &s->u.done.id);
    case CLUSTER_REC_ADMIN:
        return cluster_msg_admin_out(r, &s->u.admin, cmd);
    case CLUSTER_REC_SETTINGS:
        cmd->cmd_case = KUMO__CLUSTER__COMMAND__CMD_SETTINGS;
        cmd->settings = &s->u.settings;
        return cluster_msg_settings_out(r, &s->u.settings);
    case CLUSTER_REC_NODE_STATE:
        cmd->cmd_case = KUMO__CLUSTER__COMMAND__CMD_NODE_STATE;
        cmd->node_state = &s->u.node;
        return cluster_msg_node_out(r, &s->u.node);
    case CLUSTER_REC_THROTTLE_DEFINE:
        cmd->cmd_case = KUMO__CLUSTER__COMMAND__CMD_THROTTLE_DEFINE;
        cmd->throttle_define = &s->u.tdef;
        return cluster_msg_tdef_out(r->throttle_key, r->limit, r->period_ms,
                                    &s->u.tdef);
    case CLUSTER_REC_THROTTLE_GRANT:
        kumo__cluster__throttle_grant__init(&s->u.tgrant);
        cmd->cmd_case = KUMO__CLUSTER__COMMAND__CMD_THROTTLE_GRANT;
        cmd->throttle_grant = &s->u.tgrant;
        if (!cluster_msg_throttle_key_ok(r->throttle_key) || r->node == 0 ||
            r->want == 0) {
            return KM_EINVAL;
        }
        s->u.tgrant.key = r->throttle_key;
        s->u.tgrant.node = r->node;
        s->u.tgrant.want = r->want;
        return 0;
    case CLUSTER_REC_THROTTLE_RETURN:
        kumo__cluster__throttle_return__init(&s->u.tret);
        cmd->cmd_case = KUMO__CLUSTER__COMMAND__CMD_THROTTLE_RETURN;
        cmd->throttle_return = &s->u.tret;
        if (!cluster_msg_throttle_key_ok(r->throttle_key) || r->node == 0 ||
            r->want == 0) {
            return KM_EINVAL;
        }
        s->u.tret.key = r->throttle_key;
        s->u.tret.node = r->node;
        s->u.tret.unused = r->want;
        return 0;
    case CLUSTER_REC_REPLICA_UPDATE:
        cmd->cmd_case = KUMO__CLUSTER__COMMAND__CMD_REPLICA_UPDATE;
        cmd->replica_update = &s->u.replica;
        return cluster_msg_replica_out(r, &s->u.replica, &s->ids);
    case CLUSTER_REC_OTHER:
        break;
    }
    return KM_EINVAL;
}

int
cluster_msg_check_rec(const struct cluster_rec *rec)
{
    Kumo__Cluster__Command cmd;
    struct cluster_msg_scratch s;

    memset(&s, 0, sizeof(s));
    int rv = cluster_msg_cmd_out(rec, &cmd, &s);
    free(s.response);
    free(s.ids);
    return rv;
}

int
cluster_msg_encode_batch(const struct cluster_batch *b, cluster_alloc_fn alloc,
                         void **out, size_t *len)
{
    Kumo__Cluster__RaftBatch pb = KUMO__CLUSTER__RAFT_BATCH__INIT;
    Kumo__Cluster__Command *cmds;
    Kumo__Cluster__Command **ptrs;
    struct cluster_msg_scratch *s;
    int rv = 0;

    if (b->n > CLUSTER_MAX_BATCH_RECORDS) {
        return KM_E2BIG;
    }
    cmds = km_calloc(b->n + 1, sizeof(*cmds));
    ptrs = km_calloc(b->n + 1, sizeof(*ptrs));
    s = km_calloc(b->n + 1, sizeof(*s));
    for (size_t i = 0; i < b->n && rv == 0; i++) {
        rv = cluster_msg_cmd_out(&b->recs[i], &cmds[i], &s[i]);
        ptrs[i] = &cmds[i];
    }
    if (rv != 0) {
        goto out_free;
    }
    pb.proposer_node = b->proposer_node;
    pb.batch_time_ms = b->batch_time_ms;
    pb.batch_seq = b->batch_seq;
    pb.n_cmds = b->n;
    pb.cmds = ptrs;
    size_t n = kumo__cluster__raft_batch__get_packed_size(&pb);
    size_t total = (CLUSTER_MSG_ENTRY_HEADER + n + 7) & ~(size_t)7;
    if (total > CLUSTER_MAX_ENTRY_BYTES) {
        rv = KM_E2BIG;
        goto out_free;
    }
    uint8_t *p = alloc(total);
    KM_ASSERT(p != NULL);
    memcpy(p, cluster_msg_entry_magic, sizeof(cluster_msg_entry_magic));
    p[4] = (uint8_t)(n >> 24);
    p[5] = (uint8_t)(n >> 16);
    p[6] = (uint8_t)(n >> 8);
    p[7] = (uint8_t)n;
    kumo__cluster__raft_batch__pack(&pb, p + CLUSTER_MSG_ENTRY_HEADER);
    memset(p + CLUSTER_MSG_ENTRY_HEADER + n, 0,
           total - CLUSTER_MSG_ENTRY_HEADER - n);
    *out = p;
    *len = total;

out_free:
    for (size_t i = 0; i < b->n; i++) {
        free(s[i].response);
        free(s[i].ids);
    }
    free(s);
    free(ptrs);
    free(cmds);
    return rv;
}

/* Copy an Enqueue into rec (kind ENQUEUE), validating it. */
int
cluster_msg_enqueue_in(const Kumo__Cluster__Enqueue *e, struct cluster_rec *rec)
{
    int rv;

    rec->kind = CLUSTER_REC_ENQUEUE;
    rv = cluster_msg_id_in(&e->id, rec->id);
    if (rv != 0) {
        return rv;
    }
    if (e->n_replicas > CLUSTER_MAX_REPLICAS ||
        (e->digest.len != 0 && e->digest.len != 32)) {
        return KM_ECORRUPT;
    }
    rv = cluster_msg_name_in(e->queue, true, &rec->queue);
    if (rv == 0) {
        rv = cluster_msg_name_in(e->tenant, false, &rec->tenant);
    }
    if (rv == 0) {
        rv = cluster_msg_name_in(e->campaign, false, &rec->campaign);
    }
    if (rv == 0) {
        rv = cluster_msg_name_in(e->egress_pool, false, &rec->egress_pool);
    }
    if (rv != 0) {
        return rv;
    }
    if (e->n_replicas > 0) {
        rec->replicas =
            km_memdup(e->replicas, e->n_replicas * sizeof(*e->replicas));
        rec->n_replicas = e->n_replicas;
    }
    if (e->digest.len == 32) {
        memcpy(rec->digest, e->digest.data, 32);
    }
    rec->shard = e->shard;
    rec->shard_epoch = e->shard_epoch;
    rec->created_ms = e->created_ms;
    rec->due_ms = e->due_ms;
    rec->expires_ms = e->expires_ms;
    rec->attempts = e->attempts;
    rec->size = e->size;
    rec->accepted_by = e->accepted_by;
    return 0;
}

char *
cluster_msg_response_in(const char *s)
{
    if (s == NULL || s[0] == '\0') {
        return NULL;
    }
    return km_strndup(s, strnlen(s, CLUSTER_MAX_RESPONSE_LEN));
}

static int
cluster_msg_cmd_in(const Kumo__Cluster__Command *cmd, struct cluster_rec *rec)
{
    switch (cmd->cmd_case) {
    case KUMO__CLUSTER__COMMAND__CMD_ENQUEUE:
        return cluster_msg_enqueue_in(cmd->enqueue, rec);
    case KUMO__CLUSTER__COMMAND__CMD_DEFERRED:
        rec->kind = CLUSTER_REC_DEFERRED;
        rec->shard_epoch = cmd->deferred->shard_epoch;
        rec->attempts = cmd->deferred->attempts;
        rec->due_ms = cmd->deferred->due_ms;
        rec->crash_attempt = cmd->deferred->crash_attempt;
        rec->response = cluster_msg_response_in(cmd->deferred->last_response);
        return cluster_msg_id_in(&cmd->deferred->id, rec->id);
    case KUMO__CLUSTER__COMMAND__CMD_DONE:
        rec->kind = CLUSTER_REC_DONE;
        if (cmd->done->outcome < KUMO__CLUSTER__OUTCOME__DELIVERED ||
            cmd->done->outcome > KUMO__CLUSTER__OUTCOME__ADMIN_BOUNCED) {
            return KM_ECORRUPT;
        }
        rec->shard_epoch = cmd->done->shard_epoch;
        rec->outcome = (int)cmd->done->outcome;
        rec->at_ms = cmd->done->at_ms;
        rec->response = cluster_msg_response_in(cmd->done->response);
        return cluster_msg_id_in(&cmd->done->id, rec->id);
    case KUMO__CLUSTER__COMMAND__CMD_ADMIN_RULE:
        return cluster_msg_admin_in(cmd->admin_rule, rec);
    case KUMO__CLUSTER__COMMAND__CMD_SETTINGS:
        return cluster_msg_settings_in(cmd->settings, rec);
    case KUMO__CLUSTER__COMMAND__CMD_NODE_STATE:
        return cluster_msg_node_in(cmd->node_state, rec);
    case KUMO__CLUSTER__COMMAND__CMD_THROTTLE_DEFINE:
        return cluster_msg_tdef_in(cmd->throttle_define, rec);
    case KUMO__CLUSTER__COMMAND__CMD_THROTTLE_GRANT:
        rec->kind = CLUSTER_REC_THROTTLE_GRANT;
        if (!cluster_msg_throttle_key_ok(cmd->throttle_grant->key) ||
            cmd->throttle_grant->node == 0 || cmd->throttle_grant->want == 0) {
            return KM_ECORRUPT;
        }
        rec->throttle_key = km_strdup(cmd->throttle_grant->key);
        rec->node = cmd->throttle_grant->node;
        rec->want = cmd->throttle_grant->want;
        return 0;
    case KUMO__CLUSTER__COMMAND__CMD_THROTTLE_RETURN:
        rec->kind = CLUSTER_REC_THROTTLE_RETURN;
        if (!cluster_msg_throttle_key_ok(cmd->throttle_return->key) ||
            cmd->throttle_return->node == 0 ||
            cmd->throttle_return->unused == 0) {
            return KM_ECORRUPT;
        }
        rec->throttle_key = km_strdup(cmd->throttle_return->key);
        rec->node = cmd->throttle_return->node;
        rec->want = cmd->throttle_return->unused;
        return 0;
    case KUMO__CLUSTER__COMMAND__CMD_REPLICA_UPDATE:
        return cluster_msg_replica_in(cmd->replica_update, rec);
    case KUMO__CLUSTER__COMMAND__CMD__NOT_SET:
        return KM_ECORRUPT;
    default:
        /* A valid command that this version does not apply yet. */
        rec->kind = CLUSTER_REC_OTHER;
        return 0;
    }
}

int
cluster_msg_decode_batch(const void *data, size_t len,
                         struct cluster_batch *out)
{
    Kumo__Cluster__RaftBatch *pb;
    int rv = 0;

    memset(out, 0, sizeof(*out));
    if (len > CLUSTER_MAX_ENTRY_BYTES) {
        return KM_E2BIG;
    }
    const uint8_t *p = data;
    if (len < CLUSTER_MSG_ENTRY_HEADER ||
        memcmp(p, cluster_msg_entry_magic, sizeof(cluster_msg_entry_magic)) !=
            0) {
        return KM_ECORRUPT;
    }
    size_t n = ((size_t)p[4] << 24) | ((size_t)p[5] << 16) |
               ((size_t)p[6] << 8) | p[7];
    if (n > len - CLUSTER_MSG_ENTRY_HEADER) {
        return KM_ECORRUPT;
    }
    pb = kumo__cluster__raft_batch__unpack(NULL, n,
                                           p + CLUSTER_MSG_ENTRY_HEADER);
    if (pb == NULL) {
        return KM_ECORRUPT;
    }
    if (pb->n_cmds > CLUSTER_MAX_BATCH_RECORDS) {
        rv = KM_ECORRUPT;
        goto out_free;
    }
    out->proposer_node = pb->proposer_node;
    out->batch_time_ms = pb->batch_time_ms;
    out->batch_seq = pb->batch_seq;
    out->recs = km_calloc(pb->n_cmds + 1, sizeof(*out->recs));
    for (size_t i = 0; i < pb->n_cmds; i++) {
        out->n = i + 1; /* fini releases partial records too */
        rv = cluster_msg_cmd_in(pb->cmds[i], &out->recs[i]);
        if (rv != 0) {
            cluster_batch_fini(out);
            goto out_free;
        }
    }
    out->n = pb->n_cmds;

out_free:
    kumo__cluster__raft_batch__free_unpacked(pb, NULL);
    return rv;
}

/* Propose and ProposeAck (link messages, CLUSTER.md §4.3) */

int
cluster_msg_encode_propose(const struct cluster_batch *b, void **out,
                           size_t *len)
{
    Kumo__Cluster__Propose pb;
    Kumo__Cluster__Command *cmds;
    Kumo__Cluster__Command **ptrs;
    struct cluster_msg_scratch *s;
    int rv = 0;

    kumo__cluster__propose__init(&pb);
    if (b->n > CLUSTER_MAX_BATCH_RECORDS) {
        return KM_E2BIG;
    }
    cmds = km_calloc(b->n + 1, sizeof(*cmds));
    ptrs = km_calloc(b->n + 1, sizeof(*ptrs));
    s = km_calloc(b->n + 1, sizeof(*s));
    for (size_t i = 0; i < b->n && rv == 0; i++) {
        rv = cluster_msg_cmd_out(&b->recs[i], &cmds[i], &s[i]);
        ptrs[i] = &cmds[i];
    }
    if (rv == 0) {
        pb.origin_batch_id = b->batch_seq;
        pb.n_cmds = b->n;
        pb.cmds = ptrs;
        size_t n = kumo__cluster__propose__get_packed_size(&pb);
        if (n > CLUSTER_MAX_ENTRY_BYTES) {
            rv = KM_E2BIG;
        } else {
            uint8_t *p = km_malloc(n + 1);
            kumo__cluster__propose__pack(&pb, p);
            *out = p;
            *len = n;
        }
    }
    for (size_t i = 0; i < b->n; i++) {
        free(s[i].response);
        free(s[i].ids);
    }
    free(s);
    free(ptrs);
    free(cmds);
    return rv;
}

int
cluster_msg_decode_propose(const void *data, size_t len,
                           struct cluster_batch *out)
{
    Kumo__Cluster__Propose *pb;
    int rv = 0;

    memset(out, 0, sizeof(*out));
    if (len > CLUSTER_MAX_ENTRY_BYTES) {
        return KM_E2BIG;
    }
    pb = kumo__cluster__propose__unpack(NULL, len, data);
    if (pb == NULL) {
        return KM_ECORRUPT;
    }
    if (pb->n_cmds > CLUSTER_MAX_BATCH_RECORDS) {
        rv = KM_ECORRUPT;
        goto out_free;
    }
    out->batch_seq = pb->origin_batch_id;
    out->recs = km_calloc(pb->n_cmds + 1, sizeof(*out->recs));
    for (size_t i = 0; i < pb->n_cmds; i++) {
        out->n = i + 1; /* fini releases partial records too */
        rv = cluster_msg_cmd_in(pb->cmds[i], &out->recs[i]);
        if (rv != 0) {
            cluster_batch_fini(out);
            goto out_free;
        }
    }
    out->n = pb->n_cmds;

out_free:
    kumo__cluster__propose__free_unpacked(pb, NULL);
    return rv;
}

int
cluster_msg_encode_propose_ack(const struct cluster_propose_ack *a, void **out,
                               size_t *len)
{
    Kumo__Cluster__ProposeAck pb;

    kumo__cluster__propose_ack__init(&pb);
    pb.status = (Kumo__Cluster__Status)a->status;
    pb.raft_index = a->raft_index;
    pb.leader_id = a->leader_id;
    size_t n = kumo__cluster__propose_ack__get_packed_size(&pb);
    uint8_t *p = km_malloc(n + 1);
    kumo__cluster__propose_ack__pack(&pb, p);
    *out = p;
    *len = n;
    return 0;
}

int
cluster_msg_decode_propose_ack(const void *data, size_t len,
                               struct cluster_propose_ack *out)
{
    Kumo__Cluster__ProposeAck *pb =
        kumo__cluster__propose_ack__unpack(NULL, len, data);

    if (pb == NULL) {
        return KM_ECORRUPT;
    }
    memset(out, 0, sizeof(*out));
    out->status = (int)pb->status;
    out->raft_index = pb->raft_index;
    out->leader_id = pb->leader_id;
    kumo__cluster__propose_ack__free_unpacked(pb, NULL);
    return 0;
}
