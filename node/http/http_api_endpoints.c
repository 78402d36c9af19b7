/* http_api_endpoints.c - the read-mostly endpoints of the HTTP listener:
 * liveness, /metrics and /metrics.json with the gauges read at request
 * time, the queue summary, cluster status (fanned out to the members) and
 * the cluster membership admin calls (add-node, remove-node,
 * transfer-leader). Access, routing and the life cycle are http_api.c.
 * Loop thread only. */
#include "base/km.h"
#include "base/km_cidr.h"
#include "base/km_map.h"
#include "base/log.h"
#include "cluster.h"
#include "http_api_authdelay.h"
#include "http_api_int.h"
#include "metrics.h"
#include "policy.h"
#include "queue.h"
#include "spool.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Endpoints */

static void
http_api_text(struct http_req *req, int status, const char *text)
{
    http_api_server_reply(req, status, "text/plain; charset=utf-8", text,
                          strlen(text), NULL);
}

void
http_api_liveness(struct http_api *h, struct http_req *req)
{
    if (h->shutting_down) {
        http_api_text(req, 503, "shutting down");
    } else if (!h->ready) {
        http_api_text(req, 503, "waiting for spool startup");
    } else {
        http_api_text(req, 200, "OK");
    }
}

static void
http_api_on_queue_gauge(void *arg, const char *name, size_t count)
{
    metrics_set(arg, "scheduled_count",
                "number of messages in the scheduled queue", "queue", name,
                (double)count);
}

static void
http_api_spool_gauges(struct metrics *m, struct spool *sp, const char *name)
{
    struct spool_stats st;

    if (sp == NULL) {
        return;
    }
    spool_get_stats(sp, &st);
    metrics_set(m, "kumod_spool_puts_total", "spool writes", "spool", name,
                (double)st.puts);
    metrics_set(m, "kumod_spool_deletes_total", "spool deletions", "spool",
                name, (double)st.deletes);
    metrics_set(m, "kumod_spool_batches_total", "synced spool write batches",
                "spool", name, (double)st.batches);
    metrics_set(m, "kumod_spool_put_bytes_total", "bytes written to the spool",
                "spool", name, (double)st.put_bytes);
    metrics_set(m, "kumod_spool_pending", "spool writes waiting for a batch",
                "spool", name, (double)st.pending);
}

static bool
http_api_count_member(void *arg, const struct cluster_member *m)
{
    (void)m;
    (*(size_t *)arg)++;
    return true;
}

/* Raft and cluster gauges beyond term, indexes and leadership. */
static void
http_api_cluster_metrics(struct metrics *m, const struct cluster *c,
                         const struct cluster_stats *st)
{
    struct cluster_settings set;
    size_t members = 0;
    uint32_t owned = 0;

    cluster_get_settings(c, &set);
    for (uint32_t i = 0; i < set.shards; i++) {
        owned += cluster_owns(c, i) ? 1 : 0;
    }
    cluster_foreach_member(c, http_api_count_member, &members);
    metrics_set(m, "kumod_raft_last_index", "last raft log index", NULL, NULL,
                (double)st->last_index);
    metrics_set(m, "kumod_raft_leader_id",
                "raft id of the leader this node knows (0: none)", NULL, NULL,
                (double)st->leader_id);
    metrics_set(m, "kumod_raft_entries_proposed_total",
                "raft entries this node proposed as leader", NULL, NULL,
                (double)st->entries_proposed);
    metrics_set(m, "kumod_raft_records_proposed_total",
                "records proposed through this node's batcher", NULL, NULL,
                (double)st->records_proposed);
    metrics_set(m, "kumod_raft_records_forwarded_total",
                "records this node forwarded to a remote leader", NULL, NULL,
                (double)cluster_records_forwarded(c));
    metrics_set(m, "kumod_cluster_members", "members of the raft configuration",
                NULL, NULL, (double)members);
    metrics_set(m, "kumod_cluster_shards", "shards of the cluster", NULL, NULL,
                (double)set.shards);
    metrics_set(m, "kumod_cluster_shards_owned",
                "shards this node owns in the committed map", NULL, NULL,
                (double)owned);
}

/* Gauges read at request time. */
static void
http_api_refresh_gauges(struct http_api *h)
{
    struct metrics *m = http_api_metrics(h);
    const struct http_api_node *nd = &h->node;

    metrics_clear(m, "scheduled_count");
    if (nd->queues != NULL) {
        queue_mgr_foreach_queue(nd->queues, http_api_on_queue_gauge, m);
        metrics_set(m, "message_count",
                    "total number of messages in the scheduled queues", NULL,
                    NULL, (double)queue_mgr_count(nd->queues));
    }
    if (nd->cluster != NULL) {
        struct cluster_stats st;

        cluster_get_stats(nd->cluster, &st);
        metrics_set(m, "kumod_raft_term", "current raft term", NULL, NULL,
                    (double)st.term);
        metrics_set(m, "kumod_raft_commit_index", "raft commit index", NULL,
                    NULL, (double)st.commit_index);
        metrics_set(m, "kumod_raft_applied_index", "raft applied index", NULL,
                    NULL, (double)st.applied_index);
        metrics_set(m, "kumod_raft_is_leader",
                    "1 if this node is the raft leader", NULL, NULL,
                    st.state != NULL && strcmp(st.state, "leader") == 0 ? 1
                                                                        : 0);
        http_api_cluster_metrics(m, nd->cluster, &st);
    }
    http_api_spool_gauges(m, nd->data, "data");
    http_api_spool_gauges(m, nd->meta, "meta");
}

void
http_api_metrics_text(struct http_api *h, struct http_req *req)
{
    struct buf out = BUF_INIT;

    http_api_refresh_gauges(h);
    metrics_render_text(http_api_metrics(h), &out);
    http_api_server_reply(req, 200, "text/plain; version=0.0.4", buf_cstr(&out),
                          out.len, NULL);
    buf_fini(&out);
}

void
http_api_metrics_json(struct http_api *h, struct http_req *req)
{
    json_t *j;

    http_api_refresh_gauges(h);
    j = metrics_render_json(http_api_metrics(h));
    http_api_reply_json(req, 200, j);
    json_decref(j);
}

static void
http_api_on_queue_summary(void *arg, const char *name, size_t count)
{
    json_array_append_new(
        arg, json_pack("{s:s,s:I}", "queue", name, "count", (json_int_t)count));
}

void
http_api_queue_summary(struct http_api *h, struct http_req *req)
{
    json_t *list = json_array();
    size_t total = 0;
    json_t *j;

    if (h->node.queues != NULL) {
        queue_mgr_foreach_queue(h->node.queues, http_api_on_queue_summary,
                                list);
        total = queue_mgr_count(h->node.queues);
    }
    j = json_pack("{s:o,s:I}", "scheduled", list, "total", (json_int_t)total);
    http_api_reply_json(req, 200, j);
    json_decref(j);
}

/* An asynchronous cluster request: status fan-out or membership admin. */
struct http_api_cluster_op {
    struct http_api *h;
    struct http_req *req;
};

static struct http_api_cluster_op *
http_api_cluster_op_new(struct http_api *h, struct http_req *req)
{
    struct http_api_cluster_op *op = km_calloc(1, sizeof(*op));

    op->h = h;
    op->req = req;
    h->pending_ops++;
    return op;
}

static void
http_api_cluster_op_done(struct http_api_cluster_op *op)
{
    struct http_api *h = op->h;

    http_api_server_req_free(op->req);
    free(op);
    http_api_op_done(h);
}

/* One row of cluster_status_collect as JSON. The first fields are the
 * ones the status endpoint always had (id, raft_addr, role...). */
static json_t *
http_api_cluster_row(const struct http_api *h,
                     const struct cluster_member_status *m)
{
    json_t *j;

    j = json_pack("{s:I,s:s,s:s,s:s,s:s,s:b,s:b,s:b}", "id", (json_int_t)m->id,
                  "raft_addr", m->raft_addr, "raft_address", m->raft_addr,
                  "link_url", m->link_url, "role", m->role, "voter", m->voter,
                  "self", m->self, "reachable", m->reachable);
    json_object_set_new(j, "tls",
                        m->tls[0] != '\0' ? json_string(m->tls) : json_null());
    json_object_set_new(j, "cert_expiry",
                        m->cert_expiry > 0
                            ? json_integer((json_int_t)m->cert_expiry)
                            : json_null());
    if (!m->reachable) {
        json_object_set_new(j, "unreachable", json_true());
        json_object_set_new(j, "state", json_string("unreachable"));
        return j;
    }
    json_object_set_new(j, "term", json_integer((json_int_t)m->term));
    json_object_set_new(j, "leader_id", json_integer((json_int_t)m->leader_id));
    json_object_set_new(j, "last_index",
                        json_integer((json_int_t)m->last_index));
    json_object_set_new(j, "applied_index",
                        json_integer((json_int_t)m->applied));
    json_object_set_new(j, "commit_index", json_integer((json_int_t)m->commit));
    json_object_set_new(j, "lag", json_integer((json_int_t)m->lag));
    json_object_set_new(j, "last_ping_age_ms",
                        json_integer((json_int_t)m->contact_ms));
    json_object_set_new(j, "lease",
                        m->lease_ok < 0
                            ? json_null()
                            : json_string(m->lease_ok > 0 ? "ok" : "fenced"));
    json_object_set_new(j, "shards_owned",
                        json_integer((json_int_t)m->shards_owned));
    json_object_set_new(j, "shards_backed",
                        json_integer((json_int_t)m->shards_backed));
    json_object_set_new(j, "under_replicated",
                        json_integer((json_int_t)m->under_replicated));
    json_object_set_new(j, "queued", json_integer((json_int_t)m->queued));
    json_object_set_new(j, "ready", json_integer((json_int_t)m->ready));
    json_object_set_new(j, "inflight", json_integer((json_int_t)m->inflight));
    json_object_set_new(j, "free_bytes",
                        json_integer((json_int_t)m->free_bytes));
    json_object_set_new(j, "policy_checksum", json_string(m->policy_checksum));
    json_object_set_new(j, "version", json_string(m->version));
    json_object_set_new(j, "uptime_s", json_integer((json_int_t)m->uptime_s));
    json_object_set_new(j, "state",
                        json_string(!m->self || h->ready ? "up" : "starting"));
    return j;
}

/* The status document: this node's view in the header, one row per
 * member (rows may be NULL: no cluster). */
static json_t *
http_api_cluster_doc(const struct http_api *h,
                     const struct cluster_member_status *rows, size_t n)
{
    const struct http_api_node *nd = &h->node;
    struct cluster_stats st;
    uint64_t self_id = nd->raft_node_id;
    json_t *members = json_array();
    size_t reachable = 0;

    memset(&st, 0, sizeof(st));
    if (nd->cluster != NULL) {
        cluster_get_stats(nd->cluster, &st);
    }
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(members, http_api_cluster_row(h, &rows[i]));
        reachable += rows[i].reachable ? 1 : 0;
    }
    json_t *doc =
        json_pack("{s:s,s:s,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "cluster_id",
                  nd->cluster_id, "node_id", nd->nodeid, "raft_node_id",
                  (json_int_t)self_id, "role",
                  st.state != NULL ? st.state : "unavailable", "term",
                  (json_int_t)st.term, "leader_id", (json_int_t)st.leader_id,
                  "leader", (json_int_t)st.leader_id, "commit_index",
                  (json_int_t)st.commit_index, "member_count", (json_int_t)n,
                  "reachable_count", (json_int_t)reachable, "members", members);
    if (doc != NULL && cluster_is_group(nd->cluster)) {
        json_object_set_new(
            doc, "unowned_messages",
            json_integer((json_int_t)cluster_unowned(nd->cluster)));
    }
    return doc;
}

/* Members and reachable members, kept for the metrics gauges. */
static void
http_api_cluster_gauges(struct http_api *h,
                        const struct cluster_member_status *rows, size_t n)
{
    struct metrics *m = http_api_metrics(h);
    size_t reachable = 0;

    for (size_t i = 0; i < n; i++) {
        reachable += rows[i].reachable ? 1 : 0;
    }
    (void)n;
    metrics_set(m, "kumod_cluster_members_reachable",
                "members that answered the last status fan-out", NULL, NULL,
                (double)reachable);
}

static void
http_api_cluster_on_status(void *arg, const struct cluster_member_status *rows,
                           size_t n)
{
    struct http_api_cluster_op *op = arg;
    json_t *j = http_api_cluster_doc(op->h, rows, n);

    http_api_cluster_gauges(op->h, rows, n);
    http_api_reply_json(op->req, 200, j);
    json_decref(j);
    http_api_cluster_op_done(op);
}

/* GET /api/admin/cluster/status/v1. True if the request was taken. */
bool
http_api_cluster_status(struct http_api *h, struct http_req *req)
{
    const struct http_api_node *nd = &h->node;
    struct cluster_member_status self;
    char *v = http_api_query_param(req->query, "deadline_ms");
    uint32_t deadline = v != NULL ? (uint32_t)strtoul(v, NULL, 10) : 0;
    json_t *j;

    free(v);
    if (nd->cluster != NULL && !h->shutting_down) {
        if (deadline > 10000) {
            deadline = 10000;
        }
        (void)cluster_status_collect(nd->cluster, deadline,
                                     http_api_cluster_on_status,
                                     http_api_cluster_op_new(h, req));
        return true;
    }
    memset(&self, 0, sizeof(self));
    self.id = nd->raft_node_id;
    self.self = true;
    j = http_api_cluster_doc(h, nd->cluster != NULL ? NULL : &self,
                             nd->cluster != NULL ? 0 : 1);
    http_api_reply_json(req, 200, j);
    json_decref(j);
    return false;
}

static void
http_api_cluster_on_admin(void *arg, int status, const char *message)
{
    struct http_api_cluster_op *op = arg;
    json_t *j;
    int code;

    switch (status) {
    case 0:
        code = 200;
        break;
    case KM_EAGAIN:
        code = 202; /* draining, or another change in progress: retry */
        break;
    case KM_ENOENT:
        code = 404;
        break;
    case KM_EINVAL:
        code = 400;
        break;
    default:
        code = 503;
        break;
    }
    j = json_pack("{s:s,s:s}", "status",
                  status == 0           ? "done"
                  : status == KM_EAGAIN ? "in_progress"
                                        : "failed",
                  "message", message);
    if (status != 0 && status != KM_EAGAIN) {
        json_object_set_new(j, "error", json_string(message));
    }
    http_api_reply_json(op->req, code, j);
    json_decref(j);
    http_api_cluster_op_done(op);
}

/* The node id in member `key` of body: false (and a 400 sent) if it is
 * not a positive integer; *id 0 when absent and optional. */
static bool
http_api_cluster_id(struct http_req *req, json_t *body, const char *key,
                    bool optional, uint64_t *id)
{
    json_t *v = json_object_get(body, key);

    *id = 0;
    if ((v == NULL || json_is_null(v)) && optional) {
        return true;
    }
    if (json_is_string(v)) {
        char *end;
        unsigned long long n = strtoull(json_string_value(v), &end, 10);
        if (*end == '\0' && n > 0) {
            *id = n;
            return true;
        }
    } else if (json_is_integer(v) && json_integer_value(v) > 0) {
        *id = (uint64_t)json_integer_value(v);
        return true;
    }
    http_api_reply_error(req, 400, "%s: a positive node id is required", key);
    return false;
}

/* POST /api/admin/cluster/{add-node,remove-node,transfer-leader}/v1. True
 * if the request was taken. */
bool
http_api_cluster_admin(struct http_api *h, struct http_req *req,
                       const char *what)
{
    const struct http_api_node *nd = &h->node;
    struct http_api_cluster_op *op;
    json_error_t jerr;
    json_t *body = NULL;
    const char *raft = NULL, *link = NULL;
    uint64_t id = 0;
    int rv;

    if (strcmp(req->method, "POST") != 0) {
        http_api_reply_error(req, 405, "use POST");
        return false;
    }
    if (nd->cluster == NULL || h->shutting_down) {
        http_api_reply_error(req, 503, "no cluster");
        return false;
    }
    if (req->body.len > 0) {
        body = json_loadb(buf_cstr(&req->body), req->body.len, 0, &jerr);
    } else {
        body = json_object();
    }
    if (!json_is_object(body)) {
        json_decref(body);
        http_api_reply_error(req, 400, "body must be a JSON object");
        return false;
    }
    if (!http_api_cluster_id(req, body, "id", strcmp(what, "transfer") == 0,
                             &id)) {
        json_decref(body);
        return false;
    }
    if (strcmp(what, "add") == 0) {
        raft = json_string_value(json_object_get(body, "raft"));
        link = json_string_value(json_object_get(body, "link"));
        if (raft == NULL || raft[0] == '\0') {
            json_decref(body);
            http_api_reply_error(req, 400,
                                 "raft: the node's raft address "
                                 "(ip:port) is required");
            return false;
        }
    }
    op = http_api_cluster_op_new(h, req);
    if (strcmp(what, "add") == 0) {
        rv = cluster_add_node(nd->cluster, id, raft, link,
                              http_api_cluster_on_admin, op);
    } else if (strcmp(what, "remove") == 0) {
        rv =
            cluster_remove_node(nd->cluster, id, http_api_cluster_on_admin, op);
    } else {
        rv = cluster_transfer_leader(nd->cluster, id, http_api_cluster_on_admin,
                                     op);
    }
    json_decref(body);
    if (rv != 0) {
        h->pending_ops--;
        free(op);
        http_api_reply_error(req, 400, "%s", km_strerror(rv));
        return false;
    }
    return true;
}
