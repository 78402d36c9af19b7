/* test_kcli_table.c - unit tests of kcli's tables and the renderers built
 * on them: column widths from the widest cell (UTF-8 aware), right-aligned
 * numbers, no trailing blanks, and the bounce-list, suspend lists, cluster
 * status and error-line renderings of canned API answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/buf.h"
#include "base/km.h"
#include "kcli/kcli.h"

/* Fixture */

static int
kcli_table_test_setup(void **state)
{
    struct buf *out = calloc(1, sizeof(*out));

    buf_init(out);
    *state = out;
    return 0;
}

static int
kcli_table_test_teardown(void **state)
{
    buf_fini(*state);
    free(*state);
    return 0;
}

/* Helpers */

static json_t *
kcli_table_test_json(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);

    if (j == NULL) {
        fail_msg("bad test JSON: %s", jerr.text);
    }
    return j;
}

/* No line of `s` ends with a blank. */
static void
kcli_table_test_no_trailing_blanks(const char *s)
{
    for (const char *p = strchr(s, '\n'); p != NULL; p = strchr(p + 1, '\n')) {
        assert_true(p == s || p[-1] != ' ');
    }
}

/* Tests */

static void
kcli_table_pads_columns_to_widest_cell(void **state)
{
    static const char *const hdr[] = {"NAME", "COUNT", "NOTE"};
    static const char *const r1[] = {"a", "5", "x"};
    static const char *const r2[] = {"longer-name", "12345", NULL};
    struct buf *out = *state;
    struct kcli_table *t;

    assert_int_equal(kcli_table_new(3, hdr, &t), 0);
    kcli_table_align_right(t, 1);
    kcli_table_add_row(t, r1);
    kcli_table_add_row(t, r2);
    assert_int_equal(kcli_table_rows(t), 2);
    kcli_table_render(t, out);
    kcli_table_free(t);
    assert_string_equal(buf_cstr(out), "NAME         COUNT  NOTE\n"
                                       "a                5  x\n"
                                       "longer-name  12345  -\n");
}

static void
kcli_table_measures_utf8_in_characters(void **state)
{
    static const char *const hdr[] = {"Q", "N"};
    static const char *const r1[] = {"\xc3\xa9t\xc3\xa9", "1"};
    static const char *const r2[] = {"abcd", "2"};
    struct buf *out = *state;
    struct kcli_table *t;

    assert_int_equal(kcli_table_new(2, hdr, &t), 0);
    kcli_table_add_row(t, r1);
    kcli_table_add_row(t, r2);
    kcli_table_render(t, out);
    kcli_table_free(t);
    /* "été" is 3 characters wide, so it gets one pad blank before "  1". */
    assert_string_equal(buf_cstr(out), "Q     N\n"
                                       "\xc3\xa9t\xc3\xa9   1\n"
                                       "abcd  2\n");
}

static void
kcli_table_without_rows_prints_header_and_rejects_no_columns(void **state)
{
    static const char *const hdr[] = {"ID"};
    struct buf *out = *state;
    struct kcli_table *t;

    assert_int_equal(kcli_table_new(0, hdr, &t), KM_EINVAL);
    assert_int_equal(kcli_table_new(1, hdr, &t), 0);
    for (int i = 0; i < 50; i++) { /* grows past its first allocation */
        static const char *const row[] = {"x"};

        kcli_table_add_row(t, row);
    }
    kcli_table_free(t);
    assert_int_equal(kcli_table_new(1, hdr, &t), 0);
    kcli_table_render(t, out);
    kcli_table_free(t);
    assert_string_equal(buf_cstr(out), "ID\n");
}

static void
kcli_render_bounce_list_shows_remain_count_and_criteria(void **state)
{
    json_t *j = kcli_table_test_json(
        "[{\"id\":\"b1\",\"reason\":\"spam trap\",\"duration\":\"4m 59s "
        "120ms\",\"domain\":\"a.test\",\"tenant\":\"t\",\"total_bounced\":"
        "12,\"bounced\":{}},"
        "{\"id\":\"b2\",\"reason\":\"purge\",\"duration\":90,"
        "\"queue_names\":[\"q1\",\"q2\"],\"total_bounced\":0},"
        "{\"id\":\"b3\",\"reason\":\"all\"}]");
    struct buf *out = *state;

    kcli_render_bounce_list(j, out);
    json_decref(j);
    assert_string_equal(
        buf_cstr(out),
        "ID  REASON     REMAIN  BOUNCED  CRITERIA\n"
        "b1  spam trap  4m 59s       12  domain=a.test tenant=t\n"
        "b2  purge      1m30s         0  queue=q1,q2\n"
        "b3  all        -             -  (everything)\n");
    kcli_table_test_no_trailing_blanks(buf_cstr(out));
}

static void
kcli_render_suspend_lists_show_their_columns(void **state)
{
    json_t *s = kcli_table_test_json(
        "[{\"id\":\"s1\",\"reason\":\"r\",\"duration\":\"2h\","
        "\"campaign\":\"c\"}]");
    json_t *rq = kcli_table_test_json(
        "[{\"id\":\"r1\",\"name\":\"src->site@smtp_client\",\"reason\":"
        "\"slow\",\"duration\":3700}]");
    struct buf *out = *state;

    kcli_render_suspend_list(s, out);
    assert_string_equal(buf_cstr(out), "ID  REASON  REMAIN  CRITERIA\n"
                                       "s1  r       2h      campaign=c\n");
    buf_reset(out);
    kcli_render_suspend_ready_q_list(rq, out);
    assert_string_equal(buf_cstr(out),
                        "ID  NAME                   REASON  REMAIN\n"
                        "r1  src->site@smtp_client  slow    1h1m\n");
    json_decref(s);
    json_decref(rq);
}

static void
kcli_render_cluster_status_marks_unreachable_member(void **state)
{
    json_t *j = kcli_table_test_json(
        "{\"cluster_id\":\"c-42\",\"term\":7,\"leader\":\"n1\","
        "\"commit_index\":1000,\"members\":["
        "{\"id\":\"n1\",\"raft_address\":\"127.0.0.1:7001\",\"role\":"
        "\"leader\",\"applied_index\":1000,\"last_ping_age_ms\":0,"
        "\"queued\":5,\"lease\":\"ok\",\"shards_owned\":22,"
        "\"shards_backed\":43,\"under_replicated\":2,"
        "\"free_bytes\":5368709120,\"policy_checksum\":\"9f3c1a2e0b7d4c11\","
        "\"version\":\"0.1.0\",\"state\":\"up\"},"
        "{\"id\":\"n2\",\"raft_address\":\"127.0.0.1:7002\",\"role\":"
        "\"follower\",\"applied_index\":990,\"last_ping_age_ms\":1500,"
        "\"queued\":0,\"version\":\"0.1.0\",\"state\":\"up\"},"
        "{\"id\":\"n3\",\"address\":\"127.0.0.1:7003\",\"role\":"
        "\"follower\",\"applied_index\":900,\"lag\":100,"
        "\"last_ping_age_ms\":65000,\"unreachable\":true}]}");
    struct buf *out = *state;

    kcli_render_cluster_status(j, out);
    json_decref(j);
    assert_string_equal(
        buf_cstr(out),
        "CLUSTER  c-42\n"
        "TERM     7\n"
        "LEADER   n1\n"
        "COMMIT   1000\n"
        "\n"
        "ID  RAFT ADDRESS    ROLE      APPLIED  LAG  PING  QUEUED  LEASE  "
        "SHARDS  UNDER  FREE  POLICY            VERSION  TLS  STATE\n"
        "n1  127.0.0.1:7001  leader       1000    0   0ms       5  ok      "
        "22/43      2    5G  9f3c1a2e0b7d4c11  0.1.0    -    up\n"
        "n2  127.0.0.1:7002  follower      990   10    1s       0  -      "
        "     -      -     -  -                 0.1.0    -    up\n"
        "n3  127.0.0.1:7003  follower      900  100  1m5s       -  -      "
        "     -      -     -  -                 -        -    unreachable\n");
}

static void
kcli_render_cluster_status_shows_unowned_messages(void **state)
{
    json_t *j = kcli_table_test_json(
        "{\"cluster_id\":\"c-42\",\"term\":3,\"leader\":3,"
        "\"commit_index\":1796,\"unowned_messages\":12,\"members\":[]}");
    struct buf *out = *state;

    kcli_render_cluster_status(j, out);
    json_decref(j);
    assert_non_null(strstr(buf_cstr(out), "COMMIT   1796\n"
                                          "UNOWNED  12\n"
                                          "\n"));
}

static void
kcli_render_http_error_prefers_json_error_then_first_line(void **state)
{
    static const char json_body[] = "{\"error\":\"no such rule\"}";
    static const char text_body[] = "\n  Bad Request: missing reason  \r\n"
                                    "second line\n";
    struct buf *out = *state;

    kcli_render_http_error("DELETE", "/api/admin/bounce/v1", 404, json_body,
                           strlen(json_body), out);
    assert_string_equal(buf_cstr(out),
                        "DELETE /api/admin/bounce/v1: 404 no such rule");
    buf_reset(out);
    kcli_render_http_error("POST", "/x", 400, text_body, strlen(text_body),
                           out);
    assert_string_equal(buf_cstr(out),
                        "POST /x: 400 Bad Request: missing reason");
    buf_reset(out);
    kcli_render_http_error("GET", "/y", 500, "", 0, out);
    assert_string_equal(buf_cstr(out), "GET /y: 500");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f)                                                                   \
    cmocka_unit_test_setup_teardown(f, kcli_table_test_setup,                  \
                                    kcli_table_test_teardown)
        T(kcli_table_pads_columns_to_widest_cell),
        T(kcli_table_measures_utf8_in_characters),
        T(kcli_table_without_rows_prints_header_and_rejects_no_columns),
        T(kcli_render_bounce_list_shows_remain_count_and_criteria),
        T(kcli_render_suspend_lists_show_their_columns),
        T(kcli_render_cluster_status_marks_unreachable_member),
        T(kcli_render_cluster_status_shows_unowned_messages),
        T(kcli_render_http_error_prefers_json_error_then_first_line),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
