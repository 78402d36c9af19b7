/* http_api_admin.c - the /api/admin/... endpoints with KumoMTA's paths and
 * JSON shapes: bounce, suspend, suspend-ready-q (create, list, cancel),
 * rebind, set_diagnostic_log_filter, inspect-message and ready-q-states.
 * Rules are made, listed and cancelled through admin.h (committed through
 * Raft by the daemon); this file only translates HTTP to rules and back.
 * Access was checked by http_api.c (trusted hosts). Loop thread only. */
#include "http_api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "base/km.h"
#include "base/log.h"
#include "message.h"
#include "queue.h"
#include "spool.h"

#define HTTP_API_ADMIN_DEFAULT_MS (5 * 60 * 1000)

/* State carried to admin_add/admin_cancel callbacks. */
struct http_api_admin_op {
    struct http_api *h;
    struct http_req *req;
    enum admin_kind kind;
    bool cancel;
};

void
http_api_admin_humantime(int64_t ms, char *out, size_t len)
{
    int64_t s = ms > 0 ? ms / 1000 : 0;
    int64_t d = s / 86400, hh = (s / 3600) % 24, m = (s / 60) % 60,
            sec = s % 60;
    size_t off = 0;

    out[0] = '\0';
    if (d > 0) {
        off += (size_t)snprintf(out + off, len - off, "%lldday%s", (long long)d,
                                d == 1 ? "" : "s");
    }
    if (hh > 0 && off < len) {
        off += (size_t)snprintf(out + off, len - off, "%s%lldh",
                                off > 0 ? " " : "", (long long)hh);
    }
    if (m > 0 && off < len) {
        off += (size_t)snprintf(out + off, len - off, "%s%lldm",
                                off > 0 ? " " : "", (long long)m);
    }
    if ((sec > 0 || off == 0) && off < len) {
        snprintf(out + off, len - off, "%s%llds", off > 0 ? " " : "",
                 (long long)sec);
    }
}

/* RFC 3339 "2026-11-24T15:00:00Z" or with an offset, to unix ms. */
static int
http_api_admin_parse_rfc3339(const char *s, int64_t *out)
{
    struct tm tm;
    const char *p;
    int64_t off = 0, ms = 0;

    memset(&tm, 0, sizeof(tm));
    p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL) {
        return KM_EINVAL;
    }
    if (*p == '.') {
        int scale = 100;
        for (p++; *p >= '0' && *p <= '9'; p++) {
            ms += (*p - '0') * scale;
            scale /= 10;
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        off = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600 +
              ((p[4] - '0') * 10 + (p[5] - '0')) * 60;
        if (*p == '-') {
            off = -off;
        }
        p += 6;
    } else {
        return KM_EINVAL;
    }
    if (*p != '\0') {
        return KM_EINVAL;
    }
    *out = ((int64_t)timegm(&tm) - off) * 1000 + ms;
    return 0;
}

static void
http_api_admin_rfc3339(int64_t ms, char *out, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(ms % 1000));
}

static char *
http_api_admin_str(json_t *body, const char *key)
{
    const char *s = json_string_value(json_object_get(body, key));

    return s != NULL ? km_strdup(s) : NULL;
}

/* Fill r from a POST body; 400 reason in err. */
static int
http_api_admin_rule_from(json_t *body, enum admin_kind kind,
                         struct admin_rule *r, char *err, size_t errlen)
{
    json_t *dur = json_object_get(body, "duration");
    json_t *exp = json_object_get(body, "expires");
    json_t *qn = json_object_get(body, "queue_names");
    uint64_t ms = HTTP_API_ADMIN_DEFAULT_MS;
    size_t i;
    json_t *v;

    memset(r, 0, sizeof(*r));
    r->kind = kind;
    r->reason = http_api_admin_str(body, "reason");
    if (r->reason == NULL) {
        snprintf(err, errlen, "reason: missing");
        return KM_EINVAL;
    }
    r->domain = http_api_admin_str(body, "domain");
    r->routing_domain = http_api_admin_str(body, "routing_domain");
    r->tenant = http_api_admin_str(body, "tenant");
    r->campaign = http_api_admin_str(body, "campaign");
    r->name = http_api_admin_str(body, "name");
    if (kind == ADMIN_SUSPEND_READY_Q && r->name == NULL) {
        snprintf(err, errlen, "name: missing");
        return KM_EINVAL;
    }
    if (qn != NULL && !json_is_null(qn)) {
        if (!json_is_array(qn)) {
            snprintf(err, errlen, "queue_names: must be an array");
            return KM_EINVAL;
        }
        r->queue_names = km_calloc(json_array_size(qn) + 1, sizeof(char *));
        json_array_foreach(qn, i, v)
        {
            if (!json_is_string(v)) {
                snprintf(err, errlen, "queue_names[%zu]: must be a string", i);
                return KM_EINVAL;
            }
            r->queue_names[r->n_queue_names++] =
                km_strdup(json_string_value(v));
        }
    }
    if (json_is_string(exp)) {
        if (http_api_admin_parse_rfc3339(json_string_value(exp),
                                         &r->expires_ms) != 0) {
            snprintf(err, errlen, "expires: not an RFC 3339 time");
            return KM_EINVAL;
        }
    } else {
        if (json_is_string(dur) &&
            km_parse_duration_ms(json_string_value(dur), &ms) != 0) {
            snprintf(err, errlen, "duration: cannot parse '%s'",
                     json_string_value(dur));
            return KM_EINVAL;
        }
        if (json_is_integer(dur)) {
            ms = (uint64_t)json_integer_value(dur) * 1000u;
        }
        r->expires_ms = km_now_wall_ms() + (int64_t)ms;
    }
    if (kind == ADMIN_REBIND) {
        json_t *data = json_object_get(body, "data");
        if (!json_is_object(data)) {
            snprintf(err, errlen, "data: must be an object");
            return KM_EINVAL;
        }
        r->rebind_data = json_deep_copy(data);
        r->always_flush = json_is_true(json_object_get(body, "always_flush"));
        r->trigger_rebind_event =
            json_is_true(json_object_get(body, "trigger_rebind_event"));
    }
    r->suppress_logging =
        json_is_true(json_object_get(body, "suppress_logging"));
    return 0;
}

static void
http_api_admin_on_done(void *arg, int status, const struct admin_rule *rule)
{
    struct http_api_admin_op *op = arg;
    struct http_api *h = op->h;
    json_t *j;

    if (status == KM_ENOENT) {
        http_api_reply_error(op->req, 404, "no such rule");
    } else if (status != 0) {
        http_api_reply_error(op->req, 503, "rule not committed: %s",
                             km_strerror(status));
    } else if (op->cancel) {
        http_api_server_reply(op->req, 200, "application/json", "{}", 2, NULL);
    } else if (op->kind == ADMIN_BOUNCE) {
        j = json_pack("{s:s,s:{},s:i}", "id", rule->id, "bounced",
                      "total_bounced", 0);
        http_api_reply_json(op->req, 200, j);
        json_decref(j);
    } else {
        j = json_pack("{s:s}", "id", rule->id);
        http_api_reply_json(op->req, 200, j);
        json_decref(j);
    }
    http_api_server_req_free(op->req);
    free(op);
    http_api_op_done(h);
}

static struct http_api_admin_op *
http_api_admin_op_new(struct http_api *h, struct http_req *req,
                      enum admin_kind kind, bool cancel)
{
    struct http_api_admin_op *op = km_calloc(1, sizeof(*op));

    op->h = h;
    op->req = req;
    op->kind = kind;
    op->cancel = cancel;
    return op;
}

static json_t *
http_api_admin_body(struct http_req *req)
{
    json_error_t jerr;
    json_t *j = json_loadb(buf_cstr(&req->body), req->body.len, 0, &jerr);

    if (j == NULL) {
        http_api_reply_error(req, 400, "invalid JSON: line %d column %d: %s",
                             jerr.line, jerr.column, jerr.text);
    } else if (!json_is_object(j)) {
        json_decref(j);
        j = NULL;
        http_api_reply_error(req, 400, "body must be a JSON object");
    }
    return j;
}

/* Returns true if admin_add took req (see http_api_inject_handle). */
static bool
http_api_admin_create(struct http_api *h, struct http_req *req,
                      enum admin_kind kind)
{
    struct http_api_admin_op *op;
    struct admin_rule rule;
    char err[256];
    json_t *body = http_api_admin_body(req);
    int rv;

    if (body == NULL) {
        return false;
    }
    rv = http_api_admin_rule_from(body, kind, &rule, err, sizeof(err));
    json_decref(body);
    if (rv != 0) {
        admin_rule_fini(&rule);
        http_api_reply_error(req, 400, "%s", err);
        return false;
    }
    op = http_api_admin_op_new(h, req, kind, false);
    h->pending_ops++;
    rv = admin_add(h->node.admin, &rule, http_api_admin_on_done, op);
    admin_rule_fini(&rule);
    if (rv != 0) {
        /* admin.h: no callback when the call itself fails. */
        h->pending_ops--;
        free(op);
        http_api_reply_error(req, rv == KM_EINVAL ? 400 : 503,
                             "rule not accepted: %s", km_strerror(rv));
        return false;
    }
    return true;
}

static bool
http_api_admin_cancel(struct http_api *h, struct http_req *req,
                      enum admin_kind kind)
{
    struct http_api_admin_op *op;
    json_t *body = http_api_admin_body(req);
    const char *id;
    int rv;

    if (body == NULL) {
        return false;
    }
    id = json_string_value(json_object_get(body, "id"));
    if (id == NULL) {
        json_decref(body);
        http_api_reply_error(req, 400, "id: missing");
        return false;
    }
    op = http_api_admin_op_new(h, req, kind, true);
    h->pending_ops++;
    rv = admin_cancel(h->node.admin, kind, id, http_api_admin_on_done, op);
    json_decref(body);
    if (rv != 0) {
        h->pending_ops--;
        free(op);
        if (rv == KM_ENOENT) {
            http_api_reply_error(req, 404, "no such rule");
        } else {
            http_api_reply_error(req, 503, "cancel failed: %s",
                                 km_strerror(rv));
        }
        return false;
    }
    return true;
}

static void
http_api_admin_set_opt(json_t *o, const char *key, const char *v)
{
    json_object_set_new(o, key, v != NULL ? json_string(v) : json_null());
}

static void
http_api_admin_on_rule(void *arg, const struct admin_rule *r)
{
    json_t *list = arg;
    json_t *e = json_object();
    int64_t now = km_now_wall_ms();
    char remain[64], exp[40];

    http_api_admin_humantime(r->expires_ms - now, remain, sizeof(remain));
    json_object_set_new(e, "id", json_string(r->id));
    if (r->kind == ADMIN_SUSPEND_READY_Q) {
        http_api_admin_set_opt(e, "name", r->name);
    } else {
        http_api_admin_set_opt(e, "campaign", r->campaign);
        http_api_admin_set_opt(e, "tenant", r->tenant);
        http_api_admin_set_opt(e, "domain", r->domain);
        if (r->kind == ADMIN_BOUNCE) {
            http_api_admin_set_opt(e, "routing_domain", r->routing_domain);
        }
    }
    http_api_admin_set_opt(e, "reason", r->reason);
    json_object_set_new(e, "duration", json_string(remain));
    if (r->kind == ADMIN_SUSPEND_READY_Q) {
        http_api_admin_rfc3339(r->expires_ms, exp, sizeof(exp));
        json_object_set_new(e, "expires", json_string(exp));
    }
    if (r->kind == ADMIN_BOUNCE) {
        json_object_set_new(e, "bounced", json_object());
        json_object_set_new(e, "total_bounced",
                            json_integer((json_int_t)r->matched));
    }
    json_array_append_new(list, e);
}

static void
http_api_admin_list(struct http_api *h, struct http_req *req,
                    enum admin_kind kind)
{
    json_t *list = json_array();

    admin_foreach(h->node.admin, kind, http_api_admin_on_rule, list);
    http_api_reply_json(req, 200, list);
    json_decref(list);
}

/* GET lists, POST creates, DELETE cancels. True if req was taken. */
static bool
http_api_admin_rules(struct http_api *h, struct http_req *req,
                     enum admin_kind kind)
{
    if (strcmp(req->method, "GET") == 0 && kind != ADMIN_REBIND) {
        http_api_admin_list(h, req, kind);
    } else if (strcmp(req->method, "POST") == 0) {
        return http_api_admin_create(h, req, kind);
    } else if (strcmp(req->method, "DELETE") == 0 && kind != ADMIN_REBIND) {
        return http_api_admin_cancel(h, req, kind);
    } else {
        http_api_reply_error(req, 405, "method %s not allowed", req->method);
    }
    return false;
}

static void
http_api_admin_log_filter(struct http_req *req)
{
    json_t *body;
    const char *f;

    if (strcmp(req->method, "POST") != 0) {
        http_api_reply_error(req, 405, "use POST");
        return;
    }
    if ((body = http_api_admin_body(req)) == NULL) {
        return;
    }
    f = json_string_value(json_object_get(body, "filter"));
    if (f == NULL || log_set_filter(f) != 0) {
        http_api_reply_error(req, 400, "filter: missing or invalid");
    } else {
        LOG_INFO("http_api: diagnostic log filter set to '%s'", f);
        http_api_server_reply(req, 200, "application/json", "{}", 2, NULL);
    }
    json_decref(body);
}

static void
http_api_admin_inspect(struct http_api *h, struct http_req *req)
{
    char *id = http_api_query_param(req->query, "id");
    char *want = http_api_query_param(req->query, "want_body");
    struct message *m;
    json_t *msg, *j;
    char due[40];

    if (id == NULL || id[0] == '\0') {
        http_api_reply_error(req, 400, "id: missing");
        goto out;
    }
    m = h->node.queues != NULL ? queue_find(h->node.queues, id) : NULL;
    if (m == NULL) {
        http_api_reply_error(req, 404, "message %s is not queued here", id);
        goto out;
    }
    msg = json_object();
    json_object_set_new(msg, "sender", json_string(message_sender(m)));
    json_object_set_new(msg, "recipient", json_string(message_recipient(m)));
    json_object_set(msg, "meta", message_meta(m));
    json_object_set_new(msg, "scheduling", json_null());
    if (message_due_ms(m) > 0) {
        http_api_admin_rfc3339(message_due_ms(m), due, sizeof(due));
        json_object_set_new(msg, "due", json_string(due));
    } else {
        json_object_set_new(msg, "due", json_null());
    }
    json_object_set_new(msg, "num_attempts",
                        json_integer(message_num_attempts(m)));
    if (want != NULL && strcmp(want, "true") == 0) {
        const struct buf *d = message_data_c(m);
        struct buf tmp = BUF_INIT;

        if (d->len == 0 && h->node.data != NULL) {
            spool_get(h->node.data, id, &tmp);
            d = &tmp;
        }
        json_object_set_new(msg, "data",
                            json_stringn_nocheck(buf_cstr(d), d->len));
        buf_fini(&tmp);
    }
    j = json_pack("{s:s,s:o}", "id", id, "message", msg);
    http_api_reply_json(req, 200, j);
    json_decref(j);
out:
    free(id);
    free(want);
}

bool
http_api_admin_handle(struct http_api *h, struct http_req *req, bool *taken)
{
    const char *p = req->path;

    *taken = false;
    if (strcmp(p, "/api/admin/set_diagnostic_log_filter/v1") == 0) {
        http_api_admin_log_filter(req);
        return true;
    }
    if (strcmp(p, "/api/admin/ready-q-states/v1") == 0) {
        /* No per-ready-queue state is exposed by egress yet. */
        http_api_server_reply(req, 200, "application/json",
                              "{\"states_by_ready_queue\":{}}", 27, NULL);
        return true;
    }
    if (strcmp(p, "/api/admin/inspect-message/v1") == 0) {
        http_api_admin_inspect(h, req);
        return true;
    }
    if (strcmp(p, "/api/admin/bounce/v1") != 0 &&
        strcmp(p, "/api/admin/suspend/v1") != 0 &&
        strcmp(p, "/api/admin/suspend-ready-q/v1") != 0 &&
        strcmp(p, "/api/admin/rebind/v1") != 0) {
        return false;
    }
    if (!h->ready || h->shutting_down) {
        http_api_reply_error(req, 503, "%s",
                             h->ready ? "shutting down"
                                      : "waiting for spool "
                                        "startup");
        return true;
    }
    if (strcmp(p, "/api/admin/bounce/v1") == 0) {
        *taken = http_api_admin_rules(h, req, ADMIN_BOUNCE);
    } else if (strcmp(p, "/api/admin/suspend/v1") == 0) {
        *taken = http_api_admin_rules(h, req, ADMIN_SUSPEND);
    } else if (strcmp(p, "/api/admin/suspend-ready-q/v1") == 0) {
        *taken = http_api_admin_rules(h, req, ADMIN_SUSPEND_READY_Q);
    } else {
        *taken = http_api_admin_rules(h, req, ADMIN_REBIND);
    }
    return true;
}
