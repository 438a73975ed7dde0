/*
 * A copy-on-write send while another thread writes the buffer: what a missing TLB shootdown does.
 *
 * The main thread sends a buffer to the slow wire with FreeBSD-style copy-on-write sends (vmgames'
 * ioctl VMG_ZEROCOPY): the kernel holds the buffer's pages until the wire's peer has taken them, and
 * write-protects every mapping of them, so that a write in the meantime faults and gets a copy.  A
 * second thread, which the scheduler puts on another CPU (vmgames run --cpus 2), writes the buffer all
 * along.  Its CPU caches a writable translation of each page; only a shootdown IPI takes it away.
 *
 *   vmgames run --cpus 2 --stats build/stale_tlb                 corrupt bytes: 0
 *   vmgames run --cpus 2 --stats --skip-invalidation remote-shootdown build/stale_tlb
 *                                                                 the writer's stores reach the pages in
 *                                                                 flight: corrupt bytes > 0
 *   ... --check-tlb                                               the sanitizer names the missing IPI
 *
 * It prints what it sent and how many bytes the writer wrote; vmgames' --stats counts the bytes the peer
 * got that differ from what the buffer held at send time ("bytes corrupt").  See docs/smp.md.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define VMG_ZEROCOPY 0x7A01     /* ioctl: copy-on-write sends on this open file (vmgames only) */
#define PAGE 4096
#define PAGES 64

static char buffer[PAGES * PAGE] __attribute__((aligned(PAGE)));
static atomic_int phase;        /* 0: starting, 1: the writer runs, 2: the send is over, stop */
static long written;

static void *writer(void *unused)
{
    (void)unused;
    atomic_store(&phase, 1);
    for (unsigned char value = 1; atomic_load_explicit(&phase, memory_order_relaxed) == 1; value++) {
        for (int page = 0; page < PAGES; page++)
            buffer[page * PAGE + value % 64] = (char)value;
        written += PAGES;
    }
    return NULL;
}

int main(void)
{
    memset(buffer, 'A', sizeof buffer);
    int wire = open("/dev/wire", O_WRONLY);
    if (wire < 0) {
        perror("open /dev/wire (it exists on vmgames only)");
        return 1;
    }
    if (ioctl(wire, VMG_ZEROCOPY, 1) < 0) {
        perror("ioctl VMG_ZEROCOPY");
        return 1;
    }
    pthread_t thread;
    if (pthread_create(&thread, NULL, writer, NULL) != 0) {
        fputs("pthread_create failed\n", stderr);
        return 1;
    }
    while (atomic_load(&phase) == 0)
        ;
    ssize_t sent = write(wire, buffer, sizeof buffer);
    close(wire);                /* a graceful close: the peer goes on taking what is in flight */
    /* The peer takes a page per microsecond (vmgames' default --wire-rate): sleep while it takes every
     * page and the writer goes on writing, then stop the writer. */
    struct timespec pause = {0, 1000000};
    nanosleep(&pause, NULL);
    atomic_store(&phase, 2);
    pthread_join(thread, NULL);
    printf("sent %zd bytes copy-on-write while the other thread wrote %ld bytes into the buffer\n",
           sent, written);
    return sent == (ssize_t)sizeof buffer ? 0 : 1;
}
