/* test_queue.c - the scheduled queues with real neighbours (a one-voter
 * raft group, RocksDB spools in a temp dir, a Lua policy answering
 * get_queue_config, the admin rules) and one fake: egress_submit, which
 * records what the queue hands down instead of delivering. A due message
 * goes down to egress; a delivered outcome commits Done and deletes the
 * body; a transient one keeps the message and hands it down again after
 * retry_interval; an active bounce rule bounces a due message without
 * egress. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <uv.h>

#include "admin_rules.h"
#include "base/buf.h"
#include "base/km.h"
#include "base/log.h"
#include "cluster.h"
#include "egress.h"
#include "logrec.h"
#include "message.h"
#include "metrics.h"
#include "policy.h"
#include "policy_glue.h"
#include "queue.h"
#include "spool.h"
#include "test_util.h"

#define QUEUE_TEST_ID "0123456789abcdef0123456789abcdef"

/* Fixture */

struct queue_test {
    uv_loop_t loop;
    char dir[256];
    struct spool *data, *meta;
    struct cluster *cluster;
    struct policy *policy;
    struct metrics *metrics;
    struct admin_rules *rules;
    struct logrec_set logs;
    struct queue_mgr *qm;
    bool ready, closed, put_done;
    int closing;
    /* what egress was handed */
    int submitted;
    struct message *last;
};

static struct queue_test *queue_test_current;

/* The fake: the queue's one call down into egress. */
void
egress_submit(struct egress_mgr *em, struct message *m,
              const struct queue_config *qcfg, const char *queue)
{
    struct queue_test *t = queue_test_current;

    (void)em;
    (void)qcfg;
    (void)queue;
    t->submitted++;
    if (t->last != NULL) {
        message_unref(t->last);
    }
    message_ref(m);
    t->last = m;
}

static void
queue_test_on_ready(void *ctx)
{
    ((struct queue_test *)ctx)->ready = true;
}

static void
queue_test_on_fatal(void *ctx, int err)
{
    (void)ctx;
    fail_msg("cluster fatal: %s", km_strerror(err));
}

static int
queue_test_setup(void **state)
{
    struct queue_test *t = calloc(1, sizeof(*t));
    const char *root = getenv("KUMO_TEST_TMP");
    char path[400], err[512];
    struct policy_host host;
    FILE *f;

    snprintf(t->dir, sizeof(t->dir), "%s/queue-XXXXXX",
             root != NULL ? root : "/tmp");
    assert_non_null(mkdtemp(t->dir));
    log_set_level(LOG_LVL_WARN);
    assert_int_equal(uv_loop_init(&t->loop), 0);
    snprintf(path, sizeof(path), "%s/data", t->dir);
    assert_int_equal(spool_open(&t->loop, "data", path, &t->data), 0);
    snprintf(path, sizeof(path), "%s/meta", t->dir);
    assert_int_equal(spool_open(&t->loop, "meta", path, &t->meta), 0);

    snprintf(path, sizeof(path), "%s/raft", t->dir);
    struct cluster_config cc = {
        .node_id = 1, .raft_dir = path, .raft_addr = "127.0.0.1:0"};
    struct cluster_host ch = {.ctx = t,
                              .on_ready = queue_test_on_ready,
                              .on_fatal = queue_test_on_fatal};
    assert_int_equal(cluster_open(&t->loop, &cc, &ch, &t->cluster), 0);
    test_run_until(&t->loop, &t->ready);

    snprintf(path, sizeof(path), "%s/policy.lua", t->dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("local kumo = require 'kumo'\n"
          "kumo.on('get_queue_config', function(domain, tenant, campaign, r)\n"
          "  return kumo.make_queue_config { retry_interval = '1s',\n"
          "    max_retry_interval = '1s' }\n"
          "end)\n",
          f);
    fclose(f);
    memset(&host, 0, sizeof(host));
    policy_glue_msg_ops(&host.msg);
    assert_int_equal(policy_new(&host, &t->policy), 0);
    assert_int_equal(policy_load(t->policy, path, err, sizeof(err)), 0);

    metrics_new(&t->metrics);
    admin_rules_new(&t->rules);
    struct queue_deps d = {
        .loop = &t->loop,
        .policy = t->policy,
        .cluster = t->cluster,
        .data = t->data,
        .meta = t->meta,
        .logs = &t->logs, /* no logger: records go nowhere */
        .metrics = t->metrics,
        .rules = t->rules,
        .egress = NULL, /* the fake ignores it */
    };
    assert_int_equal(queue_mgr_open(&d, &t->qm), 0);
    queue_mgr_start(t->qm);
    queue_test_current = t;
    *state = t;
    return 0;
}

static void
queue_test_on_closed(void *arg)
{
    ((struct queue_test *)arg)->closing--;
}

static void
queue_test_on_cluster_closed(void *arg)
{
    struct queue_test *t = arg;

    t->closing--;
    spool_close(t->data, queue_test_on_closed, t);
    spool_close(t->meta, queue_test_on_closed, t);
    t->closing += 2;
}

static void
queue_test_on_queue_closed(void *arg)
{
    struct queue_test *t = arg;

    t->closing--;
    t->closing++;
    cluster_close(t->cluster, queue_test_on_cluster_closed, t);
}

static int
queue_test_teardown(void **state)
{
    struct queue_test *t = *state;

    if (t->last != NULL) {
        message_unref(t->last);
    }
    t->closing = 1;
    queue_mgr_close(t->qm, queue_test_on_queue_closed, t);
    while (t->closing > 0) {
        uv_run(&t->loop, UV_RUN_ONCE);
    }
    queue_mgr_free(t->qm);
    admin_rules_free(t->rules);
    metrics_free(t->metrics);
    policy_free(t->policy);
    assert_int_equal(uv_run(&t->loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(uv_loop_close(&t->loop), 0);
    assert_int_equal(test_rm_rf(t->dir), 0);
    queue_test_current = NULL;
    free(t);
    return 0;
}

/* Helpers */

static void
queue_test_on_put(void *arg, int status)
{
    struct queue_test *t = arg;

    assert_int_equal(status, 0);
    t->put_done = true;
}

/* A message for dest.test, its body in the data spool, queued now. */
static struct message *
queue_test_insert(struct queue_test *t)
{
    struct message *m = NULL;
    const char *body = "Subject: queued\r\n\r\nhello\r\n";

    assert_int_equal(message_new(QUEUE_TEST_ID, "sender@example.test",
                                 "rcpt@dest.test", NULL, &m),
                     0);
    buf_append(message_data(m), body, strlen(body));
    t->put_done = false;
    assert_int_equal(spool_put(t->data, QUEUE_TEST_ID, body, strlen(body),
                               queue_test_on_put, t),
                     0);
    test_run_until(&t->loop, &t->put_done);
    queue_insert(t->qm, m, "Received");
    return m;
}

static void
queue_test_wait_gone(struct queue_test *t)
{
    uint64_t until = uv_hrtime() / 1000000 + 10000;

    while (queue_mgr_count(t->qm) > 0 || queue_mgr_pending_commits(t->qm) > 0) {
        assert_true(uv_hrtime() / 1000000 < until);
        uv_run(&t->loop, UV_RUN_ONCE);
    }
}

static void
queue_test_wait_submitted(struct queue_test *t, int n)
{
    uint64_t until = uv_hrtime() / 1000000 + 10000;

    while (t->submitted < n) {
        assert_true(uv_hrtime() / 1000000 < until);
        uv_run(&t->loop, UV_RUN_ONCE);
    }
}

static void
queue_test_outcome(struct queue_test *t, enum egress_outcome_kind kind,
                   int code)
{
    struct egress_outcome o;

    memset(&o, 0, sizeof(o));
    o.kind = kind;
    o.code = code;
    o.content = code >= 400 ? "try again later" : "OK";
    o.site = "test-site";
    o.delivery_protocol = "ESMTP";
    queue_attempt_done(t->qm, t->last, &o);
}

/* Tests */

static void
queue_hands_a_due_message_to_egress_and_ends_it_when_delivered(void **state)
{
    struct queue_test *t = *state;
    struct message *m = queue_test_insert(t);
    struct buf got = BUF_INIT;

    assert_int_equal(queue_mgr_count(t->qm), 1);
    queue_test_wait_submitted(t, 1);
    assert_ptr_equal(t->last, m);
    queue_test_outcome(t, EGRESS_DELIVERED, 250);
    queue_test_wait_gone(t);
    assert_null(queue_find(t->qm, QUEUE_TEST_ID));
    /* Done deletes the body. */
    uint64_t until = uv_hrtime() / 1000000 + 10000;
    while (spool_get(t->data, QUEUE_TEST_ID, &got) == 0 &&
           uv_hrtime() / 1000000 < until) {
        uv_run(&t->loop, UV_RUN_ONCE); /* the delete runs on the pool */
        buf_reset(&got);
    }
    assert_int_equal(spool_get(t->data, QUEUE_TEST_ID, &got), KM_ENOENT);
    assert_int_equal(t->submitted, 1);
    buf_fini(&got);
    message_unref(m);
}

static void
queue_keeps_a_transient_failure_and_retries_after_the_interval(void **state)
{
    struct queue_test *t = *state;
    struct message *m = queue_test_insert(t);
    uint64_t t0;

    queue_test_wait_submitted(t, 1);
    t0 = uv_hrtime() / 1000000;
    queue_test_outcome(t, EGRESS_TRANSIENT, 451);
    assert_int_equal(queue_mgr_count(t->qm), 1);
    assert_non_null(queue_find(t->qm, QUEUE_TEST_ID));
    queue_test_wait_submitted(t, 2);
    /* retry_interval = 1s (the wheel's tick may round it). */
    assert_true(uv_hrtime() / 1000000 - t0 >= 500);
    assert_int_equal(message_num_attempts(m), 1);
    queue_test_outcome(t, EGRESS_DELIVERED, 250);
    queue_test_wait_gone(t);
    message_unref(m);
}

static void
queue_bounces_a_due_message_an_admin_rule_bounces_without_egress(void **state)
{
    struct queue_test *t = *state;
    struct admin_rule *r = km_calloc(1, sizeof(*r));
    struct message *m;

    snprintf(r->id, sizeof(r->id), "bounce-dest");
    r->kind = ADMIN_BOUNCE;
    r->domain = km_strdup("dest.test");
    r->reason = km_strdup("bounced by the test");
    r->expires_ms = km_now_wall_ms() + 600000;
    admin_rules_put(t->rules, r);
    m = queue_test_insert(t);
    queue_test_wait_gone(t);
    assert_int_equal(t->submitted, 0);
    assert_int_equal(admin_rules_get(t->rules, "bounce-dest")->matched, 1);
    message_unref(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            queue_hands_a_due_message_to_egress_and_ends_it_when_delivered,
            queue_test_setup, queue_test_teardown),
        cmocka_unit_test_setup_teardown(
            queue_keeps_a_transient_failure_and_retries_after_the_interval,
            queue_test_setup, queue_test_teardown),
        cmocka_unit_test_setup_teardown(
            queue_bounces_a_due_message_an_admin_rule_bounces_without_egress,
            queue_test_setup, queue_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
