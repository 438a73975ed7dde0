# cowfork: copy-on-write after fork, small enough to step through in gdb
# (docs/gdb-tutorial.md).
#
# The parent writes 1 to a page of bss (a zero-fill fault) and forks; the
# child writes 2 to the same page (a cow-copy fault: the page is shared
# with the parent, so the child gets its own copy), prints what it sees and
# exits; the parent waits for it, then prints what it sees: still 1.
.intel_syntax noprefix

.equ SYS_write, 1
.equ SYS_fork, 57
.equ SYS_exit, 60
.equ SYS_wait4, 61

.bss
.p2align 12
value: .space 4096

.section .rodata
child_says: .ascii "child: value = "
parent_says: .ascii "parent: value = "

.text
.globl _start
_start:
    mov qword ptr [rip + value], 1
    mov eax, SYS_fork
    syscall
    test rax, rax
    jz child

    mov rdi, rax                    # wait4(child, NULL, 0, NULL)
    xor esi, esi
    xor edx, edx
    xor r10d, r10d
    mov eax, SYS_wait4
    syscall
    lea rsi, [rip + parent_says]
    mov edx, 16
    jmp report

child:
    mov qword ptr [rip + value], 2
    lea rsi, [rip + child_says]
    mov edx, 15

report:                             # write the label, then the value as a digit and a newline
    mov eax, SYS_write
    mov edi, 1
    syscall
    mov rax, [rip + value]
    add al, '0'
    mov ah, 10
    push rax
    mov eax, SYS_write
    mov edi, 1
    mov rsi, rsp
    mov edx, 2
    syscall
    mov eax, SYS_exit
    xor edi, edi
    syscall
