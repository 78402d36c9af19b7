/* egress.h - ready queues and their dispatchers (KumoMTA's "egress
 * paths"): a message that is due is routed here by the scheduled queues;
 * egress picks its egress source from the queue's pool, resolves the
 * destination (MX, mx_list or maildir), files it into the ready queue
 * `source->site_name@smtp_client`, and delivers it over pooled SMTP
 * connections shaped by the path's limits. Every submitted message gets
 * exactly one call of its done callback. Loop thread only. */
#ifndef KUMO_EGRESS_H
#define KUMO_EGRESS_H
#include <stdbool.h>
#include <stddef.h>

#include <stdint.h>

#include <uv.h>

struct admin_rules;
struct cluster;
struct egress_mgr; /* opaque */
struct message;
struct policy;
struct queue_config;
struct spool;

enum egress_outcome_kind {
    EGRESS_DELIVERED, /* 2xx: Delivery record, Done, spool deleted */
    EGRESS_TRANSIENT, /* 4xx or no answer: TransientFailure, retry */
    EGRESS_BOUNCED,   /* 5xx: Bounce record, Done, spool deleted */
    EGRESS_DELAYED,   /* held (a suspension): TransientFailure, tried
                        again after delay_ms, the attempt is not counted */
};

/* How one delivery attempt ended. Strings are borrowed for the call. */
struct egress_outcome {
    enum egress_outcome_kind kind;
    int code;            /* the response code (0: none, e.g. no connection) */
    const char *content; /* response text, may start with "x.y.z " */
    const char *command; /* the command answered, or NULL */
    const char *site;    /* ready queue name */
    const char *peer_name, *peer_addr, *source_addr;
    const char *egress_pool, *egress_source;
    const char *delivery_protocol; /* "ESMTP", "Maildir" */
    const char *tls_cipher, *tls_protocol_version;
    uint64_t delay_ms; /* EGRESS_DELAYED  */
};

/* Every submitted message gets exactly one call, on the loop thread; m is
 * borrowed for the call (egress then drops its reference). */
typedef void (*egress_done_cb)(void *arg, struct message *m,
                               const struct egress_outcome *o);

/* What egress uses (borrowed; they outlive egress). */
struct egress_deps {
    uv_loop_t *loop;
    struct policy *policy;   /* get_egress_path_config, get_egress_source */
    struct cluster *cluster; /* shared throttles and connection slots */
    struct spool *data;      /* message bodies */
    const struct admin_rules *rules; /* suspend-ready-q */
    const char *const *dns_servers;  /* "ip:port"; none: the system's */
    size_t n_dns_servers;
    uint32_t dns_timeout_ms, dns_attempts; /* 0: the resolver's defaults */
    egress_done_cb done;
    void *done_arg;
};

/* Open the DNS resolver and the TLS client contexts. The caller owns
 * *out; release with egress_mgr_close(). */
int egress_mgr_open(const struct egress_deps *d, struct egress_mgr **out);

/* Deliver m (takes a reference) according to qcfg (borrowed for the call;
 * what is needed is copied). `queue` is the scheduled queue's name. */
void egress_submit(struct egress_mgr *em, struct message *m,
                   const struct queue_config *qcfg, const char *queue);

/* Messages handed to egress whose attempt has not ended yet. */
size_t egress_inflight(const struct egress_mgr *em);

/* Shutdown, first step: start nothing new; messages waiting in ready
 * queues go back to waiting in the spool (they are recovered at the next
 * start); transactions in flight finish and report their outcome. */
void egress_stop(struct egress_mgr *em);

/* The cluster granted connection slots of `key` ("cl:<ready queue>") to
 * this node: let that ready queue open connections now. */
void egress_conn_slots(struct egress_mgr *em, const char *key);

typedef void (*egress_close_cb)(void *arg);
/* Stop starting deliveries; in-flight transactions end with a transient
 * outcome when their connections are closed. Calls cb when every handle is
 * closed, then frees em. */
void egress_mgr_close(struct egress_mgr *em, egress_close_cb cb, void *arg);
#endif /* KUMO_EGRESS_H */
