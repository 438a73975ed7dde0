"""`vmgames experiment zerocopy`: copying sends, copy-on-write sends and vmsplice, measured.

The 2006 argument (Linus Torvalds against FreeBSD's zero-copy sockets): a
copy-on-write send saves a copy but pays an exception and two page-table
updates when the sender writes its buffer again, while vmsplice pays one
page-table walk and leaves the sender to promise not to touch the pages until
they are consumed.  This runs every workload of userland/c/zc_*.c under every
send mode and size to a slow wire, each on a fresh machine, and reports what
the kernel did per MiB delivered, what the receiver got against what was
meant, and an estimated cost from tools/costmodel.py.
"""

from __future__ import annotations

import csv
import io
import os
import shlex
import sys
import tempfile
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, fields

from vmgames.kernel.kernel import Kernel
from vmgames.kernel.observer import Observer
from vmgames.kernel.proc import Process
from vmgames.kernel.vm.fault import KINDS as FAULT_KINDS
from vmgames.kernel.vmmeter import Recorder
from vmgames.tools import costmodel, vmstat
from vmgames.tools.boot import boot
from vmgames.tools.costmodel import Costs, Work
from vmgames.tools.experiments.cells import Journal, journal_beside, run_cells
from vmgames.tools.experiments.programs import FREESTANDING_FLAGS, ExperimentError, build

REPOSITORY = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
USERLAND_C = os.path.join(REPOSITORY, "userland", "c")
BUILD = os.path.join(REPOSITORY, "build")     # where `make userland` puts the workloads, for the rerun commands

WORKLOADS = {
    "static": "one buffer, refilled and sent in a loop (vmsplice: refilled before the receiver has it)",
    "fresh": "a fresh mmap for every send, unmapped once sent",
    "pool": "a pool of buffers, reused once free (vmsplice: after zc_reap reports completion)",
    "fork": "a forked child sends while its parent writes the next round into the same buffer",
}
MODES = ("write", "cow", "vmsplice")
SINKS = {"wire": "/dev/wire, a socket to a slow peer draining in virtual time",
         "pipe": "a pipe, drained by a forked reader that checks every byte"}
DEFAULT_SIZES = (4 << 10, 64 << 10, 1 << 20)
# CPUs per machine, each with a thread of the sending program (the workloads' THREADS argument).
DEFAULT_CPUS = (1, 2, 4)
MAX_CPUS = 8
DEFAULT_TOTAL = 4 << 20
# A wire slower than the sender, as a network is slower than memory: the workloads refill a buffer at about
# 2 bytes per instruction, so at 1024 bytes per 1000 instructions the sender catches up with what is in flight.
DEFAULT_WIRE_RATE = 1024
RAM = 128 << 20
MAX_SEND = 16 << 20          # the pool and fork workloads hold two or three buffers of this size
MAX_TOTAL = 256 << 20
MIB = 1 << 20


def size_text(n: int) -> str:
    """65536 -> '64k', as the programs and vmgames run take it."""
    for unit, suffix in ((MIB, "m"), (1 << 10, "k")):
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


@dataclass
class Cell:
    """One run: a workload, a send mode and a send size, and what the kernel counted."""

    workload: str
    mode: str
    size: int
    total: int                       # bytes the sender meant to send
    sink: str = "wire"
    cpus: int = 1                    # the machine's CPUs, and the sending program's threads
    received: int = 0                # bytes the receiver got
    corrupt: int = 0                 # of those, bytes that differ from what was sent
    faults: dict[str, int] = field(default_factory=dict)
    work: Work = field(default_factory=Work)

    @property
    def mib(self) -> float:
        """MiB delivered: what everything is divided by (what was meant, if nothing arrived)."""
        return (self.received or self.total) / MIB

    def per_mib(self, value: float) -> float:
        return value / self.mib

    @property
    def kernel_entries(self) -> int:
        return self.work.syscalls + sum(self.faults.values())

    @property
    def intact(self) -> bool:
        """Everything the sender meant arrived, as it was when sent."""
        return self.received == self.total and not self.corrupt

    @property
    def program(self) -> str:
        """The workload as `make userland` builds it: the rerun command names it wherever it is run from."""
        return os.path.join(BUILD, f"zc_{self.workload}")

    def command(self, wire_rate: int) -> str:
        """The shell command that reruns this cell as run_cell ran it, to the same counts, from any directory.

        The same RAM, and the program started from its own directory by its short name: the workloads
        print argv[0], so a longer name would retire more instructions.
        """
        cpus = f"--cpus {self.cpus} " if self.cpus > 1 else ""
        return (f"cd {shlex.quote(BUILD)} && vmgames run --ram {size_text(RAM)} {cpus}--wire-rate {wire_rate} "
                "--stats " + " ".join(map(shlex.quote, self.argv)))

    @property
    def argv(self) -> list[str]:
        """The program's argv, argv[0] the workload's short name wherever the program is."""
        threads = [str(self.cpus)] if self.cpus > 1 else []
        return [f"zc_{self.workload}", self.mode, size_text(self.size), size_text(self.total), self.sink, *threads]


class HelperThreads(Observer):
    """Finds the sending program's helper threads (its tasks that are not a process's first): their own syscalls
    and faults only keep its address space in use on their CPUs, and are not counted as the sends' work."""

    def __init__(self) -> None:
        self.pids: set[int] = set()

    def after_syscall(self, kernel: Kernel, proc: Process, number: int) -> None:
        if not proc.is_leader:
            self.pids.add(proc.pid)


def measure(cell: Cell, recorder: Recorder, instructions: int, helpers: Collection[int] = ()) -> Cell:
    """Fill in a cell from the recorder of its run, leaving out the syscalls and faults the `helpers` (thread
    ids) made themselves: their sleeps would be priced as the sends' work.  Everything else is counted whoever
    the kernel was working for: a CPU records a shootdown IPI under the task it ran last, often a helper, and
    the address space's teardown under whichever thread exits last.
    """
    def count(type_: str, kind: str | None = None) -> int:
        return sum(n for (pid, _, t, k), n in recorder.counts.items()
                   if t == type_ and (kind is None or k == kind) and pid not in helpers)

    cell.faults = {kind: count("fault", kind) for kind in FAULT_KINDS}
    cell.received = recorder.amount("sink", "deliver")
    cell.corrupt = recorder.amount("sink", "corrupt")
    cell.work = Work(
        faults=sum(n for kind, n in cell.faults.items() if kind != "fatal"),
        pages_copied=recorder.count("page", "copy"),
        bytes_copied_in=recorder.amount("sink", "copy"),
        pages_zeroed=recorder.count("page", "zero"),
        pte_writes=recorder.count("pte", "write"),
        tlb_pages=recorder.count("tlb", "invalidate-page"),
        tlb_flushes=recorder.count("tlb", "invalidate-all"),
        cr3_loads=recorder.count_reason("tlb", "invalidate-all", "context-switch"),
        shootdowns=recorder.count("tlb", "shootdown"),
        ipis=sum(recorder.count("tlb", kind) for kind in vmstat.IPI_KINDS),
        syscalls=count("syscall"),
        instructions=instructions,
    )
    return cell


def build_programs(directory: str, workloads: Iterable[str]) -> dict[str, str]:
    """Compile the workloads with gcc into `directory`: workload -> executable."""
    return {workload: build(os.path.join(USERLAND_C, f"zc_{workload}.c"), os.path.join(directory, f"zc_{workload}"),
                            FREESTANDING_FLAGS) for workload in workloads}


def run_cell(program: str, cell: Cell, wire_rate: int) -> Cell:
    """Run one cell on a fresh machine and measure it."""
    out = io.BytesIO()
    kernel = boot(RAM, root=os.path.dirname(program), stdout=out, stderr=out, wire_rate=wire_rate, cpus=cell.cpus)
    helpers = HelperThreads()
    kernel.observe(helpers)
    proc = kernel.spawn(kernel.fs.open_host(program), cell.argv, [])
    kernel.run()
    if proc.shell_status != 0:
        said = out.getvalue().decode(errors="replace").strip()
        raise ExperimentError(f"{cell.command(wire_rate)}: exit status {proc.shell_status}"
                              + (f"\n{said}" if said else "") + (f"\n{proc.death}" if proc.death else ""))
    recorder = kernel.recorder
    pids = {pid for pid, _, _, _ in recorder.counts} - helpers.pids
    return measure(cell, recorder, sum(kernel.instructions_of_pid(pid) for pid in pids), helpers.pids)


def run_all(workloads: Iterable[str], modes: Iterable[str], sizes: Iterable[int], total: int, wire_rate: int,
            sink: str = "wire", cpus: Iterable[int] = (1,), jobs: int = 1, dask: str | None = None,
            journal: Journal | None = None) -> list[Cell]:
    """Every cell measured, `jobs` at a time (tools/experiments/cells.py), in the table's order."""
    cells = [Cell(w, m, s, total, sink, c) for w in workloads for s in sizes for c in cpus for m in modes]
    with tempfile.TemporaryDirectory(prefix="vmgames-zerocopy-") as scratch:
        programs = build_programs(scratch, dict.fromkeys(cell.workload for cell in cells))
        return run_cells(run_cell, [(programs[cell.workload], cell, wire_rate) for cell in cells], jobs,
                         lambda args: f"{args[1].workload} {args[1].mode} {size_text(args[1].size)} on "
                                      f"{args[1].cpus} CPUs", dask, journal)


def csv_rows(cells: list[Cell], costs: Costs, wire_rate: int) -> list[dict[str, object]]:
    """Tidy rows: one per cell, raw totals and per-MiB figures."""
    rows = []
    for cell in cells:
        parts = costmodel.breakdown(cell.work, costs)
        row: dict[str, object] = {
            "workload": cell.workload, "mode": cell.mode, "size": cell.size, "cpus": cell.cpus, "sink": cell.sink,
            "sent_bytes": cell.total, "received_bytes": cell.received, "corrupt_bytes": cell.corrupt,
        }
        for kind in FAULT_KINDS:
            row[f"faults_{kind}_per_mib"] = round(cell.per_mib(cell.faults[kind]), 3)
        work = cell.work
        per_mib = {
            "faults": sum(cell.faults.values()),
            "pages_copied": work.pages_copied,
            "bytes_copied": work.bytes_copied_in + work.pages_copied * costmodel.PAGE_SIZE,
            "pages_zeroed": work.pages_zeroed,
            "pte_writes": work.pte_writes,
            "tlb_invalidations": work.tlb_pages + work.tlb_flushes,
            "tlb_page": work.tlb_pages,
            "tlb_all": work.tlb_flushes,
            "shootdowns": work.shootdowns,
            "ipis": work.ipis,
            "kernel_entries": cell.kernel_entries,
            "syscalls": work.syscalls,
            "instructions": work.instructions,
            "corrupt_bytes": cell.corrupt,
        }
        for name, value in per_mib.items():
            row[f"{name}_per_mib"] = round(cell.per_mib(value), 3)
        for part, value in parts.items():
            row[f"cycles_{part.replace(' ', '_')}_per_mib"] = round(cell.per_mib(value))
        row["cycles_per_mib"] = round(cell.per_mib(sum(parts.values())))
        row["command"] = cell.command(wire_rate)
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, object]], path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _short(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:,.0f}k"
    if value >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.1f}"


TABLE_WIDTH = 176           # the table's natural width; a narrower terminal wraps it rather than squeezing columns
# Fault columns of the table (the CSV has every kind apart; a fatal fault stops the experiment).
TABLE_FAULTS = {"faults\nzero-\nfill": ("zero-fill",), "faults\nfile,\nres.": ("file", "resident"),
                "faults\ncow-\ncopy": ("cow-copy",), "faults\ncow-\nmove": ("cow-move",),
                "faults\nprot.": ("protection",)}


def render_table(cells: list[Cell], costs: Costs, wire_rate: int, console) -> None:
    """The per-MiB table on the terminal (rich)."""
    from rich import box
    from rich.table import Table

    to = (f"a wire draining {wire_rate} bytes per 1000 instructions" if cells[0].sink == "wire"
          else "a pipe with a forked reader")
    table = Table(title=f"Zero-copy sends, per MiB delivered: {size_text(cells[0].total)} per cell to {to}",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("workload", "mode", "size", "CPUs"):
        table.add_column(name, no_wrap=True)
    for name in (*TABLE_FAULTS, "pages\ncopied", "KiB\ncopied", "PTE\nwrites", "TLB\ninval.", "IPIs", "kernel\nentries",
                 "k\ninstr.", "received", "corrupt", "est.\nk cycles"):
        table.add_column(name, justify="right", no_wrap=True, min_width=max(map(len, name.splitlines())))
    previous = None
    for cell in cells:
        if previous is not None and (cell.workload, cell.size, cell.cpus) != previous:
            table.add_section()
        previous = (cell.workload, cell.size, cell.cpus)
        work = cell.work
        copied = (work.bytes_copied_in + work.pages_copied * costmodel.PAGE_SIZE) / 1024
        corrupt = f"{cell.corrupt / cell.received:.1%}" if cell.corrupt else "0"
        received = size_text(cell.received) if cell.received == cell.total else \
            f"[bold red]{cell.received} of {cell.total}[/]"
        table.add_row(
            cell.workload, cell.mode, size_text(cell.size), str(cell.cpus),
            *(_short(cell.per_mib(sum(cell.faults[k] for k in kinds))) for kinds in TABLE_FAULTS.values()),
            _short(cell.per_mib(work.pages_copied)),
            _short(cell.per_mib(copied)),
            _short(cell.per_mib(work.pte_writes)),
            _short(cell.per_mib(work.tlb_pages + work.tlb_flushes)),
            _short(cell.per_mib(work.ipis)),
            _short(cell.per_mib(cell.kernel_entries)),
            _short(cell.per_mib(work.instructions) / 1000),
            received,
            f"[bold red]{corrupt}[/]" if cell.corrupt else corrupt,
            _short(cell.per_mib(costmodel.cycles(work, costs)) / 1000),
        )
    console.print(table)


def cost_model_name(costs: Costs) -> str:
    """The cost model in use, as the conclusion names it: the defaults, or the prices that differ from them."""
    defaults = Costs()
    changed = [f"{f.name} {getattr(costs, f.name):g}" for f in fields(Costs)
               if getattr(costs, f.name) != getattr(defaults, f.name)]
    if not changed:
        return "the default cost model of tools/costmodel.py"
    return "the cost model of tools/costmodel.py with " + ", ".join(changed) + " from --costs"


def _percent(fraction: float) -> str:
    return f"{fraction:.0%}" if fraction >= 0.01 else f"{fraction:.1%}"


def _spoiled(cell: Cell) -> str:
    if cell.received != cell.total:
        return f"delivered only {cell.received:,} of {cell.total:,} bytes"
    return f"corrupted {cell.corrupt / cell.received:.1%} of what it delivered"


def conclusion(cells: list[Cell], costs: Costs) -> list[str]:
    """For each workload and size, the mode that cost least under `costs` and its lead over the next: the
    lines that end the experiment.  Only a cell that delivered every byte intact can win; a mode that cost
    less but did not is named beside the winner."""
    def cost(cell: Cell) -> float:
        return cell.per_mib(costmodel.cycles(cell.work, costs))

    lines = [f"Conclusion (estimated cycles per MiB under {cost_model_name(costs)}; "
             "only a mode that delivered every byte intact can win):"]
    several = {cell.cpus for cell in cells} != {1}     # name the CPU count unless every cell had one CPU
    for workload, cpus in dict.fromkeys((cell.workload, cell.cpus) for cell in cells):
        findings = []
        for size in sorted({cell.size for cell in cells if (cell.workload, cell.cpus) == (workload, cpus)}):
            ranked = sorted((c for c in cells if (c.workload, c.size, c.cpus) == (workload, size, cpus)), key=cost)
            intact = [c for c in ranked if c.intact]
            at = size_text(size)
            if not intact:
                findings.append(f"{at} no mode delivered every byte intact")
                continue
            best = intact[0]
            if len(ranked) == 1:
                finding = f"{at} {best.mode} alone, nothing to compare"
            elif len(intact) == 1:
                finding = f"{at} {best.mode}, the only mode that delivered every byte intact"
            else:
                lead = 1 - cost(best) / cost(intact[1]) if cost(intact[1]) else 0.0
                finding = (f"{at} {best.mode} and {intact[1].mode} tied" if lead < 0.0005 else
                           f"{at} {best.mode}, {_percent(lead)} below {intact[1].mode}")
            cheaper = [f"{c.mode} cost less but {_spoiled(c)}" for c in ranked if not c.intact and cost(c) < cost(best)]
            findings.append(finding + (f" ({'; '.join(cheaper)})" if cheaper else ""))
        on = f" on {cpus} CPU{'s' * (cpus > 1)}" if several else ""
        lines.append(f"  {workload}{on}: " + "; ".join(findings))
    return lines


PART_COLOURS = {"faults": "#c44e52", "copies": "#4c72b0", "page tables and TLB": "#8172b3",
                "syscalls": "#55a868", "user instructions": "#bbbbbb"}


def write_plot(cells: list[Cell], costs: Costs, directory: str) -> list[str]:
    """Cost per MiB by workload and mode, one panel per send size and CPU count, stacked by part (PNG and SVG);
    a copy-on-write bar is labelled with its shootdown IPIs per MiB."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    sizes = sorted({c.size for c in cells})
    cpu_counts = sorted({c.cpus for c in cells})
    workloads = list(dict.fromkeys(c.workload for c in cells))
    modes = list(dict.fromkeys(c.mode for c in cells))
    by_key = {(c.workload, c.mode, c.size, c.cpus): c for c in cells}
    figure, panels = plt.subplots(len(cpu_counts), len(sizes), figsize=(4.2 * len(sizes) + 1, 4.6 * len(cpu_counts)),
                                  squeeze=False)
    width = 0.8 / len(modes)
    for row, cpus in enumerate(cpu_counts):
        for panel, size in zip(panels[row], sizes, strict=True):
            _plot_panel(panel, by_key, workloads, modes, size, cpus, costs, width, first=(row, size) == (0, sizes[0]))
            panel.set_title(f"{size_text(size)} sends, {cpus} CPU{'s' * (cpus > 1)}")
        panels[row][0].set_ylabel("estimated M cycles per MiB delivered")
    figure.suptitle("Zero-copy sends: estimated cost per MiB (W = write, C = copy-on-write, V = vmsplice; "
                    "the number under a letter: shootdown IPIs per MiB)")
    figure.legend(loc="lower center", ncol=len(costmodel.PARTS), frameon=False, bbox_to_anchor=(0.5, -0.04))
    written = plot_paths(directory)
    for path in written:
        figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return written


def _plot_panel(panel, by_key: dict, workloads: list[str], modes: list[str], size: int, cpus: int, costs: Costs,
                width: float, first: bool) -> None:
    """One panel of the plot: a stack of bars per workload and mode; `first` labels the parts for the legend."""
    for m, mode in enumerate(modes):
        xs = [w + (m - (len(modes) - 1) / 2) * width for w in range(len(workloads))]
        cells = [by_key.get((workload, mode, size, cpus)) for workload in workloads]
        bottoms = [0.0] * len(workloads)
        for part in costmodel.PARTS:
            heights = [cell.per_mib(costmodel.breakdown(cell.work, costs)[part]) / 1e6 if cell else 0.0
                       for cell in cells]
            panel.bar(xs, heights, width * 0.92, bottom=bottoms, color=PART_COLOURS[part],
                      label=part if first and m == 0 else None)
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        for x, top, cell in zip(xs, bottoms, cells, strict=True):
            if cell is None:
                continue
            label = mode[0].upper()
            if cell.work.ipis:
                label += f"\n{cell.per_mib(cell.work.ipis):,.0f}"
            if cell.corrupt:
                label += "\ncorrupt"
            panel.annotate(label, (x, top), ha="center", va="bottom", fontsize=7,
                           color="#b00000" if cell.corrupt else "black")
    panel.set_xticks(range(len(workloads)), workloads)
    panel.margins(y=0.2)


def plot_paths(directory: str) -> list[str]:
    return [os.path.join(directory, f"zerocopy.{extension}") for extension in ("png", "svg")]


def check_outputs(csv_path: str, plot_directory: str) -> None:
    """Open every output for writing now, as the end of the run will, and leave each as it was.

    An OSError (a directory given as the CSV, a place nobody may write) is
    then found before the cells run, not minutes after.
    """
    _check_writable(csv_path)
    os.makedirs(plot_directory, exist_ok=True)
    for path in plot_paths(plot_directory):
        _check_writable(path)


def _check_writable(path: str) -> None:
    """Open `path` for writing, appending nothing; remove it again if it was not there.

    O_NONBLOCK: a FIFO nobody reads is refused (ENXIO) instead of waiting for a reader.
    """
    existed = os.path.exists(path)
    os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o666))
    if not existed:
        os.remove(path)


def main(workloads: list[str], modes: list[str], sizes: list[int], total: int, wire_rate: int, costs: Costs,
         csv_path: str, plot_directory: str, sink: str = "wire", cpus: list[int] = (1,), jobs: int = 1,
         dask: str | None = None, resume: bool = False) -> int:
    from rich.console import Console

    try:
        check_outputs(csv_path, plot_directory)
    except OSError as error:
        print(f"vmgames: {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    console = Console(width=max(Console().width, TABLE_WIDTH))
    try:
        with journal_beside(csv_path, {"total": total, "wire_rate": wire_rate, "sink": sink}, resume) as journal:
            cells = run_all(workloads, modes, sizes, total, wire_rate, sink=sink, cpus=cpus, jobs=jobs, dask=dask,
                            journal=journal)
    except ExperimentError as error:
        print(f"vmgames: {error}", file=sys.stderr)
        return 1
    render_table(cells, costs, wire_rate, console)
    console.print("cost model (ns; override with --costs FILE): "
                  + ", ".join(f"{f.name} {getattr(costs, f.name):g}" for f in fields(Costs)), highlight=False)
    rows = csv_rows(cells, costs, wire_rate)
    try:
        write_csv(rows, csv_path)
        written = write_plot(cells, costs, plot_directory)
    except OSError as error:
        print(f"vmgames: {error.filename}: {error.strerror}", file=sys.stderr)
        return 1
    print(f"per-cell figures (and the command that reruns each cell) written to {csv_path}")
    print(f"plot written to {', '.join(written)}")
    built = "" if os.path.exists(cells[0].program) else f"; `make userland` in {REPOSITORY} builds it first"
    print(f"rerun any cell with: {cells[0].command(wire_rate)}   (from any directory{built})")
    print("\n".join(conclusion(cells, costs)))
    return 0
