/* cluster_link_int.h - shared inside the link module: the envelope in
 * plain C form and its codec (cluster_msg_link.c), used by cluster_link.c.
 * The codec keeps protobuf-c types inside cluster_msg_link.c (STYLE §12).
 * Any thread; no state. */
#ifndef KUMO_CLUSTER_LINK_INT_H
#define KUMO_CLUSTER_LINK_INT_H
#include <stddef.h>
#include <stdint.h>

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
#endif /* KUMO_CLUSTER_LINK_INT_H */
