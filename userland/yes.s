# yes [STRING...]: write its arguments joined by spaces ("y" if there are
# none) and a newline to stdout, over and over, as coreutils' yes does, until
# a write fails; then exit with that write's errno (28 ENOSPC, 9 EBADF).  A
# reader that has gone kills it with SIGPIPE first, as on Linux: try
# vmgames run build/yes | head -2, or vmgames run build/yes --stats | head -2
# (--stats is yes's argument there).
.intel_syntax noprefix

.equ SYS_write, 1
.equ SYS_exit, 60
.equ STDOUT, 1
.equ LINE_MAX, 256 * 1024 + 1       # the kernel's ARG_MAX bytes of arguments, and the newline

.bss
line: .space LINE_MAX

.text
.globl _start
_start:
    mov rcx, [rsp]                  # argc
    lea rbx, [rsp + 16]             # argv + 1
    lea rdi, [rip + line]           # where the line is built
    cmp rcx, 1
    ja next_argument
    mov byte ptr [rdi], 'y'
    inc rdi
    jmp end_line
next_argument:
    dec rcx
    mov rsi, [rbx]
copy:
    mov al, [rsi]
    test al, al
    jz argument_copied
    mov [rdi], al
    inc rsi
    inc rdi
    jmp copy
argument_copied:
    add rbx, 8
    cmp rcx, 1
    je end_line
    mov byte ptr [rdi], ' '
    inc rdi
    jmp next_argument
end_line:
    mov byte ptr [rdi], 10
    inc rdi
    lea rsi, [rip + line]
    sub rdi, rsi
    mov r12, rdi                    # the line's length

write_line:
    mov eax, SYS_write
    mov edi, STDOUT
    lea rsi, [rip + line]
    mov rdx, r12
    syscall
    test rax, rax
    jns write_line

    neg rax
    mov rdi, rax
    mov eax, SYS_exit
    syscall
