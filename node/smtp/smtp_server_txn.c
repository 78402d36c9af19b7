/* smtp_server_txn.c - the end of a DATA transaction: check the decoder's
 * verdict, build one message per recipient (Received: header + the bytes,
 * meta = a copy of the connection metadata), run
 * smtp_server_message_received for each, add the X-KumoRef supplemental
 * trace header, and hand them all, with the listener's relay verdicts, to
 * ingest_submit(), whose callback sends the final reply. Loop thread only. */
#include "smtp_server_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/km.h"
#include "base/km_id.h"
#include "base/log.h"
#include "ingest.h"
#include "logrec.h"
#include "message.h"
#include "policy.h"
#include "tls.h"

/* State carried to the ingest_submit() callback. */
struct smtp_server_ingest {
    struct smtp_server_session *s;
    struct buf ids;
};

/* RFC 5322 date in UTC, as chrono's to_rfc2822(): "Tue, 1 Jul 2003
 * 10:52:37 +0000". */
static void
smtp_server_txn_date(char *out, size_t len)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed",
                                       "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr",
                                         "May", "Jun", "Jul", "Aug",
                                         "Sep", "Oct", "Nov", "Dec"};
    time_t now = (time_t)(km_now_wall_ms() / 1000);
    struct tm tm;

    gmtime_r(&now, &tm);
    snprintf(out, len, "%s, %d %s %d %02d:%02d:%02d +0000",
             days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void
smtp_server_txn_received(struct smtp_server_session *s, const char *id,
                         const char *rcpt, const char *date, struct buf *out)
{
    const char *proto = s->tls_active
                            ? (s->authenticated ? "ESMTPSA" : "ESMTPS")
                            : (s->authenticated ? "ESMTPA" : "ESMTP");

    /* Folded like KumoMTA's, so lines stay short. */
    buf_appendf(out, "Received: from %s (%s)\r\n  by %s (KumoMTA %s)\r\n",
                s->ehlo_domain != NULL ? s->ehlo_domain : "unspecified",
                s->peer_ip, s->srv->cfg.hostname, s->local_ip);
    if (s->tls_active) {
        buf_appendf(out, "  with %s (%s:%s)\r\n  id %s for <%s>;\r\n  %s\r\n",
                    proto, tls_conn_version(s->tls), tls_conn_cipher(s->tls),
                    id, rcpt, date);
    } else {
        buf_appendf(out, "  with %s id %s for <%s>;\r\n  %s\r\n", proto, id,
                    rcpt, date);
    }
}

/* X-KumoRef: base64 of {"_@_":"\_/","recipient":...,<meta>...}, folded
 * at 76 columns, at the very top of the message. */
static void
smtp_server_txn_supplemental(struct smtp_server_session *s, struct message *m)
{
    const struct smtp_server_config *cfg = smtp_server_session_cfg(s);
    json_t *obj = json_object();
    struct buf b64 = BUF_INIT;
    struct buf hdr = BUF_INIT;
    char *json;
    size_t col;

    json_object_set_new(obj, "_@_", json_string("\\_/"));
    json_object_set_new(obj, "recipient", json_string(message_recipient(m)));
    for (size_t i = 0; i < cfg->n_include_meta_names; i++) {
        json_t *v =
            json_object_get(message_meta(m), cfg->include_meta_names[i]);
        if (v != NULL) {
            json_object_set(obj, cfg->include_meta_names[i], v);
        }
    }
    json = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (json == NULL) {
        return;
    }
    smtp_server_b64_encode(json, strlen(json), &b64);
    free(json);
    buf_appendf(&hdr, "%s: ", cfg->trace_header_name);
    col = hdr.len;
    for (size_t i = 0; i < b64.len;) {
        size_t room = col >= 76 ? 0 : 76 - col;
        size_t take;
        if (room == 0) {
            buf_append(&hdr, "\r\n\t", 3);
            col = 1;
            continue;
        }
        take = b64.len - i < room ? b64.len - i : room;
        buf_append(&hdr, b64.data + i, take);
        i += take;
        col += take;
    }
    buf_append(&hdr, "\r\n", 2);
    buf_splice(message_data(m), 0, 0, hdr.data, hdr.len);
    buf_fini(&hdr);
    buf_fini(&b64);
}

/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its code
 * and CRLF. The ids stay whole. */
#define SMTP_SERVER_TXN_OK_LINE 480

/* "250 OK ids=<id> <id>...", one id per recipient; past one line, a
 * multi-line reply whose further lines hold only ids. */
static void
smtp_server_txn_reply_ok(struct smtp_server_session *s, const struct buf *ids)
{
    struct buf text = BUF_INIT;
    const char *p = buf_cstr(ids);
    const char *end = p + ids->len;
    size_t line;

    buf_append_str(&text, "OK ids=");
    line = text.len;
    for (bool first = true; p < end; first = false) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        size_t n = sp != NULL ? (size_t)(sp - p) : (size_t)(end - p);

        if (!first && line + 1 + n > SMTP_SERVER_TXN_OK_LINE) {
            buf_append_char(&text, '\n');
            line = 0;
        } else if (!first) {
            buf_append_char(&text, ' ');
            line++;
        }
        buf_append(&text, p, n);
        line += n;
        p += n + (sp != NULL ? 1 : 0);
    }
    smtp_server_reply(s, 250, buf_cstr(&text), NULL);
    buf_fini(&text);
}

/* Back to reading commands after the final reply of a transaction. */
static void
smtp_server_txn_done(struct smtp_server_session *s)
{
    smtp_server_session_reset_txn(s);
    if (s->closing || s->state == SMTP_SERVER_ST_CLOSING) {
        return;
    }
    smtp_server_enter_state(s, SMTP_SERVER_ST_COMMAND);
    smtp_server_session_update_io(s);
}

static void
smtp_server_txn_on_ingest(void *arg, int status)
{
    struct smtp_server_ingest *ing = arg;
    struct smtp_server_session *s = ing->s;
    char text[600];

    if (s->closing || s->srv == NULL) {
        /* The client went away; the messages' fate is kumod's. */
        goto out;
    }
    if (status == 0) {
        smtp_server_txn_reply_ok(s, &ing->ids);
    } else if (status == KM_ETIMEDOUT) {
        smtp_server_reply(s, 451, SMTP_SERVER_TXT_TIMEOUT_INSERT, "DATA");
    } else if (status == KM_ECLOSING) {
        snprintf(text, sizeof(text), "4.3.2 %s shutting down",
                 s->srv->cfg.hostname);
        smtp_server_reply(s, 421, text, "DATA");
        smtp_server_session_finish(s);
    } else {
        snprintf(text, sizeof(text),
                 "4.3.0 message not accepted, try again later (%s)",
                 km_strerror(status));
        smtp_server_reply(s, 451, text, "DATA");
    }
    LOG_TRACE(TRACE_SMTP, "smtp_server: %s: ingest: %s", s->session_id,
              km_strerror(status));
    smtp_server_txn_done(s);
    /* Commands the client pipelined while we waited. */
    smtp_server_session_process(s);
    smtp_server_flush(s);
out:
    buf_fini(&ing->ids);
    free(ing);
    smtp_server_session_unref(s);
}

static void
smtp_server_txn_unref_all(struct message **msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (msgs[i] != NULL) {
            message_unref(msgs[i]);
        }
    }
    free(msgs);
}

/* Build a message per recipient and run smtp_server_message_received on
 * each; any rejection applies to the whole transaction (KumoMTA). Returns
 * 0, or an error after the reply was sent. */
static int
smtp_server_txn_build(struct smtp_server_session *s, struct message **msgs)
{
    const struct smtp_server_config *cfg = smtp_server_session_cfg(s);
    char date[64];
    char id[KM_ID_HEX_LEN + 1];
    struct policy_arg pa[2];
    struct policy_result res;
    int rv;

    smtp_server_txn_date(date, sizeof(date));
    for (size_t i = 0; i < s->n_rcpts; i++) {
        struct buf *data;

        km_idgen_next(s->d.ids, id);
        rv = message_new(id, s->sender, s->rcpts[i],
                         json_deep_copy(s->conn_meta), &msgs[i]);
        if (rv != 0) {
            LOG_ERROR("smtp_server: %s: message_new: %s", s->session_id,
                      km_strerror(rv));
            smtp_server_reply(s, 451, "4.3.0 technical difficulties", "DATA");
            return rv;
        }
        data = message_data(msgs[i]);
        buf_reserve(data, s->data.body.len + 512);
        if (cfg->received_header) {
            smtp_server_txn_received(s, id, s->rcpts[i], date, data);
        }
        buf_append(data, buf_cstr(&s->data.body), s->data.body.len);
        pa[0].kind = POLICY_ARG_MESSAGE;
        pa[0].u.msg = msgs[i];
        pa[1].kind = POLICY_ARG_CONN_META;
        pa[1].u.json = s->conn_meta;
        rv = smtp_server_session_call(s, "smtp_server_message_received", pa, 2,
                                      &res, "DATA");
        policy_result_fini(&res);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* Decoder verdicts that end the transaction before any message exists. */
static bool
smtp_server_txn_check_data(struct smtp_server_session *s)
{
    switch (smtp_server_data_result(&s->data)) {
    case SMTP_SERVER_DATA_OK:
        return true;
    case SMTP_SERVER_DATA_TOO_BIG:
        smtp_server_reply(s, 552, SMTP_SERVER_TXT_TOO_BIG, "DATA");
        break;
    case SMTP_SERVER_DATA_TOO_LONG:
        smtp_server_reply(s, 500, SMTP_SERVER_TXT_LINE_TOO_LONG, "DATA");
        break;
    case SMTP_SERVER_DATA_BARE_LF:
        smtp_server_reply(s, 552, SMTP_SERVER_TXT_BARE_LF, "DATA");
        break;
    }
    return false;
}

void
smtp_server_txn_finish_data(struct smtp_server_session *s)
{
    const struct smtp_server_config *cfg = smtp_server_session_cfg(s);
    struct message **msgs;
    enum ingest_verdict *verdict;
    struct smtp_server_ingest *ing;
    struct ingest_peer peer;
    size_t n = s->n_rcpts;
    struct buf ids = BUF_INIT;
    char text[600];

    smtp_server_enter_state(s, SMTP_SERVER_ST_COMMAND);
    if (smtp_server_is_shutting_down(s)) {
        snprintf(text, sizeof(text), "4.3.2 %s shutting down", cfg->hostname);
        smtp_server_reply(s, 421, text, "DATA");
        smtp_server_session_finish(s);
        return;
    }
    if (!smtp_server_txn_check_data(s)) {
        smtp_server_txn_done(s);
        return;
    }
    msgs = km_calloc(n, sizeof(*msgs));
    if (smtp_server_txn_build(s, msgs) != 0) {
        smtp_server_txn_unref_all(msgs, n);
        smtp_server_txn_done(s);
        return;
    }
    /* The body now lives in the messages. */
    smtp_server_data_fini(&s->data);
    verdict = km_calloc(n, sizeof(*verdict));
    for (size_t i = 0; i < n; i++) {
        struct message *m = msgs[i];
        bool relay, accept;

        if (cfg->supplemental_header) {
            smtp_server_txn_supplemental(s, m);
        }
        /* Policy may have changed the envelope: decide again. */
        if (smtp_server_session_check_relay(s, message_sender(m),
                                            message_recipient(m), "DATA",
                                            &relay, &accept) != 0) {
            goto err_after_verdict;
        }
        buf_appendf(&ids, "%s%s", ids.len > 0 ? " " : "", message_id(m));
        /* The listener decides only whether it relays; what becomes of
         * each message (the null queue too) is ingest's business. */
        verdict[i] = relay ? INGEST_KEEP : INGEST_DROP;
    }
    if (!ingest_takes_any(msgs, verdict, n)) {
        smtp_server_reply(s, 550, SMTP_SERVER_TXT_RELAY_DATA, "DATA");
        goto err_after_verdict;
    }

    ing = km_calloc(1, sizeof(*ing));
    ing->s = s;
    buf_move(&ing->ids, &ids);
    memset(&peer, 0, sizeof(peer));
    peer.reception_protocol = "ESMTP";
    peer.peer_name = s->ehlo_domain != NULL ? s->ehlo_domain : "";
    peer.peer_addr = s->peer_ip;
    peer.session_id = s->session_id;
    if (s->tls_active) {
        peer.tls_cipher = tls_conn_cipher(s->tls);
        peer.tls_protocol_version = tls_conn_version(s->tls);
    }
    peer.timeout_ms = cfg->data_processing_timeout_ms;
    s->refs++;
    smtp_server_enter_state(s, SMTP_SERVER_ST_INGEST);
    smtp_server_session_update_io(s);
    ingest_submit(s->d.ingest, msgs, verdict, n, &peer,
                  smtp_server_txn_on_ingest, ing);
    free(verdict);
    smtp_server_txn_unref_all(msgs, n);
    return;

err_after_verdict:
    free(verdict);
    buf_fini(&ids);
    smtp_server_txn_unref_all(msgs, n);
    smtp_server_txn_done(s);
}
