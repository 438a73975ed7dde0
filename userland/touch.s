# touch [N]: map N pages (default 1024) of anonymous memory, write one byte
# to each 4 KiB page, print "touched N pages" and exit 0.  Each first write is
# a demand-zero fault: run it to watch (and count) them.
.intel_syntax noprefix

.equ SYS_write, 1
.equ SYS_mmap, 9
.equ SYS_exit, 60
.equ STDOUT, 1
.equ STDERR, 2
.equ PAGE_SIZE, 4096
.equ DEFAULT_PAGES, 1024
.equ PROT_READ_WRITE, 1 | 2
.equ MAP_PRIVATE_ANONYMOUS, 0x02 | 0x20

.section .rodata
touched: .ascii "touched "
.equ touched_length, . - touched
pages: .ascii " pages\n"
.equ pages_length, . - pages
usage: .ascii "touch: the page count must be a decimal number\n"
.equ usage_length, . - usage
no_memory: .ascii "touch: mmap failed\n"
.equ no_memory_length, . - no_memory

.bss
digits: .space 24                   # room for a 64-bit number in decimal
digits_end:

.text
.globl _start
_start:
    mov r12d, DEFAULT_PAGES
    cmp qword ptr [rsp], 2          # argc
    jb map_pages
    mov rsi, [rsp + 16]             # argv[1]
    call parse_decimal
    jc bad_argument
    mov r12, rax

map_pages:
    test r12, r12
    jz report                       # mmap(len 0) would fail: nothing to touch
    xor edi, edi                    # addr = NULL
    mov rsi, r12
    shl rsi, 12                     # length = pages * PAGE_SIZE
    mov edx, PROT_READ_WRITE
    mov r10d, MAP_PRIVATE_ANONYMOUS
    mov r8, -1                      # fd
    xor r9d, r9d                    # offset
    mov eax, SYS_mmap
    syscall
    cmp rax, -4095
    jae mmap_failed

    mov rcx, r12
1:  mov byte ptr [rax], 1           # first touch of this page
    add rax, PAGE_SIZE
    dec rcx
    jnz 1b

report:
    lea rsi, [rip + touched]
    mov edx, touched_length
    call write_stdout
    mov rax, r12
    call write_decimal
    lea rsi, [rip + pages]
    mov edx, pages_length
    call write_stdout
    xor edi, edi
    jmp exit

bad_argument:
    lea rsi, [rip + usage]
    mov edx, usage_length
    mov edi, 2
    jmp fail
mmap_failed:
    lea rsi, [rip + no_memory]
    mov edx, no_memory_length
    mov edi, 1
fail:
    push rdi
    mov edi, STDERR
    mov eax, SYS_write
    syscall
    pop rdi
exit:
    mov eax, SYS_exit
    syscall

# parse_decimal: rsi = NUL-terminated string; returns rax = its value, CF set if it is not a number.
parse_decimal:
    xor eax, eax
    movzx ecx, byte ptr [rsi]
    test ecx, ecx
    jz 3f
2:  movzx ecx, byte ptr [rsi]
    test ecx, ecx
    jz 4f
    sub ecx, '0'
    cmp ecx, 9
    ja 3f
    imul rax, rax, 10
    add rax, rcx
    inc rsi
    jmp 2b
3:  stc
    ret
4:  clc
    ret

# write_decimal: print rax in decimal on stdout.
write_decimal:
    lea rdi, [rip + digits_end]
    mov ecx, 10
5:  xor edx, edx
    div rcx
    add dl, '0'
    dec rdi
    mov [rdi], dl
    test rax, rax
    jnz 5b
    mov rsi, rdi
    lea rdx, [rip + digits_end]
    sub rdx, rdi
    # fall through

# write_stdout: write rdx bytes at rsi to stdout.
write_stdout:
    mov edi, STDOUT
    mov eax, SYS_write
    syscall
    ret
