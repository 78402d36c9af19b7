/* kcli_int.h - the I/O half of kcli, shared by its own files only: the
 * libcurl HTTP client (kcli_http.c, the one file that calls libcurl), the
 * runner that sends a parsed subcommand and prints the answer
 * (kcli_run.c) and the libedit `kumo>` shell (kcli_shell.c, the one file
 * that calls libedit). Blocking, single threaded. */
#ifndef KUMO_KCLI_INT_H
#define KUMO_KCLI_INT_H
#include <stdbool.h>
#include <stddef.h>

struct buf;
struct kcli_http; /* opaque: one endpoint, one reusable connection */

/* A client for `endpoint` (e.g. "http://127.0.0.1:8000"; a trailing slash
 * is ignored). Nothing is sent yet. KM_EIO if libcurl cannot start. The
 * caller owns *out (kcli_http_free). */
int kcli_http_new(const char *endpoint, struct kcli_http **out);
void kcli_http_free(struct kcli_http *h);
/* The endpoint as given to kcli_http_new() (borrowed). */
const char *kcli_http_endpoint(const struct kcli_http *h);

/* Send `method` `path` (with its query) and, if `body` is not NULL, that
 * JSON text. Returns 0 when an HTTP answer arrived, whatever its status:
 * *status holds it and `resp` the body. KM_EIO when no answer came, with
 * libcurl's reason in err. */
int kcli_http_call(struct kcli_http *h, const char *method, const char *path,
                   const char *body, long *status, struct buf *resp,
                   struct buf *err);

/* Run one subcommand (argv[0] is its name) against h, printing results on
 * stdout and errors on stderr as one line each. `json` forces raw JSON
 * output. Returns the exit code: KCLI_EXIT_OK, KCLI_EXIT_FAIL (request
 * failed) or KCLI_EXIT_USAGE. */
int kcli_run(struct kcli_http *h, bool json, int argc, char *const *argv);

/* The interactive shell on the terminal: prompt `kumo> `, history in
 * memory and in ~/.kcli_history when writable, completion, `help`,
 * `quit`/`exit`/EOF. Returns the process exit code (0). */
int kcli_shell(struct kcli_http *h, bool json);
#endif /* KUMO_KCLI_INT_H */
