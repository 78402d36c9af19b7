/* fd_headroom.c - descriptor headroom against RLIMIT_NOFILE (see the
 * header). Reads the limit on every call, so a prlimit on the running
 * process is seen at once; two syscalls at most. */
#include "fd_headroom.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

static size_t
fd_headroom_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > (rlim_t)1 << 30) {
        return (size_t)1 << 30;
    }
    return (size_t)rl.rlim_cur;
}

size_t
fd_headroom_reserve(void)
{
    size_t r = fd_headroom_limit() / 4;

    return r < 32 ? 32 : r > 1024 ? 1024 : r;
}

bool
fd_headroom_is_low(int fd)
{
    size_t limit = fd_headroom_limit();
    size_t reserve = fd_headroom_reserve();

    return fd < 0 || limit <= reserve || (size_t)fd >= limit - reserve;
}

bool
fd_headroom_is_low_now(void)
{
    int fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);
    bool low = fd_headroom_is_low(fd);

    if (fd >= 0) {
        close(fd);
    }
    return low;
}
