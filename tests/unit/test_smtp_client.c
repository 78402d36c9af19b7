/* test_smtp_client.c - the outbound SMTP client against a scripted SMTP
 * server inside the test (uv_tcp on 127.0.0.1, ephemeral port, optional
 * STARTTLS with a self-signed certificate for "mx.test"). Each test sets
 * the server's replies, drives the loop until the client reports, and
 * checks what the server received and what the client reported:
 * pipelining, lock-step, per-recipient results, dot-stuffing, RSET,
 * 8BITMIME, the enable_tls modes, AUTH PLAIN, failures and timeouts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "base/buf.h"
#include "base/km.h"
#include "base/log.h"
#include "smtp_client.h"
#include "tls.h"

#define MAX_READS 64

/* ---- Fixture ---- */

/* The scripted server: one connection at a time. NULL replies mean the
 * defaults (250 / 354). */
struct srv {
    uv_tcp_t listener;
    uv_tcp_t conn;
    bool conn_open;
    int port;
    struct tls_ctx *tls_ctx;
    struct tls_conn *tls;
    bool tls_on;
    struct buf in;          /* plaintext not yet handled */
    struct buf log;         /* every plaintext byte received */
    char *reads[MAX_READS]; /* each read, as received (plaintext) */
    size_t n_reads;
    /* script */
    const char *banner; /* NULL: never greet */
    bool pipelining;
    bool eightbitmime;
    bool starttls;
    const char *mail_reply;
    const char *rcpt_replies[4];
    const char *dot_reply;
    const char *ehlo_reply; /* replaces the EHLO reply */
    bool close_in_data;
    /* state */
    bool in_data;
    bool mail_ok;
    size_t n_rcpt, n_rcpt_ok;
    struct buf body;
    bool mail_over_tls;
    bool auth_over_tls;
    char auth_line[128];
    int n_rset;
};

struct fixture {
    uv_loop_t loop;
    uv_timer_t tick;
    struct srv srv;
    struct tls_ctx *verify;
    struct tls_ctx *noverify;
    struct smtp_client_params params;
    struct smtp_client *client;
    bool ready_called;
    struct smtp_client_response failure; /* code -1: none */
    bool send_called;
    struct smtp_client_response rcpt[4];
    size_t n_rcpt;
    struct smtp_client_response txn;
    bool closed;
};

static void
test_on_tick(uv_timer_t *t)
{
    (void)t;
}

static void srv_on_connection(uv_stream_t *l, int status);

static int
setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));
    struct sockaddr_in sa;
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    char err[256];

    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    uv_timer_start(&f->tick, test_on_tick, 20, 20);
    uv_tcp_init(&f->loop, &f->srv.listener);
    f->srv.listener.data = &f->srv;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(
        uv_tcp_bind(&f->srv.listener, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(
        uv_listen((uv_stream_t *)&f->srv.listener, 8, srv_on_connection), 0);
    uv_tcp_getsockname(&f->srv.listener, (struct sockaddr *)&bound, &len);
    f->srv.port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    assert_int_equal(tls_ctx_new_server(NULL, NULL, "mx.test", &f->srv.tls_ctx,
                                        err, sizeof(err)),
                     0);
    assert_int_equal(tls_ctx_new_client(true, &f->verify), 0);
    assert_int_equal(tls_ctx_new_client(false, &f->noverify), 0);
    f->srv.banner = "220 mx.test ESMTP scripted\r\n";
    f->srv.pipelining = true;
    f->srv.eightbitmime = true;
    smtp_client_params_init(&f->params);
    f->params.ehlo_domain = "client.test";
    f->params.enable_tls = SMTP_CLIENT_TLS_DISABLED;
    f->params.tls_verify = f->verify;
    f->params.tls_noverify = f->noverify;
    f->params.tls_hostname = "mx.test";
    f->failure.code = -1;
    *state = f;
    return 0;
}

static void
test_on_client_closed(void *arg)
{
    struct fixture *f = arg;
    f->closed = true;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    uint64_t deadline = km_now_mono_ms() + 5000;

    if (f->client != NULL) {
        smtp_client_abort(f->client, test_on_client_closed, f);
        while (!f->closed && km_now_mono_ms() < deadline) {
            uv_run(&f->loop, UV_RUN_ONCE);
        }
        assert_true(f->closed);
    }
    if (f->srv.conn_open) {
        uv_close((uv_handle_t *)&f->srv.conn, NULL);
    }
    uv_close((uv_handle_t *)&f->srv.listener, NULL);
    uv_close((uv_handle_t *)&f->tick, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    tls_conn_free(f->srv.tls);
    tls_ctx_free(f->srv.tls_ctx);
    tls_ctx_free(f->verify);
    tls_ctx_free(f->noverify);
    buf_fini(&f->srv.in);
    buf_fini(&f->srv.log);
    buf_fini(&f->srv.body);
    for (size_t i = 0; i < f->srv.n_reads; i++) {
        free(f->srv.reads[i]);
    }
    smtp_client_response_fini(&f->failure);
    for (size_t i = 0; i < f->n_rcpt; i++) {
        smtp_client_response_fini(&f->rcpt[i]);
    }
    smtp_client_response_fini(&f->txn);
    test_free(f);
    return 0;
}

/* ---- Helpers: the scripted server ---- */

static void
srv_on_write(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
    free(req);
}

static void
srv_send_raw(struct srv *s, const void *p, size_t n)
{
    uv_write_t *req;
    uv_buf_t b;
    char *copy;

    if (!s->conn_open || n == 0) {
        return;
    }
    req = malloc(sizeof(*req));
    copy = malloc(n);
    memcpy(copy, p, n);
    req->data = copy;
    b = uv_buf_init(copy, (unsigned)n);
    if (uv_write(req, (uv_stream_t *)&s->conn, &b, 1, srv_on_write) != 0) {
        free(copy);
        free(req);
    }
}

static void
srv_send(struct srv *s, const char *text)
{
    if (s->tls_on) {
        struct buf out = BUF_INIT;
        tls_conn_write(s->tls, text, strlen(text), &out);
        srv_send_raw(s, out.data, out.len);
        buf_fini(&out);
    } else {
        srv_send_raw(s, text, strlen(text));
    }
}

static void
srv_close(struct srv *s)
{
    if (s->conn_open) {
        s->conn_open = false;
        uv_close((uv_handle_t *)&s->conn, NULL);
    }
}

static void
srv_ehlo(struct srv *s)
{
    struct buf b = BUF_INIT;

    buf_append_str(&b, "250-mx.test hello\r\n");
    if (s->pipelining) {
        buf_append_str(&b, "250-PIPELINING\r\n");
    }
    if (s->eightbitmime) {
        buf_append_str(&b, "250-8BITMIME\r\n");
    }
    if (s->starttls && !s->tls_on) {
        buf_append_str(&b, "250-STARTTLS\r\n");
    }
    if (s->tls_on) {
        buf_append_str(&b, "250-AUTH PLAIN\r\n");
    }
    buf_append_str(&b, "250 ENHANCEDSTATUSCODES\r\n");
    srv_send(s, b.data);
    buf_fini(&b);
}

static void
srv_line(struct srv *s, const char *l)
{
    if (strncmp(l, "EHLO", 4) == 0 && s->ehlo_reply != NULL) {
        srv_send(s, s->ehlo_reply);
    } else if (strncmp(l, "EHLO", 4) == 0) {
        srv_ehlo(s);
    } else if (strncmp(l, "HELO", 4) == 0) {
        srv_send(s, "250 mx.test\r\n");
    } else if (strcmp(l, "STARTTLS") == 0) {
        srv_send(s, "220 2.0.0 go ahead\r\n");
        assert_int_equal(tls_conn_new(s->tls_ctx, NULL, &s->tls), 0);
        s->tls_on = true;
    } else if (strncmp(l, "AUTH", 4) == 0) {
        snprintf(s->auth_line, sizeof(s->auth_line), "%s", l);
        s->auth_over_tls = s->tls_on;
        srv_send(s, "235 2.7.0 ok\r\n");
    } else if (strncmp(l, "MAIL", 4) == 0) {
        const char *r = s->mail_reply != NULL ? s->mail_reply : "250 ok\r\n";
        s->mail_ok = r[0] == '2';
        s->mail_over_tls = s->tls_on;
        s->n_rcpt = s->n_rcpt_ok = 0;
        srv_send(s, r);
    } else if (strncmp(l, "RCPT", 4) == 0) {
        const char *r = s->n_rcpt < 4 && s->rcpt_replies[s->n_rcpt] != NULL
                            ? s->rcpt_replies[s->n_rcpt]
                            : "250 ok\r\n";
        s->n_rcpt++;
        if (!s->mail_ok) {
            r = "503 5.5.1 need MAIL\r\n";
        }
        s->n_rcpt_ok += r[0] == '2';
        srv_send(s, r);
    } else if (strcmp(l, "DATA") == 0) {
        if (s->n_rcpt_ok == 0) {
            srv_send(s, "554 5.5.1 no valid recipients\r\n");
            return;
        }
        srv_send(s, "354 go\r\n");
        s->in_data = true;
        buf_reset(&s->body);
    } else if (strcmp(l, "RSET") == 0) {
        s->n_rset++;
        s->mail_ok = false;
        srv_send(s, "250 reset\r\n");
    } else if (strcmp(l, "QUIT") == 0) {
        srv_send(s, "221 bye\r\n");
        srv_close(s);
    } else {
        srv_send(s, "500 what\r\n");
    }
}

static void
srv_process(struct srv *s)
{
    while (s->conn_open && s->in.len > 0) {
        if (s->in_data) {
            const char *end;
            if (s->close_in_data) {
                srv_close(s);
                return;
            }
            end = memmem(s->in.data, s->in.len, "\r\n.\r\n", 5);
            if (end == NULL) {
                return;
            }
            buf_append(&s->body, s->in.data, (size_t)(end - s->in.data) + 2);
            buf_consume(&s->in, (size_t)(end - s->in.data) + 5);
            s->in_data = false;
            srv_send(s, s->dot_reply != NULL ? s->dot_reply
                                             : "250 2.0.0 ok queued\r\n");
        } else {
            const char *crlf = memmem(s->in.data, s->in.len, "\r\n", 2);
            char *line;
            if (crlf == NULL) {
                return;
            }
            line = km_strndup(s->in.data, (size_t)(crlf - s->in.data));
            buf_consume(&s->in, (size_t)(crlf - s->in.data) + 2);
            srv_line(s, line);
            if (strcmp(line, "STARTTLS") == 0) {
                /* Plaintext after STARTTLS: drop it (RFC 3207 6). */
                buf_reset(&s->in);
            }
            free(line);
        }
    }
}

static void
srv_on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(sz);
    b->len = sz;
}

static void
srv_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct srv *s = st->data;
    struct buf plain = BUF_INIT;

    if (n < 0) {
        srv_close(s);
    } else if (n > 0 && s->tls != NULL) {
        struct buf out = BUF_INIT;
        tls_conn_feed(s->tls, b->base, (size_t)n);
        if (tls_conn_handshake(s->tls, &out) < 0) {
            srv_send_raw(s, out.data, out.len);
            srv_close(s);
        } else {
            srv_send_raw(s, out.data, out.len);
            tls_conn_read(s->tls, &plain);
        }
        buf_fini(&out);
    } else if (n > 0) {
        buf_append(&plain, b->base, (size_t)n);
    }
    free(b->base);
    if (plain.len > 0) {
        if (s->n_reads < MAX_READS) {
            s->reads[s->n_reads++] = km_strndup(plain.data, plain.len);
        }
        buf_append(&s->log, plain.data, plain.len);
        buf_append(&s->in, plain.data, plain.len);
        srv_process(s);
    }
    buf_fini(&plain);
}

static void
srv_on_connection(uv_stream_t *l, int status)
{
    struct srv *s = l->data;

    assert_int_equal(status, 0);
    assert_false(s->conn_open);
    uv_tcp_init(l->loop, &s->conn);
    s->conn.data = s;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&s->conn), 0);
    s->conn_open = true;
    uv_read_start((uv_stream_t *)&s->conn, srv_on_alloc, srv_on_read);
    if (s->banner != NULL) {
        srv_send(s, s->banner);
    }
}

/* ---- Helpers: the client side ---- */

static void
run_until(struct fixture *f, const bool *flag)
{
    uint64_t deadline = km_now_mono_ms() + 10000;

    while (!*flag && km_now_mono_ms() < deadline) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_true(*flag);
}

static void
test_on_ready(void *arg, struct smtp_client *c,
              const struct smtp_client_response *failure)
{
    struct fixture *f = arg;

    assert_ptr_equal(c, f->client);
    assert_false(f->ready_called);
    f->ready_called = true;
    if (failure != NULL) {
        smtp_client_response_copy(&f->failure, failure);
    }
}

static void
test_on_sent(void *arg, struct smtp_client *c,
             const struct smtp_client_result *res)
{
    struct fixture *f = arg;

    assert_ptr_equal(c, f->client);
    f->send_called = true;
    for (size_t i = 0; i < f->n_rcpt; i++) {
        smtp_client_response_fini(&f->rcpt[i]);
    }
    smtp_client_response_fini(&f->txn);
    f->n_rcpt = res->n_rcpts;
    for (size_t i = 0; i < res->n_rcpts && i < 4; i++) {
        smtp_client_response_copy(&f->rcpt[i], &res->rcpt[i]);
    }
    smtp_client_response_copy(&f->txn, res->txn);
}

/* Connect to the scripted server (or `port`); returns after the ready
 * callback. */
static void
connect_port(struct fixture *f, int port)
{
    struct sockaddr_in sa;

    uv_ip4_addr("127.0.0.1", port, &sa);
    assert_int_equal(smtp_client_connect(&f->loop, (struct sockaddr *)&sa,
                                         "mx.test", &f->params, test_on_ready,
                                         f, &f->client),
                     0);
    assert_false(f->ready_called);
    run_until(f, &f->ready_called);
}

static void
connect_ok(struct fixture *f)
{
    connect_port(f, f->srv.port);
    if (f->failure.code != -1) {
        fail_msg("connect failed: %d %s", f->failure.code, f->failure.content);
    }
    assert_true(smtp_client_is_usable(f->client));
}

static void
send_msg(struct fixture *f, const char *body, size_t n_rcpts)
{
    static const char *const rcpts[] = {"a@example.com", "b@example.com",
                                        "c@example.com"};
    struct buf data = BUF_INIT;

    buf_append_str(&data, body);
    f->send_called = false;
    assert_int_equal(smtp_client_send(f->client, "sender@example.com", rcpts,
                                      n_rcpts, &data, test_on_sent, f),
                     0);
    buf_fini(&data);
    assert_false(f->send_called);
    run_until(f, &f->send_called);
}

static size_t
count(const char *hay, const char *needle)
{
    size_t n = 0;

    for (const char *p = strstr(hay, needle); p != NULL;
         p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

#define BODY "Subject: hi\r\n\r\nhello\r\n.hidden\r\nend\r\n"

/* ---- Tests ---- */

static void
pipelined_delivery_sends_group_in_one_write_and_stuffs_dots(void **state)
{
    struct fixture *f = *state;
    bool grouped = false;

    connect_ok(f);
    assert_true(smtp_client_has_ext(f->client, "PIPELINING"));
    send_msg(f, BODY, 2);
    assert_int_equal(f->n_rcpt, 2);
    assert_int_equal(f->rcpt[0].code, 250);
    assert_int_equal(f->rcpt[1].code, 250);
    assert_string_equal(f->rcpt[1].content, "ok queued");
    assert_string_equal(f->rcpt[1].command, ".\r\n");
    assert_int_equal(f->txn.code, 250);
    assert_int_equal(f->txn.enh_class, 2);
    for (size_t i = 0; i < f->srv.n_reads; i++) {
        const char *r = f->srv.reads[i];
        if (strstr(r, "MAIL FROM:<sender@example.com>\r\n") != NULL) {
            grouped = strstr(r, "RCPT TO:<a@example.com>\r\nRCPT "
                                "TO:<b@example.com>\r\nDATA\r\n") != NULL;
        }
    }
    assert_true(grouped);
    assert_string_equal(f->srv.body.data,
                        "Subject: hi\r\n\r\nhello\r\n..hidden\r\nend\r\n");
    assert_int_equal(f->srv.n_rset, 0);
    assert_true(smtp_client_is_usable(f->client));
    assert_string_equal(smtp_client_mx_name(f->client), "mx.test");
    assert_non_null(strstr(smtp_client_peer(f->client), "127.0.0.1:"));
    assert_non_null(strstr(smtp_client_source(f->client), "127.0.0.1:"));
}

static void
without_pipelining_commands_go_in_lock_step(void **state)
{
    struct fixture *f = *state;

    f->srv.pipelining = false;
    connect_ok(f);
    send_msg(f, "Subject: x\r\n\r\nno final newline", 2);
    assert_int_equal(f->rcpt[0].code, 250);
    assert_int_equal(f->rcpt[1].code, 250);
    for (size_t i = 0; i < f->srv.n_reads; i++) {
        const char *r = f->srv.reads[i];
        assert_true(
            count(r, "MAIL ") + count(r, "RCPT ") + count(r, "DATA\r\n") <= 1);
    }
    /* The client adds the CRLF before the final dot. */
    assert_string_equal(f->srv.body.data,
                        "Subject: x\r\n\r\nno final newline\r\n");
}

static void
failed_recipient_gets_its_rcpt_reply_and_other_the_dot_reply(void **state)
{
    struct fixture *f = *state;

    f->srv.rcpt_replies[1] = "550 5.1.1 no such user\r\n";
    connect_ok(f);
    send_msg(f, BODY, 2);
    assert_int_equal(f->rcpt[0].code, 250);
    assert_string_equal(f->rcpt[0].command, ".\r\n");
    assert_int_equal(f->rcpt[1].code, 550);
    assert_int_equal(f->rcpt[1].enh_detail, 1);
    assert_string_equal(f->rcpt[1].content, "no such user");
    assert_string_equal(f->rcpt[1].command, "RCPT TO:<b@example.com>\r\n");
    assert_true(smtp_client_is_usable(f->client));
}

static void
all_recipients_failing_skips_body_and_next_send_resets(void **state)
{
    struct fixture *f = *state;

    f->params.enable_rset = false;
    f->srv.rcpt_replies[0] = "550 5.1.1 nope\r\n";
    f->srv.rcpt_replies[1] = "451 4.2.0 later\r\n";
    connect_ok(f);
    send_msg(f, BODY, 2);
    assert_int_equal(f->rcpt[0].code, 550);
    assert_int_equal(f->rcpt[1].code, 451);
    assert_int_equal(f->srv.body.len, 0);
    assert_true(smtp_client_is_usable(f->client));
    f->srv.rcpt_replies[0] = NULL;
    f->srv.rcpt_replies[1] = NULL;
    send_msg(f, BODY, 1);
    assert_int_equal(f->rcpt[0].code, 250);
    /* enable_rset is off, but the failed transaction was left open. */
    assert_int_equal(f->srv.n_rset, 1);
}

static void
mail_from_451_fails_every_recipient_with_it(void **state)
{
    struct fixture *f = *state;

    f->srv.mail_reply = "451 4.3.0 try later\r\n";
    connect_ok(f);
    send_msg(f, BODY, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(f->rcpt[i].code, 451);
        assert_string_equal(f->rcpt[i].content, "try later");
        assert_non_null(strstr(f->rcpt[i].command, "MAIL FROM:"));
    }
    assert_int_equal(f->txn.code, 451);
    assert_int_equal(f->srv.body.len, 0);
    assert_true(smtp_client_is_usable(f->client));
}

static void
final_dot_554_fails_every_accepted_recipient(void **state)
{
    struct fixture *f = *state;

    f->srv.dot_reply = "554 5.7.1 spam\r\n";
    connect_ok(f);
    send_msg(f, BODY, 2);
    assert_int_equal(f->rcpt[0].code, 554);
    assert_int_equal(f->rcpt[1].code, 554);
    assert_string_equal(f->txn.content, "spam");
    assert_true(smtp_client_is_usable(f->client));
}

static void
banner_421_is_a_failure_carrying_the_reply(void **state)
{
    struct fixture *f = *state;

    f->srv.banner = "421 4.3.2 too busy\r\n";
    connect_port(f, f->srv.port);
    assert_int_equal(f->failure.code, 421);
    assert_string_equal(f->failure.content, "too busy");
    assert_false(smtp_client_is_usable(f->client));
}

static void
connection_refused_reports_synthetic_failure(void **state)
{
    struct fixture *f = *state;
    uv_tcp_t tmp;
    struct sockaddr_in sa;
    struct sockaddr_storage bound;
    int len = sizeof(bound), port;
    char want[128];

    /* A port that was bound but never listened on: refused. */
    uv_tcp_init(&f->loop, &tmp);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_bind(&tmp, (struct sockaddr *)&sa, 0), 0);
    uv_tcp_getsockname(&tmp, (struct sockaddr *)&bound, &len);
    port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    uv_close((uv_handle_t *)&tmp, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    connect_port(f, port);
    snprintf(want, sizeof(want),
             "KumoMTA internal: failed to connect to 127.0.0.1:%d: "
             "Connection refused",
             port);
    assert_int_equal(f->failure.code, 0);
    assert_string_equal(f->failure.content, want);
}

static void
server_closing_mid_data_is_a_transient_failure(void **state)
{
    struct fixture *f = *state;

    f->srv.close_in_data = true;
    connect_ok(f);
    send_msg(f, BODY, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(f->rcpt[i].code / 100, 4);
        assert_int_equal(f->rcpt[i].enh_class, 4);
        assert_non_null(strstr(f->rcpt[i].content, "KumoMTA internal: "));
    }
    assert_false(smtp_client_is_usable(f->client));
}

static void
opportunistic_tls_with_self_signed_cert_fails_handshake(void **state)
{
    struct fixture *f = *state;

    f->srv.starttls = true;
    f->params.enable_tls = SMTP_CLIENT_TLS_OPPORTUNISTIC;
    connect_port(f, f->srv.port);
    assert_int_equal(f->failure.code, 0);
    assert_non_null(strstr(f->failure.content, "TLS handshake failed: "));
    assert_false(smtp_client_is_usable(f->client));
}

static void
opportunistic_insecure_tls_runs_the_transaction_inside_tls(void **state)
{
    struct fixture *f = *state;

    f->srv.starttls = true;
    f->params.enable_tls = SMTP_CLIENT_TLS_OPPORTUNISTIC_INSECURE;
    connect_ok(f);
    assert_true(smtp_client_tls_active(f->client));
    assert_non_null(smtp_client_tls_version(f->client));
    assert_non_null(smtp_client_tls_cipher(f->client));
    /* The EHLO after TLS no longer offers STARTTLS. */
    assert_false(smtp_client_has_ext(f->client, "STARTTLS"));
    send_msg(f, BODY, 1);
    assert_int_equal(f->rcpt[0].code, 250);
    assert_true(f->srv.mail_over_tls);
    assert_int_equal(count(f->srv.log.data, "EHLO client.test\r\n"), 2);
}

static void
required_tls_without_starttls_offered_fails(void **state)
{
    struct fixture *f = *state;

    f->params.enable_tls = SMTP_CLIENT_TLS_REQUIRED;
    connect_port(f, f->srv.port);
    assert_int_equal(f->failure.code, 0);
    assert_non_null(
        strstr(f->failure.content, "STARTTLS required but not offered"));
}

static void
disabled_tls_never_sends_starttls(void **state)
{
    struct fixture *f = *state;

    f->srv.starttls = true;
    f->params.enable_tls = SMTP_CLIENT_TLS_DISABLED;
    connect_ok(f);
    assert_true(smtp_client_has_ext(f->client, "STARTTLS"));
    assert_false(smtp_client_tls_active(f->client));
    assert_null(strstr(f->srv.log.data, "STARTTLS"));
}

static void
eight_bit_body_without_8bitmime_fails_before_mail(void **state)
{
    struct fixture *f = *state;

    f->srv.eightbitmime = false;
    connect_ok(f);
    send_msg(f, "Subject: caf\xc3\xa9\r\n\r\nbody\r\n", 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(f->rcpt[i].code, 554);
        assert_int_equal(f->rcpt[i].enh_class, 5);
        assert_non_null(strstr(f->rcpt[i].content,
                               "KumoMTA internal: DATA is 8bit, destination "
                               "does not support 8BITMIME"));
    }
    assert_null(strstr(f->srv.log.data, "MAIL FROM"));
    assert_true(smtp_client_is_usable(f->client));
}

static void
eight_bit_body_with_8bitmime_sends_body_parameter(void **state)
{
    struct fixture *f = *state;

    connect_ok(f);
    send_msg(f, "Subject: caf\xc3\xa9\r\n\r\nbody\r\n", 1);
    assert_int_equal(f->rcpt[0].code, 250);
    assert_non_null(strstr(f->srv.log.data,
                           "MAIL FROM:<sender@example.com> BODY=8BITMIME\r\n"));
}

static void
second_transaction_starts_with_rset_like_kumomta(void **state)
{
    struct fixture *f = *state;

    connect_ok(f);
    send_msg(f, BODY, 1);
    assert_int_equal(f->srv.n_rset, 0);
    send_msg(f, BODY, 1);
    assert_int_equal(f->rcpt[0].code, 250);
    assert_int_equal(f->srv.n_rset, 1);
    assert_int_equal(count(f->srv.log.data, "MAIL FROM"), 2);
    /* The RSET comes right before the second MAIL. */
    assert_non_null(strstr(f->srv.log.data, "RSET\r\nMAIL FROM"));
}

static void
banner_timeout_fails_the_connection(void **state)
{
    struct fixture *f = *state;
    uint64_t start = km_now_mono_ms();

    f->srv.banner = NULL;
    f->params.banner_timeout_ms = 200;
    connect_port(f, f->srv.port);
    assert_true(km_now_mono_ms() - start >= 190);
    assert_int_equal(f->failure.code, 0);
    assert_non_null(strstr(f->failure.content, "timed out after 200 ms"));
    assert_non_null(strstr(f->failure.content, "banner"));
}

static void
auth_plain_is_sent_after_tls_with_rfc4616_base64(void **state)
{
    struct fixture *f = *state;

    f->srv.starttls = true;
    f->params.enable_tls = SMTP_CLIENT_TLS_REQUIRED_INSECURE;
    f->params.smtp_auth_plain_username = "user";
    f->params.smtp_auth_plain_password = "pass";
    connect_ok(f);
    assert_true(f->srv.auth_over_tls);
    /* base64("\0user\0pass") */
    assert_string_equal(f->srv.auth_line, "AUTH PLAIN AHVzZXIAcGFzcw==");
}

static void
auth_plain_without_tls_is_refused(void **state)
{
    struct fixture *f = *state;

    f->params.smtp_auth_plain_username = "user";
    connect_port(f, f->srv.port);
    assert_int_equal(f->failure.code, 0);
    assert_non_null(strstr(f->failure.content, "AUTH PLAIN"));
    assert_null(strstr(f->srv.log.data, "AUTH"));
}

static void
quit_sends_quit_and_closes(void **state)
{
    struct fixture *f = *state;

    connect_ok(f);
    smtp_client_quit(f->client, test_on_client_closed, f);
    f->client = NULL;
    run_until(f, &f->closed);
    assert_non_null(strstr(f->srv.log.data, "QUIT\r\n"));
}

static void
ehlo_5xx_falls_back_to_helo(void **state)
{
    struct fixture *f = *state;

    f->srv.ehlo_reply = "502 5.5.2 what is EHLO\r\n";
    connect_ok(f);
    assert_non_null(strstr(f->srv.log.data, "HELO client.test\r\n"));
    assert_false(smtp_client_has_ext(f->client, "PIPELINING"));
    send_msg(f, BODY, 1);
    assert_int_equal(f->rcpt[0].code, 250);
}

static void
ehlo_4xx_is_a_failure_carrying_the_reply(void **state)
{
    struct fixture *f = *state;

    f->srv.ehlo_reply = "450 4.7.1 slow down\r\n";
    connect_port(f, f->srv.port);
    assert_int_equal(f->failure.code, 450);
    assert_string_equal(f->failure.command, "EHLO client.test\r\n");
}

static void
rcpt_421_fails_pending_recipients_and_kills_connection(void **state)
{
    struct fixture *f = *state;

    f->srv.rcpt_replies[1] = "421 4.7.0 closing\r\n";
    connect_ok(f);
    send_msg(f, BODY, 2);
    assert_int_equal(f->rcpt[0].code, 421);
    assert_int_equal(f->rcpt[1].code, 421);
    assert_string_equal(f->rcpt[1].content, "closing");
    assert_int_equal(f->srv.body.len, 0);
    assert_false(smtp_client_is_usable(f->client));
    assert_int_equal(smtp_client_send(f->client, "s@x", (const char *[]){"r@x"},
                                      1, &f->srv.body, test_on_sent, f),
                     KM_ECLOSING);
}

static void
garbage_reply_fails_the_transaction_transiently(void **state)
{
    struct fixture *f = *state;

    f->srv.mail_reply = "hello there\r\n";
    connect_ok(f);
    send_msg(f, BODY, 1);
    assert_int_equal(f->rcpt[0].code, 421);
    assert_int_equal(f->rcpt[0].enh_class, 4);
    assert_non_null(strstr(f->rcpt[0].content, "invalid reply"));
    assert_false(smtp_client_is_usable(f->client));
}

static void
dot_reply_timeout_fails_the_transaction_transiently(void **state)
{
    struct fixture *f = *state;

    f->srv.dot_reply = "";
    f->params.data_dot_timeout_ms = 200;
    connect_ok(f);
    send_msg(f, BODY, 1);
    assert_int_equal(f->rcpt[0].code, 421);
    assert_non_null(strstr(f->rcpt[0].content, "timed out after 200 ms"));
    assert_non_null(strstr(f->rcpt[0].content, "final dot"));
}

int
main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(pipelined_delivery_sends_group_in_one_write_and_stuffs_dots),
        T(without_pipelining_commands_go_in_lock_step),
        T(failed_recipient_gets_its_rcpt_reply_and_other_the_dot_reply),
        T(all_recipients_failing_skips_body_and_next_send_resets),
        T(mail_from_451_fails_every_recipient_with_it),
        T(final_dot_554_fails_every_accepted_recipient),
        T(banner_421_is_a_failure_carrying_the_reply),
        T(connection_refused_reports_synthetic_failure),
        T(server_closing_mid_data_is_a_transient_failure),
        T(opportunistic_tls_with_self_signed_cert_fails_handshake),
        T(opportunistic_insecure_tls_runs_the_transaction_inside_tls),
        T(required_tls_without_starttls_offered_fails),
        T(disabled_tls_never_sends_starttls),
        T(eight_bit_body_without_8bitmime_fails_before_mail),
        T(eight_bit_body_with_8bitmime_sends_body_parameter),
        T(second_transaction_starts_with_rset_like_kumomta),
        T(banner_timeout_fails_the_connection),
        T(auth_plain_is_sent_after_tls_with_rfc4616_base64),
        T(auth_plain_without_tls_is_refused),
        T(quit_sends_quit_and_closes),
        T(ehlo_5xx_falls_back_to_helo),
        T(ehlo_4xx_is_a_failure_carrying_the_reply),
        T(rcpt_421_fails_pending_recipients_and_kills_connection),
        T(garbage_reply_fails_the_transaction_transiently),
        T(dot_reply_timeout_fails_the_transaction_transiently),
    };
#undef T
    /* KUMO_TEST_TRACE=1 shows the SMTP conversation (and runs the
     * trace paths under the sanitizers). */
    if (getenv("KUMO_TEST_TRACE") != NULL) {
        log_set_filter("debug,smtp");
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
