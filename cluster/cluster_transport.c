/* cluster_transport.c - raft's TCP transport: dead-peer detection, and a
 * relay that validates everything a peer sends before libraft sees it.
 *
 * libraft 0.15's raft_uv_tcp leaves its sockets at the kernel's defaults.
 * When a peer vanishes without a FIN or RST (a partition, a dead switch
 * port), the kernel keeps retransmitting unacknowledged raft messages with
 * exponential backoff for many minutes, and a connect() waits through six
 * SYN retries (about two minutes). After the network heals, the next
 * retransmission may come tens of seconds later: drill D4 measured 48 s
 * before the healed old leader heard from the new one. So every socket
 * here gets:
 *
 * - TCP_USER_TIMEOUT: a connection whose data stays unacknowledged for
 *   CLUSTER_TRANSPORT_USER_TIMEOUT_MS is aborted; raft then reconnects
 *   after its connect retry delay;
 * - TCP_SYNCNT: a connect() to a silent address gives up after two SYN
 *   retries (about 7 s), so a fresh attempt follows soon after a heal.
 *
 * libraft 0.15 also trusts whatever reaches its port (PROBE-2026-12 R1-R5:
 * one frame kills a node, one term wedges the group, a forged entry is
 * committed). So this transport listens itself, and each accepted
 * connection is a relay: the peer's TCP stream ends here, every byte goes
 * through cluster_transport_check (handshake, message preambles and
 * headers, validated whole before they are passed on), and libraft is
 * handed one end of a socketpair carrying only what passed (the relay is
 * cluster_transport_relay.c; with TLS it also carries our dials). A refused
 * connection is logged and dropped before libraft sees a byte of the
 * offending unit. libraft only reads on accepted streams (replies travel
 * on the replier's own outgoing connection), so the relay is one-way.
 *
 * Without TLS, outgoing connections are dialed here on a socket set up
 * before connect(), and libraft writes to them directly. The handshake written
 * after connect() is raft_uv_tcp's own (protocol 1, our id, the padded length
 * of our address, the address), so both ends stay wire-compatible with stock
 * libraft. */
#include "cluster_transport.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/km.h"
#include "base/log.h"
#include "cluster_tls.h"
#include "cluster_transport_int.h"

/* Socket options */

void
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

void
cluster_transport_maybe_closed(struct cluster_transport *t)
{
    if (t->closing && !t->listener_open && !t->reload_open &&
        t->dials == NULL && t->relays == NULL && t->close_cb != NULL) {
        raft_uv_transport_close_cb cb = t->close_cb;
        t->close_cb = NULL;
        cb(t->pub);
    }
}

static void
cluster_transport_on_listener_closed(uv_handle_t *h)
{
    struct cluster_transport *t = h->data;

    t->listener_open = false;
    cluster_transport_maybe_closed(t);
}

static void
cluster_transport_on_reload_closed(uv_handle_t *h)
{
    struct cluster_transport *t = h->data;

    t->reload_open = false;
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

void
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

/* "ip:port" or "[ipv6]:port" into sa; port 0 only if `any_port` (a
 * listener on an ephemeral port, as raft_uv_tcp allowed). */
static int
cluster_transport_parse(const char *address, bool any_port,
                        struct sockaddr_storage *sa)
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
    if (end == colon + 1 || *end != '\0' || port < (any_port ? 0 : 1) ||
        port > 65535) {
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

    t->id = id;
    free(t->address);
    t->address = km_strdup(address);
    return 0;
}

static int
cluster_transport_listen(struct raft_uv_transport *pub, raft_uv_accept_cb cb)
{
    struct cluster_transport *t = pub->impl;
    struct sockaddr_storage sa;
    int rv;

    memset(&sa, 0, sizeof(sa));
    if (cluster_transport_parse(t->address, true, &sa) != 0) {
        snprintf(pub->errmsg, sizeof(pub->errmsg), "bad raft address %s",
                 t->address);
        return RAFT_INVALID;
    }
    t->accept_cb = cb;
    if (t->policy.tls != NULL) {
        /* Rotated files are picked up within seconds, even while no
         * connection is made (cluster status shows the new expiry). */
        uv_timer_init(t->loop, &t->reload);
        t->reload.data = t;
        t->reload_open = true;
        uv_timer_start(&t->reload, cluster_transport_on_reload_timer, 5000,
                       5000);
        uv_unref((uv_handle_t *)&t->reload);
    }
    rv = uv_tcp_init(t->loop, &t->listener);
    if (rv != 0) {
        snprintf(pub->errmsg, sizeof(pub->errmsg), "uv_tcp_init: %s",
                 uv_strerror(rv));
        return RAFT_IOERR;
    }
    t->listener.data = t;
    t->listener_inited = true;
    t->listener_open = true;
    rv = uv_tcp_bind(&t->listener, (struct sockaddr *)&sa, 0);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&t->listener, 128,
                       cluster_transport_on_connection);
    }
    if (rv != 0) {
        snprintf(pub->errmsg, sizeof(pub->errmsg), "listen %s: %s", t->address,
                 uv_strerror(rv));
        return RAFT_IOERR;
    }
    return 0;
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

    KM_ASSERT(!t->closing);
    memset(&sa, 0, sizeof(sa));
    if (cluster_transport_parse(address, false, &sa) != 0) {
        snprintf(pub->errmsg, sizeof(pub->errmsg), "bad raft address %s",
                 address);
        return RAFT_NOCONNECTION;
    }
    req->cb = cb;
    if (t->policy.tls != NULL) {
        cluster_transport_relay_dial(t, req, id, address, &sa);
        return 0;
    }
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
    for (struct cluster_transport_relay *r = t->relays; r != NULL;
         r = r->next) {
        cluster_transport_relay_close(r);
    }
    if (t->reload_open) {
        uv_close((uv_handle_t *)&t->reload, cluster_transport_on_reload_closed);
    }
    if (t->listener_open) {
        uv_close((uv_handle_t *)&t->listener,
                 cluster_transport_on_listener_closed);
    } else {
        cluster_transport_maybe_closed(t);
    }
}

/* Public */

int
cluster_transport_init_tcp(struct raft_uv_transport *pub, uv_loop_t *loop)
{
    struct cluster_transport *t = km_calloc(1, sizeof(*t));

    memset(pub, 0, sizeof(*pub));
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
cluster_transport_set_policy(struct raft_uv_transport *pub,
                             const struct cluster_transport_policy *p)
{
    struct cluster_transport *t = pub->impl;

    t->policy = *p;
}

uint64_t
cluster_transport_refused(const struct raft_uv_transport *pub)
{
    const struct cluster_transport *t = pub->impl;

    return t != NULL ? t->refused : 0;
}

void
cluster_transport_release(struct raft_uv_transport *pub)
{
    struct cluster_transport *t = pub->impl;

    if (t == NULL) {
        return;
    }
    /* Released without ever listening, or after the close callback. */
    KM_ASSERT(!t->listener_open || !t->listener_inited);
    free(t->address);
    free(t);
    pub->impl = NULL;
}
