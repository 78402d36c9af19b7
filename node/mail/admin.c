/* admin.c - admin rules: bounce, suspend, suspend-ready-q and rebind with
 * KumoMTA's semantics, made durable and cluster-wide as AdminRule records
 * in Raft (the whole rule travels as JSON). The active rules live in
 * admin_rules (loaded when raft is ready, updated as the FSM applies
 * rules); bounce and rebind act on the queued messages at once. The checks
 * made when a message becomes due are admin_rules.c's. Loop thread only. */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "admin_rules.h"
#include "base/km.h"
#include "base/km_map.h"
#include "base/log.h"
#include "cluster.h"
#include "message.h"
#include "policy.h"
#include "queue.h"

/* KumoMTA's default lifetime of a rule without duration or expires. */
#define ADMIN_DEFAULT_DURATION_MS (5u * 60u * 1000u)

struct admin {
    struct admin_deps d;
    bool ready; /* the node runs: rules may be added */
};

/* ---- JSON form (what Raft carries) ---- */

static void
admin_json_str(json_t *o, const char *key, const char *v)
{
    if (v != NULL) {
        json_object_set_new(o, key, json_string(v));
    }
}

static char *
admin_rule_to_json(const struct admin_rule *r)
{
    json_t *o = json_object();

    admin_json_str(o, "domain", r->domain);
    admin_json_str(o, "routing_domain", r->routing_domain);
    admin_json_str(o, "tenant", r->tenant);
    admin_json_str(o, "campaign", r->campaign);
    admin_json_str(o, "name", r->name);
    admin_json_str(o, "reason", r->reason);
    if (r->n_queue_names > 0) {
        json_t *a = json_array();
        for (size_t i = 0; i < r->n_queue_names; i++) {
            json_array_append_new(a, json_string(r->queue_names[i]));
        }
        json_object_set_new(o, "queue_names", a);
    }
    if (r->rebind_data != NULL) {
        json_object_set(o, "data", r->rebind_data);
    }
    json_object_set_new(o, "always_flush", json_boolean(r->always_flush));
    json_object_set_new(o, "trigger_rebind_event",
                        json_boolean(r->trigger_rebind_event));
    json_object_set_new(o, "suppress_logging",
                        json_boolean(r->suppress_logging));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static char *
admin_json_dup(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? km_strdup(json_string_value(v)) : NULL;
}

static int
admin_rule_from_cluster(const struct cluster_admin_rule *cr,
                        struct admin_rule *out)
{
    json_error_t jerr;
    json_t *o = json_loads(cr->json, 0, &jerr);

    memset(out, 0, sizeof(*out));
    if (!json_is_object(o) || cr->kind < ADMIN_BOUNCE ||
        cr->kind > ADMIN_REBIND) {
        json_decref(o);
        return KM_ECORRUPT;
    }
    snprintf(out->id, sizeof(out->id), "%s", cr->id);
    out->kind = (enum admin_kind)cr->kind;
    out->expires_ms = cr->expires_ms;
    out->domain = admin_json_dup(o, "domain");
    out->routing_domain = admin_json_dup(o, "routing_domain");
    out->tenant = admin_json_dup(o, "tenant");
    out->campaign = admin_json_dup(o, "campaign");
    out->name = admin_json_dup(o, "name");
    out->reason = admin_json_dup(o, "reason");
    json_t *q = json_object_get(o, "queue_names");
    if (json_is_array(q) && json_array_size(q) > 0) {
        size_t i;
        json_t *v;
        out->queue_names = km_calloc(json_array_size(q), sizeof(char *));
        json_array_foreach(q, i, v)
        {
            if (json_is_string(v)) {
                out->queue_names[out->n_queue_names++] =
                    km_strdup(json_string_value(v));
            }
        }
    }
    json_t *d = json_object_get(o, "data");
    if (json_is_object(d)) {
        out->rebind_data = json_incref(d);
    }
    out->always_flush = json_is_true(json_object_get(o, "always_flush"));
    out->trigger_rebind_event =
        json_is_true(json_object_get(o, "trigger_rebind_event"));
    out->suppress_logging =
        json_is_true(json_object_get(o, "suppress_logging"));
    json_decref(o);
    return 0;
}

/* ---- Acting on queued messages ---- */

struct admin_act {
    struct admin *a;
    struct admin_rule *rule;
    bool release; /* a cancelled suspension: make its messages due */
};

static void
admin_act_on(void *arg, struct message *m, const char *queue)
{
    struct admin_act *a = arg;
    struct admin_rule *r = a->rule;
    struct queue_mgr *qm = a->a->d.queues;

    if (!admin_rule_matches(r, m, queue)) {
        return;
    }
    if (a->release) {
        (void)queue_admin_flush(qm, message_id(m));
        return;
    }
    switch (r->kind) {
    case ADMIN_BOUNCE:
        if (queue_admin_bounce(qm, message_id(m), r->reason,
                               r->suppress_logging)) {
            r->matched++;
        }
        break;
    case ADMIN_REBIND: {
        /* Merge data into meta (or let the policy do it), then requeue. */
        char *old = km_strdup(queue);
        if (r->trigger_rebind_event &&
            policy_has_handler(a->a->d.policy, "rebind_message")) {
            struct policy_arg args[2] = {
                {.kind = POLICY_ARG_MESSAGE, .u.msg = m},
                {.kind = POLICY_ARG_JSON, .u.json = r->rebind_data},
            };
            struct policy_result res;
            memset(&res, 0, sizeof(res));
            (void)policy_call(a->a->d.policy, "rebind_message", args, 2, &res,
                              NULL, 0);
            policy_result_fini(&res);
        } else if (r->rebind_data != NULL) {
            json_object_update(message_meta(m), r->rebind_data);
        }
        bool moved = strcmp(old, message_queue_name(m)) != 0;
        if (moved || r->always_flush) {
            if (moved ? queue_admin_rebound(qm, message_id(m), old, r->reason,
                                            r->suppress_logging)
                      : queue_admin_flush(qm, message_id(m))) {
                r->matched++;
            }
        }
        free(old);
        break;
    }
    case ADMIN_SUSPEND:
    case ADMIN_SUSPEND_READY_Q:
        break;
    }
}

void
admin_on_rule(struct admin *a, const struct cluster_admin_rule *cr,
              bool cancelled)
{
    struct admin_rule *r = km_calloc(1, sizeof(*r));

    if (admin_rule_from_cluster(cr, r) != 0) {
        LOG_ERROR("admin: rule %s: cannot parse its JSON", cr->id);
        free(r);
        return;
    }
    if (cancelled) {
        (void)admin_rules_remove(a->d.rules, cr->id);
        LOG_INFO("admin: rule %s cancelled", cr->id);
        if (r->kind == ADMIN_SUSPEND) {
            struct admin_act act = {a, r, true};
            queue_foreach_id(a->d.queues, admin_act_on, &act);
        }
        admin_rule_fini(r);
        free(r);
        return;
    }
    admin_rules_put(a->d.rules, r);
    LOG_INFO("admin: rule %s (%s) active: %s", r->id,
             r->kind == ADMIN_BOUNCE            ? "bounce"
             : r->kind == ADMIN_SUSPEND         ? "suspend"
             : r->kind == ADMIN_SUSPEND_READY_Q ? "suspend-ready-q"
                                                : "rebind",
             r->reason != NULL ? r->reason : "");
    if (r->kind == ADMIN_BOUNCE || r->kind == ADMIN_REBIND) {
        struct admin_act act = {a, r, false};
        queue_foreach_id(a->d.queues, admin_act_on, &act);
    }
}

static bool
admin_load_one(void *arg, const struct cluster_admin_rule *cr)
{
    struct admin *a = arg;
    struct admin_rule *r = km_calloc(1, sizeof(*r));

    if (admin_rule_from_cluster(cr, r) != 0) {
        LOG_ERROR("admin: rule %s: cannot parse its JSON", cr->id);
        free(r);
        return true;
    }
    /* A rebind was a one-time action when it was committed. */
    if (r->kind == ADMIN_REBIND) {
        admin_rule_fini(r);
        free(r);
        return true;
    }
    admin_rules_put(a->d.rules, r);
    return true;
}

void
admin_load(struct admin *a)
{
    cluster_foreach_admin(a->d.cluster, admin_load_one, a);
    if (admin_rules_count(a->d.rules) > 0) {
        LOG_INFO("admin: %zu rule(s) active", admin_rules_count(a->d.rules));
    }
}

/* ---- The API ---- */

struct admin_req {
    struct admin *a;
    char id[37];
    admin_done_cb cb;
    void *arg;
};

static void
admin_on_committed(void *arg, int status)
{
    struct admin_req *req = arg;
    const struct admin_rule *r = NULL;

    if (status == 0) {
        r = admin_rules_get(req->a->d.rules, req->id);
    }
    req->cb(req->arg, status, r);
    free(req);
}

static void
admin_new_uuid(char out[37])
{
    uint8_t b[16];

    (void)RAND_bytes(b, sizeof(b));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(
        out, 37,
        "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
        b[11], b[12], b[13], b[14], b[15]);
}

int
admin_add(struct admin *a, const struct admin_rule *rule, admin_done_cb cb,
          void *arg)
{
    struct admin_req *req;
    int64_t expires = rule->expires_ms;
    char *json;
    int rv;

    if (a->d.cluster == NULL || !a->ready) {
        return KM_ECLOSING;
    }
    if (rule->kind == ADMIN_SUSPEND_READY_Q &&
        (rule->name == NULL || rule->name[0] == '\0')) {
        return KM_EINVAL;
    }
    if (expires == 0) {
        expires = km_now_wall_ms() + ADMIN_DEFAULT_DURATION_MS;
    }
    req = km_calloc(1, sizeof(*req));
    req->a = a;
    req->cb = cb;
    req->arg = arg;
    admin_new_uuid(req->id);
    json = admin_rule_to_json(rule);
    rv = cluster_admin(a->d.cluster, req->id, (int)rule->kind, json, expires,
                       false, admin_on_committed, req);
    free(json);
    if (rv != 0) {
        free(req);
    }
    return rv;
}

int
admin_cancel(struct admin *a, enum admin_kind kind, const char *id,
             admin_done_cb cb, void *arg)
{
    const struct admin_rule *r = admin_rules_get(a->d.rules, id);
    struct admin_req *req;
    int rv;

    if (r == NULL || r->kind != kind || !admin_rule_active(r)) {
        return KM_ENOENT;
    }
    req = km_calloc(1, sizeof(*req));
    req->a = a;
    req->cb = cb;
    req->arg = arg;
    snprintf(req->id, sizeof(req->id), "%s", id);
    rv = cluster_admin(a->d.cluster, id, (int)kind, "{}", r->expires_ms, true,
                       admin_on_committed, req);
    if (rv != 0) {
        free(req);
    }
    return rv;
}

void
admin_foreach(struct admin *a, enum admin_kind kind,
              void (*fn)(void *arg, const struct admin_rule *r), void *arg)
{
    admin_rules_foreach(a->d.rules, kind, fn, arg);
}

void
admin_new(const struct admin_deps *d, struct admin **out)
{
    struct admin *a = km_calloc(1, sizeof(*a));

    a->d = *d;
    *out = a;
}

void
admin_free(struct admin *a)
{
    free(a);
}

void
admin_set_ready(struct admin *a, bool ready)
{
    a->ready = ready;
}
