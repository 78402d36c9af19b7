/* kumod_dirs.h - the node's state directory and its small files (the node
 * id, the cluster id), for the wiring (kumod.c) only. Start-up only,
 * before the loop runs. */
#ifndef KUMO_KUMOD_DIRS_H
#define KUMO_KUMOD_DIRS_H
#include <stddef.h>

struct kumod;

/* mkdir -p with mode 0750. 0 or -errno. */
int kumod_dirs_mkdirs(const char *path);
/* The directory holding the meta spool: home of nodeid and raft/. The
 * caller owns the result (free). */
char *kumod_dirs_state(const struct kumod *kd);
/* Read the node's UUID from `path` into kd->nodeid, or make and persist a
 * new one durably; then seed kd->idgen from it. 0 or an error with the
 * path and the reason in err. */
int kumod_dirs_load_nodeid(struct kumod *kd, const char *path, char *err,
                           size_t errlen);
/* CLUSTER.md §4.9: data_dir/cluster_id names the cluster the directory
 * belongs to. Written durably on first start; a policy naming another
 * cluster is refused (KM_ECONFIG), so a node never mixes two clusters'
 * state. */
int kumod_dirs_check_cluster_id(const char *data_dir, const char *cluster_id,
                                char *err, size_t errlen);
#endif /* KUMO_KUMOD_DIRS_H */
