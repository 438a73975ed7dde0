"""`vmgames experiment prefault`: Dillon's example, the same program exec'd over and over.

The paper: running `ls` again and again, "all the pages that will be
accessed by the program will have to be faulted in every time the program
is run" unless the kernel maps the pages already in memory at exec, which
FreeBSD does; what is left are zero-fill faults, "not program code faults",
and zero-fill faults are cheaper when the page was zeroed while the machine
idled.  This runs userland/libc/rerun.c, which runs a program N times
(sleeping a millisecond before each, so the machine idles), with
pre-faulting (--prefault, and Linux's --fault-around beside it) and idle
pre-zeroing (--prezero) off and on, and counts each run's faults by kind
after its exec.
"""

from __future__ import annotations

import csv
import io
import shutil
import statistics
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from vmgames.kernel.vm import fault
from vmgames.kernel.vm.prefault import FAULT_AROUND, MAP
from vmgames.tools.boot import boot
from vmgames.tools.experiments.cells import journal_beside, run_cells
from vmgames.tools.experiments.programs import build_libc_program
from vmgames.tools.experiments.publish import columns, publish, save_figure

DEFAULT_RUNS = 8
PREZERO_POOL = 256
# name -> (how pages are mapped ahead of faults, --prezero)
SETTINGS = {"plain": (None, 0), "prefault": (MAP, 0), "fault-around": (FAULT_AROUND, 0),
            "prezero": (None, PREZERO_POOL), "prefault+prezero": (MAP, PREZERO_POOL)}
KINDS = (fault.FILE, fault.RESIDENT, fault.ZERO_FILL, fault.COW_COPY, fault.COW_MOVE)


def default_program() -> list[str]:
    """What to run again and again: busybox's echo if there is a busybox, as the paper's `ls` is a small
    program of the base system (busybox-static; .ci/run installs it)."""
    busybox = shutil.which("busybox")
    return [busybox, "echo", "hello"] if busybox else []


@dataclass
class Setting:
    name: str
    prefault: str | None
    prezero: int
    ok: bool = False
    per_run: list[Counter] = field(default_factory=list)   # after each exec: faults by kind, "prezeroed", "mapped"

    def mean(self, key: str, first: bool = False) -> float:
        """The mean of `key` over the runs after the first (the first reads the program in), or the first's."""
        runs = self.per_run[:1] if first else self.per_run[1:] or self.per_run
        return statistics.fmean(run[key] for run in runs) if runs else 0.0


def run_setting(rerun: str, program: list[str], runs: int, name: str) -> Setting:
    prefault, prezero = SETTINGS[name]
    setting = Setting(name, prefault, prezero)
    out = io.BytesIO()
    kernel = boot(64 << 20, root="/", stdout=out, stderr=out, prefault=prefault, prezero=prezero)
    counts: dict[int, Counter] = defaultdict(Counter)
    execs: list[int] = []

    def count(t: int, cpu: int, pid: int, type_: str, kind: str, fields: dict[str, Any]) -> None:
        if pid == 1:
            return          # rerun itself
        if type_ == "proc" and kind == "exec":
            execs.append(pid)
        elif type_ == "pte" and fields.get("reason") in ("prefault", "fault-around"):
            counts[pid]["mapped"] += 1          # exec maps them before it records the exec
        elif execs and pid == execs[-1]:
            if type_ == "fault":
                counts[pid][kind] += 1
            elif type_ == "page" and kind == "prezeroed":
                counts[pid]["prezeroed"] += 1

    kernel.recorder.sink = count
    kernel.spawn(kernel.fs.open_host(rerun), ["rerun", str(runs), *program], [])
    kernel.run()
    setting.ok = kernel.processes[1].shell_status == 0
    setting.per_run = [counts[pid] for pid in execs]
    return setting


def table(settings: list[Setting]) -> str:
    rows = [("runs exited 0", ["yes" if s.ok else "NO" for s in settings])]
    rows += [(f"{kind} faults, first run", [f"{s.mean(kind, first=True):.0f}" for s in settings])
             for kind in (fault.FILE, fault.RESIDENT)]
    rows += [(f"{kind} faults per later run", [f"{s.mean(kind):.1f}" for s in settings]) for kind in KINDS]
    rows += [("pages mapped ahead of faults per run", [f"{s.mean('mapped'):.1f}" for s in settings]),
             ("zero-fills served pre-zeroed per run", [f"{s.mean('prezeroed'):.1f}" for s in settings]),
             ("faults per later run", [f"{sum(s.mean(k) for k in KINDS):.1f}" for s in settings])]
    return columns([s.name for s in settings], rows)


def conclusion(settings: list[Setting]) -> list[str]:
    by = {s.name: s for s in settings}
    lines = ["Conclusion:"]
    plain, prefault, prezero = by.get("plain"), by.get("prefault"), by.get("prezero")
    if plain is not None and prefault is not None:
        before, after = plain.mean(fault.RESIDENT), prefault.mean(fault.RESIDENT)
        verdict = ("as the paper says, the pages in memory need not be faulted in every time" if after < before
                   else "no change here")
        lines.append(f"  pre-faulting cut the faults on the program's pages already in memory (resident faults) from "
                     f"{before:.1f} to {after:.1f} per run, mapping {prefault.mean('mapped'):.1f} pages at exec: "
                     f"{verdict}")
        zero = prefault.mean(fault.ZERO_FILL) + prefault.mean(fault.COW_COPY) + prefault.mean(fault.COW_MOVE)
        around = by.get("fault-around")
        if around is not None:
            lines.append(f"  Linux's fault-around left {around.mean(fault.RESIDENT):.1f} of them per run, mapping "
                         f"{around.mean('mapped'):.1f} pages around the faults it still took")
        lines.append(f"  what is left are zero-fill and copy-on-write faults ({zero:.1f} per run): the paper's "
                     "\"not program code faults\", which pre-faulting cannot remove (FreeBSD did not pre-copy on "
                     "exec)")
    if plain is not None and prezero is not None:
        share = prezero.mean("prezeroed") / max(prezero.mean(fault.ZERO_FILL), 1e-9)
        lines.append(f"  idle pre-zeroing served {share:.0%} of the zero-fill faults with a page zeroed while the "
                     "machine idled (v_ozfod), so those faults zeroed nothing")
    if not all(s.ok for s in settings):
        lines.append("  SOME RUNS FAILED: " + ", ".join(s.name for s in settings if not s.ok))
    return lines


def write_csv(settings: list[Setting], path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["setting", "run", *KINDS, "mapped_ahead", "prezeroed"])
        for s in settings:
            for n, run in enumerate(s.per_run, 1):
                writer.writerow([s.name, n, *(run[k] for k in KINDS), run["mapped"], run["prezeroed"]])


def write_plot(settings: list[Setting], directory: str) -> list[str]:
    """Faults per run by kind, stacked, for each setting: the first run beside the later ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 4.8))
    labels, bottoms = [], []
    positions = []
    for i, _ in enumerate(settings):
        for j, first in enumerate((True, False)):
            positions.append(i * 2.6 + j)
            labels.append("first run" if first else "later runs")
    for kind in KINDS:
        heights = [s.mean(kind, first=first) for s in settings for first in (True, False)]
        base = bottoms or [0.0] * len(heights)
        axes.bar(positions, heights, 0.9, bottom=base, label=kind)
        bottoms = [b + h for b, h in zip(base, heights, strict=True)]
    axes.set_xticks(positions, labels, fontsize="small")
    for i, s in enumerate(settings):     # each setting's name over its pair of bars
        axes.text(i * 2.6 + 0.5, max(bottoms[2 * i:2 * i + 2]) * 1.02, s.name, ha="center", va="bottom")
    axes.set_ylim(0, max(bottoms) * 1.12)
    axes.set_ylabel("faults per run")
    axes.set_title("The same program run again and again: faults per run by kind")
    axes.legend()
    figure.tight_layout()
    return save_figure(figure, directory, "prefault")


def main(runs: int, program: list[str], csv_path: str, plot_dir: str, jobs: int = 1, dask: str | None = None,
         resume: bool = False) -> int:
    with tempfile.TemporaryDirectory(prefix="vmgames-prefault-") as scratch:
        rerun = build_libc_program("rerun", scratch)
        if not program:
            program = [build_libc_program("pressure", scratch), "64", "50", "2"]
        with journal_beside(csv_path, {"program": program, "runs": runs}, resume) as journal:
            settings = run_cells(run_setting, [(rerun, program, runs, name) for name in SETTINGS], jobs,
                                 lambda cell: cell[3], dask, journal)
    publish(f"pre-faulting and pre-zeroing: {' '.join(program)}, run {runs} times (a millisecond of idling before "
            "each)", table(settings), conclusion(settings), lambda path: write_csv(settings, path), csv_path,
            lambda: write_plot(settings, plot_dir))
    return 0 if all(s.ok for s in settings) else 1
