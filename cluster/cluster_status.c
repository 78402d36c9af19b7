/* cluster_status.c - the Status fan-out of `cluster status` and the
 * membership admin requests (CLUSTER.md §4.8). PLACEHOLDER until the status
 * work lands: requests are refused. Loop thread only. */
#include "base/km.h"
#include "cluster_core.h"

void
cluster_status_on_request(struct cluster *c, uint64_t from,
                          const struct cluster_link_raw *raw,
                          struct cluster_link_reply *r)
{
    struct cluster_link_msg none = {.kind = CLUSTER_LINK_NONE};

    (void)c;
    (void)from;
    (void)raw;
    (void)cluster_link_reply_send(r, &none);
}
