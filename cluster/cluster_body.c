/* cluster_body.c - body replication between nodes (CLUSTER.md §4.3,
 * §4.5): StoreBody/StoreBodyAck and FetchBody/BodyData over the node link.
 * Owns their codec (link.pb-c.h stays in this file and cluster_msg*.c) and
 * the request/reply plumbing: a received request is checked here (id,
 * sizes, the body's SHA-256) before the host sees it. Storing bodies is the
 * host's business (on_store_body, on_fetch_body); ShardCopy is not done
 * yet and is refused. A StoreBody may carry a deadline shorter than the
 * link's request timeout. Loop thread only. */
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "base/km.h"
#include "base/km_id.h"
#include "base/log.h"
#include "cluster_core.h"
#include "link.pb-c.h"

/* Largest body and meta record accepted from a peer: what the link can
 * carry (64 MiB of payload), and a generous envelope record. */
#define CLUSTER_BODY_MAX_DATA ((size_t)64 * 1024 * 1024)
#define CLUSTER_BODY_MAX_META ((size_t)1024 * 1024)

enum cluster_body_kind {
    CLUSTER_BODY_STORE,
    CLUSTER_BODY_FETCH,
};

struct cluster_body_reply {
    struct cluster_link_reply *r;
    enum cluster_body_kind kind;
    char id[33];
};

/* One request of this node, from send to callback. With a deadline
 * shorter than the link's, a timer races the reply: whichever comes first
 * calls back, and the request is freed once the link's callback has run
 * and the timer is closed (`refs`). */
struct cluster_body_req {
    enum cluster_body_kind kind;
    char id[33];
    cluster_body_cb store_cb;
    cluster_fetch_cb fetch_cb;
    void *arg;
    uv_timer_t timer;
    bool timer_open;
    bool answered; /* the caller's callback has run */
    int refs;
};

/* Codec */

static bool
cluster_body_id_ok(const uint8_t *p, size_t n)
{
    uint8_t raw[KM_ID_BYTES];

    return n == KM_ID_HEX_LEN && km_id_parse((const char *)p, n, raw);
}

static int
cluster_body_status_to_err(int st)
{
    switch (st) {
    case CLUSTER_ST_OK:
        return 0;
    case CLUSTER_ST_NO_SPACE:
        return KM_ENOSPC;
    case CLUSTER_ST_BAD_DIGEST:
        return KM_ECORRUPT;
    case CLUSTER_ST_NOT_FOUND:
        return KM_ENOENT;
    case CLUSTER_ST_BUSY:
        return KM_EAGAIN;
    default:
        return KM_EIO;
    }
}

static Kumo__Cluster__Status
cluster_body_err_to_status(int err)
{
    switch (err) {
    case 0:
        return KUMO__CLUSTER__STATUS__OK;
    case KM_ENOSPC:
        return KUMO__CLUSTER__STATUS__NO_SPACE;
    case KM_ECORRUPT:
        return KUMO__CLUSTER__STATUS__BAD_DIGEST;
    case KM_ENOENT:
        return KUMO__CLUSTER__STATUS__NOT_FOUND;
    case KM_EAGAIN:
    case KM_ECLOSING:
        return KUMO__CLUSTER__STATUS__BUSY;
    default:
        return KUMO__CLUSTER__STATUS__INTERNAL;
    }
}

/* Check the fields a body carries; 0 or KM_EPROTO / KM_E2BIG. */
static int
cluster_body_check(const ProtobufCBinaryData *id,
                   const ProtobufCBinaryData *meta,
                   const ProtobufCBinaryData *body,
                   const ProtobufCBinaryData *digest)
{
    if (!cluster_body_id_ok(id->data, id->len) ||
        digest->len != SHA256_DIGEST_LENGTH) {
        return KM_EPROTO;
    }
    if (meta->len > CLUSTER_BODY_MAX_META ||
        body->len > CLUSTER_BODY_MAX_DATA) {
        return KM_E2BIG;
    }
    return 0;
}

static void
cluster_body_fill(struct cluster_body *out, const ProtobufCBinaryData *id,
                  const ProtobufCBinaryData *meta,
                  const ProtobufCBinaryData *body,
                  const ProtobufCBinaryData *digest)
{
    memset(out, 0, sizeof(*out));
    memcpy(out->id, id->data, KM_ID_HEX_LEN);
    out->id[KM_ID_HEX_LEN] = '\0';
    out->meta = meta->data;
    out->meta_len = meta->len;
    out->data = body->data;
    out->data_len = body->len;
    memcpy(out->digest, digest->data, sizeof(out->digest));
}

static bool
cluster_body_digest_ok(const struct cluster_body *b)
{
    uint8_t d[SHA256_DIGEST_LENGTH];

    SHA256(b->data, b->data_len, d);
    return memcmp(d, b->digest, sizeof(d)) == 0;
}

static ProtobufCBinaryData
cluster_body_bin(const void *p, size_t n)
{
    ProtobufCBinaryData d = {.len = n, .data = (uint8_t *)(uintptr_t)p};

    return d;
}

/* Pack `msg` into a new buffer that the caller owns (free()). */
static void
cluster_body_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);

    *out = km_malloc(n + 1);
    *len = protobuf_c_message_pack(msg, *out);
}

/* Send `type`/`msg` as the answer to r. */
static void
cluster_body_answer(struct cluster_link_reply *r, uint32_t type,
                    const ProtobufCMessage *msg)
{
    struct cluster_link_msg m = {.kind = CLUSTER_LINK_RAW};
    uint8_t *p;
    size_t len;

    cluster_body_pack(msg, &p, &len);
    m.u.raw.type = type;
    m.u.raw.data = p;
    m.u.raw.len = len;
    (void)cluster_link_reply_send(r, &m);
    free(p);
}

static void
cluster_body_answer_store(struct cluster_link_reply *r, const char *id, int err)
{
    Kumo__Cluster__StoreBodyAck ack = KUMO__CLUSTER__STORE_BODY_ACK__INIT;

    ack.id = cluster_body_bin(id, strlen(id));
    ack.status = cluster_body_err_to_status(err);
    cluster_body_answer(r, CLUSTER_LINK_T_STORE_BODY_ACK, &ack.base);
}

static void
cluster_body_answer_fetch(struct cluster_link_reply *r, const char *id, int err,
                          const struct cluster_body *b)
{
    Kumo__Cluster__BodyData bd = KUMO__CLUSTER__BODY_DATA__INIT;

    bd.id = cluster_body_bin(id, strlen(id));
    bd.status = cluster_body_err_to_status(err);
    if (err == 0 && b != NULL) {
        bd.meta = cluster_body_bin(b->meta, b->meta_len);
        bd.body = cluster_body_bin(b->data, b->data_len);
        bd.digest = cluster_body_bin(b->digest, sizeof(b->digest));
    } else if (err == 0) {
        bd.status = KUMO__CLUSTER__STATUS__INTERNAL;
    }
    cluster_body_answer(r, CLUSTER_LINK_T_BODY_DATA, &bd.base);
}

/* Receiving side */

static void
cluster_body_on_store(struct cluster *c, uint64_t from,
                      const struct cluster_link_raw *raw,
                      struct cluster_link_reply *r)
{
    Kumo__Cluster__StoreBody *sb;
    struct cluster_body_reply *br;
    struct cluster_body b;
    int rv;

    sb = kumo__cluster__store_body__unpack(NULL, raw->len, raw->data);
    if (sb == NULL) {
        struct cluster_link_msg none = {.kind = CLUSTER_LINK_NONE};
        (void)cluster_link_reply_send(r, &none);
        return;
    }
    rv = cluster_body_check(&sb->id, &sb->meta, &sb->body, &sb->digest);
    if (rv != 0) {
        LOG_WARN("cluster: StoreBody from node %llu: %s",
                 (unsigned long long)from, km_strerror(rv));
        cluster_body_answer_store(r, "", KM_EINVAL);
        goto out;
    }
    cluster_body_fill(&b, &sb->id, &sb->meta, &sb->body, &sb->digest);
    b.shard = sb->shard;
    if (!cluster_body_digest_ok(&b)) {
        LOG_WARN("cluster: StoreBody %s from node %llu: digest mismatch", b.id,
                 (unsigned long long)from);
        cluster_body_answer_store(r, b.id, KM_ECORRUPT);
        goto out;
    }
    if (c->host.on_store_body == NULL) {
        cluster_body_answer_store(r, b.id, KM_EIO);
        goto out;
    }
    br = km_calloc(1, sizeof(*br));
    br->r = r;
    br->kind = CLUSTER_BODY_STORE;
    memcpy(br->id, b.id, sizeof(br->id));
    c->host.on_store_body(c->host.ctx, from, &b, br);
out:
    kumo__cluster__store_body__free_unpacked(sb, NULL);
}

static void
cluster_body_on_fetch(struct cluster *c, uint64_t from,
                      const struct cluster_link_raw *raw,
                      struct cluster_link_reply *r)
{
    Kumo__Cluster__FetchBody *fb;
    struct cluster_body_reply *br;

    fb = kumo__cluster__fetch_body__unpack(NULL, raw->len, raw->data);
    if (fb == NULL || !cluster_body_id_ok(fb->id.data, fb->id.len)) {
        struct cluster_link_msg none = {.kind = CLUSTER_LINK_NONE};
        (void)cluster_link_reply_send(r, &none);
        goto out;
    }
    br = km_calloc(1, sizeof(*br));
    br->r = r;
    br->kind = CLUSTER_BODY_FETCH;
    memcpy(br->id, fb->id.data, KM_ID_HEX_LEN);
    if (c->host.on_fetch_body == NULL) {
        cluster_body_reply(br, KM_ENOENT, NULL);
        goto out;
    }
    c->host.on_fetch_body(c->host.ctx, from, br->id, br);
out:
    if (fb != NULL) {
        kumo__cluster__fetch_body__free_unpacked(fb, NULL);
    }
}

void
cluster_body_on_request(struct cluster *c, uint64_t from,
                        const struct cluster_link_raw *raw,
                        struct cluster_link_reply *r)
{
    struct cluster_link_msg none = {.kind = CLUSTER_LINK_NONE};

    switch (raw->type) {
    case CLUSTER_LINK_T_STORE_BODY:
        cluster_body_on_store(c, from, raw, r);
        return;
    case CLUSTER_LINK_T_FETCH_BODY:
        cluster_body_on_fetch(c, from, raw, r);
        return;
    default:
        /* TODO(#5): ShardCopy for rebalancing. */
        (void)cluster_link_reply_send(r, &none);
        return;
    }
}

void
cluster_body_reply(struct cluster_body_reply *r, int status,
                   const struct cluster_body *b)
{
    if (r->kind == CLUSTER_BODY_STORE) {
        cluster_body_answer_store(r->r, r->id, status);
    } else {
        cluster_body_answer_fetch(r->r, r->id, status, b);
    }
    free(r);
}

/* Sending side */

static void
cluster_body_on_store_reply(struct cluster_body_req *q, int status,
                            const struct cluster_link_msg *reply)
{
    Kumo__Cluster__StoreBodyAck *ack;

    if (status != 0) {
        q->store_cb(q->arg, status);
        return;
    }
    if (reply->kind != CLUSTER_LINK_RAW ||
        reply->u.raw.type != CLUSTER_LINK_T_STORE_BODY_ACK) {
        q->store_cb(q->arg, KM_EPROTO);
        return;
    }
    ack = kumo__cluster__store_body_ack__unpack(NULL, reply->u.raw.len,
                                                reply->u.raw.data);
    if (ack == NULL) {
        q->store_cb(q->arg, KM_EPROTO);
        return;
    }
    status = cluster_body_status_to_err(ack->status);
    if (status == 0 && (ack->id.len != KM_ID_HEX_LEN ||
                        memcmp(ack->id.data, q->id, KM_ID_HEX_LEN) != 0)) {
        status = KM_EPROTO;
    }
    kumo__cluster__store_body_ack__free_unpacked(ack, NULL);
    q->store_cb(q->arg, status);
}

static void
cluster_body_on_fetch_reply(struct cluster_body_req *q, int status,
                            const struct cluster_link_msg *reply)
{
    Kumo__Cluster__BodyData *bd;
    struct cluster_body b;

    if (status != 0) {
        q->fetch_cb(q->arg, status, NULL);
        return;
    }
    if (reply->kind != CLUSTER_LINK_RAW ||
        reply->u.raw.type != CLUSTER_LINK_T_BODY_DATA) {
        q->fetch_cb(q->arg, KM_EPROTO, NULL);
        return;
    }
    bd = kumo__cluster__body_data__unpack(NULL, reply->u.raw.len,
                                          reply->u.raw.data);
    if (bd == NULL) {
        q->fetch_cb(q->arg, KM_EPROTO, NULL);
        return;
    }
    status = cluster_body_status_to_err(bd->status);
    if (status == 0) {
        status = cluster_body_check(&bd->id, &bd->meta, &bd->body, &bd->digest);
    }
    if (status == 0) {
        cluster_body_fill(&b, &bd->id, &bd->meta, &bd->body, &bd->digest);
        if (strcmp(b.id, q->id) != 0) {
            status = KM_EPROTO;
        } else if (!cluster_body_digest_ok(&b)) {
            status = KM_ECORRUPT;
        }
    }
    q->fetch_cb(q->arg, status, status == 0 ? &b : NULL);
    kumo__cluster__body_data__free_unpacked(bd, NULL);
}

static void
cluster_body_req_unref(struct cluster_body_req *q)
{
    KM_ASSERT(q->refs > 0);
    if (--q->refs == 0) {
        free(q);
    }
}

static void
cluster_body_on_timer_closed(uv_handle_t *h)
{
    cluster_body_req_unref(h->data);
}

static void
cluster_body_close_timer(struct cluster_body_req *q)
{
    if (q->timer_open) {
        q->timer_open = false;
        uv_timer_stop(&q->timer);
        uv_close((uv_handle_t *)&q->timer, cluster_body_on_timer_closed);
    }
}

static void
cluster_body_on_deadline(uv_timer_t *t)
{
    struct cluster_body_req *q = t->data;

    cluster_body_close_timer(q);
    if (q->answered) {
        return;
    }
    q->answered = true;
    if (q->kind == CLUSTER_BODY_STORE) {
        q->store_cb(q->arg, KM_ETIMEDOUT);
    } else {
        q->fetch_cb(q->arg, KM_ETIMEDOUT, NULL);
    }
}

static void
cluster_body_on_reply(void *arg, int status,
                      const struct cluster_link_msg *reply)
{
    struct cluster_body_req *q = arg;

    cluster_body_close_timer(q);
    if (!q->answered) {
        /* A reply after our own deadline is dropped. */
        q->answered = true;
        if (q->kind == CLUSTER_BODY_STORE) {
            cluster_body_on_store_reply(q, status, reply);
        } else {
            cluster_body_on_fetch_reply(q, status, reply);
        }
    }
    cluster_body_req_unref(q);
}

static int
cluster_body_send(struct cluster *c, uint64_t node, uint32_t type,
                  const ProtobufCMessage *msg, uint32_t timeout_ms,
                  struct cluster_body_req *q)
{
    struct cluster_link_msg m = {.kind = CLUSTER_LINK_RAW};
    uint8_t *p;
    size_t len;
    int rv;

    if (c->link == NULL || c->closing) {
        free(q);
        return c->closing ? KM_ECLOSING : KM_ENOENT;
    }
    cluster_body_pack(msg, &p, &len);
    m.u.raw.type = type;
    m.u.raw.data = p;
    m.u.raw.len = len;
    rv = cluster_link_request(c->link, node, &m, cluster_body_on_reply, q);
    free(p);
    if (rv != 0) {
        free(q);
        return rv;
    }
    q->refs = 1;
    if (timeout_ms > 0 && timeout_ms < CLUSTER_LINK_TIMEOUT_DEFAULT) {
        uv_timer_init(c->loop, &q->timer);
        q->timer.data = q;
        q->timer_open = true;
        q->refs++;
        uv_timer_start(&q->timer, cluster_body_on_deadline, timeout_ms, 0);
    }
    return 0;
}

int
cluster_store_body(struct cluster *c, uint64_t node,
                   const struct cluster_body *b, uint32_t timeout_ms,
                   cluster_body_cb cb, void *arg)
{
    Kumo__Cluster__StoreBody sb = KUMO__CLUSTER__STORE_BODY__INIT;
    struct cluster_body_req *q;

    if (!cluster_body_id_ok((const uint8_t *)b->id, strlen(b->id)) ||
        b->meta_len > CLUSTER_BODY_MAX_META ||
        b->data_len > CLUSTER_BODY_MAX_DATA) {
        return KM_EINVAL;
    }
    q = km_calloc(1, sizeof(*q));
    q->kind = CLUSTER_BODY_STORE;
    memcpy(q->id, b->id, sizeof(q->id));
    q->store_cb = cb;
    q->arg = arg;
    sb.id = cluster_body_bin(b->id, KM_ID_HEX_LEN);
    sb.shard = b->shard;
    sb.meta = cluster_body_bin(b->meta, b->meta_len);
    sb.body = cluster_body_bin(b->data, b->data_len);
    sb.digest = cluster_body_bin(b->digest, sizeof(b->digest));
    /* The link's own deadline (CLUSTER_LINK_TIMEOUT_DEFAULT: the cluster
     * opens its link with the default) bounds longer ones. */
    return cluster_body_send(c, node, CLUSTER_LINK_T_STORE_BODY, &sb.base,
                             timeout_ms, q);
}

int
cluster_fetch_body(struct cluster *c, uint64_t node, const char *id,
                   cluster_fetch_cb cb, void *arg)
{
    Kumo__Cluster__FetchBody fb = KUMO__CLUSTER__FETCH_BODY__INIT;
    struct cluster_body_req *q;

    if (!cluster_body_id_ok((const uint8_t *)id, strlen(id))) {
        return KM_EINVAL;
    }
    q = km_calloc(1, sizeof(*q));
    q->kind = CLUSTER_BODY_FETCH;
    memcpy(q->id, id, sizeof(q->id));
    q->fetch_cb = cb;
    q->arg = arg;
    fb.id = cluster_body_bin(id, KM_ID_HEX_LEN);
    fb.max_bytes = CLUSTER_BODY_MAX_DATA;
    return cluster_body_send(c, node, CLUSTER_LINK_T_FETCH_BODY, &fb.base, 0,
                             q);
}
