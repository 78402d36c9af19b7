/* kumod.h - the daemon's one context, made in main(): the loop, the policy,
 * the spools, the raft group, the log writers, the listeners and the
 * queues. Passed explicitly; modules keep a back pointer. Also the ingest
 * path shared by SMTP and HTTP reception: a message is made durable in the
 * spool (synced), then its Enqueue record is committed through Raft, then
 * it is queued and its Reception record written. Loop thread only. */
#ifndef KUMO_KUMOD_H
#define KUMO_KUMOD_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <uv.h>

#include "base/km_id.h"
#include "cluster.h"
#include "disk_guard.h"
#include "kumod_config.h"
#include "logrec.h"

struct admin;
struct admin_rules;
struct metrics;
struct cluster;
struct cluster_peer;
struct dkim_ctx;
struct http_api;
struct ingest;
struct egress_mgr;
struct kumod_repl;
struct logrec;
struct logrec_event;
struct message;
struct policy;
struct queue_mgr;
struct smtp_server;
struct spool;

enum kumod_state {
    KUMOD_LOADING,  /* policy loading, init running */
    KUMOD_STARTING, /* listening; spool and raft opening, recovery */
    KUMOD_RUNNING,  /* accepting mail */
    KUMOD_STOPPING, /* shutdown requested: finish in-flight work */
};

struct kumod {
    uv_loop_t *loop;
    enum kumod_state state;
    bool validate_only; /* --validate: run init, bind nothing, open nothing */
    struct policy *policy;
    const char *policy_path;
    char policy_checksum[24]; /* first 16 hex digits of the file's SHA-256 */
    char nodeid[37]; /* UUID of this node, persisted beside the spool */
    struct km_idgen idgen;
    struct kumod_config cfg; /* what init configured (policy_glue.c) */

    struct spool *data_spool;
    struct spool *meta_spool;

    struct cluster *cluster;
    char *raft_dir;

    struct logrec_set logs; /* one logger per configure_local_logs call */

    struct smtp_server **listeners;
    size_t n_listeners;
    struct http_api **http_listeners;
    size_t n_http_listeners;

    struct queue_mgr *queues;
    struct egress_mgr *egress;
    struct admin_rules *rules; /* the active admin rules */
    struct admin *admin;       /* adds, cancels and applies them */
    struct ingest *ingest;     /* the way in, for SMTP and HTTP */
    struct metrics *metrics;   /* counters for /metrics */
    struct dkim_ctx *dkim;     /* DKIM signer caches (dkim.c) */
    struct kumod_repl *repl;   /* kumod_repl.c; NULL on one node */
    /* kumod_body.c: ids whose body is being fetched (NULL when none). */
    struct km_map *body_fetching;

    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t shutdown_timer;

    struct disk_guard *guard; /* watches the data spool's free space */
    uint64_t shutdown_started_ms;
    size_t closing; /* objects whose close callback is still to come */
    size_t inflight_body_ops;
    size_t recovered;
    int exit_status;
};

/* Set up kd around `loop` (no I/O). */
void kumod_init(struct kumod *kd, uv_loop_t *loop, const char *policy_path,
                bool validate_only);
/* Load the policy and run pre_init and init: listeners are bound (unless
 * validating), the rest of the configuration is recorded. Returns 0, or
 * KM_EPOLICY / KM_ECONFIG with the message in err. */
int kumod_load(struct kumod *kd, char *err, size_t errlen);
/* Before privileges are dropped: create the spool, state and log
 * directories and give them to uid/gid, so that an unprivileged --user
 * can run from directories only root may create. */
int kumod_prepare_dirs(struct kumod *kd, uid_t uid, gid_t gid, char *err,
                       size_t errlen);
/* After privileges are dropped: open logs, spools and the raft group;
 * recovery runs when raft is ready, then the node accepts mail. */
int kumod_start(struct kumod *kd, char *err, size_t errlen);
/* Install the SIGTERM/SIGINT/SIGHUP handlers and the shutdown timer. */
void kumod_watch_signals(struct kumod *kd);
/* Release what kumod_init/kumod_load made once the loop has stopped. */
void kumod_fini(struct kumod *kd);

/* Shutdown has been requested (kumod_body.c asks before starting work). */
bool kumod_is_stopping(const struct kumod *kd);

/* Begin a graceful shutdown (signals call this). */
void kumod_request_shutdown(struct kumod *kd);

/* kumod_repl.c: restore the replication factor after a failover
 * (CLUSTER.md §4.6): copy the bodies of under-replicated messages of the
 * shards this node owns to other UP nodes and commit ReplicaUpdate. */

/* Start the rounds (every 2 s) once the node runs; nothing on a one-node
 * kumod. */
void kumod_repl_start(struct kumod *kd);
/* Run a round soon (this node took over a shard). */
void kumod_repl_kick(struct kumod *kd);
/* Stop starting rounds (shutdown). Copies in flight still count in
 * inflight_body_ops until answered; commits in flight end with the
 * cluster. */
void kumod_repl_stop(struct kumod *kd);
#endif /* KUMO_KUMOD_H */
