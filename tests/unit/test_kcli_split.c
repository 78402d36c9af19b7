/* test_kcli_split.c - unit tests of the `kumo>` shell's line splitter:
 * blanks, single and double quotes, backslash escapes inside and outside
 * quotes, empty quoted words, and the errors for unterminated quotes and a
 * trailing backslash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/km.h"
#include "kcli/kcli.h"

/* Fixture */

struct kcli_split_test {
    int argc;
    char **argv;
    struct buf err;
};

static int
kcli_split_test_setup(void **state)
{
    struct kcli_split_test *t = calloc(1, sizeof(*t));

    buf_init(&t->err);
    *state = t;
    return 0;
}

static int
kcli_split_test_teardown(void **state)
{
    struct kcli_split_test *t = *state;

    kcli_split_free(t->argc, t->argv);
    buf_fini(&t->err);
    free(t);
    return 0;
}

/* Helpers */

/* Split `line` and check it gives exactly the NULL-terminated `want`. */
static void
kcli_split_test_expect(struct kcli_split_test *t, const char *line,
                       const char *const *want)
{
    int n = 0;

    kcli_split_free(t->argc, t->argv);
    t->argv = NULL;
    t->argc = 0;
    assert_int_equal(kcli_split(line, &t->argc, &t->argv, &t->err), 0);
    while (want[n] != NULL) {
        n++;
    }
    assert_int_equal(t->argc, n);
    for (int i = 0; i < n; i++) {
        assert_string_equal(t->argv[i], want[i]);
    }
    assert_null(t->argv[n]);
}

static void
kcli_split_test_error(struct kcli_split_test *t, const char *line,
                      const char *needle)
{
    int argc = -1;
    char **argv = NULL;

    buf_reset(&t->err);
    assert_int_equal(kcli_split(line, &argc, &argv, &t->err), KM_EINVAL);
    assert_null(argv);
    assert_non_null(strstr(buf_cstr(&t->err), needle));
}

/* Tests */

static void
kcli_split_separates_words_on_any_blank_run(void **state)
{
    const char *const want[] = {"bounce", "--domain", "a.test", NULL};

    kcli_split_test_expect(*state, "  bounce \t--domain   a.test  ", want);
}

static void
kcli_split_blank_line_gives_no_words(void **state)
{
    const char *const want[] = {NULL};

    kcli_split_test_expect(*state, "", want);
    kcli_split_test_expect(*state, "   \t ", want);
}

static void
kcli_split_single_quotes_are_literal(void **state)
{
    const char *const want[] = {"--reason", "it's $HOME \\n \"x\"", NULL};

    kcli_split_test_expect(*state, "--reason 'it'\\''s $HOME \\n \"x\"'", want);
}

static void
kcli_split_double_quotes_keep_blanks_and_allow_escapes(void **state)
{
    const char *const want[] = {"--reason", "say \"hi\" \\ $x \\n", NULL};

    kcli_split_test_expect(*state, "--reason \"say \\\"hi\\\" \\\\ \\$x \\n\"",
                           want);
}

static void
kcli_split_backslash_escapes_outside_quotes(void **state)
{
    const char *const want[] = {"a b", "c'd", "e\"f", NULL};

    kcli_split_test_expect(*state, "a\\ b c\\'d e\\\"f", want);
}

static void
kcli_split_adjacent_parts_join_into_one_word(void **state)
{
    const char *const want[] = {"--set=queue=a b", "", "x", NULL};

    kcli_split_test_expect(*state, "--set=queue='a b' \"\" x", want);
}

static void
kcli_split_reports_unterminated_quotes_and_trailing_backslash(void **state)
{
    kcli_split_test_error(*state, "bounce --reason 'oops", "single quote");
    kcli_split_test_error(*state, "bounce --reason \"oops", "double quote");
    kcli_split_test_error(*state, "bounce --reason \"a\\\"", "double quote");
    kcli_split_test_error(*state, "bounce \\", "trailing backslash");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f)                                                                   \
    cmocka_unit_test_setup_teardown(f, kcli_split_test_setup,                  \
                                    kcli_split_test_teardown)
        T(kcli_split_separates_words_on_any_blank_run),
        T(kcli_split_blank_line_gives_no_words),
        T(kcli_split_single_quotes_are_literal),
        T(kcli_split_double_quotes_keep_blanks_and_allow_escapes),
        T(kcli_split_backslash_escapes_outside_quotes),
        T(kcli_split_adjacent_parts_join_into_one_word),
        T(kcli_split_reports_unterminated_quotes_and_trailing_backslash),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
