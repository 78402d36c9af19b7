/* dkim_key.c - DKIM private keys: PEM or DER, RSA (PKCS#1 or #8) and
 * Ed25519 (PKCS#8 v1, and v2 which OpenSSL 3.0 does not read), with the
 * type and size checks of dkim_key_parse() (dkim.h), and the bounded read
 * of a key file. No caching (dkim.c caches parsed keys). Safe on any
 * thread. */
#include "dkim.h"

#include <errno.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "base/buf.h"
#include "base/km.h"
#include "dkim_int.h"

/* Never prompt on a terminal for an encrypted key's passphrase. */
static int
dkim_on_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* "an RSA", "an Ed25519", "a <name>": for the wrong-type errors. */
static const char *
dkim_key_kind(int id)
{
    switch (id) {
    case EVP_PKEY_RSA:
        return "an RSA";
    case EVP_PKEY_ED25519:
        return "an Ed25519";
    case EVP_PKEY_EC:
        return "an EC";
    default:
        return "another kind of";
    }
}

/* One DER element at *p (below end): its tag, and its contents in
 * [*c, *c + *n). Short and one- or two-byte long lengths only. */
static bool
dkim_der_next(const unsigned char **p, const unsigned char *end,
              unsigned char *tag, const unsigned char **c, size_t *n)
{
    const unsigned char *q = *p;
    size_t len;

    if (end - q < 2) {
        return false;
    }
    *tag = *q++;
    len = *q++;
    if (len == 0x81 || len == 0x82) {
        size_t k = len - 0x80;
        if ((size_t)(end - q) < k) {
            return false;
        }
        len = k == 1 ? q[0] : ((size_t)q[0] << 8) | q[1];
        q += k;
    } else if (len > 0x7f) {
        return false;
    }
    if ((size_t)(end - q) < len) {
        return false;
    }
    *c = q;
    *n = len;
    *p = q + len;
    return true;
}

/* An Ed25519 PKCS#8 v2 key (RFC 5958 OneAsymmetricKey, RFC 8410 7, with
 * the public key), which OpenSSL 3.0 does not read: the seed is taken
 * and the public key checked against it. NULL if it is not one. */
static EVP_PKEY *
dkim_ed25519_v2(const unsigned char *der, size_t len, bool *mismatch)
{
    static const unsigned char alg[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
    const unsigned char *p = der, *end = der + len, *c, *seq_end;
    const unsigned char *seed = NULL, *pub = NULL;
    unsigned char tag, derived[32];
    size_t n, dlen = sizeof(derived);
    EVP_PKEY *pk;

    *mismatch = false;
    if (!dkim_der_next(&p, end, &tag, &c, &n) || tag != 0x30) {
        return NULL;
    }
    p = c;
    seq_end = c + n;
    if (!dkim_der_next(&p, seq_end, &tag, &c, &n) || tag != 0x02 || n != 1 ||
        c[0] != 1) {
        return NULL;
    }
    if (!dkim_der_next(&p, seq_end, &tag, &c, &n) || tag != 0x30 ||
        n != sizeof(alg) || memcmp(c, alg, sizeof(alg)) != 0) {
        return NULL;
    }
    if (!dkim_der_next(&p, seq_end, &tag, &c, &n) || tag != 0x04 || n != 34 ||
        c[0] != 0x04 || c[1] != 32) {
        return NULL;
    }
    seed = c + 2;
    while (p < seq_end) {
        if (!dkim_der_next(&p, seq_end, &tag, &c, &n)) {
            return NULL;
        }
        /* [0] attributes are skipped; [1] is the public key (a BIT
         * STRING with no unused bits). */
        if (tag == 0x81 && n == 33 && c[0] == 0) {
            pub = c + 1;
        }
    }
    if (pub == NULL) {
        return NULL;
    }
    pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
    if (pk == NULL) {
        return NULL;
    }
    if (EVP_PKEY_get_raw_public_key(pk, derived, &dlen) != 1 || dlen != 32 ||
        memcmp(derived, pub, 32) != 0) {
        *mismatch = true;
        EVP_PKEY_free(pk);
        return NULL;
    }
    return pk;
}

/* The DER inside a PEM block (any label), into out. */
static bool
dkim_pem_der(const char *data, size_t len, struct buf *out)
{
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long n = 0;
    bool ok;

    if (bio == NULL) {
        return false;
    }
    ok = PEM_read_bio(bio, &name, &header, &der, &n) == 1;
    if (ok) {
        buf_append(out, der, (size_t)n);
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    BIO_free(bio);
    return ok;
}

void
dkim_key_free(void *key)
{
    EVP_PKEY_free(key);
}

int
dkim_key_parse(const char *data, size_t len, bool ed25519, const char *what,
               void **out, char *err, size_t errlen)
{
    EVP_PKEY *pk = NULL;
    BIO *bio;
    int id;

    if (len == 0 || len > INT32_MAX) {
        snprintf(err, errlen, "key %s: is empty", what);
        return KM_EINVAL;
    }
    bio = BIO_new_mem_buf(data, (int)len);
    if (bio == NULL) {
        snprintf(err, errlen, "key %s: out of memory", what);
        return KM_ENOMEM;
    }
    if (memmem(data, len, "-----BEGIN", 10) != NULL) {
        if (memmem(data, len, "ENCRYPTED", 9) != NULL) {
            BIO_free(bio);
            snprintf(err, errlen,
                     "key %s: is encrypted; kumod needs an unencrypted key",
                     what);
            return KM_EINVAL;
        }
        pk = PEM_read_bio_PrivateKey(bio, NULL, dkim_on_passphrase, NULL);
    } else {
        pk = d2i_PrivateKey_bio(bio, NULL);
    }
    BIO_free(bio);
    ERR_clear_error();
    if (pk == NULL && ed25519) {
        /* KumoMTA reads v2 (with the public key) first, then v1. */
        struct buf der = BUF_INIT;
        bool pem = memmem(data, len, "-----BEGIN", 10) != NULL;
        bool mismatch = false;
        if (!pem) {
            buf_append(&der, data, len);
        }
        if (!pem || dkim_pem_der(data, len, &der)) {
            pk = dkim_ed25519_v2((const unsigned char *)der.data, der.len,
                                 &mismatch);
        }
        buf_fini(&der);
        ERR_clear_error();
        if (mismatch) {
            snprintf(err, errlen,
                     "key %s: the public key in this PKCS#8 v2 key does not "
                     "match its private key",
                     what);
            return KM_EINVAL;
        }
    }
    if (pk == NULL) {
        snprintf(err, errlen,
                 "key %s: is not an %s private key (PEM or DER, PKCS#%s)", what,
                 ed25519 ? "Ed25519" : "RSA", ed25519 ? "8" : "1 or 8");
        return KM_EINVAL;
    }
    id = EVP_PKEY_get_base_id(pk);
    if (ed25519 && id != EVP_PKEY_ED25519) {
        snprintf(err, errlen,
                 "key %s: is %s key, ed25519_signer needs an Ed25519 key", what,
                 dkim_key_kind(id));
        EVP_PKEY_free(pk);
        return KM_EINVAL;
    }
    if (!ed25519 && id != EVP_PKEY_RSA) {
        snprintf(err, errlen,
                 "key %s: is %s key, rsa_sha256_signer needs an RSA key", what,
                 dkim_key_kind(id));
        EVP_PKEY_free(pk);
        return KM_EINVAL;
    }
    /* RFC 8301 3.2: signers MUST use RSA keys of at least 1024 bits. */
    if (!ed25519 && EVP_PKEY_get_bits(pk) < 1024) {
        snprintf(err, errlen,
                 "key %s: RSA key of %d bits; DKIM needs at least 1024 "
                 "(RFC 8301), 2048 recommended",
                 what, EVP_PKEY_get_bits(pk));
        EVP_PKEY_free(pk);
        return KM_EINVAL;
    }
    *out = pk;
    return 0;
}

int
dkim_key_read_file(const char *path, struct buf *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char chunk[4096];
    size_t n;

    if (f == NULL) {
        int e = errno;
        snprintf(err, errlen, "key file '%s': %s", path, strerror(e));
        return e == ENOENT ? KM_ENOENT : KM_EIO;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (out->len + n > DKIM_KEY_MAX_BYTES) {
            fclose(f);
            snprintf(err, errlen, "key file '%s': larger than %u bytes", path,
                     DKIM_KEY_MAX_BYTES);
            return KM_EINVAL;
        }
        buf_append(out, chunk, n);
    }
    if (ferror(f)) {
        int e = errno;
        fclose(f);
        snprintf(err, errlen, "key file '%s': %s", path, strerror(e));
        return KM_EIO;
    }
    fclose(f);
    return 0;
}
