/* test_metrics.c - unit tests of the node's counters and gauges: the
 * Prometheus text rendering byte for byte (HELP/TYPE lines, sorting, label
 * escaping), gauge families cleared and re-set, and the JSON shape. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "metrics.h"

/* Fixture */

static int
metrics_test_setup(void **state)
{
    struct metrics *m;

    assert_int_equal(metrics_new(&m), 0);
    *state = m;
    return 0;
}

static int
metrics_test_teardown(void **state)
{
    metrics_free(*state);
    return 0;
}

/* Helpers */

static void
metrics_test_expect_text(struct metrics *m, const char *want)
{
    struct buf out = BUF_INIT;

    metrics_render_text(m, &out);
    assert_string_equal(buf_cstr(&out), want);
    buf_fini(&out);
}

/* Tests */

static void
metrics_text_renders_sorted_families_with_help_and_type(void **state)
{
    struct metrics *m = *state;

    metrics_inc(m, "total_messages_received", "received", "service",
                "esmtp_listener", 2);
    metrics_inc(m, "total_messages_received", "received", "service",
                "esmtp_listener", 1);
    metrics_inc(m, "total_messages_received", "received", "service",
                "http_listener", 5);
    metrics_set(m, "message_count", "queued", NULL, NULL, 7);
    metrics_set(m, "disk_free_percent", "free", NULL, NULL, 12.5);
    metrics_test_expect_text(
        m, "# HELP disk_free_percent free\n"
           "# TYPE disk_free_percent gauge\n"
           "disk_free_percent 12.5\n"
           "# HELP message_count queued\n"
           "# TYPE message_count gauge\n"
           "message_count 7\n"
           "# HELP total_messages_received received\n"
           "# TYPE total_messages_received counter\n"
           "total_messages_received{service=\"esmtp_listener\"} 3\n"
           "total_messages_received{service=\"http_listener\"} 5\n");
}

static void
metrics_text_escapes_label_values_and_help(void **state)
{
    struct metrics *m = *state;

    metrics_set(m, "scheduled_count", "a \\ help\nline", "queue",
                "we\"ird\\q\nname", 1);
    metrics_test_expect_text(
        m, "# HELP scheduled_count a \\\\ help\\nline\n"
           "# TYPE scheduled_count gauge\n"
           "scheduled_count{queue=\"we\\\"ird\\\\q\\nname\"} 1\n");
}

static void
metrics_clear_drops_series_until_set_again(void **state)
{
    struct metrics *m = *state;

    metrics_set(m, "scheduled_count", "h", "queue", "a.test", 1);
    metrics_set(m, "scheduled_count", "h", "queue", "b.test", 2);
    metrics_clear(m, "scheduled_count");
    metrics_test_expect_text(m, "");
    metrics_set(m, "scheduled_count", "h", "queue", "b.test", 4);
    metrics_test_expect_text(m, "# HELP scheduled_count h\n"
                                "# TYPE scheduled_count gauge\n"
                                "scheduled_count{queue=\"b.test\"} 4\n");
}

static void
metrics_json_groups_labelled_series_by_label_name(void **state)
{
    struct metrics *m = *state;
    json_t *j, *f;

    metrics_inc(m, "total_messages_delivered", "delivered", "service",
                "smtp_client", 4);
    metrics_set(m, "message_count", "queued", NULL, NULL, 3);
    j = metrics_render_json(m);
    f = json_object_get(j, "total_messages_delivered");
    assert_string_equal(json_string_value(json_object_get(f, "type")),
                        "counter");
    assert_string_equal(json_string_value(json_object_get(f, "help")),
                        "delivered");
    assert_int_equal(
        json_integer_value(json_object_get(
            json_object_get(json_object_get(f, "value"), "service"),
            "smtp_client")),
        4);
    f = json_object_get(j, "message_count");
    assert_string_equal(json_string_value(json_object_get(f, "type")), "gauge");
    assert_int_equal(json_integer_value(json_object_get(f, "value")), 3);
    json_decref(j);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            metrics_text_renders_sorted_families_with_help_and_type,
            metrics_test_setup, metrics_test_teardown),
        cmocka_unit_test_setup_teardown(
            metrics_text_escapes_label_values_and_help, metrics_test_setup,
            metrics_test_teardown),
        cmocka_unit_test_setup_teardown(
            metrics_clear_drops_series_until_set_again, metrics_test_setup,
            metrics_test_teardown),
        cmocka_unit_test_setup_teardown(
            metrics_json_groups_labelled_series_by_label_name,
            metrics_test_setup, metrics_test_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
