"""First pass: statements into sections of items, and a symbol table.

Everything whose size cannot change is settled here (strings, data values,
``.space``, alignment in the data sections, whose offsets never move).  What
depends on code layout (instruction sizes, alignment in .text, values of
labels) is left as items for the layout pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import AssemblyError, SourceError
from .expressions import Expr, Location, NotKnownYet, Token, Value, evaluate, parse_expression, split_commas, tokenize
from .operands import InstructionTemplate, parse_instruction
from .registers import is_register
from .source import Statement

SECTION_ORDER = (".text", ".rodata", ".data", ".bss")
_DATA_SIZES = {".byte": 1, ".word": 2, ".short": 2, ".value": 2, ".2byte": 2, ".long": 4, ".int": 4,
               ".4byte": 4, ".quad": 8, ".8byte": 8}
_STRINGS = {".ascii": False, ".asciz": True, ".string": True}
_LD_BSS_ALIGNMENT = 8  # GNU ld's default script ends .bss with ". = ALIGN(. != 0 ? 64 / 8 : 1)"
_IGNORED = {".intel_syntax", ".code64", ".type", ".size", ".file", ".ident"}


# ---- items ------------------------------------------------------------------------------------

@dataclass
class Bytes:
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class DataValue:
    """A data directive value that needs an address, filled in after layout."""
    size: int
    expr: Expr
    line: int
    sequence: int


@dataclass
class Align:
    """Alignment inside .text, where the padding depends on code layout."""
    boundary: int
    fill: int | None
    max_skip: int | None


@dataclass
class Instruction:
    line: int
    sequence: int
    source: str
    template: InstructionTemplate


Item = Bytes | DataValue | Align | Instruction


@dataclass
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
    return item.size if isinstance(item, (Bytes, DataValue)) else 0


# ---- symbols ----------------------------------------------------------------------------------

@dataclass
class Label:
    location: Location
    line: int


@dataclass
class Equate:
    """A `.equ`/`.set`/`=` symbol; `.set` may redefine it, so keep every definition in order."""
    definitions: list[tuple[int, Expr, int]] = field(default_factory=list)  # (sequence, expr, line)

    def definition_for(self, sequence: int, forward_allowed: bool) -> tuple[int, Expr, int] | None:
        earlier = [d for d in self.definitions if d[0] < sequence]
        if earlier:
            return earlier[-1]
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

class KnownSoFar:
    """What GNU as knows at one statement: symbols defined above it, offsets in non-code sections."""

    def __init__(self, program: Program, sequence: int) -> None:
        self.program = program
        self.sequence = sequence
        self.depth = 0

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
    """Evaluate an equate's expression as seen from its own definition point, guarding against loops."""
    sequence, expr, _ = definition
    if env.depth > 100:
        raise SourceError(f"symbol definition loop involving '{display_name(name)}'")
    saved = env.sequence
    env.sequence, env.depth = sequence, env.depth + 1
    try:
        return evaluate(expr, env)
    finally:
        env.sequence, env.depth = saved, env.depth - 1


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
    bss.append(Bytes(bytes(-bss.size % _LD_BSS_ALIGNMENT)))
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
            raise SourceError(f"symbol '{name}' is already defined (line {existing.line})")
        self.program.symbols[name] = Label(self.here, self.line)

    def assign(self, name: str, text: str) -> None:
        if name == ".":
            raise SourceError("assigning to '.' is not supported; use .space or .align")
        if is_register(name):
            raise SourceError(f"'{name}' is a register name and cannot be a symbol")
        expr = self.expression(tokenize(text))
        existing = self.program.symbols.setdefault(name, Equate())
        if isinstance(existing, Label):
            raise SourceError(f"symbol '{name}' is already defined as a label (line {existing.line})")
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
        else:
            raise SourceError(f"unknown directive '{name}'")

    def switch_section(self, name: str, rest: str) -> None:
        if rest:
            raise SourceError(f"subsections are not supported ('{name} {rest}')")
        canonical = next((s for s in SECTION_ORDER if name == s or name.startswith(s + ".")), None)
        if canonical is None:
            raise SourceError(f"unsupported section '{name}' (use .text, .rodata, .data or .bss)")
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
                self.section.append(Bytes(self.truncate(value.offset, size)))
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
            self.section.append(Bytes(part[0].value + (b"\0" if terminate else b"")))

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
        self.section.append(Bytes(bytes([fill & 0xFF]) * count))

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
        self.section.append(Bytes(self.truncate(value, size) * repeat if size else b""))

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
            self.section.append(Align(boundary, fill, max_skip))
            return
        padding = -self.section.size % boundary
        if max_skip is not None and padding > max_skip:
            padding = 0
        self.section.append(Bytes(bytes([fill or 0]) * padding))

    def check_globals(self) -> None:
        for name, line in self.program.globals.items():
            if name not in self.program.symbols:
                raise AssemblyError(self.program.filename, line, f"global symbol '{name}' is never defined")
