/* queue.h - scheduled queues (KumoMTA's `campaign:tenant@domain!routing`):
 * committed messages wait here for their due time on one timer wheel.
 * Each queue's configuration comes from the policy's get_queue_config
 * event (refreshed every refresh_interval). A due message goes down to
 * egress (egress.h); the outcome of its attempt comes back up through
 * egress's done callback into queue_attempt_done(), which writes the log record
 * and the Raft record (Deferred, or Done plus spool deletion) and schedules a
 * retry or ends the message (Delivery, Bounce, Expiration). Loop thread only.
 */
#ifndef KUMO_QUEUE_H
#define KUMO_QUEUE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "egress.h"

struct admin_rules;
struct cluster;
struct logrec_set;
struct message;
struct metrics;
struct policy;
struct spool;
struct queue_mgr; /* opaque */

/* What the scheduled queues use (borrowed; they outlive the queues). */
struct queue_deps {
    uv_loop_t *loop;
    struct policy *policy;   /* get_queue_config */
    struct cluster *cluster; /* Done/Deferred records, shard ownership */
    struct spool *data, *meta;
    const struct logrec_set *logs;
    struct metrics *metrics;
    struct admin_rules *rules; /* bounce and suspend checks when due */
    struct egress_mgr *egress; /* where due messages go */
};

/* The caller owns *out; release with queue_mgr_close() then
 * queue_mgr_free(). */
int queue_mgr_open(const struct queue_deps *d, struct queue_mgr **out);
/* Drops every reference the queues hold. Only after queue_mgr_close's
 * callback (or if the loop never ran). */
void queue_mgr_free(struct queue_mgr *qm);

/* Start promoting due messages (after recovery). */
void queue_mgr_start(struct queue_mgr *qm);
/* Shutdown, first step: stop promoting due messages (they wait in the
 * spool for the next start); outcomes still come in. */
void queue_mgr_stop(struct queue_mgr *qm);
typedef void (*queue_close_cb)(void *arg);
/* Stop promoting and close the timer handle; then cb. */
void queue_mgr_close(struct queue_mgr *qm, queue_close_cb cb, void *arg);

/* Add m to its scheduled queue (takes a reference), due at
 * message_due_ms(m) (0 = now). Inserting an id that is queued does
 * nothing. `reason` is for the trace log ("Received", "Enumerated"). */
void queue_insert(struct queue_mgr *qm, struct message *m, const char *reason);
/* The queued message with that id, or NULL (borrowed). */
struct message *queue_find(struct queue_mgr *qm, const char *id);
/* Remove the message (dropping the queue's reference); false if absent. */
bool queue_remove(struct queue_mgr *qm, const char *id);

/* Remove the message if it is waiting on the wheel (not while egress has
 * it or its Done is being committed); false otherwise. For a message
 * another node finished or now owns. */
bool queue_forget(struct queue_mgr *qm, const char *id);

/* The end of an attempt of m (submitted to egress by the queue): egress
 * reports it through its done callback, which the hub points here. */
void queue_attempt_done(struct queue_mgr *qm, struct message *m,
                        const struct egress_outcome *o);

/* Admin actions on one queued message (id); false if it is not waiting
 * in a scheduled queue (absent, or being delivered right now). */
/* AdminBounce record (unless suppressed), Done, spool deleted. */
bool queue_admin_bounce(struct queue_mgr *qm, const char *id,
                        const char *reason, bool suppress_logging);
/* Make it due now (flush). */
bool queue_admin_flush(struct queue_mgr *qm, const char *id);
/* Its meta changed (rebind): move it to its new scheduled queue, rewrite
 * its spool meta record, log AdminRebind (unless suppressed), due now. */
bool queue_admin_rebound(struct queue_mgr *qm, const char *id,
                         const char *old_queue, const char *reason,
                         bool suppress_logging);
/* Visit the ids of every queued message (a snapshot: the callback may act
 * on the message). */
void queue_foreach_id(struct queue_mgr *qm,
                      void (*fn)(void *arg, struct message *m,
                                 const char *queue),
                      void *arg);

size_t queue_mgr_count(const struct queue_mgr *qm);
/* Final outcomes whose Done record is not committed yet. */
size_t queue_mgr_pending_commits(const struct queue_mgr *qm);
/* Visit every scheduled queue with its message count. */
void queue_mgr_foreach_queue(const struct queue_mgr *qm,
                             void (*fn)(void *arg, const char *name,
                                        size_t count),
                             void *arg);
#endif /* KUMO_QUEUE_H */
