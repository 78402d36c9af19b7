/* cluster.h - the node's Raft group and the replicated state machine (FSM)
 * that holds queue metadata. A single node is a group of one voter: the
 * same code path. Owns `struct raft`, its libuv I/O and transport, the FSM,
 * the batcher (records from many sessions share one Raft entry) and the
 * leader barrier of CLUSTER.md §1.4. protobuf-c types stay inside cluster/.
 * Loop thread only; apply is deterministic (no clock, no I/O). */
#ifndef KUMO_CLUSTER_H
#define KUMO_CLUSTER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct cluster;            /* opaque */
struct cluster_body_reply; /* opaque: a received body request to answer */

#define CLUSTER_MAX_MSG_REPLICAS 8

/* A message body as it travels between nodes (StoreBody, BodyData):
 * meta is the envelope record of the meta spool, data the message. */
struct cluster_body {
    char id[33];
    uint32_t shard;
    const void *meta;
    size_t meta_len;
    const void *data;
    size_t data_len;
    uint8_t digest[32]; /* SHA-256 of data */
};

/* A node's load, reported in Ping and StatusReport. */
struct cluster_load {
    uint64_t queued, ready, inflight;
    uint64_t free_bytes, body_bytes;
    const char *policy_checksum; /* borrowed for the call */
};

/* Cluster-scoped settings (CLUSTER.md §4.11): set at bootstrap, committed
 * in a ClusterSettings record. 0 means the default. */
struct cluster_settings {
    uint32_t shards;              /* 64 */
    uint32_t replication_factor;  /* 1 node: 1, 3-4: 2, 5+: 3 */
    uint32_t min_replicas;        /* min(2, replication_factor) */
    uint32_t ping_ms;             /* 1000 */
    uint32_t self_fence_after_ms; /* 5000 */
    uint32_t node_down_after_ms;  /* 10000 */
    uint32_t failover_grace_ms;   /* 120000 */
    uint32_t accept_timeout_ms;   /* 30000 */
    uint32_t rebalance_after_ms;  /* 600000 */
};

/* The FSM's view of one queued message (CLUSTER.md §5 `Enqueue` plus its
 * state). Strings are owned by the FSM; a pointer handed to a callback or
 * returned by cluster_lookup() is valid until the next FSM change. */
struct cluster_msg {
    char id[33];
    const char *queue;
    const char *tenant;      /* NULL if unset */
    const char *campaign;    /* NULL if unset */
    const char *egress_pool; /* NULL if unset */
    uint32_t shard;
    int64_t created_ms;
    int64_t due_ms;     /* next attempt, unix ms; 0 = immediately */
    int64_t expires_ms; /* 0 = the queue's max_age decides */
    uint32_t attempts;
    uint64_t size;
    uint8_t digest[32]; /* SHA-256 of the stored body */
    uint64_t accepted_by;
    uint64_t shard_epoch;
    /* The nodes holding a durable copy of the body (CLUSTER.md §4.4). */
    uint64_t replicas[CLUSTER_MAX_MSG_REPLICAS];
    size_t n_replicas;
};

/* An admin rule as the FSM keeps it (CLUSTER.md §4.8): what it means is
 * the daemon's business, carried as JSON. Borrowed in callbacks. */
struct cluster_admin_rule {
    const char *id;   /* UUID */
    int kind;         /* the daemon's enum admin_kind */
    const char *json; /* the rule */
    int64_t expires_ms;
};

/* What the FSM tells the daemon. Called on the loop thread, only after
 * on_ready (the start-up replay is silent). Any may be NULL. */
struct cluster_host {
    void *ctx;
    /* The node is leader (its barrier committed: proposals accepted), or
     * a follower that knows a leader and has applied up to the commit
     * index it learned (proposals still fail with KM_ENOTLEADER): recover
     * queues now. Fired once. */
    void (*on_ready)(void *ctx);
    void (*on_enqueue)(void *ctx, const struct cluster_msg *m);
    void (*on_deferred)(void *ctx, const struct cluster_msg *m);
    void (*on_done)(void *ctx, const char *id, int outcome);
    /* An admin rule was added (cancelled false) or cancelled. */
    void (*on_admin)(void *ctx, const struct cluster_admin_rule *r,
                     bool cancelled);
    /* A fatal raft error (I/O error, disk full): the daemon stops. */
    void (*on_fatal)(void *ctx, int err);
    /* The owner of `shard` changed in the committed shard map (0: none).
     * failover: the old owner was declared down or removed, so the new
     * owner holds inherited messages for failover_grace. */
    void (*on_shard_owner)(void *ctx, uint32_t shard, uint64_t old_owner,
                           uint64_t new_owner, bool failover);
    /* StoreBody from another node: store b durably (synced), then answer
     * with cluster_body_reply(r, status, NULL). */
    void (*on_store_body)(void *ctx, uint64_t from,
                          const struct cluster_body *b,
                          struct cluster_body_reply *r);
    /* FetchBody: answer with cluster_body_reply(r, 0, &body) or
     * KM_ENOENT. */
    void (*on_fetch_body)(void *ctx, uint64_t from, const char *id,
                          struct cluster_body_reply *r);
    /* Connection slots of `key` were granted to this node
     * (cluster_conn_acquire may succeed now). May be NULL. */
    void (*on_conn_slots)(void *ctx, const char *key);
    /* This node's load for Ping and StatusReport. */
    void (*get_load)(void *ctx, struct cluster_load *out);
};

/* One initial voter of a multi-node group. */
struct cluster_peer {
    uint64_t id;           /* raft server id, >= 1 */
    const char *raft_addr; /* "ip:port" (IPv4 literal, fixed port) */
    const char *link_url;  /* "tcp://ip:port"; NULL without a link */
};

struct cluster_config {
    uint64_t node_id;      /* raft server id, >= 1 */
    const char *raft_dir;  /* created if missing; only raft writes here */
    const char *raft_addr; /* "ip:port" (IPv4 literal) */
    uint32_t election_timeout_ms; /* 0 = 1000 */
    uint32_t heartbeat_ms;        /* 0 = 100 */
    uint32_t snapshot_threshold;  /* 0 = 16384 */
    uint32_t snapshot_trailing;   /* 0 = 16384 */
    uint32_t batch_max_ms;        /* 0 = 2 */
    uint32_t batch_max_records;   /* 0 = 256 */
    /* The initial voters, this node included (CLUSTER.md §7: every
     * initial node bootstraps the same list). n_peers 0: a one-voter group
     * of this node alone. Copied by cluster_open. */
    const struct cluster_peer *peers;
    size_t n_peers;
    /* With peers: bootstrap them on a pristine directory. Without, the
     * node starts empty and waits to be added (not implemented yet). */
    bool bootstrap;
    /* Node traffic (CLUSTER.md §4.3): the NNG REP listener, and the id
     * carried and checked in every envelope. NULL: no link (one node). */
    const char *link_listen;
    const char *cluster_id;
    /* Proposed in a ClusterSettings record by the first leader of a
     * bootstrapped group; the committed record wins afterwards. */
    struct cluster_settings settings;
    /* Mutual TLS between nodes (docs/cluster.md "Certificates"): PEM
     * files of the cluster CA, this node's certificate and its key; all
     * NULL for plaintext, which a multi-node group accepts only on
     * loopback or with insecure_plaintext (the wiring checks). */
    const char *tls_ca, *tls_cert, *tls_key;
    bool insecure_plaintext;
};

enum cluster_outcome {
    CLUSTER_DELIVERED = 1,
    CLUSTER_BOUNCED = 2,
    CLUSTER_EXPIRED = 3,
    CLUSTER_ADMIN_BOUNCED = 4,
};

/* status: 0 once the record is committed and applied on this node;
 * KM_ENOQUORUM, KM_ENOTLEADER, KM_ELEADERLOST (outcome unknown: safe to
 * re-propose, records are idempotent by id), KM_ECLOSING. */
typedef void (*cluster_commit_cb)(void *arg, int status);
typedef void (*cluster_close_cb)(void *arg);

/* Open the raft directory, bootstrap on a pristine directory (a one-voter
 * configuration, or every peer as a voter), and start raft. host is copied. The
 * caller owns *out and releases it with cluster_close(). */
int cluster_open(uv_loop_t *loop, const struct cluster_config *cfg,
                 const struct cluster_host *host, struct cluster **out);

/* Propose records through the batcher. The cluster copies what it needs
 * from `m` before returning. cb runs once, on the loop thread. */
int cluster_enqueue(struct cluster *c, const struct cluster_msg *m,
                    cluster_commit_cb cb, void *arg);
int cluster_deferred(struct cluster *c, const char *id, uint32_t attempts,
                     int64_t due_ms, const char *last_response,
                     cluster_commit_cb cb, void *arg);
int cluster_done(struct cluster *c, const char *id,
                 enum cluster_outcome outcome, const char *response,
                 cluster_commit_cb cb, void *arg);

/* Add (or replace) admin rule `id`, or cancel it. Rules whose expires_ms
 * has passed in FSM time are dropped by every node alike. */
int cluster_admin(struct cluster *c, const char *id, int kind, const char *json,
                  int64_t expires_ms, bool cancel, cluster_commit_cb cb,
                  void *arg);
/* Visit the active admin rules; fn returns false to stop. */
void cluster_foreach_admin(const struct cluster *c,
                           bool (*fn)(void *arg,
                                      const struct cluster_admin_rule *r),
                           void *arg);

bool cluster_is_ready(const struct cluster *c);
/* Whether this node is the leader and accepts proposals now. */
bool cluster_is_leader(const struct cluster *c);
size_t cluster_queued_count(const struct cluster *c);
const struct cluster_msg *cluster_lookup(const struct cluster *c,
                                         const char *id);
/* Visit every queued message; fn returns false to stop. */
void cluster_foreach(const struct cluster *c,
                     bool (*fn)(void *arg, const struct cluster_msg *m),
                     void *arg);

struct cluster_stats {
    uint64_t term, commit_index, applied_index, last_index;
    uint64_t leader_id;
    uint64_t entries_proposed, records_proposed;
    const char *state; /* "leader", "follower", "candidate", "unavailable" */
};

void cluster_get_stats(const struct cluster *c, struct cluster_stats *out);

/* A server of the current raft configuration. Borrowed in callbacks. */
struct cluster_member {
    uint64_t id;
    const char *raft_addr;
    bool voter;
};

/* Visit the servers of the current raft configuration; fn returns false
 * to stop. */
void cluster_foreach_member(const struct cluster *c,
                            bool (*fn)(void *arg,
                                       const struct cluster_member *m),
                            void *arg);

/* The ids of the peers configure_cluster listed (this node included), at
 * most max; 0 for a node without peers. */
size_t cluster_configured_peers(const struct cluster *c, uint64_t *out,
                                size_t max);
/* This node's raft id. */
uint64_t cluster_self_id(const struct cluster *c);
/* The cluster-scoped settings in force: the committed ones, else the
 * configured ones, with defaults filled in. */
void cluster_get_settings(const struct cluster *c,
                          struct cluster_settings *out);

/* Sharding and delivery ownership (CLUSTER.md §4.4, §4.6). */

/* The shard of a message: H(lowercased routing domain) mod shards, with
 * lanes. */
uint32_t cluster_shard_for(const struct cluster *c, const char *routing_domain,
                           const char *id);
/* The committed replica list of `shard`, owner first, at most max; its
 * epoch in *epoch (may be NULL). 0 while no map is committed yet. */
size_t cluster_shard_replicas(const struct cluster *c, uint32_t shard,
                              uint64_t *out, size_t max, uint64_t *epoch);
/* The nodes that are up, in HRW order for `shard` (hinted replicas). */
size_t cluster_live_nodes(const struct cluster *c, uint32_t shard,
                          uint64_t *out, size_t max);
/* Whether this node owns `shard` in the committed map. */
bool cluster_owns(const struct cluster *c, uint32_t shard);
/* Whether this node may start a delivery attempt for `shard` now: it owns
 * the shard, its lease is valid and its FSM has caught up. Always true for
 * a one-node group. */
bool cluster_may_deliver(const struct cluster *c, uint32_t shard);
/* Whether this node's lease is valid now (always for one node). */
bool cluster_has_lease(const struct cluster *c);

/* Body replication (CLUSTER.md §4.3, §4.5). */

typedef void (*cluster_body_cb)(void *arg, int status);
typedef void (*cluster_fetch_cb)(void *arg, int status,
                                 const struct cluster_body *b);
/* Send a copy of b (copied) to `node`; cb(0) once it is durable there,
 * KM_ETIMEDOUT after timeout_ms (0: 5000), KM_ENOSPC, KM_EIO... cb runs
 * once, never from inside the call. */
int cluster_store_body(struct cluster *c, uint64_t node,
                       const struct cluster_body *b, uint32_t timeout_ms,
                       cluster_body_cb cb, void *arg);
/* Fetch message `id` from `node`; cb gets the body (borrowed for the
 * call) or KM_ENOENT, KM_ETIMEDOUT... */
int cluster_fetch_body(struct cluster *c, uint64_t node, const char *id,
                       cluster_fetch_cb cb, void *arg);
/* Answer a body request (on_store_body: b NULL; on_fetch_body: the body,
 * copied). `r` is spent. */
void cluster_body_reply(struct cluster_body_reply *r, int status,
                        const struct cluster_body *b);

/* Hand Raft leadership to the most up-to-date other voter (disk full,
 * CLUSTER.md §1.4). KM_ENOTLEADER if this node is not the leader. */
int cluster_hand_off(struct cluster *c);

/* Stop proposing (pending callbacks get KM_ECLOSING unless already
 * committed), close raft and its I/O, then call cb. Frees c. */
void cluster_close(struct cluster *c, cluster_close_cb cb, void *arg);

/* Cluster status and membership admin (CLUSTER.md §4.3, §4.8). */

/* One member of the raft configuration as `cluster status` shows it. A
 * member that did not answer in time has reachable false; only id,
 * raft_addr, link_url and voter are meaningful then. */
struct cluster_member_status {
    uint64_t id;
    char raft_addr[64];
    char link_url[256]; /* "" when this node does not know it */
    bool voter;
    bool self;
    bool reachable;
    char role[16]; /* its raft state: leader, follower, candidate... */
    uint64_t term, leader_id;
    uint64_t last_index, applied, commit;
    /* How far its applied index trails the highest commit index reported
     * by any member. */
    uint64_t lag;
    /* Round trip of its StatusReport in ms (0 for this node); the age of
     * the last contact, as seen from the collecting node. */
    uint64_t contact_ms;
    /* 1 valid, 0 fenced, -1 unknown (only this node's lease is known; see
     * the report's interface requests). */
    int lease_ok;
    uint32_t shards_owned, shards_backed, under_replicated;
    uint64_t queued, ready, inflight, free_bytes, body_bytes;
    char policy_checksum[72];
    char version[32];
    uint64_t uptime_s;
    /* How this node talks to the member. For this node: "tls", or
     * "plaintext" ("insecure" with insecure_plaintext). For another: "tls"
     * if every raft connection between us that is up is mutual TLS, else
     * "plaintext"/"insecure"; "" if none is up. cert_expiry: the notAfter
     * (unix s) of this node's own certificate, or of the member's as seen
     * on our TLS connections (the earliest); 0 unknown. */
    char tls[16];
    int64_t cert_expiry;
};

/* rows (n of them, in raft configuration order) are borrowed for the
 * call. */
typedef void (*cluster_status_cb)(void *arg,
                                  const struct cluster_member_status *rows,
                                  size_t n);

/* Ask every member of the raft configuration for a StatusReport (this node
 * answers locally) and call cb once, on the loop thread and never from
 * inside this call, when all have answered or deadline_ms (0: 1500) has
 * passed; members that did not answer are marked unreachable. cb may run
 * after cluster_close() has started (with what was gathered): it must not
 * use c then. Returns 0 (cb will run). */
int cluster_status_collect(struct cluster *c, uint32_t deadline_ms,
                           cluster_status_cb cb, void *arg);

/* The outcome of a membership change: status 0, or KM_ENOENT (unknown
 * node), KM_EINVAL (already a member, self-removal of the leader, a bad
 * address), KM_EAGAIN (not done yet: another change is in progress, or the
 * node is still draining its shards: call again), KM_ENOTLEADER or
 * KM_ENOQUORUM (no leader to ask), KM_ETIMEDOUT, KM_ECLOSING. message (a
 * borrowed short text for people, never NULL) says what happened. cb runs
 * once, on the loop thread, never from inside the call. */
typedef void (*cluster_admin_cb)(void *arg, int status, const char *message);

/* Move leadership to `target` (0: the most up-to-date voter) with
 * raft_transfer. Asked of the leader over the link when this node is a
 * follower. Success means the target (or some node) leads now. */
int cluster_transfer_leader(struct cluster *c, uint64_t target,
                            cluster_admin_cb cb, void *arg);

/* Add node `id` (raft "ip:port", link url, both copied) as a voter: the
 * leader adds it as a spare, promotes it (libraft catches it up first),
 * adds it to its link peers and commits NodeState(JOINING). The node must
 * run with bootstrap = false and an empty raft directory. */
int cluster_add_node(struct cluster *c, uint64_t id, const char *raft_addr,
                     const char *link_url, cluster_admin_cb cb, void *arg);

/* Remove node `id`: commit NodeState(DRAINING); while it still owns a
 * shard in the committed map, answer KM_EAGAIN (call again to continue);
 * then raft_remove it and commit NodeState(REMOVED). The leader cannot
 * remove itself: transfer leadership first. */
int cluster_remove_node(struct cluster *c, uint64_t id, cluster_admin_cb cb,
                        void *arg);

/* Records this node forwarded to a remote leader since it started (for
 * metrics; records it proposed itself are in cluster_stats). */
uint64_t cluster_records_forwarded(const struct cluster *c);

/* Cluster-wide throttles (CLUSTER.md §4.7): token grants in the FSM. */

/* Longest throttle key, in bytes. */
#define CLUSTER_MAX_THROTTLE_KEY_LEN 256

/* Whether this node is one of a group of several nodes with node links
 * (c may be NULL: a node without configure_cluster). The one answer to
 * "in a group?": only then are bodies replicated, shards owned by one
 * node, and the disk's hard mark handled by handing leadership away. */
bool cluster_is_group(const struct cluster *c);

/* Whether throttles without `local:` are shared by the group: true in a
 * cluster with node links, false for a single node (c may be NULL). */
bool cluster_throttle_is_shared(const struct cluster *c);

/* Take one token of the cluster-wide throttle `key` (at most `limit` per
 * `period_ms` across the cluster, windows aligned on FSM time; now_ms is
 * the wall clock in unix ms). 0 when this node holds an unspent token of
 * the current window (it is spent); KM_EAGAIN when not: then, unless a
 * request is already in flight or the window is used up, it proposes a
 * ThrottleGrant for max(1, limit / (4 * UP nodes)) tokens (and first a
 * ThrottleDefine when the FSM does not know the key or has another
 * definition for it), so a later call may succeed. Tokens expire with
 * their window. KM_EINVAL for an empty or over-long key, or a zero limit
 * or period. */
int cluster_throttle_take(struct cluster *c, const char *key, uint64_t limit,
                          uint64_t period_ms, uint64_t now_ms);

/* Cluster-wide connection slots (CLUSTER.md §4.7): at most `limit`
 * connections for `key` held by all nodes together. 0 when this node may
 * open one more connection now (the slot counts as used until
 * cluster_conn_release); KM_EAGAIN when not: unless one is in flight, a
 * request for `want` slots (at least 1, at most what is left) is proposed,
 * and host.on_conn_slots tells when it was granted. KM_EINVAL
 * for an empty or over-long key or a zero limit. Only where
 * cluster_throttle_is_shared(). */
int cluster_conn_acquire(struct cluster *c, const char *key, uint32_t limit,
                         uint32_t want);
/* A connection that held a slot of `key` closed: give the slot back. */
void cluster_conn_release(struct cluster *c, const char *key);
/* Give back slots this node holds but does not use (after a restart, or a
 * release that could not be proposed). Run on the lease timer. */
void cluster_conn_reconcile(struct cluster *c);
/* Restoring R after failover (CLUSTER.md §4.6 "Bodies after failover",
 * §5 ReplicaUpdate). A message is under-replicated while fewer of the
 * nodes in its replica list are UP than min(replication_factor, UP
 * nodes). */

/* Propose ReplicaUpdate{shard, ids, add_node, remove_node} through the
 * batcher: every listed id still queued in `shard` gets add_node added to
 * its replica list (if missing), then remove_node dropped (unless it is
 * the last one); other ids are ignored. ids (1 to 4096 of them, 32 hex
 * digits each) are copied. cb as for cluster_enqueue. KM_EINVAL for a bad
 * record (no ids, both nodes 0 or equal). */
int cluster_replica_update(struct cluster *c, uint32_t shard,
                           const char *const *ids, size_t n, uint64_t add_node,
                           uint64_t remove_node, cluster_commit_cb cb,
                           void *arg);

/* The number of queued messages whose shard has no owner able to deliver
 * them, as far as this node knows (cluster_lease_owner_able: an owner not
 * UP, outside the raft configuration, or with its lease run out; the
 * leader judges every node, a follower only itself). Down detection
 * reassigns such shards within node_down_after, and the new owner delivers
 * after failover_grace. 0 for a group without a link. */
size_t cluster_unowned(const struct cluster *c);

/* The number of queued messages that are under-replicated (0 for one
 * node, or before the settings are committed). */
size_t cluster_under_replicated(const struct cluster *c);

/* An under-replicated message of a shard this node owns. msg is borrowed
 * for the call. target is the first UP node in cluster_live_nodes() order
 * for its shard that is not in its replica list (it may be this node,
 * when it holds a copy it fetched but is not listed). */
struct cluster_replica_need {
    const struct cluster_msg *msg;
    uint64_t target;
    size_t up_copies; /* UP nodes in its replica list */
    size_t want;      /* min(replication_factor, UP nodes) */
};

/* fn returns false to stop. It must not change the FSM (proposing is
 * fine: records apply later). */
typedef bool (*cluster_replica_visit_cb)(void *arg,
                                         const struct cluster_replica_need *n);

/* Visit the under-replicated messages of the shards this node owns that
 * some UP node could still receive. Nothing on a group without a link. */
void cluster_foreach_under_replicated(const struct cluster *c,
                                      cluster_replica_visit_cb fn, void *arg);
#endif /* KUMO_CLUSTER_H */
