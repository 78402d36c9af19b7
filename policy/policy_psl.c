/* policy_psl.c - kumo.string.psl_domain, psl_suffix, psl_domain_is_known
 * and psl_suffix_is_known over libpsl and Debian's copy of Mozilla's
 * Public Suffix List (the newer of libpsl's built-in list and
 * /usr/share/publicsuffix, read once, at the first call, and kept in the
 * registry for the life of the Lua state). Names are lowercased first.
 * Loop thread only. */
#include "policy_int.h"

#include <string.h>

#include <lauxlib.h>
#include <libpsl.h>

#define POLICY_REG_PSL "kumo.psl"

struct policy_psl {
    psl_ctx_t *ctx;
};

static int
l_psl_gc(lua_State *L)
{
    struct policy_psl *p = lua_touserdata(L, 1);

    psl_free(p->ctx);
    p->ctx = NULL;
    return 0;
}

/* The list, loaded at the first call; raises naming fn if there is none. */
static const psl_ctx_t *
policy_psl_ctx(lua_State *L, const char *fn)
{
    struct policy_psl *p;

    if (lua_getfield(L, LUA_REGISTRYINDEX, POLICY_REG_PSL) == LUA_TUSERDATA) {
        p = lua_touserdata(L, -1);
        lua_pop(L, 1);
        return p->ctx;
    }
    lua_pop(L, 1);
    p = lua_newuserdatauv(L, sizeof(*p), 0);
    p->ctx = NULL;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_psl_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    p->ctx = psl_latest(NULL);
    if (p->ctx == NULL) {
        p->ctx = (psl_ctx_t *)(uintptr_t)psl_builtin();
        lua_pushnil(L);
        lua_setmetatable(L, -2); /* the built-in list is not ours to free */
    }
    if (p->ctx == NULL) {
        luaL_error(L,
                   "%s: no Public Suffix List (install Debian's "
                   "publicsuffix package)",
                   fn);
        return NULL;
    }
    lua_setfield(L, LUA_REGISTRYINDEX, POLICY_REG_PSL);
    return p->ctx;
}

/* [-0, +1] The lowercase form of the domain at 1, as a Lua string. */
static const char *
policy_psl_lower(lua_State *L, const char *fn)
{
    const char *s = luaL_checkstring(L, 1);
    char *lower = NULL;

    if (psl_str_to_utf8lower(s, "utf-8", NULL, &lower) != PSL_SUCCESS) {
        luaL_error(L, "%s: '%s' is not a UTF-8 domain name", fn, s);
        return NULL;
    }
    lua_pushstring(L, lower);
    psl_free_string(lower);
    return lua_tostring(L, -1);
}

/* kumo.string.psl_domain(name) -> the registrable domain, or nil */
static int
l_string_psl_domain(lua_State *L)
{
    const char *fn = "kumo.string.psl_domain";
    const psl_ctx_t *ctx = policy_psl_ctx(L, fn);
    const char *d = policy_psl_lower(L, fn);
    const char *r = psl_registrable_domain(ctx, d);

    if (r == NULL) {
        lua_pushnil(L);
    } else {
        lua_pushstring(L, r);
    }
    return 1;
}

/* kumo.string.psl_suffix(name) -> the public suffix, or nil */
static int
l_string_psl_suffix(lua_State *L)
{
    const char *fn = "kumo.string.psl_suffix";
    const psl_ctx_t *ctx = policy_psl_ctx(L, fn);
    const char *d = policy_psl_lower(L, fn);
    const char *r = psl_unregistrable_domain(ctx, d);

    if (r == NULL) {
        lua_pushnil(L);
    } else {
        lua_pushstring(L, r);
    }
    return 1;
}

/* Is suffix listed (not only derived from the implicit "*" rule)? */
static bool
policy_psl_listed(const psl_ctx_t *ctx, const char *suffix)
{
    return suffix != NULL &&
           psl_is_public_suffix2(ctx, suffix,
                                 PSL_TYPE_ANY | PSL_TYPE_NO_STAR_RULE) != 0;
}

/* kumo.string.psl_suffix_is_known(name) */
static int
l_string_psl_suffix_is_known(lua_State *L)
{
    const char *fn = "kumo.string.psl_suffix_is_known";
    const psl_ctx_t *ctx = policy_psl_ctx(L, fn);
    const char *d = policy_psl_lower(L, fn);

    lua_pushboolean(L,
                    policy_psl_listed(ctx, psl_unregistrable_domain(ctx, d)));
    return 1;
}

/* kumo.string.psl_domain_is_known(name) */
static int
l_string_psl_domain_is_known(lua_State *L)
{
    const char *fn = "kumo.string.psl_domain_is_known";
    const psl_ctx_t *ctx = policy_psl_ctx(L, fn);
    const char *d = policy_psl_lower(L, fn);
    const char *r = psl_registrable_domain(ctx, d);
    const char *dot = r != NULL ? strchr(r, '.') : NULL;

    lua_pushboolean(L, dot != NULL && policy_psl_listed(ctx, dot + 1));
    return 1;
}

void
policy_open_psl(lua_State *L, int kumo)
{
    static const luaL_Reg funcs[] = {
        {"psl_domain", l_string_psl_domain},
        {"psl_suffix", l_string_psl_suffix},
        {"psl_domain_is_known", l_string_psl_domain_is_known},
        {"psl_suffix_is_known", l_string_psl_suffix_is_known},
        {NULL, NULL},
    };

    POLICY_STACK_ENTER(L);
    kumo = lua_absindex(L, kumo);
    luaL_getsubtable(L, kumo, "string");
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
    POLICY_STACK_LEAVE(L, 0);
}
