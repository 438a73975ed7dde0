"""Processes: the process table's entries, and their lives (xv6's proc.c).

A process is made by spawn (the first one) or fork, changes its image with
exec (kernel/exec.py), sleeps in a syscall on a channel until a wakeup on
that channel, and ends in exit: a zombie that has released everything but
its exit status, until its parent reaps it with wait4 (kernel/sysproc.py).
A signal's default action (there are no handlers yet) is to be ignored or
to end the process.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from emulator.cpu import SYSCALL_LENGTH
from emulator.machine import Machine
from kernel import errno, signals
from kernel.errno import SyscallError
from kernel.exec import exec_image
from kernel.file import Console, OpenFile
from kernel.vm.map import VMSpace
from kernel.vm.page import PageAllocator
from kernel.vm.pmap import Pmap
from kernel.vmmeter import Recorder

if TYPE_CHECKING:
    from kernel.fs import HostFile
    from kernel.kernel import Kernel
    from kernel.observer import Observer

RUNNABLE = "runnable"
SLEEPING = "sleeping"    # blocked in a syscall, which restarts when it is woken
ZOMBIE = "zombie"        # exited, waiting for its parent to reap it

MAX_FDS = 1024
INIT_PID = 1


@dataclass(eq=False)
class Process:
    pid: int
    ppid: int
    name: str
    kernel: Kernel
    vmspace: VMSpace
    context: Any = None                      # the saved CPU context (a UcContext)
    files: dict[int, OpenFile] = field(default_factory=dict)
    cloexec: set[int] = field(default_factory=set)   # descriptors that exec closes (FD_CLOEXEC)
    state: str = RUNNABLE
    exit_code: int = 0
    signal: int = 0                          # the signal that killed it, or 0
    death: str = ""                          # one line saying how it died, for the user
    instructions: int = 0                    # instructions this process retired
    channel: Any = None                      # what a sleeping process waits for
    reaped: list[int] = field(default_factory=list)   # pids of the children it has waited for
    exit_order: int = 0                      # when it exited, to reap children in that order
    cwd: str = "/"                           # the working directory: a guest path, every link resolved
    umask: int = 0o022                       # the file mode creation mask (Linux's init starts with 022)
    rlimits: dict[int, tuple[int, int]] = field(default_factory=dict)   # setrlimit's (soft, hard) by resource

    @property
    def wait_status(self) -> int:
        """The status word as Linux's wait4 encodes it."""
        return self.signal & 0x7F if self.signal else (self.exit_code & 0xFF) << 8

    @property
    def shell_status(self) -> int:
        """What a shell reports as $?: the exit code, or 128 + the signal."""
        return 128 + self.signal if self.signal else self.exit_code & 0xFF

    def close_fd(self, fd: int) -> bool:
        """Drop a descriptor; the open file closes when its last descriptor goes."""
        file = self.files.pop(fd, None)
        self.cloexec.discard(fd)
        if file is None:
            return False
        file.detach(self)
        file.references -= 1
        if file.references == 0:
            file.close()
        return True

    def close_on_exec(self) -> None:
        for fd in list(self.cloexec):
            self.close_fd(fd)

    def close_all(self) -> None:
        for fd in list(self.files):
            self.close_fd(fd)

    def allocate_fd(self, file: OpenFile) -> int:
        for fd in range(MAX_FDS):
            if fd not in self.files:
                self.files[fd] = file
                return fd
        return -1


class ProcessTable:
    """The process half of the Kernel (kernel/kernel.py puts the halves together)."""

    machine: Machine
    recorder: Recorder
    allocator: PageAllocator
    stdio: tuple[BinaryIO, BinaryIO, BinaryIO]
    processes: dict[int, Process]
    max_processes: int
    run_queue: deque[Process]
    current: Process | None
    loaded: Process | None
    observers: tuple[Observer, ...]
    _next_pid: int
    _exits: int
    _reaped: dict[int, Process]

    def spawn(self, file: HostFile, argv: list[str], envp: list[str]) -> Process:
        """Create a process running `file` (the kernel's first process, or one for a test)."""
        if len(self.processes) >= self.max_processes:
            raise SyscallError(errno.EAGAIN)
        proc = Process(self._next_pid, 0, file.path, self, vmspace=None)  # type: ignore[arg-type]
        stdin, stdout, stderr = self.stdio
        proc.files = {0: Console(stdin, True, False, before_read=self._before_console_read),
                      1: Console(stdout, False, True, before_write=self._before_console_write),
                      2: Console(stderr, False, True, before_write=self._before_console_write)}
        previous_pid, self.recorder.pid = self.recorder.pid, proc.pid
        try:
            exec_image(self, proc, file, argv, envp)
        finally:
            self.recorder.pid = previous_pid
        self._next_pid += 1
        self.processes[proc.pid] = proc
        self.run_queue.append(proc)
        self.recorder.event("proc", "spawn", child=proc.pid, path=file.path)
        return proc

    def fork(self, parent: Process) -> Process:
        """A copy of the running process `parent`, resuming after its syscall with rax = 0."""
        if len(self.processes) >= self.max_processes:
            raise SyscallError(errno.EAGAIN)
        vmspace = parent.vmspace.fork(Pmap(self.allocator))
        child = Process(self._next_pid, parent.pid, parent.name, self, vmspace)
        self._next_pid += 1
        child.files = dict(parent.files)
        child.cloexec = set(parent.cloexec)
        child.cwd, child.umask, child.rlimits = parent.cwd, parent.umask, dict(parent.rlimits)
        for file in child.files.values():
            file.references += 1
        # We are inside the parent's syscall: rip is still on the syscall instruction.
        child.context = self.machine.cpu.copy_context(self.machine.cpu.rip + SYSCALL_LENGTH, 0)
        self.processes[child.pid] = child
        self.run_queue.append(child)
        self.recorder.event("proc", "fork", child=child.pid)
        return child

    def send_signal(self, proc: Process, signal: int, reason: str) -> None:
        """Deliver a signal with its default action (handlers are not modelled): ignore it, or terminate."""
        if signal in signals.IGNORED_BY_DEFAULT or proc.state == ZOMBIE:
            return
        self.recorder.event("proc", "signal", target=proc.pid, signal=signal, reason=reason)
        self.exit(proc, 0, signal, f"{proc.name}[{proc.pid}]: killed by {signals.name(signal)}: {reason}")

    def terminate_all(self, signal: int, reason: str) -> int:
        """End the run: every live process, sleeping or not, gets `signal`, children first; how many did."""
        previous_pid, killed = self.recorder.pid, 0
        for proc in sorted(self.processes.values(), key=lambda p: p.pid, reverse=True):
            if proc.state != ZOMBIE:
                self.recorder.pid = proc.pid
                self.send_signal(proc, signal, reason)
                killed += 1
        self.recorder.pid = previous_pid
        return killed

    def sleep(self, proc: Process, channel: object) -> None:
        """Block the running process in its syscall; it makes the syscall again once woken."""
        proc.state = SLEEPING
        proc.channel = channel
        self.machine.stop()

    def wakeup(self, channel: object) -> None:
        for proc in self.processes.values():
            if proc.state == SLEEPING and proc.channel == channel:
                proc.state, proc.channel = RUNNABLE, None
                self.run_queue.append(proc)

    def exit(self, proc: Process, code: int, signal: int = 0, death: str = "") -> None:
        """Turn a process into a zombie, release everything it holds, and tell its parent.

        The teardown's events are the dying process's own, whoever killed it: as
        on Linux and FreeBSD, a killed process exits in its own context.
        """
        previous_pid, self.recorder.pid = self.recorder.pid, proc.pid
        try:
            self._exit(proc, code, signal, death)
        finally:
            self.recorder.pid = previous_pid

    def _exit(self, proc: Process, code: int, signal: int, death: str) -> None:
        for observer in self.observers:
            observer.before_exit(self, proc)
        proc.state = ZOMBIE
        proc.exit_code, proc.signal, proc.death = code, signal, death
        self._exits += 1
        proc.exit_order = self._exits
        proc.close_all()
        proc.vmspace.destroy()
        if self.loaded is proc:
            self.loaded = None
        self.recorder.event("proc", "exit", code=code, signal=signal)
        init = self.processes.get(INIT_PID)
        adopter = INIT_PID if init is not None and init is not proc and init.state != ZOMBIE else 0
        for child in list(self.processes.values()):
            if child.ppid == proc.pid:
                child.ppid = adopter
                if adopter == 0 and child.state == ZOMBIE:
                    del self.processes[child.pid]
        if adopter and any(c.ppid == adopter and c.state == ZOMBIE for c in self.processes.values()):
            self.wakeup(("wait", adopter))
        if proc.ppid:
            self.wakeup(("wait", proc.ppid))
        if proc is self.current:
            self.machine.stop()

    def reap(self, parent: Process, child: Process) -> None:
        """Remove a zombie child from the process table (wait4)."""
        del self.processes[child.pid]
        parent.reaped += [child.pid, *child.reaped]
        self._reaped[child.pid] = child

    def instructions_of_pid(self, pid: int) -> int:
        proc = self.processes.get(pid) or self._reaped.get(pid)
        return proc.instructions if proc else 0

    def max_rss_kib(self, pids: list[int]) -> int:
        resident = [self.processes[p].vmspace.pmap.resident for p in pids
                    if p in self.processes and self.processes[p].vmspace is not None]
        return max(resident, default=0) * 4
