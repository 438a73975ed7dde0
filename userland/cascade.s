# cascade SEED STEPS PAGES MAX_DEPTH: a seeded cascade of forks for the chain-depth experiment.
#
# Every process (parents and children alike) takes STEPS random steps: with
# probability 2/8 it forks (while its depth is below MAX_DEPTH), with 1/8 a
# child exits early, otherwise it writes a random byte to one of PAGES pages
# of a bss array. Then it reaps its children and exits. The random generator
# is xorshift64, seeded from SEED and perturbed in each child, so a seed
# always gives the same tree of processes and the same writes.
.intel_syntax noprefix

.equ SYS_fork, 57
.equ SYS_exit, 60
.equ SYS_wait4, 61
.equ MAX_PAGES, 64
.equ PAGE_SIZE, 4096

.bss
.p2align 12
area: .space MAX_PAGES * PAGE_SIZE

.text
.globl _start
_start:
    mov r15, 12345                  # seed
    mov r14, 40                     # steps
    mov r13, 32                     # pages
    mov r12, 5                      # maximum depth of the process tree
    cmp qword ptr [rsp], 5
    jl clamp
    mov rdi, [rsp + 16]
    call parse_decimal
    mov r15, rax
    mov rdi, [rsp + 24]
    call parse_decimal
    mov r14, rax
    mov rdi, [rsp + 32]
    call parse_decimal
    mov r13, rax
    mov rdi, [rsp + 40]
    call parse_decimal
    mov r12, rax
clamp:
    cmp r13, MAX_PAGES
    jbe 1f
    mov r13, MAX_PAGES
1:
    test r13, r13
    jnz 2f
    mov r13, 1
2:
    or r15, 1                       # xorshift must not start at 0
    xor ebp, ebp                    # this process's depth in the tree

step:
    test r14, r14
    jz finish
    dec r14
    call random
    mov rbx, rax
    mov ecx, eax
    and ecx, 7
    cmp ecx, 1
    ja not_fork
    cmp rbp, r12
    jae write
    mov eax, SYS_fork
    syscall
    test rax, rax
    js write                        # no fork possible: write instead
    jnz step                        # the parent goes on
    inc rbp                         # the child: one level deeper, its own random sequence
    mov rax, 0x9E3779B97F4A7C15
    xor r15, rax
    rol r15, 17
    or r15, 1
    jmp step
not_fork:
    cmp ecx, 2
    jne write
    test rbp, rbp
    jnz finish                      # a child may stop early
write:
    mov rax, rbx
    shr rax, 8
    xor edx, edx
    div r13
    shl rdx, 12
    lea rdi, [rip + area]
    mov byte ptr [rdi + rdx], bl
    jmp step

finish:
    mov rdi, -1
    xor esi, esi
    xor edx, edx
    xor r10d, r10d
    mov eax, SYS_wait4
    syscall
    test rax, rax
    jns finish                      # reap until there is no child left
    mov eax, SYS_exit
    xor edi, edi
    syscall

# xorshift64 of r15; returns the new value in rax.
random:
    mov rax, r15
    mov rdx, rax
    shl rdx, 13
    xor rax, rdx
    mov rdx, rax
    shr rdx, 7
    xor rax, rdx
    mov rdx, rax
    shl rdx, 17
    xor rax, rdx
    mov r15, rax
    ret

# The decimal number at rdi (stops at the first non-digit); returns it in rax.
parse_decimal:
    xor eax, eax
3:
    movzx ecx, byte ptr [rdi]
    sub ecx, '0'
    cmp ecx, 9
    ja 4f
    imul rax, rax, 10
    add rax, rcx
    inc rdi
    jmp 3b
4:
    ret
