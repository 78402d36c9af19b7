/* test_ingest.c - what reception means for a message, owned by ingest: the
 * listener's verdicts and the null queue decide which messages are stored
 * (ingest_keeps) and whether a transaction is taken at all
 * (ingest_takes_any); messages that are only accepted are logged with the
 * one Reception builder and dropped, on a real loop and a real log writer,
 * with the callback deferred past ingest_submit() and the in-flight count
 * back to zero. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <uv.h>

#include "base/buf.h"
#include "base/km.h"
#include "ingest.h"
#include "logrec.h"
#include "message.h"
#include "test_util.h"
#include "test_zstd.h"

/* Fixture */

struct ingest_test {
    uv_loop_t loop;
    char dir[256];
    struct logrec *lr;
    struct logrec_set logs;
    struct ingest *ig;
    bool called, closed;
    int status;
};

static int
ingest_test_setup(void **state)
{
    struct ingest_test *t = calloc(1, sizeof(*t));
    const char *root = getenv("KUMO_TEST_TMP");
    struct logrec_config cfg;

    snprintf(t->dir, sizeof(t->dir), "%s/ingest-XXXXXX",
             root != NULL ? root : "/tmp");
    assert_non_null(mkdtemp(t->dir));
    assert_int_equal(uv_loop_init(&t->loop), 0);
    memset(&cfg, 0, sizeof(cfg));
    cfg.log_dir = t->dir;
    assert_int_equal(logrec_open(&t->loop, &cfg, &t->lr), 0);
    t->logs.logs = &t->lr;
    t->logs.n = 1;
    t->logs.nodeid = "node-under-test";
    ingest_new(&t->ig);
    struct ingest_deps d = {.loop = &t->loop, .logs = &t->logs};
    ingest_open(t->ig, &d);
    *state = t;
    return 0;
}

static void
ingest_test_on_log_closed(void *arg)
{
    ((struct ingest_test *)arg)->closed = true;
}

static int
ingest_test_teardown(void **state)
{
    struct ingest_test *t = *state;

    if (t->lr != NULL) {
        logrec_close(t->lr, ingest_test_on_log_closed, t);
        test_run_until(&t->loop, &t->closed);
    }
    ingest_free(t->ig);
    assert_int_equal(uv_run(&t->loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(uv_loop_close(&t->loop), 0);
    assert_int_equal(test_rm_rf(t->dir), 0);
    free(t);
    return 0;
}

/* Helpers */

static struct message *
ingest_test_msg(const char *id, const char *queue)
{
    struct message *m = NULL;
    json_t *meta = json_object();

    if (queue != NULL) {
        json_object_set_new(meta, "queue", json_string(queue));
    }
    assert_int_equal(
        message_new(id, "sender@example.test", "rcpt@dest.test", meta, &m), 0);
    return m;
}

static void
ingest_test_on_done(void *arg, int status)
{
    struct ingest_test *t = arg;

    t->called = true;
    t->status = status;
}

/* Close the log writer and return every record it wrote, one per line. */
static void
ingest_test_records(struct ingest_test *t, struct buf *out)
{
    struct dirent *e;
    DIR *dir;

    logrec_close(t->lr, ingest_test_on_log_closed, t);
    t->lr = NULL;
    test_run_until(&t->loop, &t->closed);
    dir = opendir(t->dir);
    assert_non_null(dir);
    while ((e = readdir(dir)) != NULL) {
        char path[600];

        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", t->dir, e->d_name);
        assert_true(test_unzstd(path, out));
    }
    closedir(dir);
}

/* Tests */

static void
ingest_keeps_only_relayed_messages_outside_the_null_queue(void **state)
{
    struct message *plain =
        ingest_test_msg("0000000000000000000000000000aaaa", NULL);
    struct message *null_q =
        ingest_test_msg("0000000000000000000000000000bbbb", "null");

    (void)state;
    assert_true(ingest_keeps(plain, INGEST_KEEP));
    assert_false(ingest_keeps(plain, INGEST_DROP));
    assert_false(ingest_keeps(null_q, INGEST_KEEP));
    assert_false(ingest_keeps(null_q, INGEST_DROP));
    message_unref(plain);
    message_unref(null_q);
}

static void
ingest_takes_a_transaction_with_one_kept_or_null_queued_message(void **state)
{
    struct message *msgs[2] = {
        ingest_test_msg("0000000000000000000000000000aaaa", NULL),
        ingest_test_msg("0000000000000000000000000000bbbb", "null"),
    };

    enum ingest_verdict drop_both[2] = {INGEST_DROP, INGEST_DROP};

    enum ingest_verdict keep_first[2] = {INGEST_KEEP, INGEST_DROP};

    (void)state;
    /* Nothing relayed and nothing for the null queue: refused (550). */
    assert_false(ingest_takes_any(msgs, drop_both, 1));
    /* The null queue accepts what the listener would not relay. */
    assert_true(ingest_takes_any(msgs, drop_both, 2));
    assert_true(ingest_takes_any(msgs, keep_first, 1));
    message_unref(msgs[0]);
    message_unref(msgs[1]);
}

static void
ingest_logs_and_drops_what_it_does_not_keep(void **state)
{
    struct ingest_test *t = *state;
    struct message *msgs[2] = {
        ingest_test_msg("0000000000000000000000000000aaaa", NULL),
        ingest_test_msg("0000000000000000000000000000bbbb", "null"),
    };

    enum ingest_verdict v[2] = {INGEST_DROP, INGEST_KEEP};
    struct ingest_peer peer = {
        .reception_protocol = "ESMTP",
        .peer_name = "client.example.test",
        .peer_addr = "127.0.0.1",
        .session_id = "session-1",
    };
    struct buf text = BUF_INIT;

    ingest_submit(t->ig, msgs, v, 2, &peer, ingest_test_on_done, t);
    assert_false(t->called); /* never before ingest_submit returns */
    assert_int_equal(ingest_inflight(t->ig), 1);
    message_unref(msgs[0]);
    message_unref(msgs[1]);
    test_run_until(&t->loop, &t->called);
    assert_int_equal(t->status, 0);
    assert_int_equal(ingest_inflight(t->ig), 0);

    ingest_test_records(t, &text);
    const char *p = buf_cstr(&text);
    assert_non_null(strstr(p, "\"type\":\"Reception\""));
    assert_non_null(
        strstr(p, "\"content\":\"OK ids=0000000000000000000000000000aaaa\""));
    assert_non_null(
        strstr(p, "\"content\":\"OK ids=0000000000000000000000000000bbbb\""));
    assert_non_null(strstr(p, "\"command\":\".\""));
    assert_non_null(strstr(p, "\"session_id\":\"session-1\""));
    assert_non_null(strstr(p, "\"nodeid\":\"node-under-test\""));
    /* Exactly two records, one per message. */
    int lines = 0;
    for (const char *q = p; *q != '\0'; q++) {
        lines += *q == '\n';
    }
    assert_int_equal(lines, 2);
    buf_fini(&text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            ingest_keeps_only_relayed_messages_outside_the_null_queue),
        cmocka_unit_test(
            ingest_takes_a_transaction_with_one_kept_or_null_queued_message),
        cmocka_unit_test_setup_teardown(
            ingest_logs_and_drops_what_it_does_not_keep, ingest_test_setup,
            ingest_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
