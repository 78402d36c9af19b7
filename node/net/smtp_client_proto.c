/* smtp_client_proto.c - the protocol of one outbound ESMTP connection:
 * the greeting (banner, EHLO, STARTTLS, AUTH), transactions (MAIL, RCPT,
 * DATA, pipelined or not) and reading replies, each matched to the head of
 * the pending commands. The connection's handles, writing and the API are
 * smtp_client.c. Never logs AUTH data or message bodies. Loop thread
 * only. */
#include "base/buf.h"
#include "base/km.h"
#include "base/log.h"
#include "smtp_client.h"
#include "smtp_client_int.h"
#include "tls.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void smtp_client_txn_advance(struct smtp_client *c);

/* ---- Greeting: banner, EHLO, STARTTLS, AUTH ---- */

static void
smtp_client_ready(struct smtp_client *c)
{
    smtp_client_ready_cb cb = c->ready_cb;

    uv_timer_stop(&c->timer);
    smtp_client_enter_state(c, SMTP_CLIENT_ST_READY);
    c->ready_cb = NULL;
    if (cb != NULL) {
        cb(c->ready_arg, c, NULL);
    }
}

static void
smtp_client_send_ehlo(struct smtp_client *c, enum smtp_client_cmd kind)
{
    char *line =
        km_asprintf("%s %s\r\n", kind == SMTP_CLIENT_CMD_EHLO ? "EHLO" : "HELO",
                    c->ehlo_domain);

    smtp_client_command(c, kind, line, line, c->p.ehlo_timeout_ms);
    free(line);
}

static void
smtp_client_send_auth(struct smtp_client *c)
{
    struct buf plain = BUF_INIT;
    struct buf wire = BUF_INIT;

    /* RFC 4616: [authzid] NUL authcid NUL passwd. */
    buf_append_char(&plain, '\0');
    buf_append_str(&plain, c->auth_user);
    buf_append_char(&plain, '\0');
    buf_append_str(&plain, c->auth_pass != NULL ? c->auth_pass : "");
    buf_append_str(&wire, "AUTH PLAIN ");
    smtp_client_b64((const unsigned char *)plain.data, plain.len, &wire);
    buf_append_str(&wire, "\r\n");
    smtp_client_command(c, SMTP_CLIENT_CMD_AUTH, wire.data, "AUTH PLAIN\r\n",
                        c->p.auth_timeout_ms);
    explicit_bzero(plain.data, plain.len);
    explicit_bzero(wire.data, wire.len);
    buf_fini(&plain);
    buf_fini(&wire);
}

static void smtp_client_tls_step(struct smtp_client *c);

static void
smtp_client_start_tls(struct smtp_client *c)
{
    bool insecure = c->p.enable_tls == SMTP_CLIENT_TLS_OPPORTUNISTIC_INSECURE ||
                    c->p.enable_tls == SMTP_CLIENT_TLS_REQUIRED_INSECURE;
    struct tls_ctx *ctx = insecure ? c->p.tls_noverify : c->p.tls_verify;
    const char *sni = c->tls_name;
    unsigned char tmp[sizeof(struct in6_addr)];
    int rv;

    /* RFC 3207 6: anything the server sent after its 220 came before TLS
     * and must not be taken as coming through it. */
    buf_reset(&c->rbuf);
    smtp_client_reply_fini(&c->parser);
    smtp_client_reply_init(&c->parser);
    /* RFC 6066 3: SNI carries host names only, never IP literals. */
    if (uv_inet_pton(AF_INET, sni, tmp) == 0 ||
        uv_inet_pton(AF_INET6, sni, tmp) == 0) {
        sni = NULL;
    }
    rv = tls_conn_new(ctx, sni, &c->tls);
    if (rv != 0) {
        smtp_client_fail_synthetic(c, "%s: TLS handshake failed: %s", c->peer,
                                   km_strerror(rv));
        return;
    }
    smtp_client_enter_state(c, SMTP_CLIENT_ST_HANDSHAKE);
    uv_timer_start(&c->timer, smtp_client_on_timer, c->p.starttls_timeout_ms,
                   0);
    smtp_client_tls_step(c);
}

static void
smtp_client_tls_step(struct smtp_client *c)
{
    struct buf out = BUF_INIT;
    int rv = tls_conn_handshake(c->tls, &out);

    if (out.len > 0) {
        smtp_client_write(c, out.data, out.len, false);
    }
    buf_fini(&out);
    if (rv < 0) {
        smtp_client_fail_synthetic(c, "%s: TLS handshake failed: %s", c->peer,
                                   tls_conn_error(c->tls));
        return;
    }
    if (rv == 0) {
        return;
    }
    c->tls_active = true;
    LOG_TRACE(TRACE_SMTP, "smtp_client: %s: TLS %s %s", c->peer,
              tls_conn_version(c->tls), tls_conn_cipher(c->tls));
    uv_timer_stop(&c->timer);
    smtp_client_enter_state(c, SMTP_CLIENT_ST_GREETING);
    /* RFC 3207 4.2: forget what the server said before TLS. */
    memset(&c->caps, 0, sizeof(c->caps));
    c->ehlo_done_tls = true;
    smtp_client_send_ehlo(c, SMTP_CLIENT_CMD_EHLO);
}

/* After a successful EHLO/HELO: STARTTLS, AUTH or ready. */
static void
smtp_client_after_ehlo(struct smtp_client *c)
{
    enum smtp_client_tls mode = c->p.enable_tls;
    bool required = mode == SMTP_CLIENT_TLS_REQUIRED ||
                    mode == SMTP_CLIENT_TLS_REQUIRED_INSECURE;

    if (!c->tls_active && !c->ehlo_done_tls) {
        if (required && !c->caps.starttls) {
            smtp_client_fail_synthetic(
                c, "%s: STARTTLS required but not offered", c->peer);
            return;
        }
        if (mode != SMTP_CLIENT_TLS_DISABLED && c->caps.starttls) {
            smtp_client_command(c, SMTP_CLIENT_CMD_STARTTLS, "STARTTLS\r\n",
                                "STARTTLS\r\n", c->p.starttls_timeout_ms);
            return;
        }
    }
    if (c->auth_user != NULL) {
        if (!c->tls_active && !c->p.allow_smtp_auth_plain_without_tls) {
            smtp_client_fail_synthetic(c,
                                       "%s: TLS is not enabled and AUTH "
                                       "PLAIN is required",
                                       c->peer);
            return;
        }
        smtp_client_send_auth(c);
        return;
    }
    smtp_client_ready(c);
}

/* Takes ownership of r. */
static void
smtp_client_greeting_reply(struct smtp_client *c, enum smtp_client_cmd kind,
                           struct smtp_client_response *r)
{
    switch (kind) {
    case SMTP_CLIENT_CMD_BANNER:
        if (r->code != 220) {
            smtp_client_fail(c, r);
            return;
        }
        smtp_client_send_ehlo(c, SMTP_CLIENT_CMD_EHLO);
        break;
    case SMTP_CLIENT_CMD_EHLO:
        if (r->code == 250) {
            smtp_client_caps_parse(r->content, &c->caps);
            smtp_client_after_ehlo(c);
        } else if (r->code / 100 == 5 && !c->tls_active) {
            /* RFC 5321 3.2: an old server; try HELO. */
            smtp_client_send_ehlo(c, SMTP_CLIENT_CMD_HELO);
        } else {
            smtp_client_fail(c, r);
            return;
        }
        break;
    case SMTP_CLIENT_CMD_HELO:
        if (r->code / 100 != 2) {
            smtp_client_fail(c, r);
            return;
        }
        memset(&c->caps, 0, sizeof(c->caps));
        smtp_client_after_ehlo(c);
        break;
    case SMTP_CLIENT_CMD_STARTTLS:
        if (r->code != 220) {
            smtp_client_fail(c, r);
            return;
        }
        smtp_client_start_tls(c);
        break;
    case SMTP_CLIENT_CMD_AUTH:
        if (r->code != 235) {
            smtp_client_fail(c, r);
            return;
        }
        smtp_client_ready(c);
        break;
    default:
        smtp_client_fail_synthetic(c, "%s: unexpected reply while greeting",
                                   c->peer);
        break;
    }
    smtp_client_response_fini(r);
}

/* ---- Transactions ---- */

/* Dot-stuff data into out (RFC 5321 4.5.2), end it with CRLF if needed,
 * then the final dot. */
void
smtp_client_stuff(const char *p, size_t n, struct buf *out)
{
    size_t start = 0;

    buf_reserve(out, n + n / 64 + 8);
    for (size_t i = 0; i < n; i++) {
        bool line_start = i == 0 || p[i - 1] == '\n';
        if (line_start && p[i] == '.') {
            buf_append(out, p + start, i - start);
            buf_append_char(out, '.');
            start = i;
        }
    }
    buf_append(out, p + start, n - start);
    /* KumoMTA: add CRLF unless the data ends with a line feed. */
    if (n > 0 && p[n - 1] != '\n') {
        buf_append_str(out, "\r\n");
    }
    buf_append_str(out, ".\r\n");
}

void
smtp_client_txn_add(struct smtp_client_txn *t, enum smtp_client_cmd kind,
                    size_t rcpt, char *command, uint64_t timeout_ms)
{
    struct smtp_client_pending *e = &t->cmds[t->n_cmds++];

    e->kind = kind;
    e->rcpt = rcpt;
    e->command = command;
    e->timeout_ms = timeout_ms;
}

/* Send t->cmds[i] (moving its command into the pending queue). */
void
smtp_client_txn_send_cmd(struct smtp_client *c, struct smtp_client_pending *e)
{
    smtp_client_trace_cmd(c, e->kind, e->command);
    smtp_client_write(c, e->command, strlen(e->command), true);
    smtp_client_expect(c, e->kind, e->rcpt, e->command, e->timeout_ms);
    e->command = NULL;
}

/* Report the outcome and return to READY (unless the connection died). */
void
smtp_client_txn_finish(struct smtp_client *c)
{
    struct smtp_client_txn *t = c->txn;
    struct smtp_client_result res;
    const struct smtp_client_response *why = NULL;

    if (t->txn.code == 0 && t->txn.content == NULL) {
        if (t->fail.code != 0) {
            why = &t->fail;
        } else if (t->n_ok == 0 && t->last_rcpt_fail.code != 0) {
            why = &t->last_rcpt_fail;
        } else if (t->data_fail.code != 0) {
            why = &t->data_fail;
        }
        if (why != NULL) {
            smtp_client_response_copy(&t->txn, why);
        } else {
            smtp_client_set_resp(&t->txn, 421, 4, 4, 2,
                                 km_asprintf(SMTP_CLIENT_INTERNAL
                                             "%s: transaction ended without "
                                             "a reply",
                                             c->peer));
        }
    }
    for (size_t i = 0; i < t->n_rcpts; i++) {
        /* A failed MAIL (or RSET) decides for every recipient. */
        if (t->fail.code != 0) {
            smtp_client_response_fini(&t->rcpt[i]);
            smtp_client_response_copy(&t->rcpt[i], &t->fail);
        } else if (t->rcpt[i].code == 0) {
            smtp_client_response_fini(&t->rcpt[i]);
            smtp_client_response_copy(&t->rcpt[i], &t->txn);
        }
    }
    if (!t->early) {
        /* Not ended by a reply to a dot: the server may still hold the
         * transaction, so the next one starts with RSET. */
        c->need_rset = !t->done;
    }
    if (c->state == SMTP_CLIENT_ST_TXN) {
        uv_timer_stop(&c->timer);
        smtp_client_enter_state(c, SMTP_CLIENT_ST_READY);
    }
    c->txn = NULL;
    res.rcpt = t->rcpt;
    res.n_rcpts = t->n_rcpts;
    res.txn = &t->txn;
    if (t->cb != NULL) {
        t->cb(t->arg, c, &res);
    }
    smtp_client_txn_free(t);
}

/* Called after each transaction reply: send the next command (lock-step),
 * the body, or finish once no reply is outstanding. */
static void
smtp_client_txn_advance(struct smtp_client *c)
{
    struct smtp_client_txn *t = c->txn;

    if (c->n_pending > 0) {
        return;
    }
    if (!t->pipelined && t->fail.code == 0 && t->data_fail.code == 0 &&
        !t->got_354 && t->next_cmd < t->n_cmds) {
        struct smtp_client_pending *e = &t->cmds[t->next_cmd];
        if (e->kind != SMTP_CLIENT_CMD_DATA || t->n_ok > 0) {
            t->next_cmd++;
            smtp_client_txn_send_cmd(c, e);
            return;
        }
    }
    if (t->got_354 && !t->dot_sent) {
        t->dot_sent = true;
        if (t->fail.code == 0 && t->n_ok > 0) {
            LOG_TRACE(TRACE_SMTP, "smtp_client: %s: -> (%zu bytes of data)",
                      c->peer, t->body.len);
            smtp_client_write(c, t->body.data, t->body.len, true);
            smtp_client_expect(c, SMTP_CLIENT_CMD_DOT, 0, km_strdup(".\r\n"),
                               c->p.data_dot_timeout_ms);
            return;
        }
        if (t->n_ok == 0) {
            /* RFC 2920 3.1: DATA accepted although no RCPT was: end it
             * with a lone dot, which delivers nothing. */
            t->dot_discard = true;
            smtp_client_command(c, SMTP_CLIENT_CMD_DOT, ".\r\n", ".\r\n",
                                c->p.data_dot_timeout_ms);
            return;
        }
        /* RSET failed yet recipients and DATA were accepted: a dot would
         * deliver an empty message, so drop the connection instead. */
        smtp_client_fail_synthetic(c, "%s: out of sync after a failed RSET",
                                   c->peer);
        return;
    }
    smtp_client_txn_finish(c);
}

/* An RSET failure is never the message's fault: make it transient. */
static void
smtp_client_rset_failed(struct smtp_client *c, struct smtp_client_response *r)
{
    struct smtp_client_txn *t = c->txn;
    char *line;

    if (r->code / 100 == 4) {
        t->fail = *r;
        memset(r, 0, sizeof(*r));
        return;
    }
    line = smtp_client_response_line(r);
    smtp_client_set_resp(
        &t->fail, 451, 4, 4, 2,
        km_asprintf(SMTP_CLIENT_INTERNAL "%s: RSET failed: %s", c->peer, line));
    t->fail.command = km_strdup("RSET\r\n");
    free(line);
}

/* Takes ownership of r. */
static void
smtp_client_txn_reply(struct smtp_client *c,
                      const struct smtp_client_pending *e,
                      struct smtp_client_response *r)
{
    struct smtp_client_txn *t = c->txn;

    switch (e->kind) {
    case SMTP_CLIENT_CMD_RSET:
        if (r->code / 100 != 2 && t->fail.code == 0) {
            smtp_client_rset_failed(c, r);
        }
        break;
    case SMTP_CLIENT_CMD_MAIL:
        if (r->code / 100 != 2 && t->fail.code == 0) {
            t->fail = *r;
            memset(r, 0, sizeof(*r));
        }
        break;
    case SMTP_CLIENT_CMD_RCPT:
        if (r->code / 100 == 2) {
            t->n_ok++;
        } else if (e->rcpt < t->n_rcpts) {
            smtp_client_response_fini(&t->last_rcpt_fail);
            smtp_client_response_copy(&t->last_rcpt_fail, r);
            smtp_client_response_fini(&t->rcpt[e->rcpt]);
            t->rcpt[e->rcpt] = *r;
            memset(r, 0, sizeof(*r));
        }
        break;
    case SMTP_CLIENT_CMD_DATA:
        if (r->code == 354) {
            t->got_354 = true;
        } else {
            t->data_fail = *r;
            memset(r, 0, sizeof(*r));
        }
        break;
    case SMTP_CLIENT_CMD_DOT:
        t->done = true;
        if (!t->dot_discard) {
            smtp_client_response_fini(&t->txn);
            t->txn = *r;
            memset(r, 0, sizeof(*r));
        }
        break;
    default:
        break;
    }
    smtp_client_response_fini(r);
    smtp_client_txn_advance(c);
}

/* ---- Reading ---- */

/* Takes ownership of r: match it with the oldest command awaiting one. */
static void
smtp_client_on_reply(struct smtp_client *c, struct smtp_client_response *r)
{
    struct smtp_client_pending e;

    if ((log_trace_current & TRACE_SMTP) != 0) {
        /* One log line per reply, as KumoMTA's single-line form. */
        char *line = smtp_client_response_line(r);
        LOG_TRACE(TRACE_SMTP, "smtp_client: %s: <- %s", c->peer, line);
        free(line);
    }
    if (c->n_pending == 0) {
        /* Unsolicited (often a 421 before an idle close): out of sync. */
        if (r->code == 421) {
            smtp_client_fail(c, r);
            return;
        }
        smtp_client_response_fini(r);
        smtp_client_fail_synthetic(c, "%s: unexpected reply from server",
                                   c->peer);
        return;
    }
    e = c->pending[0];
    memmove(&c->pending[0], &c->pending[1],
            (c->n_pending - 1) * sizeof(c->pending[0]));
    c->n_pending--;
    smtp_client_arm(c);
    r->command = e.command;
    if (c->state == SMTP_CLIENT_ST_QUIT || c->released) {
        smtp_client_response_fini(r);
        if (e.kind == SMTP_CLIENT_CMD_QUIT) {
            smtp_client_close_all(c);
        }
        return;
    }
    /* A 421 means the server is closing: whatever was pending fails. */
    if (r->code == 421) {
        smtp_client_fail(c, r);
        return;
    }
    switch (c->state) {
    case SMTP_CLIENT_ST_GREETING:
        smtp_client_greeting_reply(c, e.kind, r);
        break;
    case SMTP_CLIENT_ST_TXN:
        smtp_client_txn_reply(c, &e, r);
        break;
    default:
        smtp_client_response_fini(r);
        break;
    }
}

static void
smtp_client_process(struct smtp_client *c)
{
    while (c->rbuf.len > 0 && !c->released && c->state != SMTP_CLIENT_ST_DEAD &&
           c->state != SMTP_CLIENT_ST_HANDSHAKE) {
        struct smtp_client_response r;
        size_t used = 0;
        int rv = smtp_client_reply_feed(&c->parser, c->rbuf.data, c->rbuf.len,
                                        &used, &r);
        if (rv < 0) {
            smtp_client_fail_synthetic(c, "%s: invalid reply: %s", c->peer,
                                       c->parser.err);
            return;
        }
        buf_consume(&c->rbuf, used);
        if (rv == 0) {
            return;
        }
        smtp_client_on_reply(c, &r);
    }
}

static void
smtp_client_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct smtp_client *c = h->data;

    (void)suggested;
    b->base = c->rdbuf;
    b->len = sizeof(c->rdbuf);
}

static void
smtp_client_on_eof(struct smtp_client *c, int err)
{
    char tmp[64];
    const char *why =
        err == UV_EOF ? "connection closed by peer" : smtp_client_errstr(err);

    if (c->state == SMTP_CLIENT_ST_QUIT || c->released) {
        smtp_client_close_all(c);
    } else if (c->state == SMTP_CLIENT_ST_HANDSHAKE) {
        smtp_client_fail_synthetic(c, "%s: TLS handshake failed: %s", c->peer,
                                   why);
    } else if (c->state == SMTP_CLIENT_ST_READY) {
        LOG_TRACE(TRACE_SMTP, "smtp_client: %s: idle connection: %s", c->peer,
                  why);
        smtp_client_fail_synthetic(c, "%s: %s", c->peer, why);
    } else {
        smtp_client_fail_synthetic(
            c, "%s: %s while waiting for %s", c->peer, why,
            smtp_client_waiting_for(c, tmp, sizeof(tmp)));
    }
}

static void
smtp_client_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    struct smtp_client *c = stream->data;
    int rv;

    if (nread == 0) {
        return;
    }
    if (nread < 0) {
        smtp_client_on_eof(c, (int)nread);
        return;
    }
    if (c->tls == NULL) {
        buf_append(&c->rbuf, b->base, (size_t)nread);
        smtp_client_process(c);
        return;
    }
    tls_conn_feed(c->tls, b->base, (size_t)nread);
    if (c->state == SMTP_CLIENT_ST_HANDSHAKE) {
        smtp_client_tls_step(c);
        if (c->state == SMTP_CLIENT_ST_HANDSHAKE ||
            c->state == SMTP_CLIENT_ST_DEAD) {
            return;
        }
    }
    rv = tls_conn_read(c->tls, &c->rbuf);
    smtp_client_process(c);
    if (rv == KM_ENOENT) {
        smtp_client_on_eof(c, UV_EOF);
    } else if (rv < 0) {
        smtp_client_fail_synthetic(c, "%s: TLS error: %s", c->peer,
                                   tls_conn_error(c->tls));
    }
}

void
smtp_client_on_timer(uv_timer_t *t)
{
    struct smtp_client *c = t->data;
    char tmp[64];

    switch (c->state) {
    case SMTP_CLIENT_ST_CONNECTING:
        smtp_client_fail_synthetic(c,
                                   "failed to connect to %s: timed out after "
                                   "%llu ms",
                                   c->peer,
                                   (unsigned long long)c->p.connect_timeout_ms);
        break;
    case SMTP_CLIENT_ST_HANDSHAKE:
        smtp_client_fail_synthetic(
            c, "%s: TLS handshake failed: timed out after %llu ms", c->peer,
            (unsigned long long)c->p.starttls_timeout_ms);
        break;
    case SMTP_CLIENT_ST_QUIT:
        smtp_client_close_all(c);
        break;
    default:
        smtp_client_fail_synthetic(
            c, "%s: timed out after %llu ms waiting for %s", c->peer,
            (unsigned long long)(c->n_pending > 0 ? c->pending[0].timeout_ms
                                                  : 0),
            smtp_client_waiting_for(c, tmp, sizeof(tmp)));
        break;
    }
}

void
smtp_client_on_defer(uv_timer_t *h)
{
    struct smtp_client *c = h->data;
    int err = c->defer_err;

    c->defer_err = 0;
    if (c->released) {
        return;
    }
    if (err != 0) {
        if (c->state == SMTP_CLIENT_ST_CONNECTING) {
            smtp_client_fail_synthetic(c, "failed to connect to %s: %s",
                                       c->peer, smtp_client_errstr(err));
        } else {
            smtp_client_fail_synthetic(c, "%s: write failed: %s", c->peer,
                                       smtp_client_errstr(err));
        }
        return;
    }
    if (c->txn != NULL && c->txn->early) {
        smtp_client_txn_finish(c);
    }
}

void
smtp_client_on_connect(uv_connect_t *req, int status)
{
    struct smtp_client *c = req->handle->data;
    struct sockaddr_storage local;
    int len = sizeof(local);

    if (status == UV_ECANCELED || c->released) {
        return;
    }
    if (status < 0) {
        smtp_client_fail_synthetic(c, "failed to connect to %s: %s", c->peer,
                                   smtp_client_errstr(status));
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&local, &len) == 0) {
        smtp_client_sockaddr_name((struct sockaddr *)&local, c->source,
                                  sizeof(c->source));
    }
    LOG_TRACE(TRACE_SMTP, "smtp_client: %s: connected from %s (%s)", c->peer,
              c->source, c->mx_name);
    uv_timer_stop(&c->timer);
    smtp_client_enter_state(c, SMTP_CLIENT_ST_GREETING);
    status = uv_read_start((uv_stream_t *)&c->tcp, smtp_client_on_alloc,
                           smtp_client_on_read);
    if (status != 0) {
        smtp_client_fail_synthetic(c, "%s: read: %s", c->peer,
                                   smtp_client_errstr(status));
        return;
    }
    smtp_client_expect(c, SMTP_CLIENT_CMD_BANNER, 0, NULL,
                       c->p.banner_timeout_ms);
}
