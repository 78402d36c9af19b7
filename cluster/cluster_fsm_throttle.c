/* cluster_fsm_throttle.c - the FSM side of cluster-wide throttles and
 * connection slots (CLUSTER.md §4.7), deterministic: no clock, no I/O, no
 * raft runtime. A ThrottleDefine sets a key's limit per period; a
 * ThrottleGrant gives a node min(want, limit - granted) tokens of the
 * current window, windows aligned on FSM time; a ThrottleReturn gives
 * connection slots back (a key whose period is CLUSTER_CONN_PERIOD_MS is a
 * semaphore whose window never ends), and a node declared down or removed
 * loses its slots. The node side is cluster_throttle.c. Any thread that
 * owns the FSM. */
#include "cluster_int.h"

#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "cluster_core.h"

int64_t
cluster_throttle_window_of(int64_t t_ms, uint64_t period_ms)
{
    if (t_ms <= 0 || period_ms == 0) {
        return 0;
    }
    return (int64_t)(((uint64_t)t_ms / period_ms) * period_ms);
}

void
cluster_throttle_win_free(struct cluster_throttle_win *w)
{
    if (w == NULL) {
        return;
    }
    free(w->key);
    free(w->grants);
    free(w);
}

struct cluster_throttle_win *
cluster_throttle_win_dup(const struct cluster_throttle_win *w)
{
    struct cluster_throttle_win *c = km_calloc(1, sizeof(*c));

    c->key = km_strdup(w->key);
    c->limit = w->limit;
    c->period_ms = w->period_ms;
    c->window_start_ms = w->window_start_ms;
    c->granted = w->granted;
    c->n_grants = w->n_grants;
    c->grants = km_calloc(w->n_grants + 1, sizeof(*c->grants));
    if (w->n_grants > 0) {
        memcpy(c->grants, w->grants, w->n_grants * sizeof(*c->grants));
    }
    /* What this node spent before the image was taken is unknown: count
     * its tokens of this window as spent (under-use, never over-use). */
    c->local_window_ms = c->window_start_ms;
    c->local_used = UINT64_MAX;
    return c;
}

/* Forget the grants: a new window. */
static void
cluster_throttle_reset(struct cluster_throttle_win *w, int64_t start_ms)
{
    w->window_start_ms = start_ms;
    w->granted = 0;
    w->n_grants = 0;
}

void
cluster_throttle_apply_define(struct cluster_throttle_win **wp,
                              const struct cluster_rec *r, int64_t now_ms)
{
    struct cluster_throttle_win *w = *wp;

    if (w == NULL) {
        w = km_calloc(1, sizeof(*w));
        w->key = km_strdup(r->throttle_key);
        w->limit = r->limit;
        w->period_ms = r->period_ms;
        w->window_start_ms = cluster_throttle_window_of(now_ms, r->period_ms);
        *wp = w;
        return;
    }
    w->local_defining = false;
    if (w->limit == r->limit && w->period_ms == r->period_ms) {
        return; /* idempotent */
    }
    /* A lower limit keeps what was granted (it may exceed the new limit
     * for the rest of this window); a new period starts a new window. */
    w->limit = r->limit;
    if (w->period_ms != r->period_ms) {
        w->period_ms = r->period_ms;
        cluster_throttle_reset(
            w, cluster_throttle_window_of(now_ms, w->period_ms));
    }
}

uint64_t
cluster_throttle_win_tokens(const struct cluster_throttle_win *w, uint64_t node)
{
    for (size_t i = 0; i < w->n_grants; i++) {
        if (w->grants[i].node == node) {
            return w->grants[i].tokens;
        }
    }
    return 0;
}

uint64_t
cluster_throttle_apply_grant(struct cluster_throttle_win *w,
                             const struct cluster_rec *r, int64_t now_ms)
{
    int64_t start = cluster_throttle_window_of(now_ms, w->period_ms);
    uint64_t give;
    size_t i;

    /* FSM time never goes backwards, so start >= window_start_ms. */
    if (start > w->window_start_ms) {
        cluster_throttle_reset(w, start);
    }
    give = w->granted >= w->limit ? 0 : w->limit - w->granted;
    if (r->want < give) {
        give = r->want;
    }
    if (give == 0) {
        return 0;
    }
    for (i = 0; i < w->n_grants; i++) {
        if (w->grants[i].node == r->node) {
            break;
        }
    }
    if (i == w->n_grants) {
        w->grants =
            km_realloc(w->grants, (w->n_grants + 1) * sizeof(*w->grants));
        w->grants[i].node = r->node;
        w->grants[i].tokens = 0;
        w->n_grants++;
    }
    w->grants[i].tokens += give;
    w->granted += give;
    return give;
}

void
cluster_throttle_apply_return(struct cluster_throttle_win *w,
                              const struct cluster_rec *r)
{
    for (size_t i = 0; i < w->n_grants; i++) {
        if (w->grants[i].node == r->node) {
            uint64_t back =
                r->want < w->grants[i].tokens ? r->want : w->grants[i].tokens;
            w->grants[i].tokens -= back;
            w->granted -= back < w->granted ? back : w->granted;
            return;
        }
    }
}

void
cluster_throttle_forget_node(struct cluster_throttle_win *w, uint64_t node)
{
    struct cluster_rec r = {.node = node, .want = UINT64_MAX};

    if (w->period_ms == CLUSTER_CONN_PERIOD_MS) {
        cluster_throttle_apply_return(w, &r);
    }
}
