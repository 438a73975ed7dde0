"""Disassembly for error messages, traces and debuggers (Capstone, Intel syntax)."""

from __future__ import annotations

import capstone

_engine = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)


def instruction_at(code: bytes, address: int) -> str:
    """The first instruction in `code` (which starts at `address`), as text; '??' if undecodable."""
    for insn in _engine.disasm(code, address, 1):
        return f"{insn.mnemonic} {insn.op_str}".strip()
    return "??"
