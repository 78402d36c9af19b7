/* test_kcli_prom.c - unit tests of the Prometheus text parser behind
 * `kcli queue-summary` and of the queue-summary tables: labels with
 * escapes, comments, timestamps, special values, skipped malformed lines,
 * ready queues grouped from the service label, the scheduled table from
 * the JSON answer or from scheduled_count, and --limit. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/buf.h"
#include "base/km.h"
#include "kcli/kcli.h"

/* Fixture */

struct kcli_prom_test {
    struct kcli_prom *prom;
    struct buf out;
};

static int
kcli_prom_test_setup(void **state)
{
    struct kcli_prom_test *t = calloc(1, sizeof(*t));

    buf_init(&t->out);
    *state = t;
    return 0;
}

static int
kcli_prom_test_teardown(void **state)
{
    struct kcli_prom_test *t = *state;

    kcli_prom_free(t->prom);
    buf_fini(&t->out);
    free(t);
    return 0;
}

/* Helpers */

static void
kcli_prom_test_parse(struct kcli_prom_test *t, const char *text)
{
    kcli_prom_free(t->prom);
    t->prom = NULL;
    assert_int_equal(kcli_prom_parse(text, strlen(text), &t->prom), 0);
}

static double
kcli_prom_test_value(struct kcli_prom_test *t, const char *name,
                     const char *label, const char *value)
{
    double v = -1;

    assert_int_equal(kcli_prom_find(t->prom, name, label, value, &v), 0);
    return v;
}

static const char kcli_prom_test_metrics[] =
    "# HELP total_messages_delivered delivered\n"
    "# TYPE total_messages_delivered counter\n"
    "total_messages_delivered{service=\"smtp_client\"} 40\n"
    "total_messages_delivered{service=\"smtp_client:src1->mx.b.test@smtp_"
    "client\"} 30\n"
    "total_messages_delivered{service=\"smtp_client:src1->mx.a.test@smtp_"
    "client\"} 10\n"
    "total_messages_transfail{service=\"smtp_client:src1->mx.a.test@smtp_"
    "client\"} 2\n"
    "connection_count{service=\"smtp_client:src1->mx.a.test@smtp_client\"} 1\n"
    "ready_count{service=\"smtp_client:src1->mx.a.test@smtp_client\"} 7\n"
    "ready_count{service=\"maildir:local->inbox\"} 3\n"
    "total_messages_received{service=\"esmtp_listener\"} 99\n"
    "scheduled_count{queue=\"b.test\"} 4\n"
    "scheduled_count{queue=\"camp:ten@a.test\"} 9\n";

/* Tests */

static void
kcli_prom_parses_labels_values_and_skips_comments(void **state)
{
    struct kcli_prom_test *t = *state;
    const struct kcli_prom_sample *s;

    kcli_prom_test_parse(
        t, "# HELP up is it up\n\n"
           "up 1\n"
           "http_requests_total{method=\"post\",code=\"200\"} 1027 "
           "1395066363000\r\n"
           "weird{path=\"a\\\"b\\\\c\\nd\" , x = \"\"} -3.5e2\n"
           "gauge_inf +Inf\n"
           "gauge_nan NaN");
    assert_int_equal(kcli_prom_count(t->prom), 5);
    assert_int_equal(kcli_prom_bad_lines(t->prom), 0);
    assert_true(kcli_prom_test_value(t, "up", NULL, NULL) == 1.0);
    assert_true(kcli_prom_test_value(t, "http_requests_total", "code", "200") ==
                1027.0);
    s = kcli_prom_at(t->prom, 2);
    assert_string_equal(s->name, "weird");
    assert_int_equal(s->n_labels, 2);
    assert_string_equal(kcli_prom_label(s, "path"), "a\"b\\c\nd");
    assert_string_equal(kcli_prom_label(s, "x"), "");
    assert_null(kcli_prom_label(s, "nope"));
    assert_true(s->value == -350.0);
    assert_true(isinf(kcli_prom_test_value(t, "gauge_inf", NULL, NULL)));
    assert_true(isnan(kcli_prom_test_value(t, "gauge_nan", NULL, NULL)));
}

static void
kcli_prom_skips_and_counts_malformed_lines(void **state)
{
    struct kcli_prom_test *t = *state;
    double v;

    kcli_prom_test_parse(t, "good 1\n"
                            "9bad 1\n"
                            "nolabelend{a=\"x\" 1\n"
                            "unquoted{a=x} 1\n"
                            "novalue\n"
                            "notnumber abc\n"
                            "also_good{a=\"b\"} 2\n");
    assert_int_equal(kcli_prom_count(t->prom), 2);
    assert_int_equal(kcli_prom_bad_lines(t->prom), 5);
    assert_true(kcli_prom_test_value(t, "also_good", "a", "b") == 2.0);
    assert_int_equal(kcli_prom_find(t->prom, "also_good", "a", "c", &v),
                     KM_ENOENT);
}

static void
kcli_queue_summary_groups_ready_queues_by_service(void **state)
{
    struct kcli_prom_test *t = *state;
    json_t *sched = json_loads("{\"scheduled\":[{\"queue\":\"b.test\","
                               "\"count\":4},{\"queue\":\"camp:ten@a.test\","
                               "\"count\":9}],\"total\":13}",
                               0, NULL);

    kcli_prom_test_parse(t, kcli_prom_test_metrics);
    kcli_render_queue_summary(sched, t->prom, -1, &t->out);
    json_decref(sched);
    assert_string_equal(buf_cstr(&t->out),
                        "SITE       SOURCE  PROTO         D  T  C  Q\n"
                        "inbox      local   maildir       0  0  0  3\n"
                        "mx.a.test  src1    smtp_client  10  2  1  7\n"
                        "mx.b.test  src1    smtp_client  30  0  0  0\n"
                        "\n"
                        "SCHEDULED QUEUE  COUNT\n"
                        "camp:ten@a.test      9\n"
                        "b.test               4\n");
}

static void
kcli_queue_summary_falls_back_to_scheduled_count_and_limits(void **state)
{
    struct kcli_prom_test *t = *state;

    kcli_prom_test_parse(t, kcli_prom_test_metrics);
    kcli_render_queue_summary(NULL, t->prom, 1, &t->out);
    assert_string_equal(buf_cstr(&t->out),
                        "SITE   SOURCE  PROTO    D  T  C  Q\n"
                        "inbox  local   maildir  0  0  0  3\n"
                        "(2 more not shown)\n"
                        "\n"
                        "SCHEDULED QUEUE  COUNT\n"
                        "camp:ten@a.test      9\n"
                        "(1 more not shown)\n");
}

static void
kcli_queue_summary_without_metrics_prints_only_scheduled(void **state)
{
    struct kcli_prom_test *t = *state;
    json_t *sched = json_loads("{\"scheduled\":[],\"total\":0}", 0, NULL);

    kcli_render_queue_summary(sched, NULL, -1, &t->out);
    json_decref(sched);
    assert_string_equal(buf_cstr(&t->out), "SCHEDULED QUEUE  COUNT\n");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f)                                                                   \
    cmocka_unit_test_setup_teardown(f, kcli_prom_test_setup,                   \
                                    kcli_prom_test_teardown)
        T(kcli_prom_parses_labels_values_and_skips_comments),
        T(kcli_prom_skips_and_counts_malformed_lines),
        T(kcli_queue_summary_groups_ready_queues_by_service),
        T(kcli_queue_summary_falls_back_to_scheduled_count_and_limits),
        T(kcli_queue_summary_without_metrics_prints_only_scheduled),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
