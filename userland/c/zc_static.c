/* Workload (a): one buffer, refilled and sent in a loop.
 *
 * The pattern of a program that reuses a static buffer.  Under copy-on-write
 * sends every refill writes to pages the kernel may still hold: a fault per
 * page, and a copy while the page is in flight.  Under vmsplice the refill
 * does not wait for the receiver (no completions are asked for): the promise
 * not to touch lent pages is broken, and the receiver gets the new bytes. */
#include "zerocopy.h"

int main(int argc, char **argv, char **envp)
{
    struct workload w = {0};
    start(&w, argc, argv);
    unsigned char *buffer = map_buffer(&w, w.size);
    for (unsigned long n = 0; n < w.sends; n++) {
        fill(&w, buffer, n);
        send(&w, buffer, w.size);
    }
    return finish(&w);
}
