/* smtp_server_data.c - the DATA phase decoder: a byte state machine that
 * finds the CRLF.CRLF terminator across any chunk boundaries, removes
 * dot-stuffing (RFC 5321 4.5.2), applies invalid_line_endings to bare CR
 * and LF, and enforces max_message_size and line_length_hard_limit while
 * still consuming up to the terminator. Only a real CRLF starts a line for
 * dot handling, so bare-LF tricks cannot end the message early (SMTP
 * smuggling). Pure: no I/O. */
#include "smtp_server_int.h"

#include <string.h>

#include "base/km.h"

enum {
    SMTP_SERVER_DS_LINE_START, /* after CRLF (or at the start of data) */
    SMTP_SERVER_DS_TEXT,       /* inside a line */
    SMTP_SERVER_DS_CR,         /* saw CR inside a line */
    SMTP_SERVER_DS_DOT,        /* saw '.' at the start of a line */
    SMTP_SERVER_DS_DOT_CR,     /* saw ".\r" at the start of a line */
};

void
smtp_server_data_init(struct smtp_server_data *d, uint64_t max_size,
                      size_t line_limit, enum smtp_server_line_endings mode)
{
    memset(d, 0, sizeof(*d));
    d->max_size = max_size;
    d->line_limit = line_limit;
    d->mode = mode;
    d->state = SMTP_SERVER_DS_LINE_START;
    buf_init(&d->body);
}

void
smtp_server_data_fini(struct smtp_server_data *d)
{
    buf_fini(&d->body);
}

static bool
smtp_server_data_failed(const struct smtp_server_data *d)
{
    return d->too_big || d->too_long || d->bare;
}

/* Append decoded bytes, accounting for size and line length. */
static void
smtp_server_data_emit(struct smtp_server_data *d, const char *p, size_t n)
{
    d->size += n;
    if (d->size > d->max_size && !d->too_big) {
        d->too_big = true;
        buf_fini(&d->body);
    }
    if (!smtp_server_data_failed(d)) {
        buf_append(&d->body, p, n);
    }
}

static void
smtp_server_data_text(struct smtp_server_data *d, char c)
{
    d->line_len++;
    if (d->line_len > d->line_limit && !d->too_long) {
        d->too_long = true;
        buf_fini(&d->body);
    }
    smtp_server_data_emit(d, &c, 1);
}

/* A bare CR or LF inside the data: what invalid_line_endings says. */
static void
smtp_server_data_bare(struct smtp_server_data *d, char c)
{
    switch (d->mode) {
    case SMTP_SERVER_LE_DENY:
        d->bare = true;
        buf_fini(&d->body);
        break;
    case SMTP_SERVER_LE_ALLOW:
        smtp_server_data_emit(d, &c, 1);
        break;
    case SMTP_SERVER_LE_FIX:
        smtp_server_data_emit(d, "\r\n", 2);
        break;
    }
    d->line_len = 0;
}

static void
smtp_server_data_crlf(struct smtp_server_data *d)
{
    smtp_server_data_emit(d, "\r\n", 2);
    d->line_len = 0;
    d->state = SMTP_SERVER_DS_LINE_START;
}

/* Handle one byte c in the TEXT state (also the fall-through of others). */
static void
smtp_server_data_in_text(struct smtp_server_data *d, char c)
{
    if (c == '\r') {
        d->state = SMTP_SERVER_DS_CR;
    } else if (c == '\n') {
        smtp_server_data_bare(d, c);
        d->state = SMTP_SERVER_DS_TEXT;
    } else {
        smtp_server_data_text(d, c);
        d->state = SMTP_SERVER_DS_TEXT;
    }
}

size_t
smtp_server_data_feed(struct smtp_server_data *d, const char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n && !d->done; i++) {
        char c = p[i];

        switch (d->state) {
        case SMTP_SERVER_DS_LINE_START:
            if (c == '.') {
                d->state = SMTP_SERVER_DS_DOT;
            } else {
                smtp_server_data_in_text(d, c);
            }
            break;
        case SMTP_SERVER_DS_DOT:
            if (c == '\r') {
                d->state = SMTP_SERVER_DS_DOT_CR;
            } else {
                /* The leading dot is stuffing: drop it. */
                smtp_server_data_in_text(d, c);
            }
            break;
        case SMTP_SERVER_DS_DOT_CR:
            if (c == '\n') {
                d->done = true;
            } else {
                /* ".\rX": the dot was stuffing, the CR is bare. */
                smtp_server_data_bare(d, '\r');
                smtp_server_data_in_text(d, c);
            }
            break;
        case SMTP_SERVER_DS_CR:
            if (c == '\n') {
                smtp_server_data_crlf(d);
            } else {
                smtp_server_data_bare(d, '\r');
                smtp_server_data_in_text(d, c);
            }
            break;
        default:
            smtp_server_data_in_text(d, c);
            break;
        }
    }
    return i;
}

enum smtp_server_data_result
smtp_server_data_result(const struct smtp_server_data *d)
{
    /* KumoMTA's order: size while reading, then line length, then the
     * line endings. */
    if (d->too_big) {
        return SMTP_SERVER_DATA_TOO_BIG;
    }
    if (d->too_long) {
        return SMTP_SERVER_DATA_TOO_LONG;
    }
    if (d->bare) {
        return SMTP_SERVER_DATA_BARE_LF;
    }
    return SMTP_SERVER_DATA_OK;
}
