/* Each bad access is made by a child of its own; the child dies of SIGSEGV,
 * and the parent, which made none of them, survives to print every result.
 *
 * Cases: a read of NULL, a write to the program's text, a write to a page
 * made read-only by mprotect, a call into a non-executable anonymous mmap,
 * and a read of a hole munmap left between two mapped pages; then, for
 * comparison, a child that exits normally and one killed with SIGKILL.
 * Exit status: the number of children that died of SIGSEGV. */
#include "runtime.h"

/* Kept in memory so that gcc cannot see the NULL (it would emit ud2, SIGILL). */
static volatile unsigned long null_address;

static void read_null(void)
{
    (void)*(volatile int *)null_address;
}

static void write_text(void)
{
    *(volatile char *)(unsigned long)&read_null = 0;
}

static void write_after_mprotect(void)
{
    long page = mmap(0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    *(volatile char *)page = 1;
    if (mprotect((void *)page, PAGE_SIZE, PROT_READ) != 0)
        exit(2);
    if (*(volatile char *)page != 1)   /* still readable */
        exit(3);
    *(volatile char *)page = 2;
}

static void call_non_executable(void)
{
    long page = mmap(0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    *(volatile unsigned char *)page = 0xc3;   /* ret */
    ((void (*)(void))page)();
}

/* The hole is made by unmapping the last two of three pages and putting a
 * fresh page back (MAP_FIXED) after the hole: a gap with a mapping either side. */
static void read_munmapped_hole(void)
{
    long area = mmap(0, 3 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    volatile char *pages = (volatile char *)area;
    pages[0] = pages[PAGE_SIZE] = pages[2 * PAGE_SIZE] = 1;
    if (munmap((void *)(area + PAGE_SIZE), 2 * PAGE_SIZE) != 0)
        exit(2);
    if (mmap((void *)(area + 2 * PAGE_SIZE), PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
             -1, 0) != area + 2 * PAGE_SIZE)
        exit(3);
    if (pages[0] != 1 || pages[2 * PAGE_SIZE] != 0)   /* the old neighbour stays; the new page is fresh */
        exit(4);
    (void)pages[PAGE_SIZE];
}

static void exit_normally(void)
{
    exit(3);
}

static void spin_until_killed(void)
{
    for (;;)
        __asm__ volatile("" ::: "memory");
}

struct bad_access {
    const char *name;
    void (*make)(void);
    int killed_by_parent;   /* the parent sends SIGKILL before waiting */
};

static const struct bad_access cases[] = {
    {"read of NULL", read_null, 0},
    {"write to text", write_text, 0},
    {"write to a page mprotect made read-only", write_after_mprotect, 0},
    {"call into a non-executable mmap", call_non_executable, 0},
    {"read of a munmapped hole", read_munmapped_hole, 0},
    {"exit(3), for comparison", exit_normally, 0},
    {"kill(SIGKILL) of a spinning child", spin_until_killed, 1},
};

int main(int argc, char **argv, char **envp)
{
    int segfaults = 0;
    for (unsigned long i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long child = fork();
        if (child < 0)
            return 100;
        if (child == 0) {
            cases[i].make();
            exit(0);   /* survived: a kernel bug */
        }
        if (cases[i].killed_by_parent && kill(child, SIGKILL) != 0)
            return 101;
        int status = 0;
        if (wait4(child, &status, 0, 0) != child)
            return 102;
        put(cases[i].name);
        put(": ");
        put_wait_status(status);
        end_line();
        segfaults += WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV;
    }
    put("parent survived");
    end_line();
    return segfaults;
}
