/* test_kcli_cmd.c - unit tests of kcli's argument parsing without any
 * network: global options and the endpoint's precedence, then every
 * subcommand into its request (method, path, JSON body), --help, --json,
 * and the usage errors (missing reason, no criteria, bad values, unknown
 * flags). */
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

struct kcli_cmd_test {
    struct kcli_cmd cmd;
    struct buf err;
};

static int
kcli_cmd_test_setup(void **state)
{
    struct kcli_cmd_test *t = calloc(1, sizeof(*t));

    kcli_cmd_init(&t->cmd);
    buf_init(&t->err);
    *state = t;
    return 0;
}

static int
kcli_cmd_test_teardown(void **state)
{
    struct kcli_cmd_test *t = *state;

    kcli_cmd_fini(&t->cmd);
    buf_fini(&t->err);
    free(t);
    return 0;
}

/* Helpers */

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int
kcli_cmd_test_parse(struct kcli_cmd_test *t, int argc, char *const *argv)
{
    kcli_cmd_fini(&t->cmd);
    buf_reset(&t->err);
    return kcli_cmd_parse(argc, argv, &t->cmd, &t->err);
}

/* The request body must equal the JSON text `want`. */
static void
kcli_cmd_test_body_is(const struct kcli_cmd *c, const char *want)
{
    json_t *w = json_loads(want, 0, NULL);

    assert_non_null(w);
    assert_non_null(c->body);
    if (!json_equal(w, c->body)) {
        char *got = json_dumps(c->body, JSON_COMPACT | JSON_SORT_KEYS);

        fail_msg("body %s, wanted %s", got, want);
    }
    json_decref(w);
}

static void
kcli_cmd_test_request_is(const struct kcli_cmd *c, const char *method,
                         const char *path)
{
    assert_string_equal(c->method, method);
    assert_string_equal(c->path, path);
}

/* Tests */

static void
kcli_opts_endpoint_flag_beats_environment(void **state)
{
    char *argv[] = {"kcli", "--endpoint", "http://127.0.0.1:9", "--json",
                    "bounce-list"};
    struct kcli_opts o;
    struct kcli_cmd_test *t = *state;

    assert_int_equal(
        kcli_opts_parse(ARGC(argv), argv, "http://127.0.0.1:7", &o, &t->err),
        0);
    assert_string_equal(o.endpoint, "http://127.0.0.1:9");
    assert_true(o.json);
    assert_int_equal(o.first_arg, 4);
}

static void
kcli_opts_endpoint_from_environment_then_default(void **state)
{
    char *argv[] = {"kcli", "queue-summary", "--endpoint=x"};
    char *eq[] = {"kcli", "--endpoint=http://127.0.0.1:5", "queue-summary"};
    struct kcli_opts o;
    struct kcli_cmd_test *t = *state;

    assert_int_equal(
        kcli_opts_parse(ARGC(argv), argv, "http://127.0.0.1:7", &o, &t->err),
        0);
    assert_string_equal(o.endpoint, "http://127.0.0.1:7");
    assert_int_equal(o.first_arg, 1); /* stops at the subcommand */
    assert_int_equal(kcli_opts_parse(ARGC(argv), argv, NULL, &o, &t->err), 0);
    assert_string_equal(o.endpoint, KCLI_DEFAULT_ENDPOINT);
    assert_int_equal(kcli_opts_parse(ARGC(eq), eq, NULL, &o, &t->err), 0);
    assert_string_equal(o.endpoint, "http://127.0.0.1:5");
}

static void
kcli_opts_reports_unknown_option_and_missing_url(void **state)
{
    char *bad[] = {"kcli", "--bogus"};
    char *nourl[] = {"kcli", "--endpoint"};
    char *none[] = {"kcli", "--version"};
    struct kcli_opts o;
    struct kcli_cmd_test *t = *state;

    assert_int_equal(kcli_opts_parse(ARGC(bad), bad, NULL, &o, &t->err),
                     KM_EINVAL);
    assert_non_null(strstr(buf_cstr(&t->err), "--bogus"));
    assert_int_equal(kcli_opts_parse(ARGC(nourl), nourl, NULL, &o, &t->err),
                     KM_EINVAL);
    assert_int_equal(kcli_opts_parse(ARGC(none), none, NULL, &o, &t->err), 0);
    assert_true(o.version);
    assert_int_equal(o.first_arg, 2);
}

static void
kcli_queue_summary_gets_summary_with_limit(void **state)
{
    char *argv[] = {"queue-summary", "--limit", "5"};
    char *bad[] = {"queue-summary", "--limit=0"};
    struct kcli_cmd_test *t = *state;

    assert_int_equal(kcli_cmd_test_parse(t, ARGC(argv), argv), 0);
    assert_int_equal(t->cmd.op, KCLI_OP_QUEUE_SUMMARY);
    kcli_cmd_test_request_is(&t->cmd, "GET", "/api/admin/queue-summary/v1");
    assert_null(t->cmd.body);
    assert_int_equal(t->cmd.limit, 5);
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(bad), bad), KM_EINVAL);
    assert_non_null(strstr(buf_cstr(&t->err), "--limit"));
}

static void
kcli_bounce_posts_criteria_reason_and_duration(void **state)
{
    char *argv[] = {"bounce",
                    "--domain",
                    "example.test",
                    "--reason",
                    "gone away",
                    "--queue",
                    "q1",
                    "--queue=q2",
                    "--routing-domain",
                    "r.test",
                    "--campaign",
                    "c",
                    "--tenant",
                    "t",
                    "--duration",
                    "10m",
                    "--suppress-logging"};
    struct kcli_cmd_test *t = *state;

    assert_int_equal(kcli_cmd_test_parse(t, ARGC(argv), argv), 0);
    assert_int_equal(t->cmd.op, KCLI_OP_BOUNCE);
    kcli_cmd_test_request_is(&t->cmd, "POST", "/api/admin/bounce/v1");
    kcli_cmd_test_body_is(
        &t->cmd, "{\"domain\":\"example.test\",\"reason\":\"gone away\","
                 "\"queue_names\":[\"q1\",\"q2\"],\"routing_domain\":"
                 "\"r.test\",\"campaign\":\"c\",\"tenant\":\"t\","
                 "\"duration\":\"10m\",\"suppress_logging\":true}");
}

static void
kcli_bounce_everything_sends_no_criteria(void **state)
{
    char *argv[] = {"bounce", "--everything", "--reason", "purge"};
    struct kcli_cmd_test *t = *state;

    assert_int_equal(kcli_cmd_test_parse(t, ARGC(argv), argv), 0);
    kcli_cmd_test_body_is(&t->cmd, "{\"reason\":\"purge\"}");
}

static void
kcli_bounce_usage_errors_name_the_problem(void **state)
{
    char *noreason[] = {"bounce", "--domain", "d"};
    char *nocrit[] = {"bounce", "--reason", "r"};
    char *both[] = {"bounce", "--reason", "r", "--domain", "d", "--everything"};
    char *baddur[] = {"bounce",       "--reason",   "r",
                      "--everything", "--duration", "soon"};
    char *unknown[] = {"bounce", "--reason", "r", "--everything", "--force"};
    char *noval[] = {"bounce", "--everything", "--reason"};
    char *twice[] = {"bounce", "--everything", "--reason",
                     "a",      "--reason",     "b"};
    char *extra[] = {"bounce", "--everything", "--reason", "a", "stray"};

    struct {
        int argc;
        char **argv;
        const char *needle;
    } cases[] = {
        {ARGC(noreason), noreason, "--reason is required"},
        {ARGC(nocrit), nocrit, "--everything"},
        {ARGC(both), both, "cannot be combined"},
        {ARGC(baddur), baddur, "invalid --duration 'soon'"},
        {ARGC(unknown), unknown, "unknown option '--force'"},
        {ARGC(noval), noval, "--reason needs a value"},
        {ARGC(twice), twice, "--reason given twice"},
        {ARGC(extra), extra, "unexpected argument 'stray'"},
    };
    struct kcli_cmd_test *t = *state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(kcli_cmd_test_parse(t, cases[i].argc, cases[i].argv),
                         KM_EINVAL);
        if (strstr(buf_cstr(&t->err), cases[i].needle) == NULL) {
            fail_msg("case %zu: '%s' lacks '%s'", i, buf_cstr(&t->err),
                     cases[i].needle);
        }
        /* Every usage error ends with the usage line. */
        assert_non_null(strstr(buf_cstr(&t->err), "\nusage: kcli bounce "));
        assert_null(t->cmd.path);
        assert_null(t->cmd.body);
    }
}

static void
kcli_lists_get_their_collections(void **state)
{
    struct {
        char *name;
        enum kcli_op op;
        const char *path;
    } cases[] = {
        {"bounce-list", KCLI_OP_BOUNCE_LIST, "/api/admin/bounce/v1"},
        {"suspend-list", KCLI_OP_SUSPEND_LIST, "/api/admin/suspend/v1"},
        {"suspend-ready-q-list", KCLI_OP_SUSPEND_READY_Q_LIST,
         "/api/admin/suspend-ready-q/v1"},
    };
    struct kcli_cmd_test *t = *state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[] = {cases[i].name, "--json"};

        assert_int_equal(kcli_cmd_test_parse(t, 2, argv), 0);
        assert_int_equal(t->cmd.op, cases[i].op);
        kcli_cmd_test_request_is(&t->cmd, "GET", cases[i].path);
        assert_null(t->cmd.body);
        assert_true(t->cmd.json);
    }
}

static void
kcli_cancels_delete_with_the_id(void **state)
{
    struct {
        char *name;
        const char *path;
    } cases[] = {
        {"bounce-cancel", "/api/admin/bounce/v1"},
        {"suspend-cancel", "/api/admin/suspend/v1"},
        {"suspend-ready-q-cancel", "/api/admin/suspend-ready-q/v1"},
    };
    struct kcli_cmd_test *t = *state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[] = {cases[i].name, "--id", "abc-123"};
        char *noid[] = {cases[i].name};

        assert_int_equal(kcli_cmd_test_parse(t, 3, argv), 0);
        kcli_cmd_test_request_is(&t->cmd, "DELETE", cases[i].path);
        kcli_cmd_test_body_is(&t->cmd, "{\"id\":\"abc-123\"}");
        assert_int_equal(kcli_cmd_test_parse(t, 1, noid), KM_EINVAL);
        assert_non_null(strstr(buf_cstr(&t->err), "--id is required"));
    }
}

static void
kcli_suspend_posts_criteria_without_routing_domain(void **state)
{
    char *argv[] = {"suspend",  "--tenant",   "acme", "--reason",
                    "too fast", "--duration", "1h"};
    char *rd[] = {"suspend", "--routing-domain", "x", "--reason", "r"};
    struct kcli_cmd_test *t = *state;

    assert_int_equal(kcli_cmd_test_parse(t, ARGC(argv), argv), 0);
    assert_int_equal(t->cmd.op, KCLI_OP_SUSPEND);
    kcli_cmd_test_request_is(&t->cmd, "POST", "/api/admin/suspend/v1");
    kcli_cmd_test_body_is(&t->cmd, "{\"tenant\":\"acme\",\"reason\":"
                                   "\"too fast\",\"duration\":\"1h\"}");
    /* KumoMTA's suspend has no --routing-domain. */
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(rd), rd), KM_EINVAL);
}

static void
kcli_suspend_ready_q_posts_name_and_reason(void **state)
{
    char *argv[] = {"suspend-ready-q", "--name",
                    "src->mx.example.test@smtp_client", "--reason", "slow"};
    char *noname[] = {"suspend-ready-q", "--reason", "slow"};
    struct kcli_cmd_test *t = *state;

    assert_int_equal(kcli_cmd_test_parse(t, ARGC(argv), argv), 0);
    kcli_cmd_test_request_is(&t->cmd, "POST", "/api/admin/suspend-ready-q/v1");
    kcli_cmd_test_body_is(&t->cmd,
                          "{\"name\":\"src->mx.example.test@smtp_client\","
                          "\"reason\":\"slow\"}");
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(noname), noname), KM_EINVAL);
    assert_non_null(strstr(buf_cstr(&t->err), "--name is required"));
}

static void
kcli_rebind_merges_data_then_set_pairs(void **state)
{
    char *argv[] = {"rebind",
                    "--domain",
                    "a.test",
                    "--reason",
                    "move",
                    "--data",
                    "{\"queue\":\"old\",\"x\":\"1\"}",
                    "--set",
                    "queue=new",
                    "--set",
                    "routing_domain=b.test=c",
                    "--always-flush",
                    "--trigger-rebind-event",
                    "--suppress-logging"};
    struct kcli_cmd_test *t = *state;

    assert_int_equal(kcli_cmd_test_parse(t, ARGC(argv), argv), 0);
    assert_int_equal(t->cmd.op, KCLI_OP_REBIND);
    kcli_cmd_test_request_is(&t->cmd, "POST", "/api/admin/rebind/v1");
    kcli_cmd_test_body_is(
        &t->cmd,
        "{\"domain\":\"a.test\",\"reason\":\"move\",\"data\":{\"queue\":"
        "\"new\",\"x\":\"1\",\"routing_domain\":\"b.test=c\"},"
        "\"always_flush\":true,\"trigger_rebind_event\":true,"
        "\"suppress_logging\":true}");
}

static void
kcli_rebind_rejects_bad_data_and_no_op(void **state)
{
    char *badjson[] = {"rebind", "--everything", "--reason",
                       "r",      "--data",       "{nope"};
    char *notobj[] = {"rebind", "--everything", "--reason",
                      "r",      "--data",       "[1]"};
    char *badset[] = {"rebind", "--everything", "--reason", "r", "--set", "=v"};
    char *noop[] = {"rebind", "--everything", "--reason", "r"};
    char *flush[] = {"rebind",   "--queue", "q",
                     "--reason", "r",       "--always-flush"};
    struct kcli_cmd_test *t = *state;

    assert_int_equal(kcli_cmd_test_parse(t, ARGC(badjson), badjson), KM_EINVAL);
    assert_non_null(strstr(buf_cstr(&t->err), "--data is not JSON"));
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(notobj), notobj), KM_EINVAL);
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(badset), badset), KM_EINVAL);
    assert_non_null(strstr(buf_cstr(&t->err), "KEY=VALUE"));
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(noop), noop), KM_EINVAL);
    assert_non_null(strstr(buf_cstr(&t->err), "nothing to do"));
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(flush), flush), 0);
    kcli_cmd_test_body_is(&t->cmd, "{\"queue_names\":[\"q\"],\"reason\":"
                                   "\"r\",\"data\":{},\"always_flush\":true}");
}

static void
kcli_inspect_message_encodes_id_and_want_body(void **state)
{
    char *argv[] = {"inspect-message", "--want-body", "ab cd&e"};
    char *plain[] = {"inspect-message", "0123abcd"};
    char *none[] = {"inspect-message"};
    struct kcli_cmd_test *t = *state;

    assert_int_equal(kcli_cmd_test_parse(t, ARGC(argv), argv), 0);
    kcli_cmd_test_request_is(
        &t->cmd, "GET",
        "/api/admin/inspect-message/v1?id=ab%20cd%26e&want_body=true");
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(plain), plain), 0);
    kcli_cmd_test_request_is(&t->cmd, "GET",
                             "/api/admin/inspect-message/v1?id=0123abcd");
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(none), none), KM_EINVAL);
}

static void
kcli_set_log_filter_posts_the_filter(void **state)
{
    char *argv[] = {"set-log-filter", "kumod=debug"};
    char *two[] = {"set-log-filter", "a", "b"};
    struct kcli_cmd_test *t = *state;

    assert_int_equal(kcli_cmd_test_parse(t, ARGC(argv), argv), 0);
    kcli_cmd_test_request_is(&t->cmd, "POST",
                             "/api/admin/set_diagnostic_log_filter/v1");
    kcli_cmd_test_body_is(&t->cmd, "{\"filter\":\"kumod=debug\"}");
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(two), two), KM_EINVAL);
}

static void
kcli_cluster_status_gets_status(void **state)
{
    char *argv[] = {"cluster", "status", "--json"};
    char *bad[] = {"cluster", "explode"};
    char *none[] = {"cluster"};
    struct kcli_cmd_test *t = *state;

    assert_int_equal(kcli_cmd_test_parse(t, ARGC(argv), argv), 0);
    assert_int_equal(t->cmd.op, KCLI_OP_CLUSTER_STATUS);
    kcli_cmd_test_request_is(&t->cmd, "GET", "/api/admin/cluster/status/v1");
    assert_true(t->cmd.json);
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(bad), bad), KM_EINVAL);
    assert_non_null(strstr(buf_cstr(&t->err), "'explode'"));
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(none), none), KM_EINVAL);
}

static void
kcli_cluster_admin_subcommands_post_their_bodies(void **state)
{
    char *add[] = {"cluster", "add-node", "4", "127.0.0.1:7410",
                   "tcp://127.0.0.1:7420"};
    char *rm[] = {"cluster", "remove-node", "2"};
    char *tl[] = {"cluster", "transfer-leader", "3"};
    char *tl_any[] = {"cluster", "transfer-leader"};
    struct kcli_cmd_test *t = *state;

    assert_int_equal(kcli_cmd_test_parse(t, ARGC(add), add), 0);
    assert_int_equal(t->cmd.op, KCLI_OP_CLUSTER_ADMIN);
    kcli_cmd_test_request_is(&t->cmd, "POST", "/api/admin/cluster/add-node/v1");
    kcli_cmd_test_body_is(&t->cmd, "{\"id\":4,\"raft\":\"127.0.0.1:7410\","
                                   "\"link\":\"tcp://127.0.0.1:7420\"}");
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(rm), rm), 0);
    kcli_cmd_test_request_is(&t->cmd, "POST",
                             "/api/admin/cluster/remove-node/v1");
    kcli_cmd_test_body_is(&t->cmd, "{\"id\":2}");
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(tl), tl), 0);
    kcli_cmd_test_request_is(&t->cmd, "POST",
                             "/api/admin/cluster/transfer-leader/v1");
    kcli_cmd_test_body_is(&t->cmd, "{\"id\":3}");
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(tl_any), tl_any), 0);
    kcli_cmd_test_body_is(&t->cmd, "{}");
}

static void
kcli_cluster_admin_rejects_bad_ids_and_arity(void **state)
{
    char *add_short[] = {"cluster", "add-node", "4", "127.0.0.1:7410"};
    char *rm_word[] = {"cluster", "remove-node", "two"};
    char *rm_zero[] = {"cluster", "remove-node", "0"};
    char *rm_none[] = {"cluster", "remove-node"};
    char *tl_two[] = {"cluster", "transfer-leader", "1", "2"};
    struct kcli_cmd_test *t = *state;

    assert_int_equal(kcli_cmd_test_parse(t, ARGC(add_short), add_short),
                     KM_EINVAL);
    assert_non_null(strstr(buf_cstr(&t->err), "ID RAFT_ADDR LINK_URL"));
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(rm_word), rm_word), KM_EINVAL);
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(rm_zero), rm_zero), KM_EINVAL);
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(rm_none), rm_none), KM_EINVAL);
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(tl_two), tl_two), KM_EINVAL);
}

static void
kcli_cluster_completion_offers_admin_subcommands(void **state)
{
    const char *const *f = kcli_cmd_flags("cluster");
    bool add = false, rm = false, tl = false;

    (void)state;
    assert_non_null(f);
    for (size_t i = 0; f[i] != NULL; i++) {
        add = add || strcmp(f[i], "add-node") == 0;
        rm = rm || strcmp(f[i], "remove-node") == 0;
        tl = tl || strcmp(f[i], "transfer-leader") == 0;
    }
    assert_true(add && rm && tl);
}

static void
kcli_help_flag_gives_help_without_request(void **state)
{
    char *argv[] = {"rebind", "--help"};
    char *unknown[] = {"frobnicate"};
    struct kcli_cmd_test *t = *state;

    /* --help wins even though the required flags are missing. */
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(argv), argv), 0);
    assert_int_equal(t->cmd.op, KCLI_OP_HELP);
    assert_null(t->cmd.method);
    assert_non_null(strstr(t->cmd.text, "usage: kcli rebind --reason R"));
    assert_int_equal(kcli_cmd_test_parse(t, ARGC(unknown), unknown), KM_ENOENT);
    assert_non_null(strstr(buf_cstr(&t->err), "'frobnicate'"));
}

static void
kcli_help_lists_every_command_and_flags_exist(void **state)
{
    struct buf out = BUF_INIT;
    size_t n = 0;

    (void)state;
    kcli_cmd_help_all(&out);
    for (size_t i = 0; kcli_cmd_name_at(i) != NULL; i++, n++) {
        assert_non_null(strstr(buf_cstr(&out), kcli_cmd_name_at(i)));
        assert_non_null(kcli_cmd_flags(kcli_cmd_name_at(i)));
    }
    assert_int_equal(n, 14);
    assert_string_equal(kcli_cmd_flags("bounce")[0], "--reason");
    assert_null(kcli_cmd_flags("nope"));
    buf_reset(&out);
    assert_int_equal(kcli_cmd_help("nope", &out), KM_ENOENT);
    assert_int_equal(kcli_cmd_help("suspend", &out), 0);
    assert_non_null(strstr(buf_cstr(&out), "usage: kcli suspend "));
    buf_fini(&out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f)                                                                   \
    cmocka_unit_test_setup_teardown(f, kcli_cmd_test_setup,                    \
                                    kcli_cmd_test_teardown)
        T(kcli_opts_endpoint_flag_beats_environment),
        T(kcli_opts_endpoint_from_environment_then_default),
        T(kcli_opts_reports_unknown_option_and_missing_url),
        T(kcli_queue_summary_gets_summary_with_limit),
        T(kcli_bounce_posts_criteria_reason_and_duration),
        T(kcli_bounce_everything_sends_no_criteria),
        T(kcli_bounce_usage_errors_name_the_problem),
        T(kcli_lists_get_their_collections),
        T(kcli_cancels_delete_with_the_id),
        T(kcli_suspend_posts_criteria_without_routing_domain),
        T(kcli_suspend_ready_q_posts_name_and_reason),
        T(kcli_rebind_merges_data_then_set_pairs),
        T(kcli_rebind_rejects_bad_data_and_no_op),
        T(kcli_inspect_message_encodes_id_and_want_body),
        T(kcli_set_log_filter_posts_the_filter),
        T(kcli_cluster_status_gets_status),
        T(kcli_cluster_admin_subcommands_post_their_bodies),
        T(kcli_cluster_admin_rejects_bad_ids_and_arity),
        T(kcli_cluster_completion_offers_admin_subcommands),
        T(kcli_help_flag_gives_help_without_request),
        T(kcli_help_lists_every_command_and_flags_exist),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
