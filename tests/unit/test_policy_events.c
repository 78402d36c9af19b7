/* test_policy_events.c - kumo.on() accepts the events kumod fires and
 * refuses, at the line of the call and by name, every other one: events
 * kumod does not fire yet, the TSA and proxy daemons' events, and unknown
 * names; a host-declared name is accepted. */
#include "test_policy_fx.h"

/* ---- Tests ---- */

static void
on_accepts_every_fired_event(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx,
           "local f = function() end\n"
           "for _, e in ipairs { 'pre_init', 'init',\n"
           "  'smtp_server_connection_accepted', 'smtp_server_ehlo',\n"
           "  'smtp_server_auth_plain', 'smtp_server_mail_from',\n"
           "  'smtp_server_rcpt_to', 'get_listener_domain',\n"
           "  'smtp_server_message_received', 'http_message_generated',\n"
           "  'http_server_validate_auth_basic', 'spool_message_enumerated',\n"
           "  'get_queue_config', 'get_egress_pool', 'get_egress_source',\n"
           "  'get_egress_path_config', 'rebind_message' } do\n"
           "  kumo.on(e, f)\n"
           "end\n");
    assert_true(policy_has_handler(fx->p, "get_egress_path_config"));
}

static void
on_unknown_event_fails_at_the_call_naming_it(void **state)
{
    struct pfx *fx = *state;

    pfx_fails(fx, "\n\nkumo.on('smtp_server_mail_frm', function() end)\n",
              "policy.lua:3: kumo.on: unknown event 'smtp_server_mail_frm'");
    assert_false(policy_has_handler(fx->p, "smtp_server_mail_frm"));
}

static void
on_unsupported_kumod_events_fail_by_name(void **state)
{
    static const char *const names[] = {
        "validate_config",
        "requeue_message",
        "smtp_server_data",
        "should_enqueue_log_record",
        "throttle_insert_ready_queue",
        "smtp_client_rewrite_delivery_status",
        "shutdown_logging",
        "main",
        NULL,
    };
    struct pfx *fx = *state;

    for (size_t i = 0; names[i] != NULL; i++) {
        char src[256], want[256];

        snprintf(src, sizeof(src), "kumo.on('%s', function() end)\n", names[i]);
        snprintf(want, sizeof(want),
                 "kumo.on: event '%s' is not supported by kumod yet", names[i]);
        pfx_fails(fx, src, want);
    }
    pfx_fails(fx, "kumo.on('log_disposition_bounce', function() end)\n",
              "event 'log_disposition_bounce' is not supported by kumod yet");
}

static void
on_other_daemons_events_point_to_kumod(void **state)
{
    struct pfx *fx = *state;

    pfx_fails(fx, "kumo.on('tsa_init', function() end)\n",
              "kumo.on: event 'tsa_init' belongs to KumoMTA's tsa-daemon: "
              "kumod has no TSA daemon; configure shaping with "
              "get_egress_path_config");
    pfx_fails(fx, "kumo.on('proxy_init', function() end)\n",
              "event 'proxy_init' belongs to KumoMTA's proxy-server");
    pfx_fails(fx, "kumo.on('proxy_server_auth_rfc1929', function() end)\n",
              "belongs to KumoMTA's proxy-server");
}

static void
on_declared_event_is_accepted(void **state)
{
    struct pfx *fx = *state;
    struct policy_result res;

    policy_declare_event(fx->p, "make.webhook");
    pfx_ok(fx, "kumo.on('make.webhook', function() return 7 end)\n");
    assert_int_equal(policy_call(fx->p, "make.webhook", NULL, 0, &res, NULL, 0),
                     0);
    assert_int_equal(json_integer_value(res.value), 7);
    policy_result_fini(&res);
}

static void
on_bad_arguments_name_the_function(void **state)
{
    struct pfx *fx = *state;

    pfx_fails(fx, "kumo.on('init')\n",
              "bad argument #2 to 'on' (function expected, got no value)");
    pfx_fails(fx, "kumo.on({}, function() end)\n",
              "bad argument #1 to 'on' (string expected, got table)");
}

static void
get_event_registrars_lists_each_registration_with_its_stack(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx, "local function helper()\n"
               "  kumo.on('get_queue_config', function() end)\n"
               "end\n"
               "helper()\n"
               "kumo.on('get_queue_config', function() end)\n"
               "local reg = kumo.get_event_registrars 'get_queue_config'\n"
               "assert(#reg == 2, #reg)\n"
               "assert(reg[1][1]:match('policy%.lua:2$'), reg[1][1])\n"
               "assert(reg[1][2]:match('policy%.lua:4$'), reg[1][2])\n"
               "assert(reg[2][1]:match('policy%.lua:5$'), reg[2][1])\n"
               "reg[1][1] = 'changed'\n"
               "assert(kumo.get_event_registrars('get_queue_config')[1][1] ~= "
               "'changed')\n"
               "assert(#kumo.get_event_registrars 'init' == 0)\n");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(on_accepts_every_fired_event, pfx_setup,
                                        pfx_teardown),
        cmocka_unit_test_setup_teardown(
            on_unknown_event_fails_at_the_call_naming_it, pfx_setup,
            pfx_teardown),
        cmocka_unit_test_setup_teardown(
            on_unsupported_kumod_events_fail_by_name, pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(on_other_daemons_events_point_to_kumod,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(on_declared_event_is_accepted,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(on_bad_arguments_name_the_function,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(
            get_event_registrars_lists_each_registration_with_its_stack,
            pfx_setup, pfx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
