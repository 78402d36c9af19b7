/* queue.c - scheduled queues as holders: a map of queue names to queues
 * and a map of message ids to their entries. Loop thread only. */
#include "queue.h"

#include <stdlib.h>

#include "base/km.h"
#include "base/km_map.h"
#include "base/log.h"
#include "message.h"

struct queue_sched {
    char *name;
    size_t count;
};

struct queue_entry {
    struct message *msg; /* one reference */
    struct queue_sched *sched;
};

struct queue_mgr {
    struct kumod *kd;
    struct km_map *queues; /* name -> struct queue_sched */
    struct km_map *by_id;  /* id -> struct queue_entry */
};

int
queue_mgr_new(struct kumod *kd, struct queue_mgr **out)
{
    struct queue_mgr *qm = km_calloc(1, sizeof(*qm));

    qm->kd = kd;
    qm->queues = km_map_new();
    qm->by_id = km_map_new();
    *out = qm;
    return 0;
}

void
queue_mgr_free(struct queue_mgr *qm)
{
    struct km_map_iter it;
    void *v;

    if (qm == NULL) {
        return;
    }
    km_map_iter_init(&it, qm->by_id);
    while (km_map_iter_next(&it, NULL, &v)) {
        struct queue_entry *e = v;
        message_unref(e->msg);
        free(e);
    }
    km_map_iter_init(&it, qm->queues);
    while (km_map_iter_next(&it, NULL, &v)) {
        struct queue_sched *q = v;
        free(q->name);
        free(q);
    }
    km_map_free(qm->by_id);
    km_map_free(qm->queues);
    free(qm);
}

void
queue_insert(struct queue_mgr *qm, struct message *m, const char *reason)
{
    const char *name = message_queue_name(m);
    struct queue_sched *q = km_map_get(qm->queues, name);
    struct queue_entry *e;

    if (km_map_has(qm->by_id, message_id(m))) {
        return; /* already queued: inserts are idempotent by id */
    }
    if (q == NULL) {
        q = km_calloc(1, sizeof(*q));
        q->name = km_strdup(name);
        km_map_put(qm->queues, name, q, NULL);
    }
    e = km_calloc(1, sizeof(*e));
    message_ref(m);
    e->msg = m;
    e->sched = q;
    q->count++;
    km_map_put(qm->by_id, message_id(m), e, NULL);
    LOG_TRACE(TRACE_QUEUE, "queue: %s: insert %s (%s)", q->name,
              message_id(m), reason);
}

struct message *
queue_find(struct queue_mgr *qm, const char *id)
{
    struct queue_entry *e = km_map_get(qm->by_id, id);
    return e != NULL ? e->msg : NULL;
}

bool
queue_remove(struct queue_mgr *qm, const char *id)
{
    void *v;

    if (!km_map_remove(qm->by_id, id, &v)) {
        return false;
    }
    struct queue_entry *e = v;
    KM_ASSERT(e->sched->count > 0);
    e->sched->count--;
    message_unref(e->msg);
    free(e);
    return true;
}

size_t
queue_mgr_count(const struct queue_mgr *qm)
{
    return km_map_count(qm->by_id);
}

void
queue_mgr_foreach_queue(const struct queue_mgr *qm,
                        void (*fn)(void *arg, const char *name, size_t count),
                        void *arg)
{
    struct km_map_iter it;
    void *v;

    km_map_iter_init(&it, qm->queues);
    while (km_map_iter_next(&it, NULL, &v)) {
        struct queue_sched *q = v;
        fn(arg, q->name, q->count);
    }
}
