/* policy_json.c - conversion between Lua values and jansson JSON, and the
 * "kumo.JsonBox" userdata that owns a json_t while Lua code may raise.
 * Integers stay integers, floats become reals, tables whose keys are
 * exactly 1..n become arrays, other tables (and the empty table) objects.
 * Tables made by kumo.make_*{} carry "__kind" in their metatable, which is
 * copied into the object. Loop thread only. */
#include "policy_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "base/km.h"

struct policy_json_box {
    json_t *j;
};

static int
l_json_box_gc(lua_State *L)
{
    struct policy_json_box *box = luaL_checkudata(L, 1, POLICY_MT_JSON_BOX);

    json_decref(box->j);
    box->j = NULL;
    return 0;
}

void
policy_open_json(lua_State *L)
{
    POLICY_STACK_ENTER(L);
    luaL_newmetatable(L, POLICY_MT_JSON_BOX);
    lua_pushcfunction(L, l_json_box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    POLICY_STACK_LEAVE(L, 0);
}

void
policy_json_box_push(lua_State *L, json_t *j)
{
    struct policy_json_box *box;

    POLICY_STACK_ENTER(L);
    /* Allocation may raise: do not leak j if it does. */
    if (!lua_checkstack(L, 2)) {
        json_decref(j);
        luaL_error(L, "policy: out of Lua stack");
    }
    box = lua_newuserdatauv(L, sizeof(*box), 0);
    box->j = j;
    luaL_setmetatable(L, POLICY_MT_JSON_BOX);
    POLICY_STACK_LEAVE(L, 1);
}

json_t *
policy_json_box_get(lua_State *L, int idx)
{
    struct policy_json_box *box = luaL_checkudata(L, idx, POLICY_MT_JSON_BOX);

    return box->j;
}

json_t *
policy_json_box_take(lua_State *L, int idx)
{
    struct policy_json_box *box = luaL_checkudata(L, idx, POLICY_MT_JSON_BOX);
    json_t *j = box->j;

    box->j = NULL;
    return j;
}

/* ---- Lua -> JSON ---- */

static int policy_json_value(lua_State *L, int idx, int depth, json_t **out,
                             char *err, size_t errlen);

/* Does the table at idx hold exactly the keys 1..n (n > 0)? [-0, +0] */
static bool
policy_json_is_array(lua_State *L, int idx, size_t *n_out)
{
    size_t count = 0;
    lua_Integer max = 0;

    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pop(L, 1);
            return false;
        }
        if (lua_tointeger(L, -1) > max) {
            max = lua_tointeger(L, -1);
        }
        count++;
    }
    *n_out = count;
    return count > 0 && (lua_Integer)count == max;
}

/* [-0, +0] */
static int
policy_json_array(lua_State *L, int idx, size_t n, int depth, json_t **out,
                  char *err, size_t errlen)
{
    json_t *arr = json_array();

    for (size_t i = 1; i <= n; i++) {
        json_t *v;
        int rv;

        lua_rawgeti(L, idx, (lua_Integer)i);
        rv = policy_json_value(L, lua_gettop(L), depth + 1, &v, err, errlen);
        lua_pop(L, 1);
        if (rv != 0) {
            json_decref(arr);
            return rv;
        }
        json_array_append_new(arr, v);
    }
    *out = arr;
    return 0;
}

/* Copy the metatable's "__kind" of the table at idx into obj. [-0, +0] */
static void
policy_json_add_kind(lua_State *L, int idx, json_t *obj)
{
    if (!lua_getmetatable(L, idx)) {
        return;
    }
    lua_pushliteral(L, "__kind");
    lua_rawget(L, -2);
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char *kind = lua_tolstring(L, -1, &len);
        json_object_set_new(obj, "__kind", json_stringn(kind, len));
    }
    lua_pop(L, 2);
}

/* [-0, +0] */
static int
policy_json_object(lua_State *L, int idx, int depth, json_t **out, char *err,
                   size_t errlen)
{
    json_t *obj = json_object();

    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        char num[32];
        const char *key;
        size_t klen;
        json_t *v;
        int rv;

        if (lua_type(L, -2) == LUA_TSTRING) {
            key = lua_tolstring(L, -2, &klen);
        } else if (lua_isinteger(L, -2)) {
            /* Sparse arrays: keep the index as a decimal key. */
            snprintf(num, sizeof(num), "%lld", (long long)lua_tointeger(L, -2));
            key = num;
            klen = strlen(num);
        } else {
            snprintf(err, errlen, "table keys must be strings, not %s",
                     luaL_typename(L, -2));
            lua_pop(L, 2);
            json_decref(obj);
            return KM_EINVAL;
        }
        rv = policy_json_value(L, lua_gettop(L), depth + 1, &v, err, errlen);
        if (rv != 0) {
            lua_pop(L, 2);
            json_decref(obj);
            return rv;
        }
        if (json_object_setn_new(obj, key, klen, v) != 0) {
            snprintf(err, errlen, "table key is not valid UTF-8");
            lua_pop(L, 2);
            json_decref(obj);
            return KM_EINVAL;
        }
        lua_pop(L, 1);
    }
    policy_json_add_kind(L, idx, obj);
    *out = obj;
    return 0;
}

/* [-0, +0] */
static int
policy_json_table(lua_State *L, int idx, int depth, json_t **out, char *err,
                  size_t errlen)
{
    size_t n;
    int rv;

    /* A kumo.make_*{} object: its schema gives the JSON its types back (an
     * empty list is an array again, not an empty object). */
    rv = policy_config_object_json(L, idx, out, err, errlen);
    if (rv <= 0) {
        return rv;
    }
    if (policy_json_is_array(L, idx, &n)) {
        return policy_json_array(L, idx, n, depth, out, err, errlen);
    }
    return policy_json_object(L, idx, depth, out, err, errlen);
}

/* [-0, +0] */
static int
policy_json_userdata(lua_State *L, int idx, json_t **out, char *err,
                     size_t errlen)
{
    const char *email;
    json_t *obj;
    size_t len;

    email = policy_address_test(L, idx, &len);
    if (email != NULL) {
        *out = json_stringn(email, len);
        if (*out == NULL) {
            snprintf(err, errlen, "address is not valid UTF-8");
            return KM_EINVAL;
        }
        return 0;
    }
    obj = policy_connmeta_test(L, idx);
    if (obj != NULL) {
        *out = json_deep_copy(obj);
        return 0;
    }
    snprintf(err, errlen, "cannot convert a %s to JSON", luaL_typename(L, idx));
    return KM_EINVAL;
}

/* [-0, +0] */
static int
policy_json_value(lua_State *L, int idx, int depth, json_t **out, char *err,
                  size_t errlen)
{
    if (depth > POLICY_JSON_MAX_DEPTH) {
        snprintf(err, errlen, "value nested deeper than %d levels",
                 POLICY_JSON_MAX_DEPTH);
        return KM_EINVAL;
    }
    if (!lua_checkstack(L, 4)) {
        snprintf(err, errlen, "out of Lua stack");
        return KM_EINVAL;
    }
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        *out = json_null();
        return 0;
    case LUA_TBOOLEAN:
        *out = json_boolean(lua_toboolean(L, idx));
        return 0;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            *out = json_integer((json_int_t)lua_tointeger(L, idx));
            return 0;
        }
        *out = json_real(lua_tonumber(L, idx));
        if (*out == NULL) {
            snprintf(err, errlen, "number %g cannot be JSON",
                     lua_tonumber(L, idx));
            return KM_EINVAL;
        }
        return 0;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);

        *out = json_stringn(s, len);
        if (*out == NULL) {
            snprintf(err, errlen, "string is not valid UTF-8");
            return KM_EINVAL;
        }
        return 0;
    }
    case LUA_TTABLE:
        return policy_json_table(L, idx, depth, out, err, errlen);
    case LUA_TUSERDATA:
        return policy_json_userdata(L, idx, out, err, errlen);
    default:
        snprintf(err, errlen, "cannot convert a %s to JSON",
                 luaL_typename(L, idx));
        return KM_EINVAL;
    }
}

int
policy_json_from_lua(lua_State *L, int idx, json_t **out, char *err,
                     size_t errlen)
{
    int rv;

    POLICY_STACK_ENTER(L);
    rv = policy_json_value(L, lua_absindex(L, idx), 0, out, err, errlen);
    POLICY_STACK_LEAVE(L, 0);
    return rv;
}

/* ---- JSON -> Lua ---- */

/* [-0, +1] */
static void
policy_json_push_depth(lua_State *L, json_t *j, int depth)
{
    if (depth > POLICY_JSON_MAX_DEPTH) {
        luaL_error(L, "JSON value nested deeper than %d levels",
                   POLICY_JSON_MAX_DEPTH);
    }
    luaL_checkstack(L, 3, "JSON value too deep");
    switch (j != NULL ? json_typeof(j) : JSON_NULL) {
    case JSON_OBJECT: {
        const char *key;
        size_t klen;
        json_t *v;

        lua_createtable(L, 0, (int)json_object_size(j));
        json_object_keylen_foreach(j, key, klen, v)
        {
            if (json_is_null(v)) {
                continue;
            }
            lua_pushlstring(L, key, klen);
            policy_json_push_depth(L, v, depth + 1);
            lua_rawset(L, -3);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *v;

        lua_createtable(L, (int)json_array_size(j), 0);
        json_array_foreach(j, i, v)
        {
            policy_json_push_depth(L, v, depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(j));
        break;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(j));
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    case JSON_NULL:
        lua_pushnil(L);
        break;
    }
}

void
policy_json_push(lua_State *L, json_t *j)
{
    POLICY_STACK_ENTER(L);
    policy_json_push_depth(L, j, 0);
    POLICY_STACK_LEAVE(L, 1);
}
