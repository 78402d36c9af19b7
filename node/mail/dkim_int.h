/* dkim_int.h - declarations shared by the dkim*.c files only. */
#ifndef KUMO_DKIM_INT_H
#define KUMO_DKIM_INT_H
#include <stddef.h>

struct buf;

/* Largest key file read (an RSA-8192 PEM is about 6.5 KiB). */
#define DKIM_KEY_MAX_BYTES (64u * 1024u)

/* Append the key file at `path` (at most DKIM_KEY_MAX_BYTES) to out.
 * KM_ENOENT, KM_EIO or KM_EINVAL (too large) with the reason, naming the
 * file, in err. */
int dkim_key_read_file(const char *path, struct buf *out, char *err,
                       size_t errlen);
#endif /* KUMO_DKIM_INT_H */
