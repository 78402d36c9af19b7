/* policy.c - owns the lua_State of the policy: creates it with the standard
 * libraries and the `kumo` module, loads the policy file, calls the
 * handlers that kumo.on() (policy_kumo.c) keeps in the registry under
 * lua_pcall with a traceback handler, and seals the globals after init.
 * The kumo.* functions themselves live in policy_<area>.c. Loop thread
 * only. */
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "base/km.h"
#include "base/log.h"
#include "policy_int.h"

/* Everything one protected call of policy_call_body() needs. */
struct policy_call_ctx {
    struct policy *p;
    const char *event;
    const struct policy_arg *args;
    size_t nargs;
    struct policy_result *res;
};

struct policy *
policy_from_lua(lua_State *L)
{
    struct policy *p;

    lua_getfield(L, LUA_REGISTRYINDEX, POLICY_REG_SELF);
    p = lua_touserdata(L, -1);
    lua_pop(L, 1);
    KM_ASSERT(p != NULL);
    return p;
}

bool
policy_event_is_multi(const char *event)
{
    static const char *const multi[] = {
        "pre_init",
        "validate_config",
        "get_queue_config",
        "get_egress_pool",
        "get_egress_path_config",
        "get_egress_source",
        NULL,
    };

    for (size_t i = 0; multi[i] != NULL; i++) {
        if (strcmp(event, multi[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* For the get_* Multi events the first non-nil return wins. */
static bool
policy_event_first_wins(const char *event)
{
    return strncmp(event, "get_", 4) == 0 && policy_event_is_multi(event);
}

/* Is the value at idx the table kumo.reject() raised? [-0, +0] */
static bool
policy_is_reject(lua_State *L, int idx)
{
    bool is;

    if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) {
        return false;
    }
    luaL_getmetatable(L, POLICY_MT_REJECT);
    is = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return is;
}

/* Message handler: add a traceback to string errors; kumo.reject()
 * objects pass through untouched. */
static int
policy_on_error(lua_State *L)
{
    const char *msg;

    if (policy_is_reject(L, 1)) {
        return 1;
    }
    msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") &&
            lua_type(L, -1) == LUA_TSTRING) {
            msg = lua_tostring(L, -1);
        } else {
            msg = lua_pushfstring(L, "(error object is a %s value)",
                                  luaL_typename(L, 1));
        }
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Copy the message part of a traceback string (before "stack traceback:")
 * into err. */
static void
policy_copy_err(const char *msg, char *err, size_t errlen)
{
    const char *tb;
    size_t n;

    if (err == NULL || errlen == 0) {
        return;
    }
    tb = strstr(msg, "\nstack traceback:");
    n = tb != NULL ? (size_t)(tb - msg) : strlen(msg);
    if (n >= errlen) {
        n = errlen - 1;
    }
    memcpy(err, msg, n);
    err[n] = '\0';
}

/* Register the libraries and the kumo module; run protected. */
static int
policy_open_all(lua_State *L)
{
    struct policy *p = lua_touserdata(L, 1);

    luaL_openlibs(L);
    lua_pushlightuserdata(L, p);
    lua_setfield(L, LUA_REGISTRYINDEX, POLICY_REG_SELF);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, POLICY_REG_HANDLERS);
    luaL_newmetatable(L, POLICY_MT_REJECT);
    lua_pop(L, 1);
    policy_open_json(L);
    policy_open_message(L);
    policy_open_address(L);
    policy_open_connmeta(L);

    policy_open_kumo(L);
    /* require 'kumo' and the global `kumo` are the same table. */
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "kumo");
    lua_pop(L, 1);
    lua_setglobal(L, "kumo");
    return 0;
}

int
policy_new(const struct policy_host *host, struct policy **out)
{
    struct policy *p = km_calloc(1, sizeof(*p));
    int rv;

    p->host = *host;
    p->L = luaL_newstate();
    if (p->L == NULL) {
        rv = KM_ENOMEM;
        goto err_after_alloc;
    }
    lua_pushcfunction(p->L, policy_open_all);
    lua_pushlightuserdata(p->L, p);
    if (lua_pcall(p->L, 1, 0, 0) != LUA_OK) {
        rv = KM_ENOMEM;
        goto err_after_state;
    }
    *out = p;
    return 0;

err_after_state:
    lua_close(p->L);
err_after_alloc:
    free(p);
    return rv;
}

void
policy_free(struct policy *p)
{
    if (p == NULL) {
        return;
    }
    lua_close(p->L);
    free(p);
}

int
policy_load(struct policy *p, const char *path, char *err, size_t errlen)
{
    lua_State *L = p->L;
    int base = lua_gettop(L);
    int rv = 0;

    lua_pushcfunction(L, policy_on_error);
    /* Text only: a precompiled chunk can crash the VM. */
    if (luaL_loadfilex(L, path, "t") != LUA_OK ||
        lua_pcall(L, 0, 0, base + 1) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        policy_copy_err(msg != NULL ? msg : "(error object)", err, errlen);
        rv = KM_EPOLICY;
    }
    lua_settop(L, base);
    return rv;
}

/* [-0, +nargs] Push the arguments of a call. */
static void
policy_push_args(lua_State *L, const struct policy_call_ctx *c)
{
    luaL_checkstack(L, (int)c->nargs + 4, "too many arguments");
    for (size_t i = 0; i < c->nargs; i++) {
        const struct policy_arg *a = &c->args[i];

        switch (a->kind) {
        case POLICY_ARG_STRING:
            lua_pushstring(L, a->u.str);
            break;
        case POLICY_ARG_ADDRESS:
            policy_address_push(L, a->u.str, strlen(a->u.str));
            break;
        case POLICY_ARG_CONN_META:
            policy_connmeta_push(L, a->u.json);
            break;
        case POLICY_ARG_MESSAGE:
            policy_message_push(L, &c->p->host.msg, a->u.msg);
            break;
        case POLICY_ARG_JSON:
            policy_json_push(L, a->u.json);
            break;
        }
    }
}

/* The protected part of policy_call(): find the handlers, call them, and
 * convert the result. Errors propagate to the pcall in policy_call. */
static int
policy_call_body(lua_State *L)
{
    struct policy_call_ctx *c = lua_touserdata(L, 1);
    bool first_wins = policy_event_first_wins(c->event);
    int handlers, argbase;
    lua_Integer n;

    lua_getfield(L, LUA_REGISTRYINDEX, POLICY_REG_HANDLERS);
    if (lua_getfield(L, -1, c->event) != LUA_TTABLE) {
        return 0;
    }
    handlers = lua_gettop(L);
    n = luaL_len(L, handlers);
    if (n == 0) {
        return 0;
    }
    c->res->had_handler = true;
    argbase = lua_gettop(L) + 1;
    policy_push_args(L, c);
    lua_pushnil(L); /* the result slot */
    for (lua_Integer i = 1; i <= n; i++) {
        lua_pop(L, 1);
        lua_rawgeti(L, handlers, i);
        for (size_t a = 0; a < c->nargs; a++) {
            lua_pushvalue(L, argbase + (int)a);
        }
        lua_call(L, (int)c->nargs, 1);
        if (first_wins && !lua_isnil(L, -1)) {
            break;
        }
    }
    if (!lua_isnil(L, -1)) {
        char err[256];
        json_t *j;

        if (policy_json_from_lua(L, -1, &j, err, sizeof(err)) != 0) {
            return luaL_error(L, "the handler's result cannot be JSON: %s",
                              err);
        }
        c->res->value = j;
    }
    return 0;
}

/* Fill res->reject from the kumo.reject() table at the top. */
static void
policy_read_reject(lua_State *L, struct policy_reject *rej)
{
    const char *text;

    lua_getfield(L, -1, "code");
    rej->code = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, -1, "text");
    text = lua_tostring(L, -1);
    snprintf(rej->text, sizeof(rej->text), "%s", text != NULL ? text : "");
    lua_pop(L, 1);
    lua_getfield(L, -1, "disconnect");
    rej->disconnect = lua_toboolean(L, -1);
    lua_pop(L, 1);
}

int
policy_call(struct policy *p, const char *event, const struct policy_arg *args,
            size_t nargs, struct policy_result *res, char *err, size_t errlen)
{
    struct policy_call_ctx c = {p, event, args, nargs, res};
    lua_State *L = p->L;
    int base = lua_gettop(L);
    int rv = 0;

    const char *outer = p->event;
    int status;

    memset(res, 0, sizeof(*res));
    lua_pushcfunction(L, policy_on_error);
    lua_pushcfunction(L, policy_call_body);
    lua_pushlightuserdata(L, &c);
    p->event = event;
    status = lua_pcall(L, 1, 0, base + 1);
    p->event = outer;
    if (status != LUA_OK) {
        json_decref(res->value);
        res->value = NULL;
        if (policy_is_reject(L, -1)) {
            policy_read_reject(L, &res->reject);
            rv = KM_EREJECT;
        } else {
            const char *msg = lua_tostring(L, -1);

            msg = msg != NULL ? msg : "(error object)";
            LOG_ERROR("policy: %s: %s", event, msg);
            policy_copy_err(msg, err, errlen);
            rv = KM_EPOLICY;
        }
    }
    lua_settop(L, base);
    return rv;
}

void
policy_result_fini(struct policy_result *res)
{
    json_decref(res->value);
    res->value = NULL;
}

bool
policy_has_handler(struct policy *p, const char *event)
{
    lua_State *L = p->L;
    bool has;

    lua_getfield(L, LUA_REGISTRYINDEX, POLICY_REG_HANDLERS);
    lua_pushstring(L, event);
    has = lua_rawget(L, -2) == LUA_TTABLE && lua_rawlen(L, -1) > 0;
    lua_pop(L, 2);
    return has;
}

/* __newindex of the sealed _G: no new globals once init has run. */
static int
l_policy_global_newindex(lua_State *L)
{
    return luaL_error(L,
                      "attempt to assign to undeclared global '%s' after "
                      "the policy was loaded (use local)",
                      luaL_tolstring(L, 2, NULL));
}

void
policy_seal(struct policy *p)
{
    lua_State *L = p->L;

    p->sealed = true;
    lua_pushglobaltable(L);
    if (!lua_getmetatable(L, -1)) {
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setmetatable(L, -3);
    }
    lua_pushcfunction(L, l_policy_global_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pop(L, 2);
}
