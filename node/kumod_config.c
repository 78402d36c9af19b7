/* kumod_config.c - releasing what init configured for the daemon (see
 * kumod_config.h). The cluster peers' addresses are owned although
 * struct cluster_peer declares them const (it is cluster.h's borrowed
 * view). */
#include "kumod_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void
kumod_config_fini(struct kumod_config *cfg)
{
    json_decref(cfg->log_configs);
    free(cfg->data_spool_path);
    free(cfg->meta_spool_path);
    free(cfg->cluster_id);
    free(cfg->raft_listen);
    free(cfg->cluster_data_dir);
    free(cfg->link_listen);
    free(cfg->cluster_tls_ca);
    free(cfg->cluster_tls_cert);
    free(cfg->cluster_tls_key);
    for (size_t i = 0; i < cfg->n_cluster_peers; i++) {
        free((char *)(uintptr_t)cfg->cluster_peers[i].raft_addr);
        free((char *)(uintptr_t)cfg->cluster_peers[i].link_url);
    }
    free(cfg->cluster_peers);
    for (size_t i = 0; i < cfg->n_dns_servers; i++) {
        free(cfg->dns_servers[i]);
    }
    free(cfg->dns_servers);
    memset(cfg, 0, sizeof(*cfg));
}
