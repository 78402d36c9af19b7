/* admin_rules.c - the active admin rules in a map by id, and the checks
 * that scheduled queues (bounce, suspend) and egress (suspend-ready-q)
 * make when a message becomes due, with KumoMTA's selector semantics.
 * Pure: no I/O, no Raft. Loop thread only. */
#include "admin_rules.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "base/km.h"
#include "base/km_map.h"
#include "message.h"

/* A held message is looked at again at least this often. */
#define ADMIN_MAX_HOLD_MS 60000u

struct admin_rules {
    struct km_map *rules; /* id -> struct admin_rule */
};

void
admin_rule_fini(struct admin_rule *r)
{
    free(r->domain);
    free(r->routing_domain);
    free(r->tenant);
    free(r->campaign);
    for (size_t i = 0; i < r->n_queue_names; i++) {
        free(r->queue_names[i]);
    }
    free(r->queue_names);
    free(r->name);
    free(r->reason);
    json_decref(r->rebind_data);
    memset(r, 0, sizeof(*r));
}

static void
admin_rule_free(struct admin_rule *r)
{
    if (r != NULL) {
        admin_rule_fini(r);
        free(r);
    }
}

void
admin_rules_new(struct admin_rules **out)
{
    struct admin_rules *rs = km_calloc(1, sizeof(*rs));

    rs->rules = km_map_new();
    *out = rs;
}

void
admin_rules_free(struct admin_rules *rs)
{
    struct km_map_iter it;
    void *v;

    if (rs == NULL) {
        return;
    }
    km_map_iter_init(&it, rs->rules);
    while (km_map_iter_next(&it, NULL, &v)) {
        admin_rule_free(v);
    }
    km_map_free(rs->rules);
    free(rs);
}

void
admin_rules_put(struct admin_rules *rs, struct admin_rule *r)
{
    void *old = NULL;

    km_map_put(rs->rules, r->id, r, &old);
    admin_rule_free(old);
}

bool
admin_rules_remove(struct admin_rules *rs, const char *id)
{
    void *old = NULL;

    if (!km_map_remove(rs->rules, id, &old)) {
        return false;
    }
    admin_rule_free(old);
    return true;
}

const struct admin_rule *
admin_rules_get(const struct admin_rules *rs, const char *id)
{
    return km_map_get(rs->rules, id);
}

size_t
admin_rules_count(const struct admin_rules *rs)
{
    return km_map_count(rs->rules);
}

void
admin_rules_foreach(const struct admin_rules *rs, enum admin_kind kind,
                    void (*fn)(void *arg, const struct admin_rule *r),
                    void *arg)
{
    struct km_map_iter it;
    void *v;

    km_map_iter_init(&it, rs->rules);
    while (km_map_iter_next(&it, NULL, &v)) {
        const struct admin_rule *r = v;
        if (r->kind == kind && admin_rule_active(r)) {
            fn(arg, r);
        }
    }
}

/* ---- Matching ---- */

bool
admin_rule_active(const struct admin_rule *r)
{
    return r->expires_ms == 0 || r->expires_ms > km_now_wall_ms();
}

static bool
admin_str_eq(const char *want, const char *have)
{
    return want == NULL ||
           (have != NULL && km_ascii_ieq(have, strlen(have), want));
}

/* KumoMTA's selectors: every criterion given must match; none = all. */
bool
admin_rule_matches(const struct admin_rule *r, struct message *m,
                   const char *queue)
{
    if (!admin_str_eq(r->domain, message_recipient_domain(m)) ||
        !admin_str_eq(r->routing_domain,
                      message_meta_str(m, "routing_domain")) ||
        !admin_str_eq(r->tenant, message_meta_str(m, "tenant")) ||
        !admin_str_eq(r->campaign, message_meta_str(m, "campaign"))) {
        return false;
    }
    if (r->n_queue_names > 0) {
        for (size_t i = 0; i < r->n_queue_names; i++) {
            if (strcmp(r->queue_names[i], queue) == 0) {
                return true;
            }
        }
        return false;
    }
    return true;
}

enum admin_verdict
admin_rules_check_message(struct admin_rules *rs, struct message *m,
                          const char *queue, const struct admin_rule **rule)
{
    struct km_map_iter it;
    enum admin_verdict verdict = ADMIN_VERDICT_PASS;
    void *v;

    km_map_iter_init(&it, rs->rules);
    while (km_map_iter_next(&it, NULL, &v)) {
        struct admin_rule *r = v;
        if (!admin_rule_active(r) || !admin_rule_matches(r, m, queue)) {
            continue;
        }
        if (r->kind == ADMIN_BOUNCE) {
            r->matched++;
            *rule = r;
            return ADMIN_VERDICT_BOUNCE;
        }
        if (r->kind == ADMIN_SUSPEND) {
            *rule = r;
            verdict = ADMIN_VERDICT_SUSPENDED;
        }
    }
    return verdict;
}

bool
admin_rules_ready_q_suspended(const struct admin_rules *rs, const char *name,
                              const struct admin_rule **rule)
{
    struct km_map_iter it;
    void *v;

    km_map_iter_init(&it, rs->rules);
    while (km_map_iter_next(&it, NULL, &v)) {
        const struct admin_rule *r = v;
        if (r->kind == ADMIN_SUSPEND_READY_Q && r->name != NULL &&
            strcmp(r->name, name) == 0 && admin_rule_active(r)) {
            *rule = r;
            return true;
        }
    }
    return false;
}

uint64_t
admin_rules_suspension_delay_ms(const struct admin_rule *rule)
{
    int64_t left = rule->expires_ms - km_now_wall_ms();
    uint32_t r = 0;

    if (left <= 0) {
        return 1000;
    }
    if (left > ADMIN_MAX_HOLD_MS) {
        /* Spread the held messages over the minute (KumoMTA jitters). */
        (void)RAND_bytes((unsigned char *)&r, sizeof(r));
        return ADMIN_MAX_HOLD_MS / 2 + r % (ADMIN_MAX_HOLD_MS / 2);
    }
    return (uint64_t)left;
}
