/* cluster_transport_relay.c - one relayed raft connection (see
 * cluster_transport.c for why): accepted, the peer's stream (TLS or not)
 * is checked by cluster_transport_check and written into the socketpair
 * libraft reads; dialed with TLS, libraft's plaintext from the socketpair
 * is encrypted for the peer. Owns the relay's handles and buffers; the
 * transport owns the list. Loop thread only. */
#include "cluster_transport_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/km.h"
#include "base/log.h"
#include "cluster_tls.h"

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
void
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

void
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

void
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
void
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
