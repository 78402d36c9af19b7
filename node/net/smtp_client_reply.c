/* smtp_client_reply.c - the SMTP client's reply parser: bytes in, complete
 * replies out (RFC 5321 4.2: "250-first" ... "250 last"), with KumoMTA's
 * shape of a response: the lines' text joined with "\n", the enhanced
 * status code (RFC 3463, class 2/4/5) taken from the first line and
 * stripped from the following lines when repeated. Also parses EHLO
 * extension lists. Pure functions: no I/O, no loop, no logging. */
#include "smtp_client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/km.h"

void
smtp_client_reply_init(struct smtp_client_reply *p)
{
    memset(p, 0, sizeof(*p));
    buf_init(&p->line);
    buf_init(&p->content);
}

void
smtp_client_reply_fini(struct smtp_client_reply *p)
{
    buf_fini(&p->line);
    buf_fini(&p->content);
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0. */
static size_t
smtp_client_utf8_len(const unsigned char *p, size_t n)
{
    size_t len, i;
    unsigned cp;

    if (p[0] < 0x80) {
        return 1;
    }
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;
        cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;
        cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    /* Overlong forms, surrogates and values past U+10FFFF. */
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
        return 0;
    }
    return len;
}

/* Append text to content, replacing bytes that are not UTF-8 with '?'
 * (the text ends up in JSON log records). */
static void
smtp_client_append_text(struct buf *content, const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t i = 0;

    while (i < n) {
        size_t l = smtp_client_utf8_len(u + i, n - i);
        if (l == 0) {
            buf_append_char(content, '?');
            i++;
        } else {
            buf_append(content, p + i, l);
            i += l;
        }
    }
}

/* Parse "d+" into *v (at most 3 digits). Returns the digits used, or 0. */
static size_t
smtp_client_parse_num(const char *p, size_t n, int *v)
{
    size_t i = 0;

    *v = 0;
    while (i < n && i < 3 && p[i] >= '0' && p[i] <= '9') {
        *v = *v * 10 + (p[i] - '0');
        i++;
    }
    if (i < n && p[i] >= '0' && p[i] <= '9') {
        return 0;
    }
    return i;
}

/* If text starts with "c.s.d " (c in 2, 4, 5), store it in enh and return
 * the length of the prefix including the space; else 0. */
static size_t
smtp_client_parse_enh(const char *p, size_t n, int enh[3])
{
    size_t off = 0;

    for (int k = 0; k < 3; k++) {
        size_t d = smtp_client_parse_num(p + off, n - off, &enh[k]);
        if (d == 0) {
            return 0;
        }
        off += d;
        if (off >= n || p[off] != (k < 2 ? '.' : ' ')) {
            return 0;
        }
        off++;
    }
    if (enh[0] != 2 && enh[0] != 4 && enh[0] != 5) {
        return 0;
    }
    return off;
}

/* Fail with a reason; the line is quoted (shortened) for the log. */
static int
smtp_client_reply_fail(struct smtp_client_reply *p, int rv, const char *why)
{
    snprintf(p->err, sizeof(p->err), "%s: \"%.60s\"", why, buf_cstr(&p->line));
    return rv;
}

/* Handle one complete line (without its line end). Returns 1 when it
 * ended the reply, 0 when more lines follow, or an error. */
static int
smtp_client_reply_line(struct smtp_client_reply *p, const char *l, size_t n)
{
    int code = 0;
    bool last;
    const char *text;
    size_t tlen;

    if (memchr(l, '\0', n) != NULL) {
        return smtp_client_reply_fail(p, KM_EPROTO, "NUL in reply");
    }
    if (n < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' ||
        l[2] < '0' || l[2] > '9' || (n > 3 && l[3] != ' ' && l[3] != '-')) {
        return smtp_client_reply_fail(p, KM_EPROTO, "malformed reply line");
    }
    code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
    last = n == 3 || l[3] == ' ';
    text = n > 4 ? l + 4 : "";
    tlen = n > 4 ? n - 4 : 0;
    if (p->code == 0) {
        size_t skip;
        p->code = code;
        skip = smtp_client_parse_enh(text, tlen, p->enh);
        if (skip == 0) {
            memset(p->enh, 0, sizeof(p->enh));
        }
        text += skip;
        tlen -= skip;
    } else {
        int enh[3];
        size_t skip;
        if (code != p->code) {
            return smtp_client_reply_fail(p, KM_EPROTO,
                                          "reply code changed within reply");
        }
        buf_append_char(&p->content, '\n');
        /* KumoMTA drops a repeat of the first line's enhanced code. */
        skip = smtp_client_parse_enh(text, tlen, enh);
        if (skip > 0 && p->enh[0] != 0 &&
            memcmp(enh, p->enh, sizeof(enh)) == 0) {
            text += skip;
            tlen -= skip;
        }
    }
    smtp_client_append_text(&p->content, text, tlen);
    if (p->content.len > SMTP_CLIENT_REPLY_TOTAL_MAX) {
        return smtp_client_reply_fail(p, KM_E2BIG, "reply too long");
    }
    return last ? 1 : 0;
}

int
smtp_client_reply_feed(struct smtp_client_reply *p, const char *data, size_t n,
                       size_t *used, struct smtp_client_response *out)
{
    size_t off = 0;

    while (off < n) {
        const char *nl = memchr(data + off, '\n', n - off);
        size_t take = nl != NULL ? (size_t)(nl - (data + off)) : n - off;
        size_t llen;
        int rv;

        if (p->line.len + take > SMTP_CLIENT_REPLY_LINE_MAX + 1) {
            buf_append(&p->line, data + off, take > 60 ? 60 : take);
            return smtp_client_reply_fail(p, KM_E2BIG, "reply line too long");
        }
        buf_append(&p->line, data + off, take);
        off += take;
        if (nl == NULL) {
            break;
        }
        off++; /* the LF */
        llen = p->line.len;
        if (llen > 0 && p->line.data[llen - 1] == '\r') {
            llen--;
        }
        if (llen > SMTP_CLIENT_REPLY_LINE_MAX) {
            return smtp_client_reply_fail(p, KM_E2BIG, "reply line too long");
        }
        rv = smtp_client_reply_line(p, buf_cstr(&p->line), llen);
        if (rv < 0) {
            return rv;
        }
        buf_reset(&p->line);
        if (rv == 1) {
            memset(out, 0, sizeof(*out));
            out->code = p->code;
            out->enh_class = p->enh[0];
            out->enh_subject = p->enh[1];
            out->enh_detail = p->enh[2];
            out->content = km_strdup(buf_cstr(&p->content));
            buf_reset(&p->content);
            p->code = 0;
            memset(p->enh, 0, sizeof(p->enh));
            *used = off;
            return 1;
        }
    }
    *used = off;
    return 0;
}

void
smtp_client_caps_parse(const char *content, struct smtp_client_caps *caps)
{
    const char *l = strchr(content, '\n');

    memset(caps, 0, sizeof(*caps));
    while (l != NULL) {
        const char *kw = l + 1;
        const char *end = strchr(kw, '\n');
        size_t len = end != NULL ? (size_t)(end - kw) : strlen(kw);
        size_t klen = strcspn(kw, " \n");
        const char *param = kw + klen;

        if (klen > len) {
            klen = len;
        }
        if (km_ascii_ieq(kw, klen, "PIPELINING")) {
            caps->pipelining = true;
        } else if (km_ascii_ieq(kw, klen, "8BITMIME")) {
            caps->eightbitmime = true;
        } else if (km_ascii_ieq(kw, klen, "SMTPUTF8")) {
            caps->smtputf8 = true;
        } else if (km_ascii_ieq(kw, klen, "STARTTLS")) {
            caps->starttls = true;
        } else if (km_ascii_ieq(kw, klen, "ENHANCEDSTATUSCODES")) {
            caps->enhancedstatuscodes = true;
        } else if (km_ascii_ieq(kw, klen, "SIZE")) {
            caps->size = true;
            if (*param == ' ') {
                caps->size_limit = strtoull(param + 1, NULL, 10);
            }
        } else if (km_ascii_ieq(kw, klen, "AUTH")) {
            /* "AUTH LOGIN PLAIN": look for the PLAIN mechanism. */
            const char *m = param;
            while (m < kw + len) {
                size_t ml;
                while (*m == ' ') {
                    m++;
                }
                ml = strcspn(m, " \n");
                if (km_ascii_ieq(m, ml, "PLAIN")) {
                    caps->auth_plain = true;
                }
                m += ml;
                if (ml == 0) {
                    break;
                }
            }
        }
        l = end;
    }
}
