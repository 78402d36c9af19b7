/* kcli_render.c - turn kumod's API answers into what kcli prints: the
 * queue-summary tables (ready queues from Prometheus text, scheduled queues
 * from the queue-summary JSON), the admin rule listings, cluster status and
 * the one-line error of a failed request. Tolerant of missing fields (shown
 * as "-"); renders into a buf, never to a stream. No I/O. */
#include "kcli/kcli.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/km.h"

/* -- Helpers ---------------------------------------------------------------
 */

/* The first of `keys` (NULL-terminated) present and not null in obj. */
static const json_t *
kcli_render_pick(const json_t *obj, const char *const *keys)
{
    if (!json_is_object(obj)) {
        return NULL;
    }
    for (; *keys != NULL; keys++) {
        const json_t *v = json_object_get(obj, *keys);

        if (v != NULL && !json_is_null(v)) {
            return v;
        }
    }
    return NULL;
}

/* A scalar as text into a new string the caller owns; NULL for absent. */
static char *
kcli_render_scalar(const json_t *v)
{
    if (v == NULL || json_is_null(v)) {
        return NULL;
    }
    if (json_is_string(v)) {
        return km_strdup(json_string_value(v));
    }
    if (json_is_integer(v)) {
        return km_asprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
    }
    if (json_is_real(v)) {
        return km_asprintf("%g", json_real_value(v));
    }
    if (json_is_boolean(v)) {
        return km_strdup(json_is_true(v) ? "true" : "false");
    }
    return json_dumps(v, JSON_COMPACT);
}

static char *
kcli_render_field(const json_t *obj, const char *k1, const char *k2)
{
    const char *keys[] = {k1, k2, NULL};

    return kcli_render_scalar(kcli_render_pick(obj, keys));
}

/* Seconds as "1h2m", "4m59s", "12s", "350ms". */
static char *
kcli_render_secs(double secs)
{
    uint64_t s = (uint64_t)secs;

    if (secs < 1.0) {
        return km_asprintf("%ums", (unsigned)(secs * 1000.0));
    }
    if (s >= 86400) {
        return km_asprintf("%" PRIu64 "d%" PRIu64 "h", s / 86400,
                           s % 86400 / 3600);
    }
    if (s >= 3600) {
        return km_asprintf("%" PRIu64 "h%" PRIu64 "m", s / 3600, s % 3600 / 60);
    }
    if (s >= 60) {
        return km_asprintf("%" PRIu64 "m%" PRIu64 "s", s / 60, s % 60);
    }
    return km_asprintf("%" PRIu64 "s", s);
}

/* Time left of a rule: "duration" as a humantime string ("4m 59s 12ms":
 * the first two units), or a number of seconds. */
static char *
kcli_render_remain(const json_t *rule)
{
    const json_t *v = json_object_get(rule, "duration");

    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        const char *sp = strchr(s, ' ');

        if (sp != NULL) {
            sp = strchr(sp + 1, ' ');
        }
        return sp != NULL ? km_strndup(s, (size_t)(sp - s)) : km_strdup(s);
    }
    if (json_is_number(v)) {
        return kcli_render_secs(json_number_value(v));
    }
    return NULL;
}

/* "domain=a tenant=b queue=x,y", or "(everything)". */
static char *
kcli_render_criteria(const json_t *rule)
{
    static const char *const keys[] = {"domain", "routing_domain", "campaign",
                                       "tenant"};
    struct buf b = BUF_INIT;
    const json_t *queues = json_object_get(rule, "queue_names");
    char *s;

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const json_t *v = json_object_get(rule, keys[i]);

        if (json_is_string(v)) {
            buf_appendf(&b, "%s%s=%s", b.len > 0 ? " " : "", keys[i],
                        json_string_value(v));
        }
    }
    if (json_is_array(queues) && json_array_size(queues) > 0) {
        buf_appendf(&b, "%squeue=", b.len > 0 ? " " : "");
        for (size_t i = 0; i < json_array_size(queues); i++) {
            const json_t *q = json_array_get(queues, i);

            buf_appendf(&b, "%s%s", i > 0 ? "," : "",
                        json_is_string(q) ? json_string_value(q) : "?");
        }
    }
    s = km_strdup(b.len > 0 ? buf_cstr(&b) : "(everything)");
    buf_fini(&b);
    return s;
}

static void
kcli_render_free_cells(char **cells, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(cells[i]);
    }
}

static void
kcli_render_table_out(struct kcli_table *t, struct buf *out)
{
    kcli_table_render(t, out);
    kcli_table_free(t);
}

/* -- Admin listings --------------------------------------------------------
 */

void
kcli_render_bounce_list(const json_t *list, struct buf *out)
{
    static const char *const hdr[] = {"ID", "REASON", "REMAIN", "BOUNCED",
                                      "CRITERIA"};
    struct kcli_table *t;

    KM_ASSERT(kcli_table_new(5, hdr, &t) == 0);
    kcli_table_align_right(t, 3);
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *r = json_array_get(list, i);
        char *cells[5] = {
            kcli_render_field(r, "id", NULL),
            kcli_render_field(r, "reason", NULL),
            kcli_render_remain(r),
            kcli_render_field(r, "total_bounced", NULL),
            kcli_render_criteria(r),
        };

        kcli_table_add_row(t, (const char *const *)cells);
        kcli_render_free_cells(cells, 5);
    }
    kcli_render_table_out(t, out);
}

void
kcli_render_suspend_list(const json_t *list, struct buf *out)
{
    static const char *const hdr[] = {"ID", "REASON", "REMAIN", "CRITERIA"};
    struct kcli_table *t;

    KM_ASSERT(kcli_table_new(4, hdr, &t) == 0);
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *r = json_array_get(list, i);
        char *cells[4] = {
            kcli_render_field(r, "id", NULL),
            kcli_render_field(r, "reason", NULL),
            kcli_render_remain(r),
            kcli_render_criteria(r),
        };

        kcli_table_add_row(t, (const char *const *)cells);
        kcli_render_free_cells(cells, 4);
    }
    kcli_render_table_out(t, out);
}

void
kcli_render_suspend_ready_q_list(const json_t *list, struct buf *out)
{
    static const char *const hdr[] = {"ID", "NAME", "REASON", "REMAIN"};
    struct kcli_table *t;

    KM_ASSERT(kcli_table_new(4, hdr, &t) == 0);
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *r = json_array_get(list, i);
        char *cells[4] = {
            kcli_render_field(r, "id", NULL),
            kcli_render_field(r, "name", NULL),
            kcli_render_field(r, "reason", NULL),
            kcli_render_remain(r),
        };

        kcli_table_add_row(t, (const char *const *)cells);
        kcli_render_free_cells(cells, 4);
    }
    kcli_render_table_out(t, out);
}

/* -- Cluster status --------------------------------------------------------
 */

static char *
kcli_render_ping_age(const json_t *m)
{
    const json_t *v = json_object_get(m, "last_ping_age_ms");

    if (json_is_number(v)) {
        return kcli_render_secs(json_number_value(v) / 1000.0);
    }
    v = json_object_get(m, "last_ping_age_s");
    if (json_is_number(v)) {
        return kcli_render_secs(json_number_value(v));
    }
    return NULL;
}

static char *
kcli_render_lag(const json_t *m, const json_t *st)
{
    const json_t *lag = json_object_get(m, "lag");
    const json_t *commit = json_object_get(st, "commit_index");
    const json_t *applied = json_object_get(m, "applied_index");

    if (json_is_integer(lag)) {
        return kcli_render_scalar(lag);
    }
    if (json_is_integer(commit) && json_is_integer(applied)) {
        json_int_t d = json_integer_value(commit) - json_integer_value(applied);

        return km_asprintf("%" JSON_INTEGER_FORMAT, d > 0 ? d : 0);
    }
    return NULL;
}

/* "tls 29d" (days left on the member's certificate), "plaintext",
 * "insecure" (insecure_plaintext), or NULL when not known. */
static char *
kcli_render_tls(const json_t *m)
{
    const char *tls = json_string_value(json_object_get(m, "tls"));
    const json_t *exp = json_object_get(m, "cert_expiry");

    if (tls == NULL) {
        return NULL;
    }
    if (json_is_integer(exp)) {
        long long left =
            ((long long)json_integer_value(exp) - (long long)time(NULL)) /
            86400;
        return km_asprintf("%s %lldd", tls, left);
    }
    return km_strdup(tls);
}

static char *
kcli_render_member_state(const json_t *m)
{
    if (json_is_true(json_object_get(m, "unreachable"))) {
        return km_strdup("unreachable");
    }
    return kcli_render_field(m, "state", NULL);
}

/* Shards owned/backed, as "12/24". */
static char *
kcli_render_shards(const json_t *m)
{
    const json_t *own = json_object_get(m, "shards_owned");
    const json_t *back = json_object_get(m, "shards_backed");

    if (!json_is_integer(own)) {
        return NULL;
    }
    if (!json_is_integer(back)) {
        return kcli_render_scalar(own);
    }
    return km_asprintf("%" JSON_INTEGER_FORMAT "/%" JSON_INTEGER_FORMAT,
                       json_integer_value(own), json_integer_value(back));
}

/* Free bytes as "512M", "37G" (binary units, rounded down). */
static char *
kcli_render_free(const json_t *m)
{
    static const char units[] = "KMGTPE";
    const json_t *v = json_object_get(m, "free_bytes");
    double b;
    size_t u = 0;

    if (!json_is_integer(v)) {
        return NULL;
    }
    b = (double)json_integer_value(v);
    if (b < 1024) {
        return km_asprintf("%.0fB", b);
    }
    b /= 1024;
    while (b >= 1024 && u + 1 < sizeof(units) - 1) {
        b /= 1024;
        u++;
    }
    return km_asprintf("%.0f%c", b, units[u]);
}

void
kcli_render_cluster_status(const json_t *st, struct buf *out)
{
    static const char *const hdr[] = {
        "ID",   "RAFT ADDRESS", "ROLE",    "APPLIED", "LAG",
        "PING", "QUEUED",       "LEASE",   "SHARDS",  "UNDER",
        "FREE", "POLICY",       "VERSION", "TLS",     "STATE"};
    static const char *const labels[][3] = {
        {"CLUSTER", "cluster_id", "id"},
        {"TERM", "term", NULL},
        {"LEADER", "leader", "leader_id"},
        {"COMMIT", "commit_index", NULL},
    };
    const json_t *members = json_object_get(st, "members");
    struct kcli_table *t;

    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++) {
        char *v = kcli_render_field(st, labels[i][1], labels[i][2]);

        buf_appendf(out, "%-8s %s\n", labels[i][0], v != NULL ? v : "-");
        free(v);
    }
    /* Queued messages whose shard's owner cannot deliver them (a group's
     * node says so; older ones do not). */
    const json_t *unowned = json_object_get(st, "unowned_messages");
    if (json_is_integer(unowned)) {
        buf_appendf(out, "%-8s %" JSON_INTEGER_FORMAT "\n", "UNOWNED",
                    json_integer_value(unowned));
    }
    buf_append_char(out, '\n');
    if (!json_is_array(members)) {
        members = json_object_get(st, "nodes");
    }
    KM_ASSERT(kcli_table_new(15, hdr, &t) == 0);
    for (size_t c = 3; c <= 6; c++) {
        kcli_table_align_right(t, c);
    }
    kcli_table_align_right(t, 8);
    kcli_table_align_right(t, 9);
    kcli_table_align_right(t, 10);
    for (size_t i = 0; i < json_array_size(members); i++) {
        const json_t *m = json_array_get(members, i);
        char *cells[15] = {
            kcli_render_field(m, "id", "node"),
            kcli_render_field(m, "raft_address", "address"),
            kcli_render_field(m, "role", "raft_state"),
            kcli_render_field(m, "applied_index", NULL),
            kcli_render_lag(m, st),
            kcli_render_ping_age(m),
            kcli_render_field(m, "queued", NULL),
            kcli_render_field(m, "lease", NULL),
            kcli_render_shards(m),
            kcli_render_field(m, "under_replicated", NULL),
            kcli_render_free(m),
            kcli_render_field(m, "policy_checksum", NULL),
            kcli_render_field(m, "version", NULL),
            kcli_render_tls(m),
            kcli_render_member_state(m),
        };

        kcli_table_add_row(t, (const char *const *)cells);
        kcli_render_free_cells(cells, 15);
    }
    kcli_render_table_out(t, out);
}

/* -- queue-summary ---------------------------------------------------------
 */

/* One ready queue: "source->site@proto", from the metrics' service label
 * "<prefix>:<source>-><site>@<proto>" (prefix such as smtp_client). */
struct kcli_rq {
    char *service;
    char *site;
    char *source;
    char *proto;
    double counts[4]; /* D T C Q */
};

struct kcli_rqs {
    struct kcli_rq *v;
    size_t n;
    size_t cap;
};

static struct kcli_rq *
kcli_render_rq(struct kcli_rqs *rqs, const char *service)
{
    const char *arrow = strstr(service, "->");
    const char *colon = strchr(service, ':');
    const char *src;
    const char *at;
    struct kcli_rq *rq;

    for (size_t i = 0; i < rqs->n; i++) {
        if (strcmp(rqs->v[i].service, service) == 0) {
            return &rqs->v[i];
        }
    }
    if (arrow == NULL) {
        return NULL; /* an aggregate such as "smtp_client" */
    }
    if (rqs->n == rqs->cap) {
        rqs->cap = rqs->cap * 2 + 8;
        rqs->v = km_realloc(rqs->v, rqs->cap * sizeof(*rqs->v));
    }
    rq = &rqs->v[rqs->n++];
    memset(rq, 0, sizeof(*rq));
    rq->service = km_strdup(service);
    src = colon != NULL && colon < arrow ? colon + 1 : service;
    rq->source = km_strndup(src, (size_t)(arrow - src));
    at = strrchr(arrow + 2, '@');
    if (at != NULL) {
        rq->site = km_strndup(arrow + 2, (size_t)(at - (arrow + 2)));
        rq->proto = km_strdup(at + 1);
    } else {
        rq->site = km_strdup(arrow + 2);
        rq->proto = src != service
                        ? km_strndup(service, (size_t)(colon - service))
                        : km_strdup("-");
    }
    return rq;
}

static int
kcli_render_rq_cmp(const void *a, const void *b)
{
    const struct kcli_rq *x = a;
    const struct kcli_rq *y = b;
    int c = strcmp(x->site, y->site);

    return c != 0 ? c : strcmp(x->source, y->source);
}

/* Which of a ready queue's counters (D T C Q) a metric feeds, or -1. */
static int
kcli_render_rq_index(const char *metric)
{
    static const char *const names[] = {"total_messages_delivered",
                                        "total_messages_transfail",
                                        "connection_count", "ready_count"};

    for (int i = 0; i < 4; i++) {
        if (strcmp(metric, names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

static char *
kcli_render_count(double v)
{
    if (isnan(v) || v < 0) {
        return km_strdup("-");
    }
    return km_asprintf("%.0f", v);
}

static void
kcli_render_more(long shown, size_t total, struct buf *out)
{
    if (shown >= 0 && (size_t)shown < total) {
        buf_appendf(out, "(%zu more not shown)\n", total - (size_t)shown);
    }
}

static void
kcli_render_ready_queues(const struct kcli_prom *prom, long limit,
                         struct buf *out)
{
    static const char *const hdr[] = {"SITE", "SOURCE", "PROTO", "D",
                                      "T",    "C",      "Q"};
    struct kcli_rqs rqs = {NULL, 0, 0};
    struct kcli_table *t;

    for (size_t i = 0; i < kcli_prom_count(prom); i++) {
        const struct kcli_prom_sample *s = kcli_prom_at(prom, i);
        const char *service = kcli_prom_label(s, "service");
        int idx = kcli_render_rq_index(s->name);
        struct kcli_rq *rq;

        if (service == NULL || idx < 0) {
            continue;
        }
        rq = kcli_render_rq(&rqs, service);
        if (rq != NULL) {
            rq->counts[idx] += s->value;
        }
    }
    if (rqs.n == 0) {
        return;
    }
    qsort(rqs.v, rqs.n, sizeof(*rqs.v), kcli_render_rq_cmp);
    KM_ASSERT(kcli_table_new(7, hdr, &t) == 0);
    for (size_t c = 3; c < 7; c++) {
        kcli_table_align_right(t, c);
    }
    for (size_t i = 0; i < rqs.n; i++) {
        struct kcli_rq *rq = &rqs.v[i];

        if (limit < 0 || i < (size_t)limit) {
            char *cells[7] = {
                km_strdup(rq->site),
                km_strdup(rq->source),
                km_strdup(rq->proto),
                kcli_render_count(rq->counts[0]),
                kcli_render_count(rq->counts[1]),
                kcli_render_count(rq->counts[2]),
                kcli_render_count(rq->counts[3]),
            };

            kcli_table_add_row(t, (const char *const *)cells);
            kcli_render_free_cells(cells, 7);
        }
        free(rq->service);
        free(rq->site);
        free(rq->source);
        free(rq->proto);
    }
    kcli_render_table_out(t, out);
    kcli_render_more(limit, rqs.n, out);
    buf_append_char(out, '\n');
    free(rqs.v);
}

/* A scheduled queue and its count, for sorting. */
struct kcli_sq {
    const char *name;
    double count;
};

static int
kcli_render_sq_cmp(const void *a, const void *b)
{
    const struct kcli_sq *x = a;
    const struct kcli_sq *y = b;

    if (x->count != y->count) {
        return x->count > y->count ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

/* Scheduled queues from the JSON answer, else from scheduled_count{queue}. */
static size_t
kcli_render_collect_sched(const json_t *sched, const struct kcli_prom *prom,
                          struct kcli_sq **out)
{
    const json_t *list = json_object_get(sched, "scheduled");
    struct kcli_sq *v;
    size_t n = 0;

    if (sched != NULL) {
        v = km_calloc(json_array_size(list) + 1, sizeof(*v));
        for (size_t i = 0; i < json_array_size(list); i++) {
            const json_t *e = json_array_get(list, i);
            const json_t *q = json_object_get(e, "queue");

            if (json_is_string(q)) {
                v[n].name = json_string_value(q);
                v[n].count = json_number_value(json_object_get(e, "count"));
                n++;
            }
        }
    } else {
        size_t cnt = prom != NULL ? kcli_prom_count(prom) : 0;

        v = km_calloc(cnt + 1, sizeof(*v));
        for (size_t i = 0; i < cnt; i++) {
            const struct kcli_prom_sample *s = kcli_prom_at(prom, i);
            const char *q = kcli_prom_label(s, "queue");

            if (strcmp(s->name, "scheduled_count") == 0 && q != NULL) {
                v[n].name = q;
                v[n].count = s->value;
                n++;
            }
        }
    }
    qsort(v, n, sizeof(*v), kcli_render_sq_cmp);
    *out = v;
    return n;
}

void
kcli_render_queue_summary(const json_t *sched, const struct kcli_prom *prom,
                          long limit, struct buf *out)
{
    static const char *const hdr[] = {"SCHEDULED QUEUE", "COUNT"};
    struct kcli_sq *sq;
    size_t n;
    struct kcli_table *t;

    if (prom != NULL) {
        kcli_render_ready_queues(prom, limit, out);
    }
    n = kcli_render_collect_sched(sched, prom, &sq);
    KM_ASSERT(kcli_table_new(2, hdr, &t) == 0);
    kcli_table_align_right(t, 1);
    for (size_t i = 0; i < n && (limit < 0 || i < (size_t)limit); i++) {
        char *cells[2] = {km_strdup(sq[i].name),
                          kcli_render_count(sq[i].count)};

        kcli_table_add_row(t, (const char *const *)cells);
        kcli_render_free_cells(cells, 2);
    }
    kcli_render_table_out(t, out);
    kcli_render_more(limit, n, out);
    free(sq);
}

/* -- Errors ----------------------------------------------------------------
 */

void
kcli_render_http_error(const char *method, const char *path, long status,
                       const char *body, size_t body_len, struct buf *out)
{
    json_t *j = json_loadb(body, body_len, 0, NULL);
    const char *keys[] = {"error", "message", "reason", NULL};
    const json_t *msg = kcli_render_pick(j, keys);
    const char *p = body;
    const char *end = body + body_len;

    buf_appendf(out, "%s %s: %ld", method, path, status);
    if (json_is_string(msg)) {
        buf_appendf(out, " %s", json_string_value(msg));
        json_decref(j);
        return;
    }
    json_decref(j);
    /* The first non-blank line of a text body, trimmed. */
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol != NULL ? eol : end;
        const char *s = p;

        while (s < le && (*s == ' ' || *s == '\t' || *s == '\r')) {
            s++;
        }
        while (le > s && (le[-1] == ' ' || le[-1] == '\t' || le[-1] == '\r')) {
            le--;
        }
        if (le > s) {
            buf_append_char(out, ' ');
            buf_append(out, s, (size_t)(le - s));
            return;
        }
        p = eol != NULL ? eol + 1 : end;
    }
}
