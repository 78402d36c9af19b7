/* test_egress_maildir.c - maildir delivery: tmp/new/cur creation, exact
 * bytes in new/ and nothing left in tmp/, unique maildir.txt names, the
 * path template variables and their refusals, the thread-pool variant on
 * a uv loop, and errors for a path under a regular file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "base/buf.h"
#include "base/km.h"
#include "egress_config.h"
#include "egress_maildir.h"
#include "message.h"

#define TEST_ID "0123456789abcdef0123456789abcdef"

/* ---- Fixture ---- */

struct fixture {
    char dir[512];
    uv_loop_t loop;
    int calls;
    int status;
    char *file_path;
};

static int
setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));
    const char *base = getenv("KUMO_TEST_TMP");

    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    mkdir(base, 0755);
    snprintf(f->dir, sizeof(f->dir), "%s/egress_maildir.XXXXXX", base);
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    *state = f;
    return 0;
}

static int
teardown_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    int rv = uv_loop_close(&f->loop);

    nftw(f->dir, teardown_rm, 16, FTW_DEPTH | FTW_PHYS);
    free(f->file_path);
    test_free(f);
    return rv == 0 ? 0 : -1;
}

/* ---- Helpers ---- */

static char *
path_of(struct fixture *f, const char *rel)
{
    return km_asprintf("%s/%s", f->dir, rel);
}

/* Entries of a directory other than . and ..; -1 if it cannot be read. */
static int
count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            n++;
        }
    }
    closedir(d);
    return n;
}

/* The file's bytes into out (reset first). */
static void
read_all(const char *path, struct buf *out)
{
    char chunk[4096];
    int fd = open(path, O_RDONLY);
    ssize_t n;

    assert_true(fd >= 0);
    buf_reset(out);
    while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
        buf_append(out, chunk, (size_t)n);
    }
    assert_int_equal(n, 0);
    close(fd);
}

static void
assert_dir_mode(const char *dir, unsigned mode)
{
    struct stat st;

    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, mode);
}

/* A message; meta_json may be NULL. The caller owns it. */
static struct message *
make_msg(const char *sender, const char *rcpt, const char *meta_json)
{
    json_error_t jerr;
    json_t *meta = meta_json != NULL ? json_loads(meta_json, 0, &jerr) : NULL;
    struct message *m = NULL;

    if (meta_json != NULL) {
        assert_non_null(meta);
    }
    assert_int_equal(message_new(TEST_ID, sender, rcpt, meta, &m), 0);
    return m;
}

/* Expand tmpl for m; returns the status, *out set on success. */
static int
expand(struct message *m, const char *tmpl, char **out, char *err,
       size_t errlen)
{
    err[0] = '\0';
    *out = NULL;
    return egress_maildir_expand_path(tmpl, m, out, err, errlen);
}

static void
on_delivered(void *arg, int status, const char *file_path)
{
    struct fixture *f = arg;

    f->calls++;
    f->status = status;
    free(f->file_path);
    f->file_path = file_path != NULL ? km_strdup(file_path) : NULL;
}

/* Drive the loop until the callback ran, or fail after 10 s. */
static void
run_until_called(struct fixture *f)
{
    uint64_t deadline = km_now_mono_ms() + 10000;

    while (f->calls == 0 && km_now_mono_ms() < deadline) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_int_equal(f->calls, 1);
}

/* ---- Tests ---- */

static void
maildir_write_creates_dirs_and_stores_exact_bytes(void **state)
{
    struct fixture *f = *state;
    static const char data[] = "Subject: hi\r\n\r\nbody\0with nul\r\n.\r\n";
    char *box = path_of(f, "a/b/box");
    char *tmp = path_of(f, "a/b/box/tmp");
    char *nw = path_of(f, "a/b/box/new");
    char *cur = path_of(f, "a/b/box/cur");
    char *out = NULL;
    struct buf got = BUF_INIT;
    struct stat st;

    assert_int_equal(egress_maildir_write(box, TEST_ID, data, sizeof(data) - 1,
                                          EGRESS_MAILDIR_DIR_MODE,
                                          EGRESS_MAILDIR_FILE_MODE, &out),
                     0);
    assert_dir_mode(box, 0750);
    assert_dir_mode(tmp, 0750);
    assert_dir_mode(nw, 0750);
    assert_dir_mode(cur, 0750);
    assert_int_equal(count_entries(tmp), 0);
    assert_int_equal(count_entries(nw), 1);
    assert_int_equal(count_entries(cur), 0);
    assert_non_null(out);
    assert_int_equal(strncmp(out, nw, strlen(nw)), 0);
    assert_int_equal(out[strlen(nw)], '/');
    read_all(out, &got);
    assert_int_equal(got.len, sizeof(data) - 1);
    assert_memory_equal(got.data, data, sizeof(data) - 1);
    assert_int_equal(stat(out, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);

    buf_fini(&got);
    free(out);
    free(cur);
    free(nw);
    free(tmp);
    free(box);
}

static void
maildir_hundred_deliveries_get_unique_names(void **state)
{
    struct fixture *f = *state;
    char *box = path_of(f, "box");
    char *nw = path_of(f, "box/new");
    char *tmp = path_of(f, "box/tmp");

    for (int i = 0; i < 100; i++) {
        assert_int_equal(
            egress_maildir_write(box, TEST_ID, "x", 1, 0700, 0600, NULL), 0);
    }
    assert_int_equal(count_entries(nw), 100);
    assert_int_equal(count_entries(tmp), 0);
    free(tmp);
    free(nw);
    free(box);
}

static void
maildir_file_name_follows_maildir_txt(void **state)
{
    struct fixture *f = *state;
    char *box = path_of(f, "box");
    char *out = NULL;
    char *want_mid = km_asprintf("P%ld", (long)getpid());
    const char *name, *p;
    struct buf host = BUF_INIT;

    assert_int_equal(
        egress_maildir_write(box, "id/with:odd", "x", 1, 0700, 0600, &out), 0);
    name = strrchr(out, '/') + 1;
    /* <seconds>.M<usec>P<pid>R<random>_<id>.<host> */
    for (p = name; *p >= '0' && *p <= '9'; p++) {
    }
    assert_true(p > name);
    assert_int_equal(strncmp(p, ".M", 2), 0);
    assert_non_null(strstr(name, want_mid));
    assert_non_null(strstr(name, "_id_with_odd."));
    for (p = km_hostname(); *p != '\0'; p++) {
        if (*p == '/') {
            buf_append_str(&host, "\\057");
        } else if (*p == ':') {
            buf_append_str(&host, "\\072");
        } else {
            buf_append_char(&host, *p);
        }
    }
    p = strstr(name, "_id_with_odd.") + strlen("_id_with_odd.");
    assert_string_equal(p, buf_cstr(&host));

    buf_fini(&host);
    free(want_mid);
    free(out);
    free(box);
}

static void
maildir_template_expands_kumomta_variables(void **state)
{
    struct message *m;
    char err[256];
    char *out;

    (void)state;
    m = make_msg("Sender@From.Example", "User.One@Example.COM",
                 "{\"tenant\":\"t1\",\"campaign\":\"c1\","
                 "\"routing_domain\":\"relay.example\",\"x_num\":42,"
                 "\"x_s\":\"str\",\"x_b\":true}");
    assert_int_equal(expand(m, "/m/{{ domain_part }}/{{local_part}}", &out, err,
                            sizeof(err)),
                     0);
    assert_string_equal(out, "/m/Example.COM/User.One");
    free(out);
    assert_int_equal(
        expand(m,
               "/q/{{ queue }}/{{ campaign }}/{{ tenant }}/{{ domain }}/"
               "{{ routing_domain }}",
               &out, err, sizeof(err)),
        0);
    assert_string_equal(out, "/q/c1:t1@example.com!relay.example/c1/t1/"
                             "example.com/relay.example");
    free(out);
    assert_int_equal(expand(m,
                            "/e/{{ email }}/{{ sender_email }}/"
                            "{{ sender_local_part }}/{{ sender_domain_part }}",
                            &out, err, sizeof(err)),
                     0);
    assert_string_equal(out, "/e/User.One@Example.COM/Sender@From.Example/"
                             "Sender/From.Example");
    free(out);
    assert_int_equal(
        expand(m,
               "/meta/{{ meta.x_num }}-{{ meta['x_s'] }}-"
               "{{ meta[\"x_b\"] }}-{{ meta.absent }}-{{meta.tenant}}",
               &out, err, sizeof(err)),
        0);
    assert_string_equal(out, "/meta/42-str-true--t1");
    free(out);
    assert_int_equal(expand(m, "/plain/path", &out, err, sizeof(err)), 0);
    assert_string_equal(out, "/plain/path");
    free(out);
    message_unref(m);

    /* No campaign, tenant or routing domain: they expand to nothing. */
    m = make_msg("", "u@d.example", NULL);
    assert_int_equal(expand(m,
                            "/x/{{ campaign }}{{ tenant }}/{{ domain }}/"
                            "{{ sender_local_part }}",
                            &out, err, sizeof(err)),
                     0);
    assert_string_equal(out, "/x//d.example/");
    free(out);
    message_unref(m);
}

static void
maildir_template_refuses_unsafe_and_unsupported(void **state)
{
    struct message *m;
    char err[256];
    char *out;

    (void)state;
    m = make_msg("s@x", "..@d.example", "{\"x_p\":\"a/b\"}");
    assert_int_equal(expand(m, "/m/{{ local_part }}", &out, err, sizeof(err)),
                     KM_EINVAL);
    assert_non_null(strstr(err, "local_part"));
    assert_null(out);
    assert_int_equal(expand(m, "/m/{{ meta.x_p }}", &out, err, sizeof(err)),
                     KM_EINVAL);
    assert_non_null(strstr(err, "meta.x_p"));
    assert_int_equal(expand(m, "/m/{{ nope }}", &out, err, sizeof(err)),
                     KM_EINVAL);
    assert_non_null(strstr(err, "nope"));
    assert_int_equal(
        expand(m, "/m/{{ domain | upper }}", &out, err, sizeof(err)),
        KM_EINVAL);
    assert_int_equal(
        expand(m, "/m/{% if x %}y{% endif %}", &out, err, sizeof(err)),
        KM_EINVAL);
    assert_int_equal(expand(m, "/m/{{ domain", &out, err, sizeof(err)),
                     KM_EINVAL);
    assert_int_equal(expand(m, "", &out, err, sizeof(err)), KM_EINVAL);
    message_unref(m);
}

static void
maildir_deliver_writes_message_data_at_expanded_path(void **state)
{
    struct fixture *f = *state;
    struct message *m = make_msg("s@x", "bob@maildir.example", NULL);
    char *tmpl = km_asprintf("%s/{{ domain_part }}/{{ local_part }}", f->dir);
    char *nw = path_of(f, "maildir.example/bob/new");
    char *out = NULL;
    struct buf got = BUF_INIT;

    buf_append_str(message_data(m), "From: a\r\n\r\nhello\r\n");
    assert_int_equal(egress_maildir_deliver(tmpl, m, &out), 0);
    assert_int_equal(count_entries(nw), 1);
    assert_int_equal(strncmp(out, nw, strlen(nw)), 0);
    read_all(out, &got);
    assert_string_equal(buf_cstr(&got), "From: a\r\n\r\nhello\r\n");

    buf_fini(&got);
    free(out);
    free(nw);
    free(tmpl);
    message_unref(m);
}

static void
maildir_async_delivers_copy_on_loop(void **state)
{
    struct fixture *f = *state;
    char *box = path_of(f, "async");
    char *tmp = path_of(f, "async/tmp");
    struct buf data = BUF_INIT;
    struct buf got = BUF_INIT;

    buf_append_str(&data, "Subject: async\r\n\r\nbytes\r\n");
    assert_int_equal(egress_maildir_deliver_async(&f->loop, box, TEST_ID, &data,
                                                  on_delivered, f),
                     0);
    /* The request holds its own copy: the caller's buffer may go now. */
    buf_fini(&data);
    free(box);
    run_until_called(f);
    assert_int_equal(f->status, 0);
    assert_non_null(f->file_path);
    assert_non_null(strstr(f->file_path, "/async/new/"));
    read_all(f->file_path, &got);
    assert_string_equal(buf_cstr(&got), "Subject: async\r\n\r\nbytes\r\n");
    assert_int_equal(count_entries(tmp), 0);
    buf_fini(&got);
    free(tmp);
}

static void
maildir_path_under_regular_file_fails_enotdir(void **state)
{
    struct fixture *f = *state;
    char *plain = path_of(f, "plain");
    char *box = path_of(f, "plain/box");
    char *out = NULL;
    struct buf data = BUF_INIT;
    int fd = open(plain, O_WRONLY | O_CREAT | O_EXCL, 0600);

    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(
        egress_maildir_write(box, TEST_ID, "x", 1, 0750, 0640, &out), -ENOTDIR);
    assert_null(out);

    buf_append_str(&data, "x");
    assert_int_equal(egress_maildir_deliver_async(&f->loop, box, TEST_ID, &data,
                                                  on_delivered, f),
                     0);
    run_until_called(f);
    assert_int_equal(f->status, -ENOTDIR);
    assert_null(f->file_path);
    buf_fini(&data);
    free(box);
    free(plain);
}

static void
maildir_new_as_regular_file_fails_and_leaves_tmp_empty(void **state)
{
    struct fixture *f = *state;
    char *box = path_of(f, "box");
    char *nw = path_of(f, "box/new");
    char *tmp = path_of(f, "box/tmp");
    int fd;

    assert_int_equal(mkdir(box, 0750), 0);
    fd = open(nw, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(
        egress_maildir_write(box, TEST_ID, "x", 1, 0750, 0640, NULL), -ENOTDIR);
    assert_true(count_entries(tmp) <= 0);
    free(tmp);
    free(nw);
    free(box);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(maildir_write_creates_dirs_and_stores_exact_bytes),
        T(maildir_hundred_deliveries_get_unique_names),
        T(maildir_file_name_follows_maildir_txt),
        T(maildir_template_expands_kumomta_variables),
        T(maildir_template_refuses_unsafe_and_unsupported),
        T(maildir_deliver_writes_message_data_at_expanded_path),
        T(maildir_async_delivers_copy_on_loop),
        T(maildir_path_under_regular_file_fails_enotdir),
        T(maildir_new_as_regular_file_fails_and_leaves_tmp_empty),
    };
#undef T
    /* The modes asserted above assume the usual umask. */
    umask(022);
    km_hostname_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
