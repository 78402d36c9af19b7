/* test_smtp_server_parse.c - command verbs, MAIL FROM / RCPT TO paths and
 * parameters, UTF-8 validation, base64, and CIDR parsing and matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "base/km.h"
#include "smtp_server_int.h"

/* ---- Helpers ---- */

static enum smtp_server_verb
verb_of(const char *line, size_t *args)
{
    return smtp_server_parse_verb(line, strlen(line), args);
}

/* Parse MAIL or RCPT arguments and check the address: want NULL means a
 * syntax error is expected. */
static void
expect_path(bool is_mail, const char *args, bool utf8, const char *want)
{
    struct smtp_server_path p;
    const char *why = NULL;
    int rv = is_mail
                 ? smtp_server_parse_mail(args, strlen(args), &p, &why)
                 : smtp_server_parse_rcpt(args, strlen(args), utf8, &p, &why);

    if (want == NULL) {
        assert_int_equal(rv, KM_EINVAL);
        assert_non_null(why);
        return;
    }
    assert_int_equal(rv, 0);
    assert_string_equal(p.addr, want);
    smtp_server_path_fini(&p);
}

static void
expect_mail(const char *args, const char *want)
{
    expect_path(true, args, false, want);
}

static void
expect_rcpt(const char *args, bool utf8, const char *want)
{
    expect_path(false, args, utf8, want);
}

/* Parse MAIL arguments into *p (its addr freed); false on error. */
static bool
mail_params(const char *args, struct smtp_server_path *p)
{
    const char *why = NULL;

    if (smtp_server_parse_mail(args, strlen(args), p, &why) != 0) {
        return false;
    }
    smtp_server_path_fini(p);
    return true;
}

static bool
cidr_match(const char *cidr, const char *ip)
{
    struct km_cidr c;
    uint8_t a[16];
    int fam = strchr(ip, ':') != NULL ? AF_INET6 : AF_INET;

    assert_int_equal(km_cidr_parse(cidr, &c), 0);
    assert_int_equal(inet_pton(fam, ip, a), 1);
    return km_cidr_contains(&c, fam, a);
}

static bool
cidr_ok(const char *cidr)
{
    struct km_cidr c;
    return km_cidr_parse(cidr, &c) == 0;
}

/* ---- Tests ---- */

static void
verbs_recognised_case_insensitively(void **state)
{
    size_t args;

    (void)state;
    assert_int_equal(verb_of("ehlo example.com", &args), SMTP_VERB_EHLO);
    assert_int_equal(args, 5);
    assert_int_equal(verb_of("MaIl FROM:<a@b>", &args), SMTP_VERB_MAIL);
    assert_int_equal(verb_of("RCPT TO:<a@b>", &args), SMTP_VERB_RCPT);
    assert_int_equal(verb_of("data", &args), SMTP_VERB_DATA);
    assert_int_equal(args, 4);
    assert_int_equal(verb_of("StartTLS", &args), SMTP_VERB_STARTTLS);
    assert_int_equal(verb_of("AUTH PLAIN xyz", &args), SMTP_VERB_AUTH);
    assert_int_equal(verb_of("QUIT", &args), SMTP_VERB_QUIT);
    assert_int_equal(verb_of("vrfy x", &args), SMTP_VERB_VRFY);
    assert_int_equal(verb_of("LHLO x", &args), SMTP_VERB_LHLO);
    assert_int_equal(verb_of("DATAX", &args), SMTP_VERB_UNKNOWN);
    assert_int_equal(verb_of("", &args), SMTP_VERB_UNKNOWN);
    assert_int_equal(verb_of("BDAT 10", &args), SMTP_VERB_UNKNOWN);
}

static void
mail_accepts_null_and_plain_paths(void **state)
{
    (void)state;
    expect_mail("FROM:<>", "");
    expect_mail("FROM:<user@example.com>", "user@example.com");
    expect_mail("from:<User.Name+tag@Sub.Example.COM>",
                "User.Name+tag@Sub.Example.COM");
    expect_mail("FROM: <user@example.com>", "user@example.com");
    expect_mail("FROM:user@example.com", "user@example.com");
}

static void
mail_accepts_quoted_local_part_and_literals(void **state)
{
    (void)state;
    expect_mail("FROM:<\"john doe\"@example.com>", "\"john doe\"@example.com");
    expect_mail("FROM:<\"a\\\"b\"@example.com>", "\"a\\\"b\"@example.com");
    expect_mail("FROM:<u@[192.0.2.1]>", "u@[192.0.2.1]");
    expect_mail("FROM:<u@[IPv6:2001:db8::1]>", "u@[IPv6:2001:db8::1]");
}

static void
mail_drops_source_route(void **state)
{
    (void)state;
    expect_mail("FROM:<@a.example,@b.example:u@c.example>", "u@c.example");
    expect_mail("FROM:<@a.example u@c.example>", NULL);
}

static void
mail_parses_size_body_and_smtputf8(void **state)
{
    struct smtp_server_path p;

    (void)state;
    assert_true(mail_params(
        "FROM:<u@example.com> SIZE=12345 BODY=8BITMIME SMTPUTF8", &p));
    assert_true(p.has_size);
    assert_int_equal(p.size, 12345);
    assert_true(p.body_8bit);
    assert_true(p.smtputf8);
    assert_true(mail_params("FROM:<u@example.com> BODY=7BIT X-FOO=bar", &p));
    assert_false(p.body_8bit);
    assert_false(p.has_size);
    expect_mail("FROM:<u@example.com> SIZE=abc", NULL);
    expect_mail("FROM:<u@example.com> BODY=BINARYMIME", NULL);
    expect_mail("FROM:<u@example.com> SMTPUTF8=yes", NULL);
    expect_mail("FROM:<u@example.com> =x", NULL);
}

static void
mail_utf8_local_part_needs_smtputf8(void **state)
{
    (void)state;
    expect_mail("FROM:<j\xc3\xb6rg@example.com> SMTPUTF8",
                "j\xc3\xb6rg@example.com");
    expect_mail("FROM:<u@b\xc3\xbc"
                "cher.example> SMTPUTF8",
                "u@b\xc3\xbc"
                "cher.example");
    expect_mail("FROM:<j\xc3\xb6rg@example.com>", NULL);
    expect_rcpt("TO:<j\xc3\xb6rg@example.com>", true,
                "j\xc3\xb6rg@example.com");
    expect_rcpt("TO:<j\xc3\xb6rg@example.com>", false, NULL);
}

static void
mail_rejects_bad_syntax(void **state)
{
    (void)state;
    expect_mail("FROM:", NULL);
    expect_mail("FROM:<", NULL);
    expect_mail("FROM:<user>", NULL);
    expect_mail("FROM:<user@>", NULL);
    expect_mail("FROM:<@example.com>", NULL);
    expect_mail("FROM:<.user@example.com>", NULL);
    expect_mail("FROM:<us..er@example.com>", NULL);
    expect_mail("FROM:<user@-example.com>", NULL);
    expect_mail("FROM:<user@example..com>", NULL);
    expect_mail("FROM:<user@example.com", NULL);
    expect_mail("FROM:<user@example.com>junk", NULL);
    expect_mail("FROM:<us er@example.com>", NULL);
    expect_mail("FROM:<u@[300.1.1.1]>", NULL);
    expect_mail("FROM:<u@[IPv6:zz::1]>", NULL);
    expect_mail("TO:<u@example.com>", NULL);
}

static void
rcpt_rejects_port_in_domain(void **state)
{
    (void)state;
    expect_rcpt("TO:<user@example.com:25>", false, NULL);
    expect_rcpt("TO:<user@example.com>", false, "user@example.com");
}

static void
rcpt_accepts_postmaster_and_rejects_null(void **state)
{
    (void)state;
    expect_rcpt("TO:<Postmaster>", false, "Postmaster");
    expect_rcpt("to:<postmaster@example.com>", false, "postmaster@example.com");
    expect_rcpt("TO:<>", false, NULL);
    expect_rcpt("FROM:<a@b.c>", false, NULL);
}

static void
utf8_validation_rejects_malformed(void **state)
{
    (void)state;
    assert_true(smtp_server_utf8_valid("plain", 5));
    assert_true(
        smtp_server_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
    assert_false(smtp_server_utf8_valid("\xff", 1));
    assert_false(smtp_server_utf8_valid("\xc3", 1));
    assert_false(smtp_server_utf8_valid("\xc0\xaf", 2));     /* overlong */
    assert_false(smtp_server_utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
    assert_false(smtp_server_utf8_valid("\xf4\x90\x80\x80", 4));
}

static void
base64_round_trips_and_rejects_garbage(void **state)
{
    struct buf b = BUF_INIT;
    const char plain[] = "\0user\0pass";

    (void)state;
    smtp_server_b64_encode(plain, sizeof(plain) - 1, &b);
    assert_string_equal(buf_cstr(&b), "AHVzZXIAcGFzcw==");
    buf_reset(&b);
    assert_int_equal(smtp_server_b64_decode("AHVzZXIAcGFzcw==", 16, &b), 0);
    assert_int_equal(b.len, sizeof(plain) - 1);
    assert_memory_equal(b.data, plain, b.len);
    buf_reset(&b);
    assert_int_equal(smtp_server_b64_decode("AHVzZXIAcGFzcw=", 15, &b),
                     KM_EINVAL);
    assert_int_equal(smtp_server_b64_decode("AH*zZXIA", 8, &b), KM_EINVAL);
    assert_int_equal(smtp_server_b64_decode("A=VzZXIA", 8, &b), KM_EINVAL);
    buf_fini(&b);
}

static void
cidr_parses_strictly(void **state)
{
    (void)state;
    assert_true(cidr_ok("127.0.0.1"));
    assert_true(cidr_ok("10.0.0.0/8"));
    assert_true(cidr_ok("0.0.0.0/0"));
    assert_true(cidr_ok("::1"));
    assert_true(cidr_ok("2001:db8::/32"));
    assert_true(cidr_ok("::/0"));
    assert_false(cidr_ok("10.0.0.1/8")); /* host bits set */
    assert_false(cidr_ok("10.0.0.0/33"));
    assert_false(cidr_ok("10.0.0/8"));
    assert_false(cidr_ok("2001:db8::1/32"));
    assert_false(cidr_ok("::/129"));
    assert_false(cidr_ok("example.com"));
    assert_false(cidr_ok("10.0.0.0/"));
    assert_false(cidr_ok("10.0.0.0/-1"));
    assert_false(cidr_ok(""));
}

static void
cidr_matches_v4_and_v6(void **state)
{
    (void)state;
    assert_true(cidr_match("127.0.0.1", "127.0.0.1"));
    assert_false(cidr_match("127.0.0.1", "127.0.0.2"));
    assert_true(cidr_match("10.0.0.0/8", "10.255.1.2"));
    assert_false(cidr_match("10.0.0.0/8", "11.0.0.1"));
    assert_true(cidr_match("192.168.4.0/22", "192.168.7.255"));
    assert_false(cidr_match("192.168.4.0/22", "192.168.8.0"));
    assert_true(cidr_match("0.0.0.0/0", "203.0.113.9"));
    assert_true(cidr_match("::1", "::1"));
    assert_false(cidr_match("::1", "::2"));
    assert_true(cidr_match("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(cidr_match("2001:db8::/32", "2001:db9::1"));
    assert_false(cidr_match("10.0.0.0/8", "::1"));
    /* An IPv4-mapped peer matches IPv4 blocks. */
    assert_true(cidr_match("127.0.0.1", "::ffff:127.0.0.1"));
}

static void
listen_addresses_parse(void **state)
{
    struct sockaddr_storage ss;

    (void)state;
    assert_int_equal(smtp_server_parse_listen("127.0.0.1:2025", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 2025);
    assert_int_equal(smtp_server_parse_listen("[::1]:25", &ss), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(smtp_server_parse_listen("0:25", &ss), 0);
    assert_int_equal(smtp_server_parse_listen("127.0.0.1", &ss), KM_EINVAL);
    assert_int_equal(smtp_server_parse_listen("::1:25", &ss), KM_EINVAL);
    assert_int_equal(smtp_server_parse_listen("1.2.3.4:70000", &ss), KM_EINVAL);
    assert_int_equal(smtp_server_parse_listen("host.example:25", &ss),
                     KM_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(verbs_recognised_case_insensitively),
        cmocka_unit_test(mail_accepts_null_and_plain_paths),
        cmocka_unit_test(mail_accepts_quoted_local_part_and_literals),
        cmocka_unit_test(mail_drops_source_route),
        cmocka_unit_test(mail_parses_size_body_and_smtputf8),
        cmocka_unit_test(mail_utf8_local_part_needs_smtputf8),
        cmocka_unit_test(mail_rejects_bad_syntax),
        cmocka_unit_test(rcpt_rejects_port_in_domain),
        cmocka_unit_test(rcpt_accepts_postmaster_and_rejects_null),
        cmocka_unit_test(utf8_validation_rejects_malformed),
        cmocka_unit_test(base64_round_trips_and_rejects_garbage),
        cmocka_unit_test(cidr_parses_strictly),
        cmocka_unit_test(cidr_matches_v4_and_v6),
        cmocka_unit_test(listen_addresses_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
