/* policy_address.c - the "kumo.EnvelopeAddress" userdata: an immutable copy
 * of an envelope address ("user@domain", or "" for the null sender) with
 * the fields .email, .user and .domain (split at the last '@', case kept
 * as given). tostring(), == and .. use the email. Loop thread only. */
#include "policy_int.h"

#include <string.h>

#include <lauxlib.h>

/* The email is stored inline after the header, NUL-terminated. */
struct policy_address {
    size_t len;
    size_t at; /* index of the last '@', or len when there is none */
    char email[];
};

void
policy_address_push(lua_State *L, const char *addr, size_t len)
{
    struct policy_address *a;
    const char *at;

    POLICY_STACK_ENTER(L);
    a = lua_newuserdatauv(L, sizeof(*a) + len + 1, 0);
    a->len = len;
    memcpy(a->email, addr, len);
    a->email[len] = '\0';
    at = len > 0 ? memrchr(a->email, '@', len) : NULL;
    a->at = at != NULL ? (size_t)(at - a->email) : len;
    luaL_setmetatable(L, POLICY_MT_ADDRESS);
    POLICY_STACK_LEAVE(L, 1);
}

const char *
policy_address_test(lua_State *L, int idx, size_t *len)
{
    struct policy_address *a = luaL_testudata(L, idx, POLICY_MT_ADDRESS);

    if (a == NULL) {
        return NULL;
    }
    *len = a->len;
    return a->email;
}

/* addr.email, addr.user, addr.domain */
static int
l_address_index(lua_State *L)
{
    struct policy_address *a = luaL_checkudata(L, 1, POLICY_MT_ADDRESS);
    const char *key = luaL_checkstring(L, 2);

    if (strcmp(key, "email") == 0) {
        lua_pushlstring(L, a->email, a->len);
    } else if (strcmp(key, "user") == 0) {
        lua_pushlstring(L, a->email, a->at);
    } else if (strcmp(key, "domain") == 0) {
        size_t off = a->at < a->len ? a->at + 1 : a->len;
        lua_pushlstring(L, a->email + off, a->len - off);
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static int
l_address_tostring(lua_State *L)
{
    struct policy_address *a = luaL_checkudata(L, 1, POLICY_MT_ADDRESS);

    lua_pushlstring(L, a->email, a->len);
    return 1;
}

static int
l_address_eq(lua_State *L)
{
    size_t la, lb;
    const char *a = policy_address_test(L, 1, &la);
    const char *b = policy_address_test(L, 2, &lb);

    lua_pushboolean(L, a != NULL && b != NULL && la == lb &&
                           memcmp(a, b, la) == 0);
    return 1;
}

/* "to: " .. addr and addr .. "!" both use the email. */
static int
l_address_concat(lua_State *L)
{
    luaL_tolstring(L, 1, NULL);
    luaL_tolstring(L, 2, NULL);
    lua_concat(L, 2);
    return 1;
}

static const luaL_Reg policy_address_meta[] = {
    {"__index", l_address_index},
    {"__tostring", l_address_tostring},
    {"__eq", l_address_eq},
    {"__concat", l_address_concat},
    {NULL, NULL},
};

void
policy_open_address(lua_State *L)
{
    POLICY_STACK_ENTER(L);
    luaL_newmetatable(L, POLICY_MT_ADDRESS);
    luaL_setfuncs(L, policy_address_meta, 0);
    lua_pop(L, 1);
    POLICY_STACK_LEAVE(L, 0);
}
