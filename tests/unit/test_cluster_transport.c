/* test_cluster_transport.c - raft's TCP transport with dead-peer
 * detection and the checking relay: our dialer speaks raft_uv_tcp's
 * handshake (our listener hands over the right id and address), the
 * dialed socket carries TCP_USER_TIMEOUT, raft receives a relayed stream
 * carrying exactly the valid messages, a bad handshake or frame is dropped
 * before raft sees it, a bad address fails cleanly, and close cancels a
 * dial still in progress. */
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

#include "base/buf.h"
#include "cluster_transport.h"
#include "test_util.h"

struct tr_test {
    uv_loop_t loop;
    struct raft_uv_transport srv, cli;
    char srv_addr[32];
    raft_id got_id;
    char got_addr[64];
    uv_stream_t *accepted;
    struct buf got; /* read from the accepted stream */
    bool got_eof;
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
    buf_init(&tt->got);
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
    buf_fini(&tt->got);
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
    /* Raft reads the relay's socketpair, never the peer's socket. */
    assert_int_equal(tt->accepted->type, UV_NAMED_PIPE);
    /* Our end detects a silent peer within seconds. */
    assert_int_equal(tr_user_timeout(tt->stream), 3000);
}

/* Raw peers and what raft reads */

static void
tr_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void
tr_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = suggested;
}

static void
tr_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tr_test *tt = s->data;

    if (nread > 0) {
        buf_append(&tt->got, buf->base, (size_t)nread);
    } else if (nread < 0) {
        tt->got_eof = true;
    }
    free(buf->base);
}

static void
tr_on_write(uv_write_t *w, int status)
{
    assert_int_equal(status, 0);
    free(w);
}

static void
tr_write(uv_stream_t *s, const void *p, size_t n)
{
    uv_write_t *w = calloc(1, sizeof(*w));
    uv_buf_t b = uv_buf_init((char *)(uintptr_t)p, (unsigned)n);

    assert_int_equal(uv_write(w, s, &b, 1, tr_on_write), 0);
}

static void
tr_run_for(struct tr_test *tt, int rounds, const bool *until)
{
    for (int i = 0; i < rounds && !(until != NULL && *until); i++) {
        uv_run(&tt->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
}

static void
relay_hands_raft_the_valid_messages_and_drops_a_bad_one(void **state)
{
    struct tr_test *tt = *state;
    uint8_t hb[56] = {0}, bad[72] = {0};

    assert_int_equal(
        tt->cli.connect(&tt->cli, &tt->req, 1, tt->srv_addr, tr_on_connect), 0);
    test_run_until(&tt->loop, &tt->connected);
    assert_int_equal(tt->connect_status, 0);
    /* A heartbeat: AppendEntries with no entries. */
    tr_put64(hb, 1);
    tr_put64(hb + 8, 40);
    tr_put64(hb + 16, 2);
    tr_write(tt->stream, hb, sizeof(hb));
    for (int i = 0; i < 2000 && tt->accepted == NULL; i++) {
        uv_run(&tt->loop, UV_RUN_ONCE);
    }
    assert_non_null(tt->accepted);
    tt->accepted->data = tt;
    assert_int_equal(uv_read_start(tt->accepted, tr_alloc, tr_on_read), 0);
    for (int i = 0; i < 2000 && tt->got.len < sizeof(hb); i++) {
        uv_run(&tt->loop, UV_RUN_ONCE);
    }
    assert_int_equal(tt->got.len, sizeof(hb));
    assert_memory_equal(tt->got.data, hb, sizeof(hb));
    /* An entry of type 0 (PROBE-2026-12 R5): raft gets no byte of it and
     * reads EOF instead. */
    tr_put64(bad, 1);
    tr_put64(bad + 8, 56);
    tr_put64(bad + 16, 2);
    tr_put64(bad + 48, 1);
    tr_put64(bad + 56, 2);
    tr_write(tt->stream, bad, sizeof(bad));
    tr_run_for(tt, 2000, &tt->got_eof);
    assert_true(tt->got_eof);
    assert_int_equal(tt->got.len, sizeof(hb));
    assert_int_equal(cluster_transport_refused(&tt->srv), 1);
}

static void
relay_drops_an_unterminated_handshake_before_raft_hears_of_it(void **state)
{
    struct tr_test *tt = *state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    uint8_t hs[24 + 16];
    char c;

    assert_true(fd >= 0);
    sa.sin_port = htons((uint16_t)atoi(strchr(tt->srv_addr, ':') + 1));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    tr_put64(hs, 1);
    tr_put64(hs + 8, 2);
    tr_put64(hs + 16, 16);
    memset(hs + 24, 'x', 16);
    assert_int_equal(write(fd, hs, sizeof(hs)), (ssize_t)sizeof(hs));
    for (int i = 0; i < 2000 && cluster_transport_refused(&tt->srv) == 0; i++) {
        uv_run(&tt->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    assert_int_equal(cluster_transport_refused(&tt->srv), 1);
    tr_run_for(tt, 20, NULL);
    assert_null(tt->accepted);
    /* The server closed the connection. */
    assert_int_equal(read(fd, &c, 1), 0);
    close(fd);
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
        T(relay_hands_raft_the_valid_messages_and_drops_a_bad_one),
        T(relay_drops_an_unterminated_handshake_before_raft_hears_of_it),
        T(dial_to_a_closed_port_fails_with_no_connection),
        T(bad_address_is_refused_at_once),
        T(close_cancels_a_dial_in_progress),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
