/* http_api_authdelay.c - per-peer pacing of failed HTTP Basic attempts
 * (see the header). A km_map from the peer key to its entry; the table is
 * bounded: when full, quiet peers are forgotten, and if all are busy the
 * whole table is (an attacker with that many addresses gains a fresh
 * start, never a lock-out of others). Loop thread only. */
#include "http_api_authdelay.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "base/km_map.h"

struct http_api_authdelay_peer {
    unsigned failures;
    uint64_t last_fail_ms;
    uint64_t next_ms; /* the earliest time of the next attempt */
};

struct http_api_authdelay {
    struct km_map *peers;
};

struct http_api_authdelay *
http_api_authdelay_new(void)
{
    struct http_api_authdelay *d = km_calloc(1, sizeof(*d));

    d->peers = km_map_new();
    return d;
}

static void
http_api_authdelay_clear(struct http_api_authdelay *d)
{
    struct km_map_iter it;
    void *v;

    km_map_iter_init(&it, d->peers);
    while (km_map_iter_next(&it, NULL, &v)) {
        free(v);
    }
    km_map_clear(d->peers);
}

void
http_api_authdelay_free(struct http_api_authdelay *d)
{
    if (d == NULL) {
        return;
    }
    http_api_authdelay_clear(d);
    km_map_free(d->peers);
    free(d);
}

/* An IPv4 address as it is; an IPv6 address by its /64, since one host
 * usually holds a whole /64. */
static void
http_api_authdelay_key(const char *peer, char *out, size_t n)
{
    struct in6_addr a6;

    if (strchr(peer, ':') != NULL && inet_pton(AF_INET6, peer, &a6) == 1 &&
        !IN6_IS_ADDR_V4MAPPED(&a6)) {
        memset(a6.s6_addr + 8, 0, 8);
        if (inet_ntop(AF_INET6, &a6, out, (socklen_t)n) != NULL) {
            size_t len = strlen(out);

            snprintf(out + len, n - len, "/64");
            return;
        }
    }
    snprintf(out, n, "%s", peer);
}

static uint64_t
http_api_authdelay_gap(unsigned failures)
{
    uint64_t gap = HTTP_API_AUTHDELAY_BASE_MS;

    for (unsigned i = 1; i < failures && gap < HTTP_API_AUTHDELAY_MAX_MS; i++) {
        gap *= 2;
    }
    return gap < HTTP_API_AUTHDELAY_MAX_MS ? gap : HTTP_API_AUTHDELAY_MAX_MS;
}

static struct http_api_authdelay_peer *
http_api_authdelay_get(const struct http_api_authdelay *d, const char *peer)
{
    char key[INET6_ADDRSTRLEN + 8];

    http_api_authdelay_key(peer, key, sizeof(key));
    return km_map_get(d->peers, key);
}

/* Forget the peers that are quiet at now_ms; all of them if none is. */
static void
http_api_authdelay_prune(struct http_api_authdelay *d, uint64_t now_ms)
{
    struct km_map_iter it;
    const char *key;
    void *v;

    km_map_iter_init(&it, d->peers);
    while (km_map_iter_next(&it, &key, &v)) {
        struct http_api_authdelay_peer *p = v;

        if (p->next_ms <= now_ms) {
            km_map_remove(d->peers, key, NULL);
            free(p);
        }
    }
    if (km_map_count(d->peers) >= HTTP_API_AUTHDELAY_MAX_PEERS) {
        http_api_authdelay_clear(d);
    }
}

bool
http_api_authdelay_admit(struct http_api_authdelay *d, const char *peer,
                         uint64_t now_ms, uint64_t *wait_ms)
{
    struct http_api_authdelay_peer *p = http_api_authdelay_get(d, peer);
    uint64_t at;

    *wait_ms = 0;
    if (p == NULL || p->failures == 0) {
        return true;
    }
    if (now_ms - p->last_fail_ms > HTTP_API_AUTHDELAY_FORGET_MS &&
        p->next_ms <= now_ms) {
        p->failures = 0;
        return true;
    }
    at = p->next_ms > now_ms ? p->next_ms : now_ms;
    if (at - now_ms > HTTP_API_AUTHDELAY_QUEUE_MS) {
        return false;
    }
    p->next_ms = at + http_api_authdelay_gap(p->failures);
    *wait_ms = at - now_ms;
    return true;
}

void
http_api_authdelay_failed(struct http_api_authdelay *d, const char *peer,
                          uint64_t now_ms)
{
    char key[INET6_ADDRSTRLEN + 8];
    struct http_api_authdelay_peer *p;
    uint64_t next;

    http_api_authdelay_key(peer, key, sizeof(key));
    p = km_map_get(d->peers, key);
    if (p == NULL) {
        if (km_map_count(d->peers) >= HTTP_API_AUTHDELAY_MAX_PEERS) {
            http_api_authdelay_prune(d, now_ms);
        }
        p = km_calloc(1, sizeof(*p));
        km_map_put(d->peers, key, p, NULL);
    }
    if (p->failures < 64) {
        p->failures++;
    }
    p->last_fail_ms = now_ms;
    next = now_ms + http_api_authdelay_gap(p->failures);
    if (next > p->next_ms) {
        p->next_ms = next;
    }
}

void
http_api_authdelay_succeeded(struct http_api_authdelay *d, const char *peer)
{
    char key[INET6_ADDRSTRLEN + 8];
    void *v;

    http_api_authdelay_key(peer, key, sizeof(key));
    if (km_map_remove(d->peers, key, &v)) {
        free(v);
    }
}

unsigned
http_api_authdelay_failures(const struct http_api_authdelay *d,
                            const char *peer)
{
    const struct http_api_authdelay_peer *p = http_api_authdelay_get(d, peer);

    return p != NULL ? p->failures : 0;
}
