/* dns_int.h - declarations shared by dns.c (the resolver) and dns_site.c
 * (pure name handling). Not for use outside the dns module. */
#ifndef KUMO_DNS_INT_H
#define KUMO_DNS_INT_H
#include <stdbool.h>
#include <stddef.h>

struct dns_addr;

/* Longest name we accept, without the trailing dot (RFC 1035 2.3.4). */
#define DNS_NAME_MAX  253
#define DNS_LABEL_MAX 63

/* Normalise a host or domain name: lowercase ASCII, one trailing dot
 * removed. Rejects (NULL) empty names, empty labels, labels over 63 or
 * names over 253 octets, and bytes that are controls, spaces or '\\'.
 * The caller owns the returned string. */
char *dns_name_normalize(const char *name);

/* Parse an IPv4 or IPv6 address in text form (no brackets) into *out
 * (port 0, canonical `text`). `family` AF_INET or AF_INET6 restricts it,
 * AF_UNSPEC takes either. 0 or KM_EINVAL. */
int dns_addr_from_text(const char *ip, int family, struct dns_addr *out);
#endif /* KUMO_DNS_INT_H */
