/* kumod_body.h - the daemon's side of body replication and shard
 * ownership in a group (kumod_body.c): the cluster host callbacks and what
 * start-up recovery needs. Loop thread only. */
#ifndef KUMO_KUMOD_BODY_H
#define KUMO_KUMOD_BODY_H
#include <stdbool.h>
#include <stdint.h>

#include "cluster.h"

struct kumod;

/* Whether both spools hold message `id`. */
bool kumod_body_has_local_body(struct kumod *kd, const char *id);
/* Fetch the body of cm from its replicas (then every peer), store it
 * synced, then queue the message, due no earlier than min_due_ms (0: its
 * own due time). Retries while the message stays listed and owned. */
void kumod_body_fetch_start(struct kumod *kd, const struct cluster_msg *cm,
                            int64_t min_due_ms);

/* The owner's sweep (every replication round): queue each message the
 * FSM lists in a shard this node owns that its queue does not hold and
 * whose body is not being fetched. Returns how many it took; each is
 * logged. The shard-owner and Enqueue callbacks are edges; this is the
 * level that catches whatever an edge missed. */
size_t kumod_body_reconcile(struct kumod *kd);

/* Cluster host callbacks (struct cluster_host). ctx is the kumod. */
void kumod_body_on_cluster_enqueue(void *ctx, const struct cluster_msg *cm);
void kumod_body_on_cluster_done(void *ctx, const char *id, int outcome);
void kumod_body_on_shard_owner(void *ctx, uint32_t shard, uint64_t old_owner,
                               uint64_t new_owner, bool failover);
void kumod_body_on_store_body(void *ctx, uint64_t from,
                              const struct cluster_body *b,
                              struct cluster_body_reply *r);
void kumod_body_on_fetch_body(void *ctx, uint64_t from, const char *id,
                              struct cluster_body_reply *r);
#endif /* KUMO_KUMOD_BODY_H */
