/* egress_readyq_conn.c - a ready queue's connections: dialing the plan's
 * addresses in order, sending messages over an open SMTP connection within
 * max_message_rate, reusing it up to max_deliveries_per_connection, closing
 * it after idle_timeout, and maildir delivery. The queue, its plan and the
 * dispatcher are egress_readyq.c. Loop thread only. */
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
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Connections ---- */

static void egress_conn_try_next(struct egress_conn *conn);

static void
egress_conn_maybe_free(struct egress_conn *conn)
{
    struct readyq *rq = conn->rq;

    /* Both the client and the idle timer must have finished closing
     * (uv_is_closing() is already true while a close is pending). */
    if (conn->c != NULL || !conn->idle_closed) {
        return;
    }
    /* Unlink and free. */
    for (struct egress_conn **pp = &rq->conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == conn) {
            *pp = conn->next;
            break;
        }
    }
    free(conn->last_error);
    free(conn);
    egress_readyq_release(rq);
}

static void
egress_conn_on_idle_closed(uv_handle_t *h)
{
    struct egress_conn *conn = h->data;

    conn->idle_closed = true;
    egress_conn_maybe_free(conn);
}

static void
egress_conn_on_client_closed(void *arg)
{
    struct egress_conn *conn = arg;

    conn->c = NULL;
    egress_conn_maybe_free(conn);
}

/* Close the connection (QUIT when `quit`), then free it. */
void
egress_conn_end(struct egress_conn *conn, bool quit)
{
    struct readyq *rq = conn->rq;

    if (conn->ending) {
        return;
    }
    conn->ending = true;
    KM_ASSERT(rq->n_conns > 0);
    rq->n_conns--;
    if (conn->has_slot) {
        conn->has_slot = false;
        egress_readyq_conn_release(rq);
    }
    if (conn->current != NULL) {
        /* A transaction was cut short: its callback will not run. The
         * message is still spooled and listed by Raft. */
        egress_item_drop(conn->current);
        conn->current = NULL;
    }
    uv_timer_stop(&conn->idle);
    uv_close((uv_handle_t *)&conn->idle, egress_conn_on_idle_closed);
    if (conn->c != NULL) {
        struct smtp_client *c = conn->c;
        if (quit) {
            smtp_client_quit(c, egress_conn_on_client_closed, conn);
        } else {
            smtp_client_abort(c, egress_conn_on_client_closed, conn);
        }
    }
}

static void
egress_conn_on_idle(uv_timer_t *t)
{
    egress_conn_end(t->data, true);
}

static void
egress_conn_on_sent(void *arg, struct smtp_client *c,
                    const struct smtp_client_result *res)
{
    struct egress_conn *conn = arg;
    struct readyq *rq = conn->rq;
    struct egress_item *it = conn->current;
    const struct smtp_client_response *r =
        res->n_rcpts > 0 ? &res->rcpt[0] : res->txn;
    struct egress_outcome o;
    struct buf content = BUF_INIT;
    char peer_ip[64] = "";
    const char *peer = smtp_client_peer(c);

    conn->current = NULL;
    conn->busy = false;
    conn->deliveries++;
    if (peer != NULL) {
        snprintf(peer_ip, sizeof(peer_ip), "%s", peer);
        char *colon = strrchr(peer_ip, ':');
        if (colon != NULL) {
            *colon = '\0';
        }
        if (peer_ip[0] == '[') {
            memmove(peer_ip, peer_ip + 1, strlen(peer_ip));
            peer_ip[strcspn(peer_ip, "]")] = '\0';
        }
    }
    egress_readyq_content(r, &content);
    memset(&o, 0, sizeof(o));
    o.kind = egress_readyq_kind(r->code);
    o.code = r->code;
    o.content = buf_cstr(&content);
    o.command = r->command;
    o.site = rq->name;
    o.peer_name = smtp_client_mx_name(c);
    o.peer_addr = peer_ip;
    o.source_addr = smtp_client_source(c);
    o.egress_pool = it->pool;
    o.egress_source = it->source;
    o.delivery_protocol = "ESMTP";
    o.tls_cipher = smtp_client_tls_cipher(c);
    o.tls_protocol_version = smtp_client_tls_version(c);
    egress_item_done(it, &o);
    buf_fini(&content);

    if (!smtp_client_is_usable(c)) {
        egress_conn_end(conn, false);
    } else if (conn->deliveries >= rq->cfg.max_deliveries_per_connection ||
               rq->closing) {
        egress_conn_end(conn, true);
    } else {
        egress_readyq_dispatch(rq);
        if (!conn->busy && !conn->ending) {
            uv_timer_start(&conn->idle, egress_conn_on_idle,
                           rq->cfg.idle_timeout_ms, 0);
        }
    }
}

/* Start a transaction for it on an idle connection. */
void
egress_conn_send(struct egress_conn *conn, struct egress_item *it)
{
    struct readyq *rq = conn->rq;
    const char *rcpt = message_recipient(it->msg);
    int rv;

    uv_timer_stop(&conn->idle);
    if (egress_readyq_load(rq, it) != 0) {
        egress_item_fail(it, EGRESS_TRANSIENT, 451,
                         "4.3.0 KumoMTA internal: cannot read the message "
                         "from the spool",
                         rq->name);
        return;
    }
    conn->busy = true;
    conn->current = it;
    rv = smtp_client_send(conn->c, message_sender(it->msg), &rcpt, 1,
                          message_data(it->msg), egress_conn_on_sent, conn);
    if (rv != 0) {
        conn->busy = false;
        conn->current = NULL;
        egress_item_fail(it, EGRESS_TRANSIENT, 451,
                         "4.4.2 KumoMTA internal: the connection was lost",
                         rq->name);
        egress_conn_end(conn, false);
    }
}

/* Every host of the plan failed: the head message pays for it. */
static void
egress_conn_exhausted(struct egress_conn *conn)
{
    struct readyq *rq = conn->rq;
    char text[1200];
    int code =
        conn->last_code >= 400 && conn->last_code < 500 ? conn->last_code : 451;

    snprintf(text, sizeof(text),
             "4.4.1 KumoMTA internal: failed to connect to any candidate "
             "hosts: %s",
             conn->last_error != NULL ? conn->last_error : "no hosts to try");
    rq->consecutive_failures++;
    egress_conn_end(conn, false);
    if (rq->consecutive_failures >=
        rq->cfg.consecutive_connection_failures_before_delay) {
        /* KumoMTA delays the whole ready queue at this point. */
        struct egress_item *it;
        while ((it = egress_readyq_pop(rq)) != NULL) {
            egress_item_fail(it, EGRESS_TRANSIENT, code, text, rq->name);
        }
        rq->consecutive_failures = 0;
        return;
    }
    struct egress_item *it = egress_readyq_pop(rq);
    if (it != NULL) {
        egress_item_fail(it, EGRESS_TRANSIENT, code, text, rq->name);
    }
}

static void
egress_conn_on_ready(void *arg, struct smtp_client *c,
                     const struct smtp_client_response *failure)
{
    struct egress_conn *conn = arg;
    struct readyq *rq = conn->rq;

    if (failure != NULL) {
        free(conn->last_error);
        /* A synthetic failure (no connection, TLS) has no reply code. */
        conn->last_error =
            failure->code != 0
                ? smtp_client_response_line(failure)
                : km_strdup(failure->content != NULL ? failure->content
                                                     : "connection failed");
        conn->last_code = failure->code;
        conn->c = NULL;
        smtp_client_abort(c, NULL, NULL);
        if (rq->closing || rq->em->closing) {
            conn->c = NULL;
            egress_conn_end(conn, false);
            return;
        }
        egress_conn_try_next(conn);
        return;
    }
    conn->ready = true;
    rq->consecutive_failures = 0;
    egress_readyq_dispatch(rq);
    if (!conn->busy && !conn->ending) {
        uv_timer_start(&conn->idle, egress_conn_on_idle,
                       rq->cfg.idle_timeout_ms, 0);
    }
}

static enum smtp_client_tls
egress_readyq_tls(enum egress_tls t)
{
    switch (t) {
    case EGRESS_TLS_DISABLED:
        return SMTP_CLIENT_TLS_DISABLED;
    case EGRESS_TLS_OPPORTUNISTIC_INSECURE:
        return SMTP_CLIENT_TLS_OPPORTUNISTIC_INSECURE;
    case EGRESS_TLS_REQUIRED:
        return SMTP_CLIENT_TLS_REQUIRED;
    case EGRESS_TLS_REQUIRED_INSECURE:
        return SMTP_CLIENT_TLS_REQUIRED_INSECURE;
    case EGRESS_TLS_OPPORTUNISTIC:
    default:
        return SMTP_CLIENT_TLS_OPPORTUNISTIC;
    }
}

static void
egress_conn_params(struct readyq *rq, struct smtp_client_params *p)
{
    struct egress_source_slot *src =
        km_map_get(rq->em->sources, rq->source_name);
    const struct egress_path_config *cfg = &rq->cfg;

    smtp_client_params_init(p);
    p->ehlo_domain = cfg->ehlo_domain;
    if (p->ehlo_domain == NULL && src != NULL) {
        p->ehlo_domain = src->src.ehlo_domain;
    }
    if (p->ehlo_domain == NULL) {
        p->ehlo_domain = km_hostname();
    }
    p->source_address = src != NULL ? src->src.source_address : NULL;
    p->enable_tls = egress_readyq_tls(cfg->enable_tls);
    p->tls_verify = rq->em->tls_verify;
    p->tls_noverify = rq->em->tls_noverify;
    p->enable_pipelining = cfg->enable_pipelining;
    p->enable_rset = cfg->enable_rset;
    p->smtp_auth_plain_username = cfg->smtp_auth_plain_username;
    p->smtp_auth_plain_password = cfg->smtp_auth_plain_password;
    p->connect_timeout_ms = cfg->connect_timeout_ms;
    p->banner_timeout_ms = cfg->banner_timeout_ms;
    p->ehlo_timeout_ms = cfg->ehlo_timeout_ms;
    p->starttls_timeout_ms = cfg->starttls_timeout_ms;
    p->mail_from_timeout_ms = cfg->mail_from_timeout_ms;
    p->rcpt_to_timeout_ms = cfg->rcpt_to_timeout_ms;
    p->data_timeout_ms = cfg->data_timeout_ms;
    p->data_dot_timeout_ms = cfg->data_dot_timeout_ms;
    p->rset_timeout_ms = cfg->rset_timeout_ms;
}

/* Connect to the next address of the plan that is allowed. */
static void
egress_conn_try_next(struct egress_conn *conn)
{
    struct readyq *rq = conn->rq;
    struct egress_source_slot *src =
        km_map_get(rq->em->sources, rq->source_name);
    struct smtp_client_params params;
    char ip[64];

    egress_conn_params(rq, &params);
    while (conn->host_idx < rq->n_hosts) {
        struct egress_host *h = &rq->hosts[conn->host_idx];
        while (conn->addr_idx < h->n_addrs) {
            struct sockaddr_storage sa = h->addrs[conn->addr_idx++];
            uint16_t port = h->port;
            if (src != NULL && src->src.remote_port != 0) {
                port = src->src.remote_port;
            }
            if (sa.ss_family == AF_INET) {
                struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
                s4->sin_port = htons(port);
                inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
            } else {
                struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
                s6->sin6_port = htons(port);
                inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
            }
            if (egress_path_host_prohibited(&rq->cfg,
                                            (const struct sockaddr *)&sa)) {
                free(conn->last_error);
                conn->last_error = km_asprintf(
                    "%s (%s) is on the prohibited_hosts list", h->name, ip);
                conn->last_code = 0;
                continue;
            }
            int rv = smtp_client_connect(
                rq->em->d.loop, (const struct sockaddr *)&sa, h->name, &params,
                egress_conn_on_ready, conn, &conn->c);
            if (rv == 0) {
                return;
            }
            conn->c = NULL;
            free(conn->last_error);
            conn->last_error =
                km_asprintf("%s (%s): %s", h->name, ip, km_strerror(rv));
            conn->last_code = 0;
        }
        conn->host_idx++;
        conn->addr_idx = 0;
    }
    egress_conn_exhausted(conn);
}

void
egress_conn_open(struct readyq *rq, bool slot)
{
    struct egress_conn *conn = km_calloc(1, sizeof(*conn));

    conn->rq = rq;
    conn->has_slot = slot;
    uv_timer_init(rq->em->d.loop, &conn->idle);
    conn->idle.data = conn;
    conn->next = rq->conns;
    rq->conns = conn;
    rq->n_conns++;
    rq->open++;
    egress_conn_try_next(conn);
}

/* ---- Maildir ---- */

struct egress_maildir_req {
    struct readyq *rq;
    struct egress_item *it;
};

static void
egress_readyq_on_maildir(void *arg, int status, const char *path)
{
    struct egress_maildir_req *req = arg;
    struct readyq *rq = req->rq;
    struct egress_item *it = req->it;
    char text[600];

    free(req);
    KM_ASSERT(rq->n_maildir_busy > 0);
    rq->n_maildir_busy--;
    if (status == 0) {
        struct egress_outcome o;
        memset(&o, 0, sizeof(o));
        o.kind = EGRESS_DELIVERED;
        o.code = 250;
        o.content = "2.0.0 delivered to the maildir";
        o.site = rq->name;
        o.egress_pool = it->pool;
        o.egress_source = it->source;
        o.delivery_protocol = "Maildir";
        (void)path;
        egress_item_done(it, &o);
    } else {
        snprintf(text, sizeof(text), "4.3.0 KumoMTA internal: maildir %s: %s",
                 rq->maildir_path, km_strerror(status));
        egress_item_fail(it, EGRESS_TRANSIENT, 451, text, rq->name);
    }
    egress_readyq_release(rq);
}

void
egress_readyq_maildir(struct readyq *rq, struct egress_item *it)
{
    struct egress_maildir_req *req;
    int rv;

    if (egress_readyq_load(rq, it) != 0) {
        egress_item_fail(it, EGRESS_TRANSIENT, 451,
                         "4.3.0 KumoMTA internal: cannot read the message "
                         "from the spool",
                         rq->name);
        return;
    }
    char *path = NULL;
    char err[512] = "";
    if (egress_maildir_expand_path(rq->maildir_path, it->msg, &path, err,
                                   sizeof(err)) != 0) {
        char text[700];
        snprintf(text, sizeof(text),
                 "4.3.0 KumoMTA internal: maildir_path %s: %s",
                 rq->maildir_path, err);
        egress_item_fail(it, EGRESS_TRANSIENT, 451, text, rq->name);
        return;
    }
    req = km_calloc(1, sizeof(*req));
    req->rq = rq;
    req->it = it;
    rq->n_maildir_busy++;
    rq->open++;
    rv = egress_maildir_deliver_async(rq->em->d.loop, path, message_id(it->msg),
                                      message_data(it->msg),
                                      egress_readyq_on_maildir, req);
    free(path);
    if (rv != 0) {
        rq->n_maildir_busy--;
        rq->open--;
        free(req);
        egress_item_fail(it, EGRESS_TRANSIENT, 451,
                         "4.3.0 KumoMTA internal: maildir delivery failed",
                         rq->name);
    }
}
