/* km.h - allocation that never fails, error codes, assertions and clocks.
 * Used by every folder. Error codes: 0 is success, negative values are
 * failures; where an errno exists KM_E* equals -errno (so libuv codes pass
 * through), our own codes start at -1000. Thread-safe (no state). */
#ifndef KUMO_KM_H
#define KUMO_KM_H
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KM_ENOENT      (-ENOENT)
#define KM_EIO         (-EIO)
#define KM_ENOMEM      (-ENOMEM)
#define KM_EINVAL      (-EINVAL)
#define KM_EEXIST      (-EEXIST)
#define KM_ENOSPC      (-ENOSPC)
#define KM_ETIMEDOUT   (-ETIMEDOUT)
#define KM_ECANCELED   (-ECANCELED)
#define KM_EAGAIN      (-EAGAIN)
#define KM_E2BIG       (-E2BIG)
#define KM_ECORRUPT    (-1000) /* bad data on disk or from a peer */
#define KM_ENOTLEADER  (-1001) /* this node is not the raft leader */
#define KM_EPOLICY     (-1002) /* the Lua policy raised an error */
#define KM_ECLOSING    (-1003) /* the object is shutting down */
#define KM_EREJECT     (-1004) /* the policy rejected (kumo.reject) */
#define KM_ENOQUORUM   (-1005) /* no leader or no quorum */
#define KM_ESPOOL      (-1006) /* the spool failed (RocksDB error) */
#define KM_EPROTO      (-1007) /* protocol violation by a peer */
#define KM_ECONFIG     (-1008) /* bad configuration */
#define KM_ELEADERLOST (-1009) /* leadership lost before commit: unknown */

/* Name of an error code, for log lines. Never NULL. */
const char *km_strerror(int err);

/* A configuration error: the reason, printf-style, into err (when err is
 * not NULL; a truncated reason is still a reason). Always KM_ECONFIG, so
 * parsers end with `return km_config_fail(err, errlen, ...)`. */
int km_config_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Allocation: log and abort on failure, never return NULL. */
void *km_malloc(size_t n);
void *km_calloc(size_t nmemb, size_t size);
void *km_realloc(void *p, size_t n);
char *km_strdup(const char *s);
char *km_strndup(const char *s, size_t n);
void *km_memdup(const void *p, size_t n);
/* printf into a new string the caller owns. */
char *km_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Always-on assertion for cheap invariants (never for input data). */
#define KM_ASSERT(expr)                                                        \
    ((expr) ? (void)0 : km_assert_fail(#expr, __FILE__, __LINE__))
_Noreturn void km_assert_fail(const char *expr, const char *file, int line);

/* Clocks. Monotonic for timers and leases, wall clock for records. */
uint64_t km_now_mono_ms(void);
int64_t km_now_wall_ms(void);
int64_t km_now_wall_us(void);

/* Parse a duration such as "30s", "5 min", "1h", "2 days", "250ms" or a
 * bare number of seconds into milliseconds. Returns 0 or KM_EINVAL. */
int km_parse_duration_ms(const char *s, uint64_t *out_ms);

/* Parse a size such as "20MiB", "1 GB", "512k" or a bare byte count.
 * Returns 0 or KM_EINVAL. */
int km_parse_size(const char *s, uint64_t *out);

/* Case-insensitive ASCII comparison of a view with a C string. */
bool km_ascii_ieq(const char *p, size_t n, const char *s);

/* The machine's host name (gethostname), in a static-lifetime buffer set
 * once at start-up by km_hostname_init(). */
void km_hostname_init(void);
const char *km_hostname(void);
#endif /* KUMO_KM_H */
