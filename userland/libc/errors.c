/* The errors of the thread, futex, signal and memory calls, as raw syscalls: each line is what Linux says. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BAD ((void *)0x10)

static void show(const char *what, long result) {
    printf("%-52s %ld\n", what, result < 0 ? result : (result > 0 ? 1 : 0));
}

static long raw(long n, long a, long b, long c, long d, long e, long f) {
    long r;
    register long r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return r;
}

int main(void) {
    int word = 5;
    char action[32] = {0};
    unsigned long mask = 0;
    show("clone(CLONE_THREAD without CLONE_SIGHAND)", raw(SYS_clone, 0x10000 | 0x100, 0, 0, 0, 0, 0));
    show("clone(CLONE_SIGHAND without CLONE_VM)", raw(SYS_clone, 0x800, 0, 0, 0, 0, 0));
    show("clone3(size 8)", raw(SYS_clone3, (long)action, 8, 0, 0, 0, 0));
    show("clone3(bad pointer)", raw(SYS_clone3, (long)BAD, 88, 0, 0, 0, 0));
    show("futex(bad op 99)", raw(SYS_futex, (long)&word, 99, 0, 0, 0, 0));
    show("futex(WAIT, value differs)", raw(SYS_futex, (long)&word, 0, 4, 0, 0, 0));
    show("futex(WAIT, misaligned)", raw(SYS_futex, (long)&word + 1, 0, 5, 0, 0, 0));
    show("futex(WAIT, bad pointer)", raw(SYS_futex, (long)BAD, 0, 5, 0, 0, 0));
    show("futex(WAKE, nobody)", raw(SYS_futex, (long)&word, 1, 1, 0, 0, 0));
    show("futex(WAIT_BITSET, bitset 0)", raw(SYS_futex, (long)&word, 9, 5, 0, 0, 0));
    show("futex(WAKE | CLOCK_REALTIME)", raw(SYS_futex, (long)&word, 1 | 256, 1, 0, 0, 0));
    show("tgkill(0, 1, 0)", raw(SYS_tgkill, 0, 1, 0, 0, 0, 0));
    show("tgkill(getpid, 99999, 0)", raw(SYS_tgkill, getpid(), 99999, 0, 0, 0, 0));
    show("tgkill(getpid, gettid, 65)", raw(SYS_tgkill, getpid(), gettid(), 65, 0, 0, 0));
    show("tgkill(getpid, gettid, 0)", raw(SYS_tgkill, getpid(), gettid(), 0, 0, 0, 0));
    show("tkill(-1, 0)", raw(SYS_tkill, -1, 0, 0, 0, 0, 0));
    show("rt_sigaction(SIGKILL, act)", raw(SYS_rt_sigaction, SIGKILL, (long)action, 0, 8, 0, 0));
    show("rt_sigaction(SIGKILL, NULL, old)", raw(SYS_rt_sigaction, SIGKILL, 0, (long)action, 8, 0, 0));
    show("rt_sigaction(65, ...)", raw(SYS_rt_sigaction, 65, 0, (long)action, 8, 0, 0));
    show("rt_sigaction(SIGUSR1, bad act)", raw(SYS_rt_sigaction, SIGUSR1, (long)BAD, 0, 8, 0, 0));
    show("rt_sigaction(SIGUSR1, sigsetsize 4)", raw(SYS_rt_sigaction, SIGUSR1, 0, (long)action, 4, 0, 0));
    show("rt_sigprocmask(how 7)", raw(SYS_rt_sigprocmask, 7, (long)&mask, 0, 8, 0, 0));
    show("rt_sigprocmask(how 7, NULL set)", raw(SYS_rt_sigprocmask, 7, 0, (long)&mask, 8, 0, 0));
    show("rt_sigprocmask(bad set)", raw(SYS_rt_sigprocmask, 0, (long)BAD, 0, 8, 0, 0));
    show("rt_sigpending(size 16)", raw(SYS_rt_sigpending, (long)&mask, 16, 0, 0, 0, 0));
    show("rt_sigsuspend(size 4)", raw(SYS_rt_sigsuspend, (long)&mask, 4, 0, 0, 0, 0));
    long stack[3] = {0, 0, 1024};
    show("sigaltstack(size 1024)", raw(SYS_sigaltstack, (long)stack, 0, 0, 0, 0, 0));
    stack[1] = 7;
    show("sigaltstack(flags 7)", raw(SYS_sigaltstack, (long)stack, 0, 0, 0, 0, 0));
    show("sigaltstack(bad pointer)", raw(SYS_sigaltstack, (long)BAD, 0, 0, 0, 0, 0));
    show("set_robust_list(len 8)", raw(SYS_set_robust_list, 0, 8, 0, 0, 0, 0));
    struct timespec bad = {0, 2000000000};
    show("nanosleep(tv_nsec 2e9)", raw(SYS_nanosleep, (long)&bad, 0, 0, 0, 0, 0));
    show("nanosleep(bad pointer)", raw(SYS_nanosleep, (long)BAD, 0, 0, 0, 0, 0));
    show("clock_nanosleep(clock 99)", raw(SYS_clock_nanosleep, 99, 0, (long)&bad, 0, 0, 0));
    show("clock_nanosleep(THREAD_CPUTIME)", raw(SYS_clock_nanosleep, CLOCK_THREAD_CPUTIME_ID, 0, (long)&bad, 0, 0, 0));
    show("madvise(misaligned)", raw(SYS_madvise, 1, 4096, MADV_DONTNEED, 0, 0, 0));
    show("madvise(advice 999)", raw(SYS_madvise, 0x100000, 4096, 999, 0, 0, 0));
    show("madvise(unmapped)", raw(SYS_madvise, 0x100000, 4096, MADV_DONTNEED, 0, 0, 0));
    show("msync(MS_SYNC|MS_ASYNC)", raw(SYS_msync, 0x100000, 4096, MS_SYNC | MS_ASYNC, 0, 0, 0));
    show("msync(unmapped)", raw(SYS_msync, 0x100000, 4096, MS_SYNC, 0, 0, 0));
    show("mremap(misaligned)", raw(SYS_mremap, 1, 4096, 8192, 0, 0, 0));
    show("mremap(unmapped)", raw(SYS_mremap, 0x100000, 4096, 8192, 0, 0, 0));
    show("mremap(FIXED without MAYMOVE)", raw(SYS_mremap, 0x100000, 4096, 8192, 2, 0x200000, 0));
    return 0;
}
