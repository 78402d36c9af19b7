/* cluster_raft.c - the node's Raft group (canonical/raft 0.15 over its
 * libuv TCP transport) and the public cluster_* API: the only file calling
 * raft_*. Owns struct raft, its io and transport, the FSM glue, the leader
 * barrier (CLUSTER.md §1.4 item 1) and the batcher that packs records from
 * many callers into one raft_apply. A group is one voter, or the peers of
 * configure_cluster bootstrapped alike on every initial node; followers
 * become ready once caught up. Proposal forwarding to a remote leader and
 * membership changes are not here yet. Loop thread only. */
#include "cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>
#include <raft/uv.h>

#include "base/km.h"
#include "base/log.h"
#include "cluster_core.h"
#include "cluster_int.h"
#include "cluster_shard.h"
#include "cluster_tls.h"
#include "cluster_transport.h"

int
cluster_raft_err(int rv)
{
    switch (rv) {
    case 0:
        return 0;
    case RAFT_LEADERSHIPLOST:
        return KM_ELEADERLOST;
    case RAFT_NOTLEADER:
        return KM_ENOTLEADER;
    case RAFT_SHUTDOWN:
        return KM_ECLOSING;
    case RAFT_NOSPACE:
        return KM_ENOSPC;
    case RAFT_NOMEM:
        return KM_ENOMEM;
    default:
        return KM_EIO;
    }
}

/* FSM glue: raft calls these from its own callbacks on the loop. */

static int
cluster_raft_fsm_apply(struct raft_fsm *rf, const struct raft_buffer *buf,
                       void **result)
{
    struct cluster *c = rf->data;
    int rv = cluster_fsm_apply(c->fsm, buf->base, buf->len);

    /* No result: on followers nobody would free it. */
    *result = NULL;
    if (rv != 0) {
        /* Every node skips the same entry, so the FSMs stay identical;
         * failing here would stall the apply loop for good. */
        LOG_ERROR("cluster: raft entry skipped: %s", km_strerror(rv));
    }
    return 0;
}

static int
cluster_raft_fsm_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[],
                          unsigned *n_bufs)
{
    struct cluster *c = rf->data;
    struct cluster_blob *blobs = NULL;
    size_t n = 0;
    int rv = cluster_fsm_snapshot(c->fsm, CLUSTER_RAFT_SNAPSHOT_CHUNK,
                                  raft_malloc, raft_free, &blobs, &n);

    if (rv != 0) {
        LOG_ERROR("cluster: snapshot: %s", km_strerror(rv));
        return RAFT_NOMEM;
    }
    /* Version 1 FSM: raft frees the array and every base (raft_free). */
    struct raft_buffer *b = raft_malloc(n * sizeof(*b));
    KM_ASSERT(b != NULL);
    for (size_t i = 0; i < n; i++) {
        b[i].base = blobs[i].base;
        b[i].len = blobs[i].len;
    }
    free(blobs);
    *bufs = b;
    *n_bufs = (unsigned)n;
    return 0;
}

static int
cluster_raft_fsm_restore(struct raft_fsm *rf, struct raft_buffer *buf)
{
    struct cluster *c = rf->data;
    int rv = cluster_fsm_restore(c->fsm, buf->base, buf->len);

    if (rv != 0) {
        LOG_ERROR("cluster: restore snapshot: %s", km_strerror(rv));
        return RAFT_MALFORMED; /* raft keeps buf->base on failure */
    }
    raft_free(buf->base); /* restore takes ownership on success */
    return 0;
}

/* Leadership */

void
cluster_raft_fatal(struct cluster *c, int err)
{
    if (c->fatal_reported || c->closing) {
        return;
    }
    c->fatal_reported = true;
    if (c->host.on_fatal != NULL) {
        c->host.on_fatal(c->host.ctx, err);
    }
}

static void
cluster_raft_on_barrier(struct raft_barrier *req, int status)
{
    struct cluster_raft_barrier *b = req->data;
    struct cluster *c = b->c;
    bool current = b->gen == c->barrier_gen;

    free(b);
    if (c->closing || !current) {
        return;
    }
    if (status != 0) {
        LOG_WARN("cluster: leader barrier: %s", raft_strerror(status));
        c->barrier_sent = false; /* the check retries while leader */
        if (status == RAFT_IOERR || status == RAFT_NOSPACE) {
            cluster_raft_fatal(c, cluster_raft_err(status));
        }
        return;
    }
    if (raft_state(&c->raft) != RAFT_LEADER) {
        return;
    }
    /* Everything before the barrier is committed and applied: the FSM has
     * replayed the log and a term-current entry is committed. */
    c->leader_ready = true;
    LOG_INFO("cluster: node %llu: leader of term %llu, ready",
             (unsigned long long)c->cfg.node_id,
             (unsigned long long)c->raft.current_term);
    if (!c->ready_fired) {
        c->ready_fired = true;
        cluster_fsm_set_ready(c->fsm, true);
        if (c->host.on_ready != NULL) {
            c->host.on_ready(c->host.ctx);
        }
    }
    if (!c->closing && c->leader_ready) {
        cluster_lease_on_leader_ready(c);
    }
}

/* A barrier for cluster_lease.c (its pings and the leader's lease). */
struct cluster_raft_ext_barrier {
    struct raft_barrier req;
    cluster_raft_barrier_cb cb;
    void *arg;
};

static void
cluster_raft_on_ext_barrier(struct raft_barrier *req, int status)
{
    struct cluster_raft_ext_barrier *b = req->data;
    cluster_raft_barrier_cb cb = b->cb;
    void *arg = b->arg;

    free(b);
    cb(arg, cluster_raft_err(status));
}

int
cluster_raft_barrier(struct cluster *c, cluster_raft_barrier_cb cb, void *arg)
{
    struct cluster_raft_ext_barrier *b;

    if (c->closing) {
        return KM_ECLOSING;
    }
    if (!c->leader_ready || raft_state(&c->raft) != RAFT_LEADER) {
        return KM_ENOTLEADER;
    }
    b = km_calloc(1, sizeof(*b));
    b->cb = cb;
    b->arg = arg;
    b->req.data = b;
    int rv = raft_barrier(&c->raft, &b->req, cluster_raft_on_ext_barrier);
    if (rv != 0) {
        free(b);
        return cluster_raft_err(rv);
    }
    return 0;
}

static void
cluster_raft_send_barrier(struct cluster *c)
{
    struct cluster_raft_barrier *b = km_calloc(1, sizeof(*b));

    b->c = c;
    b->gen = ++c->barrier_gen;
    b->req.data = b;
    int rv = raft_barrier(&c->raft, &b->req, cluster_raft_on_barrier);
    if (rv != 0) {
        free(b);
        LOG_WARN("cluster: leader barrier: %s", raft_strerror(rv));
        if (rv == RAFT_IOERR || rv == RAFT_NOSPACE) {
            cluster_raft_fatal(c, cluster_raft_err(rv));
        }
        return;
    }
    c->barrier_sent = true;
}

/* A follower is ready once it knows a leader and has applied what that
 * leader told it is committed: its FSM then holds every message the group
 * accepted before this node started (or the leader's snapshot of them). */
static void
cluster_raft_follower_ready(struct cluster *c)
{
    raft_id leader = 0;
    const char *addr = NULL;

    raft_leader(&c->raft, &leader, &addr);
    /* Not c->raft.commit_index alone: after a restart it is this node's
     * own (the bootstrap configuration) until the leader's first matching
     * AppendEntries, and a node that went ready then ran its recovery on
     * an empty FSM and replayed the group's history with the host
     * callbacks live (drill D12). */
    if (leader == 0 || !cluster_follower_caught_up(
                           c->raft.commit_index, raft_last_applied(&c->raft),
                           c->link != NULL, cluster_lease_leader_commit(c))) {
        return;
    }
    LOG_INFO("cluster: node %llu: follower of node %llu in term %llu, "
             "applied %llu, ready",
             (unsigned long long)c->cfg.node_id, (unsigned long long)leader,
             (unsigned long long)c->raft.current_term,
             (unsigned long long)raft_last_applied(&c->raft));
    c->ready_fired = true;
    cluster_fsm_set_ready(c->fsm, true);
    if (c->host.on_ready != NULL) {
        c->host.on_ready(c->host.ctx);
    }
}

/* Every loop iteration: 0.15 has no state-change callback. */
static void
cluster_raft_on_check(uv_check_t *h)
{
    struct cluster *c = h->data;

    if (c->closing || !c->started) {
        return;
    }
    cluster_guard_check(c);
    const char *cid = cluster_fsm_cluster_id(c->fsm);
    if (cid != NULL && c->cluster_id[0] != '\0' &&
        strcmp(cid, c->cluster_id) != 0) {
        /* raft's own transport carries no cluster id (CLUSTER.md §1.4):
         * a node of another cluster that reached this group's log learns
         * it from the committed settings, and stops. */
        LOG_ERROR("cluster: cluster_id mismatch: the group's log belongs to "
                  "cluster %s, this node's policy says %s",
                  cid, c->cluster_id);
        cluster_raft_fatal(c, KM_ECONFIG);
        return;
    }
    if (c->link != NULL) {
        cluster_propose_check(c);
        cluster_lease_check(c);
        cluster_status_promote(c);
    }
    int st = raft_state(&c->raft);
    if (st == RAFT_UNAVAILABLE) {
        LOG_ERROR("cluster: raft unavailable: %s", raft_errmsg(&c->raft));
        cluster_raft_fatal(c, KM_EIO);
        return;
    }
    if (st == RAFT_LEADER) {
        /* CLUSTER.md §1.4 item 1: append a barrier the moment we see
         * ourselves leader, and serve nothing until it commits. */
        if (!c->barrier_sent) {
            cluster_raft_send_barrier(c);
        }
        return;
    }
    if (c->barrier_sent || c->leader_ready) {
        LOG_INFO("cluster: node %llu: lost leadership",
                 (unsigned long long)c->cfg.node_id);
        c->barrier_sent = false;
        c->leader_ready = false;
        c->barrier_gen++; /* a late barrier callback is stale */
        if (c->link == NULL) {
            cluster_raft_fail_fill(c, KM_ELEADERLOST);
        } /* else the next flush forwards the batch to the new leader */
    }
    if (st == RAFT_FOLLOWER && !c->ready_fired) {
        cluster_raft_follower_ready(c);
    }
}

/* Open and close */

static int
cluster_raft_mkdirs(const char *path)
{
    char *p = km_strdup(path);
    int rv = 0;

    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0') {
            continue;
        }
        char saved = *s;
        *s = '\0';
        uv_fs_t req;
        int r = uv_fs_mkdir(NULL, &req, p, 0700, NULL);
        uv_fs_req_cleanup(&req);
        if (r != 0 && r != UV_EEXIST) {
            rv = r;
            break;
        }
        *s = saved;
        if (saved == '\0') {
            break;
        }
    }
    free(p);
    return rv;
}

static void
cluster_raft_apply_defaults(struct cluster_config *cfg)
{
    if (cfg->election_timeout_ms == 0) {
        cfg->election_timeout_ms = 1000;
    }
    if (cfg->heartbeat_ms == 0) {
        cfg->heartbeat_ms = 100;
    }
    if (cfg->snapshot_threshold == 0) {
        cfg->snapshot_threshold = 16384;
    }
    if (cfg->snapshot_trailing == 0) {
        cfg->snapshot_trailing = 16384;
    }
    if (cfg->batch_max_ms == 0) {
        cfg->batch_max_ms = 2;
    }
    if (cfg->batch_max_records == 0) {
        cfg->batch_max_records = 256;
    }
    if (cfg->batch_max_records > CLUSTER_MAX_BATCH_RECORDS) {
        cfg->batch_max_records = CLUSTER_MAX_BATCH_RECORDS;
    }
}

static void
cluster_raft_free(struct cluster *c)
{
    cluster_fsm_free(c->fsm);
    cluster_conn_free_local(c);
    for (size_t i = 0; i < c->cfg.n_peers; i++) {
        free((char *)(uintptr_t)c->peers[i].raft_addr);
        free((char *)(uintptr_t)c->peers[i].link_url);
    }
    free(c->peers);
    free(c->link_listen);
    free(c->cluster_id);
    free(c->raft_addr);
    free(c->raft_dir);
    cluster_tls_free(c->tls);
    free(c);
}

static void
cluster_raft_release(struct cluster *c)
{
    if (--c->handles_open > 0) {
        return;
    }
    cluster_close_cb cb = c->close_cb;
    void *arg = c->close_arg;
    cluster_raft_free(c);
    if (cb != NULL) {
        cb(arg);
    }
}

void
cluster_raft_on_handle_closed(uv_handle_t *h)
{
    cluster_raft_release(h->data);
}

static void
cluster_raft_on_link_closed(void *arg)
{
    cluster_raft_release(arg);
}

static void
cluster_raft_on_raft_closed(struct raft *r)
{
    struct cluster *c = r->data;

    raft_uv_close(&c->io);
    cluster_transport_release(&c->transport);
    /* raft fails its pending requests before this callback; anything
     * left was dropped without one. */
    while (c->inflight != NULL) {
        struct cluster_raft_entry *e = c->inflight;
        c->inflight = e->next;
        cluster_raft_resolve(e->waiters, e->n, KM_ECLOSING);
        free(e);
    }
    /* One extra count, dropped below, so that nothing frees c early. */
    c->handles_open += 3;
    uv_close((uv_handle_t *)&c->check, cluster_raft_on_handle_closed);
    uv_close((uv_handle_t *)&c->batch_timer, cluster_raft_on_handle_closed);
    if (c->link != NULL) {
        cluster_propose_fini(c, KM_ECLOSING);
        cluster_lease_close(c);
        c->handles_open++;
        cluster_link_close(c->link, cluster_raft_on_link_closed, c);
        c->link = NULL;
    }
    cluster_raft_release(c);
}

/* Node traffic: one request handler for every kind of LinkEnvelope. */
static void
cluster_raft_on_request(void *ctx, uint64_t from,
                        const struct cluster_link_msg *req,
                        struct cluster_link_reply *r)
{
    struct cluster *c = ctx;
    struct cluster_link_msg none = {.kind = CLUSTER_LINK_NONE};

    if (c->closing) {
        (void)cluster_link_reply_send(r, &none);
        return;
    }
    if (req->kind == CLUSTER_LINK_PING) {
        cluster_lease_on_ping(c, from, &req->u.ping, r);
        return;
    }
    if (req->kind != CLUSTER_LINK_RAW) {
        (void)cluster_link_reply_send(r, &none);
        return;
    }
    switch (req->u.raw.type) {
    case CLUSTER_LINK_T_PROPOSE:
        cluster_propose_on_request(c, from, &req->u.raw, r);
        return;
    case CLUSTER_LINK_T_STORE_BODY:
    case CLUSTER_LINK_T_FETCH_BODY:
    case CLUSTER_LINK_T_SHARD_COPY:
        cluster_body_on_request(c, from, &req->u.raw, r);
        return;
    case CLUSTER_LINK_T_STATUS:
    case CLUSTER_LINK_T_ADMIN:
        cluster_status_on_request(c, from, &req->u.raw, r);
        return;
    default:
        (void)cluster_link_reply_send(r, &none);
        return;
    }
}

bool
cluster_is_group(const struct cluster *c)
{
    return c != NULL && c->cfg.n_peers > 1 && c->link != NULL;
}

size_t
cluster_configured_peers(const struct cluster *c, uint64_t *out, size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < c->cfg.n_peers && n < max; i++) {
        out[n++] = c->cfg.peers[i].id;
    }
    return n;
}

static int
cluster_raft_make_proof(void *ctx, uint64_t to, struct buf *out)
{
    struct cluster *c = ctx;

    return cluster_tls_make_proof(c->tls, c->cluster_id, c->cfg.node_id, to,
                                  out);
}

static bool
cluster_raft_check_proof(void *ctx, uint64_t from, const uint8_t *p, size_t n,
                         const char **why)
{
    struct cluster *c = ctx;

    return cluster_tls_check_proof(c->tls, c->cluster_id, from, c->cfg.node_id,
                                   p, n, why);
}

static int
cluster_raft_open_link(struct cluster *c)
{
    struct cluster_link_config lc = {
        .node_id = c->cfg.node_id,
        .cluster_id = (const uint8_t *)c->cluster_id,
        .cluster_id_len = strlen(c->cluster_id),
        .listen_url = c->link_listen,
    };
    struct cluster_link_host lh = {.ctx = c,
                                   .on_request = cluster_raft_on_request};
    int rv;

    if (c->tls != NULL) {
        struct cluster_tls_files f;
        cluster_tls_get_files(c->tls, &f);
        lc.tls_ca = f.ca;
        lc.tls_cert = f.cert;
        lc.tls_key = f.key;
        /* NNG cannot show us the caller's certificate: each request
         * proves its sender itself (cluster_tls_make_proof). */
        lh.make_proof = cluster_raft_make_proof;
        lh.check_proof = cluster_raft_check_proof;
    }
    rv = cluster_link_open(c->loop, &lc, &lh, &c->link);
    if (rv != 0) {
        LOG_ERROR("cluster: link listen %s: %s", c->link_listen,
                  km_strerror(rv));
        c->link = NULL;
        return rv;
    }
    for (size_t i = 0; i < c->cfg.n_peers; i++) {
        const struct cluster_peer *p = &c->peers[i];
        if (p->id == c->cfg.node_id || p->link_url == NULL) {
            continue;
        }
        rv = cluster_link_add_peer(c->link, p->id, p->link_url);
        if (rv != 0) {
            LOG_ERROR("cluster: link peer %llu at %s: %s",
                      (unsigned long long)p->id, p->link_url, km_strerror(rv));
            return rv; /* the link is closed with the rest */
        }
    }
    cluster_propose_init(c);
    cluster_lease_init(c);
    return 0;
}

/* The configuration to bootstrap: this node alone without peers, every
 * peer with bootstrap, nothing (wait to be added) otherwise. */
static int
cluster_raft_initial_conf(struct cluster *c, struct raft_configuration *conf)
{
    int rv = 0;

    if (c->cfg.n_peers == 0) {
        return raft_configuration_add(conf, c->cfg.node_id, c->raft_addr,
                                      RAFT_VOTER);
    }
    if (!c->cfg.bootstrap) {
        return 0;
    }
    for (size_t i = 0; i < c->cfg.n_peers && rv == 0; i++) {
        rv = raft_configuration_add(conf, c->peers[i].id, c->peers[i].raft_addr,
                                    RAFT_VOTER);
    }
    return rv;
}

/* Load the TLS files, or say loudly that there are none. The file names
 * are not kept in c->cfg: cluster_tls keeps its own copies. */
static int
cluster_raft_open_tls(struct cluster *c, const struct cluster_config *cfg)
{
    struct cluster_tls_files f = {
        .ca = cfg->tls_ca, .cert = cfg->tls_cert, .key = cfg->tls_key};
    char err[512];
    int rv;

    c->cfg.tls_ca = c->cfg.tls_cert = c->cfg.tls_key = NULL;
    if (f.ca == NULL && f.cert == NULL && f.key == NULL) {
        if (cfg->insecure_plaintext) {
            LOG_WARN("cluster: insecure_plaintext: raft and link traffic "
                     "between nodes is neither authenticated nor encrypted");
        }
        return 0;
    }
    rv = cluster_tls_new(&f, &c->tls, err, sizeof(err));
    if (rv != 0) {
        LOG_ERROR("cluster: %s", err);
        return rv;
    }
    LOG_INFO("cluster: mutual TLS between nodes (certificate valid until "
             "%lld)",
             (long long)cluster_tls_cert_expiry(c->tls));
    return 0;
}

/* The transport's check of a connection's handshake: the id must be a
 * member other than us, at the address the configuration gives it. The
 * raft configuration decides once it has any server; before (a restart
 * until the log is loaded, a node waiting to be added), the configured
 * peers do, as voters. */
static bool
cluster_raft_is_member(void *ctx, uint64_t id, const char *address, bool *voter)
{
    const struct cluster *c = ctx;
    const struct raft_configuration *conf = &c->raft.configuration;

    if (id == c->cfg.node_id) {
        return false;
    }
    for (unsigned i = 0; i < conf->n; i++) {
        if (conf->servers[i].id == id) {
            *voter = conf->servers[i].role == RAFT_VOTER;
            return strcmp(conf->servers[i].address, address) == 0;
        }
    }
    if (conf->n > 0) {
        return false;
    }
    for (size_t i = 0; i < c->cfg.n_peers; i++) {
        if (c->peers[i].id == id) {
            *voter = true;
            return strcmp(c->peers[i].raft_addr, address) == 0;
        }
    }
    return false;
}

/* raft_uv's TCP transport parses the address with uv_ip4_addr and binds
 * its listener to it. "127.0.0.1:0" is accepted and binds an ephemeral
 * port (verified in test_cluster_raft): fine for a one-voter group, which
 * never dials anyone, but the configuration then records port 0, so such
 * a node can never gain peers. A node that may join a cluster later needs
 * a real fixed port from the start. */
int
cluster_open(uv_loop_t *loop, const struct cluster_config *cfg,
             const struct cluster_host *host, struct cluster **out)
{
    struct cluster *c = km_calloc(1, sizeof(*c));
    struct raft_configuration conf;
    int rv;

    if (cfg->node_id == 0 || cfg->raft_dir == NULL || cfg->raft_addr == NULL) {
        free(c);
        return KM_EINVAL;
    }
    c->loop = loop;
    c->cfg = *cfg;
    cluster_raft_apply_defaults(&c->cfg);
    c->raft_dir = km_strdup(cfg->raft_dir);
    c->raft_addr = km_strdup(cfg->raft_addr);
    c->cfg.raft_dir = c->raft_dir;
    c->cfg.raft_addr = c->raft_addr;
    c->peers = km_calloc(cfg->n_peers + 1, sizeof(*c->peers));
    for (size_t i = 0; i < cfg->n_peers; i++) {
        c->peers[i].id = cfg->peers[i].id;
        c->peers[i].raft_addr = km_strdup(cfg->peers[i].raft_addr);
        c->peers[i].link_url = cfg->peers[i].link_url != NULL
                                   ? km_strdup(cfg->peers[i].link_url)
                                   : NULL;
    }
    c->cfg.peers = c->peers;
    c->link_listen =
        cfg->link_listen != NULL ? km_strdup(cfg->link_listen) : NULL;
    c->cluster_id = km_strdup(cfg->cluster_id != NULL ? cfg->cluster_id : "");
    c->cfg.link_listen = c->link_listen;
    c->cfg.cluster_id = c->cluster_id;
    if (host != NULL) {
        c->host = *host;
    }
    c->fsm = cluster_fsm_new();
    cluster_fsm_set_host(c->fsm, &c->host);
    rv = cluster_raft_mkdirs(c->raft_dir);
    if (rv != 0) {
        LOG_ERROR("cluster: mkdir %s: %s", c->raft_dir, uv_strerror(rv));
        goto err_after_alloc;
    }

    rv = cluster_raft_open_tls(c, cfg);
    if (rv != 0) {
        goto err_after_alloc;
    }
    rv = cluster_transport_init_tcp(&c->transport, loop);
    if (rv != 0) {
        LOG_ERROR("cluster: raft transport: %s", raft_strerror(rv));
        rv = cluster_raft_err(rv);
        goto err_after_alloc;
    }
    cluster_transport_set_policy(
        &c->transport,
        &(struct cluster_transport_policy){
            .ctx = c, .is_member = cluster_raft_is_member, .tls = c->tls});
    rv = raft_uv_init(&c->io, loop, c->raft_dir, &c->transport);
    if (rv != 0) {
        LOG_ERROR("cluster: raft io %s: %s", c->raft_dir, c->io.errmsg);
        rv = cluster_raft_err(rv);
        goto err_after_transport;
    }
    c->raft_fsm.version = 1; /* synchronous snapshots on the loop */
    c->raft_fsm.data = c;
    c->raft_fsm.apply = cluster_raft_fsm_apply;
    c->raft_fsm.snapshot = cluster_raft_fsm_snapshot;
    c->raft_fsm.restore = cluster_raft_fsm_restore;
    rv =
        raft_init(&c->raft, &c->io, &c->raft_fsm, c->cfg.node_id, c->raft_addr);
    if (rv != 0) {
        LOG_ERROR("cluster: raft init: %s (%s)", raft_strerror(rv),
                  raft_errmsg(&c->raft));
        rv = cluster_raft_err(rv);
        goto err_after_io;
    }
    c->raft.data = c;
    raft_set_election_timeout(&c->raft, c->cfg.election_timeout_ms);
    raft_set_heartbeat_timeout(&c->raft, c->cfg.heartbeat_ms);
    raft_set_snapshot_threshold(&c->raft, c->cfg.snapshot_threshold);
    raft_set_snapshot_trailing(&c->raft, c->cfg.snapshot_trailing);
    raft_set_pre_vote(&c->raft, true);

    uv_check_init(loop, &c->check);
    c->check.data = c;
    uv_timer_init(loop, &c->batch_timer);
    c->batch_timer.data = c;
    uv_check_start(&c->check, cluster_raft_on_check);
    if (c->link_listen != NULL) {
        rv = cluster_raft_open_link(c);
        if (rv != 0) {
            goto err_after_raft;
        }
    }

    raft_configuration_init(&conf);
    rv = cluster_raft_initial_conf(c, &conf);
    if (rv == 0 && conf.n > 0) {
        rv = raft_bootstrap(&c->raft, &conf);
        if (rv == RAFT_CANTBOOTSTRAP) {
            rv = 0; /* existing state: a restart */
        } else if (rv == 0) {
            c->fresh_raft = true;
            LOG_INFO("cluster: bootstrapped a group of %u voter(s) in %s",
                     conf.n, c->raft_dir);
        }
    }
    raft_configuration_close(&conf);
    if (rv != 0) {
        LOG_ERROR("cluster: raft bootstrap: %s (%s)", raft_strerror(rv),
                  raft_errmsg(&c->raft));
        rv = cluster_raft_err(rv);
        goto err_after_raft;
    }
    rv = raft_start(&c->raft);
    if (rv != 0) {
        LOG_ERROR("cluster: raft start: %s (%s)", raft_strerror(rv),
                  raft_errmsg(&c->raft));
        rv = cluster_raft_err(rv);
        goto err_after_raft;
    }
    rv = cluster_guard_open(c);
    if (rv != 0) {
        goto err_after_raft;
    }
    c->started = true;
    *out = c;
    return 0;

err_after_raft:
    /* raft_close is asynchronous: the rest is released on the loop. */
    c->closing = true;
    raft_close(&c->raft, cluster_raft_on_raft_closed);
    return rv;
err_after_io:
    raft_uv_close(&c->io);
err_after_transport:
    cluster_transport_release(&c->transport);
err_after_alloc:
    cluster_raft_free(c);
    return rv;
}

void
cluster_close(struct cluster *c, cluster_close_cb cb, void *arg)
{
    KM_ASSERT(!c->closing);
    c->closing = true;
    c->close_cb = cb;
    c->close_arg = arg;
    cluster_raft_fail_fill(c, KM_ECLOSING);
    raft_close(&c->raft, cluster_raft_on_raft_closed);
}

/* Queries */

bool
cluster_is_ready(const struct cluster *c)
{
    return c->leader_ready && !c->closing;
}

bool
cluster_is_leader(const struct cluster *c)
{
    return c->leader_ready && !c->closing &&
           raft_state((struct raft *)(uintptr_t)&c->raft) == RAFT_LEADER;
}

size_t
cluster_queued_count(const struct cluster *c)
{
    return cluster_fsm_count(c->fsm);
}

const struct cluster_msg *
cluster_lookup(const struct cluster *c, const char *id)
{
    const struct cluster_fsm_msg *m = cluster_fsm_lookup(c->fsm, id);

    return m != NULL ? &m->pub : NULL;
}

void
cluster_foreach(const struct cluster *c,
                bool (*fn)(void *arg, const struct cluster_msg *m), void *arg)
{
    cluster_fsm_foreach(c->fsm, fn, arg);
}

void
cluster_get_stats(const struct cluster *c, struct cluster_stats *out)
{
    /* raft's getters take a non-const pointer but only read. */
    struct raft *r = (struct raft *)(uintptr_t)&c->raft;
    raft_id leader = 0;
    const char *addr = NULL;

    memset(out, 0, sizeof(*out));
    out->term = r->current_term;
    out->commit_index = r->commit_index;
    out->applied_index = raft_last_applied(r);
    out->last_index = raft_last_index(r);
    raft_leader(r, &leader, &addr);
    out->leader_id = leader;
    out->entries_proposed = c->entries_proposed;
    out->records_proposed = c->records_proposed;
    switch (raft_state(r)) {
    case RAFT_LEADER:
        out->state = "leader";
        break;
    case RAFT_FOLLOWER:
        out->state = "follower";
        break;
    case RAFT_CANDIDATE:
        out->state = "candidate";
        break;
    default:
        out->state = "unavailable";
        break;
    }
}

void
cluster_foreach_member(const struct cluster *c,
                       bool (*fn)(void *arg, const struct cluster_member *m),
                       void *arg)
{
    const struct raft_configuration *conf = &c->raft.configuration;

    for (unsigned i = 0; i < conf->n; i++) {
        struct cluster_member m = {
            .id = conf->servers[i].id,
            .raft_addr = conf->servers[i].address,
            .voter = conf->servers[i].role == RAFT_VOTER,
        };
        if (!fn(arg, &m)) {
            return;
        }
    }
}

uint64_t
cluster_self_id(const struct cluster *c)
{
    return c->cfg.node_id;
}

/* Fill the zero fields of st with CLUSTER.md §4.11's defaults for a group
 * of `voters` voters. */
static void
cluster_raft_settings_defaults(struct cluster_settings *st, size_t voters)
{
    if (st->shards == 0) {
        st->shards = 64;
    }
    if (st->replication_factor == 0) {
        st->replication_factor = voters <= 1 ? 1 : voters < 5 ? 2 : 3;
    }
    if (st->min_replicas == 0) {
        st->min_replicas =
            st->replication_factor < 2 ? st->replication_factor : 2;
    }
    if (st->min_replicas > st->replication_factor) {
        st->min_replicas = st->replication_factor;
    }
    if (st->ping_ms == 0) {
        st->ping_ms = 1000;
    }
    if (st->self_fence_after_ms == 0) {
        st->self_fence_after_ms = 5000;
    }
    if (st->node_down_after_ms == 0) {
        st->node_down_after_ms = 10000;
    }
    if (st->failover_grace_ms == 0) {
        st->failover_grace_ms = 120000;
    }
    if (st->accept_timeout_ms == 0) {
        st->accept_timeout_ms = 30000;
    }
    if (st->rebalance_after_ms == 0) {
        st->rebalance_after_ms = 600000;
    }
}

void
cluster_get_settings(const struct cluster *c, struct cluster_settings *out)
{
    /* The committed record wins over the configuration (CLUSTER.md
     * §4.11); its zero fields still get the defaults. */
    if (!cluster_fsm_settings(c->fsm, out)) {
        *out = c->cfg.settings;
    }
    cluster_raft_settings_defaults(out, c->cfg.n_peers);
}

static void
cluster_raft_on_transfer(struct raft_transfer *req)
{
    free(req);
}

int
cluster_hand_off(struct cluster *c)
{
    struct raft_transfer *req;
    int rv;

    if (c->closing || raft_state(&c->raft) != RAFT_LEADER) {
        return KM_ENOTLEADER;
    }
    req = km_calloc(1, sizeof(*req));
    /* id 0: raft picks the most up-to-date voter. */
    rv = raft_transfer(&c->raft, req, 0, cluster_raft_on_transfer);
    if (rv != 0) {
        free(req);
        return cluster_raft_err(rv);
    }
    return 0;
}
