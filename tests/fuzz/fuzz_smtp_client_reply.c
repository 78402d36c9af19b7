/* fuzz_smtp_client_reply.c - what a remote SMTP server answers
 * (smtp_client_reply.c), fed in chunks sized by the first byte, then the
 * EHLO capability parser on each reply's content. Invariants: the bytes
 * used stay in the chunk, a reply has a 3-digit code. */
#include <stdint.h>
#include <string.h>

#include "base/km.h"
#include "smtp_client_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct smtp_client_reply p;
    size_t step, off = 0;
    int rv = 0;

    if (size < 1) {
        return 0;
    }
    step = (size_t)data[0] % 64 + 1;
    data++;
    size--;
    smtp_client_reply_init(&p);
    while (off < size && rv >= 0) {
        size_t chunk = size - off < step ? size - off : step;
        size_t used = 0;
        struct smtp_client_response r;

        memset(&r, 0, sizeof(r));
        rv = smtp_client_reply_feed(&p, (const char *)data + off, chunk, &used,
                                    &r);
        if (rv == 1) {
            struct smtp_client_caps caps;

            KM_ASSERT(used > 0 && used <= chunk);
            KM_ASSERT(r.code >= 100 && r.code <= 999);
            memset(&caps, 0, sizeof(caps));
            smtp_client_caps_parse(r.content != NULL ? r.content : "", &caps);
            smtp_client_response_fini(&r);
            off += used;
        } else if (rv == 0) {
            off += chunk;
        }
    }
    smtp_client_reply_fini(&p);
    return 0;
}
