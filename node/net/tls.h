/* tls.h - OpenSSL 3 over libuv streams through memory BIOs, for the SMTP
 * server (STARTTLS in) and client (STARTTLS out). A `tls_ctx` is an
 * SSL_CTX: server side with a certificate and key from files, or a
 * self-signed certificate made at start-up when none is given; client side
 * with verification on or off. A `tls_conn` is one connection's SSL object
 * driven by the owner: it feeds ciphertext read from the socket in and
 * sends the ciphertext tls_conn produces. It never touches the socket
 * itself. Loop thread only. The only module that calls SSL_* / X509_*. */
#ifndef KUMO_TLS_H
#define KUMO_TLS_H
#include <stdbool.h>
#include <stddef.h>

struct buf;
struct tls_ctx;  /* opaque */
struct tls_conn; /* opaque */

/* Server context. cert_file/key_file NULL: a self-signed certificate for
 * `hostname` is generated (RSA 2048 or P-256, valid one year). On error
 * returns KM_ECONFIG with OpenSSL's reason in err. */
int tls_ctx_new_server(const char *cert_file, const char *key_file,
                       const char *hostname, struct tls_ctx **out, char *err,
                       size_t errlen);
/* Client context; verify=false accepts any certificate (the *Insecure
 * modes of enable_tls). */
int tls_ctx_new_client(bool verify, struct tls_ctx **out);
void tls_ctx_free(struct tls_ctx *ctx);

/* New connection state; server or client role follows the ctx.
 * sni may be NULL (client: the host name to send and verify). */
int tls_conn_new(struct tls_ctx *ctx, const char *sni, struct tls_conn **out);
void tls_conn_free(struct tls_conn *c);

/* Feed ciphertext received from the peer. */
void tls_conn_feed(struct tls_conn *c, const void *p, size_t n);
/* Advance the handshake. Returns 1 when done, 0 when it needs more input,
 * KM_EPROTO on failure (reason via tls_conn_error). Ciphertext to send is
 * appended to `out`. */
int tls_conn_handshake(struct tls_conn *c, struct buf *out);
/* Decrypt what is available into `plain` (appended). Returns 0, or
 * KM_EPROTO, or KM_ENOENT when the peer sent close_notify. */
int tls_conn_read(struct tls_conn *c, struct buf *plain);
/* Encrypt plaintext; ciphertext to send is appended to `out`. */
int tls_conn_write(struct tls_conn *c, const void *p, size_t n,
                   struct buf *out);
/* close_notify into out. */
void tls_conn_shutdown(struct tls_conn *c, struct buf *out);

const char *tls_conn_version(const struct tls_conn *c); /* "TLSv1.3" */
const char *tls_conn_cipher(const struct tls_conn *c);
const char *tls_conn_error(const struct tls_conn *c);
/* Client side: whether the peer certificate verified. */
bool tls_conn_peer_verified(const struct tls_conn *c);
#endif /* KUMO_TLS_H */
