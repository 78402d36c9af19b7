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

#define DNS_NEG_TTL_DEFAULT_S  300
#define DNS_TIMEOUT_DEFAULT_MS 2000
#define DNS_ATTEMPTS_DEFAULT   2
#define DNS_ADDRS_PER_FAMILY   64
#define DNS_CACHE_SWEEP_MIN    1024

struct dns_poll {
    struct dns_poll *next;
    struct dns *d;
    uv_poll_t handle;
    ares_socket_t fd;
};

enum dns_waiter_kind {
    DNS_WAIT_MX,      /* a dns_resolve_mx() caller */
    DNS_WAIT_ADDR,    /* a dns_resolve_addr() caller */
    DNS_WAIT_MX_HOST, /* an MX lookup waiting for one host's addresses */
};

struct dns_waiter {
    struct dns_waiter *next;
    enum dns_waiter_kind kind;
    dns_mx_cb mx_cb;
    dns_addr_cb addr_cb;
    void *arg;
    struct dns_mx_lookup *parent; /* DNS_WAIT_MX_HOST */
    size_t host_idx;
    int status;            /* set once the waiter is ready */
    struct dns_mx_rec *mx; /* a reference, DNS_OK only */
    struct dns_addr_rec *addr;
};

struct dns_cache_entry {
    int status;
    uint32_t ttl_s;
    uint64_t expires_ms;       /* uv_now() time */
    struct dns_mx_rec *mx;     /* DNS_OK in the MX cache */
    struct dns_addr_rec *addr; /* DNS_OK in the address cache */
};

struct dns_mx_lookup {
    struct dns *d;
    char *key;
    struct dns_waiter *waiters;
    struct dns_waiter **waiters_tail;
    size_t n_hosts;
    struct dns_mx_tmp *hosts;
    size_t pending; /* host lookups outstanding, plus one while starting */
    uint32_t ttl_s;
    bool implicit;
    bool any_tempfail;
    bool canceled;
};

struct dns_addr_lookup;

/* One of the two queries (A, AAAA) of an address lookup. */
struct dns_addr_fam {
    struct dns_addr_lookup *lk;
    int family;
    int status; /* DNS_OK, DNS_NO_ADDRESSES (NODATA), DNS_NXDOMAIN, ... */
    uint32_t ttl_s;
    size_t n_addrs;
    struct dns_addr *addrs;
};

struct dns_addr_lookup {
    struct dns *d;
    char *key;
    struct dns_waiter *waiters;
    struct dns_waiter **waiters_tail;
    int pending; /* queries outstanding, plus one while starting */
    struct dns_addr_fam fam[2];
};

struct dns {
    uv_loop_t *loop;
    ares_channel channel;
    uv_timer_t timer;
    uv_idle_t idle; /* delivers the ready queue */
    struct dns_poll *polls;
    struct km_map *mx_cache;      /* key -> struct dns_cache_entry */
    struct km_map *addr_cache;    /* key -> struct dns_cache_entry */
    struct km_map *mx_inflight;   /* key -> struct dns_mx_lookup */
    struct km_map *addr_inflight; /* key -> struct dns_addr_lookup */
    size_t mx_sweep_at;
    size_t addr_sweep_at;
    struct dns_waiter *ready;
    struct dns_waiter **ready_tail;
    uint64_t rng;
    bool shuffle;
    bool closing;
    unsigned open_handles; /* timer, idle and polls not yet closed */
    dns_close_cb close_cb;
    void *close_arg;
};

static void dns_addr_want(struct dns *d, char *key, struct dns_waiter *w);
static void dns_mx_host_done(struct dns_mx_lookup *lk);

static uint32_t
dns_negative_ttl(const unsigned char *abuf, int alen)
{
    struct dns_wire_ttls t;

    if (dns_wire_ttls(abuf, alen, &t) == 0 && t.has_soa) {
        return t.negative;
    }
    return DNS_NEG_TTL_DEFAULT_S;
}

/* Map a c-ares failure to our status. */
static int
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

static void
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

static void
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

static void
dns_ready_mx(struct dns *d, struct dns_waiter *w, int status,
             struct dns_mx_rec *r)
{
    w->status = status;
    w->mx =
        status == DNS_OK ? dns_mx_rec_for_caller(r, d->shuffle, &d->rng) : NULL;
    dns_ready_push(d, w);
}

static struct dns_waiter *
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
static struct dns_cache_entry *
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

static void
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

/* Address lookups (A and AAAA of one name) */

static void dns_addr_notify(struct dns *d, struct dns_waiter *w, int status,
                            struct dns_addr_rec *r, uint32_t ttl_s);

static void
dns_addr_lookup_finish(struct dns_addr_lookup *lk)
{
    struct dns *d = lk->d;
    struct dns_addr_fam *f4 = &lk->fam[0];
    struct dns_addr_fam *f6 = &lk->fam[1];
    struct dns_addr_rec *r = NULL;
    bool cacheable = true;
    uint32_t ttl = DNS_TTL_MAX_S;
    int status;

    for (int i = 0; i < 2; i++) {
        if (lk->fam[i].status == DNS_TEMPFAIL) {
            cacheable = false;
        } else if (lk->fam[i].ttl_s < ttl) {
            ttl = lk->fam[i].ttl_s;
        }
    }
    if (f4->status == KM_ECANCELED || f6->status == KM_ECANCELED) {
        status = KM_ECANCELED;
        cacheable = false;
    } else if (f4->n_addrs + f6->n_addrs > 0) {
        status = DNS_OK;
        r = dns_addr_rec_new(lk->key, f4->addrs, f4->n_addrs, f6->addrs,
                             f6->n_addrs, ttl);
    } else if (f4->status == DNS_TEMPFAIL || f6->status == DNS_TEMPFAIL) {
        status = DNS_TEMPFAIL;
    } else if (f4->status == DNS_NXDOMAIN && f6->status == DNS_NXDOMAIN) {
        status = DNS_NXDOMAIN;
    } else {
        status = DNS_NO_ADDRESSES;
    }

    km_map_remove(d->addr_inflight, lk->key, NULL);
    if (cacheable && !d->closing) {
        dns_cache_put(d, d->addr_cache, &d->addr_sweep_at, lk->key, status, ttl,
                      NULL, r);
    }
    while (lk->waiters != NULL) {
        struct dns_waiter *w = lk->waiters;

        lk->waiters = w->next;
        dns_addr_notify(d, w, status, r, dns_ttl_clamp(ttl));
    }
    dns_addr_rec_unref(r);
    free(f4->addrs);
    free(f6->addrs);
    free(lk->key);
    free(lk);
}

static void
dns_addr_lookup_dec(struct dns_addr_lookup *lk)
{
    KM_ASSERT(lk->pending > 0);
    if (--lk->pending == 0) {
        dns_addr_lookup_finish(lk);
    }
}

static void
dns_addr_fam_parse(struct dns_addr_fam *f, const unsigned char *abuf, int alen)
{
    struct ares_addrttl t4[DNS_ADDRS_PER_FAMILY];
    struct ares_addr6ttl t6[DNS_ADDRS_PER_FAMILY];
    int n = DNS_ADDRS_PER_FAMILY;
    int rc;

    if (f->family == AF_INET) {
        rc = ares_parse_a_reply(abuf, alen, NULL, t4, &n);
    } else {
        rc = ares_parse_aaaa_reply(abuf, alen, NULL, t6, &n);
    }
    if (rc == ARES_ENODATA || (rc == ARES_SUCCESS && n <= 0)) {
        /* Only a CNAME, or other types: no address for this family. */
        f->status = DNS_NO_ADDRESSES;
        f->ttl_s = dns_negative_ttl(abuf, alen);
        return;
    }
    if (rc != ARES_SUCCESS) {
        f->status = DNS_TEMPFAIL;
        return;
    }
    f->status = DNS_OK;
    f->ttl_s = UINT32_MAX;
    f->addrs = km_calloc((size_t)n, sizeof(*f->addrs));
    for (int i = 0; i < n; i++) {
        struct dns_addr *a = &f->addrs[f->n_addrs];
        int ttl = f->family == AF_INET ? t4[i].ttl : t6[i].ttl;

        if (f->family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;

            sin->sin_family = AF_INET;
            sin->sin_addr = t4[i].ipaddr;
            inet_ntop(AF_INET, &sin->sin_addr, a->text, sizeof(a->text));
        } else {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;

            sin6->sin6_family = AF_INET6;
            memcpy(&sin6->sin6_addr, &t6[i].ip6addr, sizeof(sin6->sin6_addr));
            inet_ntop(AF_INET6, &sin6->sin6_addr, a->text, sizeof(a->text));
        }
        a->family = f->family;
        f->n_addrs++;
        if (ttl < 0) {
            ttl = 0;
        }
        if ((uint32_t)ttl < f->ttl_s) {
            f->ttl_s = (uint32_t)ttl;
        }
    }
}

static void
dns_addr_on_answer(void *arg, int status, int timeouts, unsigned char *abuf,
                   int alen)
{
    struct dns_addr_fam *f = arg;

    (void)timeouts;
    switch (status) {
    case ARES_SUCCESS:
        dns_addr_fam_parse(f, abuf, alen);
        break;
    case ARES_ENODATA:
        f->status = DNS_NO_ADDRESSES;
        f->ttl_s = dns_negative_ttl(abuf, alen);
        break;
    case ARES_ENOTFOUND:
        f->status = DNS_NXDOMAIN;
        f->ttl_s = dns_negative_ttl(abuf, alen);
        break;
    default:
        f->status = dns_ares_status(status);
        break;
    }
    dns_addr_lookup_dec(f->lk);
}

/* Look up the addresses of a normalised name (takes ownership of key) for
 * waiter w: from the cache, by joining a lookup in flight, or by asking. */
static void
dns_addr_want(struct dns *d, char *key, struct dns_waiter *w)
{
    struct dns_cache_entry *e = dns_cache_get(d, d->addr_cache, key);
    struct dns_addr_lookup *lk;

    if (e != NULL) {
        uint64_t left_ms = e->expires_ms - uv_now(d->loop);

        free(key);
        dns_addr_notify(d, w, e->status, e->addr,
                        (uint32_t)((left_ms + 999) / 1000));
        return;
    }
    lk = km_map_get(d->addr_inflight, key);
    if (lk != NULL) {
        free(key);
        *lk->waiters_tail = w;
        lk->waiters_tail = &w->next;
        return;
    }
    lk = km_calloc(1, sizeof(*lk));
    lk->d = d;
    lk->key = key;
    lk->waiters = w;
    lk->waiters_tail = &w->next;
    lk->pending = 3; /* A, AAAA and this function */
    for (int i = 0; i < 2; i++) {
        lk->fam[i].lk = lk;
        lk->fam[i].family = i == 0 ? AF_INET : AF_INET6;
        lk->fam[i].status = DNS_TEMPFAIL;
    }
    km_map_put(d->addr_inflight, key, lk, NULL);
    dns_query(d, key, DNS_TYPE_A, dns_addr_on_answer, &lk->fam[0]);
    dns_query(d, key, DNS_TYPE_AAAA, dns_addr_on_answer, &lk->fam[1]);
    dns_addr_lookup_dec(lk);
}

/* MX lookups */

static void
dns_mx_on_host(struct dns_mx_lookup *lk, size_t idx, int status,
               struct dns_addr_rec *r, uint32_t ttl_s)
{
    struct dns_mx_tmp *h = &lk->hosts[idx];

    if (status == DNS_OK) {
        h->n_addrs = r->pub.n_addrs;
        h->addrs = km_memdup(r->pub.addrs, h->n_addrs * sizeof(*h->addrs));
    } else if (status == KM_ECANCELED) {
        lk->canceled = true;
    } else if (status == DNS_TEMPFAIL) {
        lk->any_tempfail = true;
    }
    if (status != DNS_TEMPFAIL && ttl_s < lk->ttl_s) {
        lk->ttl_s = ttl_s;
    }
    dns_mx_host_done(lk);
}

static void
dns_addr_notify(struct dns *d, struct dns_waiter *w, int status,
                struct dns_addr_rec *r, uint32_t ttl_s)
{
    if (w->kind == DNS_WAIT_MX_HOST) {
        struct dns_mx_lookup *lk = w->parent;
        size_t idx = w->host_idx;

        free(w);
        dns_mx_on_host(lk, idx, status, r, ttl_s);
        return;
    }
    w->status = status;
    w->addr = status == DNS_OK ? dns_addr_rec_ref(r) : NULL;
    dns_ready_push(d, w);
}

static void
dns_mx_lookup_complete(struct dns_mx_lookup *lk, int status,
                       struct dns_mx_rec *r, bool cacheable)
{
    struct dns *d = lk->d;

    km_map_remove(d->mx_inflight, lk->key, NULL);
    if (cacheable && status != DNS_TEMPFAIL && status != KM_ECANCELED &&
        !d->closing) {
        dns_cache_put(d, d->mx_cache, &d->mx_sweep_at, lk->key, status,
                      lk->ttl_s, r, NULL);
    }
    while (lk->waiters != NULL) {
        struct dns_waiter *w = lk->waiters;

        lk->waiters = w->next;
        dns_ready_mx(d, w, status, r);
    }
    dns_mx_rec_unref(r);
    for (size_t i = 0; i < lk->n_hosts; i++) {
        free(lk->hosts[i].name);
        free(lk->hosts[i].addrs);
    }
    free(lk->hosts);
    free(lk->key);
    free(lk);
}

static void
dns_mx_host_done(struct dns_mx_lookup *lk)
{
    const char **names;
    size_t total = 0;
    struct dns_mx_rec *r;
    char *site;

    KM_ASSERT(lk->pending > 0);
    if (--lk->pending > 0) {
        return;
    }
    if (lk->canceled) {
        dns_mx_lookup_complete(lk, KM_ECANCELED, NULL, false);
        return;
    }
    for (size_t i = 0; i < lk->n_hosts; i++) {
        total += lk->hosts[i].n_addrs;
    }
    if (total == 0) {
        dns_mx_lookup_complete(
            lk, lk->any_tempfail ? DNS_TEMPFAIL : DNS_NO_ADDRESSES, NULL,
            !lk->any_tempfail);
        return;
    }
    /* The site name comes from the hosts in preference-then-name order,
     * as KumoMTA computes it, before any shuffling. */
    names = km_calloc(lk->n_hosts, sizeof(*names));
    for (size_t i = 0; i < lk->n_hosts; i++) {
        names[i] = lk->hosts[i].name;
    }
    site = dns_site_name(names, lk->n_hosts);
    free(names);
    r = dns_mx_rec_new(lk->key, site, false, lk->implicit, lk->hosts,
                       lk->n_hosts, lk->ttl_s);
    free(site);
    /* A host that failed temporarily may resolve next time: don't keep a
     * partial answer. */
    dns_mx_lookup_complete(lk, DNS_OK, r, !lk->any_tempfail);
}

static void
dns_mx_start_hosts(struct dns_mx_lookup *lk)
{
    struct dns *d = lk->d;

    lk->pending = lk->n_hosts + 1;
    for (size_t i = 0; i < lk->n_hosts; i++) {
        struct dns_mx_tmp *h = &lk->hosts[i];
        struct dns_addr a;
        struct dns_waiter *w;

        if (d->closing) {
            lk->canceled = true;
            lk->pending--;
            continue;
        }
        /* Some domains publish an IP address as the exchange (against
         * RFC 1035 3.3.9); KumoMTA uses it as is, and so do we. */
        if (dns_addr_from_text(h->name, AF_UNSPEC, &a) == 0) {
            h->addrs = km_memdup(&a, sizeof(a));
            h->n_addrs = 1;
            lk->pending--;
            continue;
        }
        w = dns_waiter_new(DNS_WAIT_MX_HOST);
        w->parent = lk;
        w->host_idx = i;
        dns_addr_want(d, km_strdup(h->name), w);
    }
    dns_mx_host_done(lk);
}

static void
dns_mx_implicit(struct dns_mx_lookup *lk)
{
    /* RFC 5321 5.1: without MX records the domain itself is the only
     * host, with preference 0. */
    lk->implicit = true;
    lk->n_hosts = 1;
    lk->hosts = km_calloc(1, sizeof(*lk->hosts));
    lk->hosts[0].name = km_strdup(lk->key);
    dns_mx_start_hosts(lk);
}

static void
dns_mx_on_answer(void *arg, int status, int timeouts, unsigned char *abuf,
                 int alen)
{
    struct dns_mx_lookup *lk = arg;
    struct dns_wire_ttls t;

    (void)timeouts;
    switch (status) {
    case ARES_SUCCESS:
        break;
    case ARES_ENODATA:
        lk->ttl_s = dns_negative_ttl(abuf, alen);
        dns_mx_implicit(lk);
        return;
    case ARES_ENOTFOUND:
        lk->ttl_s = dns_negative_ttl(abuf, alen);
        dns_mx_lookup_complete(lk, DNS_NXDOMAIN, NULL, true);
        return;
    default:
        dns_mx_lookup_complete(lk, dns_ares_status(status), NULL, false);
        return;
    }
    if (dns_wire_ttls(abuf, alen, &t) != 0 || !t.has_answer) {
        dns_mx_lookup_complete(lk, DNS_TEMPFAIL, NULL, false);
        return;
    }
    lk->ttl_s = t.answer_min;
    switch (dns_mx_parse(abuf, alen, &lk->hosts, &lk->n_hosts)) {
    case DNS_MX_HOSTS:
        dns_mx_start_hosts(lk);
        break;
    case DNS_MX_NONE:
        dns_mx_implicit(lk);
        break;
    case DNS_MX_NULL:
        dns_mx_lookup_complete(lk, DNS_NULL_MX, NULL, true);
        break;
    case DNS_MX_NO_NAMES:
        dns_mx_lookup_complete(lk, DNS_NO_ADDRESSES, NULL, true);
        break;
    case DNS_MX_BAD:
        dns_mx_lookup_complete(lk, DNS_TEMPFAIL, NULL, false);
        break;
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
