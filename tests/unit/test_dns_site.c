/* test_dns_site.c - unit tests of the dns module's pure name handling:
 * KumoMTA site names (the vectors are KumoMTA's own, from the tests of
 * factor_names and MailExchanger in crates/dns-resolver/src/lib.rs),
 * mx_list site names, domain literals and server specs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/km.h"
#include "dns.h"

/* Fixture: none, the functions are pure. */

/* Helpers */

#define DNS_TEST_N(a) (sizeof(a) / sizeof((a)[0]))

static void
dns_test_site_is(const char *const *hosts, size_t n, const char *want)
{
    char *got = dns_site_name(hosts, n);

    assert_string_equal(got, want);
    free(got);
}

/* Tests */

static void
dns_site_name_factors_differing_first_labels(void **state)
{
    static const char *const hosts[] = {
        "mta5.am0.yahoodns.net",
        "mta6.am0.yahoodns.net",
        "mta7.am0.yahoodns.net",
    };

    (void)state;
    dns_test_site_is(hosts, DNS_TEST_N(hosts),
                     "(mta5|mta6|mta7).am0.yahoodns.net");
}

static void
dns_site_name_lowercases_names(void **state)
{
    static const char *const hosts[] = {
        "mta5.AM0.yahoodns.net",
        "mta6.am0.yAHOodns.net",
        "mta7.am0.yahoodns.net",
    };

    (void)state;
    dns_test_site_is(hosts, DNS_TEST_N(hosts),
                     "(mta5|mta6|mta7).am0.yahoodns.net");
}

static void
dns_site_name_marks_missing_labels_with_question_mark(void **state)
{
    static const char *const hosts[] = {
        "gmail-smtp-in.l.google.com",      "alt1.gmail-smtp-in.l.google.com",
        "alt2.gmail-smtp-in.l.google.com", "alt3.gmail-smtp-in.l.google.com",
        "alt4.gmail-smtp-in.l.google.com",
    };

    (void)state;
    dns_test_site_is(hosts, DNS_TEST_N(hosts),
                     "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com");
}

static void
dns_site_name_keeps_first_appearance_order_and_ignores_trailing_dots(
    void **state)
{
    static const char *const a[] = {
        "example-com.mail.protection.outlook.com.",
        "mx-biz.mail.am0.yahoodns.net.",
        "mx-biz.mail.am0.yahoodns.net.",
    };
    static const char *const b[] = {
        "mx-biz.mail.am0.yahoodns.net.",
        "mx-biz.mail.am0.yahoodns.net.",
        "example-com.mail.protection.outlook.com.",
    };

    (void)state;
    dns_test_site_is(
        a, DNS_TEST_N(a),
        "(example-com|mx-biz).mail.(protection|am0).(outlook|yahoodns).(com|"
        "net)");
    dns_test_site_is(
        b, DNS_TEST_N(b),
        "(mx-biz|example-com).mail.(am0|protection).(yahoodns|outlook).(net|"
        "com)");
}

static void
dns_site_name_of_one_host_is_that_host(void **state)
{
    static const char *const hosts[] = {"do.havedane.net."};

    (void)state;
    dns_test_site_is(hosts, 1, "do.havedane.net");
}

static void
dns_site_name_of_null_mx_is_empty(void **state)
{
    static const char *const hosts[] = {"."};

    (void)state;
    dns_test_site_is(hosts, 1, "");
    dns_test_site_is(NULL, 0, "");
}

static void
dns_site_name_skips_malformed_names(void **state)
{
    static const char *const hosts[] = {"a..example", "mx.example",
                                        "-bad label.example"};

    (void)state;
    dns_test_site_is(hosts, DNS_TEST_N(hosts), "mx.example");
}

static void
dns_site_name_mx_list_joins_entries_as_given(void **state)
{
    static const char *const hosts[] = {"smtp.Relay.example:2525",
                                        "[127.0.0.1]"};
    char *got;

    (void)state;
    got = dns_site_name_mx_list(hosts, DNS_TEST_N(hosts));
    assert_string_equal(got, "mx_list:smtp.Relay.example:2525,[127.0.0.1]");
    free(got);
    got = dns_site_name_mx_list(hosts, 1);
    assert_string_equal(got, "mx_list:smtp.Relay.example:2525");
    free(got);
}

static void
dns_parse_domain_literal_gives_canonical_ip(void **state)
{
    struct dns_addr a;

    (void)state;
    assert_int_equal(dns_parse_domain_literal("[127.0.0.1]", &a), 0);
    assert_int_equal(a.family, AF_INET);
    assert_string_equal(a.text, "127.0.0.1");
    assert_int_equal(((struct sockaddr_in *)&a.sa)->sin_family, AF_INET);

    assert_int_equal(dns_parse_domain_literal("[IPv6:::1]", &a), 0);
    assert_int_equal(a.family, AF_INET6);
    assert_string_equal(a.text, "::1");

    assert_int_equal(dns_parse_domain_literal("[ipv6:0:0:0:0:0:0:0:1]", &a), 0);
    assert_string_equal(a.text, "::1");

    /* KumoMTA accepts an untagged IPv6 literal too. */
    assert_int_equal(dns_parse_domain_literal("[::1]", &a), 0);
    assert_string_equal(a.text, "::1");
}

static void
dns_parse_domain_literal_rejects_malformed(void **state)
{
    struct dns_addr a;

    (void)state;
    assert_int_equal(dns_parse_domain_literal("[127.0.0.1", &a), KM_EINVAL);
    assert_int_equal(dns_parse_domain_literal("127.0.0.1", &a), KM_EINVAL);
    assert_int_equal(dns_parse_domain_literal("[]", &a), KM_EINVAL);
    assert_int_equal(dns_parse_domain_literal("[IPv6:127.0.0.1]", &a),
                     KM_EINVAL);
    assert_int_equal(dns_parse_domain_literal("[example.com]", &a), KM_EINVAL);
    assert_true(dns_is_domain_literal("[example.com]"));
    assert_false(dns_is_domain_literal("example.com"));
}

static void
dns_check_servers_names_the_bad_one(void **state)
{
    static const char *const good[] = {"127.0.0.1", "127.0.0.1:5353",
                                       "[::1]:53", "::1", "[::1]"};
    static const char *const bad[] = {"127.0.0.1", "127.0.0.1:99999"};
    static const char *const bad2[] = {"localhost"};
    static const char *const bad3[] = {"[::1]x"};
    size_t idx = 99;

    (void)state;
    assert_int_equal(dns_check_servers(good, DNS_TEST_N(good), &idx), 0);
    assert_int_equal(dns_check_servers(bad, DNS_TEST_N(bad), &idx), KM_ECONFIG);
    assert_int_equal(idx, 1);
    assert_int_equal(dns_check_servers(bad2, 1, &idx), KM_ECONFIG);
    assert_int_equal(idx, 0);
    assert_int_equal(dns_check_servers(bad3, 1, &idx), KM_ECONFIG);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dns_site_name_factors_differing_first_labels),
        cmocka_unit_test(dns_site_name_lowercases_names),
        cmocka_unit_test(dns_site_name_marks_missing_labels_with_question_mark),
        cmocka_unit_test(
            dns_site_name_keeps_first_appearance_order_and_ignores_trailing_dots),
        cmocka_unit_test(dns_site_name_of_one_host_is_that_host),
        cmocka_unit_test(dns_site_name_of_null_mx_is_empty),
        cmocka_unit_test(dns_site_name_skips_malformed_names),
        cmocka_unit_test(dns_site_name_mx_list_joins_entries_as_given),
        cmocka_unit_test(dns_parse_domain_literal_gives_canonical_ip),
        cmocka_unit_test(dns_parse_domain_literal_rejects_malformed),
        cmocka_unit_test(dns_check_servers_names_the_bad_one),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
