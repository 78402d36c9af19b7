/* cluster_guard.c - the raft_guard file (CLUSTER.md §4.9): the highest
 * Raft term this node has seen and the highest index it has applied, kept
 * beside raft/ (data_dir/raft_guard), fsynced when the term grows and at
 * most once a second when the applied index grows. Raft state older than
 * the guard (a lower term, or a log that ends before an index this node
 * applied: committed entries never leave a node's log or snapshot) means
 * raft/ was restored from a copy: such a node could vote twice in a term
 * or forget entries it acknowledged, so kumod refuses to start and tells
 * the operator to wipe and rejoin. A freshly bootstrapped raft/ is a new
 * history and resets the guard. Loop thread only. */
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

/* Write a grown applied index at most this often. */
#define CLUSTER_GUARD_PERIOD_MS 1000

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

/* The guard's term and applied index, 0 if there is none. */
static int
cluster_guard_read(const char *path, uint64_t *term, uint64_t *applied)
{
    char text[96];
    FILE *f = fopen(path, "r");

    *term = 0;
    *applied = 0;
    if (f == NULL) {
        return errno == ENOENT ? 0 : -errno;
    }
    if (fgets(text, sizeof(text), f) == NULL ||
        sscanf(text, "%" SCNu64 " %" SCNu64, term, applied) < 1) {
        fclose(f);
        return KM_ECORRUPT;
    }
    fclose(f);
    return 0;
}

static int
cluster_guard_write(const char *path, uint64_t term, uint64_t applied)
{
    char *tmp = km_asprintf("%s.tmp", path);
    char text[64];
    int len = snprintf(text, sizeof(text), "%" PRIu64 " %" PRIu64 "\n", term,
                       applied);
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
    uint64_t g_term = 0, g_applied = 0;
    uint64_t term = c->raft.current_term;
    uint64_t last = raft_last_index(&c->raft);
    int rv = cluster_guard_read(path, &g_term, &g_applied);

    if (rv != 0) {
        LOG_ERROR("cluster: %s: %s", path, km_strerror(rv));
        goto out;
    }
    if (!c->fresh_raft && (term < g_term || last < g_applied)) {
        LOG_ERROR("cluster: stale raft state: %s is at term %" PRIu64
                  ", log up to index %" PRIu64 ", but this node has seen "
                  "term %" PRIu64 " and applied index %" PRIu64
                  " (%s): raft/ was restored from an older copy. Wipe %s "
                  "and rejoin the cluster as a new member",
                  c->raft_dir, term, last, g_term, g_applied, path,
                  c->raft_dir);
        rv = KM_ECORRUPT;
        goto out;
    }
    /* A fresh raft/ starts a new history: the old guard is void. */
    c->guard_term = c->fresh_raft ? 0 : g_term;
    c->guard_applied = c->fresh_raft ? 0 : g_applied;
    if (term != c->guard_term || c->fresh_raft) {
        rv = cluster_guard_write(path, term, c->guard_applied);
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
    uint64_t applied = raft_last_applied(&c->raft);
    uint64_t now;
    char *path;

    if (term <= c->guard_term) {
        if (applied <= c->guard_applied) {
            return;
        }
        now = km_now_mono_ms();
        if (now < c->guard_next_ms) {
            return;
        }
        c->guard_next_ms = now + CLUSTER_GUARD_PERIOD_MS;
    }
    path = cluster_guard_path(c);
    int rv = cluster_guard_write(path, term, applied);
    if (rv != 0) {
        LOG_ERROR("cluster: %s: %s", path, km_strerror(rv));
        cluster_raft_fatal(c, rv);
    } else {
        c->guard_term = term;
        c->guard_applied = applied;
    }
    free(path);
}
