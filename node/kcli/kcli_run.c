/* kcli_run.c - run one parsed kcli subcommand: send its request through
 * kcli_http, then print the answer (a table, an id, pretty JSON, or the raw
 * JSON with --json) on stdout, and any failure as one line on stderr:
 * "kcli: <METHOD> <path>: <status> <error>" or "kcli: cannot reach
 * <endpoint>: <reason>". Shared by the one-shot form and the shell. */
#include "kcli/kcli_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "base/buf.h"
#include "base/km.h"
#include "kcli/kcli.h"

/* Send a request; 0 for a 2xx answer (in resp). Otherwise print the error
 * line and return KCLI_EXIT_FAIL, except for status `quiet_status`, which
 * is returned as KCLI_EXIT_FAIL without a word (the caller has a plan B).
 * *status_out is the HTTP status, 0 if the server could not be reached. */
static int
kcli_run_fetch_status(struct kcli_http *h, const char *method, const char *path,
                      const json_t *body, long quiet_status, struct buf *resp,
                      long *status_out)
{
    struct buf err = BUF_INIT;
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    long status = 0;
    int rv;

    rv = kcli_http_call(h, method, path, text, &status, resp, &err);
    *status_out = rv == 0 ? status : 0;
    free(text);
    if (rv != 0) {
        fprintf(stderr, "kcli: cannot reach %s: %s\n", kcli_http_endpoint(h),
                buf_cstr(&err));
        buf_fini(&err);
        return KCLI_EXIT_FAIL;
    }
    if (status >= 200 && status < 300) {
        buf_fini(&err);
        return 0;
    }
    if (status != quiet_status) {
        kcli_render_http_error(method, path, status, buf_cstr(resp), resp->len,
                               &err);
        fprintf(stderr, "kcli: %s\n", buf_cstr(&err));
    }
    buf_fini(&err);
    return KCLI_EXIT_FAIL;
}

static int
kcli_run_fetch(struct kcli_http *h, const char *method, const char *path,
               const json_t *body, long quiet_status, struct buf *resp)
{
    long status;

    return kcli_run_fetch_status(h, method, path, body, quiet_status, resp,
                                 &status);
}

/* Parse a 2xx answer as JSON, or say why not. */
static int
kcli_run_parse(const struct kcli_cmd *c, const struct buf *resp, json_t **out)
{
    json_error_t jerr;
    json_t *j = json_loadb(buf_cstr(resp), resp->len, 0, &jerr);

    if (j == NULL) {
        fprintf(stderr, "kcli: %s %s: the answer is not JSON: %s\n", c->method,
                c->path, jerr.text);
        return KCLI_EXIT_FAIL;
    }
    *out = j;
    return 0;
}

/* The answer's bytes as they came, ending with a newline. */
static void
kcli_run_print_raw(const struct buf *resp)
{
    fwrite(buf_cstr(resp), 1, resp->len, stdout);
    if (resp->len > 0 && resp->data[resp->len - 1] != '\n') {
        fputc('\n', stdout);
    }
}

static void
kcli_run_print_pretty(const json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

    if (s != NULL) {
        printf("%s\n", s);
        free(s);
    }
}

static void
kcli_run_print_buf(struct buf *out)
{
    fwrite(buf_cstr(out), 1, out->len, stdout);
    buf_fini(out);
}

static int
kcli_run_queue_summary(struct kcli_http *h, const struct kcli_cmd *c, bool json)
{
    struct buf resp = BUF_INIT;
    struct buf metrics = BUF_INIT;
    struct buf out = BUF_INIT;
    struct kcli_prom *prom = NULL;
    json_t *sched = NULL;
    bool have_sched;
    int rv;

    /* A kumod without the summary endpoint (404) still has scheduled_count
     * in its metrics: fall back to those. */
    long status = 0;
    rv =
        kcli_run_fetch_status(h, c->method, c->path, NULL, 404, &resp, &status);
    have_sched = rv == 0;
    if (rv != 0 && status != 404) {
        goto out; /* unreachable or another error: already reported */
    }
    if (rv == 0 && json) {
        kcli_run_print_raw(&resp);
        goto out;
    }
    if (rv == 0) {
        rv = kcli_run_parse(c, &resp, &sched);
        if (rv != 0) {
            goto out;
        }
    }
    rv = kcli_run_fetch(h, "GET", "/metrics", NULL, have_sched ? 404 : -1,
                        &metrics);
    if (rv != 0 && !have_sched) {
        goto out;
    }
    if (rv == 0) {
        kcli_prom_parse(buf_cstr(&metrics), metrics.len, &prom);
    }
    rv = 0;
    kcli_render_queue_summary(sched, prom, c->limit, &out);
    kcli_run_print_buf(&out);
out:
    kcli_prom_free(prom);
    json_decref(sched);
    buf_fini(&metrics);
    buf_fini(&resp);
    return rv;
}

static const char *
kcli_run_noun(enum kcli_op op)
{
    switch (op) {
    case KCLI_OP_BOUNCE_CANCEL:
        return "bounce";
    case KCLI_OP_SUSPEND_CANCEL:
        return "suspension";
    default:
        return "ready-queue suspension";
    }
}

/* Print what a 2xx answer means for this subcommand. */
static int
kcli_run_show(const struct kcli_cmd *c, const struct buf *resp)
{
    struct buf out = BUF_INIT;
    json_t *j = NULL;
    int rv;

    switch (c->op) {
    case KCLI_OP_BOUNCE_CANCEL:
    case KCLI_OP_SUSPEND_CANCEL:
    case KCLI_OP_SUSPEND_READY_Q_CANCEL:
        printf("%s %s cancelled\n", kcli_run_noun(c->op),
               json_string_value(json_object_get(c->body, "id")));
        return 0;
    case KCLI_OP_SET_LOG_FILTER:
        return 0;
    default:
        break;
    }
    rv = kcli_run_parse(c, resp, &j);
    if (rv != 0) {
        return rv;
    }
    switch (c->op) {
    case KCLI_OP_BOUNCE:
    case KCLI_OP_REBIND: {
        const json_t *id = json_object_get(j, "id");

        if (json_is_string(id)) {
            printf("%s\n", json_string_value(id));
        }
        fprintf(stderr,
                "NOTE: the %s runs asynchronously: matching messages are "
                "processed in the background%s\n",
                c->op == KCLI_OP_BOUNCE ? "bounce" : "rebind",
                c->op == KCLI_OP_BOUNCE ? "; see bounce-list" : "");
        break;
    }
    case KCLI_OP_BOUNCE_LIST:
        kcli_render_bounce_list(j, &out);
        break;
    case KCLI_OP_SUSPEND_LIST:
        kcli_render_suspend_list(j, &out);
        break;
    case KCLI_OP_SUSPEND_READY_Q_LIST:
        kcli_render_suspend_ready_q_list(j, &out);
        break;
    case KCLI_OP_CLUSTER_STATUS:
        kcli_render_cluster_status(j, &out);
        break;
    default:
        kcli_run_print_pretty(j);
        break;
    }
    kcli_run_print_buf(&out);
    json_decref(j);
    return 0;
}

/* Polls of remove-node while the node drains: one a second, 2 minutes. */
#define KCLI_RUN_ADMIN_POLLS 120

/* add-node, remove-node, transfer-leader: POST, and while the answer says
 * "in_progress" (202: draining, or another change first) ask again. */
static int
kcli_run_cluster_admin(struct kcli_http *h, const struct kcli_cmd *c, bool json)
{
    struct buf resp = BUF_INIT;
    json_t *j = NULL;
    int rv;

    for (int i = 0;; i++) {
        buf_reset(&resp);
        rv = kcli_run_fetch(h, c->method, c->path, c->body, -1, &resp);
        if (rv != 0) {
            break;
        }
        rv = kcli_run_parse(c, &resp, &j);
        if (rv != 0) {
            break;
        }
        const char *st = json_string_value(json_object_get(j, "status"));
        const char *msg = json_string_value(json_object_get(j, "message"));
        bool again = st != NULL && strcmp(st, "in_progress") == 0;
        if (json && (!again || i + 1 >= KCLI_RUN_ADMIN_POLLS)) {
            kcli_run_print_raw(&resp);
        } else if (!json) {
            printf("%s%s\n", again ? "in progress: " : "",
                   msg != NULL ? msg : "done");
        }
        json_decref(j);
        j = NULL;
        if (!again) {
            break;
        }
        if (i + 1 >= KCLI_RUN_ADMIN_POLLS) {
            fprintf(stderr, "kcli: %s: still in progress, giving up\n",
                    c->path);
            rv = KCLI_EXIT_FAIL;
            break;
        }
        fflush(stdout);
        sleep(1);
    }
    buf_fini(&resp);
    return rv;
}

int
kcli_run(struct kcli_http *h, bool json, int argc, char *const *argv)
{
    struct kcli_cmd c;
    struct buf err = BUF_INIT;
    struct buf resp = BUF_INIT;
    int rv;

    if (kcli_cmd_parse(argc, argv, &c, &err) != 0) {
        fprintf(stderr, "kcli: %s\n", buf_cstr(&err));
        buf_fini(&err);
        return KCLI_EXIT_USAGE;
    }
    buf_fini(&err);
    json = json || c.json;
    if (c.op == KCLI_OP_HELP) {
        fputs(c.text, stdout);
        rv = KCLI_EXIT_OK;
    } else if (c.op == KCLI_OP_QUEUE_SUMMARY) {
        rv = kcli_run_queue_summary(h, &c, json);
    } else if (c.op == KCLI_OP_CLUSTER_ADMIN) {
        rv = kcli_run_cluster_admin(h, &c, json);
    } else {
        rv = kcli_run_fetch(h, c.method, c.path, c.body, -1, &resp);
        if (rv == 0 && json) {
            kcli_run_print_raw(&resp);
        } else if (rv == 0) {
            rv = kcli_run_show(&c, &resp);
        }
    }
    fflush(stdout);
    buf_fini(&resp);
    kcli_cmd_fini(&c);
    return rv;
}
