/* test_policy.c - the Lua policy (policy/): loading, kumo.on dispatch,
 * schema-validated config calls reaching a fake host as JSON, kumo.reject,
 * error reporting with file:line, the Message / EnvelopeAddress /
 * ConnectionMeta objects, kumo.make_*{} objects, sealing, and the shipped
 * example policies. The host is a fake: a tiny refcounted message and a
 * config callback that records every call. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "base/buf.h"
#include "base/km.h"
#include "policy.h"

/* ---- Fixture ---- */

struct fake_msg {
    int refs;
    char *sender;
    char *recipient;
    json_t *meta;
    struct buf data;
};

struct fx {
    char dir[512];
    char path[600];
    struct policy *p;
    json_t *calls;   /* [{fn, params}] recorded by the config callback */
    int fail_config; /* non-zero: the callback fails with this code */
    struct fake_msg *msg;
};

static void
fake_msg_ref(void *m)
{
    ((struct fake_msg *)m)->refs++;
}

static void
fake_msg_unref(void *m)
{
    struct fake_msg *fm = m;

    if (--fm->refs == 0) {
        free(fm->sender);
        free(fm->recipient);
        json_decref(fm->meta);
        buf_fini(&fm->data);
        free(fm);
    }
}

static const char *
fake_msg_id(void *m)
{
    (void)m;
    return "0123456789abcdef0123456789abcdef";
}

static const char *
fake_msg_sender(void *m)
{
    return ((struct fake_msg *)m)->sender;
}

static const char *
fake_msg_recipient(void *m)
{
    return ((struct fake_msg *)m)->recipient;
}

static int
fake_msg_set_addr(char **slot, const char *addr)
{
    if (addr[0] != '\0' && strchr(addr, '@') == NULL) {
        return KM_EINVAL;
    }
    free(*slot);
    *slot = km_strdup(addr);
    return 0;
}

static int
fake_msg_set_sender(void *m, const char *addr)
{
    return fake_msg_set_addr(&((struct fake_msg *)m)->sender, addr);
}

static int
fake_msg_set_recipient(void *m, const char *addr)
{
    return fake_msg_set_addr(&((struct fake_msg *)m)->recipient, addr);
}

static json_t *
fake_msg_meta(void *m)
{
    return ((struct fake_msg *)m)->meta;
}

static struct buf *
fake_msg_data(void *m)
{
    return &((struct fake_msg *)m)->data;
}

static uint32_t
fake_msg_num_attempts(void *m)
{
    (void)m;
    return 2;
}

static const char *
fake_msg_queue_name(void *m)
{
    (void)m;
    return "example.net";
}

static int
fake_config(void *ctx, const char *fn, json_t *params, char *err, size_t errlen)
{
    struct fx *fx = ctx;

    if (fx->fail_config != 0) {
        snprintf(err, errlen, "cannot bind: address in use");
        return fx->fail_config;
    }
    json_array_append_new(fx->calls,
                          json_pack("{s:s, s:O}", "fn", fn, "params", params));
    return 0;
}

static const char *const fx_test_events[] = {
    "check", "custom_event", "calls",   "bump", "leak",  "new", "later",
    "bad",   "bad_tls",      "rewrite", "rt",   "cycle", NULL,
};

static int
setup(void **state)
{
    struct fx *fx = km_calloc(1, sizeof(*fx));
    const char *tmp = getenv("KUMO_TEST_TMP");
    struct policy_host host = {
        .ctx = fx,
        .msg =
            {
                .ref = fake_msg_ref,
                .unref = fake_msg_unref,
                .id = fake_msg_id,
                .sender = fake_msg_sender,
                .recipient = fake_msg_recipient,
                .set_sender = fake_msg_set_sender,
                .set_recipient = fake_msg_set_recipient,
                .meta = fake_msg_meta,
                .data = fake_msg_data,
                .num_attempts = fake_msg_num_attempts,
                .queue_name = fake_msg_queue_name,
            },
        .config = fake_config,
    };

    if (tmp != NULL) {
        (void)mkdir(tmp, 0700);
    }
    snprintf(fx->dir, sizeof(fx->dir), "%s/policy-XXXXXX",
             tmp != NULL ? tmp : "/tmp");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->path, sizeof(fx->path), "%s/policy.lua", fx->dir);
    fx->calls = json_array();
    assert_int_equal(policy_new(&host, &fx->p), 0);
    /* The tests call handlers under names of their own. */
    for (size_t i = 0; fx_test_events[i] != NULL; i++) {
        policy_declare_event(fx->p, fx_test_events[i]);
    }

    fx->msg = km_calloc(1, sizeof(*fx->msg));
    fx->msg->refs = 1;
    fx->msg->sender = km_strdup("alice@Example.COM");
    fx->msg->recipient = km_strdup("bob@example.net");
    fx->msg->meta = json_object();
    buf_append_str(&fx->msg->data, "From: alice@example.com\r\n"
                                   "Subject: hi\r\n"
                                   "X-Test: one\r\n"
                                   "X-Test: two\r\n"
                                   "\r\n"
                                   "body\r\n");
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *fx = *state;

    policy_free(fx->p);
    /* Every Message userdata has dropped its reference. */
    assert_int_equal(fx->msg->refs, 1);
    fake_msg_unref(fx->msg);
    json_decref(fx->calls);
    (void)unlink(fx->path);
    assert_int_equal(rmdir(fx->dir), 0);
    free(fx);
    return 0;
}

/* ---- Helpers ---- */

static int
fx_load(struct fx *fx, const char *src, char *err, size_t errlen)
{
    FILE *f = fopen(fx->path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(src, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    return policy_load(fx->p, fx->path, err, errlen);
}

static void
fx_load_ok(struct fx *fx, const char *src)
{
    char err[1024] = "";
    int rv = fx_load(fx, src, err, sizeof(err));

    if (rv != 0) {
        fail_msg("policy_load: %s", err);
    }
}

/* Call `event` without arguments; expect success. */
static void
fx_call_ok(struct fx *fx, const char *event, struct policy_result *res)
{
    char err[1024] = "";
    int rv = policy_call(fx->p, event, NULL, 0, res, err, sizeof(err));

    if (rv != 0) {
        fail_msg("policy_call(%s): %d %s", event, rv, err);
    }
}

/* Run init expecting KM_EPOLICY; the message lands in err. */
static void
fx_init_fails(struct fx *fx, char *err, size_t errlen)
{
    struct policy_result res;

    assert_int_equal(policy_call(fx->p, "init", NULL, 0, &res, err, errlen),
                     KM_EPOLICY);
    assert_null(res.value);
    policy_result_fini(&res);
}

static json_t *
fx_call_params(struct fx *fx, size_t i, const char *fn)
{
    json_t *call = json_array_get(fx->calls, i);

    assert_non_null(call);
    assert_string_equal(json_string_value(json_object_get(call, "fn")), fn);
    return json_object_get(call, "params");
}

static void
assert_contains(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) == NULL) {
        fail_msg("'%s' does not contain '%s'", haystack, needle);
    }
}

static json_int_t
jint(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static const char *
jstr(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    assert_true(json_is_string(v));
    return json_string_value(v);
}

/* ---- Tests: loading, require, errors ---- */

static void
require_kumo_returns_the_global_kumo_table(void **state)
{
    struct fx *fx = *state;
    struct policy_result res;

    fx_load_ok(fx, "local k = require 'kumo'\n"
                   "kumo.on('check', function() return k == kumo end)\n");
    fx_call_ok(fx, "check", &res);
    assert_true(res.had_handler);
    assert_true(json_is_true(res.value));
    policy_result_fini(&res);
}

static void
syntax_error_fails_load_with_file_and_line(void **state)
{
    struct fx *fx = *state;
    char err[1024] = "";
    char where[700];

    assert_int_equal(
        fx_load(fx, "local x = 1\nlocal = oops\n", err, sizeof(err)),
        KM_EPOLICY);
    snprintf(where, sizeof(where), "%s:2:", fx->path);
    assert_contains(err, where);
}

static void
top_level_runtime_error_fails_load_with_file_and_line(void **state)
{
    struct fx *fx = *state;
    char err[1024] = "";
    char where[700];

    assert_int_equal(fx_load(fx, "\n\nerror('boom')\n", err, sizeof(err)),
                     KM_EPOLICY);
    snprintf(where, sizeof(where), "%s:3: boom", fx->path);
    assert_contains(err, where);
    assert_null(strstr(err, "stack traceback"));
}

static void
handler_runtime_error_returns_epolicy_with_message(void **state)
{
    struct fx *fx = *state;
    struct policy_result res;
    char err[1024] = "";
    char where[700];

    fx_load_ok(fx, "kumo.on('smtp_server_ehlo', function(d)\n"
                   "  local t = nil\n"
                   "  return t.field\n"
                   "end)\n");
    assert_int_equal(
        policy_call(fx->p, "smtp_server_ehlo", NULL, 0, &res, err, sizeof(err)),
        KM_EPOLICY);
    assert_true(res.had_handler);
    assert_null(res.value);
    snprintf(where, sizeof(where), "%s:3:", fx->path);
    assert_contains(err, where);
    assert_contains(err, "attempt to index");
    policy_result_fini(&res);
}

static void
call_without_handler_returns_zero_and_no_handler(void **state)
{
    struct fx *fx = *state;
    struct policy_result res;

    fx_load_ok(fx, "kumo.on('init', function() end)\n");
    fx_call_ok(fx, "smtp_server_mail_from", &res);
    assert_false(res.had_handler);
    assert_null(res.value);
    assert_false(policy_has_handler(fx->p, "smtp_server_mail_from"));
    assert_true(policy_has_handler(fx->p, "init"));
    policy_result_fini(&res);
}

static void
reject_in_handler_returns_ereject_with_code_and_text(void **state)
{
    struct fx *fx = *state;
    struct policy_result res;

    fx_load_ok(fx, "kumo.on('smtp_server_mail_from', function(sender)\n"
                   "  kumo.reject(550, '5.7.1 go away')\n"
                   "end)\n"
                   "kumo.on('smtp_server_rcpt_to', function()\n"
                   "  kumo.reject(421, '4.3.2 busy')\n"
                   "end)\n"
                   "kumo.on('smtp_server_ehlo', function()\n"
                   "  kumo.disconnect(550, '5.7.1 bye')\n"
                   "end)\n");
    assert_int_equal(
        policy_call(fx->p, "smtp_server_mail_from", NULL, 0, &res, NULL, 0),
        KM_EREJECT);
    assert_int_equal(res.reject.code, 550);
    assert_string_equal(res.reject.text, "5.7.1 go away");
    assert_false(res.reject.disconnect);
    policy_result_fini(&res);

    assert_int_equal(
        policy_call(fx->p, "smtp_server_rcpt_to", NULL, 0, &res, NULL, 0),
        KM_EREJECT);
    assert_int_equal(res.reject.code, 421);
    assert_true(res.reject.disconnect);
    policy_result_fini(&res);

    assert_int_equal(
        policy_call(fx->p, "smtp_server_ehlo", NULL, 0, &res, NULL, 0),
        KM_EREJECT);
    assert_int_equal(res.reject.code, 550);
    assert_string_equal(res.reject.text, "5.7.1 bye");
    assert_true(res.reject.disconnect);
    policy_result_fini(&res);
}

static void
single_event_keeps_last_registration(void **state)
{
    struct fx *fx = *state;
    struct policy_result res;

    fx_load_ok(fx, "kumo.on('custom_event', function() return 1 end)\n"
                   "kumo.on('custom_event', function() return 2 end)\n");
    fx_call_ok(fx, "custom_event", &res);
    assert_int_equal(json_integer_value(res.value), 2);
    policy_result_fini(&res);
}

static void
multi_get_queue_config_first_non_nil_wins(void **state)
{
    struct fx *fx = *state;
    struct policy_result res;

    fx_load_ok(fx, "local calls = 0\n"
                   "kumo.on('pre_init', function() calls = calls + 1 end)\n"
                   "kumo.on('pre_init', function() calls = calls + 10 end)\n"
                   "kumo.on('calls', function() return calls end)\n"
                   "kumo.on('get_queue_config', function() return nil end)\n"
                   "kumo.on('get_queue_config', function(domain)\n"
                   "  return kumo.make_queue_config{egress_pool='first',\n"
                   "    retry_interval='20m', max_age=3600,\n"
                   "    protocol={smtp={mx_list='127.0.0.1'}}}\n"
                   "end)\n"
                   "kumo.on('get_queue_config', function()\n"
                   "  calls = calls + 100\n"
                   "  return kumo.make_queue_config{egress_pool='second'}\n"
                   "end)\n");
    fx_call_ok(fx, "pre_init", &res);
    policy_result_fini(&res);
    fx_call_ok(fx, "get_queue_config", &res);
    assert_string_equal(jstr(res.value, "egress_pool"), "first");
    assert_string_equal(jstr(res.value, "__kind"), "queue_config");
    assert_int_equal(jint(res.value, "retry_interval"), 1200000);
    assert_int_equal(jint(res.value, "max_age"), 3600000);
    assert_string_equal(
        json_string_value(json_array_get(
            json_object_get(
                json_object_get(json_object_get(res.value, "protocol"), "smtp"),
                "mx_list"),
            0)),
        "127.0.0.1");
    policy_result_fini(&res);
    /* Both pre_init handlers ran; the third get_queue_config did not. */
    fx_call_ok(fx, "calls", &res);
    assert_int_equal(json_integer_value(res.value), 11);
    policy_result_fini(&res);
}

static void
globals_are_sealed_after_policy_seal(void **state)
{
    struct fx *fx = *state;
    struct policy_result res;
    char err[1024] = "";

    fx_load_ok(fx, "counter = 0\n"
                   "kumo.on('bump', function()\n"
                   "  counter = counter + 1\n"
                   "  local x = 5\n"
                   "  return counter + x\n"
                   "end)\n"
                   "kumo.on('leak', function() leaked = 1 end)\n");
    fx_call_ok(fx, "leak", &res);
    policy_result_fini(&res);
    policy_seal(fx->p);
    fx_call_ok(fx, "bump", &res);
    assert_int_equal(json_integer_value(res.value), 6);
    policy_result_fini(&res);
    assert_int_equal(policy_call(fx->p, "leak", NULL, 0, &res, NULL, 0), 0);
    policy_result_fini(&res);
    fx_load_ok(fx, "kumo.on('new', function() brand_new = 1 end)\n");
    assert_int_equal(policy_call(fx->p, "new", NULL, 0, &res, err, sizeof(err)),
                     KM_EPOLICY);
    assert_contains(err, "brand_new");
    policy_result_fini(&res);
}

/* ---- Tests: config functions ---- */

static void
start_esmtp_listener_params_reach_host_as_json(void **state)
{
    struct fx *fx = *state;
    struct policy_result res;
    json_t *params, *th;

    fx_load_ok(
        fx, "kumo.on('init', function()\n"
            "  kumo.start_esmtp_listener{\n"
            "    listen='127.0.0.1:2025', hostname='mx.example.com',\n"
            "    relay_hosts='10.0.0.0/8', max_connections=100,\n"
            "    max_message_size='20MiB', client_timeout='2 min',\n"
            "    data_processing_timeout=30, invalid_line_endings='Fix',\n"
            "    trace_headers={received_header=false,\n"
            "      include_meta_names={'tenant','campaign'}},\n"
            "  }\n"
            "  kumo.dns.configure_resolver{name_servers={'127.0.0.1:53'},\n"
            "    options={timeout='5s', attempts=2}}\n"
            "  kumo.define_spool{name='data', path='/tmp/x', kind='RocksDB',\n"
            "    rocks_params={compression_type='zstd'}}\n"
            "end)\n");
    fx_call_ok(fx, "init", &res);
    policy_result_fini(&res);
    assert_int_equal(json_array_size(fx->calls), 3);

    params = fx_call_params(fx, 0, "start_esmtp_listener");
    assert_string_equal(jstr(params, "listen"), "127.0.0.1:2025");
    assert_int_equal(jint(params, "max_connections"), 100);
    assert_int_equal(jint(params, "max_message_size"), 20 * 1024 * 1024);
    assert_int_equal(jint(params, "client_timeout"), 120000);
    assert_int_equal(jint(params, "data_processing_timeout"), 30000);
    assert_string_equal(jstr(params, "invalid_line_endings"), "Fix");
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(params, "relay_hosts"), 0)),
                        "10.0.0.0/8");
    th = json_object_get(params, "trace_headers");
    assert_true(json_is_false(json_object_get(th, "received_header")));
    assert_int_equal(json_array_size(json_object_get(th, "include_meta_names")),
                     2);
    assert_null(json_object_get(params, "banner"));

    params = fx_call_params(fx, 1, "dns.configure_resolver");
    assert_int_equal(jint(json_object_get(params, "options"), "timeout"), 5000);
    params = fx_call_params(fx, 2, "define_spool");
    assert_string_equal(
        jstr(json_object_get(params, "rocks_params"), "compression_type"),
        "zstd");
}

static void
unknown_parameter_error_names_function_key_and_line(void **state)
{
    struct fx *fx = *state;
    char err[1024] = "";
    char where[700];

    fx_load_ok(fx, "kumo.on('init', function()\n"
                   "  kumo.start_esmtp_listener{\n"
                   "    listen='127.0.0.1:2025', deferred_spool=true }\n"
                   "end)\n");
    fx_init_fails(fx, err, sizeof(err));
    assert_contains(err, "kumo.start_esmtp_listener: unknown or unsupported "
                         "parameter 'deferred_spool'");
    snprintf(where, sizeof(where), "%s:2:", fx->path);
    assert_contains(err, where);
    assert_int_equal(json_array_size(fx->calls), 0);
}

static void
wrong_type_error_names_parameter(void **state)
{
    struct fx *fx = *state;
    char err[1024] = "";

    fx_load_ok(fx, "kumo.on('init', function()\n"
                   "  kumo.start_esmtp_listener{max_connections='many'}\n"
                   "end)\n");
    fx_init_fails(fx, err, sizeof(err));
    assert_contains(err, "kumo.start_esmtp_listener: parameter "
                         "'max_connections' must be an integer");
    assert_int_equal(json_array_size(fx->calls), 0);
}

static void
bad_values_in_nested_and_typed_params_are_rejected(void **state)
{
    struct fx *fx = *state;

    static const struct {
        const char *call;
        const char *msg;
    } cases[] = {
        {"kumo.start_esmtp_listener{client_timeout='soon'}",
         "parameter 'client_timeout' must be a duration"},
        {"kumo.start_esmtp_listener{max_message_size='big'}",
         "parameter 'max_message_size' must be a size"},
        {"kumo.start_esmtp_listener{invalid_line_endings='Maybe'}",
         "must be one of: Deny, Allow, Fix"},
        {"kumo.start_esmtp_listener{trace_headers={nope=1}}",
         "unknown or unsupported parameter 'trace_headers.nope'"},
        {"kumo.start_esmtp_listener{relay_hosts={'a', 5}}",
         "parameter 'relay_hosts[2]' must be a string"},
        {"kumo.start_esmtp_listener{max_connections=-1}",
         "must be a non-negative integer"},
        {"kumo.define_spool{name='data'}",
         "kumo.define_spool: missing required parameter 'path'"},
        {"kumo.configure_local_logs('logs')",
         "kumo.configure_local_logs: expected a table of parameters"},
        {"kumo.dns.configure_resolver{}",
         "kumo.dns.configure_resolver: missing required parameter "
         "'name_servers'"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char src[512], err[1024] = "";

        snprintf(src, sizeof(src), "kumo.on('init', function() %s end)\n",
                 cases[i].call);
        fx_load_ok(fx, src);
        fx_init_fails(fx, err, sizeof(err));
        assert_contains(err, cases[i].msg);
    }
    assert_int_equal(json_array_size(fx->calls), 0);
}

static void
host_config_failure_is_raised_with_its_message(void **state)
{
    struct fx *fx = *state;
    char err[1024] = "";

    fx->fail_config = KM_EINVAL;
    fx_load_ok(fx, "kumo.on('init', function()\n"
                   "  kumo.start_http_listener{listen='127.0.0.1:8000'}\n"
                   "end)\n");
    fx_init_fails(fx, err, sizeof(err));
    assert_contains(err, "kumo.start_http_listener: cannot bind: address "
                         "in use");
}

static void
config_call_after_seal_fails(void **state)
{
    struct fx *fx = *state;
    struct policy_result res;
    char err[1024] = "";

    fx_load_ok(fx, "kumo.on('init', function() end)\n"
                   "kumo.on('later', function()\n"
                   "  kumo.configure_local_logs{log_dir='/tmp/logs'}\n"
                   "end)\n");
    fx_call_ok(fx, "init", &res);
    policy_result_fini(&res);
    policy_seal(fx->p);
    assert_int_equal(
        policy_call(fx->p, "later", NULL, 0, &res, err, sizeof(err)),
        KM_EPOLICY);
    assert_contains(err, "kumo.configure_local_logs: may only be called from "
                         "the init event");
    assert_int_equal(json_array_size(fx->calls), 0);
    policy_result_fini(&res);
}

static void
make_listener_domain_converts_with_kind_and_normalised_enums(void **state)
{
    struct fx *fx = *state;
    struct policy_result res;

    fx_load_ok(fx, "kumo.on('get_listener_domain', function(domain)\n"
                   "  return kumo.make_listener_domain{relay_to=true,\n"
                   "    relay_from='10.0.0.0/8', log_oob=true,\n"
                   "    log_arf='LogThenDrop'}\n"
                   "end)\n"
                   "kumo.on('bad', function()\n"
                   "  return kumo.make_listener_domain{log_oob='Sometimes'}\n"
                   "end)\n");
    policy_seal(fx->p); /* objects may be made at any time */
    fx_call_ok(fx, "get_listener_domain", &res);
    assert_string_equal(jstr(res.value, "__kind"), "listener_domain");
    assert_true(json_is_true(json_object_get(res.value, "relay_to")));
    assert_string_equal(jstr(res.value, "log_oob"), "LogThenRelay");
    assert_string_equal(jstr(res.value, "log_arf"), "LogThenDrop");
    assert_int_equal(json_array_size(json_object_get(res.value, "relay_from")),
                     1);
    policy_result_fini(&res);

    assert_int_equal(policy_call(fx->p, "bad", NULL, 0, &res, NULL, 0),
                     KM_EPOLICY);
    policy_result_fini(&res);
}

static void
make_egress_pool_applies_weight_default(void **state)
{
    struct fx *fx = *state;
    struct policy_result res;
    json_t *entries;

    fx_load_ok(fx, "kumo.on('get_egress_pool', function(name)\n"
                   "  return kumo.make_egress_pool{name=name,\n"
                   "    entries={{name='a'}, {name='b', weight=3}}}\n"
                   "end)\n");
    {
        struct policy_arg arg = {.kind = POLICY_ARG_STRING, .u.str = "pool1"};
        assert_int_equal(
            policy_call(fx->p, "get_egress_pool", &arg, 1, &res, NULL, 0), 0);
    }
    assert_string_equal(jstr(res.value, "name"), "pool1");
    assert_string_equal(jstr(res.value, "__kind"), "egress_pool");
    entries = json_object_get(res.value, "entries");
    assert_int_equal(jint(json_array_get(entries, 0), "weight"), 1);
    assert_int_equal(jint(json_array_get(entries, 1), "weight"), 3);
    policy_result_fini(&res);
}

static void
make_egress_path_and_source_convert_their_fields(void **state)
{
    struct fx *fx = *state;
    struct policy_result res;
    struct policy_arg arg = {.kind = POLICY_ARG_ADDRESS, .u.str = ""};

    fx_load_ok(fx,
               "kumo.on('get_egress_path_config', function()\n"
               "  return kumo.make_egress_path{connection_limit='10',\n"
               "    max_ready=5, enable_tls='Required', idle_timeout=1.5,\n"
               "    skip_hosts={'10.0.0.1'}, enable_pipelining=false}\n"
               "end)\n"
               "kumo.on('get_egress_source', function(null_sender)\n"
               "  assert(null_sender.email == '' and null_sender.user == '')\n"
               "  assert(null_sender.domain == '')\n"
               "  return kumo.make_egress_source{name='s1',\n"
               "    source_address='127.0.0.1', ttl='1 min'}\n"
               "end)\n"
               "kumo.on('bad_tls', function()\n"
               "  return kumo.make_egress_path{enable_tls='Always'}\n"
               "end)\n");
    fx_call_ok(fx, "get_egress_path_config", &res);
    assert_string_equal(jstr(res.value, "__kind"), "egress_path");
    assert_string_equal(jstr(res.value, "connection_limit"), "10");
    assert_string_equal(jstr(res.value, "enable_tls"), "Required");
    assert_int_equal(jint(res.value, "idle_timeout"), 1500);
    assert_int_equal(jint(res.value, "max_ready"), 5);
    policy_result_fini(&res);
    assert_int_equal(
        policy_call(fx->p, "get_egress_source", &arg, 1, &res, NULL, 0), 0);
    assert_string_equal(jstr(res.value, "__kind"), "egress_source");
    assert_int_equal(jint(res.value, "ttl"), 60000);
    policy_result_fini(&res);
    assert_int_equal(policy_call(fx->p, "bad_tls", NULL, 0, &res, NULL, 0),
                     KM_EPOLICY);
    policy_result_fini(&res);
}

/* ---- Tests: objects passed to handlers ---- */

static void
message_methods_read_and_edit_the_host_message(void **state)
{
    struct fx *fx = *state;
    struct policy_result res;
    struct policy_arg arg = {.kind = POLICY_ARG_MESSAGE, .u.msg = fx->msg};
    json_t *nested;

    fx_load_ok(
        fx,
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  assert(msg:id() == '0123456789abcdef0123456789abcdef')\n"
        "  local s = msg:sender()\n"
        "  assert(s.user == 'alice' and s.domain == 'Example.COM')\n"
        "  assert(s.email == 'alice@Example.COM')\n"
        "  assert(tostring(s) == 'alice@Example.COM')\n"
        "  assert('<' .. s .. '>' == '<alice@Example.COM>')\n"
        "  assert(msg:recipient().domain == 'example.net')\n"
        "  assert(msg:recipient() == msg:recipient())\n"
        "  msg:set_meta('nested', {a={b={1, 2, {c=true}}}, n=1.5, s='x'})\n"
        "  local n = msg:get_meta('nested')\n"
        "  assert(n.a.b[3].c == true and n.n == 1.5 and n.a.b[2] == 2)\n"
        "  assert(math.type(n.a.b[1]) == 'integer')\n"
        "  msg:set_meta('gone', nil)\n"
        "  assert(msg:get_meta('gone') == nil)\n"
        "  assert(msg:get_meta('absent') == nil)\n"
        "  assert(msg:get_first_named_header_value('subject') == 'hi')\n"
        "  assert(msg:get_first_named_header_value('X-None') == nil)\n"
        "  local v = msg:get_all_named_header_values('x-test')\n"
        "  assert(#v == 2 and v[1] == 'one' and v[2] == 'two')\n"
        "  local all = msg:get_all_headers()\n"
        "  assert(#all == 4 and all[1].name == 'From' and all[2][2] == 'hi')\n"
        "  msg:append_header('X-Added', 'appended')\n"
        "  msg:prepend_header('X-First', 'prepended')\n"
        "  msg:remove_all_named_headers('x-test')\n"
        "  assert(not pcall(msg.append_header, msg, 'Bad Name', 'v'))\n"
        "  assert(not pcall(msg.append_header, msg, 'X-Inj', 'a\\r\\nB: c'))\n"
        "  msg:set_sender('carol@example.org')\n"
        "  msg:set_recipient(msg:sender())\n"
        "  local ok, e = pcall(msg.set_sender, msg, 'no-at-sign')\n"
        "  assert(not ok and e:find('invalid address'), e)\n"
        "  assert(not pcall(msg.set_meta, msg, 'bad', '\\xff\\xfe'))\n"
        "  assert(msg:num_attempts() == 2)\n"
        "  assert(msg:queue_name() == 'example.net')\n"
        "  return msg:get_data()\n"
        "end)\n");
    assert_int_equal(policy_call(fx->p, "smtp_server_message_received", &arg, 1,
                                 &res, NULL, 0),
                     0);
    assert_string_equal(json_string_value(res.value),
                        "X-First: prepended\r\n"
                        "From: alice@example.com\r\n"
                        "Subject: hi\r\n"
                        "X-Added: appended\r\n"
                        "\r\n"
                        "body\r\n");
    policy_result_fini(&res);
    assert_string_equal(fx->msg->sender, "carol@example.org");
    assert_string_equal(fx->msg->recipient, "carol@example.org");
    assert_true(json_is_null(json_object_get(fx->msg->meta, "gone")));
    assert_null(json_object_get(fx->msg->meta, "bad"));
    nested = json_object_get(fx->msg->meta, "nested");
    assert_string_equal(jstr(nested, "s"), "x");
    assert_true(json_is_real(json_object_get(nested, "n")));
    assert_int_equal(
        json_array_size(json_object_get(json_object_get(nested, "a"), "b")), 3);
}

static void
message_set_data_replaces_the_content(void **state)
{
    struct fx *fx = *state;
    struct policy_result res;
    struct policy_arg arg = {.kind = POLICY_ARG_MESSAGE, .u.msg = fx->msg};

    fx_load_ok(fx, "kumo.on('rewrite', function(msg)\n"
                   "  msg:set_data('Subject: new\\r\\n\\r\\nbin\\0ary\\r\\n')\n"
                   "  return #msg:get_data()\n"
                   "end)\n");
    assert_int_equal(policy_call(fx->p, "rewrite", &arg, 1, &res, NULL, 0), 0);
    assert_int_equal(json_integer_value(res.value), 25);
    assert_int_equal(fx->msg->data.len, 25);
    assert_memory_equal(fx->msg->data.data, "Subject: new\r\n\r\nbin\0ary\r\n",
                        25);
    policy_result_fini(&res);
}

static void
connection_meta_and_plain_args_reach_the_handler(void **state)
{
    struct fx *fx = *state;
    struct policy_result res;
    json_t *meta = json_pack("{s:s}", "received_from", "127.0.0.1:4000");
    json_t *ext = json_pack("[s,s]", "PIPELINING", "8BITMIME");
    struct policy_arg args[] = {
        {.kind = POLICY_ARG_ADDRESS, .u.str = "Joe@Example.org"},
        {.kind = POLICY_ARG_CONN_META, .u.json = meta},
        {.kind = POLICY_ARG_JSON, .u.json = ext},
        {.kind = POLICY_ARG_STRING, .u.str = "mx.example.org"},
    };

    fx_load_ok(fx,
               "kumo.on('check', function(addr, meta, ext, host)\n"
               "  assert(addr.domain == 'Example.org' and addr.user == 'Joe')\n"
               "  assert(meta:get_meta('received_from') == '127.0.0.1:4000')\n"
               "  meta:set_meta('x_seen', {count=1})\n"
               "  assert(ext[2] == '8BITMIME' and host == 'mx.example.org')\n"
               "  return {addr=addr, list={}, n=3}\n"
               "end)\n");
    assert_int_equal(policy_call(fx->p, "check", args, 4, &res, NULL, 0), 0);
    assert_int_equal(jint(json_object_get(meta, "x_seen"), "count"), 1);
    assert_string_equal(jstr(res.value, "addr"), "Joe@Example.org");
    assert_true(json_is_object(json_object_get(res.value, "list")));
    policy_result_fini(&res);
    json_decref(meta);
    json_decref(ext);
}

static void
json_helpers_round_trip_values(void **state)
{
    struct fx *fx = *state;
    struct policy_result res;
    char err[1024] = "";

    fx_load_ok(fx, "kumo.on('rt', function()\n"
                   "  local s = kumo.json_encode({a=1, b={1,2,3}, c='x'})\n"
                   "  local v = kumo.serde.json_parse(s)\n"
                   "  assert(v.b[3] == 3 and v.c == 'x')\n"
                   "  assert(kumo.json_decode('[1,2]')[2] == 2)\n"
                   "  assert(not pcall(kumo.json_decode, '{bad'))\n"
                   "  assert(type(kumo.version()) == 'string')\n"
                   "  kumo.log_debug('debug line', 1, true)\n"
                   "  return v\n"
                   "end)\n"
                   "kumo.on('cycle', function()\n"
                   "  local t = {} t.self = t\n"
                   "  return t\n"
                   "end)\n");
    fx_call_ok(fx, "rt", &res);
    assert_int_equal(jint(res.value, "a"), 1);
    assert_int_equal(json_array_size(json_object_get(res.value, "b")), 3);
    policy_result_fini(&res);
    assert_int_equal(
        policy_call(fx->p, "cycle", NULL, 0, &res, err, sizeof(err)),
        KM_EPOLICY);
    assert_contains(err, "nested deeper than 64");
    policy_result_fini(&res);
}

/* ---- Tests: shipped policies ---- */

/* The checkout root, from this file's path (…/tests/unit/test_policy.c). */
static void
repo_path(char *out, size_t n, const char *rel)
{
    const char *file = __FILE__;
    const char *cut = strstr(file, "tests/unit/test_policy.c");

    assert_non_null(cut);
    snprintf(out, n, "%.*s%s", (int)(cut - file), file, rel);
}

static void
shipped_policies_load_and_run_init(void **state)
{
    static const char *const files[] = {
        "policy/default.lua",
        "policy/examples/simple-policy.lua",
        "policy/examples/relay-from-lan.lua",
    };
    struct fx *fx = *state;

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        struct policy_host host = {.ctx = fx, .config = fake_config};
        struct policy_result res;
        struct policy *p;
        char path[1024], err[1024] = "";
        int rv;

        repo_path(path, sizeof(path), files[i]);
        assert_int_equal(policy_new(&host, &p), 0);
        rv = policy_load(p, path, err, sizeof(err));
        if (rv != 0) {
            fail_msg("%s: %s", files[i], err);
        }
        rv = policy_call(p, "init", NULL, 0, &res, err, sizeof(err));
        if (rv != 0) {
            fail_msg("%s: init: %s", files[i], err);
        }
        policy_result_fini(&res);
        policy_seal(p);
        assert_true(policy_has_handler(p, "get_listener_domain"));
        policy_free(p);
    }
    assert_true(json_array_size(fx->calls) >= 3 * 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            require_kumo_returns_the_global_kumo_table, setup, teardown),
        cmocka_unit_test_setup_teardown(
            syntax_error_fails_load_with_file_and_line, setup, teardown),
        cmocka_unit_test_setup_teardown(
            top_level_runtime_error_fails_load_with_file_and_line, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            handler_runtime_error_returns_epolicy_with_message, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            call_without_handler_returns_zero_and_no_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(
            reject_in_handler_returns_ereject_with_code_and_text, setup,
            teardown),
        cmocka_unit_test_setup_teardown(single_event_keeps_last_registration,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            multi_get_queue_config_first_non_nil_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(globals_are_sealed_after_policy_seal,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            start_esmtp_listener_params_reach_host_as_json, setup, teardown),
        cmocka_unit_test_setup_teardown(
            unknown_parameter_error_names_function_key_and_line, setup,
            teardown),
        cmocka_unit_test_setup_teardown(wrong_type_error_names_parameter, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            bad_values_in_nested_and_typed_params_are_rejected, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            host_config_failure_is_raised_with_its_message, setup, teardown),
        cmocka_unit_test_setup_teardown(config_call_after_seal_fails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            make_listener_domain_converts_with_kind_and_normalised_enums, setup,
            teardown),
        cmocka_unit_test_setup_teardown(make_egress_pool_applies_weight_default,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            make_egress_path_and_source_convert_their_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(
            message_methods_read_and_edit_the_host_message, setup, teardown),
        cmocka_unit_test_setup_teardown(message_set_data_replaces_the_content,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            connection_meta_and_plain_args_reach_the_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(json_helpers_round_trip_values, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(shipped_policies_load_and_run_init,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
