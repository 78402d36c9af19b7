/* cluster_msg_int.h - declarations shared by the files of the cluster_msg
 * module (cluster_msg.c: records and Raft entries; cluster_msg_snapshot.c:
 * FSM snapshot images): wire limits, string checks and the record
 * converters both need. Includes the generated protobuf-c headers, so only
 * cluster_msg*.c include it (STYLE §12). Any thread; no state. */
#ifndef KUMO_CLUSTER_MSG_INT_H
#define KUMO_CLUSTER_MSG_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/km_id.h"
#include "cluster_int.h"
#include "link.pb-c.h"
#include "raft_log.pb-c.h"

/* Shared by cluster_msg.c and cluster_msg_snapshot.c. */
/* Bytes of the big-endian length before each snapshot chunk. */
#define CLUSTER_MSG_CHUNK_PREFIX 4

/* A Raft entry is framed: 4 bytes of magic and version, the protobuf's
 * length (4 bytes, big-endian), the RaftBatch, then zeros up to a multiple
 * of 8 bytes. libraft 0.15's uv segment encoder requires entry lengths to
 * be multiples of 8 (an assert compiled out in Debian's build: anything
 * else silently corrupts closed segments, found by test_cluster_raft), and
 * protobuf cannot tell padding from data, hence the length. */
#define CLUSTER_MSG_ENTRY_HEADER 8
static const uint8_t cluster_msg_entry_magic[4] = {'K', 'R', 1, 0};

void *cluster_msg_unconst(const void *p);
int cluster_msg_id_out(const char *hex, uint8_t bytes[KM_ID_BYTES],
                       ProtobufCBinaryData *out);
int cluster_msg_id_in(const ProtobufCBinaryData *in, char out[33]);
int cluster_msg_enqueue_out(Kumo__Cluster__Enqueue *e, uint8_t id[KM_ID_BYTES],
                            const char *hex, const char *queue,
                            const char *tenant, const char *campaign,
                            const char *egress_pool, const uint64_t *replicas,
                            size_t n_replicas, const uint8_t digest[32]);
int cluster_msg_admin_out(const struct cluster_rec *r,
                          Kumo__Cluster__AdminRule *a,
                          Kumo__Cluster__Command *cmd);
int cluster_msg_admin_in(const Kumo__Cluster__AdminRule *a,
                         struct cluster_rec *rec);
int cluster_msg_settings_out(const struct cluster_rec *r,
                             Kumo__Cluster__ClusterSettings *pb);
int cluster_msg_settings_in(const Kumo__Cluster__ClusterSettings *pb,
                            struct cluster_rec *rec);
int cluster_msg_node_out(const struct cluster_rec *r,
                         Kumo__Cluster__NodeState *pb);
int cluster_msg_node_in(const Kumo__Cluster__NodeState *pb,
                        struct cluster_rec *rec);
int cluster_msg_tdef_out(const char *key, uint64_t limit, uint64_t period_ms,
                         Kumo__Cluster__ThrottleDefine *pb);
int cluster_msg_tdef_in(const Kumo__Cluster__ThrottleDefine *pb,
                        struct cluster_rec *rec);
int cluster_msg_enqueue_in(const Kumo__Cluster__Enqueue *e,
                           struct cluster_rec *rec);
char *cluster_msg_response_in(const char *s);
#endif /* KUMO_CLUSTER_MSG_INT_H */
