/* buf.h - a growable, binary-safe byte string, always NUL-terminated after
 * `len`. Usually embedded in its owner. Appending may move `data`: never
 * keep a pointer into a buf across a call that may append. */
#ifndef KUMO_BUF_H
#define KUMO_BUF_H
#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data; /* NULL until the first append, else NUL-terminated */
    size_t len;
    size_t cap;
};

#define BUF_INIT                                                               \
    {                                                                          \
        NULL, 0, 0                                                             \
    }

void buf_init(struct buf *b);
void buf_fini(struct buf *b);
/* Make room for `extra` more bytes beyond len. */
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_append_str(struct buf *b, const char *s);
void buf_append_char(struct buf *b, char c);
void buf_appendf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void buf_vappendf(struct buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Drop the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
/* Set len to 0, keep the storage. */
void buf_reset(struct buf *b);
/* Move src's storage into dst (dst is finalised first); src becomes empty. */
void buf_move(struct buf *dst, struct buf *src);
/* Replace bytes [off, off+n) with p[0..m). */
void buf_splice(struct buf *b, size_t off, size_t n, const void *p, size_t m);
/* Data pointer that is never NULL (an empty string when nothing appended). */
const char *buf_cstr(const struct buf *b);
#endif /* KUMO_BUF_H */
