/* test_policy_fx.h - the fixture shared by the tests of the policy's
 * runtime library (test_policy_<module>.c): a policy with a host that has
 * no messages and accepts every configuration call, a scratch directory,
 * and helpers that run a chunk of Lua as a policy file and check that it
 * loads, or that it fails with a given message. Header-only, static. */
#ifndef KUMO_TEST_POLICY_FX_H
#define KUMO_TEST_POLICY_FX_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/km.h"
#include "policy.h"

struct pfx {
    char dir[512];
    char path[600];
    struct policy *p;
};

static int
pfx_config(void *ctx, const char *fn, json_t *params, char *err, size_t errlen)
{
    (void)ctx;
    (void)fn;
    (void)params;
    (void)err;
    (void)errlen;
    return 0;
}

static int
pfx_setup(void **state)
{
    struct pfx *fx = km_calloc(1, sizeof(*fx));
    const char *tmp = getenv("KUMO_TEST_TMP");
    struct policy_host host = {.ctx = fx, .config = pfx_config};

    if (tmp != NULL) {
        (void)mkdir(tmp, 0700);
    }
    snprintf(fx->dir, sizeof(fx->dir), "%s/policy-lib-XXXXXX",
             tmp != NULL ? tmp : "/tmp");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->path, sizeof(fx->path), "%s/policy.lua", fx->dir);
    assert_int_equal(policy_new(&host, &fx->p), 0);
    *state = fx;
    return 0;
}

/* Remove the scratch directory and whatever a test wrote into it (flat). */
static int
pfx_teardown(void **state)
{
    struct pfx *fx = *state;
    char cmd[700];

    policy_free(fx->p);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
    assert_int_equal(system(cmd), 0);
    free(fx);
    return 0;
}

/* Write `name` in the scratch directory with `text`; the path in out. */
static void
pfx_write(struct pfx *fx, const char *name, const char *text, char *out,
          size_t outlen)
{
    FILE *f;

    snprintf(out, outlen, "%s/%s", fx->dir, name);
    f = fopen(out, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static int
pfx_load(struct pfx *fx, const char *src, char *err, size_t errlen)
{
    char path[700];

    pfx_write(fx, "policy.lua", src, path, sizeof(path));
    return policy_load(fx->p, path, err, errlen);
}

/* The chunk runs to its end (its own assert()s hold). */
static void
pfx_ok(struct pfx *fx, const char *src)
{
    char err[2048] = "";

    if (pfx_load(fx, src, err, sizeof(err)) != 0) {
        fail_msg("policy_load: %s", err);
    }
}

/* The chunk raises an error whose message contains `want`. */
static void
pfx_fails(struct pfx *fx, const char *src, const char *want)
{
    char err[2048] = "";

    assert_int_equal(pfx_load(fx, src, err, sizeof(err)), KM_EPOLICY);
    if (strstr(err, want) == NULL) {
        fail_msg("error '%s' does not contain '%s'", err, want);
    }
}
#endif /* KUMO_TEST_POLICY_FX_H */
