/* cluster_core.h - struct cluster, shared by the files of cluster/ that
 * make up the node's side of the group: cluster_raft.c (raft, batcher,
 * public API), cluster_propose.c (records forwarded to a remote leader),
 * cluster_lease.c (pings, leases, node liveness), cluster_body.c (body
 * replication requests) and cluster_status.c (status fan-out, membership
 * admin). Each file owns the fields its comment names. Loop thread only. */
#ifndef KUMO_CLUSTER_CORE_H
#define KUMO_CLUSTER_CORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "cluster.h"
#include "cluster_int.h"
#include "cluster_link.h"

struct cluster_fwd;   /* cluster_propose.c */
struct cluster_lease; /* cluster_lease.c */
struct km_map;

struct cluster_raft_waiter {
    cluster_commit_cb cb;
    void *arg;
};

/* One proposed raft entry and the callers waiting for it. */
struct cluster_raft_entry {
    struct raft_apply req;
    struct cluster *c;
    struct cluster_raft_waiter *waiters;
    size_t n;
    struct cluster_raft_entry *prev, *next;
};

struct cluster_raft_barrier {
    struct raft_barrier req;
    struct cluster *c;
    uint64_t gen;
};

struct cluster_tls;

struct cluster {
    uv_loop_t *loop;
    struct cluster_config cfg; /* strings point at the copies below */
    char *raft_dir;
    char *raft_addr;
    struct cluster_peer *peers; /* cfg.peers; addresses owned */
    struct cluster_host host;
    struct raft raft;
    struct raft_io io;
    struct raft_uv_transport transport;
    struct cluster_tls *tls; /* NULL: plaintext between nodes */
    struct raft_fsm raft_fsm;
    struct cluster_fsm *fsm;
    uv_check_t check;
    uv_timer_t batch_timer;
    int handles_open;

    /* Leadership, polled in cluster_raft_on_check (0.15 has no callback). */
    bool started;
    bool barrier_sent;   /* a barrier of generation barrier_gen is out */
    bool leader_ready;   /* that barrier applied: proposals accepted */
    bool ready_fired;    /* host->on_ready called */
    bool fatal_reported; /* host->on_fatal called */
    uint64_t barrier_gen;

    /* The batch being filled. */
    struct cluster_rec *fill_recs;
    struct cluster_raft_waiter *fill_waiters;
    size_t fill_n, fill_cap;
    uint64_t batch_seq;

    struct cluster_raft_entry *inflight; /* proposed, not yet applied */

    /* While waiters of a local entry are resolved: its raft index (read
     * by cluster_propose.c to answer a forwarded Propose). */
    uint64_t resolving_index;

    /* Node traffic over NNG (NULL without cfg.link_listen). */
    struct cluster_link *link;
    char *link_listen;
    char *cluster_id;
    struct cluster_fwd *fwd; /* owned by cluster_propose.c */
    /* Connection slots this node uses, per key (cluster_throttle.c):
     * node-local, never replicated. NULL until first used. */
    struct km_map *conn_local;
    struct cluster_lease *lease; /* owned by cluster_lease.c */
    uint64_t guard_term;         /* cluster_guard.c: term in raft_guard */
    uint64_t guard_applied;      /* cluster_guard.c: applied index in it */
    uint64_t guard_next_ms;      /* cluster_guard.c: next periodic write */
    /* cluster_status.c: the leader's promotion of added servers. */
    struct raft_change promote_req;
    bool promoting;
    uint64_t promote_id;
    int promote_role;
    uint64_t promote_next_ms;
    bool fresh_raft; /* raft/ was bootstrapped by this start */

    bool closing;
    cluster_close_cb close_cb;
    void *close_arg;
    uint64_t entries_proposed, records_proposed;
    uint64_t records_forwarded; /* sent to a remote leader */
};

/* cluster_raft.c */

/* Resolve n waiters with status (0: committed and applied here) and free
 * the array. */
void cluster_raft_resolve(struct cluster_raft_waiter *w, size_t n, int status);
/* Report a fatal error to the host once. */
void cluster_raft_fatal(struct cluster *c, int err);
/* The leader's link id and whether one is known. */
bool cluster_raft_leader(const struct cluster *c, uint64_t *id);
/* Queue one record for the batcher as if proposed locally (used by the
 * leader for forwarded records). Takes ownership of rec. */
int cluster_raft_submit_rec(struct cluster *c, struct cluster_rec *rec,
                            cluster_commit_cb cb, void *arg);
/* Register a uv handle of a cluster file that cluster_close must wait for:
 * close it with uv_close(h, cluster_raft_on_handle_closed) from that
 * file's close hook after incrementing c->handles_open. h->data must be c. */
void cluster_raft_on_handle_closed(uv_handle_t *h);

/* cluster_propose.c: records a follower forwards to the leader. */
void cluster_propose_init(struct cluster *c);
/* Send a filled batch (records and waiters, ownership passes) to the
 * leader; waiters resolve once this node has applied the entry. */
void cluster_propose_send(struct cluster *c, struct cluster_rec *recs,
                          struct cluster_raft_waiter *waiters, size_t n);
/* A Propose from a follower (raw LinkEnvelope member 16). */
void cluster_propose_on_request(struct cluster *c, uint64_t from,
                                const struct cluster_link_raw *raw,
                                struct cluster_link_reply *r);
/* Every loop turn: resolve waiters whose entry is applied, retry sends. */
void cluster_propose_check(struct cluster *c);
/* Fail everything pending with status (close). */
void cluster_propose_fini(struct cluster *c, int status);

/* cluster_lease.c: Ping/Pong, leases, NodeState(up/down) on the leader. */
void cluster_lease_init(struct cluster *c);
/* Every loop turn. */
void cluster_lease_check(struct cluster *c);
void cluster_lease_on_ping(struct cluster *c, uint64_t from,
                           const struct cluster_link_ping *ping,
                           struct cluster_link_reply *r);
/* Close: stop timers (uv_close through cluster_raft_on_handle_closed). */
void cluster_lease_close(struct cluster *c);

/* Node states of NodeState records (link.proto NodeStateKind). */
enum cluster_node_state {
    CLUSTER_NODE_JOINING = 1,
    CLUSTER_NODE_UP = 2,
    CLUSTER_NODE_SUSPECT = 3,
    CLUSTER_NODE_DOWN = 4,
    CLUSTER_NODE_DRAINING = 5,
    CLUSTER_NODE_REMOVED = 6,
};

/* On the leader: propose a NodeState record for `node` (raft_addr and
 * link_url may be NULL: keep the known ones). cb as for cluster_enqueue. */
int cluster_lease_set_node_state(struct cluster *c, uint64_t node,
                                 enum cluster_node_state state,
                                 const char *raft_addr, const char *link_url,
                                 cluster_commit_cb cb, void *arg);

/* cluster_guard.c: data_dir/raft_guard (CLUSTER.md §4.9). */

/* After raft_start: refuse raft state older than the guard (KM_ECORRUPT,
 * logged with the operator's remedy); write the guard otherwise. */
int cluster_guard_open(struct cluster *c);
/* Every loop turn: persist a grown term (fatal if that fails). */
void cluster_guard_check(struct cluster *c);

/* cluster_status.c: on the leader, every loop turn (rate limited inside):
 * promote a server added by `cluster add-node` once it can catch up. */
void cluster_status_promote(struct cluster *c);

/* cluster_body.c: StoreBody, FetchBody, ShardCopy requests. */
void cluster_body_on_request(struct cluster *c, uint64_t from,
                             const struct cluster_link_raw *raw,
                             struct cluster_link_reply *r);

/* cluster_status.c: Status and Admin requests. */
void cluster_status_on_request(struct cluster *c, uint64_t from,
                               const struct cluster_link_raw *raw,
                               struct cluster_link_reply *r);
/* Shared by cluster_raft.c and cluster_raft_batch.c. */
/* Records per FsmSnapshot chunk (one raft buffer each): a few MB. */
#define CLUSTER_RAFT_SNAPSHOT_CHUNK 16384

/* Translate a RAFT_* code (STYLE §4: where the call is made). */

int cluster_raft_err(int rv);
void cluster_raft_fail_fill(struct cluster *c, int status);

/* Shared by cluster_fsm.c and cluster_fsm_snapshot.c. */
struct cluster_fsm {
    struct km_map *msgs;      /* id -> struct cluster_fsm_msg */
    struct km_map *tombs;     /* id -> struct cluster_tomb */
    struct km_map *rules;     /* admin rule id -> struct cluster_fsm_admin */
    struct km_map *throttles; /* key -> struct cluster_throttle_win */
    /* Tombstones in FSM-time order, oldest first, for O(1) pruning. */
    struct cluster_tomb *tomb_head;
    struct cluster_tomb **tomb_tail;
    int64_t time_ms;
    struct cluster_host host;
    bool ready;
    cluster_fsm_node_cb node_cb;
    void *node_ctx;

    /* ClusterSettings, once committed (shards and replication_factor
     * never 0 then). */
    bool has_settings;
    struct cluster_settings settings;
    char *cluster_id;
    /* NodeState table, sorted by id. */
    struct cluster_fsm_node *nodes;
    size_t n_nodes;
    /* The shard map: for shard s, map_replicas[s * map_r + i] for
     * i < map_n[s], owner first; epochs[s] starts at 1 with its first
     * list. map_shards 0: no map yet. */
    uint32_t map_shards;
    uint32_t map_r;
    uint32_t *map_n;
    uint64_t *map_replicas;
    uint64_t *epochs;
};

void cluster_fsm_admin_free(struct cluster_fsm_admin *a);
void cluster_fsm_clear(struct cluster_fsm *f);
struct cluster_fsm_msg *cluster_fsm_msg_from_rec(const struct cluster_rec *r);
void cluster_fsm_add_tomb(struct cluster_fsm *f, const char *id, int64_t at_ms);
struct cluster_fsm_admin *
cluster_fsm_admin_from_rec(const struct cluster_rec *r);
void cluster_fsm_admin(struct cluster_fsm *f, const struct cluster_rec *r);
struct cluster_fsm_node *cluster_fsm_find_node(const struct cluster_fsm *f,
                                               uint64_t id);
struct cluster_fsm_node *cluster_fsm_get_node(struct cluster_fsm *f,
                                              uint64_t id);
void cluster_fsm_apply_settings(struct cluster_fsm *f,
                                const struct cluster_rec *r);
#endif /* KUMO_CLUSTER_CORE_H */
