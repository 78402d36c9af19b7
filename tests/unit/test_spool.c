/* test_spool.c - the RocksDB spool on a real libuv loop in a temp dir: put
 * and get, group commit (many puts share few batches), delete, ordered
 * iteration, reopen, refusal while closing, and callbacks on the loop
 * thread. Prints the group-commit rate of the concurrent-put test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_util.h"
#include <pthread.h>
#include <uv.h>

#include "base/buf.h"
#include "base/km.h"
#include "spool.h"

/* Fixture */

struct spool_test {
    uv_loop_t loop;
    char dir[256];
    struct spool *sp;
    pthread_t loop_thread;
    int done;   /* callbacks seen */
    int failed; /* callbacks with status != 0 */
    int last_status;
    bool off_thread; /* a callback ran on another thread */
    bool closed;
};

static int
spool_test_setup(void **state)
{
    struct spool_test *t = calloc(1, sizeof(*t));
    const char *base = getenv("KUMO_TEST_TMP");

    if (base == NULL) {
        base = "/tmp";
    }
    uv_fs_t req;
    uv_fs_mkdir(NULL, &req, base, 0755, NULL);
    uv_fs_req_cleanup(&req);
    snprintf(t->dir, sizeof(t->dir), "%s/spool-XXXXXX", base);
    if (mkdtemp(t->dir) == NULL) {
        free(t);
        return -1;
    }
    uv_loop_init(&t->loop);
    t->loop_thread = pthread_self();
    *state = t;
    return 0;
}

static void
spool_test_on_closed(void *arg)
{
    struct spool_test *t = arg;

    t->closed = true;
}

static void
spool_test_close(struct spool_test *t)
{
    t->closed = false;
    spool_close(t->sp, spool_test_on_closed, t);
    t->sp = NULL;
    test_run_until(&t->loop, &t->closed);
}

static int
spool_test_teardown(void **state)
{
    struct spool_test *t = *state;

    if (t->sp != NULL) {
        spool_test_close(t);
    }
    int rv = uv_loop_close(&t->loop);
    if (test_rm_rf(t->dir) != 0) {
        rv = -1;
    }
    free(t);
    return rv == 0 ? 0 : -1;
}

/* Helpers */

static void
spool_test_on_done(void *arg, int status)
{
    struct spool_test *t = arg;

    if (!pthread_equal(pthread_self(), t->loop_thread)) {
        t->off_thread = true;
    }
    t->done++;
    t->last_status = status;
    if (status != 0) {
        t->failed++;
    }
}

static void
spool_test_wait(struct spool_test *t, int n)
{
    uint64_t deadline = km_now_mono_ms() + 30000;

    while (t->done < n && km_now_mono_ms() < deadline) {
        uv_run(&t->loop, UV_RUN_ONCE);
    }
    assert_int_equal(t->done, n);
}

static void
spool_test_open(struct spool_test *t)
{
    assert_int_equal(spool_open(&t->loop, "data", t->dir, &t->sp), 0);
}

struct spool_test_walk {
    int count;
    char last[64];
    bool ordered;
};

static bool
spool_test_on_entry(void *arg, const char *key, size_t key_len,
                    const char *value, size_t value_len)
{
    struct spool_test_walk *w = arg;
    char k[64];

    assert_true(key_len < sizeof(k));
    memcpy(k, key, key_len);
    k[key_len] = '\0';
    if (w->count > 0 && strcmp(w->last, k) >= 0) {
        w->ordered = false;
    }
    assert_int_equal(value_len, 6);
    assert_memory_equal(value, "value-", 6);
    memcpy(w->last, k, key_len + 1);
    w->count++;
    return true;
}

/* Tests */

static void
spool_put_then_get_returns_same_bytes(void **state)
{
    struct spool_test *t = *state;
    char body[10000];
    struct buf out = BUF_INIT;

    for (size_t i = 0; i < sizeof(body); i++) {
        body[i] = (char)(i * 7);
    }
    spool_test_open(t);
    assert_int_equal(
        spool_put(t->sp, "k1", body, sizeof(body), spool_test_on_done, t), 0);
    spool_test_wait(t, 1);
    assert_int_equal(t->last_status, 0);
    assert_int_equal(spool_get(t->sp, "k1", &out), 0);
    assert_int_equal(out.len, sizeof(body));
    assert_memory_equal(out.data, body, sizeof(body));
    buf_fini(&out);
    assert_int_equal(spool_get(t->sp, "missing", &out), KM_ENOENT);
}

static void
spool_concurrent_puts_share_few_batches(void **state)
{
    struct spool_test *t = *state;

    enum { N = 2000 };

    static char body[10240];
    char key[32];
    struct spool_stats st;

    memset(body, 'x', sizeof(body));
    spool_test_open(t);
    uint64_t t0 = km_now_mono_ms();
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "msg-%06d", i);
        assert_int_equal(
            spool_put(t->sp, key, body, sizeof(body), spool_test_on_done, t),
            0);
    }
    spool_get_stats(t->sp, &st);
    assert_int_equal(st.batches, 1); /* the first put started a batch */
    spool_test_wait(t, N);
    uint64_t ms = km_now_mono_ms() - t0;
    assert_int_equal(t->failed, 0);
    spool_get_stats(t->sp, &st);
    assert_int_equal(st.puts, N);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.put_bytes, (uint64_t)N * sizeof(body));
    assert_true(st.batches < N / 10);
    print_message("spool: %d synced puts of 10 KiB in %llu ms (%llu "
                  "batches, %.0f puts/s)\n",
                  N, (unsigned long long)ms, (unsigned long long)st.batches,
                  ms > 0 ? N * 1000.0 / (double)ms : 0.0);
}

static void
spool_delete_removes_key(void **state)
{
    struct spool_test *t = *state;
    struct buf out = BUF_INIT;
    struct spool_stats st;

    spool_test_open(t);
    spool_put(t->sp, "gone", "abc", 3, spool_test_on_done, t);
    spool_test_wait(t, 1);
    assert_int_equal(spool_delete(t->sp, "gone", spool_test_on_done, t), 0);
    assert_int_equal(spool_delete(t->sp, "never-there", NULL, NULL), 0);
    spool_test_wait(t, 2);
    assert_int_equal(t->failed, 0);
    assert_int_equal(spool_get(t->sp, "gone", &out), KM_ENOENT);
    spool_get_stats(t->sp, &st);
    assert_int_equal(st.deletes, 2);
}

static void
spool_foreach_visits_all_in_key_order(void **state)
{
    struct spool_test *t = *state;
    const char *keys[] = {"m", "c", "z", "a", "q"};
    struct spool_test_walk w = {.ordered = true};

    spool_test_open(t);
    for (size_t i = 0; i < 5; i++) {
        spool_put(t->sp, keys[i], "value-", 6, spool_test_on_done, t);
    }
    spool_test_wait(t, 5);
    assert_int_equal(spool_foreach(t->sp, spool_test_on_entry, &w), 0);
    assert_int_equal(w.count, 5);
    assert_true(w.ordered);
    assert_string_equal(w.last, "z");
}

static void
spool_reopen_after_close_keeps_data(void **state)
{
    struct spool_test *t = *state;
    struct buf out = BUF_INIT;

    spool_test_open(t);
    spool_put(t->sp, "durable", "hello", 5, spool_test_on_done, t);
    /* Closed right away: the accepted put is flushed, not dropped. */
    spool_test_close(t);
    assert_int_equal(t->done, 1);
    assert_int_equal(t->last_status, 0);
    spool_test_open(t);
    assert_int_equal(spool_get(t->sp, "durable", &out), 0);
    assert_string_equal(out.data, "hello");
    buf_fini(&out);
}

static void
spool_close_flushes_queued_writes(void **state)
{
    struct spool_test *t = *state;
    char key[32];
    struct buf out = BUF_INIT;

    spool_test_open(t);
    /* The first put is in flight, the other 99 wait for the next batch
     * when close starts: all must be written. */
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "q-%03d", i);
        spool_put(t->sp, key, "v", 1, spool_test_on_done, t);
    }
    spool_test_close(t);
    assert_int_equal(t->done, 100);
    assert_int_equal(t->failed, 0);
    spool_test_open(t);
    assert_int_equal(spool_get(t->sp, "q-099", &out), 0);
    buf_fini(&out);
}

static void
spool_put_after_close_started_is_refused(void **state)
{
    struct spool_test *t = *state;
    struct spool *sp;

    spool_test_open(t);
    sp = t->sp;
    t->closed = false;
    spool_close(sp, spool_test_on_closed, t);
    t->sp = NULL;
    assert_int_equal(spool_put(sp, "late", "x", 1, spool_test_on_done, t),
                     KM_ECLOSING);
    assert_int_equal(spool_delete(sp, "late", NULL, NULL), KM_ECLOSING);
    assert_false(t->closed); /* cb never runs inside spool_close */
    test_run_until(&t->loop, &t->closed);
    assert_int_equal(t->done, 0); /* refused ops never call back */
}

static void
spool_callbacks_run_on_loop_thread(void **state)
{
    struct spool_test *t = *state;

    spool_test_open(t);
    for (int i = 0; i < 20; i++) {
        spool_put(t->sp, "same", "v", 1, spool_test_on_done, t);
    }
    spool_test_wait(t, 20);
    assert_false(t->off_thread);
}

static void
spool_free_space_reports_file_system(void **state)
{
    struct spool_test *t = *state;
    uint64_t bytes = 0;
    double pct = -1;

    spool_test_open(t);
    assert_int_equal(spool_free_space(t->sp, &bytes, &pct), 0);
    assert_true(bytes > 0);
    assert_true(pct > 0.0 && pct <= 100.0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f)                                                                   \
    cmocka_unit_test_setup_teardown(f, spool_test_setup, spool_test_teardown)
        T(spool_put_then_get_returns_same_bytes),
        T(spool_concurrent_puts_share_few_batches),
        T(spool_delete_removes_key),
        T(spool_foreach_visits_all_in_key_order),
        T(spool_reopen_after_close_keeps_data),
        T(spool_close_flushes_queued_writes),
        T(spool_put_after_close_started_is_refused),
        T(spool_callbacks_run_on_loop_thread),
        T(spool_free_space_reports_file_system),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
