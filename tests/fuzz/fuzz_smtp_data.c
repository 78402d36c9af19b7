/* fuzz_smtp_data.c - the DATA decoder (smtp_server_data.c): dot-stuffing,
 * the end of data, bare CR/LF policies and the limits. The input is fed
 * once whole and once in chunks whose sizes come from its first bytes;
 * both must agree (bytes consumed, verdict, decoded body). */
#include <stdint.h>
#include <string.h>

#include "base/buf.h"
#include "base/km.h"
#include "smtp_server_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t
fuzz_feed(struct smtp_server_data *d, const char *p, size_t n,
          const uint8_t *steps, size_t n_steps)
{
    size_t off = 0, k = 0;

    while (off < n && !d->done) {
        size_t chunk = n_steps > 0 ? (size_t)steps[k++ % n_steps] % 17 + 1 : n;
        size_t used;

        if (chunk > n - off) {
            chunk = n - off;
        }
        used = smtp_server_data_feed(d, p + off, chunk);
        KM_ASSERT(used <= chunk);
        KM_ASSERT(used == chunk || d->done);
        off += used;
    }
    return off;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct smtp_server_data whole, parts;
    enum smtp_server_line_endings mode;
    size_t n_steps, a, b;
    const char *p;

    if (size < 2) {
        return 0;
    }
    mode = (enum smtp_server_line_endings)(data[0] % 3);
    n_steps = data[1] % 8;
    if (size < 2 + n_steps) {
        return 0;
    }
    p = (const char *)data + 2 + n_steps;
    size -= 2 + n_steps;
    /* Small limits, so the limit paths are reached. */
    smtp_server_data_init(&whole, 4096, 78, mode);
    smtp_server_data_init(&parts, 4096, 78, mode);
    a = fuzz_feed(&whole, p, size, NULL, 0);
    b = fuzz_feed(&parts, p, size, data + 2, n_steps);
    KM_ASSERT(a == b);
    KM_ASSERT(whole.done == parts.done);
    KM_ASSERT(smtp_server_data_result(&whole) ==
              smtp_server_data_result(&parts));
    KM_ASSERT(whole.body.len == parts.body.len);
    KM_ASSERT(whole.body.len == 0 ||
              memcmp(whole.body.data, parts.body.data, whole.body.len) == 0);
    KM_ASSERT(whole.body.len <= 4096);
    smtp_server_data_fini(&whole);
    smtp_server_data_fini(&parts);
    return 0;
}
