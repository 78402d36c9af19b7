/* test_zstd.h - reading log segments back in unit tests: decompress a
 * zstd file whole. */
#ifndef KUMO_TEST_ZSTD_H
#define KUMO_TEST_ZSTD_H
#include <stdbool.h>
#include <stdio.h>

#include <zstd.h>

#include "base/buf.h"

/* Append the decompressed content of the file at path to out; true if the
 * file is not empty and ends with a complete zstd frame. */
static inline bool
test_unzstd(const char *path, struct buf *out)
{
    FILE *fp = fopen(path, "rb");
    struct buf in = BUF_INIT;
    char chunk[4096];
    size_t n;
    size_t ret = 1;
    bool nonempty;

    assert_non_null(fp);
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
        buf_append(&in, chunk, n);
    }
    fclose(fp);
    ZSTD_DCtx *d = ZSTD_createDCtx();
    ZSTD_inBuffer ib = {in.data, in.len, 0};
    while (ib.pos < ib.size) {
        ZSTD_outBuffer ob = {chunk, sizeof(chunk), 0};
        ret = ZSTD_decompressStream(d, &ob, &ib);
        assert_false(ZSTD_isError(ret));
        buf_append(out, chunk, ob.pos);
    }
    ZSTD_freeDCtx(d);
    nonempty = in.len > 0;
    buf_fini(&in);
    return nonempty && ret == 0;
}
#endif /* KUMO_TEST_ZSTD_H */
