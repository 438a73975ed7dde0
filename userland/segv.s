# segv: write to a page, make it read-only with mprotect, say so, write again:
# the second write must die with SIGSEGV (a protection fault, not a missing page).
.intel_syntax noprefix

.equ SYS_write, 1
.equ SYS_mprotect, 10
.equ SYS_exit, 60
.equ STDOUT, 1
.equ PAGE_SIZE, 4096
.equ PROT_READ, 1

.section .rodata
about_to_write: .ascii "segv: page is now read-only, writing to it (expect SIGSEGV)\n"
.equ about_to_write_length, . - about_to_write
survived: .ascii "segv: the write did not fault!\n"
.equ survived_length, . - survived

.bss
.p2align 12
page: .space PAGE_SIZE

.text
.globl _start
_start:
    mov byte ptr [page], 'a'         # writable: this works (absolute address)
    mov byte ptr [rip + page + 1], 'b'

    lea rdi, [rip + page]
    mov esi, PAGE_SIZE
    mov edx, PROT_READ
    mov eax, SYS_mprotect
    syscall
    test rax, rax
    jnz give_up

    mov eax, SYS_write
    mov edi, STDOUT
    lea rsi, [rip + about_to_write]
    mov edx, about_to_write_length
    syscall

    cmp byte ptr [page], 'a'         # reading is still allowed
    jne give_up
    mov byte ptr [page], 'c'         # SIGSEGV here

    mov eax, SYS_write
    mov edi, STDOUT
    lea rsi, [rip + survived]
    mov edx, survived_length
    syscall
give_up:
    mov eax, SYS_exit
    mov edi, 1
    syscall
