/* kumod_recover.c - start-up recovery, once raft has replayed its log:
 * every message the FSM lists is queued again (from the local spools, or
 * after fetching its body from a replica when this node owns its shard),
 * then bodies no Enqueue lists are removed (at once on one node, after a
 * grace in a group). For the wiring only. Loop thread. */
#include "kumod_recover.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/km.h"
#include "base/log.h"
#include "cluster.h"
#include "kumod.h"
#include "kumod_body.h"
#include "message.h"
#include "policy.h"
#include "queue.h"
#include "spool.h"

/* An orphan body (no Enqueue lists it) is removed only after this long:
 * its Enqueue may still be on its way from another node. */
#define KUMOD_ORPHAN_GRACE_MS (60u * 60u * 1000u)

struct kumod_recovery {
    struct kumod *kd;
    struct kumod_recover_stats *st;
    int status;
    char err[512];
};

/* Rebuild one queued message from the spools and queue it. */
static bool
kumod_recover_one(void *arg, const struct cluster_msg *cm)
{
    struct kumod_recovery *rc = arg;
    struct kumod *kd = rc->kd;
    bool want_data = policy_has_handler(kd->policy, "spool_message_enumerated");
    struct buf meta = BUF_INIT, data = BUF_INIT;
    struct message *m = NULL;
    int rv;

    /* In a group, the shard's owner queues the message; a body it lacks
     * is fetched from the replicas. */
    if (cluster_is_group(kd->cluster)) {
        if (!cluster_owns(kd->cluster, cm->shard)) {
            rc->st->remote++;
            return true;
        }
        if (!kumod_body_has_local_body(kd, cm->id)) {
            kumod_body_fetch_start(kd, cm, 0);
            rc->st->fetching++;
            return true;
        }
    }
    rv = spool_get(kd->meta_spool, cm->id, &meta);
    if (rv == 0 && want_data) {
        rv = spool_get(kd->data_spool, cm->id, &data);
    }
    if (rv == 0) {
        rv = message_from_spool(cm->id, meta.data, meta.len, data.data,
                                data.len, &m);
    }
    buf_fini(&meta);
    buf_fini(&data);
    if (rv != 0) {
        /* A committed Enqueue always follows the synced spool write, so
         * this is damage on disk: say so loudly, keep going. */
        LOG_ERROR("kumod: recovery: message %s (queue %s): %s", cm->id,
                  cm->queue, km_strerror(rv));
        rc->st->missing++;
        return true;
    }
    /* The FSM is the truth for scheduling state. */
    message_set_size(m, (size_t)cm->size);
    message_set_num_attempts(m, cm->attempts);
    message_set_due_ms(m, cm->due_ms);
    if (want_data) {
        struct policy_arg parg = {.kind = POLICY_ARG_MESSAGE, .u.msg = m};
        struct policy_result res;
        memset(&res, 0, sizeof(res));
        rv = policy_call(kd->policy, "spool_message_enumerated", &parg, 1, &res,
                         rc->err, sizeof(rc->err));
        policy_result_fini(&res);
        if (rv != 0) {
            /* KumoMTA aborts start-up when this handler fails. */
            snprintf(rc->err, sizeof(rc->err),
                     "spool_message_enumerated failed for %s: %s", cm->id,
                     km_strerror(rv));
            rc->status = rv;
            message_unref(m);
            return false;
        }
        message_drop_data(m);
    }
    queue_insert(kd->queues, m, "Enumerated");
    message_unref(m);
    rc->st->count++;
    return true;
}

/* One node: a body no Enqueue lists is garbage at once. A group: only
 * after KUMOD_ORPHAN_GRACE_MS (the id carries its creation time), since
 * the accepting node may still be committing its Enqueue. */
static bool
kumod_orphan_expired(const struct kumod *kd, const char *id)
{
    int64_t t;

    if (!cluster_is_group(kd->cluster)) {
        return true;
    }
    t = km_id_time_ms(id);
    return t >= 0 && km_now_wall_ms() - t > (int64_t)KUMOD_ORPHAN_GRACE_MS;
}

struct kumod_orphans {
    struct kumod *kd;
    size_t count; /* removed */
    size_t held;  /* bodies in the spool, removed ones included */
};

static bool
kumod_find_orphan(void *arg, const char *key, size_t key_len, const char *value,
                  size_t value_len)
{
    struct kumod_orphans *o = arg;
    char id[KM_ID_HEX_LEN + 1];

    (void)value;
    (void)value_len;
    if (key_len != KM_ID_HEX_LEN) {
        return true;
    }
    memcpy(id, key, KM_ID_HEX_LEN);
    id[KM_ID_HEX_LEN] = '\0';
    o->held++;
    if (cluster_lookup(o->kd->cluster, id) == NULL &&
        kumod_orphan_expired(o->kd, id)) {
        (void)spool_delete(o->kd->data_spool, id, NULL, NULL);
        (void)spool_delete(o->kd->meta_spool, id, NULL, NULL);
        o->count++;
    }
    return true;
}

int
kumod_recover(struct kumod *kd, struct kumod_recover_stats *st, char *err,
              size_t errlen)
{
    struct kumod_recovery rc;
    struct kumod_orphans orphans = {kd, 0, 0};

    memset(&rc, 0, sizeof(rc));
    memset(st, 0, sizeof(*st));
    rc.kd = kd;
    rc.st = st;
    cluster_foreach(kd->cluster, kumod_recover_one, &rc);
    if (rc.status != 0) {
        snprintf(err, errlen, "%s", rc.err);
        return rc.status;
    }
    /* With one node, a body without a committed Enqueue never got a 250:
     * the client was told to retry, so the copy is garbage. */
    (void)spool_foreach(kd->meta_spool, kumod_find_orphan, &orphans);
    if (orphans.count > 0) {
        LOG_INFO("kumod: removed %zu unaccepted message(s) left in the spool",
                 orphans.count);
    }
    LOG_INFO("kumod: the spool holds %zu message body(ies)",
             orphans.held - orphans.count);
    return 0;
}
