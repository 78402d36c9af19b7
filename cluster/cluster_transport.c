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
 * handed one end of a socketpair carrying only what passed. A refused
 * connection is logged and dropped before libraft sees a byte of the
 * offending unit. libraft only reads on accepted streams (replies travel
 * on the replier's own outgoing connection), so the relay is one-way.
 *
 * Outgoing connections are dialed here on a socket set up before
 * connect(); libraft writes to them directly. The handshake written after
 * connect() is raft_uv_tcp's own (protocol 1, our id, the padded length of
 * our address, the address), so both ends stay wire-compatible with stock
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
#include "cluster_transport_check.h"

#define CLUSTER_TRANSPORT_USER_TIMEOUT_MS 3000u
#define CLUSTER_TRANSPORT_SYNCNT          2
#define CLUSTER_TRANSPORT_HANDSHAKE_PROTO 1u
/* A peer has this long to send its handshake. */
#define CLUSTER_TRANSPORT_HANDSHAKE_MS 5000u
/* Accepted connections at once: a group has a few members, each with one
 * connection to us (two while one replaces the other). */
#define CLUSTER_TRANSPORT_MAX_RELAYS 64u
/* Stop reading a peer while this much waits for libraft. */
#define CLUSTER_TRANSPORT_HIGH_WATER (8u << 20)
#define CLUSTER_TRANSPORT_LOW_WATER  (1u << 20)

struct cluster_transport_dial;

struct cluster_transport_relay;

struct cluster_transport {
    struct raft_uv_transport *pub; /* what raft_uv sees */
    uv_loop_t *loop;
    raft_id id;
    char *address;
    raft_uv_accept_cb accept_cb;
    raft_uv_transport_close_cb close_cb;
    struct cluster_transport_policy policy;
    uv_tcp_t listener;
    bool listener_open;                   /* initialised, not yet closed */
    bool listener_inited;                 /* uv_tcp_init ran: must be closed */
    struct cluster_transport_dial *dials; /* connects in progress */
    struct cluster_transport_relay *relays; /* relayed connections */
    size_t n_relays;                        /* accepted ones among them */
    uint64_t refused;  /* connections dropped by the checks */
    uv_timer_t reload; /* re-reads the TLS files (with TLS only) */
    bool reload_open;  /* initialised, not yet closed */
    bool closing;
};

/* One relayed connection. Accepted: the peer's TCP stream (TLS or not),
 * checked, into the socketpair whose other end libraft reads. Dialed with
 * TLS: libraft's plaintext from the socketpair, encrypted, to the peer. */
struct cluster_transport_relay {
    struct cluster_transport_relay *prev, *next;
    struct cluster_transport *t;
    bool outbound;
    uv_tcp_t tcp;
    uv_pipe_t pipe;   /* our end of the socketpair */
    uv_timer_t timer; /* handshake deadline */
    uv_connect_t connect;
    int handles; /* still open among tcp, pipe, timer */
    bool has_pipe;
    bool tcp_paused;  /* tcp reads stopped: the pipe is behind */
    bool pipe_paused; /* pipe reads stopped: the tcp is behind */
    bool closing;
    struct cluster_tls_conn *tls; /* NULL without TLS */
    struct cluster_tcheck check;  /* accepted only */
    struct buf out;               /* for the pipe */
    struct buf plain;             /* decrypted, not yet checked */
    struct buf cipher;            /* for the tcp */
    /* Dialed: the request, until libraft has its stream or the dial
     * failed (status, reported when the relay is freed). */
    struct raft_uv_connect *req;
    uint64_t dial_id;
    int req_status;
    char peer[64]; /* ip:port of the socket */
    char sink[64]; /* accepted: reads from the socketpair, discarded */
};

/* One write into the socketpair or the socket, with its bytes. */
struct cluster_transport_write {
    uv_write_t req;
    struct cluster_transport_relay *r;
    uv_stream_t *to;
    struct buf data;
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

/* Relays */

static void
cluster_transport_relay_on_closed(uv_handle_t *h)
{
    struct cluster_transport_relay *r = h->data;
    struct cluster_transport *t = r->t;

    if (--r->handles > 0) {
        return;
    }
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else {
        t->relays = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    }
    if (!r->outbound) {
        t->n_relays--;
    }
    if (r->req != NULL) {
        struct raft_uv_connect *req = r->req;
        r->req = NULL;
        req->cb(req, NULL, t->closing ? RAFT_CANCELED : r->req_status);
    }
    cluster_tls_conn_free(r->tls);
    cluster_tcheck_fini(&r->check);
    buf_fini(&r->out);
    buf_fini(&r->plain);
    buf_fini(&r->cipher);
    free(r);
    cluster_transport_maybe_closed(t);
}

/* Close the peer's socket and our end of the socketpair: libraft then
 * reads EOF and closes its end itself. */
static void
cluster_transport_relay_close(struct cluster_transport_relay *r)
{
    if (r->closing) {
        return;
    }
    r->closing = true;
    uv_close((uv_handle_t *)&r->tcp, cluster_transport_relay_on_closed);
    uv_close((uv_handle_t *)&r->timer, cluster_transport_relay_on_closed);
    if (r->has_pipe) {
        uv_close((uv_handle_t *)&r->pipe, cluster_transport_relay_on_closed);
    }
}

static void
cluster_transport_relay_refuse(struct cluster_transport_relay *r,
                               const char *why)
{
    r->t->refused++;
    if (r->outbound) {
        LOG_WARN("cluster_transport: raft peer %llu at %s: %s: connection "
                 "dropped",
                 (unsigned long long)r->dial_id, r->peer, why);
    } else if (r->check.peer_id != 0) {
        LOG_WARN("cluster_transport: raft peer %s (claims id %llu): %s: "
                 "connection dropped",
                 r->peer, (unsigned long long)r->check.peer_id, why);
    } else {
        LOG_WARN("cluster_transport: raft peer %s: %s: connection dropped",
                 r->peer, why);
    }
    cluster_transport_relay_close(r);
}

static void
cluster_transport_relay_on_timer(uv_timer_t *timer)
{
    struct cluster_transport_relay *r = timer->data;

    cluster_transport_relay_refuse(r, "no handshake in time");
}

static void cluster_transport_relay_on_read(uv_stream_t *s, ssize_t nread,
                                            const uv_buf_t *buf);
static void cluster_transport_pipe_on_read(uv_stream_t *s, ssize_t nread,
                                           const uv_buf_t *buf);

static void
cluster_transport_relay_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = km_malloc(64 * 1024);
    buf->len = 64 * 1024;
}

static void
cluster_transport_pipe_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct cluster_transport_relay *r = h->data;

    if (r->outbound) {
        cluster_transport_relay_alloc(h, suggested, buf);
        return;
    }
    buf->base = r->sink; /* libraft writes nothing here: discarded */
    buf->len = sizeof(r->sink);
}

static void
cluster_transport_relay_on_write(uv_write_t *req, int status)
{
    struct cluster_transport_write *w = req->data;
    struct cluster_transport_relay *r = w->r;
    uv_stream_t *to = w->to;

    buf_fini(&w->data);
    free(w);
    if (r->closing) {
        return;
    }
    if (status != 0) {
        LOG_DEBUG("cluster_transport: raft peer %s: relay: %s", r->peer,
                  uv_strerror(status));
        cluster_transport_relay_close(r);
        return;
    }
    if (uv_stream_get_write_queue_size(to) >= CLUSTER_TRANSPORT_LOW_WATER) {
        return;
    }
    if (to == (uv_stream_t *)&r->pipe && r->tcp_paused) {
        r->tcp_paused = false;
        (void)uv_read_start((uv_stream_t *)&r->tcp,
                            cluster_transport_relay_alloc,
                            cluster_transport_relay_on_read);
    } else if (to == (uv_stream_t *)&r->tcp && r->pipe_paused) {
        r->pipe_paused = false;
        (void)uv_read_start((uv_stream_t *)&r->pipe,
                            cluster_transport_pipe_alloc,
                            cluster_transport_pipe_on_read);
    }
}

/* Write (and empty) `b` to `to`; stop reading the other side while `to`
 * is far behind. Closes the relay on failure. */
static void
cluster_transport_relay_send(struct cluster_transport_relay *r, uv_stream_t *to,
                             struct buf *b)
{
    struct cluster_transport_write *w;
    uv_buf_t ub;
    int rv;

    if (b->len == 0 || r->closing) {
        buf_reset(b);
        return;
    }
    w = km_calloc(1, sizeof(*w));
    w->r = r;
    w->to = to;
    w->req.data = w;
    buf_init(&w->data);
    buf_move(&w->data, b);
    ub = uv_buf_init(w->data.data, (unsigned)w->data.len);
    rv = uv_write(&w->req, to, &ub, 1, cluster_transport_relay_on_write);
    if (rv != 0) {
        buf_fini(&w->data);
        free(w);
        LOG_DEBUG("cluster_transport: raft peer %s: relay: %s", r->peer,
                  uv_strerror(rv));
        cluster_transport_relay_close(r);
        return;
    }
    if (uv_stream_get_write_queue_size(to) <= CLUSTER_TRANSPORT_HIGH_WATER) {
        return;
    }
    if (to == (uv_stream_t *)&r->pipe && !r->tcp_paused) {
        r->tcp_paused = true;
        (void)uv_read_stop((uv_stream_t *)&r->tcp);
    } else if (to == (uv_stream_t *)&r->tcp && !r->pipe_paused) {
        r->pipe_paused = true;
        (void)uv_read_stop((uv_stream_t *)&r->pipe);
    }
}

/* Accepted: libraft never writes, and EOF means it closed its end.
 * Dialed: libraft's messages, to encrypt for the peer. */
static void
cluster_transport_pipe_on_read(uv_stream_t *s, ssize_t nread,
                               const uv_buf_t *buf)
{
    struct cluster_transport_relay *r = s->data;
    const char *why = NULL;

    if (nread < 0) {
        if (r->outbound) {
            free(buf->base);
        }
        cluster_transport_relay_close(r);
        return;
    }
    if (!r->outbound) {
        return;
    }
    if (nread > 0 && !r->closing &&
        cluster_tls_conn_write(r->tls, buf->base, (size_t)nread, &r->cipher,
                               &why) != 0) {
        free(buf->base);
        cluster_transport_relay_refuse(r, why);
        return;
    }
    free(buf->base);
    cluster_transport_relay_send(r, (uv_stream_t *)&r->tcp, &r->cipher);
}

/* Open a socketpair: our end in r->pipe, reading; libraft's in *theirs. */
static int
cluster_transport_relay_pair(struct cluster_transport_relay *r,
                             uv_stream_t **theirs_out)
{
    struct cluster_transport *t = r->t;
    uv_pipe_t *theirs;
    int fds[2];
    int rv;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        return -errno;
    }
    (void)uv_pipe_init(t->loop, &r->pipe, 0);
    r->pipe.data = r;
    r->has_pipe = true;
    r->handles++;
    rv = uv_pipe_open(&r->pipe, fds[0]);
    if (rv != 0) {
        close(fds[0]);
        close(fds[1]);
        return rv;
    }
    /* raft frees the streams it is handed with raft_free(). */
    theirs = raft_calloc(1, sizeof(*theirs));
    if (theirs == NULL) {
        close(fds[1]);
        return KM_ENOMEM;
    }
    (void)uv_pipe_init(t->loop, theirs, 0);
    rv = uv_pipe_open(theirs, fds[1]);
    if (rv != 0) {
        close(fds[1]);
        uv_close((uv_handle_t *)theirs, (uv_close_cb)raft_free);
        return rv;
    }
    (void)uv_read_start((uv_stream_t *)&r->pipe, cluster_transport_pipe_alloc,
                        cluster_transport_pipe_on_read);
    *theirs_out = (uv_stream_t *)theirs;
    return 0;
}

/* The raft handshake passed (and with TLS, the certificate names the id
 * it claims): give libraft its end of a socketpair. */
static int
cluster_transport_relay_accept(struct cluster_transport_relay *r)
{
    struct cluster_transport *t = r->t;
    uv_stream_t *theirs;
    int rv;

    rv = cluster_transport_relay_pair(r, &theirs);
    if (rv != 0) {
        return rv;
    }
    uv_timer_stop(&r->timer);
    LOG_DEBUG("cluster_transport: raft peer %s: id %llu at %s accepted%s",
              r->peer, (unsigned long long)r->check.peer_id, r->check.peer_addr,
              r->tls != NULL ? " (TLS)" : "");
    t->accept_cb(t->pub, r->check.peer_id, r->check.peer_addr, theirs);
    return 0;
}

static void cluster_transport_handshake(const struct cluster_transport *t,
                                        uv_buf_t *buf);

/* Dialed with TLS, the handshake done: check the server's certificate
 * names the node we dialed, send the raft handshake through the tunnel
 * and give libraft its end. */
static int
cluster_transport_relay_dialed(struct cluster_transport_relay *r,
                               const char **why)
{
    struct raft_uv_connect *req = r->req;
    uv_stream_t *theirs;
    uv_buf_t hs;
    int rv;

    if (!cluster_tls_conn_names_node(r->tls, r->dial_id)) {
        snprintf(r->sink, sizeof(r->sink),
                 "certificate does not name node-%llu",
                 (unsigned long long)r->dial_id);
        *why = r->sink;
        return KM_EPROTO;
    }
    cluster_transport_handshake(r->t, &hs);
    rv = cluster_tls_conn_write(r->tls, hs.base, hs.len, &r->cipher, why);
    free(hs.base);
    if (rv != 0) {
        return rv;
    }
    rv = cluster_transport_relay_pair(r, &theirs);
    if (rv != 0) {
        *why = "socketpair failed";
        return rv;
    }
    uv_timer_stop(&r->timer);
    r->req = NULL;
    req->cb(req, theirs, 0);
    return 0;
}

static void
cluster_transport_relay_on_read(uv_stream_t *s, ssize_t nread,
                                const uv_buf_t *buf)
{
    struct cluster_transport_relay *r = s->data;
    const char *why = NULL;
    struct buf *plain = &r->plain;
    int rv = 0;

    if (r->closing) {
        free(buf->base);
        return;
    }
    if (nread < 0) {
        free(buf->base);
        if (nread != UV_EOF) {
            LOG_DEBUG("cluster_transport: raft peer %s: %s", r->peer,
                      uv_strerror((int)nread));
        }
        if (r->tls != NULL && !cluster_tls_conn_is_ready(r->tls)) {
            /* The other end gave up during the handshake: it refused us,
             * or it is no peer. */
            cluster_transport_relay_refuse(r, "closed during the TLS "
                                              "handshake");
            return;
        }
        cluster_transport_relay_close(r);
        return;
    }
    if (r->tls != NULL) {
        rv = cluster_tls_conn_feed(r->tls, buf->base, (size_t)nread, plain,
                                   &r->cipher, &why);
        free(buf->base);
        cluster_transport_relay_send(r, (uv_stream_t *)&r->tcp, &r->cipher);
        if (rv != 0) {
            cluster_transport_relay_refuse(r, why);
            return;
        }
        if (r->outbound) {
            buf_reset(plain); /* libraft expects nothing on its dials */
            if (r->req != NULL && cluster_tls_conn_is_ready(r->tls)) {
                rv = cluster_transport_relay_dialed(r, &why);
                cluster_transport_relay_send(r, (uv_stream_t *)&r->tcp,
                                             &r->cipher);
                if (rv != 0) {
                    r->req_status = RAFT_NOCONNECTION;
                    cluster_transport_relay_refuse(r, why);
                }
            }
            return;
        }
    } else {
        buf_reset(plain);
        buf_append(plain, buf->base, (size_t)nread);
        free(buf->base);
    }
    rv = cluster_tcheck_feed(&r->check, plain->data, plain->len, &r->out);
    buf_reset(plain);
    if (!r->has_pipe && r->check.handshake_done) {
        int arv;
        /* With TLS, the certificate must name the id the peer claims,
         * before libraft hears of the connection. */
        if (r->tls != NULL &&
            !cluster_tls_conn_names_node(r->tls, r->check.peer_id)) {
            char msg[sizeof(r->check.why)];
            snprintf(msg, sizeof(msg), "certificate %s does not name node-%llu",
                     cluster_tls_conn_peer_subject(r->tls),
                     (unsigned long long)r->check.peer_id);
            cluster_transport_relay_refuse(r, msg);
            return;
        }
        arv = cluster_transport_relay_accept(r);
        if (arv != 0) {
            LOG_WARN("cluster_transport: raft peer %s: socketpair: %s", r->peer,
                     uv_strerror(arv));
            cluster_transport_relay_close(r);
            return;
        }
    }
    if (r->has_pipe) {
        /* What passed before a refused unit is whole and valid. */
        cluster_transport_relay_send(r, (uv_stream_t *)&r->pipe, &r->out);
    }
    if (rv != 0 && !r->closing) {
        cluster_transport_relay_refuse(r, r->check.why);
    }
}

static bool
cluster_transport_member_any(void *ctx, uint64_t id, const char *address,
                             bool *voter)
{
    (void)ctx;
    (void)id;
    (void)address;
    *voter = true;
    return true;
}

/* Pick up changed TLS files before a new connection uses them. */
static void
cluster_transport_tls_reload(struct cluster_transport *t)
{
    char err[256];
    int rv;

    if (t->policy.tls == NULL) {
        return;
    }
    rv = cluster_tls_maybe_reload(t->policy.tls, err, sizeof(err));
    if (rv == 1) {
        LOG_INFO("cluster_transport: TLS files reloaded (certificate "
                 "valid until %lld)",
                 (long long)cluster_tls_cert_expiry(t->policy.tls));
    } else if (rv < 0) {
        LOG_ERROR("cluster_transport: TLS reload: %s: keeping the files "
                  "loaded before",
                  err);
    }
}

static void
cluster_transport_on_reload_timer(uv_timer_t *h)
{
    cluster_transport_tls_reload(h->data);
}

static struct cluster_transport_relay *
cluster_transport_relay_new(struct cluster_transport *t, bool outbound)
{
    struct cluster_transport_relay *r = km_calloc(1, sizeof(*r));

    r->t = t;
    r->outbound = outbound;
    uv_tcp_init(t->loop, &r->tcp);
    uv_timer_init(t->loop, &r->timer);
    r->tcp.data = r;
    r->timer.data = r;
    r->connect.data = r;
    r->handles = 2;
    buf_init(&r->out);
    buf_init(&r->plain);
    buf_init(&r->cipher);
    cluster_tcheck_init(&r->check, &t->policy.limits,
                        t->policy.is_member != NULL
                            ? t->policy.is_member
                            : cluster_transport_member_any,
                        t->policy.ctx);
    snprintf(r->peer, sizeof(r->peer), "?");
    if (t->policy.tls != NULL) {
        r->tls = cluster_tls_conn_new(t->policy.tls, !outbound);
    }
    r->next = t->relays;
    if (r->next != NULL) {
        r->next->prev = r;
    }
    t->relays = r;
    if (!outbound) {
        t->n_relays++;
    }
    return r;
}

static void
cluster_transport_on_connection(uv_stream_t *server, int status)
{
    struct cluster_transport *t = server->data;
    struct cluster_transport_relay *r;
    struct sockaddr_storage sa;
    int salen = sizeof(sa);
    char ip[INET6_ADDRSTRLEN] = "?";

    if (status != 0 || t->closing) {
        return;
    }
    cluster_transport_tls_reload(t);
    r = cluster_transport_relay_new(t, false);
    if (uv_accept(server, (uv_stream_t *)&r->tcp) != 0) {
        cluster_transport_relay_close(r);
        return;
    }
    if (uv_tcp_getpeername(&r->tcp, (struct sockaddr *)&sa, &salen) == 0) {
        int port = 0;
        if (sa.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        }
        snprintf(r->peer, sizeof(r->peer), "%s:%d", ip, port);
    }
    if (t->n_relays > CLUSTER_TRANSPORT_MAX_RELAYS) {
        cluster_transport_relay_refuse(r, "too many raft connections");
        return;
    }
    cluster_transport_tune(&r->tcp);
    uv_timer_start(&r->timer, cluster_transport_relay_on_timer,
                   CLUSTER_TRANSPORT_HANDSHAKE_MS, 0);
    (void)uv_read_start((uv_stream_t *)&r->tcp, cluster_transport_relay_alloc,
                        cluster_transport_relay_on_read);
}

/* Dialed with TLS: the TCP connection is up, start the TLS handshake. */
static void
cluster_transport_relay_on_connect(uv_connect_t *c, int status)
{
    struct cluster_transport_relay *r = c->data;
    const char *why = NULL;

    if (r->closing || r->t->closing) {
        return;
    }
    if (status != 0) {
        r->req_status = RAFT_NOCONNECTION;
        cluster_transport_relay_close(r);
        return;
    }
    if (cluster_tls_conn_start(r->tls, &r->cipher, &why) != 0) {
        r->req_status = RAFT_NOCONNECTION;
        cluster_transport_relay_refuse(r, why);
        return;
    }
    cluster_transport_relay_send(r, (uv_stream_t *)&r->tcp, &r->cipher);
    uv_timer_start(&r->timer, cluster_transport_relay_on_timer,
                   CLUSTER_TRANSPORT_HANDSHAKE_MS, 0);
    (void)uv_read_start((uv_stream_t *)&r->tcp, cluster_transport_relay_alloc,
                        cluster_transport_relay_on_read);
}

/* Dial `id` at sa through a TLS relay. */
static void
cluster_transport_relay_dial(struct cluster_transport *t,
                             struct raft_uv_connect *req, raft_id id,
                             const char *address,
                             const struct sockaddr_storage *sa)
{
    struct cluster_transport_relay *r;
    int rv;

    cluster_transport_tls_reload(t);
    r = cluster_transport_relay_new(t, true);
    r->req = req;
    r->dial_id = id;
    r->req_status = RAFT_NOCONNECTION;
    snprintf(r->peer, sizeof(r->peer), "%s", address);
    cluster_transport_tune(&r->tcp);
    rv = uv_tcp_connect(&r->connect, &r->tcp, (const struct sockaddr *)sa,
                        cluster_transport_relay_on_connect);
    if (rv != 0) {
        cluster_transport_relay_close(r); /* fails req when freed */
    }
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
cluster_transport_foreach_conn(
    const struct raft_uv_transport *pub,
    void (*fn)(void *arg, const struct cluster_transport_conn *c), void *arg)
{
    const struct cluster_transport *t = pub->impl;

    for (const struct cluster_transport_relay *r = t->relays; r != NULL;
         r = r->next) {
        struct cluster_transport_conn c = {
            .id = r->outbound ? r->dial_id : r->check.peer_id,
            .outbound = r->outbound,
            .tls = r->tls != NULL && cluster_tls_conn_is_ready(r->tls),
        };
        if (r->closing || (!r->outbound && !r->has_pipe)) {
            continue; /* not (or no longer) a peer's connection */
        }
        if (c.tls) {
            c.cert_expiry = cluster_tls_conn_peer_expiry(r->tls);
        }
        fn(arg, &c);
    }
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
