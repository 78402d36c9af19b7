/* policy_regex.c - kumo.regex.compile(pattern) and kumo.regex.escape(text)
 * over PCRE2 (8-bit, UTF mode, tolerant of invalid UTF-8 subjects). A
 * compiled "kumo.Regex" has KumoMTA's methods: captures, is_match, find,
 * find_all, replace, replace_all, replacen and split. Replacement text
 * expands $N, $name, ${N} and ${name} to capture groups (empty if there is
 * no such group, the longest name wins) and $$ to "$". KumoMTA uses Rust's
 * regex and fancy-regex syntax; PCRE2's is a superset for the common
 * cases ((?P<name>...) and (?<name>...) both name a group). Also
 * kumo.regex_set_map.new(map): a fixed set of patterns whose lookup gives
 * the value of the first one (in sorted pattern order) that matches. Loop
 * thread only. */
#include "policy_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <lauxlib.h>
#include <pcre2.h>

#include "base/km.h"

#define POLICY_MT_REGEX "kumo.Regex"

/* A compiled pattern and the match data its methods reuse: a method call
 * runs to its end without calling back into Lua, so one is enough. */
struct policy_regex {
    pcre2_code *code;
    pcre2_match_data *md;
};

/* The regex at 1; *md gets its match data. */
static pcre2_code *
policy_regex_check_md(lua_State *L, pcre2_match_data **md)
{
    struct policy_regex *r = luaL_checkudata(L, 1, POLICY_MT_REGEX);

    luaL_argcheck(L, r->code != NULL, 1, "regex was freed");
    *md = r->md;
    return r->code;
}

/* Search s[0..n) from offset; returns true with the ovector on a match,
 * false if none, raises on a matching error (e.g. the match limit). */
static bool
policy_regex_exec(lua_State *L, pcre2_code *code, pcre2_match_data *md,
                  const char *s, size_t n, size_t off)
{
    int rc = pcre2_match(code, (PCRE2_SPTR)s, n, off, 0, md, NULL);

    if (rc >= 0) {
        return true;
    }
    if (rc == PCRE2_ERROR_NOMATCH) {
        return false;
    }
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof(msg));
    return luaL_error(L, "kumo.regex: match failed: %s", (const char *)msg);
}

/* Where to search next after the match [so, eo): past an empty match by one
 * character (a whole UTF-8 sequence), so the scan always advances. */
static size_t
policy_regex_next(const char *s, size_t n, size_t so, size_t eo)
{
    if (eo > so) {
        return eo;
    }
    eo++;
    while (eo < n && ((unsigned char)s[eo] & 0xC0) == 0x80) {
        eo++;
    }
    return eo;
}

/* kumo.regex.compile(pattern) */
static int
l_regex_compile(lua_State *L)
{
    size_t n;
    const char *pat = luaL_checklstring(L, 1, &n);
    struct policy_regex *r = lua_newuserdatauv(L, sizeof(*r), 0);
    PCRE2_SIZE erroff;
    int errcode;

    r->code = NULL;
    r->md = NULL;
    luaL_setmetatable(L, POLICY_MT_REGEX);
    r->code = pcre2_compile((PCRE2_SPTR)pat, n,
                            PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_UCP |
                                PCRE2_DUPNAMES,
                            &errcode, &erroff, NULL);
    if (r->code == NULL) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        return luaL_error(L, "kumo.regex.compile: bad pattern at offset %d: %s",
                          (int)erroff, (const char *)msg);
    }
    r->md = pcre2_match_data_create_from_pattern(r->code, NULL);
    if (r->md == NULL) {
        return luaL_error(L, "kumo.regex.compile: out of memory");
    }
    return 1;
}

static int
l_regex_gc(lua_State *L)
{
    struct policy_regex *r = luaL_checkudata(L, 1, POLICY_MT_REGEX);

    pcre2_match_data_free(r->md);
    r->md = NULL;
    pcre2_code_free(r->code);
    r->code = NULL;
    return 0;
}

/* regex:is_match(haystack) */
static int
l_regex_is_match(lua_State *L)
{
    pcre2_match_data *md;
    pcre2_code *code = policy_regex_check_md(L, &md);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);

    lua_pushboolean(L, policy_regex_exec(L, code, md, s, n, 0));
    return 1;
}

/* regex:find(haystack) -> the first match, or nil */
static int
l_regex_find(lua_State *L)
{
    pcre2_match_data *md;
    pcre2_code *code = policy_regex_check_md(L, &md);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);

    if (!policy_regex_exec(L, code, md, s, n, 0)) {
        lua_pushnil(L);
        return 1;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    lua_pushlstring(L, s + ov[0], ov[1] - ov[0]);
    return 1;
}

/* regex:find_all(haystack) -> { matches } */
static int
l_regex_find_all(lua_State *L)
{
    pcre2_match_data *md;
    pcre2_code *code = policy_regex_check_md(L, &md);
    size_t n, off = 0;
    const char *s = luaL_checklstring(L, 2, &n);
    lua_Integer i = 0;

    lua_newtable(L);
    while (off <= n && policy_regex_exec(L, code, md, s, n, off)) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        lua_pushlstring(L, s + ov[0], ov[1] - ov[0]);
        lua_rawseti(L, -2, ++i);
        off = policy_regex_next(s, n, ov[0], ov[1]);
    }
    return 1;
}

/* regex:captures(haystack) -> {[0] = whole, [1] = ..., name = ...} or nil */
static int
l_regex_captures(lua_State *L)
{
    pcre2_match_data *md;
    pcre2_code *code = policy_regex_check_md(L, &md);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    uint32_t ngroups, namecount, entry;
    PCRE2_SPTR table;
    PCRE2_SIZE *ov;

    if (!policy_regex_exec(L, code, md, s, n, 0)) {
        lua_pushnil(L);
        return 1;
    }
    ov = pcre2_get_ovector_pointer(md);
    pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &ngroups);
    lua_newtable(L);
    for (uint32_t g = 0; g <= ngroups; g++) {
        if (ov[2 * g] != PCRE2_UNSET) {
            lua_pushlstring(L, s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
            lua_rawseti(L, -2, g);
        }
    }
    pcre2_pattern_info(code, PCRE2_INFO_NAMECOUNT, &namecount);
    pcre2_pattern_info(code, PCRE2_INFO_NAMEENTRYSIZE, &entry);
    pcre2_pattern_info(code, PCRE2_INFO_NAMETABLE, &table);
    for (uint32_t k = 0; k < namecount; k++) {
        PCRE2_SPTR e = table + k * entry;
        uint32_t g = ((uint32_t)e[0] << 8) | e[1];
        if (ov[2 * g] != PCRE2_UNSET) {
            lua_pushlstring(L, s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
            lua_setfield(L, -2, (const char *)(e + 2));
        }
    }
    return 1;
}

/* Append capture group `g` of the match (nothing if unset or absent). */
static void
policy_regex_add_group(luaL_Buffer *b, const char *s, PCRE2_SIZE *ov,
                       uint32_t ngroups, long g)
{
    if (g >= 0 && (uint32_t)g <= ngroups && ov[2 * g] != PCRE2_UNSET) {
        luaL_addlstring(b, s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
    }
}

/* Expand the replacement `rep` for the current match into b. */
static void
policy_regex_expand(luaL_Buffer *b, pcre2_code *code, const char *s,
                    PCRE2_SIZE *ov, const char *rep, size_t rn)
{
    uint32_t ngroups;

    pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &ngroups);
    for (size_t i = 0; i < rn; i++) {
        char name[128];
        size_t start, len;
        bool braced;

        if (rep[i] != '$' || i + 1 >= rn) {
            luaL_addchar(b, rep[i]);
            continue;
        }
        if (rep[i + 1] == '$') {
            luaL_addchar(b, '$');
            i++;
            continue;
        }
        braced = rep[i + 1] == '{';
        start = i + (braced ? 2 : 1);
        len = 0;
        while (start + len < rn && (isalnum((unsigned char)rep[start + len]) ||
                                    rep[start + len] == '_')) {
            len++;
        }
        if (len == 0 || len >= sizeof(name) ||
            (braced && (start + len >= rn || rep[start + len] != '}'))) {
            luaL_addchar(b, '$'); /* not a reference: literal */
            continue;
        }
        memcpy(name, rep + start, len);
        name[len] = '\0';
        i = start + len - 1 + (braced ? 1 : 0);
        if (strspn(name, "0123456789") == len) {
            policy_regex_add_group(b, s, ov, ngroups, strtol(name, NULL, 10));
        } else {
            int g = pcre2_substring_number_from_name(code, (PCRE2_SPTR)name);
            policy_regex_add_group(b, s, ov, ngroups, g);
        }
    }
}

/* [-0, +1] Replace at most `limit` matches (0: all) of self in text. */
static int
policy_regex_replace(lua_State *L, int text_idx, lua_Integer limit, int rep_idx)
{
    pcre2_match_data *md;
    pcre2_code *code = policy_regex_check_md(L, &md);
    size_t n, rn, off = 0, copied = 0;
    const char *s = luaL_checklstring(L, text_idx, &n);
    const char *rep = luaL_checklstring(L, rep_idx, &rn);
    lua_Integer done = 0;
    luaL_Buffer b;

    luaL_buffinit(L, &b);
    while ((limit == 0 || done < limit) && off <= n &&
           policy_regex_exec(L, code, md, s, n, off)) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        luaL_addlstring(&b, s + copied, ov[0] - copied);
        policy_regex_expand(&b, code, s, ov, rep, rn);
        copied = ov[1];
        off = policy_regex_next(s, n, ov[0], ov[1]);
        done++;
    }
    luaL_addlstring(&b, s + copied, n - copied);
    luaL_pushresult(&b);
    return 1;
}

/* regex:replace(text, replacement) */
static int
l_regex_replace(lua_State *L)
{
    return policy_regex_replace(L, 2, 1, 3);
}

/* regex:replace_all(text, replacement) */
static int
l_regex_replace_all(lua_State *L)
{
    return policy_regex_replace(L, 2, 0, 3);
}

/* regex:replacen(text, limit, replacement) */
static int
l_regex_replacen(lua_State *L)
{
    lua_Integer limit = luaL_checkinteger(L, 3);

    luaL_argcheck(L, limit >= 0, 3, "limit must not be negative");
    return policy_regex_replace(L, 2, limit, 4);
}

/* regex:split(text) -> { pieces } */
static int
l_regex_split(lua_State *L)
{
    pcre2_match_data *md;
    pcre2_code *code = policy_regex_check_md(L, &md);
    size_t n, off = 0, last = 0;
    const char *s = luaL_checklstring(L, 2, &n);
    lua_Integer i = 0;

    lua_newtable(L);
    while (off <= n && policy_regex_exec(L, code, md, s, n, off)) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0] && (ov[0] == 0 || ov[0] == n)) {
            /* An empty match at either end splits nothing. */
            off = policy_regex_next(s, n, ov[0], ov[1]);
            continue;
        }
        lua_pushlstring(L, s + last, ov[0] - last);
        lua_rawseti(L, -2, ++i);
        last = ov[1];
        off = policy_regex_next(s, n, ov[0], ov[1]);
    }
    lua_pushlstring(L, s + last, n - last);
    lua_rawseti(L, -2, ++i);
    return 1;
}

/* kumo.regex.escape(text) */
static int
l_regex_escape(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    luaL_Buffer b;

    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        if (strchr("\\.+*?()|[]{}^$#&-~", s[i]) != NULL && s[i] != '\0') {
            luaL_addchar(&b, '\\');
        }
        luaL_addchar(&b, s[i]);
    }
    luaL_pushresult(&b);
    return 1;
}

/* ---- kumo.regex_set_map ---- */

#define POLICY_MT_REGEX_SET "kumo.RegexSetMap"

/* The compiled patterns; user value 1 holds { [i] = value }. */
struct policy_regex_set {
    struct policy_regex *v;
    size_t n;
};

static int
l_regex_set_gc(lua_State *L)
{
    struct policy_regex_set *rs = luaL_checkudata(L, 1, POLICY_MT_REGEX_SET);

    for (size_t i = 0; i < rs->n; i++) {
        pcre2_match_data_free(rs->v[i].md);
        pcre2_code_free(rs->v[i].code);
    }
    free(rs->v);
    rs->v = NULL;
    rs->n = 0;
    return 0;
}

static int
policy_regex_set_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* kumo.regex_set_map.new(map): keys are patterns, tried in sorted order. */
static int
l_regex_set_map_new(lua_State *L)
{
    struct policy_regex_set *rs;
    const char **keys;
    size_t n = 0, cap = 8;

    luaL_checktype(L, 1, LUA_TTABLE);
    rs = lua_newuserdatauv(L, sizeof(*rs), 1);
    rs->v = NULL;
    rs->n = 0;
    luaL_setmetatable(L, POLICY_MT_REGEX_SET);
    lua_newtable(L);
    lua_setiuservalue(L, -2, 1);
    /* The keys stay alive in the argument table while we sort them. */
    keys = lua_newuserdatauv(L, cap * sizeof(*keys), 0);
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            return luaL_error(L,
                              "kumo.regex_set_map.new: keys are patterns "
                              "(strings), got %s",
                              luaL_typename(L, -2));
        }
        if (n == cap) {
            const char **bigger;

            cap *= 2;
            bigger = lua_newuserdatauv(L, cap * sizeof(*keys), 0);
            memcpy(bigger, keys, n * sizeof(*keys));
            lua_replace(L, -4); /* below key and value */
            keys = bigger;
        }
        keys[n++] = lua_tostring(L, -2);
        lua_pop(L, 1);
    }
    qsort(keys, n, sizeof(*keys), policy_regex_set_cmp);
    rs->v = km_calloc(n > 0 ? n : 1, sizeof(*rs->v));
    lua_getiuservalue(L, -2, 1);
    for (size_t i = 0; i < n; i++) {
        PCRE2_SIZE erroff;
        int errcode;

        rs->v[i].code =
            pcre2_compile((PCRE2_SPTR)keys[i], PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_UCP,
                          &errcode, &erroff, NULL);
        if (rs->v[i].code == NULL) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(errcode, msg, sizeof(msg));
            return luaL_error(L,
                              "kumo.regex_set_map.new: bad pattern '%s' at "
                              "offset %d: %s",
                              keys[i], (int)erroff, (const char *)msg);
        }
        rs->n = i + 1;
        rs->v[i].md = pcre2_match_data_create_from_pattern(rs->v[i].code, NULL);
        if (rs->v[i].md == NULL) {
            return luaL_error(L, "kumo.regex_set_map.new: out of memory");
        }
        lua_getfield(L, 1, keys[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_pop(L, 2); /* the values table and the keys */
    return 1;
}

/* __index(map, haystack): the value of the first pattern that matches */
static int
l_regex_set_index(lua_State *L)
{
    struct policy_regex_set *rs = luaL_checkudata(L, 1, POLICY_MT_REGEX_SET);
    size_t n;
    const char *s;

    if (lua_type(L, 2) != LUA_TSTRING) {
        lua_pushnil(L);
        return 1;
    }
    s = lua_tolstring(L, 2, &n);
    for (size_t i = 0; i < rs->n; i++) {
        if (policy_regex_exec(L, rs->v[i].code, rs->v[i].md, s, n, 0)) {
            lua_getiuservalue(L, 1, 1);
            lua_rawgeti(L, -1, (lua_Integer)i + 1);
            return 1;
        }
    }
    lua_pushnil(L);
    return 1;
}

static int
l_regex_set_newindex(lua_State *L)
{
    return luaL_error(L, "kumo.regex_set_map: the map cannot be changed "
                         "after kumo.regex_set_map.new");
}

void
policy_open_regex(lua_State *L, int kumo)
{
    static const luaL_Reg methods[] = {
        {"captures", l_regex_captures},
        {"is_match", l_regex_is_match},
        {"find", l_regex_find},
        {"find_all", l_regex_find_all},
        {"replace", l_regex_replace},
        {"replace_all", l_regex_replace_all},
        {"replacen", l_regex_replacen},
        {"split", l_regex_split},
        {NULL, NULL},
    };

    POLICY_STACK_ENTER(L);
    kumo = lua_absindex(L, kumo);
    luaL_newmetatable(L, POLICY_MT_REGEX);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_regex_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, POLICY_MT_REGEX_SET);
    lua_pushcfunction(L, l_regex_set_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_regex_set_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, l_regex_set_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_getsubtable(L, kumo, "regex_set_map");
    lua_pushcfunction(L, l_regex_set_map_new);
    lua_setfield(L, -2, "new");
    lua_pop(L, 1);
    luaL_getsubtable(L, kumo, "regex");
    lua_pushcfunction(L, l_regex_compile);
    lua_setfield(L, -2, "compile");
    lua_pushcfunction(L, l_regex_escape);
    lua_setfield(L, -2, "escape");
    lua_pop(L, 1);
    POLICY_STACK_LEAVE(L, 0);
}
