/* main.c - placeholder until the daemon's start-up lands. */
#include <stdio.h>

int
main(void)
{
    fputs("kumod: not built yet\n", stderr);
    return 1;
}
