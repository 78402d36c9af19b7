/* cluster_status_int.h - the plain C forms of the Status and Admin link
 * messages (proto/link.proto StatusRequest, StatusReport, Admin, AdminAck)
 * and their codec in cluster_msg_status.c, used by cluster_status.c. Kept
 * apart from cluster_int.h so that protobuf-c types stay inside
 * cluster_msg*.c (STYLE §12). Any thread; no state. */
#ifndef KUMO_CLUSTER_STATUS_INT_H
#define KUMO_CLUSTER_STATUS_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <raft.h>
#include <uv.h>

#include "cluster_core.h"
#include "cluster_link.h"

/* Largest shard count a report may list (ShardStatus entries). */
#define CLUSTER_STATUS_MAX_SHARDS 65536

/* A StatusReport. Strings are truncated to fit when decoded. */
struct cluster_status_report {
    uint64_t node;
    char version[32];
    char raft_state[16];
    uint64_t term, leader_id;
    uint64_t last_index, applied_index, commit_index;
    /* Shards where the node is first in the committed list (owned), or in
     * it at all (backed); of those it owns, how many lack replicas. On the
     * wire one ShardStatus per backed shard, role "owner" or "replica". */
    uint32_t shards_owned, shards_backed, under_replicated;
    uint64_t queued, ready, inflight, free_bytes, body_bytes;
    char policy_checksum[72];
    uint64_t uptime_s;
    bool lease_ok;
};

enum cluster_admin_op {
    CLUSTER_ADMIN_ADD_NODE = 1,
    CLUSTER_ADMIN_REMOVE_NODE = 2,
    CLUSTER_ADMIN_TRANSFER_LEADER = 3,
};

/* An Admin request for a membership change. */
struct cluster_admin_req {
    enum cluster_admin_op op;
    uint64_t node; /* transfer: 0 means any voter */
    char raft_addr[64];
    char link_url[256];
};

/* An AdminAck: status is a KM_E* code (0 on success); message a short
 * reason or result for people. */
struct cluster_admin_ack {
    int status;
    char message[256];
    uint64_t raft_index;
};

/* Encode a StatusRequest, a StatusReport, an Admin or an AdminAck into a
 * km_malloc'd buffer that the caller owns (*out, *len). KM_EINVAL for
 * values that cannot be sent (an admin op without its fields). For a
 * report, `shard_roles` holds one entry per shard index of a map of
 * n_shards shards: 0 none, 1 owner, 2 replica, 3 under-replicated owner. */
int cluster_msg_encode_status_request(bool verbose, void **out, size_t *len);
int cluster_msg_encode_status_report(const struct cluster_status_report *r,
                                     const uint8_t *shard_roles,
                                     uint32_t n_shards, void **out,
                                     size_t *len);
int cluster_msg_encode_admin(const struct cluster_admin_req *a, void **out,
                             size_t *len);
int cluster_msg_encode_admin_ack(const struct cluster_admin_ack *a, void **out,
                                 size_t *len);

/* Decode the packed sub-messages. KM_ECORRUPT for anything malformed: bad
 * protobuf, an unknown admin op, a missing field, more than
 * CLUSTER_STATUS_MAX_SHARDS shards, strings that do not fit. */
int cluster_msg_decode_status_request(const void *data, size_t len,
                                      bool *verbose);
int cluster_msg_decode_status_report(const void *data, size_t len,
                                     struct cluster_status_report *out);
int cluster_msg_decode_admin(const void *data, size_t len,
                             struct cluster_admin_req *out);
int cluster_msg_decode_admin_ack(const void *data, size_t len,
                                 struct cluster_admin_ack *out);

/* A membership change in flight (cluster_member.c), or forwarded to the
 * leader for a follower (cluster_status.c). */
struct cluster_status_admin {
    struct cluster *c;
    struct cluster_admin_req req;
    cluster_admin_cb cb;
    void *arg;
    struct cluster_link_reply *reply; /* serving a follower's request */
    /* Local callers: the deadline, then one loop turn before cb. */
    uv_timer_t timer;
    bool finished; /* the outcome is known */
    bool reported; /* cb has run */
    struct raft_change change;
    struct raft_transfer transfer;
    int status;
    char message[256];
};

/* Shared by cluster_status.c and cluster_member.c. */
#define CLUSTER_STATUS_DEADLINE_MS 1500
/* A local caller hears KM_ETIMEDOUT after this; the change itself goes on
 * (libraft has no way to cancel a promotion that waits for catch-up). */
#define CLUSTER_STATUS_ADMIN_DEADLINE_MS 15000

void cluster_status_admin_on_timer(uv_timer_t *t);
void cluster_status_admin_done(struct cluster_status_admin *op, int status,
                               const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cluster_status_transfer(struct cluster_status_admin *op);
void cluster_status_add(struct cluster_status_admin *op);
void cluster_status_remove(struct cluster_status_admin *op);
#endif /* KUMO_CLUSTER_STATUS_INT_H */
