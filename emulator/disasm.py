"""Disassembly for error messages, traces and debuggers (Capstone, Intel syntax)."""

from __future__ import annotations

from collections.abc import Callable

import capstone
from capstone import x86_const as CX

_engine = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
_detailed = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
_detailed.detail = True


def instruction_at(code: bytes, address: int) -> str:
    """The first instruction in `code` (which starts at `address`), as text; '??' if undecodable."""
    for insn in _engine.disasm(code, address, 1):
        return f"{insn.mnemonic} {insn.op_str}".strip()
    return "??"


def memory_operands(code: bytes, address: int, register: Callable[[str], int]) -> list[int | None]:
    """Effective addresses of the explicit memory operands of the instruction at `address`.

    Unicorn tells the TLB-fill hook only the page of a faulting access, so the
    exact address (what CR2 would hold) is recovered from the instruction.
    `register` reads a 64-bit register by Capstone's name for it; an operand
    built from any other register (a 32-bit address, say) gives None.
    """
    addresses: list[int | None] = []
    for insn in _detailed.disasm(code, address, 1):
        for op in insn.operands:
            if op.type != CX.X86_OP_MEM:
                continue
            mem = op.mem
            try:
                base = insn.address + insn.size if mem.base == CX.X86_REG_RIP else (
                    register(insn.reg_name(mem.base)) if mem.base else 0)
                index = register(insn.reg_name(mem.index)) * mem.scale if mem.index else 0
                segment = (register(insn.reg_name(mem.segment) + "_base")
                           if mem.segment in (CX.X86_REG_FS, CX.X86_REG_GS) else 0)
            except KeyError:
                addresses.append(None)
                continue
            addresses.append((segment + base + index + mem.disp) & 0xFFFF_FFFF_FFFF_FFFF)
    return addresses
