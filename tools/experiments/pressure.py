"""`vmgames experiment pressure`: does choosing pages by their use history pay, as Dillon says it does?

The paper: "Selecting the optimal pages to free is possibly the single-most
important function any VM system can perform", and FreeBSD pays for a use
history (the accessed bit read and cleared, a counter per page) to choose
well.  This runs userland/libc/pressure.c, a working set larger than RAM
with a hot tenth written every round and cold pages drawn at random, under
three ways of telling used pages from unused (kernel/vm/pageout.py):

- accessed-bit: the paper's aging, A bits read and cleared through pv entries;
- unmap: the paper's page-used emulation, a fault for every look;
- fifo: no use history at all, the oldest page goes first;

and compares what each cost: swap-ins and swap-outs, faults, pages the daemon
examined, reactivations, accessed bits cleared and the TLB invalidations
that took, over virtual time too (resident set and swap used).
"""

from __future__ import annotations

import csv
import io
import tempfile
from dataclasses import dataclass, field
from typing import Any

from vmgames.kernel.vm.pageout import ACCESSED_BIT, FIFO, PAGE_USED, UNMAP
from vmgames.tools.boot import boot
from vmgames.tools.experiments.cells import journal_beside, run_cells
from vmgames.tools.experiments.programs import build_libc_program
from vmgames.tools.experiments.publish import columns, publish, save_figure

DEFAULT_RAM = 8 << 20
DEFAULT_SWAP = 64 << 20
DEFAULT_FACTORS = (1.25, 1.5, 2.0)     # working set / RAM
DEFAULT_HOT = 20                       # percent of the working set written every round
DEFAULT_ROUNDS = 50
SAMPLES = 200                          # points of the resident set and swap use over a run


@dataclass
class PressureRun:
    policy: str
    factor: float
    pages: int
    ok: bool = False
    killed: bool = False        # the out-of-memory killer ended it: RAM and swap were too small
    output: str = ""
    instructions: int = 0
    figures: dict[str, int] = field(default_factory=dict)
    # (t, frames in use, swap blocks used, swap-ins so far), sampled over the run
    timeline: list[tuple[int, int, int, int]] = field(default_factory=list)


def run_one(program: str, policy: str, factor: float, ram: int, swap: int, hot: int, rounds: int) -> PressureRun:
    """One run of the workload on a fresh machine, with the daemon told pages' use by `policy`."""
    out = io.BytesIO()
    kernel = boot(ram, root="/", stdout=out, stderr=out, swap=swap, page_used=policy)
    pages = int(factor * kernel.allocator.total)
    run = PressureRun(policy, factor, pages)
    allocator, pager, machine = kernel.allocator, kernel.vm.swap_pager, kernel.machine
    # Sample about SAMPLES times: the run's length is about (rounds + 2) passes over the working set.
    every = max(1, (rounds + 2) * pages * 3 // SAMPLES)
    seen = [0, 0]     # events, swap-ins

    def sample(t: int, cpu: int, pid: int, type_: str, kind: str, fields: dict[str, Any]) -> None:
        seen[0] += 1
        if type_ == "swap" and kind == "in":
            seen[1] += 1
        if seen[0] % every == 0:
            run.timeline.append((t, allocator.total - allocator.free_count, pager.used, seen[1]))

    kernel.recorder.sink = sample
    kernel.spawn(kernel.fs.open_host(program), ["pressure", str(pages), str(hot), str(rounds)], [])
    kernel.run()
    recorder = kernel.recorder
    run.output = out.getvalue().decode(errors="replace").strip()
    run.ok = run.output.endswith(": ok") and kernel.processes[1].shell_status == 0
    run.killed = recorder.count("proc", "oom-kill") > 0
    run.instructions = machine.retired
    run.figures = {
        "swap-ins": recorder.count("swap", "in"),
        "swap-outs (pages)": recorder.count("swap", "out"),
        "swap writes": recorder.count("swap", "write"),
        "faults": recorder.count("fault"),
        "resident faults": recorder.count("fault", "resident"),
        "pages examined": recorder.count("pageout", "scan"),
        "reactivations": recorder.count("page", "reactivate"),
        "accessed bits cleared": recorder.count_reason("pte", "write", "aging"),
        "pages unmapped": recorder.count_reason("pte", "write", "pageout"),
        "TLB invalidations": recorder.count("tlb", "invalidate-page") + recorder.count("tlb", "invalidate-all"),
        "daemon wakeups": recorder.count("pageout", "wakeup"),
        "swap peak": pager.peak,
    }
    return run


def table(runs: list[PressureRun]) -> str:
    """One column per run (policy at a working-set size), one row per figure."""
    names = [f"{r.policy} {r.factor:g}x" for r in runs]
    rows = [("working set (pages)", [f"{r.pages:,}" for r in runs]),
            ("read back right", ["yes" if r.ok else "killed: no memory" if r.killed else "NO" for r in runs]),
            ("instructions", [f"{r.instructions:,}" for r in runs])]
    rows += [(key, [f"{r.figures[key]:,}" for r in runs]) for key in runs[0].figures]
    return columns(names, rows, 12)


def conclusion(runs: list[PressureRun]) -> list[str]:
    """What the figures say of the paper's claim, size by size."""
    lines = ["Conclusion:"]
    by = {(r.policy, r.factor): r for r in runs if r.ok}     # a run that did not finish proves nothing
    for factor in dict.fromkeys(r.factor for r in runs):
        aging, fifo, unmap = (by.get((p, factor)) for p in (ACCESSED_BIT, FIFO, UNMAP))
        if aging is not None and fifo is not None:
            a, f = aging.figures["swap-ins"], fifo.figures["swap-ins"]
            verdict = ("fewer: choosing by use history pays, as the paper says" if a < f else
                       "no fewer: here the use history did not pay" )
            change = f"{a / f - 1:+.0%}" if f else "n/a"
            lines.append(f"  at {factor:g}x RAM, aging took {a:,} swap-ins against FIFO's {f:,} ({change}), "
                         f"{verdict}; its price: {aging.figures['accessed bits cleared']:,} accessed bits cleared, "
                         f"{aging.figures['pages examined']:,} pages examined")
        if aging is not None and unmap is not None:
            extra = unmap.figures["resident faults"] - aging.figures["resident faults"]
            u, a = unmap.figures["swap-ins"], aging.figures["swap-ins"]
            choice = "chose as well" if abs(u - a) <= a // 20 else "chose better" if u < a else "chose worse"
            lines.append(f"  at {factor:g}x RAM, page-used emulation {choice} ({u:,} swap-ins against the accessed "
                         f"bit's {a:,}: every touch after a look faults, so it sees them all) and paid {extra:+,} "
                         "resident faults for it")
    if len(lines) == 1:
        lines.append("  nothing to compare: the accessed bit against FIFO or page-used emulation, at the same size, "
                     "in runs that finished")
    killed = [f"{r.policy} {r.factor:g}x" for r in runs if r.killed]
    if killed:
        lines.append(f"  killed for want of memory (more --swap, or smaller --sizes): {', '.join(killed)}")
    wrong = [f"{r.policy} {r.factor:g}x" for r in runs if not r.ok and not r.killed]
    if wrong:
        lines.append(f"  SOME RUNS READ BACK WRONG DATA: {', '.join(wrong)}")
    return lines


def write_csv(runs: list[PressureRun], path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        keys = list(runs[0].figures)
        writer.writerow(["policy", "factor", "pages", "ok", "instructions", *keys])
        for r in runs:
            writer.writerow([r.policy, r.factor, r.pages, r.ok, r.instructions, *(r.figures[k] for k in keys)])


def write_plot(runs: list[PressureRun], directory: str) -> list[str]:
    """Swap-ins by policy and working-set size; resident set and swap use over time at the largest size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = list(dict.fromkeys(r.policy for r in runs))
    factors = list(dict.fromkeys(r.factor for r in runs))
    by = {(r.policy, r.factor): r for r in runs}
    figure, (bars, swapins, timeline) = plt.subplots(1, 3, figsize=(17, 4.8))
    width = 0.8 / len(policies)
    for i, policy in enumerate(policies):
        xs = [j + i * width for j in range(len(factors))]
        bars.bar(xs, [by[(policy, f)].figures["swap-ins"] for f in factors], width, label=policy)
    bars.set_xticks([j + width * (len(policies) - 1) / 2 for j in range(len(factors))],
                    [f"{f:g}x RAM" for f in factors])
    bars.set_ylabel("swap-ins (pages read back)")
    bars.set_title("Swap-ins by how the daemon tells used pages")
    bars.legend()
    largest = factors[-1]
    for policy in policies:
        points = by[(policy, largest)].timeline
        if points:
            ts = [t / 1e6 for t, _, _, _ in points]
            swapins.plot(ts, [n for _, _, _, n in points], label=policy)
            line, = timeline.plot(ts, [used for _, used, _, _ in points], label=f"{policy}: frames in use")
            timeline.plot(ts, [swapped for _, _, swapped, _ in points], linestyle="--", color=line.get_color(),
                          label=f"{policy}: swap blocks used")
    swapins.set_xlabel("virtual time (million instructions)")
    swapins.set_ylabel("swap-ins so far")
    swapins.set_title(f"Swap-ins over time at {largest:g}x RAM")
    swapins.legend()
    timeline.set_xlabel("virtual time (million instructions)")
    timeline.set_ylabel("pages")
    timeline.set_title(f"Resident set and swap use at {largest:g}x RAM")
    timeline.legend(fontsize="small")
    figure.tight_layout()
    return save_figure(figure, directory, "pressure")


def main(ram: int, swap: int, factors: list[float], policies: list[str], hot: int, rounds: int, csv_path: str,
         plot_dir: str, jobs: int = 1, dask: str | None = None, resume: bool = False) -> int:
    for policy in policies:
        if policy not in PAGE_USED:
            raise ValueError(policy)
    with tempfile.TemporaryDirectory(prefix="vmgames-pressure-") as scratch:
        program = build_libc_program("pressure", scratch)
        cells = [(program, policy, factor, ram, swap, hot, rounds) for factor in factors for policy in policies]
        settings = {"ram": ram, "swap": swap, "hot": hot, "rounds": rounds}
        with journal_beside(csv_path, settings, resume) as journal:
            runs = run_cells(run_one, cells, jobs, lambda cell: f"{cell[1]} at {cell[2]:g}x RAM", dask, journal)
    publish(f"memory pressure: build/pressure PAGES {hot} {rounds} in {ram >> 20} MiB of RAM and {swap >> 20} MiB "
            f"of swap ({hot}% of the working set hot)", table(runs), conclusion(runs),
            lambda path: write_csv(runs, path), csv_path, lambda: write_plot(runs, plot_dir))
    return 0 if all(r.ok for r in runs) else 1
