/* test_cluster_transport.c - raft's TCP transport with dead-peer
 * detection: our dialer speaks raft_uv_tcp's handshake (the stock
 * listener hands over the right id and address), both ends of the stream
 * carry TCP_USER_TIMEOUT, a bad address fails cleanly, and close cancels
 * a dial still in progress. */
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
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "cluster_transport.h"
#include "test_util.h"

struct tr_test {
    uv_loop_t loop;
    struct raft_uv_transport srv, cli;
    char srv_addr[32];
    raft_id got_id;
    char got_addr[64];
    unsigned accepted_timeout;
    uv_stream_t *accepted;
    struct raft_uv_connect req;
    int connect_status;
    bool connected;
    uv_stream_t *stream;
    int closed;
};

static unsigned
tr_user_timeout(uv_stream_t *s)
{
    uv_os_fd_t fd;
    unsigned v = 0;
    socklen_t len = sizeof(v);

    assert_int_equal(uv_fileno((uv_handle_t *)s, &fd), 0);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, &len),
                     0);
    return v;
}

static void
tr_on_accept(struct raft_uv_transport *t, raft_id id, const char *address,
             struct uv_stream_s *stream)
{
    struct tr_test *tt = t->data;

    tt->got_id = id;
    snprintf(tt->got_addr, sizeof(tt->got_addr), "%s", address);
    tt->accepted_timeout = tr_user_timeout(stream);
    tt->accepted = stream;
}

static void
tr_on_connect(struct raft_uv_connect *req, struct uv_stream_s *stream,
              int status)
{
    struct tr_test *tt = req->data;

    tt->connected = true;
    tt->connect_status = status;
    tt->stream = stream;
}

static void
tr_on_stream_closed(uv_handle_t *h)
{
    free(h); /* raft frees streams with raft_free(): malloc'd */
}

static void
tr_on_closed(struct raft_uv_transport *t)
{
    struct tr_test *tt = t->data;

    tt->closed++;
}

static int
tr_setup(void **state)
{
    struct tr_test *tt = calloc(1, sizeof(*tt));
    int port = test_free_port();

    assert_true(port > 0);
    snprintf(tt->srv_addr, sizeof(tt->srv_addr), "127.0.0.1:%d", port);
    uv_loop_init(&tt->loop);
    assert_int_equal(cluster_transport_init_tcp(&tt->srv, &tt->loop), 0);
    assert_int_equal(cluster_transport_init_tcp(&tt->cli, &tt->loop), 0);
    tt->srv.data = tt;
    tt->cli.data = tt;
    tt->req.data = tt;
    assert_int_equal(tt->srv.init(&tt->srv, 1, tt->srv_addr), 0);
    assert_int_equal(tt->cli.init(&tt->cli, 7, "127.0.0.1:65001"), 0);
    assert_int_equal(tt->srv.listen(&tt->srv, tr_on_accept), 0);
    *state = tt;
    return 0;
}

static int
tr_teardown(void **state)
{
    struct tr_test *tt = *state;

    if (tt->stream != NULL) {
        uv_close((uv_handle_t *)tt->stream, tr_on_stream_closed);
    }
    if (tt->accepted != NULL) {
        uv_close((uv_handle_t *)tt->accepted, tr_on_stream_closed);
    }
    tt->srv.close(&tt->srv, tr_on_closed);
    tt->cli.close(&tt->cli, tr_on_closed);
    for (int i = 0; i < 2000 && tt->closed < 2; i++) {
        uv_run(&tt->loop, UV_RUN_ONCE);
    }
    assert_int_equal(tt->closed, 2);
    cluster_transport_release(&tt->srv);
    cluster_transport_release(&tt->cli);
    assert_int_equal(uv_loop_close(&tt->loop), 0);
    free(tt);
    return 0;
}

static void
dial_hands_our_id_and_address_to_the_stock_listener(void **state)
{
    struct tr_test *tt = *state;

    assert_int_equal(
        tt->cli.connect(&tt->cli, &tt->req, 1, tt->srv_addr, tr_on_connect), 0);
    test_run_until(&tt->loop, &tt->connected);
    assert_true(tt->connected);
    assert_int_equal(tt->connect_status, 0);
    assert_non_null(tt->stream);
    for (int i = 0; i < 2000 && tt->accepted == NULL; i++) {
        uv_run(&tt->loop, UV_RUN_ONCE);
    }
    assert_non_null(tt->accepted);
    assert_int_equal(tt->got_id, 7);
    assert_string_equal(tt->got_addr, "127.0.0.1:65001");
    /* Both ends detect a silent peer within seconds. */
    assert_int_equal(tt->accepted_timeout, 3000);
    assert_int_equal(tr_user_timeout(tt->stream), 3000);
}

static void
dial_to_a_closed_port_fails_with_no_connection(void **state)
{
    struct tr_test *tt = *state;
    char addr[32];

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", test_free_port());
    assert_int_equal(
        tt->cli.connect(&tt->cli, &tt->req, 2, addr, tr_on_connect), 0);
    test_run_until(&tt->loop, &tt->connected);
    assert_true(tt->connected);
    assert_int_equal(tt->connect_status, RAFT_NOCONNECTION);
    assert_null(tt->stream);
}

static void
bad_address_is_refused_at_once(void **state)
{
    struct tr_test *tt = *state;

    assert_int_equal(
        tt->cli.connect(&tt->cli, &tt->req, 2, "no-port", tr_on_connect),
        RAFT_NOCONNECTION);
    assert_int_equal(
        tt->cli.connect(&tt->cli, &tt->req, 2, "host:99999", tr_on_connect),
        RAFT_NOCONNECTION);
    assert_false(tt->connected);
}

static void
close_cancels_a_dial_in_progress(void **state)
{
    struct tr_test *tt = *state;

    /* Closed before the loop ever ran: the connect is still pending. */
    assert_int_equal(
        tt->cli.connect(&tt->cli, &tt->req, 1, tt->srv_addr, tr_on_connect), 0);
    tt->cli.close(&tt->cli, tr_on_closed);
    for (int i = 0; i < 2000 && tt->closed < 1; i++) {
        uv_run(&tt->loop, UV_RUN_ONCE);
    }
    assert_int_equal(tt->closed, 1);
    assert_true(tt->connected);
    assert_int_equal(tt->connect_status, RAFT_CANCELED);
    /* The teardown closes it again: give it a fresh one. */
    cluster_transport_release(&tt->cli);
    assert_int_equal(cluster_transport_init_tcp(&tt->cli, &tt->loop), 0);
    tt->cli.data = tt;
    assert_int_equal(tt->cli.init(&tt->cli, 7, "127.0.0.1:65001"), 0);
    tt->closed = 0;
    tt->stream = NULL;
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, tr_setup, tr_teardown)
    const struct CMUnitTest tests[] = {
        T(dial_hands_our_id_and_address_to_the_stock_listener),
        T(dial_to_a_closed_port_fails_with_no_connection),
        T(bad_address_is_refused_at_once),
        T(close_cancels_a_dial_in_progress),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
