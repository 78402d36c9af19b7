/* policy_time.c - kumo.time.* ("kumo.Time", a UTC instant, and
 * "kumo.TimeDelta", a signed interval, both in integer nanoseconds:
 * years 1678 to 2262) and kumo.uuid.* (new_v1, new_v4, new_v6, new_v7,
 * parse; a "kumo.Uuid" whose fields give its text forms). Times are
 * formatted with the C library's strftime over gmtime. Random bytes come
 * from OpenSSL. kumo.time.sleep and kumo.time.start_timer are refused by
 * name: handlers cannot yield (policy.c calls them to completion on the
 * loop thread) and kumod has no user latency histograms. Loop thread only. */
#include "policy_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <lauxlib.h>
#include <openssl/rand.h>

#include "base/km.h"

#define POLICY_MT_TIME  "kumo.Time"
#define POLICY_MT_DELTA "kumo.TimeDelta"
#define POLICY_MT_UUID  "kumo.Uuid"
#define POLICY_NS       1000000000LL

/* ---- Time and TimeDelta values ---- */

static void
policy_time_push(lua_State *L, const char *mt, int64_t ns)
{
    int64_t *v = lua_newuserdatauv(L, sizeof(*v), 0);

    *v = ns;
    luaL_setmetatable(L, mt);
}

static int64_t
policy_time_check(lua_State *L, int idx, const char *mt)
{
    return *(int64_t *)luaL_checkudata(L, idx, mt);
}

/* [-0, +1] "%Y-%m-%dT%H:%M:%S[.frac]+00:00" (fractions as needed). */
static void
policy_time_push_rfc3339(lua_State *L, int64_t ns)
{
    time_t sec = (time_t)(ns >= 0 ? ns / POLICY_NS
                                  : -((-ns + POLICY_NS - 1) / POLICY_NS));
    long frac = (long)(ns - (int64_t)sec * POLICY_NS);
    char buf[64], fr[24] = "";
    struct tm tm;

    gmtime_r(&sec, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    if (frac % 1000000 == 0 && frac != 0) {
        snprintf(fr, sizeof(fr), ".%03ld", frac / 1000000);
    } else if (frac % 1000 == 0 && frac != 0) {
        snprintf(fr, sizeof(fr), ".%06ld", frac / 1000);
    } else if (frac != 0) {
        snprintf(fr, sizeof(fr), ".%09ld", frac);
    }
    lua_pushfstring(L, "%s%s+00:00", buf, fr);
}

static void
policy_time_tm(int64_t ns, struct tm *tm)
{
    time_t sec = (time_t)(ns >= 0 ? ns / POLICY_NS
                                  : -((-ns + POLICY_NS - 1) / POLICY_NS));

    gmtime_r(&sec, tm);
}

/* [-0, +1] strftime of the time's UTC calendar fields. */
static void
policy_time_push_format(lua_State *L, int64_t ns, const char *fmt)
{
    char buf[512];
    struct tm tm;
    size_t n;

    policy_time_tm(ns, &tm);
    /* The format is the policy's, by design (time:format). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    n = strftime(buf, sizeof(buf), fmt, &tm);
#pragma GCC diagnostic pop
    if (n == 0 && fmt[0] != '\0') {
        luaL_error(L,
                   "kumo.Time:format: the result of '%s' is empty or "
                   "longer than 511 bytes",
                   fmt);
    }
    lua_pushlstring(L, buf, n);
}

/* [-0, +1] A humantime-style text: "1h 5m 3s", "250ms", "0s". */
static void
policy_delta_push_human(lua_State *L, int64_t ns)
{
    static const struct {
        int64_t unit;
        const char *one, *many;
    } parts[] = {
        {86400 * POLICY_NS, "day", "days"},
        {3600 * POLICY_NS, "h", "h"},
        {60 * POLICY_NS, "m", "m"},
        {POLICY_NS, "s", "s"},
        {1000000, "ms", "ms"},
        {1000, "us", "us"},
        {1, "ns", "ns"},
    };

    luaL_Buffer b;
    bool any = false;
    uint64_t left = ns < 0 ? (uint64_t)(-(ns + 1)) + 1 : (uint64_t)ns;

    luaL_buffinit(L, &b);
    if (ns < 0) {
        luaL_addchar(&b, '-');
    }
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        uint64_t q = left / (uint64_t)parts[i].unit;
        if (q > 0) {
            char t[48];
            snprintf(t, sizeof(t), "%s%llu%s", any ? " " : "",
                     (unsigned long long)q,
                     q == 1 ? parts[i].one : parts[i].many);
            luaL_addstring(&b, t);
            left -= q * (uint64_t)parts[i].unit;
            any = true;
        }
    }
    if (!any) {
        luaL_addstring(&b, "0s");
    }
    luaL_pushresult(&b);
}

static int
l_time_index(lua_State *L)
{
    int64_t ns = policy_time_check(L, 1, POLICY_MT_TIME);
    const char *k = luaL_checkstring(L, 2);
    struct tm tm;

    policy_time_tm(ns, &tm);
    if (strcmp(k, "year") == 0) {
        lua_pushinteger(L, tm.tm_year + 1900);
    } else if (strcmp(k, "month") == 0) {
        lua_pushinteger(L, tm.tm_mon + 1);
    } else if (strcmp(k, "day") == 0) {
        lua_pushinteger(L, tm.tm_mday);
    } else if (strcmp(k, "hour") == 0) {
        lua_pushinteger(L, tm.tm_hour);
    } else if (strcmp(k, "minute") == 0) {
        lua_pushinteger(L, tm.tm_min);
    } else if (strcmp(k, "second") == 0) {
        lua_pushinteger(L, tm.tm_sec);
    } else if (strcmp(k, "unix_timestamp") == 0) {
        lua_pushinteger(L, (lua_Integer)floor((double)ns / (double)POLICY_NS));
    } else if (strcmp(k, "unix_timestamp_millis") == 0) {
        lua_pushinteger(L, (lua_Integer)floor((double)ns / 1e6));
    } else if (strcmp(k, "rfc2822") == 0) {
        policy_time_push_format(L, ns, "%a, %d %b %Y %H:%M:%S +0000");
    } else if (strcmp(k, "rfc3339") == 0) {
        policy_time_push_rfc3339(L, ns);
    } else if (strcmp(k, "elapsed") == 0) {
        policy_time_push(L, POLICY_MT_DELTA, km_now_wall_us() * 1000 - ns);
    } else if (strcmp(k, "format") == 0) {
        lua_getmetatable(L, 1);
        lua_getfield(L, -1, "format");
    } else {
        lua_pushnil(L);
    }
    return 1;
}

/* time:format(fmt) */
static int
l_time_format(lua_State *L)
{
    int64_t ns = policy_time_check(L, 1, POLICY_MT_TIME);

    policy_time_push_format(L, ns, luaL_checkstring(L, 2));
    return 1;
}

static int
l_time_tostring(lua_State *L)
{
    policy_time_push_format(L, policy_time_check(L, 1, POLICY_MT_TIME),
                            "%Y-%m-%d %H:%M:%S UTC");
    return 1;
}

static int
l_time_eq(lua_State *L)
{
    lua_pushboolean(L, policy_time_check(L, 1, POLICY_MT_TIME) ==
                           policy_time_check(L, 2, POLICY_MT_TIME));
    return 1;
}

static int
l_time_lt(lua_State *L)
{
    lua_pushboolean(L, policy_time_check(L, 1, POLICY_MT_TIME) <
                           policy_time_check(L, 2, POLICY_MT_TIME));
    return 1;
}

/* time + delta, delta + time */
static int
l_time_add(lua_State *L)
{
    int t = luaL_testudata(L, 1, POLICY_MT_TIME) != NULL ? 1 : 2;

    policy_time_push(L, POLICY_MT_TIME,
                     policy_time_check(L, t, POLICY_MT_TIME) +
                         policy_time_check(L, 3 - t, POLICY_MT_DELTA));
    return 1;
}

/* time - delta -> Time, time - time -> TimeDelta */
static int
l_time_sub(lua_State *L)
{
    int64_t a = policy_time_check(L, 1, POLICY_MT_TIME);

    if (luaL_testudata(L, 2, POLICY_MT_TIME) != NULL) {
        policy_time_push(L, POLICY_MT_DELTA,
                         a - policy_time_check(L, 2, POLICY_MT_TIME));
    } else {
        policy_time_push(L, POLICY_MT_TIME,
                         a - policy_time_check(L, 2, POLICY_MT_DELTA));
    }
    return 1;
}

static int
l_delta_index(lua_State *L)
{
    int64_t ns = policy_time_check(L, 1, POLICY_MT_DELTA);
    const char *k = luaL_checkstring(L, 2);

    if (strcmp(k, "seconds") == 0) {
        lua_pushnumber(L, (lua_Number)ns / 1e9);
    } else if (strcmp(k, "nanoseconds") == 0) {
        lua_pushinteger(L, ns);
    } else if (strcmp(k, "microseconds") == 0) {
        lua_pushinteger(L, ns / 1000);
    } else if (strcmp(k, "milliseconds") == 0) {
        lua_pushinteger(L, ns / 1000000);
    } else if (strcmp(k, "human") == 0) {
        policy_delta_push_human(L, ns);
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static int
l_delta_tostring(lua_State *L)
{
    policy_delta_push_human(L, policy_time_check(L, 1, POLICY_MT_DELTA));
    return 1;
}

static int
l_delta_eq(lua_State *L)
{
    lua_pushboolean(L, policy_time_check(L, 1, POLICY_MT_DELTA) ==
                           policy_time_check(L, 2, POLICY_MT_DELTA));
    return 1;
}

static int
l_delta_lt(lua_State *L)
{
    lua_pushboolean(L, policy_time_check(L, 1, POLICY_MT_DELTA) <
                           policy_time_check(L, 2, POLICY_MT_DELTA));
    return 1;
}

static int
l_delta_add(lua_State *L)
{
    if (luaL_testudata(L, 1, POLICY_MT_TIME) != NULL ||
        luaL_testudata(L, 2, POLICY_MT_TIME) != NULL) {
        return l_time_add(L);
    }
    policy_time_push(L, POLICY_MT_DELTA,
                     policy_time_check(L, 1, POLICY_MT_DELTA) +
                         policy_time_check(L, 2, POLICY_MT_DELTA));
    return 1;
}

static int
l_delta_sub(lua_State *L)
{
    policy_time_push(L, POLICY_MT_DELTA,
                     policy_time_check(L, 1, POLICY_MT_DELTA) -
                         policy_time_check(L, 2, POLICY_MT_DELTA));
    return 1;
}

/* ---- kumo.time functions ---- */

static int
l_time_now(lua_State *L)
{
    policy_time_push(L, POLICY_MT_TIME, km_now_wall_us() * 1000);
    return 1;
}

/* kumo.time.from_unix_timestamp(seconds) */
static int
l_time_from_unix_timestamp(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);

    luaL_argcheck(L, fabs(s) < 9.2e9, 1, "timestamp out of range");
    policy_time_push(L, POLICY_MT_TIME, (int64_t)llround(s * 1e9));
    return 1;
}

/* Whether y-m-d h:mi:s is a real UTC calendar time; *out its ns. */
static bool
policy_time_from_fields(lua_Integer y, lua_Integer m, lua_Integer d,
                        lua_Integer h, lua_Integer mi, lua_Integer s,
                        int64_t *out)
{
    struct tm tm = {0};
    struct tm back;
    time_t t;

    if (y < 1678 || y > 2261 || m < 1 || m > 12 || d < 1 || d > 31 || h < 0 ||
        h > 23 || mi < 0 || mi > 59 || s < 0 || s > 60) {
        return false;
    }
    tm.tm_year = (int)y - 1900;
    tm.tm_mon = (int)m - 1;
    tm.tm_mday = (int)d;
    tm.tm_hour = (int)h;
    tm.tm_min = (int)mi;
    tm.tm_sec = (int)(s == 60 ? 59 : s);
    t = timegm(&tm);
    gmtime_r(&t, &back);
    if (back.tm_mday != (int)d || back.tm_mon != (int)m - 1) {
        return false; /* e.g. February 30 */
    }
    *out = (int64_t)t * POLICY_NS;
    return true;
}

/* kumo.time.with_ymd_hms(year, month, day, hour, minute, second) */
static int
l_time_with_ymd_hms(lua_State *L)
{
    int64_t ns;

    if (!policy_time_from_fields(
            luaL_checkinteger(L, 1), luaL_checkinteger(L, 2),
            luaL_checkinteger(L, 3), luaL_checkinteger(L, 4),
            luaL_checkinteger(L, 5), luaL_checkinteger(L, 6), &ns)) {
        return luaL_error(L, "kumo.time.with_ymd_hms: not a valid UTC date "
                             "and time");
    }
    policy_time_push(L, POLICY_MT_TIME, ns);
    return 1;
}

/* kumo.time.parse_rfc3339(text): 2024-01-02T03:04:05[.frac](Z|+hh:mm) */
static int
l_time_parse_rfc3339(lua_State *L)
{
    const char *s = luaL_checkstring(L, 1);
    int y, mo, d, h, mi, sec, n = 0, oh = 0, om = 0;
    int64_t ns, frac = 0, scale = POLICY_NS;
    const char *p;

    if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi,
               &sec, &n) != 6 ||
        n != 19) {
        goto bad;
    }
    p = s + n;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9') {
            goto bad;
        }
        for (; *p >= '0' && *p <= '9'; p++) {
            if (scale > 1) {
                scale /= 10;
                frac += (*p - '0') * scale;
            }
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') &&
               sscanf(p + 1, "%2d:%2d", &oh, &om) == 2 && strlen(p) == 6) {
        int sign = *p == '-' ? -1 : 1;
        oh *= sign;
        om *= sign;
        p += 6;
    } else {
        goto bad;
    }
    if (*p != '\0' || !policy_time_from_fields(y, mo, d, h, mi, sec, &ns)) {
        goto bad;
    }
    policy_time_push(L, POLICY_MT_TIME,
                     ns + frac - ((int64_t)oh * 3600 + om * 60) * POLICY_NS);
    return 1;
bad:
    return luaL_error(L,
                      "kumo.time.parse_rfc3339: '%s' is not an RFC 3339 "
                      "date and time",
                      s);
}

/* kumo.time.parse_rfc2822(text): [Day, ]DD Mon YYYY HH:MM[:SS] zone */
static int
l_time_parse_rfc2822(lua_State *L)
{
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr",
                                         "May", "Jun", "Jul", "Aug",
                                         "Sep", "Oct", "Nov", "Dec"};
    const char *s = luaL_checkstring(L, 1);
    const char *p = strchr(s, ',') != NULL ? strchr(s, ',') + 1 : s;
    char mon[4], zone[8] = "";
    int d, y, h, mi, sec = 0, m = -1, off = 0;
    int64_t ns;

    if (sscanf(p, " %2d %3s %4d %2d:%2d:%2d %7s", &d, mon, &y, &h, &mi, &sec,
               zone) != 7 &&
        (sec = 0, sscanf(p, " %2d %3s %4d %2d:%2d %7s", &d, mon, &y, &h, &mi,
                         zone) != 6)) {
        goto bad;
    }
    for (int i = 0; i < 12; i++) {
        if (strcasecmp(mon, months[i]) == 0) {
            m = i + 1;
        }
    }
    if ((zone[0] == '+' || zone[0] == '-') && strlen(zone) == 5 &&
        strspn(zone + 1, "0123456789") == 4) {
        int v = atoi(zone + 1);
        off = (v / 100 * 60 + v % 100) * (zone[0] == '-' ? -1 : 1);
    } else if (strcasecmp(zone, "GMT") != 0 && strcasecmp(zone, "UT") != 0 &&
               strcasecmp(zone, "UTC") != 0 && strcasecmp(zone, "Z") != 0) {
        goto bad;
    }
    if (m < 0 || !policy_time_from_fields(y, m, d, h, mi, sec, &ns)) {
        goto bad;
    }
    policy_time_push(L, POLICY_MT_TIME, ns - (int64_t)off * 60 * POLICY_NS);
    return 1;
bad:
    return luaL_error(L,
                      "kumo.time.parse_rfc2822: '%s' is not an RFC 2822 "
                      "date and time",
                      s);
}

/* kumo.time.parse_duration(seconds | "5 minutes") */
static int
l_time_parse_duration(lua_State *L)
{
    uint64_t ms;

    if (lua_type(L, 1) == LUA_TNUMBER) {
        lua_Number s = lua_tonumber(L, 1);
        luaL_argcheck(L, fabs(s) < 9.2e9, 1, "duration out of range");
        policy_time_push(L, POLICY_MT_DELTA, (int64_t)llround(s * 1e9));
        return 1;
    }
    if (lua_type(L, 1) != LUA_TSTRING ||
        km_parse_duration_ms(lua_tostring(L, 1), &ms) != 0) {
        return luaL_error(L,
                          "kumo.time.parse_duration: expected a number of "
                          "seconds or a duration such as \"5 minutes\", got %s",
                          lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1)
                                                        : luaL_typename(L, 1));
    }
    policy_time_push(L, POLICY_MT_DELTA, (int64_t)ms * 1000000);
    return 1;
}

static int
l_time_epoch_millis(lua_State *L)
{
    lua_pushinteger(L, km_now_wall_ms());
    return 1;
}

/* kumo.time.since_millis(epoch_ms) */
static int
l_time_since_millis(lua_State *L)
{
    lua_pushinteger(L, km_now_wall_ms() - luaL_checkinteger(L, 1));
    return 1;
}

static int
l_time_refused(lua_State *L)
{
    return luaL_error(L, "%s", lua_tostring(L, lua_upvalueindex(1)));
}

/* ---- kumo.uuid ---- */

static void
policy_uuid_push(lua_State *L, const unsigned char b[16])
{
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, (const char *)b, 16);
    lua_setfield(L, -2, "bytes");
    luaL_setmetatable(L, POLICY_MT_UUID);
}

static void
policy_uuid_random(lua_State *L, unsigned char *b, int n)
{
    if (RAND_bytes(b, n) != 1) {
        luaL_error(L, "kumo.uuid: no random bytes from OpenSSL");
    }
}

/* Set the version nibble and the RFC 9562 variant. */
static void
policy_uuid_stamp(unsigned char b[16], unsigned version)
{
    b[6] = (unsigned char)((b[6] & 0x0f) | (version << 4));
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
}

static int
l_uuid_new_v4(lua_State *L)
{
    unsigned char b[16];

    policy_uuid_random(L, b, 16);
    policy_uuid_stamp(b, 4);
    policy_uuid_push(L, b);
    return 1;
}

static int
l_uuid_new_v7(lua_State *L)
{
    uint64_t ms = (uint64_t)km_now_wall_ms();
    unsigned char b[16];

    policy_uuid_random(L, b, 16);
    for (int i = 0; i < 6; i++) {
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    }
    policy_uuid_stamp(b, 7);
    policy_uuid_push(L, b);
    return 1;
}

/* v1 and v6: 100 ns ticks since 1582-10-15, a random clock sequence and
 * a random node id with the multicast bit set (RFC 9562 6.10). */
static int
policy_uuid_time_based(lua_State *L, unsigned version)
{
    uint64_t ticks = (uint64_t)km_now_wall_us() * 10 + 0x01B21DD213814000ULL;
    unsigned char b[16];

    policy_uuid_random(L, b, 16);
    b[10] |= 0x01;
    if (version == 1) {
        uint32_t low = (uint32_t)ticks;
        uint16_t mid = (uint16_t)(ticks >> 32);
        uint16_t hi = (uint16_t)(ticks >> 48);
        b[0] = (unsigned char)(low >> 24);
        b[1] = (unsigned char)(low >> 16);
        b[2] = (unsigned char)(low >> 8);
        b[3] = (unsigned char)low;
        b[4] = (unsigned char)(mid >> 8);
        b[5] = (unsigned char)mid;
        b[6] = (unsigned char)((hi >> 8) & 0x0f);
        b[7] = (unsigned char)hi;
    } else {
        uint64_t top = ticks >> 12; /* 48 most significant bits */
        for (int i = 0; i < 6; i++) {
            b[i] = (unsigned char)(top >> (40 - 8 * i));
        }
        b[6] = (unsigned char)((ticks >> 8) & 0x0f);
        b[7] = (unsigned char)ticks;
    }
    policy_uuid_stamp(b, version);
    policy_uuid_push(L, b);
    return 1;
}

static int
l_uuid_new_v1(lua_State *L)
{
    return policy_uuid_time_based(L, 1);
}

static int
l_uuid_new_v6(lua_State *L)
{
    return policy_uuid_time_based(L, 6);
}

/* kumo.uuid.parse(text): hyphenated, simple, braced or urn form. */
static int
l_uuid_parse(lua_State *L)
{
    const char *s = luaL_checkstring(L, 1);
    const char *p = s;
    unsigned char b[16];
    size_t n = strlen(s);
    int k = 0;

    if (n > 9 && strncasecmp(p, "urn:uuid:", 9) == 0) {
        p += 9;
        n -= 9;
    } else if (n == 38 && p[0] == '{' && p[37] == '}') {
        p++;
        n -= 2;
    }
    if (n != 32 && n != 36) {
        goto bad;
    }
    for (size_t i = 0; i < n && k < 32; i++) {
        int v;

        if (n == 36 && (i == 8 || i == 13 || i == 18 || i == 23)) {
            if (p[i] != '-') {
                goto bad;
            }
            continue;
        }
        if (p[i] >= '0' && p[i] <= '9') {
            v = p[i] - '0';
        } else if ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'f') {
            v = (p[i] | 0x20) - 'a' + 10;
        } else {
            goto bad;
        }
        if (k % 2 == 0) {
            b[k / 2] = (unsigned char)(v << 4);
        } else {
            b[k / 2] |= (unsigned char)v;
        }
        k++;
    }
    if (k != 32) {
        goto bad;
    }
    policy_uuid_push(L, b);
    return 1;
bad:
    return luaL_error(L, "kumo.uuid.parse: '%s' is not a UUID", s);
}

/* [-0, +1] The UUID's text in one of its forms. */
static void
policy_uuid_push_text(lua_State *L, const unsigned char *b, const char *form)
{
    char hex[33], out[64];

    for (int i = 0; i < 16; i++) {
        snprintf(hex + 2 * i, 3, "%02x", b[i]);
    }
    if (strcmp(form, "simple") == 0) {
        lua_pushstring(L, hex);
        return;
    }
    snprintf(out, sizeof(out), "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8,
             hex + 12, hex + 16, hex + 20);
    if (strcmp(form, "braced") == 0) {
        lua_pushfstring(L, "{%s}", out);
    } else if (strcmp(form, "urn") == 0) {
        lua_pushfstring(L, "urn:uuid:%s", out);
    } else {
        lua_pushstring(L, out);
    }
}

static int
l_uuid_index(lua_State *L)
{
    const char *k = luaL_checkstring(L, 2);
    size_t n;
    const char *b;

    lua_pushliteral(L, "bytes");
    lua_rawget(L, 1);
    b = lua_tolstring(L, -1, &n);
    if (b == NULL || n != 16 ||
        (strcmp(k, "hyphenated") != 0 && strcmp(k, "simple") != 0 &&
         strcmp(k, "braced") != 0 && strcmp(k, "urn") != 0)) {
        lua_pushnil(L);
        return 1;
    }
    policy_uuid_push_text(L, (const unsigned char *)b, k);
    return 1;
}

static int
l_uuid_tostring(lua_State *L)
{
    size_t n;
    const char *b;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushliteral(L, "bytes");
    lua_rawget(L, 1);
    b = lua_tolstring(L, -1, &n);
    luaL_argcheck(L, b != NULL && n == 16, 1, "not a kumo.Uuid");
    policy_uuid_push_text(L, (const unsigned char *)b, "hyphenated");
    return 1;
}

static int
l_uuid_eq(lua_State *L)
{
    lua_pushliteral(L, "bytes");
    lua_rawget(L, 1);
    lua_pushliteral(L, "bytes");
    lua_rawget(L, 2);
    lua_pushboolean(L, lua_rawequal(L, -1, -2));
    return 1;
}

void
policy_open_time(lua_State *L, int kumo)
{
    static const luaL_Reg time_mt[] = {
        {"__index", l_time_index}, {"__tostring", l_time_tostring},
        {"__eq", l_time_eq},       {"__lt", l_time_lt},
        {"__add", l_time_add},     {"__sub", l_time_sub},
        {"format", l_time_format}, {NULL, NULL},
    };
    static const luaL_Reg delta_mt[] = {
        {"__index", l_delta_index},
        {"__tostring", l_delta_tostring},
        {"__eq", l_delta_eq},
        {"__lt", l_delta_lt},
        {"__add", l_delta_add},
        {"__sub", l_delta_sub},
        {NULL, NULL},
    };
    static const luaL_Reg time_funcs[] = {
        {"now", l_time_now},
        {"from_unix_timestamp", l_time_from_unix_timestamp},
        {"with_ymd_hms", l_time_with_ymd_hms},
        {"parse_rfc3339", l_time_parse_rfc3339},
        {"parse_rfc2822", l_time_parse_rfc2822},
        {"parse_duration", l_time_parse_duration},
        {"epoch_millis", l_time_epoch_millis},
        {"since_millis", l_time_since_millis},
        {NULL, NULL},
    };
    static const luaL_Reg uuid_funcs[] = {
        {"new_v1", l_uuid_new_v1}, {"new_v4", l_uuid_new_v4},
        {"new_v6", l_uuid_new_v6}, {"new_v7", l_uuid_new_v7},
        {"parse", l_uuid_parse},   {NULL, NULL},
    };

    POLICY_STACK_ENTER(L);
    kumo = lua_absindex(L, kumo);
    luaL_newmetatable(L, POLICY_MT_TIME);
    luaL_setfuncs(L, time_mt, 0);
    luaL_newmetatable(L, POLICY_MT_DELTA);
    luaL_setfuncs(L, delta_mt, 0);
    luaL_newmetatable(L, POLICY_MT_UUID);
    lua_pushcfunction(L, l_uuid_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_uuid_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, l_uuid_eq);
    lua_setfield(L, -2, "__eq");
    lua_pop(L, 3);

    luaL_getsubtable(L, kumo, "time");
    luaL_setfuncs(L, time_funcs, 0);
    lua_pushliteral(L, "kumo.time.sleep is not supported by kumod: policy "
                       "handlers run to completion on the event loop and "
                       "cannot yield");
    lua_pushcclosure(L, l_time_refused, 1);
    lua_setfield(L, -2, "sleep");
    lua_pushliteral(L, "kumo.time.start_timer is not supported by kumod: it "
                       "has no user_lua_latency histogram");
    lua_pushcclosure(L, l_time_refused, 1);
    lua_setfield(L, -2, "start_timer");
    lua_pop(L, 1);
    luaL_getsubtable(L, kumo, "uuid");
    luaL_setfuncs(L, uuid_funcs, 0);
    lua_pop(L, 1);
    POLICY_STACK_LEAVE(L, 0);
}
