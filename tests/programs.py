"""Small assembly programs the tests run, with the numbers they must produce."""

EXIT_WITH_NEGATED_RAX = """
    neg rax
    mov rdi, rax
    mov eax, 60
    syscall
"""

EXIT_0 = """
    mov eax, 60
    xor edi, edi
    syscall
"""


def say(text: str) -> str:
    """Writes `text` to stdout in one write() and exits 0."""
    data = text.encode()
    return f"""
.text
_start:
    mov eax, 1
    mov edi, 1
    lea rsi, [rip + msg]
    mov edx, {len(data)}
    syscall
{EXIT_0}
.section .rodata
msg: .byte {", ".join(str(b) for b in data)}
"""


def touch(pages: int) -> str:
    """Writes one byte to each of `pages` pages of a page-aligned bss array."""
    return f"""
.text
_start:
    lea rbx, [rip + area]
    mov ecx, {pages}
again:
    mov byte ptr [rbx], 1
    add rbx, 4096
    dec ecx
    jnz again
{EXIT_0}
.bss
.align 4096
area: .zero {pages * 4096}
"""


def syscall_then_exit(number: int, *args: int) -> str:
    """Makes one syscall and exits with minus its result (so -EFAULT exits 14)."""
    regs = ["rdi", "rsi", "rdx", "r10", "r8", "r9"]
    setup = "\n".join(f"    mov {reg}, {value:#x}" for reg, value in zip(regs, args, strict=False))
    return f"""
.text
_start:
    mov rax, {number}
{setup}
    syscall
{EXIT_WITH_NEGATED_RAX}
"""
