"""Names the x86-64 assembler treats as registers and operand keywords, never as symbols."""

from __future__ import annotations

_GENERAL = {
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp",
    "ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "al", "bl", "cl", "dl", "ah", "bh", "ch", "dh",
    "sil", "dil", "bpl", "spl",
    *(f"r{n}{suffix}" for n in range(8, 16) for suffix in ("", "d", "w", "b")),
}
SEGMENT = {"cs", "ds", "es", "fs", "gs", "ss"}
_OTHER = {
    "rip", "eip", "st",
    *(f"{kind}{n}" for kind in ("xmm", "ymm", "zmm") for n in range(32)),
    *(f"mm{n}" for n in range(8)), *(f"k{n}" for n in range(8)),
    *(f"cr{n}" for n in range(16)), *(f"dr{n}" for n in range(8)),
}
REGISTERS = _GENERAL | SEGMENT | _OTHER

SIZE_KEYWORDS = {"byte", "word", "dword", "fword", "qword", "tbyte", "oword", "xmmword", "ymmword", "zmmword"}

PREFIXES = {"rep", "repe", "repz", "repne", "repnz", "lock", "notrack", "bnd", "data16", "addr32"}

# Mnemonics whose bare operand is a code address reached by a pc-relative displacement.
_CONDITIONS = ("o", "no", "b", "c", "nae", "ae", "nb", "nc", "e", "z", "ne", "nz", "be", "na", "a", "nbe",
               "s", "ns", "p", "pe", "np", "po", "l", "nge", "ge", "nl", "le", "ng", "g", "nle")
BRANCHES = {"jmp", "call", "jrcxz", "jecxz", "loop", "loope", "loopz", "loopne", "loopnz",
            *(f"j{condition}" for condition in _CONDITIONS)}


def is_register(name: str) -> bool:
    return name.lower() in REGISTERS
