/* kcli_table.c - plain-text tables for kcli's listings: a header row and
 * cells padded to the widest cell of each column (UTF-8 characters, not
 * bytes), two spaces between columns, numbers right-aligned on request.
 * Owns copies of its cells; renders into a buf, never to a stream. */
#include "kcli/kcli.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/km.h"

struct kcli_table {
    size_t ncols;
    bool *right;    /* per column */
    char **cells;   /* (nrows + 1) * ncols; row 0 is the header */
    size_t nrows;   /* data rows */
    size_t caprows; /* rows allocated, header included */
};

/* Width in characters: count bytes that do not continue a UTF-8 sequence. */
static size_t
kcli_table_width(const char *s)
{
    size_t w = 0;

    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if ((*p & 0xC0) != 0x80) {
            w++;
        }
    }
    return w;
}

static void
kcli_table_pad(struct buf *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        buf_append_char(out, ' ');
    }
}

static void
kcli_table_store(struct kcli_table *t, const char *const *cells)
{
    size_t row = t->nrows + 1;

    if (row + 1 > t->caprows) {
        t->caprows = t->caprows * 2 + 4;
        t->cells =
            km_realloc(t->cells, t->caprows * t->ncols * sizeof(*t->cells));
    }
    for (size_t c = 0; c < t->ncols; c++) {
        t->cells[row * t->ncols + c] =
            km_strdup(cells[c] != NULL ? cells[c] : "-");
    }
}

int
kcli_table_new(size_t ncols, const char *const *headers,
               struct kcli_table **out)
{
    struct kcli_table *t;

    if (ncols == 0) {
        return KM_EINVAL;
    }
    t = km_calloc(1, sizeof(*t));
    t->ncols = ncols;
    t->right = km_calloc(ncols, sizeof(*t->right));
    t->caprows = 4;
    t->cells = km_calloc(t->caprows * ncols, sizeof(*t->cells));
    for (size_t c = 0; c < ncols; c++) {
        t->cells[c] = km_strdup(headers[c] != NULL ? headers[c] : "");
    }
    *out = t;
    return 0;
}

void
kcli_table_free(struct kcli_table *t)
{
    if (t == NULL) {
        return;
    }
    for (size_t i = 0; i < (t->nrows + 1) * t->ncols; i++) {
        free(t->cells[i]);
    }
    free(t->cells);
    free(t->right);
    free(t);
}

void
kcli_table_align_right(struct kcli_table *t, size_t col)
{
    KM_ASSERT(col < t->ncols);
    t->right[col] = true;
}

void
kcli_table_add_row(struct kcli_table *t, const char *const *cells)
{
    /* kcli_table_store() fills row nrows + 1 (after the header). */
    kcli_table_store(t, cells);
    t->nrows++;
}

size_t
kcli_table_rows(const struct kcli_table *t)
{
    return t->nrows;
}

void
kcli_table_render(const struct kcli_table *t, struct buf *out)
{
    size_t *w = km_calloc(t->ncols, sizeof(*w));

    for (size_t r = 0; r <= t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            size_t cw = kcli_table_width(t->cells[r * t->ncols + c]);

            w[c] = cw > w[c] ? cw : w[c];
        }
    }
    for (size_t r = 0; r <= t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            size_t pad = w[c] - kcli_table_width(cell);
            bool last = c + 1 == t->ncols;

            if (c > 0) {
                buf_append_str(out, "  ");
            }
            if (t->right[c]) {
                kcli_table_pad(out, pad);
                buf_append_str(out, cell);
            } else {
                buf_append_str(out, cell);
                if (!last) {
                    kcli_table_pad(out, pad);
                }
            }
        }
        buf_append_char(out, '\n');
    }
    free(w);
}
