/* dns.c - the resolver: a c-ares channel driven by the libuv loop (one
 * uv_poll_t per c-ares socket, one uv_timer_t for ares_timeout), MX and
 * A/AAAA lookups, a TTL cache and coalescing of concurrent lookups. Owns
 * the channel, the handles, the caches and the results (reference-counted,
 * packed in one allocation each). User callbacks always run from a uv_idle
 * handle (or from dns_close), never inside the call that asked, never
 * inside c-ares. Loop thread only. The pure parts (names, site names,
 * result records, reply TTLs, server specs) are in dns_site.c. */
#include "dns.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <ares.h>
#include <uv.h>

#include "base/buf.h"
#include "base/km.h"
#include "base/km_map.h"
#include "base/log.h"
#include "dns_int.h"

uint32_t
dns_negative_ttl(const unsigned char *abuf, int alen)
{
    struct dns_wire_ttls t;

    if (dns_wire_ttls(abuf, alen, &t) == 0 && t.has_soa) {
        return t.negative;
    }
    return DNS_NEG_TTL_DEFAULT_S;
}

/* Map a c-ares failure to our status. */
int
dns_ares_status(int status)
{
    switch (status) {
    case ARES_ENOTFOUND:
        return DNS_NXDOMAIN;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
        return KM_ECANCELED;
    default:
        /* SERVFAIL, REFUSED, timeouts, connection and format errors. */
        return DNS_TEMPFAIL;
    }
}

/* The loop side of c-ares */

static void dns_on_timer(uv_timer_t *t);

static void
dns_timer_update(struct dns *d)
{
    struct timeval tv;
    struct timeval *tvp;
    uint64_t ms;

    if (d->closing) {
        return;
    }
    tvp = ares_timeout(d->channel, NULL, &tv);
    if (tvp == NULL) {
        uv_timer_stop(&d->timer);
        return;
    }
    ms = (uint64_t)tvp->tv_sec * 1000 + ((uint64_t)tvp->tv_usec + 999) / 1000;
    uv_timer_start(&d->timer, dns_on_timer, ms, 0);
}

static void
dns_on_timer(uv_timer_t *t)
{
    struct dns *d = t->data;

    ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    dns_timer_update(d);
}

static void dns_finish(struct dns *d);

static void
dns_handle_closed(struct dns *d)
{
    KM_ASSERT(d->open_handles > 0);
    if (--d->open_handles == 0 && d->closing) {
        dns_finish(d);
    }
}

static void
dns_on_handle_close(uv_handle_t *h)
{
    dns_handle_closed(h->data);
}

static void
dns_on_poll_close(uv_handle_t *h)
{
    struct dns_poll *p = h->data;
    struct dns *d = p->d;

    free(p);
    dns_handle_closed(d);
}

static void
dns_poll_close(struct dns *d, struct dns_poll *p)
{
    struct dns_poll **pp = &d->polls;

    while (*pp != p) {
        pp = &(*pp)->next;
    }
    *pp = p->next;
    /* c-ares closes the socket right after this callback: stop polling
     * first (uv_poll_stop removes the fd from epoll at once). */
    uv_poll_stop(&p->handle);
    uv_close((uv_handle_t *)&p->handle, dns_on_poll_close);
}

static void
dns_on_poll(uv_poll_t *h, int status, int events)
{
    struct dns_poll *p = h->data;
    struct dns *d = p->d;
    ares_socket_t rfd = ARES_SOCKET_BAD;
    ares_socket_t wfd = ARES_SOCKET_BAD;

    if (status < 0) {
        /* Let c-ares read the error and fail over to the next server. */
        rfd = p->fd;
        wfd = p->fd;
    } else {
        rfd = (events & UV_READABLE) != 0 ? p->fd : ARES_SOCKET_BAD;
        wfd = (events & UV_WRITABLE) != 0 ? p->fd : ARES_SOCKET_BAD;
    }
    ares_process_fd(d->channel, rfd, wfd);
    dns_timer_update(d);
}

static void
dns_on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns *d = data;
    struct dns_poll *p = d->polls;
    int rv;

    while (p != NULL && p->fd != fd) {
        p = p->next;
    }
    if (readable == 0 && writable == 0) {
        if (p != NULL) {
            dns_poll_close(d, p);
        }
        return;
    }
    if (p == NULL) {
        p = km_calloc(1, sizeof(*p));
        rv = uv_poll_init_socket(d->loop, &p->handle, fd);
        if (rv != 0) {
            /* The query times out in c-ares and reports a tempfail. */
            LOG_WARN("dns: poll socket %d: %s", (int)fd, uv_strerror(rv));
            free(p);
            return;
        }
        p->d = d;
        p->fd = fd;
        p->handle.data = p;
        p->next = d->polls;
        d->polls = p;
        d->open_handles++;
    }
    uv_poll_start(&p->handle,
                  (readable != 0 ? UV_READABLE : 0) |
                      (writable != 0 ? UV_WRITABLE : 0),
                  dns_on_poll);
}

void
dns_query(struct dns *d, const char *name, int type, ares_callback cb,
          void *arg)
{
    /* ares_query, not ares_search: the names are absolute, no search list
     * from resolv.conf may be appended. */
    ares_query(d->channel, name, DNS_CLASS_IN, type, cb, arg);
    dns_timer_update(d);
}

/* Ready queue: waiters whose result is known, delivered from the idle
 * handle so that no callback runs inside the call that asked. */

static void dns_on_idle(uv_idle_t *h);

void
dns_ready_push(struct dns *d, struct dns_waiter *w)
{
    w->next = NULL;
    *d->ready_tail = w;
    d->ready_tail = &w->next;
    if (!d->closing) {
        uv_idle_start(&d->idle, dns_on_idle);
    }
}

static void
dns_ready_drain(struct dns *d)
{
    struct dns_waiter *w;

    while ((w = d->ready) != NULL) {
        d->ready = w->next;
        if (d->ready == NULL) {
            d->ready_tail = &d->ready;
        }
        if (w->kind == DNS_WAIT_MX) {
            w->mx_cb(w->arg, w->status, w->mx != NULL ? &w->mx->pub : NULL);
            dns_mx_rec_unref(w->mx);
        } else {
            w->addr_cb(w->arg, w->status,
                       w->addr != NULL ? &w->addr->pub : NULL);
            dns_addr_rec_unref(w->addr);
        }
        free(w);
    }
}

static void
dns_on_idle(uv_idle_t *h)
{
    struct dns *d = h->data;

    dns_ready_drain(d);
    if (!d->closing) {
        uv_idle_stop(&d->idle);
    }
}

void
dns_ready_mx(struct dns *d, struct dns_waiter *w, int status,
             struct dns_mx_rec *r)
{
    w->status = status;
    w->mx =
        status == DNS_OK ? dns_mx_rec_for_caller(r, d->shuffle, &d->rng) : NULL;
    dns_ready_push(d, w);
}

struct dns_waiter *
dns_waiter_new(enum dns_waiter_kind kind)
{
    struct dns_waiter *w = km_calloc(1, sizeof(*w));

    w->kind = kind;
    return w;
}

/* Cache */

static void
dns_cache_entry_free(struct dns_cache_entry *e)
{
    dns_mx_rec_unref(e->mx);
    dns_addr_rec_unref(e->addr);
    free(e);
}

/* The live entry for key, or NULL (an expired one is dropped). */
struct dns_cache_entry *
dns_cache_get(struct dns *d, struct km_map *cache, const char *key)
{
    struct dns_cache_entry *e = km_map_get(cache, key);

    if (e != NULL && e->expires_ms <= uv_now(d->loop)) {
        km_map_remove(cache, key, NULL);
        dns_cache_entry_free(e);
        e = NULL;
    }
    return e;
}

void
dns_cache_put(struct dns *d, struct km_map *cache, size_t *sweep_at,
              const char *key, int status, uint32_t ttl_s,
              struct dns_mx_rec *mx, struct dns_addr_rec *addr)
{
    struct dns_cache_entry *e = km_calloc(1, sizeof(*e));
    uint64_t now = uv_now(d->loop);
    void *old = NULL;

    if (km_map_count(cache) >= *sweep_at) {
        struct km_map_iter it;
        const char *k;
        void *v;

        km_map_iter_init(&it, cache);
        while (km_map_iter_next(&it, &k, &v)) {
            struct dns_cache_entry *x = v;

            if (x->expires_ms <= now) {
                km_map_remove(cache, k, NULL);
                dns_cache_entry_free(x);
            }
        }
        *sweep_at = km_map_count(cache) * 2;
        if (*sweep_at < DNS_CACHE_SWEEP_MIN) {
            *sweep_at = DNS_CACHE_SWEEP_MIN;
        }
    }
    e->status = status;
    e->ttl_s = dns_ttl_clamp(ttl_s);
    e->expires_ms = now + (uint64_t)e->ttl_s * 1000;
    e->mx = mx != NULL ? dns_mx_rec_ref(mx) : NULL;
    e->addr = addr != NULL ? dns_addr_rec_ref(addr) : NULL;
    if (km_map_put(cache, key, e, &old)) {
        dns_cache_entry_free(old);
    }
}

/* Public API */

int
dns_resolve_mx(struct dns *d, const char *domain, dns_mx_cb cb, void *arg)
{
    struct dns_waiter *w;
    struct dns_cache_entry *e;
    struct dns_mx_lookup *lk;
    char *key;

    if (d->closing) {
        return KM_ECLOSING;
    }
    if (dns_is_domain_literal(domain)) {
        struct dns_addr a;
        struct dns_mx_tmp h = {0};
        struct dns_mx_rec *r;

        if (dns_parse_domain_literal(domain, &a) != 0) {
            return KM_EINVAL;
        }
        h.name = a.text;
        h.n_addrs = 1;
        h.addrs = &a;
        r = dns_mx_rec_new(domain, a.text, true, false, &h, 1, DNS_TTL_MAX_S);
        w = dns_waiter_new(DNS_WAIT_MX);
        w->mx_cb = cb;
        w->arg = arg;
        dns_ready_mx(d, w, DNS_OK, r);
        dns_mx_rec_unref(r);
        return 0;
    }
    key = dns_name_normalize(domain);
    if (key == NULL) {
        return KM_EINVAL;
    }
    w = dns_waiter_new(DNS_WAIT_MX);
    w->mx_cb = cb;
    w->arg = arg;
    e = dns_cache_get(d, d->mx_cache, key);
    if (e != NULL) {
        free(key);
        dns_ready_mx(d, w, e->status, e->mx);
        return 0;
    }
    lk = km_map_get(d->mx_inflight, key);
    if (lk != NULL) {
        free(key);
        *lk->waiters_tail = w;
        lk->waiters_tail = &w->next;
        return 0;
    }
    lk = km_calloc(1, sizeof(*lk));
    lk->d = d;
    lk->key = key;
    lk->waiters = w;
    lk->waiters_tail = &w->next;
    km_map_put(d->mx_inflight, key, lk, NULL);
    dns_query(d, key, DNS_TYPE_MX, dns_mx_on_answer, lk);
    return 0;
}

int
dns_resolve_addr(struct dns *d, const char *host, dns_addr_cb cb, void *arg)
{
    struct dns_waiter *w;
    struct dns_addr a;
    char *key;

    if (d->closing) {
        return KM_ECLOSING;
    }
    if (dns_parse_domain_literal(host, &a) == 0 ||
        dns_addr_from_text(host, AF_UNSPEC, &a) == 0) {
        struct dns_addr_rec *r =
            a.family == AF_INET
                ? dns_addr_rec_new(a.text, &a, 1, NULL, 0, DNS_TTL_MAX_S)
                : dns_addr_rec_new(a.text, NULL, 0, &a, 1, DNS_TTL_MAX_S);

        w = dns_waiter_new(DNS_WAIT_ADDR);
        w->addr_cb = cb;
        w->arg = arg;
        dns_addr_notify(d, w, DNS_OK, r, DNS_TTL_MAX_S);
        dns_addr_rec_unref(r);
        return 0;
    }
    if (dns_is_domain_literal(host)) {
        return KM_EINVAL;
    }
    key = dns_name_normalize(host);
    if (key == NULL) {
        return KM_EINVAL;
    }
    w = dns_waiter_new(DNS_WAIT_ADDR);
    w->addr_cb = cb;
    w->arg = arg;
    dns_addr_want(d, key, w);
    return 0;
}

int
dns_open(uv_loop_t *loop, const char *const *servers, size_t n_servers,
         struct dns **out)
{
    return dns_open_with_options(loop, servers, n_servers, NULL, out);
}

int
dns_open_with_options(uv_loop_t *loop, const char *const *servers,
                      size_t n_servers, const struct dns_options *opts,
                      struct dns **out)
{
    struct dns_options defaults = {0};
    struct ares_options ao;
    struct buf csv = BUF_INIT;
    struct dns *d;
    int rv;

    opts = opts != NULL ? opts : &defaults;
    for (size_t i = 0; i < n_servers; i++) {
        rv = dns_server_to_csv(servers[i], &csv);
        if (rv != 0) {
            goto err_after_csv;
        }
    }
    if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
        rv = KM_EIO;
        goto err_after_csv;
    }
    d = km_calloc(1, sizeof(*d));
    d->loop = loop;
    d->shuffle = !opts->no_shuffle;
    d->ready_tail = &d->ready;
    d->mx_sweep_at = DNS_CACHE_SWEEP_MIN;
    d->addr_sweep_at = DNS_CACHE_SWEEP_MIN;
    if (getrandom(&d->rng, sizeof(d->rng), GRND_NONBLOCK) !=
        (ssize_t)sizeof(d->rng)) {
        d->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)d;
    }
    d->rng |= 1;

    memset(&ao, 0, sizeof(ao));
    ao.sock_state_cb = dns_on_sock_state;
    ao.sock_state_cb_data = d;
    ao.timeout = (int)(opts->timeout_ms != 0 ? opts->timeout_ms
                                             : DNS_TIMEOUT_DEFAULT_MS);
    ao.tries =
        (int)(opts->attempts != 0 ? opts->attempts : DNS_ATTEMPTS_DEFAULT);
    /* Default flags: retry over TCP when a UDP answer is truncated. */
    if (ares_init_options(&d->channel, &ao,
                          ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
                              ARES_OPT_TRIES) != ARES_SUCCESS) {
        rv = KM_EIO;
        goto err_after_library;
    }
    if (n_servers > 0 && ares_set_servers_ports_csv(
                             d->channel, buf_cstr(&csv)) != ARES_SUCCESS) {
        rv = KM_ECONFIG;
        goto err_after_channel;
    }
    d->mx_cache = km_map_new();
    d->addr_cache = km_map_new();
    d->mx_inflight = km_map_new();
    d->addr_inflight = km_map_new();
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    uv_idle_init(loop, &d->idle);
    d->idle.data = d;
    d->open_handles = 2;
    buf_fini(&csv);
    *out = d;
    return 0;

err_after_channel:
    ares_destroy(d->channel);
err_after_library:
    free(d);
    ares_library_cleanup();
err_after_csv:
    buf_fini(&csv);
    return rv;
}

static void
dns_cache_free(struct km_map *cache)
{
    struct km_map_iter it;
    void *v;

    km_map_iter_init(&it, cache);
    while (km_map_iter_next(&it, NULL, &v)) {
        dns_cache_entry_free(v);
    }
    km_map_free(cache);
}

static void
dns_finish(struct dns *d)
{
    dns_close_cb cb = d->close_cb;
    void *arg = d->close_arg;

    KM_ASSERT(km_map_count(d->mx_inflight) == 0);
    KM_ASSERT(km_map_count(d->addr_inflight) == 0);
    KM_ASSERT(d->ready == NULL && d->polls == NULL);
    dns_cache_free(d->mx_cache);
    dns_cache_free(d->addr_cache);
    km_map_free(d->mx_inflight);
    km_map_free(d->addr_inflight);
    free(d);
    ares_library_cleanup();
    if (cb != NULL) {
        cb(arg);
    }
}

void
dns_close(struct dns *d, dns_close_cb cb, void *arg)
{
    KM_ASSERT(!d->closing);
    d->closing = true;
    d->close_cb = cb;
    d->close_arg = arg;
    /* Every outstanding query calls back with ARES_ECANCELLED; lookups
     * then complete with KM_ECANCELED and queue their waiters, which are
     * delivered below. Destroying the channel closes its sockets, which
     * closes their polls through dns_on_sock_state. */
    ares_cancel(d->channel);
    ares_destroy(d->channel);
    while (d->polls != NULL) {
        dns_poll_close(d, d->polls);
    }
    dns_ready_drain(d);
    uv_close((uv_handle_t *)&d->timer, dns_on_handle_close);
    uv_close((uv_handle_t *)&d->idle, dns_on_handle_close);
}
