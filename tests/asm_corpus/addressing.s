# Absolute, rip-relative, based and indexed addressing of labels in every
# section, OFFSET, bare symbols as memory operands, and a jump table.
.intel_syntax noprefix
.equ SYS_write, 1
.equ SYS_exit, 60
.equ ENTRY_SIZE, 8

.data
value: .quad 0x1122334455667788
second: .quad 7
table: .quad 10, 20, 30, 40
words: .word 1, 2, 3, 4
jump_table: .quad case0, case1, case2

.section .rodata
text: .ascii "ABCDEFGH"
newline: .byte 10

.bss
scratch: .space 64
counter: .space 8

.text
.globl _start
_start:
    mov rcx, [value]                  # absolute: disp32 through SIB, no base
    mov rax, [value]                  # rax too (not movabs)
    mov rdx, [value + 8]
    mov rbx, second                   # bare label: a memory operand, as in GNU as
    add rax, rbx
    mov rsi, offset table
    mov rdi, OFFSET table + 16
    mov esi, offset table
    lea r8, [table]
    lea r9, [rip + table]
    lea r10, table[rip]
    mov r11, [rip + table + 3 * ENTRY_SIZE]
    xor ebx, ebx
    mov rax, [table + rbx*8]
    mov rax, [rbx*8 + table + 8]
    mov rax, [rbx + table]
    mov rax, table[rbx*8]
    mov eax, dword ptr [table + 4]
    movzx eax, word ptr [words + 2]
    movzx ecx, byte ptr [rip + text + 2]
    mov qword ptr [scratch], 5
    mov qword ptr [rip + scratch + 8], -1
    mov dword ptr [scratch + 16], 0x12345678
    mov byte ptr [scratch + rbx + 24], 'x'
    add qword ptr [rip + counter], 3
    inc qword ptr [counter]
    push offset text
    pop rax
    push qword ptr [second]
    pop rax
    mov rax, offset value
    mov rbx, [rax + 8]
    lea rsp, [rsp - 16]
    lea rsp, [rsp + 16]
    mov rdx, [rsp]
    cmp qword ptr [second], 7
    jne fail
    movabs rax, offset text
    movabs rax, 0x123456789

    # scratch[0..8] = "ABCDEFGH" copied through registers, then print it
    mov rax, qword ptr [text]
    mov [rip + scratch + 32], rax
    mov al, byte ptr [newline]
    mov byte ptr [scratch + 40], al
    mov eax, SYS_write
    mov edi, 1
    lea rsi, [scratch + 32]
    mov edx, 9
    syscall

    # jump table, indexed by counter (3 + 1 = 4) - 2 = 2
    mov rax, [counter]
    sub rax, 2
    jmp [jump_table + rax * ENTRY_SIZE]
case0:
    mov edi, 10
    jmp exit
case1:
    mov edi, 11
    jmp exit
case2:
    mov rdx, offset jump_table
    call qword ptr [rdx + 1*8]        # case1 via a call through memory: exits 11
fail:
    mov edi, 1
exit:
    mov eax, SYS_exit
    syscall
