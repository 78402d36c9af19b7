/* cluster_transport_check.h - validation of the raft byte stream that a
 * peer sends us, before libraft sees any of it: the raft_uv_tcp handshake
 * (protocol, id, address) and every message's preamble and header (type,
 * sizes against configured maxima, terms and indexes in range, sender a
 * member, and a voter where only a voter may send). Payload bytes pass
 * through uninspected once their header is accepted. A pure state machine:
 * no I/O, no clock; the relay in cluster_transport.c feeds it. */
#ifndef KUMO_CLUSTER_TRANSPORT_CHECK_H
#define KUMO_CLUSTER_TRANSPORT_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

/* Is `id`, claiming raft address `address`, a member of the group? Sets
 * *voter. NULL: every id is a voter (tests of the framing alone). */
typedef bool (*cluster_tcheck_member_cb)(void *ctx, uint64_t id,
                                         const char *address, bool *voter);

/* Maxima; 0 takes the default named. */
struct cluster_tcheck_limits {
    uint64_t max_entries;        /* entries in one AppendEntries: 1048576 */
    uint64_t max_append_bytes;   /* AppendEntries payload: 1 GiB */
    uint64_t max_snapshot_bytes; /* InstallSnapshot payload: 4 GiB */
    uint64_t max_term;           /* terms and indexes: below 2^48 */
};

#define CLUSTER_TCHECK_MAX_ADDRESS 256 /* handshake address, padded */

struct cluster_tcheck {
    struct cluster_tcheck_limits lim;
    cluster_tcheck_member_cb member;
    void *member_ctx;
    int state;
    struct buf in;     /* the handshake, preamble or header being read */
    size_t want;       /* bytes `in` must reach for the current unit */
    uint64_t payload;  /* payload bytes still to pass through */
    uint64_t msg_type; /* of the message being read */
    uint64_t peer_id;  /* from the handshake */
    char peer_addr[CLUSTER_TCHECK_MAX_ADDRESS];
    bool peer_voter;
    bool handshake_done;
    uint64_t messages; /* accepted so far */
    char why[160];     /* the reason of the last refusal */
};

void cluster_tcheck_init(struct cluster_tcheck *k,
                         const struct cluster_tcheck_limits *lim,
                         cluster_tcheck_member_cb member, void *member_ctx);
void cluster_tcheck_fini(struct cluster_tcheck *k);

/* Feed n bytes received from the peer. Every byte that may go on to
 * libraft (message preambles, headers, payloads; never the handshake,
 * which the relay reports itself) is appended to `out`, in order, only
 * once its whole unit is validated. 0, or KM_EPROTO with k->why set: drop
 * the connection (nothing more may be fed). */
int cluster_tcheck_feed(struct cluster_tcheck *k, const void *p, size_t n,
                        struct buf *out);

/* The raft message type names, for logs ("AppendEntries"). */
const char *cluster_tcheck_type_name(uint64_t type);

#endif /* KUMO_CLUSTER_TRANSPORT_CHECK_H */
