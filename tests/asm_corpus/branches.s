# Jump relaxation: short and long forms, forward and backward, chains of
# jumps that push each other out of rel8 range, local numeric labels, loop/jrcxz.
.intel_syntax noprefix
.equ SYS_exit, 60

.text
.globl _start
_start:
    xor eax, eax
    mov ecx, 10
1:  add eax, ecx                      # sum 10..1 = 55
    loop 1b
    xor ecx, ecx
    jrcxz 2f
    mov eax, -1
2:  cmp eax, 55
    jne fail                          # far forward: needs rel32
    je near_target                    # short forward
    jmp fail
near_target:
    mov ebx, 3
3:  dec ebx
    jnz 3b
    jmp 1f
1:  jmp 4f                            # 1: redefined, 1f is the next one
    .space 100, 0x90                  # these two jumps straddle the rel8 limit:
4:  jmp 5f                            # the first reaches 4 only while the second is short
    .space 25, 0x90
5:  jmp chain_end
    nop
    .space 120, 0x90
chain_end:
    call function
    cmp eax, 0x42
    jne fail
    test eax, eax
    jz fail
    js fail
    jl fail
    jb fail
    jmp backward_far

function:
    mov eax, 0x42
    ret

fail:
    mov edi, 1
    jmp exit
    .space 200, 0xcc                  # never executed: makes the jumps above long
backward_far:
    mov ecx, 3
6:  .space 130, 0x90
    dec ecx
    jnz 6b                            # backward over 130 bytes: rel32
    xor edi, edi
exit:
    mov eax, SYS_exit
    syscall
    jmp exit
