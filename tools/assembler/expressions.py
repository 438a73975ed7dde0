"""Tokens and expressions as GNU as reads them (Intel syntax), and their values.

A value is either absolute or an offset into a section ("relocatable"), the
same distinction GNU as makes: a label minus a label in the same section is
absolute, a label plus a number is still relocatable, and multiplying a
label is an error.  Operator precedence follows GNU as, not C: ``* / % << >>``
bind tightest, then ``& | ^``, then ``+ -``.

Hostile text stays cheap: a number wider than 64 bits is an error (GNU as
truncates some and zeroes others), parentheses and unary operators nest at
most MAX_NESTING deep (GNU as 2.40 overflows its stack on 100000), and trees
are walked without recursion, so ``1+1+...+1`` may be as long as the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from .errors import SourceError, shown

# C requires compilers to take 63 levels of nested parentheses (C11 5.2.4.1); we take a little more.
# A level costs the parser at most four Python frames, well inside Python's limit of 1000.
MAX_NESTING = 100
MAX_TOKENS = 100_000  # in one statement: a long .byte list is fine, one the size of the host's memory is not
_MAX_NUMBER = (1 << 64) - 1
_MAX_DECIMAL_DIGITS = len(str(_MAX_NUMBER))

_ESCAPES = {"n": 10, "t": 9, "r": 13, "b": 8, "f": 12, "v": 11, "a": 7, "e": 27, "\\": 92, '"': 34, "'": 39}

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"[^"\\]*+(?:\\.[^"\\]*+)*+")  # possessive: no backtracking state per character
  | (?P<badstring>")
  | (?P<char>'(?:\\(?:[0-7]{1,3}|x[0-9A-Fa-f]+|.)|[^\\])'?)
  | (?P<hexh>[0-9][0-9A-Fa-f]*[hH](?![\w.$]))
  | (?P<hex>0[xX][0-9A-Fa-f]+(?![\w.$]))
  | (?P<bin>0[bB][01]+(?![\w.$]))
  | (?P<localref>[0-9]+[bf](?![\w.$]))
  | (?P<dec>[0-9]+(?![\w.$]))
  | (?P<name>[A-Za-z_.$][\w.$]*)
  | (?P<op><<|>>|[-+*/%&|^~()\[\],:])
""", re.VERBOSE)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "num", "name", "localref", "string", "op"
    text: str
    value: int | bytes | None = None


def tokenize(text: str) -> list[Token]:
    """Split operand or directive text into tokens; raises SourceError on a stray character."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if len(tokens) == MAX_TOKENS:
            raise SourceError(f"more than {MAX_TOKENS:,} tokens in one statement")
        match = _TOKEN.match(text, pos)
        if match is None:
            raise SourceError(f"unexpected character {text[pos]!r}")
        pos = match.end()
        kind = match.lastgroup
        lexeme = match.group()
        if kind == "space":
            continue
        if kind == "badstring":
            raise SourceError("unterminated string")
        if kind == "string":
            tokens.append(Token("string", lexeme, parse_string_literal(lexeme)))
        elif kind == "char":
            tokens.append(Token("num", lexeme, _char_value(lexeme)))
        elif kind == "hexh":
            tokens.append(Token("num", lexeme, _number(lexeme, lexeme[:-1], 16)))
        elif kind in ("hex", "bin"):
            tokens.append(Token("num", lexeme, _number(lexeme, lexeme[2:], 16 if kind == "hex" else 2)))
        elif kind == "dec":
            is_octal = len(lexeme) > 1 and lexeme[0] == "0"
            if is_octal and not set(lexeme) <= set("01234567"):
                raise SourceError(f"bad octal number {shown(lexeme)}")
            tokens.append(Token("num", lexeme, _number(lexeme, lexeme, 8 if is_octal else 10)))
        else:
            tokens.append(Token(kind, lexeme))
    return tokens


def _number(lexeme: str, digits: str, base: int) -> int:
    """The value of a literal, which must fit in 64 bits (unsigned: a minus sign is an operator)."""
    if base == 10 and len(digits.lstrip("0")) > _MAX_DECIMAL_DIGITS:
        value = None  # too long to be worth converting
    else:
        value = int(digits, base)
    if value is None or value > _MAX_NUMBER:
        raise SourceError(f"number {shown(lexeme)} does not fit in 64 bits")
    return value


def parse_string_literal(lexeme: str) -> bytes:
    """Decode a double-quoted string with GNU as escapes (\\n \\t \\\\ \\" \\0 octal \\x hex)."""
    body = lexeme[1:-1]
    if "\\" not in body and body.isascii():
        return body.encode("ascii")
    out = bytearray()
    i = 0
    while i < len(body):
        value, i = _decode_char(body, i)
        out.append(value)
    return bytes(out)


def _char_value(lexeme: str) -> int:
    value, _ = _decode_char(lexeme, 1)
    return value


def _decode_char(text: str, i: int) -> tuple[int, int]:
    """Decode one possibly escaped character at text[i]; returns (byte value, next index)."""
    if text[i] != "\\":
        code = ord(text[i])
        if code > 255:
            raise SourceError(f"character {text[i]!r} does not fit in a byte")
        return code, i + 1
    if i + 1 >= len(text):
        raise SourceError("backslash at end of string")
    nxt = text[i + 1]
    if nxt in "01234567":
        digits = re.match(r"[0-7]{1,3}", text[i + 1:]).group()
        return int(digits, 8) & 0xFF, i + 1 + len(digits)
    if nxt in "xX":
        digits = re.match(r"[0-9A-Fa-f]*", text[i + 2:]).group()
        if not digits:
            raise SourceError("\\x used with no following hex digits")
        return int(digits, 16) & 0xFF, i + 2 + len(digits)
    if nxt in _ESCAPES:
        return _ESCAPES[nxt], i + 2
    raise SourceError(f"unknown escape '\\{nxt}' in string")


# ---- expression trees -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Location:
    """A position in a section: the start of item number `index` (an index past the end is its end)."""
    section: str
    index: int


@dataclass(frozen=True, slots=True)
class Number:
    value: int


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str


@dataclass(frozen=True, slots=True)
class Here:
    location: Location


@dataclass(frozen=True, slots=True)
class Unary:
    op: str
    operand: Expr


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: Expr
    right: Expr


Expr = Number | Symbol | Here | Unary | Binary

_PRECEDENCE = {"+": 1, "-": 1, "&": 2, "|": 2, "^": 2, "*": 3, "/": 3, "%": 3, "<<": 3, ">>": 3}


class LocalLabels(Protocol):
    def reference(self, text: str) -> str: ...


def parse_expression(tokens: list[Token], here: Location, locals_: LocalLabels) -> Expr:
    """Parse a whole token list as one expression; `.` means `here`."""
    if not tokens:
        raise SourceError("missing expression")
    parser = _Parser(tokens, here, locals_)
    expr = parser.binary(1)
    if parser.pos != len(tokens):
        raise SourceError(f"junk {shown(tokens[parser.pos].text)} after expression")
    return expr


class _Parser:
    def __init__(self, tokens: list[Token], here: Location, locals_: LocalLabels) -> None:
        self.tokens = tokens
        self.pos = 0
        self.here = here
        self.locals = locals_
        self.nesting = 0

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def binary(self, min_precedence: int) -> Expr:
        left = self.unary()
        while True:
            token = self.peek()
            if token is None or token.kind != "op" or _PRECEDENCE.get(token.text, 0) < min_precedence:
                return left
            self.pos += 1
            right = self.binary(_PRECEDENCE[token.text] + 1)
            left = Binary(token.text, left, right)

    def unary(self) -> Expr:
        token = self.peek()
        if token is None:
            raise SourceError("expression ends too early")
        self.pos += 1
        if token.kind == "op" and token.text in "-+~(":
            return self.nested(token.text)
        if token.kind == "num":
            return Number(token.value)
        if token.kind == "name":
            return Here(self.here) if token.text == "." else Symbol(token.text)
        if token.kind == "localref":
            return Symbol(self.locals.reference(token.text))
        raise SourceError(f"unexpected {shown(token.text)} in expression")

    def nested(self, opener: str) -> Expr:
        """The operand of a unary operator, or a parenthesized expression: one level deeper."""
        if self.nesting == MAX_NESTING:
            raise SourceError(f"expression nested too deeply (more than {MAX_NESTING} levels of "
                              f"parentheses and unary operators)")
        self.nesting += 1
        if opener == "(":
            inner = self.binary(1)
            closing = self.peek()
            if closing is None or closing.text != ")":
                raise SourceError("missing ')' in expression")
            self.pos += 1
        else:
            inner = Unary(opener, self.unary())
        self.nesting -= 1
        return inner


# ---- values -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Value:
    """An absolute number (section None) or an offset from the start of a section."""
    section: str | None
    offset: int

    @property
    def is_absolute(self) -> bool:
        return self.section is None


class NotKnownYet(Exception):
    """The expression needs a symbol or location whose value is not known at this point."""


class Environment(Protocol):
    def symbol(self, name: str) -> Value: ...
    def location(self, location: Location) -> Value: ...


def evaluate(expr: Expr, env: Environment) -> Value:
    """Compute an expression's value; SourceError for nonsense, NotKnownYet if env cannot say yet.

    Walks the tree with a stack of its own (left operand first, as GNU as does), so a long
    chain of operators costs no Python recursion.
    """
    values: list[Value] = []
    pending: list[tuple[Expr, bool]] = [(expr, False)]
    while pending:
        node, operands_done = pending.pop()
        if isinstance(node, Number):
            values.append(Value(None, _wrap(node.value)))
        elif isinstance(node, Symbol):
            values.append(env.symbol(node.name))
        elif isinstance(node, Here):
            values.append(env.location(node.location))
        elif not operands_done:
            pending.append((node, True))
            if isinstance(node, Binary):
                pending += [(node.right, False), (node.left, False)]
            else:
                pending.append((node.operand, False))
        elif isinstance(node, Unary):
            values.append(_apply_unary(node.op, values.pop()))
        else:
            right = values.pop()
            values.append(_combine(node.op, values.pop(), right))
    return values.pop()


def _apply_unary(op: str, operand: Value) -> Value:
    if op == "+":
        return operand
    _require_absolute(operand, op)
    return Value(None, _wrap(-operand.offset if op == "-" else ~operand.offset))


def _combine(op: str, left: Value, right: Value) -> Value:
    if op == "+":
        if not left.is_absolute and not right.is_absolute:
            raise SourceError("cannot add two addresses")
        return Value(left.section or right.section, _wrap(left.offset + right.offset))
    if op == "-":
        if right.is_absolute:
            return Value(left.section, _wrap(left.offset - right.offset))
        if left.section != right.section:
            raise SourceError(f"cannot subtract an address in {right.section} from "
                              f"{'a number' if left.is_absolute else 'an address in ' + left.section}")
        return Value(None, _wrap(left.offset - right.offset))
    _require_absolute(left, op)
    _require_absolute(right, op)
    a, b = left.offset, right.offset
    if op in "/%" and b == 0:
        raise SourceError("division by zero")
    if op in ("<<", ">>") and b < 0:
        raise SourceError("negative shift count")
    result = {
        "*": lambda: a * b,
        "/": lambda: abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1),
        "%": lambda: abs(a) % abs(b) * (1 if a >= 0 else -1),
        "<<": lambda: a << min(b, 64),
        ">>": lambda: a >> min(b, 64),
        "&": lambda: a & b,
        "|": lambda: a | b,
        "^": lambda: a ^ b,
    }[op]()
    return Value(None, _wrap(result))


def _require_absolute(value: Value, op: str) -> None:
    if not value.is_absolute:
        raise SourceError(f"operator '{op}' cannot be applied to an address (in {value.section})")


def _wrap(value: int) -> int:
    """Keep arithmetic in 64 bits, as GNU as does, as a signed number."""
    return ((value + (1 << 63)) & ((1 << 64) - 1)) - (1 << 63)


def symbols_in(expr: Expr) -> set[str]:
    """Every symbol name an expression mentions."""
    names = set()
    pending = [expr]
    while pending:
        node = pending.pop()
        if isinstance(node, Symbol):
            names.add(node.name)
        elif isinstance(node, Unary):
            pending.append(node.operand)
        elif isinstance(node, Binary):
            pending += [node.left, node.right]
    return names


def split_commas(tokens: list[Token], allow_empty: bool = False) -> list[list[Token]]:
    """Split a token list at top-level commas (not inside brackets or parentheses)."""
    if not tokens:
        return []
    parts: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if token.kind == "op" and token.text in "([":
            depth += 1
        elif token.kind == "op" and token.text in ")]":
            depth -= 1
        if token.kind == "op" and token.text == "," and depth == 0:
            parts.append([])
        else:
            parts[-1].append(token)
    if not allow_empty and any(not part for part in parts):
        raise SourceError("missing operand")
    return parts
