/* policy_maps.c - two lookup tables for policies, used like Lua tables:
 * kumo.domain_map.new([{map}]) ("kumo.DomainMap": exact domain keys and
 * "*.example.com" wildcards; an exact key wins, then the most specific
 * wildcard; keys are case-insensitive, a trailing dot is ignored) and
 * kumo.cidr.make_map([{map}]) ("kumo.CidrMap": CIDR block keys, looked up
 * by address, the longest matching prefix wins; lookups accept
 * "10.0.0.1:25", "[10.0.0.1]" and "[::1]:25"). Assigning nil removes a
 * key. Values are any Lua values, kept in the userdata's user values.
 * Loop thread only. */
#include "policy_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/km.h"
#include "base/km_cidr.h"

#define POLICY_MT_DOMAIN_MAP "kumo.DomainMap"
#define POLICY_MT_CIDR_MAP   "kumo.CidrMap"

/* ---- kumo.domain_map ---- */

/* User values of a DomainMap: 1 = exact {domain -> v}, 2 = wildcard
 * {parent domain -> v} ("*.example.com" is stored as "example.com"). */

/* [-0, +1] The lowercase domain at idx without a trailing dot; *wild tells
 * whether it began with "*.", which is removed. */
static const char *
policy_dmap_push_key(lua_State *L, int idx, bool *wild)
{
    size_t n;
    const char *s;
    luaL_Buffer b;

    if (lua_type(L, idx) != LUA_TSTRING) {
        luaL_error(L,
                   "kumo.domain_map: keys are domain names (strings), "
                   "got %s",
                   luaL_typename(L, idx));
    }
    s = lua_tolstring(L, idx, &n);
    *wild = n > 2 && s[0] == '*' && s[1] == '.';
    if (*wild) {
        s += 2;
        n -= 2;
    }
    if (n > 0 && s[n - 1] == '.') {
        n--;
    }
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        luaL_addchar(&b, (char)tolower((unsigned char)s[i]));
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* __index(map, domain) */
static int
l_dmap_index(lua_State *L)
{
    bool wild;
    const char *d;

    luaL_checkudata(L, 1, POLICY_MT_DOMAIN_MAP);
    d = policy_dmap_push_key(L, 2, &wild);
    lua_getiuservalue(L, 1, wild ? 2 : 1);
    lua_pushvalue(L, -2);
    if (lua_rawget(L, -2) != LUA_TNIL || wild) {
        return 1;
    }
    lua_pop(L, 2);
    lua_getiuservalue(L, 1, 2);
    /* The parents of d, most specific first. */
    for (const char *dot = strchr(d, '.'); dot != NULL;
         dot = strchr(dot + 1, '.')) {
        if (lua_getfield(L, -1, dot + 1) != LUA_TNIL) {
            return 1;
        }
        lua_pop(L, 1);
    }
    lua_pushnil(L);
    return 1;
}

/* __newindex(map, domain, value) */
static int
l_dmap_newindex(lua_State *L)
{
    bool wild;

    luaL_checkudata(L, 1, POLICY_MT_DOMAIN_MAP);
    policy_dmap_push_key(L, 2, &wild);
    lua_getiuservalue(L, 1, wild ? 2 : 1);
    lua_insert(L, -2);
    lua_pushvalue(L, 3);
    lua_rawset(L, -3);
    return 0;
}

/* [-0, +0] Copy every pair of the table at src into the map at dst, with
 * the map's own __newindex. */
static void
policy_maps_seed(lua_State *L, int dst, int src, lua_CFunction set)
{
    lua_pushnil(L);
    while (lua_next(L, src) != 0) {
        lua_pushcfunction(L, set);
        lua_pushvalue(L, dst);
        lua_pushvalue(L, -4);
        lua_pushvalue(L, -4);
        lua_call(L, 3, 0);
        lua_pop(L, 1);
    }
}

/* kumo.domain_map.new([map]) */
static int
l_domain_map_new(lua_State *L)
{
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
    }
    lua_newuserdatauv(L, 0, 2);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 2);
    luaL_setmetatable(L, POLICY_MT_DOMAIN_MAP);
    if (lua_istable(L, 1)) {
        policy_maps_seed(L, lua_gettop(L), 1, l_dmap_newindex);
    }
    return 1;
}

/* ---- kumo.cidr ---- */

struct policy_cidr_map {
    struct km_cidr *v; /* v[i]'s value is user value 1's [i + 1] */
    size_t n, cap;
};

/* Parse the address of a lookup key: "a.b.c.d", "::1", with an optional
 * ":port", in brackets "[addr]" or "[addr]:port", or "[IPv6:addr]".
 * Returns false if it is not an address. */
static bool
policy_cidr_parse_addr(const char *s, struct km_cidr *out)
{
    char tmp[64];
    size_t n = strlen(s);
    const char *colon;

    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL) {
            return false;
        }
        s++;
        n = (size_t)(end - s);
        if (n > 5 && strncasecmp(s, "IPv6:", 5) == 0) {
            s += 5;
            n -= 5;
        }
    } else if ((colon = strchr(s, ':')) != NULL &&
               strchr(colon + 1, ':') == NULL) {
        n = (size_t)(colon - s); /* a.b.c.d:port */
    }
    if (n == 0 || n >= sizeof(tmp) || memchr(s, '/', n) != NULL) {
        return false;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return km_cidr_parse(tmp, out) == 0;
}

static struct policy_cidr_map *
policy_cidr_check(lua_State *L)
{
    return luaL_checkudata(L, 1, POLICY_MT_CIDR_MAP);
}

/* __index(map, address) */
static int
l_cidr_index(lua_State *L)
{
    struct policy_cidr_map *m = policy_cidr_check(L);
    struct km_cidr a;
    size_t best = SIZE_MAX;

    if (lua_type(L, 2) != LUA_TSTRING ||
        !policy_cidr_parse_addr(lua_tostring(L, 2), &a)) {
        lua_pushnil(L);
        return 1;
    }
    for (size_t i = 0; i < m->n; i++) {
        if (km_cidr_contains(&m->v[i], a.family, a.addr) &&
            (best == SIZE_MAX || m->v[i].prefix > m->v[best].prefix)) {
            best = i;
        }
    }
    if (best == SIZE_MAX) {
        lua_pushnil(L);
        return 1;
    }
    lua_getiuservalue(L, 1, 1);
    lua_rawgeti(L, -1, (lua_Integer)best + 1);
    return 1;
}

/* __newindex(map, cidr, value) */
static int
l_cidr_newindex(lua_State *L)
{
    struct policy_cidr_map *m = policy_cidr_check(L);
    const char *key = luaL_checkstring(L, 2);
    struct km_cidr c;
    size_t i;

    if (km_cidr_parse(key, &c) != 0 && !policy_cidr_parse_addr(key, &c)) {
        return luaL_error(L,
                          "kumo.cidr.make_map: '%s' is not an IP address or "
                          "CIDR block (host bits must be zero)",
                          key);
    }
    lua_getiuservalue(L, 1, 1);
    for (i = 0; i < m->n; i++) {
        if (m->v[i].family == c.family && m->v[i].prefix == c.prefix &&
            memcmp(m->v[i].addr, c.addr, sizeof(c.addr)) == 0) {
            break;
        }
    }
    if (lua_isnil(L, 3)) {
        if (i < m->n) {
            /* Move the last entry into the hole. */
            m->n--;
            m->v[i] = m->v[m->n];
            lua_rawgeti(L, -1, (lua_Integer)m->n + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
            lua_pushnil(L);
            lua_rawseti(L, -2, (lua_Integer)m->n + 1);
        }
        return 0;
    }
    if (i == m->n) {
        if (m->n == m->cap) {
            m->cap = m->cap == 0 ? 8 : m->cap * 2;
            m->v = km_realloc(m->v, m->cap * sizeof(*m->v));
        }
        m->v[m->n++] = c;
    }
    lua_pushvalue(L, 3);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
    return 0;
}

static int
l_cidr_gc(lua_State *L)
{
    struct policy_cidr_map *m = policy_cidr_check(L);

    free(m->v);
    m->v = NULL;
    m->n = m->cap = 0;
    return 0;
}

/* kumo.cidr.make_map([map]) */
static int
l_cidr_make_map(lua_State *L)
{
    struct policy_cidr_map *m;

    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
    }
    m = lua_newuserdatauv(L, sizeof(*m), 1);
    memset(m, 0, sizeof(*m));
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, POLICY_MT_CIDR_MAP);
    if (lua_istable(L, 1)) {
        policy_maps_seed(L, lua_gettop(L), 1, l_cidr_newindex);
    }
    return 1;
}

void
policy_open_maps(lua_State *L, int kumo)
{
    static const luaL_Reg dmap_mt[] = {
        {"__index", l_dmap_index},
        {"__newindex", l_dmap_newindex},
        {NULL, NULL},
    };
    static const luaL_Reg cidr_mt[] = {
        {"__index", l_cidr_index},
        {"__newindex", l_cidr_newindex},
        {"__gc", l_cidr_gc},
        {NULL, NULL},
    };

    POLICY_STACK_ENTER(L);
    kumo = lua_absindex(L, kumo);
    luaL_newmetatable(L, POLICY_MT_DOMAIN_MAP);
    luaL_setfuncs(L, dmap_mt, 0);
    luaL_newmetatable(L, POLICY_MT_CIDR_MAP);
    luaL_setfuncs(L, cidr_mt, 0);
    lua_pop(L, 2);
    luaL_getsubtable(L, kumo, "domain_map");
    lua_pushcfunction(L, l_domain_map_new);
    lua_setfield(L, -2, "new");
    lua_pop(L, 1);
    luaL_getsubtable(L, kumo, "cidr");
    lua_pushcfunction(L, l_cidr_make_map);
    lua_setfield(L, -2, "make_map");
    lua_pop(L, 1);
    POLICY_STACK_LEAVE(L, 0);
}
