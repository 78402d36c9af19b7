/* test_km_map.c - unit tests of the string-keyed hash map: insert, replace,
 * lookup by string and by view, removal, growth past many rehashes, and
 * iteration that removes the current entry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/km_map.h"

/* Fixture */

static int
km_map_test_setup(void **state)
{
    *state = km_map_new();
    return 0;
}

static int
km_map_test_teardown(void **state)
{
    km_map_free(*state);
    return 0;
}

/* Helpers */

static void
km_map_test_key(char *out, size_t n, int i)
{
    int w = snprintf(out, n, "key-%d", i);

    assert_true(w > 0 && (size_t)w < n);
}

/* Tests */

static void
km_map_put_then_get_returns_value(void **state)
{
    struct km_map *m = *state;
    int a = 1, b = 2;
    void *old = &a;

    assert_false(km_map_put(m, "alpha", &a, &old));
    assert_null(old);
    assert_false(km_map_put(m, "beta", &b, NULL));
    assert_ptr_equal(km_map_get(m, "alpha"), &a);
    assert_ptr_equal(km_map_get(m, "beta"), &b);
    assert_null(km_map_get(m, "gamma"));
    assert_int_equal(km_map_count(m), 2);
}

static void
km_map_put_existing_key_replaces_and_returns_old(void **state)
{
    struct km_map *m = *state;
    int a = 1, b = 2;
    void *old = NULL;

    km_map_put(m, "k", &a, NULL);
    assert_true(km_map_put(m, "k", &b, &old));
    assert_ptr_equal(old, &a);
    assert_ptr_equal(km_map_get(m, "k"), &b);
    assert_int_equal(km_map_count(m), 1);
}

static void
km_map_copies_its_keys(void **state)
{
    struct km_map *m = *state;
    char key[8] = "temp";
    int a = 1;

    km_map_put(m, key, &a, NULL);
    memcpy(key, "XXXX", 4);
    assert_ptr_equal(km_map_get(m, "temp"), &a);
    assert_null(km_map_get(m, "XXXX"));
}

static void
km_map_getn_matches_exact_view_only(void **state)
{
    struct km_map *m = *state;
    int a = 1;
    const char *text = "abcdef";

    km_map_put(m, "abc", &a, NULL);
    assert_ptr_equal(km_map_getn(m, text, 3), &a);
    assert_null(km_map_getn(m, text, 2));
    assert_null(km_map_getn(m, text, 4));
}

static void
km_map_has_sees_null_values(void **state)
{
    struct km_map *m = *state;

    km_map_put(m, "nothing", NULL, NULL);
    assert_true(km_map_has(m, "nothing"));
    assert_false(km_map_has(m, "other"));
}

static void
km_map_remove_deletes_key_and_returns_value(void **state)
{
    struct km_map *m = *state;
    int a = 1;
    void *v = NULL;

    km_map_put(m, "k", &a, NULL);
    assert_true(km_map_remove(m, "k", &v));
    assert_ptr_equal(v, &a);
    assert_false(km_map_remove(m, "k", &v));
    assert_null(km_map_get(m, "k"));
    assert_int_equal(km_map_count(m), 0);
}

static void
km_map_grows_and_keeps_all_entries(void **state)
{
    struct km_map *m = *state;
    char key[32];

    enum { N = 20000 };

    for (intptr_t i = 0; i < N; i++) {
        km_map_test_key(key, sizeof(key), (int)i);
        km_map_put(m, key, (void *)(i + 1), NULL);
    }
    assert_int_equal(km_map_count(m), N);
    for (intptr_t i = 0; i < N; i++) {
        km_map_test_key(key, sizeof(key), (int)i);
        assert_ptr_equal(km_map_get(m, key), (void *)(i + 1));
    }
}

static void
km_map_reinsert_after_many_removals_stays_correct(void **state)
{
    struct km_map *m = *state;
    char key[32];

    /* Churn fills the table with deleted markers; lookups of absent keys
     * must still terminate and inserts must reuse the space. */
    for (int round = 0; round < 50; round++) {
        for (intptr_t i = 0; i < 100; i++) {
            km_map_test_key(key, sizeof(key), round * 100 + (int)i);
            km_map_put(m, key, (void *)(i + 1), NULL);
        }
        for (int i = 0; i < 100; i++) {
            km_map_test_key(key, sizeof(key), round * 100 + i);
            assert_true(km_map_remove(m, key, NULL));
        }
    }
    assert_int_equal(km_map_count(m), 0);
    assert_null(km_map_get(m, "key-1"));
    km_map_put(m, "last", m, NULL);
    assert_ptr_equal(km_map_get(m, "last"), m);
}

static void
km_map_iteration_visits_every_entry_once(void **state)
{
    struct km_map *m = *state;
    char key[32];
    struct km_map_iter it;
    const char *k;
    void *v;
    int seen[500] = {0};

    for (intptr_t i = 0; i < 500; i++) {
        km_map_test_key(key, sizeof(key), (int)i);
        km_map_put(m, key, (void *)i, NULL);
    }
    km_map_iter_init(&it, m);
    while (km_map_iter_next(&it, &k, &v)) {
        intptr_t i = (intptr_t)v;
        km_map_test_key(key, sizeof(key), (int)i);
        assert_string_equal(k, key);
        seen[i]++;
    }
    for (int i = 0; i < 500; i++) {
        assert_int_equal(seen[i], 1);
    }
}

static void
km_map_iteration_tolerates_removing_current_entry(void **state)
{
    struct km_map *m = *state;
    char key[32];
    struct km_map_iter it;
    const char *k;
    void *v;
    int visited = 0;

    for (intptr_t i = 0; i < 300; i++) {
        km_map_test_key(key, sizeof(key), (int)i);
        km_map_put(m, key, (void *)i, NULL);
    }
    km_map_iter_init(&it, m);
    while (km_map_iter_next(&it, &k, &v)) {
        visited++;
        if ((intptr_t)v % 2 == 0) {
            snprintf(key, sizeof(key), "%s", k);
            assert_true(km_map_remove(m, key, NULL));
        }
    }
    assert_int_equal(visited, 300);
    assert_int_equal(km_map_count(m), 150);
    assert_null(km_map_get(m, "key-2"));
    assert_ptr_equal(km_map_get(m, "key-3"), (void *)3);
}

static void
km_map_clear_empties_map(void **state)
{
    struct km_map *m = *state;
    struct km_map_iter it;

    km_map_put(m, "a", NULL, NULL);
    km_map_put(m, "b", NULL, NULL);
    km_map_clear(m);
    assert_int_equal(km_map_count(m), 0);
    km_map_iter_init(&it, m);
    assert_false(km_map_iter_next(&it, NULL, NULL));
    assert_false(km_map_has(m, "a"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f)                                                                   \
    cmocka_unit_test_setup_teardown(f, km_map_test_setup, km_map_test_teardown)
        T(km_map_put_then_get_returns_value),
        T(km_map_put_existing_key_replaces_and_returns_old),
        T(km_map_copies_its_keys),
        T(km_map_getn_matches_exact_view_only),
        T(km_map_has_sees_null_values),
        T(km_map_remove_deletes_key_and_returns_value),
        T(km_map_grows_and_keeps_all_entries),
        T(km_map_reinsert_after_many_removals_stays_correct),
        T(km_map_iteration_visits_every_entry_once),
        T(km_map_iteration_tolerates_removing_current_entry),
        T(km_map_clear_empties_map),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
