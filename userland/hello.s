# hello: write "Hello, world!\n" to stdout and exit 0.
.intel_syntax noprefix

.equ SYS_write, 1
.equ SYS_exit, 60
.equ STDOUT, 1

.section .rodata
message: .ascii "Hello, world!\n"
.equ message_length, . - message

.text
.globl _start
_start:
    mov eax, SYS_write
    mov edi, STDOUT
    lea rsi, [rip + message]
    mov edx, message_length
    syscall

    mov eax, SYS_exit
    xor edi, edi
    syscall
