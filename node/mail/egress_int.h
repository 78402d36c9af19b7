/* egress_int.h - shared inside egress*.c: the manager, submitted items,
 * ready queues and their connections. */
#ifndef KUMO_EGRESS_INT_H
#define KUMO_EGRESS_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "egress.h"
#include "egress_config.h"
#include "egress_throttle.h"

struct dns;
struct dns_mx_result;
struct km_map;
struct smtp_client;
struct tls_ctx;

/* KumoMTA's implicit pool and source. */
#define EGRESS_DEFAULT_NAME EGRESS_UNSPECIFIED

struct egress_pool_slot {
    struct egress_pool pool;
    uint64_t fetched_ms; /* monotonic */
    uint64_t rr_state;   /* weighted round-robin position */
};

struct egress_source_slot {
    struct egress_source src;
    uint64_t fetched_ms;
};

struct egress_mgr {
    struct egress_deps d;
    struct dns *dns;
    struct tls_ctx *tls_verify;
    struct tls_ctx *tls_noverify;
    struct km_map *readyqs; /* name -> struct readyq */
    struct km_map *pools;   /* name -> struct egress_pool_slot */
    struct km_map *sources; /* name -> struct egress_source_slot */
    size_t inflight;        /* submitted, outcome not reported */
    bool stopping;          /* egress_stop: start no transaction */
    bool closing;
    size_t closing_handles;
    egress_close_cb close_cb;
    void *close_arg;
};

/* One submitted message, from egress_submit() to its outcome. */
struct egress_item {
    struct egress_mgr *em;
    struct message *msg; /* one reference */
    char *queue;
    char *pool;
    char *source;
    char *routing_domain;
    char *maildir_path;              /* maildir protocol, else NULL */
    struct egress_mx_entry *mx_list; /* smarthost entries, else NULL */
    size_t n_mx_list;
    struct egress_item *next; /* ready queue FIFO */
};

/* One destination host of a ready queue's connection plan. */
struct egress_host {
    char *name;
    uint16_t port;
    struct sockaddr_storage *addrs;
    size_t n_addrs;
};

struct egress_conn;

struct readyq {
    struct egress_mgr *em;
    char *name;
    char *site;
    char *routing_domain;
    char *source_name;
    char *pool_name;
    char *maildir_path;
    struct egress_path_config cfg;
    uint64_t cfg_fetched_ms;
    uint32_t connection_limit;
    struct egress_host *hosts; /* the connection plan */
    size_t n_hosts;
    size_t pending_lookups; /* mx_list names being resolved */
    struct egress_item *head, *tail;
    size_t n_queued;
    struct egress_conn *conns;
    uint32_t n_conns;
    uint32_t n_maildir_busy;
    struct egress_gcra conn_rate, msg_rate;
    bool has_conn_rate, has_msg_rate;
    /* max_message_rate without `local:` in a cluster: enforced by
     * cluster-wide token grants (cluster_throttle_take) under the key
     * "mmr:<name>" instead of msg_rate. */
    bool msg_rate_shared;
    /* connection_limit without `local:` in a cluster: every connection
     * holds one of the cluster's slots (cluster_conn_acquire). */
    bool conn_limit_shared;
    struct egress_throttle_spec msg_spec;
    uv_timer_t wake;
    uint32_t consecutive_failures;
    bool closing;
    size_t open; /* handles, connections and lookups still to close */
};

struct egress_conn {
    struct readyq *rq;
    struct smtp_client *c;
    bool ready;  /* connected and idle or busy */
    bool busy;   /* a transaction is running */
    bool ending; /* quit or abort requested */
    uint32_t deliveries;
    size_t host_idx, addr_idx; /* next address to try while connecting */
    char *last_error;          /* why the last address failed */
    int last_code;
    struct egress_item *current;
    uv_timer_t idle;
    bool idle_closed; /* the idle timer's close callback has run */
    bool has_slot;    /* holds a cluster-wide connection slot */
    struct egress_conn *next;
};

/* egress.c */
void egress_item_done(struct egress_item *it, const struct egress_outcome *o);
void egress_item_fail(struct egress_item *it, enum egress_outcome_kind kind,
                      int code, const char *content, const char *site);
void egress_item_drop(struct egress_item *it);
void egress_close_step(struct egress_mgr *em);

/* egress_readyq.c */
/* The ready queue `name` (created on first use, configured by
 * get_egress_path_config). `mx`, if set, is the current MX answer for the
 * plan. NULL with err on a policy or configuration error. */
struct readyq *egress_readyq_get(struct egress_mgr *em, const char *name,
                                 const struct egress_item *it, const char *site,
                                 const struct dns_mx_result *mx, char *err,
                                 size_t errlen);
/* Queue it (takes ownership) and dispatch. */
void egress_readyq_push(struct readyq *rq, struct egress_item *it);
/* Drop the queued items and close idle connections (shutdown). */
void egress_readyq_stop(struct readyq *rq);
/* Close connections and handles; the queued items are dropped. Calls
 * egress_close_step() once everything is closed, then frees rq. */
void egress_readyq_close(struct readyq *rq);
struct smtp_client_response;
/* Shared by egress_readyq.c and egress_readyq_conn.c. */

void egress_readyq_release(struct readyq *rq);
struct egress_item *egress_readyq_pop(struct readyq *rq);
int egress_readyq_load(struct readyq *rq, struct egress_item *it);
void egress_readyq_conn_release(struct readyq *rq);
void egress_readyq_content(const struct smtp_client_response *r,
                           struct buf *out);
enum egress_outcome_kind egress_readyq_kind(int code);
void egress_readyq_dispatch(struct readyq *rq);
void egress_conn_end(struct egress_conn *conn, bool quit);
void egress_conn_send(struct egress_conn *conn, struct egress_item *it);
void egress_conn_open(struct readyq *rq, bool slot);
void egress_readyq_maildir(struct readyq *rq, struct egress_item *it);
#endif /* KUMO_EGRESS_INT_H */
