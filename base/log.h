/* log.h - the diagnostic log (not the JSON log records: see logrec.h).
 * One line per event on stderr: `2026-11-24T15:00:00.123Z INFO module: what`.
 * The level and trace categories are set before the loop starts (and may be
 * changed later from the loop thread); the macros check the level before
 * evaluating their arguments. Safe to call from any thread. */
#ifndef KUMO_LOG_H
#define KUMO_LOG_H
#include <stdbool.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

enum log_trace {
    TRACE_SMTP = 1 << 0,
    TRACE_QUEUE = 1 << 1,
    TRACE_SPOOL = 1 << 2,
    TRACE_CLUSTER = 1 << 3,
    TRACE_POLICY = 1 << 4,
    TRACE_IO = 1 << 5,
};

/* Current settings: read by the macros. Written only by log_set_*(). */
extern enum log_level log_level_current;
extern unsigned log_trace_current;

void log_set_level(enum log_level lvl);
/* Parse a filter such as "info", "debug", "warn,smtp,cluster" (level and
 * trace categories, KumoMTA-style "kumod=debug" accepted). 0 or KM_EINVAL. */
int log_set_filter(const char *filter);
void log_write(enum log_level lvl, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
_Noreturn void log_fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
_Noreturn void log_panic(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG_AT(lvl, tag, ...)                                                  \
    do {                                                                       \
        if ((lvl) <= log_level_current) {                                      \
            log_write((lvl), (tag), __VA_ARGS__);                              \
        }                                                                      \
    } while (0)
#define LOG_ERROR(...) LOG_AT(LOG_LVL_ERROR, "ERROR", __VA_ARGS__)
#define LOG_WARN(...)  LOG_AT(LOG_LVL_WARN, "WARN", __VA_ARGS__)
#define LOG_INFO(...)  LOG_AT(LOG_LVL_INFO, "INFO", __VA_ARGS__)
#define LOG_DEBUG(...) LOG_AT(LOG_LVL_DEBUG, "DEBUG", __VA_ARGS__)
#define LOG_TRACE(cat, ...)                                                    \
    do {                                                                       \
        if (log_trace_current & (cat)) {                                       \
            log_write(LOG_LVL_DEBUG, "TRACE", __VA_ARGS__);                    \
        }                                                                      \
    } while (0)
/* Startup only: bad config, cannot bind. Exits with status 1. */
#define km_fatal(...) log_fatal(__VA_ARGS__)
/* A bug: abort() for a core. */
#define km_panic(...) log_panic(__FILE__, __LINE__, __VA_ARGS__)
#endif /* KUMO_LOG_H */
