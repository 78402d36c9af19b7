/* cluster_link_reply.c - the serving side of the node link: requests
 * received on the REP contexts, checked (sender, envelope), handed to the
 * host, and their replies sent back. Dialing and requests are
 * cluster_link.c. Loop thread, with NNG's callbacks only queuing work. */
#include "base/buf.h"
#include "base/km.h"
#include "base/log.h"
#include "cluster_link_int.h"
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* Replies */

void
cluster_link_rep_recv(struct cluster_link_reply *r)
{
    r->stage = CLUSTER_LINK_STAGE_RECV;
    nng_aio_set_timeout(r->aio, NNG_DURATION_INFINITE);
    nng_ctx_recv(r->ctx, r->aio);
}

/* Send `env` as the reply of `r`. */
static int
cluster_link_rep_send_env(struct cluster_link_reply *r,
                          const struct cluster_link_env *env)
{
    nng_msg *m;
    int rv;

    rv = cluster_link_msg_new(r->link, env, &m);
    if (rv != 0) {
        return rv;
    }
    r->stage = CLUSTER_LINK_STAGE_SEND;
    nng_aio_set_msg(r->aio, m);
    nng_aio_set_timeout(r->aio, (nng_duration)r->link->timeout_ms);
    nng_ctx_send(r->ctx, r->aio);
    return 0;
}

/* Refuse the request of `r` with an empty envelope: the peer fails it
 * with KM_EPROTO at once instead of waiting for its deadline. The refusal
 * carries neither our cluster id nor our node id: the requester may be a
 * stranger guessing them (PROBE-2026-12 L0), and a member fails the reply
 * with KM_EPROTO all the same. */
static void
cluster_link_rep_refuse(struct cluster_link_reply *r, uint64_t req_id)
{
    struct cluster_link_env env;

    cluster_link_env_init(r->link, &env, req_id, NULL);
    env.cluster_id_len = 0;
    env.from_node = 0;
    if (cluster_link_rep_send_env(r, &env) != 0) {
        cluster_link_rep_recv(r);
    }
}

void
cluster_link_rep_advance(struct cluster_link_reply *r)
{
    struct cluster_link *l = r->link;
    struct cluster_link_env env;
    const char *why;
    int rv;

    rv = nng_aio_result(r->aio);
    if (r->stage == CLUSTER_LINK_STAGE_SEND) {
        cluster_link_aio_drop_msg(r->aio, r->stage);
        cluster_link_rep_recv(r);
        return;
    }
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
        r->stage = CLUSTER_LINK_STAGE_IDLE;
        return;
    }
    if (rv != 0) {
        cluster_link_rep_recv(r);
        return;
    }
    rv = cluster_link_take_env(l, r->aio, &env);
    why = cluster_link_refusal(l, rv, &env);
    if (why != NULL) {
        cluster_link_warn_refused(l, env.from_node, why);
        cluster_link_rep_refuse(r, env.req_id);
        cluster_msg_link_env_fini(&env);
        return;
    }
    r->stage = CLUSTER_LINK_STAGE_HANDLER;
    r->req_id = env.req_id;
    l->host.on_request(l->host.ctx, env.from_node, &env.msg, r);
    cluster_msg_link_env_fini(&env);
}

int
cluster_link_reply_send(struct cluster_link_reply *r,
                        const struct cluster_link_msg *reply)
{
    struct cluster_link_env env;
    int rv;

    KM_ASSERT(r->stage == CLUSTER_LINK_STAGE_HANDLER);
    if (r->link->closing) {
        r->stage = CLUSTER_LINK_STAGE_IDLE;
        return KM_ECLOSING;
    }
    cluster_link_env_init(r->link, &env, r->req_id, reply);
    if (reply == NULL || reply->kind == CLUSTER_LINK_NONE) {
        rv = KM_EINVAL;
    } else {
        rv = cluster_link_rep_send_env(r, &env);
    }
    if (rv != 0) {
        cluster_link_rep_refuse(r, r->req_id);
    }
    return rv;
}
