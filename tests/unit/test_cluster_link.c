/* test_cluster_link.c - two or three link endpoints in one process on one
 * uv loop, over 127.0.0.1 ports found free just before: ping/pong round
 * trips, many requests at once, late answers, unknown peers, deadlines,
 * another cluster id, close with requests in flight; plus the envelope
 * codec on its own (round trips, garbage, oversize). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "base/km.h"
#include "base/log.h"
#include "cluster_link.h"
#include "cluster_link_int.h"
#include "test_util.h"

/* Fixture */

#define LINK_TEST_NODES   3
#define LINK_TEST_HELD    128
#define LINK_TEST_RESULTS 128

enum link_test_mode {
    LINK_TEST_ANSWER, /* reply at once */
    LINK_TEST_LATER,  /* reply from a timer */
    LINK_TEST_NEVER,  /* hold the reply until close */
};

struct link_test;

struct link_test_node {
    struct link_test *t;
    uint64_t id;
    char url[64];
    struct cluster_link *link;
    bool closed;
    int handled;
    enum link_test_mode mode;
    struct cluster_link_reply *held[LINK_TEST_HELD];
    uint64_t held_seq[LINK_TEST_HELD];
    size_t n_held;
};

struct link_test_result {
    int done;
    int status;
    struct cluster_link_msg reply;
    uint8_t raw[64];
};

struct link_test {
    uv_loop_t loop;
    uv_timer_t later;
    uv_timer_t deadline;
    bool expired;
    struct link_test_node nodes[LINK_TEST_NODES];
    struct link_test_result res[LINK_TEST_RESULTS];
};

/* Helpers */

static void
link_test_on_later(uv_timer_t *h)
{
    struct link_test *t = h->data;

    for (size_t i = 0; i < LINK_TEST_NODES; i++) {
        struct link_test_node *n = &t->nodes[i];
        if (n->mode != LINK_TEST_LATER) {
            continue;
        }
        for (size_t j = 0; j < n->n_held; j++) {
            struct cluster_link_msg reply = {.kind = CLUSTER_LINK_PONG};
            reply.u.pong.seq = n->held_seq[j];
            assert_int_equal(cluster_link_reply_send(n->held[j], &reply), 0);
        }
        n->n_held = 0;
    }
}

static void
link_test_on_request(void *ctx, uint64_t from_node,
                     const struct cluster_link_msg *req,
                     struct cluster_link_reply *r)
{
    struct link_test_node *n = ctx;
    struct cluster_link_msg reply;

    (void)from_node;
    n->handled++;
    if (n->mode != LINK_TEST_ANSWER) {
        assert_true(n->n_held < LINK_TEST_HELD);
        n->held_seq[n->n_held] = req->u.ping.seq;
        n->held[n->n_held++] = r;
        if (n->mode == LINK_TEST_LATER) {
            uv_timer_start(&n->t->later, link_test_on_later, 50, 0);
        }
        return;
    }
    if (req->kind == CLUSTER_LINK_RAW) {
        assert_int_equal(cluster_link_reply_send(r, req), 0);
        return;
    }
    assert_int_equal(req->kind, CLUSTER_LINK_PING);
    memset(&reply, 0, sizeof(reply));
    reply.kind = CLUSTER_LINK_PONG;
    reply.u.pong.seq = req->u.ping.seq;
    reply.u.pong.leader_id = n->id;
    reply.u.pong.term = 7;
    reply.u.pong.commit_index = req->u.ping.applied_index + 1;
    reply.u.pong.lease_ok = true;
    assert_int_equal(cluster_link_reply_send(r, &reply), 0);
}

static void
link_test_on_deadline(uv_timer_t *h)
{
    struct link_test *t = h->data;

    t->expired = true;
}

static void
link_test_on_reply(void *arg, int status, const struct cluster_link_msg *reply)
{
    struct link_test_result *res = arg;

    res->done++;
    res->status = status;
    if (reply != NULL) {
        res->reply = *reply;
        if (reply->kind == CLUSTER_LINK_RAW) {
            assert_true(reply->u.raw.len <= sizeof(res->raw));
            memcpy(res->raw, reply->u.raw.data, reply->u.raw.len);
            res->reply.u.raw.data = res->raw;
        }
    }
}

/* Run the loop until `n` results are done or `ms` have passed. */
static bool
link_test_wait(struct link_test *t, int n, uint64_t ms)
{
    t->expired = false;
    uv_timer_start(&t->deadline, link_test_on_deadline, ms, 0);
    for (;;) {
        int done = 0;
        for (int i = 0; i < n; i++) {
            done += t->res[i].done > 0;
        }
        if (done == n || t->expired) {
            break;
        }
        uv_run(&t->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&t->deadline);
    return !t->expired;
}

static void
link_test_open_node(struct link_test *t, size_t i, const char *cluster_id,
                    uint32_t timeout_ms)
{
    struct link_test_node *n = &t->nodes[i];
    struct cluster_link_config cfg = {0};
    struct cluster_link_host host = {.ctx = n,
                                     .on_request = link_test_on_request};

    n->t = t;
    n->id = i + 1;
    snprintf(n->url, sizeof(n->url), "tcp://127.0.0.1:%d", test_free_port());
    cfg.node_id = n->id;
    cfg.cluster_id = (const uint8_t *)cluster_id;
    cfg.cluster_id_len = strlen(cluster_id);
    cfg.listen_url = n->url;
    cfg.request_timeout_ms = timeout_ms;
    assert_int_equal(cluster_link_open(&t->loop, &cfg, &host, &n->link), 0);
}

/* Nodes 1 and 2 of cluster "c1", each the other's peer. */
static void
link_test_open_pair(struct link_test *t, uint32_t timeout_ms)
{
    link_test_open_node(t, 0, "c1", timeout_ms);
    link_test_open_node(t, 1, "c1", timeout_ms);
    assert_int_equal(
        cluster_link_add_peer(t->nodes[0].link, 2, t->nodes[1].url), 0);
    assert_int_equal(
        cluster_link_add_peer(t->nodes[1].link, 1, t->nodes[0].url), 0);
}

static void
link_test_on_closed(void *arg)
{
    struct link_test_node *n = arg;

    n->closed = true;
}

static void
link_test_close_node(struct link_test_node *n)
{
    if (n->link != NULL) {
        cluster_link_close(n->link, link_test_on_closed, n);
        n->link = NULL;
    }
}

static int
link_test_setup(void **state)
{
    struct link_test *t = calloc(1, sizeof(*t));

    log_set_level(LOG_LVL_ERROR);
    uv_loop_init(&t->loop);
    uv_timer_init(&t->loop, &t->later);
    uv_timer_init(&t->loop, &t->deadline);
    t->later.data = t;
    t->deadline.data = t;
    *state = t;
    return 0;
}

static int
link_test_teardown(void **state)
{
    struct link_test *t = *state;
    int rv;

    for (size_t i = 0; i < LINK_TEST_NODES; i++) {
        link_test_close_node(&t->nodes[i]);
    }
    uv_close((uv_handle_t *)&t->later, NULL);
    uv_close((uv_handle_t *)&t->deadline, NULL);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < LINK_TEST_NODES; i++) {
        if (t->nodes[i].t != NULL && !t->nodes[i].closed) {
            return -1;
        }
    }
    rv = uv_loop_close(&t->loop);
    free(t);
    return rv == 0 ? 0 : -1;
}

static struct cluster_link_msg
link_test_ping(uint64_t seq)
{
    struct cluster_link_msg m = {.kind = CLUSTER_LINK_PING};

    m.u.ping.seq = seq;
    m.u.ping.applied_index = seq * 10;
    return m;
}

/* A packed StoreBodyAck {id: "ab", free_bytes: 5}. */
static const uint8_t link_test_ack[] = {0x0a, 0x02, 'a', 'b', 0x18, 0x05};

/* Tests */

static void
ping_gets_pong_with_the_handler_fields(void **state)
{
    struct link_test *t = *state;
    struct cluster_link_msg ping = link_test_ping(42);

    link_test_open_pair(t, 2000);
    assert_int_equal(cluster_link_request(t->nodes[0].link, 2, &ping,
                                          link_test_on_reply, &t->res[0]),
                     0);
    assert_int_equal(t->res[0].done, 0); /* never from inside the call */
    assert_true(link_test_wait(t, 1, 3000));
    assert_int_equal(t->res[0].done, 1);
    assert_int_equal(t->res[0].status, 0);
    assert_int_equal(t->res[0].reply.kind, CLUSTER_LINK_PONG);
    assert_int_equal(t->res[0].reply.u.pong.seq, 42);
    assert_int_equal(t->res[0].reply.u.pong.leader_id, 2);
    assert_int_equal(t->res[0].reply.u.pong.term, 7);
    assert_int_equal(t->res[0].reply.u.pong.commit_index, 421);
    assert_true(t->res[0].reply.u.pong.lease_ok);
    assert_int_equal(t->nodes[1].handled, 1);
}

static void
raw_request_is_echoed_byte_for_byte(void **state)
{
    struct link_test *t = *state;
    struct cluster_link_msg m = {.kind = CLUSTER_LINK_RAW};

    m.u.raw.type = 11;
    m.u.raw.data = link_test_ack;
    m.u.raw.len = sizeof(link_test_ack);
    link_test_open_pair(t, 2000);
    assert_int_equal(cluster_link_request(t->nodes[1].link, 1, &m,
                                          link_test_on_reply, &t->res[0]),
                     0);
    assert_true(link_test_wait(t, 1, 3000));
    assert_int_equal(t->res[0].status, 0);
    assert_int_equal(t->res[0].reply.kind, CLUSTER_LINK_RAW);
    assert_int_equal(t->res[0].reply.u.raw.type, 11);
    assert_int_equal(t->res[0].reply.u.raw.len, sizeof(link_test_ack));
    assert_memory_equal(t->res[0].raw, link_test_ack, sizeof(link_test_ack));
}

static void
hundred_concurrent_requests_are_all_answered(void **state)
{
    struct link_test *t = *state;

    link_test_open_pair(t, 3000);
    for (int i = 0; i < 100; i++) {
        struct cluster_link_msg ping = link_test_ping((uint64_t)i);
        assert_int_equal(cluster_link_request(t->nodes[0].link, 2, &ping,
                                              link_test_on_reply, &t->res[i]),
                         0);
    }
    assert_true(link_test_wait(t, 100, 4000));
    for (int i = 0; i < 100; i++) {
        assert_int_equal(t->res[i].done, 1);
        assert_int_equal(t->res[i].status, 0);
        assert_int_equal(t->res[i].reply.u.pong.seq, (uint64_t)i);
    }
    assert_int_equal(t->nodes[1].handled, 100);
}

static void
handler_answering_later_from_a_timer_is_delivered(void **state)
{
    struct link_test *t = *state;

    link_test_open_pair(t, 2000);
    t->nodes[1].mode = LINK_TEST_LATER;
    for (int i = 0; i < 3; i++) {
        struct cluster_link_msg ping = link_test_ping((uint64_t)i + 5);
        assert_int_equal(cluster_link_request(t->nodes[0].link, 2, &ping,
                                              link_test_on_reply, &t->res[i]),
                         0);
    }
    assert_true(link_test_wait(t, 3, 3000));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(t->res[i].status, 0);
        assert_int_equal(t->res[i].reply.kind, CLUSTER_LINK_PONG);
        assert_int_equal(t->res[i].reply.u.pong.seq, (uint64_t)i + 5);
    }
}

static void
request_to_unknown_node_fails_with_enoent(void **state)
{
    struct link_test *t = *state;
    struct cluster_link_msg ping = link_test_ping(1);

    link_test_open_pair(t, 2000);
    assert_int_equal(cluster_link_request(t->nodes[0].link, 99, &ping,
                                          link_test_on_reply, &t->res[0]),
                     0);
    assert_int_equal(t->res[0].done, 0);
    /* The known peer still answers (and the link settles before close:
     * NNG 1.5.2 can leak a pipe closed in mid-handshake). */
    assert_int_equal(cluster_link_request(t->nodes[0].link, 2, &ping,
                                          link_test_on_reply, &t->res[1]),
                     0);
    assert_true(link_test_wait(t, 2, 3000));
    assert_int_equal(t->res[0].status, KM_ENOENT);
    assert_int_equal(t->res[1].status, 0);
    assert_int_equal(cluster_link_remove_peer(t->nodes[0].link, 99), KM_ENOENT);
    assert_int_equal(cluster_link_add_peer(t->nodes[0].link, 2, "tcp://x:1"),
                     KM_EEXIST);
}

static void
unanswered_request_times_out_within_the_timeout(void **state)
{
    struct link_test *t = *state;
    struct cluster_link_msg ping = link_test_ping(1);
    uint64_t start;
    uint64_t took;

    link_test_open_pair(t, 300);
    t->nodes[1].mode = LINK_TEST_NEVER;
    uv_update_time(&t->loop);
    start = uv_now(&t->loop);
    assert_int_equal(cluster_link_request(t->nodes[0].link, 2, &ping,
                                          link_test_on_reply, &t->res[0]),
                     0);
    assert_true(link_test_wait(t, 1, 2000));
    took = uv_now(&t->loop) - start;
    assert_int_equal(t->res[0].status, KM_ETIMEDOUT);
    assert_int_equal(t->nodes[1].handled, 1);
    assert_true(took >= 290);
    assert_true(took < 1000);
}

static void
other_cluster_id_gets_eproto_and_no_handler_call(void **state)
{
    struct link_test *t = *state;
    struct cluster_link_msg ping = link_test_ping(1);

    link_test_open_pair(t, 2000);
    link_test_open_node(t, 2, "other", 2000);
    assert_int_equal(
        cluster_link_add_peer(t->nodes[2].link, 2, t->nodes[1].url), 0);
    assert_int_equal(
        cluster_link_add_peer(t->nodes[0].link, 3, t->nodes[2].url), 0);
    assert_int_equal(cluster_link_request(t->nodes[2].link, 2, &ping,
                                          link_test_on_reply, &t->res[0]),
                     0);
    assert_int_equal(cluster_link_request(t->nodes[0].link, 3, &ping,
                                          link_test_on_reply, &t->res[1]),
                     0);
    assert_true(link_test_wait(t, 2, 3000));
    assert_int_equal(t->res[0].status, KM_EPROTO);
    assert_int_equal(t->res[1].status, KM_EPROTO);
    assert_int_equal(t->nodes[1].handled, 0);
    assert_int_equal(t->nodes[2].handled, 0);
}

static void
request_from_a_node_that_is_not_a_peer_is_refused(void **state)
{
    struct link_test *t = *state;
    struct cluster_link_msg ping = link_test_ping(1);

    /* Node 3 knows the cluster id and node 2's address, but node 2 does
     * not have it as a peer (PROBE-2026-12 L4-L11). */
    link_test_open_pair(t, 2000);
    link_test_open_node(t, 2, "c1", 2000);
    assert_int_equal(
        cluster_link_add_peer(t->nodes[2].link, 2, t->nodes[1].url), 0);
    assert_int_equal(cluster_link_request(t->nodes[2].link, 2, &ping,
                                          link_test_on_reply, &t->res[0]),
                     0);
    assert_true(link_test_wait(t, 1, 3000));
    assert_int_equal(t->res[0].status, KM_EPROTO);
    assert_int_equal(t->nodes[1].handled, 0);
    /* Its peer still gets answers. */
    assert_int_equal(cluster_link_request(t->nodes[0].link, 2, &ping,
                                          link_test_on_reply, &t->res[1]),
                     0);
    assert_true(link_test_wait(t, 2, 3000));
    assert_int_equal(t->res[1].status, 0);
    assert_int_equal(t->nodes[1].handled, 1);
}

static void
request_claiming_to_come_from_the_receiver_is_refused(void **state)
{
    struct link_test *t = *state;
    struct cluster_link_msg ping = link_test_ping(1);

    /* Node 3 pretends to be node 2 talking to node 2. */
    link_test_open_pair(t, 2000);
    t->nodes[2].t = t;
    t->nodes[2].id = 2;
    {
        struct cluster_link_config cfg = {.node_id = 2,
                                          .cluster_id = (const uint8_t *)"c1",
                                          .cluster_id_len = 2};
        struct cluster_link_host host = {.ctx = &t->nodes[2],
                                         .on_request = link_test_on_request};
        assert_int_equal(
            cluster_link_open(&t->loop, &cfg, &host, &t->nodes[2].link), 0);
    }
    assert_int_equal(
        cluster_link_add_peer(t->nodes[2].link, 2, t->nodes[1].url), 0);
    assert_int_equal(cluster_link_request(t->nodes[2].link, 2, &ping,
                                          link_test_on_reply, &t->res[0]),
                     0);
    assert_true(link_test_wait(t, 1, 3000));
    assert_int_equal(t->res[0].status, KM_EPROTO);
    assert_int_equal(t->nodes[1].handled, 0);
}

/* A stranger's REQ socket, on its own thread while the loop runs. */
struct link_test_stranger {
    const char *url;
    uint8_t *bytes;
    size_t n;
    void *reply;
    size_t reply_len;
    int rv;
    atomic_int done;
};

static void
link_test_stranger_run(void *arg)
{
    struct link_test_stranger *st = arg;
    nng_socket s;

    st->rv = nng_req0_open(&s);
    if (st->rv == 0) {
        st->rv = nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 3000);
    }
    if (st->rv == 0) {
        st->rv = nng_dial(s, st->url, NULL, 0);
    }
    if (st->rv == 0) {
        st->rv = nng_send(s, st->bytes, st->n, 0);
    }
    if (st->rv == 0) {
        st->rv = nng_recv(s, &st->reply, &st->reply_len, NNG_FLAG_ALLOC);
    }
    nng_close(s);
    atomic_store(&st->done, 1);
}

static void
refusal_carries_neither_cluster_id_nor_node_id(void **state)
{
    struct link_test *t = *state;
    struct cluster_link_env env = {
        .version = CLUSTER_LINK_VERSION, .from_node = 99, .req_id = 5};
    struct cluster_link_env got;
    struct link_test_stranger st = {0};
    uv_thread_t th;

    link_test_open_pair(t, 2000);
    memcpy(env.cluster_id, "wrong-guess", 11);
    env.cluster_id_len = 11;
    env.msg = link_test_ping(1);
    assert_int_equal(cluster_msg_link_encode(&env, 1 << 20, &st.bytes, &st.n),
                     0);
    st.url = t->nodes[0].url;
    assert_int_equal(uv_thread_create(&th, link_test_stranger_run, &st), 0);
    for (int i = 0; i < 5000 && !atomic_load(&st.done); i++) {
        uv_run(&t->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    uv_thread_join(&th);
    free(st.bytes);
    assert_int_equal(st.rv, 0);
    assert_int_equal(
        cluster_msg_link_decode(st.reply, st.reply_len, 1 << 20, &got), 0);
    assert_int_equal(got.msg.kind, CLUSTER_LINK_NONE);
    assert_int_equal(got.req_id, 5);
    /* PROBE-2026-12 L0: the reply used to carry the real cluster id. */
    assert_int_equal(got.cluster_id_len, 0);
    assert_int_equal(got.from_node, 0);
    cluster_msg_link_env_fini(&got);
    nng_free(st.reply, st.reply_len);
    assert_int_equal(t->nodes[0].handled, 0);
}

static void
removed_peer_cancels_its_requests(void **state)
{
    struct link_test *t = *state;
    struct cluster_link_msg ping = link_test_ping(1);

    link_test_open_pair(t, 2000);
    t->nodes[1].mode = LINK_TEST_NEVER;
    assert_int_equal(cluster_link_request(t->nodes[0].link, 2, &ping,
                                          link_test_on_reply, &t->res[0]),
                     0);
    while (t->nodes[1].handled == 0) {
        uv_run(&t->loop, UV_RUN_ONCE);
    }
    assert_int_equal(cluster_link_remove_peer(t->nodes[0].link, 2), 0);
    assert_true(link_test_wait(t, 1, 1000));
    assert_int_equal(t->res[0].status, KM_ECANCELED);
}

static void
oversize_request_is_dropped_by_the_receiver(void **state)
{
    struct link_test *t = *state;
    static uint8_t big[4096];
    struct cluster_link_msg m = {.kind = CLUSTER_LINK_RAW};
    struct cluster_link_config cfg = {0};
    struct cluster_link_host host = {.ctx = &t->nodes[2],
                                     .on_request = link_test_on_request};
    struct cluster_link_msg ping = link_test_ping(1);

    /* Node 3 accepts envelopes of at most 1 KiB (NNG_OPT_RECVMAXSZ). */
    link_test_open_pair(t, 300);
    t->nodes[2].t = t;
    t->nodes[2].id = 3;
    snprintf(t->nodes[2].url, sizeof(t->nodes[2].url), "tcp://127.0.0.1:%d",
             test_free_port());
    cfg.node_id = 3;
    cfg.cluster_id = (const uint8_t *)"c1";
    cfg.cluster_id_len = 2;
    cfg.listen_url = t->nodes[2].url;
    cfg.max_msg_bytes = 1024;
    assert_int_equal(
        cluster_link_open(&t->loop, &cfg, &host, &t->nodes[2].link), 0);
    assert_int_equal(
        cluster_link_add_peer(t->nodes[0].link, 3, t->nodes[2].url), 0);
    assert_int_equal(
        cluster_link_add_peer(t->nodes[2].link, 1, t->nodes[0].url), 0);
    m.u.raw.type = 13;
    m.u.raw.data = big;
    m.u.raw.len = sizeof(big);
    assert_int_equal(cluster_link_request(t->nodes[0].link, 3, &ping,
                                          link_test_on_reply, &t->res[0]),
                     0);
    assert_true(link_test_wait(t, 1, 2000));
    assert_int_equal(t->res[0].status, 0);
    assert_int_equal(cluster_link_request(t->nodes[0].link, 3, &m,
                                          link_test_on_reply, &t->res[1]),
                     0);
    assert_true(link_test_wait(t, 2, 2000));
    /* NNG drops the connection under the request: KM_EIO, not a reply. */
    assert_int_equal(t->res[1].status, KM_EIO);
    assert_int_equal(t->nodes[2].handled, 1);
    /* The sender's own limit refuses before sending. */
    assert_int_equal(cluster_link_request(t->nodes[2].link, 1, &m,
                                          link_test_on_reply, &t->res[2]),
                     KM_EINVAL);
}

static void
close_with_requests_in_flight_reports_eclosing(void **state)
{
    struct link_test *t = *state;

    link_test_open_pair(t, 3000);
    t->nodes[1].mode = LINK_TEST_NEVER;
    for (int i = 0; i < 5; i++) {
        struct cluster_link_msg ping = link_test_ping((uint64_t)i);
        assert_int_equal(cluster_link_request(t->nodes[0].link, 2, &ping,
                                              link_test_on_reply, &t->res[i]),
                         0);
    }
    t->expired = false;
    uv_timer_start(&t->deadline, link_test_on_deadline, 2000, 0);
    while (t->nodes[1].handled < 5 && !t->expired) {
        uv_run(&t->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&t->deadline);
    assert_int_equal(t->nodes[1].handled, 5);
    link_test_close_node(&t->nodes[0]);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(t->res[i].done, 1);
        assert_int_equal(t->res[i].status, KM_ECLOSING);
    }
    /* Node 2 closes holding five replies; a late answer is dropped. */
    link_test_close_node(&t->nodes[1]);
    struct cluster_link_msg pong = {.kind = CLUSTER_LINK_PONG};
    assert_int_equal(cluster_link_reply_send(t->nodes[1].held[0], &pong),
                     KM_ECLOSING);
}

static void
codec_round_trips_ping_pong_and_raw(void **state)
{
    struct cluster_link_env in = {0};
    struct cluster_link_env out;
    uint8_t *buf;
    size_t n;

    (void)state;
    in.version = CLUSTER_LINK_VERSION;
    memcpy(in.cluster_id, "abc", 3);
    in.cluster_id_len = 3;
    in.from_node = 9;
    in.req_id = 77;
    in.msg = link_test_ping(5);
    assert_int_equal(cluster_msg_link_encode(&in, 1024, &buf, &n), 0);
    assert_int_equal(cluster_msg_link_decode(buf, n, 1024, &out), 0);
    free(buf);
    assert_int_equal(out.version, CLUSTER_LINK_VERSION);
    assert_int_equal(out.cluster_id_len, 3);
    assert_memory_equal(out.cluster_id, "abc", 3);
    assert_int_equal(out.from_node, 9);
    assert_int_equal(out.req_id, 77);
    assert_int_equal(out.msg.kind, CLUSTER_LINK_PING);
    assert_int_equal(out.msg.u.ping.seq, 5);
    assert_int_equal(out.msg.u.ping.applied_index, 50);
    cluster_msg_link_env_fini(&out);

    in.msg.kind = CLUSTER_LINK_PONG;
    in.msg.u.pong.seq = 1;
    in.msg.u.pong.leader_id = 2;
    in.msg.u.pong.term = 3;
    in.msg.u.pong.commit_index = 4;
    in.msg.u.pong.lease_ok = true;
    assert_int_equal(cluster_msg_link_encode(&in, 1024, &buf, &n), 0);
    assert_int_equal(cluster_msg_link_decode(buf, n, 1024, &out), 0);
    free(buf);
    assert_int_equal(out.msg.kind, CLUSTER_LINK_PONG);
    assert_int_equal(out.msg.u.pong.leader_id, 2);
    assert_int_equal(out.msg.u.pong.term, 3);
    assert_int_equal(out.msg.u.pong.commit_index, 4);
    assert_true(out.msg.u.pong.lease_ok);
    cluster_msg_link_env_fini(&out);

    in.msg.kind = CLUSTER_LINK_RAW;
    in.msg.u.raw.type = 11;
    in.msg.u.raw.data = link_test_ack;
    in.msg.u.raw.len = sizeof(link_test_ack);
    assert_int_equal(cluster_msg_link_encode(&in, 1024, &buf, &n), 0);
    assert_int_equal(cluster_msg_link_decode(buf, n, 1024, &out), 0);
    free(buf);
    assert_int_equal(out.msg.kind, CLUSTER_LINK_RAW);
    assert_int_equal(out.msg.u.raw.type, 11);
    assert_int_equal(out.msg.u.raw.len, sizeof(link_test_ack));
    assert_memory_equal(out.msg.u.raw.data, link_test_ack,
                        sizeof(link_test_ack));
    cluster_msg_link_env_fini(&out);
}

static void
codec_rejects_garbage_and_bad_kinds(void **state)
{
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x01};
    static const uint8_t long_id[] = {0x12, 65}; /* cluster_id, 65 bytes */
    struct cluster_link_env in = {0};
    struct cluster_link_env out;
    uint8_t buf[2 + 65] = {0};
    uint8_t *p;
    size_t n;

    (void)state;
    assert_int_equal(
        cluster_msg_link_decode(garbage, sizeof(garbage), 1024, &out),
        KM_EPROTO);
    memcpy(buf, long_id, sizeof(long_id));
    assert_int_equal(cluster_msg_link_decode(buf, sizeof(buf), 1024, &out),
                     KM_EPROTO);
    in.msg.kind = CLUSTER_LINK_RAW;
    in.msg.u.raw.data = link_test_ack;
    in.msg.u.raw.len = sizeof(link_test_ack);
    in.msg.u.raw.type = 18; /* Ping has a plain form */
    assert_int_equal(cluster_msg_link_encode(&in, 1024, &p, &n), KM_EINVAL);
    in.msg.u.raw.type = 2; /* cluster_id: not a oneof member */
    assert_int_equal(cluster_msg_link_encode(&in, 1024, &p, &n), KM_EINVAL);
    in.msg.u.raw.type = 99;
    assert_int_equal(cluster_msg_link_encode(&in, 1024, &p, &n), KM_EINVAL);
    in.msg.kind = CLUSTER_LINK_NONE;
    in.cluster_id_len = CLUSTER_LINK_ID_MAX + 1;
    assert_int_equal(cluster_msg_link_encode(&in, 1024, &p, &n), KM_EINVAL);
}

static void
codec_refuses_oversize_both_ways(void **state)
{
    static uint8_t big[300];
    struct cluster_link_env in = {0};
    struct cluster_link_env out;
    uint8_t *p;
    size_t n;

    (void)state;
    in.version = CLUSTER_LINK_VERSION;
    in.msg.kind = CLUSTER_LINK_RAW;
    in.msg.u.raw.type = 13;
    in.msg.u.raw.data = big;
    in.msg.u.raw.len = sizeof(big);
    assert_int_equal(cluster_msg_link_encode(&in, 256, &p, &n), KM_E2BIG);
    in.msg.u.raw.len = 0;
    assert_int_equal(cluster_msg_link_encode(&in, 256, &p, &n), 0);
    assert_int_equal(cluster_msg_link_decode(p, n, n - 1, &out), KM_E2BIG);
    assert_int_equal(cluster_msg_link_decode(p, n, n, &out), 0);
    assert_int_equal(out.msg.kind, CLUSTER_LINK_RAW);
    assert_int_equal(out.msg.u.raw.len, 0);
    cluster_msg_link_env_fini(&out);
    free(p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(ping_gets_pong_with_the_handler_fields,
                                        link_test_setup, link_test_teardown),
        cmocka_unit_test_setup_teardown(raw_request_is_echoed_byte_for_byte,
                                        link_test_setup, link_test_teardown),
        cmocka_unit_test_setup_teardown(
            hundred_concurrent_requests_are_all_answered, link_test_setup,
            link_test_teardown),
        cmocka_unit_test_setup_teardown(
            handler_answering_later_from_a_timer_is_delivered, link_test_setup,
            link_test_teardown),
        cmocka_unit_test_setup_teardown(
            request_to_unknown_node_fails_with_enoent, link_test_setup,
            link_test_teardown),
        cmocka_unit_test_setup_teardown(
            unanswered_request_times_out_within_the_timeout, link_test_setup,
            link_test_teardown),
        cmocka_unit_test_setup_teardown(
            other_cluster_id_gets_eproto_and_no_handler_call, link_test_setup,
            link_test_teardown),
        cmocka_unit_test_setup_teardown(
            oversize_request_is_dropped_by_the_receiver, link_test_setup,
            link_test_teardown),
        cmocka_unit_test_setup_teardown(
            request_from_a_node_that_is_not_a_peer_is_refused, link_test_setup,
            link_test_teardown),
        cmocka_unit_test_setup_teardown(
            request_claiming_to_come_from_the_receiver_is_refused,
            link_test_setup, link_test_teardown),
        cmocka_unit_test_setup_teardown(
            refusal_carries_neither_cluster_id_nor_node_id, link_test_setup,
            link_test_teardown),
        cmocka_unit_test_setup_teardown(removed_peer_cancels_its_requests,
                                        link_test_setup, link_test_teardown),
        cmocka_unit_test_setup_teardown(
            close_with_requests_in_flight_reports_eclosing, link_test_setup,
            link_test_teardown),
        cmocka_unit_test(codec_round_trips_ping_pong_and_raw),
        cmocka_unit_test(codec_rejects_garbage_and_bad_kinds),
        cmocka_unit_test(codec_refuses_oversize_both_ways),
    };

    int rv = cmocka_run_group_tests(tests, NULL, NULL);

    cluster_link_global_fini();
    return rv;
}
