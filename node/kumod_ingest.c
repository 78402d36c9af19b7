/* kumod_ingest.c - the accept path shared by SMTP and HTTP reception
 * (ARCHITECTURE.md §3, CLUSTER.md §4.5): each message's body and envelope
 * are written to the data and meta spools with synced, group-committed
 * writes; then its Enqueue record is committed through Raft; then it is
 * queued and its Reception record is written. Only then does the caller
 * reply 250. In a multi-node group a replication phase comes between the
 * spool and the commit: StoreBody to other nodes until min_replicas
 * durable copies exist, and the Enqueue lists them; the node queues the
 * message only if it owns its shard. Loop thread only. */
#include "kumod.h"

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

#define KUMOD_INGEST_DEFAULT_TIMEOUT_MS (5u * 60u * 1000u)

/* Most nodes one message's body is offered to. */
#define KUMOD_INGEST_MAX_CANDIDATES 16

struct kumod_ingest;

/* One message of an ingest: the context of its spool and raft callbacks. */
struct kumod_ingest_slot {
    struct kumod_ingest *in;
    struct message *msg;
    int spool_status;
    bool committed;
    /* Replication (group only). */
    uint32_t shard;
    uint64_t shard_epoch;
    uint8_t digest[32];
    struct buf meta; /* the meta record, for StoreBody */
    uint64_t cand[KUMOD_INGEST_MAX_CANDIDATES];
    size_t n_cand, next_cand;
    uint64_t replicas[CLUSTER_MAX_MSG_REPLICAS]; /* self first */
    size_t n_replicas;
    size_t inflight;
    size_t needed; /* remote copies still to get */
    int last_error;
};

struct kumod_ingest {
    struct kumod *kd;
    struct kumod_ingest_slot *slots;
    size_t n;
    size_t pending; /* callbacks still to come in the current phase */
    int status;     /* first failure of the current phase */
    bool done;      /* every callback has run */
    bool replied;   /* cb has run (success, failure or timeout) */
    bool timer_open;
    uv_timer_t timer;
    uint64_t timeout_ms;
    kumod_ingest_cb cb;
    void *arg;
    uint64_t replicate_deadline_ms; /* monotonic: accept_timeout */
    /* Copies of the caller's info strings, for the Reception records. */
    char *reception_protocol, *peer_name, *peer_addr, *source_addr;
    char *session_id, *tls_cipher, *tls_protocol_version;
};

/* A multi-node group: bodies are replicated before the commit. */
static bool
kumod_ingest_in_group(const struct kumod *kd)
{
    return kd->n_cluster_peers > 1 && kd->link_listen != NULL &&
           kd->cluster != NULL;
}

static char *
kumod_ingest_dup(const char *s)
{
    return s != NULL ? km_strdup(s) : NULL;
}

static void
kumod_ingest_free(struct kumod_ingest *in)
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
kumod_ingest_on_timer_close(uv_handle_t *h)
{
    struct kumod_ingest *in = h->data;

    in->timer_open = false;
    if (in->done) {
        kumod_ingest_free(in);
    }
}

/* Tell the caller, once; the ingest itself may go on after a timeout. */
static void
kumod_ingest_reply(struct kumod_ingest *in, int status)
{
    if (in->replied) {
        return;
    }
    in->replied = true;
    in->cb(in->arg, status);
}

/* The last callback has run: release everything. */
static void
kumod_ingest_finish(struct kumod_ingest *in, int status)
{
    in->done = true;
    KM_ASSERT(in->kd->inflight_ingests > 0);
    in->kd->inflight_ingests--;
    kumod_ingest_reply(in, status);
    if (in->timer_open) {
        uv_timer_stop(&in->timer);
        uv_close((uv_handle_t *)&in->timer, kumod_ingest_on_timer_close);
    } else {
        kumod_ingest_free(in);
    }
}

static void
kumod_ingest_on_timeout(uv_timer_t *t)
{
    struct kumod_ingest *in = t->data;

    /* KumoMTA's data_processing_timeout: the client gets its 4xx now; the
     * work in flight completes in the background. A message committed
     * after this point is still delivered, which at worst duplicates it
     * when the client retries (at-least-once). */
    LOG_WARN("kumod: ingest of %zu message(s): data_processing_timeout "
             "exceeded",
             in->n);
    kumod_ingest_reply(in, KM_ETIMEDOUT);
}

static void
kumod_ingest_log_reception(struct kumod_ingest *in, struct message *m)
{
    char content[64];
    bool smtp = in->reception_protocol != NULL &&
                strcmp(in->reception_protocol, "ESMTP") == 0;

    /* As KumoMTA logs it: the reply the message got (the final dot's). */
    snprintf(content, sizeof(content), "OK ids=%s", message_id(m));
    struct logrec_event ev = {
        .type = "Reception",
        .msg = m,
        .code = 250,
        .content = content,
        .command = smtp ? "." : NULL,
        .reception_protocol = in->reception_protocol,
        .peer_name = in->peer_name,
        .peer_addr = in->peer_addr,
        .source_addr = in->source_addr,
        .session_id = in->session_id,
        .tls_cipher = in->tls_cipher,
        .tls_protocol_version = in->tls_protocol_version,
    };
    kumod_log(in->kd, &ev);
}

/* Phase 3: every Enqueue has an outcome. Queue the committed ones. */
static void
kumod_ingest_committed(struct kumod_ingest *in)
{
    size_t ok = 0;

    for (size_t i = 0; i < in->n; i++) {
        struct kumod_ingest_slot *s = &in->slots[i];
        if (!s->committed) {
            continue;
        }
        /* A committed message is queued even if a sibling failed: the
         * client gets a 4xx and may send it again (at-least-once). */
        if (!kumod_ingest_in_group(in->kd) ||
            cluster_owns(in->kd->cluster, s->shard)) {
            queue_insert(in->kd->queues, s->msg, "Received");
        }
        kumod_ingest_log_reception(in, s->msg);
        metrics_inc(in->kd->metrics, "total_messages_received",
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
    kumod_ingest_finish(in, ok == in->n ? 0 : in->status);
}

static void
kumod_ingest_on_commit(void *arg, int status)
{
    struct kumod_ingest_slot *s = arg;
    struct kumod_ingest *in = s->in;

    if (status == 0) {
        s->committed = true;
    } else if (in->status == 0) {
        in->status = status;
    }
    KM_ASSERT(in->pending > 0);
    if (--in->pending == 0) {
        kumod_ingest_committed(in);
    }
}

/* Phase 2: propose one Enqueue record per message. */
static void
kumod_ingest_commit(struct kumod_ingest *in)
{
    in->pending = in->n;
    in->status = 0;
    for (size_t i = 0; i < in->n; i++) {
        struct kumod_ingest_slot *s = &in->slots[i];
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
        int rv =
            cluster_enqueue(in->kd->cluster, &cm, kumod_ingest_on_commit, s);
        if (rv != 0) {
            if (in->status == 0) {
                in->status = rv;
            }
            in->pending--;
        }
    }
    if (in->pending == 0) {
        kumod_ingest_committed(in);
    }
}

/* Remove every local copy: nothing of this ingest will be committed. */
static void
kumod_ingest_discard(struct kumod_ingest *in)
{
    for (size_t i = 0; i < in->n; i++) {
        const char *id = message_id(in->slots[i].msg);
        (void)spool_delete(in->kd->data_spool, id, NULL, NULL);
        (void)spool_delete(in->kd->meta_spool, id, NULL, NULL);
    }
}

/* The routing domain that names the message's scheduled queue. */
static const char *
kumod_ingest_routing_domain(struct message *m)
{
    const char *rd = message_meta_str(m, "routing_domain");

    return rd != NULL ? rd : message_recipient_domain(m);
}

static void kumod_ingest_store_next(struct kumod_ingest_slot *s);

/* One slot has its copies, or has run out of candidates. */
static void
kumod_ingest_slot_settled(struct kumod_ingest_slot *s)
{
    struct kumod_ingest *in = s->in;

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
        kumod_ingest_discard(in);
        kumod_ingest_finish(in, in->status);
        return;
    }
    kumod_ingest_commit(in);
}

/* The context of one StoreBody: which node it went to. */
struct kumod_ingest_store {
    struct kumod_ingest_slot *s;
    uint64_t node;
};

static void
kumod_ingest_on_store_reply(void *arg, int status)
{
    struct kumod_ingest_store *st = arg;
    struct kumod_ingest_slot *s = st->s;
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
    kumod_ingest_store_next(s);
}

/* Keep `needed` StoreBody requests in flight while candidates remain and
 * accept_timeout has not passed; settle the slot when nothing is left. */
static void
kumod_ingest_store_next(struct kumod_ingest_slot *s)
{
    struct kumod_ingest *in = s->in;
    const struct buf *data = message_data_c(s->msg);

    while (s->needed > s->inflight && s->next_cand < s->n_cand &&
           km_now_mono_ms() < in->replicate_deadline_ms &&
           !kumod_is_stopping(in->kd)) {
        struct kumod_ingest_store *st = km_calloc(1, sizeof(*st));
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
        rv = cluster_store_body(in->kd->cluster, st->node, &b,
                                left < UINT32_MAX ? (uint32_t)left : 0,
                                kumod_ingest_on_store_reply, st);
        if (rv != 0) {
            s->last_error = rv;
            free(st);
            continue;
        }
        s->inflight++;
    }
    if (s->inflight == 0) {
        kumod_ingest_slot_settled(s);
    }
}

/* Add `node` to the candidates unless it is this node or already there. */
static void
kumod_ingest_add_cand(struct kumod_ingest_slot *s, uint64_t self, uint64_t node)
{
    if (node == 0 || node == self || s->n_cand == KUMOD_INGEST_MAX_CANDIDATES) {
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
kumod_ingest_replicate(struct kumod_ingest *in)
{
    struct kumod *kd = in->kd;
    struct cluster_settings st;
    uint64_t self = cluster_self_id(kd->cluster);
    uint64_t nodes[KUMOD_INGEST_MAX_CANDIDATES];

    cluster_get_settings(kd->cluster, &st);
    in->replicate_deadline_ms = km_now_mono_ms() + st.accept_timeout_ms;
    in->pending = in->n;
    in->status = 0;
    for (size_t i = 0; i < in->n; i++) {
        struct kumod_ingest_slot *s = &in->slots[i];
        const struct buf *data = message_data_c(s->msg);
        size_t n;

        s->shard =
            cluster_shard_for(kd->cluster, kumod_ingest_routing_domain(s->msg),
                              message_id(s->msg));
        SHA256((const unsigned char *)buf_cstr(data), data->len, s->digest);
        buf_reset(&s->meta);
        message_meta_record(s->msg, &s->meta);
        s->replicas[0] = self;
        s->n_replicas = 1;
        s->needed = st.min_replicas > 1 ? st.min_replicas - 1 : 0;
        if (s->needed > CLUSTER_MAX_MSG_REPLICAS - 1) {
            s->needed = CLUSTER_MAX_MSG_REPLICAS - 1;
        }
        n = cluster_shard_replicas(kd->cluster, s->shard, nodes,
                                   KUMOD_INGEST_MAX_CANDIDATES,
                                   &s->shard_epoch);
        for (size_t j = 0; j < n; j++) {
            kumod_ingest_add_cand(s, self, nodes[j]);
        }
        n = cluster_live_nodes(kd->cluster, s->shard, nodes,
                               KUMOD_INGEST_MAX_CANDIDATES);
        for (size_t j = 0; j < n; j++) {
            kumod_ingest_add_cand(s, self, nodes[j]);
        }
        for (size_t j = 0; j < kd->n_cluster_peers; j++) {
            kumod_ingest_add_cand(s, self, kd->cluster_peers[j].id);
        }
        s->last_error = KM_ENOENT; /* no candidate at all */
    }
    /* Separate loop: a slot may settle (and the ingest move on) at once. */
    for (size_t i = 0, n = in->n; i < n; i++) {
        kumod_ingest_store_next(&in->slots[i]);
    }
}

static void
kumod_ingest_on_spooled(void *arg, int status)
{
    struct kumod_ingest_slot *s = arg;
    struct kumod_ingest *in = s->in;

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
            (void)spool_delete(in->kd->data_spool, id, NULL, NULL);
            (void)spool_delete(in->kd->meta_spool, id, NULL, NULL);
        }
        LOG_ERROR("kumod: ingest: spool write failed: %s",
                  km_strerror(in->status));
        kumod_ingest_finish(in, in->status);
        return;
    }
    if (kumod_ingest_in_group(in->kd)) {
        kumod_ingest_replicate(in);
        return;
    }
    kumod_ingest_commit(in);
}

/* Phase 1: store every body and envelope (two writes per message; the
 * spool group-commits them with other sessions' writes). */
static void
kumod_ingest_spool(struct kumod_ingest *in)
{
    struct buf rec = BUF_INIT;

    in->pending = 2 * in->n;
    in->status = 0;
    for (size_t i = 0; i < in->n; i++) {
        struct kumod_ingest_slot *s = &in->slots[i];
        const struct buf *data = message_data_c(s->msg);
        const char *id = message_id(s->msg);
        int rv;

        buf_reset(&rec);
        message_meta_record(s->msg, &rec);
        rv = spool_put(in->kd->data_spool, id, buf_cstr(data), data->len,
                       kumod_ingest_on_spooled, s);
        if (rv != 0) {
            kumod_ingest_on_spooled(s, rv);
        }
        rv = spool_put(in->kd->meta_spool, id, rec.data, rec.len,
                       kumod_ingest_on_spooled, s);
        if (rv != 0) {
            kumod_ingest_on_spooled(s, rv);
        }
    }
    buf_fini(&rec);
}

/* Phase 0: every message is DKIM signed as its policy asked (dkim.h). A
 * message that cannot be signed is not accepted: never sent unsigned. */
static void
kumod_ingest_on_signed(void *arg, int status)
{
    struct kumod_ingest_slot *s = arg;
    struct kumod_ingest *in = s->in;

    if (status != 0 && in->status == 0) {
        in->status = status;
    }
    KM_ASSERT(in->pending > 0);
    if (--in->pending > 0) {
        return;
    }
    if (in->status != 0) {
        kumod_ingest_finish(in, in->status);
        return;
    }
    kumod_ingest_spool(in);
}

/* Deferred start, so that cb never runs before kumod_ingest() returns. */
static void
kumod_ingest_on_start(uv_timer_t *t)
{
    struct kumod_ingest *in = t->data;

    if (in->n == 0) {
        kumod_ingest_finish(in, 0);
        return;
    }
    uv_timer_start(&in->timer, kumod_ingest_on_timeout, in->timeout_ms, 0);
    in->pending = in->n;
    in->status = 0;
    for (size_t i = 0, n = in->n; i < n; i++) {
        dkim_sign_message(in->kd->dkim, in->slots[i].msg,
                          kumod_ingest_on_signed, &in->slots[i]);
    }
}

void
kumod_ingest(struct kumod *kd, struct message *const *msgs, size_t n,
             const struct kumod_ingest_info *info, kumod_ingest_cb cb,
             void *arg)
{
    struct kumod_ingest *in = km_calloc(1, sizeof(*in));
    uint64_t timeout =
        info->timeout_ms ? info->timeout_ms : KUMOD_INGEST_DEFAULT_TIMEOUT_MS;

    in->kd = kd;
    in->n = n;
    in->slots = km_calloc(n ? n : 1, sizeof(*in->slots));
    for (size_t i = 0; i < n; i++) {
        message_ref(msgs[i]);
        in->slots[i].in = in;
        in->slots[i].msg = msgs[i];
    }
    in->cb = cb;
    in->arg = arg;
    in->reception_protocol = kumod_ingest_dup(info->reception_protocol);
    in->peer_name = kumod_ingest_dup(info->peer_name);
    in->peer_addr = kumod_ingest_dup(info->peer_addr);
    in->source_addr = kumod_ingest_dup(info->source_addr);
    in->session_id = kumod_ingest_dup(info->session_id);
    in->tls_cipher = kumod_ingest_dup(info->tls_cipher);
    in->tls_protocol_version = kumod_ingest_dup(info->tls_protocol_version);
    in->timeout_ms = timeout;
    kd->inflight_ingests++;

    uv_timer_init(kd->loop, &in->timer);
    in->timer.data = in;
    in->timer_open = true;
    /* The timer first starts the work on the next loop turn, then it is
     * re-armed as the data_processing_timeout watchdog. */
    uv_timer_start(&in->timer, kumod_ingest_on_start, 0, 0);
}
