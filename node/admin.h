/* admin.h - admin rules with KumoMTA's semantics (bounce, suspend,
 * suspend-ready-q, rebind). Each rule is an AdminRule record committed
 * through Raft, so it survives a restart and, in a cluster, applies on
 * every node; it expires at its FSM-time deadline. Bounce rules also hit
 * messages queued while they are active. Loop thread only. */
#ifndef KUMO_ADMIN_H
#define KUMO_ADMIN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct kumod;
struct message;

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

/* status 0 once the rule is committed (id filled in), or KM_E*. */
typedef void (*admin_done_cb)(void *arg, int status,
                              const struct admin_rule *rule);

/* Commit a new rule (copied). `cb` runs once, on the loop thread. */
int admin_add(struct kumod *kd, const struct admin_rule *rule, admin_done_cb cb,
              void *arg);
/* Cancel rule `id` of `kind`: KM_ENOENT if there is none. */
int admin_cancel(struct kumod *kd, enum admin_kind kind, const char *id,
                 admin_done_cb cb, void *arg);
/* Visit the active rules of one kind (borrowed during the call). */
void admin_foreach(struct kumod *kd, enum admin_kind kind,
                   void (*fn)(void *arg, const struct admin_rule *r),
                   void *arg);
void admin_rule_fini(struct admin_rule *r);

/* For the daemon (loop thread): */
struct cluster_admin_rule;
/* Load the committed rules when raft is ready (before recovery). */
void admin_load(struct kumod *kd);
/* The FSM added (or cancelled) a rule: update and act on it. */
void admin_on_rule(struct kumod *kd, const struct cluster_admin_rule *r,
                   bool cancelled);
void admin_free_all(struct kumod *kd);

enum admin_verdict {
    ADMIN_VERDICT_PASS,
    ADMIN_VERDICT_BOUNCE,    /* an active bounce rule matches */
    ADMIN_VERDICT_SUSPENDED, /* an active suspension matches */
};
/* What the active rules say about queued message m of scheduled queue
 * `queue`; *rule (borrowed until the next rule change) says which. */
enum admin_verdict admin_check_message(struct kumod *kd, struct message *m,
                                       const char *queue,
                                       const struct admin_rule **rule);
/* Whether ready queue `name` is suspended (and by which rule). */
bool admin_ready_q_suspended(struct kumod *kd, const char *name,
                             const struct admin_rule **rule);
/* How long to hold a suspended message: until the rule expires, checked
 * again at least every minute (a cancel releases it sooner). */
uint64_t admin_suspension_delay_ms(struct kumod *kd,
                                   const struct admin_rule *rule);
#endif /* KUMO_ADMIN_H */
