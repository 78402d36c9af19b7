/* kumod_recover.h - start-up recovery for the wiring (kumod.c): requeue
 * what the FSM lists and sweep orphan bodies. Loop thread. */
#ifndef KUMO_KUMOD_RECOVER_H
#define KUMO_KUMOD_RECOVER_H
#include <stddef.h>

struct kumod;

struct kumod_recover_stats {
    size_t count;    /* queued again here */
    size_t missing;  /* listed, but their records could not be read */
    size_t remote;   /* another node owns their shard */
    size_t fetching; /* owned here, body being fetched from a replica */
};

/* Requeue every message of the FSM, then remove orphan bodies. 0, or an
 * error that must stop the start-up, with the reason in err. */
int kumod_recover(struct kumod *kd, struct kumod_recover_stats *st, char *err,
                  size_t errlen);
#endif /* KUMO_KUMOD_RECOVER_H */
