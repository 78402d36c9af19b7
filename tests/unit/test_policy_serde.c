/* test_policy_serde.c - kumo.serde.toml_parse/toml_load/toml_encode
 * (_pretty, _pretty_compact)
 * and json_load (with comments), and their older names under kumo; errors
 * name the function, the file and the line. */
#include "test_policy_fx.h"

/* ---- Tests ---- */

static void
toml_parse_gives_nested_tables_of_typed_values(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx, "local t = kumo.serde.toml_parse [=[\n"
               "title = 'routing'\n"
               "retries = 3\n"
               "ratio = 0.5\n"
               "on = true\n"
               "when = 1979-05-27T07:32:00Z\n"
               "[domains.'example.test']\n"
               "queue = 'sink'\n"
               "mx = ['a', 'b']\n"
               "[[pools]]\n"
               "name = 'p1'\n"
               "]=]\n"
               "assert(t.title == 'routing')\n"
               "assert(math.type(t.retries) == 'integer' and t.retries == 3)\n"
               "assert(t.ratio == 0.5 and t.on == true)\n"
               "assert(t.when == '1979-05-27T07:32:00Z', t.when)\n"
               "assert(t.domains['example.test'].queue == 'sink')\n"
               "assert(#t.domains['example.test'].mx == 2)\n"
               "assert(t.pools[1].name == 'p1')\n"
               "assert(kumo.toml_parse == kumo.serde.toml_parse)\n");
}

static void
toml_load_reads_a_file_and_reports_errors_with_its_line(void **state)
{
    struct pfx *fx = *state;
    char path[700], src[2048];

    pfx_write(fx, "good.toml", "[a]\nb = 'c'\n", path, sizeof(path));
    snprintf(src, sizeof(src),
             "local t = kumo.toml_load '%s'\n"
             "assert(t.a.b == 'c')\n"
             "assert(kumo.serde.toml_load('%s').a.b == 'c')\n",
             path, path);
    pfx_ok(fx, src);
    pfx_write(fx, "bad.toml", "[a]\nb = 'c'\nb = 'd'\n", path, sizeof(path));
    snprintf(src, sizeof(src), "kumo.toml_load '%s'\n", path);
    pfx_fails(fx, src, "kumo.serde.toml_load: ");
    pfx_fails(fx, src, "bad.toml:3:");
    snprintf(src, sizeof(src), "kumo.toml_load '%s/missing.toml'\n", fx->dir);
    pfx_fails(fx, src, "missing.toml: No such file or directory");
}

static void
toml_encode_round_trips_through_parse(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx,
           "local v = { name = 'x', n = 2, list = {1, 2, 3},\n"
           "            sub = { deep = { ok = true } } }\n"
           "for _, enc in ipairs { kumo.serde.toml_encode,\n"
           "                       kumo.serde.toml_encode_pretty } do\n"
           "  local back = kumo.serde.toml_parse(enc(v))\n"
           "  assert(back.name == 'x' and back.n == 2 and #back.list == 3)\n"
           "  assert(back.sub.deep.ok == true)\n"
           "end\n");
    pfx_ok(
        fx,
        "local t = kumo.serde.toml_encode_pretty_compact {\n"
        "  zeta = 1, alpha = 2, empty = {}, sub = { b = 1, a = 2 } }\n"
        "assert(t:find('empty = {}', 1, true), t)\n"
        "assert(not t:find('[empty]', 1, true), t)\n"
        "assert(t:find('alpha') < t:find('zeta'), t)\n"
        "local s = t:find('[sub]', 1, true)\n"
        "assert(s and t:find('a = 2', s, true) < t:find('b = 1', s, true), t)\n"
        "assert(kumo.serde.toml_parse(t).sub.a == 2)\n");
    pfx_ok(fx, "for _, k in ipairs { 'a b', 'a\\\"b', '#', 'a\\\\b', "
               "'caf\\xc3\\xa9', \"it's ok\" } do\n"
               "  local back = kumo.serde.toml_parse(kumo.serde.toml_encode { "
               "[k] = 1 })\n"
               "  assert(back[k] == 1, k)\n"
               "end\n");
    pfx_fails(fx, "kumo.serde.toml_encode { [\"it's\"] = 1 }\n",
              "kumo.serde.toml_encode: the key \"it's\" cannot be written");
    pfx_fails(fx, "kumo.serde.toml_encode(42)\n",
              "kumo.serde.toml_encode: the top level of a TOML document "
              "must be a table");
    pfx_fails(fx, "kumo.serde.toml_encode { f = print }\n",
              "kumo.serde.toml_encode: ");
}

static void
toml_parse_bad_text_and_bad_argument_are_errors(void **state)
{
    struct pfx *fx = *state;

    pfx_fails(fx, "kumo.serde.toml_parse 'a = = 1'\n",
              "kumo.serde.toml_parse: (toml text):1:");
    pfx_fails(fx, "kumo.serde.toml_parse {}\n",
              "bad argument #1 to 'toml_parse' (string expected, got table)");
}

static void
json_load_accepts_comments_outside_strings(void **state)
{
    struct pfx *fx = *state;
    char path[700], src[2048];

    pfx_write(fx, "data.json",
              "/* routing data */\n"
              "{\n"
              "  // the sink\n"
              "  \"url\": \"http://x.test/#frag // not a comment\",\n"
              "  # shell style\n"
              "  \"n\": 1 /* inline */\n"
              "}\n",
              path, sizeof(path));
    snprintf(src, sizeof(src),
             "local d = kumo.json_load '%s'\n"
             "assert(d.url == 'http://x.test/#frag // not a comment', d.url)\n"
             "assert(d.n == 1)\n"
             "assert(kumo.serde.json_load('%s').n == 1)\n",
             path, path);
    pfx_ok(fx, src);
    pfx_write(fx, "bad.json", "{\n\"a\": }\n", path, sizeof(path));
    snprintf(src, sizeof(src), "kumo.json_load '%s'\n", path);
    pfx_fails(fx, src, "kumo.serde.json_load: ");
    pfx_fails(fx, src, "bad.json:2:");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            toml_parse_gives_nested_tables_of_typed_values, pfx_setup,
            pfx_teardown),
        cmocka_unit_test_setup_teardown(
            toml_load_reads_a_file_and_reports_errors_with_its_line, pfx_setup,
            pfx_teardown),
        cmocka_unit_test_setup_teardown(toml_encode_round_trips_through_parse,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(
            toml_parse_bad_text_and_bad_argument_are_errors, pfx_setup,
            pfx_teardown),
        cmocka_unit_test_setup_teardown(
            json_load_accepts_comments_outside_strings, pfx_setup,
            pfx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
