/* logrec_int.h - declarations shared by logrec.c (loop side: records,
 * pending buffer, timer) and logrec_segment.c (pool side: zstd streaming
 * into segment files). A struct logrec_seg belongs to the one pool job that
 * is running, or to the loop thread while none is; never to both. */
#ifndef KUMO_LOGREC_INT_H
#define KUMO_LOGREC_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct logrec;
struct ZSTD_CCtx_s;

/* The open segment of one logger and the settings it rotates by. */
struct logrec_seg {
    /* Settings, fixed at init. */
    char *dir;
    uint64_t max_size;   /* uncompressed bytes per segment */
    uint64_t max_dur_ms; /* 0 = unlimited */
    int level;           /* zstd level, already defaulted */
    /* The open segment: fd is -1 when there is none. */
    int fd;
    char *path;
    uint64_t bytes;          /* uncompressed bytes in this segment */
    uint64_t opened_mono_ms; /* km_now_mono_ms() when it was created */
    uint64_t generation;     /* counts segments opened */
    struct ZSTD_CCtx_s *cctx;
    void *out; /* compressed output staging, out_cap bytes */
    size_t out_cap;
    /* Results of the last job, read and cleared by the loop thread. */
    int err;            /* first failure (KM_E*), 0 if none */
    const char *err_op; /* "open", "write", "compress", "fsync", "close" */
    char *err_path;     /* segment path of the failure */
    uint64_t err_generation;
    uint64_t dropped; /* records lost to failures */
    uint64_t closed;  /* segments completed */
};

/* Counters for tests and metrics. */
struct logrec_stats {
    uint64_t records;  /* records accepted by logrec_write */
    uint64_t errors;   /* failed segment operations */
    uint64_t dropped;  /* records lost (write failure or written while
                          closing) */
    uint64_t segments; /* segments completed */
};

/* Copy the logger's counters into *out. Loop thread. */
void logrec_get_stats(const struct logrec *lr, struct logrec_stats *out);

/* Set up s for writing into `dir` (copied); no file is opened yet. */
void logrec_seg_init(struct logrec_seg *s, const char *dir, uint64_t max_size,
                     uint64_t max_dur_ms, int level);
/* Release what s holds. The segment must be finished first. */
void logrec_seg_fini(struct logrec_seg *s);
/* Append whole newline-terminated records to the open segment, opening one
 * if needed and finishing it whenever it reaches max_size uncompressed bytes
 * (a record never straddles two segments). Failures are noted in s->err and
 * the records concerned counted in s->dropped. Pool thread. */
void logrec_seg_write(struct logrec_seg *s, const char *data, size_t len);
/* Finish the open segment, if any: end the zstd frame, fsync, close, and
 * clear the write bits (KumoMTA's sign that a segment is complete). Pool
 * thread. */
void logrec_seg_finish(struct logrec_seg *s);
/* True if a segment is open and older than max_dur_ms at `now_mono_ms`. */
bool logrec_seg_is_expired(const struct logrec_seg *s, uint64_t now_mono_ms);
/* Write the segment name for a wall-clock time, YYYYMMDD-HHMMSS.ffffff in
 * UTC, into out (at least 32 bytes). */
void logrec_seg_name(int64_t wall_us, char *out, size_t out_len);
#endif /* KUMO_LOGREC_INT_H */
