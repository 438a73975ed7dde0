"""Instruction text to a Keystone-ready template plus the fields we patch ourselves.

Keystone only ever sees numbers, never symbols.  Operands whose value is known
when GNU as would know it (absolute, defined earlier in the source) are
written in as numbers, so Keystone picks the same short forms GNU as picks.
Anything else (an address, a forward reference) gets a placeholder that forces
the 32-bit field GNU as uses for a relocation; layout patches the real value in
later.  Intel-syntax meaning follows GNU as: a bare symbol that is not a known
constant is a *memory* operand (``mov rcx, msg`` loads from msg), ``offset msg``
is its address, and ``[msg]`` without a base register is an absolute address
(disp32 through a SIB byte with no base, never rip-relative).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import SourceError, excerpt, shown
from .expressions import (
    Environment,
    Expr,
    LocalLabels,
    Location,
    NotKnownYet,
    Token,
    Value,
    evaluate,
    parse_expression,
    split_commas,
    tokenize,
)
from .registers import BRANCHES, PREFIXES, SEGMENT, SIZE_KEYWORDS, is_register

_MNEMONIC = re.compile(r"[a-z][a-z0-9]*(\.[a-z0-9]+)?")
_WORD = re.compile(r"\s*(\S+)\s*")
PLACEHOLDER = 0x7FFFFFFF
# Keystone encodes ``[rbp*2 + disp32]`` as ModRM rm=100 + SIB 0x6d; swapping that SIB for 0x25
# (no index, no base) gives the absolute disp32 form GNU as emits for ``[address]``.
ABSOLUTE_STAND_IN = "rbp*2"
STAND_IN_SIB = 0x6D
ABSOLUTE_SIB = 0x25
# Branch templates are assembled at BRANCH_BASE; the short form jumps to itself, the long form far away.
BRANCH_BASE = 0x10000000
FAR_TARGET = BRANCH_BASE + 0x10000000


@dataclass(frozen=True, slots=True)
class Fixup:
    """A field Keystone filled with a placeholder and we fill with an expression's value.

    kind: "imm" (immediate field), "disp" (absolute displacement), "rip" (pc-relative
    displacement) or "branch" (the rel8/rel32 at the end of a jump or call).
    """
    kind: str
    expr: Expr
    absolute_sib: bool = False
    bare_symbol: bool = False


@dataclass(frozen=True, slots=True)
class InstructionTemplate:
    texts: tuple[str, ...]  # one text, or (short form, long form) for a branch
    fixups: tuple[Fixup, ...] = field(default=())

    @property
    def is_branch(self) -> bool:
        return any(f.kind == "branch" for f in self.fixups)


def parse_instruction(text: str, here: Location, known: Environment, locals_: LocalLabels) -> InstructionTemplate:
    """Parse one instruction; `known` answers only what GNU as would know at this line."""
    prefixes: list[str] = []
    position = 0
    while True:
        word = _WORD.match(text, position)
        if word.group(1).lower() not in PREFIXES or word.end() == len(text):
            break
        prefixes.append(word.group(1).lower())
        position = word.end()
    mnemonic, operands = word.group(1).lower(), text[word.end():]
    if not _MNEMONIC.fullmatch(mnemonic):
        raise SourceError(f"bad instruction name {shown(word.group(1))}")
    operand_tokens = split_commas(tokenize(operands)) if operands else []
    head = " ".join(prefixes + [mnemonic])
    builder = _OperandBuilder(mnemonic, here, known, locals_)
    operand_texts = [builder.operand(tokens) for tokens in operand_tokens]
    if builder.branch_target is not None:
        texts = (f"{head} {BRANCH_BASE:#x}", f"{head} {FAR_TARGET:#x}")
    else:
        texts = (f"{head} {', '.join(operand_texts)}".strip(),)
    return InstructionTemplate(texts, tuple(builder.fixups))


def _number(value: int) -> str:
    return hex(value)


class _OperandBuilder:
    def __init__(self, mnemonic: str, here: Location, known: Environment, locals_: LocalLabels) -> None:
        self.mnemonic = mnemonic
        self.here = here
        self.known = known
        self.locals = locals_
        self.fixups: list[Fixup] = []
        self.branch_target: Expr | None = None

    def expression(self, tokens: list[Token]) -> Expr:
        return parse_expression(tokens, self.here, self.locals)

    def known_absolute(self, expr: Expr) -> int | None:
        """The value if GNU as would already know it as a plain number here, else None."""
        try:
            value: Value = evaluate(expr, self.known)
        except NotKnownYet:
            return None
        return value.offset if value.is_absolute else None

    def operand(self, tokens: list[Token]) -> str:
        size, tokens = self._size_prefix(tokens)
        segment = ""
        if len(tokens) > 2 and tokens[0].kind == "name" and tokens[0].text.lower() in SEGMENT \
                and tokens[1].text == ":":
            segment, tokens = tokens[0].text.lower() + ":", tokens[2:]
        if not tokens:
            raise SourceError("missing operand after size or segment")
        if tokens[0].kind == "name" and tokens[0].text.lower() == "offset":
            return size + self._immediate(self._strip_flat(tokens[1:]))
        if any(token.kind == "op" and token.text == "[" for token in tokens):
            return size + segment + self._memory(tokens)
        if tokens[0].kind == "name" and is_register(tokens[0].text):
            if tokens[0].text.lower() == "st" or len(tokens) == 1:
                return size + segment + "".join(token.text for token in tokens)
            raise SourceError(f"bad operand {shown(' '.join(token.text for token in tokens))}")
        expr = self.expression(tokens)
        if self.mnemonic in BRANCHES and not size and not segment:
            if self.branch_target is not None:
                raise SourceError("a branch takes one target")
            self.branch_target = expr
            self.fixups.append(Fixup("branch", expr))
            return ""
        value = self.known_absolute(expr)
        if value is not None and not segment:
            return size + _number(value)
        self.fixups.append(Fixup("disp", expr, absolute_sib=True, bare_symbol=True))
        return f"{size}{segment}[{ABSOLUTE_STAND_IN} + {PLACEHOLDER:#x}]"

    @staticmethod
    def _size_prefix(tokens: list[Token]) -> tuple[str, list[Token]]:
        words = []
        for token in tokens:
            if token.kind != "name" or token.text.lower() not in SIZE_KEYWORDS | {"ptr"}:
                break
            words.append(token.text.lower())
        return (" ".join(words) + " " if words else ""), tokens[len(words):]

    @staticmethod
    def _strip_flat(tokens: list[Token]) -> list[Token]:
        if len(tokens) > 2 and tokens[0].text.upper() == "FLAT" and tokens[1].text == ":":
            return tokens[2:]
        return tokens

    def _immediate(self, tokens: list[Token]) -> str:
        if not tokens:
            raise SourceError("OFFSET needs an expression")
        expr = self.expression(tokens)
        value = self.known_absolute(expr)
        if value is not None:
            return _number(value)
        self.fixups.append(Fixup("imm", expr))
        return _number(PLACEHOLDER)

    def _memory(self, tokens: list[Token]) -> str:
        base, index, scale, disp_tokens = self._address_parts(tokens)
        disp = self.expression(disp_tokens) if disp_tokens else None
        if base is None and index is None:
            if disp is None:
                raise SourceError("empty memory operand")
            self.fixups.append(Fixup("disp", disp, absolute_sib=True))
            return f"[{ABSOLUTE_STAND_IN} + {PLACEHOLDER:#x}]"
        registers = " + ".join(filter(None, [base, f"{index}*{scale}" if index else None]))
        if disp is None:
            return f"[{registers}]"
        value = self.known_absolute(disp)
        if value is not None:
            return f"[{registers} {'-' if value < 0 else '+'} {abs(value):#x}]"
        self.fixups.append(Fixup("rip" if base == "rip" else "disp", disp))
        return f"[{registers} + {PLACEHOLDER:#x}]"

    def _address_parts(self, tokens: list[Token]) -> tuple[str | None, str | None, int, list[Token]]:
        """Split ``size ptr disp[base + index*scale + disp]`` into registers and displacement tokens."""
        outside: list[Token] = []
        inside: list[list[Token]] = []
        group: list[Token] | None = None
        for token in tokens:
            if token.kind == "op" and token.text == "[":
                if group is not None:
                    raise SourceError("nested '[' in memory operand")
                group = []
            elif token.kind == "op" and token.text == "]":
                if group is None:
                    raise SourceError("unbalanced ']' in memory operand")
                inside.append(group)
                group = None
            elif group is not None:
                group.append(token)
            else:
                outside.append(token)
        if group is not None:
            raise SourceError("missing ']' in memory operand")
        terms = _terms(outside) + [term for part in inside for term in _terms(part)]
        base = index = None
        scale = 1
        disp_tokens: list[Token] = []
        for sign, term in terms:
            register, term_scale = self._register_term(term)
            if register is None:
                disp_tokens += ([Token("op", sign)] if disp_tokens or sign == "-" else [])
                disp_tokens += [Token("op", "(")] + term + [Token("op", ")")]
                continue
            if sign == "-":
                raise SourceError(f"cannot subtract register {register}")
            if term_scale is None and base is None:
                base = register
            elif index is None:
                index, scale = register, term_scale or 1
            else:
                raise SourceError("too many registers in memory operand")
        if base == "rip" and index is not None or index == "rip":
            raise SourceError("rip cannot be combined with an index register")
        return base, index, scale, disp_tokens


    def _register_term(self, term: list[Token]) -> tuple[str | None, int | None]:
        """(register, scale) for ``reg``, ``reg*n`` or ``n*reg``; (None, None) for anything else."""
        positions = [i for i, t in enumerate(term) if t.kind == "name" and is_register(t.text)]
        if not positions:
            return None, None
        register = term[positions[0]].text.lower()
        if len(term) == 1:
            return register, None
        if len(positions) == 1 and positions[0] in (0, len(term) - 1) and len(term) > 2:
            star, rest = (term[1], term[2:]) if positions[0] == 0 else (term[-2], term[:-2])
            scale = self.known_absolute(self.expression(rest)) if star.text == "*" else None
            if scale in (1, 2, 4, 8):
                return register, scale
            if star.text == "*":
                raise SourceError(f"scale factor {excerpt(' '.join(t.text for t in rest))} is not 1, 2, 4 or 8")
        raise SourceError(f"bad address expression {shown(' '.join(t.text for t in term))}")


def _terms(tokens: list[Token]) -> list[tuple[str, list[Token]]]:
    """Split at top-level binary + and - (the lowest precedence in GNU as expressions)."""
    terms: list[tuple[str, list[Token]]] = []
    sign = "+"
    current: list[Token] = []
    depth = 0
    for token in tokens:
        is_op = token.kind == "op"
        if is_op and token.text == "(":
            depth += 1
        elif is_op and token.text == ")":
            depth -= 1
        starts_term = not current or (current[-1].kind == "op" and current[-1].text not in ")")
        if is_op and token.text in "+-" and depth == 0 and not starts_term:
            terms.append((sign, current))
            sign, current = token.text, []
        elif is_op and token.text == "+" and not current:
            continue
        else:
            current.append(token)
    if current:
        terms.append((sign, current))
    elif tokens:
        raise SourceError("memory operand ends with an operator")
    return terms
