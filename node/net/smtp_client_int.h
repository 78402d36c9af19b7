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
/* Shared by smtp_client.c and smtp_client_proto.c. */
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

void smtp_client_enter_state(struct smtp_client *c, enum smtp_client_state st);
void smtp_client_set_resp(struct smtp_client_response *r, int code, int cls,
                          int subject, int detail, char *content);
void smtp_client_sockaddr_name(const struct sockaddr *sa, char *out,
                               size_t len);
void smtp_client_b64(const unsigned char *p, size_t n, struct buf *out);
void smtp_client_txn_free(struct smtp_client_txn *t);
void smtp_client_close_all(struct smtp_client *c);
const char *smtp_client_errstr(int err);
void smtp_client_write(struct smtp_client *c, const void *p, size_t n,
                       bool encrypt);
void smtp_client_arm(struct smtp_client *c);
void smtp_client_expect(struct smtp_client *c, enum smtp_client_cmd kind,
                        size_t rcpt, char *command, uint64_t timeout_ms);
void smtp_client_trace_cmd(const struct smtp_client *c,
                           enum smtp_client_cmd kind, const char *line);
void smtp_client_command(struct smtp_client *c, enum smtp_client_cmd kind,
                         const char *wire, const char *line,
                         uint64_t timeout_ms);
void __attribute__((format(printf, 2, 3)))
smtp_client_fail_synthetic(struct smtp_client *c, const char *fmt, ...);
const char *smtp_client_waiting_for(const struct smtp_client *c, char *tmp,
                                    size_t len);
void smtp_client_fail(struct smtp_client *c, struct smtp_client_response *r);
void smtp_client_stuff(const char *p, size_t n, struct buf *out);
void smtp_client_txn_add(struct smtp_client_txn *t, enum smtp_client_cmd kind,
                         size_t rcpt, char *command, uint64_t timeout_ms);
void smtp_client_txn_send_cmd(struct smtp_client *c,
                              struct smtp_client_pending *e);
void smtp_client_txn_finish(struct smtp_client *c);
void smtp_client_on_timer(uv_timer_t *t);
void smtp_client_on_defer(uv_timer_t *h);
void smtp_client_on_connect(uv_connect_t *req, int status);
#endif /* KUMO_SMTP_CLIENT_INT_H */
