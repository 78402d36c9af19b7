/* test_egress_throttle.c - unit tests of throttle spec parsing and
 * formatting (every grammar form, separators, counts, plurals, local:,
 * max_burst, invalid specs), connection_limit parsing, and the GCRA
 * limiter driven by a fake millisecond clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/km.h"
#include "egress_throttle.h"

/* Fixture: none; every test works on local values. */

/* Helpers */

static struct egress_throttle_spec
egress_throttle_test_parse(const char *text)
{
    struct egress_throttle_spec s;
    char err[128] = "";
    int rv = egress_throttle_parse(text, &s, err, sizeof(err));

    if (rv != 0) {
        print_message("parse '%s' failed: %s\n", text, err);
    }
    assert_int_equal(rv, 0);
    return s;
}

static void
egress_throttle_test_expect(const char *text, uint64_t limit,
                            uint64_t period_ms, uint64_t max_burst,
                            bool has_max_burst, bool local)
{
    struct egress_throttle_spec s = egress_throttle_test_parse(text);

    assert_int_equal(s.limit, limit);
    assert_int_equal(s.period_ms, period_ms);
    assert_int_equal(s.max_burst, max_burst);
    assert_int_equal(s.has_max_burst, has_max_burst);
    assert_int_equal(s.local, local);
}

static void
egress_throttle_test_reject(const char *text)
{
    struct egress_throttle_spec s = {.limit = 77};
    char err[128] = "";

    assert_int_equal(egress_throttle_parse(text, &s, err, sizeof(err)),
                     KM_EINVAL);
    assert_true(err[0] != '\0');
    assert_int_equal(s.limit, 77);
}

static void
egress_throttle_test_roundtrip(const char *text, const char *canonical)
{
    struct egress_throttle_spec s = egress_throttle_test_parse(text);
    struct egress_throttle_spec again;
    char out[64];

    assert_int_equal(egress_throttle_format(&s, out, sizeof(out)), 0);
    assert_string_equal(out, canonical);
    again = egress_throttle_test_parse(out);
    assert_int_equal(again.limit, s.limit);
    assert_int_equal(again.period_ms, s.period_ms);
    assert_int_equal(again.max_burst, s.max_burst);
    assert_int_equal(again.has_max_burst, s.has_max_burst);
    assert_int_equal(again.local, s.local);
}

static struct egress_gcra
egress_throttle_test_gcra(const char *text)
{
    struct egress_throttle_spec s = egress_throttle_test_parse(text);
    struct egress_gcra g;

    egress_gcra_init(&g, &s);
    return g;
}

/* Count the cells allowed at one instant, up to `max`. */
static unsigned
egress_throttle_test_burst(struct egress_gcra *g, uint64_t now, unsigned max)
{
    unsigned n = 0;

    while (n < max && egress_gcra_try(g, now, NULL)) {
        n++;
    }
    return n;
}

/* Tests */

static void
egress_throttle_parse_accepts_every_period_unit(void **state)
{
    (void)state;
    egress_throttle_test_expect("100/s", 100, 1000, 100, false, false);
    egress_throttle_test_expect("100/sec", 100, 1000, 100, false, false);
    egress_throttle_test_expect("100/second", 100, 1000, 100, false, false);
    egress_throttle_test_expect("100/seconds", 100, 1000, 100, false, false);
    egress_throttle_test_expect("100/m", 100, 60000, 100, false, false);
    egress_throttle_test_expect("100/min", 100, 60000, 100, false, false);
    egress_throttle_test_expect("100/minute", 100, 60000, 100, false, false);
    egress_throttle_test_expect("100/minutes", 100, 60000, 100, false, false);
    egress_throttle_test_expect("100/h", 100, 3600000, 100, false, false);
    egress_throttle_test_expect("100/hr", 100, 3600000, 100, false, false);
    egress_throttle_test_expect("100/hour", 100, 3600000, 100, false, false);
    egress_throttle_test_expect("100/hours", 100, 3600000, 100, false, false);
    egress_throttle_test_expect("100/d", 100, 86400000, 100, false, false);
    egress_throttle_test_expect("100/day", 100, 86400000, 100, false, false);
    egress_throttle_test_expect("100/days", 100, 86400000, 100, false, false);
}

static void
egress_throttle_parse_units_are_case_insensitive(void **state)
{
    (void)state;
    egress_throttle_test_expect("5/S", 5, 1000, 5, false, false);
    egress_throttle_test_expect("5/Hour", 5, 3600000, 5, false, false);
    egress_throttle_test_expect("5/DAYS", 5, 86400000, 5, false, false);
}

static void
egress_throttle_parse_strips_limit_separators(void **state)
{
    (void)state;
    egress_throttle_test_expect("1,000/hr", 1000, 3600000, 1000, false, false);
    egress_throttle_test_expect("10_000/d", 10000, 86400000, 10000, false,
                                false);
    /* KumoMTA's own test: separators anywhere. */
    egress_throttle_test_expect("1_0,0/hour", 100, 3600000, 100, false, false);
}

static void
egress_throttle_parse_applies_period_count(void **state)
{
    (void)state;
    egress_throttle_test_expect("10/5m", 10, 300000, 10, false, false);
    egress_throttle_test_expect("local:100/123m", 100, 123 * 60000, 100, false,
                                true);
    egress_throttle_test_expect("1/20s", 1, 20000, 1, false, false);
    egress_throttle_test_expect("7/1h", 7, 3600000, 7, false, false);
}

static void
egress_throttle_parse_reads_local_and_max_burst(void **state)
{
    (void)state;
    egress_throttle_test_expect("local:100/hr", 100, 3600000, 100, false, true);
    egress_throttle_test_expect("100/day,max_burst=1", 100, 86400000, 1, true,
                                false);
    egress_throttle_test_expect("local:1,000/5m,max_burst=1_0", 1000, 300000,
                                10, true, true);
    egress_throttle_test_expect("50/d,max_burst=0", 50, 86400000, 0, true,
                                false);
}

static void
egress_throttle_parse_rejects_invalid_specs(void **state)
{
    (void)state;
    egress_throttle_test_reject("0/s");
    egress_throttle_test_reject("0,000/s");
    egress_throttle_test_reject("10/");
    egress_throttle_test_reject("10/5");
    egress_throttle_test_reject("abc");
    egress_throttle_test_reject("three/hour");
    egress_throttle_test_reject("10/fortnight");
    egress_throttle_test_reject("100/our");
    egress_throttle_test_reject("-5/s");
    egress_throttle_test_reject("/s");
    egress_throttle_test_reject(",/s");
    egress_throttle_test_reject("");
    egress_throttle_test_reject("local:");
    egress_throttle_test_reject("10/0m");
    egress_throttle_test_reject("10 /s");
    egress_throttle_test_reject("10/s,max_burst=");
    egress_throttle_test_reject("10/s,max_burst=x");
    egress_throttle_test_reject("10/s,burst=2");
    egress_throttle_test_reject("99999999999999999999/s");
    egress_throttle_test_reject("10/99999999999999999999s");
    egress_throttle_test_reject("10/99999999d");
    egress_throttle_test_reject(NULL);
}

static void
egress_throttle_parse_tolerates_missing_error_buffer(void **state)
{
    struct egress_throttle_spec s;

    (void)state;
    assert_int_equal(egress_throttle_parse("nope", &s, NULL, 0), KM_EINVAL);
    assert_int_equal(egress_throttle_parse("3/m", &s, NULL, 0), 0);
    assert_int_equal(s.limit, 3);
}

static void
egress_throttle_format_gives_canonical_text(void **state)
{
    (void)state;
    egress_throttle_test_roundtrip("100/hr", "100/h");
    egress_throttle_test_roundtrip("local:100/hour", "local:100/h");
    egress_throttle_test_roundtrip("1,000/Minutes", "1000/m");
    egress_throttle_test_roundtrip("5/24h", "5/d");
    egress_throttle_test_roundtrip("9/sec", "9/s");
    egress_throttle_test_roundtrip("local:100/123m", "local:100/7380s");
    egress_throttle_test_roundtrip("50/day,max_burst=1", "50/d,max_burst=1");
    egress_throttle_test_roundtrip("10/5m,max_burst=0", "10/300s,max_burst=0");
}

static void
egress_throttle_format_reports_short_buffer_and_bad_spec(void **state)
{
    struct egress_throttle_spec s = egress_throttle_test_parse("1000/h");
    struct egress_throttle_spec bad = {.limit = 1, .period_ms = 1500};
    char out[8];

    (void)state;
    assert_int_equal(egress_throttle_format(&s, out, 6), KM_E2BIG);
    assert_int_equal(egress_throttle_format(&s, out, 7), 0);
    assert_string_equal(out, "1000/h");
    assert_int_equal(egress_throttle_format(&bad, out, sizeof(out)), KM_EINVAL);
    bad.period_ms = 1000;
    bad.limit = 0;
    assert_int_equal(egress_throttle_format(&bad, out, sizeof(out)), KM_EINVAL);
}

static void
egress_connection_limit_parse_accepts_kumomta_forms(void **state)
{
    uint32_t limit = 0;
    bool local = true;

    (void)state;
    assert_int_equal(egress_connection_limit_parse("32", &limit, &local), 0);
    assert_int_equal(limit, 32);
    assert_false(local);
    assert_int_equal(egress_connection_limit_parse("1,000", &limit, &local), 0);
    assert_int_equal(limit, 1000);
    assert_int_equal(egress_connection_limit_parse("10_000", &limit, &local),
                     0);
    assert_int_equal(limit, 10000);
    assert_int_equal(egress_connection_limit_parse("local:20", &limit, &local),
                     0);
    assert_int_equal(limit, 20);
    assert_true(local);
    assert_int_equal(
        egress_connection_limit_parse("4294967295", &limit, &local), 0);
    assert_int_equal(limit, UINT32_MAX);
}

static void
egress_connection_limit_parse_rejects_bad_values(void **state)
{
    static const char *const bad[] = {
        "",    "0",          "local:0", "local:", "-1", "abc", "3 ",
        "1.5", "4294967296", "local:x", "10/s",   ",",  NULL};
    uint32_t limit = 7;
    bool local = false;

    (void)state;
    for (size_t i = 0; bad[i] != NULL; i++) {
        assert_int_equal(egress_connection_limit_parse(bad[i], &limit, &local),
                         KM_EINVAL);
    }
    assert_int_equal(egress_connection_limit_parse(NULL, &limit, &local),
                     KM_EINVAL);
    assert_int_equal(limit, 7);
    assert_false(local);
}

static void
egress_gcra_allows_burst_of_limit_then_paces_at_emission(void **state)
{
    struct egress_gcra g = egress_throttle_test_gcra("10/s");
    uint64_t retry = 0;
    uint64_t now = 5000;

    (void)state;
    assert_int_equal(egress_throttle_test_burst(&g, now, 100), 10);
    assert_false(egress_gcra_try(&g, now, &retry));
    assert_int_equal(retry, 100);
    /* Half-way to the next cell: still throttled, with the rest to wait. */
    assert_false(egress_gcra_try(&g, now + 40, &retry));
    assert_int_equal(retry, 60);
    /* Then exactly one cell every 100 ms. */
    for (int i = 1; i <= 20; i++) {
        now += 100;
        assert_true(egress_gcra_try(&g, now, NULL));
        assert_false(egress_gcra_try(&g, now, &retry));
        assert_int_equal(retry, 100);
    }
}

static void
egress_gcra_retry_after_is_rounded_up_to_whole_ms(void **state)
{
    struct egress_gcra g = egress_throttle_test_gcra("3/s"); /* 333.3 ms */
    uint64_t retry = 0;

    (void)state;
    assert_int_equal(egress_throttle_test_burst(&g, 0, 10), 3);
    assert_false(egress_gcra_try(&g, 0, &retry));
    assert_int_equal(retry, 334);
    assert_false(egress_gcra_try(&g, 333, &retry));
    assert_int_equal(retry, 1);
    assert_true(egress_gcra_try(&g, 334, &retry));
}

static void
egress_gcra_long_idle_restores_full_burst(void **state)
{
    struct egress_gcra g = egress_throttle_test_gcra("10/s");

    (void)state;
    assert_int_equal(egress_throttle_test_burst(&g, 1000, 100), 10);
    /* 500 ms later only 5 cells have been earned back. */
    assert_int_equal(egress_throttle_test_burst(&g, 1500, 100), 5);
    /* After an hour of idling the burst is full again, not larger. */
    assert_int_equal(egress_throttle_test_burst(&g, 3601500, 100), 10);
}

static void
egress_gcra_max_burst_limits_instant_use(void **state)
{
    struct egress_gcra g1 = egress_throttle_test_gcra("100/s,max_burst=1");
    struct egress_gcra g0 = egress_throttle_test_gcra("100/s,max_burst=0");
    struct egress_gcra big = egress_throttle_test_gcra("5/s,max_burst=50");
    uint64_t retry = 0;

    (void)state;
    /* KumoMTA's local throttle: max_burst + 1 cells, capped at limit. */
    assert_int_equal(egress_throttle_test_burst(&g1, 0, 1000), 2);
    assert_int_equal(egress_throttle_test_burst(&g0, 0, 1000), 1);
    assert_false(egress_gcra_try(&g0, 0, &retry));
    assert_int_equal(retry, 10);
    assert_int_equal(egress_throttle_test_burst(&big, 0, 1000), 5);
}

static void
egress_gcra_slow_rate_over_long_period(void **state)
{
    struct egress_gcra g = egress_throttle_test_gcra("2/d,max_burst=0");
    uint64_t retry = 0;

    (void)state;
    assert_true(egress_gcra_try(&g, 0, NULL));
    assert_false(egress_gcra_try(&g, 1000, &retry));
    assert_int_equal(retry, 43200000 - 1000);
    assert_true(egress_gcra_try(&g, 43200000, NULL));
}

static void
egress_gcra_very_high_rate_still_limits(void **state)
{
    struct egress_gcra g = egress_throttle_test_gcra("2,000,000,000/s");
    uint64_t retry = 0;

    (void)state;
    /* Sub-nanosecond emission is rounded up to 1 ns: 1e6 cells per ms. */
    assert_true(egress_gcra_try(&g, 10, NULL));
    g.tat_ns = 10 * 1000000ULL + g.tolerance_ns;
    assert_false(egress_gcra_try(&g, 10, &retry));
    assert_int_equal(retry, 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(egress_throttle_parse_accepts_every_period_unit),
        cmocka_unit_test(egress_throttle_parse_units_are_case_insensitive),
        cmocka_unit_test(egress_throttle_parse_strips_limit_separators),
        cmocka_unit_test(egress_throttle_parse_applies_period_count),
        cmocka_unit_test(egress_throttle_parse_reads_local_and_max_burst),
        cmocka_unit_test(egress_throttle_parse_rejects_invalid_specs),
        cmocka_unit_test(egress_throttle_parse_tolerates_missing_error_buffer),
        cmocka_unit_test(egress_throttle_format_gives_canonical_text),
        cmocka_unit_test(
            egress_throttle_format_reports_short_buffer_and_bad_spec),
        cmocka_unit_test(egress_connection_limit_parse_accepts_kumomta_forms),
        cmocka_unit_test(egress_connection_limit_parse_rejects_bad_values),
        cmocka_unit_test(
            egress_gcra_allows_burst_of_limit_then_paces_at_emission),
        cmocka_unit_test(egress_gcra_retry_after_is_rounded_up_to_whole_ms),
        cmocka_unit_test(egress_gcra_long_idle_restores_full_burst),
        cmocka_unit_test(egress_gcra_max_burst_limits_instant_use),
        cmocka_unit_test(egress_gcra_slow_rate_over_long_period),
        cmocka_unit_test(egress_gcra_very_high_rate_still_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
