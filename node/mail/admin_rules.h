/* admin_rules.h - the active admin rules (bounce, suspend,
 * suspend-ready-q, rebind) and the pure checks on them that the scheduled
 * queues and egress make for each message: no I/O, no Raft, no queue.
 * Who adds and cancels rules, and acts on queued messages, is admin.h, one
 * floor up. Loop thread only. */
#ifndef KUMO_ADMIN_RULES_H
#define KUMO_ADMIN_RULES_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct message;
struct admin_rules; /* opaque */

enum admin_kind {
    ADMIN_BOUNCE,
    ADMIN_SUSPEND,         /* scheduled queues */
    ADMIN_SUSPEND_READY_Q, /* one egress path (ready queue) by name */
    ADMIN_REBIND,
};

/* A rule as the HTTP API describes it. Strings may be NULL. */
struct admin_rule {
    char id[37]; /* UUID, assigned by admin_add() */
    enum admin_kind kind;
    char *domain;
    char *routing_domain;
    char *tenant;
    char *campaign;
    char **queue_names;
    size_t n_queue_names;
    char *name; /* ADMIN_SUSPEND_READY_Q: the ready queue's name */
    char *reason;
    int64_t expires_ms;  /* unix ms (duration default 5 min) */
    json_t *rebind_data; /* ADMIN_REBIND: meta to merge (owned) */
    bool always_flush;
    bool trigger_rebind_event;
    bool suppress_logging;
    uint64_t matched; /* messages bounced or rebound so far on this node */
};

enum admin_verdict {
    ADMIN_VERDICT_PASS,
    ADMIN_VERDICT_BOUNCE,    /* an active bounce rule matches */
    ADMIN_VERDICT_SUSPENDED, /* an active suspension matches */
};

/* An empty set. The caller owns *out; release with admin_rules_free(). */
void admin_rules_new(struct admin_rules **out);
/* Frees every rule too. NULL does nothing. */
void admin_rules_free(struct admin_rules *rs);
void admin_rule_fini(struct admin_rule *r);
/* Add or replace the rule with r->id. Takes ownership of r (heap). */
void admin_rules_put(struct admin_rules *rs, struct admin_rule *r);
/* Remove and free the rule `id`; false if there was none. */
bool admin_rules_remove(struct admin_rules *rs, const char *id);
/* The rule `id`, or NULL (borrowed until the next change). */
const struct admin_rule *admin_rules_get(const struct admin_rules *rs,
                                         const char *id);
size_t admin_rules_count(const struct admin_rules *rs);
/* Visit the active rules of one kind (borrowed during the call). */
void admin_rules_foreach(const struct admin_rules *rs, enum admin_kind kind,
                         void (*fn)(void *arg, const struct admin_rule *r),
                         void *arg);
/* Not expired yet (FSM deadline against the wall clock). */
bool admin_rule_active(const struct admin_rule *r);
/* Whether r's selectors pick message m of scheduled queue `queue`. */
bool admin_rule_matches(const struct admin_rule *r, struct message *m,
                        const char *queue);

/* What the active rules say about queued message m of scheduled queue
 * `queue`; *rule (borrowed until the next rule change) says which. A
 * bounce verdict counts in the rule's `matched`. */
enum admin_verdict admin_rules_check_message(struct admin_rules *rs,
                                             struct message *m,
                                             const char *queue,
                                             const struct admin_rule **rule);
/* Whether ready queue `name` is suspended (and by which rule). */
bool admin_rules_ready_q_suspended(const struct admin_rules *rs,
                                   const char *name,
                                   const struct admin_rule **rule);
/* How long to hold a suspended message: until the rule expires, checked
 * again at least every minute (a cancel releases it sooner). */
uint64_t admin_rules_suspension_delay_ms(const struct admin_rule *rule);
#endif /* KUMO_ADMIN_RULES_H */
