/* What a libc would give the C examples: _start calling main, and line output.
 *
 * Output is built in a buffer and written with one write() per line, so
 * lines from different processes never interleave mid-line.  A line must
 * be ended before fork, or both processes would print its beginning. */
#ifndef VMGAMES_RUNTIME_H
#define VMGAMES_RUNTIME_H

#include "syscalls.h"

int main(int argc, char **argv, char **envp);

void __attribute__((noreturn, used)) start_with_stack(long *stack)
{
    int argc = (int)stack[0];
    char **argv = (char **)(stack + 1);
    exit(main(argc, argv, argv + argc + 1));
}

/* The kernel enters with argc at [rsp]; the ABI wants rsp 16-byte aligned at a call. */
__asm__(".globl _start\n_start:\n    mov rdi, rsp\n    and rsp, -16\n    call start_with_stack\n");

static char line_buffer[512];
static unsigned long line_used;

static inline void put(const char *s)
{
    while (*s && line_used < sizeof line_buffer - 1)
        line_buffer[line_used++] = *s++;
}

static inline void put_number(long n)
{
    char digits[24];
    int count = 0;
    unsigned long magnitude = n < 0 ? -(unsigned long)n : (unsigned long)n;
    do {
        digits[count++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (n < 0)
        put("-");
    while (count > 0 && line_used < sizeof line_buffer - 1)
        line_buffer[line_used++] = digits[--count];
}

static inline void end_line(void)
{
    line_buffer[line_used++] = '\n';
    write(1, line_buffer, line_used);
    line_used = 0;
}

/* "exited 3" or "killed by signal 11": what a shell would say of a wait status. */
static inline void put_wait_status(int status)
{
    if (WIFEXITED(status)) {
        put("exited ");
        put_number(WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        put("killed by signal ");
        put_number(WTERMSIG(status));
    } else {
        put("status ");
        put_number(status);
    }
}

static inline int strings_equal(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

#endif
