/* fuzz_smtp_command.c - SMTP command lines as a client sends them: the
 * verb, then MAIL FROM / RCPT TO paths and parameters, the UTF-8 check
 * and the AUTH PLAIN base64 decoder (smtp_server_parse.c). Invariants:
 * the argument offset stays in the line, a parsed address holds no CR,
 * LF or NUL and its '@' offset is in range. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/km.h"
#include "smtp_server_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_check_path(const struct smtp_server_path *p)
{
    size_t len = strlen(p->addr);

    KM_ASSERT(p->at <= len);
    KM_ASSERT(strpbrk(p->addr, "\r\n") == NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The session hands the parser a NUL-free line without its CRLF. */
    char *line = km_strndup((const char *)data, size);
    size_t n = strlen(line);
    size_t args = 0;
    struct smtp_server_path path;
    const char *why = NULL;
    struct buf b = BUF_INIT;

    (void)smtp_server_parse_verb(line, n, &args);
    KM_ASSERT(args <= n);
    (void)smtp_server_utf8_valid(line, n);
    memset(&path, 0, sizeof(path));
    if (smtp_server_parse_mail(line + args, n - args, &path, &why) == 0) {
        fuzz_check_path(&path);
        smtp_server_path_fini(&path);
    } else {
        KM_ASSERT(why != NULL);
    }
    memset(&path, 0, sizeof(path));
    if (smtp_server_parse_rcpt(line + args, n - args, (n & 1) != 0, &path,
                               &why) == 0) {
        fuzz_check_path(&path);
        smtp_server_path_fini(&path);
    }
    (void)smtp_server_b64_decode(line, n, &b);
    buf_fini(&b);
    free(line);
    return 0;
}
