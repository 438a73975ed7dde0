# Forward references: constants and labels used before their definition get
# the full-width encodings GNU as must choose when it does not know them yet.
.intel_syntax noprefix
.equ SMALL2, 16

.text
.globl _start
_start:
    mov eax, offset EXIT_CODE         # forward constant: imm32 (no reg-size shortcut)
    add eax, offset SMALL             # imm32, not imm8, because SMALL is not known yet
    lea rbx, [rip + buffer]
    mov rcx, [rbx + SMALL]            # disp32, not disp8
    add ecx, SMALL2                   # SMALL2 is known by now: imm8
    mov rdx, [rbx + SMALL2]           # known: disp8
    mov [rbx + BIG], rcx
    mov rsi, offset message_end - message
    cmp rsi, 6
    jne bad
    sub eax, offset EXIT_CODE + SMALL
    mov edi, eax
    add edi, 3
    mov eax, 60
    syscall
bad:
    mov edi, 99
    mov eax, 60
    syscall

.equ EXIT_CODE, 0x100
SMALL = 8
BIG = 0x200

.data
message: .ascii "hello!"
message_end:
buffer: .space 1024, 0
