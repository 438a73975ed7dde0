"""The scheduler: one CPU, processes round-robin in slices of `quantum` instructions.

A slice ends when its budget is spent, when the running process blocks in a
syscall or exits, or when it takes a trap the kernel must handle; the
process then goes to the back of the run queue if it can still run.  When
no process can run, idle time passes up to the next callout's deadline (a
wire's peer taking data); when nothing is due either, the processes still
asleep wait for each other for ever, and are killed (a deadlock).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from emulator import traps
from emulator.cpu import SYSCALL_LENGTH
from emulator.machine import Machine
from kernel import signal_delivery, signals
from kernel.callout import CalloutQueue
from kernel.proc import RUNNABLE, SLEEPING, ZOMBIE, Process
from kernel.vm.map import VMSpace
from kernel.vmmeter import Recorder

if TYPE_CHECKING:
    from kernel.observer import Observer

DEFAULT_QUANTUM = 1_000_000      # instructions per scheduling slice
# Host microseconds per slice when no instructions are counted.  Unicorn's
# timeout costs about 200 us per run (a timer thread), so it is only asked
# for when another process is waiting to run.
FAST_SLICE_US = 10_000
# Limits (a timeout, Ctrl-C) are checked at least this often: host microseconds for a lone process in fast
# mode, instructions otherwise (a slice of a bigger --quantum is run in pieces, which changes no schedule).
LIMIT_CHECK_US = 100_000
LIMIT_CHECK_INSTRUCTIONS = DEFAULT_QUANTUM


class Scheduler:
    """The scheduling half of the Kernel (kernel/kernel.py puts the halves together)."""

    machine: Machine
    recorder: Recorder
    callout: CalloutQueue
    processes: dict[int, Process]
    run_queue: deque[Process]
    current: Process | None
    loaded: Process | None
    active_vmspace: VMSpace | None
    quantum: int
    observers: tuple[Observer, ...]

    def run(self) -> None:
        """Run processes round-robin until none is runnable and every wire is empty."""
        while True:
            self._check_limits()
            proc = self._next_to_run()
            if proc is None:
                if self.callout.idle_until_next():
                    continue
                if self.run_queue:
                    # Only held processes are left (nothing else stays on the queue): their holder decides.
                    for observer in self.observers:
                        observer.on_held(self)
                    continue
                break
            self._switch_to(proc)
            if proc.pending and signal_delivery.deliverable(proc):
                signal_delivery.deliver(self, proc)     # back to user mode: its handlers run first
                if proc.state != RUNNABLE:
                    continue
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
            if not all(observer.may_run(proc) for observer in self.observers):
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
        bounded = any(observer.checks_limits for observer in self.observers)
        if not self.machine.deterministic:
            lone_slice_us = LIMIT_CHECK_US if bounded else 0
            if not self._ready_to_run():
                return traps.Trap(traps.STOPPED, self.machine.cpu.rip)
            return self.machine.run(budget=self.quantum, timeout_us=FAST_SLICE_US if self.run_queue else lone_slice_us)
        end = self.machine.now + self.quantum
        for observer in self.observers:
            if observer.instruction_limit is not None:
                end = min(end, observer.instruction_limit + self.machine.idle_time)
        while True:
            self._pause_if_due()
            if self.callout.devices:
                self.callout.run_due()
            now = self.machine.now
            stops = [end]
            deadline = self.callout.next_deadline() if self.callout.devices else None
            if deadline is not None:
                stops.append(deadline)
            stops += [observer.pause_at for observer in self.observers
                      if observer.pause_at is not None and observer.pause_at > now]
            if bounded:
                stops.append(now + LIMIT_CHECK_INSTRUCTIONS)
            if not self._ready_to_run():
                return traps.Trap(traps.STOPPED, self.machine.cpu.rip)
            trap = self.machine.run(budget=min(stops) - now)
            if bounded:
                self._check_limits()
            if trap.kind != traps.QUANTUM or self.machine.now >= end or self.current.state != RUNNABLE:
                if self.callout.devices:
                    self.callout.run_due()
                return trap

    def _ready_to_run(self) -> bool:
        """Tell the observers user code is about to run; False if one of them ended the process meanwhile."""
        for observer in self.observers:
            observer.before_run(self)
        return self.current.state == RUNNABLE

    def _break_deadlock(self, blocked: list[Process]) -> None:
        """Every process left is waiting for another: nothing can ever wake them, so they die."""
        for proc in blocked:
            self.recorder.pid = proc.pid
            self.kill_process(proc, signals.SIGKILL, "deadlock, every process is blocked")

    def _pause_if_due(self) -> None:
        """Call each observer whose pause is due (once: it sets a new pause_at to be called again)."""
        for observer in self.observers:
            if observer.pause_at is not None and self.machine.now >= observer.pause_at:
                observer.pause_at = None
                observer.on_pause(self)

    def _check_limits(self) -> None:
        for observer in self.observers:
            if observer.checks_limits:
                observer.check_limits(self)

    def _switch_to(self, proc: Process) -> None:
        self.current = proc
        self.recorder.pid = proc.pid
        if self.loaded is proc:
            return
        self._save_loaded()
        self.machine.cpu.restore(proc.context)
        if self.active_vmspace is not proc.vmspace:
            # A CR3 load flushes the TLB.  Between two threads of one process (or a vfork child and its
            # parent) there is none, as Linux's switch_mm skips it when the address space is the same.
            self.recorder.event("tlb", "invalidate-all", reason="context-switch")
            self.machine.set_page_table_root(proc.vmspace.pmap.cr3)
            self.active_vmspace = proc.vmspace
        self.loaded = proc

    def _save_loaded(self) -> None:
        if self.loaded is not None and self.loaded.state != ZOMBIE:
            self.machine.cpu.save(self.loaded.context)

    def new_context(self, rip: int, rsp: int):
        """A fresh register set; whatever was live on the CPU is saved first."""
        self._save_loaded()
        self.loaded = None
        return self.machine.cpu.new_context(rip, rsp)
