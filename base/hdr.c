/* hdr.c - RFC 5322 header block edits. See hdr.h. Lines may end in CRLF or
 * a bare LF (messages are normalised to CRLF on reception, but policies can
 * set arbitrary data). */
#include "hdr.h"

#include <string.h>

#include "buf.h"
#include "km.h"

/* End of the line starting at `p` (index after its LF, or len). */
static size_t
hdr_line_end(const char *data, size_t len, size_t p)
{
    const char *nl = memchr(data + p, '\n', len - p);
    return nl != NULL ? (size_t)(nl - data) + 1 : len;
}

static bool
hdr_line_is_empty(const char *data, size_t p, size_t e)
{
    size_t n = e - p;
    return n == 0 || (n == 1 && data[p] == '\n') ||
           (n == 2 && data[p] == '\r' && data[p + 1] == '\n');
}

size_t
hdr_block_end(const char *data, size_t len)
{
    size_t p = 0;

    while (p < len) {
        size_t e = hdr_line_end(data, len, p);
        if (hdr_line_is_empty(data, p, e)) {
            return p;
        }
        p = e;
    }
    return len;
}

/* The extent [start, end) of one header field including continuation
 * lines, beginning at `p`. */
static size_t
hdr_field_end(const char *data, size_t block_end, size_t p)
{
    size_t e = hdr_line_end(data, block_end, p);
    while (e < block_end && (data[e] == ' ' || data[e] == '\t')) {
        e = hdr_line_end(data, block_end, e);
    }
    return e;
}

/* Unfold a field value [p, e) into out: drop CR/LF, keep the WSP. */
static void
hdr_unfold(const char *data, size_t p, size_t e, struct buf *out)
{
    while (p < e && (data[p] == ' ' || data[p] == '\t')) {
        p++;
    }
    while (e > p && (data[e - 1] == '\n' || data[e - 1] == '\r')) {
        e--;
    }
    for (size_t i = p; i < e; i++) {
        if (data[i] != '\r' && data[i] != '\n') {
            buf_append_char(out, data[i]);
        }
    }
}

void
hdr_foreach(const char *data, size_t len,
            bool (*fn)(void *arg, const char *name, size_t name_len,
                       const char *value, size_t value_len),
            void *arg)
{
    size_t end = hdr_block_end(data, len);
    size_t p = 0;
    struct buf val = BUF_INIT;

    while (p < end) {
        size_t e = hdr_field_end(data, end, p);
        const char *colon = memchr(data + p, ':', e - p);
        if (colon != NULL) {
            size_t name_len = (size_t)(colon - (data + p));
            buf_reset(&val);
            hdr_unfold(data, (size_t)(colon - data) + 1, e, &val);
            if (!fn(arg, data + p, name_len, buf_cstr(&val), val.len)) {
                break;
            }
        }
        p = e;
    }
    buf_fini(&val);
}

struct hdr_find {
    const char *name;
    struct buf *out;
    bool found;
};

static bool
hdr_find_cb(void *arg, const char *name, size_t name_len, const char *value,
            size_t value_len)
{
    struct hdr_find *f = arg;

    if (km_ascii_ieq(name, name_len, f->name)) {
        buf_append(f->out, value, value_len);
        f->found = true;
        return false;
    }
    return true;
}

bool
hdr_get_first(const char *data, size_t len, const char *name, struct buf *out)
{
    struct hdr_find f = {name, out, false};

    hdr_foreach(data, len, hdr_find_cb, &f);
    return f.found;
}

void
hdr_append(struct buf *msg, const char *name, const char *value)
{
    size_t end = hdr_block_end(buf_cstr(msg), msg->len);
    struct buf line = BUF_INIT;

    /* A message without headers or without a final line break gets one
     * before the new field, so the field starts on its own line. */
    if (end > 0 && msg->data[end - 1] != '\n') {
        buf_append_str(&line, "\r\n");
    }
    buf_appendf(&line, "%s: %s\r\n", name, value);
    if (end == msg->len && (end == 0 || msg->data[end - 1] != '\n')) {
        /* No blank line yet: add the separator so the body stays a body. */
        buf_append_str(&line, "\r\n");
    }
    buf_splice(msg, end, 0, line.data, line.len);
    buf_fini(&line);
}

void
hdr_prepend(struct buf *msg, const char *name, const char *value)
{
    struct buf line = BUF_INIT;

    buf_appendf(&line, "%s: %s\r\n", name, value);
    buf_splice(msg, 0, 0, line.data, line.len);
    buf_fini(&line);
}

size_t
hdr_remove_all(struct buf *msg, const char *name)
{
    /* One pass that slides the kept fields down over the removed ones,
     * then the body once: removing field by field (a scan for the end of
     * the block and a move of the rest per field) was quadratic, and
     * fuzz_headers showed a client's header block of short lines
     * freezing the loop thread. */
    size_t end = hdr_block_end(buf_cstr(msg), msg->len);
    size_t removed = 0;
    size_t w = 0;
    size_t p = 0;

    while (p < end) {
        size_t e = hdr_field_end(msg->data, end, p);
        const char *colon = memchr(msg->data + p, ':', e - p);

        if (colon != NULL &&
            km_ascii_ieq(msg->data + p, (size_t)(colon - (msg->data + p)),
                         name)) {
            removed++;
        } else {
            if (w != p) {
                memmove(msg->data + w, msg->data + p, e - p);
            }
            w += e - p;
        }
        p = e;
    }
    if (removed > 0) {
        memmove(msg->data + w, msg->data + end, msg->len - end);
        msg->len -= end - w;
        msg->data[msg->len] = '\0';
    }
    return removed;
}
