/* Touches text, rodata, data and bss, prints its arguments, and exits with a
 * status computed from all of them: the loader must get every segment right. */
#include "syscalls.h"

static char bss_pages[3 * 4096];
static int data_value = 5;
static const char greeting[] = "segments:";

void __attribute__((noreturn)) main_with_stack(long *stack)
{
    long argc = stack[0];
    char **argv = (char **)(stack + 1);
    write(1, greeting, sizeof greeting - 1);
    for (long i = 0; i < argc; i++) {
        write(1, " ", 1);
        write(1, argv[i], string_length(argv[i]));
    }
    write(1, "\n", 1);
    for (int i = 0; i < 3; i++)
        bss_pages[i * 4096] = (char)('a' + i);
    data_value += bss_pages[4096] + (int)argc;
    exit(data_value & 0xff);
}

__asm__(".globl _start\n_start:\n    mov rdi, rsp\n    and rsp, -16\n    call main_with_stack\n");
