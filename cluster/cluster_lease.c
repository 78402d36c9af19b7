/* cluster_lease.c - delivery leases and node liveness (CLUSTER.md §4.6).
 * A node that is not the leader pings the leader every ping_ms; the lease
 * runs until the send time plus self_fence_after once the leader answers
 * lease_ok, which it does only after a raft barrier issued after the ping
 * arrived (proof that it still leads). The leader's own lease is renewed by
 * the same barriers. The leader also proposes NodeState records: an UP
 * node silent for node_down_after goes DOWN, a DOWN or unknown node that
 * pings goes JOINING, and UP after rebalance_after; as the first leader of
 * a group it proposes the bootstrap settings and nodes. Only monotonic
 * clocks are used. Loop thread only; only with a link (multi-node). */
#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "base/log.h"
#include "cluster_core.h"
#include "cluster_shard.h"

/* What the leader knows of another node, on its own monotonic clock. */
struct cluster_lease_node {
    uint64_t id;
    uint64_t last_ping_ms;
    uint64_t joining_since_ms; /* 0: not seen JOINING */
    int proposed;              /* a NodeState in flight: its state, else 0 */
};

/* A Ping waiting for the leader's next barrier. */
struct cluster_lease_wait {
    struct cluster_lease_wait *next;
    struct cluster_link_reply *reply;
    uint64_t seq;
};

/* One barrier of the leader and the pings it answers. */
struct cluster_lease_barrier {
    struct cluster *c;
    struct cluster_lease_wait *batch;
    uint64_t issued_ms;
};

/* A Ping sent by this node. */
struct cluster_lease_ping {
    struct cluster *c;
    uint64_t sent_ms;
    uint64_t seq;
};

/* A NodeState proposed by the leader's down detection. */
struct cluster_lease_prop {
    struct cluster *c;
    uint64_t node;
};

struct cluster_lease {
    uv_timer_t timer; /* data: the cluster */
    uint64_t seq;
    /* Follower: lease from the last lease_ok Pong; its commit index. */
    uint64_t lease_sent_ms;
    bool have_lease;
    uint64_t pong_seq;
    uint64_t caught_up_index;
    /* Leader: lease from the last barrier; the term it was set up for. */
    uint64_t leader_from_ms;
    bool leader_lease;
    uint64_t leader_term;
    bool barrier_out;
    bool boot_inflight;                 /* the bootstrap records are proposed */
    struct cluster_lease_wait *waiting; /* arrived since barrier_out */
    struct cluster_lease_node *nodes;
    size_t n_nodes;
};

/* Helpers */

static uint64_t
cluster_lease_now(void)
{
    return km_now_mono_ms();
}

static struct cluster_lease_node *
cluster_lease_node(struct cluster_lease *l, uint64_t id, uint64_t now)
{
    for (size_t i = 0; i < l->n_nodes; i++) {
        if (l->nodes[i].id == id) {
            return &l->nodes[i];
        }
    }
    l->nodes = km_realloc(l->nodes, (l->n_nodes + 1) * sizeof(*l->nodes));
    struct cluster_lease_node *n = &l->nodes[l->n_nodes++];
    memset(n, 0, sizeof(*n));
    n->id = id;
    n->last_ping_ms = now;
    return n;
}

static void
cluster_lease_pong(struct cluster *c, struct cluster_link_reply *r,
                   uint64_t seq, bool ok)
{
    struct cluster_link_msg m = {.kind = CLUSTER_LINK_PONG};
    struct cluster_stats st;

    cluster_get_stats(c, &st);
    m.u.pong.seq = seq;
    m.u.pong.leader_id = st.leader_id;
    m.u.pong.term = st.term;
    m.u.pong.commit_index = st.commit_index;
    m.u.pong.lease_ok = ok;
    (void)cluster_link_reply_send(r, &m);
}

/* Answer (or, with the link gone, drop) a list of waiting pings. */
static void
cluster_lease_answer(struct cluster *c, struct cluster_lease_wait *w, bool ok)
{
    while (w != NULL) {
        struct cluster_lease_wait *next = w->next;
        if (c->lease != NULL) {
            cluster_lease_pong(c, w->reply, w->seq, ok);
        }
        free(w);
        w = next;
    }
}

static void cluster_lease_send_barrier(struct cluster *c);
static void cluster_lease_bootstrap(struct cluster *c);

static void
cluster_lease_on_barrier(void *arg, int status)
{
    struct cluster_lease_barrier *b = arg;
    struct cluster *c = b->c;
    struct cluster_lease *l = c->lease;
    bool ok = status == 0 && !c->closing && cluster_is_leader(c);

    if (l != NULL) {
        l->barrier_out = false;
        if (ok) {
            l->leader_from_ms = b->issued_ms;
            l->leader_lease = true;
        }
    }
    cluster_lease_answer(c, b->batch, ok);
    free(b);
    /* Pings that arrived meanwhile get the next barrier from
     * cluster_lease_check, never from here: raft runs this callback while
     * it may be tearing its leader state down (a lost leadership fails
     * pending barriers), and libraft 0.15 crashes on raft_barrier then. */
}

/* Issue a barrier for the pings waiting now (and the leader's lease). */
static void
cluster_lease_send_barrier(struct cluster *c)
{
    struct cluster_lease *l = c->lease;
    struct cluster_lease_barrier *b;

    if (l->barrier_out) {
        return;
    }
    b = km_calloc(1, sizeof(*b));
    b->c = c;
    b->batch = l->waiting;
    b->issued_ms = cluster_lease_now();
    l->waiting = NULL;
    int rv = cluster_raft_barrier(c, cluster_lease_on_barrier, b);
    if (rv != 0) {
        cluster_lease_answer(c, b->batch, false);
        free(b);
        return;
    }
    l->barrier_out = true;
}

static void
cluster_lease_on_prop(void *arg, int status)
{
    struct cluster_lease_prop *p = arg;
    struct cluster_lease *l = p->c->lease;

    if (status != 0 && status != KM_ECLOSING) {
        LOG_WARN("cluster: node %llu: node state: %s",
                 (unsigned long long)p->node, km_strerror(status));
    }
    for (size_t i = 0; l != NULL && i < l->n_nodes; i++) {
        if (l->nodes[i].id == p->node) {
            l->nodes[i].proposed = 0;
        }
    }
    free(p);
}

/* Down detection: propose `state` for `ln` unless one is in flight. */
static void
cluster_lease_propose(struct cluster *c, struct cluster_lease_node *ln,
                      enum cluster_node_state state, const char *link_url)
{
    struct cluster_lease_prop *p;

    if (ln->proposed != 0) {
        return;
    }
    p = km_calloc(1, sizeof(*p));
    p->c = c;
    p->node = ln->id;
    LOG_INFO("cluster: node %llu: proposing node %llu state %d",
             (unsigned long long)c->cfg.node_id, (unsigned long long)ln->id,
             (int)state);
    int rv = cluster_lease_set_node_state(c, ln->id, state, NULL, link_url,
                                          cluster_lease_on_prop, p);
    if (rv != 0) {
        free(p);
        return;
    }
    ln->proposed = (int)state;
}

/* The leader, every ping interval: renew its lease, judge the others. */
static void
cluster_lease_leader_tick(struct cluster *c, uint64_t now)
{
    struct cluster_lease *l = c->lease;
    const struct cluster_fsm_node *nodes = NULL;
    struct cluster_settings st;
    struct cluster_stats rs;

    cluster_get_stats(c, &rs);
    if (rs.term != l->leader_term) {
        /* A new leader starts everyone at now (CLUSTER.md §4.6). */
        l->leader_term = rs.term;
        for (size_t i = 0; i < l->n_nodes; i++) {
            l->nodes[i].last_ping_ms = now;
            l->nodes[i].joining_since_ms = 0;
        }
    }
    cluster_lease_send_barrier(c);
    if (!cluster_fsm_settings(c->fsm, &st)) {
        /* Not applied yet, or the proposal failed: try again. */
        cluster_lease_bootstrap(c);
        return;
    }
    size_t n = cluster_fsm_nodes(c->fsm, &nodes);
    for (size_t i = 0; i < n; i++) {
        const struct cluster_fsm_node *fn = &nodes[i];
        if (fn->id == c->cfg.node_id) {
            continue; /* never the leader itself */
        }
        struct cluster_lease_node *ln = cluster_lease_node(l, fn->id, now);
        if (fn->state != CLUSTER_NODE_JOINING) {
            ln->joining_since_ms = 0;
        } else if (ln->joining_since_ms == 0) {
            ln->joining_since_ms = now;
        }
        bool live = fn->state == CLUSTER_NODE_UP ||
                    fn->state == CLUSTER_NODE_SUSPECT ||
                    fn->state == CLUSTER_NODE_JOINING;
        if (live && cluster_node_is_down(ln->last_ping_ms,
                                         st.node_down_after_ms, now)) {
            cluster_lease_propose(c, ln, CLUSTER_NODE_DOWN, NULL);
        } else if (fn->state == CLUSTER_NODE_JOINING &&
                   now - ln->joining_since_ms >= st.rebalance_after_ms) {
            cluster_lease_propose(c, ln, CLUSTER_NODE_UP, NULL);
        }
    }
}

static void
cluster_lease_on_pong(void *arg, int status,
                      const struct cluster_link_msg *reply)
{
    struct cluster_lease_ping *p = arg;
    struct cluster_lease *l = p->c->lease;

    if (status == 0 && l != NULL && reply->kind == CLUSTER_LINK_PONG &&
        reply->u.pong.lease_ok && p->seq > l->pong_seq) {
        l->pong_seq = p->seq;
        l->lease_sent_ms = p->sent_ms;
        l->have_lease = true;
        l->caught_up_index = reply->u.pong.commit_index;
    }
    free(p);
}

/* A follower, every ping interval: ping the leader it knows. */
static void
cluster_lease_follower_tick(struct cluster *c, uint64_t now)
{
    struct cluster_lease *l = c->lease;
    struct cluster_link_msg m = {.kind = CLUSTER_LINK_PING};
    struct cluster_stats rs;
    uint64_t leader = 0;

    l->leader_lease = false;
    l->leader_term = 0;
    if (!cluster_raft_leader(c, &leader) || leader == c->cfg.node_id) {
        return;
    }
    cluster_get_stats(c, &rs);
    struct cluster_lease_ping *p = km_calloc(1, sizeof(*p));
    p->c = c;
    p->sent_ms = now;
    p->seq = ++l->seq;
    m.u.ping.seq = p->seq;
    m.u.ping.applied_index = rs.applied_index;
    m.u.ping.link_url = c->link_listen;
    if (cluster_link_request(c->link, leader, &m, cluster_lease_on_pong, p) !=
        0) {
        free(p); /* the leader's link is not known yet: next tick */
    }
}

static void
cluster_lease_on_timer(uv_timer_t *t)
{
    struct cluster *c = t->data;
    struct cluster_settings st;
    uint64_t now = cluster_lease_now();

    if (c->closing || c->lease == NULL) {
        return;
    }
    if (cluster_is_leader(c)) {
        cluster_lease_leader_tick(c, now);
    } else {
        cluster_lease_follower_tick(c, now);
    }
    cluster_conn_reconcile(c);
    cluster_get_settings(c, &st);
    uv_timer_start(&c->lease->timer, cluster_lease_on_timer, st.ping_ms, 0);
}

/* FSM notifier: reach a node announced with a link url. */
static void
cluster_lease_on_fsm_node(void *ctx, const struct cluster_fsm_node *n)
{
    struct cluster *c = ctx;

    if (c->link == NULL || n->id == c->cfg.node_id || n->link_url == NULL ||
        n->state == CLUSTER_NODE_REMOVED) {
        return;
    }
    int rv = cluster_link_add_peer(c->link, n->id, n->link_url);
    if (rv != 0 && rv != KM_EEXIST) {
        LOG_WARN("cluster: link peer %llu at %s: %s", (unsigned long long)n->id,
                 n->link_url, km_strerror(rv));
    }
}

/* Lifecycle */

void
cluster_lease_init(struct cluster *c)
{
    struct cluster_lease *l = km_calloc(1, sizeof(*l));

    c->lease = l;
    uv_timer_init(c->loop, &l->timer);
    l->timer.data = c;
    uv_timer_start(&l->timer, cluster_lease_on_timer, 0, 0);
    cluster_fsm_set_node_notify(c->fsm, cluster_lease_on_fsm_node, c);
}

void
cluster_lease_check(struct cluster *c)
{
    struct cluster_lease *l = c->lease;

    if (l != NULL && l->waiting != NULL && !l->barrier_out && !c->closing) {
        cluster_lease_send_barrier(c);
    }
}

static void
cluster_lease_on_closed(uv_handle_t *h)
{
    struct cluster *c = h->data;
    struct cluster_lease *l = c->lease;

    c->lease = NULL;
    free(l->nodes);
    /* h lives in l: release it only after the cluster saw the close (c
     * may be freed by then, so nothing touches c below). */
    cluster_raft_on_handle_closed(h);
    free(l);
}

void
cluster_lease_close(struct cluster *c)
{
    struct cluster_lease *l = c->lease;

    if (l == NULL) {
        return;
    }
    cluster_fsm_set_node_notify(c->fsm, NULL, NULL);
    uv_timer_stop(&l->timer);
    cluster_lease_answer(c, l->waiting, false);
    l->waiting = NULL;
    c->handles_open++;
    uv_close((uv_handle_t *)&l->timer, cluster_lease_on_closed);
}

/* Requests */

static bool
cluster_lease_is_member(const struct cluster *c, uint64_t id)
{
    const struct raft_configuration *conf = &c->raft.configuration;

    for (unsigned i = 0; i < conf->n; i++) {
        if (conf->servers[i].id == id) {
            return true;
        }
    }
    return false;
}

void
cluster_lease_on_ping(struct cluster *c, uint64_t from,
                      const struct cluster_link_ping *ping,
                      struct cluster_link_reply *r)
{
    struct cluster_lease *l = c->lease;
    struct cluster_settings st;
    uint64_t now = cluster_lease_now();

    /* A node outside the raft configuration (removed, perhaps while the
     * leadership changed before its REMOVED record committed) gets no
     * lease, and its pings do not keep it alive: down detection then takes
     * its shards within node_down_after. */
    if (l == NULL || !cluster_is_leader(c) ||
        (from != c->cfg.node_id && !cluster_lease_is_member(c, from))) {
        cluster_lease_pong(c, r, ping->seq, false);
        return;
    }
    if (from != c->cfg.node_id) {
        struct cluster_lease_node *ln = cluster_lease_node(l, from, now);
        ln->last_ping_ms = now;
        if (cluster_fsm_settings(c->fsm, &st)) {
            const struct cluster_fsm_node *fn = cluster_fsm_node(c->fsm, from);
            const char *url = ping->link_url != NULL && ping->link_url[0] != 0
                                  ? ping->link_url
                                  : NULL;
            /* Only a server of the raft configuration joins the data
             * plane: `cluster add-node` makes it one. */
            if ((fn == NULL || fn->state == CLUSTER_NODE_DOWN) &&
                cluster_lease_is_member(c, from)) {
                cluster_lease_propose(c, ln, CLUSTER_NODE_JOINING, url);
            }
        }
    }
    struct cluster_lease_wait *w = km_calloc(1, sizeof(*w));
    w->reply = r;
    w->seq = ping->seq;
    w->next = l->waiting;
    l->waiting = w;
    cluster_lease_send_barrier(c);
}

/* Queries */

bool
cluster_has_lease(const struct cluster *c)
{
    const struct cluster_lease *l = c->lease;
    struct cluster_settings st;

    if (c->link == NULL) {
        return true;
    }
    if (l == NULL || c->closing) {
        return false;
    }
    cluster_get_settings(c, &st);
    uint64_t now = cluster_lease_now();
    if (cluster_is_leader(c)) {
        return l->leader_lease &&
               cluster_lease_valid(l->leader_from_ms, st.self_fence_after_ms,
                                   now);
    }
    return l->have_lease &&
           cluster_lease_valid(l->lease_sent_ms, st.self_fence_after_ms, now);
}

uint64_t
cluster_lease_leader_commit(const struct cluster *c)
{
    return c->lease != NULL ? c->lease->caught_up_index : 0;
}

bool
cluster_lease_caught_up(const struct cluster *c)
{
    const struct cluster_lease *l = c->lease;
    struct cluster_stats rs;

    if (c->link == NULL || cluster_is_leader(c)) {
        return true;
    }
    if (l == NULL || l->caught_up_index == 0) {
        return false;
    }
    cluster_get_stats(c, &rs);
    return rs.applied_index >= l->caught_up_index;
}

bool
cluster_lease_owner_able(const struct cluster *c, uint64_t id)
{
    const struct cluster_lease *l = c->lease;
    const struct cluster_fsm_node *fn = cluster_fsm_node(c->fsm, id);
    struct cluster_settings st;

    if (id == 0 || fn == NULL || fn->state != CLUSTER_NODE_UP ||
        !cluster_lease_is_member(c, id)) {
        return false;
    }
    if (id == c->cfg.node_id) {
        return cluster_has_lease(c);
    }
    if (l == NULL || !cluster_is_leader(c)) {
        return true; /* a follower knows only its own lease */
    }
    cluster_get_settings(c, &st);
    for (size_t i = 0; i < l->n_nodes; i++) {
        if (l->nodes[i].id == id) {
            /* Silent for self_fence_after: its lease has run out. */
            return !cluster_node_is_down(l->nodes[i].last_ping_ms,
                                         st.self_fence_after_ms,
                                         cluster_lease_now());
        }
    }
    return true; /* not judged yet in this term */
}

/* Proposals */

int
cluster_lease_set_node_state(struct cluster *c, uint64_t node,
                             enum cluster_node_state state,
                             const char *raft_addr, const char *link_url,
                             cluster_commit_cb cb, void *arg)
{
    const struct cluster_fsm_node *known;
    struct cluster_rec rec;

    if (node == 0 || state < CLUSTER_NODE_JOINING ||
        state > CLUSTER_NODE_REMOVED) {
        return KM_EINVAL;
    }
    if (!cluster_is_leader(c)) {
        return KM_ENOTLEADER;
    }
    known = cluster_fsm_node(c->fsm, node);
    memset(&rec, 0, sizeof(rec));
    rec.kind = CLUSTER_REC_NODE_STATE;
    rec.node = node;
    rec.node_state = (int)state;
    rec.weight = known != NULL ? known->weight : 1;
    rec.raft_addr = raft_addr != NULL ? km_strdup(raft_addr) : NULL;
    rec.link_url = link_url != NULL ? km_strdup(link_url) : NULL;
    return cluster_raft_submit_rec(c, &rec, cb, arg);
}

/* Bootstrap */

struct cluster_lease_boot {
    struct cluster *c;
    int rv;
};

static bool
cluster_lease_boot_member(void *arg, const struct cluster_member *m)
{
    struct cluster_lease_boot *b = arg;
    struct cluster *c = b->c;
    const char *url = NULL;

    if (!m->voter) {
        return true;
    }
    for (size_t i = 0; i < c->cfg.n_peers; i++) {
        if (c->peers[i].id == m->id) {
            url = c->peers[i].link_url;
        }
    }
    if (m->id == c->cfg.node_id && url == NULL) {
        url = c->link_listen;
    }
    b->rv = cluster_lease_set_node_state(c, m->id, CLUSTER_NODE_UP,
                                         m->raft_addr, url, NULL, NULL);
    return b->rv == 0;
}

static void
cluster_lease_on_boot_committed(void *arg, int status)
{
    struct cluster *c = arg;

    if (c->lease != NULL) {
        c->lease->boot_inflight = false;
    }
    if (status != 0) {
        LOG_WARN("cluster: bootstrap settings: %s", km_strerror(status));
        return;
    }
    LOG_INFO("cluster: node %llu: committed the cluster settings",
             (unsigned long long)c->cfg.node_id);
}

/* Propose the settings and every voter UP unless settings are committed
 * or the proposal is in flight. */
static void
cluster_lease_bootstrap(struct cluster *c)
{
    struct cluster_lease *l = c->lease;
    struct cluster_settings st;
    struct cluster_rec rec;

    if (l->boot_inflight || cluster_fsm_settings(c->fsm, &st)) {
        return;
    }
    /* After the leader barrier everything before it is applied: no
     * settings committed yet, so this is the group's first leader (or the
     * first one to get this far). Settings and nodes go in one batch, so
     * one entry and one shard map. */
    cluster_get_settings(c, &st);
    memset(&rec, 0, sizeof(rec));
    rec.kind = CLUSTER_REC_SETTINGS;
    rec.settings = st;
    rec.cluster_id = km_strdup(c->cluster_id);
    int rv =
        cluster_raft_submit_rec(c, &rec, cluster_lease_on_boot_committed, c);
    struct cluster_lease_boot b = {.c = c};
    if (rv == 0) {
        l->boot_inflight = true;
        cluster_foreach_member(c, cluster_lease_boot_member, &b);
        rv = b.rv;
    }
    if (rv != 0) {
        LOG_WARN("cluster: bootstrap settings: %s", km_strerror(rv));
    }
}

void
cluster_lease_on_leader_ready(struct cluster *c)
{
    struct cluster_lease *l = c->lease;

    if (c->link == NULL || l == NULL) {
        return;
    }
    /* The barrier that made us ready also renews the lease. */
    l->leader_from_ms = cluster_lease_now();
    l->leader_lease = true;
    cluster_lease_bootstrap(c);
}
