/* egress_throttle.h - throttle specs ("100/h", "local:10/5m,max_burst=2"),
 * connection limits ("1,000", "local:20") and the GCRA rate limiter that
 * enforces a spec, as KumoMTA's crates/throttle does for max_message_rate,
 * max_connection_rate and friends. Pure code: no clock, no I/O, no
 * allocation; the caller passes the time. Sharing a limiter between nodes is
 * not done here: `local` only records what the spec asked for. Any thread;
 * a limiter is owned by one caller and not locked. */
#ifndef KUMO_EGRESS_THROTTLE_H
#define KUMO_EGRESS_THROTTLE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest period a spec may have (100 years), so that the limiter's
 * nanosecond arithmetic cannot overflow. */
#define EGRESS_THROTTLE_MAX_PERIOD_MS (100ULL * 365 * 86400 * 1000)

/* A parsed throttle spec: `limit` cells per `period_ms`. Small value type,
 * embedded by its users. */
struct egress_throttle_spec {
    uint64_t limit;     /* >= 1 */
    uint64_t period_ms; /* whole seconds, >= 1000 */
    uint64_t max_burst; /* the spec's max_burst, else `limit` (KumoMTA) */
    bool has_max_burst; /* max_burst was written in the spec */
    bool local;         /* "local:" prefix: node-local even in a cluster */
};

/* Parse KumoMTA's grammar `[local:]LIMIT/[N]PERIOD[,max_burst=B]` into *out.
 * LIMIT and B may contain ',' or '_' separators ("1,000", "10_000");
 * PERIOD is s|sec|second, m|min|minute, h|hr|hour or d|day, plural forms
 * too, case-insensitive, optionally preceded by a count ("10/5m" is 10 per
 * 300 s). A limit or count of 0 is invalid; max_burst=0 is allowed.
 * Returns 0, or KM_EINVAL with a one-line reason in err (when errlen > 0;
 * err may be NULL if errlen is 0). *out is untouched on error. */
int egress_throttle_parse(const char *spec, struct egress_throttle_spec *out,
                          char *err, size_t errlen);

/* Write the canonical text of `s` into out (NUL-terminated), as KumoMTA
 * prints it: "[local:]LIMIT/U" where U is d, h, m or s when the period is
 * exactly one such unit and "<seconds>s" otherwise, then ",max_burst=B"
 * only when has_max_burst. Parsing the result gives back `s`. Returns 0,
 * KM_E2BIG when outlen is too small, KM_EINVAL when the period is not a
 * positive whole number of seconds or the limit is 0. */
int egress_throttle_format(const struct egress_throttle_spec *s, char *out,
                           size_t outlen);

/* Parse a connection_limit written as a string: "32", "1,000", "10_000" or
 * "local:20". Sets *limit (1..UINT32_MAX) and *local. Returns 0 or
 * KM_EINVAL (empty, not a number, 0, too large); outputs are untouched on
 * error. */
int egress_connection_limit_parse(const char *s, uint32_t *limit, bool *local);

/* Generic cell rate algorithm limiter (what KumoMTA's local throttles use,
 * via redis-cell): a cell is allowed at `now` when now >= tat + emission -
 * tolerance; allowing it moves tat to max(tat, now) + emission. Times are in
 * nanoseconds inside; the caller speaks milliseconds. Embedded value type;
 * set up with egress_gcra_init(). */
struct egress_gcra {
    uint64_t emission_ns;  /* period / limit: steady spacing of cells */
    uint64_t tolerance_ns; /* emission * burst: how far tat may run ahead */
    uint64_t tat_ns;       /* theoretical arrival time of the next cell */
};

/* Set g up for `spec`, with a full burst available. The burst is
 * min(max_burst, limit - 1) + 1 cells, as KumoMTA's in-memory throttle
 * computes it: a default spec allows `limit` cells at once, "max_burst=1"
 * allows 2, "max_burst=0" allows 1. */
void egress_gcra_init(struct egress_gcra *g,
                      const struct egress_throttle_spec *spec);

/* Try to consume one cell at now_ms (any monotonic millisecond clock; it
 * must not go backwards by more than the burst window). Returns true and
 * updates g when allowed. Returns false when throttled and, if
 * retry_after_ms is not NULL, sets it to the wait in milliseconds (rounded
 * up, >= 1) after which one cell will be allowed. An idle limiter regains
 * its full burst. */
bool egress_gcra_try(struct egress_gcra *g, uint64_t now_ms,
                     uint64_t *retry_after_ms);
#endif /* KUMO_EGRESS_THROTTLE_H */
