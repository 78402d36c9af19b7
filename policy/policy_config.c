/* policy_config.c - the schema-validated configuration functions:
 * kumo.start_esmtp_listener, kumo.define_spool, kumo.configure_local_logs,
 * kumo.dns.configure_resolver, kumo.start_http_listener and
 * kumo.configure_cluster (init only, handed to the host as JSON), and the
 * kumo.make_*{} object constructors (valid any time, returned as tables
 * whose metatable names their "__kind"). Each function has a static schema;
 * unknown keys and wrong types raise errors that carry the caller's file and
 * line. Durations become integer milliseconds, sizes integer bytes. */
#include "policy_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "base/km.h"
#include "base/log.h"

enum policy_param_type {
    POLICY_PT_STRING,
    POLICY_PT_BOOL,
    POLICY_PT_INT,           /* non-negative integer */
    POLICY_PT_DURATION,      /* "60s" or seconds -> integer ms */
    POLICY_PT_SIZE,          /* "20MiB" or bytes -> integer bytes */
    POLICY_PT_STRLIST,       /* a string or a sequence of strings -> array */
    POLICY_PT_ENUM,          /* one of `choices` */
    POLICY_PT_TABLE,         /* nested schema `fields` */
    POLICY_PT_ANY_TABLE,     /* any table, converted as is */
    POLICY_PT_INT_OR_STRING, /* integer or string, kept as given */
    POLICY_PT_BOOL_OR_ENUM,  /* true -> choices[1], false -> choices[0] */
    POLICY_PT_TABLE_LIST,    /* sequence of tables with schema `fields` */
};

struct policy_param {
    const char *name;
    const char *const *choices;        /* NULL-terminated, ENUM kinds */
    const struct policy_param *fields; /* name NULL ends, TABLE kinds */
    long long dflt;                    /* INT with has_default */
    enum policy_param_type type;
    bool required;
    bool has_default;
};

enum policy_fn_kind {
    POLICY_FN_HOST_INIT, /* validated, then host->config(); init only */
    POLICY_FN_OBJECT,    /* validated, returned as a kumo.<Type> table */
};

struct policy_config_fn {
    const char *name; /* Lua name below `kumo.` */
    enum policy_fn_kind kind;
    const struct policy_param *params;
    const char *mt;        /* POLICY_FN_OBJECT: metatable name */
    const char *kind_name; /* POLICY_FN_OBJECT: its "__kind" */
};

#define P_(n, t)                                                               \
    {                                                                          \
        .name = (n), .type = (t)                                               \
    }
#define P_STR(n) P_(n, POLICY_PT_STRING)
#define P_STR_REQ(n)                                                           \
    {                                                                          \
        .name = (n), .type = POLICY_PT_STRING, .required = true                \
    }
#define P_BOOL(n) P_(n, POLICY_PT_BOOL)
#define P_INT(n)  P_(n, POLICY_PT_INT)
#define P_INT_REQ(n)                                                           \
    {                                                                          \
        .name = (n), .type = POLICY_PT_INT, .required = true                   \
    }
#define P_INT_DFLT(n, d)                                                       \
    {                                                                          \
        .name = (n), .type = POLICY_PT_INT, .has_default = true, .dflt = (d)   \
    }
#define P_DUR(n)  P_(n, POLICY_PT_DURATION)
#define P_SIZE(n) P_(n, POLICY_PT_SIZE)
#define P_LIST(n) P_(n, POLICY_PT_STRLIST)
#define P_LIST_REQ(n)                                                          \
    {                                                                          \
        .name = (n), .type = POLICY_PT_STRLIST, .required = true               \
    }
#define P_ENUM(n, c)                                                           \
    {                                                                          \
        .name = (n), .type = POLICY_PT_ENUM, .choices = (c)                    \
    }
#define P_TABLE(n, f)                                                          \
    {                                                                          \
        .name = (n), .type = POLICY_PT_TABLE, .fields = (f)                    \
    }
#define P_ANY_TABLE(n) P_(n, POLICY_PT_ANY_TABLE)
#define P_INT_STR(n)   P_(n, POLICY_PT_INT_OR_STRING)
#define P_BOOL_ENUM(n, c)                                                      \
    {                                                                          \
        .name = (n), .type = POLICY_PT_BOOL_OR_ENUM, .choices = (c)            \
    }
#define P_TLIST(n, f)                                                          \
    {                                                                          \
        .name = (n), .type = POLICY_PT_TABLE_LIST, .fields = (f)               \
    }
#define P_END                                                                  \
    {                                                                          \
        .name = NULL                                                           \
    }

static const char *const policy_cfg_line_endings[] = {"Deny", "Allow", "Fix",
                                                      NULL};
static const char *const policy_cfg_spool_kinds[] = {"RocksDB", "LocalDisk",
                                                     NULL};
/* Order matters for POLICY_PT_BOOL_OR_ENUM: false, true, others. */
static const char *const policy_cfg_log_disp[] = {"Ignore", "LogThenRelay",
                                                  "LogThenDrop", NULL};
static const char *const policy_cfg_tls_modes[] = {
    "Disabled", "Opportunistic",    "OpportunisticInsecure",
    "Required", "RequiredInsecure", NULL};

static const struct policy_param policy_cfg_trace_headers[] = {
    P_BOOL("received_header"),
    P_BOOL("supplemental_header"),
    P_STR("header_name"),
    P_LIST("include_meta_names"),
    P_END,
};

static const struct policy_param policy_cfg_esmtp_listener[] = {
    P_STR("listen"),
    P_STR("hostname"),
    P_STR("banner"),
    P_LIST("relay_hosts"),
    P_INT("max_connections"),
    P_SIZE("max_message_size"),
    P_INT("max_recipients_per_message"),
    P_INT("max_messages_per_connection"),
    P_DUR("client_timeout"),
    P_DUR("data_processing_timeout"),
    P_INT("data_min_rate"),
    P_INT("line_length_hard_limit"),
    P_ENUM("invalid_line_endings", policy_cfg_line_endings),
    P_STR("tls_certificate"),
    P_STR("tls_private_key"),
    P_TABLE("trace_headers", policy_cfg_trace_headers),
    P_END,
};

static const struct policy_param policy_cfg_define_spool[] = {
    P_STR_REQ("name"),
    P_STR_REQ("path"),
    P_ENUM("kind", policy_cfg_spool_kinds),
    P_BOOL("flush"),
    P_STR("min_free_space"),
    P_STR("min_free_inodes"),
    P_ANY_TABLE("rocks_params"),
    P_END,
};

static const struct policy_param policy_cfg_local_logs[] = {
    P_STR_REQ("log_dir"),    P_DUR("max_segment_duration"),
    P_SIZE("max_file_size"), P_INT("compression_level"),
    P_INT("back_pressure"),  P_LIST("headers"),
    P_LIST("meta"),          P_END,
};

static const struct policy_param policy_cfg_resolver_options[] = {
    P_DUR("timeout"),
    P_INT("attempts"),
    P_END,
};

static const struct policy_param policy_cfg_resolver[] = {
    P_LIST_REQ("name_servers"),
    P_TABLE("options", policy_cfg_resolver_options),
    P_END,
};

static const struct policy_param policy_cfg_http_listener[] = {
    P_STR("listen"),
    P_LIST("trusted_hosts"),
    P_BOOL("use_tls"),
    P_STR("tls_certificate"),
    P_STR("tls_private_key"),
    P_STR("hostname"),
    P_SIZE("request_body_limit"),
    P_END,
};

static const struct policy_param policy_cfg_cluster_peer[] = {
    P_INT_REQ("id"),
    P_STR("raft"),
    P_STR("link"),
    P_END,
};

static const struct policy_param policy_cfg_cluster_tls[] = {
    P_STR("ca"),
    P_STR("cert"),
    P_STR("key"),
    P_END,
};

/* Cluster-scoped: read when the group is bootstrapped (CLUSTER.md §4.11). */
static const struct policy_param policy_cfg_cluster_settings[] = {
    P_INT("replication_factor"),
    P_INT("min_replicas"),
    P_INT("shards"),
    P_DUR("ping_interval"),
    P_DUR("self_fence_after"),
    P_DUR("node_down_after"),
    P_DUR("failover_grace"),
    P_DUR("accept_timeout"),
    P_DUR("rebalance_after"),
    P_END,
};

static const struct policy_param policy_cfg_cluster[] = {
    P_INT("node_id"),
    P_STR("cluster_id"),
    P_STR("raft_listen"),
    P_STR("link_listen"),
    P_TLIST("peers", policy_cfg_cluster_peer),
    P_STR("data_dir"),
    P_BOOL("bootstrap"),
    P_TABLE("tls", policy_cfg_cluster_tls),
    P_BOOL("insecure_plaintext"),
    P_TABLE("settings", policy_cfg_cluster_settings),
    P_DUR("election_timeout"),
    P_DUR("heartbeat"),
    P_END,
};

static const struct policy_param policy_cfg_listener_domain[] = {
    P_BOOL("relay_to"),
    P_LIST("relay_from"),
    P_BOOL_ENUM("log_oob", policy_cfg_log_disp),
    P_BOOL_ENUM("log_arf", policy_cfg_log_disp),
    P_END,
};

static const struct policy_param policy_cfg_smtp_protocol[] = {
    P_LIST("mx_list"),
    P_END,
};

static const struct policy_param policy_cfg_protocol[] = {
    P_TABLE("smtp", policy_cfg_smtp_protocol),
    P_STR("maildir_path"),
    P_END,
};

static const struct policy_param policy_cfg_queue_config[] = {
    P_DUR("retry_interval"),   P_DUR("max_retry_interval"),
    P_DUR("max_age"),          P_STR("egress_pool"),
    P_STR("max_message_rate"), P_TABLE("protocol", policy_cfg_protocol),
    P_DUR("refresh_interval"), P_DUR("reap_interval"),
    P_STR("strategy"),         P_END,
};

static const struct policy_param policy_cfg_egress_source[] = {
    P_STR_REQ("name"),    P_STR("source_address"),
    P_STR("ehlo_domain"), P_INT("remote_port"),
    P_DUR("ttl"),         P_END,
};

static const struct policy_param policy_cfg_pool_entry[] = {
    P_STR_REQ("name"),
    P_INT_DFLT("weight", 1),
    P_END,
};

static const struct policy_param policy_cfg_egress_pool[] = {
    P_STR_REQ("name"),
    P_TLIST("entries", policy_cfg_pool_entry),
    P_DUR("ttl"),
    P_END,
};

static const struct policy_param policy_cfg_egress_path[] = {
    P_INT_STR("connection_limit"),
    P_STR("max_connection_rate"),
    P_INT("max_deliveries_per_connection"),
    P_STR("max_message_rate"),
    P_INT("max_ready"),
    P_ENUM("enable_tls", policy_cfg_tls_modes),
    P_INT("smtp_port"),
    P_LIST("prohibited_hosts"),
    P_LIST("skip_hosts"),
    P_STR("ehlo_domain"),
    P_BOOL("enable_pipelining"),
    P_BOOL("enable_rset"),
    P_DUR("idle_timeout"),
    P_DUR("connect_timeout"),
    P_DUR("banner_timeout"),
    P_DUR("ehlo_timeout"),
    P_DUR("mail_from_timeout"),
    P_DUR("rcpt_to_timeout"),
    P_DUR("data_timeout"),
    P_DUR("data_dot_timeout"),
    P_DUR("rset_timeout"),
    P_DUR("starttls_timeout"),
    P_STR("smtp_auth_plain_username"),
    P_STR("smtp_auth_plain_password"),
    P_INT("consecutive_connection_failures_before_delay"),
    P_DUR("refresh_interval"),
    P_END,
};

static const struct policy_config_fn policy_config_fns[] = {
    {"start_esmtp_listener", POLICY_FN_HOST_INIT, policy_cfg_esmtp_listener,
     NULL, NULL},
    {"define_spool", POLICY_FN_HOST_INIT, policy_cfg_define_spool, NULL, NULL},
    {"configure_local_logs", POLICY_FN_HOST_INIT, policy_cfg_local_logs, NULL,
     NULL},
    {"dns.configure_resolver", POLICY_FN_HOST_INIT, policy_cfg_resolver, NULL,
     NULL},
    {"start_http_listener", POLICY_FN_HOST_INIT, policy_cfg_http_listener, NULL,
     NULL},
    {"configure_cluster", POLICY_FN_HOST_INIT, policy_cfg_cluster, NULL, NULL},
    {"make_listener_domain", POLICY_FN_OBJECT, policy_cfg_listener_domain,
     "kumo.ListenerDomain", "listener_domain"},
    {"make_queue_config", POLICY_FN_OBJECT, policy_cfg_queue_config,
     "kumo.QueueConfig", "queue_config"},
    {"make_egress_source", POLICY_FN_OBJECT, policy_cfg_egress_source,
     "kumo.EgressSource", "egress_source"},
    {"make_egress_pool", POLICY_FN_OBJECT, policy_cfg_egress_pool,
     "kumo.EgressPool", "egress_pool"},
    {"make_egress_path", POLICY_FN_OBJECT, policy_cfg_egress_path,
     "kumo.EgressPath", "egress_path"},
};

/* Longest parameter path kept for error messages ("a.b[3].c"). */
#define POLICY_CONFIG_PATH_MAX 192

#define POLICY_CONFIG_NFNS                                                     \
    (sizeof(policy_config_fns) / sizeof(policy_config_fns[0]))

static void policy_config_table(lua_State *L, const char *fn, const char *path,
                                int idx, const struct policy_param *params,
                                json_t *obj);

/* End a path that snprintf() cut short with "...". */
static void
policy_config_mark_cut(char *out, size_t n, int len)
{
    if ((len < 0 || (size_t)len >= n) && n > 4) {
        memcpy(out + n - 4, "...", 4);
    }
}

/* "prefix.name" (or "name" at the top level) into out; a longer path is
 * cut short (it only names a parameter in an error message). */
static void
policy_config_path(char *out, size_t n, const char *prefix, const char *name)
{
    int len;

    if (prefix[0] == '\0') {
        len = snprintf(out, n, "%s", name);
    } else {
        len = snprintf(out, n, "%s.%s", prefix, name);
    }
    policy_config_mark_cut(out, n, len);
}

/* "path[i]" into out, cut short like policy_config_path(). */
static void
policy_config_item(char *out, size_t n, const char *path, lua_Integer i)
{
    int len = snprintf(out, n, "%s[%lld]", path, (long long)i);

    policy_config_mark_cut(out, n, len);
}

/* luaL_error() that the compiler knows does not return. The message gets
 * the calling policy's file:line (level 1: the Lua function that called
 * the kumo.* function running now). Only lua_pushfstring's formats. */
__attribute__((format(printf, 2, 3))) _Noreturn static void
policy_config_raise(lua_State *L, const char *fmt, ...)
{
    va_list ap;

    luaL_where(L, 1);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    lua_error(L);
    km_panic("policy: lua_error returned");
}

/* Raise "kumo.<fn>: parameter '<path>' must be <what>". */
_Noreturn static void
policy_config_type_error(lua_State *L, const char *fn, const char *path,
                         const char *what)
{
    policy_config_raise(L, "kumo.%s: parameter '%s' must be %s", fn, path,
                        what);
}

/* [-0, +0] A string value as JSON; raises on invalid UTF-8. */
static json_t *
policy_config_string(lua_State *L, const char *fn, const char *path, int idx)
{
    size_t len;
    const char *s;
    json_t *j;

    if (lua_type(L, idx) != LUA_TSTRING) {
        policy_config_type_error(L, fn, path, "a string");
    }
    s = lua_tolstring(L, idx, &len);
    j = json_stringn(s, len);
    if (j == NULL) {
        policy_config_type_error(L, fn, path, "valid UTF-8");
    }
    return j;
}

/* [-0, +0] */
static json_t *
policy_config_int(lua_State *L, const char *fn, const char *path, int idx)
{
    lua_Integer v;
    int isnum;

    if (lua_type(L, idx) != LUA_TNUMBER) {
        policy_config_type_error(L, fn, path, "an integer");
    }
    v = lua_tointegerx(L, idx, &isnum);
    if (!isnum) {
        policy_config_type_error(L, fn, path, "an integer");
    }
    if (v < 0) {
        policy_config_type_error(L, fn, path, "a non-negative integer");
    }
    return json_integer((json_int_t)v);
}

/* [-0, +0] */
static json_t *
policy_config_duration(lua_State *L, const char *fn, const char *path, int idx)
{
    static const char what[] =
        "a duration such as \"60s\" or \"5 min\", or a number of seconds";
    uint64_t ms;

    if (lua_type(L, idx) == LUA_TNUMBER) {
        double secs = lua_tonumber(L, idx);

        if (!(secs >= 0) || secs > 1e15) {
            policy_config_type_error(L, fn, path, what);
        }
        return json_integer((json_int_t)llround(secs * 1000.0));
    }
    if (lua_type(L, idx) != LUA_TSTRING ||
        km_parse_duration_ms(lua_tostring(L, idx), &ms) != 0 ||
        ms > (uint64_t)INT64_MAX) {
        policy_config_type_error(L, fn, path, what);
    }
    return json_integer((json_int_t)ms);
}

/* [-0, +0] */
static json_t *
policy_config_size(lua_State *L, const char *fn, const char *path, int idx)
{
    static const char what[] = "a size such as \"20MiB\", or a number of bytes";
    uint64_t bytes;

    if (lua_type(L, idx) == LUA_TNUMBER) {
        int isnum;
        lua_Integer v = lua_tointegerx(L, idx, &isnum);

        if (!isnum || v < 0) {
            policy_config_type_error(L, fn, path, what);
        }
        return json_integer((json_int_t)v);
    }
    if (lua_type(L, idx) != LUA_TSTRING ||
        km_parse_size(lua_tostring(L, idx), &bytes) != 0 ||
        bytes > (uint64_t)INT64_MAX) {
        policy_config_type_error(L, fn, path, what);
    }
    return json_integer((json_int_t)bytes);
}

/* [-0, +0] A string or a sequence of strings -> JSON array of strings. */
static json_t *
policy_config_strlist(lua_State *L, const char *fn, const char *path, int idx)
{
    static const char what[] = "a string or a list of strings";
    lua_Integer n;
    json_t *arr;
    int box;

    if (lua_type(L, idx) == LUA_TSTRING) {
        arr = json_array();
        json_array_append_new(arr, policy_config_string(L, fn, path, idx));
        return arr;
    }
    if (lua_type(L, idx) != LUA_TTABLE) {
        policy_config_type_error(L, fn, path, what);
    }
    n = (lua_Integer)lua_rawlen(L, idx);
    /* Every key must be one of 1..n: no holes, no names. */
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 ||
            lua_tointeger(L, -1) > n) {
            policy_config_type_error(L, fn, path, what);
        }
    }
    policy_json_box_push(L, json_array());
    box = lua_gettop(L);
    for (lua_Integer i = 1; i <= n; i++) {
        char item[POLICY_CONFIG_PATH_MAX];

        policy_config_item(item, sizeof(item), path, i);
        lua_rawgeti(L, idx, i);
        json_array_append_new(policy_json_box_get(L, box),
                              policy_config_string(L, fn, item, lua_gettop(L)));
        lua_pop(L, 1);
    }
    arr = policy_json_box_take(L, box);
    lua_pop(L, 1);
    return arr;
}

/* [-1, +1] "must be one of: A, B, C" (or with a prefix). */
static const char *
policy_config_choices(lua_State *L, const char *prefix,
                      const char *const *choices)
{
    luaL_Buffer b;

    luaL_buffinit(L, &b);
    luaL_addstring(&b, prefix);
    luaL_addstring(&b, "one of: ");
    for (size_t i = 0; choices[i] != NULL; i++) {
        if (i > 0) {
            luaL_addstring(&b, ", ");
        }
        luaL_addstring(&b, choices[i]);
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* [-0, +0] */
static json_t *
policy_config_enum(lua_State *L, const char *fn, const char *path, int idx,
                   const char *const *choices, bool allow_bool)
{
    const char *prefix = allow_bool ? "a boolean or " : "";

    if (allow_bool && lua_type(L, idx) == LUA_TBOOLEAN) {
        /* KumoMTA's legacy booleans: false = choices[0], true = [1]. */
        return json_string(choices[lua_toboolean(L, idx) ? 1 : 0]);
    }
    if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = lua_tostring(L, idx);

        for (size_t i = 0; choices[i] != NULL; i++) {
            if (strcmp(s, choices[i]) == 0) {
                return json_string(choices[i]);
            }
        }
    }
    policy_config_type_error(L, fn, path,
                             policy_config_choices(L, prefix, choices));
}

/* [-0, +0] A nested table with schema `fields` -> JSON object. */
static json_t *
policy_config_nested(lua_State *L, const char *fn, const char *path, int idx,
                     const struct policy_param *fields)
{
    json_t *obj;
    int box;

    if (lua_type(L, idx) != LUA_TTABLE) {
        policy_config_type_error(L, fn, path, "a table");
    }
    policy_json_box_push(L, json_object());
    box = lua_gettop(L);
    policy_config_table(L, fn, path, idx, fields, policy_json_box_get(L, box));
    obj = policy_json_box_take(L, box);
    lua_pop(L, 1);
    return obj;
}

/* [-0, +0] A sequence of tables with schema `fields` -> JSON array. */
static json_t *
policy_config_table_list(lua_State *L, const char *fn, const char *path,
                         int idx, const struct policy_param *fields)
{
    lua_Integer n;
    json_t *arr;
    int box;

    if (lua_type(L, idx) != LUA_TTABLE) {
        policy_config_type_error(L, fn, path, "a list of tables");
    }
    n = (lua_Integer)lua_rawlen(L, idx);
    policy_json_box_push(L, json_array());
    box = lua_gettop(L);
    for (lua_Integer i = 1; i <= n; i++) {
        char item[POLICY_CONFIG_PATH_MAX];

        policy_config_item(item, sizeof(item), path, i);
        lua_rawgeti(L, idx, i);
        json_array_append_new(
            policy_json_box_get(L, box),
            policy_config_nested(L, fn, item, lua_gettop(L), fields));
        lua_pop(L, 1);
    }
    arr = policy_json_box_take(L, box);
    lua_pop(L, 1);
    return arr;
}

/* [-0, +0] Any table, converted as is. */
static json_t *
policy_config_any_table(lua_State *L, const char *fn, const char *path, int idx)
{
    char err[256];
    json_t *j;

    if (lua_type(L, idx) != LUA_TTABLE) {
        policy_config_type_error(L, fn, path, "a table");
    }
    if (policy_json_from_lua(L, idx, &j, err, sizeof(err)) != 0) {
        policy_config_raise(L, "kumo.%s: parameter '%s': %s", fn, path, err);
    }
    if (!json_is_object(j)) {
        /* A sequence is not a parameter table. */
        json_decref(j);
        policy_config_type_error(L, fn, path, "a table of named values");
    }
    return j;
}

/* [-0, +0] Validate and convert one value per its parameter schema. */
static json_t *
policy_config_value(lua_State *L, const char *fn, const char *path, int idx,
                    const struct policy_param *pp)
{
    switch (pp->type) {
    case POLICY_PT_STRING:
        return policy_config_string(L, fn, path, idx);
    case POLICY_PT_BOOL:
        if (lua_type(L, idx) != LUA_TBOOLEAN) {
            policy_config_type_error(L, fn, path, "a boolean");
        }
        return json_boolean(lua_toboolean(L, idx));
    case POLICY_PT_INT:
        return policy_config_int(L, fn, path, idx);
    case POLICY_PT_DURATION:
        return policy_config_duration(L, fn, path, idx);
    case POLICY_PT_SIZE:
        return policy_config_size(L, fn, path, idx);
    case POLICY_PT_STRLIST:
        return policy_config_strlist(L, fn, path, idx);
    case POLICY_PT_ENUM:
        return policy_config_enum(L, fn, path, idx, pp->choices, false);
    case POLICY_PT_BOOL_OR_ENUM:
        return policy_config_enum(L, fn, path, idx, pp->choices, true);
    case POLICY_PT_TABLE:
        return policy_config_nested(L, fn, path, idx, pp->fields);
    case POLICY_PT_TABLE_LIST:
        return policy_config_table_list(L, fn, path, idx, pp->fields);
    case POLICY_PT_ANY_TABLE:
        return policy_config_any_table(L, fn, path, idx);
    case POLICY_PT_INT_OR_STRING:
        if (lua_type(L, idx) == LUA_TSTRING) {
            return policy_config_string(L, fn, path, idx);
        }
        if (lua_type(L, idx) != LUA_TNUMBER) {
            policy_config_type_error(L, fn, path, "an integer or a string");
        }
        return policy_config_int(L, fn, path, idx);
    }
    km_panic("policy: bad parameter type %d", (int)pp->type);
}

/* [-0, +0] Validate the table at idx against `params` into obj (rooted in
 * a box by the caller, so raising leaks nothing). */
static void
policy_config_table(lua_State *L, const char *fn, const char *path, int idx,
                    const struct policy_param *params, json_t *obj)
{
    luaL_checkstack(L, 8, "parameters nested too deep");
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const struct policy_param *pp = NULL;
        char full[POLICY_CONFIG_PATH_MAX];
        const char *key;

        if (lua_type(L, -2) != LUA_TSTRING) {
            policy_config_raise(
                L, "kumo.%s: parameter names must be strings, not %s", fn,
                luaL_typename(L, -2));
        }
        key = lua_tostring(L, -2);
        policy_config_path(full, sizeof(full), path, key);
        for (size_t i = 0; params[i].name != NULL; i++) {
            if (strcmp(params[i].name, key) == 0) {
                pp = &params[i];
                break;
            }
        }
        if (pp == NULL) {
            policy_config_raise(
                L, "kumo.%s: unknown or unsupported parameter '%s'", fn, full);
        }
        json_object_set_new(
            obj, pp->name, policy_config_value(L, fn, full, lua_gettop(L), pp));
        lua_pop(L, 1);
    }
    for (size_t i = 0; params[i].name != NULL; i++) {
        const struct policy_param *pp = &params[i];
        char full[POLICY_CONFIG_PATH_MAX];

        if (json_object_get(obj, pp->name) != NULL) {
            continue;
        }
        if (pp->required) {
            policy_config_path(full, sizeof(full), path, pp->name);
            policy_config_raise(L, "kumo.%s: missing required parameter '%s'",
                                fn, full);
        }
        if (pp->has_default) {
            json_object_set_new(obj, pp->name, json_integer(pp->dflt));
        }
    }
}

/* The function's schema entry, from its upvalue. */
static const struct policy_config_fn *
policy_config_self(lua_State *L)
{
    lua_Integer i = lua_tointeger(L, lua_upvalueindex(1));

    KM_ASSERT(i >= 0 && (size_t)i < POLICY_CONFIG_NFNS);
    return &policy_config_fns[i];
}

/* [-0, +1] Validate argument 1 into a boxed JSON object. */
static int
policy_config_validate(lua_State *L, const struct policy_config_fn *f)
{
    int box;

    if (lua_type(L, 1) != LUA_TTABLE) {
        policy_config_raise(L,
                            "kumo.%s: expected a table of parameters, got %s",
                            f->name, luaL_typename(L, 1));
    }
    lua_settop(L, 1);
    policy_json_box_push(L, json_object());
    box = lua_gettop(L);
    policy_config_table(L, f->name, "", 1, f->params,
                        policy_json_box_get(L, box));
    return box;
}

/* The registry table mapping each kumo.make_*{} object to the boxed JSON
 * it was validated into (weak keys: an object's JSON goes with it). */
static const char policy_config_objects_key[] = "kumo.objects";

/* [-0, +1] */
static void
policy_config_push_objects(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, policy_config_objects_key) ==
        LUA_TTABLE) {
        return;
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, policy_config_objects_key);
}

int
policy_config_object_json(lua_State *L, int idx, json_t **out, char *err,
                          size_t errlen)
{
    int rv = 1;

    (void)err;
    (void)errlen;
    POLICY_STACK_ENTER(L);
    idx = lua_absindex(L, idx);
    policy_config_push_objects(L);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) == LUA_TUSERDATA) {
        json_t *j = policy_json_box_get(L, lua_gettop(L));
        if (j != NULL) {
            /* The validated values, typed as the schema made them. */
            *out = json_deep_copy(j);
            rv = 0;
        }
    }
    lua_pop(L, 2);
    POLICY_STACK_LEAVE(L, 0);
    return rv;
}

/* kumo.start_esmtp_listener{...} and the other init-only host calls. */
static int
l_config_host_call(lua_State *L)
{
    const struct policy_config_fn *f = policy_config_self(L);
    struct policy *p = policy_from_lua(L);
    char err[512] = "";
    json_t *params;
    int box, rv = 0;

    if (p->sealed) {
        return luaL_error(L, "kumo.%s: may only be called from the init event",
                          f->name);
    }
    box = policy_config_validate(L, f);
    params = policy_json_box_take(L, box);
    if (p->host.config != NULL) {
        rv = p->host.config(p->host.ctx, f->name, params, err, sizeof(err));
    }
    json_decref(params);
    if (rv != 0) {
        return luaL_error(L, "kumo.%s: %s", f->name,
                          err[0] != '\0' ? err : km_strerror(rv));
    }
    return 0;
}

/* kumo.make_listener_domain{...} and the other object constructors. */
static int
l_config_make_object(lua_State *L)
{
    const struct policy_config_fn *f = policy_config_self(L);
    int box = policy_config_validate(L, f);
    json_t *j = policy_json_box_get(L, box);

    policy_json_push(L, j);
    luaL_setmetatable(L, f->mt);
    /* Remember the JSON for when a handler returns the object. */
    json_object_set_new(j, "__kind", json_string(f->kind_name));
    policy_config_push_objects(L);
    lua_pushvalue(L, -2);
    lua_pushvalue(L, box);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    return 1;
}

void
policy_open_config(lua_State *L, int idx)
{
    POLICY_STACK_ENTER(L);
    idx = lua_absindex(L, idx);
    for (size_t i = 0; i < POLICY_CONFIG_NFNS; i++) {
        const struct policy_config_fn *f = &policy_config_fns[i];
        const char *name = f->name;
        int target = idx;

        if (f->kind == POLICY_FN_OBJECT) {
            luaL_newmetatable(L, f->mt);
            lua_pushstring(L, f->kind_name);
            lua_setfield(L, -2, "__kind");
            lua_pop(L, 1);
        }
        if (strncmp(name, "dns.", 4) == 0) {
            luaL_getsubtable(L, idx, "dns");
            target = lua_gettop(L);
            name += 4;
        }
        lua_pushinteger(L, (lua_Integer)i);
        lua_pushcclosure(L,
                         f->kind == POLICY_FN_OBJECT ? l_config_make_object
                                                     : l_config_host_call,
                         1);
        lua_setfield(L, target, name);
        if (target != idx) {
            lua_pop(L, 1);
        }
    }
    POLICY_STACK_LEAVE(L, 0);
}
