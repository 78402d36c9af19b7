/* http_api_server.c - the HTTP listener's NNG side: the only file that
 * calls nng_*. One tree handler at "/" takes every request on NNG's
 * threads, copies what the API needs (method, path, query, a few headers,
 * the peer address, the body read up to request_body_limit), and hands it
 * to the loop thread through a mutex-protected queue and uv_async_send
 * (STYLE §9). The loop answers with http_api_server_reply(), which
 * completes NNG's aio (thread-safe). Knows nothing of routes or access. */
#include "http_api_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <nng/supplemental/tls/tls.h>

#include "base/km.h"
#include "base/log.h"

/* The peer address is read through the connection's stream, see
 * http_api_server_peer(): checked against NNG 1.2 to 1.5. */
#if NNG_MAJOR_VERSION != 1 || NNG_MINOR_VERSION < 2
#error "http_api_server_peer() relies on NNG 1.x's nng_http_conn layout"
#endif

struct http_api_server {
    uv_loop_t *loop;
    uv_async_t async;
    uv_mutex_t mtx;
    /* Under mtx: */
    bool ready;   /* async initialised */
    bool closing; /* answer new requests with 503 on NNG's thread */
    struct http_req *q_head, *q_tail;
    struct http_req *reading;
    /* Loop thread only: */
    struct http_req *outstanding;
    size_t body_limit;
    nng_http_server *server;
    nng_url *url;
    nng_tls_config *tls;
    char addr[80];
    http_api_server_request_cb cb;
    void *arg;
    http_api_server_close_cb close_cb;
    void *close_arg;
};

static const char *
http_api_server_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Entity";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Status";
    }
}

/* Any thread: build the response and complete the handler's aio. */
static void
http_api_server_send(nng_aio *aio, int status, const char *content_type,
                     const char *body, size_t len, const char *const *headers,
                     bool close_conn)
{
    nng_http_res *res;

    if (nng_http_res_alloc(&res) != 0) {
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    nng_http_res_set_status(res, (uint16_t)status);
    nng_http_res_set_reason(res, http_api_server_reason(status));
    if (content_type != NULL) {
        nng_http_res_set_header(res, "Content-Type", content_type);
    }
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i += 2) {
        nng_http_res_add_header(res, headers[i], headers[i + 1]);
    }
    if (close_conn) {
        /* The request body was left unread on the connection. */
        nng_http_res_set_header(res, "Connection", "close");
    }
    if (len > 0) {
        nng_http_res_copy_data(res, body, len);
    }
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

/* NNG 1.5 has no public accessor for an HTTP connection's peer address,
 * but its struct nng_http_conn (src/supplemental/http/http_conn.c) begins
 * with the connection's nng_stream, whose address is public: read the
 * first member. An unknown peer is treated as untrusted. */
static void
http_api_server_peer(nng_http_conn *conn, char *out, size_t len)
{
    nng_stream *st;
    nng_sockaddr sa;

    out[0] = '\0';
    if (conn == NULL) {
        return;
    }
    memcpy(&st, (void *)conn, sizeof(st));
    if (st == NULL || nng_stream_get_addr(st, NNG_OPT_REMADDR, &sa) != 0) {
        return;
    }
    if (sa.s_family == NNG_AF_INET) {
        inet_ntop(AF_INET, &sa.s_in.sa_addr, out, (socklen_t)len);
    } else if (sa.s_family == NNG_AF_INET6) {
        inet_ntop(AF_INET6, sa.s_in6.sa_addr, out, (socklen_t)len);
    }
}

static char *
http_api_server_dup_header(nng_http_req *hreq, const char *name)
{
    const char *v = nng_http_req_get_header(hreq, name);

    return v != NULL ? km_strdup(v) : NULL;
}

static void
http_api_server_req_release(struct http_req *req)
{
    if (req->read_aio != NULL) {
        nng_aio_free(req->read_aio);
    }
    free(req->method);
    free(req->path);
    free(req->query);
    free(req->authorization);
    free(req->content_encoding);
    buf_fini(&req->body);
    free(req);
}

/* Any thread: give req to the loop. Once closing, the request is
 * answered here instead, and queued only to be freed. */
static void
http_api_server_push(struct http_api_server *s, struct http_req *req)
{
    uv_mutex_lock(&s->mtx);
    if (s->closing && req->aio != NULL) {
        http_api_server_send(req->aio, 503, "text/plain", "shutting down\n", 14,
                             NULL, true);
        req->aio = NULL;
    }
    req->q_next = NULL;
    req->queued = true;
    if (s->q_tail != NULL) {
        s->q_tail->q_next = req;
    } else {
        s->q_head = req;
    }
    s->q_tail = req;
    if (s->ready && !s->closing) {
        /* Under the lock, so the handle cannot be closed meanwhile. */
        uv_async_send(&s->async);
    }
    uv_mutex_unlock(&s->mtx);
}

static void
http_api_server_unlink_reading(struct http_api_server *s, struct http_req *req)
{
    if (!req->reading) {
        return;
    }
    if (req->rd_prev != NULL) {
        req->rd_prev->rd_next = req->rd_next;
    } else {
        s->reading = req->rd_next;
    }
    if (req->rd_next != NULL) {
        req->rd_next->rd_prev = req->rd_prev;
    }
    req->rd_prev = req->rd_next = NULL;
    req->reading = false;
}

/* NNG thread: the body has been read (or the connection failed). */
static void
http_api_server_on_body(void *arg)
{
    struct http_req *req = arg;
    struct http_api_server *s = req->srv;
    int rv = nng_aio_result(req->read_aio);

    if (rv == 0) {
        req->body.len = nng_aio_count(req->read_aio);
        req->body.data[req->body.len] = '\0';
    }
    uv_mutex_lock(&s->mtx);
    http_api_server_unlink_reading(s, req);
    uv_mutex_unlock(&s->mtx);
    if (rv != 0) {
        /* An error result makes NNG drop the connection. */
        nng_aio_finish(req->aio, rv);
        req->aio = NULL;
    }
    http_api_server_push(s, req);
}

/* NNG thread: a request's headers have arrived. */
static void
http_api_server_on_request(nng_aio *aio)
{
    nng_http_req *hreq = nng_aio_get_input(aio, 0);
    nng_http_handler *hh = nng_aio_get_input(aio, 1);
    nng_http_conn *conn = nng_aio_get_input(aio, 2);
    struct http_api_server *s = nng_http_handler_get_data(hh);
    struct http_req *req = km_calloc(1, sizeof(*req));
    const char *uri = nng_http_req_get_uri(hreq);
    const char *q = strchr(uri, '?');
    const char *cl = nng_http_req_get_header(hreq, "Content-Length");
    const char *te = nng_http_req_get_header(hreq, "Transfer-Encoding");
    unsigned long long len = 0;
    nng_iov iov;

    req->srv = s;
    req->aio = aio;
    req->method = km_strdup(nng_http_req_get_method(hreq));
    req->path = q != NULL ? km_strndup(uri, (size_t)(q - uri)) : km_strdup(uri);
    req->query = km_strdup(q != NULL ? q + 1 : "");
    req->authorization = http_api_server_dup_header(hreq, "Authorization");
    req->content_encoding =
        http_api_server_dup_header(hreq, "Content-Encoding");
    http_api_server_peer(conn, req->peer_ip, sizeof(req->peer_ip));
    buf_init(&req->body);
    if (te != NULL && strstr(te, "chunked") != NULL) {
        req->body_chunked = true;
    } else if (cl != NULL) {
        char *end;

        errno = 0;
        len = strtoull(cl, &end, 10);
        if (errno != 0 || end == cl || len > s->body_limit) {
            req->body_too_large = true;
            len = 0;
        }
    }
    if (len == 0 || req->body_too_large || req->body_chunked) {
        http_api_server_push(s, req);
        return;
    }
    buf_reserve(&req->body, (size_t)len + 1);
    if (nng_aio_alloc((nng_aio **)&req->read_aio, http_api_server_on_body,
                      req) != 0) {
        nng_aio_finish(aio, NNG_ENOMEM);
        req->aio = NULL;
        http_api_server_push(s, req);
        return;
    }
    iov.iov_buf = req->body.data;
    iov.iov_len = (size_t)len;
    nng_aio_set_iov(req->read_aio, 1, &iov);
    uv_mutex_lock(&s->mtx);
    if (s->closing) {
        uv_mutex_unlock(&s->mtx);
        http_api_server_push(s, req);
        return;
    }
    req->reading = true;
    req->rd_next = s->reading;
    if (s->reading != NULL) {
        s->reading->rd_prev = req;
    }
    s->reading = req;
    uv_mutex_unlock(&s->mtx);
    nng_http_conn_read_all(conn, req->read_aio);
}

static struct http_req *
http_api_server_take_queue(struct http_api_server *s)
{
    struct http_req *head;

    uv_mutex_lock(&s->mtx);
    head = s->q_head;
    s->q_head = s->q_tail = NULL;
    uv_mutex_unlock(&s->mtx);
    return head;
}

static void
http_api_server_on_async(uv_async_t *a)
{
    struct http_api_server *s = a->data;
    struct http_req *req = http_api_server_take_queue(s);

    while (req != NULL) {
        struct http_req *next = req->q_next;

        req->queued = false;
        req->q_next = NULL;
        if (req->aio == NULL) {
            /* Already answered on NNG's side (connection error). */
            http_api_server_req_release(req);
        } else {
            req->outstanding = true;
            req->out_prev = NULL;
            req->out_next = s->outstanding;
            if (s->outstanding != NULL) {
                s->outstanding->out_prev = req;
            }
            s->outstanding = req;
            s->cb(s->arg, req);
        }
        req = next;
    }
}

void
http_api_server_reply(struct http_req *req, int status,
                      const char *content_type, const char *body, size_t len,
                      const char *const *headers)
{
    struct http_api_server *s = req->srv;

    if (req->aio == NULL) {
        return;
    }
    http_api_server_send(req->aio, status, content_type, body, len, headers,
                         req->body_too_large || req->body_chunked);
    req->aio = NULL;
    if (req->outstanding) {
        if (req->out_prev != NULL) {
            req->out_prev->out_next = req->out_next;
        } else {
            s->outstanding = req->out_next;
        }
        if (req->out_next != NULL) {
            req->out_next->out_prev = req->out_prev;
        }
        req->outstanding = false;
    }
}

void
http_api_server_req_free(struct http_req *req)
{
    if (req == NULL) {
        return;
    }
    if (req->aio != NULL) {
        http_api_server_reply(req, 500, "text/plain", "no response\n", 12,
                              NULL);
    }
    http_api_server_req_release(req);
}

static int
http_api_server_read_file(const char *path, struct buf *out, char *err,
                          size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char chunk[4096];
    size_t n;

    if (f == NULL) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return KM_ECONFIG;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        buf_append(out, chunk, n);
    }
    fclose(f);
    if (out->len == 0) {
        snprintf(err, errlen, "%s is empty", path);
        return KM_ECONFIG;
    }
    return 0;
}

static int
http_api_server_setup_tls(struct http_api_server *s,
                          const struct http_api_server_config *cfg, char *err,
                          size_t errlen)
{
    struct buf cert = BUF_INIT, key = BUF_INIT;
    int rv;

    rv = http_api_server_read_file(cfg->tls_certificate, &cert, err, errlen);
    if (rv != 0) {
        goto out;
    }
    rv = http_api_server_read_file(cfg->tls_private_key, &key, err, errlen);
    if (rv != 0) {
        goto out;
    }
    if ((rv = nng_tls_config_alloc(&s->tls, NNG_TLS_MODE_SERVER)) != 0 ||
        (rv = nng_tls_config_own_cert(s->tls, cert.data, key.data, NULL)) !=
            0 ||
        (rv = nng_http_server_set_tls(s->server, s->tls)) != 0) {
        snprintf(err, errlen, "TLS setup with %s and %s: %s",
                 cfg->tls_certificate, cfg->tls_private_key, nng_strerror(rv));
        rv = KM_ECONFIG;
    }
out:
    buf_fini(&cert);
    buf_fini(&key);
    return rv;
}

static void
http_api_server_bound_addr(struct http_api_server *s)
{
    nng_sockaddr sa;
    char ip[INET6_ADDRSTRLEN] = "";

    snprintf(s->addr, sizeof(s->addr), "%s:%s", s->url->u_hostname,
             s->url->u_port);
    if (nng_http_server_get_addr(s->server, &sa) != 0) {
        return;
    }
    if (sa.s_family == NNG_AF_INET) {
        inet_ntop(AF_INET, &sa.s_in.sa_addr, ip, sizeof(ip));
        snprintf(s->addr, sizeof(s->addr), "%s:%u", ip,
                 (unsigned)ntohs(sa.s_in.sa_port));
    } else if (sa.s_family == NNG_AF_INET6) {
        inet_ntop(AF_INET6, sa.s_in6.sa_addr, ip, sizeof(ip));
        snprintf(s->addr, sizeof(s->addr), "[%s]:%u", ip,
                 (unsigned)ntohs(sa.s_in6.sa_port));
    }
}

int
http_api_server_open(uv_loop_t *loop, const struct http_api_server_config *cfg,
                     http_api_server_request_cb cb, void *arg,
                     struct http_api_server **out, char *err, size_t errlen)
{
    struct http_api_server *s = km_calloc(1, sizeof(*s));
    nng_http_handler *hh = NULL;
    char *url =
        km_asprintf("%s://%s", cfg->use_tls ? "https" : "http", cfg->listen);
    int rv;

    s->loop = loop;
    s->cb = cb;
    s->arg = arg;
    s->body_limit = cfg->body_limit;
    uv_mutex_init(&s->mtx);
    if ((rv = nng_url_parse(&s->url, url)) != 0) {
        snprintf(err, errlen, "listen '%s': %s", cfg->listen, nng_strerror(rv));
        goto err_after_mutex;
    }
    if ((rv = nng_http_server_hold(&s->server, s->url)) != 0) {
        snprintf(err, errlen, "listen '%s': %s", cfg->listen, nng_strerror(rv));
        goto err_after_url;
    }
    if (cfg->use_tls && http_api_server_setup_tls(s, cfg, err, errlen) != 0) {
        goto err_after_hold;
    }
    if ((rv = nng_http_handler_alloc(&hh, "/", http_api_server_on_request)) !=
            0 ||
        (rv = nng_http_handler_set_method(hh, NULL)) != 0 ||
        (rv = nng_http_handler_set_tree(hh)) != 0 ||
        (rv = nng_http_handler_collect_body(hh, false, 0)) != 0 ||
        (rv = nng_http_handler_set_data(hh, s, NULL)) != 0 ||
        (rv = nng_http_server_add_handler(s->server, hh)) != 0) {
        snprintf(err, errlen, "listen '%s': handler: %s", cfg->listen,
                 nng_strerror(rv));
        if (hh != NULL) {
            nng_http_handler_free(hh);
        }
        goto err_after_hold;
    }
    /* The server owns the handler from here. Requests may arrive as soon
     * as it starts: they wait in the queue until `ready`. */
    if ((rv = nng_http_server_start(s->server)) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", cfg->listen,
                 nng_strerror(rv));
        goto err_after_hold;
    }
    http_api_server_bound_addr(s);
    uv_async_init(loop, &s->async, http_api_server_on_async);
    s->async.data = s;
    uv_mutex_lock(&s->mtx);
    s->ready = true;
    if (s->q_head != NULL) {
        uv_async_send(&s->async);
    }
    uv_mutex_unlock(&s->mtx);
    free(url);
    *out = s;
    return 0;

err_after_hold:
    nng_http_server_release(s->server);
    if (s->tls != NULL) {
        nng_tls_config_free(s->tls);
    }
err_after_url:
    nng_url_free(s->url);
err_after_mutex:
    uv_mutex_destroy(&s->mtx);
    free(url);
    free(s);
    return KM_ECONFIG;
}

const char *
http_api_server_addr(const struct http_api_server *s)
{
    return s->addr;
}

static void
http_api_server_on_close(uv_handle_t *h)
{
    struct http_api_server *s = h->data;
    http_api_server_close_cb cb = s->close_cb;
    void *arg = s->close_arg;

    uv_mutex_destroy(&s->mtx);
    free(s);
    if (cb != NULL) {
        cb(arg);
    }
}

static void
http_api_server_drain(struct http_api_server *s)
{
    struct http_req *req = http_api_server_take_queue(s);

    while (req != NULL) {
        struct http_req *next = req->q_next;

        if (req->aio != NULL) {
            http_api_server_send(req->aio, 503, "text/plain", "shutting down\n",
                                 14, NULL, true);
            req->aio = NULL;
        }
        http_api_server_req_release(req);
        req = next;
    }
}

void
http_api_server_close(struct http_api_server *s, http_api_server_close_cb cb,
                      void *arg)
{
    s->close_cb = cb;
    s->close_arg = arg;
    uv_mutex_lock(&s->mtx);
    s->closing = true;
    uv_mutex_unlock(&s->mtx);
    /* NNG's stop waits for its connections, so every handler aio must be
     * complete first: answer what the loop holds and what is queued. */
    while (s->outstanding != NULL) {
        http_api_server_reply(s->outstanding, 503, "text/plain",
                              "shutting down\n", 14, NULL);
    }
    http_api_server_drain(s);
    nng_http_server_stop(s->server);
    /* Body reads fail once their connections are closed: wait for each
     * callback (it queues the request, already answered). */
    for (;;) {
        struct http_req *r;

        uv_mutex_lock(&s->mtx);
        r = s->reading;
        uv_mutex_unlock(&s->mtx);
        if (r == NULL) {
            break;
        }
        nng_aio_stop(r->read_aio);
    }
    http_api_server_drain(s);
    nng_http_server_release(s->server);
    if (s->tls != NULL) {
        nng_tls_config_free(s->tls);
    }
    nng_url_free(s->url);
    uv_close((uv_handle_t *)&s->async, http_api_server_on_close);
}
