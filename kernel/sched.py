"""The scheduler: processes round-robin in slices of `quantum` instructions, on one CPU or several.

A slice ends when its budget is spent, when the running process blocks in a
syscall or exits, or when it takes a trap the kernel must handle; the
process then goes to the back of the one run queue all CPUs share, if it
can still run.  When no process can run, idle time passes up to the next
callout's deadline (a wire's peer taking data); when nothing is due either,
the processes still asleep wait for each other for ever, and are killed (a
deadlock).

Several CPUs run one at a time on the host's one thread, in rounds of
`interleave` instructions of virtual time: in each round every CPU, in an
order drawn from the run's seed, runs until its own clock reaches the end
of the round, at the end of the translated block that reaches it (to stop
at the exact instruction would cost a block translated twice a turn:
emulator/clock.py; a slice longer than that goes on in the next round), or
idles there when it has nothing to run.  So the same run gives the same trace
whatever the host does, and a CPU's clock is never more than one round
from another's.  Before a CPU runs user code it takes the shootdown IPIs
other CPUs sent it (kernel/vm/shootdown.py), as a real one takes the interrupt
at its next instruction boundary.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from vmgames.emulator import traps
from vmgames.emulator.cpu import SYSCALL_LENGTH
from vmgames.emulator.determinism import SplitMix64
from vmgames.emulator.machine import Machine
from vmgames.kernel import signal_delivery, signals
from vmgames.kernel.callout import CalloutQueue
from vmgames.kernel.pcpu import PerCPU
from vmgames.kernel.proc import RUNNABLE, SLEEPING, ZOMBIE, Process
from vmgames.kernel.vm.map import VMSpace
from vmgames.kernel.vm.page import PageAllocator
from vmgames.kernel.vmmeter import Recorder

if TYPE_CHECKING:
    from vmgames.kernel.observer import Observer

DEFAULT_QUANTUM = 1_000_000      # instructions per scheduling slice
# Host microseconds per slice when no instructions are counted.  Unicorn's
# timeout costs about 200 us per run (a timer thread), so it is only asked
# for when another process is waiting to run.
FAST_SLICE_US = 10_000
# Limits (a timeout, Ctrl-C) are checked at least this often: host microseconds for a lone process in fast
# mode, instructions otherwise (a slice of a bigger --quantum is run in pieces, which changes no schedule).
LIMIT_CHECK_US = 100_000
LIMIT_CHECK_INSTRUCTIONS = DEFAULT_QUANTUM


# Instructions of virtual time each CPU runs per round when there are several (vmgames run --interleave).
DEFAULT_INTERLEAVE = 10_000


class Scheduler:
    """The scheduling half of the Kernel (kernel/kernel.py puts the halves together)."""

    machine: Machine
    recorder: Recorder
    allocator: PageAllocator
    callout: CalloutQueue
    processes: dict[int, Process]
    run_queue: deque[Process]
    cpus: list[PerCPU]
    pcpu: PerCPU
    quantum: int
    interleave: int
    cpu_order: SplitMix64
    observers: tuple[Observer, ...]

    # The selected CPU's state (kernel/pcpu.py), as every kernel path reads it.

    @property
    def current(self) -> Process | None:
        return self.pcpu.current

    @current.setter
    def current(self, proc: Process | None) -> None:
        self.pcpu.current = proc

    @property
    def loaded(self) -> Process | None:
        return self.pcpu.loaded

    @property
    def active_vmspace(self) -> VMSpace | None:
        return self.pcpu.active_vmspace

    def run(self) -> None:
        """Run processes until none is runnable and every wire is empty."""
        while True:
            self._check_limits()
            ran = self._step(self.pcpu, None) if len(self.cpus) == 1 else self._round()
            if not ran:
                if self._idle_until_next():
                    continue
                if self._queued():
                    # Only held processes are left (nothing else stays on the queues): their holder decides.
                    for observer in self.observers:
                        observer.on_held(self)
                    continue
                break
        for pcpu in self.cpus:
            pcpu.current = None
        blocked = [p for p in self.processes.values() if p.state == SLEEPING]
        if blocked:
            self._break_deadlock(blocked)

    def _round(self) -> bool:
        """Every CPU runs up to the end of the next round; False if none had anything to run.

        Without an instruction clock (--fast) a round is one turn of each CPU, bounded by host time.
        """
        if not self.machine.deterministic:
            return any([self._step(self.cpus[index], None) for index in self._round_order()])
        end = max(pcpu.processor.now for pcpu in self.cpus) + self.interleave
        ran = False
        for index in self._round_order():
            pcpu = self.cpus[index]
            while pcpu.processor.now < end and self._step(pcpu, end):
                ran = True
        if ran:
            for pcpu in self.cpus:
                if pcpu.processor.now < end:
                    self._select(pcpu)
                    self.machine.idle(end - pcpu.processor.now)
        return ran

    def _round_order(self) -> list[int]:
        """The CPUs in the order they run this round: a permutation drawn from the run's seed (Fisher-Yates)."""
        order = list(range(len(self.cpus)))
        for i in range(len(order) - 1, 0, -1):
            j = self.cpu_order.next() % (i + 1)
            order[i], order[j] = order[j], order[i]
        return order

    def _idle_until_next(self) -> bool:
        """No CPU has anything to run: every one idles up to the next callout, zeroing free pages meanwhile
        (--prezero).  False if none is due."""
        deadline = self.callout.next_deadline()
        if deadline is None:
            return False
        self.allocator.zero_idle(deadline - max(pcpu.processor.now for pcpu in self.cpus))
        for pcpu in self.cpus:
            self._select(pcpu)
            self.machine.idle(max(0, deadline - self.machine.now))
        self.callout.run_due()
        return True

    def _select(self, pcpu: PerCPU) -> None:
        """Work on `pcpu` from now on: its processor runs, its clock stamps events, its state is the kernel's."""
        if self.pcpu is not pcpu:
            self.pcpu = pcpu
            self.machine.select(pcpu.processor)
            self.recorder.cpu = pcpu.index
            self.recorder.clock = self.machine.clock_reader()

    def _step(self, pcpu: PerCPU, until: int | None) -> bool:
        """One turn of `pcpu`: go on with its task's slice, or start the next task's, and run it until the slice
        ends or the round does (`until`; None with one CPU).  False if it had nothing to run."""
        self._select(pcpu)
        if pcpu.ipis:
            self._take_ipis(pcpu)
        proc = pcpu.current
        if proc is not None and (proc.state != RUNNABLE or not self._may_run(proc)):
            if proc.state == RUNNABLE:
                self.run_queue.append(proc)
            proc = pcpu.current = None
        if proc is None:
            proc = self._next_to_run(pcpu)
            if proc is None:
                return False
            if self.machine.now < proc.runnable_at:
                # Woken on a CPU ahead in its round: this one waits until then, so that no thread runs before
                # the time it was woken at (a timed sleep never ends early).
                self.machine.idle(proc.runnable_at - self.machine.now)
            pcpu.slice_end = self.machine.now + self.quantum
        self._switch_to(proc)
        if proc.pending and signal_delivery.deliverable(proc):
            signal_delivery.deliver(self, proc)     # back to user mode: its handlers run first
            if proc.state != RUNNABLE:
                pcpu.current = None
                return True
        start, sleeps = self.machine.now, proc.sleeps
        if until is None or pcpu.slice_end <= until:
            trap = self._run_slice(pcpu.slice_end)
        else:
            trap = self._run_slice(until, round_end=until)
        proc.instructions += self.machine.now - start
        # A task that went to sleep in the slice may be awake already (a timeout of zero, due at once): it
        # makes the syscall again all the same, and its wakeup has queued it.
        slept = proc.sleeps != sleeps
        if slept:
            # Make the syscall again when woken: rip back onto it; rax still holds its number.
            self.machine.cpu.rip -= SYSCALL_LENGTH
        elif proc.state == RUNNABLE:
            self._handle_trap(proc, trap)
        round_over = until is not None and trap.kind == traps.QUANTUM and self.machine.now < pcpu.slice_end
        if proc.state == RUNNABLE and not round_over and not slept:
            self.run_queue.append(proc)
        if slept or proc.state != RUNNABLE or not round_over:
            pcpu.current = None
        return True

    def _may_run(self, proc: Process) -> bool:
        return all(observer.may_run(proc) for observer in self.observers)

    def enqueue(self, proc: Process) -> None:
        """`proc` can run again (it was made, woken, or sent a signal): an idle CPU takes it first, as Linux's
        select_task_rq and FreeBSD's sched_pickcpu choose an idle CPU for a waking thread; else it waits in
        the run queue for whichever CPU looks for work next."""
        proc.runnable_at = self.machine.now
        if len(self.cpus) > 1:
            for pcpu in self.cpus:
                if pcpu.current is None and not pcpu.woken:
                    pcpu.woken.append(proc)
                    return
        self.run_queue.append(proc)

    def _queued(self) -> bool:
        return bool(self.run_queue) or any(pcpu.woken for pcpu in self.cpus)

    def _next_to_run(self, pcpu: PerCPU) -> Process | None:
        """Take the first runnable process a debugger does not hold: one woken onto this CPU, else the first
        of the run queue; stale entries are dropped.

        A held process goes to the back of the run queue, keeping its turn among the held.  None when there
        is none: the queues then hold only runnable processes the debugger holds.
        """
        if pcpu.woken:
            self.run_queue.extendleft(reversed(pcpu.woken))
            pcpu.woken.clear()
        several = len(self.cpus) > 1
        for _ in range(len(self.run_queue)):
            proc = self.run_queue.popleft()
            if proc.state != RUNNABLE or several and any(other.current is proc for other in self.cpus):
                continue
            if not self._may_run(proc):
                self.run_queue.append(proc)
                continue
            return proc
        return None

    def _run_slice(self, end: int, round_end: int | None = None) -> traps.Trap:
        """Run the current process up to virtual time `end` (its slice's end, or `round_end`, the round's).

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
            others = self.run_queue or len(self.cpus) > 1
            return self.machine.run(budget=self.quantum, timeout_us=FAST_SLICE_US if others else lone_slice_us)
        for observer in self.observers:
            if observer.instruction_limit is not None:
                end = min(end, self.machine.now + observer.instruction_limit - self.machine.retired)
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
            if min(stops) <= now:
                return traps.Trap(traps.QUANTUM, self.machine.cpu.rip)     # an instruction limit reached
            # A CPU's turn of a round ends at the end of the block that reaches it (exactness there would
            # cost a block translated twice per turn); a slice, a device, a pause or a limit exactly.
            turn_ends = round_end is not None and min(stops) == round_end
            trap = self.machine.run(budget=min(stops) - now, at_boundary=turn_ends)
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

    def _take_ipis(self, pcpu: PerCPU) -> None:
        """The shootdowns other CPUs sent: the invalidations were queued on this CPU's TLB when sent (it ran
        nothing since); taking the interrupt is what is recorded, on this CPU at its time.

        A CPU that idles with an address space still loaded (lazy TLB) leaves it on the first IPI, as Linux's
        flush_tlb_func does (leave_mm): it flushes its TLB and drops out of the pmap's CPUs, so that the
        address space's next shootdowns pass it by, and it loads the CR3 again when it next runs a thread there.
        """
        for ipi in pcpu.ipis:
            self.recorder.event("tlb", ipi.kind, sender=ipi.sender, pages=ipi.pages, reason=ipi.reason)
        pcpu.ipis.clear()
        if pcpu.current is None and pcpu.active_vmspace is not None:
            pcpu.active_vmspace.pmap.active_cpus.discard(pcpu.index)
            pcpu.active_vmspace = None
            self.recorder.event("tlb", "invalidate-all", reason="leave-mm")
            pcpu.processor.tlb.invalidate_all()

    def _switch_to(self, proc: Process) -> None:
        pcpu = self.pcpu
        pcpu.current = proc
        proc.cpu = pcpu.index
        self.recorder.pid = proc.pid
        if pcpu.loaded is not proc:
            self._save_loaded()
            for other in self.cpus:
                if other.loaded is proc:
                    # Its registers are still in the engine of the CPU it last ran on: it migrates.
                    other.processor.cpu.save(proc.context)
                    other.loaded = None
            self.machine.cpu.restore(proc.context)
            pcpu.loaded = proc
        # Even a task whose registers this CPU still holds may need its address space loaded again: the CPU
        # left it (leave-mm) on an IPI while it idled between the task's turns.
        if pcpu.active_vmspace is not proc.vmspace:
            # A CR3 load flushes the TLB.  Between two threads of one process (or a vfork child and its
            # parent) there is none, as Linux's switch_mm skips it when the address space is the same.
            self.recorder.event("tlb", "invalidate-all", reason="context-switch")
            if pcpu.active_vmspace is not None:
                pcpu.active_vmspace.pmap.active_cpus.discard(pcpu.index)
            self.machine.set_page_table_root(proc.vmspace.pmap.cr3)
            proc.vmspace.pmap.active_cpus.add(pcpu.index)
            pcpu.active_vmspace = proc.vmspace

    def _save_loaded(self) -> None:
        loaded = self.pcpu.loaded
        if loaded is not None and loaded.state != ZOMBIE:
            self.machine.cpu.save(loaded.context)

    def registers_of(self, proc: Process) -> Any:
        """Where `proc`'s registers are, for a debugger: None when they are live in the selected CPU, else its
        saved context (taken out of another CPU's engine first: that CPU restores it when it runs `proc` again,
        so a register a debugger changes there is not lost)."""
        if self.pcpu.loaded is proc:
            return None
        for pcpu in self.cpus:
            if pcpu.loaded is proc:
                pcpu.processor.cpu.save(proc.context)
                pcpu.loaded = None
        return proc.context

    def unload(self, proc: Process) -> None:
        """`proc` is gone (it exited): no CPU keeps its registers."""
        for pcpu in self.cpus:
            if pcpu.loaded is proc:
                pcpu.loaded = None

    def new_context(self, rip: int, rsp: int):
        """A fresh register set; whatever was live on the CPU is saved first."""
        self._save_loaded()
        self.pcpu.loaded = None
        return self.machine.cpu.new_context(rip, rsp)
