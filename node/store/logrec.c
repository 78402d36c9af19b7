/* logrec.c - the loop side of the JSON log records: builds each record
 * with KumoMTA's field names (kumo-log-types' JsonLogRecord), appends it to
 * a pending buffer, and hands that buffer to one uv_queue_work job at a time
 * (logrec_segment.c compresses and writes it), on a 100 ms timer or when
 * 256 KiB have piled up. The timer also closes an idle segment that has
 * outlived max_segment_duration. Loop thread only; never blocks, and a
 * failing disk costs records, not the daemon. */
#include "logrec.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>
#include <uv.h>
#include <zstd.h>

#include "base/buf.h"
#include "base/hdr.h"
#include "base/km.h"
#include "base/log.h"
#include "logrec_int.h"
#include "message.h"

#define LOGREC_FLUSH_MS    100
#define LOGREC_FLUSH_BYTES (256 * 1024)
#define LOGREC_DEFAULT_MAX (1024ULL * 1024 * 1024)
/* Records waiting for a slow disk are dropped beyond this, rather than
 * blocking the loop (KumoMTA's back_pressure blocks the submitter). */
#define LOGREC_MAX_PENDING  (64 * 1024 * 1024)
#define LOGREC_UTF8_REPLACE "\xef\xbf\xbd"

/* The one pool job of a logger. The work function touches only this. */
struct logrec_job {
    uv_work_t req;
    struct buf data; /* records handed over, newline-terminated */
    bool end;        /* finish the segment after writing */
    struct logrec_seg seg;
};

struct logrec {
    uv_loop_t *loop;
    char **meta;
    size_t n_meta;
    char **headers;
    size_t n_headers;
    uv_timer_t timer;
    struct buf pending;
    bool job_running;
    struct logrec_job job;
    uint64_t logged_generation; /* segment whose failure was logged */
    bool logged_any;
    bool logged_overflow; /* until the backlog drains */
    struct logrec_stats stats;
    bool closing;
    logrec_close_cb close_cb;
    void *close_arg;
};

/* ---- JSON helpers ---- */

/* Length of the valid UTF-8 sequence at p (1-4), or 0 if invalid. */
static size_t
logrec_utf8_len(const unsigned char *p)
{
    unsigned char c = p[0];
    unsigned char lo = 0x80;
    unsigned char hi = 0xbf;
    size_t n;

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80; /* no overlong forms */
        hi = c == 0xed ? 0x9f : 0xbf; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (p[1] < lo || p[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }
    return n;
}

/* A JSON string for s[0..n), with invalid UTF-8 replaced by U+FFFD (the
 * peer's EHLO name or a header can hold anything; jansson refuses it). */
static json_t *
logrec_json_strn(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    struct buf b = BUF_INIT;

    if (j != NULL) {
        return j;
    }
    for (size_t i = 0; i < n;) {
        /* A truncated sequence at the end reads the NUL and fails. */
        size_t k = s[i] == '\0' ? 0 : logrec_utf8_len((const void *)(s + i));
        if (k == 0 || i + k > n) {
            buf_append_str(&b, LOGREC_UTF8_REPLACE);
            i++;
            continue;
        }
        buf_append(&b, s + i, k);
        i += k;
    }
    j = json_stringn(buf_cstr(&b), b.len);
    buf_fini(&b);
    KM_ASSERT(j != NULL);
    return j;
}

static json_t *
logrec_json_str(const char *s)
{
    return logrec_json_strn(s, strlen(s));
}

/* A string, or null when s is NULL. */
static json_t *
logrec_json_str_or_null(const char *s)
{
    return s != NULL ? logrec_json_str(s) : json_null();
}

static void
logrec_set(json_t *obj, const char *key, json_t *value)
{
    KM_ASSERT(value != NULL);
    json_object_set_new(obj, key, value);
}

/* RFC 3339 in UTC with microseconds: 2026-11-24T15:00:00.123456Z. */
static void
logrec_fmt_time(int64_t us, char *out, size_t out_len)
{
    int64_t secs = us / 1000000;
    int64_t frac = us % 1000000;
    struct tm tm;
    char date[32];

    if (frac < 0) {
        frac += 1000000;
        secs--;
    }
    time_t t = (time_t)secs;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, out_len, "%s.%06lldZ", date, (long long)frac);
}

static int64_t
logrec_floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && a < 0);
}

/* ---- enhanced status codes ---- */

/* Parse 1-3 digits at *p into *out; false if there are none. */
static bool
logrec_parse_num(const char **p, int *out)
{
    int v = 0;
    int n = 0;

    while (**p >= '0' && **p <= '9' && n < 3) {
        v = v * 10 + (**p - '0');
        (*p)++;
        n++;
    }
    *out = v;
    return n > 0 && !(**p >= '0' && **p <= '9');
}

size_t
logrec_parse_enhanced(const char *text, int *cls, int *subject, int *detail)
{
    const char *p = text;
    int c;
    int s;
    int d;

    if (text == NULL) {
        return 0;
    }
    /* Tolerate a leading reply code: "550 5.7.1 text". */
    if (p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' &&
        p[2] >= '0' && p[2] <= '9' && (p[3] == ' ' || p[3] == '-')) {
        p += 4;
    }
    /* RFC 3463: class "." subject "." detail, class 2, 4 or 5, subject and
     * detail 1-3 digits; then a space or the end of the text. */
    if (!(*p == '2' || *p == '4' || *p == '5') || p[1] != '.') {
        return 0;
    }
    c = *p - '0';
    p += 2;
    if (!logrec_parse_num(&p, &s) || *p != '.') {
        return 0;
    }
    p++;
    if (!logrec_parse_num(&p, &d) || (*p != ' ' && *p != '\0')) {
        return 0;
    }
    if (*p == ' ') {
        p++;
    }
    *cls = c;
    *subject = s;
    *detail = d;
    return (size_t)(p - text);
}

/* ---- record building ---- */

static json_t *
logrec_build_response(const struct logrec_event *ev)
{
    json_t *resp = json_object();
    const char *content = ev->content != NULL ? ev->content : "";
    int c;
    int s;
    int d;
    size_t off = logrec_parse_enhanced(content, &c, &s, &d);

    logrec_set(resp, "code", json_integer(ev->code));
    if (off > 0) {
        json_t *enh = json_object();
        logrec_set(enh, "class", json_integer(c));
        logrec_set(enh, "subject", json_integer(s));
        logrec_set(enh, "detail", json_integer(d));
        logrec_set(resp, "enhanced_code", enh);
    } else {
        logrec_set(resp, "enhanced_code", json_null());
    }
    logrec_set(resp, "content", logrec_json_str(content + off));
    logrec_set(resp, "command", logrec_json_str_or_null(ev->command));
    return resp;
}

static bool
logrec_wild_match(const char *pattern, const char *name, size_t name_len,
                  bool nocase)
{
    size_t plen = strlen(pattern);

    if (plen > 0 && pattern[plen - 1] == '*') {
        plen--;
        return name_len >= plen && (nocase ? strncasecmp(name, pattern, plen)
                                           : strncmp(name, pattern, plen)) == 0;
    }
    if (nocase) {
        return km_ascii_ieq(name, name_len, pattern);
    }
    return name_len == plen && memcmp(name, pattern, plen) == 0;
}

/* KumoMTA copies only the configured keys: exact names that are present
 * and not null, and every key under a "prefix*" pattern. */
static json_t *
logrec_build_meta(const struct logrec *lr, json_t *meta)
{
    json_t *out = json_object();
    const char *key;
    json_t *value;

    if (lr == NULL || !json_is_object(meta)) {
        return out;
    }
    json_object_foreach(meta, key, value)
    {
        for (size_t i = 0; i < lr->n_meta; i++) {
            const char *pat = lr->meta[i];
            bool wild = pat[0] != '\0' && pat[strlen(pat) - 1] == '*';
            if (logrec_wild_match(pat, key, strlen(key), false) &&
                (wild || !json_is_null(value))) {
                logrec_set(out, key, json_deep_copy(value));
                break;
            }
        }
    }
    return out;
}

struct logrec_hdr_ctx {
    const struct logrec *lr;
    json_t *out;   /* header name as first seen -> value or [values] */
    json_t *names; /* lowercased name -> name as first seen */
};

static bool
logrec_on_header(void *arg, const char *name, size_t name_len,
                 const char *value, size_t value_len)
{
    struct logrec_hdr_ctx *h = arg;
    bool wanted = false;

    for (size_t i = 0; i < h->lr->n_headers && !wanted; i++) {
        wanted = logrec_wild_match(h->lr->headers[i], name, name_len, true);
    }
    if (!wanted) {
        return true;
    }
    char *lc = km_strndup(name, name_len);
    for (char *c = lc; *c != '\0'; c++) {
        if (*c >= 'A' && *c <= 'Z') {
            *c = (char)(*c - 'A' + 'a');
        }
    }
    json_t *v = logrec_json_strn(value, value_len);
    json_t *seen = json_object_get(h->names, lc);
    if (seen == NULL) {
        json_t *orig = logrec_json_strn(name, name_len);
        logrec_set(h->names, lc, orig);
        logrec_set(h->out, json_string_value(orig), v);
    } else {
        /* Repeated headers become an array of their values, in order. */
        const char *orig = json_string_value(seen);
        json_t *cur = json_object_get(h->out, orig);
        if (json_is_array(cur)) {
            json_array_append_new(cur, v);
        } else {
            json_t *arr = json_array();
            json_array_append(arr, cur);
            json_array_append_new(arr, v);
            logrec_set(h->out, orig, arr);
        }
    }
    free(lc);
    return true;
}

static json_t *
logrec_build_headers(const struct logrec *lr, struct message *msg)
{
    json_t *out = json_object();

    if (lr == NULL || msg == NULL || lr->n_headers == 0) {
        return out;
    }
    const struct buf *data = message_data_c(msg);
    struct logrec_hdr_ctx h = {lr, out, json_object()};
    hdr_foreach(buf_cstr(data), data->len, logrec_on_header, &h);
    json_decref(h.names);
    return out;
}

json_t *
logrec_build(const struct logrec *lr, const struct logrec_event *ev)
{
    struct message *msg = ev->msg;
    json_t *rec = json_object();
    json_t *meta = msg != NULL ? message_meta(msg) : NULL;
    int64_t ts_us = ev->timestamp_us != 0 ? ev->timestamp_us : km_now_wall_us();
    int64_t created_us = msg != NULL ? message_created_ms(msg) * 1000 : ts_us;
    const char *id = ev->id;
    const char *sender = ev->sender;
    const char *recipient = ev->recipient;
    const char *queue = ev->queue;
    const char *reception_protocol = ev->reception_protocol;
    uint32_t attempts = ev->num_attempts;
    char when[40];

    if (msg != NULL) {
        id = id != NULL ? id : message_id(msg);
        sender = sender != NULL ? sender : message_sender(msg);
        recipient = recipient != NULL ? recipient : message_recipient(msg);
        queue = queue != NULL ? queue : message_queue_name(msg);
        attempts = attempts != 0 ? attempts : message_num_attempts(msg);
        /* KumoMTA takes it from the meta key the listener sets. */
        if (reception_protocol == NULL) {
            reception_protocol =
                json_string_value(json_object_get(meta, "reception_protocol"));
        }
    }

    logrec_set(rec, "type", logrec_json_str(ev->type != NULL ? ev->type : ""));
    logrec_set(rec, "id", logrec_json_str(id != NULL ? id : ""));
    logrec_set(rec, "sender", logrec_json_str(sender != NULL ? sender : ""));
    logrec_set(rec, "recipient",
               logrec_json_str(recipient != NULL ? recipient : ""));
    logrec_set(rec, "queue", logrec_json_str(queue != NULL ? queue : ""));
    logrec_set(rec, "site", logrec_json_str(ev->site != NULL ? ev->site : ""));
    logrec_set(rec, "size",
               json_integer(msg != NULL ? (json_int_t)message_size(msg) : 0));
    logrec_set(rec, "response", logrec_build_response(ev));
    if (ev->peer_name != NULL || ev->peer_addr != NULL) {
        json_t *peer = json_object();
        logrec_set(peer, "name",
                   logrec_json_str(ev->peer_name != NULL ? ev->peer_name : ""));
        logrec_set(peer, "addr",
                   logrec_json_str(ev->peer_addr != NULL ? ev->peer_addr : ""));
        logrec_set(rec, "peer_address", peer);
    } else {
        logrec_set(rec, "peer_address", json_null());
    }
    logrec_set(rec, "timestamp",
               json_integer(logrec_floor_div(ts_us, 1000000)));
    logrec_set(rec, "created",
               json_integer(logrec_floor_div(created_us, 1000000)));
    logrec_fmt_time(ts_us, when, sizeof(when));
    logrec_set(rec, "event_time", json_string(when));
    logrec_fmt_time(created_us, when, sizeof(when));
    logrec_set(rec, "created_time", json_string(when));
    logrec_set(rec, "num_attempts", json_integer(attempts));
    logrec_set(rec, "bounce_classification", json_string("Uncategorized"));
    logrec_set(rec, "egress_pool", logrec_json_str_or_null(ev->egress_pool));
    logrec_set(rec, "egress_source",
               logrec_json_str_or_null(ev->egress_source));
    if (ev->source_addr != NULL) {
        /* protocol and server are for proxies, which kumod does not use;
         * KumoMTA leaves them out when unset. */
        json_t *src = json_object();
        logrec_set(src, "address", logrec_json_str(ev->source_addr));
        logrec_set(rec, "source_address", src);
    } else {
        logrec_set(rec, "source_address", json_null());
    }
    logrec_set(rec, "feedback_report", json_null());
    logrec_set(rec, "meta", logrec_build_meta(lr, meta));
    logrec_set(rec, "headers", logrec_build_headers(lr, msg));
    logrec_set(rec, "delivery_protocol",
               logrec_json_str_or_null(ev->delivery_protocol));
    logrec_set(rec, "reception_protocol",
               logrec_json_str_or_null(reception_protocol));
    logrec_set(rec, "nodeid", logrec_json_str_or_null(ev->nodeid));
    /* KumoMTA omits these when unset (skip_serializing_if); kumod never
     * knows tls_peer_subject_name or provider_name. */
    if (ev->tls_cipher != NULL) {
        logrec_set(rec, "tls_cipher", logrec_json_str(ev->tls_cipher));
    }
    if (ev->tls_protocol_version != NULL) {
        logrec_set(rec, "tls_protocol_version",
                   logrec_json_str(ev->tls_protocol_version));
    }
    if (ev->session_id != NULL) {
        logrec_set(rec, "session_id", logrec_json_str(ev->session_id));
    }
    return rec;
}

/* ---- writing ---- */

static void logrec_arm(struct logrec *lr);
static void logrec_kick(struct logrec *lr, bool end);
static void logrec_close_handles(struct logrec *lr);

static void
logrec_on_work(uv_work_t *req)
{
    struct logrec_job *job = req->data;

    logrec_seg_write(&job->seg, buf_cstr(&job->data), job->data.len);
    if (job->end) {
        logrec_seg_finish(&job->seg);
    }
}

/* Log the job's failure once per segment (and once per run of failed
 * opens), count it, and clear it. */
static void
logrec_report(struct logrec *lr)
{
    struct logrec_seg *s = &lr->job.seg;

    lr->stats.dropped += s->dropped;
    lr->stats.segments += s->closed;
    s->dropped = 0;
    s->closed = 0;
    if (s->err == 0) {
        return;
    }
    lr->stats.errors++;
    if (!lr->logged_any || lr->logged_generation != s->err_generation) {
        LOG_ERROR("logrec: %s: %s: %s", s->err_path, s->err_op,
                  km_strerror(s->err));
        lr->logged_any = true;
        lr->logged_generation = s->err_generation;
    }
    s->err = 0;
}

static void
logrec_on_work_done(uv_work_t *req, int status)
{
    struct logrec_job *job = req->data;
    struct logrec *lr =
        (struct logrec *)((char *)job - offsetof(struct logrec, job));

    (void)status;
    lr->job_running = false;
    buf_reset(&job->data);
    logrec_report(lr);
    if (lr->pending.len < LOGREC_MAX_PENDING / 2) {
        lr->logged_overflow = false;
    }
    if (lr->closing) {
        if (lr->pending.len > 0 || job->seg.fd >= 0) {
            logrec_kick(lr, true);
            return;
        }
        logrec_close_handles(lr);
        return;
    }
    logrec_arm(lr);
}

/* Hand the pending records to the pool; `end` finishes the segment. */
static void
logrec_kick(struct logrec *lr, bool end)
{
    KM_ASSERT(!lr->job_running);
    buf_move(&lr->job.data, &lr->pending);
    lr->job.end = end;
    lr->job_running = true;
    /* Fails only without a work callback. */
    int rv = uv_queue_work(lr->loop, &lr->job.req, logrec_on_work,
                           logrec_on_work_done);
    KM_ASSERT(rv == 0);
}

static void
logrec_on_timer(uv_timer_t *t)
{
    struct logrec *lr = t->data;
    bool expired;

    if (lr->job_running || lr->closing) {
        return;
    }
    expired = logrec_seg_is_expired(&lr->job.seg, km_now_mono_ms());
    if (lr->pending.len > 0 || expired) {
        logrec_kick(lr, expired);
        return;
    }
    logrec_arm(lr);
}

/* Decide what happens next: a job now, a flush in LOGREC_FLUSH_MS, a wake-up
 * when the open segment expires, or nothing. */
static void
logrec_arm(struct logrec *lr)
{
    const struct logrec_seg *s = &lr->job.seg;

    if (lr->job_running || lr->closing) {
        return;
    }
    if (lr->pending.len >= LOGREC_FLUSH_BYTES) {
        uv_timer_stop(&lr->timer);
        logrec_kick(lr, false);
        return;
    }
    if (lr->pending.len > 0) {
        if (!uv_is_active((uv_handle_t *)&lr->timer) ||
            uv_timer_get_due_in(&lr->timer) > LOGREC_FLUSH_MS) {
            uv_timer_start(&lr->timer, logrec_on_timer, LOGREC_FLUSH_MS, 0);
        }
        return;
    }
    if (s->fd >= 0 && s->max_dur_ms > 0) {
        uint64_t age = km_now_mono_ms() - s->opened_mono_ms;
        uint64_t due = age >= s->max_dur_ms ? 0 : s->max_dur_ms - age;
        uv_timer_start(&lr->timer, logrec_on_timer, due, 0);
        return;
    }
    uv_timer_stop(&lr->timer);
}

static int
logrec_json_append(const char *p, size_t n, void *arg)
{
    buf_append(arg, p, n);
    return 0;
}

void
logrec_set_write(const struct logrec_set *set, struct logrec_event *ev)
{
    ev->nodeid = set->nodeid;
    for (size_t i = 0; i < set->n; i++) {
        logrec_write(set->logs[i], ev);
    }
}

void
logrec_write(struct logrec *lr, const struct logrec_event *ev)
{
    json_t *rec;

    if (lr->closing) {
        lr->stats.dropped++;
        return;
    }
    if (lr->pending.len >= LOGREC_MAX_PENDING) {
        if (!lr->logged_overflow) {
            LOG_ERROR("logrec: %s: %zu bytes waiting for the disk: dropping "
                      "records",
                      lr->job.seg.dir, lr->pending.len);
            lr->logged_overflow = true;
        }
        lr->stats.dropped++;
        return;
    }
    rec = logrec_build(lr, ev);
    json_dump_callback(rec, logrec_json_append, &lr->pending, JSON_COMPACT);
    buf_append_char(&lr->pending, '\n');
    json_decref(rec);
    lr->stats.records++;
    logrec_arm(lr);
}

/* ---- open and close ---- */

/* mkdir -p: create `dir` and any missing parents. */
static int
logrec_mkdirs(const char *dir)
{
    char *path = km_strdup(dir);
    int rv = 0;

    for (char *p = path + 1;; p++) {
        bool last = *p == '\0';
        if (*p != '/' && !last) {
            continue;
        }
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            rv = -errno;
            break;
        }
        if (last) {
            break;
        }
        *p = '/';
    }
    free(path);
    if (rv == 0) {
        struct stat st;
        if (stat(dir, &st) != 0) {
            rv = -errno;
        } else if (!S_ISDIR(st.st_mode)) {
            rv = -ENOTDIR;
        }
    }
    return rv;
}

static char **
logrec_strv_dup(const char *const *v, size_t n)
{
    char **out = km_calloc(n + 1, sizeof(*out));

    for (size_t i = 0; i < n; i++) {
        out[i] = km_strdup(v[i]);
    }
    return out;
}

static void
logrec_strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

int
logrec_open(uv_loop_t *loop, const struct logrec_config *cfg,
            struct logrec **out)
{
    struct logrec *lr;
    int rv;

    if (cfg->log_dir == NULL || cfg->log_dir[0] == '\0') {
        return KM_EINVAL;
    }
    rv = logrec_mkdirs(cfg->log_dir);
    if (rv != 0) {
        return rv;
    }
    lr = km_calloc(1, sizeof(*lr));
    lr->loop = loop;
    lr->meta = logrec_strv_dup(cfg->meta, cfg->n_meta);
    lr->n_meta = cfg->n_meta;
    lr->headers = logrec_strv_dup(cfg->headers, cfg->n_headers);
    lr->n_headers = cfg->n_headers;
    buf_init(&lr->pending);
    buf_init(&lr->job.data);
    lr->job.req.data = &lr->job;
    logrec_seg_init(&lr->job.seg, cfg->log_dir,
                    cfg->max_file_size != 0 ? cfg->max_file_size
                                            : LOGREC_DEFAULT_MAX,
                    cfg->max_segment_duration_ms,
                    cfg->compression_level != 0 ? cfg->compression_level
                                                : ZSTD_CLEVEL_DEFAULT);
    rv = uv_timer_init(loop, &lr->timer);
    if (rv != 0) {
        goto err_after_alloc;
    }
    lr->timer.data = lr;
    *out = lr;
    return 0;

err_after_alloc:
    logrec_seg_fini(&lr->job.seg);
    logrec_strv_free(lr->meta, lr->n_meta);
    logrec_strv_free(lr->headers, lr->n_headers);
    free(lr);
    return rv;
}

static void
logrec_on_timer_closed(uv_handle_t *h)
{
    struct logrec *lr = h->data;

    if (lr->close_cb != NULL) {
        lr->close_cb(lr->close_arg);
    }
    logrec_seg_fini(&lr->job.seg);
    buf_fini(&lr->job.data);
    buf_fini(&lr->pending);
    logrec_strv_free(lr->meta, lr->n_meta);
    logrec_strv_free(lr->headers, lr->n_headers);
    free(lr);
}

static void
logrec_close_handles(struct logrec *lr)
{
    uv_close((uv_handle_t *)&lr->timer, logrec_on_timer_closed);
}

void
logrec_close(struct logrec *lr, logrec_close_cb cb, void *arg)
{
    KM_ASSERT(!lr->closing);
    lr->closing = true;
    lr->close_cb = cb;
    lr->close_arg = arg;
    uv_timer_stop(&lr->timer);
    if (lr->job_running) {
        return; /* logrec_on_work_done finishes the segment */
    }
    if (lr->pending.len > 0 || lr->job.seg.fd >= 0) {
        logrec_kick(lr, true);
        return;
    }
    logrec_close_handles(lr);
}

void
logrec_get_stats(const struct logrec *lr, struct logrec_stats *out)
{
    *out = lr->stats;
}
