/* cluster_transport_int.h - shared inside the raft transport: its
 * state, the relay of one connection (cluster_transport_relay.c) and what
 * the two files call of each other. Loop thread only. */
#ifndef KUMO_CLUSTER_TRANSPORT_INT_H
#define KUMO_CLUSTER_TRANSPORT_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/buf.h"
#include "cluster_transport.h"
#include "cluster_transport_check.h"

struct cluster_tls_conn;

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

/* Socket options of every raft connection. */
void cluster_transport_tune(uv_tcp_t *tcp);
/* Fire the close callback once everything is closed. */
void cluster_transport_maybe_closed(struct cluster_transport *t);
/* raft_uv_tcp's handshake for our id and address (buf->base malloc'd). */
void cluster_transport_handshake(const struct cluster_transport *t,
                                 uv_buf_t *buf);

/* cluster_transport_relay.c */
void cluster_transport_on_connection(uv_stream_t *server, int status);
void cluster_transport_relay_dial(struct cluster_transport *t,
                                  struct raft_uv_connect *req, raft_id id,
                                  const char *address,
                                  const struct sockaddr_storage *sa);
void cluster_transport_relay_close(struct cluster_transport_relay *r);
void cluster_transport_on_reload_timer(uv_timer_t *h);

#endif /* KUMO_CLUSTER_TRANSPORT_INT_H */
