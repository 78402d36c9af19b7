/* test_policy_yaml.c - kumo.serde.yaml_parse/yaml_load/yaml_encode: core
 * schema scalars, quoted strings, anchors, round trips of strings that look
 * like other types, errors with line and column, one document only, and
 * the alias budget. */
#include "test_policy_fx.h"

/* ---- Tests ---- */

static void
yaml_parse_resolves_core_schema_scalars(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(
        fx,
        "local y = kumo.serde.yaml_parse [[\n"
        "name: routes\n"
        "count: 42\n"
        "hex: 0x1f\n"
        "ratio: 0.25\n"
        "on: true\n"
        "off: False\n"
        "nothing: ~\n"
        "quoted: '42'\n"
        "tagged: !!str 7\n"
        "anchored: &t !!str 8\n"
        "list: [a, 1, null]\n"
        "defaults: &d { retry: 10m }\n"
        "queue:\n"
        "  <<: *d\n"
        "  nested:\n"
        "    - x: 1\n"
        "]]\n"
        "assert(y.name == 'routes')\n"
        "assert(math.type(y.count) == 'integer' and y.count == 42)\n"
        "assert(y.hex == 31 and y.ratio == 0.25)\n"
        "assert(y.on == true and y.off == false and y.nothing == nil)\n"
        "assert(y.quoted == '42' and y.tagged == '7' and y.anchored == '8')\n"
        "assert(y.list[1] == 'a' and y.list[2] == 1 and #y.list == 2)\n"
        "assert(y.defaults.retry == '10m')\n"
        "assert(y.queue.nested[1].x == 1)\n");
}

static void
yaml_encode_round_trips_and_quotes_lookalikes(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(
        fx,
        "local v = { s = 'true', n = '12', f = 1.5, i = 3,\n"
        "  b = false, list = { 'null', 'plain', '' }, sub = { k = 'v' } }\n"
        "local text = kumo.serde.yaml_encode(v)\n"
        "local back = kumo.serde.yaml_parse(text)\n"
        "assert(back.s == 'true' and back.n == '12', text)\n"
        "assert(back.f == 1.5 and back.i == 3 and back.b == false)\n"
        "assert(back.list[1] == 'null' and back.list[3] == '', text)\n"
        "assert(back.sub.k == 'v')\n"
        "assert(kumo.serde.yaml_parse(kumo.serde.yaml_encode 'x') == 'x')\n");
}

static void
yaml_load_reads_a_file_and_errors_have_positions(void **state)
{
    struct pfx *fx = *state;
    char path[700], src[1024];

    pfx_write(fx, "good.yaml", "a:\n  b: c\n", path, sizeof(path));
    snprintf(src, sizeof(src),
             "assert(kumo.serde.yaml_load('%s').a.b == 'c')\n", path);
    pfx_ok(fx, src);
    pfx_write(fx, "bad.yaml", "a: b\nc: [1, 2\n", path, sizeof(path));
    snprintf(src, sizeof(src), "kumo.serde.yaml_load '%s'\n", path);
    pfx_fails(fx, src, "kumo.serde.yaml_load: ");
    pfx_fails(fx, src, "bad.yaml:3:1: did not find expected");
    pfx_fails(fx, "kumo.serde.yaml_parse 'a: 1\\n---\\nb: 2\\n'\n",
              "kumo.serde.yaml_parse: (yaml text): more than one YAML "
              "document");
    pfx_fails(fx, "kumo.serde.yaml_parse '? [a]\\n: b\\n'\n",
              "only scalar mapping keys are supported");
    pfx_fails(fx, "kumo.serde.yaml_parse 'x: .nan'\n",
              "'.nan' (infinity or NaN) has no JSON or Lua table form");
    pfx_fails(fx, "kumo.serde.yaml_parse(nil)\n",
              "bad argument #1 to 'yaml_parse' (string expected, got nil)");
}

static void
yaml_alias_bombs_hit_the_budget(void **state)
{
    struct pfx *fx = *state;

    pfx_fails(fx,
              "local t = { 'a: &a [x,x,x,x,x,x,x,x,x,x]' }\n"
              "local prev = 'a'\n"
              "for i = 1, 8 do\n"
              "  local name = 'n' .. i\n"
              "  local refs = {}\n"
              "  for k = 1, 10 do refs[k] = '*' .. prev end\n"
              "  t[#t + 1] = name .. ': &' .. name .. ' [' .. "
              "table.concat(refs, ',') .. ']'\n"
              "  prev = name\n"
              "end\n"
              "kumo.serde.yaml_parse(table.concat(t, '\\n'))\n",
              "more than 1000000 values (aliases expanded)");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(yaml_parse_resolves_core_schema_scalars,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(
            yaml_encode_round_trips_and_quotes_lookalikes, pfx_setup,
            pfx_teardown),
        cmocka_unit_test_setup_teardown(
            yaml_load_reads_a_file_and_errors_have_positions, pfx_setup,
            pfx_teardown),
        cmocka_unit_test_setup_teardown(yaml_alias_bombs_hit_the_budget,
                                        pfx_setup, pfx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
