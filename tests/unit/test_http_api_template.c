/* test_http_api_template.c - unit tests of the Jinja subset used by HTTP
 * injection: variables, nested fields and indexes, undefined values
 * rendering empty, filters, if/elif/else, whitespace control, comments,
 * and syntax errors that name line and column. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "http_api_int.h"

/* Fixture */

static int
http_api_template_test_setup(void **state)
{
    json_error_t jerr;

    *state = json_loads("{\"name\":\"Ann\",\"n\":3,\"vip\":true,\"zero\":0,"
                        "\"user\":{\"city\":\"Oslo\",\"tags\":[\"a\",\"b\"]},"
                        "\"empty\":\"\"}",
                        0, &jerr);
    assert_non_null(*state);
    return 0;
}

static int
http_api_template_test_teardown(void **state)
{
    json_decref(*state);
    return 0;
}

/* Helpers */

static void
http_api_template_test_expect(json_t *vars, const char *src, const char *want)
{
    struct http_api_template *t = NULL;
    struct buf out = BUF_INIT;
    char err[256] = "";

    if (http_api_template_compile(src, strlen(src), &t, err, sizeof(err)) !=
        0) {
        fail_msg("compile '%s': %s", src, err);
    }
    http_api_template_render(t, vars, &out);
    assert_string_equal(buf_cstr(&out), want);
    buf_fini(&out);
    http_api_template_free(t);
}

static void
http_api_template_test_error(const char *src, const char *want)
{
    struct http_api_template *t = NULL;
    char err[256] = "";

    assert_int_not_equal(
        http_api_template_compile(src, strlen(src), &t, err, sizeof(err)), 0);
    assert_null(t);
    if (strstr(err, want) == NULL) {
        fail_msg("error for '%s' is '%s', wanted '%s'", src, err, want);
    }
}

/* Tests */

static void
http_api_template_substitutes_variables_and_nested_fields(void **state)
{
    http_api_template_test_expect(*state,
                                  "Hi {{ name }}, {{n}} from {{ "
                                  "user.city }} {{ user.tags[1] }} "
                                  "{{ user['city'] }}!",
                                  "Hi Ann, 3 from Oslo b Oslo!");
}

static void
http_api_template_renders_undefined_as_empty(void **state)
{
    http_api_template_test_expect(*state, "[{{ missing }}|{{ user.nope.x }}]",
                                  "[|]");
}

static void
http_api_template_applies_filters(void **state)
{
    http_api_template_test_expect(
        *state,
        "{{ missing | default('friend') }} {{ name | upper }} "
        "{{ name|default('x')|lower }} {{ ' pad '|trim }}",
        "friend ANN ann pad");
}

static void
http_api_template_takes_if_elif_else_branches(void **state)
{
    http_api_template_test_expect(
        *state,
        "{% if vip %}V{% endif %}{% if zero %}Z{% else %}z{% endif %}"
        "{% if missing %}1{% elif name == 'Ann' %}2{% else %}3{% endif %}"
        "{% if not empty %}E{% endif %}{% if n != 3 %}bad{% endif %}"
        "{% if vip %}{% if user.city %}nested{% endif %}{% endif %}",
        "Vz2Enested");
}

static void
http_api_template_honours_whitespace_control_and_comments(void **state)
{
    http_api_template_test_expect(
        *state,
        "a  {{- name -}}  b {# note #}c\n  {%- if vip -%}\n  d\n"
        "{%- endif %}",
        "aAnnb cd");
}

static void
http_api_template_reports_syntax_errors_with_position(void **state)
{
    (void)state;
    http_api_template_test_error("Hello {{ name", "line 1 column 7: "
                                                  "unterminated tag");
    http_api_template_test_error("x\n{% if a %}y", "missing endif");
    http_api_template_test_error("x\n  {% frob %}", "line 2 column 3: "
                                                    "unknown statement");
    http_api_template_test_error("{% endif %}", "outside an if block");
    http_api_template_test_error("{{ a | nosuch }}", "unknown filter");
    http_api_template_test_error("{{ }}", "expected an expression");
    http_api_template_test_error("{{ a b }}", "line 1 column 6: unexpected "
                                              "token");
    http_api_template_test_error("{{ 'abc }}", "unterminated string");
}

static void
http_api_template_message_unfolds_values_in_headers_only(void **state)
{
    static const char src[] = "Subject: {{ v }}\r\n"
                              "{% if 1 %}X-B: {{ v }}{% endif %}\r\n"
                              "\r\n{{ v }}\r\n";
    json_t *vars = json_pack("{s:s}", "v", "a\r\nBcc: x@evil.test\n\nb");
    struct http_api_template *t = NULL;
    struct buf out = BUF_INIT;
    char err[256];

    (void)state;
    assert_int_equal(
        http_api_template_compile(src, strlen(src), &t, err, sizeof(err)), 0);
    http_api_template_render_message(t, vars, &out);
    assert_string_equal(buf_cstr(&out), "Subject: a  Bcc: x@evil.test  b\r\n"
                                        "X-B: a  Bcc: x@evil.test  b\r\n"
                                        "\r\na\r\nBcc: x@evil.test\n\nb\r\n");
    buf_fini(&out);
    http_api_template_free(t);
    json_decref(vars);
}

static void
http_api_template_refuses_if_blocks_nested_too_deeply(void **state)
{
    struct buf src = BUF_INIT;
    struct http_api_template *t = NULL;
    char err[256] = "";

    (void)state;
    /* 64 levels compile; 100,000 overflowed the stack before the bound. */
    for (int i = 0; i < 64; i++) {
        buf_append_str(&src, "{% if 1 %}");
    }
    for (int i = 0; i < 64; i++) {
        buf_append_str(&src, "{% endif %}");
    }
    assert_int_equal(
        http_api_template_compile(src.data, src.len, &t, err, sizeof(err)), 0);
    http_api_template_free(t);
    buf_reset(&src);
    for (int i = 0; i < 100000; i++) {
        buf_append_str(&src, "{% if 1 %}");
    }
    assert_int_not_equal(
        http_api_template_compile(src.data, src.len, &t, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "line 1 column 641: if blocks nested too "
                                "deeply"));
    buf_fini(&src);
}

static void
http_api_template_compiles_many_nodes_in_linear_time(void **state)
{
    struct buf src = BUF_INIT, out = BUF_INIT;
    struct http_api_template *t = NULL;
    char err[256] = "";
    json_t *vars = *state;

    /* 200,000 nodes: one realloc per node took minutes under ASan. */
    for (int i = 0; i < 100000; i++) {
        buf_append_str(&src, "{{ name }}.");
    }
    assert_int_equal(
        http_api_template_compile(src.data, src.len, &t, err, sizeof(err)), 0);
    http_api_template_render(t, vars, &out);
    assert_int_equal(out.len, 100000 * 4);
    http_api_template_free(t);
    buf_fini(&out);
    buf_fini(&src);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            http_api_template_substitutes_variables_and_nested_fields,
            http_api_template_test_setup, http_api_template_test_teardown),
        cmocka_unit_test_setup_teardown(
            http_api_template_renders_undefined_as_empty,
            http_api_template_test_setup, http_api_template_test_teardown),
        cmocka_unit_test_setup_teardown(http_api_template_applies_filters,
                                        http_api_template_test_setup,
                                        http_api_template_test_teardown),
        cmocka_unit_test_setup_teardown(
            http_api_template_takes_if_elif_else_branches,
            http_api_template_test_setup, http_api_template_test_teardown),
        cmocka_unit_test_setup_teardown(
            http_api_template_honours_whitespace_control_and_comments,
            http_api_template_test_setup, http_api_template_test_teardown),
        cmocka_unit_test(http_api_template_reports_syntax_errors_with_position),
        cmocka_unit_test(
            http_api_template_message_unfolds_values_in_headers_only),
        cmocka_unit_test(http_api_template_refuses_if_blocks_nested_too_deeply),
        cmocka_unit_test_setup_teardown(
            http_api_template_compiles_many_nodes_in_linear_time,
            http_api_template_test_setup, http_api_template_test_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
