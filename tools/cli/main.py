"""The entry point: which command, and the host's standard streams around it."""

from __future__ import annotations

import argparse
import bdb
import contextlib
import os
import sys

from vmgames.kernel import signals
from vmgames.tools.cli.asm import command_asm
from vmgames.tools.cli.calibrate import command_calibrate
from vmgames.tools.cli.experiment import command_experiment
from vmgames.tools.cli.output import say_error
from vmgames.tools.cli.parser import RUN_USAGE, build_parser
from vmgames.tools.cli.report import command_report
from vmgames.tools.cli.run import command_run
from vmgames.tools.cli.sweep import command_sweep


def main(argv: list[str] | None = None) -> int:
    closed = _hold_closed_standard_fds()
    try:
        return _main(sys.argv[1:] if argv is None else argv, closed)
    except KeyboardInterrupt:
        say_error("interrupted")
        return 130
    except bdb.BdbQuit:
        say_error("quit from the debugger (--break-on)")
        return 130
    except BrokenPipeError:
        return 128 + signals.SIGPIPE     # our stdout's reader has gone: what a shell reports for a C tool
    finally:
        _settle_standard_streams()


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line as the commands take it; exits (status 2, one line) if it is wrong."""
    parser, commands = build_parser()
    if argv and argv[0] == "run":
        return _parse_run(commands["run"], argv[1:])
    if argv and argv[0] == "asm":
        args = commands["asm"].parse_intermixed_args(argv[1:])
        args.command = "asm"
        return args
    return parser.parse_args(argv)


def _parse_run(run: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """vmgames run [OPTIONS] [--] PROG [ARGS...]: the options end at the first word that is not one of
    them or its value; everything after the program is the program's (but a -- right after it is dropped)."""
    # argparse knows which options take a value; it has no public way to say so.
    takes_value = {name for action in run._actions if action.nargs != 0 for name in action.option_strings}
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            index += 1
            break
        if not word.startswith("-") or word == "-":
            break
        index += 2 if word in takes_value else 1     # --name=value is one word: not in takes_value
    options, rest = argv[:index], argv[index:]
    if options[-1:] == ["--"]:
        options = options[:-1]
    if not rest:
        run.parse_args(options)   # --help, or a mistake in the options, is said here
        run.error(f"which program? (usage: {RUN_USAGE})")
    program, arguments = rest[0], rest[1:]
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    args = run.parse_args([*options, "--", program])
    args.command, args.args = "run", arguments
    return args


def _main(argv: list[str], closed_fds: frozenset[int]) -> int:
    args = parse_args(argv)
    if args.command == "asm":
        return command_asm(args)
    if args.command == "experiment":
        return command_experiment(args)
    if args.command == "report":
        return command_report(args)
    if args.command == "sweep":
        return command_sweep(args)
    if args.command == "calibrate":
        return command_calibrate(args)
    return command_run(args, closed_fds)


def _hold_closed_standard_fds() -> frozenset[int]:
    """The standard fds vmgames was started without (Python then has no sys.stdin, stdout or stderr).

    The guest gets them closed too.  Meanwhile /dev/null holds each free one, so that no file vmgames
    opens (a trace, the program) takes its number, and our own messages to a missing stderr go nowhere.
    """
    closed = frozenset(fd for fd, stream in enumerate((sys.stdin, sys.stdout, sys.stderr)) if stream is None)
    for fd in closed:
        try:
            os.fstat(fd)
        except OSError:
            placeholder = os.open(os.devnull, os.O_RDWR)
            if placeholder != fd:
                os.dup2(placeholder, fd)
                os.close(placeholder)
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")   # for as long as the process lives
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")
    return closed


def _settle_standard_streams() -> None:
    """Flush our stdout and stderr now; one that cannot be written (its reader gone, a full disk) is pointed
    at /dev/null, so that Python's own flush at exit neither prints 'Exception ignored' nor exits 120."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
