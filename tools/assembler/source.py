"""Source text to statements: comments removed, lines split, labels separated.

Comment rules are GNU as's for x86 ELF: ``#`` to the end of the line anywhere,
``/`` as the first non-blank character of a line, and ``/* ... */`` blocks
(which may span lines).  ``;`` separates statements on one line.  Quotes are
respected so ``"#"`` and ``'#'`` are data, not comments.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

# What one source may hold; the assembler builds everything in the host's memory, a few hundred
# bytes for each statement, so these bound its memory and time for any input.
MAX_SOURCE_SIZE = 8 << 20  # characters
MAX_STATEMENTS = 500_000

_LABEL = re.compile(r"\s*([A-Za-z_.$][\w.$]*|[0-9]+)\s*:(?!:)")
_DIRECTIVE = re.compile(r"\s*(\.[A-Za-z_][\w.]*)(?:\s+|$)(.*)", re.DOTALL)
_ASSIGNMENT = re.compile(r"\s*([A-Za-z_.$][\w.$]*)\s*=(?!=)(.*)", re.DOTALL)
# After the opening quote: up to the closing one, or to the end of the line (the tokenizer reports that).
_STRING_REST = re.compile(r'[^"\\\n]*+(?:\\[^\n][^"\\\n]*+)*+\\?"?')
_ORDINARY = re.compile(r"""[^\n/#;"']+""")  # text with no line end, comment, separator or quote in it


@dataclass(frozen=True, slots=True)
class Statement:
    line: int
    kind: str  # "label", "directive", "assignment", "instruction"
    name: str  # label name, directive name (lower case), assigned symbol, or ""
    text: str  # directive arguments, assigned expression, or the whole instruction


class SourceTextError(Exception):
    """A problem with the text as a whole (an unterminated comment, its size), at `line` or in the whole file."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def statements(source: str) -> list[Statement]:
    """Split source into statements in order, each with its 1-based line number."""
    if len(source) > MAX_SOURCE_SIZE:
        raise SourceTextError(None, f"the source is more than {MAX_SOURCE_SIZE:,} characters long; the assembler "
                                    f"takes at most {MAX_SOURCE_SIZE >> 20} MiB")
    result: list[Statement] = []
    for line, text in _logical_statements(source):
        result.extend(_classify(line, text))
        if len(result) > MAX_STATEMENTS:
            raise SourceTextError(line, f"more than {MAX_STATEMENTS:,} statements (labels, directives and "
                                        f"instructions); the assembler takes no more")
    return result


def _logical_statements(source: str) -> Iterator[tuple[int, str]]:
    """Strip comments and split on newlines and ';', keeping line numbers."""
    line = 1
    current: list[str] = []
    at_line_start = True
    i = 0
    n = len(source)

    def flush() -> str:
        text = "".join(current).strip()
        current.clear()
        return text

    while i < n:
        ch = source[i]
        if ch == "\n":
            if text := flush():
                yield line, text
            line += 1
            at_line_start = True
            i += 1
            continue
        if ch == "/" and source.startswith("/*", i):
            end = source.find("*/", i + 2)
            if end < 0:
                raise SourceTextError(line, "unterminated /* comment")
            line_breaks = source.count("\n", i, end)
            if line_breaks:
                if text := flush():
                    yield line, text
                line += line_breaks
            i = end + 2
            current.append(" ")
            continue
        if ch == "#" or (ch == "/" and at_line_start):
            end = source.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch == ";":
            if text := flush():
                yield line, text
            i += 1
            continue
        if ch == '"':
            end = _string_end(source, i)
        elif ch == "'":
            end = _char_literal_end(source, i)
        elif ordinary := _ORDINARY.match(source, i):
            end = ordinary.end()
        else:
            end = i + 1  # a '/' that divides
        piece = source[i:end]
        if not piece.isspace():
            at_line_start = False
        current.append(piece)
        i = end
    if text := flush():
        yield line, text


def _string_end(source: str, start: int) -> int:
    return _STRING_REST.match(source, start + 1).end()


def _char_literal_end(source: str, start: int) -> int:
    i = start + 1
    if i < len(source) and source[i] == "\\":
        i += 2
    elif i < len(source) and source[i] != "\n":
        i += 1
    if i < len(source) and source[i] == "'":
        i += 1
    return min(i, len(source))


def _classify(line: int, text: str) -> list[Statement]:
    result = []
    position = 0
    while match := _LABEL.match(text, position):
        result.append(Statement(line, "label", match.group(1), ""))
        position = match.end()
    text = text[position:].strip()
    if not text:
        return result
    if directive := _DIRECTIVE.fullmatch(text):
        result.append(Statement(line, "directive", directive.group(1).lower(), directive.group(2).strip()))
    elif assignment := _ASSIGNMENT.fullmatch(text):
        result.append(Statement(line, "assignment", assignment.group(1), assignment.group(2).strip()))
    else:
        result.append(Statement(line, "instruction", "", text))
    return result
