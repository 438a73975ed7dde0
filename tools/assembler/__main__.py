"""``python -m tools.assembler IN -o OUT``: assemble one file (for testing without the vmgames CLI)."""

from __future__ import annotations

import argparse
import os
import sys

from . import AssemblyError, assemble_with_warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.assembler")
    parser.add_argument("source")
    parser.add_argument("-o", "--output", default="a.out")
    args = parser.parse_args(argv)
    with open(args.source, encoding="utf-8") as file:
        text = file.read()
    try:
        image, messages = assemble_with_warnings(text, args.source)
    except AssemblyError as error:
        print(error, file=sys.stderr)
        return 1
    for message in messages:
        print(message, file=sys.stderr)
    with open(args.output, "wb") as file:
        file.write(image)
    os.chmod(args.output, 0o755)
    return 0


if __name__ == "__main__":
    sys.exit(main())
