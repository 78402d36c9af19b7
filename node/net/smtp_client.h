/* smtp_client.h - one outbound ESMTP connection for the delivery layer:
 * TCP connect (optionally from a source address), banner, EHLO (HELO
 * fallback), STARTTLS per KumoMTA's enable_tls modes, AUTH PLAIN, then one
 * transaction at a time with per-recipient outcomes (RFC 2920 pipelining
 * when offered). Knows nothing of queues, MX order, connection limits or
 * retries: the dispatcher owns those and decides what a reply means for a
 * message. Every read is guarded by the phase's timeout. Loop thread only. */
#ifndef KUMO_SMTP_CLIENT_H
#define KUMO_SMTP_CLIENT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct buf;
struct tls_ctx;
struct smtp_client; /* opaque */

/* KumoMTA's enable_tls modes (egress path). */
enum smtp_client_tls {
    SMTP_CLIENT_TLS_DISABLED,
    SMTP_CLIENT_TLS_OPPORTUNISTIC, /* the default */
    SMTP_CLIENT_TLS_OPPORTUNISTIC_INSECURE,
    SMTP_CLIENT_TLS_REQUIRED,
    SMTP_CLIENT_TLS_REQUIRED_INSECURE,
};

/* Connection parameters. All pointers are borrowed for the length of
 * smtp_client_connect(): strings are copied; the TLS contexts must outlive
 * the connection. Timeouts are in milliseconds; 0 means KumoMTA's default
 * (smtp_client_params_init() fills them in anyway). */
struct smtp_client_params {
    const char *ehlo_domain;    /* required */
    const char *source_address; /* IP to bind before connect; NULL: any */
    enum smtp_client_tls enable_tls;
    struct tls_ctx *tls_verify;   /* client ctx verifying certificates */
    struct tls_ctx *tls_noverify; /* client ctx for the *Insecure modes */
    const char *tls_hostname;     /* SNI and name to verify; NULL: mx_name */
    bool enable_pipelining;       /* default true */
    bool enable_rset;             /* default true */
    const char *smtp_auth_plain_username; /* NULL: no AUTH */
    const char *smtp_auth_plain_password; /* NULL: empty */
    bool allow_smtp_auth_plain_without_tls;
    uint64_t connect_timeout_ms;   /* 60 s */
    uint64_t banner_timeout_ms;    /* 60 s */
    uint64_t ehlo_timeout_ms;      /* 300 s */
    uint64_t starttls_timeout_ms;  /* 5 s (includes the handshake) */
    uint64_t auth_timeout_ms;      /* 60 s */
    uint64_t mail_from_timeout_ms; /* 300 s */
    uint64_t rcpt_to_timeout_ms;   /* 300 s */
    uint64_t data_timeout_ms;      /* 300 s (DATA reply and body write) */
    uint64_t data_dot_timeout_ms;  /* 300 s (reply to the final dot) */
    uint64_t rset_timeout_ms;      /* 5 s */
};

/* One SMTP reply, or a synthetic one made by this module. Synthetic
 * replies carry text starting with "KumoMTA internal: ". code 0 marks a
 * connection-phase failure that never got a usable reply (connect error,
 * timeout, TLS failure); mid-transaction losses use 421 4.4.2. */
struct smtp_client_response {
    int code;      /* 3-digit reply code, or 0 */
    int enh_class; /* enhanced status code x.y.z; enh_class 0: none */
    int enh_subject;
    int enh_detail;
    char *content; /* all lines joined with "\n", enhanced code removed */
    char *command; /* command answered, e.g. "RCPT TO:<a@b>\r\n"; NULL for
                      the banner and synthetic failures */
};

/* Outcome of smtp_client_send(). rcpt[i] answers rcpts[i]: the RCPT reply
 * when it failed, else the reply to the final dot (or whatever ended the
 * transaction first). txn is the transaction-level reply: the final dot
 * reply, or the reply (or synthetic failure) that ended it early. */
struct smtp_client_result {
    const struct smtp_client_response *rcpt;
    size_t n_rcpts;
    const struct smtp_client_response *txn;
};

/* `failure` is NULL when the connection is ready for smtp_client_send();
 * else why it failed (the connection is then dead; release it with
 * smtp_client_abort()). Pointers are borrowed for the call. */
typedef void (*smtp_client_ready_cb)(
    void *arg, struct smtp_client *c,
    const struct smtp_client_response *failure);
typedef void (*smtp_client_send_cb)(void *arg, struct smtp_client *c,
                                    const struct smtp_client_result *res);
/* Runs once the connection's memory is about to be freed. */
typedef void (*smtp_client_close_cb)(void *arg);

/* Fill p with KumoMTA's defaults (Opportunistic TLS, pipelining and RSET
 * on, the timeouts above); the strings and TLS contexts are left NULL. */
void smtp_client_params_init(struct smtp_client_params *p);

/* Open a connection to addr (IPv4 or IPv6 with port) for the host mx_name
 * (used in messages and as the default TLS name). *out is set at once;
 * `cb` runs later, exactly once, on the loop thread, with the outcome of
 * connect, banner, EHLO, STARTTLS and AUTH. A 4xx/5xx banner or EHLO/HELO
 * reply, a non-220 STARTTLS reply, a failed handshake, STARTTLS missing
 * under Required*, or a non-235 AUTH reply is a failure. The caller owns
 * *out and releases it with smtp_client_quit() or smtp_client_abort(),
 * also after a failure. Returns 0, or KM_EINVAL for bad parameters (no
 * ehlo_domain, a source_address that is not an IP, a TLS mode without
 * the matching context); then *out is untouched and cb never runs. */
int smtp_client_connect(uv_loop_t *loop, const struct sockaddr *addr,
                        const char *mx_name, const struct smtp_client_params *p,
                        smtp_client_ready_cb cb, void *arg,
                        struct smtp_client **out);

/* Run one mail transaction: RSET when needed, MAIL FROM:<sender> (with
 * BODY=8BITMIME / SMTPUTF8 when needed and offered), RCPT TO for each of
 * the n_rcpts recipients, DATA, the dot-stuffed body (data is raw RFC 5322
 * with CRLF line ends; it is copied) and the final dot. 8-bit data or a
 * non-ASCII address to a server without 8BITMIME / SMTPUTF8 fails at once
 * with 554 5.6.3 / 554 5.6.7 and nothing is sent. `cb` runs exactly once,
 * later, on the loop thread; afterwards smtp_client_is_usable() says
 * whether another transaction may follow. Returns 0, KM_ECLOSING when the
 * connection is not usable, or KM_EINVAL when a transaction is already
 * running or n_rcpts is 0 (cb never runs then). */
int smtp_client_send(struct smtp_client *c, const char *sender,
                     const char *const *rcpts, size_t n_rcpts,
                     const struct buf *data, smtp_client_send_cb cb, void *arg);

/* Whether the connection is established, idle between transactions and
 * not broken: smtp_client_send() may be called. */
bool smtp_client_is_usable(const struct smtp_client *c);

/* Send QUIT when the connection is usable, wait briefly (rset_timeout) for
 * the reply, then close and free. Any pending callback is cancelled (never
 * runs). `cb` (may be NULL) runs once the memory is about to be freed; c
 * must not be used after this call. */
void smtp_client_quit(struct smtp_client *c, smtp_client_close_cb cb,
                      void *arg);
/* Close without QUIT and free, as smtp_client_quit() otherwise. */
void smtp_client_abort(struct smtp_client *c, smtp_client_close_cb cb,
                       void *arg);

/* Accessors for logging, valid until the connection is closed. */
const char *smtp_client_peer(const struct smtp_client *c);   /* "ip:port" */
const char *smtp_client_source(const struct smtp_client *c); /* "ip:port" */
const char *smtp_client_mx_name(const struct smtp_client *c);
bool smtp_client_tls_active(const struct smtp_client *c);
/* "TLSv1.3" and the cipher name while TLS is active, else NULL. */
const char *smtp_client_tls_version(const struct smtp_client *c);
const char *smtp_client_tls_cipher(const struct smtp_client *c);
/* Whether the last EHLO offered the extension (e.g. "PIPELINING",
 * "8BITMIME", "SMTPUTF8", "STARTTLS", "SIZE"; case-insensitive). */
bool smtp_client_has_ext(const struct smtp_client *c, const char *name);
/* The SIZE limit offered (0: none or unlimited). */
uint64_t smtp_client_size_limit(const struct smtp_client *c);

/* Deep copy of src into dst (dst's old contents are not freed); release
 * with smtp_client_response_fini(). */
void smtp_client_response_copy(struct smtp_client_response *dst,
                               const struct smtp_client_response *src);
void smtp_client_response_fini(struct smtp_client_response *r);
/* "550 5.1.1 text with line breaks as spaces", as KumoMTA's
 * to_single_line(). The caller owns the string. */
char *smtp_client_response_line(const struct smtp_client_response *r);
#endif /* KUMO_SMTP_CLIENT_H */
