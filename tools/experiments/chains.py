"""`vmgames experiment chains`: how deep do shadow chains get under cascades of forks?

Dillon's paper says that with collapse (and the all-shadowed bypass) chains
"tend to not get much deeper than 4".  This runs userland/cascade.s (parents
and children both forking, random writes, seeded) with collapse on and off,
and measures the chain depth seen by every page fault and the dead pages:
pages held by objects that no mapping can reach any more, because every path
to them is shadowed.
"""

from __future__ import annotations

import csv
import io
import os
import statistics
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from vmgames.kernel.kernel import Kernel
from vmgames.kernel.proc import ZOMBIE
from vmgames.tools.assembler import assemble
from vmgames.tools.boot import boot
from vmgames.tools.experiments.cells import journal_beside, run_cells

CASCADE_SOURCE = os.path.join(os.path.dirname(__file__), "..", "..", "userland", "cascade.s")


@dataclass
class ChainRun:
    seed: int
    collapse: bool
    processes: int = 0
    faults: int = 0
    depths: Counter = field(default_factory=Counter)
    dead_pages_peak: int = 0
    shadows: int = 0
    collapses: int = 0
    bypasses: int = 0

    @property
    def max_depth(self) -> int:
        return max(self.depths, default=0)

    @property
    def mean_depth(self) -> float:
        total = sum(self.depths.values())
        return sum(d * n for d, n in self.depths.items()) / total if total else 0.0


def dead_pages(kernel: Kernel) -> int:
    """Pages in the objects of live processes that no map entry can reach."""
    held: set[tuple[int, int]] = set()
    reachable: set[tuple[int, int]] = set()
    for proc in kernel.processes.values():
        if proc.state == ZOMBIE:
            continue
        for entry in proc.vmspace.map.entries:
            obj = entry.object
            while obj is not None:
                held.update((id(obj), p) for p in obj.pages)
                obj = obj.backing
            for index in range(entry.pindex(entry.start), entry.pindex(entry.end)):
                obj, at = entry.object, index
                while obj is not None and at not in obj.pages:
                    at += obj.backing_offset
                    obj = obj.backing
                if obj is not None:
                    reachable.add((id(obj), at))
    return len(held - reachable)


def run_cascade(program: str, seed: int, collapse: bool, steps: int, pages: int, max_depth: int) -> ChainRun:
    """One cascade on a fresh machine, observed through the event recorder."""
    result = ChainRun(seed, collapse)
    kernel = boot(256 << 20, root=os.path.dirname(program), stdout=io.BytesIO(), stderr=io.BytesIO(),
                  max_procs=1024, collapse=collapse)

    def sample_dead_pages(t: int, cpu: int, pid: int, type_: str, kind: str, fields: dict[str, Any]) -> None:
        if (type_, kind) == ("proc", "exit"):
            result.dead_pages_peak = max(result.dead_pages_peak, dead_pages(kernel))

    kernel.recorder.sink = sample_dead_pages
    kernel.spawn(kernel.fs.open_host(program), ["cascade", str(seed), str(steps), str(pages), str(max_depth)], [])
    kernel.run()
    recorder = kernel.recorder
    result.depths = Counter(recorder.fault_depths)
    result.processes = recorder.count("proc", "exit")
    result.faults = sum(result.depths.values())
    result.shadows = recorder.count("object", "shadow")
    result.collapses = recorder.count("object", "collapse")
    result.bypasses = recorder.count("object", "bypass")
    return result


PAPER_DEPTH = 4     # "tend to not get much deeper than 4"


@dataclass
class Depths:
    """The chain depths the faults of some runs walked, merged."""

    runs: list[ChainRun]
    counts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        for run in self.runs:
            self.counts.update(run.depths)

    @property
    def faults(self) -> int:
        return sum(self.counts.values())

    @property
    def deepest(self) -> int:
        return max(self.counts, default=0)

    @property
    def mean(self) -> float:
        return sum(d * n for d, n in self.counts.items()) / self.faults if self.faults else 0.0

    @property
    def p95(self) -> int:
        ordered = sorted(self.counts.elements())
        return ordered[int(0.95 * (len(ordered) - 1))] if ordered else 0

    @property
    def beyond_paper(self) -> float:
        """The fraction of faults that walked a chain deeper than the paper's 4."""
        return sum(n for d, n in self.counts.items() if d > PAPER_DEPTH) / max(self.faults, 1)

    @property
    def dead_pages(self) -> float:
        """The peak of dead pages, averaged over the runs."""
        return statistics.fmean(r.dead_pages_peak for r in self.runs) if self.runs else 0.0


def summary_rows(runs: list[ChainRun]) -> list[dict[str, Any]]:
    rows = []
    for collapse in (True, False):
        mine = [r for r in runs if r.collapse == collapse]
        depths = Depths(mine)
        rows.append({
            "collapse and bypass": "on" if collapse else "off",
            "runs": len(mine),
            "processes": sum(r.processes for r in mine),
            "faults": depths.faults,
            "mean depth": round(depths.mean, 2),
            "p95 depth": depths.p95,
            "max depth": depths.deepest,
            f"faults at depth > {PAPER_DEPTH}": f"{depths.beyond_paper:.1%}",
            "dead pages (peak, mean over runs)": round(depths.dead_pages, 1),
            "shadows": sum(r.shadows for r in mine),
            "collapses": sum(r.collapses for r in mine),
            "bypasses": sum(r.bypasses for r in mine),
        })
    return rows


def conclusion(runs: list[ChainRun]) -> list[str]:
    """Whether the chains stayed within the paper's 4 with collapse on, and what collapse changed: the lines
    that end the experiment, from its own figures."""
    on = Depths([r for r in runs if r.collapse])
    off = Depths([r for r in runs if not r.collapse])

    def figures(depths: Depths) -> str:
        return (f"deepest {depths.deepest}, mean {depths.mean:.2f}, p95 {depths.p95}, "
                f"{depths.beyond_paper:.1%} of {depths.faults:,} faults deeper than {PAPER_DEPTH}")

    lines = ["Conclusion:"]
    if on.runs:
        if not on.faults:
            lines.append("  with collapse and bypass on, no fault walked a shadow chain: nothing to judge")
        elif on.deepest <= PAPER_DEPTH:
            lines.append(f"  with collapse and bypass on, chains stayed within {PAPER_DEPTH}, as the paper says "
                         f"(\"not much deeper than {PAPER_DEPTH}\"): {figures(on)}")
        else:
            lines.append(f"  with collapse and bypass on, chains went deeper than {PAPER_DEPTH}, where the paper "
                         f"says they \"tend to not get much deeper than {PAPER_DEPTH}\": {figures(on)}")
    if off.runs and off.faults:
        lines.append(f"  with them off: {figures(off)}")
    if on.faults and off.faults:
        change = on.mean / off.mean - 1 if off.mean else 0.0
        lines.append(f"  collapse changed the mean depth by {change:+.0%} and the peak of dead pages from "
                     f"{off.dead_pages:.1f} to {on.dead_pages:.1f} (mean over runs)")
    return lines


def format_table(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    width = max(len(k) for k in keys)
    lines = [f"{'':<{width}}  " + "  ".join(f"{r['collapse and bypass']:>10}" for r in rows)]
    lines += [f"{k:<{width}}  " + "  ".join(f"{r[k]!s:>10}" for r in rows) for k in keys[1:]]
    return "\n".join(lines)


def main(seeds: int, steps: int, pages: int, max_depth: int, csv_path: str | None, jobs: int = 1,
         dask: str | None = None, resume: bool = False) -> int:
    with open(CASCADE_SOURCE, encoding="utf-8") as f:
        image = assemble(f.read(), "cascade.s")
    with tempfile.TemporaryDirectory(prefix="vmgames-chains-") as scratch:
        program = os.path.join(scratch, "cascade")
        with open(program, "wb") as f:
            f.write(image)
        cells = [(program, seed, collapse, steps, pages, max_depth)
                 for seed in range(1, seeds + 1) for collapse in (True, False)]
        settings = {"steps": steps, "pages": pages, "max_depth": max_depth}
        with journal_beside(csv_path, settings, resume) as journal:
            runs = run_cells(run_cascade, cells, jobs,
                             lambda cell: f"seed {cell[1]}, collapse {'on' if cell[2] else 'off'}", dask, journal)
    rows = summary_rows(runs)
    print(f"chain depth under fork cascades: {seeds} seeds, {steps} steps per process, {pages} pages, "
          f"process tree depth <= {max_depth}")
    print(format_table(rows))
    print("\n".join(conclusion(runs)))
    if csv_path:
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["seed", "collapse", "processes", "faults", "max_depth", "mean_depth",
                             "dead_pages_peak", "shadows", "collapses", "bypasses"])
            for r in runs:
                writer.writerow([r.seed, r.collapse, r.processes, r.faults, r.max_depth, round(r.mean_depth, 3),
                                 r.dead_pages_peak, r.shadows, r.collapses, r.bypasses])
        print(f"per-run figures written to {csv_path}")
    return 0
