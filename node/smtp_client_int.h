/* smtp_client_int.h - declarations shared inside the smtp_client module:
 * the incremental reply parser (smtp_client_reply.c, pure: no I/O, no
 * loop) and the EHLO capability parser used by the connection code in
 * smtp_client.c. Loop thread only, like the module. */
#ifndef KUMO_SMTP_CLIENT_INT_H
#define KUMO_SMTP_CLIENT_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "smtp_client.h"

/* KumoMTA's MAX_LINE_LEN: a reply line longer than this is an error. */
#define SMTP_CLIENT_REPLY_LINE_MAX 4096
/* A multi-line reply larger than this (all lines) is an error. */
#define SMTP_CLIENT_REPLY_TOTAL_MAX 65536

/* Incremental parser state for one direction of one connection. */
struct smtp_client_reply {
    struct buf line;    /* bytes of the current, unterminated line */
    struct buf content; /* lines of the current reply so far */
    int code;           /* code of the current reply; 0 before its 1st line */
    int enh[3];         /* enhanced code of the first line; enh[0] 0: none */
    char err[160];      /* why the last feed failed */
};

void smtp_client_reply_init(struct smtp_client_reply *p);
void smtp_client_reply_fini(struct smtp_client_reply *p);

/* Feed bytes p[0..n). Stops after the first complete reply. Returns 1 with
 * *out filled (the caller owns its strings, command is NULL) and *used the
 * bytes consumed, or 0 when all n bytes were consumed without completing a
 * reply, or KM_EPROTO (bad code, codes differing across lines, NUL byte)
 * or KM_E2BIG (a line over SMTP_CLIENT_REPLY_LINE_MAX, a reply over
 * SMTP_CLIENT_REPLY_TOTAL_MAX) with the reason in p->err; the parser must
 * not be fed again after an error. Lines end with CRLF (a bare LF is
 * accepted); bytes that are not UTF-8 become '?'. */
int smtp_client_reply_feed(struct smtp_client_reply *p, const char *data,
                           size_t n, size_t *used,
                           struct smtp_client_response *out);

/* Extensions offered in an EHLO reply. */
struct smtp_client_caps {
    bool pipelining;
    bool eightbitmime;
    bool smtputf8;
    bool starttls;
    bool enhancedstatuscodes;
    bool auth_plain;
    bool size;
    uint64_t size_limit; /* 0: unlimited or not given */
};

/* Parse the extension lines (all but the first) of an EHLO reply's
 * content, as KumoMTA does: keyword up to the first space, rest params. */
void smtp_client_caps_parse(const char *content, struct smtp_client_caps *caps);
#endif /* KUMO_SMTP_CLIENT_INT_H */
