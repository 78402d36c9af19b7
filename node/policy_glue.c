/* policy_glue.c - what the policy's configuration calls do in the daemon.
 * Listeners are bound at once (before privileges are dropped, unless
 * --validate); spools, logs and DNS settings are recorded and opened by
 * kumod_start() after the drop. Loop thread only. */
#include "policy_glue.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/km.h"
#include "base/log.h"
#include "cluster.h"
#include "dns.h"
#include "http_api.h"
#include "kumod.h"
#include "smtp_server.h"

static int
policy_glue_listener(struct kumod *kd, json_t *params, char *err, size_t errlen)
{
    struct smtp_server *srv;
    int rv;

    if (kd->validate_only) {
        /* --validate binds nothing; the parameters were checked by the
         * policy's schema, and values are checked again at start. */
        return smtp_server_check_params(params, err, errlen);
    }
    struct smtp_server_deps d = {
        .loop = kd->loop,
        .policy = kd->policy,
        .logs = &kd->logs,
        .ids = &kd->idgen,
        .ingest = kd->ingest,
        .metrics = kd->metrics,
    };
    rv = smtp_server_open(&d, params, &srv, err, errlen);
    if (rv != 0) {
        return rv;
    }
    kd->listeners = km_realloc(kd->listeners,
                               (kd->n_listeners + 1) * sizeof(*kd->listeners));
    kd->listeners[kd->n_listeners++] = srv;
    return 0;
}

static int
policy_glue_spool(struct kumod *kd, json_t *params, char *err, size_t errlen)
{
    const char *name = json_string_value(json_object_get(params, "name"));
    const char *path = json_string_value(json_object_get(params, "path"));
    const char *kind = json_string_value(json_object_get(params, "kind"));
    char **slot;

    if (name == NULL || path == NULL || path[0] == '\0') {
        snprintf(err, errlen, "name and path are required");
        return KM_ECONFIG;
    }
    if (strcmp(name, "data") == 0) {
        slot = &kd->cfg.data_spool_path;
    } else if (strcmp(name, "meta") == 0) {
        slot = &kd->cfg.meta_spool_path;
    } else {
        snprintf(err, errlen,
                 "spool '%s': kumod uses exactly two spools, named 'data' "
                 "and 'meta'",
                 name);
        return KM_ECONFIG;
    }
    if (*slot != NULL) {
        snprintf(err, errlen, "spool '%s' is already defined", name);
        return KM_ECONFIG;
    }
    if (kind != NULL && strcmp(kind, "LocalDisk") == 0) {
        LOG_WARN("policy: spool '%s': kind 'LocalDisk' is stored in RocksDB "
                 "by kumod",
                 name);
    }
    const char *mfs =
        json_string_value(json_object_get(params, "min_free_space"));
    if (mfs != NULL && strcmp(name, "data") == 0) {
        int rv = disk_guard_parse_mark(mfs, &kd->cfg.disk_mark, err, errlen);
        if (rv != 0) {
            return rv;
        }
    }
    *slot = km_strdup(path);
    return 0;
}

static int
policy_glue_logs(struct kumod *kd, json_t *params, char *err, size_t errlen)
{
    const char *dir = json_string_value(json_object_get(params, "log_dir"));

    if (dir == NULL || dir[0] == '\0') {
        snprintf(err, errlen, "log_dir is required");
        return KM_ECONFIG;
    }
    json_array_append(kd->cfg.log_configs, params);
    return 0;
}

static int
policy_glue_resolver(struct kumod *kd, json_t *params, char *err, size_t errlen)
{
    json_t *servers = json_object_get(params, "name_servers");
    size_t i;
    json_t *v;

    if (json_array_size(servers) == 0) {
        snprintf(err, errlen, "name_servers must list at least one server");
        return KM_ECONFIG;
    }
    for (i = 0; i < kd->cfg.n_dns_servers; i++) {
        free(kd->cfg.dns_servers[i]);
    }
    free(kd->cfg.dns_servers);
    kd->cfg.n_dns_servers = 0;
    kd->cfg.dns_servers = km_calloc(json_array_size(servers), sizeof(char *));
    json_array_foreach(servers, i, v)
    {
        kd->cfg.dns_servers[kd->cfg.n_dns_servers++] =
            km_strdup(json_string_value(v));
    }
    size_t bad = 0;
    if (dns_check_servers((const char *const *)kd->cfg.dns_servers,
                          kd->cfg.n_dns_servers, &bad) != 0) {
        snprintf(err, errlen, "name_servers[%zu]: '%s' is not ip[:port]",
                 bad + 1, kd->cfg.dns_servers[bad]);
        return KM_ECONFIG;
    }
    json_t *opts = json_object_get(params, "options");
    json_t *t = json_object_get(opts, "timeout");
    json_t *a = json_object_get(opts, "attempts");
    if (json_is_integer(t)) {
        kd->cfg.dns_timeout_ms = (uint32_t)json_integer_value(t);
    }
    if (json_is_integer(a)) {
        kd->cfg.dns_attempts = (uint32_t)json_integer_value(a);
    }
    return 0;
}

static int
policy_glue_http(struct kumod *kd, json_t *params, char *err, size_t errlen)
{
    struct http_api *h;
    int rv;

    if (kd->validate_only) {
        return http_api_check_params(params, err, errlen);
    }
    struct http_api_deps d = {
        .loop = kd->loop,
        .policy = kd->policy,
        .metrics = kd->metrics,
        .ids = &kd->idgen,
        .ingest = kd->ingest,
    };
    rv = http_api_open(&d, params, &h, err, errlen);
    if (rv != 0) {
        return rv;
    }
    kd->http_listeners =
        km_realloc(kd->http_listeners,
                   (kd->n_http_listeners + 1) * sizeof(*kd->http_listeners));
    kd->http_listeners[kd->n_http_listeners++] = h;
    return 0;
}

/* "a.b.c.d:port": an IPv4 literal and a port 1-65535 (CLUSTER.md §1.1). */
static bool
policy_glue_is_ipv4_port(const char *s)
{
    unsigned a, b, c, d, port;
    char tail;

    if (s == NULL ||
        sscanf(s, "%3u.%3u.%3u.%3u:%5u%c", &a, &b, &c, &d, &port, &tail) != 5) {
        return false;
    }
    return a < 256 && b < 256 && c < 256 && d < 256 && port >= 1 &&
           port <= 65535 && strspn(s, "0123456789.:") == strlen(s);
}

static void
policy_glue_add_peer(struct kumod *kd, uint64_t id, const char *raft,
                     const char *link)
{
    kd->cfg.cluster_peers =
        km_realloc(kd->cfg.cluster_peers, (kd->cfg.n_cluster_peers + 1) *
                                              sizeof(*kd->cfg.cluster_peers));
    kd->cfg.cluster_peers[kd->cfg.n_cluster_peers].id = id;
    kd->cfg.cluster_peers[kd->cfg.n_cluster_peers].raft_addr = km_strdup(raft);
    kd->cfg.cluster_peers[kd->cfg.n_cluster_peers].link_url =
        link != NULL ? km_strdup(link) : NULL;
    kd->cfg.n_cluster_peers++;
}

/* A link URL NNG can dial or listen on: tcp://a.b.c.d:port. */
static bool
policy_glue_is_link_url(const char *s)
{
    return s != NULL && strncmp(s, "tcp://", 6) == 0 &&
           policy_glue_is_ipv4_port(s + 6);
}

/* Read configure_cluster.settings (cluster-scoped, CLUSTER.md §4.11). */
static int
policy_glue_cluster_settings(struct kumod *kd, json_t *st, char *err,
                             size_t errlen)
{
    static const struct {
        const char *name;
        size_t off;
        json_int_t min, max;
    } fields[] = {
        {"replication_factor",
         offsetof(struct cluster_settings, replication_factor), 1, 8},
        {"min_replicas", offsetof(struct cluster_settings, min_replicas), 1, 8},
        {"shards", offsetof(struct cluster_settings, shards), 1, 4096},
        {"ping_interval", offsetof(struct cluster_settings, ping_ms), 50,
         60000},
        {"self_fence_after",
         offsetof(struct cluster_settings, self_fence_after_ms), 200, 600000},
        {"node_down_after",
         offsetof(struct cluster_settings, node_down_after_ms), 500, 3600000},
        {"failover_grace", offsetof(struct cluster_settings, failover_grace_ms),
         0, 86400000},
        {"accept_timeout", offsetof(struct cluster_settings, accept_timeout_ms),
         1000, 600000},
        {"rebalance_after",
         offsetof(struct cluster_settings, rebalance_after_ms), 0, 86400000},
    };
    struct cluster_settings *cs = &kd->cfg.cluster_settings;

    if (st == NULL) {
        return 0;
    }
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        json_t *v = json_object_get(st, fields[i].name);
        if (v == NULL) {
            continue;
        }
        json_int_t n = json_integer_value(v);
        if (!json_is_integer(v) || n < fields[i].min || n > fields[i].max) {
            snprintf(err, errlen, "settings.%s: out of range", fields[i].name);
            return KM_ECONFIG;
        }
        *(uint32_t *)(void *)((char *)cs + fields[i].off) = (uint32_t)n;
        if (fields[i].min == 0 && n == 0) {
            /* 0 means "the default" in cluster_settings: keep a 0 grace
             * or rebalance as 1 ms. */
            *(uint32_t *)(void *)((char *)cs + fields[i].off) = 1;
        }
    }
    if (cs->min_replicas != 0 && cs->replication_factor != 0 &&
        cs->min_replicas > cs->replication_factor) {
        snprintf(err, errlen,
                 "settings.min_replicas (%u) exceeds replication_factor (%u)",
                 cs->min_replicas, cs->replication_factor);
        return KM_ECONFIG;
    }
    if (cs->self_fence_after_ms != 0 && cs->node_down_after_ms != 0 &&
        cs->node_down_after_ms <= cs->self_fence_after_ms) {
        snprintf(err, errlen,
                 "settings.node_down_after must exceed self_fence_after "
                 "(CLUSTER.md §4.6: a node must fence itself before its "
                 "shards move)");
        return KM_ECONFIG;
    }
    return 0;
}

/* Check one peers[] entry against those before it and this node. */
static int
policy_glue_check_peer(struct kumod *kd, size_t i, json_int_t id,
                       const char *raft, char *err, size_t errlen)
{
    if (id < 1) {
        snprintf(err, errlen, "peers[%zu].id must be >= 1", i + 1);
        return KM_ECONFIG;
    }
    if (!policy_glue_is_ipv4_port(raft)) {
        snprintf(err, errlen,
                 "peers[%zu].raft: '%s' is not an IPv4 literal with a port "
                 "(a.b.c.d:port)",
                 i + 1, raft != NULL ? raft : "");
        return KM_ECONFIG;
    }
    for (size_t k = 0; k < kd->cfg.n_cluster_peers; k++) {
        if (kd->cfg.cluster_peers[k].id == (uint64_t)id) {
            snprintf(err, errlen, "peers[%zu].id: %lld is listed twice", i + 1,
                     (long long)id);
            return KM_ECONFIG;
        }
        if (strcmp(kd->cfg.cluster_peers[k].raft_addr, raft) == 0) {
            snprintf(err, errlen, "peers[%zu].raft: %s is listed twice", i + 1,
                     raft);
            return KM_ECONFIG;
        }
    }
    if ((uint64_t)id == kd->cfg.cluster_node_id &&
        strcmp(raft, kd->cfg.raft_listen) != 0) {
        snprintf(err, errlen,
                 "peers[%zu].raft: node %lld is this node, but raft_listen "
                 "is %s",
                 i + 1, (long long)id, kd->cfg.raft_listen);
        return KM_ECONFIG;
    }
    return 0;
}

/* configure_cluster.tls = { ca, cert, key } and insecure_plaintext: the
 * files must be readable now (cluster_open parses them and names the one
 * that is bad). */
static int
policy_glue_cluster_tls(struct kumod *kd, json_t *params, char *err,
                        size_t errlen)
{
    static const char *const keys[] = {"ca", "cert", "key"};
    json_t *tls = json_object_get(params, "tls");
    json_t *insecure = json_object_get(params, "insecure_plaintext");
    char **dst[] = {&kd->cfg.cluster_tls_ca, &kd->cfg.cluster_tls_cert,
                    &kd->cfg.cluster_tls_key};
    const char *k;
    json_t *v;

    if (insecure != NULL && !json_is_boolean(insecure)) {
        snprintf(err, errlen, "insecure_plaintext must be true or false");
        return KM_ECONFIG;
    }
    kd->cfg.cluster_insecure_plaintext = json_is_true(insecure);
    if (tls == NULL) {
        return 0;
    }
    if (!json_is_object(tls)) {
        snprintf(err, errlen, "tls must be a table { ca = , cert = , key = }");
        return KM_ECONFIG;
    }
    json_object_foreach(tls, k, v)
    {
        if (strcmp(k, "ca") != 0 && strcmp(k, "cert") != 0 &&
            strcmp(k, "key") != 0) {
            snprintf(err, errlen, "tls.%s: unknown key (ca, cert, key)", k);
            return KM_ECONFIG;
        }
    }
    for (size_t i = 0; i < 3; i++) {
        const char *path = json_string_value(json_object_get(tls, keys[i]));
        if (path == NULL || path[0] == '\0') {
            snprintf(err, errlen, "tls.%s is required (a PEM file)", keys[i]);
            return KM_ECONFIG;
        }
        if (access(path, R_OK) != 0) {
            snprintf(err, errlen, "tls.%s: %s: %s", keys[i], path,
                     strerror(errno));
            return KM_ECONFIG;
        }
        *dst[i] = km_strdup(path);
    }
    if (kd->cfg.cluster_insecure_plaintext) {
        snprintf(err, errlen, "insecure_plaintext = true contradicts tls");
        return KM_ECONFIG;
    }
    return 0;
}

/* Secure by default (issue 16): a group whose raft or link addresses are
 * not all on loopback needs tls, or an explicit insecure_plaintext. */
static int
policy_glue_cluster_secure(struct kumod *kd, char *err, size_t errlen)
{
    const char *exposed = NULL;

    if (kd->cfg.cluster_tls_ca != NULL || kd->cfg.cluster_insecure_plaintext ||
        kd->cfg.n_cluster_peers < 2) {
        return 0;
    }
    for (size_t i = 0; i < kd->cfg.n_cluster_peers && exposed == NULL; i++) {
        const char *raft = kd->cfg.cluster_peers[i].raft_addr;
        const char *link = kd->cfg.cluster_peers[i].link_url;
        if (strncmp(raft, "127.", 4) != 0) {
            exposed = raft;
        } else if (link != NULL && strncmp(link, "tcp://127.", 10) != 0) {
            exposed = link;
        }
    }
    if (exposed == NULL) {
        return 0;
    }
    snprintf(err, errlen,
             "tls: required for a cluster whose nodes are not all on "
             "loopback (%s): set tls = { ca = , cert = , key = }, or "
             "insecure_plaintext = true to run without authentication",
             exposed);
    return KM_ECONFIG;
}

static int
policy_glue_cluster(struct kumod *kd, json_t *params, char *err, size_t errlen)
{
    json_t *jid = json_object_get(params, "node_id");
    const char *cid = json_string_value(json_object_get(params, "cluster_id"));
    const char *listen =
        json_string_value(json_object_get(params, "raft_listen"));
    const char *dir = json_string_value(json_object_get(params, "data_dir"));
    json_t *peers = json_object_get(params, "peers");
    const char *link_listen =
        json_string_value(json_object_get(params, "link_listen"));
    bool self_listed = false;
    size_t i;
    json_t *p;
    int rv;

    if (kd->cfg.cluster_node_id != 0) {
        snprintf(err, errlen, "configure_cluster may be called only once");
        return KM_ECONFIG;
    }
    if (!json_is_integer(jid) || json_integer_value(jid) < 1) {
        snprintf(err, errlen, "node_id is required and must be >= 1");
        return KM_ECONFIG;
    }
    if (cid == NULL || cid[0] == '\0') {
        snprintf(err, errlen, "cluster_id is required (a non-empty string)");
        return KM_ECONFIG;
    }
    if (!policy_glue_is_ipv4_port(listen)) {
        snprintf(err, errlen,
                 "raft_listen: '%s' is not an IPv4 literal with a port "
                 "(a.b.c.d:port)",
                 listen != NULL ? listen : "");
        return KM_ECONFIG;
    }
    if (dir != NULL && dir[0] == '\0') {
        snprintf(err, errlen, "data_dir must not be empty");
        return KM_ECONFIG;
    }
    kd->cfg.cluster_node_id = (uint64_t)json_integer_value(jid);
    kd->cfg.cluster_id = km_strdup(cid);
    kd->cfg.raft_listen = km_strdup(listen);
    kd->cfg.cluster_data_dir = dir != NULL ? km_strdup(dir) : NULL;
    kd->cfg.cluster_bootstrap =
        json_is_true(json_object_get(params, "bootstrap"));
    rv = policy_glue_cluster_tls(kd, params, err, errlen);
    if (rv != 0) {
        return rv;
    }
    if (link_listen != NULL && !policy_glue_is_link_url(link_listen)) {
        snprintf(err, errlen,
                 "link_listen: '%s' is not tcp://a.b.c.d:port (an IPv4 "
                 "literal with a port)",
                 link_listen);
        return KM_ECONFIG;
    }
    kd->cfg.link_listen = link_listen != NULL ? km_strdup(link_listen) : NULL;
    rv = policy_glue_cluster_settings(kd, json_object_get(params, "settings"),
                                      err, errlen);
    if (rv != 0) {
        return rv;
    }
    kd->cfg.election_timeout_ms = (uint32_t)json_integer_value(
        json_object_get(params, "election_timeout"));
    kd->cfg.heartbeat_ms =
        (uint32_t)json_integer_value(json_object_get(params, "heartbeat"));
    json_array_foreach(peers, i, p)
    {
        json_t *pid = json_object_get(p, "id");
        const char *raft = json_string_value(json_object_get(p, "raft"));
        const char *link = json_string_value(json_object_get(p, "link"));
        json_int_t id = json_integer_value(pid);

        rv = policy_glue_check_peer(kd, i, id, raft, err, errlen);
        if (rv != 0) {
            return rv;
        }
        if (link != NULL && !policy_glue_is_link_url(link)) {
            snprintf(err, errlen,
                     "peers[%zu].link: '%s' is not tcp://a.b.c.d:port", i + 1,
                     link);
            return KM_ECONFIG;
        }
        if (link_listen != NULL && link == NULL &&
            (uint64_t)id != kd->cfg.cluster_node_id) {
            snprintf(err, errlen,
                     "peers[%zu].link is required with link_listen (how "
                     "this node reaches node %lld)",
                     i + 1, (long long)id);
            return KM_ECONFIG;
        }
        policy_glue_add_peer(kd, (uint64_t)id, raft, link);
        self_listed |= (uint64_t)id == kd->cfg.cluster_node_id;
    }
    if (!self_listed) {
        for (size_t k = 0; k < kd->cfg.n_cluster_peers; k++) {
            if (strcmp(kd->cfg.cluster_peers[k].raft_addr, listen) == 0) {
                snprintf(err, errlen, "raft_listen: %s is peer %llu's address",
                         listen,
                         (unsigned long long)kd->cfg.cluster_peers[k].id);
                return KM_ECONFIG;
            }
        }
        /* This node is an initial voter even if peers leaves it out. */
        policy_glue_add_peer(kd, kd->cfg.cluster_node_id, listen, link_listen);
    }
    return policy_glue_cluster_secure(kd, err, errlen);
}

int
policy_glue_config(void *ctx, const char *fn, json_t *params, char *err,
                   size_t errlen)
{
    struct kumod *kd = ctx;

    if (strcmp(fn, "start_http_listener") == 0) {
        return policy_glue_http(kd, params, err, errlen);
    }
    if (strcmp(fn, "start_esmtp_listener") == 0) {
        return policy_glue_listener(kd, params, err, errlen);
    }
    if (strcmp(fn, "define_spool") == 0) {
        return policy_glue_spool(kd, params, err, errlen);
    }
    if (strcmp(fn, "configure_local_logs") == 0) {
        return policy_glue_logs(kd, params, err, errlen);
    }
    if (strcmp(fn, "dns.configure_resolver") == 0) {
        return policy_glue_resolver(kd, params, err, errlen);
    }
    if (strcmp(fn, "configure_cluster") == 0) {
        return policy_glue_cluster(kd, params, err, errlen);
    }
    snprintf(err, errlen, "not supported by this version of kumod");
    return KM_ECONFIG;
}
