/* queue.h - scheduled queues: messages that are durable and committed,
 * grouped by KumoMTA's queue name (campaign:tenant@domain!routing_domain).
 * This holds them and counts them; due times, retries and the ready queues
 * that deliver them are the delivery layer's. Loop thread only. */
#ifndef KUMO_QUEUE_H
#define KUMO_QUEUE_H
#include <stdbool.h>
#include <stddef.h>

struct kumod;
struct message;
struct queue_mgr; /* opaque */

/* The caller owns *out (queue_mgr_free). */
int queue_mgr_new(struct kumod *kd, struct queue_mgr **out);
/* Drops every reference the queues hold. */
void queue_mgr_free(struct queue_mgr *qm);

/* Add m to its scheduled queue (takes a reference). `reason` is for the
 * trace log ("Received", "Enumerated"). */
void queue_insert(struct queue_mgr *qm, struct message *m, const char *reason);
/* The queued message with that id, or NULL (borrowed). */
struct message *queue_find(struct queue_mgr *qm, const char *id);
/* Remove the message (dropping the queue's reference); false if absent. */
bool queue_remove(struct queue_mgr *qm, const char *id);

size_t queue_mgr_count(const struct queue_mgr *qm);
/* Visit every scheduled queue with its message count. */
void queue_mgr_foreach_queue(const struct queue_mgr *qm,
                             void (*fn)(void *arg, const char *name,
                                        size_t count),
                             void *arg);
#endif /* KUMO_QUEUE_H */
