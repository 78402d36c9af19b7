/* test_cluster_body.c - StoreBody and FetchBody between two link endpoints
 * in one process, on one uv loop, over loopback ports found free just
 * before. Each endpoint is a bare struct cluster holding only its link and
 * host table (what cluster_body.c uses): bodies round-trip byte for byte,
 * the host's answers come back as statuses, and malformed, oversized or
 * corrupted bodies are refused before any host sees them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "base/km.h"
#include "base/log.h"
#include "cluster_core.h"
#include "test_util.h"

/* Fixture */

#define BODY_TEST_ID  "0123456789abcdef0123456789abcdef"
#define BODY_TEST_MAX 4096

struct body_test;

struct body_test_node {
    struct body_test *t;
    struct cluster c;
    char url[64];
    bool closed;
    int stores, fetches; /* host calls */
    int answer;          /* what on_store_body answers */
    bool corrupt;        /* on_fetch_body: send a wrong digest */
    bool hold;           /* on_store_body: keep the reply in `held` */
    struct cluster_body_reply *held;
    /* The one body this node holds. */
    bool have;
    char id[33];
    uint8_t meta[BODY_TEST_MAX], data[BODY_TEST_MAX];
    size_t meta_len, data_len;
    uint32_t shard;
};

struct body_test_result {
    int done;
    int status;
    char id[33];
    uint8_t meta[BODY_TEST_MAX], data[BODY_TEST_MAX];
    size_t meta_len, data_len;
    uint8_t raw[64];
    size_t raw_len;
    uint32_t raw_type;
    enum cluster_link_kind kind;
};

struct body_test {
    uv_loop_t loop;
    uv_timer_t deadline;
    bool expired;
    struct body_test_node nodes[2];
    struct body_test_result res;
};

/* Helpers */

static void
body_test_on_store_body(void *ctx, uint64_t from, const struct cluster_body *b,
                        struct cluster_body_reply *r)
{
    struct body_test_node *n = ctx;

    (void)from;
    n->stores++;
    if (n->hold) {
        n->held = r;
        return;
    }
    if (n->answer == 0) {
        assert_true(b->meta_len <= BODY_TEST_MAX);
        assert_true(b->data_len <= BODY_TEST_MAX);
        memcpy(n->id, b->id, sizeof(n->id));
        memcpy(n->meta, b->meta, b->meta_len);
        memcpy(n->data, b->data, b->data_len);
        n->meta_len = b->meta_len;
        n->data_len = b->data_len;
        n->shard = b->shard;
        n->have = true;
    }
    cluster_body_reply(r, n->answer, NULL);
}

static void
body_test_on_fetch_body(void *ctx, uint64_t from, const char *id,
                        struct cluster_body_reply *r)
{
    struct body_test_node *n = ctx;
    struct cluster_body b;

    (void)from;
    n->fetches++;
    if (!n->have || strcmp(id, n->id) != 0) {
        cluster_body_reply(r, KM_ENOENT, NULL);
        return;
    }
    memset(&b, 0, sizeof(b));
    memcpy(b.id, n->id, sizeof(b.id));
    b.meta = n->meta;
    b.meta_len = n->meta_len;
    b.data = n->data;
    b.data_len = n->data_len;
    SHA256(n->data, n->data_len, b.digest);
    if (n->corrupt) {
        b.digest[0] ^= 1;
    }
    cluster_body_reply(r, 0, &b);
}

static void
body_test_on_request(void *ctx, uint64_t from,
                     const struct cluster_link_msg *req,
                     struct cluster_link_reply *r)
{
    struct body_test_node *n = ctx;
    struct cluster_link_msg none = {.kind = CLUSTER_LINK_NONE};

    if (req->kind != CLUSTER_LINK_RAW) {
        (void)cluster_link_reply_send(r, &none);
        return;
    }
    cluster_body_on_request(&n->c, from, &req->u.raw, r);
}

static void
body_test_on_deadline(uv_timer_t *h)
{
    struct body_test *t = h->data;

    t->expired = true;
}

/* Run the loop until the result is in or 5 s have passed. */
static bool
body_test_wait(struct body_test *t)
{
    t->expired = false;
    uv_timer_start(&t->deadline, body_test_on_deadline, 5000, 0);
    while (t->res.done == 0 && !t->expired) {
        uv_run(&t->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&t->deadline);
    return !t->expired;
}

/* Run the loop for `ms`. */
static void
body_test_run_ms(struct body_test *t, uint64_t ms)
{
    t->expired = false;
    uv_timer_start(&t->deadline, body_test_on_deadline, ms, 0);
    while (!t->expired) {
        uv_run(&t->loop, UV_RUN_ONCE);
    }
}

static void
body_test_on_stored(void *arg, int status)
{
    struct body_test_result *res = arg;

    res->done++;
    res->status = status;
}

static void
body_test_on_fetched(void *arg, int status, const struct cluster_body *b)
{
    struct body_test_result *res = arg;

    res->done++;
    res->status = status;
    if (b != NULL) {
        assert_true(b->meta_len <= BODY_TEST_MAX);
        assert_true(b->data_len <= BODY_TEST_MAX);
        memcpy(res->id, b->id, sizeof(res->id));
        memcpy(res->meta, b->meta, b->meta_len);
        memcpy(res->data, b->data, b->data_len);
        res->meta_len = b->meta_len;
        res->data_len = b->data_len;
    }
}

static void
body_test_on_raw_reply(void *arg, int status,
                       const struct cluster_link_msg *reply)
{
    struct body_test_result *res = arg;

    res->done++;
    res->status = status;
    if (reply != NULL) {
        res->kind = reply->kind;
        if (reply->kind == CLUSTER_LINK_RAW) {
            assert_true(reply->u.raw.len <= sizeof(res->raw));
            memcpy(res->raw, reply->u.raw.data, reply->u.raw.len);
            res->raw_len = reply->u.raw.len;
            res->raw_type = reply->u.raw.type;
        }
    }
}

static void
body_test_open_node(struct body_test *t, size_t i)
{
    struct body_test_node *n = &t->nodes[i];
    struct cluster_link_config cfg = {0};
    struct cluster_link_host host = {.ctx = n,
                                     .on_request = body_test_on_request};

    n->t = t;
    n->c.loop = &t->loop;
    n->c.cfg.node_id = i + 1;
    n->c.host.ctx = n;
    n->c.host.on_store_body = body_test_on_store_body;
    n->c.host.on_fetch_body = body_test_on_fetch_body;
    snprintf(n->url, sizeof(n->url), "tcp://127.0.0.1:%d", test_free_port());
    cfg.node_id = i + 1;
    cfg.cluster_id = (const uint8_t *)"c1";
    cfg.cluster_id_len = 2;
    cfg.listen_url = n->url;
    assert_int_equal(cluster_link_open(&t->loop, &cfg, &host, &n->c.link), 0);
}

static void
body_test_on_closed(void *arg)
{
    struct body_test_node *n = arg;

    n->closed = true;
}

static int
body_test_setup(void **state)
{
    struct body_test *t = calloc(1, sizeof(*t));

    log_set_level(LOG_LVL_ERROR);
    uv_loop_init(&t->loop);
    uv_timer_init(&t->loop, &t->deadline);
    t->deadline.data = t;
    body_test_open_node(t, 0);
    body_test_open_node(t, 1);
    assert_int_equal(
        cluster_link_add_peer(t->nodes[0].c.link, 2, t->nodes[1].url), 0);
    assert_int_equal(
        cluster_link_add_peer(t->nodes[1].c.link, 1, t->nodes[0].url), 0);
    *state = t;
    return 0;
}

static int
body_test_teardown(void **state)
{
    struct body_test *t = *state;
    int rv;

    for (size_t i = 0; i < 2; i++) {
        cluster_link_close(t->nodes[i].c.link, body_test_on_closed,
                           &t->nodes[i]);
    }
    uv_close((uv_handle_t *)&t->deadline, NULL);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    if (!t->nodes[0].closed || !t->nodes[1].closed) {
        return -1;
    }
    rv = uv_loop_close(&t->loop);
    free(t);
    return rv == 0 ? 0 : -1;
}

/* A body with id BODY_TEST_ID and a correct digest of `data`. */
static struct cluster_body
body_test_body(const char *meta, const char *data)
{
    struct cluster_body b;

    memset(&b, 0, sizeof(b));
    memcpy(b.id, BODY_TEST_ID, sizeof(b.id));
    b.shard = 17;
    b.meta = meta;
    b.meta_len = strlen(meta);
    b.data = data;
    b.data_len = strlen(data);
    SHA256((const unsigned char *)data, b.data_len, b.digest);
    return b;
}

/* Tests */

static void
store_body_reaches_the_peer_host_byte_for_byte(void **state)
{
    static const char data[] = "Subject: x\r\n\r\nbody\0z\r\n";
    struct body_test *t = *state;
    struct body_test_node *peer = &t->nodes[1];
    struct cluster_body b = body_test_body("{\"sender\":\"a@b\"}", data);

    b.data_len = sizeof(data) - 1; /* binary-safe: the NUL travels too */
    SHA256(b.data, b.data_len, b.digest);
    assert_int_equal(cluster_store_body(&t->nodes[0].c, 2, &b, 0,
                                        body_test_on_stored, &t->res),
                     0);
    assert_int_equal(t->res.done, 0); /* never from inside the call */
    assert_true(body_test_wait(t));
    assert_int_equal(t->res.status, 0);
    assert_int_equal(peer->stores, 1);
    assert_true(peer->have);
    assert_string_equal(peer->id, BODY_TEST_ID);
    assert_int_equal(peer->shard, 17);
    assert_int_equal(peer->meta_len, b.meta_len);
    assert_memory_equal(peer->meta, b.meta, b.meta_len);
    assert_int_equal(peer->data_len, sizeof(data) - 1);
    assert_memory_equal(peer->data, data, sizeof(data) - 1);
}

static void
store_body_reports_the_hosts_no_space(void **state)
{
    struct body_test *t = *state;
    struct cluster_body b = body_test_body("{}", "data");

    t->nodes[1].answer = KM_ENOSPC;
    assert_int_equal(cluster_store_body(&t->nodes[0].c, 2, &b, 0,
                                        body_test_on_stored, &t->res),
                     0);
    assert_true(body_test_wait(t));
    assert_int_equal(t->res.status, KM_ENOSPC);
}

static void
store_body_with_wrong_digest_never_reaches_the_host(void **state)
{
    struct body_test *t = *state;
    struct cluster_body b = body_test_body("{}", "data");

    b.digest[5] ^= 0x40;
    assert_int_equal(cluster_store_body(&t->nodes[0].c, 2, &b, 0,
                                        body_test_on_stored, &t->res),
                     0);
    assert_true(body_test_wait(t));
    assert_int_equal(t->res.status, KM_ECORRUPT);
    assert_int_equal(t->nodes[1].stores, 0);
}

static void
store_body_refuses_bad_ids_and_oversize_before_sending(void **state)
{
    struct body_test *t = *state;
    struct cluster_body b = body_test_body("{}", "data");

    memcpy(b.id, "0123456789abcdef0123456789abcdeX", 33);
    assert_int_equal(cluster_store_body(&t->nodes[0].c, 2, &b, 0,
                                        body_test_on_stored, &t->res),
                     KM_EINVAL);
    b = body_test_body("{}", "data");
    b.data_len = (size_t)65 * 1024 * 1024; /* checked before it is read */
    assert_int_equal(cluster_store_body(&t->nodes[0].c, 2, &b, 0,
                                        body_test_on_stored, &t->res),
                     KM_EINVAL);
    assert_int_equal(cluster_fetch_body(&t->nodes[0].c, 2, "short",
                                        body_test_on_fetched, &t->res),
                     KM_EINVAL);
    assert_int_equal(t->res.done, 0);
}

static void
malformed_store_body_gets_a_refusal(void **state)
{
    struct body_test *t = *state;
    /* Not a protobuf message: field 0 is invalid. */
    static const uint8_t garbage[] = {0x00, 0xff, 0xff, 0xff};
    struct cluster_link_msg m = {.kind = CLUSTER_LINK_RAW};

    m.u.raw.type = CLUSTER_LINK_T_STORE_BODY;
    m.u.raw.data = garbage;
    m.u.raw.len = sizeof(garbage);
    assert_int_equal(cluster_link_request(t->nodes[0].c.link, 2, &m,
                                          body_test_on_raw_reply, &t->res),
                     0);
    assert_true(body_test_wait(t));
    assert_int_equal(t->res.status, KM_EPROTO);
    assert_int_equal(t->nodes[1].stores, 0);
}

static void
store_body_with_a_bad_id_is_answered_internal(void **state)
{
    struct body_test *t = *state;
    /* StoreBody {id: "xyz"}: well-formed, but not a spool id. */
    static const uint8_t bad[] = {0x0a, 0x03, 'x', 'y', 'z'};
    /* StoreBodyAck {status: INTERNAL}. */
    static const uint8_t want[] = {0x10, 0x08};
    struct cluster_link_msg m = {.kind = CLUSTER_LINK_RAW};

    m.u.raw.type = CLUSTER_LINK_T_STORE_BODY;
    m.u.raw.data = bad;
    m.u.raw.len = sizeof(bad);
    assert_int_equal(cluster_link_request(t->nodes[0].c.link, 2, &m,
                                          body_test_on_raw_reply, &t->res),
                     0);
    assert_true(body_test_wait(t));
    assert_int_equal(t->res.status, 0);
    assert_int_equal(t->res.kind, CLUSTER_LINK_RAW);
    assert_int_equal(t->res.raw_type, CLUSTER_LINK_T_STORE_BODY_ACK);
    assert_int_equal(t->res.raw_len, sizeof(want));
    assert_memory_equal(t->res.raw, want, sizeof(want));
    assert_int_equal(t->nodes[1].stores, 0);
}

static void
fetch_body_returns_what_the_peer_holds(void **state)
{
    struct body_test *t = *state;
    struct body_test_node *peer = &t->nodes[1];

    peer->have = true;
    memcpy(peer->id, BODY_TEST_ID, sizeof(peer->id));
    memcpy(peer->meta, "{\"m\":1}", 7);
    peer->meta_len = 7;
    memcpy(peer->data, "hello\r\n", 7);
    peer->data_len = 7;
    assert_int_equal(cluster_fetch_body(&t->nodes[0].c, 2, BODY_TEST_ID,
                                        body_test_on_fetched, &t->res),
                     0);
    assert_true(body_test_wait(t));
    assert_int_equal(t->res.status, 0);
    assert_string_equal(t->res.id, BODY_TEST_ID);
    assert_int_equal(t->res.meta_len, 7);
    assert_memory_equal(t->res.meta, "{\"m\":1}", 7);
    assert_int_equal(t->res.data_len, 7);
    assert_memory_equal(t->res.data, "hello\r\n", 7);
}

static void
fetch_body_of_an_unknown_id_is_not_found(void **state)
{
    struct body_test *t = *state;

    assert_int_equal(cluster_fetch_body(&t->nodes[0].c, 2, BODY_TEST_ID,
                                        body_test_on_fetched, &t->res),
                     0);
    assert_true(body_test_wait(t));
    assert_int_equal(t->res.status, KM_ENOENT);
    assert_int_equal(t->nodes[1].fetches, 1);
}

static void
fetched_body_with_a_wrong_digest_is_corrupt(void **state)
{
    struct body_test *t = *state;
    struct body_test_node *peer = &t->nodes[1];

    peer->have = true;
    peer->corrupt = true;
    memcpy(peer->id, BODY_TEST_ID, sizeof(peer->id));
    memcpy(peer->data, "hello", 5);
    peer->data_len = 5;
    assert_int_equal(cluster_fetch_body(&t->nodes[0].c, 2, BODY_TEST_ID,
                                        body_test_on_fetched, &t->res),
                     0);
    assert_true(body_test_wait(t));
    assert_int_equal(t->res.status, KM_ECORRUPT);
}

static void
store_then_fetch_round_trips_through_two_links(void **state)
{
    struct body_test *t = *state;
    struct cluster_body b =
        body_test_body("{\"k\":\"v\"}", "line1\r\nline2\r\n");

    assert_int_equal(cluster_store_body(&t->nodes[0].c, 2, &b, 0,
                                        body_test_on_stored, &t->res),
                     0);
    assert_true(body_test_wait(t));
    assert_int_equal(t->res.status, 0);
    memset(&t->res, 0, sizeof(t->res));
    /* Node 1 asks node 2 for the copy it just stored there. */
    assert_int_equal(cluster_fetch_body(&t->nodes[0].c, 2, BODY_TEST_ID,
                                        body_test_on_fetched, &t->res),
                     0);
    assert_true(body_test_wait(t));
    assert_int_equal(t->res.status, 0);
    assert_int_equal(t->res.data_len, b.data_len);
    assert_memory_equal(t->res.data, b.data, b.data_len);
    assert_int_equal(t->res.meta_len, b.meta_len);
    assert_memory_equal(t->res.meta, b.meta, b.meta_len);
}

static void
store_body_to_an_unknown_node_fails_with_enoent(void **state)
{
    struct body_test *t = *state;
    struct cluster_body b = body_test_body("{}", "data");

    assert_int_equal(cluster_store_body(&t->nodes[0].c, 9, &b, 0,
                                        body_test_on_stored, &t->res),
                     0);
    assert_true(body_test_wait(t));
    assert_int_equal(t->res.status, KM_ENOENT);
}

static void
store_body_times_out_at_its_own_deadline_and_ignores_a_late_ack(void **state)
{
    struct body_test *t = *state;
    struct cluster_body b = body_test_body("{}", "data");
    uint64_t t0 = km_now_mono_ms();

    t->nodes[1].hold = true;
    assert_int_equal(cluster_store_body(&t->nodes[0].c, 2, &b, 200,
                                        body_test_on_stored, &t->res),
                     0);
    assert_true(body_test_wait(t));
    assert_int_equal(t->res.status, KM_ETIMEDOUT);
    assert_true(km_now_mono_ms() - t0 < 2000); /* not the link's 5 s */
    assert_non_null(t->nodes[1].held);
    cluster_body_reply(t->nodes[1].held, 0, NULL);
    t->nodes[1].held = NULL;
    body_test_run_ms(t, 300);
    assert_int_equal(t->res.done, 1);
    assert_int_equal(t->res.status, KM_ETIMEDOUT);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define BODY_TEST(fn)                                                          \
    cmocka_unit_test_setup_teardown(fn, body_test_setup, body_test_teardown)
        BODY_TEST(store_body_reaches_the_peer_host_byte_for_byte),
        BODY_TEST(store_body_reports_the_hosts_no_space),
        BODY_TEST(store_body_with_wrong_digest_never_reaches_the_host),
        BODY_TEST(store_body_refuses_bad_ids_and_oversize_before_sending),
        BODY_TEST(malformed_store_body_gets_a_refusal),
        BODY_TEST(store_body_with_a_bad_id_is_answered_internal),
        BODY_TEST(fetch_body_returns_what_the_peer_holds),
        BODY_TEST(fetch_body_of_an_unknown_id_is_not_found),
        BODY_TEST(fetched_body_with_a_wrong_digest_is_corrupt),
        BODY_TEST(store_then_fetch_round_trips_through_two_links),
        BODY_TEST(store_body_to_an_unknown_node_fails_with_enoent),
        BODY_TEST(
            store_body_times_out_at_its_own_deadline_and_ignores_a_late_ack),
#undef BODY_TEST
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
