/* dns_lookup.c - the resolver's lookups: the A and AAAA queries of one
 * name (coalesced, cached, both families parsed from the raw answers) and
 * MX lookups with the addresses of their hosts, implicit MX included.
 * The channel, its loop handles, the ready queue and the cache are dns.c.
 * Loop thread only. */
#include "base/buf.h"
#include "base/km.h"
#include "base/km_map.h"
#include "base/log.h"
#include "dns.h"
#include "dns_int.h"
#include <ares.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <uv.h>

static void dns_mx_host_done(struct dns_mx_lookup *lk);

/* Address lookups (A and AAAA of one name) */

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
void
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

void
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

void
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
