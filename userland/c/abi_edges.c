/* How Linux reads syscall numbers and arguments, and what it answers to
 * ranges and modes no one should ask for.
 *
 * The number is the low 32 bits of rax, taken as an int.  An argument
 * declared int or unsigned int (an fd, a dirfd, flags, a pid, a signal) is
 * the low 32 bits of its register: glibc leaves junk above them (it passes
 * AT_FDCWD as 0x00000000ffffff9c).  munmap and mprotect check their ranges
 * against the top of user space in a fixed order; a read-only file can
 * never be made writable through a shared mapping; execve needs a regular
 * file with an execute bit.  Every line is a call and what it returned;
 * vmgames must print what Linux prints.  Run from the repository's root
 * (the probe opens README.md and execs Makefile and userland). */
#include "runtime.h"

#define SYS_openat 257
#define AT_FDCWD (-100)
#define PROT_SEM 0x8
#define PROT_GROWSDOWN 0x01000000
#define PROT_GROWSUP 0x02000000
#define USER_TOP 0x7ffffffff000UL
#define HIGH (0xdeadbeefUL << 32)         /* junk in the upper half of a register */
#define AREA ((char *)0x20000000)

static void show(const char *what, long result)
{
    put(what);
    put(": ");
    if (result < 0 && result > -4096) {
        static const char *names[] = {[1] = "EPERM", [2] = "ENOENT", [9] = "EBADF", [10] = "ECHILD",
                                      [12] = "ENOMEM", [13] = "EACCES", [14] = "EFAULT", [20] = "ENOTDIR",
                                      [22] = "EINVAL", [38] = "ENOSYS"};
        long error = -result;
        put(error < (long)(sizeof names / sizeof names[0]) && names[error] ? names[error] : "errno ");
        if (!(error < (long)(sizeof names / sizeof names[0]) && names[error]))
            put_number(error);
    } else {
        put_number(result);
    }
    end_line();
}

static void numbers(void)
{
    long pid = getpid();
    show("rax = 2^32 + getpid is getpid", syscall3((1L << 32) | SYS_getpid, 0, 0, 0) == pid);
    show("rax = -1", syscall3(-1L, 0, 0, 0));
    show("rax = 2^31 + getpid", syscall3((1L << 31) | SYS_getpid, 0, 0, 0));
    show("rax = 500", syscall3(500, 0, 0, 0));
}

static void int_arguments(void)
{
    long fd = syscall6(SYS_openat, HIGH | (unsigned)AT_FDCWD, (long)"README.md", 0, 0, 0, 0);
    show("openat(junk | AT_FDCWD, relative) is a descriptor", fd >= 3);
    show("openat(AT_FDCWD as 0x00000000ffffff9c)",
         syscall6(SYS_openat, 0xffffff9cL, (long)"README.md", 0, 0, 0, 0) == fd + 1);
    show("openat(junk | 5, relative)", syscall6(SYS_openat, HIGH | 5, (long)"README.md", 0, 0, 0, 0));
    show("close(junk | fd)", syscall3(SYS_close, HIGH | (fd + 1), 0, 0));
    show("write(junk | 1)", syscall3(SYS_write, HIGH | 1, (long)"written through junk | 1\n", 25));
    show("dup2(junk | fd, junk | 9)", syscall3(SYS_dup2, HIGH | fd, HIGH | 9, 0));
    show("close(9)", close(9));
    show("close(junk | fd)", syscall3(SYS_close, HIGH | fd, 0, 0));
    show("close(fd) again", close((int)fd));
    show("kill(junk | pid, junk | 0)", syscall3(SYS_kill, HIGH | getpid(), HIGH, 0));
    show("kill(pid, 2^32 + 70)", syscall3(SYS_kill, getpid(), (1L << 32) + 70, 0));
    show("wait4(junk | -1, 0, junk | WNOHANG)", syscall6(SYS_wait4, HIGH | 0xffffffffL, 0, HIGH | 1, 0, 0, 0));
    show("wait4(-1, 0, bad options)", syscall6(SYS_wait4, -1, 0, 0x100, 0, 0, 0));
    show("pipe2(fds, junk | 0) then close both", 0);
    int fds[2];
    long made = syscall3(SYS_pipe2, (long)fds, HIGH, 0);
    show("  pipe2", made);
    if (made == 0) {
        show("  close", close(fds[0]));
        show("  close", close(fds[1]));
    }
    struct rusage usage;
    show("getrusage(junk | RUSAGE_SELF)", syscall3(SYS_getrusage, HIGH, (long)&usage, 0));
}

static void unmapping(void)
{
    show("mmap area", mmap(AREA, 4 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
                          == (long)AREA);
    show("munmap(kernel half)", munmap((void *)0xffff800000000000UL, PAGE_SIZE));
    show("munmap(top page + 1 page past)", munmap((void *)(USER_TOP - PAGE_SIZE), 2 * PAGE_SIZE));
    show("munmap(USER_TOP, 1)", munmap((void *)USER_TOP, 1));
    show("munmap(area, ~0)", munmap(AREA, ~0UL));
    show("munmap(area, 2^47)", munmap(AREA, 1UL << 47));
    show("munmap(area, 0)", munmap(AREA, 0));
    show("munmap(area + 1, 1)", munmap(AREA + 1, 1));
    show("munmap(0, 0)", munmap(0, 0));
    show("munmap(nothing mapped there)", munmap((void *)0x30000000, PAGE_SIZE));
    show("munmap(high, nothing there)", munmap((void *)0x7f0000000000UL, PAGE_SIZE));
    show("munmap(area, 1) takes the page", munmap(AREA, 1));
}

static void protecting(void)
{
    char *area = AREA + PAGE_SIZE;
    show("mprotect(PROT_SEM)", mprotect(area, PAGE_SIZE, PROT_READ | PROT_SEM));
    show("mprotect(0x10)", mprotect(area, PAGE_SIZE, 0x10));
    show("mprotect(1 << 40)", syscall3(SYS_mprotect, (long)area, PAGE_SIZE, PROT_READ | (1L << 40)));
    show("mprotect(GROWSDOWN | GROWSUP)", mprotect(area, PAGE_SIZE, PROT_READ | PROT_GROWSDOWN | PROT_GROWSUP));
    show("mprotect(GROWSUP)", mprotect(area, PAGE_SIZE, PROT_READ | PROT_GROWSUP));
    show("mprotect(GROWSDOWN, not a stack)", mprotect(area, PAGE_SIZE, PROT_READ | PROT_GROWSDOWN));
    show("mprotect(unaligned)", mprotect(area + 1, PAGE_SIZE, PROT_READ));
    show("mprotect(length 0, bad prot)", mprotect(area, 0, 0x10));
    show("mprotect(unaligned, length 0)", mprotect(area + 1, 0, PROT_READ));
    show("mprotect(wraps)", mprotect(area, -PAGE_SIZE, PROT_READ));
    show("mprotect(kernel half)", mprotect((void *)0xffff800000000000UL, PAGE_SIZE, PROT_READ));
    show("mprotect(past USER_TOP)", mprotect((void *)USER_TOP, PAGE_SIZE, PROT_READ));
    show("mprotect(a hole first)", mprotect(AREA, 2 * PAGE_SIZE, PROT_READ));
    /* The first page is protected before the hole is found: Linux does not undo it. */
    show("mprotect(area + 1 page, over a hole after 3)", mprotect(area, 4 * PAGE_SIZE, PROT_NONE));
    show("mmap(area + 1 page, PROT_READ, FIXED)", mmap(area, PAGE_SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == (long)area);
    show("mprotect(area + 1 page, 3 pages, read)", mprotect(area, 3 * PAGE_SIZE, PROT_READ));
}

static void file_mappings(void)
{
    long fd = open("README.md", O_RDONLY, 0);
    show("open(README.md, O_RDONLY) is a descriptor", fd >= 3);
    long shared = mmap(0, PAGE_SIZE, PROT_READ, MAP_SHARED, (int)fd, 0);
    show("mmap(MAP_SHARED, PROT_READ) of it", shared > 0);
    show("  mprotect(PROT_READ | PROT_WRITE)", mprotect((void *)shared, PAGE_SIZE, PROT_READ | PROT_WRITE));
    show("  mprotect(PROT_READ | PROT_EXEC)", mprotect((void *)shared, PAGE_SIZE, PROT_READ | PROT_EXEC));
    show("  mprotect(PROT_NONE)", mprotect((void *)shared, PAGE_SIZE, PROT_NONE));
    show("  mprotect(PROT_WRITE) after PROT_NONE", mprotect((void *)shared, PAGE_SIZE, PROT_WRITE));
    show("mmap(MAP_SHARED, PROT_WRITE) of it", mmap(0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0));
    long private = mmap(0, PAGE_SIZE, PROT_READ, MAP_PRIVATE, (int)fd, 0);
    show("mmap(MAP_PRIVATE, PROT_READ) of it", private > 0);
    show("  mprotect(PROT_READ | PROT_WRITE)", mprotect((void *)private, PAGE_SIZE, PROT_READ | PROT_WRITE));
    ((char *)private)[0] = '!';
    show("  the private copy changed", ((char *)private)[0] == '!');
    show("  the file did not (through the shared mapping)",
         mprotect((void *)shared, PAGE_SIZE, PROT_READ) == 0 && ((char *)shared)[0] == '#');
    show("mmap(MAP_SHARED, junk | fd)", syscall6(SYS_mmap, 0, PAGE_SIZE, PROT_READ, MAP_SHARED, HIGH | fd, 0) > 0);
    show("mmap(length 0)", mmap(0, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    show("mmap(no type)", mmap(0, PAGE_SIZE, PROT_READ, MAP_ANONYMOUS, -1, 0));
    show("mmap(unaligned offset)", mmap(0, PAGE_SIZE, PROT_READ, MAP_PRIVATE, (int)fd, 1));
    show("mmap(length ~0)", mmap(0, ~0UL, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    show("mmap(bad fd)", mmap(0, PAGE_SIZE, PROT_READ, MAP_PRIVATE, 77, 0));
    show("close", close((int)fd));
}

static void executing(void)
{
    char *argv[] = {"x", 0};
    show("execve(a directory)", execve("userland", argv, 0));
    show("execve(/)", execve("/", argv, 0));
    show("execve(not executable)", execve("README.md", argv, 0));
    show("execve(missing)", execve("no-such-program", argv, 0));
    show("execve(through a file)", execve("Makefile/x", argv, 0));
    show("execve(empty)", execve("", argv, 0));
}

int main(int argc, char **argv, char **envp)
{
    numbers();
    int_arguments();
    unmapping();
    protecting();
    file_mappings();
    executing();
    return 0;
}
