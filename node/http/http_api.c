/* http_api.c - kumo.start_http_listener: parameters, KumoMTA's access
 * rule (trusted_hosts, HTTP Basic through http_server_validate_auth_basic
 * with a 60 s cache), routing, and the small endpoints: liveness, metrics
 * (Prometheus text and JSON, gauges refreshed per request), queue summary
 * and cluster status. Injection and admin live in http_api_inject.c and
 * http_api_admin.c; NNG in http_api_server.c. Loop thread only. */
#include "http_api.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "base/km.h"
#include "base/km_cidr.h"
#include "base/km_map.h"
#include "base/log.h"
#include "cluster.h"
#include "http_api_authdelay.h"
#include "http_api_int.h"
#include "metrics.h"
#include "policy.h"
#include "queue.h"
#include "spool.h"

/* Parameters */

static bool
http_api_is_trusted(const struct http_api *h, const char *peer)
{
    uint8_t addr[16];
    int family;

    if (peer[0] == '\0') {
        return false;
    }
    if (inet_pton(AF_INET, peer, addr) == 1) {
        family = AF_INET;
    } else if (inet_pton(AF_INET6, peer, addr) == 1) {
        family = AF_INET6; /* km_cidr_contains maps ::ffff:a.b.c.d */
    } else {
        return false;
    }
    return km_cidr_list_contains(&h->trusted, family, addr);
}

/* Fill h's settings from params (validated JSON). */
static int
http_api_apply_params(struct http_api *h, json_t *params, char *err,
                      size_t errlen)
{
    json_t *v = json_object_get(params, "listen");
    json_t *list = json_object_get(params, "trusted_hosts");
    const char *cert, *key;
    size_t i;
    json_t *e;

    h->listen = km_strdup(json_is_string(v) ? json_string_value(v)
                                            : HTTP_API_DEFAULT_LISTEN);
    if (strchr(h->listen, ':') == NULL) {
        snprintf(err, errlen, "listen '%s': expected ip:port", h->listen);
        return KM_ECONFIG;
    }
    v = json_object_get(params, "hostname");
    h->hostname =
        km_strdup(json_is_string(v) ? json_string_value(v) : km_hostname());
    v = json_object_get(params, "request_body_limit");
    h->body_limit = json_is_integer(v) && json_integer_value(v) > 0
                        ? (size_t)json_integer_value(v)
                        : HTTP_API_DEFAULT_BODY_LIMIT;
    if (list == NULL) {
        KM_ASSERT(km_cidr_list_add(&h->trusted, "127.0.0.1") == 0);
        KM_ASSERT(km_cidr_list_add(&h->trusted, "::1") == 0);
    } else {
        json_array_foreach(list, i, e)
        {
            const char *s = json_string_value(e);
            if (s == NULL || km_cidr_list_add(&h->trusted, s) != 0) {
                snprintf(err, errlen,
                         "trusted_hosts: '%s' is not an IP address or CIDR",
                         s != NULL ? s : "?");
                return KM_ECONFIG;
            }
        }
    }
    cert = json_string_value(json_object_get(params, "tls_certificate"));
    key = json_string_value(json_object_get(params, "tls_private_key"));
    if (json_is_true(json_object_get(params, "use_tls")) &&
        (cert == NULL || key == NULL)) {
        snprintf(err, errlen,
                 "use_tls needs tls_certificate and "
                 "tls_private_key");
        return KM_ECONFIG;
    }
    return 0;
}

static void
http_api_free(struct http_api *h)
{
    struct km_map_iter it;
    void *v;

    if (h->auth_cache != NULL) {
        km_map_iter_init(&it, h->auth_cache);
        while (km_map_iter_next(&it, NULL, &v)) {
            free(v);
        }
        km_map_free(h->auth_cache);
    }
    http_api_authdelay_free(h->authdelay);
    free(h->listen);
    free(h->hostname);
    km_cidr_list_fini(&h->trusted);
    free(h);
}

int
http_api_check_params(json_t *params, char *err, size_t errlen)
{
    struct http_api *h = km_calloc(1, sizeof(*h));
    int rv = http_api_apply_params(h, params, err, errlen);

    http_api_free(h);
    return rv;
}

/* Helpers shared by the module */

struct metrics *
http_api_metrics(struct http_api *h)
{
    return h->d.metrics;
}

void
http_api_reply_json(struct http_req *req, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

    if (s == NULL) {
        http_api_server_reply(req, 500, "text/plain", "json\n", 5, NULL);
        return;
    }
    http_api_server_reply(req, status, "application/json", s, strlen(s), NULL);
    free(s);
}

void
http_api_reply_error(struct http_req *req, int status, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    json_t *j;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    j = json_pack("{s:s}", "error", text);
    http_api_reply_json(req, status, j);
    json_decref(j);
}

static int
http_api_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (char)tolower((unsigned char)c);
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

static char *
http_api_url_decode(const char *p, size_t n)
{
    struct buf b = BUF_INIT;
    char *out;

    for (size_t i = 0; i < n; i++) {
        if (p[i] == '+') {
            buf_append_char(&b, ' ');
        } else if (p[i] == '%' && i + 2 < n && http_api_hexval(p[i + 1]) >= 0 &&
                   http_api_hexval(p[i + 2]) >= 0) {
            buf_append_char(&b, (char)(http_api_hexval(p[i + 1]) * 16 +
                                       http_api_hexval(p[i + 2])));
            i += 2;
        } else {
            buf_append_char(&b, p[i]);
        }
    }
    out = km_strdup(buf_cstr(&b));
    buf_fini(&b);
    return out;
}

char *
http_api_query_param(const char *query, const char *name)
{
    size_t nl = strlen(name);
    const char *p = query;

    while (p != NULL && *p != '\0') {
        const char *amp = strchr(p, '&');
        size_t len = amp != NULL ? (size_t)(amp - p) : strlen(p);

        if (len >= nl && strncmp(p, name, nl) == 0 &&
            (len == nl || p[nl] == '=')) {
            return len == nl ? km_strdup("")
                             : http_api_url_decode(p + nl + 1, len - nl - 1);
        }
        p = amp != NULL ? amp + 1 : NULL;
    }
    return NULL;
}

/* Access */

static int
http_api_b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

/* Standard base64 (padding optional) into out. */
static int
http_api_b64_decode(const char *s, struct buf *out)
{
    uint32_t acc = 0;
    int bits = 0;

    for (; *s != '\0' && *s != '='; s++) {
        int v = http_api_b64_value(*s);
        if (v < 0) {
            return KM_EINVAL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf_append_char(out, (char)((acc >> bits) & 0xff));
        }
    }
    return 0;
}

static void
http_api_auth_key(const char *user, const char *pass, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, user, strlen(user));
    EVP_DigestUpdate(ctx, "\0", 1);
    EVP_DigestUpdate(ctx, pass, strlen(pass));
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    for (unsigned i = 0; i < 32 && i < mdlen; i++) {
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    }
    out[64] = '\0';
}

/* Run http_server_validate_auth_basic (cached 60 s). KM_EPOLICY when the
 * handler failed (not cached). */
static int
http_api_validate_basic(struct http_api *h, const char *user, const char *pass,
                        bool *ok)
{
    struct policy_arg args[2];
    struct policy_result res;
    struct http_api_auth_entry *e;
    char key[65];
    int64_t now = km_now_wall_ms();
    int rv;

    http_api_auth_key(user, pass, key);
    e = km_map_get(h->auth_cache, key);
    if (e != NULL && e->expires_ms > now) {
        *ok = e->ok;
        return 0;
    }
    *ok = false;
    if (h->d.policy != NULL) {
        args[0].kind = POLICY_ARG_STRING;
        args[0].u.str = user;
        args[1].kind = POLICY_ARG_STRING;
        args[1].u.str = pass;
        memset(&res, 0, sizeof(res));
        rv = policy_call(h->d.policy, "http_server_validate_auth_basic", args,
                         2, &res, NULL, 0);
        if (rv == KM_EPOLICY) {
            policy_result_fini(&res);
            return rv;
        }
        /* true, or an AuthInfo table, accepts. */
        *ok = rv == 0 && (json_is_true(res.value) || json_is_object(res.value));
        policy_result_fini(&res);
    }
    if (km_map_count(h->auth_cache) >= HTTP_API_AUTH_CACHE_MAX) {
        struct km_map_iter it;
        void *v;
        km_map_iter_init(&it, h->auth_cache);
        while (km_map_iter_next(&it, NULL, &v)) {
            free(v);
        }
        km_map_clear(h->auth_cache);
        e = NULL;
    }
    if (e == NULL) {
        e = km_calloc(1, sizeof(*e));
        km_map_put(h->auth_cache, key, e, NULL);
    }
    e->ok = *ok;
    e->expires_ms = now + HTTP_API_AUTH_CACHE_MS;
    return 0;
}

static void
http_api_unauthorized(struct http_req *req, const char *why)
{
    static const char *const hdrs[] = {"WWW-Authenticate",
                                       "Basic realm=\"kumod\"", NULL};
    json_t *j = json_pack("{s:s}", "error", why);
    char *s = json_dumps(j, JSON_COMPACT);

    http_api_server_reply(req, 401, "application/json", s, strlen(s), hdrs);
    free(s);
    json_decref(j);
}

/* KumoMTA's rule: credentials, when given, must be valid (even from a
 * trusted host); then the route's ACL. Returns true if the request may
 * go on; otherwise it has been answered. */
static bool
http_api_check_access(struct http_api *h, struct http_req *req,
                      enum http_api_access acl, struct http_api_auth *auth)
{
    const char *a = req->authorization;

    memset(auth, 0, sizeof(*auth));
    auth->peer_ip = req->peer_ip;
    auth->trusted = http_api_is_trusted(h, req->peer_ip);
    if (a != NULL) {
        struct buf creds = BUF_INIT;
        const char *colon;
        bool ok;
        int rv;

        while (*a == ' ') {
            a++;
        }
        if (strncasecmp(a, "Bearer ", 7) == 0) {
            http_api_unauthorized(req, "bearer tokens are not supported");
            return false;
        }
        if (strncasecmp(a, "Basic ", 6) != 0 ||
            http_api_b64_decode(a + 6 + strspn(a + 6, " "), &creds) != 0 ||
            (colon = memchr(buf_cstr(&creds), ':', creds.len)) == NULL ||
            strlen(buf_cstr(&creds)) != creds.len) {
            buf_fini(&creds);
            http_api_reply_error(req, 400, "malformed Authorization header");
            return false;
        }
        snprintf(auth->user, sizeof(auth->user), "%.*s",
                 (int)(colon - buf_cstr(&creds)), buf_cstr(&creds));
        /* Split user:password in place. */
        creds.data[colon - creds.data] = '\0';
        rv = http_api_validate_basic(h, creds.data,
                                     creds.data + strlen(creds.data) + 1, &ok);
        buf_fini(&creds);
        if (rv != 0) {
            http_api_reply_error(req, 500, "authentication failed: %s",
                                 km_strerror(rv));
            return false;
        }
        if (!ok) {
            LOG_INFO("http_api: %s: invalid credentials for '%s'", req->peer_ip,
                     auth->user);
            http_api_authdelay_failed(h->authdelay, req->peer_ip,
                                      km_now_mono_ms());
            http_api_unauthorized(req, "invalid credentials");
            return false;
        }
        http_api_authdelay_succeeded(h->authdelay, req->peer_ip);
        auth->authenticated = true;
    }
    switch (acl) {
    case HTTP_API_OPEN:
        return true;
    case HTTP_API_INJECT:
        if (auth->trusted || auth->authenticated) {
            return true;
        }
        break;
    case HTTP_API_TRUSTED:
        if (auth->trusted) {
            return true;
        }
        if (auth->authenticated) {
            http_api_reply_error(req, 403, "%s is not a trusted host",
                                 req->peer_ip);
            return false;
        }
        break;
    }
    http_api_unauthorized(req, "authentication required");
    return false;
}

/* Routing */

static bool
http_api_method_is(const struct http_req *req, const char *m)
{
    return strcmp(req->method, m) == 0;
}

/* 503 unless the node takes work; true if it does. */
static bool
http_api_check_ready(struct http_api *h, struct http_req *req)
{
    if (h->shutting_down) {
        http_api_reply_error(req, 503, "shutting down");
        return false;
    }
    if (!h->ready) {
        http_api_reply_error(req, 503, "waiting for spool startup");
        return false;
    }
    return true;
}

/* Body framing we cannot take. */
static bool
http_api_check_body(struct http_req *req)
{
    if (req->body_too_large) {
        http_api_reply_error(req, 413,
                             "request body exceeds "
                             "request_body_limit");
        return false;
    }
    if (req->body_chunked) {
        http_api_reply_error(req, 411,
                             "chunked request bodies are not "
                             "supported: send Content-Length");
        return false;
    }
    if (req->content_encoding != NULL &&
        strcasecmp(req->content_encoding, "identity") != 0) {
        http_api_reply_error(req, 415, "Content-Encoding '%s' is not supported",
                             req->content_encoding);
        return false;
    }
    return true;
}

/* Returns true if an async handler took req (see
 * http_api_inject_handle). */
static bool
http_api_route(struct http_api *h, struct http_req *req)
{
    struct http_api_auth auth;
    const char *p = req->path;
    bool taken = false;

    if (strcmp(p, "/api/check-liveness/v1") == 0) {
        http_api_liveness(h, req);
        return false;
    }
    if (strcmp(p, "/api/inject/v1") == 0) {
        if (!http_api_check_access(h, req, HTTP_API_INJECT, &auth)) {
            return false;
        }
        if (!http_api_method_is(req, "POST")) {
            http_api_reply_error(req, 405, "use POST");
        } else if (http_api_check_body(req) && http_api_check_ready(h, req)) {
            taken = http_api_inject_handle(h, req, &auth);
        }
        return taken;
    }
    if (strcmp(p, "/metrics") != 0 && strcmp(p, "/metrics.json") != 0 &&
        strncmp(p, "/api/admin/", 11) != 0) {
        http_api_reply_error(req, 404, "no such endpoint: %s", p);
        return false;
    }
    if (!http_api_check_access(h, req, HTTP_API_TRUSTED, &auth) ||
        !http_api_check_body(req)) {
        return false;
    }
    if (strcmp(p, "/metrics") == 0) {
        http_api_metrics_text(h, req);
    } else if (strcmp(p, "/metrics.json") == 0) {
        http_api_metrics_json(h, req);
    } else if (strcmp(p, "/api/admin/queue-summary/v1") == 0) {
        http_api_queue_summary(h, req);
    } else if (strcmp(p, "/api/admin/cluster/status/v1") == 0) {
        taken = http_api_cluster_status(h, req);
    } else if (strcmp(p, "/api/admin/cluster/add-node/v1") == 0) {
        taken = http_api_cluster_admin(h, req, "add");
    } else if (strcmp(p, "/api/admin/cluster/remove-node/v1") == 0) {
        taken = http_api_cluster_admin(h, req, "remove");
    } else if (strcmp(p, "/api/admin/cluster/transfer-leader/v1") == 0) {
        taken = http_api_cluster_admin(h, req, "transfer");
    } else if (!http_api_admin_handle(h, req, &taken)) {
        http_api_reply_error(req, 404, "no such endpoint: %s", p);
    }
    return taken;
}

/* A request with credentials held until its peer's turn (probe 2026-12
 * #18: 2,000 Basic guesses a second). Counted in pending_ops. */
struct http_api_hold {
    uv_timer_t timer;
    struct http_api *h;
    struct http_req *req;
    struct http_api_hold *prev, *next;
};

static void
http_api_hold_on_close(uv_handle_t *handle)
{
    struct http_api_hold *hd = handle->data;
    struct http_api *h = hd->h;

    /* An async handler that took the request frees it when done. */
    if (hd->req != NULL) {
        http_api_server_req_free(hd->req);
    }
    free(hd);
    http_api_op_done(h);
}

static void
http_api_hold_end(struct http_api_hold *hd)
{
    struct http_api *h = hd->h;

    if (hd->prev != NULL) {
        hd->prev->next = hd->next;
    } else {
        h->holds = hd->next;
    }
    if (hd->next != NULL) {
        hd->next->prev = hd->prev;
    }
    uv_close((uv_handle_t *)&hd->timer, http_api_hold_on_close);
}

static void
http_api_hold_on_timer(uv_timer_t *t)
{
    struct http_api_hold *hd = t->data;

    if (http_api_route(hd->h, hd->req)) {
        hd->req = NULL;
    }
    http_api_hold_end(hd);
}

/* Pace Basic attempts from a peer that has failed some (see
 * http_api_authdelay.h). Returns true if req was taken (held or
 * answered), false to route it now. */
static bool
http_api_pace_auth(struct http_api *h, struct http_req *req)
{
    struct http_api_hold *hd;
    uint64_t wait_ms;

    if (req->authorization == NULL) {
        return false;
    }
    if (!http_api_authdelay_admit(h->authdelay, req->peer_ip, km_now_mono_ms(),
                                  &wait_ms)) {
        static const char *const hdrs[] = {"Retry-After", "60", NULL};
        static const char body[] =
            "{\"error\":\"too many failed authentication attempts\"}";

        http_api_server_reply(req, 429, "application/json", body,
                              sizeof(body) - 1, hdrs);
        http_api_server_req_free(req);
        return true;
    }
    if (wait_ms == 0) {
        return false;
    }
    hd = km_calloc(1, sizeof(*hd));
    hd->h = h;
    hd->req = req;
    KM_ASSERT(uv_timer_init(h->d.loop, &hd->timer) == 0);
    hd->timer.data = hd;
    uv_timer_start(&hd->timer, http_api_hold_on_timer, wait_ms, 0);
    hd->next = h->holds;
    if (h->holds != NULL) {
        h->holds->prev = hd;
    }
    h->holds = hd;
    h->pending_ops++;
    return true;
}

static void
http_api_on_request(void *arg, struct http_req *req)
{
    struct http_api *h = arg;

    LOG_DEBUG("http_api: %s: %s %s", req->peer_ip, req->method, req->path);
    if (http_api_pace_auth(h, req)) {
        return;
    }
    /* An async handler that took the request frees it when done (maybe
     * already): req must not be touched then. */
    if (!http_api_route(h, req)) {
        http_api_server_req_free(req);
    }
}

/* Lifecycle */

int
http_api_open(const struct http_api_deps *d, json_t *params,
              struct http_api **out, char *err, size_t errlen)
{
    struct http_api *h = km_calloc(1, sizeof(*h));
    struct http_api_server_config cfg;
    int rv;

    h->d = *d;
    h->node.raft_node_id = 1;
    h->node.cluster_id = "";
    h->node.nodeid = "";
    h->auth_cache = km_map_new();
    h->authdelay = http_api_authdelay_new();
    rv = http_api_apply_params(h, params, err, errlen);
    if (rv != 0) {
        goto err_after_alloc;
    }
    /* Present from the start, so scrapers see the family. */
    metrics_inc(http_api_metrics(h), "total_messages_received",
                "total number of messages received", "service", "http_listener",
                0);
    memset(&cfg, 0, sizeof(cfg));
    cfg.listen = h->listen;
    cfg.use_tls = json_is_true(json_object_get(params, "use_tls"));
    cfg.tls_certificate =
        json_string_value(json_object_get(params, "tls_certificate"));
    cfg.tls_private_key =
        json_string_value(json_object_get(params, "tls_private_key"));
    cfg.body_limit = h->body_limit;
    rv = http_api_server_open(d->loop, &cfg, http_api_on_request, h, &h->srv,
                              err, errlen);
    if (rv != 0) {
        goto err_after_alloc;
    }
    LOG_INFO("http_api: listening on %s%s", http_api_server_addr(h->srv),
             cfg.use_tls ? " (TLS)" : "");
    *out = h;
    return 0;

err_after_alloc:
    http_api_free(h);
    return rv;
}

void
http_api_attach(struct http_api *h, const struct http_api_node *n)
{
    h->node = *n;
}

void
http_api_set_ready(struct http_api *h, bool ready)
{
    h->ready = ready;
}

void
http_api_set_disk_low(struct http_api *h, bool low)
{
    h->disk_low = low;
}

void
http_api_shutdown(struct http_api *h)
{
    h->shutting_down = true;
    h->ready = false;
}

static void
http_api_maybe_finish(struct http_api *h)
{
    http_api_close_cb cb;
    void *arg;

    if (!h->closing || h->srv != NULL || h->pending_ops > 0) {
        return;
    }
    cb = h->close_cb;
    arg = h->close_arg;
    http_api_free(h);
    if (cb != NULL) {
        cb(arg);
    }
}

void
http_api_op_done(struct http_api *h)
{
    KM_ASSERT(h->pending_ops > 0);
    h->pending_ops--;
    http_api_maybe_finish(h);
}

static void
http_api_on_server_closed(void *arg)
{
    struct http_api *h = arg;

    h->srv = NULL;
    http_api_maybe_finish(h);
}

void
http_api_close(struct http_api *h, http_api_close_cb cb, void *arg)
{
    h->shutting_down = true;
    h->closing = true;
    h->close_cb = cb;
    h->close_arg = arg;
    /* Held requests are dropped: the server answers them 503. */
    while (h->holds != NULL) {
        uv_timer_stop(&h->holds->timer);
        http_api_hold_end(h->holds);
    }
    http_api_server_close(h->srv, http_api_on_server_closed, h);
}
