/* queue_retry.h - the retry schedule of a scheduled queue as KumoMTA
 * computes it (crates/kumod/src/queue: delay_for_attempt, the jitter of
 * increment_attempts_and_update_delay, compute_delay_based_on_age):
 * exponential backoff from retry_interval capped by max_retry_interval,
 * expiry against max_age or a per-message expiry, and the due time given to
 * a message found in the spool at start-up. Pure arithmetic in
 * milliseconds: the caller passes the clock and the random numbers, and
 * does the logging and removal. Any thread. */
#ifndef KUMO_QUEUE_RETRY_H
#define KUMO_QUEUE_RETRY_H
#include <stdbool.h>
#include <stdint.h>

/* KumoMTA's defaults for make_queue_config. */
#define QUEUE_RETRY_DEFAULT_INTERVAL_MS (20ULL * 60 * 1000)
#define QUEUE_RETRY_DEFAULT_MAX_AGE_MS  (7ULL * 86400 * 1000)
/* Jitter never exceeds +/- half of this (KumoMTA: one minute in total). */
#define QUEUE_RETRY_MAX_JITTER_SPAN_MS (60ULL * 1000)

/* The retry settings of one scheduled queue. Small value type. */
struct queue_retry_policy {
    uint64_t retry_interval_ms;     /* backoff base; 0 is taken as 1 ms */
    uint64_t max_retry_interval_ms; /* cap on one delay; 0 = no cap */
    uint64_t max_age_ms;            /* lifetime from reception */
};

/* Delay before the next try after the attempts-th failed attempt
 * (attempts >= 1; 0 is taken as 1): retry_interval * 2^(attempts-1),
 * saturating instead of overflowing, capped at max_retry_interval when that
 * is not 0, plus KumoMTA's jitter. The jitter spans retry_interval/20
 * (at most one minute) centred on zero, picked by jitter_rand (any 64-bit
 * random number), and, as KumoMTA converts it to whole seconds by
 * truncation, it is a whole number of seconds: 0 whenever retry_interval
 * is under 40 s, within +/-30 s for the default 20 minutes. The result is
 * never negative. (KumoMTA also truncates retry_interval to whole seconds;
 * we keep milliseconds so that sub-second intervals work.) */
uint64_t queue_retry_delay_ms(uint64_t retry_interval_ms,
                              uint64_t max_retry_interval_ms, uint32_t attempts,
                              uint64_t jitter_rand);

/* now_ms + queue_retry_delay_ms(p..., attempts, jitter_rand), saturating at
 * INT64_MAX: the due time after the attempts-th failed attempt. */
int64_t queue_retry_next_due_ms(int64_t now_ms,
                                const struct queue_retry_policy *p,
                                uint32_t attempts, uint64_t jitter_rand);

/* True when a message received at created_ms must expire instead of being
 * retried at next_due_ms: KumoMTA expires when the age at the next attempt
 * would exceed max_age (next_due - created > max_age; equal is kept). */
bool queue_retry_expired(int64_t created_ms, uint64_t max_age_ms,
                         int64_t next_due_ms);

/* The same rule for a per-message expiry (set_scheduling{expires}), which
 * KumoMTA applies instead of max_age: expire when next_due >= expires. */
bool queue_retry_expired_at(int64_t expires_ms, int64_t next_due_ms);

/* KumoMTA's infer_num_attempts: how many attempts a message of this age
 * would have made had every retry run on time without jitter, i.e. the
 * largest n with delay(1) + ... + delay(n) <= age_ms (delays unjittered).
 * Saturates at UINT32_MAX. */
uint32_t queue_retry_infer_attempts(const struct queue_retry_policy *p,
                                    uint64_t age_ms);

/* Start-up recompute for a message found in the spool. KumoMTA does not
 * trust a stored due time or attempt count: it infers num_attempts from
 * the age (queue_retry_infer_attempts; the stored count is overwritten),
 * expires the message when its age has reached max_age or when the
 * unjittered delays of attempts 2..n already add up to max_age, and
 * otherwise makes it due at created + that sum, but never before now, so
 * in practice it is due at once. Returns false when the message must
 * expire (log Expiration, remove it from the spool); otherwise true with
 * *num_attempts and *due_ms set. */
bool queue_retry_restart(const struct queue_retry_policy *p, int64_t created_ms,
                         int64_t now_ms, uint32_t *num_attempts,
                         int64_t *due_ms);
#endif /* KUMO_QUEUE_RETRY_H */
