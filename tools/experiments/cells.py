"""Running an experiment's cells: one after another, side by side on this machine's cores, or on a cluster.

Each cell is a deterministic run on a fresh machine, so where and in what
order the cells run changes nothing but the time they take: the results come
back in the cells' own order, the same as one after another.  Side by side,
they run in a pool of worker processes (started by a fork server, so that no
thread of ours is forked), one cell per worker at a time; on a Dask cluster
(`--dask ADDRESS`, its scheduler's address) through the same interface, a
concurrent.futures executor: dask.distributed's, whose workers must have
vmgames installed and see the files the cells name (the programs, built in
a scratch directory: a shared filesystem).  A progress bar on a terminal
shows the cells done and the time left.

Each cell's result is saved the moment the cell finishes, in a journal
beside the CSV (NAME.csv.cells: a line per cell, its name and its result),
so that a sweep cut short (Ctrl-C, a lost node, a full disk) loses only the
cells that were running: `--resume` takes the finished ones from the journal
and runs the rest.  The journal's first line holds the settings the cells
were made with, and a resume with other settings is refused.
"""

from __future__ import annotations

import base64
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any

import orjson

MAX_JOBS = 256
DASK_CONNECT_SECONDS = 20


class ClusterError(Exception):
    """The Dask cluster cannot be used (dask.distributed missing, the scheduler not answering)."""


def jobs_problem(jobs: int) -> str | None:
    """What is wrong with a --jobs of `jobs`, for every command that runs cells; None if nothing."""
    return None if 1 <= jobs <= MAX_JOBS else f"--jobs is 1 to {MAX_JOBS}"


def default_jobs() -> int:
    """Every core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class ResumeError(Exception):
    """--resume cannot take up the journal: none there, or made with other settings."""


class Journal:
    """The finished cells of one sweep, saved one line each as they finish (at `path`).

    `settings` are what the cells depend on besides their own names (the
    experiment's options); with `resume`, the cells already in the journal
    are taken from it, else it starts empty.
    """

    def __init__(self, path: str, settings: dict[str, Any], resume: bool = False) -> None:
        self.path = path
        self.done: dict[str, Any] = {}
        header = orjson.dumps({"vmgames_cells": 1, "settings": settings}, option=orjson.OPT_SORT_KEYS)
        if resume:
            self.done, cut_short = self._read(header, settings)
            self._stream = open(path, "ab")
            if cut_short:
                self._stream.write(b"\n")     # after a line cut short, the next one starts afresh
        else:
            self._stream = open(path, "wb")
            self._stream.write(header + b"\n")
            self._stream.flush()

    def _read(self, header: bytes, settings: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The cells the journal holds, and whether its last line was cut short (no newline ends it)."""
        try:
            with open(self.path, "rb") as f:
                lines = f.read().split(b"\n")
        except FileNotFoundError:
            raise ResumeError(f"--resume: no journal of finished cells at {self.path} (run without --resume to "
                              "start afresh)") from None
        if not lines[0].startswith(b'{"settings"'):
            raise ResumeError(f"--resume: {self.path} is not a journal of finished cells (run without --resume to "
                              "start afresh)")
        if lines[0] != header:
            raise ResumeError(f"--resume: {self.path} holds cells made with other settings than {settings} "
                              "(run without --resume to start afresh)")
        done = {}
        for line in lines[1:]:
            try:
                entry = orjson.loads(line)
                done[entry["cell"]] = pickle.loads(base64.b64decode(entry["result"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, pickle.UnpicklingError, EOFError):
                continue     # a line cut short when the sweep was stopped: that cell runs again
        return done, lines[-1] != b""

    def record(self, name: str, result: Any) -> None:
        entry = {"cell": name, "result": base64.b64encode(pickle.dumps(result)).decode()}
        self._stream.write(orjson.dumps(entry) + b"\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()


JOURNAL_SUFFIX = ".cells"


@contextmanager
def journal_beside(csv_path: str | None, settings: dict[str, Any], resume: bool) -> Iterator[Journal | None]:
    """The journal of a sweep whose figures go to `csv_path` (CSV.cells beside it); None without a CSV."""
    if csv_path is None:
        yield None
        return
    journal = Journal(csv_path + JOURNAL_SUFFIX, settings, resume)
    try:
        yield journal
    finally:
        journal.close()


def run_cells(function: Callable[..., Any], cells: Sequence[tuple], jobs: int,
              describe: Callable[[tuple], str], dask: str | None = None, journal: Journal | None = None) -> list[Any]:
    """function(*cell) for every cell, `jobs` at a time here or on the Dask cluster whose scheduler is at
    `dask`; the results in the cells' order.  `describe(cell)` names a cell (uniquely): for the progress bar,
    and in the `journal`, which saves each result as it comes and gives those of cells it already has."""
    names = [describe(cell) for cell in cells]
    if len(set(names)) != len(names):
        raise ValueError("two cells have the same name")
    results: list[Any] = [None] * len(cells)
    waiting = []
    for index, name in enumerate(names):
        if journal is not None and name in journal.done:
            results[index] = journal.done[name]
        else:
            waiting.append(index)

    def finished(index: int, result: Any) -> None:
        results[index] = result
        if journal is not None:
            journal.record(names[index], result)
        advance(names[index])

    with _progress(len(cells), len(cells) - len(waiting)) as advance:
        if dask is None and (jobs <= 1 or len(waiting) <= 1):
            for index in waiting:
                finished(index, function(*cells[index]))
        elif waiting:
            with _executor(jobs, len(waiting), dask) as pool:
                futures = {pool.submit(function, *cells[index]): index for index in waiting}
                for future in as_completed(futures):
                    finished(futures[future], future.result())
    return results


@contextmanager
def _executor(jobs: int, cells: int, dask: str | None):
    """A concurrent.futures executor: a local pool of `jobs` processes, or a Dask cluster's."""
    if dask is None:
        # The workers leave Ctrl-C to this process, which stops them: left to wait for the cells running, a
        # pool interrupted mid-sweep could wait for ever (workers a SIGINT had reached were gone).
        pool = ProcessPoolExecutor(max_workers=min(jobs, cells), mp_context=multiprocessing.get_context("forkserver"),
                                   initializer=_ignore_interrupts)
        try:
            yield pool
        except BaseException:
            # Python 3.14's terminate_workers(); before it, the pool's own list of its processes.
            workers = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in workers:
                process.terminate()
            raise
        pool.shutdown()
        return
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("--dask needs dask.distributed: pip install 'dask[distributed]'") from None
    try:
        client = Client(dask, timeout=DASK_CONNECT_SECONDS)
    except (OSError, TimeoutError, ValueError) as error:
        raise ClusterError(f"--dask {dask}: no Dask scheduler answers there ({error})") from None
    with client:
        pool: Executor = client.get_executor(pure=False)
        yield pool


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _progress:
    """A rich progress bar on stderr when it is a terminal (cells done, time left); nothing otherwise."""

    def __init__(self, total: int, done: int = 0) -> None:
        self.total = total
        self.done = done      # cells finished before (--resume)
        self.bar = None

    def __enter__(self) -> Callable[[str], None]:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.bar.__enter__()
            task = self.bar.add_task("cells", total=self.total, completed=self.done)
            return lambda done: self.bar.update(task, advance=1, description=f"done: {done}")
        return lambda done: None

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
