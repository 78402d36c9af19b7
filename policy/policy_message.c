/* policy_message.c - the "kumo.Message" userdata: one reference to a host
 * message handle, operated through the host's policy_msg_ops (envelope,
 * metadata, data) and base/hdr.h (header edits on the data). The
 * reference is dropped by __gc. Knows nothing of how the host stores
 * messages. Loop thread only. */
#include "policy_int.h"

#include <string.h>

#include <lauxlib.h>

#include "base/buf.h"
#include "base/hdr.h"
#include "base/km.h"

struct policy_message {
    void *msg; /* one reference, released by __gc */
    const struct policy_msg_ops *ops;
};

void
policy_message_push(lua_State *L, const struct policy_msg_ops *ops, void *msg)
{
    struct policy_message *m;

    POLICY_STACK_ENTER(L);
    m = lua_newuserdatauv(L, sizeof(*m), 0);
    m->msg = NULL;
    m->ops = ops;
    luaL_setmetatable(L, POLICY_MT_MESSAGE);
    ops->ref(msg);
    m->msg = msg;
    POLICY_STACK_LEAVE(L, 1);
}

static struct policy_message *
policy_message_check(lua_State *L)
{
    struct policy_message *m = luaL_checkudata(L, 1, POLICY_MT_MESSAGE);

    if (m->msg == NULL) {
        luaL_error(L, "message has been released");
    }
    return m;
}

/* An address argument: a string or an EnvelopeAddress. */
static const char *
policy_message_check_addr(lua_State *L, int idx)
{
    size_t len;
    const char *s = policy_address_test(L, idx, &len);

    if (s != NULL) {
        return s;
    }
    return luaL_checkstring(L, idx);
}

/* A header name: printable ASCII without ':' or space (RFC 5322 2.2). */
static const char *
policy_message_check_hname(lua_State *L, int idx)
{
    size_t len;
    const char *name = luaL_checklstring(L, idx, &len);

    luaL_argcheck(L, len > 0, idx, "header name must not be empty");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        luaL_argcheck(L, c >= 33 && c <= 126 && c != ':', idx,
                      "invalid header name");
    }
    return name;
}

/* A header value: CR and LF only as a CRLF fold followed by WSP. */
static const char *
policy_message_check_hvalue(lua_State *L, int idx)
{
    size_t len;
    const char *v = luaL_checklstring(L, idx, &len);

    for (size_t i = 0; i < len; i++) {
        if (v[i] == '\0') {
            luaL_argerror(L, idx, "header value contains NUL");
        }
        if (v[i] == '\r' || v[i] == '\n') {
            bool fold = v[i] == '\r' && i + 2 < len && v[i + 1] == '\n' &&
                        (v[i + 2] == ' ' || v[i + 2] == '\t');
            luaL_argcheck(L, fold, idx,
                          "header value has a line break that is not a fold");
            i++;
        }
    }
    return v;
}

static int
l_message_id(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);

    lua_pushstring(L, m->ops->id(m->msg));
    return 1;
}

static int
l_message_sender(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);
    const char *s = m->ops->sender(m->msg);

    policy_address_push(L, s, strlen(s));
    return 1;
}

static int
l_message_recipient(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);
    const char *s = m->ops->recipient(m->msg);

    policy_address_push(L, s, strlen(s));
    return 1;
}

static int
l_message_set_sender(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);
    const char *addr = policy_message_check_addr(L, 2);

    if (m->ops->set_sender(m->msg, addr) != 0) {
        return luaL_error(L, "set_sender: invalid address '%s'", addr);
    }
    return 0;
}

static int
l_message_set_recipient(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);
    const char *addr = policy_message_check_addr(L, 2);

    if (m->ops->set_recipient(m->msg, addr) != 0) {
        return luaL_error(L, "set_recipient: invalid address '%s'", addr);
    }
    return 0;
}

/* msg:get_meta(key) -> value or nil */
static int
l_message_get_meta(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);
    const char *key = luaL_checkstring(L, 2);

    policy_json_push(L, json_object_get(m->ops->meta(m->msg), key));
    return 1;
}

/* msg:set_meta(key, value); nil stores JSON null. */
static int
l_message_set_meta(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);
    const char *key = luaL_checkstring(L, 2);
    char err[256];
    json_t *v;

    luaL_checkany(L, 3);
    if (policy_json_from_lua(L, 3, &v, err, sizeof(err)) != 0) {
        return luaL_error(L, "set_meta('%s'): %s", key, err);
    }
    if (json_object_set_new(m->ops->meta(m->msg), key, v) != 0) {
        return luaL_error(L, "set_meta: key is not valid UTF-8");
    }
    return 0;
}

static int
l_message_get_data(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);
    struct buf *b = m->ops->data(m->msg);

    lua_pushlstring(L, buf_cstr(b), b->len);
    return 1;
}

static int
l_message_set_data(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    struct buf *b = m->ops->data(m->msg);

    buf_reset(b);
    buf_append(b, s, len);
    return 0;
}

/* msg:get_first_named_header_value(name) -> string or nil */
static int
l_message_get_first_named_header_value(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);
    const char *name = luaL_checkstring(L, 2);
    struct buf *b = m->ops->data(m->msg);
    struct buf out = BUF_INIT;

    if (hdr_get_first(buf_cstr(b), b->len, name, &out)) {
        lua_pushlstring(L, buf_cstr(&out), out.len);
    } else {
        lua_pushnil(L);
    }
    buf_fini(&out);
    return 1;
}

/* State of a hdr_foreach() walk that fills the Lua table at the top. */
struct policy_message_walk {
    lua_State *L;
    const char *name; /* NULL: every header, as {name, value} pairs */
    lua_Integer n;
};

static bool
policy_message_on_header(void *arg, const char *name, size_t name_len,
                         const char *value, size_t value_len)
{
    struct policy_message_walk *w = arg;
    lua_State *L = w->L;

    if (w->name != NULL) {
        if (!km_ascii_ieq(name, name_len, w->name)) {
            return true;
        }
        lua_pushlstring(L, value, value_len);
    } else {
        lua_createtable(L, 2, 2);
        lua_pushlstring(L, name, name_len);
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, 1);
        lua_setfield(L, -2, "name");
        lua_pushlstring(L, value, value_len);
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, 2);
        lua_setfield(L, -2, "value");
    }
    lua_rawseti(L, -2, ++w->n);
    return true;
}

/* msg:get_all_named_header_values(name) -> list of strings */
static int
l_message_get_all_named_header_values(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);
    struct policy_message_walk w = {L, luaL_checkstring(L, 2), 0};
    struct buf *b = m->ops->data(m->msg);

    lua_newtable(L);
    hdr_foreach(buf_cstr(b), b->len, policy_message_on_header, &w);
    return 1;
}

/* msg:get_all_headers() -> list of {name, value} (also [1] and [2]) */
static int
l_message_get_all_headers(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);
    struct policy_message_walk w = {L, NULL, 0};
    struct buf *b = m->ops->data(m->msg);

    lua_newtable(L);
    hdr_foreach(buf_cstr(b), b->len, policy_message_on_header, &w);
    return 1;
}

static int
l_message_append_header(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);
    const char *name = policy_message_check_hname(L, 2);
    const char *value = policy_message_check_hvalue(L, 3);

    hdr_append(m->ops->data(m->msg), name, value);
    return 0;
}

static int
l_message_prepend_header(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);
    const char *name = policy_message_check_hname(L, 2);
    const char *value = policy_message_check_hvalue(L, 3);

    hdr_prepend(m->ops->data(m->msg), name, value);
    return 0;
}

static int
l_message_remove_all_named_headers(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);
    const char *name = luaL_checkstring(L, 2);

    hdr_remove_all(m->ops->data(m->msg), name);
    return 0;
}

static int
l_message_num_attempts(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);

    lua_pushinteger(L, (lua_Integer)m->ops->num_attempts(m->msg));
    return 1;
}

static int
l_message_queue_name(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);
    const char *q = m->ops->queue_name(m->msg);

    if (q != NULL) {
        lua_pushstring(L, q);
    } else {
        lua_pushnil(L);
    }
    return 1;
}

/* msg:dkim_sign(signer): signed at ingest, after the policy (dkim.h). */
static int
l_message_dkim_sign(lua_State *L)
{
    struct policy_message *m = policy_message_check(L);

    return policy_dkim_sign(L, m->msg, 2);
}

static int
l_message_gc(lua_State *L)
{
    struct policy_message *m = luaL_checkudata(L, 1, POLICY_MT_MESSAGE);

    if (m->msg != NULL) {
        m->ops->unref(m->msg);
        m->msg = NULL;
    }
    return 0;
}

static int
l_message_tostring(lua_State *L)
{
    struct policy_message *m = luaL_checkudata(L, 1, POLICY_MT_MESSAGE);

    lua_pushfstring(L, "Message(%s)",
                    m->msg != NULL ? m->ops->id(m->msg) : "released");
    return 1;
}

static const luaL_Reg policy_message_methods[] = {
    {"id", l_message_id},
    {"sender", l_message_sender},
    {"recipient", l_message_recipient},
    {"set_sender", l_message_set_sender},
    {"set_recipient", l_message_set_recipient},
    {"get_meta", l_message_get_meta},
    {"set_meta", l_message_set_meta},
    {"get_data", l_message_get_data},
    {"set_data", l_message_set_data},
    {"get_first_named_header_value", l_message_get_first_named_header_value},
    {"get_all_named_header_values", l_message_get_all_named_header_values},
    {"get_all_headers", l_message_get_all_headers},
    {"append_header", l_message_append_header},
    {"prepend_header", l_message_prepend_header},
    {"remove_all_named_headers", l_message_remove_all_named_headers},
    {"num_attempts", l_message_num_attempts},
    {"queue_name", l_message_queue_name},
    {"dkim_sign", l_message_dkim_sign},
    {NULL, NULL},
};

void
policy_open_message(lua_State *L)
{
    POLICY_STACK_ENTER(L);
    luaL_newmetatable(L, POLICY_MT_MESSAGE);
    luaL_newlib(L, policy_message_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_message_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_message_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    POLICY_STACK_LEAVE(L, 0);
}
