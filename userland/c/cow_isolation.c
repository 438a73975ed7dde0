/* Copy-on-write isolation: after fork, a write by either process is seen by
 * that process only, in every kind of private memory (data, bss, stack, heap,
 * anonymous mmap); a MAP_SHARED mapping is the exception, seen by both.
 *
 * The parent writes 3 right after fork, racing the child, who must still see
 * the 1 of before the fork; the child then writes 2 and exits; the parent,
 * after wait4, must still see its own 3 (and the child's 2 in shared memory).
 * The exit status counts the values that were not what isolation promises. */
#include "runtime.h"

enum { DATA, BSS, UNTOUCHED_BSS, STACK, HEAP, PRIVATE_MMAP, SHARED_MMAP, REGIONS };

static const char *const region_names[REGIONS] = {
    "data", "bss", "bss page untouched before fork", "stack", "heap (brk)", "private mmap", "shared mmap",
};

static long data_value = 1;
static long bss_value;
static char untouched_bss[2 * PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));

static void report(const char *who, const char *region, long seen, long expected)
{
    put(who);
    put(" sees ");
    put_number(seen);
    put(" in ");
    put(region);
    put(seen == expected ? "" : " (wrong)");
    end_line();
}

int main(int argc, char **argv, char **envp)
{
    volatile long stack_value = 1;
    unsigned long heap_start = brk(0);
    if (brk(heap_start + PAGE_SIZE) != heap_start + PAGE_SIZE)
        return 100;
    long private_area = mmap(0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    long shared_area = mmap(0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (private_area < 0 || shared_area < 0)
        return 101;

    volatile long *regions[REGIONS] = {
        &data_value, &bss_value, (long *)&untouched_bss[PAGE_SIZE], &stack_value,
        (long *)heap_start, (long *)private_area, (long *)shared_area,
    };
    for (int i = 0; i < REGIONS; i++)
        if (i != UNTOUCHED_BSS)
            *regions[i] = 1;

    int wrong = 0;
    long child = fork();
    if (child < 0)
        return 102;
    if (child == 0) {
        for (int i = 0; i < REGIONS; i++) {
            long expected = i == UNTOUCHED_BSS ? 0 : 1;
            if (i == SHARED_MMAP)
                continue;   /* the parent does not write it: nothing to race */
            report("child", region_names[i], *regions[i], expected);
            wrong += *regions[i] != expected;
        }
        for (int i = 0; i < REGIONS; i++)
            *regions[i] = 2;
        exit(wrong);
    }
    for (int i = 0; i < REGIONS; i++)
        if (i != SHARED_MMAP)
            *regions[i] = 3;
    int status = 0;
    if (wait4(child, &status, 0, 0) != child)
        return 103;
    put("child ");
    put_wait_status(status);
    end_line();
    for (int i = 0; i < REGIONS; i++) {
        long expected = i == SHARED_MMAP ? 2 : 3;
        report("parent", region_names[i], *regions[i], expected);
        wrong += *regions[i] != expected;
    }
    return wrong + WEXITSTATUS(status);
}
