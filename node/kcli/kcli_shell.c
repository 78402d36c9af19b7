/* kcli_shell.c - the interactive `kumo>` shell on libedit's readline
 * interface: line editing, history (in memory, loaded from and saved to
 * ~/.kcli_history when possible), tab completion of subcommand names and
 * of the current subcommand's flags, and the built-ins help, quit and
 * exit. Each line is split like a shell line and run by kcli_run(), the
 * same code as the one-shot form. The only file of kcli calling libedit. */
#include "kcli/kcli_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <editline/readline.h>

#include "base/buf.h"
#include "base/km.h"
#include "kcli/kcli.h"

#define KCLI_SHELL_PROMPT      "kumo> "
#define KCLI_SHELL_HISTORY     ".kcli_history"
#define KCLI_SHELL_HISTORY_MAX 1000

/* Words the shell itself understands, besides the subcommands. */
static const char *const kcli_shell_builtins[] = {"help", "quit", "exit", NULL};

/* -- Completion ------------------------------------------------------------
 */

struct kcli_shell_matches {
    char **v; /* v[0] is reserved for the common prefix */
    size_t n; /* matches, v[1..n] */
    size_t cap;
};

static void
kcli_shell_match(struct kcli_shell_matches *m, const char *text,
                 const char *word)
{
    if (strncmp(word, text, strlen(text)) != 0) {
        return;
    }
    if (m->n + 3 > m->cap) {
        m->cap = m->cap * 2 + 8;
        m->v = km_realloc(m->v, m->cap * sizeof(*m->v));
    }
    m->v[++m->n] = km_strdup(word);
    m->v[m->n + 1] = NULL;
}

/* readline's convention: [0] is what replaces the word (the longest common
 * prefix of all matches), then the matches, then NULL; a single match
 * stands alone in [0]. The library frees the array and strings. */
static char **
kcli_shell_finish(struct kcli_shell_matches *m)
{
    size_t lcp;

    if (m->n == 0) {
        free(m->v);
        return NULL;
    }
    if (m->n == 1) {
        m->v[0] = m->v[1];
        m->v[1] = NULL;
        return m->v;
    }
    lcp = strlen(m->v[1]);
    for (size_t i = 2; i <= m->n; i++) {
        size_t j = 0;

        while (j < lcp && m->v[i][j] == m->v[1][j]) {
            j++;
        }
        lcp = j;
    }
    m->v[0] = km_strndup(m->v[1], lcp);
    return m->v;
}

/* The first word of the line being edited, if the cursor is past it. */
static char *
kcli_shell_first_word(int start)
{
    const char *p = rl_line_buffer;
    const char *w;

    while (*p == ' ' || *p == '\t') {
        p++;
    }
    w = p;
    while (*p != '\0' && *p != ' ' && *p != '\t') {
        p++;
    }
    if (p == w || (int)(p - rl_line_buffer) > start) {
        return NULL;
    }
    return km_strndup(w, (size_t)(p - w));
}

static char **
kcli_shell_complete(const char *text, int start, int end)
{
    struct kcli_shell_matches m = {NULL, 0, 0};
    char *first = kcli_shell_first_word(start);

    (void)end;
    rl_attempted_completion_over = 1; /* never fall back to file names */
    if (first == NULL || strcmp(first, "help") == 0) {
        for (size_t i = 0; kcli_cmd_name_at(i) != NULL; i++) {
            kcli_shell_match(&m, text, kcli_cmd_name_at(i));
        }
        for (size_t i = 0; first == NULL && kcli_shell_builtins[i] != NULL;
             i++) {
            kcli_shell_match(&m, text, kcli_shell_builtins[i]);
        }
    } else {
        const char *const *flags = kcli_cmd_flags(first);

        for (size_t i = 0; flags != NULL && flags[i] != NULL; i++) {
            kcli_shell_match(&m, text, flags[i]);
        }
    }
    free(first);
    return kcli_shell_finish(&m);
}

/* -- Built-ins -------------------------------------------------------------
 */

static void
kcli_shell_help(int argc, char **argv)
{
    struct buf out = BUF_INIT;

    if (argc > 1) {
        if (kcli_cmd_help(argv[1], &out) != 0) {
            fprintf(stderr, "kcli: help: unknown command '%s'\n", argv[1]);
        }
    } else {
        buf_append_str(&out, "Commands:\n");
        kcli_cmd_help_all(&out);
        buf_append_str(&out, "  help [CMD]            show this list, or "
                             "CMD's usage\n"
                             "  quit, exit            leave the shell\n"
                             "Add --json to a command for its raw JSON "
                             "answer.\n");
    }
    fwrite(buf_cstr(&out), 1, out.len, stdout);
    fflush(stdout);
    buf_fini(&out);
}

/* -- The loop --------------------------------------------------------------
 */

static char *
kcli_shell_history_path(void)
{
    const char *home = getenv("HOME");

    if (home == NULL || home[0] == '\0') {
        return NULL;
    }
    return km_asprintf("%s/%s", home, KCLI_SHELL_HISTORY);
}

/* Run one line; false when the shell should end. */
static bool
kcli_shell_line(struct kcli_http *h, bool json, const char *line)
{
    struct buf err = BUF_INIT;
    char **argv = NULL;
    int argc = 0;
    bool go_on = true;

    if (kcli_split(line, &argc, &argv, &err) != 0) {
        fprintf(stderr, "kcli: %s\n", buf_cstr(&err));
        buf_fini(&err);
        return true;
    }
    buf_fini(&err);
    if (argc == 0) {
        /* a blank line */
    } else if (strcmp(argv[0], "quit") == 0 || strcmp(argv[0], "exit") == 0) {
        go_on = false;
    } else if (strcmp(argv[0], "help") == 0) {
        kcli_shell_help(argc, argv);
    } else {
        kcli_run(h, json, argc, argv);
    }
    fflush(stderr);
    kcli_split_free(argc, argv);
    return go_on;
}

int
kcli_shell(struct kcli_http *h, bool json)
{
    char *hist = kcli_shell_history_path();
    char *last = NULL;

    rl_readline_name = "kcli";
    rl_attempted_completion_function = kcli_shell_complete;
    using_history();
    stifle_history(KCLI_SHELL_HISTORY_MAX);
    if (hist != NULL) {
        read_history(hist); /* a missing file is an empty history */
    }
    printf("kcli %s connected to %s; type 'help' for commands, 'quit' to "
           "leave\n",
           KUMO_VERSION, kcli_http_endpoint(h));
    fflush(stdout);
    for (;;) {
        char *line = readline(KCLI_SHELL_PROMPT);
        const char *p = line;
        bool go_on;

        if (line == NULL) {
            fputc('\n', stdout);
            break;
        }
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (*p != '\0' && (last == NULL || strcmp(last, line) != 0)) {
            add_history(line);
            free(last);
            last = km_strdup(line);
        }
        go_on = kcli_shell_line(h, json, line);
        free(line);
        if (!go_on) {
            break;
        }
    }
    /* Not writable (read-only home, no home): keep the history in memory
     * only, as the shell did all along. */
    if (hist != NULL) {
        write_history(hist);
    }
    free(last);
    free(hist);
    fflush(stdout);
    return KCLI_EXIT_OK;
}
