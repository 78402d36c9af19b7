/* kumod_config.h - what the policy's init configured for the daemon
 * itself (spools, cluster, logs, resolver, free-space mark): a value that
 * node/policy_glue.c writes while init runs and kumod_start() reads. The
 * listeners' own settings live with them (smtp_server, http_api). For the
 * wiring (kumod*.c, policy_glue.c) only. Strings and arrays are owned and
 * freed by kumod_config_fini(). */
#ifndef KUMO_KUMOD_CONFIG_H
#define KUMO_KUMOD_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cluster.h"
#include "disk_guard.h"

struct kumod_config {
    /* From kumo.define_spool{} (both required). */
    char *data_spool_path;
    char *meta_spool_path;
    struct disk_mark disk_mark; /* the data spool's min_free_space */

    /* kumo.configure_cluster{}; cluster_node_id 0: not called, the node
     * is a one-voter group. Peers' addresses are owned (char *). */
    uint64_t cluster_node_id;
    char *cluster_id;
    char *raft_listen;
    char *cluster_data_dir; /* NULL: the state dir beside the meta spool */
    struct cluster_peer *cluster_peers; /* this node included */
    size_t n_cluster_peers;
    bool cluster_bootstrap;
    char *link_listen; /* NULL: no node traffic (one node) */
    char *cluster_tls_ca, *cluster_tls_cert, *cluster_tls_key; /* or NULL */
    bool cluster_insecure_plaintext;
    struct cluster_settings cluster_settings;   /* configure_cluster.settings */
    uint32_t election_timeout_ms, heartbeat_ms; /* 0: defaults */

    json_t *log_configs; /* configure_local_logs params, opened later */

    /* kumo.dns.configure_resolver{} name servers ("ip:port"). */
    char **dns_servers;
    size_t n_dns_servers;
    uint32_t dns_timeout_ms; /* options.timeout; 0 = the resolver's */
    uint32_t dns_attempts;   /* options.attempts; 0 = the resolver's */
};

/* Free what the configuration owns; it is empty again. */
void kumod_config_fini(struct kumod_config *cfg);
#endif /* KUMO_KUMOD_CONFIG_H */
