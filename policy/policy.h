/* policy.h - the Lua 5.4 policy in KumoMTA's dialect. Owns the lua_State:
 * loads the policy file, registers the `kumo` module (require 'kumo' and the
 * global `kumo`), keeps the handlers registered with kumo.on(), and calls
 * them. Knows nothing of node/: configuration calls (kumo.start_esmtp_listener
 * and friends) are validated here against a schema and handed to the daemon
 * as JSON through `struct policy_host`; messages are opaque handles operated
 * through the host's `policy_msg_ops`. Loop thread only; nothing callable
 * from Lua blocks the loop. */
#ifndef KUMO_POLICY_H
#define KUMO_POLICY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct buf;
struct policy; /* opaque */

/* How the host's message handles are used from Lua. A Lua userdata
 * "kumo.Message" holds one reference (ref/unref) to the handle. */
struct policy_msg_ops {
    void (*ref)(void *msg);
    void (*unref)(void *msg);
    const char *(*id)(void *msg);
    const char *(*sender)(void *msg); /* "" for the null sender */
    const char *(*recipient)(void *msg);
    /* Replace the envelope address; KM_EINVAL if it does not parse. */
    int (*set_sender)(void *msg, const char *addr);
    int (*set_recipient)(void *msg, const char *addr);
    json_t *(*meta)(void *msg);     /* borrowed JSON object, mutable */
    struct buf *(*data)(void *msg); /* borrowed RFC 5322 bytes, mutable */
    uint32_t (*num_attempts)(void *msg);
    const char *(*queue_name)(void *msg); /* scheduled queue name */
};

/* A configuration call from the policy, after validation:
 * `fn` is the Lua name without "kumo." ("start_esmtp_listener",
 * "define_spool", "configure_local_logs", "dns.configure_resolver", ...).
 * `params` is a JSON object (borrowed) holding only known keys. Durations
 * are converted to integer milliseconds, sizes to integer bytes, CIDR and
 * string lists to JSON arrays of strings; other values keep their JSON type.
 * Return 0, or a KM_E* code with a message in err[errlen], which the policy
 * raises as a Lua error (so it gets file and line). */
typedef int (*policy_config_cb)(void *ctx, const char *fn, json_t *params,
                                char *err, size_t errlen);

/* DKIM signers for kumo.dkim.* and msg:dkim_sign() (policy_dkim.c); a
 * signer is an opaque handle. signer_get NULL: the host cannot sign, and
 * those functions raise. */
struct policy_dkim_ops {
    void *ctx;
    /* A signer for the validated `params` (the JSON documented in
     * node/dkim.h); the caller owns one reference. KM_E* with the reason
     * (naming the file or parameter) in err. */
    int (*signer_get)(void *ctx, const json_t *params, void **out, char *err,
                      size_t errlen);
    void (*signer_unref)(void *signer);
    /* Ask for msg to be signed with signer (takes its own reference). */
    void (*sign)(void *ctx, void *msg, void *signer);
};

struct policy_host {
    void *ctx;
    struct policy_msg_ops msg;
    policy_config_cb config;
    struct policy_dkim_ops dkim;
};

enum policy_arg_kind {
    POLICY_ARG_STRING,    /* u.str: a Lua string */
    POLICY_ARG_ADDRESS,   /* u.str: an EnvelopeAddress userdata */
    POLICY_ARG_CONN_META, /* u.json: ConnectionMeta userdata over the
                             object; Lua set_meta writes into it */
    POLICY_ARG_MESSAGE,   /* u.msg: a Message userdata (takes a ref) */
    POLICY_ARG_JSON,      /* u.json: converted to a plain Lua value */
};

struct policy_arg {
    enum policy_arg_kind kind;

    union {
        const char *str;
        json_t *json;
        void *msg;
    } u;
};

/* What kumo.reject(code, text) asked for. */
struct policy_reject {
    int code;        /* e.g. 550 */
    char text[1024]; /* the text after the code, as given */
    bool disconnect; /* 421, or kumo.disconnect() */
};

struct policy_result {
    /* The handler's first return value as JSON (NULL for nil or no
     * handler); the caller owns it (json_decref). Objects made by
     * kumo.make_*{} convert to JSON objects with their validated fields
     * plus "__kind" (e.g. "listener_domain"). */
    json_t *value;
    bool had_handler;
    struct policy_reject reject; /* filled when policy_call returns
                                    KM_EREJECT */
};

/* Create a policy bound to `host` (copied). The caller owns *out and frees
 * it with policy_free(). */
int policy_new(const struct policy_host *host, struct policy **out);
void policy_free(struct policy *p);

/* Run the policy file's top-level code. On a Lua error (syntax or runtime),
 * or a bad kumo.* call, returns KM_EPOLICY with the message, including file
 * and line, in err. */
int policy_load(struct policy *p, const char *path, char *err, size_t errlen);

/* Call `event`'s handler with args. Returns:
 *   0           the handler returned (or none is registered);
 *   KM_EREJECT  it called kumo.reject(); res->reject says how;
 *   KM_EPOLICY  it raised an error; the traceback is logged once here
 *               (callers reply with a 4xx and do not log it again).
 * For "init" an error also lands in err (may be NULL otherwise). */
int policy_call(struct policy *p, const char *event,
                const struct policy_arg *args, size_t nargs,
                struct policy_result *res, char *err, size_t errlen);
void policy_result_fini(struct policy_result *res);

bool policy_has_handler(struct policy *p, const char *event);

/* kumo.on() refuses, at the line of the call, every event name kumod does
 * not fire. Declare `event` as one more name the host fires (or a test
 * calls), before policy_load(). The string is copied. */
void policy_declare_event(struct policy *p, const char *event);

/* Whether the policy called kumo.validation_failed() (which KumoMTA's
 * --validate turns into a failed run). */
bool policy_validation_failed(struct policy *p);

/* For --validate, after init: call the validate_config handlers, then fail
 * if any part of the policy called kumo.validation_failed(). Returns 0,
 * KM_EPOLICY (a handler raised; the message in err) or KM_ECONFIG. A host
 * that calls this declares "validate_config" (policy_declare_event) before
 * policy_load(), or kumo.on refuses the event as not supported. */
int policy_validate(struct policy *p, char *err, size_t errlen);

/* Called after init returns: globals become read-only, and kumo.* calls
 * that are only valid inside init (listeners, spools, logs) fail with a
 * clear error from then on. */
void policy_seal(struct policy *p);
#endif /* KUMO_POLICY_H */
