/* fuzz_http_inject.c - the body of POST /api/inject/v1 (http_api_inject.c
 * and the templates it compiles): JSON, validation, then each recipient's
 * message built as kumod would store it. Invariant (probe 2026-12 #15):
 * in a builder-made message no request value starts a header line, so
 * every header line is a known field, a fold, or a MIME part header; and
 * no control character but tab is in the header section. */
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "base/buf.h"
#include "base/km.h"
#include "http_api_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The header names the builder writes itself (before the body). */
static const char *const fuzz_builder_fields[] = {
    "From",       "To",           "Subject",
    "Reply-To",   "MIME-Version", "Date",
    "Message-ID", "Content-Type", "Content-Transfer-Encoding",
    NULL,
};

static bool
fuzz_is_builder_field(const char *p, size_t n,
                      const struct http_api_inject *inj_fields, json_t *body)
{
    json_t *hdrs;
    const char *key;
    json_t *v;

    (void)inj_fields;
    for (size_t i = 0; fuzz_builder_fields[i] != NULL; i++) {
        if (strlen(fuzz_builder_fields[i]) == n &&
            strncasecmp(p, fuzz_builder_fields[i], n) == 0) {
            return true;
        }
    }
    /* content.headers keys are the request's own header names. */
    hdrs = json_object_get(json_object_get(body, "content"), "headers");
    json_object_foreach(hdrs, key, v)
    {
        if (strlen(key) == n && strncmp(key, p, n) == 0) {
            return true;
        }
    }
    return false;
}

static void
fuzz_check_builder_headers(const struct buf *msg,
                           const struct http_api_inject *inj, json_t *body)
{
    const char *d = buf_cstr(msg);
    const char *end = strstr(d, "\r\n\r\n");
    size_t hlen = end != NULL ? (size_t)(end - d) : msg->len;
    size_t ls = 0;

    for (size_t i = 0; i <= hlen; i++) {
        unsigned char c = i < hlen ? (unsigned char)d[i] : '\r';

        if (c == '\r' && (i == hlen || d[i + 1] == '\n')) {
            const char *line = d + ls;
            size_t n = i - ls;
            const char *colon = memchr(line, ':', n);

            if (n > 0 && line[0] != ' ' && line[0] != '\t') {
                KM_ASSERT(colon != NULL);
                KM_ASSERT(fuzz_is_builder_field(line, (size_t)(colon - line),
                                                inj, body));
            }
            ls = i + 2;
            i++;
            continue;
        }
        KM_ASSERT(c >= 0x20 || c == '\t');
        KM_ASSERT(c != 0x7f);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *body = json_loadb((const char *)data, size, 0, &jerr);
    struct http_api_inject *inj = NULL;
    char err[600];
    int status = 0;

    if (body == NULL) {
        return 0;
    }
    if (http_api_inject_parse(body, &inj, &status, err, sizeof(err)) == 0) {
        size_t n = http_api_inject_count(inj);
        bool builder = json_is_object(json_object_get(body, "content"));

        for (size_t i = 0; i < n && i < 4; i++) {
            struct buf msg = BUF_INIT;

            http_api_inject_build(inj, i, "0123456789abcdef0123456789abcdef",
                                  "mx.example.test", 1700000000000, &msg);
            if (builder) {
                fuzz_check_builder_headers(&msg, inj, body);
            }
            buf_fini(&msg);
        }
        http_api_inject_free(inj);
    } else {
        KM_ASSERT(status == 400 || status == 422);
    }
    json_decref(body);
    return 0;
}
