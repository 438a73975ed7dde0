/* poll and ppoll on pipes, files and the standard descriptors: what is
 * ready at once, waiting with no timeout for a child to write, finite
 * timeouts (which pass in virtual time on vmgames), ppoll's timespec and
 * signal mask, and the errors. */
#include "libc_probe.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

static void show_poll(const char *what, struct pollfd *fds, int count, int timeout)
{
    for (int i = 0; i < count; i++)
        fds[i].revents = 0x5a5a;
    long ready = RAW3(SYS_poll, fds, count, timeout);
    if (ready < 0) {
        show(what, ready);
        return;
    }
    printf("%s: %ld ready,", what, ready);
    for (int i = 0; i < count; i++)
        printf(" %#x", (unsigned short)fds[i].revents);
    printf("\n");
}

static long milliseconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int main(void)
{
    probe_start();
    int fds[2];
    pipe(fds);
    int file = open("hello.txt", O_RDONLY);
    struct pollfd one[1] = {{fds[0], POLLIN, 0}};
    show_poll("empty pipe, POLLIN, timeout 0", one, 1, 0);
    struct pollfd ends[2] = {{fds[0], POLLIN | POLLOUT | POLLRDNORM, 0}, {fds[1], POLLIN | POLLOUT, 0}};
    show_poll("empty pipe: both ends", ends, 2, 0);
    write(fds[1], "x", 1);
    show_poll("one byte in: both ends", ends, 2, 0);
    struct pollfd everything[2] = {{fds[0], -1, 0}, {fds[1], -1, 0}};
    show_poll("every event asked", everything, 2, 0);
    close(fds[1]);
    show_poll("writer closed, a byte left", ends, 1, 0);
    char byte;
    read(fds[0], &byte, 1);
    show_poll("writer closed, drained", ends, 1, 0);
    one[0].events = 0;
    show_poll("writer closed, no events asked", one, 1, 0);
    show_poll("writer closed, infinite timeout: POLLHUP at once", ends, 1, -1);
    close(fds[0]);

    pipe(fds);
    close(fds[0]);
    struct pollfd writer[1] = {{fds[1], POLLOUT, 0}};
    show_poll("reader closed, POLLOUT", writer, 1, 0);
    writer[0].events = 0;
    show_poll("reader closed, no events asked", writer, 1, 0);
    close(fds[1]);

    pipe(fds);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    static char page[4096];
    int pages = 0;
    while (write(fds[1], page, sizeof page) == sizeof page)
        pages++;
    printf("a pipe holds %d pages\n", pages);
    struct pollfd full[1] = {{fds[1], POLLOUT, 0}};
    show_poll("full pipe, POLLOUT", full, 1, 0);
    read(fds[0], page, sizeof page);
    show_poll("a page read out of it", full, 1, 0);
    close(fds[0]);
    close(fds[1]);

    struct pollfd mixed[5] = {{-1, POLLIN, 0}, {99, POLLIN, 0}, {file, POLLIN, 0}, {file, -1, 0}, {0, POLLIN, 0}};
    show_poll("fd -1, a closed fd, a file twice, /dev/null", mixed, 5, 0);
    struct pollfd out[1] = {{1, POLLOUT, 0}};
    show_poll("stdout (a pipe), POLLOUT", out, 1, 0);
    show_poll("no fds, timeout 0", NULL, 0, 0);

    /* Waiting: a child writes, the parent's poll without timeout wakes for it. */
    pipe(fds);
    pid_t child = probe_fork();
    if (child == 0) {
        for (volatile int i = 0; i < 200000; i++)
            ;
        write(fds[1], "late", 4);
        _exit(0);
    }
    struct pollfd wait_for[1] = {{fds[0], POLLIN, 0}};
    show_poll("poll(-1) until the child writes", wait_for, 1, -1);
    waitpid(child, NULL, 0);
    read(fds[0], page, 4);
    child = probe_fork();
    if (child == 0) {
        write(fds[1], "soon", 4);
        _exit(0);
    }
    long before = milliseconds();
    show_poll("poll(5000) until the child writes", wait_for, 1, 5000);
    printf("  it came before the timeout: %s\n", yes(milliseconds() - before < 4000));
    waitpid(child, NULL, 0);
    read(fds[0], page, 4);
    child = probe_fork();
    if (child == 0) {
        close(fds[1]);
        _exit(0);
    }
    close(fds[1]);
    show_poll("poll(-1) until the last writer exits", wait_for, 1, -1);
    waitpid(child, NULL, 0);
    close(fds[0]);

    /* A finite timeout with nothing to come. */
    pipe(fds);
    before = milliseconds();
    show_poll("poll(50) of an empty pipe", wait_for, 1, 50);
    wait_for[0].fd = fds[0];
    show_poll("poll(50) of an empty pipe", wait_for, 1, 50);
    long waited = milliseconds() - before;
    printf("  waited at least 50 ms: %s\n", yes(waited >= 50));
    before = milliseconds();
    show_poll("poll(30) of nothing: a sleep", NULL, 0, 30);
    printf("  waited at least 30 ms: %s\n", yes(milliseconds() - before >= 30));

    /* ppoll: a timespec (NULL waits for ever), the time left written back, a signal mask checked. */
    struct timespec zero = {0, 0}, twenty = {0, 20000000}, five = {5, 0}, bad = {0, 1000000000}, negative = {-1, 0};
    show("ppoll(empty pipe, {0, 0})", RAW5(SYS_ppoll, wait_for, 1, &zero, NULL, 8));
    show("ppoll(empty pipe, {0, 20 ms})", RAW5(SYS_ppoll, wait_for, 1, &twenty, NULL, 8));
    printf("  time left: %ld.%09ld\n", (long)twenty.tv_sec, twenty.tv_nsec);
    write(fds[1], "y", 1);
    show("ppoll(a byte in, {5, 0})", RAW5(SYS_ppoll, wait_for, 1, &five, NULL, 8));
    printf("  time left is most of it: %s\n", yes(five.tv_sec == 4 || (five.tv_sec == 5 && five.tv_nsec == 0)));
    show("ppoll(a byte in, NULL)", RAW5(SYS_ppoll, wait_for, 1, NULL, NULL, 8));
    uint64_t mask = 0;
    show("ppoll with a signal mask", RAW5(SYS_ppoll, wait_for, 1, NULL, &mask, 8));
    show("ppoll with a signal mask of 4 bytes", RAW5(SYS_ppoll, wait_for, 1, NULL, &mask, 4));
    show("ppoll with no signal mask, size 4", RAW5(SYS_ppoll, wait_for, 1, NULL, NULL, 4));
    show("ppoll with a bad signal mask", RAW5(SYS_ppoll, wait_for, 1, NULL, BAD_POINTER, 8));
    show("ppoll(tv_nsec 1e9)", RAW5(SYS_ppoll, wait_for, 1, &bad, NULL, 8));
    show("ppoll(tv_sec -1)", RAW5(SYS_ppoll, wait_for, 1, &negative, NULL, 8));
    show("ppoll(bad timespec)", RAW5(SYS_ppoll, wait_for, 1, BAD_POINTER, NULL, 8));
    static const struct timespec read_only = {5, 0};
    show("ppoll({5, 0} in read-only memory, a byte in): the time left is not written, no fault",
         RAW5(SYS_ppoll, wait_for, 1, &read_only, NULL, 8));

    /* Errors. */
    show("poll(bad pointer, 1)", RAW3(SYS_poll, BAD_POINTER, 1, 0));
    show("poll(bad pointer, 0)", RAW3(SYS_poll, BAD_POINTER, 0, 0));
    show("poll(read-only memory, 1)", RAW3(SYS_poll, main, 1, 0));
    show("poll of 2^20 fds", RAW3(SYS_poll, wait_for, 1 << 20, 0));
    return 0;
}
