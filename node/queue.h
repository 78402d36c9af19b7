/* queue.h - scheduled queues (KumoMTA's `campaign:tenant@domain!routing`):
 * committed messages wait here for their due time on one timer wheel.
 * Each queue's configuration comes from the policy's get_queue_config
 * event (refreshed every refresh_interval). A due message goes to egress
 * (egress.h); the outcome of its attempt comes back through
 * queue_attempt_done(), which writes the log record and the Raft record
 * (Deferred, or Done plus spool deletion) and schedules a retry or ends
 * the message (Delivery, Bounce, Expiration). Loop thread only. */
#ifndef KUMO_QUEUE_H
#define KUMO_QUEUE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kumod;
struct message;
struct queue_mgr; /* opaque */

/* The caller owns *out; release with queue_mgr_close() then
 * queue_mgr_free(). */
int queue_mgr_new(struct kumod *kd, struct queue_mgr **out);
/* Drops every reference the queues hold. Only after queue_mgr_close's
 * callback (or if the loop never ran). */
void queue_mgr_free(struct queue_mgr *qm);

/* Start promoting due messages (after recovery). */
void queue_mgr_start(struct queue_mgr *qm);
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

enum queue_outcome_kind {
    QUEUE_DELIVERED, /* 2xx: Delivery record, Done, spool deleted */
    QUEUE_TRANSIENT, /* 4xx or no answer: TransientFailure, retry */
    QUEUE_BOUNCED,   /* 5xx: Bounce record, Done, spool deleted */
    QUEUE_DELAYED,   /* held (a suspension): TransientFailure, tried
                        again after delay_ms, the attempt is not counted */
};

/* How one delivery attempt ended. Strings are borrowed for the call. */
struct queue_outcome {
    enum queue_outcome_kind kind;
    int code;            /* the response code (0: none, e.g. no connection) */
    const char *content; /* response text, may start with "x.y.z " */
    const char *command; /* the command answered, or NULL */
    const char *site;    /* ready queue name */
    const char *peer_name, *peer_addr, *source_addr;
    const char *egress_pool, *egress_source;
    const char *delivery_protocol; /* "ESMTP", "Maildir" */
    const char *tls_cipher, *tls_protocol_version;
    uint64_t delay_ms; /* QUEUE_DELAYED */
};

/* Egress reports the end of an attempt of m (submitted by the queue). */
void queue_attempt_done(struct queue_mgr *qm, struct message *m,
                        const struct queue_outcome *o);

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
