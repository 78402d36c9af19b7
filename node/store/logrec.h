/* logrec.h - JSON log records (Reception, Rejection, Delivery, ...) with
 * KumoMTA's field names, one per line, in zstd-compressed segment files
 * named by start time (YYYYMMDD-HHMMSS.ffffff) in a log directory. A
 * segment is closed, and so readable with zstdcat, when it reaches
 * max_file_size uncompressed bytes, when it is older than
 * max_segment_duration, and at close. Compression and file writes run on
 * the libuv pool, one job at a time per logger, so records stay in order.
 * Loop thread only. */
#ifndef KUMO_LOGREC_H
#define KUMO_LOGREC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

struct message;
struct logrec; /* opaque */

struct logrec_config {
    const char *log_dir;
    uint64_t max_segment_duration_ms; /* 0 = unlimited */
    uint64_t max_file_size;           /* uncompressed bytes; 0 = 1 GiB */
    int compression_level;            /* 0 = zstd default (3) */
    const char *const *meta;          /* meta keys to copy; "x_*" suffix
                                         wildcard allowed */
    size_t n_meta;
    const char *const *headers; /* header names to copy, "X-*" ok */
    size_t n_headers;
};

/* One event. Strings may be NULL (written as null or omitted as KumoMTA
 * does). `msg`, if set, supplies id, sender, recipient, queue, size,
 * created, num_attempts, meta and headers not given here. */
struct logrec_event {
    const char *type; /* "Reception", "Rejection", "Delivery", ... */
    struct message *msg;
    const char *id, *sender, *recipient, *queue, *site;
    int code;                /* response code; 0 = no response */
    const char *content;     /* response text (without code/enhanced) */
    const char *command;     /* the SMTP command it answered, or NULL */
    const char *peer_name;   /* peer_address.name (EHLO or MX name) */
    const char *peer_addr;   /* peer_address.addr (IP) */
    const char *source_addr; /* source_address.address "ip:port" */
    const char *egress_pool, *egress_source;
    const char *reception_protocol, *delivery_protocol;
    const char *session_id;
    const char *tls_cipher, *tls_protocol_version;
    const char *nodeid;
    uint32_t num_attempts;
    int64_t timestamp_us; /* 0 = now */
};

/* Open a logger writing into cfg->log_dir (created if missing). The config
 * is copied. The caller owns *out; release with logrec_close(). */
int logrec_open(uv_loop_t *loop, const struct logrec_config *cfg,
                struct logrec **out);

/* Build the record for ev and queue it for writing. Never blocks. */
void logrec_write(struct logrec *lr, const struct logrec_event *ev);

/* Build the JSON object for ev (the caller owns the result). Exposed for
 * tests and for the HTTP API. */
json_t *logrec_build(const struct logrec *lr, const struct logrec_event *ev);

/* Parse "550 5.7.1 text" style enhanced codes out of a response text:
 * fills class/subject/detail and returns the offset of the remaining text,
 * or returns 0 and leaves them untouched if there is none. */
size_t logrec_parse_enhanced(const char *text, int *cls, int *subject,
                             int *detail);

/* Every logger of the node (one per configure_local_logs call) and the
 * node's id: a record written to the set goes to each logger. A small
 * value the hub embeds and fills at start; modules are handed a borrowed
 * pointer. */
struct logrec_set {
    struct logrec **logs;
    size_t n;
    const char *nodeid; /* borrowed; outlives the set */
};

/* Fill ev->nodeid from the set and write ev to every logger of it. */
void logrec_set_write(const struct logrec_set *set, struct logrec_event *ev);

typedef void (*logrec_close_cb)(void *arg);
/* Write what is queued, close the segment (finishing the zstd frame), then
 * call cb. Frees lr. */
void logrec_close(struct logrec *lr, logrec_close_cb cb, void *arg);
#endif /* KUMO_LOGREC_H */
