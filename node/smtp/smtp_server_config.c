/* smtp_server_config.c - the parameters of kumo.start_esmtp_listener with
 * KumoMTA's defaults (ConcreteEsmtpListenerParams::default), strict CIDR
 * parsing and matching for relay_hosts and relay_from, and the listen
 * address parser. Pure functions over JSON and strings: no libuv handles,
 * no policy. Parameters KumoMTA has and we do not implement (peer, via,
 * deferred_queue, data_buffer_size, ...) are accepted and ignored. */
#include "smtp_server.h"
#include "smtp_server_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/km.h"

#define SMTP_SERVER_DEFAULT_LISTEN "127.0.0.1:2025"

int
smtp_server_config_cidrs(json_t *arr, struct km_cidr_list *set,
                         const char *what, char *err, size_t errlen)
{
    size_t i;
    json_t *v;

    memset(set, 0, sizeof(*set));
    if (json_is_string(arr)) {
        /* A single string is accepted as a one-element list. */
        if (km_cidr_list_add(set, json_string_value(arr)) != 0) {
            return km_config_fail(err, errlen, "%s: invalid CIDR '%s'", what,
                                  json_string_value(arr));
        }
        return 0;
    }
    if (!json_is_array(arr)) {
        return km_config_fail(err, errlen,
                              "%s: expected a list of CIDR strings", what);
    }
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v) ||
            km_cidr_list_add(set, json_string_value(v)) != 0) {
            km_cidr_list_fini(set);
            return km_config_fail(err, errlen, "%s: invalid CIDR '%s'", what,
                                  json_is_string(v) ? json_string_value(v)
                                                    : "(not a string)");
        }
    }
    return 0;
}

int
smtp_server_parse_listen(const char *listen, struct sockaddr_storage *out)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon;
    const char *port_s;
    size_t hlen;
    char *end;
    unsigned long port;

    memset(out, 0, sizeof(*out));
    if (listen[0] == '[') {
        const char *rb = strchr(listen, ']');
        if (rb == NULL || rb[1] != ':') {
            return KM_EINVAL;
        }
        hlen = (size_t)(rb - listen - 1);
        if (hlen == 0 || hlen >= sizeof(host)) {
            return KM_EINVAL;
        }
        memcpy(host, listen + 1, hlen);
        host[hlen] = '\0';
        port_s = rb + 2;
    } else {
        colon = strrchr(listen, ':');
        if (colon == NULL || strchr(listen, ':') != colon) {
            return KM_EINVAL;
        }
        hlen = (size_t)(colon - listen);
        if (hlen == 0 || hlen >= sizeof(host)) {
            return KM_EINVAL;
        }
        memcpy(host, listen, hlen);
        host[hlen] = '\0';
        port_s = colon + 1;
    }
    if (*port_s < '0' || *port_s > '9') {
        return KM_EINVAL;
    }
    port = strtoul(port_s, &end, 10);
    if (*end != '\0' || port > 65535) {
        return KM_EINVAL;
    }
    if (strcmp(host, "0") == 0) {
        snprintf(host, sizeof(host), "0.0.0.0");
    } else if (strcmp(host, "localhost") == 0) {
        snprintf(host, sizeof(host), "127.0.0.1");
    }
    if (listen[0] != '[') {
        struct sockaddr_in *sin = (struct sockaddr_in *)out;
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
            return KM_EINVAL;
        }
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            return KM_EINVAL;
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
    }
    return 0;
}

/* Integer milliseconds (policy.h), or a duration string for leniency. */
static int
smtp_server_config_duration(json_t *v, const char *key, uint64_t *out,
                            char *err, size_t errlen)
{
    if (v == NULL) {
        return 0;
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v) &&
        km_parse_duration_ms(json_string_value(v), out) == 0) {
        return 0;
    }
    return km_config_fail(err, errlen, "%s: invalid duration", key);
}

/* Integer bytes or counts, or a size string for leniency. */
static int
smtp_server_config_size(json_t *v, const char *key, uint64_t *out, char *err,
                        size_t errlen)
{
    if (v == NULL) {
        return 0;
    }
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v) && km_parse_size(json_string_value(v), out) == 0) {
        return 0;
    }
    return km_config_fail(err, errlen, "%s: invalid number", key);
}

static int
smtp_server_config_string(json_t *v, const char *key, char **out, char *err,
                          size_t errlen)
{
    if (v == NULL || json_is_null(v)) {
        return 0;
    }
    if (!json_is_string(v)) {
        return km_config_fail(err, errlen, "%s: expected a string", key);
    }
    free(*out);
    *out = km_strdup(json_string_value(v));
    return 0;
}

static int
smtp_server_config_bool(json_t *v, const char *key, bool *out, char *err,
                        size_t errlen)
{
    if (v == NULL) {
        return 0;
    }
    if (!json_is_boolean(v)) {
        return km_config_fail(err, errlen, "%s: expected a boolean", key);
    }
    *out = json_is_true(v);
    return 0;
}

static int
smtp_server_config_trace(json_t *th, struct smtp_server_config *cfg, char *err,
                         size_t errlen)
{
    json_t *names;
    size_t i;
    json_t *v;
    int rv;

    if (th == NULL) {
        return 0;
    }
    if (!json_is_object(th)) {
        return km_config_fail(err, errlen, "%s: expected a table",
                              "trace_headers");
    }
    rv = smtp_server_config_bool(json_object_get(th, "received_header"),
                                 "trace_headers.received_header",
                                 &cfg->received_header, err, errlen);
    if (rv == 0) {
        rv = smtp_server_config_bool(json_object_get(th, "supplemental_header"),
                                     "trace_headers.supplemental_header",
                                     &cfg->supplemental_header, err, errlen);
    }
    if (rv == 0) {
        rv = smtp_server_config_string(json_object_get(th, "header_name"),
                                       "trace_headers.header_name",
                                       &cfg->trace_header_name, err, errlen);
    }
    if (rv != 0) {
        return rv;
    }
    names = json_object_get(th, "include_meta_names");
    if (names == NULL) {
        return 0;
    }
    if (!json_is_array(names)) {
        return km_config_fail(err, errlen, "%s: expected a list of strings",
                              "trace_headers.include_meta_names");
    }
    cfg->include_meta_names =
        km_calloc(json_array_size(names) + 1, sizeof(char *));
    json_array_foreach(names, i, v)
    {
        if (!json_is_string(v)) {
            return km_config_fail(err, errlen, "%s: expected a list of strings",
                                  "trace_headers.include_meta_names");
        }
        cfg->include_meta_names[cfg->n_include_meta_names++] =
            km_strdup(json_string_value(v));
    }
    return 0;
}

static int
smtp_server_config_line_endings(json_t *v, struct smtp_server_config *cfg,
                                char *err, size_t errlen)
{
    const char *s;

    if (v == NULL) {
        return 0;
    }
    s = json_string_value(v);
    if (s != NULL && strcmp(s, "Deny") == 0) {
        cfg->invalid_line_endings = SMTP_SERVER_LE_DENY;
    } else if (s != NULL && strcmp(s, "Allow") == 0) {
        cfg->invalid_line_endings = SMTP_SERVER_LE_ALLOW;
    } else if (s != NULL && strcmp(s, "Fix") == 0) {
        cfg->invalid_line_endings = SMTP_SERVER_LE_FIX;
    } else {
        return km_config_fail(err, errlen,
                              "%s: expected 'Deny', 'Allow' or 'Fix'",
                              "invalid_line_endings");
    }
    return 0;
}

static void
smtp_server_config_defaults(struct smtp_server_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen = km_strdup(SMTP_SERVER_DEFAULT_LISTEN);
    cfg->hostname = km_strdup(km_hostname());
    cfg->banner = km_strdup("KumoMTA");
    KM_ASSERT(km_cidr_list_add(&cfg->relay_hosts, "127.0.0.1") == 0);
    KM_ASSERT(km_cidr_list_add(&cfg->relay_hosts, "::1") == 0);
    cfg->max_connections = 32 * 1024;
    cfg->max_message_size = 20 * 1024 * 1024;
    cfg->max_recipients_per_message = 1024;
    cfg->max_messages_per_connection = 10000;
    cfg->client_timeout_ms = 60 * 1000;
    cfg->data_processing_timeout_ms = 300 * 1000;
    /* Postfix's smtpd_min_data_rate default. */
    cfg->data_min_rate = 500;
    cfg->line_length_hard_limit = 998;
    cfg->invalid_line_endings = SMTP_SERVER_LE_DENY;
    cfg->received_header = true;
    cfg->supplemental_header = true;
    cfg->trace_header_name = km_strdup("X-KumoRef");
}

static int
smtp_server_config_numbers(json_t *params, struct smtp_server_config *cfg,
                           char *err, size_t errlen)
{
    uint64_t v;
    int rv;

    v = cfg->max_connections;
    rv = smtp_server_config_size(json_object_get(params, "max_connections"),
                                 "max_connections", &v, err, errlen);
    cfg->max_connections = (size_t)v;
    if (rv == 0) {
        rv = smtp_server_config_size(
            json_object_get(params, "max_message_size"), "max_message_size",
            &cfg->max_message_size, err, errlen);
    }
    v = cfg->max_recipients_per_message;
    if (rv == 0) {
        rv = smtp_server_config_size(
            json_object_get(params, "max_recipients_per_message"),
            "max_recipients_per_message", &v, err, errlen);
        cfg->max_recipients_per_message = (size_t)v;
    }
    v = cfg->max_messages_per_connection;
    if (rv == 0) {
        rv = smtp_server_config_size(
            json_object_get(params, "max_messages_per_connection"),
            "max_messages_per_connection", &v, err, errlen);
        cfg->max_messages_per_connection = (size_t)v;
    }
    if (rv == 0) {
        rv = smtp_server_config_size(json_object_get(params, "data_min_rate"),
                                     "data_min_rate", &cfg->data_min_rate, err,
                                     errlen);
    }
    v = cfg->line_length_hard_limit;
    if (rv == 0) {
        rv = smtp_server_config_size(
            json_object_get(params, "line_length_hard_limit"),
            "line_length_hard_limit", &v, err, errlen);
        cfg->line_length_hard_limit = (size_t)v;
    }
    if (rv == 0) {
        rv = smtp_server_config_duration(
            json_object_get(params, "client_timeout"), "client_timeout",
            &cfg->client_timeout_ms, err, errlen);
    }
    if (rv == 0) {
        rv = smtp_server_config_duration(
            json_object_get(params, "data_processing_timeout"),
            "data_processing_timeout", &cfg->data_processing_timeout_ms, err,
            errlen);
    }
    return rv;
}

int
smtp_server_config_parse(json_t *params, struct smtp_server_config *cfg,
                         char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    json_t *relay;
    json_t *meta;
    int rv;

    smtp_server_config_defaults(cfg);
    if (params != NULL && !json_is_object(params)) {
        rv = km_config_fail(err, errlen, "%s: expected a table",
                            "start_esmtp_listener");
        goto err_after_defaults;
    }
    if (params == NULL) {
        return 0;
    }
    rv = smtp_server_config_string(json_object_get(params, "listen"), "listen",
                                   &cfg->listen, err, errlen);
    if (rv == 0) {
        rv = smtp_server_config_string(json_object_get(params, "hostname"),
                                       "hostname", &cfg->hostname, err, errlen);
    }
    if (rv == 0) {
        rv = smtp_server_config_string(json_object_get(params, "banner"),
                                       "banner", &cfg->banner, err, errlen);
    }
    if (rv == 0) {
        rv = smtp_server_config_string(
            json_object_get(params, "tls_certificate"), "tls_certificate",
            &cfg->tls_certificate, err, errlen);
    }
    if (rv == 0) {
        rv = smtp_server_config_string(
            json_object_get(params, "tls_private_key"), "tls_private_key",
            &cfg->tls_private_key, err, errlen);
    }
    if (rv == 0) {
        rv = smtp_server_config_numbers(params, cfg, err, errlen);
    }
    if (rv == 0) {
        rv = smtp_server_config_line_endings(
            json_object_get(params, "invalid_line_endings"), cfg, err, errlen);
    }
    if (rv == 0) {
        rv = smtp_server_config_trace(json_object_get(params, "trace_headers"),
                                      cfg, err, errlen);
    }
    if (rv != 0) {
        goto err_after_defaults;
    }
    if (smtp_server_parse_listen(cfg->listen, &ss) != 0) {
        rv = km_config_fail(err, errlen, "listen: invalid address '%s'",
                            cfg->listen);
        goto err_after_defaults;
    }
    relay = json_object_get(params, "relay_hosts");
    if (relay != NULL) {
        struct km_cidr_list set;
        rv = smtp_server_config_cidrs(relay, &set, "relay_hosts", err, errlen);
        if (rv != 0) {
            goto err_after_defaults;
        }
        km_cidr_list_fini(&cfg->relay_hosts);
        cfg->relay_hosts = set;
    }
    if ((cfg->tls_certificate == NULL) != (cfg->tls_private_key == NULL)) {
        rv = km_config_fail(
            err, errlen, "%s",
            "tls_certificate and tls_private_key must be given together");
        goto err_after_defaults;
    }
    if (cfg->line_length_hard_limit == 0 || cfg->max_connections == 0) {
        rv = km_config_fail(err, errlen, "%s",
                            "line_length_hard_limit and "
                            "max_connections must be positive");
        goto err_after_defaults;
    }
    meta = json_object_get(params, "meta");
    if (meta != NULL) {
        if (!json_is_object(meta)) {
            rv = km_config_fail(err, errlen, "%s: expected a table", "meta");
            goto err_after_defaults;
        }
        cfg->meta = json_deep_copy(meta);
    }
    return 0;

err_after_defaults:
    smtp_server_config_fini(cfg);
    return rv;
}

void
smtp_server_config_fini(struct smtp_server_config *cfg)
{
    free(cfg->listen);
    free(cfg->hostname);
    free(cfg->banner);
    km_cidr_list_fini(&cfg->relay_hosts);
    free(cfg->tls_certificate);
    free(cfg->tls_private_key);
    free(cfg->trace_header_name);
    for (size_t i = 0; i < cfg->n_include_meta_names; i++) {
        free(cfg->include_meta_names[i]);
    }
    free(cfg->include_meta_names);
    json_decref(cfg->meta);
    memset(cfg, 0, sizeof(*cfg));
}

int
smtp_server_check_params(json_t *params, char *err, size_t errlen)
{
    struct smtp_server_config cfg;
    int rv = smtp_server_config_parse(params, &cfg, err, errlen);

    if (rv == 0) {
        smtp_server_config_fini(&cfg);
    }
    return rv;
}
