/* test_policy_psl.c - kumo.string.psl_* against Debian's Public Suffix
 * List: registrable domains and suffixes (including multi-label suffixes
 * and unlisted TLDs), the is_known variants, case, and bad arguments. */
#include "test_policy_fx.h"

/* ---- Tests ---- */

static void
psl_domain_and_suffix(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx,
           "local S = kumo.string\n"
           "assert(S.psl_domain 'www.example.com' == 'example.com')\n"
           "assert(S.psl_suffix 'www.example.com' == 'com')\n"
           "assert(S.psl_domain 'a.b.example.co.uk' == 'example.co.uk')\n"
           "assert(S.psl_suffix 'a.b.example.co.uk' == 'co.uk')\n"
           "assert(S.psl_domain 'WWW.Example.COM' == 'example.com')\n"
           "assert(S.psl_domain 'com' == nil)\n"
           "assert(S.psl_domain 'mail.domain.invalid' == 'domain.invalid')\n");
}

static void
psl_is_known_tells_listed_from_derived(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx, "local S = kumo.string\n"
               "assert(S.psl_domain_is_known 'www.example.com' == true)\n"
               "assert(S.psl_domain_is_known 'domain.invalid' == false)\n"
               "assert(S.psl_domain_is_known 'com' == false)\n"
               "assert(S.psl_suffix_is_known 'www.example.com' == true)\n"
               "assert(S.psl_suffix_is_known 'domain.invalid' == false)\n");
    pfx_fails(fx, "kumo.string.psl_domain(nil)\n",
              "bad argument #1 to 'psl_domain' (string expected, got nil)");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(psl_domain_and_suffix, pfx_setup,
                                        pfx_teardown),
        cmocka_unit_test_setup_teardown(psl_is_known_tells_listed_from_derived,
                                        pfx_setup, pfx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
