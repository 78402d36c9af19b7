/* policy_string.c - kumo.string.*: literal-pattern splitting (split,
 * splitn, rsplit, rsplitn, split_whitespace, split_ascii_whitespace),
 * replace and replacen, starts_with and ends_with, trim, trim_start and
 * trim_end, and wrap (header folding at whitespace with CR LF TAB). The
 * patterns are plain strings, not Lua patterns or regexes, as in KumoMTA
 * (Rust's str methods). Whitespace is ASCII whitespace. Loop thread only. */
#include "policy_int.h"

#include <string.h>

#include <lauxlib.h>

/* Find needle in hay[from..n), or NULL. */
static const char *
policy_string_find(const char *hay, size_t n, size_t from, const char *needle,
                   size_t nn)
{
    if (from > n || nn > n - from) {
        return NULL;
    }
    return memmem(hay + from, n - from, needle, nn);
}

/* Find the last needle in hay[0..end), or NULL. */
static const char *
policy_string_rfind(const char *hay, size_t end, const char *needle, size_t nn)
{
    if (nn > end) {
        return NULL;
    }
    for (size_t i = end - nn + 1; i-- > 0;) {
        if (memcmp(hay + i, needle, nn) == 0) {
            return hay + i;
        }
    }
    return NULL;
}

static const char *
policy_string_check_pattern(lua_State *L, int idx, size_t *nn)
{
    const char *p = luaL_checklstring(L, idx, nn);

    luaL_argcheck(L, *nn > 0, idx, "the pattern must not be empty");
    return p;
}

/* [-0, +1] Split s at every pattern from the left, into at most limit
 * pieces (0: no limit). */
static int
policy_string_split(lua_State *L, int s_idx, lua_Integer limit, int p_idx)
{
    size_t n, nn, pos = 0;
    const char *s = luaL_checklstring(L, s_idx, &n);
    const char *pat = policy_string_check_pattern(L, p_idx, &nn);
    lua_Integer i = 0;
    const char *hit;

    lua_newtable(L);
    while ((limit == 0 || i + 1 < limit) &&
           (hit = policy_string_find(s, n, pos, pat, nn)) != NULL) {
        lua_pushlstring(L, s + pos, (size_t)(hit - s) - pos);
        lua_rawseti(L, -2, ++i);
        pos = (size_t)(hit - s) + nn;
    }
    lua_pushlstring(L, s + pos, n - pos);
    lua_rawseti(L, -2, ++i);
    return 1;
}

/* [-0, +1] The same from the right: pieces come last first. */
static int
policy_string_rsplit(lua_State *L, int s_idx, lua_Integer limit, int p_idx)
{
    size_t n, nn, end;
    const char *s = luaL_checklstring(L, s_idx, &n);
    const char *pat = policy_string_check_pattern(L, p_idx, &nn);
    lua_Integer i = 0;
    const char *hit;

    end = n;
    lua_newtable(L);
    while ((limit == 0 || i + 1 < limit) &&
           (hit = policy_string_rfind(s, end, pat, nn)) != NULL) {
        size_t at = (size_t)(hit - s);
        lua_pushlstring(L, hit + nn, end - at - nn);
        lua_rawseti(L, -2, ++i);
        end = at;
    }
    lua_pushlstring(L, s, end);
    lua_rawseti(L, -2, ++i);
    return 1;
}

static lua_Integer
policy_string_limit(lua_State *L, int idx)
{
    lua_Integer limit = luaL_checkinteger(L, idx);

    luaL_argcheck(L, limit >= 1, idx, "limit must be at least 1");
    return limit;
}

/* kumo.string.split(s, pattern) */
static int
l_string_split(lua_State *L)
{
    return policy_string_split(L, 1, 0, 2);
}

/* kumo.string.splitn(s, limit, pattern) */
static int
l_string_splitn(lua_State *L)
{
    return policy_string_split(L, 1, policy_string_limit(L, 2), 3);
}

/* kumo.string.rsplit(s, pattern) */
static int
l_string_rsplit(lua_State *L)
{
    return policy_string_rsplit(L, 1, 0, 2);
}

/* kumo.string.rsplitn(s, limit, pattern) */
static int
l_string_rsplitn(lua_State *L)
{
    return policy_string_rsplit(L, 1, policy_string_limit(L, 2), 3);
}

static bool
policy_string_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
           c == '\v';
}

/* kumo.string.split_whitespace(s) and split_ascii_whitespace(s) */
static int
l_string_split_whitespace(lua_State *L)
{
    size_t n, i = 0;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_Integer k = 0;

    lua_newtable(L);
    while (i < n) {
        size_t start;

        while (i < n && policy_string_is_space(s[i])) {
            i++;
        }
        start = i;
        while (i < n && !policy_string_is_space(s[i])) {
            i++;
        }
        if (i > start) {
            lua_pushlstring(L, s + start, i - start);
            lua_rawseti(L, -2, ++k);
        }
    }
    return 1;
}

/* [-0, +1] Replace the first `count` (0: all) occurrences of from. */
static int
policy_string_replace(lua_State *L, lua_Integer count)
{
    size_t n, fn, tn, pos = 0;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *from = policy_string_check_pattern(L, 2, &fn);
    const char *to = luaL_checklstring(L, 3, &tn);
    lua_Integer done = 0;
    const char *hit;
    luaL_Buffer b;

    luaL_buffinit(L, &b);
    while ((count == 0 || done < count) &&
           (hit = policy_string_find(s, n, pos, from, fn)) != NULL) {
        luaL_addlstring(&b, s + pos, (size_t)(hit - s) - pos);
        luaL_addlstring(&b, to, tn);
        pos = (size_t)(hit - s) + fn;
        done++;
    }
    luaL_addlstring(&b, s + pos, n - pos);
    luaL_pushresult(&b);
    return 1;
}

/* kumo.string.replace(s, from, to) */
static int
l_string_replace(lua_State *L)
{
    return policy_string_replace(L, 0);
}

/* kumo.string.replacen(s, from, to, count) */
static int
l_string_replacen(lua_State *L)
{
    lua_Integer count = luaL_checkinteger(L, 4);

    luaL_argcheck(L, count >= 0, 4, "count must not be negative");
    if (count == 0) {
        lua_settop(L, 1);
        luaL_checkstring(L, 1);
        return 1;
    }
    return policy_string_replace(L, count);
}

/* kumo.string.starts_with(s, prefix) */
static int
l_string_starts_with(lua_State *L)
{
    size_t n, pn;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *p = luaL_checklstring(L, 2, &pn);

    lua_pushboolean(L, pn <= n && memcmp(s, p, pn) == 0);
    return 1;
}

/* kumo.string.ends_with(s, suffix) */
static int
l_string_ends_with(lua_State *L)
{
    size_t n, pn;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *p = luaL_checklstring(L, 2, &pn);

    lua_pushboolean(L, pn <= n && memcmp(s + n - pn, p, pn) == 0);
    return 1;
}

/* [-0, +1] s without leading (lead) and/or trailing (trail) whitespace. */
static int
policy_string_trim(lua_State *L, bool lead, bool trail)
{
    size_t n, a = 0;
    const char *s = luaL_checklstring(L, 1, &n);

    while (lead && a < n && policy_string_is_space(s[a])) {
        a++;
    }
    while (trail && n > a && policy_string_is_space(s[n - 1])) {
        n--;
    }
    lua_pushlstring(L, s + a, n - a);
    return 1;
}

static int
l_string_trim(lua_State *L)
{
    return policy_string_trim(L, true, true);
}

static int
l_string_trim_start(lua_State *L)
{
    return policy_string_trim(L, true, false);
}

static int
l_string_trim_end(lua_State *L)
{
    return policy_string_trim(L, false, true);
}

/* kumo.string.wrap(text [, soft = 75 [, hard = 900]]): words are joined
 * with single spaces; a line breaks (CR LF TAB) before a word that would
 * take it past soft, and a word longer than hard is cut every hard bytes. */
static int
l_string_wrap(lua_State *L)
{
    size_t n, i = 0, line = 0;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_Integer soft = luaL_optinteger(L, 2, 75);
    lua_Integer hard = luaL_optinteger(L, 3, 900);
    luaL_Buffer b;

    luaL_argcheck(L, soft >= 1, 2, "soft limit must be at least 1");
    luaL_argcheck(L, hard >= soft, 3,
                  "hard limit must be at least the soft one");
    luaL_buffinit(L, &b);
    while (i < n) {
        size_t start, wn;

        while (i < n && policy_string_is_space(s[i])) {
            i++;
        }
        start = i;
        while (i < n && !policy_string_is_space(s[i])) {
            i++;
        }
        wn = i - start;
        if (wn == 0) {
            break;
        }
        if (line > 0 && line + 1 + wn > (size_t)soft) {
            luaL_addstring(&b, "\r\n\t");
            line = 0;
        } else if (line > 0) {
            luaL_addchar(&b, ' ');
            line++;
        }
        while (wn > (size_t)hard) {
            luaL_addlstring(&b, s + start, (size_t)hard);
            luaL_addstring(&b, "\r\n\t");
            start += (size_t)hard;
            wn -= (size_t)hard;
        }
        luaL_addlstring(&b, s + start, wn);
        line += wn;
    }
    luaL_pushresult(&b);
    return 1;
}

void
policy_open_string(lua_State *L, int kumo)
{
    static const luaL_Reg funcs[] = {
        {"split", l_string_split},
        {"splitn", l_string_splitn},
        {"rsplit", l_string_rsplit},
        {"rsplitn", l_string_rsplitn},
        {"split_whitespace", l_string_split_whitespace},
        {"split_ascii_whitespace", l_string_split_whitespace},
        {"replace", l_string_replace},
        {"replacen", l_string_replacen},
        {"starts_with", l_string_starts_with},
        {"ends_with", l_string_ends_with},
        {"trim", l_string_trim},
        {"trim_start", l_string_trim_start},
        {"trim_end", l_string_trim_end},
        {"wrap", l_string_wrap},
        {NULL, NULL},
    };

    POLICY_STACK_ENTER(L);
    kumo = lua_absindex(L, kumo);
    luaL_getsubtable(L, kumo, "string");
    luaL_setfuncs(L, funcs, 0);
    lua_pop(L, 1);
    POLICY_STACK_LEAVE(L, 0);
}
