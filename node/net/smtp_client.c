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

/* ---- Small helpers ---- */

void
smtp_client_enter_state(struct smtp_client *c, enum smtp_client_state st)
{
    LOG_TRACE(TRACE_SMTP, "smtp_client: %s: state %s -> %s", c->peer,
              smtp_client_state_names[c->state], smtp_client_state_names[st]);
    c->state = st;
}

void
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

void
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

void
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

void
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

void
smtp_client_close_all(struct smtp_client *c)
{
    smtp_client_close_socket(c);
    smtp_client_close_one((uv_handle_t *)&c->timer);
    smtp_client_close_one((uv_handle_t *)&c->defer);
}

/* errno text as KumoMTA shows it ("Connection refused"); libuv's own. */
const char *
smtp_client_errstr(int err)
{
    if (err < 0 && err > -4000) {
        return strerror(-err);
    }
    return uv_strerror(err);
}

/* ---- Writing ---- */

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
void
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

/* (Re)start the phase timer for the oldest command awaiting a reply. */
void
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
void
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

void
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
void
smtp_client_command(struct smtp_client *c, enum smtp_client_cmd kind,
                    const char *wire, const char *line, uint64_t timeout_ms)
{
    smtp_client_trace_cmd(c, kind, line);
    smtp_client_write(c, wire, strlen(wire), true);
    smtp_client_expect(c, kind, 0, km_strdup(line), timeout_ms);
}

/* A synthetic failure: code 0 while connecting, else 421 4.4.2 (the
 * connection is gone; KumoMTA uses 421 4.4.2 for its timeouts too). */
void __attribute__((format(printf, 2, 3)))
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

const char *
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

/* The connection is dead: report r (ownership taken) to whoever waits. */
void
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
