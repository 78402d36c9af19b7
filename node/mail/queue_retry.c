/* queue_retry.c - KumoMTA's retry schedule in saturating integer
 * arithmetic: backoff delays, jitter, expiry checks and the start-up
 * recompute. No state, no allocation, no clock of its own. */
#include "queue_retry.h"

#include "base/km.h"

/* Unjittered delay after the k-th failed attempt, k >= 1 (KumoMTA's
 * delay_for_attempt(k - 1)): base * 2^(k-1), saturating, then capped. */
static uint64_t
queue_retry_base_delay_ms(uint64_t retry_interval_ms, uint64_t max_ms,
                          uint32_t k)
{
    uint64_t base = retry_interval_ms == 0 ? 1 : retry_interval_ms;
    uint32_t shift = k <= 1 ? 0 : k - 1;
    uint64_t delay;

    if (shift >= 64 || base > (UINT64_MAX >> shift)) {
        delay = UINT64_MAX;
    } else {
        delay = base << shift;
    }
    if (max_ms != 0 && delay > max_ms) {
        delay = max_ms;
    }
    return delay;
}

/* KumoMTA: magnitude = min(retry_interval / 20, 60 s), jitter uniform in
 * [-magnitude/2, magnitude/2), then `as i64` on seconds truncates toward
 * zero. C's integer division truncates toward zero too. */
static int64_t
queue_retry_jitter_ms(uint64_t retry_interval_ms, uint64_t jitter_rand)
{
    uint64_t span = retry_interval_ms / 20;
    int64_t raw;

    if (span > QUEUE_RETRY_MAX_JITTER_SPAN_MS) {
        span = QUEUE_RETRY_MAX_JITTER_SPAN_MS;
    }
    if (span == 0) {
        return 0;
    }
    raw = (int64_t)(jitter_rand % span) - (int64_t)(span / 2);
    return raw / 1000 * 1000;
}

uint64_t
queue_retry_delay_ms(uint64_t retry_interval_ms, uint64_t max_retry_interval_ms,
                     uint32_t attempts, uint64_t jitter_rand)
{
    uint64_t delay = queue_retry_base_delay_ms(retry_interval_ms,
                                               max_retry_interval_ms, attempts);
    int64_t jitter = queue_retry_jitter_ms(retry_interval_ms, jitter_rand);

    if (jitter < 0) {
        uint64_t minus = (uint64_t)(-jitter);

        /* A cap below the jitter span could go negative: due now. */
        return delay > minus ? delay - minus : 0;
    }
    if (delay > UINT64_MAX - (uint64_t)jitter) {
        return UINT64_MAX;
    }
    return delay + (uint64_t)jitter;
}

/* a + b for a time and a non-negative offset, saturating at INT64_MAX. */
static int64_t
queue_retry_add_ms(int64_t a, uint64_t b)
{
    if (a >= 0) {
        if (b > (uint64_t)(INT64_MAX - a)) {
            return INT64_MAX;
        }
        return a + (int64_t)b;
    }
    /* a < 0: a + b cannot overflow while b <= INT64_MAX; above that the
     * sum is at least b - 2^63, computed in unsigned arithmetic. */
    if (b <= (uint64_t)INT64_MAX) {
        return a + (int64_t)b;
    }
    b -= (uint64_t)INT64_MAX;
    return queue_retry_add_ms(a + INT64_MAX, b);
}

int64_t
queue_retry_next_due_ms(int64_t now_ms, const struct queue_retry_policy *p,
                        uint32_t attempts, uint64_t jitter_rand)
{
    uint64_t delay = queue_retry_delay_ms(
        p->retry_interval_ms, p->max_retry_interval_ms, attempts, jitter_rand);

    return queue_retry_add_ms(now_ms, delay);
}

bool
queue_retry_expired(int64_t created_ms, uint64_t max_age_ms,
                    int64_t next_due_ms)
{
    uint64_t age;

    if (next_due_ms <= created_ms) {
        return false;
    }
    /* Two's complement: the unsigned difference is exact when due > created. */
    age = (uint64_t)next_due_ms - (uint64_t)created_ms;
    return age > max_age_ms;
}

bool
queue_retry_expired_at(int64_t expires_ms, int64_t next_due_ms)
{
    return next_due_ms >= expires_ms;
}

uint32_t
queue_retry_infer_attempts(const struct queue_retry_policy *p, uint64_t age_ms)
{
    uint64_t elapsed = 0;
    uint32_t n = 0;

    /* The doubling phase takes at most 64 steps; once the delay stops
     * growing (capped or saturated) the rest is one division. */
    for (;;) {
        uint64_t d = queue_retry_base_delay_ms(p->retry_interval_ms,
                                               p->max_retry_interval_ms, n + 1);
        uint64_t next = queue_retry_base_delay_ms(
            p->retry_interval_ms, p->max_retry_interval_ms, n + 2);

        if (d > age_ms - elapsed) {
            return n;
        }
        elapsed += d;
        n++;
        if (n == UINT32_MAX) {
            return n;
        }
        if (next == d) {
            uint64_t more = (age_ms - elapsed) / d;

            if (more >= (uint64_t)(UINT32_MAX - n)) {
                return UINT32_MAX;
            }
            return n + (uint32_t)more;
        }
    }
}

/* Sum of the unjittered delays after attempts 2..n (KumoMTA's
 * sum of delay_for_attempt(1..n-1)), saturating. */
static uint64_t
queue_retry_sum_delays_ms(const struct queue_retry_policy *p, uint32_t n)
{
    uint64_t sum = 0;

    for (uint32_t k = 2; k <= n; k++) {
        uint64_t d = queue_retry_base_delay_ms(p->retry_interval_ms,
                                               p->max_retry_interval_ms, k);
        uint64_t next = queue_retry_base_delay_ms(
            p->retry_interval_ms, p->max_retry_interval_ms, k + 1);

        if (d > UINT64_MAX - sum) {
            return UINT64_MAX;
        }
        sum += d;
        if (next == d && k < n) {
            /* Constant from here on: delays k+1..n all equal d. */
            uint64_t rest = n - k;

            if (rest > (UINT64_MAX - sum) / d) {
                return UINT64_MAX;
            }
            return sum + rest * d;
        }
    }
    return sum;
}

bool
queue_retry_restart(const struct queue_retry_policy *p, int64_t created_ms,
                    int64_t now_ms, uint32_t *num_attempts, int64_t *due_ms)
{
    uint64_t age = 0;
    uint64_t overall;
    uint32_t n;

    if (now_ms > created_ms) {
        age = (uint64_t)now_ms - (uint64_t)created_ms;
    }
    if (age >= p->max_age_ms) {
        return false;
    }
    n = queue_retry_infer_attempts(p, age);
    overall = queue_retry_sum_delays_ms(p, n);
    if (overall >= p->max_age_ms) {
        return false;
    }
    *num_attempts = n;
    *due_ms =
        overall > age ? queue_retry_add_ms(now_ms, overall - age) : now_ms;
    return true;
}
