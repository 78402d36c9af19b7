/* smtp_server_int.h - declarations shared by the smtp_server_*.c files:
 * the listener configuration (smtp_server_config.c), the command and path
 * parser (smtp_server_parse.c), the DATA decoder (smtp_server_data.c), and
 * the listener and session structures (smtp_server.c,
 * smtp_server_session.c, smtp_server_txn.c). The reply texts KumoMTA sends
 * are collected here so they can be audited in one place. Loop thread
 * only. */
#ifndef KUMO_SMTP_SERVER_INT_H
#define KUMO_SMTP_SERVER_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "base/buf.h"
#include "base/km_cidr.h"
#include "base/km_id.h"
#include "smtp_server.h"

struct kumod;
struct tls_ctx;
struct tls_conn;
struct policy_result;
struct policy_arg;

/* ---- Reply texts (KumoMTA crates/kumod/src/smtp_server.rs) ---- */
#define SMTP_SERVER_TXT_BYE           "So long, and thanks for all the fish!"
#define SMTP_SERVER_TXT_RSET          "Reset state"
#define SMTP_SERVER_TXT_NOOP          "the goggles do nothing"
#define SMTP_SERVER_TXT_UNIMPLEMENTED "5.5.1 Command unimplemented"
#define SMTP_SERVER_TXT_BAD_UTF8      "5.5.2 Invalid UTF-8 in command"
#define SMTP_SERVER_TXT_LINE_TOO_LONG "5.2.3 line too long"
#define SMTP_SERVER_TXT_SYNTAX        "Syntax error in command or arguments: "
#define SMTP_SERVER_TXT_MAIL_TWICE                                             \
    "5.5.0 MAIL FROM already issued; you must RSET first"
#define SMTP_SERVER_TXT_NEED_MAIL     "5.5.0 MAIL FROM must be issued first"
#define SMTP_SERVER_TXT_NEED_RCPT     "5.5.0 RCPT TO must be issued first"
#define SMTP_SERVER_TXT_BAD_SENDER    "5.1.7 Invalid sender address syntax: "
#define SMTP_SERVER_TXT_BAD_RCPT      "5.1.3 Invalid recipient address syntax: "
#define SMTP_SERVER_TXT_TOO_MANY_RCPT "4.5.3 too many recipients"
#define SMTP_SERVER_TXT_TOO_MANY_ON_CONN                                       \
    "4.5.3 too many recipients on this connection"
#define SMTP_SERVER_TXT_DATA_GO "Send body; end with CRLF.CRLF"
#define SMTP_SERVER_TXT_TOO_BIG "5.3.4 message too big"
#define SMTP_SERVER_TXT_BARE_LF                                                \
    "5.6.0 message data must use CRLF for line endings"
#define SMTP_SERVER_TXT_RELAY_DATA "5.7.1 relaying not permitted"
#define SMTP_SERVER_TXT_TLS_READY  "Ready to Start TLS"
#define SMTP_SERVER_TXT_TLS_ACTIVE "Cannot STARTTLS as TLS is already active"
#define SMTP_SERVER_TXT_AUTH_TWICE "5.5.1 AUTH me once, can't get authed again!"
#define SMTP_SERVER_TXT_AUTH_IN_TXN                                            \
    "5.5.1 AUTH not permitted inside a transaction"
#define SMTP_SERVER_TXT_AUTH_CANCELLED "5.5.0 AUTH cancelled by client"
#define SMTP_SERVER_TXT_AUTH_BAD_B64   "5.5.2 Invalid base64 response"
#define SMTP_SERVER_TXT_AUTH_BAD_PLAIN "5.5.2 Invalid decoded PLAIN response"
#define SMTP_SERVER_TXT_AUTH_BAD_UTF8                                          \
    "5.5.2 Invalid UTF8 in decoded PLAIN response"
#define SMTP_SERVER_TXT_AUTH_TOO_LONG                                          \
    "5.5.6 authentication exchange line too long"
#define SMTP_SERVER_TXT_AUTH_OK      "2.7.0 AUTH OK!"
#define SMTP_SERVER_TXT_AUTH_INVALID "5.7.8 AUTH invalid"
#define SMTP_SERVER_TXT_TIMEOUT_INSERT                                         \
    "4.4.5 data_processing_timeout exceeded (insert)"

/* ---- Configuration (smtp_server_config.c) ---- */

enum smtp_server_line_endings {
    SMTP_SERVER_LE_DENY,  /* reject the message */
    SMTP_SERVER_LE_ALLOW, /* keep bare CR/LF as received */
    SMTP_SERVER_LE_FIX,   /* turn bare CR or LF into CRLF */
};

/* One CIDR block; family is AF_INET or AF_INET6, addr in network order
 * with the bits beyond prefix cleared. */

struct smtp_server_config {
    char *listen;
    char *hostname;
    char *banner;
    struct km_cidr_list relay_hosts;
    size_t max_connections;
    uint64_t max_message_size;
    size_t max_recipients_per_message;
    size_t max_messages_per_connection;
    uint64_t client_timeout_ms;
    uint64_t data_processing_timeout_ms;
    /* kumod's own: bytes/s a DATA phase must average (0: no floor); the
     * phase may last client_timeout plus received bytes / this rate. */
    uint64_t data_min_rate;
    size_t line_length_hard_limit;
    enum smtp_server_line_endings invalid_line_endings;
    char *tls_certificate; /* NULL: self-signed */
    char *tls_private_key;
    bool received_header;
    bool supplemental_header;
    char *trace_header_name; /* "X-KumoRef" */
    char **include_meta_names;
    size_t n_include_meta_names;
    json_t *meta; /* preset connection metadata (object) or NULL */
};

/* Parse the JSON of kumo.start_esmtp_listener into cfg, filling KumoMTA's
 * defaults. On error returns KM_ECONFIG with a reason in err; cfg is then
 * finalised already. Release with smtp_server_config_fini(). */
int smtp_server_config_parse(json_t *params, struct smtp_server_config *cfg,
                             char *err, size_t errlen);
void smtp_server_config_fini(struct smtp_server_config *cfg);

/* "1.2.3.4:25", "[::1]:25", "0:25" (any IPv4), "localhost:25". Returns 0
 * or KM_EINVAL. */
int smtp_server_parse_listen(const char *listen, struct sockaddr_storage *out);

/* Parse a JSON array of CIDR strings into set (which the caller
 * finalises). KM_ECONFIG with the bad entry named in err. */
int smtp_server_config_cidrs(json_t *arr, struct km_cidr_list *set,
                             const char *what, char *err, size_t errlen);

/* ---- Command parsing (smtp_server_parse.c) ---- */

enum smtp_server_verb {
    SMTP_VERB_UNKNOWN,
    SMTP_VERB_EHLO,
    SMTP_VERB_HELO,
    SMTP_VERB_LHLO,
    SMTP_VERB_MAIL,
    SMTP_VERB_RCPT,
    SMTP_VERB_DATA,
    SMTP_VERB_RSET,
    SMTP_VERB_NOOP,
    SMTP_VERB_QUIT,
    SMTP_VERB_VRFY,
    SMTP_VERB_EXPN,
    SMTP_VERB_HELP,
    SMTP_VERB_STARTTLS,
    SMTP_VERB_AUTH,
};

/* Recognise the verb of a command line (case-insensitive, the verb ends at
 * a space or the end of the line). *args is set to the offset of the text
 * after the verb and its separating spaces. */
enum smtp_server_verb smtp_server_parse_verb(const char *line, size_t n,
                                             size_t *args);

/* A parsed MAIL FROM / RCPT TO. */
struct smtp_server_path {
    char *addr;    /* without <> and source route; "" for <> */
    size_t at;     /* offset of '@' in addr, or strlen(addr) if none */
    bool has_size; /* SIZE= given */
    uint64_t size;
    bool body_8bit; /* BODY=8BITMIME */
    bool smtputf8;  /* SMTPUTF8 */
};

/* Parse the arguments of MAIL ("FROM:<path> params") or RCPT ("TO:<path>
 * params"). For MAIL, UTF-8 in the path needs the SMTPUTF8 parameter; for
 * RCPT, `utf8_ok` says whether the transaction has it. Returns 0, or
 * KM_EINVAL with a short static reason in *why. The caller finalises out
 * with smtp_server_path_fini() on success. */
int smtp_server_parse_mail(const char *args, size_t n,
                           struct smtp_server_path *out, const char **why);
int smtp_server_parse_rcpt(const char *args, size_t n, bool utf8_ok,
                           struct smtp_server_path *out, const char **why);
void smtp_server_path_fini(struct smtp_server_path *p);

/* Whether p[0..n) is well-formed UTF-8 (no overlongs, no surrogates). */
bool smtp_server_utf8_valid(const char *p, size_t n);

/* Base64 (RFC 4648, padded). Decode returns 0 or KM_EINVAL. */
int smtp_server_b64_decode(const char *p, size_t n, struct buf *out);
void smtp_server_b64_encode(const void *p, size_t n, struct buf *out);

/* ---- DATA decoding (smtp_server_data.c) ---- */

enum smtp_server_data_result {
    SMTP_SERVER_DATA_OK,
    SMTP_SERVER_DATA_TOO_BIG,  /* more than max_size decoded bytes */
    SMTP_SERVER_DATA_TOO_LONG, /* a line longer than line_limit */
    SMTP_SERVER_DATA_BARE_LF,  /* bare CR or LF under LE_DENY */
};

/* Incremental decoder of the DATA phase: finds CRLF.CRLF across chunk
 * boundaries, removes dot-stuffing, applies the bare CR/LF policy and the
 * limits. Only a CRLF ends a line for dot handling, so `LF.LF` or
 * `LF.CRLF` never end the message. */
struct smtp_server_data {
    uint64_t max_size;
    size_t line_limit;
    enum smtp_server_line_endings mode;
    int state;
    size_t line_len;
    uint64_t size; /* decoded bytes seen, kept or not */
    bool too_big, too_long, bare;
    bool done;
    struct buf body; /* decoded message (emptied once a limit trips) */
};

void smtp_server_data_init(struct smtp_server_data *d, uint64_t max_size,
                           size_t line_limit,
                           enum smtp_server_line_endings mode);
void smtp_server_data_fini(struct smtp_server_data *d);
/* Decode p[0..n). Returns the number of bytes consumed: all of them, or
 * fewer when the end of data was found (d->done), in which case the rest
 * belongs to the next command. */
size_t smtp_server_data_feed(struct smtp_server_data *d, const char *p,
                             size_t n);
enum smtp_server_data_result
smtp_server_data_result(const struct smtp_server_data *d);

/* ---- Listener and sessions ---- */

enum smtp_server_state {
    SMTP_SERVER_ST_CONNECTED,     /* accepted, greeting not sent yet */
    SMTP_SERVER_ST_COMMAND,       /* waiting for a command line */
    SMTP_SERVER_ST_AUTH,          /* waiting for the AUTH PLAIN response */
    SMTP_SERVER_ST_TLS_HANDSHAKE, /* STARTTLS accepted, handshake running */
    SMTP_SERVER_ST_DATA,          /* receiving message data */
    SMTP_SERVER_ST_INGEST,        /* waiting for ingest_submit's callback */
    SMTP_SERVER_ST_CLOSING,       /* last reply queued; close once sent */
    SMTP_SERVER_ST_CLOSED,        /* handles closing or closed */
};

struct smtp_server_session;

struct smtp_server {
    struct smtp_server_deps d;
    struct smtp_server_config cfg;
    struct tls_ctx *tls;
    uv_tcp_t listener;
    bool listening;
    bool ready;    /* smtp_server_set_ready: serve sessions */
    bool disk_low; /* smtp_server_set_disk_low: refuse RCPT with 452 */
    bool shutting_down;
    bool closing;
    char listen_addr[64];
    struct smtp_server_session *sessions; /* doubly linked */
    size_t n_sessions;                    /* all open sessions */
    size_t n_counted;                     /* those within max_connections */
    size_t n_handles_open; /* listener + sessions not yet fully closed */
    /* Out of descriptors (fd_headroom.h): one warning per episode, and
     * accepting pauses for a moment after each refusal. */
    uv_timer_t fd_timer;
    bool fd_low;
    uint64_t fd_refused_ms; /* uv_now() of the last refusal */
    bool accept_paused;
    smtp_server_close_cb close_cb;
    void *close_arg;
};

/* Listener-domain lookups cached per session (KumoMTA keeps 16). */
#define SMTP_SERVER_DOMAIN_CACHE 16

struct smtp_server_domain_entry {
    char *domain;
    json_t *value; /* the listener_domain object, or NULL for none */
};

struct smtp_server_session {
    struct smtp_server *srv;   /* NULL once detached (closed) */
    struct smtp_server_deps d; /* the listener's, kept past a detach */
    struct smtp_server_session *prev, *next;
    enum smtp_server_state state;
    unsigned refs; /* handles (1) + in-flight ingest (1) */
    unsigned open_handles;
    bool counted;
    bool reading;
    bool write_paused;
    bool closing;
    size_t pending_writes;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uint64_t data_started_ms; /* uv_now() at the 354 */
    uint64_t data_bytes;      /* bytes read since the 354 */

    struct buf rbuf; /* plaintext not yet processed */
    struct buf out;  /* replies not yet handed to the socket */
    bool discarding; /* a too-long line is being skipped */
    struct tls_conn *tls;
    bool tls_active;

    char session_id[37];
    char peer_ip[INET6_ADDRSTRLEN];
    char local_ip[INET6_ADDRSTRLEN];
    struct sockaddr_storage peer_sa;
    char peer_hostport[INET6_ADDRSTRLEN + 10];
    char local_hostport[INET6_ADDRSTRLEN + 10];
    json_t *conn_meta;

    char *ehlo_domain; /* NULL until HELO/EHLO */
    bool authenticated;
    size_t rcpt_count; /* recipients accepted on this connection */

    /* The transaction. */
    bool in_txn;
    char *sender;
    bool smtputf8;
    char **rcpts;
    size_t n_rcpts;
    /* The RCPT TO address being decided (borrowed, only during the
     * command): a refusal's Rejection record names it. */
    const char *cur_rcpt;
    struct smtp_server_data data;
    char *last_command; /* for Rejection records */

    struct smtp_server_domain_entry domains[SMTP_SERVER_DOMAIN_CACHE];
    size_t n_domains;
};

/* smtp_server.c: I/O helpers used by the session logic. */
void smtp_server_enter_state(struct smtp_server_session *s,
                             enum smtp_server_state st);
/* Queue a reply (text may hold several lines separated by \n), trace it
 * and log a Rejection record for 4xx/5xx. `command` is the command line it
 * answers, for the log (may be NULL). */
void smtp_server_reply(struct smtp_server_session *s, int code,
                       const char *text, const char *command);
/* Hand queued replies to the socket (through TLS when active). */
void smtp_server_flush(struct smtp_server_session *s);
/* Flush, then close once everything is written. */
void smtp_server_session_finish(struct smtp_server_session *s);
/* Start or stop reading and the idle timer to match the state. */
void smtp_server_session_update_io(struct smtp_server_session *s);
void smtp_server_session_unref(struct smtp_server_session *s);
bool smtp_server_is_shutting_down(const struct smtp_server_session *s);
const struct smtp_server_config *
smtp_server_session_cfg(const struct smtp_server_session *s);
/* Begin the TLS handshake after `220 Ready to Start TLS` was queued. */
int smtp_server_session_start_tls(struct smtp_server_session *s);

/* smtp_server_session.c: the command state machine. */
/* Run the connection_accepted hook and send the greeting (or refusal). */
void smtp_server_session_greet(struct smtp_server_session *s);
/* Process what is buffered in s->rbuf as far as the state allows. */
void smtp_server_session_process(struct smtp_server_session *s);
void smtp_server_session_reset_txn(struct smtp_server_session *s);
void smtp_server_session_fini_state(struct smtp_server_session *s);
/* Call a policy event; on KM_EPOLICY and KM_EREJECT the reply is sent
 * here (see the .c for the texts). Returns 0, KM_EREJECT or KM_EPOLICY. */
int smtp_server_session_call(struct smtp_server_session *s, const char *event,
                             const struct policy_arg *args, size_t nargs,
                             struct policy_result *res, const char *command);
/* Relay decision for sender/recipient (KumoMTA's check_relaying). Returns
 * 0 with *relay / *accept set, or an error after a reply was sent. */
int smtp_server_session_check_relay(struct smtp_server_session *s,
                                    const char *sender, const char *recipient,
                                    const char *command, bool *relay,
                                    bool *accept);

/* smtp_server_txn.c: the end of DATA. */
void smtp_server_txn_finish_data(struct smtp_server_session *s);
#endif /* KUMO_SMTP_SERVER_INT_H */
