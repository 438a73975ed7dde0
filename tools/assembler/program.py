"""First pass: statements into sections of items, and a symbol table.

Everything whose size cannot change is settled here (strings, data values,
``.space``, alignment in the data sections, whose offsets never move).  What
depends on code layout (instruction sizes, alignment in .text, values of
labels) is left as items for the layout pass.  ``.space`` and its kin stay a
count until the bytes are written, so a huge one costs nothing here (and never
anything in .bss); layout refuses sizes beyond its limits.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from .errors import AssemblyError, SourceError, shown
from .expressions import (
    Binary,
    Expr,
    Here,
    Location,
    NotKnownYet,
    Number,
    Token,
    Value,
    evaluate,
    parse_expression,
    split_commas,
    tokenize,
)
from .operands import InstructionTemplate, parse_instruction
from .registers import is_register
from .source import Statement

SECTION_ORDER = (".text", ".rodata", ".data", ".bss")
_DATA_SIZES = {".byte": 1, ".word": 2, ".short": 2, ".value": 2, ".2byte": 2, ".long": 4, ".int": 4,
               ".4byte": 4, ".quad": 8, ".8byte": 8}
_STRINGS = {".ascii": False, ".asciz": True, ".string": True}
_LD_BSS_ALIGNMENT = 8  # GNU ld's default script ends .bss with ". = ALIGN(. != 0 ? 64 / 8 : 1)"
_IGNORED = {".intel_syntax", ".code64", ".type", ".size", ".file", ".ident"}
_MAX_DEFINITION_DEPTH = 100  # symbols defined through symbols defined after them: three Python frames a level


# ---- items ------------------------------------------------------------------------------------

@dataclass(slots=True)
class Bytes:
    data: bytes
    line: int

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(slots=True)
class Repeat:
    """`count` copies of `pattern` (.space, .fill, alignment padding), written out only by the linker."""
    pattern: bytes
    count: int
    line: int | None

    @property
    def size(self) -> int:
        return len(self.pattern) * self.count


@dataclass(slots=True)
class DataValue:
    """A data directive value that needs an address, filled in after layout."""
    size: int
    expr: Expr
    line: int
    sequence: int


@dataclass(slots=True)
class Align:
    """Alignment inside .text, where the padding depends on code layout."""
    boundary: int
    fill: int | None
    max_skip: int | None
    line: int


@dataclass(slots=True)
class Instruction:
    line: int
    sequence: int
    source: str
    template: InstructionTemplate


Item = Bytes | Repeat | DataValue | Align | Instruction


@dataclass(slots=True)
class Section:
    name: str
    items: list[Item] = field(default_factory=list)
    starts: list[int] = field(default_factory=lambda: [0])  # item offsets, for sections that never move
    alignment: int = 1

    @property
    def is_code(self) -> bool:
        return self.name == ".text"

    @property
    def size(self) -> int:
        return self.starts[-1]

    def append(self, item: Item) -> None:
        self.items.append(item)
        if not self.is_code:
            self.starts.append(self.starts[-1] + _fixed_size(item))


def _fixed_size(item: Item) -> int:
    return item.size if isinstance(item, (Bytes, Repeat, DataValue)) else 0


# ---- symbols ----------------------------------------------------------------------------------

@dataclass(slots=True)
class Label:
    location: Location
    line: int


@dataclass(slots=True)
class Equate:
    """A `.equ`/`.set`/`=` symbol; `.set` may redefine it, so keep every definition in order."""
    definitions: list[tuple[int, Expr, int]] = field(default_factory=list)  # (sequence, expr, line)

    def definition_for(self, sequence: int, forward_allowed: bool) -> tuple[int, Expr, int] | None:
        """The last definition before statement `sequence` (definitions are kept in statement order)."""
        earlier = bisect.bisect_left(self.definitions, sequence, key=lambda definition: definition[0])
        if earlier:
            return self.definitions[earlier - 1]
        return self.definitions[0] if forward_allowed and self.definitions else None

    @property
    def line(self) -> int:
        return self.definitions[0][2]


class LocalNumericLabels:
    """GNU `1:` labels: `1b` is the nearest `1:` above, `1f` the nearest below."""

    def __init__(self) -> None:
        self.defined: dict[str, int] = {}

    def define(self, number: str) -> str:
        self.defined[number] = self.defined.get(number, 0) + 1
        return self._name(number, self.defined[number])

    def reference(self, text: str) -> str:
        number, direction = text[:-1], text[-1]
        count = self.defined.get(number, 0)
        if direction == "b":
            if count == 0:
                raise SourceError(f"backward reference to unknown label \"{number}:\"")
            return self._name(number, count)
        return self._name(number, count + 1)

    @staticmethod
    def _name(number: str, ordinal: int) -> str:
        return f".L{number}\x02{ordinal}"


def is_local_numeric(name: str) -> bool:
    return "\x02" in name


def display_name(name: str) -> str:
    if is_local_numeric(name):
        number = name[2:name.index("\x02")]
        return f"{number}f/{number}b"
    return name


class Program:
    """The result of the first pass."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.sections = {name: Section(name) for name in SECTION_ORDER}
        self.symbols: dict[str, Label | Equate] = {}
        self.globals: dict[str, int] = {}
        self.warnings: list[tuple[int | None, str]] = []


# ---- environments -----------------------------------------------------------------------------

class Definitions:
    """Equate values worked out during one evaluation: each definition once, loops and runaway depth caught.

    `final` says whether this evaluation is the last word (after layout), where a definition
    nested too deeply is an error; during the first pass it is merely not known yet.
    """

    def __init__(self, final: bool) -> None:
        self.final = final
        self.values: dict[tuple[str, int], Value] = {}
        self.active: set[tuple[str, int]] = set()


class KnownSoFar:
    """What GNU as knows at one statement: symbols defined above it, offsets in non-code sections."""

    def __init__(self, program: Program, sequence: int) -> None:
        self.program = program
        self.sequence = sequence
        self.definitions = Definitions(final=False)

    def symbol(self, name: str) -> Value:
        symbol = self.program.symbols.get(name)
        if isinstance(symbol, Label):
            return self.location(symbol.location)
        if isinstance(symbol, Equate):
            definition = symbol.definition_for(self.sequence, forward_allowed=False)
            if definition is not None:
                return evaluate_definition(self, definition, name)
        raise NotKnownYet(name)

    def location(self, location: Location) -> Value:
        section = self.program.sections[location.section]
        if section.is_code:
            raise NotKnownYet(location)
        return Value(location.section, section.starts[location.index])


def evaluate_definition(env, definition: tuple[int, Expr, int], name: str) -> Value:
    """An equate's value as seen from its own definition point (`env` has `sequence` and `definitions`).

    A definition reached again while it is being evaluated is a loop; one reached through more
    than _MAX_DEFINITION_DEPTH others is refused too, which bounds the recursion.
    """
    sequence, expr, _ = definition
    key = (name, sequence)
    definitions: Definitions = env.definitions
    if key in definitions.values:
        return definitions.values[key]
    if key in definitions.active:
        raise SourceError(f"symbol definition loop involving {shown(display_name(name))}")
    if len(definitions.active) == _MAX_DEFINITION_DEPTH:
        if not definitions.final:
            raise NotKnownYet(name)
        raise SourceError(f"symbol definitions nested more than {_MAX_DEFINITION_DEPTH} deep (at "
                          f"{shown(display_name(name))}); define symbols before the definitions that use them")
    saved = env.sequence
    env.sequence = sequence
    definitions.active.add(key)
    try:
        value = evaluate(expr, env)
    finally:
        env.sequence = saved
        definitions.active.discard(key)
    definitions.values[key] = value
    return value


def _as_expression(value: Value) -> Expr:
    """A value known for good (a number, or an offset into a section whose offsets never move)."""
    if value.is_absolute:
        return Number(value.offset)
    return Binary("+", Here(Location(value.section, 0)), Number(value.offset))


# ---- the first pass ---------------------------------------------------------------------------

def build_program(statements: list[Statement], filename: str) -> Program:
    """Run the first pass; raises AssemblyError naming the line of the first problem."""
    builder = _Builder(Program(filename))
    for sequence, statement in enumerate(statements):
        try:
            if builder.handle(sequence, statement):
                break
        except SourceError as error:
            raise AssemblyError(filename, statement.line, error.message) from None
    builder.check_globals()
    bss = builder.program.sections[".bss"]
    bss.append(Repeat(b"\0", -bss.size % _LD_BSS_ALIGNMENT, None))
    return builder.program


class _Builder:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.section = program.sections[".text"]
        self.locals = LocalNumericLabels()
        self.sequence = 0

    @property
    def here(self) -> Location:
        return Location(self.section.name, len(self.section.items))

    def handle(self, sequence: int, statement: Statement) -> bool:
        """Process one statement; True means `.end`."""
        self.sequence = sequence
        self.line = statement.line
        if statement.kind == "label":
            self.define_label(statement.name)
        elif statement.kind == "assignment":
            self.assign(statement.name, statement.text)
        elif statement.kind == "instruction":
            self.instruction(statement.text)
        elif statement.name == ".end":
            return True
        else:
            self.directive(statement.name, statement.text)
        return False

    # labels and symbols

    def define_label(self, name: str) -> None:
        if name.isdigit():
            name = self.locals.define(name)
        elif is_register(name):
            raise SourceError(f"'{name}' is a register name and cannot be a label")
        existing = self.program.symbols.get(name)
        if existing is not None:
            raise SourceError(f"symbol {shown(display_name(name))} is already defined (line {existing.line})")
        self.program.symbols[name] = Label(self.here, self.line)

    def assign(self, name: str, text: str) -> None:
        if name == ".":
            raise SourceError("assigning to '.' is not supported; use .space or .align")
        if is_register(name):
            raise SourceError(f"'{name}' is a register name and cannot be a symbol")
        expr = self.expression(tokenize(text))
        existing = self.program.symbols.get(name, Equate())
        if isinstance(existing, Label):
            raise SourceError(f"symbol {shown(name)} is already defined as a label (line {existing.line})")
        try:
            value = evaluate(expr, KnownSoFar(self.program, self.sequence))
        except NotKnownYet:
            value = None
        if value is not None:
            expr = _as_expression(value)  # so a long chain of such symbols is never walked again
        self.program.symbols[name] = existing
        existing.definitions.append((self.sequence, expr, self.line))

    def expression(self, tokens: list[Token]) -> Expr:
        return parse_expression(tokens, self.here, self.locals)

    def known_absolute(self, tokens: list[Token], what: str) -> int:
        """An expression GNU as requires to be a constant at this point (sizes, fills, alignments)."""
        try:
            value = evaluate(self.expression(tokens), KnownSoFar(self.program, self.sequence))
        except NotKnownYet:
            value = None
        if value is None or not value.is_absolute:
            raise SourceError(f"{what} must be a constant known at this point")
        return value.offset

    # instructions

    def instruction(self, text: str) -> None:
        if not self.section.is_code:
            raise SourceError(f"instructions are only supported in .text, not in {self.section.name}")
        template = parse_instruction(text, self.here, KnownSoFar(self.program, self.sequence), self.locals)
        self.section.append(Instruction(self.line, self.sequence, text, template))

    # directives

    def directive(self, name: str, text: str) -> None:
        if name in _IGNORED:
            if name == ".intel_syntax" and text.strip().lower() == "prefix":
                raise SourceError(".intel_syntax prefix is not supported; use noprefix")
            return
        if name in (".text", ".data", ".bss", ".rodata"):
            self.switch_section(name, text)
        elif name == ".section":
            self.switch_section(text.split(",")[0].strip(), "")
        elif name in (".globl", ".global"):
            for part in split_commas(tokenize(text)):
                if len(part) != 1 or part[0].kind != "name":
                    raise SourceError(f"{name} takes symbol names")
                self.program.globals.setdefault(part[0].text, self.line)
        elif name in (".equ", ".set"):
            parts = text.split(",", 1)
            if len(parts) != 2 or not parts[0].strip():
                raise SourceError(f"{name} needs 'NAME, EXPRESSION'")
            self.assign(parts[0].strip(), parts[1])
        elif name in _DATA_SIZES:
            self.data_values(name, _DATA_SIZES[name], text)
        elif name in _STRINGS:
            self.strings(name, text, _STRINGS[name])
        elif name in (".space", ".skip", ".zero"):
            self.space(name, text)
        elif name == ".fill":
            self.fill(text)
        elif name in (".align", ".balign", ".p2align"):
            self.align(name, text)
        elif name == ".att_syntax":
            raise SourceError("AT&T syntax is not supported; use .intel_syntax noprefix")
        elif name in (".include", ".incbin"):
            raise SourceError(f"{name} is not supported: a program is one source file, and the assembler "
                              f"reads no other")
        else:
            raise SourceError(f"unknown directive {shown(name)}")

    def switch_section(self, name: str, rest: str) -> None:
        if rest:
            raise SourceError(f"subsections are not supported ({shown(name + ' ' + rest)})")
        canonical = next((s for s in SECTION_ORDER if name == s or name.startswith(s + ".")), None)
        if canonical is None:
            raise SourceError(f"unsupported section {shown(name)} (use .text, .rodata, .data or .bss)")
        self.section = self.program.sections[canonical]

    def refuse_data_in_bss(self, name: str) -> None:
        if self.section.name == ".bss":
            raise SourceError(f"{name} puts data in .bss; only .space, .skip, .zero and alignment are allowed there")

    def data_values(self, name: str, size: int, text: str) -> None:
        self.refuse_data_in_bss(name)
        for part in split_commas(tokenize(text)):
            if any(token.kind == "string" for token in part):
                raise SourceError(f"{name} does not take strings; use .ascii")
            expr = self.expression(part)
            try:
                value = evaluate(expr, KnownSoFar(self.program, self.sequence))
            except NotKnownYet:
                value = None
            if value is not None and value.is_absolute:
                self.section.append(Bytes(self.truncate(value.offset, size), self.line))
            else:
                self.section.append(DataValue(size, expr, self.line, self.sequence))

    def truncate(self, value: int, size: int) -> bytes:
        """Little-endian bytes; like GNU as, a constant too wide is truncated with a warning."""
        bits = 8 * size
        truncated = value & ((1 << bits) - 1)
        if not -(1 << bits) < value < (1 << bits):
            self.program.warnings.append((self.line, f"value {value & ((1 << 64) - 1):#x} truncated to {truncated:#x}"))
        return truncated.to_bytes(size, "little")

    def strings(self, name: str, text: str, terminate: bool) -> None:
        self.refuse_data_in_bss(name)
        parts = split_commas(tokenize(text))
        if not parts:
            raise SourceError(f"{name} needs a string")
        for part in parts:
            if len(part) != 1 or part[0].kind != "string":
                raise SourceError(f"{name} takes double-quoted strings")
            self.section.append(Bytes(part[0].value + (b"\0" if terminate else b""), self.line))

    def space(self, name: str, text: str) -> None:
        parts = split_commas(tokenize(text))
        if len(parts) not in (1, 2):
            raise SourceError(f"{name} takes a size and an optional fill byte")
        count = self.known_absolute(parts[0], f"the size of {name}")
        if count < 0:
            raise SourceError(f"{name} size {count} is negative")
        fill = self.known_absolute(parts[1], f"the fill value of {name}") if len(parts) == 2 else 0
        if fill and self.section.name == ".bss":
            raise SourceError(f"{name} with a non-zero fill value in .bss")
        self.section.append(Repeat(bytes([fill & 0xFF]), count, self.line))

    def fill(self, text: str) -> None:
        self.refuse_data_in_bss(".fill")
        parts = split_commas(tokenize(text))
        if not 1 <= len(parts) <= 3:
            raise SourceError(".fill takes REPEAT[, SIZE[, VALUE]]")
        repeat = self.known_absolute(parts[0], "the repeat count of .fill")
        size = self.known_absolute(parts[1], "the size of .fill") if len(parts) > 1 else 1
        value = self.known_absolute(parts[2], "the value of .fill") if len(parts) > 2 else 0
        if repeat < 0 or not 0 <= size <= 8:
            raise SourceError(".fill needs a non-negative repeat count and a size from 0 to 8")
        self.section.append(Repeat(self.truncate(value, size) if size else b"", repeat, self.line))

    def align(self, name: str, text: str) -> None:
        parts = split_commas(tokenize(text), allow_empty=True)
        if not 1 <= len(parts) <= 3 or not parts[0]:
            raise SourceError(f"{name} takes ALIGNMENT[, FILL[, MAX]]")
        amount = self.known_absolute(parts[0], f"the argument of {name}")
        if name == ".p2align":
            if not 0 <= amount <= 16:
                raise SourceError(f"{name} {amount} is out of range (0..16)")
            boundary = 1 << amount
        else:
            boundary = max(amount, 1)
            if boundary & (boundary - 1) or boundary > 1 << 16:
                raise SourceError(f"alignment {amount} is not a power of 2 up to 65536")
        fill = None
        if len(parts) > 1 and parts[1]:
            fill = self.known_absolute(parts[1], f"the fill value of {name}") & 0xFF
        max_skip = self.known_absolute(parts[2], f"the maximum skip of {name}") if len(parts) > 2 and parts[2] else None
        if fill and self.section.name == ".bss":
            raise SourceError(f"{name} with a non-zero fill value in .bss")
        self.section.alignment = max(self.section.alignment, boundary)
        if self.section.is_code:
            self.section.append(Align(boundary, fill, max_skip, self.line))
            return
        padding = -self.section.size % boundary
        if max_skip is not None and padding > max_skip:
            padding = 0
        self.section.append(Repeat(bytes([fill or 0]), padding, self.line))

    def check_globals(self) -> None:
        for name, line in self.program.globals.items():
            if name not in self.program.symbols:
                raise AssemblyError(self.program.filename, line, f"global symbol {shown(name)} is never defined")
