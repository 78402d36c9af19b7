/* cluster_msg_link.c - converts LinkEnvelopes (proto/link.proto) to and
 * from the plain struct cluster_link_env of cluster_link_int.h. Ping and
 * Pong get plain fields; any other member travels as CLUSTER_LINK_RAW, its
 * packed bytes appended to the envelope as the oneof field, so new kinds
 * need no change here. Checks sizes of everything it decodes; knows
 * nothing of NNG. Any thread; no state. */
#include "cluster_link_int.h"

#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "link.pb-c.h"

/* Longest varint: 10 bytes; a tag and a length make two. */
#define CLUSTER_MSG_LINK_VARINT_MAX 10

static size_t
cluster_msg_link_put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;

    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* The oneof member with field number `type`, or NULL when `type` is not a
 * message member of LinkEnvelope's oneof. */
static const ProtobufCFieldDescriptor *
cluster_msg_link_member(uint32_t type)
{
    const ProtobufCFieldDescriptor *f;

    f = protobuf_c_message_descriptor_get_field(
        &kumo__cluster__link_envelope__descriptor, type);
    if (f == NULL || f->type != PROTOBUF_C_TYPE_MESSAGE ||
        (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) == 0) {
        return NULL;
    }
    return f;
}

int
cluster_msg_link_encode(const struct cluster_link_env *env, size_t max_bytes,
                        uint8_t **out, size_t *out_len)
{
    Kumo__Cluster__LinkEnvelope e = KUMO__CLUSTER__LINK_ENVELOPE__INIT;
    Kumo__Cluster__Ping ping;
    Kumo__Cluster__Pong pong;
    const struct cluster_link_msg *m = &env->msg;
    size_t extra = 0;
    size_t n;
    uint8_t *buf;

    if (env->cluster_id_len > CLUSTER_LINK_ID_MAX) {
        return KM_EINVAL;
    }
    /* PING__INIT and PONG__INIT cast away const from
     * protobuf_c_empty_string. */
    kumo__cluster__ping__init(&ping);
    kumo__cluster__pong__init(&pong);
    e.version = env->version;
    e.cluster_id.data = (uint8_t *)(uintptr_t)env->cluster_id;
    e.cluster_id.len = env->cluster_id_len;
    e.from_node = env->from_node;
    e.req_id = env->req_id;
    e.sender_proof.data = (uint8_t *)(uintptr_t)env->proof;
    e.sender_proof.len = env->proof_len;
    switch (m->kind) {
    case CLUSTER_LINK_NONE:
        break;
    case CLUSTER_LINK_PING:
        ping.seq = m->u.ping.seq;
        ping.applied_index = m->u.ping.applied_index;
        if (m->u.ping.link_url != NULL) {
            ping.link_url = (char *)(uintptr_t)m->u.ping.link_url;
        }
        e.msg_case = KUMO__CLUSTER__LINK_ENVELOPE__MSG_PING;
        e.ping = &ping;
        break;
    case CLUSTER_LINK_PONG:
        pong.seq = m->u.pong.seq;
        pong.leader_id = m->u.pong.leader_id;
        pong.term = m->u.pong.term;
        pong.commit_index = m->u.pong.commit_index;
        pong.lease_ok = m->u.pong.lease_ok;
        e.msg_case = KUMO__CLUSTER__LINK_ENVELOPE__MSG_PONG;
        e.pong = &pong;
        break;
    case CLUSTER_LINK_RAW:
        /* Ping and Pong have plain forms; sending them raw would make the
         * two sides disagree on the kind. */
        if (cluster_msg_link_member(m->u.raw.type) == NULL ||
            m->u.raw.type == KUMO__CLUSTER__LINK_ENVELOPE__MSG_PING ||
            m->u.raw.type == KUMO__CLUSTER__LINK_ENVELOPE__MSG_PONG ||
            (m->u.raw.len > 0 && m->u.raw.data == NULL)) {
            return KM_EINVAL;
        }
        extra = 2 * CLUSTER_MSG_LINK_VARINT_MAX + m->u.raw.len;
        break;
    default:
        return KM_EINVAL;
    }
    n = kumo__cluster__link_envelope__get_packed_size(&e);
    if (n > max_bytes || extra > max_bytes - n) {
        return KM_E2BIG;
    }
    buf = km_malloc(n + extra + 1);
    n = kumo__cluster__link_envelope__pack(&e, buf);
    if (m->kind == CLUSTER_LINK_RAW) {
        /* Protobuf merges concatenated fields: appending the member as a
         * length-delimited field equals packing it inside the oneof. */
        n += cluster_msg_link_put_varint(buf + n,
                                         ((uint64_t)m->u.raw.type << 3) | 2);
        n += cluster_msg_link_put_varint(buf + n, m->u.raw.len);
        if (m->u.raw.len > 0) {
            memcpy(buf + n, m->u.raw.data, m->u.raw.len);
        }
        n += m->u.raw.len;
        if (n > max_bytes) {
            free(buf);
            return KM_E2BIG;
        }
    }
    *out = buf;
    *out_len = n;
    return 0;
}

/* Re-pack the oneof member of `e` into env->owned as CLUSTER_LINK_RAW. */
static int
cluster_msg_link_decode_raw(const Kumo__Cluster__LinkEnvelope *e,
                            struct cluster_link_env *env)
{
    const ProtobufCFieldDescriptor *f;
    const ProtobufCMessage *sub;
    size_t n;

    f = cluster_msg_link_member((uint32_t)e->msg_case);
    if (f == NULL) {
        return KM_EPROTO;
    }
    memcpy(&sub, (const char *)e + f->offset, sizeof(sub));
    if (sub == NULL) {
        return KM_EPROTO;
    }
    n = protobuf_c_message_get_packed_size(sub);
    env->owned = km_malloc(n + 1);
    env->msg.u.raw.len = protobuf_c_message_pack(sub, env->owned);
    env->msg.u.raw.data = env->owned;
    env->msg.u.raw.type = (uint32_t)e->msg_case;
    env->msg.kind = CLUSTER_LINK_RAW;
    return 0;
}

int
cluster_msg_link_decode(const uint8_t *p, size_t n, size_t max_bytes,
                        struct cluster_link_env *out)
{
    Kumo__Cluster__LinkEnvelope *e;
    int rv = 0;

    memset(out, 0, sizeof(*out));
    if (n > max_bytes) {
        return KM_E2BIG;
    }
    e = kumo__cluster__link_envelope__unpack(NULL, n, p);
    if (e == NULL) {
        return KM_EPROTO;
    }
    if (e->cluster_id.len > CLUSTER_LINK_ID_MAX) {
        rv = KM_EPROTO;
        goto err_after_unpack;
    }
    out->version = e->version;
    if (e->cluster_id.len > 0) {
        memcpy(out->cluster_id, e->cluster_id.data, e->cluster_id.len);
    }
    out->cluster_id_len = e->cluster_id.len;
    out->from_node = e->from_node;
    out->req_id = e->req_id;
    if (e->sender_proof.len > 0) {
        uint8_t *proof = km_malloc(e->sender_proof.len);
        memcpy(proof, e->sender_proof.data, e->sender_proof.len);
        out->proof = proof;
        out->proof_len = e->sender_proof.len;
    }
    switch (e->msg_case) {
    case KUMO__CLUSTER__LINK_ENVELOPE__MSG__NOT_SET:
        out->msg.kind = CLUSTER_LINK_NONE;
        break;
    case KUMO__CLUSTER__LINK_ENVELOPE__MSG_PING:
        out->msg.kind = CLUSTER_LINK_PING;
        out->msg.u.ping.seq = e->ping->seq;
        out->msg.u.ping.applied_index = e->ping->applied_index;
        /* The unpacked message is freed below: keep a copy. */
        if (e->ping->link_url != NULL && e->ping->link_url[0] != '\0') {
            out->owned = (uint8_t *)km_strdup(e->ping->link_url);
            out->msg.u.ping.link_url = (const char *)out->owned;
        }
        break;
    case KUMO__CLUSTER__LINK_ENVELOPE__MSG_PONG:
        out->msg.kind = CLUSTER_LINK_PONG;
        out->msg.u.pong.seq = e->pong->seq;
        out->msg.u.pong.leader_id = e->pong->leader_id;
        out->msg.u.pong.term = e->pong->term;
        out->msg.u.pong.commit_index = e->pong->commit_index;
        out->msg.u.pong.lease_ok = e->pong->lease_ok;
        break;
    default:
        rv = cluster_msg_link_decode_raw(e, out);
        if (rv != 0) {
            goto err_after_unpack;
        }
        break;
    }
    kumo__cluster__link_envelope__free_unpacked(e, NULL);
    return 0;

err_after_unpack:
    kumo__cluster__link_envelope__free_unpacked(e, NULL);
    cluster_msg_link_env_fini(out);
    return rv;
}

void
cluster_msg_link_env_fini(struct cluster_link_env *env)
{
    free(env->owned);
    free((uint8_t *)(uintptr_t)env->proof);
    memset(env, 0, sizeof(*env));
}
