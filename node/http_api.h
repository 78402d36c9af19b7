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

struct kumod;
struct http_api; /* opaque: one listener */

/* Bind and serve according to `params` (the validated JSON of one
 * kumo.start_http_listener{} call). Requests arriving before
 * kumod_is_ready() get 503. KM_ECONFIG with a reason in err for a bad
 * value or an address that cannot be bound. The caller owns *out. */
int http_api_open(struct kumod *kd, json_t *params, struct http_api **out,
                  char *err, size_t errlen);
/* As http_api_open() would check, without binding (for --validate). */
int http_api_check_params(json_t *params, char *err, size_t errlen);

/* Shutdown: liveness answers 503 "shutting down", inject answers 503. */
void http_api_shutdown(struct http_api *h);

typedef void (*http_api_close_cb)(void *arg);
/* Stop the server, answer what is queued, then call cb. Frees h. */
void http_api_close(struct http_api *h, http_api_close_cb cb, void *arg);
#endif /* KUMO_HTTP_API_H */
