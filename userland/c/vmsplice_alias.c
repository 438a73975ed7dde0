/* vmsplice lends pages; write copies them.  What does a pipe's reader get when
 * the sender changes its buffer after sending but before the reader reads?
 *
 *   1. write, then overwrite the buffer: the reader gets the bytes as they were sent
 *   2. vmsplice a whole page, then overwrite it: the reader gets the new bytes
 *   3. vmsplice a few bytes in the middle of a page, then overwrite them: the new bytes too
 *   4. vmsplice, then munmap the buffer and map a fresh page there: the reader
 *      still gets the sent bytes, from the page the pipe kept
 *   5. a forked child vmsplices the page it shares with its parent and exits;
 *      then the parent writes: the reader gets the bytes as sent.  The parent's
 *      write fault must copy the page the pipe still holds, not take it back
 *      (Linux has done so since 5.8; before, the child could read what the
 *      parent wrote later: CVE-2020-29374)
 * Linux behaves this way; vmgames must print exactly the same lines. */
#include "runtime.h"

#define MESSAGE 16

static int failures;

static void copy_text(unsigned char *to, const char *text)
{
    for (int i = 0; i < MESSAGE; i++)
        to[i] = (unsigned char)text[i];
}

static long must(long result, const char *what)
{
    if (result < 0) {
        put(what);
        put(" failed: ");
        put_number(result);
        end_line();
        exit(100);
    }
    return result;
}

static unsigned char *fresh_page(void *where)
{
    return (unsigned char *)must(mmap(where, PAGE_SIZE, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS | (where ? MAP_FIXED : 0), -1, 0), "mmap");
}

/* Read the message back out of the pipe and print it; returns whether it was `expected`. */
static void report(const char *what, int fd, const char *expected)
{
    char got[MESSAGE + 1];
    long count = must(read(fd, got, MESSAGE), "read");
    got[count] = 0;
    put(what);
    put(": reader got \"");
    put(got);
    put("\"");
    end_line();
    failures += count != MESSAGE || !strings_equal(got, expected);
}

static void send_and_overwrite(int fds[2], unsigned char *buffer, int lend, const char *what)
{
    copy_text(buffer, "sent-at-the-time");
    if (lend) {
        struct iovec iov = {buffer, MESSAGE};
        must(vmsplice(fds[1], &iov, 1, 0), "vmsplice");
    } else {
        must(write(fds[1], buffer, MESSAGE), "write");
    }
    copy_text(buffer, "written-after-it");
    report(what, fds[0], lend ? "written-after-it" : "sent-at-the-time");
}

int main(int argc, char **argv, char **envp)
{
    int fds[2];
    must(pipe(fds), "pipe");
    unsigned char *page = fresh_page(0);
    send_and_overwrite(fds, page, 0, "write, then overwrite");
    send_and_overwrite(fds, page, 1, "vmsplice a page, then overwrite");
    send_and_overwrite(fds, page + 1000, 1, "vmsplice 16 bytes mid-page, then overwrite");

    copy_text(page, "kept-by-the-pipe");
    struct iovec iov = {page, MESSAGE};
    must(vmsplice(fds[1], &iov, 1, 0), "vmsplice");
    must(munmap(page, PAGE_SIZE), "munmap");
    unsigned char *again = fresh_page(page);
    report("vmsplice, then munmap and map a fresh page there", fds[0], "kept-by-the-pipe");
    put("the fresh page holds ");
    put(again[0] ? "bytes" : "zeros");
    end_line();

    copy_text(again, "sent-at-the-time");
    long child = must(fork(), "fork");
    if (child == 0) {
        struct iovec lent = {again, MESSAGE};
        exit(vmsplice(fds[1], &lent, 1, 0) == MESSAGE ? 0 : 1);
    }
    int status = 0;
    must(wait4(child, &status, 0, 0), "wait4");
    failures += status != 0;
    copy_text(again, "written-after-it");
    report("a child vmsplices and exits, then the parent overwrites", fds[0], "sent-at-the-time");
    return failures;
}
