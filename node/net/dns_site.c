/* dns_site.c - the pure parts of the dns module: KumoMTA-compatible site
 * names (the MX host set that names a ready queue), mx_list site names,
 * domain literals and name normalisation, plus the result records, the
 * TTL scan of replies and name server specs that dns.c uses. No I/O and no
 * shared state: safe on any thread (a result's reference count belongs to
 * the loop thread). The resolver itself lives in dns.c. */
#include "dns.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <ares.h>

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

/* Result records */

uint32_t
dns_ttl_clamp(uint32_t ttl_s)
{
    if (ttl_s < DNS_TTL_MIN_S) {
        return DNS_TTL_MIN_S;
    }
    return ttl_s > DNS_TTL_MAX_S ? DNS_TTL_MAX_S : ttl_s;
}

static void *
dns_pack(char **cursor, size_t n)
{
    void *p = *cursor;

    *cursor += n;
    return p;
}

static const char *
dns_pack_str(char **cursor, const char *s)
{
    size_t n = strlen(s) + 1;

    return memcpy(dns_pack(cursor, n), s, n);
}

struct dns_mx_rec *
dns_mx_rec_new(const char *domain, const char *site_name, bool literal,
               bool implicit, const struct dns_mx_tmp *hosts, size_t n,
               uint32_t ttl_s)
{
    size_t n_addrs = 0;
    size_t strs = strlen(domain) + strlen(site_name) + 2;
    struct dns_mx_rec *r;
    struct dns_host *out;
    struct dns_addr *addrs;
    char *cur;

    for (size_t i = 0; i < n; i++) {
        n_addrs += hosts[i].n_addrs;
        strs += strlen(hosts[i].name) + 1;
    }
    r = km_calloc(1, sizeof(*r) + n * sizeof(*out) + n_addrs * sizeof(*addrs) +
                         strs);
    cur = (char *)(r + 1);
    out = dns_pack(&cur, n * sizeof(*out));
    addrs = dns_pack(&cur, n_addrs * sizeof(*addrs));
    r->refs = 1;
    r->pub.domain = dns_pack_str(&cur, domain);
    r->pub.site_name = dns_pack_str(&cur, site_name);
    r->pub.is_domain_literal = literal;
    r->pub.is_implicit_mx = implicit;
    r->pub.n_hosts = n;
    r->pub.hosts = out;
    r->pub.ttl_s = dns_ttl_clamp(ttl_s);
    for (size_t i = 0; i < n; i++) {
        out[i].name = dns_pack_str(&cur, hosts[i].name);
        out[i].pref = hosts[i].pref;
        out[i].n_addrs = hosts[i].n_addrs;
        out[i].addrs = addrs;
        if (hosts[i].n_addrs > 0) {
            memcpy(addrs, hosts[i].addrs, hosts[i].n_addrs * sizeof(*addrs));
        }
        addrs += hosts[i].n_addrs;
    }
    return r;
}

struct dns_mx_rec *
dns_mx_rec_ref(struct dns_mx_rec *r)
{
    r->refs++;
    return r;
}

void
dns_mx_rec_unref(struct dns_mx_rec *r)
{
    if (r == NULL || --r->refs > 0) {
        return;
    }
    dns_mx_rec_unref(r->base); /* the host array is in r's allocation */
    free(r);
}

static uint64_t
dns_rand(uint64_t *state)
{
    /* xorshift64*: statistical quality is plenty for load spreading. */
    uint64_t x = *state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * UINT64_C(0x2545F4914F6CDD1D);
}

struct dns_mx_rec *
dns_mx_rec_for_caller(struct dns_mx_rec *r, bool shuffle, uint64_t *rng)
{
    const struct dns_host *h = r->pub.hosts;
    size_t n = r->pub.n_hosts;
    struct dns_mx_rec *c;
    struct dns_host *hosts;
    bool ties = false;

    for (size_t i = 1; i < n; i++) {
        ties = ties || h[i].pref == h[i - 1].pref;
    }
    if (!shuffle || !ties) {
        return dns_mx_rec_ref(r);
    }
    c = km_calloc(1, sizeof(*c) + n * sizeof(*hosts));
    hosts = (struct dns_host *)(c + 1);
    memcpy(hosts, h, n * sizeof(*hosts));
    c->refs = 1;
    c->base = dns_mx_rec_ref(r->base != NULL ? r->base : r);
    c->pub = r->pub;
    c->pub.hosts = hosts;
    for (size_t lo = 0, hi; lo < n; lo = hi) {
        for (hi = lo + 1; hi < n && hosts[hi].pref == hosts[lo].pref; hi++) {
        }
        for (size_t i = hi - 1; i > lo; i--) {
            size_t j = lo + (size_t)(dns_rand(rng) % (i - lo + 1));
            struct dns_host t = hosts[i];

            hosts[i] = hosts[j];
            hosts[j] = t;
        }
    }
    return c;
}

struct dns_addr_rec *
dns_addr_rec_new(const char *name, const struct dns_addr *a4, size_t n4,
                 const struct dns_addr *a6, size_t n6, uint32_t ttl_s)
{
    size_t n = n4 + n6;
    struct dns_addr_rec *r;
    struct dns_addr *addrs;
    char *cur;

    r = km_calloc(1, sizeof(*r) + n * sizeof(*addrs) + strlen(name) + 1);
    cur = (char *)(r + 1);
    addrs = dns_pack(&cur, n * sizeof(*addrs));
    if (n4 > 0) {
        memcpy(addrs, a4, n4 * sizeof(*addrs));
    }
    if (n6 > 0) {
        memcpy(addrs + n4, a6, n6 * sizeof(*addrs));
    }
    r->refs = 1;
    r->pub.name = dns_pack_str(&cur, name);
    r->pub.n_addrs = n;
    r->pub.addrs = addrs;
    r->pub.ttl_s = dns_ttl_clamp(ttl_s);
    return r;
}

struct dns_addr_rec *
dns_addr_rec_ref(struct dns_addr_rec *r)
{
    r->refs++;
    return r;
}

void
dns_addr_rec_unref(struct dns_addr_rec *r)
{
    if (r != NULL && --r->refs == 0) {
        free(r);
    }
}

const struct dns_mx_result *
dns_mx_result_ref(const struct dns_mx_result *mx)
{
    return &dns_mx_rec_ref(DNS_CONTAINER(mx, struct dns_mx_rec, pub))->pub;
}

void
dns_mx_result_unref(const struct dns_mx_result *mx)
{
    if (mx != NULL) {
        dns_mx_rec_unref(DNS_CONTAINER(mx, struct dns_mx_rec, pub));
    }
}

const struct dns_addr_result *
dns_addr_result_ref(const struct dns_addr_result *res)
{
    return &dns_addr_rec_ref(DNS_CONTAINER(res, struct dns_addr_rec, pub))->pub;
}

void
dns_addr_result_unref(const struct dns_addr_result *res)
{
    if (res != NULL) {
        dns_addr_rec_unref(DNS_CONTAINER(res, struct dns_addr_rec, pub));
    }
}

const char *
dns_status_str(int status)
{
    switch (status) {
    case DNS_OK:
        return "ok";
    case DNS_NULL_MX:
        return "null MX";
    case DNS_NXDOMAIN:
        return "NXDOMAIN";
    case DNS_NO_ADDRESSES:
        return "no addresses";
    case DNS_TEMPFAIL:
        return "temporary DNS failure";
    default:
        return km_strerror(status);
    }
}

/* Reply TTLs (c-ares parses the records themselves) */

static int
dns_wire_skip_name(const unsigned char *m, size_t n, size_t *off)
{
    for (;;) {
        unsigned c;

        if (*off >= n) {
            return KM_EPROTO;
        }
        c = m[*off];
        if ((c & 0xc0) == 0xc0) {
            *off += 2;
            return *off <= n ? 0 : KM_EPROTO;
        }
        if ((c & 0xc0) != 0) {
            return KM_EPROTO;
        }
        *off += 1 + c;
        if (c == 0) {
            return 0;
        }
    }
}

static uint32_t
dns_wire_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

int
dns_wire_ttls(const unsigned char *m, int len, struct dns_wire_ttls *out)
{
    size_t n = len > 0 ? (size_t)len : 0;
    size_t off = 12;
    unsigned qd, an, ns;

    memset(out, 0, sizeof(*out));
    if (m == NULL || n < 12) {
        return KM_EPROTO;
    }
    qd = (unsigned)m[4] << 8 | m[5];
    an = (unsigned)m[6] << 8 | m[7];
    ns = (unsigned)m[8] << 8 | m[9];
    for (unsigned i = 0; i < qd; i++) {
        if (dns_wire_skip_name(m, n, &off) != 0 || (off += 4) > n) {
            return KM_EPROTO;
        }
    }
    for (unsigned i = 0; i < an + ns; i++) {
        unsigned type, rdlen;
        uint32_t ttl;

        if (dns_wire_skip_name(m, n, &off) != 0 || off + 10 > n) {
            return KM_EPROTO;
        }
        type = (unsigned)m[off] << 8 | m[off + 1];
        ttl = dns_wire_u32(m + off + 4);
        rdlen = (unsigned)m[off + 8] << 8 | m[off + 9];
        off += 10;
        if (off + rdlen > n) {
            return KM_EPROTO;
        }
        /* RFC 2181 8: a TTL with the top bit set counts as zero. */
        ttl = ttl > INT32_MAX ? 0 : ttl;
        if (i < an) {
            if (!out->has_answer || ttl < out->answer_min) {
                out->answer_min = ttl;
            }
            out->has_answer = true;
        } else if (type == DNS_TYPE_SOA && rdlen >= 22) {
            /* MINIMUM is the last field of the SOA RDATA. */
            uint32_t min = dns_wire_u32(m + off + rdlen - 4);

            min = min > INT32_MAX ? 0 : min;
            out->negative = ttl < min ? ttl : min;
            out->has_soa = true;
        }
        off += rdlen;
    }
    return 0;
}

static int
dns_mx_tmp_cmp(const void *a, const void *b)
{
    const struct dns_mx_tmp *x = a;
    const struct dns_mx_tmp *y = b;

    if (x->pref != y->pref) {
        return x->pref < y->pref ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

enum dns_mx_parsed
dns_mx_parse(const unsigned char *abuf, int alen, struct dns_mx_tmp **out,
             size_t *n_out)
{
    struct dns_mx_tmp *hosts;
    size_t n_hosts = 0;
    struct ares_mx_reply *mx = NULL;
    size_t n = 0;
    size_t kept = 0;
    int rc = ares_parse_mx_reply(abuf, alen, &mx);

    if (rc == ARES_ENODATA) {
        return DNS_MX_NONE;
    }
    if (rc != ARES_SUCCESS) {
        return DNS_MX_BAD;
    }
    for (struct ares_mx_reply *m = mx; m != NULL; m = m->next) {
        /* RFC 7505: a "." exchange (c-ares gives "") is a null MX. Like
         * KumoMTA, any null exchange makes the whole domain null MX. */
        if (m->host[0] == '\0' || strcmp(m->host, ".") == 0) {
            ares_free_data(mx);
            return DNS_MX_NULL;
        }
        n++;
    }
    hosts = km_calloc(n, sizeof(*hosts));
    for (struct ares_mx_reply *m = mx; m != NULL; m = m->next) {
        char *name = dns_name_normalize(m->host);

        if (name == NULL) {
            continue;
        }
        hosts[kept].name = name;
        hosts[kept].pref = m->priority;
        kept++;
    }
    ares_free_data(mx);
    qsort(hosts, kept, sizeof(*hosts), dns_mx_tmp_cmp);
    /* List a name once, at its best preference. */
    for (size_t i = 0; i < kept; i++) {
        bool dup = false;

        for (size_t j = 0; j < n_hosts && !dup; j++) {
            dup = strcmp(hosts[j].name, hosts[i].name) == 0;
        }
        if (dup) {
            free(hosts[i].name);
        } else {
            hosts[n_hosts++] = hosts[i];
        }
    }
    *out = hosts;
    *n_out = n_hosts;
    return n_hosts > 0 ? DNS_MX_HOSTS : DNS_MX_NO_NAMES;
}

/* Name server specs */

static int
dns_port_parse(const char *s, unsigned *out)
{
    unsigned v = 0;

    if (*s == '\0') {
        return KM_ECONFIG;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9' ||
            (v = v * 10 + (unsigned)(*s - '0')) > 65535) {
            return KM_ECONFIG;
        }
    }
    if (v == 0) {
        return KM_ECONFIG;
    }
    *out = v;
    return 0;
}

int
dns_server_to_csv(const char *spec, struct buf *csv)
{
    char host[INET6_ADDRSTRLEN];
    const char *port = NULL;
    const char *end;
    unsigned portnum = 53;
    struct dns_addr a;
    int family = AF_INET;
    size_t n;

    if (spec[0] == '[') {
        end = strchr(spec, ']');
        if (end == NULL || (end[1] != '\0' && end[1] != ':')) {
            return KM_ECONFIG;
        }
        port = end[1] == ':' ? end + 2 : NULL;
        spec++;
        n = (size_t)(end - spec);
        family = AF_INET6;
    } else if (dns_addr_from_text(spec, AF_INET6, &a) == 0) {
        n = strlen(spec);
        family = AF_INET6;
    } else {
        end = strchr(spec, ':');
        port = end != NULL ? end + 1 : NULL;
        n = end != NULL ? (size_t)(end - spec) : strlen(spec);
    }
    if (n >= sizeof(host)) {
        return KM_ECONFIG;
    }
    memcpy(host, spec, n);
    host[n] = '\0';
    if (dns_addr_from_text(host, family, &a) != 0 ||
        (port != NULL && dns_port_parse(port, &portnum) != 0)) {
        return KM_ECONFIG;
    }
    if (csv->len > 0) {
        buf_append_char(csv, ',');
    }
    if (family == AF_INET6) {
        buf_appendf(csv, "[%s]:%u", a.text, portnum);
    } else {
        buf_appendf(csv, "%s:%u", a.text, portnum);
    }
    return 0;
}

int
dns_check_servers(const char *const *servers, size_t n_servers,
                  size_t *bad_index)
{
    struct buf csv = BUF_INIT;
    int rv = 0;

    for (size_t i = 0; i < n_servers && rv == 0; i++) {
        rv = dns_server_to_csv(servers[i], &csv);
        if (rv != 0 && bad_index != NULL) {
            *bad_index = i;
        }
    }
    buf_fini(&csv);
    return rv;
}
