/* test_smtp_client_reply.c - the SMTP client's reply parser: single and
 * multi-line replies, the same input split at every byte, enhanced status
 * codes present, absent and repeated on continuation lines, garbage and
 * over-long lines, and the EHLO extension parser. Pure, no loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/km.h"
#include "smtp_client.h"
#include "smtp_client_int.h"

/* ---- Fixture ---- */

static int
setup(void **state)
{
    struct smtp_client_reply *p = test_calloc(1, sizeof(*p));

    smtp_client_reply_init(p);
    *state = p;
    return 0;
}

static int
teardown(void **state)
{
    struct smtp_client_reply *p = *state;

    smtp_client_reply_fini(p);
    test_free(p);
    return 0;
}

/* ---- Helpers ---- */

/* Feed all of s at once; expects exactly one complete reply. */
static void
parse_one(struct smtp_client_reply *p, const char *s,
          struct smtp_client_response *r)
{
    size_t used = 0;

    assert_int_equal(smtp_client_reply_feed(p, s, strlen(s), &used, r), 1);
    assert_int_equal(used, strlen(s));
}

/* ---- Tests ---- */

static void
single_line_reply_with_enhanced_code(void **state)
{
    struct smtp_client_response r;

    parse_one(*state, "250 2.0.0 OK queued\r\n", &r);
    assert_int_equal(r.code, 250);
    assert_int_equal(r.enh_class, 2);
    assert_int_equal(r.enh_subject, 0);
    assert_int_equal(r.enh_detail, 0);
    assert_string_equal(r.content, "OK queued");
    assert_null(r.command);
    smtp_client_response_fini(&r);
}

static void
single_line_reply_without_enhanced_code(void **state)
{
    struct smtp_client_response r;

    parse_one(*state, "220 mx.test ESMTP ready\r\n", &r);
    assert_int_equal(r.code, 220);
    assert_int_equal(r.enh_class, 0);
    assert_string_equal(r.content, "mx.test ESMTP ready");
    smtp_client_response_fini(&r);
}

static void
bare_code_line_is_a_final_reply(void **state)
{
    struct smtp_client_response r;

    parse_one(*state, "354\r\n", &r);
    assert_int_equal(r.code, 354);
    assert_string_equal(r.content, "");
    smtp_client_response_fini(&r);
}

static void
class_three_or_overlong_enhanced_codes_stay_in_text(void **state)
{
    struct smtp_client_response r;

    parse_one(*state, "250 3.0.0 w00t\r\n", &r);
    assert_int_equal(r.enh_class, 0);
    assert_string_equal(r.content, "3.0.0 w00t");
    smtp_client_response_fini(&r);
    parse_one(*state, "250 2.0.0.1 w00t\r\n", &r);
    assert_int_equal(r.enh_class, 0);
    assert_string_equal(r.content, "2.0.0.1 w00t");
    smtp_client_response_fini(&r);
}

static void
multi_line_reply_joins_lines_with_newline(void **state)
{
    struct smtp_client_response r;

    parse_one(*state,
              "550-5.1.1 The email account that you tried\r\n"
              "550-5.1.1 to reach does not exist.\r\n"
              "550 5.1.1 Please check.\r\n",
              &r);
    assert_int_equal(r.code, 550);
    assert_int_equal(r.enh_class, 5);
    assert_int_equal(r.enh_subject, 1);
    assert_int_equal(r.enh_detail, 1);
    assert_string_equal(r.content, "The email account that you tried\n"
                                   "to reach does not exist.\n"
                                   "Please check.");
    smtp_client_response_fini(&r);
}

static void
ehlo_reply_parses_extensions(void **state)
{
    struct smtp_client_response r;
    struct smtp_client_caps caps;

    parse_one(*state,
              "250-mx.test Hello\r\n250-PIPELINING\r\n250-SIZE 1048576\r\n"
              "250-8bitmime\r\n250-AUTH LOGIN PLAIN\r\n250-STARTTLS\r\n"
              "250 SMTPUTF8\r\n",
              &r);
    smtp_client_caps_parse(r.content, &caps);
    assert_true(caps.pipelining);
    assert_true(caps.size);
    assert_int_equal(caps.size_limit, 1048576);
    assert_true(caps.eightbitmime);
    assert_true(caps.auth_plain);
    assert_true(caps.starttls);
    assert_true(caps.smtputf8);
    assert_false(caps.enhancedstatuscodes);
    smtp_client_response_fini(&r);
}

static void
reply_split_at_every_byte_parses_the_same(void **state)
{
    static const char in[] = "250-first 2.0.0 line\r\n"
                             "250-second\r\n"
                             "250 2.1.0 last\r\n"
                             "421 4.3.2 bye\r\n";
    struct smtp_client_reply *p = *state;

    for (size_t split = 1; split < sizeof(in) - 1; split++) {
        struct smtp_client_response r;
        size_t off = 0, used = 0, got = 0;
        int codes[2] = {0, 0};
        /* First chunk [0, split), then one byte at a time. */
        while (off < sizeof(in) - 1) {
            size_t n = off == 0 ? split : 1;
            if (off + n > sizeof(in) - 1) {
                n = sizeof(in) - 1 - off;
            }
            while (n > 0) {
                int rv = smtp_client_reply_feed(p, in + off, n, &used, &r);
                assert_true(rv == 0 || rv == 1);
                off += used;
                n -= used;
                if (rv == 1) {
                    assert_true(got < 2);
                    codes[got++] = r.code;
                    if (r.code == 250) {
                        assert_string_equal(r.content,
                                            "first 2.0.0 line\nsecond\n"
                                            "2.1.0 last");
                        assert_int_equal(r.enh_class, 0);
                    } else {
                        assert_string_equal(r.content, "bye");
                        assert_int_equal(r.enh_class, 4);
                    }
                    smtp_client_response_fini(&r);
                }
            }
        }
        assert_int_equal(got, 2);
        assert_int_equal(codes[0], 250);
        assert_int_equal(codes[1], 421);
    }
}

static void
feed_stops_after_the_first_complete_reply(void **state)
{
    static const char in[] = "250 ok\r\n354 go\r\n";
    struct smtp_client_response r;
    size_t used = 0;

    assert_int_equal(smtp_client_reply_feed(*state, in, strlen(in), &used, &r),
                     1);
    assert_int_equal(used, 8);
    assert_int_equal(r.code, 250);
    smtp_client_response_fini(&r);
}

static void
bare_lf_line_end_is_accepted(void **state)
{
    struct smtp_client_response r;

    parse_one(*state, "250-a\n250 b\n", &r);
    assert_string_equal(r.content, "a\nb");
    smtp_client_response_fini(&r);
}

static void
non_digit_code_is_a_protocol_error(void **state)
{
    struct smtp_client_response r;
    size_t used;
    const char *in = "25x ok\r\n";

    assert_int_equal(smtp_client_reply_feed(*state, in, strlen(in), &used, &r),
                     KM_EPROTO);
    assert_non_null(
        strstr(((struct smtp_client_reply *)*state)->err, "malformed"));
}

static void
http_response_is_a_protocol_error(void **state)
{
    struct smtp_client_response r;
    size_t used;
    const char *in = "HTTP/1.1 400 Bad Request\r\n";

    assert_int_equal(smtp_client_reply_feed(*state, in, strlen(in), &used, &r),
                     KM_EPROTO);
}

static void
code_changing_within_reply_is_a_protocol_error(void **state)
{
    struct smtp_client_response r;
    size_t used;
    const char *in = "250-one\r\n251 two\r\n";

    assert_int_equal(smtp_client_reply_feed(*state, in, strlen(in), &used, &r),
                     KM_EPROTO);
}

static void
bad_separator_is_a_protocol_error(void **state)
{
    struct smtp_client_response r;
    size_t used;
    const char *in = "250_ok\r\n";

    assert_int_equal(smtp_client_reply_feed(*state, in, strlen(in), &used, &r),
                     KM_EPROTO);
}

static void
over_long_line_is_rejected_before_its_end(void **state)
{
    struct smtp_client_response r;
    size_t used;
    char *in = malloc(SMTP_CLIENT_REPLY_LINE_MAX + 100);
    int rv = 0;

    memcpy(in, "250 ", 4);
    memset(in + 4, 'a', SMTP_CLIENT_REPLY_LINE_MAX + 96);
    /* No line end at all: the parser must not keep buffering. */
    for (size_t off = 0; off < SMTP_CLIENT_REPLY_LINE_MAX + 100 && rv == 0;
         off += 100) {
        rv = smtp_client_reply_feed(*state, in + off, 100, &used, &r);
    }
    assert_int_equal(rv, KM_E2BIG);
    free(in);
}

static void
line_at_the_limit_is_accepted(void **state)
{
    struct smtp_client_response r;
    size_t n = SMTP_CLIENT_REPLY_LINE_MAX + 2;
    char *in = malloc(n);

    memcpy(in, "250 ", 4);
    memset(in + 4, 'b', SMTP_CLIENT_REPLY_LINE_MAX - 4);
    memcpy(in + SMTP_CLIENT_REPLY_LINE_MAX, "\r\n", 2);
    {
        size_t used = 0;
        assert_int_equal(smtp_client_reply_feed(*state, in, n, &used, &r), 1);
    }
    assert_int_equal(strlen(r.content), SMTP_CLIENT_REPLY_LINE_MAX - 4);
    smtp_client_response_fini(&r);
    free(in);
}

static void
huge_multi_line_reply_is_rejected(void **state)
{
    struct smtp_client_response r;
    char line[1100];
    int rv = 0;
    size_t used;

    memcpy(line, "250-", 4);
    memset(line + 4, 'c', 1000);
    memcpy(line + 1004, "\r\n", 2);
    for (int i = 0; i < 100 && rv == 0; i++) {
        rv = smtp_client_reply_feed(*state, line, 1006, &used, &r);
    }
    assert_int_equal(rv, KM_E2BIG);
}

static void
nul_byte_is_a_protocol_error(void **state)
{
    struct smtp_client_response r;
    size_t used;
    static const char in[] = "250 a\0b\r\n";

    assert_int_equal(
        smtp_client_reply_feed(*state, in, sizeof(in) - 1, &used, &r),
        KM_EPROTO);
}

static void
invalid_utf8_becomes_question_marks(void **state)
{
    struct smtp_client_response r;

    parse_one(*state, "250 caf\xe9 ok \xc3\xa9\r\n", &r);
    assert_string_equal(r.content, "caf? ok \xc3\xa9");
    smtp_client_response_fini(&r);
}

static void
response_line_is_single_line_like_kumomta(void **state)
{
    struct smtp_client_response r;
    char *line;

    parse_one(*state, "550-5.1.1 no such\r\n550 5.1.1 user\r\n", &r);
    line = smtp_client_response_line(&r);
    assert_string_equal(line, "550 5.1.1 no such user");
    free(line);
    smtp_client_response_fini(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(single_line_reply_with_enhanced_code,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(single_line_reply_without_enhanced_code,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(bare_code_line_is_a_final_reply, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            class_three_or_overlong_enhanced_codes_stay_in_text, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            multi_line_reply_joins_lines_with_newline, setup, teardown),
        cmocka_unit_test_setup_teardown(ehlo_reply_parses_extensions, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            reply_split_at_every_byte_parses_the_same, setup, teardown),
        cmocka_unit_test_setup_teardown(
            feed_stops_after_the_first_complete_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(bare_lf_line_end_is_accepted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(non_digit_code_is_a_protocol_error,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(http_response_is_a_protocol_error,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            code_changing_within_reply_is_a_protocol_error, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_separator_is_a_protocol_error,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            over_long_line_is_rejected_before_its_end, setup, teardown),
        cmocka_unit_test_setup_teardown(line_at_the_limit_is_accepted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(huge_multi_line_reply_is_rejected,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(nul_byte_is_a_protocol_error, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(invalid_utf8_becomes_question_marks,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            response_line_is_single_line_like_kumomta, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
