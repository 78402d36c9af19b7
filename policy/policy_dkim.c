/* policy_dkim.c - KumoMTA's kumo.dkim.rsa_sha256_signer{} and
 * kumo.dkim.ed25519_signer{} and the "kumo.DkimSigner" userdata that
 * msg:dkim_sign() takes. Validates every parameter by name (refusing the
 * ones kumod does not support, with the reason), hands the result to the
 * host as JSON (struct policy_dkim_ops), and holds one reference to the
 * host's signer. Keys, caching and the signing itself are the host's.
 * Loop thread only. */
#include "policy_int.h"

#include <string.h>
#include <strings.h>

#include <lauxlib.h>

#include "base/km.h"
#include "base/log.h"

#define POLICY_MT_DKIM_SIGNER "kumo.DkimSigner"

/* Longest header name and agent_user_identifier accepted (the
 * DKIM-Signature field is built from them). */
#define POLICY_DKIM_MAX_NAME 128
#define POLICY_DKIM_MAX_AUID 320

/* KumoMTA's default signer cache TTL, in seconds. */
#define POLICY_DKIM_DEFAULT_TTL 300

struct policy_dkim_signer {
    void *signer; /* one reference, released by __gc */
    const struct policy_dkim_ops *ops;
    bool ed25519;
};

/* A DNS name as DKIM uses it (d=, s=, atps=): ASCII labels of letters,
 * digits, '-' and '_', separated by single dots. */
static bool
policy_dkim_is_dns_name(const char *s, size_t n)
{
    size_t label = 0;

    if (n == 0 || n > 253) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0) {
                return false;
            }
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_') ||
            ++label > 63) {
            return false;
        }
    }
    return label > 0;
}

_Noreturn static void policy_dkim_raise(lua_State *L, const char *fn,
                                        const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

_Noreturn static void
policy_dkim_raise(lua_State *L, const char *fn, const char *fmt, ...)
{
    char text[600];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    luaL_where(L, 1);
    lua_pushfstring(L, "kumo.dkim.%s: %s", fn, text);
    lua_concat(L, 2);
    lua_error(L);
    km_panic("policy: lua_error returned");
}

/* [-0, +0] The string parameter `name` at idx (a table), or NULL. */
static const char *
policy_dkim_opt_str(lua_State *L, const char *fn, int idx, const char *name,
                    size_t *len)
{
    const char *s;

    if (lua_getfield(L, idx, name) == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (lua_type(L, -1) != LUA_TSTRING) {
        policy_dkim_raise(L, fn, "parameter '%s' must be a string", name);
    }
    s = lua_tolstring(L, -1, len);
    lua_pop(L, 1); /* still referenced by the table */
    return s;
}

static int
policy_dkim_opt_bool(lua_State *L, const char *fn, int idx, const char *name)
{
    int v = 0;

    if (lua_getfield(L, idx, name) != LUA_TNIL) {
        if (!lua_isboolean(L, -1)) {
            policy_dkim_raise(L, fn, "parameter '%s' must be a boolean", name);
        }
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

/* A number of seconds (or for ttl also a duration string); -1 if absent. */
static lua_Integer
policy_dkim_opt_seconds(lua_State *L, const char *fn, int idx, const char *name,
                        bool duration_ok)
{
    lua_Integer v = -1;
    int t = lua_getfield(L, idx, name);

    if (t == LUA_TNUMBER && lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0) {
        v = lua_tointeger(L, -1);
    } else if (t == LUA_TNUMBER && lua_tonumber(L, -1) >= 0) {
        v = (lua_Integer)lua_tonumber(L, -1);
    } else if (t == LUA_TSTRING && duration_ok) {
        uint64_t ms;
        if (km_parse_duration_ms(lua_tostring(L, -1), &ms) != 0) {
            policy_dkim_raise(L, fn,
                              "parameter '%s' must be a number of seconds or "
                              "a duration such as \"5 min\"",
                              name);
        }
        v = (lua_Integer)(ms / 1000u);
    } else if (t != LUA_TNIL) {
        policy_dkim_raise(
            L, fn, "parameter '%s' must be a number of seconds (>= 0)", name);
    }
    lua_pop(L, 1);
    return v;
}

static const char *
policy_dkim_canon(lua_State *L, const char *fn, int idx, const char *name)
{
    const char *s = policy_dkim_opt_str(L, fn, idx, name, NULL);

    if (s == NULL || strcasecmp(s, "relaxed") == 0) {
        return "relaxed";
    }
    if (strcasecmp(s, "simple") == 0) {
        return "simple";
    }
    policy_dkim_raise(L, fn,
                      "parameter '%s' must be \"Relaxed\" or \"Simple\", not "
                      "\"%s\"",
                      name, s);
}

/* headers = {...}: field names, From among them (RFC 6376 5.4). */
static json_t *
policy_dkim_headers(lua_State *L, const char *fn, int idx)
{
    json_t *list = json_array();
    bool from = false;
    lua_Integer n;

    /* The box frees `list` if a check below raises. */
    policy_json_box_push(L, list);
    if (lua_getfield(L, idx, "headers") != LUA_TTABLE) {
        policy_dkim_raise(L, fn,
                          "parameter 'headers' is required: a list of "
                          "header names such as {'From', 'To', "
                          "'Subject'}");
    }
    n = (lua_Integer)luaL_len(L, -1);
    if (n == 0) {
        policy_dkim_raise(L, fn, "parameter 'headers' must not be empty");
    }
    for (lua_Integer i = 1; i <= n; i++) {
        size_t len;
        const char *h;
        if (lua_rawgeti(L, -1, i) != LUA_TSTRING) {
            policy_dkim_raise(L, fn,
                              "parameter 'headers[%lld]' must be a "
                              "string",
                              (long long)i);
        }
        h = lua_tolstring(L, -1, &len);
        for (size_t k = 0; k < len; k++) {
            unsigned char c = (unsigned char)h[k];
            if (c < 33 || c > 126 || c == ':') {
                policy_dkim_raise(L, fn,
                                  "parameter 'headers[%lld]': '%s' is not a "
                                  "header name",
                                  (long long)i, h);
            }
        }
        if (len == 0 || len > POLICY_DKIM_MAX_NAME) {
            policy_dkim_raise(L, fn,
                              "parameter 'headers[%lld]' must have 1 to %d "
                              "characters",
                              (long long)i, POLICY_DKIM_MAX_NAME);
        }
        from = from || strcasecmp(h, "From") == 0;
        json_array_append_new(list, json_stringn(h, len));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (!from) {
        policy_dkim_raise(L, fn,
                          "parameter 'headers' must include 'From' "
                          "(RFC 6376 5.4)");
    }
    return policy_json_box_take(L, -1);
}

/* key = 'path' | {key_data = '...'}: KumoMTA's KeySource. */
static json_t *
policy_dkim_key(lua_State *L, const char *fn, int idx)
{
    int t = lua_getfield(L, idx, "key");
    json_t *key = NULL;

    if (t == LUA_TSTRING) {
        key = json_pack("{s:s}", "file", lua_tostring(L, -1));
    } else if (t == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            const char *k =
                lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            if (strncmp(k, "vault_", 6) == 0) {
                policy_dkim_raise(L, fn,
                                  "parameter 'key.%s': kumod does not read "
                                  "keys from HashiCorp Vault; load the key "
                                  "in Lua and pass it as key_data",
                                  k);
            }
            if (strcmp(k, "key_data") != 0) {
                policy_dkim_raise(L, fn,
                                  "parameter 'key.%s' is not known "
                                  "(a key source is a file name or "
                                  "{key_data = ...})",
                                  k);
            }
            lua_pop(L, 1);
        }
        if (lua_getfield(L, -1, "key_data") != LUA_TSTRING) {
            policy_dkim_raise(L, fn,
                              "parameter 'key.key_data' must be a "
                              "string");
        }
        size_t len;
        const char *d = lua_tolstring(L, -1, &len);
        key = json_object();
        json_object_set_new(key, "data", json_stringn(d, len));
        lua_pop(L, 1);
        if (json_object_get(key, "data") == NULL) {
            json_decref(key);
            policy_dkim_raise(L, fn,
                              "parameter 'key.key_data' must be text "
                              "(PEM) or valid UTF-8; pass DER keys "
                              "as a file");
        }
    } else {
        policy_dkim_raise(L, fn,
                          "parameter 'key' is required: a file name "
                          "or {key_data = ...}");
    }
    lua_pop(L, 1);
    return key;
}

static const char *const policy_dkim_known[] = {
    "domain",
    "selector",
    "headers",
    "key",
    "atps",
    "atpsh",
    "agent_user_identifier",
    "expiration",
    "body_length",
    "reporting",
    "header_canonicalization",
    "body_canonicalization",
    "ttl",
    "over_sign",
    NULL,
};

/* [-0, +0] Every key of the params table at idx is one we know. */
static void
policy_dkim_check_names(lua_State *L, const char *fn, int idx)
{
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        bool ok = false;
        if (lua_type(L, -2) != LUA_TSTRING) {
            policy_dkim_raise(L, fn, "parameters must be named");
        }
        const char *k = lua_tostring(L, -2);
        for (size_t i = 0; policy_dkim_known[i] != NULL && !ok; i++) {
            ok = strcmp(k, policy_dkim_known[i]) == 0;
        }
        if (!ok) {
            policy_dkim_raise(L, fn, "unknown parameter '%s'", k);
        }
        lua_pop(L, 1);
    }
}

/* [-0, +1] Validate the params at 1 into JSON (in a box at the top). */
static json_t *
policy_dkim_params(lua_State *L, const char *fn, bool ed25519)
{
    size_t dlen, slen, len;
    const char *domain, *selector, *s;
    json_t *p = json_object();
    lua_Integer n;

    luaL_checktype(L, 1, LUA_TTABLE);
    policy_json_box_push(L, p);
    policy_dkim_check_names(L, fn, 1);
    json_object_set_new(p, "algorithm",
                        json_string(ed25519 ? "ed25519-sha256" : "rsa-sha256"));
    domain = policy_dkim_opt_str(L, fn, 1, "domain", &dlen);
    if (domain == NULL) {
        policy_dkim_raise(L, fn, "parameter 'domain' is required");
    }
    if (!policy_dkim_is_dns_name(domain, dlen)) {
        policy_dkim_raise(L, fn,
                          "parameter 'domain': '%s' is not a domain name "
                          "(ASCII; use the xn-- form of an IDN)",
                          domain);
    }
    json_object_set_new(p, "domain", json_stringn(domain, dlen));
    selector = policy_dkim_opt_str(L, fn, 1, "selector", &slen);
    if (selector == NULL) {
        policy_dkim_raise(L, fn, "parameter 'selector' is required");
    }
    if (!policy_dkim_is_dns_name(selector, slen)) {
        policy_dkim_raise(L, fn,
                          "parameter 'selector': '%s' is not a valid selector "
                          "(DNS labels of letters, digits, '-', '_')",
                          selector);
    }
    json_object_set_new(p, "selector", json_stringn(selector, slen));
    json_object_set_new(p, "headers", policy_dkim_headers(L, fn, 1));
    json_object_set_new(p, "key", policy_dkim_key(L, fn, 1));
    json_object_set_new(
        p, "header_canonicalization",
        json_string(policy_dkim_canon(L, fn, 1, "header_canonicalization")));
    json_object_set_new(
        p, "body_canonicalization",
        json_string(policy_dkim_canon(L, fn, 1, "body_canonicalization")));
    if (policy_dkim_opt_bool(L, fn, 1, "body_length")) {
        policy_dkim_raise(L, fn,
                          "parameter 'body_length': not supported by kumod: "
                          "an l= tag lets anyone append content under the "
                          "signature");
    }
    json_object_set_new(
        p, "over_sign",
        json_boolean(policy_dkim_opt_bool(L, fn, 1, "over_sign")));
    json_object_set_new(
        p, "reporting",
        json_boolean(policy_dkim_opt_bool(L, fn, 1, "reporting")));
    n = policy_dkim_opt_seconds(L, fn, 1, "expiration", false);
    if (n == 0) {
        policy_dkim_raise(L, fn,
                          "parameter 'expiration' must be at least 1 "
                          "second (omit it for no x= tag)");
    }
    json_object_set_new(p, "expiration", json_integer(n > 0 ? n : 0));
    n = policy_dkim_opt_seconds(L, fn, 1, "ttl", true);
    json_object_set_new(p, "ttl",
                        json_integer(n >= 0 ? n : POLICY_DKIM_DEFAULT_TTL));
    s = policy_dkim_opt_str(L, fn, 1, "agent_user_identifier", &len);
    if (s != NULL) {
        /* RFC 6376 3.5 i=: [local-part]@domain, the domain d= or one of
         * its subdomains. */
        const char *at = memchr(s, '@', len);
        size_t hl = at != NULL ? len - (size_t)(at + 1 - s) : 0;
        bool ok = len <= POLICY_DKIM_MAX_AUID && at != NULL &&
                  policy_dkim_is_dns_name(at + 1, hl) &&
                  (hl == dlen ? strncasecmp(at + 1, domain, dlen) == 0
                              : hl > dlen && at[1 + hl - dlen - 1] == '.' &&
                                    strncasecmp(at + 1 + hl - dlen, domain,
                                                dlen) == 0);
        for (size_t i = 0; ok && s + i < at; i++) {
            unsigned char c = (unsigned char)s[i];
            ok = c > 32 && c < 127 && c != ';' && c != '=';
        }
        if (!ok) {
            policy_dkim_raise(L, fn,
                              "parameter 'agent_user_identifier': '%s' must "
                              "be [local-part]@domain with the domain '%s' "
                              "or a subdomain of it (RFC 6376 3.5)",
                              s, domain);
        }
        json_object_set_new(p, "agent_user_identifier", json_stringn(s, len));
    }
    s = policy_dkim_opt_str(L, fn, 1, "atps", &len);
    if (s != NULL) {
        if (!policy_dkim_is_dns_name(s, len)) {
            policy_dkim_raise(L, fn,
                              "parameter 'atps': '%s' is not a domain "
                              "name",
                              s);
        }
        json_object_set_new(p, "atps", json_stringn(s, len));
    }
    s = policy_dkim_opt_str(L, fn, 1, "atpsh", &len);
    if (s != NULL) {
        /* RFC 6541 4.1: a hash name, or "none". */
        if (strcmp(s, "sha256") != 0 && strcmp(s, "sha1") != 0 &&
            strcmp(s, "none") != 0) {
            policy_dkim_raise(L, fn,
                              "parameter 'atpsh' must be \"sha256\", "
                              "\"sha1\" or \"none\", not \"%s\"",
                              s);
        }
        if (json_object_get(p, "atps") == NULL) {
            policy_dkim_raise(L, fn, "parameter 'atpsh' needs 'atps'");
        }
        json_object_set_new(p, "atpsh", json_stringn(s, len));
    }
    return p;
}

static int
policy_dkim_make(lua_State *L, const char *fn, bool ed25519)
{
    struct policy *pol = policy_from_lua(L);
    const struct policy_dkim_ops *ops = &pol->host.dkim;
    struct policy_dkim_signer *u;
    char err[512];
    void *signer = NULL;
    json_t *params;
    int rv;

    if (ops->signer_get == NULL) {
        policy_dkim_raise(L, fn, "DKIM signing is not available here");
    }
    params = policy_dkim_params(L, fn, ed25519);
    u = lua_newuserdatauv(L, sizeof(*u), 0);
    u->signer = NULL;
    u->ops = ops;
    u->ed25519 = ed25519;
    luaL_setmetatable(L, POLICY_MT_DKIM_SIGNER);
    err[0] = '\0';
    rv = ops->signer_get(ops->ctx, params, &signer, err, sizeof(err));
    if (rv != 0) {
        policy_dkim_raise(L, fn, "%s", err[0] ? err : km_strerror(rv));
    }
    u->signer = signer;
    return 1;
}

/* kumo.dkim.rsa_sha256_signer{...} -> DkimSigner */
static int
l_dkim_rsa_sha256_signer(lua_State *L)
{
    return policy_dkim_make(L, "rsa_sha256_signer", false);
}

/* kumo.dkim.ed25519_signer{...} -> DkimSigner */
static int
l_dkim_ed25519_signer(lua_State *L)
{
    return policy_dkim_make(L, "ed25519_signer", true);
}

/* kumo.dkim.set_signing_threads(n): refused, with the reason. */
static int
l_dkim_set_signing_threads(lua_State *L)
{
    policy_dkim_raise(L, "set_signing_threads",
                      "not supported by kumod: signing always runs on the "
                      "libuv thread pool, sized with UV_THREADPOOL_SIZE");
}

int
policy_dkim_sign(lua_State *L, void *msg, int idx)
{
    struct policy_dkim_signer *u =
        luaL_checkudata(L, idx, POLICY_MT_DKIM_SIGNER);

    const char *event = policy_from_lua(L)->event;

    if (u->signer == NULL) {
        return luaL_error(L, "dkim_sign: the signer was not built");
    }
    /* The signatures are made as the message is accepted: asked for any
     * later, they would never be made and the message would go out
     * unsigned. validate_config is KumoMTA's dry run (its dkim_sign
     * helper signs a made-up message there), which nothing delivers. */
    if (event == NULL || (strcmp(event, "smtp_server_message_received") != 0 &&
                          strcmp(event, "http_message_generated") != 0 &&
                          strcmp(event, "validate_config") != 0)) {
        return luaL_error(L,
                          "msg:dkim_sign: only in smtp_server_message_received "
                          "or http_message_generated, where kumod accepts the "
                          "message (called in '%s')",
                          event != NULL ? event : "the policy's top level");
    }
    u->ops->sign(u->ops->ctx, msg, u->signer);
    return 0;
}

static int
l_dkim_signer_gc(lua_State *L)
{
    struct policy_dkim_signer *u = luaL_checkudata(L, 1, POLICY_MT_DKIM_SIGNER);

    if (u->signer != NULL) {
        u->ops->signer_unref(u->signer);
        u->signer = NULL;
    }
    return 0;
}

static int
l_dkim_signer_tostring(lua_State *L)
{
    struct policy_dkim_signer *u = luaL_checkudata(L, 1, POLICY_MT_DKIM_SIGNER);

    lua_pushstring(L, u->ed25519 ? "DkimSigner(ed25519-sha256)"
                                 : "DkimSigner(rsa-sha256)");
    return 1;
}

static const luaL_Reg policy_dkim_funcs[] = {
    {"rsa_sha256_signer", l_dkim_rsa_sha256_signer},
    {"ed25519_signer", l_dkim_ed25519_signer},
    {"set_signing_threads", l_dkim_set_signing_threads},
    {NULL, NULL},
};

void
policy_open_dkim(lua_State *L, int idx)
{
    POLICY_STACK_ENTER(L);
    luaL_newmetatable(L, POLICY_MT_DKIM_SIGNER);
    lua_pushcfunction(L, l_dkim_signer_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_dkim_signer_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    luaL_newlib(L, policy_dkim_funcs);
    lua_setfield(L, idx, "dkim");
    POLICY_STACK_LEAVE(L, 0);
}
