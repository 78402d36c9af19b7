/* test_util.h - helpers shared by loop-driven unit tests: drive a loop
 * until a flag is set, remove a test's temp directory, pick a free port. */
#ifndef KUMO_TEST_UTIL_H
#define KUMO_TEST_UTIL_H
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* How long test_run_until waits before it fails the test (STYLE §13). */
#ifndef TEST_RUN_DEADLINE_MS
#define TEST_RUN_DEADLINE_MS 60000
#endif

/* Keeps a loop turning while test_run_until waits, so a wait for a flag
 * that nothing will set ends at the deadline instead of hanging. */
static inline void
test_run_until_tick(uv_timer_t *t)
{
    (void)t;
}

/* Run `loop` one iteration at a time until *flag is true; fail the test
 * (abort outside cmocka) if that takes longer than TEST_RUN_DEADLINE_MS. */
static inline void
test_run_until(uv_loop_t *loop, const bool *flag)
{
    uint64_t deadline = uv_hrtime() / 1000000 + TEST_RUN_DEADLINE_MS;
    uv_timer_t tick;

    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, test_run_until_tick, 100, 100);
    while (!*flag) {
        if (uv_hrtime() / 1000000 > deadline) {
            uv_close((uv_handle_t *)&tick, NULL);
            uv_run(loop, UV_RUN_NOWAIT);
#ifdef fail_msg
            fail_msg("test_run_until: flag not set within %d ms",
                     TEST_RUN_DEADLINE_MS);
#else
            fprintf(stderr, "test_run_until: flag not set within %d ms\n",
                    TEST_RUN_DEADLINE_MS);
            abort();
#endif
        }
        uv_run(loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* Remove `dir` and everything in it; 0 or -1. */
static inline int
test_rm_rf(const char *dir)
{
    char cmd[600];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A 127.0.0.1 TCP port nobody uses right now, below the kernel's
 * ephemeral range (32768 and up): a node a test restarts finds its port
 * free again, never taken meanwhile by an outgoing connection, such as a
 * peer's redial that connected to itself. Never the same port twice in a
 * process. -1 if none was found. */
static inline int
test_free_port(void)
{
    static unsigned seed;
    static int given[256];
    static int n_given;

    if (seed == 0) {
        seed = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
    }
    for (int tries = 0; tries < 1000; tries++) {
        int port = 20000 + (int)(rand_r(&seed) % 12768);
        bool dup = false;
        for (int i = 0; i < n_given; i++) {
            dup = dup || given[i] == port;
        }
        if (dup) {
            continue;
        }
        struct sockaddr_in sa;
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        if (fd >= 0) {
            close(fd);
        }
        if (ok) {
            if (n_given < (int)(sizeof(given) / sizeof(given[0]))) {
                given[n_given++] = port;
            }
            return port;
        }
    }
    return -1;
}
#endif /* KUMO_TEST_UTIL_H */
