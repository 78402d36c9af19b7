/* smtp_client.c - one outbound ESMTP connection (see smtp_client.h): a
 * uv_tcp_t, a phase timer, a tls_conn once STARTTLS succeeded, and a queue
 * of commands awaiting replies (more than one when pipelining, RFC 2920).
 * Each reply is matched to the head of that queue and handled by the
 * connection phase (greeting) or the transaction. What a reply means for a
 * message is the dispatcher's business; this file only reports it. Never
 * logs AUTH data or message bodies. Loop thread only. */
#include "smtp_client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/km.h"
#include "base/log.h"
#include "smtp_client_int.h"
#include "tls.h"

#define SMTP_CLIENT_INTERNAL "KumoMTA internal: "

enum smtp_client_state {
    SMTP_CLIENT_ST_CONNECTING,
    SMTP_CLIENT_ST_GREETING, /* banner, EHLO, STARTTLS, AUTH */
    SMTP_CLIENT_ST_HANDSHAKE,
    SMTP_CLIENT_ST_READY,
    SMTP_CLIENT_ST_TXN,
    SMTP_CLIENT_ST_QUIT,
    SMTP_CLIENT_ST_DEAD,
};

static const char *const smtp_client_state_names[] = {
    "connecting", "greeting", "handshake", "ready", "txn", "quit", "dead",
};

enum smtp_client_cmd {
    SMTP_CLIENT_CMD_BANNER,
    SMTP_CLIENT_CMD_EHLO,
    SMTP_CLIENT_CMD_HELO,
    SMTP_CLIENT_CMD_STARTTLS,
    SMTP_CLIENT_CMD_AUTH,
    SMTP_CLIENT_CMD_RSET,
    SMTP_CLIENT_CMD_MAIL,
    SMTP_CLIENT_CMD_RCPT,
    SMTP_CLIENT_CMD_DATA,
    SMTP_CLIENT_CMD_DOT,
    SMTP_CLIENT_CMD_QUIT,
};

static const char *const smtp_client_cmd_names[] = {
    "the banner", "EHLO",    "HELO", "STARTTLS",      "AUTH PLAIN", "RSET",
    "MAIL FROM",  "RCPT TO", "DATA", "the final dot", "QUIT",
};

/* A command whose reply has not arrived yet. */
struct smtp_client_pending {
    enum smtp_client_cmd kind;
    size_t rcpt;   /* index for RCPT */
    char *command; /* as sent, with CRLF; NULL for the banner */
    uint64_t timeout_ms;
};

/* One uv_write in flight with its own copy of the bytes. */
struct smtp_client_write {
    uv_write_t req;
    struct smtp_client *c;
    struct buf data;
};

struct smtp_client_txn {
    smtp_client_send_cb cb;
    void *arg;
    size_t n_rcpts;
    struct smtp_client_response *rcpt; /* code 0: not final yet */
    struct smtp_client_response txn;
    struct smtp_client_response fail; /* RSET/MAIL failure, code 0: none */
    struct smtp_client_response data_fail;
    struct smtp_client_response last_rcpt_fail;
    struct smtp_client_pending *cmds; /* to send: [RSET] MAIL RCPT.. DATA */
    size_t n_cmds;
    size_t next_cmd;
    size_t n_ok;     /* RCPTs accepted */
    struct buf body; /* dot-stuffed, ending with ".\r\n" */
    bool pipelined;
    bool got_354;
    bool dot_sent;
    bool dot_discard; /* the dot ends an empty DATA (RFC 2920 3.1) */
    bool done;        /* the dot (or early end) has been handled */
    bool early;       /* failed before sending: deliver on the defer timer */
};

struct smtp_client {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_timer_t timer; /* the phase timeout */
    uv_timer_t defer; /* callbacks that must not run inside an API call */
    uv_connect_t connect_req;
    enum smtp_client_state state;

    /* Parameters (strings owned). */
    struct smtp_client_params p;
    char *ehlo_domain;
    char *tls_name;
    char *auth_user;
    char *auth_pass;
    char *mx_name;
    char peer[64];
    char source[64];

    struct smtp_client_caps caps;
    bool ehlo_done_tls; /* EHLO after STARTTLS sent */
    struct tls_conn *tls;
    bool tls_active;
    char rdbuf[16384];
    struct buf rbuf; /* plaintext not yet parsed */
    struct smtp_client_reply parser;

    struct smtp_client_pending *pending;
    size_t n_pending;
    size_t cap_pending;
    struct smtp_client_pending current; /* the head being timed */

    smtp_client_ready_cb ready_cb;
    void *ready_arg;
    int defer_err; /* a write or connect error to report from `defer` */
    struct smtp_client_txn *txn;
    bool need_rset; /* the last transaction did not end cleanly */
    bool sent_one;  /* a transaction has run on this connection */

    int open_handles;
    bool released; /* quit/abort called: free once the handles closed */
    smtp_client_close_cb close_cb;
    void *close_arg;
};

static void smtp_client_fail(struct smtp_client *c,
                             struct smtp_client_response *r);
static void smtp_client_txn_advance(struct smtp_client *c);

/* ---- Small helpers ---- */

static void
smtp_client_enter_state(struct smtp_client *c, enum smtp_client_state st)
{
    LOG_TRACE(TRACE_SMTP, "smtp_client: %s: state %s -> %s", c->peer,
              smtp_client_state_names[c->state], smtp_client_state_names[st]);
    c->state = st;
}

static void
smtp_client_set_resp(struct smtp_client_response *r, int code, int cls,
                     int subject, int detail, char *content)
{
    memset(r, 0, sizeof(*r));
    r->code = code;
    r->enh_class = cls;
    r->enh_subject = subject;
    r->enh_detail = detail;
    r->content = content;
}

static void
smtp_client_sockaddr_name(const struct sockaddr *sa, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(s6, ip, sizeof(ip));
        snprintf(out, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        uv_ip4_name(s4, ip, sizeof(ip));
        snprintf(out, len, "%s:%u", ip, ntohs(s4->sin_port));
    }
}

static bool
smtp_client_is_ascii(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s >= 0x80) {
            return false;
        }
    }
    return true;
}

static void
smtp_client_b64(const unsigned char *p, size_t n, struct buf *out)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        size_t left = n - i;
        if (left > 1) {
            v |= (unsigned)p[i + 1] << 8;
        }
        if (left > 2) {
            v |= p[i + 2];
        }
        buf_append_char(out, tab[(v >> 18) & 63]);
        buf_append_char(out, tab[(v >> 12) & 63]);
        buf_append_char(out, left > 1 ? tab[(v >> 6) & 63] : '=');
        buf_append_char(out, left > 2 ? tab[v & 63] : '=');
    }
}

/* ---- Handles and closing ---- */

static void
smtp_client_pending_clear(struct smtp_client *c)
{
    for (size_t i = 0; i < c->n_pending; i++) {
        free(c->pending[i].command);
    }
    c->n_pending = 0;
    free(c->current.command);
    memset(&c->current, 0, sizeof(c->current));
}

static void
smtp_client_txn_free(struct smtp_client_txn *t)
{
    if (t == NULL) {
        return;
    }
    for (size_t i = 0; i < t->n_rcpts; i++) {
        smtp_client_response_fini(&t->rcpt[i]);
    }
    free(t->rcpt);
    for (size_t i = 0; i < t->n_cmds; i++) {
        free(t->cmds[i].command);
    }
    free(t->cmds);
    smtp_client_response_fini(&t->txn);
    smtp_client_response_fini(&t->fail);
    smtp_client_response_fini(&t->data_fail);
    smtp_client_response_fini(&t->last_rcpt_fail);
    buf_fini(&t->body);
    free(t);
}

static void
smtp_client_free(struct smtp_client *c)
{
    smtp_client_close_cb cb = c->close_cb;
    void *arg = c->close_arg;

    smtp_client_pending_clear(c);
    free(c->pending);
    smtp_client_txn_free(c->txn);
    tls_conn_free(c->tls);
    smtp_client_reply_fini(&c->parser);
    buf_fini(&c->rbuf);
    free(c->ehlo_domain);
    free(c->tls_name);
    free(c->auth_user);
    if (c->auth_pass != NULL) {
        explicit_bzero(c->auth_pass, strlen(c->auth_pass));
    }
    free(c->auth_pass);
    free(c->mx_name);
    free(c);
    if (cb != NULL) {
        cb(arg);
    }
}

static void
smtp_client_on_handle_closed(uv_handle_t *h)
{
    struct smtp_client *c = h->data;

    c->open_handles--;
    if (c->open_handles == 0 && c->released) {
        smtp_client_free(c);
    }
}

static void
smtp_client_close_one(uv_handle_t *h)
{
    if (!uv_is_closing(h)) {
        uv_close(h, smtp_client_on_handle_closed);
    }
}

/* The connection is over: close the socket now (pending writes are
 * cancelled); the timers stay until the caller releases c. */
static void
smtp_client_close_socket(struct smtp_client *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        smtp_client_close_one((uv_handle_t *)&c->tcp);
    }
    uv_timer_stop(&c->timer);
}

static void
smtp_client_close_all(struct smtp_client *c)
{
    smtp_client_close_socket(c);
    smtp_client_close_one((uv_handle_t *)&c->timer);
    smtp_client_close_one((uv_handle_t *)&c->defer);
}

/* errno text as KumoMTA shows it ("Connection refused"); libuv's own. */
static const char *
smtp_client_errstr(int err)
{
    if (err < 0 && err > -4000) {
        return strerror(-err);
    }
    return uv_strerror(err);
}

/* ---- Writing ---- */

static void smtp_client_on_defer(uv_timer_t *t);

static void
smtp_client_on_write(uv_write_t *req, int status)
{
    struct smtp_client_write *w = (struct smtp_client_write *)req;
    struct smtp_client *c = w->c;

    buf_fini(&w->data);
    free(w);
    if (status < 0 && status != UV_ECANCELED &&
        !uv_is_closing((uv_handle_t *)&c->tcp) && !c->released) {
        struct smtp_client_response r;
        smtp_client_set_resp(&r, 0, 0, 0, 0,
                             km_asprintf(SMTP_CLIENT_INTERNAL
                                         "%s: write failed: %s",
                                         c->peer, smtp_client_errstr(status)));
        smtp_client_fail(c, &r);
    }
}

/* Queue bytes for the peer, through TLS when `encrypt` and TLS is active.
 * A failure is reported later from the defer timer (never inside the
 * caller, which may be an API call). */
static void
smtp_client_write(struct smtp_client *c, const void *p, size_t n, bool encrypt)
{
    struct smtp_client_write *w;
    uv_buf_t b;
    int rv = 0;

    if (uv_is_closing((uv_handle_t *)&c->tcp)) {
        return;
    }
    w = km_calloc(1, sizeof(*w));
    w->c = c;
    buf_init(&w->data);
    if (encrypt && c->tls_active) {
        rv = tls_conn_write(c->tls, p, n, &w->data);
    } else {
        buf_append(&w->data, p, n);
    }
    if (rv == 0 && w->data.len > 0) {
        b = uv_buf_init(w->data.data, (unsigned)w->data.len);
        rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1,
                      smtp_client_on_write);
        if (rv == 0) {
            return;
        }
    }
    buf_fini(&w->data);
    free(w);
    if (rv != 0 && c->defer_err == 0) {
        c->defer_err = rv;
        uv_timer_start(&c->defer, smtp_client_on_defer, 0, 0);
    }
}

/* ---- Commands and their replies ---- */

static void smtp_client_on_timer(uv_timer_t *t);

/* (Re)start the phase timer for the oldest command awaiting a reply. */
static void
smtp_client_arm(struct smtp_client *c)
{
    if (c->n_pending == 0) {
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, smtp_client_on_timer, c->pending[0].timeout_ms,
                   0);
}

/* Record that a reply to `kind` is expected. Takes ownership of command. */
static void
smtp_client_expect(struct smtp_client *c, enum smtp_client_cmd kind,
                   size_t rcpt, char *command, uint64_t timeout_ms)
{
    struct smtp_client_pending *e;

    if (c->n_pending == c->cap_pending) {
        c->cap_pending = c->cap_pending == 0 ? 8 : c->cap_pending * 2;
        c->pending =
            km_realloc(c->pending, c->cap_pending * sizeof(*c->pending));
    }
    e = &c->pending[c->n_pending++];
    e->kind = kind;
    e->rcpt = rcpt;
    e->command = command;
    e->timeout_ms = timeout_ms;
    if (c->n_pending == 1) {
        smtp_client_arm(c);
    }
}

static void
smtp_client_trace_cmd(const struct smtp_client *c, enum smtp_client_cmd kind,
                      const char *line)
{
    if (kind == SMTP_CLIENT_CMD_AUTH) {
        /* Never trace credentials. */
        LOG_TRACE(TRACE_SMTP, "smtp_client: %s: -> AUTH PLAIN <redacted>",
                  c->peer);
        return;
    }
    LOG_TRACE(TRACE_SMTP, "smtp_client: %s: -> %.*s", c->peer,
              (int)strcspn(line, "\r\n"), line);
}

/* Send one command line (with CRLF) and expect its reply. `wire` is what
 * goes out; the recorded command is `line` (they differ only for AUTH). */
static void
smtp_client_command(struct smtp_client *c, enum smtp_client_cmd kind,
                    const char *wire, const char *line, uint64_t timeout_ms)
{
    smtp_client_trace_cmd(c, kind, line);
    smtp_client_write(c, wire, strlen(wire), true);
    smtp_client_expect(c, kind, 0, km_strdup(line), timeout_ms);
}

/* A synthetic failure: code 0 while connecting, else 421 4.4.2 (the
 * connection is gone; KumoMTA uses 421 4.4.2 for its timeouts too). */
static void __attribute__((format(printf, 2, 3)))
smtp_client_fail_synthetic(struct smtp_client *c, const char *fmt, ...)
{
    struct smtp_client_response r;
    struct buf text = BUF_INIT;
    va_list ap;

    buf_append_str(&text, SMTP_CLIENT_INTERNAL);
    va_start(ap, fmt);
    buf_vappendf(&text, fmt, ap);
    va_end(ap);
    if (c->state == SMTP_CLIENT_ST_TXN || c->state == SMTP_CLIENT_ST_READY) {
        smtp_client_set_resp(&r, 421, 4, 4, 2, km_strdup(buf_cstr(&text)));
    } else {
        smtp_client_set_resp(&r, 0, 0, 0, 0, km_strdup(buf_cstr(&text)));
    }
    buf_fini(&text);
    smtp_client_fail(c, &r);
}

static const char *
smtp_client_waiting_for(const struct smtp_client *c, char *tmp, size_t len)
{
    enum smtp_client_cmd kind =
        c->n_pending > 0 ? c->pending[0].kind : SMTP_CLIENT_CMD_BANNER;

    if (kind == SMTP_CLIENT_CMD_BANNER) {
        snprintf(tmp, len, "%s", smtp_client_cmd_names[kind]);
    } else {
        snprintf(tmp, len, "the reply to %s", smtp_client_cmd_names[kind]);
    }
    return tmp;
}

/* ---- Failure ---- */

static void smtp_client_txn_finish(struct smtp_client *c);

/* The connection is dead: report r (ownership taken) to whoever waits. */
static void
smtp_client_fail(struct smtp_client *c, struct smtp_client_response *r)
{
    enum smtp_client_state prev = c->state;
    smtp_client_ready_cb ready = c->ready_cb;

    if (c->released) {
        smtp_client_response_fini(r);
        smtp_client_close_all(c);
        return;
    }
    if (prev == SMTP_CLIENT_ST_DEAD) {
        smtp_client_response_fini(r);
        return;
    }
    LOG_TRACE(TRACE_SMTP, "smtp_client: %s: failed: %d %s", c->peer, r->code,
              r->content);
    smtp_client_close_socket(c);
    smtp_client_pending_clear(c);
    smtp_client_enter_state(c, SMTP_CLIENT_ST_DEAD);
    switch (prev) {
    case SMTP_CLIENT_ST_CONNECTING:
    case SMTP_CLIENT_ST_GREETING:
    case SMTP_CLIENT_ST_HANDSHAKE:
        c->ready_cb = NULL;
        if (ready != NULL) {
            ready(c->ready_arg, c, r);
        }
        break;
    case SMTP_CLIENT_ST_TXN: {
        struct smtp_client_txn *t = c->txn;
        for (size_t i = 0; i < t->n_rcpts; i++) {
            if (t->rcpt[i].code == 0) {
                smtp_client_response_copy(&t->rcpt[i], r);
            }
        }
        if (t->txn.code == 0) {
            smtp_client_response_fini(&t->txn);
            smtp_client_response_copy(&t->txn, r);
        }
        smtp_client_txn_finish(c);
        break;
    }
    default:
        break;
    }
    smtp_client_response_fini(r);
}

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
static void
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

static void
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
static void
smtp_client_txn_send_cmd(struct smtp_client *c, struct smtp_client_pending *e)
{
    smtp_client_trace_cmd(c, e->kind, e->command);
    smtp_client_write(c, e->command, strlen(e->command), true);
    smtp_client_expect(c, e->kind, e->rcpt, e->command, e->timeout_ms);
    e->command = NULL;
}

/* Report the outcome and return to READY (unless the connection died). */
static void
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

static void
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

static void
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

static void
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

/* ---- API ---- */

void
smtp_client_params_init(struct smtp_client_params *p)
{
    memset(p, 0, sizeof(*p));
    p->enable_tls = SMTP_CLIENT_TLS_OPPORTUNISTIC;
    p->enable_pipelining = true;
    p->enable_rset = true;
    p->connect_timeout_ms = 60000;
    p->banner_timeout_ms = 60000;
    p->ehlo_timeout_ms = 300000;
    p->starttls_timeout_ms = 5000;
    p->auth_timeout_ms = 60000;
    p->mail_from_timeout_ms = 300000;
    p->rcpt_to_timeout_ms = 300000;
    p->data_timeout_ms = 300000;
    p->data_dot_timeout_ms = 300000;
    p->rset_timeout_ms = 5000;
}

/* Replace zero timeouts with the defaults. */
static void
smtp_client_fill_timeouts(struct smtp_client_params *p)
{
    struct smtp_client_params d;
    uint64_t *dst[] = {
        &p->connect_timeout_ms,  &p->banner_timeout_ms,
        &p->ehlo_timeout_ms,     &p->starttls_timeout_ms,
        &p->auth_timeout_ms,     &p->mail_from_timeout_ms,
        &p->rcpt_to_timeout_ms,  &p->data_timeout_ms,
        &p->data_dot_timeout_ms, &p->rset_timeout_ms,
    };
    const uint64_t *def[] = {
        &d.connect_timeout_ms,  &d.banner_timeout_ms, &d.ehlo_timeout_ms,
        &d.starttls_timeout_ms, &d.auth_timeout_ms,   &d.mail_from_timeout_ms,
        &d.rcpt_to_timeout_ms,  &d.data_timeout_ms,   &d.data_dot_timeout_ms,
        &d.rset_timeout_ms,
    };

    smtp_client_params_init(&d);
    for (size_t i = 0; i < sizeof(dst) / sizeof(dst[0]); i++) {
        if (*dst[i] == 0) {
            *dst[i] = *def[i];
        }
    }
}

static int
smtp_client_check_params(const struct sockaddr *addr,
                         const struct smtp_client_params *p,
                         struct sockaddr_storage *src, bool *have_src)
{
    bool insecure = p->enable_tls == SMTP_CLIENT_TLS_OPPORTUNISTIC_INSECURE ||
                    p->enable_tls == SMTP_CLIENT_TLS_REQUIRED_INSECURE;

    if (p->ehlo_domain == NULL || p->ehlo_domain[0] == '\0' ||
        (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)) {
        return KM_EINVAL;
    }
    if (p->enable_tls != SMTP_CLIENT_TLS_DISABLED &&
        (insecure ? p->tls_noverify : p->tls_verify) == NULL) {
        return KM_EINVAL;
    }
    *have_src = false;
    if (p->source_address != NULL) {
        if (uv_ip4_addr(p->source_address, 0, (struct sockaddr_in *)src) != 0 &&
            uv_ip6_addr(p->source_address, 0, (struct sockaddr_in6 *)src) !=
                0) {
            return KM_EINVAL;
        }
        *have_src = true;
    }
    return 0;
}

int
smtp_client_connect(uv_loop_t *loop, const struct sockaddr *addr,
                    const char *mx_name, const struct smtp_client_params *p,
                    smtp_client_ready_cb cb, void *arg,
                    struct smtp_client **out)
{
    struct sockaddr_storage src;
    struct smtp_client *c;
    bool have_src;
    int rv;

    rv = smtp_client_check_params(addr, p, &src, &have_src);
    if (rv != 0) {
        return rv;
    }
    c = km_calloc(1, sizeof(*c));
    c->loop = loop;
    c->p = *p;
    smtp_client_fill_timeouts(&c->p);
    c->ehlo_domain = km_strdup(p->ehlo_domain);
    smtp_client_sockaddr_name(addr, c->peer, sizeof(c->peer));
    c->mx_name = km_strdup(mx_name != NULL ? mx_name : c->peer);
    c->tls_name =
        km_strdup(p->tls_hostname != NULL ? p->tls_hostname : c->mx_name);
    if (p->smtp_auth_plain_username != NULL) {
        c->auth_user = km_strdup(p->smtp_auth_plain_username);
        if (p->smtp_auth_plain_password != NULL) {
            c->auth_pass = km_strdup(p->smtp_auth_plain_password);
        }
    }
    c->p.ehlo_domain = NULL;
    c->p.source_address = NULL;
    c->p.tls_hostname = NULL;
    c->p.smtp_auth_plain_username = NULL;
    c->p.smtp_auth_plain_password = NULL;
    buf_init(&c->rbuf);
    smtp_client_reply_init(&c->parser);
    c->ready_cb = cb;
    c->ready_arg = arg;
    c->state = SMTP_CLIENT_ST_CONNECTING;
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->defer);
    c->tcp.data = c;
    c->timer.data = c;
    c->defer.data = c;
    c->open_handles = 3;
    rv = 0;
    if (have_src) {
        rv = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&src, 0);
    }
    if (rv == 0) {
        rv = uv_tcp_connect(&c->connect_req, &c->tcp, addr,
                            smtp_client_on_connect);
    }
    if (rv != 0) {
        /* Reported through cb, never from inside this call. */
        c->defer_err = rv;
        uv_timer_start(&c->defer, smtp_client_on_defer, 0, 0);
    } else {
        uv_timer_start(&c->timer, smtp_client_on_timer, c->p.connect_timeout_ms,
                       0);
    }
    LOG_TRACE(TRACE_SMTP, "smtp_client: %s: connecting (%s)", c->peer,
              c->mx_name);
    *out = c;
    return 0;
}

static bool
smtp_client_has_8bit(const struct buf *data)
{
    for (size_t i = 0; i < data->len; i++) {
        if ((unsigned char)data->data[i] >= 0x80) {
            return true;
        }
    }
    return false;
}

int
smtp_client_send(struct smtp_client *c, const char *sender,
                 const char *const *rcpts, size_t n_rcpts,
                 const struct buf *data, smtp_client_send_cb cb, void *arg)
{
    struct smtp_client_txn *t;
    bool body8, env8;

    if (c->state == SMTP_CLIENT_ST_TXN || n_rcpts == 0) {
        return KM_EINVAL;
    }
    if (!smtp_client_is_usable(c)) {
        return KM_ECLOSING;
    }
    t = km_calloc(1, sizeof(*t));
    t->cb = cb;
    t->arg = arg;
    t->n_rcpts = n_rcpts;
    t->rcpt = km_calloc(n_rcpts, sizeof(*t->rcpt));
    buf_init(&t->body);
    c->txn = t;
    smtp_client_enter_state(c, SMTP_CLIENT_ST_TXN);

    body8 = smtp_client_has_8bit(data);
    env8 = !smtp_client_is_ascii(sender);
    for (size_t i = 0; i < n_rcpts; i++) {
        env8 = env8 || !smtp_client_is_ascii(rcpts[i]);
    }
    if ((body8 && !c->caps.eightbitmime) || (env8 && !c->caps.smtputf8)) {
        /* KumoMTA's texts; RFC 3463 5.6.3 conversion required, RFC 6531
         * 5.6.7 non-ASCII addresses not permitted. */
        if (body8 && !c->caps.eightbitmime) {
            smtp_client_set_resp(
                &t->fail, 554, 5, 6, 3,
                km_strdup(SMTP_CLIENT_INTERNAL
                          "DATA is 8bit, destination does not support "
                          "8BITMIME. Conversion via msg:check_fix_conformance "
                          "during reception is required"));
        } else {
            smtp_client_set_resp(&t->fail, 554, 5, 6, 7,
                                 km_strdup(SMTP_CLIENT_INTERNAL
                                           "envelope is 8bit, destination "
                                           "does not support SMTPUTF8."));
        }
        t->early = true;
        uv_timer_start(&c->defer, smtp_client_on_defer, 0, 0);
        return 0;
    }

    t->cmds = km_calloc(n_rcpts + 3, sizeof(*t->cmds));
    /* KumoMTA: no RSET before the first transaction (Postfix may count it
     * as junk), then RSET before each one when enable_rset. We also RSET
     * when the last transaction was left open. */
    if (c->need_rset || (c->sent_one && c->p.enable_rset)) {
        smtp_client_txn_add(t, SMTP_CLIENT_CMD_RSET, 0, km_strdup("RSET\r\n"),
                            c->p.rset_timeout_ms);
    }
    smtp_client_txn_add(t, SMTP_CLIENT_CMD_MAIL, 0,
                        km_asprintf("MAIL FROM:<%s>%s%s\r\n", sender,
                                    body8 ? " BODY=8BITMIME" : "",
                                    env8 ? " SMTPUTF8" : ""),
                        c->p.mail_from_timeout_ms);
    for (size_t i = 0; i < n_rcpts; i++) {
        smtp_client_txn_add(t, SMTP_CLIENT_CMD_RCPT, i,
                            km_asprintf("RCPT TO:<%s>\r\n", rcpts[i]),
                            c->p.rcpt_to_timeout_ms);
    }
    smtp_client_txn_add(t, SMTP_CLIENT_CMD_DATA, 0, km_strdup("DATA\r\n"),
                        c->p.data_timeout_ms);
    smtp_client_stuff(data->data != NULL ? data->data : "", data->len,
                      &t->body);
    c->sent_one = true;
    c->need_rset = false;
    t->pipelined = c->p.enable_pipelining && c->caps.pipelining;
    if (t->pipelined) {
        /* RFC 2920 3.1: the whole group in one write, replies in order. */
        struct buf all = BUF_INIT;
        for (size_t i = 0; i < t->n_cmds; i++) {
            struct smtp_client_pending *e = &t->cmds[i];
            smtp_client_trace_cmd(c, e->kind, e->command);
            buf_append_str(&all, e->command);
            smtp_client_expect(c, e->kind, e->rcpt, e->command, e->timeout_ms);
            e->command = NULL;
        }
        smtp_client_write(c, all.data, all.len, true);
        buf_fini(&all);
        t->next_cmd = t->n_cmds;
    } else {
        t->next_cmd = 1;
        smtp_client_txn_send_cmd(c, &t->cmds[0]);
    }
    return 0;
}

bool
smtp_client_is_usable(const struct smtp_client *c)
{
    return !c->released && c->state == SMTP_CLIENT_ST_READY &&
           !uv_is_closing((const uv_handle_t *)&c->tcp);
}

void
smtp_client_quit(struct smtp_client *c, smtp_client_close_cb cb, void *arg)
{
    bool usable = smtp_client_is_usable(c);

    c->released = true;
    c->close_cb = cb;
    c->close_arg = arg;
    c->ready_cb = NULL;
    if (c->txn != NULL) {
        c->txn->cb = NULL;
    }
    if (!usable) {
        smtp_client_close_all(c);
        return;
    }
    smtp_client_enter_state(c, SMTP_CLIENT_ST_QUIT);
    smtp_client_command(c, SMTP_CLIENT_CMD_QUIT, "QUIT\r\n", "QUIT\r\n",
                        c->p.rset_timeout_ms);
}

void
smtp_client_abort(struct smtp_client *c, smtp_client_close_cb cb, void *arg)
{
    c->released = true;
    c->close_cb = cb;
    c->close_arg = arg;
    c->ready_cb = NULL;
    if (c->txn != NULL) {
        c->txn->cb = NULL;
    }
    smtp_client_close_all(c);
}

const char *
smtp_client_peer(const struct smtp_client *c)
{
    return c->peer;
}

const char *
smtp_client_source(const struct smtp_client *c)
{
    return c->source;
}

const char *
smtp_client_mx_name(const struct smtp_client *c)
{
    return c->mx_name;
}

bool
smtp_client_tls_active(const struct smtp_client *c)
{
    return c->tls_active;
}

const char *
smtp_client_tls_version(const struct smtp_client *c)
{
    return c->tls_active ? tls_conn_version(c->tls) : NULL;
}

const char *
smtp_client_tls_cipher(const struct smtp_client *c)
{
    return c->tls_active ? tls_conn_cipher(c->tls) : NULL;
}

bool
smtp_client_has_ext(const struct smtp_client *c, const char *name)
{
    size_t n = strlen(name);

    if (km_ascii_ieq(name, n, "PIPELINING")) {
        return c->caps.pipelining;
    }
    if (km_ascii_ieq(name, n, "8BITMIME")) {
        return c->caps.eightbitmime;
    }
    if (km_ascii_ieq(name, n, "SMTPUTF8")) {
        return c->caps.smtputf8;
    }
    if (km_ascii_ieq(name, n, "STARTTLS")) {
        return c->caps.starttls;
    }
    if (km_ascii_ieq(name, n, "ENHANCEDSTATUSCODES")) {
        return c->caps.enhancedstatuscodes;
    }
    if (km_ascii_ieq(name, n, "SIZE")) {
        return c->caps.size;
    }
    if (km_ascii_ieq(name, n, "AUTH")) {
        return c->caps.auth_plain;
    }
    return false;
}

uint64_t
smtp_client_size_limit(const struct smtp_client *c)
{
    return c->caps.size_limit;
}

void
smtp_client_response_copy(struct smtp_client_response *dst,
                          const struct smtp_client_response *src)
{
    *dst = *src;
    dst->content = src->content != NULL ? km_strdup(src->content) : NULL;
    dst->command = src->command != NULL ? km_strdup(src->command) : NULL;
}

void
smtp_client_response_fini(struct smtp_client_response *r)
{
    free(r->content);
    free(r->command);
    memset(r, 0, sizeof(*r));
}

char *
smtp_client_response_line(const struct smtp_client_response *r)
{
    struct buf b = BUF_INIT;
    char *out;

    buf_appendf(&b, "%d ", r->code);
    if (r->enh_class != 0) {
        buf_appendf(&b, "%d.%d.%d ", r->enh_class, r->enh_subject,
                    r->enh_detail);
    }
    for (const char *p = r->content != NULL ? r->content : ""; *p != '\0';
         p++) {
        if (*p == '\r' && p[1] == '\n') {
            continue;
        }
        buf_append_char(&b, *p == '\r' || *p == '\n' ? ' ' : *p);
    }
    out = km_strdup(buf_cstr(&b));
    buf_fini(&b);
    return out;
}
