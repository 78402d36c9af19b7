/* buf.c - growable byte strings. See buf.h. */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "km.h"

void
buf_init(struct buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void
buf_fini(struct buf *b)
{
    free(b->data);
    buf_init(b);
}

void
buf_reserve(struct buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;

    if (need <= b->cap) {
        return;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        cap *= 2;
    }
    b->data = km_realloc(b->data, cap);
    b->cap = cap;
}

void
buf_append(struct buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    if (n > 0) {
        memmove(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
}

void
buf_append_str(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void
buf_append_char(struct buf *b, char c)
{
    buf_append(b, &c, 1);
}

void
buf_vappendf(struct buf *b, const char *fmt, va_list ap)
{
    va_list ap2;

    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        return;
    }
    buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void
buf_appendf(struct buf *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    buf_vappendf(b, fmt, ap);
    va_end(ap);
}

void
buf_consume(struct buf *b, size_t n)
{
    KM_ASSERT(n <= b->len);
    if (n == 0) {
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

void
buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data != NULL) {
        b->data[0] = '\0';
    }
}

void
buf_move(struct buf *dst, struct buf *src)
{
    buf_fini(dst);
    *dst = *src;
    buf_init(src);
}

void
buf_splice(struct buf *b, size_t off, size_t n, const void *p, size_t m)
{
    KM_ASSERT(off <= b->len && n <= b->len - off);
    if (m > n) {
        buf_reserve(b, m - n);
    }
    if (b->data == NULL) {
        buf_reserve(b, 0);
    }
    memmove(b->data + off + m, b->data + off + n, b->len - off - n);
    if (m > 0) {
        memcpy(b->data + off, p, m);
    }
    b->len = b->len - n + m;
    b->data[b->len] = '\0';
}

const char *
buf_cstr(const struct buf *b)
{
    return b->data != NULL ? b->data : "";
}
