/* smtp_server_parse.c - RFC 5321 command syntax for the server: verb
 * recognition, MAIL FROM / RCPT TO paths (dot-string or quoted local part,
 * domain names, [IPv4] and [IPv6:...] literals, source routes dropped as
 * RFC 5321 4.1.1.3 allows, UTF-8 under SMTPUTF8 per RFC 6531) and their
 * parameters, UTF-8 validation and base64 for AUTH PLAIN. Pure functions
 * over byte views: no I/O, no policy, no allocation beyond the results. */
#include "smtp_server_int.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "base/km.h"

struct smtp_server_verb_name {
    const char *name;
    enum smtp_server_verb verb;
};

static const struct smtp_server_verb_name smtp_server_verbs[] = {
    {"EHLO", SMTP_VERB_EHLO},         {"HELO", SMTP_VERB_HELO},
    {"LHLO", SMTP_VERB_LHLO},         {"MAIL", SMTP_VERB_MAIL},
    {"RCPT", SMTP_VERB_RCPT},         {"DATA", SMTP_VERB_DATA},
    {"RSET", SMTP_VERB_RSET},         {"NOOP", SMTP_VERB_NOOP},
    {"QUIT", SMTP_VERB_QUIT},         {"VRFY", SMTP_VERB_VRFY},
    {"EXPN", SMTP_VERB_EXPN},         {"HELP", SMTP_VERB_HELP},
    {"STARTTLS", SMTP_VERB_STARTTLS}, {"AUTH", SMTP_VERB_AUTH},
};

enum smtp_server_verb
smtp_server_parse_verb(const char *line, size_t n, size_t *args)
{
    size_t vlen = 0;
    size_t i;

    while (vlen < n && line[vlen] != ' ') {
        vlen++;
    }
    i = vlen;
    while (i < n && line[i] == ' ') {
        i++;
    }
    *args = i;
    for (size_t k = 0;
         k < sizeof(smtp_server_verbs) / sizeof(smtp_server_verbs[0]); k++) {
        if (km_ascii_ieq(line, vlen, smtp_server_verbs[k].name)) {
            return smtp_server_verbs[k].verb;
        }
    }
    return SMTP_VERB_UNKNOWN;
}

bool
smtp_server_utf8_valid(const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p;
    size_t i = 0;

    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len) {
            return false;
        }
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return false;
            }
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        i += len;
    }
    return true;
}

/* ---- Paths ---- */

static bool
smtp_server_is_atext(unsigned char c, bool utf8)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9')) {
        return true;
    }
    if (c >= 0x80) {
        return utf8;
    }
    return strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL && c != '\0';
}

static bool
smtp_server_has_8bit(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)p[i] >= 0x80) {
            return true;
        }
    }
    return false;
}

/* Dot-string or quoted-string; returns its length or 0. */
static size_t
smtp_server_scan_local(const char *p, size_t n, bool utf8)
{
    size_t i = 0;

    if (n > 0 && p[0] == '"') {
        i = 1;
        while (i < n && p[i] != '"') {
            unsigned char c = (unsigned char)p[i];
            if (c == '\\') {
                /* quoted-pairSMTP: backslash then %d32-126 */
                if (i + 1 >= n || (unsigned char)p[i + 1] < 32 ||
                    (unsigned char)p[i + 1] > 126) {
                    return 0;
                }
                i += 2;
                continue;
            }
            if (c < 32 || c == 127 || (c >= 0x80 && !utf8)) {
                return 0;
            }
            i++;
        }
        if (i >= n) {
            return 0;
        }
        return i + 1;
    }
    for (;;) {
        size_t start = i;
        while (i < n && smtp_server_is_atext((unsigned char)p[i], utf8)) {
            i++;
        }
        if (i == start) {
            return 0; /* empty atom: leading, trailing or double dot */
        }
        if (i < n && p[i] == '.') {
            i++;
            continue;
        }
        return i;
    }
}

static bool
smtp_server_is_letdig(unsigned char c, bool utf8)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || (c >= 0x80 && utf8);
}

/* Domain or address literal; returns its length or 0. */
static size_t
smtp_server_scan_domain(const char *p, size_t n, bool utf8)
{
    size_t i = 0;

    if (n > 0 && p[0] == '[') {
        char lit[64];
        const char *rb = memchr(p, ']', n);
        size_t len;
        unsigned char tmp[16];

        if (rb == NULL) {
            return 0;
        }
        len = (size_t)(rb - p) - 1;
        if (len == 0 || len >= sizeof(lit)) {
            return 0;
        }
        memcpy(lit, p + 1, len);
        lit[len] = '\0';
        if (len > 5 && km_ascii_ieq(lit, 5, "IPv6:")) {
            if (inet_pton(AF_INET6, lit + 5, tmp) != 1) {
                return 0;
            }
        } else if (inet_pton(AF_INET, lit, tmp) != 1) {
            return 0;
        }
        return len + 2;
    }
    for (;;) {
        size_t start = i;
        if (i >= n || !smtp_server_is_letdig((unsigned char)p[i], utf8)) {
            return 0;
        }
        while (i < n && (smtp_server_is_letdig((unsigned char)p[i], utf8) ||
                         p[i] == '-')) {
            i++;
        }
        if (p[i - 1] == '-' || i - start > 63) {
            return 0;
        }
        if (i < n && p[i] == '.') {
            i++;
            continue;
        }
        return i > 255 ? 0 : i;
    }
}

/* A-d-l: "@domain,@domain:" before the mailbox (RFC 5321 4.1.2). Returns
 * the length to skip (0 if none), or SIZE_MAX when malformed. */
static size_t
smtp_server_scan_route(const char *p, size_t n, bool utf8)
{
    size_t i = 0;

    if (n == 0 || p[0] != '@') {
        return 0;
    }
    for (;;) {
        size_t d;
        if (i >= n || p[i] != '@') {
            return SIZE_MAX;
        }
        i++;
        d = smtp_server_scan_domain(p + i, n - i, utf8);
        if (d == 0) {
            return SIZE_MAX;
        }
        i += d;
        if (i < n && p[i] == ',') {
            i++;
            continue;
        }
        if (i < n && p[i] == ':') {
            return i + 1;
        }
        return SIZE_MAX;
    }
}

/* Parse "<path>" or a bare path at p; fills out->addr and out->at and sets
 * *used. allow_null for MAIL's "<>". */
static int
smtp_server_parse_path(const char *p, size_t n, bool utf8, bool allow_null,
                       bool postmaster_ok, struct smtp_server_path *out,
                       size_t *used, const char **why)
{
    bool bracket = n > 0 && p[0] == '<';
    size_t i = bracket ? 1 : 0;
    size_t route, lstart, llen, dlen = 0;

    if (bracket && i < n && p[i] == '>') {
        if (!allow_null) {
            *why = "null path not allowed here";
            return KM_EINVAL;
        }
        out->addr = km_strdup("");
        out->at = 0;
        *used = 2;
        return 0;
    }
    route = smtp_server_scan_route(p + i, n - i, utf8);
    if (route == SIZE_MAX) {
        *why = "invalid source route";
        return KM_EINVAL;
    }
    i += route;
    lstart = i;
    if (postmaster_ok && n - i >= 10 && km_ascii_ieq(p + i, 10, "postmaster") &&
        (n - i == 10 || p[i + 10] == '>' || p[i + 10] == ' ')) {
        llen = 10;
    } else {
        llen = smtp_server_scan_local(p + i, n - i, utf8);
        if (llen == 0) {
            *why = "invalid local part";
            return KM_EINVAL;
        }
        if (lstart + llen > n || p[lstart + llen] != '@') {
            *why = "missing domain";
            return KM_EINVAL;
        }
        dlen = smtp_server_scan_domain(p + lstart + llen + 1,
                                       n - lstart - llen - 1, utf8);
        if (dlen == 0) {
            *why = "invalid domain";
            return KM_EINVAL;
        }
        dlen++; /* the '@' */
    }
    i = lstart + llen + dlen;
    if (bracket) {
        if (i >= n || p[i] != '>') {
            *why = "expected '>'";
            return KM_EINVAL;
        }
        i++;
    }
    if (i < n && p[i] != ' ') {
        *why = "unexpected text after the address";
        return KM_EINVAL;
    }
    out->addr = km_strndup(p + lstart, llen + dlen);
    out->at = llen;
    *used = i;
    return 0;
}

static bool
smtp_server_param_value_ok(const char *v, size_t n)
{
    /* esmtp-value: 1*(%d33-60 / %d62-126), or UTF-8 under RFC 6531. */
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '=' || c < 33 || c == 127) {
            return false;
        }
    }
    return true;
}

/* Parse SP-separated "KEY[=VALUE]" parameters. Unknown keys are ignored
 * as KumoMTA does; the ones we know are checked. */
static int
smtp_server_parse_params(const char *p, size_t n, bool is_mail,
                         struct smtp_server_path *out, const char **why)
{
    size_t i = 0;

    while (i < n) {
        size_t start, klen, vlen = 0;
        const char *val = NULL;

        while (i < n && p[i] == ' ') {
            i++;
        }
        if (i >= n) {
            break;
        }
        start = i;
        while (i < n && p[i] != ' ') {
            i++;
        }
        klen = i - start;
        {
            const char *eq = memchr(p + start, '=', klen);
            if (eq != NULL) {
                val = eq + 1;
                vlen = klen - (size_t)(eq - (p + start)) - 1;
                klen = (size_t)(eq - (p + start));
                if (!smtp_server_param_value_ok(val, vlen)) {
                    *why = "invalid parameter value";
                    return KM_EINVAL;
                }
            }
        }
        if (klen == 0) {
            *why = "invalid parameter";
            return KM_EINVAL;
        }
        for (size_t k = 0; k < klen; k++) {
            char c = p[start + k];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || (c == '-' && k > 0))) {
                *why = "invalid parameter name";
                return KM_EINVAL;
            }
        }
        if (!is_mail) {
            continue;
        }
        if (km_ascii_ieq(p + start, klen, "SIZE")) {
            uint64_t v = 0;
            if (val == NULL || vlen > 19) {
                *why = "invalid SIZE";
                return KM_EINVAL;
            }
            for (size_t k = 0; k < vlen; k++) {
                if (val[k] < '0' || val[k] > '9') {
                    *why = "invalid SIZE";
                    return KM_EINVAL;
                }
                v = v * 10 + (uint64_t)(val[k] - '0');
            }
            out->has_size = true;
            out->size = v;
        } else if (km_ascii_ieq(p + start, klen, "BODY")) {
            if (val != NULL && km_ascii_ieq(val, vlen, "8BITMIME")) {
                out->body_8bit = true;
            } else if (val == NULL || !km_ascii_ieq(val, vlen, "7BIT")) {
                *why = "unsupported BODY";
                return KM_EINVAL;
            }
        } else if (km_ascii_ieq(p + start, klen, "SMTPUTF8")) {
            if (val != NULL) {
                *why = "SMTPUTF8 takes no value";
                return KM_EINVAL;
            }
            out->smtputf8 = true;
        }
    }
    return 0;
}

static int
smtp_server_parse_cmd_path(const char *args, size_t n, const char *keyword,
                           bool is_mail, bool utf8_ok,
                           struct smtp_server_path *out, const char **why)
{
    size_t klen = strlen(keyword);
    size_t i, used = 0;
    int rv;

    memset(out, 0, sizeof(*out));
    if (n < klen || !km_ascii_ieq(args, klen, keyword)) {
        *why = is_mail ? "expected FROM:" : "expected TO:";
        return KM_EINVAL;
    }
    i = klen;
    /* Tolerate "MAIL FROM: <x>" as most servers do. */
    while (i < n && args[i] == ' ') {
        i++;
    }
    if (i >= n) {
        *why = "missing address";
        return KM_EINVAL;
    }
    /* MAIL's SMTPUTF8 comes after the path: accept UTF-8 while parsing,
     * then check once the parameters are known. */
    rv = smtp_server_parse_path(args + i, n - i, is_mail || utf8_ok, is_mail,
                                !is_mail, out, &used, why);
    if (rv != 0) {
        return rv;
    }
    i += used;
    rv = smtp_server_parse_params(args + i, n - i, is_mail, out, why);
    if (rv != 0) {
        goto err_after_path;
    }
    if (!(is_mail ? out->smtputf8 : utf8_ok) &&
        smtp_server_has_8bit(out->addr, strlen(out->addr))) {
        *why = "non-ASCII address without SMTPUTF8";
        goto err_after_path;
    }
    return 0;

err_after_path:
    smtp_server_path_fini(out);
    return KM_EINVAL;
}

int
smtp_server_parse_mail(const char *args, size_t n, struct smtp_server_path *out,
                       const char **why)
{
    return smtp_server_parse_cmd_path(args, n, "FROM:", true, false, out, why);
}

int
smtp_server_parse_rcpt(const char *args, size_t n, bool utf8_ok,
                       struct smtp_server_path *out, const char **why)
{
    return smtp_server_parse_cmd_path(args, n, "TO:", false, utf8_ok, out, why);
}

void
smtp_server_path_fini(struct smtp_server_path *p)
{
    free(p->addr);
    p->addr = NULL;
}

/* ---- Base64 ---- */

static const char smtp_server_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int
smtp_server_b64_val(char c)
{
    const char *p;

    if (c == '\0') {
        return -1;
    }
    p = strchr(smtp_server_b64, c);
    return p != NULL ? (int)(p - smtp_server_b64) : -1;
}

int
smtp_server_b64_decode(const char *p, size_t n, struct buf *out)
{
    if (n % 4 != 0) {
        return KM_EINVAL;
    }
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            if (p[i + (size_t)k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad > 0) {
                return KM_EINVAL; /* data after padding */
            }
            v[k] = smtp_server_b64_val(p[i + (size_t)k]);
            if (v[k] < 0) {
                return KM_EINVAL;
            }
        }
        {
            uint32_t w = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) |
                         ((uint32_t)v[2] << 6) | (uint32_t)v[3];
            char b[3] = {(char)(w >> 16), (char)(w >> 8), (char)w};
            buf_append(out, b, (size_t)(3 - pad));
        }
    }
    return 0;
}

void
smtp_server_b64_encode(const void *p, size_t n, struct buf *out)
{
    const unsigned char *s = p;

    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)s[i] << 16;
        char q[4];
        if (i + 1 < n) {
            w |= (uint32_t)s[i + 1] << 8;
        }
        if (i + 2 < n) {
            w |= s[i + 2];
        }
        q[0] = smtp_server_b64[(w >> 18) & 63];
        q[1] = smtp_server_b64[(w >> 12) & 63];
        q[2] = i + 1 < n ? smtp_server_b64[(w >> 6) & 63] : '=';
        q[3] = i + 2 < n ? smtp_server_b64[w & 63] : '=';
        buf_append(out, q, 4);
    }
}
