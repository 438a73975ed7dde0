/*
 * sharers N SHARED PRIVATE: a page mapped by many processes, paged out.
 *
 * The parent writes SHARED pages of a shared anonymous mapping, then forks N children, each of which reads
 * every one of them (so each page is mapped N + 1 times) and waits.  The parent then writes PRIVATE pages
 * of its own, more than RAM holds, so that the pageout daemon must take pages, the shared ones among them,
 * and unmap each from every process that maps it.  Then the children check the shared pages, the parent
 * its own, and it prints "ok" (exit status 1 if any page came back wrong).
 *
 *   vmgames run --ram 4M --swap 64M --stats build/sharers 16 64 1500
 *   vmgames run --ram 4M --swap 64M --stats --rmap scan build/sharers 16 64 1500
 *   vmgames experiment rmap
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096

static int check(volatile uint64_t *area, long pages, uint64_t tag)
{
    for (long i = 0; i < pages; i++)
        if (area[i * PAGE / sizeof(uint64_t)] != (tag << 32 | (uint64_t)i))
            return 0;
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: sharers N SHARED PRIVATE\n");
        return 2;
    }
    long children = atol(argv[1]), shared_pages = atol(argv[2]), private_pages = atol(argv[3]);
    if (children < 0 || children > 256 || shared_pages < 1 || private_pages < 0) {
        fprintf(stderr, "sharers: N 0 to 256, SHARED >= 1, PRIVATE >= 0\n");
        return 2;
    }
    uint64_t *shared = mmap(NULL, shared_pages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int ready[2], go[2];
    if (shared == MAP_FAILED || pipe(ready) || pipe(go)) {
        perror("sharers");
        return 2;
    }
    for (long i = 0; i < shared_pages; i++)
        shared[i * PAGE / sizeof(uint64_t)] = 1ULL << 32 | (uint64_t)i;
    for (long n = 0; n < children; n++) {
        pid_t child = fork();
        if (child < 0) {
            perror("sharers: fork");
            return 2;
        }
        if (child == 0) {
            close(ready[0]);
            close(go[1]);
            int good = check(shared, shared_pages, 1);
            char byte = 1;
            if (write(ready[1], &byte, 1) != 1 || read(go[0], &byte, 1) != 0)
                _exit(2);
            _exit(good && check(shared, shared_pages, 1) ? 0 : 1);
        }
    }
    close(ready[1]);
    close(go[0]);
    char byte;
    for (long n = 0; n < children; n++)
        if (read(ready[0], &byte, 1) != 1)
            return 2;
    uint64_t *mine = mmap(NULL, (private_pages ? private_pages : 1) * PAGE, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (long i = 0; i < private_pages; i++)
        mine[i * PAGE / sizeof(uint64_t)] = 2ULL << 32 | (uint64_t)i;
    close(go[1]);
    int good = check(mine, private_pages, 2) && check(shared, shared_pages, 1), status;
    for (long n = 0; n < children; n++)
        if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            good = 0;
    printf("sharers: %ld children, %ld shared pages, %ld private: %s\n", children, shared_pages, private_pages,
           good ? "ok" : "WRONG");
    return good ? 0 : 1;
}
