/* policy_connmeta.c - the "kumo.ConnectionMeta" userdata: a view of the
 * host's per-connection metadata object (a jansson object, referenced while
 * the userdata lives). get_meta(k) returns a Lua copy of a value,
 * set_meta(k, v) writes into the host's object. Loop thread only. */
#include "policy_int.h"

#include <lauxlib.h>

struct policy_connmeta {
    json_t *obj; /* one reference, released by __gc */
};

void
policy_connmeta_push(lua_State *L, json_t *obj)
{
    struct policy_connmeta *cm;

    POLICY_STACK_ENTER(L);
    cm = lua_newuserdatauv(L, sizeof(*cm), 0);
    cm->obj = NULL;
    luaL_setmetatable(L, POLICY_MT_CONN_META);
    cm->obj = json_incref(obj);
    POLICY_STACK_LEAVE(L, 1);
}

json_t *
policy_connmeta_test(lua_State *L, int idx)
{
    struct policy_connmeta *cm = luaL_testudata(L, idx, POLICY_MT_CONN_META);

    return cm != NULL ? cm->obj : NULL;
}

/* conn_meta:get_meta(key) -> value or nil */
static int
l_connmeta_get_meta(lua_State *L)
{
    struct policy_connmeta *cm = luaL_checkudata(L, 1, POLICY_MT_CONN_META);
    const char *key = luaL_checkstring(L, 2);

    policy_json_push(L, json_object_get(cm->obj, key));
    return 1;
}

/* conn_meta:set_meta(key, value); nil stores JSON null. */
static int
l_connmeta_set_meta(lua_State *L)
{
    struct policy_connmeta *cm = luaL_checkudata(L, 1, POLICY_MT_CONN_META);
    const char *key = luaL_checkstring(L, 2);
    char err[256];
    json_t *v;

    if (policy_json_from_lua(L, 3, &v, err, sizeof(err)) != 0) {
        return luaL_error(L, "set_meta('%s'): %s", key, err);
    }
    if (json_object_set_new(cm->obj, key, v) != 0) {
        return luaL_error(L, "set_meta: key is not valid UTF-8");
    }
    return 0;
}

static int
l_connmeta_gc(lua_State *L)
{
    struct policy_connmeta *cm = luaL_checkudata(L, 1, POLICY_MT_CONN_META);

    json_decref(cm->obj);
    cm->obj = NULL;
    return 0;
}

static int
l_connmeta_tostring(lua_State *L)
{
    lua_pushliteral(L, "ConnectionMeta");
    return 1;
}

static const luaL_Reg policy_connmeta_methods[] = {
    {"get_meta", l_connmeta_get_meta},
    {"set_meta", l_connmeta_set_meta},
    {NULL, NULL},
};

void
policy_open_connmeta(lua_State *L)
{
    POLICY_STACK_ENTER(L);
    luaL_newmetatable(L, POLICY_MT_CONN_META);
    luaL_newlib(L, policy_connmeta_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_connmeta_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_connmeta_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    POLICY_STACK_LEAVE(L, 0);
}
