"""Execution control: which threads gdb lets run, where they stop, and its observer of the kernel.

Execution never leaves the kernel's own scheduler.  The stub stops it from
the inside and talks to gdb right there, until gdb resumes:
- the debug port's instruction hook sees every instruction while gdb is
  attached (emulator/debug.py: added before the first instruction runs):
  it stops before an instruction at a breakpoint runs, in whichever
  process reaches it, and at the stepping process's next instruction after a
  single step or a watched write;
- `monitor break fault`/`break syscall` stop in the observer's before_fault and before_syscall,
  before vm_fault or the syscall runs (`monitor step-kernel` stops after);
- a fatal fault stops with its signal before the kernel kills the process;
- Ctrl-C is polled between bounded slices (the observer's `pause_at`), and
  waited for together with the input when a console read blocks the host.

gdb's vCont names the threads it resumes, and the others stay stopped (the
scheduler passes over them): gdb steps a thread over a breakpoint alone, and
a stop of any other thread then would break its step (gdb 13 aborts).  Such
a thread may sleep in a syscall that only another process can end (wait4);
then, and only while every thread gdb resumed sleeps, the others run in its
place, and one that reaches a breakpoint is held before it without telling
gdb (it hits the breakpoint once gdb resumes it).  When nothing can run any
more, the resume ends with a stop of the thread gdb resumed, signal 0 and a
note saying why.  A step over a syscall that sleeps ends when it returns; a
thread asleep in one shows its pc after it, as Linux shows one.  The stub's
own stops (fault and syscall breaks) are signal 0 too, so that gdb does not
take one on an instruction with a breakpoint for a hit of the breakpoint.

A single step is the stub's, not the board's: gdb steps a thread, and which
process runs next is the scheduler's choice, so a step is kept per process
and measured on the instruction clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from vmgames.emulator import mmu
from vmgames.kernel import signals, syscall
from vmgames.kernel.kernel import Kernel
from vmgames.kernel.observer import Observer
from vmgames.kernel.proc import SLEEPING, Process
from vmgames.kernel.trap import signal_of_fault
from vmgames.kernel.vm.fault import FaultResult, predict_kind
from vmgames.tools.gdb import monitor
from vmgames.tools.gdb.protocol import Disconnected

if TYPE_CHECKING:
    from vmgames.tools.gdb.stub import GdbStub

POLL_EVERY = 200_000        # instructions between looks for Ctrl-C
NO_SIGNAL, SIGINT, SIGTRAP = 0, 2, 5


class Stop(NamedTuple):
    """Why execution stopped, for the stop reply."""

    tid: int
    signal: int
    reason: str = ""          # stop-reply fields such as "swbreak:;"
    in_engine: bool = True    # inside a running instruction (a hook), not between slices
    note: str = ""            # printed in gdb's console before the stop
    writable: bool = True     # registers may be changed here (not in the middle of a fault or syscall)


class _Step(NamedTuple):
    """A single step gdb asked for: stop before the process's next instruction, once `skip` more have begun."""

    armed_at: int            # the clock then: the instruction running at that time is not the next one
    skip: int
    reason: str = ""         # stop-reply fields, as "watch:ADDR;" after a watched write


@dataclass
class FaultStop:
    """A stop before vm_fault: the PTE then, and whether gdb asked to stop again after it (`monitor step-kernel`)."""

    pte_before: int
    step_kernel: bool = False


class ExecutionControl(Observer):
    """The stub's side of the scheduler: resumes, steps, held threads, and the stops in the kernel.

    It is the kernel's observer (kernel/observer.py) while gdb is attached.
    """

    def __init__(self, stub: GdbStub) -> None:
        self.stub = stub
        self.kernel = stub.kernel
        self.machine = stub.machine
        self.port = stub.port
        self.resumed: set[int] | None = None  # the threads gdb's last vCont let run (None: all of them)
        self.steps: dict[int, _Step] = {}
        self.held_at: dict[int, int] = {}     # others, run in a sleeping thread's place, held before a breakpoint
        self.restarting: set[int] = set()     # asleep in a syscall (or just woken), to make it again when they run
        self.fault_breaks: set[str] = set()
        self.syscall_breaks: set[str] = set()
        self.fault_stop: FaultStop | None = None
        self.last_stop = (-1, -1)             # (clock, rip) of the last stop: a breakpoint there is not hit again

    def attach(self) -> None:
        """Hook into the board and the kernel; the first stop comes as soon as the first process is loaded."""
        self.port.on_instruction(self.on_instruction)
        self.pause_at = self.machine.now
        self.kernel.observe(self)

    def release(self) -> None:
        """Let go of the board and the kernel: every thread runs, nothing stops any more."""
        self.port.release()
        self.resumed = None
        self.steps.clear()
        self.held_at.clear()
        self.restarting.clear()
        self.fault_stop = None
        self.pause_at = None
        self.kernel.unobserve(self)

    # Resuming.

    def resume(self, resumed: set[int] | None, steps: set[int]) -> bool:
        """Let the threads in `resumed` (None: all) run, single-stepping those in `steps`."""
        stop = self.stub.stop
        self.resumed = resumed
        self.held_at.clear()
        self.steps = {}
        for tid in steps:
            # The next instruction to start is its next one, unless we are stopped before it has begun.
            here = stop.in_engine and tid == stop.tid or tid in self.restarting
            self.steps[tid] = _Step(self.machine.now, 0 if here else 1)
        self.stub.waiting = True
        return True

    def runs_for_others(self, pid: int) -> bool:
        """Is `pid` running only because every thread gdb resumed sleeps (see the module's docstring)?"""
        return self.resumed is not None and pid not in self.resumed

    def _resumed_all_asleep(self) -> bool:
        living = [proc for proc in map(self.stub.process, self.resumed) if proc is not None]
        return bool(living) and all(proc.state == SLEEPING for proc in living)

    def may_run(self, proc: Process) -> bool:
        """The scheduler's question: a thread gdb did not resume runs only in the place of sleeping ones."""
        if not self.runs_for_others(proc.pid):
            return True
        return proc.pid not in self.held_at and self._resumed_all_asleep()

    def _resumed_thread(self) -> int:
        """The thread to report a stop in when the one running is not one gdb resumed: a living, stepping one first."""
        return min(self.resumed, key=lambda tid: (self.stub.process(tid) is None, tid not in self.steps, tid))

    def on_held(self, kernel: Kernel) -> None:
        """Nothing gdb resumed can run, nor any other process in its place: end the resume with a stop."""
        tid = self._resumed_thread()
        proc = self.stub.process(tid)
        if proc is None:
            note = (f"vmgames: process {tid} has exited; the others are stopped (gdb resumed only {tid}): "
                    "select one ('thread N') to go on")
        else:
            name = syscall.syscall_name(self.stub.register(proc, "rax"))
            if not self.held_at:
                note = f"vmgames: process {tid} sleeps in {name} and nothing else may run in its place"
            else:
                held = ", ".join(f"process {pid} at {address:#x}" for pid, address in sorted(self.held_at.items()))
                note = (f"vmgames: process {tid} sleeps in {name}; the processes that ran in its place stopped "
                        f"before breakpoints ({held}), which they hit once resumed: 'continue', or "
                        f"'thread {min(self.held_at)}' and 'continue' if gdb steps process {tid} alone again")
        self.stub.serve(Stop(tid, NO_SIGNAL, in_engine=False, note=note, writable=False))

    # Stops inside the engine: the debug port's hooks.

    def on_instruction(self, address: int, at_breakpoint: bool) -> None:
        pid = self.kernel.current.pid
        if pid in self.restarting:
            # The syscall it slept in, made again now that it is woken: for gdb the same instruction still.
            self.restarting.discard(pid)
            return
        if self.runs_for_others(pid):
            # Held before a breakpoint, or as soon as a thread gdb resumed can run again: the instruction does not run.
            if at_breakpoint or not self._resumed_all_asleep():
                if at_breakpoint:
                    self.held_at[pid] = address
                self.port.hold()
            return
        step = self.steps.get(pid)
        if step is not None and self.machine.now != step.armed_at:
            if step.skip:
                self.steps[pid] = step._replace(skip=step.skip - 1)
            else:
                del self.steps[pid]
                self.stub.serve(Stop(pid, SIGTRAP, step.reason))
                return
        if at_breakpoint and (self.machine.now, address) != self.last_stop:
            self.stub.serve(Stop(pid, SIGTRAP, "swbreak:;"))

    def on_watched_write(self, address: int) -> None:
        """A store into a watched range: stop before the storing process's next instruction."""
        pid = self.kernel.current.pid
        if not self.runs_for_others(pid):
            self.steps[pid] = _Step(self.machine.now, 0, f"watch:{address:x};")

    # Stops between slices: Ctrl-C.

    def _interrupted(self, in_syscall: bool) -> Stop:
        """A Ctrl-C stop, in the running thread unless it runs in the place of one gdb resumed."""
        pid = self.kernel.current.pid
        if self.runs_for_others(pid):
            return Stop(self._resumed_thread(), SIGINT, in_engine=False, writable=False)
        return Stop(pid, SIGINT, in_engine=in_syscall, writable=not in_syscall)

    def on_pause(self, kernel: Kernel) -> None:
        self.pause_at = self.machine.now + POLL_EVERY
        if self.stub.stop is None:
            # gdb has just attached; the first process is loaded (its CR3 too) and has run nothing yet.
            self.stub.serve(Stop(kernel.current.pid, SIGTRAP, in_engine=False))
            return
        try:
            interrupted = self.stub.conn.poll_interrupt()
        except Disconnected as error:
            self.stub.detach(f"gdb went away ({error}); running on")
            return
        if interrupted:
            self.stub.serve(self._interrupted(in_syscall=False))

    def console_wait(self, kernel: Kernel, stream: BinaryIO) -> None:
        """A console read would block the host: wait for its input and for Ctrl-C together."""
        try:
            fd = stream.fileno()   # the console reads with read1, which leaves nothing in the stream's buffer
        except (AttributeError, OSError, ValueError):
            return
        while self.stub.conn is not None:
            try:
                if not self.stub.conn.wait_for(fd):
                    return
            except Disconnected as error:
                self.stub.detach(f"gdb went away ({error}); running on")
                return
            self.stub.serve(self._interrupted(in_syscall=True))

    # Stops in the kernel: the observer's calls.

    def before_fault(self, kernel: Kernel, proc: Process, va: int, access: int, error_code: int,
                     user: bool) -> None:
        if not self.fault_breaks or self.runs_for_others(proc.pid):
            return
        kind = predict_kind(proc.vmspace, va, access, error_code)
        if "any" not in self.fault_breaks and kind not in self.fault_breaks:
            return
        before = monitor.leaf_pte(proc, va)
        self.fault_stop = FaultStop(before)
        who = "" if user else " in the kernel (copyin/copyout of the syscall there)"
        note = (f"vmgames: process {proc.pid} faults{who} at rip {self.stub.rip(proc):#x}: "
                f"{mmu.ACCESS_NAMES[access]} of {va:#x}, error code {error_code:#x}, kind {kind} "
                f"(before the kernel handles it)\n"
                f"vmgames: PTE before: {monitor.describe_pte(before)}\n"
                f"vmgames: 'monitor step-kernel' runs the fault handler and stops after it")
        # An instruction fetch faults before the instruction starts (and is counted); data faults in the middle.
        self.stub.serve(Stop(proc.pid, NO_SIGNAL, in_engine=access != mmu.FETCH, note=note, writable=False))
        if self.fault_stop is not None and not self.fault_stop.step_kernel:
            self.fault_stop = None

    def after_fault(self, kernel: Kernel, proc: Process, va: int, result: FaultResult, user: bool) -> None:
        stop, self.fault_stop = self.fault_stop, None
        if stop is not None and stop.step_kernel:
            after = monitor.leaf_pte(proc, va)
            where = f", object {result.object} level {result.level} of {result.depth}" if not result.fatal else ""
            text = (f"vm_fault: {result.kind}{' (' + result.reason + ')' if result.reason else ''}{where}\n"
                    f"PTE before: {monitor.describe_pte(stop.pte_before)}\n"
                    f"PTE after:  {monitor.describe_pte(after)}")
            try:
                self.stub.console(text)
                self.stub.conn.send(b"OK")
            except Disconnected as error:
                self.stub.detach(f"gdb went away ({error}); running on")
                return
            self.stub.serve(self.stub.stop._replace(note="", writable=False))
        # A fatal fault of the kernel's own is the syscall's EFAULT, not a signal.
        if result.fatal and user and not self.runs_for_others(proc.pid):
            signal = signal_of_fault(result.reason)
            note = f"vmgames: process {proc.pid} will be killed by {signals.name(signal)}: {va:#x} ({result.reason})"
            self.stub.serve(Stop(proc.pid, signal, note=note, writable=False))

    def before_syscall(self, kernel: Kernel, proc: Process, number: int) -> None:
        if not self.syscall_breaks or self.runs_for_others(proc.pid):
            return
        name = syscall.syscall_name(number)
        if name in self.syscall_breaks:
            note = f"vmgames: process {proc.pid} calls {name} (before the kernel handles it)"
            self.stub.serve(Stop(proc.pid, NO_SIGNAL, note=note, writable=False))

    def after_syscall(self, kernel: Kernel, proc: Process, number: int) -> None:
        if proc.state == SLEEPING:
            self.restarting.add(proc.pid)
