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

struct admin_state;
struct metrics;
struct cluster;
struct cluster_peer;
struct http_api;
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

    /* From kumo.define_spool{} (both required). */
    char *data_spool_path;
    char *meta_spool_path;
    struct spool *data_spool;
    struct spool *meta_spool;

    struct cluster *cluster;
    char *raft_dir;

    /* kumo.configure_cluster{}; cluster_node_id 0: not called, the node
     * is a one-voter group. Peers' addresses are owned (char *). */
    uint64_t cluster_node_id;
    char *cluster_id;
    char *raft_listen;
    char *cluster_data_dir; /* NULL: the state dir beside the meta spool */
    struct cluster_peer *cluster_peers; /* this node included */
    size_t n_cluster_peers;
    bool cluster_bootstrap;
    char *link_listen; /* NULL: no node traffic (one node) */
    struct cluster_settings cluster_settings;   /* configure_cluster.settings */
    uint32_t election_timeout_ms, heartbeat_ms; /* 0: defaults */

    json_t *log_configs;  /* configure_local_logs params, opened later */
    struct logrec **logs; /* one per configure_local_logs call */
    size_t n_logs;

    struct smtp_server **listeners;
    size_t n_listeners;
    struct http_api **http_listeners;
    size_t n_http_listeners;

    /* kumo.dns.configure_resolver{} name servers ("ip:port"), for the
     * resolver. */
    char **dns_servers;
    size_t n_dns_servers;
    uint32_t dns_timeout_ms; /* options.timeout; 0 = the resolver's */
    uint32_t dns_attempts;   /* options.attempts; 0 = the resolver's */

    struct queue_mgr *queues;
    struct egress_mgr *egress;
    struct admin_state *admin; /* active admin rules (admin.c) */
    struct metrics *metrics;   /* counters for /metrics */
    struct kumod_repl *repl;   /* kumod_repl.c; NULL on one node */
    /* kumod_body.c: ids whose body is being fetched (NULL when none). */
    struct km_map *body_fetching;

    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t shutdown_timer;

    /* disk_guard.c: free space of the data spool's file system. */
    uv_timer_t disk_timer;
    bool disk_timer_open;
    bool disk_low;           /* below the soft mark: 452 to new mail */
    bool disk_critical;      /* below the hard mark: stopping */
    double min_free_pct;     /* soft mark in percent (default 10) */
    uint64_t min_free_bytes; /* soft mark in bytes (0: use the percent) */
    double disk_free_pct;
    uint64_t disk_free_bytes;
    uint64_t shutdown_started_ms;
    size_t closing; /* objects whose close callback is still to come */
    size_t inflight_ingests;
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

/* True once the spool is open, raft is ready and recovery has finished. */
bool kumod_is_ready(const struct kumod *kd);
bool kumod_is_stopping(const struct kumod *kd);

/* A new spool id. */
void kumod_new_id(struct kumod *kd, char out[KM_ID_HEX_LEN + 1]);

/* status 0: every message is durable and queued, Reception logged.
 * Otherwise KM_ESPOOL, KM_ENOQUORUM, KM_ECLOSING, KM_ETIMEDOUT: nothing was
 * accepted (already-stored copies are removed). */
typedef void (*kumod_ingest_cb)(void *arg, int status);

/* Make `msgs` durable and queue them. Takes a reference to each message.
 * `reception_protocol` ("ESMTP", "HTTP") and the peer fields go into the
 * Reception records. `cb` runs exactly once, on the loop thread, never
 * before this returns. */
struct kumod_ingest_info {
    const char *reception_protocol;
    const char *peer_name; /* EHLO name */
    const char *peer_addr; /* client IP */
    const char *source_addr;
    const char *session_id;
    const char *tls_cipher, *tls_protocol_version;
    uint64_t timeout_ms; /* data_processing_timeout; 0 = 5 min */
};

void kumod_ingest(struct kumod *kd, struct message *const *msgs, size_t n,
                  const struct kumod_ingest_info *info, kumod_ingest_cb cb,
                  void *arg);

/* Write ev to every configured log. ev->nodeid is filled in here. */
void kumod_log(struct kumod *kd, struct logrec_event *ev);

/* Begin a graceful shutdown (signals call this). */
void kumod_request_shutdown(struct kumod *kd);

/* disk_guard.c: check the data spool's free space every second (CLUSTER.md
 * §4.5, §6 D6). Below the soft mark (define_spool min_free_space, default
 * 10%) new mail gets 452 4.3.1 and StoreBody is refused; below the hard
 * mark (a third of the soft one) a node of a group hands leadership away
 * and stops with exit status 1. */
void kumod_disk_start(struct kumod *kd);
void kumod_disk_stop(struct kumod *kd);
/* Parse a min_free_space value ("10%" or a size) into kd. */
int kumod_disk_parse_mark(struct kumod *kd, const char *s, char *err,
                          size_t errlen);

/* kumod_repl.c: restore the replication factor after a failover
 * (CLUSTER.md §4.6): copy the bodies of under-replicated messages of the
 * shards this node owns to other UP nodes and commit ReplicaUpdate. */

/* Start the rounds (every 2 s) once the node runs; nothing on a one-node
 * kumod. */
void kumod_repl_start(struct kumod *kd);
/* Run a round soon (this node took over a shard). */
void kumod_repl_kick(struct kumod *kd);
/* Stop starting rounds (shutdown). Copies in flight still count in
 * inflight_ingests until answered; commits in flight end with the
 * cluster. */
void kumod_repl_stop(struct kumod *kd);
#endif /* KUMO_KUMOD_H */
