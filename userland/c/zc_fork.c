/* Workload (d): a forked child sends while its parent keeps writing.
 *
 * Each round the parent forks a child that sends the buffer as it was at the
 * fork, then yields so the child's send gets going, and writes the next
 * round's bytes into the same buffer while the child's pages may still be in
 * flight.  Copy-on-write after fork should give the parent its own copies and
 * leave the child's pages alone, whatever the send mode; the counts show what
 * that costs and whether it held. */
#include "zerocopy.h"

int main(int argc, char **argv, char **envp)
{
    struct workload w = {0};
    start(&w, argc, argv);
    unsigned char *buffer = map_buffer(&w, w.size);
    fill(&w, buffer, 0);
    for (unsigned long n = 0; n < w.sends; n++) {
        long child = fork();
        if (child < 0)
            fail(&w, "fork", child);
        if (child == 0) {
            send(&w, buffer, w.size);
            exit(0);
        }
        sched_yield();
        if (n + 1 < w.sends)
            fill(&w, buffer, n + 1);
        int status = 0;
        long result = wait4(child, &status, 0, 0);
        if (result < 0)
            fail(&w, "wait4", result);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail(&w, "the sending child", status);
    }
    return finish(&w);
}
