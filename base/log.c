/* log.c - diagnostic log lines on stderr. The level and trace mask are set
 * from the loop thread; writes from other threads are single fprintf calls
 * of a preformatted line, which stdio serialises. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "km.h"

enum log_level log_level_current = LOG_LVL_INFO;
unsigned log_trace_current;

void
log_set_level(enum log_level lvl)
{
    log_level_current = lvl;
}

static const struct {
    const char *name;
    unsigned bit;
} log_trace_names[] = {
    {"smtp", TRACE_SMTP},     {"queue", TRACE_QUEUE},
    {"spool", TRACE_SPOOL},   {"cluster", TRACE_CLUSTER},
    {"policy", TRACE_POLICY}, {"io", TRACE_IO},
};

/* One word of a filter: a level, a trace category, or "module=level". */
static int
log_filter_word(const char *w, enum log_level *lvl, unsigned *trace)
{
    const char *eq = strchr(w, '=');

    if (eq != NULL) {
        w = eq + 1;
    }
    if (strcasecmp(w, "error") == 0) {
        *lvl = LOG_LVL_ERROR;
    } else if (strcasecmp(w, "warn") == 0) {
        *lvl = LOG_LVL_WARN;
    } else if (strcasecmp(w, "info") == 0) {
        *lvl = LOG_LVL_INFO;
    } else if (strcasecmp(w, "debug") == 0) {
        *lvl = LOG_LVL_DEBUG;
    } else if (strcasecmp(w, "trace") == 0) {
        *lvl = LOG_LVL_DEBUG;
        *trace = ~0u;
    } else {
        for (size_t i = 0;
             i < sizeof(log_trace_names) / sizeof(*log_trace_names); i++) {
            if (strcasecmp(w, log_trace_names[i].name) == 0) {
                *trace |= log_trace_names[i].bit;
                return 0;
            }
        }
        return KM_EINVAL;
    }
    return 0;
}

int
log_set_filter(const char *filter)
{
    enum log_level lvl = log_level_current;
    unsigned trace = 0;
    char *copy = km_strdup(filter);
    char *save = NULL;
    int rv = 0;

    for (char *w = strtok_r(copy, ", \t", &save); w != NULL;
         w = strtok_r(NULL, ", \t", &save)) {
        rv = log_filter_word(w, &lvl, &trace);
        if (rv != 0) {
            break;
        }
    }
    free(copy);
    if (rv == 0) {
        log_level_current = lvl;
        log_trace_current = trace;
    }
    return rv;
}

static void log_vwrite(const char *tag, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void
log_vwrite(const char *tag, const char *fmt, va_list ap)
{
    char line[4096];
    struct timespec ts;
    struct tm tm;
    size_t n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ %s ",
                          ts.tv_nsec / 1000000, tag);
    if (n < sizeof(line)) {
        int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        if (m > 0) {
            n += (size_t)m;
        }
    }
    if (n > sizeof(line) - 2) {
        n = sizeof(line) - 2;
    }
    line[n++] = '\n';
    line[n] = '\0';
    fputs(line, stderr);
}

void
log_write(enum log_level lvl, const char *tag, const char *fmt, ...)
{
    va_list ap;

    (void)lvl;
    va_start(ap, fmt);
    log_vwrite(tag, fmt, ap);
    va_end(ap);
}

_Noreturn void
log_fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vwrite("FATAL", fmt, ap);
    va_end(ap);
    exit(1);
}

_Noreturn void
log_panic(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    char where[256];

    snprintf(where, sizeof(where), "PANIC %s:%d:", file, line);
    va_start(ap, fmt);
    log_vwrite(where, fmt, ap);
    va_end(ap);
    abort();
}
