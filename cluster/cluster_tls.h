/* cluster_tls.h - mutual TLS between cluster members (OpenSSL 3, memory
 * BIOs, no sockets). A cluster_tls holds the cluster CA, this node's
 * certificate and key, and reloads them when a file changes on disk; a
 * cluster_tls_conn is one TLS 1.3 session fed with ciphertext and
 * plaintext by its owner (the raft relay in cluster_transport.c). A peer
 * is accepted only with a certificate chaining to the cluster CA; whose
 * node id it carries is checked by cluster_tls_conn_names_node(): a
 * subjectAltName DNS entry "node-<id>" or, for a certificate without DNS
 * names, the subject CN "node-<id>" (RFC 6125's rule, as X509_check_host
 * applies it, wildcards off). Loop thread only. */
#ifndef KUMO_CLUSTER_TLS_H
#define KUMO_CLUSTER_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

struct cluster_tls;      /* opaque */
struct cluster_tls_conn; /* opaque */

struct cluster_tls_files {
    const char *ca;   /* PEM: the cluster CA (one or more certificates) */
    const char *cert; /* PEM: this node's certificate (and chain) */
    const char *key;  /* PEM: its private key */
};

/* Load the files (copied names). On failure returns KM_ECONFIG with err
 * naming the file and OpenSSL's reason. The caller owns *out, released
 * with cluster_tls_free(). */
int cluster_tls_new(const struct cluster_tls_files *f, struct cluster_tls **out,
                    char *err, size_t errlen);
void cluster_tls_free(struct cluster_tls *tls);

/* Re-read the files if any changed (mtime or size) since the last load.
 * Sessions started afterwards use the new ones; sessions in progress
 * keep theirs. 1 reloaded, 0 unchanged, KM_ECONFIG (err set; the old
 * files stay in use, and the same change is not retried). */
int cluster_tls_maybe_reload(struct cluster_tls *tls, char *err, size_t errlen);

/* The file names it was opened with (borrowed from tls). */
void cluster_tls_get_files(const struct cluster_tls *tls,
                           struct cluster_tls_files *out);

/* Our certificate's notAfter (unix seconds), and how many reloads. */
int64_t cluster_tls_cert_expiry(const struct cluster_tls *tls);
uint64_t cluster_tls_reloads(const struct cluster_tls *tls);

/* A new session; server for accepted connections. Caller owns it. */
struct cluster_tls_conn *cluster_tls_conn_new(struct cluster_tls *tls,
                                              bool server);
void cluster_tls_conn_free(struct cluster_tls_conn *c);

/* Feed n bytes of ciphertext from the peer. Plaintext they carry is
 * appended to `plain`, and what must go back to the peer (handshake,
 * alerts) to `cipher`. 0, or KM_EPROTO with *why set (a static string
 * or one in the session, valid until the next call). */
int cluster_tls_conn_feed(struct cluster_tls_conn *c, const void *p, size_t n,
                          struct buf *plain, struct buf *cipher,
                          const char **why);

/* Start the handshake (a client writes its ClientHello). */
int cluster_tls_conn_start(struct cluster_tls_conn *c, struct buf *cipher,
                           const char **why);

/* Encrypt n bytes of plaintext into `cipher`; only once ready. */
int cluster_tls_conn_write(struct cluster_tls_conn *c, const void *p, size_t n,
                           struct buf *cipher, const char **why);

/* The handshake is done and the peer's chain verified. */
bool cluster_tls_conn_is_ready(const struct cluster_tls_conn *c);

/* Does the verified peer certificate name node `id`? */
bool cluster_tls_conn_names_node(const struct cluster_tls_conn *c, uint64_t id);

/* The peer certificate's subject (for logs), and its notAfter. */
const char *cluster_tls_conn_peer_subject(struct cluster_tls_conn *c);
int64_t cluster_tls_conn_peer_expiry(const struct cluster_tls_conn *c);

/* Link sender proofs. NNG 1.5 cannot show a listening node which
 * certificate its caller presented, so a link request carries one: this
 * node's certificate (DER), a random nonce, and an ECDSA/RSA signature
 * with its key over "kumod-link-proof-v1", the cluster id, from and to.
 * It names the receiver, so the receiver cannot replay it to anyone else,
 * and it travels only inside the link's TLS. Signed once per receiver
 * until the next reload, then copied. Appended to `out`. 0 or KM_EIO. */
int cluster_tls_make_proof(struct cluster_tls *tls, const char *cluster_id,
                           uint64_t from, uint64_t to, struct buf *out);

/* Check a proof for a request claiming `from`, sent to `to`: the
 * certificate chains to the cluster CA now, names node-<from>, and signed
 * this very statement. false with *why set. */
bool cluster_tls_check_proof(struct cluster_tls *tls, const char *cluster_id,
                             uint64_t from, uint64_t to, const uint8_t *p,
                             size_t n, const char **why);

#endif /* KUMO_CLUSTER_TLS_H */
