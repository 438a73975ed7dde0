/* What read, write, writev and vmsplice answer to lengths no buffer has,
 * and what vmsplice does on a pipe's read end.
 *
 * Linux checks a count before it moves a byte: the range [buf, buf + count)
 * must end at or below the top of the user's addresses (access_ok, EFAULT),
 * and only then is the count cut to MAX_RW_COUNT.  An iovec's lengths must
 * not be negative as an ssize_t (EINVAL, every segment read first), then each
 * segment must pass access_ok (EFAULT); a lone segment is cut to
 * MAX_RW_COUNT before it is checked, so one huge length sends what it can
 * where two fail.  The number of segments is taken as an unsigned int.
 *
 * The buffer is two pages at a fixed address with an unmapped page after
 * them, so every count below stops at the same hole on both kernels: a
 * call that gets past the checks moves 8192 bytes.  The pipe is
 * non-blocking and drained after each call.
 *
 * vmsplice on a read end is a read into the iovec (vmsplice_to_user),
 * buffer by buffer as read is: a buffer whose bytes do not all reach the
 * user stays in the pipe.  It waits unless SPLICE_F_NONBLOCK, whatever the pipe's
 * O_NONBLOCK.  vmgames must print what Linux prints. */
#include "runtime.h"

#define BUFFER ((char *)0x10000000)
#define USER_TOP 0x7ffffffff000UL          /* TASK_SIZE_MAX with 4-level page tables */
#define HUGE (1UL << 62)
#define NEGATIVE (1UL << 63)

static int fds[2];

/* Print a result; the pipe keeps what it holds. */
static void report(const char *what, long result)
{
    put(what);
    put(": ");
    put_number(result);
    if (result == -9)
        put(" EBADF");
    else if (result == -11)
        put(" EAGAIN");
    else if (result == -14)
        put(" EFAULT");
    else if (result == -22)
        put(" EINVAL");
    end_line();
}

/* Print a result and empty the pipe for the next call. */
static void show(const char *what, long result)
{
    report(what, result);
    char sink[4096];
    while (read(fds[0], sink, sizeof sink) > 0)
        ;
}

static long must(long result, const char *what)
{
    if (result < 0) {
        show(what, result);
        exit(100);
    }
    return result;
}

int main(int argc, char **argv, char **envp)
{
    must(pipe2(fds, O_NONBLOCK), "pipe2");
    must(mmap(BUFFER, 3 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0), "mmap");
    must(munmap(BUFFER + 2 * PAGE_SIZE, PAGE_SIZE), "munmap");
    unsigned long to_top = USER_TOP - (unsigned long)BUFFER;

    show("write ~0", write(fds[1], BUFFER, ~0UL));
    show("write 1<<63", write(fds[1], BUFFER, NEGATIVE));
    show("write 1<<62", write(fds[1], BUFFER, HUGE));
    show("write up to the top", write(fds[1], BUFFER, to_top));
    show("write one past the top", write(fds[1], BUFFER, to_top + 1));
    show("write 0 at the top", write(fds[1], (void *)USER_TOP, 0));
    show("write 0 past the top", write(fds[1], (void *)(USER_TOP + 1), 0));
    show("read ~0 from an empty pipe", read(fds[0], BUFFER, ~0UL));
    show("read 0 past the top", read(fds[0], (void *)(USER_TOP + 1), 0));

    struct iovec one_huge[1] = {{BUFFER, HUGE}};
    struct iovec two_huge[2] = {{BUFFER, HUGE}, {BUFFER, HUGE}};
    struct iovec huge_then_negative[2] = {{BUFFER, HUGE}, {BUFFER, NEGATIVE}};
    struct iovec negative[1] = {{BUFFER, NEGATIVE}};
    struct iovec all_ones[1] = {{BUFFER, ~0UL}};
    struct iovec two_pages[1] = {{BUFFER, 2 * PAGE_SIZE}};
    struct iovec page_then_past_the_top[2] = {{BUFFER, PAGE_SIZE}, {(void *)(USER_TOP - PAGE_SIZE), PAGE_SIZE + 1}};

    show("vmsplice 1<<63", vmsplice(fds[1], negative, 1, 0));
    show("vmsplice ~0", vmsplice(fds[1], all_ones, 1, 0));
    show("vmsplice one 1<<62", vmsplice(fds[1], one_huge, 1, 0));
    show("vmsplice two 1<<62", vmsplice(fds[1], two_huge, 2, 0));
    show("vmsplice 1<<62 then 1<<63", vmsplice(fds[1], huge_then_negative, 2, 0));
    show("vmsplice a page, then one past the top", vmsplice(fds[1], page_then_past_the_top, 2, 0));
    show("vmsplice 1<<32 | 1 segments", vmsplice(fds[1], two_pages, (1UL << 32) | 1, 0));
    show("writev 1<<63", writev(fds[1], negative, 1));
    show("writev one 1<<62", writev(fds[1], one_huge, 1));
    show("writev two 1<<62", writev(fds[1], two_huge, 2));
    show("writev 1<<32 | 1 segments", writev(fds[1], two_pages, (1UL << 32) | 1));

    /* A file that is no pipe: the iovec is checked first, then the file. */
    int file = (int)must(open(argv[0], O_RDONLY, 0), "open");
    show("vmsplice a file, 1<<63", vmsplice(file, negative, 1, 0));
    show("vmsplice a file, iovec unmapped", vmsplice(file, (struct iovec *)16, 1, 0));
    show("vmsplice a file, no segments", vmsplice(file, two_pages, 0, 0));
    show("vmsplice a file", vmsplice(file, two_pages, 1, 0));

    struct iovec scattered[2] = {{BUFFER, 5}, {BUFFER + 100, 100}};
    struct iovec into_the_hole[1] = {{BUFFER + 2 * PAGE_SIZE - 5, 100}};
    struct iovec one_buffer_then_the_hole[1] = {{BUFFER + 2 * PAGE_SIZE - 16, 100}};
    write(fds[1], "hello world", 11);
    long got = vmsplice(fds[0], scattered, 2, 0);
    BUFFER[5] = BUFFER[106] = 0;
    put("read end: \"");
    put(BUFFER);
    put("\" and \"");
    put(BUFFER + 100);
    put("\"");
    show(", in all", got);
    show("read end, empty, SPLICE_F_NONBLOCK", vmsplice(fds[0], scattered, 2, SPLICE_F_NONBLOCK));
    write(fds[1], "hello world", 11);
    report("read end, into the hole", vmsplice(fds[0], into_the_hole, 1, 0));
    show("  then read", read(fds[0], BUFFER, 100));
    write(fds[1], "hello world", 11);
    write(fds[1], BUFFER, PAGE_SIZE);
    report("read end, two buffers, the second into the hole", vmsplice(fds[0], one_buffer_then_the_hole, 1, 0));
    show("  then read", read(fds[0], BUFFER, PAGE_SIZE));
    write(fds[1], "hello world", 11);
    write(fds[1], BUFFER, PAGE_SIZE);
    report("read, two buffers, the second into the hole", read(fds[0], BUFFER + 2 * PAGE_SIZE - 16, 100));
    show("  then read", read(fds[0], BUFFER, PAGE_SIZE));

    int blocking[2];
    must(pipe(blocking), "pipe");
    show("blocking pipe, read end, empty, SPLICE_F_NONBLOCK", vmsplice(blocking[0], scattered, 2, SPLICE_F_NONBLOCK));
    for (int page = 0; page < 16; page += 2)
        must(write(blocking[1], BUFFER, 2 * PAGE_SIZE), "write");
    show("blocking pipe, full, SPLICE_F_NONBLOCK", vmsplice(blocking[1], two_pages, 1, SPLICE_F_NONBLOCK));

    long child = must(fork(), "fork");
    if (child == 0) {
        for (volatile long spin = 0; spin < 1000000; spin++)
            ;
        write(fds[1], "late", 4);
        exit(0);
    }
    show("read end, empty, O_NONBLOCK pipe: waits for the writer", vmsplice(fds[0], scattered, 2, 0));
    int status;
    must(wait4(child, &status, 0, 0), "wait4");
    close(fds[1]);
    show("read end, no writer left", vmsplice(fds[0], scattered, 2, 0));
    return 0;
}
