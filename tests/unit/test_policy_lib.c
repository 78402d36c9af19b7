/* test_policy_lib.c - kumo.secrets.load (file and key_data keysources,
 * Vault refused by name, bad shapes named), kumo.traceback (frames of the
 * caller's stack), kumo.validation_failed (seen by the host), and the
 * named refusals of kumo.sleep, kumo.spawn_task and kumo.dns.lookup_*. */
#include "test_policy_fx.h"

/* ---- Tests ---- */

static void
secrets_load_reads_files_and_key_data(void **state)
{
    struct pfx *fx = *state;
    char path[700], src[1024];

    pfx_write(fx, "smtp.pass", "s3cret\n", path, sizeof(path));
    snprintf(src, sizeof(src),
             "assert(kumo.secrets.load '%s' == 's3cret\\n')\n"
             "assert(kumo.secrets.load { key_data = 'inline' } == 'inline')\n",
             path);
    pfx_ok(fx, src);
}

static void
secrets_load_refuses_vault_and_bad_shapes_by_name(void **state)
{
    struct pfx *fx = *state;
    char src[1024];

    pfx_fails(
        fx, "kumo.secrets.load { vault_mount = 'secret', vault_path = 'p' }\n",
        "kumo.secrets.load: HashiCorp Vault keysources (vault_mount, "
        "vault_path) are not supported by kumod");
    pfx_fails(fx, "kumo.secrets.load(42)\n",
              "kumo.secrets.load: a keysource is a file path or a table "
              "{ key_data = ... }, got number");
    pfx_fails(fx, "kumo.secrets.load { key_data = 'x', extra = 1 }\n",
              "kumo.secrets.load: unknown keysource field 'extra'");
    pfx_fails(fx, "kumo.secrets.load { key_data = 5 }\n",
              "kumo.secrets.load: keysource 'key_data' must be a string, "
              "got number");
    snprintf(src, sizeof(src), "kumo.secrets.load '%s/none'\n", fx->dir);
    pfx_fails(fx, src, "kumo.secrets.load: cannot load the key: ");
    pfx_fails(fx, "kumo.secrets.load()\n",
              "bad argument #1 to 'load' (value expected)");
}

static void
traceback_lists_the_callers_frames(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx, "local function inner()\n"
               "  return kumo.traceback(1)\n"
               "end\n"
               "local function outer() local t = inner() return t end\n"
               "local t = outer()\n"
               "assert(t[1].currentline == 2, t[1].currentline)\n"
               "assert(t[1].short_src:find('policy.lua', 1, true))\n"
               "assert(t[1].what == 'Lua' and t[1].line_defined == 1)\n"
               "assert(t[2].currentline == 4)\n"
               "assert(t[3].what == 'main')\n"
               "assert(kumo.traceback(0)[1].what == 'C')\n");
    pfx_fails(fx, "kumo.traceback(-1)\n",
              "bad argument #1 to 'traceback' (level must not be negative)");
}

static void
validation_failed_is_seen_by_the_host(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx, "local x = 1\n");
    assert_false(policy_validation_failed(fx->p));
    pfx_ok(fx, "kumo.validation_failed()\n");
    assert_true(policy_validation_failed(fx->p));
}

static void
validate_runs_validate_config_when_the_host_declares_it(void **state)
{
    struct pfx *fx = *state;
    char err[512] = "";

    policy_declare_event(fx->p, "validate_config");
    pfx_ok(fx, "kumo.on('validate_config', function() ran = 1 end)\n"
               "kumo.on('validate_config', function()\n"
               "  if ran == 1 then kumo.validation_failed() end\n"
               "end)\n");
    assert_int_equal(policy_validate(fx->p, err, sizeof(err)), KM_ECONFIG);
    assert_non_null(strstr(err, "kumo.validation_failed()"));
}

static void
validate_without_handlers_or_failure_passes(void **state)
{
    struct pfx *fx = *state;
    char err[512] = "";

    pfx_ok(fx, "local x = 1\n");
    assert_int_equal(policy_validate(fx->p, err, sizeof(err)), 0);
}

static void
waiting_functions_are_refused_by_name(void **state)
{
    struct pfx *fx = *state;

    pfx_fails(fx, "kumo.sleep(1)\n",
              "kumo.sleep is not supported by kumod: policy handlers run to "
              "completion on the event loop and cannot yield");
    pfx_fails(fx, "kumo.spawn_task { event_name = 'x', args = {} }\n",
              "kumo.spawn_task is not supported by kumod");
    for (size_t i = 0; i < 4; i++) {
        static const char *const fns[] = {"lookup_mx", "lookup_addr",
                                          "lookup_ptr", "lookup_txt"};
        char src[128], want[128];

        snprintf(src, sizeof(src), "kumo.dns.%s 'example.test'\n", fns[i]);
        snprintf(want, sizeof(want), "kumo.dns.%s is not supported by kumod",
                 fns[i]);
        pfx_fails(fx, src, want);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(secrets_load_reads_files_and_key_data,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(
            secrets_load_refuses_vault_and_bad_shapes_by_name, pfx_setup,
            pfx_teardown),
        cmocka_unit_test_setup_teardown(traceback_lists_the_callers_frames,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(validation_failed_is_seen_by_the_host,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(
            validate_runs_validate_config_when_the_host_declares_it, pfx_setup,
            pfx_teardown),
        cmocka_unit_test_setup_teardown(
            validate_without_handlers_or_failure_passes, pfx_setup,
            pfx_teardown),
        cmocka_unit_test_setup_teardown(waiting_functions_are_refused_by_name,
                                        pfx_setup, pfx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
