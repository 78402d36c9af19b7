/* fuzz_cluster_raftlog.c - what the Raft log and snapshots hold
 * (cluster_msg.c): a RaftBatch entry, and an FsmSnapshot stream of
 * length-prefixed chunks. Each decoded batch is encoded again and must
 * decode to as many records. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "cluster_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void *
fuzz_alloc(size_t n)
{
    return km_malloc(n > 0 ? n : 1);
}

static void
fuzz_on_time(void *ctx, int64_t t)
{
    (void)ctx;
    (void)t;
}

static int
fuzz_on_rec(void *ctx, const struct cluster_rec *rec)
{
    (void)rec;
    (*(size_t *)ctx)++;
    return 0;
}

static int
fuzz_on_tomb(void *ctx, const char *id, int64_t done_at_ms)
{
    (void)done_at_ms;
    KM_ASSERT(id != NULL);
    (*(size_t *)ctx)++;
    return 0;
}

static int
fuzz_on_shard(void *ctx, uint32_t shard, uint64_t epoch,
              const uint64_t *replicas, size_t n)
{
    (void)shard;
    (void)epoch;
    KM_ASSERT(n == 0 || replicas != NULL);
    (*(size_t *)ctx)++;
    return 0;
}

static int
fuzz_on_throttle(void *ctx, const struct cluster_throttle_win *w)
{
    KM_ASSERT(w != NULL);
    (*(size_t *)ctx)++;
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cluster_batch b;
    size_t items = 0;
    struct cluster_snap_sink sink = {
        .ctx = &items,
        .on_time = fuzz_on_time,
        .on_msg = fuzz_on_rec,
        .on_tomb = fuzz_on_tomb,
        .on_admin = fuzz_on_rec,
        .on_settings = fuzz_on_rec,
        .on_node = fuzz_on_rec,
        .on_shard = fuzz_on_shard,
        .on_throttle = fuzz_on_throttle,
    };

    memset(&b, 0, sizeof(b));
    if (cluster_msg_decode_batch(data, size, &b) == 0) {
        void *enc = NULL;
        size_t len = 0;

        if (cluster_msg_encode_batch(&b, fuzz_alloc, &enc, &len) == 0) {
            struct cluster_batch again;

            memset(&again, 0, sizeof(again));
            KM_ASSERT(cluster_msg_decode_batch(enc, len, &again) == 0);
            KM_ASSERT(again.n == b.n);
            cluster_batch_fini(&again);
            free(enc);
        }
        cluster_batch_fini(&b);
    }
    (void)cluster_msg_decode_snapshot(data, size, &sink);
    return 0;
}
