/* test_policy_string.c - kumo.string.*: literal splitting from either end
 * with limits, whitespace splitting, replace/replacen, prefix and suffix
 * tests, trimming, wrap at the soft and hard limits, and bad arguments
 * named. */
#include "test_policy_fx.h"

/* ---- Tests ---- */

static void
string_split_family_matches_kumomta_examples(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx,
           "local S, J = kumo.string, kumo.json_encode\n"
           "assert(J(S.split('Mary had a little lamb', ' ')) ==\n"
           "  '[\"Mary\",\"had\",\"a\",\"little\",\"lamb\"]')\n"
           "assert(J(S.splitn('Mary had a little lamb', 3, ' ')) ==\n"
           "  '[\"Mary\",\"had\",\"a little lamb\"]')\n"
           "assert(J(S.rsplit('a.b.c', '.')) == '[\"c\",\"b\",\"a\"]')\n"
           "assert(J(S.rsplitn('Mary had a little lamb', 3, ' ')) ==\n"
           "  '[\"lamb\",\"little\",\"Mary had a\"]')\n"
           "assert(J(S.split('a,,b', ',')) == '[\"a\",\"\",\"b\"]')\n"
           "assert(J(S.split('abc', '::')) == '[\"abc\"]')\n"
           "assert(J(S.split_whitespace('  a \\t b\\r\\nc ')) == "
           "'[\"a\",\"b\",\"c\"]')\n"
           "assert(J(S.split_ascii_whitespace('x  y')) == '[\"x\",\"y\"]')\n");
}

static void
string_replace_trim_and_affixes(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx, "local S = kumo.string\n"
               "assert(S.replace('a-b-c', '-', '+') == 'a+b+c')\n"
               "assert(S.replacen('foo foo 123 foo', 'foo', 'new', 2) == 'new "
               "new 123 foo')\n"
               "assert(S.replacen('foo', 'foo', 'x', 0) == 'foo')\n"
               "assert(S.starts_with('mx1.example.test', 'mx1.'))\n"
               "assert(not S.starts_with('mx', 'mx1.'))\n"
               "assert(S.ends_with('mx1.example.test', '.test'))\n"
               "assert(not S.ends_with('test', '.test'))\n"
               "assert(S.trim('  x y \\r\\n') == 'x y')\n"
               "assert(S.trim_start('  x ') == 'x ')\n"
               "assert(S.trim_end('  x ') == '  x')\n");
}

static void
string_wrap_breaks_at_soft_and_cuts_at_hard(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx,
           "local S = kumo.string\n"
           "assert(S.wrap 'hello' == 'hello')\n"
           "assert(S.wrap(string.rep('A', 200), 75, 100) ==\n"
           "  string.rep('A', 100) .. '\\r\\n\\t' .. string.rep('A', 100))\n"
           "assert(S.wrap(string.rep('hello there ', 10), 75, 100) ==\n"
           "  'hello there hello there hello there hello there hello there "
           "hello there\\r\\n'\n"
           "  .. '\\thello there hello there hello there hello there')\n");
}

static void
string_bad_arguments_are_named(void **state)
{
    struct pfx *fx = *state;

    pfx_fails(fx, "kumo.string.split('abc', '')\n",
              "bad argument #2 to 'split' (the pattern must not be empty)");
    pfx_fails(fx, "kumo.string.splitn('abc', 0, 'b')\n",
              "bad argument #2 to 'splitn' (limit must be at least 1)");
    pfx_fails(fx, "kumo.string.replacen('a', 'a', 'b', -1)\n",
              "bad argument #4 to 'replacen' (count must not be negative)");
    pfx_fails(fx, "kumo.string.trim(nil)\n",
              "bad argument #1 to 'trim' (string expected, got nil)");
    pfx_fails(fx, "kumo.string.wrap('x', 10, 5)\n",
              "bad argument #3 to 'wrap' (hard limit must be at least the "
              "soft one)");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            string_split_family_matches_kumomta_examples, pfx_setup,
            pfx_teardown),
        cmocka_unit_test_setup_teardown(string_replace_trim_and_affixes,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(
            string_wrap_breaks_at_soft_and_cuts_at_hard, pfx_setup,
            pfx_teardown),
        cmocka_unit_test_setup_teardown(string_bad_arguments_are_named,
                                        pfx_setup, pfx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
