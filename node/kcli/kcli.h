/* kcli.h - the network-free half of kcli, kumod's command-line client:
 * global and per-subcommand argument parsing into an HTTP request (method,
 * path, JSON body), the shell-line splitter of the interactive `kumo>`
 * shell, plain-text tables, the Prometheus text parser and the renderers
 * that turn API answers into tables. Nothing here does I/O (kcli_int.h has
 * the libcurl and libedit parts), so all of it is unit-tested. Single
 * threaded. */
#ifndef KUMO_KCLI_H
#define KUMO_KCLI_H
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct buf;

#define KCLI_DEFAULT_ENDPOINT "http://127.0.0.1:8000"
#define KCLI_ENDPOINT_ENV     "KUMO_KCLI_ENDPOINT"

/* Exit codes: success, a failed request, a usage error. */
#define KCLI_EXIT_OK    0
#define KCLI_EXIT_FAIL  1
#define KCLI_EXIT_USAGE 2

/* -- Global options --------------------------------------------------------
 */

/* What precedes the subcommand on the command line. A value type the
 * caller embeds; `endpoint` points into argv or the environment. */
struct kcli_opts {
    const char *endpoint; /* never NULL after kcli_opts_parse() */
    bool json;            /* --json */
    bool help;            /* --help / -h */
    bool version;         /* --version / -V */
    int first_arg;        /* index of the subcommand in argv (argc if none) */
};

/* Parse `kcli [--endpoint URL] [--json] [--help] [--version]` from
 * argv[1..]. The endpoint comes from --endpoint, else the environment value
 * `env_endpoint` (may be NULL), else KCLI_DEFAULT_ENDPOINT. Stops at the
 * first word that is not a global option. KM_EINVAL with a one-line message
 * in err for an unknown option or a missing value. */
int kcli_opts_parse(int argc, char *const *argv, const char *env_endpoint,
                    struct kcli_opts *out, struct buf *err);

/* -- Subcommands -----------------------------------------------------------
 */

enum kcli_op {
    KCLI_OP_HELP, /* text holds the help to print; no request */
    KCLI_OP_QUEUE_SUMMARY,
    KCLI_OP_BOUNCE,
    KCLI_OP_BOUNCE_LIST,
    KCLI_OP_BOUNCE_CANCEL,
    KCLI_OP_SUSPEND,
    KCLI_OP_SUSPEND_LIST,
    KCLI_OP_SUSPEND_CANCEL,
    KCLI_OP_SUSPEND_READY_Q,
    KCLI_OP_SUSPEND_READY_Q_LIST,
    KCLI_OP_SUSPEND_READY_Q_CANCEL,
    KCLI_OP_REBIND,
    KCLI_OP_INSPECT_MESSAGE,
    KCLI_OP_SET_LOG_FILTER,
    KCLI_OP_CLUSTER_STATUS,
    KCLI_OP_CLUSTER_ADMIN, /* add-node, remove-node, transfer-leader */
};

/* One parsed subcommand: the request it makes and how to show the answer.
 * A value type the caller embeds: kcli_cmd_init() / kcli_cmd_fini(). */
struct kcli_cmd {
    enum kcli_op op;
    const char *name;   /* the subcommand's name (static) */
    const char *method; /* "GET", "POST", "DELETE"; NULL for KCLI_OP_HELP */
    char *path;         /* path and query string (owned) */
    json_t *body;       /* request body or NULL (owned) */
    bool json;          /* --json: print the raw JSON answer */
    long limit;         /* queue-summary --limit, -1 for none */
    char *text;         /* KCLI_OP_HELP: the text to print (owned) */
};

void kcli_cmd_init(struct kcli_cmd *c);
void kcli_cmd_fini(struct kcli_cmd *c);

/* Parse one subcommand: argv[0] is its name, the rest its arguments (the
 * same words in one-shot and shell use). `--help` anywhere yields
 * KCLI_OP_HELP. On a usage error returns KM_EINVAL (or KM_ENOENT for an
 * unknown subcommand) with "<message>\nusage: ..." in err; `c` is then
 * left initialised and empty. */
int kcli_cmd_parse(int argc, char *const *argv, struct kcli_cmd *c,
                   struct buf *err);

/* Append one line per subcommand ("  name  summary") to out. */
void kcli_cmd_help_all(struct buf *out);
/* Append the usage and description of subcommand `name`: KM_ENOENT if
 * there is none. */
int kcli_cmd_help(const char *name, struct buf *out);
/* The i-th subcommand's name, NULL past the end (for completion). */
const char *kcli_cmd_name_at(size_t i);
/* The NULL-terminated list of flags ("--reason", ...) that subcommand
 * `name` accepts, or NULL if there is no such subcommand. Static. */
const char *const *kcli_cmd_flags(const char *name);

/* -- Shell-line splitting --------------------------------------------------
 */

/* Split `line` into words like a POSIX shell without expansions: blanks
 * separate words, 'single quotes' are literal, "double quotes" allow \" \\
 * \$ \` escapes, a backslash outside quotes escapes the next character.
 * On success *argv_out is a NULL-terminated array of *argc_out new strings
 * that the caller owns (kcli_split_free). KM_EINVAL with a message in err
 * for an unterminated quote or a trailing backslash. */
int kcli_split(const char *line, int *argc_out, char ***argv_out,
               struct buf *err);
void kcli_split_free(int argc, char **argv);

/* -- Tables ----------------------------------------------------------------
 */

struct kcli_table; /* opaque */

/* A table with `ncols` columns titled `headers` (copied). KM_EINVAL for
 * ncols 0. The caller owns *out (kcli_table_free). */
int kcli_table_new(size_t ncols, const char *const *headers,
                   struct kcli_table **out);
void kcli_table_free(struct kcli_table *t);
/* Right-align column `col` (numbers). */
void kcli_table_align_right(struct kcli_table *t, size_t col);
/* Add a row of ncols cells (copied; a NULL cell prints as "-"). */
void kcli_table_add_row(struct kcli_table *t, const char *const *cells);
size_t kcli_table_rows(const struct kcli_table *t);
/* Append the table: each column as wide as its widest cell (in UTF-8
 * characters), columns two spaces apart, no trailing blanks. */
void kcli_table_render(const struct kcli_table *t, struct buf *out);

/* -- Prometheus text -------------------------------------------------------
 */

/* One sample; a value type owned by its kcli_prom. */
struct kcli_prom_sample {
    char *name;
    char **label_names;
    char **label_values;
    size_t n_labels;
    double value;
};

struct kcli_prom; /* opaque */

/* Parse Prometheus text exposition (format 0.0.4) from p[0..n). Comments
 * and blank lines are skipped; a malformed line is skipped and counted
 * (kcli_prom_bad_lines). The caller owns *out (kcli_prom_free). */
int kcli_prom_parse(const char *p, size_t n, struct kcli_prom **out);
void kcli_prom_free(struct kcli_prom *pr);
size_t kcli_prom_count(const struct kcli_prom *pr);
size_t kcli_prom_bad_lines(const struct kcli_prom *pr);
/* The i-th sample (borrowed; i < kcli_prom_count). */
const struct kcli_prom_sample *kcli_prom_at(const struct kcli_prom *pr,
                                            size_t i);
/* The value of label `name` of sample s, NULL if absent (borrowed). */
const char *kcli_prom_label(const struct kcli_prom_sample *s, const char *name);
/* Find metric `name` whose label `label` equals `value` (label NULL: the
 * first sample of that name); KM_ENOENT if there is none. */
int kcli_prom_find(const struct kcli_prom *pr, const char *name,
                   const char *label, const char *value, double *out);

/* -- Rendering answers -----------------------------------------------------
 */

/* queue-summary: the ready-queue table from `prom` (NULL: none), then the
 * scheduled-queue table from the queue-summary answer `sched`
 * ({"scheduled":[{"queue","count"}],"total"}), or, when `sched` is NULL,
 * from prom's scheduled_count{queue}. `limit` < 0: no limit. */
void kcli_render_queue_summary(const json_t *sched,
                               const struct kcli_prom *prom, long limit,
                               struct buf *out);
/* bounce-list: ID REASON REMAIN BOUNCED CRITERIA. */
void kcli_render_bounce_list(const json_t *list, struct buf *out);
/* suspend-list: ID REASON REMAIN CRITERIA. */
void kcli_render_suspend_list(const json_t *list, struct buf *out);
/* suspend-ready-q-list: ID NAME REASON REMAIN. */
void kcli_render_suspend_ready_q_list(const json_t *list, struct buf *out);
/* cluster status: a header (cluster id, term, leader, commit index), then
 * one row per member. */
void kcli_render_cluster_status(const json_t *st, struct buf *out);
/* The one-line text of a failed request: "<METHOD> <path>: <status>
 * <error>", where error is the body's "error" (or "message") string if it
 * is JSON, else its first non-blank line. */
void kcli_render_http_error(const char *method, const char *path, long status,
                            const char *body, size_t body_len, struct buf *out);
#endif /* KUMO_KCLI_H */
