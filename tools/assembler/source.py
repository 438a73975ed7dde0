"""Source text to statements: comments removed, lines split, labels separated.

Comment rules are GNU as's for x86 ELF: ``#`` to the end of the line anywhere,
``/`` as the first non-blank character of a line, and ``/* ... */`` blocks
(which may span lines).  ``;`` separates statements on one line.  Quotes are
respected so ``"#"`` and ``'#'`` are data, not comments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LABEL = re.compile(r"\s*([A-Za-z_.$][\w.$]*|[0-9]+)\s*:(?!:)")
_DIRECTIVE = re.compile(r"\s*(\.[A-Za-z_][\w.]*)(?:\s+|$)(.*)", re.DOTALL)
_ASSIGNMENT = re.compile(r"\s*([A-Za-z_.$][\w.$]*)\s*=(?!=)(.*)", re.DOTALL)


@dataclass(frozen=True)
class Statement:
    line: int
    kind: str  # "label", "directive", "assignment", "instruction"
    name: str  # label name, directive name (lower case), assigned symbol, or ""
    text: str  # directive arguments, assigned expression, or the whole instruction


class UnterminatedComment(Exception):
    def __init__(self, line: int) -> None:
        super().__init__("unterminated /* comment")
        self.line = line


def statements(source: str) -> list[Statement]:
    """Split source into statements in order, each with its 1-based line number."""
    result: list[Statement] = []
    for line, text in _logical_statements(source):
        result.extend(_classify(line, text))
    return result


def _logical_statements(source: str) -> list[tuple[int, str]]:
    """Strip comments and split on newlines and ';', keeping line numbers."""
    pieces: list[tuple[int, str]] = []
    line = 1
    current: list[str] = []
    at_line_start = True
    i = 0
    n = len(source)

    def flush() -> None:
        text = "".join(current).strip()
        if text:
            pieces.append((line, text))
        current.clear()

    while i < n:
        ch = source[i]
        if ch == "\n":
            flush()
            line += 1
            at_line_start = True
            i += 1
            continue
        if ch == "/" and source.startswith("/*", i):
            end = source.find("*/", i + 2)
            if end < 0:
                raise UnterminatedComment(line)
            line_breaks = source.count("\n", i, end)
            if line_breaks:
                flush()
                line += line_breaks
            i = end + 2
            current.append(" ")
            continue
        if ch == "#" or (ch == "/" and at_line_start):
            while i < n and source[i] != "\n":
                i += 1
            continue
        if ch == ";":
            flush()
            i += 1
            continue
        if not ch.isspace():
            at_line_start = False
        if ch == '"':
            end = _string_end(source, i)
            current.append(source[i:end])
            i = end
            continue
        if ch == "'":
            end = _char_literal_end(source, i)
            current.append(source[i:end])
            i = end
            continue
        current.append(ch)
        i += 1
    flush()
    return pieces


def _string_end(source: str, start: int) -> int:
    i = start + 1
    while i < len(source) and source[i] != "\n":
        if source[i] == "\\":
            i += 2
            continue
        if source[i] == '"':
            return i + 1
        i += 1
    return min(i, len(source))  # unterminated: the tokenizer reports it


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
    while True:
        match = _LABEL.match(text)
        if not match:
            break
        result.append(Statement(line, "label", match.group(1), ""))
        text = text[match.end():]
    text = text.strip()
    if not text:
        return result
    if directive := _DIRECTIVE.fullmatch(text):
        result.append(Statement(line, "directive", directive.group(1).lower(), directive.group(2).strip()))
    elif assignment := _ASSIGNMENT.fullmatch(text):
        result.append(Statement(line, "assignment", assignment.group(1), assignment.group(2).strip()))
    else:
        result.append(Statement(line, "instruction", "", text))
    return result
