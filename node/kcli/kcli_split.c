/* kcli_split.c - split one line of the `kumo>` shell into words with
 * POSIX-shell quoting (single quotes, double quotes, backslash escapes) so
 * that a shell line and a one-shot command line run the same argv. No
 * expansions of any kind: $, ~, globs and comments are plain text. Pure
 * function, no I/O. */
#include "kcli/kcli.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/km.h"

static bool
kcli_split_is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* Inside double quotes a backslash only escapes these (POSIX 2.2.3). */
static bool
kcli_split_dq_escapable(char ch)
{
    return ch == '"' || ch == '\\' || ch == '$' || ch == '`';
}

static void
kcli_split_push(char ***argv, int *argc, size_t *cap, const struct buf *word)
{
    if ((size_t)*argc + 2 > *cap) {
        *cap = *cap == 0 ? 8 : *cap * 2;
        *argv = km_realloc(*argv, *cap * sizeof(**argv));
    }
    (*argv)[(*argc)++] = km_strdup(buf_cstr(word));
    (*argv)[*argc] = NULL;
}

int
kcli_split(const char *line, int *argc_out, char ***argv_out, struct buf *err)
{
    struct buf word = BUF_INIT;
    char **argv = NULL;
    int argc = 0;
    size_t cap = 0;
    bool in_word = false;
    const char *p = line;
    int rv = 0;

    while (*p != '\0') {
        char ch = *p;

        if (kcli_split_is_blank(ch)) {
            if (in_word) {
                kcli_split_push(&argv, &argc, &cap, &word);
                buf_reset(&word);
                in_word = false;
            }
            p++;
            continue;
        }
        in_word = true;
        if (ch == '\\') {
            if (p[1] == '\0') {
                buf_append_str(err, "trailing backslash");
                rv = KM_EINVAL;
                goto err_after_words;
            }
            buf_append_char(&word, p[1]);
            p += 2;
        } else if (ch == '\'') {
            const char *end = strchr(p + 1, '\'');

            if (end == NULL) {
                buf_append_str(err, "unterminated single quote");
                rv = KM_EINVAL;
                goto err_after_words;
            }
            buf_append(&word, p + 1, (size_t)(end - (p + 1)));
            p = end + 1;
        } else if (ch == '"') {
            p++;
            while (*p != '"') {
                if (*p == '\0') {
                    buf_append_str(err, "unterminated double quote");
                    rv = KM_EINVAL;
                    goto err_after_words;
                }
                if (*p == '\\' && kcli_split_dq_escapable(p[1])) {
                    p++;
                }
                buf_append_char(&word, *p);
                p++;
            }
            p++;
        } else {
            buf_append_char(&word, ch);
            p++;
        }
    }
    if (in_word) {
        kcli_split_push(&argv, &argc, &cap, &word);
    }
    if (argv == NULL) {
        argv = km_calloc(1, sizeof(*argv));
    }
    buf_fini(&word);
    *argc_out = argc;
    *argv_out = argv;
    return 0;

err_after_words:
    buf_fini(&word);
    kcli_split_free(argc, argv);
    return rv;
}

void
kcli_split_free(int argc, char **argv)
{
    if (argv == NULL) {
        return;
    }
    for (int i = 0; i < argc; i++) {
        free(argv[i]);
    }
    free(argv);
}
