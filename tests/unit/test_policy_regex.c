/* test_policy_regex.c - kumo.regex.compile and its methods (captures with
 * numbers and names, is_match, find, find_all, replace with $N/$name/${}/$$,
 * replace_all, replacen, split), kumo.regex.escape, and bad patterns and
 * arguments reported by name. */
#include "test_policy_fx.h"

/* ---- Tests ---- */

static void
regex_captures_by_number_and_name(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx, "local re = kumo.regex.compile "
               "\"'(?<title>[^']+)'\\\\s+\\\\((\\\\d{4})\\\\)\"\n"
               "local c = re:captures \"Film: 'Metropolis' (1927).\"\n"
               "assert(c[0] == \"'Metropolis' (1927)\")\n"
               "assert(c[1] == 'Metropolis' and c.title == 'Metropolis')\n"
               "assert(c[2] == '1927')\n"
               "assert(re:captures 'nothing' == nil)\n"
               "local p = kumo.regex.compile '(?P<user>[^@]+)@(?P<dom>.+)'\n"
               "assert(p:captures('a@b.test').dom == 'b.test')\n");
}

static void
regex_match_find_and_find_all(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx, "local re = kumo.regex.compile 'o+'\n"
               "assert(re:is_match 'foo' and not re:is_match 'bar')\n"
               "assert(re:find 'fooood' == 'oooo')\n"
               "assert(re:find 'x' == nil)\n"
               "local all = kumo.regex.compile('\\\\b\\\\w{4}\\\\b'):find_all "
               "'this is what they said'\n"
               "assert(kumo.json_encode(all) == "
               "'[\"this\",\"what\",\"they\",\"said\"]')\n"
               "local empty = kumo.regex.compile('x*'):find_all 'ab'\n"
               "assert(#empty == 3, 'empty matches advance')\n"
               "assert(kumo.regex.compile('é+'):find 'caféé' == 'éé')\n");
}

static void
regex_replace_expands_groups(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx,
           "local re = kumo.regex.compile "
           "'(?P<last>[^,\\\\s]+),\\\\s+(?P<first>\\\\S+)'\n"
           "assert(re:replace('Hopper, Grace', '$first $last') == 'Grace "
           "Hopper')\n"
           "assert(re:replace('Hopper, Grace', '${2}_$1') == 'Grace_Hopper')\n"
           "assert(re:replace('Hopper, Grace', '$$1 $nope.') == '$1 .')\n"
           "local d = kumo.regex.compile '[^01]+'\n"
           "assert(d:replace('1078910', '') == '1010')\n"
           "assert(d:replace_all('1a0b1c', '-') == '1-0-1-')\n"
           "assert(d:replacen('1a0b1c', 2, '-') == '1-0-1c')\n"
           "assert(d:replacen('1a0b1c', 0, '-') == '1-0-1-')\n"
           "assert(d:replace('0101', 'x') == '0101')\n");
}

static void
regex_split_and_escape(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(
        fx,
        "local re = kumo.regex.compile '[ \\\\t]+'\n"
        "local parts = re:split 'a b \\t  c\\td    e'\n"
        "assert(kumo.json_encode(parts) == '[\"a\",\"b\",\"c\",\"d\",\"e\"]')\n"
        "local lit = kumo.regex.escape 'a.b*c(d)'\n"
        "assert(lit == 'a\\\\.b\\\\*c\\\\(d\\\\)', lit)\n"
        "assert(kumo.regex.compile(lit):is_match 'xa.b*c(d)y')\n"
        "assert(not kumo.regex.compile(lit):is_match 'aXbbc(d)')\n");
}

static void
regex_bad_pattern_and_arguments_are_named(void **state)
{
    struct pfx *fx = *state;

    pfx_fails(fx, "kumo.regex.compile '(unclosed'\n",
              "kumo.regex.compile: bad pattern at offset 9: missing closing "
              "parenthesis");
    pfx_fails(fx, "kumo.regex.compile 'a'.is_match(nil, 'x')\n",
              "bad argument #1 to 'is_match' (kumo.Regex expected, got nil)");
    pfx_fails(fx, "kumo.regex.compile('a'):replacen('x', -1, 'y')\n",
              "bad argument #2 to 'replacen' (limit must not be negative)");
    pfx_fails(fx, "kumo.regex.compile('a'):find({})\n",
              "bad argument #1 to 'find' (string expected, got table)");
}

static void
regex_set_map_gives_the_value_of_a_matching_pattern(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx, "local map = kumo.regex_set_map.new {\n"
               "  hello = 'hello', bye = 'bye', later = 'bye',\n"
               "  ['Good day'] = 'hello',\n"
               "  ['4\\\\.2\\\\.2 .* over quota'] = 500,\n"
               "}\n"
               "assert(map['hello there'] == 'hello')\n"
               "assert(map['goodbye'] == 'bye')\n"
               "assert(map['see you later'] == 'bye')\n"
               "assert(map['Good day to you'] == 'hello')\n"
               "assert(map['452 4.2.2 mailbox over quota'] == 500)\n"
               "assert(map['not.set'] == nil)\n"
               "assert(map[42] == nil)\n"
               "local many = {}\n"
               "for i = 1, 40 do many['^k' .. i .. '$'] = i end\n"
               "local big = kumo.regex_set_map.new(many)\n"
               "assert(big.k17 == 17 and big.k40 == 40)\n");
    pfx_fails(fx, "local m = kumo.regex_set_map.new { a = 1 }\nm.b = 2\n",
              "kumo.regex_set_map: the map cannot be changed");
    pfx_fails(fx, "kumo.regex_set_map.new { ['('] = 1 }\n",
              "kumo.regex_set_map.new: bad pattern '(' at offset 1");
    pfx_fails(
        fx, "kumo.regex_set_map.new { 'x' }\n",
        "kumo.regex_set_map.new: keys are patterns (strings), got number");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(regex_captures_by_number_and_name,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(regex_match_find_and_find_all,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(regex_replace_expands_groups, pfx_setup,
                                        pfx_teardown),
        cmocka_unit_test_setup_teardown(regex_split_and_escape, pfx_setup,
                                        pfx_teardown),
        cmocka_unit_test_setup_teardown(
            regex_bad_pattern_and_arguments_are_named, pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(
            regex_set_map_gives_the_value_of_a_matching_pattern, pfx_setup,
            pfx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
