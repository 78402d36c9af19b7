/* test_queue_timer.c - unit tests of the timing wheel: firing order and
 * exact due times, cancel, re-adding and cancelling from callbacks, past
 * due times, entries 7 days and years ahead reached in big steps,
 * next_due against a brute-force minimum under random operations, and
 * 1,000,000 entries inserted and fired (with a printed ns/entry figure). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "queue_timer.h"

#define SEC    1000ULL
#define MINUTE (60 * SEC)
#define HOUR   (60 * MINUTE)
#define DAY    (24 * HOUR)
#define T0     1700000000000ULL /* a wall-clock-like start, in ms */

/* Fixture */

struct queue_timer_test_item {
    struct queue_timer_entry te;
    uint64_t due;
    uint64_t fired_at; /* the `now` of the advance that fired it */
    unsigned fired;
    unsigned readds; /* re-add itself this many more times */
    uint64_t readd_delay;
    struct queue_timer_test_item *victim; /* cancel this one when fired */
};

struct queue_timer_test_fixture {
    struct queue_timer t;
    uint64_t now;          /* the time passed to the current advance */
    uint64_t last_due;     /* due of the previous firing */
    unsigned out_of_order; /* firings with due < last_due */
    unsigned early;        /* firings with due > now */
    size_t fired;
};

static int
queue_timer_test_setup(void **state)
{
    struct queue_timer_test_fixture *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return -1;
    }
    *state = f;
    return 0;
}

static int
queue_timer_test_teardown(void **state)
{
    free(*state);
    return 0;
}

/* Helpers */

static struct queue_timer_test_item *
queue_timer_test_item_of(struct queue_timer_entry *e)
{
    return (
        struct queue_timer_test_item
            *)(void *)((char *)e - offsetof(struct queue_timer_test_item, te));
}

static uint64_t
queue_timer_test_rand(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void
queue_timer_test_on_fire(void *arg, struct queue_timer_entry *e)
{
    struct queue_timer_test_fixture *f = arg;
    struct queue_timer_test_item *it = queue_timer_test_item_of(e);

    assert_false(queue_timer_entry_is_armed(e));
    if (e->due_ms > f->now) {
        f->early++;
    }
    if (e->due_ms < f->last_due) {
        f->out_of_order++;
    }
    f->last_due = e->due_ms;
    it->fired++;
    it->fired_at = f->now;
    f->fired++;
    if (it->victim != NULL) {
        queue_timer_cancel(&f->t, &it->victim->te);
    }
    if (it->readds > 0) {
        it->readds--;
        it->due = e->due_ms + it->readd_delay;
        queue_timer_add(&f->t, e, it->due);
    }
}

static size_t
queue_timer_test_advance(struct queue_timer_test_fixture *f, uint64_t now)
{
    f->now = now;
    return queue_timer_advance(&f->t, now, queue_timer_test_on_fire, f);
}

static void
queue_timer_test_add(struct queue_timer_test_fixture *f,
                     struct queue_timer_test_item *it, uint64_t due)
{
    it->due = due;
    queue_timer_add(&f->t, &it->te, due);
}

/* The earliest due time among armed items, or UINT64_MAX. */
static uint64_t
queue_timer_test_min_due(const struct queue_timer_test_item *items, size_t n)
{
    uint64_t m = UINT64_MAX;

    for (size_t i = 0; i < n; i++) {
        if (queue_timer_entry_is_armed(&items[i].te) && items[i].due < m) {
            m = items[i].due;
        }
    }
    return m;
}

static uint64_t
queue_timer_test_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Tests */

static void
queue_timer_fires_in_due_order_and_never_early(void **state)
{
    struct queue_timer_test_fixture *f = *state;
    struct queue_timer_test_item items[500] = {0};
    uint64_t seed = 7;

    queue_timer_init(&f->t, T0, 10);
    for (size_t i = 0; i < 500; i++) {
        /* Many share a 10 ms tick but differ within it. */
        queue_timer_test_add(f, &items[i],
                             T0 + 1 + queue_timer_test_rand(&seed) % 2000);
    }
    assert_int_equal(queue_timer_count(&f->t), 500);
    for (uint64_t now = T0; now <= T0 + 2100; now += 7) {
        queue_timer_test_advance(f, now);
    }
    assert_int_equal(f->fired, 500);
    assert_int_equal(f->early, 0);
    assert_int_equal(f->out_of_order, 0);
    assert_int_equal(queue_timer_count(&f->t), 0);
    for (size_t i = 0; i < 500; i++) {
        assert_int_equal(items[i].fired, 1);
        /* Fired by the first advance at or after its due time. */
        assert_true(items[i].fired_at >= items[i].due &&
                    items[i].fired_at < items[i].due + 7);
    }
}

static void
queue_timer_waits_for_due_time_inside_a_tick(void **state)
{
    struct queue_timer_test_fixture *f = *state;
    struct queue_timer_test_item a = {0}, b = {0};

    queue_timer_init(&f->t, 0, 1000);
    queue_timer_test_add(f, &a, 1500);
    queue_timer_test_add(f, &b, 1200);
    assert_true(queue_timer_next_due(&f->t) <= 1200);
    assert_int_equal(queue_timer_test_advance(f, 1100), 0);
    /* The tick is reached: next_due is now exact, not the tick start. */
    assert_int_equal(queue_timer_next_due(&f->t), 1200);
    assert_int_equal(queue_timer_test_advance(f, 1200), 1);
    assert_int_equal(b.fired, 1);
    assert_int_equal(queue_timer_next_due(&f->t), 1500);
    assert_int_equal(queue_timer_test_advance(f, 1499), 0);
    assert_int_equal(queue_timer_test_advance(f, 1500), 1);
    assert_int_equal(a.fired, 1);
    assert_int_equal(queue_timer_next_due(&f->t), UINT64_MAX);
}

static void
queue_timer_cancel_disarms_and_tolerates_unarmed(void **state)
{
    struct queue_timer_test_fixture *f = *state;
    struct queue_timer_test_item items[6] = {0};
    struct queue_timer_test_item never = {0};

    queue_timer_init(&f->t, 0, 1);
    queue_timer_test_add(f, &items[0], 5);          /* level 0 */
    queue_timer_test_add(f, &items[1], 5);          /* same slot */
    queue_timer_test_add(f, &items[2], 5000);       /* level 2 */
    queue_timer_test_add(f, &items[3], 1ULL << 40); /* overflow */
    queue_timer_test_add(f, &items[4], 5);
    queue_timer_test_add(f, &items[5], 9000);
    queue_timer_cancel(&f->t, &never.te);
    queue_timer_cancel(&f->t, &items[1].te);
    queue_timer_cancel(&f->t, &items[1].te);
    queue_timer_cancel(&f->t, &items[2].te);
    queue_timer_cancel(&f->t, &items[3].te);
    assert_false(queue_timer_entry_is_armed(&items[1].te));
    assert_true(queue_timer_entry_is_armed(&items[0].te));
    assert_int_equal(queue_timer_count(&f->t), 3);
    assert_int_equal(queue_timer_test_advance(f, 1ULL << 41), 3);
    assert_int_equal(items[1].fired + items[2].fired + items[3].fired, 0);
    assert_int_equal(items[0].fired + items[4].fired + items[5].fired, 3);
    assert_int_equal(queue_timer_count(&f->t), 0);
    assert_int_equal(queue_timer_next_due(&f->t), UINT64_MAX);
}

static void
queue_timer_readd_moves_an_armed_entry(void **state)
{
    struct queue_timer_test_fixture *f = *state;
    struct queue_timer_test_item a = {0};

    queue_timer_init(&f->t, 0, 1);
    queue_timer_test_add(f, &a, 100);
    queue_timer_test_add(f, &a, 50000);
    assert_int_equal(queue_timer_count(&f->t), 1);
    assert_int_equal(queue_timer_test_advance(f, 49999), 0);
    assert_int_equal(queue_timer_test_advance(f, 50000), 1);
    assert_int_equal(a.fired, 1);
}

static void
queue_timer_callback_may_readd_itself_and_cancel_others(void **state)
{
    struct queue_timer_test_fixture *f = *state;
    struct queue_timer_test_item rep = {.readds = 4, .readd_delay = 100};
    struct queue_timer_test_item killer = {0};
    struct queue_timer_test_item victim = {0};

    queue_timer_init(&f->t, 0, 10);
    queue_timer_test_add(f, &rep, 100);
    /* Same tick: the victim is already queued to fire when the
     * killer's callback cancels it. */
    queue_timer_test_add(f, &killer, 300);
    queue_timer_test_add(f, &victim, 305);
    killer.victim = &victim;
    /* One big step: the re-added entry keeps firing within this advance
     * because each new due time is in a later tick. */
    assert_int_equal(queue_timer_test_advance(f, 1000), 6);
    assert_int_equal(rep.fired, 5);
    assert_int_equal(rep.due, 500);
    assert_int_equal(killer.fired, 1);
    assert_int_equal(victim.fired, 0);
    assert_false(queue_timer_entry_is_armed(&victim.te));
    assert_int_equal(f->out_of_order, 0);
    assert_int_equal(queue_timer_count(&f->t), 0);
}

static void
queue_timer_callback_readding_now_waits_for_next_advance(void **state)
{
    struct queue_timer_test_fixture *f = *state;
    struct queue_timer_test_item loop = {.readds = 1000000, .readd_delay = 0};

    queue_timer_init(&f->t, 0, 1);
    queue_timer_test_add(f, &loop, 10);
    assert_int_equal(queue_timer_test_advance(f, 10), 1);
    assert_int_equal(queue_timer_test_advance(f, 10), 1);
    assert_int_equal(queue_timer_test_advance(f, 11), 1);
    assert_int_equal(loop.fired, 3);
    assert_true(queue_timer_next_due(&f->t) <= 11);
}

static void
queue_timer_past_due_fires_on_next_advance(void **state)
{
    struct queue_timer_test_fixture *f = *state;
    struct queue_timer_test_item late = {0}, zero = {0}, now_item = {0};

    queue_timer_init(&f->t, 5000, 100);
    assert_int_equal(queue_timer_test_advance(f, 5000), 0);
    queue_timer_test_add(f, &late, 100);
    queue_timer_test_add(f, &zero, 0);
    queue_timer_test_add(f, &now_item, 5000);
    assert_int_equal(queue_timer_next_due(&f->t), 0);
    assert_int_equal(queue_timer_test_advance(f, 5000), 3);
    assert_int_equal(f->out_of_order, 0);
    assert_int_equal(late.fired + zero.fired + now_item.fired, 3);
}

static void
queue_timer_seven_days_ahead_fire_on_time_in_big_steps(void **state)
{
    struct queue_timer_test_fixture *f = *state;
    static const uint64_t offsets[] = {
        1,           999,      SEC,         59 * SEC + 1, HOUR - 1,
        HOUR,        HOUR + 1, DAY - 1,     DAY,          3 * DAY + 7,
        7 * DAY - 1, 7 * DAY,  7 * DAY + 1, 10 * DAY,     40 * DAY + 123};
    size_t n = sizeof(offsets) / sizeof(offsets[0]);
    struct queue_timer_test_item items[sizeof(offsets) / sizeof(offsets[0])] = {
        0};

    /* 1 ms resolution so that "on time" is exact. */
    queue_timer_init(&f->t, T0, 1);
    for (size_t i = 0; i < n; i++) {
        queue_timer_test_add(f, &items[i], T0 + offsets[i]);
    }
    /* Steps of 7 minutes 13 s, so that steps rarely land on due times. */
    for (uint64_t now = T0; now < T0 + 41 * DAY; now += 433 * SEC) {
        queue_timer_test_advance(f, now);
        for (size_t i = 0; i < n; i++) {
            if (items[i].due <= now) {
                assert_int_equal(items[i].fired, 1);
                assert_true(items[i].fired_at - items[i].due < 433 * SEC);
            } else {
                assert_int_equal(items[i].fired, 0);
            }
        }
    }
    assert_int_equal(f->fired, n);
    assert_int_equal(f->early, 0);
    assert_int_equal(f->out_of_order, 0);
}

static void
queue_timer_driving_by_next_due_fires_exactly_on_time(void **state)
{
    struct queue_timer_test_fixture *f = *state;

    enum { N = 2000 };
    struct queue_timer_test_item *items = calloc(N, sizeof(*items));
    uint64_t seed = 99;
    unsigned wakeups = 0;

    assert_non_null(items);
    queue_timer_init(&f->t, T0, 1000);
    for (size_t i = 0; i < N; i++) {
        /* Mostly whole seconds (KumoMTA-like) with some ms offsets. */
        uint64_t r = queue_timer_test_rand(&seed);
        uint64_t due = T0 + (r % (8 * DAY)) / SEC * SEC;

        if (i % 3 == 0) {
            due += (r >> 40) % 1000;
        }
        queue_timer_test_add(f, &items[i], due);
    }
    while (queue_timer_count(&f->t) > 0) {
        uint64_t next = queue_timer_next_due(&f->t);

        assert_true(next <= queue_timer_test_min_due(items, N));
        assert_true(next > f->now);
        queue_timer_test_advance(f, next);
        wakeups++;
    }
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(items[i].fired, 1);
        assert_int_equal(items[i].fired_at, items[i].due);
    }
    assert_int_equal(f->out_of_order, 0);
    print_message("%zu entries, %u wake-ups\n", (size_t)N, wakeups);
    free(items);
}

static void
queue_timer_next_due_never_after_earliest_under_random_ops(void **state)
{
    struct queue_timer_test_fixture *f = *state;

    enum { N = 1000 };
    struct queue_timer_test_item *items = calloc(N, sizeof(*items));
    uint64_t seed = 1234;
    uint64_t now = T0;

    assert_non_null(items);
    queue_timer_init(&f->t, now, 50);
    f->now = now;
    for (int op = 0; op < 10000; op++) {
        uint64_t r = queue_timer_test_rand(&seed);
        struct queue_timer_test_item *it = &items[r % N];
        uint64_t next;
        uint64_t min_due;

        switch ((r >> 20) % 8) {
        case 0:
        case 1:
        case 2:
            /* Spread over ms, seconds, hours, days, years ahead. */
            queue_timer_test_add(
                f, it, now + ((r >> 24) % 4096) * (1ULL << ((r >> 40) % 36)));
            break;
        case 3:
            queue_timer_test_add(f, it, now - (r >> 30) % 1000); /* past due */
            break;
        case 4:
            queue_timer_cancel(&f->t, &it->te);
            break;
        case 5:
            now += (r >> 24) % 200;
            queue_timer_test_advance(f, now);
            break;
        default:
            now += (r >> 24) % (1ULL << ((r >> 40) % 32));
            queue_timer_test_advance(f, now);
            break;
        }
        next = queue_timer_next_due(&f->t);
        min_due = queue_timer_test_min_due(items, N);
        assert_true(next <= min_due);
        if (min_due > f->now && (r >> 20) % 8 >= 5) {
            /* Right after an advance nothing left is due: no busy loop. */
            assert_true(next > f->now);
        }
    }
    assert_int_equal(f->early, 0);
    {
        size_t armed = 0;

        for (size_t i = 0; i < N; i++) {
            armed += queue_timer_entry_is_armed(&items[i].te);
        }
        assert_int_equal(queue_timer_count(&f->t), armed);
    }
    free(items);
}

static void
queue_timer_beyond_wheel_span_waits_in_overflow(void **state)
{
    struct queue_timer_test_fixture *f = *state;
    struct queue_timer_test_item far = {0}, never = {0};
    uint64_t due = T0 + (1ULL << 37) + 12345; /* ~4.4 years at 1 ms */

    queue_timer_init(&f->t, T0, 1);
    queue_timer_test_add(f, &far, due);
    queue_timer_test_add(f, &never, UINT64_MAX);
    assert_true(queue_timer_next_due(&f->t) <= due);
    assert_int_equal(queue_timer_test_advance(f, T0 + (1ULL << 36)), 0);
    assert_int_equal(queue_timer_test_advance(f, due - 1), 0);
    assert_true(queue_timer_next_due(&f->t) <= due);
    assert_int_equal(queue_timer_test_advance(f, due), 1);
    assert_int_equal(far.fired, 1);
    assert_int_equal(queue_timer_test_advance(f, UINT64_MAX - 1), 0);
    assert_int_equal(queue_timer_test_advance(f, UINT64_MAX), 1);
    assert_int_equal(never.fired, 1);
}

static void
queue_timer_backwards_clock_fires_only_what_is_due(void **state)
{
    struct queue_timer_test_fixture *f = *state;
    struct queue_timer_test_item a = {0}, b = {0};

    queue_timer_init(&f->t, 10000, 10);
    assert_int_equal(queue_timer_test_advance(f, 10000), 0);
    queue_timer_test_add(f, &a, 9000);
    queue_timer_test_add(f, &b, 10500);
    assert_int_equal(queue_timer_test_advance(f, 9500), 1);
    assert_int_equal(a.fired, 1);
    assert_int_equal(b.fired, 0);
    assert_int_equal(queue_timer_test_advance(f, 10500), 1);
    assert_int_equal(f->early, 0);
}

static void
queue_timer_million_entries_insert_and_fire(void **state)
{
    struct queue_timer_test_fixture *f = *state;

    enum { N = 1000000 };
    struct queue_timer_test_item *items = calloc(N, sizeof(*items));
    uint64_t seed = 2024;
    uint64_t t_start, t_added, t_done;
    size_t fired = 0;
    unsigned steps = 0;

    assert_non_null(items);
    /* A 7-day max_age queue with a 1 s tick, advanced once a minute. */
    queue_timer_init(&f->t, T0, 1000);
    for (size_t i = 0; i < N; i++) {
        items[i].due = T0 + queue_timer_test_rand(&seed) % (7 * DAY);
    }
    t_start = queue_timer_test_ns();
    for (size_t i = 0; i < N; i++) {
        queue_timer_add(&f->t, &items[i].te, items[i].due);
    }
    t_added = queue_timer_test_ns();
    assert_int_equal(queue_timer_count(&f->t), N);
    for (uint64_t now = T0; queue_timer_count(&f->t) > 0; now += MINUTE) {
        size_t n = queue_timer_test_advance(f, now);

        fired += n;
        steps++;
        assert_int_equal(queue_timer_count(&f->t), N - fired);
    }
    t_done = queue_timer_test_ns();
    assert_int_equal(fired, N);
    assert_int_equal(f->fired, N);
    assert_int_equal(f->early, 0);
    assert_int_equal(f->out_of_order, 0);
    for (size_t i = 0; i < N; i += 997) {
        assert_int_equal(items[i].fired, 1);
        assert_true(items[i].fired_at - items[i].due < MINUTE);
    }
    print_message("1M entries: insert %.1f ns/entry, fire %.1f ns/entry "
                  "(%u advances)\n",
                  (double)(t_added - t_start) / N,
                  (double)(t_done - t_added) / N, steps);
    free(items);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f)                                                                   \
    cmocka_unit_test_setup_teardown(f, queue_timer_test_setup,                 \
                                    queue_timer_test_teardown)
        T(queue_timer_fires_in_due_order_and_never_early),
        T(queue_timer_waits_for_due_time_inside_a_tick),
        T(queue_timer_cancel_disarms_and_tolerates_unarmed),
        T(queue_timer_readd_moves_an_armed_entry),
        T(queue_timer_callback_may_readd_itself_and_cancel_others),
        T(queue_timer_callback_readding_now_waits_for_next_advance),
        T(queue_timer_past_due_fires_on_next_advance),
        T(queue_timer_seven_days_ahead_fire_on_time_in_big_steps),
        T(queue_timer_driving_by_next_due_fires_exactly_on_time),
        T(queue_timer_next_due_never_after_earliest_under_random_ops),
        T(queue_timer_beyond_wheel_span_waits_in_overflow),
        T(queue_timer_backwards_clock_fires_only_what_is_due),
        T(queue_timer_million_entries_insert_and_fire),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
