/* test_smtp_server_config.c - kumo.start_esmtp_listener parameters:
 * KumoMTA's defaults, overrides, bad CIDR, certificate without key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "base/km.h"
#include "smtp_server_int.h"

/* ---- Fixture ---- */

struct fixture {
    struct smtp_server_config cfg;
    bool parsed;
    char err[256];
};

static int
setup(void **state)
{
    *state = test_calloc(1, sizeof(struct fixture));
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    if (f->parsed) {
        smtp_server_config_fini(&f->cfg);
    }
    test_free(f);
    return 0;
}

/* ---- Helpers ---- */

static int
parse_json(struct fixture *f, const char *text)
{
    json_error_t jerr;
    json_t *params = text != NULL ? json_loads(text, 0, &jerr) : NULL;
    int rv;

    if (text != NULL) {
        assert_non_null(params);
    }
    rv = smtp_server_config_parse(params, &f->cfg, f->err, sizeof(f->err));
    f->parsed = rv == 0;
    json_decref(params);
    return rv;
}

static bool
relays(struct fixture *f, const char *ip)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':') != NULL) {
        ss.ss_family = AF_INET6;
        assert_int_equal(
            inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr),
            1);
    } else {
        ss.ss_family = AF_INET;
        assert_int_equal(
            inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr), 1);
    }
    return km_cidr_list_contains_sa(&f->cfg.relay_hosts,
                                    (struct sockaddr *)&ss);
}

/* ---- Tests ---- */

static void
config_defaults_match_kumomta(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(parse_json(f, "{}"), 0);
    assert_string_equal(f->cfg.listen, "127.0.0.1:2025");
    assert_string_equal(f->cfg.hostname, km_hostname());
    assert_string_equal(f->cfg.banner, "KumoMTA");
    assert_int_equal(f->cfg.max_connections, 32768);
    assert_int_equal(f->cfg.max_message_size, 20 * 1024 * 1024);
    assert_int_equal(f->cfg.max_recipients_per_message, 1024);
    assert_int_equal(f->cfg.max_messages_per_connection, 10000);
    assert_int_equal(f->cfg.client_timeout_ms, 60000);
    assert_int_equal(f->cfg.data_processing_timeout_ms, 300000);
    assert_int_equal(f->cfg.line_length_hard_limit, 998);
    assert_int_equal(f->cfg.invalid_line_endings, SMTP_SERVER_LE_DENY);
    assert_null(f->cfg.tls_certificate);
    assert_null(f->cfg.tls_private_key);
    assert_true(f->cfg.received_header);
    assert_true(f->cfg.supplemental_header);
    assert_string_equal(f->cfg.trace_header_name, "X-KumoRef");
    assert_true(relays(f, "127.0.0.1"));
    assert_true(relays(f, "::1"));
    assert_false(relays(f, "127.0.0.2"));
    assert_false(relays(f, "192.0.2.1"));
}

static void
config_null_params_take_defaults(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(parse_json(f, NULL), 0);
    assert_string_equal(f->cfg.listen, "127.0.0.1:2025");
}

static void
config_overrides_apply(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(
        parse_json(f, "{\"listen\":\"[::1]:2526\",\"hostname\":\"mx.test\","
                      "\"banner\":\"Hi\",\"relay_hosts\":[\"10.0.0.0/8\"],"
                      "\"max_connections\":5,\"max_message_size\":1000,"
                      "\"max_recipients_per_message\":3,"
                      "\"max_messages_per_connection\":7,"
                      "\"client_timeout\":1500,"
                      "\"data_processing_timeout\":\"2s\","
                      "\"line_length_hard_limit\":100,"
                      "\"invalid_line_endings\":\"Fix\","
                      "\"trace_headers\":{\"received_header\":false,"
                      "\"supplemental_header\":false,\"header_name\":\"X-R\","
                      "\"include_meta_names\":[\"tenant\"]},"
                      "\"deferred_queue\":false}"),
        0);
    assert_string_equal(f->cfg.listen, "[::1]:2526");
    assert_string_equal(f->cfg.hostname, "mx.test");
    assert_string_equal(f->cfg.banner, "Hi");
    assert_int_equal(f->cfg.max_connections, 5);
    assert_int_equal(f->cfg.max_message_size, 1000);
    assert_int_equal(f->cfg.max_recipients_per_message, 3);
    assert_int_equal(f->cfg.max_messages_per_connection, 7);
    assert_int_equal(f->cfg.client_timeout_ms, 1500);
    assert_int_equal(f->cfg.data_processing_timeout_ms, 2000);
    assert_int_equal(f->cfg.line_length_hard_limit, 100);
    assert_int_equal(f->cfg.invalid_line_endings, SMTP_SERVER_LE_FIX);
    assert_false(f->cfg.received_header);
    assert_false(f->cfg.supplemental_header);
    assert_string_equal(f->cfg.trace_header_name, "X-R");
    assert_int_equal(f->cfg.n_include_meta_names, 1);
    assert_string_equal(f->cfg.include_meta_names[0], "tenant");
    assert_true(relays(f, "10.1.2.3"));
    assert_false(relays(f, "127.0.0.1"));
}

static void
config_bad_cidr_is_named(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(
        parse_json(f, "{\"relay_hosts\":[\"127.0.0.1\",\"10.0.0.1/8\"]}"),
        KM_ECONFIG);
    assert_non_null(strstr(f->err, "10.0.0.1/8"));
    assert_int_equal(parse_json(f, "{\"relay_hosts\":[\"nonsense\"]}"),
                     KM_ECONFIG);
    assert_non_null(strstr(f->err, "nonsense"));
}

static void
config_certificate_without_key_fails(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(parse_json(f, "{\"tls_certificate\":\"/tmp/c.pem\"}"),
                     KM_ECONFIG);
    assert_non_null(strstr(f->err, "tls_private_key"));
    assert_int_equal(parse_json(f, "{\"tls_private_key\":\"/tmp/k.pem\"}"),
                     KM_ECONFIG);
    assert_int_equal(parse_json(f, "{\"tls_certificate\":\"/tmp/c.pem\","
                                   "\"tls_private_key\":\"/tmp/k.pem\"}"),
                     0);
    assert_string_equal(f->cfg.tls_certificate, "/tmp/c.pem");
}

static void
config_bad_values_fail(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(parse_json(f, "{\"listen\":\"nowhere\"}"), KM_ECONFIG);
    assert_non_null(strstr(f->err, "nowhere"));
    assert_int_equal(parse_json(f, "{\"invalid_line_endings\":\"Maybe\"}"),
                     KM_ECONFIG);
    assert_int_equal(parse_json(f, "{\"max_message_size\":-1}"), KM_ECONFIG);
    assert_int_equal(parse_json(f, "{\"client_timeout\":true}"), KM_ECONFIG);
    assert_int_equal(parse_json(f, "{\"banner\":5}"), KM_ECONFIG);
    assert_int_equal(parse_json(f, "[]"), KM_ECONFIG);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(config_defaults_match_kumomta, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(config_null_params_take_defaults, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(config_overrides_apply, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(config_bad_cidr_is_named, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(config_certificate_without_key_fails,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(config_bad_values_fail, setup,
                                        teardown),
    };
    km_hostname_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
