/* km.c - allocation, error names, clocks and small parsers used everywhere.
 * No state except the host name, set once before the loop starts. */
#include "km.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static char km_hostname_buf[256] = "localhost";

const char *
km_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case KM_ECORRUPT:
        return "corrupt data";
    case KM_ENOTLEADER:
        return "not the leader";
    case KM_EPOLICY:
        return "policy error";
    case KM_ECLOSING:
        return "shutting down";
    case KM_EREJECT:
        return "rejected by policy";
    case KM_ENOQUORUM:
        return "no quorum";
    case KM_ESPOOL:
        return "spool error";
    case KM_EPROTO:
        return "protocol error";
    case KM_ECONFIG:
        return "configuration error";
    case KM_ELEADERLOST:
        return "leadership lost";
    default:
        break;
    }
    if (err < 0 && err > -4096) {
        return strerror(-err);
    }
    return "unknown error";
}

_Noreturn static void
km_oom(size_t n)
{
    log_write(LOG_LVL_ERROR, "ERROR", "km: out of memory allocating %zu bytes",
              n);
    abort();
}

void *
km_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        km_oom(n);
    }
    return p;
}

void *
km_calloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (p == NULL) {
        km_oom(nmemb * size);
    }
    return p;
}

void *
km_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL) {
        km_oom(n);
    }
    return q;
}

char *
km_strdup(const char *s)
{
    return km_memdup(s, strlen(s) + 1);
}

char *
km_strndup(const char *s, size_t n)
{
    char *p = km_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void *
km_memdup(const void *p, size_t n)
{
    void *q = km_malloc(n);
    if (n > 0) {
        memcpy(q, p, n);
    }
    return q;
}

int
km_config_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        (void)vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return KM_ECONFIG;
}

char *
km_asprintf(const char *fmt, ...)
{
    va_list ap;
    char *out = NULL;

    va_start(ap, fmt);
    int n = vasprintf(&out, fmt, ap);
    va_end(ap);
    if (n < 0) {
        km_oom(0);
    }
    return out;
}

_Noreturn void
km_assert_fail(const char *expr, const char *file, int line)
{
    log_panic(file, line, "assertion failed: %s", expr);
}

uint64_t
km_now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t
km_now_wall_ms(void)
{
    return km_now_wall_us() / 1000;
}

int64_t
km_now_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Split "  12.5 min" into a number and a unit word. */
static int
km_parse_number_unit(const char *s, double *num, const char **unit)
{
    char *end;

    while (isspace((unsigned char)*s)) {
        s++;
    }
    if (!isdigit((unsigned char)*s) && *s != '.') {
        return KM_EINVAL;
    }
    *num = strtod(s, &end);
    if (end == s || *num < 0) {
        return KM_EINVAL;
    }
    while (isspace((unsigned char)*end)) {
        end++;
    }
    *unit = end;
    return 0;
}

static bool
km_unit_is(const char *unit, const char *const *names)
{
    size_t n = strlen(unit);

    while (n > 0 && isspace((unsigned char)unit[n - 1])) {
        n--;
    }
    for (; *names != NULL; names++) {
        if (km_ascii_ieq(unit, n, *names)) {
            return true;
        }
    }
    return false;
}

int
km_parse_duration_ms(const char *s, uint64_t *out_ms)
{
    static const char *const ms[] = {"ms", "msec", "millisecond",
                                     "milliseconds", NULL};
    static const char *const sec[] = {"",       "s",       "sec", "secs",
                                      "second", "seconds", NULL};
    static const char *const min[] = {"m",      "min",     "mins",
                                      "minute", "minutes", NULL};
    static const char *const hour[] = {"h", "hr", "hrs", "hour", "hours", NULL};
    static const char *const day[] = {"d", "day", "days", NULL};
    static const char *const week[] = {"w", "week", "weeks", NULL};
    double num, mult;
    const char *unit;

    if (s == NULL || km_parse_number_unit(s, &num, &unit) != 0) {
        return KM_EINVAL;
    }
    if (km_unit_is(unit, ms)) {
        mult = 1;
    } else if (km_unit_is(unit, sec)) {
        mult = 1000;
    } else if (km_unit_is(unit, min)) {
        mult = 60e3;
    } else if (km_unit_is(unit, hour)) {
        mult = 3600e3;
    } else if (km_unit_is(unit, day)) {
        mult = 86400e3;
    } else if (km_unit_is(unit, week)) {
        mult = 7 * 86400e3;
    } else {
        return KM_EINVAL;
    }
    if (num * mult > 1e15) {
        return KM_EINVAL;
    }
    *out_ms = (uint64_t)(num * mult + 0.5);
    return 0;
}

int
km_parse_size(const char *s, uint64_t *out)
{
    static const char *const b[] = {"", "b", "byte", "bytes", NULL};
    static const char *const k[] = {"k", "kb", "kib", NULL};
    static const char *const m[] = {"m", "mb", "mib", NULL};
    static const char *const g[] = {"g", "gb", "gib", NULL};
    double num, mult;
    const char *unit;

    if (s == NULL || km_parse_number_unit(s, &num, &unit) != 0) {
        return KM_EINVAL;
    }
    /* Like KumoMTA's byte-unit parsing, KB/MB mean binary multiples. */
    if (km_unit_is(unit, b)) {
        mult = 1;
    } else if (km_unit_is(unit, k)) {
        mult = 1024.0;
    } else if (km_unit_is(unit, m)) {
        mult = 1024.0 * 1024;
    } else if (km_unit_is(unit, g)) {
        mult = 1024.0 * 1024 * 1024;
    } else {
        return KM_EINVAL;
    }
    if (num * mult > 1e18) {
        return KM_EINVAL;
    }
    *out = (uint64_t)(num * mult + 0.5);
    return 0;
}

bool
km_ascii_ieq(const char *p, size_t n, const char *s)
{
    size_t m = strlen(s);

    if (m != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (tolower((unsigned char)p[i]) != tolower((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

void
km_hostname_init(void)
{
    char name[sizeof(km_hostname_buf)];

    if (gethostname(name, sizeof(name) - 1) == 0) {
        name[sizeof(name) - 1] = '\0';
        if (name[0] != '\0') {
            memcpy(km_hostname_buf, name, sizeof(name));
        }
    }
}

const char *
km_hostname(void)
{
    return km_hostname_buf;
}

#if defined(__SANITIZE_ADDRESS__)
/* LeakSanitizer reads this at exit in sanitizer builds. NNG 1.5 (Debian 12)
 * frees a pipe that was closed while a redial was pending on its reaper
 * thread, which can still be queued when the process exits even after
 * nng_fini(): its objects are NNG's own, never ours, so they are not
 * reported. Every other leak still fails the run. */
const char *__lsan_default_suppressions(void);

const char *
__lsan_default_suppressions(void)
{
    return "leak:libnng.so\n";
}
#endif
