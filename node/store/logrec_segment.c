/* logrec_segment.c - the pool side of the log records: streams batches of
 * newline-delimited JSON through one ZSTD_CCtx into the open segment file,
 * one zstd frame per segment, and rotates by size and age. Runs inside one
 * uv_queue_work job at a time per logger, touching only its struct
 * logrec_seg; failures are recorded there for the loop thread to log. */
#include "logrec_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zstd.h>

#include "base/km.h"

/* Segments created in the same microsecond (several loggers sharing a
 * directory, or fast size rotation) get the next free microsecond. */
#define LOGREC_SEG_NAME_TRIES 1000

void
logrec_seg_name(int64_t wall_us, char *out, size_t out_len)
{
    int64_t secs = wall_us / 1000000;
    int64_t frac = wall_us % 1000000;
    struct tm tm;
    char date[24];

    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    time_t t = (time_t)secs;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%Y%m%d-%H%M%S", &tm);
    snprintf(out, out_len, "%s.%06lld", date, (long long)frac);
}

void
logrec_seg_init(struct logrec_seg *s, const char *dir, uint64_t max_size,
                uint64_t max_dur_ms, int level)
{
    memset(s, 0, sizeof(*s));
    s->dir = km_strdup(dir);
    s->max_size = max_size;
    s->max_dur_ms = max_dur_ms;
    s->level = level;
    s->fd = -1;
    s->cctx = ZSTD_createCCtx();
    KM_ASSERT(s->cctx != NULL);
    ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_compressionLevel, level);
    s->out_cap = ZSTD_CStreamOutSize();
    s->out = km_malloc(s->out_cap);
}

void
logrec_seg_fini(struct logrec_seg *s)
{
    KM_ASSERT(s->fd < 0);
    ZSTD_freeCCtx(s->cctx);
    free(s->out);
    free(s->path);
    free(s->err_path);
    free(s->dir);
    memset(s, 0, sizeof(*s));
    s->fd = -1;
}

/* Note the first failure of a job; later ones add nothing useful. */
static void
logrec_seg_fail(struct logrec_seg *s, const char *op, int err, const char *path)
{
    if (s->err != 0) {
        return;
    }
    s->err = err;
    s->err_op = op;
    s->err_generation = s->generation;
    free(s->err_path);
    s->err_path = km_strdup(path != NULL ? path : s->dir);
}

/* Give up on the open segment after a failure: its frame cannot be
 * completed, so the next record starts a new file. */
static void
logrec_seg_abandon(struct logrec_seg *s)
{
    close(s->fd);
    s->fd = -1;
    ZSTD_CCtx_reset(s->cctx, ZSTD_reset_session_only);
}

static size_t
logrec_seg_count_records(const char *p, size_t n)
{
    size_t count = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            count++;
        }
    }
    return count;
}

static int
logrec_seg_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Feed [p, p+n) to the compressor with `mode` and write whatever it
 * produces. */
static int
logrec_seg_compress(struct logrec_seg *s, const void *p, size_t n,
                    ZSTD_EndDirective mode)
{
    ZSTD_inBuffer in = {p, n, 0};

    for (;;) {
        ZSTD_outBuffer out = {s->out, s->out_cap, 0};
        size_t rem = ZSTD_compressStream2(s->cctx, &out, &in, mode);
        if (ZSTD_isError(rem)) {
            return KM_EIO;
        }
        if (out.pos > 0) {
            int rv = logrec_seg_write_all(s->fd, s->out, out.pos);
            if (rv != 0) {
                return rv;
            }
        }
        if (mode == ZSTD_e_continue ? in.pos == in.size : rem == 0) {
            return 0;
        }
    }
}

static int
logrec_seg_open(struct logrec_seg *s)
{
    int64_t us = km_now_wall_us();
    char name[40];

    for (int i = 0; i < LOGREC_SEG_NAME_TRIES; i++, us++) {
        logrec_seg_name(us, name, sizeof(name));
        char *path = km_asprintf("%s/%s", s->dir, name);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0) {
            free(s->path);
            s->path = path;
            s->fd = fd;
            s->bytes = 0;
            s->opened_mono_ms = km_now_mono_ms();
            s->generation++;
            return 0;
        }
        int err = -errno;
        if (err != KM_EEXIST) {
            logrec_seg_fail(s, "open", err, path);
            free(path);
            return err;
        }
        free(path);
    }
    logrec_seg_fail(s, "open", KM_EEXIST, NULL);
    return KM_EEXIST;
}

void
logrec_seg_finish(struct logrec_seg *s)
{
    int rv;

    if (s->fd < 0) {
        return;
    }
    rv = logrec_seg_compress(s, NULL, 0, ZSTD_e_end);
    if (rv != 0) {
        logrec_seg_fail(s, "write", rv, s->path);
        logrec_seg_abandon(s);
        return;
    }
    if (fsync(s->fd) != 0) {
        logrec_seg_fail(s, "fsync", -errno, s->path);
    }
    /* Read-only marks the segment complete for readers such as KumoMTA's
     * tailer, which follow the file being written. */
    if (fchmod(s->fd, 0444) != 0) {
        logrec_seg_fail(s, "chmod", -errno, s->path);
    }
    if (close(s->fd) != 0) {
        logrec_seg_fail(s, "close", -errno, s->path);
    }
    s->fd = -1;
    s->closed++;
}

bool
logrec_seg_is_expired(const struct logrec_seg *s, uint64_t now_mono_ms)
{
    return s->fd >= 0 && s->max_dur_ms > 0 &&
           now_mono_ms - s->opened_mono_ms >= s->max_dur_ms;
}

void
logrec_seg_write(struct logrec_seg *s, const char *data, size_t len)
{
    const char *p = data;
    const char *end = data + len;

    while (p < end) {
        if (s->fd < 0 && logrec_seg_open(s) != 0) {
            s->dropped += logrec_seg_count_records(p, (size_t)(end - p));
            return;
        }
        /* Take records up to and including the one that reaches max_size,
         * so that a record never straddles two segments. */
        const char *q = p;
        while (q < end) {
            const char *nl = memchr(q, '\n', (size_t)(end - q));
            q = nl != NULL ? nl + 1 : end;
            if (s->bytes + (uint64_t)(q - p) >= s->max_size) {
                break;
            }
        }
        /* Flush each batch to the file, so that records reach the disk
         * within a flush interval even if the process is killed before
         * the segment is closed (zstdcat reads up to the cut). */
        int rv = logrec_seg_compress(s, p, (size_t)(q - p), ZSTD_e_flush);
        if (rv != 0) {
            logrec_seg_fail(s, "write", rv, s->path);
            logrec_seg_abandon(s);
            s->dropped += logrec_seg_count_records(p, (size_t)(end - p));
            return;
        }
        s->bytes += (uint64_t)(q - p);
        if (s->bytes >= s->max_size) {
            logrec_seg_finish(s);
        }
        p = q;
    }
    if (logrec_seg_is_expired(s, km_now_mono_ms())) {
        logrec_seg_finish(s);
    }
}
