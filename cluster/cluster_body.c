/* cluster_body.c - body replication between nodes (CLUSTER.md §4.3,
 * §4.5): StoreBody, FetchBody, ShardCopy. PLACEHOLDER until the body work
 * lands: requests are refused. Loop thread only. */
#include "base/km.h"
#include "cluster_core.h"

void
cluster_body_on_request(struct cluster *c, uint64_t from,
                        const struct cluster_link_raw *raw,
                        struct cluster_link_reply *r)
{
    struct cluster_link_msg none = {.kind = CLUSTER_LINK_NONE};

    (void)c;
    (void)from;
    (void)raw;
    (void)cluster_link_reply_send(r, &none);
}

int
cluster_store_body(struct cluster *c, uint64_t node,
                   const struct cluster_body *b, uint32_t timeout_ms,
                   cluster_body_cb cb, void *arg)
{
    (void)c;
    (void)node;
    (void)b;
    (void)timeout_ms;
    (void)cb;
    (void)arg;
    return KM_EIO;
}

int
cluster_fetch_body(struct cluster *c, uint64_t node, const char *id,
                   cluster_fetch_cb cb, void *arg)
{
    (void)c;
    (void)node;
    (void)id;
    (void)cb;
    (void)arg;
    return KM_EIO;
}

void
cluster_body_reply(struct cluster_body_reply *r, int status,
                   const struct cluster_body *b)
{
    (void)r;
    (void)status;
    (void)b;
}
