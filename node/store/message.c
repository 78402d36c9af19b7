/* message.c - one message: envelope, JSON metadata and RFC 5322 bytes,
 * reference counted. Also its spool record format. The policy reaches it
 * through node/policy_glue_msg.c. Loop thread only. */
#include "message.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "base/km.h"

struct message {
    unsigned refs;
    char id[KM_ID_HEX_LEN + 1];
    char *sender;
    char *recipient;
    json_t *meta;
    struct buf data;
    size_t size; /* the body's size when data has been dropped */
    int64_t created_ms;
    int64_t due_ms;
    uint32_t num_attempts;
    struct buf scratch_queue;  /* message_queue_name() result */
    struct buf scratch_domain; /* message_recipient_domain() result */
    struct dkim_signer **dkim; /* msg:dkim_sign() requests, opaque here */
    size_t n_dkim;
    message_signer_release_fn dkim_release; /* drops one of them */
};

int
message_new(const char *id, const char *sender, const char *recipient,
            json_t *meta, struct message **out)
{
    if (strlen(id) != KM_ID_HEX_LEN) {
        json_decref(meta);
        return KM_EINVAL;
    }
    struct message *m = km_calloc(1, sizeof(*m));
    m->refs = 1;
    memcpy(m->id, id, sizeof(m->id));
    m->sender = km_strdup(sender);
    m->recipient = km_strdup(recipient);
    m->meta = meta != NULL ? meta : json_object();
    if (!json_is_object(m->meta)) {
        json_decref(m->meta);
        m->meta = json_object();
    }
    m->created_ms = km_id_time_ms(id);
    if (m->created_ms < 0) {
        m->created_ms = km_now_wall_ms();
    }
    *out = m;
    return 0;
}

void
message_ref(struct message *m)
{
    m->refs++;
}

void
message_unref(struct message *m)
{
    if (m == NULL) {
        return;
    }
    KM_ASSERT(m->refs > 0);
    if (--m->refs > 0) {
        return;
    }
    free(m->sender);
    free(m->recipient);
    json_decref(m->meta);
    buf_fini(&m->data);
    buf_fini(&m->scratch_queue);
    buf_fini(&m->scratch_domain);
    message_clear_dkim_signers(m);
    free(m);
}

void
message_add_dkim_signer(struct message *m, struct dkim_signer *s,
                        message_signer_release_fn release)
{
    KM_ASSERT(m->n_dkim == 0 || m->dkim_release == release);
    m->dkim = km_realloc(m->dkim, (m->n_dkim + 1) * sizeof(*m->dkim));
    m->dkim[m->n_dkim++] = s;
    m->dkim_release = release;
}

size_t
message_dkim_signers(const struct message *m, struct dkim_signer *const **out)
{
    *out = m->dkim;
    return m->n_dkim;
}

void
message_clear_dkim_signers(struct message *m)
{
    for (size_t i = 0; i < m->n_dkim; i++) {
        m->dkim_release(m->dkim[i]);
    }
    free(m->dkim);
    m->dkim = NULL;
    m->n_dkim = 0;
}

const char *
message_id(const struct message *m)
{
    return m->id;
}

const char *
message_sender(const struct message *m)
{
    return m->sender;
}

const char *
message_recipient(const struct message *m)
{
    return m->recipient;
}

/* An envelope address must be printable, without CR/LF, spaces outside a
 * quoted local part, or angle brackets. Deep syntax checks are the SMTP
 * parser's job; this guards what policies set. */
static bool
message_addr_ok(const char *addr, bool allow_empty)
{
    size_t n = strlen(addr);

    if (n == 0) {
        return allow_empty;
    }
    if (n > 998 || strchr(addr, '@') == NULL) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)addr[i];
        if (c < 0x20 || c == 0x7f || c == '<' || c == '>') {
            return false;
        }
    }
    return true;
}

int
message_set_sender(struct message *m, const char *addr)
{
    if (!message_addr_ok(addr, true)) {
        return KM_EINVAL;
    }
    free(m->sender);
    m->sender = km_strdup(addr);
    return 0;
}

int
message_set_recipient(struct message *m, const char *addr)
{
    if (!message_addr_ok(addr, false)) {
        return KM_EINVAL;
    }
    free(m->recipient);
    m->recipient = km_strdup(addr);
    return 0;
}

json_t *
message_meta(struct message *m)
{
    return m->meta;
}

struct buf *
message_data(struct message *m)
{
    return &m->data;
}

const struct buf *
message_data_c(const struct message *m)
{
    return &m->data;
}

int64_t
message_created_ms(const struct message *m)
{
    return m->created_ms;
}

void
message_set_created_ms(struct message *m, int64_t ms)
{
    m->created_ms = ms;
}

uint32_t
message_num_attempts(const struct message *m)
{
    return m->num_attempts;
}

void
message_set_num_attempts(struct message *m, uint32_t n)
{
    m->num_attempts = n;
}

int64_t
message_due_ms(const struct message *m)
{
    return m->due_ms;
}

void
message_set_due_ms(struct message *m, int64_t ms)
{
    m->due_ms = ms;
}

void
message_drop_data(struct message *m)
{
    if (m->data.len > 0) {
        m->size = m->data.len;
    }
    buf_fini(&m->data);
}

size_t
message_size(const struct message *m)
{
    return m->data.len > 0 ? m->data.len : m->size;
}

void
message_set_size(struct message *m, size_t size)
{
    m->size = size;
}

const char *
message_meta_str(const struct message *m, const char *key)
{
    json_t *v = json_object_get(m->meta, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

const char *
message_recipient_domain(struct message *m)
{
    const char *at = strrchr(m->recipient, '@');

    buf_reset(&m->scratch_domain);
    if (at != NULL) {
        for (const char *p = at + 1; *p != '\0'; p++) {
            buf_append_char(&m->scratch_domain,
                            (char)tolower((unsigned char)*p));
        }
    }
    return buf_cstr(&m->scratch_domain);
}

const char *
message_queue_name(struct message *m)
{
    const char *queue = message_meta_str(m, "queue");
    const char *tenant = message_meta_str(m, "tenant");
    const char *campaign = message_meta_str(m, "campaign");
    const char *routing = message_meta_str(m, "routing_domain");
    const char *domain = message_recipient_domain(m);
    struct buf *q = &m->scratch_queue;

    buf_reset(q);
    if (queue != NULL) {
        buf_append_str(q, queue);
        return buf_cstr(q);
    }
    /* KumoMTA: campaign:tenant@domain!routing_domain, absent parts left
     * out ("campaign:@domain" when only the campaign is set). */
    if (campaign != NULL) {
        buf_appendf(q, "%s:", campaign);
    }
    if (tenant != NULL) {
        buf_appendf(q, "%s@", tenant);
    } else if (campaign != NULL) {
        buf_append_char(q, '@');
    }
    buf_append_str(q, domain);
    if (routing != NULL) {
        buf_appendf(q, "!%s", routing);
    }
    return buf_cstr(q);
}

void
message_meta_record(const struct message *m, struct buf *out)
{
    json_t *rec =
        json_pack("{s:s, s:s, s:O, s:I, s:I, s:I}", "sender", m->sender,
                  "recipient", m->recipient, "meta", m->meta, "created",
                  (json_int_t)m->created_ms, "num_attempts",
                  (json_int_t)m->num_attempts, "due", (json_int_t)m->due_ms);
    char *s = json_dumps(rec, JSON_COMPACT);

    KM_ASSERT(s != NULL);
    buf_append_str(out, s);
    free(s);
    json_decref(rec);
}

int
message_from_spool(const char *id, const char *meta, size_t meta_len,
                   const char *data, size_t data_len, struct message **out)
{
    json_error_t jerr;
    json_t *rec = json_loadb(meta, meta_len, 0, &jerr);
    struct message *m;
    int rv;

    if (!json_is_object(rec)) {
        json_decref(rec);
        return KM_ECORRUPT;
    }
    json_t *sender = json_object_get(rec, "sender");
    json_t *recipient = json_object_get(rec, "recipient");
    json_t *mmeta = json_object_get(rec, "meta");
    if (!json_is_string(sender) || !json_is_string(recipient) ||
        !json_is_object(mmeta)) {
        json_decref(rec);
        return KM_ECORRUPT;
    }
    rv = message_new(id, json_string_value(sender),
                     json_string_value(recipient), json_incref(mmeta), &m);
    if (rv != 0) {
        json_decref(rec);
        return KM_ECORRUPT;
    }
    json_t *v = json_object_get(rec, "created");
    if (json_is_integer(v)) {
        m->created_ms = json_integer_value(v);
    }
    v = json_object_get(rec, "num_attempts");
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        m->num_attempts = (uint32_t)json_integer_value(v);
    }
    v = json_object_get(rec, "due");
    if (json_is_integer(v)) {
        m->due_ms = json_integer_value(v);
    }
    json_decref(rec);
    buf_append(&m->data, data, data_len);
    *out = m;
    return 0;
}
