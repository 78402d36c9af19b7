/* policy_encode.c - kumo.encode.* (base64, base64url, base32, base32hex,
 * each with a _nopad form, and hex: <name>_encode(bytes) and
 * <name>_decode(text)) and kumo.digest.* (sha1, sha224, sha256, sha384,
 * sha512, sha512_256, sha3_256, sha3_384, sha3_512 over all their
 * arguments, and crc32; hmac_sha1 ... hmac_sha512 with a keysource key),
 * plus kumo.encode.charset_encode/charset_decode through iconv. A digest is
 * a "kumo.Digest" whose fields give the bytes in each encoding (bytes,
 * hex, base64, ...) and whose tostring() is its hex. Digests go through
 * OpenSSL's EVP interface. Loop thread only. */
#include "policy_int.h"

#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define POLICY_MT_DIGEST "kumo.Digest"

static const char policy_b64_std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char policy_b64_url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char policy_b32_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
static const char policy_b32_hex[] = "0123456789ABCDEFGHIJKLMNOPQRSTUV";

/* One encoding: its alphabet, bits per symbol and whether it pads. */
struct policy_codec {
    const char *name;
    const char *alphabet; /* NULL: hex */
    unsigned bits;        /* 6 or 5 */
    bool pad;
};

static const struct policy_codec policy_codecs[] = {
    {"base64", policy_b64_std, 6, true},
    {"base64_nopad", policy_b64_std, 6, false},
    {"base64url", policy_b64_url, 6, true},
    {"base64url_nopad", policy_b64_url, 6, false},
    {"base32", policy_b32_std, 5, true},
    {"base32_nopad", policy_b32_std, 5, false},
    {"base32hex", policy_b32_hex, 5, true},
    {"base32hex_nopad", policy_b32_hex, 5, false},
    {"hex", NULL, 4, false},
};

#define POLICY_NCODECS (sizeof(policy_codecs) / sizeof(policy_codecs[0]))

/* [-0, +1] Push s[0..n) encoded with c. */
static void
policy_encode_push(lua_State *L, const struct policy_codec *c,
                   const unsigned char *s, size_t n)
{
    unsigned group = c->bits == 6 ? 4 : 8; /* symbols per padded group */
    unsigned long acc = 0;
    unsigned nbits = 0;
    size_t out = 0;
    luaL_Buffer b;

    luaL_buffinit(L, &b);
    if (c->alphabet == NULL) {
        for (size_t i = 0; i < n; i++) {
            luaL_addchar(&b, "0123456789abcdef"[s[i] >> 4]);
            luaL_addchar(&b, "0123456789abcdef"[s[i] & 15]);
        }
        luaL_pushresult(&b);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | s[i];
        nbits += 8;
        while (nbits >= c->bits) {
            nbits -= c->bits;
            luaL_addchar(&b,
                         c->alphabet[(acc >> nbits) & ((1u << c->bits) - 1)]);
            out++;
        }
    }
    if (nbits > 0) {
        luaL_addchar(
            &b,
            c->alphabet[(acc << (c->bits - nbits)) & ((1u << c->bits) - 1)]);
        out++;
    }
    while (c->pad && out % group != 0) {
        luaL_addchar(&b, '=');
        out++;
    }
    luaL_pushresult(&b);
}

/* [-0, +1] Decode s with c, or raise naming fn. Base32 decoding ignores
 * case, as KumoMTA's does; trailing padding is optional. */
static int
policy_decode_push(lua_State *L, const char *fn, const struct policy_codec *c,
                   const char *s, size_t n)
{
    unsigned long acc = 0;
    unsigned nbits = 0;
    luaL_Buffer b;

    luaL_buffinit(L, &b);
    if (c->alphabet == NULL) {
        if (n % 2 != 0) {
            return luaL_error(L, "%s: odd number of hex digits", fn);
        }
        for (size_t i = 0; i < n; i += 2) {
            if (!isxdigit((unsigned char)s[i]) ||
                !isxdigit((unsigned char)s[i + 1])) {
                return luaL_error(L, "%s: invalid hex digit at offset %d", fn,
                                  (int)i);
            }
            char two[3] = {s[i], s[i + 1], '\0'};
            luaL_addchar(&b, (char)strtol(two, NULL, 16));
        }
        luaL_pushresult(&b);
        return 1;
    }
    while (n > 0 && s[n - 1] == '=') {
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = c->bits == 5 ? (char)toupper((unsigned char)s[i]) : s[i];
        const char *p = ch != '\0' ? strchr(c->alphabet, ch) : NULL;

        if (p == NULL) {
            return luaL_error(L, "%s: invalid symbol at offset %d", fn, (int)i);
        }
        acc = (acc << c->bits) | (unsigned long)(p - c->alphabet);
        nbits += c->bits;
        if (nbits >= 8) {
            nbits -= 8;
            luaL_addchar(&b, (char)((acc >> nbits) & 0xff));
        }
    }
    if (nbits >= c->bits) {
        return luaL_error(L, "%s: invalid length", fn);
    }
    luaL_pushresult(&b);
    return 1;
}

static int
l_encode_encode(lua_State *L)
{
    const struct policy_codec *c =
        &policy_codecs[lua_tointeger(L, lua_upvalueindex(1))];
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);

    policy_encode_push(L, c, (const unsigned char *)s, n);
    return 1;
}

static int
l_encode_decode(lua_State *L)
{
    const struct policy_codec *c =
        &policy_codecs[lua_tointeger(L, lua_upvalueindex(1))];
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char fn[64];

    snprintf(fn, sizeof(fn), "kumo.encode.%s_decode", c->name);
    return policy_decode_push(L, fn, c, s, n);
}

/* ---- kumo.digest ---- */

static const struct {
    const char *name;
    const char *evp; /* OpenSSL's name */
} policy_digests[] = {
    {"sha1", "SHA1"},         {"sha224", "SHA224"},
    {"sha256", "SHA256"},     {"sha384", "SHA384"},
    {"sha512", "SHA512"},     {"sha512_256", "SHA512-256"},
    {"sha3_256", "SHA3-256"}, {"sha3_384", "SHA3-384"},
    {"sha3_512", "SHA3-512"},
};

#define POLICY_NDIGESTS (sizeof(policy_digests) / sizeof(policy_digests[0]))

/* [-0, +1] A kumo.Digest over the bytes. */
static void
policy_digest_push(lua_State *L, const unsigned char *md, size_t n)
{
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, (const char *)md, n);
    lua_setfield(L, -2, "bytes");
    luaL_setmetatable(L, POLICY_MT_DIGEST);
}

/* Digest.<encoding>: computed on access from .bytes (rawget). */
static int
l_digest_index(lua_State *L)
{
    const char *k = luaL_checkstring(L, 2);
    size_t n;
    const char *s;

    lua_getfield(L, 1, "bytes"); /* raw field, set at creation */
    s = lua_tolstring(L, -1, &n);
    for (size_t i = 0; i < POLICY_NCODECS; i++) {
        if (strcmp(policy_codecs[i].name, k) == 0 && s != NULL) {
            policy_encode_push(L, &policy_codecs[i], (const unsigned char *)s,
                               n);
            return 1;
        }
    }
    lua_pushnil(L);
    return 1;
}

static int
l_digest_tostring(lua_State *L)
{
    size_t n;
    const char *s;

    lua_getfield(L, 1, "bytes");
    s = lua_tolstring(L, -1, &n);
    policy_encode_push(L, &policy_codecs[POLICY_NCODECS - 1],
                       (const unsigned char *)(s != NULL ? s : ""),
                       s != NULL ? n : 0);
    return 1;
}

/* Raise with the failure of the EVP call (a fatal mismatch, no input). */
static int
policy_digest_fail(lua_State *L, EVP_MD_CTX *ctx, const char *what)
{
    EVP_MD_CTX_free(ctx);
    return luaL_error(L, "kumo.digest: %s failed", what);
}

/* kumo.digest.<name>(...) */
static int
l_digest_hash(lua_State *L)
{
    lua_Integer i = lua_tointeger(L, lua_upvalueindex(1));
    const EVP_MD *md = EVP_get_digestbyname(policy_digests[i].evp);
    int nargs = lua_gettop(L);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int outlen;
    EVP_MD_CTX *ctx;

    if (md == NULL) {
        return luaL_error(L, "kumo.digest.%s: OpenSSL has no %s",
                          policy_digests[i].name, policy_digests[i].evp);
    }
    /* Encode non-string arguments as JSON first (before any allocation
     * that a raised error would leak). */
    for (int a = 1; a <= nargs; a++) {
        if (lua_type(L, a) != LUA_TSTRING) {
            char err[256];
            json_t *j;
            char *s;

            if (policy_json_from_lua(L, a, &j, err, sizeof(err)) != 0) {
                return luaL_error(L, "kumo.digest.%s: argument #%d: %s",
                                  policy_digests[i].name, a, err);
            }
            s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
            json_decref(j);
            lua_pushstring(L, s != NULL ? s : "null");
            free(s);
            lua_replace(L, a);
        }
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, md, NULL) != 1) {
        return policy_digest_fail(L, ctx, "init");
    }
    for (int a = 1; a <= nargs; a++) {
        size_t n;
        const char *s = lua_tolstring(L, a, &n);
        if (EVP_DigestUpdate(ctx, s, n) != 1) {
            return policy_digest_fail(L, ctx, "update");
        }
    }
    if (EVP_DigestFinal_ex(ctx, out, &outlen) != 1) {
        return policy_digest_fail(L, ctx, "final");
    }
    EVP_MD_CTX_free(ctx);
    policy_digest_push(L, out, outlen);
    return 1;
}

/* kumo.digest.hmac_<name>(keysource, msg) */
static int
l_digest_hmac(lua_State *L)
{
    lua_Integer i = lua_tointeger(L, lua_upvalueindex(1));
    const EVP_MD *md = EVP_get_digestbyname(policy_digests[i].evp);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int outlen = 0;
    char fn[64];
    size_t kn, mn;
    const char *key, *msg;

    snprintf(fn, sizeof(fn), "kumo.digest.hmac_%s", policy_digests[i].name);
    luaL_checkany(L, 1);
    msg = luaL_checklstring(L, 2, &mn);
    policy_keysource_load(L, 1, fn);
    key = lua_tolstring(L, -1, &kn);
    if (md == NULL || HMAC(md, key, (int)kn, (const unsigned char *)msg, mn,
                           out, &outlen) == NULL) {
        return luaL_error(L, "%s: HMAC failed", fn);
    }
    policy_digest_push(L, out, outlen);
    return 1;
}

/* kumo.digest.crc32(...): CRC-32 (IEEE 802.3, as zlib), 4 bytes, most
 * significant first. Arguments as for the other digests. */
static int
l_digest_crc32(lua_State *L)
{
    int nargs = lua_gettop(L);
    uint32_t crc = 0xffffffffu;
    unsigned char out[4];

    for (int a = 1; a <= nargs; a++) {
        size_t n;
        const char *s;

        if (lua_type(L, a) != LUA_TSTRING) {
            char err[256];
            json_t *j;
            char *t;

            if (policy_json_from_lua(L, a, &j, err, sizeof(err)) != 0) {
                return luaL_error(L, "kumo.digest.crc32: argument #%d: %s", a,
                                  err);
            }
            t = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
            json_decref(j);
            lua_pushstring(L, t != NULL ? t : "null");
            free(t);
            lua_replace(L, a);
        }
        s = lua_tolstring(L, a, &n);
        for (size_t i = 0; i < n; i++) {
            crc ^= (unsigned char)s[i];
            for (int k = 0; k < 8; k++) {
                crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
            }
        }
    }
    crc ^= 0xffffffffu;
    for (int i = 0; i < 4; i++) {
        out[i] = (unsigned char)(crc >> (24 - 8 * i));
    }
    policy_digest_push(L, out, sizeof(out));
    return 1;
}

/* The length of the UTF-8 sequence starting with byte c (1 if invalid). */
static size_t
policy_utf8_len(unsigned char c)
{
    return c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
}

/* An iconv descriptor owned by a userdata, so that a raised error (out of
 * memory in the buffer) cannot leak it. */
struct policy_iconv_box {
    iconv_t cd;
};

static int
l_iconv_box_gc(lua_State *L)
{
    struct policy_iconv_box *bx = lua_touserdata(L, 1);

    if (bx->cd != (iconv_t)-1) {
        iconv_close(bx->cd);
        bx->cd = (iconv_t)-1;
    }
    return 0;
}

/* [-0, +1] Convert s from `from` to `to` with iconv; with `skip`, input that
 * cannot be converted is dropped (one UTF-8 sequence at a time), else it
 * raises naming fn. */
static int
policy_charset_convert(lua_State *L, const char *fn, const char *to,
                       const char *from, const char *s, size_t n, bool skip)
{
    struct policy_iconv_box *bx = lua_newuserdatauv(L, sizeof(*bx), 0);
    char *in = (char *)(uintptr_t)s;
    char chunk[4096], *out;
    size_t left = n, room;
    luaL_Buffer b;

    bx->cd = (iconv_t)-1;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_iconv_box_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    bx->cd = iconv_open(to, from);
    if (bx->cd == (iconv_t)-1) {
        return luaL_error(L, "%s: unknown charset '%s'", fn,
                          strcmp(to, "UTF-8") == 0 ? from : to);
    }
    luaL_buffinit(L, &b);
    while (left > 0) {
        size_t rc;
        int e;

        out = chunk;
        room = sizeof(chunk);
        rc = iconv(bx->cd, &in, &left, &out, &room);
        e = errno;
        luaL_addlstring(&b, chunk, sizeof(chunk) - room);
        if (rc != (size_t)-1 || e == E2BIG) {
            continue;
        }
        if (skip && (e == EILSEQ || e == EINVAL)) {
            size_t k = policy_utf8_len((unsigned char)*in);
            k = k > left ? left : k;
            in += k;
            left -= k;
            continue;
        }
        return luaL_error(L,
                          "%s: the input cannot be converted at byte %d "
                          "(%s)",
                          fn, (int)(n - left),
                          e == EINVAL ? "incomplete sequence" : "invalid");
    }
    /* Return to the initial shift state (ISO-2022-JP and friends). */
    out = chunk;
    room = sizeof(chunk);
    (void)iconv(bx->cd, NULL, NULL, &out, &room);
    luaL_addlstring(&b, chunk, sizeof(chunk) - room);
    luaL_pushresult(&b);
    return 1;
}

/* kumo.encode.charset_decode(charset, bytes) -> UTF-8 */
static int
l_encode_charset_decode(lua_State *L)
{
    const char *cs = luaL_checkstring(L, 1);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);

    return policy_charset_convert(L, "kumo.encode.charset_decode", "UTF-8", cs,
                                  s, n, false);
}

/* kumo.encode.charset_encode(charset, utf8 [, ignore_errors = true]) */
static int
l_encode_charset_encode(lua_State *L)
{
    const char *cs = luaL_checkstring(L, 1);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    bool skip = lua_isnoneornil(L, 3) || lua_toboolean(L, 3);

    return policy_charset_convert(L, "kumo.encode.charset_encode", cs, "UTF-8",
                                  s, n, skip);
}

void
policy_open_encode(lua_State *L, int kumo)
{
    char name[64];

    POLICY_STACK_ENTER(L);
    kumo = lua_absindex(L, kumo);
    luaL_getsubtable(L, kumo, "encode");
    for (size_t i = 0; i < POLICY_NCODECS; i++) {
        lua_pushinteger(L, (lua_Integer)i);
        lua_pushcclosure(L, l_encode_encode, 1);
        snprintf(name, sizeof(name), "%s_encode", policy_codecs[i].name);
        lua_setfield(L, -2, name);
        lua_pushinteger(L, (lua_Integer)i);
        lua_pushcclosure(L, l_encode_decode, 1);
        snprintf(name, sizeof(name), "%s_decode", policy_codecs[i].name);
        lua_setfield(L, -2, name);
    }
    lua_pushcfunction(L, l_encode_charset_encode);
    lua_setfield(L, -2, "charset_encode");
    lua_pushcfunction(L, l_encode_charset_decode);
    lua_setfield(L, -2, "charset_decode");
    lua_pop(L, 1);

    luaL_newmetatable(L, POLICY_MT_DIGEST);
    lua_pushcfunction(L, l_digest_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_digest_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    luaL_getsubtable(L, kumo, "digest");
    lua_pushcfunction(L, l_digest_crc32);
    lua_setfield(L, -2, "crc32");
    for (size_t i = 0; i < POLICY_NDIGESTS; i++) {
        lua_pushinteger(L, (lua_Integer)i);
        lua_pushcclosure(L, l_digest_hash, 1);
        lua_setfield(L, -2, policy_digests[i].name);
        /* HMAC exists for the SHA-1 and SHA-2 families (KumoMTA's list). */
        if (strncmp(policy_digests[i].name, "sha3", 4) != 0 &&
            strcmp(policy_digests[i].name, "sha512_256") != 0) {
            lua_pushinteger(L, (lua_Integer)i);
            lua_pushcclosure(L, l_digest_hmac, 1);
            snprintf(name, sizeof(name), "hmac_%s", policy_digests[i].name);
            lua_setfield(L, -2, name);
        }
    }
    lua_pop(L, 1);
    POLICY_STACK_LEAVE(L, 0);
}
