/* egress_config.c - queue_config, egress_source, egress_pool and
 * egress_path objects from the policy's JSON into structs with KumoMTA's
 * code defaults (kumo-api-types egress_path.rs, rfc5321 client_types.rs,
 * queue.rs), plus the small parsers they need: mx_list entries, strict
 * CIDR blocks, connection limits ("1,000", "local:20") and the smooth
 * weighted round-robin of pools. Pure functions over JSON and strings: no
 * loop, no I/O, no policy. The policy already rejected unknown keys and
 * wrong types; here we reject bad values, naming the key. */
#include "egress_config.h"
#include "egress_config_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "base/km.h"
#include "base/km_cidr.h"

/* ---- Errors and JSON accessors ---- */

/* j must be NULL or an object whose "__kind", if any, is `kind`. */
int
egress_config_check_kind(json_t *j, const char *kind, char *err, size_t errlen)
{
    json_t *k;

    if (j == NULL) {
        return 0;
    }
    if (!json_is_object(j)) {
        return km_config_fail(err, errlen, "%s: expected an object", kind);
    }
    k = json_object_get(j, "__kind");
    if (k != NULL &&
        (!json_is_string(k) || strcmp(json_string_value(k), kind) != 0)) {
        return km_config_fail(
            err, errlen, "%s: expected a %s object, got %s", kind, kind,
            json_is_string(k) ? json_string_value(k) : "(not a string)");
    }
    return 0;
}

/* The value at key, or NULL when j is NULL or the key is absent or null. */
json_t *
egress_config_get(json_t *j, const char *key)
{
    json_t *v = j != NULL ? json_object_get(j, key) : NULL;

    return json_is_null(v) ? NULL : v;
}

/* An integer in [min, max] at key into *out; absent keeps *out. */
int
egress_config_uint(json_t *j, const char *kind, const char *key, uint64_t min,
                   uint64_t max, uint64_t *out, char *err, size_t errlen)
{
    json_t *v = egress_config_get(j, key);
    json_int_t n;

    if (v == NULL) {
        return 0;
    }
    n = json_is_integer(v) ? json_integer_value(v) : -1;
    if (!json_is_integer(v) || n < 0 || (uint64_t)n < min ||
        (uint64_t)n > max) {
        return km_config_fail(
            err, errlen, "%s: %s: must be an integer from %llu to %llu", kind,
            key, (unsigned long long)min, (unsigned long long)max);
    }
    *out = (uint64_t)n;
    return 0;
}

/* A uint32_t variant of egress_config_uint. */
int
egress_config_u32(json_t *j, const char *kind, const char *key, uint32_t min,
                  uint32_t *out, char *err, size_t errlen)
{
    uint64_t v = *out;
    int rv = egress_config_uint(j, kind, key, min, UINT32_MAX, &v, err, errlen);

    *out = (uint32_t)v;
    return rv;
}

/* A duration (integer milliseconds, as the policy converts them). */
int
egress_config_ms(json_t *j, const char *kind, const char *key, bool nonzero,
                 uint64_t *out, char *err, size_t errlen)
{
    json_t *v = egress_config_get(j, key);

    if (v == NULL) {
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return km_config_fail(err, errlen,
                              "%s: %s: must be a non-negative duration in ms",
                              kind, key);
    }
    if (nonzero && json_integer_value(v) == 0) {
        return km_config_fail(err, errlen, "%s: %s: must be greater than zero",
                              kind, key);
    }
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

int
egress_config_bool(json_t *j, const char *kind, const char *key, bool *out,
                   char *err, size_t errlen)
{
    json_t *v = egress_config_get(j, key);

    if (v == NULL) {
        return 0;
    }
    if (!json_is_boolean(v)) {
        return km_config_fail(err, errlen, "%s: %s: must be a boolean", kind,
                              key);
    }
    *out = json_is_true(v);
    return 0;
}

/* A non-empty string at key replaces *out (freeing the old value). */
int
egress_config_str(json_t *j, const char *kind, const char *key, char **out,
                  char *err, size_t errlen)
{
    json_t *v = egress_config_get(j, key);

    if (v == NULL) {
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        return km_config_fail(err, errlen, "%s: %s: must be a non-empty string",
                              kind, key);
    }
    free(*out);
    *out = km_strdup(json_string_value(v));
    return 0;
}

/* Replace *l with the list at key (a string or an array of strings). */
int
egress_config_cidrs(json_t *j, const char *kind, const char *key,
                    struct km_cidr_list *l, char *err, size_t errlen)
{
    json_t *v = egress_config_get(j, key);
    json_t *item;
    size_t i;

    if (v == NULL) {
        return 0;
    }
    km_cidr_list_fini(l);
    if (json_is_string(v)) {
        if (km_cidr_list_add(l, json_string_value(v)) != 0) {
            return km_config_fail(err, errlen, "%s: %s: invalid CIDR '%s'",
                                  kind, key, json_string_value(v));
        }
        return 0;
    }
    if (!json_is_array(v)) {
        return km_config_fail(
            err, errlen, "%s: %s: must be a list of CIDR blocks", kind, key);
    }
    json_array_foreach(v, i, item)
    {
        if (!json_is_string(item) ||
            km_cidr_list_add(l, json_string_value(item)) != 0) {
            return km_config_fail(err, errlen, "%s: %s[%zu]: invalid CIDR '%s'",
                                  kind, key, i + 1,
                                  json_is_string(item) ? json_string_value(item)
                                                       : "(not a string)");
        }
    }
    return 0;
}

/* ---- mx_list entries ---- */

/* A decimal port 1..65535 from the view [p, p+n). */
static int
egress_config_port(const char *p, size_t n, uint16_t *out)
{
    unsigned v = 0;

    if (n == 0 || n > 5) {
        return KM_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return KM_EINVAL;
        }
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535) {
        return KM_EINVAL;
    }
    *out = (uint16_t)v;
    return 0;
}

/* Letters, digits, '-', '_' and dots between labels (a trailing dot is
 * allowed); at most 253 characters before it. */
static bool
egress_config_is_hostname(const char *p, size_t n)
{
    if (n > 0 && p[n - 1] == '.') {
        n--;
    }
    if (n == 0 || n > 253 || p[0] == '.') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                  (c == '.' && p[i - 1] != '.');

        if (!ok) {
            return false;
        }
    }
    return true;
}

int
egress_parse_mx_list_entry(const char *s, char **host, uint16_t *port,
                           bool *is_literal)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    uint8_t bin[16];
    uint16_t pv = 0;
    const char *name, *colon;
    size_t nlen;

    if (s[0] == '[') {
        /* RFC 5321 4.1.3 address literal, optionally followed by :port. */
        const char *close = strchr(s, ']');
        const char *inner = s + 1;
        bool v6tag = strncasecmp(inner, "IPv6:", 5) == 0;

        if (close == NULL) {
            return KM_EINVAL;
        }
        if (v6tag) {
            inner += 5;
        }
        nlen = (size_t)(close - inner);
        if (close < inner || nlen == 0 || nlen >= sizeof(tmp)) {
            return KM_EINVAL;
        }
        memcpy(tmp, inner, nlen);
        tmp[nlen] = '\0';
        if (inet_pton(AF_INET6, tmp, bin) != 1 &&
            (v6tag || inet_pton(AF_INET, tmp, bin) != 1)) {
            return KM_EINVAL;
        }
        if (close[1] == ':') {
            if (egress_config_port(close + 2, strlen(close + 2), &pv) != 0) {
                return KM_EINVAL;
            }
        } else if (close[1] != '\0') {
            return KM_EINVAL;
        }
        *host = km_strdup(tmp);
        *port = pv;
        *is_literal = true;
        return 0;
    }
    if (inet_pton(AF_INET6, s, bin) == 1) {
        /* A bare IPv6 address: its colons leave no room for a port. */
        *host = km_strdup(s);
        *port = 0;
        *is_literal = true;
        return 0;
    }
    name = s;
    colon = strchr(s, ':');
    nlen = colon != NULL ? (size_t)(colon - s) : strlen(s);
    if (colon != NULL &&
        egress_config_port(colon + 1, strlen(colon + 1), &pv) != 0) {
        return KM_EINVAL;
    }
    if (nlen == 0 || nlen >= 256) {
        return KM_EINVAL;
    }
    if (nlen < sizeof(tmp)) {
        memcpy(tmp, name, nlen);
        tmp[nlen] = '\0';
        if (inet_pton(AF_INET, tmp, bin) == 1) {
            *host = km_strdup(tmp);
            *port = pv;
            *is_literal = true;
            return 0;
        }
    }
    if (!egress_config_is_hostname(name, nlen)) {
        return KM_EINVAL;
    }
    *host = km_strndup(name, nlen);
    *port = pv;
    *is_literal = false;
    return 0;
}

/* ---- queue_config ---- */

void
egress_queue_config_fini(struct queue_config *qc)
{
    free(qc->egress_pool);
    free(qc->max_message_rate);
    for (size_t i = 0; i < qc->n_mx_list; i++) {
        free(qc->mx_list[i].host);
        free(qc->mx_list[i].name);
        free(qc->mx_list[i].text);
    }
    free(qc->mx_list);
    free(qc->maildir_path);
    memset(qc, 0, sizeof(*qc));
}

/* One mx_list item: a string, or KumoMTA's {name=, addr=} table whose addr
 * is an IP address (optionally bracketed, with a port). */
static int
egress_queue_mx_entry(json_t *item, size_t idx, struct egress_mx_entry *e,
                      char *err, size_t errlen)
{
    static const char kind[] = "queue_config";
    json_t *name, *addr;

    if (json_is_string(item)) {
        if (egress_parse_mx_list_entry(json_string_value(item), &e->host,
                                       &e->port, &e->is_literal) != 0) {
            return km_config_fail(
                err, errlen,
                "%s: protocol.smtp.mx_list[%zu]: '%s' is not a host, "
                "host:port, [address] or [address]:port",
                kind, idx + 1, json_string_value(item));
        }
        e->text = km_strdup(json_string_value(item));
        return 0;
    }
    name = json_is_object(item) ? json_object_get(item, "name") : NULL;
    addr = json_is_object(item) ? json_object_get(item, "addr") : NULL;
    if (!json_is_string(name) || !json_is_string(addr) ||
        !egress_config_is_hostname(json_string_value(name),
                                   strlen(json_string_value(name)))) {
        return km_config_fail(
            err, errlen,
            "%s: protocol.smtp.mx_list[%zu]: must be a string or "
            "{name=host, addr=ip}",
            kind, idx + 1);
    }
    if (egress_parse_mx_list_entry(json_string_value(addr), &e->host, &e->port,
                                   &e->is_literal) != 0 ||
        !e->is_literal) {
        free(e->host);
        e->host = NULL;
        return km_config_fail(
            err, errlen,
            "%s: protocol.smtp.mx_list[%zu].addr: '%s' is not an "
            "IP address",
            kind, idx + 1, json_string_value(addr));
    }
    e->name = km_strdup(json_string_value(name));
    return 0;
}

static int
egress_queue_mx_list(json_t *mx, struct queue_config *qc, char *err,
                     size_t errlen)
{
    json_t *item;
    size_t i;
    int rv;

    if (json_is_string(mx) || json_is_object(mx)) {
        qc->mx_list = km_calloc(1, sizeof(*qc->mx_list));
        qc->n_mx_list = 1;
        return egress_queue_mx_entry(mx, 0, &qc->mx_list[0], err, errlen);
    }
    if (!json_is_array(mx) || json_array_size(mx) == 0) {
        return km_config_fail(
            err, errlen,
            "queue_config: protocol.smtp.mx_list: must be a non-empty list");
    }
    qc->mx_list = km_calloc(json_array_size(mx), sizeof(*qc->mx_list));
    json_array_foreach(mx, i, item)
    {
        rv = egress_queue_mx_entry(item, i, &qc->mx_list[i], err, errlen);
        if (rv != 0) {
            return rv;
        }
        qc->n_mx_list = i + 1;
    }
    return 0;
}

/* protocol = {smtp={mx_list=...}} or {maildir_path=, dir_mode=,
 * file_mode=}; absent means SMTP via MX. */
static int
egress_queue_protocol(json_t *proto, struct queue_config *qc, char *err,
                      size_t errlen)
{
    static const char kind[] = "queue_config";
    json_t *smtp, *maildir, *mx;
    uint64_t mode;
    int rv;

    if (proto == NULL) {
        return 0;
    }
    if (!json_is_object(proto)) {
        return km_config_fail(err, errlen, "%s: protocol: must be a table",
                              kind);
    }
    smtp = egress_config_get(proto, "smtp");
    maildir = egress_config_get(proto, "maildir_path");
    if (smtp != NULL && maildir != NULL) {
        return km_config_fail(err, errlen,
                              "%s: protocol: give either smtp or maildir_path",
                              kind);
    }
    if (smtp != NULL) {
        if (!json_is_object(smtp)) {
            return km_config_fail(err, errlen,
                                  "%s: protocol.smtp: must be a table", kind);
        }
        mx = egress_config_get(smtp, "mx_list");
        if (mx != NULL) {
            qc->protocol = EGRESS_PROTO_SMTP_MX_LIST;
            return egress_queue_mx_list(mx, qc, err, errlen);
        }
        return 0;
    }
    if (maildir == NULL) {
        return 0;
    }
    rv = egress_config_str(proto, kind, "maildir_path", &qc->maildir_path, err,
                           errlen);
    if (rv != 0) {
        return km_config_fail(
            err, errlen,
            "%s: protocol.maildir_path: must be a non-empty string", kind);
    }
    qc->protocol = EGRESS_PROTO_MAILDIR;
    mode = qc->maildir_dir_mode;
    rv = egress_config_uint(proto, "queue_config: protocol", "dir_mode", 0,
                            07777, &mode, err, errlen);
    qc->maildir_dir_mode = (unsigned)mode;
    if (rv != 0) {
        return rv;
    }
    mode = qc->maildir_file_mode;
    rv = egress_config_uint(proto, "queue_config: protocol", "file_mode", 0,
                            07777, &mode, err, errlen);
    qc->maildir_file_mode = (unsigned)mode;
    return rv;
}

/* strategy: one of KumoMTA's scheduled-queue strategies (checked only). */
static int
egress_queue_strategy(json_t *j, char *err, size_t errlen)
{
    json_t *v = egress_config_get(j, "strategy");

    if (v == NULL) {
        return 0;
    }
    for (size_t i = 0; json_is_string(v) && egress_queue_strategies[i] != NULL;
         i++) {
        if (strcmp(json_string_value(v), egress_queue_strategies[i]) == 0) {
            return 0;
        }
    }
    return km_config_fail(err, errlen,
                          "queue_config: strategy: must be one of: "
                          "TimerWheel, SkipList, SingletonTimerWheel");
}

int
egress_queue_config_parse(json_t *j, struct queue_config *out, char *err,
                          size_t errlen)
{
    static const char kind[] = "queue_config";
    struct queue_config *qc = out;
    int rv;

    memset(qc, 0, sizeof(*qc));
    rv = egress_config_check_kind(j, kind, err, errlen);
    if (rv != 0) {
        return rv;
    }
    qc->retry_interval_ms = 20 * EGRESS_MS_MINUTE;
    qc->max_retry_interval_ms = 0;
    qc->max_age_ms = 7 * EGRESS_MS_DAY;
    qc->egress_pool = km_strdup(EGRESS_UNSPECIFIED);
    qc->protocol = EGRESS_PROTO_SMTP;
    qc->maildir_dir_mode = EGRESS_MAILDIR_DIR_MODE;
    qc->maildir_file_mode = EGRESS_MAILDIR_FILE_MODE;
    qc->refresh_interval_ms = 60 * EGRESS_MS_SECOND;
    qc->reap_interval_ms = 10 * EGRESS_MS_MINUTE;

    if ((rv = egress_config_ms(j, kind, "retry_interval", true,
                               &qc->retry_interval_ms, err, errlen)) != 0 ||
        (rv = egress_config_ms(j, kind, "max_retry_interval", false,
                               &qc->max_retry_interval_ms, err, errlen)) != 0 ||
        (rv = egress_config_ms(j, kind, "max_age", false, &qc->max_age_ms, err,
                               errlen)) != 0 ||
        (rv = egress_config_str(j, kind, "egress_pool", &qc->egress_pool, err,
                                errlen)) != 0 ||
        (rv = egress_config_str(j, kind, "max_message_rate",
                                &qc->max_message_rate, err, errlen)) != 0 ||
        (rv = egress_config_ms(j, kind, "refresh_interval", false,
                               &qc->refresh_interval_ms, err, errlen)) != 0 ||
        (rv = egress_config_ms(j, kind, "reap_interval", false,
                               &qc->reap_interval_ms, err, errlen)) != 0 ||
        (rv = egress_queue_strategy(j, err, errlen)) != 0 ||
        (rv = egress_queue_protocol(egress_config_get(j, "protocol"), qc, err,
                                    errlen)) != 0) {
        goto err_after_defaults;
    }
    return 0;

err_after_defaults:
    egress_queue_config_fini(qc);
    return rv;
}

/* ---- egress_source ---- */

void
egress_source_fini(struct egress_source *s)
{
    free(s->name);
    free(s->source_address);
    free(s->ehlo_domain);
    memset(s, 0, sizeof(*s));
}

void
egress_source_init_unspecified(struct egress_source *out)
{
    memset(out, 0, sizeof(*out));
    out->name = km_strdup(EGRESS_UNSPECIFIED);
    out->ttl_ms = 60 * EGRESS_MS_SECOND;
}

int
egress_source_parse(json_t *j, struct egress_source *out, char *err,
                    size_t errlen)
{
    static const char kind[] = "egress_source";
    uint64_t port = 0;
    uint8_t bin[16];
    int rv;

    memset(out, 0, sizeof(*out));
    rv = egress_config_check_kind(j, kind, err, errlen);
    if (rv != 0) {
        return rv;
    }
    out->ttl_ms = 60 * EGRESS_MS_SECOND;
    if ((rv = egress_config_str(j, kind, "name", &out->name, err, errlen)) !=
            0 ||
        (rv = egress_config_str(j, kind, "source_address", &out->source_address,
                                err, errlen)) != 0 ||
        (rv = egress_config_str(j, kind, "ehlo_domain", &out->ehlo_domain, err,
                                errlen)) != 0 ||
        (rv = egress_config_uint(j, kind, "remote_port", 0, 65535, &port, err,
                                 errlen)) != 0 ||
        (rv = egress_config_ms(j, kind, "ttl", false, &out->ttl_ms, err,
                               errlen)) != 0) {
        goto err_after_defaults;
    }
    out->remote_port = (uint16_t)port;
    if (out->name == NULL) {
        rv = km_config_fail(err, errlen, "%s: name: is required", kind);
        goto err_after_defaults;
    }
    if (out->source_address != NULL &&
        inet_pton(AF_INET, out->source_address, bin) != 1 &&
        inet_pton(AF_INET6, out->source_address, bin) != 1) {
        rv = km_config_fail(err, errlen,
                            "%s: source_address: '%s' is not an IP address",
                            kind, out->source_address);
        goto err_after_defaults;
    }
    return 0;

err_after_defaults:
    egress_source_fini(out);
    return rv;
}

/* ---- egress_pool ---- */

void
egress_pool_fini(struct egress_pool *p)
{
    for (size_t i = 0; i < p->n_entries; i++) {
        free(p->entries[i].name);
    }
    free(p->entries);
    free(p->name);
    memset(p, 0, sizeof(*p));
}

void
egress_pool_init_unspecified(struct egress_pool *out)
{
    memset(out, 0, sizeof(*out));
    out->name = km_strdup(EGRESS_UNSPECIFIED);
    out->entries = km_calloc(1, sizeof(*out->entries));
    out->entries[0].name = km_strdup(EGRESS_UNSPECIFIED);
    out->entries[0].weight = 1;
    out->n_entries = 1;
    out->ttl_ms = 60 * EGRESS_MS_SECOND;
}

static int
egress_pool_entries(json_t *arr, struct egress_pool *p, char *err,
                    size_t errlen)
{
    json_t *item;
    size_t i;
    int rv;

    if (arr == NULL) {
        return 0;
    }
    if (!json_is_array(arr)) {
        return km_config_fail(err, errlen,
                              "egress_pool: entries: must be a list of tables");
    }
    p->entries = km_calloc(json_array_size(arr) + 1, sizeof(*p->entries));
    json_array_foreach(arr, i, item)
    {
        struct egress_pool_entry *e = &p->entries[i];
        char what[48];

        snprintf(what, sizeof(what), "egress_pool: entries[%zu]", i + 1);
        if (!json_is_object(item)) {
            return km_config_fail(err, errlen, "%s: must be a table", what);
        }
        e->weight = 1;
        p->n_entries = i + 1;
        if (egress_config_str(item, what, "name", &e->name, err, errlen) != 0 ||
            e->name == NULL) {
            return km_config_fail(err, errlen,
                                  "%s.name: must be a non-empty string", what);
        }
        rv =
            egress_config_u32(item, what, "weight", 0, &e->weight, err, errlen);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int
egress_pool_parse(json_t *j, struct egress_pool *out, char *err, size_t errlen)
{
    static const char kind[] = "egress_pool";
    int rv;

    memset(out, 0, sizeof(*out));
    rv = egress_config_check_kind(j, kind, err, errlen);
    if (rv != 0) {
        return rv;
    }
    out->ttl_ms = 60 * EGRESS_MS_SECOND;
    if ((rv = egress_config_str(j, kind, "name", &out->name, err, errlen)) !=
            0 ||
        (rv = egress_config_ms(j, kind, "ttl", false, &out->ttl_ms, err,
                               errlen)) != 0 ||
        (rv = egress_pool_entries(egress_config_get(j, "entries"), out, err,
                                  errlen)) != 0) {
        goto err_after_defaults;
    }
    if (out->name == NULL) {
        rv = km_config_fail(err, errlen, "%s: name: is required", kind);
        goto err_after_defaults;
    }
    return 0;

err_after_defaults:
    egress_pool_fini(out);
    return rv;
}

/* One step of nginx's smooth weighted round-robin: every entry gains its
 * weight, the largest (first on ties) is chosen and pays the total back.
 * After `total` steps each entry was chosen weight times and every
 * `current` is 0 again. */
static size_t
egress_pool_step(struct egress_pool *p, uint64_t total)
{
    size_t best = SIZE_MAX;

    for (size_t i = 0; i < p->n_entries; i++) {
        struct egress_pool_entry *e = &p->entries[i];

        if (e->weight == 0) {
            continue;
        }
        e->current += e->weight;
        if (best == SIZE_MAX || e->current > p->entries[best].current) {
            best = i;
        }
    }
    p->entries[best].current -= (int64_t)total;
    p->picks = (p->picks + 1) % total;
    return best;
}

const char *
egress_pool_choose(struct egress_pool *p, uint64_t *state)
{
    uint64_t total = 0, target;
    size_t i;

    for (i = 0; i < p->n_entries; i++) {
        total += p->entries[i].weight;
    }
    if (total == 0) {
        return NULL;
    }
    target = *state % total;
    if (p->picks != target) {
        /* A fresh pool (policy refresh) or another caller's counter:
         * rebuild the round's state by replaying it from the start. */
        for (i = 0; i < p->n_entries; i++) {
            p->entries[i].current = 0;
        }
        p->picks = 0;
        if (target > EGRESS_POOL_REPLAY_MAX) {
            p->picks = target;
        }
        while (p->picks != target) {
            egress_pool_step(p, total);
        }
    }
    i = egress_pool_step(p, total);
    *state += 1;
    return p->entries[i].name;
}
