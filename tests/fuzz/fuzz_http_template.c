/* fuzz_http_template.c - the Jinja subset of HTTP injection
 * (http_api_template.c): compile any source, render it with a fixed set
 * of variables (some holding line breaks), as text and as a message.
 * Sanitizers are the oracle; fuzz_http_inject checks the headers. */
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "base/buf.h"
#include "base/km.h"
#include "http_api_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char vars_json[] =
        "{\"name\":\"Ann\\r\\nBcc: x@evil.test\",\"n\":3,\"vip\":true,"
        "\"user\":{\"city\":\"Oslo\\n\\nbody\",\"tags\":[\"a\",\"b\"]},"
        "\"empty\":\"\",\"f\":1.5,\"nul\":null}";
    struct http_api_template *t = NULL;
    struct buf out = BUF_INIT;
    char err[256];
    json_t *vars;

    if (http_api_template_compile((const char *)data, size, &t, err,
                                  sizeof(err)) != 0) {
        KM_ASSERT(strlen(err) > 0);
        return 0;
    }
    vars = json_loads(vars_json, 0, NULL);
    KM_ASSERT(vars != NULL);
    http_api_template_render(t, vars, &out);
    buf_reset(&out);
    http_api_template_render_message(t, vars, &out);
    buf_fini(&out);
    json_decref(vars);
    http_api_template_free(t);
    return 0;
}
