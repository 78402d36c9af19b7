/* test_policy_maps.c - kumo.domain_map.new (exact keys, wildcards, the most
 * specific wildcard, case and trailing dots, removal) and
 * kumo.cidr.make_map (longest prefix, IPv6, address forms with ports and
 * brackets, bad keys named). */
#include "test_policy_fx.h"

/* ---- Tests ---- */

static void
domain_map_exact_keys_beat_wildcards(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx, "local m = kumo.domain_map.new {\n"
               "  ['*.example.test'] = 'wild',\n"
               "  ['example.test'] = 'apex',\n"
               "}\n"
               "assert(m['example.test'] == 'apex')\n"
               "assert(m['a.example.test'] == 'wild')\n"
               "assert(m['b.a.example.test'] == 'wild')\n"
               "assert(m['other.test'] == nil)\n"
               "m['a.example.test'] = 'exact'\n"
               "assert(m['a.example.test'] == 'exact')\n"
               "assert(m['b.a.example.test'] == 'wild')\n"
               "m['*.a.example.test'] = 'deeper'\n"
               "assert(m['b.a.example.test'] == 'deeper')\n"
               "assert(m['A.Example.Test.'] == 'exact')\n"
               "m['a.example.test'] = nil\n"
               "assert(m['a.example.test'] == 'wild')\n"
               "local e = kumo.domain_map.new()\n"
               "assert(e['x.test'] == nil)\n"
               "e['x.test'] = { queue = 'q' }\n"
               "assert(e['x.test'].queue == 'q')\n");
}

static void
domain_map_bad_keys_are_errors(void **state)
{
    struct pfx *fx = *state;

    pfx_fails(fx, "local m = kumo.domain_map.new()\nlocal x = m[42]\n",
              "kumo.domain_map: keys are domain names (strings), got number");
    pfx_fails(fx, "kumo.domain_map.new(5)\n",
              "bad argument #1 to 'new' (table expected, got number)");
}

static void
cidr_map_longest_prefix_wins(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx, "local m = kumo.cidr.make_map {\n"
               "  ['10.0.0.0/8'] = 'big',\n"
               "  ['10.1.0.0/16'] = 'small',\n"
               "  ['127.0.0.1'] = 'lo',\n"
               "  ['2001:db8::/32'] = 'v6',\n"
               "}\n"
               "assert(m['10.2.3.4'] == 'big')\n"
               "assert(m['10.1.3.4'] == 'small')\n"
               "assert(m['127.0.0.1'] == 'lo')\n"
               "assert(m['127.0.0.1:25'] == 'lo')\n"
               "assert(m['[127.0.0.1]'] == 'lo')\n"
               "assert(m['[127.0.0.1]:2525'] == 'lo')\n"
               "assert(m['2001:db8::1'] == 'v6')\n"
               "assert(m['[2001:db8::1]:25'] == 'v6')\n"
               "assert(m['[IPv6:2001:db8::1]'] == 'v6')\n"
               "assert(m['192.0.2.1'] == nil)\n"
               "assert(m['not.an.ip'] == nil)\n"
               "m['10.1.0.0/16'] = nil\n"
               "assert(m['10.1.3.4'] == 'big')\n"
               "m['10.1.0.0/16'] = 'again'\n"
               "assert(m['10.1.3.4'] == 'again')\n");
}

static void
cidr_map_bad_keys_are_errors(void **state)
{
    struct pfx *fx = *state;

    pfx_fails(fx, "kumo.cidr.make_map { ['10.0.0.1/8'] = 1 }\n",
              "kumo.cidr.make_map: '10.0.0.1/8' is not an IP address or CIDR "
              "block");
    pfx_fails(fx, "local m = kumo.cidr.make_map()\nm['mx.test'] = 1\n",
              "'mx.test' is not an IP address");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(domain_map_exact_keys_beat_wildcards,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(domain_map_bad_keys_are_errors,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(cidr_map_longest_prefix_wins, pfx_setup,
                                        pfx_teardown),
        cmocka_unit_test_setup_teardown(cidr_map_bad_keys_are_errors, pfx_setup,
                                        pfx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
