"""`vmgames sweep SPEC.toml`: a user's own program over a grid of options and arguments, one run per point.

A spec names the program, its arguments, the options every run shares and
the grid whose every combination is one run:

    program = "build/pressure"          # relative to the current directory
    args = ["{pages}", "20", "10"]      # {name}: that grid value

    [options]                           # every run: vmgames run's options
    swap = "64M"

    [grid]                              # a run for every combination
    ram = ["6M", "8M", "12M"]
    pages = [1024, 2048]                # not an option: a parameter of args

Options are `vmgames run`'s, by their Python names or the command line's
(`page_used` or `page-used`), checked for every run before the first one
starts.  Each run is a call of the Python API (tools/api.py); its row holds
the grid's values, the exit status and every --stats-json figure, nested
names joined by dots (`faults.zero-fill`).  Runs go through the experiments'
cell runner (tools/experiments/cells.py): --jobs, --dask, the journal and
--resume are theirs.
"""

from __future__ import annotations

import csv
import itertools
import os
import string
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from vmgames.kernel.vmmeter import Recorder
from vmgames.tools import api, stats
from vmgames.tools.experiments.cells import journal_beside, run_cells

SPEC_KEYS = {"program", "args", "options", "grid"}
RUN_KEYWORDS = {"stdin", "env", "max_instructions", "timeout", "skip_invalidation"}    # api.run's, not boot's
FIRST_COLUMNS = ("status", "ended_by", "death")


class SpecError(Exception):
    """The spec cannot be run as written; the message says where."""


@dataclass
class Spec:
    program: str
    args: list[str]
    options: dict[str, Any]
    grid: dict[str, list[Any]]

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values, the first name varying slowest."""
        names = list(self.grid)
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*self.grid.values())]

    def settings(self) -> dict[str, Any]:
        """What every run shares: a resumed sweep must have the same."""
        return {"program": self.program, "args": self.args, "options": self.options}


def load(path: str) -> Spec:
    """Read and check a spec; SpecError says what is wrong with it."""
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as error:
        raise SpecError(f"{path}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: not a TOML file: {error}") from None
    unknown = sorted(set(table) - SPEC_KEYS)
    if unknown:
        raise SpecError(f"{path}: unknown key {', '.join(unknown)} (a spec has {', '.join(sorted(SPEC_KEYS))})")
    program, args = table.get("program"), table.get("args", [])
    if "program" not in table:
        raise SpecError(f"{path}: program = \"PATH\" is missing (the program to run)")
    if not isinstance(program, str) or not program:
        raise SpecError(f"{path}: program is the path of the program to run, a string, not {program!r}")
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise SpecError(f"{path}: args is a list of strings, like [\"{{pages}}\", \"20\"]")
    options, grid = table.get("options", {}), table.get("grid", {})
    if not isinstance(options, dict) or not isinstance(grid, dict):
        raise SpecError(f"{path}: [options] and [grid] are tables")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"{path}: grid.{name} is a list of one or more values")
        if not all(isinstance(value, str | int | float) for value in values):
            raise SpecError(f"{path}: grid.{name}: each value is a string, a number or true/false, not a list or "
                            "a table")
        if len({repr(value) for value in values}) != len(values):
            raise SpecError(f"{path}: grid.{name} gives a value twice")
        if _python_name(name) in RESULT_COLUMNS:
            raise SpecError(f"{path}: grid.{name}: each row has a column {_python_name(name)!r} already "
                            "(a run's figure): name the parameter otherwise")
    for table_name, table_of in (("options", options), ("grid", grid)):
        spellings = [_python_name(k) for k in table_of]
        twice = sorted({name for name in spellings if spellings.count(name) > 1})
        if twice:
            raise SpecError(f"{path}: [{table_name}] gives {twice[0]} twice (as - and as _)")
    options = {_python_name(k): v for k, v in options.items()}
    grid = {_python_name(k): v for k, v in grid.items()}
    both = sorted(set(options) & set(grid))
    if both:
        raise SpecError(f"{path}: {', '.join(both)} is both in [options] and in [grid]")
    spec = Spec(program, [str(a) for a in args], options, grid)
    _check(spec, path)
    return spec


def _python_name(name: str) -> str:
    return name.replace("-", "_")


def _placeholders(args: list[str]) -> set[str]:
    return {field for arg in args for _, field, _, _ in string.Formatter().parse(arg) if field is not None}


def _check(spec: Spec, path: str) -> None:
    """Every run's options as `vmgames run` would check them, before the first run starts."""
    if not (os.path.isfile(spec.program) and os.access(spec.program, os.X_OK)):
        raise SpecError(f"{path}: program {spec.program}: not an executable file")
    try:
        missing = sorted(_placeholders(spec.args) - set(spec.grid))
    except ValueError as error:
        raise SpecError(f"{path}: args: {error}") from None
    if missing:
        raise SpecError(f"{path}: args use {{{missing[0]}}}, which the grid does not give")
    known = api.OPTION_NAMES | RUN_KEYWORDS
    for name in [*spec.options, *spec.grid]:
        if name not in known and name not in _placeholders(spec.args):
            where = "grid" if name in spec.grid else "options"
            raise SpecError(f"{path}: {where}.{name} is no option of vmgames run (they are "
                            f"{', '.join(sorted(known))}){' and args do not use it' if where == 'grid' else ''}")
    for point in spec.points():
        try:
            api.check(**_run_options(spec, point))
        except api.OptionError as error:
            raise SpecError(f"{path}: {describe(point)}: {error}") from None


def _run_options(spec: Spec, point: dict[str, Any]) -> dict[str, Any]:
    """api.run's keyword arguments at one point of the grid (the grid names that are only parameters left out)."""
    options = dict(spec.options)
    options.update({name: value for name, value in point.items() if name in api.OPTION_NAMES | RUN_KEYWORDS})
    if isinstance(options.get("stdin"), str):
        options["stdin"] = options["stdin"].encode()
    return options


def describe(point: dict[str, Any]) -> str:
    """A point of the grid by its values ("ram=6M pages=1024"): its name in the progress bar and the journal."""
    return " ".join(f"{name}={value}" for name, value in point.items()) or "the one run"


def run_point(program: str, args: list[str], options: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """One run, as a row: the point's values, how it ended, and its counters flattened."""
    try:
        result = api.run(program, [arg.format(**point) for arg in args], **options)
    except api.CannotRun as error:
        return {**point, "status": error.status, "ended_by": None, "death": error.message}
    row = {**point, "status": result.status, "ended_by": result.ended_by, "death": result.death}
    counters = {k: v for k, v in result.counters.items() if k not in ("exit_status", "ended_by")}
    row.update(flatten(counters))
    return row


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested dicts and lists as (dotted name, value) pairs: {"faults": {"total": 3}} is ("faults.total", 3)."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        yield prefix, value
        return
    for key, item in items:
        yield from flatten(item, f"{prefix}.{key}" if prefix else str(key))


# A row's own columns, a grid parameter may not take their names: how the run ended, and --stats-json's names.
RESULT_COLUMNS = frozenset(("status", "ended_by", "death",
                            *(name for name, _ in flatten(stats.collect(Recorder(), None, 0)))))


def run(spec: Spec, csv_path: str, jobs: int, dask: str | None = None, resume: bool = False) -> list[dict[str, Any]]:
    """Every point of the grid run, the rows in the grid's order, written to `csv_path` (and beside it as
    Parquet when pyarrow is there)."""
    points = spec.points()
    cells = [(spec.program, spec.args, _run_options(spec, point), point) for point in points]
    with journal_beside(csv_path, spec.settings(), resume) as journal:
        rows = run_cells(run_point, cells, jobs, lambda cell: describe(cell[3]), dask, journal)
    write_csv(rows, csv_path)
    return rows


def columns_of(rows: list[dict[str, Any]]) -> list[str]:
    """Every column any row has, in the order they first appear."""
    return list(dict.fromkeys(name for row in rows for name in row))


def write_csv(rows: list[dict[str, Any]], path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns_of(rows))
        writer.writeheader()
        writer.writerows(rows)


def parquet_path(csv_path: str) -> str:
    return os.path.splitext(csv_path)[0] + ".parquet"


def write_parquet(rows: list[dict[str, Any]], path: str) -> bool:
    """The rows as a Parquet file, if pyarrow is installed; whether it was written.  A column whose values are
    of several kinds (a grid of 1 and "2") is written as text."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        return False
    names = columns_of(rows)
    mixed = {name for name in names
             if len({type(row.get(name)) for row in rows if row.get(name) is not None}) > 1}
    table = pyarrow.Table.from_pylist([{name: str(row[name]) if name in mixed and row.get(name) is not None
                                        else row.get(name) for name in names} for row in rows])
    pyarrow.parquet.write_table(table, path)
    return True
