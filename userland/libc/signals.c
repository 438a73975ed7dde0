/* Signals with handlers: a write barrier (SIGSEGV on a read-only page, mprotect in the handler, return),
   SA_SIGINFO's si_addr and si_code, masks, sigsuspend, an alternate stack, SIGCHLD, EINTR and SA_RESTART,
   and abort()'s SIGABRT. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char *page;
static volatile int barrier_faults, usr1_count, chld_count, on_alt;
static volatile long last_addr_offset = -1;
static volatile int last_code;
static char altstack[16384];

static void barrier(int sig, siginfo_t *info, void *context) {
    barrier_faults++;
    last_addr_offset = (char *)info->si_addr - page;
    last_code = info->si_code;
    mprotect(page, 4096, PROT_READ | PROT_WRITE);     /* the write goes through when the handler returns */
}

static void usr1(int sig) {
    char here;
    usr1_count++;
    on_alt = &here >= altstack && &here < altstack + sizeof altstack;
}

static void chld(int sig, siginfo_t *info, void *context) {
    chld_count++;
    last_code = info->si_code;
}

static void alarm_handler(int sig) {}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct sigaction sa = {0};
    sa.sa_sigaction = barrier;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    page[100] = 1;
    page[200] = 2;
    printf("write barrier: %d fault, at offset %ld, si_code %d (SEGV_ACCERR), value %d\n",
           barrier_faults, last_addr_offset, last_code, page[100] + page[200]);

    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    struct sigaction su = {0};
    su.sa_handler = usr1;
    su.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR1, &su, NULL);
    raise(SIGUSR1);
    printf("SIGUSR1 handled %d time(s), on the alternate stack: %s\n", usr1_count, on_alt ? "yes" : "no");

    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &old);
    kill(getpid(), SIGUSR1);
    sigset_t pending;
    sigpending(&pending);
    printf("blocked SIGUSR1: pending %d, handled %d\n", sigismember(&pending, SIGUSR1), usr1_count);
    sigsuspend(&old);
    printf("after sigsuspend: handled %d, errno EINTR: %s\n", usr1_count, errno == EINTR ? "yes" : "no");
    sigprocmask(SIG_SETMASK, &old, NULL);

    struct sigaction sc = {0};
    sc.sa_sigaction = chld;
    sc.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGCHLD, &sc, NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(4);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    printf("SIGCHLD: %d, si_code %d (CLD_EXITED), child status %d\n", chld_count, last_code, WEXITSTATUS(status));

    int fds[2];
    pipe(fds);
    struct sigaction sal = {0};
    sal.sa_handler = alarm_handler;
    sigaction(SIGALRM, &sal, NULL);
    pid = fork();
    if (pid == 0) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
        kill(getppid(), SIGALRM);
        _exit(0);
    }
    char c;
    ssize_t n = read(fds[0], &c, 1);
    printf("read interrupted: %zd, %s\n", n, n < 0 ? strerror(errno) : "?");
    waitpid(pid, &status, 0);

    signal(SIGPIPE, SIG_IGN);
    close(fds[0]);
    n = write(fds[1], "x", 1);
    printf("write to a pipe without reader, SIGPIPE ignored: %zd, %s\n", n, strerror(errno));

    pid = fork();
    if (pid == 0)
        abort();
    waitpid(pid, &status, 0);
    printf("abort: killed by %d\n", WTERMSIG(status));
    signal(SIGSEGV, SIG_DFL);
    *(volatile int *)0 = 1;
    return 0;
}
