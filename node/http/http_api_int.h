/* http_api_int.h - declarations shared inside the HTTP listener module:
 * the request as copied off NNG's threads (http_api_server.c owns every
 * nng_* call), the listener context, the template engine, the inject body
 * parser and MIME builder, and the admin handlers. Loop thread only,
 * except where a comment says otherwise. */
#ifndef KUMO_HTTP_API_INT_H
#define KUMO_HTTP_API_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "base/buf.h"
#include "base/km_cidr.h"
#include "http_api.h"

struct km_map;
struct http_api_authdelay;
struct http_api_hold;
struct metrics;
struct http_api_server; /* opaque: the NNG server and its hand-off queue */

/* One request, copied from NNG; owned by the loop thread once delivered.
 * Reply exactly once with http_api_server_reply(), then free it with
 * http_api_server_req_free() (which replies 500 if nobody did). */
struct http_req {
    char *method;
    char *path;             /* up to '?' */
    char *query;            /* after '?', "" if none */
    char *authorization;    /* NULL if absent */
    char *content_encoding; /* NULL if absent */
    char peer_ip[64];       /* "" if NNG could not tell */
    struct buf body;
    bool body_too_large; /* Content-Length over request_body_limit */
    bool body_chunked;   /* Transfer-Encoding: chunked (not supported) */

    /* Private to http_api_server.c. */
    struct http_api_server *srv;
    void *aio;               /* the handler's nng_aio until replied */
    void *read_aio;          /* body read */
    struct http_req *q_next; /* hand-off queue (locked) */
    struct http_req *rd_prev, *rd_next;   /* body reads (locked) */
    struct http_req *out_prev, *out_next; /* delivered, not replied */
    bool queued, reading, outstanding;
};

typedef void (*http_api_server_request_cb)(void *arg, struct http_req *req);

struct http_api_server_config {
    const char *listen; /* "ip:port" or "[ipv6]:port" */
    bool use_tls;
    const char *tls_certificate, *tls_private_key; /* PEM files */
    size_t body_limit;
};

/* Bind and start serving; cb runs on the loop thread for each request.
 * KM_ECONFIG with a reason in err. The caller owns *out. */
int http_api_server_open(uv_loop_t *loop,
                         const struct http_api_server_config *cfg,
                         http_api_server_request_cb cb, void *arg,
                         struct http_api_server **out, char *err,
                         size_t errlen);
/* The bound "ip:port" (after port 0 was resolved). */
const char *http_api_server_addr(const struct http_api_server *s);
/* Send the response (body copied). headers: name, value pairs ended by
 * NULL, or NULL. Does nothing if the request was already answered. */
void http_api_server_reply(struct http_req *req, int status,
                           const char *content_type, const char *body,
                           size_t len, const char *const *headers);
void http_api_server_req_free(struct http_req *req);
typedef void (*http_api_server_close_cb)(void *arg);
/* Answer every pending request with 503, stop NNG's server, close the
 * async handle, then cb. Frees s. */
void http_api_server_close(struct http_api_server *s,
                           http_api_server_close_cb cb, void *arg);

/* A trusted_hosts entry. */

struct http_api {
    struct http_api_deps d;
    struct http_api_node node; /* zero until http_api_attach */
    bool ready;                /* http_api_set_ready */
    bool disk_low;             /* http_api_set_disk_low */
    struct http_api_server *srv;
    char *listen;
    char *hostname;
    struct km_cidr_list trusted; /* trusted_hosts */
    size_t body_limit;
    bool shutting_down;
    bool closing;
    size_t pending_ops;        /* async inject/admin operations in flight */
    struct km_map *auth_cache; /* sha256(user:pass) hex -> cache entry */
    struct http_api_authdelay *authdelay; /* failed Basic attempts, per peer */
    struct http_api_hold *holds;          /* requests waiting their turn */
    http_api_close_cb close_cb;
    void *close_arg;
};

/* Who is asking, once access is checked. */
struct http_api_auth {
    bool trusted;        /* peer in trusted_hosts */
    bool authenticated;  /* valid Basic credentials */
    char user[256];      /* the Basic user, "" if none */
    const char *peer_ip; /* borrowed from the request */
};

/* The node's metrics for this listener (rendered by /metrics). */
struct metrics *http_api_metrics(struct http_api *h);
/* JSON body reply helpers (the json is not consumed). */
void http_api_reply_json(struct http_req *req, int status, json_t *j);
void http_api_reply_error(struct http_req *req, int status, const char *fmt,
                          ...) __attribute__((format(printf, 3, 4)));
/* The value of `name` in a query string, URL-decoded, or NULL. The caller
 * owns the result. */
char *http_api_query_param(const char *query, const char *name);
/* An async handler finished: drop the pending count and finish a close
 * that was waiting for it. */
void http_api_op_done(struct http_api *h);

/* Templates (http_api_template.c). Pure code. */
struct http_api_template;
/* Compile; KM_EINVAL with "template syntax error: line L column C: why"
 * in err. The caller owns *out. */
int http_api_template_compile(const char *src, size_t len,
                              struct http_api_template **out, char *err,
                              size_t errlen);
/* Append the rendering with `vars` (an object; borrowed) to out. */
void http_api_template_render(const struct http_api_template *t, json_t *vars,
                              struct buf *out);
/* As http_api_template_render, for a whole RFC 5322 message: values
 * substituted before the first empty line (the header section) have
 * each CR and LF made a space, so a substitution cannot add a header. */
void http_api_template_render_message(const struct http_api_template *t,
                                      json_t *vars, struct buf *out);
void http_api_template_free(struct http_api_template *t);

/* Inject bodies (http_api_inject.c). */
struct http_api_inject; /* a parsed, compiled request */
/* Parse and validate a POST /api/inject/v1 body. On failure returns
 * KM_EINVAL with the HTTP status (400 bad field, 422 template syntax) in
 * *status and the reason in err. The caller owns *out. */
int http_api_inject_parse(json_t *body, struct http_api_inject **out,
                          int *status, char *err, size_t errlen);
void http_api_inject_free(struct http_api_inject *inj);
size_t http_api_inject_count(const struct http_api_inject *inj);
const char *http_api_inject_sender(const struct http_api_inject *inj);
const char *http_api_inject_recipient(const struct http_api_inject *inj,
                                      size_t i);
/* Per-recipient metadata (the recipient's "metadata"), or NULL. */
json_t *http_api_inject_metadata(const struct http_api_inject *inj, size_t i);
/* Build recipient i's RFC 5322 message into out: templated, MIME-built
 * for the builder form, with Message-ID <msgid@hostname>, boundaries
 * derived from msgid, and Date from now_ms. */
void http_api_inject_build(const struct http_api_inject *inj, size_t i,
                           const char *msgid, const char *hostname,
                           int64_t now_ms, struct buf *out);
/* Handle POST /api/inject/v1. Returns true if it took req (answered and
 * freed later, possibly before this returns); false if req was answered
 * and stays the caller's. */
bool http_api_inject_handle(struct http_api *h, struct http_req *req,
                            const struct http_api_auth *auth);

/* Admin endpoints (http_api_admin.c); true if the path was one of them.
 * *taken as for http_api_inject_handle(). */
bool http_api_admin_handle(struct http_api *h, struct http_req *req,
                           bool *taken);
/* "4m 59s" style (humantime), whole seconds. */
void http_api_admin_humantime(int64_t ms, char *out, size_t len);
#endif /* KUMO_HTTP_API_INT_H */
