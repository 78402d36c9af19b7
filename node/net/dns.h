/* dns.h - name resolution for outbound delivery: MX resolution (RFC 5321
 * 5.1 with implicit MX and RFC 7505 null MX), A/AAAA lookups, a TTL cache
 * with coalescing of concurrent lookups, and KumoMTA's site names. c-ares
 * runs on the caller's libuv loop (its sockets are uv_poll_t handles), so
 * every callback runs on the loop thread. This module decides nothing about
 * delivery: prohibited/skipped hosts and reply codes are the caller's. Loop
 * thread only; the site-name functions are pure and thread-safe. */
#ifndef KUMO_DNS_H
#define KUMO_DNS_H
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

struct dns; /* opaque */

/* Outcome of a lookup, passed as the callback's `status`. Non-negative
 * values are these; negative values are KM_E* codes (KM_ECANCELED when
 * dns_close() cancelled the lookup). */
enum dns_status {
    DNS_OK = 0,
    /* RFC 7505 null MX ("." exchange): the domain accepts no mail. The
     * caller bounces with `556 5.1.10 Recipient address has a null MX`. */
    DNS_NULL_MX = 1,
    /* The domain (or, for dns_resolve_addr, the host) does not exist. */
    DNS_NXDOMAIN = 2,
    /* The MX hosts (or the implicit MX) have no A or AAAA record at all.
     * The caller tempfails (`451 4.4.4`). */
    DNS_NO_ADDRESSES = 3,
    /* SERVFAIL, REFUSED, timeout or a bad answer: try again later. */
    DNS_TEMPFAIL = 4,
};

/* One address of a host. */
struct dns_addr {
    int family;                  /* AF_INET or AF_INET6 */
    char text[INET6_ADDRSTRLEN]; /* "127.0.0.1", "::1" */
    struct sockaddr_storage sa;  /* port 0: the caller sets the port */
};

/* One mail exchanger with its addresses (A records first, then AAAA). */
struct dns_host {
    const char *name; /* lowercase, no trailing dot; the IP for a literal */
    uint16_t pref;    /* MX preference; 0 for implicit MX and literals */
    size_t n_addrs;   /* may be 0: the host did not resolve */
    const struct dns_addr *addrs;
};

/* The result of an MX resolution. Immutable and reference-counted: the
 * pointer passed to a dns_mx_cb is borrowed for the call; a caller that
 * keeps it takes a reference with dns_mx_result_ref(). */
struct dns_mx_result {
    const char *domain;     /* lowercase, no trailing dot; a literal as given */
    const char *site_name;  /* dns_site_name() of the MX hosts, or the IP */
    bool is_domain_literal; /* "[1.2.3.4]" / "[IPv6:...]": no DNS used */
    bool is_implicit_mx;    /* no MX records: the domain's own address */
    size_t n_hosts;
    /* Ordered by preference (lowest first); hosts of equal preference are
     * shuffled for each callback unless dns_options.no_shuffle is set, in which
     * case they are in name order. Duplicate MX names are listed once. */
    const struct dns_host *hosts;
    uint32_t ttl_s; /* minimum TTL of the records used, 1..3600 (as
                     * answered, not the time left in the cache) */
};

/* The A and AAAA addresses of one host name; reference-counted like
 * struct dns_mx_result. */
struct dns_addr_result {
    const char *name;             /* lowercase, no trailing dot */
    size_t n_addrs;               /* > 0 when the status is DNS_OK */
    const struct dns_addr *addrs; /* A records first, then AAAA */
    uint32_t ttl_s;
};

/* `mx` is non-NULL only when status is DNS_OK; borrowed for the call. */
typedef void (*dns_mx_cb)(void *arg, int status,
                          const struct dns_mx_result *mx);
/* `res` is non-NULL only when status is DNS_OK; borrowed for the call. */
typedef void (*dns_addr_cb)(void *arg, int status,
                            const struct dns_addr_result *res);
typedef void (*dns_close_cb)(void *arg);

/* Resolver settings (kumo.dns.configure_resolver{options=...}). Zero
 * fields take the defaults. */
struct dns_options {
    uint32_t timeout_ms; /* per try; default 2000 */
    unsigned attempts;   /* tries per server; default 2 */
    /* Keep equal-preference MX hosts in name order (deterministic tests). */
    bool no_shuffle;
};

/* Open a resolver on `loop`. `servers` are name servers as "ip", "ip:port"
 * or "[ipv6]:port" (port 53 by default); with n_servers 0 the system
 * configuration (/etc/resolv.conf) is used. Calls ares_library_init()
 * (process-wide and counted by c-ares; dns_close() releases it). On
 * success *out holds a new resolver that the caller owns and releases
 * with dns_close(). KM_ECONFIG for a bad server (dns_check_servers() names
 * it), KM_EIO if c-ares cannot start. */
int dns_open(uv_loop_t *loop, const char *const *servers, size_t n_servers,
             struct dns **out);

/* dns_open() with options (NULL for the defaults). */
int dns_open_with_options(uv_loop_t *loop, const char *const *servers,
                          size_t n_servers, const struct dns_options *opts,
                          struct dns **out);

/* Validate server specs as dns_open() does. 0, or KM_ECONFIG with the index
 * of the first bad one in *bad_index, so that the caller can name it. */
int dns_check_servers(const char *const *servers, size_t n_servers,
                      size_t *bad_index);

/* Cancel every outstanding lookup (their callbacks run with KM_ECANCELED
 * before dns_close returns; callbacks of already completed lookups run
 * with their result), close the loop handles, then call `cb` (may be
 * NULL) from the loop and free the resolver. Lookups started after this
 * call fail with KM_ECLOSING. Call it once, not from inside dns_close's own
 * callbacks. */
void dns_close(struct dns *d, dns_close_cb cb, void *arg);

/* Resolve the mail exchangers of `domain` (a name or a domain literal such
 * as "[127.0.0.1]" or "[IPv6:::1]", which resolves without DNS). `cb` runs
 * on the loop thread, never before this function returns, with DNS_OK and
 * the result, DNS_NULL_MX, DNS_NXDOMAIN, DNS_NO_ADDRESSES, DNS_TEMPFAIL or
 * KM_ECANCELED. Answers are cached (positive: minimum TTL, negative: SOA
 * minimum or 5 minutes, both clamped to 1 s .. 1 h; DNS_TEMPFAIL is not
 * cached) and concurrent lookups of one domain share one query. Returns 0
 * (cb will run), KM_EINVAL for a malformed name or literal, KM_ECLOSING
 * after dns_close() (cb will not run). */
int dns_resolve_mx(struct dns *d, const char *domain, dns_mx_cb cb, void *arg);

/* Resolve the A and AAAA records of `host` (or parse it if it is an IP
 * address, bracketed or not). Same callback, caching and return rules as
 * dns_resolve_mx(); statuses DNS_OK, DNS_NXDOMAIN, DNS_NO_ADDRESSES (the
 * name exists without addresses), DNS_TEMPFAIL, KM_ECANCELED. */
int dns_resolve_addr(struct dns *d, const char *host, dns_addr_cb cb,
                     void *arg);

/* Take a reference; the caller releases it with dns_mx_result_unref(). */
const struct dns_mx_result *dns_mx_result_ref(const struct dns_mx_result *mx);

/* Drop a reference taken with dns_mx_result_ref(). NULL does nothing. */
void dns_mx_result_unref(const struct dns_mx_result *mx);

/* Take a reference; the caller releases it with dns_addr_result_unref(). */
const struct dns_addr_result *
dns_addr_result_ref(const struct dns_addr_result *res);

/* Drop a reference taken with dns_addr_result_ref(). NULL does nothing. */
void dns_addr_result_unref(const struct dns_addr_result *res);

/* Name of a status or KM_E* code, for log lines. Never NULL. */
const char *dns_status_str(int status);

/* KumoMTA's site name for a list of MX host names (factor_names in its
 * dns-resolver crate): names are lowercased and split into labels that are
 * merged from the right; a position where the names differ becomes
 * "(a|b|...)" in order of first appearance, and "?" is appended where some
 * names have no label at that position. Trailing dots are ignored and
 * malformed names skipped; a single host is its own name. Example:
 * gmail-smtp-in.l.google.com and alt1..alt4.gmail-smtp-in.l.google.com give
 * "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com". The caller owns
 * the returned string ("" when no name is usable). */
char *dns_site_name(const char *const *hosts, size_t n);

/* Site name of a queue with an explicit mx_list: "mx_list:" followed by
 * the entries as given, joined with ",". The caller owns the string. */
char *dns_site_name_mx_list(const char *const *hosts, size_t n);

/* Parse a domain literal: "[1.2.3.4]", "[IPv6:2001:db8::1]" (tag matched
 * without regard to case) or, as KumoMTA also accepts, an untagged
 * "[2001:db8::1]". Fills *out (port 0); its `text` is the canonical IP,
 * which is also the literal's site name. 0 or KM_EINVAL. */
int dns_parse_domain_literal(const char *domain, struct dns_addr *out);

/* True if `domain` starts with '[' (a literal, well-formed or not). */
bool dns_is_domain_literal(const char *domain);
#endif /* KUMO_DNS_H */
