/* Shared by the libc probes (userland/c/libc_*.c): static glibc and musl
 * programs, run natively and on vmgames in the same directory, whose
 * output must be the same on both.
 *
 * A call's result is printed as Linux returns it: a value, or -ENAME.  The
 * calls go through `raw`, the syscall instruction itself, so that glibc
 * and musl (and a vDSO) print the same thing.  A line that starts with "@"
 * depends on the host (a path outside the tree, a limit of the host's, the
 * random bytes): the tests compare every other line with the host, and
 * hold vmgames' "@" lines to what vmgames must print. */
#ifndef VMGAMES_LIBC_PROBE_H
#define VMGAMES_LIBC_PROBE_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BAD_POINTER ((void *)8)        /* page 0: never mapped */

static __attribute__((unused)) long raw(long number, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long result;
    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "a"(number), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return result;
}

#define RAW0(n) raw((n), 0, 0, 0, 0, 0, 0)
#define RAW1(n, a) raw((n), (long)(a), 0, 0, 0, 0, 0)
#define RAW2(n, a, b) raw((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define RAW3(n, a, b, c) raw((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define RAW4(n, a, b, c, d) raw((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define RAW5(n, a, b, c, d, e) raw((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

/* Every probe starts with only the standard descriptors, whatever the host's parent left open, and
 * prints whole lines as they come. */
static __attribute__((unused)) void probe_start(void)
{
    for (int fd = 3; fd < 1024; fd++)
        RAW1(SYS_close, fd);
    setvbuf(stdout, NULL, _IOLBF, 0);
}

/* fork(2) itself: glibc's fork() is a clone(2), which vmgames does not have yet. */
static __attribute__((unused)) pid_t probe_fork(void)
{
    fflush(NULL);
    return (pid_t)RAW0(SYS_fork);
}

static __attribute__((unused)) const char *errno_name(long number)
{
    static const char *names[] = {
        [EPERM] = "EPERM", [ENOENT] = "ENOENT", [ESRCH] = "ESRCH", [EINTR] = "EINTR", [EIO] = "EIO",
        [ENXIO] = "ENXIO", [E2BIG] = "E2BIG", [ENOEXEC] = "ENOEXEC", [EBADF] = "EBADF", [ECHILD] = "ECHILD",
        [EAGAIN] = "EAGAIN", [ENOMEM] = "ENOMEM", [EACCES] = "EACCES", [EFAULT] = "EFAULT",
        [EEXIST] = "EEXIST", [ENOTDIR] = "ENOTDIR", [EISDIR] = "EISDIR", [EINVAL] = "EINVAL",
        [EMFILE] = "EMFILE", [ENOTTY] = "ENOTTY", [ESPIPE] = "ESPIPE", [EROFS] = "EROFS", [EPIPE] = "EPIPE",
        [ERANGE] = "ERANGE", [ENAMETOOLONG] = "ENAMETOOLONG", [ENOSYS] = "ENOSYS", [ELOOP] = "ELOOP",
        [EOVERFLOW] = "EOVERFLOW",
    };
    if (number > 0 && number < (long)(sizeof names / sizeof names[0]) && names[number])
        return names[number];
    return "E?";
}

/* "what: 3" or "what: -ENOENT"; returns the result. */
static __attribute__((unused)) long show(const char *what, long result)
{
    if (result < 0 && result > -4096)
        printf("%s: -%s\n", what, errno_name(-result));
    else
        printf("%s: %ld\n", what, result);
    return result;
}

static __attribute__((unused)) const char *file_type(unsigned mode)
{
    switch (mode & 0170000) {
    case 0100000: return "regular";
    case 0040000: return "directory";
    case 0120000: return "symlink";
    case 0010000: return "fifo";
    case 0020000: return "character device";
    case 0060000: return "block device";
    case 0140000: return "socket";
    }
    return "unknown";
}

static __attribute__((unused)) const char *yes(int condition)
{
    return condition ? "yes" : "NO";
}

#endif
