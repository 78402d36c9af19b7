/* metrics.c - the node's counters and gauges: families keyed by name in a
 * km_map, each with its series (one per label value). Rendered sorted by
 * family name and label value so the output is stable, in Prometheus text
 * format 0.0.4 or as JSON. Knows nothing of where the numbers come from:
 * callers increment and set. Loop thread only. */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/km.h"
#include "base/km_map.h"

enum metrics_type {
    METRICS_COUNTER,
    METRICS_GAUGE,
};

struct metrics_series {
    char *label; /* NULL: the unlabelled series */
    char *value;
    uint64_t count; /* counters */
    double gauge;   /* gauges */
};

struct metrics_family {
    char *name;
    char *help;
    enum metrics_type type;
    struct metrics_series *series;
    size_t n_series;
};

struct metrics {
    struct km_map *families; /* name -> struct metrics_family */
};

int
metrics_new(struct metrics **out)
{
    struct metrics *m = km_calloc(1, sizeof(*m));

    m->families = km_map_new();
    *out = m;
    return 0;
}

static void
metrics_family_clear(struct metrics_family *f)
{
    for (size_t i = 0; i < f->n_series; i++) {
        free(f->series[i].label);
        free(f->series[i].value);
    }
    free(f->series);
    f->series = NULL;
    f->n_series = 0;
}

static void
metrics_family_free(struct metrics_family *f)
{
    metrics_family_clear(f);
    free(f->name);
    free(f->help);
    free(f);
}

void
metrics_free(struct metrics *m)
{
    struct km_map_iter it;
    void *v;

    if (m == NULL) {
        return;
    }
    km_map_iter_init(&it, m->families);
    while (km_map_iter_next(&it, NULL, &v)) {
        metrics_family_free(v);
    }
    km_map_free(m->families);
    free(m);
}

static bool
metrics_str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a == b;
    }
    return strcmp(a, b) == 0;
}

/* The series name{label="value"}, created (at zero) if missing. */
static struct metrics_series *
metrics_series_get(struct metrics *m, const char *name, const char *help,
                   enum metrics_type type, const char *label, const char *value)
{
    struct metrics_family *f = km_map_get(m->families, name);
    struct metrics_series *s;

    if (f == NULL) {
        f = km_calloc(1, sizeof(*f));
        f->name = km_strdup(name);
        f->help = km_strdup(help != NULL ? help : "");
        f->type = type;
        km_map_put(m->families, name, f, NULL);
    }
    if (label == NULL) {
        value = NULL;
    } else if (value == NULL) {
        value = "";
    }
    for (size_t i = 0; i < f->n_series; i++) {
        s = &f->series[i];
        if (metrics_str_eq(s->label, label) &&
            metrics_str_eq(s->value, value)) {
            return s;
        }
    }
    f->series = km_realloc(f->series, (f->n_series + 1) * sizeof(*f->series));
    s = &f->series[f->n_series++];
    memset(s, 0, sizeof(*s));
    s->label = label != NULL ? km_strdup(label) : NULL;
    s->value = value != NULL ? km_strdup(value) : NULL;
    return s;
}

void
metrics_inc(struct metrics *m, const char *name, const char *help,
            const char *label, const char *value, uint64_t by)
{
    struct metrics_series *s =
        metrics_series_get(m, name, help, METRICS_COUNTER, label, value);

    s->count += by;
    s->gauge = (double)s->count;
}

void
metrics_set(struct metrics *m, const char *name, const char *help,
            const char *label, const char *value, double v)
{
    struct metrics_series *s =
        metrics_series_get(m, name, help, METRICS_GAUGE, label, value);

    s->gauge = v;
    s->count = v > 0 ? (uint64_t)v : 0;
}

void
metrics_clear(struct metrics *m, const char *name)
{
    struct metrics_family *f = km_map_get(m->families, name);

    if (f != NULL) {
        metrics_family_clear(f);
    }
}

static int
metrics_cmp_family(const void *a, const void *b)
{
    const struct metrics_family *fa = *(struct metrics_family *const *)a;
    const struct metrics_family *fb = *(struct metrics_family *const *)b;

    return strcmp(fa->name, fb->name);
}

static int
metrics_cmp_series(const void *a, const void *b)
{
    const struct metrics_series *sa = *(struct metrics_series *const *)a;
    const struct metrics_series *sb = *(struct metrics_series *const *)b;
    int c;

    /* The unlabelled series first, then by label name and value. */
    if (sa->label == NULL || sb->label == NULL) {
        return (sa->label != NULL) - (sb->label != NULL);
    }
    c = strcmp(sa->label, sb->label);
    return c != 0 ? c : strcmp(sa->value, sb->value);
}

/* Families sorted by name; the caller frees the array (not the entries). */
static struct metrics_family **
metrics_sorted(const struct metrics *m, size_t *n)
{
    struct metrics_family **v;
    struct km_map_iter it;
    void *f;
    size_t i = 0;

    v = km_calloc(km_map_count(m->families) + 1, sizeof(*v));
    km_map_iter_init(&it, m->families);
    while (km_map_iter_next(&it, NULL, &f)) {
        v[i++] = f;
    }
    qsort(v, i, sizeof(*v), metrics_cmp_family);
    *n = i;
    return v;
}

static struct metrics_series **
metrics_sorted_series(const struct metrics_family *f)
{
    struct metrics_series **v = km_calloc(f->n_series + 1, sizeof(*v));

    for (size_t i = 0; i < f->n_series; i++) {
        v[i] = &f->series[i];
    }
    qsort(v, f->n_series, sizeof(*v), metrics_cmp_series);
    return v;
}

/* Exposition format 0.0.4: HELP escapes \ and newline; label values also
 * escape the double quote. */
static void
metrics_escape(struct buf *out, const char *s, bool quote)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\') {
            buf_append(out, "\\\\", 2);
        } else if (*s == '\n') {
            buf_append(out, "\\n", 2);
        } else if (quote && *s == '"') {
            buf_append(out, "\\\"", 2);
        } else {
            buf_append_char(out, *s);
        }
    }
}

static void
metrics_format_double(struct buf *out, double v)
{
    if (isnan(v)) {
        buf_append_str(out, "NaN");
    } else if (isinf(v)) {
        buf_append_str(out, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        buf_appendf(out, "%.0f", v);
    } else {
        buf_appendf(out, "%.17g", v);
    }
}

void
metrics_render_text(const struct metrics *m, struct buf *out)
{
    size_t n;
    struct metrics_family **fams = metrics_sorted(m, &n);

    for (size_t i = 0; i < n; i++) {
        const struct metrics_family *f = fams[i];
        struct metrics_series **ser;

        if (f->n_series == 0) {
            continue;
        }
        buf_appendf(out, "# HELP %s ", f->name);
        metrics_escape(out, f->help, false);
        buf_appendf(out, "\n# TYPE %s %s\n", f->name,
                    f->type == METRICS_COUNTER ? "counter" : "gauge");
        ser = metrics_sorted_series(f);
        for (size_t j = 0; j < f->n_series; j++) {
            const struct metrics_series *s = ser[j];

            buf_append_str(out, f->name);
            if (s->label != NULL) {
                buf_appendf(out, "{%s=\"", s->label);
                metrics_escape(out, s->value, true);
                buf_append_str(out, "\"}");
            }
            buf_append_char(out, ' ');
            if (f->type == METRICS_COUNTER) {
                buf_appendf(out, "%llu", (unsigned long long)s->count);
            } else {
                metrics_format_double(out, s->gauge);
            }
            buf_append_char(out, '\n');
        }
        free(ser);
    }
    free(fams);
}

static json_t *
metrics_json_number(const struct metrics_family *f,
                    const struct metrics_series *s)
{
    if (f->type == METRICS_COUNTER) {
        return json_integer((json_int_t)s->count);
    }
    if (s->gauge == floor(s->gauge) && fabs(s->gauge) < 1e15) {
        return json_integer((json_int_t)s->gauge);
    }
    return json_real(s->gauge);
}

json_t *
metrics_render_json(const struct metrics *m)
{
    json_t *root = json_object();
    size_t n;
    struct metrics_family **fams = metrics_sorted(m, &n);

    for (size_t i = 0; i < n; i++) {
        const struct metrics_family *f = fams[i];
        json_t *fam, *value = NULL;

        if (f->n_series == 0) {
            continue;
        }
        fam = json_object();
        json_object_set_new(fam, "help", json_string(f->help));
        json_object_set_new(
            fam, "type",
            json_string(f->type == METRICS_COUNTER ? "counter" : "gauge"));
        for (size_t j = 0; j < f->n_series; j++) {
            const struct metrics_series *s = &f->series[j];
            json_t *by_label;

            if (s->label == NULL) {
                json_decref(value);
                value = metrics_json_number(f, s);
                continue;
            }
            if (value == NULL || !json_is_object(value)) {
                json_decref(value);
                value = json_object();
            }
            by_label = json_object_get(value, s->label);
            if (by_label == NULL) {
                by_label = json_object();
                json_object_set_new(value, s->label, by_label);
            }
            json_object_set_new(by_label, s->value, metrics_json_number(f, s));
        }
        json_object_set_new(fam, "value", value);
        json_object_set_new(root, f->name, fam);
    }
    free(fams);
    return root;
}
