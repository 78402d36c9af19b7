/* cluster_int.h - declarations shared inside cluster/: the plain C records
 * that cluster_msg.c converts to and from protobuf (so protobuf-c types
 * never leave cluster_msg*.c), and the deterministic FSM of cluster_fsm.c
 * that cluster_raft.c drives. Loop thread only. */
#ifndef KUMO_CLUSTER_INT_H
#define KUMO_CLUSTER_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.h"

/* Limits checked when encoding and when decoding (bad input is rejected
 * with KM_ECORRUPT, never asserted on). */
#define CLUSTER_MAX_ENTRY_BYTES    (16u << 20) /* one encoded RaftBatch */
#define CLUSTER_MAX_BATCH_RECORDS  65536
#define CLUSTER_MAX_NAME_LEN       1024 /* queue, tenant, campaign, pool */
#define CLUSTER_MAX_RESPONSE_LEN   512  /* longer responses are truncated */
#define CLUSTER_MAX_REPLICAS       16
#define CLUSTER_MAX_SNAPSHOT_CHUNK (64u << 20)

/* Tombstones live this long in FSM time (the dedupe window). */
#define CLUSTER_TOMBSTONE_TTL_MS (24LL * 3600 * 1000)

enum cluster_rec_kind {
    CLUSTER_REC_OTHER = 0, /* a command this version does not apply yet */
    CLUSTER_REC_ENQUEUE,
    CLUSTER_REC_DEFERRED,
    CLUSTER_REC_DONE,
    CLUSTER_REC_ADMIN,
    CLUSTER_REC_SETTINGS,        /* ClusterSettings */
    CLUSTER_REC_NODE_STATE,      /* NodeState */
    CLUSTER_REC_THROTTLE_DEFINE, /* ThrottleDefine */
    CLUSTER_REC_THROTTLE_GRANT,  /* ThrottleGrant */
    CLUSTER_REC_THROTTLE_RETURN, /* ThrottleReturn */
    CLUSTER_REC_REPLICA_UPDATE,  /* ReplicaUpdate (cluster_replica.c) */
};

/* Longest throttle key (ThrottleDefine, ThrottleGrant). */
#define CLUSTER_MAX_THROTTLE_KEY CLUSTER_MAX_THROTTLE_KEY_LEN
/* The period of a connection-slot key (cluster_conn_acquire): a window
 * that never ends, so grants are slots held until returned. */
#define CLUSTER_CONN_PERIOD_MS ((uint64_t)(INT64_MAX / 2))
/* Most throttle keys an FSM holds (further defines are ignored). */
#define CLUSTER_MAX_THROTTLES 4096

/* Longest cluster id and link or raft address carried in records. */
#define CLUSTER_MAX_CLUSTER_ID 64
#define CLUSTER_MAX_ADDR_LEN   256
/* Most nodes a NodeState table holds (bad input beyond is rejected). */
#define CLUSTER_MAX_NODES 1024
/* Most shards a ClusterSettings record may ask for. */
#define CLUSTER_MAX_SHARDS 65536

/* One record of a RaftBatch. Strings and replicas are owned by the record
 * (cluster_rec_fini releases them); NULL means unset. */
struct cluster_rec {
    enum cluster_rec_kind kind;
    char id[33];
    uint64_t shard_epoch;
    /* Enqueue (attempts and due_ms also for Deferred) */
    char *queue;
    char *tenant;
    char *campaign;
    char *egress_pool;
    uint32_t shard;
    uint64_t *replicas;
    size_t n_replicas;
    int64_t created_ms;
    int64_t due_ms;
    int64_t expires_ms;
    uint32_t attempts;
    uint64_t size;
    uint8_t digest[32];
    uint64_t accepted_by;
    /* Deferred: last_response; Done: response */
    char *response;
    bool crash_attempt;
    /* Done */
    int outcome; /* enum cluster_outcome */
    int64_t at_ms;
    /* Admin (expires_ms above is the rule's expiry) */
    char admin_id[37];
    int admin_kind;
    char *admin_json;
    bool admin_cancel;
    /* Settings: every field as committed (0 = the default) */
    struct cluster_settings settings;
    char *cluster_id;
    /* NodeState: node_state is an enum cluster_node_state (cluster_core.h);
     * raft_addr and link_url NULL keep the known ones; weight 0 means 1 */
    uint64_t node;
    int node_state;
    char *raft_addr;
    char *link_url;
    uint32_t weight;
    /* ThrottleDefine: key, limit, period_ms; ThrottleGrant: key, node
     * (above), want; ThrottleReturn: key, node, want (tokens given back) */
    char *throttle_key;
    uint64_t limit;
    uint64_t period_ms;
    uint64_t want;
    /* ReplicaUpdate (shard above): ids[n_ids] (owned), add_node and
     * remove_node (0: none) */
    char (*ids)[33];
    size_t n_ids;
    uint64_t add_node;
    uint64_t remove_node;
};

/* One node's tokens of a throttle window. */
struct cluster_throttle_grant {
    uint64_t node;
    uint64_t tokens;
};

/* A cluster-wide throttle as the FSM holds it (CLUSTER.md §4.7): the
 * definition, the current window (aligned on FSM time) and what each node
 * was granted in it. The node-local fields below are not replicated (not
 * in snapshots): how many of this node's tokens it has used, and whether a
 * ThrottleGrant of its own is in flight. All owned by the FSM. */
struct cluster_throttle_win {
    char *key;
    uint64_t limit;
    uint64_t period_ms;
    int64_t window_start_ms;
    uint64_t granted; /* sum of grants[i].tokens */
    struct cluster_throttle_grant *grants;
    size_t n_grants;
    /* node-local */
    int64_t local_window_ms; /* window local_used counts in */
    uint64_t local_used;
    bool local_inflight;
    bool local_defining;
};

/* A node of the FSM's NodeState table (owned strings, NULL if unknown). */
struct cluster_fsm_node {
    uint64_t id;
    int state; /* enum cluster_node_state */
    char *raft_addr;
    char *link_url;
    uint32_t weight;
};

/* The cluster part of an FSM image: settings (NULL if none committed),
 * the node table by id and the committed shard map: for shard s,
 * replicas[s * r + i] for i < n_replicas[s], its epoch epochs[s].
 * Borrowed. */
struct cluster_snap_cluster {
    const struct cluster_settings *settings;
    const char *cluster_id;
    const struct cluster_fsm_node *nodes;
    size_t n_nodes;
    uint32_t shards; /* 0: no map */
    uint32_t r;
    const uint32_t *n_replicas;
    const uint64_t *replicas;
    const uint64_t *epochs;
    /* Throttle windows (key, definition, window, grants). */
    const struct cluster_throttle_win *const *throttles;
    size_t n_throttles;
};

/* An admin rule in the FSM (owned strings). */
struct cluster_fsm_admin {
    struct cluster_admin_rule pub; /* points at the fields below */
    char id[37];
    char *json;
};

/* One Raft entry's payload. recs is owned by the batch. */
struct cluster_batch {
    uint64_t proposer_node;
    int64_t batch_time_ms;
    uint64_t batch_seq;
    struct cluster_rec *recs;
    size_t n;
};

/* A queued message as the FSM holds it: the public view plus state that
 * only the cluster layer needs. Everything is owned by the FSM entry. */
struct cluster_fsm_msg {
    struct cluster_msg pub; /* pub's strings point at the fields below */
    char *queue;
    char *tenant;
    char *campaign;
    char *egress_pool;
    char *last_response;
    uint64_t shard_epoch;
    uint64_t *replicas;
    size_t n_replicas;
};

/* A done message's id, kept to ignore a late duplicate Enqueue. */
struct cluster_tomb {
    struct cluster_tomb *next; /* FIFO by done_at_ms, for pruning */
    char id[33];
    int64_t done_at_ms;
};

/* A buffer allocated with the caller's allocator (raft_malloc). */
struct cluster_blob {
    void *base;
    size_t len;
};

typedef void *(*cluster_alloc_fn)(size_t n);
typedef void (*cluster_free_fn)(void *p);

/* Receives what a snapshot holds, in order. on_msg gets a borrowed
 * CLUSTER_REC_ENQUEUE record whose attempts and due_ms are the message's
 * current state and whose response is its last response. Returning
 * non-zero stops the decoding with that error. */
struct cluster_snap_sink {
    void *ctx;
    void (*on_time)(void *ctx, int64_t fsm_time_ms);
    int (*on_msg)(void *ctx, const struct cluster_rec *rec);
    int (*on_tomb)(void *ctx, const char *id, int64_t done_at_ms);
    int (*on_admin)(void *ctx, const struct cluster_rec *rec);
    /* A SETTINGS record (first chunk), a NODE_STATE record per node. */
    int (*on_settings)(void *ctx, const struct cluster_rec *rec);
    int (*on_node)(void *ctx, const struct cluster_rec *rec);
    /* One shard of the map: its epoch and replica list (owner first). */
    int (*on_shard)(void *ctx, uint32_t shard, uint64_t epoch,
                    const uint64_t *replicas, size_t n);
    /* One throttle window (borrowed; only the replicated fields set). */
    int (*on_throttle)(void *ctx, const struct cluster_throttle_win *w);
};

/* cluster_msg.c */

/* Release what rec owns (not rec itself). */
void cluster_rec_fini(struct cluster_rec *rec);
/* Release the records and their array (not b itself). */
void cluster_batch_fini(struct cluster_batch *b);

/* Encode b as a framed RaftBatch (length a multiple of 8, as libraft
 * requires) into a new buffer from alloc, which the caller owns (*out,
 * *len). KM_EINVAL if a record breaks the limits above or has
 * an id that is not 32 hex digits, KM_E2BIG if the result would exceed
 * CLUSTER_MAX_ENTRY_BYTES. */
int cluster_msg_encode_batch(const struct cluster_batch *b,
                             cluster_alloc_fn alloc, void **out, size_t *len);

/* Check that rec would encode: 0 or KM_EINVAL (the same checks as
 * cluster_msg_encode_batch, so one bad record cannot fail a whole batch). */
int cluster_msg_check_rec(const struct cluster_rec *rec);

/* Decode a RaftBatch into *out (the caller owns it: cluster_batch_fini).
 * KM_E2BIG if len is over the limit, KM_ECORRUPT on malformed input. */
int cluster_msg_decode_batch(const void *data, size_t len,
                             struct cluster_batch *out);

/* Encode an FSM image as length-prefixed FsmSnapshot chunks of at most
 * chunk_records records each, one blob per chunk, allocated with alloc.
 * The caller owns *out (a km_malloc'd array, *n entries) and each base. */
int cluster_msg_encode_snapshot(
    int64_t fsm_time_ms, const struct cluster_fsm_msg *const *msgs,
    size_t n_msgs, const struct cluster_tomb *const *tombs, size_t n_tombs,
    const struct cluster_fsm_admin *const *rules, size_t n_rules,
    const struct cluster_snap_cluster *cl, size_t chunk_records,
    cluster_alloc_fn alloc, cluster_free_fn release, struct cluster_blob **out,
    size_t *n);

/* Decode a snapshot written by cluster_msg_encode_snapshot, handing every
 * item to sink. KM_ECORRUPT on malformed input, or sink's error. */
int cluster_msg_decode_snapshot(const void *data, size_t len,
                                const struct cluster_snap_sink *sink);

/* Propose / ProposeAck link messages (CLUSTER.md §4.3). */

/* Status values of link replies: the `Status` enum of link.proto. */
enum cluster_link_status {
    CLUSTER_ST_OK = 0,
    CLUSTER_ST_NOT_LEADER = 1,
    CLUSTER_ST_NO_QUORUM = 2,
    CLUSTER_ST_NO_SPACE = 3,
    CLUSTER_ST_BAD_DIGEST = 4,
    CLUSTER_ST_NOT_FOUND = 5,
    CLUSTER_ST_STALE_EPOCH = 6,
    CLUSTER_ST_BUSY = 7,
    CLUSTER_ST_INTERNAL = 8,
};

struct cluster_propose_ack {
    int status; /* enum cluster_link_status */
    uint64_t raft_index;
    uint64_t leader_id;
};

/* Encode b's records as a Propose (origin_batch_id = b->batch_seq) into a
 * km_malloc'd buffer the caller owns. KM_EINVAL for a bad record, KM_E2BIG
 * over the entry limit. */
int cluster_msg_encode_propose(const struct cluster_batch *b, void **out,
                               size_t *len);
/* Decode a Propose into *out (the caller owns it: cluster_batch_fini);
 * KM_ECORRUPT or KM_E2BIG on bad input. */
int cluster_msg_decode_propose(const void *data, size_t len,
                               struct cluster_batch *out);
int cluster_msg_encode_propose_ack(const struct cluster_propose_ack *a,
                                   void **out, size_t *len);
int cluster_msg_decode_propose_ack(const void *data, size_t len,
                                   struct cluster_propose_ack *out);

/* cluster_fsm.c: deterministic, no clock, no I/O. */
struct cluster_fsm;

/* A new empty FSM; the caller owns it (cluster_fsm_free). */
struct cluster_fsm *cluster_fsm_new(void);
void cluster_fsm_free(struct cluster_fsm *f);
void cluster_fsm_msg_free(struct cluster_fsm_msg *m);

/* Host callbacks (copied) fire only while ready is set. */
void cluster_fsm_set_host(struct cluster_fsm *f,
                          const struct cluster_host *host);
void cluster_fsm_set_ready(struct cluster_fsm *f, bool ready);

/* Told about every NodeState applied (also during replay, and for every
 * node after a restore), so the node can reach new peers. `n` is borrowed
 * for the call. Must not change the FSM. */
typedef void (*cluster_fsm_node_cb)(void *ctx,
                                    const struct cluster_fsm_node *n);
void cluster_fsm_set_node_notify(struct cluster_fsm *f, cluster_fsm_node_cb cb,
                                 void *ctx);

/* The committed settings (defaults filled in for shards and
 * replication_factor) in *out and true, or false before any. */
/* The cluster id of the committed settings, NULL before them. */
const char *cluster_fsm_cluster_id(const struct cluster_fsm *f);
bool cluster_fsm_settings(const struct cluster_fsm *f,
                          struct cluster_settings *out);
/* The node table, sorted by id: *out borrowed until the next change. */
size_t cluster_fsm_nodes(const struct cluster_fsm *f,
                         const struct cluster_fsm_node **out);
/* The node `id` (borrowed) or NULL. */
const struct cluster_fsm_node *cluster_fsm_node(const struct cluster_fsm *f,
                                                uint64_t id);
/* The committed replica list of `shard` (borrowed, owner first) and its
 * epoch; 0 entries when there is no map or `shard` is out of range. */
size_t cluster_fsm_shard(const struct cluster_fsm *f, uint32_t shard,
                         const uint64_t **out, uint64_t *epoch);

/* Decode one Raft entry and apply it. KM_ECORRUPT (or KM_E2BIG) leaves
 * the state untouched. */
int cluster_fsm_apply(struct cluster_fsm *f, const void *data, size_t len);
/* Apply an already decoded batch (borrowed). */
void cluster_fsm_apply_batch(struct cluster_fsm *f,
                             const struct cluster_batch *b);

/* Image of the state as blobs from alloc (see cluster_msg_encode_snapshot;
 * the caller owns the array and the bases). */
int cluster_fsm_snapshot(const struct cluster_fsm *f, size_t chunk_records,
                         cluster_alloc_fn alloc, cluster_free_fn release,
                         struct cluster_blob **out, size_t *n);
/* Replace the state with a snapshot image (borrowed bytes). On error the
 * old state is kept. */
int cluster_fsm_restore(struct cluster_fsm *f, const void *data, size_t len);

int64_t cluster_fsm_time_ms(const struct cluster_fsm *f);
size_t cluster_fsm_count(const struct cluster_fsm *f);
size_t cluster_fsm_tombstone_count(const struct cluster_fsm *f);
/* True if id is done within the dedupe window. */
bool cluster_fsm_is_tombstoned(const struct cluster_fsm *f, const char *id);
const struct cluster_fsm_msg *cluster_fsm_lookup(const struct cluster_fsm *f,
                                                 const char *id);
void cluster_fsm_foreach_admin(const struct cluster_fsm *f,
                               bool (*fn)(void *arg,
                                          const struct cluster_admin_rule *r),
                               void *arg);
size_t cluster_fsm_admin_count(const struct cluster_fsm *f);
void cluster_fsm_foreach(const struct cluster_fsm *f,
                         bool (*fn)(void *arg, const struct cluster_msg *m),
                         void *arg);

/* The throttle `key` (borrowed) or NULL. Not const: its node-local
 * fields are the caller's (cluster_throttle.c). */
/* Every throttle window, by key (borrowed). */
const struct km_map *cluster_fsm_throttle_map(const struct cluster_fsm *f);
struct cluster_throttle_win *cluster_fsm_throttle(struct cluster_fsm *f,
                                                  const char *key);
/* Number of UP nodes in the node table. */
size_t cluster_fsm_up_count(const struct cluster_fsm *f);

/* cluster_throttle.c: the FSM side (deterministic) */

/* Window start of time t for period p: floor(t / p) * p (t < 0: 0). */
int64_t cluster_throttle_window_of(int64_t t_ms, uint64_t period_ms);
/* Release a window and what it owns. */
void cluster_throttle_win_free(struct cluster_throttle_win *w);
/* A window copied from w's replicated fields (the caller owns it). */
struct cluster_throttle_win *
cluster_throttle_win_dup(const struct cluster_throttle_win *w);
/* Apply a ThrottleDefine at FSM time now_ms: create the key, or change
 * its definition (a new period starts a fresh window); the same key,
 * limit and period change nothing. *w is the key's window or NULL. */
void cluster_throttle_apply_define(struct cluster_throttle_win **w,
                                   const struct cluster_rec *r, int64_t now_ms);
/* Apply a ThrottleGrant to w at FSM time now_ms: roll the window if now_ms
 * is past it, then grant min(want, limit - granted) to r->node. Returns
 * the tokens granted. */
uint64_t cluster_throttle_apply_grant(struct cluster_throttle_win *w,
                                      const struct cluster_rec *r,
                                      int64_t now_ms);
/* ThrottleReturn: take back up to r->want of r->node's tokens. */
void cluster_throttle_apply_return(struct cluster_throttle_win *w,
                                   const struct cluster_rec *r);
/* Free c->conn_local (cluster_throttle.c). */
void cluster_conn_free_local(struct cluster *c);
/* A node is down or removed: the slots it held are free again. */
void cluster_throttle_forget_node(struct cluster_throttle_win *w,
                                  uint64_t node);

/* The tokens granted to `node` in w's current window. */
uint64_t cluster_throttle_win_tokens(const struct cluster_throttle_win *w,
                                     uint64_t node);

/* Between cluster_raft.c, cluster_lease.c and cluster_place.c (which see
 * struct cluster through cluster_core.h). */

typedef void (*cluster_raft_barrier_cb)(void *arg, int status);
/* Append a raft barrier (leader only); cb(arg, 0) once everything before it
 * is committed and applied, or a KM_E* code. cb runs once unless this
 * returns an error. */
int cluster_raft_barrier(struct cluster *c, cluster_raft_barrier_cb cb,
                         void *arg);
/* cluster_lease.c: the node became a ready leader; as the first leader
 * of a group with a link, propose the bootstrap settings and nodes. */
void cluster_lease_on_leader_ready(struct cluster *c);
/* cluster_lease.c: whether this node's FSM has applied the commit index
 * of the last Pong (the leader: whether it is ready). */
bool cluster_lease_caught_up(const struct cluster *c);
/* cluster_lease.c: whether node `id` can deliver what it owns, as far as
 * this node knows: UP in the FSM, a member of the raft configuration, and
 * holding a lease (this node), or heard within self_fence_after (another
 * node, judged on the leader only). */
bool cluster_lease_owner_able(const struct cluster *c, uint64_t id);
/* cluster_lease.c: the commit index of the last lease Pong (0: none). */
uint64_t cluster_lease_leader_commit(const struct cluster *c);

/* cluster_replica.c: ReplicaUpdate records and under-replicated messages
 * (CLUSTER.md §4.6 "Bodies after failover", §5). */

/* Most ids one ReplicaUpdate record carries. */
#define CLUSTER_MAX_REPLICA_IDS 4096

/* Apply a ReplicaUpdate (borrowed) to m's replica list: add add_node if
 * missing, then drop remove_node unless it is the last replica. Returns
 * whether the list changed. Deterministic. */
bool cluster_replica_apply_msg(struct cluster_fsm_msg *m,
                               const struct cluster_rec *r);

/* How many UP replicas a message needs: min(R, UP nodes) of f's
 * committed state (0 without settings or nodes). */
size_t cluster_replica_want(const struct cluster_fsm *f);
/* How many of m's replicas are UP nodes in f. */
size_t cluster_replica_up_copies(const struct cluster_fsm *f,
                                 const struct cluster_msg *m);
/* Live messages of f with fewer UP replicas than cluster_replica_want. */
size_t cluster_replica_count(const struct cluster_fsm *f);
#endif /* KUMO_CLUSTER_INT_H */
