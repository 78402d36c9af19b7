/* test_queue_retry.c - unit tests of the retry schedule: exponential
 * backoff with KumoMTA's jitter, the max_retry_interval cap, saturation for
 * huge attempt counts, expiry boundaries and the start-up recompute
 * (KumoMTA's spool_in_delay case). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "queue_retry.h"

#define S  1000ULL
#define M  (60 * S)
#define H  (60 * M)
#define DY (24 * H)

/* Fixture: none; every test works on local values. */

/* Helpers */

/* A deterministic spread of 64-bit "random" numbers (splitmix64). */
static uint64_t
queue_retry_test_rand(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Tests */

static void
queue_retry_delay_doubles_from_retry_interval(void **state)
{
    static const uint64_t expect_s[] = {5, 10, 20, 40, 80};
    uint64_t seed = 1;

    (void)state;
    for (uint32_t attempts = 1; attempts <= 5; attempts++) {
        uint64_t base = expect_s[attempts - 1] * S;

        for (int i = 0; i < 1000; i++) {
            uint64_t d = queue_retry_delay_ms(5 * S, 0, attempts,
                                              queue_retry_test_rand(&seed));

            /* Within the [0, 50%) the integration test allows; with a 5 s
             * interval KumoMTA's whole-second jitter is always 0. */
            assert_true(d >= base && d < base + base / 2);
            assert_int_equal(d, base);
        }
    }
}

static void
queue_retry_attempts_zero_counts_as_first(void **state)
{
    (void)state;
    assert_int_equal(queue_retry_delay_ms(5 * S, 0, 0, 0), 5 * S);
    assert_int_equal(queue_retry_delay_ms(0, 0, 1, 0), 1);
    assert_int_equal(queue_retry_delay_ms(0, 0, 3, 0), 4);
}

static void
queue_retry_jitter_matches_kumomta_form(void **state)
{
    uint64_t seed = 42;
    bool saw_neg = false, saw_pos = false, saw_zero = false;

    (void)state;
    /* Default 20 minutes: span min(60 s, 1200 s / 20) = 60 s, centred,
     * truncated toward zero to whole seconds: -30 s .. +29 s. */
    assert_int_equal(queue_retry_delay_ms(20 * M, 0, 1, 0), 20 * M - 30 * S);
    assert_int_equal(queue_retry_delay_ms(20 * M, 0, 1, 59999),
                     20 * M + 29 * S);
    assert_int_equal(queue_retry_delay_ms(20 * M, 0, 1, 30000), 20 * M);
    assert_int_equal(queue_retry_delay_ms(20 * M, 0, 1, 30999), 20 * M);
    assert_int_equal(queue_retry_delay_ms(20 * M, 0, 1, 29001), 20 * M);
    assert_int_equal(queue_retry_delay_ms(20 * M, 0, 1, 29000), 20 * M - S);
    for (int i = 0; i < 2000; i++) {
        uint64_t d =
            queue_retry_delay_ms(20 * M, 0, 2, queue_retry_test_rand(&seed));
        int64_t j = (int64_t)d - (int64_t)(40 * M);

        assert_true(j >= -30 * (int64_t)S && j <= 29 * (int64_t)S);
        assert_int_equal(j % 1000, 0);
        saw_neg |= j < 0;
        saw_pos |= j > 0;
        saw_zero |= j == 0;
    }
    assert_true(saw_neg && saw_pos && saw_zero);
    /* Span is retry_interval / 20, capped at one minute even for 1 day. */
    for (int i = 0; i < 200; i++) {
        uint64_t d =
            queue_retry_delay_ms(DY, 0, 1, queue_retry_test_rand(&seed));

        assert_true(d >= DY - 30 * S && d <= DY + 29 * S);
    }
    /* 100 s: span 5 s, jitter -2 s .. +2 s after truncation. */
    for (int i = 0; i < 200; i++) {
        uint64_t d =
            queue_retry_delay_ms(100 * S, 0, 1, queue_retry_test_rand(&seed));

        assert_true(d >= 98 * S && d <= 102 * S);
    }
}

static void
queue_retry_delay_is_capped_by_max_retry_interval(void **state)
{
    (void)state;
    assert_int_equal(queue_retry_delay_ms(5 * S, 30 * S, 1, 7), 5 * S);
    assert_int_equal(queue_retry_delay_ms(5 * S, 30 * S, 3, 7), 20 * S);
    assert_int_equal(queue_retry_delay_ms(5 * S, 30 * S, 4, 7), 30 * S);
    assert_int_equal(queue_retry_delay_ms(5 * S, 30 * S, 200, 7), 30 * S);
    assert_int_equal(queue_retry_delay_ms(5 * S, 30 * S, UINT32_MAX, 7),
                     30 * S);
    /* max_retry_interval == retry_interval turns the backoff off. */
    assert_int_equal(queue_retry_delay_ms(10 * S, 10 * S, 9, 7), 10 * S);
    /* A cap smaller than the jitter never yields a negative delay. */
    assert_int_equal(queue_retry_delay_ms(20 * M, 10 * S, 5, 0), 0);
}

static void
queue_retry_huge_attempts_saturate_without_overflow(void **state)
{
    struct queue_retry_policy p = {.retry_interval_ms = 5 * S,
                                   .max_age_ms = 7 * DY};
    uint64_t prev = 0;

    (void)state;
    for (uint32_t a = 1; a <= 200; a++) {
        uint64_t d = queue_retry_delay_ms(5 * S, 0, a, 12345);

        assert_true(d >= prev);
        prev = d;
    }
    assert_int_equal(queue_retry_delay_ms(5 * S, 0, 200, 12345), UINT64_MAX);
    assert_int_equal(queue_retry_delay_ms(20 * M, 0, 200, 59999), UINT64_MAX);
    assert_int_equal(queue_retry_next_due_ms(1700000000000LL, &p, 200, 1),
                     INT64_MAX);
    assert_true(queue_retry_expired(
        1700000000000LL, p.max_age_ms,
        queue_retry_next_due_ms(1700000000000LL, &p, 200, 1)));
}

static void
queue_retry_next_due_adds_delay_to_now(void **state)
{
    struct queue_retry_policy p = {.retry_interval_ms = 5 * S,
                                   .max_retry_interval_ms = 60 * S,
                                   .max_age_ms = 7 * DY};
    int64_t now = 1700000000123LL;

    (void)state;
    assert_int_equal(queue_retry_next_due_ms(now, &p, 1, 9), now + 5000);
    assert_int_equal(queue_retry_next_due_ms(now, &p, 3, 9), now + 20000);
    assert_int_equal(queue_retry_next_due_ms(now, &p, 9, 9), now + 60000);
    assert_int_equal(queue_retry_next_due_ms(-10000, &p, 1, 9), -5000);
}

static void
queue_retry_expired_only_past_max_age(void **state)
{
    int64_t created = 1700000000000LL;
    uint64_t max_age = 7 * DY;

    (void)state;
    assert_false(queue_retry_expired(created, max_age, created));
    assert_false(queue_retry_expired(created, max_age, created - 5));
    assert_false(
        queue_retry_expired(created, max_age, created + (int64_t)max_age - 1));
    /* Exactly max_age is still allowed (KumoMTA: delayed_age > max_age). */
    assert_false(
        queue_retry_expired(created, max_age, created + (int64_t)max_age));
    assert_true(
        queue_retry_expired(created, max_age, created + (int64_t)max_age + 1));
    assert_true(queue_retry_expired(created, 0, created + 1));
    assert_true(queue_retry_expired(INT64_MIN, 10, INT64_MAX));
    assert_false(queue_retry_expired(INT64_MIN, UINT64_MAX, INT64_MAX));
}

static void
queue_retry_expired_at_uses_per_message_expiry(void **state)
{
    (void)state;
    assert_false(queue_retry_expired_at(5000, 4999));
    /* Equal expires: KumoMTA checks next_due >= expires. */
    assert_true(queue_retry_expired_at(5000, 5000));
    assert_true(queue_retry_expired_at(5000, 5001));
}

static void
queue_retry_schedule_expires_on_the_attempt_past_max_age(void **state)
{
    struct queue_retry_policy p = {.retry_interval_ms = 5 * S,
                                   .max_age_ms = 100 * S};
    int64_t created = 0;
    int64_t now = 0;
    uint32_t attempts = 0;

    (void)state;
    /* Tries at 0, 5, 15, 35, 75 s; the next would be at 155 s > 100 s. */
    for (;;) {
        int64_t due = queue_retry_next_due_ms(now, &p, ++attempts, 0);

        if (queue_retry_expired(created, p.max_age_ms, due)) {
            break;
        }
        now = due;
    }
    assert_int_equal(attempts, 5);
    assert_int_equal(now, 75 * (int64_t)S);
}

static void
queue_retry_infer_attempts_follows_unjittered_schedule(void **state)
{
    struct queue_retry_policy p = {.retry_interval_ms = 2 * S,
                                   .max_age_ms = 256 * S};
    struct queue_retry_policy capped = {.retry_interval_ms = 2 * S,
                                        .max_retry_interval_ms = 8 * S,
                                        .max_age_ms = DY};
    struct queue_retry_policy tiny = {.retry_interval_ms = 1,
                                      .max_retry_interval_ms = 1,
                                      .max_age_ms = UINT64_MAX};

    (void)state;
    assert_int_equal(queue_retry_infer_attempts(&p, 0), 0);
    assert_int_equal(queue_retry_infer_attempts(&p, 1999), 0);
    assert_int_equal(queue_retry_infer_attempts(&p, 2 * S), 1);
    assert_int_equal(queue_retry_infer_attempts(&p, 6 * S), 2);
    assert_int_equal(queue_retry_infer_attempts(&p, 13 * S), 2);
    assert_int_equal(queue_retry_infer_attempts(&p, 14 * S), 3);
    assert_int_equal(queue_retry_infer_attempts(&p, 126 * S), 6);
    /* Capped: 2, 4, 8, 8, 8 ... -> cumulative 2, 6, 14, 22, 30. */
    assert_int_equal(queue_retry_infer_attempts(&capped, 29 * S), 4);
    assert_int_equal(queue_retry_infer_attempts(&capped, 30 * S), 5);
    assert_int_equal(queue_retry_infer_attempts(&capped, 14 * S + 80 * S), 13);
    assert_int_equal(queue_retry_infer_attempts(&tiny, 1000), 1000);
    assert_int_equal(queue_retry_infer_attempts(&tiny, 1ULL << 40), UINT32_MAX);
    assert_int_equal(queue_retry_infer_attempts(&p, UINT64_MAX), 53);
}

static void
queue_retry_restart_matches_kumomta_spool_in(void **state)
{
    /* KumoMTA's spool_in_delay: retry 2 s, max_age 256 s, ages 2, 6, 10 ...
     * give num_attempts 1, 2, 2, 3 ... and a delay of 0 every time. */
    struct queue_retry_policy p = {.retry_interval_ms = 2 * S,
                                   .max_age_ms = 256 * S};
    int64_t created = 1700000000000LL;
    uint64_t age;

    (void)state;
    for (age = 2;; age += 4) {
        int64_t now = created + (int64_t)(age * S);
        uint32_t n = 99;
        int64_t due = 0;

        if (!queue_retry_restart(&p, created, now, &n, &due)) {
            break;
        }
        assert_int_equal(n, queue_retry_infer_attempts(&p, age * S));
        assert_int_equal(due, now);
        if (age == 2) {
            assert_int_equal(n, 1);
        } else if (age == 30) {
            assert_int_equal(n, 4);
        } else if (age == 126) {
            assert_int_equal(n, 6);
        } else if (age == 254) {
            assert_int_equal(n, 7);
        }
    }
    assert_int_equal(age, 258);
}

static void
queue_retry_restart_expires_at_max_age(void **state)
{
    struct queue_retry_policy p = {.retry_interval_ms = 20 * M,
                                   .max_age_ms = 7 * DY};
    int64_t created = 1700000000000LL;
    uint32_t n = 0;
    int64_t due = 0;

    (void)state;
    assert_true(
        queue_retry_restart(&p, created, created + 7 * DY - 1, &n, &due));
    assert_int_equal(due, created + 7 * DY - 1);
    assert_false(queue_retry_restart(&p, created, created + 7 * DY, &n, &due));
    /* A creation time in the future (clock skew) is age 0: due now. */
    assert_true(queue_retry_restart(&p, created, created - 5000, &n, &due));
    assert_int_equal(n, 0);
    assert_int_equal(due, created - 5000);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queue_retry_delay_doubles_from_retry_interval),
        cmocka_unit_test(queue_retry_attempts_zero_counts_as_first),
        cmocka_unit_test(queue_retry_jitter_matches_kumomta_form),
        cmocka_unit_test(queue_retry_delay_is_capped_by_max_retry_interval),
        cmocka_unit_test(queue_retry_huge_attempts_saturate_without_overflow),
        cmocka_unit_test(queue_retry_next_due_adds_delay_to_now),
        cmocka_unit_test(queue_retry_expired_only_past_max_age),
        cmocka_unit_test(queue_retry_expired_at_uses_per_message_expiry),
        cmocka_unit_test(
            queue_retry_schedule_expires_on_the_attempt_past_max_age),
        cmocka_unit_test(
            queue_retry_infer_attempts_follows_unjittered_schedule),
        cmocka_unit_test(queue_retry_restart_matches_kumomta_spool_in),
        cmocka_unit_test(queue_retry_restart_expires_at_max_age),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
