"""`vmgames experiment rmap`: unmapping a page many processes map, with and without a reverse map.

The paper: "every active page table entry in the system has a governing
pv_entry structure ... FreeBSD can simply iterate through those mappings
that are known to exist while Linux must check all page tables that might
contain a specific mapping to see if it does, which can achieve O(n^2)
overhead in certain situations."  This runs userland/libc/sharers.c (N
children map the parent's shared pages, then the parent alone fills more
than RAM) with the pageout daemon finding each page's PTEs through its pv
entries and, as the alternative, by probing every PTE of every address
space (`--rmap scan`, kernel/vm/pmap.py's remove_all_by_scan), and counts
the PTEs each unmapping probed.  (The accessed bits are read through the pv
entries either way: only the unmapping is compared.)
"""

from __future__ import annotations

import csv
import io
import tempfile
from dataclasses import dataclass
from typing import Any

from vmgames.kernel.vm.pageout import PV, RMAPS, SCAN
from vmgames.tools.boot import boot
from vmgames.tools.experiments.cells import journal_beside, run_cells
from vmgames.tools.experiments.programs import build_libc_program
from vmgames.tools.experiments.publish import columns, publish, save_figure

DEFAULT_SHARERS = (1, 4, 16, 32)
RAM = 4 << 20
SWAP = 64 << 20
SHARED_PAGES = 64
PRIVATE_PAGES = 1500     # more than RAM's 1,023 frames: the daemon must take pages


@dataclass
class RmapRun:
    sharers: int
    rmap: str
    ok: bool = False
    shared_unmaps: int = 0      # unmappings of a page mapped more than once
    shared_mappings: int = 0    # the PTEs those removed
    shared_probes: int = 0      # the PTEs read to find them
    single_unmaps: int = 0
    single_probes: int = 0

    @property
    def probes(self) -> int:
        return self.shared_probes + self.single_probes

    def per_shared_unmap(self) -> float:
        return self.shared_probes / self.shared_unmaps if self.shared_unmaps else 0.0

    def per_single_unmap(self) -> float:
        return self.single_probes / self.single_unmaps if self.single_unmaps else 0.0


def run_one(program: str, sharers: int, rmap: str) -> RmapRun:
    run = RmapRun(sharers, rmap)
    out = io.BytesIO()
    kernel = boot(RAM, root="/", stdout=out, stderr=out, swap=SWAP, rmap=rmap, max_procs=sharers + 8)

    def count(t: int, cpu: int, pid: int, type_: str, kind: str, fields: dict[str, Any]) -> None:
        if type_ == "pageout" and kind == "unmap":
            if fields["mappings"] > 1:
                run.shared_unmaps += 1
                run.shared_mappings += fields["mappings"]
                run.shared_probes += fields["probes"]
            else:
                run.single_unmaps += 1
                run.single_probes += fields["probes"]

    kernel.recorder.sink = count
    kernel.spawn(kernel.fs.open_host(program), ["sharers", str(sharers), str(SHARED_PAGES), str(PRIVATE_PAGES)], [])
    kernel.run()
    run.ok = kernel.processes[1].shell_status == 0 and out.getvalue().endswith(b": ok\n")
    return run


def table(runs: list[RmapRun]) -> str:
    names = [f"{r.sharers} {r.rmap}" for r in runs]
    rows = [("read back right", ["yes" if r.ok else "NO" for r in runs]),
            ("unmaps of shared pages", [f"{r.shared_unmaps:,}" for r in runs]),
            ("  PTEs they removed, per unmap", [f"{r.shared_mappings / max(r.shared_unmaps, 1):.1f}" for r in runs]),
            ("  PTEs probed, per unmap", [f"{r.per_shared_unmap():,.1f}" for r in runs]),
            ("unmaps of pages mapped once", [f"{r.single_unmaps:,}" for r in runs]),
            ("  PTEs probed, per unmap", [f"{r.per_single_unmap():,.1f}" for r in runs]),
            ("PTEs probed in all", [f"{r.probes:,}" for r in runs])]
    return columns(names, rows, 11)


def conclusion(runs: list[RmapRun]) -> list[str]:
    by = {(r.sharers, r.rmap): r for r in runs}
    counts = sorted({r.sharers for r in runs})
    lines = ["Conclusion:"]
    for n in counts:
        pv, scan = by.get((n, PV)), by.get((n, SCAN))
        if pv is not None and scan is not None and pv.probes:
            lines.append(f"  {n} sharer{'s' * (n != 1)}: pv entries probed {pv.per_shared_unmap():.1f} PTEs per "
                         f"unmap of a shared page (exactly its mappings), the scan {scan.per_shared_unmap():,.0f} "
                         f"(every PTE of every process); {scan.probes / pv.probes:,.0f}x the PTEs in all")
    first, last = counts[0], counts[-1]
    pv_first, scan_first, pv_last, scan_last = (by.get((n, r)) for n in (first, last) for r in (PV, SCAN))
    if None not in (pv_first, pv_last, scan_first, scan_last) and first != last and pv_first.probes:
        lines.append(f"  from {first} to {last} sharers, an unmapping of a shared page probed "
                     f"{pv_first.per_shared_unmap():.0f} to {pv_last.per_shared_unmap():.0f} PTEs with pv entries "
                     f"(its mappings, and nothing else) and {scan_first.per_shared_unmap():,.0f} to "
                     f"{scan_last.per_shared_unmap():,.0f} by the scan (every PTE of every process, shared or not): "
                     "the paper's point, the reverse map pays for the mappings that exist, the scan for every "
                     "mapping in the system")
    if not all(r.ok for r in runs):
        lines.append("  SOME RUNS READ BACK WRONG DATA: "
                     + ", ".join(f"{r.sharers} {r.rmap}" for r in runs if not r.ok))
    return lines


def write_csv(runs: list[RmapRun], path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["sharers", "rmap", "ok", "shared_unmaps", "shared_mappings", "shared_probes",
                         "single_unmaps", "single_probes"])
        for r in runs:
            writer.writerow([r.sharers, r.rmap, r.ok, r.shared_unmaps, r.shared_mappings, r.shared_probes,
                             r.single_unmaps, r.single_probes])


def write_plot(runs: list[RmapRun], directory: str) -> list[str]:
    """PTEs probed per unmap of a shared page, and in all, against the number of sharers (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (per_unmap, total) = plt.subplots(1, 2, figsize=(12, 4.5))
    for rmap in RMAPS:
        mine = sorted((r for r in runs if r.rmap == rmap), key=lambda r: r.sharers)
        if not mine:
            continue
        label = "pv entries" if rmap == PV else "scan every page table"
        per_unmap.plot([r.sharers for r in mine], [r.per_shared_unmap() for r in mine], marker="o", label=label)
        total.plot([r.sharers for r in mine], [r.probes for r in mine], marker="o", label=label)
    for axes, title in ((per_unmap, "PTEs probed per unmap of a shared page"), (total, "PTEs probed in all")):
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xlabel("processes sharing the pages (children)")
        axes.set_title(title)
        axes.legend()
    figure.tight_layout()
    return save_figure(figure, directory, "rmap")


def main(sharer_counts: list[int], csv_path: str, plot_dir: str, jobs: int = 1, dask: str | None = None,
         resume: bool = False) -> int:
    with tempfile.TemporaryDirectory(prefix="vmgames-rmap-") as scratch:
        program = build_libc_program("sharers", scratch)
        cells = [(program, sharers, rmap) for sharers in sharer_counts for rmap in RMAPS]
        with journal_beside(csv_path, {}, resume) as journal:
            runs = run_cells(run_one, cells, jobs, lambda cell: f"{cell[1]} sharers, {cell[2]}", dask, journal)
    publish(f"reverse maps: build/sharers N {SHARED_PAGES} {PRIVATE_PAGES} in {RAM >> 20} MiB of RAM and "
            f"{SWAP >> 20} MiB of swap, the pageout daemon finding PTEs by pv entries and by scanning", table(runs),
            conclusion(runs), lambda path: write_csv(runs, path), csv_path, lambda: write_plot(runs, plot_dir))
    return 0 if all(r.ok for r in runs) else 1
