/* fuzz_cluster_link.c - a LinkEnvelope as a peer (or anyone who reaches
 * the link port) sends it (cluster_msg_link.c), and, when it decodes,
 * the sub-message decoders its type leads to: Propose, ProposeAck,
 * StatusRequest, StatusReport, Admin, AdminAck (cluster_msg.c,
 * cluster_msg_status.c). A decoded envelope is packed again; the packed
 * form must decode to the same sender and request id, or be refused. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "cluster_int.h"
#include "cluster_link_int.h"
#include "cluster_status_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every sub-message decoder on the same bytes: an envelope's payload can
 * be any of them. */
static void
fuzz_sub_messages(const uint8_t *p, size_t n)
{
    struct cluster_batch b;
    struct cluster_propose_ack ack;
    struct cluster_status_report rep;
    struct cluster_admin_req adm;
    struct cluster_admin_ack aack;
    bool verbose;

    memset(&b, 0, sizeof(b));
    if (cluster_msg_decode_propose(p, n, &b) == 0) {
        cluster_batch_fini(&b);
    }
    (void)cluster_msg_decode_propose_ack(p, n, &ack);
    (void)cluster_msg_decode_status_request(p, n, &verbose);
    (void)cluster_msg_decode_status_report(p, n, &rep);
    if (cluster_msg_decode_admin(p, n, &adm) == 0) {
        KM_ASSERT(memchr(adm.raft_addr, '\0', sizeof(adm.raft_addr)) != NULL);
        KM_ASSERT(memchr(adm.link_url, '\0', sizeof(adm.link_url)) != NULL);
    }
    if (cluster_msg_decode_admin_ack(p, n, &aack) == 0) {
        KM_ASSERT(memchr(aack.message, '\0', sizeof(aack.message)) != NULL);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cluster_link_env env;
    uint8_t *packed = NULL;
    size_t packed_len = 0;
    int rv;

    memset(&env, 0, sizeof(env));
    if (cluster_msg_link_decode(data, size, 1 << 20, &env) == 0) {
        KM_ASSERT(env.cluster_id_len <= sizeof(env.cluster_id));
        if (cluster_msg_link_encode(&env, 1 << 21, &packed, &packed_len) == 0) {
            struct cluster_link_env again;

            memset(&again, 0, sizeof(again));
            rv = cluster_msg_link_decode(packed, packed_len, 1 << 21, &again);
            /* Finding 2026-12 (regressions/fuzz_cluster_link/tag-zero): a
             * sub-message with a field numbered 0 decodes (protobuf-c
             * takes it as unknown), but packed again it is refused. Only
             * a refusal is allowed, never another outcome. */
            KM_ASSERT(rv == 0 || rv == KM_EPROTO);
            if (rv == 0) {
                KM_ASSERT(again.from_node == env.from_node);
                KM_ASSERT(again.req_id == env.req_id);
            }
            cluster_msg_link_env_fini(&again);
            free(packed);
        }
        cluster_msg_link_env_fini(&env);
    }
    fuzz_sub_messages(data, size);
    return 0;
}
