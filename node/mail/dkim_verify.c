/* dkim_verify.c - check a DKIM signature against its key record (see
 * dkim_verify.h): tag-list parsing (RFC 6376 3.2), the key record (3.6.1),
 * the body hash with an optional l= (3.7), the header hash with b=
 * emptied, and the RSA-SHA256 or Ed25519-SHA256 (RFC 8463) check. Keys
 * under 1024 bits and rsa-sha1 are not accepted (RFC 8301). */
#include "dkim_verify.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "base/buf.h"
#include "base/km.h"
#include "dkim_canon.h"

#define DKIM_VERIFY_MAX_TAGS 32

struct dkim_tags {
    struct buf text; /* the unfolded tag-list; values point into it */
    const char *name[DKIM_VERIFY_MAX_TAGS];
    const char *value[DKIM_VERIFY_MAX_TAGS];
    size_t n;
};

static bool
dkim_verify_is_fws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Parse "name=value; ..." into tags (names and values trimmed). Returns
 * false on a malformed or duplicate tag. */
static bool
dkim_tags_parse(const char *p, size_t n, struct dkim_tags *t)
{
    char *s, *save = NULL, *piece;

    buf_init(&t->text);
    t->n = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\r' && p[i] != '\n') {
            buf_append_char(&t->text, p[i]);
        }
    }
    buf_append_char(&t->text, '\0');
    s = t->text.data;
    for (piece = strtok_r(s, ";", &save); piece != NULL;
         piece = strtok_r(NULL, ";", &save)) {
        char *eq, *end;
        while (dkim_verify_is_fws(*piece)) {
            piece++;
        }
        if (*piece == '\0') {
            continue; /* a trailing ';' */
        }
        eq = strchr(piece, '=');
        if (eq == NULL || t->n == DKIM_VERIFY_MAX_TAGS) {
            return false;
        }
        end = eq;
        while (end > piece && dkim_verify_is_fws(end[-1])) {
            end--;
        }
        *end = '\0';
        eq++;
        while (dkim_verify_is_fws(*eq)) {
            eq++;
        }
        end = eq + strlen(eq);
        while (end > eq && dkim_verify_is_fws(end[-1])) {
            *--end = '\0';
        }
        for (size_t k = 0; k < t->n; k++) {
            if (strcmp(t->name[k], piece) == 0) {
                return false; /* RFC 6376 3.2: duplicate tag */
            }
        }
        t->name[t->n] = piece;
        t->value[t->n] = eq;
        t->n++;
    }
    return true;
}

static const char *
dkim_tag(const struct dkim_tags *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->name[i], name) == 0) {
            return t->value[i];
        }
    }
    return NULL;
}

/* Base64 with any white space in it, decoded into out. */
static bool
dkim_b64_decode(const char *s, struct buf *out)
{
    struct buf clean = BUF_INIT;
    size_t pad = 0;
    int n;

    for (; *s; s++) {
        if (!dkim_verify_is_fws(*s)) {
            buf_append_char(&clean, *s);
        }
    }
    if (clean.len == 0 || clean.len % 4 != 0) {
        buf_fini(&clean);
        return false;
    }
    pad =
        (clean.data[clean.len - 1] == '=') + (clean.data[clean.len - 2] == '=');
    buf_reserve(out, clean.len);
    n = EVP_DecodeBlock((unsigned char *)out->data,
                        (const unsigned char *)clean.data, (int)clean.len);
    buf_fini(&clean);
    if (n < 0 || (size_t)n < pad) {
        return false;
    }
    out->len = (size_t)n - pad;
    out->data[out->len] = '\0';
    return true;
}

static const struct dkim_field *
dkim_verify_field(const struct dkim_field *f, size_t nf, size_t idx)
{
    for (size_t i = 0; i < nf; i++) {
        if (dkim_field_is(&f[i], "DKIM-Signature") && idx-- == 0) {
            return &f[i];
        }
    }
    return NULL;
}

size_t
dkim_verify_count(const char *data, size_t len)
{
    struct dkim_field *f;
    size_t off, nf = dkim_fields_split(data, len, &f, &off), n = 0;

    for (size_t i = 0; i < nf; i++) {
        n += dkim_field_is(&f[i], "DKIM-Signature");
    }
    free(f);
    return n;
}

static void
dkim_verdict(struct dkim_verify_result *res, enum dkim_verdict v,
             const char *reason)
{
    res->verdict = v;
    snprintf(res->reason, sizeof(res->reason), "%s", reason);
}

/* Parse the tags of the field's value (after the colon). */
static bool
dkim_verify_sig_tags(const struct dkim_field *f, struct dkim_tags *t)
{
    const char *colon = memchr(f->p, ':', f->len);
    size_t skip = (size_t)(colon + 1 - f->p);

    return dkim_tags_parse(colon + 1, f->len - skip, t);
}

void
dkim_verify_names(const char *data, size_t len, size_t idx,
                  struct dkim_verify_result *res)
{
    struct dkim_field *f;
    size_t off, nf = dkim_fields_split(data, len, &f, &off);
    const struct dkim_field *sig = dkim_verify_field(f, nf, idx);
    struct dkim_tags t;
    const char *d, *s;

    memset(res, 0, sizeof(*res));
    dkim_verdict(res, DKIM_PERMERROR, "no such signature");
    if (sig != NULL) {
        if (!dkim_verify_sig_tags(sig, &t)) {
            dkim_verdict(res, DKIM_PERMERROR, "malformed tag list");
        } else if ((d = dkim_tag(&t, "d")) == NULL ||
                   (s = dkim_tag(&t, "s")) == NULL) {
            dkim_verdict(res, DKIM_PERMERROR, "d= or s= missing");
        } else {
            snprintf(res->d, sizeof(res->d), "%s", d);
            snprintf(res->s, sizeof(res->s), "%s", s);
            dkim_verdict(res, DKIM_PASS, "");
        }
        buf_fini(&t.text);
    }
    free(f);
}

/* The field with its b= value removed and no final CRLF (RFC 6376 3.7). */
static void
dkim_verify_strip_b(const struct dkim_field *f, struct buf *out)
{
    const char *p = f->p, *end = f->p + f->len;
    const char *colon = memchr(p, ':', f->len);
    const char *q = colon + 1;

    if (end - p >= 2 && end[-2] == '\r' && end[-1] == '\n') {
        end -= 2;
    }
    while (q < end) {
        const char *name = q, *name_end;
        while (name < end && dkim_verify_is_fws(*name)) {
            name++;
        }
        name_end = name;
        while (name_end < end && *name_end != '=' && *name_end != ';' &&
               !dkim_verify_is_fws(*name_end)) {
            name_end++;
        }
        const char *eq = name_end;
        while (eq < end && dkim_verify_is_fws(*eq)) {
            eq++;
        }
        const char *semi = memchr(q, ';', (size_t)(end - q));
        const char *vend = semi != NULL ? semi : end;
        if (name_end - name == 1 && *name == 'b' && eq < end && *eq == '=') {
            buf_append(out, p, (size_t)(eq + 1 - p));
            buf_append(out, vend, (size_t)(end - vend));
            return;
        }
        q = semi != NULL ? semi + 1 : end;
    }
    buf_append(out, p, (size_t)(end - p));
}

/* Body hash emitter with an l= limit. */
struct dkim_verify_body {
    EVP_MD_CTX *mc;
    uint64_t left; /* UINT64_MAX: no l= */
    uint64_t total;
};

static void
dkim_verify_on_body(void *arg, const char *p, size_t n)
{
    struct dkim_verify_body *b = arg;
    size_t take = n < b->left ? n : (size_t)b->left;

    b->total += n;
    EVP_DigestUpdate(b->mc, p, take);
    if (b->left != UINT64_MAX) {
        b->left -= take;
    }
}

/* The public key of a key record; NULL with the reason in res. */
static EVP_PKEY *
dkim_verify_key(const char *rec, size_t rec_len, bool ed25519,
                struct dkim_verify_result *res)
{
    struct dkim_tags t;
    struct buf der = BUF_INIT;
    const char *v, *k, *p, *h;
    EVP_PKEY *pk = NULL;

    if (!dkim_tags_parse(rec, rec_len, &t)) {
        dkim_verdict(res, DKIM_PERMERROR, "key record: malformed");
        goto out;
    }
    v = dkim_tag(&t, "v");
    k = dkim_tag(&t, "k");
    p = dkim_tag(&t, "p");
    h = dkim_tag(&t, "h");
    if (v != NULL && strcmp(v, "DKIM1") != 0) {
        dkim_verdict(res, DKIM_PERMERROR, "key record: v= is not DKIM1");
        goto out;
    }
    if ((k == NULL || strcmp(k, "rsa") == 0) == ed25519 ||
        (k != NULL && strcmp(k, "rsa") != 0 && strcmp(k, "ed25519") != 0)) {
        dkim_verdict(res, DKIM_PERMERROR,
                     "key record: k= does not match the signature's a=");
        goto out;
    }
    if (h != NULL && strstr(h, "sha256") == NULL) {
        dkim_verdict(res, DKIM_PERMERROR, "key record: h= excludes sha256");
        goto out;
    }
    if (p == NULL) {
        dkim_verdict(res, DKIM_PERMERROR, "key record: no p=");
        goto out;
    }
    if (*p == '\0') {
        dkim_verdict(res, DKIM_FAIL, "key revoked (empty p=)");
        goto out;
    }
    if (!dkim_b64_decode(p, &der)) {
        dkim_verdict(res, DKIM_PERMERROR, "key record: p= is not base64");
        goto out;
    }
    if (ed25519) {
        /* RFC 8463 4.2: the bare 32-byte key. */
        if (der.len == 32) {
            pk = EVP_PKEY_new_raw_public_key(
                EVP_PKEY_ED25519, NULL, (const unsigned char *)der.data, 32);
        }
    } else {
        const unsigned char *q = (const unsigned char *)der.data;
        pk = d2i_PUBKEY(NULL, &q, (long)der.len);
        if (pk == NULL) {
            /* Some records carry a PKCS#1 RSAPublicKey. */
            q = (const unsigned char *)der.data;
            pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &q, (long)der.len);
        }
        if (pk != NULL && (EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA ||
                           EVP_PKEY_get_bits(pk) < 1024)) {
            EVP_PKEY_free(pk);
            pk = NULL;
            dkim_verdict(res, DKIM_PERMERROR,
                         "key record: not an RSA key of 1024 bits or more "
                         "(RFC 8301)");
            goto out;
        }
    }
    if (pk == NULL) {
        dkim_verdict(res, DKIM_PERMERROR, "key record: p= is not a key");
    }
out:
    ERR_clear_error();
    buf_fini(&der);
    buf_fini(&t.text);
    return pk;
}

static bool
dkim_verify_canon(const char *c, enum dkim_canon *hc, enum dkim_canon *bc)
{
    char head[16] = "", body[16] = "";
    const char *slash;

    *hc = *bc = DKIM_CANON_SIMPLE;
    if (c == NULL) {
        return true;
    }
    slash = strchr(c, '/');
    snprintf(head, sizeof(head), "%.*s",
             (int)(slash != NULL ? (size_t)(slash - c) : strlen(c)), c);
    if (slash != NULL) {
        snprintf(body, sizeof(body), "%s", slash + 1);
    }
    if (strcmp(head, "relaxed") == 0) {
        *hc = DKIM_CANON_RELAXED;
    } else if (strcmp(head, "simple") != 0) {
        return false;
    }
    if (strcmp(body, "relaxed") == 0) {
        *bc = DKIM_CANON_RELAXED;
    } else if (body[0] != '\0' && strcmp(body, "simple") != 0) {
        return false;
    }
    return true;
}

/* Split h= on colons into names (pointers into a copy kept in *store). */
static size_t
dkim_verify_names_list(const char *h, struct buf *store, const char ***out)
{
    size_t n = 0, cap = 8;
    const char **names = km_calloc(cap, sizeof(*names));
    char *save = NULL, *tok;

    buf_append_str(store, h);
    buf_append_char(store, '\0');
    for (tok = strtok_r(store->data, ":", &save); tok != NULL;
         tok = strtok_r(NULL, ":", &save)) {
        char *end;
        while (dkim_verify_is_fws(*tok)) {
            tok++;
        }
        end = tok + strlen(tok);
        while (end > tok && dkim_verify_is_fws(end[-1])) {
            *--end = '\0';
        }
        if (n == cap) {
            cap *= 2;
            names = km_realloc(names, cap * sizeof(*names));
        }
        names[n++] = tok;
    }
    *out = names;
    return n;
}

void
dkim_verify_one(const char *data, size_t len, size_t idx, const char *rec,
                size_t rec_len, int64_t now, struct dkim_verify_result *res)
{
    struct dkim_field *f = NULL;
    size_t body_off, nf;
    const struct dkim_field *sig;
    struct dkim_tags t = {.text = BUF_INIT};
    struct buf hstore = BUF_INIT, in = BUF_INIT, sigbytes = BUF_INIT;
    const char **names = NULL;
    const char *a, *d, *s, *h, *bh, *b, *x, *l, *i;
    enum dkim_canon hc, bc;
    bool ed25519, from = false;
    size_t n_names = 0;
    EVP_PKEY *pk = NULL;

    dkim_verify_names(data, len, idx, res);
    if (res->verdict != DKIM_PASS) {
        return;
    }
    nf = dkim_fields_split(data, len, &f, &body_off);
    sig = dkim_verify_field(f, nf, idx);
    (void)dkim_verify_sig_tags(sig, &t);
    a = dkim_tag(&t, "a");
    d = dkim_tag(&t, "d");
    s = dkim_tag(&t, "s");
    h = dkim_tag(&t, "h");
    bh = dkim_tag(&t, "bh");
    b = dkim_tag(&t, "b");
    x = dkim_tag(&t, "x");
    l = dkim_tag(&t, "l");
    i = dkim_tag(&t, "i");
    snprintf(res->a, sizeof(res->a), "%s", a != NULL ? a : "");
    if (!dkim_tag(&t, "v") || strcmp(dkim_tag(&t, "v"), "1") != 0 || !a || !h ||
        !bh || !b) {
        dkim_verdict(res, DKIM_PERMERROR, "v=1, a=, h=, bh= or b= missing");
        goto out;
    }
    (void)d;
    (void)s;
    if (strcmp(a, "rsa-sha256") == 0) {
        ed25519 = false;
    } else if (strcmp(a, "ed25519-sha256") == 0) {
        ed25519 = true;
    } else {
        dkim_verdict(res, DKIM_PERMERROR,
                     strcmp(a, "rsa-sha1") == 0
                         ? "rsa-sha1 is not accepted (RFC 8301)"
                         : "unknown algorithm");
        goto out;
    }
    if (!dkim_verify_canon(dkim_tag(&t, "c"), &hc, &bc)) {
        dkim_verdict(res, DKIM_PERMERROR, "unknown canonicalization");
        goto out;
    }
    n_names = dkim_verify_names_list(h, &hstore, &names);
    for (size_t k = 0; k < n_names; k++) {
        from = from || strcasecmp(names[k], "from") == 0;
    }
    if (!from) {
        dkim_verdict(res, DKIM_PERMERROR, "h= does not include From");
        goto out;
    }
    if (i != NULL) {
        const char *at = strrchr(i, '@');
        size_t dl = strlen(res->d), il = at ? strlen(at + 1) : 0;
        if (at == NULL || il < dl ||
            strcasecmp(at + 1 + il - dl, res->d) != 0 ||
            (il > dl && at[1 + il - dl - 1] != '.')) {
            dkim_verdict(res, DKIM_PERMERROR, "i= is not within d=");
            goto out;
        }
    }
    if (x != NULL && now > strtoll(x, NULL, 10)) {
        dkim_verdict(res, DKIM_FAIL, "signature expired (x=)");
        goto out;
    }
    pk = dkim_verify_key(rec, rec_len, ed25519, res);
    if (pk == NULL) {
        goto out;
    }
    {
        /* bh=: the canonical body, up to l= octets if given. */
        struct dkim_verify_body vb = {
            EVP_MD_CTX_new(), l != NULL ? strtoull(l, NULL, 10) : UINT64_MAX,
            0};
        unsigned char md[EVP_MAX_MD_SIZE];
        struct buf want = BUF_INIT;
        unsigned int mdlen = 0;
        bool ok;

        KM_ASSERT(vb.mc != NULL);
        EVP_DigestInit_ex(vb.mc, EVP_sha256(), NULL);
        dkim_canon_body(bc, data + body_off, len - body_off,
                        dkim_verify_on_body, &vb);
        EVP_DigestFinal_ex(vb.mc, md, &mdlen);
        EVP_MD_CTX_free(vb.mc);
        ok = dkim_b64_decode(bh, &want) && want.len == mdlen &&
             memcmp(want.data, md, mdlen) == 0;
        buf_fini(&want);
        if (l != NULL && vb.total < strtoull(l, NULL, 10)) {
            dkim_verdict(res, DKIM_FAIL, "body shorter than l=");
            goto out;
        }
        if (!ok) {
            dkim_verdict(res, DKIM_FAIL, "body hash mismatch");
            goto out;
        }
    }
    {
        /* b=: the selected fields, then this field with b= emptied. */
        const struct dkim_field **sel =
            km_calloc(n_names ? n_names : 1, sizeof(*sel));
        struct buf stripped = BUF_INIT;
        EVP_MD_CTX *mc = EVP_MD_CTX_new();
        int ok;

        dkim_fields_select(f, nf, names, n_names, sel);
        for (size_t k = 0; k < n_names; k++) {
            if (sel[k] != NULL) {
                dkim_canon_header(hc, sel[k]->p, sel[k]->len, true, &in);
            }
        }
        free(sel);
        dkim_verify_strip_b(sig, &stripped);
        dkim_canon_header(hc, stripped.data, stripped.len, false, &in);
        buf_fini(&stripped);
        if (!dkim_b64_decode(b, &sigbytes)) {
            EVP_MD_CTX_free(mc);
            dkim_verdict(res, DKIM_PERMERROR, "b= is not base64");
            goto out;
        }
        KM_ASSERT(mc != NULL);
        if (ed25519) {
            unsigned char md[SHA256_DIGEST_LENGTH];
            SHA256((const unsigned char *)in.data, in.len, md);
            ok = EVP_DigestVerifyInit(mc, NULL, NULL, NULL, pk) == 1 &&
                 EVP_DigestVerify(mc, (const unsigned char *)sigbytes.data,
                                  sigbytes.len, md, sizeof(md)) == 1;
        } else {
            ok = EVP_DigestVerifyInit(mc, NULL, EVP_sha256(), NULL, pk) == 1 &&
                 EVP_DigestVerify(mc, (const unsigned char *)sigbytes.data,
                                  sigbytes.len, (const unsigned char *)in.data,
                                  in.len) == 1;
        }
        EVP_MD_CTX_free(mc);
        ERR_clear_error();
        dkim_verdict(res, ok ? DKIM_PASS : DKIM_FAIL,
                     ok ? "" : "signature mismatch");
    }
out:
    EVP_PKEY_free(pk);
    free(names);
    buf_fini(&hstore);
    buf_fini(&in);
    buf_fini(&sigbytes);
    buf_fini(&t.text);
    free(f);
}
