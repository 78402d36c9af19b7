/* cluster_msg_status.c - converts the Status and Admin link messages
 * (StatusRequest, StatusReport, Admin, AdminAck of proto/link.proto) to and
 * from the plain structs of cluster_status_int.h. Checks everything it
 * decodes (sizes, known ops, string lengths); knows nothing of raft or
 * NNG. Any thread; no state. */
#include "cluster_status_int.h"

#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "link.pb-c.h"

/* protobuf-c's string fields are `char *` even when only read. */
static char *
cluster_msg_status_str(const char *s)
{
    return (char *)(uintptr_t)s;
}

/* Copy s into dst (size n); false if it does not fit. */
static bool
cluster_msg_status_copy(char *dst, size_t n, const char *s)
{
    size_t len = s != NULL ? strlen(s) : 0;

    if (len >= n) {
        return false;
    }
    if (len > 0) {
        memcpy(dst, s, len);
    }
    dst[len] = '\0';
    return true;
}

static void
cluster_msg_status_pack(const ProtobufCMessage *m, void **out, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = km_malloc(n + 1);

    *len = protobuf_c_message_pack(m, buf);
    *out = buf;
}

/* Link Status enum <-> KM_E* codes. BUSY means "not now, try again". */
static int
cluster_msg_status_to_wire(int status)
{
    switch (status) {
    case 0:
        return KUMO__CLUSTER__STATUS__OK;
    case KM_ENOTLEADER:
        return KUMO__CLUSTER__STATUS__NOT_LEADER;
    case KM_ENOQUORUM:
    case KM_ELEADERLOST:
    case KM_ETIMEDOUT:
        return KUMO__CLUSTER__STATUS__NO_QUORUM;
    case KM_ENOENT:
        return KUMO__CLUSTER__STATUS__NOT_FOUND;
    case KM_EAGAIN:
        return KUMO__CLUSTER__STATUS__BUSY;
    default:
        return KUMO__CLUSTER__STATUS__INTERNAL;
    }
}

static int
cluster_msg_status_from_wire(int st)
{
    switch (st) {
    case KUMO__CLUSTER__STATUS__OK:
        return 0;
    case KUMO__CLUSTER__STATUS__NOT_LEADER:
        return KM_ENOTLEADER;
    case KUMO__CLUSTER__STATUS__NO_QUORUM:
        return KM_ENOQUORUM;
    case KUMO__CLUSTER__STATUS__NOT_FOUND:
        return KM_ENOENT;
    case KUMO__CLUSTER__STATUS__BUSY:
        return KM_EAGAIN;
    default:
        /* The reason travels in the message; the admin errors that land
         * here (already a member, self-removal) are the caller's. */
        return KM_EINVAL;
    }
}

int
cluster_msg_encode_status_request(bool verbose, void **out, size_t *len)
{
    Kumo__Cluster__StatusRequest m;

    kumo__cluster__status_request__init(&m);
    m.verbose = verbose;
    cluster_msg_status_pack(&m.base, out, len);
    return 0;
}

int
cluster_msg_decode_status_request(const void *data, size_t len, bool *verbose)
{
    Kumo__Cluster__StatusRequest *m;

    m = kumo__cluster__status_request__unpack(NULL, len, data);
    if (m == NULL) {
        return KM_ECORRUPT;
    }
    *verbose = m->verbose;
    kumo__cluster__status_request__free_unpacked(m, NULL);
    return 0;
}

int
cluster_msg_encode_status_report(const struct cluster_status_report *r,
                                 const uint8_t *shard_roles, uint32_t n_shards,
                                 void **out, size_t *len)
{
    Kumo__Cluster__StatusReport m;
    Kumo__Cluster__NodeLoad load;
    Kumo__Cluster__ShardStatus *shards = NULL;
    Kumo__Cluster__ShardStatus **ptrs = NULL;
    size_t n = 0;

    if (n_shards > CLUSTER_STATUS_MAX_SHARDS) {
        return KM_EINVAL;
    }
    kumo__cluster__status_report__init(&m);
    kumo__cluster__node_load__init(&load);
    m.node = r->node;
    m.version = cluster_msg_status_str(r->version);
    m.raft_state = cluster_msg_status_str(r->raft_state);
    m.term = r->term;
    m.leader_id = r->leader_id;
    m.last_index = r->last_index;
    m.applied_index = r->applied_index;
    m.commit_index = r->commit_index;
    m.policy_checksum = cluster_msg_status_str(r->policy_checksum);
    m.uptime_s = r->uptime_s;
    m.lease_ok = r->lease_ok;
    load.queued = r->queued;
    load.ready = r->ready;
    load.inflight = r->inflight;
    load.free_bytes = r->free_bytes;
    load.body_bytes = r->body_bytes;
    m.load = &load;
    if (n_shards > 0) {
        shards = km_calloc(n_shards, sizeof(*shards));
        ptrs = km_calloc(n_shards, sizeof(*ptrs));
    }
    for (uint32_t i = 0; i < n_shards; i++) {
        if (shard_roles[i] == 0) {
            continue;
        }
        kumo__cluster__shard_status__init(&shards[n]);
        shards[n].shard = i;
        shards[n].role =
            cluster_msg_status_str(shard_roles[i] == 2 ? "replica" : "owner");
        shards[n].under_replicated = shard_roles[i] == 3 ? 1 : 0;
        ptrs[n] = &shards[n];
        n++;
    }
    m.n_shards = n;
    m.shards = ptrs;
    cluster_msg_status_pack(&m.base, out, len);
    free(ptrs);
    free(shards);
    return 0;
}

int
cluster_msg_decode_status_report(const void *data, size_t len,
                                 struct cluster_status_report *out)
{
    Kumo__Cluster__StatusReport *m;
    int rv = KM_ECORRUPT;

    memset(out, 0, sizeof(*out));
    m = kumo__cluster__status_report__unpack(NULL, len, data);
    if (m == NULL) {
        return KM_ECORRUPT;
    }
    if (m->n_shards > CLUSTER_STATUS_MAX_SHARDS ||
        !cluster_msg_status_copy(out->version, sizeof(out->version),
                                 m->version) ||
        !cluster_msg_status_copy(out->raft_state, sizeof(out->raft_state),
                                 m->raft_state) ||
        !cluster_msg_status_copy(out->policy_checksum,
                                 sizeof(out->policy_checksum),
                                 m->policy_checksum)) {
        goto out_free;
    }
    out->node = m->node;
    out->term = m->term;
    out->leader_id = m->leader_id;
    out->last_index = m->last_index;
    out->applied_index = m->applied_index;
    out->commit_index = m->commit_index;
    out->uptime_s = m->uptime_s;
    out->lease_ok = m->lease_ok;
    if (m->load != NULL) {
        out->queued = m->load->queued;
        out->ready = m->load->ready;
        out->inflight = m->load->inflight;
        out->free_bytes = m->load->free_bytes;
        out->body_bytes = m->load->body_bytes;
    }
    for (size_t i = 0; i < m->n_shards; i++) {
        const Kumo__Cluster__ShardStatus *s = m->shards[i];
        out->shards_backed++;
        if (strcmp(s->role, "owner") == 0) {
            out->shards_owned++;
            if (s->under_replicated > 0) {
                out->under_replicated++;
            }
        }
    }
    rv = 0;

out_free:
    kumo__cluster__status_report__free_unpacked(m, NULL);
    if (rv != 0) {
        memset(out, 0, sizeof(*out));
    }
    return rv;
}

int
cluster_msg_encode_admin(const struct cluster_admin_req *a, void **out,
                         size_t *len)
{
    Kumo__Cluster__Admin m;
    Kumo__Cluster__AddNode add;
    Kumo__Cluster__RemoveNode rm;
    Kumo__Cluster__TransferLeader tl;

    kumo__cluster__admin__init(&m);
    switch (a->op) {
    case CLUSTER_ADMIN_ADD_NODE:
        if (a->node == 0 || a->raft_addr[0] == '\0') {
            return KM_EINVAL;
        }
        kumo__cluster__add_node__init(&add);
        add.node = a->node;
        add.raft_addr = cluster_msg_status_str(a->raft_addr);
        add.link_url = cluster_msg_status_str(a->link_url);
        m.op_case = KUMO__CLUSTER__ADMIN__OP_ADD_NODE;
        m.add_node = &add;
        break;
    case CLUSTER_ADMIN_REMOVE_NODE:
        if (a->node == 0) {
            return KM_EINVAL;
        }
        kumo__cluster__remove_node__init(&rm);
        rm.node = a->node;
        m.op_case = KUMO__CLUSTER__ADMIN__OP_REMOVE_NODE;
        m.remove_node = &rm;
        break;
    case CLUSTER_ADMIN_TRANSFER_LEADER:
        kumo__cluster__transfer_leader__init(&tl);
        tl.node = a->node;
        m.op_case = KUMO__CLUSTER__ADMIN__OP_TRANSFER_LEADER;
        m.transfer_leader = &tl;
        break;
    default:
        return KM_EINVAL;
    }
    cluster_msg_status_pack(&m.base, out, len);
    return 0;
}

int
cluster_msg_decode_admin(const void *data, size_t len,
                         struct cluster_admin_req *out)
{
    Kumo__Cluster__Admin *m;
    int rv = KM_ECORRUPT;

    memset(out, 0, sizeof(*out));
    m = kumo__cluster__admin__unpack(NULL, len, data);
    if (m == NULL) {
        return KM_ECORRUPT;
    }
    switch (m->op_case) {
    case KUMO__CLUSTER__ADMIN__OP_ADD_NODE:
        out->op = CLUSTER_ADMIN_ADD_NODE;
        out->node = m->add_node->node;
        if (out->node == 0 ||
            !cluster_msg_status_copy(out->raft_addr, sizeof(out->raft_addr),
                                     m->add_node->raft_addr) ||
            out->raft_addr[0] == '\0' ||
            !cluster_msg_status_copy(out->link_url, sizeof(out->link_url),
                                     m->add_node->link_url)) {
            goto out_free;
        }
        break;
    case KUMO__CLUSTER__ADMIN__OP_REMOVE_NODE:
        out->op = CLUSTER_ADMIN_REMOVE_NODE;
        out->node = m->remove_node->node;
        if (out->node == 0) {
            goto out_free;
        }
        break;
    case KUMO__CLUSTER__ADMIN__OP_TRANSFER_LEADER:
        out->op = CLUSTER_ADMIN_TRANSFER_LEADER;
        out->node = m->transfer_leader->node;
        break;
    default:
        goto out_free; /* rules travel in raft records, not here */
    }
    rv = 0;

out_free:
    kumo__cluster__admin__free_unpacked(m, NULL);
    if (rv != 0) {
        memset(out, 0, sizeof(*out));
    }
    return rv;
}

int
cluster_msg_encode_admin_ack(const struct cluster_admin_ack *a, void **out,
                             size_t *len)
{
    Kumo__Cluster__AdminAck m;

    kumo__cluster__admin_ack__init(&m);
    m.status = (Kumo__Cluster__Status)cluster_msg_status_to_wire(a->status);
    m.message = cluster_msg_status_str(a->message);
    m.raft_index = a->raft_index;
    cluster_msg_status_pack(&m.base, out, len);
    return 0;
}

int
cluster_msg_decode_admin_ack(const void *data, size_t len,
                             struct cluster_admin_ack *out)
{
    Kumo__Cluster__AdminAck *m;
    int rv = KM_ECORRUPT;

    memset(out, 0, sizeof(*out));
    m = kumo__cluster__admin_ack__unpack(NULL, len, data);
    if (m == NULL) {
        return KM_ECORRUPT;
    }
    if (!cluster_msg_status_copy(out->message, sizeof(out->message),
                                 m->message)) {
        goto out_free;
    }
    out->status = cluster_msg_status_from_wire((int)m->status);
    out->raft_index = m->raft_index;
    rv = 0;

out_free:
    kumo__cluster__admin_ack__free_unpacked(m, NULL);
    if (rv != 0) {
        memset(out, 0, sizeof(*out));
    }
    return rv;
}
