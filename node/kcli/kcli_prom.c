/* kcli_prom.c - a parser for the Prometheus text exposition format 0.0.4,
 * enough for kcli queue-summary to read GET /metrics: samples with their
 * labels and value; # HELP / # TYPE lines and timestamps are ignored. A
 * line it cannot read is skipped and counted rather than failing the whole
 * page. Owns the parsed samples; no I/O. */
#include "kcli/kcli.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/km.h"

struct kcli_prom {
    struct kcli_prom_sample *samples;
    size_t n;
    size_t cap;
    size_t bad;
};

/* A view of the line being parsed. */
struct kcli_prom_cursor {
    const char *p;
    const char *end;
};

static bool
kcli_prom_is_name_char(char ch, bool first)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
        ch == ':') {
        return true;
    }
    return !first && ch >= '0' && ch <= '9';
}

static void
kcli_prom_skip_blanks(struct kcli_prom_cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) {
        c->p++;
    }
}

static char *
kcli_prom_name(struct kcli_prom_cursor *c)
{
    const char *start = c->p;

    while (c->p < c->end && kcli_prom_is_name_char(*c->p, c->p == start)) {
        c->p++;
    }
    if (c->p == start) {
        return NULL;
    }
    return km_strndup(start, (size_t)(c->p - start));
}

/* A quoted label value with \\ \" \n escapes; the cursor is on the '"'. */
static char *
kcli_prom_label_value(struct kcli_prom_cursor *c)
{
    struct buf v = BUF_INIT;

    if (c->p >= c->end || *c->p != '"') {
        return NULL;
    }
    c->p++;
    while (c->p < c->end && *c->p != '"') {
        if (*c->p == '\\' && c->p + 1 < c->end) {
            c->p++;
            buf_append_char(&v, *c->p == 'n' ? '\n' : *c->p);
        } else {
            buf_append_char(&v, *c->p);
        }
        c->p++;
    }
    if (c->p >= c->end) {
        buf_fini(&v);
        return NULL;
    }
    c->p++;
    {
        char *s = km_strdup(buf_cstr(&v));

        buf_fini(&v);
        return s;
    }
}

static void
kcli_prom_sample_fini(struct kcli_prom_sample *s)
{
    for (size_t i = 0; i < s->n_labels; i++) {
        free(s->label_names[i]);
        free(s->label_values[i]);
    }
    free(s->label_names);
    free(s->label_values);
    free(s->name);
    memset(s, 0, sizeof(*s));
}

static int
kcli_prom_labels(struct kcli_prom_cursor *c, struct kcli_prom_sample *s)
{
    c->p++; /* '{' */
    for (;;) {
        char *name;
        char *value;

        kcli_prom_skip_blanks(c);
        if (c->p < c->end && *c->p == '}') {
            c->p++;
            return 0;
        }
        name = kcli_prom_name(c);
        if (name == NULL) {
            return KM_EINVAL;
        }
        kcli_prom_skip_blanks(c);
        if (c->p >= c->end || *c->p != '=') {
            free(name);
            return KM_EINVAL;
        }
        c->p++;
        kcli_prom_skip_blanks(c);
        value = kcli_prom_label_value(c);
        if (value == NULL) {
            free(name);
            return KM_EINVAL;
        }
        s->label_names =
            km_realloc(s->label_names, (s->n_labels + 1) * sizeof(char *));
        s->label_values =
            km_realloc(s->label_values, (s->n_labels + 1) * sizeof(char *));
        s->label_names[s->n_labels] = name;
        s->label_values[s->n_labels] = value;
        s->n_labels++;
        kcli_prom_skip_blanks(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
        }
    }
}

/* One sample line into s (zeroed). KM_EINVAL if it is malformed. */
static int
kcli_prom_line(struct kcli_prom_cursor *c, struct kcli_prom_sample *s)
{
    char num[64];
    char *endp = NULL;
    const char *start;
    size_t n;

    s->name = kcli_prom_name(c);
    if (s->name == NULL) {
        return KM_EINVAL;
    }
    if (c->p < c->end && *c->p == '{' && kcli_prom_labels(c, s) != 0) {
        return KM_EINVAL;
    }
    kcli_prom_skip_blanks(c);
    start = c->p;
    while (c->p < c->end && *c->p != ' ' && *c->p != '\t') {
        c->p++;
    }
    n = (size_t)(c->p - start);
    if (n == 0 || n >= sizeof(num)) {
        return KM_EINVAL;
    }
    memcpy(num, start, n);
    num[n] = '\0';
    s->value = strtod(num, &endp);
    if (*endp != '\0') {
        return KM_EINVAL;
    }
    return 0;
}

static void
kcli_prom_add(struct kcli_prom *pr, struct kcli_prom_sample *s)
{
    if (pr->n == pr->cap) {
        pr->cap = pr->cap * 2 + 16;
        pr->samples = km_realloc(pr->samples, pr->cap * sizeof(*pr->samples));
    }
    pr->samples[pr->n++] = *s;
}

int
kcli_prom_parse(const char *p, size_t n, struct kcli_prom **out)
{
    struct kcli_prom *pr = km_calloc(1, sizeof(*pr));
    const char *end = p + n;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        struct kcli_prom_cursor c = {p, eol != NULL ? eol : end};
        struct kcli_prom_sample s = {0};

        p = eol != NULL ? eol + 1 : end;
        if (c.end > c.p && c.end[-1] == '\r') {
            c.end--;
        }
        kcli_prom_skip_blanks(&c);
        if (c.p == c.end || *c.p == '#') {
            continue;
        }
        if (kcli_prom_line(&c, &s) != 0) {
            kcli_prom_sample_fini(&s);
            pr->bad++;
            continue;
        }
        kcli_prom_add(pr, &s);
    }
    *out = pr;
    return 0;
}

void
kcli_prom_free(struct kcli_prom *pr)
{
    if (pr == NULL) {
        return;
    }
    for (size_t i = 0; i < pr->n; i++) {
        kcli_prom_sample_fini(&pr->samples[i]);
    }
    free(pr->samples);
    free(pr);
}

size_t
kcli_prom_count(const struct kcli_prom *pr)
{
    return pr->n;
}

size_t
kcli_prom_bad_lines(const struct kcli_prom *pr)
{
    return pr->bad;
}

const struct kcli_prom_sample *
kcli_prom_at(const struct kcli_prom *pr, size_t i)
{
    KM_ASSERT(i < pr->n);
    return &pr->samples[i];
}

const char *
kcli_prom_label(const struct kcli_prom_sample *s, const char *name)
{
    for (size_t i = 0; i < s->n_labels; i++) {
        if (strcmp(s->label_names[i], name) == 0) {
            return s->label_values[i];
        }
    }
    return NULL;
}

int
kcli_prom_find(const struct kcli_prom *pr, const char *name, const char *label,
               const char *value, double *out)
{
    for (size_t i = 0; i < pr->n; i++) {
        const struct kcli_prom_sample *s = &pr->samples[i];
        const char *v;

        if (strcmp(s->name, name) != 0) {
            continue;
        }
        if (label != NULL) {
            v = kcli_prom_label(s, label);
            if (v == NULL || strcmp(v, value) != 0) {
                continue;
            }
        }
        *out = s->value;
        return 0;
    }
    return KM_ENOENT;
}
