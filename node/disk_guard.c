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
 * Loop thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "base/log.h"
#include "cluster.h"
#include "kumod.h"
#include "spool.h"

#define DISK_GUARD_PERIOD_MS   1000
#define DISK_GUARD_DEFAULT_PCT 10.0
/* After handing leadership away, stop this much later at most. */
#define DISK_GUARD_STOP_DELAY_MS 2000

int
kumod_disk_parse_mark(struct kumod *kd, const char *s, char *err, size_t errlen)
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
        kd->min_free_pct = pct;
        kd->min_free_bytes = 0;
        return 0;
    }
    if (km_parse_size(s, &bytes) != 0) {
        snprintf(err, errlen,
                 "min_free_space: '%s' is neither a percentage ('10%%') nor a "
                 "size ('5GB')",
                 s);
        return KM_ECONFIG;
    }
    kd->min_free_bytes = bytes;
    kd->min_free_pct = 0.0;
    return 0;
}

static bool
kumod_disk_below(const struct kumod *kd, double fraction)
{
    if (kd->min_free_bytes > 0) {
        return (double)kd->disk_free_bytes <
               (double)kd->min_free_bytes * fraction;
    }
    return kd->disk_free_pct < kd->min_free_pct * fraction;
}

static void
kumod_disk_on_stop_timer(uv_timer_t *t)
{
    kumod_request_shutdown(t->data);
}

static void
kumod_disk_on_timer(uv_timer_t *t)
{
    struct kumod *kd = t->data;
    uint64_t bytes = 0;
    double pct = 0.0;

    if (kd->data_spool == NULL || kumod_is_stopping(kd) ||
        spool_free_space(kd->data_spool, &bytes, &pct) != 0) {
        return;
    }
    kd->disk_free_bytes = bytes;
    kd->disk_free_pct = pct;
    bool low = kumod_disk_below(kd, 1.0);
    if (low != kd->disk_low) {
        kd->disk_low = low;
        if (low) {
            LOG_WARN("kumod: data spool: %.1f%% (%llu bytes) free, below the "
                     "soft mark: new mail gets 452",
                     pct, (unsigned long long)bytes);
        } else {
            LOG_INFO("kumod: data spool: %.1f%% free again: accepting mail",
                     pct);
        }
    }
    if (!kumod_disk_below(kd, 1.0 / 3.0) || kd->disk_critical ||
        kd->n_cluster_peers <= 1) {
        return;
    }
    kd->disk_critical = true;
    LOG_ERROR("kumod: data spool: %.1f%% free, below the hard mark: handing "
              "leadership away and stopping",
              pct);
    if (kd->cluster != NULL && cluster_is_leader(kd->cluster)) {
        int rv = cluster_hand_off(kd->cluster);
        if (rv != 0) {
            LOG_WARN("kumod: leadership transfer: %s", km_strerror(rv));
        }
    }
    kd->exit_status = 1;
    /* Give the transfer a moment; raft's own I/O error path stops the
     * node anyway if the disk fills first. */
    uv_timer_stop(&kd->disk_timer);
    uv_timer_start(&kd->disk_timer, kumod_disk_on_stop_timer,
                   DISK_GUARD_STOP_DELAY_MS, 0);
}

void
kumod_disk_start(struct kumod *kd)
{
    if (kd->min_free_pct == 0.0 && kd->min_free_bytes == 0) {
        kd->min_free_pct = DISK_GUARD_DEFAULT_PCT;
    }
    uv_timer_init(kd->loop, &kd->disk_timer);
    kd->disk_timer.data = kd;
    kd->disk_timer_open = true;
    kumod_disk_on_timer(&kd->disk_timer);
    uv_timer_start(&kd->disk_timer, kumod_disk_on_timer, DISK_GUARD_PERIOD_MS,
                   DISK_GUARD_PERIOD_MS);
}

void
kumod_disk_stop(struct kumod *kd)
{
    if (!kd->disk_timer_open) {
        return;
    }
    kd->disk_timer_open = false;
    uv_timer_stop(&kd->disk_timer);
    uv_close((uv_handle_t *)&kd->disk_timer, NULL);
}
