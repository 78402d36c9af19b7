/* admin.h - admin actions with KumoMTA's semantics (bounce, suspend,
 * suspend-ready-q, rebind). Each rule is an AdminRule record committed
 * through Raft, so it survives a restart and, in a cluster, applies on
 * every node; it expires at its FSM-time deadline. Bounce and rebind also
 * act on the messages queued when they become active. Sits above the
 * scheduled queues; the rules and their checks are admin_rules.h, below
 * them. Loop thread only. */
#ifndef KUMO_ADMIN_H
#define KUMO_ADMIN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "admin_rules.h"

struct cluster;
struct policy;
struct queue_mgr;
struct admin; /* opaque */

/* What admin acts through (borrowed; they outlive it). */
struct admin_deps {
    struct cluster *cluster; /* commits rules (NULL: rules cannot be added) */
    struct policy *policy;   /* rebind_message */
    struct queue_mgr *queues;
    struct admin_rules *rules; /* the active rules it keeps up to date */
};

/* The caller owns *out; release with admin_free(). Not ready yet. */
void admin_new(const struct admin_deps *d, struct admin **out);
void admin_free(struct admin *a);
/* The hub says when the node runs (rules may be added) and when not. */
void admin_set_ready(struct admin *a, bool ready);

/* status 0 once the rule is committed (id filled in), or KM_E*. */
typedef void (*admin_done_cb)(void *arg, int status,
                              const struct admin_rule *rule);

/* Commit a new rule (copied). `cb` runs once, on the loop thread. */
int admin_add(struct admin *a, const struct admin_rule *rule, admin_done_cb cb,
              void *arg);
/* Cancel rule `id` of `kind`: KM_ENOENT if there is none. */
int admin_cancel(struct admin *a, enum admin_kind kind, const char *id,
                 admin_done_cb cb, void *arg);
/* Visit the active rules of one kind (borrowed during the call). */
void admin_foreach(struct admin *a, enum admin_kind kind,
                   void (*fn)(void *arg, const struct admin_rule *r),
                   void *arg);

/* For the daemon (loop thread): */
struct cluster_admin_rule;
/* Load the committed rules when raft is ready (before recovery). */
void admin_load(struct admin *a);
/* The FSM added (or cancelled) a rule: update and act on it. */
void admin_on_rule(struct admin *a, const struct cluster_admin_rule *r,
                   bool cancelled);

#endif /* KUMO_ADMIN_H */
