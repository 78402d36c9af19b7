/* test_km_file.c - durable small files: a write replaces the old content
 * whole and leaves no temporary file; a short write (the file size limit
 * reached) and a missing directory are errors naming the path, never
 * success; reading a line strips its end and tells a missing file apart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/km.h"
#include "base/km_file.h"
#include "test_util.h"

/* Fixture */

struct km_file_test {
    char dir[256];
    char path[300];
    char tmp[310];
};

static int
km_file_test_setup(void **state)
{
    struct km_file_test *t = calloc(1, sizeof(*t));
    const char *root = getenv("KUMO_TEST_TMP");

    snprintf(t->dir, sizeof(t->dir), "%s/km_file-XXXXXX",
             root != NULL ? root : "/tmp");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof(t->path), "%s/nodeid", t->dir);
    snprintf(t->tmp, sizeof(t->tmp), "%s.tmp", t->path);
    *state = t;
    return 0;
}

static int
km_file_test_teardown(void **state)
{
    struct km_file_test *t = *state;

    assert_int_equal(test_rm_rf(t->dir), 0);
    free(t);
    return 0;
}

/* Helpers */

static void
km_file_test_put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Tests */

static void
km_file_write_creates_the_file_whole_and_leaves_no_temporary(void **state)
{
    struct km_file_test *t = *state;
    char err[256] = "";
    char line[64];

    assert_int_equal(
        km_file_write_durable(t->path, "abc-123", 7, err, sizeof(err)), 0);
    assert_int_equal(km_file_read_line(t->path, line, sizeof(line)), 0);
    assert_string_equal(line, "abc-123");
    assert_int_equal(access(t->tmp, F_OK), -1);
}

static void
km_file_write_replaces_old_content(void **state)
{
    struct km_file_test *t = *state;
    char err[256] = "";
    char line[64];

    km_file_test_put(t->path, "old content that is longer\n");
    assert_int_equal(
        km_file_write_durable(t->path, "new\n", 4, err, sizeof(err)), 0);
    assert_int_equal(km_file_read_line(t->path, line, sizeof(line)), 0);
    assert_string_equal(line, "new");
}

static void
km_file_short_write_is_an_error_and_keeps_the_old_file(void **state)
{
    struct km_file_test *t = *state;
    struct rlimit old, small;
    char err[256] = "";
    char line[64];
    int rv;

    km_file_test_put(t->path, "0123456789abcdef0123456789abcdef0123\n");
    /* A file size limit of 10 bytes: write() stores 10 of 36 and says so. */
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = 10;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    rv = km_file_write_durable(t->path, "ffffffff-ffff-4fff-bfff-ffffffffffff",
                               36, err, sizeof(err));
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    assert_int_equal(rv, KM_EIO);
    assert_non_null(strstr(err, t->path));
    assert_non_null(strstr(err, "short write"));
    assert_int_equal(access(t->tmp, F_OK), -1);
    assert_int_equal(km_file_read_line(t->path, line, sizeof(line)), 0);
    assert_string_equal(line, "0123456789abcdef0123456789abcdef0123");
}

static void
km_file_write_into_a_missing_directory_names_the_path(void **state)
{
    struct km_file_test *t = *state;
    char path[400];
    char err[512] = "";

    snprintf(path, sizeof(path), "%s/no/such/dir/file", t->dir);
    assert_int_equal(km_file_write_durable(path, "x", 1, err, sizeof(err)),
                     KM_ENOENT);
    assert_non_null(strstr(err, path));
}

static void
km_file_read_line_tells_a_missing_file_apart(void **state)
{
    struct km_file_test *t = *state;
    char line[8] = "unset";

    assert_int_equal(km_file_read_line(t->path, line, sizeof(line)), KM_ENOENT);
    km_file_test_put(t->path, "a-long-first-line\r\nsecond\n");
    assert_int_equal(km_file_read_line(t->path, line, sizeof(line)), 0);
    assert_string_equal(line, "a-long-"); /* truncated to fit */
}

static void
km_file_mkdirs_makes_every_level_and_accepts_existing(void **state)
{
    struct km_file_test *t = *state;
    char path[400];
    struct stat st;

    snprintf(path, sizeof(path), "%s/a/b/c", t->dir);
    assert_int_equal(km_file_mkdirs(path, 0750), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(km_file_mkdirs(path, 0750), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f)                                                                   \
    cmocka_unit_test_setup_teardown(f, km_file_test_setup,                     \
                                    km_file_test_teardown)
        T(km_file_write_creates_the_file_whole_and_leaves_no_temporary),
        T(km_file_write_replaces_old_content),
        T(km_file_short_write_is_an_error_and_keeps_the_old_file),
        T(km_file_write_into_a_missing_directory_names_the_path),
        T(km_file_read_line_tells_a_missing_file_apart),
        T(km_file_mkdirs_makes_every_level_and_accepts_existing),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
