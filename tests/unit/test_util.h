/* test_util.h - helpers shared by loop-driven unit tests: drive a loop
 * until a flag is set, and remove a test's temp directory. */
#ifndef KUMO_TEST_UTIL_H
#define KUMO_TEST_UTIL_H
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

/* Run `loop` one iteration at a time until *flag is true. */
static inline void
test_run_until(uv_loop_t *loop, const bool *flag)
{
    while (!*flag) {
        uv_run(loop, UV_RUN_ONCE);
    }
}

/* Remove `dir` and everything in it; 0 or -1. */
static inline int
test_rm_rf(const char *dir)
{
    char cmd[600];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}
#endif /* KUMO_TEST_UTIL_H */
