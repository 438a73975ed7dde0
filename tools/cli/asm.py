"""vmgames asm: Intel-syntax source to a static ELF64 executable (and the .s that vmgames run takes)."""

from __future__ import annotations

import argparse
import os

from vmgames.tools.cli.output import say, say_error, unwritable_file


def command_asm(args: argparse.Namespace) -> int:
    output = args.output or (args.source[:-2] if args.source.endswith(".s") else args.source + ".out")
    problem = unwritable_file(output)
    if problem:
        say_error(f"{output}: {problem}")
        return 1
    try:
        source = read_source(args.source)
    except OSError as error:
        say_error(f"{args.source}: {error.strerror}")
        return 1
    except UnicodeDecodeError:
        say_error(f"{args.source}: not a text file")
        return 1
    return assemble(source, args.source, output)


def read_source(path: str) -> str:
    """The assembly source at `path`, no more of it than the assembler takes (a bigger file is refused
    without being read whole); OSError if it cannot be read, UnicodeDecodeError if it is not text."""
    from vmgames.tools.assembler.source import MAX_SOURCE_SIZE

    with open(path, encoding="utf-8") as f:
        return f.read(MAX_SOURCE_SIZE + 1)


def assemble(source: str, source_path: str, output: str) -> int:
    """Assemble `source` into the executable `output`: 0, or 1 once the errors are said."""
    from vmgames.tools.assembler import AssemblyError, assemble_with_warnings

    try:
        image, warnings = assemble_with_warnings(source, source_path)
    except AssemblyError as error:
        say(str(error))
        return 1
    for warning in warnings:
        say(str(warning))
    try:
        with open(output, "wb") as f:
            f.write(image)
        os.chmod(output, 0o755)
    except OSError as error:
        say_error(f"{output}: {error.strerror}")
        return 1
    return 0
