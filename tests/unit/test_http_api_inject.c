/* test_http_api_inject.c - unit tests of the inject body parser and the
 * message builder, no network: raw content templated per recipient, the
 * MIME builder (headers, multipart/alternative and multipart/mixed
 * boundaries, base64 attachments, To synthesised unless given), and the
 * 400/422 answers that name the bad field. */
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

/* 2026-11-24T15:00:00Z */
#define INJECT_TEST_NOW_MS 1795532400000LL

/* Helpers */

static struct http_api_inject *
inject_test_parse(const char *text)
{
    json_error_t jerr;
    json_t *body = json_loads(text, 0, &jerr);
    struct http_api_inject *inj = NULL;
    char err[512] = "";
    int status = 0;

    assert_non_null(body);
    if (http_api_inject_parse(body, &inj, &status, err, sizeof(err)) != 0) {
        fail_msg("parse: %d %s", status, err);
    }
    json_decref(body);
    return inj;
}

static void
inject_test_parse_fails(const char *text, int want_status, const char *want)
{
    json_error_t jerr;
    json_t *body = json_loads(text, 0, &jerr);
    struct http_api_inject *inj = NULL;
    char err[512] = "";
    int status = 0;

    assert_non_null(body);
    assert_int_not_equal(
        http_api_inject_parse(body, &inj, &status, err, sizeof(err)), 0);
    assert_null(inj);
    assert_int_equal(status, want_status);
    if (strstr(err, want) == NULL) {
        fail_msg("error '%s' does not contain '%s'", err, want);
    }
    json_decref(body);
}

static char *
inject_test_build(struct http_api_inject *inj, size_t i, const char *msgid)
{
    struct buf out = BUF_INIT;
    char *s;

    http_api_inject_build(inj, i, msgid, "mx.example.test", INJECT_TEST_NOW_MS,
                          &out);
    s = strdup(buf_cstr(&out));
    buf_fini(&out);
    return s;
}

static void
inject_test_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL) {
        fail_msg("message lacks '%s':\n%s", needle, hay);
    }
}

/* Tests */

static void
inject_raw_content_is_templated_per_recipient(void **state)
{
    struct http_api_inject *inj;
    char *m0, *m1;

    (void)state;
    inj = inject_test_parse(
        "{\"envelope_sender\":\"noreply@example.test\","
        "\"substitutions\":{\"product\":\"Widget\",\"who\":\"all\"},"
        "\"recipients\":[{\"email\":\"a@dest.test\",\"name\":\"Ann\","
        "\"substitutions\":{\"who\":\"you\"}},{\"email\":\"b@dest.test\"}],"
        "\"content\":\"Subject: {{ product }} for {{ name | default('x') "
        "}}\\r\\nTo: {{ email }}\\r\\n\\r\\nHi {{ who }}\\r\\n\"}");
    assert_int_equal(http_api_inject_count(inj), 2);
    assert_string_equal(http_api_inject_sender(inj), "noreply@example.test");
    assert_string_equal(http_api_inject_recipient(inj, 1), "b@dest.test");
    m0 = inject_test_build(inj, 0, "id0");
    m1 = inject_test_build(inj, 1, "id1");
    assert_string_equal(m0, "Subject: Widget for Ann\r\nTo: a@dest.test\r\n"
                            "\r\nHi you\r\n");
    assert_string_equal(m1, "Subject: Widget for x\r\nTo: b@dest.test\r\n"
                            "\r\nHi all\r\n");
    free(m0);
    free(m1);
    http_api_inject_free(inj);
}

static void
inject_builder_makes_multipart_alternative_with_synthesised_to(void **state)
{
    struct http_api_inject *inj;
    char *m;

    (void)state;
    inj = inject_test_parse(
        "{\"envelope_sender\":\"s@example.test\",\"recipients\":[{\"email\":"
        "\"bob@dest.test\",\"name\":\"Bob B\"}],\"content\":{\"subject\":"
        "\"Hello {{ name }}\",\"from\":{\"email\":\"news@example.test\","
        "\"name\":\"News\"},\"reply_to\":{\"email\":\"help@example.test\"},"
        "\"text_body\":\"text for {{ email }}\",\"html_body\":\"<p>html "
        "{{ name }}</p>\",\"headers\":{\"X-Campaign\":\"c-{{ name }}\"}}}");
    m = inject_test_build(inj, 0, "abc123");
    inject_test_contains(m, "From: News <news@example.test>\r\n");
    inject_test_contains(m, "To: Bob B <bob@dest.test>\r\n");
    inject_test_contains(m, "Subject: Hello Bob B\r\n");
    inject_test_contains(m, "Reply-To: help@example.test\r\n");
    inject_test_contains(m, "X-Campaign: c-Bob B\r\n");
    inject_test_contains(m, "MIME-Version: 1.0\r\n");
    inject_test_contains(m, "Date: Tue, 24 Nov 2026 15:00:00 +0000\r\n");
    inject_test_contains(m, "Message-ID: <abc123@mx.example.test>\r\n");
    inject_test_contains(m, "Content-Type: multipart/alternative;\r\n "
                            "boundary=\"=_kumod_alt_abc123\"\r\n\r\n"
                            "--=_kumod_alt_abc123\r\n"
                            "Content-Type: text/plain; charset=utf-8\r\n"
                            "Content-Transfer-Encoding: 7bit\r\n\r\n"
                            "text for bob@dest.test\r\n"
                            "--=_kumod_alt_abc123\r\n"
                            "Content-Type: text/html; charset=utf-8\r\n"
                            "Content-Transfer-Encoding: 7bit\r\n\r\n"
                            "<p>html Bob B</p>\r\n"
                            "--=_kumod_alt_abc123--\r\n");
    assert_null(strstr(m, "multipart/mixed"));
    free(m);
    http_api_inject_free(inj);
}

static void
inject_builder_keeps_a_given_to_header(void **state)
{
    struct http_api_inject *inj;
    char *m;

    (void)state;
    inj = inject_test_parse(
        "{\"envelope_sender\":\"s@example.test\",\"recipients\":[{\"email\":"
        "\"bob@dest.test\"}],\"content\":{\"from\":{\"email\":"
        "\"n@example.test\"},\"text_body\":\"hi\",\"headers\":{\"To\":"
        "\"list@example.test\"}}}");
    m = inject_test_build(inj, 0, "x");
    inject_test_contains(m, "To: list@example.test\r\n");
    assert_null(strstr(m, "bob@dest.test"));
    inject_test_contains(m, "Content-Type: text/plain; charset=utf-8\r\n");
    free(m);
    http_api_inject_free(inj);
}

static void
inject_builder_adds_base64_attachments_in_multipart_mixed(void **state)
{
    struct http_api_inject *inj;
    char *m;

    (void)state;
    inj = inject_test_parse(
        "{\"envelope_sender\":\"s@example.test\",\"recipients\":[{\"email\":"
        "\"bob@dest.test\"}],\"content\":{\"from\":{\"email\":"
        "\"n@example.test\"},\"text_body\":\"see attached\","
        "\"attachments\":[{\"data\":\"hello world\",\"content_type\":"
        "\"text/plain\",\"file_name\":\"a.txt\"},{\"data\":\"AAEC/w==\","
        "\"base64\":true,\"content_type\":\"image/png\",\"content_id\":"
        "\"img1\"}]}}");
    m = inject_test_build(inj, 0, "m1");
    inject_test_contains(m, "Content-Type: multipart/mixed;\r\n "
                            "boundary=\"=_kumod_mixed_m1\"\r\n\r\n"
                            "--=_kumod_mixed_m1\r\n"
                            "Content-Type: text/plain; charset=utf-8\r\n");
    inject_test_contains(m, "--=_kumod_mixed_m1\r\nContent-Type: text/plain;"
                            "\r\n name=\"a.txt\"\r\n"
                            "Content-Transfer-Encoding: base64\r\n"
                            "Content-Disposition: attachment;\r\n "
                            "filename=\"a.txt\"\r\n\r\n"
                            "aGVsbG8gd29ybGQ=\r\n");
    inject_test_contains(m, "Content-Type: image/png\r\n"
                            "Content-Transfer-Encoding: base64\r\n"
                            "Content-Disposition: inline\r\n"
                            "Content-ID: <img1>\r\n\r\nAAEC/w==\r\n"
                            "--=_kumod_mixed_m1--\r\n");
    free(m);
    http_api_inject_free(inj);
}

static void
inject_builder_encodes_non_ascii_text_and_subject(void **state)
{
    struct http_api_inject *inj;
    char *m;

    (void)state;
    inj = inject_test_parse(
        "{\"envelope_sender\":\"s@example.test\",\"recipients\":[{\"email\":"
        "\"bob@dest.test\"}],\"content\":{\"from\":{\"email\":"
        "\"n@example.test\"},\"subject\":\"caf\\u00e9\",\"text_body\":"
        "\"a=b caf\\u00e9\"}}");
    m = inject_test_build(inj, 0, "q");
    inject_test_contains(m, "Subject: =?UTF-8?B?Y2Fmw6k=?=\r\n");
    inject_test_contains(m, "Content-Transfer-Encoding: quoted-printable\r\n"
                            "\r\na=3Db caf=C3=A9\r\n");
    free(m);
    http_api_inject_free(inj);
}

static void
inject_parse_rejects_bad_fields_with_400_naming_them(void **state)
{
    (void)state;
    inject_test_parse_fails("[]", 400, "JSON object");
    inject_test_parse_fails("{\"recipients\":[{\"email\":\"a@b.test\"}],"
                            "\"content\":\"x\"}",
                            400, "envelope_sender");
    inject_test_parse_fails("{\"envelope_sender\":\"a@b.test\","
                            "\"recipients\":[],\"content\":\"x\"}",
                            400, "recipients");
    inject_test_parse_fails("{\"envelope_sender\":\"a@b.test\","
                            "\"recipients\":[{\"email\":\"nope\"}],"
                            "\"content\":\"x\"}",
                            400, "recipients[0].email");
    inject_test_parse_fails("{\"envelope_sender\":\"a@b.test\","
                            "\"recipients\":[{\"email\":\"c@d.test\"}]}",
                            400, "content");
    inject_test_parse_fails("{\"envelope_sender\":\"a@b.test\","
                            "\"recipients\":[{\"email\":\"c@d.test\"}],"
                            "\"content\":{\"text_body\":\"x\"}}",
                            400, "content.from.email");
    inject_test_parse_fails(
        "{\"envelope_sender\":\"a@b.test\",\"recipients\":[{\"email\":"
        "\"c@d.test\"}],\"content\":{\"from\":{\"email\":\"e@f.test\"},"
        "\"text_body\":\"x\",\"attachments\":[{\"data\":\"!!\","
        "\"base64\":true}]}}",
        400, "content.attachments[0].data");
}

static void
inject_parse_rejects_template_errors_with_422(void **state)
{
    (void)state;
    inject_test_parse_fails("{\"envelope_sender\":\"a@b.test\","
                            "\"recipients\":[{\"email\":\"c@d.test\"}],"
                            "\"content\":\"Hi {{ name \"}",
                            422,
                            "content: template syntax error: line 1 "
                            "column 4");
    inject_test_parse_fails(
        "{\"envelope_sender\":\"a@b.test\",\"recipients\":[{\"email\":"
        "\"c@d.test\"}],\"content\":{\"from\":{\"email\":\"e@f.test\"},"
        "\"subject\":\"{% if x %}\",\"text_body\":\"x\"}}",
        422, "content.subject");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(inject_raw_content_is_templated_per_recipient),
        cmocka_unit_test(
            inject_builder_makes_multipart_alternative_with_synthesised_to),
        cmocka_unit_test(inject_builder_keeps_a_given_to_header),
        cmocka_unit_test(
            inject_builder_adds_base64_attachments_in_multipart_mixed),
        cmocka_unit_test(inject_builder_encodes_non_ascii_text_and_subject),
        cmocka_unit_test(inject_parse_rejects_bad_fields_with_400_naming_them),
        cmocka_unit_test(inject_parse_rejects_template_errors_with_422),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
