/* A brk heap across fork: the child inherits the parent's break and heap
 * contents, and then moves its own break and writes its own heap without the
 * parent noticing.  Addresses are printed relative to the first break, which
 * Linux randomizes.  Exit status: the number of checks that failed. */
#include "runtime.h"

#define HEAP_PAGES 3

static int failures;

static void check(const char *what, int ok)
{
    put(what);
    put(ok ? ": yes" : ": NO");
    end_line();
    failures += !ok;
}

static int heap_holds(unsigned long start, unsigned long length, char base)
{
    for (unsigned long i = 0; i < length; i += PAGE_SIZE / 2)
        if (((volatile char *)start)[i] != (char)(base + i / PAGE_SIZE))
            return 0;
    return 1;
}

static void fill_heap(unsigned long start, unsigned long length, char base)
{
    for (unsigned long i = 0; i < length; i += PAGE_SIZE / 2)
        ((volatile char *)start)[i] = (char)(base + i / PAGE_SIZE);
}

static int heap_is_zero(unsigned long start, unsigned long length)
{
    for (unsigned long i = 0; i < length; i += 64)
        if (((volatile char *)start)[i])
            return 0;
    return 1;
}

int main(int argc, char **argv, char **envp)
{
    unsigned long start = brk(0);
    unsigned long length = HEAP_PAGES * PAGE_SIZE + 100;
    check("brk below the heap's start fails, returning the break", brk(start - PAGE_SIZE) == start);
    check("the heap grows to 3 pages + 100 bytes", brk(start + length) == start + length);
    check("the grown heap is zero", heap_is_zero(start, length));
    fill_heap(start, length, 'a');

    long child = fork();
    if (child < 0)
        return 100;
    if (child == 0) {
        failures = 0;
        check("child: the break is the parent's", brk(0) == start + length);
        check("child: the heap holds the parent's data", heap_holds(start, length, 'a'));
        fill_heap(start, length, 'A');
        check("child: grows its heap by 2 pages", brk(start + length + 2 * PAGE_SIZE) == start + length + 2 * PAGE_SIZE);
        fill_heap(start + length, 2 * PAGE_SIZE, 'x');
        check("child: shrinks its heap to 1 page", brk(start + PAGE_SIZE) == start + PAGE_SIZE);
        check("child: what is left holds its own data", heap_holds(start, PAGE_SIZE, 'A'));
        exit(failures);
    }
    int status = 0;
    if (wait4(child, &status, 0, 0) != child)
        return 101;
    put("child ");
    put_wait_status(status);
    end_line();
    check("parent: the break did not move", brk(0) == start + length);
    check("parent: the heap holds its own data", heap_holds(start, length, 'a'));
    unsigned long end = start + length + 2 * PAGE_SIZE;
    check("parent: grows its heap by 2 pages", brk(end) == end);
    check("parent: the new part is zero, not the child's", heap_is_zero(start + length, 2 * PAGE_SIZE));
    check("parent: shrinks its heap back to nothing", brk(start) == start);
    check("parent: grows it again", brk(start + length) == start + length);
    check("parent: the regrown heap is zero", heap_is_zero(start, length));
    return failures + WEXITSTATUS(status);
}
