"""What the commands say on stderr, and the checks of output paths made before any work."""

from __future__ import annotations

import os
import sys


def say(text: str) -> None:
    """Tell the user, on stderr; a stderr that cannot be written loses the message, it does not end the run."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def say_error(message: str) -> None:
    say(f"vmgames: {message}")


def unwritable_file(path: str) -> str | None:
    """Why `path` could not be written, as far as can be told without writing it; None if it could."""
    if os.path.isdir(path):
        return "Is a directory"
    directory = os.path.dirname(path) or "."
    if not os.path.exists(directory):
        return "No such file or directory"
    if not os.path.isdir(directory):
        return "Not a directory"
    if not os.access(path if os.path.exists(path) else directory, os.W_OK):
        return "Permission denied"
    return None


def make_directory(path: str) -> str | None:
    """Make the output directory `path` (and its parents); why it could not be, or None."""
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        return "Not a directory"
    except OSError as error:
        return error.strerror
    return None
