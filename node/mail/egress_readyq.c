/* egress_readyq.c - ready queues: a FIFO of due messages per egress path,
 * the connection plan (MX hosts in preference order, or the mx_list), and
 * the dispatcher that opens connections within connection_limit and
 * max_connection_rate, sends within max_message_rate, reuses a connection
 * up to max_deliveries_per_connection and closes it after idle_timeout.
 * A connection that cannot be made tries the next address, then the next
 * host; when every host failed, the message at the head gets a transient
 * failure (all queued messages after consecutive_connection_failures_
 * before_delay such failures). Loop thread only. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_rules.h"
#include "base/buf.h"
#include "base/km.h"
#include "base/km_map.h"
#include "base/log.h"
#include "cluster.h"
#include "dns.h"
#include "egress_int.h"
#include "egress_maildir.h"
#include "message.h"
#include "policy.h"
#include "smtp_client.h"
#include "spool.h"

/* Something that held rq open (a connection, a lookup, a maildir write)
 * has finished: finish closing rq if it is closing, else dispatch. */
void
egress_readyq_release(struct readyq *rq)
{
    KM_ASSERT(rq->open > 0);
    rq->open--;
    if (rq->closing) {
        if (rq->open == 0) {
            egress_readyq_close(rq);
        }
        return;
    }
    egress_readyq_dispatch(rq);
}

/* ---- Connection plan ---- */

static void
egress_readyq_clear_plan(struct readyq *rq)
{
    for (size_t i = 0; i < rq->n_hosts; i++) {
        free(rq->hosts[i].name);
        free(rq->hosts[i].addrs);
    }
    free(rq->hosts);
    rq->hosts = NULL;
    rq->n_hosts = 0;
}

static uint16_t
egress_readyq_port(const struct readyq *rq)
{
    return rq->cfg.smtp_port != 0 ? rq->cfg.smtp_port : 25;
}

/* The plan from an MX answer: hosts by preference, their addresses. */
static void
egress_readyq_plan_mx(struct readyq *rq, const struct dns_mx_result *mx)
{
    egress_readyq_clear_plan(rq);
    rq->hosts = km_calloc(mx->n_hosts ? mx->n_hosts : 1, sizeof(*rq->hosts));
    for (size_t i = 0; i < mx->n_hosts; i++) {
        const struct dns_host *h = &mx->hosts[i];
        struct egress_host *eh = &rq->hosts[rq->n_hosts++];
        eh->name = km_strdup(h->name);
        eh->port = egress_readyq_port(rq);
        eh->addrs = km_calloc(h->n_addrs ? h->n_addrs : 1, sizeof(*eh->addrs));
        for (size_t j = 0; j < h->n_addrs; j++) {
            eh->addrs[eh->n_addrs++] = h->addrs[j].sa;
        }
    }
}

struct egress_lookup {
    struct readyq *rq;
    size_t host;
};

static void
egress_readyq_on_addr(void *arg, int status, const struct dns_addr_result *r)
{
    struct egress_lookup *lk = arg;
    struct readyq *rq = lk->rq;
    struct egress_host *eh = &rq->hosts[lk->host];

    free(lk);
    if (status == DNS_OK && r != NULL) {
        eh->addrs = km_calloc(r->n_addrs ? r->n_addrs : 1, sizeof(*eh->addrs));
        for (size_t j = 0; j < r->n_addrs; j++) {
            eh->addrs[eh->n_addrs++] = r->addrs[j].sa;
        }
    } else {
        LOG_WARN("egress: %s: cannot resolve %s: %s", rq->name, eh->name,
                 status >= 0 ? dns_status_str((enum dns_status)status)
                             : km_strerror(status));
    }
    KM_ASSERT(rq->pending_lookups > 0);
    rq->pending_lookups--;
    egress_readyq_release(rq);
}

/* The plan from an mx_list: literals at once, names through DNS. */
static void
egress_readyq_plan_mx_list(struct readyq *rq,
                           const struct egress_mx_entry *list, size_t n)
{
    egress_readyq_clear_plan(rq);
    rq->hosts = km_calloc(n ? n : 1, sizeof(*rq->hosts));
    for (size_t i = 0; i < n; i++) {
        struct egress_host *eh = &rq->hosts[rq->n_hosts++];
        const char *host = list[i].host;

        eh->name = km_strdup(list[i].name != NULL ? list[i].name : host);
        eh->port = list[i].port != 0 ? list[i].port : egress_readyq_port(rq);
        if (list[i].is_literal) {
            struct sockaddr_storage ss;
            memset(&ss, 0, sizeof(ss));
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
                s4->sin_family = AF_INET;
            } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
                s6->sin6_family = AF_INET6;
            } else {
                continue;
            }
            eh->addrs = km_memdup(&ss, sizeof(ss));
            eh->n_addrs = 1;
            continue;
        }
        struct egress_lookup *lk = km_calloc(1, sizeof(*lk));
        (void)host;
        lk->rq = rq;
        lk->host = rq->n_hosts - 1;
        rq->pending_lookups++;
        rq->open++;
        if (dns_resolve_addr(rq->em->dns, list[i].host, egress_readyq_on_addr,
                             lk) != 0) {
            rq->pending_lookups--;
            rq->open--;
            free(lk);
        }
    }
}

/* ---- Configuration ---- */

static bool
egress_readyq_same_spec(const char *a, const char *b)
{
    return (a == NULL && b == NULL) ||
           (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static int
egress_readyq_configure(struct readyq *rq, char *err, size_t errlen)
{
    struct policy_arg args[3] = {
        {.kind = POLICY_ARG_STRING, .u.str = rq->routing_domain},
        {.kind = POLICY_ARG_STRING, .u.str = rq->source_name},
        {.kind = POLICY_ARG_STRING, .u.str = rq->site},
    };
    struct policy_result res;
    struct egress_path_config cfg;
    int rv;

    memset(&res, 0, sizeof(res));
    rv = policy_call(rq->em->d.policy, "get_egress_path_config", args, 3, &res,
                     NULL, 0);
    if (rv != 0) {
        snprintf(err, errlen, "get_egress_path_config failed");
        policy_result_fini(&res);
        return rv;
    }
    rv = egress_path_config_parse(res.value, &cfg, err, errlen);
    policy_result_fini(&res);
    if (rv != 0) {
        return rv;
    }
    /* A throttle that does not parse must not mean "no limit". */
    struct egress_throttle_spec spec;
    char terr[256];
    const char *specs[2] = {cfg.max_connection_rate, cfg.max_message_rate};
    const char *names[2] = {"max_connection_rate", "max_message_rate"};
    for (size_t i = 0; i < 2; i++) {
        if (specs[i] != NULL &&
            egress_throttle_parse(specs[i], &spec, terr, sizeof(terr)) != 0) {
            snprintf(err, errlen, "egress_path: %s: %s", names[i], terr);
            egress_path_config_fini(&cfg);
            return KM_ECONFIG;
        }
    }
    /* A limiter keeps its state across refreshes unless its spec changed:
     * re-creating it would hand out a fresh burst every refresh_interval. */
    bool first = rq->cfg_fetched_ms == 0;
    bool conn_same =
        !first && egress_readyq_same_spec(rq->cfg.max_connection_rate,
                                          cfg.max_connection_rate);
    bool msg_same = !first && egress_readyq_same_spec(rq->cfg.max_message_rate,
                                                      cfg.max_message_rate);
    if (!first) {
        egress_path_config_fini(&rq->cfg);
    }
    rq->cfg = cfg;
    rq->cfg_fetched_ms = km_now_mono_ms();
    rq->connection_limit = cfg.connection_limit ? cfg.connection_limit : 1;
    rq->conn_limit_shared = !cfg.connection_limit_local &&
                            rq->maildir_path == NULL &&
                            cluster_throttle_is_shared(rq->em->d.cluster);
    if (!conn_same) {
        rq->has_conn_rate = false;
        if (cfg.max_connection_rate != NULL &&
            egress_throttle_parse(cfg.max_connection_rate, &spec, terr,
                                  sizeof(terr)) == 0) {
            egress_gcra_init(&rq->conn_rate, &spec);
            rq->has_conn_rate = true;
        }
    }
    if (!msg_same) {
        rq->has_msg_rate = false;
        rq->msg_rate_shared = false;
        if (cfg.max_message_rate != NULL &&
            egress_throttle_parse(cfg.max_message_rate, &spec, terr,
                                  sizeof(terr)) == 0) {
            egress_gcra_init(&rq->msg_rate, &spec);
            rq->has_msg_rate = true;
            rq->msg_spec = spec;
            rq->msg_rate_shared =
                !spec.local && cluster_throttle_is_shared(rq->em->d.cluster);
        }
    }
    return 0;
}

static void
egress_readyq_on_wake(uv_timer_t *t)
{
    egress_readyq_dispatch(t->data);
}

struct readyq *
egress_readyq_get(struct egress_mgr *em, const char *name,
                  const struct egress_item *it, const char *site,
                  const struct dns_mx_result *mx, char *err, size_t errlen)
{
    struct readyq *rq = km_map_get(em->readyqs, name);

    if (rq == NULL) {
        rq = km_calloc(1, sizeof(*rq));
        rq->em = em;
        rq->name = km_strdup(name);
        rq->site = km_strdup(site);
        rq->routing_domain = km_strdup(it->routing_domain);
        rq->source_name = km_strdup(it->source);
        rq->pool_name = km_strdup(it->pool);
        if (it->maildir_path != NULL) {
            rq->maildir_path = km_strdup(it->maildir_path);
        }
        if (egress_readyq_configure(rq, err, errlen) != 0) {
            free(rq->name);
            free(rq->site);
            free(rq->routing_domain);
            free(rq->source_name);
            free(rq->pool_name);
            free(rq->maildir_path);
            free(rq);
            return NULL;
        }
        uv_timer_init(em->d.loop, &rq->wake);
        rq->wake.data = rq;
        rq->open = 1; /* the wake timer */
        km_map_put(em->readyqs, name, rq, NULL);
        if (it->n_mx_list > 0) {
            egress_readyq_plan_mx_list(rq, it->mx_list, it->n_mx_list);
        }
    } else if (km_now_mono_ms() - rq->cfg_fetched_ms >=
               rq->cfg.refresh_interval_ms) {
        char rerr[256];
        if (egress_readyq_configure(rq, rerr, sizeof(rerr)) != 0) {
            LOG_WARN("egress: %s: keeping the previous configuration: %s",
                     rq->name, rerr);
            rq->cfg_fetched_ms = km_now_mono_ms();
        }
    }
    if (mx != NULL) {
        /* The newest answer is the plan (the DNS cache honours TTLs). */
        egress_readyq_plan_mx(rq, mx);
    }
    return rq;
}

void
egress_readyq_push(struct readyq *rq, struct egress_item *it)
{
    it->next = NULL;
    if (rq->tail != NULL) {
        rq->tail->next = it;
    } else {
        rq->head = it;
    }
    rq->tail = it;
    rq->n_queued++;
    egress_readyq_dispatch(rq);
}

struct egress_item *
egress_readyq_pop(struct readyq *rq)
{
    struct egress_item *it = rq->head;

    if (it != NULL) {
        rq->head = it->next;
        if (rq->head == NULL) {
            rq->tail = NULL;
        }
        it->next = NULL;
        rq->n_queued--;
    }
    return it;
}

/* Load the body from the spool if it is not in memory. */
int
egress_readyq_load(struct readyq *rq, struct egress_item *it)
{
    struct buf *data = message_data(it->msg);

    if (data->len > 0) {
        return 0;
    }
    return spool_get(rq->em->d.data, message_id(it->msg), data);
}

/* Whether max_message_rate lets one more message go now; if not, the
 * wake timer is set for when it will. */
static bool
egress_readyq_rate_ok(struct readyq *rq, struct egress_gcra *g, bool has)
{
    uint64_t wait = 0;

    if (!has || egress_gcra_try(g, km_now_mono_ms(), &wait)) {
        return true;
    }
    if (!uv_is_active((uv_handle_t *)&rq->wake)) {
        uv_timer_start(&rq->wake, egress_readyq_on_wake, wait ? wait : 1, 0);
    }
    return false;
}

/* How long a message waits for a cluster-wide token before asking
 * again (the grant is usually committed well within this). */
#define EGRESS_READYQ_TOKEN_RETRY_MS 250

/* Ask the cluster again soon (a token or slot was requested). */
static void
egress_readyq_retry_soon(struct readyq *rq)
{
    if (!uv_is_active((uv_handle_t *)&rq->wake)) {
        uv_timer_start(&rq->wake, egress_readyq_on_wake,
                       EGRESS_READYQ_TOKEN_RETRY_MS, 0);
    }
}

/* This ready queue's cluster key with `prefix` ("mmr:", "cl:"); false if
 * the name is too long for a key (the node's own limit applies then). */
static bool
egress_readyq_key(const struct readyq *rq, const char *prefix, char *key,
                  size_t len)
{
    int n = snprintf(key, len, "%s%s", prefix, rq->name);
    return n > 0 && (size_t)n < len;
}

/* Whether max_message_rate lets one more message go now: the cluster-wide
 * token grants for a shared spec in a cluster, else the local GCRA. If
 * not, the wake timer is set for a retry (no attempt is counted). */
static bool
egress_readyq_msg_ok(struct readyq *rq)
{
    if (!rq->has_msg_rate || !rq->msg_rate_shared) {
        return egress_readyq_rate_ok(rq, &rq->msg_rate, rq->has_msg_rate);
    }
    char key[CLUSTER_MAX_THROTTLE_KEY_LEN + 1];
    if (!egress_readyq_key(rq, "mmr:", key, sizeof(key))) {
        /* A name too long for a key: this node's own limiter. */
        return egress_readyq_rate_ok(rq, &rq->msg_rate, rq->has_msg_rate);
    }
    int rv = cluster_throttle_take(rq->em->d.cluster, key, rq->msg_spec.limit,
                                   rq->msg_spec.period_ms, km_now_wall_ms());
    if (rv == 0) {
        return true;
    }
    if (rv != KM_EAGAIN) {
        /* Not a spec the cluster takes: this node's own limiter. */
        return egress_readyq_rate_ok(rq, &rq->msg_rate, rq->has_msg_rate);
    }
    egress_readyq_retry_soon(rq);
    return false;
}

/* A connection that held a cluster-wide slot closed. */
void
egress_readyq_conn_release(struct readyq *rq)
{
    char key[CLUSTER_MAX_THROTTLE_KEY_LEN + 1];

    if (egress_readyq_key(rq, "cl:", key, sizeof(key))) {
        cluster_conn_release(rq->em->d.cluster, key);
    }
}

/* May one more connection open, with `want` (>= 1) more wanted now?
 * Takes a cluster-wide slot when the limit is shared (*slot true then);
 * if none is free, asks for min(want, room under the limit). */
static bool
egress_readyq_conn_ok(struct readyq *rq, size_t want, bool *slot)
{
    char key[CLUSTER_MAX_THROTTLE_KEY_LEN + 1];

    *slot = false;
    if (!rq->conn_limit_shared ||
        !egress_readyq_key(rq, "cl:", key, sizeof(key))) {
        return true;
    }
    size_t room = rq->connection_limit - rq->n_conns; /* > 0 here */
    int rv = cluster_conn_acquire(rq->em->d.cluster, key, rq->connection_limit,
                                  (uint32_t)(want < room ? want : room));
    if (rv == 0) {
        *slot = true;
        return true;
    }
    if (rv != KM_EAGAIN) {
        return true; /* not a key the cluster takes: this node's limit */
    }
    egress_readyq_retry_soon(rq);
    return false;
}

void
egress_conn_slots(struct egress_mgr *em, const char *key)
{
    struct readyq *rq;

    if (strncmp(key, "cl:", 3) != 0) {
        return;
    }
    rq = km_map_get(em->readyqs, key + 3);
    if (rq != NULL) {
        egress_readyq_dispatch(rq);
    }
}

/* ---- Outcomes ---- */

/* "x.y.z text" as log records expect it. */
void
egress_readyq_content(const struct smtp_client_response *r, struct buf *out)
{
    if (r->enh_class != 0) {
        buf_appendf(out, "%d.%d.%d ", r->enh_class, r->enh_subject,
                    r->enh_detail);
    }
    buf_append_str(out, r->content != NULL ? r->content : "");
}

enum egress_outcome_kind
egress_readyq_kind(int code)
{
    if (code >= 200 && code < 300) {
        return EGRESS_DELIVERED;
    }
    /* 503 is out of sequence, a protocol error on either side: KumoMTA
     * retries it rather than bounce. */
    if (code >= 500 && code < 600 && code != 503) {
        return EGRESS_BOUNCED;
    }
    return EGRESS_TRANSIENT;
}

/* ---- The dispatcher ---- */

/* suspend-ready-q: the queued messages wait in their scheduled queues. */
static bool
egress_readyq_hold_if_suspended(struct readyq *rq)
{
    const struct admin_rule *rule = NULL;
    struct egress_item *it;
    char text[700];

    if (rq->head == NULL ||
        !admin_rules_ready_q_suspended(rq->em->d.rules, rq->name, &rule)) {
        return false;
    }
    snprintf(text, sizeof(text),
             "KumoMTA internal: ready queue is suspended: %s",
             rule->reason != NULL ? rule->reason : "");
    while ((it = egress_readyq_pop(rq)) != NULL) {
        struct egress_outcome o;
        memset(&o, 0, sizeof(o));
        o.kind = EGRESS_DELAYED;
        o.code = 451;
        o.content = text;
        o.site = rq->name;
        o.egress_pool = it->pool;
        o.egress_source = it->source;
        o.delivery_protocol = rq->maildir_path != NULL ? "Maildir" : "ESMTP";
        o.delay_ms = admin_rules_suspension_delay_ms(rule);
        egress_item_done(it, &o);
    }
    return true;
}

void
egress_readyq_dispatch(struct readyq *rq)
{
    if (rq->closing || rq->em->closing || rq->em->stopping) {
        return;
    }
    if (egress_readyq_hold_if_suspended(rq)) {
        return;
    }
    if (rq->maildir_path != NULL) {
        while (rq->head != NULL && rq->n_maildir_busy < rq->connection_limit &&
               egress_readyq_msg_ok(rq)) {
            egress_readyq_maildir(rq, egress_readyq_pop(rq));
        }
        return;
    }
    /* Idle connections first. */
    for (struct egress_conn *conn = rq->conns; conn != NULL && rq->head;
         conn = conn->next) {
        if (!conn->ready || conn->busy || conn->ending ||
            !smtp_client_is_usable(conn->c)) {
            continue;
        }
        if (!egress_readyq_msg_ok(rq)) {
            return;
        }
        egress_conn_send(conn, egress_readyq_pop(rq));
    }
    if (rq->pending_lookups > 0) {
        return; /* the mx_list plan is not complete yet */
    }
    /* Then more connections for what is left, within the limits. */
    size_t connecting = 0;
    for (struct egress_conn *conn = rq->conns; conn != NULL;
         conn = conn->next) {
        if (!conn->ready && !conn->ending) {
            connecting++;
        }
    }
    bool slot = false;
    while (rq->n_queued > connecting && rq->n_conns < rq->connection_limit &&
           egress_readyq_conn_ok(rq, rq->n_queued - connecting, &slot) &&
           egress_readyq_rate_ok(rq, &rq->conn_rate, rq->has_conn_rate)) {
        egress_conn_open(rq, slot);
        connecting++;
        slot = false;
    }
    if (slot) {
        /* The rate limiter said no after the slot was taken. */
        egress_readyq_conn_release(rq);
    }
}

/* ---- Close ---- */

void
egress_readyq_stop(struct readyq *rq)
{
    struct egress_item *it;
    struct egress_conn *next;

    while ((it = egress_readyq_pop(rq)) != NULL) {
        egress_item_drop(it);
    }
    for (struct egress_conn *conn = rq->conns; conn != NULL; conn = next) {
        next = conn->next;
        if (!conn->busy) {
            egress_conn_end(conn, true);
        }
    }
}

static void
egress_readyq_on_wake_closed(uv_handle_t *h)
{
    struct readyq *rq = h->data;

    KM_ASSERT(rq->open > 0);
    rq->open--;
    if (rq->open == 0) {
        egress_readyq_close(rq);
    }
}

void
egress_readyq_close(struct readyq *rq)
{
    struct egress_mgr *em = rq->em;

    if (!rq->closing) {
        struct egress_item *it;

        rq->closing = true;
        while ((it = egress_readyq_pop(rq)) != NULL) {
            egress_item_drop(it);
        }
        struct egress_conn *next;
        for (struct egress_conn *conn = rq->conns; conn != NULL; conn = next) {
            next = conn->next;
            egress_conn_end(conn, !conn->busy);
        }
        uv_timer_stop(&rq->wake);
        uv_close((uv_handle_t *)&rq->wake, egress_readyq_on_wake_closed);
        return;
    }
    if (rq->open > 0) {
        return;
    }
    egress_readyq_clear_plan(rq);
    if (rq->cfg_fetched_ms != 0) {
        egress_path_config_fini(&rq->cfg);
    }
    free(rq->name);
    free(rq->site);
    free(rq->routing_domain);
    free(rq->source_name);
    free(rq->pool_name);
    free(rq->maildir_path);
    free(rq);
    egress_close_step(em);
}
