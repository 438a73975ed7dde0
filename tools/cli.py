"""The `vmgames` command: assemble programs, run them, and show what the kernel did."""

from __future__ import annotations

import argparse
import bdb
import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

from emulator.determinism import DEFAULT_SEED
from emulator.machine import DEFAULT_RAM_SIZE
from kernel import errno, signals
from kernel.errno import SyscallError
from kernel.kernel import DEFAULT_MAX_PROCESSES, Kernel
from kernel.observer import Observer
from kernel.proc import Process
from kernel.sched import DEFAULT_QUANTUM
from kernel.wire import DEFAULT_WIRE_CAPACITY, DEFAULT_WIRE_RATE
from tools import stats as run_stats
from tools import trace
from tools.boot import boot
from tools.experiments import zerocopy
from tools.limits import RunLimits

if TYPE_CHECKING:
    from tools.gdb.monitor import EventTap

DESCRIPTION = """\
vmgames: an instruction-level x86-64 machine with a toy kernel in Python.
Unicorn executes real user code; the kernel handles page faults with
FreeBSD-style VM objects and real x86-64 page tables, and counts every
fault, page copy, PTE write and TLB invalidation."""

RUN_USAGE = "vmgames run [OPTIONS] [--] PROG [ARGS...]"

RUN_DESCRIPTION = """\
Run a static x86-64 Linux program on the vmgames machine.

Options end at the program, as with strace, qemu-x86_64 and gdb --args:
everything after PROG is the program's own, dashes and all
(vmgames run build/yes --stats prints "--stats" for ever).  A -- before
PROG ends the options too (for a program whose name starts with a dash);
one right after PROG is dropped, so the older form
vmgames run PROG -- ARGS still passes just ARGS."""

RUN_EPILOG = """\
limits:
  --max-instructions N  and  --timeout SECONDS  stop a run that does not end
  (an endless loop, a fork bomb, a program that execs itself for ever):
  every guest process is killed (SIGKILL), sleeping ones too, one line says
  which limit ended the run and when (virtual time, instructions retired),
  and vmgames exits 124, as timeout(1) does.  N counts the user instructions
  all processes retire, the figure --stats shows; the run stops exactly
  there.  No instruction retires while the host blocks (a read of a stdin
  that never comes, a write to a host pipe nobody reads), and the kernel's
  work costs no virtual time: only --timeout bounds the host time.
  --fast keeps no instruction clock, so it takes --timeout only.  Ctrl-C
  (SIGINT) ends the run the same way, each process getting SIGINT, with
  status 130 (a second Ctrl-C quits at once).  --stats, --stats-json and
  --trace (every process's exit included) are written however the run ends.
  --max-procs N bounds the process table, zombies included: fork then
  fails with EAGAIN.

exit status:
  N         the program (the first process) exited with status N
  128+N     signal N killed it, said in one line on stderr: 139 SIGSEGV,
            141 SIGPIPE (it wrote to a pipe whose reader had gone: a pipe
            of its own, or vmgames' stdout: vmgames run build/yes | head -1)
  124       --max-instructions or --timeout ended the run
  130       Ctrl-C ended the run
  126       the program is there but cannot be run: no execute bit (a .s
            needs none), a directory, not a static x86-64 ELF
  127       the program (or the .s) is not there
  2         bad options (one line on stderr)

The program's stdin, stdout and stderr are vmgames' own: one vmgames was
started without is closed in the guest (EBADF), a full device gives it
ENOSPC, any other error of the host's EIO.

examples:
  vmgames run userland/hello.s
  vmgames run --stats build/touch 1024
  vmgames run --stats-json stats.json build/touch 64
  vmgames run --max-instructions 1000000 build/yes > /dev/null
  vmgames run --gdb 1234 build/cowfork     (then: gdb build/cowfork -ex 'target remote :1234')
  vmgames run --break-on fault:cow-copy build/cowfork   (pdb inside the fault handler)"""

ASM_EPILOG = """\
The source is GNU-style Intel syntax (.intel_syntax noprefix) with .text,
.rodata, .data and .bss sections; the output is a static ELF64 executable
that Linux can run too.

example:
  vmgames asm userland/hello.s -o hello && ./hello"""


DEFAULT_SNAPSHOT = "vmgames-snapshot.dot"
REPORT_WIDTH = 140   # the events table: type, kind, total, 8 pids and the rest


# No size or count of any option comes near this: bigger is a typing accident, refused before any arithmetic.
LARGEST = (1 << 63) - 1
MAX_PROCS_LIMIT = 1 << 22      # Linux's PID_MAX_LIMIT
SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}     # timeout(1)'s


def parse_size(text: str) -> int:
    """'256M', '1G', '64KiB', '65536' -> bytes: decimal digits and a unit, nothing else."""
    match = re.fullmatch(r"([0-9]+)\s*(?:([kmgt])(?:i?b)?|b)?", text.strip(), re.IGNORECASE | re.ASCII)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 256M or 1G)")
    size = int(match[1]) * SIZE_UNITS[(match[2] or "").lower()]
    if size > LARGEST:
        raise argparse.ArgumentTypeError(f"{text!r} is too large")
    return size


def parse_count(text: str) -> int:
    """A whole number of things: decimal digits, nothing else."""
    if re.fullmatch(r"[0-9]+", text.strip(), re.ASCII) is None:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    count = int(text)
    if count > LARGEST:
        raise argparse.ArgumentTypeError(f"{text!r} is too large")
    return count


def parse_duration(text: str) -> float:
    """Seconds, as timeout(1) takes them: '10', '2.5', '1m', '1h'."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([smhd]?)", text.strip(), re.ASCII)
    seconds = float(match[1]) * DURATION_UNITS[match[2]] if match else 0.0
    if not 0 < seconds < 1e9:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 10, 2.5 or 1m; more than 0)")
    return seconds


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: 'vmgames: ...', exit status 2, and where to find the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"vmgames: {message}; see '{self.prog} --help'\n")


def _version() -> str:
    try:
        return importlib.metadata.version("vmgames")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def parse_seed(text: str) -> int:
    """--seed: a whole number that fits in 64 bits (decimal digits, as every count)."""
    if re.fullmatch(r"[0-9]+", text.strip(), re.ASCII) is None:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    seed = int(text)
    if seed >= 1 << 64:
        raise argparse.ArgumentTypeError(f"{text} is out of range: a seed is 0 to 2**64-1")
    return seed


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = Parser(prog="vmgames", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"vmgames {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    asm = commands.add_parser("asm", help="assemble Intel-syntax source into a static ELF64 executable",
                              description="Assemble Intel-syntax source into a static ELF64 executable.",
                              epilog=ASM_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    asm.add_argument("source", help="assembly source file (.s)")
    asm.add_argument("-o", "--output", help="executable to write (default: the source name without .s)")

    # No abbreviations: every option must be spelled out, so that where the options end is plain.
    run = commands.add_parser("run", help="run a program (an ELF executable, or a .s file assembled first)",
                              usage=RUN_USAGE, description=RUN_DESCRIPTION, epilog=RUN_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    run.add_argument("program", nargs="?", metavar="PROG", help="ELF executable, or assembly source ending in .s")
    run.add_argument("args", nargs="*", metavar="ARGS", help="the program's arguments: everything after PROG")
    run.add_argument("--stats", action="store_true", help="print a table of what the kernel did on stderr")
    run.add_argument("--stats-json", metavar="FILE", help="write the same counters as JSON to FILE")
    run.add_argument("--trace", metavar="FILE",
                     help="write every event (faults, TLB invalidations, PTE writes, pages, objects, syscalls, "
                          "processes) as JSON Lines to FILE; see docs/trace-format.md")
    run.add_argument("--trace-events", metavar="TYPES",
                     help=f"only these event types in the trace, comma-separated ({', '.join(trace.EVENT_TYPES)})")
    run.add_argument("--ram", type=parse_size, default=DEFAULT_RAM_SIZE, metavar="SIZE",
                     help="physical RAM of the machine (default 256M)")
    run.add_argument("--root", default=".", metavar="DIR",
                     help="host directory the guest sees as / (read-only; default: the current directory)")
    run.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                     help="put a variable in the program's environment (it starts empty, for reproducibility)")
    run.add_argument("--snapshot-at", metavar="N|exit",
                     help="draw the address spaces and shadow chains when N instructions have run, or just before "
                          "the first process exits (Graphviz DOT; SVG too if graphviz is installed), and list each "
                          "map as procstat -v does (on stderr and in a .txt beside it)")
    run.add_argument("--snapshot", metavar="FILE",
                     help=f"where --snapshot-at writes (default {DEFAULT_SNAPSHOT}); only with --snapshot-at")
    run.add_argument("--fast", action="store_true",
                     help="run at raw Unicorn speed without counting instructions (not reproducible)")
    run.add_argument("--seed", type=parse_seed, default=DEFAULT_SEED, metavar="N",
                     help=f"seed of the values rdrand and rdseed give, 0 to 2**64-1 (default {DEFAULT_SEED}); "
                          "the TSC is virtual time and CPUID a fixed model's, so a run never reads the host")
    run.add_argument("--max-instructions", type=parse_count, metavar="N",
                     help="end the run (exit status 124) once all processes together have retired N instructions; "
                          "not with --fast")
    run.add_argument("--timeout", type=parse_duration, metavar="SECONDS",
                     help="end the run (exit status 124) after this much host time: 10, 2.5, 1m (s, m, h, d)")
    run.add_argument("--max-procs", type=parse_count, default=DEFAULT_MAX_PROCESSES, metavar="N",
                     help="processes the process table holds, zombies included; fork fails with EAGAIN past it "
                          f"(default {DEFAULT_MAX_PROCESSES})")
    run.add_argument("--quantum", type=parse_count, default=DEFAULT_QUANTUM, metavar="N",
                     help=f"instructions per scheduling slice (default {DEFAULT_QUANTUM:,})")
    run.add_argument("--wire-rate", type=parse_count, default=DEFAULT_WIRE_RATE, metavar="BYTES",
                     help=f"bytes the peer of /dev/wire takes per 1000 instructions (default {DEFAULT_WIRE_RATE})")
    run.add_argument("--wire-buffer", type=parse_size, default=DEFAULT_WIRE_CAPACITY, metavar="SIZE",
                     help=f"bytes a wire holds in flight before a sender waits ({DEFAULT_WIRE_CAPACITY >> 10}K)")
    run.add_argument("--gdb", metavar="[HOST:]PORT",
                     help="wait for gdb (target remote HOST:PORT) before the first instruction; HOST is "
                          "127.0.0.1 unless given; port 0 picks a free one (see docs/gdb-tutorial.md)")
    run.add_argument("--break-on", metavar="fault[:KIND]|syscall:NAME",
                     help="stop in Python's debugger (pdb, or $PYTHONBREAKPOINT) inside the kernel, before it "
                          "handles each such fault or syscall; NAME is Linux's (newfstatat), strace's for a "
                          "number Linux never assigned (syscall_0x1f4), or a number (262)")
    experiment = commands.add_parser("experiment", help="run one of the measured experiments",
                                     description="Run an experiment and print its table.")
    experiments = experiment.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    chains = experiments.add_parser(
        "chains", help="shadow-chain depth and dead pages under cascades of forks, with and without collapse",
        description="Run seeded cascades of forks (userland/cascade.s: parents and children both fork and "
                    "write random pages) with collapse and bypass on and off, and report the shadow-chain "
                    "depth every page fault walks and the dead pages left behind.")
    chains.add_argument("--seeds", type=int, default=10, help="cascades per setting (seeds 1..N; default 10)")
    chains.add_argument("--steps", type=int, default=40, help="random steps per process (default 40)")
    chains.add_argument("--pages", type=int, default=32, help="pages of the shared array, 1-64 (default 32)")
    chains.add_argument("--max-depth", type=int, default=5, help="depth limit of the process tree (default 5)")
    chains.add_argument("--csv", metavar="FILE", help="also write per-run figures as CSV")
    zc = experiments.add_parser(
        "zerocopy", help="copying, copy-on-write and vmsplice sends: faults, copies, TLB work and cost per MiB",
        description="Run every workload (userland/c/zc_*.c, built with gcc) under every send mode and size, "
                    "each on a fresh machine sending to a slow wire, and report per MiB delivered: page faults "
                    "by kind, pages and bytes copied, PTE writes, TLB invalidations, kernel entries, "
                    "instructions, the bytes the receiver got against those meant (and how many were corrupt), "
                    "and an estimated cost in cycles. Writes a CSV and a plot (PNG and SVG).",
        epilog=ZEROCOPY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    zc.add_argument("--workloads", nargs="+", metavar="NAME", default=list(zerocopy.WORKLOADS),
                    help=f"which workloads (default: all of {', '.join(zerocopy.WORKLOADS)})")
    zc.add_argument("--modes", nargs="+", metavar="MODE", default=list(zerocopy.MODES),
                    help=f"which send modes (default: all of {', '.join(zerocopy.MODES)})")
    default_sizes = [zerocopy.size_text(s) for s in zerocopy.DEFAULT_SIZES]
    zc.add_argument("--sizes", nargs="+", metavar="SIZE", default=default_sizes,
                    help=f"bytes per send (default: {' '.join(default_sizes)})")
    zc.add_argument("--total", default=zerocopy.size_text(zerocopy.DEFAULT_TOTAL), metavar="SIZE",
                    help="bytes each cell sends, a multiple of every size "
                         f"(default {zerocopy.size_text(zerocopy.DEFAULT_TOTAL)})")
    zc.add_argument("--sink", choices=list(zerocopy.SINKS), default="wire",
                    help="where the workloads send: " + "; ".join(f"{k}: {v}" for k, v in zerocopy.SINKS.items())
                         + " (default wire)")
    zc.add_argument("--wire-rate", type=int, default=zerocopy.DEFAULT_WIRE_RATE, metavar="N",
                    help=f"bytes the wire drains per 1000 instructions (default {zerocopy.DEFAULT_WIRE_RATE})")
    zc.add_argument("--costs", metavar="FILE",
                    help="override the cost model's defaults from a JSON or TOML file (see tools/costmodel.py)")
    zc.add_argument("--csv", metavar="FILE", default="zerocopy.csv",
                    help="where to write the per-cell figures (default zerocopy.csv)")
    zc.add_argument("--plot", metavar="DIR", default=".",
                    help="directory for zerocopy.png and zerocopy.svg (default: the current directory)")
    report = commands.add_parser(
        "report", help="summarise a trace written by vmgames run --trace",
        description="Summarise a trace: events by type and kind per process, the top faulting instructions "
                    "(disassembled from the traced program), TLB invalidations by reason (with Linux's), the "
                    "counters under FreeBSD's vmstat -s names, the shadow-chain depth over virtual time, and each "
                    "process's last map as procstat -v shows it.")
    report.add_argument("trace", help="a trace file (JSON Lines, from vmgames run --trace)")
    report.add_argument("--csv", metavar="DIR", help="also write the tables as CSV files (tidy, for pandas) to DIR")
    report.add_argument("--top", type=int, default=10, metavar="N", help="faulting instructions to list (default 10)")
    report.add_argument("--plots", metavar="DIR",
                        help="also draw faults over time, a per-page fault heat map and chain depth (PNG and SVG)")
    report.add_argument("--perfetto", metavar="FILE",
                        help="also write the trace in Chrome's trace-event format (open it in ui.perfetto.dev)")
    return parser, {"asm": asm, "run": run, "experiment": experiment, "report": report}


ZEROCOPY_EPILOG = """\
Lists may be given with spaces or commas (--sizes 4k,64k).  Each cell's
command line for vmgames run is in the CSV, so any cell can be rerun alone
with --stats or --trace.

examples:
  vmgames experiment zerocopy
  vmgames experiment zerocopy --workloads static pool --modes cow vmsplice --sizes 64k --total 4m
  vmgames experiment zerocopy --costs cold.json     (e.g. {"copy_page_ns": 1000})"""


def _say(text: str) -> None:
    """Tell the user, on stderr; a stderr that cannot be written loses the message, it does not end the run."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _error(message: str) -> None:
    _say(f"vmgames: {message}")


def _unwritable_file(path: str) -> str | None:
    """Why `path` could not be written, as far as can be told without writing it; None if it could."""
    if os.path.isdir(path):
        return "Is a directory"
    directory = os.path.dirname(path) or "."
    if not os.path.exists(directory):
        return "No such file or directory"
    if not os.path.isdir(directory):
        return "Not a directory"
    if not os.access(path if os.path.exists(path) else directory, os.W_OK):
        return "Permission denied"
    return None


def _make_directory(path: str) -> str | None:
    """Make the output directory `path` (and its parents); why it could not be, or None."""
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        return "Not a directory"
    except OSError as error:
        return error.strerror
    return None


def command_asm(args: argparse.Namespace) -> int:
    output = args.output or (args.source[:-2] if args.source.endswith(".s") else args.source + ".out")
    problem = _unwritable_file(output)
    if problem:
        _error(f"{output}: {problem}")
        return 1
    try:
        source = _read_source(args.source)
    except OSError as error:
        _error(f"{args.source}: {error.strerror}")
        return 1
    except UnicodeDecodeError:
        _error(f"{args.source}: not a text file")
        return 1
    return _assemble(source, args.source, output)


def _read_source(path: str) -> str:
    """The assembly source at `path`, no more of it than the assembler takes (a bigger file is refused
    without being read whole); OSError if it cannot be read, UnicodeDecodeError if it is not text."""
    from tools.assembler.source import MAX_SOURCE_SIZE

    with open(path, encoding="utf-8") as f:
        return f.read(MAX_SOURCE_SIZE + 1)


def _assemble(source: str, source_path: str, output: str) -> int:
    """Assemble `source` into the executable `output`: 0, or 1 once the errors are said."""
    from tools.assembler import AssemblyError, assemble_with_warnings

    try:
        image, warnings = assemble_with_warnings(source, source_path)
    except AssemblyError as error:
        _say(str(error))
        return 1
    for warning in warnings:
        _say(str(warning))
    try:
        with open(output, "wb") as f:
            f.write(image)
        os.chmod(output, 0o755)
    except OSError as error:
        _error(f"{output}: {error.strerror}")
        return 1
    return 0


def _cannot_run(program: str, number: int, exec_error: str = "") -> int:
    """Say why `program` cannot be run, as a shell does; the status a shell gives: 127 when it is not
    there, 126 when it is but cannot be run."""
    reasons = {errno.ENOEXEC: f"cannot execute: {exec_error}", errno.ENOMEM: "not enough memory to load it"}
    _error(f"{program}: {reasons.get(number) or os.strerror(number)}")
    return 127 if number == errno.ENOENT else 126


def _gib(size: int) -> str:
    return f"{size / (1 << 30):.1f}G"


def _host_memory() -> int | None:
    """The host's physical memory in bytes, if it says."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def _run_options_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the options of vmgames run that argparse cannot see; None if nothing."""
    if args.ram < (1 << 20) or args.ram % 4096:
        return f"--ram must be at least 1M and a multiple of 4K, not {args.ram}"
    host_memory = _host_memory()
    if host_memory and args.ram > host_memory:
        return f"--ram {_gib(args.ram)} is more than this host's memory ({_gib(host_memory)})"
    if not os.path.isdir(args.root):
        return f"--root {args.root}: {'Not a directory' if os.path.exists(args.root) else 'No such file or directory'}"
    for variable in args.env:
        name, equals, _ = variable.partition("=")
        if not equals or not name:
            return f"--env takes NAME=VALUE, not {variable!r}"
    for option, value in (("--quantum", args.quantum), ("--wire-rate", args.wire_rate),
                          ("--max-instructions", args.max_instructions), ("--max-procs", args.max_procs)):
        if value is not None and value <= 0:
            return f"{option} must be positive"
    if args.max_procs > MAX_PROCS_LIMIT:
        return f"--max-procs must be at most {MAX_PROCS_LIMIT:,} (Linux's PID_MAX_LIMIT)"
    if args.max_instructions is not None and args.fast:
        return "--max-instructions needs the instruction clock: it cannot be used with --fast (use --timeout)"
    if args.gdb is not None and (args.max_instructions is not None or args.timeout is not None):
        return "--gdb cannot be used with --max-instructions or --timeout (gdb stops the run as it likes)"
    return None


def command_run(args: argparse.Namespace, closed_fds: frozenset[int] = frozenset()) -> int:
    problem = _run_options_problem(args)
    if problem:
        _error(problem)
        return 2
    if args.wire_buffer < 2 * 4096:
        _error("--wire-buffer must be at least 8K (two pages)")
        return 2
    problem = _unwritable_file(args.stats_json) if args.stats_json is not None else None
    if problem:
        _error(f"--stats-json {args.stats_json}: {problem}")
        return 2
    if args.snapshot_at is not None and args.snapshot_at != "exit":
        if not args.snapshot_at.isdigit():
            _error(f"--snapshot-at takes a number of instructions or 'exit', not {args.snapshot_at!r}")
            return 2
        if args.fast:
            _error("--snapshot-at N needs the instruction clock: it cannot be used with --fast")
            return 2
    if args.snapshot is not None and args.snapshot_at is None:
        _error("--snapshot FILE needs --snapshot-at N|exit (when to take it)")
        return 2
    if args.snapshot_at is not None:
        args.snapshot = args.snapshot or DEFAULT_SNAPSHOT
        # Checked now, not when the snapshot is due, halfway through the run.
        for path in _snapshot_files(args.snapshot):
            problem = _unwritable_file(path)
            if problem:
                beside = "" if path == args.snapshot else f" (and {path} beside it)"
                _error(f"--snapshot {args.snapshot}{beside}: {problem}")
                return 2
    if args.gdb is not None:
        if args.fast:
            _error("--gdb needs the instruction clock: it cannot be used with --fast")
            return 2
        if args.snapshot_at is not None:
            _error("--gdb and --snapshot-at cannot be used together")
            return 2
        if args.break_on is not None:
            _error("--gdb and --break-on cannot be used together (use 'monitor break' in gdb)")
            return 2
        host, _, port = args.gdb.rpartition(":")
        if not port.isdigit() or int(port) > 65535:
            _error(f"--gdb takes [HOST:]PORT, not {args.gdb!r}")
            return 2
    break_on = None
    if args.break_on is not None:
        from tools import breakon

        break_on = breakon.parse(args.break_on)
        if isinstance(break_on, str):
            _error(break_on)
            return 2
    trace_types = None
    if args.trace_events:
        trace_types = {t.strip() for t in args.trace_events.split(",") if t.strip()}
        unknown = sorted(trace_types - set(trace.EVENT_TYPES))
        if unknown or not trace_types:
            _error(f"--trace-events: unknown event type {', '.join(unknown) or '(none given)'}; "
                   f"choose from {', '.join(trace.EVENT_TYPES)}")
            return 2
        if not args.trace:
            _error("--trace-events needs --trace FILE")
            return 2
    with tempfile.TemporaryDirectory(prefix="vmgames-") as scratch, contextlib.ExitStack() as cleanup:
        program = args.program
        if program.endswith(".s"):
            try:
                source = _read_source(args.program)
            except OSError as error:
                return _cannot_run(args.program, error.errno)     # as a program that is not there
            except UnicodeDecodeError:
                _error(f"{args.program}: not a text file")
                return 1
            program = os.path.join(scratch, os.path.basename(program)[:-2])
            status = _assemble(source, args.program, program)
            if status:
                return status
        try:
            kernel = boot(args.ram, deterministic=not args.fast, seed=args.seed, root=args.root,
                          quantum=args.quantum, max_procs=args.max_procs, wire_rate=args.wire_rate,
                          wire_buffer=args.wire_buffer)
            machine = kernel.machine
        except (OSError, MemoryError, OverflowError) as error:
            why = getattr(error, "strerror", None) or "out of memory"
            _error(f"--ram {_gib(args.ram)}: the host cannot give that much memory ({why})")
            return 2
        if args.trace:
            try:
                trace_file = open(args.trace, "wb")
            except OSError as error:
                _error(f"{args.trace}: {error.strerror}")
                return 2
            options = {"fast": args.fast, "quantum": args.quantum, "root": args.root, "env": args.env,
                       "seed": args.seed,
                       "trace_events": sorted(trace_types) if trace_types else None,
                       "wire_rate": args.wire_rate, "wire_buffer": args.wire_buffer, "snapshot_at": args.snapshot_at,
                       "gdb": args.gdb is not None, "break_on": args.break_on, "max_procs": args.max_procs,
                       "max_instructions": args.max_instructions, "timeout": args.timeout, "cwd": os.getcwd()}
            trace_sink = trace.writer(
                trace_file, trace.header(args.program, [args.program] + args.args, options, args.ram), trace_types)
            cleanup.callback(_finish_trace, trace_sink, trace_file)   # however the run ends
            kernel.recorder.sink = trace_sink
        snapshot = None
        if args.snapshot_at is not None:
            snapshot = SnapshotAt(args.snapshot_at, args.snapshot, tracing=bool(args.trace))
            kernel.observe(snapshot)
        if args.trace:
            from tools import procstat

            kernel.observe(procstat.MapsAtExit())   # after any snapshot: the report shows the last map
        if args.gdb is not None:
            from tools.gdb.stub import tap_events

            gdb_tap = tap_events(kernel)   # from exec on, so that 'monitor faults' lists what 'monitor stats' counts
        try:
            executable = kernel.fs.open_host(program)
            if not executable.executable:
                raise SyscallError(errno.EACCES)     # no execute bit: execve refuses it too (a .s needs none)
            init = kernel.spawn(executable, [args.program] + args.args, args.env)
        except SyscallError as error:
            return _cannot_run(args.program, error.errno, kernel.exec_error)
        for fd in closed_fds:
            init.close_fd(fd)     # the host gave us none: neither has the guest
        if break_on is not None:
            kernel.observe(breakon.BreakOn(*break_on))
        limits = RunLimits(args.max_instructions, args.timeout)
        if args.gdb is not None:
            status = _run_under_gdb(kernel, init, args.gdb, gdb_tap)
            if status is not None:
                return status
        else:
            # Ctrl-C ends the run as a limit does; in pdb (--break-on) it is pdb's.
            with limits.enforced(kernel, take_sigint=break_on is None):
                kernel.run()
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        ending = limits.ending
        if ending is not None:
            _error(ending.message)
        elif init.death:
            _error(init.death)
        status = ending.status if ending is not None else init.shell_status
        if snapshot is not None and snapshot.pause_at is not None:
            due, ended = int(args.snapshot_at), machine.now
            _error(f"the run ended at t = {ended:,}, "
                   f"{f'before {due:,}' if ended < due else f'as instruction {due:,} ran'}: no snapshot")
        counters = run_stats.collect(kernel.recorder, machine.retired if machine.deterministic else None,
                                     kernel.allocator.total)
        counters["exit_status"] = status
        counters["ended_by"] = ending.limit if ending is not None else None
        if args.stats:
            _say(run_stats.format_table(counters))
        if args.stats_json:
            try:
                with open(args.stats_json, "w", encoding="utf-8") as f:
                    json.dump(counters, f, indent=2)
                    f.write("\n")
            except OSError as error:
                _error(f"--stats-json {args.stats_json}: {error.strerror}")
        return status


def main(argv: list[str] | None = None) -> int:
    closed = _hold_closed_standard_fds()
    try:
        return _main(sys.argv[1:] if argv is None else argv, closed)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except bdb.BdbQuit:
        _error("quit from the debugger (--break-on)")
        return 130
    except BrokenPipeError:
        return 128 + signals.SIGPIPE     # our stdout's reader has gone: what a shell reports for a C tool
    finally:
        _settle_standard_streams()


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line as the commands take it; exits (status 2, one line) if it is wrong."""
    parser, commands = build_parser()
    if argv and argv[0] == "run":
        return _parse_run(commands["run"], argv[1:])
    if argv and argv[0] == "asm":
        args = commands["asm"].parse_intermixed_args(argv[1:])
        args.command = "asm"
        return args
    return parser.parse_args(argv)


def _parse_run(run: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """vmgames run [OPTIONS] [--] PROG [ARGS...]: the options end at the first word that is not one of
    them or its value; everything after the program is the program's (but a -- right after it is dropped)."""
    # argparse knows which options take a value; it has no public way to say so.
    takes_value = {name for action in run._actions if action.nargs != 0 for name in action.option_strings}
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            index += 1
            break
        if not word.startswith("-") or word == "-":
            break
        index += 2 if word in takes_value else 1     # --name=value is one word: not in takes_value
    options, rest = argv[:index], argv[index:]
    if options[-1:] == ["--"]:
        options = options[:-1]
    if not rest:
        run.parse_args(options)   # --help, or a mistake in the options, is said here
        run.error(f"which program? (usage: {RUN_USAGE})")
    program, arguments = rest[0], rest[1:]
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    args = run.parse_args([*options, "--", program])
    args.command, args.args = "run", arguments
    return args


def _main(argv: list[str], closed_fds: frozenset[int]) -> int:
    args = parse_args(argv)
    if args.command == "asm":
        return command_asm(args)
    if args.command == "experiment":
        return command_experiment(args)
    if args.command == "report":
        return command_report(args)
    return command_run(args, closed_fds)


def _hold_closed_standard_fds() -> frozenset[int]:
    """The standard fds vmgames was started without (Python then has no sys.stdin, stdout or stderr).

    The guest gets them closed too.  Meanwhile /dev/null holds each free one, so that no file vmgames
    opens (a trace, the program) takes its number, and our own messages to a missing stderr go nowhere.
    """
    closed = frozenset(fd for fd, stream in enumerate((sys.stdin, sys.stdout, sys.stderr)) if stream is None)
    for fd in closed:
        try:
            os.fstat(fd)
        except OSError:
            placeholder = os.open(os.devnull, os.O_RDWR)
            if placeholder != fd:
                os.dup2(placeholder, fd)
                os.close(placeholder)
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")   # for as long as the process lives
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")
    return closed


def _settle_standard_streams() -> None:
    """Flush our stdout and stderr now; one that cannot be written (its reader gone, a full disk) is pointed
    at /dev/null, so that Python's own flush at exit neither prints 'Exception ignored' nor exits 120."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)


def _run_under_gdb(kernel: Kernel, init, address: str, tap: EventTap) -> int | None:
    """Wait for gdb, run the program under it; an exit status if the run cannot go on normally."""
    from tools.gdb.protocol import Connection
    from tools.gdb.stub import GdbStub, KilledFromGdb, listen

    try:
        server = listen(address)
    except (OSError, OverflowError) as error:
        _error(f"--gdb {address}: {getattr(error, 'strerror', None) or error}")
        return 2
    with server:
        host, port = server.getsockname()[:2]
        _error(f"waiting for gdb on {host}:{port} (in gdb: target remote {host}:{port})")
        sock, _ = server.accept()
    stub = GdbStub(kernel, Connection(sock), tap)
    try:
        kernel.run()
    except KilledFromGdb:
        _error(f"{init.name}[{init.pid}]: killed from gdb")
        return 128 + 9
    stub.finish(init)
    return None


def _finish_trace(sink, stream) -> None:
    """Write the trace's last lines and close it; a write that failed (a full disk) is said, not raised."""
    try:
        try:
            sink.flush()
        finally:
            stream.close()
    except OSError as error:
        _error(f"--trace {stream.name}: {error.strerror}: the trace stops short of the run")


T = TypeVar("T")


def _snapshot_files(path: str) -> tuple[str, str, str]:
    """The DOT file, the SVG drawn from it and the procstat -v tables beside it."""
    base = os.path.splitext(path)[0]
    return path, base + ".svg", base + ".txt"


def _draw_svg(dot: str, svg: str) -> None:
    """Draw the snapshot with graphviz's dot, if it is there; say what came of it."""
    if not shutil.which("dot"):
        _error(f"graphviz's dot not found: wrote only {dot}; install graphviz for the SVG")
        return
    try:
        drawn = subprocess.run(["dot", "-Tsvg", dot, "-o", svg], capture_output=True, text=True, check=False)
    except OSError as error:
        _error(f"dot: {error.strerror}: no SVG drawn")
        return
    if drawn.returncode:
        said = drawn.stderr.strip().splitlines()
        _error(f"dot failed (exit status {drawn.returncode}{': ' + said[0] if said else ''}): no SVG drawn")
        return
    _error(f"and drawn in {svg}")


class SnapshotAt(Observer):
    """Writes the VM picture and the procstat -v tables once: at instruction N, or before the first exit."""

    def __init__(self, when: str, path: str, tracing: bool) -> None:
        self.at_exit = when == "exit"
        self.pause_at = None if self.at_exit else int(when)
        self.path = path
        self.tracing = tracing
        self.written = False

    def on_pause(self, kernel: Kernel) -> None:
        self.write(kernel, f"t = {kernel.machine.now:,} instructions")

    def before_exit(self, kernel: Kernel, proc: Process) -> None:
        if self.at_exit and not self.written:
            self.write(kernel, f"the exit of {proc.name} [{proc.pid}], t = {kernel.machine.now:,}")

    def write(self, kernel: Kernel, title: str) -> None:
        from tools import procstat
        from tools.snapshot import live_processes, to_dot

        self.written = True
        dot, svg, text = _snapshot_files(self.path)
        try:
            with open(dot, "w", encoding="utf-8") as f:
                f.write(to_dot(kernel, title))
        except OSError as error:
            _error(f"--snapshot {dot}: {error.strerror}: no snapshot")
            return
        _error(f"snapshot at {title} written to {dot}")
        _draw_svg(dot, svg)
        tables = []
        for proc in live_processes(kernel):
            tables.append(procstat.format_table(proc.pid, procstat.entries(proc)))
            if self.tracing:
                procstat.record(kernel.recorder, proc, "snapshot")
        _say("\n\n".join(tables))
        try:
            with open(text, "w", encoding="utf-8") as f:
                f.write("\n\n".join(tables) + "\n")
        except OSError as error:
            _error(f"{text}: {error.strerror}: the maps are only on stderr")
            return
        _error(f"the maps as procstat -v shows them written to {text}")


def _with_progress(what: str, path: str, work: Callable[[Callable[[int], None] | None], T]) -> T:
    """work(progress): a pass over the trace at `path`, with a progress bar when stderr is a terminal and it is big."""
    from rich.console import Console
    from rich.progress import Progress

    size = os.path.getsize(path)
    if not sys.stderr.isatty() or size <= (4 << 20):
        return work(None)
    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(what, total=size)
        return work(lambda done: bar.update(task, completed=done))


def command_report(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tools import report

    if args.top < 0:
        _error("--top must not be negative")
        return 2
    # Outputs are checked before the trace is read: a bad path costs no wait.
    for option, directory in (("--csv", args.csv), ("--plots", args.plots)):
        problem = _make_directory(directory) if directory is not None else None
        if problem:
            _error(f"{option} {directory}: {problem}")
            return 2
    problem = _unwritable_file(args.perfetto) if args.perfetto is not None else None
    if problem:
        _error(f"--perfetto {args.perfetto}: {problem}")
        return 2
    try:
        summary = _with_progress("reading the trace", args.trace,
                                 lambda progress: report.summarise(args.trace, progress))
    except OSError as error:
        _error(f"{args.trace}: {error.strerror}")
        return 2
    except report.TraceError as error:
        _error(str(error))
        return 2
    describe = report.disassembler(report.program_path(summary.header))
    # Written to a file or a pipe, the tables get room for every column rich would otherwise cut to 80.
    report.render(summary, describe, args.top, Console() if sys.stdout.isatty() else Console(width=REPORT_WIDTH))
    try:
        if args.csv is not None:
            for path in report.write_csv(summary, args.csv, describe):
                print(f"wrote {path}")
        if args.plots is not None:
            from tools.plots import write_plots

            for path in write_plots(summary, args.plots):
                print(f"wrote {path}")
    except OSError as error:
        _error(f"{error.filename or 'output'}: {error.strerror}")
        return 2
    if args.perfetto is not None:
        from tools import perfetto

        try:
            with open(args.perfetto, "wb", buffering=1 << 20) as out:
                count = _with_progress("writing the Perfetto trace", args.trace,
                                       lambda progress: perfetto.convert(args.trace, out, progress))
        except OSError as error:
            _error(f"{args.perfetto}: {error.strerror}")
            return 2
        print(f"wrote {args.perfetto} ({count:,} trace events; open it in ui.perfetto.dev)")
    return 0


def command_experiment(args: argparse.Namespace) -> int:
    if args.experiment == "zerocopy":
        return command_zerocopy(args)
    from tools.experiments import chains

    for name in ("seeds", "steps", "max_depth"):
        if getattr(args, name) < 1:
            _error(f"--{name.replace('_', '-')} must be at least 1")
            return 2
    if not 1 <= args.pages <= 64:
        _error("--pages must be between 1 and 64")
        return 2
    problem = _unwritable_file(args.csv) if args.csv is not None else None
    if problem:
        _error(f"--csv {args.csv}: {problem}")
        return 2
    return chains.main(args.seeds, args.steps, args.pages, args.max_depth, args.csv)


def _choices(option: str, given: list[str], known: list[str] | tuple[str, ...]) -> list[str]:
    """Items of a list option (spaces or commas), checked against `known`; keeps order, drops repeats."""
    items = list(dict.fromkeys(item for text in given for item in text.split(",") if item))
    unknown = [item for item in items if item not in known]
    if unknown or not items:
        raise ValueError(f"{option}: unknown {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"choose from {', '.join(known)}")
    return items


def command_zerocopy(args: argparse.Namespace) -> int:
    from tools import costmodel

    try:
        workloads = _choices("--workloads", args.workloads, list(zerocopy.WORKLOADS))
        modes = _choices("--modes", args.modes, zerocopy.MODES)
        sizes = sorted({parse_size(text) for text in args.sizes for text in text.split(",") if text})
        total = parse_size(args.total)
    except (ValueError, argparse.ArgumentTypeError) as error:
        _error(str(error))
        return 2
    if not sizes or any(not 1 <= size <= zerocopy.MAX_SEND for size in sizes):
        _error(f"--sizes: each size must be from 1 byte to {zerocopy.size_text(zerocopy.MAX_SEND)}")
        return 2
    if not 1 <= total <= zerocopy.MAX_TOTAL:
        _error(f"--total must be from 1 byte to {zerocopy.size_text(zerocopy.MAX_TOTAL)}")
        return 2
    misfits = [zerocopy.size_text(size) for size in sizes if total % size]
    if misfits:
        _error(f"--total {args.total} is not a multiple of {', '.join(misfits)}: every cell sends whole buffers")
        return 2
    if args.wire_rate < 1:
        _error("--wire-rate must be at least 1")
        return 2
    # Outputs are checked before minutes of running, not after.
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.csv))):
        _error(f"--csv {args.csv}: no such directory")
        return 2
    if os.path.exists(args.plot) and not os.path.isdir(args.plot):
        _error(f"--plot {args.plot}: not a directory")
        return 2
    costs = costmodel.Costs()
    if args.costs:
        try:
            costs = costmodel.load_costs(args.costs)
        except costmodel.CostFileError as error:
            _error(str(error))
            return 2
    return zerocopy.main(workloads, modes, sizes, total, args.wire_rate, costs, args.csv, args.plot, args.sink)

if __name__ == "__main__":
    sys.exit(main())
