/* dkim.h - DKIM signing (RFC 6376, RSA-SHA256 and RFC 8463 Ed25519-SHA256)
 * with OpenSSL 3 and our own canonicalization (dkim_canon.h). Owns the
 * signer and key caches (KumoMTA's dkim_signer_cache and dkim_key_cache,
 * by parameters, with a TTL) and the signing of messages at ingest:
 * msg:dkim_sign() only records a signer on the message; the signatures
 * are computed on the libuv pool just before the spool write, so that a
 * slow RSA key never stalls the loop. Does no DNS and no verification.
 * Signers are reference counted on the loop thread and immutable once
 * made, so pool threads read them freely. */
#ifndef KUMO_DKIM_H
#define KUMO_DKIM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "dkim_canon.h"

struct buf;
struct message;
struct metrics;
struct policy_dkim_ops;

struct dkim_ctx;    /* opaque: caches, counters */
struct dkim_signer; /* opaque: one signing configuration and its key */

/* The caller owns *out (dkim_ctx_free). `metrics` (borrowed, may be NULL)
 * receives the dkim_* counters. */
int dkim_ctx_new(uv_loop_t *loop, struct metrics *metrics,
                 struct dkim_ctx **out);
/* Drops the caches; signers still referenced elsewhere stay valid. */
void dkim_ctx_free(struct dkim_ctx *ctx);

/* A signer for `params`, the JSON that policy_dkim.c validated:
 *   {"algorithm": "rsa-sha256" | "ed25519-sha256",
 *    "domain", "selector": strings, "headers": [names],
 *    "key": {"file": path} | {"data": bytes},
 *    "header_canonicalization", "body_canonicalization":
 *        "relaxed" | "simple",
 *    "over_sign", "reporting": bool, "expiration": seconds (0: none),
 *    "agent_user_identifier", "atps", "atpsh": strings (optional),
 *    "ttl": seconds}
 * From the signer cache when the same parameters were seen less than
 * ttl seconds ago, otherwise built (the key from the key cache, else
 * read and parsed). The caller owns one reference to *out. On failure
 * KM_ENOENT (no key file), KM_EIO (unreadable), KM_EINVAL (not a key,
 * wrong type, too small, bad parameter) with the reason, naming the file
 * or the parameter, in err. Reads the key file synchronously on a miss
 * (a small local file, once per ttl). */
int dkim_signer_get(struct dkim_ctx *ctx, const json_t *params,
                    struct dkim_signer **out, char *err, size_t errlen);
void dkim_signer_ref(struct dkim_signer *s);
void dkim_signer_unref(struct dkim_signer *s);
/* Record on m that ingest must sign it with s (msg:dkim_sign); m takes its
 * own reference. */
void dkim_message_add_signer(struct message *m, struct dkim_signer *s);

/* Compute the DKIM-Signature fields of signers[0..n) over the message
 * `data` (header block and body, CRLF line ends) at time `now` (Unix
 * seconds, the t= tag). Each signature covers the ones before it, as if
 * each had been prepended in turn; `out` receives the fields in the
 * order they go at the top of the message (the last signer's first),
 * each ending in CRLF. Returns 0, or KM_EIO with the reason in err (an
 * OpenSSL failure). Pure; safe on any thread. */
int dkim_sign_data(struct dkim_signer *const *signers, size_t n,
                   const char *data, size_t len, int64_t now, struct buf *out,
                   char *err, size_t errlen);

/* The pieces dkim_sign_data() is made of, for the RFC test vectors. */
/* bh=: base64 of SHA-256 over the canonical body, into b64 (>= 45 bytes). */
void dkim_body_hash(enum dkim_canon c, const char *body, size_t n,
                    char b64[45]);
/* b=: sign the fields named by names[] (selected from hdrs, RFC 6376
 * 5.4.2) and then `sig_field`, the DKIM-Signature field as it will be
 * emitted up to and including its empty "b=", canonicalized with `hc`.
 * `key` is what dkim_key_parse() made. Appends the base64 to b64. */
int dkim_sign_fields(const void *key, bool ed25519, enum dkim_canon hc,
                     const char *hdrs, size_t hlen, const char *const *names,
                     size_t n_names, const char *sig_field, size_t sig_len,
                     struct buf *b64, char *err, size_t errlen);
/* Parse PEM or DER key bytes (RSA PKCS#1 or PKCS#8; Ed25519 PKCS#8 v1 or
 * v2) for the algorithm; `what` names the source in errors. *out is an
 * EVP_PKEY the caller frees with dkim_key_free(). KM_EINVAL on garbage,
 * on the wrong key type, or on an RSA key under 1024 bits (RFC 8301). */
int dkim_key_parse(const char *data, size_t len, bool ed25519, const char *what,
                   void **out, char *err, size_t errlen);
void dkim_key_free(void *key);

/* Done signing a message: 0 (the DKIM-Signature fields are at the top of
 * its data), or KM_EIO / KM_ECONFIG with one LOG_ERROR already written
 * naming the message and the reason: the message must not be accepted. */
typedef void (*dkim_sign_cb)(void *arg, int status);

/* Make the signatures msg:dkim_sign() asked for, on the pool, then
 * prepend them and forget the signers. A message with a bare CR or LF
 * (HTTP content, or a listener with invalid_line_endings = 'Allow') is
 * signed and kept in its CRLF form (RFC 6376 5.3). With nothing to sign, cb
 * runs at once (inside this call) with 0. Otherwise cb runs later on the loop;
 * the message is held (a reference) and must not be changed meanwhile. */
void dkim_sign_message(struct dkim_ctx *ctx, struct message *msg,
                       dkim_sign_cb cb, void *arg);

/* Fill the policy host's DKIM table (policy.h) with this context. */
void dkim_policy_ops(struct dkim_ctx *ctx, struct policy_dkim_ops *ops);
#endif /* KUMO_DKIM_H */
