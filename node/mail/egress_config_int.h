/* egress_config_int.h - the JSON accessors and small parsers shared by
 * egress_config.c (queue_config, egress_source, egress_pool) and
 * egress_config_path.c (egress_path). Not for use outside the egress_config
 * module. Pure functions. */
#ifndef KUMO_EGRESS_CONFIG_INT_H
#define KUMO_EGRESS_CONFIG_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "egress_config.h"

#define EGRESS_MS_SECOND (1000ull)
#define EGRESS_MS_MINUTE (60ull * EGRESS_MS_SECOND)
#define EGRESS_MS_DAY    (24ull * 60ull * EGRESS_MS_MINUTE)

/* Replaying a pool's round costs one step per pick; past this many picks a
 * replaced pool restarts its round instead (see egress_pool_choose). */
#define EGRESS_POOL_REPLAY_MAX 65536u

static const char *const egress_tls_names[] = {
    [EGRESS_TLS_DISABLED] = "Disabled",
    [EGRESS_TLS_OPPORTUNISTIC] = "Opportunistic",
    [EGRESS_TLS_OPPORTUNISTIC_INSECURE] = "OpportunisticInsecure",
    [EGRESS_TLS_REQUIRED] = "Required",
    [EGRESS_TLS_REQUIRED_INSECURE] = "RequiredInsecure",
};

static const char *const egress_queue_strategies[] = {
    "TimerWheel", "SkipList", "SingletonTimerWheel", NULL};

static const char *const egress_default_prohibited[] = {"127.0.0.0/8", "::1",
                                                        "0.0.0.0", "::"};

/* Shared by egress_config.c and egress_config_path.c. */

int egress_config_check_kind(json_t *j, const char *kind, char *err,
                             size_t errlen);
json_t *egress_config_get(json_t *j, const char *key);
int egress_config_uint(json_t *j, const char *kind, const char *key,
                       uint64_t min, uint64_t max, uint64_t *out, char *err,
                       size_t errlen);
int egress_config_u32(json_t *j, const char *kind, const char *key,
                      uint32_t min, uint32_t *out, char *err, size_t errlen);
int egress_config_ms(json_t *j, const char *kind, const char *key, bool nonzero,
                     uint64_t *out, char *err, size_t errlen);
int egress_config_bool(json_t *j, const char *kind, const char *key, bool *out,
                       char *err, size_t errlen);
int egress_config_str(json_t *j, const char *kind, const char *key, char **out,
                      char *err, size_t errlen);
int egress_config_cidrs(json_t *j, const char *kind, const char *key,
                        struct km_cidr_list *l, char *err, size_t errlen);
#endif /* KUMO_EGRESS_CONFIG_INT_H */
