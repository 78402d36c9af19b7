/* kumod.c - the daemon's life cycle around `struct kumod`: loading the
 * policy, opening logs, spools and the raft group in order, recovering
 * queued messages when raft is ready, and the graceful shutdown of
 * KUMOMTA-API.md §1.5. Loop thread only. The policy's configuration calls
 * arrive through policy_glue.c. */
#include "kumod.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "admin.h"
#include "base/buf.h"
#include "base/km.h"
#include "base/log.h"
#include "cluster.h"
#include "egress.h"
#include "http_api.h"
#include "kumod_body.h"
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
    kd->log_configs = json_array();
    metrics_new(&kd->metrics);
}

bool
kumod_is_ready(const struct kumod *kd)
{
    return kd->state == KUMOD_RUNNING;
}

bool
kumod_is_stopping(const struct kumod *kd)
{
    return kd->state == KUMOD_STOPPING;
}

void
kumod_new_id(struct kumod *kd, char out[KM_ID_HEX_LEN + 1])
{
    km_idgen_next(&kd->idgen, out);
}

void
kumod_log(struct kumod *kd, struct logrec_event *ev)
{
    ev->nodeid = kd->nodeid;
    for (size_t i = 0; i < kd->n_logs; i++) {
        logrec_write(kd->logs[i], ev);
    }
}

int
kumod_load(struct kumod *kd, char *err, size_t errlen)
{
    struct policy_host host;
    struct policy_result res;
    int rv;

    memset(&host, 0, sizeof(host));
    host.ctx = kd;
    message_policy_ops(&host.msg);
    host.config = policy_glue_config;
    rv = policy_new(&host, &kd->policy);
    if (rv != 0) {
        snprintf(err, errlen, "cannot create the Lua state: %s",
                 km_strerror(rv));
        return rv;
    }
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
    policy_seal(kd->policy);
    if (kd->data_spool_path == NULL || kd->meta_spool_path == NULL) {
        snprintf(err, errlen,
                 "No spools have been defined: init must call "
                 "kumo.define_spool{} for both 'data' and 'meta'");
        return KM_ECONFIG;
    }
    return 0;
}

/* mkdir -p with mode 0750. */
static int
kumod_mkdirs(const char *path)
{
    char *p = km_strdup(path);
    int rv = 0;

    for (char *s = p + 1; *s != '\0'; s++) {
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0750) != 0 && errno != EEXIST) {
                rv = -errno;
                break;
            }
            *s = '/';
        }
    }
    if (rv == 0 && mkdir(p, 0750) != 0 && errno != EEXIST) {
        rv = -errno;
    }
    free(p);
    return rv;
}

/* The directory holding the meta spool: home of nodeid and raft/. */
static char *
kumod_state_dir(const struct kumod *kd)
{
    char *copy = km_strdup(kd->meta_spool_path);
    char *dir = km_strdup(dirname(copy));

    free(copy);
    return dir;
}

/* Read the node's UUID from `path`, or make and persist a new one. */
static int
kumod_load_nodeid(struct kumod *kd, const char *path)
{
    char text[64] = "";
    FILE *f = fopen(path, "r");

    if (f != NULL) {
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
        text[n] = '\0';
        text[strcspn(text, "\r\n")] = '\0';
    }
    if (strlen(text) != 36) {
        uint8_t r[16];
        if (RAND_bytes(r, sizeof(r)) != 1) {
            return KM_EIO;
        }
        r[6] = (uint8_t)((r[6] & 0x0f) | 0x40); /* version 4 */
        r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
        snprintf(text, sizeof(text),
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                 "%02x%02x%02x%02x%02x%02x",
                 r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                 r[10], r[11], r[12], r[13], r[14], r[15]);
        char *tmp = km_asprintf("%s.tmp", path);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0640);
        int rv = 0;
        if (fd < 0 || write(fd, text, 36) != 36 || fsync(fd) != 0 ||
            rename(tmp, path) != 0) {
            rv = -errno;
        }
        if (fd >= 0) {
            close(fd);
        }
        free(tmp);
        if (rv != 0) {
            return rv;
        }
    }
    memcpy(kd->nodeid, text, sizeof(kd->nodeid) - 1);
    kd->nodeid[sizeof(kd->nodeid) - 1] = '\0';

    /* The spool ids' 48-bit node field comes from the node id. */
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)kd->nodeid, strlen(kd->nodeid), digest);
    km_idgen_init(&kd->idgen, digest);
    return 0;
}

static int
kumod_open_logs(struct kumod *kd, char *err, size_t errlen)
{
    size_t n = json_array_size(kd->log_configs);

    kd->logs = km_calloc(n ? n : 1, sizeof(*kd->logs));
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(kd->log_configs, i);
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
        int rv = kumod_mkdirs(cfg.log_dir);
        if (rv == 0) {
            rv = logrec_open(kd->loop, &cfg, &kd->logs[kd->n_logs]);
        }
        if (rv != 0) {
            snprintf(err, errlen, "log_dir %s: %s", cfg.log_dir,
                     km_strerror(rv));
            return rv;
        }
        kd->n_logs++;
    }
    return 0;
}

/* An orphan body (no Enqueue lists it) is removed only after this long:
 * its Enqueue may still be on its way from another node. */
#define KUMOD_ORPHAN_GRACE_MS (60u * 60u * 1000u)

struct kumod_recovery {
    struct kumod *kd;
    size_t count;
    size_t missing;
    size_t remote;   /* another node owns its shard */
    size_t fetching; /* owned here, body being fetched */
    int status;
    char err[512];
};

/* Rebuild one queued message from the spools and queue it. */
static bool
kumod_recover_one(void *arg, const struct cluster_msg *cm)
{
    struct kumod_recovery *rc = arg;
    struct kumod *kd = rc->kd;
    bool want_data = policy_has_handler(kd->policy, "spool_message_enumerated");
    struct buf meta = BUF_INIT, data = BUF_INIT;
    struct message *m = NULL;
    int rv;

    /* In a group, the shard's owner queues the message; a body it lacks
     * is fetched from the replicas. */
    if (kumod_body_in_group(kd)) {
        if (!cluster_owns(kd->cluster, cm->shard)) {
            rc->remote++;
            return true;
        }
        if (!kumod_body_has_local_body(kd, cm->id)) {
            kumod_body_fetch_start(kd, cm, 0);
            rc->fetching++;
            return true;
        }
    }
    rv = spool_get(kd->meta_spool, cm->id, &meta);
    if (rv == 0 && want_data) {
        rv = spool_get(kd->data_spool, cm->id, &data);
    }
    if (rv == 0) {
        rv = message_from_spool(cm->id, meta.data, meta.len, data.data,
                                data.len, &m);
    }
    buf_fini(&meta);
    buf_fini(&data);
    if (rv != 0) {
        /* A committed Enqueue always follows the synced spool write, so
         * this is damage on disk: say so loudly, keep going. */
        LOG_ERROR("kumod: recovery: message %s (queue %s): %s", cm->id,
                  cm->queue, km_strerror(rv));
        rc->missing++;
        return true;
    }
    /* The FSM is the truth for scheduling state. */
    message_set_size(m, (size_t)cm->size);
    message_set_num_attempts(m, cm->attempts);
    message_set_due_ms(m, cm->due_ms);
    if (want_data) {
        struct policy_arg parg = {.kind = POLICY_ARG_MESSAGE, .u.msg = m};
        struct policy_result res;
        memset(&res, 0, sizeof(res));
        rv = policy_call(kd->policy, "spool_message_enumerated", &parg, 1, &res,
                         rc->err, sizeof(rc->err));
        policy_result_fini(&res);
        if (rv != 0) {
            /* KumoMTA aborts start-up when this handler fails. */
            snprintf(rc->err, sizeof(rc->err),
                     "spool_message_enumerated failed for %s: %s", cm->id,
                     km_strerror(rv));
            rc->status = rv;
            message_unref(m);
            return false;
        }
        message_drop_data(m);
    }
    queue_insert(kd->queues, m, "Enumerated");
    message_unref(m);
    rc->count++;
    return true;
}

/* One node: a body no Enqueue lists is garbage at once. A group: only
 * after KUMOD_ORPHAN_GRACE_MS (the id carries its creation time), since
 * the accepting node may still be committing its Enqueue. */
static bool
kumod_orphan_expired(const struct kumod *kd, const char *id)
{
    int64_t t;

    if (!kumod_body_in_group(kd)) {
        return true;
    }
    t = km_id_time_ms(id);
    return t >= 0 && km_now_wall_ms() - t > (int64_t)KUMOD_ORPHAN_GRACE_MS;
}

struct kumod_orphans {
    struct kumod *kd;
    size_t count; /* removed */
    size_t held;  /* bodies in the spool, removed ones included */
};

static bool
kumod_find_orphan(void *arg, const char *key, size_t key_len, const char *value,
                  size_t value_len)
{
    struct kumod_orphans *o = arg;
    char id[KM_ID_HEX_LEN + 1];

    (void)value;
    (void)value_len;
    if (key_len != KM_ID_HEX_LEN) {
        return true;
    }
    memcpy(id, key, KM_ID_HEX_LEN);
    id[KM_ID_HEX_LEN] = '\0';
    o->held++;
    if (cluster_lookup(o->kd->cluster, id) == NULL &&
        kumod_orphan_expired(o->kd, id)) {
        (void)spool_delete(o->kd->data_spool, id, NULL, NULL);
        (void)spool_delete(o->kd->meta_spool, id, NULL, NULL);
        o->count++;
    }
    return true;
}

/* Raft has replayed its log: every message it lists is queued again. */
static void
kumod_on_cluster_ready(void *ctx)
{
    struct kumod *kd = ctx;
    struct kumod_recovery rc;
    struct kumod_orphans orphans = {kd, 0, 0};

    if (kd->state != KUMOD_STARTING) {
        return;
    }
    memset(&rc, 0, sizeof(rc));
    rc.kd = kd;
    /* Admin rules first: a bounce or a suspension applies to recovered
     * messages as they become due. */
    admin_load(kd);
    cluster_foreach(kd->cluster, kumod_recover_one, &rc);
    if (rc.status != 0) {
        LOG_ERROR("kumod: start-up aborted: %s", rc.err);
        kd->exit_status = 1;
        kumod_request_shutdown(kd);
        return;
    }
    /* With one node, a body without a committed Enqueue never got a 250:
     * the client was told to retry, so the copy is garbage. */
    (void)spool_foreach(kd->meta_spool, kumod_find_orphan, &orphans);
    if (orphans.count > 0) {
        LOG_INFO("kumod: removed %zu unaccepted message(s) left in the spool",
                 orphans.count);
    }
    LOG_INFO("kumod: the spool holds %zu message body(ies)",
             orphans.held - orphans.count);
    kd->recovered = rc.count;
    kd->state = KUMOD_RUNNING;
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
    admin_on_rule(ctx, r, cancelled);
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

/* mkdir -p `path`, then give it to uid/gid (when they are not ours). */
static int
kumod_prepare_dir(const char *path, uid_t uid, gid_t gid)
{
    int rv = kumod_mkdirs(path);

    if (rv == 0 && (uid != geteuid() || gid != getegid()) &&
        chown(path, uid, gid) != 0) {
        rv = -errno;
    }
    return rv;
}

int
kumod_prepare_dirs(struct kumod *kd, uid_t uid, gid_t gid, char *err,
                   size_t errlen)
{
    char *state_dir = kumod_state_dir(kd);
    const char *dirs[3] = {state_dir, kd->data_spool_path, kd->meta_spool_path};
    int rv = 0;

    for (size_t i = 0; i < 3 && rv == 0; i++) {
        rv = kumod_prepare_dir(dirs[i], uid, gid);
        if (rv != 0) {
            snprintf(err, errlen, "%s: %s", dirs[i], km_strerror(rv));
        }
    }
    for (size_t i = 0; i < json_array_size(kd->log_configs) && rv == 0; i++) {
        const char *dir = json_string_value(
            json_object_get(json_array_get(kd->log_configs, i), "log_dir"));
        rv = kumod_prepare_dir(dir, uid, gid);
        if (rv != 0) {
            snprintf(err, errlen, "%s: %s", dir, km_strerror(rv));
        }
    }
    free(state_dir);
    return rv;
}

/* CLUSTER.md §4.9: data_dir/cluster_id names the cluster the directory
 * belongs to. Written (and synced) on first start; a policy naming another
 * cluster is refused, so a node never mixes two clusters' state. */
static int
kumod_check_cluster_id(struct kumod *kd, const char *data_dir, char *err,
                       size_t errlen)
{
    char *path = km_asprintf("%s/cluster_id", data_dir);
    char text[256] = "";
    FILE *f = fopen(path, "r");
    int rv = 0;

    if (f != NULL) {
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
        text[n] = '\0';
        text[strcspn(text, "\r\n")] = '\0';
        if (strcmp(text, kd->cluster_id) != 0) {
            snprintf(err, errlen,
                     "cluster_id mismatch: %s belongs to cluster %s, the "
                     "policy says %s",
                     data_dir, text, kd->cluster_id);
            rv = KM_ECONFIG;
        }
        free(path);
        return rv;
    }
    if (errno != ENOENT) {
        rv = -errno;
        snprintf(err, errlen, "%s: %s", path, km_strerror(rv));
        free(path);
        return rv;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0640);
    if (fd < 0) {
        rv = -errno;
        goto err_after_path;
    }
    size_t len = strlen(kd->cluster_id);
    if (write(fd, kd->cluster_id, len) != (ssize_t)len ||
        write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
        rv = errno != 0 ? -errno : KM_EIO;
        close(fd);
        goto err_after_path;
    }
    close(fd);
    /* The new name must survive a crash too. */
    fd = open(data_dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(path);
    return 0;

err_after_path:
    snprintf(err, errlen, "%s: %s", path, km_strerror(rv));
    free(path);
    return rv;
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

int
kumod_start(struct kumod *kd, char *err, size_t errlen)
{
    char *state_dir = kumod_state_dir(kd);
    char *nodeid_path = km_asprintf("%s/nodeid", state_dir);
    int rv;

    kd->state = KUMOD_STARTING;
    kumod_policy_checksum(kd);
    rv = kumod_mkdirs(state_dir);
    if (rv == 0) {
        rv = kumod_load_nodeid(kd, nodeid_path);
    }
    free(nodeid_path);
    if (rv != 0) {
        snprintf(err, errlen, "%s: %s", state_dir, km_strerror(rv));
        free(state_dir);
        return rv;
    }
    rv = kumod_open_logs(kd, err, errlen);
    if (rv != 0) {
        free(state_dir);
        return rv;
    }
    queue_mgr_new(kd, &kd->queues);
    if ((rv = kumod_mkdirs(kd->data_spool_path)) != 0 ||
        (rv = spool_open(kd->loop, "data", kd->data_spool_path,
                         &kd->data_spool)) != 0 ||
        (rv = kumod_mkdirs(kd->meta_spool_path)) != 0 ||
        (rv = spool_open(kd->loop, "meta", kd->meta_spool_path,
                         &kd->meta_spool)) != 0) {
        snprintf(err, errlen, "cannot open the spool: %s", km_strerror(rv));
        free(state_dir);
        return rv;
    }
    kumod_disk_start(kd);

    rv = egress_mgr_new(kd, &kd->egress);
    if (rv != 0) {
        snprintf(err, errlen, "cannot start delivery (DNS resolver): %s",
                 km_strerror(rv));
        free(state_dir);
        return rv;
    }

    struct cluster_config cc;
    struct cluster_host ch;
    memset(&cc, 0, sizeof(cc));
    memset(&ch, 0, sizeof(ch));
    if (kd->cluster_node_id != 0) {
        const char *data_dir =
            kd->cluster_data_dir != NULL ? kd->cluster_data_dir : state_dir;
        rv = kumod_mkdirs(data_dir);
        if (rv != 0) {
            snprintf(err, errlen, "%s: %s", data_dir, km_strerror(rv));
        } else {
            rv = kumod_check_cluster_id(kd, data_dir, err, errlen);
        }
        if (rv != 0) {
            free(state_dir);
            return rv;
        }
        kd->raft_dir = km_asprintf("%s/raft", data_dir);
        cc.node_id = kd->cluster_node_id;
        cc.raft_addr = kd->raft_listen;
        cc.peers = kd->cluster_peers;
        cc.n_peers = kd->n_cluster_peers;
        /* A group listing only this node bootstraps it alone. */
        cc.bootstrap = kd->cluster_bootstrap || kd->n_cluster_peers == 1;
        cc.link_listen = kd->link_listen;
        cc.cluster_id = kd->cluster_id;
        cc.settings = kd->cluster_settings;
        cc.election_timeout_ms = kd->election_timeout_ms;
        cc.heartbeat_ms = kd->heartbeat_ms;
        cc.tls_ca = kd->cluster_tls_ca;
        cc.tls_cert = kd->cluster_tls_cert;
        cc.tls_key = kd->cluster_tls_key;
        cc.insecure_plaintext = kd->cluster_insecure_plaintext;
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
    LOG_INFO("kumod: node %s: spool %s and %s, raft in %s", kd->nodeid,
             kd->data_spool_path, kd->meta_spool_path, kd->raft_dir);
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
    for (size_t i = 0; i < kd->n_logs; i++) {
        kd->closing++;
        logrec_close(kd->logs[i], kumod_on_closed, kd);
        kd->logs[i] = NULL;
    }
    kd->n_logs = 0;
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
    kumod_disk_stop(kd);
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
    if (kd->inflight_ingests > 0) {
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
    admin_free_all(kd);
    metrics_free(kd->metrics);
    policy_free(kd->policy);
    free(kd->listeners);
    free(kd->http_listeners);
    free(kd->logs);
    json_decref(kd->log_configs);
    free(kd->data_spool_path);
    free(kd->meta_spool_path);
    free(kd->raft_dir);
    free(kd->cluster_id);
    free(kd->raft_listen);
    free(kd->cluster_data_dir);
    free(kd->link_listen);
    free(kd->cluster_tls_ca);
    free(kd->cluster_tls_cert);
    free(kd->cluster_tls_key);
    for (size_t i = 0; i < kd->n_cluster_peers; i++) {
        free((char *)(uintptr_t)kd->cluster_peers[i].raft_addr);
        free((char *)(uintptr_t)kd->cluster_peers[i].link_url);
    }
    free(kd->cluster_peers);
    for (size_t i = 0; i < kd->n_dns_servers; i++) {
        free(kd->dns_servers[i]);
    }
    free(kd->dns_servers);
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
    if (kd->data_spool_path == NULL) {
        return;
    }
    if (uv_fs_statfs(NULL, &req, kd->data_spool_path, NULL) == 0) {
        const uv_statfs_t *st = req.ptr;
        out->free_bytes = (uint64_t)st->f_bavail * st->f_bsize;
    }
    uv_fs_req_cleanup(&req);
}
