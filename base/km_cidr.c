/* km_cidr.c - address blocks. See km_cidr.h. */
#include "km_cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "km.h"

int
km_cidr_parse(const char *s, struct km_cidr *out)
{
    char tmp[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr(s, '/');
    size_t alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    unsigned maxbits;
    unsigned long prefix;

    if (alen == 0 || alen >= sizeof(tmp)) {
        return KM_EINVAL;
    }
    memcpy(tmp, s, alen);
    tmp[alen] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, tmp, out->addr) == 1) {
        out->family = AF_INET;
        maxbits = 32;
    } else if (inet_pton(AF_INET6, tmp, out->addr) == 1) {
        out->family = AF_INET6;
        maxbits = 128;
    } else {
        return KM_EINVAL;
    }
    prefix = maxbits;
    if (slash != NULL) {
        const char *d = slash + 1;
        char *end;
        if (*d < '0' || *d > '9' || strlen(d) > 3) {
            return KM_EINVAL;
        }
        prefix = strtoul(d, &end, 10);
        if (*end != '\0' || prefix > maxbits) {
            return KM_EINVAL;
        }
    }
    out->prefix = (unsigned)prefix;
    /* Strict: no host bits set beyond the prefix (as the cidr crate). */
    for (unsigned bit = out->prefix; bit < maxbits; bit++) {
        if (out->addr[bit / 8] & (0x80u >> (bit % 8))) {
            return KM_EINVAL;
        }
    }
    return 0;
}

bool
km_cidr_contains(const struct km_cidr *c, int family, const uint8_t *addr)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0,    0,
                                         0, 0, 0, 0, 0xff, 0xff};
    unsigned full, rest;

    if (c->family == AF_INET && family == AF_INET6 &&
        memcmp(addr, v4mapped, sizeof(v4mapped)) == 0) {
        addr += 12;
        family = AF_INET;
    }
    if (c->family != family) {
        return false;
    }
    full = c->prefix / 8;
    rest = c->prefix % 8;
    if (memcmp(c->addr, addr, full) != 0) {
        return false;
    }
    if (rest != 0) {
        uint8_t mask = (uint8_t)(0xffu << (8 - rest));
        if ((c->addr[full] & mask) != (addr[full] & mask)) {
            return false;
        }
    }
    return true;
}

bool
km_cidr_contains_sa(const struct km_cidr *c, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        return km_cidr_contains(c, AF_INET,
                                (const uint8_t *)&s4->sin_addr.s_addr);
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        return km_cidr_contains(c, AF_INET6, s6->sin6_addr.s6_addr);
    }
    return false;
}

int
km_cidr_list_add(struct km_cidr_list *l, const char *s)
{
    struct km_cidr c;

    if (km_cidr_parse(s, &c) != 0) {
        return KM_EINVAL;
    }
    l->v = km_realloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->text = km_realloc(l->text, (l->n + 1) * sizeof(*l->text));
    l->v[l->n] = c;
    l->text[l->n] = km_strdup(s);
    l->n++;
    return 0;
}

bool
km_cidr_list_contains(const struct km_cidr_list *l, int family,
                      const uint8_t *addr)
{
    for (size_t i = 0; i < l->n; i++) {
        if (km_cidr_contains(&l->v[i], family, addr)) {
            return true;
        }
    }
    return false;
}

bool
km_cidr_list_contains_sa(const struct km_cidr_list *l,
                         const struct sockaddr *sa)
{
    for (size_t i = 0; i < l->n; i++) {
        if (km_cidr_contains_sa(&l->v[i], sa)) {
            return true;
        }
    }
    return false;
}

void
km_cidr_list_fini(struct km_cidr_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->text[i]);
    }
    free(l->text);
    free(l->v);
    memset(l, 0, sizeof(*l));
}
