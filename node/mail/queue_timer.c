/* queue_timer.c - hierarchical timing wheel. Entries sit in intrusive
 * lists (next + pprev, so unlinking needs no list head). An entry whose
 * tick w is ahead of `elapsed` goes to the level of the highest 6-bit digit
 * in which w and elapsed differ, in the slot of w's digit there; when time
 * reaches a slot's start the slot is emptied and its entries either fire or
 * drop to a lower level. The next slot to process is found per level with
 * one count-trailing-zeros on the occupancy bitmap, so time can jump across
 * days of empty ticks. Entries whose tick has been reached but whose due
 * time lies later in that tick wait on `current`, sorted by due time.
 * Loop thread only; no allocation. */
#include "queue_timer.h"

#include <stddef.h>

#include "base/km.h"

#define QUEUE_TIMER_NSLOTS         (QUEUE_TIMER_LEVELS * QUEUE_TIMER_SLOTS)
#define QUEUE_TIMER_WHERE_CURRENT  (QUEUE_TIMER_NSLOTS + 0)
#define QUEUE_TIMER_WHERE_OVERFLOW (QUEUE_TIMER_NSLOTS + 1)
#define QUEUE_TIMER_WHERE_PENDING  (QUEUE_TIMER_NSLOTS + 2)
#define QUEUE_TIMER_SPAN_BITS      (QUEUE_TIMER_LEVELS * QUEUE_TIMER_SLOT_BITS)
#define QUEUE_TIMER_SLOT_MASK      ((uint64_t)QUEUE_TIMER_SLOTS - 1)
/* Ticks are capped so that window arithmetic cannot overflow; an entry due
 * later than the cap waits at the cap (and still never fires early). */
#define QUEUE_TIMER_MAX_TICK (1ULL << 62)

static uint64_t
queue_timer_tick_of(const struct queue_timer *t, uint64_t ms)
{
    uint64_t tick = ms / t->tick_ms;

    return tick > QUEUE_TIMER_MAX_TICK ? QUEUE_TIMER_MAX_TICK : tick;
}

static void
queue_timer_link_head(struct queue_timer_entry **head,
                      struct queue_timer_entry *e)
{
    e->next = *head;
    if (e->next != NULL) {
        e->next->pprev = &e->next;
    }
    *head = e;
    e->pprev = head;
}

static void
queue_timer_unlink(struct queue_timer_entry *e)
{
    *e->pprev = e->next;
    if (e->next != NULL) {
        e->next->pprev = e->pprev;
    }
    e->next = NULL;
    e->pprev = NULL;
}

/* The entry before e on the current list, or NULL when e is first. */
static struct queue_timer_entry *
queue_timer_current_prev(struct queue_timer *t, struct queue_timer_entry *e)
{
    if (e->pprev == &t->current) {
        return NULL;
    }
    /* pprev points at the previous entry's `next` member. */
    return (
        struct queue_timer_entry *)(void *)((char *)e->pprev -
                                            offsetof(struct queue_timer_entry,
                                                     next));
}

/* Insert e into the current list in due order, after equal due times.
 * Searched from the tail: new due times are usually the latest. */
static void
queue_timer_current_insert(struct queue_timer *t, struct queue_timer_entry *e)
{
    struct queue_timer_entry *after = t->current_tail;

    while (after != NULL && after->due_ms > e->due_ms) {
        after = queue_timer_current_prev(t, after);
    }
    if (after == NULL) {
        queue_timer_link_head(&t->current, e);
    } else {
        e->next = after->next;
        if (e->next != NULL) {
            e->next->pprev = &e->next;
        }
        after->next = e;
        e->pprev = &after->next;
    }
    if (e->next == NULL) {
        t->current_tail = e;
    }
    e->where = QUEUE_TIMER_WHERE_CURRENT;
}

/* Put an unlinked e where its due time belongs relative to t->elapsed. */
static void
queue_timer_place(struct queue_timer *t, struct queue_timer_entry *e)
{
    uint64_t w = queue_timer_tick_of(t, e->due_ms);
    uint64_t diff;
    unsigned level;
    unsigned slot;
    unsigned idx;

    if (w <= t->elapsed) {
        queue_timer_current_insert(t, e);
        return;
    }
    /* The highest differing bit picks the level; or-ing the slot mask keeps
     * the argument of clz non-zero and maps small differences to level 0. */
    diff = (w ^ t->elapsed) | QUEUE_TIMER_SLOT_MASK;
    level = (unsigned)(63 - __builtin_clzll(diff)) / QUEUE_TIMER_SLOT_BITS;
    if (level >= QUEUE_TIMER_LEVELS) {
        queue_timer_link_head(&t->overflow, e);
        e->where = QUEUE_TIMER_WHERE_OVERFLOW;
        if (w < t->overflow_min_tick) {
            t->overflow_min_tick = w;
        }
        return;
    }
    slot = (unsigned)((w >> (level * QUEUE_TIMER_SLOT_BITS)) &
                      QUEUE_TIMER_SLOT_MASK);
    idx = level * QUEUE_TIMER_SLOTS + slot;
    queue_timer_link_head(&t->slots[idx], e);
    e->where = idx;
    t->occupied[level] |= 1ULL << slot;
}

/* The tick at which the next slot (or the overflow list) must be
 * processed, with its index in *where; UINT64_MAX when the wheel and the
 * overflow list are empty. Lower levels always come due first: an entry at
 * level L lies beyond the end of elapsed's level L-1 range. */
static uint64_t
queue_timer_next_expiration(const struct queue_timer *t, unsigned *where)
{
    for (unsigned level = 0; level < QUEUE_TIMER_LEVELS; level++) {
        unsigned shift = level * QUEUE_TIMER_SLOT_BITS;
        uint64_t range_mask;
        uint64_t deadline;
        unsigned slot;

        if (t->occupied[level] == 0) {
            continue;
        }
        /* Only slots past elapsed's own digit are ever occupied. */
        slot = (unsigned)__builtin_ctzll(t->occupied[level]);
        range_mask = (1ULL << (shift + QUEUE_TIMER_SLOT_BITS)) - 1;
        deadline = (t->elapsed & ~range_mask) + ((uint64_t)slot << shift);
        KM_ASSERT(deadline > t->elapsed);
        *where = level * QUEUE_TIMER_SLOTS + slot;
        return deadline;
    }
    if (t->overflow != NULL) {
        uint64_t next_window = ((t->elapsed >> QUEUE_TIMER_SPAN_BITS) + 1)
                               << QUEUE_TIMER_SPAN_BITS;
        uint64_t min_window = (t->overflow_min_tick >> QUEUE_TIMER_SPAN_BITS)
                              << QUEUE_TIMER_SPAN_BITS;

        *where = QUEUE_TIMER_WHERE_OVERFLOW;
        return min_window > next_window ? min_window : next_window;
    }
    return UINT64_MAX;
}

static struct queue_timer_entry *
queue_timer_merge(struct queue_timer_entry *a, struct queue_timer_entry *b)
{
    struct queue_timer_entry *head = NULL;
    struct queue_timer_entry **tail = &head;

    while (a != NULL && b != NULL) {
        if (a->due_ms <= b->due_ms) {
            *tail = a;
            a = a->next;
        } else {
            *tail = b;
            b = b->next;
        }
        tail = &(*tail)->next;
    }
    *tail = a != NULL ? a : b;
    return head;
}

/* Stable merge sort of a chain linked by `next` only. */
static struct queue_timer_entry *
queue_timer_sort(struct queue_timer_entry *list)
{
    struct queue_timer_entry *slow = list;
    struct queue_timer_entry *fast;
    struct queue_timer_entry *second;

    if (list == NULL || list->next == NULL) {
        return list;
    }
    fast = list->next;
    while (fast != NULL && fast->next != NULL) {
        slow = slow->next;
        fast = fast->next->next;
    }
    second = slow->next;
    slow->next = NULL;
    return queue_timer_merge(queue_timer_sort(list), queue_timer_sort(second));
}

static struct queue_timer_entry *
queue_timer_sort_if_needed(struct queue_timer_entry *list)
{
    for (struct queue_timer_entry *e = list; e != NULL && e->next != NULL;
         e = e->next) {
        if (e->next->due_ms < e->due_ms) {
            return queue_timer_sort(list);
        }
    }
    return list;
}

/* Relink a sorted `next` chain as the list at *head; returns the last. */
static struct queue_timer_entry *
queue_timer_relink(struct queue_timer_entry **head,
                   struct queue_timer_entry *chain, uint32_t where)
{
    struct queue_timer_entry **tail = head;
    struct queue_timer_entry *last = NULL;

    for (struct queue_timer_entry *e = chain; e != NULL; e = e->next) {
        e->pprev = tail;
        *tail = e;
        e->where = where;
        tail = &e->next;
        last = e;
    }
    *tail = NULL;
    return last;
}

/* Empty the slot (or overflow list) at `where`, now that elapsed has
 * reached it: entries of this very tick are returned as a `next` chain,
 * the others move down to where they now belong. */
static struct queue_timer_entry *
queue_timer_expire_slot(struct queue_timer *t, unsigned where)
{
    struct queue_timer_entry *list;
    struct queue_timer_entry *due = NULL;

    if (where == QUEUE_TIMER_WHERE_OVERFLOW) {
        list = t->overflow;
        t->overflow = NULL;
        t->overflow_min_tick = UINT64_MAX;
    } else {
        list = t->slots[where];
        t->slots[where] = NULL;
        t->occupied[where / QUEUE_TIMER_SLOTS] &=
            ~(1ULL << (where % QUEUE_TIMER_SLOTS));
    }
    while (list != NULL) {
        struct queue_timer_entry *e = list;

        list = e->next;
        e->next = NULL;
        e->pprev = NULL;
        if (queue_timer_tick_of(t, e->due_ms) <= t->elapsed) {
            e->next = due;
            due = e;
        } else {
            queue_timer_place(t, e);
        }
    }
    return due;
}

/* Move the current entries due by now_ms (a prefix: the list is sorted) to
 * the pending list, which must be empty. */
static void
queue_timer_take_current(struct queue_timer *t, uint64_t now_ms)
{
    struct queue_timer_entry *first = t->current;
    struct queue_timer_entry *last = NULL;
    struct queue_timer_entry *rest = first;

    KM_ASSERT(t->pending == NULL);
    while (rest != NULL && rest->due_ms <= now_ms) {
        rest->where = QUEUE_TIMER_WHERE_PENDING;
        last = rest;
        rest = rest->next;
    }
    if (last == NULL) {
        return;
    }
    last->next = NULL;
    t->pending = first;
    first->pprev = &t->pending;
    t->current = rest;
    if (rest != NULL) {
        rest->pprev = &t->current;
    } else {
        t->current_tail = NULL;
    }
}

/* Split a sorted chain of this tick's entries: due by now_ms to the
 * (empty) pending list, the rest merged into the current list. */
static void
queue_timer_dispatch(struct queue_timer *t, struct queue_timer_entry *chain,
                     uint64_t now_ms)
{
    struct queue_timer_entry *last_due = NULL;
    struct queue_timer_entry *later = chain;
    struct queue_timer_entry *merged;

    KM_ASSERT(t->pending == NULL);
    while (later != NULL && later->due_ms <= now_ms) {
        last_due = later;
        later = later->next;
    }
    if (last_due != NULL) {
        last_due->next = NULL;
        queue_timer_relink(&t->pending, chain, QUEUE_TIMER_WHERE_PENDING);
    }
    if (later != NULL) {
        /* Existing entries first on ties: they were armed earlier. */
        merged = queue_timer_merge(t->current, later);
        t->current_tail =
            queue_timer_relink(&t->current, merged, QUEUE_TIMER_WHERE_CURRENT);
    }
}

static size_t
queue_timer_fire_pending(struct queue_timer *t, queue_timer_fire_cb cb,
                         void *arg)
{
    struct queue_timer_entry *e;
    size_t n = 0;

    while ((e = t->pending) != NULL) {
        queue_timer_unlink(e);
        e->where = 0;
        t->count--;
        cb(arg, e);
        n++;
    }
    return n;
}

void
queue_timer_init(struct queue_timer *t, uint64_t now_ms, uint32_t tick_ms)
{
    *t = (struct queue_timer){0};
    t->tick_ms = tick_ms == 0 ? 1 : tick_ms;
    t->elapsed = queue_timer_tick_of(t, now_ms);
    t->overflow_min_tick = UINT64_MAX;
}

void
queue_timer_entry_init(struct queue_timer_entry *e)
{
    *e = (struct queue_timer_entry){0};
}

bool
queue_timer_entry_is_armed(const struct queue_timer_entry *e)
{
    return e->pprev != NULL;
}

void
queue_timer_add(struct queue_timer *t, struct queue_timer_entry *e,
                uint64_t due_ms)
{
    queue_timer_cancel(t, e);
    e->due_ms = due_ms;
    queue_timer_place(t, e);
    t->count++;
}

void
queue_timer_cancel(struct queue_timer *t, struct queue_timer_entry *e)
{
    uint32_t where = e->where;

    if (e->pprev == NULL) {
        return;
    }
    if (where == QUEUE_TIMER_WHERE_CURRENT && t->current_tail == e) {
        t->current_tail = queue_timer_current_prev(t, e);
    }
    queue_timer_unlink(e);
    if (where < QUEUE_TIMER_NSLOTS && t->slots[where] == NULL) {
        t->occupied[where / QUEUE_TIMER_SLOTS] &=
            ~(1ULL << (where % QUEUE_TIMER_SLOTS));
    } else if (where == QUEUE_TIMER_WHERE_OVERFLOW && t->overflow == NULL) {
        t->overflow_min_tick = UINT64_MAX;
    }
    e->where = 0;
    t->count--;
}

size_t
queue_timer_advance(struct queue_timer *t, uint64_t now_ms,
                    queue_timer_fire_cb cb, void *arg)
{
    uint64_t now_tick = queue_timer_tick_of(t, now_ms);
    size_t fired;

    KM_ASSERT(!t->advancing);
    t->advancing = true;
    /* Entries of ticks already reached come first: every wheel entry lies
     * in a later tick. */
    queue_timer_take_current(t, now_ms);
    fired = queue_timer_fire_pending(t, cb, arg);
    for (;;) {
        unsigned where = 0;
        uint64_t deadline = queue_timer_next_expiration(t, &where);
        struct queue_timer_entry *chain;

        if (deadline > now_tick) {
            break;
        }
        t->elapsed = deadline;
        chain = queue_timer_expire_slot(t, where);
        queue_timer_dispatch(t, queue_timer_sort_if_needed(chain), now_ms);
        fired += queue_timer_fire_pending(t, cb, arg);
    }
    if (now_tick > t->elapsed) {
        t->elapsed = now_tick;
    }
    t->advancing = false;
    return fired;
}

uint64_t
queue_timer_next_due(const struct queue_timer *t)
{
    uint64_t next = UINT64_MAX;
    unsigned where = 0;
    uint64_t deadline;

    if (t->pending != NULL) {
        return t->pending->due_ms;
    }
    if (t->current != NULL) {
        next = t->current->due_ms;
    }
    deadline = queue_timer_next_expiration(t, &where);
    if (deadline != UINT64_MAX) {
        uint64_t ms = deadline > UINT64_MAX / t->tick_ms
                          ? UINT64_MAX
                          : deadline * t->tick_ms;

        if (ms < next) {
            next = ms;
        }
    }
    return next;
}

size_t
queue_timer_count(const struct queue_timer *t)
{
    return t->count;
}
