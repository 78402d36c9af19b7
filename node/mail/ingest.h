/* ingest.h - the one way in for a message, shared by SMTP and HTTP
 * reception (ARCHITECTURE.md §3, CLUSTER.md §4.5). A front end builds the
 * messages, says for each whether the listener keeps it (relayed) or only
 * accepts it, and hands them all over; ingest decides what becomes of each:
 * a kept message is made durable (synced spool, replicas in a group, the
 * committed Enqueue), queued and logged (Reception) before the callback
 * says 0, so the front end can answer 250; a message for the "null"
 * queue, or accepted but not relayed, is logged and dropped. Loop thread
 * only. */
#ifndef KUMO_INGEST_H
#define KUMO_INGEST_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct cluster;
struct dkim_ctx;
struct logrec_set;
struct message;
struct metrics;
struct queue_mgr;
struct spool;
struct ingest; /* opaque */

/* What the listener decided for one message. */
enum ingest_verdict {
    INGEST_KEEP, /* relayed: spool, commit, queue (unless queue "null") */
    INGEST_DROP, /* accepted but not relayed: Reception logged, dropped */
};

/* Who handed the messages in, for the Reception records. Strings are
 * borrowed for the call (copied). */
struct ingest_peer {
    const char *reception_protocol; /* "ESMTP", "HTTP" */
    const char *peer_name;          /* EHLO name */
    const char *peer_addr;          /* client IP */
    const char *source_addr;
    const char *session_id;
    const char *tls_cipher, *tls_protocol_version;
    uint64_t timeout_ms; /* data_processing_timeout; 0 = 5 min */
};

/* What ingest writes into (borrowed; they outlive it). */
struct ingest_deps {
    uv_loop_t *loop;
    struct cluster *cluster; /* Enqueue; replicas in a group */
    struct spool *data, *meta;
    struct queue_mgr *queues;
    struct metrics *metrics;
    const struct logrec_set *logs;
    struct dkim_ctx *dkim; /* signs what msg:dkim_sign() asked for */
};

/* An ingest with nothing to write into yet (front ends are wired to it
 * before the spools open). The caller owns *out; ingest_free() once
 * ingest_inflight() is 0. */
void ingest_new(struct ingest **out);
/* The spools, the cluster and the queues are open: ingest_submit() may be
 * called from now on. */
void ingest_open(struct ingest *ig, const struct ingest_deps *d);
/* Shutdown: offer no more bodies to other nodes; what is in flight ends. */
void ingest_stop(struct ingest *ig);
void ingest_free(struct ingest *ig);

/* status 0: every kept message is durable and queued and every message's
 * Reception is logged. Otherwise KM_ESPOOL, KM_ENOQUORUM, KM_ECLOSING,
 * KM_ETIMEDOUT: no kept message was accepted (stored copies are removed). */
typedef void (*ingest_cb)(void *arg, int status);

/* Take msgs[0..n) with the listener's verdicts (NULL: all INGEST_KEEP).
 * Takes a reference to each message kept. `cb` runs exactly once, on the
 * loop thread, never before this returns. */
void ingest_submit(struct ingest *ig, struct message *const *msgs,
                   const enum ingest_verdict *v, size_t n,
                   const struct ingest_peer *peer, ingest_cb cb, void *arg);
/* Whether m with verdict v is stored (kept, and not for the null queue). */
bool ingest_keeps(const struct message *m, enum ingest_verdict v);
/* Whether ingest takes any of the messages: one is kept, or one is for the
 * null queue (accepted and dropped). If none, the front end refuses the
 * transaction (550 relaying denied). */
bool ingest_takes_any(struct message *const *msgs, const enum ingest_verdict *v,
                      size_t n);
/* Ingests whose callback has not run yet, or whose work still goes on. */
size_t ingest_inflight(const struct ingest *ig);
#endif /* KUMO_INGEST_H */
