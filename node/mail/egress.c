/* egress.c - routing of due messages and the ready queues that deliver
 * them. A message's egress source comes from its queue's pool (weighted);
 * its destination from the queue's protocol: MX records of the routing
 * domain, an mx_list smarthost, or a maildir. Messages for the same source
 * and site share one ready queue, named `source->site@smtp_client`, whose
 * egress path configuration (get_egress_path_config) bounds connections,
 * connection and message rates and deliveries per connection. Owns the
 * DNS resolver and the TLS client contexts. Loop thread only. */
#include "egress.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/km.h"
#include "base/km_map.h"
#include "base/log.h"
#include "dns.h"
#include "egress_config.h"
#include "egress_int.h"
#include "egress_maildir.h"
#include "egress_throttle.h"
#include "message.h"
#include "policy.h"
#include "smtp_client.h"
#include "spool.h"
#include "tls.h"

int
egress_mgr_open(const struct egress_deps *d, struct egress_mgr **out)
{
    struct egress_mgr *em = km_calloc(1, sizeof(*em));
    int rv;

    em->d = *d;
    struct dns_options opts = {.timeout_ms = d->dns_timeout_ms,
                               .attempts = d->dns_attempts};
    rv = dns_open_with_options(d->loop, d->dns_servers, d->n_dns_servers, &opts,
                               &em->dns);
    if (rv != 0) {
        free(em);
        return rv;
    }
    rv = tls_ctx_new_client(true, &em->tls_verify);
    if (rv == 0) {
        rv = tls_ctx_new_client(false, &em->tls_noverify);
    }
    if (rv != 0) {
        LOG_ERROR("egress: cannot make the TLS client contexts: %s",
                  km_strerror(rv));
        tls_ctx_free(em->tls_verify);
        dns_close(em->dns, NULL, NULL);
        free(em);
        return rv;
    }
    em->readyqs = km_map_new();
    em->pools = km_map_new();
    em->sources = km_map_new();
    *out = em;
    return 0;
}

size_t
egress_inflight(const struct egress_mgr *em)
{
    return em->inflight;
}

/* ---- Items: one submitted message ---- */

static void
egress_item_free(struct egress_item *it)
{
    message_unref(it->msg);
    free(it->queue);
    free(it->pool);
    free(it->source);
    free(it->routing_domain);
    free(it->maildir_path);
    for (size_t i = 0; i < it->n_mx_list; i++) {
        free(it->mx_list[i].host);
        free(it->mx_list[i].name);
        free(it->mx_list[i].text);
    }
    free(it->mx_list);
    free(it);
}

/* Report the attempt's end to the queue, then forget the item. */
void
egress_item_done(struct egress_item *it, const struct egress_outcome *o)
{
    struct egress_mgr *em = it->em;

    KM_ASSERT(em->inflight > 0);
    em->inflight--;
    em->d.done(em->d.done_arg, it->msg, o);
    egress_item_free(it);
}

/* The attempt ended before any delivery: report a synthetic response. */
void
egress_item_fail(struct egress_item *it, enum egress_outcome_kind kind,
                 int code, const char *content, const char *site)
{
    struct egress_outcome o;

    memset(&o, 0, sizeof(o));
    o.kind = kind;
    o.code = code;
    o.content = content;
    o.site = site != NULL ? site : "";
    o.egress_pool = it->pool;
    o.egress_source = it->source;
    o.delivery_protocol = it->maildir_path != NULL ? "Maildir" : "ESMTP";
    egress_item_done(it, &o);
}

/* Dropped at shutdown without an attempt: the queue keeps the message
 * (it is still in the spool and in Raft), so nothing is reported. */
void
egress_item_drop(struct egress_item *it)
{
    KM_ASSERT(it->em->inflight > 0);
    it->em->inflight--;
    egress_item_free(it);
}

/* ---- Pools and sources, from the policy (cached for their ttl) ---- */

/* Call a get_egress_* event with one string argument. Returns the
 * handler's JSON (the caller owns it), or NULL with *had_handler false. */
static int
egress_policy_lookup(struct egress_mgr *em, const char *event, const char *name,
                     json_t **out, bool *had_handler)
{
    struct policy_arg arg = {.kind = POLICY_ARG_STRING, .u.str = name};
    struct policy_result res;
    int rv;

    memset(&res, 0, sizeof(res));
    rv = policy_call(em->d.policy, event, &arg, 1, &res, NULL, 0);
    *had_handler = res.had_handler;
    *out = NULL;
    if (rv == 0) {
        *out = res.value;
        res.value = NULL;
    }
    policy_result_fini(&res);
    return rv;
}

static struct egress_pool_slot *
egress_get_pool(struct egress_mgr *em, const char *name, char *err,
                size_t errlen)
{
    struct egress_pool_slot *slot = km_map_get(em->pools, name);
    uint64_t now = km_now_mono_ms();
    json_t *j = NULL;
    bool had;

    if (slot != NULL && now - slot->fetched_ms < slot->pool.ttl_ms) {
        return slot;
    }
    int rv = egress_policy_lookup(em, "get_egress_pool", name, &j, &had);
    if (rv != 0) {
        snprintf(err, errlen, "get_egress_pool('%s') failed", name);
        return NULL;
    }
    struct egress_pool pool;
    if (j == NULL && strcmp(name, EGRESS_DEFAULT_NAME) != 0) {
        snprintf(err, errlen, "egress pool '%s' is not defined", name);
        return NULL;
    }
    if (j != NULL) {
        rv = egress_pool_parse(j, &pool, err, errlen);
    } else {
        egress_pool_init_unspecified(&pool);
    }
    json_decref(j);
    if (rv != 0) {
        return NULL;
    }
    if (slot == NULL) {
        slot = km_calloc(1, sizeof(*slot));
        km_map_put(em->pools, name, slot, NULL);
    } else {
        egress_pool_fini(&slot->pool);
    }
    slot->pool = pool;
    slot->fetched_ms = now;
    return slot;
}

static struct egress_source_slot *
egress_get_source(struct egress_mgr *em, const char *name, char *err,
                  size_t errlen)
{
    struct egress_source_slot *slot = km_map_get(em->sources, name);
    uint64_t now = km_now_mono_ms();
    json_t *j = NULL;
    bool had;

    if (slot != NULL && now - slot->fetched_ms < slot->src.ttl_ms) {
        return slot;
    }
    int rv = egress_policy_lookup(em, "get_egress_source", name, &j, &had);
    if (rv != 0) {
        snprintf(err, errlen, "get_egress_source('%s') failed", name);
        return NULL;
    }
    struct egress_source src;
    if (j == NULL && strcmp(name, EGRESS_DEFAULT_NAME) != 0) {
        snprintf(err, errlen, "egress source '%s' is not defined", name);
        return NULL;
    }
    if (j != NULL) {
        rv = egress_source_parse(j, &src, err, errlen);
    } else {
        egress_source_init_unspecified(&src);
    }
    json_decref(j);
    if (rv != 0) {
        return NULL;
    }
    if (slot == NULL) {
        slot = km_calloc(1, sizeof(*slot));
        km_map_put(em->sources, name, slot, NULL);
    } else {
        egress_source_fini(&slot->src);
    }
    slot->src = src;
    slot->fetched_ms = now;
    return slot;
}

/* ---- Routing ---- */

static void
egress_route_to_readyq(struct egress_item *it, const char *site,
                       const struct dns_mx_result *mx)
{
    struct egress_mgr *em = it->em;
    struct buf name = BUF_INIT;
    char err[512] = "";

    if (it->maildir_path != NULL) {
        buf_appendf(&name, "%s->%s@maildir:%s", it->source, site,
                    it->maildir_path);
    } else {
        buf_appendf(&name, "%s->%s@smtp_client", it->source, site);
    }
    struct readyq *rq =
        egress_readyq_get(em, buf_cstr(&name), it, site, mx, err, sizeof(err));
    if (rq == NULL) {
        char text[700];
        snprintf(text, sizeof(text),
                 "4.4.4 KumoMTA internal: ready queue %s: %s", buf_cstr(&name),
                 err);
        egress_item_fail(it, EGRESS_TRANSIENT, 451, text, buf_cstr(&name));
    } else {
        egress_readyq_push(rq, it);
    }
    buf_fini(&name);
}

static void
egress_on_mx(void *arg, int status, const struct dns_mx_result *mx)
{
    struct egress_item *it = arg;
    char text[600];

    if (status == KM_ECANCELED || it->em->closing) {
        egress_item_drop(it);
        return;
    }
    switch (status) {
    case DNS_OK:
        egress_route_to_readyq(it, mx->site_name, mx);
        return;
    case DNS_NULL_MX:
        egress_item_fail(it, EGRESS_BOUNCED, 556,
                         "5.1.10 Recipient address has a null MX", NULL);
        return;
    case DNS_NO_ADDRESSES:
        snprintf(text, sizeof(text),
                 "4.4.4 KumoMTA internal: MX for %s resolved to no addresses",
                 it->routing_domain);
        break;
    default:
        snprintf(text, sizeof(text),
                 "4.4.4 KumoMTA internal: failed to resolve MX for %s: %s",
                 it->routing_domain,
                 status >= 0 ? dns_status_str((enum dns_status)status)
                             : km_strerror(status));
        break;
    }
    egress_item_fail(it, EGRESS_TRANSIENT, 451, text, NULL);
}

void
egress_submit(struct egress_mgr *em, struct message *m,
              const struct queue_config *qcfg, const char *queue)
{
    struct egress_item *it = km_calloc(1, sizeof(*it));
    const char *routing = message_meta_str(m, "routing_domain");
    char err[512] = "";
    char text[700];

    message_ref(m);
    it->em = em;
    it->msg = m;
    it->queue = km_strdup(queue);
    it->pool = km_strdup(qcfg->egress_pool != NULL ? qcfg->egress_pool
                                                   : EGRESS_DEFAULT_NAME);
    it->routing_domain =
        km_strdup(routing != NULL ? routing : message_recipient_domain(m));
    if (qcfg->protocol == EGRESS_PROTO_MAILDIR) {
        it->maildir_path = km_strdup(qcfg->maildir_path);
    }
    if (qcfg->protocol == EGRESS_PROTO_SMTP_MX_LIST && qcfg->n_mx_list > 0) {
        it->mx_list = km_calloc(qcfg->n_mx_list, sizeof(*it->mx_list));
        for (size_t i = 0; i < qcfg->n_mx_list; i++) {
            const struct egress_mx_entry *e = &qcfg->mx_list[i];
            it->mx_list[i].host = km_strdup(e->host);
            it->mx_list[i].name = e->name != NULL ? km_strdup(e->name) : NULL;
            it->mx_list[i].port = e->port;
            it->mx_list[i].is_literal = e->is_literal;
            it->mx_list[i].text = e->text != NULL ? km_strdup(e->text) : NULL;
        }
        it->n_mx_list = qcfg->n_mx_list;
    }
    em->inflight++;
    if (em->closing) {
        egress_item_drop(it);
        return;
    }

    struct egress_pool_slot *pool =
        egress_get_pool(em, it->pool, err, sizeof(err));
    if (pool == NULL) {
        snprintf(text, sizeof(text), "4.4.4 KumoMTA internal: %s", err);
        egress_item_fail(it, EGRESS_TRANSIENT, 451, text, NULL);
        return;
    }
    const char *src = egress_pool_choose(&pool->pool, &pool->rr_state);
    if (src == NULL) {
        /* The macro carries the code: keep the enhanced code onwards. As
         * KumoMTA does, the text names the scheduled queue. */
        snprintf(text, sizeof(text), "%s %s.", &EGRESS_TXT_NO_SOURCES[4],
                 it->queue);
        egress_item_fail(it, EGRESS_TRANSIENT, 451, text, NULL);
        return;
    }
    it->source = km_strdup(src);
    if (egress_get_source(em, it->source, err, sizeof(err)) == NULL) {
        snprintf(text, sizeof(text), "4.4.4 KumoMTA internal: %s", err);
        egress_item_fail(it, EGRESS_TRANSIENT, 451, text, NULL);
        return;
    }

    if (it->maildir_path != NULL) {
        /* Non-SMTP protocols are named after the routing domain. */
        egress_route_to_readyq(it, it->routing_domain, NULL);
        return;
    }
    if (it->n_mx_list > 0) {
        /* KumoMTA names the site after the entries as written. */
        char **names = km_calloc(it->n_mx_list, sizeof(char *));
        for (size_t i = 0; i < it->n_mx_list; i++) {
            const struct egress_mx_entry *e = &it->mx_list[i];
            const char *h = e->name != NULL ? e->name : e->host;
            if (e->text != NULL) {
                names[i] = km_strdup(e->text); /* as written, like KumoMTA */
            } else {
                names[i] = e->port != 0
                               ? km_asprintf("%s:%u", h, (unsigned)e->port)
                               : km_strdup(h);
            }
        }
        char *site =
            dns_site_name_mx_list((const char *const *)names, it->n_mx_list);
        for (size_t i = 0; i < it->n_mx_list; i++) {
            free(names[i]);
        }
        free(names);
        egress_route_to_readyq(it, site, NULL);
        free(site);
        return;
    }
    int rv = dns_resolve_mx(em->dns, it->routing_domain, egress_on_mx, it);
    if (rv != 0) {
        snprintf(text, sizeof(text),
                 "4.4.4 KumoMTA internal: failed to resolve MX for %s: %s",
                 it->routing_domain, km_strerror(rv));
        egress_item_fail(it, EGRESS_TRANSIENT, 451, text, NULL);
    }
}

/* ---- Close ---- */

void
egress_stop(struct egress_mgr *em)
{
    struct km_map_iter mi;
    void *v;

    em->stopping = true;
    km_map_iter_init(&mi, em->readyqs);
    while (km_map_iter_next(&mi, NULL, &v)) {
        egress_readyq_stop(v);
    }
}

static void
egress_on_dns_closed(void *arg)
{
    struct egress_mgr *em = arg;

    egress_close_step(em);
}

void
egress_close_step(struct egress_mgr *em)
{
    KM_ASSERT(em->closing_handles > 0);
    if (--em->closing_handles > 0) {
        return;
    }
    struct km_map_iter it;
    void *v;
    km_map_iter_init(&it, em->pools);
    while (km_map_iter_next(&it, NULL, &v)) {
        struct egress_pool_slot *p = v;
        egress_pool_fini(&p->pool);
        free(p);
    }
    km_map_iter_init(&it, em->sources);
    while (km_map_iter_next(&it, NULL, &v)) {
        struct egress_source_slot *s = v;
        egress_source_fini(&s->src);
        free(s);
    }
    km_map_free(em->pools);
    km_map_free(em->sources);
    km_map_free(em->readyqs);
    tls_ctx_free(em->tls_verify);
    tls_ctx_free(em->tls_noverify);
    egress_close_cb cb = em->close_cb;
    void *arg = em->close_arg;
    free(em);
    if (cb != NULL) {
        cb(arg);
    }
}

void
egress_mgr_close(struct egress_mgr *em, egress_close_cb cb, void *arg)
{
    struct km_map_iter it;
    void *v;

    em->closing = true;
    em->close_cb = cb;
    em->close_arg = arg;
    /* One count for this function, one for DNS, then one per ready queue
     * (each releases its count when its handles are closed). */
    em->closing_handles = 2;
    km_map_iter_init(&it, em->readyqs);
    while (km_map_iter_next(&it, NULL, &v)) {
        em->closing_handles++;
        egress_readyq_close(v);
    }
    dns_close(em->dns, egress_on_dns_closed, em);
    egress_close_step(em);
}
