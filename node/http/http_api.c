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

#define HTTP_API_DEFAULT_LISTEN     "127.0.0.1:8000"
#define HTTP_API_DEFAULT_BODY_LIMIT (2u * 1024u * 1024u)
#define HTTP_API_AUTH_CACHE_MS      (60 * 1000)
#define HTTP_API_AUTH_CACHE_MAX     4096
#define HTTP_API_TRUSTED_GROUP      "kumomta:http-listener-trusted-ip"

struct http_api_auth_entry {
    int64_t expires_ms;
    bool ok;
};

enum http_api_access {
    HTTP_API_OPEN,    /* anyone */
    HTTP_API_INJECT,  /* trusted or authenticated */
    HTTP_API_TRUSTED, /* trusted hosts only */
};

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

/* Endpoints */

static void
http_api_text(struct http_req *req, int status, const char *text)
{
    http_api_server_reply(req, status, "text/plain; charset=utf-8", text,
                          strlen(text), NULL);
}

static void
http_api_liveness(struct http_api *h, struct http_req *req)
{
    if (h->shutting_down) {
        http_api_text(req, 503, "shutting down");
    } else if (!h->ready) {
        http_api_text(req, 503, "waiting for spool startup");
    } else {
        http_api_text(req, 200, "OK");
    }
}

static void
http_api_on_queue_gauge(void *arg, const char *name, size_t count)
{
    metrics_set(arg, "scheduled_count",
                "number of messages in the scheduled queue", "queue", name,
                (double)count);
}

static void
http_api_spool_gauges(struct metrics *m, struct spool *sp, const char *name)
{
    struct spool_stats st;

    if (sp == NULL) {
        return;
    }
    spool_get_stats(sp, &st);
    metrics_set(m, "kumod_spool_puts_total", "spool writes", "spool", name,
                (double)st.puts);
    metrics_set(m, "kumod_spool_deletes_total", "spool deletions", "spool",
                name, (double)st.deletes);
    metrics_set(m, "kumod_spool_batches_total", "synced spool write batches",
                "spool", name, (double)st.batches);
    metrics_set(m, "kumod_spool_put_bytes_total", "bytes written to the spool",
                "spool", name, (double)st.put_bytes);
    metrics_set(m, "kumod_spool_pending", "spool writes waiting for a batch",
                "spool", name, (double)st.pending);
}

static bool
http_api_count_member(void *arg, const struct cluster_member *m)
{
    (void)m;
    (*(size_t *)arg)++;
    return true;
}

/* Raft and cluster gauges beyond term, indexes and leadership. */
static void
http_api_cluster_metrics(struct metrics *m, const struct cluster *c,
                         const struct cluster_stats *st)
{
    struct cluster_settings set;
    size_t members = 0;
    uint32_t owned = 0;

    cluster_get_settings(c, &set);
    for (uint32_t i = 0; i < set.shards; i++) {
        owned += cluster_owns(c, i) ? 1 : 0;
    }
    cluster_foreach_member(c, http_api_count_member, &members);
    metrics_set(m, "kumod_raft_last_index", "last raft log index", NULL, NULL,
                (double)st->last_index);
    metrics_set(m, "kumod_raft_leader_id",
                "raft id of the leader this node knows (0: none)", NULL, NULL,
                (double)st->leader_id);
    metrics_set(m, "kumod_raft_entries_proposed_total",
                "raft entries this node proposed as leader", NULL, NULL,
                (double)st->entries_proposed);
    metrics_set(m, "kumod_raft_records_proposed_total",
                "records proposed through this node's batcher", NULL, NULL,
                (double)st->records_proposed);
    metrics_set(m, "kumod_raft_records_forwarded_total",
                "records this node forwarded to a remote leader", NULL, NULL,
                (double)cluster_records_forwarded(c));
    metrics_set(m, "kumod_cluster_members", "members of the raft configuration",
                NULL, NULL, (double)members);
    metrics_set(m, "kumod_cluster_shards", "shards of the cluster", NULL, NULL,
                (double)set.shards);
    metrics_set(m, "kumod_cluster_shards_owned",
                "shards this node owns in the committed map", NULL, NULL,
                (double)owned);
}

/* Gauges read at request time. */
static void
http_api_refresh_gauges(struct http_api *h)
{
    struct metrics *m = http_api_metrics(h);
    const struct http_api_node *nd = &h->node;

    metrics_clear(m, "scheduled_count");
    if (nd->queues != NULL) {
        queue_mgr_foreach_queue(nd->queues, http_api_on_queue_gauge, m);
        metrics_set(m, "message_count",
                    "total number of messages in the scheduled queues", NULL,
                    NULL, (double)queue_mgr_count(nd->queues));
    }
    if (nd->cluster != NULL) {
        struct cluster_stats st;

        cluster_get_stats(nd->cluster, &st);
        metrics_set(m, "kumod_raft_term", "current raft term", NULL, NULL,
                    (double)st.term);
        metrics_set(m, "kumod_raft_commit_index", "raft commit index", NULL,
                    NULL, (double)st.commit_index);
        metrics_set(m, "kumod_raft_applied_index", "raft applied index", NULL,
                    NULL, (double)st.applied_index);
        metrics_set(m, "kumod_raft_is_leader",
                    "1 if this node is the raft leader", NULL, NULL,
                    st.state != NULL && strcmp(st.state, "leader") == 0 ? 1
                                                                        : 0);
        http_api_cluster_metrics(m, nd->cluster, &st);
    }
    http_api_spool_gauges(m, nd->data, "data");
    http_api_spool_gauges(m, nd->meta, "meta");
}

static void
http_api_metrics_text(struct http_api *h, struct http_req *req)
{
    struct buf out = BUF_INIT;

    http_api_refresh_gauges(h);
    metrics_render_text(http_api_metrics(h), &out);
    http_api_server_reply(req, 200, "text/plain; version=0.0.4", buf_cstr(&out),
                          out.len, NULL);
    buf_fini(&out);
}

static void
http_api_metrics_json(struct http_api *h, struct http_req *req)
{
    json_t *j;

    http_api_refresh_gauges(h);
    j = metrics_render_json(http_api_metrics(h));
    http_api_reply_json(req, 200, j);
    json_decref(j);
}

static void
http_api_on_queue_summary(void *arg, const char *name, size_t count)
{
    json_array_append_new(
        arg, json_pack("{s:s,s:I}", "queue", name, "count", (json_int_t)count));
}

static void
http_api_queue_summary(struct http_api *h, struct http_req *req)
{
    json_t *list = json_array();
    size_t total = 0;
    json_t *j;

    if (h->node.queues != NULL) {
        queue_mgr_foreach_queue(h->node.queues, http_api_on_queue_summary, list);
        total = queue_mgr_count(h->node.queues);
    }
    j = json_pack("{s:o,s:I}", "scheduled", list, "total", (json_int_t)total);
    http_api_reply_json(req, 200, j);
    json_decref(j);
}

/* An asynchronous cluster request: status fan-out or membership admin. */
struct http_api_cluster_op {
    struct http_api *h;
    struct http_req *req;
};

static struct http_api_cluster_op *
http_api_cluster_op_new(struct http_api *h, struct http_req *req)
{
    struct http_api_cluster_op *op = km_calloc(1, sizeof(*op));

    op->h = h;
    op->req = req;
    h->pending_ops++;
    return op;
}

static void
http_api_cluster_op_done(struct http_api_cluster_op *op)
{
    struct http_api *h = op->h;

    http_api_server_req_free(op->req);
    free(op);
    http_api_op_done(h);
}

/* One row of cluster_status_collect as JSON. The first fields are the
 * ones the status endpoint always had (id, raft_addr, role...). */
static json_t *
http_api_cluster_row(const struct http_api *h,
                     const struct cluster_member_status *m)
{
    json_t *j;

    j = json_pack("{s:I,s:s,s:s,s:s,s:s,s:b,s:b,s:b}", "id", (json_int_t)m->id,
                  "raft_addr", m->raft_addr, "raft_address", m->raft_addr,
                  "link_url", m->link_url, "role", m->role, "voter", m->voter,
                  "self", m->self, "reachable", m->reachable);
    json_object_set_new(j, "tls",
                        m->tls[0] != '\0' ? json_string(m->tls) : json_null());
    json_object_set_new(j, "cert_expiry",
                        m->cert_expiry > 0
                            ? json_integer((json_int_t)m->cert_expiry)
                            : json_null());
    if (!m->reachable) {
        json_object_set_new(j, "unreachable", json_true());
        json_object_set_new(j, "state", json_string("unreachable"));
        return j;
    }
    json_object_set_new(j, "term", json_integer((json_int_t)m->term));
    json_object_set_new(j, "leader_id", json_integer((json_int_t)m->leader_id));
    json_object_set_new(j, "last_index",
                        json_integer((json_int_t)m->last_index));
    json_object_set_new(j, "applied_index",
                        json_integer((json_int_t)m->applied));
    json_object_set_new(j, "commit_index", json_integer((json_int_t)m->commit));
    json_object_set_new(j, "lag", json_integer((json_int_t)m->lag));
    json_object_set_new(j, "last_ping_age_ms",
                        json_integer((json_int_t)m->contact_ms));
    json_object_set_new(j, "lease",
                        m->lease_ok < 0
                            ? json_null()
                            : json_string(m->lease_ok > 0 ? "ok" : "fenced"));
    json_object_set_new(j, "shards_owned",
                        json_integer((json_int_t)m->shards_owned));
    json_object_set_new(j, "shards_backed",
                        json_integer((json_int_t)m->shards_backed));
    json_object_set_new(j, "under_replicated",
                        json_integer((json_int_t)m->under_replicated));
    json_object_set_new(j, "queued", json_integer((json_int_t)m->queued));
    json_object_set_new(j, "ready", json_integer((json_int_t)m->ready));
    json_object_set_new(j, "inflight", json_integer((json_int_t)m->inflight));
    json_object_set_new(j, "free_bytes",
                        json_integer((json_int_t)m->free_bytes));
    json_object_set_new(j, "policy_checksum", json_string(m->policy_checksum));
    json_object_set_new(j, "version", json_string(m->version));
    json_object_set_new(j, "uptime_s", json_integer((json_int_t)m->uptime_s));
    json_object_set_new(
        j, "state",
        json_string(!m->self || h->ready ? "up" : "starting"));
    return j;
}

/* The status document: this node's view in the header, one row per
 * member (rows may be NULL: no cluster). */
static json_t *
http_api_cluster_doc(const struct http_api *h,
                     const struct cluster_member_status *rows, size_t n)
{
    const struct http_api_node *nd = &h->node;
    struct cluster_stats st;
    uint64_t self_id = nd->raft_node_id;
    json_t *members = json_array();
    size_t reachable = 0;

    memset(&st, 0, sizeof(st));
    if (nd->cluster != NULL) {
        cluster_get_stats(nd->cluster, &st);
    }
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(members, http_api_cluster_row(h, &rows[i]));
        reachable += rows[i].reachable ? 1 : 0;
    }
    json_t *doc = json_pack(
        "{s:s,s:s,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "cluster_id",
        nd->cluster_id, "node_id", nd->nodeid,
        "raft_node_id", (json_int_t)self_id, "role",
        st.state != NULL ? st.state : "unavailable", "term",
        (json_int_t)st.term, "leader_id", (json_int_t)st.leader_id, "leader",
        (json_int_t)st.leader_id, "commit_index", (json_int_t)st.commit_index,
        "member_count", (json_int_t)n, "reachable_count", (json_int_t)reachable,
        "members", members);
    if (doc != NULL && cluster_is_group(nd->cluster)) {
        json_object_set_new(
            doc, "unowned_messages",
            json_integer((json_int_t)cluster_unowned(nd->cluster)));
    }
    return doc;
}

/* Members and reachable members, kept for the metrics gauges. */
static void
http_api_cluster_gauges(struct http_api *h,
                        const struct cluster_member_status *rows, size_t n)
{
    struct metrics *m = http_api_metrics(h);
    size_t reachable = 0;

    for (size_t i = 0; i < n; i++) {
        reachable += rows[i].reachable ? 1 : 0;
    }
    (void)n;
    metrics_set(m, "kumod_cluster_members_reachable",
                "members that answered the last status fan-out", NULL, NULL,
                (double)reachable);
}

static void
http_api_cluster_on_status(void *arg, const struct cluster_member_status *rows,
                           size_t n)
{
    struct http_api_cluster_op *op = arg;
    json_t *j = http_api_cluster_doc(op->h, rows, n);

    http_api_cluster_gauges(op->h, rows, n);
    http_api_reply_json(op->req, 200, j);
    json_decref(j);
    http_api_cluster_op_done(op);
}

/* GET /api/admin/cluster/status/v1. True if the request was taken. */
static bool
http_api_cluster_status(struct http_api *h, struct http_req *req)
{
    const struct http_api_node *nd = &h->node;
    struct cluster_member_status self;
    char *v = http_api_query_param(req->query, "deadline_ms");
    uint32_t deadline = v != NULL ? (uint32_t)strtoul(v, NULL, 10) : 0;
    json_t *j;

    free(v);
    if (nd->cluster != NULL && !h->shutting_down) {
        if (deadline > 10000) {
            deadline = 10000;
        }
        (void)cluster_status_collect(nd->cluster, deadline,
                                     http_api_cluster_on_status,
                                     http_api_cluster_op_new(h, req));
        return true;
    }
    memset(&self, 0, sizeof(self));
    self.id = nd->raft_node_id;
    self.self = true;
    j = http_api_cluster_doc(h, nd->cluster != NULL ? NULL : &self,
                             nd->cluster != NULL ? 0 : 1);
    http_api_reply_json(req, 200, j);
    json_decref(j);
    return false;
}

static void
http_api_cluster_on_admin(void *arg, int status, const char *message)
{
    struct http_api_cluster_op *op = arg;
    json_t *j;
    int code;

    switch (status) {
    case 0:
        code = 200;
        break;
    case KM_EAGAIN:
        code = 202; /* draining, or another change in progress: retry */
        break;
    case KM_ENOENT:
        code = 404;
        break;
    case KM_EINVAL:
        code = 400;
        break;
    default:
        code = 503;
        break;
    }
    j = json_pack("{s:s,s:s}", "status",
                  status == 0           ? "done"
                  : status == KM_EAGAIN ? "in_progress"
                                        : "failed",
                  "message", message);
    if (status != 0 && status != KM_EAGAIN) {
        json_object_set_new(j, "error", json_string(message));
    }
    http_api_reply_json(op->req, code, j);
    json_decref(j);
    http_api_cluster_op_done(op);
}

/* The node id in member `key` of body: false (and a 400 sent) if it is
 * not a positive integer; *id 0 when absent and optional. */
static bool
http_api_cluster_id(struct http_req *req, json_t *body, const char *key,
                    bool optional, uint64_t *id)
{
    json_t *v = json_object_get(body, key);

    *id = 0;
    if ((v == NULL || json_is_null(v)) && optional) {
        return true;
    }
    if (json_is_string(v)) {
        char *end;
        unsigned long long n = strtoull(json_string_value(v), &end, 10);
        if (*end == '\0' && n > 0) {
            *id = n;
            return true;
        }
    } else if (json_is_integer(v) && json_integer_value(v) > 0) {
        *id = (uint64_t)json_integer_value(v);
        return true;
    }
    http_api_reply_error(req, 400, "%s: a positive node id is required", key);
    return false;
}

/* POST /api/admin/cluster/{add-node,remove-node,transfer-leader}/v1. True
 * if the request was taken. */
static bool
http_api_cluster_admin(struct http_api *h, struct http_req *req,
                       const char *what)
{
    const struct http_api_node *nd = &h->node;
    struct http_api_cluster_op *op;
    json_error_t jerr;
    json_t *body = NULL;
    const char *raft = NULL, *link = NULL;
    uint64_t id = 0;
    int rv;

    if (strcmp(req->method, "POST") != 0) {
        http_api_reply_error(req, 405, "use POST");
        return false;
    }
    if (nd->cluster == NULL || h->shutting_down) {
        http_api_reply_error(req, 503, "no cluster");
        return false;
    }
    if (req->body.len > 0) {
        body = json_loadb(buf_cstr(&req->body), req->body.len, 0, &jerr);
    } else {
        body = json_object();
    }
    if (!json_is_object(body)) {
        json_decref(body);
        http_api_reply_error(req, 400, "body must be a JSON object");
        return false;
    }
    if (!http_api_cluster_id(req, body, "id", strcmp(what, "transfer") == 0,
                             &id)) {
        json_decref(body);
        return false;
    }
    if (strcmp(what, "add") == 0) {
        raft = json_string_value(json_object_get(body, "raft"));
        link = json_string_value(json_object_get(body, "link"));
        if (raft == NULL || raft[0] == '\0') {
            json_decref(body);
            http_api_reply_error(req, 400,
                                 "raft: the node's raft address "
                                 "(ip:port) is required");
            return false;
        }
    }
    op = http_api_cluster_op_new(h, req);
    if (strcmp(what, "add") == 0) {
        rv = cluster_add_node(nd->cluster, id, raft, link,
                              http_api_cluster_on_admin, op);
    } else if (strcmp(what, "remove") == 0) {
        rv =
            cluster_remove_node(nd->cluster, id, http_api_cluster_on_admin, op);
    } else {
        rv = cluster_transfer_leader(nd->cluster, id, http_api_cluster_on_admin,
                                     op);
    }
    json_decref(body);
    if (rv != 0) {
        h->pending_ops--;
        free(op);
        http_api_reply_error(req, 400, "%s", km_strerror(rv));
        return false;
    }
    return true;
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
