/* metrics.h - the node's counters and gauges, rendered as Prometheus text
 * (GET /metrics) and JSON (GET /metrics.json) with KumoMTA's metric names
 * (total_messages_received{service=...}, total_messages_delivered,
 * total_messages_transfail, total_messages_fail, connection_count,
 * scheduled_count{queue=...}, ready_count{service=...}, ...). A metric is
 * a name plus at most one label. Loop thread only. */
#ifndef KUMO_METRICS_H
#define KUMO_METRICS_H
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct buf;
struct metrics; /* opaque */

/* The caller owns *out (metrics_free). */
int metrics_new(struct metrics **out);
void metrics_free(struct metrics *m);

/* Add `by` to the counter name{label="value"} (label NULL: no label),
 * creating it at 0. `help` is the HELP text, used on first creation. */
void metrics_inc(struct metrics *m, const char *name, const char *help,
                 const char *label, const char *value, uint64_t by);
/* Set a gauge (created on first use). */
void metrics_set(struct metrics *m, const char *name, const char *help,
                 const char *label, const char *value, double v);
/* Drop every gauge series of `name` (before re-setting a family whose
 * label values come and go, such as scheduled_count per queue). */
void metrics_clear(struct metrics *m, const char *name);

/* Prometheus text exposition format 0.0.4, appended to out. */
void metrics_render_text(const struct metrics *m, struct buf *out);
/* {"name": {"help":..., "type":"counter"|"gauge", "value": v} or with a
 * label {"label": {"value1": v, ...}}}; the caller owns the result. */
json_t *metrics_render_json(const struct metrics *m);
#endif /* KUMO_METRICS_H */
