"""Where everything goes: jump relaxation in .text, then section addresses.

Relaxation works as GNU as's does: every jump to a label in .text starts in
its short form and only ever grows, until nothing changes (the least fixed
point, so the code is as small as GNU as makes it).  Jumps to anything else
(another section, an absolute address) use the long form from the start,
as GNU as does for a target it must leave to the linker.  Sections then go
where GNU ld's default static layout would put them: .text at 0x401000,
each further section on the next page boundary.

Layout is also where sizes are refused, before any byte is written.  GNU as
and ld write a file as large as the disk takes and a .bss of any size; we
stop at MAX_FILE_CONTENTS of .text, .rodata and .data together (the bytes are
built in the host's memory a few times over, and the machine has 256 MiB of
RAM by default), and at a .bss ending above USER_TOP (Linux would refuse to
exec it).  A .bss below that costs nothing at all: it is never written out.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

from .encoding import EncodedInstruction, Form
from .errors import AssemblyError, SourceError, shown
from .expressions import Location, Symbol, Value, evaluate
from .program import (
    SECTION_ORDER,
    Align,
    Definitions,
    Equate,
    Instruction,
    Item,
    Label,
    Program,
    display_name,
    evaluate_definition,
)

IMAGE_BASE = 0x400000
TEXT_ADDRESS = 0x401000
PAGE_SIZE = 0x1000
MAX_FILE_CONTENTS = 64 << 20
USER_TOP = 0x7FFFFFFFF000  # Linux x86-64's TASK_SIZE_MAX: user space ends here
_MAX_RELAXATION_ROUNDS = 1000


class SectionOffsets:
    """Symbol values as section offsets, given item offsets for every section."""

    def __init__(self, program: Program, offsets: dict[str, list[int]], sequence: int) -> None:
        self.program = program
        self.offsets = offsets
        self.sequence = sequence
        self.definitions = Definitions(final=True)

    def symbol(self, name: str) -> Value:
        symbol = self.program.symbols.get(name)
        if isinstance(symbol, Label):
            return self.location(symbol.location)
        if isinstance(symbol, Equate):
            return evaluate_definition(self, symbol.definition_for(self.sequence, forward_allowed=True), name)
        raise SourceError(f"undefined symbol {shown(display_name(name))}")

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
    long_form = _relax(program, encoded, offsets)
    _check_file_contents(program, offsets)
    addresses = {}
    cursor = TEXT_ADDRESS
    for name in SECTION_ORDER:
        addresses[name] = cursor
        cursor = -(-(cursor + offsets[name][-1]) // PAGE_SIZE) * PAGE_SIZE
    bss_room = USER_TOP - addresses[".bss"]
    if offsets[".bss"][-1] > bss_room:
        end = addresses[".bss"] + offsets[".bss"][-1]
        raise AssemblyError(program.filename, _line_past(program, offsets, ".bss", bss_room),
                            f".bss would end at {end:#x}, above the top of user space ({USER_TOP:#x})")
    return Layout(offsets, addresses, long_form)


def _check_file_contents(program: Program, offsets: dict[str, list[int]]) -> None:
    """Refuse a program whose sections in the file would together exceed MAX_FILE_CONTENTS."""
    room = MAX_FILE_CONTENTS
    for name in SECTION_ORDER:
        if name == ".bss":
            continue
        if offsets[name][-1] > room:
            raise AssemblyError(program.filename, _line_past(program, offsets, name, room),
                                f"{name} grows past {MAX_FILE_CONTENTS >> 20} MiB here, the most the assembler "
                                f"writes for .text, .rodata and .data together (.bss may be larger)")
        room -= offsets[name][-1]


def _line_past(program: Program, offsets: dict[str, list[int]], name: str, room: int) -> int | None:
    """The line of the first item in section `name` that ends more than `room` bytes into it."""
    index = bisect.bisect_right(offsets[name], room) - 1
    return program.sections[name].items[index].line


def _relax(program: Program, encoded: dict[int, EncodedInstruction], offsets: dict[str, list[int]]) -> set[int]:
    """Grow branches until every short one reaches its target; sets offsets[".text"], returns the long ones.

    A hostile source can make each round grow a single branch, so a round costs little: sizes
    change only where a branch grew, offsets are summed in C, and a branch to a label finds
    its target by indexing, not by evaluating an expression.
    """
    items = program.sections[".text"].items
    sizes = [len(encoded[index].short.data) if isinstance(item, Instruction) else
             0 if isinstance(item, Align) else item.size for index, item in enumerate(items)]
    aligns = [index for index, item in enumerate(items) if isinstance(item, Align)]
    short = {index: _label_location(program, insn) for index, insn in encoded.items() if insn.can_grow}
    long_form: set[int] = set()
    for _ in range(_MAX_RELAXATION_ROUNDS):
        offsets[".text"] = _code_offsets(items, sizes, aligns)
        grown = [index for index, label in short.items()
                 if not _short_form_reaches(program, encoded[index], offsets, index, label)]
        if not grown:
            return long_form
        for index in grown:
            del short[index]
            sizes[index] = len(encoded[index].long.data)
        long_form.update(grown)
    raise AssemblyError(program.filename, None, f"jump relaxation did not settle in {_MAX_RELAXATION_ROUNDS} rounds "
                                                f"(each grown branch pushing another out of short range)")


def _code_offsets(items: list[Item], sizes: list[int], aligns: list[int]) -> list[int]:
    """Item offsets in .text (and its end): running sums of `sizes`, with the padding of each alignment."""
    starts = [0]
    begin = 0
    for index in aligns:
        starts += itertools.accumulate(sizes[begin:index], initial=starts.pop())  # re-adds the last start
        starts.append(starts[-1] + align_padding(items[index], starts[-1]))
        begin = index + 1
    starts += itertools.accumulate(sizes[begin:], initial=starts.pop())
    return starts


def _label_location(program: Program, insn: EncodedInstruction) -> Location | None:
    """Where a branch goes when its target is a plain label, else None (its expression is evaluated)."""
    fixup = next(f for f in insn.instruction.template.fixups if f.kind == "branch")
    symbol = program.symbols.get(fixup.expr.name) if isinstance(fixup.expr, Symbol) else None
    return symbol.location if isinstance(symbol, Label) else None


def _short_form_reaches(program: Program, insn: EncodedInstruction, offsets: dict[str, list[int]], index: int,
                        label: Location | None) -> bool:
    if label is not None:
        target = Value(label.section, offsets[label.section][label.index])
    else:
        fixup = next(f for f in insn.instruction.template.fixups if f.kind == "branch")
        try:
            target = evaluate(fixup.expr, SectionOffsets(program, offsets, insn.instruction.sequence))
        except SourceError as error:
            raise AssemblyError(program.filename, insn.instruction.line, error.message) from None
    end = offsets[".text"][index] + len(insn.short.data)
    return target.section == ".text" and -128 <= target.offset - end <= 127


def section_is_used(program: Program, layout: Layout, name: str) -> bool:
    return layout.size(name) > 0 or any(isinstance(s, Label) and s.location.section == name
                                        for s in program.symbols.values())

