/* test_smtp_server_data.c - the DATA decoder: terminator found across every
 * chunk split, dot-unstuffing, bare LF under Deny/Allow/Fix, size and line
 * length limits, and bytes after the terminator left for the next
 * command. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "smtp_server_int.h"

/* ---- Fixture ---- */

struct fixture {
    struct smtp_server_data d;
};

static int
setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));
    smtp_server_data_init(&f->d, 1024, 998, SMTP_SERVER_LE_DENY);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    smtp_server_data_fini(&f->d);
    test_free(f);
    return 0;
}

/* ---- Helpers ---- */

/* Feed s in one go into a decoder with the given settings; returns the
 * consumed count. */
static size_t
feed_all(struct smtp_server_data *d, const char *s)
{
    return smtp_server_data_feed(d, s, strlen(s));
}

static void
reinit(struct smtp_server_data *d, uint64_t max, size_t line,
       enum smtp_server_line_endings mode)
{
    smtp_server_data_fini(d);
    smtp_server_data_init(d, max, line, mode);
}

/* ---- Tests ---- */

static void
data_terminator_found_across_every_chunk_split(void **state)
{
    struct fixture *f = *state;
    const char *in = "Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n";
    const char *want = "Subject: hi\r\n\r\n.dot\r\nbody\r\n";
    size_t n = strlen(in);
    size_t end = strlen(in) - strlen("QUIT\r\n");

    for (size_t a = 0; a <= n; a++) {
        for (size_t b = a; b <= n; b++) {
            size_t used = 0;
            reinit(&f->d, 1024, 998, SMTP_SERVER_LE_DENY);
            used += smtp_server_data_feed(&f->d, in, a);
            if (!f->d.done) {
                used += smtp_server_data_feed(&f->d, in + used, b - used);
            }
            if (!f->d.done) {
                used += smtp_server_data_feed(&f->d, in + used, n - used);
            }
            assert_true(f->d.done);
            assert_int_equal(used, end);
            assert_int_equal(smtp_server_data_result(&f->d),
                             SMTP_SERVER_DATA_OK);
            assert_int_equal(f->d.body.len, strlen(want));
            assert_memory_equal(f->d.body.data, want, strlen(want));
        }
    }
}

static void
data_byte_by_byte_matches_whole(void **state)
{
    struct fixture *f = *state;
    const char *in = "a\r\n.\r\n";

    for (size_t i = 0; i < strlen(in); i++) {
        assert_false(f->d.done);
        assert_int_equal(smtp_server_data_feed(&f->d, in + i, 1), 1);
    }
    assert_true(f->d.done);
    assert_string_equal(buf_cstr(&f->d.body), "a\r\n");
}

static void
data_empty_message_is_just_a_dot(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(feed_all(&f->d, ".\r\n"), 3);
    assert_true(f->d.done);
    assert_int_equal(f->d.body.len, 0);
}

static void
data_dot_unstuffing_removes_one_leading_dot(void **state)
{
    struct fixture *f = *state;

    feed_all(&f->d, "..\r\n...x\r\n.y\r\nmid.dle\r\n.\r\n");
    assert_true(f->d.done);
    assert_string_equal(buf_cstr(&f->d.body), ".\r\n..x\r\ny\r\nmid.dle\r\n");
}

static void
data_not_done_without_terminator(void **state)
{
    struct fixture *f = *state;

    feed_all(&f->d, "line\r\n.\r");
    assert_false(f->d.done);
    feed_all(&f->d, "\n");
    assert_true(f->d.done);
}

static void
data_bare_lf_dot_does_not_end_message(void **state)
{
    struct fixture *f = *state;

    reinit(&f->d, 1024, 998, SMTP_SERVER_LE_ALLOW);
    feed_all(&f->d, "a\n.\nb\n.\r\nc\r\n");
    assert_false(f->d.done);
    feed_all(&f->d, ".\r\n");
    assert_true(f->d.done);
    assert_string_equal(buf_cstr(&f->d.body), "a\n.\nb\n.\r\nc\r\n");
}

static void
data_bare_lf_denied_under_deny(void **state)
{
    struct fixture *f = *state;

    feed_all(&f->d, "a\nb\r\n.\r\n");
    assert_true(f->d.done);
    assert_int_equal(smtp_server_data_result(&f->d), SMTP_SERVER_DATA_BARE_LF);
}

static void
data_bare_cr_denied_under_deny(void **state)
{
    struct fixture *f = *state;

    feed_all(&f->d, "a\rb\r\n.\r\n");
    assert_true(f->d.done);
    assert_int_equal(smtp_server_data_result(&f->d), SMTP_SERVER_DATA_BARE_LF);
}

static void
data_bare_lf_kept_under_allow(void **state)
{
    struct fixture *f = *state;

    reinit(&f->d, 1024, 998, SMTP_SERVER_LE_ALLOW);
    feed_all(&f->d, "a\nb\r\n.\r\n");
    assert_int_equal(smtp_server_data_result(&f->d), SMTP_SERVER_DATA_OK);
    assert_string_equal(buf_cstr(&f->d.body), "a\nb\r\n");
}

static void
data_bare_lf_fixed_under_fix(void **state)
{
    struct fixture *f = *state;

    reinit(&f->d, 1024, 998, SMTP_SERVER_LE_FIX);
    feed_all(&f->d, "a\nb\rc\r\n.\r\n");
    assert_int_equal(smtp_server_data_result(&f->d), SMTP_SERVER_DATA_OK);
    assert_string_equal(buf_cstr(&f->d.body), "a\r\nb\r\nc\r\n");
}

static void
data_size_limit_reports_too_big_and_consumes_to_dot(void **state)
{
    struct fixture *f = *state;
    const char *in = "0123456789\r\n0123456789\r\n.\r\nNOOP\r\n";

    reinit(&f->d, 15, 998, SMTP_SERVER_LE_DENY);
    assert_int_equal(feed_all(&f->d, in), strlen(in) - 6);
    assert_true(f->d.done);
    assert_int_equal(smtp_server_data_result(&f->d), SMTP_SERVER_DATA_TOO_BIG);
    assert_int_equal(f->d.body.len, 0);
}

static void
data_exact_size_limit_is_accepted(void **state)
{
    struct fixture *f = *state;

    reinit(&f->d, 5, 998, SMTP_SERVER_LE_DENY);
    feed_all(&f->d, "abc\r\n.\r\n");
    assert_int_equal(smtp_server_data_result(&f->d), SMTP_SERVER_DATA_OK);
}

static void
data_line_too_long_reported(void **state)
{
    struct fixture *f = *state;

    reinit(&f->d, 1024, 4, SMTP_SERVER_LE_DENY);
    feed_all(&f->d, "abcd\r\nabcde\r\n.\r\n");
    assert_true(f->d.done);
    assert_int_equal(smtp_server_data_result(&f->d), SMTP_SERVER_DATA_TOO_LONG);
}

static void
data_line_at_limit_accepted(void **state)
{
    struct fixture *f = *state;

    reinit(&f->d, 1024, 4, SMTP_SERVER_LE_DENY);
    feed_all(&f->d, "abcd\r\n..bcd\r\n.\r\n");
    assert_int_equal(smtp_server_data_result(&f->d), SMTP_SERVER_DATA_OK);
}

static void
data_too_big_wins_over_bare_lf(void **state)
{
    struct fixture *f = *state;

    reinit(&f->d, 4, 998, SMTP_SERVER_LE_DENY);
    feed_all(&f->d, "a\nbcdefgh\r\n.\r\n");
    assert_int_equal(smtp_server_data_result(&f->d), SMTP_SERVER_DATA_TOO_BIG);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            data_terminator_found_across_every_chunk_split, setup, teardown),
        cmocka_unit_test_setup_teardown(data_byte_by_byte_matches_whole, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(data_empty_message_is_just_a_dot, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            data_dot_unstuffing_removes_one_leading_dot, setup, teardown),
        cmocka_unit_test_setup_teardown(data_not_done_without_terminator, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(data_bare_lf_dot_does_not_end_message,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(data_bare_lf_denied_under_deny, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(data_bare_cr_denied_under_deny, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(data_bare_lf_kept_under_allow, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(data_bare_lf_fixed_under_fix, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            data_size_limit_reports_too_big_and_consumes_to_dot, setup,
            teardown),
        cmocka_unit_test_setup_teardown(data_exact_size_limit_is_accepted,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(data_line_too_long_reported, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(data_line_at_limit_accepted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(data_too_big_wins_over_bare_lf, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
