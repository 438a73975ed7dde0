"""vmgames sweep: a spec's grid run point by point (tools/sweep.py), the rows written to a CSV."""

from __future__ import annotations

import argparse
import os

from vmgames.tools import sweep
from vmgames.tools.cli.output import say_error, unwritable_file
from vmgames.tools.experiments.cells import ClusterError, ResumeError, jobs_problem

SUMMARY_COLUMNS = ("status", "instructions", "faults.total", "tlb.invalidate_page", "tlb.shootdowns")


def command_sweep(args: argparse.Namespace) -> int:
    problem = jobs_problem(args.jobs)
    if problem:
        say_error(problem)
        return 2
    try:
        spec = sweep.load(args.spec)
    except sweep.SpecError as error:
        say_error(str(error))
        return 2
    csv_path = args.csv or os.path.splitext(os.path.basename(args.spec))[0] + ".csv"
    problem = unwritable_file(csv_path)
    if problem:
        say_error(f"--csv {csv_path}: {problem}")
        return 2
    try:
        rows = sweep.run(spec, csv_path, args.jobs, args.dask, args.resume)
    except (ClusterError, ResumeError) as error:
        say_error(str(error))
        return 1
    except OSError as error:
        say_error(f"{error.filename or csv_path}: {error.strerror or error}")
        return 1
    print(_summary(rows, list(spec.grid)))
    print(f"{len(rows)} run{'s' if len(rows) != 1 else ''} written to {csv_path}")
    if sweep.write_parquet(rows, sweep.parquet_path(csv_path)):
        print(f"and to {sweep.parquet_path(csv_path)}")
    return 0


def _summary(rows: list[dict], grid: list[str]) -> str:
    """A few headline figures per run, one line each: the grid's values first."""
    names = [*grid, *(name for name in SUMMARY_COLUMNS if name in rows[0])]
    table = [names] + [[_text(row.get(name)) for name in names] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(names))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in table)


def _text(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)
