/* cluster_tls.c - mutual TLS sessions between members on memory BIOs.
 *
 * One SSL_CTX serves both directions: TLS 1.3 only (both ends are kumod),
 * the peer must present a certificate (SSL_VERIFY_FAIL_IF_NO_PEER_CERT)
 * that chains to the cluster CA and nothing else (no system roots). The
 * node id is checked by the caller once it knows which id the peer claims
 * (the raft handshake inside the tunnel, or the id it dialed), so a chain
 * that verifies is not yet enough. Files are re-read when their mtime or
 * size changes; a bad new file is logged by the caller and the old
 * context stays. */
#include "cluster_tls.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "base/km.h"

struct cluster_tls_stamp {
    int64_t mtime_ns;
    int64_t size;
};

/* Proofs already made, by receiver, until the next reload. */
#define CLUSTER_TLS_PROOF_CACHE 64

struct cluster_tls_proof {
    uint64_t to;
    struct buf bytes;
};

struct cluster_tls {
    char *ca, *cert, *key;
    struct cluster_tls_proof proofs[CLUSTER_TLS_PROOF_CACHE];
    size_t n_proofs;
    SSL_CTX *ctx;
    struct cluster_tls_stamp stamp[3];   /* of the files loaded */
    struct cluster_tls_stamp refused[3]; /* of a change that failed */
    int64_t expiry;
    uint64_t reloads;
};

struct cluster_tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    bool server;
    bool ready;
    char why[200];
    char subject[160];
};

/* Helpers */

static void
cluster_tls_ossl_err(char *buf, size_t n)
{
    unsigned long e = ERR_get_error();

    if (e == 0) {
        snprintf(buf, n, "unknown error");
    } else {
        ERR_error_string_n(e, buf, n);
    }
    ERR_clear_error();
}

static void
cluster_tls_stamps(const struct cluster_tls *tls, struct cluster_tls_stamp *s)
{
    const char *files[3] = {tls->ca, tls->cert, tls->key};

    for (int i = 0; i < 3; i++) {
        struct stat st;
        if (stat(files[i], &st) == 0) {
            s[i].mtime_ns =
                (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            s[i].size = (int64_t)st.st_size;
        } else {
            s[i].mtime_ns = -1;
            s[i].size = -1;
        }
    }
}

static int64_t
cluster_tls_asn1_time(const ASN1_TIME *t)
{
    struct tm tm;

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        return 0;
    }
    return (int64_t)timegm(&tm);
}

static int
cluster_tls_load(struct cluster_tls *tls, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    char why[160];
    X509 *leaf;

    if (ctx == NULL) {
        cluster_tls_ossl_err(why, sizeof(why));
        snprintf(err, errlen, "tls: %s", why);
        return KM_ECONFIG;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    if (SSL_CTX_load_verify_locations(ctx, tls->ca, NULL) != 1) {
        cluster_tls_ossl_err(why, sizeof(why));
        snprintf(err, errlen, "tls.ca: %s: %s", tls->ca, why);
        goto err_after_ctx;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, tls->cert) != 1) {
        cluster_tls_ossl_err(why, sizeof(why));
        snprintf(err, errlen, "tls.cert: %s: %s", tls->cert, why);
        goto err_after_ctx;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, tls->key, SSL_FILETYPE_PEM) != 1) {
        cluster_tls_ossl_err(why, sizeof(why));
        snprintf(err, errlen, "tls.key: %s: %s", tls->key, why);
        goto err_after_ctx;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "tls.key: %s does not match tls.cert %s",
                 tls->key, tls->cert);
        goto err_after_ctx;
    }
    leaf = SSL_CTX_get0_certificate(ctx);
    if (tls->ctx != NULL) {
        SSL_CTX_free(tls->ctx); /* sessions in progress hold a reference */
    }
    tls->ctx = ctx;
    tls->expiry = cluster_tls_asn1_time(X509_get0_notAfter(leaf));
    return 0;

err_after_ctx:
    SSL_CTX_free(ctx);
    return KM_ECONFIG;
}

static void
cluster_tls_drop_proofs(struct cluster_tls *tls)
{
    for (size_t i = 0; i < tls->n_proofs; i++) {
        buf_fini(&tls->proofs[i].bytes);
    }
    tls->n_proofs = 0;
}

/* Public: the files */

int
cluster_tls_new(const struct cluster_tls_files *f, struct cluster_tls **out,
                char *err, size_t errlen)
{
    struct cluster_tls *tls;
    int rv;

    if (f->ca == NULL || f->cert == NULL || f->key == NULL) {
        snprintf(err, errlen, "tls: %s is required",
                 f->ca == NULL     ? "ca"
                 : f->cert == NULL ? "cert"
                                   : "key");
        return KM_ECONFIG;
    }
    tls = km_calloc(1, sizeof(*tls));
    tls->ca = km_strdup(f->ca);
    tls->cert = km_strdup(f->cert);
    tls->key = km_strdup(f->key);
    cluster_tls_stamps(tls, tls->stamp);
    rv = cluster_tls_load(tls, err, errlen);
    if (rv != 0) {
        cluster_tls_free(tls);
        return rv;
    }
    *out = tls;
    return 0;
}

void
cluster_tls_free(struct cluster_tls *tls)
{
    if (tls == NULL) {
        return;
    }
    cluster_tls_drop_proofs(tls);
    SSL_CTX_free(tls->ctx);
    free(tls->ca);
    free(tls->cert);
    free(tls->key);
    free(tls);
}

int
cluster_tls_maybe_reload(struct cluster_tls *tls, char *err, size_t errlen)
{
    struct cluster_tls_stamp now[3];
    int rv;

    cluster_tls_stamps(tls, now);
    if (memcmp(now, tls->stamp, sizeof(now)) == 0 ||
        memcmp(now, tls->refused, sizeof(now)) == 0) {
        return 0;
    }
    rv = cluster_tls_load(tls, err, errlen);
    if (rv != 0) {
        memcpy(tls->refused, now, sizeof(now));
        return rv;
    }
    memcpy(tls->stamp, now, sizeof(now));
    tls->reloads++;
    cluster_tls_drop_proofs(tls); /* they carry the old certificate */
    return 1;
}

void
cluster_tls_get_files(const struct cluster_tls *tls,
                      struct cluster_tls_files *out)
{
    out->ca = tls->ca;
    out->cert = tls->cert;
    out->key = tls->key;
}

int64_t
cluster_tls_cert_expiry(const struct cluster_tls *tls)
{
    return tls->expiry;
}

uint64_t
cluster_tls_reloads(const struct cluster_tls *tls)
{
    return tls->reloads;
}

/* Public: sessions */

struct cluster_tls_conn *
cluster_tls_conn_new(struct cluster_tls *tls, bool server)
{
    struct cluster_tls_conn *c = km_calloc(1, sizeof(*c));

    c->ssl = SSL_new(tls->ctx);
    KM_ASSERT(c->ssl != NULL);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    KM_ASSERT(c->rbio != NULL && c->wbio != NULL);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    c->server = server;
    if (server) {
        SSL_set_accept_state(c->ssl);
    } else {
        SSL_set_connect_state(c->ssl);
    }
    return c;
}

void
cluster_tls_conn_free(struct cluster_tls_conn *c)
{
    if (c == NULL) {
        return;
    }
    SSL_free(c->ssl);
    free(c);
}

static void
cluster_tls_drain(struct cluster_tls_conn *c, struct buf *cipher)
{
    char tmp[16384];
    int n;

    while ((n = BIO_read(c->wbio, tmp, sizeof(tmp))) > 0) {
        buf_append(cipher, tmp, (size_t)n);
    }
}

static int
cluster_tls_fail(struct cluster_tls_conn *c, int ssl_rv, const char **why)
{
    int e = SSL_get_error(c->ssl, ssl_rv);
    long vr = SSL_get_verify_result(c->ssl);
    char reason[160];

    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(c->why, sizeof(c->why), "TLS: closed by the peer");
    } else if (vr != X509_V_OK) {
        ERR_clear_error();
        snprintf(c->why, sizeof(c->why), "TLS: peer certificate: %s",
                 X509_verify_cert_error_string(vr));
    } else {
        cluster_tls_ossl_err(reason, sizeof(reason));
        snprintf(c->why, sizeof(c->why), "TLS: %s", reason);
    }
    *why = c->why;
    return KM_EPROTO;
}

static int
cluster_tls_advance(struct cluster_tls_conn *c, struct buf *plain,
                    struct buf *cipher, const char **why)
{
    int rv = 0;

    ERR_clear_error();
    if (!c->ready) {
        int r = SSL_do_handshake(c->ssl);
        if (r == 1) {
            c->ready = true;
        } else {
            rv = cluster_tls_fail(c, r, why);
        }
    }
    while (rv == 0 && c->ready) {
        char tmp[16384];
        int r = SSL_read(c->ssl, tmp, sizeof(tmp));
        if (r <= 0) {
            rv = cluster_tls_fail(c, r, why);
            break;
        }
        buf_append(plain, tmp, (size_t)r);
    }
    cluster_tls_drain(c, cipher);
    return rv;
}

int
cluster_tls_conn_start(struct cluster_tls_conn *c, struct buf *cipher,
                       const char **why)
{
    struct buf none;
    int rv;

    buf_init(&none);
    rv = cluster_tls_advance(c, &none, cipher, why);
    buf_fini(&none);
    return rv;
}

int
cluster_tls_conn_feed(struct cluster_tls_conn *c, const void *p, size_t n,
                      struct buf *plain, struct buf *cipher, const char **why)
{
    if (n > 0 && BIO_write(c->rbio, p, (int)n) != (int)n) {
        *why = "TLS: cannot buffer input";
        return KM_EPROTO;
    }
    return cluster_tls_advance(c, plain, cipher, why);
}

int
cluster_tls_conn_write(struct cluster_tls_conn *c, const void *p, size_t n,
                       struct buf *cipher, const char **why)
{
    size_t done = 0;

    KM_ASSERT(c->ready);
    ERR_clear_error();
    while (done < n) {
        size_t chunk = n - done > 65536 ? 65536 : n - done;
        int r = SSL_write(c->ssl, (const char *)p + done, (int)chunk);
        if (r <= 0) {
            int rv = cluster_tls_fail(c, r, why);
            return rv != 0 ? rv : KM_EIO;
        }
        done += (size_t)r;
    }
    cluster_tls_drain(c, cipher);
    return 0;
}

bool
cluster_tls_conn_is_ready(const struct cluster_tls_conn *c)
{
    return c->ready;
}

bool
cluster_tls_conn_names_node(const struct cluster_tls_conn *c, uint64_t id)
{
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    char name[32];

    if (!c->ready || peer == NULL ||
        SSL_get_verify_result(c->ssl) != X509_V_OK) {
        return false;
    }
    snprintf(name, sizeof(name), "node-%llu", (unsigned long long)id);
    return X509_check_host(peer, name, strlen(name),
                           X509_CHECK_FLAG_NO_WILDCARDS |
                               X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS,
                           NULL) == 1;
}

const char *
cluster_tls_conn_peer_subject(struct cluster_tls_conn *c)
{
    X509 *peer = SSL_get0_peer_certificate(c->ssl);

    if (peer == NULL) {
        return "(no certificate)";
    }
    X509_NAME_oneline(X509_get_subject_name(peer), c->subject,
                      (int)sizeof(c->subject));
    return c->subject;
}

int64_t
cluster_tls_conn_peer_expiry(const struct cluster_tls_conn *c)
{
    X509 *peer = SSL_get0_peer_certificate(c->ssl);

    return peer != NULL ? cluster_tls_asn1_time(X509_get0_notAfter(peer)) : 0;
}

/* Link sender proofs: u32 certificate length, the certificate (DER), 16
 * bytes of nonce, the signature (the rest). */

#define CLUSTER_TLS_PROOF_LABEL "kumod-link-proof-v1"
#define CLUSTER_TLS_NONCE       16
#define CLUSTER_TLS_MAX_CERT    16384

static void
cluster_tls_proof_statement(struct buf *b, const char *cluster_id,
                            uint64_t from, uint64_t to, const uint8_t *nonce)
{
    buf_appendf(b, "%s|%s|%llu|%llu|", CLUSTER_TLS_PROOF_LABEL, cluster_id,
                (unsigned long long)from, (unsigned long long)to);
    buf_append(b, nonce, CLUSTER_TLS_NONCE);
}

static int cluster_tls_sign_proof(struct cluster_tls *tls,
                                  const char *cluster_id, uint64_t from,
                                  uint64_t to, struct buf *out);

int
cluster_tls_make_proof(struct cluster_tls *tls, const char *cluster_id,
                       uint64_t from, uint64_t to, struct buf *out)
{
    struct cluster_tls_proof *pr;
    int rv;

    for (size_t i = 0; i < tls->n_proofs; i++) {
        if (tls->proofs[i].to == to) {
            buf_append(out, tls->proofs[i].bytes.data,
                       tls->proofs[i].bytes.len);
            return 0;
        }
    }
    if (tls->n_proofs == CLUSTER_TLS_PROOF_CACHE) {
        cluster_tls_drop_proofs(tls);
    }
    pr = &tls->proofs[tls->n_proofs];
    buf_init(&pr->bytes);
    rv = cluster_tls_sign_proof(tls, cluster_id, from, to, &pr->bytes);
    if (rv != 0) {
        buf_fini(&pr->bytes);
        return rv;
    }
    pr->to = to;
    tls->n_proofs++;
    buf_append(out, pr->bytes.data, pr->bytes.len);
    return 0;
}

static int
cluster_tls_sign_proof(struct cluster_tls *tls, const char *cluster_id,
                       uint64_t from, uint64_t to, struct buf *out)
{
    X509 *leaf = SSL_CTX_get0_certificate(tls->ctx);
    EVP_PKEY *key = SSL_CTX_get0_privatekey(tls->ctx);
    uint8_t nonce[CLUSTER_TLS_NONCE];
    unsigned char *der = NULL;
    EVP_MD_CTX *md = NULL;
    struct buf st;
    size_t siglen = 0;
    int dlen;
    int rv = KM_EIO;

    if (leaf == NULL || key == NULL || RAND_bytes(nonce, sizeof(nonce)) != 1 ||
        (dlen = i2d_X509(leaf, &der)) <= 0) {
        ERR_clear_error();
        return KM_EIO;
    }
    buf_init(&st);
    cluster_tls_proof_statement(&st, cluster_id, from, to, nonce);
    md = EVP_MD_CTX_new();
    if (md == NULL ||
        EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)st.data,
                       st.len) != 1) {
        goto out;
    }
    {
        uint8_t len4[4] = {(uint8_t)(dlen >> 24), (uint8_t)(dlen >> 16),
                           (uint8_t)(dlen >> 8), (uint8_t)dlen};
        size_t at;
        buf_append(out, len4, 4);
        buf_append(out, der, (size_t)dlen);
        buf_append(out, nonce, sizeof(nonce));
        at = out->len;
        buf_reserve(out, siglen);
        if (EVP_DigestSign(md, (unsigned char *)out->data + at, &siglen,
                           (const unsigned char *)st.data, st.len) != 1) {
            goto out;
        }
        out->len = at + siglen;
        out->data[out->len] = '\0';
    }
    rv = 0;
out:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    buf_fini(&st);
    return rv;
}

bool
cluster_tls_check_proof(struct cluster_tls *tls, const char *cluster_id,
                        uint64_t from, uint64_t to, const uint8_t *p, size_t n,
                        const char **why)
{
    const unsigned char *cp;
    X509 *cert = NULL;
    X509_STORE_CTX *vctx = NULL;
    EVP_MD_CTX *md = NULL;
    struct buf st;
    char name[32];
    size_t clen;
    bool ok = false;

    buf_init(&st);
    if (n < 4) {
        *why = "no sender proof";
        goto out;
    }
    clen = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    if (clen == 0 || clen > CLUSTER_TLS_MAX_CERT ||
        n - 4 < clen + CLUSTER_TLS_NONCE + 1) {
        *why = "malformed sender proof";
        goto out;
    }
    cp = p + 4;
    cert = d2i_X509(NULL, &cp, (long)clen);
    if (cert == NULL || cp != p + 4 + clen) {
        *why = "sender proof: bad certificate";
        goto out;
    }
    vctx = X509_STORE_CTX_new();
    if (vctx == NULL ||
        X509_STORE_CTX_init(vctx, SSL_CTX_get_cert_store(tls->ctx), cert,
                            NULL) != 1 ||
        X509_verify_cert(vctx) != 1) {
        *why = "sender proof: certificate not of the cluster CA";
        goto out;
    }
    snprintf(name, sizeof(name), "node-%llu", (unsigned long long)from);
    if (X509_check_host(cert, name, strlen(name), X509_CHECK_FLAG_NO_WILDCARDS,
                        NULL) != 1) {
        *why = "sender proof: certificate does not name the sender";
        goto out;
    }
    cluster_tls_proof_statement(&st, cluster_id, from, to, p + 4 + clen);
    md = EVP_MD_CTX_new();
    if (md == NULL ||
        EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL,
                             X509_get0_pubkey(cert)) != 1 ||
        EVP_DigestVerify(md, p + 4 + clen + CLUSTER_TLS_NONCE,
                         n - 4 - clen - CLUSTER_TLS_NONCE,
                         (const unsigned char *)st.data, st.len) != 1) {
        *why = "sender proof: bad signature";
        goto out;
    }
    ok = true;
out:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    X509_STORE_CTX_free(vctx);
    X509_free(cert);
    buf_fini(&st);
    return ok;
}
