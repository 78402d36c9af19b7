/* http_api_authdelay.h - paces HTTP Basic attempts from a peer that has
 * been failing them: each failure doubles the gap between its attempts
 * (from HTTP_API_AUTHDELAY_BASE_MS to HTTP_API_AUTHDELAY_MAX_MS), a valid
 * attempt clears it. Per peer (an IPv4 address, an IPv6 /64), so one
 * guesser never slows another peer's users down; nothing locks out.
 * Pure bookkeeping on times given by the caller (who holds the requests).
 * Loop thread only. */
#ifndef KUMO_HTTP_API_AUTHDELAY_H
#define KUMO_HTTP_API_AUTHDELAY_H
#include <stdbool.h>
#include <stdint.h>

#define HTTP_API_AUTHDELAY_BASE_MS 100
#define HTTP_API_AUTHDELAY_MAX_MS  10000
/* Attempts queued further out than this are refused (429), so parallel
 * connections cannot stack up guesses. */
#define HTTP_API_AUTHDELAY_QUEUE_MS 60000
/* A peer with no failure for this long starts again from zero. */
#define HTTP_API_AUTHDELAY_FORGET_MS (15 * 60 * 1000)
/* Peers remembered at most (the oldest quiet ones are dropped first). */
#define HTTP_API_AUTHDELAY_MAX_PEERS 16384

struct http_api_authdelay; /* opaque */

/* A new, empty table. The caller owns it (http_api_authdelay_free). */
struct http_api_authdelay *http_api_authdelay_new(void);
void http_api_authdelay_free(struct http_api_authdelay *d);

/* A request with credentials from `peer` (an IP address as text) arrives
 * at now_ms. Books its turn and sets *wait_ms to how long to hold it
 * before checking the credentials (0: check now). Returns false when
 * the peer's queue is full: refuse the request now, without checking. */
bool http_api_authdelay_admit(struct http_api_authdelay *d, const char *peer,
                              uint64_t now_ms, uint64_t *wait_ms);

/* The credentials from `peer` were wrong (at now_ms), or right. */
void http_api_authdelay_failed(struct http_api_authdelay *d, const char *peer,
                               uint64_t now_ms);
void http_api_authdelay_succeeded(struct http_api_authdelay *d,
                                  const char *peer);

/* The number of failures counted for peer now (0 if none): for tests. */
unsigned http_api_authdelay_failures(const struct http_api_authdelay *d,
                                     const char *peer);
#endif /* KUMO_HTTP_API_AUTHDELAY_H */
