/* cluster_member.c - membership changes asked of this node (add-node,
 * remove-node, transfer-leader; CLUSTER.md §4.9): each runs on the leader
 * as a sequence of raft configuration changes with a deadline; a follower
 * forwards it (cluster_status.c). Status fan-out and the requests from
 * other nodes are cluster_status.c. Loop thread only. */
#include "base/km.h"
#include "base/log.h"
#include "cluster_core.h"
#include "cluster_status_int.h"
#include "cluster_tls.h"
#include "cluster_transport.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Membership admin */

static int
cluster_status_raft_err(int rv)
{
    switch (rv) {
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST:
        return KM_ENOTLEADER;
    case RAFT_CANTCHANGE:
        return KM_EAGAIN;
    case RAFT_BADID:
    case RAFT_NOTFOUND:
        return KM_ENOENT;
    case RAFT_DUPLICATEID:
    case RAFT_DUPLICATEADDRESS:
    case RAFT_BADROLE:
        return KM_EINVAL;
    case RAFT_CANCELED:
        return KM_ECLOSING;
    default:
        return KM_EIO;
    }
}

static void
cluster_status_admin_on_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Next turn after done (report, then free), or the deadline: report
 * KM_ETIMEDOUT now and keep op for the raft callback still to come. */
void
cluster_status_admin_on_timer(uv_timer_t *t)
{
    struct cluster_status_admin *op = t->data;

    if (!op->reported) {
        op->reported = true;
        if (op->finished) {
            op->cb(op->arg, op->status, op->message);
        } else {
            char msg[300];
            snprintf(msg, sizeof(msg),
                     "node %llu: the change is still in progress after %u "
                     "ms; see cluster status",
                     (unsigned long long)op->req.node,
                     (unsigned)CLUSTER_STATUS_ADMIN_DEADLINE_MS);
            op->cb(op->arg, KM_ETIMEDOUT, msg);
        }
    }
    if (op->finished) {
        uv_close((uv_handle_t *)&op->timer, cluster_status_admin_on_closed);
    }
}

/* Report the outcome: a remote caller's reply goes out now, a local cb on
 * the next loop turn (unless the deadline already reported). op is spent;
 * the cluster is not touched again. */

void
cluster_status_admin_done(struct cluster_status_admin *op, int status,
                          const char *fmt, ...)
{
    va_list ap;

    op->status = status;
    va_start(ap, fmt);
    vsnprintf(op->message, sizeof(op->message), fmt, ap);
    va_end(ap);
    if (status != 0 && status != KM_EAGAIN) {
        LOG_WARN("cluster: admin: %s", op->message);
    } else {
        LOG_INFO("cluster: admin: %s", op->message);
    }
    if (op->reply != NULL) {
        struct cluster_admin_ack ack = {.status = status};
        struct cluster_link_msg m = {.kind = CLUSTER_LINK_RAW};
        void *data;
        size_t len;

        memcpy(ack.message, op->message, sizeof(ack.message));
        (void)cluster_msg_encode_admin_ack(&ack, &data, &len);
        m.u.raw.type = CLUSTER_LINK_T_ADMIN_ACK;
        m.u.raw.data = data;
        m.u.raw.len = len;
        (void)cluster_link_reply_send(op->reply, &m);
        free(data);
        free(op);
        return;
    }
    op->finished = true;
    uv_timer_stop(&op->timer);
    uv_timer_start(&op->timer, cluster_status_admin_on_timer, 0, 0);
}

static bool
cluster_status_is_member(const struct cluster *c, uint64_t id)
{
    const struct raft_configuration *conf = &c->raft.configuration;

    for (unsigned i = 0; i < conf->n; i++) {
        if (conf->servers[i].id == id) {
            return true;
        }
    }
    return false;
}

/* Shards `node` owns in the committed map. */
static uint32_t
cluster_status_owned_by(const struct cluster *c, uint64_t node)
{
    struct cluster_settings st;
    uint64_t ids[CLUSTER_MAX_REPLICAS];
    uint32_t owned = 0;

    cluster_get_settings(c, &st);
    for (uint32_t i = 0; i < st.shards; i++) {
        if (cluster_shard_replicas(c, i, ids, CLUSTER_MAX_REPLICAS, NULL) > 0 &&
            ids[0] == node) {
            owned++;
        }
    }
    return owned;
}

/* Transfer */

static void
cluster_status_on_transferred(struct raft_transfer *req)
{
    struct cluster_status_admin *op = req->data;
    struct cluster *c = op->c;
    uint64_t leader = 0;

    (void)cluster_raft_leader(c, &leader);
    if (raft_state(&c->raft) == RAFT_LEADER) {
        cluster_status_admin_done(op, KM_ETIMEDOUT,
                                  "transfer-leader: node %llu is still the "
                                  "leader",
                                  (unsigned long long)c->cfg.node_id);
    } else if (op->req.node != 0 && leader != 0 && leader != op->req.node) {
        cluster_status_admin_done(
            op, KM_EAGAIN, "transfer-leader: node %llu leads, not %llu",
            (unsigned long long)leader, (unsigned long long)op->req.node);
    } else {
        cluster_status_admin_done(
            op, 0, "transfer-leader: leadership moved from node %llu",
            (unsigned long long)c->cfg.node_id);
    }
}

void
cluster_status_transfer(struct cluster_status_admin *op)
{
    struct cluster *c = op->c;
    int rv;

    if (op->req.node == c->cfg.node_id) {
        cluster_status_admin_done(op, 0,
                                  "transfer-leader: node %llu already leads",
                                  (unsigned long long)op->req.node);
        return;
    }
    if (op->req.node != 0 && !cluster_status_is_member(c, op->req.node)) {
        cluster_status_admin_done(op, KM_ENOENT,
                                  "transfer-leader: node %llu is not a member",
                                  (unsigned long long)op->req.node);
        return;
    }
    op->transfer.data = op;
    rv = raft_transfer(&c->raft, &op->transfer, op->req.node,
                       cluster_status_on_transferred);
    if (rv != 0) {
        cluster_status_admin_done(op, cluster_status_raft_err(rv),
                                  "transfer-leader: %s", raft_strerror(rv));
    }
}

/* Add */

static void
cluster_status_on_node_state(void *arg, int status)
{
    struct cluster_status_admin *op = arg;
    const char *what =
        op->req.op == CLUSTER_ADMIN_ADD_NODE ? "add-node" : "remove-node";

    if (status != 0) {
        cluster_status_admin_done(op, status,
                                  "%s: node %llu: node state not committed: "
                                  "%s",
                                  what, (unsigned long long)op->req.node,
                                  km_strerror(status));
        return;
    }
    cluster_status_admin_done(op, 0, "%s: node %llu: done", what,
                              (unsigned long long)op->req.node);
}

/* Commit NodeState `state` for the op's node, then finish; a lease module
 * that cannot record node states yet (KM_EINVAL) is not an error. */
static void
cluster_status_set_state(struct cluster_status_admin *op,
                         enum cluster_node_state state)
{
    const char *raft = op->req.raft_addr[0] != '\0' ? op->req.raft_addr : NULL;
    const char *link = op->req.link_url[0] != '\0' ? op->req.link_url : NULL;
    int rv;

    rv = cluster_lease_set_node_state(op->c, op->req.node, state, raft, link,
                                      cluster_status_on_node_state, op);
    if (rv == KM_EINVAL) {
        cluster_status_on_node_state(op, 0);
    } else if (rv != 0) {
        cluster_status_on_node_state(op, rv);
    }
}

/* How often the leader tries to promote added servers, and the voter cap. */
#define CLUSTER_STATUS_PROMOTE_MS 2000
#define CLUSTER_STATUS_MAX_VOTERS 5

static void
cluster_status_on_assigned(struct raft_change *req, int status)
{
    struct cluster_status_admin *op = req->data;
    struct cluster *c = op->c;
    int rv;

    if (status != 0) {
        cluster_status_admin_done(op, cluster_status_raft_err(status),
                                  "add-node: node %llu was added as a spare "
                                  "but not promoted to voter: %s",
                                  (unsigned long long)op->req.node,
                                  raft_strerror(status));
        return;
    }
    if (c->link != NULL && op->req.link_url[0] != '\0') {
        rv = cluster_link_add_peer(c->link, op->req.node, op->req.link_url);
        if (rv != 0 && rv != KM_EEXIST) {
            LOG_WARN("cluster: admin: link peer %llu at %s: %s",
                     (unsigned long long)op->req.node, op->req.link_url,
                     km_strerror(rv));
        }
    }
    cluster_status_set_state(op, CLUSTER_NODE_JOINING);
}

static void
cluster_status_on_added(struct raft_change *req, int status)
{
    struct cluster_status_admin *op = req->data;

    if (status != 0) {
        cluster_status_admin_done(
            op, cluster_status_raft_err(status), "add-node: node %llu: %s",
            (unsigned long long)op->req.node, raft_strerror(status));
        return;
    }
    /* The node is a spare now; the leader promotes it once it answers
     * (cluster_status_promote): it may not even be running yet. */
    cluster_status_on_assigned(&op->change, 0);
}

static void
cluster_status_on_promoted(struct raft_change *req, int status)
{
    struct cluster *c = req->data;

    c->promoting = false;
    if (status == 0) {
        LOG_INFO("cluster: node %llu: now a %s",
                 (unsigned long long)c->promote_id,
                 c->promote_role == RAFT_VOTER ? "voter" : "standby");
    } else if (!c->closing) {
        LOG_DEBUG("cluster: promoting node %llu: %s",
                  (unsigned long long)c->promote_id, raft_strerror(status));
    }
}

void
cluster_status_promote(struct cluster *c)
{
    const struct raft_configuration *conf = &c->raft.configuration;
    uint64_t now = km_now_mono_ms();
    unsigned voters = 0;

    if (c->promoting || c->closing || now < c->promote_next_ms ||
        !cluster_is_leader(c)) {
        return;
    }
    c->promote_next_ms = now + CLUSTER_STATUS_PROMOTE_MS;
    for (unsigned i = 0; i < conf->n; i++) {
        voters += conf->servers[i].role == RAFT_VOTER;
    }
    for (unsigned i = 0; i < conf->n; i++) {
        const struct raft_server *s = &conf->servers[i];
        /* CLUSTER.md §4.8: at most 5 voters; more nodes replicate the log
         * as standbys and still store bodies and deliver. */
        int role =
            voters < CLUSTER_STATUS_MAX_VOTERS ? RAFT_VOTER : RAFT_STANDBY;
        if (s->role == RAFT_VOTER || s->role == role) {
            continue;
        }
        c->promote_req.data = c;
        c->promote_id = s->id;
        c->promote_role = role;
        /* libraft 0.15 catches the server up before the change commits,
         * so it never votes with an empty log (CLUSTER.md G8); an
         * unreachable server fails here and is tried again later. */
        if (raft_assign(&c->raft, &c->promote_req, s->id, role,
                        cluster_status_on_promoted) == 0) {
            c->promoting = true;
        }
        return;
    }
}

void
cluster_status_add(struct cluster_status_admin *op)
{
    struct cluster *c = op->c;
    int rv;

    if (cluster_status_is_member(c, op->req.node)) {
        cluster_status_admin_done(op, KM_EINVAL,
                                  "add-node: node %llu is already a member",
                                  (unsigned long long)op->req.node);
        return;
    }
    op->change.data = op;
    rv = raft_add(&c->raft, &op->change, op->req.node, op->req.raft_addr,
                  cluster_status_on_added);
    if (rv != 0) {
        cluster_status_admin_done(
            op, cluster_status_raft_err(rv), "add-node: node %llu: %s",
            (unsigned long long)op->req.node, raft_strerror(rv));
    }
}

/* Remove */

static void
cluster_status_on_removed(struct raft_change *req, int status)
{
    struct cluster_status_admin *op = req->data;
    struct cluster *c = op->c;

    if (status != 0) {
        cluster_status_admin_done(
            op, cluster_status_raft_err(status), "remove-node: node %llu: %s",
            (unsigned long long)op->req.node, raft_strerror(status));
        return;
    }
    if (c->link != NULL) {
        (void)cluster_link_remove_peer(c->link, op->req.node);
    }
    cluster_status_set_state(op, CLUSTER_NODE_REMOVED);
}

static void
cluster_status_on_draining(void *arg, int status)
{
    struct cluster_status_admin *op = arg;
    struct cluster *c = op->c;
    uint32_t owned;
    int rv;

    if (status != 0) {
        cluster_status_admin_done(op, status,
                                  "remove-node: node %llu: DRAINING not "
                                  "committed: %s",
                                  (unsigned long long)op->req.node,
                                  km_strerror(status));
        return;
    }
    owned = cluster_status_owned_by(c, op->req.node);
    if (owned > 0) {
        cluster_status_admin_done(op, KM_EAGAIN,
                                  "remove-node: node %llu is draining: it "
                                  "still owns %u shard(s)",
                                  (unsigned long long)op->req.node, owned);
        return;
    }
    op->change.data = op;
    rv = raft_remove(&c->raft, &op->change, op->req.node,
                     cluster_status_on_removed);
    if (rv != 0) {
        cluster_status_on_removed(&op->change, rv);
    }
}

void
cluster_status_remove(struct cluster_status_admin *op)
{
    struct cluster *c = op->c;
    int rv;

    if (op->req.node == c->cfg.node_id) {
        cluster_status_admin_done(op, KM_EINVAL,
                                  "remove-node: node %llu is the leader: "
                                  "transfer leadership first",
                                  (unsigned long long)op->req.node);
        return;
    }
    if (!cluster_status_is_member(c, op->req.node)) {
        cluster_status_admin_done(op, KM_ENOENT,
                                  "remove-node: node %llu is not a member",
                                  (unsigned long long)op->req.node);
        return;
    }
    rv = cluster_lease_set_node_state(c, op->req.node, CLUSTER_NODE_DRAINING,
                                      NULL, NULL, cluster_status_on_draining,
                                      op);
    if (rv == KM_EINVAL) {
        cluster_status_on_draining(op, 0); /* no node states yet */
    } else if (rv != 0) {
        cluster_status_on_draining(op, rv);
    }
}
