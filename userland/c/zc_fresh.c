/* Workload (b): a fresh buffer for every send.
 *
 * Each send gets new pages from an anonymous mmap and gives them up with
 * munmap as soon as the send returns: nothing is ever rewritten, so no mode
 * can corrupt, and the cost is the zero-fill fault per page plus the unmap
 * (a PTE write and a TLB invalidation per page). */
#include "zerocopy.h"

int main(int argc, char **argv, char **envp)
{
    struct workload w = {0};
    start(&w, argc, argv);
    for (unsigned long n = 0; n < w.sends; n++) {
        unsigned char *buffer = map_buffer(&w, w.size);
        fill(&w, buffer, n);
        send(&w, buffer, w.size);
        long result = munmap(buffer, w.size);
        if (result < 0)
            fail(&w, "munmap", result);
    }
    return finish(&w);
}
