/* policy_int.h - declarations shared by the policy/ files: the policy
 * struct, registry keys, and each area's open/push helpers. Not for use
 * outside policy/. Every helper notes its Lua stack effect as
 * [-popped, +pushed]; debug builds check it with POLICY_STACK_*.
 * Loop thread only, like the rest of the policy. */
#ifndef KUMO_POLICY_INT_H
#define KUMO_POLICY_INT_H
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <lua.h>

#include "policy.h"

/* Registry keys (strings in the Lua registry). */
#define POLICY_REG_SELF     "kumo.policy"   /* light userdata: struct policy */
#define POLICY_REG_HANDLERS "kumo.handlers" /* event -> list of functions */

/* Metatable names. */
#define POLICY_MT_MESSAGE   "kumo.Message"
#define POLICY_MT_ADDRESS   "kumo.EnvelopeAddress"
#define POLICY_MT_CONN_META "kumo.ConnectionMeta"
#define POLICY_MT_REJECT    "kumo.Reject"
#define POLICY_MT_JSON_BOX  "kumo.JsonBox"

/* Nesting limit for Lua <-> JSON conversion (also catches cycles). */
#define POLICY_JSON_MAX_DEPTH 64

struct policy {
    lua_State *L;
    struct policy_host host;
    bool sealed;       /* init has run: init-only functions now fail */
    const char *event; /* the event being called (NULL outside calls) */
};

/* Debug-build check of a function's documented stack effect. */
#define POLICY_STACK_ENTER(L) const int policy_stack_top_ = lua_gettop(L)
#define POLICY_STACK_LEAVE(L, delta)                                           \
    do {                                                                       \
        assert(lua_gettop(L) == policy_stack_top_ + (delta));                  \
        (void)policy_stack_top_;                                               \
    } while (0)

/* [-0, +0] The policy that owns L (from the registry). Never NULL. */
struct policy *policy_from_lua(lua_State *L);

/* Does `event` keep every handler, called in registration order
 * (KumoMTA's "Multi" events: pre_init, validate_config, get_*)? Every
 * other event keeps only the last registration. */
bool policy_event_is_multi(const char *event);

/* [-0, +0] Return 0 if kumo.on() may register `event`; otherwise raise a
 * Lua error naming it and saying why (not supported yet, another daemon's
 * event, or unknown) (policy_events.c). */
int policy_events_check(lua_State *L, const char *event);

/* [-0, +0] Remember the call stack of the kumo.on(event) call running now,
 * for kumo.get_event_registrars (policy_events.c). */
void policy_events_record(lua_State *L, const char *event);
void policy_open_events(lua_State *L, int idx);

/* [-0, +1] Build the `kumo` table with every area's functions and push it
 * (policy_kumo.c). */
void policy_open_kumo(lua_State *L);

/* [-0, +0] Add the runtime library (policy_lib.c and the modules it
 * opens: serde, yaml, memoize, maps, regex, encode, string, psl, time) to the
 * kumo table at idx. */
void policy_open_lib(lua_State *L, int idx);
void policy_open_serde(lua_State *L, int idx);
void policy_open_yaml(lua_State *L, int idx);
void policy_open_memoize(lua_State *L, int idx);
void policy_open_maps(lua_State *L, int idx);
void policy_open_regex(lua_State *L, int idx);
void policy_open_encode(lua_State *L, int idx);
void policy_open_string(lua_State *L, int idx);
void policy_open_psl(lua_State *L, int idx);
void policy_open_time(lua_State *L, int idx);

/* Read the whole file at path into out (appended; at most 64 MiB).
 * Returns 0, or a KM_E* code with "path: why" in err (policy_serde.c). */
struct buf;
int policy_read_file(const char *path, struct buf *out, char *err,
                     size_t errlen);

/* [-0, +1] Push the bytes of the KumoMTA keysource at idx: a file path,
 * or { key_data = "..." }. Raises an error naming fn for anything else,
 * and refuses HashiCorp Vault sources by name (policy_lib.c). */
int policy_keysource_load(lua_State *L, int idx, const char *fn);

/* [-0, +0] Add the schema-validated config and make_* functions to the
 * kumo table at `idx` (policy_config.c). */
void policy_open_config(lua_State *L, int idx);

/* [-0, +0] Add the kumo.dkim table to the kumo table at `idx` and create
 * the "kumo.DkimSigner" metatable (policy_dkim.c). */
void policy_open_dkim(lua_State *L, int idx);

/* [-0, +0] msg:dkim_sign(signer): the signer is the value at `idx`;
 * `msg` is the host handle of the message (policy_dkim.c). */
int policy_dkim_sign(lua_State *L, void *msg, int idx);

/* [-0, +0] Create the metatables of each userdata type. */
void policy_open_message(lua_State *L);
void policy_open_address(lua_State *L);
void policy_open_connmeta(lua_State *L);
void policy_open_json(lua_State *L);

/* [-0, +1] Push a "kumo.Message" holding one new reference to msg. */
void policy_message_push(lua_State *L, const struct policy_msg_ops *ops,
                         void *msg);

/* [-0, +1] Push a "kumo.EnvelopeAddress" for `addr` ("" = null sender). */
void policy_address_push(lua_State *L, const char *addr, size_t len);

/* [-0, +0] The email of the EnvelopeAddress at idx, or NULL if the value
 * is not one. Borrowed: valid while the value stays on the stack. */
const char *policy_address_test(lua_State *L, int idx, size_t *len);

/* [-0, +1] Push a "kumo.ConnectionMeta" over `obj` (takes a reference;
 * set_meta writes into the object). */
void policy_connmeta_push(lua_State *L, json_t *obj);

/* [-0, +0] The object under the ConnectionMeta at idx, or NULL if the
 * value is not one. Borrowed. */
json_t *policy_connmeta_test(lua_State *L, int idx);

/* [-0, +0] Convert the Lua value at idx to JSON. Returns 0 with *out (the
 * caller owns it), or KM_EINVAL with a message in err for values JSON
 * cannot hold (functions, invalid UTF-8, NaN, nesting deeper than
 * POLICY_JSON_MAX_DEPTH). Does not raise on bad input. */
int policy_json_from_lua(lua_State *L, int idx, json_t **out, char *err,
                         size_t errlen);

/* [-0, +1] Push j as a Lua value (NULL and JSON null become nil). Raises a
 * Lua error when j is nested deeper than POLICY_JSON_MAX_DEPTH. */
void policy_json_push(lua_State *L, json_t *j);

/* [-0, +1] Push a box that owns `j` (takes ownership) and releases it when
 * collected, so that a Lua error raised while `j` is being built or used
 * cannot leak it. */
void policy_json_box_push(lua_State *L, json_t *j);

/* [-0, +0] The JSON held by the box at idx (borrowed, still owned by the
 * box). */
json_t *policy_json_box_get(lua_State *L, int idx);

/* [-0, +0] Take the JSON out of the box at idx: the caller owns it and the
 * box becomes empty. */
json_t *policy_json_box_take(lua_State *L, int idx);
/* If the table at idx is a kumo.make_*{} object, validate it again with
 * its schema into *out (with "__kind") and return 0, or KM_EPOLICY with
 * the reason in err; return 1 if it is not such an object. [-0, +0] */
int policy_config_object_json(lua_State *L, int idx, json_t **out, char *err,
                              size_t errlen);

#endif /* KUMO_POLICY_INT_H */
