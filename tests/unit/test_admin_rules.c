/* test_admin_rules.c - the pure checks the scheduled queues and egress make
 * on the active admin rules: KumoMTA's selectors (every criterion given
 * must match, case-insensitive domains, queue names exactly), bounce over
 * suspend, expiry, ready-queue suspensions by name, the hold delay, and
 * the set's own bookkeeping (replace by id, remove, foreach by kind). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admin_rules.h"
#include "base/km.h"
#include "message.h"

/* Helpers */

static struct admin_rule *
admin_rules_test_rule(const char *id, enum admin_kind kind, int64_t expires_ms)
{
    struct admin_rule *r = km_calloc(1, sizeof(*r));

    snprintf(r->id, sizeof(r->id), "%s", id);
    r->kind = kind;
    r->expires_ms = expires_ms;
    r->reason = km_strdup(id);
    return r;
}

static struct message *
admin_rules_test_msg(const char *rcpt, const char *tenant, const char *campaign)
{
    struct message *m = NULL;
    json_t *meta = json_object();

    if (tenant != NULL) {
        json_object_set_new(meta, "tenant", json_string(tenant));
    }
    if (campaign != NULL) {
        json_object_set_new(meta, "campaign", json_string(campaign));
    }
    assert_int_equal(message_new("0123456789abcdef0123456789abcdef",
                                 "sender@example.test", rcpt, meta, &m),
                     0);
    return m;
}

static int64_t
admin_rules_test_later(void)
{
    return km_now_wall_ms() + 600000;
}

static void
admin_rules_test_count(void *arg, const struct admin_rule *r)
{
    (void)r;
    (*(int *)arg)++;
}

/* Tests */

static void
admin_rules_no_rule_passes(void **state)
{
    struct admin_rules *rs;
    struct message *m = admin_rules_test_msg("a@example.test", NULL, NULL);
    const struct admin_rule *hit = NULL;

    (void)state;
    admin_rules_new(&rs);
    assert_int_equal(admin_rules_check_message(rs, m, "example.test", &hit),
                     ADMIN_VERDICT_PASS);
    assert_null(hit);
    message_unref(m);
    admin_rules_free(rs);
}

static void
admin_rules_every_given_selector_must_match(void **state)
{
    struct admin_rules *rs;
    struct admin_rule *r =
        admin_rules_test_rule("b1", ADMIN_BOUNCE, admin_rules_test_later());
    struct message *hit_msg =
        admin_rules_test_msg("a@Example.TEST", "t1", "c1");
    struct message *other_tenant =
        admin_rules_test_msg("a@example.test", "t2", "c1");
    const struct admin_rule *hit = NULL;

    (void)state;
    r->domain = km_strdup("example.test");
    r->tenant = km_strdup("t1");
    admin_rules_new(&rs);
    admin_rules_put(rs, r);
    assert_int_equal(admin_rules_check_message(rs, hit_msg, "q", &hit),
                     ADMIN_VERDICT_BOUNCE);
    assert_ptr_equal(hit, admin_rules_get(rs, "b1"));
    assert_int_equal(hit->matched, 1);
    assert_int_equal(admin_rules_check_message(rs, other_tenant, "q", &hit),
                     ADMIN_VERDICT_PASS);
    message_unref(hit_msg);
    message_unref(other_tenant);
    admin_rules_free(rs);
}

static void
admin_rules_queue_names_match_exactly(void **state)
{
    struct admin_rules *rs;
    struct admin_rule *r =
        admin_rules_test_rule("s1", ADMIN_SUSPEND, admin_rules_test_later());
    struct message *m = admin_rules_test_msg("a@example.test", NULL, NULL);
    const struct admin_rule *hit = NULL;

    (void)state;
    r->queue_names = km_calloc(1, sizeof(*r->queue_names));
    r->queue_names[0] = km_strdup("camp:tenant@example.test");
    r->n_queue_names = 1;
    admin_rules_new(&rs);
    admin_rules_put(rs, r);
    assert_int_equal(
        admin_rules_check_message(rs, m, "camp:tenant@example.test", &hit),
        ADMIN_VERDICT_SUSPENDED);
    assert_int_equal(admin_rules_check_message(rs, m, "example.test", &hit),
                     ADMIN_VERDICT_PASS);
    message_unref(m);
    admin_rules_free(rs);
}

static void
admin_rules_bounce_wins_over_suspend_and_expired_rules_are_ignored(void **state)
{
    struct admin_rules *rs;
    struct message *m = admin_rules_test_msg("a@example.test", NULL, NULL);
    const struct admin_rule *hit = NULL;

    (void)state;
    admin_rules_new(&rs);
    admin_rules_put(rs, admin_rules_test_rule("s1", ADMIN_SUSPEND,
                                              admin_rules_test_later()));
    admin_rules_put(rs, admin_rules_test_rule("b-old", ADMIN_BOUNCE,
                                              km_now_wall_ms() - 1000));
    assert_int_equal(admin_rules_check_message(rs, m, "example.test", &hit),
                     ADMIN_VERDICT_SUSPENDED);
    assert_string_equal(hit->id, "s1");
    admin_rules_put(rs, admin_rules_test_rule("b-new", ADMIN_BOUNCE,
                                              admin_rules_test_later()));
    assert_int_equal(admin_rules_check_message(rs, m, "example.test", &hit),
                     ADMIN_VERDICT_BOUNCE);
    assert_string_equal(hit->id, "b-new");
    message_unref(m);
    admin_rules_free(rs);
}

static void
admin_rules_ready_queue_suspension_is_by_name(void **state)
{
    struct admin_rules *rs;
    struct admin_rule *r = admin_rules_test_rule("rq", ADMIN_SUSPEND_READY_Q,
                                                 admin_rules_test_later());
    const struct admin_rule *hit = NULL;

    (void)state;
    r->name = km_strdup("unspecified->mx.example.test@smtp_client");
    admin_rules_new(&rs);
    admin_rules_put(rs, r);
    assert_true(admin_rules_ready_q_suspended(
        rs, "unspecified->mx.example.test@smtp_client", &hit));
    assert_ptr_equal(hit, r);
    assert_false(admin_rules_ready_q_suspended(
        rs, "unspecified->other.test@smtp_client", &hit));
    admin_rules_free(rs);
}

static void
admin_rules_hold_delay_is_bounded_by_the_rule_and_a_minute(void **state)
{
    struct admin_rule *soon =
        admin_rules_test_rule("soon", ADMIN_SUSPEND, km_now_wall_ms() + 5000);
    struct admin_rule *late = admin_rules_test_rule("late", ADMIN_SUSPEND,
                                                    km_now_wall_ms() + 3600000);
    struct admin_rule *gone =
        admin_rules_test_rule("gone", ADMIN_SUSPEND, km_now_wall_ms() - 1);
    uint64_t d;

    (void)state;
    d = admin_rules_suspension_delay_ms(soon);
    assert_true(d > 4000 && d <= 5000);
    for (int i = 0; i < 50; i++) {
        d = admin_rules_suspension_delay_ms(late);
        assert_true(d >= 30000 && d < 60000);
    }
    assert_int_equal(admin_rules_suspension_delay_ms(gone), 1000);
    admin_rule_fini(soon);
    admin_rule_fini(late);
    admin_rule_fini(gone);
    free(soon);
    free(late);
    free(gone);
}

static void
admin_rules_put_replaces_by_id_remove_and_foreach_by_kind(void **state)
{
    struct admin_rules *rs;
    int n = 0;

    (void)state;
    admin_rules_new(&rs);
    admin_rules_put(
        rs, admin_rules_test_rule("x", ADMIN_BOUNCE, admin_rules_test_later()));
    admin_rules_put(rs, admin_rules_test_rule("x", ADMIN_SUSPEND,
                                              admin_rules_test_later()));
    admin_rules_put(rs, admin_rules_test_rule("y", ADMIN_SUSPEND,
                                              admin_rules_test_later()));
    admin_rules_put(
        rs, admin_rules_test_rule("z", ADMIN_SUSPEND, km_now_wall_ms() - 1));
    assert_int_equal(admin_rules_count(rs), 3);
    assert_int_equal(admin_rules_get(rs, "x")->kind, ADMIN_SUSPEND);
    admin_rules_foreach(rs, ADMIN_SUSPEND, admin_rules_test_count, &n);
    assert_int_equal(n, 2); /* x and y; z has expired */
    assert_true(admin_rules_remove(rs, "x"));
    assert_false(admin_rules_remove(rs, "x"));
    assert_null(admin_rules_get(rs, "x"));
    assert_int_equal(admin_rules_count(rs), 2);
    admin_rules_free(rs);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(admin_rules_no_rule_passes),
        cmocka_unit_test(admin_rules_every_given_selector_must_match),
        cmocka_unit_test(admin_rules_queue_names_match_exactly),
        cmocka_unit_test(
            admin_rules_bounce_wins_over_suspend_and_expired_rules_are_ignored),
        cmocka_unit_test(admin_rules_ready_queue_suspension_is_by_name),
        cmocka_unit_test(
            admin_rules_hold_delay_is_bounded_by_the_rule_and_a_minute),
        cmocka_unit_test(
            admin_rules_put_replaces_by_id_remove_and_foreach_by_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
