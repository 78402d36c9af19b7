/* egress_maildir.h - delivery into a maildir (KumoMTA's protocol
 * {maildir_path=...}): expand the path template from a message on the loop
 * thread, then write the bytes as tmp/<unique>, fsync, rename into new/ and
 * fsync new/ (D. J. Bernstein's maildir.txt). The writing blocks, so the
 * daemon uses egress_maildir_deliver_async() (libuv's thread pool); the
 * plain functions are for tests and tools. Knows nothing of queues,
 * retries or log records: the caller turns the status into those. */
#ifndef KUMO_EGRESS_MAILDIR_H
#define KUMO_EGRESS_MAILDIR_H
#include <stddef.h>

#include <uv.h>

struct buf;
struct message;

/* Runs on the loop thread once the delivery is durable (status 0) or has
 * failed (KM_E*, -errno from the failing system call). file_path is the
 * message's path in new/ (NULL on failure), borrowed for the call. */
typedef void (*egress_maildir_cb)(void *arg, int status, const char *file_path);

/* Expand a maildir_path template for message m (loop thread: uses the
 * message accessors). Supported, as in KumoMTA's minijinja templates:
 * literal text and `{{ name }}` with name one of queue, campaign, tenant,
 * domain, routing_domain (the parts of the scheduled queue name),
 * local_part, domain_part, email (envelope recipient), sender_local_part,
 * sender_domain_part, sender_email, and `{{ meta.key }}` /
 * `{{ meta['key'] }}` (strings as is, numbers and booleans as JSON text).
 * An absent value expands to "" (KumoMTA prints "none" for a nil queue
 * part). Filters, `{% %}` blocks and other names are KM_EINVAL. A value
 * that contains '/' or is "." or ".." is KM_EINVAL (no escaping the
 * template's directories). On success the caller owns *out; on error err
 * says why. */
int egress_maildir_expand_path(const char *tmpl, struct message *m, char **out,
                               char *err, size_t errlen);

/* Blocking: deliver len bytes into the maildir at dir, creating dir and
 * its parents (dir_mode) and tmp/, new/, cur/ as needed. The file is named
 * "<sec>.M<usec>P<pid>R<random>_<id>.<host>" and created with file_mode.
 * If out_path is not NULL, the caller owns *out_path, the file's path in
 * new/. Returns 0 or -errno (KM_ENOENT, KM_EIO, -ENOTDIR, ...); nothing is
 * left in tmp/ on failure. Any thread. */
int egress_maildir_write(const char *dir, const char *id, const char *data,
                         size_t len, unsigned dir_mode, unsigned file_mode,
                         char **out_path);

/* Blocking: expand path_template for m and write m's data there with the
 * default modes (EGRESS_MAILDIR_DIR_MODE, EGRESS_MAILDIR_FILE_MODE of
 * egress_config.h). Loop thread (message accessors). Errors of both
 * functions above; *out_path as egress_maildir_write. */
int egress_maildir_deliver(const char *path_template, struct message *m,
                           char **out_path);

/* Deliver data into the maildir at path (already expanded) on libuv's
 * thread pool, with the default modes. Copies path, id and the bytes (the
 * caller keeps them and may change or free them at once). cb runs on the
 * loop thread exactly once, unless this returns an error (a uv_queue_work
 * failure), in which case it never runs. */
int egress_maildir_deliver_async(uv_loop_t *loop, const char *path,
                                 const char *id, const struct buf *data,
                                 egress_maildir_cb cb, void *arg);
#endif /* KUMO_EGRESS_MAILDIR_H */
