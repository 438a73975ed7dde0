"""The one exception every user mistake becomes, always naming file and line."""

from __future__ import annotations

_SHOWN_LENGTH = 60


class AssemblyError(Exception):
    """A problem in the user's source; str() reads like GNU as: ``FILE:LINE: error: MESSAGE``.

    The message is made printable (control characters escaped), so a hostile
    source cannot write terminal escape sequences through it.
    """

    def __init__(self, filename: str, line: int | None, message: str) -> None:
        self.filename = filename
        self.line = line
        self.message = printable(message)
        super().__init__(format_diagnostic(filename, line, "error", self.message))


class SourceError(Exception):
    """Raised deep inside parsing where the file and line are not known; re-raised as AssemblyError."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def format_diagnostic(filename: str, line: int | None, severity: str, message: str) -> str:
    where = filename if line is None else f"{filename}:{line}"
    return f"{where}: {severity}: {message}"


def printable(text: str) -> str:
    """`text` with every non-printable character written as a Python escape (``\\x1b``, ``\\x00``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def excerpt(text: str) -> str:
    """Source text for a message, cut short in the middle when long (a line may be 100 MB)."""
    if len(text) > _SHOWN_LENGTH:
        half = _SHOWN_LENGTH // 2
        text = f"{text[:half]}...{text[-half:]}"
    return printable(text)


def shown(text: str) -> str:
    """An excerpt of source text in quotes."""
    return f"'{excerpt(text)}'"
