/* cluster_status.c - the Status fan-out behind `cluster status` and the
 * membership admin requests (CLUSTER.md §4.3, §4.8). Status: every member
 * of the raft configuration is asked for a StatusReport over the link (this
 * node answers locally) and the rows are handed over once, when all have
 * answered or the deadline passed. Admin: add-node, remove-node and
 * transfer-leader run on the leader; a follower forwards them over the
 * link. Raft allows one configuration change at a time and so do we.
 * Keeps no state in struct cluster: every operation owns its memory and
 * never touches the cluster after it has reported. Loop thread only. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/km.h"
#include "base/log.h"
#include "cluster_core.h"
#include "cluster_status_int.h"
#include "cluster_tls.h"
#include "cluster_transport.h"

/* Status fan-out */

struct cluster_status_collect;

/* One member asked over the link. */
struct cluster_status_peer {
    struct cluster_status_collect *op;
    size_t row;
    uint64_t sent_ms;
};

struct cluster_status_collect {
    uv_timer_t timer;
    cluster_status_cb cb;
    void *arg;
    struct cluster_member_status *rows;
    struct cluster_status_peer *peers;
    size_t n, cap;
    size_t pending; /* link requests whose callback has not run */
    bool finished;
    bool timer_closed;
};

/* Seconds since this process started (0 if /proc cannot tell). */
static uint64_t
cluster_status_uptime_s(void)
{
    char buf[1024];
    unsigned long long start_ticks = 0;
    double up = 0;
    long hz = sysconf(_SC_CLK_TCK);
    FILE *f;
    size_t n;
    const char *p;

    f = fopen("/proc/self/stat", "r");
    if (f == NULL) {
        return 0;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* proc(5): starttime is field 22; the command name (field 2) may hold
     * spaces, so count from its closing parenthesis (field 3 follows). */
    p = strrchr(buf, ')');
    if (p == NULL ||
        sscanf(p + 1,
               " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d "
               "%*d %*d %*d %*d %llu",
               &start_ticks) != 1) {
        return 0;
    }
    f = fopen("/proc/uptime", "r");
    if (f == NULL) {
        return 0;
    }
    if (fscanf(f, "%lf", &up) != 1 || hz <= 0) {
        up = 0;
    }
    fclose(f);
    if (up * (double)hz < (double)start_ticks) {
        return 0;
    }
    return (uint64_t)(up - (double)start_ticks / (double)hz);
}

static void
cluster_status_copy(char *dst, size_t n, const char *s)
{
    snprintf(dst, n, "%s", s != NULL ? s : "");
}

/* Shards with an under-replicated message: flags[shard] is 1. */
struct cluster_status_short {
    uint8_t *flags;
    uint32_t n;
};

static bool
cluster_status_mark_short(void *arg, const struct cluster_replica_need *n)
{
    struct cluster_status_short *sh = arg;

    if (n->msg->shard < sh->n) {
        sh->flags[n->msg->shard] = 1;
    }
    return true;
}

/* This node's report, and the role of each shard (see
 * cluster_msg_encode_status_report); the caller owns *roles (free). */
static void
cluster_status_local(const struct cluster *c, struct cluster_status_report *r,
                     uint8_t **roles, uint32_t *n_shards)
{
    struct cluster_settings st;
    struct cluster_stats s;
    struct cluster_load load;
    uint64_t ids[CLUSTER_MAX_REPLICAS];
    uint64_t self = cluster_self_id(c);

    memset(r, 0, sizeof(*r));
    cluster_get_stats(c, &s);
    cluster_get_settings(c, &st);
    r->node = self;
    cluster_status_copy(r->version, sizeof(r->version), KUMO_VERSION);
    cluster_status_copy(r->raft_state, sizeof(r->raft_state), s.state);
    r->term = s.term;
    r->leader_id = s.leader_id;
    r->last_index = s.last_index;
    r->applied_index = s.applied_index;
    r->commit_index = s.commit_index;
    r->uptime_s = cluster_status_uptime_s();
    r->lease_ok = cluster_has_lease(c);
    memset(&load, 0, sizeof(load));
    if (c->host.get_load != NULL) {
        c->host.get_load(c->host.ctx, &load);
    }
    r->queued = load.queued;
    r->ready = load.ready;
    r->inflight = load.inflight;
    r->free_bytes = load.free_bytes;
    r->body_bytes = load.body_bytes;
    cluster_status_copy(r->policy_checksum, sizeof(r->policy_checksum),
                        load.policy_checksum);
    *n_shards = st.shards <= CLUSTER_STATUS_MAX_SHARDS ? st.shards : 0;
    *roles = km_calloc(*n_shards + 1, 1);
    /* An owned shard is under-replicated when its committed list is short
     * or one of its messages has too few UP copies (kumod_repl.c). */
    struct cluster_status_short sh = {km_calloc(*n_shards + 1, 1), *n_shards};
    cluster_foreach_under_replicated(c, cluster_status_mark_short, &sh);
    for (uint32_t i = 0; i < *n_shards; i++) {
        size_t n =
            cluster_shard_replicas(c, i, ids, CLUSTER_MAX_REPLICAS, NULL);
        for (size_t k = 0; k < n; k++) {
            if (ids[k] != self) {
                continue;
            }
            if (k > 0) {
                (*roles)[i] = 2;
            } else {
                (*roles)[i] = n < st.replication_factor || sh.flags[i] ? 3 : 1;
            }
            r->shards_backed++;
            if (k == 0) {
                r->shards_owned++;
                r->under_replicated += (*roles)[i] == 3 ? 1 : 0;
            }
            break;
        }
    }
    free(sh.flags);
}

static void
cluster_status_fill_row(struct cluster_member_status *row,
                        const struct cluster_status_report *r)
{
    row->reachable = true;
    cluster_status_copy(row->role, sizeof(row->role), r->raft_state);
    row->term = r->term;
    row->leader_id = r->leader_id;
    row->last_index = r->last_index;
    row->applied = r->applied_index;
    row->commit = r->commit_index;
    row->shards_owned = r->shards_owned;
    row->shards_backed = r->shards_backed;
    row->under_replicated = r->under_replicated;
    row->queued = r->queued;
    row->ready = r->ready;
    row->inflight = r->inflight;
    row->free_bytes = r->free_bytes;
    row->body_bytes = r->body_bytes;
    cluster_status_copy(row->policy_checksum, sizeof(row->policy_checksum),
                        r->policy_checksum);
    cluster_status_copy(row->version, sizeof(row->version), r->version);
    row->uptime_s = r->uptime_s;
    row->lease_ok = r->lease_ok ? 1 : 0;
}

static void
cluster_status_collect_maybe_free(struct cluster_status_collect *op)
{
    if (!op->finished || !op->timer_closed || op->pending > 0) {
        return;
    }
    free(op->rows);
    free(op->peers);
    free(op);
}

static void
cluster_status_collect_on_closed(uv_handle_t *h)
{
    struct cluster_status_collect *op = h->data;

    op->timer_closed = true;
    cluster_status_collect_maybe_free(op);
}

/* Hand the rows over: lag against the highest commit index seen. */
static void
cluster_status_collect_finish(struct cluster_status_collect *op)
{
    uint64_t commit = 0;

    if (op->finished) {
        return;
    }
    op->finished = true;
    for (size_t i = 0; i < op->n; i++) {
        if (op->rows[i].reachable && op->rows[i].commit > commit) {
            commit = op->rows[i].commit;
        }
    }
    for (size_t i = 0; i < op->n; i++) {
        struct cluster_member_status *row = &op->rows[i];
        if (row->reachable) {
            row->lag = commit > row->applied ? commit - row->applied : 0;
        } else {
            cluster_status_copy(row->role, sizeof(row->role), "unreachable");
        }
    }
    op->cb(op->arg, op->rows, op->n);
    uv_timer_stop(&op->timer);
    uv_close((uv_handle_t *)&op->timer, cluster_status_collect_on_closed);
}

static void
cluster_status_collect_on_timer(uv_timer_t *t)
{
    cluster_status_collect_finish(t->data);
}

static void
cluster_status_collect_on_reply(void *arg, int status,
                                const struct cluster_link_msg *reply)
{
    struct cluster_status_peer *p = arg;
    struct cluster_status_collect *op = p->op;
    struct cluster_member_status *row = &op->rows[p->row];
    struct cluster_status_report r;

    op->pending--;
    if (!op->finished && status == 0 && reply->kind == CLUSTER_LINK_RAW &&
        reply->u.raw.type == CLUSTER_LINK_T_STATUS_REPORT &&
        cluster_msg_decode_status_report(reply->u.raw.data, reply->u.raw.len,
                                         &r) == 0 &&
        r.node == row->id) {
        cluster_status_fill_row(row, &r);
        row->contact_ms = km_now_mono_ms() - p->sent_ms;
    } else if (!op->finished && status != 0) {
        LOG_DEBUG("cluster: status of node %llu: %s",
                  (unsigned long long)row->id, km_strerror(status));
    }
    if (op->pending == 0) {
        cluster_status_collect_finish(op);
    }
    cluster_status_collect_maybe_free(op);
}

static struct cluster_member_status *
cluster_status_collect_add(struct cluster_status_collect *op, uint64_t id)
{
    struct cluster_member_status *row;

    if (op->n == op->cap) {
        op->cap = op->cap == 0 ? 8 : op->cap * 2;
        op->rows = km_realloc(op->rows, op->cap * sizeof(*op->rows));
    }
    row = &op->rows[op->n++];
    memset(row, 0, sizeof(*row));
    row->id = id;
    row->lease_ok = -1;
    return row;
}

static bool
cluster_status_on_member(void *arg, const struct cluster_member *m)
{
    struct cluster_member_status *row = cluster_status_collect_add(arg, m->id);

    cluster_status_copy(row->raft_addr, sizeof(row->raft_addr), m->raft_addr);
    row->voter = m->voter;
    return true;
}

static void
cluster_status_on_conn(void *arg, const struct cluster_transport_conn *cn)
{
    struct cluster_member_status *row = arg;

    if (cn->id != row->id) {
        return;
    }
    if (row->tls[0] == '\0' || (!cn->tls && strcmp(row->tls, "tls") == 0)) {
        cluster_status_copy(row->tls, sizeof(row->tls),
                            cn->tls ? "tls" : "plaintext");
    }
    if (cn->tls && cn->cert_expiry > 0 &&
        (row->cert_expiry == 0 || cn->cert_expiry < row->cert_expiry)) {
        row->cert_expiry = cn->cert_expiry;
    }
}

/* The TLS columns of `row`, from this node's raft connections. */
static void
cluster_status_tls(const struct cluster *c, struct cluster_member_status *row)
{
    const char *plain = c->cfg.insecure_plaintext ? "insecure" : "plaintext";

    if (row->self) {
        cluster_status_copy(row->tls, sizeof(row->tls),
                            c->tls != NULL ? "tls" : plain);
        row->cert_expiry = c->tls != NULL ? cluster_tls_cert_expiry(c->tls) : 0;
        return;
    }
    cluster_transport_foreach_conn(&c->transport, cluster_status_on_conn, row);
    if (strcmp(row->tls, "plaintext") == 0) {
        cluster_status_copy(row->tls, sizeof(row->tls), plain);
    } else if (row->tls[0] == '\0' && c->tls == NULL) {
        /* Plaintext dials are not relayed: only what we accept is seen. */
        cluster_status_copy(row->tls, sizeof(row->tls), plain);
    }
}

int
cluster_status_collect(struct cluster *c, uint32_t deadline_ms,
                       cluster_status_cb cb, void *arg)
{
    struct cluster_status_collect *op = km_calloc(1, sizeof(*op));
    struct cluster_status_report r;
    uint64_t self = cluster_self_id(c);
    bool have_self = false;
    void *data;
    size_t len;
    uint8_t *roles;
    uint32_t n_shards;

    op->cb = cb;
    op->arg = arg;
    cluster_foreach_member(c, cluster_status_on_member, op);
    for (size_t i = 0; i < op->n; i++) {
        have_self = have_self || op->rows[i].id == self;
    }
    if (!have_self) {
        /* Not (yet) in the configuration: waiting to be added. */
        struct cluster_member_status *row =
            cluster_status_collect_add(op, self);
        cluster_status_copy(row->raft_addr, sizeof(row->raft_addr),
                            c->raft_addr);
    }
    op->peers = km_calloc(op->n, sizeof(*op->peers));
    (void)cluster_msg_encode_status_request(false, &data, &len);
    for (size_t i = 0; i < op->n; i++) {
        struct cluster_member_status *row = &op->rows[i];
        for (size_t k = 0; k < c->cfg.n_peers; k++) {
            if (c->peers[k].id == row->id) {
                cluster_status_copy(row->link_url, sizeof(row->link_url),
                                    c->peers[k].link_url);
            }
        }
        row->self = row->id == self;
        cluster_status_tls(c, row);
        if (row->id == self) {
            cluster_status_local(c, &r, &roles, &n_shards);
            free(roles);
            cluster_status_fill_row(row, &r);
            row->lease_ok = cluster_has_lease(c) ? 1 : 0;
            cluster_status_copy(row->link_url, sizeof(row->link_url),
                                c->link_listen);
            continue;
        }
        if (c->link == NULL || c->closing) {
            continue;
        }
        struct cluster_link_msg req = {.kind = CLUSTER_LINK_RAW};
        req.u.raw.type = CLUSTER_LINK_T_STATUS;
        req.u.raw.data = data;
        req.u.raw.len = len;
        op->peers[i].op = op;
        op->peers[i].row = i;
        op->peers[i].sent_ms = km_now_mono_ms();
        if (cluster_link_request(c->link, row->id, &req,
                                 cluster_status_collect_on_reply,
                                 &op->peers[i]) == 0) {
            op->pending++;
        }
    }
    free(data);
    uv_timer_init(c->loop, &op->timer);
    op->timer.data = op;
    if (deadline_ms == 0) {
        deadline_ms = CLUSTER_STATUS_DEADLINE_MS;
    }
    uv_timer_start(&op->timer, cluster_status_collect_on_timer,
                   op->pending > 0 ? deadline_ms : 0, 0);
    return 0;
}

/* Forwarding to the leader */

static void
cluster_status_admin_on_ack(void *arg, int status,
                            const struct cluster_link_msg *reply)
{
    struct cluster_status_admin *op = arg;
    struct cluster_admin_ack ack;

    if (status == KM_ETIMEDOUT) {
        cluster_status_admin_done(op, KM_ETIMEDOUT,
                                  "node %llu: the leader did not answer in "
                                  "time; the change may still complete: see "
                                  "cluster status",
                                  (unsigned long long)op->req.node);
    } else if (status != 0) {
        cluster_status_admin_done(
            op, status == KM_ECLOSING ? status : KM_ENOQUORUM,
            "the leader did not answer: %s", km_strerror(status));
    } else if (reply->kind != CLUSTER_LINK_RAW ||
               reply->u.raw.type != CLUSTER_LINK_T_ADMIN_ACK ||
               cluster_msg_decode_admin_ack(reply->u.raw.data, reply->u.raw.len,
                                            &ack) != 0) {
        cluster_status_admin_done(op, KM_ENOTLEADER,
                                  "the leader refused the request");
    } else {
        cluster_status_admin_done(op, ack.status, "%s", ack.message);
    }
}

static void
cluster_status_admin_forward(struct cluster_status_admin *op)
{
    struct cluster *c = op->c;
    struct cluster_link_msg m = {.kind = CLUSTER_LINK_RAW};
    uint64_t leader = 0;
    void *data;
    size_t len;
    int rv;

    if (c->link == NULL || c->closing || !cluster_raft_leader(c, &leader) ||
        leader == c->cfg.node_id) {
        cluster_status_admin_done(op, KM_ENOQUORUM, "no leader known");
        return;
    }
    rv = cluster_msg_encode_admin(&op->req, &data, &len);
    if (rv != 0) {
        cluster_status_admin_done(op, rv, "cannot encode the request");
        return;
    }
    m.u.raw.type = CLUSTER_LINK_T_ADMIN;
    m.u.raw.data = data;
    m.u.raw.len = len;
    rv = cluster_link_request(c->link, leader, &m, cluster_status_admin_on_ack,
                              op);
    free(data);
    if (rv != 0) {
        cluster_status_admin_done(op, rv, "cannot ask the leader: %s",
                                  km_strerror(rv));
    }
}

/* Run op here when leader; forward it when a follower and allowed. */
static void
cluster_status_admin_run(struct cluster_status_admin *op, bool may_forward)
{
    struct cluster *c = op->c;

    if (c->closing) {
        cluster_status_admin_done(op, KM_ECLOSING, "shutting down");
        return;
    }
    if (!cluster_is_leader(c)) {
        if (may_forward) {
            cluster_status_admin_forward(op);
        } else {
            cluster_status_admin_done(op, KM_ENOTLEADER, "not the leader");
        }
        return;
    }
    switch (op->req.op) {
    case CLUSTER_ADMIN_ADD_NODE:
        cluster_status_add(op);
        break;
    case CLUSTER_ADMIN_REMOVE_NODE:
        cluster_status_remove(op);
        break;
    case CLUSTER_ADMIN_TRANSFER_LEADER:
        cluster_status_transfer(op);
        break;
    }
}

static struct cluster_status_admin *
cluster_status_admin_new(struct cluster *c, enum cluster_admin_op kind,
                         uint64_t node, cluster_admin_cb cb, void *arg)
{
    struct cluster_status_admin *op = km_calloc(1, sizeof(*op));

    op->c = c;
    op->req.op = kind;
    op->req.node = node;
    op->cb = cb;
    op->arg = arg;
    uv_timer_init(c->loop, &op->timer);
    op->timer.data = op;
    uv_timer_start(&op->timer, cluster_status_admin_on_timer,
                   CLUSTER_STATUS_ADMIN_DEADLINE_MS, 0);
    return op;
}

int
cluster_transfer_leader(struct cluster *c, uint64_t target, cluster_admin_cb cb,
                        void *arg)
{
    cluster_status_admin_run(
        cluster_status_admin_new(c, CLUSTER_ADMIN_TRANSFER_LEADER, target, cb,
                                 arg),
        true);
    return 0;
}

int
cluster_add_node(struct cluster *c, uint64_t id, const char *raft_addr,
                 const char *link_url, cluster_admin_cb cb, void *arg)
{
    struct cluster_status_admin *op;

    if (id == 0 || raft_addr == NULL || raft_addr[0] == '\0' ||
        strlen(raft_addr) >= sizeof(op->req.raft_addr) ||
        (link_url != NULL && strlen(link_url) >= sizeof(op->req.link_url))) {
        return KM_EINVAL;
    }
    op = cluster_status_admin_new(c, CLUSTER_ADMIN_ADD_NODE, id, cb, arg);
    cluster_status_copy(op->req.raft_addr, sizeof(op->req.raft_addr),
                        raft_addr);
    cluster_status_copy(op->req.link_url, sizeof(op->req.link_url), link_url);
    cluster_status_admin_run(op, true);
    return 0;
}

int
cluster_remove_node(struct cluster *c, uint64_t id, cluster_admin_cb cb,
                    void *arg)
{
    if (id == 0) {
        return KM_EINVAL;
    }
    cluster_status_admin_run(
        cluster_status_admin_new(c, CLUSTER_ADMIN_REMOVE_NODE, id, cb, arg),
        true);
    return 0;
}

uint64_t
cluster_records_forwarded(const struct cluster *c)
{
    return c->records_forwarded;
}

/* Requests from other nodes */

static void
cluster_status_serve_report(struct cluster *c,
                            const struct cluster_link_raw *raw,
                            struct cluster_link_reply *r)
{
    struct cluster_link_msg m = {.kind = CLUSTER_LINK_NONE};
    struct cluster_status_report rep;
    bool verbose;
    uint8_t *roles;
    uint32_t n_shards;
    void *data = NULL;
    size_t len;

    if (cluster_msg_decode_status_request(raw->data, raw->len, &verbose) == 0) {
        cluster_status_local(c, &rep, &roles, &n_shards);
        if (cluster_msg_encode_status_report(&rep, roles, n_shards, &data,
                                             &len) == 0) {
            m.kind = CLUSTER_LINK_RAW;
            m.u.raw.type = CLUSTER_LINK_T_STATUS_REPORT;
            m.u.raw.data = data;
            m.u.raw.len = len;
        }
        free(roles);
    }
    (void)cluster_link_reply_send(r, &m);
    free(data);
}

void
cluster_status_on_request(struct cluster *c, uint64_t from,
                          const struct cluster_link_raw *raw,
                          struct cluster_link_reply *r)
{
    struct cluster_link_msg none = {.kind = CLUSTER_LINK_NONE};
    struct cluster_status_admin *op;

    if (raw->type == CLUSTER_LINK_T_STATUS) {
        cluster_status_serve_report(c, raw, r);
        return;
    }
    op = km_calloc(1, sizeof(*op));
    op->c = c;
    op->reply = r;
    if (cluster_msg_decode_admin(raw->data, raw->len, &op->req) != 0) {
        LOG_WARN("cluster: admin from node %llu: malformed request",
                 (unsigned long long)from);
        free(op);
        (void)cluster_link_reply_send(r, &none);
        return;
    }
    /* Never forward again: two nodes that each believe the other leads
     * would bounce the request between them. */
    cluster_status_admin_run(op, false);
}
