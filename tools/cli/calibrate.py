"""vmgames calibrate: the cost model's prices measured on this host, written as a cost file for --costs.

The measuring is done by a C program (tools/calibrate/calibrate.c), compiled with the host's compiler
on every run (a third of a second, against seconds of measuring: no cached binary can go stale) and
run once; this side shows its progress, sets what it measured beside the model's defaults, and
writes the TOML file `vmgames experiment zerocopy --costs FILE` reads.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field, fields
from pathlib import Path

from vmgames.tools import costmodel
from vmgames.tools.cli.output import say_error, unwritable_file

SOURCE = Path(__file__).resolve().parent.parent / "calibrate" / "calibrate.c"
DEFAULT_SAMPLES = 1000
QUICK_SAMPLES = 50
MAX_SAMPLES = 1_000_000       # the C program's own limit
TABLE_WIDTH = 140

CALIBRATE_DESCRIPTION = """\
Measure what the cost model's prices are on this host: compile tools/calibrate/calibrate.c with the
host's C compiler ($CC, else gcc), run it, show each figure beside the model's default, and write a
cost file (TOML, with what each value measures and where and when it was measured) that
vmgames experiment zerocopy --costs FILE reads."""

CALIBRATE_EPILOG = f"""\
Each figure is the median of --repeat timed samples (default {DEFAULT_SAMPLES:,}, a few seconds; --quick
takes {QUICK_SAMPLES}).  The shootdown figures need two CPUs: on a host that gives one, or that does not count
shootdown interrupts (/proc/interrupts), the file keeps the model's defaults for them and says why.

exit status:
  0  the cost file was written
  1  no C compiler, the benchmark did not compile or failed, or the file could not be written
  2  bad options (one line on stderr)

examples:
  vmgames calibrate
  vmgames calibrate --quick --output costs-quick.toml
  vmgames calibrate --cold --output costs-cold.toml     (cold page copies: from DRAM)"""

# What each price of the model is, as calibrate.c measures it: the table's last column and the file's comments.
MEASURED_AS = {
    "fault_ns": "a minor fault on fresh anonymous memory (a byte written to each page of a new mapping, "
                "huge pages refused), less one page's zeroing, which the model prices apart (zero_page_ns)",
    "copy_page_ns": "a 4 KiB memcpy, source and destination in the cache",
    "zero_page_ns": "a 4 KiB memset, the page in the cache",
    "pte_write_ns": "each page's PTE rewritten by mprotect(PROT_NONE): the slope of its time over 34-128 pages, "
                    "where Linux flushes the whole TLB once instead of page by page",
    "invlpg_ns": "each page's own invalidation: the slope of mprotect's time over 1-32 pages (one invlpg each) "
                 "less pte_write_ns",
    "shootdown_wait_ns": "the wait of the CPU that changes a PTE, per shootdown: mprotect round trips on a page "
                         "a thread on a second CPU touches, less the same alone, per shootdown interrupt the "
                         "second CPU took",
    "ipi_ns": "what the second CPU loses per shootdown interrupt: the time its loop lost, per interrupt",
    "syscall_ns": "a null system call: syscall(SYS_getpid)",
    "cpu_ghz": "the core's clock: a chain of dependent adds, one retired per cycle",
}

COLD_COPY = "a 4 KiB memcpy from DRAM to DRAM (pages of two buffers four times the last-level cache, shuffled)"

NOT_MEASURED = {
    "flush_all_ns": "a whole-TLB flush costs a program mostly the refills that follow it, which depend on "
                    "its working set; the flush alone is flush_jump_ns below",
    "cycles_per_instruction": "what a guest instruction costs depends on the program",
}

# The figures that explain the prices (calibrate.c prints them too); any other figure is shown by name only.
ALSO_MEASURED = {
    "copy_page_cold_ns": COLD_COPY,
    "fault_zero_fill_ns": "the zero-fill fault whole, the page's zeroing included",
    "fault_read_zero_page_ns": "a read fault on fresh anonymous memory: the shared zero page mapped, "
                               "nothing allocated or zeroed",
    "faults_per_page": "faults counted (getrusage) per page touched: 1 means no huge page and no fault-around",
    "mprotect_round_trip_ns": "mprotect a page read-only, read-write again, write it: alone on one CPU",
    "faults_per_round_trip": "faults counted per round trip: 0 means the write needed none",
    "mprotect_none_1_ns": "mprotect(PROT_NONE) of 1 page",
    "mprotect_none_128_ns": "mprotect(PROT_NONE) of 128 pages (one whole-TLB flush)",
    "flush_jump_ns": "the whole-TLB flush itself: how much dearer an mprotect of 34 or more pages is than "
                     "the page-by-page line predicts, without the refills it causes later",
    "shootdown_interrupts_per_round_trip": "shootdown interrupts the second CPU took per round trip (2 if "
                                           "its thread always ran: both mprotects invalidate)",
    "shootdown_cpu_first": "the CPU that made the round trips",
    "shootdown_cpu_second": "the CPU whose thread touched the page",
    "clock_gettime_ns": "reading the clock, taken off every sample",
    "last_level_cache_mib": "the last-level cache (sysfs), which sizes the cold-copy buffers",
}


class CalibrationError(Exception):
    """The benchmark could not be built or run; the message says why, in one line."""


@dataclass
class Measurement:
    """What calibrate.c printed: its figures, and the ones it could not give with why."""

    figures: dict[str, float] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Price:
    """One price of the cost file: its value, and either what was measured or why the default stands."""

    key: str
    value: float
    measured: bool
    note: str


def command_calibrate(args: argparse.Namespace) -> int:
    samples = QUICK_SAMPLES if args.quick else args.repeat
    if not 1 <= samples <= MAX_SAMPLES:
        say_error(f"--repeat must be from 1 to {MAX_SAMPLES:,}")
        return 2
    output = args.output or default_output()
    problem = unwritable_file(output)
    if problem:
        say_error(f"--output {output}: {problem}")
        return 2
    try:
        measurement = measure(samples)
    except CalibrationError as error:
        say_error(str(error))
        return 1
    prices = choose_prices(measurement, cold=args.cold)
    show(prices, measurement, args.cold)
    try:
        with open(output, "w", encoding="utf-8") as f:
            f.write(cost_file(prices, measurement, samples, args.cold))
    except OSError as error:
        say_error(f"--output {output}: {error.strerror}")
        return 1
    print(f"wrote {output} (vmgames experiment zerocopy --costs {output})")
    return 0


def default_output() -> str:
    """costs-HOSTNAME.toml, the host's name kept to the characters a file name can safely hold."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip(".-") or "host"
    return f"costs-{host}.toml"


def measure(samples: int) -> Measurement:
    """Compile calibrate.c and run it, with a progress bar on a terminal; CalibrationError if either fails."""
    compiler_name = os.environ.get("CC") or "gcc"
    compiler = shutil.which(compiler_name)
    if compiler is None:
        raise CalibrationError(f"calibrate needs a C compiler: {compiler_name} is not on PATH "
                               "(install gcc, or name another in CC)")
    with tempfile.TemporaryDirectory(prefix="vmgames-calibrate-") as directory:
        program = os.path.join(directory, "calibrate")
        build = subprocess.run([compiler, "-O2", "-pthread", "-o", program, str(SOURCE)],
                               capture_output=True, text=True, errors="replace")
        if build.returncode != 0:
            said = next((line for line in build.stderr.splitlines() if "error" in line),
                        build.stderr.strip().splitlines()[-1] if build.stderr.strip() else "")
            raise CalibrationError(f"{compiler_name} could not compile {SOURCE.name}: "
                                   f"{said or f'exit status {build.returncode}'}")
        return _run(program, samples)


def _run(program: str, samples: int) -> Measurement:
    from rich.console import Console
    from rich.progress import Progress

    measurement = Measurement()
    with subprocess.Popen([program, str(samples)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, errors="replace") as process, \
            Progress(console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("calibrating", total=None)
        assert process.stdout is not None and process.stderr is not None
        stages_begun = 0
        try:
            for line in process.stdout:
                kind, _, rest = line.strip().partition(" ")
                if kind == "stages" and rest.isdigit():
                    bar.update(task, total=int(rest))
                elif kind == "stage":
                    bar.update(task, completed=stages_begun, description=f"measuring: {rest}")
                    stages_begun += 1
                else:
                    parse_figure(line, measurement)
        except CalibrationError:
            process.kill()      # what it says next cannot be trusted either
            raise
        said = process.stderr.read().strip().splitlines()
        status = process.wait()
    if status < 0:
        raise CalibrationError(f"the calibration benchmark was killed by {signal.Signals(-status).name}")
    if status != 0:
        raise CalibrationError(f"the calibration benchmark failed (exit status {status})"
                               + (f": {said[-1]}" if said else ""))
    return measurement


def parse_figure(line: str, measurement: Measurement) -> None:
    """Take a `figure NAME VALUE` or `unavailable NAME WHY` line of calibrate.c into `measurement`.

    CalibrationError for anything else: a figure that is not a number, a line of no kind."""
    words = line.split(maxsplit=2)
    if words[:1] == ["figure"] and len(words) == 3:
        try:
            measurement.figures[words[1]] = float(words[2])
        except ValueError:
            raise CalibrationError(f"the calibration benchmark gave {words[1]} as {words[2].strip()!r}, "
                                   "not a number") from None
        return
    if words[:1] == ["unavailable"] and len(words) == 3:
        measurement.unavailable[words[1]] = words[2].strip()
        return
    raise CalibrationError(f"the calibration benchmark printed a line it should not have: {line.strip()!r}")


def choose_prices(measurement: Measurement, cold: bool) -> list[Price]:
    """Every price of the model: the measured value where there is a usable one, else the default and why."""
    defaults = costmodel.Costs()
    figures, unavailable = dict(measurement.figures), dict(measurement.unavailable)
    if cold:
        figures.pop("copy_page_ns", None)
        if "copy_page_cold_ns" in figures:
            figures["copy_page_ns"] = figures["copy_page_cold_ns"]
        elif "copy_page_cold_ns" in unavailable:
            unavailable["copy_page_ns"] = unavailable["copy_page_cold_ns"]
    prices = []
    for key in (f.name for f in fields(costmodel.Costs)):
        default = getattr(defaults, key)
        value = figures.get(key)
        if value is not None:
            written = round(value, 3 if key == "cpu_ghz" else 1)
            if math.isfinite(written) and written > 0:
                prices.append(Price(key, written, True, measured_as(key, cold)))
                continue
            why = f"measured {value:g}, not above zero: the noise is larger than the figure"
        else:
            why = unavailable.get(key) or NOT_MEASURED.get(key) or "not measured"
        prices.append(Price(key, default, False, f"not measured here ({why}): the model's default"))
    return prices


def measured_as(key: str, cold: bool) -> str:
    if key == "copy_page_ns" and cold:
        return COLD_COPY + " (--cold; the cached copy is copy_page_hot_ns below)"
    if key == "copy_page_ns":
        return MEASURED_AS[key] + " (from DRAM: copy_page_cold_ns below; vmgames calibrate --cold writes that here)"
    return MEASURED_AS.get(key, "measured by tools/calibrate/calibrate.c")


def also_measured(measurement: Measurement, cold: bool) -> dict[str, float]:
    """The figures that are not prices, in calibrate.c's order; with --cold, the cached copy among them."""
    prices = {f.name for f in fields(costmodel.Costs)}
    extra = {name: value for name, value in measurement.figures.items() if name not in prices}
    if cold and "copy_page_ns" in measurement.figures:
        extra = {"copy_page_hot_ns": measurement.figures["copy_page_ns"], **extra}
    return extra


def describe_extra(name: str) -> str:
    return "a 4 KiB memcpy, source and destination in the cache" if name == "copy_page_hot_ns" \
        else ALSO_MEASURED.get(name, "")


def figure_text(key: str, value: float) -> str:
    if key in ("cpu_ghz", "cycles_per_instruction") or not key.endswith("_ns"):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,.1f}" if abs(value) < 100 else f"{value:,.0f}"


def show(prices: list[Price], measurement: Measurement, cold: bool) -> None:
    """The prices beside the model's defaults, and the figures that explain them, as tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    defaults = costmodel.Costs()
    # Written to a file or a pipe, the tables get the room a terminal would give, not rich's 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=TABLE_WIDTH)
    table = Table(title="This host's prices (nanoseconds, but cpu_ghz and cycles_per_instruction)",
                  title_justify="left")
    table.add_column("cost", no_wrap=True)
    table.add_column("this host", justify="right", no_wrap=True)
    table.add_column("default", justify="right", no_wrap=True)
    table.add_column("measured as")
    for price in prices:
        table.add_row(price.key, figure_text(price.key, price.value) if price.measured else "-",
                      figure_text(price.key, getattr(defaults, price.key)), price.note)
    console.print(table)
    extra = also_measured(measurement, cold)
    if extra:
        details = Table(title="Also measured", title_justify="left")
        details.add_column("figure", no_wrap=True)
        details.add_column("value", justify="right", no_wrap=True)
        details.add_column("what it is")
        for name, value in extra.items():
            details.add_row(name, figure_text(name, value), describe_extra(name))
        console.print(details)


def host_description() -> str:
    """The host as the file's header names it: name, kernel, CPU model, CPUs."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return (f"{socket.gethostname()}, {platform.system()} {platform.release()} {platform.machine()}, "
            f"{model}, {os.cpu_count() or 1} CPUs")


def _comment(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, width=100, initial_indent="# " + indent, subsequent_indent="# " + indent * 2)


def cost_file(prices: list[Price], measurement: Measurement, samples: int, cold: bool) -> str:
    """The cost file: a header saying where and when, then each price with what it is, then the other figures."""
    when = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    lines = _comment("Prices for vmgames' cost model (tools/costmodel.py), measured on this host by "
                     "`vmgames calibrate`" + (" --cold" if cold else "") + ".")
    lines += _comment(f"Host: {host_description()}.")
    lines += _comment(f"Measured {when}, each figure the median of {samples:,} timed samples "
                      "(tools/calibrate/calibrate.c); nanoseconds, but cpu_ghz and cycles_per_instruction.")
    lines += _comment("Use: vmgames experiment zerocopy --costs FILE")
    for price in prices:
        lines += ["", *_comment(price.note), f"{price.key} = {price.value:g}"]
    extra = also_measured(measurement, cold)
    if extra:
        lines += ["", "# Also measured (not prices of the model; they explain the ones above):"]
        for name, value in extra.items():
            lines += _comment(f"{name} = {figure_text(name, value)}: {describe_extra(name)}", indent="  ")
    return "\n".join(lines) + "\n"
