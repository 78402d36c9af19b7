/* cluster_link.c - NNG REQ/REP endpoint for node-to-node requests. Owns
 * the REP socket and its contexts, one REQ socket per peer, and every
 * request in flight. NNG completions run on NNG's threads and only queue
 * the finished item under `mtx` and wake the loop (CLUSTER.md §1.3); the
 * loop drains the whole queue, advances each item and calls the host.
 * The only file that calls nng_*; envelopes are coded by
 * cluster_msg_link.c. Does not retry: a request gets one deadline. */
#include "cluster_link.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <uv.h>

#include "base/buf.h"
#include "base/km.h"
#include "base/log.h"
#include "cluster_link_int.h"

static int
cluster_link_nng_err(int rv)
{
    switch (rv) {
    case 0:
        return 0;
    case NNG_ETIMEDOUT:
        return KM_ETIMEDOUT;
    case NNG_EADDRINUSE:
        return -EADDRINUSE;
    case NNG_EADDRINVAL:
    case NNG_EINVAL:
    case NNG_ENOTSUP:
        return KM_EINVAL;
    case NNG_ECANCELED:
    case NNG_ECLOSED:
        return KM_ECANCELED;
    case NNG_EMSGSIZE:
        return KM_E2BIG;
    default:
        return KM_EIO;
    }
}

/* NNG thread: hand `it` to the loop. Touches nothing but the queue. */
static void
cluster_link_push(struct cluster_link *l, struct cluster_link_item *it)
{
    uv_mutex_lock(&l->mtx);
    it->next = NULL;
    if (l->tail != NULL) {
        l->tail->next = it;
    } else {
        l->head = it;
    }
    l->tail = it;
    uv_mutex_unlock(&l->mtx);
    uv_async_send(&l->async);
}

static void
cluster_link_on_req_aio(void *arg)
{
    struct cluster_link_req *q = arg;

    cluster_link_push(q->link, &q->item);
}

static void
cluster_link_on_rep_aio(void *arg)
{
    struct cluster_link_reply *r = arg;

    cluster_link_push(r->link, &r->item);
}

static struct cluster_link_peer *
cluster_link_peer_find(struct cluster_link *l, uint64_t node_id)
{
    for (struct cluster_link_peer *p = l->peers; p != NULL; p = p->next) {
        if (p->node_id == node_id) {
            return p;
        }
    }
    return NULL;
}

/* Build an nng message holding `env` encoded. */
int
cluster_link_msg_new(struct cluster_link *l, const struct cluster_link_env *env,
                     nng_msg **out)
{
    uint8_t *buf;
    size_t n;
    int rv;

    rv = cluster_msg_link_encode(env, l->max_msg_bytes, &buf, &n);
    if (rv != 0) {
        return rv == KM_E2BIG ? KM_EINVAL : rv;
    }
    rv = nng_msg_alloc(out, n);
    if (rv == 0) {
        memcpy(nng_msg_body(*out), buf, n);
    }
    free(buf);
    return cluster_link_nng_err(rv);
}

void
cluster_link_env_init(struct cluster_link *l, struct cluster_link_env *env,
                      uint64_t req_id, const struct cluster_link_msg *msg)
{
    memset(env, 0, sizeof(*env));
    env->version = CLUSTER_LINK_VERSION;
    memcpy(env->cluster_id, l->cluster_id, l->cluster_id_len);
    env->cluster_id_len = l->cluster_id_len;
    env->from_node = l->node_id;
    env->req_id = req_id;
    if (msg != NULL) {
        env->msg = *msg;
    }
}

/* Decode the message held by `aio` (then freed) and check that it comes
 * from our cluster and protocol version. */
int
cluster_link_take_env(struct cluster_link *l, nng_aio *aio,
                      struct cluster_link_env *env)
{
    nng_msg *m = nng_aio_get_msg(aio);
    int rv;

    nng_aio_set_msg(aio, NULL);
    rv = cluster_msg_link_decode(nng_msg_body(m), nng_msg_len(m),
                                 l->max_msg_bytes, env);
    nng_msg_free(m);
    if (rv != 0) {
        return rv;
    }
    if (env->version != CLUSTER_LINK_VERSION ||
        env->cluster_id_len != l->cluster_id_len ||
        memcmp(env->cluster_id, l->cluster_id, l->cluster_id_len) != 0) {
        return KM_EPROTO;
    }
    return 0;
}

/* Log a refused envelope from `node` once per claimed sender. */
void
cluster_link_warn_refused(struct cluster_link *l, uint64_t node,
                          const char *why)
{
    for (size_t i = 0; i < l->n_warned; i++) {
        if (l->warned[i] == node) {
            return;
        }
    }
    if (l->n_warned < CLUSTER_LINK_WARNED_MAX) {
        l->warned[l->n_warned++] = node;
    }
    LOG_WARN("cluster_link: node %llu: refused request from node %llu: %s",
             (unsigned long long)l->node_id, (unsigned long long)node, why);
}

/* Why a decoded request must be refused, or NULL. Only the nodes this
 * link knows as peers may send requests (issue 16: a request naming any
 * from_node was obeyed). Without TLS the claim itself is not
 * authenticated: see docs/security.md. */
const char *
cluster_link_refusal(struct cluster_link *l, int rv,
                     const struct cluster_link_env *env)
{
    struct cluster_link_peer *p;
    const char *why = NULL;

    if (rv == KM_E2BIG) {
        return "envelope above the size limit";
    }
    if (rv != 0) {
        return "not a well-formed envelope, or another cluster id or "
               "protocol version";
    }
    if (env->msg.kind == CLUSTER_LINK_NONE) {
        return "empty envelope";
    }
    if (env->from_node == l->node_id) {
        return "claims to be this node";
    }
    p = cluster_link_peer_find(l, env->from_node);
    if (p == NULL) {
        return "not a peer of this node";
    }
    if (l->host.check_proof == NULL ||
        (env->proof_len > 0 && env->proof_len == p->proof_in.len &&
         memcmp(env->proof, p->proof_in.data, env->proof_len) == 0)) {
        return NULL;
    }
    if (!l->host.check_proof(l->host.ctx, env->from_node, env->proof,
                             env->proof_len, &why)) {
        return why;
    }
    buf_reset(&p->proof_in);
    buf_append(&p->proof_in, env->proof, env->proof_len);
    return NULL;
}

/* Free the message an idle `aio` still owns after `stage`: a failed send
 * leaves it with us, and so does a receive not yet taken. A successful
 * send's message belongs to NNG, though the aio still points to it. */
void
cluster_link_aio_drop_msg(nng_aio *aio, enum cluster_link_stage stage)
{
    nng_msg *m = nng_aio_get_msg(aio);
    int rv = nng_aio_result(aio);

    if (m != NULL && ((stage == CLUSTER_LINK_STAGE_SEND && rv != 0) ||
                      (stage == CLUSTER_LINK_STAGE_RECV && rv == 0))) {
        nng_msg_free(m);
    }
    nng_aio_set_msg(aio, NULL);
}

/* Requests */

static void
cluster_link_req_finish(struct cluster_link_req *q, int status,
                        const struct cluster_link_msg *reply)
{
    struct cluster_link *l = q->link;

    if (q->prev != NULL) {
        q->prev->next = q->next;
    } else {
        l->reqs = q->next;
    }
    if (q->next != NULL) {
        q->next->prev = q->prev;
    }
    if (q->has_nng) {
        nng_aio_stop(q->aio);
        cluster_link_aio_drop_msg(q->aio, q->stage);
        nng_ctx_close(q->ctx);
        nng_aio_free(q->aio);
    }
    q->cb(q->arg, status, reply);
    free(q);
}

static void
cluster_link_req_advance(struct cluster_link_req *q)
{
    struct cluster_link *l = q->link;
    struct cluster_link_env env;
    uint64_t now;
    int rv;

    if (q->stage == CLUSTER_LINK_STAGE_NOPEER) {
        cluster_link_req_finish(q, KM_ENOENT, NULL);
        return;
    }
    rv = cluster_link_nng_err(nng_aio_result(q->aio));
    if (q->canceled) {
        rv = KM_ECANCELED;
    }
    if (rv != 0) {
        cluster_link_req_finish(q, rv, NULL);
        return;
    }
    if (q->stage == CLUSTER_LINK_STAGE_SEND) {
        nng_aio_set_msg(q->aio, NULL); /* NNG owns it now */
        now = uv_now(l->loop);
        if (now >= q->deadline_ms) {
            cluster_link_req_finish(q, KM_ETIMEDOUT, NULL);
            return;
        }
        q->stage = CLUSTER_LINK_STAGE_RECV;
        nng_aio_set_timeout(q->aio, (nng_duration)(q->deadline_ms - now));
        nng_ctx_recv(q->ctx, q->aio);
        return;
    }
    rv = cluster_link_take_env(l, q->aio, &env);
    if (rv == 0 &&
        (env.req_id != q->req_id || env.msg.kind == CLUSTER_LINK_NONE)) {
        rv = KM_EPROTO;
    }
    if (rv != 0) {
        cluster_msg_link_env_fini(&env);
        cluster_link_req_finish(q, KM_EPROTO, NULL);
        return;
    }
    cluster_link_req_finish(q, 0, &env.msg);
    cluster_msg_link_env_fini(&env);
}

int
cluster_link_request(struct cluster_link *l, uint64_t to_node,
                     const struct cluster_link_msg *req,
                     cluster_link_reply_cb cb, void *arg)
{
    struct cluster_link_peer *p;
    struct cluster_link_req *q;
    struct cluster_link_env env;
    nng_msg *m;
    int rv;

    if (l->closing) {
        return KM_ECLOSING;
    }
    q = km_calloc(1, sizeof(*q));
    q->item.is_req = true;
    q->link = l;
    q->cb = cb;
    q->arg = arg;
    q->req_id = ++l->next_req_id;
    q->to_node = to_node;
    q->deadline_ms = uv_now(l->loop) + l->timeout_ms;
    cluster_link_env_init(l, &env, q->req_id, req);
    p = cluster_link_peer_find(l, to_node);
    if (p != NULL && l->host.make_proof != NULL) {
        buf_reset(&p->proof_out);
        rv = l->host.make_proof(l->host.ctx, to_node, &p->proof_out);
        if (rv != 0) {
            goto err_after_alloc;
        }
        env.proof = (const uint8_t *)p->proof_out.data;
        env.proof_len = p->proof_out.len;
    }
    rv = cluster_link_msg_new(l, &env, &m);
    if (rv != 0) {
        goto err_after_alloc;
    }
    q->next = l->reqs;
    if (l->reqs != NULL) {
        l->reqs->prev = q;
    }
    l->reqs = q;
    if (p == NULL) {
        /* Reported through the queue so that cb never runs inside us. */
        nng_msg_free(m);
        q->stage = CLUSTER_LINK_STAGE_NOPEER;
        cluster_link_push(l, &q->item);
        return 0;
    }
    rv = nng_aio_alloc(&q->aio, cluster_link_on_req_aio, q);
    if (rv != 0) {
        goto err_after_msg;
    }
    rv = nng_ctx_open(&q->ctx, p->sock);
    if (rv != 0) {
        nng_aio_free(q->aio);
        goto err_after_msg;
    }
    q->has_nng = true;
    q->stage = CLUSTER_LINK_STAGE_SEND;
    nng_aio_set_msg(q->aio, m);
    nng_aio_set_timeout(q->aio, (nng_duration)l->timeout_ms);
    nng_ctx_send(q->ctx, q->aio);
    return 0;

err_after_msg:
    nng_msg_free(m);
    l->reqs = q->next;
    if (q->next != NULL) {
        q->next->prev = NULL;
    }
    rv = cluster_link_nng_err(rv);
err_after_alloc:
    free(q);
    return rv;
}

/* Loop */

static void
cluster_link_on_async(uv_async_t *h)
{
    struct cluster_link *l = h->data;
    struct cluster_link_item *it;

    if (l->closing) {
        return;
    }
    uv_mutex_lock(&l->mtx);
    it = l->head;
    l->head = l->tail = NULL;
    uv_mutex_unlock(&l->mtx);
    /* A callback may close the link: the requests left in `it` are then
     * finished already, and the contexts are released by the close. */
    while (it != NULL && !l->closing) {
        struct cluster_link_item *next = it->next;
        if (it->is_req) {
            cluster_link_req_advance((struct cluster_link_req *)it);
        } else {
            cluster_link_rep_advance((struct cluster_link_reply *)it);
        }
        it = next;
    }
}

/* TLS */

static char *
cluster_link_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    struct buf b;
    char tmp[4096];
    size_t n;

    if (f == NULL) {
        return NULL;
    }
    buf_init(&b);
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
        buf_append(&b, tmp, n);
    }
    fclose(f);
    return b.data != NULL ? b.data : km_strdup(""); /* NUL-terminated */
}

/* "tcp://..." as NNG's "tls+tcp://..." when TLS is on (caller frees). */
static char *
cluster_link_url(const struct cluster_link *l, const char *url)
{
    if (l->tls && strncmp(url, "tcp://", 6) == 0) {
        return km_asprintf("tls+%s", url);
    }
    return km_strdup(url);
}

/* A TLS configuration: the cluster CA only, our certificate, the peer's
 * required; a client expects the server to be `server_name`. */
static int
cluster_link_tls_config(const struct cluster_link *l, bool server,
                        const char *server_name, nng_tls_config **out)
{
    nng_tls_config *cfg;
    int rv;

    rv = nng_tls_config_alloc(&cfg, server ? NNG_TLS_MODE_SERVER
                                           : NNG_TLS_MODE_CLIENT);
    if (rv != 0) {
        return cluster_link_nng_err(rv);
    }
    rv = nng_tls_config_ca_chain(cfg, l->ca_pem, NULL);
    if (rv == 0) {
        rv = nng_tls_config_own_cert(cfg, l->cert_pem, l->key_pem, NULL);
    }
    if (rv == 0) {
        rv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED);
    }
    if (rv == 0 && server_name != NULL) {
        rv = nng_tls_config_server_name(cfg, server_name);
    }
    if (rv != 0) {
        nng_tls_config_free(cfg);
        return KM_ECONFIG;
    }
    *out = cfg;
    return 0;
}

static int
cluster_link_tls_open(struct cluster_link *l,
                      const struct cluster_link_config *cfg)
{
    const char *files[3] = {cfg->tls_ca, cfg->tls_cert, cfg->tls_key};
    char **dst[3] = {&l->ca_pem, &l->cert_pem, &l->key_pem};
    int rv;

    for (int i = 0; i < 3; i++) {
        if (files[i] == NULL ||
            (*dst[i] = cluster_link_read_file(files[i])) == NULL) {
            LOG_ERROR("cluster_link: TLS file %s: cannot be read",
                      files[i] != NULL ? files[i] : "(none)");
            return KM_ECONFIG;
        }
    }
    l->tls = true;
    rv = cluster_link_tls_config(l, true, NULL, &l->tls_server);
    if (rv != 0) {
        LOG_ERROR("cluster_link: TLS: NNG refused the certificate, key or "
                  "CA (%s, %s, %s)",
                  cfg->tls_cert, cfg->tls_key, cfg->tls_ca);
    }
    return rv;
}

/* Apply the options of CLUSTER.md §1.3 to `s`. */
static int
cluster_link_sock_opts(struct cluster_link *l, nng_socket s)
{
    int rv;

    /* RECVMAXSZ defaults to unlimited: any peer could make us allocate
     * without bound. */
    rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, l->max_msg_bytes);
    if (rv == 0) {
        rv = nng_socket_set_ms(s, NNG_OPT_RECONNMINT,
                               CLUSTER_LINK_RECONN_MIN_MS);
    }
    if (rv == 0) {
        rv = nng_socket_set_ms(s, NNG_OPT_RECONNMAXT,
                               CLUSTER_LINK_RECONN_MAX_MS);
    }
    return cluster_link_nng_err(rv);
}

static int
cluster_link_listen(struct cluster_link *l, const char *url)
{
    int rv;

    rv = nng_rep0_open(&l->rep);
    if (rv != 0) {
        return cluster_link_nng_err(rv);
    }
    l->has_rep = true;
    rv = cluster_link_sock_opts(l, l->rep);
    if (rv != 0) {
        return rv;
    }
    for (size_t i = 0; i < CLUSTER_LINK_REP_CTXS; i++) {
        struct cluster_link_reply *r = &l->reps[i];
        r->link = l;
        rv = nng_aio_alloc(&r->aio, cluster_link_on_rep_aio, r);
        if (rv != 0) {
            return cluster_link_nng_err(rv);
        }
        rv = nng_ctx_open(&r->ctx, l->rep);
        if (rv != 0) {
            nng_aio_free(r->aio);
            return cluster_link_nng_err(rv);
        }
        l->n_reps++;
    }
    {
        char *u = cluster_link_url(l, url);
        nng_listener lst;
        rv = nng_listener_create(&lst, l->rep, u);
        free(u);
        if (rv == 0 && l->tls) {
            rv = nng_listener_set_ptr(lst, NNG_OPT_TLS_CONFIG, l->tls_server);
        }
        if (rv == 0) {
            rv = nng_listener_start(lst, 0);
        }
    }
    if (rv != 0) {
        return cluster_link_nng_err(rv);
    }
    for (size_t i = 0; i < l->n_reps; i++) {
        cluster_link_rep_recv(&l->reps[i]);
    }
    return 0;
}

/* Stop every NNG operation and close every socket. Blocks until NNG's
 * callbacks have returned, so none can touch the link afterwards. */
static void
cluster_link_stop_nng(struct cluster_link *l)
{
    struct cluster_link_peer *p;

    for (size_t i = 0; i < l->n_reps; i++) {
        nng_aio_stop(l->reps[i].aio);
    }
    for (struct cluster_link_req *q = l->reqs; q != NULL; q = q->next) {
        if (q->has_nng) {
            nng_aio_stop(q->aio);
        }
    }
    if (l->has_rep) {
        nng_close(l->rep);
        l->has_rep = false;
    }
    while ((p = l->peers) != NULL) {
        l->peers = p->next;
        nng_close(p->sock);
        buf_fini(&p->proof_out);
        buf_fini(&p->proof_in);
        free(p->url);
        free(p);
    }
}

static void
cluster_link_free(struct cluster_link *l)
{
    for (size_t i = 0; i < l->n_reps; i++) {
        struct cluster_link_reply *r = &l->reps[i];
        cluster_link_aio_drop_msg(r->aio, r->stage);
        nng_aio_free(r->aio);
    }
    uv_mutex_destroy(&l->mtx);
    if (l->tls_server != NULL) {
        nng_tls_config_free(l->tls_server);
    }
    free(l->ca_pem);
    free(l->cert_pem);
    if (l->key_pem != NULL) {
        explicit_bzero(l->key_pem, strlen(l->key_pem));
        free(l->key_pem);
    }
    free(l);
}

static void
cluster_link_on_async_closed(uv_handle_t *h)
{
    struct cluster_link *l = h->data;
    cluster_link_close_cb cb = l->close_cb;
    void *arg = l->close_arg;

    cluster_link_free(l);
    if (cb != NULL) {
        cb(arg);
    }
}

int
cluster_link_open(uv_loop_t *loop, const struct cluster_link_config *cfg,
                  const struct cluster_link_host *host,
                  struct cluster_link **out)
{
    struct cluster_link *l;
    int rv;

    if (cfg->cluster_id_len > CLUSTER_LINK_ID_MAX ||
        (cfg->cluster_id_len > 0 && cfg->cluster_id == NULL) ||
        (cfg->listen_url != NULL && host->on_request == NULL)) {
        return KM_EINVAL;
    }
    l = km_calloc(1, sizeof(*l));
    l->loop = loop;
    l->node_id = cfg->node_id;
    if (cfg->cluster_id_len > 0) {
        memcpy(l->cluster_id, cfg->cluster_id, cfg->cluster_id_len);
    }
    l->cluster_id_len = cfg->cluster_id_len;
    l->max_msg_bytes = cfg->max_msg_bytes != 0 ? cfg->max_msg_bytes
                                               : CLUSTER_LINK_MAX_MSG_DEFAULT;
    l->timeout_ms = cfg->request_timeout_ms != 0 ? cfg->request_timeout_ms
                                                 : CLUSTER_LINK_TIMEOUT_DEFAULT;
    l->host = *host;
    rv = uv_mutex_init(&l->mtx);
    if (rv != 0) {
        goto err_after_alloc;
    }
    rv = uv_async_init(loop, &l->async, cluster_link_on_async);
    if (rv != 0) {
        goto err_after_mutex;
    }
    l->async.data = l;
    if (cfg->tls_ca != NULL || cfg->tls_cert != NULL || cfg->tls_key != NULL) {
        rv = cluster_link_tls_open(l, cfg);
        if (rv != 0) {
            goto err_after_async;
        }
    }
    if (cfg->listen_url != NULL) {
        rv = cluster_link_listen(l, cfg->listen_url);
        if (rv != 0) {
            goto err_after_async;
        }
    }
    *out = l;
    return 0;

err_after_async:
    l->closing = true;
    cluster_link_stop_nng(l);
    l->head = l->tail = NULL; /* nothing was received yet */
    uv_close((uv_handle_t *)&l->async, cluster_link_on_async_closed);
    return rv;
err_after_mutex:
    uv_mutex_destroy(&l->mtx);
err_after_alloc:
    free(l);
    return rv;
}

/* Dial peer p; with TLS its certificate must name node-<its id>. An NNG
 * error code. */
static int
cluster_link_dial(struct cluster_link *l, struct cluster_link_peer *p)
{
    char *u = cluster_link_url(l, p->url);
    char name[32];
    nng_tls_config *cfg = NULL;
    nng_dialer d;
    int rv;

    rv = nng_dialer_create(&d, p->sock, u);
    free(u);
    if (rv == 0 && l->tls) {
        snprintf(name, sizeof(name), "node-%llu",
                 (unsigned long long)p->node_id);
        if (cluster_link_tls_config(l, false, name, &cfg) != 0) {
            rv = NNG_EINVAL;
        } else {
            rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg);
            nng_tls_config_free(cfg); /* the dialer holds it */
        }
    }
    if (rv == 0) {
        rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK);
    }
    return rv;
}

int
cluster_link_add_peer(struct cluster_link *l, uint64_t node_id, const char *url)
{
    struct cluster_link_peer *p;
    int rv;

    if (l->closing) {
        return KM_ECLOSING;
    }
    if (cluster_link_peer_find(l, node_id) != NULL) {
        return KM_EEXIST;
    }
    p = km_calloc(1, sizeof(*p));
    p->node_id = node_id;
    p->url = km_strdup(url);
    buf_init(&p->proof_out);
    buf_init(&p->proof_in);
    rv = nng_req0_open(&p->sock);
    if (rv != 0) {
        rv = cluster_link_nng_err(rv);
        goto err_after_alloc;
    }
    rv = cluster_link_sock_opts(l, p->sock);
    if (rv != 0) {
        goto err_after_sock;
    }
    /* REQ resends silently after RESENDTIME (60 s by default); we keep one
     * deadline per request instead, so never resend. */
    rv = nng_socket_set_ms(p->sock, NNG_OPT_REQ_RESENDTIME,
                           NNG_DURATION_INFINITE);
    if (rv == 0) {
        rv = cluster_link_dial(l, p);
    }
    if (rv != 0) {
        rv = cluster_link_nng_err(rv);
        goto err_after_sock;
    }
    p->next = l->peers;
    l->peers = p;
    return 0;

err_after_sock:
    nng_close(p->sock);
err_after_alloc:
    free(p->url);
    free(p);
    return rv;
}

int
cluster_link_remove_peer(struct cluster_link *l, uint64_t node_id)
{
    struct cluster_link_peer **pp = &l->peers;

    while (*pp != NULL && (*pp)->node_id != node_id) {
        pp = &(*pp)->next;
    }
    if (*pp == NULL) {
        return KM_ENOENT;
    }
    struct cluster_link_peer *p = *pp;
    *pp = p->next;
    /* Closing the socket aborts its contexts (NNG may report a reset
     * rather than NNG_ECLOSED); their requests end with KM_ECANCELED. */
    for (struct cluster_link_req *q = l->reqs; q != NULL; q = q->next) {
        if (q->to_node == node_id && q->has_nng) {
            q->canceled = true;
        }
    }
    nng_close(p->sock);
    buf_fini(&p->proof_out);
    buf_fini(&p->proof_in);
    free(p->url);
    free(p);
    return 0;
}

void
cluster_link_close(struct cluster_link *l, cluster_link_close_cb cb, void *arg)
{
    struct cluster_link_req *q;

    KM_ASSERT(!l->closing);
    l->closing = true;
    l->close_cb = cb;
    l->close_arg = arg;
    cluster_link_stop_nng(l);
    /* Every NNG callback has returned: the queue is ours alone. Its items
     * are all in l->reqs or l->reps, finished below. */
    l->head = l->tail = NULL;
    while ((q = l->reqs) != NULL) {
        cluster_link_req_finish(q, KM_ECLOSING, NULL);
    }
    uv_close((uv_handle_t *)&l->async, cluster_link_on_async_closed);
}

void
cluster_link_global_fini(void)
{
    nng_fini();
}
