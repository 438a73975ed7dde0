"""`vmgames report TRACE`: what a recorded run did, summarised.

The trace is read as a stream, in bounded memory: counters, the faulting
instructions, the chain depth over time in at most MAX_BUCKETS time buckets
(their width doubles whenever there would be more), and the faults across the
address space in at most MAX_HEAT_ROWS rows (their span doubles likewise).
A file that is not a trace gets one message saying so; one that comes from a
newer vmgames or is corrupted gets one naming the file and line.  A trace that
stops short (a last line cut, processes that never exit in it) is summarised
with a warning, on stderr as every warning of the report.
"""

from __future__ import annotations

import bisect
import csv
import io
import os
import struct
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import orjson
from vmgames.emulator.ram import PAGE_SIZE
from vmgames.kernel import syscall
from vmgames.tools import procstat, trace, trace_schema, vmstat
from vmgames.tools.stats import tlb_by_reason

if TYPE_CHECKING:
    from rich.table import Table

MAX_BUCKETS = 64
MAX_HEADER = 16 << 20      # a first line longer than this is not a trace's header, whatever follows
MAX_HEAT_ROWS = 32
CELLS_PER_ROW = 512
# The symbols that can name an instruction, and which to prefer at one address: a function over a label,
# a global over a weak, a weak over a local.
SYMBOL_KINDS = {"STT_FUNC": 2, "STT_GNU_IFUNC": 2, "STT_NOTYPE": 1}
SYMBOL_BINDINGS = {"STB_GLOBAL": 2, "STB_WEAK": 1}


class TraceError(Exception):
    """The trace cannot be read; the message names the file and line."""


@dataclass
class DepthBuckets:
    """Chain depth seen by faults over virtual time, in a bounded number of buckets."""

    width: int = 1024
    buckets: dict[int, list[int]] = field(default_factory=dict)   # start index -> [faults, depth sum, max]

    def add(self, t: int, depth: int) -> None:
        bucket = self.buckets.setdefault(t // self.width, [0, 0, 0])
        bucket[0] += 1
        bucket[1] += depth
        bucket[2] = max(bucket[2], depth)
        if len(self.buckets) > MAX_BUCKETS:
            merged: dict[int, list[int]] = {}
            for index, (n, total, deepest) in self.buckets.items():
                into = merged.setdefault(index // 2, [0, 0, 0])
                into[0] += n
                into[1] += total
                into[2] = max(into[2], deepest)
            self.buckets, self.width = merged, self.width * 2

    def rows(self) -> list[tuple[int, int, int, float, int]]:
        """(t from, t to, faults, mean depth, max depth), in time order."""
        return [(i * self.width, (i + 1) * self.width - 1, n, total / n, deepest)
                for i, (n, total, deepest) in sorted(self.buckets.items())]


@dataclass
class FaultTimeline:
    """Faults of each kind over virtual time, in a bounded number of buckets."""

    width: int = 1024
    buckets: dict[int, Counter] = field(default_factory=dict)

    def add(self, t: int, kind: str) -> None:
        self.buckets.setdefault(t // self.width, Counter())[kind] += 1
        if len(self.buckets) > MAX_BUCKETS:
            merged: dict[int, Counter] = {}
            for index, counts in self.buckets.items():
                merged.setdefault(index // 2, Counter()).update(counts)
            self.buckets, self.width = merged, self.width * 2


@dataclass
class PageHeat:
    """Faults across the address space, in at most MAX_HEAT_ROWS rows of CELLS_PER_ROW cells.

    A row starts as one 2 MiB region and a cell as one page, so text, heap,
    mmap and stack each show up where they live; whenever more rows took
    faults than fit, each pair of neighbouring rows becomes one (of twice the
    span, with cells of twice the pages), so a million-page run draws as a
    picture of the same size as a small one, in the same memory.
    """

    span: int = CELLS_PER_ROW * PAGE_SIZE
    rows: dict[int, list[int]] = field(default_factory=dict)   # address // span -> faults per cell

    @property
    def cell(self) -> int:
        """Bytes of address space per cell."""
        return self.span // CELLS_PER_ROW

    def add(self, address: int) -> None:
        if address // self.span not in self.rows:
            self.rows[address // self.span] = [0] * CELLS_PER_ROW
            while len(self.rows) > MAX_HEAT_ROWS:
                self._merge()
        self.rows[address // self.span][address % self.span // self.cell] += 1

    def _merge(self) -> None:
        merged: dict[int, list[int]] = {}
        half = CELLS_PER_ROW // 2
        for index, cells in self.rows.items():
            into = merged.setdefault(index // 2, [0] * CELLS_PER_ROW)
            offset = half * (index % 2)
            for n in range(half):
                into[offset + n] += cells[2 * n] + cells[2 * n + 1]
        self.rows, self.span = merged, self.span * 2


@dataclass
class Exits:
    """Which process each exit event ends.  An event is recorded under the pid the kernel was working for: an
    exit under the process's own, unless a signal another process sent (kill) ended it, when it is the
    sender's; then the signal event just before it names the process."""

    signalled: int | None = None

    def exited(self, event: dict[str, Any]) -> int | None:
        """The process that an event says has exited, or None."""
        if event["type"] != "proc" or event["kind"] not in ("signal", "exit"):
            return None
        if event["kind"] == "signal":
            self.signalled = event["target"]
            return None
        target, self.signalled = self.signalled, None
        return target if event["signal"] and target is not None else event["pid"]


@dataclass
class Summary:
    header: dict[str, Any]
    events: Counter = field(default_factory=Counter)        # (pid, type, kind) -> count
    fault_rips: Counter = field(default_factory=Counter)    # rip -> faults taken there
    reasons: Counter = field(default_factory=Counter)       # (type, kind, reason) of TLB invalidations, PTE writes
    cpus: Counter = field(default_factory=Counter)          # (cpu, type, kind) -> events
    depth: DepthBuckets = field(default_factory=DepthBuckets)
    timeline: FaultTimeline = field(default_factory=FaultTimeline)
    heat: PageHeat = field(default_factory=PageHeat)
    maps: dict[int, dict[str, Any]] = field(default_factory=dict)   # process -> its last map event
    running: set[int] = field(default_factory=set)          # processes started and not yet exited
    exits: Exits = field(default_factory=Exits)
    warnings: list[str] = field(default_factory=list)       # what the reader of the summary should know

    @property
    def kept(self) -> list[str] | None:
        """The event types the run chose to trace (--trace-events), or None for all of them."""
        return self.header["options"].get("trace_events")

    def add(self, event: dict[str, Any]) -> None:
        type_, kind = event["type"], event["kind"]
        self.events[(event["pid"], type_, kind)] += 1
        self.cpus[(event["cpu"], type_, kind)] += 1
        if type_ == "fault":
            self.timeline.add(event["t"], kind)
            self.heat.add(event["address"])
            if event["rip"] is not None:
                self.fault_rips[event["rip"]] += 1
            if event["depth"]:
                self.depth.add(event["t"], event["depth"])
        elif type_ == "tlb" or (type_ == "pte" and kind == "write"):
            self.reasons[(type_, kind, event["reason"])] += 1
        elif type_ == "map":
            self.maps[event["process"]] = event
        elif type_ == "proc" and kind in ("spawn", "fork"):
            self.running.add(event["child"])
        elif type_ == "proc":
            self.running.discard(self.exits.exited(event))

    @property
    def cpu_numbers(self) -> list[int]:
        """The CPUs events were recorded on."""
        return sorted({cpu for cpu, _, _ in self.cpus})

    def count(self, type_: str, kind: str | None, reason: str | None) -> int:
        """Events of a type (and kind, and reason, if given), as the recorder would have counted them."""
        if reason is not None:
            return self.reasons[(type_, kind, reason)]
        return sum(n for (_, t, k), n in self.events.items() if t == type_ and (kind is None or k == kind))

    def finish(self, path: str) -> None:
        """At the end of the trace: a run whose processes did not all exit in it was cut short."""
        if self.running and (self.kept is None or "proc" in self.kept):
            pids = sorted(self.running)
            shown = ", ".join(map(str, pids[:8])) + (f" and {len(pids) - 8} more" if len(pids) > 8 else "")
            self.warnings.append(f"{path}: warning: the trace stops short: pid{'s' * (len(pids) > 1)} {shown} "
                                 "never exited in it (was the run interrupted, or its disk full?)")


JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "true or false",
              type(None): "null"}


def _parse(line: bytes, where: str) -> dict[str, Any]:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        if "UTF-8" in str(error):
            raise TraceError(f"{where}: not text (invalid UTF-8)") from None
        raise TraceError(f"{where}: not valid JSON (at column {error.colno})") from None
    if not isinstance(record, dict):
        raise TraceError(f"{where}: not a trace event (a JSON {JSON_TYPES[type(record)]}, not an object)")
    return record


def _header(first: bytes, path: str) -> dict[str, Any]:
    """The trace's first line, checked; anything that is not a vmgames trace's header is said to be so."""
    not_a_trace = TraceError(f"{path}: not a vmgames trace")
    try:
        header = orjson.loads(first)
    except orjson.JSONDecodeError:
        if first.startswith(b'{"format":"' + trace.FORMAT.encode() + b'"') and not first.endswith(b"\n"):
            raise TraceError(f"{path}:1: the header is cut short (was the run interrupted?)") from None
        raise not_a_trace from None
    if not isinstance(header, dict) or header.get("format") != trace.FORMAT:
        raise not_a_trace
    version = header.get("version")
    if type(version) is not int or version < 1:
        shown = orjson.dumps(version).decode() if "version" in header else "missing"
        raise TraceError(f"{path}:1: the trace format version is {shown}, not a whole number from 1 up")
    if version > trace.VERSION:
        raise TraceError(f"{path}:1: trace format version {version} is newer than this vmgames reads "
                         f"(up to {trace.VERSION}); use a newer vmgames")
    problems = trace_schema.validate_header(header)
    if problems:
        raise TraceError(f"{path}:1: bad header: {problems[0]}")
    return header


def summarise(path: str, progress: Any = None) -> Summary:
    """Read a whole trace; `progress(bytes_read)` is called now and then if given."""
    reader = _read(path, progress)
    summary = Summary(next(reader))
    for event in reader:
        if isinstance(event, str):
            summary.warnings.append(event)
        else:
            summary.add(event)
    summary.finish(path)
    return summary


def read_trace(path: str, progress: Any = None) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """The header of a trace (read now) and its events, checked, one by one as they are iterated (a last line
    cut short is skipped); `progress` as for summarise."""
    reader = _read(path, progress)
    header = next(reader)
    return header, (event for event in reader if not isinstance(event, str))


def _read(path: str, progress: Any) -> Iterator[Any]:
    """Yields the header, then each event; a last line cut short yields a warning instead."""
    try:
        stream: IO[bytes] = open(path, "rb")
    except OSError as error:
        raise TraceError(f"{path}: {error.strerror}") from None
    with stream:
        first = stream.readline(MAX_HEADER)
        if not first:
            raise TraceError(f"{path}: not a vmgames trace (the file is empty)")
        header = _header(first, path)
        yield header
        # Version 2 traces came from one CPU and did not say so.  Time never goes back on one CPU; with
        # several, a CPU's events may come before those of another CPU's earlier instructions (one round).
        untagged = header["version"] < 3
        number, read, latest = 1, len(first), {}
        for line in stream:
            number += 1
            read += len(line)
            if not line.endswith(b"\n"):
                try:
                    _parse(line, "")
                except TraceError:
                    yield f"{path}:{number}: warning: the last line is cut short (was the run interrupted?)"
                    break
            record = _parse(line, f"{path}:{number}")
            if record.get("format") == trace.FORMAT:
                raise TraceError(f"{path}:{number}: a second trace header (were two traces joined?)")
            if untagged and isinstance(record, dict):
                record.setdefault("cpu", 0)
            problems = trace_schema.validate_event(record)
            if problems:
                raise TraceError(f"{path}:{number}: {problems[0]}")
            cpu = record["cpu"]
            if record["t"] < latest.get(cpu, 0):   # virtual time starts at 0 and never goes back on a CPU
                raise TraceError(f"{path}:{number}: time goes backwards on CPU {cpu}: t = {record['t']:,} "
                                 f"after t = {latest[cpu]:,}")
            latest[cpu] = record["t"]
            yield record
            if progress is not None and number % 4096 == 0:
                progress(read)


def program_path(header: dict[str, Any]) -> str:
    """Where the traced program is: a relative path is taken from the directory the run was in (the
    options' `cwd`), so that the report finds the program wherever it is run from."""
    program, ran_in = header["program"], header["options"].get("cwd")
    if isinstance(ran_in, str) and not os.path.isabs(program):
        return os.path.join(ran_in, program)
    return program


class Program:
    """The traced program's file, read once: an instruction's text and the function it is in, by address.

    Called with a rip it gives the instruction's text (the report's `describe`);
    `function(rip)` names it as objdump does (`main+0x1f`) when the file has a
    symbol table; `problem` says why instructions cannot be shown, if they cannot.
    """

    def __init__(self, path: str) -> None:
        from vmgames.kernel import elf

        self.path = path
        self.problem = ""
        self._data = b""
        self._segments: tuple[elf.Segment, ...] = ()
        self._starts: list[int] = []
        self._functions: list[tuple[str, int]] = []     # (name, end of its section), as _starts
        try:
            with open(path, "rb") as f:
                self._data = f.read()
            if path.endswith(".s"):     # vmgames run assembled it first, as this does again
                self._data = _assemble(self._data, path)
            self._segments = elf.parse(self._data, 1 << 47).segments
        except OSError as error:
            self.problem = error.strerror or str(error)
            return
        except elf.ExecFormatError as error:
            self.problem = f"not a program vmgames runs ({error})"
            return
        except ValueError as error:
            self.problem = str(error)
            return
        for start, name, end in _code_symbols(self._data):
            self._starts.append(start)
            self._functions.append((name, end))

    @property
    def has_symbols(self) -> bool:
        return bool(self._starts)

    def __call__(self, rip: int) -> str:
        from vmgames.emulator.disasm import instruction_at

        if self.problem:
            return "(program not readable)"
        for seg in self._segments:
            if seg.vaddr <= rip < seg.vaddr + seg.filesz:
                at = seg.offset + (rip - seg.vaddr)
                return instruction_at(self._data[at:at + 16], rip)
        return "(not in the program's file)"

    def function(self, rip: int) -> str:
        """`name+0xOFFSET` of the nearest code symbol at or below rip in the same section ('' if none)."""
        n = bisect.bisect_right(self._starts, rip) - 1
        if n < 0:
            return ""
        name, section_end = self._functions[n]
        if rip >= section_end:
            return ""
        offset = rip - self._starts[n]
        return f"{name}+{offset:#x}" if offset else name


def _assemble(source: bytes, path: str) -> bytes:
    """The executable `vmgames run` made of an assembly source; ValueError saying why there is none."""
    from vmgames.tools.assembler import AssemblyError, assemble_with_warnings

    try:
        return assemble_with_warnings(source.decode(), path)[0]
    except UnicodeDecodeError:
        raise ValueError("not an assembly source (not UTF-8 text)") from None
    except AssemblyError as error:
        raise ValueError(f"does not assemble now ({error})") from None


def _code_symbols(data: bytes) -> list[tuple[int, str, int]]:
    """(address, name, end of its section) of each function or label in executable sections of an ELF's
    .symtab, by address; at one address a function is preferred to a label, a global symbol to a local one.
    A file without a symbol table, or with a broken one, has none."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.constants import SH_FLAGS
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    best: dict[int, tuple[tuple[int, int], str, int]] = {}
    try:
        elf = ELFFile(io.BytesIO(data))
        table = elf.get_section_by_name(".symtab")
        if not isinstance(table, SymbolTableSection):
            return []
        code = {}        # section index -> (start, end), for executable sections
        for index, section in enumerate(elf.iter_sections()):
            if section["sh_flags"] & SH_FLAGS.SHF_EXECINSTR and section["sh_type"] != "SHT_NOBITS":
                code[index] = (section["sh_addr"], section["sh_addr"] + section["sh_size"])
        for symbol in table.iter_symbols():
            kind, where = symbol["st_info"]["type"], symbol["st_shndx"]
            if kind not in SYMBOL_KINDS or where not in code or not symbol.name:
                continue
            start, end = code[where]
            address = symbol["st_value"]
            if not start <= address < end:
                continue
            rank = (SYMBOL_KINDS[kind], SYMBOL_BINDINGS.get(symbol["st_info"]["bind"], 0))
            if address not in best or rank > best[address][0]:
                best[address] = (rank, symbol.name, end)
    except (ELFError, ValueError, LookupError, ArithmeticError, struct.error):
        return []
    return [(address, name, end) for address, (_, name, end) in sorted(best.items())]


def disassembler(program: str) -> Program:
    """rip -> instruction text (and .function(rip)), read from the traced program's file (if it is still there)."""
    return Program(program)


def cpu_table(summary: Summary) -> Table:
    """The kernel's work on each CPU: faults, syscalls, local invalidations, shootdowns sent, and the shootdown
    IPIs it took as FreeBSD counts them (one counter per CPU and handler)."""
    from rich.table import Table

    table = Table(title="Per CPU (shootdowns sent, and the IPIs taken as FreeBSD's ipi_*_counts count them)")
    columns = {"faults": ("fault", None), "syscalls": ("syscall", None),
               "inval. page": ("tlb", ("invalidate-page",)), "inval. all": ("tlb", ("invalidate-all",)),
               "sent": ("tlb", ("shootdown",)),
               **{kind.removeprefix("ipi-"): ("tlb", (kind,)) for kind in vmstat.IPI_KINDS}}
    table.add_column("cpu", justify="right", min_width=3)
    for name in columns:
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    kept = summary.kept

    def cell(cpu: int, type_: str, kinds: tuple[str, ...] | None) -> str:
        if kept is not None and type_ not in kept:
            return "not traced"
        events = sum(n for (c, t, k), n in summary.cpus.items()
                     if c == cpu and t == type_ and (kinds is None or k in kinds))
        return f"{events:,}"

    for cpu in summary.cpu_numbers:
        table.add_row(str(cpu), *(cell(cpu, type_, kinds) for type_, kinds in columns.values()))
    return table


def write_csv(summary: Summary, directory: str, describe: Program) -> list[str]:
    """Tidy tables for pandas; returns the files written."""
    os.makedirs(directory, exist_ok=True)
    freebsd = vmstat.freebsd(summary.count)
    tables = {
        "events.csv": (["pid", "type", "kind", "count"],
                       [[p, t, k, n] for (p, t, k), n in sorted(summary.events.items())]),
        "fault_instructions.csv": (["rip", "faults", "function", "instruction"],
                                   [[hex(rip), n, describe.function(rip), describe(rip)]
                                    for rip, n in summary.fault_rips.most_common()]),
        "tlb_invalidations.csv": (["kind", "reason", "linux_reason", "count"],
                                  [[k, r, vmstat.linux_tlb_reason(k, r), n]
                                   for (t, k, r), n in sorted(summary.reasons.items()) if t == "tlb"]),
        "freebsd_vmstat.csv": (["name", "text", "count"],   # no count where --trace-events left its events out
                               [[stat.name, stat.text, freebsd[stat.name] if vmstat.traced(stat, summary.kept) else ""]
                                for stat in vmstat.FREEBSD]),
        "maps.csv": (["pid", "why", "t", *trace_schema.MAP_ENTRY],
                     [[pid, e["kind"], e["t"], *(row.get(name) for name in trace_schema.MAP_ENTRY)]
                      for pid, e in sorted(summary.maps.items()) for row in e["entries"]]),
        "chain_depth.csv": (["t_from", "t_to", "faults", "mean_depth", "max_depth"],
                            [[a, b, n, round(mean, 3), deepest] for a, b, n, mean, deepest in summary.depth.rows()]),
    }
    written = []
    for name, (columns, rows) in tables.items():
        path = os.path.join(directory, name)
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(rows)
        written.append(path)
    return written


def warnings(summary: Summary, describe: Program) -> list[str]:
    """What the reader should know about the summary: a trace cut short, a program that cannot be read."""
    said = list(summary.warnings)
    if describe.problem and summary.fault_rips:
        said.append(f"{describe.path}: warning: {describe.problem}: the faulting instructions are shown "
                    "without their text")
    return said


def render(summary: Summary, describe: Program, top: int, console) -> None:
    """The terminal summary, as rich tables on `console`; its warnings on stderr."""
    from rich.markup import escape
    from rich.table import Table

    header = summary.header
    console.print(f"[bold]{escape(header['program'])}[/bold] {escape(' '.join(header['arguments'][1:]))}  "
                  f"(vmgames {header['vmgames']}, trace format {header['version']}, "
                  f"{sum(summary.events.values()):,} events, RAM {header['ram'] >> 20} MiB)")
    pids = sorted({p for p, _, _ in summary.events})
    shown = pids[:8]
    table = Table(title="Events by type and kind")
    table.add_column("type")
    table.add_column("kind")
    table.add_column("total", justify="right")
    for pid in shown:
        table.add_column(f"pid {pid}", justify="right")
    if len(pids) > len(shown):
        table.add_column("other pids", justify="right")
    totals: Counter = Counter()
    for (_, type_, kind), n in summary.events.items():
        totals[(type_, kind)] += n
    for (type_, kind), n in sorted(totals.items()):
        row = [type_, syscall.describe(kind) if type_ == "syscall" else kind, f"{n:,}"]
        row += [f"{summary.events[(pid, type_, kind)]:,}" for pid in shown]
        if len(pids) > len(shown):
            row.append(f"{sum(summary.events[(p, type_, kind)] for p in pids[len(shown):]):,}")
        table.add_row(*row)
    console.print(table)

    faults = Table(title=f"Top faulting instructions (user faults; of {sum(summary.fault_rips.values()):,})")
    faults.add_column("rip", justify="right")
    faults.add_column("faults", justify="right")
    if describe.has_symbols:
        faults.add_column("function")
    faults.add_column("instruction")
    for rip, n in summary.fault_rips.most_common(top):
        function = [escape(describe.function(rip))] if describe.has_symbols else []
        faults.add_row(f"{rip:#x}", f"{n:,}", *function, escape(describe(rip)))
    console.print(faults)

    tlb = Table(title="TLB invalidations by reason")
    for column in ("reason", "Linux tlb_flush reason", "invalidate page", "invalidate all",
                   "shootdowns (TLB_REMOTE_SEND_IPI)", "IPIs taken (TLB_REMOTE_SHOOTDOWN)"):
        tlb.add_column(column, justify="left" if "reason" in column else "right")
    for reason, row in tlb_by_reason(summary.reasons).items():
        tlb.add_row(escape(reason), row["linux"], *(f"{row[key]:,}" for key in
                                                     ("invalidate_page", "invalidate_all", "shootdowns", "ipis")))
    console.print(tlb)
    if len(summary.cpu_numbers) > 1:
        console.print(cpu_table(summary))

    bsd = Table(title="As FreeBSD's vmstat -s names them")
    for column in ("count", "vmstat -s", "name"):
        bsd.add_column(column, justify="right" if column == "count" else "left")
    counts = vmstat.freebsd(summary.count)
    for stat in vmstat.FREEBSD:
        traced = vmstat.traced(stat, summary.kept)
        bsd.add_row(f"{counts[stat.name]:,}" if traced else "not traced", stat.text, stat.name)
    console.print(bsd)

    depth = Table(title="Shadow-chain depth over virtual time (instructions)")
    for column in ("from t", "to t", "faults", "mean depth", "max depth"):
        depth.add_column(column, justify="right")
    for start, end, n, mean, deepest in summary.depth.rows():
        depth.add_row(f"{start:,}", f"{end:,}", f"{n:,}", f"{mean:.2f}", str(deepest))
    console.print(depth)
    for pid, event in sorted(summary.maps.items()):
        when = "just before its exit" if event["kind"] == "exit" else "at the snapshot"
        console.print(f"\n[bold]Map of pid {pid} {when}[/bold] (t = {event['t']:,}; procstat -v)")
        console.print(procstat.format_table(pid, event["entries"]), markup=False, highlight=False, soft_wrap=True)
    for warning in warnings(summary, describe):
        print(f"vmgames: {warning}", file=sys.stderr)
