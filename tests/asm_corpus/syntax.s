/* Lexical corners: comments of every kind, ';' separators, quotes that
   contain comment characters, several labels on one line, upper case. */
.intel_syntax noprefix
/ a line starting with a slash is a comment too
.global _start                 # .global as well as .globl

.section .rodata
hash: .ascii "# not a comment; nor /* this */\n"   # but this is
.equ hash_length, . - hash
chars: .byte '#', ';', '\'', '\\', '/
semi: .ascii ";"; .byte 10      ; .equ semi_length, 2

.data
first: second: third: .long 3

.text
_start: MOV EAX, 1; MOV EDI, 1
    LEA RSI, [RIP + hash]      /* inline block comment */ ; MOV EDX, OFFSET hash_length
    SYSCALL
    mov eax, 1; mov edi, 1; lea rsi, [rip + semi]; mov edx, semi_length; syscall
    mov eax, DWORD PTR [second]
    add eax, dword ptr [RIP + third]
    cmp byte ptr [chars + 2], 0x27
    jne 1f
    add eax, 1
1:  mov edi, eax               # 3 + 3 + 1 = 7
    mov eax, 60
    syscall
