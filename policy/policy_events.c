/* policy_events.c - the event names kumo.on() accepts. Every event KumoMTA
 * documents is listed with what kumod does with it: fired (the daemon calls
 * it), not supported yet (kumod has no such hook: registering a handler
 * would be silently ignored, so it is an error), or owned by another
 * KumoMTA daemon (tsa-daemon, proxy-server). A name in none of these lists
 * is an error too, unless the host declared it (policy_declare_event()).
 * Also remembers where each kumo.on call came from, for
 * kumo.get_event_registrars(name). Loop thread only. */
#include "policy_int.h"

#include <string.h>

#include <lauxlib.h>

/* The registry set of names the host declared (name -> true). */
#define POLICY_REG_DECLARED "kumo.declared_events"
/* The registry table event -> list of the call stacks of its kumo.on
 * calls, each a list of "short_src:line" strings, innermost first. */
#define POLICY_REG_REGISTRARS "kumo.event_registrars"

/* Events the daemon fires (node/: kumod.c, smtp_server_*.c, queue.c,
 * egress*.c, http_api*.c, admin.c). */
static const char *const policy_events_fired[] = {
    "pre_init",
    "init",
    "smtp_server_connection_accepted",
    "smtp_server_ehlo",
    "smtp_server_auth_plain",
    "smtp_server_mail_from",
    "smtp_server_rcpt_to",
    "get_listener_domain",
    "smtp_server_message_received",
    "http_message_generated",
    "http_server_validate_auth_basic",
    "spool_message_enumerated",
    "get_queue_config",
    "get_egress_pool",
    "get_egress_source",
    "get_egress_path_config",
    "rebind_message",
    NULL,
};

/* KumoMTA's kumod events that kumod does not fire yet. */
static const char *const policy_events_unsupported[] = {
    "validate_config",
    "main",
    "shutdown_logging",
    "smtp_server_get_dynamic_parameters",
    "smtp_server_data",
    "smtp_server_split_transaction",
    "smtp_server_message_deferred_inject",
    "smtp_server_rewrite_response",
    "http_server_validate_auth_bearer",
    "http_message_injected",
    "get_acl_definition",
    "get_site_config",
    "throttle_insert_ready_queue",
    "requeue_message",
    "smtp_client_rewrite_delivery_status",
    "should_enqueue_log_record",
    "xfer_message_received",
    NULL,
};

/* Events of KumoMTA's other daemons, and what kumod offers instead. */
static const struct {
    const char *name;
    const char *daemon;
    const char *instead;
} policy_events_foreign[] = {
    {"tsa_init", "tsa-daemon",
     "kumod has no TSA daemon; configure shaping with get_egress_path_config"},
    {"tsa_load_shaping_data", "tsa-daemon",
     "kumod has no TSA daemon; configure shaping with get_egress_path_config"},
    {"proxy_init", "proxy-server",
     "kumod has no SOCKS5 proxy server; define sources with "
     "kumo.make_egress_source{} in get_egress_source"},
    {"proxy_server_auth_rfc1929", "proxy-server",
     "kumod has no SOCKS5 proxy server; define sources with "
     "kumo.make_egress_source{} in get_egress_source"},
    {NULL, NULL, NULL},
};

static bool
policy_events_in(const char *const *list, const char *event)
{
    for (size_t i = 0; list[i] != NULL; i++) {
        if (strcmp(list[i], event) == 0) {
            return true;
        }
    }
    return false;
}

/* [-0, +0] Was `event` declared by the host? */
static bool
policy_events_declared(lua_State *L, const char *event)
{
    bool is;

    if (lua_getfield(L, LUA_REGISTRYINDEX, POLICY_REG_DECLARED) != LUA_TTABLE) {
        lua_pop(L, 1);
        return false;
    }
    is = lua_getfield(L, -1, event) == LUA_TBOOLEAN;
    lua_pop(L, 2);
    return is;
}

void
policy_declare_event(struct policy *p, const char *event)
{
    lua_State *L = p->L;

    POLICY_STACK_ENTER(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, POLICY_REG_DECLARED);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, event);
    lua_pop(L, 1);
    POLICY_STACK_LEAVE(L, 0);
}

int
policy_events_check(lua_State *L, const char *event)
{
    if (policy_events_in(policy_events_fired, event) ||
        policy_events_declared(L, event)) {
        return 0;
    }
    if (policy_events_in(policy_events_unsupported, event)) {
        return luaL_error(L,
                          "kumo.on: event '%s' is not supported by kumod yet: "
                          "a handler for it would never be called "
                          "(see docs/kumomta-differences.md)",
                          event);
    }
    if (strncmp(event, "log_disposition_", 16) == 0) {
        return luaL_error(L,
                          "kumo.on: event '%s' is not supported by kumod yet: "
                          "kumo.configure_log_disposition_hook does not exist "
                          "(see docs/kumomta-differences.md)",
                          event);
    }
    for (size_t i = 0; policy_events_foreign[i].name != NULL; i++) {
        if (strcmp(policy_events_foreign[i].name, event) == 0) {
            return luaL_error(L,
                              "kumo.on: event '%s' belongs to KumoMTA's %s: %s",
                              event, policy_events_foreign[i].daemon,
                              policy_events_foreign[i].instead);
        }
    }
    return luaL_error(L,
                      "kumo.on: unknown event '%s': kumod fires no event of "
                      "that name (see docs/policy.md, Events)",
                      event);
}

void
policy_events_record(lua_State *L, const char *event)
{
    lua_Debug ar;
    lua_Integer n = 0;

    POLICY_STACK_ENTER(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, POLICY_REG_REGISTRARS);
    luaL_getsubtable(L, -1, event);
    lua_newtable(L);
    /* Level 0 is kumo.on itself; 1 is the code that called it. */
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        lua_getinfo(L, "Sl", &ar);
        lua_pushfstring(L, "%s:%d", ar.short_src, ar.currentline);
        lua_rawseti(L, -2, ++n);
    }
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 2);
    POLICY_STACK_LEAVE(L, 0);
}

/* kumo.get_event_registrars(name) -> { stack, ... } in registration order */
static int
l_kumo_get_event_registrars(lua_State *L)
{
    const char *event = luaL_checkstring(L, 1);

    luaL_getsubtable(L, LUA_REGISTRYINDEX, POLICY_REG_REGISTRARS);
    if (lua_getfield(L, -1, event) != LUA_TTABLE) {
        lua_newtable(L);
        return 1;
    }
    /* A copy, so that the policy cannot rewrite the record. */
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_Integer m;

        lua_rawgeti(L, -2, i);
        m = (lua_Integer)lua_rawlen(L, -1);
        lua_createtable(L, (int)m, 0);
        for (lua_Integer k = 1; k <= m; k++) {
            lua_rawgeti(L, -2, k);
            lua_rawseti(L, -2, k);
        }
        lua_rawseti(L, -3, i);
        lua_pop(L, 1);
    }
    return 1;
}

void
policy_open_events(lua_State *L, int kumo)
{
    POLICY_STACK_ENTER(L);
    kumo = lua_absindex(L, kumo);
    lua_pushcfunction(L, l_kumo_get_event_registrars);
    lua_setfield(L, kumo, "get_event_registrars");
    POLICY_STACK_LEAVE(L, 0);
}
