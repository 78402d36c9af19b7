/* dkim.c - DKIM signers, their caches, and the signing of messages on the
 * libuv pool (see dkim.h). OpenSSL 3 does the hashing and the RSA and
 * Ed25519 signatures; dkim_canon.c the text. Caches, reference counts and
 * metrics are touched on the loop thread only; the pool's work function
 * reads immutable signers and the message bytes, and writes only its
 * request. */
#include "dkim.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "base/buf.h"
#include "base/km.h"
#include "base/km_map.h"
#include "base/log.h"
#include "dkim_canon.h"
#include "dkim_int.h"
#include "message.h"
#include "metrics.h"
#include "policy.h"

/* KumoMTA's default capacity of each cache. */
#define DKIM_CACHE_CAPACITY 1024
/* Where a DKIM-Signature line is folded. */
#define DKIM_FOLD_COLUMN 76

struct dkim_cache_ent {
    void *obj; /* struct dkim_signer * or EVP_PKEY *, one reference */
    uint64_t expires_ms;
};

struct dkim_ctx {
    uv_loop_t *loop;
    struct metrics *metrics;
    struct km_map *signers; /* sha256 of params -> dkim_cache_ent */
    struct km_map *keys;    /* algorithm:source -> dkim_cache_ent */
    double sign_seconds;    /* dkim_signer_sign_sum */
};

struct dkim_signer {
    unsigned refs; /* loop thread only */
    bool ed25519;
    EVP_PKEY *pkey;
    char *domain, *selector, *auid, *atps, *atpsh;
    char **headers;
    size_t n_headers;
    enum dkim_canon hc, bc;
    bool over_sign, reporting;
    int64_t expiration; /* seconds; 0: no x= tag */
};

static void
dkim_hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---- caches -------------------------------------------------------- */

static void
dkim_cache_drop(struct km_map *m, const char *key, bool signer)
{
    struct dkim_cache_ent *e = NULL;

    if (km_map_remove(m, key, (void **)&e) && e != NULL) {
        if (signer) {
            dkim_signer_unref(e->obj);
        } else {
            EVP_PKEY_free(e->obj);
        }
        free(e);
    }
}

/* Keep a cache under its capacity: drop expired entries, then, if that
 * was not enough, everything (held signers stay valid by reference). */
static void
dkim_cache_make_room(struct km_map *m, bool signer, uint64_t now)
{
    struct km_map_iter it;
    const char *k;
    void *v;

    if (km_map_count(m) < DKIM_CACHE_CAPACITY) {
        return;
    }
    for (int pass = 0; pass < 2; pass++) {
        km_map_iter_init(&it, m);
        while (km_map_iter_next(&it, &k, &v)) {
            struct dkim_cache_ent *e = v;
            if (pass == 1 || e->expires_ms <= now) {
                dkim_cache_drop(m, k, signer);
            }
        }
        if (km_map_count(m) < DKIM_CACHE_CAPACITY) {
            return;
        }
    }
}

static void
dkim_cache_put(struct km_map *m, const char *key, void *obj, bool signer,
               uint64_t expires)
{
    struct dkim_cache_ent *e = km_calloc(1, sizeof(*e));

    dkim_cache_drop(m, key, signer);
    dkim_cache_make_room(m, signer, km_now_mono_ms());
    e->obj = obj;
    e->expires_ms = expires;
    km_map_put(m, key, e, NULL);
}

static void
dkim_cache_free(struct km_map *m, bool signer)
{
    struct km_map_iter it;
    const char *k;
    void *v;

    if (m == NULL) {
        return;
    }
    km_map_iter_init(&it, m);
    while (km_map_iter_next(&it, &k, &v)) {
        dkim_cache_drop(m, k, signer);
    }
    km_map_free(m);
}

int
dkim_ctx_new(uv_loop_t *loop, struct metrics *metrics, struct dkim_ctx **out)
{
    struct dkim_ctx *ctx = km_calloc(1, sizeof(*ctx));

    ctx->loop = loop;
    ctx->metrics = metrics;
    ctx->signers = km_map_new();
    ctx->keys = km_map_new();
    *out = ctx;
    return 0;
}

void
dkim_ctx_free(struct dkim_ctx *ctx)
{
    if (ctx == NULL) {
        return;
    }
    dkim_cache_free(ctx->signers, true);
    dkim_cache_free(ctx->keys, false);
    free(ctx);
}

static void
dkim_count(struct dkim_ctx *ctx, const char *name, const char *help,
           const char *label, const char *value)
{
    if (ctx->metrics != NULL) {
        metrics_inc(ctx->metrics, name, help, label, value, 1);
    }
}

/* The key of `params` from the key cache, or loaded into it. The caller
 * owns one reference to *out (EVP_PKEY_free). */
static int
dkim_key_get(struct dkim_ctx *ctx, const json_t *key, bool ed25519,
             uint64_t ttl_ms, EVP_PKEY **out, char *err, size_t errlen)
{
    const char *file = json_string_value(json_object_get(key, "file"));
    const json_t *data = json_object_get(key, "data");
    uint64_t now = km_now_mono_ms();
    char ck[PATH_MAX + 80];
    struct dkim_cache_ent *e;
    struct buf bytes = BUF_INIT;
    void *pk = NULL;
    int rv;

    if (file != NULL) {
        snprintf(ck, sizeof(ck), "%s:file:%s", ed25519 ? "ed" : "rsa", file);
    } else if (json_is_string(data)) {
        unsigned char md[SHA256_DIGEST_LENGTH];
        char hex[2 * SHA256_DIGEST_LENGTH + 1];
        SHA256((const unsigned char *)json_string_value(data),
               json_string_length(data), md);
        dkim_hex(md, sizeof(md), hex);
        snprintf(ck, sizeof(ck), "%s:data:%s", ed25519 ? "ed" : "rsa", hex);
    } else {
        snprintf(err, errlen, "key: must be a file name or {key_data=...}");
        return KM_EINVAL;
    }
    e = km_map_get(ctx->keys, ck);
    if (e != NULL && e->expires_ms > now) {
        dkim_count(ctx, "dkim_key_cache_hit",
                   "how many dkim key lookups hit the cache", NULL, NULL);
        EVP_PKEY_up_ref(e->obj);
        *out = e->obj;
        return 0;
    }
    dkim_count(ctx, "dkim_key_cache_miss",
               "how many dkim key lookups loaded and parsed the key", NULL,
               NULL);
    if (file != NULL) {
        char what[PATH_MAX + 8];
        rv = dkim_key_read_file(file, &bytes, err, errlen);
        if (rv == 0) {
            snprintf(what, sizeof(what), "file '%s'", file);
            rv = dkim_key_parse(bytes.data, bytes.len, ed25519, what, &pk, err,
                                errlen);
        }
    } else {
        rv = dkim_key_parse(json_string_value(data), json_string_length(data),
                            ed25519, "key_data", &pk, err, errlen);
    }
    buf_fini(&bytes);
    if (rv != 0) {
        return rv;
    }
    EVP_PKEY_up_ref(pk);
    dkim_cache_put(ctx->keys, ck, pk, false, now + ttl_ms);
    *out = pk;
    return 0;
}

static char *
dkim_opt_dup(const json_t *params, const char *name)
{
    const char *s = json_string_value(json_object_get(params, name));

    return s != NULL ? km_strdup(s) : NULL;
}

static enum dkim_canon
dkim_canon_of(const json_t *params, const char *name)
{
    const char *s = json_string_value(json_object_get(params, name));

    return s != NULL && strcasecmp(s, "simple") == 0 ? DKIM_CANON_SIMPLE
                                                     : DKIM_CANON_RELAXED;
}

/* Build a signer from validated params (policy_dkim.c checked types). */
static int
dkim_signer_build(struct dkim_ctx *ctx, const json_t *params, uint64_t ttl_ms,
                  struct dkim_signer **out, char *err, size_t errlen)
{
    const char *alg = json_string_value(json_object_get(params, "algorithm"));
    const json_t *hdrs = json_object_get(params, "headers");
    struct dkim_signer *s;
    int rv;

    if (alg == NULL ||
        json_string_value(json_object_get(params, "domain")) == NULL ||
        json_string_value(json_object_get(params, "selector")) == NULL ||
        !json_is_array(hdrs) || json_array_size(hdrs) == 0) {
        snprintf(err, errlen,
                 "algorithm, domain, selector and headers are "
                 "required");
        return KM_EINVAL;
    }
    s = km_calloc(1, sizeof(*s));
    s->refs = 1;
    s->ed25519 = strcmp(alg, "ed25519-sha256") == 0;
    rv = dkim_key_get(ctx, json_object_get(params, "key"), s->ed25519, ttl_ms,
                      &s->pkey, err, errlen);
    if (rv != 0) {
        free(s);
        return rv;
    }
    s->domain = dkim_opt_dup(params, "domain");
    s->selector = dkim_opt_dup(params, "selector");
    s->auid = dkim_opt_dup(params, "agent_user_identifier");
    s->atps = dkim_opt_dup(params, "atps");
    s->atpsh = dkim_opt_dup(params, "atpsh");
    s->n_headers = json_array_size(hdrs);
    s->headers = km_calloc(s->n_headers, sizeof(*s->headers));
    for (size_t i = 0; i < s->n_headers; i++) {
        const char *h = json_string_value(json_array_get(hdrs, i));
        s->headers[i] = km_strdup(h != NULL ? h : "");
    }
    s->hc = dkim_canon_of(params, "header_canonicalization");
    s->bc = dkim_canon_of(params, "body_canonicalization");
    s->over_sign = json_is_true(json_object_get(params, "over_sign"));
    s->reporting = json_is_true(json_object_get(params, "reporting"));
    s->expiration = json_integer_value(json_object_get(params, "expiration"));
    *out = s;
    return 0;
}

int
dkim_signer_get(struct dkim_ctx *ctx, const json_t *params,
                struct dkim_signer **out, char *err, size_t errlen)
{
    json_int_t ttl = json_integer_value(json_object_get(params, "ttl"));
    uint64_t ttl_ms = ttl > 0 ? (uint64_t)ttl * 1000u : 0;
    uint64_t now = km_now_mono_ms();
    unsigned char md[SHA256_DIGEST_LENGTH];
    char key[2 * SHA256_DIGEST_LENGTH + 1];
    struct dkim_cache_ent *e;
    struct dkim_signer *s;
    char *text;
    int rv;

    /* The cache key: every parameter, ttl included, as KumoMTA does. */
    text = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL) {
        snprintf(err, errlen, "cannot encode the parameters");
        return KM_EINVAL;
    }
    SHA256((const unsigned char *)text, strlen(text), md);
    free(text);
    dkim_hex(md, sizeof(md), key);
    dkim_count(ctx, "dkim_signer_cache_lookup_count",
               "how many dkim signer requests looked in the cache", NULL, NULL);
    e = km_map_get(ctx->signers, key);
    if (e != NULL && e->expires_ms > now) {
        dkim_count(ctx, "dkim_signer_cache_hit",
                   "how many dkim signer requests hit the cache", NULL, NULL);
        s = e->obj;
        s->refs++;
        *out = s;
        return 0;
    }
    dkim_count(ctx, "dkim_signer_cache_miss",
               "how many dkim signer requests missed the cache", NULL, NULL);
    rv = dkim_signer_build(ctx, params, ttl_ms, &s, err, errlen);
    if (rv != 0) {
        dkim_count(ctx, "dkim_signer_creation_failed",
                   "dkim signers that could not be built (key missing, "
                   "unreadable or invalid): no signature was made",
                   NULL, NULL);
        return rv;
    }
    if (ttl_ms > 0) {
        s->refs++;
        dkim_cache_put(ctx->signers, key, s, true, now + ttl_ms);
    }
    *out = s;
    return 0;
}

void
dkim_signer_ref(struct dkim_signer *s)
{
    s->refs++;
}

void
dkim_signer_unref(struct dkim_signer *s)
{
    if (s == NULL) {
        return;
    }
    KM_ASSERT(s->refs > 0);
    if (--s->refs > 0) {
        return;
    }
    EVP_PKEY_free(s->pkey);
    free(s->domain);
    free(s->selector);
    free(s->auid);
    free(s->atps);
    free(s->atpsh);
    for (size_t i = 0; i < s->n_headers; i++) {
        free(s->headers[i]);
    }
    free(s->headers);
    free(s);
}

/* ---- signing ------------------------------------------------------- */

static void
dkim_on_digest(void *arg, const char *p, size_t n)
{
    EVP_DigestUpdate(arg, p, n);
}

void
dkim_body_hash(enum dkim_canon c, const char *body, size_t n, char b64[45])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *mc = EVP_MD_CTX_new();

    KM_ASSERT(mc != NULL);
    EVP_DigestInit_ex(mc, EVP_sha256(), NULL);
    dkim_canon_body(c, body, n, dkim_on_digest, mc);
    EVP_DigestFinal_ex(mc, md, &mdlen);
    EVP_MD_CTX_free(mc);
    EVP_EncodeBlock((unsigned char *)b64, md, (int)mdlen);
}

static int
dkim_ssl_error(const char *what, char *err, size_t errlen)
{
    unsigned long e = ERR_get_error();
    char text[160];

    ERR_error_string_n(e, text, sizeof(text));
    ERR_clear_error();
    snprintf(err, errlen, "%s: %s", what, text);
    return KM_EIO;
}

int
dkim_sign_fields(const void *key, bool ed25519, enum dkim_canon hc,
                 const char *hdrs, size_t hlen, const char *const *names,
                 size_t n_names, const char *sig_field, size_t sig_len,
                 struct buf *b64, char *err, size_t errlen)
{
    EVP_PKEY *pk = (EVP_PKEY *)(uintptr_t)key;
    struct dkim_field *f = NULL;
    const struct dkim_field **sel;
    struct buf in = BUF_INIT;
    unsigned char sig[1024];
    size_t siglen = sizeof(sig), body_off, nf;
    EVP_MD_CTX *mc;
    int rv = 0;

    nf = dkim_fields_split(hdrs, hlen, &f, &body_off);
    sel = km_calloc(n_names ? n_names : 1, sizeof(*sel));
    dkim_fields_select(f, nf, names, n_names, sel);
    for (size_t i = 0; i < n_names; i++) {
        if (sel[i] != NULL) {
            dkim_canon_header(hc, sel[i]->p, sel[i]->len, true, &in);
        }
    }
    /* RFC 6376 3.7: the signature field itself, b= empty, no CRLF. */
    dkim_canon_header(hc, sig_field, sig_len, false, &in);
    free(sel);
    free(f);

    mc = EVP_MD_CTX_new();
    KM_ASSERT(mc != NULL);
    if (ed25519) {
        /* RFC 8463 3: Ed25519 (pure) over the SHA-256 of the data. */
        unsigned char md[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)in.data, in.len, md);
        if (EVP_DigestSignInit(mc, NULL, NULL, NULL, pk) != 1 ||
            EVP_DigestSign(mc, sig, &siglen, md, sizeof(md)) != 1) {
            rv = dkim_ssl_error("Ed25519 signature", err, errlen);
        }
    } else if (EVP_DigestSignInit(mc, NULL, EVP_sha256(), NULL, pk) != 1 ||
               EVP_DigestSignUpdate(mc, in.data, in.len) != 1 ||
               EVP_DigestSignFinal(mc, NULL, &siglen) != 1 ||
               siglen > sizeof(sig) ||
               EVP_DigestSignFinal(mc, sig, &siglen) != 1) {
        rv = dkim_ssl_error("RSA-SHA256 signature", err, errlen);
    }
    EVP_MD_CTX_free(mc);
    buf_fini(&in);
    if (rv == 0) {
        char out[((sizeof(sig) + 2) / 3) * 4 + 1];
        int n = EVP_EncodeBlock((unsigned char *)out, sig, (int)siglen);
        buf_append(b64, out, (size_t)n);
    }
    return rv;
}

/* Append `piece` to the field being built, folding first if it would pass
 * DKIM_FOLD_COLUMN; `space` puts a SP before it when not folded. */
static void
dkim_fold_put(struct buf *b, size_t *col, const char *piece, bool space)
{
    size_t n = strlen(piece);

    if (*col + n + (space ? 1 : 0) > DKIM_FOLD_COLUMN && *col > 1) {
        buf_append(b, "\r\n\t", 3);
        *col = 1;
    } else if (space) {
        buf_append_char(b, ' ');
        (*col)++;
    }
    buf_append(b, piece, n);
    *col += n;
}

/* The DKIM-Signature field of `s` through its empty "b=". */
static void
dkim_build_field(const struct dkim_signer *s, const char *const *names,
                 size_t n_names, const char *bh, int64_t now, struct buf *b,
                 size_t *col)
{
    char tag[600]; /* names <= 128, i= <= 320, domains <= 253 */

    buf_append_str(b, "DKIM-Signature:");
    *col = 15;
    dkim_fold_put(b, col, "v=1;", true);
    dkim_fold_put(b, col, s->ed25519 ? "a=ed25519-sha256;" : "a=rsa-sha256;",
                  true);
    snprintf(tag, sizeof(tag), "c=%s/%s;",
             s->hc == DKIM_CANON_SIMPLE ? "simple" : "relaxed",
             s->bc == DKIM_CANON_SIMPLE ? "simple" : "relaxed");
    dkim_fold_put(b, col, tag, true);
    snprintf(tag, sizeof(tag), "d=%s;", s->domain);
    dkim_fold_put(b, col, tag, true);
    snprintf(tag, sizeof(tag), "s=%s;", s->selector);
    dkim_fold_put(b, col, tag, true);
    if (s->auid != NULL) {
        snprintf(tag, sizeof(tag), "i=%s;", s->auid);
        dkim_fold_put(b, col, tag, true);
    }
    if (s->atps != NULL) {
        /* RFC 6541 4.1: atpsh= goes with atps=. */
        snprintf(tag, sizeof(tag), "atps=%s;", s->atps);
        dkim_fold_put(b, col, tag, true);
        snprintf(tag, sizeof(tag), "atpsh=%s;",
                 s->atpsh != NULL ? s->atpsh : "sha256");
        dkim_fold_put(b, col, tag, true);
    }
    if (s->reporting) {
        /* RFC 6651 3.1: the signer asks for failure reports. */
        dkim_fold_put(b, col, "r=y;", true);
    }
    snprintf(tag, sizeof(tag), "t=%lld;", (long long)now);
    dkim_fold_put(b, col, tag, true);
    if (s->expiration > 0) {
        snprintf(tag, sizeof(tag), "x=%lld;", (long long)(now + s->expiration));
        dkim_fold_put(b, col, tag, true);
    }
    /* h= folds after a colon (RFC 6376 3.5: FWS around the colons). */
    for (size_t i = 0; i < n_names; i++) {
        snprintf(tag, sizeof(tag), "%s%s%s", i == 0 ? "h=" : "", names[i],
                 i + 1 < n_names ? ":" : ";");
        dkim_fold_put(b, col, tag, i == 0);
    }
    snprintf(tag, sizeof(tag), "bh=%s;", bh);
    dkim_fold_put(b, col, tag, true);
    dkim_fold_put(b, col, "b=", true);
}

int
dkim_sign_data(struct dkim_signer *const *signers, size_t n, const char *data,
               size_t len, int64_t now, struct buf *out, char *err,
               size_t errlen)
{
    struct dkim_field *f = NULL;
    size_t body_off, orig_hdr_len;
    struct buf hb = BUF_INIT; /* the header block, signatures prepended */
    char bh[2][45];
    bool have_bh[2] = {false, false};
    int rv = 0;

    (void)dkim_fields_split(data, len, &f, &body_off);
    free(f);
    f = NULL;
    orig_hdr_len = body_off;
    buf_append(&hb, data, body_off);
    for (size_t i = 0; i < n && rv == 0; i++) {
        const struct dkim_signer *s = signers[i];
        const char *const *names = (const char *const *)s->headers;
        const char **expanded = NULL;
        size_t n_names = s->n_headers, nf, hb_body, col;
        struct buf field = BUF_INIT, sig = BUF_INIT;

        if (!have_bh[s->bc]) {
            dkim_body_hash(s->bc, data + body_off, len - body_off, bh[s->bc]);
            have_bh[s->bc] = true;
        }
        if (s->over_sign) {
            nf = dkim_fields_split(hb.data, hb.len, &f, &hb_body);
            n_names =
                dkim_names_oversign(f, nf, names, s->n_headers, &expanded);
            names = expanded;
            free(f);
            f = NULL;
        }
        dkim_build_field(s, names, n_names, bh[s->bc], now, &field, &col);
        rv =
            dkim_sign_fields(s->pkey, s->ed25519, s->hc, hb.data, hb.len, names,
                             n_names, field.data, field.len, &sig, err, errlen);
        if (rv == 0) {
            /* The base64 value, folded where the line would pass the
             * column (the verifier drops all of b='s whitespace). */
            for (size_t off = 0; off < sig.len;) {
                size_t room =
                    col < DKIM_FOLD_COLUMN ? DKIM_FOLD_COLUMN - col : 0;
                if (room == 0) {
                    buf_append(&field, "\r\n\t", 3);
                    col = 1;
                    continue;
                }
                size_t take = sig.len - off < room ? sig.len - off : room;
                buf_append(&field, sig.data + off, take);
                off += take;
                col += take;
            }
            buf_append(&field, "\r\n", 2);
            buf_splice(&hb, 0, 0, field.data, field.len);
        }
        free(expanded);
        buf_fini(&field);
        buf_fini(&sig);
    }
    if (rv == 0) {
        buf_append(out, hb.data, hb.len - orig_hdr_len);
    }
    buf_fini(&hb);
    return rv;
}

/* ---- messages at ingest -------------------------------------------- */

/* Does data have a CR or LF that is not part of a CRLF? */
static bool
dkim_has_bare_eol(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r' && (i + 1 == n || p[i + 1] != '\n')) {
            return true;
        }
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) {
            return true;
        }
    }
    return false;
}

/* Copy data to out with every bare CR or LF made a CRLF. */
static void
dkim_to_crlf(const char *p, size_t n, struct buf *out)
{
    size_t start = 0;

    buf_reserve(out, n + n / 32 + 2);
    for (size_t i = 0; i < n; i++) {
        bool crlf = p[i] == '\r' && i + 1 < n && p[i + 1] == '\n';
        if (crlf) {
            i++;
            continue;
        }
        if (p[i] == '\r' || p[i] == '\n') {
            buf_append(out, p + start, i - start);
            buf_append(out, "\r\n", 2);
            start = i + 1;
        }
    }
    buf_append(out, p + start, n - start);
}

struct dkim_work {
    uv_work_t req;
    struct dkim_ctx *ctx;
    struct message *msg;          /* one reference */
    struct dkim_signer **signers; /* one reference each */
    size_t n;
    const char *data; /* the message's bytes, unchanged while we work */
    size_t len;
    int64_t now;
    struct buf out;
    struct buf crlf; /* the data with bare CR/LF made CRLF, if it had any */
    bool fixed;
    int status;
    double seconds;
    char err[256];
    dkim_sign_cb cb;
    void *arg;
};

static void
dkim_on_work(uv_work_t *req)
{
    struct dkim_work *w = req->data;
    struct timespec a, b;

    clock_gettime(CLOCK_MONOTONIC, &a);
    /* RFC 6376 5.3: sign the CRLF form, and send that form: a receiver
     * would turn bare line ends into CRLF and break the signature. */
    if (dkim_has_bare_eol(w->data, w->len)) {
        dkim_to_crlf(w->data, w->len, &w->crlf);
        w->fixed = true;
        w->data = w->crlf.data;
        w->len = w->crlf.len;
    }
    w->status = dkim_sign_data(w->signers, w->n, w->data, w->len, w->now,
                               &w->out, w->err, sizeof(w->err));
    clock_gettime(CLOCK_MONOTONIC, &b);
    w->seconds =
        (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

static void
dkim_on_work_done(uv_work_t *req, int status)
{
    struct dkim_work *w = req->data;
    struct dkim_ctx *ctx = w->ctx;

    if (status != 0 && w->status == 0) {
        w->status = status;
        snprintf(w->err, sizeof(w->err), "%s", km_strerror(status));
    }
    for (size_t i = 0; i < w->n; i++) {
        const char *alg =
            w->signers[i]->ed25519 ? "ed25519-sha256" : "rsa-sha256";
        if (w->status == 0) {
            dkim_count(ctx, "dkim_signatures_made",
                       "DKIM signatures added to messages", "algorithm", alg);
        } else {
            dkim_count(ctx, "dkim_signatures_failed",
                       "DKIM signatures that could not be made (the message "
                       "was refused with a 4xx)",
                       "algorithm", alg);
        }
        dkim_signer_unref(w->signers[i]);
    }
    if (w->status == 0 && w->fixed) {
        struct buf *d = message_data(w->msg);
        buf_reset(d);
        buf_append(d, w->out.data, w->out.len);
        buf_append(d, w->crlf.data, w->crlf.len);
    } else if (w->status == 0) {
        buf_splice(message_data(w->msg), 0, 0, w->out.data, w->out.len);
    }
    if (w->status == 0) {
        if (ctx->metrics != NULL) {
            ctx->sign_seconds += w->seconds;
            metrics_inc(ctx->metrics, "dkim_signer_sign_count",
                        "messages DKIM signed (all their signatures)", NULL,
                        NULL, 1);
            metrics_set(ctx->metrics, "dkim_signer_sign_sum",
                        "seconds spent DKIM signing messages, on the pool",
                        NULL, NULL, ctx->sign_seconds);
        }
    } else {
        LOG_ERROR("dkim: %s: cannot sign, message refused: %s",
                  message_id(w->msg), w->err);
        w->status = KM_EIO;
    }
    w->cb(w->arg, w->status);
    message_unref(w->msg);
    buf_fini(&w->out);
    buf_fini(&w->crlf);
    free(w->signers);
    free(w);
}

void
dkim_sign_message(struct dkim_ctx *ctx, struct message *msg, dkim_sign_cb cb,
                  void *arg)
{
    struct dkim_signer *const *list;
    size_t n = message_dkim_signers(msg, &list);
    const struct buf *data = message_data_c(msg);
    struct dkim_work *w;
    int rv;

    if (n == 0) {
        cb(arg, 0);
        return;
    }
    w = km_calloc(1, sizeof(*w));
    w->req.data = w;
    w->ctx = ctx;
    w->msg = msg;
    message_ref(msg);
    w->signers = km_calloc(n, sizeof(*w->signers));
    for (size_t i = 0; i < n; i++) {
        w->signers[i] = list[i];
        dkim_signer_ref(list[i]);
    }
    w->n = n;
    message_clear_dkim_signers(msg);
    w->data = buf_cstr(data);
    w->len = data->len;
    w->now = km_now_wall_ms() / 1000;
    w->cb = cb;
    w->arg = arg;
    rv = uv_queue_work(ctx->loop, &w->req, dkim_on_work, dkim_on_work_done);
    if (rv != 0) {
        w->status = rv;
        snprintf(w->err, sizeof(w->err), "uv_queue_work: %s", uv_strerror(rv));
        dkim_on_work_done(&w->req, 0);
    }
}

/* ---- policy host table --------------------------------------------- */

static int
dkim_op_signer_get(void *ctx, const json_t *params, void **out, char *err,
                   size_t errlen)
{
    return dkim_signer_get(ctx, params, (struct dkim_signer **)out, err,
                           errlen);
}

static void
dkim_op_signer_unref(void *signer)
{
    dkim_signer_unref(signer);
}

void
dkim_message_add_signer(struct message *m, struct dkim_signer *s)
{
    dkim_signer_ref(s);
    message_add_dkim_signer(m, s, dkim_signer_unref);
}

static void
dkim_op_sign(void *ctx, void *msg, void *signer)
{
    (void)ctx;
    dkim_message_add_signer(msg, signer);
}

void
dkim_policy_ops(struct dkim_ctx *ctx, struct policy_dkim_ops *ops)
{
    ops->ctx = ctx;
    ops->signer_get = dkim_op_signer_get;
    ops->signer_unref = dkim_op_signer_unref;
    ops->sign = dkim_op_sign;
}
