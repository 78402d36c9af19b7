/* kcli_cmd.c - kcli's global options and subcommand table: each subcommand
 * with its flags (KumoMTA's names), its help text and the builder that
 * turns parsed flags into one HTTP request (method, path, JSON body) as
 * described in KUMOMTA-API.md §5-6. Only parsing and validation happen
 * here; sending is kcli_run.c's job. Single threaded, no I/O. */
#include "kcli/kcli.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/km.h"

/* -- Flag specifications ---------------------------------------------------
 */

struct kcli_flag {
    const char *name; /* without the leading "--" */
    bool has_arg;
    bool repeat;
};

/* One flag occurrence, or a positional word when flag is NULL. */
struct kcli_word {
    const struct kcli_flag *flag;
    const char *value;
};

struct kcli_parsed {
    struct kcli_word *words;
    size_t n;
};

struct kcli_def;
typedef int (*kcli_build_cb)(const struct kcli_def *d,
                             const struct kcli_parsed *a, struct kcli_cmd *c,
                             struct buf *err);

struct kcli_def {
    const char *name;
    enum kcli_op op;
    const char *summary;
    const char *usage;  /* the words after the name */
    const char *detail; /* extra help lines, may be NULL */
    const struct kcli_flag *flags;
    const char *const *completions; /* "--flag" words for the shell */
    kcli_build_cb build;
};

#define KCLI_CRITERIA_FLAGS                                                    \
    {"domain", true, false}, {"campaign", true, false},                        \
        {"tenant", true, false}, {"queue", true, true},                        \
    {                                                                          \
        "everything", false, false                                             \
    }

static const struct kcli_flag kcli_flags_queue_summary[] = {
    {"limit", true, false},
    {NULL, false, false},
};
static const struct kcli_flag kcli_flags_bounce[] = {
    KCLI_CRITERIA_FLAGS,
    {"routing-domain", true, false},
    {"reason", true, false},
    {"duration", true, false},
    {"suppress-logging", false, false},
    {NULL, false, false},
};
static const struct kcli_flag kcli_flags_none[] = {
    {NULL, false, false},
};
static const struct kcli_flag kcli_flags_id[] = {
    {"id", true, false},
    {NULL, false, false},
};
static const struct kcli_flag kcli_flags_suspend[] = {
    KCLI_CRITERIA_FLAGS,
    {"reason", true, false},
    {"duration", true, false},
    {NULL, false, false},
};
static const struct kcli_flag kcli_flags_suspend_ready_q[] = {
    {"name", true, false},
    {"reason", true, false},
    {"duration", true, false},
    {NULL, false, false},
};
static const struct kcli_flag kcli_flags_rebind[] = {
    KCLI_CRITERIA_FLAGS,
    {"routing-domain", true, false},
    {"reason", true, false},
    {"set", true, true},
    {"data", true, false},
    {"always-flush", false, false},
    {"trigger-rebind-event", false, false},
    {"suppress-logging", false, false},
    {NULL, false, false},
};
static const struct kcli_flag kcli_flags_inspect_message[] = {
    {"want-body", false, false},
    {NULL, false, false},
};

/* Flags every subcommand takes. */
static const struct kcli_flag kcli_flag_json = {"json", false, false};
static const struct kcli_flag kcli_flag_help = {"help", false, false};

static const char *const kcli_compl_queue_summary[] = {"--limit", "--json",
                                                       NULL};
static const char *const kcli_compl_bounce[] = {
    "--reason",     "--domain",   "--routing-domain",
    "--campaign",   "--tenant",   "--queue",
    "--everything", "--duration", "--suppress-logging",
    "--json",       NULL};
static const char *const kcli_compl_json[] = {"--json", NULL};
static const char *const kcli_compl_id[] = {"--id", "--json", NULL};
static const char *const kcli_compl_suspend[] = {
    "--reason",     "--domain",   "--campaign", "--tenant", "--queue",
    "--everything", "--duration", "--json",     NULL};
static const char *const kcli_compl_suspend_ready_q[] = {
    "--name", "--reason", "--duration", "--json", NULL};
static const char *const kcli_compl_rebind[] = {"--reason",
                                                "--domain",
                                                "--routing-domain",
                                                "--campaign",
                                                "--tenant",
                                                "--queue",
                                                "--everything",
                                                "--set",
                                                "--data",
                                                "--always-flush",
                                                "--trigger-rebind-event",
                                                "--suppress-logging",
                                                "--json",
                                                NULL};
static const char *const kcli_compl_inspect_message[] = {"--want-body",
                                                         "--json", NULL};
static const char *const kcli_compl_cluster[] = {
    "status", "add-node", "remove-node", "transfer-leader", "--json", NULL};

/* -- Helpers ---------------------------------------------------------------
 */

static const struct kcli_flag *
kcli_cmd_find_flag(const struct kcli_def *d, const char *name, size_t n)
{
    for (const struct kcli_flag *f = d->flags; f->name != NULL; f++) {
        if (strlen(f->name) == n && memcmp(f->name, name, n) == 0) {
            return f;
        }
    }
    if (n == 4 && memcmp(name, "json", 4) == 0) {
        return &kcli_flag_json;
    }
    if (n == 4 && memcmp(name, "help", 4) == 0) {
        return &kcli_flag_help;
    }
    return NULL;
}

/* The last value of flag `name`, or NULL. */
static const char *
kcli_cmd_get(const struct kcli_parsed *a, const char *name)
{
    const char *v = NULL;

    for (size_t i = 0; i < a->n; i++) {
        if (a->words[i].flag != NULL &&
            strcmp(a->words[i].flag->name, name) == 0) {
            v = a->words[i].value;
        }
    }
    return v;
}

static bool
kcli_cmd_has(const struct kcli_parsed *a, const char *name)
{
    return kcli_cmd_get(a, name) != NULL;
}

static size_t
kcli_cmd_npos(const struct kcli_parsed *a)
{
    size_t n = 0;

    for (size_t i = 0; i < a->n; i++) {
        if (a->words[i].flag == NULL) {
            n++;
        }
    }
    return n;
}

/* The i-th positional word, or NULL. */
static const char *
kcli_cmd_pos(const struct kcli_parsed *a, size_t idx)
{
    for (size_t i = 0; i < a->n; i++) {
        if (a->words[i].flag == NULL) {
            if (idx == 0) {
                return a->words[i].value;
            }
            idx--;
        }
    }
    return NULL;
}

static int kcli_cmd_usage_error(const struct kcli_def *d, struct buf *err,
                                const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
kcli_cmd_usage_error(const struct kcli_def *d, struct buf *err, const char *fmt,
                     ...)
{
    va_list ap;

    buf_appendf(err, "%s: ", d->name);
    va_start(ap, fmt);
    buf_vappendf(err, fmt, ap);
    va_end(ap);
    buf_appendf(err, "\nusage: kcli %s %s", d->name, d->usage);
    return KM_EINVAL;
}

static int
kcli_cmd_no_positionals(const struct kcli_def *d, const struct kcli_parsed *a,
                        struct buf *err)
{
    if (kcli_cmd_npos(a) > 0) {
        return kcli_cmd_usage_error(d, err, "unexpected argument '%s'",
                                    kcli_cmd_pos(a, 0));
    }
    return 0;
}

static int
kcli_cmd_require(const struct kcli_def *d, const struct kcli_parsed *a,
                 const char *flag, struct buf *err)
{
    const char *v = kcli_cmd_get(a, flag);

    if (v == NULL || v[0] == '\0') {
        return kcli_cmd_usage_error(d, err, "--%s is required", flag);
    }
    return 0;
}

static void
kcli_cmd_set_str(json_t *body, const char *key, const char *v)
{
    if (v != NULL) {
        json_object_set_new(body, key, json_string(v));
    }
}

/* Check --duration and copy it (as given: kumod parses the same forms). */
static int
kcli_cmd_duration(const struct kcli_def *d, const struct kcli_parsed *a,
                  json_t *body, struct buf *err)
{
    const char *v = kcli_cmd_get(a, "duration");
    uint64_t ms;

    if (v == NULL) {
        return 0;
    }
    if (km_parse_duration_ms(v, &ms) != 0 || ms == 0) {
        return kcli_cmd_usage_error(d, err, "invalid --duration '%s'", v);
    }
    json_object_set_new(body, "duration", json_string(v));
    return 0;
}

/* The criteria flags into body: at least one of them or --everything,
 * never both (KumoMTA insists on an explicit --everything). */
static int
kcli_cmd_criteria(const struct kcli_def *d, const struct kcli_parsed *a,
                  json_t *body, struct buf *err)
{
    static const char *const names[][2] = {
        {"domain", "domain"},
        {"routing-domain", "routing_domain"},
        {"campaign", "campaign"},
        {"tenant", "tenant"},
    };
    json_t *queues = json_array();
    bool any = false;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = kcli_cmd_get(a, names[i][0]);

        if (v != NULL) {
            json_object_set_new(body, names[i][1], json_string(v));
            any = true;
        }
    }
    for (size_t i = 0; i < a->n; i++) {
        if (a->words[i].flag != NULL &&
            strcmp(a->words[i].flag->name, "queue") == 0) {
            json_array_append_new(queues, json_string(a->words[i].value));
        }
    }
    if (json_array_size(queues) > 0) {
        json_object_set(body, "queue_names", queues);
        any = true;
    }
    json_decref(queues);
    if (any && kcli_cmd_has(a, "everything")) {
        return kcli_cmd_usage_error(
            d, err, "--everything cannot be combined with other criteria");
    }
    if (!any && !kcli_cmd_has(a, "everything")) {
        return kcli_cmd_usage_error(
            d, err,
            "give at least one of --domain,%s --campaign, --tenant, "
            "--queue, or --everything",
            kcli_cmd_find_flag(d, "routing-domain", 14) != NULL
                ? " --routing-domain,"
                : "");
    }
    return 0;
}

static void
kcli_cmd_set_flag(json_t *body, const struct kcli_parsed *a, const char *flag,
                  const char *key)
{
    if (kcli_cmd_has(a, flag)) {
        json_object_set_new(body, key, json_true());
    }
}

/* Append `s` to b, percent-encoding everything but RFC 3986 unreserved. */
static void
kcli_cmd_urlencode(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
            *p == '~') {
            buf_append_char(b, (char)*p);
        } else {
            buf_append_char(b, '%');
            buf_append_char(b, hex[*p >> 4]);
            buf_append_char(b, hex[*p & 15]);
        }
    }
}

static void
kcli_cmd_set_request(struct kcli_cmd *c, const char *method, const char *path,
                     json_t *body)
{
    c->method = method;
    c->path = km_strdup(path);
    c->body = body;
}

/* -- Builders --------------------------------------------------------------
 */

static int
kcli_build_queue_summary(const struct kcli_def *d, const struct kcli_parsed *a,
                         struct kcli_cmd *c, struct buf *err)
{
    const char *v = kcli_cmd_get(a, "limit");
    int rv = kcli_cmd_no_positionals(d, a, err);

    if (rv != 0) {
        return rv;
    }
    if (v != NULL) {
        char *end = NULL;
        long n = strtol(v, &end, 10);

        if (v[0] == '\0' || *end != '\0' || n <= 0) {
            return kcli_cmd_usage_error(d, err, "invalid --limit '%s'", v);
        }
        c->limit = n;
    }
    kcli_cmd_set_request(c, "GET", "/api/admin/queue-summary/v1", NULL);
    return 0;
}

/* bounce, suspend and rebind share this shape: reason + criteria. */
static int
kcli_build_rule(const struct kcli_def *d, const struct kcli_parsed *a,
                json_t *body, struct buf *err)
{
    int rv = kcli_cmd_no_positionals(d, a, err);

    if (rv == 0) {
        rv = kcli_cmd_require(d, a, "reason", err);
    }
    if (rv == 0) {
        rv = kcli_cmd_criteria(d, a, body, err);
    }
    if (rv == 0) {
        kcli_cmd_set_str(body, "reason", kcli_cmd_get(a, "reason"));
    }
    return rv;
}

/* bounce and suspend: criteria, reason and duration, then a POST. */
static int
kcli_build_timed_rule(const struct kcli_def *d, const struct kcli_parsed *a,
                      struct kcli_cmd *c, struct buf *err, const char *path,
                      bool suppress_flag)
{
    json_t *body = json_object();
    int rv = kcli_build_rule(d, a, body, err);

    if (rv == 0) {
        rv = kcli_cmd_duration(d, a, body, err);
    }
    if (rv != 0) {
        json_decref(body);
        return rv;
    }
    if (suppress_flag) {
        kcli_cmd_set_flag(body, a, "suppress-logging", "suppress_logging");
    }
    kcli_cmd_set_request(c, "POST", path, body);
    return 0;
}

static int
kcli_build_bounce(const struct kcli_def *d, const struct kcli_parsed *a,
                  struct kcli_cmd *c, struct buf *err)
{
    return kcli_build_timed_rule(d, a, c, err, "/api/admin/bounce/v1", true);
}

static int
kcli_build_suspend(const struct kcli_def *d, const struct kcli_parsed *a,
                   struct kcli_cmd *c, struct buf *err)
{
    return kcli_build_timed_rule(d, a, c, err, "/api/admin/suspend/v1", false);
}

static int
kcli_build_suspend_ready_q(const struct kcli_def *d,
                           const struct kcli_parsed *a, struct kcli_cmd *c,
                           struct buf *err)
{
    json_t *body = json_object();
    int rv = kcli_cmd_no_positionals(d, a, err);

    if (rv == 0) {
        rv = kcli_cmd_require(d, a, "name", err);
    }
    if (rv == 0) {
        rv = kcli_cmd_require(d, a, "reason", err);
    }
    if (rv == 0) {
        rv = kcli_cmd_duration(d, a, body, err);
    }
    if (rv != 0) {
        json_decref(body);
        return rv;
    }
    kcli_cmd_set_str(body, "name", kcli_cmd_get(a, "name"));
    kcli_cmd_set_str(body, "reason", kcli_cmd_get(a, "reason"));
    kcli_cmd_set_request(c, "POST", "/api/admin/suspend-ready-q/v1", body);
    return 0;
}

/* --data JSON first, then each --set k=v on top of it, in order. */
static int
kcli_cmd_rebind_data(const struct kcli_def *d, const struct kcli_parsed *a,
                     json_t **out, struct buf *err)
{
    const char *raw = kcli_cmd_get(a, "data");
    json_t *data;

    if (raw != NULL) {
        json_error_t jerr;

        data = json_loads(raw, 0, &jerr);
        if (data == NULL) {
            return kcli_cmd_usage_error(d, err, "--data is not JSON: %s",
                                        jerr.text);
        }
        if (!json_is_object(data)) {
            json_decref(data);
            return kcli_cmd_usage_error(d, err, "--data must be a JSON object");
        }
    } else {
        data = json_object();
    }
    for (size_t i = 0; i < a->n; i++) {
        const char *kv = a->words[i].value;
        const char *eq;

        if (a->words[i].flag == NULL ||
            strcmp(a->words[i].flag->name, "set") != 0) {
            continue;
        }
        eq = strchr(kv, '=');
        if (eq == NULL || eq == kv) {
            json_decref(data);
            return kcli_cmd_usage_error(d, err,
                                        "--set wants KEY=VALUE, not '%s'", kv);
        }
        char *key = km_strndup(kv, (size_t)(eq - kv));
        json_object_set_new(data, key, json_string(eq + 1));
        free(key);
    }
    *out = data;
    return 0;
}

static int
kcli_build_rebind(const struct kcli_def *d, const struct kcli_parsed *a,
                  struct kcli_cmd *c, struct buf *err)
{
    json_t *body = json_object();
    json_t *data = NULL;
    int rv = kcli_build_rule(d, a, body, err);

    if (rv == 0) {
        rv = kcli_cmd_rebind_data(d, a, &data, err);
    }
    if (rv != 0) {
        json_decref(body);
        return rv;
    }
    /* A rebind that changes nothing and flushes nothing is a mistake. */
    if (json_object_size(data) == 0 && !kcli_cmd_has(a, "always-flush") &&
        !kcli_cmd_has(a, "trigger-rebind-event")) {
        json_decref(data);
        json_decref(body);
        return kcli_cmd_usage_error(d, err,
                                    "nothing to do: give --set, --data, "
                                    "--always-flush or --trigger-rebind-event");
    }
    json_object_set_new(body, "data", data);
    kcli_cmd_set_flag(body, a, "always-flush", "always_flush");
    kcli_cmd_set_flag(body, a, "trigger-rebind-event", "trigger_rebind_event");
    kcli_cmd_set_flag(body, a, "suppress-logging", "suppress_logging");
    kcli_cmd_set_request(c, "POST", "/api/admin/rebind/v1", body);
    return 0;
}

static const char *
kcli_cmd_list_path(enum kcli_op op)
{
    switch (op) {
    case KCLI_OP_BOUNCE_LIST:
    case KCLI_OP_BOUNCE_CANCEL:
        return "/api/admin/bounce/v1";
    case KCLI_OP_SUSPEND_LIST:
    case KCLI_OP_SUSPEND_CANCEL:
        return "/api/admin/suspend/v1";
    default:
        return "/api/admin/suspend-ready-q/v1";
    }
}

static int
kcli_build_list(const struct kcli_def *d, const struct kcli_parsed *a,
                struct kcli_cmd *c, struct buf *err)
{
    int rv = kcli_cmd_no_positionals(d, a, err);

    if (rv == 0) {
        kcli_cmd_set_request(c, "GET", kcli_cmd_list_path(d->op), NULL);
    }
    return rv;
}

static int
kcli_build_cancel(const struct kcli_def *d, const struct kcli_parsed *a,
                  struct kcli_cmd *c, struct buf *err)
{
    int rv = kcli_cmd_no_positionals(d, a, err);
    json_t *body;

    if (rv == 0) {
        rv = kcli_cmd_require(d, a, "id", err);
    }
    if (rv != 0) {
        return rv;
    }
    body = json_pack("{s:s}", "id", kcli_cmd_get(a, "id"));
    kcli_cmd_set_request(c, "DELETE", kcli_cmd_list_path(d->op), body);
    return 0;
}

static int
kcli_build_inspect_message(const struct kcli_def *d,
                           const struct kcli_parsed *a, struct kcli_cmd *c,
                           struct buf *err)
{
    struct buf path = BUF_INIT;

    if (kcli_cmd_npos(a) != 1 || kcli_cmd_pos(a, 0)[0] == '\0') {
        return kcli_cmd_usage_error(d, err, "give exactly one message ID");
    }
    buf_append_str(&path, "/api/admin/inspect-message/v1?id=");
    kcli_cmd_urlencode(&path, kcli_cmd_pos(a, 0));
    if (kcli_cmd_has(a, "want-body")) {
        buf_append_str(&path, "&want_body=true");
    }
    kcli_cmd_set_request(c, "GET", buf_cstr(&path), NULL);
    buf_fini(&path);
    return 0;
}

static int
kcli_build_set_log_filter(const struct kcli_def *d, const struct kcli_parsed *a,
                          struct kcli_cmd *c, struct buf *err)
{
    if (kcli_cmd_npos(a) != 1 || kcli_cmd_pos(a, 0)[0] == '\0') {
        return kcli_cmd_usage_error(d, err, "give exactly one FILTER");
    }
    kcli_cmd_set_request(c, "POST", "/api/admin/set_diagnostic_log_filter/v1",
                         json_pack("{s:s}", "filter", kcli_cmd_pos(a, 0)));
    return 0;
}

/* A positive node id, or 0. */
static unsigned long long
kcli_cmd_node_id(const char *s)
{
    char *end;
    unsigned long long n;

    if (s == NULL || s[0] < '0' || s[0] > '9') {
        return 0;
    }
    n = strtoull(s, &end, 10);
    return *end == '\0' ? n : 0;
}

static int
kcli_build_cluster(const struct kcli_def *d, const struct kcli_parsed *a,
                   struct kcli_cmd *c, struct buf *err)
{
    const char *sub = kcli_cmd_pos(a, 0);
    size_t npos = kcli_cmd_npos(a);
    unsigned long long id = kcli_cmd_node_id(kcli_cmd_pos(a, 1));

    if (sub == NULL) {
        return kcli_cmd_usage_error(d, err, "missing cluster subcommand");
    }
    if (strcmp(sub, "status") == 0) {
        if (npos > 1) {
            return kcli_cmd_usage_error(d, err, "unexpected argument '%s'",
                                        kcli_cmd_pos(a, 1));
        }
        c->op = KCLI_OP_CLUSTER_STATUS;
        kcli_cmd_set_request(c, "GET", "/api/admin/cluster/status/v1", NULL);
        return 0;
    }
    if (strcmp(sub, "add-node") == 0) {
        if (npos != 4 || id == 0 || kcli_cmd_pos(a, 2)[0] == '\0') {
            return kcli_cmd_usage_error(d, err,
                                        "add-node takes ID RAFT_ADDR LINK_URL");
        }
        c->op = KCLI_OP_CLUSTER_ADMIN;
        kcli_cmd_set_request(c, "POST", "/api/admin/cluster/add-node/v1",
                             json_pack("{s:I,s:s,s:s}", "id", (json_int_t)id,
                                       "raft", kcli_cmd_pos(a, 2), "link",
                                       kcli_cmd_pos(a, 3)));
        return 0;
    }
    if (strcmp(sub, "remove-node") == 0) {
        if (npos != 2 || id == 0) {
            return kcli_cmd_usage_error(d, err,
                                        "remove-node takes one node ID");
        }
        c->op = KCLI_OP_CLUSTER_ADMIN;
        kcli_cmd_set_request(c, "POST", "/api/admin/cluster/remove-node/v1",
                             json_pack("{s:I}", "id", (json_int_t)id));
        return 0;
    }
    if (strcmp(sub, "transfer-leader") == 0) {
        if (npos > 2 || (npos == 2 && id == 0)) {
            return kcli_cmd_usage_error(d, err,
                                        "transfer-leader takes at most one "
                                        "node ID");
        }
        c->op = KCLI_OP_CLUSTER_ADMIN;
        kcli_cmd_set_request(c, "POST", "/api/admin/cluster/transfer-leader/v1",
                             npos == 2
                                 ? json_pack("{s:I}", "id", (json_int_t)id)
                                 : json_object());
        return 0;
    }
    return kcli_cmd_usage_error(d, err, "unknown cluster subcommand '%s'", sub);
}

/* -- The table -------------------------------------------------------------
 */

static const struct kcli_def kcli_defs[] = {
    {"queue-summary", KCLI_OP_QUEUE_SUMMARY,
     "show ready and scheduled queues with their counts",
     "[--limit N] [--json]",
     "Reads GET /api/admin/queue-summary/v1 and GET /metrics. Ready queues:\n"
     "D delivered, T transient failures, C connections, Q queued.",
     kcli_flags_queue_summary, kcli_compl_queue_summary,
     kcli_build_queue_summary},
    {"bounce", KCLI_OP_BOUNCE, "bounce queued (and arriving) messages",
     "--reason R (--domain D | --routing-domain D | --campaign C | --tenant T "
     "| --queue Q... | --everything) [--duration 5m] [--suppress-logging]",
     "The rule stays active for --duration (kumod's default: 5m) and also\n"
     "bounces matching messages that arrive meanwhile. Prints the rule id.",
     kcli_flags_bounce, kcli_compl_bounce, kcli_build_bounce},
    {"bounce-list", KCLI_OP_BOUNCE_LIST, "list active bounce rules", "[--json]",
     NULL, kcli_flags_none, kcli_compl_json, kcli_build_list},
    {"bounce-cancel", KCLI_OP_BOUNCE_CANCEL, "cancel a bounce rule", "--id ID",
     NULL, kcli_flags_id, kcli_compl_id, kcli_build_cancel},
    {"suspend", KCLI_OP_SUSPEND, "suspend delivery from scheduled queues",
     "--reason R (--domain D | --campaign C | --tenant T | --queue Q... | "
     "--everything) [--duration 5m]",
     "Matching messages stay in their scheduled queues until the suspension\n"
     "expires or is cancelled. Prints {\"id\": ...}.",
     kcli_flags_suspend, kcli_compl_suspend, kcli_build_suspend},
    {"suspend-list", KCLI_OP_SUSPEND_LIST, "list active suspensions",
     "[--json]", NULL, kcli_flags_none, kcli_compl_json, kcli_build_list},
    {"suspend-cancel", KCLI_OP_SUSPEND_CANCEL, "cancel a suspension", "--id ID",
     NULL, kcli_flags_id, kcli_compl_id, kcli_build_cancel},
    {"suspend-ready-q", KCLI_OP_SUSPEND_READY_Q,
     "suspend delivery on one egress path (ready queue)",
     "--name RQ --reason R [--duration 5m]",
     "RQ is a ready queue name such as 'source->site@smtp_client'.",
     kcli_flags_suspend_ready_q, kcli_compl_suspend_ready_q,
     kcli_build_suspend_ready_q},
    {"suspend-ready-q-list", KCLI_OP_SUSPEND_READY_Q_LIST,
     "list active ready-queue suspensions", "[--json]", NULL, kcli_flags_none,
     kcli_compl_json, kcli_build_list},
    {"suspend-ready-q-cancel", KCLI_OP_SUSPEND_READY_Q_CANCEL,
     "cancel a ready-queue suspension", "--id ID", NULL, kcli_flags_id,
     kcli_compl_id, kcli_build_cancel},
    {"rebind", KCLI_OP_REBIND, "move or flush queued messages",
     "--reason R (--domain D | --routing-domain D | --campaign C | --tenant T "
     "| --queue Q... | --everything) [--set KEY=VALUE]... [--data JSON] "
     "[--always-flush] [--trigger-rebind-event] [--suppress-logging]",
     "--set and --data give metadata merged into each matching message;\n"
     "--always-flush makes unchanged messages due now. Asynchronous.",
     kcli_flags_rebind, kcli_compl_rebind, kcli_build_rebind},
    {"inspect-message", KCLI_OP_INSPECT_MESSAGE,
     "show a queued message's envelope and metadata", "[--want-body] ID", NULL,
     kcli_flags_inspect_message, kcli_compl_inspect_message,
     kcli_build_inspect_message},
    {"set-log-filter", KCLI_OP_SET_LOG_FILTER,
     "change the diagnostic log filter", "FILTER",
     "FILTER is a directive such as 'kumod=debug'.", kcli_flags_none,
     kcli_compl_json, kcli_build_set_log_filter},
    {"cluster", KCLI_OP_CLUSTER_STATUS,
     "show the cluster, change its membership or leader",
     "status [--json] | add-node ID RAFT_ADDR LINK_URL | remove-node ID | "
     "transfer-leader [ID]",
     "status: one row per member; a member that did not answer is shown as\n"
     "unreachable. add-node: the new node runs with bootstrap=false.\n"
     "remove-node: drains the node's shards first (kcli waits up to 2m).\n"
     "transfer-leader: to ID, or to the most up-to-date voter.",
     kcli_flags_none, kcli_compl_cluster, kcli_build_cluster},
};

#define KCLI_NDEFS (sizeof(kcli_defs) / sizeof(kcli_defs[0]))

static const struct kcli_def *
kcli_cmd_find(const char *name)
{
    for (size_t i = 0; i < KCLI_NDEFS; i++) {
        if (strcmp(kcli_defs[i].name, name) == 0) {
            return &kcli_defs[i];
        }
    }
    return NULL;
}

static void
kcli_cmd_help_def(const struct kcli_def *d, struct buf *out)
{
    buf_appendf(out, "usage: kcli %s %s\n\n%s.\n", d->name, d->usage,
                d->summary);
    if (d->detail != NULL) {
        buf_appendf(out, "%s\n", d->detail);
    }
}

/* Split argv[1..] into flag occurrences and positionals. "--" ends flags. */
static int
kcli_cmd_scan(const struct kcli_def *d, int argc, char *const *argv,
              struct kcli_parsed *a, struct buf *err)
{
    bool flags_done = false;

    a->words = km_calloc((size_t)argc + 1, sizeof(*a->words));
    a->n = 0;
    for (int i = 1; i < argc; i++) {
        const char *w = argv[i];
        const struct kcli_flag *f;
        const char *eq;
        size_t nlen;

        if (flags_done || strncmp(w, "--", 2) != 0 || w[2] == '\0') {
            if (!flags_done && strcmp(w, "--") == 0) {
                flags_done = true;
                continue;
            }
            a->words[a->n++] = (struct kcli_word){NULL, w};
            continue;
        }
        eq = strchr(w + 2, '=');
        nlen = eq != NULL ? (size_t)(eq - (w + 2)) : strlen(w + 2);
        f = kcli_cmd_find_flag(d, w + 2, nlen);
        if (f == NULL) {
            return kcli_cmd_usage_error(d, err, "unknown option '%.*s'",
                                        (int)nlen + 2, w);
        }
        if (!f->has_arg && eq != NULL) {
            return kcli_cmd_usage_error(d, err, "--%s takes no value", f->name);
        }
        if (f->has_arg && eq == NULL && i + 1 >= argc) {
            return kcli_cmd_usage_error(d, err, "--%s needs a value", f->name);
        }
        if (!f->repeat && f->has_arg) {
            for (size_t j = 0; j < a->n; j++) {
                if (a->words[j].flag == f) {
                    return kcli_cmd_usage_error(d, err, "--%s given twice",
                                                f->name);
                }
            }
        }
        if (f->has_arg) {
            a->words[a->n++] =
                (struct kcli_word){f, eq != NULL ? eq + 1 : argv[++i]};
        } else {
            a->words[a->n++] = (struct kcli_word){f, ""};
        }
    }
    return 0;
}

/* -- Public API ------------------------------------------------------------
 */

int
kcli_opts_parse(int argc, char *const *argv, const char *env_endpoint,
                struct kcli_opts *out, struct buf *err)
{
    int i;

    memset(out, 0, sizeof(*out));
    out->endpoint = env_endpoint != NULL && env_endpoint[0] != '\0'
                        ? env_endpoint
                        : KCLI_DEFAULT_ENDPOINT;
    for (i = 1; i < argc; i++) {
        const char *w = argv[i];

        if (strcmp(w, "--json") == 0) {
            out->json = true;
        } else if (strcmp(w, "--help") == 0 || strcmp(w, "-h") == 0) {
            out->help = true;
        } else if (strcmp(w, "--version") == 0 || strcmp(w, "-V") == 0) {
            out->version = true;
        } else if (strcmp(w, "--endpoint") == 0) {
            if (i + 1 >= argc || argv[i + 1][0] == '\0') {
                buf_append_str(err, "--endpoint needs a URL");
                return KM_EINVAL;
            }
            out->endpoint = argv[++i];
        } else if (strncmp(w, "--endpoint=", 11) == 0) {
            if (w[11] == '\0') {
                buf_append_str(err, "--endpoint needs a URL");
                return KM_EINVAL;
            }
            out->endpoint = w + 11;
        } else if (w[0] == '-' && w[1] != '\0') {
            buf_appendf(err, "unknown option '%s'", w);
            return KM_EINVAL;
        } else {
            break;
        }
    }
    out->first_arg = i;
    return 0;
}

void
kcli_cmd_init(struct kcli_cmd *c)
{
    memset(c, 0, sizeof(*c));
    c->limit = -1;
}

void
kcli_cmd_fini(struct kcli_cmd *c)
{
    free(c->path);
    free(c->text);
    json_decref(c->body);
    kcli_cmd_init(c);
}

int
kcli_cmd_parse(int argc, char *const *argv, struct kcli_cmd *c, struct buf *err)
{
    const struct kcli_def *d;
    struct kcli_parsed a = {NULL, 0};
    int rv;

    kcli_cmd_init(c);
    if (argc < 1) {
        buf_append_str(err, "missing subcommand");
        return KM_EINVAL;
    }
    d = kcli_cmd_find(argv[0]);
    if (d == NULL) {
        buf_appendf(err, "unknown subcommand '%s' (try 'help')", argv[0]);
        return KM_ENOENT;
    }
    rv = kcli_cmd_scan(d, argc, argv, &a, err);
    if (rv != 0) {
        goto out;
    }
    c->name = d->name;
    c->op = d->op;
    if (kcli_cmd_has(&a, "help")) {
        struct buf text = BUF_INIT;

        kcli_cmd_help_def(d, &text);
        c->op = KCLI_OP_HELP;
        c->text = km_strdup(buf_cstr(&text));
        buf_fini(&text);
        goto out;
    }
    c->json = kcli_cmd_has(&a, "json");
    rv = d->build(d, &a, c, err);
    if (rv != 0) {
        kcli_cmd_fini(c);
    }
out:
    free(a.words);
    return rv;
}

void
kcli_cmd_help_all(struct buf *out)
{
    size_t w = 0;

    for (size_t i = 0; i < KCLI_NDEFS; i++) {
        size_t n = strlen(kcli_defs[i].name);

        w = n > w ? n : w;
    }
    for (size_t i = 0; i < KCLI_NDEFS; i++) {
        buf_appendf(out, "  %-*s  %s\n", (int)w, kcli_defs[i].name,
                    kcli_defs[i].summary);
    }
}

int
kcli_cmd_help(const char *name, struct buf *out)
{
    const struct kcli_def *d = kcli_cmd_find(name);

    if (d == NULL) {
        return KM_ENOENT;
    }
    kcli_cmd_help_def(d, out);
    return 0;
}

const char *
kcli_cmd_name_at(size_t i)
{
    return i < KCLI_NDEFS ? kcli_defs[i].name : NULL;
}

const char *const *
kcli_cmd_flags(const char *name)
{
    const struct kcli_def *d = kcli_cmd_find(name);

    return d != NULL ? d->completions : NULL;
}
