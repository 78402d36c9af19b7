/* dns_int.h - declarations shared by dns.c (the resolver: c-ares, loop
 * handles, cache, lookups) and dns_site.c (the pure parts: names, site
 * names, literals, result records, reply TTLs, server specs). Not for use
 * outside the dns module. */
#ifndef KUMO_DNS_INT_H
#define KUMO_DNS_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ares.h>
#include <uv.h>

#include "dns.h"

struct buf;

/* Longest name we accept, without the trailing dot (RFC 1035 2.3.4). */
#define DNS_NAME_MAX  253
#define DNS_LABEL_MAX 63

/* RFC 1035 3.2.2 / 3.2.4 and RFC 3596. */
enum {
    DNS_CLASS_IN = 1,
    DNS_TYPE_A = 1,
    DNS_TYPE_SOA = 6,
    DNS_TYPE_MX = 15,
    DNS_TYPE_AAAA = 28,
};

/* Cache lifetimes are clamped to this range (seconds). */
#define DNS_TTL_MIN_S 1
#define DNS_TTL_MAX_S 3600

/* The private record around a public result (see DNS_CONTAINER). */
#define DNS_CONTAINER(ptr, type, member)                                       \
    ((type *)(uintptr_t)((const char *)(ptr)-offsetof(type, member)))

/* A result and its storage. A base record holds hosts, addresses and
 * strings in the same allocation; a shuffled copy holds its own host
 * array and a reference on the base that owns the rest. */
struct dns_mx_rec {
    unsigned refs;
    struct dns_mx_rec *base;
    struct dns_mx_result pub;
};

struct dns_addr_rec {
    unsigned refs;
    struct dns_addr_result pub;
};

/* A host of an MX lookup in progress (owned by the lookup). */
struct dns_mx_tmp {
    char *name;
    uint16_t pref;
    size_t n_addrs;
    struct dns_addr *addrs;
};

/* TTLs found in a reply. */
struct dns_wire_ttls {
    bool has_answer;
    uint32_t answer_min; /* smallest TTL in the answer section */
    bool has_soa;
    uint32_t negative; /* RFC 2308 5: min(SOA TTL, SOA MINIMUM) */
};

/* Normalise a host or domain name: lowercase ASCII, one trailing dot
 * removed. Rejects (NULL) empty names, empty labels, labels over 63 or
 * names over 253 octets, and bytes that are controls, spaces or '\\'.
 * The caller owns the returned string. */
char *dns_name_normalize(const char *name);

/* Parse an IPv4 or IPv6 address in text form (no brackets) into *out
 * (port 0, canonical `text`). `family` AF_INET or AF_INET6 restricts it,
 * AF_UNSPEC takes either. 0 or KM_EINVAL. */
int dns_addr_from_text(const char *ip, int family, struct dns_addr *out);

/* `ttl_s` clamped to DNS_TTL_MIN_S .. DNS_TTL_MAX_S. */
uint32_t dns_ttl_clamp(uint32_t ttl_s);

/* A new base record with one reference, copying everything it is given
 * (hosts in the order given). */
struct dns_mx_rec *dns_mx_rec_new(const char *domain, const char *site_name,
                                  bool literal, bool implicit,
                                  const struct dns_mx_tmp *hosts, size_t n,
                                  uint32_t ttl_s);
struct dns_mx_rec *dns_mx_rec_ref(struct dns_mx_rec *r);
/* NULL does nothing. */
void dns_mx_rec_unref(struct dns_mx_rec *r);

/* The record to hand to one caller, with a reference the caller owns.
 * With `shuffle`, hosts of equal preference are put in a random order
 * (KumoMTA randomises within a preference so that equal MX hosts share
 * the load), in a copy per caller; `rng` is the xorshift state. */
struct dns_mx_rec *dns_mx_rec_for_caller(struct dns_mx_rec *r, bool shuffle,
                                         uint64_t *rng);

/* A new address record with one reference: a4 then a6. */
struct dns_addr_rec *dns_addr_rec_new(const char *name,
                                      const struct dns_addr *a4, size_t n4,
                                      const struct dns_addr *a6, size_t n6,
                                      uint32_t ttl_s);
struct dns_addr_rec *dns_addr_rec_ref(struct dns_addr_rec *r);
/* NULL does nothing. */
void dns_addr_rec_unref(struct dns_addr_rec *r);

/* Scan a DNS reply for the answers' minimum TTL and the negative TTL of
 * its SOA (RFC 2181 8: TTLs with the top bit set count as 0). 0, or
 * KM_EPROTO for a truncated or malformed reply (m may be NULL). */
int dns_wire_ttls(const unsigned char *m, int len, struct dns_wire_ttls *out);

enum dns_mx_parsed {
    DNS_MX_HOSTS,    /* *out filled */
    DNS_MX_NONE,     /* answers, but no MX among them (a CNAME): NODATA */
    DNS_MX_NULL,     /* RFC 7505 null MX */
    DNS_MX_NO_NAMES, /* MX records, but no usable exchange name */
    DNS_MX_BAD,      /* unparsable answer */
};

/* Parse an MX answer (RCODE NOERROR, answers present) into hosts sorted
 * by preference then name, KumoMTA's order, which its site names depend
 * on; each name once, at its best preference. On DNS_MX_HOSTS and
 * DNS_MX_NO_NAMES *out is an array the caller frees (with its names). */
enum dns_mx_parsed dns_mx_parse(const unsigned char *abuf, int alen,
                                struct dns_mx_tmp **out, size_t *n_out);

/* Append one server spec ("ip", "ip:port", "[ipv6]:port", bare IPv6) to
 * csv in c-ares's "host:port" CSV syntax. 0 or KM_ECONFIG. */
int dns_server_to_csv(const char *spec, struct buf *csv);
/* Shared by dns.c and dns_lookup.c. */
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

void dns_query(struct dns *d, const char *name, int type, ares_callback cb,
               void *arg);
void dns_ready_push(struct dns *d, struct dns_waiter *w);
void dns_ready_mx(struct dns *d, struct dns_waiter *w, int status,
                  struct dns_mx_rec *r);
struct dns_waiter *dns_waiter_new(enum dns_waiter_kind kind);
struct dns_cache_entry *dns_cache_get(struct dns *d, struct km_map *cache,
                                      const char *key);
void dns_cache_put(struct dns *d, struct km_map *cache, size_t *sweep_at,
                   const char *key, int status, uint32_t ttl_s,
                   struct dns_mx_rec *mx, struct dns_addr_rec *addr);
void dns_addr_want(struct dns *d, char *key, struct dns_waiter *w);
void dns_addr_notify(struct dns *d, struct dns_waiter *w, int status,
                     struct dns_addr_rec *r, uint32_t ttl_s);
void dns_mx_on_answer(void *arg, int status, int timeouts, unsigned char *abuf,
                      int alen);
uint32_t dns_negative_ttl(const unsigned char *abuf, int alen);
int dns_ares_status(int status);
#endif /* KUMO_DNS_INT_H */
