/* test_logrec.c - log records: the JSON built for Reception and Rejection
 * events against KumoMTA's field names, enhanced status code parsing, and
 * the zstd segments on disk (order, rotation by size and by age, failures).
 * A small fake struct message stands in for message.c: the linker takes
 * these message_* definitions and never pulls message.o. */
#include <dirent.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <uv.h>
#include <zstd.h>

#include "test_zstd.h"

#include "base/buf.h"
#include "base/km.h"
#include "logrec.h"
#include "logrec_int.h"
#include "message.h"

/* ---- Fake message ---- */

struct message {
    const char *id, *sender, *recipient, *queue;
    json_t *meta;
    struct buf data;
    int64_t created_ms;
    uint32_t num_attempts;
};

const char *
message_id(const struct message *m)
{
    return m->id;
}

const char *
message_sender(const struct message *m)
{
    return m->sender;
}

const char *
message_recipient(const struct message *m)
{
    return m->recipient;
}

const char *
message_queue_name(struct message *m)
{
    return m->queue;
}

json_t *
message_meta(struct message *m)
{
    return m->meta;
}

const struct buf *
message_data_c(const struct message *m)
{
    return &m->data;
}

size_t
message_size(const struct message *m)
{
    return m->data.len;
}

int64_t
message_created_ms(const struct message *m)
{
    return m->created_ms;
}

uint32_t
message_num_attempts(const struct message *m)
{
    return m->num_attempts;
}

/* ---- Fixture ---- */

/* 2026-11-24T15:00:00.123456Z */
#define TEST_TS_US 1795532400123456LL

struct fixture {
    uv_loop_t loop;
    char dir[256];
    char logs[300];
};

static int
fixture_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int
setup(void **state)
{
    struct fixture *f = km_calloc(1, sizeof(*f));
    const char *base = getenv("KUMO_TEST_TMP");

    if (base == NULL) {
        base = "/tmp";
    }
    mkdir(base, 0755);
    snprintf(f->dir, sizeof(f->dir), "%s/logrec-XXXXXX", base);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->logs, sizeof(f->logs), "%s/logs/sub", f->dir);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    int rv = uv_loop_close(&f->loop);

    if (rv != 0) {
        uv_print_all_handles(&f->loop, stderr);
    }
    nftw(f->dir, fixture_rm, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    assert_int_equal(rv, 0);
    return 0;
}

/* ---- Helpers ---- */

static void
helper_on_closed(void *arg)
{
    *(int *)arg += 1;
}

/* Run the loop until cond(arg) holds, failing after 10 seconds. */
static void
helper_run_until(uv_loop_t *loop, bool (*cond)(void *), void *arg)
{
    uint64_t deadline = km_now_mono_ms() + 10000;

    while (!cond(arg)) {
        assert_true(km_now_mono_ms() < deadline);
        uv_run(loop, UV_RUN_ONCE);
    }
}

static bool
helper_int_set(void *arg)
{
    return *(int *)arg != 0;
}

static void
helper_close(uv_loop_t *loop, struct logrec *lr)
{
    int closed = 0;

    logrec_close(lr, helper_on_closed, &closed);
    helper_run_until(loop, helper_int_set, &closed);
    assert_int_equal(closed, 1);
}

static int
helper_is_segment(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

/* The segment file names in dir, sorted (names sort by time). */
static int
helper_list(const char *dir, struct dirent ***out)
{
    int n = scandir(dir, out, helper_is_segment, alphasort);
    assert_true(n >= 0);
    return n;
}

static void
helper_free_list(struct dirent **list, int n)
{
    for (int i = 0; i < n; i++) {
        free(list[i]);
    }
    free(list);
}

/* Check that text holds JSON records id-<first>, id-<first+1>, ... one per
 * line; return how many. */
static int
helper_check_lines(const struct buf *text, int first)
{
    const char *p = buf_cstr(text);
    const char *end = p + text->len;
    int count = 0;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        assert_non_null(nl);
        json_error_t err;
        json_t *rec = json_loadb(p, (size_t)(nl - p), 0, &err);
        assert_non_null(rec);
        char want[32];
        snprintf(want, sizeof(want), "id-%d", first + count);
        assert_string_equal(json_string_value(json_object_get(rec, "id")),
                            want);
        json_decref(rec);
        count++;
        p = nl + 1;
    }
    return count;
}

static void
helper_write_n(struct logrec *lr, int first, int n, const char *padding)
{
    for (int i = first; i < first + n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "id-%d", i);
        struct logrec_event ev = {
            .type = "Reception",
            .id = id,
            .sender = "a@example.com",
            .recipient = "b@example.net",
            .code = 250,
            .content = padding,
            .timestamp_us = TEST_TS_US,
        };
        logrec_write(lr, &ev);
    }
}

static void
helper_obj_str(json_t *obj, const char *key, const char *want)
{
    json_t *v = json_object_get(obj, key);
    assert_true(json_is_string(v));
    assert_string_equal(json_string_value(v), want);
}

static void
helper_obj_int(json_t *obj, const char *key, json_int_t want)
{
    json_t *v = json_object_get(obj, key);
    assert_true(json_is_integer(v));
    assert_int_equal(json_integer_value(v), want);
}

static void
helper_obj_null(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    assert_non_null(v);
    assert_true(json_is_null(v));
}

struct stats_wait {
    struct logrec *lr;
    uint64_t segments;
    uint64_t errors;
};

static bool
helper_stats_reached(void *arg)
{
    struct stats_wait *w = arg;
    struct logrec_stats st;

    logrec_get_stats(w->lr, &st);
    return st.segments >= w->segments && st.errors >= w->errors;
}

/* ---- Tests ---- */

static void
logrec_parse_enhanced_splits_code_from_text(void **state)
{
    int c = -1;
    int s = -1;
    int d = -1;

    (void)state;
    assert_int_equal(logrec_parse_enhanced("5.7.1 relaying denied", &c, &s, &d),
                     6);
    assert_int_equal(c, 5);
    assert_int_equal(s, 7);
    assert_int_equal(d, 1);
    assert_int_equal(logrec_parse_enhanced("550 4.10.123 busy", &c, &s, &d),
                     13);
    assert_int_equal(c, 4);
    assert_int_equal(s, 10);
    assert_int_equal(d, 123);
    assert_int_equal(logrec_parse_enhanced("2.0.0", &c, &s, &d), 5);
    assert_int_equal(c, 2);
}

static void
logrec_parse_enhanced_rejects_non_codes_and_leaves_outputs(void **state)
{
    const char *bad[] = {
        "OK ids=1234", "3.1.1 text",   "5.7 text", "5.7.1000 x",
        "5.x.1 text",  "5.7.1text",    "",         "550 OK",
        "55.7.1 text", "5.1234.1 text"};
    int c = -1;
    int s = -1;
    int d = -1;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(logrec_parse_enhanced(bad[i], &c, &s, &d), 0);
    }
    assert_int_equal(c, -1);
    assert_int_equal(s, -1);
    assert_int_equal(d, -1);
}

static void
logrec_build_rejection_has_kumomta_fields(void **state)
{
    struct logrec_event ev = {
        .type = "Rejection",
        .sender = "from@example.com",
        .recipient = "to@example.net",
        .code = 550,
        .content = "5.7.1 relaying not permitted for 127.0.0.1:4000",
        .command = "RCPT TO",
        .nodeid = "557f3ad4-2c8c-11ee-976e-782d7e12e173",
        .session_id = "9bcd689e-23d9-41b7-a015-63a1382f8b57",
        .timestamp_us = TEST_TS_US,
    };
    json_t *rec = logrec_build(NULL, &ev);

    (void)state;
    helper_obj_str(rec, "type", "Rejection");
    helper_obj_str(rec, "id", "");
    helper_obj_str(rec, "sender", "from@example.com");
    helper_obj_str(rec, "recipient", "to@example.net");
    helper_obj_str(rec, "queue", "");
    helper_obj_str(rec, "site", "");
    helper_obj_int(rec, "size", 0);
    json_t *resp = json_object_get(rec, "response");
    assert_true(json_is_object(resp));
    helper_obj_int(resp, "code", 550);
    json_t *enh = json_object_get(resp, "enhanced_code");
    assert_true(json_is_object(enh));
    helper_obj_int(enh, "class", 5);
    helper_obj_int(enh, "subject", 7);
    helper_obj_int(enh, "detail", 1);
    helper_obj_str(resp, "content",
                   "relaying not permitted for 127.0.0.1:4000");
    helper_obj_str(resp, "command", "RCPT TO");
    helper_obj_null(rec, "peer_address");
    helper_obj_int(rec, "timestamp", 1795532400);
    helper_obj_int(rec, "created", 1795532400);
    helper_obj_str(rec, "event_time", "2026-11-24T15:00:00.123456Z");
    helper_obj_str(rec, "created_time", "2026-11-24T15:00:00.123456Z");
    helper_obj_int(rec, "num_attempts", 0);
    helper_obj_str(rec, "bounce_classification", "Uncategorized");
    helper_obj_null(rec, "egress_pool");
    helper_obj_null(rec, "egress_source");
    helper_obj_null(rec, "source_address");
    helper_obj_null(rec, "feedback_report");
    assert_int_equal(json_object_size(json_object_get(rec, "meta")), 0);
    assert_int_equal(json_object_size(json_object_get(rec, "headers")), 0);
    helper_obj_null(rec, "delivery_protocol");
    helper_obj_null(rec, "reception_protocol");
    helper_obj_str(rec, "nodeid", "557f3ad4-2c8c-11ee-976e-782d7e12e173");
    helper_obj_str(rec, "session_id", "9bcd689e-23d9-41b7-a015-63a1382f8b57");
    /* Unset optional fields are left out, as KumoMTA's serde does. */
    assert_null(json_object_get(rec, "tls_cipher"));
    assert_null(json_object_get(rec, "tls_protocol_version"));
    assert_null(json_object_get(rec, "tls_peer_subject_name"));
    assert_null(json_object_get(rec, "provider_name"));
    json_decref(rec);
}

static void
logrec_build_reception_takes_message_fields_and_selected_meta_headers(
    void **state)
{
    struct fixture *f = *state;
    const char *meta_keys[] = {"campaign", "x_*", "nullkey", "missing"};
    const char *hdr_names[] = {"subject", "X-*"};
    struct logrec_config cfg = {
        .log_dir = f->logs,
        .meta = meta_keys,
        .n_meta = 4,
        .headers = hdr_names,
        .n_headers = 2,
    };
    struct message msg = {
        .id = "1d98076abbbc11ed940250ebf67f93bd",
        .sender = "user@sender.example.com",
        .recipient = "user@recipient.example.com",
        .queue = "campaign:tenant@example.net",
        .created_ms = 1795532399500,
        .num_attempts = 2,
        .meta = json_pack("{s:s, s:i, s:s, s:i, s:n, s:s}", "campaign", "c1",
                          "x_a", 1, "x_b", "two", "other", 3, "nullkey",
                          "reception_protocol", "ESMTP"),
    };
    struct logrec *lr = NULL;

    buf_init(&msg.data);
    buf_append_str(&msg.data, "Subject: hi\r\nX-Tag: one\r\nFrom: a@b\r\n"
                              "x-tag: two\r\nX-Other: o\r\n folded\r\n"
                              "\r\nX-Body: not a header\r\n");
    assert_int_equal(logrec_open(&f->loop, &cfg, &lr), 0);
    struct logrec_event ev = {
        .type = "Reception",
        .msg = &msg,
        .code = 250,
        .content = "OK ids=1d98076abbbc11ed940250ebf67f93bd",
        .command = ".",
        .peer_name = "mail.example.com",
        .peer_addr = "127.0.0.1",
        .source_addr = "127.0.0.1:2025",
        .tls_cipher = "TLS_AES_256_GCM_SHA384",
        .tls_protocol_version = "TLSv1.3",
        .timestamp_us = TEST_TS_US,
    };
    json_t *rec = logrec_build(lr, &ev);

    helper_obj_str(rec, "type", "Reception");
    helper_obj_str(rec, "id", "1d98076abbbc11ed940250ebf67f93bd");
    helper_obj_str(rec, "sender", "user@sender.example.com");
    helper_obj_str(rec, "recipient", "user@recipient.example.com");
    helper_obj_str(rec, "queue", "campaign:tenant@example.net");
    helper_obj_str(rec, "site", "");
    helper_obj_int(rec, "size", (json_int_t)msg.data.len);
    json_t *resp = json_object_get(rec, "response");
    helper_obj_int(resp, "code", 250);
    helper_obj_null(resp, "enhanced_code");
    helper_obj_str(resp, "content", "OK ids=1d98076abbbc11ed940250ebf67f93bd");
    helper_obj_str(resp, "command", ".");
    json_t *peer = json_object_get(rec, "peer_address");
    helper_obj_str(peer, "name", "mail.example.com");
    helper_obj_str(peer, "addr", "127.0.0.1");
    helper_obj_int(rec, "created", 1795532399);
    helper_obj_str(rec, "created_time", "2026-11-24T14:59:59.500000Z");
    helper_obj_int(rec, "num_attempts", 2);
    json_t *src = json_object_get(rec, "source_address");
    helper_obj_str(src, "address", "127.0.0.1:2025");
    helper_obj_str(rec, "reception_protocol", "ESMTP");
    helper_obj_null(rec, "nodeid");
    helper_obj_str(rec, "tls_cipher", "TLS_AES_256_GCM_SHA384");
    helper_obj_str(rec, "tls_protocol_version", "TLSv1.3");
    assert_null(json_object_get(rec, "session_id"));

    json_t *meta = json_object_get(rec, "meta");
    assert_int_equal(json_object_size(meta), 3);
    helper_obj_str(meta, "campaign", "c1");
    helper_obj_int(meta, "x_a", 1);
    helper_obj_str(meta, "x_b", "two");

    json_t *hdrs = json_object_get(rec, "headers");
    assert_int_equal(json_object_size(hdrs), 3);
    helper_obj_str(hdrs, "Subject", "hi");
    helper_obj_str(hdrs, "X-Other", "o folded");
    json_t *tags = json_object_get(hdrs, "X-Tag");
    assert_true(json_is_array(tags));
    assert_int_equal(json_array_size(tags), 2);
    assert_string_equal(json_string_value(json_array_get(tags, 0)), "one");
    assert_string_equal(json_string_value(json_array_get(tags, 1)), "two");

    json_decref(rec);
    helper_close(&f->loop, lr);
    json_decref(msg.meta);
    buf_fini(&msg.data);
}

static void
logrec_build_replaces_invalid_utf8(void **state)
{
    struct logrec_event ev = {
        .type = "Rejection",
        .code = 501,
        .content = "bad \xff\xfe byte \xe2\x82",
        .peer_name = "caf\xc3\xa9\xc0",
        .timestamp_us = TEST_TS_US,
    };
    json_t *rec = logrec_build(NULL, &ev);

    (void)state;
    json_t *resp = json_object_get(rec, "response");
    helper_obj_str(
        resp, "content",
        "bad \xef\xbf\xbd\xef\xbf\xbd byte \xef\xbf\xbd\xef\xbf\xbd");
    json_t *peer = json_object_get(rec, "peer_address");
    helper_obj_str(peer, "name", "caf\xc3\xa9\xef\xbf\xbd");
    helper_obj_str(peer, "addr", "");
    json_decref(rec);
}

static void
logrec_written_records_are_one_zstd_segment_in_order_after_close(void **state)
{
    struct fixture *f = *state;
    struct logrec_config cfg = {.log_dir = f->logs};
    struct logrec *lr = NULL;
    struct dirent **list = NULL;
    struct buf text = BUF_INIT;
    struct stat st;
    char path[600];

    enum { N = 3000 };

    assert_int_equal(logrec_open(&f->loop, &cfg, &lr), 0);
    helper_write_n(lr, 0, N, "OK");
    helper_close(&f->loop, lr);

    int n = helper_list(f->logs, &list);
    assert_int_equal(n, 1);
    /* YYYYMMDD-HHMMSS.ffffff */
    assert_int_equal(strlen(list[0]->d_name), 22);
    assert_int_equal(list[0]->d_name[8], '-');
    assert_int_equal(list[0]->d_name[15], '.');
    snprintf(path, sizeof(path), "%s/%s", f->logs, list[0]->d_name);
    assert_true(test_unzstd(path, &text));
    assert_int_equal(helper_check_lines(&text, 0), N);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0222, 0);
    buf_fini(&text);
    helper_free_list(list, n);
}

static void
logrec_rotates_by_size_into_several_complete_segments(void **state)
{
    struct fixture *f = *state;
    struct logrec_config cfg = {.log_dir = f->logs, .max_file_size = 8192};
    struct logrec *lr = NULL;
    struct dirent **list = NULL;
    char pad[400];

    enum { N = 200 };

    int total = 0;

    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    assert_int_equal(logrec_open(&f->loop, &cfg, &lr), 0);
    /* Two batches: one handed over now, one at close. */
    helper_write_n(lr, 0, N / 2, pad);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    helper_write_n(lr, N / 2, N / 2, pad);
    helper_close(&f->loop, lr);

    int n = helper_list(f->logs, &list);
    assert_true(n >= 5);
    for (int i = 0; i < n; i++) {
        struct buf text = BUF_INIT;
        char path[600];
        snprintf(path, sizeof(path), "%s/%s", f->logs, list[i]->d_name);
        assert_true(test_unzstd(path, &text));
        /* A segment stops at the record that reaches the limit. */
        assert_true(text.len < 8192 + 1024);
        if (i < n - 1) {
            assert_true(text.len >= 8192);
        }
        total += helper_check_lines(&text, total);
        buf_fini(&text);
    }
    assert_int_equal(total, N);
    helper_free_list(list, n);
}

static void
logrec_idle_segment_closes_after_max_segment_duration(void **state)
{
    struct fixture *f = *state;
    struct logrec_config cfg = {.log_dir = f->logs,
                                .max_segment_duration_ms = 150};
    struct logrec *lr = NULL;
    struct dirent **list = NULL;
    struct buf text = BUF_INIT;
    char path[600];

    assert_int_equal(logrec_open(&f->loop, &cfg, &lr), 0);
    helper_write_n(lr, 0, 3, "OK");
    struct stats_wait w = {lr, 1, 0};
    helper_run_until(&f->loop, helper_stats_reached, &w);

    /* Readable while the logger stays open. */
    int n = helper_list(f->logs, &list);
    assert_int_equal(n, 1);
    snprintf(path, sizeof(path), "%s/%s", f->logs, list[0]->d_name);
    assert_true(test_unzstd(path, &text));
    assert_int_equal(helper_check_lines(&text, 0), 3);
    helper_free_list(list, n);

    /* The next record opens a new segment, which expires in turn. */
    helper_write_n(lr, 3, 1, "OK");
    w.segments = 2;
    helper_run_until(&f->loop, helper_stats_reached, &w);
    helper_close(&f->loop, lr);
    n = helper_list(f->logs, &list);
    assert_int_equal(n, 2);
    helper_free_list(list, n);
    buf_fini(&text);
}

static void
logrec_write_failure_is_counted_and_logger_closes_cleanly(void **state)
{
    struct fixture *f = *state;
    struct logrec_config cfg = {.log_dir = f->logs};
    struct logrec *lr = NULL;
    struct logrec_stats st;

    assert_int_equal(logrec_open(&f->loop, &cfg, &lr), 0);
    assert_int_equal(rmdir(f->logs), 0);
    helper_write_n(lr, 0, 5, "OK");
    struct stats_wait w = {lr, 0, 1};
    helper_run_until(&f->loop, helper_stats_reached, &w);
    logrec_get_stats(lr, &st);
    assert_int_equal(st.records, 5);
    assert_int_equal(st.dropped, 5);
    assert_int_equal(st.segments, 0);
    helper_close(&f->loop, lr);
}

static void
logrec_open_without_log_dir_is_einval(void **state)
{
    struct fixture *f = *state;
    struct logrec_config cfg = {.log_dir = NULL};
    struct logrec *lr = NULL;

    assert_int_equal(logrec_open(&f->loop, &cfg, &lr), KM_EINVAL);
    cfg.log_dir = "";
    assert_int_equal(logrec_open(&f->loop, &cfg, &lr), KM_EINVAL);
    assert_null(lr);
}

static void
logrec_close_without_records_creates_no_segment(void **state)
{
    struct fixture *f = *state;
    struct logrec_config cfg = {.log_dir = f->logs};
    struct logrec *lr = NULL;
    struct dirent **list = NULL;

    assert_int_equal(logrec_open(&f->loop, &cfg, &lr), 0);
    helper_close(&f->loop, lr);
    int n = helper_list(f->logs, &list);
    assert_int_equal(n, 0);
    helper_free_list(list, n);
}

static void
logrec_segment_name_is_utc_start_time_with_microseconds(void **state)
{
    char name[40];

    (void)state;
    logrec_seg_name(TEST_TS_US, name, sizeof(name));
    assert_string_equal(name, "20261124-150000.123456");
    logrec_seg_name(1795532400000001LL, name, sizeof(name));
    assert_string_equal(name, "20261124-150000.000001");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(logrec_parse_enhanced_splits_code_from_text),
        cmocka_unit_test(
            logrec_parse_enhanced_rejects_non_codes_and_leaves_outputs),
        cmocka_unit_test(logrec_build_rejection_has_kumomta_fields),
        cmocka_unit_test_setup_teardown(
            logrec_build_reception_takes_message_fields_and_selected_meta_headers,
            setup, teardown),
        cmocka_unit_test(logrec_build_replaces_invalid_utf8),
        cmocka_unit_test_setup_teardown(
            logrec_written_records_are_one_zstd_segment_in_order_after_close,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            logrec_rotates_by_size_into_several_complete_segments, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            logrec_idle_segment_closes_after_max_segment_duration, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            logrec_write_failure_is_counted_and_logger_closes_cleanly, setup,
            teardown),
        cmocka_unit_test_setup_teardown(logrec_open_without_log_dir_is_einval,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            logrec_close_without_records_creates_no_segment, setup, teardown),
        cmocka_unit_test(
            logrec_segment_name_is_utc_start_time_with_microseconds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
