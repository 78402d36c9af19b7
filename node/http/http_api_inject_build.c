/* http_api_inject_build.c - building an injected message from its parsed
 * request: header encodings (RFC 2047 words, folding, no outside value
 * able to start a header), the MIME structure with text, HTML and
 * attachments, and raw content with its substitutions. Pure functions.
 * Parsing and the request itself are http_api_inject.c. */
#include "base/km.h"
#include "base/km_id.h"
#include "base/log.h"
#include "http_api_int.h"
#include "ingest.h"
#include "logrec.h"
#include "message.h"
#include "metrics.h"
#include "policy.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Encodings */

static const char http_api_inject_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64 with CRLF every 76 columns (RFC 2045 6.8) when wrap. */
static void
http_api_inject_b64_encode(const unsigned char *p, size_t n, bool wrap,
                           struct buf *out)
{
    size_t col = 0;

    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        char q[4];

        if (i + 1 < n) {
            v |= (uint32_t)p[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= p[i + 2];
        }
        q[0] = http_api_inject_b64[(v >> 18) & 63];
        q[1] = http_api_inject_b64[(v >> 12) & 63];
        q[2] = i + 1 < n ? http_api_inject_b64[(v >> 6) & 63] : '=';
        q[3] = i + 2 < n ? http_api_inject_b64[v & 63] : '=';
        buf_append(out, q, 4);
        col += 4;
        if (wrap && col >= 76 && i + 3 < n) {
            buf_append(out, "\r\n", 2);
            col = 0;
        }
    }
    if (wrap) {
        buf_append(out, "\r\n", 2);
    }
}

int
http_api_inject_b64_decode(const char *s, size_t n, struct buf *out)
{
    uint32_t acc = 0;
    int bits = 0;

    for (size_t i = 0; i < n; i++) {
        const char *p;

        if (s[i] == '=' || isspace((unsigned char)s[i])) {
            continue;
        }
        p = memchr(http_api_inject_b64, s[i], 64);
        if (p == NULL || s[i] == '\0') {
            return KM_EINVAL;
        }
        acc = (acc << 6) | (uint32_t)(p - http_api_inject_b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf_append_char(out, (char)((acc >> bits) & 0xff));
        }
    }
    return 0;
}

/* Printable ASCII, space and tab only: no control character (CR, LF,
 * NUL, ESC...), no DEL, nothing from 0x80 up. */
static bool
http_api_inject_is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 0x7f || (c < 0x20 && c != '\t')) {
            return false;
        }
    }
    return true;
}

/* A value on its way into a header: each line break (CR, LF, CRLF)
 * becomes one space, so a value never starts a new header line. */
static void
http_api_inject_unfold(struct buf *b)
{
    size_t w = 0;

    if (b->len == 0) {
        return;
    }
    for (size_t r = 0; r < b->len; r++) {
        char c = b->data[r];

        if (c == '\r' && r + 1 < b->len && b->data[r + 1] == '\n') {
            continue;
        }
        b->data[w++] = (c == '\r' || c == '\n') ? ' ' : c;
    }
    b->len = w;
    b->data[w] = '\0';
}

/* A header value: as is when printable ASCII, else one RFC 2047 encoded
 * word, which carries any byte (a control character included) without
 * ever putting it on the wire as is. */
static void
http_api_inject_hdr_value(const char *s, size_t n, struct buf *out)
{
    if (http_api_inject_is_ascii(s, n)) {
        buf_append(out, s, n);
        return;
    }
    buf_append_str(out, "=?UTF-8?B?");
    http_api_inject_b64_encode((const unsigned char *)s, n, false, out);
    buf_append_str(out, "?=");
}

void
http_api_inject_fmt_addr(const char *name, const char *email, struct buf *out)
{
    struct buf nb = BUF_INIT;

    if (name == NULL || name[0] == '\0') {
        buf_append_str(out, email);
        return;
    }
    /* The name comes from the request: a CR/LF in it must not end the
     * header (probe 2026-12 #15: it added Bcc: lines). */
    buf_append_str(&nb, name);
    http_api_inject_unfold(&nb);
    if (!http_api_inject_is_ascii(nb.data, nb.len)) {
        http_api_inject_hdr_value(nb.data, nb.len, out);
    } else if (strpbrk(nb.data, "()<>[]:;@\\,.\"") != NULL) {
        buf_append_char(out, '"');
        for (const char *p = nb.data; *p != '\0'; p++) {
            if (*p == '"' || *p == '\\') {
                buf_append_char(out, '\\');
            }
            buf_append_char(out, *p);
        }
        buf_append_char(out, '"');
    } else {
        buf_append_str(out, nb.data);
    }
    buf_fini(&nb);
    buf_appendf(out, " <%s>", email);
}

/* Text with bare LF made CRLF; ends with CRLF. */
static void
http_api_inject_crlf(const char *s, size_t n, struct buf *out)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) {
            buf_append_char(out, '\r');
        }
        buf_append_char(out, s[i]);
    }
    if (out->len < 2 || memcmp(out->data + out->len - 2, "\r\n", 2) != 0) {
        buf_append(out, "\r\n", 2);
    }
}

/* Quoted-printable (RFC 2045 6.7), lines CRLF-terminated, soft breaks
 * keep lines within 76 columns. */
static void
http_api_inject_qp(const char *s, size_t n, struct buf *out)
{
    size_t col = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char enc[4];
        size_t w;

        if (c == '\r' && i + 1 < n && s[i + 1] == '\n') {
            continue;
        }
        if (c == '\n') {
            buf_append(out, "\r\n", 2);
            col = 0;
            continue;
        }
        if ((c == ' ' || c == '\t') &&
            (i + 1 == n || s[i + 1] == '\n' || s[i + 1] == '\r')) {
            snprintf(enc, sizeof(enc), "=%02X", c);
            w = 3;
        } else if (c == '=' || c >= 0x7f || (c < 0x20 && c != '\t')) {
            snprintf(enc, sizeof(enc), "=%02X", c);
            w = 3;
        } else {
            enc[0] = (char)c;
            enc[1] = '\0';
            w = 1;
        }
        if (col + w > 75) {
            buf_append(out, "=\r\n", 3);
            col = 0;
        }
        buf_append(out, enc, w);
        col += w;
    }
    buf_append(out, "\r\n", 2);
}

static bool
http_api_inject_needs_qp(const char *s, size_t n)
{
    size_t col = 0;

    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] >= 0x80) {
            return true;
        }
        col = s[i] == '\n' ? 0 : col + 1;
        if (col > 998) {
            return true;
        }
    }
    return false;
}

/* Building */

static json_t *
http_api_inject_vars(const struct http_api_inject *inj, size_t i)
{
    const struct http_api_inject_rcpt *rc = &inj->rcpts[i];
    json_t *vars =
        inj->subst != NULL ? json_deep_copy(inj->subst) : json_object();
    struct buf to = BUF_INIT;

    if (rc->subst != NULL) {
        json_object_update(vars, rc->subst);
    }
    json_object_set_new(vars, "email", json_string(rc->email));
    if (rc->name != NULL) {
        json_object_set_new(vars, "name", json_string(rc->name));
    }
    http_api_inject_fmt_addr(rc->name, rc->email, &to);
    json_object_set_new(vars, "to_header", json_string(buf_cstr(&to)));
    buf_fini(&to);
    return vars;
}

static void
http_api_inject_date(int64_t now_ms, struct buf *out)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed",
                                       "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr",
                                         "May", "Jun", "Jul", "Aug",
                                         "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    buf_appendf(out, "%s, %d %s %d %02d:%02d:%02d +0000", days[tm.tm_wday % 7],
                tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
                tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static bool
http_api_inject_has_header(const struct http_api_inject *inj, const char *name)
{
    for (size_t i = 0; i < inj->n_headers; i++) {
        if (strcasecmp(inj->headers[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

/* One text part (headers and body) into out. */
static void
http_api_inject_text_part(const char *subtype, const struct buf *text,
                          struct buf *out)
{
    const char *s = buf_cstr(text);

    buf_appendf(out, "Content-Type: text/%s; charset=utf-8\r\n", subtype);
    if (http_api_inject_needs_qp(s, text->len)) {
        buf_append_str(out,
                       "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
        http_api_inject_qp(s, text->len, out);
    } else {
        buf_append_str(out, "Content-Transfer-Encoding: 7bit\r\n\r\n");
        http_api_inject_crlf(s, text->len, out);
    }
}

static void
http_api_inject_body(const struct http_api_inject *inj, json_t *vars,
                     const char *msgid, struct buf *out)
{
    struct buf text = BUF_INIT, html = BUF_INIT;
    char alt[128], mixed[128];

    snprintf(alt, sizeof(alt), "=_kumod_alt_%s", msgid);
    snprintf(mixed, sizeof(mixed), "=_kumod_mixed_%s", msgid);
    if (inj->text_body != NULL) {
        http_api_template_render(inj->text_body, vars, &text);
    }
    if (inj->html_body != NULL) {
        http_api_template_render(inj->html_body, vars, &html);
    }
    if (inj->n_attach > 0) {
        buf_appendf(out,
                    "Content-Type: multipart/mixed;\r\n boundary=\"%s\"\r\n"
                    "\r\n--%s\r\n",
                    mixed, mixed);
    }
    if (inj->text_body != NULL && inj->html_body != NULL) {
        buf_appendf(out,
                    "Content-Type: multipart/alternative;\r\n "
                    "boundary=\"%s\"\r\n\r\n--%s\r\n",
                    alt, alt);
        http_api_inject_text_part("plain", &text, out);
        buf_appendf(out, "--%s\r\n", alt);
        http_api_inject_text_part("html", &html, out);
        buf_appendf(out, "--%s--\r\n", alt);
    } else if (inj->text_body != NULL) {
        http_api_inject_text_part("plain", &text, out);
    } else {
        http_api_inject_text_part("html", &html, out);
    }
    for (size_t i = 0; i < inj->n_attach; i++) {
        const struct http_api_inject_attach *a = &inj->attach[i];

        buf_appendf(out, "--%s\r\nContent-Type: %s", mixed, a->content_type);
        if (a->file_name != NULL) {
            buf_append_str(out, ";\r\n name=");
            http_api_inject_quoted(a->file_name, out);
        }
        buf_append_str(out, "\r\nContent-Transfer-Encoding: base64\r\n");
        buf_appendf(out, "Content-Disposition: %s",
                    a->content_id != NULL ? "inline" : "attachment");
        if (a->file_name != NULL) {
            buf_append_str(out, ";\r\n filename=");
            http_api_inject_quoted(a->file_name, out);
        }
        buf_append_str(out, "\r\n");
        if (a->content_id != NULL) {
            buf_appendf(out, "Content-ID: <%s>\r\n", a->content_id);
        }
        buf_append_str(out, "\r\n");
        http_api_inject_b64_encode((const unsigned char *)buf_cstr(&a->data),
                                   a->data.len, true, out);
    }
    if (inj->n_attach > 0) {
        buf_appendf(out, "--%s--\r\n", mixed);
    }
    buf_fini(&text);
    buf_fini(&html);
}

void
http_api_inject_build(const struct http_api_inject *inj, size_t i,
                      const char *msgid, const char *hostname, int64_t now_ms,
                      struct buf *out)
{
    json_t *vars = http_api_inject_vars(inj, i);
    struct buf tmp = BUF_INIT;

    if (inj->raw != NULL) {
        /* Raw content is the message, after templating. */
        http_api_template_render_message(inj->raw, vars, out);
        json_decref(vars);
        return;
    }
    buf_append_str(out, "From: ");
    if (inj->from_name != NULL) {
        http_api_template_render(inj->from_name, vars, &tmp);
    }
    /* A rendered name must stay on one line. */
    http_api_inject_unfold(&tmp);
    http_api_inject_fmt_addr(buf_cstr(&tmp), inj->from_email, out);
    buf_append_str(out, "\r\n");
    if (!http_api_inject_has_header(inj, "To")) {
        buf_append_str(out, "To: ");
        http_api_inject_fmt_addr(inj->rcpts[i].name, inj->rcpts[i].email, out);
        buf_append_str(out, "\r\n");
    }
    if (inj->subject != NULL && !http_api_inject_has_header(inj, "Subject")) {
        buf_reset(&tmp);
        http_api_template_render(inj->subject, vars, &tmp);
        http_api_inject_unfold(&tmp);
        buf_append_str(out, "Subject: ");
        http_api_inject_hdr_value(buf_cstr(&tmp), tmp.len, out);
        buf_append_str(out, "\r\n");
    }
    if (inj->reply_to != NULL && !http_api_inject_has_header(inj, "Reply-To")) {
        buf_appendf(out, "Reply-To: %s\r\n", inj->reply_to);
    }
    for (size_t h = 0; h < inj->n_headers; h++) {
        buf_reset(&tmp);
        http_api_template_render(inj->headers[h].value, vars, &tmp);
        http_api_inject_unfold(&tmp);
        buf_appendf(out, "%s: ", inj->headers[h].name);
        http_api_inject_hdr_value(buf_cstr(&tmp), tmp.len, out);
        buf_append_str(out, "\r\n");
    }
    if (!http_api_inject_has_header(inj, "MIME-Version")) {
        buf_append_str(out, "MIME-Version: 1.0\r\n");
    }
    if (!http_api_inject_has_header(inj, "Date")) {
        buf_append_str(out, "Date: ");
        http_api_inject_date(now_ms, out);
        buf_append_str(out, "\r\n");
    }
    if (!http_api_inject_has_header(inj, "Message-ID")) {
        buf_appendf(out, "Message-ID: <%s@%s>\r\n", msgid, hostname);
    }
    http_api_inject_body(inj, vars, msgid, out);
    buf_fini(&tmp);
    json_decref(vars);
}
