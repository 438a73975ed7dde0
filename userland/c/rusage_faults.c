/* getrusage's minor-fault count across fork, for 1024 pages of an anonymous mmap.
 *
 * Each line is the ru_minflt delta (RUSAGE_SELF) around one loop that writes
 * one byte to every page:
 *   touch                           the first touch: 1024 zero-fill faults
 *   child writes after fork         the child's own count: every page is copy-on-write
 *   parent writes after child exit  the pages are still write-protected from fork
 *   parent writes again             the pages are now writable: no faults
 * and, with a second child, where Linux and vmgames differ (see
 * docs/linux-comparison.md):
 *   second child reads after fork   Linux copied the parent's PTEs at fork: no faults;
 *                                   vmgames' child starts with empty page tables
 *   second child writes after reading
 * Exit status 0 when every page held the value its process wrote last. */
#include "runtime.h"

#define PAGES 1024

/* In bss, aligned so that it sits in one page.  It is written before each
 * call, so the kernel's copyout never faults inside a measured window. */
static struct rusage usage __attribute__((aligned(256)));

static long minor_faults(void)
{
    usage.ru_minflt = -1;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_minflt;
}

static void write_every_page(volatile char *area, char value)
{
    for (long page = 0; page < PAGES; page++)
        area[page * PAGE_SIZE] = value;
}

static int every_page_holds(volatile char *area, char value)
{
    for (long page = 0; page < PAGES; page++)
        if (area[page * PAGE_SIZE] != value)
            return 0;
    return 1;
}

static void report(const char *what, long faults)
{
    put(what);
    put(": ");
    put_number(faults);
    end_line();
}

static long measure_reads(volatile char *area, char expected)
{
    long before = minor_faults();
    int all_expected = every_page_holds(area, expected);
    long faults = minor_faults() - before;
    return all_expected ? faults : -1;
}

static long measure_writes(volatile char *area, char value)
{
    long before = minor_faults();
    write_every_page(area, value);
    return minor_faults() - before;
}

int main(int argc, char **argv, char **envp)
{
    long length = PAGES * PAGE_SIZE;
    long address = mmap(0, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (address < 0)
        return 100;
    volatile char *area = (volatile char *)address;
    /* Linux may back 2 MiB of this with one huge page (one fault, not 512);
     * vmgames has no huge pages and answers ENOSYS, which is fine. */
    madvise((void *)address, length, MADV_NOHUGEPAGE);

    report("touch", measure_writes(area, 1));

    long child = fork();
    if (child < 0)
        return 101;
    if (child == 0) {
        long faults = measure_writes(area, 2);
        report("child writes after fork", faults);
        exit(every_page_holds(area, 2) ? 0 : 1);
    }
    int status = 0;
    if (wait4(child, &status, 0, 0) != child)
        return 102;
    int parent_kept_its_pages = every_page_holds(area, 1);

    report("parent writes after child exit", measure_writes(area, 3));
    report("parent writes again", measure_writes(area, 4));

    if (!parent_kept_its_pages || !every_page_holds(area, 4) || status != 0)
        return 1;

    child = fork();
    if (child < 0)
        return 103;
    if (child == 0) {
        report("second child reads after fork", measure_reads(area, 4));
        report("second child writes after reading", measure_writes(area, 5));
        exit(every_page_holds(area, 5) ? 0 : 1);
    }
    if (wait4(child, &status, 0, 0) != child || status != 0)
        return 104;
    report("parent writes after second child exit", measure_writes(area, 6));
    return every_page_holds(area, 6) ? 0 : 1;
}
