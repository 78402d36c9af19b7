/* dns_site.c - pure name handling for the dns module: KumoMTA-compatible
 * site names (the MX host set that names a ready queue), mx_list site
 * names, domain literals, and name normalisation. No I/O and no state:
 * safe on any thread. The resolver itself lives in dns.c. */
#include "dns.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/km.h"
#include "dns_int.h"

/* One label position (counted from the right) while factoring names. */
struct dns_site_pos {
    const char **labels; /* distinct labels, in order of first appearance */
    size_t n_labels;
    bool has_missing; /* some name has no label here: append "?" */
};

static bool
dns_site_byte_ok(unsigned char c)
{
    return c > ' ' && c != 0x7f && c != '\\';
}

char *
dns_name_normalize(const char *name)
{
    size_t n = strlen(name);
    size_t label = 0;
    char *out;

    if (n > 0 && name[n - 1] == '.') {
        n--;
    }
    if (n == 0 || n > DNS_NAME_MAX) {
        return NULL;
    }
    out = km_strndup(name, n);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];

        if (c == '.') {
            if (label == 0) {
                goto err_after_alloc;
            }
            label = 0;
            continue;
        }
        if (!dns_site_byte_ok(c) || ++label > DNS_LABEL_MAX) {
            goto err_after_alloc;
        }
        if (c >= 'A' && c <= 'Z') {
            out[i] = (char)(c - 'A' + 'a');
        }
    }
    return out;

err_after_alloc:
    free(out);
    return NULL;
}

/* Split a normalised name in place into labels, rightmost first. Returns
 * the number of labels; *out is an array the caller frees. */
static size_t
dns_site_split_reversed(char *name, const char ***out)
{
    size_t n = 1;
    const char **labels;
    size_t i = 0;

    for (const char *p = name; *p != '\0'; p++) {
        n += *p == '.';
    }
    labels = km_calloc(n, sizeof(*labels));
    for (char *p = name, *dot;; p = dot + 1) {
        labels[n - 1 - i++] = p;
        dot = strchr(p, '.');
        if (dot == NULL) {
            break;
        }
        *dot = '\0';
    }
    *out = labels;
    return n;
}

static void
dns_site_pos_add(struct dns_site_pos *pos, const char *label)
{
    for (size_t i = 0; i < pos->n_labels; i++) {
        if (strcmp(pos->labels[i], label) == 0) {
            return;
        }
    }
    pos->labels =
        km_realloc(pos->labels, (pos->n_labels + 1) * sizeof(*pos->labels));
    pos->labels[pos->n_labels++] = label;
}

static char *
dns_site_buf_take(struct buf *b)
{
    char *s = b->data != NULL ? b->data : km_strdup("");

    buf_init(b);
    return s;
}

char *
dns_site_name(const char *const *hosts, size_t n)
{
    /* Each usable name: its lowercase copy and its labels, right to left.
     * The root name ("." or "") is usable and has no labels, as in
     * KumoMTA, where it then contributes only "?" marks. */
    char **names = km_calloc(n + 1, sizeof(*names));
    const char ***labels = km_calloc(n + 1, sizeof(*labels));
    size_t *counts = km_calloc(n + 1, sizeof(*counts));
    struct dns_site_pos *pos;
    size_t n_names = 0;
    size_t max_count = 0;
    struct buf out = BUF_INIT;

    for (size_t i = 0; i < n; i++) {
        if (strcmp(hosts[i], ".") == 0 || hosts[i][0] == '\0') {
            n_names++;
            continue;
        }
        names[n_names] = dns_name_normalize(hosts[i]);
        if (names[n_names] == NULL) {
            continue; /* KumoMTA skips names it cannot parse */
        }
        counts[n_names] =
            dns_site_split_reversed(names[n_names], &labels[n_names]);
        if (counts[n_names] > max_count) {
            max_count = counts[n_names];
        }
        n_names++;
    }

    pos = km_calloc(max_count + 1, sizeof(*pos));
    for (size_t i = 0; i < n_names; i++) {
        for (size_t j = 0; j < max_count; j++) {
            if (j < counts[i]) {
                dns_site_pos_add(&pos[j], labels[i][j]);
            } else {
                pos[j].has_missing = true;
            }
        }
    }

    for (size_t j = max_count; j-- > 0;) {
        struct dns_site_pos *p = &pos[j];

        if (j + 1 < max_count) {
            buf_append_char(&out, '.');
        }
        if (p->n_labels == 1) {
            buf_append_str(&out, p->labels[0]);
        } else {
            buf_append_char(&out, '(');
            for (size_t k = 0; k < p->n_labels; k++) {
                if (k > 0) {
                    buf_append_char(&out, '|');
                }
                buf_append_str(&out, p->labels[k]);
            }
            buf_append_char(&out, ')');
        }
        if (p->has_missing) {
            buf_append_char(&out, '?');
        }
        free(p->labels);
    }

    free(pos);
    for (size_t i = 0; i < n_names; i++) {
        free(labels[i]);
        free(names[i]);
    }
    free(counts);
    free(labels);
    free(names);
    return dns_site_buf_take(&out);
}

char *
dns_site_name_mx_list(const char *const *hosts, size_t n)
{
    struct buf out = BUF_INIT;

    buf_append_str(&out, "mx_list:");
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            buf_append_char(&out, ',');
        }
        buf_append_str(&out, hosts[i]);
    }
    return dns_site_buf_take(&out);
}

bool
dns_is_domain_literal(const char *domain)
{
    return domain[0] == '[';
}

int
dns_addr_from_text(const char *ip, int family, struct dns_addr *out)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->sa;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->sa;

    memset(out, 0, sizeof(*out));
    if (family != AF_INET6 && inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        out->family = AF_INET;
        inet_ntop(AF_INET, &sin->sin_addr, out->text, sizeof(out->text));
        return 0;
    }
    if (family != AF_INET && inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        out->family = AF_INET6;
        inet_ntop(AF_INET6, &sin6->sin6_addr, out->text, sizeof(out->text));
        return 0;
    }
    memset(out, 0, sizeof(*out));
    return KM_EINVAL;
}

int
dns_parse_domain_literal(const char *domain, struct dns_addr *out)
{
    size_t n = strlen(domain);
    char ip[INET6_ADDRSTRLEN];
    const char *p = domain + 1;
    size_t len = n - 2;
    int family = AF_UNSPEC;

    if (n < 3 || domain[0] != '[' || domain[n - 1] != ']') {
        return KM_EINVAL;
    }
    /* RFC 5321 4.1.3: IPv6 literals carry the "IPv6:" tag. KumoMTA also
     * takes an untagged IPv6 address, so do we. */
    if (len > 5 && km_ascii_ieq(p, 5, "ipv6:")) {
        p += 5;
        len -= 5;
        family = AF_INET6;
    }
    if (len >= sizeof(ip)) {
        return KM_EINVAL;
    }
    memcpy(ip, p, len);
    ip[len] = '\0';
    return dns_addr_from_text(ip, family, out);
}
