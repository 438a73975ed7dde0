/* How Linux reads syscall numbers and arguments, and what it answers to
 * ranges and modes no one should ask for.
 *
 * The number is the low 32 bits of rax, taken as an int.  An argument
 * declared int or unsigned int (an fd, a dirfd, flags, a pid, a signal) is
 * the low 32 bits of its register: glibc leaves junk above them (it passes
 * AT_FDCWD as 0x00000000ffffff9c).  munmap and mprotect check their ranges
 * against the top of user space in a fixed order; a read-only file can
 * never be made writable through a shared mapping; execve needs a regular
 * file with an execute bit; a directory opens read-only; kill and wait4
 * name process groups; an empty argv reaches the new image as [""].
 * Every line is a call and what it returned;
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
                                      [3] = "ESRCH", [12] = "ENOMEM", [13] = "EACCES", [14] = "EFAULT",
                                      [20] = "ENOTDIR", [21] = "EISDIR", [22] = "EINVAL", [36] = "ENAMETOOLONG",
                                      [38] = "ENOSYS", [95] = "EOPNOTSUPP"};
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

static void directories(void)
{
    long fd = open(".", O_RDONLY, 0);
    show("open(.) is a descriptor", fd >= 3);
    char byte;
    show("  read", read((int)fd, &byte, 1));
    show("  mmap", mmap(0, PAGE_SIZE, PROT_READ, MAP_PRIVATE, (int)fd, 0));
    show("  close", close((int)fd));
    fd = open("userland", O_RDONLY | 0200000, 0);
    show("open(userland, O_DIRECTORY) is a descriptor", fd >= 3);
    show("  close", close((int)fd));
    show("open(userland, O_WRONLY)", open("userland", O_WRONLY, 0));
    show("open(README.md, O_DIRECTORY)", open("README.md", O_RDONLY | 0200000, 0));
    show("open(README.md/)", open("README.md/", O_RDONLY, 0));
    show("open(README.md/.)", open("README.md/.", O_RDONLY, 0));
    char name[300];
    for (int i = 0; i < 299; i++)
        name[i] = 'a';
    name[299] = 0;
    show("open(a 299-byte name)", open(name, O_RDONLY, 0));
}

static void groups_and_limits(void)
{
    show("kill(0, 0)", kill(0, 0));
    show("kill(INT_MIN, 0)", kill(-2147483648L, 0));
    show("kill(-2, 0)", kill(-2, 0));
    show("wait4(INT_MIN)", wait4(-2147483648L, 0, 0, 0));
    long child = fork();
    if (child == 0)
        exit(7);
    show("kill(-1, 0) with a child", kill(-1, 0));
    show("wait4(child, a bad status pointer)", wait4(child, (int *)0x10, 0, 0));
    show("wait4(child) again: it was reaped", wait4(child, 0, 0, 0));
    char *area = (char *)mmap(0, 2 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    area[0] = 1;
    show("mprotect(length wraps to 0)", mprotect(area, -4095UL, PROT_NONE));
    show("mprotect(end wraps past 2^64)", mprotect(area, 0xffffffff00000000UL, PROT_NONE));
    area[0] = 5;
    show("the area is still writable", area[0] == 5);
    show("arch_prctl(ARCH_SET_FS, TASK_SIZE_MAX - 0x800)", syscall3(158, 0x1002, USER_TOP - 0x800, 0));
    show("arch_prctl(ARCH_SET_FS, TASK_SIZE_MAX + 0x800)", syscall3(158, 0x1002, USER_TOP + 0x800, 0));
    syscall3(158, 0x1002, 0, 0);
    long when[2];
    show("clock_gettime(CLOCK_TAI)", syscall3(228, 11, (long)when, 0));
    show("clock_gettime(10)", syscall3(228, 10, (long)when, 0));
    show("mmap(MAP_SHARED_VALIDATE | MAP_ANONYMOUS)", mmap(0, PAGE_SIZE, PROT_READ, 0x03 | MAP_ANONYMOUS, -1, 0));
    long fd = open("README.md", O_RDONLY, 0);
    show("mmap(MAP_SHARED_VALIDATE) of a file", mmap(0, PAGE_SIZE, PROT_READ, 0x03, (int)fd, 0) > 0);
    show("mmap(MAP_SHARED_VALIDATE | MAP_FIXED_NOREPLACE)", mmap(0, PAGE_SIZE, PROT_READ, 0x03 | 0x100000, (int)fd, 0));
    show("close", close((int)fd));
}

/* Exec ourselves with no argv at all, then with 5000 arguments: each image says what it got. */
static void argument_lists(char *self)
{
    static char *many[5002];
    long child = fork();
    if (child == 0) {
        execve(self, 0, 0);
        exit(100);
    }
    int status;
    wait4(child, &status, 0, 0);
    child = fork();
    if (child == 0) {
        many[0] = self;
        for (int i = 1; i <= 5000; i++)
            many[i] = "x";
        execve(self, many, 0);
        exit(101);
    }
    wait4(child, &status, 0, 0);
    show("the image with 5000 arguments exited", WEXITSTATUS(status));
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
    if (argc == 1 && argv[0][0] == 0) {
        show("exec'd with no argv: argc", argc);
        return 0;
    }
    if (argc == 5001)
        return 42;
    numbers();
    int_arguments();
    unmapping();
    protecting();
    file_mappings();
    directories();
    groups_and_limits();
    argument_lists(argv[0]);
    executing();
    return 0;
}
