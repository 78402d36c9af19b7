/* kumod_ingest.c - the accept path shared by SMTP and HTTP reception
 * (ARCHITECTURE.md §3, CLUSTER.md §4.5): each message's body and envelope
 * are written to the data and meta spools with synced, group-committed
 * writes; then its Enqueue record is committed through Raft; then it is
 * queued and its Reception record is written. Only then does the caller
 * reply 250. Loop thread only. */
#include "kumod.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "base/buf.h"
#include "base/km.h"
#include "base/log.h"
#include "cluster.h"
#include "logrec.h"
#include "message.h"
#include "metrics.h"
#include "queue.h"
#include "spool.h"

#define KUMOD_INGEST_DEFAULT_TIMEOUT_MS (5u * 60u * 1000u)

struct kumod_ingest;

/* One message of an ingest: the context of its spool and raft callbacks. */
struct kumod_ingest_slot {
    struct kumod_ingest *in;
    struct message *msg;
    int spool_status;
    bool committed;
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
    /* Copies of the caller's info strings, for the Reception records. */
    char *reception_protocol, *peer_name, *peer_addr, *source_addr;
    char *session_id, *tls_cipher, *tls_protocol_version;
};

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
        queue_insert(in->kd->queues, s->msg, "Received");
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
        SHA256((const unsigned char *)buf_cstr(data), data->len, cm.digest);
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
    kumod_ingest_spool(in);
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
