/* kumod_dirs.c - the node's state directory, its node id and cluster id
 * files, and the directories made before privileges are dropped. The files
 * are written with km_file_write_durable(), so a crash or a full disk never
 * leaves a truncated id that a restart would quietly replace. Start-up
 * only, loop not running. */
#include "kumod_dirs.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "base/km.h"
#include "base/km_file.h"
#include "kumod.h"

#define KUMOD_DIRS_MODE 0750
#define KUMOD_UUID_LEN  36

int
kumod_dirs_mkdirs(const char *path)
{
    return km_file_mkdirs(path, KUMOD_DIRS_MODE);
}

char *
kumod_dirs_state(const struct kumod *kd)
{
    char *copy = km_strdup(kd->cfg.meta_spool_path);
    char *dir = km_strdup(dirname(copy));

    free(copy);
    return dir;
}

static int
kumod_dirs_new_uuid(char out[KUMOD_UUID_LEN + 1])
{
    uint8_t r[16];

    if (RAND_bytes(r, sizeof(r)) != 1) {
        return KM_EIO;
    }
    r[6] = (uint8_t)((r[6] & 0x0f) | 0x40); /* version 4 */
    r[8] = (uint8_t)((r[8] & 0x3f) | 0x80);
    snprintf(out, KUMOD_UUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
             r[11], r[12], r[13], r[14], r[15]);
    return 0;
}

int
kumod_dirs_load_nodeid(struct kumod *kd, const char *path, char *err,
                       size_t errlen)
{
    char text[64] = "";
    int rv = km_file_read_line(path, text, sizeof(text));

    if (rv != 0 && rv != KM_ENOENT) {
        snprintf(err, errlen, "%s: %s", path, km_strerror(rv));
        return rv;
    }
    if (strlen(text) != KUMOD_UUID_LEN) {
        rv = kumod_dirs_new_uuid(text);
        if (rv == 0) {
            rv = km_file_write_durable(path, text, KUMOD_UUID_LEN, err, errlen);
        } else {
            snprintf(err, errlen, "%s: no random bytes for a node id", path);
        }
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

int
kumod_dirs_check_cluster_id(const char *data_dir, const char *cluster_id,
                            char *err, size_t errlen)
{
    char *path = km_asprintf("%s/cluster_id", data_dir);
    char text[256] = "";
    int rv = km_file_read_line(path, text, sizeof(text));

    if (rv == 0) {
        if (strcmp(text, cluster_id) != 0) {
            snprintf(err, errlen,
                     "cluster_id mismatch: %s belongs to cluster %s, the "
                     "policy says %s",
                     data_dir, text, cluster_id);
            rv = KM_ECONFIG;
        }
    } else if (rv != KM_ENOENT) {
        snprintf(err, errlen, "%s: %s", path, km_strerror(rv));
    } else {
        char *line = km_asprintf("%s\n", cluster_id);
        rv = km_file_write_durable(path, line, strlen(line), err, errlen);
        free(line);
    }
    free(path);
    return rv;
}

/* mkdir -p `path`, then give it to uid/gid (when they are not ours). */
static int
kumod_dirs_prepare(const char *path, uid_t uid, gid_t gid)
{
    int rv = kumod_dirs_mkdirs(path);

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
    char *state_dir = kumod_dirs_state(kd);
    const char *dirs[3] = {state_dir, kd->cfg.data_spool_path,
                           kd->cfg.meta_spool_path};
    int rv = 0;

    for (size_t i = 0; i < 3 && rv == 0; i++) {
        rv = kumod_dirs_prepare(dirs[i], uid, gid);
        if (rv != 0) {
            snprintf(err, errlen, "%s: %s", dirs[i], km_strerror(rv));
        }
    }
    for (size_t i = 0; i < json_array_size(kd->cfg.log_configs) && rv == 0;
         i++) {
        const char *dir = json_string_value(
            json_object_get(json_array_get(kd->cfg.log_configs, i), "log_dir"));
        rv = kumod_dirs_prepare(dir, uid, gid);
        if (rv != 0) {
            snprintf(err, errlen, "%s: %s", dir, km_strerror(rv));
        }
    }
    free(state_dir);
    return rv;
}
