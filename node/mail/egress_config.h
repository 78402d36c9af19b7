/* egress_config.h - the delivery layer's configuration objects: the
 * queue_config, egress_source, egress_pool and egress_path objects that the
 * policy returns (kumo.make_*{}, validated by policy/policy_config.c and
 * handed over as JSON with "__kind", durations in ms, sizes in bytes) turned
 * into C structs carrying KumoMTA's code defaults. Pure: no loop, no policy,
 * no I/O; callable from any thread. Throttle specs (max_message_rate, ...)
 * are kept as text for the throttle module to parse. These are value types
 * that callers embed, hence defined here. */
#ifndef KUMO_EGRESS_CONFIG_H
#define KUMO_EGRESS_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/km_cidr.h"

struct sockaddr;

/* The name of the implicit source and pool used when the policy defines
 * none: one source, address chosen by the kernel. */
#define EGRESS_UNSPECIFIED "unspecified"

/* KumoMTA's transient failure when a pool has no source that may be chosen
 * (every weight is zero, or no entries). The caller delays with it,
 * followed by " <scheduled queue name>." as KumoMTA does. */
#define EGRESS_TXT_NO_SOURCES                                                  \
    "451 4.4.4 no non-zero-weighted sources available for"

/* Default modes of what maildir delivery creates. */
#define EGRESS_MAILDIR_DIR_MODE  0750
#define EGRESS_MAILDIR_FILE_MODE 0640

/* ---- Shared helpers ---- */

/* One CIDR block; addr in network order with the bits beyond prefix
 * cleared. family is AF_INET or AF_INET6. */

/* Parse one mx_list entry: "host", "host:port", "[1.2.3.4]",
 * "[1.2.3.4]:2525", "[IPv6:2001:db8::1]", "[::1]:25", or a bare IP address
 * ("10.0.0.1", "2001:db8::1": no port). *host is the name, or the address
 * without brackets and "IPv6:" tag; the caller owns it. *port is 0 when
 * absent (use smtp_port). *is_literal tells an IP address from a name to
 * resolve. Returns 0 or KM_EINVAL (outputs untouched). */
int egress_parse_mx_list_entry(const char *s, char **host, uint16_t *port,
                               bool *is_literal);

/* ---- queue_config (kumo.make_queue_config) ---- */

enum egress_protocol {
    EGRESS_PROTO_SMTP,         /* MX lookup of the routing domain */
    EGRESS_PROTO_SMTP_MX_LIST, /* protocol.smtp.mx_list: fixed hosts */
    EGRESS_PROTO_MAILDIR,      /* protocol.maildir_path */
};

struct egress_mx_entry {
    char *host;      /* name to resolve, or IP address text if is_literal */
    char *name;      /* table form {name=, addr=}: the name; else NULL */
    uint16_t port;   /* 0: the egress path's smtp_port */
    bool is_literal; /* host is an IP address: no DNS */
    char *text;      /* the entry as written (site names use it) */
};

struct queue_config {
    uint64_t retry_interval_ms;      /* 20 min; never 0 */
    uint64_t max_retry_interval_ms;  /* 0: backoff is not capped */
    uint64_t max_age_ms;             /* 7 days */
    char *egress_pool;               /* "unspecified" */
    char *max_message_rate;          /* throttle spec, NULL: none */
    enum egress_protocol protocol;   /* SMTP */
    struct egress_mx_entry *mx_list; /* SMTP_MX_LIST only */
    size_t n_mx_list;
    char *maildir_path;           /* MAILDIR only: a path template */
    unsigned maildir_dir_mode;    /* 0750 (protocol.dir_mode) */
    unsigned maildir_file_mode;   /* 0640 (protocol.file_mode) */
    uint64_t refresh_interval_ms; /* 60 s */
    uint64_t reap_interval_ms;    /* 10 min */
};

/* Fill out from a "queue_config" object; j NULL or {} gives every default.
 * A "__kind" other than "queue_config" is an error. On error returns
 * KM_ECONFIG with the offending key named in err, and out holds nothing to
 * release. Otherwise the caller owns out's strings: egress_queue_config_fini.
 * `strategy` is checked (TimerWheel, SkipList, SingletonTimerWheel) and
 * otherwise ignored. */
int egress_queue_config_parse(json_t *j, struct queue_config *out, char *err,
                              size_t errlen);
void egress_queue_config_fini(struct queue_config *qc);

/* ---- egress_source (kumo.make_egress_source) ---- */

struct egress_source {
    char *name;
    char *source_address; /* IP address to bind; NULL: kernel's choice */
    char *ehlo_domain;    /* NULL: the host name */
    uint16_t remote_port; /* 0: none (the path's smtp_port / mx port) */
    uint64_t ttl_ms;      /* 60 s */
};

/* Fill out from an "egress_source" object (name required; source_address
 * must be an IP address). Errors and ownership as
 * egress_queue_config_parse; release with egress_source_fini(). */
int egress_source_parse(json_t *j, struct egress_source *out, char *err,
                        size_t errlen);
/* The implicit source "unspecified": no bind address, defaults elsewhere.
 * The caller owns out (egress_source_fini). */
void egress_source_init_unspecified(struct egress_source *out);
void egress_source_fini(struct egress_source *s);

/* ---- egress_pool (kumo.make_egress_pool) ---- */

struct egress_pool_entry {
    char *name;      /* an egress source name */
    uint32_t weight; /* 1; 0 = never chosen */
    int64_t current; /* smooth round-robin state, see egress_pool_choose */
};

struct egress_pool {
    char *name;
    struct egress_pool_entry *entries;
    size_t n_entries;
    uint64_t ttl_ms; /* 60 s */
    uint64_t picks;  /* position in the round, see egress_pool_choose */
};

/* Fill out from an "egress_pool" object (name required, entries optional;
 * an entry without weight weighs 1). Errors and ownership as
 * egress_queue_config_parse; release with egress_pool_fini(). */
int egress_pool_parse(json_t *j, struct egress_pool *out, char *err,
                      size_t errlen);
/* The implicit pool "unspecified": one entry "unspecified", weight 1. */
void egress_pool_init_unspecified(struct egress_pool *out);
void egress_pool_fini(struct egress_pool *p);

/* Choose a source by smooth weighted round-robin (nginx's algorithm): with
 * weights 2 and 1 the picks run a, b, a, a, b, a, ... so every run of
 * (sum of weights) picks holds each entry exactly weight times, spread
 * out. *state is the caller's pick counter for this pool (start at 0); it
 * is advanced by one. When a pool object is replaced by a fresh parse
 * (policy refresh), passing the same *state resumes the round where it
 * was instead of restarting it. Returns a name borrowed from p (valid
 * until p is released), or NULL when no entry has a non-zero weight: the
 * caller then delays with EGRESS_TXT_NO_SOURCES. Deterministic. */
const char *egress_pool_choose(struct egress_pool *p, uint64_t *state);

/* ---- egress_path (kumo.make_egress_path) ---- */

enum egress_tls {
    EGRESS_TLS_DISABLED,
    EGRESS_TLS_OPPORTUNISTIC, /* default; a bad certificate fails */
    EGRESS_TLS_OPPORTUNISTIC_INSECURE,
    EGRESS_TLS_REQUIRED,
    EGRESS_TLS_REQUIRED_INSECURE,
};

/* Defaults are KumoMTA's code defaults (egress_path.rs, client_types.rs),
 * which differ from its documentation for data_timeout (docs 30 s),
 * data_dot_timeout (docs 60 s) and idle_timeout (docs 60 s). */
struct egress_path_config {
    uint32_t connection_limit;   /* 32; "1,000" and "local:20" accepted */
    bool connection_limit_local; /* "local:" given: never shared */
    char *max_connection_rate;   /* throttle spec, NULL: none */
    uint32_t max_deliveries_per_connection; /* 1024 */
    char *max_message_rate;                 /* throttle spec, NULL: none */
    uint32_t max_ready;                     /* 1024 */
    enum egress_tls enable_tls;             /* Opportunistic */
    uint16_t smtp_port;                     /* 25 */
    /* 127.0.0.0/8, ::1, 0.0.0.0, :: */
    struct km_cidr_list prohibited_hosts;
    struct km_cidr_list skip_hosts; /* empty */
    char *ehlo_domain;              /* NULL: source's, else host name */
    bool enable_pipelining;         /* true */
    bool enable_rset;               /* true */
    char *smtp_auth_plain_username; /* NULL: no AUTH */
    char *smtp_auth_plain_password;
    uint32_t consecutive_connection_failures_before_delay; /* 100 */
    uint64_t connect_timeout_ms;                           /* 60 s */
    uint64_t banner_timeout_ms;                            /* 60 s */
    uint64_t ehlo_timeout_ms;                              /* 300 s */
    uint64_t mail_from_timeout_ms;                         /* 300 s */
    uint64_t rcpt_to_timeout_ms;                           /* 300 s */
    uint64_t data_timeout_ms;                              /* 300 s */
    uint64_t data_dot_timeout_ms;                          /* 300 s */
    uint64_t rset_timeout_ms;                              /* 5 s */
    uint64_t starttls_timeout_ms;                          /* 5 s */
    uint64_t idle_timeout_ms;                              /* 5 s */
    uint64_t refresh_interval_ms;                          /* 60 s */
};

/* Fill out from an "egress_path" object; j NULL or {} gives every default.
 * Errors and ownership as egress_queue_config_parse; release with
 * egress_path_config_fini(). */
int egress_path_config_parse(json_t *j, struct egress_path_config *out,
                             char *err, size_t errlen);
void egress_path_config_fini(struct egress_path_config *c);

/* Whether delivery must not connect to addr: it lies in prohibited_hosts
 * or in skip_hosts. */
bool egress_path_host_prohibited(const struct egress_path_config *c,
                                 const struct sockaddr *addr);

/* The enable_tls text ("Opportunistic", ...) of a mode, for log lines. */
const char *egress_tls_name(enum egress_tls t);
#endif /* KUMO_EGRESS_CONFIG_H */
