/* policy_lib.c - the runtime library's small functions and its opener:
 * kumo.secrets.load (KumoMTA's keysources: a file path, or a table with
 * key_data; HashiCorp Vault sources are refused by name), kumo.traceback
 * (the call stack as a list of frame tables) and kumo.validation_failed
 * (marks a --validate run as failed), and the named refusals of
 * kumo.sleep, kumo.spawn_task and kumo.dns.lookup_*. policy_open_lib() adds
 * every library module (serde, memoize, maps, regex, ...) to the kumo table.
 * Loop thread only. */
#include "policy_int.h"

#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "base/buf.h"
#include "base/km.h"

#define POLICY_REG_VALIDATION_FAILED "kumo.validation_failed"

int
policy_keysource_load(lua_State *L, int idx, const char *fn)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {
        char err[512];
        struct buf b;

        buf_init(&b);
        if (policy_read_file(lua_tostring(L, idx), &b, err, sizeof(err)) != 0) {
            buf_fini(&b);
            return luaL_error(L, "%s: cannot load the key: %s", fn, err);
        }
        lua_pushlstring(L, b.data, b.len);
        buf_fini(&b);
        return 1;
    }
    if (lua_type(L, idx) != LUA_TTABLE) {
        return luaL_error(L,
                          "%s: a keysource is a file path or a table "
                          "{ key_data = ... }, got %s",
                          fn, luaL_typename(L, idx));
    }
    if (lua_getfield(L, idx, "vault_mount") != LUA_TNIL ||
        lua_getfield(L, idx, "vault_path") != LUA_TNIL) {
        return luaL_error(L,
                          "%s: HashiCorp Vault keysources (vault_mount, "
                          "vault_path) are not supported by kumod; load the "
                          "key from a file or pass { key_data = ... }",
                          fn);
    }
    lua_pop(L, 2);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING ||
            strcmp(lua_tostring(L, -2), "key_data") != 0) {
            return luaL_error(L, "%s: unknown keysource field '%s'", fn,
                              luaL_tolstring(L, -2, NULL));
        }
        lua_pop(L, 1);
    }
    if (lua_getfield(L, idx, "key_data") != LUA_TSTRING) {
        return luaL_error(L,
                          "%s: keysource 'key_data' must be a string, got %s",
                          fn, luaL_typename(L, -1));
    }
    return 1;
}

/* kumo.secrets.load(keysource) -> bytes */
static int
l_secrets_load(lua_State *L)
{
    luaL_checkany(L, 1);
    return policy_keysource_load(L, 1, "kumo.secrets.load");
}

/* kumo.traceback([level]) -> { {source, short_src, what, name, ...}, ... }
 * Level 0 is kumo.traceback itself, 1 its caller (the default). */
static int
l_kumo_traceback(lua_State *L)
{
    lua_Integer level = luaL_optinteger(L, 1, 1);
    lua_Debug ar;
    lua_Integer i = 0;

    luaL_argcheck(L, level >= 0, 1, "level must not be negative");
    lua_newtable(L);
    for (int l = (int)level; lua_getstack(L, l, &ar); l++) {
        lua_getinfo(L, "Slnt", &ar);
        lua_createtable(L, 0, 9);
        lua_pushstring(L, ar.source);
        lua_setfield(L, -2, "source");
        lua_pushstring(L, ar.short_src);
        lua_setfield(L, -2, "short_src");
        lua_pushstring(L, ar.what);
        lua_setfield(L, -2, "what");
        if (ar.name != NULL) {
            lua_pushstring(L, ar.name);
            lua_setfield(L, -2, "name");
        }
        lua_pushstring(L, ar.namewhat);
        lua_setfield(L, -2, "namewhat");
        lua_pushinteger(L, ar.currentline);
        lua_setfield(L, -2, "curr_line");
        lua_pushinteger(L, ar.currentline);
        lua_setfield(L, -2, "currentline");
        lua_pushinteger(L, ar.linedefined);
        lua_setfield(L, -2, "line_defined");
        lua_pushinteger(L, ar.lastlinedefined);
        lua_setfield(L, -2, "last_line_defined");
        lua_pushboolean(L, ar.istailcall);
        lua_setfield(L, -2, "is_tail_call");
        lua_rawseti(L, -2, ++i);
    }
    return 1;
}

/* kumo.validation_failed() */
static int
l_kumo_validation_failed(lua_State *L)
{
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, POLICY_REG_VALIDATION_FAILED);
    return 0;
}

bool
policy_validation_failed(struct policy *p)
{
    bool failed;

    lua_getfield(p->L, LUA_REGISTRYINDEX, POLICY_REG_VALIDATION_FAILED);
    failed = lua_toboolean(p->L, -1);
    lua_pop(p->L, 1);
    return failed;
}

/* A documented KumoMTA function kumod refuses: raises its upvalue. */
static int
l_kumo_refused(lua_State *L)
{
    return luaL_error(L, "%s", lua_tostring(L, lua_upvalueindex(1)));
}

/* Handlers run to completion inside policy_call() on the loop thread (no
 * coroutine, no continuation): nothing can wait for DNS or a timer. */
#define POLICY_NO_YIELD                                                        \
    "is not supported by kumod: policy handlers run to completion on the "     \
    "event loop and cannot yield"

static const struct {
    const char *table; /* NULL: kumo itself */
    const char *name;
    const char *why;
} policy_lib_refused[] = {
    {NULL, "sleep", "kumo.sleep " POLICY_NO_YIELD},
    {NULL, "spawn_task",
     "kumo.spawn_task is not supported by kumod: it has no background Lua "
     "tasks (policy handlers cannot yield)"},
    {"dns", "lookup_mx", "kumo.dns.lookup_mx " POLICY_NO_YIELD},
    {"dns", "lookup_addr", "kumo.dns.lookup_addr " POLICY_NO_YIELD},
    {"dns", "lookup_ptr", "kumo.dns.lookup_ptr " POLICY_NO_YIELD},
    {"dns", "lookup_txt", "kumo.dns.lookup_txt " POLICY_NO_YIELD},
    {NULL, NULL, NULL},
};

int
policy_validate(struct policy *p, char *err, size_t errlen)
{
    struct policy_result res;
    int rv = policy_call(p, "validate_config", NULL, 0, &res, err, errlen);

    policy_result_fini(&res);
    if (rv == KM_EREJECT) {
        snprintf(err, errlen,
                 "validate_config: kumo.reject() is not valid "
                 "here");
        return KM_EPOLICY;
    }
    if (rv == 0 && policy_validation_failed(p)) {
        snprintf(err, errlen,
                 "validation failed: the policy called "
                 "kumo.validation_failed()");
        return KM_ECONFIG;
    }
    return rv;
}

void
policy_open_lib(lua_State *L, int kumo)
{
    POLICY_STACK_ENTER(L);
    kumo = lua_absindex(L, kumo);
    lua_pushcfunction(L, l_kumo_traceback);
    lua_setfield(L, kumo, "traceback");
    lua_pushcfunction(L, l_kumo_validation_failed);
    lua_setfield(L, kumo, "validation_failed");
    luaL_getsubtable(L, kumo, "secrets");
    lua_pushcfunction(L, l_secrets_load);
    lua_setfield(L, -2, "load");
    lua_pop(L, 1);
    for (size_t i = 0; policy_lib_refused[i].name != NULL; i++) {
        if (policy_lib_refused[i].table != NULL) {
            luaL_getsubtable(L, kumo, policy_lib_refused[i].table);
        } else {
            lua_pushvalue(L, kumo);
        }
        lua_pushstring(L, policy_lib_refused[i].why);
        lua_pushcclosure(L, l_kumo_refused, 1);
        lua_setfield(L, -2, policy_lib_refused[i].name);
        lua_pop(L, 1);
    }
    policy_open_events(L, kumo);
    policy_open_serde(L, kumo);
    policy_open_yaml(L, kumo);
    policy_open_memoize(L, kumo);
    policy_open_maps(L, kumo);
    policy_open_regex(L, kumo);
    policy_open_encode(L, kumo);
    policy_open_string(L, kumo);
    policy_open_psl(L, kumo);
    policy_open_time(L, kumo);
    POLICY_STACK_LEAVE(L, 0);
}
