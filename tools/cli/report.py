"""vmgames report: a trace summarised in tables, and optionally CSV, plots and a Perfetto trace."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from vmgames.tools.cli.output import make_directory, say_error, unwritable_file

REPORT_WIDTH = 140   # the events table: type, kind, total, 8 pids and the rest


T = TypeVar("T")


def _with_progress(what: str, path: str, work: Callable[[Callable[[int], None] | None], T]) -> T:
    """work(progress): a pass over the trace at `path`, with a progress bar when stderr is a terminal and it is big."""
    from rich.console import Console
    from rich.progress import Progress

    size = os.path.getsize(path)
    if not sys.stderr.isatty() or size <= (4 << 20):
        return work(None)
    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(what, total=size)
        return work(lambda done: bar.update(task, completed=done))


def command_report(args: argparse.Namespace) -> int:
    from rich.console import Console
    from vmgames.tools import report

    if args.top < 0:
        say_error("--top must not be negative")
        return 2
    # Outputs are checked before the trace is read: a bad path costs no wait.
    for option, directory in (("--csv", args.csv), ("--plots", args.plots)):
        problem = make_directory(directory) if directory is not None else None
        if problem:
            say_error(f"{option} {directory}: {problem}")
            return 2
    problem = unwritable_file(args.perfetto) if args.perfetto is not None else None
    if problem:
        say_error(f"--perfetto {args.perfetto}: {problem}")
        return 2
    try:
        summary = _with_progress("reading the trace", args.trace,
                                 lambda progress: report.summarise(args.trace, progress))
    except OSError as error:
        say_error(f"{args.trace}: {error.strerror}")
        return 2
    except report.TraceError as error:
        say_error(str(error))
        return 2
    describe = report.disassembler(report.program_path(summary.header))
    # Written to a file or a pipe, the tables get room for every column rich would otherwise cut to 80.
    report.render(summary, describe, args.top, Console() if sys.stdout.isatty() else Console(width=REPORT_WIDTH))
    try:
        if args.csv is not None:
            for path in report.write_csv(summary, args.csv, describe):
                print(f"wrote {path}")
        if args.plots is not None:
            from vmgames.tools.plots import write_plots

            for path in write_plots(summary, args.plots):
                print(f"wrote {path}")
    except OSError as error:
        say_error(f"{error.filename or 'output'}: {error.strerror}")
        return 2
    if args.perfetto is not None:
        from vmgames.tools import perfetto

        try:
            with open(args.perfetto, "wb", buffering=1 << 20) as out:
                count = _with_progress("writing the Perfetto trace", args.trace,
                                       lambda progress: perfetto.convert(args.trace, out, progress))
        except OSError as error:
            say_error(f"{args.perfetto}: {error.strerror}")
            return 2
        print(f"wrote {args.perfetto} ({count:,} trace events; open it in ui.perfetto.dev)")
    return 0
