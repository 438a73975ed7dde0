"""Processes and threads: the process table's entries, and their lives (xv6's proc.c).

An entry is a task, as in Linux: one thread of control with its own
registers, pid (its thread id) and sleep.  The tasks of one process (a
thread group, named by its first task's pid, `tgid`) share what clone was
told to share: the address space (CLONE_VM), the descriptor table
(CLONE_FILES).  A task is made by spawn (the first one) or clone
(kernel/sysclone.py: fork, vfork and threads), changes its image with exec
(kernel/exec.py), sleeps in a syscall on a channel until a wakeup on that
channel (or until a time: kernel/timer.py), and ends in exit: a thread
leaves the table at once; the last task of a process turns it into a zombie
that has released everything but its exit status, until its parent reaps it
with wait4 (kernel/sysproc.py).  A signal's default action (there are no
handlers yet) is to be ignored or to end the whole process.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from vmgames.emulator.cpu import SYSCALL_LENGTH
from vmgames.emulator.machine import Machine
from vmgames.kernel import errno, signals
from vmgames.kernel.errno import SyscallError
from vmgames.kernel.exec import exec_image
from vmgames.kernel.file import Console, OpenFile
from vmgames.kernel.vm.map import VMSpace
from vmgames.kernel.vm.page import PageAllocator
from vmgames.kernel.vm.pmap import Pmap
from vmgames.kernel.vmmeter import Recorder

if TYPE_CHECKING:
    from vmgames.kernel.fs import HostFile
    from vmgames.kernel.kernel import Kernel
    from vmgames.kernel.observer import Observer
    from vmgames.kernel.timer import Timers

RUNNABLE = "runnable"
SLEEPING = "sleeping"    # blocked in a syscall, which restarts when it is woken
ZOMBIE = "zombie"        # exited, waiting for its parent to reap it

MAX_FDS = 1024
CLD_EXITED, CLD_KILLED = 1, 2       # SIGCHLD's si_code

# clone's flags that change what the new task shares (Linux's include/uapi/linux/sched.h).
CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_VFORK, CLONE_PARENT, CLONE_THREAD, CLONE_SETTLS = 0x4000, 0x8000, 0x10000, 0x80000
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
    cpu: int | None = None                   # the CPU it runs on, or last ran on (None: it has not run yet)
    runnable_at: int = 0                     # when it was last made runnable, on the clock of the CPU that did it
    channel: Any = None                      # what a sleeping process waits for
    reaped: list[int] = field(default_factory=list)   # pids of the children it has waited for
    exit_order: int = 0                      # when it exited, to reap children in that order
    tgid: int = 0                            # its process (thread group): the first task's pid
    clear_child_tid: int = 0                 # set_tid_address: zeroed and futex-woken when the thread exits
    robust_list: int = 0                     # set_robust_list's head (kept, not walked)
    sleeps: int = 0                          # sleeps so far: a timer ends only the sleep it was set for
    restart_result: int | None = None        # set by whoever woke it: the syscall returns this, not run again
    vfork_parent: Process | None = None      # asleep in vfork until this task execs or exits
    # Signals (kernel/signal_delivery.py): the process's actions, shared by its threads; the rest per thread.
    sigactions: dict[int, Any] = field(default_factory=dict)
    blocked: int = 0                         # the signal mask: bit n-1 for signal n
    pending: dict[int, bytes] = field(default_factory=dict)   # signal -> its siginfo
    altstack: tuple[int, int, int] = (0, 2, 0)                # sigaltstack: (sp, flags, size), SS_DISABLE
    interrupted: bool = False                # a signal woke it from a sleep in a syscall
    saved_mask: int | None = None            # rt_sigsuspend's mask to restore once the handler returns

    cwd: str = "/"                           # the working directory: a guest path, every link resolved
    umask: int = 0o022                       # the file mode creation mask (Linux's init starts with 022)
    rlimits: dict[int, tuple[int, int]] = field(default_factory=dict)   # setrlimit's (soft, hard) by resource

    def __post_init__(self) -> None:
        self.tgid = self.tgid or self.pid

    @property
    def is_leader(self) -> bool:
        """The process's first task, whose pid is the process id."""
        return self.pid == self.tgid

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
    timers: Timers
    _next_pid: int
    _exits: int
    _reaped: dict[int, Process]

    def spawn(self, file: HostFile, argv: list[str], envp: list[str]) -> Process:
        """Create a process running `file` (the kernel's first process, or one for a test)."""
        if len(self.processes) >= self.max_processes:
            raise SyscallError(errno.EAGAIN)
        proc = Process(self._next_pid, 0, file.path, self, vmspace=None)  # type: ignore[arg-type]
        proc.cwd = self.fs.guest_path_of(os.getcwd())     # where vmgames runs, if that is inside the root
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
        self.enqueue(proc)
        self.recorder.event("proc", "spawn", child=proc.pid, path=file.path)
        return proc

    def fork(self, parent: Process) -> Process:
        """A copy of the running process `parent`, resuming after its syscall with rax = 0."""
        return self.clone(parent, 0)

    def clone(self, parent: Process, flags: int, stack: int = 0, tls: int = 0) -> Process:
        """A new task from the running one, resuming after its syscall with rax = 0: a process with a copy
        of the address space (fork), one sharing it (CLONE_VM: vfork, a thread), or a thread of the same
        process (CLONE_THREAD), on its own `stack` if given, with `tls` as its fs base (CLONE_SETTLS)."""
        if len(self.processes) >= self.max_processes:
            raise SyscallError(errno.EAGAIN)
        if flags & CLONE_VM:
            vmspace = parent.vmspace
            vmspace.users += 1
        else:
            vmspace = parent.vmspace.fork(Pmap(self.allocator, self.shootdown))
        thread = bool(flags & CLONE_THREAD)
        child = Process(self._next_pid, parent.ppid if thread else parent.tgid, parent.name, self, vmspace,
                        tgid=parent.tgid if thread else 0)
        self._next_pid += 1
        child.sigactions = parent.sigactions if flags & CLONE_SIGHAND else dict(parent.sigactions)
        child.blocked = parent.blocked
        if not flags & CLONE_VM or flags & CLONE_VFORK:
            child.altstack = parent.altstack       # a thread on a stack of its own starts without one
        child.cwd, child.umask, child.rlimits = parent.cwd, parent.umask, dict(parent.rlimits)
        if flags & CLONE_FILES:
            child.files, child.cloexec = parent.files, parent.cloexec    # one table, shared
        else:
            child.files = dict(parent.files)
            child.cloexec = set(parent.cloexec)
            for file in child.files.values():
                file.references += 1
        changes = {"rsp": stack} if stack else {}
        if flags & CLONE_SETTLS:
            changes["fs_base"] = tls
        # We are inside the parent's syscall: rip is still on the syscall instruction.
        child.context = self.machine.cpu.copy_context(self.machine.cpu.rip + SYSCALL_LENGTH, 0, **changes)
        self.processes[child.pid] = child
        self.enqueue(child)
        kind = "thread" if thread else "vfork" if flags & CLONE_VM else "fork"
        self.recorder.event("proc", kind, child=child.pid)
        return child

    def threads(self, proc: Process) -> list[Process]:
        """The live tasks of `proc`'s process, itself included if it is live."""
        return [t for t in self.processes.values() if t.tgid == proc.tgid and t.state != ZOMBIE]

    def send_signal(self, proc: Process, signal: int, reason: str, info: bytes | None = None,
                    thread: bool = False) -> None:
        """Send a signal to `proc`'s process (or to the thread `proc` if `thread`): ignored, fatal, or pending
        for a handler (kernel/signal_delivery.py).  Without `info`, the kernel sent it (SI_KERNEL)."""
        from vmgames.kernel import sigframe, signal_delivery

        if info is None:
            info = sigframe.siginfo(signal, signal_delivery.SI_KERNEL)
        signal_delivery.send(self, proc, signal, info, reason, thread)

    def kill_process(self, proc: Process, signal: int, reason: str) -> None:
        """End `proc`'s process as `signal` would with its default action, whatever its handlers (a run limit)."""
        if proc.state == ZOMBIE:
            return
        self.recorder.event("proc", "signal", target=proc.pid, signal=signal, reason=reason)
        self.exit(proc, 0, signal, f"{proc.name}[{proc.tgid}]: killed by {signals.name(signal)}: {reason}")

    def terminate_all(self, signal: int, reason: str) -> int:
        """End the run: every live process, sleeping or not, gets `signal`, children first; how many did."""
        previous_pid, killed = self.recorder.pid, 0
        for proc in sorted(self.processes.values(), key=lambda p: p.pid, reverse=True):
            if proc.state != ZOMBIE:
                self.recorder.pid = proc.pid
                self.kill_process(proc, signal, reason)
                killed += 1
        self.recorder.pid = previous_pid
        return killed

    def sleep(self, proc: Process, channel: object, deadline: int | None = None, timeout_result: int = 0) -> None:
        """Block the running task in its syscall; it makes the syscall again once woken by `wakeup`, or returns
        what `wake` or, at `deadline` (virtual time), the timer gives it."""
        proc.state = SLEEPING
        proc.channel = channel
        proc.sleeps += 1
        if deadline is not None:
            self.timers.add(deadline, proc, timeout_result)
        self.machine.stop()

    def wake(self, proc: Process, result: int) -> None:
        """End one task's sleep: its syscall returns `result` (a futex wake, a timeout, vfork's end)."""
        proc.state, proc.channel, proc.restart_result = RUNNABLE, None, result
        self.enqueue(proc)

    def wakeup(self, channel: object) -> None:
        for proc in self.processes.values():
            if proc.state == SLEEPING and proc.channel == channel:
                proc.state, proc.channel = RUNNABLE, None
                self.enqueue(proc)

    def exit(self, proc: Process, code: int, signal: int = 0, death: str = "") -> None:
        """End the process `proc` belongs to (exit_group, a fatal signal): its other threads, then `proc`,
        whose exit makes the process a zombie that has released everything, and tells its parent.

        The teardown's events are the dying task's own, whoever killed it: as
        on Linux and FreeBSD, a killed process exits in its own context.
        """
        for thread in self.threads(proc):
            if thread is not proc:
                self._exit_in_own_context(thread, code, signal, death)
        self._exit_in_own_context(proc, code, signal, death)

    def exit_thread(self, proc: Process, code: int) -> None:
        """exit(2): end this thread only; the process ends with its last thread."""
        self._exit_in_own_context(proc, code, 0, "")

    def _exit_in_own_context(self, proc: Process, code: int, signal: int, death: str) -> None:
        previous_pid, self.recorder.pid = self.recorder.pid, proc.pid
        try:
            self._exit_task(proc, code, signal, death)
        finally:
            self.recorder.pid = previous_pid

    def _exit_task(self, proc: Process, code: int, signal: int, death: str) -> None:
        if proc.state == ZOMBIE:
            return
        last = all(t is proc for t in self.threads(proc))
        if last:
            self.recorder.pid = proc.tgid     # the process ends: its map and its exit are its own, not a thread's
            for observer in self.observers:
                observer.before_exit(self, proc)
        proc.state = ZOMBIE
        proc.exit_code, proc.signal, proc.death = code, signal, death
        self._release(proc)
        self.unload(proc)
        if last:
            self._end_process(proc, code, signal, death)
        else:
            self.recorder.event("proc", "thread-exit", code=code)
        if not proc.is_leader:
            del self.processes[proc.pid]     # a thread is nobody's child: nothing waits for it
        if proc is self.current:
            self.machine.stop()

    def _release(self, proc: Process) -> None:
        """What a task gives back as it exits: Linux's mm_release (the tid word, a vfork parent), then its share
        of the descriptor table and of the address space."""
        if proc.clear_child_tid and proc.vmspace.users > 1:
            from vmgames.kernel import futex
            from vmgames.kernel.uaccess import copyout

            try:
                copyout(proc, proc.clear_child_tid, bytes(4))
                futex.wake(self, proc, proc.clear_child_tid, 1)
            except SyscallError:
                pass     # a bad address was given to set_tid_address: Linux ignores it too
        self.end_vfork(proc)
        if not any(t.files is proc.files for t in self.processes.values() if t.state != ZOMBIE):
            proc.close_all()
        proc.vmspace.release()

    def end_vfork(self, proc: Process) -> None:
        """A vfork child execs or exits: its parent, asleep in vfork, returns the child's pid."""
        parent, proc.vfork_parent = proc.vfork_parent, None
        if parent is not None and parent.state == SLEEPING:
            self.wake(parent, proc.pid)

    def _end_process(self, proc: Process, code: int, signal: int, death: str) -> None:
        """The last task is gone: the process is a zombie for its parent to reap, its children go to init."""
        leader = self.processes.get(proc.tgid, proc)
        leader.exit_code, leader.signal, leader.death = code, signal, death
        self._exits += 1
        leader.exit_order = self._exits
        self.recorder.event("proc", "exit", code=code, signal=signal)
        init = self.processes.get(INIT_PID)
        adopter = INIT_PID if init is not None and init.tgid != proc.tgid and init.state != ZOMBIE else 0
        for child in list(self.processes.values()):
            if child.ppid == proc.tgid:
                child.ppid = adopter
                if adopter == 0 and child.exit_order:
                    del self.processes[child.pid]
        if adopter and any(c.ppid == adopter and c.exit_order for c in self.processes.values()):
            self.wakeup(("wait", adopter))
        if leader.ppid:
            self.wakeup(("wait", leader.ppid))
            parent = self.processes.get(leader.ppid)
            if parent is not None:
                from vmgames.kernel import sigframe

                status, how = (signal, CLD_KILLED) if signal else (code, CLD_EXITED)
                self.send_signal(parent, signals.SIGCHLD, f"child {leader.pid} ended",
                                 sigframe.siginfo(signals.SIGCHLD, how, pid=leader.pid, status=status))

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
