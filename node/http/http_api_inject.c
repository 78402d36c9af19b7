/* http_api_inject.c - POST /api/inject/v1 (KUMOMTA-API.md §5): parse and
 * validate the body, compile its templates once, then per recipient
 * render (global substitutions, the recipient's, email, name, to_header),
 * build the RFC 5322 message (raw content as is, or a MIME message from
 * the builder form), run http_message_generated, and hand the accepted
 * ones to ingest_submit(). The parser and builder are pure (unit tested);
 * no gzip bodies, no deferred_generation. Loop thread only. */
#include "http_api_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/km.h"
#include "base/km_id.h"
#include "base/log.h"
#include "ingest.h"
#include "logrec.h"
#include "message.h"
#include "metrics.h"
#include "policy.h"

/* Parsing */

void
http_api_inject_free(struct http_api_inject *inj)
{
    if (inj == NULL) {
        return;
    }
    free(inj->sender);
    for (size_t i = 0; i < inj->n_rcpts; i++) {
        free(inj->rcpts[i].email);
        free(inj->rcpts[i].name);
        json_decref(inj->rcpts[i].subst);
        json_decref(inj->rcpts[i].metadata);
    }
    free(inj->rcpts);
    json_decref(inj->subst);
    http_api_template_free(inj->raw);
    http_api_template_free(inj->subject);
    http_api_template_free(inj->text_body);
    http_api_template_free(inj->html_body);
    http_api_template_free(inj->from_name);
    free(inj->from_email);
    free(inj->reply_to);
    for (size_t i = 0; i < inj->n_headers; i++) {
        free(inj->headers[i].name);
        http_api_template_free(inj->headers[i].value);
    }
    free(inj->headers);
    for (size_t i = 0; i < inj->n_attach; i++) {
        free(inj->attach[i].content_type);
        free(inj->attach[i].file_name);
        free(inj->attach[i].content_id);
        buf_fini(&inj->attach[i].data);
    }
    free(inj->attach);
    free(inj);
}

size_t
http_api_inject_count(const struct http_api_inject *inj)
{
    return inj->n_rcpts;
}

const char *
http_api_inject_sender(const struct http_api_inject *inj)
{
    return inj->sender;
}

const char *
http_api_inject_recipient(const struct http_api_inject *inj, size_t i)
{
    return inj->rcpts[i].email;
}

json_t *
http_api_inject_metadata(const struct http_api_inject *inj, size_t i)
{
    return inj->rcpts[i].metadata;
}

static int
http_api_inject_bad(int *status, int code, char *err, size_t errlen,
                    const char *what)
{
    *status = code;
    snprintf(err, errlen, "%s", what);
    return KM_EINVAL;
}

/* Compile a template field; 422 on a syntax error, naming the field. */
static int
http_api_inject_tpl(const char *field, const char *src,
                    struct http_api_template **out, int *status, char *err,
                    size_t errlen)
{
    char why[512];

    if (http_api_template_compile(src, strlen(src), out, why, sizeof(why)) !=
        0) {
        *status = 422;
        snprintf(err, errlen, "%s: %s", field, why);
        return KM_EINVAL;
    }
    return 0;
}

/* No control character (CR, LF, NUL, ESC... and DEL); tab is allowed
 * only where allow_tab. Such values go into headers as they are. */
static bool
http_api_inject_no_ctl(const char *s, bool allow_tab)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == 0x7f || (c < 0x20 && !(allow_tab && c == '\t'))) {
            return false;
        }
    }
    return true;
}

/* An address has no control character, space or angle bracket and
 * holds an '@' (or is the null sender, for envelope_sender only). */
static bool
http_api_inject_addr_ok(const char *s, bool allow_empty)
{
    if (s[0] == '\0') {
        return allow_empty;
    }
    return http_api_inject_no_ctl(s, false) && strpbrk(s, "<> ") == NULL &&
           strchr(s, '@') != NULL;
}

static bool
http_api_inject_line_ok(const char *s)
{
    return http_api_inject_no_ctl(s, true);
}

/* RFC 5322 2.2: a field name is printable ASCII (33-126) except ':'. */
static bool
http_api_inject_field_name_ok(const char *s)
{
    if (s[0] == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (*s < 33 || *s > 126 || *s == ':') {
            return false;
        }
    }
    return true;
}

/* A quoted-string parameter value (RFC 2045 5.1): '"' and '\\' escaped. */
void
http_api_inject_quoted(const char *s, struct buf *out)
{
    buf_append_char(out, '"');
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\') {
            buf_append_char(out, '\\');
        }
        buf_append_char(out, *s);
    }
    buf_append_char(out, '"');
}

/* "Name" <email>, quoting the name when it has specials. The builder
 * encodes non-ASCII names (RFC 2047). */

static int
http_api_inject_parse_rcpts(struct http_api_inject *inj, json_t *list,
                            int *status, char *err, size_t errlen)
{
    size_t i;
    json_t *r;

    if (!json_is_array(list) || json_array_size(list) == 0) {
        return http_api_inject_bad(status, 400, err, errlen,
                                   "recipients: must be a non-empty array");
    }
    inj->rcpts = km_calloc(json_array_size(list), sizeof(*inj->rcpts));
    json_array_foreach(list, i, r)
    {
        struct http_api_inject_rcpt *rc = &inj->rcpts[inj->n_rcpts];
        const char *email = json_string_value(json_object_get(r, "email"));
        json_t *name = json_object_get(r, "name");
        json_t *subst = json_object_get(r, "substitutions");
        json_t *meta = json_object_get(r, "metadata");

        if (email == NULL || !http_api_inject_addr_ok(email, false)) {
            *status = 400;
            snprintf(err, errlen, "recipients[%zu].email: missing or invalid",
                     i);
            return KM_EINVAL;
        }
        if ((name != NULL && !json_is_string(name) && !json_is_null(name)) ||
            (subst != NULL && !json_is_object(subst) && !json_is_null(subst)) ||
            (meta != NULL && !json_is_object(meta) && !json_is_null(meta))) {
            *status = 400;
            snprintf(err, errlen,
                     "recipients[%zu]: name must be a string, substitutions "
                     "and metadata objects",
                     i);
            return KM_EINVAL;
        }
        rc->email = km_strdup(email);
        rc->name =
            json_is_string(name) ? km_strdup(json_string_value(name)) : NULL;
        rc->subst = json_is_object(subst) ? json_incref(subst) : NULL;
        rc->metadata = json_is_object(meta) ? json_incref(meta) : NULL;
        inj->n_rcpts++;
    }
    return 0;
}

static int
http_api_inject_parse_attach(struct http_api_inject *inj, json_t *list,
                             int *status, char *err, size_t errlen)
{
    size_t i;
    json_t *a;

    if (list == NULL || json_is_null(list)) {
        return 0;
    }
    if (!json_is_array(list)) {
        return http_api_inject_bad(status, 400, err, errlen,
                                   "content.attachments: must be an array");
    }
    inj->attach = km_calloc(json_array_size(list) + 1, sizeof(*inj->attach));
    json_array_foreach(list, i, a)
    {
        struct http_api_inject_attach *at = &inj->attach[inj->n_attach];
        json_t *data = json_object_get(a, "data");
        const char *ct = json_string_value(json_object_get(a, "content_type"));
        const char *fn = json_string_value(json_object_get(a, "file_name"));
        const char *cid = json_string_value(json_object_get(a, "content_id"));

        if (!json_is_string(data)) {
            *status = 400;
            snprintf(err, errlen, "content.attachments[%zu].data: missing", i);
            return KM_EINVAL;
        }
        if ((ct != NULL && !http_api_inject_line_ok(ct)) ||
            (fn != NULL && !http_api_inject_line_ok(fn)) ||
            (cid != NULL && !http_api_inject_line_ok(cid))) {
            *status = 400;
            snprintf(err, errlen, "content.attachments[%zu]: invalid field", i);
            return KM_EINVAL;
        }
        buf_init(&at->data);
        inj->n_attach++;
        at->content_type =
            km_strdup(ct != NULL ? ct : "application/octet-stream");
        at->file_name = fn != NULL ? km_strdup(fn) : NULL;
        at->content_id = cid != NULL ? km_strdup(cid) : NULL;
        if (json_is_true(json_object_get(a, "base64"))) {
            if (http_api_inject_b64_decode(json_string_value(data),
                                           json_string_length(data),
                                           &at->data) != 0) {
                *status = 400;
                snprintf(err, errlen,
                         "content.attachments[%zu].data: invalid base64", i);
                return KM_EINVAL;
            }
        } else {
            buf_append(&at->data, json_string_value(data),
                       json_string_length(data));
        }
    }
    return 0;
}

static int
http_api_inject_parse_builder(struct http_api_inject *inj, json_t *c,
                              int *status, char *err, size_t errlen)
{
    json_t *from = json_object_get(c, "from");
    json_t *reply_to = json_object_get(c, "reply_to");
    json_t *headers = json_object_get(c, "headers");
    const char *s, *key;
    json_t *v;
    int rv;

    s = json_string_value(json_object_get(from, "email"));
    if (s == NULL || !http_api_inject_addr_ok(s, false)) {
        return http_api_inject_bad(status, 400, err, errlen,
                                   "content.from.email: missing or invalid");
    }
    inj->from_email = km_strdup(s);
    s = json_string_value(json_object_get(from, "name"));
    if (s != NULL &&
        (rv = http_api_inject_tpl("content.from.name", s, &inj->from_name,
                                  status, err, errlen)) != 0) {
        return rv;
    }
    if (json_is_string(reply_to) || json_is_object(reply_to)) {
        struct buf b = BUF_INIT;
        const char *email =
            json_is_string(reply_to)
                ? json_string_value(reply_to)
                : json_string_value(json_object_get(reply_to, "email"));
        const char *name = json_string_value(json_object_get(reply_to, "name"));

        if (email == NULL || !http_api_inject_addr_ok(email, false) ||
            (name != NULL && !http_api_inject_line_ok(name))) {
            return http_api_inject_bad(status, 400, err, errlen,
                                       "content.reply_to: invalid");
        }
        http_api_inject_fmt_addr(name, email, &b);
        inj->reply_to = km_strdup(buf_cstr(&b));
        buf_fini(&b);
    }
    if ((s = json_string_value(json_object_get(c, "subject"))) != NULL &&
        (rv = http_api_inject_tpl("content.subject", s, &inj->subject, status,
                                  err, errlen)) != 0) {
        return rv;
    }
    if ((s = json_string_value(json_object_get(c, "text_body"))) != NULL &&
        (rv = http_api_inject_tpl("content.text_body", s, &inj->text_body,
                                  status, err, errlen)) != 0) {
        return rv;
    }
    if ((s = json_string_value(json_object_get(c, "html_body"))) != NULL &&
        (rv = http_api_inject_tpl("content.html_body", s, &inj->html_body,
                                  status, err, errlen)) != 0) {
        return rv;
    }
    if (inj->text_body == NULL && inj->html_body == NULL) {
        return http_api_inject_bad(status, 400, err, errlen,
                                   "content: needs text_body or html_body");
    }
    if (headers != NULL && !json_is_null(headers)) {
        if (!json_is_object(headers)) {
            return http_api_inject_bad(status, 400, err, errlen,
                                       "content.headers: must be an object");
        }
        inj->headers =
            km_calloc(json_object_size(headers) + 1, sizeof(*inj->headers));
        json_object_foreach(headers, key, v)
        {
            char field[300];

            if (!json_is_string(v) || !http_api_inject_field_name_ok(key)) {
                snprintf(err, errlen, "content.headers.%s: invalid", key);
                *status = 400;
                return KM_EINVAL;
            }
            snprintf(field, sizeof(field), "content.headers.%s", key);
            inj->headers[inj->n_headers].name = km_strdup(key);
            rv = http_api_inject_tpl(field, json_string_value(v),
                                     &inj->headers[inj->n_headers].value,
                                     status, err, errlen);
            inj->n_headers++;
            if (rv != 0) {
                return rv;
            }
        }
    }
    return http_api_inject_parse_attach(inj, json_object_get(c, "attachments"),
                                        status, err, errlen);
}

int
http_api_inject_parse(json_t *body, struct http_api_inject **out, int *status,
                      char *err, size_t errlen)
{
    struct http_api_inject *inj;
    json_t *content, *subst;
    const char *sender;
    int rv;

    *status = 400;
    if (!json_is_object(body)) {
        return http_api_inject_bad(status, 400, err, errlen,
                                   "body must be a JSON object");
    }
    sender = json_string_value(json_object_get(body, "envelope_sender"));
    if (sender == NULL || !http_api_inject_addr_ok(sender, true)) {
        return http_api_inject_bad(status, 400, err, errlen,
                                   "envelope_sender: missing or invalid");
    }
    subst = json_object_get(body, "substitutions");
    if (subst != NULL && !json_is_object(subst) && !json_is_null(subst)) {
        return http_api_inject_bad(status, 400, err, errlen,
                                   "substitutions: must be an object");
    }
    content = json_object_get(body, "content");
    if (!json_is_string(content) && !json_is_object(content)) {
        return http_api_inject_bad(status, 400, err, errlen,
                                   "content: must be a string or an object");
    }
    inj = km_calloc(1, sizeof(*inj));
    inj->sender = km_strdup(sender);
    inj->subst = json_is_object(subst) ? json_incref(subst) : NULL;
    rv = http_api_inject_parse_rcpts(inj, json_object_get(body, "recipients"),
                                     status, err, errlen);
    if (rv != 0) {
        goto err_after_alloc;
    }
    if (json_is_string(content)) {
        rv = http_api_inject_tpl("content", json_string_value(content),
                                 &inj->raw, status, err, errlen);
    } else {
        rv = http_api_inject_parse_builder(inj, content, status, err, errlen);
    }
    if (rv != 0) {
        goto err_after_alloc;
    }
    *out = inj;
    return 0;

err_after_alloc:
    http_api_inject_free(inj);
    return rv;
}

/* The request */

/* State carried to the ingest_submit() callback. */
struct http_api_inject_op {
    struct http_api *h;
    struct http_req *req;
    size_t n_ok;
    json_t *failed; /* failed_recipients */
    json_t *errors;
};

static void
http_api_inject_reply(struct http_api_inject_op *op, int status, size_t success)
{
    json_t *j =
        json_pack("{s:I,s:I,s:O,s:O}", "success_count", (json_int_t)success,
                  "fail_count", (json_int_t)json_array_size(op->failed),
                  "failed_recipients", op->failed, "errors", op->errors);

    http_api_reply_json(op->req, status, j);
    json_decref(j);
}

static void
http_api_inject_op_free(struct http_api_inject_op *op)
{
    json_decref(op->failed);
    json_decref(op->errors);
    http_api_server_req_free(op->req);
    free(op);
}

static void
http_api_inject_on_ingest(void *arg, int status)
{
    struct http_api_inject_op *op = arg;
    struct http_api *h = op->h;

    if (status == 0) {
        /* ingest counts total_messages_received. */
        http_api_inject_reply(op, 200, op->n_ok);
    } else {
        LOG_WARN("http_api: %s: inject of %zu messages failed: %s",
                 op->req->peer_ip, op->n_ok, km_strerror(status));
        json_array_append_new(
            op->errors, json_sprintf("messages not accepted, try again later "
                                     "(%s)",
                                     km_strerror(status)));
        http_api_inject_reply(op, 503, 0);
    }
    http_api_inject_op_free(op);
    http_api_op_done(h);
}

/* Build, run http_message_generated on, and keep (msgs[*n]) recipient i's
 * message; a failure is recorded in op. */
static void
http_api_inject_one(struct http_api *h, struct http_api_inject_op *op,
                    const struct http_api_inject *inj, size_t i,
                    json_t *auth_info, const char *http_auth,
                    struct message **msgs, size_t *n)
{
    char id[KM_ID_HEX_LEN + 1];
    const char *rcpt = http_api_inject_recipient(inj, i);
    json_t *meta = json_object();
    json_t *extra = http_api_inject_metadata(inj, i);
    struct policy_arg args[2];
    struct policy_result res;
    struct message *m;
    int rv;

    km_idgen_next(h->d.ids, id);
    json_object_set_new(meta, "reception_protocol", json_string("HTTP"));
    json_object_set_new(meta, "http_auth", json_string(http_auth));
    if (extra != NULL) {
        json_object_set(meta, "extra", extra);
    }
    rv = message_new(id, http_api_inject_sender(inj), rcpt, meta, &m);
    if (rv != 0) {
        json_array_append_new(op->failed, json_string(rcpt));
        json_array_append_new(op->errors,
                              json_sprintf("%s: %s", rcpt, km_strerror(rv)));
        return;
    }
    http_api_inject_build(inj, i, id, h->hostname, km_now_wall_ms(),
                          message_data(m));
    memset(&res, 0, sizeof(res));
    rv = 0;
    if (h->d.policy != NULL) {
        args[0].kind = POLICY_ARG_MESSAGE;
        args[0].u.msg = m;
        args[1].kind = POLICY_ARG_JSON;
        args[1].u.json = auth_info;
        rv = policy_call(h->d.policy, "http_message_generated", args, 2, &res,
                         NULL, 0);
    }
    if (rv != 0) {
        json_array_append_new(op->failed, json_string(rcpt));
        if (rv == KM_EREJECT) {
            json_array_append_new(op->errors, json_sprintf("%s: %d %s", rcpt,
                                                           res.reject.code,
                                                           res.reject.text));
        } else {
            json_array_append_new(
                op->errors,
                json_sprintf("%s: http_message_generated failed", rcpt));
        }
        policy_result_fini(&res);
        message_unref(m);
        return;
    }
    policy_result_fini(&res);
    msgs[(*n)++] = m;
}

static json_t *
http_api_inject_auth_info(const struct http_api_auth *auth)
{
    json_t *groups = json_array();
    json_t *ids = json_array();

    if (auth->trusted) {
        json_array_append_new(groups, json_string("kumomta:http-listener-"
                                                  "trusted-ip"));
    }
    if (auth->authenticated) {
        json_array_append_new(ids,
                              json_pack("{s:s,s:s}", "identity", auth->user,
                                        "context", "HttpBasicAuth"));
    }
    return json_pack("{s:s,s:o,s:o}", "peer_address", auth->peer_ip,
                     "identities", ids, "groups", groups);
}

bool
http_api_inject_handle(struct http_api *h, struct http_req *req,
                       const struct http_api_auth *auth)
{
    struct http_api_inject_op *op;
    struct http_api_inject *inj;
    struct ingest_peer peer;
    struct message **msgs;
    json_error_t jerr;
    json_t *body, *auth_info;
    size_t n = 0, total;
    char err[600];
    int status;

    if (h->disk_low) {
        /* As SMTP's 452 4.3.1 at RCPT: nothing is taken in below the
         * spool's min_free_space (disk_guard.c). */
        http_api_reply_error(req, 503,
                             "the spool's disk is below min_free_space: "
                             "try again later");
        return false;
    }
    body = json_loadb(buf_cstr(&req->body), req->body.len, 0, &jerr);
    if (body == NULL) {
        http_api_reply_error(req, 400, "invalid JSON: line %d column %d: %s",
                             jerr.line, jerr.column, jerr.text);
        return false;
    }
    if (http_api_inject_parse(body, &inj, &status, err, sizeof(err)) != 0) {
        json_decref(body);
        http_api_reply_error(req, status, "%s", err);
        return false;
    }
    json_decref(body);
    total = http_api_inject_count(inj);
    op = km_calloc(1, sizeof(*op));
    op->h = h;
    op->req = req;
    op->failed = json_array();
    op->errors = json_array();
    auth_info = http_api_inject_auth_info(auth);
    msgs = km_calloc(total, sizeof(*msgs));
    for (size_t i = 0; i < total; i++) {
        http_api_inject_one(h, op, inj, i, auth_info,
                            auth->authenticated ? auth->user : req->peer_ip,
                            msgs, &n);
    }
    json_decref(auth_info);
    http_api_inject_free(inj);
    op->n_ok = n;
    if (n == 0) {
        http_api_inject_reply(op, 200, 0);
        op->req = NULL;
        http_api_inject_op_free(op);
        free(msgs);
        return false;
    }
    memset(&peer, 0, sizeof(peer));
    peer.reception_protocol = "HTTP";
    peer.peer_name = "";
    peer.peer_addr = req->peer_ip;
    h->pending_ops++;
    /* The request now belongs to op (freed in the callback, which never
     * runs before ingest_submit returns). What becomes of each message
     * (the null queue too) is ingest's business. */
    ingest_submit(h->d.ingest, msgs, NULL, n, &peer, http_api_inject_on_ingest,
                  op);
    for (size_t i = 0; i < n; i++) {
        message_unref(msgs[i]);
    }
    free(msgs);
    return true;
}
