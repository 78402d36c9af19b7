/* kumod.c - the daemon's life cycle around `struct kumod`: loading the
 * policy, opening logs, spools and the raft group in order, recovering
 * queued messages when raft is ready, and the graceful shutdown of
 * KUMOMTA-API.md §1.5. Loop thread only. The policy's configuration calls
 * arrive through policy_glue.c. */
#include "kumod.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "admin.h"
#include "base/buf.h"
#include "base/km.h"
#include "base/log.h"
#include "cluster.h"
#include "dkim.h"
#include "egress.h"
#include "http_api.h"
#include "ingest.h"
#include "kumod_body.h"
#include "kumod_dirs.h"
#include "kumod_recover.h"
#include "logrec.h"
#include "message.h"
#include "metrics.h"
#include "policy.h"
#include "policy_glue.h"
#include "queue.h"
#include "smtp_server.h"
#include "spool.h"

/* How long open SMTP sessions may take to say goodbye at shutdown after
 * every accepted message has been committed. */
#define KUMOD_SHUTDOWN_SESSION_GRACE_MS 10000u
#define KUMOD_SHUTDOWN_POLL_MS          50u

void
kumod_init(struct kumod *kd, uv_loop_t *loop, const char *policy_path,
           bool validate_only)
{
    memset(kd, 0, sizeof(*kd));
    kd->loop = loop;
    kd->policy_path = policy_path;
    kd->validate_only = validate_only;
    kd->state = KUMOD_LOADING;
    kd->cfg.log_configs = json_array();
    metrics_new(&kd->metrics);
    admin_rules_new(&kd->rules);
    ingest_new(&kd->ingest);
    dkim_ctx_new(loop, kd->metrics, &kd->dkim);
}

bool
kumod_is_stopping(const struct kumod *kd)
{
    return kd->state == KUMOD_STOPPING;
}

int
kumod_load(struct kumod *kd, char *err, size_t errlen)
{
    struct policy_host host;
    struct policy_result res;
    int rv;

    memset(&host, 0, sizeof(host));
    host.ctx = kd;
    policy_glue_msg_ops(&host.msg);
    host.config = policy_glue_config;
    dkim_policy_ops(kd->dkim, &host.dkim);
    rv = policy_new(&host, &kd->policy);
    if (rv != 0) {
        snprintf(err, errlen, "cannot create the Lua state: %s",
                 km_strerror(rv));
        return rv;
    }
    /* KumoMTA's --validate runs the validate_config handlers after init. */
    policy_declare_event(kd->policy, "validate_config");
    rv = policy_load(kd->policy, kd->policy_path, err, errlen);
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < 2; i++) {
        const char *event = i == 0 ? "pre_init" : "init";
        memset(&res, 0, sizeof(res));
        rv = policy_call(kd->policy, event, NULL, 0, &res, err, errlen);
        if (rv == KM_EREJECT) {
            snprintf(err, errlen, "%s: kumo.reject(%d, %s) is not valid here",
                     event, res.reject.code, res.reject.text);
            rv = KM_EPOLICY;
        }
        if (rv == 0 && i == 1 && !res.had_handler) {
            snprintf(err, errlen,
                     "%s: the policy registers no init handler "
                     "(kumo.on('init', function() ... end))",
                     kd->policy_path);
            rv = KM_ECONFIG;
        }
        policy_result_fini(&res);
        if (rv != 0) {
            return rv;
        }
    }
    if (kd->validate_only) {
        rv = policy_validate(kd->policy, err, errlen);
        if (rv != 0) {
            return rv;
        }
    }
    policy_seal(kd->policy);
    if (kd->cfg.data_spool_path == NULL || kd->cfg.meta_spool_path == NULL) {
        snprintf(err, errlen,
                 "No spools have been defined: init must call "
                 "kumo.define_spool{} for both 'data' and 'meta'");
        return KM_ECONFIG;
    }
    return 0;
}

static int
kumod_open_logs(struct kumod *kd, char *err, size_t errlen)
{
    size_t n = json_array_size(kd->cfg.log_configs);

    kd->logs.logs = km_calloc(n ? n : 1, sizeof(*kd->logs.logs));
    kd->logs.nodeid = kd->nodeid;
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(kd->cfg.log_configs, i);
        struct logrec_config cfg;
        const char *meta[64], *headers[64];
        json_t *v;
        size_t j;

        memset(&cfg, 0, sizeof(cfg));
        cfg.log_dir = json_string_value(json_object_get(p, "log_dir"));
        cfg.max_segment_duration_ms = (uint64_t)json_integer_value(
            json_object_get(p, "max_segment_duration"));
        cfg.max_file_size =
            (uint64_t)json_integer_value(json_object_get(p, "max_file_size"));
        cfg.compression_level =
            (int)json_integer_value(json_object_get(p, "compression_level"));
        json_array_foreach(json_object_get(p, "meta"), j, v)
        {
            if (cfg.n_meta < 64 && json_is_string(v)) {
                meta[cfg.n_meta++] = json_string_value(v);
            }
        }
        json_array_foreach(json_object_get(p, "headers"), j, v)
        {
            if (cfg.n_headers < 64 && json_is_string(v)) {
                headers[cfg.n_headers++] = json_string_value(v);
            }
        }
        cfg.meta = meta;
        cfg.headers = headers;
        int rv = kumod_dirs_mkdirs(cfg.log_dir);
        if (rv == 0) {
            rv = logrec_open(kd->loop, &cfg, &kd->logs.logs[kd->logs.n]);
        }
        if (rv != 0) {
            snprintf(err, errlen, "log_dir %s: %s", cfg.log_dir,
                     km_strerror(rv));
            return rv;
        }
        kd->logs.n++;
    }
    return 0;
}

/* Raft has replayed its log: every message it lists is queued again. */
static void
kumod_on_cluster_ready(void *ctx)
{
    struct kumod *kd = ctx;
    struct kumod_recover_stats rc;
    char err[512];

    if (kd->state != KUMOD_STARTING) {
        return;
    }
    /* Admin rules first: a bounce or a suspension applies to recovered
     * messages as they become due. */
    admin_load(kd->admin);
    if (kumod_recover(kd, &rc, err, sizeof(err)) != 0) {
        LOG_ERROR("kumod: start-up aborted: %s", err);
        kd->exit_status = 1;
        kumod_request_shutdown(kd);
        return;
    }
    kd->recovered = rc.count;
    kd->state = KUMOD_RUNNING;
    admin_set_ready(kd->admin, true);
    for (size_t i = 0; i < kd->n_listeners; i++) {
        smtp_server_set_ready(kd->listeners[i], true);
    }
    for (size_t i = 0; i < kd->n_http_listeners; i++) {
        http_api_set_ready(kd->http_listeners[i], true);
    }
    queue_mgr_start(kd->queues);
    kumod_repl_start(kd);
    LOG_INFO("kumod: recovered %zu messages%s", rc.count,
             rc.missing ? " (some could not be read, see above)" : "");
    if (rc.remote > 0) {
        LOG_INFO("kumod: %zu queued message(s) belong to other nodes",
                 rc.remote);
    }
    if (rc.fetching > 0) {
        LOG_INFO("kumod: fetching %zu message body(ies) from other nodes",
                 rc.fetching);
    }
    LOG_INFO("kumod: initialization complete");
}

static void
kumod_on_cluster_admin(void *ctx, const struct cluster_admin_rule *r,
                       bool cancelled)
{
    struct kumod *kd = ctx;

    /* Before the pipeline opens, admin_load() will read every rule. */
    if (kd->admin != NULL) {
        admin_on_rule(kd->admin, r, cancelled);
    }
}

/* Connection slots were granted: the waiting ready queue may open. */
static void
kumod_on_conn_slots(void *ctx, const char *key)
{
    struct kumod *kd = ctx;

    if (kd->egress != NULL) {
        egress_conn_slots(kd->egress, key);
    }
}

static void
kumod_on_cluster_fatal(void *ctx, int err)
{
    struct kumod *kd = ctx;

    LOG_ERROR("kumod: raft: %s: stopping", km_strerror(err));
    kd->exit_status = 1;
    kumod_request_shutdown(kd);
}

static void kumod_cluster_get_load(void *ctx, struct cluster_load *out);

/* The policy file's SHA-256 (16 hex digits), shown by `cluster status` so
 * that drift between the nodes' --policy files is visible. */
static void
kumod_policy_checksum(struct kumod *kd)
{
    struct buf text = BUF_INIT;
    unsigned char md[SHA256_DIGEST_LENGTH];

    char chunk[4096];
    FILE *f;
    size_t n;

    kd->policy_checksum[0] = '\0';
    f = kd->policy_path != NULL ? fopen(kd->policy_path, "rb") : NULL;
    if (f == NULL) {
        return;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        buf_append(&text, chunk, n);
    }
    fclose(f);
    SHA256((const unsigned char *)text.data, text.len, md);
    for (size_t i = 0; i < 8; i++) {
        snprintf(kd->policy_checksum + 2 * i, 3, "%02x", md[i]);
    }
    buf_fini(&text);
}

/* The data spool crossed its soft mark: tell the listeners (StoreBody
 * asks the guard). */
static void
kumod_on_disk_low(void *arg, bool low)
{
    struct kumod *kd = arg;

    for (size_t i = 0; i < kd->n_listeners; i++) {
        smtp_server_set_disk_low(kd->listeners[i], low);
    }
    for (size_t i = 0; i < kd->n_http_listeners; i++) {
        http_api_set_disk_low(kd->http_listeners[i], low);
    }
}

/* Below the hard mark in a group, leadership handed away. */
static void
kumod_on_disk_critical(void *arg)
{
    struct kumod *kd = arg;

    kd->exit_status = 1;
    kumod_request_shutdown(kd);
}

/* Egress reports the end of an attempt: back up to the queue. */
static void
kumod_on_egress_done(void *arg, struct message *m,
                     const struct egress_outcome *o)
{
    struct kumod *kd = arg;

    queue_attempt_done(kd->queues, m, o);
}

/* Delivery, the scheduled queues and admin, once the spools and the
 * cluster are open. Each is handed what it uses; the way of a message runs
 * down (queue -> egress) and its outcome comes back through
 * kumod_on_egress_done. Only the DNS resolver can fail. */
static int
kumod_open_pipeline(struct kumod *kd)
{
    struct egress_deps ed = {
        .loop = kd->loop,
        .policy = kd->policy,
        .cluster = kd->cluster,
        .data = kd->data_spool,
        .rules = kd->rules,
        .dns_servers = (const char *const *)kd->cfg.dns_servers,
        .n_dns_servers = kd->cfg.n_dns_servers,
        .dns_timeout_ms = kd->cfg.dns_timeout_ms,
        .dns_attempts = kd->cfg.dns_attempts,
        .done = kumod_on_egress_done,
        .done_arg = kd,
    };
    int rv = egress_mgr_open(&ed, &kd->egress);

    if (rv != 0) {
        return rv;
    }
    struct queue_deps qd = {
        .loop = kd->loop,
        .policy = kd->policy,
        .cluster = kd->cluster,
        .data = kd->data_spool,
        .meta = kd->meta_spool,
        .logs = &kd->logs,
        .metrics = kd->metrics,
        .rules = kd->rules,
        .egress = kd->egress,
    };
    rv = queue_mgr_open(&qd, &kd->queues);
    if (rv != 0) {
        return rv;
    }
    struct admin_deps ad = {
        .cluster = kd->cluster,
        .policy = kd->policy,
        .queues = kd->queues,
        .rules = kd->rules,
    };
    admin_new(&ad, &kd->admin);
    struct ingest_deps ind = {
        .loop = kd->loop,
        .cluster = kd->cluster,
        .data = kd->data_spool,
        .meta = kd->meta_spool,
        .queues = kd->queues,
        .metrics = kd->metrics,
        .logs = &kd->logs,
        .dkim = kd->dkim,
    };
    ingest_open(kd->ingest, &ind);
    struct http_api_node hn = {
        .cluster = kd->cluster,
        .queues = kd->queues,
        .admin = kd->admin,
        .data = kd->data_spool,
        .meta = kd->meta_spool,
        .nodeid = kd->nodeid,
        .raft_node_id =
            kd->cfg.cluster_node_id != 0 ? kd->cfg.cluster_node_id : 1,
        .cluster_id = kd->cfg.cluster_id != NULL ? kd->cfg.cluster_id : "",
    };
    for (size_t i = 0; i < kd->n_http_listeners; i++) {
        http_api_attach(kd->http_listeners[i], &hn);
    }
    return 0;
}

int
kumod_start(struct kumod *kd, char *err, size_t errlen)
{
    char *state_dir = kumod_dirs_state(kd);
    char *nodeid_path = km_asprintf("%s/nodeid", state_dir);
    int rv;

    kd->state = KUMOD_STARTING;
    kumod_policy_checksum(kd);
    rv = kumod_dirs_mkdirs(state_dir);
    if (rv != 0) {
        snprintf(err, errlen, "%s: %s", state_dir, km_strerror(rv));
    } else {
        rv = kumod_dirs_load_nodeid(kd, nodeid_path, err, errlen);
    }
    free(nodeid_path);
    if (rv != 0) {
        free(state_dir);
        return rv;
    }
    rv = kumod_open_logs(kd, err, errlen);
    if (rv != 0) {
        free(state_dir);
        return rv;
    }
    if ((rv = kumod_dirs_mkdirs(kd->cfg.data_spool_path)) != 0 ||
        (rv = spool_open(kd->loop, "data", kd->cfg.data_spool_path,
                         &kd->data_spool)) != 0 ||
        (rv = kumod_dirs_mkdirs(kd->cfg.meta_spool_path)) != 0 ||
        (rv = spool_open(kd->loop, "meta", kd->cfg.meta_spool_path,
                         &kd->meta_spool)) != 0) {
        snprintf(err, errlen, "cannot open the spool: %s", km_strerror(rv));
        free(state_dir);
        return rv;
    }

    struct cluster_config cc;
    struct cluster_host ch;
    memset(&cc, 0, sizeof(cc));
    memset(&ch, 0, sizeof(ch));
    if (kd->cfg.cluster_node_id != 0) {
        const char *data_dir = kd->cfg.cluster_data_dir != NULL
                                   ? kd->cfg.cluster_data_dir
                                   : state_dir;
        rv = kumod_dirs_mkdirs(data_dir);
        if (rv != 0) {
            snprintf(err, errlen, "%s: %s", data_dir, km_strerror(rv));
        } else {
            rv = kumod_dirs_check_cluster_id(data_dir, kd->cfg.cluster_id, err,
                                             errlen);
        }
        if (rv != 0) {
            free(state_dir);
            return rv;
        }
        kd->raft_dir = km_asprintf("%s/raft", data_dir);
        cc.node_id = kd->cfg.cluster_node_id;
        cc.raft_addr = kd->cfg.raft_listen;
        cc.peers = kd->cfg.cluster_peers;
        cc.n_peers = kd->cfg.n_cluster_peers;
        /* A group listing only this node bootstraps it alone. */
        cc.bootstrap =
            kd->cfg.cluster_bootstrap || kd->cfg.n_cluster_peers == 1;
        cc.link_listen = kd->cfg.link_listen;
        cc.cluster_id = kd->cfg.cluster_id;
        cc.settings = kd->cfg.cluster_settings;
        cc.election_timeout_ms = kd->cfg.election_timeout_ms;
        cc.heartbeat_ms = kd->cfg.heartbeat_ms;
        cc.tls_ca = kd->cfg.cluster_tls_ca;
        cc.tls_cert = kd->cfg.cluster_tls_cert;
        cc.tls_key = kd->cfg.cluster_tls_key;
        cc.insecure_plaintext = kd->cfg.cluster_insecure_plaintext;
    } else {
        kd->raft_dir = km_asprintf("%s/raft", state_dir);
        cc.node_id = 1;
        /* A group of one voter never dials anyone; its transport still
         * listens, on an ephemeral loopback port. */
        cc.raft_addr = "127.0.0.1:0";
    }
    free(state_dir);
    cc.raft_dir = kd->raft_dir;
    ch.ctx = kd;
    ch.on_ready = kumod_on_cluster_ready;
    ch.on_fatal = kumod_on_cluster_fatal;
    ch.on_admin = kumod_on_cluster_admin;
    ch.on_enqueue = kumod_body_on_cluster_enqueue;
    ch.on_done = kumod_body_on_cluster_done;
    ch.on_shard_owner = kumod_body_on_shard_owner;
    ch.on_store_body = kumod_body_on_store_body;
    ch.on_fetch_body = kumod_body_on_fetch_body;
    ch.get_load = kumod_cluster_get_load;
    ch.on_conn_slots = kumod_on_conn_slots;
    rv = cluster_open(kd->loop, &cc, &ch, &kd->cluster);
    if (rv != 0) {
        snprintf(err, errlen, "cannot start raft in %s: %s", kd->raft_dir,
                 km_strerror(rv));
        return rv;
    }
    struct disk_guard_deps gd = {
        .loop = kd->loop,
        .data = kd->data_spool,
        .cluster = kd->cluster,
        .mark = kd->cfg.disk_mark,
        .on_low = kumod_on_disk_low,
        .on_critical = kumod_on_disk_critical,
        .arg = kd,
    };
    disk_guard_open(&gd, &kd->guard);
    rv = kumod_open_pipeline(kd);
    if (rv != 0) {
        snprintf(err, errlen, "cannot start delivery (DNS resolver): %s",
                 km_strerror(rv));
        return rv;
    }
    LOG_INFO("kumod: node %s: spool %s and %s, raft in %s", kd->nodeid,
             kd->cfg.data_spool_path, kd->cfg.meta_spool_path, kd->raft_dir);
    return 0;
}

/* Shutdown, last step: every object closes, then the loop runs dry. */
static void
kumod_on_closed(void *arg)
{
    struct kumod *kd = arg;

    KM_ASSERT(kd->closing > 0);
    kd->closing--;
}

static void
kumod_on_cluster_closed(void *arg)
{
    struct kumod *kd = arg;

    kd->cluster = NULL;
    /* Raft is quiet: now the spools and logs can go. */
    if (kd->data_spool != NULL) {
        kd->closing++;
        spool_close(kd->data_spool, kumod_on_closed, kd);
        kd->data_spool = NULL;
    }
    if (kd->meta_spool != NULL) {
        kd->closing++;
        spool_close(kd->meta_spool, kumod_on_closed, kd);
        kd->meta_spool = NULL;
    }
    for (size_t i = 0; i < kd->logs.n; i++) {
        kd->closing++;
        logrec_close(kd->logs.logs[i], kumod_on_closed, kd);
        kd->logs.logs[i] = NULL;
    }
    kd->logs.n = 0;
    kumod_on_closed(kd);
}

static void
kumod_on_queue_closed(void *arg)
{
    struct kumod *kd = arg;

    kd->closing++; /* for the cluster, released in kumod_on_cluster_closed */
    if (kd->cluster != NULL) {
        cluster_close(kd->cluster, kumod_on_cluster_closed, kd);
    } else {
        kumod_on_cluster_closed(kd);
    }
    kumod_on_closed(kd); /* the queue's count */
}

static void
kumod_on_egress_closed(void *arg)
{
    struct kumod *kd = arg;

    kd->egress = NULL;
    if (kd->queues != NULL) {
        queue_mgr_close(kd->queues, kumod_on_queue_closed, kd);
    } else {
        kumod_on_queue_closed(kd);
    }
}

static void
kumod_on_listeners_closed(void *arg)
{
    struct kumod *kd = arg;

    if (--kd->closing > 0) {
        return;
    }
    /* Then delivery, the queue timer, raft, and the spools and logs. */
    kd->closing++; /* released in kumod_on_queue_closed */
    if (kd->egress != NULL) {
        egress_mgr_close(kd->egress, kumod_on_egress_closed, kd);
    } else {
        kumod_on_egress_closed(kd);
    }
}

static void
kumod_close_all(struct kumod *kd)
{
    disk_guard_close(kd->guard);
    kd->guard = NULL;
    uv_timer_stop(&kd->shutdown_timer);
    uv_close((uv_handle_t *)&kd->shutdown_timer, NULL);
    uv_close((uv_handle_t *)&kd->sig_term, NULL);
    uv_close((uv_handle_t *)&kd->sig_int, NULL);
    uv_close((uv_handle_t *)&kd->sig_hup, NULL);
    /* One count per listener plus one that this function releases, so the
     * chain continues even with no listeners. */
    kd->closing = kd->n_listeners + kd->n_http_listeners + 1;
    for (size_t i = 0; i < kd->n_listeners; i++) {
        smtp_server_close(kd->listeners[i], kumod_on_listeners_closed, kd);
        kd->listeners[i] = NULL;
    }
    kd->n_listeners = 0;
    for (size_t i = 0; i < kd->n_http_listeners; i++) {
        http_api_close(kd->http_listeners[i], kumod_on_listeners_closed, kd);
        kd->http_listeners[i] = NULL;
    }
    kd->n_http_listeners = 0;
    kumod_on_listeners_closed(kd);
}

static void
kumod_on_shutdown_poll(uv_timer_t *t)
{
    struct kumod *kd = t->data;
    size_t sessions = 0;

    for (size_t i = 0; i < kd->n_listeners; i++) {
        sessions += smtp_server_session_count(kd->listeners[i]);
    }
    if (kd->inflight_body_ops > 0 || ingest_inflight(kd->ingest) > 0) {
        return; /* accepted mail is always finished first */
    }
    /* Deliveries in flight finish, and their Done records commit, within
     * the same grace as sessions. */
    bool busy =
        (kd->egress != NULL && egress_inflight(kd->egress) > 0) ||
        (kd->queues != NULL && queue_mgr_pending_commits(kd->queues) > 0);
    if (busy && km_now_mono_ms() - kd->shutdown_started_ms <
                    KUMOD_SHUTDOWN_SESSION_GRACE_MS) {
        return;
    }
    if (sessions > 0 && km_now_mono_ms() - kd->shutdown_started_ms <
                            KUMOD_SHUTDOWN_SESSION_GRACE_MS) {
        return;
    }
    if (sessions > 0) {
        LOG_INFO("kumod: closing %zu idle session(s)", sessions);
    }
    kumod_close_all(kd);
}

void
kumod_request_shutdown(struct kumod *kd)
{
    if (kd->state == KUMOD_STOPPING) {
        return;
    }
    if (kd->state != KUMOD_LOADING) {
        LOG_INFO("kumod: shutdown requested: finishing in-flight messages; "
                 "interrupting now risks duplicate deliveries");
    }
    kd->state = KUMOD_STOPPING;
    disk_guard_stop(kd->guard);
    if (kd->admin != NULL) {
        admin_set_ready(kd->admin, false);
    }
    if (kd->queues != NULL) {
        queue_mgr_stop(kd->queues);
    }
    ingest_stop(kd->ingest);
    kumod_repl_stop(kd);
    kd->shutdown_started_ms = km_now_mono_ms();
    for (size_t i = 0; i < kd->n_listeners; i++) {
        smtp_server_shutdown(kd->listeners[i]);
    }
    for (size_t i = 0; i < kd->n_http_listeners; i++) {
        http_api_shutdown(kd->http_listeners[i]);
    }
    if (kd->egress != NULL) {
        egress_stop(kd->egress);
    }
    uv_timer_start(&kd->shutdown_timer, kumod_on_shutdown_poll, 0,
                   KUMOD_SHUTDOWN_POLL_MS);
}

static void
kumod_on_signal(uv_signal_t *h, int signum)
{
    struct kumod *kd = h->data;

    LOG_INFO("kumod: received signal %d", signum);
    kumod_request_shutdown(kd);
}

void
kumod_watch_signals(struct kumod *kd)
{
    uv_signal_t *sigs[] = {&kd->sig_term, &kd->sig_int, &kd->sig_hup};
    int nums[] = {SIGTERM, SIGINT, SIGHUP};

    for (size_t i = 0; i < 3; i++) {
        uv_signal_init(kd->loop, sigs[i]);
        sigs[i]->data = kd;
        /* KumoMTA: SIGHUP is a graceful shutdown, not a reload. */
        uv_signal_start(sigs[i], kumod_on_signal, nums[i]);
    }
    uv_timer_init(kd->loop, &kd->shutdown_timer);
    kd->shutdown_timer.data = kd;
}

void
kumod_fini(struct kumod *kd)
{
    if (kd->queues != NULL) {
        queue_mgr_free(kd->queues);
    }
    admin_free(kd->admin);
    ingest_free(kd->ingest);
    admin_rules_free(kd->rules);
    metrics_free(kd->metrics);
    policy_free(kd->policy);
    dkim_ctx_free(kd->dkim);
    free(kd->listeners);
    free(kd->http_listeners);
    free(kd->logs.logs);
    free(kd->raft_dir);
    kumod_config_fini(&kd->cfg);
}

/* This node's load for StatusReport and Ping (cluster.h get_load): queued
 * messages, deliveries in flight, free space where the bodies live. Runs
 * on the loop; statfs is one cheap syscall. */
static void
kumod_cluster_get_load(void *ctx, struct cluster_load *out)
{
    struct kumod *kd = ctx;
    uv_fs_t req;

    memset(out, 0, sizeof(*out));
    out->queued = kd->queues != NULL ? queue_mgr_count(kd->queues) : 0;
    out->inflight = kd->egress != NULL ? egress_inflight(kd->egress) : 0;
    out->policy_checksum = kd->policy_checksum;
    if (kd->cfg.data_spool_path == NULL) {
        return;
    }
    if (uv_fs_statfs(NULL, &req, kd->cfg.data_spool_path, NULL) == 0) {
        const uv_statfs_t *st = req.ptr;
        out->free_bytes = (uint64_t)st->f_bavail * st->f_bsize;
    }
    uv_fs_req_cleanup(&req);
}
