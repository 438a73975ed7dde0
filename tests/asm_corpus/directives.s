# Every data directive and expression form; the program writes its own
# .rodata and .data to stdout so a run shows the bytes too.
.intel_syntax noprefix
.equ SYS_write, 1
.set SYS_exit, 60
STDOUT = 1

.section .rodata
ro_start:
    .byte 1, 2, 0xff, -1, 'A', 'B'+1, '\n, 0b101, 017, 0x7f & ~0x0f
    .word 0x1234, -2
    .short 65535
    .long 0xdeadbeef, 1 << 20, (3 + 4) * 5, 100 / 7, 100 % 7, -100 / 7
    .int 0x10 | 0x01, 0x3c ^ 0xff, 256 >> 4
    .quad 0x0123456789abcdef, -1
    .ascii "plain", " two\tparts"
    .asciz "nul-terminated"
    .string "also \"quoted\" \\ \101\102\x43 \0end"
    .align 8
    .balign 16, 0xaa
    .p2align 5, 0x55
    .space 3
    .skip 2, 0x7e
    .zero 4
    .fill 3, 2, 0x0102
ro_end:
.equ ro_size, ro_end - ro_start

.data
data_start:
counter: .quad 41
pointers: .quad counter, ro_start, ro_end, data_end, bss_buffer + 8
sizes: .long ro_size, data_end - data_start, . - data_start
    .byte ro_size & 0xff
.equ twice, 2 * (pointers - counter)
    .word twice
    .p2align 3
    .quad SYS_write + STDOUT * 2, here - data_start
here: .ascii "end of data"
data_end:

.bss
bss_buffer: .space 64
    .align 16
more_bss: .zero 100

.text
.globl _start
_start:
    mov eax, SYS_write
    mov edi, STDOUT
    lea rsi, [rip + ro_start]
    mov edx, ro_size
    syscall
    mov eax, SYS_write
    mov edi, STDOUT
    mov rsi, offset data_start
    mov rdx, offset data_end - data_start
    syscall
    mov rdi, [counter]
    inc rdi
    mov [rip + counter], rdi
    mov eax, SYS_exit
    mov rdi, [rip + counter]
    syscall
