/* message.h - one message: envelope (one sender, one recipient: kumod splits
 * per recipient like KumoMTA), metadata (a JSON object) and the RFC 5322
 * bytes. Reference counted: held by an SMTP session while it is received,
 * by Lua userdata, by the queue and by an in-flight delivery. Loop thread
 * only. Knows nothing of the spool or queues. */
#ifndef KUMO_MESSAGE_H
#define KUMO_MESSAGE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/buf.h"
#include "base/km_id.h"

struct message; /* opaque */

/* New message with an empty body. `meta` may be NULL (an empty object is
 * made); otherwise this takes ownership of one reference to it. The caller
 * owns *out (message_unref). */
int message_new(const char *id, const char *sender, const char *recipient,
                json_t *meta, struct message **out);
void message_ref(struct message *m);
void message_unref(struct message *m);

const char *message_id(const struct message *m);
const char *message_sender(const struct message *m);
const char *message_recipient(const struct message *m);
/* Replace an envelope address (RFC 5321 path without <>; sender may be ""). */
int message_set_sender(struct message *m, const char *addr);
int message_set_recipient(struct message *m, const char *addr);
json_t *message_meta(struct message *m);     /* borrowed, mutable */
struct buf *message_data(struct message *m); /* borrowed, mutable */
const struct buf *message_data_c(const struct message *m);

int64_t message_created_ms(const struct message *m);
void message_set_created_ms(struct message *m, int64_t ms);
uint32_t message_num_attempts(const struct message *m);
void message_set_num_attempts(struct message *m, uint32_t n);
int64_t message_due_ms(const struct message *m); /* 0 = now */
void message_set_due_ms(struct message *m, int64_t ms);

/* Release the body bytes (kept in the spool) to save memory; the size is
 * remembered. */
void message_drop_data(struct message *m);
/* The body's size, also while the bytes are not in memory. */
size_t message_size(const struct message *m);
/* Set the remembered size (for messages rebuilt without their body). */
void message_set_size(struct message *m, size_t size);

/* Meta value as a string, or NULL if absent or not a string. */
const char *message_meta_str(const struct message *m, const char *key);

/* The scheduled queue name, KumoMTA's `campaign:tenant@domain!routing`
 * with absent parts omitted; meta `queue` overrides. Recomputed from meta
 * on each call into an internal buffer valid until the next call. */
const char *message_queue_name(struct message *m);
/* The recipient's domain, lowercased into an internal buffer. */
const char *message_recipient_domain(struct message *m);

/* Serialise the envelope and meta into the spool's meta record:
 * {"sender","recipient","meta":{...},"created":ms,"num_attempts":n,"due":ms} */
void message_meta_record(const struct message *m, struct buf *out);
/* Rebuild a message from its spool records (meta JSON and data bytes).
 * KM_ECORRUPT if the meta record does not parse. */
int message_from_spool(const char *id, const char *meta, size_t meta_len,
                       const char *data, size_t data_len, struct message **out);

/* msg:dkim_sign(): the signers whose signatures ingest makes before the
 * spool write, in call order. The message keeps them opaque (mail/dkim.h
 * knows them): add hands over one reference, which `release` drops when
 * the list is cleared or the message freed. The list is borrowed (valid
 * until the next add or clear). */
struct dkim_signer;
typedef void (*message_signer_release_fn)(struct dkim_signer *s);
void message_add_dkim_signer(struct message *m, struct dkim_signer *s,
                             message_signer_release_fn release);
size_t message_dkim_signers(const struct message *m,
                            struct dkim_signer *const **out);
void message_clear_dkim_signers(struct message *m);
#endif /* KUMO_MESSAGE_H */
