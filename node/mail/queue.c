/* queue.c - scheduled queues: configuration from the policy, due times on
 * one timer wheel (wall-clock milliseconds, as the FSM stores them), the
 * hand-off to egress, and what each attempt's outcome does: log record,
 * Raft record, retry schedule or end of the message. Loop thread only. */
#include "queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "admin_rules.h"
#include "base/km.h"
#include "base/km_map.h"
#include "base/log.h"
#include "cluster.h"
#include "egress.h"
#include "egress_config.h"
#include "logrec.h"
#include "message.h"
#include "metrics.h"
#include "policy.h"
#include "queue_retry.h"
#include "queue_timer.h"
#include "spool.h"

#define QUEUE_TICK_MS 100u
/* An owner without a valid lease looks again after this long. */
#define QUEUE_NO_LEASE_RETRY_MS 1000u
/* KumoMTA's text for an expired message (code 551). */
#define QUEUE_TXT_EXPIRED                                                      \
    "5.4.7 Delivery expired: the next attempt would be past the message's "    \
    "max_age"

#define QUEUE_CONTAINER_OF(p, type, member)                                    \
    ((type *)(void *)((char *)(p)-offsetof(type, member)))

struct queue_sched {
    char *name;
    size_t count;
    /* The get_queue_config arguments, from the queue's first message. */
    char *domain, *tenant, *campaign, *routing_domain;
    struct queue_config cfg;
    bool have_cfg;
    uint64_t cfg_fetched_ms; /* monotonic */
};

enum queue_entry_state {
    QUEUE_ENTRY_SCHEDULED, /* waiting on the wheel */
    QUEUE_ENTRY_EGRESS,    /* handed to egress */
    QUEUE_ENTRY_ENDING,    /* final outcome, Done being committed */
};

struct queue_entry {
    struct message *msg; /* one reference */
    struct queue_sched *sched;
    struct queue_timer_entry timer;
    enum queue_entry_state state;
};

struct queue_mgr {
    struct queue_deps d;
    struct km_map *queues; /* name -> struct queue_sched */
    struct km_map *by_id;  /* id -> struct queue_entry */
    struct queue_timer wheel;
    uv_timer_t uvt;
    bool started;
    bool stopping; /* shutdown: promote nothing more */
    bool closing;
    uint64_t armed_due; /* wall ms the uv timer is set for; 0 = none */
    size_t pending_commits;
};

/* A Done record on its way: the context of its commit callback. */
struct queue_done_ctx {
    struct queue_mgr *qm;
    char id[KM_ID_HEX_LEN + 1];
};

static uint64_t
queue_now(void)
{
    return (uint64_t)km_now_wall_ms();
}

static void queue_on_timer(uv_timer_t *t);

int
queue_mgr_open(const struct queue_deps *d, struct queue_mgr **out)
{
    struct queue_mgr *qm = km_calloc(1, sizeof(*qm));

    qm->d = *d;
    qm->queues = km_map_new();
    qm->by_id = km_map_new();
    queue_timer_init(&qm->wheel, queue_now(), QUEUE_TICK_MS);
    uv_timer_init(d->loop, &qm->uvt);
    qm->uvt.data = qm;
    *out = qm;
    return 0;
}

static void
queue_sched_free(struct queue_sched *q)
{
    free(q->name);
    free(q->domain);
    free(q->tenant);
    free(q->campaign);
    free(q->routing_domain);
    if (q->have_cfg) {
        egress_queue_config_fini(&q->cfg);
    }
    free(q);
}

void
queue_mgr_free(struct queue_mgr *qm)
{
    struct km_map_iter it;
    void *v;

    if (qm == NULL) {
        return;
    }
    km_map_iter_init(&it, qm->by_id);
    while (km_map_iter_next(&it, NULL, &v)) {
        struct queue_entry *e = v;
        message_unref(e->msg);
        free(e);
    }
    km_map_iter_init(&it, qm->queues);
    while (km_map_iter_next(&it, NULL, &v)) {
        queue_sched_free(v);
    }
    km_map_free(qm->by_id);
    km_map_free(qm->queues);
    free(qm);
}

/* Set the uv timer for the wheel's earliest entry. */
static void
queue_arm(struct queue_mgr *qm)
{
    uint64_t next = queue_timer_next_due(&qm->wheel);
    uint64_t now = queue_now();

    if (!qm->started || qm->closing || next == UINT64_MAX) {
        return;
    }
    if (qm->armed_due != 0 && qm->armed_due <= next &&
        uv_is_active((uv_handle_t *)&qm->uvt)) {
        return;
    }
    qm->armed_due = next;
    uv_timer_start(&qm->uvt, queue_on_timer, next > now ? next - now : 0, 0);
}

static void
queue_schedule(struct queue_mgr *qm, struct queue_entry *e, uint64_t due)
{
    e->state = QUEUE_ENTRY_SCHEDULED;
    queue_timer_add(&qm->wheel, &e->timer, due);
    queue_arm(qm);
}

void
queue_mgr_start(struct queue_mgr *qm)
{
    qm->started = true;
    queue_arm(qm);
}

void
queue_mgr_stop(struct queue_mgr *qm)
{
    qm->stopping = true;
}

struct queue_close_req {
    queue_close_cb cb;
    void *arg;
};

static void
queue_on_closed(uv_handle_t *h)
{
    struct queue_close_req *req = h->data;

    req->cb(req->arg);
    free(req);
}

void
queue_mgr_close(struct queue_mgr *qm, queue_close_cb cb, void *arg)
{
    struct queue_close_req *req = km_calloc(1, sizeof(*req));

    qm->closing = true;
    req->cb = cb;
    req->arg = arg;
    uv_timer_stop(&qm->uvt);
    qm->uvt.data = req;
    uv_close((uv_handle_t *)&qm->uvt, queue_on_closed);
}

static void
queue_set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = src != NULL ? km_strdup(src) : NULL;
}

/* get_queue_config(domain, tenant, campaign, routing_domain). On a policy
 * error the queue keeps its previous configuration (or the defaults). */
static void
queue_refresh_config(struct queue_mgr *qm, struct queue_sched *q)
{
    uint64_t now = km_now_mono_ms();
    struct policy_arg args[4];
    const char *vals[4] = {q->domain, q->tenant, q->campaign,
                           q->routing_domain};
    struct policy_result res;
    struct queue_config cfg;
    char err[512] = "";
    json_t *nul = json_null();
    int rv;

    if (q->have_cfg && now - q->cfg_fetched_ms < q->cfg.refresh_interval_ms) {
        return;
    }
    for (size_t i = 0; i < 4; i++) {
        if (vals[i] != NULL) {
            args[i].kind = POLICY_ARG_STRING;
            args[i].u.str = vals[i];
        } else {
            args[i].kind = POLICY_ARG_JSON;
            args[i].u.json = nul;
        }
    }
    memset(&res, 0, sizeof(res));
    rv = policy_call(qm->d.policy, "get_queue_config", args, 4, &res, NULL, 0);
    if (rv == 0) {
        rv = egress_queue_config_parse(res.value, &cfg, err, sizeof(err));
        if (rv != 0) {
            LOG_ERROR("queue: %s: get_queue_config: %s", q->name, err);
        }
    }
    policy_result_fini(&res);
    if (rv == 0) {
        if (q->have_cfg) {
            egress_queue_config_fini(&q->cfg);
        }
        q->cfg = cfg;
        q->have_cfg = true;
    } else if (!q->have_cfg) {
        (void)egress_queue_config_parse(NULL, &q->cfg, err, sizeof(err));
        q->have_cfg = true;
    }
    q->cfg_fetched_ms = now;
}

static struct queue_sched *
queue_sched_get(struct queue_mgr *qm, struct message *m)
{
    const char *name = message_queue_name(m);
    struct queue_sched *q = km_map_get(qm->queues, name);

    if (q != NULL) {
        return q;
    }
    q = km_calloc(1, sizeof(*q));
    q->name = km_strdup(name);
    queue_set_str(&q->domain, message_recipient_domain(m));
    queue_set_str(&q->tenant, message_meta_str(m, "tenant"));
    queue_set_str(&q->campaign, message_meta_str(m, "campaign"));
    queue_set_str(&q->routing_domain, message_meta_str(m, "routing_domain"));
    km_map_put(qm->queues, name, q, NULL);
    return q;
}

void
queue_insert(struct queue_mgr *qm, struct message *m, const char *reason)
{
    struct queue_entry *e;
    int64_t due = message_due_ms(m);

    if (km_map_has(qm->by_id, message_id(m))) {
        return; /* already queued: inserts are idempotent by id */
    }
    e = km_calloc(1, sizeof(*e));
    message_ref(m);
    e->msg = m;
    e->sched = queue_sched_get(qm, m);
    e->sched->count++;
    queue_timer_entry_init(&e->timer);
    km_map_put(qm->by_id, message_id(m), e, NULL);
    LOG_TRACE(TRACE_QUEUE, "queue: %s: insert %s (%s)", e->sched->name,
              message_id(m), reason);
    queue_schedule(qm, e, due > 0 ? (uint64_t)due : queue_now());
}

struct message *
queue_find(struct queue_mgr *qm, const char *id)
{
    struct queue_entry *e = km_map_get(qm->by_id, id);
    return e != NULL ? e->msg : NULL;
}

bool
queue_remove(struct queue_mgr *qm, const char *id)
{
    void *v;

    if (!km_map_remove(qm->by_id, id, &v)) {
        return false;
    }
    struct queue_entry *e = v;
    queue_timer_cancel(&qm->wheel, &e->timer);
    KM_ASSERT(e->sched->count > 0);
    e->sched->count--;
    message_unref(e->msg);
    free(e);
    return true;
}

bool
queue_forget(struct queue_mgr *qm, const char *id)
{
    struct queue_entry *e = km_map_get(qm->by_id, id);

    if (e == NULL || e->state != QUEUE_ENTRY_SCHEDULED) {
        return false;
    }
    return queue_remove(qm, id);
}

/* Write the record of an attempt's outcome (or of an expiry). */
static void
queue_log(struct queue_mgr *qm, struct queue_entry *e, const char *type,
          const struct egress_outcome *o, int code, const char *content)
{
    struct logrec_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = type;
    ev.msg = e->msg;
    ev.queue = e->sched->name;
    ev.code = code;
    ev.content = content;
    ev.num_attempts = message_num_attempts(e->msg);
    if (o != NULL) {
        ev.command = o->command;
        ev.site = o->site;
        ev.peer_name = o->peer_name;
        ev.peer_addr = o->peer_addr;
        ev.source_addr = o->source_addr;
        ev.egress_pool = o->egress_pool;
        ev.egress_source = o->egress_source;
        ev.delivery_protocol = o->delivery_protocol;
        ev.tls_cipher = o->tls_cipher;
        ev.tls_protocol_version = o->tls_protocol_version;
    } else {
        ev.site = "";
    }
    logrec_set_write(qm->d.logs, &ev);
}

static void
queue_on_done_committed(void *arg, int status)
{
    struct queue_done_ctx *ctx = arg;
    struct queue_mgr *qm = ctx->qm;

    KM_ASSERT(qm->pending_commits > 0);
    qm->pending_commits--;
    if (status == 0) {
        (void)spool_delete(qm->d.data, ctx->id, NULL, NULL);
        (void)spool_delete(qm->d.meta, ctx->id, NULL, NULL);
    } else {
        /* Not recorded: the message stays in the spool and Raft lists it,
         * so a restart delivers it again (at-least-once). */
        LOG_WARN("queue: %s: Done not committed: %s", ctx->id,
                 km_strerror(status));
    }
    queue_remove(qm, ctx->id);
    free(ctx);
}

/* The message is finished: commit Done, then delete its spool copies. */
static void
queue_end(struct queue_mgr *qm, struct queue_entry *e,
          enum cluster_outcome outcome, const char *response)
{
    struct queue_done_ctx *ctx = km_calloc(1, sizeof(*ctx));
    int rv;

    e->state = QUEUE_ENTRY_ENDING;
    ctx->qm = qm;
    memcpy(ctx->id, message_id(e->msg), sizeof(ctx->id));
    qm->pending_commits++;
    rv = cluster_done(qm->d.cluster, ctx->id, outcome, response,
                      queue_on_done_committed, ctx);
    if (rv != 0) {
        queue_on_done_committed(ctx, rv);
    }
}

static void
queue_on_deferred_committed(void *arg, int status)
{
    char *id = arg;

    if (status != 0) {
        /* The FSM keeps the previous due time: after a restart the
         * message is tried again sooner, never lost. */
        LOG_WARN("queue: %s: Deferred not committed: %s", id,
                 km_strerror(status));
    }
    free(id);
}

static void
queue_expire(struct queue_mgr *qm, struct queue_entry *e)
{
    queue_log(qm, e, "Expiration", NULL, 551, QUEUE_TXT_EXPIRED);
    queue_end(qm, e, CLUSTER_EXPIRED, "551 " QUEUE_TXT_EXPIRED);
}

static uint64_t
queue_random(void)
{
    uint64_t r = 0;

    (void)RAND_bytes((unsigned char *)&r, sizeof(r));
    return r;
}

/* A transient failure: count the attempt, then retry or expire. */
static void
queue_retry(struct queue_mgr *qm, struct queue_entry *e, const char *response)
{
    struct message *m = e->msg;
    const struct queue_config *cfg = &e->sched->cfg;
    uint32_t attempts = message_num_attempts(m) + 1;
    uint64_t now = queue_now();
    uint64_t delay =
        queue_retry_delay_ms(cfg->retry_interval_ms, cfg->max_retry_interval_ms,
                             attempts, queue_random());
    int64_t due = (int64_t)(now + delay);

    message_set_num_attempts(m, attempts);
    if (queue_retry_expired(message_created_ms(m), cfg->max_age_ms, due)) {
        queue_expire(qm, e);
        return;
    }
    message_set_due_ms(m, due);
    /* The body waits in the spool, not in memory. */
    message_drop_data(m);
    char *id = km_strdup(message_id(m));
    if (cluster_deferred(qm->d.cluster, id, attempts, due, response,
                         queue_on_deferred_committed, id) != 0) {
        queue_on_deferred_committed(id, KM_ECLOSING);
    }
    queue_schedule(qm, e, (uint64_t)due);
}

/* KumoMTA's delivery counters: one series for the protocol as a whole
 * ("smtp_client", "maildir") and one per ready queue. */
static void
queue_count(struct queue_mgr *qm, const struct egress_outcome *o)
{
    static const char *const names[] = {
        [EGRESS_DELIVERED] = "total_messages_delivered",
        [EGRESS_TRANSIENT] = "total_messages_transfail",
        [EGRESS_BOUNCED] = "total_messages_fail",
        [EGRESS_DELAYED] = "total_messages_transfail",
    };
    static const char *const helps[] = {
        [EGRESS_DELIVERED] = "total number of messages delivered",
        [EGRESS_TRANSIENT] = "total number of message delivery attempts that "
                             "transiently failed",
        [EGRESS_BOUNCED] = "total number of message delivery attempts that "
                           "permanently failed",
        [EGRESS_DELAYED] = "total number of message delivery attempts that "
                           "transiently failed",
    };
    const char *proto = o->delivery_protocol != NULL &&
                                strcmp(o->delivery_protocol, "Maildir") == 0
                            ? "maildir"
                            : "smtp_client";
    char service[600];

    metrics_inc(qm->d.metrics, names[o->kind], helps[o->kind], "service", proto,
                1);
    if (o->site != NULL && o->site[0] != '\0') {
        snprintf(service, sizeof(service), "%s:%s", proto, o->site);
        metrics_inc(qm->d.metrics, names[o->kind], helps[o->kind], "service",
                    service, 1);
    }
}

void
queue_attempt_done(struct queue_mgr *qm, struct message *m,
                   const struct egress_outcome *o)
{
    struct queue_entry *e = km_map_get(qm->by_id, message_id(m));
    char response[1200];

    KM_ASSERT(e != NULL && e->state == QUEUE_ENTRY_EGRESS);
    queue_count(qm, o);
    snprintf(response, sizeof(response), "%d %s", o->code,
             o->content != NULL ? o->content : "");
    switch (o->kind) {
    case EGRESS_DELIVERED:
        queue_log(qm, e, "Delivery", o, o->code, o->content);
        queue_end(qm, e, CLUSTER_DELIVERED, response);
        break;
    case EGRESS_BOUNCED:
        queue_log(qm, e, "Bounce", o, o->code, o->content);
        queue_end(qm, e, CLUSTER_BOUNCED, response);
        break;
    case EGRESS_TRANSIENT:
        queue_log(qm, e, "TransientFailure", o, o->code, o->content);
        queue_retry(qm, e, response);
        break;
    case EGRESS_DELAYED:
        /* Held by a suspension: not an attempt, nothing to commit. */
        queue_log(qm, e, "TransientFailure", o, o->code, o->content);
        message_drop_data(m);
        queue_schedule(qm, e, queue_now() + o->delay_ms);
        break;
    }
}

/* AdminBounce: 551 5.7.1, then the message ends like a bounce. */
static void
queue_admin_bounce_entry(struct queue_mgr *qm, struct queue_entry *e,
                         const char *reason, bool suppress_logging)
{
    char text[700];

    queue_timer_cancel(&qm->wheel, &e->timer);
    snprintf(text, sizeof(text), "5.7.1 Administrator bounced with reason: %s",
             reason != NULL ? reason : "");
    if (!suppress_logging) {
        queue_log(qm, e, "AdminBounce", NULL, 551, text);
    }
    char response[720];
    snprintf(response, sizeof(response), "551 %s", text);
    queue_end(qm, e, CLUSTER_ADMIN_BOUNCED, response);
}

static struct queue_entry *
queue_waiting(struct queue_mgr *qm, const char *id)
{
    struct queue_entry *e = km_map_get(qm->by_id, id);

    return e != NULL && e->state == QUEUE_ENTRY_SCHEDULED ? e : NULL;
}

bool
queue_admin_bounce(struct queue_mgr *qm, const char *id, const char *reason,
                   bool suppress_logging)
{
    struct queue_entry *e = queue_waiting(qm, id);

    if (e == NULL) {
        return false;
    }
    queue_admin_bounce_entry(qm, e, reason, suppress_logging);
    return true;
}

bool
queue_admin_flush(struct queue_mgr *qm, const char *id)
{
    struct queue_entry *e = queue_waiting(qm, id);

    if (e == NULL) {
        return false;
    }
    message_set_due_ms(e->msg, 0);
    queue_schedule(qm, e, queue_now());
    return true;
}

static void
queue_on_meta_rewritten(void *arg, int status)
{
    char *id = arg;

    if (status != 0) {
        LOG_WARN("queue: %s: rebind: spool meta not rewritten: %s", id,
                 km_strerror(status));
    }
    free(id);
}

bool
queue_admin_rebound(struct queue_mgr *qm, const char *id, const char *old_queue,
                    const char *reason, bool suppress_logging)
{
    struct queue_entry *e = queue_waiting(qm, id);
    struct buf rec = BUF_INIT;
    char text[1200];

    if (e == NULL) {
        return false;
    }
    struct queue_sched *q = queue_sched_get(qm, e->msg);
    if (q != e->sched) {
        KM_ASSERT(e->sched->count > 0);
        e->sched->count--;
        e->sched = q;
        q->count++;
    }
    /* The new envelope and meta must survive a restart. */
    message_meta_record(e->msg, &rec);
    char *idc = km_strdup(id);
    if (spool_put(qm->d.meta, id, rec.data, rec.len, queue_on_meta_rewritten,
                  idc) != 0) {
        queue_on_meta_rewritten(idc, KM_ECLOSING);
    }
    buf_fini(&rec);
    if (!suppress_logging) {
        snprintf(text, sizeof(text), "Rebound from %s to %s: %s", old_queue,
                 q->name, reason != NULL ? reason : "");
        queue_log(qm, e, "AdminRebind", NULL, 250, text);
    }
    message_set_due_ms(e->msg, 0);
    queue_schedule(qm, e, queue_now());
    return true;
}

void
queue_foreach_id(struct queue_mgr *qm,
                 void (*fn)(void *arg, struct message *m, const char *queue),
                 void *arg)
{
    size_t n = km_map_count(qm->by_id), i = 0;
    struct message **msgs = km_calloc(n + 1, sizeof(*msgs));
    char **queues = km_calloc(n + 1, sizeof(*queues));
    struct km_map_iter it;
    void *v;

    km_map_iter_init(&it, qm->by_id);
    while (km_map_iter_next(&it, NULL, &v) && i < n) {
        struct queue_entry *e = v;
        message_ref(e->msg);
        msgs[i] = e->msg;
        queues[i] = km_strdup(e->sched->name);
        i++;
    }
    for (size_t j = 0; j < i; j++) {
        fn(arg, msgs[j], queues[j]);
        message_unref(msgs[j]);
        free(queues[j]);
    }
    free(queues);
    free(msgs);
}

/* A message is due: check its age, then hand it to egress. */
static void
queue_promote(struct queue_mgr *qm, struct queue_entry *e)
{
    struct queue_sched *q = e->sched;

    /* In a group only the shard's owner acts on a due message (delivers
     * or expires it), and only while its lease is valid and its FSM has
     * caught up (CLUSTER.md §4.6). A node that lost the shard forgets the
     * message (the body stays until Done; the new owner has it queued);
     * an owner without a lease looks again shortly, without counting an
     * attempt or writing a record. */
    if (cluster_is_group(qm->d.cluster)) {
        const struct cluster_msg *cm =
            cluster_lookup(qm->d.cluster, message_id(e->msg));
        if (cm == NULL || !cluster_owns(qm->d.cluster, cm->shard)) {
            LOG_TRACE(TRACE_QUEUE, "queue: %s: forget %s (not the owner)",
                      q->name, message_id(e->msg));
            queue_remove(qm, message_id(e->msg));
            return;
        }
        if (!cluster_may_deliver(qm->d.cluster, cm->shard)) {
            queue_schedule(qm, e, queue_now() + QUEUE_NO_LEASE_RETRY_MS);
            return;
        }
    }
    queue_refresh_config(qm, q);
    if (queue_retry_expired(message_created_ms(e->msg), q->cfg.max_age_ms,
                            (int64_t)queue_now())) {
        queue_expire(qm, e);
        return;
    }
    const struct admin_rule *rule = NULL;
    switch (admin_rules_check_message(qm->d.rules, e->msg, q->name, &rule)) {
    case ADMIN_VERDICT_BOUNCE:
        queue_admin_bounce_entry(qm, e, rule->reason, rule->suppress_logging);
        return;
    case ADMIN_VERDICT_SUSPENDED: {
        char text[700];
        struct egress_outcome o;
        memset(&o, 0, sizeof(o));
        snprintf(text, sizeof(text),
                 "KumoMTA internal: scheduled queue is suspended: %s",
                 rule->reason != NULL ? rule->reason : "");
        o.kind = EGRESS_DELAYED;
        o.code = 451;
        o.content = text;
        o.site = "";
        o.delay_ms = admin_rules_suspension_delay_ms(rule);
        e->state = QUEUE_ENTRY_EGRESS;
        queue_attempt_done(qm, e->msg, &o);
        return;
    }
    case ADMIN_VERDICT_PASS:
        break;
    }
    e->state = QUEUE_ENTRY_EGRESS;
    egress_submit(qm->d.egress, e->msg, &q->cfg, q->name);
}

static void
queue_on_fire(void *arg, struct queue_timer_entry *te)
{
    struct queue_mgr *qm = arg;
    struct queue_entry *e = QUEUE_CONTAINER_OF(te, struct queue_entry, timer);

    queue_promote(qm, e);
}

static void
queue_on_timer(uv_timer_t *t)
{
    struct queue_mgr *qm = t->data;

    qm->armed_due = 0;
    if (qm->closing || qm->stopping) {
        return; /* due messages wait for the next start */
    }
    queue_timer_advance(&qm->wheel, queue_now(), queue_on_fire, qm);
    queue_arm(qm);
}

size_t
queue_mgr_count(const struct queue_mgr *qm)
{
    return km_map_count(qm->by_id);
}

size_t
queue_mgr_pending_commits(const struct queue_mgr *qm)
{
    return qm->pending_commits;
}

void
queue_mgr_foreach_queue(const struct queue_mgr *qm,
                        void (*fn)(void *arg, const char *name, size_t count),
                        void *arg)
{
    struct km_map_iter it;
    void *v;

    km_map_iter_init(&it, qm->queues);
    while (km_map_iter_next(&it, NULL, &v)) {
        struct queue_sched *q = v;
        fn(arg, q->name, q->count);
    }
}
