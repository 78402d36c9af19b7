/* smtp_server.h - an ESMTP listener with KumoMTA's wire behaviour
 * (KUMOMTA-API.md §2.2–2.3): sessions as state machines, pipelining,
 * STARTTLS, AUTH PLAIN, limits and timeouts, the policy hooks of each
 * command, one message per recipient, and the hand-off of accepted
 * messages to ingest_submit(). Each 4xx/5xx it sends is logged as a
 * Rejection record. Loop thread only. */
#ifndef KUMO_SMTP_SERVER_H
#define KUMO_SMTP_SERVER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <uv.h>

struct ingest;
struct km_idgen;
struct logrec_set;
struct metrics;
struct policy;
struct smtp_server; /* opaque: one listener and its sessions */

/* What a listener and its sessions use (borrowed; they outlive it). */
struct smtp_server_deps {
    uv_loop_t *loop;
    struct policy *policy;         /* the smtp_server_* events; NULL: none */
    const struct logrec_set *logs; /* Rejection records */
    struct km_idgen *ids;          /* message ids */
    struct ingest *ingest;         /* where accepted messages go */
    struct metrics *metrics;       /* connections refused, ... */
};

/* Bind and listen according to `params`, the validated JSON of one
 * kumo.start_esmtp_listener{} call (policy.h explains the encoding). Unset
 * parameters take KumoMTA's defaults. Sessions accepted before
 * smtp_server_set_ready() get `421 4.3.2 <host> waiting for spool startup`.
 * Returns KM_ECONFIG with a reason in err for a bad value, or a libuv code
 * if the address cannot be bound. The caller owns *out. */
int smtp_server_open(const struct smtp_server_deps *d, json_t *params,
                     struct smtp_server **out, char *err, size_t errlen);

/* The node runs (recovery done): sessions are served from now on. Until
 * then each is told to come back later. */
void smtp_server_set_ready(struct smtp_server *srv, bool ready);
/* The data spool is below its free-space mark: RCPT TO gets 452 4.3.1. */
void smtp_server_set_disk_low(struct smtp_server *srv, bool low);

/* Check `params` as smtp_server_open() would, without binding (for
 * --validate). 0 or KM_ECONFIG with a reason in err. */
int smtp_server_check_params(json_t *params, char *err, size_t errlen);

/* Stop accepting; each open session answers its next command with
 * `421 4.3.2 <host> shutting down` and closes, except that a message
 * already handed to ingest_submit() gets its final reply first. */
void smtp_server_shutdown(struct smtp_server *srv);

/* Number of open sessions. */
size_t smtp_server_session_count(const struct smtp_server *srv);
const char *smtp_server_listen_addr(const struct smtp_server *srv);

typedef void (*smtp_server_close_cb)(void *arg);
/* Close the listener and every session (shutdown first if not done), then
 * call cb. Frees srv. */
void smtp_server_close(struct smtp_server *srv, smtp_server_close_cb cb,
                       void *arg);
#endif /* KUMO_SMTP_SERVER_H */
