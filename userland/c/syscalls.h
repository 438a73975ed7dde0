/* The Linux x86-64 syscalls the C examples use, with no libc.
 *
 * Every wrapper returns what the kernel put in rax: a result, or -errno.
 * The programs run unchanged on the host's Linux kernel and on vmgames. */
#ifndef VMGAMES_SYSCALLS_H
#define VMGAMES_SYSCALLS_H

#define SYS_read 0
#define SYS_write 1
#define SYS_open 2
#define SYS_close 3
#define SYS_mmap 9
#define SYS_mprotect 10
#define SYS_munmap 11
#define SYS_brk 12
#define SYS_ioctl 16
#define SYS_writev 20
#define SYS_pipe 22
#define SYS_sched_yield 24
#define SYS_madvise 28
#define SYS_dup2 33
#define SYS_getpid 39
#define SYS_fork 57
#define SYS_execve 59
#define SYS_exit 60
#define SYS_wait4 61
#define SYS_kill 62
#define SYS_getrusage 98
#define SYS_getppid 110
#define SYS_vmsplice 278
#define SYS_pipe2 293

#define PROT_NONE 0
#define PROT_READ 1
#define PROT_WRITE 2
#define PROT_EXEC 4
#define O_RDONLY 0
#define O_WRONLY 1
#define O_NONBLOCK 04000
#define MAP_SHARED 0x01
#define MAP_PRIVATE 0x02
#define MAP_FIXED 0x10
#define MAP_ANONYMOUS 0x20
#define MADV_NOHUGEPAGE 15
#define RUSAGE_SELF 0
#define RUSAGE_CHILDREN (-1)
#define SIGKILL 9
#define SIGSEGV 11
#define SIGTERM 15
#define PAGE_SIZE 4096

/* The wait status word, decoded as <sys/wait.h> does. */
#define WIFEXITED(status) (((status) & 0x7f) == 0)
#define WEXITSTATUS(status) (((status) >> 8) & 0xff)
#define WIFSIGNALED(status) (((status) & 0x7f) != 0 && ((status) & 0x7f) != 0x7f)
#define WTERMSIG(status) ((status) & 0x7f)

struct timeval {
    long tv_sec;
    long tv_usec;
};

/* As the kernel lays it out: two timevals, then fourteen longs. */
struct rusage {
    struct timeval ru_utime;
    struct timeval ru_stime;
    long ru_maxrss, ru_ixrss, ru_idrss, ru_isrss;
    long ru_minflt, ru_majflt, ru_nswap, ru_inblock, ru_oublock;
    long ru_msgsnd, ru_msgrcv, ru_nsignals, ru_nvcsw, ru_nivcsw;
};

static inline long syscall6(long number, long a, long b, long c, long d, long e, long f)
{
    long result;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(result)
                     : "a"(number), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return result;
}

static inline long syscall3(long number, long a, long b, long c)
{
    long result;
    __asm__ volatile("syscall" : "=a"(result) : "a"(number), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return result;
}

static inline long read(int fd, void *buf, unsigned long count)
{
    return syscall3(SYS_read, fd, (long)buf, (long)count);
}

static inline long write(int fd, const void *buf, unsigned long count)
{
    return syscall3(SYS_write, fd, (long)buf, (long)count);
}

static inline long close(int fd)
{
    return syscall3(SYS_close, fd, 0, 0);
}

static inline void __attribute__((noreturn)) exit(int status)
{
    syscall3(SYS_exit, status, 0, 0);
    __builtin_unreachable();
}

static inline long getpid(void)
{
    return syscall3(SYS_getpid, 0, 0, 0);
}

static inline long getppid(void)
{
    return syscall3(SYS_getppid, 0, 0, 0);
}

static inline long fork(void)
{
    return syscall3(SYS_fork, 0, 0, 0);
}

static inline long execve(const char *path, char *const argv[], char *const envp[])
{
    return syscall3(SYS_execve, (long)path, (long)argv, (long)envp);
}

static inline long wait4(long pid, int *status, int options, struct rusage *usage)
{
    return syscall6(SYS_wait4, pid, (long)status, options, (long)usage, 0, 0);
}

static inline long kill(long pid, int signal)
{
    return syscall3(SYS_kill, pid, signal, 0);
}

static inline long getrusage(int who, struct rusage *usage)
{
    return syscall3(SYS_getrusage, who, (long)usage, 0);
}

/* The raw syscall: a negative errno on failure, not MAP_FAILED. */
static inline long mmap(void *addr, unsigned long length, int prot, int flags, int fd, long offset)
{
    return syscall6(SYS_mmap, (long)addr, (long)length, prot, flags, fd, offset);
}

static inline long munmap(void *addr, unsigned long length)
{
    return syscall3(SYS_munmap, (long)addr, (long)length, 0);
}

static inline long mprotect(void *addr, unsigned long length, int prot)
{
    return syscall3(SYS_mprotect, (long)addr, (long)length, prot);
}

static inline long madvise(void *addr, unsigned long length, int advice)
{
    return syscall3(SYS_madvise, (long)addr, (long)length, advice);
}

/* The raw syscall: returns the new break (the old one when the request fails). */
static inline unsigned long brk(unsigned long address)
{
    return (unsigned long)syscall3(SYS_brk, (long)address, 0, 0);
}

static inline long pipe(int fds[2])
{
    return syscall3(SYS_pipe, (long)fds, 0, 0);
}

static inline long pipe2(int fds[2], int flags)
{
    return syscall3(SYS_pipe2, (long)fds, flags, 0);
}

static inline long open(const char *path, int flags, int mode)
{
    return syscall3(SYS_open, (long)path, flags, mode);
}

static inline long ioctl(int fd, unsigned long request, long arg)
{
    return syscall3(SYS_ioctl, fd, (long)request, arg);
}

static inline long sched_yield(void)
{
    return syscall3(SYS_sched_yield, 0, 0, 0);
}

struct iovec {
    void *iov_base;
    unsigned long iov_len;
};

#define SPLICE_F_NONBLOCK 2

static inline long vmsplice(int fd, const struct iovec *iov, unsigned long nr_segs, unsigned int flags)
{
    return syscall6(SYS_vmsplice, fd, (long)iov, (long)nr_segs, flags, 0, 0);
}

static inline long writev(int fd, const struct iovec *iov, unsigned long count)
{
    return syscall3(SYS_writev, fd, (long)iov, (long)count);
}

static inline long dup2(int old_fd, int new_fd)
{
    return syscall3(SYS_dup2, old_fd, new_fd, 0);
}

static inline unsigned long string_length(const char *s)
{
    unsigned long n = 0;
    while (s[n])
        n++;
    return n;
}

#endif
