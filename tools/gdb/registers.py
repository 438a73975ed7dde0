"""The register set gdb sees, and its target description (target.xml).

gdb's amd64 support insists on the whole "i386.core" feature (the general
registers, the segment selectors and the x87 state), numbered in its own
order; "i386.sse" and "i386.segments" (fs_base, gs_base) are optional and
given too.  The `g` packet carries the registers in this order, each in
little-endian, and `p N` reads the Nth one.  Registers are named as gdb
names them; the board's debug port (emulator/debug.py) reads them by name.
"""

from __future__ import annotations

from typing import NamedTuple


class Register(NamedTuple):
    name: str
    bits: int
    type: str
    feature: str


def _core(name: str, bits: int = 64, type_: str = "int64") -> Register:
    return Register(name, bits, type_, "core")


_X87_CONTROL = ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")
REGISTERS: tuple[Register, ...] = (
    *(_core(n) for n in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi")),
    _core("rbp", type_="data_ptr"), _core("rsp", type_="data_ptr"),
    *(_core(f"r{n}") for n in range(8, 16)),
    _core("rip", type_="code_ptr"), _core("eflags", 32, "i386_eflags"),
    *(_core(n, 32, "int32") for n in ("cs", "ss", "ds", "es", "fs", "gs")),
    *(_core(f"st{n}", 80, "i387_ext") for n in range(8)),
    *(_core(n, 32, "int") for n in _X87_CONTROL),
    *(Register(f"xmm{n}", 128, "vec128", "sse") for n in range(16)),
    Register("mxcsr", 32, "int", "sse"),
    Register("fs_base", 64, "int", "segments"),
    Register("gs_base", 64, "int", "segments"),
)

# The segment selectors are the kernel's, not the program's: Linux's ptrace refuses a selector that is
# not a user one, and the board runs every program with the same flat segments, so gdb may not change them.
SELECTORS = frozenset(("cs", "ss", "ds", "es", "fs", "gs"))

_EFLAGS = (("CF", 0), ("", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8), ("IF", 9), ("DF", 10),
           ("OF", 11), ("NT", 14), ("RF", 16), ("VM", 17), ("AC", 18), ("VIF", 19), ("VIP", 20), ("ID", 21))
_VEC128 = (("v8_bfloat16", "bfloat16", 8), ("v4_float", "ieee_single", 4), ("v2_double", "ieee_double", 2),
           ("v16_int8", "int8", 16), ("v8_int16", "int16", 8), ("v4_int32", "int32", 4), ("v2_int64", "int64", 2))


def target_xml() -> str:
    lines = ['<?xml version="1.0"?>', '<!DOCTYPE target SYSTEM "gdb-target.dtd">', "<target>",
             "<architecture>i386:x86-64</architecture>"]
    for feature in ("core", "sse", "segments"):
        lines.append(f'<feature name="org.gnu.gdb.i386.{feature}">')
        if feature == "core":
            lines.append('<flags id="i386_eflags" size="4">')
            lines += [f'<field name="{name}" start="{bit}" end="{bit}"/>' for name, bit in _EFLAGS]
            lines.append("</flags>")
        if feature == "sse":
            lines += [f'<vector id="{name}" type="{kind}" count="{count}"/>' for name, kind, count in _VEC128]
            lines.append('<union id="vec128">')
            lines += [f'<field name="{name}" type="{name}"/>' for name, _, _ in _VEC128]
            lines.append('<field name="uint128" type="uint128"/></union>')
        for n, reg in enumerate(REGISTERS):
            if reg.feature == feature:
                group = ' group="float"' if reg.type == "i387_ext" or reg.name in _X87_CONTROL else ""
                lines.append(f'<reg name="{reg.name}" bitsize="{reg.bits}" type="{reg.type}" regnum="{n}"{group}/>')
        lines.append("</feature>")
    lines.append("</target>")
    return "\n".join(lines) + "\n"
