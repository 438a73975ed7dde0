"""The one exception every user mistake becomes, always naming file and line."""

from __future__ import annotations


class AssemblyError(Exception):
    """A problem in the user's source; str() reads like GNU as: ``FILE:LINE: error: MESSAGE``."""

    def __init__(self, filename: str, line: int | None, message: str) -> None:
        self.filename = filename
        self.line = line
        self.message = message
        super().__init__(format_diagnostic(filename, line, "error", message))


class SourceError(Exception):
    """Raised deep inside parsing where the file and line are not known; re-raised as AssemblyError."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def format_diagnostic(filename: str, line: int | None, severity: str, message: str) -> str:
    where = filename if line is None else f"{filename}:{line}"
    return f"{where}: {severity}: {message}"
