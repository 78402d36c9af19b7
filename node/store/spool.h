/* spool.h - durable key/value storage for message bodies and metadata on
 * RocksDB; the only module that calls rocksdb_*. One `struct spool` is one
 * named store (KumoMTA defines two: "data" and "meta"), one RocksDB
 * database at its own path. Writes are group-committed: puts issued while a
 * synced WriteBatch is being written on the libuv pool go together in the
 * next batch, so one fsync covers many messages. Reads of single keys are
 * quick and may run on the loop; bulk work runs on the pool. Loop thread
 * only (the pool work functions touch only their request). */
#ifndef KUMO_SPOOL_H
#define KUMO_SPOOL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct buf;
struct spool; /* opaque */

typedef void (*spool_done_cb)(void *arg, int status);
typedef void (*spool_close_cb)(void *arg);

/* Open (creating if needed) the store `name` at `path`. The caller owns
 * *out and releases it with spool_close(). KM_ESPOOL on a RocksDB error
 * (logged here with RocksDB's message, since the caller can't see it). */
int spool_open(uv_loop_t *loop, const char *name, const char *path,
               struct spool **out);

/* Store a copy of value under key. `cb` runs on the loop thread once the
 * write is synced to disk (0) or failed (KM_ESPOOL, KM_ECLOSING). */
int spool_put(struct spool *sp, const char *key, const void *value, size_t len,
              spool_done_cb cb, void *arg);

/* Delete keys; batched like puts. `cb` may be NULL. */
int spool_delete(struct spool *sp, const char *key, spool_done_cb cb,
                 void *arg);

/* Read one key into out (appended). KM_ENOENT if absent. Runs on the
 * calling thread. */
int spool_get(struct spool *sp, const char *key, struct buf *out);

/* Iterate every key in order; fn returns false to stop. Start-up only
 * (blocks the caller). */
int spool_foreach(struct spool *sp,
                  bool (*fn)(void *arg, const char *key, size_t key_len,
                             const char *value, size_t value_len),
                  void *arg);

struct spool_stats {
    uint64_t puts, deletes, batches, put_bytes;
    uint64_t pending; /* writes waiting for their batch */
};

void spool_get_stats(const struct spool *sp, struct spool_stats *out);

/* Free space on the spool's file system, in bytes and percent. */
int spool_free_space(const struct spool *sp, uint64_t *bytes, double *pct);

/* Finish writes in flight (their callbacks run), refuse new ones with
 * KM_ECLOSING, close the database, then call cb. Frees sp. */
void spool_close(struct spool *sp, spool_close_cb cb, void *arg);
#endif /* KUMO_SPOOL_H */
