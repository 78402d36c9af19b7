/* cluster_throttle.c - the node side of cluster-wide throttles and
 * connection slots (CLUSTER.md §4.7): cluster_throttle_take spends this
 * node's granted tokens and asks the batcher for more when it runs out;
 * what it has spent lives in the window's node-local fields, never
 * replicated. The FSM side (ThrottleDefine, ThrottleGrant, ThrottleReturn)
 * is cluster_fsm_throttle.c. Loop thread only. */
#include "cluster_int.h"

#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "base/km_map.h"
#include "cluster_core.h"

/* ---- Node side ---- */

/* What a proposal's commit callback needs: the record's kind, its count
 * (want) and the key, to find the state it updates again. */
struct cluster_throttle_req {
    struct cluster *c;
    int kind; /* enum cluster_rec_kind */
    uint64_t n;
    char key[];
};

static bool
cluster_throttle_key_ok(const char *key)
{
    return key != NULL && key[0] != '\0' &&
           strnlen(key, CLUSTER_MAX_THROTTLE_KEY + 1) <=
               CLUSTER_MAX_THROTTLE_KEY;
}

static void
cluster_throttle_on_committed(void *arg, int status)
{
    struct cluster_throttle_req *q = arg;

    /* While closing, the cluster may be half torn down: leave it alone. */
    if (status != KM_ECLOSING) {
        struct cluster_throttle_win *w =
            cluster_fsm_throttle(q->c->fsm, q->key);
        if (w != NULL && q->kind == CLUSTER_REC_THROTTLE_DEFINE) {
            w->local_defining = false;
        } else if (w != NULL) {
            w->local_inflight = false;
        }
    }
    free(q);
}

/* Queue one throttle record (moved) for the batcher; cb gets a struct
 * cluster_throttle_req, which it frees. */
static int
cluster_throttle_submit(struct cluster *c, struct cluster_rec *rec,
                        cluster_commit_cb cb)
{
    size_t n = strlen(rec->throttle_key) + 1;
    struct cluster_throttle_req *q = km_calloc(1, sizeof(*q) + n);

    q->c = c;
    q->kind = rec->kind;
    q->n = rec->want;
    memcpy(q->key, rec->throttle_key, n);
    int rv = cluster_raft_submit_rec(c, rec, cb, q);
    if (rv != 0) {
        free(q);
    }
    return rv;
}

/* The window's in-flight flag is cleared by the callback. */
static int
cluster_throttle_propose(struct cluster *c, struct cluster_rec *rec)
{
    return cluster_throttle_submit(c, rec, cluster_throttle_on_committed);
}

static int
cluster_throttle_propose_define(struct cluster *c, const char *key,
                                uint64_t limit, uint64_t period_ms)
{
    struct cluster_rec rec;

    memset(&rec, 0, sizeof(rec));
    rec.kind = CLUSTER_REC_THROTTLE_DEFINE;
    rec.throttle_key = km_strdup(key);
    rec.limit = limit;
    rec.period_ms = period_ms;
    return cluster_throttle_propose(c, &rec);
}

static int
cluster_throttle_propose_grant(struct cluster *c, const char *key,
                               uint64_t limit)
{
    struct cluster_rec rec;
    size_t live = cluster_fsm_up_count(c->fsm);
    uint64_t want;

    if (live == 0) {
        live = 1;
    }
    want = limit / (4 * (uint64_t)live);
    memset(&rec, 0, sizeof(rec));
    rec.kind = CLUSTER_REC_THROTTLE_GRANT;
    rec.throttle_key = km_strdup(key);
    rec.node = c->cfg.node_id;
    rec.want = want > 0 ? want : 1;
    return cluster_throttle_propose(c, &rec);
}

bool
cluster_throttle_is_shared(const struct cluster *c)
{
    return c != NULL && c->link != NULL;
}

int
cluster_throttle_take(struct cluster *c, const char *key, uint64_t limit,
                      uint64_t period_ms, uint64_t now_ms)
{
    struct cluster_throttle_win *w;

    if (!cluster_throttle_key_ok(key) || limit == 0 || period_ms == 0 ||
        period_ms > INT64_MAX / 2) {
        return KM_EINVAL;
    }
    w = cluster_fsm_throttle(c->fsm, key);
    if (w == NULL) {
        /* Define, then ask: the batcher keeps their order. Repeated
         * defines (until the first one applies) change nothing. */
        if (cluster_throttle_propose_define(c, key, limit, period_ms) == 0) {
            (void)cluster_throttle_propose_grant(c, key, limit);
        }
        return KM_EAGAIN;
    }
    if (w->limit != limit || w->period_ms != period_ms) {
        if (!w->local_defining &&
            cluster_throttle_propose_define(c, key, limit, period_ms) == 0) {
            w->local_defining = true;
        }
        return KM_EAGAIN;
    }
    if (w->local_window_ms != w->window_start_ms) {
        w->local_window_ms = w->window_start_ms;
        w->local_used = 0;
    }
    if (now_ms < (uint64_t)w->window_start_ms + w->period_ms) {
        if (w->local_used < cluster_throttle_win_tokens(w, c->cfg.node_id)) {
            w->local_used++;
            return 0;
        }
        if (w->granted >= w->limit) {
            return KM_EAGAIN; /* nothing left before the window ends */
        }
    }
    if (!w->local_inflight &&
        cluster_throttle_propose_grant(c, key, limit) == 0) {
        w->local_inflight = true;
    }
    return KM_EAGAIN;
}

/* ---- Connection slots (CLUSTER.md §4.7 "cluster-wide connection
 * limits") ----
 *
 * A key whose period is CLUSTER_CONN_PERIOD_MS is a semaphore: its window
 * never ends, a ThrottleGrant of one token is one connection slot held by
 * a node, and a ThrottleReturn gives slots back. The FSM never grants more
 * than the limit in total. A node that is declared down or removed loses
 * its slots (cluster_throttle_forget_node). What this node does with the
 * slots it holds (in use, being returned, a request in flight) is
 * node-local, in c->conn_local. */

/* How long a freshly granted slot is left to the node that asked. */
#define CLUSTER_CONN_RECONCILE_GRACE_MS 5000u

struct cluster_conn_local {
    uint64_t used;      /* slots our open connections use */
    uint64_t returning; /* slots given back, not yet applied */
    bool asking;        /* a ThrottleGrant of ours is in flight */
    uint64_t asked_ms;  /* loop time our last grant request ended */
    bool defining;      /* a ThrottleDefine of ours is in flight */
};

void
cluster_conn_free_local(struct cluster *c)
{
    struct km_map_iter it;
    const char *k;
    void *v;

    if (c->conn_local == NULL) {
        return;
    }
    km_map_iter_init(&it, c->conn_local);
    while (km_map_iter_next(&it, &k, &v)) {
        free(v);
    }
    km_map_free(c->conn_local);
    c->conn_local = NULL;
}

static struct cluster_conn_local *
cluster_conn_local(struct cluster *c, const char *key)
{
    struct cluster_conn_local *l;

    if (c->conn_local == NULL) {
        c->conn_local = km_map_new();
    }
    l = km_map_get(c->conn_local, key);
    if (l == NULL) {
        l = km_calloc(1, sizeof(*l));
        km_map_put(c->conn_local, key, l, NULL);
    }
    return l;
}

static void
cluster_conn_on_committed(void *arg, int status)
{
    struct cluster_throttle_req *q = arg;

    /* While closing, the cluster may be half torn down: leave it alone. */
    if (status != KM_ECLOSING && q->c->conn_local != NULL) {
        struct cluster_conn_local *l = km_map_get(q->c->conn_local, q->key);
        if (l != NULL) {
            if (q->kind == CLUSTER_REC_THROTTLE_DEFINE) {
                l->defining = false;
            } else if (q->kind == CLUSTER_REC_THROTTLE_GRANT) {
                l->asking = false;
                l->asked_ms = uv_now(q->c->loop);
                if (status == 0 && q->c->host.on_conn_slots != NULL) {
                    q->c->host.on_conn_slots(q->c->host.ctx, q->key);
                }
            } else {
                /* Applied (status 0), or its fate is unknown: either way
                 * stop counting it; if it commits later, a connection may
                 * briefly use a slot the FSM no longer lists. */
                l->returning -= q->n < l->returning ? q->n : l->returning;
            }
        }
    }
    free(q);
}

static int
cluster_conn_propose(struct cluster *c, int kind, const char *key,
                     uint64_t limit, uint64_t n)
{
    struct cluster_rec rec;

    memset(&rec, 0, sizeof(rec));
    rec.kind = kind;
    rec.throttle_key = km_strdup(key);
    rec.limit = limit;
    rec.period_ms = CLUSTER_CONN_PERIOD_MS;
    rec.node = c->cfg.node_id;
    rec.want = n;
    return cluster_throttle_submit(c, &rec, cluster_conn_on_committed);
}

int
cluster_conn_acquire(struct cluster *c, const char *key, uint32_t limit,
                     uint32_t want)
{
    struct cluster_throttle_win *w;
    struct cluster_conn_local *l;
    uint64_t held;

    if (!cluster_throttle_key_ok(key) || limit == 0) {
        return KM_EINVAL;
    }
    l = cluster_conn_local(c, key);
    w = cluster_fsm_throttle(c->fsm, key);
    if (w == NULL || w->limit != limit ||
        w->period_ms != CLUSTER_CONN_PERIOD_MS) {
        if (!l->defining && cluster_conn_propose(c, CLUSTER_REC_THROTTLE_DEFINE,
                                                 key, limit, 0) == 0) {
            l->defining = true;
        }
        if (w == NULL || w->period_ms != CLUSTER_CONN_PERIOD_MS) {
            return KM_EAGAIN;
        }
        /* A changed limit: keep using the slots we hold meanwhile. */
    }
    held = cluster_throttle_win_tokens(w, c->cfg.node_id);
    if (held > l->used + l->returning) {
        l->used++;
        return 0;
    }
    if (!l->asking && w->granted < w->limit) {
        uint64_t left = w->limit - w->granted;
        uint64_t n = want == 0 ? 1 : want;
        if (cluster_conn_propose(c, CLUSTER_REC_THROTTLE_GRANT, key, limit,
                                 n < left ? n : left) == 0) {
            l->asking = true;
        }
    }
    return KM_EAGAIN;
}

void
cluster_conn_release(struct cluster *c, const char *key)
{
    struct cluster_conn_local *l =
        c->conn_local != NULL ? km_map_get(c->conn_local, key) : NULL;

    if (l == NULL || l->used == 0) {
        return;
    }
    l->used--;
    if (cluster_conn_propose(c, CLUSTER_REC_THROTTLE_RETURN, key, 0, 1) == 0) {
        l->returning++;
    }
    /* If it could not be proposed, cluster_conn_reconcile returns it. */
}

void
cluster_conn_reconcile(struct cluster *c)
{
    struct km_map_iter it;
    const char *k;
    void *v;

    if (c->link == NULL) {
        return;
    }
    km_map_iter_init(&it, cluster_fsm_throttle_map(c->fsm));
    while (km_map_iter_next(&it, &k, &v)) {
        struct cluster_throttle_win *w = v;
        if (w->period_ms != CLUSTER_CONN_PERIOD_MS) {
            continue;
        }
        uint64_t held = cluster_throttle_win_tokens(w, c->cfg.node_id);
        struct cluster_conn_local *l = cluster_conn_local(c, k);
        uint64_t busy = l->used + l->returning;
        /* A slot just granted waits for its ready queue's next poll. */
        bool fresh =
            uv_now(c->loop) - l->asked_ms < CLUSTER_CONN_RECONCILE_GRACE_MS;
        if (held > busy && !l->asking && !fresh &&
            cluster_conn_propose(c, CLUSTER_REC_THROTTLE_RETURN, k, 0,
                                 held - busy) == 0) {
            /* Slots nobody uses here (left from before a restart, or a
             * release that could not be proposed): give them back. */
            l->returning += held - busy;
        }
    }
}
