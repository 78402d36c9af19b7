/* policy_memoize.c - kumo.memoize(fn, {name, ttl, capacity}): a function
 * that caches fn's results per set of arguments, for ttl, keeping at most
 * capacity entries (the eldest goes first). kumod has exactly one Lua state
 * (policy.h), so one cache per name is shared by every handler and every
 * memoized function created under that name, for the life of the process.
 * The cache lives in the registry:
 *   kumo.memoize[name] = { ttl_ms, capacity, entries = { key -> entry },
 *                          order = { seq -> key }, head, tail, count }
 *   entry = { expires_ms, seq, n, [1..n] = results }
 * The key is the arguments as JSON text, so equal strings, numbers and
 * tables of them share an entry; a function or userdata argument is an
 * error. Results are cached as the Lua values fn returned: a returned
 * table is shared by every caller, as KumoMTA's cached values are
 * read-only. An error raised by fn is not cached. Loop thread only. */
#include "policy_int.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/km.h"

#define POLICY_REG_MEMOIZE "kumo.memoize"

/* [-0, +1] The cache table named at idx, created if needed. */
static void
policy_memoize_push_cache(lua_State *L, int name_idx)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, POLICY_REG_MEMOIZE);
    lua_pushvalue(L, name_idx);
    if (lua_rawget(L, -2) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 6);
        lua_newtable(L);
        lua_setfield(L, -2, "entries");
        lua_newtable(L);
        lua_setfield(L, -2, "order");
        lua_pushinteger(L, 1);
        lua_setfield(L, -2, "head");
        lua_pushinteger(L, 0);
        lua_setfield(L, -2, "tail");
        lua_pushinteger(L, 0);
        lua_setfield(L, -2, "count");
        lua_pushvalue(L, name_idx);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
    }
    lua_remove(L, -2);
}

static lua_Integer
policy_memoize_geti(lua_State *L, int t, const char *k)
{
    lua_Integer v;

    lua_getfield(L, t, k);
    v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

static void
policy_memoize_seti(lua_State *L, int t, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, t, k);
}

/* [-0, +1] The cache key of the call's arguments 1..n, as JSON text. */
static void
policy_memoize_push_key(lua_State *L, const char *name, int n)
{
    json_t *arr = json_array();
    char err[256];
    char *s;

    policy_json_box_push(L, arr);
    for (int i = 1; i <= n; i++) {
        json_t *j;

        if (policy_json_from_lua(L, i, &j, err, sizeof(err)) != 0) {
            luaL_error(L,
                       "kumo.memoize: '%s': argument #%d cannot be a cache "
                       "key: %s",
                       name, i, err);
        }
        json_array_append_new(arr, j);
    }
    s = json_dumps(arr, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    KM_ASSERT(s != NULL);
    lua_pop(L, 1);
    lua_pushstring(L, s);
    free(s);
}

/* Drop the eldest live entries until count < capacity. */
static void
policy_memoize_evict(lua_State *L, int cache, int entries, int order)
{
    lua_Integer cap = policy_memoize_geti(L, cache, "capacity");
    lua_Integer count = policy_memoize_geti(L, cache, "count");
    lua_Integer head = policy_memoize_geti(L, cache, "head");
    lua_Integer tail = policy_memoize_geti(L, cache, "tail");

    while (count >= cap && head <= tail) {
        lua_Integer seq = head++;

        if (lua_rawgeti(L, order, seq) == LUA_TSTRING) {
            lua_pushvalue(L, -1);
            /* Only if the key's entry is still the one of this seq. */
            if (lua_rawget(L, entries) == LUA_TTABLE &&
                policy_memoize_geti(L, lua_gettop(L), "seq") == seq) {
                lua_pop(L, 1);
                lua_pushnil(L);
                lua_rawset(L, entries);
                count--;
            } else {
                lua_pop(L, 2);
            }
        } else {
            lua_pop(L, 1);
        }
        lua_pushnil(L);
        lua_rawseti(L, order, seq);
    }
    policy_memoize_seti(L, cache, "count", count);
    policy_memoize_seti(L, cache, "head", head);
}

/* The memoized function: upvalues fn, name, ttl_ms, capacity. */
static int
l_memoize_call(lua_State *L)
{
    int nargs = lua_gettop(L);
    const char *name = lua_tostring(L, lua_upvalueindex(2));
    uint64_t now = km_now_mono_ms();
    int cache, entries, order, key, nres, base;
    lua_Integer seq;

    policy_memoize_push_cache(L, lua_upvalueindex(2));
    cache = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(3));
    lua_setfield(L, cache, "ttl_ms");
    lua_pushvalue(L, lua_upvalueindex(4));
    lua_setfield(L, cache, "capacity");
    lua_getfield(L, cache, "entries");
    entries = lua_gettop(L);
    lua_getfield(L, cache, "order");
    order = lua_gettop(L);
    policy_memoize_push_key(L, name, nargs);
    key = lua_gettop(L);

    lua_pushvalue(L, key);
    if (lua_rawget(L, entries) == LUA_TTABLE) {
        int e = lua_gettop(L);

        if ((uint64_t)policy_memoize_geti(L, e, "expires_ms") > now) {
            lua_Integer n = policy_memoize_geti(L, e, "n");

            luaL_checkstack(L, (int)n, "too many results");
            for (lua_Integer i = 1; i <= n; i++) {
                lua_rawgeti(L, e, i);
            }
            return (int)n;
        }
        /* Expired: forget it; its order slot is skipped when reached. */
        lua_pushvalue(L, key);
        lua_pushnil(L);
        lua_rawset(L, entries);
        policy_memoize_seti(L, cache, "count",
                            policy_memoize_geti(L, cache, "count") - 1);
    }
    lua_pop(L, 1);

    /* A miss: call fn with the original arguments; its errors propagate. */
    base = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    for (int i = 1; i <= nargs; i++) {
        lua_pushvalue(L, i);
    }
    lua_call(L, nargs, LUA_MULTRET);
    nres = lua_gettop(L) - base;

    policy_memoize_evict(L, cache, entries, order);
    seq = policy_memoize_geti(L, cache, "tail") + 1;
    lua_createtable(L, nres, 3);
    for (int i = 1; i <= nres; i++) {
        lua_pushvalue(L, base + i);
        lua_rawseti(L, -2, i);
    }
    policy_memoize_seti(L, lua_gettop(L), "n", nres);
    policy_memoize_seti(L, lua_gettop(L), "seq", seq);
    policy_memoize_seti(
        L, lua_gettop(L), "expires_ms",
        (lua_Integer)(now + (uint64_t)lua_tointeger(L, lua_upvalueindex(3))));
    lua_pushvalue(L, key);
    lua_insert(L, -2);
    lua_rawset(L, entries);
    lua_pushvalue(L, key);
    lua_rawseti(L, order, seq);
    policy_memoize_seti(L, cache, "tail", seq);
    policy_memoize_seti(L, cache, "count",
                        policy_memoize_geti(L, cache, "count") + 1);
    return nres;
}

/* kumo.memoize(fn, {name = ..., ttl = ..., capacity = ...}) */
static int
l_kumo_memoize(lua_State *L)
{
    lua_Integer capacity;
    uint64_t ttl_ms = 0;
    const char *name;

    luaL_checktype(L, 1, LUA_TFUNCTION);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 2) != 0) {
        const char *k =
            lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (k == NULL || (strcmp(k, "name") != 0 && strcmp(k, "ttl") != 0 &&
                          strcmp(k, "capacity") != 0)) {
            return luaL_error(L, "kumo.memoize: unknown parameter '%s'",
                              k != NULL ? k : luaL_typename(L, -2));
        }
        lua_pop(L, 1);
    }
    if (lua_getfield(L, 2, "name") != LUA_TSTRING) {
        return luaL_error(L, "kumo.memoize: 'name' is required (a string)");
    }
    name = lua_tostring(L, -1);
    switch (lua_getfield(L, 2, "ttl")) {
    case LUA_TNUMBER:
        if (lua_tonumber(L, -1) < 0) {
            return luaL_error(L, "kumo.memoize: 'ttl' must not be negative");
        }
        ttl_ms = (uint64_t)(lua_tonumber(L, -1) * 1000.0);
        break;
    case LUA_TSTRING:
        if (km_parse_duration_ms(lua_tostring(L, -1), &ttl_ms) != 0) {
            return luaL_error(L,
                              "kumo.memoize: 'ttl': '%s' is not a duration "
                              "such as \"5 minutes\" or \"10s\"",
                              lua_tostring(L, -1));
        }
        break;
    default:
        return luaL_error(L, "kumo.memoize: 'ttl' is required (a duration "
                             "such as \"5 minutes\")");
    }
    if (lua_getfield(L, 2, "capacity") != LUA_TNUMBER ||
        !lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
        return luaL_error(L, "kumo.memoize: 'capacity' is required (an "
                             "integer of at least 1)");
    }
    capacity = lua_tointeger(L, -1);
    lua_pushvalue(L, 1);
    lua_pushstring(L, name);
    lua_pushinteger(L, (lua_Integer)ttl_ms);
    lua_pushinteger(L, capacity);
    lua_pushcclosure(L, l_memoize_call, 4);
    return 1;
}

void
policy_open_memoize(lua_State *L, int kumo)
{
    POLICY_STACK_ENTER(L);
    kumo = lua_absindex(L, kumo);
    lua_pushcfunction(L, l_kumo_memoize);
    lua_setfield(L, kumo, "memoize");
    POLICY_STACK_LEAVE(L, 0);
}
