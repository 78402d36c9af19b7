/* disk_guard.h - free space watch on the data spool's file system
 * (CLUSTER.md §4.5, drill D6): below the soft mark new mail is refused
 * (the guard reports it through on_low; the hub tells the listeners);
 * below the hard mark a node of a group hands Raft leadership away and
 * asks to stop (on_critical). Loop thread only. */
#ifndef KUMO_DISK_GUARD_H
#define KUMO_DISK_GUARD_H
#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

struct cluster;
struct spool;
struct disk_guard; /* opaque */

/* define_spool{ name = 'data', min_free_space = ... }: a percentage of the
 * file system or a size; both 0: the default (10%). */
struct disk_mark {
    double pct;
    uint64_t bytes;
};

/* Parse "10%" or a size ("5GB") into *out. KM_ECONFIG with the reason
 * (naming min_free_space and the value) in err. */
int disk_guard_parse_mark(const char *s, struct disk_mark *out, char *err,
                          size_t errlen);

/* The data spool crossed the soft mark: low (452 to new mail, StoreBody
 * refused) or fine again. */
typedef void (*disk_guard_low_cb)(void *arg, bool low);
/* Below the hard mark in a group, leadership handed away: stop now. */
typedef void (*disk_guard_critical_cb)(void *arg);

struct disk_guard_deps {
    uv_loop_t *loop;
    struct spool *data;
    struct cluster *cluster; /* cluster_is_group() decides the hard mark */
    struct disk_mark mark;
    disk_guard_low_cb on_low;
    disk_guard_critical_cb on_critical;
    void *arg;
};

/* Check now, then every second. The caller owns *out; release with
 * disk_guard_close(). */
void disk_guard_open(const struct disk_guard_deps *d, struct disk_guard **out);
/* Below the soft mark at the last check (false for NULL). */
bool disk_guard_is_low(const struct disk_guard *g);
/* Shutdown: stop checking; the last state stays (NULL: nothing). */
void disk_guard_stop(struct disk_guard *g);
/* Stop checking and free g once its timer has closed (NULL: nothing). */
void disk_guard_close(struct disk_guard *g);
#endif /* KUMO_DISK_GUARD_H */
