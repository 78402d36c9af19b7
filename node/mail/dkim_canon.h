/* dkim_canon.h - DKIM canonicalization and header selection (RFC 6376
 * 3.4, 5.4): the pure text work of signing, no keys and no crypto. Used
 * by dkim.c on the thread pool and by the unit tests. No state; safe on
 * any thread. */
#ifndef KUMO_DKIM_CANON_H
#define KUMO_DKIM_CANON_H
#include <stdbool.h>
#include <stddef.h>

struct buf;

enum dkim_canon {
    DKIM_CANON_SIMPLE,
    DKIM_CANON_RELAXED,
};

/* Receives canonical bytes in order (a digest update, or a test buffer). */
typedef void (*dkim_canon_emit_cb)(void *arg, const char *p, size_t n);

/* Canonicalize the body `p`/`n` (the bytes after the header block's empty
 * line, CRLF line ends) and hand the result to `emit` in pieces. simple:
 * trailing empty lines removed, a missing final CRLF added, an empty body
 * becomes one CRLF. relaxed: runs of WSP become one SP, WSP at line ends
 * is removed, trailing empty lines removed, an empty body stays empty. */
void dkim_canon_body(enum dkim_canon c, const char *p, size_t n,
                     dkim_canon_emit_cb emit, void *arg);

/* Append the canonical form of one header field `p`/`n` (name, colon,
 * value with its folds; a trailing CRLF may be included or not) to out.
 * simple: the bytes as they are. relaxed: lowercased name, folds
 * unfolded, WSP runs as one SP, no WSP around the colon or at the end.
 * With `crlf` the result ends in CRLF (every signed field except the
 * DKIM-Signature being made). */
void dkim_canon_header(enum dkim_canon c, const char *p, size_t n, bool crlf,
                       struct buf *out);

/* One header field of a message: `p`/`len` spans it with its folds and
 * its final CRLF; the name is p[0..name_len), without trailing WSP. */
struct dkim_field {
    const char *p;
    size_t len;
    size_t name_len;
};

/* Split the header block of `data` (up to the first empty line, or all
 * of it) into fields. Returns the number of fields; *out (the caller
 * frees it) points into data. *body_off is where the body starts. A line
 * without a colon ends the header block (it is not a header). */
size_t dkim_fields_split(const char *data, size_t len, struct dkim_field **out,
                         size_t *body_off);

/* RFC 6376 5.4.2: for each name of `names` in order, the next unused
 * field of that name counting from the bottom, or NULL once none is
 * left (a signed absent field: the null string). out[] has n_names
 * slots. */
void dkim_fields_select(const struct dkim_field *f, size_t nf,
                        const char *const *names, size_t n_names,
                        const struct dkim_field **out);

/* over_sign (KumoMTA): each distinct name of `names` (case-insensitive,
 * first spelling kept) repeated N+1 times, N being how many fields of
 * that name the message has, so that an added field breaks the
 * signature. Returns the count; *out (the caller frees the array, not
 * the strings, which point into names) holds the expanded list. */
size_t dkim_names_oversign(const struct dkim_field *f, size_t nf,
                           const char *const *names, size_t n_names,
                           const char ***out);

/* True if the field's name equals `name`, ignoring ASCII case. */
bool dkim_field_is(const struct dkim_field *f, const char *name);
#endif /* KUMO_DKIM_CANON_H */
