"""The kernel: the process table, the scheduler, and the trap handlers.

The machine calls in on a syscall or a page fault (from inside the running
engine) and returns to the scheduler when a run ends: the quantum expired,
a syscall blocked or exited, or the process took a fault it cannot survive,
in which case it is killed with the signal a Linux kernel would send.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from typing import BinaryIO

from emulator import mmu, traps
from emulator.cpu import REGISTER_IDS
from emulator.disasm import instruction_at, memory_operands
from emulator.machine import Machine
from kernel import errno, signals
from kernel.errno import SyscallError
from kernel.exec import exec_image
from kernel.file import Console
from kernel.fs import FileSystem, HostFile
from kernel.proc import RUNNABLE, SLEEPING, ZOMBIE, Process
from kernel.syscall import dispatch
from kernel.vm import fault
from kernel.vm.fault import FaultResult, vm_fault
from kernel.vm.page import PageAllocator
from kernel.vm.pmap import Pmap
from kernel.wire import DEFAULT_WIRE_CAPACITY, DEFAULT_WIRE_RATE, Wire

DEFAULT_QUANTUM = 1_000_000      # instructions per scheduling slice
# Host microseconds per slice when no instructions are counted.  Unicorn's
# timeout costs about 200 us per run (a timer thread), so it is only asked
# for when another process is waiting to run.
FAST_SLICE_US = 10_000
# Limits (a timeout, Ctrl-C) are checked at least this often: host microseconds for a lone process in fast
# mode, instructions otherwise (a slice of a bigger --quantum is run in pieces, which changes no schedule).
LIMIT_CHECK_US = 100_000
LIMIT_CHECK_INSTRUCTIONS = DEFAULT_QUANTUM
DEFAULT_MAX_PROCESSES = 256
INIT_PID = 1
SYSCALL_LENGTH = 2      # bytes of the syscall instruction

_SIGNAL_OF_TRAP = {
    traps.INVALID_OPCODE: signals.SIGILL,
    traps.DIVIDE_ERROR: signals.SIGFPE,
    traps.BREAKPOINT: signals.SIGTRAP,
    traps.GENERAL_PROTECTION: signals.SIGSEGV,
}
_SIGNAL_OF_FAULT = {fault.NOMEM: signals.SIGKILL, fault.BUSERR: signals.SIGBUS}


class Kernel:
    def __init__(self, machine: Machine, root: str = ".", stdin: BinaryIO | None = None,
                 stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
                 quantum: int = DEFAULT_QUANTUM, max_processes: int = DEFAULT_MAX_PROCESSES,
                 wire_rate: int = DEFAULT_WIRE_RATE, wire_capacity: int = DEFAULT_WIRE_CAPACITY) -> None:
        self.machine = machine
        self.recorder = machine.recorder
        self.allocator = PageAllocator(machine)
        self.fs = FileSystem(root, self.allocator)
        self.stdio = (stdin or sys.stdin.buffer, stdout or sys.stdout.buffer, stderr or sys.stderr.buffer)
        self.quantum = quantum
        self.max_processes = max_processes
        self.processes: dict[int, Process] = {}
        self.wire_rate = wire_rate              # bytes per 1000 instructions
        self.wire_capacity = wire_capacity      # bytes in flight on one wire
        self.wires: list[Wire] = []             # open wires, and closed ones still delivering
        self.run_queue: deque[Process] = deque()
        self.current: Process | None = None
        self.loaded: Process | None = None      # whose registers are in the CPU
        self.exec_error = ""                    # why the last exec said ENOEXEC
        self._next_pid = 1
        self._exits = 0
        self._reaped: dict[int, Process] = {}   # reaped processes, for their parents' RUSAGE_CHILDREN
        self._fatal: tuple[FaultResult, int, int] | None = None
        # Debugging aids: called once when virtual time reaches `pause_at`.
        self.pause_at: int | None = None
        self.on_pause: Callable[[Kernel], None] | None = None
        self.before_exit: Callable[[Kernel, Process], None] | None = None   # sees a process before teardown
        # Debugger hooks, called from inside the running engine, so a debugger can stop there:
        # before vm_fault handles a fault (va, access, error code, whether user code took it rather than the
        # kernel's copyin/copyout), after it (and its result),
        # and before a syscall is dispatched (its number).
        self.before_fault: Callable[[Kernel, Process, int, int, int, bool], None] | None = None
        self.after_fault: Callable[[Kernel, Process, int, FaultResult, bool], None] | None = None
        self.before_syscall: Callable[[Kernel, Process, int], None] | None = None
        self.after_syscall: Callable[[Kernel, Process, int], None] | None = None   # it ran; the process may sleep in it
        # A debugger that keeps some processes stopped while others run: the scheduler passes over those
        # `may_run` refuses, and calls `on_held` when only those are left (the debugger lets some go, or stops).
        self.may_run: Callable[[Process], bool] | None = None
        self.on_held: Callable[[Kernel], None] | None = None
        # A console read blocks the host thread, not just the process: a debugger waits for the input itself
        # (and for its own client meanwhile).
        self.console_wait: Callable[[Kernel, BinaryIO], None] | None = None
        self.console_write_wait: Callable[[Kernel, BinaryIO], None] | None = None
        # Bounded runs: `check_limits` is called between slices (and every LIMIT_CHECK_* within one) and may
        # end the run with terminate_all; no slice runs past `instruction_limit` retired instructions.
        self.check_limits: Callable[[Kernel], None] | None = None
        self.instruction_limit: int | None = None
        machine.page_fault_handler = self._page_fault
        machine.syscall_handler = self._syscall

    # Processes.

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

    def _before_console_read(self, stream: BinaryIO) -> bool:
        """Let a debugger or a run limit wait for the input; False if the reader was put to sleep meanwhile."""
        if self.console_wait is not None:
            self.console_wait(self, stream)
        return self.current is None or self.current.state == RUNNABLE

    def _before_console_write(self, stream: BinaryIO) -> bool:
        """The same for a write to the host, which blocks while nobody reads a full pipe."""
        if self.console_write_wait is not None:
            self.console_write_wait(self, stream)
        return self.current is None or self.current.state == RUNNABLE

    def open_wire(self) -> Wire:
        wire = Wire(self, self.wire_rate, self.wire_capacity)
        self.wires.append(wire)
        return wire

    def advance_wires(self) -> None:
        """Let every wire's peer take what it could by now; forget closed wires that are empty."""
        now = self.machine.now
        for wire in self.wires:
            wire.advance(now)
        self.wires = [w for w in self.wires if w.references or w.queue]

    def _idle(self) -> bool:
        """Nothing can run: let time pass until a wire's peer takes its next segment. False if none is busy."""
        busy = [w.busy_until for w in self.wires if w.queue]
        if not busy:
            return False
        self.machine.idle(max(0, min(busy) - self.machine.now))
        self.advance_wires()
        return True

    def new_context(self, rip: int, rsp: int):
        """A fresh register set; whatever was live on the CPU is saved first."""
        self._save_loaded()
        self.loaded = None
        return self.machine.cpu.new_context(rip, rsp)

    def fork(self, parent: Process) -> Process:
        """A copy of the running process `parent`, resuming after its syscall with rax = 0."""
        if len(self.processes) >= self.max_processes:
            raise SyscallError(errno.EAGAIN)
        vmspace = parent.vmspace.fork(Pmap(self.allocator))
        child = Process(self._next_pid, parent.pid, parent.name, self, vmspace)
        self._next_pid += 1
        child.files = dict(parent.files)
        child.cloexec = set(parent.cloexec)
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
        if self.before_exit is not None:
            self.before_exit(self, proc)
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

    # The scheduler.

    def run(self) -> None:
        """Run processes round-robin until none is runnable and every wire is empty."""
        while True:
            if self.check_limits is not None:
                self.check_limits(self)
            proc = self._next_to_run()
            if proc is None:
                if self._idle():
                    continue
                if self.run_queue and self.on_held is not None:
                    self.on_held(self)
                    continue
                break
            self._switch_to(proc)
            start = self.machine.now
            trap = self._run_slice()
            proc.instructions += self.machine.now - start
            if proc.state == SLEEPING:
                # Make the syscall again when woken: rip back onto it; rax still holds its number.
                self.machine.cpu.rip -= SYSCALL_LENGTH
            elif proc.state == RUNNABLE:
                self._handle_trap(proc, trap)
            if proc.state == RUNNABLE:
                self.run_queue.append(proc)
        self.current = None
        blocked = [p for p in self.processes.values() if p.state == SLEEPING]
        if blocked:
            self._break_deadlock(blocked)

    def _next_to_run(self) -> Process | None:
        """Take the first runnable process a debugger does not hold off the run queue, dropping stale entries.

        A held process goes to the back of the queue, keeping its turn among the held.  None when there is
        none: the queue then holds only runnable processes the debugger holds.
        """
        for _ in range(len(self.run_queue)):
            proc = self.run_queue.popleft()
            if proc.state != RUNNABLE:
                continue
            if self.may_run is not None and not self.may_run(proc):
                self.run_queue.append(proc)
                continue
            return proc
        return None

    def _run_slice(self) -> traps.Trap:
        """Run the current process for a quantum.

        The engine is stopped on the way whenever something is due at an exact
        virtual time (a debugger's pause, a wire's next delivery) and then goes
        on, so the schedule is the same as without the stop.  In fast mode
        there is no clock: one run, bounded by host time.
        """
        if not self.machine.deterministic:
            lone_slice_us = LIMIT_CHECK_US if self.check_limits is not None else 0
            return self.machine.run(budget=self.quantum, timeout_us=FAST_SLICE_US if self.run_queue else lone_slice_us)
        end = self.machine.now + self.quantum
        if self.instruction_limit is not None:
            end = min(end, self.instruction_limit + self.machine.idle_time)
        while True:
            self._pause_if_due()
            if self.wires:
                self.advance_wires()
            now = self.machine.now
            stops = [end] + [w.busy_until for w in self.wires if w.queue]
            if self.pause_at is not None and self.pause_at > now:
                stops.append(self.pause_at)
            if self.check_limits is not None:
                stops.append(now + LIMIT_CHECK_INSTRUCTIONS)
            trap = self.machine.run(budget=min(stops) - now)
            if self.check_limits is not None:
                self.check_limits(self)
            if trap.kind != traps.QUANTUM or self.machine.now >= end or self.current.state != RUNNABLE:
                if self.wires:
                    self.advance_wires()
                return trap

    def _break_deadlock(self, blocked: list[Process]) -> None:
        """Every process left is waiting for another: nothing can ever wake them, so they die."""
        for proc in blocked:
            self.recorder.pid = proc.pid
            self.send_signal(proc, signals.SIGKILL, "deadlock, every process is blocked")

    def _pause_if_due(self) -> bool:
        if self.pause_at is None or self.machine.now < self.pause_at or self.on_pause is None:
            return False
        self.pause_at = None
        self.on_pause(self)
        return True

    def _switch_to(self, proc: Process) -> None:
        self.current = proc
        self.recorder.pid = proc.pid
        if self.loaded is proc:
            return
        self._save_loaded()
        self.machine.cpu.restore(proc.context)
        self.machine.set_page_table_root(proc.vmspace.pmap.cr3, "context-switch")
        self.loaded = proc

    def _save_loaded(self) -> None:
        if self.loaded is not None and self.loaded.state != ZOMBIE:
            self.machine.cpu.save(self.loaded.context)

    # Traps.

    def _page_fault(self, va: int, access: int, error_code: int) -> bool:
        """A fault user code took (from the machine's TLB-fill hook)."""
        proc = self.current
        if self.wires:
            self.advance_wires()    # a write to a page in flight copies it only if it is still in flight
        result = self.page_fault(proc, va, access, error_code, user=True)
        if result.fatal:
            self._fatal = (result, va, access)
            return False
        return True

    def page_fault(self, proc: Process, va: int, access: int, error_code: int, user: bool) -> FaultResult:
        """Every page fault comes through here, so that a debugger's fault hooks see them all: the user's
        (`user`), and the kernel's own, taken by copyin/copyout inside a syscall."""
        # Reading rip costs about as much as a page walk; only a trace needs it.  A kernel fault has no user rip.
        rip = self.machine.cpu.rip if user and self.recorder.sink is not None else None
        if self.before_fault is not None:
            self.before_fault(self, proc, va, access, error_code, user)
        result = vm_fault(proc.vmspace, self.allocator, va, access, error_code, rip)
        if self.after_fault is not None:
            self.after_fault(self, proc, va, result, user)
        return result

    def _syscall(self) -> None:
        proc = self.current
        if self.wires:
            self.advance_wires()
        number, *args = self.machine.cpu.syscall_registers()
        if self.before_syscall is not None:
            self.before_syscall(self, proc, number)
        result = dispatch(self, proc, number, tuple(args))
        if proc.state == RUNNABLE:
            self.machine.cpu.set_result(result)
        if self.after_syscall is not None:
            self.after_syscall(self, proc, number)

    def _handle_trap(self, proc: Process, trap: traps.Trap) -> None:
        if trap.kind in (traps.QUANTUM, traps.STOPPED):
            return
        if trap.kind == traps.PAGE_FAULT:
            if self._fatal is not None and self._fatal[1] == trap.address:
                reason = self._fatal[0].reason
            else:
                # A jump into the kernel half: the machine caught it before any walk.
                reason = fault.MAPERR
                self.recorder.event("fault", fault.FATAL, address=trap.address, access=mmu.ACCESS_NAMES[trap.access],
                                    error_code=trap.error_code, rip=trap.rip, reason=reason)
            self._fatal = None
            signal = _SIGNAL_OF_FAULT.get(reason, signals.SIGSEGV)
            address = self._exact_address(proc, trap)
            what = f"{mmu.ACCESS_NAMES[trap.access]} of {address:#x} ({reason})"
        else:
            signal = _SIGNAL_OF_TRAP[trap.kind]
            what = trap.kind.replace("-", " ")
        self.send_signal(proc, signal, f"{what} at {trap.rip:#x}: {self._instruction(proc, trap.rip)}")

    def _exact_address(self, proc: Process, trap: traps.Trap) -> int:
        """The faulting byte's address (CR2), where the instruction shows it; else the page's."""
        if trap.access == mmu.FETCH:
            return trap.address
        cpu = self.machine.cpu
        code = self.peek(proc, trap.rip, 16)
        for address in memory_operands(code, trap.rip, lambda name: cpu.read(REGISTER_IDS[name])):
            if address is not None and address & ~0xFFF == trap.address:
                return address
        return trap.address

    def _instruction(self, proc: Process, rip: int) -> str:
        code = self.peek(proc, rip, 16)
        return instruction_at(code, rip) if code else "(no code mapped there)"

    def peek(self, proc: Process, va: int, length: int) -> bytes:
        """Read user memory without faulting pages in or touching A/D bits; stops at the first hole."""
        out = bytearray()
        qwords = self.machine.ram.qwords
        while len(out) < length:
            entries = mmu.walk_entries(qwords, proc.vmspace.pmap.cr3, va)
            leaf = entries[-1][2]
            if len(entries) < 4 or not leaf & 1:
                break
            paddr = (leaf & 0x000F_FFFF_FFFF_F000) | (va & 0xFFF)
            n = min(length - len(out), 4096 - (va & 0xFFF))
            out += self.machine.ram.bytes[paddr:paddr + n]
            va += n
        return bytes(out)

