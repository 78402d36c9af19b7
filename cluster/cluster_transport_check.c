/* cluster_transport_check.c - validate the raft stream a peer sends us.
 *
 * libraft 0.15 trusts its peers: it allocates a declared length before
 * reading it, strlen()s a handshake address that need not be terminated,
 * dereferences NULL on an entry of type 0, and acts on any term, sender
 * and leadership transfer. Every byte received on the raft port passes
 * through here first (the relay in cluster_transport.c), and a unit is
 * handed on only once it is whole and valid.
 *
 * The wire format is raft_uv_tcp's (little-endian u64 words):
 *   handshake: protocol (1), server id, address length (padded to 8), the
 *              address, NUL-padded;
 *   message:   preamble (type, header length), the header, then a payload
 *              for AppendEntries (the entries' data, each a multiple of 8
 *              bytes) and InstallSnapshot (the snapshot).
 * Header layouts, in u64 words unless noted:
 *   AppendEntries (1):       term, prev_log_index, prev_log_term,
 *                            leader_commit, n_entries, then per entry: term,
 *                            u8 type, 3 unused, u32 data length
 *   AppendEntriesResult (2): term, rejected, last_log_index
 *   RequestVote (3):         term, candidate_id, last_log_index,
 *                            last_log_term[, flags]
 *   RequestVoteResult (4):   term, vote_granted[, flags]
 *   InstallSnapshot (5):     term, last_index, last_term, conf_index,
 *                            conf length, the configuration, data length
 *   TimeoutNow (6):          term, last_log_index, last_log_term
 * Later libraft releases add words at the end of some headers; a header
 * may be up to one word longer than the fields read here. */
#include "cluster_transport_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/km.h"

#define CLUSTER_TCHECK_PROTOCOL 1u

#define CLUSTER_TCHECK_DEF_ENTRIES  (1u << 20)
#define CLUSTER_TCHECK_DEF_APPEND   (1ull << 30)
#define CLUSTER_TCHECK_DEF_SNAPSHOT (4ull << 30)
#define CLUSTER_TCHECK_DEF_TERM     (1ull << 48)
#define CLUSTER_TCHECK_MAX_CONF     (64u * 1024) /* encoded configuration */
#define CLUSTER_TCHECK_MAX_SERVERS  1024u

enum cluster_tcheck_state {
    CLUSTER_TCHECK_HANDSHAKE, /* the 24 fixed bytes */
    CLUSTER_TCHECK_ADDRESS,
    CLUSTER_TCHECK_PREAMBLE,
    CLUSTER_TCHECK_HEADER,
    CLUSTER_TCHECK_PAYLOAD,
    CLUSTER_TCHECK_FAILED,
};

enum {
    CLUSTER_TCHECK_APPEND_ENTRIES = 1,
    CLUSTER_TCHECK_APPEND_ENTRIES_RESULT,
    CLUSTER_TCHECK_REQUEST_VOTE,
    CLUSTER_TCHECK_REQUEST_VOTE_RESULT,
    CLUSTER_TCHECK_INSTALL_SNAPSHOT,
    CLUSTER_TCHECK_TIMEOUT_NOW,
};

/* Helpers */

static uint64_t
cluster_tcheck_get64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static uint32_t
cluster_tcheck_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static int cluster_tcheck_fail(struct cluster_tcheck *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
cluster_tcheck_fail(struct cluster_tcheck *k, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(k->why, sizeof(k->why), fmt, ap);
    va_end(ap);
    k->state = CLUSTER_TCHECK_FAILED;
    return KM_EPROTO;
}

const char *
cluster_tcheck_type_name(uint64_t type)
{
    switch (type) {
    case CLUSTER_TCHECK_APPEND_ENTRIES:
        return "AppendEntries";
    case CLUSTER_TCHECK_APPEND_ENTRIES_RESULT:
        return "AppendEntriesResult";
    case CLUSTER_TCHECK_REQUEST_VOTE:
        return "RequestVote";
    case CLUSTER_TCHECK_REQUEST_VOTE_RESULT:
        return "RequestVoteResult";
    case CLUSTER_TCHECK_INSTALL_SNAPSHOT:
        return "InstallSnapshot";
    case CLUSTER_TCHECK_TIMEOUT_NOW:
        return "TimeoutNow";
    default:
        return "unknown";
    }
}

/* Check that each of the n words at p is a term or index in range. */
static int
cluster_tcheck_range(struct cluster_tcheck *k, const uint8_t *p, size_t n,
                     const char *const *names)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t v = cluster_tcheck_get64(p + 8 * i);
        if (v >= k->lim.max_term) {
            return cluster_tcheck_fail(k, "%s: %s %llu out of range",
                                       cluster_tcheck_type_name(k->msg_type),
                                       names[i], (unsigned long long)v);
        }
    }
    return 0;
}

static int
cluster_tcheck_need_voter(struct cluster_tcheck *k)
{
    if (!k->peer_voter) {
        return cluster_tcheck_fail(k, "%s from id %llu, not a voter",
                                   cluster_tcheck_type_name(k->msg_type),
                                   (unsigned long long)k->peer_id);
    }
    return 0;
}

/* Handshake */

static int
cluster_tcheck_on_handshake(struct cluster_tcheck *k)
{
    const uint8_t *p = (const uint8_t *)k->in.data;
    uint64_t proto = cluster_tcheck_get64(p);
    uint64_t alen = cluster_tcheck_get64(p + 16);

    k->peer_id = cluster_tcheck_get64(p + 8);
    if (proto != CLUSTER_TCHECK_PROTOCOL) {
        return cluster_tcheck_fail(k, "handshake: protocol %llu",
                                   (unsigned long long)proto);
    }
    if (k->peer_id == 0) {
        return cluster_tcheck_fail(k, "handshake: server id 0");
    }
    if (alen == 0 || alen > CLUSTER_TCHECK_MAX_ADDRESS || alen % 8 != 0) {
        return cluster_tcheck_fail(k, "handshake: address length %llu",
                                   (unsigned long long)alen);
    }
    buf_reset(&k->in);
    k->want = (size_t)alen;
    k->state = CLUSTER_TCHECK_ADDRESS;
    return 0;
}

static int
cluster_tcheck_on_address(struct cluster_tcheck *k)
{
    const char *a = k->in.data;
    size_t len = strnlen(a, k->in.len);

    if (len == k->in.len) {
        return cluster_tcheck_fail(k, "handshake: address not terminated");
    }
    if (len == 0) {
        return cluster_tcheck_fail(k, "handshake: empty address");
    }
    for (size_t i = 0; i < len; i++) {
        if (a[i] <= ' ' || a[i] > '~') {
            return cluster_tcheck_fail(k, "handshake: address has byte 0x%02x",
                                       (unsigned)(uint8_t)a[i]);
        }
    }
    memcpy(k->peer_addr, a, len + 1);
    k->peer_voter = true;
    if (k->member != NULL &&
        !k->member(k->member_ctx, k->peer_id, k->peer_addr, &k->peer_voter)) {
        return cluster_tcheck_fail(k, "handshake: id %llu at %s: not a member",
                                   (unsigned long long)k->peer_id,
                                   k->peer_addr);
    }
    k->handshake_done = true;
    buf_reset(&k->in);
    k->want = 16;
    k->state = CLUSTER_TCHECK_PREAMBLE;
    return 0;
}

/* Messages */

static int
cluster_tcheck_on_preamble(struct cluster_tcheck *k)
{
    const uint8_t *p = (const uint8_t *)k->in.data;
    uint64_t len = cluster_tcheck_get64(p + 8);
    uint64_t min = 0, max = 0;

    k->msg_type = cluster_tcheck_get64(p);
    switch (k->msg_type) {
    case CLUSTER_TCHECK_APPEND_ENTRIES:
        min = 40;
        max = 48 + 16 * k->lim.max_entries;
        break;
    case CLUSTER_TCHECK_APPEND_ENTRIES_RESULT:
        min = 24;
        max = 32;
        break;
    case CLUSTER_TCHECK_REQUEST_VOTE:
        min = 32;
        max = 48;
        break;
    case CLUSTER_TCHECK_REQUEST_VOTE_RESULT:
        min = 16;
        max = 24;
        break;
    case CLUSTER_TCHECK_INSTALL_SNAPSHOT:
        min = 56;
        max = 64 + CLUSTER_TCHECK_MAX_CONF;
        break;
    case CLUSTER_TCHECK_TIMEOUT_NOW:
        min = 24;
        max = 32;
        break;
    default:
        return cluster_tcheck_fail(k, "message type %llu",
                                   (unsigned long long)k->msg_type);
    }
    if (len < min || len > max || len % 8 != 0) {
        return cluster_tcheck_fail(
            k, "%s: header length %llu (allowed %llu to %llu)",
            cluster_tcheck_type_name(k->msg_type), (unsigned long long)len,
            (unsigned long long)min, (unsigned long long)max);
    }
    k->want = (size_t)(16 + len);
    k->state = CLUSTER_TCHECK_HEADER;
    return 0;
}

static int
cluster_tcheck_append_entries(struct cluster_tcheck *k, const uint8_t *h,
                              size_t len)
{
    static const char *const names[] = {"term", "prev_log_index",
                                        "prev_log_term", "leader_commit"};
    uint64_t n = cluster_tcheck_get64(h + 32);
    uint64_t total = 0;
    int rv;

    if ((rv = cluster_tcheck_need_voter(k)) != 0 ||
        (rv = cluster_tcheck_range(k, h, 4, names)) != 0) {
        return rv;
    }
    if (n > k->lim.max_entries || len < 40 + 16 * n || len > 48 + 16 * n) {
        return cluster_tcheck_fail(
            k, "AppendEntries: %llu entries in a header of %zu bytes",
            (unsigned long long)n, len);
    }
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *e = h + 40 + 16 * i;
        uint64_t term = cluster_tcheck_get64(e);
        uint8_t type = e[8];
        uint32_t dlen = cluster_tcheck_get32(e + 12);

        if (term >= k->lim.max_term) {
            return cluster_tcheck_fail(
                k, "AppendEntries: entry %llu: term %llu out of range",
                (unsigned long long)i, (unsigned long long)term);
        }
        /* RAFT_COMMAND, RAFT_BARRIER, RAFT_CHANGE. */
        if (type < 1 || type > 3) {
            return cluster_tcheck_fail(k, "AppendEntries: entry %llu: type %u",
                                       (unsigned long long)i, (unsigned)type);
        }
        /* libraft steps over each entry's data rounded up to 8 bytes but
         * reads exactly the sum of the lengths: an unpadded entry would
         * make it point past the payload it allocated. */
        if (dlen % 8 != 0) {
            return cluster_tcheck_fail(
                k, "AppendEntries: entry %llu: length %u not a multiple of 8",
                (unsigned long long)i, dlen);
        }
        total += dlen;
    }
    if (total > k->lim.max_append_bytes) {
        return cluster_tcheck_fail(
            k, "AppendEntries: payload %llu bytes, more than %llu",
            (unsigned long long)total,
            (unsigned long long)k->lim.max_append_bytes);
    }
    k->payload = total;
    return 0;
}

/* libraft's configuration encoding: u8 format (1), u64 count, then per
 * server u64 id, a NUL-terminated address, u8 role; padded to 8. */
static int
cluster_tcheck_conf(struct cluster_tcheck *k, const uint8_t *p, size_t len)
{
    size_t off = 9;
    uint64_t n;

    if (len < 9 || p[0] != 1) {
        return cluster_tcheck_fail(k, "InstallSnapshot: bad configuration");
    }
    n = cluster_tcheck_get64(p + 1);
    if (n > CLUSTER_TCHECK_MAX_SERVERS) {
        return cluster_tcheck_fail(k, "InstallSnapshot: %llu servers",
                                   (unsigned long long)n);
    }
    for (uint64_t i = 0; i < n; i++) {
        size_t alen;

        if (len - off < 8 + 1 + 1) {
            return cluster_tcheck_fail(k, "InstallSnapshot: truncated "
                                          "configuration");
        }
        off += 8;
        alen = strnlen((const char *)p + off, len - off);
        if (alen == len - off || len - off - alen - 1 < 1) {
            return cluster_tcheck_fail(k, "InstallSnapshot: configuration "
                                          "address not terminated");
        }
        off += alen + 1;
        if (p[off] > 2) {
            return cluster_tcheck_fail(k, "InstallSnapshot: server role %u",
                                       (unsigned)p[off]);
        }
        off++;
    }
    return 0;
}

static int
cluster_tcheck_install_snapshot(struct cluster_tcheck *k, const uint8_t *h,
                                size_t len)
{
    static const char *const names[] = {"term", "last_index", "last_term",
                                        "conf_index"};
    uint64_t clen = cluster_tcheck_get64(h + 32);
    uint64_t dlen;
    int rv;

    if ((rv = cluster_tcheck_need_voter(k)) != 0 ||
        (rv = cluster_tcheck_range(k, h, 4, names)) != 0) {
        return rv;
    }
    /* Five words, the configuration, the data length. */
    if (clen > len - 48 || clen > CLUSTER_TCHECK_MAX_CONF) {
        return cluster_tcheck_fail(
            k, "InstallSnapshot: configuration of %llu bytes in %zu",
            (unsigned long long)clen, len);
    }
    if ((rv = cluster_tcheck_conf(k, h + 40, (size_t)clen)) != 0) {
        return rv;
    }
    dlen = cluster_tcheck_get64(h + 40 + clen);
    if (dlen > k->lim.max_snapshot_bytes) {
        return cluster_tcheck_fail(
            k, "InstallSnapshot: payload %llu bytes, more than %llu",
            (unsigned long long)dlen,
            (unsigned long long)k->lim.max_snapshot_bytes);
    }
    k->payload = dlen;
    return 0;
}

static int
cluster_tcheck_on_header(struct cluster_tcheck *k, struct buf *out)
{
    static const char *const rv_names[] = {"term", "candidate_id",
                                           "last_log_index", "last_log_term"};
    static const char *const tn_names[] = {"term", "last_log_index",
                                           "last_log_term"};
    static const char *const r_names[] = {"term", "rejected", "last_log_index"};
    const uint8_t *h = (const uint8_t *)k->in.data + 16;
    size_t len = k->in.len - 16;
    int rv = 0;

    k->payload = 0;
    switch (k->msg_type) {
    case CLUSTER_TCHECK_APPEND_ENTRIES:
        rv = cluster_tcheck_append_entries(k, h, len);
        break;
    case CLUSTER_TCHECK_APPEND_ENTRIES_RESULT:
        rv = cluster_tcheck_range(k, h, 3, r_names);
        break;
    case CLUSTER_TCHECK_REQUEST_VOTE: {
        uint64_t cand = cluster_tcheck_get64(h + 8);
        if ((rv = cluster_tcheck_need_voter(k)) != 0 ||
            (rv = cluster_tcheck_range(k, h, 4, rv_names)) != 0) {
            break;
        }
        /* raft counts the vote for candidate_id: only the connection's
         * own server may ask for it. */
        if (cand != k->peer_id) {
            rv = cluster_tcheck_fail(
                k, "RequestVote: candidate %llu on the connection of id %llu",
                (unsigned long long)cand, (unsigned long long)k->peer_id);
        } else if (len >= 40 && cluster_tcheck_get64(h + 32) > 3) {
            rv = cluster_tcheck_fail(
                k, "RequestVote: flags %llu",
                (unsigned long long)cluster_tcheck_get64(h + 32));
        }
        break;
    }
    case CLUSTER_TCHECK_REQUEST_VOTE_RESULT:
        if ((rv = cluster_tcheck_range(k, h, 1, rv_names)) == 0 &&
            cluster_tcheck_get64(h + 8) > 1) {
            rv = cluster_tcheck_fail(
                k, "RequestVoteResult: vote_granted %llu",
                (unsigned long long)cluster_tcheck_get64(h + 8));
        }
        break;
    case CLUSTER_TCHECK_INSTALL_SNAPSHOT:
        rv = cluster_tcheck_install_snapshot(k, h, len);
        break;
    case CLUSTER_TCHECK_TIMEOUT_NOW:
        if ((rv = cluster_tcheck_need_voter(k)) == 0) {
            rv = cluster_tcheck_range(k, h, 3, tn_names);
        }
        break;
    default:
        KM_ASSERT(!"type checked in the preamble");
    }
    if (rv != 0) {
        return rv;
    }
    buf_append(out, k->in.data, k->in.len);
    buf_reset(&k->in);
    k->messages++;
    if (k->payload > 0) {
        k->state = CLUSTER_TCHECK_PAYLOAD;
    } else {
        k->want = 16;
        k->state = CLUSTER_TCHECK_PREAMBLE;
    }
    return 0;
}

/* Public */

void
cluster_tcheck_init(struct cluster_tcheck *k,
                    const struct cluster_tcheck_limits *lim,
                    cluster_tcheck_member_cb member, void *member_ctx)
{
    memset(k, 0, sizeof(*k));
    if (lim != NULL) {
        k->lim = *lim;
    }
    if (k->lim.max_entries == 0) {
        k->lim.max_entries = CLUSTER_TCHECK_DEF_ENTRIES;
    }
    if (k->lim.max_append_bytes == 0) {
        k->lim.max_append_bytes = CLUSTER_TCHECK_DEF_APPEND;
    }
    if (k->lim.max_snapshot_bytes == 0) {
        k->lim.max_snapshot_bytes = CLUSTER_TCHECK_DEF_SNAPSHOT;
    }
    if (k->lim.max_term == 0) {
        k->lim.max_term = CLUSTER_TCHECK_DEF_TERM;
    }
    k->member = member;
    k->member_ctx = member_ctx;
    buf_init(&k->in);
    k->want = 24;
    k->state = CLUSTER_TCHECK_HANDSHAKE;
}

void
cluster_tcheck_fini(struct cluster_tcheck *k)
{
    buf_fini(&k->in);
}

int
cluster_tcheck_feed(struct cluster_tcheck *k, const void *p, size_t n,
                    struct buf *out)
{
    const uint8_t *b = p;
    int rv = 0;

    if (k->state == CLUSTER_TCHECK_FAILED) {
        return KM_EPROTO;
    }
    while (n > 0 && rv == 0) {
        size_t take;

        if (k->state == CLUSTER_TCHECK_PAYLOAD) {
            take = n < k->payload ? n : (size_t)k->payload;
            buf_append(out, b, take);
            k->payload -= take;
            if (k->payload == 0) {
                k->want = 16;
                k->state = CLUSTER_TCHECK_PREAMBLE;
            }
            b += take;
            n -= take;
            continue;
        }
        take = k->want - k->in.len;
        if (take > n) {
            take = n;
        }
        buf_append(&k->in, b, take);
        b += take;
        n -= take;
        if (k->in.len < k->want) {
            break;
        }
        switch (k->state) {
        case CLUSTER_TCHECK_HANDSHAKE:
            rv = cluster_tcheck_on_handshake(k);
            break;
        case CLUSTER_TCHECK_ADDRESS:
            rv = cluster_tcheck_on_address(k);
            break;
        case CLUSTER_TCHECK_PREAMBLE:
            rv = cluster_tcheck_on_preamble(k);
            break;
        case CLUSTER_TCHECK_HEADER:
            rv = cluster_tcheck_on_header(k, out);
            break;
        default:
            KM_ASSERT(!"unreachable state");
        }
    }
    return rv;
}
