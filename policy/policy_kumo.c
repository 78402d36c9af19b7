/* policy_kumo.c - the general kumo.* functions: kumo.reject and
 * kumo.disconnect (errors that policy_call turns into KM_EREJECT), kumo.on
 * (handlers are kept in the registry table POLICY_REG_HANDLERS, read by
 * policy.c), the kumo.log_* diagnostics, JSON helpers (kumo.json_* and
 * kumo.serde.json_*) and kumo.version. Builds the `kumo` table; the config
 * functions live in policy_config.c. Loop thread only. */
#include "policy_int.h"

#include <stdlib.h>

#include <lauxlib.h>

#include "base/km.h"
#include "base/log.h"

/* kumo.on(event, fn) */
static int
l_kumo_on(lua_State *L)
{
    const char *event = luaL_checkstring(L, 1);

    luaL_checktype(L, 2, LUA_TFUNCTION);
    policy_events_check(L, event);
    policy_events_record(L, event);
    lua_getfield(L, LUA_REGISTRYINDEX, POLICY_REG_HANDLERS);
    if (policy_event_is_multi(event)) {
        if (lua_getfield(L, -1, event) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, event);
        }
        lua_pushvalue(L, 2);
        lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
        lua_pop(L, 1);
    } else {
        lua_createtable(L, 1, 0);
        lua_pushvalue(L, 2);
        lua_rawseti(L, -2, 1);
        lua_setfield(L, -2, event);
    }
    lua_pop(L, 1);
    return 0;
}

/* Raise the kumo.Reject table {code, text, disconnect}. */
static int
policy_kumo_raise_reject(lua_State *L, bool disconnect)
{
    lua_Integer code = luaL_checkinteger(L, 1);
    const char *text = luaL_optstring(L, 2, "");

    luaL_argcheck(L, code >= 200 && code <= 599, 1,
                  "SMTP reply code must be between 200 and 599");
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, text);
    lua_setfield(L, -2, "text");
    lua_pushboolean(L, disconnect || code == 421);
    lua_setfield(L, -2, "disconnect");
    luaL_setmetatable(L, POLICY_MT_REJECT);
    return lua_error(L);
}

/* kumo.reject(code, text) */
static int
l_kumo_reject(lua_State *L)
{
    return policy_kumo_raise_reject(L, false);
}

/* kumo.disconnect(code, text [, mode]): the mode is accepted for
 * compatibility; every mode disconnects after the reply. */
static int
l_kumo_disconnect(lua_State *L)
{
    return policy_kumo_raise_reject(L, true);
}

/* [-0, +1] Join all arguments with spaces, tostring()-style. */
static const char *
policy_kumo_join_args(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;

    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) {
            luaL_addchar(&b, ' ');
        }
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

static int
l_kumo_log_error(lua_State *L)
{
    LOG_ERROR("policy: %s", policy_kumo_join_args(L));
    return 0;
}

static int
l_kumo_log_warn(lua_State *L)
{
    LOG_WARN("policy: %s", policy_kumo_join_args(L));
    return 0;
}

static int
l_kumo_log_info(lua_State *L)
{
    LOG_INFO("policy: %s", policy_kumo_join_args(L));
    return 0;
}

static int
l_kumo_log_debug(lua_State *L)
{
    LOG_DEBUG("policy: %s", policy_kumo_join_args(L));
    return 0;
}

/* [-0, +1] Encode the value at 1 with jansson `flags`. */
static int
policy_kumo_encode(lua_State *L, size_t flags)
{
    char err[256];
    json_t *j;
    char *s;

    luaL_checkany(L, 1);
    if (policy_json_from_lua(L, 1, &j, err, sizeof(err)) != 0) {
        return luaL_error(L, "json_encode: %s", err);
    }
    s = json_dumps(j, flags | JSON_ENCODE_ANY);
    json_decref(j);
    if (s == NULL) {
        return luaL_error(L, "json_encode: cannot encode the value");
    }
    lua_pushstring(L, s);
    free(s);
    return 1;
}

/* kumo.json_encode(v) -> compact JSON text */
static int
l_kumo_json_encode(lua_State *L)
{
    return policy_kumo_encode(L, JSON_COMPACT);
}

/* kumo.json_encode_pretty(v) -> indented JSON text */
static int
l_kumo_json_encode_pretty(lua_State *L)
{
    return policy_kumo_encode(L, JSON_INDENT(2));
}

/* kumo.json_decode(text) -> Lua value */
static int
l_kumo_json_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    json_error_t jerr;
    json_t *j;

    j = json_loadb(s, len, JSON_DECODE_ANY, &jerr);
    if (j == NULL) {
        return luaL_error(L, "json_decode: %s at line %d column %d", jerr.text,
                          jerr.line, jerr.column);
    }
    /* The box frees j even if pushing raises (too deep). */
    policy_json_box_push(L, j);
    policy_json_push(L, j);
    return 1;
}

/* kumo.version() */
static int
l_kumo_version(lua_State *L)
{
    lua_pushstring(L, KUMO_VERSION);
    return 1;
}

static const luaL_Reg policy_kumo_funcs[] = {
    {"on", l_kumo_on},
    {"reject", l_kumo_reject},
    {"disconnect", l_kumo_disconnect},
    {"log_error", l_kumo_log_error},
    {"log_warn", l_kumo_log_warn},
    {"log_info", l_kumo_log_info},
    {"log_debug", l_kumo_log_debug},
    {"json_encode", l_kumo_json_encode},
    {"json_encode_pretty", l_kumo_json_encode_pretty},
    {"json_decode", l_kumo_json_decode},
    {"json_parse", l_kumo_json_decode},
    {"version", l_kumo_version},
    {NULL, NULL},
};

static const luaL_Reg policy_kumo_serde_funcs[] = {
    {"json_encode", l_kumo_json_encode},
    {"json_encode_pretty", l_kumo_json_encode_pretty},
    {"json_parse", l_kumo_json_decode},
    {"json_decode", l_kumo_json_decode},
    {NULL, NULL},
};

void
policy_open_kumo(lua_State *L)
{
    POLICY_STACK_ENTER(L);
    luaL_newlib(L, policy_kumo_funcs);
    luaL_newlib(L, policy_kumo_serde_funcs);
    lua_setfield(L, -2, "serde");
    lua_newtable(L);
    lua_setfield(L, -2, "dns");
    policy_open_config(L, lua_gettop(L));
    policy_open_lib(L, lua_gettop(L));
    policy_open_dkim(L, lua_gettop(L));
    POLICY_STACK_LEAVE(L, 1);
}
