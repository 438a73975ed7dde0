# Print argc and each argument on its own line, from the initial stack:
# [rsp] = argc, [rsp + 8] = argv[0], ..., NULL, envp..., NULL, auxv.
.intel_syntax noprefix
.equ SYS_write, 1
.equ SYS_exit, 60

.bss
.balign 8
line: .space 4096
argc_copy: .space 8

.text
.globl _start
_start:
    mov rbx, [rsp]
    mov [argc_copy], rbx
    lea r12, [rsp + 8]                # argv
    mov rax, rbx
    call print_number
2:  mov rsi, [r12]
    test rsi, rsi
    jz done
    call print_string
    add r12, 8
    jmp 2b
done:
    mov rdi, qword ptr [argc_copy]
    mov eax, SYS_exit
    syscall

# print_string: rsi = NUL-terminated string, written with a newline.
print_string:
    lea rdi, [line]
    xor ecx, ecx
1:  mov al, [rsi + rcx]
    mov [rdi + rcx], al
    inc rcx
    test al, al
    jnz 1b
    mov byte ptr [rdi + rcx - 1], 10
    mov rdx, rcx
    jmp write_line

# print_number: rax in decimal with a newline.
print_number:
    lea rdi, [line + 32]
    mov byte ptr [rdi], 10
    mov ecx, 10
1:  xor edx, edx
    div rcx
    add edx, '0'
    dec rdi
    mov [rdi], dl
    test rax, rax
    jnz 1b
    lea rdx, [line + 33]
    sub rdx, rdi
write_line:
    mov rsi, rdi
    mov edi, 1
    mov eax, SYS_write
    syscall
    ret
