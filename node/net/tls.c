/* tls.c - OpenSSL 3 behind memory BIOs: server contexts from PEM files or a
 * freshly generated self-signed P-256 certificate, client contexts with or
 * without verification, and per-connection SSL objects that the owner
 * drives with ciphertext in and out (see tls.h). The only file that calls
 * SSL_*, X509_* and EVP_*. Never touches a socket. Loop thread only. */
#include "tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "base/buf.h"
#include "base/km.h"

struct tls_ctx {
    SSL_CTX *ssl;
    bool server;
    bool verify;
};

struct tls_conn {
    SSL *ssl;
    BIO *rbio; /* ciphertext from the peer (owned by ssl) */
    BIO *wbio; /* ciphertext to the peer (owned by ssl) */
    bool verify;
    char err[256];
};

/* OpenSSL's queued reason (or `fallback`) into err; clears the queue. */
static void
tls_reason(char *err, size_t errlen, const char *what, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    char reason[200];

    if (e != 0) {
        ERR_error_string_n(e, reason, sizeof(reason));
    } else {
        snprintf(reason, sizeof(reason), "%s", fallback);
    }
    ERR_clear_error();
    if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "%s: %s", what, reason);
    }
}

static SSL_CTX *
tls_ctx_base(const SSL_METHOD *method)
{
    SSL_CTX *ssl = SSL_CTX_new(method);

    if (ssl == NULL) {
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
    SSL_CTX_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return ssl;
}

/* A self-signed certificate for `hostname`: P-256 key, CN and SAN
 * DNS:hostname, valid for one year. */
static int
tls_self_signed(SSL_CTX *ssl, const char *hostname, char *err, size_t errlen)
{
    EVP_PKEY *key;
    X509 *x;
    X509_NAME *name;
    X509_EXTENSION *ext;
    X509V3_CTX v3;
    unsigned char serial[16];
    BIGNUM *bn;
    char san[300];
    int rv = KM_ECONFIG;

    key = EVP_EC_gen("P-256");
    if (key == NULL) {
        tls_reason(err, errlen, "generate key", "EVP_EC_gen failed");
        return KM_ECONFIG;
    }
    x = X509_new();
    if (x == NULL || X509_set_version(x, 2) != 1) {
        tls_reason(err, errlen, "self-signed certificate", "X509_new failed");
        goto err_after_key;
    }
    if (RAND_bytes(serial, sizeof(serial)) != 1) {
        tls_reason(err, errlen, "self-signed certificate", "RAND_bytes");
        goto err_after_cert;
    }
    serial[0] &= 0x7f; /* positive */
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (bn == NULL ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL) {
        BN_free(bn);
        tls_reason(err, errlen, "self-signed certificate", "serial");
        goto err_after_cert;
    }
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600);
    name = X509_get_subject_name(x);
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                   (const unsigned char *)hostname, -1, -1,
                                   0) != 1 ||
        X509_set_issuer_name(x, name) != 1 || X509_set_pubkey(x, key) != 1) {
        tls_reason(err, errlen, "self-signed certificate", "subject");
        goto err_after_cert;
    }
    snprintf(san, sizeof(san), "DNS:%s", hostname);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    if (ext == NULL) {
        tls_reason(err, errlen, "self-signed certificate", "SAN");
        goto err_after_cert;
    }
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (X509_sign(x, key, EVP_sha256()) == 0) {
        tls_reason(err, errlen, "self-signed certificate", "sign");
        goto err_after_cert;
    }
    if (SSL_CTX_use_certificate(ssl, x) != 1 ||
        SSL_CTX_use_PrivateKey(ssl, key) != 1) {
        tls_reason(err, errlen, "self-signed certificate", "use");
        goto err_after_cert;
    }
    rv = 0;

err_after_cert:
    X509_free(x);
err_after_key:
    EVP_PKEY_free(key);
    return rv;
}

int
tls_ctx_new_server(const char *cert_file, const char *key_file,
                   const char *hostname, struct tls_ctx **out, char *err,
                   size_t errlen)
{
    struct tls_ctx *ctx = km_calloc(1, sizeof(*ctx));
    int rv = KM_ECONFIG;

    ctx->server = true;
    ctx->ssl = tls_ctx_base(TLS_server_method());
    if (ctx->ssl == NULL) {
        tls_reason(err, errlen, "SSL_CTX_new", "failed");
        goto err_after_alloc;
    }
    if (cert_file == NULL || key_file == NULL) {
        rv = tls_self_signed(ctx->ssl, hostname, err, errlen);
        if (rv != 0) {
            goto err_after_alloc;
        }
    } else {
        if (SSL_CTX_use_certificate_chain_file(ctx->ssl, cert_file) != 1) {
            char what[300];
            snprintf(what, sizeof(what), "tls_certificate %s", cert_file);
            tls_reason(err, errlen, what, "cannot load");
            goto err_after_alloc;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx->ssl, key_file, SSL_FILETYPE_PEM) !=
            1) {
            char what[300];
            snprintf(what, sizeof(what), "tls_private_key %s", key_file);
            tls_reason(err, errlen, what, "cannot load");
            goto err_after_alloc;
        }
        if (SSL_CTX_check_private_key(ctx->ssl) != 1) {
            tls_reason(err, errlen, "tls_private_key",
                       "does not match the certificate");
            goto err_after_alloc;
        }
    }
    *out = ctx;
    return 0;

err_after_alloc:
    tls_ctx_free(ctx);
    return KM_ECONFIG;
}

int
tls_ctx_new_client(bool verify, struct tls_ctx **out)
{
    struct tls_ctx *ctx = km_calloc(1, sizeof(*ctx));

    ctx->verify = verify;
    ctx->ssl = tls_ctx_base(TLS_client_method());
    if (ctx->ssl == NULL) {
        ERR_clear_error();
        free(ctx);
        return KM_ENOMEM;
    }
    if (verify) {
        SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER, NULL);
        if (SSL_CTX_set_default_verify_paths(ctx->ssl) != 1) {
            ERR_clear_error();
        }
    } else {
        SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_NONE, NULL);
    }
    *out = ctx;
    return 0;
}

void
tls_ctx_free(struct tls_ctx *ctx)
{
    if (ctx == NULL) {
        return;
    }
    SSL_CTX_free(ctx->ssl);
    free(ctx);
}

int
tls_conn_new(struct tls_ctx *ctx, const char *sni, struct tls_conn **out)
{
    struct tls_conn *c = km_calloc(1, sizeof(*c));

    c->ssl = SSL_new(ctx->ssl);
    if (c->ssl == NULL) {
        goto err_after_alloc;
    }
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (c->rbio == NULL || c->wbio == NULL) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        goto err_after_ssl;
    }
    /* An empty memory BIO means "retry", not EOF. */
    BIO_set_mem_eof_return(c->rbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    c->verify = ctx->verify;
    if (ctx->server) {
        SSL_set_accept_state(c->ssl);
    } else {
        SSL_set_connect_state(c->ssl);
        if (sni != NULL && sni[0] != '\0') {
            /* SSL_set_tlsext_host_name() without its const-dropping cast. */
            SSL_ctrl(c->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME,
                     TLSEXT_NAMETYPE_host_name, (void *)(uintptr_t)sni);
            if (ctx->verify && SSL_set1_host(c->ssl, sni) != 1) {
                goto err_after_ssl;
            }
        }
    }
    *out = c;
    return 0;

err_after_ssl:
    SSL_free(c->ssl);
err_after_alloc:
    ERR_clear_error();
    free(c);
    return KM_ENOMEM;
}

void
tls_conn_free(struct tls_conn *c)
{
    if (c == NULL) {
        return;
    }
    SSL_free(c->ssl);
    free(c);
}

void
tls_conn_feed(struct tls_conn *c, const void *p, size_t n)
{
    if (n > 0) {
        BIO_write(c->rbio, p, (int)n);
    }
}

/* Move pending ciphertext into out. */
static void
tls_conn_drain(struct tls_conn *c, struct buf *out)
{
    char *p;
    long n = BIO_get_mem_data(c->wbio, &p);

    if (n > 0) {
        buf_append(out, p, (size_t)n);
        (void)BIO_reset(c->wbio);
    }
}

/* Record why the last SSL call failed. */
static int
tls_conn_fail(struct tls_conn *c, int sslerr)
{
    long vr = SSL_get_verify_result(c->ssl);

    if (c->verify && vr != X509_V_OK) {
        snprintf(c->err, sizeof(c->err), "certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
        ERR_clear_error();
    } else if (sslerr == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0) {
        snprintf(c->err, sizeof(c->err), "unexpected end of stream");
    } else {
        tls_reason(c->err, sizeof(c->err), "TLS", "protocol error");
    }
    return KM_EPROTO;
}

int
tls_conn_handshake(struct tls_conn *c, struct buf *out)
{
    int r = SSL_do_handshake(c->ssl);
    int e;

    tls_conn_drain(c, out);
    if (r == 1) {
        return 1;
    }
    e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        return 0;
    }
    return tls_conn_fail(c, e);
}

int
tls_conn_read(struct tls_conn *c, struct buf *plain)
{
    char tmp[16384];

    for (;;) {
        int r = SSL_read(c->ssl, tmp, sizeof(tmp));
        int e;

        if (r > 0) {
            buf_append(plain, tmp, (size_t)r);
            continue;
        }
        e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            return 0;
        }
        if (e == SSL_ERROR_ZERO_RETURN) {
            return KM_ENOENT;
        }
        return tls_conn_fail(c, e);
    }
}

int
tls_conn_write(struct tls_conn *c, const void *p, size_t n, struct buf *out)
{
    const char *s = p;

    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        int r = SSL_write(c->ssl, s, chunk);
        if (r <= 0) {
            int rv = tls_conn_fail(c, SSL_get_error(c->ssl, r));
            tls_conn_drain(c, out);
            return rv;
        }
        s += r;
        n -= (size_t)r;
    }
    tls_conn_drain(c, out);
    return 0;
}

void
tls_conn_shutdown(struct tls_conn *c, struct buf *out)
{
    if (SSL_is_init_finished(c->ssl)) {
        (void)SSL_shutdown(c->ssl);
    }
    ERR_clear_error();
    tls_conn_drain(c, out);
}

const char *
tls_conn_version(const struct tls_conn *c)
{
    return SSL_get_version(c->ssl);
}

const char *
tls_conn_cipher(const struct tls_conn *c)
{
    const char *name = SSL_get_cipher_name(c->ssl);
    return name != NULL ? name : "";
}

const char *
tls_conn_error(const struct tls_conn *c)
{
    return c->err[0] != '\0' ? c->err : "no error";
}

bool
tls_conn_peer_verified(const struct tls_conn *c)
{
    return c->verify && SSL_get0_peer_certificate(c->ssl) != NULL &&
           SSL_get_verify_result(c->ssl) == X509_V_OK;
}
