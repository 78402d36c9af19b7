/* ingest.c - the accept path shared by SMTP and HTTP reception
 * (ARCHITECTURE.md §3, CLUSTER.md §4.5): each message's body and envelope
 * are written to the data and meta spools with synced, group-committed
 * writes; then its Enqueue record is committed through Raft; then it is
 * queued and its Reception record is written. Only then does the caller
 * reply 250. In a multi-node group a replication phase comes between the
 * spool and the commit: StoreBody to other nodes until min_replicas
 * durable copies exist, and the Enqueue lists them; the node queues the
 * message only if it owns its shard. It also owns what reception means
 * for a message that is not kept (the "null" queue, or accepted but not
 * relayed: logged and dropped) and the one Reception record builder.
 * Loop thread only. */
#include "ingest.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "base/buf.h"
#include "base/km.h"
#include "base/log.h"
#include "cluster.h"
#include "dkim.h"
#include "logrec.h"
#include "message.h"
#include "metrics.h"
#include "queue.h"
#include "spool.h"

#define INGEST_DEFAULT_TIMEOUT_MS (5u * 60u * 1000u)

/* Most nodes one message's body is offered to. */
#define INGEST_MAX_CANDIDATES 16

struct ingest_op;

/* One message of an ingest: the context of its spool and raft callbacks. */
struct ingest_slot {
    struct ingest_op *in;
    struct message *msg;
    int spool_status;
    bool committed;
    /* Replication (group only). */
    uint32_t shard;
    uint64_t shard_epoch;
    uint8_t digest[32];
    struct buf meta; /* the meta record, for StoreBody */
    uint64_t cand[INGEST_MAX_CANDIDATES];
    size_t n_cand, next_cand;
    uint64_t replicas[CLUSTER_MAX_MSG_REPLICAS]; /* self first */
    size_t n_replicas;
    size_t inflight;
    size_t needed; /* remote copies still to get */
    int last_error;
};

struct ingest {
    struct ingest_deps d;
    bool opened;   /* ingest_open: the spools and the cluster are there */
    bool stopping; /* shutdown: offer no more bodies to other nodes */
    size_t inflight;
};

struct ingest_op {
    struct ingest *ig;
    struct ingest_slot *slots;
    size_t n;
    size_t pending; /* callbacks still to come in the current phase */
    int status;     /* first failure of the current phase */
    bool done;      /* every callback has run */
    bool replied;   /* cb has run (success, failure or timeout) */
    bool timer_open;
    uv_timer_t timer;
    uint64_t timeout_ms;
    ingest_cb cb;
    void *arg;
    uint64_t replicate_deadline_ms; /* monotonic: accept_timeout */
    /* Copies of the caller's info strings, for the Reception records. */
    char *reception_protocol, *peer_name, *peer_addr, *source_addr;
    char *session_id, *tls_cipher, *tls_protocol_version;
};

static char *
ingest_dup(const char *s)
{
    return s != NULL ? km_strdup(s) : NULL;
}

static void
ingest_op_free(struct ingest_op *in)
{
    for (size_t i = 0; i < in->n; i++) {
        message_unref(in->slots[i].msg);
        buf_fini(&in->slots[i].meta);
    }
    free(in->slots);
    free(in->reception_protocol);
    free(in->peer_name);
    free(in->peer_addr);
    free(in->source_addr);
    free(in->session_id);
    free(in->tls_cipher);
    free(in->tls_protocol_version);
    free(in);
}

static void
ingest_on_timer_close(uv_handle_t *h)
{
    struct ingest_op *in = h->data;

    in->timer_open = false;
    if (in->done) {
        ingest_op_free(in);
    }
}

/* Tell the caller, once; the ingest itself may go on after a timeout. */
static void
ingest_reply(struct ingest_op *in, int status)
{
    if (in->replied) {
        return;
    }
    in->replied = true;
    in->cb(in->arg, status);
}

/* The last callback has run: release everything. */
static void
ingest_finish(struct ingest_op *in, int status)
{
    in->done = true;
    KM_ASSERT(in->ig->inflight > 0);
    in->ig->inflight--;
    ingest_reply(in, status);
    if (in->timer_open) {
        uv_timer_stop(&in->timer);
        uv_close((uv_handle_t *)&in->timer, ingest_on_timer_close);
    } else {
        ingest_op_free(in);
    }
}

static void
ingest_on_timeout(uv_timer_t *t)
{
    struct ingest_op *in = t->data;

    /* KumoMTA's data_processing_timeout: the client gets its 4xx now; the
     * work in flight completes in the background. A message committed
     * after this point is still delivered, which at worst duplicates it
     * when the client retries (at-least-once). */
    LOG_WARN("kumod: ingest of %zu message(s): data_processing_timeout "
             "exceeded",
             in->n);
    ingest_reply(in, KM_ETIMEDOUT);
}

static void ingest_log_reception(struct ingest *ig,
                                 const struct ingest_peer *peer,
                                 struct message *m);

/* Phase 3: every Enqueue has an outcome. Queue the committed ones. */
static void
ingest_committed(struct ingest_op *in)
{
    size_t ok = 0;

    for (size_t i = 0; i < in->n; i++) {
        struct ingest_slot *s = &in->slots[i];
        if (!s->committed) {
            continue;
        }
        /* A committed message is queued even if a sibling failed: the
         * client gets a 4xx and may send it again (at-least-once). */
        if (!cluster_is_group(in->ig->d.cluster) ||
            cluster_owns(in->ig->d.cluster, s->shard)) {
            queue_insert(in->ig->d.queues, s->msg, "Received");
        }
        struct ingest_peer peer = {
            .reception_protocol = in->reception_protocol,
            .peer_name = in->peer_name,
            .peer_addr = in->peer_addr,
            .source_addr = in->source_addr,
            .session_id = in->session_id,
            .tls_cipher = in->tls_cipher,
            .tls_protocol_version = in->tls_protocol_version,
        };
        ingest_log_reception(in->ig, &peer, s->msg);
        metrics_inc(in->ig->d.metrics, "total_messages_received",
                    "total number of messages received", "service",
                    in->reception_protocol != NULL &&
                            strcmp(in->reception_protocol, "HTTP") == 0
                        ? "http_listener"
                        : "esmtp_listener",
                    1);
        ok++;
    }
    if (ok < in->n) {
        LOG_WARN("kumod: ingest: %zu of %zu message(s) not committed: %s",
                 in->n - ok, in->n, km_strerror(in->status));
    }
    ingest_finish(in, ok == in->n ? 0 : in->status);
}

static void
ingest_on_commit(void *arg, int status)
{
    struct ingest_slot *s = arg;
    struct ingest_op *in = s->in;

    if (status == 0) {
        s->committed = true;
    } else if (in->status == 0) {
        in->status = status;
    }
    KM_ASSERT(in->pending > 0);
    if (--in->pending == 0) {
        ingest_committed(in);
    }
}

/* Phase 2: propose one Enqueue record per message. */
static void
ingest_commit(struct ingest_op *in)
{
    in->pending = in->n;
    in->status = 0;
    for (size_t i = 0; i < in->n; i++) {
        struct ingest_slot *s = &in->slots[i];
        struct message *m = s->msg;
        const struct buf *data = message_data_c(m);
        struct cluster_msg cm;

        memset(&cm, 0, sizeof(cm));
        memcpy(cm.id, message_id(m), sizeof(cm.id));
        cm.queue = message_queue_name(m);
        cm.tenant = message_meta_str(m, "tenant");
        cm.campaign = message_meta_str(m, "campaign");
        cm.egress_pool = message_meta_str(m, "egress_pool");
        cm.created_ms = message_created_ms(m);
        cm.due_ms = message_due_ms(m);
        cm.attempts = message_num_attempts(m);
        cm.size = data->len;
        if (s->n_replicas > 0) {
            memcpy(cm.digest, s->digest, sizeof(cm.digest));
            cm.shard = s->shard;
            cm.shard_epoch = s->shard_epoch;
            memcpy(cm.replicas, s->replicas,
                   s->n_replicas * sizeof(*cm.replicas));
            cm.n_replicas = s->n_replicas;
        } else {
            SHA256((const unsigned char *)buf_cstr(data), data->len, cm.digest);
        }
        int rv = cluster_enqueue(in->ig->d.cluster, &cm, ingest_on_commit, s);
        if (rv != 0) {
            if (in->status == 0) {
                in->status = rv;
            }
            in->pending--;
        }
    }
    if (in->pending == 0) {
        ingest_committed(in);
    }
}

/* Remove every local copy: nothing of this ingest will be committed. */
static void
ingest_discard(struct ingest_op *in)
{
    for (size_t i = 0; i < in->n; i++) {
        const char *id = message_id(in->slots[i].msg);
        (void)spool_delete(in->ig->d.data, id, NULL, NULL);
        (void)spool_delete(in->ig->d.meta, id, NULL, NULL);
    }
}

/* The routing domain that names the message's scheduled queue. */
static const char *
ingest_routing_domain(struct message *m)
{
    const char *rd = message_meta_str(m, "routing_domain");

    return rd != NULL ? rd : message_recipient_domain(m);
}

static void ingest_store_next(struct ingest_slot *s);

/* One slot has its copies, or has run out of candidates. */
static void
ingest_slot_settled(struct ingest_slot *s)
{
    struct ingest_op *in = s->in;

    if (s->needed > 0 && in->status == 0) {
        in->status = KM_ENOQUORUM;
        LOG_WARN("kumod: ingest: %s: %zu body replica(s) missing: %s",
                 message_id(s->msg), s->needed, km_strerror(s->last_error));
    }
    KM_ASSERT(in->pending > 0);
    if (--in->pending > 0) {
        return;
    }
    if (in->status != 0) {
        ingest_discard(in);
        ingest_finish(in, in->status);
        return;
    }
    ingest_commit(in);
}

/* The context of one StoreBody: which node it went to. */
struct ingest_store {
    struct ingest_slot *s;
    uint64_t node;
};

static void
ingest_on_store_reply(void *arg, int status)
{
    struct ingest_store *st = arg;
    struct ingest_slot *s = st->s;
    uint64_t node = st->node;

    free(st);
    KM_ASSERT(s->inflight > 0);
    s->inflight--;
    if (status == 0 && s->needed > 0 &&
        s->n_replicas < CLUSTER_MAX_MSG_REPLICAS) {
        s->replicas[s->n_replicas++] = node;
        s->needed--;
    } else if (status != 0) {
        LOG_DEBUG("kumod: ingest: %s: StoreBody to node %llu: %s",
                  message_id(s->msg), (unsigned long long)node,
                  km_strerror(status));
        s->last_error = status;
    }
    ingest_store_next(s);
}

/* Keep `needed` StoreBody requests in flight while candidates remain and
 * accept_timeout has not passed; settle the slot when nothing is left. */
static void
ingest_store_next(struct ingest_slot *s)
{
    struct ingest_op *in = s->in;
    const struct buf *data = message_data_c(s->msg);

    while (s->needed > s->inflight && s->next_cand < s->n_cand &&
           km_now_mono_ms() < in->replicate_deadline_ms && !in->ig->stopping) {
        struct ingest_store *st = km_calloc(1, sizeof(*st));
        struct cluster_body b;
        int rv;

        memset(&b, 0, sizeof(b));
        memcpy(b.id, message_id(s->msg), sizeof(b.id));
        b.shard = s->shard;
        b.meta = s->meta.data;
        b.meta_len = s->meta.len;
        b.data = buf_cstr(data);
        b.data_len = data->len;
        memcpy(b.digest, s->digest, sizeof(b.digest));
        st->s = s;
        st->node = s->cand[s->next_cand++];
        /* Stop waiting for this copy when accept_timeout runs out. */
        uint64_t left = in->replicate_deadline_ms - km_now_mono_ms();
        rv = cluster_store_body(in->ig->d.cluster, st->node, &b,
                                left < UINT32_MAX ? (uint32_t)left : 0,
                                ingest_on_store_reply, st);
        if (rv != 0) {
            s->last_error = rv;
            free(st);
            continue;
        }
        s->inflight++;
    }
    if (s->inflight == 0) {
        ingest_slot_settled(s);
    }
}

/* Add `node` to the candidates unless it is this node or already there. */
static void
ingest_add_cand(struct ingest_slot *s, uint64_t self, uint64_t node)
{
    if (node == 0 || node == self || s->n_cand == INGEST_MAX_CANDIDATES) {
        return;
    }
    for (size_t i = 0; i < s->n_cand; i++) {
        if (s->cand[i] == node) {
            return;
        }
    }
    s->cand[s->n_cand++] = node;
}

/* Phase 1b (group only): StoreBody to the shard's replicas (owner first),
 * then to any live node as a hinted replica, then to the configured
 * peers, until min_replicas - 1 remote copies are durable. */
static void
ingest_replicate(struct ingest_op *in)
{
    struct ingest *ig = in->ig;
    struct cluster_settings st;
    uint64_t self = cluster_self_id(ig->d.cluster);
    uint64_t nodes[INGEST_MAX_CANDIDATES];

    cluster_get_settings(ig->d.cluster, &st);
    in->replicate_deadline_ms = km_now_mono_ms() + st.accept_timeout_ms;
    in->pending = in->n;
    in->status = 0;
    for (size_t i = 0; i < in->n; i++) {
        struct ingest_slot *s = &in->slots[i];
        const struct buf *data = message_data_c(s->msg);
        size_t n;

        s->shard = cluster_shard_for(
            ig->d.cluster, ingest_routing_domain(s->msg), message_id(s->msg));
        SHA256((const unsigned char *)buf_cstr(data), data->len, s->digest);
        buf_reset(&s->meta);
        message_meta_record(s->msg, &s->meta);
        s->replicas[0] = self;
        s->n_replicas = 1;
        s->needed = st.min_replicas > 1 ? st.min_replicas - 1 : 0;
        if (s->needed > CLUSTER_MAX_MSG_REPLICAS - 1) {
            s->needed = CLUSTER_MAX_MSG_REPLICAS - 1;
        }
        n = cluster_shard_replicas(ig->d.cluster, s->shard, nodes,
                                   INGEST_MAX_CANDIDATES, &s->shard_epoch);
        for (size_t j = 0; j < n; j++) {
            ingest_add_cand(s, self, nodes[j]);
        }
        n = cluster_live_nodes(ig->d.cluster, s->shard, nodes,
                               INGEST_MAX_CANDIDATES);
        for (size_t j = 0; j < n; j++) {
            ingest_add_cand(s, self, nodes[j]);
        }
        n = cluster_configured_peers(ig->d.cluster, nodes,
                                     INGEST_MAX_CANDIDATES);
        for (size_t j = 0; j < n; j++) {
            ingest_add_cand(s, self, nodes[j]);
        }
        s->last_error = KM_ENOENT; /* no candidate at all */
    }
    /* Separate loop: a slot may settle (and the ingest move on) at once. */
    for (size_t i = 0, n = in->n; i < n; i++) {
        ingest_store_next(&in->slots[i]);
    }
}

static void
ingest_on_spooled(void *arg, int status)
{
    struct ingest_slot *s = arg;
    struct ingest_op *in = s->in;

    if (status != 0) {
        s->spool_status = status;
        if (in->status == 0) {
            in->status = status;
        }
    }
    KM_ASSERT(in->pending > 0);
    if (--in->pending > 0) {
        return;
    }
    if (in->status != 0) {
        /* Nothing was committed: remove what did get stored. */
        for (size_t i = 0; i < in->n; i++) {
            const char *id = message_id(in->slots[i].msg);
            (void)spool_delete(in->ig->d.data, id, NULL, NULL);
            (void)spool_delete(in->ig->d.meta, id, NULL, NULL);
        }
        LOG_ERROR("kumod: ingest: spool write failed: %s",
                  km_strerror(in->status));
        ingest_finish(in, in->status);
        return;
    }
    if (cluster_is_group(in->ig->d.cluster)) {
        ingest_replicate(in);
        return;
    }
    ingest_commit(in);
}

/* Phase 1: store every body and envelope (two writes per message; the
 * spool group-commits them with other sessions' writes). */
static void
ingest_spool(struct ingest_op *in)
{
    struct buf rec = BUF_INIT;

    in->pending = 2 * in->n;
    in->status = 0;
    for (size_t i = 0; i < in->n; i++) {
        struct ingest_slot *s = &in->slots[i];
        const struct buf *data = message_data_c(s->msg);
        const char *id = message_id(s->msg);
        int rv;

        buf_reset(&rec);
        message_meta_record(s->msg, &rec);
        rv = spool_put(in->ig->d.data, id, buf_cstr(data), data->len,
                       ingest_on_spooled, s);
        if (rv != 0) {
            ingest_on_spooled(s, rv);
        }
        rv = spool_put(in->ig->d.meta, id, rec.data, rec.len, ingest_on_spooled,
                       s);
        if (rv != 0) {
            ingest_on_spooled(s, rv);
        }
    }
    buf_fini(&rec);
}

/* Phase 0: every message is DKIM signed as its policy asked (dkim.h). A
 * message that cannot be signed is not accepted: never sent unsigned. */
static void
ingest_on_signed(void *arg, int status)
{
    struct ingest_slot *s = arg;
    struct ingest_op *in = s->in;

    if (status != 0 && in->status == 0) {
        in->status = status;
    }
    KM_ASSERT(in->pending > 0);
    if (--in->pending > 0) {
        return;
    }
    if (in->status != 0) {
        ingest_finish(in, in->status);
        return;
    }
    ingest_spool(in);
}

/* Deferred start, so that cb never runs before ingest_submit() returns. */
static void
ingest_on_start(uv_timer_t *t)
{
    struct ingest_op *in = t->data;

    if (in->n == 0) {
        ingest_finish(in, 0);
        return;
    }
    uv_timer_start(&in->timer, ingest_on_timeout, in->timeout_ms, 0);
    in->pending = in->n;
    in->status = 0;
    for (size_t i = 0, n = in->n; i < n; i++) {
        dkim_sign_message(in->ig->d.dkim, in->slots[i].msg, ingest_on_signed,
                          &in->slots[i]);
    }
}

/* The one Reception record builder, for kept and dropped messages. */
static void
ingest_log_reception(struct ingest *ig, const struct ingest_peer *peer,
                     struct message *m)
{
    char content[64];
    bool smtp = peer->reception_protocol != NULL &&
                strcmp(peer->reception_protocol, "ESMTP") == 0;

    /* As KumoMTA logs it: the reply the message got (the final dot's). */
    snprintf(content, sizeof(content), "OK ids=%s", message_id(m));
    struct logrec_event ev = {
        .type = "Reception",
        .msg = m,
        .code = 250,
        .content = content,
        .command = smtp ? "." : NULL,
        .reception_protocol = peer->reception_protocol,
        .peer_name = peer->peer_name,
        .peer_addr = peer->peer_addr,
        .source_addr = peer->source_addr,
        .session_id = peer->session_id,
        .tls_cipher = peer->tls_cipher,
        .tls_protocol_version = peer->tls_protocol_version,
    };
    logrec_set_write(ig->d.logs, &ev);
}

/* KumoMTA's black hole: a message for the "null" queue is accepted and
 * dropped. */
static bool
ingest_null_queued(const struct message *m)
{
    const char *queue = message_meta_str(m, "queue");

    return queue != NULL && strcmp(queue, "null") == 0;
}

bool
ingest_keeps(const struct message *m, enum ingest_verdict v)
{
    return v == INGEST_KEEP && !ingest_null_queued(m);
}

bool
ingest_takes_any(struct message *const *msgs, const enum ingest_verdict *v,
                 size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i] == INGEST_KEEP || ingest_null_queued(msgs[i])) {
            return true;
        }
    }
    return false;
}

void
ingest_submit(struct ingest *ig, struct message *const *msgs,
              const enum ingest_verdict *v, size_t n,
              const struct ingest_peer *peer, ingest_cb cb, void *arg)
{
    struct ingest_op *in = km_calloc(1, sizeof(*in));
    uint64_t timeout =
        peer->timeout_ms ? peer->timeout_ms : INGEST_DEFAULT_TIMEOUT_MS;

    KM_ASSERT(ig->opened);
    in->ig = ig;
    in->slots = km_calloc(n ? n : 1, sizeof(*in->slots));
    for (size_t i = 0; i < n; i++) {
        if (!ingest_keeps(msgs[i], v != NULL ? v[i] : INGEST_KEEP)) {
            /* Accepted and dropped: the null queue, or not relayed. */
            ingest_log_reception(ig, peer, msgs[i]);
            continue;
        }
        message_ref(msgs[i]);
        in->slots[in->n].in = in;
        in->slots[in->n].msg = msgs[i];
        in->n++;
    }
    in->cb = cb;
    in->arg = arg;
    in->reception_protocol = ingest_dup(peer->reception_protocol);
    in->peer_name = ingest_dup(peer->peer_name);
    in->peer_addr = ingest_dup(peer->peer_addr);
    in->source_addr = ingest_dup(peer->source_addr);
    in->session_id = ingest_dup(peer->session_id);
    in->tls_cipher = ingest_dup(peer->tls_cipher);
    in->tls_protocol_version = ingest_dup(peer->tls_protocol_version);
    in->timeout_ms = timeout;
    ig->inflight++;

    uv_timer_init(ig->d.loop, &in->timer);
    in->timer.data = in;
    in->timer_open = true;
    /* The timer first starts the work on the next loop turn, then it is
     * re-armed as the data_processing_timeout watchdog. */
    uv_timer_start(&in->timer, ingest_on_start, 0, 0);
}

void
ingest_new(struct ingest **out)
{
    *out = km_calloc(1, sizeof(**out));
}

void
ingest_open(struct ingest *ig, const struct ingest_deps *d)
{
    ig->d = *d;
    ig->opened = true;
}

void
ingest_stop(struct ingest *ig)
{
    ig->stopping = true;
}

size_t
ingest_inflight(const struct ingest *ig)
{
    return ig->inflight;
}

void
ingest_free(struct ingest *ig)
{
    free(ig);
}
