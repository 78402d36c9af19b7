/* cluster_link_int.h - shared inside the link module: the envelope in
 * plain C form and its codec (cluster_msg_link.c), used by cluster_link.c.
 * The codec keeps protobuf-c types inside cluster_msg_link.c (STYLE §12).
 * Any thread; no state. */
#ifndef KUMO_CLUSTER_LINK_INT_H
#define KUMO_CLUSTER_LINK_INT_H
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "cluster_link.h"

/* A LinkEnvelope. After cluster_msg_link_decode() it owns the raw payload
 * (`owned`), released with cluster_msg_link_env_fini(). */
struct cluster_link_env {
    uint32_t version;
    uint8_t cluster_id[CLUSTER_LINK_ID_MAX];
    size_t cluster_id_len;
    uint64_t from_node;
    uint64_t req_id;
    /* Borrowed for encode; owned (malloc'd) after decode. */
    const uint8_t *proof;
    size_t proof_len;
    struct cluster_link_msg msg;
    uint8_t *owned;
};

/* Pack `env` into a new buffer that the caller owns (free()). Returns
 * KM_EINVAL for an unknown or reserved raw type or a cluster id that is too
 * long, KM_E2BIG when the result would exceed `max_bytes`. */
int cluster_msg_link_encode(const struct cluster_link_env *env,
                            size_t max_bytes, uint8_t **out, size_t *out_len);

/* Unpack `n` bytes at `p` into *out (which the caller then owns, see
 * cluster_msg_link_env_fini). Returns KM_E2BIG above `max_bytes`,
 * KM_EPROTO for anything that is not a well-formed envelope. A member this
 * code does not know comes back as CLUSTER_LINK_RAW. */
int cluster_msg_link_decode(const uint8_t *p, size_t n, size_t max_bytes,
                            struct cluster_link_env *out);

/* Release what a decoded envelope owns; safe on a zeroed one. */
void cluster_msg_link_env_fini(struct cluster_link_env *env);
/* Shared by cluster_link.c and cluster_link_reply.c. */
/* REP contexts receiving at once: requests being handled at one time. */
#define CLUSTER_LINK_REP_CTXS 8
/* Peers whose refused envelopes were already logged (then: no more). */
#define CLUSTER_LINK_WARNED_MAX    32
#define CLUSTER_LINK_RECONN_MIN_MS 100
#define CLUSTER_LINK_RECONN_MAX_MS 2000

enum cluster_link_stage {
    CLUSTER_LINK_STAGE_IDLE,    /* no NNG operation */
    CLUSTER_LINK_STAGE_SEND,    /* nng_ctx_send in flight */
    CLUSTER_LINK_STAGE_RECV,    /* nng_ctx_recv in flight */
    CLUSTER_LINK_STAGE_HANDLER, /* REP: the host holds the reply */
    CLUSTER_LINK_STAGE_NOPEER,  /* REQ: queued only to report KM_ENOENT */
};

/* A completed NNG operation waiting for the loop. */
struct cluster_link_item {
    struct cluster_link_item *next;
    bool is_req; /* struct cluster_link_req, else cluster_link_reply */
};

struct cluster_link_peer {
    struct cluster_link_peer *next;
    uint64_t node_id;
    char *url;
    nng_socket sock;
    struct buf proof_out; /* ours, for requests to it (with TLS) */
    struct buf proof_in;  /* its own, last checked (with TLS) */
};

/* One outgoing request. */
struct cluster_link_req {
    struct cluster_link_item item; /* first: items are cast back */
    struct cluster_link_req *prev, *next;
    struct cluster_link *link;
    enum cluster_link_stage stage;
    bool has_nng;
    nng_ctx ctx;
    nng_aio *aio;
    uint64_t req_id;
    uint64_t to_node;
    bool canceled; /* its peer was removed */
    uint64_t deadline_ms;
    cluster_link_reply_cb cb;
    void *arg;
};

/* One REP context; the host sees it as its reply handle. */
struct cluster_link_reply {
    struct cluster_link_item item; /* first: items are cast back */
    struct cluster_link *link;
    enum cluster_link_stage stage;
    nng_ctx ctx;
    nng_aio *aio;
    uint64_t req_id;
};

struct cluster_link {
    uv_loop_t *loop;
    uint64_t node_id;
    uint8_t cluster_id[CLUSTER_LINK_ID_MAX];
    size_t cluster_id_len;
    size_t max_msg_bytes;
    uint32_t timeout_ms;
    struct cluster_link_host host;
    uv_async_t async;
    uv_mutex_t mtx; /* guards head/tail only */
    struct cluster_link_item *head, *tail;
    bool has_rep;
    nng_socket rep;
    struct cluster_link_reply reps[CLUSTER_LINK_REP_CTXS];
    size_t n_reps;
    struct cluster_link_peer *peers;
    struct cluster_link_req *reqs; /* in flight, doubly linked */
    uint64_t next_req_id;
    uint64_t warned[CLUSTER_LINK_WARNED_MAX];
    size_t n_warned;
    /* Mutual TLS: the PEM texts, and the listener's configuration. */
    bool tls;
    char *ca_pem, *cert_pem, *key_pem;
    nng_tls_config *tls_server;
    bool closing;
    cluster_link_close_cb close_cb;
    void *close_arg;
};

int cluster_link_msg_new(struct cluster_link *l,
                         const struct cluster_link_env *env, nng_msg **out);
void cluster_link_env_init(struct cluster_link *l, struct cluster_link_env *env,
                           uint64_t req_id, const struct cluster_link_msg *msg);
int cluster_link_take_env(struct cluster_link *l, nng_aio *aio,
                          struct cluster_link_env *env);
void cluster_link_warn_refused(struct cluster_link *l, uint64_t node,
                               const char *why);
const char *cluster_link_refusal(struct cluster_link *l, int rv,
                                 const struct cluster_link_env *env);
void cluster_link_aio_drop_msg(nng_aio *aio, enum cluster_link_stage stage);
void cluster_link_rep_recv(struct cluster_link_reply *r);
void cluster_link_rep_advance(struct cluster_link_reply *r);
#endif /* KUMO_CLUSTER_LINK_INT_H */
