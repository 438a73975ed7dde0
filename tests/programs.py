"""Small assembly programs the tests run, with the numbers they must produce."""

import sys

from vmgames.tools.snippets import CLONE_THREAD  # noqa: F401 (the tests take it from here)

# The vmgames command as a test starts it: the tests' own Python, so the checkout under test is what runs.
VMGAMES = (sys.executable, "-m", "vmgames.tools.cli")

# exit(rdi): the status is the low byte of rdi.
EXIT_WITH_RDI = """
    mov eax, 60
    syscall
"""

# exit(-rax): a failed syscall's result exits with its errno.
EXIT_WITH_NEGATED_RAX = f"""
    neg rax
    mov rdi, rax
{EXIT_WITH_RDI}"""

# exit(0).
EXIT_0 = """
    mov eax, 60
    xor edi, edi
    syscall
"""


# fork(): rax is the child's pid in the parent, 0 in the child (-errno if it failed).
FORK = """
    mov eax, 57
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


def mmap(size: int | str, prot: int, flags: int = 0x22, fd: str = "-1") -> str:
    """mmap(NULL, size, prot, flags, fd, 0), the address (or -errno) left in rax.

    `flags` defaults to MAP_PRIVATE | MAP_ANONYMOUS; `fd` is -1 or the register holding a descriptor.
    """
    return f"""
    xor edi, edi
    mov esi, {size}
    mov edx, {prot}
    mov r10d, {flags:#x}
    mov r8, {fd}
    xor r9d, r9d
    mov eax, 9
    syscall
"""


# wait4(rdi, NULL, 0, NULL): wait for the child whose pid is in rdi (-1: any child).
WAIT4_RDI = """
    xor esi, esi
    xor edx, edx
    xor r10d, r10d
    mov eax, 61
    syscall
"""

# wait4(rdi, &status, 0, NULL): as WAIT4_RDI, the wait status left in the program's `status` label.
WAIT4_RDI_STATUS = """
    lea rsi, [rip + status]
    xor edx, edx
    xor r10d, r10d
    mov eax, 61
    syscall
"""


def syscall_on_path_then_exit(number: int, path: str) -> str:
    """Calls syscall `number` with `path` as its first argument (the others 0), and exits with minus its result."""
    return f"""
.text
_start:
    lea rdi, [rip + path]
    xor esi, esi
    xor edx, edx
    mov eax, {number}
    syscall
{EXIT_WITH_NEGATED_RAX}
.section .rodata
path: .asciz "{path}"
"""


# After fork, the child and the parent each write the bss page they share: the child sees 1 and
# exits 1 + 7 = 8; the parent keeps its own 2 and exits 10 * 8 + 2 = 82.
FORK_AND_WRITE = f"""
.text
_start:
    mov qword ptr [rip + value], 1
{FORK}
    test rax, rax
    jz child
    mov qword ptr [rip + value], 2
    mov rdi, rax
{WAIT4_RDI_STATUS}
    mov eax, dword ptr [rip + status]
    shr eax, 8
    imul eax, eax, 10
    add rax, [rip + value]
    mov rdi, rax
{EXIT_WITH_RDI}
child:
    mov rdi, [rip + value]
    mov qword ptr [rip + value], 7
    add rdi, [rip + value]
{EXIT_WITH_RDI}
.bss
.align 4096
value: .zero 8
status: .zero 8
"""
