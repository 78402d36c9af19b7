/* test_dns.c - unit tests of the resolver: a real c-ares channel on the
 * test's own loop, pointed at a tiny DNS responder written here (UDP on
 * 127.0.0.1, answers from a static zone, counts the queries it sees).
 * Covers MX order and addresses, implicit MX, null MX, NXDOMAIN, SERVFAIL,
 * hosts without addresses, literals, the cache and its expiry, coalescing,
 * shuffling, and closing with a query outstanding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <uv.h>

#include "base/km.h"
#include "dns.h"

enum {
    DNS_TEST_T_A = 1,
    DNS_TEST_T_SOA = 6,
    DNS_TEST_T_MX = 15,
    DNS_TEST_T_AAAA = 28,
    DNS_TEST_RCODE_SERVFAIL = 2,
    DNS_TEST_RCODE_NXDOMAIN = 3,
    DNS_TEST_MAX_LOG = 256,
    DNS_TEST_MAX_HOSTS = 8,
    DNS_TEST_MAX_ADDRS = 4,
};

/* The zone the responder serves. A name listed here without a record of
 * the asked type gets NODATA; a name absent from both tables NXDOMAIN. */
struct dns_test_rr {
    const char *name;
    int type;
    uint32_t ttl;
    const char *data; /* address, or MX exchange ("." for null MX) */
    uint16_t pref;
};

static const struct dns_test_rr dns_test_zone[] = {
    {"two.test", DNS_TEST_T_MX, 300, "mx2.two.test", 20},
    {"two.test", DNS_TEST_T_MX, 600, "mx1.two.test", 10},
    {"mx1.two.test", DNS_TEST_T_A, 300, "127.0.0.10", 0},
    {"mx1.two.test", DNS_TEST_T_AAAA, 300, "::1", 0},
    {"mx2.two.test", DNS_TEST_T_A, 300, "127.0.0.11", 0},
    {"implicit.test", DNS_TEST_T_A, 120, "127.0.0.20", 0},
    {"null.test", DNS_TEST_T_MX, 300, ".", 0},
    {"noaddr.test", DNS_TEST_T_MX, 300, "gone.noaddr.test", 10},
    {"equal.test", DNS_TEST_T_MX, 300, "b.equal.test", 10},
    {"equal.test", DNS_TEST_T_MX, 300, "a.equal.test", 10},
    {"equal.test", DNS_TEST_T_MX, 300, "c.equal.test", 5},
    {"a.equal.test", DNS_TEST_T_A, 300, "127.0.0.41", 0},
    {"b.equal.test", DNS_TEST_T_A, 300, "127.0.0.42", 0},
    {"c.equal.test", DNS_TEST_T_A, 300, "127.0.0.43", 0},
    {"ttl1.test", DNS_TEST_T_MX, 1, "mx.ttl1.test", 10},
    {"mx.ttl1.test", DNS_TEST_T_A, 1, "127.0.0.30", 0},
};

/* Names answered with an error rcode; the SOA minimum rules the negative
 * TTL. "slow.test" is never answered. */
struct dns_test_rcode {
    const char *name;
    int rcode;
    uint32_t soa_min;
};

static const struct dns_test_rcode dns_test_rcodes[] = {
    {"fail.test", DNS_TEST_RCODE_SERVFAIL, 300},
    {"nx1.test", DNS_TEST_RCODE_NXDOMAIN, 1},
};

struct dns_test_query {
    char name[256];
    int type;
};

/* Fixture */

struct dns_test_fx {
    uv_loop_t loop;
    uv_udp_t udp;
    uv_timer_t deadline;
    bool expired;
    int port;
    char server[32];
    char rxbuf[2048];
    struct dns_test_query log[DNS_TEST_MAX_LOG];
    size_t n_log;
    struct dns *d;
    bool closed;
};

/* What a callback saw, copied (the result is borrowed). */
struct dns_test_got {
    bool done;
    int calls;
    int status;
    bool literal;
    bool implicit;
    uint32_t ttl;
    char site[256];
    char domain[256];
    size_t n_hosts;
    char names[DNS_TEST_MAX_HOSTS][64];
    unsigned prefs[DNS_TEST_MAX_HOSTS];
    size_t n_addrs[DNS_TEST_MAX_HOSTS];
    char addrs[DNS_TEST_MAX_HOSTS][DNS_TEST_MAX_ADDRS][INET6_ADDRSTRLEN];
    const struct dns_mx_result *kept; /* set when asked to keep a ref */
    bool keep;
};

static void
dns_test_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct dns_test_fx *fx = h->data;

    (void)hint;
    *b = uv_buf_init(fx->rxbuf, sizeof(fx->rxbuf));
}

static size_t
dns_test_put16(unsigned char *p, size_t off, unsigned v)
{
    p[off] = (unsigned char)(v >> 8);
    p[off + 1] = (unsigned char)v;
    return off + 2;
}

static size_t
dns_test_put32(unsigned char *p, size_t off, uint32_t v)
{
    off = dns_test_put16(p, off, v >> 16);
    return dns_test_put16(p, off, v & 0xffff);
}

/* Encode a dotted name (uncompressed); "." is the root. */
static size_t
dns_test_put_name(unsigned char *p, size_t off, const char *name)
{
    while (*name != '\0' && strcmp(name, ".") != 0) {
        const char *dot = strchr(name, '.');
        size_t n = dot != NULL ? (size_t)(dot - name) : strlen(name);

        p[off++] = (unsigned char)n;
        memcpy(p + off, name, n);
        off += n;
        name += n + (dot != NULL);
    }
    p[off++] = 0;
    return off;
}

/* A record header pointing at the question name (offset 12). */
static size_t
dns_test_put_rr(unsigned char *p, size_t off, int type, uint32_t ttl)
{
    off = dns_test_put16(p, off, 0xc00c);
    off = dns_test_put16(p, off, (unsigned)type);
    off = dns_test_put16(p, off, 1);
    return dns_test_put32(p, off, ttl);
}

static size_t
dns_test_put_soa(unsigned char *p, size_t off, uint32_t minimum)
{
    size_t rdlen_at;

    off = dns_test_put_rr(p, off, DNS_TEST_T_SOA, 3600);
    rdlen_at = off;
    off += 2;
    off = dns_test_put_name(p, off, "ns.test");
    off = dns_test_put_name(p, off, "hostmaster.test");
    off = dns_test_put32(p, off, 1);
    off = dns_test_put32(p, off, 3600);
    off = dns_test_put32(p, off, 600);
    off = dns_test_put32(p, off, 86400);
    off = dns_test_put32(p, off, minimum);
    dns_test_put16(p, rdlen_at, (unsigned)(off - rdlen_at - 2));
    return off;
}

/* Build the reply to a query; 0 means "do not answer". */
static size_t
dns_test_answer(struct dns_test_fx *fx, const unsigned char *q, size_t qlen,
                unsigned char *r)
{
    char name[256];
    size_t nlen = 0;
    size_t off = 12;
    size_t qend;
    size_t an = 0;
    size_t ns = 0;
    bool known = false;
    int rcode = 0;
    uint32_t soa_min = 300;
    int type;

    assert_true(qlen > 12);
    while (q[off] != 0) {
        size_t n = q[off++];

        assert_true(off + n < qlen && nlen + n + 1 < sizeof(name));
        if (nlen > 0) {
            name[nlen++] = '.';
        }
        for (size_t i = 0; i < n; i++) {
            char c = (char)q[off + i];

            name[nlen++] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
        }
        off += n;
    }
    name[nlen] = '\0';
    qend = off + 1 + 4;
    assert_true(qend <= qlen);
    type = q[off + 1] << 8 | q[off + 2];
    if (fx->n_log < DNS_TEST_MAX_LOG) {
        snprintf(fx->log[fx->n_log].name, sizeof(fx->log[0].name), "%s", name);
        fx->log[fx->n_log].type = type;
        fx->n_log++;
    }
    if (strcmp(name, "slow.test") == 0) {
        return 0;
    }

    memcpy(r, q, qend);
    off = qend;
    for (size_t i = 0; i < sizeof(dns_test_rcodes) / sizeof(*dns_test_rcodes);
         i++) {
        if (strcmp(dns_test_rcodes[i].name, name) == 0) {
            rcode = dns_test_rcodes[i].rcode;
            soa_min = dns_test_rcodes[i].soa_min;
            known = true;
        }
    }
    for (size_t i = 0;
         rcode == 0 && i < sizeof(dns_test_zone) / sizeof(*dns_test_zone);
         i++) {
        const struct dns_test_rr *rr = &dns_test_zone[i];
        size_t rdlen_at;

        if (strcmp(rr->name, name) != 0) {
            continue;
        }
        known = true;
        if (rr->type != type) {
            continue;
        }
        off = dns_test_put_rr(r, off, rr->type, rr->ttl);
        rdlen_at = off;
        off += 2;
        if (type == DNS_TEST_T_MX) {
            off = dns_test_put16(r, off, rr->pref);
            off = dns_test_put_name(r, off, rr->data);
        } else {
            int fam = type == DNS_TEST_T_A ? AF_INET : AF_INET6;

            assert_int_equal(inet_pton(fam, rr->data, r + off), 1);
            off += type == DNS_TEST_T_A ? 4 : 16;
        }
        dns_test_put16(r, rdlen_at, (unsigned)(off - rdlen_at - 2));
        an++;
    }
    if (!known) {
        rcode = DNS_TEST_RCODE_NXDOMAIN;
    }
    if (an == 0 && rcode != DNS_TEST_RCODE_SERVFAIL) {
        off = dns_test_put_soa(r, off, soa_min);
        ns = 1;
    }
    /* QR, AA, RD copied, RA, rcode; one question, no additional. */
    r[2] = (unsigned char)(0x84 | (q[2] & 0x01));
    r[3] = (unsigned char)(0x80 | rcode);
    dns_test_put16(r, 6, (unsigned)an);
    dns_test_put16(r, 8, (unsigned)ns);
    dns_test_put16(r, 10, 0);
    return off;
}

static void
dns_test_on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *b,
                 const struct sockaddr *from, unsigned flags)
{
    struct dns_test_fx *fx = h->data;
    unsigned char reply[2048];
    size_t n;
    uv_buf_t out;

    (void)flags;
    if (nread <= 0 || from == NULL) {
        return;
    }
    n = dns_test_answer(fx, (const unsigned char *)b->base, (size_t)nread,
                        reply);
    if (n == 0) {
        return;
    }
    out = uv_buf_init((char *)reply, (unsigned)n);
    assert_int_equal(uv_udp_try_send(h, &out, 1, from), (int)n);
}

static void
dns_test_on_deadline(uv_timer_t *t)
{
    struct dns_test_fx *fx = t->data;

    fx->expired = true;
}

static int
dns_test_setup(void **state)
{
    struct dns_test_fx *fx = calloc(1, sizeof(*fx));
    struct dns_options opts = {
        .timeout_ms = 1000, .attempts = 2, .no_shuffle = true};
    const char *servers[1];
    struct sockaddr_in sin;
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    assert_non_null(fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    assert_int_equal(uv_udp_init(&fx->loop, &fx->udp), 0);
    fx->udp.data = fx;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sin), 0);
    assert_int_equal(uv_udp_bind(&fx->udp, (struct sockaddr *)&sin, 0), 0);
    assert_int_equal(uv_udp_getsockname(&fx->udp, (struct sockaddr *)&ss, &len),
                     0);
    fx->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    assert_int_equal(
        uv_udp_recv_start(&fx->udp, dns_test_on_alloc, dns_test_on_recv), 0);
    assert_int_equal(uv_timer_init(&fx->loop, &fx->deadline), 0);
    fx->deadline.data = fx;
    snprintf(fx->server, sizeof(fx->server), "127.0.0.1:%d", fx->port);
    servers[0] = fx->server;
    assert_int_equal(
        dns_open_with_options(&fx->loop, servers, 1, &opts, &fx->d), 0);
    *state = fx;
    return 0;
}

static void
dns_test_on_closed(void *arg)
{
    bool *closed = arg;

    *closed = true;
}

/* Helpers */

/* Run the loop until *flag is set or ms have passed; true if set. */
static bool
dns_test_run_until(struct dns_test_fx *fx, const bool *flag, uint64_t ms)
{
    fx->expired = false;
    uv_timer_start(&fx->deadline, dns_test_on_deadline, ms, 0);
    while (!*flag && !fx->expired) {
        uv_run(&fx->loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&fx->deadline);
    return *flag;
}

static void
dns_test_close_dns(struct dns_test_fx *fx)
{
    if (!fx->closed) {
        dns_close(fx->d, dns_test_on_closed, &fx->closed);
    }
    assert_true(dns_test_run_until(fx, &fx->closed, 5000));
}

static int
dns_test_teardown(void **state)
{
    struct dns_test_fx *fx = *state;
    int rv;

    dns_test_close_dns(fx);
    uv_close((uv_handle_t *)&fx->udp, NULL);
    uv_close((uv_handle_t *)&fx->deadline, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    rv = uv_loop_close(&fx->loop);
    free(fx);
    return rv == 0 ? 0 : -1;
}

static size_t
dns_test_count(const struct dns_test_fx *fx, const char *name, int type)
{
    size_t n = 0;

    for (size_t i = 0; i < fx->n_log; i++) {
        n += strcmp(fx->log[i].name, name) == 0 && fx->log[i].type == type;
    }
    return n;
}

static void
dns_test_on_mx(void *arg, int status, const struct dns_mx_result *mx)
{
    struct dns_test_got *g = arg;

    g->done = true;
    g->calls++;
    g->status = status;
    if (mx == NULL) {
        return;
    }
    assert_int_equal(status, DNS_OK);
    g->literal = mx->is_domain_literal;
    g->implicit = mx->is_implicit_mx;
    g->ttl = mx->ttl_s;
    snprintf(g->site, sizeof(g->site), "%s", mx->site_name);
    snprintf(g->domain, sizeof(g->domain), "%s", mx->domain);
    assert_true(mx->n_hosts <= DNS_TEST_MAX_HOSTS);
    g->n_hosts = mx->n_hosts;
    for (size_t i = 0; i < mx->n_hosts; i++) {
        const struct dns_host *h = &mx->hosts[i];

        snprintf(g->names[i], sizeof(g->names[i]), "%s", h->name);
        g->prefs[i] = h->pref;
        assert_true(h->n_addrs <= DNS_TEST_MAX_ADDRS);
        g->n_addrs[i] = h->n_addrs;
        for (size_t j = 0; j < h->n_addrs; j++) {
            assert_int_equal(h->addrs[j].sa.ss_family, h->addrs[j].family);
            snprintf(g->addrs[i][j], sizeof(g->addrs[i][j]), "%s",
                     h->addrs[j].text);
        }
    }
    if (g->keep) {
        g->kept = dns_mx_result_ref(mx);
    }
}

/* Resolve domain and run the loop until the callback has run. */
static void
dns_test_mx(struct dns_test_fx *fx, const char *domain, struct dns_test_got *g)
{
    assert_int_equal(dns_resolve_mx(fx->d, domain, dns_test_on_mx, g), 0);
    /* Never called back before dns_resolve_mx returns. */
    assert_int_equal(g->calls, 0);
    assert_true(dns_test_run_until(fx, &g->done, 5000));
    assert_int_equal(g->calls, 1);
}

struct dns_test_addr_got {
    bool done;
    int calls;
    int status;
    size_t n;
    char addrs[DNS_TEST_MAX_ADDRS][INET6_ADDRSTRLEN];
};

static void
dns_test_on_addr(void *arg, int status, const struct dns_addr_result *res)
{
    struct dns_test_addr_got *g = arg;

    g->done = true;
    g->calls++;
    g->status = status;
    if (res == NULL) {
        return;
    }
    assert_true(res->n_addrs <= DNS_TEST_MAX_ADDRS);
    g->n = res->n_addrs;
    for (size_t i = 0; i < res->n_addrs; i++) {
        snprintf(g->addrs[i], sizeof(g->addrs[i]), "%s", res->addrs[i].text);
    }
}

static void
dns_test_addr(struct dns_test_fx *fx, const char *host,
              struct dns_test_addr_got *g)
{
    assert_int_equal(dns_resolve_addr(fx->d, host, dns_test_on_addr, g), 0);
    assert_int_equal(g->calls, 0);
    assert_true(dns_test_run_until(fx, &g->done, 5000));
    assert_int_equal(g->calls, 1);
}

/* Tests */

static void
dns_mx_with_two_hosts_lists_them_by_preference_with_addresses(void **state)
{
    struct dns_test_fx *fx = *state;
    struct dns_test_got g = {0};

    dns_test_mx(fx, "two.test", &g);
    assert_int_equal(g.status, DNS_OK);
    assert_false(g.literal);
    assert_false(g.implicit);
    assert_string_equal(g.domain, "two.test");
    assert_string_equal(g.site, "(mx1|mx2).two.test");
    assert_int_equal(g.n_hosts, 2);
    assert_string_equal(g.names[0], "mx1.two.test");
    assert_int_equal(g.prefs[0], 10);
    assert_int_equal(g.n_addrs[0], 2);
    assert_string_equal(g.addrs[0][0], "127.0.0.10");
    assert_string_equal(g.addrs[0][1], "::1");
    assert_string_equal(g.names[1], "mx2.two.test");
    assert_int_equal(g.prefs[1], 20);
    assert_int_equal(g.n_addrs[1], 1);
    assert_string_equal(g.addrs[1][0], "127.0.0.11");
    /* The smallest TTL of the records used: MX 300/600, A 300, and the
     * SOA minimum (300) of mx2's AAAA NODATA. */
    assert_int_equal(g.ttl, 300);
}

static void
dns_domain_without_mx_uses_its_own_address(void **state)
{
    struct dns_test_fx *fx = *state;
    struct dns_test_got g = {0};

    dns_test_mx(fx, "implicit.test", &g);
    assert_int_equal(g.status, DNS_OK);
    assert_true(g.implicit);
    assert_string_equal(g.site, "implicit.test");
    assert_int_equal(g.n_hosts, 1);
    assert_string_equal(g.names[0], "implicit.test");
    assert_int_equal(g.prefs[0], 0);
    assert_int_equal(g.n_addrs[0], 1);
    assert_string_equal(g.addrs[0][0], "127.0.0.20");
    assert_int_equal(g.ttl, 120);
}

static void
dns_null_mx_reports_null_mx(void **state)
{
    struct dns_test_fx *fx = *state;
    struct dns_test_got g = {0};

    dns_test_mx(fx, "null.test", &g);
    assert_int_equal(g.status, DNS_NULL_MX);
    assert_int_equal(g.n_hosts, 0);
    /* A null MX is final: no address query follows. */
    assert_int_equal(fx->n_log, 1);
}

static void
dns_nxdomain_reports_nxdomain_and_is_cached(void **state)
{
    struct dns_test_fx *fx = *state;
    struct dns_test_got g = {0};
    struct dns_test_got again = {0};

    dns_test_mx(fx, "nx.test", &g);
    assert_int_equal(g.status, DNS_NXDOMAIN);
    dns_test_mx(fx, "nx.test", &again);
    assert_int_equal(again.status, DNS_NXDOMAIN);
    assert_int_equal(dns_test_count(fx, "nx.test", DNS_TEST_T_MX), 1);
}

static void
dns_servfail_reports_tempfail_and_is_not_cached(void **state)
{
    struct dns_test_fx *fx = *state;
    struct dns_test_got g = {0};
    struct dns_test_got again = {0};
    size_t first;

    dns_test_mx(fx, "fail.test", &g);
    assert_int_equal(g.status, DNS_TEMPFAIL);
    first = dns_test_count(fx, "fail.test", DNS_TEST_T_MX);
    assert_true(first >= 1);
    dns_test_mx(fx, "fail.test", &again);
    assert_int_equal(again.status, DNS_TEMPFAIL);
    assert_true(dns_test_count(fx, "fail.test", DNS_TEST_T_MX) > first);
}

static void
dns_mx_host_without_address_reports_no_addresses(void **state)
{
    struct dns_test_fx *fx = *state;
    struct dns_test_got g = {0};

    dns_test_mx(fx, "noaddr.test", &g);
    assert_int_equal(g.status, DNS_NO_ADDRESSES);
    assert_int_equal(dns_test_count(fx, "gone.noaddr.test", DNS_TEST_T_A), 1);
}

static void
dns_domain_literal_resolves_without_a_query(void **state)
{
    struct dns_test_fx *fx = *state;
    struct dns_test_got v4 = {0};
    struct dns_test_got v6 = {0};
    struct dns_test_got unused = {0};

    dns_test_mx(fx, "[127.0.0.1]", &v4);
    assert_int_equal(v4.status, DNS_OK);
    assert_true(v4.literal);
    assert_string_equal(v4.domain, "[127.0.0.1]");
    assert_string_equal(v4.site, "127.0.0.1");
    assert_int_equal(v4.n_hosts, 1);
    assert_string_equal(v4.names[0], "127.0.0.1");
    assert_string_equal(v4.addrs[0][0], "127.0.0.1");

    dns_test_mx(fx, "[IPv6:::1]", &v6);
    assert_int_equal(v6.status, DNS_OK);
    assert_string_equal(v6.site, "::1");
    assert_string_equal(v6.addrs[0][0], "::1");

    assert_int_equal(
        dns_resolve_mx(fx->d, "[not-an-ip]", dns_test_on_mx, &unused),
        KM_EINVAL);
    assert_int_equal(dns_resolve_mx(fx->d, "a..test", dns_test_on_mx, &unused),
                     KM_EINVAL);
    assert_int_equal(fx->n_log, 0);
    assert_int_equal(unused.calls, 0);
}

static void
dns_second_lookup_within_ttl_sends_no_query(void **state)
{
    struct dns_test_fx *fx = *state;
    struct dns_test_got g = {0};
    struct dns_test_got again = {0};
    size_t queries;

    dns_test_mx(fx, "two.test", &g);
    queries = fx->n_log;
    assert_true(queries >= 4); /* MX, then A and AAAA of both hosts */
    dns_test_mx(fx, "Two.Test.", &again);
    assert_int_equal(again.status, DNS_OK);
    assert_int_equal(fx->n_log, queries);
    assert_string_equal(again.site, g.site);
    assert_int_equal(again.n_hosts, 2);
    assert_string_equal(again.addrs[0][0], "127.0.0.10");
}

static void
dns_cache_entries_expire_after_their_ttl(void **state)
{
    struct dns_test_fx *fx = *state;
    struct dns_test_got g[4] = {0};
    bool never = false;

    dns_test_mx(fx, "ttl1.test", &g[0]);
    assert_int_equal(g[0].status, DNS_OK);
    assert_int_equal(g[0].ttl, 1);
    dns_test_mx(fx, "nx1.test", &g[1]);
    assert_int_equal(g[1].status, DNS_NXDOMAIN);
    assert_int_equal(dns_test_count(fx, "ttl1.test", DNS_TEST_T_MX), 1);
    assert_int_equal(dns_test_count(fx, "nx1.test", DNS_TEST_T_MX), 1);

    /* TTL 1 s (positive) and SOA minimum 1 s (negative). */
    dns_test_run_until(fx, &never, 1100);

    dns_test_mx(fx, "ttl1.test", &g[2]);
    assert_int_equal(g[2].status, DNS_OK);
    dns_test_mx(fx, "nx1.test", &g[3]);
    assert_int_equal(g[3].status, DNS_NXDOMAIN);
    assert_int_equal(dns_test_count(fx, "ttl1.test", DNS_TEST_T_MX), 2);
    assert_int_equal(dns_test_count(fx, "mx.ttl1.test", DNS_TEST_T_A), 2);
    assert_int_equal(dns_test_count(fx, "nx1.test", DNS_TEST_T_MX), 2);
}

static void
dns_concurrent_lookups_share_one_query(void **state)
{
    struct dns_test_fx *fx = *state;
    struct dns_test_got g[3] = {0};
    struct dns_test_addr_got a = {0};

    assert_int_equal(dns_resolve_mx(fx->d, "two.test", dns_test_on_mx, &g[0]),
                     0);
    assert_int_equal(dns_resolve_mx(fx->d, "TWO.test.", dns_test_on_mx, &g[1]),
                     0);
    assert_int_equal(dns_resolve_mx(fx->d, "two.test", dns_test_on_mx, &g[2]),
                     0);
    assert_int_equal(
        dns_resolve_addr(fx->d, "mx1.two.test", dns_test_on_addr, &a), 0);
    assert_true(dns_test_run_until(fx, &g[2].done, 5000));
    assert_true(dns_test_run_until(fx, &a.done, 5000));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(g[i].calls, 1);
        assert_int_equal(g[i].status, DNS_OK);
        assert_int_equal(g[i].n_hosts, 2);
    }
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.n, 2);
    assert_int_equal(dns_test_count(fx, "two.test", DNS_TEST_T_MX), 1);
    assert_int_equal(dns_test_count(fx, "mx1.two.test", DNS_TEST_T_A), 1);
    assert_int_equal(dns_test_count(fx, "mx1.two.test", DNS_TEST_T_AAAA), 1);
}

static void
dns_resolve_addr_returns_a_then_aaaa(void **state)
{
    struct dns_test_fx *fx = *state;
    struct dns_test_addr_got both = {0};
    struct dns_test_addr_got gone = {0};
    struct dns_test_addr_got ip = {0};
    struct dns_test_addr_got bracketed = {0};

    dns_test_addr(fx, "mx1.two.test", &both);
    assert_int_equal(both.status, DNS_OK);
    assert_int_equal(both.n, 2);
    assert_string_equal(both.addrs[0], "127.0.0.10");
    assert_string_equal(both.addrs[1], "::1");

    dns_test_addr(fx, "gone.noaddr.test", &gone);
    assert_int_equal(gone.status, DNS_NXDOMAIN);

    dns_test_addr(fx, "127.0.0.1", &ip);
    assert_int_equal(ip.status, DNS_OK);
    assert_string_equal(ip.addrs[0], "127.0.0.1");
    dns_test_addr(fx, "[IPv6:::1]", &bracketed);
    assert_string_equal(bracketed.addrs[0], "::1");
    assert_int_equal(dns_test_count(fx, "127.0.0.1", DNS_TEST_T_A), 0);
}

static void
dns_equal_preference_hosts_keep_name_order_without_shuffle(void **state)
{
    struct dns_test_fx *fx = *state;
    struct dns_test_got g = {0};

    dns_test_mx(fx, "equal.test", &g);
    assert_int_equal(g.status, DNS_OK);
    assert_int_equal(g.n_hosts, 3);
    assert_string_equal(g.names[0], "c.equal.test");
    assert_string_equal(g.names[1], "a.equal.test");
    assert_string_equal(g.names[2], "b.equal.test");
    assert_string_equal(g.site, "(c|a|b).equal.test");
}

static void
dns_equal_preference_hosts_are_shuffled_when_enabled(void **state)
{
    struct dns_test_fx *fx = *state;
    const char *servers[] = {fx->server};
    struct dns *shuffling;
    bool saw_a_first = false;
    bool saw_b_first = false;
    bool closed = false;

    assert_int_equal(dns_open(&fx->loop, servers, 1, &shuffling), 0);
    for (int i = 0; i < 40; i++) {
        struct dns_test_got g = {0};

        assert_int_equal(
            dns_resolve_mx(shuffling, "equal.test", dns_test_on_mx, &g), 0);
        assert_true(dns_test_run_until(fx, &g.done, 5000));
        assert_int_equal(g.status, DNS_OK);
        assert_int_equal(g.n_hosts, 3);
        /* Preference still rules: only the two at 10 trade places, and the
         * site name does not depend on the order. */
        assert_string_equal(g.names[0], "c.equal.test");
        assert_string_equal(g.site, "(c|a|b).equal.test");
        saw_a_first = saw_a_first || strcmp(g.names[1], "a.equal.test") == 0;
        saw_b_first = saw_b_first || strcmp(g.names[1], "b.equal.test") == 0;
    }
    assert_true(saw_a_first && saw_b_first);
    dns_close(shuffling, dns_test_on_closed, &closed);
    assert_true(dns_test_run_until(fx, &closed, 5000));
}

static void
dns_result_can_be_kept_with_a_reference(void **state)
{
    struct dns_test_fx *fx = *state;
    struct dns_test_got g = {.keep = true};

    dns_test_mx(fx, "two.test", &g);
    assert_non_null(g.kept);
    /* Still valid after the callback and after the resolver is gone. */
    dns_test_close_dns(fx);
    assert_string_equal(g.kept->site_name, "(mx1|mx2).two.test");
    assert_string_equal(g.kept->hosts[1].addrs[0].text, "127.0.0.11");
    dns_mx_result_unref(g.kept);
}

static void
dns_close_with_outstanding_query_calls_back_canceled(void **state)
{
    struct dns_test_fx *fx = *state;
    struct dns_test_got g = {0};
    struct dns_test_got late = {0};
    struct dns_test_addr_got a = {0};
    bool never = false;

    assert_int_equal(dns_resolve_mx(fx->d, "slow.test", dns_test_on_mx, &g), 0);
    assert_int_equal(dns_resolve_addr(fx->d, "slow.test", dns_test_on_addr, &a),
                     0);
    for (int i = 0; i < 100 && fx->n_log < 3; i++) {
        dns_test_run_until(fx, &never, 20);
    }
    assert_int_equal(dns_test_count(fx, "slow.test", DNS_TEST_T_MX), 1);
    assert_int_equal(g.calls, 0);

    dns_close(fx->d, dns_test_on_closed, &fx->closed);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.status, KM_ECANCELED);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, KM_ECANCELED);
    assert_int_equal(dns_resolve_mx(fx->d, "two.test", dns_test_on_mx, &late),
                     KM_ECLOSING);
    assert_false(fx->closed);
    assert_true(dns_test_run_until(fx, &fx->closed, 5000));
    assert_int_equal(late.calls, 0);
}

static void
dns_open_rejects_a_bad_server(void **state)
{
    struct dns_test_fx *fx = *state;
    const char *servers[] = {"127.0.0.1:53", "resolver.example"};
    struct dns *d = NULL;

    assert_int_equal(dns_open(&fx->loop, servers, 2, &d), KM_ECONFIG);
    assert_null(d);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define DNS_TEST(f)                                                            \
    cmocka_unit_test_setup_teardown(f, dns_test_setup, dns_test_teardown)
        DNS_TEST(dns_mx_with_two_hosts_lists_them_by_preference_with_addresses),
        DNS_TEST(dns_domain_without_mx_uses_its_own_address),
        DNS_TEST(dns_null_mx_reports_null_mx),
        DNS_TEST(dns_nxdomain_reports_nxdomain_and_is_cached),
        DNS_TEST(dns_servfail_reports_tempfail_and_is_not_cached),
        DNS_TEST(dns_mx_host_without_address_reports_no_addresses),
        DNS_TEST(dns_domain_literal_resolves_without_a_query),
        DNS_TEST(dns_second_lookup_within_ttl_sends_no_query),
        DNS_TEST(dns_cache_entries_expire_after_their_ttl),
        DNS_TEST(dns_concurrent_lookups_share_one_query),
        DNS_TEST(dns_resolve_addr_returns_a_then_aaaa),
        DNS_TEST(dns_equal_preference_hosts_keep_name_order_without_shuffle),
        DNS_TEST(dns_equal_preference_hosts_are_shuffled_when_enabled),
        DNS_TEST(dns_result_can_be_kept_with_a_reference),
        DNS_TEST(dns_close_with_outstanding_query_calls_back_canceled),
        DNS_TEST(dns_open_rejects_a_bad_server),
#undef DNS_TEST
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
