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
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any

MAX_JOBS = 256
DASK_CONNECT_SECONDS = 20


class ClusterError(Exception):
    """The Dask cluster cannot be used (dask.distributed missing, the scheduler not answering)."""


def default_jobs() -> int:
    """Every core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_cells(function: Callable[..., Any], cells: Sequence[tuple], jobs: int,
              describe: Callable[[tuple], str], dask: str | None = None) -> list[Any]:
    """function(*cell) for every cell, `jobs` at a time here or on the Dask cluster whose scheduler is at
    `dask`; the results in the cells' order.  `describe(cell)` names a cell for the progress bar."""
    if dask is None and (jobs <= 1 or len(cells) <= 1):
        results = []
        with _progress(len(cells)) as advance:
            for cell in cells:
                results.append(function(*cell))
                advance(describe(cell))
        return results
    results: list[Any] = [None] * len(cells)
    with _executor(jobs, len(cells), dask) as pool:
        futures = {pool.submit(function, *cell): index for index, cell in enumerate(cells)}
        with _progress(len(cells)) as advance:
            for future in as_completed(futures):
                index = futures[future]
                results[index] = future.result()
                advance(describe(cells[index]))
    return results


@contextmanager
def _executor(jobs: int, cells: int, dask: str | None):
    """A concurrent.futures executor: a local pool of `jobs` processes, or a Dask cluster's."""
    if dask is None:
        with ProcessPoolExecutor(max_workers=min(jobs, cells),
                                 mp_context=multiprocessing.get_context("forkserver")) as pool:
            yield pool
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


class _progress:
    """A rich progress bar on stderr when it is a terminal (cells done, time left); nothing otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar = None

    def __enter__(self) -> Callable[[str], None]:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.bar.__enter__()
            task = self.bar.add_task("cells", total=self.total)
            return lambda done: self.bar.update(task, advance=1, description=f"done: {done}")
        return lambda done: None

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
