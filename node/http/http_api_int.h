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
/* Shared by http_api.c and http_api_endpoints.c. */
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

void http_api_liveness(struct http_api *h, struct http_req *req);
void http_api_metrics_text(struct http_api *h, struct http_req *req);
void http_api_metrics_json(struct http_api *h, struct http_req *req);
void http_api_queue_summary(struct http_api *h, struct http_req *req);
bool http_api_cluster_status(struct http_api *h, struct http_req *req);
bool http_api_cluster_admin(struct http_api *h, struct http_req *req,
                            const char *what);

/* Shared by http_api_inject.c and http_api_inject_build.c. */
struct http_api_inject_rcpt {
    char *email;
    char *name;    /* NULL if absent */
    json_t *subst; /* object or NULL */
    json_t *metadata;
};

struct http_api_inject_attach {
    char *content_type;
    char *file_name;  /* NULL if absent */
    char *content_id; /* NULL if absent */
    struct buf data;  /* decoded bytes */
};

struct http_api_inject_header {
    char *name;
    struct http_api_template *value;
};

struct http_api_inject {
    char *sender;
    struct http_api_inject_rcpt *rcpts;
    size_t n_rcpts;
    json_t *subst;                 /* object or NULL */
    struct http_api_template *raw; /* raw content, or NULL: builder */
    struct http_api_template *subject, *text_body, *html_body;
    struct http_api_template *from_name;
    char *from_email;
    char *reply_to; /* formatted address, or NULL */
    struct http_api_inject_header *headers;
    size_t n_headers;
    struct http_api_inject_attach *attach;
    size_t n_attach;
};

void http_api_inject_quoted(const char *s, struct buf *out);
int http_api_inject_b64_decode(const char *s, size_t n, struct buf *out);
void http_api_inject_fmt_addr(const char *name, const char *email,
                              struct buf *out);

/* Shared by http_api_template.c and http_api_template_render.c. */
enum http_api_template_filter {
    HTTP_API_TPL_F_DEFAULT,
    HTTP_API_TPL_F_UPPER,
    HTTP_API_TPL_F_LOWER,
    HTTP_API_TPL_F_TRIM,
};

struct http_api_template_operand {
    json_t *path;    /* array of keys (strings) and indexes, or NULL */
    json_t *literal; /* when path is NULL */
    enum http_api_template_filter *filters;
    json_t **filter_args; /* default()'s argument, or NULL */
    size_t n_filters;
};

enum http_api_template_op {
    HTTP_API_TPL_OP_NONE,
    HTTP_API_TPL_OP_EQ,
    HTTP_API_TPL_OP_NE,
};

struct http_api_template_expr {
    bool negate;
    struct http_api_template_operand lhs;
    enum http_api_template_op op;
    struct http_api_template_operand rhs;
};

/* The deepest nesting of if blocks a template may have. */
#define HTTP_API_TEMPLATE_MAX_DEPTH 64

struct http_api_template_nodes {
    struct http_api_template_node *v;
    size_t n;
    size_t cap;
};

enum http_api_template_kind {
    HTTP_API_TPL_TEXT,
    HTTP_API_TPL_VAR,
    HTTP_API_TPL_IF,
};

struct http_api_template_branch {
    struct http_api_template_expr cond;
    struct http_api_template_nodes body;
};

struct http_api_template_node {
    enum http_api_template_kind kind;
    struct buf text;                           /* TEXT */
    struct http_api_template_expr expr;        /* VAR */
    struct http_api_template_branch *branches; /* IF: if and elifs */
    size_t n_branches;
    struct http_api_template_nodes else_body;
};

struct http_api_template {
    struct http_api_template_nodes root;
};

/* Compiler state. */
struct http_api_template_parser {
    const char *src;
    size_t len;
    size_t pos;
    unsigned depth;   /* if blocks open */
    bool lstrip_next; /* the previous tag ended with "-%}" or "-}}" */
    char *err;
    size_t errlen;
};

/* A tag's inside, tokenised. */
enum http_api_template_tok {
    HTTP_API_TPL_T_END,
    HTTP_API_TPL_T_IDENT,
    HTTP_API_TPL_T_STRING,
    HTTP_API_TPL_T_NUMBER,
    HTTP_API_TPL_T_PUNCT, /* . [ ] ( ) | , == != */
};

struct http_api_template_lexer {
    struct http_api_template_parser *p;
    size_t pos, end; /* within p->src */
    enum http_api_template_tok tok;
    size_t tok_start;
    struct buf val; /* identifier, decoded string, number or punct */
};

int http_api_template_operand(struct http_api_template_lexer *lx,
                              struct http_api_template_operand *o);
int http_api_template_expr(struct http_api_template_lexer *lx,
                           struct http_api_template_expr *e);
#endif /* KUMO_HTTP_API_INT_H */
