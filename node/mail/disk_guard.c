/* disk_guard.c - free space watch on the data spool's file system
 * (CLUSTER.md §4.5 and drill D6). A full disk must never stall the group
 * (libraft 0.15 keeps a leader that cannot write) or lose a message that
 * got a 250, so the node backs off in two steps:
 *   - soft mark (define_spool{name='data', min_free_space=...}, default
 *     10%): new mail gets `452 4.3.1` at RCPT TO and other nodes' StoreBody
 *     requests are refused, so they pick other replicas;
 *   - hard mark (a third of the soft mark): a node of a group hands Raft
 *     leadership to another voter and stops with exit status 1; its queued
 *     messages fail over to their replicas. A single node keeps running and
 *     keeps answering 452: there is nobody to hand the work to.
 * Owns its timer, its marks and its state. Loop thread only. */
#include "disk_guard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "base/log.h"
#include "cluster.h"
#include "spool.h"

#define DISK_GUARD_PERIOD_MS   1000
#define DISK_GUARD_DEFAULT_PCT 10.0
/* After handing leadership away, stop this much later at most. */
#define DISK_GUARD_STOP_DELAY_MS 2000

struct disk_guard {
    struct disk_guard_deps d;
    uv_timer_t timer;
    bool low;      /* below the soft mark: 452 to new mail */
    bool critical; /* below the hard mark: stopping */
    bool closing;
    double free_pct;
    uint64_t free_bytes;
};

int
disk_guard_parse_mark(const char *s, struct disk_mark *out, char *err,
                      size_t errlen)
{
    size_t n = strlen(s);
    uint64_t bytes;

    if (n > 1 && s[n - 1] == '%') {
        char *end = NULL;
        double pct = strtod(s, &end);
        if (end != s + n - 1 || pct < 0.0 || pct >= 100.0) {
            snprintf(err, errlen, "min_free_space: '%s' is not a percentage",
                     s);
            return KM_ECONFIG;
        }
        out->pct = pct;
        out->bytes = 0;
        return 0;
    }
    if (km_parse_size(s, &bytes) != 0) {
        snprintf(err, errlen,
                 "min_free_space: '%s' is neither a percentage ('10%%') nor a "
                 "size ('5GB')",
                 s);
        return KM_ECONFIG;
    }
    out->bytes = bytes;
    out->pct = 0.0;
    return 0;
}

static bool
disk_guard_below(const struct disk_guard *g, double fraction)
{
    if (g->d.mark.bytes > 0) {
        return (double)g->free_bytes < (double)g->d.mark.bytes * fraction;
    }
    return g->free_pct < g->d.mark.pct * fraction;
}

static void
disk_guard_on_stop_timer(uv_timer_t *t)
{
    struct disk_guard *g = t->data;

    g->d.on_critical(g->d.arg);
}

static void
disk_guard_on_timer(uv_timer_t *t)
{
    struct disk_guard *g = t->data;
    uint64_t bytes = 0;
    double pct = 0.0;

    if (g->closing || spool_free_space(g->d.data, &bytes, &pct) != 0) {
        return;
    }
    g->free_bytes = bytes;
    g->free_pct = pct;
    bool low = disk_guard_below(g, 1.0);
    if (low != g->low) {
        g->low = low;
        if (low) {
            LOG_WARN("kumod: data spool: %.1f%% (%llu bytes) free, below the "
                     "soft mark: new mail gets 452",
                     pct, (unsigned long long)bytes);
        } else {
            LOG_INFO("kumod: data spool: %.1f%% free again: accepting mail",
                     pct);
        }
        g->d.on_low(g->d.arg, low);
    }
    if (!disk_guard_below(g, 1.0 / 3.0) || g->critical ||
        !cluster_is_group(g->d.cluster)) {
        return;
    }
    g->critical = true;
    LOG_ERROR("kumod: data spool: %.1f%% free, below the hard mark: handing "
              "leadership away and stopping",
              pct);
    if (cluster_is_leader(g->d.cluster)) {
        int rv = cluster_hand_off(g->d.cluster);
        if (rv != 0) {
            LOG_WARN("kumod: leadership transfer: %s", km_strerror(rv));
        }
    }
    /* Give the transfer a moment; raft's own I/O error path stops the
     * node anyway if the disk fills first. */
    uv_timer_stop(&g->timer);
    uv_timer_start(&g->timer, disk_guard_on_stop_timer,
                   DISK_GUARD_STOP_DELAY_MS, 0);
}

void
disk_guard_open(const struct disk_guard_deps *d, struct disk_guard **out)
{
    struct disk_guard *g = km_calloc(1, sizeof(*g));

    g->d = *d;
    if (g->d.mark.pct == 0.0 && g->d.mark.bytes == 0) {
        g->d.mark.pct = DISK_GUARD_DEFAULT_PCT;
    }
    uv_timer_init(d->loop, &g->timer);
    g->timer.data = g;
    *out = g;
    disk_guard_on_timer(&g->timer);
    uv_timer_start(&g->timer, disk_guard_on_timer, DISK_GUARD_PERIOD_MS,
                   DISK_GUARD_PERIOD_MS);
}

bool
disk_guard_is_low(const struct disk_guard *g)
{
    return g != NULL && g->low;
}

void
disk_guard_stop(struct disk_guard *g)
{
    if (g != NULL && !g->closing) {
        uv_timer_stop(&g->timer);
    }
}

static void
disk_guard_on_closed(uv_handle_t *h)
{
    free(h->data);
}

void
disk_guard_close(struct disk_guard *g)
{
    if (g == NULL || g->closing) {
        return;
    }
    g->closing = true;
    uv_timer_stop(&g->timer);
    uv_close((uv_handle_t *)&g->timer, disk_guard_on_closed);
}
