/* cluster_guard.c - the raft_guard file (CLUSTER.md §4.9): the highest
 * Raft term this node has seen, kept beside raft/ (data_dir/raft_guard)
 * and fsynced whenever the term grows. Raft state older than the guard
 * means raft/ was restored from a backup: such a node could vote twice in
 * a term or forget entries it acknowledged, so kumod refuses to start and
 * tells the operator to wipe and rejoin. A wiped raft/ (no state at all)
 * is a new member and resets the guard. Loop thread only; the write is
 * small and rare (once per term). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/km.h"
#include "base/log.h"
#include "cluster_core.h"

/* data_dir/raft_guard for raft_dir data_dir/raft. The caller owns it. */
static char *
cluster_guard_path(const struct cluster *c)
{
    const char *slash = strrchr(c->raft_dir, '/');

    if (slash == NULL) {
        return km_strdup("raft_guard");
    }
    return km_asprintf("%.*s/raft_guard", (int)(slash - c->raft_dir),
                       c->raft_dir);
}

/* The guard's term, 0 if there is none. */
static int
cluster_guard_read(const char *path, uint64_t *term)
{
    char text[64];
    FILE *f = fopen(path, "r");

    *term = 0;
    if (f == NULL) {
        return errno == ENOENT ? 0 : -errno;
    }
    if (fgets(text, sizeof(text), f) == NULL ||
        sscanf(text, "%" SCNu64, term) != 1) {
        fclose(f);
        return KM_ECORRUPT;
    }
    fclose(f);
    return 0;
}

static int
cluster_guard_write(const char *path, uint64_t term)
{
    char *tmp = km_asprintf("%s.tmp", path);
    char text[32];
    int len = snprintf(text, sizeof(text), "%" PRIu64 "\n", term);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rv = 0;

    if (fd < 0) {
        rv = -errno;
        goto out;
    }
    if (write(fd, text, (size_t)len) != len || fsync(fd) != 0) {
        rv = KM_EIO;
    }
    close(fd);
    if (rv == 0 && rename(tmp, path) != 0) {
        rv = -errno;
    }
out:
    free(tmp);
    return rv;
}

int
cluster_guard_open(struct cluster *c)
{
    char *path = cluster_guard_path(c);
    uint64_t guard = 0;
    uint64_t term = c->raft.current_term;
    int rv = cluster_guard_read(path, &guard);

    if (rv != 0) {
        LOG_ERROR("cluster: %s: %s", path, km_strerror(rv));
        goto out;
    }
    if (c->fresh_raft) {
        term = 0; /* a new history: whatever the guard says is void */
    }
    if (term != 0 && term < guard) {
        LOG_ERROR("cluster: stale raft state: %s is at term %" PRIu64
                  " but this node has seen term %" PRIu64
                  " (%s): raft/ was restored from an older copy. Wipe "
                  "%s and rejoin the cluster as a new member",
                  c->raft_dir, term, guard, path, c->raft_dir);
        rv = KM_ECORRUPT;
        goto out;
    }
    c->guard_term = guard;
    term = c->raft.current_term;
    if (term != guard) {
        /* A wiped raft/ (term 0) starts a new history: reset. */
        rv = cluster_guard_write(path, term);
        if (rv == 0) {
            c->guard_term = term;
        }
    }
out:
    free(path);
    return rv;
}

void
cluster_guard_check(struct cluster *c)
{
    uint64_t term = c->raft.current_term;
    char *path;

    if (term <= c->guard_term) {
        return;
    }
    path = cluster_guard_path(c);
    int rv = cluster_guard_write(path, term);
    if (rv != 0) {
        LOG_ERROR("cluster: %s: %s", path, km_strerror(rv));
        cluster_raft_fatal(c, rv);
    } else {
        c->guard_term = term;
    }
    free(path);
}
