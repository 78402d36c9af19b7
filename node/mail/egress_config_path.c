/* egress_config_path.c - egress_path objects from the policy's JSON (the
 * parameters of make_egress_path, with KumoMTA's code defaults), checked
 * value by value, naming the key. Pure functions over JSON and strings. The
 * other objects and the shared accessors are egress_config.c. */
#include "base/km.h"
#include "base/km_cidr.h"
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

/* ---- egress_path ---- */

const char *
egress_tls_name(enum egress_tls t)
{
    if ((size_t)t >= sizeof(egress_tls_names) / sizeof(egress_tls_names[0])) {
        return "?";
    }
    return egress_tls_names[t];
}

void
egress_path_config_fini(struct egress_path_config *c)
{
    free(c->max_connection_rate);
    free(c->max_message_rate);
    km_cidr_list_fini(&c->prohibited_hosts);
    km_cidr_list_fini(&c->skip_hosts);
    free(c->ehlo_domain);
    free(c->smtp_auth_plain_username);
    free(c->smtp_auth_plain_password);
    memset(c, 0, sizeof(*c));
}

/* KumoMTA's LimitSpec text: optional "local:", then digits that may be
 * grouped by ',' or '_' ("1,000", "10_000"). */
static int
egress_path_parse_limit(const char *s, uint32_t *out, bool *local)
{
    uint64_t v = 0;
    bool loc = false;

    if (strncmp(s, "local:", 6) == 0) {
        loc = true;
        s += 6;
    }
    if (*s < '0' || *s > '9') {
        return KM_EINVAL;
    }
    for (; *s != '\0'; s++) {
        if (*s >= '0' && *s <= '9') {
            v = v * 10 + (uint64_t)(*s - '0');
            if (v > UINT32_MAX) {
                return KM_EINVAL;
            }
        } else if ((*s != ',' && *s != '_') || s[1] < '0' || s[1] > '9') {
            return KM_EINVAL;
        }
    }
    *out = (uint32_t)v;
    *local = loc;
    return 0;
}

static int
egress_path_connection_limit(json_t *j, struct egress_path_config *c, char *err,
                             size_t errlen)
{
    json_t *v = egress_config_get(j, "connection_limit");
    uint32_t limit = 0;
    bool local = false;

    if (v == NULL) {
        return 0;
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0 &&
        json_integer_value(v) <= (json_int_t)UINT32_MAX) {
        limit = (uint32_t)json_integer_value(v);
    } else if (!json_is_string(v) ||
               egress_path_parse_limit(json_string_value(v), &limit, &local) !=
                   0) {
        return km_config_fail(
            err, errlen,
            "egress_path: connection_limit: must be a number such as 32, "
            "\"1,000\" or \"local:20\"");
    }
    if (limit == 0) {
        /* Zero would park every message in the ready queue forever. */
        return km_config_fail(
            err, errlen, "egress_path: connection_limit: must be at least 1");
    }
    c->connection_limit = limit;
    c->connection_limit_local = local;
    return 0;
}

static int
egress_path_tls(json_t *j, struct egress_path_config *c, char *err,
                size_t errlen)
{
    json_t *v = egress_config_get(j, "enable_tls");
    size_t n = sizeof(egress_tls_names) / sizeof(egress_tls_names[0]);

    if (v == NULL) {
        return 0;
    }
    for (size_t i = 0; json_is_string(v) && i < n; i++) {
        if (strcmp(json_string_value(v), egress_tls_names[i]) == 0) {
            c->enable_tls = (enum egress_tls)i;
            return 0;
        }
    }
    return km_config_fail(
        err, errlen,
        "egress_path: enable_tls: must be one of: Disabled, Opportunistic, "
        "OpportunisticInsecure, Required, RequiredInsecure");
}

/* The protocol timeouts: a zero one would fail every delivery. */
static int
egress_path_timeouts(json_t *j, struct egress_path_config *c, char *err,
                     size_t errlen)
{
    const struct {
        const char *key;
        uint64_t *ms;
    } t[] = {
        {"connect_timeout", &c->connect_timeout_ms},
        {"banner_timeout", &c->banner_timeout_ms},
        {"ehlo_timeout", &c->ehlo_timeout_ms},
        {"mail_from_timeout", &c->mail_from_timeout_ms},
        {"rcpt_to_timeout", &c->rcpt_to_timeout_ms},
        {"data_timeout", &c->data_timeout_ms},
        {"data_dot_timeout", &c->data_dot_timeout_ms},
        {"rset_timeout", &c->rset_timeout_ms},
        {"starttls_timeout", &c->starttls_timeout_ms},
    };

    int rv;

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        rv = egress_config_ms(j, "egress_path", t[i].key, true, t[i].ms, err,
                              errlen);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* Fill KumoMTA's code defaults. */
static void
egress_path_defaults(struct egress_path_config *c)
{
    size_t n = sizeof(egress_default_prohibited) /
               sizeof(egress_default_prohibited[0]);

    c->connection_limit = 32;
    c->max_deliveries_per_connection = 1024;
    c->max_ready = 1024;
    c->enable_tls = EGRESS_TLS_OPPORTUNISTIC;
    c->smtp_port = 25;
    for (size_t i = 0; i < n; i++) {
        int rv = km_cidr_list_add(&c->prohibited_hosts,
                                  egress_default_prohibited[i]);

        KM_ASSERT(rv == 0);
    }
    c->enable_pipelining = true;
    c->enable_rset = true;
    c->consecutive_connection_failures_before_delay = 100;
    c->connect_timeout_ms = 60 * EGRESS_MS_SECOND;
    c->banner_timeout_ms = 60 * EGRESS_MS_SECOND;
    c->ehlo_timeout_ms = 300 * EGRESS_MS_SECOND;
    c->mail_from_timeout_ms = 300 * EGRESS_MS_SECOND;
    c->rcpt_to_timeout_ms = 300 * EGRESS_MS_SECOND;
    /* Code defaults; KumoMTA's docs say 30 s, 60 s and 60 s. */
    c->data_timeout_ms = 300 * EGRESS_MS_SECOND;
    c->data_dot_timeout_ms = 300 * EGRESS_MS_SECOND;
    c->idle_timeout_ms = 5 * EGRESS_MS_SECOND;
    c->rset_timeout_ms = 5 * EGRESS_MS_SECOND;
    c->starttls_timeout_ms = 5 * EGRESS_MS_SECOND;
    c->refresh_interval_ms = 60 * EGRESS_MS_SECOND;
}

int
egress_path_config_parse(json_t *j, struct egress_path_config *out, char *err,
                         size_t errlen)
{
    static const char kind[] = "egress_path";
    struct egress_path_config *c = out;
    uint64_t port = 25;
    int rv;

    memset(c, 0, sizeof(*c));
    rv = egress_config_check_kind(j, kind, err, errlen);
    if (rv != 0) {
        return rv;
    }
    egress_path_defaults(c);
    if ((rv = egress_path_connection_limit(j, c, err, errlen)) != 0 ||
        (rv = egress_config_str(j, kind, "max_connection_rate",
                                &c->max_connection_rate, err, errlen)) != 0 ||
        (rv = egress_config_u32(j, kind, "max_deliveries_per_connection", 1,
                                &c->max_deliveries_per_connection, err,
                                errlen)) != 0 ||
        (rv = egress_config_str(j, kind, "max_message_rate",
                                &c->max_message_rate, err, errlen)) != 0 ||
        (rv = egress_config_u32(j, kind, "max_ready", 1, &c->max_ready, err,
                                errlen)) != 0 ||
        (rv = egress_path_tls(j, c, err, errlen)) != 0 ||
        (rv = egress_config_uint(j, kind, "smtp_port", 1, 65535, &port, err,
                                 errlen)) != 0 ||
        (rv = egress_config_cidrs(j, kind, "prohibited_hosts",
                                  &c->prohibited_hosts, err, errlen)) != 0 ||
        (rv = egress_config_cidrs(j, kind, "skip_hosts", &c->skip_hosts, err,
                                  errlen)) != 0 ||
        (rv = egress_config_str(j, kind, "ehlo_domain", &c->ehlo_domain, err,
                                errlen)) != 0 ||
        (rv = egress_config_bool(j, kind, "enable_pipelining",
                                 &c->enable_pipelining, err, errlen)) != 0 ||
        (rv = egress_config_bool(j, kind, "enable_rset", &c->enable_rset, err,
                                 errlen)) != 0 ||
        (rv = egress_config_str(j, kind, "smtp_auth_plain_username",
                                &c->smtp_auth_plain_username, err, errlen)) !=
            0 ||
        (rv = egress_config_str(j, kind, "smtp_auth_plain_password",
                                &c->smtp_auth_plain_password, err, errlen)) !=
            0 ||
        (rv = egress_config_u32(
             j, kind, "consecutive_connection_failures_before_delay", 0,
             &c->consecutive_connection_failures_before_delay, err, errlen)) !=
            0 ||
        (rv = egress_path_timeouts(j, c, err, errlen)) != 0 ||
        (rv = egress_config_ms(j, kind, "idle_timeout", false,
                               &c->idle_timeout_ms, err, errlen)) != 0 ||
        (rv = egress_config_ms(j, kind, "refresh_interval", false,
                               &c->refresh_interval_ms, err, errlen)) != 0) {
        goto err_after_defaults;
    }
    c->smtp_port = (uint16_t)port;
    return 0;

err_after_defaults:
    egress_path_config_fini(c);
    return rv;
}

bool
egress_path_host_prohibited(const struct egress_path_config *c,
                            const struct sockaddr *addr)
{
    return km_cidr_list_contains_sa(&c->prohibited_hosts, addr) ||
           km_cidr_list_contains_sa(&c->skip_hosts, addr);
}
