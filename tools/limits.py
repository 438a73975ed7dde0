"""Bounded runs: what may end a run before its processes do (--max-instructions, --timeout, Ctrl-C).

RunLimits is a kernel observer (kernel/observer.py): the kernel asks its
`check_limits` between slices (and within long ones); once a limit
is reached every guest process is killed, sleeping ones included, and the
run ends as any other: the trace gets every exit, --stats its table.  The
instruction limit is exact (the kernel ends a slice there).  Host time is
not the kernel's: a watchdog thread stops the engine when the timeout is
due, as Unicorn's own timeout does, and Ctrl-C stops it from the signal
handler, so the check comes at once rather than at the end of a slice.  A
console read would block the host itself, so `console_wait` waits for the
input and the limits together, and puts the reader to sleep if a limit comes
first; `console_write_wait` does the same for a write to a host pipe nobody reads.
"""

from __future__ import annotations

import contextlib
import select
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from vmgames.emulator.machine import Machine
from vmgames.kernel import signals
from vmgames.kernel.kernel import Kernel
from vmgames.kernel.observer import Observer
from vmgames.kernel.proc import ZOMBIE

TIMEOUT_STATUS = 124      # as timeout(1)
INTERRUPT_STATUS = 128 + signals.SIGINT
CONSOLE_POLL_SECONDS = 0.1   # how often a console wait looks at the limits
WATCHDOG_REPEAT_SECONDS = 0.05   # a stop that came between two runs of the engine is made again


@dataclass
class Ending:
    """How a limit ended the run: which one, the exit status, and the one line that says so."""

    limit: str
    status: int
    message: str


@dataclass
class _Reached:
    limit: str      # its name in --stats-json's ended_by
    what: str       # what the user is told
    signal: int     # what every process gets
    status: int     # what vmgames exits with


class RunLimits(Observer):
    """The limits of one run, and how it ended if one of them ended it (`ending`)."""

    checks_limits = True

    def __init__(self, max_instructions: int | None, timeout: float | None) -> None:
        self.max_instructions = max_instructions
        self.timeout = timeout
        self.started = time.monotonic()
        self.interrupted = False
        self.ending: Ending | None = None
        self._reached: _Reached | None = None     # set once a limit is reached; the kill follows at the next check
        self._machine: Machine | None = None      # the machine the watchdog and Ctrl-C interrupt
        self._over = threading.Event()            # the run has ended: the watchdog goes

    @contextlib.contextmanager
    def enforced(self, kernel: Kernel, take_sigint: bool) -> Iterator[None]:
        """While the run lasts: this observer on the kernel, the watchdog of --timeout, and Ctrl-C if
        `take_sigint` (only the main thread can take signals)."""
        self.started = time.monotonic()
        self._machine = kernel.machine
        self.instruction_limit = self.max_instructions
        kernel.observe(self)
        watchdog = None
        if self.timeout is not None:
            watchdog = threading.Thread(target=self._watch, name="vmgames --timeout", daemon=True)
            watchdog.start()
        take_sigint = take_sigint and threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, self._on_sigint) if take_sigint else None
        try:
            yield
        finally:
            self._over.set()
            kernel.unobserve(self)
            if take_sigint:
                signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
            if watchdog is not None:
                watchdog.join()

    def _due(self, kernel: Kernel) -> _Reached | None:
        if self.interrupted:
            return _Reached("interrupt", "interrupted (SIGINT)", signals.SIGINT, INTERRUPT_STATUS)
        if self.max_instructions is not None and kernel.machine.retired >= self.max_instructions:
            return _Reached("max-instructions", f"--max-instructions {self.max_instructions:,} reached",
                            signals.SIGKILL, TIMEOUT_STATUS)
        if self.timeout is not None and time.monotonic() - self.started >= self.timeout:
            return _Reached("timeout", f"--timeout {self.timeout:g}s reached", signals.SIGKILL, TIMEOUT_STATUS)
        return None

    def _watch(self) -> None:
        """The watchdog: at the timeout, stop the engine (and again, until the run has seen it)."""
        if self._over.wait(self.timeout):
            return
        while True:
            self._machine.interrupt()
            if self._over.wait(WATCHDOG_REPEAT_SECONDS):
                return

    def _on_sigint(self, signum: int, frame: object) -> None:
        """Ctrl-C ends the run at the next check, made at once; a second one, if the first did not, quits."""
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        self._machine.interrupt()

    def check_limits(self, kernel: Kernel) -> None:
        """Once a limit is reached, kill every process and say so."""
        if self.ending is not None:
            return
        if self._reached is None:
            self._reached = self._due(kernel)
        reached = self._reached
        if reached is None or not any(proc.state != ZOMBIE for proc in kernel.processes.values()):
            return    # nothing reached, or nothing left to stop: the run is ending anyway
        machine = kernel.machine
        when = (f", at t = {machine.now:,} ({machine.retired:,} instructions retired)" if machine.deterministic
                else " (--fast keeps no instruction clock)")
        seconds = time.monotonic() - self.started
        killed = kernel.terminate_all(reached.signal, f"the run ended: {reached.what}")
        self._over.set()
        self.ending = Ending(reached.limit, reached.status,
                             f"{reached.what} after {seconds:.1f} s of host time{when}: "
                             f"{killed} process{'es' if killed != 1 else ''} killed")

    def console_wait(self, kernel: Kernel, stream: BinaryIO) -> None:
        """A console read would block the host: wait for the input, and put the reader to sleep if a limit
        comes first (the check that follows then kills it, blocked in its read)."""
        self._wait(kernel, stream, writing=False)

    def console_write_wait(self, kernel: Kernel, stream: BinaryIO) -> None:
        """The same for a console write, which blocks while nobody reads the host's full pipe."""
        self._wait(kernel, stream, writing=True)

    def _wait(self, kernel: Kernel, stream: BinaryIO, writing: bool) -> None:
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            return
        while self._reached is None:
            try:
                readable, writable, _ = select.select([] if writing else [fd], [fd] if writing else [], [],
                                                      CONSOLE_POLL_SECONDS)
            except (OSError, ValueError):
                return    # let the read or write itself meet the error
            if readable or writable:
                return
            self._reached = self._due(kernel)
        kernel.sleep(kernel.current, ("console", id(self)))
