"""The Python API: run a program on vmgames from a script or a notebook, and get back plain Python values.

    import vmgames
    result = vmgames.run("build/touch", ["1024"], ram="8M", swap="64M")
    result.status, result.stdout, result.counters["faults"]["zero-fill"]

`run` takes the options `vmgames run` takes, by the same names (`--ram` is
`ram`, `--page-used` is `page_used`), sizes as numbers of bytes or as the
command line writes them ("8M"), and refuses what the command line refuses
with the same words (an OptionError).  Its counters are --stats-json's, and
with `trace=True` the run's trace events can be iterated afterwards.  The
command line, the experiments and `vmgames sweep` are built on the pieces
here: `options_problem`, `spawn` and `counters`.
"""

from __future__ import annotations

import inspect
import io
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from vmgames.emulator.machine import DEFAULT_RAM_SIZE, MAX_CPUS
from vmgames.emulator.ram import PAGE_SIZE
from vmgames.kernel import errno
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.kernel import Kernel
from vmgames.kernel.proc import Process
from vmgames.kernel.vm import shootdown
from vmgames.kernel.vm.pageout import PAGE_USED, RMAPS
from vmgames.kernel.vm.prefault import MODES as PREFAULT_MODES
from vmgames.kernel.vm.swap_pager import MAX_SWAP, SwapUnavailable
from vmgames.tools import stats
from vmgames.tools import trace as trace_file_format
from vmgames.tools.boot import boot
from vmgames.tools.limits import Ending, RunLimits
from vmgames.tools.trace import EVENT_TYPES

SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# No size or count of any option comes near this: bigger is a typing accident, refused before any arithmetic.
LARGEST = (1 << 63) - 1
MAX_PROCS_LIMIT = 1 << 22      # Linux's PID_MAX_LIMIT
SIZE_OPTIONS = ("ram", "swap", "wire_buffer")
# What each option takes: a kind, or the choices.
OPTION_KINDS: dict[str, Any] = {
    "cpus": int, "quantum": int, "interleave": int, "seed": int, "max_procs": int, "wire_rate": int, "prezero": int,
    "uid": int, "gid": int, "max_instructions": int, "timeout": float, "fast": bool, "collapse": bool,
    "root": str, "page_used": PAGE_USED, "rmap": RMAPS, "prefault": PREFAULT_MODES}
# The machine options run() takes, as boot() names them (--fast is fast: boot's deterministic=False).
OPTION_NAMES = frozenset(inspect.signature(boot).parameters) - {"stdin", "stdout", "stderr", "deterministic"} | {"fast"}
NOT_FOUND_STATUS = 127     # as a shell: the program is not there
CANNOT_RUN_STATUS = 126    # it is there and cannot be run


class OptionError(ValueError):
    """An option `vmgames run` would refuse; the message is the command line's."""


class CannotRun(OSError):
    """The program could not be started (not there, not executable, not a program); `status` is a shell's."""

    def __init__(self, program: str, number: int, reason: str) -> None:
        super().__init__(number, reason, program)
        self.status = shell_status(number)
        self.message = f"{program}: {reason}"

    def __str__(self) -> str:
        return self.message


def shell_status(number: int) -> int:
    """The status a shell gives a program it could not start for errno `number`."""
    return NOT_FOUND_STATUS if number == errno.ENOENT else CANNOT_RUN_STATUS


# What boot() raises when the host cannot give the machine its RAM or its swap.
BOOT_ERRORS = (SwapUnavailable, OSError, MemoryError, OverflowError)


def boot_problem(error: BaseException, ram: int, swap: int) -> str:
    """The command line's words for one of BOOT_ERRORS."""
    if isinstance(error, SwapUnavailable):
        return f"--swap {swap:,} bytes: {error}"
    why = getattr(error, "strerror", None) or "out of memory"
    return f"--ram {_gib(ram)}: the host cannot give that much memory ({why})"


def parse_size(text: str | int) -> int:
    """'256M', '1G', '64KiB', '65536' (or a number already) -> bytes: decimal digits and a unit, nothing else."""
    if isinstance(text, int) and not isinstance(text, bool):
        size = text
    else:
        match = re.fullmatch(r"([0-9]+)\s*(?:([kmgt])(?:i?b)?|b)?", str(text).strip(), re.IGNORECASE | re.ASCII)
        if match is None:
            raise ValueError(f"not a size: {text!r} (try 256M or 1G)")
        size = int(match[1]) * SIZE_UNITS[(match[2] or "").lower()]
    if size > LARGEST:
        raise ValueError(f"{text!r} is too large")
    return size


def options_problem(*, ram: int = DEFAULT_RAM_SIZE, root: str = ".", env: Sequence[str] = (), cpus: int = 1,
                    swap: int = 0, quantum: int | None = None, interleave: int | None = None,
                    wire_rate: int | None = None, max_instructions: int | None = None, max_procs: int = 1,
                    fast: bool = False, skip_invalidation: Sequence[str] = (), **_others: Any) -> str | None:
    """What is wrong with these options of `vmgames run`, in the command line's words; None if nothing."""
    if ram < (1 << 20) or ram % 4096:
        return f"--ram must be at least 1M and a multiple of 4K, not {ram}"
    host_memory = _host_memory()
    if host_memory and ram > host_memory:
        return f"--ram {_gib(ram)} is more than this host's memory ({_gib(host_memory)})"
    if not os.path.isdir(root):
        return f"--root {root}: {'Not a directory' if os.path.exists(root) else 'No such file or directory'}"
    for variable in env:
        name, equals, _ = variable.partition("=")
        if not equals or not name:
            return f"--env takes NAME=VALUE, not {variable!r}"
    for reason in skip_invalidation:
        if reason not in shootdown.REASONS and reason != shootdown.REMOTE:
            return (f"--skip-invalidation: no invalidation is made for {reason!r}; the reasons are "
                    f"{', '.join([*shootdown.REASONS, shootdown.REMOTE])}")
    if not 1 <= cpus <= MAX_CPUS:
        return f"--cpus must be 1 to {MAX_CPUS}, not {cpus}"
    if 0 < swap < PAGE_SIZE or swap > MAX_SWAP:
        return f"--swap is 0 (none) or 4K, a page, to {MAX_SWAP >> 40}T, not {swap:,} bytes"
    for option, value in (("--quantum", quantum), ("--interleave", interleave), ("--wire-rate", wire_rate),
                          ("--max-instructions", max_instructions), ("--max-procs", max_procs)):
        if value is not None and value <= 0:
            return f"{option} must be positive"
    if max_procs > MAX_PROCS_LIMIT:
        return f"--max-procs must be at most {MAX_PROCS_LIMIT:,} (Linux's PID_MAX_LIMIT)"
    if max_instructions is not None and fast:
        return "--max-instructions needs the instruction clock: it cannot be used with --fast (use --timeout)"
    return None


def spawn(kernel: Kernel, program: str, argv: Sequence[str], env: Sequence[str] = ()) -> Process:
    """Start `program` (a path on the host) as the kernel's first process; CannotRun says why it could not be."""
    try:
        executable = kernel.fs.open_host(program)
        if not executable.executable:
            raise SyscallError(errno.EACCES)     # no execute bit: execve refuses it too
        return kernel.spawn(executable, list(argv), list(env))
    except SyscallError as error:
        raise CannotRun(program, error.errno, _reason(error.errno, kernel.exec_error)) from None


def counters(kernel: Kernel, status: int, ending: Ending | None = None,
             skipped_invalidations: Sequence[str] = ()) -> dict[str, Any]:
    """The figures of a finished run, as --stats-json writes them."""
    machine = kernel.machine
    figures = stats.collect(kernel.recorder, machine.retired if machine.deterministic else None,
                            kernel.allocator.total, machine.processors, kernel.allocator, kernel.vm.swap_pager)
    figures["exit_status"] = status
    figures["ended_by"] = ending.limit if ending is not None else None
    # A run with invalidations forgotten on purpose says so wherever its figures go.
    figures["skipped_invalidations"] = sorted(set(skipped_invalidations))
    return figures


@dataclass
class Result:
    """What came of one run: its exit status (a shell's: 128+N for a signal, 124 at a limit), what the guest
    wrote, why the first process died if a signal killed it, --stats-json's counters, and the trace."""

    status: int
    stdout: bytes
    stderr: bytes
    counters: dict[str, Any]
    death: str | None = None
    ended_by: str | None = None
    trace_path: str | None = None
    _scratch: Any = field(default=None, repr=False)     # the temporary directory a trace=True trace is in

    def events(self, types: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """The trace's events, one dict each (docs/trace-format.md), read as they are iterated; only those of
        `types` ("fault", "tlb", ...) if given."""
        if self.trace_path is None:
            raise ValueError("the run kept no trace: run it with trace=True (or trace='FILE')")
        if isinstance(types, str) or (types is not None and not set(types) <= set(EVENT_TYPES)):
            raise ValueError(f"types is a list of event types, of {', '.join(EVENT_TYPES)}; not {types!r}")
        from vmgames.tools.report import read_trace

        _, events = read_trace(self.trace_path)
        wanted = frozenset(types) if types is not None else None
        return (event for event in events if wanted is None or event["type"] in wanted)


def run(program: str, args: Sequence[str] = (), *, stdin: bytes = b"", env: Sequence[str] = (),
        trace: bool | str = False, max_instructions: int | None = None, timeout: float | None = None,
        skip_invalidation: Sequence[str] = (), **options: Any) -> Result:
    """Run `program` with `args` as `vmgames run [OPTIONS] PROGRAM ARGS...` does, and return its Result.

    `options` are `vmgames run`'s machine options by their Python names: ram, cpus, quantum, interleave, seed,
    swap, fast, prezero, prefault, page_used, rmap, root, max_procs, wire_rate, wire_buffer, uid, gid.
    `trace` is False, True (a temporary trace, read through Result.events) or the path of a trace file to
    write.  Raises OptionError for options the command line refuses and CannotRun for a program that
    cannot be started.
    """
    if isinstance(program, os.PathLike):
        program = os.fspath(program)
    if not isinstance(program, str):
        raise OptionError(f"program is a path, a string, not {type(program).__name__}")
    if isinstance(args, str | bytes) or not all(isinstance(arg, str) for arg in args):
        raise OptionError("args is a list of strings, the program's arguments")
    if not isinstance(trace, bool | str | os.PathLike):
        raise OptionError(f"trace is True, False or the path of a trace file, not {trace!r}")
    machine_options = check(env=env, max_instructions=max_instructions, timeout=timeout,
                            skip_invalidation=skip_invalidation, stdin=stdin, **options)
    out, err = io.BytesIO(), io.BytesIO()
    try:
        kernel = boot(stdin=io.BytesIO(stdin), stdout=out, stderr=err,
                      deterministic=not machine_options.pop("fast", False), **machine_options)
    except BOOT_ERRORS as error:
        raise OptionError(boot_problem(error, machine_options.get("ram", DEFAULT_RAM_SIZE),
                                       machine_options.get("swap", 0))) from None
    kernel.shootdown.skipped = set(skip_invalidation)
    trace_path, scratch, trace_file = _open_trace(trace)
    sink = None
    if trace_file is not None:
        first_line = trace_file_format.header(program, [program, *args], options, kernel.machine.ram.size)
        sink = trace_file_format.writer(trace_file, first_line)
        kernel.recorder.sink = sink
    try:
        init = spawn(kernel, program, [program, *args], env)
        limits = RunLimits(max_instructions, timeout)
        with limits.enforced(kernel, take_sigint=False):
            kernel.run()
    finally:
        if sink is not None:
            sink.flush()
            trace_file.close()
    ending = limits.ending
    status = ending.status if ending is not None else init.shell_status
    return Result(status, out.getvalue(), err.getvalue(), counters(kernel, status, ending, skip_invalidation),
                  init.death or None, ending.limit if ending is not None else None, trace_path, scratch)


def check(*, env: Sequence[str] = (), max_instructions: int | None = None, timeout: float | None = None,
          skip_invalidation: Sequence[str] = (), stdin: bytes = b"", **options: Any) -> dict[str, Any]:
    """Check run()'s options as `vmgames run` checks them (OptionError if one is wrong); the machine options,
    sizes parsed, as boot() takes them (with `fast`)."""
    if not isinstance(stdin, bytes | bytearray):
        raise OptionError(f"stdin is the bytes the program reads, not {type(stdin).__name__}")
    if isinstance(env, str | bytes) or not all(isinstance(variable, str) for variable in env):
        raise OptionError("env is a list of NAME=VALUE strings")
    if isinstance(skip_invalidation, str | bytes):
        raise OptionError("skip_invalidation is a list of reasons, not one string")
    machine_options = _machine_options(options)
    problem = _types_problem({**machine_options, "max_instructions": max_instructions, "timeout": timeout})
    if problem:
        raise OptionError(problem)
    problem = options_problem(env=env, max_instructions=max_instructions, skip_invalidation=skip_invalidation,
                              **machine_options)
    if problem:
        raise OptionError(problem)
    if timeout is not None and not timeout > 0:
        raise OptionError(f"--timeout must be more than 0, not {timeout}")
    return machine_options


def _types_problem(options: dict[str, Any]) -> str | None:
    """An option of the wrong kind (a string where a number goes), said as the command line would."""
    for name, value in options.items():
        kind = OPTION_KINDS.get(name)
        if value is None and name in ("max_instructions", "timeout", "prefault"):
            continue
        if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
            return f"--{name.replace('_', '-')} takes a whole number, not {value!r}"
        if kind is float and (not isinstance(value, int | float) or isinstance(value, bool)):
            return f"--{name.replace('_', '-')} takes a number of seconds, not {value!r}"
        if kind is str and not isinstance(value, str):
            return f"--{name} takes a path, not {value!r}"
        if kind is bool and not isinstance(value, bool):
            return f"{name} is True or False, not {value!r}"
        if isinstance(kind, tuple) and value not in kind:
            return f"--{name.replace('_', '-')}: {value!r} is not one of {', '.join(map(str, kind))}"
        if name == "seed" and not 0 <= value < 1 << 64:
            return f"--seed is a whole number that fits in 64 bits, not {value}"
    return None


def _machine_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options boot() takes, sizes parsed; a name `vmgames run` does not have is an OptionError."""
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise OptionError(f"no such option: {', '.join(unknown)} (the options are {', '.join(sorted(OPTION_NAMES))})")
    parsed = dict(options)
    for name in SIZE_OPTIONS:
        if name in parsed:
            try:
                parsed[name] = parse_size(parsed[name])
            except ValueError as error:
                raise OptionError(f"--{name.replace('_', '-')}: {error}") from None
    return parsed


def _open_trace(trace_option: bool | str) -> tuple[str | None, Any, Any]:
    """(path, temporary directory to keep alive, open file) for run's `trace`."""
    if not trace_option:
        return None, None, None
    scratch = None
    if trace_option is True:
        scratch = tempfile.TemporaryDirectory(prefix="vmgames-trace-")
        path = os.path.join(scratch.name, "trace.jsonl")
    else:
        path = os.fspath(trace_option)
    try:
        return path, scratch, open(path, "wb")
    except OSError as error:
        raise OptionError(f"--trace {path}: {error.strerror}") from None


def _reason(number: int, exec_error: str) -> str:
    """Why a program could not be started, as a shell says it."""
    reasons = {errno.ENOEXEC: f"cannot execute: {exec_error}", errno.ENOMEM: "not enough memory to load it"}
    if exec_error and number != errno.ENOEXEC:
        reasons[number] = f"{os.strerror(number)}: {exec_error}"     # a dynamic program's missing interpreter
    return reasons.get(number) or os.strerror(number)


def _gib(size: int) -> str:
    return f"{size / (1 << 30):.1f}G"


def _host_memory() -> int | None:
    """The host's physical memory in bytes, if it says."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None
