#define _GNU_SOURCE
/* Mappings as programs use them: madvise(MADV_DONTNEED) on private, forked and file memory, MAP_SHARED
   anonymous memory across fork, mremap growing and moving, msync's checks. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    char *private = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(private, 'a', 4 * PAGE);
    madvise(private + PAGE, 2 * PAGE, MADV_DONTNEED);
    printf("private after DONTNEED: %c %d %d %c\n", private[0], private[PAGE], private[2 * PAGE + 7],
           private[3 * PAGE]);

    memset(private, 'b', 4 * PAGE);
    int *shared = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t pid = fork();
    if (pid == 0) {
        madvise(private, 4 * PAGE, MADV_DONTNEED);     /* the child's view only: zeroes, the parent keeps 'b' */
        shared[0] = private[0] + 100;
        shared[1] = 42;
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    printf("after the child's DONTNEED: parent sees %c; the child saw %d; shared word %d\n", private[0],
           shared[0] - 100, shared[1]);

    int zero = open("/dev/zero", O_RDWR);
    int *zshared = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, zero, 0);
    char *zprivate = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, zero, 0);
    if (fork() == 0) {
        zshared[0] = 77;
        zprivate[0] = 1;
        _exit(0);
    }
    wait(NULL);
    printf("/dev/zero mappings: shared sees %d, private sees %d\n", zshared[0], zprivate[0]);

    int fd = open(argv[0], O_RDONLY);
    char *file = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    file[1] = 'X';
    printf("private file copy: %.3s;", file + 1);
    madvise(file, PAGE, MADV_DONTNEED);
    printf(" after DONTNEED: %.3s\n", file + 1);

    char *grown = mremap(private, 4 * PAGE, 64 * PAGE, MREMAP_MAYMOVE);
    printf("mremap to 64 pages: %s, kept %c, new pages %d\n", grown == MAP_FAILED ? "failed" : "ok", grown[5],
           grown[40 * PAGE]);
    char *shrunk = mremap(grown, 64 * PAGE, PAGE, 0);
    printf("mremap down to 1 page in place: %s\n", shrunk == grown ? "yes" : "no");
    errno = 0;
    void *stuck = mremap(shrunk, PAGE, 2 * PAGE, 0);
    printf("mremap without MAYMOVE where it cannot grow: %s\n",
           stuck == MAP_FAILED ? strerror(errno) : (stuck == shrunk ? "grew in place" : "moved"));

    int synced = msync(shrunk, PAGE, MS_SYNC);
    int result = msync(shrunk, PAGE, MS_SYNC | MS_ASYNC);
    printf("msync: %d; with MS_SYNC|MS_ASYNC: %d (%s)\n", synced, result, strerror(errno));
    result = madvise(shrunk, PAGE, 999);
    printf("madvise with advice 999: %d (%s)\n", result, strerror(errno));
    result = madvise((char *)0x100000, PAGE, MADV_DONTNEED);
    printf("madvise of unmapped memory: %d (%s)\n", result, strerror(errno));
    return 0;
}
