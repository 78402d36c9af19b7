/* km_cidr.h - IPv4 and IPv6 address blocks ("10.0.0.0/8", "::1", a bare
 * address is a /32 or /128), parsed strictly as KumoMTA's cidr crate does
 * (no host bits beyond the prefix), and matched against raw addresses.
 * Used by relay_hosts, trusted_hosts, prohibited_hosts and skip_hosts.
 * Pure functions. */
#ifndef KUMO_KM_CIDR_H
#define KUMO_KM_CIDR_H
#include <stdbool.h>
#include <stddef.h>
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

/* A list of blocks, kept both as given (text) and parsed (v): the one list
 * type of relay_hosts, trusted_hosts, prohibited_hosts and skip_hosts.
 * Zero-initialised is empty. */
struct km_cidr_list {
    char **text;
    struct km_cidr *v;
    size_t n;
};

/* Append the block `s`: 0, or KM_EINVAL if it does not parse (the list is
 * unchanged). */
int km_cidr_list_add(struct km_cidr_list *l, const char *s);
/* Whether the raw address, or the socket address, is in one of the blocks
 * (IPv4-mapped IPv6 addresses match IPv4 blocks; other families never). */
bool km_cidr_list_contains(const struct km_cidr_list *l, int family,
                           const uint8_t *addr);
bool km_cidr_list_contains_sa(const struct km_cidr_list *l,
                              const struct sockaddr *sa);
/* Free the blocks; the list is empty again. */
void km_cidr_list_fini(struct km_cidr_list *l);
#endif /* KUMO_KM_CIDR_H */
