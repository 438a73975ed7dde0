# Encodings only (this program is not meant to run): compared byte-for-byte with GNU as.
.intel_syntax noprefix
.equ K, 1000
.data
d: .quad 0
.text
.globl _start
_start:
    mov rax, [8]
    mov eax, [rbx + 0]
    mov rax, 0xffffffff
    mov rax, 0x80000000
    mov rax, -0x80000000
    mov eax, -1
    cmp byte ptr [rsi], 'A'
    push 5
    push 500
    imul rax, rbx, K
    shl rax, 3
    rep movsb
    lock xadd [rdi], eax
    mov rax, fs:[0x28]
    mov rax, qword ptr fs:0x28
    movzx eax, byte ptr [rip + d + 1]
    test byte ptr [d], 1
    xchg rax, rbx
    sete al
    cmovne rax, [d]
    lea rax, [rax + rax*2]
    lea rax, [rbp - 8]
    lea rax, [rsp + 8]
    lea rax, [r12 + r13*4 + 0x10]
    lea rax, [r13]
    mov qword ptr [rsp + K], 1
    movq xmm0, qword ptr [d]
    movaps xmm1, xmmword ptr [rip + d]
    jmp .
    jmp rax
    call qword ptr [d]
    ret 8
    int3
    hlt
    cqo
    div qword ptr [rip + d]
    not rax
    neg dword ptr [d + 4]
    sar rdx, cl
    bt rax, 5
    and rax, ~0xf
    or rax, 1 << 12
    mov ax, 0x1234
    mov ah, 1
    movsxd rax, dword ptr [d]
    add rsp, 8
    sub rsp, 0x88
    syscall
