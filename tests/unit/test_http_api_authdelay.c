/* test_http_api_authdelay.c - unit tests of the per-peer pacing of failed
 * HTTP Basic attempts: the gap doubles per failure up to its cap, a
 * success clears it, other peers are never slowed, parallel attempts
 * queue and are refused beyond the queue bound, IPv6 counts per /64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "http_api_authdelay.h"

/* Fixture */

static int
authdelay_setup(void **state)
{
    *state = http_api_authdelay_new();
    return 0;
}

static int
authdelay_teardown(void **state)
{
    http_api_authdelay_free(*state);
    return 0;
}

/* Helpers */

static uint64_t
authdelay_wait(struct http_api_authdelay *d, const char *peer, uint64_t now)
{
    uint64_t w = 0;

    assert_true(http_api_authdelay_admit(d, peer, now, &w));
    return w;
}

/* Tests */

static void
authdelay_gap_doubles_per_failure_up_to_the_cap(void **state)
{
    struct http_api_authdelay *d = *state;
    uint64_t now = 1000000, want = HTTP_API_AUTHDELAY_BASE_MS;

    assert_int_equal(authdelay_wait(d, "192.0.2.1", now), 0);
    for (int i = 0; i < 12; i++) {
        http_api_authdelay_failed(d, "192.0.2.1", now);
        assert_int_equal(authdelay_wait(d, "192.0.2.1", now), want);
        now += want; /* the held attempt runs, and fails again */
        want = want * 2 > HTTP_API_AUTHDELAY_MAX_MS ? HTTP_API_AUTHDELAY_MAX_MS
                                                    : want * 2;
    }
    assert_int_equal(http_api_authdelay_failures(d, "192.0.2.1"), 12);
}

static void
authdelay_success_clears_and_other_peers_are_not_slowed(void **state)
{
    struct http_api_authdelay *d = *state;

    for (int i = 0; i < 5; i++) {
        http_api_authdelay_failed(d, "192.0.2.1", 5000);
    }
    assert_int_equal(authdelay_wait(d, "192.0.2.2", 5000), 0);
    assert_true(authdelay_wait(d, "192.0.2.1", 5000) > 0);
    http_api_authdelay_succeeded(d, "192.0.2.1");
    assert_int_equal(http_api_authdelay_failures(d, "192.0.2.1"), 0);
    assert_int_equal(authdelay_wait(d, "192.0.2.1", 5000), 0);
}

static void
authdelay_parallel_attempts_queue_then_are_refused(void **state)
{
    struct http_api_authdelay *d = *state;
    uint64_t prev = 0, w = 0;
    int admitted = 0;

    for (int i = 0; i < 8; i++) {
        http_api_authdelay_failed(d, "192.0.2.9", 0);
    }
    /* Gap now 10 s: the queue of 60 s holds a bounded number. */
    while (http_api_authdelay_admit(d, "192.0.2.9", 0, &w)) {
        assert_true(w > prev || admitted == 0);
        prev = w;
        admitted++;
        assert_true(admitted < 100);
    }
    assert_true(admitted >= 2);
    assert_true(prev <= HTTP_API_AUTHDELAY_QUEUE_MS);
}

static void
authdelay_ipv6_counts_per_64(void **state)
{
    struct http_api_authdelay *d = *state;

    http_api_authdelay_failed(d, "2001:db8:1:2::1", 0);
    assert_int_equal(http_api_authdelay_failures(d, "2001:db8:1:2:ffff::9"), 1);
    assert_int_equal(http_api_authdelay_failures(d, "2001:db8:1:3::1"), 0);
}

static void
authdelay_quiet_peer_is_forgotten(void **state)
{
    struct http_api_authdelay *d = *state;

    http_api_authdelay_failed(d, "192.0.2.5", 0);
    http_api_authdelay_failed(d, "192.0.2.5", 0);
    assert_int_equal(
        authdelay_wait(d, "192.0.2.5", HTTP_API_AUTHDELAY_FORGET_MS + 1), 0);
    assert_int_equal(http_api_authdelay_failures(d, "192.0.2.5"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            authdelay_gap_doubles_per_failure_up_to_the_cap, authdelay_setup,
            authdelay_teardown),
        cmocka_unit_test_setup_teardown(
            authdelay_success_clears_and_other_peers_are_not_slowed,
            authdelay_setup, authdelay_teardown),
        cmocka_unit_test_setup_teardown(
            authdelay_parallel_attempts_queue_then_are_refused, authdelay_setup,
            authdelay_teardown),
        cmocka_unit_test_setup_teardown(authdelay_ipv6_counts_per_64,
                                        authdelay_setup, authdelay_teardown),
        cmocka_unit_test_setup_teardown(authdelay_quiet_peer_is_forgotten,
                                        authdelay_setup, authdelay_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
