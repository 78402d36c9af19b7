/* km_cidr.h - IPv4 and IPv6 address blocks ("10.0.0.0/8", "::1", a bare
 * address is a /32 or /128), parsed strictly as KumoMTA's cidr crate does
 * (no host bits beyond the prefix), and matched against raw addresses.
 * Used by relay_hosts, trusted_hosts, prohibited_hosts and skip_hosts.
 * Pure functions. */
#ifndef KUMO_KM_CIDR_H
#define KUMO_KM_CIDR_H
#include <stdbool.h>
#include <stdint.h>

struct sockaddr;

struct km_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
};

/* Parse s into out: 0, or KM_EINVAL. */
int km_cidr_parse(const char *s, struct km_cidr *out);
/* Whether the raw address (4 or 16 bytes by family) is inside c. An
 * IPv4-mapped IPv6 address also matches IPv4 blocks. */
bool km_cidr_contains(const struct km_cidr *c, int family, const uint8_t *addr);
/* The same for a socket address (AF_INET or AF_INET6; others: false). */
bool km_cidr_contains_sa(const struct km_cidr *c, const struct sockaddr *sa);
#endif /* KUMO_KM_CIDR_H */
