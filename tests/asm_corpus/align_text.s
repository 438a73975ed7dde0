# Alignment inside .text: GNU as's multi-byte NOP padding, explicit fill, max-skip.
.intel_syntax noprefix
.text
.globl _start
_start:
    jmp start_of_work
    .p2align 4
start_of_work:
    mov eax, 1
    .align 8
    add eax, 2
    .balign 32
    add eax, 3
    .p2align 6
    nop
    .p2align 6, 0xcc, 3               # more than 3 bytes needed: no padding
    add eax, 4
    .p2align 4,,15
    add eax, 5
    .balign 16, 0x90
    cmp eax, 15
    jne bad
    .align 64
    .byte 0xeb, 0x00                  # a hand-assembled "jmp . + 2"
    .p2align 7
    mov edi, eax
    sub edi, 15
    jmp exit
bad:
    mov edi, 1
    .p2align 5
exit:
    mov eax, 60
    syscall
