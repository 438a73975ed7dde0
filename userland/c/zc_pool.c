/* Workload (c): a pool of buffers, each reused only once it is free again.
 *
 * The pool covers 512 KiB (at least two buffers), twice what a wire holds
 * in flight by default.  Under vmsplice a buffer is refilled only after
 * zc_reap has reported its last send complete: the promise is kept, at the
 * price of the completion calls.  Under write and cow the buffers are simply
 * used in turn (copy-on-write finds them drained more often than one buffer). */
#include "zerocopy.h"

#define POOL_BYTES (512L << 10)
#define MAX_BUFFERS 128

int main(int argc, char **argv, char **envp)
{
    struct workload w = {0};
    start(&w, argc, argv);
    unsigned long count = POOL_BYTES / w.size;
    count = count < 2 ? 2 : count > MAX_BUFFERS ? MAX_BUFFERS : count;
    unsigned char *pool = map_buffer(&w, count * w.size);
    unsigned long next_sequence_of[MAX_BUFFERS] = {0};   /* sequence numbers a buffer's last send used, + 1 */
    for (unsigned long n = 0; n < w.sends; n++) {
        unsigned long k = n % count;
        unsigned char *buffer = pool + k * w.size;
        if (w.mode == MODE_VMSPLICE)
            wait_for_completions(&w, next_sequence_of[k]);
        fill(&w, buffer, n);
        send(&w, buffer, w.size);
        next_sequence_of[k] = w.sequence;
    }
    return finish(&w);
}
