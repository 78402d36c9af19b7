/* hdr.h - RFC 5322 header block edits on a message held in a buf. Pure
 * functions, no state: used by the message object and its Lua methods.
 * The header block ends at the first empty line (CRLF CRLF), or at the end
 * of the data if there is none. Names compare case-insensitively. */
#ifndef KUMO_HDR_H
#define KUMO_HDR_H
#include <stdbool.h>
#include <stddef.h>

struct buf;

/* Find the first header named `name`; on success append its unfolded value
 * (leading whitespace trimmed, CRLF+WSP folds joined with the WSP kept,
 * trailing CRLF dropped) to `out` and return true. */
bool hdr_get_first(const char *data, size_t len, const char *name,
                   struct buf *out);
/* Call fn for every header in order with its name and unfolded value;
 * stops early when fn returns false. */
void hdr_foreach(const char *data, size_t len,
                 bool (*fn)(void *arg, const char *name, size_t name_len,
                            const char *value, size_t value_len),
                 void *arg);
/* Add `Name: value` at the end of the header block (before the empty line). */
void hdr_append(struct buf *msg, const char *name, const char *value);
/* Add `Name: value` at the very top of the message. */
void hdr_prepend(struct buf *msg, const char *name, const char *value);
/* Remove every header named `name` (with its folded lines). Returns the
 * number removed. */
size_t hdr_remove_all(struct buf *msg, const char *name);
/* Offset of the body (after the empty line), or len if there is none. */
size_t hdr_block_end(const char *data, size_t len);
#endif /* KUMO_HDR_H */
