/* http_api.h - the HTTP listener (kumo.start_http_listener): injection
 * (POST /api/inject/v1), liveness, metrics, the admin API and cluster
 * status, with KumoMTA's access rule: trusted hosts pass, others need HTTP
 * Basic credentials accepted by http_server_validate_auth_basic. Runs on
 * NNG's HTTP server; NNG's threads only queue requests, which are handled
 * on the loop thread (STYLE §9). Loop thread only. */
#ifndef KUMO_HTTP_API_H
#define KUMO_HTTP_API_H
#include <stddef.h>

#include <jansson.h>

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

struct admin;
struct cluster;
struct ingest;
struct km_idgen;
struct metrics;
struct policy;
struct queue_mgr;
struct spool;
struct http_api; /* opaque: one listener */

/* What a listener uses from the start (borrowed; they outlive it). */
struct http_api_deps {
    uv_loop_t *loop;
    struct policy *policy; /* http_server_validate_auth_basic, injection */
    struct metrics *metrics;
    struct km_idgen *ids;  /* ids of injected messages */
    struct ingest *ingest; /* where injected messages go */
};

/* What the node opens later, for status, metrics and admin (borrowed).
 * Pointers stay NULL, and strings empty, until http_api_attach(). */
struct http_api_node {
    struct cluster *cluster;
    struct queue_mgr *queues;
    struct admin *admin;
    struct spool *data, *meta;
    const char *nodeid;     /* this node's UUID */
    uint64_t raft_node_id;  /* configure_cluster's node_id, 1 alone */
    const char *cluster_id; /* "" without configure_cluster */
};

/* Bind and serve according to `params` (the validated JSON of one
 * kumo.start_http_listener{} call). Requests that need a running node get
 * 503 until http_api_set_ready(). KM_ECONFIG with a reason in err for a
 * bad value or an address that cannot be bound. The caller owns *out. */
int http_api_open(const struct http_api_deps *d, json_t *params,
                  struct http_api **out, char *err, size_t errlen);
/* The spools, the cluster, the queues and admin are open (the node is
 * still starting); `n` is copied, its pointers and strings are borrowed. */
void http_api_attach(struct http_api *h, const struct http_api_node *n);
/* The node runs (recovery done): injection and admin are served. */
void http_api_set_ready(struct http_api *h, bool ready);
/* The data spool is below its free-space mark: injection gets 503. */
void http_api_set_disk_low(struct http_api *h, bool low);
/* As http_api_open() would check, without binding (for --validate). */
int http_api_check_params(json_t *params, char *err, size_t errlen);

/* Shutdown: liveness answers 503 "shutting down", inject answers 503;
 * not ready any more. */
void http_api_shutdown(struct http_api *h);

typedef void (*http_api_close_cb)(void *arg);
/* Stop the server, answer what is queued, then call cb. Frees h. */
void http_api_close(struct http_api *h, http_api_close_cb cb, void *arg);
#endif /* KUMO_HTTP_API_H */
