/* spool.c - RocksDB-backed key/value store with group commit; the only
 * file that calls rocksdb_*. Puts and deletes queue on a pending list; one
 * WriteBatch at a time is written (synced when it holds a put) on the libuv
 * pool, and everything that queued meanwhile forms the next batch. Does not
 * know what it stores. Loop thread only; work functions touch only their
 * batch. An op refused at submission (non-zero return) never calls back. */
#include "spool.h"

#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include <rocksdb/c.h>

#include "base/buf.h"
#include "base/km.h"
#include "base/log.h"

/* A batch stops growing at this many ops or bytes; the rest waits for the
 * next one, so one huge burst cannot stall every callback behind it. */
#define SPOOL_BATCH_MAX_OPS   4096
#define SPOOL_BATCH_MAX_BYTES (64u << 20)

struct spool_op {
    struct spool_op *next;
    bool is_put;
    char *key;
    size_t key_len;
    void *value; /* NULL for deletes */
    size_t len;
    spool_done_cb cb;
    void *arg;
};

struct spool_batch {
    uv_work_t work;
    struct spool *sp;
    rocksdb_t *db;                /* read-only in the work function */
    rocksdb_writeoptions_t *wopt; /* sync or not, owned by the spool */
    struct spool_op *ops;
    char *err; /* RocksDB's message, set by the work function */
};

struct spool {
    uv_loop_t *loop;
    char *name;
    char *path;
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_writeoptions_t *wopt_sync;
    rocksdb_writeoptions_t *wopt_nosync;
    rocksdb_readoptions_t *ropt;
    struct spool_op *pend_head;
    struct spool_op **pend_tail;
    struct spool_batch *inflight; /* at most one */
    uv_work_t close_work;
    bool closing;
    spool_close_cb close_cb;
    void *close_arg;
    struct spool_stats stats;
};

static void spool_start_batch(struct spool *sp);
static void spool_finish_close(struct spool *sp);

static void
spool_op_free(struct spool_op *op)
{
    free(op->key);
    free(op->value);
    free(op);
}

static void
spool_release(struct spool *sp)
{
    rocksdb_readoptions_destroy(sp->ropt);
    rocksdb_writeoptions_destroy(sp->wopt_nosync);
    rocksdb_writeoptions_destroy(sp->wopt_sync);
    rocksdb_options_destroy(sp->opts);
    free(sp->path);
    free(sp->name);
    free(sp);
}

int
spool_open(uv_loop_t *loop, const char *name, const char *path,
           struct spool **out)
{
    struct spool *sp = km_calloc(1, sizeof(*sp));
    char *err = NULL;

    sp->loop = loop;
    sp->name = km_strdup(name);
    sp->path = km_strdup(path);
    sp->pend_tail = &sp->pend_head;
    sp->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(sp->opts, 1);
    rocksdb_options_increase_parallelism(sp->opts, 2);
    /* Integrated BlobDB: bodies of 4 KiB and more live in blob files and
     * stay out of compaction; GC reclaims them after deletes. */
    rocksdb_options_set_enable_blob_files(sp->opts, 1);
    rocksdb_options_set_min_blob_size(sp->opts, 4096);
    rocksdb_options_set_enable_blob_gc(sp->opts, 1);
    sp->wopt_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(sp->wopt_sync, 1);
    sp->wopt_nosync = rocksdb_writeoptions_create();
    sp->ropt = rocksdb_readoptions_create();

    sp->db = rocksdb_open(sp->opts, path, &err);
    if (err != NULL) {
        LOG_ERROR("spool: %s: open %s: %s", name, path, err);
        rocksdb_free(err);
        spool_release(sp);
        return KM_ESPOOL;
    }
    *out = sp;
    return 0;
}

static int
spool_enqueue_op(struct spool *sp, bool is_put, const char *key,
                 const void *value, size_t len, spool_done_cb cb, void *arg)
{
    if (sp->closing) {
        return KM_ECLOSING;
    }
    struct spool_op *op = km_calloc(1, sizeof(*op));
    op->is_put = is_put;
    op->key_len = strlen(key);
    op->key = km_memdup(key, op->key_len + 1);
    if (is_put) {
        op->value = km_malloc(len > 0 ? len : 1);
        if (len > 0) {
            memcpy(op->value, value, len);
        }
        op->len = len;
    }
    op->cb = cb;
    op->arg = arg;
    *sp->pend_tail = op;
    sp->pend_tail = &op->next;
    sp->stats.pending++;
    if (is_put) {
        sp->stats.puts++;
        sp->stats.put_bytes += len;
    } else {
        sp->stats.deletes++;
    }
    if (sp->inflight == NULL) {
        spool_start_batch(sp);
    }
    return 0;
}

int
spool_put(struct spool *sp, const char *key, const void *value, size_t len,
          spool_done_cb cb, void *arg)
{
    return spool_enqueue_op(sp, true, key, value, len, cb, arg);
}

int
spool_delete(struct spool *sp, const char *key, spool_done_cb cb, void *arg)
{
    return spool_enqueue_op(sp, false, key, NULL, 0, cb, arg);
}

/* Pool thread: touches only the batch. */
static void
spool_on_batch_work(uv_work_t *req)
{
    struct spool_batch *b = req->data;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();

    for (struct spool_op *op = b->ops; op != NULL; op = op->next) {
        if (op->is_put) {
            rocksdb_writebatch_put(wb, op->key, op->key_len, op->value,
                                   op->len);
        } else {
            rocksdb_writebatch_delete(wb, op->key, op->key_len);
        }
    }
    rocksdb_write(b->db, b->wopt, wb, &b->err);
    rocksdb_writebatch_destroy(wb);
}

static void
spool_on_batch_done(uv_work_t *req, int status)
{
    struct spool_batch *b = req->data;
    struct spool *sp = b->sp;
    int rv = 0;

    if (b->err != NULL) {
        LOG_ERROR("spool: %s: write batch: %s", sp->name, b->err);
        rocksdb_free(b->err);
        rv = KM_ESPOOL;
    } else if (status != 0) {
        rv = KM_ESPOOL; /* uv cancelled the work: never happens here */
    }
    sp->inflight = NULL;
    struct spool_op *op = b->ops;
    free(b);
    while (op != NULL) {
        struct spool_op *next = op->next;
        if (op->cb != NULL) {
            op->cb(op->arg, rv);
        }
        spool_op_free(op);
        op = next;
    }
    /* Callbacks may have queued more: start them together. */
    if (sp->pend_head != NULL) {
        spool_start_batch(sp);
    } else if (sp->closing) {
        spool_finish_close(sp);
    }
}

static void
spool_start_batch(struct spool *sp)
{
    struct spool_batch *b = km_calloc(1, sizeof(*b));
    struct spool_op **tail = &b->ops;
    size_t n = 0, bytes = 0;
    bool any_put = false;

    KM_ASSERT(sp->inflight == NULL && sp->pend_head != NULL);
    while (sp->pend_head != NULL && n < SPOOL_BATCH_MAX_OPS &&
           (n == 0 || bytes + sp->pend_head->len <= SPOOL_BATCH_MAX_BYTES)) {
        struct spool_op *op = sp->pend_head;
        sp->pend_head = op->next;
        op->next = NULL;
        *tail = op;
        tail = &op->next;
        n++;
        bytes += op->len;
        any_put = any_put || op->is_put;
    }
    if (sp->pend_head == NULL) {
        sp->pend_tail = &sp->pend_head;
    }
    sp->stats.pending -= n;
    sp->stats.batches++;
    b->sp = sp;
    b->db = sp->db;
    /* Deletes need no sync of their own: a lost delete is redone by body
     * reconciliation, a lost put would lose an accepted message. */
    b->wopt = any_put ? sp->wopt_sync : sp->wopt_nosync;
    b->work.data = b;
    sp->inflight = b;
    int rv = uv_queue_work(sp->loop, &b->work, spool_on_batch_work,
                           spool_on_batch_done);
    KM_ASSERT(rv == 0); /* fails only for a NULL work callback */
}

int
spool_get(struct spool *sp, const char *key, struct buf *out)
{
    char *err = NULL;
    size_t len = 0;
    char *v = rocksdb_get(sp->db, sp->ropt, key, strlen(key), &len, &err);

    if (err != NULL) {
        LOG_ERROR("spool: %s: get: %s", sp->name, err);
        rocksdb_free(err);
        return KM_ESPOOL;
    }
    if (v == NULL) {
        return KM_ENOENT;
    }
    buf_append(out, v, len);
    rocksdb_free(v);
    return 0;
}

int
spool_foreach(struct spool *sp,
              bool (*fn)(void *arg, const char *key, size_t key_len,
                         const char *value, size_t value_len),
              void *arg)
{
    rocksdb_iterator_t *it = rocksdb_create_iterator(sp->db, sp->ropt);
    char *err = NULL;
    int rv = 0;

    for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t klen = 0, vlen = 0;
        const char *k = rocksdb_iter_key(it, &klen);
        const char *v = rocksdb_iter_value(it, &vlen);
        if (!fn(arg, k, klen, v, vlen)) {
            break;
        }
    }
    rocksdb_iter_get_error(it, &err);
    if (err != NULL) {
        LOG_ERROR("spool: %s: iterate: %s", sp->name, err);
        rocksdb_free(err);
        rv = KM_ESPOOL;
    }
    rocksdb_iter_destroy(it);
    return rv;
}

void
spool_get_stats(const struct spool *sp, struct spool_stats *out)
{
    *out = sp->stats;
}

int
spool_free_space(const struct spool *sp, uint64_t *bytes, double *pct)
{
    struct statvfs st;

    if (statvfs(sp->path, &st) != 0) {
        return -errno;
    }
    *bytes = (uint64_t)st.f_bavail * st.f_frsize;
    *pct = st.f_blocks > 0 ? 100.0 * (double)st.f_bavail / (double)st.f_blocks
                           : 0.0;
    return 0;
}

/* Pool thread: closing flushes memtables and may block. */
static void
spool_on_close_work(uv_work_t *req)
{
    struct spool *sp = req->data;

    rocksdb_close(sp->db);
}

static void
spool_on_close_done(uv_work_t *req, int status)
{
    struct spool *sp = req->data;
    spool_close_cb cb = sp->close_cb;
    void *arg = sp->close_arg;

    (void)status;
    spool_release(sp);
    if (cb != NULL) {
        cb(arg);
    }
}

static void
spool_finish_close(struct spool *sp)
{
    sp->close_work.data = sp;
    int rv = uv_queue_work(sp->loop, &sp->close_work, spool_on_close_work,
                           spool_on_close_done);
    KM_ASSERT(rv == 0);
}

void
spool_close(struct spool *sp, spool_close_cb cb, void *arg)
{
    KM_ASSERT(!sp->closing);
    sp->closing = true;
    sp->close_cb = cb;
    sp->close_arg = arg;
    /* Accepted ops are flushed, not failed: their batches run first. */
    if (sp->inflight == NULL) {
        spool_finish_close(sp);
    }
}
