/* policy_serde.c - kumo.serde.* data formats beyond JSON text: TOML parse,
 * load and encode (through policy_toml.cpp, over toml++), and JSON files
 * with comments (kumo.serde.json_load). Each is also at its older name
 * directly under kumo (kumo.toml_load, kumo.json_load, ...), as KumoMTA
 * still accepts. Files are read whole, synchronously, on the loop thread:
 * policies read small data files, usually under kumo.memoize. Loop thread
 * only. */
#include "policy_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "base/buf.h"
#include "base/km.h"
#include "policy_toml.h"

/* Largest data file the loaders read. */
#define POLICY_SERDE_MAX_FILE (64u * 1024 * 1024)

int
policy_read_file(const char *path, struct buf *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char chunk[16384];
    size_t n;

    if (f == NULL) {
        int e = errno;

        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (out->len + n > POLICY_SERDE_MAX_FILE) {
            snprintf(err, errlen, "%s: larger than %u bytes", path,
                     POLICY_SERDE_MAX_FILE);
            fclose(f);
            return KM_EINVAL;
        }
        buf_append(out, chunk, n);
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        fclose(f);
        return KM_EIO;
    }
    fclose(f);
    return 0;
}

/* [-0, +1] Push the parsed TOML text as a Lua table, or raise naming fn. */
static int
policy_serde_push_toml(lua_State *L, const char *fn, const char *text,
                       size_t len, const char *source)
{
    char err[512];
    json_t *j;

    if (policy_toml_parse(text, len, source, &j, err, sizeof(err)) != 0) {
        return luaL_error(L, "%s: %s", fn, err);
    }
    policy_json_box_push(L, j);
    policy_json_push(L, j);
    return 1;
}

/* kumo.serde.toml_parse(text) */
static int
l_serde_toml_parse(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);

    return policy_serde_push_toml(L, "kumo.serde.toml_parse", s, len,
                                  "(toml text)");
}

/* kumo.serde.toml_load(path) */
static int
l_serde_toml_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct buf b;
    char err[512];
    int rv;

    buf_init(&b);
    rv = policy_read_file(path, &b, err, sizeof(err));
    if (rv != 0) {
        buf_fini(&b);
        return luaL_error(L, "kumo.serde.toml_load: %s", err);
    }
    /* Copy into Lua first, so that a raised error cannot leak the buffer. */
    lua_pushlstring(L, b.data, b.len);
    buf_fini(&b);
    return policy_serde_push_toml(L, "kumo.serde.toml_load",
                                  lua_tostring(L, -1), lua_rawlen(L, -1), path);
}

/* [-0, +1] kumo.serde.toml_encode* of the value at 1. */
static int
policy_serde_toml_encode(lua_State *L, const char *fn, unsigned flags)
{
    char err[256];
    json_t *j;
    char *s;
    int rv;

    luaL_checkany(L, 1);
    if (policy_json_from_lua(L, 1, &j, err, sizeof(err)) != 0) {
        return luaL_error(L, "%s: %s", fn, err);
    }
    rv = policy_toml_encode(j, flags, &s, err, sizeof(err));
    json_decref(j);
    if (rv != 0) {
        return luaL_error(L, "%s: %s", fn, err);
    }
    lua_pushstring(L, s);
    free(s);
    return 1;
}

static int
l_serde_toml_encode(lua_State *L)
{
    return policy_serde_toml_encode(L, "kumo.serde.toml_encode", 0);
}

static int
l_serde_toml_encode_pretty(lua_State *L)
{
    return policy_serde_toml_encode(L, "kumo.serde.toml_encode_pretty",
                                    POLICY_TOML_PRETTY);
}

static int
l_serde_toml_encode_pretty_compact(lua_State *L)
{
    return policy_serde_toml_encode(L, "kumo.serde.toml_encode_pretty_compact",
                                    POLICY_TOML_PRETTY |
                                        POLICY_TOML_INLINE_EMPTY);
}

/* Blank out C block comments, C++ line comments and shell line comments
 * outside of JSON strings (KumoMTA's json_load accepts them), keeping
 * newlines so that error lines stay right. */
static void
policy_serde_strip_comments(char *s, size_t n)
{
    bool in_str = false;

    for (size_t i = 0; i < n; i++) {
        if (in_str) {
            if (s[i] == '\\' && i + 1 < n) {
                i++;
            } else if (s[i] == '"') {
                in_str = false;
            }
        } else if (s[i] == '"') {
            in_str = true;
        } else if (s[i] == '#' ||
                   (s[i] == '/' && i + 1 < n && s[i + 1] == '/')) {
            while (i < n && s[i] != '\n') {
                s[i++] = ' ';
            }
        } else if (s[i] == '/' && i + 1 < n && s[i + 1] == '*') {
            s[i++] = ' ';
            s[i] = ' ';
            while (++i < n && !(s[i] == '*' && i + 1 < n && s[i + 1] == '/')) {
                if (s[i] != '\n') {
                    s[i] = ' ';
                }
            }
            if (i < n) {
                s[i++] = ' ';
                s[i] = ' ';
            }
        }
    }
}

/* kumo.serde.json_load(path) */
static int
l_serde_json_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    json_error_t jerr;
    struct buf b;
    char err[512];
    json_t *j;
    int rv;

    buf_init(&b);
    rv = policy_read_file(path, &b, err, sizeof(err));
    if (rv != 0) {
        buf_fini(&b);
        return luaL_error(L, "kumo.serde.json_load: %s", err);
    }
    policy_serde_strip_comments(b.data, b.len);
    j = json_loadb(b.data, b.len, JSON_DECODE_ANY, &jerr);
    buf_fini(&b);
    if (j == NULL) {
        return luaL_error(L, "kumo.serde.json_load: %s:%d:%d: %s", path,
                          jerr.line, jerr.column, jerr.text);
    }
    policy_json_box_push(L, j);
    policy_json_push(L, j);
    return 1;
}

static const luaL_Reg policy_serde_funcs[] = {
    {"toml_parse", l_serde_toml_parse},
    {"toml_load", l_serde_toml_load},
    {"toml_encode", l_serde_toml_encode},
    {"toml_encode_pretty", l_serde_toml_encode_pretty},
    {"toml_encode_pretty_compact", l_serde_toml_encode_pretty_compact},
    {"json_load", l_serde_json_load},
    {NULL, NULL},
};

void
policy_open_serde(lua_State *L, int kumo)
{
    POLICY_STACK_ENTER(L);
    kumo = lua_absindex(L, kumo);
    luaL_getsubtable(L, kumo, "serde");
    for (const luaL_Reg *r = policy_serde_funcs; r->name != NULL; r++) {
        lua_pushcfunction(L, r->func);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, r->name);
        /* The pre-2024.09 names, still documented as deprecated aliases. */
        lua_setfield(L, kumo, r->name);
    }
    lua_pop(L, 1);
    POLICY_STACK_LEAVE(L, 0);
}
