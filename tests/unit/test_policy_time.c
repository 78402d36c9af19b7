/* test_policy_time.c - kumo.time.* (Time fields, formatting, parsing of
 * RFC 3339 and RFC 2822 with offsets, arithmetic with TimeDelta, bad input
 * named, sleep and start_timer refused by name) and kumo.uuid.* (versions
 * and variant bits, text forms, parse round trips, bad input). */
#include "test_policy_fx.h"

/* ---- Tests ---- */

static void
time_fields_and_formats(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx,
           "local t = kumo.time.from_unix_timestamp(1)\n"
           "assert(tostring(t) == '1970-01-01 00:00:01 UTC', tostring(t))\n"
           "assert(t.unix_timestamp == 1 and t.unix_timestamp_millis == 1000)\n"
           "assert(t.rfc3339 == '1970-01-01T00:00:01+00:00', t.rfc3339)\n"
           "assert(t.rfc2822 == 'Thu, 01 Jan 1970 00:00:01 +0000', t.rfc2822)\n"
           "local u = kumo.time.with_ymd_hms(2024, 2, 29, 13, 14, 15)\n"
           "assert(u.year == 2024 and u.month == 2 and u.day == 29)\n"
           "assert(u.hour == 13 and u.minute == 14 and u.second == 15)\n"
           "assert(u:format '%H:%M:%S' == '13:14:15')\n"
           "assert(kumo.time.from_unix_timestamp(1.25).rfc3339 ==\n"
           "  '1970-01-01T00:00:01.250+00:00')\n"
           "local now = kumo.time.now()\n"
           "assert(now.year >= 2024 and now.elapsed.seconds >= 0)\n"
           "assert(math.abs(kumo.time.epoch_millis() - "
           "now.unix_timestamp_millis) < 5000)\n"
           "assert(kumo.time.since_millis(kumo.time.epoch_millis() - 1000) >= "
           "1000)\n");
}

static void
time_parses_rfc3339_and_rfc2822_offsets(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(
        fx,
        "local a = kumo.time.parse_rfc3339 '2024-05-06T07:08:09Z'\n"
        "local b = kumo.time.parse_rfc3339 '2024-05-06T09:08:09+02:00'\n"
        "local c = kumo.time.parse_rfc2822 'Mon, 06 May 2024 03:08:09 -0400'\n"
        "local d = kumo.time.parse_rfc2822 '6 May 2024 07:08:09 GMT'\n"
        "assert(a == b and a == c and a == d)\n"
        "local f = kumo.time.parse_rfc3339 '2024-05-06T07:08:09.5Z'\n"
        "assert((f - a).milliseconds == 500)\n"
        "assert(a < f)\n");
    pfx_fails(fx, "kumo.time.parse_rfc3339 '2024-02-30T00:00:00Z'\n",
              "kumo.time.parse_rfc3339: '2024-02-30T00:00:00Z' is not an RFC "
              "3339 date and time");
    pfx_fails(fx, "kumo.time.parse_rfc2822 'yesterday'\n",
              "kumo.time.parse_rfc2822: 'yesterday' is not an RFC 2822");
    pfx_fails(fx, "kumo.time.with_ymd_hms(2023, 2, 29, 0, 0, 0)\n",
              "kumo.time.with_ymd_hms: not a valid UTC date and time");
}

static void
time_deltas_add_and_subtract(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(
        fx,
        "local d1 = kumo.time.parse_duration(20)\n"
        "local d2 = kumo.time.parse_duration '10 seconds'\n"
        "assert((d2 - d1).seconds == -10)\n"
        "assert((d1 + d2).milliseconds == 30000)\n"
        "assert(kumo.time.parse_duration '5m' == "
        "kumo.time.parse_duration(300))\n"
        "assert(tostring(kumo.time.parse_duration '5m') == '5m')\n"
        "assert(kumo.time.parse_duration(3661.5).human == '1h 1m 1s 500ms')\n"
        "local t = kumo.time.from_unix_timestamp(100)\n"
        "assert((t + d1).unix_timestamp == 120)\n"
        "assert((t - d1).unix_timestamp == 80)\n"
        "assert(((t + d1) - t) == d1)\n");
    pfx_fails(fx, "kumo.time.parse_duration 'soon'\n",
              "kumo.time.parse_duration: expected a number of seconds or a "
              "duration such as \"5 minutes\", got soon");
}

static void
time_sleep_and_start_timer_are_refused_by_name(void **state)
{
    struct pfx *fx = *state;

    pfx_fails(fx, "kumo.time.sleep(1)\n",
              "kumo.time.sleep is not supported by kumod: policy handlers "
              "run to completion on the event loop and cannot yield");
    pfx_fails(fx, "kumo.time.start_timer 'x'\n",
              "kumo.time.start_timer is not supported by kumod");
}

static void
uuid_versions_forms_and_parse(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(
        fx,
        "local u = kumo.uuid.parse '69994630-3e27-11ef-91fc-cc28aa0a5c5a'\n"
        "assert(tostring(u) == '69994630-3e27-11ef-91fc-cc28aa0a5c5a')\n"
        "assert(u.simple == '699946303e2711ef91fccc28aa0a5c5a')\n"
        "assert(u.braced == '{69994630-3e27-11ef-91fc-cc28aa0a5c5a}')\n"
        "assert(u.urn == 'urn:uuid:69994630-3e27-11ef-91fc-cc28aa0a5c5a')\n"
        "assert(u.bytes == "
        "'\\x69\\x99\\x46\\x30\\x3e\\x27\\x11\\xef\\x91\\xfc\\xcc\\x28\\xaa\\x0"
        "a\\x5c\\x5a')\n"
        "assert(kumo.encode.base64url_nopad_encode(u.bytes) == "
        "'aZlGMD4nEe-R_MwoqgpcWg')\n"
        "assert(kumo.uuid.parse(u.simple) == u and kumo.uuid.parse(u.urn) == "
        "u)\n"
        "assert(kumo.uuid.parse(u.braced) == u)\n"
        "for v, f in pairs { [1] = kumo.uuid.new_v1, [4] = kumo.uuid.new_v4,\n"
        "                    [6] = kumo.uuid.new_v6, [7] = kumo.uuid.new_v7 } "
        "do\n"
        "  local x = f()\n"
        "  assert(x.hyphenated:sub(15, 15) == tostring(v), x.hyphenated)\n"
        "  assert(('89ab'):find(x.hyphenated:sub(20, 20), 1, true))\n"
        "  assert(f() ~= x)\n"
        "end\n"
        "local a, b = kumo.uuid.new_v7(), kumo.uuid.new_v7()\n"
        "assert(a.simple:sub(1, 8) <= b.simple:sub(1, 8))\n");
    pfx_fails(fx, "kumo.uuid.parse 'not-a-uuid'\n",
              "kumo.uuid.parse: 'not-a-uuid' is not a UUID");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(time_fields_and_formats, pfx_setup,
                                        pfx_teardown),
        cmocka_unit_test_setup_teardown(time_parses_rfc3339_and_rfc2822_offsets,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(time_deltas_add_and_subtract, pfx_setup,
                                        pfx_teardown),
        cmocka_unit_test_setup_teardown(
            time_sleep_and_start_timer_are_refused_by_name, pfx_setup,
            pfx_teardown),
        cmocka_unit_test_setup_teardown(uuid_versions_forms_and_parse,
                                        pfx_setup, pfx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
