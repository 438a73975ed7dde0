"""Where everything goes: jump relaxation in .text, then section addresses.

Relaxation works as GNU as's does: every jump to a label in .text starts in
its short form and only ever grows, until nothing changes (the least fixed
point, so the code is as small as GNU as makes it).  Jumps to anything else
(another section, an absolute address) use the long form from the start,
as GNU as does for a target it must leave to the linker.  Sections then go
where GNU ld's default static layout would put them: .text at 0x401000,
each further section on the next page boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

from .encoding import EncodedInstruction, Form
from .errors import AssemblyError, SourceError
from .expressions import Location, Value, evaluate
from .program import SECTION_ORDER, Align, Equate, Instruction, Label, Program, display_name, evaluate_definition

IMAGE_BASE = 0x400000
TEXT_ADDRESS = 0x401000
PAGE_SIZE = 0x1000
_MAX_RELAXATION_ROUNDS = 1000


class SectionOffsets:
    """Symbol values as section offsets, given item offsets for every section."""

    def __init__(self, program: Program, offsets: dict[str, list[int]], sequence: int) -> None:
        self.program = program
        self.offsets = offsets
        self.sequence = sequence
        self.depth = 0

    def symbol(self, name: str) -> Value:
        symbol = self.program.symbols.get(name)
        if isinstance(symbol, Label):
            return self.location(symbol.location)
        if isinstance(symbol, Equate):
            return evaluate_definition(self, symbol.definition_for(self.sequence, forward_allowed=True), name)
        raise SourceError(f"undefined symbol '{display_name(name)}'")

    def location(self, location: Location) -> Value:
        return Value(location.section, self.offsets[location.section][location.index])


@dataclass
class Layout:
    offsets: dict[str, list[int]]  # offset of each item in its section, plus the section's end
    addresses: dict[str, int]      # start address of each section
    long_form: set[int]            # indexes of .text items that use their long form

    def address(self, value: Value) -> int:
        return value.offset if value.section is None else self.addresses[value.section] + value.offset

    def size(self, section: str) -> int:
        return self.offsets[section][-1]


def nop_padding(length: int) -> bytes:
    """The padding GNU as 2.40 puts in x86-64 code: 11-byte NOPs then one shorter NOP, behind a
    jump over them once more than 7 of the longest NOPs would be needed."""
    if length // len(_NOPS[-1]) <= _MAX_NOPS_BEFORE_JUMP:
        return _nops(length)
    if length - 2 <= 127:
        jump = bytes([0xEB, length - 2])
    else:
        jump = b"\xe9" + (length - 5).to_bytes(4, "little")
    return jump + _nops(length - len(jump))


def _nops(length: int) -> bytes:
    longest = _NOPS[-1]
    return longest * (length // len(longest)) + (_NOPS[length % len(longest) - 1] if length % len(longest) else b"")


_MAX_NOPS_BEFORE_JUMP = 7
_NOPS = [bytes.fromhex(h) for h in (
    "90", "6690", "0f1f00", "0f1f4000", "0f1f440000", "660f1f440000", "0f1f8000000000", "0f1f840000000000",
    "660f1f840000000000", "662e0f1f840000000000", "66662e0f1f840000000000")]


NOP_OPCODE = 0x90  # GNU as pads code with multi-byte NOPs when the fill is omitted or is 0x90


def align_padding(item: Align, offset: int) -> int:
    padding = -offset % item.boundary
    return 0 if item.max_skip is not None and padding > item.max_skip else padding


def chosen_form(encoded: EncodedInstruction, index: int, layout_long: set[int]) -> Form:
    return encoded.long if index in layout_long else encoded.short


def lay_out(program: Program, encoded: dict[int, EncodedInstruction]) -> Layout:
    """Relax .text (`encoded` maps .text item index to its encodings) and place all sections."""
    offsets = {name: list(section.starts) for name, section in program.sections.items() if not section.is_code}
    long_form: set[int] = set()
    for _ in range(_MAX_RELAXATION_ROUNDS):
        offsets[".text"] = _code_offsets(program, encoded, long_form)
        grown = _branches_to_grow(program, encoded, offsets, long_form)
        if not grown:
            break
        long_form |= grown
    else:
        raise AssemblyError(program.filename, None, "jump relaxation did not settle")
    addresses = {}
    cursor = TEXT_ADDRESS
    for name in SECTION_ORDER:
        addresses[name] = cursor
        cursor = -(-(cursor + offsets[name][-1]) // PAGE_SIZE) * PAGE_SIZE
    return Layout(offsets, addresses, long_form)


def _code_offsets(program: Program, encoded: dict[int, EncodedInstruction], long_form: set[int]) -> list[int]:
    starts = [0]
    for index, item in enumerate(program.sections[".text"].items):
        offset = starts[-1]
        if isinstance(item, Instruction):
            size = len(chosen_form(encoded[index], index, long_form).data)
        elif isinstance(item, Align):
            size = align_padding(item, offset)
        else:
            size = item.size
        starts.append(offset + size)
    return starts


def _branches_to_grow(program: Program, encoded: dict[int, EncodedInstruction], offsets: dict[str, list[int]],
                      long_form: set[int]) -> set[int]:
    grow = set()
    for index, insn in encoded.items():
        if index in long_form or not insn.can_grow:
            continue
        fixup = next(f for f in insn.instruction.template.fixups if f.kind == "branch")
        try:
            target = evaluate(fixup.expr, SectionOffsets(program, offsets, insn.instruction.sequence))
        except SourceError as error:
            raise AssemblyError(program.filename, insn.instruction.line, error.message) from None
        if target.section != ".text":
            grow.add(index)
            continue
        end = offsets[".text"][index] + len(insn.short.data)
        if not -128 <= target.offset - end <= 127:
            grow.add(index)
    return grow


def section_is_used(program: Program, layout: Layout, name: str) -> bool:
    return layout.size(name) > 0 or any(isinstance(s, Label) and s.location.section == name
                                        for s in program.symbols.values())

