/* smtp_server.c - the ESMTP listener and the I/O side of its sessions:
 * accept (with max_connections), per-connection uv_tcp_t, idle timer,
 * read buffering, reply queueing and writing (through tls_conn once
 * STARTTLS has completed), Rejection records for 4xx/5xx replies, and the
 * shutdown / close sequence. The command state machine lives in
 * smtp_server_session.c, the end of DATA in smtp_server_txn.c. A session
 * is freed only from its close callbacks, once no ingest_submit() callback
 * is pending (refs). Loop thread only. */
#include "smtp_server.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "base/log.h"
#include "fd_headroom.h"
#include "logrec.h"
#include "metrics.h"
#include "smtp_server_int.h"
#include "tls.h"

/* Stop reading while this much output waits for a slow client. */
#define SMTP_SERVER_WRITE_HIGH_WATER (1u << 20)

struct smtp_server_write {
    uv_write_t req;
    struct smtp_server_session *s;
    struct buf data;
};

static const char *const smtp_server_state_names[] = {
    "connected", "command", "auth",    "tls-handshake",
    "data",      "ingest",  "closing", "closed",
};

static void smtp_server_session_close_now(struct smtp_server_session *s);

void
smtp_server_enter_state(struct smtp_server_session *s,
                        enum smtp_server_state st)
{
    if (s->state != st) {
        LOG_TRACE(TRACE_SMTP, "smtp_server: %s: state %s -> %s", s->session_id,
                  smtp_server_state_names[s->state],
                  smtp_server_state_names[st]);
        s->state = st;
    }
}

bool
smtp_server_is_shutting_down(const struct smtp_server_session *s)
{
    return s->srv == NULL || s->srv->shutting_down;
}

const struct smtp_server_config *
smtp_server_session_cfg(const struct smtp_server_session *s)
{
    return &s->srv->cfg;
}

/* KumoMTA does not log its 421 4.3.2 replies (shutdown, load shedding,
 * idle): they are not rejections of the peer's mail. */
static void
smtp_server_log_rejection(struct smtp_server_session *s, int code,
                          const char *text, const char *command)
{
    struct logrec_event ev;

    if (code == 421 && strncmp(text, "4.3.2 ", 6) == 0) {
        return;
    }
    memset(&ev, 0, sizeof(ev));
    ev.type = "Rejection";
    ev.code = code;
    ev.content = text;
    ev.command = command;
    ev.sender = s->in_txn ? s->sender : NULL;
    if (s->cur_rcpt != NULL) {
        ev.recipient = s->cur_rcpt;
    } else if (s->n_rcpts > 0) {
        ev.recipient = s->rcpts[s->n_rcpts - 1];
    }
    ev.peer_name = s->ehlo_domain != NULL ? s->ehlo_domain : "";
    ev.peer_addr = s->peer_ip;
    ev.session_id = s->session_id;
    ev.reception_protocol = "ESMTP";
    if (s->tls_active) {
        ev.tls_cipher = tls_conn_cipher(s->tls);
        ev.tls_protocol_version = tls_conn_version(s->tls);
    }
    logrec_set_write(s->d.logs, &ev);
}

void
smtp_server_reply(struct smtp_server_session *s, int code, const char *text,
                  const char *command)
{
    const char *p = text;

    if (s->closing) {
        return;
    }
    if (code >= 400 && code < 600) {
        smtp_server_log_rejection(s, code, text, command);
    }
    /* One reply line per text line: "code-line" then "code line". */
    for (;;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
        if (len > 0 && p[len - 1] == '\r') {
            len--;
        }
        buf_appendf(&s->out, "%03d%c%.*s\r\n", code,
                    nl != NULL && nl[1] != '\0' ? '-' : ' ', (int)len, p);
        LOG_TRACE(TRACE_SMTP, "smtp_server: %s: -> %03d%c%.*s", s->session_id,
                  code, nl != NULL && nl[1] != '\0' ? '-' : ' ', (int)len, p);
        if (nl == NULL || nl[1] == '\0') {
            break;
        }
        p = nl + 1;
    }
}

static void
smtp_server_on_write(uv_write_t *req, int status)
{
    struct smtp_server_write *w = req->data;
    struct smtp_server_session *s = w->s;

    buf_fini(&w->data);
    free(w);
    s->pending_writes--;
    if (status < 0 && status != UV_ECANCELED) {
        LOG_DEBUG("smtp_server: %s: write: %s", s->session_id,
                  uv_strerror(status));
        smtp_server_session_close_now(s);
    }
    if (s->state == SMTP_SERVER_ST_CLOSING && s->pending_writes == 0) {
        smtp_server_session_close_now(s);
        return;
    }
    if (s->write_paused && !s->closing &&
        uv_stream_get_write_queue_size((uv_stream_t *)&s->tcp) <
            SMTP_SERVER_WRITE_HIGH_WATER / 2) {
        s->write_paused = false;
        smtp_server_session_update_io(s);
    }
}

/* Hand raw bytes to libuv. Takes the contents of data (leaves it empty). */
static void
smtp_server_write_raw(struct smtp_server_session *s, struct buf *data)
{
    struct smtp_server_write *w;
    uv_buf_t b;
    int rv;

    if (data->len == 0 || s->closing) {
        buf_reset(data);
        return;
    }
    w = km_calloc(1, sizeof(*w));
    w->s = s;
    w->req.data = w;
    buf_move(&w->data, data);
    b = uv_buf_init(w->data.data, (unsigned)w->data.len);
    rv = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, smtp_server_on_write);
    if (rv != 0) {
        LOG_DEBUG("smtp_server: %s: write: %s", s->session_id, uv_strerror(rv));
        buf_fini(&w->data);
        free(w);
        smtp_server_session_close_now(s);
        return;
    }
    s->pending_writes++;
    if (uv_stream_get_write_queue_size((uv_stream_t *)&s->tcp) >
        SMTP_SERVER_WRITE_HIGH_WATER) {
        s->write_paused = true;
        smtp_server_session_update_io(s);
    }
}

void
smtp_server_flush(struct smtp_server_session *s)
{
    if (s->out.len == 0 || s->closing) {
        return;
    }
    if (s->tls_active) {
        struct buf cipher = BUF_INIT;
        int rv = tls_conn_write(s->tls, s->out.data, s->out.len, &cipher);
        buf_reset(&s->out);
        if (rv != 0) {
            LOG_DEBUG("smtp_server: %s: tls write: %s", s->session_id,
                      tls_conn_error(s->tls));
            buf_fini(&cipher);
            smtp_server_session_close_now(s);
            return;
        }
        smtp_server_write_raw(s, &cipher);
        buf_fini(&cipher);
        return;
    }
    smtp_server_write_raw(s, &s->out);
}

void
smtp_server_session_finish(struct smtp_server_session *s)
{
    if (s->closing) {
        return;
    }
    smtp_server_flush(s);
    if (s->closing) {
        return;
    }
    if (s->tls_active) {
        struct buf cipher = BUF_INIT;
        tls_conn_shutdown(s->tls, &cipher);
        smtp_server_write_raw(s, &cipher);
        buf_fini(&cipher);
        if (s->closing) {
            return;
        }
    }
    smtp_server_enter_state(s, SMTP_SERVER_ST_CLOSING);
    smtp_server_session_update_io(s);
    if (s->pending_writes == 0) {
        smtp_server_session_close_now(s);
    }
}

static void smtp_server_on_timer(uv_timer_t *t);

/* How long the DATA phase may still last, in ms, under data_min_rate:
 * client_timeout plus the bytes received so far at the minimum rate,
 * counted from the 354. UINT64_MAX outside DATA or without a floor. */
static uint64_t
smtp_server_data_left_ms(const struct smtp_server_session *s)
{
    const struct smtp_server_config *cfg = &s->srv->cfg;
    uint64_t allowed, spent;

    if (s->state != SMTP_SERVER_ST_DATA || cfg->data_min_rate == 0) {
        return UINT64_MAX;
    }
    allowed =
        cfg->client_timeout_ms + s->data_bytes * 1000 / cfg->data_min_rate;
    spent = uv_now(s->tcp.loop) - s->data_started_ms;
    return allowed > spent ? allowed - spent : 0;
}

/* The idle timer, also the DATA deadline: a client that sends a byte
 * now and then (slowloris) is cut once it falls below data_min_rate. */
static void
smtp_server_arm_timer(struct smtp_server_session *s)
{
    uint64_t ms = s->srv->cfg.client_timeout_ms;
    uint64_t left = smtp_server_data_left_ms(s);

    uv_timer_start(&s->timer, smtp_server_on_timer, left < ms ? left : ms, 0);
}

static void
smtp_server_on_timer(uv_timer_t *t)
{
    struct smtp_server_session *s = t->data;
    char text[300];

    if (s->closing || s->state == SMTP_SERVER_ST_CLOSING) {
        return;
    }
    snprintf(text, sizeof(text), "4.3.2 %s idle too long",
             s->srv != NULL ? s->srv->cfg.hostname : km_hostname());
    if (s->srv != NULL && smtp_server_data_left_ms(s) == 0) {
        LOG_DEBUG("smtp_server: %s: %s: DATA below data_min_rate: %" PRIu64
                  " bytes in %" PRIu64 " ms",
                  s->session_id, s->peer_ip, s->data_bytes,
                  uv_now(s->tcp.loop) - s->data_started_ms);
        snprintf(text, sizeof(text), "4.4.2 %s data transfer too slow",
                 s->srv->cfg.hostname);
    }
    if (s->state == SMTP_SERVER_ST_TLS_HANDSHAKE) {
        smtp_server_session_close_now(s);
        return;
    }
    smtp_server_reply(s, 421, text, NULL);
    smtp_server_session_finish(s);
}

static void
smtp_server_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    if (suggested > 65536) {
        suggested = 65536;
    }
    b->base = km_malloc(suggested);
    b->len = suggested;
}

static void
smtp_server_on_tls_data(struct smtp_server_session *s, const char *p, size_t n)
{
    int rv;

    tls_conn_feed(s->tls, p, n);
    if (s->state == SMTP_SERVER_ST_TLS_HANDSHAKE) {
        struct buf cipher = BUF_INIT;
        rv = tls_conn_handshake(s->tls, &cipher);
        smtp_server_write_raw(s, &cipher);
        buf_fini(&cipher);
        if (rv < 0) {
            LOG_DEBUG("smtp_server: %s: TLS handshake failed: %s",
                      s->session_id, tls_conn_error(s->tls));
            smtp_server_session_close_now(s);
            return;
        }
        if (rv == 0 || s->closing) {
            return;
        }
        s->tls_active = true;
        json_object_set_new(s->conn_meta, "tls_cipher",
                            json_string(tls_conn_cipher(s->tls)));
        json_object_set_new(s->conn_meta, "tls_protocol_version",
                            json_string(tls_conn_version(s->tls)));
        LOG_TRACE(TRACE_SMTP, "smtp_server: %s: TLS %s %s", s->session_id,
                  tls_conn_version(s->tls), tls_conn_cipher(s->tls));
        /* RFC 3207 4.2: forget everything learned before TLS. */
        smtp_server_session_reset_txn(s);
        free(s->ehlo_domain);
        s->ehlo_domain = NULL;
        json_object_del(s->conn_meta, "ehlo_domain");
        smtp_server_enter_state(s, SMTP_SERVER_ST_COMMAND);
        smtp_server_session_update_io(s);
    }
    rv = tls_conn_read(s->tls, &s->rbuf);
    if (rv == KM_ENOENT) {
        smtp_server_session_close_now(s);
    } else if (rv != 0) {
        LOG_DEBUG("smtp_server: %s: TLS read: %s", s->session_id,
                  tls_conn_error(s->tls));
        smtp_server_session_close_now(s);
    }
}

static void
smtp_server_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    struct smtp_server_session *s = stream->data;

    if (nread < 0) {
        free(b->base);
        if (nread != UV_EOF) {
            LOG_DEBUG("smtp_server: %s: read: %s", s->session_id,
                      uv_strerror((int)nread));
        }
        smtp_server_session_close_now(s);
        return;
    }
    if (nread == 0 || s->closing) {
        free(b->base);
        return;
    }
    if (s->state == SMTP_SERVER_ST_DATA) {
        s->data_bytes += (uint64_t)nread;
    }
    if (s->tls != NULL) {
        smtp_server_on_tls_data(s, b->base, (size_t)nread);
    } else {
        buf_append(&s->rbuf, b->base, (size_t)nread);
    }
    free(b->base);
    if (s->closing) {
        return;
    }
    if (s->srv != NULL && s->srv->cfg.client_timeout_ms > 0 &&
        s->state != SMTP_SERVER_ST_INGEST) {
        smtp_server_arm_timer(s);
    }
    smtp_server_session_process(s);
    smtp_server_flush(s);
}

void
smtp_server_session_update_io(struct smtp_server_session *s)
{
    bool want =
        !s->closing && !s->write_paused &&
        (s->state == SMTP_SERVER_ST_COMMAND ||
         s->state == SMTP_SERVER_ST_AUTH || s->state == SMTP_SERVER_ST_DATA ||
         s->state == SMTP_SERVER_ST_TLS_HANDSHAKE);

    if (s->closing) {
        return;
    }
    if (want && !s->reading) {
        if (uv_read_start((uv_stream_t *)&s->tcp, smtp_server_on_alloc,
                          smtp_server_on_read) == 0) {
            s->reading = true;
        }
    } else if (!want && s->reading) {
        uv_read_stop((uv_stream_t *)&s->tcp);
        s->reading = false;
    }
    /* The idle timer runs while we wait for the client. */
    if (want && s->srv != NULL && s->srv->cfg.client_timeout_ms > 0) {
        if (!uv_is_active((uv_handle_t *)&s->timer)) {
            uv_timer_start(&s->timer, smtp_server_on_timer,
                           s->srv->cfg.client_timeout_ms, 0);
        }
    } else if (s->state == SMTP_SERVER_ST_INGEST) {
        uv_timer_stop(&s->timer);
    }
}

int
smtp_server_session_start_tls(struct smtp_server_session *s)
{
    int rv;

    if (s->srv == NULL || s->srv->tls == NULL) {
        return KM_EINVAL;
    }
    /* The 220 goes out in clear text before the handshake starts. */
    smtp_server_flush(s);
    rv = tls_conn_new(s->srv->tls, NULL, &s->tls);
    if (rv != 0) {
        return rv;
    }
    /* RFC 3207 5: anything pipelined after STARTTLS is discarded. */
    buf_reset(&s->rbuf);
    smtp_server_enter_state(s, SMTP_SERVER_ST_TLS_HANDSHAKE);
    smtp_server_session_update_io(s);
    return 0;
}

/* ---- Session lifetime ---- */

static void
smtp_server_detach(struct smtp_server_session *s)
{
    struct smtp_server *srv = s->srv;

    if (srv == NULL) {
        return;
    }
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        srv->sessions = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    srv->n_sessions--;
    if (s->counted) {
        srv->n_counted--;
    }
    s->srv = NULL;
}

static void smtp_server_maybe_closed(struct smtp_server *srv);

static void
smtp_server_session_free(struct smtp_server_session *s)
{
    smtp_server_session_fini_state(s);
    tls_conn_free(s->tls);
    buf_fini(&s->rbuf);
    buf_fini(&s->out);
    json_decref(s->conn_meta);
    free(s);
}

void
smtp_server_session_unref(struct smtp_server_session *s)
{
    KM_ASSERT(s->refs > 0);
    if (--s->refs == 0) {
        smtp_server_session_free(s);
    }
}

static void
smtp_server_on_session_handle_closed(uv_handle_t *h)
{
    struct smtp_server_session *s = h->data;

    if (--s->open_handles > 0) {
        return;
    }
    {
        struct smtp_server *srv = s->srv;
        smtp_server_detach(s);
        if (srv != NULL) {
            srv->n_handles_open--;
        }
        smtp_server_session_unref(s);
        if (srv != NULL) {
            smtp_server_maybe_closed(srv);
        }
    }
}

static void
smtp_server_session_close_now(struct smtp_server_session *s)
{
    if (s->closing) {
        return;
    }
    s->closing = true;
    smtp_server_enter_state(s, SMTP_SERVER_ST_CLOSED);
    LOG_TRACE(TRACE_SMTP, "smtp_server: %s: closed", s->session_id);
    if (s->reading) {
        uv_read_stop((uv_stream_t *)&s->tcp);
        s->reading = false;
    }
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->tcp, smtp_server_on_session_handle_closed);
    uv_close((uv_handle_t *)&s->timer, smtp_server_on_session_handle_closed);
}

static void
smtp_server_sockaddr_str(const struct sockaddr_storage *ss, char *ip,
                         size_t iplen, char *hostport, size_t hplen)
{
    int port = 0;

    ip[0] = '\0';
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        uv_ip4_name(sin, ip, iplen);
        port = ntohs(sin->sin_port);
        snprintf(hostport, hplen, "%s:%d", ip, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(sin6, ip, iplen);
        port = ntohs(sin6->sin6_port);
        snprintf(hostport, hplen, "[%s]:%d", ip, port);
    } else {
        snprintf(hostport, hplen, "unknown");
    }
}

/* A random (version 4) UUID for session_id. */
static void
smtp_server_new_uuid(char out[37])
{
    uint8_t b[16];

    if (uv_random(NULL, NULL, b, sizeof(b), 0, NULL) != 0) {
        uint64_t t = (uint64_t)km_now_wall_us() ^ (uintptr_t)out;
        for (size_t i = 0; i < sizeof(b); i++) {
            t = t * 6364136223846793005ULL + 1442695040888963407ULL;
            b[i] = (uint8_t)(t >> 56);
        }
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
             b[11], b[12], b[13], b[14], b[15]);
}

static void
smtp_server_session_meta(struct smtp_server_session *s)
{
    struct smtp_server *srv = s->srv;

    s->conn_meta =
        srv->cfg.meta != NULL ? json_deep_copy(srv->cfg.meta) : json_object();
    json_object_set_new(s->conn_meta, "reception_protocol",
                        json_string("ESMTP"));
    json_object_set_new(s->conn_meta, "received_via",
                        json_string(s->local_hostport));
    json_object_set_new(s->conn_meta, "received_from",
                        json_string(s->peer_hostport));
    json_object_set_new(s->conn_meta, "hostname",
                        json_string(srv->cfg.hostname));
}

#define SMTP_SERVER_FD_PAUSE_MS 100
/* An episode ends with the first connection taken after this long
 * without a refusal (descriptor numbers alone have holes, so they
 * cannot say it is over). */
#define SMTP_SERVER_FD_QUIET_MS 2000

/* A connection refused for want of descriptors: counted, and said once
 * per episode. */
static void
smtp_server_fd_refused(struct smtp_server *srv, const char *why)
{
    metrics_inc(srv->d.metrics, "kumod_connections_refused_fd_total",
                "connections refused because file descriptors ran low",
                "service", "esmtp_listener", 1);
    srv->fd_refused_ms = uv_now(srv->d.loop);
    if (!srv->fd_low) {
        srv->fd_low = true;
        LOG_WARN("smtp_server: %s: %s: refusing new connections until "
                 "file descriptors are free",
                 srv->listen_addr, why);
    }
}

static void smtp_server_on_connection(uv_stream_t *listener, int status);

static void
smtp_server_on_fd_timer(uv_timer_t *t)
{
    struct smtp_server *srv = t->data;

    srv->accept_paused = false;
    /* libuv holds the connection we did not take, and polls again once
     * it is accepted. */
    if (srv->listening && srv->listener.accepted_fd != -1) {
        smtp_server_on_connection((uv_stream_t *)&srv->listener, 0);
    }
}

static void
smtp_server_on_connection(uv_stream_t *listener, int status)
{
    struct smtp_server *srv = listener->data;
    struct smtp_server_session *s;
    struct sockaddr_storage local;
    uv_os_fd_t fd = -1;
    int len;

    if (status == UV_EMFILE || status == UV_ENFILE) {
        /* libuv has already closed the connections it could not give
         * us (its reserve descriptor trick). */
        smtp_server_fd_refused(srv, uv_strerror(status));
        return;
    }
    if (status < 0) {
        LOG_WARN("smtp_server: %s: accept: %s", srv->listen_addr,
                 uv_strerror(status));
        return;
    }
    if (srv->accept_paused) {
        return;
    }
    s = km_calloc(1, sizeof(*s));
    s->srv = srv;
    s->d = srv->d;
    s->refs = 1;
    s->state = SMTP_SERVER_ST_CONNECTED;
    buf_init(&s->rbuf);
    buf_init(&s->out);
    uv_tcp_init(srv->d.loop, &s->tcp);
    s->tcp.data = s;
    uv_timer_init(srv->d.loop, &s->timer);
    s->timer.data = s;
    s->open_handles = 2;
    smtp_server_new_uuid(s->session_id);
    s->next = srv->sessions;
    if (srv->sessions != NULL) {
        srv->sessions->prev = s;
    }
    srv->sessions = s;
    srv->n_sessions++;
    srv->n_handles_open++;
    if (uv_accept(listener, (uv_stream_t *)&s->tcp) != 0) {
        smtp_server_session_close_now(s);
        return;
    }
    uv_tcp_nodelay(&s->tcp, 1);
    uv_fileno((uv_handle_t *)&s->tcp, &fd);
    len = sizeof(s->peer_sa);
    uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&s->peer_sa, &len);
    len = sizeof(local);
    memset(&local, 0, sizeof(local));
    uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&local, &len);
    smtp_server_sockaddr_str(&s->peer_sa, s->peer_ip, sizeof(s->peer_ip),
                             s->peer_hostport, sizeof(s->peer_hostport));
    smtp_server_sockaddr_str(&local, s->local_ip, sizeof(s->local_ip),
                             s->local_hostport, sizeof(s->local_hostport));
    smtp_server_session_meta(s);
    LOG_TRACE(TRACE_SMTP, "smtp_server: %s: connection from %s to %s",
              s->session_id, s->peer_hostport, s->local_hostport);

    if (fd_headroom_is_low(fd)) {
        /* Keep the last descriptors for the spool, Raft and deliveries:
         * refuse this client as if the listener were full. */
        smtp_server_fd_refused(srv, "few file descriptors left");
        srv->accept_paused = true;
        uv_timer_start(&srv->fd_timer, smtp_server_on_fd_timer,
                       SMTP_SERVER_FD_PAUSE_MS, 0);
    } else if (srv->fd_low && uv_now(srv->d.loop) - srv->fd_refused_ms >=
                                  SMTP_SERVER_FD_QUIET_MS) {
        srv->fd_low = false;
        LOG_INFO("smtp_server: %s: file descriptors free again: accepting",
                 srv->listen_addr);
    }
    if (srv->n_counted >= srv->cfg.max_connections || srv->accept_paused) {
        char text[300];
        snprintf(text, sizeof(text),
                 "4.3.2 %s too many concurrent sessions. Try later",
                 srv->cfg.hostname);
        smtp_server_reply(s, 421, text, NULL);
        smtp_server_session_finish(s);
        return;
    }
    s->counted = true;
    srv->n_counted++;
    smtp_server_session_greet(s);
    smtp_server_flush(s);
}

/* ---- Listener ---- */

static void
smtp_server_on_failed_closed(uv_handle_t *h)
{
    free(h->data);
}

int
smtp_server_open(const struct smtp_server_deps *d, json_t *params,
                 struct smtp_server **out, char *err, size_t errlen)
{
    struct smtp_server *srv = km_calloc(1, sizeof(*srv));
    struct sockaddr_storage ss;
    struct sockaddr_storage bound;
    char ip[INET6_ADDRSTRLEN];
    int len;
    int rv;

    srv->d = *d;
    rv = smtp_server_config_parse(params, &srv->cfg, err, errlen);
    if (rv != 0) {
        free(srv);
        return rv;
    }
    rv = tls_ctx_new_server(srv->cfg.tls_certificate, srv->cfg.tls_private_key,
                            srv->cfg.hostname, &srv->tls, err, errlen);
    if (rv != 0) {
        goto err_after_config;
    }
    KM_ASSERT(smtp_server_parse_listen(srv->cfg.listen, &ss) == 0);
    uv_tcp_init(d->loop, &srv->listener);
    srv->listener.data = srv;
    rv = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&srv->listener, 1024,
                       smtp_server_on_connection);
    }
    if (rv != 0) {
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen, "failed to bind to %s: %s", srv->cfg.listen,
                     uv_strerror(rv));
        }
        goto err_after_handle;
    }
    srv->listening = true;
    uv_timer_init(d->loop, &srv->fd_timer);
    srv->fd_timer.data = srv;
    srv->n_handles_open = 2;
    len = sizeof(bound);
    memset(&bound, 0, sizeof(bound));
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len);
    smtp_server_sockaddr_str(&bound, ip, sizeof(ip), srv->listen_addr,
                             sizeof(srv->listen_addr));
    LOG_INFO("smtp_server: listening on %s", srv->listen_addr);
    *out = srv;
    return 0;

err_after_handle:
    /* The handle never got a pending close; closing it needs the loop,
     * so hand its memory to the close callback. */
    srv->closing = true;
    srv->n_handles_open = 1;
    tls_ctx_free(srv->tls);
    srv->tls = NULL;
    smtp_server_config_fini(&srv->cfg);
    uv_close((uv_handle_t *)&srv->listener, smtp_server_on_failed_closed);
    return rv;

err_after_config:
    smtp_server_config_fini(&srv->cfg);
    free(srv);
    return rv;
}

size_t
smtp_server_session_count(const struct smtp_server *srv)
{
    return srv->n_sessions;
}

const char *
smtp_server_listen_addr(const struct smtp_server *srv)
{
    return srv->listen_addr;
}

static void
smtp_server_on_listener_closed(uv_handle_t *h)
{
    struct smtp_server *srv = h->data;

    srv->n_handles_open--;
    smtp_server_maybe_closed(srv);
}

void
smtp_server_set_ready(struct smtp_server *srv, bool ready)
{
    srv->ready = ready;
}

void
smtp_server_set_disk_low(struct smtp_server *srv, bool low)
{
    srv->disk_low = low;
}

void
smtp_server_shutdown(struct smtp_server *srv)
{
    srv->ready = false;
    if (srv->shutting_down) {
        return;
    }
    srv->shutting_down = true;
    LOG_INFO("smtp_server: %s: stopping", srv->listen_addr);
    if (srv->listening) {
        srv->listening = false;
        uv_close((uv_handle_t *)&srv->listener, smtp_server_on_listener_closed);
        uv_close((uv_handle_t *)&srv->fd_timer, smtp_server_on_listener_closed);
    }
}

static void
smtp_server_maybe_closed(struct smtp_server *srv)
{
    smtp_server_close_cb cb;
    void *arg;

    if (!srv->closing || srv->n_handles_open > 0) {
        return;
    }
    cb = srv->close_cb;
    arg = srv->close_arg;
    tls_ctx_free(srv->tls);
    smtp_server_config_fini(&srv->cfg);
    free(srv);
    if (cb != NULL) {
        cb(arg);
    }
}

void
smtp_server_close(struct smtp_server *srv, smtp_server_close_cb cb, void *arg)
{
    struct smtp_server_session *s;
    struct smtp_server_session *next;

    smtp_server_shutdown(srv);
    srv->closing = true;
    srv->close_cb = cb;
    srv->close_arg = arg;
    for (s = srv->sessions; s != NULL; s = next) {
        next = s->next;
        if (s->closing) {
            continue;
        }
        if (s->state == SMTP_SERVER_ST_COMMAND ||
            s->state == SMTP_SERVER_ST_AUTH) {
            char text[300];
            snprintf(text, sizeof(text), "4.3.2 %s shutting down",
                     srv->cfg.hostname);
            smtp_server_reply(s, 421, text, NULL);
            smtp_server_flush(s);
        }
        /* Close now: a pending ingest keeps the session memory (refs)
         * but it no longer refers to srv once detached. */
        smtp_server_session_close_now(s);
    }
    smtp_server_maybe_closed(srv);
}
