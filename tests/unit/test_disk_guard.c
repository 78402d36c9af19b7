/* test_disk_guard.c - the free-space watch as an object: min_free_space
 * parses as a percentage or a size and bad values name the parameter; a
 * real data spool whose file system has less free space than the mark is
 * reported low through on_low (once, at the first check) and one above
 * the mark is never reported; a node that is not in a group never asks to
 * stop (on_critical), whatever the hard mark says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <uv.h>

#include "base/km.h"
#include "disk_guard.h"
#include "spool.h"
#include "test_util.h"

/* Fixture */

struct disk_guard_test {
    uv_loop_t loop;
    char dir[256];
    struct spool *sp;
    bool closed;
    int low_calls, critical_calls;
    bool last_low;
};

static int
disk_guard_test_setup(void **state)
{
    struct disk_guard_test *t = calloc(1, sizeof(*t));
    const char *root = getenv("KUMO_TEST_TMP");

    snprintf(t->dir, sizeof(t->dir), "%s/disk_guard-XXXXXX",
             root != NULL ? root : "/tmp");
    assert_non_null(mkdtemp(t->dir));
    assert_int_equal(uv_loop_init(&t->loop), 0);
    assert_int_equal(spool_open(&t->loop, "data", t->dir, &t->sp), 0);
    *state = t;
    return 0;
}

static void
disk_guard_test_on_closed(void *arg)
{
    ((struct disk_guard_test *)arg)->closed = true;
}

static int
disk_guard_test_teardown(void **state)
{
    struct disk_guard_test *t = *state;

    spool_close(t->sp, disk_guard_test_on_closed, t);
    test_run_until(&t->loop, &t->closed);
    assert_int_equal(uv_run(&t->loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(uv_loop_close(&t->loop), 0);
    assert_int_equal(test_rm_rf(t->dir), 0);
    free(t);
    return 0;
}

/* Helpers */

static void
disk_guard_test_on_low(void *arg, bool low)
{
    struct disk_guard_test *t = arg;

    t->low_calls++;
    t->last_low = low;
}

static void
disk_guard_test_on_critical(void *arg)
{
    ((struct disk_guard_test *)arg)->critical_calls++;
}

static struct disk_guard *
disk_guard_test_open(struct disk_guard_test *t, struct disk_mark mark)
{
    struct disk_guard *g = NULL;
    struct disk_guard_deps d = {
        .loop = &t->loop,
        .data = t->sp,
        .cluster = NULL,
        .mark = mark,
        .on_low = disk_guard_test_on_low,
        .on_critical = disk_guard_test_on_critical,
        .arg = t,
    };

    disk_guard_open(&d, &g);
    return g;
}

static void
disk_guard_test_close(struct disk_guard_test *t, struct disk_guard *g)
{
    disk_guard_close(g);
    /* The close callback frees the guard; run the loop until it has. */
    for (int i = 0; i < 10; i++) {
        uv_run(&t->loop, UV_RUN_NOWAIT);
    }
}

/* Tests */

static void
disk_guard_parses_percentages_and_sizes(void **state)
{
    struct disk_mark m = {0};
    char err[256];

    (void)state;
    assert_int_equal(disk_guard_parse_mark("12.5%", &m, err, sizeof(err)), 0);
    assert_true(m.pct > 12.4 && m.pct < 12.6);
    assert_int_equal(m.bytes, 0);
    assert_int_equal(disk_guard_parse_mark("5GB", &m, err, sizeof(err)), 0);
    assert_true(m.bytes >= 5000000000ull);
    assert_true(m.pct == 0.0);
    assert_int_equal(disk_guard_parse_mark("150%", &m, err, sizeof(err)),
                     KM_ECONFIG);
    assert_non_null(strstr(err, "min_free_space"));
    assert_int_equal(disk_guard_parse_mark("lots", &m, err, sizeof(err)),
                     KM_ECONFIG);
    assert_non_null(strstr(err, "'lots'"));
}

static void
disk_guard_reports_low_below_the_mark_and_never_stops_alone(void **state)
{
    struct disk_guard_test *t = *state;
    /* More free space than any test machine has: below the soft mark and
     * far below the hard one. */
    struct disk_mark huge = {.pct = 0.0, .bytes = UINT64_MAX / 4};
    struct disk_guard *g = disk_guard_test_open(t, huge);

    assert_int_equal(t->low_calls, 1); /* checked at once */
    assert_true(t->last_low);
    assert_true(disk_guard_is_low(g));
    assert_int_equal(t->critical_calls, 0); /* not in a group */
    disk_guard_test_close(t, g);
}

static void
disk_guard_is_fine_above_the_mark(void **state)
{
    struct disk_guard_test *t = *state;
    struct disk_mark one_byte = {.pct = 0.0, .bytes = 1};
    struct disk_guard *g = disk_guard_test_open(t, one_byte);

    assert_int_equal(t->low_calls, 0); /* never low: nothing to report */
    assert_false(disk_guard_is_low(g));
    assert_false(disk_guard_is_low(NULL));
    disk_guard_test_close(t, g);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(disk_guard_parses_percentages_and_sizes),
        cmocka_unit_test_setup_teardown(
            disk_guard_reports_low_below_the_mark_and_never_stops_alone,
            disk_guard_test_setup, disk_guard_test_teardown),
        cmocka_unit_test_setup_teardown(disk_guard_is_fine_above_the_mark,
                                        disk_guard_test_setup,
                                        disk_guard_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
