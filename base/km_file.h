/* km_file.h - small files of the node's state (node id, cluster id): read
 * the first line, create directories, and write so that a crash leaves
 * either the old content or all of the new. No libuv: for start-up only,
 * before the loop runs. Any thread. */
#ifndef KUMO_KM_FILE_H
#define KUMO_KM_FILE_H
#include <stddef.h>

/* The first line of `path` (without its line end) into out[0..len),
 * truncated to fit. 0, KM_ENOENT if there is no such file, or -errno. */
int km_file_read_line(const char *path, char *out, size_t len);

/* mkdir -p with `mode` for every directory it creates. 0 or -errno. */
int km_file_mkdirs(const char *path, unsigned mode);

/* Write `n` bytes to `path` durably: a temporary file beside it, written
 * whole (a short write is an error), fsynced, renamed over `path`, then the
 * directory fsynced so the new name survives a crash too. The temporary
 * file never outlives a failure. 0, or -errno / KM_EIO with the path and
 * the reason in err. */
int km_file_write_durable(const char *path, const void *data, size_t n,
                          char *err, size_t errlen);

/* fsync the directory that holds `path`. 0 or -errno. */
int km_file_sync_dir_of(const char *path);
#endif /* KUMO_KM_FILE_H */
