/* km_file.c - durable small files (see km_file.h). Follows canonical/raft's
 * UvFsMakeFile: write a temporary file, sync it, rename it, sync the
 * directory, and treat a short write as the error it is. */
#include "base/km_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/km.h"

int
km_file_read_line(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL) {
        return errno == ENOENT ? KM_ENOENT : -errno;
    }
    n = fread(out, 1, len - 1, f);
    if (ferror(f)) {
        int rv = -EIO;
        fclose(f);
        return rv;
    }
    fclose(f);
    out[n] = '\0';
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

int
km_file_mkdirs(const char *path, unsigned mode)
{
    char *p = km_strdup(path);
    int rv = 0;

    for (char *s = p + 1; *s != '\0'; s++) {
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, (mode_t)mode) != 0 && errno != EEXIST) {
                rv = -errno;
                break;
            }
            *s = '/';
        }
    }
    if (rv == 0 && mkdir(p, (mode_t)mode) != 0 && errno != EEXIST) {
        rv = -errno;
    }
    free(p);
    return rv;
}

int
km_file_sync_dir_of(const char *path)
{
    char *copy = km_strdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    int rv = 0;

    free(copy);
    if (fd < 0) {
        return -errno;
    }
    if (fsync(fd) != 0) {
        rv = -errno;
    }
    close(fd);
    return rv;
}

int
km_file_write_durable(const char *path, const void *data, size_t n, char *err,
                      size_t errlen)
{
    char *tmp = km_asprintf("%s.tmp", path);
    ssize_t w;
    int fd, rv;

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    if (fd < 0) {
        rv = -errno;
        goto err_after_tmp_name;
    }
    w = write(fd, data, n);
    if (w < 0 || (size_t)w != n) {
        rv = w < 0 ? -errno : KM_EIO; /* a short write is an error too */
        goto err_after_open;
    }
    if (fsync(fd) != 0) {
        rv = -errno;
        goto err_after_open;
    }
    if (close(fd) != 0) {
        rv = -errno;
        goto err_after_create;
    }
    if (rename(tmp, path) != 0) {
        rv = -errno;
        goto err_after_create;
    }
    free(tmp);
    rv = km_file_sync_dir_of(path);
    if (rv != 0) {
        snprintf(err, errlen, "%s: sync of its directory: %s", path,
                 km_strerror(rv));
    }
    return rv;

err_after_open:
    close(fd);
err_after_create:
    (void)unlink(tmp);
err_after_tmp_name:
    snprintf(err, errlen, "%s: %s", path,
             rv == KM_EIO ? "short write" : km_strerror(rv));
    free(tmp);
    return rv;
}
