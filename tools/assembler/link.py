"""Once addresses are known: section contents with every field patched, and final symbol values.

This is the work GNU ld does with GNU as's relocations, including its range
checks ("relocation truncated to fit" becomes an error on the source line).
"""

from __future__ import annotations

from dataclasses import dataclass

from .encoding import EncodedInstruction
from .errors import AssemblyError, SourceError
from .expressions import Expr, Value, evaluate, symbols_in
from .layout import NOP_OPCODE, Layout, SectionOffsets, align_padding, chosen_form, nop_padding
from .program import Align, Bytes, DataValue, Label, Program, Repeat, display_name, is_local_numeric

_SIGNED32 = (-(1 << 31), (1 << 31) - 1)


@dataclass(frozen=True)
class FinalSymbol:
    name: str
    address: int
    section: str | None  # None for an absolute (.equ) symbol
    is_global: bool


class _Linker:
    def __init__(self, program: Program, layout: Layout) -> None:
        self.program = program
        self.layout = layout

    def value(self, expr: Expr, sequence: int, line: int) -> Value:
        try:
            return evaluate(expr, SectionOffsets(self.program, self.layout.offsets, sequence))
        except SourceError as error:
            raise AssemblyError(self.program.filename, line, error.message) from None

    def error(self, line: int, message: str) -> AssemblyError:
        return AssemblyError(self.program.filename, line, message)

    def section_bytes(self, name: str, encoded: dict[int, EncodedInstruction]) -> bytes:
        out = bytearray()
        for index, item in enumerate(self.program.sections[name].items):
            if isinstance(item, Bytes):
                out += item.data
            elif isinstance(item, Repeat):
                out += item.pattern * item.count
            elif isinstance(item, DataValue):
                out += self.data_value(item)
            elif isinstance(item, Align):
                padding = align_padding(item, len(out))
                out += nop_padding(padding) if item.fill in (None, NOP_OPCODE) else bytes([item.fill]) * padding
            else:
                out += self.instruction(encoded[index], index, self.layout.addresses[name] + len(out))
        return bytes(out)

    def data_value(self, item: DataValue) -> bytes:
        value = self.value(item.expr, item.sequence, item.line)
        number = self.layout.address(value)
        bits = 8 * item.size
        if not value.is_absolute and not 0 <= number < (1 << bits):
            raise self.error(item.line, f"address {number:#x} does not fit in {item.size} bytes")
        return (number & ((1 << bits) - 1)).to_bytes(item.size, "little")

    def instruction(self, insn: EncodedInstruction, index: int, address: int) -> bytes:
        form = chosen_form(insn, index, self.layout.long_form)
        data = bytearray(form.data)
        end = address + len(data)
        line = insn.instruction.line
        for fixup in insn.instruction.template.fixups:
            value = self.value(fixup.expr, insn.instruction.sequence, line)
            number = self.layout.address(value)
            if fixup.bare_symbol and value.is_absolute and symbols_in(fixup.expr):
                self.warn_bare_constant(fixup.expr, line)
            if fixup.kind == "branch":
                self.patch(data, form.imm_offset, form.rel_size, number - end, signed=True, line=line,
                           what="branch displacement to the target")
            elif fixup.kind == "rip":
                self.patch(data, form.disp_offset, 4, number - end, signed=True, line=line,
                           what="rip-relative displacement")
            elif fixup.kind == "disp":
                self.patch(data, form.disp_offset, 4, number, signed=True, line=line, what="absolute address")
            else:
                self.patch(data, form.imm_offset, form.imm_size, number, signed=form.imm_size == 8, line=line,
                           what="immediate")
        return bytes(data)

    def patch(self, data: bytearray, offset: int, size: int, number: int, signed: bool, line: int,
              what: str) -> None:
        bits = 8 * size
        low = -(1 << (bits - 1))
        high = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        if size < 8 and not low <= number <= high:
            raise self.error(line, f"{what} {number:#x} does not fit in {size} byte{'s' * (size > 1)}")
        data[offset:offset + size] = (number & ((1 << bits) - 1)).to_bytes(size, "little")

    def warn_bare_constant(self, expr: Expr, line: int) -> None:
        names = ", ".join(sorted(display_name(name) for name in symbols_in(expr)))
        message = (f"'{names}' is not defined as a constant before this line, so (as in GNU as) "
                   f"it is a memory operand here; write OFFSET {names} to use its value")
        self.program.warnings.append((line, message))

    def symbols(self) -> list[FinalSymbol]:
        result = []
        for name, symbol in self.program.symbols.items():
            if is_local_numeric(name) or name.startswith(".L"):
                continue
            if isinstance(symbol, Label):
                value = Value(symbol.location.section,
                              self.layout.offsets[symbol.location.section][symbol.location.index])
            else:
                sequence, expr, line = symbol.definitions[-1]
                value = self.value(expr, sequence + 1, line)
            result.append(FinalSymbol(display_name(name), self.layout.address(value), value.section,
                                      name in self.program.globals))
        return result


def link(program: Program, layout: Layout, encoded: dict[int, EncodedInstruction]) -> tuple[dict[str, bytes],
                                                                                           list[FinalSymbol]]:
    """Final bytes of each section but .bss (which has none in the file), and the symbol table."""
    linker = _Linker(program, layout)
    contents = {name: linker.section_bytes(name, encoded if name == ".text" else {})
                for name in program.sections if name != ".bss"}
    return contents, linker.symbols()

