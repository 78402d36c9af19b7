/* egress_maildir.c - maildir delivery: the path template expansion (loop
 * thread, message accessors) and the durable write (any thread, blocking:
 * mkdir -p, tmp/<unique> with O_EXCL, write, fsync, rename into new/,
 * fsync new/). The async variant copies everything into its request so the
 * pool thread touches nothing else. Owns no state between calls; retry
 * timing after a failure is the caller's (KumoMTA retries in ~1 minute). */
#include "egress_maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>

#include "base/buf.h"
#include "base/km.h"
#include "egress_config.h"
#include "message.h"

/* Attempts at a fresh name when tmp/<name> exists already. */
#define EGRESS_MAILDIR_NAME_TRIES 8
/* Longest message id kept in a file name. */
#define EGRESS_MAILDIR_ID_MAX 64

struct egress_maildir_req {
    uv_work_t work;
    char *dir;
    char *id;
    char *host;
    char *data;
    size_t len;
    int status;
    char *final_path;
    egress_maildir_cb cb;
    void *arg;
};

/* ---- Template expansion ---- */

/* The parts of a scheduled queue name, KumoMTA's QueueNameComponents:
 * "campaign:tenant@domain!routing_domain". Views into the name. */
struct egress_maildir_qparts {
    const char *campaign, *tenant, *domain, *routing;
    size_t campaign_n, tenant_n, domain_n, routing_n;
};

static void
egress_maildir_split_queue(const char *q, struct egress_maildir_qparts *p)
{
    const char *at = strchr(q, '@');
    const char *d = q, *bang, *colon;

    memset(p, 0, sizeof(*p));
    if (at != NULL) {
        colon = memchr(q, ':', (size_t)(at - q));
        if (colon != NULL) {
            p->campaign = q;
            p->campaign_n = (size_t)(colon - q);
            p->tenant = colon + 1;
            p->tenant_n = (size_t)(at - colon - 1);
        } else {
            p->tenant = q;
            p->tenant_n = (size_t)(at - q);
        }
        d = at + 1;
    }
    bang = strchr(d, '!');
    p->domain = d;
    p->domain_n = bang != NULL ? (size_t)(bang - d) : strlen(d);
    if (bang != NULL) {
        p->routing = bang + 1;
        p->routing_n = strlen(bang + 1);
    }
}

/* The local part or domain of an address (split at the last '@'; no '@'
 * means all local part). */
static void
egress_maildir_split_addr(const char *addr, bool want_domain, const char **p,
                          size_t *n)
{
    const char *at = strrchr(addr, '@');

    if (want_domain) {
        *p = at != NULL ? at + 1 : "";
        *n = strlen(*p);
    } else {
        *p = addr;
        *n = at != NULL ? (size_t)(at - addr) : strlen(addr);
    }
}

/* Append a meta value: strings as is, numbers and booleans as JSON text,
 * anything else (absent, null, tables) as nothing. */
static void
egress_maildir_meta_value(json_t *meta, const char *key, struct buf *val)
{
    json_t *v = json_object_get(meta, key);

    if (json_is_string(v)) {
        buf_append(val, json_string_value(v), json_string_length(v));
    } else if (json_is_integer(v) || json_is_real(v) || json_is_boolean(v)) {
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

        buf_append_str(val, s);
        free(s);
    }
}

/* Resolve one `{{ ... }}` expression (already trimmed) into val. */
static int
egress_maildir_lookup(const char *expr, size_t n, struct message *m,
                      const char *queue, struct buf *val, char *err,
                      size_t errlen)
{
    struct egress_maildir_qparts qp;
    const char *p = NULL;
    size_t pn = 0;

    egress_maildir_split_queue(queue, &qp);
    if (n > 5 && memcmp(expr, "meta.", 5) == 0) {
        char *key = km_strndup(expr + 5, n - 5);

        egress_maildir_meta_value(message_meta(m), key, val);
        free(key);
        return 0;
    }
    if (n > 8 && memcmp(expr, "meta[", 5) == 0 && expr[n - 1] == ']' &&
        (expr[5] == '\'' || expr[5] == '"') && expr[n - 2] == expr[5]) {
        char *key = km_strndup(expr + 6, n - 8);

        egress_maildir_meta_value(message_meta(m), key, val);
        free(key);
        return 0;
    }
    if (km_ascii_ieq(expr, n, "queue")) {
        p = queue;
        pn = strlen(queue);
    } else if (km_ascii_ieq(expr, n, "campaign")) {
        p = qp.campaign;
        pn = qp.campaign_n;
    } else if (km_ascii_ieq(expr, n, "tenant")) {
        p = qp.tenant;
        pn = qp.tenant_n;
    } else if (km_ascii_ieq(expr, n, "domain")) {
        p = qp.domain;
        pn = qp.domain_n;
    } else if (km_ascii_ieq(expr, n, "routing_domain")) {
        p = qp.routing;
        pn = qp.routing_n;
    } else if (km_ascii_ieq(expr, n, "local_part")) {
        egress_maildir_split_addr(message_recipient(m), false, &p, &pn);
    } else if (km_ascii_ieq(expr, n, "domain_part")) {
        egress_maildir_split_addr(message_recipient(m), true, &p, &pn);
    } else if (km_ascii_ieq(expr, n, "email")) {
        p = message_recipient(m);
        pn = strlen(p);
    } else if (km_ascii_ieq(expr, n, "sender_local_part")) {
        egress_maildir_split_addr(message_sender(m), false, &p, &pn);
    } else if (km_ascii_ieq(expr, n, "sender_domain_part")) {
        egress_maildir_split_addr(message_sender(m), true, &p, &pn);
    } else if (km_ascii_ieq(expr, n, "sender_email")) {
        p = message_sender(m);
        pn = strlen(p);
    } else {
        snprintf(err, errlen, "maildir_path: unsupported template value '%.*s'",
                 (int)n, expr);
        return KM_EINVAL;
    }
    if (p != NULL) {
        buf_append(val, p, pn);
    }
    return 0;
}

int
egress_maildir_expand_path(const char *tmpl, struct message *m, char **out,
                           char *err, size_t errlen)
{
    struct buf res = BUF_INIT, val = BUF_INIT;
    char *queue = km_strdup(message_queue_name(m));
    const char *s = tmpl;
    int rv = 0;

    while (*s != '\0') {
        const char *open = strstr(s, "{{");
        const char *b, *e, *close;

        if (strstr(s, "{%") != NULL || strstr(s, "{#") != NULL) {
            snprintf(err, errlen,
                     "maildir_path: only {{ value }} templates are supported");
            rv = KM_EINVAL;
            goto err_after_alloc;
        }
        if (open == NULL) {
            buf_append_str(&res, s);
            break;
        }
        buf_append(&res, s, (size_t)(open - s));
        close = strstr(open + 2, "}}");
        if (close == NULL) {
            snprintf(err, errlen, "maildir_path: unterminated '{{'");
            rv = KM_EINVAL;
            goto err_after_alloc;
        }
        b = open + 2;
        e = close;
        while (b < e && (*b == ' ' || *b == '\t')) {
            b++;
        }
        while (e > b && (e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }
        buf_reset(&val);
        rv = egress_maildir_lookup(b, (size_t)(e - b), m, queue, &val, err,
                                   errlen);
        if (rv != 0) {
            goto err_after_alloc;
        }
        /* A recipient "../x@d" must not climb out of the template's tree. */
        if (memchr(buf_cstr(&val), '/', val.len) != NULL ||
            memchr(buf_cstr(&val), '\0', val.len) != NULL ||
            strcmp(buf_cstr(&val), ".") == 0 ||
            strcmp(buf_cstr(&val), "..") == 0) {
            snprintf(err, errlen,
                     "maildir_path: '%.*s' expands to an unsafe path part",
                     (int)(e - b), b);
            rv = KM_EINVAL;
            goto err_after_alloc;
        }
        buf_append(&res, buf_cstr(&val), val.len);
        s = close + 2;
    }
    if (res.len == 0) {
        snprintf(err, errlen, "maildir_path: expands to an empty path");
        rv = KM_EINVAL;
        goto err_after_alloc;
    }
    *out = km_strdup(buf_cstr(&res));

err_after_alloc:
    buf_fini(&val);
    buf_fini(&res);
    free(queue);
    return rv;
}

/* ---- The durable write ---- */

/* mkdir -p: create dir and its missing parents with mode. */
static int
egress_maildir_mkdirs(const char *dir, unsigned mode)
{
    char *p;
    int rv = 0;

    if (dir[0] == '\0') {
        return KM_EINVAL;
    }
    p = km_strdup(dir);
    for (char *s = p + 1;; s++) {
        bool end = *s == '\0';

        if (*s != '/' && !end) {
            continue;
        }
        *s = '\0';
        if (mkdir(p, (mode_t)mode) != 0 && errno != EEXIST) {
            rv = -errno;
            break;
        }
        if (end) {
            break;
        }
        *s = '/';
    }
    free(p);
    return rv;
}

/* Make dir, dir/tmp, dir/new and dir/cur if missing; ENOTDIR if one of
 * them exists as something else. */
static int
egress_maildir_prepare(const char *dir, unsigned mode)
{
    static const char *const subs[] = {"tmp", "new", "cur"};
    struct stat st;
    int rv = egress_maildir_mkdirs(dir, mode);

    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        char *sub = km_asprintf("%s/%s", dir, subs[i]);

        if (mkdir(sub, (mode_t)mode) != 0 && errno != EEXIST) {
            rv = -errno;
        } else if (stat(sub, &st) != 0) {
            rv = -errno;
        } else if (!S_ISDIR(st.st_mode)) {
            rv = -ENOTDIR;
        }
        free(sub);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* maildir.txt: "<time>.<unique>.<host>", the host with '/' and ':'
 * escaped as \057 and \072. Unique is microseconds, pid, 64 random bits
 * and the message id (letters, digits and '-' only). */
static char *
egress_maildir_unique_name(const char *id, const char *host)
{
    struct buf b = BUF_INIT;
    struct timeval tv;
    uint64_t rnd = 0;
    size_t n = 0;
    char *name;

    gettimeofday(&tv, NULL);
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd)) {
        /* No entropy yet (early boot): O_EXCL still catches a clash. */
        rnd = (uint64_t)km_now_mono_ms() * 1000003u ^ (uint64_t)tv.tv_usec;
    }
    buf_appendf(&b, "%lld.M%06ldP%ldR%016llx_", (long long)tv.tv_sec,
                (long)tv.tv_usec, (long)getpid(), (unsigned long long)rnd);
    for (const char *p = id; *p != '\0' && n < EGRESS_MAILDIR_ID_MAX;
         p++, n++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '-';

        buf_append_char(&b, ok ? c : '_');
    }
    buf_append_char(&b, '.');
    for (const char *p = host; *p != '\0'; p++) {
        if (*p == '/') {
            buf_append_str(&b, "\\057");
        } else if (*p == ':') {
            buf_append_str(&b, "\\072");
        } else {
            buf_append_char(&b, *p);
        }
    }
    name = km_strdup(buf_cstr(&b));
    buf_fini(&b);
    return name;
}

/* Write all of data to fd, retrying short writes and EINTR. */
static int
egress_maildir_write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, data, len);

        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

/* fsync a directory so a rename into it survives a crash. */
static int
egress_maildir_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rv = 0;

    if (fd < 0) {
        return -errno;
    }
    if (fsync(fd) != 0) {
        rv = -errno;
    }
    close(fd);
    return rv;
}

/* Create tmp/<unique> exclusively; *tmp_path and *name are the caller's. */
static int
egress_maildir_create_tmp(const char *dir, const char *id, const char *host,
                          unsigned file_mode, char **tmp_path, char **name,
                          int *fd_out)
{
    for (int i = 0; i < EGRESS_MAILDIR_NAME_TRIES; i++) {
        char *n = egress_maildir_unique_name(id, host);
        char *p = km_asprintf("%s/tmp/%s", dir, n);
        int fd =
            open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)file_mode);

        if (fd >= 0) {
            *tmp_path = p;
            *name = n;
            *fd_out = fd;
            return 0;
        }
        free(p);
        free(n);
        if (errno != EEXIST) {
            return -errno;
        }
    }
    return KM_EEXIST;
}

/* egress_maildir_write with the host name given (the pool thread must not
 * read anything outside its request). */
static int
egress_maildir_write_host(const char *dir, const char *id, const char *host,
                          const char *data, size_t len, unsigned dir_mode,
                          unsigned file_mode, char **out_path)
{
    char *tmp_path, *name, *new_dir, *new_path;
    int fd, rv;

    rv = egress_maildir_prepare(dir, dir_mode);
    if (rv != 0) {
        return rv;
    }
    rv = egress_maildir_create_tmp(dir, id, host, file_mode, &tmp_path, &name,
                                   &fd);
    if (rv != 0) {
        return rv;
    }
    rv = egress_maildir_write_all(fd, data, len);
    if (rv == 0 && fsync(fd) != 0) {
        rv = -errno;
    }
    if (close(fd) != 0 && rv == 0) {
        rv = -errno;
    }
    if (rv != 0) {
        goto err_after_tmp;
    }
    new_dir = km_asprintf("%s/new", dir);
    new_path = km_asprintf("%s/%s", new_dir, name);
    if (rename(tmp_path, new_path) != 0) {
        rv = -errno;
        unlink(tmp_path);
    } else {
        /* On failure the file stays in new/ (a reader may have taken it
         * already): the caller retries, at worst delivering twice. */
        rv = egress_maildir_sync_dir(new_dir);
    }
    if (rv == 0 && out_path != NULL) {
        *out_path = new_path;
        new_path = NULL;
    }
    free(new_path);
    free(new_dir);
    free(tmp_path);
    free(name);
    return rv;

err_after_tmp:
    unlink(tmp_path);
    free(tmp_path);
    free(name);
    return rv;
}

int
egress_maildir_write(const char *dir, const char *id, const char *data,
                     size_t len, unsigned dir_mode, unsigned file_mode,
                     char **out_path)
{
    return egress_maildir_write_host(dir, id, km_hostname(), data, len,
                                     dir_mode, file_mode, out_path);
}

int
egress_maildir_deliver(const char *path_template, struct message *m,
                       char **out_path)
{
    const struct buf *data = message_data_c(m);
    char err[256];
    char *dir;
    int rv;

    rv = egress_maildir_expand_path(path_template, m, &dir, err, sizeof(err));
    if (rv != 0) {
        return rv;
    }
    rv = egress_maildir_write(dir, message_id(m), buf_cstr(data), data->len,
                              EGRESS_MAILDIR_DIR_MODE, EGRESS_MAILDIR_FILE_MODE,
                              out_path);
    free(dir);
    return rv;
}

/* ---- Async ---- */

static void
egress_maildir_req_free(struct egress_maildir_req *req)
{
    free(req->dir);
    free(req->id);
    free(req->host);
    free(req->data);
    free(req->final_path);
    free(req);
}

/* Pool thread: only the request struct. */
static void
egress_maildir_on_work(uv_work_t *w)
{
    struct egress_maildir_req *req = w->data;

    req->status = egress_maildir_write_host(
        req->dir, req->id, req->host, req->data, req->len,
        EGRESS_MAILDIR_DIR_MODE, EGRESS_MAILDIR_FILE_MODE, &req->final_path);
}

static void
egress_maildir_on_done(uv_work_t *w, int status)
{
    struct egress_maildir_req *req = w->data;

    if (status != 0) {
        req->status = status; /* UV_ECANCELED: never ran */
    }
    req->cb(req->arg, req->status, req->status == 0 ? req->final_path : NULL);
    egress_maildir_req_free(req);
}

int
egress_maildir_deliver_async(uv_loop_t *loop, const char *path, const char *id,
                             const struct buf *data, egress_maildir_cb cb,
                             void *arg)
{
    struct egress_maildir_req *req = km_calloc(1, sizeof(*req));
    int rv;

    req->work.data = req;
    req->dir = km_strdup(path);
    req->id = km_strdup(id);
    req->host = km_strdup(km_hostname());
    req->len = data->len;
    req->data = km_memdup(buf_cstr(data), data->len + 1);
    req->cb = cb;
    req->arg = arg;
    rv = uv_queue_work(loop, &req->work, egress_maildir_on_work,
                       egress_maildir_on_done);
    if (rv != 0) {
        goto err_after_req;
    }
    return 0;

err_after_req:
    egress_maildir_req_free(req);
    return rv;
}
