/* dkim_canon.c - RFC 6376 canonicalization (3.4) and header selection
 * (5.4). Pure functions over borrowed bytes; the body is streamed to a
 * callback so that a large message is hashed without a canonical copy. */
#include "dkim_canon.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/km.h"

static bool
dkim_canon_is_wsp(char c)
{
    return c == ' ' || c == '\t';
}

static char
dkim_canon_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Batches small pieces (the relaxed body's words) into fewer emits. */
struct dkim_canon_out {
    dkim_canon_emit_cb emit;
    void *arg;
    size_t len;
    char buf[4096];
};

static void
dkim_canon_out_flush(struct dkim_canon_out *o)
{
    if (o->len > 0) {
        o->emit(o->arg, o->buf, o->len);
        o->len = 0;
    }
}

static void
dkim_canon_out_put(struct dkim_canon_out *o, const char *p, size_t n)
{
    if (n >= sizeof(o->buf)) {
        dkim_canon_out_flush(o);
        o->emit(o->arg, p, n);
        return;
    }
    if (o->len + n > sizeof(o->buf)) {
        dkim_canon_out_flush(o);
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

/* Emit the empty lines held back: they were not trailing after all. */
static void
dkim_canon_out_crlfs(struct dkim_canon_out *o, size_t *pending)
{
    for (; *pending > 0; (*pending)--) {
        dkim_canon_out_put(o, "\r\n", 2);
    }
}

/* One relaxed body line (without its CRLF): WSP runs become one SP and
 * trailing WSP goes (3.4.4). Returns false if nothing is left of it. */
static bool
dkim_canon_relaxed_line(struct dkim_canon_out *o, const char *p, size_t n,
                        size_t *pending)
{
    size_t i = 0;
    bool started = false;

    while (i < n) {
        size_t j = i;
        if (dkim_canon_is_wsp(p[i])) {
            while (j < n && dkim_canon_is_wsp(p[j])) {
                j++;
            }
            if (j < n) {
                /* Inner (or leading) run: one SP. */
                if (!started) {
                    dkim_canon_out_crlfs(o, pending);
                    started = true;
                }
                dkim_canon_out_put(o, " ", 1);
            }
        } else {
            while (j < n && !dkim_canon_is_wsp(p[j])) {
                j++;
            }
            if (!started) {
                dkim_canon_out_crlfs(o, pending);
                started = true;
            }
            dkim_canon_out_put(o, p + i, j - i);
        }
        i = j;
    }
    return started;
}

void
dkim_canon_body(enum dkim_canon c, const char *p, size_t n,
                dkim_canon_emit_cb emit, void *arg)
{
    struct dkim_canon_out o = {.emit = emit, .arg = arg, .len = 0};
    size_t pending = 0; /* empty lines seen but not yet emitted */
    bool any = false;
    size_t i = 0;

    while (i < n) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t end, next;

        /* Lines end in CRLF; a LF without CR is part of the line. */
        while (nl != NULL && (nl == p + i || nl[-1] != '\r')) {
            nl = memchr(nl + 1, '\n', (size_t)(p + n - (nl + 1)));
        }
        if (nl != NULL) {
            end = (size_t)(nl - p) - 1;
            next = (size_t)(nl - p) + 1;
        } else {
            /* Last line without CRLF: canonicalized as if it had one. */
            end = n;
            next = n;
        }
        if (c == DKIM_CANON_SIMPLE) {
            if (end > i) {
                dkim_canon_out_crlfs(&o, &pending);
                dkim_canon_out_put(&o, p + i, end - i);
                dkim_canon_out_put(&o, "\r\n", 2);
                any = true;
            } else {
                pending++;
            }
        } else if (dkim_canon_relaxed_line(&o, p + i, end - i, &pending)) {
            dkim_canon_out_put(&o, "\r\n", 2);
            any = true;
        } else {
            pending++;
        }
        i = next;
    }
    /* 3.4.3: an empty (or all-empty-lines) body is one CRLF in simple;
     * 3.4.4: and nothing at all in relaxed. */
    if (!any && c == DKIM_CANON_SIMPLE) {
        dkim_canon_out_put(&o, "\r\n", 2);
    }
    dkim_canon_out_flush(&o);
}

void
dkim_canon_header(enum dkim_canon c, const char *p, size_t n, bool crlf,
                  struct buf *out)
{
    size_t colon, i, end = n;
    bool space = false;

    if (end >= 2 && p[end - 2] == '\r' && p[end - 1] == '\n') {
        end -= 2;
    }
    if (c == DKIM_CANON_SIMPLE) {
        buf_append(out, p, end);
        if (crlf) {
            buf_append(out, "\r\n", 2);
        }
        return;
    }
    /* 3.4.2: lowercase the name, drop WSP before the colon. */
    const char *cp = memchr(p, ':', end);
    colon = cp != NULL ? (size_t)(cp - p) : end;
    size_t name_end = colon;
    while (name_end > 0 && dkim_canon_is_wsp(p[name_end - 1])) {
        name_end--;
    }
    for (i = 0; i < name_end; i++) {
        buf_append_char(out, dkim_canon_lower(p[i]));
    }
    buf_append_char(out, ':');
    /* The value: unfold, one SP per WSP run, no WSP at either end. */
    bool started = false;
    for (i = colon + 1; i < end; i++) {
        char ch = p[i];
        if (ch == '\r' && i + 1 < end && p[i + 1] == '\n') {
            i++;
            continue;
        }
        if (dkim_canon_is_wsp(ch)) {
            space = started;
            continue;
        }
        if (space) {
            buf_append_char(out, ' ');
            space = false;
        }
        buf_append_char(out, ch);
        started = true;
    }
    if (crlf) {
        buf_append(out, "\r\n", 2);
    }
}

size_t
dkim_fields_split(const char *data, size_t len, struct dkim_field **out,
                  size_t *body_off)
{
    struct dkim_field *f = NULL;
    size_t n = 0, cap = 0, i = 0;

    while (i < len) {
        /* The empty line that ends the header block. */
        if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n') {
            i += 2;
            break;
        }
        size_t start = i;
        const char *colon = NULL;
        /* Through every line of this field: a line starting with WSP
         * continues it (RFC 5322 2.2.3). */
        for (;;) {
            const char *nl = memchr(data + i, '\n', len - i);
            size_t eol = nl != NULL ? (size_t)(nl - data) + 1 : len;
            if (colon == NULL) {
                colon = memchr(data + start, ':', eol - start);
            }
            i = eol;
            if (i >= len || !dkim_canon_is_wsp(data[i])) {
                break;
            }
        }
        if (colon == NULL) {
            /* Not a header field: the body starts here. */
            i = start;
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            f = km_realloc(f, cap * sizeof(*f));
        }
        size_t name_len = (size_t)(colon - (data + start));
        while (name_len > 0 && dkim_canon_is_wsp(data[start + name_len - 1])) {
            name_len--;
        }
        f[n].p = data + start;
        f[n].len = i - start;
        f[n].name_len = name_len;
        n++;
    }
    *out = f;
    *body_off = i;
    return n;
}

bool
dkim_field_is(const struct dkim_field *f, const char *name)
{
    return km_ascii_ieq(f->p, f->name_len, name);
}

void
dkim_fields_select(const struct dkim_field *f, size_t nf,
                   const char *const *names, size_t n_names,
                   const struct dkim_field **out)
{
    bool *used = km_calloc(nf ? nf : 1, sizeof(*used));

    for (size_t k = 0; k < n_names; k++) {
        out[k] = NULL;
        for (size_t j = nf; j-- > 0;) {
            if (!used[j] && dkim_field_is(&f[j], names[k])) {
                used[j] = true;
                out[k] = &f[j];
                break;
            }
        }
    }
    free(used);
}

size_t
dkim_names_oversign(const struct dkim_field *f, size_t nf,
                    const char *const *names, size_t n_names, const char ***out)
{
    size_t total = 0, cap = n_names + nf + 1, i, j;
    const char **list = km_calloc(cap, sizeof(*list));

    for (i = 0; i < n_names; i++) {
        bool seen = false;
        size_t count = 0;
        for (j = 0; j < i && !seen; j++) {
            seen = strcasecmp(names[j], names[i]) == 0;
        }
        if (seen) {
            continue;
        }
        for (j = 0; j < nf; j++) {
            count += dkim_field_is(&f[j], names[i]);
        }
        if (total + count + 1 > cap) {
            cap = (total + count + 1) * 2;
            list = km_realloc(list, cap * sizeof(*list));
        }
        for (j = 0; j <= count; j++) {
            list[total++] = names[i];
        }
    }
    *out = list;
    return total;
}
