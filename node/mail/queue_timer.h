/* queue_timer.h - a hierarchical timing wheel for due times in
 * milliseconds, built for millions of delayed messages: O(1) insert and
 * cancel, no allocation (the caller embeds a struct queue_timer_entry in
 * its own object), and big clock jumps skip empty stretches using
 * per-level occupancy bitmaps. It owns no uv_timer: the caller arms one
 * from queue_timer_next_due() and calls queue_timer_advance() when it
 * fires. It neither reads the clock nor logs. Loop thread only. */
#ifndef KUMO_QUEUE_TIMER_H
#define KUMO_QUEUE_TIMER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 6 levels of 64 slots: level L slot spans 64^L ticks, the wheel spans
 * 2^36 ticks (795 days at a 1 ms tick, 218 years at 100 ms), so a 7-day
 * max_age fits at any tick. Entries further out wait on an overflow list
 * that is re-examined when time reaches their 2^36-tick window. Memory: a
 * queue_timer is about 3.2 KB, an entry 32 bytes. */
#define QUEUE_TIMER_LEVELS    6
#define QUEUE_TIMER_SLOT_BITS 6
#define QUEUE_TIMER_SLOTS     (1u << QUEUE_TIMER_SLOT_BITS)

/* Embedded in the caller's object; recover the object with offsetof. A
 * zeroed entry (or one after queue_timer_entry_init) is not armed. Fields
 * are private except due_ms, which may be read while armed. */
struct queue_timer_entry {
    struct queue_timer_entry *next;
    struct queue_timer_entry **pprev; /* NULL when not armed */
    uint64_t due_ms;
    uint32_t where;
};

/* The wheel, embedded by its owner and set up with queue_timer_init(); it
 * holds pointers into itself, so it must not be moved or copied while
 * entries are armed. Fields are private. */
struct queue_timer {
    uint64_t tick_ms;
    uint64_t elapsed; /* ticks up to and including this one are processed */
    size_t count;
    uint64_t occupied[QUEUE_TIMER_LEVELS];
    struct queue_timer_entry *slots[QUEUE_TIMER_LEVELS * QUEUE_TIMER_SLOTS];
    struct queue_timer_entry *current;      /* tick <= elapsed, by due */
    struct queue_timer_entry *current_tail; /* last of current */
    struct queue_timer_entry *overflow;     /* beyond the wheel's span */
    uint64_t overflow_min_tick;             /* <= every overflow tick */
    struct queue_timer_entry *pending;      /* being fired, by due */
    bool advancing;
};

/* Called by queue_timer_advance() for each entry that fires; the entry is
 * no longer armed. It may add or cancel any entry, itself included, but
 * must not call queue_timer_advance(). */
typedef void (*queue_timer_fire_cb)(void *arg, struct queue_timer_entry *e);

/* Set up an empty wheel whose time starts at now_ms, with a resolution of
 * tick_ms (>= 1): entries are bucketed by tick; a tick of 1..1000 ms suits
 * queues with retries from 100 ms upward. Nothing to release afterwards. */
void queue_timer_init(struct queue_timer *t, uint64_t now_ms, uint32_t tick_ms);

/* Mark e as not armed (same as zeroing it). */
void queue_timer_entry_init(struct queue_timer_entry *e);

/* True while e waits in a wheel (added and neither fired nor cancelled). */
bool queue_timer_entry_is_armed(const struct queue_timer_entry *e);

/* Arm e to fire at due_ms; an armed e is moved (re-armed). O(1), except
 * for a due time inside the tick already reached, which is put in due order
 * among that tick's waiting entries (searched from the latest). A due time
 * at or before the last advance fires on the next advance. The wheel keeps
 * a pointer to e until it fires or is cancelled: e must stay valid and in
 * place until then. */
void queue_timer_add(struct queue_timer *t, struct queue_timer_entry *e,
                     uint64_t due_ms);

/* Disarm e; does nothing when e is not armed. O(1). */
void queue_timer_cancel(struct queue_timer *t, struct queue_timer_entry *e);

/* Move time forward to now_ms and call cb for every entry whose due time
 * is <= now_ms: in due order (ties in no set order), each entry disarmed
 * just before its call. Entries that callbacks add with a due time in a
 * tick already processed wait for the next advance, so a callback that
 * re-adds itself "now" cannot loop. A now_ms earlier than a previous one
 * fires only what is due by now_ms. Returns the number of calls. */
size_t queue_timer_advance(struct queue_timer *t, uint64_t now_ms,
                           queue_timer_fire_cb cb, void *arg);

/* When to call queue_timer_advance() next, in the wheel's milliseconds:
 * never later than the earliest due time, possibly earlier (at most a
 * few early wake-ups per entry while it moves down the levels).
 * UINT64_MAX when the wheel is empty. */
uint64_t queue_timer_next_due(const struct queue_timer *t);

/* Number of armed entries. */
size_t queue_timer_count(const struct queue_timer *t);
#endif /* KUMO_QUEUE_TIMER_H */
