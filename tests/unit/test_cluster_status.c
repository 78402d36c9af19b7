/* test_cluster_status.c - the Status and Admin link codec (round trips,
 * and rejection of malformed or incomplete messages), then a real
 * one-voter group in a temp dir: cluster_status_collect reports this node
 * alone, and the membership admin calls refuse what they must (unknown
 * node, a member added twice, the leader removing itself, no voter to
 * transfer to) with the documented codes, always from a later loop turn. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "base/km.h"
#include "base/log.h"
#include "cluster.h"
#include "cluster_status_int.h"
#include "test_util.h"

/* Fixture */

struct status_test {
    uv_loop_t loop;
    char dir[256];
    struct cluster *c;
    int ready;
    bool closed;
    /* the last status collection */
    bool got_rows;
    struct cluster_member_status rows[4];
    size_t n_rows;
    /* the last admin outcome */
    bool got_admin;
    int admin_status;
    char admin_message[256];
    bool in_call; /* set while an API call runs: callbacks must not fire */
};

static int
status_test_setup(void **state)
{
    struct status_test *t = calloc(1, sizeof(*t));
    const char *base = getenv("KUMO_TEST_TMP");

    if (base == NULL) {
        base = "/tmp";
    }
    snprintf(t->dir, sizeof(t->dir), "%s/cstatus-XXXXXX", base);
    if (mkdtemp(t->dir) == NULL) {
        free(t);
        return -1;
    }
    uv_loop_init(&t->loop);
    log_set_level(LOG_LVL_ERROR);
    *state = t;
    return 0;
}

static void
status_test_on_closed(void *arg)
{
    struct status_test *t = arg;

    t->closed = true;
}

static int
status_test_teardown(void **state)
{
    struct status_test *t = *state;
    int rv;

    if (t->c != NULL) {
        cluster_close(t->c, status_test_on_closed, t);
        test_run_until(&t->loop, &t->closed);
    }
    /* Operations close their own timers: let them. */
    uv_run(&t->loop, UV_RUN_DEFAULT);
    rv = uv_loop_close(&t->loop);
    if (test_rm_rf(t->dir) != 0) {
        rv = -1;
    }
    free(t);
    return rv == 0 ? 0 : -1;
}

/* Helpers */

static void
status_test_on_ready(void *ctx)
{
    struct status_test *t = ctx;

    t->ready++;
}

static void
status_test_load(void *ctx, struct cluster_load *out)
{
    (void)ctx;
    memset(out, 0, sizeof(*out));
    out->queued = 7;
    out->inflight = 2;
    out->free_bytes = 123456789;
    out->policy_checksum = "abc123";
}

static void
status_test_open(struct status_test *t)
{
    struct cluster_config cfg = {
        .node_id = 1,
        .raft_dir = t->dir,
        .raft_addr = "127.0.0.1:0",
    };
    struct cluster_host host = {.ctx = t,
                                .on_ready = status_test_on_ready,
                                .get_load = status_test_load};
    uint64_t deadline = km_now_mono_ms() + 20000;

    assert_int_equal(cluster_open(&t->loop, &cfg, &host, &t->c), 0);
    while (t->ready == 0 && km_now_mono_ms() < deadline) {
        uv_run(&t->loop, UV_RUN_ONCE);
    }
    assert_true(cluster_is_ready(t->c));
}

static void
status_test_on_rows(void *arg, const struct cluster_member_status *rows,
                    size_t n)
{
    struct status_test *t = arg;

    assert_false(t->in_call);
    t->got_rows = true;
    t->n_rows = n < 4 ? n : 4;
    memcpy(t->rows, rows, t->n_rows * sizeof(*rows));
}

static void
status_test_on_admin(void *arg, int status, const char *message)
{
    struct status_test *t = arg;

    assert_false(t->in_call);
    assert_non_null(message);
    t->got_admin = true;
    t->admin_status = status;
    snprintf(t->admin_message, sizeof(t->admin_message), "%s", message);
}

static void
status_test_wait_admin(struct status_test *t)
{
    uint64_t deadline = km_now_mono_ms() + 10000;

    while (!t->got_admin && km_now_mono_ms() < deadline) {
        uv_run(&t->loop, UV_RUN_ONCE);
    }
    assert_true(t->got_admin);
}

/* Tests: codec */

static void
status_report_round_trip_keeps_fields_and_counts_shards(void **state)
{
    struct cluster_status_report in, out;
    uint8_t roles[8] = {1, 2, 0, 3, 0, 0, 2, 1};
    void *data;
    size_t len;

    (void)state;
    memset(&in, 0, sizeof(in));
    in.node = 3;
    snprintf(in.version, sizeof(in.version), "0.1.0");
    snprintf(in.raft_state, sizeof(in.raft_state), "follower");
    in.term = 9;
    in.leader_id = 2;
    in.last_index = 100;
    in.applied_index = 98;
    in.commit_index = 99;
    in.queued = 5;
    in.ready = 4;
    in.inflight = 3;
    in.free_bytes = 1ULL << 40;
    in.body_bytes = 77;
    snprintf(in.policy_checksum, sizeof(in.policy_checksum), "deadbeef");
    in.uptime_s = 3600;
    assert_int_equal(
        cluster_msg_encode_status_report(&in, roles, 8, &data, &len), 0);
    assert_int_equal(cluster_msg_decode_status_report(data, len, &out), 0);
    free(data);
    assert_int_equal(out.node, 3);
    assert_string_equal(out.version, "0.1.0");
    assert_string_equal(out.raft_state, "follower");
    assert_int_equal(out.term, 9);
    assert_int_equal(out.leader_id, 2);
    assert_int_equal(out.last_index, 100);
    assert_int_equal(out.applied_index, 98);
    assert_int_equal(out.commit_index, 99);
    assert_int_equal(out.queued, 5);
    assert_int_equal(out.ready, 4);
    assert_int_equal(out.inflight, 3);
    assert_true(out.free_bytes == 1ULL << 40);
    assert_int_equal(out.body_bytes, 77);
    assert_string_equal(out.policy_checksum, "deadbeef");
    assert_int_equal(out.uptime_s, 3600);
    assert_int_equal(out.shards_owned, 3);  /* roles 1, 3, 1 */
    assert_int_equal(out.shards_backed, 5); /* and the two replicas */
    assert_int_equal(out.under_replicated, 1);
}

static void
status_request_round_trip_keeps_verbose(void **state)
{
    bool verbose = false;
    void *data;
    size_t len;

    (void)state;
    assert_int_equal(cluster_msg_encode_status_request(true, &data, &len), 0);
    assert_int_equal(cluster_msg_decode_status_request(data, len, &verbose), 0);
    free(data);
    assert_true(verbose);
}

static void
admin_round_trip_for_each_op(void **state)
{
    struct cluster_admin_req in, out;
    void *data;
    size_t len;

    (void)state;
    memset(&in, 0, sizeof(in));
    in.op = CLUSTER_ADMIN_ADD_NODE;
    in.node = 4;
    snprintf(in.raft_addr, sizeof(in.raft_addr), "127.0.0.1:7410");
    snprintf(in.link_url, sizeof(in.link_url), "tcp://127.0.0.1:7420");
    assert_int_equal(cluster_msg_encode_admin(&in, &data, &len), 0);
    assert_int_equal(cluster_msg_decode_admin(data, len, &out), 0);
    free(data);
    assert_int_equal(out.op, CLUSTER_ADMIN_ADD_NODE);
    assert_int_equal(out.node, 4);
    assert_string_equal(out.raft_addr, "127.0.0.1:7410");
    assert_string_equal(out.link_url, "tcp://127.0.0.1:7420");

    memset(&in, 0, sizeof(in));
    in.op = CLUSTER_ADMIN_REMOVE_NODE;
    in.node = 2;
    assert_int_equal(cluster_msg_encode_admin(&in, &data, &len), 0);
    assert_int_equal(cluster_msg_decode_admin(data, len, &out), 0);
    free(data);
    assert_int_equal(out.op, CLUSTER_ADMIN_REMOVE_NODE);
    assert_int_equal(out.node, 2);

    in.op = CLUSTER_ADMIN_TRANSFER_LEADER;
    in.node = 0; /* any voter */
    assert_int_equal(cluster_msg_encode_admin(&in, &data, &len), 0);
    assert_int_equal(cluster_msg_decode_admin(data, len, &out), 0);
    free(data);
    assert_int_equal(out.op, CLUSTER_ADMIN_TRANSFER_LEADER);
    assert_int_equal(out.node, 0);
}

static void
admin_ack_round_trip_maps_status_codes(void **state)
{
    static const int codes[] = {0,         KM_ENOENT,     KM_EAGAIN,
                                KM_EINVAL, KM_ENOTLEADER, KM_ENOQUORUM};
    struct cluster_admin_ack in, out;
    void *data;
    size_t len;

    (void)state;
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        memset(&in, 0, sizeof(in));
        in.status = codes[i];
        in.raft_index = 42;
        snprintf(in.message, sizeof(in.message), "case %zu", i);
        assert_int_equal(cluster_msg_encode_admin_ack(&in, &data, &len), 0);
        assert_int_equal(cluster_msg_decode_admin_ack(data, len, &out), 0);
        free(data);
        assert_int_equal(out.status, codes[i]);
        assert_int_equal(out.raft_index, 42);
        assert_string_equal(out.message, in.message);
    }
}

static void
encode_admin_refuses_incomplete_requests(void **state)
{
    struct cluster_admin_req a;
    void *data = NULL;
    size_t len;

    (void)state;
    memset(&a, 0, sizeof(a));
    a.op = CLUSTER_ADMIN_ADD_NODE;
    a.node = 4; /* no raft address */
    assert_int_equal(cluster_msg_encode_admin(&a, &data, &len), KM_EINVAL);
    a.op = CLUSTER_ADMIN_REMOVE_NODE;
    a.node = 0;
    assert_int_equal(cluster_msg_encode_admin(&a, &data, &len), KM_EINVAL);
    a.op = (enum cluster_admin_op)99;
    assert_int_equal(cluster_msg_encode_admin(&a, &data, &len), KM_EINVAL);
    assert_null(data);
}

static void
decode_rejects_malformed_and_incomplete_messages(void **state)
{
    struct cluster_status_report r;
    struct cluster_admin_req a;
    struct cluster_admin_ack ack;
    bool verbose;
    /* A truncated varint: not protobuf at all. */
    static const uint8_t garbage[] = {0x08, 0xff, 0xff};
    /* Admin.remove_node with node 0; Admin.rule (not a membership op);
     * Admin.add_node {node 4} without a raft address; no op at all. */
    static const uint8_t rm_zero[] = {0x1a, 0x00};
    static const uint8_t rule[] = {0x0a, 0x00};
    static const uint8_t add_noaddr[] = {0x12, 0x02, 0x08, 0x04};
    /* StatusReport.version (field 2) of 40 bytes: longer than we keep. */
    uint8_t long_version[42];

    (void)state;
    long_version[0] = 0x12;
    long_version[1] = 40;
    memset(long_version + 2, 'v', 40);
    assert_int_equal(
        cluster_msg_decode_status_report(garbage, sizeof(garbage), &r),
        KM_ECORRUPT);
    assert_int_equal(cluster_msg_decode_status_report(long_version,
                                                      sizeof(long_version), &r),
                     KM_ECORRUPT);
    assert_int_equal(
        cluster_msg_decode_status_request(garbage, sizeof(garbage), &verbose),
        KM_ECORRUPT);
    assert_int_equal(cluster_msg_decode_admin(garbage, sizeof(garbage), &a),
                     KM_ECORRUPT);
    assert_int_equal(cluster_msg_decode_admin(rm_zero, sizeof(rm_zero), &a),
                     KM_ECORRUPT);
    assert_int_equal(cluster_msg_decode_admin(rule, sizeof(rule), &a),
                     KM_ECORRUPT);
    assert_int_equal(
        cluster_msg_decode_admin(add_noaddr, sizeof(add_noaddr), &a),
        KM_ECORRUPT);
    assert_int_equal(cluster_msg_decode_admin("", 0, &a), KM_ECORRUPT);
    assert_int_equal(
        cluster_msg_decode_admin_ack(garbage, sizeof(garbage), &ack),
        KM_ECORRUPT);
}

/* Tests: one-voter group */

static void
collect_on_one_node_reports_itself_from_a_later_turn(void **state)
{
    struct status_test *t = *state;
    const struct cluster_member_status *m;

    status_test_open(t);
    t->in_call = true;
    assert_int_equal(cluster_status_collect(t->c, 500, status_test_on_rows, t),
                     0);
    t->in_call = false;
    assert_false(t->got_rows);
    test_run_until(&t->loop, &t->got_rows);
    assert_int_equal(t->n_rows, 1);
    m = &t->rows[0];
    assert_int_equal(m->id, 1);
    assert_true(m->self);
    assert_true(m->reachable);
    assert_true(m->voter);
    assert_string_equal(m->role, "leader");
    assert_int_equal(m->leader_id, 1);
    assert_true(m->commit >= 1);
    assert_int_equal(m->lag, 0);
    assert_int_equal(m->lease_ok, 1);
    assert_int_equal(m->queued, 7);
    assert_int_equal(m->inflight, 2);
    assert_int_equal(m->free_bytes, 123456789);
    assert_string_equal(m->policy_checksum, "abc123");
    assert_string_equal(m->version, KUMO_VERSION);
    /* A one-node group owns every shard (64 by default). */
    assert_int_equal(m->shards_owned, 64);
    assert_int_equal(m->shards_backed, 64);
}

static void
admin_refuses_unknown_duplicate_and_self_removal(void **state)
{
    struct status_test *t = *state;

    status_test_open(t);

    t->in_call = true;
    assert_int_equal(cluster_remove_node(t->c, 9, status_test_on_admin, t), 0);
    t->in_call = false;
    status_test_wait_admin(t);
    assert_int_equal(t->admin_status, KM_ENOENT);
    assert_non_null(strstr(t->admin_message, "not a member"));

    t->got_admin = false;
    t->in_call = true;
    assert_int_equal(cluster_remove_node(t->c, 1, status_test_on_admin, t), 0);
    t->in_call = false;
    status_test_wait_admin(t);
    assert_int_equal(t->admin_status, KM_EINVAL);
    assert_non_null(strstr(t->admin_message, "transfer leadership first"));

    t->got_admin = false;
    assert_int_equal(
        cluster_add_node(t->c, 1, "127.0.0.1:1", NULL, status_test_on_admin, t),
        0);
    status_test_wait_admin(t);
    assert_int_equal(t->admin_status, KM_EINVAL);
    assert_non_null(strstr(t->admin_message, "already a member"));

    t->got_admin = false;
    assert_int_equal(cluster_transfer_leader(t->c, 0, status_test_on_admin, t),
                     0);
    status_test_wait_admin(t);
    assert_int_equal(t->admin_status, KM_ENOENT); /* no other voter */

    t->got_admin = false;
    assert_int_equal(cluster_transfer_leader(t->c, 1, status_test_on_admin, t),
                     0);
    status_test_wait_admin(t);
    assert_int_equal(t->admin_status, 0); /* already leads */

    assert_int_equal(
        cluster_add_node(t->c, 0, "127.0.0.1:1", NULL, status_test_on_admin, t),
        KM_EINVAL);
    assert_int_equal(cluster_remove_node(t->c, 0, status_test_on_admin, t),
                     KM_EINVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            status_report_round_trip_keeps_fields_and_counts_shards),
        cmocka_unit_test(status_request_round_trip_keeps_verbose),
        cmocka_unit_test(admin_round_trip_for_each_op),
        cmocka_unit_test(admin_ack_round_trip_maps_status_codes),
        cmocka_unit_test(encode_admin_refuses_incomplete_requests),
        cmocka_unit_test(decode_rejects_malformed_and_incomplete_messages),
        cmocka_unit_test_setup_teardown(
            collect_on_one_node_reports_itself_from_a_later_turn,
            status_test_setup, status_test_teardown),
        cmocka_unit_test_setup_teardown(
            admin_refuses_unknown_duplicate_and_self_removal, status_test_setup,
            status_test_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
