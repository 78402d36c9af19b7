/* policy_glue.c - what the policy's configuration calls do in the daemon.
 * Listeners are bound at once (before privileges are dropped, unless
 * --validate); spools, logs and DNS settings are recorded and opened by
 * kumod_start() after the drop. Loop thread only. */
#include "policy_glue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "base/log.h"
#include "dns.h"
#include "http_api.h"
#include "kumod.h"
#include "smtp_server.h"

static int
policy_glue_listener(struct kumod *kd, json_t *params, char *err, size_t errlen)
{
    struct smtp_server *srv;
    int rv;

    if (kd->validate_only) {
        /* --validate binds nothing; the parameters were checked by the
         * policy's schema, and values are checked again at start. */
        return smtp_server_check_params(params, err, errlen);
    }
    rv = smtp_server_open(kd, params, &srv, err, errlen);
    if (rv != 0) {
        return rv;
    }
    kd->listeners = km_realloc(kd->listeners,
                               (kd->n_listeners + 1) * sizeof(*kd->listeners));
    kd->listeners[kd->n_listeners++] = srv;
    return 0;
}

static int
policy_glue_spool(struct kumod *kd, json_t *params, char *err, size_t errlen)
{
    const char *name = json_string_value(json_object_get(params, "name"));
    const char *path = json_string_value(json_object_get(params, "path"));
    const char *kind = json_string_value(json_object_get(params, "kind"));
    char **slot;

    if (name == NULL || path == NULL || path[0] == '\0') {
        snprintf(err, errlen, "name and path are required");
        return KM_ECONFIG;
    }
    if (strcmp(name, "data") == 0) {
        slot = &kd->data_spool_path;
    } else if (strcmp(name, "meta") == 0) {
        slot = &kd->meta_spool_path;
    } else {
        snprintf(err, errlen,
                 "spool '%s': kumod uses exactly two spools, named 'data' "
                 "and 'meta'",
                 name);
        return KM_ECONFIG;
    }
    if (*slot != NULL) {
        snprintf(err, errlen, "spool '%s' is already defined", name);
        return KM_ECONFIG;
    }
    if (kind != NULL && strcmp(kind, "LocalDisk") == 0) {
        LOG_WARN("policy: spool '%s': kind 'LocalDisk' is stored in RocksDB "
                 "by kumod",
                 name);
    }
    *slot = km_strdup(path);
    return 0;
}

static int
policy_glue_logs(struct kumod *kd, json_t *params, char *err, size_t errlen)
{
    const char *dir = json_string_value(json_object_get(params, "log_dir"));

    if (dir == NULL || dir[0] == '\0') {
        snprintf(err, errlen, "log_dir is required");
        return KM_ECONFIG;
    }
    json_array_append(kd->log_configs, params);
    return 0;
}

static int
policy_glue_resolver(struct kumod *kd, json_t *params, char *err, size_t errlen)
{
    json_t *servers = json_object_get(params, "name_servers");
    size_t i;
    json_t *v;

    if (json_array_size(servers) == 0) {
        snprintf(err, errlen, "name_servers must list at least one server");
        return KM_ECONFIG;
    }
    for (i = 0; i < kd->n_dns_servers; i++) {
        free(kd->dns_servers[i]);
    }
    free(kd->dns_servers);
    kd->n_dns_servers = 0;
    kd->dns_servers = km_calloc(json_array_size(servers), sizeof(char *));
    json_array_foreach(servers, i, v)
    {
        kd->dns_servers[kd->n_dns_servers++] = km_strdup(json_string_value(v));
    }
    size_t bad = 0;
    if (dns_check_servers((const char *const *)kd->dns_servers,
                          kd->n_dns_servers, &bad) != 0) {
        snprintf(err, errlen, "name_servers[%zu]: '%s' is not ip[:port]",
                 bad + 1, kd->dns_servers[bad]);
        return KM_ECONFIG;
    }
    json_t *opts = json_object_get(params, "options");
    json_t *t = json_object_get(opts, "timeout");
    json_t *a = json_object_get(opts, "attempts");
    if (json_is_integer(t)) {
        kd->dns_timeout_ms = (uint32_t)json_integer_value(t);
    }
    if (json_is_integer(a)) {
        kd->dns_attempts = (uint32_t)json_integer_value(a);
    }
    return 0;
}

static int
policy_glue_http(struct kumod *kd, json_t *params, char *err, size_t errlen)
{
    struct http_api *h;
    int rv;

    if (kd->validate_only) {
        return http_api_check_params(params, err, errlen);
    }
    rv = http_api_open(kd, params, &h, err, errlen);
    if (rv != 0) {
        return rv;
    }
    kd->http_listeners =
        km_realloc(kd->http_listeners,
                   (kd->n_http_listeners + 1) * sizeof(*kd->http_listeners));
    kd->http_listeners[kd->n_http_listeners++] = h;
    return 0;
}

int
policy_glue_config(void *ctx, const char *fn, json_t *params, char *err,
                   size_t errlen)
{
    struct kumod *kd = ctx;

    if (strcmp(fn, "start_http_listener") == 0) {
        return policy_glue_http(kd, params, err, errlen);
    }
    if (strcmp(fn, "start_esmtp_listener") == 0) {
        return policy_glue_listener(kd, params, err, errlen);
    }
    if (strcmp(fn, "define_spool") == 0) {
        return policy_glue_spool(kd, params, err, errlen);
    }
    if (strcmp(fn, "configure_local_logs") == 0) {
        return policy_glue_logs(kd, params, err, errlen);
    }
    if (strcmp(fn, "dns.configure_resolver") == 0) {
        return policy_glue_resolver(kd, params, err, errlen);
    }
    snprintf(err, errlen, "not supported by this version of kumod");
    return KM_ECONFIG;
}
