/* cluster_transport.c - raft's TCP transport with dead-peer detection.
 *
 * libraft 0.15's raft_uv_tcp leaves its sockets at the kernel's defaults.
 * When a peer vanishes without a FIN or RST (a partition, a dead switch
 * port), the kernel keeps retransmitting unacknowledged raft messages with
 * exponential backoff for many minutes, and a connect() waits through six
 * SYN retries (about two minutes). After the network heals, the next
 * retransmission may come tens of seconds later: drill D4 measured 48 s
 * before the healed old leader heard from the new one.
 *
 * This transport wraps raft_uv_tcp: it keeps its listener (every accepted
 * stream gets the options below) and dials peers itself on a socket set up
 * before connect():
 *
 * - TCP_USER_TIMEOUT: a connection whose data stays unacknowledged for
 *   CLUSTER_TRANSPORT_USER_TIMEOUT_MS is aborted; raft then reconnects
 *   after its connect retry delay;
 * - TCP_SYNCNT: a connect() to a silent address gives up after two SYN
 *   retries (about 7 s), so a fresh attempt follows soon after a heal.
 *
 * The handshake written after connect() is raft_uv_tcp's own (protocol 1,
 * our id, the padded length of our address, the address), so both ends
 * stay wire-compatible with stock libraft. */
#include "cluster_transport.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/km.h"
#include "base/log.h"

#define CLUSTER_TRANSPORT_USER_TIMEOUT_MS 3000u
#define CLUSTER_TRANSPORT_SYNCNT          2
#define CLUSTER_TRANSPORT_HANDSHAKE_PROTO 1u

struct cluster_transport_dial;

struct cluster_transport {
    struct raft_uv_transport inner; /* raft_uv_tcp: the listener */
    struct raft_uv_transport *pub;  /* what raft_uv sees */
    uv_loop_t *loop;
    raft_id id;
    char *address;
    raft_uv_accept_cb accept_cb;
    raft_uv_transport_close_cb close_cb;
    struct cluster_transport_dial *dials; /* connects in progress */
    bool closing;
    bool inner_closed;
};

/* One outgoing connection being set up. */
struct cluster_transport_dial {
    struct cluster_transport_dial *prev, *next;
    struct cluster_transport *t;
    struct raft_uv_connect *req;
    uv_tcp_t *tcp; /* malloc'd: raft frees it with raft_free() later */
    uv_connect_t connect;
    uv_write_t write;
    uv_buf_t handshake;
    int status;
};

/* Socket options */

static void
cluster_transport_tune(uv_tcp_t *tcp)
{
    uv_os_fd_t fd;
    unsigned int timeout = CLUSTER_TRANSPORT_USER_TIMEOUT_MS;
    int syncnt = CLUSTER_TRANSPORT_SYNCNT;

    if (uv_fileno((uv_handle_t *)tcp, &fd) != 0) {
        return;
    }
    /* Best effort: without them we only lose the quick detection. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &timeout,
                     sizeof(timeout));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_SYNCNT, &syncnt, sizeof(syncnt));
    (void)uv_tcp_nodelay(tcp, 1);
}

/* Close */

static void
cluster_transport_maybe_closed(struct cluster_transport *t)
{
    if (t->closing && t->inner_closed && t->dials == NULL &&
        t->close_cb != NULL) {
        raft_uv_transport_close_cb cb = t->close_cb;
        t->close_cb = NULL;
        cb(t->pub);
    }
}

static void
cluster_transport_on_inner_closed(struct raft_uv_transport *inner)
{
    struct cluster_transport *t = inner->data;

    t->inner_closed = true;
    cluster_transport_maybe_closed(t);
}

/* Dialing */

static void
cluster_transport_dial_unlink(struct cluster_transport_dial *d)
{
    struct cluster_transport *t = d->t;

    if (d->prev != NULL) {
        d->prev->next = d->next;
    } else {
        t->dials = d->next;
    }
    if (d->next != NULL) {
        d->next->prev = d->prev;
    }
}

/* Hand the stream (NULL on failure) to raft and free the dial. */
static void
cluster_transport_dial_finish(struct cluster_transport_dial *d)
{
    struct cluster_transport *t = d->t;
    struct raft_uv_connect *req = d->req;
    uv_stream_t *stream = (uv_stream_t *)d->tcp;
    int status = d->status;

    cluster_transport_dial_unlink(d);
    free(d->handshake.base);
    free(d);
    req->cb(req, status == 0 ? stream : NULL, status);
    cluster_transport_maybe_closed(t);
}

static void
cluster_transport_dial_on_close(uv_handle_t *h)
{
    struct cluster_transport_dial *d = h->data;

    free(d->tcp);
    d->tcp = NULL;
    cluster_transport_dial_finish(d);
}

static void
cluster_transport_dial_abort(struct cluster_transport_dial *d, int status)
{
    d->status = status;
    uv_close((uv_handle_t *)d->tcp, cluster_transport_dial_on_close);
}

static void
cluster_transport_dial_on_write(uv_write_t *w, int status)
{
    struct cluster_transport_dial *d = w->data;

    if (d->t->closing) {
        /* Aborted by close: the close callback finishes it. */
        return;
    }
    if (status != 0) {
        cluster_transport_dial_abort(d, RAFT_NOCONNECTION);
        return;
    }
    cluster_transport_dial_finish(d);
}

static void
cluster_transport_dial_on_connect(uv_connect_t *c, int status)
{
    struct cluster_transport_dial *d = c->data;

    if (d->t->closing) {
        return;
    }
    if (status != 0 || uv_write(&d->write, (uv_stream_t *)d->tcp, &d->handshake,
                                1, cluster_transport_dial_on_write) != 0) {
        cluster_transport_dial_abort(d, RAFT_NOCONNECTION);
    }
}

/* raft_uv_tcp's handshake: u64 protocol, u64 id, u64 padded address
 * length, the address NUL-padded to a multiple of 8; little-endian. */
static void
cluster_transport_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void
cluster_transport_handshake(const struct cluster_transport *t, uv_buf_t *buf)
{
    size_t alen = (strlen(t->address) + 1 + 7) & ~(size_t)7;
    uint8_t *p = km_calloc(1, 24 + alen);

    cluster_transport_put64(p, CLUSTER_TRANSPORT_HANDSHAKE_PROTO);
    cluster_transport_put64(p + 8, t->id);
    cluster_transport_put64(p + 16, alen);
    memcpy(p + 24, t->address, strlen(t->address));
    buf->base = (char *)p;
    buf->len = 24 + alen;
}

/* "ip:port" or "[ipv6]:port" into sa. */
static int
cluster_transport_parse(const char *address, struct sockaddr_storage *sa)
{
    char host[64];
    const char *colon = strrchr(address, ':');
    const char *h = address;
    size_t hlen;
    char *end = NULL;
    long port;

    if (colon == NULL) {
        return RAFT_NOCONNECTION;
    }
    hlen = (size_t)(colon - address);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(host)) {
        return RAFT_NOCONNECTION;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || port <= 0 || port > 65535) {
        return RAFT_NOCONNECTION;
    }
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)sa) == 0 ||
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)sa) == 0) {
        return 0;
    }
    return RAFT_NOCONNECTION;
}

/* raft_uv_transport methods */

static int
cluster_transport_init(struct raft_uv_transport *pub, raft_id id,
                       const char *address)
{
    struct cluster_transport *t = pub->impl;
    int rv = t->inner.init(&t->inner, id, address);

    if (rv != 0) {
        memcpy(pub->errmsg, t->inner.errmsg, sizeof(pub->errmsg));
        return rv;
    }
    t->id = id;
    free(t->address);
    t->address = km_strdup(address);
    return 0;
}

static void
cluster_transport_on_accept(struct raft_uv_transport *inner, raft_id id,
                            const char *address, struct uv_stream_s *stream)
{
    struct cluster_transport *t = inner->data;

    if (stream != NULL && stream->type == UV_TCP) {
        cluster_transport_tune((uv_tcp_t *)stream);
    }
    t->accept_cb(t->pub, id, address, stream);
}

static int
cluster_transport_listen(struct raft_uv_transport *pub, raft_uv_accept_cb cb)
{
    struct cluster_transport *t = pub->impl;
    int rv;

    t->accept_cb = cb;
    rv = t->inner.listen(&t->inner, cluster_transport_on_accept);
    if (rv != 0) {
        memcpy(pub->errmsg, t->inner.errmsg, sizeof(pub->errmsg));
    }
    return rv;
}

static int
cluster_transport_connect(struct raft_uv_transport *pub,
                          struct raft_uv_connect *req, raft_id id,
                          const char *address, raft_uv_connect_cb cb)
{
    struct cluster_transport *t = pub->impl;
    struct cluster_transport_dial *d;
    struct sockaddr_storage sa;
    int rv;

    (void)id;
    KM_ASSERT(!t->closing);
    memset(&sa, 0, sizeof(sa));
    if (cluster_transport_parse(address, &sa) != 0) {
        snprintf(pub->errmsg, sizeof(pub->errmsg), "bad raft address %s",
                 address);
        return RAFT_NOCONNECTION;
    }
    req->cb = cb;
    d = km_calloc(1, sizeof(*d));
    d->t = t;
    d->req = req;
    d->connect.data = d;
    d->write.data = d;
    d->tcp = km_calloc(1, sizeof(*d->tcp));
    rv = uv_tcp_init_ex(t->loop, d->tcp, sa.ss_family);
    if (rv != 0) {
        free(d->tcp);
        free(d);
        snprintf(pub->errmsg, sizeof(pub->errmsg), "uv_tcp_init_ex: %s",
                 uv_strerror(rv));
        return RAFT_NOCONNECTION;
    }
    d->tcp->data = d;
    cluster_transport_tune(d->tcp);
    cluster_transport_handshake(t, &d->handshake);
    d->next = t->dials;
    if (d->next != NULL) {
        d->next->prev = d;
    }
    t->dials = d;
    rv = uv_tcp_connect(&d->connect, d->tcp, (struct sockaddr *)&sa,
                        cluster_transport_dial_on_connect);
    if (rv != 0) {
        /* The request is ours until the callback: fail it from the close
         * callback, as raft_uv_tcp fails late errors. */
        snprintf(pub->errmsg, sizeof(pub->errmsg), "uv_tcp_connect: %s",
                 uv_strerror(rv));
        cluster_transport_dial_abort(d, RAFT_NOCONNECTION);
    }
    return 0;
}

static void
cluster_transport_close(struct raft_uv_transport *pub,
                        raft_uv_transport_close_cb cb)
{
    struct cluster_transport *t = pub->impl;

    KM_ASSERT(!t->closing);
    t->closing = true;
    t->close_cb = cb;
    for (struct cluster_transport_dial *d = t->dials; d != NULL; d = d->next) {
        if (!uv_is_closing((uv_handle_t *)d->tcp)) {
            cluster_transport_dial_abort(d, RAFT_CANCELED);
        }
    }
    t->inner.close(&t->inner, cluster_transport_on_inner_closed);
}

/* Public */

int
cluster_transport_init_tcp(struct raft_uv_transport *pub, uv_loop_t *loop)
{
    struct cluster_transport *t = km_calloc(1, sizeof(*t));
    int rv = raft_uv_tcp_init(&t->inner, loop);

    if (rv != 0) {
        free(t);
        return rv;
    }
    memset(pub, 0, sizeof(*pub));
    t->inner.data = t;
    t->pub = pub;
    t->loop = loop;
    pub->impl = t;
    pub->init = cluster_transport_init;
    pub->listen = cluster_transport_listen;
    pub->connect = cluster_transport_connect;
    pub->close = cluster_transport_close;
    return 0;
}

void
cluster_transport_release(struct raft_uv_transport *pub)
{
    struct cluster_transport *t = pub->impl;

    if (t == NULL) {
        return;
    }
    raft_uv_tcp_close(&t->inner);
    free(t->address);
    free(t);
    pub->impl = NULL;
}
