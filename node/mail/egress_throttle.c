/* egress_throttle.c - throttle spec and connection limit parsing, and the
 * GCRA limiter. The grammar follows KumoMTA's crates/throttle (ThrottleSpec,
 * LimitSpec) and accepts a little more (plural and upper-case units); the
 * limiter follows redis-cell, which KumoMTA uses for node-local throttles.
 * No state outside the caller's structs; no allocation. */
#include "egress_throttle.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/km.h"

#define EGRESS_THROTTLE_NS_PER_MS 1000000ULL

struct egress_throttle_unit {
    const char *name;
    uint64_t seconds;
};

static const struct egress_throttle_unit egress_throttle_units[] = {
    {"s", 1},       {"sec", 1},      {"secs", 1},     {"second", 1},
    {"seconds", 1}, {"m", 60},       {"min", 60},     {"mins", 60},
    {"minute", 60}, {"minutes", 60}, {"h", 3600},     {"hr", 3600},
    {"hrs", 3600},  {"hour", 3600},  {"hours", 3600}, {"d", 86400},
    {"day", 86400}, {"days", 86400},
};

/* Parse the decimal number in p[0..n), skipping ',' and '_' separators as
 * KumoMTA does ("1,000", "1_0,0"). At least one digit is required; signs,
 * spaces and overflow are errors. */
static int
egress_throttle_parse_number(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    bool digits = false;

    for (size_t i = 0; i < n; i++) {
        if (p[i] == ',' || p[i] == '_') {
            continue;
        }
        if (p[i] < '0' || p[i] > '9') {
            return KM_EINVAL;
        }
        if (v > (UINT64_MAX - (uint64_t)(p[i] - '0')) / 10) {
            return KM_EINVAL;
        }
        v = v * 10 + (uint64_t)(p[i] - '0');
        digits = true;
    }
    if (!digits) {
        return KM_EINVAL;
    }
    *out = v;
    return 0;
}

/* Parse "[N]UNIT" into a period in milliseconds. */
static int
egress_throttle_parse_period(const char *p, size_t n, uint64_t *period_ms,
                             char *err, size_t errlen)
{
    uint64_t count = 1;
    size_t i = 0;

    if (n > 0 && p[0] >= '0' && p[0] <= '9') {
        count = 0;
        for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
            if (count > (UINT64_MAX - (uint64_t)(p[i] - '0')) / 10) {
                (void)km_config_fail(err, errlen, "period count too big: %.*s",
                                     (int)n, p);
                return KM_EINVAL;
            }
            count = count * 10 + (uint64_t)(p[i] - '0');
        }
        if (i == n) {
            (void)km_config_fail(err, errlen, "invalid period quantity %.*s",
                                 (int)n, p);
            return KM_EINVAL;
        }
        if (count == 0) {
            (void)km_config_fail(err, errlen, "period count must be > 0: %.*s",
                                 (int)n, p);
            return KM_EINVAL;
        }
    }
    for (size_t u = 0;
         u < sizeof(egress_throttle_units) / sizeof(egress_throttle_units[0]);
         u++) {
        const struct egress_throttle_unit *unit = &egress_throttle_units[u];

        if (!km_ascii_ieq(p + i, n - i, unit->name)) {
            continue;
        }
        if (count > EGRESS_THROTTLE_MAX_PERIOD_MS / 1000 / unit->seconds) {
            (void)km_config_fail(err, errlen, "period too long: %.*s", (int)n,
                                 p);
            return KM_EINVAL;
        }
        *period_ms = count * unit->seconds * 1000;
        return 0;
    }
    (void)km_config_fail(err, errlen, "unknown period quantity %.*s",
                         (int)(n - i), p + i);
    return KM_EINVAL;
}

int
egress_throttle_parse(const char *spec, struct egress_throttle_spec *out,
                      char *err, size_t errlen)
{
    static const char burst_key[] = ",max_burst=";
    struct egress_throttle_spec s = {0};
    const char *p = spec;
    const char *end;
    const char *burst;
    const char *slash;
    int rv;

    if (spec == NULL) {
        (void)km_config_fail(err, errlen, "missing throttle spec");
        return KM_EINVAL;
    }
    if (strncmp(p, "local:", 6) == 0) {
        s.local = true;
        p += 6;
    }
    end = p + strlen(p);
    burst = strstr(p, burst_key);
    if (burst != NULL) {
        const char *b = burst + sizeof(burst_key) - 1;

        rv = egress_throttle_parse_number(b, (size_t)(end - b), &s.max_burst);
        if (rv != 0) {
            (void)km_config_fail(err, errlen, "invalid max_burst '%s'", b);
            return rv;
        }
        s.has_max_burst = true;
        end = burst;
    }
    slash = memchr(p, '/', (size_t)(end - p));
    if (slash == NULL) {
        (void)km_config_fail(err, errlen, "expected 'limit/period', got %.*s",
                             (int)(end - p), p);
        return KM_EINVAL;
    }
    rv = egress_throttle_parse_period(slash + 1, (size_t)(end - slash - 1),
                                      &s.period_ms, err, errlen);
    if (rv != 0) {
        return rv;
    }
    rv = egress_throttle_parse_number(p, (size_t)(slash - p), &s.limit);
    if (rv != 0) {
        (void)km_config_fail(err, errlen, "invalid limit '%.*s'",
                             (int)(slash - p), p);
        return rv;
    }
    if (s.limit == 0) {
        (void)km_config_fail(err, errlen,
                             "invalid throttle spec '%s': limit must be "
                             "greater than 0",
                             spec);
        return KM_EINVAL;
    }
    if (!s.has_max_burst) {
        s.max_burst = s.limit;
    }
    *out = s;
    return 0;
}

int
egress_throttle_format(const struct egress_throttle_spec *s, char *out,
                       size_t outlen)
{
    const char *unit = NULL;
    uint64_t secs;
    char burst[32] = "";
    int w;

    if (s->limit == 0 || s->period_ms == 0 || s->period_ms % 1000 != 0) {
        return KM_EINVAL;
    }
    secs = s->period_ms / 1000;
    switch (secs) {
    case 86400:
        unit = "d";
        break;
    case 3600:
        unit = "h";
        break;
    case 60:
        unit = "m";
        break;
    case 1:
        unit = "s";
        break;
    default:
        break;
    }
    if (s->has_max_burst) {
        w = snprintf(burst, sizeof(burst), ",max_burst=%" PRIu64, s->max_burst);
        KM_ASSERT(w > 0 && (size_t)w < sizeof(burst));
    }
    if (unit != NULL) {
        w = snprintf(out, outlen, "%s%" PRIu64 "/%s%s",
                     s->local ? "local:" : "", s->limit, unit, burst);
    } else {
        w = snprintf(out, outlen, "%s%" PRIu64 "/%" PRIu64 "s%s",
                     s->local ? "local:" : "", s->limit, secs, burst);
    }
    if (w < 0 || (size_t)w >= outlen) {
        return KM_E2BIG;
    }
    return 0;
}

int
egress_connection_limit_parse(const char *s, uint32_t *limit, bool *local)
{
    bool is_local = false;
    uint64_t v;
    int rv;

    if (s == NULL) {
        return KM_EINVAL;
    }
    if (strncmp(s, "local:", 6) == 0) {
        is_local = true;
        s += 6;
    }
    rv = egress_throttle_parse_number(s, strlen(s), &v);
    if (rv != 0) {
        return rv;
    }
    if (v == 0 || v > UINT32_MAX) {
        return KM_EINVAL;
    }
    *limit = (uint32_t)v;
    *local = is_local;
    return 0;
}

void
egress_gcra_init(struct egress_gcra *g, const struct egress_throttle_spec *spec)
{
    uint64_t period_ns;
    uint64_t burst;

    /* egress_throttle_parse() guarantees these; a hand-built spec that
     * breaks them is a bug in the caller. */
    KM_ASSERT(spec->limit >= 1);
    KM_ASSERT(spec->period_ms >= 1 &&
              spec->period_ms <= EGRESS_THROTTLE_MAX_PERIOD_MS);
    period_ns = spec->period_ms * EGRESS_THROTTLE_NS_PER_MS;
    g->emission_ns = period_ns / spec->limit;
    if (g->emission_ns == 0) {
        g->emission_ns = 1;
    }
    /* KumoMTA's local throttle hands redis-cell max_burst = min(max_burst,
     * limit - 1), and redis-cell allows max_burst + 1 cells at once. */
    burst =
        spec->max_burst < spec->limit - 1 ? spec->max_burst : spec->limit - 1;
    burst += 1;
    /* emission * burst <= period_ns, which fits in 64 bits. */
    g->tolerance_ns = g->emission_ns * burst;
    g->tat_ns = 0;
}

bool
egress_gcra_try(struct egress_gcra *g, uint64_t now_ms,
                uint64_t *retry_after_ms)
{
    uint64_t now_ns;
    uint64_t tat;
    uint64_t new_tat;
    uint64_t wait_ns;

    if (now_ms > UINT64_MAX / EGRESS_THROTTLE_NS_PER_MS) {
        now_ns = UINT64_MAX / 2;
    } else {
        now_ns = now_ms * EGRESS_THROTTLE_NS_PER_MS;
    }
    /* An idle limiter's tat lies in the past: start from now, which gives
     * back the whole burst. */
    tat = g->tat_ns > now_ns ? g->tat_ns : now_ns;
    new_tat = tat + g->emission_ns;
    /* Allowed when now >= new_tat - tolerance, written without underflow. */
    if (new_tat - now_ns <= g->tolerance_ns) {
        g->tat_ns = new_tat;
        return true;
    }
    if (retry_after_ms != NULL) {
        wait_ns = new_tat - now_ns - g->tolerance_ns;
        *retry_after_ms = (wait_ns + EGRESS_THROTTLE_NS_PER_MS - 1) /
                          EGRESS_THROTTLE_NS_PER_MS;
    }
    return false;
}
