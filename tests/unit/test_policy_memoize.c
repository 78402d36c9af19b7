/* test_policy_memoize.c - kumo.memoize: a hit does not call the function,
 * entries are per argument set, expire after ttl, the eldest is evicted at
 * capacity, errors are not cached, one cache per name is shared by every
 * memoized function of that name, and bad parameters are errors naming
 * them. */
#include "test_policy_fx.h"

/* ---- Helpers ---- */

/* Call the declared event `ev`; expect an integer result. */
static long long
pfx_call_int(struct pfx *fx, const char *ev)
{
    struct policy_result res;
    char err[1024] = "";
    long long v;

    if (policy_call(fx->p, ev, NULL, 0, &res, err, sizeof(err)) != 0) {
        fail_msg("%s: %s", ev, err);
    }
    assert_true(json_is_integer(res.value));
    v = json_integer_value(res.value);
    policy_result_fini(&res);
    return v;
}

/* ---- Tests ---- */

static void
memoize_calls_the_function_once_per_argument_set(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx,
           "local calls = 0\n"
           "local f = kumo.memoize(function(a, b)\n"
           "  calls = calls + 1\n"
           "  return tostring(a) .. tostring(b), calls\n"
           "end, { name = 'join', ttl = '5 minutes', capacity = 10 })\n"
           "local v, n = f('x', 'y')\n"
           "assert(v == 'xy' and n == 1)\n"
           "v, n = f('x', 'y')\n"
           "assert(v == 'xy' and n == 1, 'a hit returns the cached values')\n"
           "assert(calls == 1)\n"
           "f('x', 'z')\n"
           "assert(calls == 2)\n"
           "f({ k = 1 }, 'y'); f({ k = 1 }, 'y')\n"
           "assert(calls == 3, 'equal tables share an entry')\n");
}

static void
memoize_entries_expire_after_ttl(void **state)
{
    struct pfx *fx = *state;

    policy_declare_event(fx->p, "probe");
    pfx_ok(fx, "local calls = 0\n"
               "local f = kumo.memoize(function() calls = calls + 1\n"
               "  return calls end,\n"
               "  { name = 'short', ttl = '50ms', capacity = 4 })\n"
               "kumo.on('probe', function() return f() end)\n");
    assert_int_equal(pfx_call_int(fx, "probe"), 1);
    assert_int_equal(pfx_call_int(fx, "probe"), 1);
    usleep(80 * 1000);
    assert_int_equal(pfx_call_int(fx, "probe"), 2);
}

static void
memoize_evicts_the_eldest_at_capacity(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx, "local calls = {}\n"
               "local f = kumo.memoize(function(k)\n"
               "  calls[k] = (calls[k] or 0) + 1\n"
               "  return k end,\n"
               "  { name = 'small', ttl = 300, capacity = 2 })\n"
               "f('a'); f('b'); f('a')\n"
               "assert(calls.a == 1 and calls.b == 1)\n"
               "f('c') -- evicts a, the eldest\n"
               "f('b')\n"
               "assert(calls.b == 1, 'b stayed')\n"
               "f('a')\n"
               "assert(calls.a == 2, 'a was evicted')\n");
}

static void
memoize_does_not_cache_errors(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx, "local calls = 0\n"
               "local f = kumo.memoize(function()\n"
               "  calls = calls + 1\n"
               "  if calls == 1 then error('boom') end\n"
               "  return 'ok' end,\n"
               "  { name = 'flaky', ttl = 300, capacity = 2 })\n"
               "assert(not pcall(f))\n"
               "assert(f() == 'ok' and calls == 2)\n");
}

static void
memoize_caches_by_name_across_functions(void **state)
{
    struct pfx *fx = *state;

    pfx_ok(fx,
           "local calls = 0\n"
           "local function load() calls = calls + 1 return calls end\n"
           "local opts = { name = 'shared', ttl = 300, capacity = 2 }\n"
           "local f1, f2 = kumo.memoize(load, opts), kumo.memoize(load, opts)\n"
           "assert(f1() == 1 and f2() == 1 and calls == 1)\n");
}

static void
memoize_bad_parameters_are_named(void **state)
{
    struct pfx *fx = *state;
    const char *f = "local fn = function() end\n";
    char src[512];

    snprintf(src, sizeof(src),
             "%skumo.memoize(fn, { ttl = 1, capacity = 1 })\n", f);
    pfx_fails(fx, src, "kumo.memoize: 'name' is required");
    snprintf(src, sizeof(src),
             "%skumo.memoize(fn, { name = 'a', capacity = 1 })\n", f);
    pfx_fails(fx, src, "kumo.memoize: 'ttl' is required");
    snprintf(src, sizeof(src),
             "%skumo.memoize(fn, { name = 'a', ttl = 'soon', capacity = 1 })\n",
             f);
    pfx_fails(fx, src, "kumo.memoize: 'ttl': 'soon' is not a duration");
    snprintf(src, sizeof(src), "%skumo.memoize(fn, { name = 'a', ttl = 1 })\n",
             f);
    pfx_fails(fx, src, "kumo.memoize: 'capacity' is required");
    snprintf(
        src, sizeof(src),
        "%skumo.memoize(fn, { name = 'a', ttl = 1, capacity = 1, size = 3 })\n",
        f);
    pfx_fails(fx, src, "kumo.memoize: unknown parameter 'size'");
    pfx_fails(fx, "kumo.memoize('x', {})\n",
              "bad argument #1 to 'memoize' (function expected, got string)");
    snprintf(
        src, sizeof(src),
        "%slocal m = kumo.memoize(fn, { name = 'a', ttl = 1, capacity = 1 })\n"
        "m(print)\n",
        f);
    pfx_fails(fx, src, "kumo.memoize: 'a': argument #1 cannot be a cache key");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            memoize_calls_the_function_once_per_argument_set, pfx_setup,
            pfx_teardown),
        cmocka_unit_test_setup_teardown(memoize_entries_expire_after_ttl,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(memoize_evicts_the_eldest_at_capacity,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(memoize_does_not_cache_errors,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(memoize_caches_by_name_across_functions,
                                        pfx_setup, pfx_teardown),
        cmocka_unit_test_setup_teardown(memoize_bad_parameters_are_named,
                                        pfx_setup, pfx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
