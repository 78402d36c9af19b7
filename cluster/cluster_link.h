/* cluster_link.h - node-to-node request/reply over NNG (CLUSTER.md §4.3).
 * One endpoint owns a REP listener with several contexts and one REQ
 * socket per peer; every message travels in a LinkEnvelope carrying the
 * protocol version and the cluster id, and envelopes from another cluster
 * or version are refused. Knows nothing of what the messages mean. All
 * functions and callbacks run on the loop thread; NNG's threads only hand
 * completions over (STYLE §9). */
#ifndef KUMO_CLUSTER_LINK_H
#define KUMO_CLUSTER_LINK_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct cluster_link;       /* opaque */
struct cluster_link_reply; /* opaque: one received request to answer */

/* Wire protocol version carried in every envelope. */
#define CLUSTER_LINK_VERSION 1
/* Longest cluster id, in bytes. */
#define CLUSTER_LINK_ID_MAX 64
/* Default largest envelope: 64 MiB of payload plus 1 MiB of headroom. */
#define CLUSTER_LINK_MAX_MSG_DEFAULT ((size_t)65 * 1024 * 1024)
#define CLUSTER_LINK_TIMEOUT_DEFAULT 5000

enum cluster_link_kind {
    CLUSTER_LINK_NONE = 0, /* empty envelope: the peer refused the request */
    CLUSTER_LINK_PING,
    CLUSTER_LINK_PONG,
    CLUSTER_LINK_RAW, /* any other LinkEnvelope member, still packed */
};

struct cluster_link_ping {
    uint64_t seq;
    uint64_t applied_index;
    const char *link_url; /* the sender's listener; NULL or "" if unset */
};

struct cluster_link_pong {
    uint64_t seq;
    uint64_t leader_id;
    uint64_t term;
    uint64_t commit_index;
    bool lease_ok;
};

/* A LinkEnvelope member other than ping and pong: `type` is its field
 * number in the envelope's oneof (10 StoreBody ... 25 AdminAck) and
 * `data` the packed sub-message, decoded by the caller (cluster_msg*.c). */
struct cluster_link_raw {
    uint32_t type;
    const uint8_t *data;
    size_t len;
};

/* The LinkEnvelope oneof field numbers of the RAW members. */
enum cluster_link_type {
    CLUSTER_LINK_T_STORE_BODY = 10,
    CLUSTER_LINK_T_STORE_BODY_ACK = 11,
    CLUSTER_LINK_T_FETCH_BODY = 12,
    CLUSTER_LINK_T_BODY_DATA = 13,
    CLUSTER_LINK_T_SHARD_COPY = 14,
    CLUSTER_LINK_T_SHARD_COPY_CHUNK = 15,
    CLUSTER_LINK_T_PROPOSE = 16,
    CLUSTER_LINK_T_PROPOSE_ACK = 17,
    CLUSTER_LINK_T_INJECT = 20,
    CLUSTER_LINK_T_INJECT_ACK = 21,
    CLUSTER_LINK_T_STATUS = 22,
    CLUSTER_LINK_T_STATUS_REPORT = 23,
    CLUSTER_LINK_T_ADMIN = 24,
    CLUSTER_LINK_T_ADMIN_ACK = 25,
};

/* One message in plain C form. Pointers are borrowed. */
struct cluster_link_msg {
    enum cluster_link_kind kind;

    union {
        struct cluster_link_ping ping;
        struct cluster_link_pong pong;
        struct cluster_link_raw raw;
    } u;
};

struct cluster_link_config {
    uint64_t node_id;
    const uint8_t *cluster_id; /* copied; at most CLUSTER_LINK_ID_MAX */
    size_t cluster_id_len;
    const char *listen_url;      /* tcp://127.0.0.1:port; NULL: no listener */
    size_t max_msg_bytes;        /* 0: CLUSTER_LINK_MAX_MSG_DEFAULT */
    uint32_t request_timeout_ms; /* 0: CLUSTER_LINK_TIMEOUT_DEFAULT */
    /* Mutual TLS (PEM files, read once at open): every listen and peer
     * URL "tcp://..." is used as "tls+tcp://...", a peer must present a
     * certificate of the cluster CA, and the peer we dial must name
     * node-<its id>. NULL: plaintext. */
    const char *tls_ca, *tls_cert, *tls_key;
};

/* A received request: `req` and what it points to are borrowed for the
 * call. The host answers through `r` with cluster_link_reply_send(), now
 * or later, exactly once. */
typedef void (*cluster_link_request_fn)(void *ctx, uint64_t from_node,
                                        const struct cluster_link_msg *req,
                                        struct cluster_link_reply *r);

struct buf;

struct cluster_link_host {
    void *ctx;
    cluster_link_request_fn on_request; /* required with a listener */
    /* With TLS (both or neither): append this node's sender proof for
     * requests to `to` (0 or an error: the request is not sent), and check
     * the proof of a request claiming `from` (false: refused, *why says
     * why). A proof received is checked once while it stays the same. */
    int (*make_proof)(void *ctx, uint64_t to, struct buf *out);
    bool (*check_proof)(void *ctx, uint64_t from, const uint8_t *p, size_t n,
                        const char **why);
};

/* The outcome of cluster_link_request(): 0 with the reply (borrowed for
 * the call), or KM_ETIMEDOUT, KM_ENOENT (unknown peer), KM_EPROTO (bad or
 * refused reply, another cluster id), KM_ECANCELED (peer removed),
 * KM_ECLOSING (link closed), KM_EIO (the connection dropped under the
 * request, as when the peer refuses an envelope above its size limit);
 * `reply` is NULL then. */
typedef void (*cluster_link_reply_cb)(void *arg, int status,
                                      const struct cluster_link_msg *reply);
typedef void (*cluster_link_close_cb)(void *arg);

/* Open an endpoint on `loop`; with cfg->listen_url, listen there now.
 * `cfg` is copied; `host` is copied and its ctx must outlive the link. On
 * success *out holds the link, owned by the caller and released with
 * cluster_link_close(). Returns KM_EINVAL (bad config), KM_ECONFIG (a TLS
 * file that cannot be read or used), KM_EIO or -EADDRINUSE (cannot
 * listen). */
int cluster_link_open(uv_loop_t *loop, const struct cluster_link_config *cfg,
                      const struct cluster_link_host *host,
                      struct cluster_link **out);

/* Add peer `node_id` reachable at `url` (copied). Dials in the background
 * and reconnects on its own. Returns KM_EEXIST, KM_EINVAL (bad url) or
 * KM_ECLOSING. */
int cluster_link_add_peer(struct cluster_link *l, uint64_t node_id,
                          const char *url);

/* Forget peer `node_id`; its requests in flight end with KM_ECANCELED.
 * Returns KM_ENOENT for an unknown peer. */
int cluster_link_remove_peer(struct cluster_link *l, uint64_t node_id);

/* Send `req` (copied) to `to_node`; `cb` runs once on the loop thread,
 * never from inside this call. Returns 0, or KM_EINVAL (cannot encode,
 * too large), KM_ECLOSING, and then `cb` never runs. The request fails
 * with KM_ETIMEDOUT after request_timeout_ms; NNG never resends it. */
int cluster_link_request(struct cluster_link *l, uint64_t to_node,
                         const struct cluster_link_msg *req,
                         cluster_link_reply_cb cb, void *arg);

/* Answer the request behind `r` with `reply` (copied); `r` is spent.
 * After cluster_link_close() the reply is dropped (KM_ECLOSING); `r` must
 * not be used once the close callback has run. Returns KM_EINVAL when
 * `reply` cannot be encoded (the peer then gets a refusal). */
int cluster_link_reply_send(struct cluster_link_reply *r,
                            const struct cluster_link_msg *reply);

/* Close the link: requests in flight end with KM_ECLOSING (their
 * callbacks run before this returns), unsent replies are dropped, sockets
 * close, then `cb` runs on a later loop turn and the link is freed. Blocks
 * briefly while NNG's callbacks finish. */
void cluster_link_close(struct cluster_link *l, cluster_link_close_cb cb,
                        void *arg);

/* Release NNG's process-wide state once every link is closed: waits for
 * NNG's background teardown of closed sockets (so leak checkers see a
 * clean exit). Call at most once, at process exit. */
void cluster_link_global_fini(void);
#endif /* KUMO_CLUSTER_LINK_H */
