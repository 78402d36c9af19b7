/* egress.h - ready queues and their dispatchers (KumoMTA's "egress
 * paths"): a message that is due is routed here by the scheduled queues;
 * egress picks its egress source from the queue's pool, resolves the
 * destination (MX, mx_list or maildir), files it into the ready queue
 * `source->site_name@smtp_client`, and delivers it over pooled SMTP
 * connections shaped by the path's limits. Every submitted message gets
 * exactly one queue_attempt_done() call. Loop thread only. */
#ifndef KUMO_EGRESS_H
#define KUMO_EGRESS_H
#include <stdbool.h>
#include <stddef.h>

struct egress_mgr; /* opaque */
struct kumod;
struct message;
struct queue_config;

/* Open the DNS resolver (kd->dns_servers) and the TLS client contexts.
 * The caller owns *out. */
int egress_mgr_new(struct kumod *kd, struct egress_mgr **out);

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
