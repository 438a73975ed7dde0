"""The command line: every command's options, their help, and the types that check them."""

from __future__ import annotations

import argparse
import importlib.metadata
import re
from typing import NoReturn

from vmgames.emulator.determinism import DEFAULT_SEED
from vmgames.emulator.machine import DEFAULT_RAM_SIZE, MAX_CPUS
from vmgames.kernel.kernel import DEFAULT_MAX_PROCESSES
from vmgames.kernel.sched import DEFAULT_INTERLEAVE, DEFAULT_QUANTUM
from vmgames.kernel.vm.pageout import PAGE_USED, RMAPS
from vmgames.kernel.vm.prefault import FAULT_AROUND as PREFAULT_FAULT_AROUND
from vmgames.kernel.vm.prefault import MAP as PREFAULT_MAP
from vmgames.kernel.wire import DEFAULT_WIRE_CAPACITY, DEFAULT_WIRE_RATE
from vmgames.tools import api, trace
from vmgames.tools.api import LARGEST
from vmgames.tools.cli.calibrate import CALIBRATE_DESCRIPTION, CALIBRATE_EPILOG, DEFAULT_SAMPLES, QUICK_SAMPLES
from vmgames.tools.experiments import prefault as experiment_prefault
from vmgames.tools.experiments import pressure as experiment_pressure
from vmgames.tools.experiments import rmap as experiment_rmap
from vmgames.tools.experiments import zerocopy
from vmgames.tools.experiments.cells import default_jobs

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
  3         --check-tlb found a stale TLB entry (a kernel bug: one line each)
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


ZEROCOPY_EPILOG = """\
Lists may be given with spaces or commas (--sizes 4k,64k).  Each cell's
command line for vmgames run is in the CSV, so any cell can be rerun alone
with --stats or --trace.

examples:
  vmgames experiment zerocopy
  vmgames experiment zerocopy --workloads static pool --modes cow vmsplice --sizes 64k --total 4m
  vmgames experiment zerocopy --costs cold.json     (e.g. {"copy_page_ns": 1000})
  vmgames experiment zerocopy --costs costs/2006.toml      (published 2006-era prices)
  vmgames experiment zerocopy --costs costs-HOST.toml      (this host's, from vmgames calibrate)"""


SWEEP_EPILOG = """a spec (tools/sweep.py; an example is sweeps/ram.toml):
  program = "build/pressure"          # the program, relative to the current directory
  args = ["{pages}", "20", "10"]      # its arguments; {name} is that grid value

  [options]                           # every run: vmgames run's options (ram, cpus, quantum, swap,
  swap = "64M"                        # page_used or page-used, seed, fast, stdin, max_instructions, ...)

  [grid]                              # one run for every combination
  ram = ["6M", "8M", "12M"]
  pages = [1024, 2048]                # no option: a parameter the args use

each row: the grid's values, status, ended_by, death, then every --stats-json figure (faults.zero-fill, ...)
examples:
  vmgames sweep sweeps/ram.toml
  vmgames sweep sweeps/ram.toml --jobs 8 --csv ram.csv
  vmgames sweep sweeps/ram.toml --resume              (after an interrupted sweep)"""


DEFAULT_SNAPSHOT = "vmgames-snapshot.dot"


DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}     # timeout(1)'s


def parse_size(text: str) -> int:
    """'256M', '1G', '64KiB', '65536' -> bytes: decimal digits and a unit, nothing else."""
    try:
        return api.parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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


ID_LIMIT = (1 << 32) - 1      # uid_t and gid_t are 32 bits; -1 (4294967295) means "no change" to Linux


def parse_id(text: str) -> int:
    """--uid, --gid: a user or group number, 0 to 4294967294."""
    if re.fullmatch(r"[0-9]+", text.strip(), re.ASCII) is None:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    number = int(text)
    if number >= ID_LIMIT:
        raise argparse.ArgumentTypeError(f"{text} is out of range: an id is 0 to {ID_LIMIT - 1}")
    return number


def parse_seed(text: str) -> int:
    """--seed: a whole number that fits in 64 bits (decimal digits, as every count)."""
    if re.fullmatch(r"[0-9]+", text.strip(), re.ASCII) is None:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    seed = int(text)
    if seed >= 1 << 64:
        raise argparse.ArgumentTypeError(f"{text} is out of range: a seed is 0 to 2**64-1")
    return seed


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: 'vmgames: ...', exit status 2, and where to find the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"vmgames: {message}; see '{self.prog} --help'\n")


JOBS_OPTION = {"type": parse_count, "default": default_jobs(), "metavar": "N",
               "help": "runs side by side, each on a fresh machine in a process of its own (default: every core, "
                       "%(default)s here); the results are the same whatever N"}

DASK_OPTION = {"metavar": "ADDRESS",
               "help": "run the cells on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786; "
                       "dask-jobqueue or dask-kubernetes start one on SLURM or Kubernetes) instead of here; its "
                       "workers need vmgames installed and the same files (a shared filesystem)"}


RESUME_OPTION = {"action": "store_true",
                 "help": "take the cells an earlier run of this sweep finished from its journal (the CSV's path "
                         "with .cells added, written as each cell finishes) and run only the rest"}


def _add_outputs(experiment: argparse.ArgumentParser, name: str) -> None:
    """The options every experiment with a CSV and a plot takes: --jobs, --dask, --resume, --csv, --plot."""
    experiment.add_argument("--jobs", **JOBS_OPTION)
    experiment.add_argument("--dask", **DASK_OPTION)
    experiment.add_argument("--resume", **RESUME_OPTION)
    experiment.add_argument("--csv", metavar="FILE", default=f"{name}.csv",
                            help=f"where to write the figures of each cell (default {name}.csv)")
    experiment.add_argument("--plot", metavar="DIR", default=".",
                            help=f"directory for {name}.png and {name}.svg (default: the current directory)")


def _version() -> str:
    try:
        return importlib.metadata.version("vmgames")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


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
                     help="draw the address spaces and shadow chains at virtual time N (instructions run; with "
                          "--cpus, when the first CPU's clock reaches N), or just before "
                          "the first process exits (Graphviz DOT; SVG too if graphviz is installed), and list each "
                          "map as procstat -v does (on stderr and in a .txt beside it)")
    run.add_argument("--snapshot", metavar="FILE",
                     help=f"where --snapshot-at writes (default {DEFAULT_SNAPSHOT}); only with --snapshot-at")
    run.add_argument("--fast", action="store_true",
                     help="run at raw Unicorn speed without counting instructions (not reproducible)")
    run.add_argument("--seed", type=parse_seed, default=DEFAULT_SEED, metavar="N",
                     help=f"seed of the values rdrand, rdseed and getrandom give, and of the order CPUs take their "
                          f"turns in with --cpus, 0 to 2**64-1 (default {DEFAULT_SEED}); the TSC is virtual time "
                          "and CPUID a fixed model's, so a run never reads the host")
    run.add_argument("--uid", type=parse_id, default=0, metavar="N",
                     help="the user id every process runs as: getuid, stat of a pipe, access checks (default 0, "
                          "root); files keep the owners the host gives them")
    run.add_argument("--gid", type=parse_id, default=0, metavar="N",
                     help="the group id every process runs as (default 0); there are no supplementary groups")
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
    run.add_argument("--prezero", type=parse_count, default=0, metavar="PAGES",
                     help="pre-zeroing: while every CPU idles, zero free pages (one per 1000 instructions of idle "
                          "time) into a pool of at most PAGES, which zero-fill faults take first (FreeBSD's "
                          "v_ozfod beside v_zfod; default 0, off)")
    prefaulting = run.add_mutually_exclusive_group()
    prefaulting.add_argument("--prefault", action="store_const", const=PREFAULT_MAP, dest="prefault",
                             help="pre-faulting: exec and mmap map the pages of a file that are in memory already, "
                                  "read-only and at most 96 per mapping (FreeBSD's vm_map_pmap_enter), so that "
                                  "running a program again takes no fault on them")
    prefaulting.add_argument("--fault-around", action="store_const", const=PREFAULT_FAULT_AROUND, dest="prefault",
                             help="Linux's alternative to --prefault (do_fault_around): a read fault on a file's "
                                  "page maps the pages of the file in memory in the 64 KiB around it too, "
                                  "read-only")
    run.add_argument("--swap", type=parse_size, default=0, metavar="SIZE",
                     help="swap space for anonymous memory, 4K to 1T in whole pages (default 0, none), a buffer "
                          "of the host's reserved as it is written: when RAM runs short the pageout daemon writes "
                          "dirty pages there and reads them back on fault; without it only clean pages (a file's) "
                          "can be reused, and a process using the most memory is killed sooner")
    run.add_argument("--page-used", choices=PAGE_USED, default="accessed-bit",
                     help="how the pageout daemon tells a page is in use: the accessed bits of the PTEs mapping "
                          "it (default); unmap: as the paper describes for hardware without them, by unmapping it "
                          "and marking it used when the next touch faults; fifo: it does not, and the oldest page "
                          "goes first")
    run.add_argument("--rmap", choices=RMAPS, default="pv",
                     help="how the pageout daemon finds the PTEs that map a page it takes: its pv entries "
                          "(default, FreeBSD's reverse map), or scan: by probing every PTE of every address space, "
                          "as Linux 2.4 had to; --stats counts the PTEs probed")
    run.add_argument("--cpus", type=parse_count, default=1, metavar="N",
                     help=f"processors, 1 to {MAX_CPUS} (default 1): each its own engine, registers, CR3 and TLB over "
                          "the one RAM; threads and processes run on all of them, and a PTE change reaches the "
                          "others' TLBs only by a shootdown IPI")
    run.add_argument("--interleave", type=parse_count, default=DEFAULT_INTERLEAVE, metavar="N",
                     help=f"with several CPUs, instructions each runs per round before the next one's turn "
                          f"(default {DEFAULT_INTERLEAVE:,}); the order within a round comes from --seed")
    run.add_argument("--wire-rate", type=parse_count, default=DEFAULT_WIRE_RATE, metavar="BYTES",
                     help=f"bytes the peer of /dev/wire takes per 1000 instructions (default {DEFAULT_WIRE_RATE})")
    run.add_argument("--wire-buffer", type=parse_size, default=DEFAULT_WIRE_CAPACITY, metavar="SIZE",
                     help=f"bytes a wire holds in flight before a sender waits ({DEFAULT_WIRE_CAPACITY >> 10}K)")
    run.add_argument("--gdb", metavar="[HOST:]PORT",
                     help="wait for gdb (target remote HOST:PORT) before the first instruction; HOST is "
                          "127.0.0.1 unless given; port 0 picks a free one (see docs/gdb-tutorial.md)")
    run.add_argument("--check-tlb", action="store_true",
                     help="the TLB sanitizer: before user code runs, every translation the TLB may still hold must "
                          "agree with the page tables; a stale one (a PTE changed without its invalidation) stops "
                          "the run, naming the PTE write that lacked it (exit status 3)")
    run.add_argument("--skip-invalidation", metavar="REASON", action="append", default=[],
                     help="fault injection, to see what a missing invalidation does: the kernel forgets the TLB "
                          "invalidations (local and remote) it makes for REASON (fork, cow, cow-send, mprotect, "
                          "munmap, madvise, collapse, page-remove, terminate, fault, aging, pageout), or with "
                          "remote-shootdown "
                          "every shootdown IPI; may be given more than once (docs/smp.md)")
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
    chains.add_argument("--jobs", **JOBS_OPTION)
    chains.add_argument("--dask", **DASK_OPTION)
    chains.add_argument("--resume", **RESUME_OPTION)
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
    default_cpus = ",".join(map(str, zerocopy.DEFAULT_CPUS))
    zc.add_argument("--cpus", nargs="+", default=[default_cpus], metavar="N",
                    help="CPUs of each cell's machine, 1 to 8, with as many threads in the sending program: the "
                         "sender and helpers that keep its address space in use on the other CPUs, so a "
                         f"copy-on-write send pays a shootdown to each (default {default_cpus})")
    zc.add_argument("--sink", choices=list(zerocopy.SINKS), default="wire",
                    help="where the workloads send: " + "; ".join(f"{k}: {v}" for k, v in zerocopy.SINKS.items())
                         + " (default wire)")
    zc.add_argument("--wire-rate", type=int, default=zerocopy.DEFAULT_WIRE_RATE, metavar="N",
                    help=f"bytes the wire drains per 1000 instructions (default {zerocopy.DEFAULT_WIRE_RATE})")
    zc.add_argument("--costs", metavar="FILE",
                    help="override the cost model's defaults from a JSON or TOML file (see tools/costmodel.py; "
                         "vmgames calibrate writes one for this host, costs/2006.toml has 2006-era prices)")
    _add_outputs(zc, "zerocopy")
    pressure = experiments.add_parser(
        "pressure", help="working sets larger than RAM: aging by accessed bits against page-used emulation and FIFO",
        description="Run userland/libc/pressure.c (a working set larger than RAM, a hot part written every round, "
                    "cold pages drawn at random; built with gcc) with the pageout daemon telling used pages by "
                    "accessed bits, by unmapping them (the paper's emulation) and not at all (FIFO), and report "
                    "swap-ins and swap-outs, faults, pages examined, reactivations and the TLB work aging took. "
                    "Writes a CSV and a plot (PNG and SVG) of swap-ins and of the resident set and swap use over "
                    "virtual time; ends with what the figures say of the paper's claim.")
    pressure.add_argument("--ram", type=parse_size, default=8 << 20, metavar="SIZE",
                          help="RAM of each run's machine (default 8M)")
    pressure.add_argument("--swap", type=parse_size, default=64 << 20, metavar="SIZE",
                          help="swap of each run's machine (default 64M)")
    pressure.add_argument("--sizes", default=",".join(f"{f:g}" for f in experiment_pressure.DEFAULT_FACTORS),
                          metavar="X,Y,...", help="working sets as multiples of RAM (default %(default)s)")
    pressure.add_argument("--policies", default=",".join(PAGE_USED), metavar="P,Q,...",
                          help=f"how the daemon tells used pages, of {', '.join(PAGE_USED)} (default all)")
    pressure.add_argument("--hot", type=int, default=experiment_pressure.DEFAULT_HOT, metavar="PERCENT",
                          help="the part of the working set written every round, 1-100 (default %(default)s)")
    pressure.add_argument("--rounds", type=int, default=experiment_pressure.DEFAULT_ROUNDS, metavar="N",
                          help="rounds, each writing the hot pages and as many cold ones, 1-1000 (default "
                               "%(default)s)")
    _add_outputs(pressure, "pressure")
    prefault = experiments.add_parser(
        "prefault", help="the same program exec'd again and again: faults per run with pre-faulting and "
                         "pre-zeroing off and on",
        description="Dillon's example (ls run over and over): userland/libc/rerun.c runs a program N times, "
                    "idling a millisecond before each, with --prefault and --prezero off and on; reports each "
                    "run's faults by kind after its exec (the first run, which reads the program in, apart), the "
                    "pages mapped at exec and the zero-fill faults served with pre-zeroed pages. Writes a CSV and "
                    "a plot (PNG and SVG); ends with what the figures say of the paper's claims.")
    prefault.add_argument("--runs", type=int, default=experiment_prefault.DEFAULT_RUNS, metavar="N",
                          help="runs of the program, 2-100 (default %(default)s)")
    prefault.add_argument("--program", nargs=argparse.REMAINDER, metavar="PROG ARGS",
                          help="the program to run again and again, with its arguments, last on the line "
                               "(default: busybox echo hello, or userland/libc/pressure.c if there is no busybox)")
    _add_outputs(prefault, "prefault")
    rmap = experiments.add_parser(
        "rmap", help="unmapping pages many processes map: pv entries against scanning every page table",
        description="Run userland/libc/sharers.c (N children map the parent's shared pages, then the parent fills "
                    "more than RAM) with the pageout daemon finding a page's PTEs through its pv entries and by "
                    "probing every PTE of every address space (as a kernel without a reverse map must), and "
                    "report the PTEs probed per unmapping. Writes a CSV and a plot (PNG and SVG); ends with what "
                    "the figures say of the paper's claim.")
    rmap.add_argument("--sharers", default=",".join(map(str, experiment_rmap.DEFAULT_SHARERS)), metavar="N,M,...",
                      help="numbers of children sharing the pages, 1-128 (default %(default)s)")
    _add_outputs(rmap, "rmap")
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
    sweep = commands.add_parser(
        "sweep", help="run your own program over a grid of options and arguments, one CSV row per run",
        description="Run a program once for every point of a grid of vmgames run's options and of its\n"
                    "own arguments, as a spec file (TOML) describes, each run deterministic and on a fresh\n"
                    "machine, and write every run's --stats-json figures as one CSV row (and a Parquet\n"
                    "file beside it when pyarrow is installed).",
        epilog=SWEEP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sweep.add_argument("spec", metavar="SPEC.toml", help="the sweep: program, args, [options], [grid] (see below)")
    sweep.add_argument("--csv", metavar="FILE", help="where the rows go (default: the spec's name with .csv, "
                                                     "in the current directory)")
    sweep.add_argument("--jobs", **JOBS_OPTION)
    sweep.add_argument("--dask", **DASK_OPTION)
    sweep.add_argument("--resume", **RESUME_OPTION)
    calibrate = commands.add_parser(
        "calibrate", help="measure the cost model's prices on this host and write them as a cost file",
        description=CALIBRATE_DESCRIPTION, epilog=CALIBRATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    calibrate.add_argument("-o", "--output", metavar="FILE",
                           help="the cost file to write (default costs-HOSTNAME.toml, in the current directory)")
    length = calibrate.add_mutually_exclusive_group()
    length.add_argument("--repeat", type=parse_count, default=DEFAULT_SAMPLES, metavar="N",
                        help=f"timed samples behind each figure's median (default {DEFAULT_SAMPLES:,})")
    length.add_argument("--quick", action="store_true", help=f"a short run: --repeat {QUICK_SAMPLES}, about a second")
    calibrate.add_argument("--cold", action="store_true",
                           help="price a page copy from DRAM, not from the cache (copy_page_ns)")
    return parser, {"asm": asm, "run": run, "experiment": experiment, "report": report, "sweep": sweep,
                    "calibrate": calibrate}
